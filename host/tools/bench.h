/* Bench support: prefill FLOP counting, timing statistics, datasheet peaks and the reference GEMM
 * measurement behind `rlx bench` (host/cli/cmd_bench.c). Benchmarks never assert; these helpers
 * only count and measure. docs/bench.md documents every number they produce.
 */
#ifndef RLX_HOST_BENCH_H
#define RLX_HOST_BENCH_H

#include "rlx/flow.h"
#include "rlx/llama.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Prefill FLOPs of a Llama-shaped model (../shared/design/PERF.md), for one prefill of n_seqs
 * sequences of seq_lens[i] tokens, counting what runs:
 *   linear    = 2 × (q, k, v, o, gate, up, down weight elements) × layers × tokens, except that
 *               with RLX__BENCH_PRUNED (passes.prune_last_layer) the last layer's o, gate, up and
 *               down run on one row per sequence
 *   attention = 2·2·(len/2)·heads·head_dim × layers per token: the causal half, counted as
 *               FlashAttention's benchmarks do (4·len²·heads·head_dim / 2 per sequence and layer)
 *   lm_head   = 2 × hidden × vocab per logits row: one row per sequence when only last-token
 *               logits are asked (last_token = 1), else one per token
 * Embedding gathers, norms, RoPE, SiLU·mul and residual adds are not counted. */
typedef struct rlx__bench_flops {
    double linear;
    double attention;
    double lm_head;
    double total;
} rlx__bench_flops;

/* flags: RLX__BENCH_LAST_TOKEN (only last-token logits are asked), RLX__BENCH_PRUNED (and the
 * model was built with its last layer pruned: rlx_model's pruned_stages > 0). 1 = last token. */
#define RLX__BENCH_LAST_TOKEN 1
#define RLX__BENCH_PRUNED 2
rlx__bench_flops rlx__bench_llama_flops(const rlx_llama_config *c, const int64_t *seq_lens, int64_t n_seqs,
                                        int flags);
/* Weight elements of the model (embedding, every layer, final norm, untied lm_head). */
double rlx__bench_llama_params(const rlx_llama_config *c);

/* Order statistics of n samples (n >= 1; percentiles interpolate linearly between order
 * statistics, as numpy's default; stdev is the sample standard deviation, 0 for n = 1). */
typedef struct rlx__bench_stats {
    int n;
    double median, mean, stdev, min, max, p10, p90;
} rlx__bench_stats;

void rlx__bench_stats_of(const double *x, int n, rlx__bench_stats *out);

/* Dense bf16 tensor-core peak (TFLOP/s, no sparsity) of the card a device description names
 * ("NVIDIA H100 80GB HBM3, sm_90, 79.1 GiB"): H100 SXM and H200 989, H100 PCIe 756, A100 312.
 * 0 when the card is unknown (MFU against the datasheet is then not reported). *card, when
 * non-NULL, receives the matched card name or NULL. */
double rlx__bench_datasheet_bf16_tflops(const char *device_name, const char **card);

/* A square-ish reference GEMM D[M,N] = X[M,K]·W[N,K]ᵀ timed on a device, random inputs:
 *   cuda: the cuBLASLt path of the device layer, bf16 in and out, f32 accumulation, timed with
 *         CUDA events (one per GEMM)
 *   simt: the simt device's reference GEMM (bf16), host clock; says nothing about a GPU
 *   cpu:  the f32 CPU reference linear (rlx__ref_linear) on `threads` threads, host clock
 * median_ms is the median over `repeat` timed GEMMs after `warmup` untimed ones. */
typedef struct rlx__bench_gemm {
    int64_t m, n, k;
    int repeat;
    double median_ms;
    double tflops;      /* 2·M·N·K / median */
    char what[160];     /* "cuBLASLt bf16 8192x8192x8192 on <device>" */
} rlx__bench_gemm;

rlx_status rlx__bench_measure_gemm(rlx_device_kind kind, int ordinal, int threads, int64_t m, int64_t n, int64_t k,
                                   int warmup, int repeat, rlx__bench_gemm *out);

/* ---- model load (rlx bench --load, bench_load.c) ----------------------------------------------
 * How long rlx_weights_open + rlx_model_build of a checkpoint directory take, and at what rate the
 * checkpoint's bytes go through them, with the bounds measured in the same run: a parallel read()
 * of the checkpoint files (the disk, or the page cache when the files are cached) and, on cuda, a
 * pinned host-to-device copy (PCIe). Wall and CPU time are both kept: on a shared machine the CPU
 * time shows the work done however busy the cores are. */
#define RLX__BENCH_LOAD_MAX_REPEAT 32

typedef struct rlx__bench_load {
    uint64_t checkpoint_bytes; /* the directory's safetensors files */
    uint64_t read_bytes;       /* checkpoint bytes the build prepared (the tensors the model uses) */
    size_t device_bytes;       /* weights (and constants) on the device; the f32 copies on the cpu */
    int repeat;
    double wall_s[RLX__BENCH_LOAD_MAX_REPEAT], cpu_s[RLX__BENCH_LOAD_MAX_REPEAT];
    rlx__bench_stats wall, cpu;
    double read_gbps; /* parallel read() of the checkpoint files just before the timed loads */
    double h2d_gbps;  /* cuda: 64 MiB pinned host-to-device copies; 0 on other devices */
} rlx__bench_load;

/* Writes cfg's seeded random bf16 weights to dir as a checkpoint unless dir already holds one of
 * cfg's shape (config.json with the same sizes, and model.safetensors); *written_s = seconds spent
 * writing, 0 when reused. */
rlx_status rlx__bench_load_checkpoint(const rlx_llama_config *cfg, uint64_t seed, const char *dir, double *written_s);

/* Times `repeat` loads of dir (rlx_weights_open, then rlx_model_build of the Llama flow of the
 * directory's config for device/fusion/threads as in bp; bp's progress callback, if any, sees each
 * load). */
rlx_status rlx__bench_load_run(const char *dir, const rlx_build_params *bp, int repeat, rlx__bench_load *out);

#ifdef __cplusplus
}
#endif

#endif
