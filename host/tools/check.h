/* Internal: `rlx check` — every device kernel against the CPU reference on random awkward shapes,
 * and a whole model on the device against the CPU reference. Shared by the CLI and the tests. */
#ifndef RLX_HOST_CHECK_H
#define RLX_HOST_CHECK_H

#include "runtime/device.h"

typedef struct rlx__check_row {
    char op[24];
    char shape[160];
    char dtype[24];  /* the precision the device really ran ("bf16", "f32", "bf16+f32 residual") */
    double nmse;     /* Σ(a−b)²/Σb² against the reference */
    double max_err;  /* max |a−b| (whole model: max|Δ|/max|ref|) */
    double bound;    /* NMSE bound (whole model: the least per-position cosine allowed) */
    int pass;
    char note[200];  /* why it failed: first bad index, NaN, guard overwritten */
    /* whole model (docs/numerics.md): the device against the f32 CPU reference, bounded by twice
     * the error of the same model computed naively at the device's precision on the CPU */
    int64_t layers, rows;
    double min_cos, cos_bound;   /* worst per-position cosine, and the least allowed */
    double rel, rel_bound;       /* max|Δ|/max|ref|, and its bound */
    double naive_cos, naive_rel; /* the naive emulation's own errors (the budget's source) */
    int argmax;                  /* the argmax test ran (logits) */
    int64_t decisive, agree;     /* argmax: positions whose reference margin is decisive, agreeing */
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

/* A whole-model check: flow built on the CPU (the f32 reference), on the device (dev), and on the
 * CPU again as a naive emulation of the precision the device model really uses (every stage's
 * output and every weight rounded to bf16, the residual stream kept f32 under
 * precision.mixed = "auto"). Random ids from seed (token types too when type_vocab > 0), prompts
 * of lengths lens. The row passes when the device's worst per-position cosine and max|Δ|/max|ref|
 * are within twice the emulation's (plus a floor, rlx__model_floor), and, with argmax, when the
 * device's argmax equals the reference's at every position whose top-2 margin exceeds twice the
 * largest error the bound allows. docs/numerics.md derives it. */
typedef struct rlx__model_check {
    const rlx_flow *flow;
    const rlx_weights *w;
    const rlx_build_params *dev;
    const int64_t *lens;
    int64_t n_seqs;
    uint64_t seed;
    const char *label;
    int argmax;          /* 1: output rows are next-token logits */
    int64_t type_vocab;  /* > 0: random token_type_ids in [0, type_vocab) */
    int tp;              /* >= 1: the device model as that many tensor-parallel ranks in this process
                            (tools/tp.h), rank 0's output; 0: one model */
} rlx__model_check;
rlx_status rlx__check_model_ex(const rlx__model_check *c, rlx__check_report *r);
/* rlx__check_model_ex on logits (argmax on), no token types. */
rlx_status rlx__check_model(const rlx_flow *flow, const rlx_weights *w, const rlx_build_params *dev_params,
                            const int64_t *lens, int64_t n_seqs, uint64_t seed, const char *label,
                            rlx__check_report *r);
/* The budget's floor: an NMSE and a max|Δ|/max|ref| that rounding alone leaves at this precision
 * and depth (k: the longest dot product). */
void rlx__model_floor(rlx_precision compute, int64_t layers, int64_t k, double *nmse, double *rel);

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
