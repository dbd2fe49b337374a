/* The tier-0 builder: sticky errors, scopes, build-time weight checks by key. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "rlx/flow.h"
#include "model/stages.h"

static rlx_llama_config tiny_cfg(void) {
    rlx_llama_config c;
    cr_assert_eq(rlx_llama_builtin_config("tiny", &c), RLX_OK, "%s", rlx_last_error());
    c.num_hidden_layers = 2;
    c.vocab_size = 64;
    c.hidden_size = 32;
    c.num_attention_heads = 4;
    c.num_key_value_heads = 2;
    c.head_dim = 8;
    c.rope.head_dim = 8;
    c.intermediate_size = 48;
    return c;
}

static rlx_flow *tiny_flow(const rlx_llama_config *c, int composed) {
    rlx_llama_recipe_params p = rlx_llama_recipe_default_params();
    p.batch = 2;
    p.seq = 8;
    p.composed_layers = composed;
    rlx_flow *f;
    cr_assert_eq(rlx_llama_flow(c, &p, &f), RLX_OK, "%s", rlx_last_error());
    return f;
}

Test(flow, errors_are_sticky_and_named) {
    rlx_flow *f;
    cr_assert_eq(rlx_flow_create("t", &f), RLX_OK);
    rlx_status s = rlx_flow_rms_norm(f, "x.weight", 1e-5);
    cr_expect_eq(s, RLX_ERR_BUILD);
    cr_expect(strstr(rlx_last_error(), "needs an input first"), "%s", rlx_last_error());
    /* later blocks replay the first error */
    cr_expect_eq(rlx_flow_input_tokens(f, "tokens", 1, 4), RLX_ERR_BUILD);
    cr_expect_eq(rlx_flow_status(f), RLX_ERR_BUILD);
    rlx_flow_destroy(f);
}

Test(flow, token_embed_needs_tokens_and_residual_slot_rules) {
    rlx_flow *f;
    rlx_flow_create("t", &f);
    rlx_flow_input_tokens(f, "tokens", 1, 4);
    cr_expect_eq(rlx_flow_residual_add(f), RLX_ERR_BUILD); /* activations needed first */
    rlx_flow_destroy(f);

    rlx_flow_create("t", &f);
    rlx_flow_input_tokens(f, "tokens", 1, 4);
    rlx_flow_token_embed(f, NULL);
    cr_expect_eq(rlx_flow_residual_add(f), RLX_ERR_BUILD);
    cr_expect(strstr(rlx_last_error(), "nothing was saved"), "%s", rlx_last_error());
    rlx_flow_destroy(f);

    rlx_flow_create("t", &f);
    rlx_flow_input_tokens(f, "tokens", 1, 4);
    rlx_flow_token_embed(f, NULL);
    cr_expect_eq(rlx_flow_residual_save(f), RLX_OK);
    cr_expect_eq(rlx_flow_residual_save(f), RLX_ERR_BUILD);
    rlx_flow_destroy(f);
}

Test(flow, bad_arguments) {
    rlx_flow *f;
    rlx_flow_create("t", &f);
    cr_expect_eq(rlx_flow_input_tokens(f, "tokens", 0, 4), RLX_ERR_INVALID_ARGUMENT);
    rlx_flow_destroy(f);
    rlx_flow_create("t", &f);
    rlx_flow_input_tokens(f, "tokens", 1, 4);
    rlx_rope_params rp = {.head_dim = 7, .max_positions = 4, .theta = 1e4};
    cr_expect_eq(rlx_flow_rope_tables(f, &rp), RLX_ERR_INVALID_ARGUMENT);
    rlx_flow_destroy(f);
    rlx_flow_create("t", &f);
    rlx_flow_input_tokens(f, "tokens", 1, 4);
    rlx_flow_token_embed(f, NULL);
    rlx_attn_spec as = {.prefix = "a", .heads = 6, .kv_heads = 4, .head_dim = 8, .causal = 1, .rope = 0};
    cr_expect_eq(rlx_flow_self_attn_prefill(f, &as), RLX_ERR_INVALID_ARGUMENT);
    cr_expect(strstr(rlx_last_error(), "kv_heads dividing heads"), "%s", rlx_last_error());
    rlx_flow_destroy(f);
    cr_expect_eq(rlx_flow_rms_norm(NULL, "k", 1e-5), RLX_ERR_INVALID_ARGUMENT);
    rlx_flow_destroy(NULL);
}

static rlx_status two_norms(rlx_flow *f, void *user) {
    (void)user;
    rlx_flow_rms_norm(f, "n1.weight", 1e-5);
    return rlx_flow_rms_norm(f, "n2.weight", 1e-5);
}

Test(flow, layer_stack_scopes_stage_names) {
    rlx_flow *f;
    rlx_flow_create("t", &f);
    rlx_flow_input_tokens(f, "tokens", 1, 4);
    rlx_flow_token_embed(f, NULL);
    cr_assert_eq(rlx_flow_layer(f, "L0", two_norms, NULL), RLX_OK);
    cr_expect_eq(rlx_flow_stage_count(f), 4);
    cr_expect_str_eq(f->list.stages[2].name, "L0.rms_norm");
    char *text;
    cr_assert_eq(rlx_flow_format(f, &text), RLX_OK);
    cr_expect(strstr(text, "L0.rms_norm") && strstr(text, "n2.weight"), "%s", text);
    rlx_free(text);
    rlx_flow_destroy(f);
}

Test(flow, fused_layer_is_one_stage_composed_is_many) {
    rlx_llama_config c = tiny_cfg();
    rlx_flow *fused = tiny_flow(&c, 0), *composed = tiny_flow(&c, 1);
    /* tokens, rope, embed, 2 layers, last_token, final_norm, lm_head */
    cr_expect_eq(rlx_flow_stage_count(fused), 8);
    cr_expect_gt(rlx_flow_stage_count(composed), 8 + 2 * 10);
    rlx_weights *w;
    cr_assert_eq(rlx_llama_random_weights(&c, 1, RLX_DTYPE_F32, &w), RLX_OK, "%s", rlx_last_error());
    rlx_model *m1, *m2;
    cr_assert_eq(rlx_model_build(fused, w, NULL, &m1), RLX_OK, "%s", rlx_last_error());
    cr_assert_eq(rlx_model_build(composed, w, NULL, &m2), RLX_OK, "%s", rlx_last_error());
    /* after expansion both run the same primitives */
    cr_expect_eq(m1->list.n_stages, m2->list.n_stages);
    for (int i = 0; i < m1->list.n_stages; i++) cr_expect_eq(m1->list.stages[i].op, m2->list.stages[i].op, "stage %d", i);
    rlx_model_destroy(m1);
    rlx_model_destroy(m2);
    rlx_weights_destroy(w);
    rlx_flow_destroy(fused);
    rlx_flow_destroy(composed);
}

/* Every missing key is listed, not just the first. */
Test(flow, missing_weights_listed_by_key) {
    rlx_llama_config c = tiny_cfg();
    rlx_weights *full, *w;
    cr_assert_eq(rlx_llama_random_weights(&c, 1, RLX_DTYPE_F32, &full), RLX_OK);
    cr_assert_eq(rlx_weights_create(&w), RLX_OK);
    for (size_t i = 0; i < rlx_weights_count(full); i++) {
        rlx_tensor_view v;
        rlx_weights_at(full, i, &v);
        if (!strcmp(v.name, "model.layers.1.mlp.up_proj.weight") || !strcmp(v.name, "model.norm.weight")) continue;
        cr_assert_eq(rlx_weights_add(w, v.name, v.dtype, v.ndim, v.shape, v.data), RLX_OK);
    }
    rlx_flow *f = tiny_flow(&c, 0);
    rlx_model *m = NULL;
    rlx_status s = rlx_model_build(f, w, NULL, &m);
    cr_expect_eq(s, RLX_ERR_MISSING_WEIGHT);
    cr_expect_null(m);
    const char *e = rlx_last_error();
    cr_expect(strstr(e, "2 weight problems"), "%s", e);
    cr_expect(strstr(e, "'model.layers.1.mlp.up_proj.weight'") && strstr(e, "'model.norm.weight'"), "%s", e);
    rlx_flow_destroy(f);
    rlx_weights_destroy(w);
    rlx_weights_destroy(full);
}

Test(flow, misshaped_weight_named_with_expected_shape) {
    rlx_llama_config c = tiny_cfg();
    rlx_weights *full, *w;
    cr_assert_eq(rlx_llama_random_weights(&c, 1, RLX_DTYPE_F32, &full), RLX_OK);
    rlx_weights_create(&w);
    for (size_t i = 0; i < rlx_weights_count(full); i++) {
        rlx_tensor_view v;
        rlx_weights_at(full, i, &v);
        if (!strcmp(v.name, "model.layers.0.self_attn.k_proj.weight")) {
            int64_t shape[2] = {8, 32}; /* one kv head instead of two */
            cr_assert_eq(rlx_weights_add(w, v.name, v.dtype, 2, shape, v.data), RLX_OK);
            continue;
        }
        rlx_weights_add(w, v.name, v.dtype, v.ndim, v.shape, v.data);
    }
    rlx_flow *f = tiny_flow(&c, 1);
    rlx_model *m = NULL;
    cr_expect_eq(rlx_model_build(f, w, NULL, &m), RLX_ERR_SHAPE);
    const char *e = rlx_last_error();
    cr_expect(strstr(e, "'model.layers.0.self_attn.k_proj.weight'") && strstr(e, "[8, 32]") && strstr(e, "expected [16, 32]"), "%s", e);
    rlx_flow_destroy(f);
    rlx_weights_destroy(w);
    rlx_weights_destroy(full);
}

Test(flow, prefill_input_validation) {
    rlx_llama_config c = tiny_cfg();
    rlx_weights *w;
    rlx_llama_random_weights(&c, 3, RLX_DTYPE_BF16, &w);
    rlx_flow *f = tiny_flow(&c, 0);
    rlx_model *m;
    cr_assert_eq(rlx_model_build(f, w, NULL, &m), RLX_OK, "%s", rlx_last_error());
    rlx_session *s;
    rlx_session_create(m, &s);
    int32_t toks[20] = {1, 2, 3, 64};
    cr_expect_eq(rlx_session_prefill(s, toks, 4, NULL, 1, NULL), RLX_ERR_TOKEN_RANGE);
    cr_expect(strstr(rlx_last_error(), "token 3 (id 64)"), "%s", rlx_last_error());
    toks[3] = -1;
    cr_expect_eq(rlx_session_prefill(s, toks, 4, NULL, 1, NULL), RLX_ERR_TOKEN_RANGE);
    toks[3] = 5;
    cr_expect_eq(rlx_session_prefill(s, toks, 0, NULL, 1, NULL), RLX_ERR_INVALID_ARGUMENT);
    cr_expect_eq(rlx_session_prefill(s, toks, 17, NULL, 1, NULL), RLX_ERR_INVALID_ARGUMENT); /* > 2 x 8 */
    int64_t lens[2] = {3, 2};
    cr_expect_eq(rlx_session_prefill(s, toks, 4, lens, 2, NULL), RLX_ERR_INVALID_ARGUMENT); /* sums to 5 */
    int64_t lens3[3] = {1, 1, 2};
    cr_expect_eq(rlx_session_prefill(s, toks, 4, lens3, 3, NULL), RLX_ERR_INVALID_ARGUMENT); /* 3 > batch 2 */
    cr_expect_eq(rlx_session_output_to_host(s, (float[1]){0}, 1), RLX_ERR_INVALID_ARGUMENT); /* nothing ran */
    int64_t ok[2] = {1, 3};
    cr_expect_eq(rlx_session_prefill(s, toks, 4, ok, 2, NULL), RLX_OK, "%s", rlx_last_error());
    float small[3];
    cr_expect_eq(rlx_session_output_to_host(s, small, 3), RLX_ERR_INVALID_ARGUMENT);
    rlx_session_destroy(s);
    rlx_model_destroy(m);
    rlx_flow_destroy(f);
    rlx_weights_destroy(w);
}

Test(flow, unavailable_device_is_refused_cleanly) {
    rlx_llama_config c = tiny_cfg();
    rlx_weights *w;
    rlx_llama_random_weights(&c, 3, RLX_DTYPE_F32, &w);
    rlx_flow *f = tiny_flow(&c, 0);
    rlx_build_params p = rlx_build_default_params();
    p.device = RLX_DEVICE_CUDA;
    rlx_model *m = (rlx_model *)1;
    rlx_status s = rlx_model_build(f, w, &p, &m);
    if (s == RLX_OK) rlx_model_destroy(m);
    else cr_expect_null(m);
    rlx_flow_destroy(f);
    rlx_weights_destroy(w);
}
