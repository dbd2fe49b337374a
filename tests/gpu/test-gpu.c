/* GPU tests (ctest label gpu): every kernel and whole models on the cuda device against the CPU
 * reference — what `rlx check` does, plus both fusion policies and f32 mode. Exits 77 (ctest
 * SKIP_RETURN_CODE) with the reason when no CUDA device is present: it never passes vacuously. */
#include <stdio.h>
#include <stdlib.h>

#include "tools/check.h"

static int print_failures(const rlx__check_report *r, const char *what) {
    for (int i = 0; i < r->n; i++) {
        const rlx__check_row *x = &r->rows[i];
        if (!x->pass)
            printf("FAIL %s: %s %s: NMSE %.3e (bound %.1e), max err %.3e; %s\n", what, x->op, x->shape, x->nmse, x->bound,
                   x->max_err, x->note);
    }
    printf("%s: %d checks, %d failed\n", what, r->n, r->failed);
    return r->failed;
}

int main(void) {
    const rlx__device_ops *ops = rlx__device_ops_for(RLX_DEVICE_CUDA);
    rlx__device *d = NULL;
    if (!ops) {
        printf("skipped: this build has no CUDA backend\n");
        return 77;
    }
    rlx_status s = ops->open(0, &d);
    if (s == RLX_ERR_NO_DEVICE) {
        printf("skipped: %s\n", rlx_last_error());
        return 77;
    }
    if (s) {
        printf("FAIL: cannot open the CUDA device: %s\n", rlx_last_error());
        return 1;
    }
    printf("device: %s\n", ops->describe(d));
    ops->close(d);
    int failed = 0;
    const rlx_kdtype dts[2] = {RLX_K_BF16, RLX_K_F32};
    for (int i = 0; i < 2; i++) {
        rlx__check_report r = {0};
        s = rlx__check_kernels(RLX_DEVICE_CUDA, dts[i], 77 + (uint64_t)i, &r);
        if (s) {
            printf("FAIL: kernels: %s\n", rlx_last_error());
            failed++;
        }
        failed += print_failures(&r, i ? "kernels f32" : "kernels bf16");
        rlx__check_report_free(&r);
    }
    rlx_llama_config cfg;
    rlx_weights *w = NULL;
    if (rlx_llama_builtin_config("tiny", &cfg) || rlx_llama_random_weights(&cfg, 42, RLX_DTYPE_BF16, &w)) {
        printf("FAIL: %s\n", rlx_last_error());
        return 1;
    }
    int64_t lens[4] = {129, 1, 17, 64};
    rlx_llama_recipe_params rp = rlx_llama_recipe_default_params();
    rp.batch = 4;
    rp.seq = 129;
    rp.last_token_logits = 0;
    rlx_flow *f = NULL;
    if (rlx_llama_flow(&cfg, &rp, &f)) {
        printf("FAIL: %s\n", rlx_last_error());
        return 1;
    }
    const rlx_fusion_policy pol[2] = {RLX_FUSION_FUSED, RLX_FUSION_NONE};
    const rlx_precision prec[2] = {RLX_PRECISION_BF16, RLX_PRECISION_F32};
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++) {
            rlx_build_params bp = rlx_build_default_params();
            bp.device = RLX_DEVICE_CUDA;
            bp.fusion = pol[i];
            bp.precision = prec[j];
            rlx__check_report r = {0};
            char what[64];
            snprintf(what, sizeof what, "model fusion=%s precision=%s", i ? "none" : "fused", j ? "f32" : "bf16");
            s = rlx__check_model(f, w, &bp, lens, 4, 5, "tiny", &r);
            if (s) {
                printf("FAIL %s: %s\n", what, rlx_last_error());
                failed++;
            }
            failed += print_failures(&r, what);
            rlx__check_report_free(&r);
        }
    rlx_flow_destroy(f);
    rlx_weights_destroy(w);
    printf("%s\n", failed ? "FAILED" : "all GPU checks passed");
    return failed ? 1 : 0;
}
