/* The KV cache on the CPU reference (rlx/kv.h, host/kv/, host/runtime/cpu_ref_kv.c) against the
 * one-shot prefill and against transformers:
 *   - a prompt prefilled in 1 … k chunks at random boundaries gives the one-shot prefill's logits
 *     (max|Δ|/max|ref| ≤ 1e-5, f32 pages);
 *   - the K/V written equal transformers' past_key_values (≤ 1e-5 relative) in both layouts, page
 *     sizes 1, 16 and 64, shuffled page indices, several sequences sharing one pool;
 *   - a shared, fully cached prefix (two sequences listing the same pages) continues correctly;
 *   - every bad input of the issue is refused before any work, with nothing written to the cache;
 *   - the block-table converter. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv/kv.h"
#include "rlx/encoder.h"
#include "rlx/kv.h"
#include "testutil.h"
#include "tools/kv_pool.h"

static rlx_model *build_cpu(const rlxt_llama_fixture *f, int64_t batch, int64_t seq, int64_t max_context, int last_token) {
    rlx_llama_recipe_params p = rlx_llama_recipe_default_params();
    p.batch = batch;
    p.seq = seq;
    p.max_context = max_context;
    p.last_token_logits = last_token;
    rlx_flow *fl;
    cr_assert_eq(rlx_llama_flow(&f->cfg, &p, &fl), RLX_OK, "flow: %s", rlx_last_error());
    rlx_model *m;
    cr_assert_eq(rlx_model_build(fl, f->w, NULL, &m), RLX_OK, "build: %s", rlx_last_error());
    rlx_flow_destroy(fl);
    return m;
}

static void load(const char *name, rlxt_llama_fixture *f) {
    char err[1600];
    cr_assert_eq(rlxt_llama_fixture_load(name, f, err, sizeof err), 0, "%s", err);
}

static float *output(rlx_session *s, int64_t rows, int64_t V) {
    int64_t r, c;
    cr_assert_eq(rlx_session_output_shape(s, &r, &c), RLX_OK);
    cr_assert(r == rows && c == V, "output %lld x %lld, expected %lld x %lld", (long long)r, (long long)c, (long long)rows, (long long)V);
    float *o = malloc(sizeof(float) * (size_t)(rows * V));
    cr_assert_eq(rlx_session_output_to_host(s, o, (size_t)(rows * V)), RLX_OK);
    return o;
}

/* ---- chunked prefill = one-shot prefill ------------------------------------------------------------ */

static int case_ids[RLXT_N_LLAMA_FIXTURES] = {0, 1, 2, 3, 4, 5, 6, 7, 8};

ParameterizedTestParameters(kv, chunked_prefill_matches_one_shot) {
    return cr_make_param_array(int, case_ids, RLXT_N_LLAMA_FIXTURES);
}

ParameterizedTest(int *id, kv, chunked_prefill_matches_one_shot) {
    const char *name = rlxt_llama_fixtures[*id];
    rlxt_llama_fixture f;
    load(name, &f);
    const int64_t B = f.B, S = f.S, V = f.V;
    rlx_model *m = build_cpu(&f, B, S, S, 0);
    rlx_session *s;
    cr_assert_eq(rlx_session_create(m, &s), RLX_OK);
    int64_t lens[16];
    for (int64_t b = 0; b < B; b++) lens[b] = S;
    cr_assert_eq(rlx_session_prefill(s, f.tokens, B * S, lens, B, NULL), RLX_OK, "%s", rlx_last_error());
    float *ref = output(s, B * S, V);
    float *got = malloc(sizeof(float) * (size_t)(B * S * V));
    for (int trial = 0; trial < 4; trial++) {
        rlxt_rng rng = {(uint64_t)(1000 * *id + trial + 1)};
        /* random boundaries per sequence: trial 0 is one chunk, later trials up to S chunks */
        int64_t bounds[16][70], nch[16];
        for (int64_t b = 0; b < B; b++) {
            const int64_t kmax = trial == 0 ? 1 : trial == 3 ? S : 1 + (int64_t)(rlxt_next(&rng) % (uint64_t)S);
            nch[b] = 0;
            bounds[b][0] = 0;
            for (int64_t t = 1; t < S; t++)
                if (nch[b] + 1 < kmax && (kmax == S || rlxt_next(&rng) % (uint64_t)S < (uint64_t)kmax)) bounds[b][++nch[b]] = t;
            bounds[b][++nch[b]] = S;
        }
        rlx__kv_pool *pool;
        cr_assert_eq(rlx__kv_pool_create(m, 4, trial % 2 ? RLX_KV_LAYOUT_HND : RLX_KV_LAYOUT_NHD, B * ((S + 3) / 4) + 3, B,
                                         RLX_DTYPE_F32, 77 + (uint64_t)trial, &pool),
                     RLX_OK, "%s", rlx_last_error());
        int64_t done_chunks[16] = {0};
        for (;;) {
            int64_t seqs[16], fresh[16], n = 0, T = 0;
            int32_t toks[1024];
            for (int64_t b = 0; b < B; b++) {
                if (done_chunks[b] == nch[b]) continue;
                const int64_t a = bounds[b][done_chunks[b]], e = bounds[b][done_chunks[b] + 1];
                seqs[n] = b;
                fresh[n] = e - a;
                memcpy(toks + T, f.tokens + b * S + a, sizeof(int32_t) * (size_t)(e - a));
                T += e - a;
                n++;
            }
            if (!n) break;
            rlx_kv_pages pg;
            cr_assert_eq(rlx__kv_pool_prepare(pool, seqs, fresh, n, &pg), RLX_OK, "%s", rlx_last_error());
            rlx_prefill_batch pb = {.tokens = toks, .n_tokens = T, .seq_lens = fresh, .n_seqs = n};
            cr_assert_eq(rlx_session_prefill_kv(s, &pb, &pool->desc, &pg, NULL), RLX_OK, "%s: %s", name, rlx_last_error());
            float *o = output(s, T, V);
            int64_t at = 0;
            for (int64_t i = 0; i < n; i++) {
                const int64_t b = seqs[i], a = bounds[b][done_chunks[b]];
                memcpy(got + (b * S + a) * V, o + at * V, sizeof(float) * (size_t)(fresh[i] * V));
                at += fresh[i];
                done_chunks[b]++;
            }
            free(o);
            rlx__kv_pool_commit(pool, seqs, fresh, n);
        }
        rlx__kv_pool_destroy(pool);
        const size_t nn = (size_t)(B * S * V);
        const double rel = rlxt_max_abs_diff(got, ref, nn) / rlxt_max_abs(ref, nn);
        cr_expect(rel <= 1e-5, "%s trial %d (chunks per sequence: %lld%s): chunked vs one-shot max|d|/max|ref| = %.3g > 1e-5", name, trial,
                  (long long)nch[0], B > 1 ? ", ..." : "", rel);
    }
    free(ref), free(got);
    rlx_session_destroy(s);
    rlx_model_destroy(m);
    rlxt_llama_fixture_free(&f);
}

/* ---- written K/V = transformers' past_key_values ---------------------------------------------------- */

static float page_get(const rlx__kv_pool *p, int k, int64_t layer, int64_t page, int64_t slot, int64_t g, int64_t d) {
    const rlx_kv_desc *ds = &p->desc;
    const int64_t P = ds->page_size, KV = ds->kv_heads, D = ds->head_dim;
    const int64_t off = layer * ds->layer_stride + page * rlx_kv_page_elems(ds) +
                        (ds->layout == RLX_KV_LAYOUT_NHD ? (slot * KV + g) * D : (g * P + slot) * D) + d;
    const void *base = k ? p->k : p->v;
    return ds->dtype == RLX_DTYPE_F32 ? ((const float *)base)[off] : rlx_bf16_to_f32(((const uint16_t *)base)[off]);
}

/* Every sequence of the pool against the fixture: sequence q holds prompt q % B. */
static double compare_pages(const rlxt_llama_fixture *f, const rlx__kv_pool *p, int64_t n_seqs) {
    double md = 0, mr = 0;
    const int64_t P = p->desc.page_size;
    for (int64_t q = 0; q < n_seqs; q++) {
        const int64_t b = q % f->B;
        cr_assert_eq(p->seq_len[q], f->S);
        for (int64_t l = 0; l < f->L; l++)
            for (int kv = 0; kv < 2; kv++)
                for (int64_t g = 0; g < f->KV; g++)
                    for (int64_t j = 0; j < f->S; j++)
                        for (int64_t d = 0; d < f->D; d++) {
                            const float ref = f->past_kv[((((l * 2 + kv) * f->B + b) * f->KV + g) * f->S + j) * f->D + d];
                            const float got = page_get(p, kv == 0, l, p->seq_pages[q][j / P], j % P, g, d);
                            const double dd = fabs((double)got - ref);
                            if (!(dd <= md)) md = dd;
                            if (fabs(ref) > mr) mr = fabs(ref);
                        }
    }
    return md / mr;
}

ParameterizedTestParameters(kv, pages_match_transformers_past_key_values) {
    return cr_make_param_array(int, case_ids, RLXT_N_LLAMA_FIXTURES);
}

ParameterizedTest(int *id, kv, pages_match_transformers_past_key_values) {
    const char *name = rlxt_llama_fixtures[*id];
    rlxt_llama_fixture f;
    load(name, &f);
    cr_assert_eq(f.L, f.cfg.num_hidden_layers);
    const int64_t B = f.B, S = f.S, n_seqs = 2 * B; /* every prompt twice: several sequences in one pool */
    rlx_model *m = build_cpu(&f, n_seqs, S, S, 1);
    rlx_session *s;
    cr_assert_eq(rlx_session_create(m, &s), RLX_OK);
    const int64_t sizes[3] = {1, 16, 64};
    for (int li = 0; li < 2; li++)
        for (int si = 0; si < 3; si++)
            for (int chunked = 0; chunked < 2; chunked++) {
                const int64_t P = sizes[si];
                rlx__kv_pool *pool;
                cr_assert_eq(rlx__kv_pool_create(m, P, li ? RLX_KV_LAYOUT_HND : RLX_KV_LAYOUT_NHD, n_seqs * ((S + P - 1) / P) + 5, n_seqs,
                                                 RLX_DTYPE_F32, 1234 + (uint64_t)(si * 2 + li), &pool),
                             RLX_OK, "%s", rlx_last_error());
                /* sequences in reverse order of their prompts, so slots and pages interleave */
                int64_t seqs[32], fresh[32];
                int32_t toks[2048];
                const int64_t first = chunked ? (S + 1) / 2 : S;
                for (int pass = 0; pass < (chunked && S > 1 ? 2 : 1); pass++) {
                    int64_t T = 0;
                    for (int64_t i = 0; i < n_seqs; i++) {
                        const int64_t q = n_seqs - 1 - i, b = q % B, a = pass ? first : 0, e = pass || !chunked ? S : first;
                        seqs[i] = q;
                        fresh[i] = e - a;
                        memcpy(toks + T, f.tokens + b * S + a, sizeof(int32_t) * (size_t)(e - a));
                        T += e - a;
                    }
                    rlx_kv_pages pg;
                    cr_assert_eq(rlx__kv_pool_prepare(pool, seqs, fresh, n_seqs, &pg), RLX_OK, "%s", rlx_last_error());
                    rlx_prefill_batch pb = {.tokens = toks, .n_tokens = T, .seq_lens = fresh, .n_seqs = n_seqs};
                    cr_assert_eq(rlx_session_prefill_kv(s, &pb, &pool->desc, &pg, NULL), RLX_OK, "%s: %s", name, rlx_last_error());
                    rlx__kv_pool_commit(pool, seqs, fresh, n_seqs);
                }
                const double rel = compare_pages(&f, pool, n_seqs);
                cr_expect(rel <= 1e-5, "%s: layout %s, page size %lld%s: pages vs past_key_values max|d|/max|ref| = %.3g > 1e-5", name,
                          li ? "HND" : "NHD", (long long)P, chunked ? ", two chunks" : "", rel);
                rlx__kv_pool_destroy(pool);
            }
    rlx_session_destroy(s);
    rlx_model_destroy(m);
    rlxt_llama_fixture_free(&f);
}

/* bf16 pages on the CPU reference hold the f32 values rounded once. */
Test(kv, bf16_pages_are_rounded_f32) {
    rlxt_llama_fixture f;
    load("llama3_scaling_f32", &f);
    rlx_model *m = build_cpu(&f, f.B, f.S, f.S, 1);
    rlx_session *s;
    cr_assert_eq(rlx_session_create(m, &s), RLX_OK);
    rlx__kv_pool *pool;
    cr_assert_eq(rlx__kv_pool_create(m, 8, RLX_KV_LAYOUT_NHD, 64, f.B, RLX_DTYPE_BF16, 5, &pool), RLX_OK, "%s", rlx_last_error());
    int64_t seqs[2] = {0, 1}, fresh[2] = {f.S, f.S};
    rlx_kv_pages pg;
    cr_assert_eq(rlx__kv_pool_prepare(pool, seqs, fresh, 2, &pg), RLX_OK);
    rlx_prefill_batch pb = {.tokens = f.tokens, .n_tokens = 2 * f.S, .seq_lens = fresh, .n_seqs = 2};
    cr_assert_eq(rlx_session_prefill_kv(s, &pb, &pool->desc, &pg, NULL), RLX_OK, "%s", rlx_last_error());
    rlx__kv_pool_commit(pool, seqs, fresh, 2);
    const double rel = compare_pages(&f, pool, 2);
    cr_expect(rel > 0 && rel <= 4e-3, "bf16 pages vs past_key_values: %.3g (expected bf16 rounding, <= 2^-8)", rel);
    rlx__kv_pool_destroy(pool);
    rlx_session_destroy(s);
    rlx_model_destroy(m);
    rlxt_llama_fixture_free(&f);
}

/* ---- a shared cached prefix ---------------------------------------------------------------------------- */

/* Two sequences whose first 8 tokens (two full pages of 4) are the same: the prefix is prefilled
 * once, then both continue with their own suffixes while listing the same two prefix pages. Each
 * must give the logits of a plain prefill of prefix + its suffix. */
Test(kv, shared_prefix_pages) {
    rlxt_llama_fixture f;
    load("llama3_scaling_f32", &f);
    const int64_t V = f.V, P = 4, PRE = 8, SUF = 5;
    rlx_model *m = build_cpu(&f, 2, 16, 32, 0);
    rlx_session *s;
    cr_assert_eq(rlx_session_create(m, &s), RLX_OK);
    rlx__kv_pool *pool;
    cr_assert_eq(rlx__kv_pool_create(m, P, RLX_KV_LAYOUT_HND, 16, 2, RLX_DTYPE_F32, 9, &pool), RLX_OK);
    const int32_t *pre = f.tokens, *suf0 = f.tokens + f.S, *suf1 = f.tokens + f.S + 10;
    /* the prefix into sequence 0's pages */
    int64_t seq0 = 0, n_pre = PRE;
    rlx_kv_pages pg;
    cr_assert_eq(rlx__kv_pool_prepare(pool, &seq0, &n_pre, 1, &pg), RLX_OK);
    rlx_prefill_batch pb = {.tokens = pre, .n_tokens = PRE, .seq_lens = &n_pre, .n_seqs = 1};
    cr_assert_eq(rlx_session_prefill_kv(s, &pb, &pool->desc, &pg, NULL), RLX_OK, "%s", rlx_last_error());
    const int32_t p0 = pool->seq_pages[0][0], p1 = pool->seq_pages[0][1];
    /* both continue: pages [p0, p1, own] each */
    int32_t indptr[3] = {0, 4, 8}, idx[8] = {p0, p1, 10, 11, p0, p1, 12, 13};
    int64_t cached[2] = {PRE, PRE}, fresh[2] = {SUF, SUF};
    int32_t toks[2 * SUF];
    memcpy(toks, suf0, sizeof(int32_t) * SUF);
    memcpy(toks + SUF, suf1, sizeof(int32_t) * SUF);
    rlx_kv_pages shared = {.n_seqs = 2, .cached_len = cached, .kv_indptr = indptr, .kv_indices = idx};
    rlx_prefill_batch pb2 = {.tokens = toks, .n_tokens = 2 * SUF, .seq_lens = fresh, .n_seqs = 2};
    cr_assert_eq(rlx_session_prefill_kv(s, &pb2, &pool->desc, &shared, NULL), RLX_OK, "%s", rlx_last_error());
    float *got = output(s, 2 * SUF, V);
    for (int q = 0; q < 2; q++) {
        int32_t full[PRE + SUF];
        memcpy(full, pre, sizeof(int32_t) * PRE);
        memcpy(full + PRE, q ? suf1 : suf0, sizeof(int32_t) * SUF);
        int64_t len = PRE + SUF;
        cr_assert_eq(rlx_session_prefill(s, full, len, &len, 1, NULL), RLX_OK);
        float *ref = output(s, len, V);
        const size_t n = (size_t)(SUF * V);
        const double rel = rlxt_max_abs_diff(got + q * SUF * V, ref + PRE * V, n) / rlxt_max_abs(ref + PRE * V, n);
        cr_expect(rel <= 1e-5, "sequence %d after a shared prefix: max|d|/max|ref| %.3g", q, rel);
        free(ref);
    }
    free(got);
    rlx__kv_pool_destroy(pool);
    rlx_session_destroy(s);
    rlx_model_destroy(m);
    rlxt_llama_fixture_free(&f);
}

/* ---- bad input: refused before any work, nothing written ---------------------------------------------- */

typedef struct bad_env {
    rlxt_llama_fixture f;
    rlx_model *m;
    rlx_session *s;
    rlx__kv_pool *pool;
    unsigned char *snap_k, *snap_v;
    int64_t cached[2], fresh[2];
    int32_t indptr[3], idx[16], last[2];
    int32_t toks[16];
    rlx_kv_desc desc;
    rlx_kv_pages pg;
    rlx_prefill_batch pb;
} bad_env;

/* Two sequences, page size 4, 8 pages: sequence 0 has 5 cached tokens (pages 3, 6) and brings 2,
 * sequence 1 is new with 3 tokens (page 1). The pool's pages hold a pattern the test checks. */
static void bad_setup(bad_env *e) {
    memset(e, 0, sizeof *e);
    load("gqa_tied_f32", &e->f);
    e->m = build_cpu(&e->f, 2, 8, 16, 1);
    cr_assert_eq(rlx_session_create(e->m, &e->s), RLX_OK);
    cr_assert_eq(rlx__kv_pool_create(e->m, 4, RLX_KV_LAYOUT_NHD, 8, 2, RLX_DTYPE_F32, 0, &e->pool), RLX_OK);
    for (size_t i = 0; i < e->pool->bytes; i++) ((unsigned char *)e->pool->k)[i] = (unsigned char)(i * 7), ((unsigned char *)e->pool->v)[i] = (unsigned char)(i * 13);
    e->snap_k = malloc(e->pool->bytes);
    e->snap_v = malloc(e->pool->bytes);
    memcpy(e->snap_k, e->pool->k, e->pool->bytes);
    memcpy(e->snap_v, e->pool->v, e->pool->bytes);
    e->desc = e->pool->desc;
    e->cached[0] = 5, e->cached[1] = 0;
    e->fresh[0] = 2, e->fresh[1] = 3;
    e->indptr[0] = 0, e->indptr[1] = 2, e->indptr[2] = 3;
    e->idx[0] = 3, e->idx[1] = 6, e->idx[2] = 1;
    e->last[0] = 3, e->last[1] = 3;
    for (int i = 0; i < 5; i++) e->toks[i] = 10 + i;
    e->pg = (rlx_kv_pages){.n_seqs = 2, .cached_len = e->cached, .kv_indptr = e->indptr, .kv_indices = e->idx, .kv_last_page_len = e->last};
    e->pb = (rlx_prefill_batch){.tokens = e->toks, .n_tokens = 5, .seq_lens = e->fresh, .n_seqs = 2};
}

static void bad_teardown(bad_env *e) {
    free(e->snap_k), free(e->snap_v);
    rlx__kv_pool_destroy(e->pool);
    rlx_session_destroy(e->s);
    rlx_model_destroy(e->m);
    rlxt_llama_fixture_free(&e->f);
}

/* Runs the call, expects status `want` with every word of `words` (|-separated) in the message,
 * and the pages unchanged. */
static void expect_refused(bad_env *e, rlx_status want, const char *what, const char *words) {
    rlx_clear_error();
    rlx_status st = rlx_session_prefill_kv(e->s, &e->pb, &e->desc, &e->pg, NULL);
    const char *msg = rlx_last_error();
    cr_expect_eq(st, want, "%s: status %s, expected %s (%s)", what, rlx_status_name(st), rlx_status_name(want), msg);
    char buf[256];
    snprintf(buf, sizeof buf, "%s", words);
    for (char *w = strtok(buf, "|"); w; w = strtok(NULL, "|"))
        cr_expect(strstr(msg, w), "%s: the message does not name '%s': %s", what, w, msg);
    cr_expect(!memcmp(e->snap_k, e->pool->k, e->pool->bytes) && !memcmp(e->snap_v, e->pool->v, e->pool->bytes),
              "%s: the call wrote to the cache although it was refused", what);
}

Test(kv, the_good_call_of_the_bad_input_tests_runs) {
    bad_env e;
    bad_setup(&e);
    cr_expect_eq(rlx_session_prefill_kv(e.s, &e.pb, &e.desc, &e.pg, NULL), RLX_OK, "%s", rlx_last_error());
    cr_expect(memcmp(e.snap_k, e.pool->k, e.pool->bytes), "a good call writes the cache");
    bad_teardown(&e);
}

Test(kv, page_outside_the_cache) {
    bad_env e;
    bad_setup(&e);
    e.idx[1] = 8;
    expect_refused(&e, RLX_ERR_INVALID_ARGUMENT, "page 8 of 8", "sequence 0|page 8|outside");
    e.idx[1] = 6, e.idx[2] = -1;
    expect_refused(&e, RLX_ERR_INVALID_ARGUMENT, "page -1", "sequence 1|page -1|outside");
    bad_teardown(&e);
}

Test(kv, page_given_twice) {
    bad_env e;
    bad_setup(&e);
    e.idx[2] = 6; /* sequence 1's new page is sequence 0's last page, which is written */
    expect_refused(&e, RLX_ERR_INVALID_ARGUMENT, "page shared by two sequences and written", "page 6|twice|sequence 0|sequence 1");
    e.idx[2] = 1, e.idx[1] = 3; /* twice in one list */
    expect_refused(&e, RLX_ERR_INVALID_ARGUMENT, "page twice in one sequence's list", "sequence 0|page 3|twice");
    bad_teardown(&e);
}

Test(kv, cached_len_beyond_the_pages_given) {
    bad_env e;
    bad_setup(&e);
    e.cached[0] = 9; /* 11 tokens need 3 pages, 2 are given */
    e.last[0] = 3;
    expect_refused(&e, RLX_ERR_INVALID_ARGUMENT, "cached_len beyond pages", "sequence 0|cached_len 9|need 3 pages|2 are listed");
    e.cached[0] = 1; /* 3 tokens need 1 page, 2 are given */
    expect_refused(&e, RLX_ERR_INVALID_ARGUMENT, "too many pages", "sequence 0|need 1 page|2 are listed");
    e.cached[0] = -1;
    expect_refused(&e, RLX_ERR_INVALID_ARGUMENT, "negative cached_len", "sequence 0|negative");
    e.cached[0] = 5, e.last[1] = 2;
    expect_refused(&e, RLX_ERR_INVALID_ARGUMENT, "last page length", "sequence 1|kv_last_page_len 2");
    bad_teardown(&e);
}

Test(kv, page_list_structure) {
    bad_env e;
    bad_setup(&e);
    e.pg.n_seqs = 1;
    expect_refused(&e, RLX_ERR_INVALID_ARGUMENT, "page lists for a different batch", "1 sequences|has 2");
    e.pg.n_seqs = 2, e.indptr[0] = 1;
    expect_refused(&e, RLX_ERR_INVALID_ARGUMENT, "kv_indptr[0]", "kv_indptr[0]");
    e.indptr[0] = 0, e.indptr[1] = 4, e.indptr[2] = 3;
    expect_refused(&e, RLX_ERR_INVALID_ARGUMENT, "decreasing kv_indptr", "sequence");
    e.indptr[1] = 2;
    e.pg.kv_indices = NULL;
    expect_refused(&e, RLX_ERR_INVALID_ARGUMENT, "no kv_indices", "kv_indices");
    bad_teardown(&e);
}

Test(kv, descriptor_that_does_not_match_the_model) {
    bad_env e;
    bad_setup(&e);
    const rlx_kv_desc good = e.desc;
    e.desc.dtype = RLX_DTYPE_F16;
    expect_refused(&e, RLX_ERR_UNSUPPORTED, "dtype f16", "dtype");
    e.desc = good, e.desc.kv_heads = 4;
    expect_refused(&e, RLX_ERR_SHAPE, "kv heads", "4 kv heads|has 2");
    e.desc = good, e.desc.head_dim = 8;
    expect_refused(&e, RLX_ERR_SHAPE, "head_dim", "head_dim 8|has 16");
    e.desc = good, e.desc.num_layers = 3;
    expect_refused(&e, RLX_ERR_SHAPE, "layer count", "3 layers|2 attention layers");
    e.desc = good, e.desc.page_size = 3;
    expect_refused(&e, RLX_ERR_INVALID_ARGUMENT, "page size 3", "page_size 3");
    e.desc.page_size = 512;
    expect_refused(&e, RLX_ERR_INVALID_ARGUMENT, "page size 512", "page_size 512");
    e.desc = good, e.desc.layout = (rlx_kv_layout)7;
    expect_refused(&e, RLX_ERR_INVALID_ARGUMENT, "layout", "layout");
    e.desc = good, e.desc.page_stride = 8;
    expect_refused(&e, RLX_ERR_INVALID_ARGUMENT, "page_stride below a page", "page_stride 8");
    e.desc = good, e.desc.layer_stride = 16;
    expect_refused(&e, RLX_ERR_INVALID_ARGUMENT, "overlapping layers", "layer_stride 16");
    bad_teardown(&e);
}

Test(kv, null_layer_pointer) {
    bad_env e;
    bad_setup(&e);
    const rlx_kv_desc good = e.desc;
    void *ks[2] = {e.pool->k, NULL}, *vs[2] = {e.pool->v, (char *)e.pool->v + good.layer_stride * 4};
    e.desc.k_layers = ks, e.desc.v_layers = vs;
    expect_refused(&e, RLX_ERR_INVALID_ARGUMENT, "k_layers[1] NULL", "k_layers[1]|layer 1");
    e.desc = good, e.desc.v_base = NULL;
    expect_refused(&e, RLX_ERR_INVALID_ARGUMENT, "v_base NULL", "v_base");
    /* the same pointers given as arrays work */
    ks[1] = (char *)e.pool->k + good.layer_stride * 4;
    e.desc = good, e.desc.k_layers = ks, e.desc.v_layers = vs;
    cr_expect_eq(rlx_session_prefill_kv(e.s, &e.pb, &e.desc, &e.pg, NULL), RLX_OK, "pointer arrays: %s", rlx_last_error());
    bad_teardown(&e);
}

Test(kv, context_beyond_max_position_embeddings) {
    bad_env e;
    bad_setup(&e);
    /* the model's tables cover 16 positions (max_context); 15 cached + 2 new reach position 16 */
    e.cached[0] = 15, e.idx[0] = 3, e.idx[1] = 6, e.idx[2] = 0, e.idx[3] = 2, e.idx[4] = 5;
    e.indptr[1] = 5, e.indptr[2] = 6, e.idx[5] = 1;
    e.last[0] = 1;
    expect_refused(&e, RLX_ERR_INVALID_ARGUMENT, "context 17 of 16", "sequence 0|position 16|16 positions");
    /* and a model cannot be built past max_position_embeddings at all */
    rlx_llama_recipe_params p = rlx_llama_recipe_default_params();
    p.max_context = e.f.cfg.max_position_embeddings + 1;
    rlx_flow *fl = NULL;
    cr_expect_eq(rlx_llama_flow(&e.f.cfg, &p, &fl), RLX_ERR_INVALID_ARGUMENT);
    cr_expect(strstr(rlx_last_error(), "max_position_embeddings"), "%s", rlx_last_error());
    bad_teardown(&e);
}

/* With RoPE tables for all of max_position_embeddings (64 here), the call that reaches position
 * 64 is refused; the one that ends at position 63 runs. */
Test(kv, context_beyond_max_position_embeddings_with_full_tables) {
    rlxt_llama_fixture f;
    load("gqa_tied_f32", &f);
    const int64_t MP = f.cfg.max_position_embeddings, P = 16, NP = (MP + 1 + P - 1) / P;
    cr_assert_eq(MP, 64);
    rlx_model *m = build_cpu(&f, 1, 4, MP, 1);
    cr_expect_eq(rlx_model_max_context(m), MP);
    rlx_session *s;
    cr_assert_eq(rlx_session_create(m, &s), RLX_OK);
    rlx__kv_pool *pool;
    cr_assert_eq(rlx__kv_pool_create(m, P, RLX_KV_LAYOUT_HND, NP, 1, RLX_DTYPE_F32, 0, &pool), RLX_OK, "%s", rlx_last_error());
    memset(pool->k, 0, pool->bytes), memset(pool->v, 0, pool->bytes); /* zeros: valid cached K/V */
    int64_t cached = MP - 1, fresh = 2;
    int32_t indptr[2] = {0, (int32_t)NP}, idx[8], toks[2] = {5, 6};
    for (int32_t i = 0; i < NP; i++) idx[i] = (int32_t)(NP - 1 - i);
    rlx_kv_pages pg = {.n_seqs = 1, .cached_len = &cached, .kv_indptr = indptr, .kv_indices = idx};
    rlx_prefill_batch pb = {.tokens = toks, .n_tokens = 2, .seq_lens = &fresh, .n_seqs = 1};
    rlx_clear_error();
    cr_expect_eq(rlx_session_prefill_kv(s, &pb, &pool->desc, &pg, NULL), RLX_ERR_INVALID_ARGUMENT);
    const char *msg = rlx_last_error();
    cr_expect(strstr(msg, "sequence 0") && strstr(msg, "position 64") && strstr(msg, "64 positions") && strstr(msg, "max_position_embeddings"),
              "%s", msg);
    size_t nz = 0;
    for (size_t i = 0; i < pool->bytes; i++) nz += ((unsigned char *)pool->k)[i] | ((unsigned char *)pool->v)[i];
    cr_expect_eq(nz, 0, "the refused call wrote the cache");
    cached = MP - 2; /* positions 62, 63: the last two the tables hold */
    indptr[1] = (int32_t)(MP / P), idx[MP / P - 1] = 0;
    cr_expect_eq(rlx_session_prefill_kv(s, &pb, &pool->desc, &pg, NULL), RLX_OK, "%s", rlx_last_error());
    rlx__kv_pool_destroy(pool);
    rlx_session_destroy(s);
    rlx_model_destroy(m);
    rlxt_llama_fixture_free(&f);
}

Test(kv, token_ids_and_named_inputs_still_checked) {
    bad_env e;
    bad_setup(&e);
    e.toks[3] = 97;
    expect_refused(&e, RLX_ERR_TOKEN_RANGE, "token out of range", "vocabulary");
    bad_teardown(&e);
}

/* ---- models without a cache ---------------------------------------------------------------------------- */

Test(kv, encoders_have_no_kv_cache) {
    char dir[1200];
    snprintf(dir, sizeof dir, "%s/bert/bert_token_types_f32", rlxt_fixtures_dir());
    rlx_weights *w;
    cr_assert_eq(rlx_weights_open(dir, &w), RLX_OK, "%s", rlx_last_error());
    rlx_encoder_config ec;
    cr_assert_eq(rlx_encoder_config_from_weights(w, NULL, &ec), RLX_OK, "%s", rlx_last_error());
    rlx_encoder_recipe_params ep = rlx_encoder_recipe_default_params();
    ep.seq = 16;
    rlx_flow *f;
    cr_assert_eq(rlx_encoder_flow(&ec, &ep, &f), RLX_OK, "%s", rlx_last_error());
    rlx_model *m;
    cr_assert_eq(rlx_model_build(f, w, NULL, &m), RLX_OK, "%s", rlx_last_error());
    rlx_kv_desc d = rlx_kv_default_desc();
    cr_expect_eq(rlx_kv_desc_from_model(m, &d), RLX_ERR_UNSUPPORTED);
    cr_expect(strstr(rlx_last_error(), "non-causal"), "%s", rlx_last_error());
    rlx_model_destroy(m);
    rlx_flow_destroy(f);
    rlx_weights_destroy(w);
}

Test(kv, desc_from_model) {
    rlxt_llama_fixture f;
    load("sharded_bf16", &f);
    rlx_model *m = build_cpu(&f, 1, 4, 32, 1);
    rlx_kv_desc d = rlx_kv_default_desc();
    cr_assert_eq(rlx_kv_desc_from_model(m, &d), RLX_OK);
    cr_expect(d.num_layers == f.cfg.num_hidden_layers && d.kv_heads == f.cfg.num_key_value_heads && d.head_dim == f.cfg.head_dim);
    cr_expect_eq(d.dtype, RLX_DTYPE_F32);
    cr_expect_eq(d.page_size, 16);
    cr_expect_eq(rlx_model_max_context(m), 32);
    cr_expect_eq(rlx_kv_page_elems(&d), 16 * d.kv_heads * d.head_dim);
    rlx_model_destroy(m);
    rlxt_llama_fixture_free(&f);
}

/* ---- block table → CSR ---------------------------------------------------------------------------------- */

Test(kv, block_table_converter) {
    const int32_t bt[3][4] = {{7, 2, 9, -1}, {5, -1, -1, -1}, {0, 1, 3, 4}};
    const int64_t lens[3] = {9, 1, 16};
    int32_t indptr[4], idx[16], last[3];
    cr_assert_eq(rlx_kv_pages_from_block_table(&bt[0][0], 3, 4, lens, 4, indptr, idx, 16, last), RLX_OK, "%s", rlx_last_error());
    const int32_t want_ptr[4] = {0, 3, 4, 8}, want_idx[8] = {7, 2, 9, 5, 0, 1, 3, 4}, want_last[3] = {1, 1, 4};
    cr_expect(!memcmp(indptr, want_ptr, sizeof want_ptr) && !memcmp(idx, want_idx, sizeof want_idx) && !memcmp(last, want_last, sizeof want_last));
    const int64_t too_long[3] = {9, 1, 17};
    cr_expect_eq(rlx_kv_pages_from_block_table(&bt[0][0], 3, 4, too_long, 4, indptr, idx, 16, last), RLX_ERR_INVALID_ARGUMENT);
    cr_expect(strstr(rlx_last_error(), "sequence 2"), "%s", rlx_last_error());
    cr_expect_eq(rlx_kv_pages_from_block_table(&bt[0][0], 3, 4, lens, 4, indptr, idx, 7, last), RLX_ERR_INVALID_ARGUMENT);
    cr_expect_eq(rlx_kv_pages_from_block_table(&bt[0][0], 3, 4, lens, 3, indptr, idx, 16, last), RLX_ERR_INVALID_ARGUMENT);
    const int64_t zero[3] = {9, 0, 16};
    cr_expect_eq(rlx_kv_pages_from_block_table(&bt[0][0], 3, 4, zero, 4, indptr, idx, 16, NULL), RLX_ERR_INVALID_ARGUMENT);
    cr_expect(strstr(rlx_last_error(), "sequence 1"), "%s", rlx_last_error());
}
