/* Tier 2 on the simt device: the example's soft-cap custom stage (examples/softcap.cu, compiled
 * through the simt harness) after lm_head, in the kernel plan of a fused model, against the CPU
 * reference running the stage's CPU implementation. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rlx/profile.h"
#include "tools/check.h"
#include "rlx_simt_device.h"
#include "softcap.h"

static rlx_status add_softcap(rlx_flow *f, void *user) {
    (void)user;
    rlx_custom_def def = softcap_def(200.0f);
    return rlx_flow_custom(f, &def, NULL, NULL);
}

static rlx_flow *softcap_flow(const rlx_llama_config *c) {
    rlx_flow *f;
    rlx_llama_recipe_params p = rlx_llama_recipe_default_params();
    p.batch = 2;
    p.seq = 24;
    cr_assert_eq(rlx_llama_flow(c, &p, &f), RLX_OK, "%s", rlx_last_error());
    cr_assert_eq(rlx_flow_layer(f, "softcap", add_softcap, NULL), RLX_OK, "%s", rlx_last_error());
    return f;
}

Test(simt_custom, softcap_after_lm_head_matches_cpu) {
    rlx_simt_device_install();
    rlx_llama_config c;
    cr_assert_eq(rlx_llama_builtin_config("tiny", &c), RLX_OK);
    c.num_hidden_layers = 2;
    rlx_weights *w;
    cr_assert_eq(rlx_llama_random_weights(&c, 3, RLX_DTYPE_BF16, &w), RLX_OK);
    rlx_flow *f = softcap_flow(&c);
    int64_t lens[2] = {24, 5};
    const rlx_precision prec[2] = {RLX_PRECISION_BF16, RLX_PRECISION_F32};
    for (int j = 0; j < 2; j++) {
        rlx_build_params bp = rlx_build_default_params();
        bp.device = RLX_DEVICE_SIMT;
        bp.precision = prec[j];
        rlx__check_report r = {0};
        cr_assert_eq(rlx__check_model(f, w, &bp, lens, 2, 9, "softcap", &r), RLX_OK, "%s", rlx_last_error());
        cr_expect(r.rows[0].pass, "%s: %s", j ? "f32" : "bf16", r.rows[0].note);
        rlx__check_report_free(&r);
    }
    /* the cap really applies: every logit is inside (-200, 200) */
    rlx_build_params bp = rlx_build_default_params();
    bp.device = RLX_DEVICE_SIMT;
    rlx_model *m;
    cr_assert_eq(rlx_model_build(f, w, &bp, &m), RLX_OK, "%s", rlx_last_error());
    rlx_session *s;
    cr_assert_eq(rlx_session_create(m, &s), RLX_OK);
    int32_t tok[29];
    for (int i = 0; i < 29; i++) tok[i] = (i * 37) % (int)c.vocab_size;
    cr_assert_eq(rlx_session_prefill(s, tok, 29, lens, 2, NULL), RLX_OK, "%s", rlx_last_error());
    float *out = malloc(sizeof(float) * 2 * (size_t)c.vocab_size);
    cr_assert_eq(rlx_session_output_to_host(s, out, 2 * (size_t)c.vocab_size), RLX_OK);
    for (int64_t i = 0; i < 2 * c.vocab_size; i++) cr_assert(fabsf(out[i]) < 200.0f, "logit %lld = %g", (long long)i, out[i]);
    free(out);
    rlx_session_destroy(s);
    rlx_model_destroy(m);
    rlx_flow_destroy(f);
    rlx_weights_destroy(w);
}

/* A custom stage that reads the f32 residual stream (precision.mixed = "auto"): the planner hands
 * it the stream's bf16 copy (a residual_cast entry: no kernel writes one there), as it hands every
 * custom stage buffers in the activation dtype; the model stays within rlx check's budget. */
Test(simt_custom, custom_stage_on_the_f32_residual_stream) {
    rlx_simt_device_install();
    rlx_llama_config c;
    cr_assert_eq(rlx_llama_builtin_config("tiny", &c), RLX_OK);
    c.num_hidden_layers = 2;
    rlx_weights *w;
    cr_assert_eq(rlx_llama_random_weights(&c, 3, RLX_DTYPE_BF16, &w), RLX_OK);
    rlx_llama_recipe_params p = rlx_llama_recipe_default_params();
    p.batch = 2;
    p.seq = 24;
    p.last_token_logits = 0;
    p.after_layers = add_softcap; /* on the hidden state: the last residual add's output */
    rlx_flow *f;
    cr_assert_eq(rlx_llama_flow(&c, &p, &f), RLX_OK, "%s", rlx_last_error());
    rlx_profile prof;
    cr_assert_eq(rlx_profile_preset("prefill", &prof), RLX_OK);
    prof.mixed = RLX_MIXED_AUTO;
    rlx_build_params bp = rlx_build_default_params();
    bp.device = RLX_DEVICE_SIMT;
    bp.profile = &prof;
    rlx_model *m;
    cr_assert_eq(rlx_model_build(f, w, &bp, &m), RLX_OK, "%s", rlx_last_error());
    const rlx__plan *pl = &m->dev->plan;
    int casts = 0, custom_at = -1, cast_at = -1;
    for (int i = 0; i < pl->n; i++) {
        if (pl->k[i].kind == RLX__K_RESIDUAL_CAST) casts++, cast_at = i;
        if (pl->k[i].kind == RLX__K_CUSTOM) custom_at = i;
    }
    cr_expect_gt(pl->n_f32_resid, 0);
    cr_expect_eq(casts, 1);
    cr_expect_eq(cast_at + 1, custom_at, "the copy runs right before its reader");
    rlx_model_destroy(m);
    int64_t lens[2] = {24, 5};
    rlx__check_report r = {0};
    cr_assert_eq(rlx__check_model(f, w, &bp, lens, 2, 9, "softcap on the stream", &r), RLX_OK, "%s", rlx_last_error());
    cr_expect(r.rows[0].pass, "%s", r.rows[0].note);
    cr_expect_str_eq(r.rows[0].dtype, "bf16+f32 residual");
    rlx__check_report_free(&r);
    rlx_flow_destroy(f);
    rlx_weights_destroy(w);
}
