/* The tensor-parallel split itself, on the CPU reference: every rank runs its part of the model in
 * f32 (in-process ranks exchanging partial sums), and the gathered logits must equal the unsharded
 * reference within max|Δ|/max|ref| <= 1e-5 on every LLaMA fixture and on random GQA/MQA models
 * (kv heads replicated when KV < tp). Also: each rank holds only its parts of the weights, and a tp
 * that does not divide the heads or the intermediate size is refused clearly on every rank. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/stages.h"
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
