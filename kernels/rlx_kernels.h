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

/* ---- attention (kernels/attention.cu, kernels/flash_attention.cu, kernels/decode_attention.cu)
 * and the KV cache writer (kernels/kv_write.cu). ---- */

/* Where attention finds the keys and values of sequence s: rows of a KV cache, K stored after
 * RoPE and both already multiplied by the norm's row scale (kv_write does that, once per token).
 * Key j of sequence s, kv head g, is at element
 *   paged:      page_indices[page_indptr[s] + (j >> page_shift)] · page_stride
 *               + (j & (2^page_shift − 1)) · token_stride + g · head_stride
 *   contiguous: (seq_start[s] + j) · token_stride + g · head_stride   (page_indptr == NULL: the
 *               new tokens' own rows, a plain prefill)
 * from k (and v). kv_len[s] keys per sequence (device memory; NULL: the sequence's new-token
 * count, i.e. no cached prefix). */
typedef struct rlx_kv_ref {
    void *k, *v;                  /* this layer's K and V bases, in the activation dtype */
    const int32_t *page_indptr;   /* [n_seqs + 1] or NULL (contiguous) */
    const int32_t *page_indices;
    const int32_t *kv_len;        /* [n_seqs] or NULL */
    int64_t page_stride, token_stride, head_stride; /* elements */
    int page_shift;               /* log2(page size) */
} rlx_kv_ref;

/* Attention of the new tokens of each sequence over its keys (rlx_kv_ref). Query rows: q
 * [T, ldq], query head h at columns h·D, multiplied on load by q_scale[t] (f32 [T], NULL = 1: the
 * norm's row scale) and, with rope != 0, rotated NeoX-style at position pos[t] (cos_t/sin_t f32
 * [positions, D/2]). Sequences are the new tokens seq_start[s] .. seq_start[s+1]-1 (n_seqs + 1
 * offsets in device memory; at most max_q each, and at most max_kv keys). Query head h reads kv
 * head h / (heads / kv_heads); scores scaled by `scale`; causal: new token i of a sequence with
 * kv_len keys and q_len new tokens sees keys j <= i + kv_len − q_len (bottom-right aligned), else
 * all kv_len keys. o [T, ldo], query head h at columns h·D. work/work_bytes: scratch for the
 * split-KV partial results of decode_attention (NULL/0 elsewhere; decode then uses one split). */
typedef struct rlx_attn_args {
    void *o;
    const void *q;
    const float *q_scale;
    const float *cos_t, *sin_t;
    const int32_t *pos;
    const int32_t *seq_start;
    rlx_kv_ref kv;
    void *work;
    size_t work_bytes;
    int64_t ldq, ldo;
    int64_t n_tokens;               /* T = seq_start[n_seqs] */
    int64_t n_seqs, max_q, max_kv;
    int64_t heads, kv_heads, head_dim;
    int causal, rope;
    float scale;
    rlx_kdtype dt;
    int tile;     /* flash_attention's tile shape: RLX_FA_TILE_RULE (0: rlx_flash_tile) or one named */
    int sm_count; /* the device's multiprocessors, for that rule (0: unknown, taken as a full grid) */
} rlx_attn_args;

/* Any head_dim <= 256, bf16 or f32, any alignment: one warp per query row streaming its keys with
 * an online softmax, no tensor cores. The unfused plan's attention and the fused plan's where the
 * faster kernels do not apply. Limits: n_seqs · heads < 2^31, max_q / 4 < 65536. */
RLX_KDECL(attention, const rlx_attn_args *a, void *stream)

/* The tensor-core prefill kernel (FlashAttention-2 tiles). Limits: bf16 only, head_dim 64 or
 * 128, q and o 16-byte aligned with ldq and ldo multiples of 8, K/V bases 16-byte aligned and
 * their strides multiples of 8 elements, n_seqs <= 65535. */
RLX_KDECL(flash_attention, const rlx_attn_args *a, void *stream)
/* Its tile shapes (kernels/flash_attention.cu, header comment): WIDE is 128 query rows per CTA
 * (two m16 tiles per warp) × 64 keys per step at head_dim 64, × 32 keys at 128; NARROW is 64 query
 * rows (one m16 tile per warp) × 64 keys. Neither spills registers on sm_80 or sm_90a (ctest -L
 * nvcc fails if one does). */
enum { RLX_FA_TILE_RULE = 0, RLX_FA_TILE_WIDE = 1, RLX_FA_TILE_NARROW = 2 };
/* CTAs a flash_attention launch has with that tile: query-row tiles × kv heads × CTAs along the
 * GQA group × sequences (a query-row tile packs min(G, rows) heads of the group, token-major). */
static inline int64_t rlx_flash_ctas(int tile, int64_t heads, int64_t kv_heads, int64_t n_seqs, int64_t max_q) {
    const int64_t bm = tile == RLX_FA_TILE_NARROW ? 64 : 128, g = heads / kv_heads, gh = g < bm ? g : bm, tq = bm / gh;
    return (max_q + tq - 1) / tq * kv_heads * ((g + gh - 1) / gh) * n_seqs;
}
/* The rule: WIDE (every K/V fragment feeds two mmas), unless its grid has fewer CTAs than the
 * device has multiprocessors (e.g. Llama-3.1-8B at 1 × 512 tokens: 128 CTAs for 132 SMs), where
 * NARROW doubles the CTAs. sm_count 0 (unknown) keeps WIDE. */
static inline int rlx_flash_tile(int64_t heads, int64_t kv_heads, int64_t n_seqs, int64_t max_q, int sm_count) {
    if (sm_count > 0 && kv_heads > 0 && rlx_flash_ctas(RLX_FA_TILE_WIDE, heads, kv_heads, n_seqs, max_q) < sm_count)
        return RLX_FA_TILE_NARROW;
    return RLX_FA_TILE_WIDE;
}

/* Split-KV (flash-decoding) for few new tokens per sequence: the key range is split across CTAs,
 * one CTA per (split, kv head, sequence) holds the query rows of the whole GQA group (q_len · G
 * of them), and a merge kernel combines the partial softmax results. Limits: bf16 only, head_dim
 * a multiple of 8 up to 256, max_q · (heads / kv_heads) <= rlx_decode_max_rows(head_dim), the same
 * alignment as flash_attention; work may be NULL (one split). */
RLX_KDECL(decode_attention, const rlx_attn_args *a, void *stream)
/* Query rows (new tokens × group heads) one decode CTA holds at this head_dim: 32 up to 64, 16 up
 * to 128, 8 up to 256; 0 where decode_attention does not apply (the per-thread accumulators are
 * rows × head_dim / 32 floats: 64 at most, so no size spills). */
static inline int rlx_decode_max_rows(int64_t head_dim) {
    if (head_dim < 8 || head_dim % 8 || head_dim > 256) return 0;
    return head_dim <= 64 ? 32 : head_dim <= 128 ? 16 : 8;
}

/* Writes the new tokens' keys and values into a KV cache, once per token: for token t and kv head
 * g, K = rope(s_t · k[t, g]) (rope != 0, at position pos[t]) or s_t · k[t, g], V = s_t · v[t, g],
 * rounded once to dt; s_t = row_scale[t] (f32 [T], NULL = 1). k, v [T, ld], kv head g at columns
 * g·D (k and v may be column ranges of one packed QKV row). Destination dst (rlx_kv_ref): paged:
 * slot pos[t] & (page size − 1) of page tok_page[t] ([T] int32, device memory); contiguous
 * (tok_page NULL): row t. */
typedef struct rlx_kv_write_args {
    const void *k, *v;
    int64_t ld;
    const float *row_scale;
    const float *cos_t, *sin_t;
    const int32_t *pos;
    int rope;
    const int32_t *tok_page;
    rlx_kv_ref dst;
    int64_t T, kv_heads, head_dim;
    rlx_kdtype dt;
} rlx_kv_write_args;

RLX_KDECL(kv_write, const rlx_kv_write_args *a, void *stream)

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

/* ---- the f32 residual stream (precision.mixed = "auto"): kernels/fused_norm.cu, kernels/rms_norm.cu.
 * The stream is f32; a GEMM reads its bf16 copy ("shadow", xb) that the kernel touching the row
 * also writes, with the row scales s taken over the f32 values. dt is the shadow's (and b's, γ's,
 * the table's) dtype. xb and s may be NULL where named. ---- */

/* s[r] = 1/sqrt(mean(x[r]²) + eps), xb = x rounded to dt; x f32 [rows, cols]; s or xb NULL (not
 * both: xb alone is the cast a non-GEMM reader needs). */
RLX_KDECL(residual_rowscale, float *s, void *xb, const float *x, int64_t rows, int64_t cols, float eps, rlx_kdtype dt,
          void *stream)

/* y = a + b, xb = y rounded to dt, s of y (f32): a, y f32 [rows, cols] (y may equal a), b in dt (a GEMM's
 * output, an all_reduce's); xb, s NULL for none. */
RLX_KDECL(residual_add, float *y, void *yb, float *s, const float *a, const void *b, int64_t rows, int64_t cols, float eps,
          rlx_kdtype dt, void *stream)

/* y[t] = table[tokens[t]] in f32 (exact), yb the same rows in dt, s of y; table in dt [V, H]; yb, s NULL
 * for none. Token ids validated by the caller. */
RLX_KDECL(embed_f32, float *y, void *yb, float *s, const int32_t *tokens, const void *table, int64_t T, int64_t H, float eps,
          rlx_kdtype dt, void *stream)

/* rms_norm of an f32 row into dt: y[r] = γ·(x[src] / sqrt(mean(x[src]²) + eps)), src = r, or with
 * seq_start the last token of sequence r (rows = n_seqs, the final norm fused with the gather). */
RLX_KDECL(residual_rms_norm, void *y, const float *x, const void *gamma, const int32_t *seq_start, int64_t rows, int64_t cols,
          float eps, rlx_kdtype dt, void *stream)

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
