/* Whole models on the simt device (the kernel plan, buffer reuse and every kernel run on the CPU)
 * against the CPU reference and against the transformers fixtures, with the bf16 whole-model
 * bounds of NUMERICS.md; f32 device mode against the reference with a tight bound. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/check.h"
#include "io/npy.h"
#include "rlx_simt_device.h"
#include "testutil.h"

static rlx_flow *llama_flow(const rlx_llama_config *c, int64_t batch, int64_t seq) {
    rlx_llama_recipe_params p = rlx_llama_recipe_default_params();
    p.batch = batch;
    p.seq = seq;
    p.last_token_logits = 0;
    rlx_flow *f;
    cr_assert_eq(rlx_llama_flow(c, &p, &f), RLX_OK, "%s", rlx_last_error());
    return f;
}

Test(simt_model, tiny_llama_matches_cpu_reference) {
    rlx_simt_device_install();
    rlx_llama_config c;
    cr_assert_eq(rlx_llama_builtin_config("tiny", &c), RLX_OK);
    c.num_hidden_layers = 2;
    rlx_weights *w;
    cr_assert_eq(rlx_llama_random_weights(&c, 5, RLX_DTYPE_BF16, &w), RLX_OK);
    int64_t lens[3] = {17, 1, 9};
    rlx_flow *f = llama_flow(&c, 3, 17);
    rlx_build_params bp = rlx_build_default_params();
    bp.device = RLX_DEVICE_SIMT;
    const rlx_fusion_policy pol[2] = {RLX_FUSION_NONE, RLX_FUSION_FUSED};
    const rlx_precision prec[2] = {RLX_PRECISION_BF16, RLX_PRECISION_F32};
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++) {
            bp.fusion = pol[i];
            bp.precision = prec[j];
            rlx__check_report r = {0};
            cr_assert_eq(rlx__check_model(f, w, &bp, lens, 3, 7, "tiny", &r), RLX_OK, "%s", rlx_last_error());
            cr_assert_eq(r.n, 1);
            const rlx__check_row *x = &r.rows[0];
            cr_expect(x->pass, "fusion %d precision %d: %s", i, j, x->note);
            cr_expect_str_eq(x->dtype, prec[j] == RLX_PRECISION_F32 ? "f32" : "bf16+f32 residual");
            if (prec[j] == RLX_PRECISION_F32)
                cr_expect(x->max_err <= 1e-4 && x->agree == x->rows, "f32 device mode: max|d|/max|ref| %.3g, argmax %lld of %lld",
                          x->max_err, (long long)x->agree, (long long)x->rows);
            rlx__check_report_free(&r);
        }
    rlx_flow_destroy(f);
    rlx_weights_destroy(w);
}

static const char *cases[] = {"gqa_tied_f32", "mqa_untied_bf16", "llama3_scaling_f32", "head_dim_explicit_f32",
                              "sharded_bf16", "legacy_config_f32", "f16", "single_token_f32"};

/* bf16 device logits against transformers' own f32 logits. */
Test(simt_model, hf_fixtures_within_bf16_bounds) {
    rlx_simt_device_install();
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        char dir[1024], path[1100];
        snprintf(dir, sizeof dir, "%s/llama/%s", rlxt_fixtures_dir(), cases[ci]);
        rlx_weights *w;
        cr_assert_eq(rlx_weights_open(dir, &w), RLX_OK, "%s", rlx_last_error());
        rlx_llama_config c;
        cr_assert_eq(rlx_llama_config_parse(rlx_weights_config_json(w), dir, &c), RLX_OK, "%s", rlx_last_error());
        snprintf(path, sizeof path, "%s/tokens.json", dir);
        json_error_t err;
        json_t *j = json_load_file(path, 0, &err);
        cr_assert(j);
        json_t *rows = json_object_get(j, "tokens");
        int64_t B = (int64_t)json_array_size(rows), S = (int64_t)json_array_size(json_array_get(rows, 0));
        int32_t *tok = malloc(sizeof(int32_t) * (size_t)(B * S));
        int64_t lens[16];
        for (int64_t b = 0; b < B; b++) {
            lens[b] = S;
            for (int64_t t = 0; t < S; t++)
                tok[b * S + t] = (int32_t)json_integer_value(json_array_get(json_array_get(rows, (size_t)b), (size_t)t));
        }
        json_decref(j);
        float *ref;
        int nd;
        int64_t shape[4];
        snprintf(path, sizeof path, "%s/logits.npy", dir);
        cr_assert_eq(rlx__npy_read_f32(path, &ref, &nd, shape, 4), RLX_OK);
        rlx_flow *f = llama_flow(&c, B, S);
        rlx_build_params bp = rlx_build_default_params();
        bp.device = RLX_DEVICE_SIMT;
        rlx_model *m;
        cr_assert_eq(rlx_model_build(f, w, &bp, &m), RLX_OK, "%s: %s", cases[ci], rlx_last_error());
        cr_expect_eq(rlx_model_device(m), RLX_DEVICE_SIMT);
        rlx_session *s;
        cr_assert_eq(rlx_session_create(m, &s), RLX_OK);
        cr_assert_eq(rlx_session_prefill(s, tok, B * S, lens, B, NULL), RLX_OK, "%s: %s", cases[ci], rlx_last_error());
        int64_t V = shape[2];
        float *got = malloc(sizeof(float) * (size_t)(B * S * V));
        cr_assert_eq(rlx_session_output_to_host(s, got, (size_t)(B * S * V)), RLX_OK, "%s", rlx_last_error());
        double mc, rel, agree;
        rlx__compare_logits(got, ref, B * S, V, &mc, &rel, &agree);
        cr_expect(mc >= 0.999 && rel <= 3e-2 && agree >= 0.95, "%s: min cosine %.6f, max|d|/max|ref| %.3g, argmax %.3f",
                  cases[ci], mc, rel, agree);
        free(got), free(ref), free(tok);
        rlx_session_destroy(s);
        rlx_model_destroy(m);
        rlx_flow_destroy(f);
        rlx_weights_destroy(w);
    }
}

Test(simt_model, session_state_and_capacity) {
    rlx_simt_device_install();
    rlx_llama_config c;
    rlx_llama_builtin_config("tiny", &c);
    c.num_hidden_layers = 1;
    rlx_weights *w;
    rlx_llama_random_weights(&c, 9, RLX_DTYPE_F32, &w);
    rlx_llama_recipe_params p = rlx_llama_recipe_default_params();
    p.batch = 2;
    p.seq = 8;
    rlx_flow *f;
    rlx_llama_flow(&c, &p, &f);
    rlx_build_params bp = rlx_build_default_params();
    bp.device = RLX_DEVICE_SIMT;
    rlx_model *m;
    cr_assert_eq(rlx_model_build(f, w, &bp, &m), RLX_OK, "%s", rlx_last_error());
    rlx_session *s;
    rlx_session_create(m, &s);
    int32_t tok[17] = {1, 2, 3};
    float out[2048];
    cr_expect_eq(rlx_session_output_to_host(s, out, 2048), RLX_ERR_INVALID_ARGUMENT); /* nothing ran yet */
    cr_expect_eq(rlx_session_prefill(s, tok, 17, NULL, 1, NULL), RLX_ERR_INVALID_ARGUMENT);
    cr_expect_eq(rlx_session_prefill(s, tok, 3, NULL, 1, NULL), RLX_OK, "%s", rlx_last_error());
    cr_expect_eq(rlx_session_output_to_host(s, out, 2048), RLX_OK);
    rlx_session_destroy(s);
    rlx_model_destroy(m);
    rlx_flow_destroy(f);
    rlx_weights_destroy(w);
}

/* The fused plan end to end with the flash kernel (head_dim 64 and 128, GQA and MQA) and with
 * rope_attention (other head sizes), against the CPU reference; the plan has no standalone norm,
 * rope, residual-add or activation pass. */
static void fused_case(int64_t hidden, int64_t heads, int64_t kv, int64_t head_dim, rlx_kdtype want) {
    rlx_simt_device_install();
    rlx_llama_config c;
    cr_assert_eq(rlx_llama_builtin_config("tiny", &c), RLX_OK);
    c.num_hidden_layers = 2;
    c.hidden_size = hidden;
    c.num_attention_heads = heads;
    c.num_key_value_heads = kv;
    c.head_dim = head_dim;
    c.rope.head_dim = head_dim;
    c.vocab_size = 300;
    cr_assert_eq(rlx_llama_config_validate(&c, "test"), RLX_OK, "%s", rlx_last_error());
    rlx_weights *w;
    cr_assert_eq(rlx_llama_random_weights(&c, 11, RLX_DTYPE_BF16, &w), RLX_OK);
    int64_t lens[3] = {70, 1, 33};
    /* last-token logits, the recipe default: the final norm then runs on one row per sequence,
     * fused with the gather (all-position logits keep a final-norm pass over every token) */
    rlx_llama_recipe_params rp = rlx_llama_recipe_default_params();
    rp.batch = 3;
    rp.seq = 70;
    rlx_flow *f;
    cr_assert_eq(rlx_llama_flow(&c, &rp, &f), RLX_OK, "%s", rlx_last_error());
    rlx_build_params bp = rlx_build_default_params();
    bp.device = RLX_DEVICE_SIMT;
    rlx_model *m;
    cr_assert_eq(rlx_model_build(f, w, &bp, &m), RLX_OK, "%s", rlx_last_error());
    const rlx__plan *p = &m->dev->plan;
    int attn = 0;
    for (int i = 0; i < p->n; i++) {
        cr_expect(!rlx__plan_is_standalone_pass(p, &p->k[i]), "head_dim %lld: kernel %d (%s) is a standalone pass",
                  (long long)head_dim, i, rlx__kernel_name(p->k[i].kind));
        attn += p->k[i].kind == RLX__K_FLASH_ATTENTION || p->k[i].kind == RLX__K_ROPE_ATTENTION;
        if (p->k[i].kind == RLX__K_FLASH_ATTENTION) cr_expect_eq(want, RLX_K_BF16);
        if (p->k[i].kind == RLX__K_ROPE_ATTENTION) cr_expect_eq(want, RLX_K_F32, "rope_attention chosen for head_dim %lld", (long long)head_dim);
    }
    cr_expect_eq(attn, 2);
    cr_expect_eq(p->n_missed, 0, "%s", p->missed ? p->missed : "");
    rlx_model_destroy(m);
    rlx__check_report r = {0};
    cr_assert_eq(rlx__check_model(f, w, &bp, lens, 3, 3, "fused", &r), RLX_OK, "%s", rlx_last_error());
    cr_expect(r.rows[0].pass, "head_dim %lld: %s", (long long)head_dim, r.rows[0].note);
    rlx__check_report_free(&r);
    rlx_flow_destroy(f);
    rlx_weights_destroy(w);
}

/* want = RLX_K_BF16: the flash kernel must be chosen; RLX_K_F32 (as a marker): rope_attention. */
Test(simt_model, fused_plan_flash_head_dim_64_gqa) { fused_case(256, 8, 2, 64, RLX_K_BF16); }
Test(simt_model, fused_plan_flash_head_dim_128_mqa) { fused_case(256, 4, 1, 128, RLX_K_BF16); }
Test(simt_model, fused_plan_rope_attention_head_dim_48) { fused_case(192, 4, 4, 48, RLX_K_F32); }

/* profile kernels.attention_block_q picks flash_attention's tile: 128 (WIDE, 32-key steps at
 * head_dim 128) is what the launcher's rule picks on simt (sm_count 0), so it gives bitwise the
 * default's logits; 64 (NARROW, 64-key steps) sums the softmax in another order, so its bits
 * differ (the option is not ignored) while it stays within the whole-model bound. */
static float *block_q_logits(const rlx_flow *f, const rlx_weights *w, int block_q, const int32_t *tok,
                             const int64_t *lens, int64_t n, int64_t *count) {
    rlx_profile prof;
    rlx_profile_preset("prefill", &prof);
    prof.attention_block_q = block_q;
    rlx_build_params bp = rlx_build_default_params();
    bp.device = RLX_DEVICE_SIMT;
    bp.profile = &prof;
    rlx_model *m;
    cr_assert_eq(rlx_model_build(f, w, &bp, &m), RLX_OK, "block_q %d: %s", block_q, rlx_last_error());
    rlx_session *s;
    cr_assert_eq(rlx_session_create(m, &s), RLX_OK, "%s", rlx_last_error());
    int64_t T = 0;
    for (int64_t i = 0; i < n; i++) T += lens[i];
    cr_assert_eq(rlx_session_prefill(s, tok, T, lens, n, NULL), RLX_OK, "block_q %d: %s", block_q, rlx_last_error());
    int64_t rows, cols;
    cr_assert_eq(rlx_session_output_shape(s, &rows, &cols), RLX_OK);
    float *out = malloc((size_t)(rows * cols) * sizeof *out);
    cr_assert_eq(rlx_session_output_to_host(s, out, (size_t)(rows * cols)), RLX_OK, "%s", rlx_last_error());
    *count = rows * cols;
    rlx_session_destroy(s);
    rlx_model_destroy(m);
    return out;
}

Test(simt_model, attention_block_q_selects_the_flash_tile) {
    rlx_simt_device_install();
    rlx_llama_config c;
    cr_assert_eq(rlx_llama_builtin_config("tiny", &c), RLX_OK);
    c.num_hidden_layers = 1;
    c.hidden_size = 256;
    c.num_attention_heads = 2;
    c.num_key_value_heads = 1;
    c.head_dim = 128;
    c.rope.head_dim = 128;
    c.intermediate_size = 256;
    c.vocab_size = 300;
    cr_assert_eq(rlx_llama_config_validate(&c, "test"), RLX_OK, "%s", rlx_last_error());
    rlx_weights *w;
    cr_assert_eq(rlx_llama_random_weights(&c, 13, RLX_DTYPE_BF16, &w), RLX_OK);
    int64_t lens[2] = {70, 45};
    int32_t tok[115];
    rlxt_rng r = {29};
    for (int i = 0; i < 115; i++) tok[i] = (int32_t)(rlxt_next(&r) % 300);
    rlx_flow *f = llama_flow(&c, 2, 70);
    int64_t n0, n64, n128;
    float *d = block_q_logits(f, w, 0, tok, lens, 2, &n0), *narrow = block_q_logits(f, w, 64, tok, lens, 2, &n64),
          *wide = block_q_logits(f, w, 128, tok, lens, 2, &n128);
    cr_assert(n0 == n64 && n0 == n128);
    cr_expect_eq(memcmp(d, wide, (size_t)n0 * sizeof *d), 0, "block_q 128 is not the rule's tile on simt");
    cr_expect_neq(memcmp(narrow, wide, (size_t)n0 * sizeof *d), 0, "block_q 64 gave the WIDE tile's bits: ignored?");
    free(d), free(narrow), free(wide);
    rlx_profile prof;
    rlx_profile_preset("prefill", &prof);
    prof.attention_block_q = 64;
    rlx_build_params bp = rlx_build_default_params();
    bp.device = RLX_DEVICE_SIMT;
    bp.profile = &prof;
    rlx__check_report rep = {0};
    cr_assert_eq(rlx__check_model(f, w, &bp, lens, 2, 3, "block_q 64", &rep), RLX_OK, "%s", rlx_last_error());
    cr_expect(rep.rows[0].pass, "block_q 64: %s", rep.rows[0].note);
    rlx__check_report_free(&rep);
    rlx_flow_destroy(f);
    rlx_weights_destroy(w);
}

/* The fused plan of every LLaMA fixture (last-token logits, the recipe default) is clean. */
Test(simt_model, fixture_plans_are_clean) {
    rlx_simt_device_install();
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        char dir[1024];
        snprintf(dir, sizeof dir, "%s/llama/%s", rlxt_fixtures_dir(), cases[ci]);
        rlx_weights *w;
        cr_assert_eq(rlx_weights_open(dir, &w), RLX_OK, "%s", rlx_last_error());
        rlx_llama_config c;
        cr_assert_eq(rlx_llama_config_parse(rlx_weights_config_json(w), dir, &c), RLX_OK);
        rlx_llama_recipe_params rp = rlx_llama_recipe_default_params();
        rp.batch = 2;
        rp.seq = 16;
        rlx_flow *f;
        cr_assert_eq(rlx_llama_flow(&c, &rp, &f), RLX_OK);
        rlx_build_params bp = rlx_build_default_params();
        bp.device = RLX_DEVICE_SIMT;
        rlx_model *m;
        cr_assert_eq(rlx_model_build(f, w, &bp, &m), RLX_OK, "%s: %s", cases[ci], rlx_last_error());
        cr_expect_eq(m->dev->plan.n_missed, 0, "%s: %s", cases[ci], m->dev->plan.missed ? m->dev->plan.missed : "");
        rlx_model_destroy(m);
        rlx_flow_destroy(f);
        rlx_weights_destroy(w);
    }
}
