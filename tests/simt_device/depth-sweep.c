/* rlx-depth-sweep: error against depth with and without the f32 residual stream, on the deep
 * fixture (tools/deep_weights.h), and what the stream costs per layer in bytes. The table in
 * docs/numerics.md comes from it. Not a test (nothing is asserted; the test is
 * test-simt-residual.c): a measurement, run by hand.
 *
 *   build/tests/rlx-depth-sweep [--device simt|cuda] [--layers 1,2,4,...|none] [--seeds 7,1,2]
 *                               [--bytes-hidden 2048 --bytes-inter 8192 --bytes-tokens 8192]
 *
 * For each depth: the fused plan's worst per-position 1 − cos against the f32 CPU reference with
 * the bf16 stream and with the f32 stream, and the naive CPU emulation of each (rlx check's
 * budget source), over prompts of 33, 1 and 17 tokens. Then the plan's bytes per layer of a
 * LLaMA-shaped layer (hidden, intermediate, tokens from the flags: Llama-3.2-1B at 4 × 2048 by
 * default) with and without the stream, per kernel kind, and the PERF.md model's time for them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rlx/profile.h"
#include "rlx_simt_device.h"
#include "tools/check.h"
#include "tools/deep_weights.h"

static int parse_list(const char *s, int64_t *out, int cap) {
    int n = 0;
    while (s && *s && n < cap) {
        char *end;
        out[n++] = strtoll(s, &end, 10);
        s = *end == ',' ? end + 1 : NULL;
    }
    return n;
}

static rlx_status sweep_row(rlx_device_kind dev, const rlx_weights *w, rlx_llama_config c, int64_t layers, double out[4]) {
    c.num_hidden_layers = layers;
    rlx_llama_recipe_params rp = rlx_llama_recipe_default_params();
    rp.batch = 3;
    rp.seq = 33;
    rp.last_token_logits = 0;
    rlx_flow *f;
    rlx_status s = rlx_llama_flow(&c, &rp, &f);
    int64_t lens[3] = {33, 1, 17};
    for (int mixed = 0; mixed < 2 && !s; mixed++) {
        rlx_profile prof;
        rlx_profile_preset("prefill", &prof);
        prof.mixed = mixed ? RLX_MIXED_AUTO : RLX_MIXED_NONE;
        rlx_build_params bp = rlx_build_default_params();
        bp.device = dev;
        bp.profile = &prof;
        rlx__check_report r = {0};
        s = rlx__check_model(f, w, &bp, lens, 3, 99, "sweep", &r);
        if (!s) out[2 * mixed] = 1 - r.rows[0].min_cos, out[2 * mixed + 1] = 1 - r.rows[0].naive_cos;
        rlx__check_report_free(&r);
    }
    rlx_flow_destroy(f);
    return s;
}

/* Bytes per layer of the fused plan at capacity, by kernel kind, for a layer of these sizes. */
static rlx_status layer_bytes(int64_t H, int64_t I, int64_t T, rlx_mixed_precision mixed, double by_kind[RLX__K_COUNT], double *total) {
    rlx_llama_config c;
    memset(&c, 0, sizeof c);
    c.vocab_size = 256, c.hidden_size = H, c.intermediate_size = I, c.num_hidden_layers = 4; /* L1: a middle layer (not pruned) */
    c.num_attention_heads = H / 64, c.num_key_value_heads = H / 256 > 0 ? H / 256 : 1, c.head_dim = 64;
    c.rms_norm_eps = 1e-5, c.max_position_embeddings = 4096, c.tie_word_embeddings = 1;
    c.rope = (rlx_rope_params){.head_dim = 64, .max_positions = 4096, .theta = 500000.0};
    rlx_weights *w;
    rlx_status s = rlx_llama_random_weights(&c, 1, RLX_DTYPE_BF16, &w);
    if (s) return s;
    rlx_llama_recipe_params rp = rlx_llama_recipe_default_params();
    rp.batch = T / 2048 > 0 ? T / 2048 : 1;
    rp.seq = T / rp.batch;
    rlx_flow *f = NULL;
    rlx_model *m = NULL;
    s = rlx_llama_flow(&c, &rp, &f);
    rlx_profile prof;
    rlx_profile_preset("prefill", &prof);
    prof.mixed = mixed;
    rlx_build_params bp = rlx_build_default_params();
    bp.profile = &prof;
    bp.plan_only = 1;
    if (!s) s = rlx_model_build(f, w, &bp, &m);
    rlx__plan p;
    if (!s) s = rlx__plan_build(m, RLX_FUSION_FUSED, RLX_K_BF16, &p);
    if (!s) {
        /* the second layer's kernels: its stages are named L1.* */
        *total = 0;
        for (int k = 0; k < RLX__K_COUNT; k++) by_kind[k] = 0;
        for (int i = 0; i < p.n; i++) {
            const rlx__kernel *k = &p.k[i];
            if (strncmp(k->st->name, "L1.", 3)) continue;
            const double b = rlx__kernel_bytes(&p, m, k, m->max_tokens, m->max_seqs);
            by_kind[k->kind] += b;
            *total += b;
        }
        rlx__plan_free(&p);
    }
    rlx_model_destroy(m);
    rlx_flow_destroy(f);
    rlx_weights_destroy(w);
    return s;
}

int main(int argc, char **argv) {
    rlx_simt_device_install();
    rlx_device_kind dev = RLX_DEVICE_SIMT;
    int64_t depths[64] = {1, 2, 4, 8, 12, 16, 20, 24, 28, 32}, seeds[8] = {7};
    int nd = 10, ns = 1;
    int64_t H = 2048, I = 8192, T = 8192;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--device")) dev = !strcmp(argv[i + 1], "cuda") ? RLX_DEVICE_CUDA : RLX_DEVICE_SIMT;
        else if (!strcmp(argv[i], "--layers")) nd = strcmp(argv[i + 1], "none") ? parse_list(argv[i + 1], depths, 64) : 0;
        else if (!strcmp(argv[i], "--seeds")) ns = parse_list(argv[i + 1], seeds, 8);
        else if (!strcmp(argv[i], "--bytes-hidden")) H = strtoll(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--bytes-inter")) I = strtoll(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--bytes-tokens")) T = strtoll(argv[i + 1], NULL, 10);
        else {
            fprintf(stderr, "rlx-depth-sweep: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    rlx__deep_recipe rc = rlx__deep_recipe_default();
    rlx_llama_config c = rlx__deep_config(32);
    for (int si = 0; si < ns && nd > 0; si++) {
        rlx_weights *w;
        if (rlx__llama_deep_weights(&c, &rc, (uint64_t)seeds[si], RLX_DTYPE_BF16, &w)) {
            fprintf(stderr, "rlx-depth-sweep: %s\n", rlx_last_error());
            return 1;
        }
        printf("deep fixture, seed %lld, device %s: worst per-position 1 - cos against the f32 CPU reference\n", (long long)seeds[si],
               rlx_device_kind_name(dev));
        printf("%6s  %14s %14s  %14s %14s\n", "layers", "bf16 stream", "(naive bf16)", "f32 stream", "(naive f32 st)");
        for (int d = 0; d < nd; d++) {
            double e[4];
            if (sweep_row(dev, w, c, depths[d], e)) {
                fprintf(stderr, "rlx-depth-sweep: %s\n", rlx_last_error());
                return 1;
            }
            printf("%6lld  %14.3e %14.3e  %14.3e %14.3e\n", (long long)depths[d], e[0], e[1], e[2], e[3]);
            fflush(stdout);
        }
        rlx_weights_destroy(w);
    }
    double a[RLX__K_COUNT], n[RLX__K_COUNT], ta, tn;
    if (layer_bytes(H, I, T, RLX_MIXED_NONE, n, &tn) || layer_bytes(H, I, T, RLX_MIXED_AUTO, a, &ta)) {
        fprintf(stderr, "rlx-depth-sweep: %s\n", rlx_last_error());
        return 1;
    }
    printf("\nbytes per layer, fused plan, hidden %lld, intermediate %lld, %lld tokens (PERF.md: 4.3 TB/s)\n", (long long)H, (long long)I,
           (long long)T);
    printf("%-20s %12s %12s %12s %10s\n", "kernel", "bf16 stream", "f32 stream", "extra", "extra us");
    for (int k = 0; k < RLX__K_COUNT; k++) {
        if (!a[k] && !n[k]) continue;
        printf("%-20s %10.1f MB %10.1f MB %10.1f MB %10.1f\n", rlx__kernel_name((rlx__kkind)k), n[k] / 1e6, a[k] / 1e6, (a[k] - n[k]) / 1e6,
               (a[k] - n[k]) / 4.3e12 * 1e6);
    }
    printf("%-20s %10.1f MB %10.1f MB %10.1f MB %10.1f\n", "layer", tn / 1e6, ta / 1e6, (ta - tn) / 1e6, (ta - tn) / 4.3e12 * 1e6);
    return 0;
}
