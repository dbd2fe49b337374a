/* The tensor-parallel split itself, on the CPU reference: every rank runs its part of the model in
 * f32 (in-process ranks exchanging partial sums), and the gathered logits must equal the unsharded
 * reference within max|Δ|/max|ref| <= 1e-5 on every LLaMA fixture and on random GQA/MQA models
 * (kv heads replicated when KV < tp). Also: each rank holds only its parts of the weights, a tp
 * that does not divide the heads or the intermediate size is refused clearly on every rank, and
 * decode steps over each rank's own KV cache (its kv heads) match the unsharded decode, 1e-5. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/stages.h"
#include "rlx/generate.h"
#include "rlx/kv.h"
#include "tools/kv_pool.h"
#include "tools/tp.h"
#include "testutil.h"

static rlx_flow *flow_for(const rlx_llama_config *c, int64_t batch, int64_t seq, int last_token) {
    rlx_llama_recipe_params p = rlx_llama_recipe_default_params();
    p.batch = batch;
    p.seq = seq;
    p.last_token_logits = last_token;
    rlx_flow *f;
    cr_assert_eq(rlx_llama_flow(c, &p, &f), RLX_OK, "%s", rlx_last_error());
    return f;
}

/* Runs flow on the unsharded CPU reference and with tp ranks; checks the bound and that every rank
 * holds the same logits. Returns max|Δ|/max|ref|. */
static double sharded_vs_whole(const char *what, const rlx_flow *f, const rlx_weights *w, int tp, const int32_t *tok,
                               int64_t n, const int64_t *lens, int64_t n_seqs) {
    rlx_build_params bp = rlx_build_default_params();
    bp.device = RLX_DEVICE_CPU;
    rlx_model *m;
    cr_assert_eq(rlx_model_build(f, w, &bp, &m), RLX_OK, "%s: %s", what, rlx_last_error());
    rlx_session *s;
    cr_assert_eq(rlx_session_create(m, &s), RLX_OK);
    cr_assert_eq(rlx_session_prefill(s, tok, n, lens, n_seqs, NULL), RLX_OK, "%s: %s", what, rlx_last_error());
    int64_t rows, cols;
    cr_assert_eq(rlx_session_output_shape(s, &rows, &cols), RLX_OK);
    size_t cnt = (size_t)(rows * cols);
    float *ref = malloc(cnt * sizeof(float)), *got = malloc(cnt * sizeof(float)), *other = malloc(cnt * sizeof(float));
    cr_assert_eq(rlx_session_output_to_host(s, ref, cnt), RLX_OK);
    rlx__tp_group g;
    rlx_comm_params cp = rlx_comm_default_params();
    cp.timeout_ms = 60000;
    cr_assert_eq(rlx__tp_group_create(f, w, &bp, tp, &cp, &g), RLX_OK, "%s tp %d: %s", what, tp, rlx_last_error());
    cr_assert_eq(rlx__tp_group_prefill(&g, tok, n, lens, n_seqs, 0), RLX_OK, "%s tp %d: %s", what, tp,
                 rlx_last_error());
    cr_assert_eq(rlx__tp_group_output(&g, got, cnt), RLX_OK, "%s", rlx_last_error());
    int64_t r2, c2;
    cr_assert_eq(rlx_session_output_shape(g.r[0].session, &r2, &c2), RLX_OK);
    cr_assert(r2 == rows && c2 == cols, "%s tp %d: output [%lld, %lld], reference [%lld, %lld]", what, tp,
              (long long)r2, (long long)c2, (long long)rows, (long long)cols);
    for (int i = 1; i < tp; i++) {
        cr_assert_eq(rlx_session_output_to_host(g.r[i].session, other, cnt), RLX_OK);
        cr_expect_eq(memcmp(other, got, cnt * sizeof(float)), 0, "%s tp %d: rank %d's logits differ from rank 0's",
                     what, tp, i);
    }
    const double rel = rlxt_max_abs_diff(got, ref, cnt) / rlxt_max_abs(ref, cnt);
    cr_expect(rel <= 1e-5, "%s tp %d: sharded f32 max|d|/max|ref| %.3g > 1e-5", what, tp, rel);
    rlx__tp_group_free(&g);
    free(ref), free(got), free(other);
    rlx_session_destroy(s);
    rlx_model_destroy(m);
    return rel;
}

typedef struct fixture {
    rlx_weights *w;
    rlx_llama_config c;
    int32_t *tok;
    int64_t B, S, lens[16];
} fixture;

static void load(const char *name, fixture *fx) {
    char dir[1024], path[1100];
    snprintf(dir, sizeof dir, "%s/llama/%s", rlxt_fixtures_dir(), name);
    cr_assert_eq(rlx_weights_open(dir, &fx->w), RLX_OK, "%s", rlx_last_error());
    cr_assert_eq(rlx_llama_config_parse(rlx_weights_config_json(fx->w), dir, &fx->c), RLX_OK, "%s", rlx_last_error());
    snprintf(path, sizeof path, "%s/tokens.json", dir);
    json_error_t err;
    json_t *j = json_load_file(path, 0, &err);
    cr_assert(j);
    json_t *rows = json_object_get(j, "tokens");
    fx->B = (int64_t)json_array_size(rows);
    fx->S = (int64_t)json_array_size(json_array_get(rows, 0));
    fx->tok = malloc(sizeof(int32_t) * (size_t)(fx->B * fx->S));
    for (int64_t b = 0; b < fx->B; b++) {
        fx->lens[b] = fx->S;
        for (int64_t t = 0; t < fx->S; t++)
            fx->tok[b * fx->S + t] =
                (int32_t)json_integer_value(json_array_get(json_array_get(rows, (size_t)b), (size_t)t));
    }
    json_decref(j);
}

Test(dist_shard, every_fixture_tp2_and_tp4_match_the_whole_reference, .timeout = 300) {
    const char *cases[64];
    const int n_cases = rlxt_llama_fixture_dirs(cases, 64);
    cr_assert_geq(n_cases, 9, "only %d LLaMA fixtures found under %s/llama", n_cases, rlxt_fixtures_dir());
    for (int ci = 0; ci < n_cases; ci++) {
        fixture fx;
        load(cases[ci], &fx);
        for (int last = 0; last < 2; last++) {
            rlx_flow *f = flow_for(&fx.c, fx.B, fx.S, last);
            for (int tp = 2; tp <= 4; tp *= 2) {
                if (fx.c.num_attention_heads % tp) continue; /* single_token_f32 has 2 heads: refused below */
                char what[160];
                snprintf(what, sizeof what, "%s (%s logits)", cases[ci], last ? "last-token" : "all");
                sharded_vs_whole(what, f, fx.w, tp, fx.tok, fx.B * fx.S, fx.lens, fx.B);
            }
            rlx_flow_destroy(f);
        }
        free(fx.tok);
        rlx_weights_destroy(fx.w);
    }
}

/* Random models: GQA with KV < tp (replicated kv heads) and MQA, packed prompts of awkward lengths. */
Test(dist_shard, gqa_and_mqa_with_kv_replicated, .timeout = 300) {
    const int64_t kvs[3] = {8, 2, 1};
    for (int ki = 0; ki < 3; ki++) {
        rlx_llama_config c;
        cr_assert_eq(rlx_llama_builtin_config("tiny", &c), RLX_OK);
        c.num_hidden_layers = 2;
        c.hidden_size = 64;
        c.num_attention_heads = 8;
        c.num_key_value_heads = kvs[ki];
        c.head_dim = 16;
        c.intermediate_size = 72;
        c.vocab_size = 101; /* odd: the last rank's lm_head rows are padding */
        c.rope.head_dim = 16;
        rlx_weights *w;
        cr_assert_eq(rlx_llama_random_weights(&c, 11 + (uint64_t)ki, RLX_DTYPE_BF16, &w), RLX_OK, "%s",
                     rlx_last_error());
        int64_t lens[3] = {17, 1, 9};
        int32_t tok[27];
        rlxt_rng g = {(uint64_t)ki + 3};
        for (int i = 0; i < 27; i++)
            tok[i] = (int32_t)(rlxt_next(&g) % 101);
        rlx_flow *f = flow_for(&c, 3, 17, 0);
        for (int tp = 2; tp <= 8; tp *= 2) {
            char what[64];
            snprintf(what, sizeof what, "random kv %lld", (long long)kvs[ki]);
            sharded_vs_whole(what, f, w, tp, tok, 27, lens, 3);
        }
        rlx_flow_destroy(f);
        rlx_weights_destroy(w);
    }
}

/* A rank's weight table: only its parts, except what is replicated (embedding, norms). */
Test(dist_shard, no_rank_holds_a_full_copy, .timeout = 120) {
    rlx_llama_config c;
    cr_assert_eq(rlx_llama_builtin_config("tiny", &c), RLX_OK);
    c.num_hidden_layers = 2;
    rlx_weights *w;
    cr_assert_eq(rlx_llama_random_weights(&c, 4, RLX_DTYPE_BF16, &w), RLX_OK);
    rlx_flow *f = flow_for(&c, 1, 8, 1);
    rlx_build_params bp = rlx_build_default_params();
    const int tp = 2;
    rlx__tp_group g;
    cr_assert_eq(rlx__tp_group_create(f, w, &bp, tp, NULL, &g), RLX_OK, "%s", rlx_last_error());
    for (int r = 0; r < tp; r++) {
        const rlx_model *m = g.r[r].model;
        size_t part = 0, whole = 0;
        for (int i = 0; i < m->n_weights; i++) {
            const rlx__weight *x = &m->weights[i];
            rlx_tensor_view v;
            cr_assert(rlx_weights_has(w, x->key, &v));
            size_t full = 1;
            for (int d = 0; d < v.ndim; d++)
                full *= (size_t)v.shape[d];
            if (strstr(x->key, "_proj")) {
                cr_expect(x->part, "rank %d: %s is whole", r, x->key);
                const int kv_replicated =
                    (strstr(x->key, "k_proj") || strstr(x->key, "v_proj")) && c.num_key_value_heads < tp;
                if (!kv_replicated)
                    cr_expect_eq(x->numel * tp, full, "rank %d: %s has %zu of %zu elements", r, x->key, x->numel, full);
            }
            if (x->part)
                part += x->numel;
            else
                whole += x->numel;
            if (!x->part)
                cr_expect(strstr(x->key, "norm") || strstr(x->key, "embed_tokens"), "rank %d: %s is whole", r, x->key);
        }
        cr_expect_gt(part, 0);
        char *plan = NULL;
        cr_assert_eq(rlx_model_format(m, &plan), RLX_OK);
        cr_expect(strstr(plan, "all_reduce") && strstr(plan, "all_gather"), "%s", plan);
        rlx_free(plan);
        cr_expect(strstr(rlx_model_pass_log(m), "tp: rank"), "%s", rlx_model_pass_log(m));
    }
    rlx__tp_group_free(&g);
    rlx_flow_destroy(f);
    rlx_weights_destroy(w);
}

static void expect_refused(const rlx_llama_config *c, int tp, const char *needle) {
    rlx_weights *w;
    cr_assert_eq(rlx_llama_random_weights(c, 1, RLX_DTYPE_F32, &w), RLX_OK, "%s", rlx_last_error());
    rlx_flow *f = flow_for(c, 1, 4, 1);
    rlx_build_params bp = rlx_build_default_params();
    rlx__tp_group g;
    rlx_status s = rlx__tp_group_create(f, w, &bp, tp, NULL, &g);
    cr_expect_eq(s, RLX_ERR_INVALID_ARGUMENT, "tp %d: %s", tp, rlx_last_error());
    cr_expect(strstr(rlx_last_error(), needle), "tp %d: %s", tp, rlx_last_error());
    cr_expect_eq(g.n, 0);
    rlx_flow_destroy(f);
    rlx_weights_destroy(w);
    /* every rank refuses by itself, with its rank named */
    rlx_comm *comms[8];
    cr_assert_eq(rlx_comm_local_group(tp, NULL, comms), RLX_OK);
    cr_assert_eq(rlx_llama_random_weights(c, 1, RLX_DTYPE_F32, &w), RLX_OK);
    f = flow_for(c, 1, 4, 1);
    for (int r = 0; r < tp; r++) {
        bp.comm = comms[r];
        rlx_model *m = (rlx_model *)1;
        cr_expect_eq(rlx_model_build(f, w, &bp, &m), RLX_ERR_INVALID_ARGUMENT);
        cr_expect_null(m);
        char rk[64];
        snprintf(rk, sizeof rk, "rank %d of %d", r, tp);
        cr_expect(strstr(rlx_last_error(), rk) && strstr(rlx_last_error(), needle), "%s", rlx_last_error());
        rlx_comm_destroy(comms[r]);
    }
    rlx_flow_destroy(f);
    rlx_weights_destroy(w);
}

Test(dist_shard, tp_must_divide_heads_and_intermediate, .timeout = 120) {
    rlx_llama_config c;
    cr_assert_eq(rlx_llama_builtin_config("tiny", &c), RLX_OK);
    c.num_hidden_layers = 1;
    c.hidden_size = 64, c.num_attention_heads = 4, c.num_key_value_heads = 2, c.head_dim = 16, c.rope.head_dim = 16;
    c.intermediate_size = 96;
    expect_refused(&c, 3, "tp = 3 does not divide the 4 query heads");
    expect_refused(&c, 8, "tp = 8 does not divide the 4 query heads");
    c.num_attention_heads = 6, c.num_key_value_heads = 3, c.head_dim = 16, c.hidden_size = 96;
    expect_refused(&c, 2, "tp = 2 and 3 kv heads");
    c.num_attention_heads = 4, c.num_key_value_heads = 2, c.hidden_size = 64, c.intermediate_size = 98;
    expect_refused(&c, 4, "tp = 4 does not divide the intermediate size 98");
}

/* One rank: the collectives are identities and the logits are the unsharded ones exactly. */
Test(dist_shard, one_rank_is_the_whole_model, .timeout = 60) {
    rlx_llama_config c;
    cr_assert_eq(rlx_llama_builtin_config("tiny", &c), RLX_OK);
    c.num_hidden_layers = 1;
    rlx_weights *w;
    cr_assert_eq(rlx_llama_random_weights(&c, 2, RLX_DTYPE_BF16, &w), RLX_OK);
    rlx_flow *f = flow_for(&c, 1, 5, 1);
    int32_t tok[5] = {1, 7, 3, 9, 2};
    int64_t len = 5;
    cr_expect_eq(sharded_vs_whole("tiny tp 1", f, w, 1, tok, 5, &len, 1), 0.0);
    rlx_flow_destroy(f);
    rlx_weights_destroy(w);
}

/* ---- the KV cache under tp --------------------------------------------------------------------------- */

typedef struct kv_rank {
    rlx_session *s;
    rlx__kv_pool *pool;
    const rlx_prefill_batch *pb;
    const int64_t *seqs;
    rlx_status st;
    char err[512];
} kv_rank;

static void *kv_step(void *arg) {
    kv_rank *r = arg;
    rlx_kv_pages pg;
    r->st = rlx__kv_pool_prepare(r->pool, r->seqs, r->pb->seq_lens, r->pb->n_seqs, &pg);
    if (!r->st) r->st = rlx_session_prefill_kv(r->s, r->pb, &r->pool->desc, &pg, NULL);
    if (!r->st) rlx__kv_pool_commit(r->pool, r->seqs, r->pb->seq_lens, r->pb->n_seqs);
    snprintf(r->err, sizeof r->err, "%s", r->st ? rlx_last_error() : "");
    return NULL;
}

/* n ranks (n = 1: the unsharded model) prefill 3 prompts into their own f32 page pools, then take
 * the given tokens one per step; logits [steps][3 × V] from rank 0. */
static void kv_teacher_forced(rlx_session **ss, rlx_model **ms, int n, const int32_t *prompts, const int64_t *lens,
                              const int32_t *next, int64_t steps, int64_t V, float *logits) {
    kv_rank r[8];
    int64_t seqs[3] = {0, 1, 2}, fresh[3];
    for (int i = 0; i < n; i++) {
        r[i] = (kv_rank){.s = ss[i], .seqs = seqs};
        cr_assert_eq(rlx__kv_pool_create(ms[i], 2, RLX_KV_LAYOUT_HND, 3 * 16, 3, RLX_DTYPE_F32, 3, &r[i].pool), RLX_OK,
                     "%s", rlx_last_error());
    }
    for (int64_t step = 0; step < steps; step++) {
        int32_t in[64];
        int64_t T = 0, at = 0;
        for (int i = 0; i < 3; i++) {
            if (step == 0)
                memcpy(in + T, prompts + at, sizeof(int32_t) * (size_t)lens[i]), fresh[i] = lens[i];
            else
                in[T] = next[(step - 1) * 3 + i], fresh[i] = 1;
            T += fresh[i], at += lens[i];
        }
        rlx_prefill_batch pb = {.tokens = in, .n_tokens = T, .seq_lens = fresh, .n_seqs = 3};
        pthread_t t[8];
        for (int i = 0; i < n; i++)
            r[i].pb = &pb;
        for (int i = 1; i < n; i++)
            cr_assert_eq(pthread_create(&t[i], NULL, kv_step, &r[i]), 0);
        kv_step(&r[0]);
        for (int i = 1; i < n; i++)
            pthread_join(t[i], NULL);
        for (int i = 0; i < n; i++)
            cr_assert_eq(r[i].st, RLX_OK, "rank %d of %d, step %lld: %s", i, n, (long long)step, r[i].err);
        cr_assert_eq(rlx_session_output_to_host(ss[0], logits + step * 3 * V, (size_t)(3 * V)), RLX_OK);
    }
    for (int i = 0; i < n; i++)
        rlx__kv_pool_destroy(r[i].pool);
}

/* The sharded decode over each rank's own KV cache, on the CPU reference in f32: prompts, then
 * decode steps fed the unsharded model's greedy tokens, every step's logits within 1e-5 of the
 * unsharded model's; each rank's cache has KV/tp heads (one replicated head when KV < tp), and a
 * descriptor with the unsharded kv heads is refused on a rank, naming the per-rank count. */
Test(dist_shard, kv_cache_per_rank_decode_matches_the_whole_reference, .timeout = 300) {
    const int64_t kvs[3] = {4, 2, 1}, steps = 6;
    for (int ki = 0; ki < 3; ki++) {
        rlx_llama_config c;
        cr_assert_eq(rlx_llama_builtin_config("tiny", &c), RLX_OK);
        c.num_hidden_layers = 2, c.hidden_size = 64, c.num_attention_heads = 8, c.num_key_value_heads = kvs[ki];
        c.head_dim = c.rope.head_dim = 16, c.intermediate_size = 72, c.vocab_size = 101;
        rlx_weights *w;
        cr_assert_eq(rlx_llama_random_weights(&c, 31 + (uint64_t)ki, RLX_DTYPE_F32, &w), RLX_OK, "%s",
                     rlx_last_error());
        rlx_llama_recipe_params rp = rlx_llama_recipe_default_params();
        rp.batch = 3, rp.seq = 11, rp.max_context = 11 + steps;
        rlx_flow *f;
        cr_assert_eq(rlx_llama_flow(&c, &rp, &f), RLX_OK, "%s", rlx_last_error());
        int32_t prompts[19];
        int64_t lens[3] = {11, 1, 7};
        rlxt_rng g = {(uint64_t)ki + 17};
        for (int i = 0; i < 19; i++)
            prompts[i] = (int32_t)(rlxt_next(&g) % 101);
        rlx_build_params bp = rlx_build_default_params();
        rlx_model *m;
        rlx_session *s;
        cr_assert_eq(rlx_model_build(f, w, &bp, &m), RLX_OK, "%s", rlx_last_error());
        cr_assert_eq(rlx_session_create(m, &s), RLX_OK);
        rlx_generate_params gp = rlx_generate_default_params();
        gp.max_new_tokens = steps;
        rlx_generation *gen;
        cr_assert_eq(rlx_generate(m, prompts, lens, 3, &gp, NULL, &gen), RLX_OK, "%s", rlx_last_error());
        int32_t next[3 * 8];
        for (int64_t t = 0; t < steps; t++)
            for (int i = 0; i < 3; i++)
                next[t * 3 + i] = rlx_generation_tokens(gen, i, NULL)[t];
        const size_t cnt = (size_t)(steps * 3 * c.vocab_size);
        float *want = malloc(cnt * sizeof(float)), *got = malloc(cnt * sizeof(float));
        kv_teacher_forced(&s, &m, 1, prompts, lens, next, steps, c.vocab_size, want);
        for (int tp = 2; tp <= 8; tp *= 2) {
            rlx__tp_group grp;
            rlx_comm_params cp = rlx_comm_default_params();
            cp.timeout_ms = 60000;
            cr_assert_eq(rlx__tp_group_create(f, w, &bp, tp, &cp, &grp), RLX_OK, "tp %d: %s", tp, rlx_last_error());
            rlx_session *ss[8];
            rlx_model *ms[8];
            for (int r = 0; r < tp; r++) {
                ss[r] = grp.r[r].session, ms[r] = grp.r[r].model;
                rlx_kv_desc d = rlx_kv_default_desc();
                cr_assert_eq(rlx_kv_desc_from_model(ms[r], &d), RLX_OK);
                const int64_t want_heads = kvs[ki] >= tp ? kvs[ki] / tp : 1;
                cr_expect_eq(d.kv_heads, want_heads, "kv %lld tp %d rank %d: %lld kv heads", (long long)kvs[ki], tp, r,
                             (long long)d.kv_heads);
                if (r == 0 && want_heads != kvs[ki]) {
                    d.kv_heads = kvs[ki];
                    d.page_size = 2, d.num_pages = 1, d.k_base = d.v_base = got, d.layer_stride = 0;
                    cr_expect_eq(rlx_kv_desc_validate(ms[r], &d), RLX_ERR_SHAPE);
                    cr_expect(strstr(rlx_last_error(), "per rank when the model is sharded"), "%s", rlx_last_error());
                }
            }
            kv_teacher_forced(ss, ms, tp, prompts, lens, next, steps, c.vocab_size, got);
            const double rel = rlxt_max_abs_diff(got, want, cnt) / rlxt_max_abs(want, cnt);
            cr_expect(rel <= 1e-5, "kv %lld tp %d: sharded decode over per-rank KV caches, max|d|/max|ref| %.3g > 1e-5",
                      (long long)kvs[ki], tp, rel);
            fprintf(stderr, "dist-shard: kv %lld tp %d: decode over per-rank KV caches, max|d|/max|ref| %.3g\n",
                    (long long)kvs[ki], tp, rel);
            rlx__tp_group_free(&grp);
        }
        free(want), free(got);
        rlx_generation_destroy(gen);
        rlx_session_destroy(s);
        rlx_model_destroy(m);
        rlx_flow_destroy(f);
        rlx_weights_destroy(w);
    }
}
