/* Bench support for tensor parallelism: one configuration at one tp, timed the same way at every
 * tp (host clock around a prefill on every rank, each waiting for its own stream), rank 0's
 * per-kernel times for the share in collectives, and the modelled all-reduce cost beside them.
 * `rlx bench --tp` prints the table; docs/bench.md documents every field. */
#ifndef RLX_HOST_TOOLS_BENCH_TP_H
#define RLX_HOST_TOOLS_BENCH_TP_H

#include "tools/bench.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rlx__bench_tp_row {
    int tp;
    rlx__bench_stats st; /* ms per prefill, every rank done */
    double tokens_per_s;
    double comm_ms;         /* rank 0, a timed run: its all_reduce and all_gather entries */
    double kernels_ms;      /* rank 0, the same run: every kernel (or stage on the cpu) */
    double allreduce_bytes; /* modelled: bytes one rank sends per layer (2 all-reduces, ring) */
    double modelled_ms;     /* modelled: every layer's all-reduces at link_gbps */
    size_t weight_bytes;    /* rank 0's device weights (0 on the cpu) */
    int output_finite;
} rlx__bench_tp_row;

/* Runs flow at tp ranks in this process (tp = 1: the plain model, no communicator) on bp->device:
 * warmup untimed and repeat timed prefills of n_seqs sequences of lens[i] random ids (vocab,
 * seed), then one timed prefill for rank 0's breakdown. hidden, layers and elem (bytes per
 * activation) feed the model of the all-reduce cost; link_gbps is the per-direction link
 * bandwidth in GB/s. */
rlx_status rlx__bench_tp_run(const rlx_flow *flow, const rlx_weights *w, const rlx_build_params *bp, int tp,
                             const int64_t *lens, int64_t n_seqs, int64_t vocab, int warmup, int repeat, uint64_t seed,
                             int64_t hidden, int64_t layers, int elem, double link_gbps, rlx__bench_tp_row *out);

#ifdef __cplusplus
}
#endif

#endif
