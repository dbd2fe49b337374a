/* Internal: `rlx check` — every device kernel against the CPU reference on random awkward shapes,
 * and a whole model on the device against the CPU reference. Shared by the CLI and the tests. */
#ifndef RLX_HOST_CHECK_H
#define RLX_HOST_CHECK_H

#include "runtime/device.h"

typedef struct rlx__check_row {
    char op[24];
    char shape[112];
    char dtype[8];
    double nmse;     /* Σ(a−b)²/Σb² against the reference */
    double max_err;  /* max |a−b| (whole model: max|Δ|/max|ref|) */
    double bound;    /* NMSE bound (whole model: 1 − min cosine bound, see metric) */
    double extra;    /* whole model: min per-position cosine; argmax agreement in extra2 */
    double extra2;
    int pass;
    char note[160];  /* why it failed: first bad index, NaN, guard overwritten */
} rlx__check_row;

typedef struct rlx__check_report {
    rlx__check_row *rows;
    int n, cap;
    int failed;
} rlx__check_report;

void rlx__check_report_free(rlx__check_report *r);

/* Runs every kernel of device `kind` in activation dtype `dt` on the shape table; appends a row
 * each. Returns an error status only when the device cannot be used at all. */
rlx_status rlx__check_kernels(rlx_device_kind kind, rlx_kdtype dt, uint64_t seed, rlx__check_report *r);

/* Builds flow on the CPU and on `kind` from the same weights, runs the prompts (lengths lens,
 * random ids from seed) on both and appends one row with the whole-model bounds of NUMERICS.md
 * (per-position cosine >= 0.999, max|Δ|/max|ref| <= 3e-2, argmax agreement >= 95%). */
rlx_status rlx__check_model(const rlx_flow *flow, const rlx_weights *w, const rlx_build_params *dev_params,
                            const int64_t *lens, int64_t n_seqs, uint64_t seed, const char *label,
                            rlx__check_report *r);

/* The same with the device model run as tp ranks in this process (tools/tp.h; tp 0 = one model, as
 * rlx__check_model), against the unsharded CPU reference. */
rlx_status rlx__check_model_tp(const rlx_flow *flow, const rlx_weights *w, const rlx_build_params *dev_params, int tp,
                               const int64_t *lens, int64_t n_seqs, uint64_t seed, const char *label, rlx__check_report *r);

/* Compares two [rows, cols] logit sets with the whole-model metrics. */
void rlx__compare_logits(const float *got, const float *ref, int64_t rows, int64_t cols, double *min_cos,
                         double *rel_err, double *argmax_agree);

/* Σ(a−b)²/Σb². */
double rlx__nmse(const float *a, const float *b, size_t n);

#endif
