/* Weight conversion for model builds (convert.h): one pass per element, parallel over rows.
 *
 * The inner loops work on spans of one row (or of many rows, where a part is contiguous and no
 * column scale applies) with the rounding of dtype.c written inline and branch-free, so that the
 * compiler vectorises them; the results are bitwise those of rlx_convert_to_f32 followed by
 * rlx_f32_to_bf16 / rlx_f32_to_f16 (tests/test-convert.c checks every path against them).
 */
#include "io/convert.h"
#include "core/internal.h"

#include <string.h>

/* Below this many elements a conversion runs on the calling thread: starting threads costs more. */
#define PARALLEL_MIN_ELEMS ((int64_t)1 << 18)

static inline float bf16_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float x;
    memcpy(&x, &u, 4);
    return x;
}

/* rlx_f32_to_bf16 without the branch: round to nearest even; NaN made quiet. */
static inline uint16_t f32_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    const uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    const uint32_t q = (u >> 16) | 0x0040u;
    return (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? q : r);
}

static inline float in_f32(const void *src, rlx_dtype dt, int64_t i) {
    switch (dt) {
    case RLX_DTYPE_BF16: return bf16_f32(((const uint16_t *)src)[i]);
    case RLX_DTYPE_F16: return rlx_f16_to_f32(((const uint16_t *)src)[i]);
    default: return ((const float *)src)[i];
    }
}

/* dst[0..n) = round_out(f32(src[i]) · scale[i]) (scale may be NULL). */
static void span(void *dst, rlx_dtype out, const void *src, rlx_dtype in, int64_t n, const float *scale) {
    if (!scale && in == out) {
        memcpy(dst, src, (size_t)n * rlx_dtype_size(in));
        return;
    }
    if (in == RLX_DTYPE_BF16 && out == RLX_DTYPE_BF16) { /* the γ-folded packed weights */
        const uint16_t *restrict s = src;
        uint16_t *restrict d = dst;
        for (int64_t i = 0; i < n; i++) d[i] = f32_bf16(bf16_f32(s[i]) * scale[i]);
        return;
    }
    if (in == RLX_DTYPE_BF16 && out == RLX_DTYPE_F32) {
        const uint16_t *restrict s = src;
        float *restrict d = dst;
        if (scale)
            for (int64_t i = 0; i < n; i++) d[i] = bf16_f32(s[i]) * scale[i];
        else
            for (int64_t i = 0; i < n; i++) d[i] = bf16_f32(s[i]);
        return;
    }
    if (in == RLX_DTYPE_F32 && out == RLX_DTYPE_BF16) {
        const float *restrict s = src;
        uint16_t *restrict d = dst;
        if (scale)
            for (int64_t i = 0; i < n; i++) d[i] = f32_bf16(s[i] * scale[i]);
        else
            for (int64_t i = 0; i < n; i++) d[i] = f32_bf16(s[i]);
        return;
    }
    /* the rest (f16 sources or outputs, f32 with a scale): element by element */
    for (int64_t i = 0; i < n; i++) {
        float x = in_f32(src, in, i);
        if (scale) x *= scale[i];
        if (out == RLX_DTYPE_F32) ((float *)dst)[i] = x;
        else if (out == RLX_DTYPE_BF16) ((uint16_t *)dst)[i] = f32_bf16(x);
        else ((uint16_t *)dst)[i] = rlx_f32_to_f16(x);
    }
}

static int conv_dtype_ok(rlx_dtype d) { return d == RLX_DTYPE_F32 || d == RLX_DTYPE_BF16 || d == RLX_DTYPE_F16; }

rlx__conv rlx__conv_of_view(const rlx_tensor_view *v, rlx_dtype out) {
    rlx__conv c;
    memset(&c, 0, sizeof c);
    c.out = out;
    int64_t numel = 1;
    for (int d = 0; d < v->ndim; d++) numel *= v->shape[d];
    if (v->ndim == 2) rlx__conv_add(&c, v->data, v->dtype, v->shape[0], v->shape[1]);
    else rlx__conv_add(&c, v->data, v->dtype, numel, 1);
    return c;
}

void rlx__conv_add(rlx__conv *c, const void *data, rlx_dtype dtype, int64_t rows, int64_t cols) {
    if (c->n_parts == RLX__CONV_MAX_PARTS) return;
    if (c->n_parts == 0) c->cols = cols;
    c->part[c->n_parts++] = (rlx__conv_part){.data = data, .dtype = dtype, .rows = rows, .ld = cols};
}

int rlx__conv_supported(const rlx__conv *c) {
    if (!conv_dtype_ok(c->out) || c->n_parts < 1 || c->n_parts > RLX__CONV_MAX_PARTS || c->cols < 0) return 0;
    for (int p = 0; p < c->n_parts; p++)
        if (!conv_dtype_ok(c->part[p].dtype) || c->part[p].ld < c->cols || c->part[p].rows < 0) return 0;
    return 1;
}

int64_t rlx__conv_rows(const rlx__conv *c) {
    int64_t r = 0;
    for (int p = 0; p < c->n_parts; p++) r += c->part[p].rows;
    return r;
}

size_t rlx__conv_out_bytes(const rlx__conv *c) {
    return (size_t)rlx__conv_rows(c) * (size_t)c->cols * rlx_dtype_size(c->out);
}

size_t rlx__conv_src_bytes(const rlx__conv *c) {
    size_t b = 0;
    for (int p = 0; p < c->n_parts; p++)
        if (c->part[p].data) b += (size_t)c->part[p].rows * (size_t)c->cols * rlx_dtype_size(c->part[p].dtype);
    return b;
}

typedef struct run_ctx {
    const rlx__conv *c;
    unsigned char *dst; /* output row row0 */
    int64_t row0;
} run_ctx;

/* Output rows [row0 + b, row0 + e) of the job. */
static void run_rows(int64_t b, int64_t e, void *arg) {
    const run_ctx *x = arg;
    const rlx__conv *c = x->c;
    const int64_t C = c->cols;
    const size_t oesz = rlx_dtype_size(c->out);
    int64_t r = x->row0 + b, end = x->row0 + e, base = 0;
    unsigned char *d = x->dst + (size_t)b * (size_t)C * oesz;
    for (int p = 0; p < c->n_parts && r < end; p++) {
        const rlx__conv_part *pt = &c->part[p];
        if (r >= base + pt->rows) {
            base += pt->rows;
            continue;
        }
        const int64_t lo = r - base, hi = (end - base < pt->rows ? end - base : pt->rows);
        if (!pt->data) { /* zero rows: 0 · γ rounded, as a zero source would give (−0 for γ < 0) */
            const float zero[1] = {0};
            for (int64_t i = lo; i < hi; i++) {
                unsigned char *row = d + (size_t)(i - lo) * (size_t)C * oesz;
                if (!c->col_scale) memset(row, 0, (size_t)C * oesz);
                else
                    for (int64_t k = 0; k < C; k++) span(row + (size_t)k * oesz, c->out, zero, RLX_DTYPE_F32, 1, c->col_scale + k);
            }
            d += (size_t)(hi - lo) * (size_t)C * oesz;
            r = base + hi;
            base += pt->rows;
            continue;
        }
        const size_t iesz = rlx_dtype_size(pt->dtype);
        const unsigned char *s = (const unsigned char *)pt->data + (size_t)lo * (size_t)pt->ld * iesz;
        if (pt->ld == C && !c->col_scale) {
            span(d, c->out, s, pt->dtype, (hi - lo) * C, NULL);
        } else {
            for (int64_t i = lo; i < hi; i++, s += (size_t)pt->ld * iesz)
                span(d + (size_t)(i - lo) * (size_t)C * oesz, c->out, s, pt->dtype, C, c->col_scale);
        }
        d += (size_t)(hi - lo) * (size_t)C * oesz;
        r = base + hi;
        base += pt->rows;
    }
}

void rlx__conv_run(const rlx__conv *c, void *dst, int64_t row0, int64_t nrows, int threads) {
    if (nrows <= 0 || c->cols == 0) return;
    run_ctx x = {c, dst, row0};
    if (threads <= 0) threads = rlx__cpu_count();
    const int64_t elems = nrows * c->cols;
    int64_t most = elems / (PARALLEL_MIN_ELEMS / 2);
    if (most < 1) most = 1;
    if (threads > most) threads = (int)most;
    if (threads > nrows) threads = (int)nrows;
    rlx__parallel_for(nrows, threads, run_rows, &x);
}
