/* `rlx check --model`'s whole-model budget (docs/numerics.md) on the simt device: every LLaMA and
 * encoder fixture passes in each precision and fusion policy, and an error planted in any one
 * kernel (rlx_simt_device_plant_error) fails the check. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rlx/encoder.h"
#include "rlx/profile.h"
#include "rlx_simt_device.h"
#include "testutil.h"
#include "tools/check.h"

/* A planted error of 2^-5 = 3% per element: 8 times the bf16 rounding unit, what a kernel with a
 * wrong scale, a lost term or a too-coarse intermediate produces; far below what a crash-level
 * bug does. */
#define PLANT_REL 0x1p-5

typedef struct model_case {
    rlx_weights *w;
    rlx_flow *flow;
    int64_t lens[3], n_seqs, type_vocab;
    int argmax;
    int no_prune; /* build with passes.prune_last_layer = false (the final norm fused with the gather) */
    rlx_mixed_precision mixed; /* RLX_MIXED_AUTO: the f32 residual stream */
} model_case;

static void close_case(model_case *c) {
    rlx_flow_destroy(c->flow);
    rlx_weights_destroy(c->w);
}

static void llama_case(model_case *c, const rlx_llama_config *cfg, rlx_weights *w, int last_token) {
    memset(c, 0, sizeof *c);
    c->w = w;
    c->n_seqs = 3;
    c->lens[0] = 33, c->lens[1] = 1, c->lens[2] = 17; /* what rlx check runs */
    for (int q = 0; q < 3; q++)
        if (c->lens[q] > cfg->max_position_embeddings) c->lens[q] = cfg->max_position_embeddings;
    rlx_llama_recipe_params rp = rlx_llama_recipe_default_params();
    rp.batch = 3;
    rp.seq = c->lens[0];
    rp.last_token_logits = last_token;
    cr_assert_eq(rlx_llama_flow(cfg, &rp, &c->flow), RLX_OK, "%s", rlx_last_error());
    c->argmax = 1;
}

static void llama_dir_case(model_case *c, const char *name) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/llama/%s", rlxt_fixtures_dir(), name);
    rlx_weights *w;
    cr_assert_eq(rlx_weights_open(dir, &w), RLX_OK, "%s", rlx_last_error());
    rlx_llama_config cfg;
    cr_assert_eq(rlx_llama_config_parse(rlx_weights_config_json(w), dir, &cfg), RLX_OK, "%s", rlx_last_error());
    llama_case(c, &cfg, w, 0);
}

/* The built-in tiny LLaMA (head_dim 32: rope_attention), with one layer for the planted errors
 * (layers = 0: its own 4); head_dim 64 takes the flash kernel. */
static void tiny_case(model_case *c, int64_t head_dim, int last_token, int64_t layers) {
    rlx_llama_config cfg;
    cr_assert_eq(rlx_llama_builtin_config("tiny", &cfg), RLX_OK);
    if (layers) cfg.num_hidden_layers = layers;
    if (head_dim) {
        cfg.head_dim = cfg.rope.head_dim = head_dim;
        cfg.num_attention_heads = 4, cfg.num_key_value_heads = 2;
    }
    rlx_weights *w;
    cr_assert_eq(rlx_llama_random_weights(&cfg, 42, RLX_DTYPE_BF16, &w), RLX_OK);
    llama_case(c, &cfg, w, last_token);
}

static void encoder_case(model_case *c, const char *name, rlx_pool pool, int normalize) {
    memset(c, 0, sizeof *c);
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/bert/%s", rlxt_fixtures_dir(), name);
    cr_assert_eq(rlx_weights_open(dir, &c->w), RLX_OK, "%s", rlx_last_error());
    rlx_encoder_config cfg;
    cr_assert_eq(rlx_encoder_config_from_weights(c->w, NULL, &cfg), RLX_OK, "%s", rlx_last_error());
    c->n_seqs = 3;
    c->lens[0] = 33, c->lens[1] = 1, c->lens[2] = 17;
    for (int q = 0; q < 3; q++)
        if (c->lens[q] > cfg.max_position_embeddings) c->lens[q] = cfg.max_position_embeddings;
    rlx_encoder_recipe_params rp = rlx_encoder_recipe_default_params();
    rp.batch = 3;
    rp.seq = c->lens[0];
    rp.pool = pool;
    rp.normalize = normalize;
    cr_assert_eq(rlx_encoder_flow(&cfg, &rp, &c->flow), RLX_OK, "%s", rlx_last_error());
    c->type_vocab = cfg.type_vocab_size;
}

static rlx__check_row run_check(const model_case *c, rlx_precision prec, rlx_fusion_policy fusion, const char *label) {
    rlx_build_params bp = rlx_build_default_params();
    bp.device = RLX_DEVICE_SIMT;
    bp.precision = prec;
    bp.fusion = fusion;
    rlx_profile prof;
    { /* always a profile: the kernels a case plants into depend on precision.mixed */
        cr_assert_eq(rlx_profile_preset("prefill", &prof), RLX_OK);
        prof.prune_last_layer = !c->no_prune;
        prof.mixed = c->mixed;
        prof.compute = prec;
        prof.fusion_policy = fusion;
        bp.profile = &prof;
    }
    rlx__model_check mc = {.flow = c->flow, .w = c->w, .dev = &bp, .lens = c->lens, .n_seqs = c->n_seqs, .seed = 99, .label = label,
                           .argmax = c->argmax, .type_vocab = c->type_vocab};
    rlx__check_report r = {0};
    cr_assert_eq(rlx__check_model_ex(&mc, &r), RLX_OK, "%s: %s", label, rlx_last_error());
    cr_assert_eq(r.n, 1);
    rlx__check_row row = r.rows[0];
    rlx__check_report_free(&r);
    cr_log_info("%-28s %-5s %-5s 1-cos %.3g (bound %.3g, naive %.3g) rel %.3g (bound %.3g) argmax %lld/%lld %s", label,
                prec == RLX_PRECISION_F32 ? "f32" : "bf16", fusion == RLX_FUSION_NONE ? "none" : "fused", 1 - row.min_cos,
                1 - row.cos_bound, 1 - row.naive_cos, row.rel, row.rel_bound, (long long)row.agree, (long long)row.decisive,
                row.pass ? "pass" : "FAIL");
    return row;
}

/* all = 0: the default build only (what `rlx check --model` runs); 1: also unfused and f32. */
static void expect_pass(const model_case *c, const char *label, int all) {
    const rlx_precision prec[3] = {RLX_PRECISION_BF16, RLX_PRECISION_BF16, RLX_PRECISION_F32};
    const rlx_fusion_policy pol[3] = {RLX_FUSION_FUSED, RLX_FUSION_NONE, RLX_FUSION_FUSED};
    for (int i = 0; i < (all ? 3 : 1); i++) {
        rlx__check_row row = run_check(c, prec[i], pol[i], label);
        cr_expect(row.pass, "%s (%s, %s): %s", label, row.dtype, pol[i] == RLX_FUSION_NONE ? "none" : "fused", row.note);
        cr_expect_str_eq(row.dtype, prec[i] == RLX_PRECISION_F32 ? "f32" : "bf16");
    }
}

Test(simt_check, every_llama_fixture_passes) {
    rlx_simt_device_install();
    static const char *cases[] = {"gqa_tied_f32", "mqa_untied_bf16", "llama3_scaling_f32", "head_dim_explicit_f32", "sharded_bf16",
                                  "legacy_config_f32", "f16", "single_token_f32", "legacy_buffers_f32"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        model_case c;
        llama_dir_case(&c, cases[i]);
        expect_pass(&c, cases[i], i == 0);
        close_case(&c);
    }
    model_case c;
    tiny_case(&c, 0, 0, 0);
    expect_pass(&c, "built-in tiny", 1);
    close_case(&c);
    tiny_case(&c, 64, 0, 0);
    expect_pass(&c, "tiny, head_dim 64 (flash)", 0);
    close_case(&c);
}

Test(simt_check, every_encoder_fixture_passes) {
    rlx_simt_device_install();
    static const char *cases[] = {"bert_token_types_f32", "bert_single_type_f32", "bert_prefixed_mlm_f32", "nomic_bert_f32",
                                  "st_legacy_bert_f32"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        model_case c;
        encoder_case(&c, cases[i], RLX_POOL_NONE, 0);
        expect_pass(&c, cases[i], i == 0 || i == 3);
        close_case(&c);
    }
}

/* The planted error in `kernel` makes the check fail; without it the same check passes. */
static void expect_caught(const model_case *c, rlx_fusion_policy fusion, const char *kernel) {
    rlx__check_row clean = run_check(c, RLX_PRECISION_BF16, fusion, "clean");
    cr_expect(clean.pass, "%s: the clean run fails: %s", kernel, clean.note);
    rlx_simt_device_plant_error(kernel, PLANT_REL);
    rlx__check_row bad = run_check(c, RLX_PRECISION_BF16, fusion, kernel);
    rlx_simt_device_plant_error(NULL, 0);
    cr_expect(!bad.pass, "%s: a planted error of %g per element passes the check (1-cos %.3g, bound %.3g; rel %.3g, bound %.3g)", kernel,
              PLANT_REL, 1 - bad.min_cos, 1 - bad.cos_bound, bad.rel, bad.rel_bound);
}

static void planted_llama(rlx_fusion_policy fusion, int64_t head_dim, int last_token, const char *kernel) {
    rlx_simt_device_install();
    model_case c;
    tiny_case(&c, head_dim, last_token, 1);
    c.no_prune = last_token; /* the last-token kernels run where pruning does not move the gather up */
    c.lens[0] = 9, c.lens[2] = 5; /* shorter than rlx check's prompts: seconds per test */
    expect_caught(&c, fusion, kernel);
    close_case(&c);
}

/* The f32 residual stream's kernels (precision.mixed = "auto"): their plans run them in place of
 * embed_rowscale, rms_rowscale, add, rms_norm and the final norm. */
static void planted_f32_stream(rlx_fusion_policy fusion, int last_token, int no_prune, const char *kernel) {
    rlx_simt_device_install();
    model_case c;
    tiny_case(&c, 0, last_token, 1);
    c.no_prune = no_prune;
    c.mixed = RLX_MIXED_AUTO;
    c.lens[0] = 9, c.lens[2] = 5;
    expect_caught(&c, fusion, kernel);
    close_case(&c);
}

static void planted_encoder(const char *name, rlx_pool pool, int normalize, rlx_fusion_policy fusion, const char *kernel) {
    rlx_simt_device_install();
    model_case c;
    encoder_case(&c, name, pool, normalize);
    expect_caught(&c, fusion, kernel);
    close_case(&c);
}

/* the fused LLaMA plan */
Test(simt_check, planted_gemm) { planted_llama(RLX_FUSION_FUSED, 0, 0, "gemm"); }
Test(simt_check, planted_embed_rowscale) { planted_llama(RLX_FUSION_FUSED, 0, 0, "embed_rowscale"); }
Test(simt_check, planted_rms_rowscale) { planted_llama(RLX_FUSION_FUSED, 0, 0, "rms_rowscale"); }
Test(simt_check, planted_flash_attention) { planted_llama(RLX_FUSION_FUSED, 64, 0, "flash_attention"); }
Test(simt_check, planted_swiglu_scaled) { planted_llama(RLX_FUSION_FUSED, 0, 0, "swiglu_scaled"); }
Test(simt_check, planted_rope_attention) { planted_llama(RLX_FUSION_FUSED, 0, 0, "rope_attention"); }
Test(simt_check, planted_kv_write) { planted_llama(RLX_FUSION_FUSED, 0, 0, "kv_write"); }
Test(simt_check, planted_last_token_rms_norm) { planted_llama(RLX_FUSION_FUSED, 0, 1, "last_token_rms_norm"); }
/* the unfused plan */
Test(simt_check, planted_embed) { planted_llama(RLX_FUSION_NONE, 0, 0, "embed"); }
Test(simt_check, planted_rms_norm) { planted_llama(RLX_FUSION_NONE, 0, 0, "rms_norm"); }
Test(simt_check, planted_rope) { planted_llama(RLX_FUSION_NONE, 0, 0, "rope"); }
Test(simt_check, planted_attention) { planted_llama(RLX_FUSION_NONE, 0, 0, "attention"); }
Test(simt_check, planted_add) { planted_llama(RLX_FUSION_NONE, 0, 0, "add"); }
Test(simt_check, planted_silu_mul) { planted_llama(RLX_FUSION_NONE, 0, 0, "silu_mul"); }
Test(simt_check, planted_last_token) { planted_llama(RLX_FUSION_NONE, 0, 1, "last_token"); }
/* encoders */
Test(simt_check, planted_embed_f32) { planted_f32_stream(RLX_FUSION_FUSED, 0, 0, "embed_f32"); }
Test(simt_check, planted_residual_rowscale) { planted_f32_stream(RLX_FUSION_FUSED, 0, 0, "residual_rowscale"); }
Test(simt_check, planted_residual_add) { planted_f32_stream(RLX_FUSION_NONE, 0, 0, "residual_add"); }
Test(simt_check, planted_residual_rms_norm) { planted_f32_stream(RLX_FUSION_NONE, 0, 0, "residual_rms_norm"); }
Test(simt_check, planted_residual_rms_norm_last_token) { planted_f32_stream(RLX_FUSION_FUSED, 1, 1, "residual_rms_norm"); }
Test(simt_check, planted_last_token_f32) { planted_f32_stream(RLX_FUSION_FUSED, 1, 0, "last_token"); }

Test(simt_check, planted_layer_norm) { planted_encoder("bert_token_types_f32", RLX_POOL_NONE, 0, RLX_FUSION_FUSED, "layer_norm"); }
Test(simt_check, planted_gelu) { planted_encoder("bert_token_types_f32", RLX_POOL_NONE, 0, RLX_FUSION_FUSED, "gelu"); }
Test(simt_check, planted_gather_add) { planted_encoder("bert_token_types_f32", RLX_POOL_NONE, 0, RLX_FUSION_FUSED, "gather_add"); }
Test(simt_check, planted_slice_cols) { planted_encoder("nomic_bert_f32", RLX_POOL_NONE, 0, RLX_FUSION_FUSED, "slice_cols"); }
Test(simt_check, planted_seq_pool) { planted_encoder("st_legacy_bert_f32", RLX_POOL_MEAN, 0, RLX_FUSION_FUSED, "seq_pool"); }
Test(simt_check, planted_l2_normalize) { planted_encoder("st_legacy_bert_f32", RLX_POOL_MEAN, 1, RLX_FUSION_FUSED, "l2_normalize"); }
