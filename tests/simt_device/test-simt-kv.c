/* The KV cache on the simt device (the kernel plan with kv_write, paged flash / rope / decode
 * attention, run on the CPU) against the CPU reference and transformers, bf16 bounds of
 * NUMERICS.md:
 *   - prompts prefilled in 1 … k chunks at random boundaries (single-token chunks run the decode
 *     kernel) give the CPU reference's one-shot logits: per-position cosine >= 0.999,
 *     max|Δ|/max|ref| <= 3e-2, argmax agreement >= 95 %, fused and unfused plans;
 *   - the K/V the device writes match transformers' past_key_values: cosine >= 0.999 per
 *     (layer, K|V, sequence, kv head), both layouts, page sizes 1, 16, 64, shuffled pages, several
 *     sequences in one pool;
 *   - generation, teacher-forced: fed the CPU reference's greedy tokens step by step, the device's
 *     next-token argmax agrees with the CPU's >= 95 % of the time, every fixture;
 *   - a descriptor the device cannot use, and every bad input of the issue, is refused before any
 *     work with nothing written to the device's pages. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rlx/generate.h"
#include "rlx/kv.h"
#include "rlx_simt_device.h"
#include "testutil.h"
#include "tools/check.h"
#include "tools/kv_pool.h"
#include "runtime/device.h"

static rlx_model *build(const rlx_llama_config *cfg, const rlx_weights *w, rlx_device_kind dev, rlx_fusion_policy fusion, int64_t batch,
                        int64_t seq, int last_token) {
    rlx_llama_recipe_params p = rlx_llama_recipe_default_params();
    p.batch = batch;
    p.seq = seq;
    p.max_context = seq;
    p.last_token_logits = last_token;
    rlx_flow *fl;
    cr_assert_eq(rlx_llama_flow(cfg, &p, &fl), RLX_OK, "flow: %s", rlx_last_error());
    rlx_build_params bp = rlx_build_default_params();
    bp.device = dev;
    bp.fusion = fusion;
    rlx_model *m;
    cr_assert_eq(rlx_model_build(fl, w, &bp, &m), RLX_OK, "build: %s", rlx_last_error());
    rlx_flow_destroy(fl);
    return m;
}

static float *output(rlx_session *s, int64_t rows, int64_t V) {
    int64_t r, c;
    cr_assert_eq(rlx_session_output_shape(s, &r, &c), RLX_OK);
    cr_assert(r == rows && c == V);
    float *o = malloc(sizeof(float) * (size_t)(rows * V));
    cr_assert_eq(rlx_session_output_to_host(s, o, (size_t)(rows * V)), RLX_OK, "%s", rlx_last_error());
    return o;
}

/* All-position logits [B·S, V] of a plain prefill. */
static float *one_shot(rlx_model *m, const int32_t *tok, int64_t B, int64_t S, int64_t V) {
    rlx_session *s;
    cr_assert_eq(rlx_session_create(m, &s), RLX_OK);
    int64_t lens[16];
    for (int64_t b = 0; b < B; b++) lens[b] = S;
    cr_assert_eq(rlx_session_prefill(s, tok, B * S, lens, B, NULL), RLX_OK, "%s", rlx_last_error());
    float *o = output(s, B * S, V);
    rlx_session_destroy(s);
    return o;
}

/* The same logits from KV calls of random chunks (seeded); k_max chunks per sequence at most
 * (S: single-token chunks, i.e. decode steps after the first token). */
static float *chunked(rlx_model *m, const int32_t *tok, int64_t B, int64_t S, int64_t V, int64_t P, int layout, int64_t k_max,
                      uint64_t seed) {
    rlx_session *s;
    cr_assert_eq(rlx_session_create(m, &s), RLX_OK);
    rlx__kv_pool *pool;
    cr_assert_eq(rlx__kv_pool_create(m, P, layout ? RLX_KV_LAYOUT_HND : RLX_KV_LAYOUT_NHD, B * ((S + P - 1) / P) + 3, B, -1, seed, &pool),
                 RLX_OK, "%s", rlx_last_error());
    rlxt_rng rng = {seed};
    int64_t bounds[16][80], nch[16], done[16] = {0};
    for (int64_t b = 0; b < B; b++) {
        nch[b] = 0;
        bounds[b][0] = 0;
        for (int64_t t = 1; t < S; t++)
            if (nch[b] + 1 < k_max && (k_max >= S || rlxt_next(&rng) % (uint64_t)S < (uint64_t)k_max)) bounds[b][++nch[b]] = t;
        bounds[b][++nch[b]] = S;
    }
    float *got = malloc(sizeof(float) * (size_t)(B * S * V));
    for (;;) {
        int64_t seqs[16], fresh[16], n = 0, T = 0;
        int32_t toks[2048];
        for (int64_t b = 0; b < B; b++) {
            if (done[b] == nch[b]) continue;
            const int64_t a = bounds[b][done[b]], e = bounds[b][done[b] + 1];
            seqs[n] = b, fresh[n] = e - a;
            memcpy(toks + T, tok + b * S + a, sizeof(int32_t) * (size_t)(e - a));
            T += e - a, n++;
        }
        if (!n) break;
        rlx_kv_pages pg;
        cr_assert_eq(rlx__kv_pool_prepare(pool, seqs, fresh, n, &pg), RLX_OK, "%s", rlx_last_error());
        rlx_prefill_batch pb = {.tokens = toks, .n_tokens = T, .seq_lens = fresh, .n_seqs = n};
        cr_assert_eq(rlx_session_prefill_kv(s, &pb, &pool->desc, &pg, NULL), RLX_OK, "%s", rlx_last_error());
        float *o = output(s, T, V);
        int64_t at = 0;
        for (int64_t i = 0; i < n; i++) {
            const int64_t b = seqs[i], a = bounds[b][done[b]];
            memcpy(got + (b * S + a) * V, o + at * V, sizeof(float) * (size_t)(fresh[i] * V));
            at += fresh[i];
            done[b]++;
        }
        free(o);
        rlx__kv_pool_commit(pool, seqs, fresh, n);
    }
    rlx__kv_pool_destroy(pool);
    rlx_session_destroy(s);
    return got;
}

static void expect_bf16_model_bounds(const char *what, const float *got, const float *ref, int64_t rows, int64_t V) {
    double mc, rel, agree;
    rlx__compare_logits(got, ref, rows, V, &mc, &rel, &agree);
    cr_expect(mc >= 0.999 && rel <= 3e-2 && agree >= 0.95, "%s: min cosine %.6f (>= 0.999), max|d|/max|ref| %.3g (<= 3e-2), argmax %.3f (>= 0.95)",
              what, mc, rel, agree);
    fprintf(stderr, "simt-kv: %-60s min cosine %.6f  max|d|/max|ref| %.3g  argmax %.3f\n", what, mc, rel, agree);
}

static int case_ids[RLXT_N_LLAMA_FIXTURES] = {0, 1, 2, 3, 4, 5, 6, 7, 8};

ParameterizedTestParameters(simt_kv, chunked_prefill_matches_cpu_one_shot) {
    return cr_make_param_array(int, case_ids, RLXT_N_LLAMA_FIXTURES);
}

ParameterizedTest(int *id, simt_kv, chunked_prefill_matches_cpu_one_shot) {
    rlx_simt_device_install();
    rlxt_llama_fixture f;
    char err[1600];
    cr_assert_eq(rlxt_llama_fixture_load(rlxt_llama_fixtures[*id], &f, err, sizeof err), 0, "%s", err);
    rlx_model *cpu = build(&f.cfg, f.w, RLX_DEVICE_CPU, RLX_FUSION_FUSED, f.B, f.S, 0);
    float *ref = one_shot(cpu, f.tokens, f.B, f.S, f.V);
    rlx_model_destroy(cpu);
    for (int fu = 0; fu < 2; fu++) {
        rlx_model *m = build(&f.cfg, f.w, RLX_DEVICE_SIMT, fu ? RLX_FUSION_NONE : RLX_FUSION_FUSED, f.B, f.S, 0);
        /* fused: one chunk, up to 3, single tokens; unfused (the reference-like plan): single tokens */
        const int64_t kmax[3] = {f.S, 1, 3}, P[3] = {1, 16, 4};
        for (int t = 0; t < (fu ? 1 : 3); t++) {
            float *got = chunked(m, f.tokens, f.B, f.S, f.V, P[t], t == 1, kmax[t], 31 + (uint64_t)t);
            char what[160];
            snprintf(what, sizeof what, "%s %s, <= %lld chunks, pages of %lld", rlxt_llama_fixtures[*id], fu ? "unfused" : "fused",
                     (long long)kmax[t], (long long)P[t]);
            expect_bf16_model_bounds(what, got, ref, f.B * f.S, f.V);
            free(got);
        }
        rlx_model_destroy(m);
    }
    free(ref);
    rlxt_llama_fixture_free(&f);
}

/* head_dim 64 and 128 run flash_attention (prompt chunks) and decode_attention (single tokens) in
 * the fused plan; random weights of Llama's shape. */
static void flash_model_case(int64_t hidden, int64_t heads, int64_t kv, int64_t head_dim) {
    rlx_simt_device_install();
    rlx_llama_config c;
    cr_assert_eq(rlx_llama_builtin_config("tiny", &c), RLX_OK);
    c.num_hidden_layers = 2, c.hidden_size = hidden, c.num_attention_heads = heads, c.num_key_value_heads = kv;
    c.head_dim = head_dim, c.rope.head_dim = head_dim, c.vocab_size = 300;
    cr_assert_eq(rlx_llama_config_validate(&c, "test"), RLX_OK, "%s", rlx_last_error());
    rlx_weights *w;
    cr_assert_eq(rlx_llama_random_weights(&c, 13, RLX_DTYPE_BF16, &w), RLX_OK);
    const int64_t B = 2, S = 40, FIRST = 32;
    int32_t tok[80];
    rlxt_rng r = {77};
    for (int i = 0; i < B * S; i++) tok[i] = (int32_t)(rlxt_next(&r) % 300);
    rlx_model *cpu = build(&c, w, RLX_DEVICE_CPU, RLX_FUSION_FUSED, B, S, 0);
    float *ref = one_shot(cpu, tok, B, S, 300);
    rlx_model_destroy(cpu);
    rlx_model *m = build(&c, w, RLX_DEVICE_SIMT, RLX_FUSION_FUSED, B, S, 0);
    int flash = 0;
    for (int i = 0; i < m->dev->plan.n; i++) flash += m->dev->plan.k[i].kind == RLX__K_FLASH_ATTENTION;
    cr_expect_eq(flash, 2, "the fused plan runs flash_attention at head_dim %lld", (long long)head_dim);
    char what[120];
    for (int t = 0; t < 2; t++) {
        /* t 0: chunks of tens of tokens (flash over pages); t 1: the first 32 tokens at once, then one by one (decode) */
        float *got = t == 0 ? chunked(m, tok, B, S, 300, 16, 0, 4, 5) : NULL;
        if (t == 1) {
            rlx_session *s;
            cr_assert_eq(rlx_session_create(m, &s), RLX_OK);
            rlx__kv_pool *pool;
            cr_assert_eq(rlx__kv_pool_create(m, 8, RLX_KV_LAYOUT_HND, 12, B, -1, 3, &pool), RLX_OK, "%s", rlx_last_error());
            got = malloc(sizeof(float) * (size_t)(B * S * 300));
            for (int64_t pos = 0; pos < S;) {
                const int64_t step = pos ? 1 : FIRST;
                int64_t seqs[2] = {0, 1}, fresh[2] = {step, step};
                int32_t tt[2 * FIRST];
                for (int b = 0; b < B; b++) memcpy(tt + b * step, tok + b * S + pos, sizeof(int32_t) * (size_t)step);
                rlx_kv_pages pg;
                cr_assert_eq(rlx__kv_pool_prepare(pool, seqs, fresh, 2, &pg), RLX_OK);
                rlx_prefill_batch pb = {.tokens = tt, .n_tokens = 2 * step, .seq_lens = fresh, .n_seqs = 2};
                cr_assert_eq(rlx_session_prefill_kv(s, &pb, &pool->desc, &pg, NULL), RLX_OK, "%s", rlx_last_error());
                float *o = output(s, 2 * step, 300);
                for (int b = 0; b < B; b++) memcpy(got + (b * S + pos) * 300, o + b * step * 300, sizeof(float) * (size_t)(step * 300));
                free(o);
                rlx__kv_pool_commit(pool, seqs, fresh, 2);
                pos += step;
            }
            rlx__kv_pool_destroy(pool);
            rlx_session_destroy(s);
        }
        snprintf(what, sizeof what, "random weights head_dim %lld G %lld, %s", (long long)head_dim, (long long)(heads / kv),
                 t ? "32 + single-token decode steps" : "chunks of pages of 16");
        expect_bf16_model_bounds(what, got, ref, B * S, 300);
        free(got);
    }
    rlx_model_destroy(m);
    free(ref);
    rlx_weights_destroy(w);
}

Test(simt_kv, flash_and_decode_in_the_model_head_dim_64) { flash_model_case(256, 8, 2, 64); }
Test(simt_kv, flash_and_decode_in_the_model_head_dim_128) { flash_model_case(256, 8, 1, 128); }

/* ---- K/V on the device = transformers' past_key_values -------------------------------------------- */

static double cosine_pages(const rlxt_llama_fixture *f, const rlx__kv_pool *p, int64_t n_seqs) {
    const rlx_kv_desc *d = &p->desc;
    const int64_t P = d->page_size, KV = d->kv_heads, D = d->head_dim;
    double worst = 1;
    for (int64_t q = 0; q < n_seqs; q++)
        for (int64_t l = 0; l < f->L; l++)
            for (int kv = 0; kv < 2; kv++)
                for (int64_t g = 0; g < KV; g++) {
                    double ab = 0, aa = 0, bb = 0;
                    for (int64_t j = 0; j < f->S; j++)
                        for (int64_t dd = 0; dd < D; dd++) {
                            const int64_t page = p->seq_pages[q][j / P], slot = j % P;
                            const int64_t off = l * d->layer_stride + page * rlx_kv_page_elems(d) +
                                                (d->layout == RLX_KV_LAYOUT_NHD ? (slot * KV + g) * D : (g * P + slot) * D) + dd;
                            const float got = rlx_bf16_to_f32(((const uint16_t *)(kv ? p->v : p->k))[off]);
                            const float ref = f->past_kv[((((l * 2 + kv) * f->B + q % f->B) * f->KV + g) * f->S + j) * f->D + dd];
                            ab += (double)got * ref, aa += (double)got * got, bb += (double)ref * ref;
                        }
                    const double c = ab / sqrt(aa * bb);
                    if (!(c >= worst)) worst = c;
                }
    return worst;
}

ParameterizedTestParameters(simt_kv, pages_match_transformers_past_key_values) {
    return cr_make_param_array(int, case_ids, RLXT_N_LLAMA_FIXTURES);
}

ParameterizedTest(int *id, simt_kv, pages_match_transformers_past_key_values) {
    rlx_simt_device_install();
    rlxt_llama_fixture f;
    char err[1600];
    cr_assert_eq(rlxt_llama_fixture_load(rlxt_llama_fixtures[*id], &f, err, sizeof err), 0, "%s", err);
    const int64_t n_seqs = 2 * f.B, S = f.S;
    rlx_model *m = build(&f.cfg, f.w, RLX_DEVICE_SIMT, RLX_FUSION_FUSED, n_seqs, S, 1);
    rlx_session *s;
    cr_assert_eq(rlx_session_create(m, &s), RLX_OK);
    /* page sizes 1, 16 and 64 in both layouts: the layout alternates with the page size, and odd
     * fixtures take the other alternation, so every (layout, page size) pair runs on several
     * fixtures at half the simt time of all six per fixture (the CPU suite runs every pair on each) */
    const int64_t sizes[3] = {1, 16, 64};
    for (int ci = 0; ci < 3; ci++) {
            const int li = (ci + *id) % 2, si = ci;
            const int64_t P = sizes[si];
            rlx__kv_pool *pool;
            cr_assert_eq(rlx__kv_pool_create(m, P, li ? RLX_KV_LAYOUT_HND : RLX_KV_LAYOUT_NHD, n_seqs * ((S + P - 1) / P) + 5, n_seqs, -1,
                                             99 + (uint64_t)ci, &pool),
                         RLX_OK, "%s", rlx_last_error());
            int64_t seqs[32], fresh[32], T = 0;
            int32_t toks[2048];
            for (int64_t i = 0; i < n_seqs; i++) {
                const int64_t q = n_seqs - 1 - i;
                seqs[i] = q, fresh[i] = S;
                memcpy(toks + T, f.tokens + (q % f.B) * S, sizeof(int32_t) * (size_t)S);
                T += S;
            }
            rlx_kv_pages pg;
            cr_assert_eq(rlx__kv_pool_prepare(pool, seqs, fresh, n_seqs, &pg), RLX_OK);
            rlx_prefill_batch pb = {.tokens = toks, .n_tokens = T, .seq_lens = fresh, .n_seqs = n_seqs};
            cr_assert_eq(rlx_session_prefill_kv(s, &pb, &pool->desc, &pg, NULL), RLX_OK, "%s", rlx_last_error());
            rlx__kv_pool_commit(pool, seqs, fresh, n_seqs);
            const double c = cosine_pages(&f, pool, n_seqs);
            cr_expect(c >= 0.999, "%s: layout %s, pages of %lld: min cosine of the device's K/V vs past_key_values %.6f < 0.999",
                      rlxt_llama_fixtures[*id], li ? "HND" : "NHD", (long long)P, c);
            rlx__kv_pool_destroy(pool);
        }
    rlx_session_destroy(s);
    rlx_model_destroy(m);
    rlxt_llama_fixture_free(&f);
}

/* ---- what a device refuses ------------------------------------------------------------------------------ */

Test(simt_kv, f32_pages_on_a_bf16_device_are_refused) {
    rlx_simt_device_install();
    rlxt_llama_fixture f;
    char err[1600];
    cr_assert_eq(rlxt_llama_fixture_load("gqa_tied_f32", &f, err, sizeof err), 0, "%s", err);
    rlx_model *m = build(&f.cfg, f.w, RLX_DEVICE_SIMT, RLX_FUSION_FUSED, 1, 8, 1);
    rlx_session *s;
    cr_assert_eq(rlx_session_create(m, &s), RLX_OK);
    rlx__kv_pool *pool;
    cr_assert_eq(rlx__kv_pool_create(m, 4, RLX_KV_LAYOUT_NHD, 4, 1, -1, 0, &pool), RLX_OK, "%s", rlx_last_error());
    cr_expect_eq(pool->desc.dtype, RLX_DTYPE_BF16);
    int64_t seq = 0, n = 3;
    rlx_kv_pages pg;
    cr_assert_eq(rlx__kv_pool_prepare(pool, &seq, &n, 1, &pg), RLX_OK);
    rlx_kv_desc d = pool->desc;
    d.dtype = RLX_DTYPE_F32;
    rlx_prefill_batch pb = {.tokens = f.tokens, .n_tokens = 3, .seq_lens = &n, .n_seqs = 1};
    cr_expect_eq(rlx_session_prefill_kv(s, &pb, &d, &pg, NULL), RLX_ERR_INVALID_ARGUMENT);
    cr_expect(strstr(rlx_last_error(), "dtype F32") && strstr(rlx_last_error(), "BF16"), "%s", rlx_last_error());
    for (size_t i = 0; i < pool->bytes; i++)
        if (((unsigned char *)pool->k)[i] != 0xff || ((unsigned char *)pool->v)[i] != 0xff) cr_assert_fail("a refused call wrote the cache");
    cr_expect_eq(rlx_session_prefill_kv(s, &pb, &pool->desc, &pg, NULL), RLX_OK, "%s", rlx_last_error());
    rlx__kv_pool_destroy(pool);
    rlx_session_destroy(s);
    rlx_model_destroy(m);
    rlxt_llama_fixture_free(&f);
}

/* The bad inputs on a device model: refused before any work with the sequence and page
 * named, and the device's pages (host-visible on simt) still hold the pool's 0xff fill. Two
 * sequences, pages of 4, 8 pages, 16 positions: sequence 0 has 5 cached tokens (pages 3, 6) and
 * brings 2, sequence 1 is new with 3 tokens (page 1). */
Test(simt_kv, bad_input_refused_with_nothing_written) {
    rlx_simt_device_install();
    rlxt_llama_fixture f;
    char err[1600];
    cr_assert_eq(rlxt_llama_fixture_load("gqa_tied_f32", &f, err, sizeof err), 0, "%s", err);
    rlx_model *m = build(&f.cfg, f.w, RLX_DEVICE_SIMT, RLX_FUSION_FUSED, 2, 16, 1);
    rlx_session *s;
    cr_assert_eq(rlx_session_create(m, &s), RLX_OK);
    rlx__kv_pool *pool;
    cr_assert_eq(rlx__kv_pool_create(m, 4, RLX_KV_LAYOUT_NHD, 8, 2, -1, 0, &pool), RLX_OK, "%s", rlx_last_error());
    int64_t cached[2], fresh[2] = {2, 3};
    int32_t indptr[3], idx[8], last[2], toks[5] = {10, 11, 12, 13, 14};
    rlx_kv_desc d;
    void *ks[2], *vs[2];
    rlx_kv_pages pg = {.n_seqs = 2, .cached_len = cached, .kv_indptr = indptr, .kv_indices = idx, .kv_last_page_len = last};
    rlx_prefill_batch pb = {.tokens = toks, .n_tokens = 5, .seq_lens = fresh, .n_seqs = 2};
    for (int c = 0; c < 10; c++) {
        /* the good call's lists, then one thing wrong */
        d = pool->desc;
        cached[0] = 5, cached[1] = 0;
        indptr[0] = 0, indptr[1] = 2, indptr[2] = 3;
        idx[0] = 3, idx[1] = 6, idx[2] = 1;
        last[0] = 3, last[1] = 3;
        const char *what = NULL, *w1 = NULL, *w2 = NULL;
        rlx_status want = RLX_ERR_INVALID_ARGUMENT;
        switch (c) {
        case 0: idx[1] = 8, what = "a page outside the cache", w1 = "sequence 0", w2 = "page 8"; break;
        case 1: idx[2] = 6, what = "a page given twice (written)", w1 = "page 6", w2 = "sequence 1"; break;
        case 2: idx[1] = 3, what = "a page twice in one list", w1 = "sequence 0", w2 = "page 3"; break;
        case 3: cached[0] = 9, what = "cached_len beyond the pages given", w1 = "sequence 0", w2 = "cached_len 9"; break;
        case 4:
            /* 15 cached + 2 new reach position 16 of 16 (pages 3, 6, 0, 2, 5 for 17 tokens) */
            cached[0] = 15, indptr[1] = 5, indptr[2] = 6, idx[2] = 0, idx[3] = 2, idx[4] = 5, idx[5] = 1, last[0] = 1;
            what = "a context beyond the model's positions", w1 = "sequence 0", w2 = "position 16";
            break;
        case 5: d.dtype = RLX_DTYPE_F32, what = "f32 pages on a bf16 device", w1 = "dtype F32", w2 = "BF16"; break;
        case 6: d.kv_heads = 1, want = RLX_ERR_SHAPE, what = "kv heads", w1 = "1 kv heads", w2 = "has 2"; break;
        case 7: d.head_dim = 32, want = RLX_ERR_SHAPE, what = "head_dim", w1 = "head_dim 32", w2 = "has 16"; break;
        case 8: d.num_layers = 1, want = RLX_ERR_SHAPE, what = "layer count", w1 = "1 layers", w2 = "2 attention layers"; break;
        case 9:
            ks[0] = pool->k, ks[1] = NULL, vs[0] = pool->v, vs[1] = (char *)pool->v + d.layer_stride * 2;
            d.k_layers = ks, d.v_layers = vs, what = "a NULL layer pointer", w1 = "k_layers[1]", w2 = "layer 1";
            break;
        }
        rlx_clear_error();
        const rlx_status st = rlx_session_prefill_kv(s, &pb, &d, &pg, NULL);
        const char *msg = rlx_last_error();
        cr_expect_eq(st, want, "%s: %s, expected %s (%s)", what, rlx_status_name(st), rlx_status_name(want), msg);
        cr_expect(strstr(msg, w1) && strstr(msg, w2), "%s: the message names neither '%s' nor '%s': %s", what, w1, w2, msg);
        size_t i = 0;
        while (i < pool->bytes && ((unsigned char *)pool->k)[i] == 0xff && ((unsigned char *)pool->v)[i] == 0xff) i++;
        cr_expect_eq(i, pool->bytes, "%s: the refused call wrote the device's pages (byte %zu)", what, i);
        int64_t rows;
        cr_expect_neq(rlx_session_output_shape(s, &rows, NULL), RLX_OK, "%s: a refused call leaves no output", what);
    }
    /* the same session and pool then take a good call (no cached tokens: the pages hold no K/V yet) */
    cached[0] = 0, fresh[0] = 2, indptr[1] = 1, indptr[2] = 2, idx[0] = 3, idx[1] = 1, last[0] = 2, last[1] = 3;
    cr_expect_eq(rlx_session_prefill_kv(s, &pb, &pool->desc, &pg, NULL), RLX_OK, "%s", rlx_last_error());
    size_t changed = 0;
    for (size_t i = 0; i < pool->bytes; i++) changed += ((unsigned char *)pool->k)[i] != 0xff;
    cr_expect(changed > 0, "the good call wrote no K (so the checks above could not see a write)");
    rlx__kv_pool_destroy(pool);
    rlx_session_destroy(s);
    rlx_model_destroy(m);
    rlxt_llama_fixture_free(&f);
}

/* ---- generation, teacher-forced ------------------------------------------------------------------------- */

ParameterizedTestParameters(simt_kv, teacher_forced_decode_agrees_with_cpu) {
    return cr_make_param_array(int, case_ids, RLXT_N_LLAMA_FIXTURES);
}

ParameterizedTest(int *id, simt_kv, teacher_forced_decode_agrees_with_cpu) {
    rlx_simt_device_install();
    rlxt_llama_fixture f;
    char err[1600];
    cr_assert_eq(rlxt_llama_fixture_load(rlxt_llama_fixtures[*id], &f, err, sizeof err), 0, "%s", err);
    const int n = f.n_prompts;
    int64_t lens[4], max_len = 0, total = 0;
    for (int i = 0; i < n; i++) lens[i] = f.prompt_len[i], total += lens[i], max_len = lens[i] > max_len ? lens[i] : max_len;
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)total);
    for (int i = 0, at = 0; i < n; at += (int)lens[i], i++) memcpy(tok + at, f.prompt[i], sizeof(int32_t) * (size_t)lens[i]);
    /* the CPU reference's greedy tokens (no end tokens: 32 steps for every prompt) */
    rlx_llama_recipe_params rp = rlx_llama_recipe_default_params();
    rp.batch = n, rp.seq = max_len, rp.max_context = max_len + 32;
    rlx_flow *fl;
    cr_assert_eq(rlx_llama_flow(&f.cfg, &rp, &fl), RLX_OK);
    rlx_model *cpu, *dev;
    rlx_build_params bp = rlx_build_default_params();
    cr_assert_eq(rlx_model_build(fl, f.w, &bp, &cpu), RLX_OK, "%s", rlx_last_error());
    bp.device = RLX_DEVICE_SIMT;
    cr_assert_eq(rlx_model_build(fl, f.w, &bp, &dev), RLX_OK, "%s", rlx_last_error());
    rlx_flow_destroy(fl);
    rlx_generate_params gp = rlx_generate_default_params();
    rlx_generation *g;
    cr_assert_eq(rlx_generate(cpu, tok, lens, n, &gp, NULL, &g), RLX_OK, "%s", rlx_last_error());
    /* the device: the prompts, then the CPU's tokens one per step */
    rlx_session *s;
    cr_assert_eq(rlx_session_create(dev, &s), RLX_OK);
    rlx__kv_pool *pool;
    cr_assert_eq(rlx__kv_pool_create(dev, 8, RLX_KV_LAYOUT_NHD, n * ((max_len + 32 + 7) / 8), n, -1, 21, &pool), RLX_OK, "%s", rlx_last_error());
    const int64_t V = f.V;
    float *logits = malloc(sizeof(float) * (size_t)(n * V));
    int64_t agree = 0, steps = 0, seqs[4] = {0, 1, 2, 3}, fresh[4];
    for (int step = 0; step <= 32; step++) {
        int32_t in[1024];
        int64_t T = 0;
        for (int i = 0; i < n; i++) {
            const int32_t *cpu_ids = rlx_generation_tokens(g, i, NULL);
            if (step == 0) memcpy(in + T, f.prompt[i], sizeof(int32_t) * (size_t)lens[i]), fresh[i] = lens[i];
            else in[T] = cpu_ids[step - 1], fresh[i] = 1;
            T += fresh[i];
        }
        if (step == 32) break; /* the 32nd CPU token has no successor to predict */
        rlx_kv_pages pg;
        cr_assert_eq(rlx__kv_pool_prepare(pool, seqs, fresh, n, &pg), RLX_OK, "%s", rlx_last_error());
        rlx_prefill_batch pb = {.tokens = in, .n_tokens = T, .seq_lens = fresh, .n_seqs = n};
        cr_assert_eq(rlx_session_prefill_kv(s, &pb, &pool->desc, &pg, NULL), RLX_OK, "%s", rlx_last_error());
        cr_assert_eq(rlx_session_output_to_host(s, logits, (size_t)(n * V)), RLX_OK);
        rlx__kv_pool_commit(pool, seqs, fresh, n);
        for (int i = 0; i < n; i++) {
            int64_t best = 0;
            for (int64_t v = 1; v < V; v++)
                if (logits[i * V + v] > logits[i * V + best]) best = v;
            agree += best == rlx_generation_tokens(g, i, NULL)[step];
            steps++;
        }
    }
    const double rate = (double)agree / (double)steps;
    cr_expect(rate >= 0.95, "%s: teacher-forced next-token agreement with the CPU %.3f (%lld of %lld) < 0.95", rlxt_llama_fixtures[*id],
              rate, (long long)agree, (long long)steps);
    fprintf(stderr, "simt-kv: %-24s teacher-forced agreement with the CPU %.3f (%lld of %lld steps)\n", rlxt_llama_fixtures[*id], rate,
            (long long)agree, (long long)steps);
    /* rlx_generate itself on the device (its pool in device memory): greedy, the same first token
     * as the CPU where the teacher-forced step agreed */
    rlx_generation *gd;
    gp.max_new_tokens = 6;
    cr_assert_eq(rlx_generate(dev, tok, lens, n, &gp, NULL, &gd), RLX_OK, "%s", rlx_last_error());
    for (int i = 0; i < n; i++) {
        int64_t k;
        const int32_t *ids = rlx_generation_tokens(gd, i, &k);
        cr_expect_eq(k, 6);
        for (int64_t t = 0; t < k; t++) cr_expect(ids[t] >= 0 && ids[t] < V);
    }
    rlx_generation_destroy(gd);
    free(logits);
    rlx__kv_pool_destroy(pool);
    rlx_session_destroy(s);
    rlx_generation_destroy(g);
    rlx_model_destroy(cpu);
    rlx_model_destroy(dev);
    free(tok);
    rlxt_llama_fixture_free(&f);
}
