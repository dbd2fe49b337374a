/* The KV-cache kernels through the simt harness (kernels/kv_write.cu, kernels/attention.cu,
 * kernels/flash_attention.cu, kernels/decode_attention.cu) against a CPU reference on the same
 * bf16 inputs: pages in both layouts with shuffled page tables, page sizes 1 … 256, cached
 * prefixes, mixed lengths, GQA groups 1/2/4/8 and MQA, head_dim 48/64/128, causal with and without
 * a prefix. Every output is NaN-poisoned before the launch and fenced by guard bytes; each launch
 * is repeated in the other simt thread order and must give the same bits (no float atomics in
 * these kernels: a difference is a race). Bounds (NUMERICS.md): kv_write NMSE <= 1e-5 (one bf16
 * rounding), attention NMSE <= 5e-4. ctest runs the suite in both orders. */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rlx/weights.h"
#include "rlx_kernels.h"
#include "runtime/cpu_ref.h"
#include "simt/include/rlx_simt/runtime.h"
#include "testutil.h"

#define GUARD 256
#define GUARD_BYTE 0xA5

typedef struct gbuf {
    unsigned char *base, *p;
    size_t bytes;
} gbuf;

static void *gb_new(gbuf *b, size_t bytes) {
    size_t total = (2 * GUARD + bytes + 255) / 256 * 256;
    b->base = aligned_alloc(256, total);
    cr_assert(b->base, "out of memory (%zu bytes)", total);
    memset(b->base, GUARD_BYTE, total);
    b->p = b->base + GUARD;
    b->bytes = bytes;
    memset(b->p, 0xff, bytes);
    return b->p;
}
static int gb_guards_ok(const gbuf *b) {
    for (const unsigned char *q = b->base; q < b->p; q++)
        if (*q != GUARD_BYTE) return 0;
    for (size_t i = 0; i < GUARD; i++)
        if (b->p[b->bytes + i] != GUARD_BYTE) return 0;
    return 1;
}
static void gb_free(gbuf *b) { free(b->base), memset(b, 0, sizeof *b); }
static float bf(float v) { return rlx_bf16_to_f32(rlx_f32_to_bf16(v)); }
static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    cr_assert(p);
    return p;
}
static float getb(const void *p, int64_t i) { return rlx_bf16_to_f32(((const uint16_t *)p)[i]); }
static void putb(void *p, int64_t i, float v) { ((uint16_t *)p)[i] = rlx_f32_to_bf16(v); }

static double nmse(const float *a, const float *b, size_t n, int *nonfinite) {
    double num = 0, den = 0;
    *nonfinite = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(a[i])) *nonfinite = 1;
        double d = (double)a[i] - b[i];
        num += d * d, den += (double)b[i] * b[i];
    }
    return den > 0 ? num / den : num;
}

/* ---- a paged cache on the host ------------------------------------------------------------------------ */

typedef struct cache {
    int n_seqs, P, shift, layout, KV, D, num_pages;
    int64_t cached[64], fresh[64], kvlen[64];
    int32_t indptr[65], *indices; /* shuffled */
    int64_t page_stride, token_stride, head_stride;
    gbuf bk, bv;
    void *k, *v;     /* [num_pages · page_stride] bf16 */
} cache;

/* Pages for every sequence's cached + new tokens, handed out in a seeded shuffle from a pool with
 * two spare pages; page_stride padded by pad_page elements (a FlashInfer [pages, 2, …] tensor has
 * gaps between one K page and the next). */
static void cache_new(cache *c, rlxt_rng *r, int n_seqs, const int *cached, const int *fresh, int P, int layout, int KV, int D,
                      int pad_page) {
    memset(c, 0, sizeof *c);
    c->n_seqs = n_seqs, c->P = P, c->layout = layout, c->KV = KV, c->D = D;
    while ((1 << c->shift) < P) c->shift++;
    int total = 0;
    for (int s = 0; s < n_seqs; s++) {
        c->cached[s] = cached[s], c->fresh[s] = fresh[s], c->kvlen[s] = cached[s] + fresh[s];
        c->indptr[s] = total;
        total += (int)((c->kvlen[s] + P - 1) / P);
    }
    c->indptr[n_seqs] = total;
    c->num_pages = total + 2;
    int *perm = xmalloc(sizeof(int) * (size_t)c->num_pages);
    for (int i = 0; i < c->num_pages; i++) perm[i] = i;
    for (int i = c->num_pages - 1; i > 0; i--) {
        int j = (int)(rlxt_next(r) % (uint64_t)(i + 1)), t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    c->indices = xmalloc(sizeof(int32_t) * (size_t)(total ? total : 1));
    for (int i = 0; i < total; i++) c->indices[i] = perm[i];
    free(perm);
    c->page_stride = (int64_t)P * KV * D + pad_page;
    c->head_stride = layout == 0 ? D : (int64_t)P * D;
    c->token_stride = layout == 0 ? (int64_t)KV * D : D;
    c->k = gb_new(&c->bk, (size_t)(c->num_pages * c->page_stride) * 2);
    c->v = gb_new(&c->bv, (size_t)(c->num_pages * c->page_stride) * 2);
}
static void cache_free(cache *c) {
    free(c->indices);
    gb_free(&c->bk), gb_free(&c->bv);
}
static int64_t cache_off(const cache *c, int s, int64_t j, int g) {
    return (int64_t)c->indices[c->indptr[s] + (j >> c->shift)] * c->page_stride + (j & (c->P - 1)) * c->token_stride +
           (int64_t)g * c->head_stride;
}
/* Random bf16 values in every slot of the cached prefixes (the new tokens' slots stay poisoned
 * until a kv_write fills them; attention tests fill them too). */
static void cache_fill(cache *c, rlxt_rng *r, int upto_new) {
    for (int s = 0; s < c->n_seqs; s++) {
        const int64_t n = upto_new ? c->kvlen[s] : c->cached[s];
        for (int64_t j = 0; j < n; j++)
            for (int g = 0; g < c->KV; g++)
                for (int d = 0; d < c->D; d++) {
                    putb(c->k, cache_off(c, s, j, g) + d, 2.0f * rlxt_uniform(r));
                    putb(c->v, cache_off(c, s, j, g) + d, rlxt_uniform(r));
                }
    }
}
static rlx_kv_ref cache_ref(const cache *c, const int32_t *d_indptr, const int32_t *d_indices, const int32_t *d_len) {
    rlx_kv_ref k = {.k = c->k, .v = c->v, .page_indptr = d_indptr, .page_indices = d_indices, .kv_len = d_len,
                    .page_stride = c->page_stride, .token_stride = c->token_stride, .head_stride = c->head_stride,
                    .page_shift = c->shift};
    return k;
}

/* ---- kv_write ------------------------------------------------------------------------------------------ */

typedef struct kvw_case {
    int n_seqs, cached[4], fresh[4];
    int KV, D, P, layout, rope, scale, pad_page;
} kvw_case;

static const kvw_case KVW_CASES[] = {
    {1, {0}, {1}, 1, 64, 1, 0, 1, 1, 0},           {1, {5}, {3}, 2, 128, 4, 1, 1, 1, 0},
    {3, {0, 17, 2}, {7, 1, 30}, 2, 48, 16, 0, 1, 0, 8}, {2, {63, 0}, {2, 65}, 8, 64, 64, 1, 0, 1, 0},
    {2, {3, 255}, {300, 1}, 1, 16, 256, 0, 1, 1, 16}, {1, {0}, {9}, 3, 12, 2, 1, 1, 1, 0},
};

static void run_kvw_case(const kvw_case *kc, uint64_t seed) {
    rlxt_rng r = {seed};
    cache c;
    cache_new(&c, &r, kc->n_seqs, kc->cached, kc->fresh, kc->P, kc->layout, kc->KV, kc->D, kc->pad_page);
    const int KV = kc->KV, D = kc->D, H = 2 * KV, half = D / 2;
    int64_t T = 0, maxpos = 1;
    for (int s = 0; s < kc->n_seqs; s++) T += kc->fresh[s], maxpos = c.kvlen[s] > maxpos ? c.kvlen[s] : maxpos;
    const int64_t ld = (int64_t)(H + 2 * KV) * D + 8;
    /* the packed QKV rows, row scales, rope tables; per-token position and page */
    gbuf bq, bs, bc, bsn, bp, btp;
    uint16_t *qkv = gb_new(&bq, (size_t)(T * ld) * 2);
    for (int64_t i = 0; i < T * ld; i++) putb(qkv, i, 2.0f * rlxt_uniform(&r));
    float *sc = gb_new(&bs, (size_t)T * 4);
    for (int64_t t = 0; t < T; t++) sc[t] = (float)pow(2.0, rlxt_uniform(&r));
    float *ct = gb_new(&bc, (size_t)(maxpos * half) * 4), *st = gb_new(&bsn, (size_t)(maxpos * half) * 4);
    rlx_rope_params rp = {.head_dim = D, .max_positions = maxpos, .theta = 10000.0};
    rlx__ref_rope_tables(ct, st, &rp);
    int32_t *pos = gb_new(&bp, (size_t)T * 4), *tp = gb_new(&btp, (size_t)T * 4);
    int64_t t = 0;
    for (int s = 0; s < kc->n_seqs; s++)
        for (int i = 0; i < kc->fresh[s]; i++, t++) {
            pos[t] = (int32_t)(kc->cached[s] + i);
            tp[t] = c.indices[c.indptr[s] + (pos[t] >> c.shift)];
        }
    rlx_kv_write_args a = {.k = qkv + H * D, .v = qkv + (H + KV) * D, .ld = ld, .row_scale = kc->scale ? sc : NULL,
                           .cos_t = kc->rope ? ct : NULL, .sin_t = kc->rope ? st : NULL, .pos = pos, .rope = kc->rope,
                           .tok_page = tp, .dst = cache_ref(&c, NULL, NULL, NULL), .T = T, .kv_heads = KV, .head_dim = D,
                           .dt = RLX_K_BF16};
    char shape[160];
    snprintf(shape, sizeof shape, "seqs=%d KV=%d D=%d P=%d %s rope=%d scale=%d pad=%d", kc->n_seqs, KV, D, kc->P,
             kc->layout ? "HND" : "NHD", kc->rope, kc->scale, kc->pad_page);
    cr_assert_eq(rlx_simt_kv_write(&a, NULL), 0, "kv_write %s seed %llu: %s", shape, (unsigned long long)seed, rlx_simt_last_error());
    /* reference: the same f32 expressions, one rounding */
    float *got = xmalloc(sizeof(float) * (size_t)(T * KV * D * 2)), *ref = xmalloc(sizeof(float) * (size_t)(T * KV * D * 2));
    int64_t n = 0;
    t = 0;
    for (int s = 0; s < kc->n_seqs; s++)
        for (int i = 0; i < kc->fresh[s]; i++, t++)
            for (int g = 0; g < KV; g++) {
                const int64_t off = cache_off(&c, s, pos[t], g);
                const float s_t = kc->scale ? sc[t] : 1.0f;
                for (int d = 0; d < D; d++) {
                    const float x = s_t * getb(qkv, t * ld + (H + g) * D + d);
                    float kr = x;
                    if (kc->rope) {
                        const int j = d < half ? d : d - half;
                        const float pr = s_t * getb(qkv, t * ld + (H + g) * D + (d < half ? d + half : d - half));
                        const float cc = ct[pos[t] * half + j], ss = st[pos[t] * half + j];
                        kr = d < half ? x * cc - pr * ss : x * cc + pr * ss; /* the kernel's expressions */
                    }
                    ref[n] = bf(kr), got[n++] = getb(c.k, off + d);
                    ref[n] = bf(s_t * getb(qkv, t * ld + (H + KV + g) * D + d)), got[n++] = getb(c.v, off + d);
                }
            }
    int nf;
    const double e = nmse(got, ref, (size_t)n, &nf);
    cr_expect(!nf && e <= 1e-5, "kv_write %s seed %llu: NMSE %.3e > 1e-5 or non-finite (%d)", shape, (unsigned long long)seed, e, nf);
    /* slots nobody wrote (the cached prefixes, the spare pages, the padding) stay poisoned */
    long long written = 0, changed = 0;
    for (size_t i = 0; i < c.bk.bytes / 2; i++) {
        changed += ((uint16_t *)c.k)[i] != 0xffff;
        changed += ((uint16_t *)c.v)[i] != 0xffff;
    }
    written = 2 * T * KV * D;
    cr_expect_eq(changed, written, "kv_write %s: %lld elements changed, %lld written", shape, changed, written);
    cr_expect(gb_guards_ok(&c.bk) && gb_guards_ok(&c.bv), "kv_write %s: wrote outside the pages", shape);
    free(got), free(ref);
    gb_free(&bq), gb_free(&bs), gb_free(&bc), gb_free(&bsn), gb_free(&bp), gb_free(&btp);
    cache_free(&c);
}

Test(kv_kernels, kv_write_pages) {
    for (size_t i = 0; i < sizeof KVW_CASES / sizeof KVW_CASES[0]; i++) run_kvw_case(&KVW_CASES[i], 500 + i);
}

/* ---- attention over pages --------------------------------------------------------------------------------- */

typedef struct at_case {
    int n_seqs, cached[8], fresh[8];
    int H, KV, D, P, layout, causal, rope;
} at_case;

enum { K_GENERIC, K_FLASH, K_DECODE };
static const char *kname[3] = {"attention", "flash_attention", "decode_attention"};

/* Reference: q = rope(s·q) in f32 from the bf16 rows, K/V the bf16 page values, f64 softmax. */
static void ref_attention(float *o, const uint16_t *q, int64_t ldq, const float *sc, const float *ct, const float *st,
                          const int32_t *pos, const cache *c, const at_case *ac, float scale) {
    const int H = ac->H, KV = ac->KV, D = ac->D, G = H / KV, half = D / 2;
    double *p = xmalloc(sizeof(double) * 4096), *acc = xmalloc(sizeof(double) * (size_t)D);
    float *qv = xmalloc(sizeof(float) * (size_t)D);
    int64_t t = 0;
    for (int s = 0; s < ac->n_seqs; s++)
        for (int i = 0; i < ac->fresh[s]; i++, t++)
            for (int h = 0; h < H; h++) {
                for (int d = 0; d < D; d++) {
                    float x = sc[t] * getb(q, t * ldq + h * D + d);
                    if (ac->rope) {
                        const int j = d < half ? d : d - half;
                        const float pr = sc[t] * getb(q, t * ldq + h * D + (d < half ? d + half : d - half));
                        x = d < half ? x * ct[pos[t] * half + j] - pr * st[pos[t] * half + j] : x * ct[pos[t] * half + j] + pr * st[pos[t] * half + j];
                    }
                    qv[d] = x;
                }
                const int64_t nk = ac->causal ? c->cached[s] + i + 1 : c->kvlen[s];
                double mx = -INFINITY;
                for (int64_t j = 0; j < nk; j++) {
                    double dot = 0;
                    const int64_t off = cache_off(c, s, j, h / G);
                    for (int d = 0; d < D; d++) dot += (double)qv[d] * getb(c->k, off + d);
                    p[j] = dot * scale;
                    if (p[j] > mx) mx = p[j];
                }
                double sum = 0;
                for (int64_t j = 0; j < nk; j++) sum += (p[j] = exp(p[j] - mx));
                for (int d = 0; d < D; d++) acc[d] = 0;
                for (int64_t j = 0; j < nk; j++) {
                    const int64_t off = cache_off(c, s, j, h / G);
                    for (int d = 0; d < D; d++) acc[d] += p[j] * getb(c->v, off + d);
                }
                for (int d = 0; d < D; d++) o[(t * H + h) * D + d] = (float)(acc[d] / sum);
            }
    free(p), free(acc), free(qv);
}

/* Runs kernel `which` on one case; returns its NMSE. work: decode's split-KV workspace (or none);
 * tile: flash_attention's tile shape (RLX_FA_TILE_*; 0 = its rule). */
static double run_at_case(const at_case *ac, int which, int with_work, int tile, uint64_t seed) {
    rlxt_rng r = {seed};
    cache c;
    cache_new(&c, &r, ac->n_seqs, ac->cached, ac->fresh, ac->P, ac->layout, ac->KV, ac->D, 0);
    cache_fill(&c, &r, 1);
    const int H = ac->H, KV = ac->KV, D = ac->D, half = D / 2;
    int64_t T = 0, maxq = 0, maxkv = 0;
    for (int s = 0; s < ac->n_seqs; s++) {
        T += ac->fresh[s];
        if (ac->fresh[s] > maxq) maxq = ac->fresh[s];
        if (c.kvlen[s] > maxkv) maxkv = c.kvlen[s];
    }
    const int64_t ldq = (int64_t)H * D + 8, ldo = (int64_t)H * D;
    gbuf bq, bs, bc, bsn, bp, bss, bip, bix, bl, bo, bw;
    uint16_t *q = gb_new(&bq, (size_t)(T * ldq) * 2);
    for (int64_t i = 0; i < T * ldq; i++) putb(q, i, 2.0f * rlxt_uniform(&r));
    float *sc = gb_new(&bs, (size_t)T * 4);
    for (int64_t t = 0; t < T; t++) sc[t] = (float)pow(2.0, 0.5 * rlxt_uniform(&r));
    float *ct = gb_new(&bc, (size_t)(maxkv * half) * 4), *st = gb_new(&bsn, (size_t)(maxkv * half) * 4);
    rlx_rope_params rp = {.head_dim = D, .max_positions = maxkv, .theta = 10000.0};
    rlx__ref_rope_tables(ct, st, &rp);
    int32_t *pos = gb_new(&bp, (size_t)T * 4), *ss = gb_new(&bss, (size_t)(ac->n_seqs + 1) * 4);
    int32_t *ip = gb_new(&bip, (size_t)(ac->n_seqs + 1) * 4), *ix = gb_new(&bix, (size_t)c.indptr[ac->n_seqs] * 4 + 4);
    int32_t *kl = gb_new(&bl, (size_t)ac->n_seqs * 4);
    int64_t t = 0;
    for (int s = 0; s < ac->n_seqs; s++) {
        ss[s] = (int32_t)t, ip[s] = c.indptr[s], kl[s] = (int32_t)c.kvlen[s];
        for (int i = 0; i < ac->fresh[s]; i++, t++) pos[t] = (int32_t)(ac->cached[s] + i);
    }
    ss[ac->n_seqs] = (int32_t)T, ip[ac->n_seqs] = c.indptr[ac->n_seqs];
    memcpy(ix, c.indices, (size_t)c.indptr[ac->n_seqs] * 4);
    void *o = gb_new(&bo, (size_t)(T * ldo) * 2);
    const size_t wbytes = with_work ? (size_t)(T * H * 64 * (D + 1)) * 4 : 0;
    void *work = with_work ? gb_new(&bw, wbytes) : NULL;
    const float scale = 1.0f / sqrtf((float)D);
    rlx_attn_args a = {.o = o, .q = q, .q_scale = sc, .cos_t = ct, .sin_t = st, .pos = pos, .rope = ac->rope, .seq_start = ss,
                       .kv = cache_ref(&c, ip, ix, kl), .work = work, .work_bytes = wbytes, .ldq = ldq, .ldo = ldo, .n_tokens = T,
                       .n_seqs = ac->n_seqs, .max_q = maxq, .max_kv = maxkv, .heads = H, .kv_heads = KV, .head_dim = D,
                       .causal = ac->causal, .scale = scale, .dt = RLX_K_BF16, .tile = tile};
    int (*fn)(const rlx_attn_args *, void *) = which == K_FLASH ? rlx_simt_flash_attention : which == K_DECODE ? rlx_simt_decode_attention
                                                                                                             : rlx_simt_attention;
    char shape[240];
    int n = snprintf(shape, sizeof shape, "%s seqs (cached+new)=[", kname[which]);
    for (int s = 0; s < ac->n_seqs && n < 150; s++) n += snprintf(shape + n, sizeof shape - (size_t)n, "%s%d+%d", s ? "," : "", ac->cached[s], ac->fresh[s]);
    snprintf(shape + n, sizeof shape - (size_t)n, "] H=%d KV=%d D=%d P=%d %s causal=%d rope=%d work=%d tile=%s", H, KV, D, ac->P,
             ac->layout ? "HND" : "NHD", ac->causal, ac->rope, with_work,
             tile == RLX_FA_TILE_WIDE ? "wide" : tile == RLX_FA_TILE_NARROW ? "narrow" : "rule");
    cr_assert_eq(fn(&a, NULL), 0, "%s seed %llu: launch failed: %s", shape, (unsigned long long)seed, rlx_simt_last_error());
    /* the other thread order: same bits */
    {
        gbuf bo2, bw2;
        void *o2 = gb_new(&bo2, bo.bytes);
        rlx_attn_args a2 = a;
        a2.o = o2;
        if (with_work) a2.work = gb_new(&bw2, wbytes);
        const rlx_simt_order order = rlx_simt_get_order();
        rlx_simt_set_order(order == RLX_SIMT_FORWARD ? RLX_SIMT_REVERSE : RLX_SIMT_FORWARD);
        cr_assert_eq(fn(&a2, NULL), 0, "%s (other order): %s", shape, rlx_simt_last_error());
        rlx_simt_set_order(order);
        cr_expect(!memcmp(o, o2, bo.bytes), "%s seed %llu: output differs between the simt thread orders (a race)", shape,
                  (unsigned long long)seed);
        gb_free(&bo2);
        if (with_work) gb_free(&bw2);
    }
    float *got = xmalloc(sizeof(float) * (size_t)(T * H * D)), *ref = xmalloc(sizeof(float) * (size_t)(T * H * D));
    for (int64_t i = 0; i < T * H * D; i++) got[i] = getb(o, i);
    ref_attention(ref, q, ldq, sc, ct, st, pos, &c, ac, scale);
    int nf;
    const double e = nmse(got, ref, (size_t)(T * H * D), &nf);
    cr_expect(!nf && e <= 5e-4, "%s seed %llu: NMSE %.3e > 5e-4 or non-finite (%d)", shape, (unsigned long long)seed, e, nf);
    cr_expect(gb_guards_ok(&bo), "%s: wrote outside o", shape);
    if (with_work) cr_expect(gb_guards_ok(&bw), "%s: wrote outside the workspace", shape);
    free(got), free(ref);
    gb_free(&bq), gb_free(&bs), gb_free(&bc), gb_free(&bsn), gb_free(&bp), gb_free(&bss), gb_free(&bip), gb_free(&bix), gb_free(&bl);
    gb_free(&bo);
    if (with_work) gb_free(&bw);
    cache_free(&c);
    return e;
}

/* The decode kernel on the awkward shapes: context 1, page size 1, context not a multiple
 * of the page size, GQA groups 1/4/8, head_dim 64/128/48, many sequences of mixed lengths; plus
 * a few new tokens per sequence (causal inside the step), long contexts that split the key range
 * (the merge), HND and NHD. */
static const at_case DEC_CASES[] = {
    {1, {0}, {1}, 1, 1, 64, 1, 0, 1, 1},                    /* context 1, page size 1 */
    {1, {0}, {1}, 8, 1, 128, 16, 1, 1, 1},                  /* context 1, group 8 */
    {1, {36}, {1}, 4, 1, 48, 1, 0, 1, 1},                   /* page size 1, head_dim 48, group 4 */
    {2, {20, 99}, {1, 1}, 8, 2, 64, 16, 1, 1, 1},          /* contexts 21, 100 with pages of 16 */
    {3, {1000, 5, 300}, {1, 1, 1}, 4, 4, 128, 64, 0, 1, 1}, /* group 1, a long context: several splits */
    {8, {0, 1, 2, 15, 16, 17, 63, 200}, {1, 1, 1, 1, 1, 1, 1, 1}, 16, 4, 64, 16, 1, 1, 1}, /* mixed lengths */
    {2, {7, 0}, {4, 3}, 8, 2, 64, 4, 0, 1, 1},              /* 3-4 new tokens: causal inside the step */
    {2, {600, 31}, {2, 8}, 2, 1, 128, 32, 1, 1, 1},         /* MQA, 16 rows, splits */
    {1, {40}, {1}, 6, 3, 48, 8, 0, 0, 0},                   /* not causal, no rope */
    {4, {511, 512, 513, 0}, {1, 1, 1, 2}, 32, 8, 64, 256, 1, 1, 1}, /* page size 256, Llama-1B's group */
    {3, {0, 130, 37}, {1, 1, 1}, 16, 2, 48, 16, 1, 1, 1},   /* group 8 over contexts 1, 131, 38: head_dim 48, splits */
    {2, {250, 9}, {1, 1}, 8, 1, 128, 1, 0, 1, 1},           /* group 8, page size 1 over 251 pages, head_dim 128 */
};
#define N_DEC (sizeof DEC_CASES / sizeof DEC_CASES[0])

Test(kv_kernels, decode_attention_awkward_shapes) {
    double worst = 0;
    for (size_t i = 0; i < N_DEC; i++)
        for (int w = 0; w < 2; w++) {
            const double e = run_at_case(&DEC_CASES[i], K_DECODE, w, 0, 900 + i);
            if (e > worst) worst = e;
        }
    fprintf(stderr, "kv-kernels: decode_attention %zu cases x {1 split, split-KV}: worst NMSE %.3e (bound 5e-4)\n", N_DEC, worst);
}

/* The prefill kernels on pages: a cached prefix and new tokens read alike from the page table.
 * Prefixes and new-token counts off the key tiles (32 and 64 keys) and off the query tiles. */
static const at_case PRE_CASES[] = {
    {1, {0}, {17}, 4, 2, 64, 16, 0, 1, 1},
    {2, {5, 0}, {70, 129}, 8, 2, 128, 64, 1, 1, 1},
    {3, {64, 1, 100}, {64, 3, 17}, 4, 4, 64, 1, 0, 1, 1},
    {2, {31, 0}, {9, 40}, 16, 2, 64, 4, 1, 0, 1},
    {1, {200}, {65}, 2, 1, 128, 256, 0, 1, 0},
    {2, {33, 7}, {31, 97}, 8, 2, 128, 8, 1, 1, 1},
};

/* Every tile shape on every case (the rule picks one per call; each must be right on its own). */
Test(kv_kernels, flash_attention_paged) {
    for (int tile = RLX_FA_TILE_WIDE; tile <= RLX_FA_TILE_NARROW; tile++)
        for (size_t i = 0; i < sizeof PRE_CASES / sizeof PRE_CASES[0]; i++) run_at_case(&PRE_CASES[i], K_FLASH, 0, tile, 950 + i);
}

Test(kv_kernels, generic_attention_paged) {
    const size_t short_pre[] = {0, 2, 3}; /* the generic kernel is one warp per query row: slow under simt */
    for (size_t i = 0; i < sizeof short_pre / sizeof short_pre[0]; i++) run_at_case(&PRE_CASES[short_pre[i]], K_GENERIC, 0, 0, 960 + i);
    /* the short decode shapes (the long ones cost minutes under ASan with one warp per query row) */
    const size_t short_dec[] = {0, 1, 2, 3, 6, 8};
    for (size_t i = 0; i < sizeof short_dec / sizeof short_dec[0]; i++) run_at_case(&DEC_CASES[short_dec[i]], K_GENERIC, 0, 0, 970 + i);
    const at_case odd = {2, {3, 0}, {2, 5}, 4, 2, 12, 2, 1, 1, 1}; /* head_dim 12: only this kernel applies */
    run_at_case(&odd, K_GENERIC, 0, 0, 990);
}

Test(kv_kernels, decode_attention_arguments) {
    const at_case ac = {1, {4}, {1}, 8, 1, 64, 4, 0, 1, 1};
    rlxt_rng r = {1};
    cache c;
    cache_new(&c, &r, 1, ac.cached, ac.fresh, ac.P, 0, 1, 64, 0);
    int32_t ss[2] = {0, 1}, ip[2] = {0, 2}, kl[1] = {5}, pos[1] = {4};
    gbuf bq, bo;
    void *q = gb_new(&bq, 8 * 64 * 2), *o = gb_new(&bo, 8 * 64 * 2);
    float tab[5 * 32];
    for (int i = 0; i < 5 * 32; i++) tab[i] = 0.5f;
    const rlx_attn_args good = {.o = o, .q = q, .cos_t = tab, .sin_t = tab, .pos = pos, .rope = 1, .seq_start = ss,
                                .kv = cache_ref(&c, ip, c.indices, kl), .ldq = 512, .ldo = 512, .n_tokens = 1, .n_seqs = 1, .max_q = 1,
                                .max_kv = 5, .heads = 8, .kv_heads = 1, .head_dim = 64, .causal = 1, .scale = 0.125f, .dt = RLX_K_BF16};
    rlx_attn_args a;
#define DA(field, value, why)                                                                    \
    do {                                                                                        \
        a = good;                                                                               \
        a.field = value;                                                                        \
        cr_expect_eq(rlx_simt_decode_attention(&a, NULL), 1, "%s must be refused", why);         \
    } while (0)
    DA(dt, RLX_K_F32, "f32");
    DA(head_dim, 60, "head_dim 60 (not a multiple of 8)");
    DA(max_q, 5, "5 tokens x group 8 = 40 rows > 32");
    DA(n_tokens, 2, "more tokens than n_seqs x max_q");
    DA(kv.k, (char *)c.k + 2, "K not 16-byte aligned");
    DA(kv.page_shift, 9, "page size 512");
    DA(heads, 12, "heads not a multiple of kv heads");
    DA(scale, INFINITY, "infinite scale");
#undef DA
    for (size_t i = 0; i < bo.bytes; i++)
        if (((unsigned char *)o)[i] != 0xff) cr_assert_fail("o written by a rejected call (byte %zu)", i);
    gb_free(&bq), gb_free(&bo);
    cache_free(&c);
}
