/* LLaMA config.json: the real Llama-3.2-1B config in both rope layouts, HF defaults, and one
 * rejection per validation rule with the key named in the message. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rlx/llama.h"
#include "testutil.h"

/* meta-llama/Llama-3.2-1B config.json as published on the hub (top-level rope_theta and
 * rope_scaling). */
static const char k_hub_1b[] =
    "{\n"
    "  \"architectures\": [\"LlamaForCausalLM\"],\n"
    "  \"attention_bias\": false,\n"
    "  \"attention_dropout\": 0.0,\n"
    "  \"bos_token_id\": 128000,\n"
    "  \"eos_token_id\": 128001,\n"
    "  \"head_dim\": 64,\n"
    "  \"hidden_act\": \"silu\",\n"
    "  \"hidden_size\": 2048,\n"
    "  \"initializer_range\": 0.02,\n"
    "  \"intermediate_size\": 8192,\n"
    "  \"max_position_embeddings\": 131072,\n"
    "  \"mlp_bias\": false,\n"
    "  \"model_type\": \"llama\",\n"
    "  \"num_attention_heads\": 32,\n"
    "  \"num_hidden_layers\": 16,\n"
    "  \"num_key_value_heads\": 8,\n"
    "  \"pretraining_tp\": 1,\n"
    "  \"rms_norm_eps\": 1e-05,\n"
    "  \"rope_scaling\": {\n"
    "    \"factor\": 32.0,\n"
    "    \"high_freq_factor\": 4.0,\n"
    "    \"low_freq_factor\": 1.0,\n"
    "    \"original_max_position_embeddings\": 8192,\n"
    "    \"rope_type\": \"llama3\"\n"
    "  },\n"
    "  \"rope_theta\": 500000.0,\n"
    "  \"tie_word_embeddings\": true,\n"
    "  \"torch_dtype\": \"bfloat16\",\n"
    "  \"transformers_version\": \"4.45.0.dev0\",\n"
    "  \"use_cache\": true,\n"
    "  \"vocab_size\": 128256\n"
    "}\n";

/* The same model as transformers 5 writes it: rope_theta and the scaling inside
 * rope_parameters, no rope_scaling. */
static const char k_tf5_1b[] =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"head_dim\": 64,"
    " \"hidden_size\": 2048, \"intermediate_size\": 8192, \"max_position_embeddings\": 131072,"
    " \"num_attention_heads\": 32, \"num_hidden_layers\": 16, \"num_key_value_heads\": 8,"
    " \"rms_norm_eps\": 1e-05, \"tie_word_embeddings\": true, \"vocab_size\": 128256,"
    " \"rope_parameters\": {\"rope_type\": \"llama3\", \"rope_theta\": 500000.0, \"factor\": 32.0,"
    " \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0,"
    " \"original_max_position_embeddings\": 8192}, \"dtype\": \"bfloat16\"}";

static void expect_llama32_1b(const rlx_llama_config *c) {
    cr_expect_eq(c->vocab_size, 128256);
    cr_expect_eq(c->hidden_size, 2048);
    cr_expect_eq(c->intermediate_size, 8192);
    cr_expect_eq(c->num_hidden_layers, 16);
    cr_expect_eq(c->num_attention_heads, 32);
    cr_expect_eq(c->num_key_value_heads, 8);
    cr_expect_eq(c->head_dim, 64);
    cr_expect_eq(c->rms_norm_eps, 1e-5);
    cr_expect_eq(c->max_position_embeddings, 131072);
    cr_expect_eq(c->tie_word_embeddings, 1);
    cr_expect_eq(c->rope.head_dim, 64);
    cr_expect_eq(c->rope.max_positions, 131072);
    cr_expect_eq(c->rope.theta, 500000.0);
    cr_expect_eq(c->rope.scaling, RLX_ROPE_SCALING_LLAMA3);
    cr_expect_eq(c->rope.factor, 32.0);
    cr_expect_eq(c->rope.low_freq_factor, 1.0);
    cr_expect_eq(c->rope.high_freq_factor, 4.0);
    cr_expect_eq(c->rope.original_max_positions, 8192);
}

static rlx_llama_config parse_ok(const char *json) {
    rlx_llama_config c;
    memset(&c, 0xab, sizeof c);
    rlx_status s = rlx_llama_config_parse(json, "config.json", &c);
    cr_assert_eq(s, RLX_OK, "%s: %s\n%s", rlx_status_name(s), rlx_last_error(), json);
    return c;
}

/* A minimal valid config with one key replaced (or added, or removed with value NULL). Keys are
 * the five required ones plus whatever extra text is given. */
static char *cfg_with(const char *key, const char *value, const char *extra) {
    static const char *const keys[] = {"vocab_size", "hidden_size", "intermediate_size",
                                       "num_hidden_layers", "num_attention_heads"};
    static const char *const vals[] = {"1000", "256", "688", "4", "8"};
    char *buf = malloc(4096);
    size_t n = (size_t)snprintf(buf, 4096, "{");
    int found = 0;
    for (int i = 0; i < 5; i++) {
        const char *v = vals[i];
        if (key && strcmp(key, keys[i]) == 0) {
            found = 1;
            if (!value) continue;
            v = value;
        }
        n += (size_t)snprintf(buf + n, 4096 - n, "%s\"%s\": %s", n > 1 ? ", " : "", keys[i], v);
    }
    if (key && !found && value)
        n += (size_t)snprintf(buf + n, 4096 - n, ", \"%s\": %s", key, value);
    if (extra) n += (size_t)snprintf(buf + n, 4096 - n, ", %s", extra);
    snprintf(buf + n, 4096 - n, "}");
    return buf;
}

/* Parses json, expects status want, *out untouched, and each needle in the message. */
static void expect_reject(const char *json, rlx_status want, ...) {
    rlx_llama_config c, before;
    memset(&c, 0x5a, sizeof c);
    before = c;
    rlx_clear_error();
    rlx_status s = rlx_llama_config_parse(json, "config.json", &c);
    const char *msg = rlx_last_error();
    cr_log_info("%s: %s", rlx_status_name(s), msg);
    cr_expect_eq(s, want, "status %s, want %s: %s\n  for %s", rlx_status_name(s),
                 rlx_status_name(want), msg, json);
    cr_expect(memcmp(&c, &before, sizeof c) == 0, "output written on failure");
    cr_expect(strncmp(msg, "config.json: ", 13) == 0, "message does not start with the source: %s", msg);
    va_list ap;
    va_start(ap, want);
    for (const char *needle; (needle = va_arg(ap, const char *));)
        cr_expect(strstr(msg, needle) != NULL, "message lacks \"%s\": %s", needle, msg);
    va_end(ap);
}

static void reject_with(const char *key, const char *value, const char *extra, rlx_status want,
                        const char *needle1, const char *needle2) {
    char *json = cfg_with(key, value, extra);
    expect_reject(json, want, needle1, needle2, NULL);
    free(json);
}

// ---- good configs ----------------------------------------------------------------------------

Test(llama_config, llama32_1b_hub_layout) {
    rlx_llama_config c = parse_ok(k_hub_1b);
    expect_llama32_1b(&c);
    cr_expect_eq(rlx_llama_config_validate(&c, "x"), RLX_OK, "%s", rlx_last_error());
}

Test(llama_config, llama32_1b_transformers5_layout_matches_hub) {
    rlx_llama_config a = parse_ok(k_hub_1b), b = parse_ok(k_tf5_1b);
    expect_llama32_1b(&a);
    expect_llama32_1b(&b);
}

Test(llama_config, both_layouts_present_and_agreeing) {
    char *json = cfg_with(NULL, NULL,
                          "\"rope_theta\": 500000, \"rope_scaling\": {\"rope_type\": \"llama3\", "
                          "\"factor\": 8, \"low_freq_factor\": 1, \"high_freq_factor\": 4, "
                          "\"original_max_position_embeddings\": 8192}, \"rope_parameters\": "
                          "{\"rope_type\": \"llama3\", \"rope_theta\": 500000, \"factor\": 8, "
                          "\"low_freq_factor\": 1, \"high_freq_factor\": 4, "
                          "\"original_max_position_embeddings\": 8192}");
    rlx_llama_config c = parse_ok(json);
    cr_expect_eq(c.rope.factor, 8.0);
    cr_expect_eq(c.rope.theta, 500000.0);
    free(json);
}

Test(llama_config, hf_defaults) {
    char *json = cfg_with(NULL, NULL, NULL);
    rlx_llama_config c = parse_ok(json);
    cr_expect_eq(c.num_key_value_heads, 8, "defaults to num_attention_heads");
    cr_expect_eq(c.head_dim, 32, "defaults to hidden / heads");
    cr_expect_eq(c.rms_norm_eps, 1e-6, "transformers LlamaConfig default");
    cr_expect_eq(c.rope.theta, 10000.0, "HF default, not rlx-flow's 500000");
    cr_expect_eq(c.rope.scaling, RLX_ROPE_SCALING_NONE);
    cr_expect_eq(c.max_position_embeddings, 2048);
    cr_expect_eq(c.rope.max_positions, 2048);
    cr_expect_eq(c.rope.head_dim, 32);
    cr_expect_eq(c.tie_word_embeddings, 0);
    free(json);
}

Test(llama_config, null_and_default_forms) {
    /* head_dim null (older configs), kv heads null, rope_scaling null, rope_type default. */
    char *json = cfg_with(NULL, NULL, "\"head_dim\": null, \"num_key_value_heads\": null, \"rope_scaling\": null");
    rlx_llama_config c = parse_ok(json);
    cr_expect_eq(c.head_dim, 32);
    cr_expect_eq(c.num_key_value_heads, 8);
    cr_expect_eq(c.rope.scaling, RLX_ROPE_SCALING_NONE);
    free(json);
    json = cfg_with(NULL, NULL, "\"rope_scaling\": {\"rope_type\": \"default\"}, \"rope_theta\": 1e6");
    c = parse_ok(json);
    cr_expect_eq(c.rope.scaling, RLX_ROPE_SCALING_NONE);
    cr_expect_eq(c.rope.theta, 1e6);
    free(json);
    json = cfg_with(NULL, NULL, "\"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 250000}");
    c = parse_ok(json);
    cr_expect_eq(c.rope.scaling, RLX_ROPE_SCALING_NONE);
    cr_expect_eq(c.rope.theta, 250000.0);
    free(json);
    /* the legacy "type" key of rope_scaling */
    json = cfg_with(NULL, NULL,
                    "\"rope_scaling\": {\"type\": \"llama3\", \"factor\": 2, \"low_freq_factor\": 1,"
                    " \"high_freq_factor\": 2, \"original_max_position_embeddings\": 1024}");
    c = parse_ok(json);
    cr_expect_eq(c.rope.scaling, RLX_ROPE_SCALING_LLAMA3);
    cr_expect_eq(c.rope.factor, 2.0);
    free(json);
    /* explicit head_dim != hidden / heads (allowed: q/k/v widths follow head_dim) */
    json = cfg_with(NULL, NULL, "\"head_dim\": 64, \"num_key_value_heads\": 2, \"max_position_embeddings\": 4096");
    c = parse_ok(json);
    cr_expect_eq(c.head_dim, 64);
    cr_expect_eq(c.num_key_value_heads, 2);
    cr_expect_eq(c.rope.max_positions, 4096);
    free(json);
}

Test(llama_config, load_from_file) {
    char *dir = rlxt_tmpdir();
    char *path = rlxt_write_file(dir, "config.json", k_hub_1b, strlen(k_hub_1b));
    rlx_llama_config c;
    cr_assert_eq(rlx_llama_config_load(path, &c), RLX_OK, "%s", rlx_last_error());
    expect_llama32_1b(&c);
    char *bad = rlxt_write_file(dir, "bad.json", "{\"vocab_size\": \"x\"}", 19);
    cr_expect_eq(rlx_llama_config_load(bad, &c), RLX_ERR_CONFIG);
    cr_expect(strstr(rlx_last_error(), bad) != NULL, "names the file: %s", rlx_last_error());
    char missing[600];
    snprintf(missing, sizeof missing, "%s/nope.json", dir);
    cr_expect_eq(rlx_llama_config_load(missing, &c), RLX_ERR_IO);
    cr_expect(strstr(rlx_last_error(), missing) && strstr(rlx_last_error(), "No such file"), "%s",
              rlx_last_error());
    cr_expect_eq(rlx_llama_config_load(dir, &c), RLX_ERR_IO, "a directory is not a config");
    char *nul = rlxt_write_file(dir, "nul.json", "{}\0{}", 5);
    cr_expect_eq(rlx_llama_config_load(nul, &c), RLX_ERR_FORMAT);
    rlxt_rmtree(dir);
    free(nul);
    free(bad);
    free(path);
    free(dir);
}

// ---- rejections ------------------------------------------------------------------------------

Test(llama_config, invalid_json) {
    expect_reject("{\"vocab_size\": 10,\n \"hidden_size\": }", RLX_ERR_FORMAT, "not valid JSON",
                  "line 2", NULL);
    expect_reject("", RLX_ERR_FORMAT, "not valid JSON", NULL);
    expect_reject("{\"vocab_size\": 1, \"vocab_size\": 2}", RLX_ERR_FORMAT, "duplicate", NULL);
}

Test(llama_config, top_level_not_an_object) {
    expect_reject("[1, 2]", RLX_ERR_CONFIG, "top level is an array", NULL);
    expect_reject("42", RLX_ERR_CONFIG, "top level is an integer", NULL);
}

Test(llama_config, required_keys_missing) {
    const char *keys[] = {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                          "num_attention_heads"};
    for (int i = 0; i < 5; i++) {
        char needle[64];
        snprintf(needle, sizeof needle, "key '%s' is missing", keys[i]);
        reject_with(keys[i], NULL, NULL, RLX_ERR_CONFIG, needle, NULL);
    }
}

Test(llama_config, wrong_json_types) {
    reject_with("hidden_size", "\"2048\"", NULL, RLX_ERR_CONFIG, "key 'hidden_size'", "found a string");
    reject_with("num_hidden_layers", "16.0", NULL, RLX_ERR_CONFIG, "key 'num_hidden_layers'",
                "found a real number (16)");
    reject_with("vocab_size", "null", NULL, RLX_ERR_CONFIG, "key 'vocab_size'", "found null");
    reject_with("num_key_value_heads", "[8]", NULL, RLX_ERR_CONFIG, "key 'num_key_value_heads'", "found an array");
    reject_with("head_dim", "64.5", NULL, RLX_ERR_CONFIG, "key 'head_dim'", "real number");
    reject_with("rms_norm_eps", "\"1e-5\"", NULL, RLX_ERR_CONFIG, "key 'rms_norm_eps'", "expected a number");
    reject_with("rope_theta", "true", NULL, RLX_ERR_CONFIG, "key 'rope_theta'", "found a boolean");
    reject_with("tie_word_embeddings", "1", NULL, RLX_ERR_CONFIG, "key 'tie_word_embeddings'",
                "expected true or false, found an integer");
    reject_with("max_position_embeddings", "\"131072\"", NULL, RLX_ERR_CONFIG,
                "key 'max_position_embeddings'", "found a string");
    reject_with("rope_scaling", "\"llama3\"", NULL, RLX_ERR_CONFIG, "key 'rope_scaling'", "found a string");
    reject_with("model_type", "7", NULL, RLX_ERR_CONFIG, "key 'model_type'", "found an integer");
}

Test(llama_config, model_type_not_llama) {
    reject_with("model_type", "\"mistral\"", NULL, RLX_ERR_UNSUPPORTED, "key 'model_type'", "'mistral'");
}

Test(llama_config, sizes_out_of_range) {
    reject_with("vocab_size", "0", NULL, RLX_ERR_CONFIG, "key 'vocab_size': 0", "range");
    reject_with("vocab_size", "16777217", NULL, RLX_ERR_CONFIG, "key 'vocab_size': 16777217", NULL);
    reject_with("hidden_size", "65537", NULL, RLX_ERR_CONFIG, "key 'hidden_size': 65537", NULL);
    reject_with("hidden_size", "-256", NULL, RLX_ERR_CONFIG, "key 'hidden_size': -256", NULL);
    reject_with("intermediate_size", "1048577", NULL, RLX_ERR_CONFIG, "key 'intermediate_size'", NULL);
    reject_with("num_hidden_layers", "0", NULL, RLX_ERR_CONFIG, "key 'num_hidden_layers': 0", NULL);
    reject_with("num_hidden_layers", "1025", NULL, RLX_ERR_CONFIG, "key 'num_hidden_layers': 1025", NULL);
    reject_with("num_attention_heads", "0", NULL, RLX_ERR_CONFIG, "key 'num_attention_heads': 0", NULL);
    reject_with("num_attention_heads", "2048", "\"head_dim\": 2", RLX_ERR_CONFIG, "key 'num_attention_heads': 2048", NULL);
    reject_with("num_key_value_heads", "0", NULL, RLX_ERR_CONFIG, "key 'num_key_value_heads': 0", NULL);
    reject_with("max_position_embeddings", "0", NULL, RLX_ERR_CONFIG, "key 'max_position_embeddings': 0", NULL);
    reject_with("max_position_embeddings", "16777217", NULL, RLX_ERR_CONFIG, "key 'max_position_embeddings'", NULL);
    reject_with("vocab_size", "99999999999999999999", NULL, RLX_ERR_FORMAT, "too big integer", NULL);
}

Test(llama_config, kv_heads_must_divide_heads) {
    char *json = cfg_with("num_key_value_heads", "3", NULL);
    expect_reject(json, RLX_ERR_CONFIG,
                  "config.json: key 'num_key_value_heads': 3 does not divide num_attention_heads 8", NULL);
    free(json);
    reject_with("num_key_value_heads", "16", NULL, RLX_ERR_CONFIG, "16 does not divide num_attention_heads 8", NULL);
}

Test(llama_config, head_dim_rules) {
    reject_with("head_dim", "63", NULL, RLX_ERR_CONFIG, "key 'head_dim': 63 is odd", NULL);
    reject_with("head_dim", "0", NULL, RLX_ERR_CONFIG, "key 'head_dim': 0", NULL);
    reject_with("head_dim", "2048", NULL, RLX_ERR_CONFIG, "key 'head_dim': 2048", NULL);
    reject_with("num_attention_heads", "1024", "\"head_dim\": 512", RLX_ERR_CONFIG,
                "key 'head_dim': 512 x num_attention_heads 1024", "implausible");
    /* without head_dim, hidden must split evenly over the heads */
    reject_with("hidden_size", "250", NULL, RLX_ERR_CONFIG, "key 'head_dim' is absent",
                "hidden_size 250 is not a multiple of num_attention_heads 8");
    /* hidden/heads odd, no explicit head_dim */
    reject_with("hidden_size", "264", NULL, RLX_ERR_CONFIG, "key 'head_dim': 33 is odd", NULL);
}

Test(llama_config, eps_rules) {
    reject_with("rms_norm_eps", "0", NULL, RLX_ERR_CONFIG, "key 'rms_norm_eps': 0", "(0, 1)");
    reject_with("rms_norm_eps", "-1e-6", NULL, RLX_ERR_CONFIG, "key 'rms_norm_eps'", NULL);
    reject_with("rms_norm_eps", "1", NULL, RLX_ERR_CONFIG, "key 'rms_norm_eps': 1", NULL);
}

Test(llama_config, theta_rules) {
    reject_with("rope_theta", "0", NULL, RLX_ERR_CONFIG, "key 'rope_theta': 0", "positive");
    reject_with("rope_theta", "-10000", NULL, RLX_ERR_CONFIG, "key 'rope_theta'", NULL);
    reject_with(NULL, NULL, "\"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 0}",
                RLX_ERR_CONFIG, "key 'rope_parameters.rope_theta': 0", NULL);
    reject_with(NULL, NULL, "\"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": \"big\"}",
                RLX_ERR_CONFIG, "key 'rope_parameters.rope_theta'", "found a string");
}

#define LLAMA3(f, lo, hi, orig)                                                               \
    "\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": " f ", \"low_freq_factor\": " lo \
    ", \"high_freq_factor\": " hi ", \"original_max_position_embeddings\": " orig "}"

Test(llama_config, llama3_scaling_rules) {
    reject_with(NULL, NULL, LLAMA3("0.5", "1", "4", "8192"), RLX_ERR_CONFIG, "key 'rope_scaling.factor': 0.5", ">= 1");
    reject_with(NULL, NULL, LLAMA3("0", "1", "4", "8192"), RLX_ERR_CONFIG, "key 'rope_scaling.factor'", NULL);
    reject_with(NULL, NULL, LLAMA3("32", "0", "4", "8192"), RLX_ERR_CONFIG, "key 'rope_scaling.low_freq_factor': 0", NULL);
    reject_with(NULL, NULL, LLAMA3("32", "4", "4", "8192"), RLX_ERR_CONFIG, "key 'rope_scaling.high_freq_factor': 4",
                "must exceed low_freq_factor 4");
    reject_with(NULL, NULL, LLAMA3("32", "4", "1", "8192"), RLX_ERR_CONFIG, "key 'rope_scaling.high_freq_factor'", NULL);
    reject_with(NULL, NULL, LLAMA3("32", "1", "4", "0"), RLX_ERR_CONFIG,
                "key 'rope_scaling.original_max_position_embeddings': 0", NULL);
    reject_with(NULL, NULL, LLAMA3("32", "1", "4", "8192.5"), RLX_ERR_CONFIG,
                "key 'rope_scaling.original_max_position_embeddings'", "real number");
    reject_with(NULL, NULL, LLAMA3("\"32\"", "1", "4", "8192"), RLX_ERR_CONFIG, "key 'rope_scaling.factor'",
                "found a string");
    /* every llama3 key is required, as in HF's rope validation */
    reject_with(NULL, NULL,
                "\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 32, \"low_freq_factor\": 1, "
                "\"original_max_position_embeddings\": 8192}",
                RLX_ERR_CONFIG, "key 'rope_scaling.high_freq_factor' is missing", NULL);
    reject_with(NULL, NULL, "\"rope_scaling\": {\"factor\": 32}", RLX_ERR_CONFIG, "key 'rope_scaling'",
                "no 'rope_type'");
    reject_with(NULL, NULL, "\"rope_scaling\": {\"rope_type\": 3}", RLX_ERR_CONFIG, "key 'rope_scaling.rope_type'",
                "found an integer");
    /* the same rules in the transformers 5 layout name that object */
    reject_with(NULL, NULL,
                "\"rope_parameters\": {\"rope_type\": \"llama3\", \"rope_theta\": 500000, \"factor\": 0.25, "
                "\"low_freq_factor\": 1, \"high_freq_factor\": 4, \"original_max_position_embeddings\": 8192}",
                RLX_ERR_CONFIG, "key 'rope_parameters.factor': 0.25", NULL);
}

Test(llama_config, unsupported_rope_types) {
    const char *types[] = {"yarn", "linear", "dynamic", "longrope"};
    for (int i = 0; i < 4; i++) {
        char extra[128], needle[64];
        snprintf(extra, sizeof extra, "\"rope_scaling\": {\"rope_type\": \"%s\", \"factor\": 4}", types[i]);
        snprintf(needle, sizeof needle, "rope type '%s' is not supported", types[i]);
        reject_with(NULL, NULL, extra, RLX_ERR_UNSUPPORTED, "key 'rope_scaling.rope_type'", needle);
    }
    reject_with(NULL, NULL, "\"rope_parameters\": {\"rope_type\": \"yarn\", \"rope_theta\": 1e4, \"factor\": 4}",
                RLX_ERR_UNSUPPORTED, "key 'rope_parameters.rope_type'", "'yarn'");
}

Test(llama_config, layouts_that_disagree) {
    reject_with(NULL, NULL,
                LLAMA3("32", "1", "4", "8192") ", \"rope_parameters\": {\"rope_type\": \"default\"}",
                RLX_ERR_CONFIG, "'rope_scaling' and 'rope_parameters' disagree", NULL);
    reject_with(NULL, NULL,
                "\"rope_theta\": 10000, \"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 500000}",
                RLX_ERR_CONFIG, "'rope_parameters.rope_theta' (500000) disagrees with top-level 'rope_theta' (10000)", NULL);
}

Test(llama_config, validate_checks_a_hand_made_struct) {
    rlx_llama_config c = parse_ok(k_hub_1b);
    cr_expect_eq(rlx_llama_config_validate(&c, NULL), RLX_OK);
    rlx_llama_config bad = c;
    bad.rope.head_dim = 128;
    cr_expect_eq(rlx_llama_config_validate(&bad, "mine"), RLX_ERR_CONFIG);
    cr_expect(strstr(rlx_last_error(), "mine: rope.head_dim 128 differs from head_dim 64") != NULL, "%s",
              rlx_last_error());
    bad = c;
    bad.rope.max_positions = 10;
    cr_expect_eq(rlx_llama_config_validate(&bad, "mine"), RLX_ERR_CONFIG);
    cr_expect(strstr(rlx_last_error(), "max_position_embeddings") != NULL, "%s", rlx_last_error());
    bad = c;
    bad.rope.scaling = (rlx_rope_scaling)9;
    cr_expect_eq(rlx_llama_config_validate(&bad, "mine"), RLX_ERR_CONFIG);
    bad = c;
    bad.tie_word_embeddings = 2;
    cr_expect_eq(rlx_llama_config_validate(&bad, "mine"), RLX_ERR_CONFIG);
    bad = c;
    bad.rms_norm_eps = NAN;
    cr_expect_eq(rlx_llama_config_validate(&bad, "mine"), RLX_ERR_CONFIG, "NaN eps");
    bad = c;
    bad.rope.factor = INFINITY;
    cr_expect_eq(rlx_llama_config_validate(&bad, "mine"), RLX_ERR_CONFIG, "infinite factor");
    cr_expect_eq(rlx_llama_config_validate(NULL, "mine"), RLX_ERR_INVALID_ARGUMENT);
    cr_expect_eq(rlx_llama_config_parse(NULL, "x", &c), RLX_ERR_INVALID_ARGUMENT);
    cr_expect_eq(rlx_llama_config_parse(k_hub_1b, NULL, NULL), RLX_ERR_INVALID_ARGUMENT);
}

/* Random byte mutations of the real config: parse or fail with a status from the documented
 * set, never crash, never leave a message without the source (ASan/UBSan builds make this
 * bite). */
Test(llama_config, mutations_never_crash) {
    static const char alphabet[] = "0123456789-.,:[]{}\" eEtrufalsn";
    size_t len = strlen(k_hub_1b);
    char *buf = malloc(len + 1);
    rlxt_rng r = {31337};
    int ok = 0;
    for (int it = 0; it < 20000; it++) {
        memcpy(buf, k_hub_1b, len + 1);
        int nmut = 1 + (int)(rlxt_next(&r) % 3);
        for (int m = 0; m < nmut; m++) {
            size_t at = rlxt_next(&r) % len;
            char c = (rlxt_next(&r) & 3) ? alphabet[rlxt_next(&r) % (sizeof alphabet - 1)]
                                         : (char)(1 + rlxt_next(&r) % 255);
            buf[at] = c;
        }
        rlx_llama_config c;
        rlx_status s = rlx_llama_config_parse(buf, "fuzz.json", &c);
        if (s == RLX_OK) {
            ok++;
            cr_assert_eq(rlx_llama_config_validate(&c, "fuzz.json"), RLX_OK,
                         "accepted but invalid: %s", rlx_last_error());
        } else {
            cr_assert(s == RLX_ERR_FORMAT || s == RLX_ERR_CONFIG || s == RLX_ERR_UNSUPPORTED,
                      "iteration %d: %s", it, rlx_status_name(s));
            cr_assert(strncmp(rlx_last_error(), "fuzz.json: ", 11) == 0, "%s", rlx_last_error());
        }
    }
    free(buf);
    cr_log_info("mutations accepted: %d of 20000", ok);
}
