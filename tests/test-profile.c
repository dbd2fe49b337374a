/* Compile profiles: presets, every key, every kind of bad file (message = file:line:col and the
 * key), discovery next to the weights, and the effects a profile has on a build and on `rlx plan`. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "rlx/custom.h"
#include "rlx/flow.h"
#include "rlx/profile.h"
#include "model/stages.h"
#include "testutil.h"

/* Parse must fail with RLX_ERR_PROFILE and a message holding every needle. */
static void expect_refused(const char *text, const char *needle1, const char *needle2) {
    rlx_profile p;
    rlx_profile_preset("prefill", &p);
    rlx_profile before = p;
    rlx_status s = rlx_profile_parse(text, "bad.rlx.toml", &p);
    cr_expect_eq(s, RLX_ERR_PROFILE, "accepted:\n%s", text);
    const char *msg = rlx_last_error();
    cr_expect(strstr(msg, needle1), "message lacks '%s': %s", needle1, msg);
    if (needle2) cr_expect(strstr(msg, needle2), "message lacks '%s': %s", needle2, msg);
    cr_expect(!memcmp(&p, &before, sizeof p), "out was written on failure");
}

Test(profile, prefill_preset_defaults) {
    rlx_profile p;
    cr_assert_eq(rlx_profile_preset(NULL, &p), RLX_OK);
    cr_expect_str_eq(p.source, "preset:prefill");
    cr_expect_eq(p.fusion_policy, RLX_FUSION_FUSED);
    cr_expect_eq(p.target, RLX_DEVICE_AUTO);
    cr_expect_eq(p.assert_clean, 0);
    cr_expect_eq(p.dce, 1);
    cr_expect_eq(p.constant_folding, 1);
    cr_expect_eq(p.verbose, 0);
    cr_expect_eq(p.compute, RLX_PRECISION_BF16);
    cr_expect_eq(p.mixed, RLX_MIXED_AUTO);
    cr_expect_eq(p.attention_block_q, 0);
    cr_expect_eq(p.gemm_workspace_mb, 32);
    cr_expect_eq(p.cuda_graphs, 0);
    cr_expect_eq(p.gemm_autotune, 0);
    cr_expect_eq(p.prune_last_layer, 1);
    rlx_profile q;
    cr_assert_eq(rlx_profile_preset("prefill", &q), RLX_OK);
    cr_expect(!memcmp(&p, &q, sizeof p));
    /* An empty file is the preset, with the file as its source. */
    cr_assert_eq(rlx_profile_parse("# nothing\n", "empty.rlx.toml", &q), RLX_OK, "%s", rlx_last_error());
    cr_expect_str_eq(q.source, "empty.rlx.toml");
    snprintf(q.source, sizeof q.source, "preset:prefill");
    cr_expect(!memcmp(&p, &q, sizeof p));
}

Test(profile, debug_preset_and_unknown_preset) {
    rlx_profile p;
    cr_assert_eq(rlx_profile_preset("debug", &p), RLX_OK);
    cr_expect_str_eq(p.source, "preset:debug");
    cr_expect_eq(p.fusion_policy, RLX_FUSION_NONE);
    cr_expect_eq(p.compute, RLX_PRECISION_F32);
    cr_expect_eq(p.cuda_graphs, 0);
    cr_expect_eq(p.verbose, 1);
    cr_expect_eq(rlx_profile_preset("turbo", &p), RLX_ERR_PROFILE);
    cr_expect(strstr(rlx_last_error(), "turbo"), "%s", rlx_last_error());
    cr_expect_eq(rlx_profile_preset("prefill", NULL), RLX_ERR_INVALID_ARGUMENT);
}

Test(profile, every_key_parsed) {
    const char *text = "# every key, none at its default\n"
                       "[fusion]\n"
                       "policy = \"none\"\n"
                       "target = \"simt\"\n"
                       "assert_clean = true\n"
                       "skip = false\n"
                       "[passes]\n"
                       "dce = false\n"
                       "constant_folding = false\n"
                       "verbose = true\n"
                       "prune_last_layer = false\n"
                       "[precision]\n"
                       "compute = \"f32\"\n"
                       "mixed = \"auto\"\n"
                       "[kernels]\n"
                       "attention_block_q = 64\n"
                       "gemm_workspace_mb = 0\n"
                       "cuda_graphs = false\n"
                       "gemm_autotune = true\n";
    rlx_profile p;
    cr_assert_eq(rlx_profile_parse(text, "all.rlx.toml", &p), RLX_OK, "%s", rlx_last_error());
    cr_expect_str_eq(p.source, "all.rlx.toml");
    cr_expect_eq(p.fusion_policy, RLX_FUSION_NONE);
    cr_expect_eq(p.target, RLX_DEVICE_SIMT);
    cr_expect_eq(p.assert_clean, 1);
    cr_expect_eq(p.dce, 0);
    cr_expect_eq(p.constant_folding, 0);
    cr_expect_eq(p.verbose, 1);
    cr_expect_eq(p.compute, RLX_PRECISION_F32);
    cr_expect_eq(p.mixed, RLX_MIXED_AUTO);
    cr_expect_eq(p.attention_block_q, 64);
    cr_expect_eq(p.gemm_workspace_mb, 0);
    cr_expect_eq(p.cuda_graphs, 0);
    cr_expect_eq(p.gemm_autotune, 1);
    cr_expect_eq(p.prune_last_layer, 0);
    char *line;
    cr_assert_eq(rlx_profile_format(&p, &line), RLX_OK);
    cr_expect_str_eq(line, "fusion.policy=none fusion.target=simt fusion.assert_clean=true passes.dce=false "
                           "passes.constant_folding=false passes.verbose=true passes.prune_last_layer=false precision.compute=f32 "
                           "precision.mixed=auto "
                           "kernels.attention_block_q=64 kernels.gemm_workspace_mb=0 kernels.cuda_graphs=false "
                           "kernels.gemm_autotune=true");
    rlx_free(line);
}

Test(profile, other_values_and_spellings) {
    rlx_profile p;
    cr_assert_eq(rlx_profile_parse("[fusion]\npolicy = \"direct\"\ntarget = \"cuda\"\n[precision]\ncompute = \"f16\"\n"
                                   "[kernels]\nattention_block_q = 128\ngemm_workspace_mb = 4096\n",
                                   "a", &p),
                 RLX_OK, "%s", rlx_last_error());
    cr_expect_eq(p.fusion_policy, RLX_FUSION_NONE);
    cr_expect_eq(p.target, RLX_DEVICE_CUDA);
    cr_expect_eq(p.compute, RLX_PRECISION_F16);
    cr_expect_eq(p.attention_block_q, 128);
    cr_expect_eq(p.gemm_workspace_mb, 4096);
    cr_assert_eq(rlx_profile_parse("[fusion]\npolicy = \"fusable\"\ntarget = \"cpu\"\n", "b", &p), RLX_OK);
    cr_expect_eq(p.fusion_policy, RLX_FUSION_FUSED);
    cr_expect_eq(p.target, RLX_DEVICE_CPU);
    /* skip = true is policy none; inline tables and dotted keys are ordinary TOML */
    cr_assert_eq(rlx_profile_parse("[fusion]\nskip = true\n", "c", &p), RLX_OK, "%s", rlx_last_error());
    cr_expect_eq(p.fusion_policy, RLX_FUSION_NONE);
    cr_assert_eq(rlx_profile_parse("fusion = { skip = true, policy = \"none\" }\npasses.dce = false\n", "d", &p), RLX_OK,
                 "%s", rlx_last_error());
    cr_expect_eq(p.fusion_policy, RLX_FUSION_NONE);
    cr_expect_eq(p.dce, 0);
    cr_expect_eq(rlx_profile_parse(NULL, "x", &p), RLX_ERR_INVALID_ARGUMENT);
    /* without a source name the messages say <profile> */
    cr_expect_eq(rlx_profile_parse("[x]\n", NULL, &p), RLX_ERR_PROFILE);
    cr_expect(strstr(rlx_last_error(), "<profile>:1:2:"), "%s", rlx_last_error());
}

Test(profile, unknown_table) {
    expect_refused("[fusion]\npolicy = \"fused\"\n\n[fusoin]\npolicy = \"none\"\n", "bad.rlx.toml:4:2:", "table 'fusoin': unknown table");
}

Test(profile, unknown_key) {
    expect_refused("[fusion]\npolcy = \"fused\"\n", "bad.rlx.toml:2:1: key 'fusion.polcy': unknown key",
                   "takes policy, target, assert_clean, skip");
    expect_refused("[kernels]\nattention_block_k = 64\n", "bad.rlx.toml:2:1:", "key 'kernels.attention_block_k'");
    /* a nested table is an unknown key of its parent */
    expect_refused("[fusion.rules]\nx = 1\n", "bad.rlx.toml:1:", "key 'fusion.rules': unknown key");
    expect_refused("policy = \"fused\"\n", "bad.rlx.toml:1:1: key 'policy'", "unknown top-level key");
}

Test(profile, wrong_types) {
    expect_refused("[passes]\ndce = \"yes\"\n", "bad.rlx.toml:2:7: key 'passes.dce'", "expected a boolean");
    expect_refused("[kernels]\nattention_block_q = 64.0\n", "bad.rlx.toml:2:21: key 'kernels.attention_block_q'", "expected an integer, got a float");
    expect_refused("[fusion]\npolicy = 1\n", "bad.rlx.toml:2:10: key 'fusion.policy'", "expected a string");
    expect_refused("[precision]\ncompute = [\"bf16\"]\n", "bad.rlx.toml:2:11: key 'precision.compute'", "got an array");
    expect_refused("fusion = 3\n", "bad.rlx.toml:1:1: table 'fusion'", "expected a table");
    expect_refused("[[passes]]\ndce = true\n", "bad.rlx.toml:1:3: table 'passes'", "got an array");
}

Test(profile, bad_values) {
    expect_refused("[fusion]\npolicy = \"fast\"\n", "bad.rlx.toml:2:10: key 'fusion.policy': \"fast\" is not one of",
                   "\"fused\", \"none\"");
    expect_refused("[fusion]\ntarget = \"tpu\"\n", "bad.rlx.toml:2:10: key 'fusion.target'", "\"tpu\"");
    expect_refused("[precision]\ncompute = \"fp8\"\n", "key 'precision.compute'", "\"fp8\"");
    expect_refused("[precision]\nmixed = \"always\"\n", "key 'precision.mixed'", "\"always\"");
    expect_refused("[kernels]\nattention_block_q = 96\n", "bad.rlx.toml:2:21: key 'kernels.attention_block_q': 96 is not one of", NULL);
    expect_refused("[kernels]\ngemm_workspace_mb = -1\n", "key 'kernels.gemm_workspace_mb': -1 is outside [0, 4096]", NULL);
    expect_refused("[kernels]\ngemm_workspace_mb = 1000000000000\n", "key 'kernels.gemm_workspace_mb'", "outside");
    /* case matters: the values are spelled as documented */
    expect_refused("[precision]\ncompute = \"BF16\"\n", "key 'precision.compute'", NULL);
    expect_refused("[fusion]\npolicy = \"fused\"\nskip = true\n", "bad.rlx.toml:3:8: key 'fusion.skip'", "contradicts");
}

Test(profile, toml_syntax_and_duplicates) {
    expect_refused("[fusion]\npolicy = \"fused\"\npolicy = \"none\"\n", "bad.rlx.toml:3:10: key 'fusion.policy': defined twice",
                   "cannot redefine existing string 'policy'");
    expect_refused("[passes]\ndce = true\n[fusion]\ntarget = \"cpu\"\n[passes]\n", "bad.rlx.toml:5:1: table 'passes': defined twice", NULL);
    expect_refused("dce = 1\ndce = 2\n", "bad.rlx.toml:2:7: key 'dce': defined twice", NULL);
    expect_refused("[fusion\npolicy = \"fused\"\n", "bad.rlx.toml:1:", "TOML syntax error");
    expect_refused("[passes]\ndce = tru\n", "bad.rlx.toml:2:", "TOML syntax error");
    expect_refused("[passes]\ndce = true true\n", "bad.rlx.toml:2:", "TOML syntax error");
}

/* Bytes an outside probe found to crash or abort toml++ 3.3.0 (UB on non-ASCII outside strings,
 * assertions on "[" + newline), and strings that C would read cut at a NUL: each is a clean
 * RLX_ERR_PROFILE naming the place. This suite runs in the NDEBUG build and in the ASan+UBSan
 * Debug build, so both of toml++'s assertion modes are covered. */
Test(profile, hostile_bytes_refused_cleanly) {
    expect_refused("caf\xc3\xa9 = 1\n", "bad.rlx.toml:1:4: TOML syntax error", "U+00E9 outside a string or comment");
    expect_refused("\xc3\xa9", "bad.rlx.toml:1:1:", "U+00E9");
    expect_refused("\xcc\xaa", "bad.rlx.toml:1:1:", "U+032A");
    expect_refused("[fusion]\npolicy \xe3\x80\x81= \"none\"\n", "bad.rlx.toml:2:8:", "U+3001");
    expect_refused("[\n", "bad.rlx.toml", "TOML syntax error");
    expect_refused("[[\n", "bad.rlx.toml", "TOML syntax error");
    expect_refused("[[[a]]]\n", "bad.rlx.toml", "TOML syntax error");
    expect_refused("[[=", "bad.rlx.toml", "TOML syntax error");
    expect_refused("[fusion]\n[\n", "bad.rlx.toml", "TOML syntax error");
    /* not UTF-8: a lone continuation byte, a truncated sequence, an overlong, a surrogate */
    expect_refused("# \x80\n", "bad.rlx.toml:1:3: not UTF-8 (byte 0x80", NULL);
    expect_refused("a = 1 # \xc3", "bad.rlx.toml:1:9: not UTF-8 (byte 0xc3", NULL);
    expect_refused("# \xc0\xaf\n", "not UTF-8 (byte 0xc0", NULL);
    expect_refused("# \xed\xa0\x80\n", "not UTF-8 (byte 0xed", NULL);
    /* nesting is bounded well before the stack is at risk */
    char deep[400] = "a = ";
    memset(deep + 4, '[', 300);
    expect_refused(deep, "bad.rlx.toml:1:", "nested");
    /* embedded NULs: values, keys and table names are never cut short */
    expect_refused("[fusion]\npolicy = \"fused\\u0000junk\"\n", "bad.rlx.toml:2:10: the string holds a NUL character", NULL);
    expect_refused("[\"fusion\\u0000x\"]\n", "bad.rlx.toml:1:2: the table name holds a NUL character", NULL);
    expect_refused("[fusion]\n\"policy\\u0000\" = \"none\"\n", "bad.rlx.toml:2:1: the key holds a NUL character", NULL);
    /* non-ASCII inside strings: legal TOML, never a profile key or value */
    expect_refused("[fusion]\npolicy = \"fus\xc3\xa9\"\n", "bad.rlx.toml:2:10: the string holds a non-ASCII character", NULL);
    expect_refused("[fusion]\npolicy = \"fus\\u00e9\"\n", "bad.rlx.toml:2:10: the string holds a non-ASCII character", NULL);
    expect_refused("[fusion]\n\"caf\xc3\xa9\" = 1\n", "bad.rlx.toml:2:1: the key holds a non-ASCII character", NULL);
    /* ... while comments may say anything, and a BOM is fine */
    rlx_profile p;
    cr_assert_eq(rlx_profile_parse("\xef\xbb\xbf# caf\xc3\xa9 \xe2\x89\xa4 \xe3\x80\x81\n[fusion]\npolicy = \"none\" # na\xc3\xafve\n",
                                   "ok.rlx.toml", &p),
                 RLX_OK, "%s", rlx_last_error());
    cr_expect_eq(p.fusion_policy, RLX_FUSION_NONE);
}

Test(profile, every_problem_listed_in_file_order) {
    rlx_profile p;
    cr_assert_eq(rlx_profile_parse("[passes]\nverbos = true\ndce = 1\n[fusion]\npolicy = \"fast\"\n", "m.toml", &p), RLX_ERR_PROFILE);
    const char *msg = rlx_last_error();
    const char *a = strstr(msg, "m.toml:2:1: key 'passes.verbos'");
    const char *b = strstr(msg, "m.toml:3:7: key 'passes.dce'");
    const char *c = strstr(msg, "m.toml:5:10: key 'fusion.policy'");
    cr_expect(a && b && c && a < b && b < c, "%s", msg);
}

Test(profile, validate_hand_made) {
    rlx_profile p;
    rlx_profile_preset("prefill", &p);
    cr_expect_eq(rlx_profile_validate(&p), RLX_OK);
    p.attention_block_q = 32;
    cr_expect_eq(rlx_profile_validate(&p), RLX_ERR_PROFILE);
    cr_expect(strstr(rlx_last_error(), "kernels.attention_block_q"), "%s", rlx_last_error());
    rlx_profile_preset("prefill", &p);
    p.target = (rlx_device_kind)9;
    cr_expect_eq(rlx_profile_validate(&p), RLX_ERR_PROFILE);
    cr_expect(strstr(rlx_last_error(), "fusion.target"), "%s", rlx_last_error());
    rlx_profile_preset("prefill", &p);
    p.dce = 2;
    cr_expect_eq(rlx_profile_validate(&p), RLX_ERR_PROFILE);
    char *text = (char *)1;
    cr_expect_eq(rlx_profile_format(&p, &text), RLX_ERR_PROFILE);
    cr_expect_null(text);
}

Test(profile, load_files) {
    char *dir = rlxt_tmpdir();
    const char *good = "[fusion]\npolicy = \"none\"\n";
    char *path = rlxt_write_file(dir, "mine.rlx.toml", good, strlen(good));
    rlx_profile p;
    cr_assert_eq(rlx_profile_load(path, &p), RLX_OK, "%s", rlx_last_error());
    cr_expect_str_eq(p.source, path);
    cr_expect_eq(p.fusion_policy, RLX_FUSION_NONE);
    const char *bad = "\n\n[passes]\ndce = 0\n";
    char *bpath = rlxt_write_file(dir, "bad.rlx.toml", bad, strlen(bad));
    cr_expect_eq(rlx_profile_load(bpath, &p), RLX_ERR_PROFILE);
    char want[1200];
    snprintf(want, sizeof want, "%s:4:7: key 'passes.dce'", bpath);
    cr_expect(strstr(rlx_last_error(), want), "%s", rlx_last_error());
    char missing[1200];
    snprintf(missing, sizeof missing, "%s/none.rlx.toml", dir);
    cr_expect_eq(rlx_profile_load(missing, &p), RLX_ERR_IO);
    cr_expect(strstr(rlx_last_error(), missing), "%s", rlx_last_error());
    cr_expect_eq(rlx_profile_load(dir, &p), RLX_ERR_IO); /* a directory */
    cr_expect(strstr(rlx_last_error(), "not a regular file"), "%s", rlx_last_error());
    cr_expect_eq(rlx_profile_load(NULL, &p), RLX_ERR_INVALID_ARGUMENT);
    free(path);
    free(bpath);
    rlxt_rmtree(dir);
    free(dir);
}

/* ---- next to the weights ------------------------------------------------------------------- */

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

/* A model directory (config.json + model.safetensors) with random weights. */
static char *model_dir(void) {
    rlx_llama_config c = tiny_cfg();
    rlx_weights *w;
    cr_assert_eq(rlx_llama_random_weights(&c, 5, RLX_DTYPE_F32, &w), RLX_OK, "%s", rlx_last_error());
    char *dir = rlxt_tmpdir();
    cr_assert_eq(rlx_weights_save_dir(w, dir), RLX_OK, "%s", rlx_last_error());
    rlx_weights_destroy(w);
    return dir;
}

Test(profile, near_found_not_found_and_bad) {
    char *dir = model_dir();
    rlx_weights *w;
    cr_assert_eq(rlx_weights_open(dir, &w), RLX_OK, "%s", rlx_last_error());
    rlx_profile p;
    cr_assert_eq(rlx_profile_near(w, "llama32", &p), RLX_OK, "%s", rlx_last_error());
    cr_expect_str_eq(p.source, "preset:prefill");
    const char *text = "[passes]\nverbose = true\n";
    char *path = rlxt_write_file(dir, "llama32.rlx.toml", text, strlen(text));
    cr_assert_eq(rlx_profile_near(w, "llama32", &p), RLX_OK, "%s", rlx_last_error());
    cr_expect_str_eq(p.source, path);
    cr_expect_eq(p.verbose, 1);
    /* another family's file is not ours */
    cr_assert_eq(rlx_profile_near(w, "bert", &p), RLX_OK);
    cr_expect_str_eq(p.source, "preset:prefill");
    cr_expect_eq(rlx_profile_near(w, "../x", &p), RLX_ERR_INVALID_ARGUMENT);
    cr_expect_eq(rlx_profile_near(w, "", &p), RLX_ERR_INVALID_ARGUMENT);
    /* present but bad: an error, never skipped */
    const char *bad = "[passes]\nverbose = 1\n";
    free(rlxt_write_file(dir, "llama32.rlx.toml", bad, strlen(bad)));
    cr_expect_eq(rlx_profile_near(w, "llama32", &p), RLX_ERR_PROFILE);
    cr_expect(strstr(rlx_last_error(), "llama32.rlx.toml:2:11: key 'passes.verbose'"), "%s", rlx_last_error());
    rlx_weights_destroy(w);
    /* in-memory weights have no directory: the preset */
    rlx_llama_config c = tiny_cfg();
    cr_assert_eq(rlx_llama_random_weights(&c, 5, RLX_DTYPE_F32, &w), RLX_OK);
    cr_assert_eq(rlx_profile_near(w, "llama32", &p), RLX_OK);
    cr_expect_str_eq(p.source, "preset:prefill");
    rlx_weights_destroy(w);
    free(path);
    rlxt_rmtree(dir);
    free(dir);
}

/* ---- effects on a build --------------------------------------------------------------------- */

/* A flow with a dead branch: a linear on the embeddings whose weight does not exist and whose
 * output nothing reads (the cursor is moved back to the embeddings). */
static rlx_flow *flow_with_dead_branch(const rlx_llama_config *c) {
    rlx_flow *f;
    cr_assert_eq(rlx_flow_create("dead", &f), RLX_OK);
    rlx_flow_input_tokens(f, "tokens", 1, 8);
    rlx_flow_token_embed(f, NULL);
    rlx_flow_linear(f, "unused.probe.weight", NULL);
    rlx_flow_select(f, "token_embed");
    rlx_flow_final_norm(f, 1e-5);
    rlx_flow_lm_head(f, c->vocab_size, c->hidden_size, c->tie_word_embeddings);
    cr_assert_eq(rlx_flow_status(f), RLX_OK, "%s", rlx_last_error());
    return f;
}

Test(profile, dce_removes_dead_stages_and_their_weights) {
    rlx_llama_config c = tiny_cfg();
    rlx_weights *w;
    cr_assert_eq(rlx_llama_random_weights(&c, 5, RLX_DTYPE_F32, &w), RLX_OK);
    rlx_flow *f = flow_with_dead_branch(&c);
    cr_expect_eq(rlx_flow_stage_count(f), 5);

    rlx_profile p;
    rlx_profile_preset("prefill", &p);
    rlx_build_params bp = rlx_build_default_params();
    bp.profile = &p;
    rlx_model *m;
    cr_assert_eq(rlx_model_build(f, w, &bp, &m), RLX_OK, "%s", rlx_last_error());
    cr_expect_str_eq(rlx_model_pass_log(m), "dce: removed 1 of 5 stages\n");
    char *text;
    cr_assert_eq(rlx_model_format(m, &text), RLX_OK);
    cr_expect(!strstr(text, "unused.probe.weight"), "%s", text);
    rlx_free(text);
    rlx_model_destroy(m);

    p.verbose = 1;
    cr_assert_eq(rlx_model_build(f, w, &bp, &m), RLX_OK, "%s", rlx_last_error());
    cr_expect(strstr(rlx_model_pass_log(m), "dce: removed stage 2 linear (linear): nothing reads its output\n"), "%s",
              rlx_model_pass_log(m));
    rlx_model_destroy(m);

    /* without dce the dead stage stays, and its weight is required */
    cr_assert_eq(rlx_profile_parse("[passes]\ndce = false\n", "nodce", &p), RLX_OK);
    cr_expect_eq(rlx_model_build(f, w, &bp, &m), RLX_ERR_MISSING_WEIGHT);
    cr_expect(strstr(rlx_last_error(), "unused.probe.weight"), "%s", rlx_last_error());
    rlx_flow_destroy(f);
    rlx_weights_destroy(w);
}

Test(profile, dce_output_equal_and_llama_untouched) {
    rlx_llama_config c = tiny_cfg();
    rlx_weights *w;
    cr_assert_eq(rlx_llama_random_weights(&c, 5, RLX_DTYPE_F32, &w), RLX_OK);
    rlx_llama_recipe_params rp = rlx_llama_recipe_default_params();
    rp.seq = 8;
    rlx_flow *f;
    cr_assert_eq(rlx_llama_flow(&c, &rp, &f), RLX_OK);
    rlx_build_params bp = rlx_build_default_params();
    rlx_model *m;
    cr_assert_eq(rlx_model_build(f, w, &bp, &m), RLX_OK, "%s", rlx_last_error());
    /* the LLaMA flow has no dead stage; without a profile the model still records the preset */
    cr_expect(strstr(rlx_model_pass_log(m), "dce: removed 0 of "), "%s", rlx_model_pass_log(m));
    cr_expect_str_eq(rlx_model_profile(m)->source, "preset:prefill");
    rlx_model_destroy(m);
    rlx_flow_destroy(f);
    rlx_weights_destroy(w);
}

Test(profile, target_picks_the_device_only_for_auto) {
    rlx_llama_config c = tiny_cfg();
    rlx_weights *w;
    cr_assert_eq(rlx_llama_random_weights(&c, 5, RLX_DTYPE_F32, &w), RLX_OK);
    rlx_flow *f = flow_with_dead_branch(&c);
    rlx_profile p;
    cr_assert_eq(rlx_profile_parse("[fusion]\ntarget = \"cpu\"\npolicy = \"none\"\n", "t", &p), RLX_OK);
    rlx_build_params bp = rlx_build_default_params();
    bp.device = RLX_DEVICE_AUTO;
    bp.profile = &p;
    rlx_model *m;
    cr_assert_eq(rlx_model_build(f, w, &bp, &m), RLX_OK, "%s", rlx_last_error());
    cr_expect_eq(rlx_model_device(m), RLX_DEVICE_CPU);
    cr_expect_eq(rlx_model_profile(m)->fusion_policy, RLX_FUSION_NONE);
    cr_expect_str_eq(rlx_model_profile(m)->source, "t");
    rlx_model_destroy(m);
    /* target cuda: the build goes for the GPU (on a machine without one: no device) */
    cr_assert_eq(rlx_profile_parse("[fusion]\ntarget = \"cuda\"\n", "t", &p), RLX_OK);
    rlx_status s = rlx_model_build(f, w, &bp, &m);
    cr_expect(s == RLX_ERR_NO_DEVICE || (s == RLX_OK && rlx_model_device(m) == RLX_DEVICE_CUDA), "%s: %s", rlx_status_name(s),
              rlx_last_error());
    rlx_model_destroy(m);
    /* an explicit device wins over the profile's target */
    bp.device = RLX_DEVICE_CPU;
    cr_assert_eq(rlx_model_build(f, w, &bp, &m), RLX_OK, "%s", rlx_last_error());
    cr_expect_eq(rlx_model_device(m), RLX_DEVICE_CPU);
    cr_expect_eq(rlx_model_profile(m)->target, RLX_DEVICE_CUDA);
    rlx_model_destroy(m);
    /* a hand-made profile with a bad value is refused by the build */
    p.gemm_workspace_mb = -5;
    cr_expect_eq(rlx_model_build(f, w, &bp, &m), RLX_ERR_PROFILE);
    cr_expect(strstr(rlx_last_error(), "kernels.gemm_workspace_mb"), "%s", rlx_last_error());
    rlx_flow_destroy(f);
    rlx_weights_destroy(w);
}

/* ---- rlx plan / rlx run ----------------------------------------------------------------------- */

static char out_text[1 << 17], err_text[1 << 14];

static int rlx(const char *args) {
    int rc = rlxt_run_cli(NULL, args, out_text, sizeof out_text, err_text, sizeof err_text);
    cr_assert(rc >= 0, "rlx %s: %s", args, rc == -2 ? "RLX_CLI is not set (run through ctest)" : "did not exit normally");
    return rc;
}

Test(profile, plan_says_which_profile_and_from_where) {
    char *dir = model_dir();
    char args[2048];
    snprintf(args, sizeof args, "plan --model %s --seq 8", dir);
    cr_assert_eq(rlx(args), 0, "%s", err_text);
    cr_expect(strstr(out_text, "profile: preset:prefill (no llama32.rlx.toml next to the weights): fusion.policy=fused "
                               "fusion.target=auto"),
              "%s", out_text);
    cr_expect(strstr(out_text, "dce: removed 0 of "), "%s", out_text);

    const char *near = "[fusion]\npolicy = \"none\"\n[passes]\nverbose = true\n";
    char *npath = rlxt_write_file(dir, "llama32.rlx.toml", near, strlen(near));
    cr_assert_eq(rlx(args), 0, "%s", err_text);
    char want[1400];
    snprintf(want, sizeof want, "profile: %s (next to the weights): fusion.policy=none", npath);
    cr_expect(strstr(out_text, want), "%s", out_text);
    cr_expect(strstr(out_text, "passes.verbose=true"), "%s", out_text);

    const char *mine = "[precision]\ncompute = \"f32\"\n";
    char *mpath = rlxt_write_file(dir, "mine.toml", mine, strlen(mine));
    snprintf(args, sizeof args, "plan --model %s --seq 8 --profile %s", dir, mpath);
    cr_assert_eq(rlx(args), 0, "%s", err_text);
    snprintf(want, sizeof want, "profile: %s (--profile): fusion.policy=fused", mpath);
    cr_expect(strstr(out_text, want), "%s", out_text);
    cr_expect(strstr(out_text, "precision.compute=f32"), "%s", out_text);

    /* a bad --profile: usage error, one line, file:line:col and the key */
    const char *bad = "[precision]\ncompute = \"fp4\"\n";
    char *bpath = rlxt_write_file(dir, "bad.toml", bad, strlen(bad));
    snprintf(args, sizeof args, "plan --model %s --seq 8 --profile %s", dir, bpath);
    cr_expect_eq(rlx(args), 2);
    snprintf(want, sizeof want, "%s:2:11: key 'precision.compute'", bpath);
    cr_expect(strstr(err_text, want), "%s", err_text);
    cr_expect(!strncmp(err_text, "rlx: error: ", 12) && strchr(err_text, '\n') == err_text + strlen(err_text) - 1, "%s", err_text);
    snprintf(args, sizeof args, "run --model %s --tokens 1,2,3 --profile %s", dir, bpath);
    cr_expect_eq(rlx(args), 2);
    cr_expect(strstr(err_text, want), "%s", err_text);
    /* a bad llama32.rlx.toml next to the weights: the model's error (exit 1) */
    free(rlxt_write_file(dir, "llama32.rlx.toml", bad, strlen(bad)));
    snprintf(args, sizeof args, "run --model %s --tokens 1,2,3 --device cpu", dir);
    cr_expect_eq(rlx(args), 1);
    cr_expect(strstr(err_text, "llama32.rlx.toml:2:11: key 'precision.compute'"), "%s", err_text);
    /* --profile target cpu with the default device (auto) runs on the CPU */
    const char *cpu = "[fusion]\ntarget = \"cpu\"\n";
    char *cpath = rlxt_write_file(dir, "cpu.toml", cpu, strlen(cpu));
    snprintf(args, sizeof args, "run --model %s --tokens 1,2,3 --profile %s", dir, cpath);
    cr_expect_eq(rlx(args), 0, "%s", err_text);
    cr_expect(strstr(out_text, "device cpu"), "%s", out_text);
    free(npath);
    free(mpath);
    free(bpath);
    free(cpath);
    rlxt_rmtree(dir);
    free(dir);
}
