/* Weight conversion for model builds: a matrix from its checkpoint dtype to the dtype a device
 * computes in, in parallel over the cores, in one pass per element.
 *
 * One routine serves every weight a build prepares:
 *   - a tensor as it is (embedding, o_proj, down, norms): one part; a direct copy (memcpy) when the
 *     checkpoint dtype is already the output dtype;
 *   - a packed weight (Wqkv, W_gate|up): up to RLX__CONV_MAX_PARTS parts stacked by rows, with the
 *     norm's γ folded into the columns: out[r][c] = round(f32(src[r][c]) · γ[c]), computed in f32
 *     and rounded once, bitwise what converting to f32, scaling and rounding separately gives;
 *   - a shard of either (tensor parallelism): a part may be a 2-D slice of its tensor, rows
 *     [r0, r0 + rows) and columns [c0, c0 + cols), given as data = &src[r0][c0] and ld = the
 *     tensor's row length, and a part with data NULL is rows of zeros (vocabulary padding);
 *     rlx__weight_conv (dist/shard.h) describes any weight of a build, its part included.
 * rlx__conv_run writes any row range of the output, so a caller can convert in chunks (a staging
 * buffer uploaded while the next chunk converts). It allocates nothing and cannot fail: the
 * caller has checked the dtypes (rlx__conv_supported).
 */
#ifndef RLX_HOST_IO_CONVERT_H
#define RLX_HOST_IO_CONVERT_H

#include "rlx/weights.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RLX__CONV_MAX_PARTS 8

typedef struct rlx__conv_part {
    const void *data; /* element [0][0] of the part, aligned to its element size (views are);
                         NULL: rows of zeros (a shard's padding past the tensor's end) */
    rlx_dtype dtype;  /* F32, F16 or BF16 */
    int64_t rows;     /* rows of the part */
    int64_t ld;       /* source elements from one row to the next (>= the output's cols) */
} rlx__conv_part;

typedef struct rlx__conv {
    rlx__conv_part part[RLX__CONV_MAX_PARTS]; /* stacked by rows */
    int n_parts;
    int64_t cols;            /* columns of every part and of the output */
    const float *col_scale;  /* [cols] f32 factor per column (γ folding), or NULL */
    rlx_dtype out;           /* F32, BF16 or F16 */
} rlx__conv;

/* A whole tensor as one part of the output dtype out: [rows, cols] for 2-D views, [numel, 1]
 * otherwise (so that 1-D tensors split over threads too). */
rlx__conv rlx__conv_of_view(const rlx_tensor_view *v, rlx_dtype out);
/* Appends a contiguous [rows, cols] part (cols must equal c->cols once set; the first part sets it). */
void rlx__conv_add(rlx__conv *c, const void *data, rlx_dtype dtype, int64_t rows, int64_t cols);

/* 1 when every part's dtype and the output dtype are ones rlx__conv_run handles. */
int rlx__conv_supported(const rlx__conv *c);
int64_t rlx__conv_rows(const rlx__conv *c);
/* Bytes of the output (rows x cols x output element size) and bytes read from the parts. */
size_t rlx__conv_out_bytes(const rlx__conv *c);
size_t rlx__conv_src_bytes(const rlx__conv *c);

/* Writes output rows [row0, row0 + nrows) contiguously into dst on `threads` threads (0 = every
 * core). */
void rlx__conv_run(const rlx__conv *c, void *dst, int64_t row0, int64_t nrows, int threads);

#ifdef __cplusplus
}
#endif

#endif
