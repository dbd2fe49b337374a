/* Launchers of rlx's CUDA kernels: the contract between the device executor and kernels/.
 *
 * Every kernel family (kernels/<family>.cu) ends with C launchers declared here. The same
 * sources are compiled twice: by nvcc for the cuda device (names rlx_cuda_<op>) and as host
 * C++ through the simt harness for the simt test device (names rlx_simt_<op>); RLX_KNAME
 * picks the prefix from RLX_SIMT.
 *
 * Conventions: outputs first, then inputs, then sizes; activations are `dt` (bf16 or f32,
 * row-major, leading dimension = the row stride in elements); statistics and softmax in f32;
 * `stream` is a cudaStream_t (NULL = default stream). A launcher validates its arguments,
 * launches, and returns 0 or a cudaError_t value; it never synchronizes.
 */
#ifndef RLX_KERNELS_H
#define RLX_KERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum rlx_kdtype {
    RLX_K_BF16 = 0,
    RLX_K_F32 = 1,
} rlx_kdtype;

#if defined(RLX_SIMT) && RLX_SIMT
#define RLX_KNAME(op) rlx_simt_##op
#else
#define RLX_KNAME(op) rlx_cuda_##op
#endif

/* Declares one launcher under both prefixes so host code can name either backend. */
#define RLX_KDECL(op, ...)                  \
    int rlx_cuda_##op(__VA_ARGS__);         \
    int rlx_simt_##op(__VA_ARGS__);

/* y[t, :] = table[tokens[t], :]; table has the activation dtype. [T, H] */
RLX_KDECL(embed, void *y, const int32_t *tokens, const void *table, int64_t T, int64_t H, rlx_kdtype dt, void *stream)

/* y = x / sqrt(mean(x²) + eps) · γ per row; γ has the activation dtype. [rows, cols] */
RLX_KDECL(rms_norm, void *y, const void *x, const void *gamma, int64_t rows, int64_t cols, float eps, rlx_kdtype dt,
          void *stream)

/* NeoX rotation per head: o[i] = x[i]·cos − x[i+D/2]·sin, o[i+D/2] = x[i+D/2]·cos + x[i]·sin, at
 * position pos[t]; cos/sin f32 [positions, D/2]. y may equal x. Rows have stride ld (elements). */
RLX_KDECL(rope, void *y, const void *x, const float *cos_t, const float *sin_t, const int32_t *pos, int64_t T,
          int64_t heads, int64_t head_dim, int64_t ld, rlx_kdtype dt, void *stream)

/* Attention within each sequence (tokens seq_start[s] .. seq_start[s+1]-1, n_seqs+1 offsets in
 * device memory), query head h reads kv head h / (heads / kv_heads), scores scaled by `scale`,
 * causal: query i sees keys j <= i (bottom-right aligned; Sk == Sq), else all keys of its
 * sequence. q [T, ldq], k/v [T, ldkv], o [T, ldo]; max_len bounds every sequence length. */
RLX_KDECL(attention, void *o, const void *q, const void *k, const void *v, const int32_t *seq_start, int64_t n_seqs,
          int64_t max_len, int64_t heads, int64_t kv_heads, int64_t head_dim, int64_t ldq, int64_t ldkv, int64_t ldo,
          int causal, float scale, rlx_kdtype dt, void *stream)

/* y = a + b elementwise, n elements (y may equal a or b). */
RLX_KDECL(add, void *y, const void *a, const void *b, int64_t n, rlx_kdtype dt, void *stream)

/* y[r, c] = silu(g[r, c]) · u[r, c]; g, u rows have strides ldg, ldu; y is [rows, cols] dense. */
RLX_KDECL(silu_mul, void *y, const void *g, const void *u, int64_t rows, int64_t cols, int64_t ldg, int64_t ldu,
          rlx_kdtype dt, void *stream)

/* y[s, :] = x[seq_start[s+1] − 1, :] for each sequence. [n_seqs, cols] */
RLX_KDECL(last_token, void *y, const void *x, const int32_t *seq_start, int64_t n_seqs, int64_t cols, rlx_kdtype dt,
          void *stream)

/* The final norm on the last position only: y[s, :] = rms_norm(x[seq_start[s+1] − 1, :]) · γ.
 * [n_seqs, cols] */
RLX_KDECL(last_token_rms_norm, void *y, const void *x, const void *gamma, const int32_t *seq_start, int64_t n_seqs,
          int64_t cols, float eps, rlx_kdtype dt, void *stream)

/* ---- fused LLaMA kernels (issue 5): kernels/fused_norm.cu, kernels/swiglu.cu,
 * kernels/flash_attention.cu. A row scale is s[t] = 1/sqrt(mean(x[t]²) + eps) in f32, taken over
 * the row as stored in `dt`; γ of the norm lives in the next GEMM's weight. ---- */

/* s[r] = 1/sqrt(mean(x[r, :]²) + eps). x [rows, cols] dense; s f32 [rows]. */
RLX_KDECL(rms_rowscale, float *s, const void *x, int64_t rows, int64_t cols, float eps, rlx_kdtype dt, void *stream)

/* y = a + b and s[r] of y (of y as stored), one pass. [rows, cols] dense; y may equal a or b. */
RLX_KDECL(add_rowscale, void *y, float *s, const void *a, const void *b, int64_t rows, int64_t cols, float eps,
          rlx_kdtype dt, void *stream)

/* y[t, :] = table[tokens[t], :] and s[t] of y. [T, H]; token ids validated by the caller. */
RLX_KDECL(embed_rowscale, void *y, float *s, const int32_t *tokens, const void *table, int64_t T, int64_t H,
          float eps, rlx_kdtype dt, void *stream)

/* y[r, :] = γ · (x[r, :] · s[r]) (rms_norm(x)·γ when s came from rms_rowscale); γ [cols] in dt,
 * NULL = 1; s required. [rows, cols] dense; y may equal x. */
RLX_KDECL(scale_rows, void *y, const void *x, const float *s, const void *gamma, int64_t rows, int64_t cols,
          rlx_kdtype dt, void *stream)

/* y[r, c] = silu(s[r]·g[r, c]) · (s[r]·u[r, c]) with g = gu[r, c], u = gu[r, I + c] (the packed
 * gate|up GEMM output, row stride ld_gu >= 2·I); s f32 [rows], NULL = 1; y [rows, I] dense. */
RLX_KDECL(swiglu_scaled, void *y, const void *gu, const float *s, int64_t rows, int64_t I, int64_t ld_gu,
          rlx_kdtype dt, void *stream)

/* Fused RoPE + GQA attention on the packed QKV GEMM output qkv [T, ld_qkv]: q at column 0
 * (heads·D), k at heads·D (kv_heads·D), v at (heads + kv_heads)·D. On load each of q, k, v of
 * token t is multiplied by row_scale[t] (f32 [T], NULL = 1) and, when rope != 0, q and k get the
 * NeoX rotation of `rope` at position pos[t] (cos_t/sin_t f32 [positions, D/2], 16-byte aligned).
 * Sequences are tokens seq_start[s] .. seq_start[s+1]-1 (n_seqs + 1 offsets in device memory, each
 * length <= max_len); query head h uses kv head h / (heads / kv_heads); scores scaled by `scale`;
 * causal: query i sees keys j <= i (bottom-right aligned, Sk == Sq). o [T, ldo] bf16, query head h
 * at columns h·D. Limits: dt == RLX_K_BF16 only (f32 runs the primitive path), head_dim 64 or
 * 128, qkv and o 16-byte aligned, ld_qkv and ldo multiples of 8, n_seqs <= 65535. */
RLX_KDECL(flash_attention, void *o, const void *qkv, const float *row_scale, const float *cos_t, const float *sin_t,
          const int32_t *pos, const int32_t *seq_start, int64_t n_seqs, int64_t max_len, int64_t heads,
          int64_t kv_heads, int64_t head_dim, int64_t ld_qkv, int64_t ldo, int causal, int rope, float scale,
          rlx_kdtype dt, void *stream)

/* flash_attention's contract on any head_dim <= 256 (even with rope) and in bf16 or f32, without
 * tensor cores: the fused plan's attention where the flash kernel does not apply. */
RLX_KDECL(rope_attention, void *o, const void *qkv, const float *row_scale, const float *cos_t, const float *sin_t,
          const int32_t *pos, const int32_t *seq_start, int64_t n_seqs, int64_t max_len, int64_t heads,
          int64_t kv_heads, int64_t head_dim, int64_t ld_qkv, int64_t ldo, int causal, int rope, float scale,
          rlx_kdtype dt, void *stream)

/* ---- encoder primitives (kernels/encoder.cu) ---- */

/* LayerNorm with population variance: y = (x + residual − mean)/sqrt(var + eps)·γ + β per row;
 * residual and β may be NULL; y may alias x or residual. [rows, cols] */
RLX_KDECL(layer_norm, void *y, const void *x, const void *residual, const void *gamma, const void *beta, int64_t rows,
          int64_t cols, float eps, rlx_kdtype dt, void *stream)

/* Exact GELU, 0.5·x·(1 + erf(x/√2)), n elements (y may equal x). */
RLX_KDECL(gelu, void *y, const void *x, int64_t n, rlx_kdtype dt, void *stream)

/* y[t, :] = x[t, :] + table[ids[t], :] (position or token-type embeddings). [rows, cols] */
RLX_KDECL(gather_add, void *y, const void *x, const int32_t *ids, const void *table, int64_t rows, int64_t cols,
          rlx_kdtype dt, void *stream)

/* y = x[:, begin : begin + width] with x [rows, x_cols]. */
RLX_KDECL(slice_cols, void *y, const void *x, int64_t rows, int64_t x_cols, int64_t begin, int64_t width, rlx_kdtype dt,
          void *stream)

/* Pooling per sequence: mean = 0 takes the first token (CLS), 1 the mean. y [n_seqs, cols]. */
RLX_KDECL(seq_pool, void *y, const void *x, const int32_t *seq_start, int64_t n_seqs, int64_t cols, int mean,
          rlx_kdtype dt, void *stream)

/* y = x / max(‖x‖₂, 1e-12) per row. [rows, cols] */
RLX_KDECL(l2_normalize, void *y, const void *x, int64_t rows, int64_t cols, rlx_kdtype dt, void *stream)

#ifdef __cplusplus
}
#endif

#endif
