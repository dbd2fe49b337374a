/* The CPU reference backend (runtime/cpu_ref.c, runtime/cpu_ref_encoder.c): interprets the
 * expanded stage list in f32. Never looks at a kernel plan, so it stays an independent oracle. */
#ifndef RLX_HOST_CPU_REF_H
#define RLX_HOST_CPU_REF_H

#include "model/stages.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Runs the model's stage list for one prefill. out receives the output value (caller frees
 * *out). */
rlx_status rlx__cpu_run(const rlx_model *m, const rlx__batch *b, float **out, int64_t *rows,
                        int64_t *cols);
/* Same, recording each stage's wall time in stage_ms[n_stages] (ms) when non-NULL. */
rlx_status rlx__cpu_run_timed(const rlx_model *m, const rlx__batch *b, float **out, int64_t *rows,
                              int64_t *cols, double *stage_ms);


/* Turns a built CPU model into an emulation of a device precision: bf16 (the only one that
 * changes anything) rounds every weight once now and every stage output as it is produced, except
 * the residual stream when f32_residual (precision.mixed = "auto"). Its error against the plain
 * f32 reference is what `rlx check` budgets a device with (tools/check.c). */
rlx_status rlx__cpu_emulate(rlx_model *m, int bf16, int f32_residual);

/* CPU reference primitives (plain f32 loops, outputs first). Exposed for the op tests and as
 * the oracle of the device kernels. */
void rlx__ref_rms_norm(float *y, const float *x, const float *gamma, int64_t rows, int64_t cols,
                       double eps);
void rlx__ref_linear(float *y, const float *x, const float *w, const float *bias, int64_t rows,
                     int64_t k, int64_t n, int threads);
void rlx__ref_rope_tables(float *cos_t, float *sin_t, const rlx_rope_params *p);
void rlx__ref_rope(float *y, const float *x, const float *cos_t, const float *sin_t,
                   const int64_t *pos, int64_t tokens, int64_t heads, int64_t head_dim);
void rlx__ref_attention(float *o, const float *q, const float *k, const float *v,
                        const rlx__batch *b, int64_t heads, int64_t kv_heads, int64_t head_dim,
                        int causal, int threads);
/* KV cache (runtime/cpu_ref_kv.c, rlx/kv.h): k/v [T, kv_heads·D] of the new tokens written into
 * the pages of `layer` of b->kv (rounded to its dtype); attention_kv writes them and attends over
 * the pages (cached prefix and new tokens), query i of sequence s at position cached_len[s] + i. */
struct rlx__kv_call;
void rlx__ref_kv_write(const struct rlx__kv_call *kv, int layer, const float *k, const float *v, const rlx__batch *b,
                       int64_t kv_heads, int64_t head_dim);
void rlx__ref_attention_kv(float *o, const float *q, const float *k, const float *v, const rlx__batch *b, int layer,
                           int64_t heads, int64_t kv_heads, int64_t head_dim, int causal, int threads);
void rlx__ref_silu_mul(float *y, const float *g, const float *u, int64_t n);
void rlx__ref_add(float *y, const float *a, const float *b, int64_t n);

/* Encoder stages. */
/* Interpreter steps that need the model or the batch (rows = tokens of the prefill). */
rlx_status rlx__cpu_input_ids(int32_t *y, const rlx_model *m, int stage, const rlx__batch *b);
rlx_status rlx__cpu_gather_add(float *y, const float *x, const int32_t *ids, const rlx_model *m,
                               int stage, int64_t rows, int64_t cols);
void rlx__ref_positions(int32_t *pos, const int64_t *seq_start, int64_t n_seqs);
void rlx__ref_gather_add(float *y, const float *x, const int32_t *ids, const float *table,
                         int64_t rows, int64_t cols);
void rlx__ref_layer_norm(float *y, const float *x, const float *gamma, const float *beta,
                         int64_t rows, int64_t cols, double eps);
void rlx__ref_gelu(float *y, const float *x, int64_t n);
void rlx__ref_slice_cols(float *y, const float *x, int64_t rows, int64_t x_cols, int64_t begin,
                         int64_t width);
void rlx__ref_cls_pool(float *y, const float *x, const int64_t *seq_start, int64_t n_seqs,
                       int64_t cols);
void rlx__ref_mean_pool(float *y, const float *x, const int64_t *seq_start, int64_t n_seqs,
                        int64_t cols);
void rlx__ref_l2_normalize(float *y, const float *x, int64_t rows, int64_t cols);

#ifdef __cplusplus
}
#endif

#endif
