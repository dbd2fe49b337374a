/* The f32 residual stream's kernels (kernels/fused_norm.cu: embed_f32, residual_rowscale,
 * residual_add; kernels/rms_norm.cu: residual_rms_norm), run through the simt harness by calling
 * the rlx_simt_* launchers on host memory, against the CPU reference on the same inputs.
 *
 * Every output is NaN-poisoned before the launch and fenced by guard bytes on both sides; inputs
 * must come back unchanged. The structural contracts are checked bit for bit: the f32 stream is
 * a + b in f32 (one f32 rounding), the embedding an exact copy, every bf16 operand ("shadow") the
 * f32 value rounded once; the row scales and the norm against f64 references by NMSE (NUMERICS.md:
 * 1e-10 where the math is f32, 1e-5 for a bf16 output). Shapes: widths 1, odd, multiples of 4 and
 * not of 8, a LLaMA width; offsets that force the element path. ctest runs both thread orders. */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rlx/weights.h"
#include "runtime/cpu_ref.h"
#include "rlx_kernels.h"
#include "simt/include/rlx_simt/runtime.h"
#include "testutil.h"

#define GUARD 256
#define GUARD_BYTE 0xA5
#define BOUND_F32 1e-10
#define BOUND_BF16 1e-5

typedef struct gbuf {
    unsigned char *base, *p;
    size_t bytes;
} gbuf;

static void *gb_new(gbuf *b, size_t bytes, size_t off) {
    size_t total = (2 * GUARD + off + bytes + 255) / 256 * 256;
    b->base = aligned_alloc(256, total);
    cr_assert(b->base, "out of memory (%zu bytes)", total);
    memset(b->base, GUARD_BYTE, total);
    b->p = b->base + GUARD + off;
    b->bytes = bytes;
    memset(b->p, 0xff, bytes); /* NaN in f32 and bf16: an element the kernel forgets shows */
    return b->p;
}

static int gb_guards_ok(const gbuf *b) {
    for (const unsigned char *q = b->base; q < b->p; q++)
        if (*q != GUARD_BYTE) return 0;
    for (size_t i = 0; i < GUARD; i++)
        if (b->p[b->bytes + i] != GUARD_BYTE) return 0;
    return 1;
}

static void gb_free(gbuf *b) {
    free(b->base);
    memset(b, 0, sizeof *b);
}

static size_t esz(rlx_kdtype dt) { return dt == RLX_K_F32 ? 4 : 2; }
static const char *dtname(rlx_kdtype dt) { return dt == RLX_K_F32 ? "f32" : "bf16"; }
static float round_dt(float v, rlx_kdtype dt) { return dt == RLX_K_F32 ? v : rlx_bf16_to_f32(rlx_f32_to_bf16(v)); }

static void put(void *dst, const float *src, size_t n, rlx_kdtype dt) {
    for (size_t i = 0; i < n; i++) {
        if (dt == RLX_K_F32) memcpy((char *)dst + 4 * i, &src[i], 4);
        else {
            uint16_t h = rlx_f32_to_bf16(src[i]);
            memcpy((char *)dst + 2 * i, &h, 2);
        }
    }
}

static float get1(const void *src, size_t i, rlx_kdtype dt) {
    if (dt == RLX_K_F32) {
        float v;
        memcpy(&v, (const char *)src + 4 * i, 4);
        return v;
    }
    uint16_t h;
    memcpy(&h, (const char *)src + 2 * i, 2);
    return rlx_bf16_to_f32(h);
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    cr_assert(p, "out of memory (%zu bytes)", n);
    return p;
}

/* f32 values whose rows span four decades of magnitude: a residual stream's rows do. */
static void fill_rows(rlxt_rng *r, float *x, int64_t rows, int64_t cols, double decades, rlx_kdtype dt) {
    for (int64_t i = 0; i < rows; i++) {
        const float m = (float)pow(10.0, decades * rlxt_uniform(r));
        for (int64_t c = 0; c < cols; c++) x[i * cols + c] = round_dt(rlxt_uniform(r) * m, dt);
    }
}

static double nmse(const float *got, const float *ref, size_t n, long long *bad) {
    double num = 0, den = 0;
    *bad = -1;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i]) && *bad < 0) *bad = (long long)i;
        const double d = (double)got[i] - ref[i];
        num += d * d, den += (double)ref[i] * ref[i];
    }
    return den > 0 ? num / den : num;
}

static void ref_rowscale(float *s, const float *x, int64_t rows, int64_t cols, double eps) {
    for (int64_t r = 0; r < rows; r++) {
        double ss = 0;
        for (int64_t c = 0; c < cols; c++) ss += (double)x[r * cols + c] * x[r * cols + c];
        s[r] = (float)(1.0 / sqrt(ss / (double)cols + eps));
    }
}

#define CHECK_NMSE(what, got, ref, n, bound)                                                                                  \
    do {                                                                                                                      \
        long long bad_;                                                                                                       \
        const double e_ = nmse((got), (ref), (n), &bad_);                                                                     \
        cr_expect(bad_ < 0 && e_ <= (bound), "%s %s %s seed %llu: NMSE %.3e (bound %.0e), first non-finite at %lld", op,      \
                  what, shape, (unsigned long long)seed, e_, (double)(bound), bad_);                                          \
        if (e_ > worst) worst = e_;                                                                                           \
    } while (0)

/* shadow[i] must be round_dt(want[i]) bit for bit */
static long long first_shadow_mismatch(const void *shadow, const float *want, size_t n, rlx_kdtype dt) {
    for (size_t i = 0; i < n; i++) {
        const float a = get1(shadow, i, dt), b = round_dt(want[i], dt);
        if (memcmp(&a, &b, 4)) return (long long)i;
    }
    return -1;
}

typedef struct row_case {
    int64_t rows, cols;
    size_t off; /* elements added to every row pointer: 1 or 3 forces the element path */
} row_case;

/* widths 1, odd, 4 (the vector path) and not 8, 64, a LLaMA-1B width, 1000 and 4 × odd */
static const row_case CASES[] = {
    {1, 1, 0}, {3, 7, 0}, {2, 4, 0}, {17, 12, 0}, {5, 1000, 0}, {129, 1004, 0}, {33, 200, 1}, {4, 2048, 0}, {1000, 24, 0}, {7, 68, 3},
};
#define N_CASES (sizeof CASES / sizeof CASES[0])
static const float EPS = 1e-5f;

/* ---- residual_rowscale: s of an f32 row and its rounded copy ------------------------------------------ */

Test(residual_kernels, residual_rowscale) {
    const char *op = "residual_rowscale";
    double worst = 0;
    for (int di = 0; di < 2; di++)
        for (size_t ci = 0; ci < N_CASES; ci++)
            for (int mode = 0; mode < 3; mode++) { /* s and xb, s only, xb only */
                const rlx_kdtype dt = di ? RLX_K_F32 : RLX_K_BF16;
                const row_case *c = &CASES[ci];
                const uint64_t seed = 7000 + 10 * ci + 3 * (uint64_t)di + (uint64_t)mode;
                rlxt_rng rng = {seed};
                char shape[128];
                snprintf(shape, sizeof shape, "rows=%lld cols=%lld off=%zu %s %s", (long long)c->rows, (long long)c->cols, c->off,
                         mode == 2 ? "xb only" : mode == 1 ? "s only" : "s+xb", dtname(dt));
                const size_t n = (size_t)(c->rows * c->cols);
                float *x = xmalloc(n * 4), *sref = xmalloc((size_t)c->rows * 4);
                fill_rows(&rng, x, c->rows, c->cols, 2.0, RLX_K_F32);
                gbuf bx, bs, bb;
                float *dx = gb_new(&bx, n * 4, c->off * 4);
                memcpy(dx, x, n * 4);
                float *ds = mode != 2 ? gb_new(&bs, (size_t)c->rows * 4, 0) : NULL;
                void *db = mode != 1 ? gb_new(&bb, n * esz(dt), c->off * esz(dt)) : NULL;
                int code = rlx_simt_residual_rowscale(ds, db, dx, c->rows, c->cols, EPS, dt, NULL);
                cr_expect_eq(code, 0, "%s %s seed %llu: launcher returned %d (%s)", op, shape, (unsigned long long)seed, code,
                             rlx_simt_last_error());
                if (ds) {
                    ref_rowscale(sref, x, c->rows, c->cols, EPS);
                    CHECK_NMSE("s", ds, sref, (size_t)c->rows, BOUND_F32);
                    cr_expect(gb_guards_ok(&bs), "%s %s: wrote outside s", op, shape);
                }
                if (db) {
                    long long at = first_shadow_mismatch(db, x, n, dt);
                    cr_expect(at < 0, "%s %s seed %llu: xb != x rounded to %s at %lld", op, shape, (unsigned long long)seed, dtname(dt),
                              at);
                    cr_expect(gb_guards_ok(&bb), "%s %s: wrote outside xb", op, shape);
                }
                cr_expect(!memcmp(dx, x, n * 4) && gb_guards_ok(&bx), "%s %s: x (an input) changed", op, shape);
                gb_free(&bx);
                if (ds) gb_free(&bs);
                if (db) gb_free(&bb);
                free(x), free(sref);
            }
    fprintf(stderr, "residual-kernels: %-18s worst NMSE %.3e\n", op, worst);
}

/* ---- residual_add: y = a + b in f32, its shadow and row scales ------------------------------------------- */

Test(residual_kernels, residual_add) {
    const char *op = "residual_add";
    double worst = 0;
    for (int di = 0; di < 2; di++)
        for (size_t ci = 0; ci < N_CASES; ci++)
            for (int mode = 0; mode < 4; mode++) { /* y separate + yb + s; y == a + yb + s; y only; y == a + s */
                const rlx_kdtype dt = di ? RLX_K_F32 : RLX_K_BF16;
                const row_case *c = &CASES[ci];
                const uint64_t seed = 8000 + 10 * ci + 4 * (uint64_t)di + (uint64_t)mode;
                rlxt_rng rng = {seed};
                const int alias = mode == 1 || mode == 3, with_yb = mode <= 1, with_s = mode != 2;
                char shape[160];
                snprintf(shape, sizeof shape, "rows=%lld cols=%lld off=%zu %s%s%s %s", (long long)c->rows, (long long)c->cols, c->off,
                         alias ? "y==a" : "y separate", with_yb ? " +yb" : "", with_s ? " +s" : "", dtname(dt));
                const size_t n = (size_t)(c->rows * c->cols);
                float *a = xmalloc(n * 4), *b = xmalloc(n * 4), *y = xmalloc(n * 4), *sref = xmalloc((size_t)c->rows * 4);
                fill_rows(&rng, a, c->rows, c->cols, 2.0, RLX_K_F32); /* the stream: f32 */
                fill_rows(&rng, b, c->rows, c->cols, 1.0, dt);        /* a GEMM's output: dt */
                for (size_t i = 0; i < n; i++) y[i] = a[i] + b[i];    /* one f32 rounding */
                gbuf ba, bb, by, byb, bs;
                float *da = gb_new(&ba, n * 4, c->off * 4);
                memcpy(da, a, n * 4);
                void *dbv = gb_new(&bb, n * esz(dt), c->off * esz(dt));
                put(dbv, b, n, dt);
                float *dy = alias ? da : gb_new(&by, n * 4, c->off * 4);
                void *dyb = with_yb ? gb_new(&byb, n * esz(dt), c->off * esz(dt)) : NULL;
                float *ds = with_s ? gb_new(&bs, (size_t)c->rows * 4, 0) : NULL;
                int code = rlx_simt_residual_add(dy, dyb, ds, da, dbv, c->rows, c->cols, EPS, dt, NULL);
                cr_expect_eq(code, 0, "%s %s seed %llu: launcher returned %d (%s)", op, shape, (unsigned long long)seed, code,
                             rlx_simt_last_error());
                cr_expect(!memcmp(dy, y, n * 4), "%s %s seed %llu: y != a + b in f32", op, shape, (unsigned long long)seed);
                if (dyb) {
                    long long at = first_shadow_mismatch(dyb, y, n, dt);
                    cr_expect(at < 0, "%s %s seed %llu: yb != y rounded at %lld", op, shape, (unsigned long long)seed, at);
                    cr_expect(gb_guards_ok(&byb), "%s %s: wrote outside yb", op, shape);
                }
                if (ds) {
                    ref_rowscale(sref, y, c->rows, c->cols, EPS);
                    CHECK_NMSE("s", ds, sref, (size_t)c->rows, BOUND_F32);
                    cr_expect(gb_guards_ok(&bs), "%s %s: wrote outside s", op, shape);
                }
                cr_expect(gb_guards_ok(&ba) && gb_guards_ok(&bb), "%s %s: wrote outside a or b", op, shape);
                if (!alias) {
                    cr_expect(!memcmp(da, a, n * 4), "%s %s: a (an input) changed", op, shape);
                    cr_expect(gb_guards_ok(&by), "%s %s: wrote outside y", op, shape);
                    gb_free(&by);
                }
                gb_free(&ba), gb_free(&bb);
                if (dyb) gb_free(&byb);
                if (ds) gb_free(&bs);
                free(a), free(b), free(y), free(sref);
            }
    fprintf(stderr, "residual-kernels: %-18s worst NMSE %.3e\n", op, worst);
}

/* ---- embed_f32: the rows in f32, their copy in dt, row scales -------------------------------------------- */

Test(residual_kernels, embed_f32) {
    const char *op = "embed_f32";
    double worst = 0;
    for (int di = 0; di < 2; di++)
        for (size_t ci = 0; ci < N_CASES; ci++)
            for (int mode = 0; mode < 2; mode++) { /* y + yb + s; y only */
                const rlx_kdtype dt = di ? RLX_K_F32 : RLX_K_BF16;
                const row_case *c = &CASES[ci];
                const int64_t T = c->rows, H = c->cols, V = 37;
                const uint64_t seed = 9000 + 10 * ci + 2 * (uint64_t)di + (uint64_t)mode;
                rlxt_rng rng = {seed};
                char shape[128];
                snprintf(shape, sizeof shape, "T=%lld H=%lld V=%lld off=%zu %s %s", (long long)T, (long long)H, (long long)V, c->off,
                         mode ? "y only" : "y+yb+s", dtname(dt));
                float *tab = xmalloc((size_t)(V * H) * 4), *y = xmalloc((size_t)(T * H) * 4), *sref = xmalloc((size_t)T * 4);
                fill_rows(&rng, tab, V, H, 1.5, dt);
                gbuf bt, bk, by, byb, bs;
                put(gb_new(&bt, (size_t)(V * H) * esz(dt), c->off * esz(dt)), tab, (size_t)(V * H), dt);
                int32_t *tok = gb_new(&bk, (size_t)T * 4, 0);
                for (int64_t t = 0; t < T; t++) tok[t] = (int32_t)(rlxt_next(&rng) % (uint64_t)V);
                tok[T - 1] = (int32_t)(V - 1);
                for (int64_t t = 0; t < T; t++) memcpy(y + t * H, tab + tok[t] * H, (size_t)H * 4);
                float *dy = gb_new(&by, (size_t)(T * H) * 4, c->off * 4);
                void *dyb = mode ? NULL : gb_new(&byb, (size_t)(T * H) * esz(dt), c->off * esz(dt));
                float *ds = mode ? NULL : gb_new(&bs, (size_t)T * 4, 0);
                int code = rlx_simt_embed_f32(dy, dyb, ds, tok, bt.p, T, H, EPS, dt, NULL);
                cr_expect_eq(code, 0, "%s %s seed %llu: launcher returned %d (%s)", op, shape, (unsigned long long)seed, code,
                             rlx_simt_last_error());
                cr_expect(!memcmp(dy, y, (size_t)(T * H) * 4), "%s %s seed %llu: y is not the table rows exactly", op, shape,
                          (unsigned long long)seed);
                cr_expect(gb_guards_ok(&by), "%s %s: wrote outside y", op, shape);
                if (dyb) {
                    long long at = first_shadow_mismatch(dyb, y, (size_t)(T * H), dt);
                    cr_expect(at < 0, "%s %s seed %llu: yb is not the table rows at %lld", op, shape, (unsigned long long)seed, at);
                    cr_expect(gb_guards_ok(&byb), "%s %s: wrote outside yb", op, shape);
                    ref_rowscale(sref, y, T, H, EPS);
                    CHECK_NMSE("s", ds, sref, (size_t)T, BOUND_F32);
                    cr_expect(gb_guards_ok(&bs), "%s %s: wrote outside s", op, shape);
                    gb_free(&byb), gb_free(&bs);
                }
                cr_expect(gb_guards_ok(&bt), "%s %s: wrote outside the table", op, shape);
                gb_free(&bt), gb_free(&bk), gb_free(&by);
                free(tab), free(y), free(sref);
            }
    fprintf(stderr, "residual-kernels: %-18s worst NMSE %.3e\n", op, worst);
}

/* ---- residual_rms_norm: the norm of an f32 row into dt, all rows or one per sequence -------------------- */

Test(residual_kernels, residual_rms_norm) {
    const char *op = "residual_rms_norm";
    double worst = 0;
    for (int di = 0; di < 2; di++)
        for (size_t ci = 0; ci < N_CASES; ci++)
            for (int last = 0; last < 2; last++) {
                const rlx_kdtype dt = di ? RLX_K_F32 : RLX_K_BF16;
                const row_case *c = &CASES[ci];
                const uint64_t seed = 9500 + 10 * ci + 2 * (uint64_t)di + (uint64_t)last;
                rlxt_rng rng = {seed};
                /* last-token: three ragged sequences (or one when there are too few rows) */
                int64_t ns = last ? (c->rows >= 3 ? 3 : 1) : c->rows, start[4] = {0, c->rows, c->rows, c->rows};
                if (last && ns == 3) start[1] = 1, start[2] = c->rows / 2 + 1;
                char shape[128];
                snprintf(shape, sizeof shape, "rows=%lld cols=%lld off=%zu %s %s", (long long)c->rows, (long long)c->cols, c->off,
                         last ? "last-token" : "every row", dtname(dt));
                const size_t n = (size_t)(c->rows * c->cols), no = (size_t)(ns * c->cols);
                float *x = xmalloc(n * 4), *g = xmalloc((size_t)c->cols * 4), *ref = xmalloc(no * 4), *got = xmalloc(no * 4);
                fill_rows(&rng, x, c->rows, c->cols, 2.0, RLX_K_F32);
                for (int64_t i = 0; i < c->cols; i++) g[i] = round_dt(1.0f + 0.5f * rlxt_uniform(&rng), dt);
                gbuf bx, bg, by, bst;
                float *dx = gb_new(&bx, n * 4, c->off * 4);
                memcpy(dx, x, n * 4);
                put(gb_new(&bg, (size_t)c->cols * esz(dt), c->off * esz(dt)), g, (size_t)c->cols, dt);
                void *dy = gb_new(&by, no * esz(dt), c->off * esz(dt));
                int32_t *dst = gb_new(&bst, 4 * 4, 0);
                for (int i = 0; i < 4; i++) dst[i] = (int32_t)start[i];
                int code = rlx_simt_residual_rms_norm(dy, dx, bg.p, last ? dst : NULL, ns, c->cols, EPS, dt, NULL);
                cr_expect_eq(code, 0, "%s %s seed %llu: launcher returned %d (%s)", op, shape, (unsigned long long)seed, code,
                             rlx_simt_last_error());
                for (int64_t r = 0; r < ns; r++) {
                    const int64_t src = last ? start[r + 1] - 1 : r;
                    rlx__ref_rms_norm(ref + r * c->cols, x + src * c->cols, g, 1, c->cols, EPS);
                }
                for (size_t i = 0; i < no; i++) got[i] = get1(dy, i, dt);
                /* one bf16 rounding of a handful of elements can reach 2^-16 alone */
                CHECK_NMSE("y", got, ref, no, dt == RLX_K_F32 ? BOUND_F32 : no < 64 ? 0x1p-16 : BOUND_BF16);
                cr_expect(gb_guards_ok(&by), "%s %s: wrote outside y", op, shape);
                cr_expect(!memcmp(dx, x, n * 4) && gb_guards_ok(&bx) && gb_guards_ok(&bg), "%s %s: an input changed", op, shape);
                gb_free(&bx), gb_free(&bg), gb_free(&by), gb_free(&bst);
                free(x), free(g), free(ref), free(got);
            }
    fprintf(stderr, "residual-kernels: %-18s worst NMSE %.3e\n", op, worst);
}

/* ---- argument validation ------------------------------------------------------------------------------- */

Test(residual_kernels, arguments) {
    gbuf bx, bs;
    float *x = gb_new(&bx, 64 * 4, 0), *s = gb_new(&bs, 64 * 4, 0);
    const int inval = 1; /* cudaErrorInvalidValue */
    int32_t tok[2] = {0, 1};
    cr_expect_eq(rlx_simt_residual_rowscale(NULL, NULL, x, 1, 8, EPS, RLX_K_BF16, NULL), inval, "neither s nor xb");
    cr_expect_eq(rlx_simt_residual_rowscale(s, NULL, NULL, 1, 8, EPS, RLX_K_BF16, NULL), inval);
    cr_expect_eq(rlx_simt_residual_rowscale(s, NULL, x, 1, 0, EPS, RLX_K_BF16, NULL), inval);
    cr_expect_eq(rlx_simt_residual_rowscale(s, NULL, x, 1, 8, 0.0f, RLX_K_BF16, NULL), inval);
    cr_expect_eq(rlx_simt_residual_rowscale(s, x, x, 1, 8, EPS, (rlx_kdtype)7, NULL), inval);
    cr_expect_eq(rlx_simt_residual_add(x, NULL, NULL, x, NULL, 1, 8, EPS, RLX_K_BF16, NULL), inval);
    cr_expect_eq(rlx_simt_residual_add(NULL, NULL, NULL, x, x, 1, 8, EPS, RLX_K_BF16, NULL), inval);
    cr_expect_eq(rlx_simt_residual_add(x, NULL, s, x, x, 1, 8, -1.0f, RLX_K_BF16, NULL), inval);
    cr_expect_eq(rlx_simt_embed_f32(x, NULL, NULL, NULL, x, 1, 8, EPS, RLX_K_BF16, NULL), inval);
    cr_expect_eq(rlx_simt_embed_f32(x, NULL, NULL, tok, x, -1, 8, EPS, RLX_K_BF16, NULL), inval);
    cr_expect_eq(rlx_simt_residual_rms_norm(x, x, NULL, NULL, 1, 8, EPS, RLX_K_BF16, NULL), inval);
    cr_expect_eq(rlx_simt_residual_rms_norm(x, x, x, NULL, 1, 8, 0.0f, RLX_K_BF16, NULL), inval);
    /* zero rows: nothing to do, nothing written */
    cr_expect_eq(rlx_simt_residual_rowscale(s, NULL, x, 0, 8, EPS, RLX_K_BF16, NULL), 0);
    cr_expect_eq(rlx_simt_residual_add(x, NULL, s, x, x, 0, 8, EPS, RLX_K_BF16, NULL), 0);
    cr_expect_eq(rlx_simt_embed_f32(x, NULL, s, tok, x, 0, 8, EPS, RLX_K_BF16, NULL), 0);
    cr_expect_eq(rlx_simt_residual_rms_norm(x, x, x, NULL, 0, 8, EPS, RLX_K_BF16, NULL), 0);
    for (int i = 0; i < 64 * 4; i++) cr_expect_eq(((unsigned char *)s)[i], 0xff, "s written by a rejected call");
    cr_expect(gb_guards_ok(&bx) && gb_guards_ok(&bs));
    gb_free(&bx), gb_free(&bs);
}
