/* Recipe hooks (before_layers, per layer, after_layers, patch) in the seed's order, and flow
 * control: when (build-time condition) and sequence. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rlx/custom.h"
#include "rlx/flow.h"
#include "model/stages.h"
#include "testutil.h"

static rlx_llama_config tiny_cfg(void) {
    rlx_llama_config c;
    cr_assert_eq(rlx_llama_builtin_config("tiny", &c), RLX_OK, "%s", rlx_last_error());
    c.num_hidden_layers = 3;
    c.vocab_size = 64;
    c.hidden_size = 32;
    c.num_attention_heads = 4;
    c.num_key_value_heads = 2;
    c.head_dim = 8;
    c.rope.head_dim = 8;
    c.intermediate_size = 48;
    return c;
}

/* What the hooks saw, in call order. */
typedef struct trace {
    char text[512];
    size_t stages_at[8]; /* stage count when each hook ran */
    int n;
} trace;

static void note(trace *t, rlx_flow *f, const char *what) {
    size_t len = strlen(t->text);
    snprintf(t->text + len, sizeof t->text - len, "%s%s", len ? " " : "", what);
    if (t->n < 8) t->stages_at[t->n++] = rlx_flow_stage_count(f);
}

static rlx_status ident_shape(rlx_custom_shape_args *a) {
    a->out_cols[0] = a->in_cols[0];
    return RLX_OK;
}

static rlx_status ident_cpu(const rlx_custom_args *a) {
    memcpy(a->out[0], a->in[0], (size_t)(a->rows * a->out_cols[0]) * sizeof(float));
    return RLX_OK;
}

static rlx_status add_identity(rlx_flow *f) {
    rlx_custom_def def = {.name = "identity", .shape = ident_shape, .cpu = ident_cpu};
    return rlx_flow_custom(f, &def, NULL, NULL);
}

static rlx_status before(rlx_flow *f, void *user) {
    note(user, f, "before");
    return add_identity(f);
}
static rlx_status after(rlx_flow *f, void *user) {
    note(user, f, "after");
    return add_identity(f);
}
static rlx_status patch(rlx_flow *f, void *user) {
    note(user, f, "patch");
    return add_identity(f);
}

static rlx_status layer(rlx_flow *f, const rlx_llama_layer_ctx *ctx, void *user) {
    char what[16];
    snprintf(what, sizeof what, "L%lld", (long long)rlx_llama_layer_ctx_index(ctx));
    note(user, f, what);
    cr_assert_eq(rlx_llama_layer_ctx_spec(ctx)->heads, 4);
    return rlx_llama_layer_ctx_default(f, ctx);
}

static const char *stage_name(const rlx_flow *f, size_t i) { return f->list.stages[i].name; }

Test(hooks, recipe_hooks_in_the_seed_order) {
    rlx_llama_config c = tiny_cfg();
    trace t = {0};
    rlx_llama_recipe_params rp = rlx_llama_recipe_default_params();
    rp.seq = 8;
    rp.layer = layer;
    rp.layer_user = &t;
    rp.before_layers = before;
    rp.after_layers = after;
    rp.patch = patch;
    rp.hooks_user = &t;
    rlx_flow *f;
    cr_assert_eq(rlx_llama_flow(&c, &rp, &f), RLX_OK, "%s", rlx_last_error());
    cr_expect_str_eq(t.text, "before L0 L1 L2 after patch");
    /* tokens, rope_tables, token_embed → before_layers */
    cr_expect_eq(t.stages_at[0], 3);
    cr_expect_str_eq(stage_name(f, 2), "token_embed");
    cr_expect_str_eq(stage_name(f, 3), "before_layers.identity");
    cr_expect_str_eq(stage_name(f, 4), "L0.llama_layer");
    /* three fused layers, then after_layers, last_token, final_norm, patch, lm_head */
    size_t n = rlx_flow_stage_count(f);
    cr_assert_eq(n, 12);
    cr_expect_str_eq(stage_name(f, 7), "after_layers.identity");
    cr_expect_str_eq(stage_name(f, 8), "last_token");
    cr_expect_str_eq(stage_name(f, 9), "final_norm");
    cr_expect_str_eq(stage_name(f, 10), "patch.identity");
    cr_expect_str_eq(stage_name(f, 11), "lm_head");

    /* identity hooks leave the logits alone */
    rlx_weights *w;
    cr_assert_eq(rlx_llama_random_weights(&c, 3, RLX_DTYPE_F32, &w), RLX_OK);
    rlx_llama_recipe_params plain = rlx_llama_recipe_default_params();
    plain.seq = 8;
    rlx_flow *g;
    cr_assert_eq(rlx_llama_flow(&c, &plain, &g), RLX_OK);
    const int32_t tok[] = {1, 2, 3, 4, 5};
    float out[2][64];
    rlx_flow *flows[2] = {f, g};
    for (int k = 0; k < 2; k++) {
        rlx_model *m;
        cr_assert_eq(rlx_model_build(flows[k], w, NULL, &m), RLX_OK, "%s", rlx_last_error());
        rlx_session *s;
        rlx_session_create(m, &s);
        cr_assert_eq(rlx_session_prefill(s, tok, 5, NULL, 1, NULL), RLX_OK, "%s", rlx_last_error());
        cr_assert_eq(rlx_session_output_to_host(s, out[k], 64), RLX_OK);
        rlx_session_destroy(s);
        rlx_model_destroy(m);
    }
    cr_expect(!memcmp(out[0], out[1], sizeof out[0]), "identity hooks changed the logits");
    rlx_flow_destroy(g);
    rlx_flow_destroy(f);
    rlx_weights_destroy(w);
}

static rlx_status failing_patch(rlx_flow *f, void *user) {
    (void)user;
    return rlx_flow_rms_norm(f, "x.weight", 7.0); /* bad eps */
}

Test(hooks, failing_hook_fails_the_recipe_with_its_scope) {
    rlx_llama_config c = tiny_cfg();
    rlx_llama_recipe_params rp = rlx_llama_recipe_default_params();
    rp.patch = failing_patch;
    rlx_flow *f = (rlx_flow *)1;
    cr_expect_eq(rlx_llama_flow(&c, &rp, &f), RLX_ERR_INVALID_ARGUMENT);
    cr_expect_null(f);
    cr_expect(strstr(rlx_last_error(), "in patch: rms_norm 'x.weight': eps 7"), "%s", rlx_last_error());
}

/* ---- when / sequence -------------------------------------------------------------------------------- */

static rlx_status step_a(rlx_flow *f, void *user) {
    note(user, f, "a");
    return RLX_OK;
}
static rlx_status step_b(rlx_flow *f, void *user) {
    note(user, f, "b");
    return rlx_flow_final_norm(f, 1e-5);
}
static rlx_status step_fail(rlx_flow *f, void *user) {
    note(user, f, "fail");
    return RLX_ERR_UNSUPPORTED;
}

static rlx_flow *embedded(void) {
    rlx_flow *f;
    rlx_flow_create("ctl", &f);
    rlx_flow_input_tokens(f, "tokens", 1, 4);
    rlx_flow_token_embed(f, NULL);
    return f;
}

Test(hooks, when_is_a_build_time_condition) {
    trace t = {0};
    rlx_flow *f = embedded();
    cr_expect_eq(rlx_flow_when(f, 0, step_b, &t), RLX_OK);
    cr_expect_str_eq(t.text, "");
    cr_expect_eq(rlx_flow_stage_count(f), 2);
    cr_expect_eq(rlx_flow_when(f, 1, step_b, &t), RLX_OK);
    cr_expect_str_eq(t.text, "b");
    cr_expect_eq(rlx_flow_stage_count(f), 3);
    cr_expect_eq(rlx_flow_when(f, 1, NULL, &t), RLX_ERR_INVALID_ARGUMENT);
    /* sticky: the flow already failed, nothing runs */
    cr_expect_eq(rlx_flow_when(f, 1, step_a, &t), RLX_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(t.text, "b");
    rlx_flow_destroy(f);

    f = embedded();
    cr_expect_eq(rlx_flow_when(f, 1, step_fail, &t), RLX_ERR_UNSUPPORTED);
    cr_expect_eq(rlx_flow_status(f), RLX_ERR_UNSUPPORTED); /* recorded although no block failed */
    rlx_flow_destroy(f);
    cr_expect_eq(rlx_flow_when(NULL, 1, step_a, &t), RLX_ERR_INVALID_ARGUMENT);
}

Test(hooks, sequence_runs_in_order_and_stops_at_the_first_failure) {
    trace t = {0};
    rlx_flow *f = embedded();
    const rlx_layer_fn ok[] = {step_a, step_b, step_a};
    cr_expect_eq(rlx_flow_sequence(f, ok, 3, &t), RLX_OK);
    cr_expect_str_eq(t.text, "a b a");
    cr_expect_eq(rlx_flow_stage_count(f), 3);
    cr_expect_eq(rlx_flow_sequence(f, NULL, 0, &t), RLX_OK);
    rlx_flow_destroy(f);

    t = (trace){0};
    f = embedded();
    const rlx_layer_fn bad[] = {step_a, step_fail, step_b};
    cr_expect_eq(rlx_flow_sequence(f, bad, 3, &t), RLX_ERR_UNSUPPORTED);
    cr_expect_str_eq(t.text, "a fail");
    cr_expect_eq(rlx_flow_status(f), RLX_ERR_UNSUPPORTED);
    rlx_flow_destroy(f);

    t = (trace){0};
    f = embedded();
    const rlx_layer_fn holes[] = {step_a, NULL};
    cr_expect_eq(rlx_flow_sequence(f, holes, 2, &t), RLX_ERR_INVALID_ARGUMENT);
    cr_expect(strstr(rlx_last_error(), "callback 1 of 2 is NULL"), "%s", rlx_last_error());
    cr_expect_str_eq(t.text, ""); /* checked before anything runs */
    rlx_flow_destroy(f);
}

/* when + sequence inside a recipe hook: the per-layer hook picks the composed form for odd layers
 * only, and the logits match the all-fused recipe. */
static rlx_status odd_composed(rlx_flow *f, const rlx_llama_layer_ctx *ctx, void *user) {
    (void)user;
    const int64_t i = rlx_llama_layer_ctx_index(ctx);
    if (i % 2) return rlx_flow_llama_layer_composed(f, i, rlx_llama_layer_ctx_spec(ctx));
    return rlx_llama_layer_ctx_default(f, ctx);
}

Test(hooks, per_layer_hook_swaps_forms_same_logits) {
    rlx_llama_config c = tiny_cfg();
    rlx_weights *w;
    cr_assert_eq(rlx_llama_random_weights(&c, 9, RLX_DTYPE_F32, &w), RLX_OK);
    rlx_llama_recipe_params rp = rlx_llama_recipe_default_params();
    rp.seq = 8;
    float out[2][64];
    const int32_t tok[] = {7, 1, 33, 2};
    for (int k = 0; k < 2; k++) {
        rp.layer = k ? odd_composed : NULL;
        rlx_flow *f;
        cr_assert_eq(rlx_llama_flow(&c, &rp, &f), RLX_OK, "%s", rlx_last_error());
        if (k) cr_expect_gt(rlx_flow_stage_count(f), 12);
        rlx_model *m;
        cr_assert_eq(rlx_model_build(f, w, NULL, &m), RLX_OK, "%s", rlx_last_error());
        rlx_session *s;
        rlx_session_create(m, &s);
        cr_assert_eq(rlx_session_prefill(s, tok, 4, NULL, 1, NULL), RLX_OK);
        rlx_session_output_to_host(s, out[k], 64);
        rlx_session_destroy(s);
        rlx_model_destroy(m);
        rlx_flow_destroy(f);
    }
    cr_expect(!memcmp(out[0], out[1], sizeof out[0]), "composed layer 1 changed the logits");
    rlx_weights_destroy(w);
}
