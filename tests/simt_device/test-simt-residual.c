/* The f32 residual stream (precision.mixed = "auto") on the simt device: the plan it makes (the
 * stream's buffers f32, the residual GEMMs f32 in and out, no extra kernel in the fused LLaMA
 * plan), whole models against the f32 CPU reference within rlx check's budget, and the deep
 * fixture (32 layers, tools/deep_weights.h) holding per-position cosine >= 0.999 where the bf16
 * residual stream does not (docs/numerics.md has the depth sweep). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rlx/encoder.h"
#include "rlx/profile.h"
#include "rlx_simt_device.h"
#include "testutil.h"
#include "tools/check.h"
#include "tools/deep_weights.h"

static rlx_profile profile(rlx_mixed_precision mixed, rlx_fusion_policy fusion) {
    rlx_profile p;
    cr_assert_eq(rlx_profile_preset("prefill", &p), RLX_OK);
    p.mixed = mixed;
    p.fusion_policy = fusion;
    return p;
}

static rlx_flow *llama_flow(const rlx_llama_config *c, int64_t batch, int64_t seq, int last_token) {
    rlx_llama_recipe_params p = rlx_llama_recipe_default_params();
    p.batch = batch;
    p.seq = seq;
    p.last_token_logits = last_token;
    rlx_flow *f;
    cr_assert_eq(rlx_llama_flow(c, &p, &f), RLX_OK, "%s", rlx_last_error());
    return f;
}

static rlx_model *build(const rlx_flow *f, const rlx_weights *w, const rlx_profile *prof) {
    rlx_build_params bp = rlx_build_default_params();
    bp.device = RLX_DEVICE_SIMT;
    bp.profile = prof;
    rlx_model *m;
    cr_assert_eq(rlx_model_build(f, w, &bp, &m), RLX_OK, "%s", rlx_last_error());
    return m;
}

static rlx__check_row check(const rlx_flow *f, const rlx_weights *w, const rlx_profile *prof, const int64_t *lens, int64_t n_seqs,
                            const char *label) {
    rlx_build_params bp = rlx_build_default_params();
    bp.device = RLX_DEVICE_SIMT;
    bp.profile = prof;
    rlx__check_report r = {0};
    cr_assert_eq(rlx__check_model(f, w, &bp, lens, n_seqs, 99, label, &r), RLX_OK, "%s: %s", label, rlx_last_error());
    cr_assert_eq(r.n, 1);
    rlx__check_row row = r.rows[0];
    rlx__check_report_free(&r);
    cr_log_info("%-30s %-17s 1-cos %.3e (bound %.3e, naive %.3e)  rel %.3g  %s", label, row.dtype, 1 - row.min_cos, 1 - row.cos_bound,
                1 - row.naive_cos, row.rel, row.pass ? "pass" : "FAIL");
    return row;
}

/* The fused LLaMA plan with the f32 stream: the same kernels as without it (the shadow and the
 * scales come from kernels that run anyway), every stream buffer f32, the residual GEMMs f32 in
 * and out, their operand GEMMs reading the bf16 copy. */
Test(simt_residual, fused_plan_contract) {
    rlx_simt_device_install();
    rlx_llama_config c;
    cr_assert_eq(rlx_llama_builtin_config("tiny", &c), RLX_OK);
    c.num_hidden_layers = 3;
    rlx_weights *w;
    cr_assert_eq(rlx_llama_random_weights(&c, 3, RLX_DTYPE_BF16, &w), RLX_OK);
    for (int last = 0; last < 2; last++) {
        rlx_flow *f = llama_flow(&c, 2, 16, last);
        rlx_profile pn = profile(RLX_MIXED_NONE, RLX_FUSION_FUSED), pa = profile(RLX_MIXED_AUTO, RLX_FUSION_FUSED);
        rlx_model *mn = build(f, w, &pn), *ma = build(f, w, &pa);
        const rlx__plan *n = &mn->dev->plan, *a = &ma->dev->plan;
        cr_expect_eq(n->n_f32_resid, 0);
        cr_expect_gt(a->n_f32_resid, 2 * c.num_hidden_layers, "%d stream buffers", a->n_f32_resid);
        cr_expect_eq(a->n, n->n, "last-token %d: %d kernels with the f32 stream, %d without", last, a->n, n->n);
        cr_expect_eq(a->n_missed, n->n_missed, "%s", a->missed ? a->missed : "");
        int resid_gemms = 0, shadows = 0;
        for (int i = 0; i < a->n; i++) {
            const rlx__kernel *k = &a->k[i];
            cr_expect_neq(k->kind, RLX__K_RESIDUAL_CAST, "kernel %d: a cast in the fused LLaMA plan", i);
            cr_expect_eq(k->kind, n->k[i].kind, "kernel %d: %s against %s", i, rlx__kernel_name(k->kind), rlx__kernel_name(n->k[i].kind));
            if (k->kind == RLX__K_GEMM) {
                cr_expect(!a->buf[k->in[0]].stream, "kernel %d: a GEMM reads the f32 stream as its operand", i);
                if (k->residual >= 0) {
                    resid_gemms++;
                    cr_expect(a->buf[k->residual].stream && a->buf[k->out].stream && a->buf[k->out].elem == 4, "kernel %d: C and D f32", i);
                }
            }
            shadows += k->shadow >= 0;
            if (k->shadow >= 0) cr_expect(a->buf[k->shadow].kind == 0 && a->buf[k->shadow].elem == 2, "kernel %d: the copy is bf16", i);
        }
        cr_expect_eq(resid_gemms, 2 * c.num_hidden_layers);
        cr_expect_gt(shadows, 0);
        /* the stream costs bytes, not kernels: f32 rows and their bf16 copies (the arena's peak may
         * not move: the gate|up buffer dominates it) */
        cr_expect_gt(a->naive_bytes, n->naive_bytes);
        cr_expect_geq(a->arena_bytes, n->arena_bytes);
        rlx_model_destroy(mn), rlx_model_destroy(ma);
        rlx_flow_destroy(f);
    }
    rlx_weights_destroy(w);
}

/* Whole models with the f32 stream, fused and unfused, against the f32 reference. */
Test(simt_residual, models_within_budget) {
    rlx_simt_device_install();
    int64_t lens[3] = {33, 1, 17};
    rlx_llama_config c;
    cr_assert_eq(rlx_llama_builtin_config("tiny", &c), RLX_OK);
    rlx_weights *w;
    cr_assert_eq(rlx_llama_random_weights(&c, 42, RLX_DTYPE_BF16, &w), RLX_OK);
    rlx_flow *f = llama_flow(&c, 3, 33, 0);
    for (int pol = 0; pol < 2; pol++) {
        rlx_profile p = profile(RLX_MIXED_AUTO, pol ? RLX_FUSION_NONE : RLX_FUSION_FUSED);
        rlx__check_row row = check(f, w, &p, lens, 3, pol ? "tiny, unfused" : "tiny, fused");
        cr_expect(row.pass, "%s", row.note);
        cr_expect_str_eq(row.dtype, "bf16+f32 residual");
    }
    rlx_flow_destroy(f);
    rlx_weights_destroy(w);
    /* a fixture with head_dim 16 (rope_attention) and f32 weights */
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/llama/gqa_tied_f32", rlxt_fixtures_dir());
    cr_assert_eq(rlx_weights_open(dir, &w), RLX_OK, "%s", rlx_last_error());
    cr_assert_eq(rlx_llama_config_parse(rlx_weights_config_json(w), dir, &c), RLX_OK);
    f = llama_flow(&c, 3, 33, 1);
    rlx_profile p = profile(RLX_MIXED_AUTO, RLX_FUSION_FUSED);
    rlx__check_row row = check(f, w, &p, lens, 3, "gqa_tied_f32, last-token");
    cr_expect(row.pass, "%s", row.note);
    rlx_flow_destroy(f);
    rlx_weights_destroy(w);
}

/* Every LLaMA fixture, the fused default build with the f32 stream, within rlx check's budget. */
Test(simt_residual, every_llama_fixture_within_budget) {
    rlx_simt_device_install();
    static const char *cases[] = {"mqa_untied_bf16", "llama3_scaling_f32", "head_dim_explicit_f32", "sharded_bf16",
                                  "legacy_config_f32", "f16", "single_token_f32", "legacy_buffers_f32"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char dir[1024];
        snprintf(dir, sizeof dir, "%s/llama/%s", rlxt_fixtures_dir(), cases[i]);
        rlx_weights *w;
        cr_assert_eq(rlx_weights_open(dir, &w), RLX_OK, "%s", rlx_last_error());
        rlx_llama_config c;
        cr_assert_eq(rlx_llama_config_parse(rlx_weights_config_json(w), dir, &c), RLX_OK, "%s", rlx_last_error());
        int64_t lens[3] = {33, 1, 17};
        for (int q = 0; q < 3; q++)
            if (lens[q] > c.max_position_embeddings) lens[q] = c.max_position_embeddings;
        rlx_flow *f = llama_flow(&c, 3, lens[0], 0);
        rlx_profile p = profile(RLX_MIXED_AUTO, RLX_FUSION_FUSED);
        rlx__check_row row = check(f, w, &p, lens, 3, cases[i]);
        cr_expect(row.pass, "%s: %s", cases[i], row.note);
        cr_expect_str_eq(row.dtype, "bf16+f32 residual");
        rlx_flow_destroy(f);
        rlx_weights_destroy(w);
    }
}

/* Post-LN encoders have no residual stream to keep (their stream is a norm's output): "auto"
 * changes nothing there. */
Test(simt_residual, encoders_unchanged) {
    rlx_simt_device_install();
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/bert/bert_token_types_f32", rlxt_fixtures_dir());
    rlx_weights *w;
    cr_assert_eq(rlx_weights_open(dir, &w), RLX_OK, "%s", rlx_last_error());
    rlx_encoder_config cfg;
    cr_assert_eq(rlx_encoder_config_from_weights(w, NULL, &cfg), RLX_OK);
    rlx_encoder_recipe_params rp = rlx_encoder_recipe_default_params();
    rp.seq = 9;
    rlx_flow *f;
    cr_assert_eq(rlx_encoder_flow(&cfg, &rp, &f), RLX_OK);
    rlx_profile pa = profile(RLX_MIXED_AUTO, RLX_FUSION_FUSED);
    rlx_model *m = build(f, w, &pa);
    cr_expect_eq(m->dev->plan.n_f32_resid, 0);
    rlx_model_destroy(m);
    rlx_flow_destroy(f);
    rlx_weights_destroy(w);
}

/* The deep fixture: 32 layers whose weights make rounding error grow with depth. With the f32
 * stream every position keeps cosine >= 0.999 against the f32 reference (and stays within rlx
 * check's budget); the bf16 stream is several times further off, which is what the fixture is
 * for (a random Gaussian model would show no difference). */
Test(simt_residual, deep_model_holds_cosine, .timeout = 600) {
    rlx_simt_device_install();
    rlx__deep_recipe rc = rlx__deep_recipe_default();
    rlx_llama_config c = rlx__deep_config(32);
    cr_assert_geq(c.num_hidden_layers, 24);
    rlx_weights *w;
    cr_assert_eq(rlx__llama_deep_weights(&c, &rc, 7, RLX_DTYPE_BF16, &w), RLX_OK, "%s", rlx_last_error());
    int64_t lens[3] = {17, 1, 9}; /* shorter than rlx check's prompts: seconds, under ASan too */
    rlx_flow *f = llama_flow(&c, 3, 17, 0);
    rlx_profile pa = profile(RLX_MIXED_AUTO, RLX_FUSION_FUSED), pn = profile(RLX_MIXED_NONE, RLX_FUSION_FUSED);
    rlx__check_row a = check(f, w, &pa, lens, 3, "deep 32 layers, f32 stream");
    rlx__check_row n = check(f, w, &pn, lens, 3, "deep 32 layers, bf16 stream");
    cr_expect_eq(a.layers, 32);
    cr_expect(a.min_cos >= 0.999, "f32 residual stream: worst per-position cosine %.6f < 0.999", a.min_cos);
    cr_expect(a.pass, "%s", a.note);
    cr_expect(n.pass, "the bf16 stream within its own (naive bf16) budget: %s", n.note);
    cr_expect(1 - n.min_cos > 5 * (1 - a.min_cos), "the fixture does not show depth effects: 1-cos %.3e (bf16 stream) against %.3e",
              1 - n.min_cos, 1 - a.min_cos);
    rlx_flow_destroy(f);
    rlx_weights_destroy(w);
}

/* Tensor parallelism: the add after each all_reduce is the stream's residual_add, with the row
 * scales and the bf16 copy in the same pass (the kernel that consumes the all-reduce output). */
Test(simt_residual, tensor_parallel_ranks) {
    rlx_simt_device_install();
    rlx_llama_config c;
    cr_assert_eq(rlx_llama_builtin_config("tiny", &c), RLX_OK);
    c.num_hidden_layers = 2;
    rlx_weights *w;
    cr_assert_eq(rlx_llama_random_weights(&c, 5, RLX_DTYPE_BF16, &w), RLX_OK);
    rlx_flow *f = llama_flow(&c, 3, 33, 0);
    rlx_profile pa = profile(RLX_MIXED_AUTO, RLX_FUSION_FUSED);
    rlx_build_params bp = rlx_build_default_params();
    bp.device = RLX_DEVICE_SIMT;
    bp.profile = &pa;
    int64_t lens[3] = {33, 1, 17};
    rlx__check_report r = {0};
    cr_assert_eq(rlx__check_model_tp(f, w, &bp, 2, lens, 3, 99, "tiny tp 2", &r), RLX_OK, "%s", rlx_last_error());
    cr_expect(r.rows[0].pass, "%s", r.rows[0].note);
    cr_expect_str_eq(r.rows[0].dtype, "bf16+f32 residual");
    rlx__check_report_free(&r);
    rlx_flow_destroy(f);
    rlx_weights_destroy(w);
}
