/* End to end against Hugging Face transformers: tiny random LLaMA checkpoints written by
 * transformers itself (tests/fixtures/gen_llama_fixtures.py), with the f32 logits it computed.
 * Bound (NUMERICS.md): max|Δ| / max|ref| ≤ 1e-4 and argmax equal at every position. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/npy.h"
#include "rlx/flow.h"
#include "testutil.h"

typedef struct hf_case {
    rlx_weights *w;
    rlx_llama_config cfg;
    int32_t *tokens;
    int64_t B, S;
    float *ref; /* [B, S, V] */
    int64_t V;
} hf_case;

static void load_case(const char *name, hf_case *c) {
    char dir[1024], path[1100];
    snprintf(dir, sizeof dir, "%s/llama/%s", rlxt_fixtures_dir(), name);
    rlx_status s = rlx_weights_open(dir, &c->w);
    cr_assert_eq(s, RLX_OK, "open %s: %s", dir, rlx_last_error());
    snprintf(path, sizeof path, "%s/config.json", dir);
    s = rlx_llama_config_parse(rlx_weights_config_json(c->w), path, &c->cfg);
    cr_assert_eq(s, RLX_OK, "config %s: %s", dir, rlx_last_error());
    snprintf(path, sizeof path, "%s/tokens.json", dir);
    json_error_t err;
    json_t *j = json_load_file(path, 0, &err);
    cr_assert(j, "%s: %s", path, err.text);
    json_t *rows = json_object_get(j, "tokens");
    c->B = (int64_t)json_array_size(rows);
    c->S = (int64_t)json_array_size(json_array_get(rows, 0));
    cr_assert(c->B > 0 && c->S > 0);
    c->tokens = malloc((size_t)(c->B * c->S) * sizeof(int32_t));
    for (int64_t b = 0; b < c->B; b++)
        for (int64_t t = 0; t < c->S; t++)
            c->tokens[b * c->S + t] = (int32_t)json_integer_value(json_array_get(json_array_get(rows, (size_t)b), (size_t)t));
    json_decref(j);
    snprintf(path, sizeof path, "%s/logits.npy", dir);
    int nd;
    int64_t shape[4];
    s = rlx__npy_read_f32(path, &c->ref, &nd, shape, 4);
    cr_assert_eq(s, RLX_OK, "%s", rlx_last_error());
    cr_assert(nd == 3 && shape[0] == c->B && shape[1] == c->S, "%s: unexpected shape", path);
    c->V = shape[2];
    cr_assert_eq(c->V, c->cfg.vocab_size);
}

static void free_case(hf_case *c) {
    rlx_weights_destroy(c->w);
    free(c->tokens);
    free(c->ref);
}

/* All-position logits [B·S, V] through the recipe. */
static float *run_case(const hf_case *c, int composed, rlx_llama_layer_hook hook) {
    rlx_llama_recipe_params p = rlx_llama_recipe_default_params();
    p.batch = c->B;
    p.seq = c->S;
    p.last_token_logits = 0;
    p.composed_layers = composed;
    p.layer = hook;
    rlx_flow *f;
    rlx_status s = rlx_llama_flow(&c->cfg, &p, &f);
    cr_assert_eq(s, RLX_OK, "flow: %s", rlx_last_error());
    rlx_model *m;
    s = rlx_model_build(f, c->w, NULL, &m);
    cr_assert_eq(s, RLX_OK, "build: %s", rlx_last_error());
    rlx_session *sess;
    cr_assert_eq(rlx_session_create(m, &sess), RLX_OK);
    int64_t lens[64];
    for (int64_t b = 0; b < c->B; b++) lens[b] = c->S;
    s = rlx_session_prefill(sess, c->tokens, c->B * c->S, lens, c->B, NULL);
    cr_assert_eq(s, RLX_OK, "prefill: %s", rlx_last_error());
    int64_t rows, cols;
    rlx_session_output_shape(sess, &rows, &cols);
    cr_assert(rows == c->B * c->S && cols == c->V);
    float *out = malloc((size_t)(rows * cols) * sizeof(float));
    cr_assert_eq(rlx_session_output_to_host(sess, out, (size_t)(rows * cols)), RLX_OK);
    rlx_session_destroy(sess);
    rlx_model_destroy(m);
    rlx_flow_destroy(f);
    return out;
}

static int64_t argmax(const float *x, int64_t n) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

static void check_against_hf(const char *name, const hf_case *c, const float *got) {
    const size_t n = (size_t)(c->B * c->S * c->V);
    double rel = rlxt_max_abs_diff(got, c->ref, n) / rlxt_max_abs(c->ref, n);
    cr_expect(rel <= 1e-4, "%s: max|d|/max|ref| = %.3g > 1e-4", name, rel);
    for (int64_t r = 0; r < c->B * c->S; r++) {
        int64_t a = argmax(got + r * c->V, c->V), b = argmax(c->ref + r * c->V, c->V);
        cr_expect_eq(a, b, "%s: row %lld (sequence %lld, position %lld): argmax %lld, transformers %lld", name, (long long)r,
                     (long long)(r / c->S), (long long)(r % c->S), (long long)a, (long long)b);
    }
}

static const char *cases[] = {"gqa_tied_f32",      "mqa_untied_bf16",   "llama3_scaling_f32", "head_dim_explicit_f32",
                              "sharded_bf16",      "legacy_config_f32", "f16",                "single_token_f32",
                              "legacy_buffers_f32"};

/* Criterion re-executes the binary for each test (addresses change under PIE), so the
 * parameter is an index into cases, not a pointer. */
static int case_ids[] = {0, 1, 2, 3, 4, 5, 6, 7, 8};

ParameterizedTestParameters(llama_hf, matches_transformers) {
    return cr_make_param_array(int, case_ids, sizeof case_ids / sizeof case_ids[0]);
}

ParameterizedTest(int *id, llama_hf, matches_transformers) {
    const char **name = &cases[*id];
    hf_case c = {0};
    load_case(*name, &c);
    float *got = run_case(&c, 0, NULL);
    check_against_hf(*name, &c, got);
    free(got);
    free_case(&c);
}

ParameterizedTestParameters(llama_hf, composed_equals_fused) {
    return cr_make_param_array(int, case_ids, sizeof case_ids / sizeof case_ids[0]);
}

/* Both layer forms expand to the same primitives: the logits must be identical. */
ParameterizedTest(int *id, llama_hf, composed_equals_fused) {
    const char **name = &cases[*id];
    hf_case c = {0};
    load_case(*name, &c);
    float *fused = run_case(&c, 0, NULL);
    float *composed = run_case(&c, 1, NULL);
    size_t n = (size_t)(c.B * c.S * c.V);
    cr_expect_eq(rlxt_max_abs_diff(fused, composed, n), 0.0, "%s: fused and composed layers differ", *name);
    check_against_hf(*name, &c, composed);
    free(fused);
    free(composed);
    free_case(&c);
}

static int hook_calls;
static rlx_status swap_layer0(rlx_flow *f, const rlx_llama_layer_ctx *ctx, void *user) {
    (void)user;
    hook_calls++;
    if (rlx_llama_layer_ctx_index(ctx) == 0) return rlx_flow_llama_layer_composed(f, 0, rlx_llama_layer_ctx_spec(ctx));
    return rlx_llama_layer_ctx_default(f, ctx);
}

Test(llama_hf, per_layer_hook_swaps_one_layer) {
    hf_case c = {0};
    load_case("gqa_tied_f32", &c);
    hook_calls = 0;
    float *got = run_case(&c, 0, swap_layer0);
    cr_expect_eq(hook_calls, c.cfg.num_hidden_layers);
    check_against_hf("gqa_tied_f32 with layer 0 composed", &c, got);
    free(got);
    free_case(&c);
}

/* Last-token logits equal the last row of each sequence's all-position logits. */
Test(llama_hf, last_token_logits) {
    hf_case c = {0};
    load_case("gqa_tied_f32", &c);
    rlx_llama_recipe_params p = rlx_llama_recipe_default_params();
    p.batch = c.B;
    p.seq = c.S;
    rlx_flow *f;
    cr_assert_eq(rlx_llama_flow(&c.cfg, &p, &f), RLX_OK);
    rlx_model *m;
    cr_assert_eq(rlx_model_build(f, c.w, NULL, &m), RLX_OK, "%s", rlx_last_error());
    cr_expect(rlx_model_output_per_sequence(m));
    rlx_session *sess;
    rlx_session_create(m, &sess);
    int64_t lens[2] = {c.S, c.S};
    cr_assert_eq(rlx_session_prefill(sess, c.tokens, c.B * c.S, lens, c.B, NULL), RLX_OK, "%s", rlx_last_error());
    float *out = malloc((size_t)(c.B * c.V) * sizeof(float));
    cr_assert_eq(rlx_session_output_to_host(sess, out, (size_t)(c.B * c.V)), RLX_OK);
    for (int64_t b = 0; b < c.B; b++) {
        const float *ref = c.ref + ((b + 1) * c.S - 1) * c.V;
        double rel = rlxt_max_abs_diff(out + b * c.V, ref, (size_t)c.V) / rlxt_max_abs(ref, (size_t)c.V);
        cr_expect(rel <= 1e-4, "sequence %lld: %.3g", (long long)b, rel);
    }
    free(out);
    rlx_session_destroy(sess);
    rlx_model_destroy(m);
    rlx_flow_destroy(f);
    free_case(&c);
}

/* Prompts of different lengths in one prefill give each prompt's own logits. */
Test(llama_hf, ragged_batch_matches_separate_runs) {
    hf_case c = {0};
    load_case("gqa_tied_f32", &c);
    rlx_llama_recipe_params p = rlx_llama_recipe_default_params();
    p.batch = 2;
    p.seq = c.S;
    p.last_token_logits = 0;
    rlx_flow *f;
    cr_assert_eq(rlx_llama_flow(&c.cfg, &p, &f), RLX_OK);
    rlx_model *m;
    cr_assert_eq(rlx_model_build(f, c.w, NULL, &m), RLX_OK, "%s", rlx_last_error());
    rlx_session *sess;
    rlx_session_create(m, &sess);
    /* sequence 0 = first 3 tokens of prompt 0; sequence 1 = all of prompt 1 */
    int32_t toks[64];
    for (int i = 0; i < 3; i++) toks[i] = c.tokens[i];
    for (int64_t i = 0; i < c.S; i++) toks[3 + i] = c.tokens[c.S + i];
    int64_t lens[2] = {3, c.S};
    cr_assert_eq(rlx_session_prefill(sess, toks, 3 + c.S, lens, 2, NULL), RLX_OK, "%s", rlx_last_error());
    float *out = malloc((size_t)((3 + c.S) * c.V) * sizeof(float));
    cr_assert_eq(rlx_session_output_to_host(sess, out, (size_t)((3 + c.S) * c.V)), RLX_OK);
    /* causal: the first 3 positions of prompt 0 do not depend on what follows */
    double rel0 = rlxt_max_abs_diff(out, c.ref, (size_t)(3 * c.V)) / rlxt_max_abs(c.ref, (size_t)(3 * c.V));
    double rel1 = rlxt_max_abs_diff(out + 3 * c.V, c.ref + c.S * c.V, (size_t)(c.S * c.V)) / rlxt_max_abs(c.ref + c.S * c.V, (size_t)(c.S * c.V));
    cr_expect(rel0 <= 1e-4 && rel1 <= 1e-4, "ragged batch: %.3g %.3g", rel0, rel1);
    free(out);
    rlx_session_destroy(sess);
    rlx_model_destroy(m);
    rlx_flow_destroy(f);
    free_case(&c);
}

/* transformers < 4.31 saved RoPE's inv_freq in every layer: the checkpoint opens, runs (above),
 * and the build names the buffers as tensors no stage reads; `rlx plan` lists them. */
Test(llama_hf, legacy_inv_freq_buffers_are_unused) {
    hf_case c = {0};
    load_case("legacy_buffers_f32", &c);
    rlx_llama_recipe_params p = rlx_llama_recipe_default_params();
    p.seq = c.S;
    rlx_flow *f;
    cr_assert_eq(rlx_llama_flow(&c.cfg, &p, &f), RLX_OK);
    rlx_model *m;
    cr_assert_eq(rlx_model_build(f, c.w, NULL, &m), RLX_OK, "%s", rlx_last_error());
    cr_assert_eq(rlx_model_unused_tensor_count(m), 2);
    cr_expect_str_eq(rlx_model_unused_tensor(m, 0), "model.layers.0.self_attn.rotary_emb.inv_freq");
    cr_expect_str_eq(rlx_model_unused_tensor(m, 1), "model.layers.1.self_attn.rotary_emb.inv_freq");
    cr_expect_null(rlx_model_unused_tensor(m, 2));
    cr_expect_null(rlx_model_unused_tensor(m, -1));
    cr_expect_eq(rlx_model_unused_tensor_count(NULL), 0);
    cr_expect_null(rlx_model_unused_tensor(NULL, 0));
    rlx_model_destroy(m);
    rlx_flow_destroy(f);
    free_case(&c);

    char args[1200], out[1 << 16], err[4096];
    snprintf(args, sizeof args, "plan --model %s/llama/legacy_buffers_f32 --seq 8", rlxt_fixtures_dir());
    int rc = rlxt_run_cli(NULL, args, out, sizeof out, err, sizeof err);
    cr_assert_eq(rc, 0, "rlx %s: %s", args, err);
    cr_expect(strstr(out, "unused tensors (2): in the checkpoint, read by no stage\n"
                          "  model.layers.0.self_attn.rotary_emb.inv_freq F32 [4]\n"
                          "  model.layers.1.self_attn.rotary_emb.inv_freq F32 [4]\n"),
              "%s", out);
}

/* Old checkpoints' masks and buffers in other types (bool causal masks, f32 masked_bias, int64
 * position ids) do not stop a build; a tensor a stage needs in such a type is refused by name. */
Test(llama_hf, non_float_tensors_held_unused_refused_when_read) {
    rlx_llama_config cfg;
    cr_assert_eq(rlx_llama_builtin_config("tiny", &cfg), RLX_OK);
    cfg.num_hidden_layers = 1;
    rlx_weights *w;
    cr_assert_eq(rlx_llama_random_weights(&cfg, 5, RLX_DTYPE_BF16, &w), RLX_OK);
    unsigned char mask[16] = {1, 0, 0, 0, 1, 1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 1};
    int64_t mshape[4] = {1, 1, 4, 4}, one[1] = {1}, pshape[2] = {1, 4};
    float masked = -1e4f;
    int64_t pos[4] = {0, 1, 2, 3};
    cr_assert_eq(rlx_weights_add(w, "model.layers.0.self_attn.bias", RLX_DTYPE_BOOL, 4, mshape, mask), RLX_OK);
    cr_assert_eq(rlx_weights_add(w, "model.layers.0.self_attn.masked_bias", RLX_DTYPE_F32, 1, one, &masked), RLX_OK);
    cr_assert_eq(rlx_weights_add(w, "model.position_ids", RLX_DTYPE_I64, 2, pshape, pos), RLX_OK);
    rlx_llama_recipe_params p = rlx_llama_recipe_default_params();
    p.seq = 8;
    rlx_flow *f;
    cr_assert_eq(rlx_llama_flow(&cfg, &p, &f), RLX_OK);
    rlx_model *m;
    cr_assert_eq(rlx_model_build(f, w, NULL, &m), RLX_OK, "%s", rlx_last_error());
    cr_expect_eq(rlx_model_unused_tensor_count(m), 3);
    cr_expect_str_eq(rlx_model_unused_tensor(m, 0), "model.layers.0.self_attn.bias");
    cr_expect_str_eq(rlx_model_unused_tensor(m, 1), "model.layers.0.self_attn.masked_bias");
    cr_expect_str_eq(rlx_model_unused_tensor(m, 2), "model.position_ids");
    int32_t tok[3] = {1, 2, 3};
    rlx_session *s;
    cr_assert_eq(rlx_session_create(m, &s), RLX_OK);
    cr_expect_eq(rlx_session_prefill(s, tok, 3, NULL, 1, NULL), RLX_OK, "%s", rlx_last_error());
    rlx_session_destroy(s);
    rlx_model_destroy(m);

    /* the same set with the final norm stored as int64: refused, naming tensor and type */
    rlx_weights *w2;
    cr_assert_eq(rlx_weights_create(&w2), RLX_OK);
    cr_assert_eq(rlx_weights_set_config_json(w2, rlx_weights_config_json(w)), RLX_OK);
    for (size_t i = 0; i < rlx_weights_count(w); i++) {
        rlx_tensor_view v;
        cr_assert_eq(rlx_weights_at(w, i, &v), RLX_OK);
        if (!strcmp(v.name, "model.norm.weight")) {
            int64_t *ids = calloc((size_t)v.shape[0], sizeof *ids);
            cr_assert_eq(rlx_weights_add(w2, v.name, RLX_DTYPE_I64, 1, v.shape, ids), RLX_OK);
            free(ids);
        } else {
            cr_assert_eq(rlx_weights_add(w2, v.name, v.dtype, v.ndim, v.shape, v.data), RLX_OK);
        }
    }
    m = (rlx_model *)1;
    cr_expect_eq(rlx_model_build(f, w2, NULL, &m), RLX_ERR_UNSUPPORTED);
    cr_expect_null(m);
    cr_expect(strstr(rlx_last_error(), "weight 'model.norm.weight'") && strstr(rlx_last_error(), "stored as I64") &&
                  strstr(rlx_last_error(), "F32, F16 and BF16"),
              "%s", rlx_last_error());
    rlx_weights_destroy(w2);
    rlx_flow_destroy(f);
    rlx_weights_destroy(w);
}
