/* Tier 2 custom stages on the CPU reference: shape functions (errors named by stage), CPU
 * implementations, weights loaded through the builder context, parameters, named inputs and
 * outputs, token ids as input, ownership of the user data, device implementations required
 * per device, and flow_select. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rlx/custom.h"
#include "rlx/flow.h"
#include "rlx/profile.h"
#include "model/stages.h"
#include "testutil.h"

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

static const int32_t tokens[] = {3, 17, 42, 5, 9, 11, 60};
static const int64_t lens[] = {4, 3};

/* Runs a prefill of the two test sequences; returns the output (caller frees). */
static float *run(const rlx_flow *f, const rlx_weights *w, int64_t *rows, int64_t *cols) {
    rlx_model *m;
    cr_assert_eq(rlx_model_build(f, w, NULL, &m), RLX_OK, "%s", rlx_last_error());
    rlx_session *s;
    cr_assert_eq(rlx_session_create(m, &s), RLX_OK);
    cr_assert_eq(rlx_session_prefill(s, tokens, 7, lens, 2, NULL), RLX_OK, "%s", rlx_last_error());
    cr_assert_eq(rlx_session_output_shape(s, rows, cols), RLX_OK);
    float *out = malloc((size_t)*rows * (size_t)*cols * sizeof(float));
    cr_assert_eq(rlx_session_output_to_host(s, out, (size_t)*rows * (size_t)*cols), RLX_OK);
    rlx_session_destroy(s);
    rlx_model_destroy(m);
    return out;
}

/* ---- soft-cap: y = cap · tanh(x / cap) ------------------------------------------------------- */

typedef struct capdata {
    float cap;
    int *destroyed; /* counts destroy calls */
} capdata;

static void cap_destroy(void *user) {
    capdata *d = user;
    if (d->destroyed) (*d->destroyed)++;
    free(d);
}

static rlx_status same_width(rlx_custom_shape_args *a) {
    for (int k = 0; k < a->n_out; k++) a->out_cols[k] = a->in_cols[0];
    return RLX_OK;
}

static rlx_status softcap_cpu(const rlx_custom_args *a) {
    const capdata *d = a->user;
    cr_assert_eq(a->device, RLX_DEVICE_CPU);
    cr_assert_eq(a->dtype, RLX_DTYPE_F32);
    const float *x = a->in[0];
    float *y = a->out[0];
    for (int64_t i = 0; i < a->rows * a->out_cols[0]; i++) y[i] = d->cap * tanhf(x[i] / d->cap);
    return RLX_OK;
}

static rlx_custom_def softcap_def(float cap, int *destroyed) {
    capdata *d = malloc(sizeof *d);
    d->cap = cap;
    d->destroyed = destroyed;
    rlx_custom_def def = {.name = "softcap", .shape = same_width, .cpu = softcap_cpu, .user = d, .destroy = cap_destroy};
    return def;
}

static rlx_flow *llama_flow(const rlx_llama_config *c) {
    rlx_llama_recipe_params rp = rlx_llama_recipe_default_params();
    rp.batch = 2;
    rp.seq = 8;
    rlx_flow *f;
    cr_assert_eq(rlx_llama_flow(c, &rp, &f), RLX_OK, "%s", rlx_last_error());
    return f;
}

Test(custom, softcap_after_lm_head_on_cpu) {
    rlx_llama_config c = tiny_cfg();
    rlx_weights *w;
    cr_assert_eq(rlx_llama_random_weights(&c, 7, RLX_DTYPE_F32, &w), RLX_OK);
    rlx_flow *plain = llama_flow(&c);
    int64_t rows, cols;
    float *ref = run(plain, w, &rows, &cols);

    int destroyed = 0;
    rlx_flow *f = llama_flow(&c);
    rlx_custom_def def = softcap_def(0.5f, &destroyed);
    cr_assert_eq(rlx_flow_custom(f, &def, NULL, NULL), RLX_OK, "%s", rlx_last_error());
    char *text;
    cr_assert_eq(rlx_flow_format(f, &text), RLX_OK);
    cr_expect(strstr(text, "custom       softcap"), "%s", text);
    cr_expect(strstr(text, "op=softcap"), "%s", text);
    rlx_free(text);
    int64_t r2, c2;
    float *got = run(f, w, &r2, &c2);
    cr_assert_eq(r2, rows);
    cr_assert_eq(c2, cols);
    double maxabs = 0;
    for (int64_t i = 0; i < rows * cols; i++) {
        float want = 0.5f * tanhf(ref[i] / 0.5f);
        cr_assert(fabsf(got[i] - want) <= 1e-6f, "logit %lld: %g vs %g", (long long)i, got[i], want);
        if (fabs(ref[i]) > maxabs) maxabs = fabs(ref[i]);
    }
    cr_expect(maxabs > 0.5, "the cap never bit (max |logit| %g): the test would pass vacuously", maxabs);
    cr_expect_eq(destroyed, 0);
    rlx_flow_destroy(f);
    cr_expect_eq(destroyed, 1);
    free(ref);
    free(got);
    rlx_flow_destroy(plain);
    rlx_weights_destroy(w);
}

Test(custom, user_data_outlives_the_flow_in_models_and_is_freed_once) {
    rlx_llama_config c = tiny_cfg();
    rlx_weights *w;
    cr_assert_eq(rlx_llama_random_weights(&c, 7, RLX_DTYPE_F32, &w), RLX_OK);
    int destroyed = 0;
    rlx_flow *f = llama_flow(&c);
    rlx_custom_def def = softcap_def(2.0f, &destroyed);
    cr_assert_eq(rlx_flow_custom(f, &def, NULL, NULL), RLX_OK);
    rlx_model *m1, *m2;
    cr_assert_eq(rlx_model_build(f, w, NULL, &m1), RLX_OK, "%s", rlx_last_error());
    cr_assert_eq(rlx_model_build(f, w, NULL, &m2), RLX_OK, "%s", rlx_last_error());
    rlx_flow_destroy(f);
    cr_expect_eq(destroyed, 0);
    rlx_session *s;
    cr_assert_eq(rlx_session_create(m1, &s), RLX_OK);
    cr_expect_eq(rlx_session_prefill(s, tokens, 7, lens, 2, NULL), RLX_OK, "%s", rlx_last_error());
    rlx_session_destroy(s);
    rlx_model_destroy(m1);
    cr_expect_eq(destroyed, 0);
    rlx_model_destroy(m2);
    cr_expect_eq(destroyed, 1);
    /* a call that fails still takes ownership */
    rlx_flow *g;
    rlx_flow_create("g", &g);
    def = softcap_def(1.0f, &destroyed);
    cr_expect_eq(rlx_flow_custom(g, &def, NULL, NULL), RLX_ERR_BUILD); /* no input yet */
    cr_expect_eq(destroyed, 2);
    def = softcap_def(1.0f, &destroyed);
    cr_expect_eq(rlx_flow_custom(g, &def, NULL, NULL), RLX_ERR_BUILD); /* sticky */
    cr_expect_eq(destroyed, 3);
    def = softcap_def(1.0f, &destroyed);
    cr_expect_eq(rlx_flow_custom(NULL, &def, NULL, NULL), RLX_ERR_INVALID_ARGUMENT);
    cr_expect_eq(destroyed, 4);
    rlx_flow_destroy(g);
    rlx_weights_destroy(w);
}

Test(custom, bad_defs_refused_with_the_name) {
    rlx_flow *f;
    rlx_flow_create("t", &f);
    rlx_flow_input_tokens(f, "tokens", 1, 4);
    rlx_custom_def def = {.name = "no_cpu", .shape = same_width};
    cr_expect_eq(rlx_flow_custom(f, &def, NULL, NULL), RLX_ERR_INVALID_ARGUMENT);
    cr_expect(strstr(rlx_last_error(), "custom stage 'no_cpu'"), "%s", rlx_last_error());
    rlx_flow_destroy(f);
    rlx_flow_create("t", &f);
    rlx_flow_input_tokens(f, "tokens", 1, 4);
    rlx_custom_def bad = {.name = "has space", .shape = same_width, .cpu = softcap_cpu};
    cr_expect_eq(rlx_flow_custom(f, &bad, NULL, NULL), RLX_ERR_INVALID_ARGUMENT);
    cr_expect(strstr(rlx_last_error(), "'has space'"), "%s", rlx_last_error());
    rlx_flow_destroy(f);
}

/* ---- the shape function's errors ----------------------------------------------------------------- */

static rlx_status wants_even(rlx_custom_shape_args *a) {
    if (a->in_cols[0] % 2) {
        snprintf(a->msg, a->msg_cap, "needs an even width, got %lld", (long long)a->in_cols[0]);
        return RLX_ERR_SHAPE;
    }
    a->out_cols[0] = a->in_cols[0] / 2;
    return RLX_OK;
}

static rlx_status gives_zero(rlx_custom_shape_args *a) {
    a->out_cols[0] = 0;
    return RLX_OK;
}

static rlx_status noop_cpu(const rlx_custom_args *a) {
    (void)a;
    return RLX_OK;
}

Test(custom, shape_errors_name_the_stage) {
    rlx_llama_config c = tiny_cfg();
    c.vocab_size = 63; /* odd logits */
    rlx_weights *w;
    cr_assert_eq(rlx_llama_random_weights(&c, 7, RLX_DTYPE_F32, &w), RLX_OK);
    rlx_flow *f = llama_flow(&c);
    rlx_custom_def def = {.name = "halve", .shape = wants_even, .cpu = noop_cpu};
    cr_assert_eq(rlx_flow_custom(f, &def, NULL, NULL), RLX_OK);
    rlx_model *m;
    cr_expect_eq(rlx_model_build(f, w, NULL, &m), RLX_ERR_SHAPE);
    cr_expect(strstr(rlx_last_error(), "stage halve (custom op 'halve'): the shape function refused input widths [63]: "
                                       "needs an even width, got 63"),
              "%s", rlx_last_error());
    rlx_flow_destroy(f);

    f = llama_flow(&c);
    rlx_custom_def zero = {.name = "zero", .shape = gives_zero, .cpu = noop_cpu};
    cr_assert_eq(rlx_flow_custom(f, &zero, NULL, NULL), RLX_OK);
    cr_expect_eq(rlx_model_build(f, w, NULL, &m), RLX_ERR_SHAPE);
    cr_expect(strstr(rlx_last_error(), "stage zero (custom op 'zero'): the shape function gave output 0 width 0"), "%s",
              rlx_last_error());
    rlx_flow_destroy(f);
    rlx_weights_destroy(w);
}

/* ---- weights, parameters, named inputs and outputs -------------------------------------------- */

/* y = x ⊙ scale_w + bias_param; second output "L0.scaled.sum" = row sums of y. */
typedef struct affine_slots {
    int w, p;
} affine_slots;

static rlx_status affine_shape(rlx_custom_shape_args *a) {
    if (a->n_w != 1 || a->w[0].ndim != 1 || a->w[0].shape[0] != a->in_cols[0]) {
        snprintf(a->msg, a->msg_cap, "scale must be [%lld]", (long long)a->in_cols[0]);
        return RLX_ERR_SHAPE;
    }
    cr_assert_eq(a->n_in, 2);
    cr_assert_eq(a->in_cols[1], a->in_cols[0]);
    cr_assert_eq(a->n_out, 2);
    a->out_cols[0] = a->in_cols[0];
    a->out_cols[1] = 1;
    return RLX_OK;
}

static rlx_status affine_cpu(const rlx_custom_args *a) {
    const float *x = a->in[0], *bias = a->in[1], *scale = a->w[0];
    cr_assert_eq(a->in_rows[1], 1);
    cr_assert_eq(a->w_rows[0], a->out_cols[0]);
    cr_assert_eq(a->w_cols[0], 1);
    float *y = a->out[0], *sum = a->out[1];
    const int64_t H = a->out_cols[0];
    for (int64_t r = 0; r < a->rows; r++) {
        double s = 0;
        for (int64_t c = 0; c < H; c++) s += y[r * H + c] = x[r * H + c] * scale[c] + bias[c];
        sum[r] = (float)s;
    }
    return RLX_OK;
}

static rlx_status affine_build(rlx_custom_ctx *ctx, void *user) {
    const float *bias = user;
    int slot;
    rlx_status s = rlx_custom_weight(ctx, "custom.scale", &slot);
    if (s) return s;
    cr_assert_eq(slot, 0);
    if ((s = rlx_custom_param(ctx, "affine.bias", 1, 32, bias, &slot))) return s;
    cr_assert_eq(slot, 1);
    if ((s = rlx_custom_output(ctx, "row_sum", &slot))) return s;
    cr_assert_eq(slot, 1);
    cr_assert_str_eq(rlx_custom_ctx_stage_name(ctx), "L0.affine");
    return RLX_OK;
}

/* A second custom stage reading the first one's named output and the parameter by name:
 * y = x + row_sum (broadcast) + bias. */
static rlx_status addsum_shape(rlx_custom_shape_args *a) {
    a->out_cols[0] = a->in_cols[0];
    return a->in_cols[1] == 1 ? RLX_OK : RLX_ERR_SHAPE;
}

static rlx_status addsum_cpu(const rlx_custom_args *a) {
    const float *x = a->in[0], *sum = a->in[1], *bias = a->in[2];
    float *y = a->out[0];
    const int64_t H = a->out_cols[0];
    for (int64_t r = 0; r < a->rows; r++)
        for (int64_t c = 0; c < H; c++) y[r * H + c] = x[r * H + c] + sum[r] + bias[c];
    return RLX_OK;
}

static rlx_status addsum_build(rlx_custom_ctx *ctx, void *user) {
    (void)user;
    int slot;
    rlx_status s = rlx_custom_input(ctx, "row_sum", &slot);
    if (s) return s;
    return rlx_custom_input(ctx, "affine.bias", &slot);
}

static rlx_status layer0(rlx_flow *f, void *user) {
    const float *bias = user;
    rlx_custom_def affine = {.name = "affine", .shape = affine_shape, .cpu = affine_cpu};
    rlx_custom_def addsum = {.name = "addsum", .shape = addsum_shape, .cpu = addsum_cpu};
    rlx_flow_custom(f, &affine, affine_build, (void *)bias);
    return rlx_flow_custom(f, &addsum, addsum_build, NULL);
}

Test(custom, weight_param_named_output_read_later) {
    enum { H = 32, V = 64 };
    rlxt_rng rng = {11};
    float emb[V * H], scale[H], bias[H];
    rlxt_fill(&rng, emb, V * H, 1.0f);
    rlxt_fill(&rng, scale, H, 1.0f);
    rlxt_fill(&rng, bias, H, 1.0f);
    rlx_weights *w;
    cr_assert_eq(rlx_weights_create(&w), RLX_OK);
    int64_t es[2] = {V, H}, ss[1] = {H};
    cr_assert_eq(rlx_weights_add(w, "model.embed_tokens.weight", RLX_DTYPE_F32, 2, es, emb), RLX_OK);
    cr_assert_eq(rlx_weights_add(w, "custom.scale", RLX_DTYPE_F32, 1, ss, scale), RLX_OK);

    rlx_flow *f;
    rlx_flow_create("affine", &f);
    rlx_flow_input_tokens(f, "tokens", 2, 4);
    rlx_flow_token_embed(f, NULL);
    cr_assert_eq(rlx_flow_layer(f, "L0", layer0, bias), RLX_OK, "%s", rlx_last_error());
    int64_t rows, cols;
    float *y = run(f, w, &rows, &cols);
    cr_assert_eq(rows, 7);
    cr_assert_eq(cols, H);
    for (int64_t t = 0; t < 7; t++) {
        double sum = 0;
        for (int c = 0; c < H; c++) sum += emb[tokens[t] * H + c] * scale[c] + bias[c];
        for (int c = 0; c < H; c++) {
            double want = emb[tokens[t] * H + c] * scale[c] + bias[c] + sum + bias[c];
            cr_assert(fabs(y[t * H + c] - want) < 1e-4, "[%lld, %d]: %g vs %g", (long long)t, c, y[t * H + c], want);
        }
    }
    free(y);
    /* the named output is readable by ordinary blocks too: make it the cursor */
    cr_expect_eq(rlx_flow_select(f, "row_sum"), RLX_OK);
    cr_expect_eq(rlx_flow_select(f, "affine.bias"), RLX_ERR_BUILD); /* a constant */
    rlx_flow_destroy(f);

    /* a missing weight is listed by key at build, like any block's */
    rlx_weights *w2;
    rlx_weights_create(&w2);
    rlx_weights_add(w2, "model.embed_tokens.weight", RLX_DTYPE_F32, 2, es, emb);
    rlx_flow_create("affine", &f);
    rlx_flow_input_tokens(f, "tokens", 2, 4);
    rlx_flow_token_embed(f, NULL);
    rlx_flow_layer(f, "L0", layer0, bias);
    rlx_model *m;
    cr_expect_eq(rlx_model_build(f, w2, NULL, &m), RLX_ERR_MISSING_WEIGHT);
    cr_expect(strstr(rlx_last_error(), "weight 'custom.scale' (stage L0.affine) is missing"), "%s", rlx_last_error());
    rlx_flow_destroy(f);
    rlx_weights_destroy(w2);
    rlx_weights_destroy(w);
}

/* ---- token ids as input, sequences visible ------------------------------------------------------ */

static rlx_status ids_shape(rlx_custom_shape_args *a) {
    if (a->in_dtype[0] != RLX_DTYPE_I32) return RLX_ERR_SHAPE;
    a->out_cols[0] = 2;
    return RLX_OK;
}

/* out[t] = (token id, position in its sequence) */
static rlx_status ids_cpu(const rlx_custom_args *a) {
    const int32_t *ids = a->in[0];
    float *y = a->out[0];
    cr_assert_eq(a->in_dtype[0], RLX_DTYPE_I32);
    for (int64_t s = 0; s < a->n_seqs; s++)
        for (int32_t t = a->seq_start[s]; t < a->seq_start[s + 1]; t++) {
            y[2 * t] = (float)ids[t];
            y[2 * t + 1] = (float)(t - a->seq_start[s]);
        }
    return RLX_OK;
}

static rlx_status embed_after(rlx_custom_ctx *ctx, void *user) {
    (void)user;
    int slot;
    return rlx_custom_input(ctx, "token_embed", &slot);
}

static rlx_status concat_shape(rlx_custom_shape_args *a) {
    a->out_cols[0] = a->in_cols[0] + a->in_cols[1];
    return RLX_OK;
}

static rlx_status concat_cpu(const rlx_custom_args *a) {
    float *y = a->out[0];
    const float *x0 = a->in[0], *x1 = a->in[1];
    const int64_t c0 = a->in_cols[0], c1 = a->in_cols[1];
    for (int64_t r = 0; r < a->rows; r++) {
        memcpy(y + r * (c0 + c1), x0 + r * c0, (size_t)c0 * sizeof(float));
        memcpy(y + r * (c0 + c1) + c0, x1 + r * c1, (size_t)c1 * sizeof(float));
    }
    return RLX_OK;
}

Test(custom, token_ids_and_sequence_offsets) {
    enum { H = 8, V = 64 };
    float emb[V * H];
    for (int i = 0; i < V * H; i++) emb[i] = (float)i;
    rlx_weights *w;
    rlx_weights_create(&w);
    int64_t es[2] = {V, H};
    rlx_weights_add(w, "model.embed_tokens.weight", RLX_DTYPE_F32, 2, es, emb);
    rlx_flow *f;
    rlx_flow_create("ids", &f);
    rlx_flow_input_tokens(f, "tokens", 2, 4);
    rlx_flow_token_embed(f, NULL);
    cr_assert_eq(rlx_flow_select(f, "tokens"), RLX_OK);
    rlx_custom_def ids = {.name = "ids", .shape = ids_shape, .cpu = ids_cpu};
    cr_assert_eq(rlx_flow_custom(f, &ids, NULL, NULL), RLX_OK, "%s", rlx_last_error());
    rlx_custom_def cat = {.name = "concat", .shape = concat_shape, .cpu = concat_cpu};
    cr_assert_eq(rlx_flow_custom(f, &cat, embed_after, NULL), RLX_OK, "%s", rlx_last_error());
    int64_t rows, cols;
    float *y = run(f, w, &rows, &cols);
    cr_assert_eq(cols, 2 + H);
    for (int t = 0; t < 7; t++) {
        cr_expect_eq(y[t * cols], (float)tokens[t]);
        cr_expect_eq(y[t * cols + 1], (float)(t < 4 ? t : t - 4));
        cr_expect_eq(y[t * cols + 2 + 3], emb[tokens[t] * H + 3]);
    }
    free(y);
    rlx_flow_destroy(f);
    rlx_weights_destroy(w);
}

/* ---- builder context errors ------------------------------------------------------------------- */

static rlx_status reads_missing(rlx_custom_ctx *ctx, void *user) {
    (void)user;
    int slot;
    return rlx_custom_input(ctx, "nope", &slot);
}

static rlx_status too_many_inputs(rlx_custom_ctx *ctx, void *user) {
    (void)user;
    int slot;
    for (int i = 0; i < RLX_CUSTOM_MAX_INPUTS; i++) {
        rlx_status s = rlx_custom_input(ctx, "token_embed", &slot);
        if (s) return s;
    }
    return RLX_OK;
}

static rlx_status wrong_rows(rlx_custom_ctx *ctx, void *user) {
    (void)user;
    int slot;
    return rlx_custom_input(ctx, "token_embed", &slot); /* per token, the stage is per sequence */
}

static rlx_status fails_quietly(rlx_custom_ctx *ctx, void *user) {
    (void)ctx;
    (void)user;
    rlx_clear_error();
    return RLX_ERR_UNSUPPORTED;
}

static rlx_flow *embedded(void) {
    rlx_flow *f;
    rlx_flow_create("e", &f);
    rlx_flow_input_tokens(f, "tokens", 1, 4);
    rlx_flow_token_embed(f, NULL);
    return f;
}

Test(custom, ctx_errors_are_sticky_and_named) {
    rlx_custom_def def = {.name = "probe", .shape = same_width, .cpu = noop_cpu};
    rlx_flow *f = embedded();
    cr_expect_eq(rlx_flow_custom(f, &def, reads_missing, NULL), RLX_ERR_BUILD);
    cr_expect(strstr(rlx_last_error(), "custom stage 'probe': no value called 'nope'"), "%s", rlx_last_error());
    cr_expect_eq(rlx_flow_status(f), RLX_ERR_BUILD);
    cr_expect_eq(rlx_flow_stage_count(f), 2);
    rlx_flow_destroy(f);

    f = embedded();
    cr_expect_eq(rlx_flow_custom(f, &def, too_many_inputs, NULL), RLX_ERR_INVALID_ARGUMENT);
    cr_expect(strstr(rlx_last_error(), "more than 8 inputs"), "%s", rlx_last_error());
    rlx_flow_destroy(f);

    f = embedded();
    rlx_flow_last_token(f);
    cr_expect_eq(rlx_flow_custom(f, &def, wrong_rows, NULL), RLX_ERR_BUILD);
    cr_expect(strstr(rlx_last_error(), "one row per token, but the stage's cursor has one row per sequence"), "%s", rlx_last_error());
    rlx_flow_destroy(f);

    f = embedded();
    cr_expect_eq(rlx_flow_custom(f, &def, fails_quietly, NULL), RLX_ERR_UNSUPPORTED);
    cr_expect(strstr(rlx_last_error(), "custom stage 'probe': the build callback failed"), "%s", rlx_last_error());
    cr_expect_eq(rlx_flow_status(f), RLX_ERR_UNSUPPORTED);
    rlx_flow_destroy(f);
}

/* ---- failures at run time, devices, dce --------------------------------------------------------- */

static rlx_status refuses_cpu(const rlx_custom_args *a) {
    snprintf(a->msg, a->msg_cap, "rows %lld are too many", (long long)a->rows);
    return RLX_ERR_UNSUPPORTED;
}

Test(custom, run_failure_names_stage_and_device) {
    rlx_llama_config c = tiny_cfg();
    rlx_weights *w;
    cr_assert_eq(rlx_llama_random_weights(&c, 7, RLX_DTYPE_F32, &w), RLX_OK);
    rlx_flow *f = llama_flow(&c);
    rlx_custom_def def = {.name = "picky", .shape = same_width, .cpu = refuses_cpu};
    rlx_flow_custom(f, &def, NULL, NULL);
    rlx_model *m;
    cr_assert_eq(rlx_model_build(f, w, NULL, &m), RLX_OK, "%s", rlx_last_error());
    rlx_session *s;
    rlx_session_create(m, &s);
    cr_expect_eq(rlx_session_prefill(s, tokens, 7, lens, 2, NULL), RLX_ERR_UNSUPPORTED);
    cr_expect(strstr(rlx_last_error(), "stage picky (custom op 'picky') on cpu: rows 2 are too many"), "%s", rlx_last_error());
    rlx_session_destroy(s);
    rlx_model_destroy(m);
    rlx_flow_destroy(f);
    rlx_weights_destroy(w);
}

Test(custom, device_implementation_required_per_device) {
    rlx_llama_config c = tiny_cfg();
    rlx_weights *w;
    cr_assert_eq(rlx_llama_random_weights(&c, 7, RLX_DTYPE_F32, &w), RLX_OK);
    rlx_flow *f = llama_flow(&c);
    int destroyed = 0;
    rlx_custom_def def = softcap_def(1.0f, &destroyed);
    rlx_flow_custom(f, &def, NULL, NULL);
    rlx_build_params bp = rlx_build_default_params();
    rlx_model *m;
    for (int d = RLX_DEVICE_CUDA; d <= RLX_DEVICE_SIMT; d++) {
        bp.device = (rlx_device_kind)d;
        cr_expect_eq(rlx_model_build(f, w, &bp, &m), RLX_ERR_UNSUPPORTED);
        char want[128];
        snprintf(want, sizeof want, "stage softcap (custom op 'softcap') has no %s implementation", rlx_device_kind_name(bp.device));
        cr_expect(strstr(rlx_last_error(), want), "%s", rlx_last_error());
    }
    rlx_flow_destroy(f);
    cr_expect_eq(destroyed, 1);
    rlx_weights_destroy(w);
}

Test(custom, dead_custom_stage_removed_by_dce) {
    rlx_llama_config c = tiny_cfg();
    rlx_weights *w;
    cr_assert_eq(rlx_llama_random_weights(&c, 7, RLX_DTYPE_F32, &w), RLX_OK);
    rlx_flow *f;
    rlx_flow_create("dead", &f);
    rlx_flow_input_tokens(f, "tokens", 1, 8);
    rlx_flow_token_embed(f, NULL);
    int destroyed = 0;
    rlx_custom_def def = softcap_def(1.0f, &destroyed);
    rlx_flow_custom(f, &def, NULL, NULL);
    rlx_flow_select(f, "token_embed");
    rlx_flow_final_norm(f, 1e-5);
    rlx_flow_lm_head(f, c.vocab_size, c.hidden_size, 1);
    cr_assert_eq(rlx_flow_status(f), RLX_OK, "%s", rlx_last_error());
    rlx_model *m;
    cr_assert_eq(rlx_model_build(f, w, NULL, &m), RLX_OK, "%s", rlx_last_error());
    cr_expect_str_eq(rlx_model_pass_log(m), "dce: removed 1 of 5 stages\n");
    char *text;
    rlx_model_format(m, &text);
    cr_expect(!strstr(text, "softcap"), "%s", text);
    rlx_free(text);
    rlx_model_destroy(m);
    rlx_flow_destroy(f);
    cr_expect_eq(destroyed, 1);
    rlx_weights_destroy(w);
}

/* ---- user code that breaks the contract ------------------------------------------------------ */

/* A message filled to the last byte of msg_cap with no terminator, from the shape function and
 * from the CPU implementation: rlx must not read past its own buffer (ASan catches it), and the
 * message still comes through, cut. */
static rlx_status shape_fills_msg(rlx_custom_shape_args *a) {
    memset(a->msg, 'x', a->msg_cap);
    return RLX_ERR_SHAPE;
}
static rlx_status cpu_fills_msg(const rlx_custom_args *a) {
    memset(a->msg, 'y', a->msg_cap);
    return RLX_ERR_DEVICE;
}
/* Statuses no rlx_status names. */
static rlx_status shape_bad_status(rlx_custom_shape_args *a) {
    (void)a;
    return (rlx_status)1234;
}
static rlx_status cpu_bad_status(const rlx_custom_args *a) {
    (void)a;
    return (rlx_status)-7;
}
static rlx_status build_bad_status(rlx_custom_ctx *ctx, void *user) {
    (void)ctx, (void)user;
    return (rlx_status)99;
}
static rlx_status layer_bad_status(rlx_flow *f, void *user) {
    (void)f, (void)user;
    return (rlx_status)4242;
}

static rlx_status hook_bad_status(rlx_flow *f, const rlx_llama_layer_ctx *ctx, void *user) {
    (void)f, (void)ctx, (void)user;
    return (rlx_status)555;
}

static rlx_status prefill_with(const rlx_custom_def *def, const rlx_llama_config *c, const rlx_weights *w) {
    rlx_flow *f = llama_flow(c);
    cr_assert_eq(rlx_flow_custom(f, def, NULL, NULL), RLX_OK, "%s", rlx_last_error());
    rlx_model *m;
    rlx_status s = rlx_model_build(f, w, NULL, &m);
    if (s == RLX_OK) {
        rlx_session *ss;
        cr_assert_eq(rlx_session_create(m, &ss), RLX_OK);
        s = rlx_session_prefill(ss, tokens, 7, lens, 2, NULL);
        rlx_session_destroy(ss);
        rlx_model_destroy(m);
    }
    rlx_flow_destroy(f);
    return s;
}

Test(custom, unterminated_messages_are_bounded) {
    rlx_llama_config c = tiny_cfg();
    rlx_weights *w;
    cr_assert_eq(rlx_llama_random_weights(&c, 7, RLX_DTYPE_F32, &w), RLX_OK);
    rlx_custom_def def = {.name = "chatty", .shape = shape_fills_msg, .cpu = softcap_cpu};
    cr_expect_eq(prefill_with(&def, &c, w), RLX_ERR_SHAPE);
    cr_expect(strstr(rlx_last_error(), "stage chatty (custom op 'chatty'): the shape function refused input widths [64]: xxxx"), "%s",
              rlx_last_error());
    def = (rlx_custom_def){.name = "chatty", .shape = same_width, .cpu = cpu_fills_msg};
    cr_expect_eq(prefill_with(&def, &c, w), RLX_ERR_DEVICE);
    cr_expect(strstr(rlx_last_error(), "stage chatty (custom op 'chatty') on cpu: yyyy"), "%s", rlx_last_error());
    rlx_weights_destroy(w);
}

Test(custom, undefined_statuses_become_internal_errors_naming_the_stage) {
    rlx_llama_config c = tiny_cfg();
    rlx_weights *w;
    cr_assert_eq(rlx_llama_random_weights(&c, 7, RLX_DTYPE_F32, &w), RLX_OK);
    rlx_custom_def def = {.name = "liar", .shape = shape_bad_status, .cpu = softcap_cpu};
    cr_expect_eq(prefill_with(&def, &c, w), RLX_ERR_INTERNAL);
    cr_expect(strstr(rlx_last_error(), "stage liar (custom op 'liar'): the shape function returned 1234, which is not an rlx_status"),
              "%s", rlx_last_error());
    def = (rlx_custom_def){.name = "liar", .shape = same_width, .cpu = cpu_bad_status};
    cr_expect_eq(prefill_with(&def, &c, w), RLX_ERR_INTERNAL);
    cr_expect(strstr(rlx_last_error(), "stage liar (custom op 'liar') on cpu: the implementation returned -7, which is not an rlx_status"),
              "%s", rlx_last_error());
    /* the build callback and the flow's own callbacks too */
    rlx_flow *f = llama_flow(&c);
    def = (rlx_custom_def){.name = "liar", .shape = same_width, .cpu = softcap_cpu};
    cr_expect_eq(rlx_flow_custom(f, &def, build_bad_status, NULL), RLX_ERR_INTERNAL);
    cr_expect(strstr(rlx_last_error(), "custom stage 'liar': the build callback returned 99"), "%s", rlx_last_error());
    cr_expect_eq(rlx_flow_status(f), RLX_ERR_INTERNAL, "the failure is sticky");
    rlx_flow_destroy(f);
    rlx_flow_create("t", &f);
    rlx_flow_input_tokens(f, "tokens", 1, 4);
    cr_expect_eq(rlx_flow_layer(f, "odd", layer_bad_status, NULL), RLX_ERR_INTERNAL);
    cr_expect(strstr(rlx_last_error(), "layer 'odd': the callback returned 4242"), "%s", rlx_last_error());
    rlx_flow_destroy(f);
    rlx_flow_create("t", &f);
    cr_expect_eq(rlx_flow_when(f, 1, layer_bad_status, NULL), RLX_ERR_INTERNAL);
    cr_expect(strstr(rlx_last_error(), "when: the callback returned 4242"), "%s", rlx_last_error());
    rlx_flow_destroy(f);
    rlx_flow_create("t", &f);
    const rlx_layer_fn fns[1] = {layer_bad_status};
    cr_expect_eq(rlx_flow_sequence(f, fns, 1, NULL), RLX_ERR_INTERNAL);
    cr_expect(strstr(rlx_last_error(), "sequence: callback 0 returned 4242"), "%s", rlx_last_error());
    rlx_flow_destroy(f);
    rlx_llama_recipe_params rp = rlx_llama_recipe_default_params();
    rp.seq = 8;
    rp.layer = hook_bad_status;
    cr_expect_eq(rlx_llama_flow(&c, &rp, &f), RLX_ERR_INTERNAL);
    cr_expect(strstr(rlx_last_error(), "the layer hook returned 555 for layer 0"), "%s", rlx_last_error());
    rlx_weights_destroy(w);
}
