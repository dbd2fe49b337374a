/* Last-layer pruning (passes.prune_last_layer, host/model/prune.c): with last-token logits the
 * last layer's o_proj, norms and MLP run on one row per sequence. The logits are bitwise those of
 * the unpruned list, on the CPU reference and on simt (fused and unfused plans, bf16 and f32);
 * what is pruned, what is not (all-position logits, the switch off), and that the fused plan stays
 * clean. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/device.h"
#include "rlx_simt_device.h"
#include "testutil.h"

static rlx_weights *weights(rlx_llama_config *c, int64_t head_dim) {
    cr_assert_eq(rlx_llama_builtin_config("tiny", c), RLX_OK);
    c->num_hidden_layers = 3;
    c->vocab_size = 160;
    c->hidden_size = 128;
    c->intermediate_size = 160;
    c->num_attention_heads = 128 / head_dim * 2;
    c->num_key_value_heads = 2;
    c->head_dim = head_dim;
    c->rope.head_dim = head_dim;
    cr_assert_eq(rlx_llama_config_validate(c, "test"), RLX_OK, "%s", rlx_last_error());
    rlx_weights *w;
    cr_assert_eq(rlx_llama_random_weights(c, 21, RLX_DTYPE_BF16, &w), RLX_OK);
    return w;
}

static rlx_model *build(const rlx_llama_config *c, const rlx_weights *w, int last_token, rlx_device_kind dev,
                        rlx_fusion_policy pol, rlx_precision prec, int prune) {
    rlx_llama_recipe_params rp = rlx_llama_recipe_default_params();
    rp.batch = 3;
    rp.seq = 40;
    rp.last_token_logits = last_token;
    rlx_flow *f;
    cr_assert_eq(rlx_llama_flow(c, &rp, &f), RLX_OK, "%s", rlx_last_error());
    rlx_profile prof;
    rlx_profile_preset("prefill", &prof);
    prof.fusion_policy = pol;
    prof.compute = prec;
    prof.prune_last_layer = prune;
    prof.target = dev;
    rlx_build_params bp = rlx_build_default_params();
    bp.device = dev;
    bp.profile = &prof;
    rlx_model *m;
    cr_assert_eq(rlx_model_build(f, w, &bp, &m), RLX_OK, "%s", rlx_last_error());
    rlx_flow_destroy(f);
    return m;
}

static const int64_t lens[3] = {33, 1, 6};

static float *run(rlx_model *m, int64_t *n_out) {
    int32_t tok[40];
    for (int i = 0; i < 40; i++) tok[i] = (i * 29 + 3) % 160;
    rlx_session *s;
    cr_assert_eq(rlx_session_create(m, &s), RLX_OK, "%s", rlx_last_error());
    cr_assert_eq(rlx_session_prefill(s, tok, 40, lens, 3, NULL), RLX_OK, "%s", rlx_last_error());
    int64_t rows, cols;
    rlx_session_output_shape(s, &rows, &cols);
    float *out = malloc((size_t)(rows * cols) * sizeof *out);
    cr_assert_eq(rlx_session_output_to_host(s, out, (size_t)(rows * cols)), RLX_OK, "%s", rlx_last_error());
    rlx_session_destroy(s);
    *n_out = rows * cols;
    return out;
}

static void expect_bitwise(const rlx_llama_config *c, const rlx_weights *w, rlx_device_kind dev, rlx_fusion_policy pol,
                           rlx_precision prec, const char *what) {
    rlx_model *pruned = build(c, w, 1, dev, pol, prec, 1), *full = build(c, w, 1, dev, pol, prec, 0);
    /* o_proj, add, post-attention norm, gate, up, silu_mul, down, add */
    cr_expect_eq(pruned->pruned_stages, 8, "%s: %d stages pruned", what, pruned->pruned_stages);
    cr_expect_eq(full->pruned_stages, 0);
    cr_expect(strstr(rlx_model_pass_log(pruned), "prune: 8 stages before"), "%s: %s", what, rlx_model_pass_log(pruned));
    int64_t n1, n2;
    float *a = run(pruned, &n1), *b = run(full, &n2);
    cr_assert_eq(n1, 3 * 160);
    cr_assert_eq(n2, n1);
    for (int64_t i = 0; i < n1; i++)
        if (memcmp(&a[i], &b[i], sizeof(float))) {
            cr_expect_fail("%s: logit %lld differs: pruned %.9g, unpruned %.9g", what, (long long)i, a[i], b[i]);
            break;
        }
    if (pruned->dev && pol == RLX_FUSION_FUSED)
        cr_expect_eq(pruned->dev->plan.n_missed, 0, "%s: %s", what, pruned->dev->plan.missed ? pruned->dev->plan.missed : "");
    if (pruned->dev) {
        /* the two gathers (attention output, residual) and nothing of the last layer on every token */
        const rlx__plan *p = &pruned->dev->plan;
        int gathers = 0;
        for (int i = 0; i < p->n; i++) gathers += p->k[i].kind == RLX__K_LAST_TOKEN;
        cr_expect_eq(gathers, 2, "%s: %d last_token kernels", what, gathers);
        /* every GEMM has as many rows as its input (a packed GEMM of the pruned layer included) */
        for (int i = 0; i < p->n; i++)
            if (p->k[i].kind == RLX__K_GEMM)
                cr_expect_eq(p->buf[p->k[i].out].rows, p->buf[p->k[i].in[0]].rows, "%s: GEMM %d (%s) rows %d, input rows %d",
                             what, i, p->k[i].st->name, (int)p->buf[p->k[i].out].rows, (int)p->buf[p->k[i].in[0]].rows);
    }
    free(a);
    free(b);
    rlx_model_destroy(pruned);
    rlx_model_destroy(full);
}

Test(prune, cpu_reference_bitwise) {
    rlx_llama_config c;
    rlx_weights *w = weights(&c, 32);
    expect_bitwise(&c, w, RLX_DEVICE_CPU, RLX_FUSION_FUSED, RLX_PRECISION_BF16, "cpu");
    rlx_weights_destroy(w);
}

Test(prune, simt_bitwise_fused_and_unfused) {
    rlx_simt_device_install();
    rlx_llama_config c;
    rlx_weights *w = weights(&c, 64); /* head_dim 64: the flash kernel in the fused plan */
    expect_bitwise(&c, w, RLX_DEVICE_SIMT, RLX_FUSION_FUSED, RLX_PRECISION_BF16, "simt fused bf16");
    expect_bitwise(&c, w, RLX_DEVICE_SIMT, RLX_FUSION_NONE, RLX_PRECISION_BF16, "simt unfused bf16");
    expect_bitwise(&c, w, RLX_DEVICE_SIMT, RLX_FUSION_FUSED, RLX_PRECISION_F32, "simt fused f32");
    rlx_weights_destroy(w);
}

Test(prune, pruned_logits_match_the_reference) {
    rlx_simt_device_install();
    rlx_llama_config c;
    rlx_weights *w = weights(&c, 64);
    rlx_model *cpu = build(&c, w, 1, RLX_DEVICE_CPU, RLX_FUSION_FUSED, RLX_PRECISION_BF16, 0);
    rlx_model *dev = build(&c, w, 1, RLX_DEVICE_SIMT, RLX_FUSION_FUSED, RLX_PRECISION_F32, 1);
    int64_t n;
    float *ref = run(cpu, &n), *got = run(dev, &n);
    cr_expect_lt(rlxt_max_abs_diff(got, ref, (size_t)n) / rlxt_max_abs(ref, (size_t)n), 1e-4);
    free(ref);
    free(got);
    rlx_model_destroy(cpu);
    rlx_model_destroy(dev);
    rlx_weights_destroy(w);
}

Test(prune, only_with_last_token_logits) {
    rlx_llama_config c;
    rlx_weights *w = weights(&c, 32);
    rlx_model *m = build(&c, w, 0, RLX_DEVICE_CPU, RLX_FUSION_FUSED, RLX_PRECISION_BF16, 1);
    cr_expect_eq(m->pruned_stages, 0, "all-position logits need every row of the last layer");
    cr_expect(!strstr(rlx_model_pass_log(m), "prune:"), "no gather, nothing to say: %s", rlx_model_pass_log(m));
    rlx_model_destroy(m);
    m = build(&c, w, 1, RLX_DEVICE_CPU, RLX_FUSION_FUSED, RLX_PRECISION_BF16, 0);
    cr_expect(strstr(rlx_model_pass_log(m), "prune: off"), "%s", rlx_model_pass_log(m));
    rlx_model_destroy(m);
    /* the rewritten list: the gathers sit before o_proj; the LM head reads the last MLP's output */
    m = build(&c, w, 1, RLX_DEVICE_CPU, RLX_FUSION_FUSED, RLX_PRECISION_BF16, 1);
    int gathers = 0, first_gather = -1, o_proj = -1;
    for (int i = 0; i < m->list.n_stages; i++) {
        const rlx__stage *st = &m->list.stages[i];
        if (st->op == RLX__OP_LAST_TOKEN) gathers++, first_gather = first_gather < 0 ? i : first_gather;
        if (st->op == RLX__OP_LINEAR && strstr(st->name, "L2.") && strstr(st->name, "o_proj")) o_proj = i;
        if (strstr(st->name, "L2.") && st->op != RLX__OP_LAST_TOKEN && i > first_gather && first_gather >= 0)
            cr_expect_eq(m->list.values[st->out[0]].rows, RLX__ROWS_SEQUENCES, "stage %s", st->name);
    }
    cr_expect_eq(gathers, 2);
    cr_expect(first_gather >= 0 && first_gather < o_proj, "gather at %d, o_proj at %d", first_gather, o_proj);
    rlx_model_destroy(m);
    rlx_weights_destroy(w);
}
