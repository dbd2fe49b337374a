/* `rlx check`: each device kernel against the CPU reference on random awkward shapes (NUMERICS.md
 * bounds, NaN-poisoned outputs, guard bytes after every output), and whole models on the device
 * against the CPU reference. */
#include "tools/check.h"
#include "tools/tp.h"
#include "runtime/cpu_ref.h"
#include "rlx/encoder.h"
#include "rlx/profile.h"
#include "rlx/weights.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GUARD 256
#define GUARD_BYTE 0xA5

void rlx__check_report_free(rlx__check_report *r) {
    free(r->rows);
    memset(r, 0, sizeof *r);
}

static rlx__check_row *new_row(rlx__check_report *r) {
    if (r->n == r->cap) {
        int nc = r->cap ? r->cap * 2 : 32;
        rlx__check_row *p = realloc(r->rows, (size_t)nc * sizeof *p);
        if (!p) return NULL;
        r->rows = p;
        r->cap = nc;
    }
    rlx__check_row *row = &r->rows[r->n++];
    memset(row, 0, sizeof *row);
    return row;
}

/* ---- data ------------------------------------------------------------------------------------------ */

static uint64_t mix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static float uni(uint64_t *s) { return (float)((double)(mix(s) >> 11) * 0x1.0p-52 - 1.0); }

/* Random values already representable in dt, so device and reference see the same inputs. */
static void fill(float *x, size_t n, float scale, rlx_kdtype dt, uint64_t *s) {
    for (size_t i = 0; i < n; i++) {
        float v = uni(s) * scale;
        x[i] = dt == RLX_K_BF16 ? rlx_bf16_to_f32(rlx_f32_to_bf16(v)) : v;
    }
}

typedef struct dctx {
    const rlx__device_ops *ops;
    rlx__device *dev;
    rlx_kdtype dt;
    void *bufs[16];
    size_t sizes[16];
    int n;
    rlx_status err;
} dctx;

static size_t esz(rlx_kdtype dt) { return dt == RLX_K_F32 ? 4 : 2; }

/* Device buffer holding n activations (or raw bytes when host is NULL and bytes given), followed
 * by guard bytes. */
static void *dput(dctx *c, const float *host, size_t n) {
    if (c->err) return NULL;
    size_t bytes = n * esz(c->dt);
    void *p = NULL;
    if ((c->err = c->ops->alloc(c->dev, bytes + GUARD, "a check buffer", &p))) return NULL;
    c->bufs[c->n] = p;
    c->sizes[c->n++] = bytes;
    unsigned char *h = malloc(bytes + GUARD);
    if (!h) {
        c->err = RLX_ERR_OUT_OF_MEMORY;
        return NULL;
    }
    if (host) {
        for (size_t i = 0; i < n; i++) {
            if (c->dt == RLX_K_F32) memcpy(h + 4 * i, &host[i], 4);
            else {
                uint16_t b = rlx_f32_to_bf16(host[i]);
                memcpy(h + 2 * i, &b, 2);
            }
        }
    } else {
        memset(h, 0xff, bytes); /* NaN in bf16 and f32: an element the kernel forgets shows */
    }
    memset(h + bytes, GUARD_BYTE, GUARD);
    c->err = c->ops->h2d(c->dev, p, h, bytes + GUARD, NULL);
    free(h);
    return p;
}

static void *dput_raw(dctx *c, const void *host, size_t bytes) {
    if (c->err) return NULL;
    void *p = NULL;
    if ((c->err = c->ops->alloc(c->dev, bytes + GUARD, "a check buffer", &p))) return NULL;
    c->bufs[c->n] = p;
    c->sizes[c->n++] = bytes;
    c->err = c->ops->h2d(c->dev, p, host, bytes, NULL);
    return p;
}

/* Reads n activations back; returns 0 if the guard after them was overwritten. */
static int dget(dctx *c, float *host, const void *dptr, size_t n) {
    if (c->err) return 1;
    size_t bytes = n * esz(c->dt);
    unsigned char *h = malloc(bytes + GUARD);
    if (!h) {
        c->err = RLX_ERR_OUT_OF_MEMORY;
        return 1;
    }
    c->err = c->ops->d2h_sync(c->dev, h, dptr, bytes + GUARD, NULL);
    int ok = 1;
    for (size_t i = 0; i < GUARD; i++) ok &= h[bytes + i] == GUARD_BYTE;
    if (c->dt == RLX_K_F32) memcpy(host, h, bytes);
    else rlx_convert_to_f32(host, h, RLX_DTYPE_BF16, n);
    free(h);
    return ok;
}

static void dfree_all(dctx *c) {
    for (int i = 0; i < c->n; i++) c->ops->free(c->dev, c->bufs[i]);
    c->n = 0;
}

/* Fills a row from device output vs reference. */
static void judge(rlx__check_row *row, const float *got, const float *ref, size_t n, double bound, int guard_ok) {
    double num = 0, den = 0, mx = 0;
    size_t first_bad = SIZE_MAX;
    int nonfinite = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i])) {
            nonfinite = 1;
            if (first_bad == SIZE_MAX) first_bad = i;
            continue;
        }
        double d = (double)got[i] - ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
        if (fabs(d) > mx) mx = fabs(d);
        if (first_bad == SIZE_MAX && fabs(d) > 1e-2 * (fabs(ref[i]) + 1e-2) && fabs(d) > 1e-3) first_bad = i;
    }
    row->nmse = den > 0 ? num / den : num;
    row->max_err = mx;
    row->bound = bound;
    row->pass = !nonfinite && guard_ok && row->nmse <= bound;
    if (nonfinite)
        snprintf(row->note, sizeof row->note, "non-finite output at index %zu (got %g, want %g)", first_bad,
                 (double)got[first_bad], (double)ref[first_bad]);
    else if (!guard_ok)
        snprintf(row->note, sizeof row->note, "wrote past the end of its output (guard bytes changed)");
    else if (!row->pass && first_bad != SIZE_MAX)
        snprintf(row->note, sizeof row->note, "first mismatch at index %zu: got %.6g, want %.6g", first_bad,
                 (double)got[first_bad], (double)ref[first_bad]);
}

static void finish(rlx__check_report *r, rlx__check_row *row, dctx *c, int code, const char *what) {
    if (code) {
        rlx_status s = c->ops->check(c->dev, code, what);
        row->pass = 0;
        snprintf(row->note, sizeof row->note, "launch failed: %.140s", rlx_status_string(s));
        (void)s;
    }
    if (!row->pass) r->failed++;
}

#define BOUND(dt, f32b, bf16b) ((dt) == RLX_K_F32 ? (f32b) : (bf16b))

/* ---- kernels ---------------------------------------------------------------------------------------- */

static void check_embed(dctx *c, rlx__check_report *r, int64_t T, int64_t H, int64_t V, uint64_t *s) {
    rlx__check_row *row = new_row(r);
    if (!row) return;
    snprintf(row->op, sizeof row->op, "embed");
    snprintf(row->shape, sizeof row->shape, "T=%lld H=%lld V=%lld", (long long)T, (long long)H, (long long)V);
    float *tab = malloc(sizeof(float) * (size_t)(V * H)), *ref = malloc(sizeof(float) * (size_t)(T * H)),
          *got = malloc(sizeof(float) * (size_t)(T * H));
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)T);
    if (!tab || !ref || !got || !tok) goto out;
    fill(tab, (size_t)(V * H), 1, c->dt, s);
    for (int64_t t = 0; t < T; t++) tok[t] = (int32_t)(mix(s) % (uint64_t)V);
    tok[0] = (int32_t)(V - 1);
    for (int64_t t = 0; t < T; t++) memcpy(ref + t * H, tab + tok[t] * H, sizeof(float) * (size_t)H);
    void *dt_ = dput(c, tab, (size_t)(V * H)), *dk = dput_raw(c, tok, sizeof(int32_t) * (size_t)T), *dy = dput(c, NULL, (size_t)(T * H));
    int code = c->err ? 0 : c->ops->k.embed(dy, dk, dt_, T, H, c->dt, NULL);
    int g = code ? 1 : dget(c, got, dy, (size_t)(T * H));
    if (!code && !c->err) judge(row, got, ref, (size_t)(T * H), BOUND(c->dt, 0, 0), g);
    finish(r, row, c, code, "embed");
out:
    free(tab), free(ref), free(got), free(tok);
    dfree_all(c);
}

static void check_rms(dctx *c, rlx__check_report *r, int64_t rows, int64_t cols, uint64_t *s) {
    rlx__check_row *row = new_row(r);
    if (!row) return;
    snprintf(row->op, sizeof row->op, "rms_norm");
    snprintf(row->shape, sizeof row->shape, "rows=%lld cols=%lld", (long long)rows, (long long)cols);
    size_t n = (size_t)(rows * cols);
    float *x = malloc(sizeof(float) * n), *g = malloc(sizeof(float) * (size_t)cols), *ref = malloc(sizeof(float) * n),
          *got = malloc(sizeof(float) * n);
    if (!x || !g || !ref || !got) goto out;
    fill(x, n, 3, c->dt, s);
    fill(g, (size_t)cols, 1, c->dt, s);
    rlx__ref_rms_norm(ref, x, g, rows, cols, 1e-5);
    void *dx = dput(c, x, n), *dg = dput(c, g, (size_t)cols), *dy = dput(c, NULL, n);
    int code = c->err ? 0 : c->ops->k.rms_norm(dy, dx, dg, rows, cols, 1e-5f, c->dt, NULL);
    int gd = code ? 1 : dget(c, got, dy, n);
    if (!code && !c->err) judge(row, got, ref, n, BOUND(c->dt, 1e-10, 1e-5), gd);
    finish(r, row, c, code, "rms_norm");
out:
    free(x), free(g), free(ref), free(got);
    dfree_all(c);
}

static void check_rope(dctx *c, rlx__check_report *r, int64_t T, int64_t heads, int64_t D, int64_t ld_extra, uint64_t *s) {
    rlx__check_row *row = new_row(r);
    if (!row) return;
    const int64_t ld = heads * D + ld_extra, half = D / 2, P = T + 5;
    snprintf(row->op, sizeof row->op, "rope");
    snprintf(row->shape, sizeof row->shape, "T=%lld heads=%lld head_dim=%lld ld=%lld", (long long)T, (long long)heads,
             (long long)D, (long long)ld);
    size_t n = (size_t)(T * ld);
    float *x = malloc(sizeof(float) * n), *ref = malloc(sizeof(float) * n), *got = malloc(sizeof(float) * n);
    float *ct = malloc(sizeof(float) * (size_t)(P * half)), *st = malloc(sizeof(float) * (size_t)(P * half));
    int32_t *pos = malloc(sizeof(int32_t) * (size_t)T);
    int64_t *pos64 = malloc(sizeof(int64_t) * (size_t)T);
    if (!x || !ref || !got || !ct || !st || !pos || !pos64) goto out;
    fill(x, n, 2, c->dt, s);
    rlx_rope_params rp = {.head_dim = D, .max_positions = P, .theta = 500000.0, .scaling = RLX_ROPE_SCALING_LLAMA3,
                          .factor = 32, .low_freq_factor = 1, .high_freq_factor = 4, .original_max_positions = 64};
    rlx__ref_rope_tables(ct, st, &rp);
    for (int64_t t = 0; t < T; t++) pos[t] = (int32_t)(mix(s) % (uint64_t)P), pos64[t] = pos[t];
    /* the reference works on dense rows: apply it per row, copying padding through */
    memcpy(ref, x, sizeof(float) * n);
    for (int64_t t = 0; t < T; t++) rlx__ref_rope(ref + t * ld, x + t * ld, ct, st, &pos64[t], 1, heads, D);
    void *dx = dput(c, x, n), *dc = dput_raw(c, ct, sizeof(float) * (size_t)(P * half)),
         *ds = dput_raw(c, st, sizeof(float) * (size_t)(P * half)), *dp = dput_raw(c, pos, sizeof(int32_t) * (size_t)T);
    /* in place, as the planner uses it on packed QKV */
    int code = c->err ? 0 : c->ops->k.rope(dx, dx, dc, ds, dp, T, heads, D, ld, c->dt, NULL);
    int gd = code ? 1 : dget(c, got, dx, n);
    if (!code && !c->err) judge(row, got, ref, n, BOUND(c->dt, 1e-10, 1e-5), gd);
    finish(r, row, c, code, "rope");
out:
    free(x), free(ref), free(got), free(ct), free(st), free(pos), free(pos64);
    dfree_all(c);
}

static void check_attention(dctx *c, rlx__check_report *r, const int64_t *lens, int64_t n_seqs, int64_t heads,
                            int64_t kv, int64_t D, int causal, uint64_t *s) {
    rlx__check_row *row = new_row(r);
    if (!row) return;
    int64_t start[17], T = 0, max_len = 0;
    int32_t start32[17];
    start[0] = 0;
    char lens_s[64] = "";
    size_t ll = 0;
    for (int64_t q = 0; q < n_seqs; q++) {
        start[q + 1] = start[q] + lens[q];
        if (lens[q] > max_len) max_len = lens[q];
        ll += (size_t)snprintf(lens_s + ll, sizeof lens_s - ll, "%s%lld", q ? "," : "", (long long)lens[q]);
        if (ll >= sizeof lens_s) ll = sizeof lens_s - 1;
    }
    T = start[n_seqs];
    for (int64_t q = 0; q <= n_seqs; q++) start32[q] = (int32_t)start[q];
    snprintf(row->op, sizeof row->op, "attention");
    snprintf(row->shape, sizeof row->shape, "seqs=[%s] heads=%lld kv=%lld head_dim=%lld%s", lens_s, (long long)heads,
             (long long)kv, (long long)D, causal ? " causal" : "");
    size_t nq = (size_t)(T * heads * D), nk = (size_t)(T * kv * D);
    float *q = malloc(sizeof(float) * nq), *k = malloc(sizeof(float) * nk), *v = malloc(sizeof(float) * nk),
          *ref = malloc(sizeof(float) * nq), *got = malloc(sizeof(float) * nq);
    if (!q || !k || !v || !ref || !got) goto out;
    fill(q, nq, 2, c->dt, s);
    fill(k, nk, 2, c->dt, s);
    fill(v, nk, 1, c->dt, s);
    rlx__batch b = {NULL, T, start, n_seqs, NULL, 0, NULL};
    rlx__ref_attention(ref, q, k, v, &b, heads, kv, D, causal, 0);
    void *dq = dput(c, q, nq), *dk = dput(c, k, nk), *dv = dput(c, v, nk), *dst = dput_raw(c, start32, sizeof(int32_t) * (size_t)(n_seqs + 1)),
         *dy = dput(c, NULL, nq);
    rlx_attn_args a = {.o = dy, .q = dq, .ldq = heads * D, .ldo = heads * D, .seq_start = dst, .n_tokens = T, .n_seqs = n_seqs,
                       .max_q = max_len, .max_kv = max_len, .heads = heads, .kv_heads = kv, .head_dim = D, .causal = causal,
                       .scale = (float)(1.0 / sqrt((double)D)), .dt = c->dt,
                       .kv = {.k = dk, .v = dv, .token_stride = kv * D, .head_stride = D}};
    int code = c->err ? 0 : c->ops->k.attention(&a, NULL);
    int gd = code ? 1 : dget(c, got, dy, nq);
    if (!code && !c->err) judge(row, got, ref, nq, BOUND(c->dt, 1e-9, 5e-4), gd);
    finish(r, row, c, code, "attention");
out:
    free(q), free(k), free(v), free(ref), free(got);
    dfree_all(c);
}

static void check_small_ops(dctx *c, rlx__check_report *r, int64_t rows, int64_t cols, uint64_t *s) {
    const size_t n = (size_t)(rows * cols);
    const int64_t ld = cols + 3;
    float *a = malloc(sizeof(float) * (size_t)(rows * ld)), *b = malloc(sizeof(float) * (size_t)(rows * ld)),
          *ref = malloc(sizeof(float) * n), *got = malloc(sizeof(float) * n);
    if (!a || !b || !ref || !got) goto out;
    fill(a, (size_t)(rows * ld), 4, c->dt, s);
    fill(b, (size_t)(rows * ld), 2, c->dt, s);
    /* add (dense) */
    rlx__check_row *row = new_row(r);
    if (!row) goto out;
    snprintf(row->op, sizeof row->op, "add");
    snprintf(row->shape, sizeof row->shape, "n=%zu", n);
    rlx__ref_add(ref, a, b, (int64_t)n);
    void *da = dput(c, a, n), *db = dput(c, b, n), *dy = dput(c, NULL, n);
    int code = c->err ? 0 : c->ops->k.add(dy, da, db, (int64_t)n, c->dt, NULL);
    int gd = code ? 1 : dget(c, got, dy, n);
    if (!code && !c->err) judge(row, got, ref, n, BOUND(c->dt, 1e-12, 1e-5), gd);
    finish(r, row, c, code, "add");
    dfree_all(c);
    /* silu_mul with strided inputs (gate and up side by side in one GEMM output later) */
    if (!(row = new_row(r))) goto out;
    snprintf(row->op, sizeof row->op, "silu_mul");
    snprintf(row->shape, sizeof row->shape, "rows=%lld cols=%lld ld=%lld", (long long)rows, (long long)cols, (long long)ld);
    for (int64_t i = 0; i < rows; i++) rlx__ref_silu_mul(ref + i * cols, a + i * ld, b + i * ld, cols);
    da = dput(c, a, (size_t)(rows * ld)), db = dput(c, b, (size_t)(rows * ld)), dy = dput(c, NULL, n);
    code = c->err ? 0 : c->ops->k.silu_mul(dy, da, db, rows, cols, ld, ld, c->dt, NULL);
    gd = code ? 1 : dget(c, got, dy, n);
    if (!code && !c->err) judge(row, got, ref, n, BOUND(c->dt, 1e-10, 1e-5), gd);
    finish(r, row, c, code, "silu_mul");
    dfree_all(c);
    /* last_token over ragged sequences */
    if (!(row = new_row(r))) goto out;
    int32_t st32[4] = {0, 1, (int32_t)(rows / 2 + 1), (int32_t)rows};
    int64_t ns = rows >= 3 ? 3 : 1;
    if (ns == 1) st32[1] = (int32_t)rows;
    snprintf(row->op, sizeof row->op, "last_token");
    snprintf(row->shape, sizeof row->shape, "seqs=%lld tokens=%lld cols=%lld", (long long)ns, (long long)rows, (long long)cols);
    for (int64_t q = 0; q < ns; q++) memcpy(ref + q * cols, a + (st32[q + 1] - 1) * cols, sizeof(float) * (size_t)cols);
    da = dput(c, a, n);
    void *dst = dput_raw(c, st32, sizeof st32);
    dy = dput(c, NULL, (size_t)(ns * cols));
    code = c->err ? 0 : c->ops->k.last_token(dy, da, dst, ns, cols, c->dt, NULL);
    gd = code ? 1 : dget(c, got, dy, (size_t)(ns * cols));
    if (!code && !c->err) judge(row, got, ref, (size_t)(ns * cols), BOUND(c->dt, 0, 0), gd);
    finish(r, row, c, code, "last_token");
out:
    free(a), free(b), free(ref), free(got);
    dfree_all(c);
}

/* Fused attention as the fused plan runs it: kv_write (row scale and RoPE on K, into contiguous
 * K/V buffers) then flash_attention in bf16 for head_dim 64/128 (rope_attention otherwise) reading
 * Q from a packed QKV buffer with padding columns, against rope + scale + attention. tile: the
 * flash tile shape (RLX_FA_TILE_*; the launcher's rule picks one per call, so each is checked). */
static void check_fused_attention(dctx *c, rlx__check_report *r, const int64_t *lens, int64_t n_seqs, int64_t heads,
                                  int64_t kv, int64_t D, int causal, int tile, uint64_t *s) {
    const int flash = c->dt == RLX_K_BF16 && (D == 64 || D == 128);
    rlx__check_row *row = new_row(r);
    if (!row) return;
    int64_t start[9] = {0}, max_len = 0;
    int32_t start32[9] = {0}, *pos32 = NULL;
    for (int64_t q = 0; q < n_seqs; q++) {
        start[q + 1] = start[q] + lens[q];
        start32[q + 1] = (int32_t)start[q + 1];
        if (lens[q] > max_len) max_len = lens[q];
    }
    const int64_t T = start[n_seqs], qw = heads * D, kw = kv * D, ld = qw + 2 * kw + 8, half = D / 2, P = max_len + 3;
    snprintf(row->op, sizeof row->op, "%s", flash ? "flash_attn" : "rope_attn");
    snprintf(row->shape, sizeof row->shape, "T=%lld seqs=%lld heads=%lld kv=%lld head_dim=%lld%s%s", (long long)T,
             (long long)n_seqs, (long long)heads, (long long)kv, (long long)D, causal ? " causal" : "",
             !flash ? "" : tile == RLX_FA_TILE_NARROW ? " tile=narrow" : " tile=wide");
    float *qkv = malloc(sizeof(float) * (size_t)(T * ld)), *sc = malloc(sizeof(float) * (size_t)T);
    float *q = malloc(sizeof(float) * (size_t)(T * qw)), *k = malloc(sizeof(float) * (size_t)(T * kw)),
          *v = malloc(sizeof(float) * (size_t)(T * kw)), *ref = malloc(sizeof(float) * (size_t)(T * qw)),
          *got = malloc(sizeof(float) * (size_t)(T * qw));
    float *ct = malloc(sizeof(float) * (size_t)(P * half)), *st = malloc(sizeof(float) * (size_t)(P * half));
    int64_t *pos = malloc(sizeof(int64_t) * (size_t)T);
    pos32 = malloc(sizeof(int32_t) * (size_t)T);
    if (!qkv || !sc || !q || !k || !v || !ref || !got || !ct || !st || !pos || !pos32) goto out;
    fill(qkv, (size_t)(T * ld), 2, c->dt, s);
    for (int64_t t = 0; t < T; t++) sc[t] = 0.5f + 0.5f * (uni(s) + 1.0f);
    rlx_rope_params rp = {.head_dim = D, .max_positions = P, .theta = 10000.0};
    rlx__ref_rope_tables(ct, st, &rp);
    for (int64_t qs = 0; qs < n_seqs; qs++)
        for (int64_t t = start[qs]; t < start[qs + 1]; t++) pos[t] = t - start[qs], pos32[t] = (int32_t)pos[t];
    /* reference: scale, rotate, attend, on the values the device reads */
    for (int64_t t = 0; t < T; t++) {
        for (int64_t j = 0; j < qw; j++) q[t * qw + j] = qkv[t * ld + j] * sc[t];
        for (int64_t j = 0; j < kw; j++) k[t * kw + j] = qkv[t * ld + qw + j] * sc[t], v[t * kw + j] = qkv[t * ld + qw + kw + j] * sc[t];
    }
    rlx__ref_rope(q, q, ct, st, pos, T, heads, D);
    rlx__ref_rope(k, k, ct, st, pos, T, kv, D);
    rlx__batch b = {NULL, T, start, n_seqs, NULL, 0, NULL};
    rlx__ref_attention(ref, q, k, v, &b, heads, kv, D, causal, 0);
    void *dqkv = dput(c, qkv, (size_t)(T * ld)), *dsc = dput_raw(c, sc, sizeof(float) * (size_t)T),
         *dc = dput_raw(c, ct, sizeof(float) * (size_t)(P * half)), *ds = dput_raw(c, st, sizeof(float) * (size_t)(P * half)),
         *dp = dput_raw(c, pos32, sizeof(int32_t) * (size_t)T), *dst = dput_raw(c, start32, sizeof(int32_t) * (size_t)(n_seqs + 1)),
         *dy = dput(c, NULL, (size_t)(T * qw)), *dk = dput(c, NULL, (size_t)(T * kw)), *dv = dput(c, NULL, (size_t)(T * kw));
    int code = 0;
    if (!c->err) {
        const size_t e = esz(c->dt);
        rlx_kv_write_args w = {.k = (char *)dqkv + (size_t)qw * e, .v = (char *)dqkv + (size_t)(qw + kw) * e, .ld = ld, .row_scale = dsc,
                               .cos_t = dc, .sin_t = ds, .pos = dp, .rope = 1, .T = T, .kv_heads = kv, .head_dim = D, .dt = c->dt,
                               .dst = {.k = dk, .v = dv, .token_stride = kw, .head_stride = D}};
        rlx_attn_args a = {.o = dy, .q = dqkv, .q_scale = dsc, .cos_t = dc, .sin_t = ds, .pos = dp, .rope = 1, .seq_start = dst,
                           .ldq = ld, .ldo = qw, .n_tokens = T, .n_seqs = n_seqs, .max_q = max_len, .max_kv = max_len, .heads = heads,
                           .kv_heads = kv, .head_dim = D, .causal = causal, .scale = (float)(1.0 / sqrt((double)D)), .dt = c->dt,
                           .tile = flash ? tile : 0, .kv = {.k = dk, .v = dv, .token_stride = kw, .head_stride = D}};
        code = c->ops->k.kv_write(&w, NULL);
        if (!code) code = (flash ? c->ops->k.flash_attention : c->ops->k.attention)(&a, NULL);
    }
    int gd = code ? 1 : dget(c, got, dy, (size_t)(T * qw));
    if (!code && !c->err) judge(row, got, ref, (size_t)(T * qw), BOUND(c->dt, 1e-9, 5e-4), gd);
    finish(r, row, c, code, row->op);
out:
    free(qkv), free(sc), free(q), free(k), free(v), free(ref), free(got), free(ct), free(st), free(pos), free(pos32);
    dfree_all(c);
}

/* Row scales, swiglu_scaled, and the encoder kernels. */
static void check_norm_family(dctx *c, rlx__check_report *r, int64_t rows, int64_t cols, uint64_t *s) {
    const size_t n = (size_t)(rows * cols);
    float *a = malloc(sizeof(float) * n * 2), *b = malloc(sizeof(float) * (n * 2 + 7 * (size_t)cols)), *g = malloc(sizeof(float) * (size_t)cols),
          *be = malloc(sizeof(float) * (size_t)cols), *ref = malloc(sizeof(float) * n * 2), *got = malloc(sizeof(float) * n * 2),
          *sref = malloc(sizeof(float) * (size_t)rows), *sgot = malloc(sizeof(float) * (size_t)rows), *tmp = malloc(sizeof(float) * n);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)rows), st32[4];
    if (!a || !b || !g || !be || !ref || !got || !sref || !sgot || !tmp || !ids) goto out;
    fill(a, n * 2, 3, c->dt, s);
    fill(b, n * 2 + 7 * (size_t)cols, 1, c->dt, s); /* also the 7-row gather table */
    fill(g, (size_t)cols, 1, c->dt, s);
    fill(be, (size_t)cols, 1, c->dt, s);
    for (int64_t t = 0; t < rows; t++) ids[t] = (int32_t)(mix(s) % 7u);
    int64_t ns = rows >= 3 ? 3 : 1, start[4] = {0, rows, rows, rows};
    if (ns == 3) start[1] = 1, start[2] = rows / 2 + 1, start[3] = rows;
    for (int i = 0; i < 4; i++) st32[i] = (int32_t)start[i];
    char shape[96];
    snprintf(shape, sizeof shape, "rows=%lld cols=%lld", (long long)rows, (long long)cols);
    /* rms_rowscale: s = 1/sqrt(mean(x²)+eps), checked through γ·x·s against rms_norm */
    {
        rlx__check_row *row = new_row(r);
        if (!row) goto out;
        snprintf(row->op, sizeof row->op, "rms_rowscale");
        snprintf(row->shape, sizeof row->shape, "%s", shape);
        for (int64_t t = 0; t < rows; t++) {
            double ss = 0;
            for (int64_t j = 0; j < cols; j++) ss += (double)a[t * cols + j] * a[t * cols + j];
            sref[t] = (float)(1.0 / sqrt(ss / (double)cols + 1e-5));
        }
        void *dx = dput(c, a, n), *ds = NULL;
        if (!c->err) c->err = c->ops->alloc(c->dev, sizeof(float) * (size_t)rows + GUARD, "a check buffer", &ds);
        if (ds) c->bufs[c->n] = ds, c->sizes[c->n++] = 0;
        int code = c->err ? 0 : c->ops->k.rms_rowscale(ds, dx, rows, cols, 1e-5f, c->dt, NULL);
        if (!code && !c->err) c->err = c->ops->d2h_sync(c->dev, sgot, ds, sizeof(float) * (size_t)rows, NULL);
        if (!code && !c->err) judge(row, sgot, sref, (size_t)rows, 1e-10, 1);
        finish(r, row, c, code, "rms_rowscale");
        dfree_all(c);
    }
    /* swiglu_scaled on a packed gate|up buffer with row scales */
    {
        rlx__check_row *row = new_row(r);
        if (!row) goto out;
        snprintf(row->op, sizeof row->op, "swiglu_scaled");
        snprintf(row->shape, sizeof row->shape, "%s", shape);
        for (int64_t t = 0; t < rows; t++)
            for (int64_t j = 0; j < cols; j++) {
                float gg = a[t * 2 * cols + j] * sref[t], uu = a[t * 2 * cols + cols + j] * sref[t];
                ref[t * cols + j] = gg / (1.0f + expf(-gg)) * uu;
            }
        void *dgu = dput(c, a, n * 2), *ds = dput_raw(c, sref, sizeof(float) * (size_t)rows), *dy = dput(c, NULL, n);
        int code = c->err ? 0 : c->ops->k.swiglu_scaled(dy, dgu, ds, rows, cols, 2 * cols, c->dt, NULL);
        int gd = code ? 1 : dget(c, got, dy, n);
        if (!code && !c->err) judge(row, got, ref, n, BOUND(c->dt, 1e-10, 1e-5), gd);
        finish(r, row, c, code, "swiglu_scaled");
        dfree_all(c);
    }
    /* layer_norm with the residual add and β */
    {
        rlx__check_row *row = new_row(r);
        if (!row) goto out;
        snprintf(row->op, sizeof row->op, "add_layer_norm");
        snprintf(row->shape, sizeof row->shape, "%s", shape);
        rlx__ref_add(tmp, a, b, (int64_t)n);
        rlx__ref_layer_norm(ref, tmp, g, be, rows, cols, 1e-12);
        void *dx = dput(c, a, n), *dr = dput(c, b, n), *dg = dput(c, g, (size_t)cols), *db = dput(c, be, (size_t)cols), *dy = dput(c, NULL, n);
        int code = c->err ? 0 : c->ops->k.layer_norm(dy, dx, dr, dg, db, rows, cols, 1e-12f, c->dt, NULL);
        int gd = code ? 1 : dget(c, got, dy, n);
        if (!code && !c->err) judge(row, got, ref, n, BOUND(c->dt, 1e-10, 1e-5), gd);
        finish(r, row, c, code, "layer_norm");
        dfree_all(c);
    }
    /* exact GELU */
    {
        rlx__check_row *row = new_row(r);
        if (!row) goto out;
        snprintf(row->op, sizeof row->op, "gelu");
        snprintf(row->shape, sizeof row->shape, "n=%zu", n);
        rlx__ref_gelu(ref, a, (int64_t)n);
        void *dx = dput(c, a, n), *dy = dput(c, NULL, n);
        int code = c->err ? 0 : c->ops->k.gelu(dy, dx, (int64_t)n, c->dt, NULL);
        int gd = code ? 1 : dget(c, got, dy, n);
        if (!code && !c->err) judge(row, got, ref, n, BOUND(c->dt, 1e-10, 1e-5), gd);
        finish(r, row, c, code, "gelu");
        dfree_all(c);
    }
    /* gather_add of a 7-row table */
    {
        rlx__check_row *row = new_row(r);
        if (!row) goto out;
        snprintf(row->op, sizeof row->op, "gather_add");
        snprintf(row->shape, sizeof row->shape, "%s table=7", shape);
        rlx__ref_gather_add(ref, a, ids, b, rows, cols);
        void *dx = dput(c, a, n), *dt_ = dput(c, b, (size_t)(7 * cols)), *di = dput_raw(c, ids, sizeof(int32_t) * (size_t)rows),
             *dy = dput(c, NULL, n);
        int code = c->err ? 0 : c->ops->k.gather_add(dy, dx, di, dt_, rows, cols, c->dt, NULL);
        int gd = code ? 1 : dget(c, got, dy, n);
        if (!code && !c->err) judge(row, got, ref, n, BOUND(c->dt, 1e-12, 1e-5), gd);
        finish(r, row, c, code, "gather_add");
        dfree_all(c);
    }
    /* mean pooling over ragged sequences, then L2 normalisation */
    for (int which = 0; which < 2; which++) {
        rlx__check_row *row = new_row(r);
        if (!row) goto out;
        snprintf(row->op, sizeof row->op, which ? "l2_normalize" : "mean_pool");
        snprintf(row->shape, sizeof row->shape, "seqs=%lld %s", (long long)ns, shape);
        size_t on = (size_t)(which ? rows * cols : ns * cols);
        if (which) rlx__ref_l2_normalize(ref, a, rows, cols);
        else rlx__ref_mean_pool(ref, a, start, ns, cols);
        void *dx = dput(c, a, n), *dst = dput_raw(c, st32, sizeof st32), *dy = dput(c, NULL, on);
        int code = c->err ? 0
                   : which ? c->ops->k.l2_normalize(dy, dx, rows, cols, c->dt, NULL)
                           : c->ops->k.seq_pool(dy, dx, dst, ns, cols, 1, c->dt, NULL);
        int gd = code ? 1 : dget(c, got, dy, on);
        if (!code && !c->err) judge(row, got, ref, on, BOUND(c->dt, 1e-10, 1e-5), gd);
        finish(r, row, c, code, row->op);
        dfree_all(c);
    }
out:
    free(a), free(b), free(g), free(be), free(ref), free(got), free(sref), free(sgot), free(tmp), free(ids);
    dfree_all(c);
}

rlx_status rlx__check_kernels(rlx_device_kind kind, rlx_kdtype dt, uint64_t seed, rlx__check_report *r) {
    dctx c = {.ops = rlx__device_ops_for(kind), .dt = dt};
    if (!c.ops) return rlx__fail(RLX_ERR_NO_DEVICE, "device '%s' is not available", rlx_device_kind_name(kind));
    rlx_status st = c.ops->open(0, &c.dev);
    if (st) return st;
    uint64_t s = seed;
    static const int64_t emb[][3] = {{1, 40, 7}, {17, 256, 100}, {129, 72, 1000}};
    for (size_t i = 0; i < 3 && !c.err; i++) check_embed(&c, r, emb[i][0], emb[i][1], emb[i][2], &s);
    static const int64_t rms[][2] = {{1, 40}, {17, 1000}, {129, 4096}, {2, 8192}};
    for (size_t i = 0; i < 4 && !c.err; i++) check_rms(&c, r, rms[i][0], rms[i][1], &s);
    static const int64_t rope[][4] = {{1, 1, 64, 0}, {17, 3, 128, 0}, {129, 2, 24, 40}, {33, 8, 64, 128}};
    for (size_t i = 0; i < 4 && !c.err; i++) check_rope(&c, r, rope[i][0], rope[i][1], rope[i][2], rope[i][3], &s);
    struct { int64_t lens[4]; int64_t n, heads, kv, D; int causal; } at[] = {
        {{1}, 1, 2, 2, 64, 1},          {{2}, 1, 4, 1, 128, 1},        {{17}, 1, 8, 2, 64, 1},
        {{129}, 1, 8, 1, 128, 1},       {{3, 17, 1}, 3, 4, 4, 64, 1},  {{17, 9}, 2, 4, 2, 128, 0},
        {{1000}, 1, 1, 1, 64, 1},       {{33}, 1, 2, 1, 96, 1},
    };
    for (size_t i = 0; i < sizeof at / sizeof at[0] && !c.err; i++)
        check_attention(&c, r, at[i].lens, at[i].n, at[i].heads, at[i].kv, at[i].D, at[i].causal, &s);
    static const int64_t small[][2] = {{1, 40}, {17, 129}, {129, 1000}};
    for (size_t i = 0; i < 3 && !c.err; i++) check_small_ops(&c, r, small[i][0], small[i][1], &s);
    struct { int64_t lens[4]; int64_t n, heads, kv, D; int causal; } fa[] = {
        {{1}, 1, 2, 2, 64, 1}, {{17, 3}, 2, 8, 2, 64, 1}, {{129}, 1, 4, 1, 128, 1}, {{33, 1, 70}, 3, 4, 4, 128, 0},
        {{17}, 1, 4, 2, 32, 1},
    };
    for (size_t i = 0; i < sizeof fa / sizeof fa[0] && !c.err; i++) {
        const int flash = dt == RLX_K_BF16 && (fa[i].D == 64 || fa[i].D == 128);
        for (int tile = RLX_FA_TILE_WIDE; tile <= (flash ? RLX_FA_TILE_NARROW : RLX_FA_TILE_WIDE) && !c.err; tile++)
            check_fused_attention(&c, r, fa[i].lens, fa[i].n, fa[i].heads, fa[i].kv, fa[i].D, fa[i].causal, tile, &s);
    }
    static const int64_t nf[][2] = {{1, 40}, {17, 129}, {129, 768}};
    for (size_t i = 0; i < 3 && !c.err; i++) check_norm_family(&c, r, nf[i][0], nf[i][1], &s);
    st = c.err;
    dfree_all(&c);
    c.ops->close(c.dev);
    return st;
}

double rlx__nmse(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d, den += (double)b[i] * b[i];
    }
    return den > 0 ? num / den : num;
}

/* ---- whole model ------------------------------------------------------------------------------------- */

void rlx__compare_logits(const float *got, const float *ref, int64_t rows, int64_t cols, double *min_cos, double *rel_err,
                         double *argmax_agree) {
    double mc = 1, md = 0, mr = 0;
    int64_t agree = 0;
    for (int64_t r = 0; r < rows; r++) {
        const float *a = got + r * cols, *b = ref + r * cols;
        double ab = 0, aa = 0, bb = 0;
        int64_t ia = 0, ib = 0;
        for (int64_t j = 0; j < cols; j++) {
            ab += (double)a[j] * b[j], aa += (double)a[j] * a[j], bb += (double)b[j] * b[j];
            double d = fabs((double)a[j] - b[j]);
            if (!(d <= md)) md = d; /* NaN wins */
            if (fabs((double)b[j]) > mr) mr = fabs((double)b[j]);
            if (a[j] > a[ia]) ia = j;
            if (b[j] > b[ib]) ib = j;
        }
        double cs = (aa > 0 && bb > 0) ? ab / sqrt(aa * bb) : (aa == bb ? 1 : 0);
        if (!(cs >= mc)) mc = cs;
        agree += ia == ib;
    }
    *min_cos = mc;
    *rel_err = mr > 0 ? md / mr : md;
    *argmax_agree = rows ? (double)agree / (double)rows : 1;
}

/* One model run; the model's effective profile is reported (the label of the row). emulate >= 0:
 * a CPU build turned into the precision emulation (bf16 = 1, f32_residual = emulate > 1). */
typedef struct run_out {
    float *y;
    int64_t rows, cols;
    rlx_precision compute;
    rlx_mixed_precision mixed;
    int64_t layers; /* attention stages */
    int64_t kmax;   /* the longest dot product a GEMM runs */
    rlx_device_kind device;
} run_out;

static rlx_status run_once(const rlx_flow *f, const rlx_weights *w, const rlx_build_params *p, int emulate, int tp,
                           const rlx__model_check *c, const int32_t *tok, const int32_t *types, int64_t T, run_out *o) {
    rlx_model *m = NULL;
    rlx_session *s = NULL;
    memset(o, 0, sizeof *o);
    rlx_status st;
    rlx__tp_group g;
    memset(&g, 0, sizeof g);
    if (tp >= 1) {
        /* that many ranks in this process (tools/tp.h); rank 0's output */
        if (types) return rlx__fail(RLX_ERR_UNSUPPORTED, "check: tensor-parallel ranks with token types");
        st = rlx__tp_group_create(f, w, p, tp, NULL, &g);
        if (!st) st = rlx__tp_group_prefill(&g, tok, T, c->lens, c->n_seqs, 0);
        if (!st) m = g.r[0].model, s = g.r[0].session;
        if (!st) {
            const rlx_profile *pf = rlx_model_profile(m);
            o->compute = pf->compute, o->mixed = pf->mixed, o->device = rlx_model_device(m);
            for (int i = 0; i < m->list.n_stages; i++) o->layers += m->list.stages[i].op == RLX__OP_ATTENTION;
            for (int i = 0; i < m->list.n_stages; i++) {
                const rlx__stage *sg = &m->list.stages[i];
                if (sg->op == RLX__OP_LINEAR && m->list.values[sg->in[0]].cols > o->kmax) o->kmax = m->list.values[sg->in[0]].cols;
            }
        }
        if (!st) st = rlx_session_output_shape(s, &o->rows, &o->cols);
        if (!st && !(o->y = malloc(sizeof(float) * (size_t)(o->rows * o->cols)))) st = RLX_ERR_OUT_OF_MEMORY;
        if (!st) st = rlx__tp_group_output(&g, o->y, (size_t)(o->rows * o->cols));
        rlx__tp_group_free(&g);
        if (st) free(o->y), o->y = NULL;
        return st;
    }
    st = rlx_model_build(f, w, p, &m);
    if (!st && emulate > 0) st = rlx__cpu_emulate(m, 1, emulate > 1);
    if (!st) {
        const rlx_profile *pf = rlx_model_profile(m);
        o->compute = pf->compute, o->mixed = pf->mixed, o->device = rlx_model_device(m);
        for (int i = 0; i < m->list.n_stages; i++) {
            const rlx__stage *sg = &m->list.stages[i];
            o->layers += sg->op == RLX__OP_ATTENTION;
            if (sg->op == RLX__OP_LINEAR && m->list.values[sg->in[0]].cols > o->kmax) o->kmax = m->list.values[sg->in[0]].cols;
        }
    }
    if (!st) st = rlx_session_create(m, &s);
    rlx_named_ids tt = {RLX_TOKEN_TYPE_IDS, types, T};
    rlx_prefill_batch pb = {.tokens = tok, .n_tokens = T, .seq_lens = c->lens, .n_seqs = c->n_seqs, .inputs = &tt, .n_inputs = types ? 1 : 0};
    if (!st) st = rlx_session_prefill_ex(s, &pb, NULL);
    if (!st) st = rlx_session_output_shape(s, &o->rows, &o->cols);
    if (!st && !(o->y = malloc(sizeof(float) * (size_t)(o->rows * o->cols)))) st = RLX_ERR_OUT_OF_MEMORY;
    if (!st) st = rlx_session_output_to_host(s, o->y, (size_t)(o->rows * o->cols));
    rlx_session_destroy(s);
    rlx_model_destroy(m);
    if (st) free(o->y), o->y = NULL;
    return st;
}

/* Per-position errors of got against ref: worst 1 − cosine, max|Δ|/max|ref| over everything. */
static void position_errors(const float *got, const float *ref, int64_t rows, int64_t cols, double *worst, int64_t *worst_row,
                            double *rel) {
    double md = 0, mr = 0, w = 0;
    *worst_row = 0;
    for (int64_t r = 0; r < rows; r++) {
        const float *a = got + r * cols, *b = ref + r * cols;
        double ab = 0, aa = 0, bb = 0;
        for (int64_t j = 0; j < cols; j++) {
            ab += (double)a[j] * b[j], aa += (double)a[j] * a[j], bb += (double)b[j] * b[j];
            double d = fabs((double)a[j] - b[j]);
            if (!(d <= md)) md = d; /* NaN wins */
            if (fabs((double)b[j]) > mr) mr = fabs((double)b[j]);
        }
        double cs = (aa > 0 && bb > 0) ? ab / sqrt(aa * bb) : (aa == bb ? 1 : 0);
        if (!(1 - cs <= w)) w = 1 - cs, *worst_row = r; /* NaN wins */
    }
    *worst = w;
    *rel = mr > 0 ? md / mr : md;
}

void rlx__model_floor(rlx_precision compute, int64_t layers, int64_t k, double *nmse, double *rel) {
    /* A relative error uniform in ±u has NMSE rho = u²/3. bf16: one rounding of the output (the
     * naive emulation can be exact by chance where a model holds bf16 values already). f32 (no
     * emulation: the reference is f32 itself): two computations that differ in accumulation
     * order, each a random walk of K roundings per dot product, 16 dot products per layer, a gain
     * of 2 through the layers: 64·K roundings per layer. */
    if (compute == RLX_PRECISION_F32) {
        const double u = 0x1p-24, n = (double)(k > 0 ? k : 1) * 64 * (double)(layers + 1);
        *nmse = u * u / 3 * n;
        *rel = 6 * u * sqrt(n);
    } else {
        const double u = 0x1p-8;
        *nmse = u * u / 3;
        *rel = u;
    }
}

rlx_status rlx__check_model_ex(const rlx__model_check *c, rlx__check_report *r) {
    int64_t T = 0;
    for (int64_t q = 0; q < c->n_seqs; q++) T += c->lens[q];
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)(T ? T : 1));
    int32_t *types = c->type_vocab > 0 ? malloc(sizeof(int32_t) * (size_t)(T ? T : 1)) : NULL;
    if (!tok || (c->type_vocab > 0 && !types)) {
        free(tok), free(types);
        return rlx__fail(RLX_ERR_OUT_OF_MEMORY, "check: token buffer");
    }
    /* vocab from the CPU model: build it first */
    rlx_build_params cpu = rlx_build_default_params();
    cpu.device = RLX_DEVICE_CPU;
    rlx_model *probe = NULL;
    rlx_status st = rlx_model_build(c->flow, c->w, &cpu, &probe);
    if (st) {
        free(tok), free(types);
        return st;
    }
    int64_t V = probe->vocab;
    rlx_model_destroy(probe);
    uint64_t s = c->seed;
    for (int64_t t = 0; t < T; t++) tok[t] = (int32_t)(mix(&s) % (uint64_t)V);
    for (int64_t t = 0; types && t < T; t++) types[t] = (int32_t)(mix(&s) % (uint64_t)c->type_vocab);
    run_out ref = {0}, dev = {0}, emu = {0};
    st = run_once(c->flow, c->w, &cpu, 0, 0, c, tok, types, T, &ref);
    if (!st) st = run_once(c->flow, c->w, c->dev, -1, c->tp, c, tok, types, T, &dev);
    if (!st && (dev.rows != ref.rows || dev.cols != ref.cols))
        st = rlx__fail(RLX_ERR_INTERNAL, "check: the device output is [%lld x %lld], the reference's [%lld x %lld]", (long long)dev.rows,
                       (long long)dev.cols, (long long)ref.rows, (long long)ref.cols);
    const int bf16 = dev.compute != RLX_PRECISION_F32, f32res = dev.mixed == RLX_MIXED_AUTO;
    /* the budget's source: the same model with the device's precision, naively, on the CPU */
    if (!st && bf16) st = run_once(c->flow, c->w, &cpu, 1 + f32res, 0, c, tok, types, T, &emu);
    rlx__check_row *row = st ? NULL : new_row(r);
    if (row) {
        const int64_t R = ref.rows, C = ref.cols;
        snprintf(row->op, sizeof row->op, "model");
        char tps[32] = "";
        if (c->tp >= 1) snprintf(tps, sizeof tps, ", tp %d", c->tp);
        snprintf(row->shape, sizeof row->shape, "%s%s, %lld layers, %lld tokens in %lld seqs, [%lld x %lld] out", c->label, tps,
                 (long long)dev.layers, (long long)T, (long long)c->n_seqs, (long long)R, (long long)C);
        snprintf(row->dtype, sizeof row->dtype, "%s%s", bf16 ? "bf16" : "f32", bf16 && f32res ? "+f32 residual" : "");
        row->layers = dev.layers;
        int64_t wr, ewr = 0;
        double worst, rel, ew = 0, erel = 0;
        position_errors(dev.y, ref.y, R, C, &worst, &wr, &rel);
        if (emu.y) position_errors(emu.y, ref.y, R, C, &ew, &ewr, &erel);
        double floor_nmse, floor_rel;
        rlx__model_floor(dev.compute, dev.layers, dev.kmax, &floor_nmse, &floor_rel);
        /* the bound: twice the naive computation's error at its worst position (NUMERICS' fairer
         * rule, applied to the whole model), plus the floor */
        row->min_cos = 1 - worst;
        row->naive_cos = 1 - ew;
        row->cos_bound = 1 - (2 * ew + floor_nmse / 2);
        row->rel = rel;
        row->naive_rel = erel;
        row->rel_bound = 2 * erel + floor_rel;
        row->nmse = rlx__nmse(dev.y, ref.y, (size_t)(R * C));
        row->max_err = rel;
        row->bound = row->cos_bound;
        row->rows = R;
        row->pass = row->min_cos >= row->cos_bound && rel <= row->rel_bound;
        row->argmax = c->argmax;
        if (c->argmax) {
            /* teacher-forced next tokens, counted where the reference's top-2 margin is more than
             * twice the largest error the bound allows: there the bound cannot flip the argmax */
            double mr = 0;
            for (int64_t i = 0; i < R * C; i++)
                if (fabs((double)ref.y[i]) > mr) mr = fabs((double)ref.y[i]);
            const double allowed = row->rel_bound * mr;
            for (int64_t q = 0; q < R; q++) {
                const float *a = dev.y + q * C, *b = ref.y + q * C;
                int64_t ia = 0, ib = 0, i2 = -1;
                for (int64_t j = 1; j < C; j++) {
                    if (a[j] > a[ia]) ia = j;
                    if (b[j] > b[ib]) i2 = ib, ib = j;
                    else if (i2 < 0 || b[j] > b[i2]) i2 = j;
                }
                double margin = i2 >= 0 ? (double)b[ib] - b[i2] : INFINITY;
                if (!(margin > 2 * allowed)) continue;
                row->decisive++;
                row->agree += ia == ib;
            }
            if (row->agree != row->decisive) row->pass = 0;
        }
        if (!row->pass)
            snprintf(row->note, sizeof row->note, "min cosine %.6f (bound %.6f), max|d|/max|ref| %.3g (bound %.3g)%s%lld of %lld decisive argmax%s",
                     row->min_cos, row->cos_bound, rel, row->rel_bound, c->argmax ? ", " : "", (long long)row->agree,
                     (long long)row->decisive, c->argmax ? " agree" : "");
        if (!row->pass) r->failed++;
    } else if (!st) {
        st = RLX_ERR_OUT_OF_MEMORY;
    }
    free(tok), free(types), free(ref.y), free(dev.y), free(emu.y);
    return st;
}

rlx_status rlx__check_model(const rlx_flow *flow, const rlx_weights *w, const rlx_build_params *dev_params, const int64_t *lens,
                            int64_t n_seqs, uint64_t seed, const char *label, rlx__check_report *r) {
    return rlx__check_model_tp(flow, w, dev_params, 0, lens, n_seqs, seed, label, r);
}

rlx_status rlx__check_model_tp(const rlx_flow *flow, const rlx_weights *w, const rlx_build_params *dev_params, int tp,
                               const int64_t *lens, int64_t n_seqs, uint64_t seed, const char *label, rlx__check_report *r) {
    rlx__model_check c = {.flow = flow, .w = w, .dev = dev_params, .lens = lens, .n_seqs = n_seqs, .seed = seed, .label = label,
                          .argmax = 1, .tp = tp};
    return rlx__check_model_ex(&c, r);
}
