/* API misuse: NULL for every pointer parameter of every public function (the headers in include/rlx/),
 * out-of-range enums, handles destroyed in every order, outputs before and after failed
 * prefills. Every case gives its documented status and a message naming the function or the
 * rule (rlx_last_error); functions without a status return their documented neutral value.
 *
 * Adding a public function: add its cases to MISUSE_CASES below (or to a
 * tests/test-misuse-<area>.c beside this file); misuse/every_public_function_has_a_case fails
 * for a function named in a header and in no test-misuse*.c. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rlx/custom.h"
#include "rlx/dist.h"
#include "rlx/encoder.h"
#include "rlx/flow.h"
#include "rlx/profile.h"
#include "rlx/tokenizer.h"
#include "testutil.h"

/* ---- the fixture: a one-layer LLaMA on the CPU, a session, scratch outputs ----------------------- */

typedef struct fx {
    rlx_llama_config cfg;
    rlx_weights *w;
    rlx_flow *flow;
    rlx_model *model;
    rlx_session *s;
    rlx_encoder_config ecfg;
    rlx_profile prof;
    /* what the calls under test write */
    rlx_weights *ow;
    rlx_flow *of;
    rlx_model *om;
    rlx_session *os;
    char *text;
    rlx_tensor_view v;
    int slot;
    int64_t rows, cols, n;
    float out[4096];
    int32_t ids[32];
    int64_t lens[4];
    char *dir;
    rlx_st_pipeline st;
} fx;

static const int32_t TOKENS[4] = {1, 2, 3, 4};

static void fx_setup(fx *f) {
    memset(f, 0, sizeof *f);
    f->cfg = (rlx_llama_config){.vocab_size = 64, .hidden_size = 32, .intermediate_size = 64, .num_hidden_layers = 1,
                                .num_attention_heads = 4, .num_key_value_heads = 2, .head_dim = 8, .rms_norm_eps = 1e-5,
                                .max_position_embeddings = 64, .tie_word_embeddings = 1,
                                .rope = {.head_dim = 8, .max_positions = 64, .theta = 10000}};
    cr_assert_eq(rlx_llama_random_weights(&f->cfg, 7, RLX_DTYPE_F32, &f->w), RLX_OK, "%s", rlx_last_error());
    rlx_llama_recipe_params rp = rlx_llama_recipe_default_params();
    rp.batch = 2;
    rp.seq = 8;
    cr_assert_eq(rlx_llama_flow(&f->cfg, &rp, &f->flow), RLX_OK, "%s", rlx_last_error());
    rlx_build_params bp = rlx_build_default_params();
    bp.threads = 1;
    cr_assert_eq(rlx_model_build(f->flow, f->w, &bp, &f->model), RLX_OK, "%s", rlx_last_error());
    cr_assert_eq(rlx_session_create(f->model, &f->s), RLX_OK, "%s", rlx_last_error());
    f->ecfg = (rlx_encoder_config){.arch = RLX_ENCODER_BERT, .vocab_size = 64, .hidden_size = 32, .intermediate_size = 64,
                                   .num_hidden_layers = 1, .num_attention_heads = 4, .type_vocab_size = 2,
                                   .max_position_embeddings = 64, .layer_norm_eps = 1e-12, .qkv_bias = 1, .mlp_fc1_bias = 1,
                                   .mlp_fc2_bias = 1};
    rlx_profile_preset("prefill", &f->prof);
    f->dir = rlxt_tmpdir();
}

static void fx_teardown(fx *f) {
    rlx_session_destroy(f->os);
    rlx_model_destroy(f->om);
    rlx_flow_destroy(f->of);
    rlx_weights_destroy(f->ow);
    rlx_free(f->text);
    rlx_session_destroy(f->s);
    rlx_model_destroy(f->model);
    rlx_flow_destroy(f->flow);
    rlx_weights_destroy(f->w);
    rlxt_rmtree(f->dir);
    free(f->dir);
}

/* Status of a call that returns a value instead: RLX_OK when it is the documented one. */
#define VALUE_IS(expr, want) ((expr) == (want) ? RLX_OK : RLX_ERR_INTERNAL)
#define STR_IS(expr, want) (!strcmp((expr), (want)) ? RLX_OK : RLX_ERR_INTERNAL)
#define NO_STATUS(stmt) ((stmt), RLX_OK)

/* Callbacks the cases hand to the library. */
static rlx_status layer_ok(rlx_flow *flow, void *user) {
    (void)user;
    return rlx_flow_gelu(flow);
}
static rlx_status repeat_ok(rlx_flow *flow, int64_t i, void *user) {
    (void)i;
    (void)user;
    return rlx_flow_gelu(flow);
}
static rlx_status shape_same(rlx_custom_shape_args *a) {
    a->out_cols[0] = a->in_cols[0];
    return RLX_OK;
}
static rlx_status cpu_copy(const rlx_custom_args *a) {
    memcpy(a->out[0], a->in[0], (size_t)a->rows * (size_t)a->out_cols[0] * sizeof(float));
    return RLX_OK;
}
/* Build callbacks that misuse the ctx functions; the status comes back from rlx_flow_custom. */
static rlx_status build_weight_null_key(rlx_custom_ctx *c, void *u) { return rlx_custom_weight(c, NULL, u); }
static rlx_status build_weight_null_slot(rlx_custom_ctx *c, void *u) { (void)u; return rlx_custom_weight(c, "k", NULL); }
static rlx_status build_param_null_data(rlx_custom_ctx *c, void *u) { return rlx_custom_param(c, NULL, 1, 1, NULL, u); }
static rlx_status build_param_bad_shape(rlx_custom_ctx *c, void *u) {
    static const float one = 1;
    return rlx_custom_param(c, NULL, 0, 1, &one, u);
}
static rlx_status build_param_null_slot(rlx_custom_ctx *c, void *u) {
    static const float one = 1;
    (void)u;
    return rlx_custom_param(c, NULL, 1, 1, &one, NULL);
}
static rlx_status build_input_null_name(rlx_custom_ctx *c, void *u) { return rlx_custom_input(c, NULL, u); }
static rlx_status build_input_null_slot(rlx_custom_ctx *c, void *u) { (void)u; return rlx_custom_input(c, "tokens", NULL); }
static rlx_status build_output_null_name(rlx_custom_ctx *c, void *u) { return rlx_custom_output(c, NULL, u); }
static rlx_status build_output_null_slot(rlx_custom_ctx *c, void *u) { (void)u; return rlx_custom_output(c, "o", NULL); }
static rlx_status build_ctx_names(rlx_custom_ctx *c, void *u) {
    (void)u;
    return rlx_custom_ctx_flow(c) && *rlx_custom_ctx_stage_name(c) ? RLX_OK : RLX_ERR_INTERNAL;
}

/* A flow whose cursor is an activation, for the encoder and custom blocks. */
static rlx_flow *act_flow(fx *f) {
    cr_assert_eq(rlx_flow_create("misuse", &f->of), RLX_OK);
    rlx_flow_input_tokens(f->of, "tokens", 1, 4);
    rlx_flow_token_embed(f->of, NULL);
    return f->of;
}

static rlx_status new_flow(fx *f) { return rlx_flow_create("misuse", &f->of); }

static rlx_status custom_with(fx *f, rlx_custom_build_fn build) {
    rlx_custom_def def = {.name = "probe", .shape = shape_same, .cpu = cpu_copy};
    return rlx_flow_custom(act_flow(f), &def, build, &f->slot);
}

static rlx_status prefill_ok(fx *f) { return rlx_session_prefill(f->s, TOKENS, 4, NULL, 1, NULL); }
static rlx_status prefill_bad_token(fx *f) {
    static const int32_t bad[2] = {1, 999};
    return rlx_session_prefill(f->s, bad, 2, NULL, 1, NULL);
}

/* ---- the table: X(id, expected status, message needle or NULL, expression) ------------------------
 * The expression runs on a fresh fixture `f`. A needle is required for every failing status. */
#define MISUSE_CASES(X)                                                                                                     \
    /* rlx.h */                                                                                                             \
    X(status_string_unknown, RLX_OK, NULL, STR_IS(rlx_status_string((rlx_status)999), "unknown status"))                   \
    X(status_name_unknown, RLX_OK, NULL, STR_IS(rlx_status_name((rlx_status)-1), "RLX_ERR_UNKNOWN"))                        \
    X(last_error_never_null, RLX_OK, NULL, VALUE_IS(rlx_last_error() != NULL, 1))                                          \
    X(clear_error, RLX_OK, NULL, NO_STATUS(rlx_clear_error()))                                                              \
    X(version_string, RLX_OK, NULL, VALUE_IS(rlx_version_string() != NULL, 1))                                             \
    X(dtype_name_unknown, RLX_OK, NULL, STR_IS(rlx_dtype_name((rlx_dtype)99), "?"))                                        \
    X(dtype_size_unknown, RLX_OK, NULL, VALUE_IS(rlx_dtype_size((rlx_dtype)99), 0))                                        \
    X(dtype_is_float_weight_unknown, RLX_OK, NULL, VALUE_IS(rlx_dtype_is_float_weight((rlx_dtype)99), 0))                  \
    /* weights.h */                                                                                                         \
    X(weights_open_null_dir, RLX_ERR_INVALID_ARGUMENT, "rlx_weights_open", rlx_weights_open(NULL, &f->ow))                 \
    X(weights_open_null_out, RLX_ERR_INVALID_ARGUMENT, "rlx_weights_open", rlx_weights_open(f->dir, NULL))                 \
    X(weights_open_file_null_path, RLX_ERR_INVALID_ARGUMENT, "rlx_weights_open_file", rlx_weights_open_file(NULL, &f->ow)) \
    X(weights_open_file_null_out, RLX_ERR_INVALID_ARGUMENT, "rlx_weights_open_file", rlx_weights_open_file("x", NULL))     \
    X(weights_open_default_params, RLX_OK, NULL, VALUE_IS(rlx_weights_open_default_params().read_into_memory, 0))          \
    X(weights_open_ex_null_path, RLX_ERR_INVALID_ARGUMENT, "rlx_weights_open_ex", rlx_weights_open_ex(NULL, NULL, &f->ow)) \
    X(weights_open_ex_null_out, RLX_ERR_INVALID_ARGUMENT, "rlx_weights_open_ex", rlx_weights_open_ex(f->dir, NULL, NULL))  \
    X(weights_open_ex_missing_path, RLX_ERR_IO, "nope", rlx_weights_open_ex("/nope/nope", NULL, &f->ow))                   \
    X(weights_open_ex_bad_flag, RLX_ERR_INVALID_ARGUMENT, "check_finite",                                                  \
      rlx_weights_open_ex(f->dir, &(rlx_weights_open_params){.check_finite = 7}, &f->ow))                                  \
    X(weights_check_finite_null, RLX_ERR_INVALID_ARGUMENT, "rlx_weights_check_finite", rlx_weights_check_finite(NULL))     \
    X(weights_check_finite_ok, RLX_OK, NULL, rlx_weights_check_finite(f->w))                                               \
    X(weights_create_null_out, RLX_ERR_INVALID_ARGUMENT, "rlx_weights_create", rlx_weights_create(NULL))                   \
    X(weights_add_null_set, RLX_ERR_INVALID_ARGUMENT, "rlx_weights_add",                                                   \
      rlx_weights_add(NULL, "a", RLX_DTYPE_F32, 1, (int64_t[]){1}, (float[]){1}))                                          \
    X(weights_add_null_name, RLX_ERR_INVALID_ARGUMENT, "name",                                                             \
      rlx_weights_add(f->w, NULL, RLX_DTYPE_F32, 1, (int64_t[]){1}, (float[]){1}))                                         \
    X(weights_add_null_shape, RLX_ERR_SHAPE, "shape", rlx_weights_add(f->w, "a", RLX_DTYPE_F32, 1, NULL, (float[]){1}))     \
    X(weights_add_null_data, RLX_ERR_INVALID_ARGUMENT, "data", rlx_weights_add(f->w, "a", RLX_DTYPE_F32, 1, (int64_t[]){2}, NULL)) \
    X(weights_add_bad_dtype, RLX_ERR_UNSUPPORTED, "dtype", rlx_weights_add(f->w, "a", (rlx_dtype)99, 1, (int64_t[]){1}, (float[]){1})) \
    X(weights_add_bad_ndim, RLX_ERR_SHAPE, "ndim", rlx_weights_add(f->w, "a", RLX_DTYPE_F32, 9, (int64_t[9]){1}, (float[]){1})) \
    X(weights_add_negative_ndim, RLX_ERR_SHAPE, "ndim", rlx_weights_add(f->w, "a", RLX_DTYPE_F32, -1, (int64_t[]){1}, (float[]){1})) \
    X(weights_set_config_null_set, RLX_ERR_INVALID_ARGUMENT, "rlx_weights_set_config_json", rlx_weights_set_config_json(NULL, "{}")) \
    X(weights_set_config_null_text_removes, RLX_OK, NULL, rlx_weights_set_config_json(f->w, NULL))                         \
    X(weights_destroy_null, RLX_OK, NULL, NO_STATUS(rlx_weights_destroy(NULL)))                                            \
    X(weights_get_null_set, RLX_ERR_INVALID_ARGUMENT, "rlx_weights_get", rlx_weights_get(NULL, "a", &f->v))                \
    X(weights_get_null_name, RLX_ERR_INVALID_ARGUMENT, "rlx_weights_get", rlx_weights_get(f->w, NULL, &f->v))              \
    X(weights_get_null_out, RLX_ERR_INVALID_ARGUMENT, "rlx_weights_get", rlx_weights_get(f->w, "model.norm.weight", NULL)) \
    X(weights_get_missing, RLX_ERR_MISSING_WEIGHT, "nope", rlx_weights_get(f->w, "nope", &f->v))                           \
    X(weights_has_null_set, RLX_OK, NULL, VALUE_IS(rlx_weights_has(NULL, "a", &f->v), 0))                                  \
    X(weights_has_null_name, RLX_OK, NULL, VALUE_IS(rlx_weights_has(f->w, NULL, &f->v), 0))                                \
    X(weights_has_null_out, RLX_OK, NULL, VALUE_IS(rlx_weights_has(f->w, "model.norm.weight", NULL), 1))                   \
    X(weights_count_null, RLX_OK, NULL, VALUE_IS(rlx_weights_count(NULL), 0))                                              \
    X(weights_at_null_set, RLX_ERR_INVALID_ARGUMENT, "rlx_weights_at", rlx_weights_at(NULL, 0, &f->v))                     \
    X(weights_at_null_out, RLX_ERR_INVALID_ARGUMENT, "rlx_weights_at", rlx_weights_at(f->w, 0, NULL))                      \
    X(weights_at_out_of_range, RLX_ERR_INVALID_ARGUMENT, "rlx_weights_at", rlx_weights_at(f->w, 1000000, &f->v))           \
    X(weights_dir_null, RLX_OK, NULL, VALUE_IS(rlx_weights_dir(NULL), NULL))                                               \
    X(weights_config_json_null, RLX_OK, NULL, VALUE_IS(rlx_weights_config_json(NULL), NULL))                               \
    X(weights_save_file_null_set, RLX_ERR_INVALID_ARGUMENT, "rlx_weights_save_file", rlx_weights_save_file(NULL, "x"))     \
    X(weights_save_file_null_path, RLX_ERR_INVALID_ARGUMENT, "rlx_weights_save_file", rlx_weights_save_file(f->w, NULL))   \
    X(weights_save_dir_null_set, RLX_ERR_INVALID_ARGUMENT, "rlx_weights_save_dir", rlx_weights_save_dir(NULL, f->dir))     \
    X(weights_save_dir_null_dir, RLX_ERR_INVALID_ARGUMENT, "rlx_weights_save_dir", rlx_weights_save_dir(f->w, NULL))       \
    X(convert_null_buffers, RLX_OK, NULL, NO_STATUS(rlx_convert_to_f32(NULL, NULL, RLX_DTYPE_F32, 4)))                     \
    X(convert_unknown_dtype_is_nan, RLX_OK, NULL,                                                                          \
      (rlx_convert_to_f32(f->out, TOKENS, (rlx_dtype)99, 2), VALUE_IS(isnan(f->out[0]) && isnan(f->out[1]), 1)))  \
    X(bf16_round_trip, RLX_OK, NULL, VALUE_IS(rlx_bf16_to_f32(rlx_f32_to_bf16(1.5f)), 1.5f))                               \
    X(f16_round_trip, RLX_OK, NULL, VALUE_IS(rlx_f16_to_f32(rlx_f32_to_f16(-2.0f)), -2.0f))                                \
    /* flow.h: flows */                                                                                                     \
    X(flow_create_null_out, RLX_ERR_INVALID_ARGUMENT, "rlx_flow_create", rlx_flow_create("x", NULL))                       \
    X(flow_create_null_name, RLX_OK, NULL, rlx_flow_create(NULL, &f->of))                                                  \
    X(flow_destroy_null, RLX_OK, NULL, NO_STATUS(rlx_flow_destroy(NULL)))                                                  \
    X(flow_status_null, RLX_ERR_INVALID_ARGUMENT, "rlx_flow_status", rlx_flow_status(NULL))                                \
    X(flow_name_null, RLX_OK, NULL, STR_IS(rlx_flow_name(NULL), ""))                                                       \
    X(flow_input_tokens_null, RLX_ERR_INVALID_ARGUMENT, "rlx_flow_input_tokens", rlx_flow_input_tokens(NULL, "t", 1, 1))   \
    X(flow_input_tokens_capacity, RLX_ERR_INVALID_ARGUMENT, "capacity", new_flow(f) ? RLX_ERR_INTERNAL : rlx_flow_input_tokens(f->of, NULL, 0, 1)) \
    X(flow_rope_tables_null_flow, RLX_ERR_INVALID_ARGUMENT, "rlx_flow_rope_tables", rlx_flow_rope_tables(NULL, &f->cfg.rope)) \
    X(flow_rope_tables_null_params, RLX_ERR_INVALID_ARGUMENT, "rope_tables", rlx_flow_rope_tables(act_flow(f), NULL))      \
    X(flow_rope_tables_bad_scaling, RLX_ERR_INVALID_ARGUMENT, "scaling",                                                    \
      rlx_flow_rope_tables(act_flow(f), &(rlx_rope_params){.head_dim = 8, .max_positions = 8, .theta = 1e4, .scaling = (rlx_rope_scaling)7})) \
    X(flow_token_embed_null, RLX_ERR_INVALID_ARGUMENT, "rlx_flow_token_embed", rlx_flow_token_embed(NULL, NULL))           \
    X(flow_rms_norm_null_flow, RLX_ERR_INVALID_ARGUMENT, "rlx_flow_rms_norm", rlx_flow_rms_norm(NULL, "k", 1e-5))          \
    X(flow_rms_norm_null_key, RLX_ERR_INVALID_ARGUMENT, "rms_norm", rlx_flow_rms_norm(act_flow(f), NULL, 1e-5))            \
    X(flow_final_norm_null, RLX_ERR_INVALID_ARGUMENT, "rlx_flow_final_norm", rlx_flow_final_norm(NULL, 1e-5))              \
    X(flow_linear_null_flow, RLX_ERR_INVALID_ARGUMENT, "rlx_flow_linear", rlx_flow_linear(NULL, "k", NULL))                \
    X(flow_linear_null_key, RLX_ERR_INVALID_ARGUMENT, "linear", rlx_flow_linear(act_flow(f), NULL, NULL))                  \
    X(flow_residual_save_null, RLX_ERR_INVALID_ARGUMENT, "rlx_flow_residual_save", rlx_flow_residual_save(NULL))           \
    X(flow_residual_add_null, RLX_ERR_INVALID_ARGUMENT, "rlx_flow_residual_add", rlx_flow_residual_add(NULL))              \
    X(flow_self_attn_null_flow, RLX_ERR_INVALID_ARGUMENT, "rlx_flow_self_attn_prefill", rlx_flow_self_attn_prefill(NULL, NULL)) \
    X(flow_self_attn_null_spec, RLX_ERR_INVALID_ARGUMENT, "self_attn_prefill", rlx_flow_self_attn_prefill(act_flow(f), NULL)) \
    X(flow_self_attn_null_prefix, RLX_ERR_INVALID_ARGUMENT, "self_attn_prefill",                                            \
      rlx_flow_self_attn_prefill(act_flow(f), &(rlx_attn_spec){.heads = 4, .kv_heads = 2, .head_dim = 8}))                  \
    X(flow_swiglu_null_flow, RLX_ERR_INVALID_ARGUMENT, "rlx_flow_swiglu", rlx_flow_swiglu(NULL, "p"))                      \
    X(flow_swiglu_null_prefix, RLX_ERR_INVALID_ARGUMENT, "swiglu", rlx_flow_swiglu(act_flow(f), NULL))                     \
    X(flow_last_token_null, RLX_ERR_INVALID_ARGUMENT, "rlx_flow_last_token", rlx_flow_last_token(NULL))                    \
    X(flow_lm_head_null, RLX_ERR_INVALID_ARGUMENT, "rlx_flow_lm_head", rlx_flow_lm_head(NULL, 4, 4, 0))                    \
    X(flow_layer_null_flow, RLX_ERR_INVALID_ARGUMENT, "rlx_flow_layer", rlx_flow_layer(NULL, "x", layer_ok, NULL))         \
    X(flow_layer_null_name, RLX_ERR_INVALID_ARGUMENT, "layer", rlx_flow_layer(act_flow(f), NULL, layer_ok, NULL))          \
    X(flow_layer_null_fn, RLX_ERR_INVALID_ARGUMENT, "layer", rlx_flow_layer(act_flow(f), "x", NULL, NULL))                 \
    X(flow_repeat_null_flow, RLX_ERR_INVALID_ARGUMENT, "rlx_flow_repeat_layers", rlx_flow_repeat_layers(NULL, 1, repeat_ok, NULL)) \
    X(flow_repeat_null_fn, RLX_ERR_INVALID_ARGUMENT, "repeat_layers", rlx_flow_repeat_layers(act_flow(f), 1, NULL, NULL))  \
    X(flow_repeat_negative, RLX_ERR_INVALID_ARGUMENT, "repeat_layers", rlx_flow_repeat_layers(act_flow(f), -1, repeat_ok, NULL)) \
    X(flow_llama_fused_null_flow, RLX_ERR_INVALID_ARGUMENT, "rlx_flow_llama_layer_fused", rlx_flow_llama_layer_fused(NULL, 0, NULL)) \
    X(flow_llama_fused_null_spec, RLX_ERR_INVALID_ARGUMENT, "spec", rlx_flow_llama_layer_fused(act_flow(f), 0, NULL))      \
    X(flow_llama_composed_null_flow, RLX_ERR_INVALID_ARGUMENT, "rlx_flow_llama_layer_composed", rlx_flow_llama_layer_composed(NULL, 0, NULL)) \
    X(flow_llama_composed_null_spec, RLX_ERR_INVALID_ARGUMENT, "spec", rlx_flow_llama_layer_composed(act_flow(f), 0, NULL)) \
    X(flow_stage_count_null, RLX_OK, NULL, VALUE_IS(rlx_flow_stage_count(NULL), 0))                                        \
    X(flow_format_null_flow, RLX_ERR_INVALID_ARGUMENT, "rlx_flow_format", rlx_flow_format(NULL, &f->text))                 \
    X(flow_format_null_out, RLX_ERR_INVALID_ARGUMENT, "rlx_flow_format", rlx_flow_format(f->flow, NULL))                   \
    X(free_null, RLX_OK, NULL, NO_STATUS(rlx_free(NULL)))                                                                   \
    /* flow.h: the Llama32 recipe */                                                                                        \
    X(layer_ctx_index_null, RLX_OK, NULL, VALUE_IS(rlx_llama_layer_ctx_index(NULL), -1))                                   \
    X(layer_ctx_spec_null, RLX_OK, NULL, VALUE_IS(rlx_llama_layer_ctx_spec(NULL), NULL))                                   \
    X(layer_ctx_default_null, RLX_ERR_INVALID_ARGUMENT, "rlx_llama_layer_ctx_default", rlx_llama_layer_ctx_default(act_flow(f), NULL)) \
    X(recipe_default_params, RLX_OK, NULL, VALUE_IS(rlx_llama_recipe_default_params().batch, 1))                           \
    X(llama_flow_null_cfg, RLX_ERR_INVALID_ARGUMENT, "rlx_llama_flow", rlx_llama_flow(NULL, NULL, &f->of))                 \
    X(llama_flow_null_out, RLX_ERR_INVALID_ARGUMENT, "rlx_llama_flow", rlx_llama_flow(&f->cfg, NULL, NULL))                \
    X(llama_flow_null_params_default, RLX_ERR_INVALID_ARGUMENT, "seq 128", rlx_llama_flow(&f->cfg, NULL, &f->of))           \
    X(builtin_config_null_name, RLX_ERR_INVALID_ARGUMENT, "rlx_llama_builtin_config", rlx_llama_builtin_config(NULL, &f->cfg)) \
    X(builtin_config_null_out, RLX_ERR_INVALID_ARGUMENT, "rlx_llama_builtin_config", rlx_llama_builtin_config("tiny", NULL)) \
    X(builtin_config_unknown, RLX_ERR_INVALID_ARGUMENT, "nope", rlx_llama_builtin_config("nope", &f->cfg))                 \
    X(random_weights_null_cfg, RLX_ERR_INVALID_ARGUMENT, "rlx_llama_random_weights", rlx_llama_random_weights(NULL, 1, RLX_DTYPE_F32, &f->ow)) \
    X(random_weights_null_out, RLX_ERR_INVALID_ARGUMENT, "rlx_llama_random_weights", rlx_llama_random_weights(&f->cfg, 1, RLX_DTYPE_F32, NULL)) \
    X(random_weights_bad_dtype, RLX_ERR_UNSUPPORTED, "dtype", rlx_llama_random_weights(&f->cfg, 1, (rlx_dtype)99, &f->ow)) \
    X(config_to_json_null_cfg, RLX_ERR_INVALID_ARGUMENT, "rlx_llama_config_to_json", rlx_llama_config_to_json(NULL, &f->text)) \
    X(config_to_json_null_out, RLX_ERR_INVALID_ARGUMENT, "rlx_llama_config_to_json", rlx_llama_config_to_json(&f->cfg, NULL)) \
    /* flow.h: models and sessions */                                                                                       \
    X(device_kind_name_unknown, RLX_OK, NULL, STR_IS(rlx_device_kind_name((rlx_device_kind)99), "?"))                     \
    X(build_default_params, RLX_OK, NULL, VALUE_IS(rlx_build_default_params().device, RLX_DEVICE_CPU))                     \
    X(model_build_null_flow, RLX_ERR_INVALID_ARGUMENT, "rlx_model_build", rlx_model_build(NULL, f->w, NULL, &f->om))       \
    X(model_build_null_weights, RLX_ERR_INVALID_ARGUMENT, "rlx_model_build", rlx_model_build(f->flow, NULL, NULL, &f->om)) \
    X(model_build_null_out, RLX_ERR_INVALID_ARGUMENT, "rlx_model_build", rlx_model_build(f->flow, f->w, NULL, NULL))       \
    X(model_build_null_params_default, RLX_OK, NULL, rlx_model_build(f->flow, f->w, NULL, &f->om))                         \
    X(model_build_bad_device, RLX_ERR_INVALID_ARGUMENT, "device",                                                          \
      rlx_model_build(f->flow, f->w, &(rlx_build_params){.device = (rlx_device_kind)9}, &f->om))                          \
    X(model_build_bad_fusion, RLX_ERR_INVALID_ARGUMENT, "fusion",                                                          \
      rlx_model_build(f->flow, f->w, &(rlx_build_params){.device = RLX_DEVICE_CPU, .fusion = (rlx_fusion_policy)9}, &f->om)) \
    X(model_build_bad_precision, RLX_ERR_UNSUPPORTED, "precision",                                                         \
      rlx_model_build(f->flow, f->w, &(rlx_build_params){.device = RLX_DEVICE_CPU, .precision = (rlx_precision)9}, &f->om)) \
    X(model_build_negative_threads, RLX_ERR_INVALID_ARGUMENT, "threads",                                                   \
      rlx_model_build(f->flow, f->w, &(rlx_build_params){.device = RLX_DEVICE_CPU, .threads = -1}, &f->om))                \
    X(model_build_bad_profile, RLX_ERR_PROFILE, "fusion.policy",                                                           \
      (f->prof.fusion_policy = (rlx_fusion_policy)9,                                                                        \
       rlx_model_build(f->flow, f->w, &(rlx_build_params){.device = RLX_DEVICE_CPU, .profile = &f->prof}, &f->om)))        \
    X(model_destroy_null, RLX_OK, NULL, NO_STATUS(rlx_model_destroy(NULL)))                                                \
    X(model_device_null, RLX_OK, NULL, VALUE_IS(rlx_model_device(NULL), RLX_DEVICE_CPU))                                   \
    X(model_output_width_null, RLX_OK, NULL, VALUE_IS(rlx_model_output_width(NULL), 0))                                    \
    X(model_max_tokens_null, RLX_OK, NULL, VALUE_IS(rlx_model_max_tokens(NULL), 0))                                        \
    X(model_max_sequences_null, RLX_OK, NULL, VALUE_IS(rlx_model_max_sequences(NULL), 0))                                  \
    X(model_output_per_sequence_null, RLX_OK, NULL, VALUE_IS(rlx_model_output_per_sequence(NULL), 0))                      \
    X(model_memory_null, RLX_ERR_INVALID_ARGUMENT, "rlx_model_memory", rlx_model_memory(NULL, NULL, NULL))                 \
    X(model_memory_null_outs, RLX_OK, NULL, rlx_model_memory(f->model, NULL, NULL))                                        \
    X(model_device_name_null, RLX_OK, NULL, STR_IS(rlx_model_device_name(NULL), ""))                                       \
    X(model_unused_count_null, RLX_OK, NULL, VALUE_IS(rlx_model_unused_tensor_count(NULL), 0))                             \
    X(model_unused_tensor_null, RLX_OK, NULL, VALUE_IS(rlx_model_unused_tensor(NULL, 0), NULL))                            \
    X(model_unused_tensor_out_of_range, RLX_OK, NULL, VALUE_IS(rlx_model_unused_tensor(f->model, -1), NULL))               \
    X(model_format_plan_null_model, RLX_ERR_INVALID_ARGUMENT, "rlx_model_format_plan", rlx_model_format_plan(NULL, &f->text)) \
    X(model_format_plan_null_out, RLX_ERR_INVALID_ARGUMENT, "rlx_model_format_plan", rlx_model_format_plan(f->model, NULL)) \
    X(model_format_plan_cpu_model, RLX_OK, NULL, rlx_model_format_plan(f->model, &f->text))                                \
    X(model_format_null_model, RLX_ERR_INVALID_ARGUMENT, "rlx_model_format", rlx_model_format(NULL, &f->text))             \
    X(model_format_null_out, RLX_ERR_INVALID_ARGUMENT, "rlx_model_format", rlx_model_format(f->model, NULL))               \
    X(session_create_null_model, RLX_ERR_INVALID_ARGUMENT, "rlx_session_create", rlx_session_create(NULL, &f->os))         \
    X(session_create_null_out, RLX_ERR_INVALID_ARGUMENT, "rlx_session_create", rlx_session_create(f->model, NULL))         \
    X(session_destroy_null, RLX_OK, NULL, NO_STATUS(rlx_session_destroy(NULL)))                                            \
    X(prefill_null_session, RLX_ERR_INVALID_ARGUMENT, "rlx_session_prefill", rlx_session_prefill(NULL, TOKENS, 4, NULL, 1, NULL)) \
    X(prefill_null_tokens, RLX_ERR_INVALID_ARGUMENT, "rlx_session_prefill", rlx_session_prefill(f->s, NULL, 4, NULL, 1, NULL)) \
    X(prefill_no_tokens, RLX_ERR_INVALID_ARGUMENT, "empty", rlx_session_prefill(f->s, TOKENS, 0, NULL, 1, NULL))           \
    X(prefill_zero_sequences, RLX_ERR_INVALID_ARGUMENT, "sequences", rlx_session_prefill(f->s, TOKENS, 4, (int64_t[]){4}, 0, NULL)) \
    X(prefill_lengths_mismatch, RLX_ERR_INVALID_ARGUMENT, "sequence", rlx_session_prefill(f->s, TOKENS, 4, (int64_t[]){1, 1}, 2, NULL)) \
    X(prefill_negative_length, RLX_ERR_INVALID_ARGUMENT, "length", rlx_session_prefill(f->s, TOKENS, 4, (int64_t[]){-1, 5}, 2, NULL)) \
    X(prefill_over_capacity, RLX_ERR_INVALID_ARGUMENT, "capacity",                                                         \
      rlx_session_prefill(f->s, f->ids, 18, (int64_t[]){6, 6, 6}, 3, NULL))                                                 \
    X(prefill_token_out_of_range, RLX_ERR_TOKEN_RANGE, "vocabulary", prefill_bad_token(f))                                 \
    X(output_shape_null_session, RLX_ERR_INVALID_ARGUMENT, "rlx_session_output_shape", rlx_session_output_shape(NULL, &f->rows, &f->cols)) \
    X(output_shape_before_prefill, RLX_ERR_INVALID_ARGUMENT, "no prefill", rlx_session_output_shape(f->s, &f->rows, &f->cols)) \
    X(output_shape_null_outs, RLX_OK, NULL, prefill_ok(f) ? RLX_ERR_INTERNAL : rlx_session_output_shape(f->s, NULL, NULL))   \
    X(output_to_host_null_session, RLX_ERR_INVALID_ARGUMENT, "rlx_session_output_to_host", rlx_session_output_to_host(NULL, f->out, 4096)) \
    X(output_to_host_null_dst, RLX_ERR_INVALID_ARGUMENT, "rlx_session_output_to_host", rlx_session_output_to_host(f->s, NULL, 4096)) \
    X(output_to_host_before_prefill, RLX_ERR_INVALID_ARGUMENT, "no prefill", rlx_session_output_to_host(f->s, f->out, 4096)) \
    X(output_to_host_small_buffer, RLX_ERR_INVALID_ARGUMENT, "floats", prefill_ok(f) ? RLX_ERR_INTERNAL : rlx_session_output_to_host(f->s, f->out, 3)) \
    X(output_shape_after_failed_prefill, RLX_ERR_INVALID_ARGUMENT, "failed",                                               \
      prefill_ok(f) || !prefill_bad_token(f) ? RLX_ERR_INTERNAL : rlx_session_output_shape(f->s, &f->rows, &f->cols))     \
    X(output_to_host_after_failed_prefill, RLX_ERR_INVALID_ARGUMENT, "failed",                                             \
      prefill_ok(f) || !prefill_null_args(f) ? RLX_ERR_INTERNAL : rlx_session_output_to_host(f->s, f->out, 4096))          \
    X(output_back_after_next_good_prefill, RLX_OK, NULL,                                                                   \
      prefill_ok(f) || !prefill_bad_token(f) || prefill_ok(f) ? RLX_ERR_INTERNAL : rlx_session_output_to_host(f->s, f->out, 4096)) \
    X(output_nonfinite_null_session, RLX_ERR_INVALID_ARGUMENT, "rlx_session_output_nonfinite",                             \
      rlx_session_output_nonfinite(NULL, NULL, 0, &f->n))                                                                  \
    X(output_nonfinite_null_total, RLX_ERR_INVALID_ARGUMENT, "rlx_session_output_nonfinite",                               \
      rlx_session_output_nonfinite(f->s, NULL, 0, NULL))                                                                   \
    X(output_nonfinite_before_prefill, RLX_ERR_INVALID_ARGUMENT, "no prefill", rlx_session_output_nonfinite(f->s, NULL, 0, &f->n)) \
    X(output_nonfinite_small_rows, RLX_ERR_INVALID_ARGUMENT, "per_row",                                                    \
      prefill_ok(f) ? RLX_ERR_INTERNAL : rlx_session_output_nonfinite(f->s, f->lens, 0, &f->n))                            \
    X(output_nonfinite_after_failed_prefill, RLX_ERR_INVALID_ARGUMENT, "failed",                                           \
      prefill_ok(f) || !prefill_bad_token(f) ? RLX_ERR_INTERNAL : rlx_session_output_nonfinite(f->s, NULL, 0, &f->n))     \
    X(output_nonfinite_counts, RLX_OK, NULL,                                                                               \
      prefill_ok(f) || rlx_session_output_nonfinite(f->s, f->lens, 4, &f->n) ? RLX_ERR_INTERNAL : VALUE_IS(f->n + f->lens[0], 0)) \
    /* llama.h */                                                                                                           \
    X(llama_parse_null_text, RLX_ERR_INVALID_ARGUMENT, "rlx_llama_config_parse", rlx_llama_config_parse(NULL, "c", &f->cfg)) \
    X(llama_parse_null_out, RLX_ERR_INVALID_ARGUMENT, "rlx_llama_config_parse", rlx_llama_config_parse("{}", "c", NULL))   \
    X(llama_load_null_path, RLX_ERR_INVALID_ARGUMENT, "rlx_llama_config_load", rlx_llama_config_load(NULL, &f->cfg))       \
    X(llama_load_null_out, RLX_ERR_INVALID_ARGUMENT, "rlx_llama_config_load", rlx_llama_config_load("config.json", NULL))  \
    X(llama_validate_null, RLX_ERR_INVALID_ARGUMENT, "rlx_llama_config_validate", rlx_llama_config_validate(NULL, "c"))     \
    X(llama_validate_bad_scaling, RLX_ERR_CONFIG, "scaling",                                                               \
      (f->cfg.rope.scaling = (rlx_rope_scaling)9, rlx_llama_config_validate(&f->cfg, "c")))                                \
    /* encoder.h */                                                                                                         \
    X(input_ids_null_flow, RLX_ERR_INVALID_ARGUMENT, "rlx_flow_input_ids", rlx_flow_input_ids(NULL, "t", 0))               \
    X(input_ids_null_name, RLX_ERR_INVALID_ARGUMENT, "input_ids", rlx_flow_input_ids(act_flow(f), NULL, 0))               \
    X(gather_add_null_flow, RLX_ERR_INVALID_ARGUMENT, "rlx_flow_gather_add", rlx_flow_gather_add(NULL, "t", "k", 0))       \
    X(gather_add_null_ids, RLX_ERR_INVALID_ARGUMENT, "gather_add", rlx_flow_gather_add(act_flow(f), NULL, "k", 0))         \
    X(gather_add_null_key, RLX_ERR_INVALID_ARGUMENT, "gather_add", rlx_flow_gather_add(act_flow(f), RLX_INPUT_POSITIONS, NULL, 0)) \
    X(layer_norm_null_flow, RLX_ERR_INVALID_ARGUMENT, "rlx_flow_layer_norm", rlx_flow_layer_norm(NULL, "g", NULL, 1e-5))   \
    X(layer_norm_null_key, RLX_ERR_INVALID_ARGUMENT, "layer_norm", rlx_flow_layer_norm(act_flow(f), NULL, NULL, 1e-5))     \
    X(gelu_null, RLX_ERR_INVALID_ARGUMENT, "rlx_flow_gelu", rlx_flow_gelu(NULL))                                           \
    X(gelu_ffn_null_flow, RLX_ERR_INVALID_ARGUMENT, "rlx_flow_gelu_ffn", rlx_flow_gelu_ffn(NULL, "p"))                     \
    X(gelu_ffn_null_prefix, RLX_ERR_INVALID_ARGUMENT, "gelu_ffn", rlx_flow_gelu_ffn(act_flow(f), NULL))                    \
    X(slice_cols_null, RLX_ERR_INVALID_ARGUMENT, "rlx_flow_slice_cols", rlx_flow_slice_cols(NULL, 0, 1))                   \
    X(slice_cols_negative, RLX_ERR_INVALID_ARGUMENT, "slice_cols", rlx_flow_slice_cols(act_flow(f), -1, 1))                \
    X(cls_pool_null, RLX_ERR_INVALID_ARGUMENT, "rlx_flow_cls_pool", rlx_flow_cls_pool(NULL))                               \
    X(mean_pool_null, RLX_ERR_INVALID_ARGUMENT, "rlx_flow_mean_pool", rlx_flow_mean_pool(NULL))                            \
    X(l2_normalize_null, RLX_ERR_INVALID_ARGUMENT, "rlx_flow_l2_normalize", rlx_flow_l2_normalize(NULL))                   \
    X(bert_layer_null_flow, RLX_ERR_INVALID_ARGUMENT, "rlx_flow_bert_encoder_layer", rlx_flow_bert_encoder_layer(NULL, 0, NULL)) \
    X(bert_layer_null_spec, RLX_ERR_INVALID_ARGUMENT, "spec", rlx_flow_bert_encoder_layer(act_flow(f), 0, NULL))           \
    X(repeat_bert_null_flow, RLX_ERR_INVALID_ARGUMENT, "rlx_flow_repeat_bert_layers", rlx_flow_repeat_bert_layers(NULL, 1, NULL)) \
    X(repeat_bert_null_spec, RLX_ERR_INVALID_ARGUMENT, "spec", rlx_flow_repeat_bert_layers(act_flow(f), 1, NULL))          \
    X(nomic_layer_null_flow, RLX_ERR_INVALID_ARGUMENT, "rlx_flow_nomic_encoder_layer", rlx_flow_nomic_encoder_layer(NULL, 0, NULL)) \
    X(nomic_layer_null_spec, RLX_ERR_INVALID_ARGUMENT, "spec", rlx_flow_nomic_encoder_layer(act_flow(f), 0, NULL))         \
    X(repeat_nomic_null_flow, RLX_ERR_INVALID_ARGUMENT, "rlx_flow_repeat_nomic_layers", rlx_flow_repeat_nomic_layers(NULL, 1, NULL)) \
    X(repeat_nomic_null_spec, RLX_ERR_INVALID_ARGUMENT, "spec", rlx_flow_repeat_nomic_layers(act_flow(f), 1, NULL))        \
    X(encoder_parse_null_text, RLX_ERR_INVALID_ARGUMENT, "rlx_encoder_config_parse", rlx_encoder_config_parse(NULL, "c", &f->ecfg)) \
    X(encoder_parse_null_out, RLX_ERR_INVALID_ARGUMENT, "rlx_encoder_config_parse", rlx_encoder_config_parse("{}", "c", NULL)) \
    X(encoder_from_weights_null_w, RLX_ERR_INVALID_ARGUMENT, "rlx_encoder_config_from_weights", rlx_encoder_config_from_weights(NULL, NULL, &f->ecfg)) \
    X(encoder_from_weights_null_out, RLX_ERR_INVALID_ARGUMENT, "rlx_encoder_config_from_weights", rlx_encoder_config_from_weights(f->w, NULL, NULL)) \
    X(encoder_validate_null, RLX_ERR_INVALID_ARGUMENT, "rlx_encoder_config_validate", rlx_encoder_config_validate(NULL, "c")) \
    X(encoder_validate_bad_arch, RLX_ERR_CONFIG, "arch", (f->ecfg.arch = (rlx_encoder_arch)9, rlx_encoder_config_validate(&f->ecfg, "c"))) \
    X(pool_name_unknown, RLX_OK, NULL, STR_IS(rlx_pool_name((rlx_pool)9), "?"))                                            \
    X(encoder_recipe_default_params, RLX_OK, NULL, VALUE_IS(rlx_encoder_recipe_default_params().pool, RLX_POOL_MEAN))      \
    X(encoder_flow_null_cfg, RLX_ERR_INVALID_ARGUMENT, "rlx_encoder_flow", rlx_encoder_flow(NULL, NULL, &f->of))           \
    X(encoder_flow_null_out, RLX_ERR_INVALID_ARGUMENT, "rlx_encoder_flow", rlx_encoder_flow(&f->ecfg, NULL, NULL))         \
    X(encoder_flow_bad_pool, RLX_ERR_INVALID_ARGUMENT, "pool",                                                             \
      rlx_encoder_flow(&f->ecfg, &(rlx_encoder_recipe_params){.batch = 1, .seq = 4, .pool = (rlx_pool)9}, &f->of))         \
    X(prefill_ex_null_session, RLX_ERR_INVALID_ARGUMENT, "rlx_session_prefill_ex", rlx_session_prefill_ex(NULL, &(rlx_prefill_batch){0}, NULL)) \
    X(prefill_ex_null_batch, RLX_ERR_INVALID_ARGUMENT, "rlx_session_prefill_ex", rlx_session_prefill_ex(f->s, NULL, NULL)) \
    X(prefill_ex_null_input_name, RLX_ERR_INVALID_ARGUMENT, "name",                                                        \
      rlx_session_prefill_ex(f->s, &(rlx_prefill_batch){.tokens = TOKENS, .n_tokens = 4, .inputs = (rlx_named_ids[]){{NULL, TOKENS, 4}}, .n_inputs = 1}, NULL)) \
    X(prefill_ex_undeclared_input, RLX_ERR_INVALID_ARGUMENT, "no input 'x'",                                               \
      rlx_session_prefill_ex(f->s, &(rlx_prefill_batch){.tokens = TOKENS, .n_tokens = 4, .inputs = (rlx_named_ids[]){{"x", NULL, 4}}, .n_inputs = 1}, NULL)) \
    X(prefill_ex_inputs_null_array, RLX_ERR_INVALID_ARGUMENT, "inputs",                                                    \
      rlx_session_prefill_ex(f->s, &(rlx_prefill_batch){.tokens = TOKENS, .n_tokens = 4, .inputs = NULL, .n_inputs = 2}, NULL)) \
    X(pack_padded_null_padded, RLX_ERR_INVALID_ARGUMENT, "rlx_pack_padded", rlx_pack_padded(NULL, TOKENS, 1, 4, f->ids, f->lens, &f->n)) \
    X(pack_padded_null_mask, RLX_ERR_INVALID_ARGUMENT, "rlx_pack_padded", rlx_pack_padded(TOKENS, NULL, 1, 4, f->ids, f->lens, &f->n)) \
    X(pack_padded_null_packed, RLX_ERR_INVALID_ARGUMENT, "rlx_pack_padded", rlx_pack_padded(TOKENS, TOKENS, 1, 4, NULL, f->lens, &f->n)) \
    X(pack_padded_null_lens, RLX_ERR_INVALID_ARGUMENT, "rlx_pack_padded", rlx_pack_padded(TOKENS, TOKENS, 1, 4, f->ids, NULL, &f->n)) \
    X(pack_padded_null_count, RLX_ERR_INVALID_ARGUMENT, "rlx_pack_padded", rlx_pack_padded(TOKENS, TOKENS, 1, 4, f->ids, f->lens, NULL)) \
    /* custom.h */                                                                                                          \
    X(custom_null_flow, RLX_ERR_INVALID_ARGUMENT, "rlx_flow_custom", rlx_flow_custom(NULL, &(rlx_custom_def){.name = "x", .shape = shape_same, .cpu = cpu_copy}, NULL, NULL)) \
    X(custom_null_def, RLX_ERR_INVALID_ARGUMENT, "def", rlx_flow_custom(act_flow(f), NULL, NULL, NULL))                    \
    X(custom_null_name, RLX_ERR_INVALID_ARGUMENT, "name", rlx_flow_custom(act_flow(f), &(rlx_custom_def){.shape = shape_same, .cpu = cpu_copy}, NULL, NULL)) \
    X(custom_null_shape, RLX_ERR_INVALID_ARGUMENT, "shape", rlx_flow_custom(act_flow(f), &(rlx_custom_def){.name = "x", .cpu = cpu_copy}, NULL, NULL)) \
    X(custom_null_cpu, RLX_ERR_INVALID_ARGUMENT, "CPU", rlx_flow_custom(act_flow(f), &(rlx_custom_def){.name = "x", .shape = shape_same}, NULL, NULL)) \
    X(custom_weight_null_ctx, RLX_ERR_INVALID_ARGUMENT, "rlx_custom_weight", rlx_custom_weight(NULL, "k", &f->slot))       \
    X(custom_weight_null_key, RLX_ERR_INVALID_ARGUMENT, "weight key", custom_with(f, build_weight_null_key))                \
    X(custom_weight_null_slot, RLX_ERR_INVALID_ARGUMENT, "slot", custom_with(f, build_weight_null_slot))                   \
    X(custom_param_null_ctx, RLX_ERR_INVALID_ARGUMENT, "rlx_custom_param", rlx_custom_param(NULL, "p", 1, 1, (float[]){1}, &f->slot)) \
    X(custom_param_null_data, RLX_ERR_INVALID_ARGUMENT, "data", custom_with(f, build_param_null_data))                     \
    X(custom_param_bad_shape, RLX_ERR_INVALID_ARGUMENT, "shape", custom_with(f, build_param_bad_shape))                    \
    X(custom_param_null_slot, RLX_ERR_INVALID_ARGUMENT, "slot", custom_with(f, build_param_null_slot))                     \
    X(custom_input_null_ctx, RLX_ERR_INVALID_ARGUMENT, "rlx_custom_input", rlx_custom_input(NULL, "tokens", &f->slot))      \
    X(custom_input_null_name, RLX_ERR_INVALID_ARGUMENT, "input name", custom_with(f, build_input_null_name))               \
    X(custom_input_null_slot, RLX_ERR_INVALID_ARGUMENT, "slot", custom_with(f, build_input_null_slot))                     \
    X(custom_output_null_ctx, RLX_ERR_INVALID_ARGUMENT, "rlx_custom_output", rlx_custom_output(NULL, "o", &f->slot))        \
    X(custom_output_null_name, RLX_ERR_INVALID_ARGUMENT, "output name", custom_with(f, build_output_null_name))            \
    X(custom_output_null_slot, RLX_ERR_INVALID_ARGUMENT, "slot", custom_with(f, build_output_null_slot))                   \
    X(custom_ctx_stage_name_null, RLX_OK, NULL, STR_IS(rlx_custom_ctx_stage_name(NULL), ""))                               \
    X(custom_ctx_flow_null, RLX_OK, NULL, VALUE_IS(rlx_custom_ctx_flow(NULL), NULL))                                       \
    X(custom_ctx_names_inside_build, RLX_OK, NULL, custom_with(f, build_ctx_names))                                        \
    X(select_null_flow, RLX_ERR_INVALID_ARGUMENT, "rlx_flow_select", rlx_flow_select(NULL, "x"))                           \
    X(select_null_name, RLX_ERR_INVALID_ARGUMENT, "select", rlx_flow_select(act_flow(f), NULL))                            \
    X(when_null_flow, RLX_ERR_INVALID_ARGUMENT, "rlx_flow_when", rlx_flow_when(NULL, 1, layer_ok, NULL))                    \
    X(when_null_fn, RLX_ERR_INVALID_ARGUMENT, "callback", rlx_flow_when(act_flow(f), 1, NULL, NULL))                       \
    X(sequence_null_flow, RLX_ERR_INVALID_ARGUMENT, "rlx_flow_sequence", rlx_flow_sequence(NULL, NULL, 0, NULL))            \
    X(sequence_null_array, RLX_ERR_INVALID_ARGUMENT, "NULL", rlx_flow_sequence(act_flow(f), NULL, 2, NULL))                \
    X(sequence_null_entry, RLX_ERR_INVALID_ARGUMENT, "NULL", rlx_flow_sequence(act_flow(f), (rlx_layer_fn[]){layer_ok, NULL}, 2, NULL)) \
    /* profile.h */                                                                                                         \
    X(profile_preset_null_out, RLX_ERR_INVALID_ARGUMENT, "rlx_profile_preset", rlx_profile_preset("prefill", NULL))        \
    X(profile_parse_null_text, RLX_ERR_INVALID_ARGUMENT, "rlx_profile_parse", rlx_profile_parse(NULL, "p", &f->prof))      \
    X(profile_parse_null_out, RLX_ERR_INVALID_ARGUMENT, "rlx_profile_parse", rlx_profile_parse("", "p", NULL))             \
    X(profile_load_null_path, RLX_ERR_INVALID_ARGUMENT, "rlx_profile_load", rlx_profile_load(NULL, &f->prof))              \
    X(profile_load_null_out, RLX_ERR_INVALID_ARGUMENT, "rlx_profile_load", rlx_profile_load("p.toml", NULL))               \
    X(profile_near_null_weights, RLX_ERR_INVALID_ARGUMENT, "rlx_profile_near", rlx_profile_near(NULL, "llama32", &f->prof)) \
    X(profile_near_null_family, RLX_ERR_INVALID_ARGUMENT, "family", rlx_profile_near(f->w, NULL, &f->prof))                \
    X(profile_near_null_out, RLX_ERR_INVALID_ARGUMENT, "rlx_profile_near", rlx_profile_near(f->w, "llama32", NULL))        \
    X(profile_validate_null, RLX_ERR_INVALID_ARGUMENT, "rlx_profile_validate", rlx_profile_validate(NULL))                 \
    X(profile_validate_bad_target, RLX_ERR_PROFILE, "fusion.target", (f->prof.target = (rlx_device_kind)9, rlx_profile_validate(&f->prof))) \
    X(profile_validate_bad_compute, RLX_ERR_PROFILE, "precision.compute", (f->prof.compute = (rlx_precision)9, rlx_profile_validate(&f->prof))) \
    X(profile_validate_bad_mixed, RLX_ERR_PROFILE, "precision.mixed", (f->prof.mixed = (rlx_mixed_precision)9, rlx_profile_validate(&f->prof))) \
    X(profile_validate_unterminated_source, RLX_OK, NULL, (memset(f->prof.source, 'x', sizeof f->prof.source), rlx_profile_validate(&f->prof))) \
    X(profile_format_null_profile, RLX_ERR_INVALID_ARGUMENT, "rlx_profile_validate", rlx_profile_format(NULL, &f->text))   \
    X(profile_format_null_out, RLX_ERR_INVALID_ARGUMENT, "rlx_profile_format", rlx_profile_format(&f->prof, NULL))         \
    X(model_profile_null, RLX_OK, NULL, VALUE_IS(rlx_model_profile(NULL), NULL))                                           \
    /* dist.h (more in test-misuse-dist.c) */                                                                              \
    X(comm_nccl_available_is_boolean, RLX_OK, NULL, VALUE_IS(rlx_comm_nccl_available() == 0 || rlx_comm_nccl_available() == 1, 1)) \
    X(comm_nccl_init_all_null_out, RLX_ERR_INVALID_ARGUMENT, "rlx_comm_nccl_init_all", rlx_comm_nccl_init_all(2, NULL, NULL, NULL)) \
    X(comm_nccl_init_all_bad_size, RLX_ERR_INVALID_ARGUMENT, "world size", rlx_comm_nccl_init_all(0, NULL, NULL, (rlx_comm *[1]){0})) \
    X(comm_from_env_null_out, RLX_ERR_INVALID_ARGUMENT, "rlx_comm_from_env", rlx_comm_from_env(NULL, NULL))                \
    X(comm_get_kind_null, RLX_OK, NULL, VALUE_IS(rlx_comm_get_kind(NULL), RLX_COMM_LOCAL))                                 \
    X(comm_device_null, RLX_OK, NULL, VALUE_IS(rlx_comm_device(NULL), -1))                                                 \
    /* tokenizer.h (more in test-misuse-tokenizer.c) */                                                                    \
    X(tokenizer_model_kind_null, RLX_OK, NULL, VALUE_IS(rlx_tokenizer_model_kind(NULL), RLX_TOKENIZER_BPE))                \
    /* encoder.h: sentence-transformers directories */                                                                     \
    X(st_read_null_dir, RLX_ERR_INVALID_ARGUMENT, "rlx_sentence_transformers_read", rlx_sentence_transformers_read(NULL, &f->st)) \
    X(st_read_null_out, RLX_ERR_INVALID_ARGUMENT, "rlx_sentence_transformers_read", rlx_sentence_transformers_read(f->dir, NULL)) \
    X(config_is_encoder_null, RLX_OK, NULL, VALUE_IS(rlx_config_is_encoder(NULL), 0))                                   \
    X(config_is_encoder_malformed, RLX_OK, NULL, VALUE_IS(rlx_config_is_encoder("{\"model_type\": "), 0))               \
    X(config_is_encoder_not_an_object, RLX_OK, NULL, VALUE_IS(rlx_config_is_encoder("[\"bert\"]"), 0))                  \
    X(config_is_encoder_llama, RLX_OK, NULL, VALUE_IS(rlx_config_is_encoder("{\"model_type\": \"llama\"}"), 0))         \
    X(config_is_encoder_bert, RLX_OK, NULL, VALUE_IS(rlx_config_is_encoder("{\"model_type\": \"bert\"}"), 1))           \
    X(model_pass_log_null, RLX_OK, NULL, STR_IS(rlx_model_pass_log(NULL), ""))

static rlx_status prefill_null_args(fx *f) { return rlx_session_prefill(f->s, NULL, 4, NULL, 1, NULL); }

#define MISUSE_DEFINE(id, st, needle, expr)                                                                                 \
    static rlx_status misuse_##id(fx *f) {                                                                                  \
        (void)f;                                                                                                            \
        return (expr);                                                                                                      \
    }
MISUSE_CASES(MISUSE_DEFINE)

typedef struct misuse_case {
    const char *id;
    rlx_status (*call)(fx *f);
    rlx_status want;
    const char *needle;
    const char *expr;
} misuse_case;

#define MISUSE_ROW(id, st, needle, expr) {#id, misuse_##id, st, needle, #expr},
static const misuse_case cases[] = {MISUSE_CASES(MISUSE_ROW)};

Test(misuse, every_case) {
    int failed = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const misuse_case *c = &cases[i];
        fx f;
        fx_setup(&f);
        rlx_clear_error();
        rlx_status s = c->call(&f);
        const char *msg = rlx_last_error();
        int ok = s == c->want && (c->want == RLX_OK || (msg[0] && (!c->needle || strstr(msg, c->needle))));
        if (!ok) {
            failed++;
            cr_expect(ok, "%s: %s\n  got %s, want %s; message: \"%s\"%s%s", c->id, c->expr, rlx_status_name(s), rlx_status_name(c->want),
                      msg, c->needle ? ", expected to mention " : "", c->needle ? c->needle : "");
        }
        fx_teardown(&f);
    }
    cr_log_info("%zu misuse cases, %d failed", sizeof cases / sizeof cases[0], failed);
}

/* ---- lifetimes: weights, flow, model and session destroyed in every order --------------------------- */

/* Uses every handle still alive; the model handle only while the caller holds it. */
static void use_alive(fx *f, const int alive[4]) {
    if (alive[0]) cr_expect_gt(rlx_weights_count(f->w), 0);
    if (alive[1]) {
        cr_expect_gt(rlx_flow_stage_count(f->flow), 0);
        cr_expect_eq(rlx_flow_format(f->flow, &f->text), RLX_OK, "%s", rlx_last_error());
        rlx_free(f->text);
        f->text = NULL;
    }
    if (alive[2]) {
        cr_expect_eq(rlx_model_output_width(f->model), 64);
        rlx_session *s2;
        cr_expect_eq(rlx_session_create(f->model, &s2), RLX_OK, "%s", rlx_last_error());
        rlx_session_destroy(s2);
    }
    if (alive[3]) {
        cr_expect_eq(prefill_ok(f), RLX_OK, "%s", rlx_last_error());
        cr_expect_eq(rlx_session_output_to_host(f->s, f->out, 4096), RLX_OK, "%s", rlx_last_error());
    }
}

Test(misuse, lifetimes_in_every_order) {
    int order[4] = {0, 1, 2, 3}, orders = 0;
    /* the 24 permutations, in lexicographic order */
    for (;;) {
        fx f;
        fx_setup(&f);
        int alive[4] = {1, 1, 1, 1};
        for (int k = 0; k < 4; k++) {
            switch (order[k]) {
            case 0: rlx_weights_destroy(f.w), f.w = NULL; break;
            case 1: rlx_flow_destroy(f.flow), f.flow = NULL; break;
            case 2: rlx_model_destroy(f.model), f.model = NULL; break;
            case 3: rlx_session_destroy(f.s), f.s = NULL; break;
            }
            alive[order[k]] = 0;
            use_alive(&f, alive);
        }
        fx_teardown(&f);
        orders++;
        int i = 2;
        while (i >= 0 && order[i] > order[i + 1]) i--;
        if (i < 0) break;
        int j = 3;
        while (order[j] < order[i]) j--;
        int t = order[i];
        order[i] = order[j], order[j] = t;
        for (int a = i + 1, b = 3; a < b; a++, b--) t = order[a], order[a] = order[b], order[b] = t;
    }
    cr_expect_eq(orders, 24);
}

/* A custom stage's user data lives until neither the flow nor a model (nor a session of one)
 * needs it, whatever the order they go in; its destroy runs exactly once. */
static int destroyed;
static void count_destroy(void *user) {
    (void)user;
    destroyed++;
}

Test(misuse, custom_user_outlives_flow_model_and_session) {
    static const int orders[6][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
    for (int o = 0; o < 6; o++) {
        fx f;
        fx_setup(&f);
        destroyed = 0;
        rlx_flow *flow = act_flow(&f);
        f.of = NULL;
        rlx_custom_def def = {.name = "probe", .shape = shape_same, .cpu = cpu_copy, .destroy = count_destroy};
        cr_assert_eq(rlx_flow_custom(flow, &def, NULL, NULL), RLX_OK, "%s", rlx_last_error());
        rlx_model *m;
        rlx_session *s;
        cr_assert_eq(rlx_model_build(flow, f.w, NULL, &m), RLX_OK, "%s", rlx_last_error());
        cr_assert_eq(rlx_session_create(m, &s), RLX_OK, "%s", rlx_last_error());
        for (int k = 0; k < 3; k++) {
            cr_expect_eq(destroyed, 0, "order %d: destroyed before the last holder", o);
            if (orders[o][k] == 0) rlx_flow_destroy(flow);
            if (orders[o][k] == 1) rlx_model_destroy(m);
            if (orders[o][k] == 2) {
                /* the session still runs the stage, whoever else is gone */
                cr_expect_eq(rlx_session_prefill(s, TOKENS, 4, NULL, 1, NULL), RLX_OK, "%s", rlx_last_error());
                rlx_session_destroy(s);
            }
        }
        cr_expect_eq(destroyed, 1, "order %d: destroy ran %d times", o, destroyed);
        fx_teardown(&f);
    }
}

/* ---- every public function has a case ----------------------------------------------------------------- */

#include <dirent.h>

static char *slurp_alloc(const char *path) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    size_t got = buf ? fread(buf, 1, (size_t)n, fp) : 0;
    fclose(fp);
    if (buf) buf[got] = '\0';
    return buf;
}

/* The misuse sources (this file and tests/test-misuse-*.c), concatenated. */
static char *misuse_sources(const char *tests_dir) {
    size_t len = 0;
    char *all = calloc(1, 1);
    DIR *d = opendir(tests_dir);
    cr_assert(d, "cannot list %s", tests_dir);
    for (struct dirent *e; (e = readdir(d));) {
        if (strncmp(e->d_name, "test-misuse", 11) || !strstr(e->d_name, ".c")) continue;
        char path[1024 + 256 + 2];
        snprintf(path, sizeof path, "%s/%s", tests_dir, e->d_name);
        char *text = slurp_alloc(path);
        if (!text) continue;
        size_t n = strlen(text);
        all = realloc(all, len + n + 1);
        memcpy(all + len, text, n + 1);
        len += n;
        free(text);
    }
    closedir(d);
    return all;
}

static int called_in(const char *src, const char *name) {
    size_t n = strlen(name);
    for (const char *p = src; (p = strstr(p, name)); p += n) {
        const char c = p > src ? p[-1] : ' ';
        if ((c == '_' || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) || p[n] != '(') continue;
        return 1;
    }
    return 0;
}

Test(misuse, every_public_function_has_a_case) {
    char tests_dir[1024], inc[1024];
    snprintf(tests_dir, sizeof tests_dir, "%s/..", rlxt_fixtures_dir());
    snprintf(inc, sizeof inc, "%s/../../include/rlx", rlxt_fixtures_dir());
    char *src = misuse_sources(tests_dir);
    DIR *d = opendir(inc);
    cr_assert(d, "cannot list %s", inc);
    int functions = 0, missing = 0;
    for (struct dirent *e; (e = readdir(d));) {
        size_t nl = strlen(e->d_name);
        if (nl < 3 || strcmp(e->d_name + nl - 2, ".h")) continue;
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", inc, e->d_name);
        char *h = slurp_alloc(path);
        cr_assert(h, "cannot read %s", path);
        for (char *p = h; (p = strstr(p, "RLX_API ")); p += 8) {
            char *paren = strchr(p, '(');
            char *semi = strchr(p, ';');
            if (!paren || (semi && semi < paren) || strchr(p, '\n') < paren) continue; /* the macro's own definition */
            char *end = paren;
            while (end > p && end[-1] == ' ') end--;
            char *start = end;
            while (start > p && (start[-1] == '_' || (start[-1] >= 'a' && start[-1] <= 'z') || (start[-1] >= '0' && start[-1] <= '9'))) start--;
            char name[128];
            snprintf(name, sizeof name, "%.*s", (int)(end - start), start);
            if (strncmp(name, "rlx_", 4)) continue;
            functions++;
            if (!called_in(src, name)) {
                missing++;
                cr_expect(0, "%s (include/rlx/%s) has no case in tests/test-misuse*.c", name, e->d_name);
            }
        }
        free(h);
    }
    closedir(d);
    free(src);
    cr_expect_gt(functions, 100, "found only %d public functions: is the include path right?", functions);
    cr_log_info("%d public functions, %d without a misuse case", functions, missing);
}
