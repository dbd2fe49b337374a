/* CUDA graphs (kernels.cuda_graphs) on the simt device, which records its launch list under stream
 * capture and replays it: a prefill is captured per (token bucket, sequence count), replayed for
 * every later prefill of that shape, and gives bitwise the logits of a prefill launched kernel by
 * kernel; a new shape captures again, the least recently used graph is evicted past the bound;
 * plans that run host code mid-prefill are refused. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/device.h"
#include "runtime/session.h"
#include "rlx/encoder.h"
#include "rlx_simt_device.h"
#include "testutil.h"

static rlx_weights *weights(rlx_llama_config *c) {
    cr_assert_eq(rlx_llama_builtin_config("tiny", c), RLX_OK);
    c->num_hidden_layers = 2;
    c->vocab_size = 150;
    c->hidden_size = 128;
    c->intermediate_size = 192;
    c->num_attention_heads = 4;
    c->num_key_value_heads = 2;
    c->head_dim = 64; /* the flash kernel in the fused plan */
    c->rope.head_dim = 64;
    cr_assert_eq(rlx_llama_config_validate(c, "test"), RLX_OK, "%s", rlx_last_error());
    rlx_weights *w;
    cr_assert_eq(rlx_llama_random_weights(c, 8, RLX_DTYPE_BF16, &w), RLX_OK);
    return w;
}

static rlx_model *build(const rlx_llama_config *c, const rlx_weights *w, int graphs, int last_token,
                        rlx_fusion_policy pol) {
    rlx_llama_recipe_params rp = rlx_llama_recipe_default_params();
    rp.batch = 4;
    rp.seq = 40;
    rp.last_token_logits = last_token;
    rlx_flow *f;
    cr_assert_eq(rlx_llama_flow(c, &rp, &f), RLX_OK, "%s", rlx_last_error());
    rlx_profile prof;
    rlx_profile_preset("prefill", &prof);
    prof.cuda_graphs = graphs;
    prof.fusion_policy = pol;
    rlx_build_params bp = rlx_build_default_params();
    bp.device = RLX_DEVICE_SIMT;
    bp.profile = &prof;
    rlx_model *m;
    cr_assert_eq(rlx_model_build(f, w, &bp, &m), RLX_OK, "%s", rlx_last_error());
    rlx_flow_destroy(f);
    return m;
}

/* One prefill of the lengths lens[0..n) with token ids from seed; the output rows. */
static float *prefill(rlx_session *s, const int64_t *lens, int64_t n, uint64_t seed, int64_t *count) {
    int64_t T = 0;
    for (int64_t i = 0; i < n; i++) T += lens[i];
    int32_t *tok = malloc((size_t)T * sizeof *tok);
    rlxt_rng r = {seed};
    for (int64_t t = 0; t < T; t++) tok[t] = (int32_t)(rlxt_next(&r) % 150);
    cr_assert_eq(rlx_session_prefill(s, tok, T, lens, n, NULL), RLX_OK, "%s", rlx_last_error());
    free(tok); /* the caller's ids may go away once the call returns */
    int64_t rows, cols;
    cr_assert_eq(rlx_session_output_shape(s, &rows, &cols), RLX_OK);
    float *out = malloc((size_t)(rows * cols) * sizeof *out);
    cr_assert_eq(rlx_session_output_to_host(s, out, (size_t)(rows * cols)), RLX_OK, "%s", rlx_last_error());
    *count = rows * cols;
    return out;
}

typedef struct shape {
    int64_t lens[4];
    int n;
} shape;

static void expect_same(rlx_session *graphed, rlx_session *direct, const shape *sh, uint64_t seed, const char *what) {
    int64_t n1, n2;
    float *a = prefill(graphed, sh->lens, sh->n, seed, &n1), *b = prefill(direct, sh->lens, sh->n, seed, &n2);
    cr_assert_eq(n1, n2);
    for (int64_t i = 0; i < n1; i++)
        if (memcmp(&a[i], &b[i], sizeof(float))) {
            cr_expect_fail("%s: output %lld: graph %.9g, direct %.9g", what, (long long)i, a[i], b[i]);
            break;
        }
    free(a);
    free(b);
}

static void graphs_case(int last_token, rlx_fusion_policy pol) {
    rlx_simt_device_install();
    rlx_llama_config c;
    rlx_weights *w = weights(&c);
    rlx_model *mg = build(&c, w, 1, last_token, pol), *md = build(&c, w, 0, last_token, pol);
    rlx_session *sg, *sd;
    cr_assert_eq(rlx_session_create(mg, &sg), RLX_OK);
    cr_assert_eq(rlx_session_create(md, &sd), RLX_OK);
    rlx__graph_stats st;
    /* bucket 24 with 2 sequences: the first prefill runs directly and captures */
    const shape a = {{10, 7}, 2}, a2 = {{3, 18}, 2}, b = {{10, 7, 1}, 3}, c2 = {{33, 1, 6, 40}, 4}, d = {{5}, 1};
    expect_same(sg, sd, &a, 1, "first prefill of (24, 2)");
    rlx__session_graph_stats(sg, &st);
    cr_expect_eq(st.captures, 1);
    cr_expect_eq(st.replays, 0);
    /* the same bucket and sequence count, other lengths and tokens: replayed, same logits */
    expect_same(sg, sd, &a2, 2, "replay of (24, 2), lengths 3 + 18");
    expect_same(sg, sd, &a, 3, "replay of (24, 2), lengths 10 + 7");
    rlx__session_graph_stats(sg, &st);
    cr_expect_eq(st.captures, 1);
    cr_expect_eq(st.replays, 2);
    /* another sequence count: captured again, then replayed */
    expect_same(sg, sd, &b, 4, "(24, 3) first");
    expect_same(sg, sd, &b, 5, "(24, 3) replay");
    /* the capacity's bucket (80 tokens, capped at the 160-token capacity: bucket 96) and a small one */
    expect_same(sg, sd, &c2, 6, "(96, 4) first");
    expect_same(sg, sd, &c2, 7, "(96, 4) replay");
    expect_same(sg, sd, &d, 8, "(6, 1) first");
    expect_same(sg, sd, &d, 9, "(6, 1) replay");
    rlx__session_graph_stats(sg, &st);
    cr_expect_eq(st.captures, 4);
    cr_expect_eq(st.replays, 5);
    cr_expect_eq(st.evictions, 0);
    rlx__session_graph_stats(sd, &st);
    cr_expect_eq(st.captures + st.replays, 0, "kernels.cuda_graphs = false never captures");
    rlx_session_destroy(sg);
    rlx_session_destroy(sd);
    rlx_model_destroy(mg);
    rlx_model_destroy(md);
    rlx_weights_destroy(w);
}

Test(simt_graphs, replay_is_bitwise_the_direct_prefill_fused) { graphs_case(1, RLX_FUSION_FUSED); }
Test(simt_graphs, replay_is_bitwise_the_direct_prefill_all_logits_unfused) { graphs_case(0, RLX_FUSION_NONE); }

Test(simt_graphs, bounded_and_evicted_least_recently_used) {
    rlx_simt_device_install();
    rlx_llama_config c;
    rlx_weights *w = weights(&c);
    c.num_hidden_layers = 1;
    rlx_model *mg = build(&c, w, 1, 1, RLX_FUSION_FUSED), *md = build(&c, w, 0, 1, RLX_FUSION_FUSED);
    rlx_session *sg, *sd;
    cr_assert_eq(rlx_session_create(mg, &sg), RLX_OK);
    cr_assert_eq(rlx_session_create(md, &sd), RLX_OK);
    /* 4 sequence counts x 5 token buckets (4, 6, 8, 12, 16 tokens) = 20 shapes > 16 graphs */
    const int64_t totals[5] = {4, 6, 8, 12, 16};
    int shapes = 0;
    for (int q = 1; q <= 4; q++)
        for (int t = 0; t < 5; t++) {
            shape sh = {{1, 1, 1, 1}, q};
            sh.lens[q - 1] = totals[t] - (q - 1);
            int64_t n;
            free(prefill(sg, sh.lens, sh.n, 50 + (uint64_t)shapes, &n));
            shapes++;
        }
    rlx__graph_stats st;
    rlx__session_graph_stats(sg, &st);
    cr_expect_eq(st.captures, 20);
    cr_expect_eq(st.evictions, 20 - RLX__GRAPH_CAP, "captures %llu, evictions %llu", (unsigned long long)st.captures,
                 (unsigned long long)st.evictions);
    /* the first shape was the least recently used: evicted, so it captures again, and still
     * gives the direct logits */
    const uint64_t before = st.captures;
    const shape first = {{4}, 1};
    expect_same(sg, sd, &first, 99, "re-captured after eviction");
    rlx__session_graph_stats(sg, &st);
    cr_expect_eq(st.captures, before + 1);
    rlx_session_destroy(sg);
    rlx_session_destroy(sd);
    rlx_model_destroy(mg);
    rlx_model_destroy(md);
    rlx_weights_destroy(w);
}

/* A plan that runs host code between kernels (named id inputs of an encoder) cannot be a graph:
 * refused at build, by name, instead of silently launched kernel by kernel. */
Test(simt_graphs, host_work_mid_prefill_is_refused) {
    rlx_simt_device_install();
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/bert/bert_token_types_f32", rlxt_fixtures_dir());
    rlx_weights *w;
    cr_assert_eq(rlx_weights_open(dir, &w), RLX_OK, "%s", rlx_last_error());
    rlx_encoder_config cfg;
    cr_assert_eq(rlx_encoder_config_from_weights(w, NULL, &cfg), RLX_OK, "%s", rlx_last_error());
    rlx_encoder_recipe_params p = rlx_encoder_recipe_default_params();
    p.batch = 2;
    p.seq = 8;
    rlx_flow *f;
    cr_assert_eq(rlx_encoder_flow(&cfg, &p, &f), RLX_OK, "%s", rlx_last_error());
    rlx_profile prof;
    rlx_profile_preset("prefill", &prof);
    prof.cuda_graphs = 1;
    rlx_build_params bp = rlx_build_default_params();
    bp.device = RLX_DEVICE_SIMT;
    bp.profile = &prof;
    rlx_model *m = NULL;
    cr_expect_eq(rlx_model_build(f, w, &bp, &m), RLX_ERR_UNSUPPORTED);
    cr_expect(strstr(rlx_last_error(), "kernels.cuda_graphs") && strstr(rlx_last_error(), "upload_ids"), "%s",
              rlx_last_error());
    cr_expect_null(m);
    rlx_flow_destroy(f);
    rlx_weights_destroy(w);
}
