/* Decode benchmark support behind `rlx bench --decode` (host/tools/bench_decode.c): time to first
 * token, decode steps over a KV cache, the memory roofline of a step, the copy bandwidth it is
 * measured against. Benchmarks never assert; docs/bench.md documents every field. */
#ifndef RLX_HOST_BENCH_DECODE_H
#define RLX_HOST_BENCH_DECODE_H

#include "tools/bench.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Copy bandwidth: a device-to-device copy of `bytes` on the device (cuda: timed with events; simt:
 * host memmove behind the device interface), or memcpy on the host for the CPU; median of repeat
 * copies, gbps counts read + write (2·bytes per copy), as PERF.md's measured figures do. */
typedef struct rlx__bench_copy {
    size_t bytes;
    int repeat;
    double median_ms, gbps;
    char what[200];
} rlx__bench_copy;

rlx_status rlx__bench_measure_copy(rlx_device_kind kind, int ordinal, size_t bytes, int repeat, rlx__bench_copy *out);

typedef struct rlx__bench_decode_result {
    int64_t batch, context;
    int steps;
    rlx_device_kind device;
    double ttft_ms;            /* prefill of batch × context tokens + the logits copy, host clock */
    rlx__bench_stats step;     /* one decode step (page lists, the call, the logits copy), host clock, ms */
    double kernels_ms;         /* the device kernels of one step (timer marks between them) */
    double tokens_per_s;       /* batch / median step */
    size_t kv_bytes_per_token; /* K + V over every layer */
    double weight_bytes;       /* what the model reads per step: every weight once */
    double kv_read_bytes;      /* K and V of the contexts per step (mean over the timed steps) */
    double copy_gbps;          /* the bandwidth the roofline uses (0: none) */
    double roofline_ms;        /* (weight + kv) bytes / copy bandwidth */
    double roofline_frac;      /* roofline_ms / median step: the fraction of the bound reached */
} rlx__bench_decode_result;

/* One configuration: builds the model (cfg, w, bp) for batch × context, prefills, decodes. */
rlx_status rlx__bench_decode(const rlx_llama_config *cfg, const rlx_weights *w, const rlx_build_params *bp, int64_t batch,
                             int64_t context, int warmup, int steps, uint64_t seed, double copy_gbps, rlx__bench_decode_result *r);

#ifdef __cplusplus
}
#endif

#endif
