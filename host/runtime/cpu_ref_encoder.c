/* CPU reference of the encoder stages (BERT, NomicBERT): LayerNorm, exact GELU, gathered
 * embedding adds, column slices, pooling over packed sequences, L2 normalisation.
 *
 * Same rules as cpu_ref.c: f32 in and out, reductions in f64, plain loops, outputs first, then
 * inputs, then sizes. Packed sequences: sequence s is rows seq_start[s] .. seq_start[s+1]−1. */
#include "rlx/encoder.h"
#include "runtime/cpu_ref.h"
#include "model/stages.h"

#include <math.h>
#include <string.h>

// ---- primitives ---------------------------------------------------------------------------------

void rlx__ref_positions(int32_t *pos, const int64_t *seq_start, int64_t n_seqs) {
    for (int64_t s = 0; s < n_seqs; s++)
        for (int64_t t = seq_start[s]; t < seq_start[s + 1]; t++) pos[t] = (int32_t)(t - seq_start[s]);
}

/* ids are checked by the caller (rlx__cpu_gather_add, rlx__check_batch_inputs). */
void rlx__ref_gather_add(float *y, const float *x, const int32_t *ids, const float *table, int64_t rows,
                         int64_t cols) {
    for (int64_t r = 0; r < rows; r++) {
        const float *tr = table + (int64_t)ids[r] * cols;
        for (int64_t c = 0; c < cols; c++) y[r * cols + c] = x[r * cols + c] + tr[c];
    }
}

void rlx__ref_layer_norm(float *y, const float *x, const float *gamma, const float *beta, int64_t rows, int64_t cols,
                         double eps) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        double mean = 0;
        for (int64_t c = 0; c < cols; c++) mean += xr[c];
        mean /= (double)cols;
        /* Two passes: the variance of (x − mean), never E[x²] − mean², which cancels badly
         * when |mean| ≫ std (HF/torch compute it the stable way too). */
        double var = 0;
        for (int64_t c = 0; c < cols; c++) var += ((double)xr[c] - mean) * ((double)xr[c] - mean);
        var /= (double)cols; /* population variance, eps inside the sqrt */
        const double inv = 1.0 / sqrt(var + eps);
        for (int64_t c = 0; c < cols; c++) {
            double v = ((double)xr[c] - mean) * inv * gamma[c];
            if (beta) v += beta[c];
            y[r * cols + c] = (float)v;
        }
    }
}

void rlx__ref_gelu(float *y, const float *x, int64_t n) {
    const double rsqrt2 = 0.70710678118654752440;
    for (int64_t i = 0; i < n; i++) {
        double v = x[i];
        y[i] = (float)(0.5 * v * (1.0 + erf(v * rsqrt2)));
    }
}

void rlx__ref_slice_cols(float *y, const float *x, int64_t rows, int64_t x_cols, int64_t begin, int64_t width) {
    for (int64_t r = 0; r < rows; r++) memcpy(y + r * width, x + r * x_cols + begin, (size_t)width * sizeof(float));
}

void rlx__ref_cls_pool(float *y, const float *x, const int64_t *seq_start, int64_t n_seqs, int64_t cols) {
    for (int64_t s = 0; s < n_seqs; s++) memcpy(y + s * cols, x + seq_start[s] * cols, (size_t)cols * sizeof(float));
}

void rlx__ref_mean_pool(float *y, const float *x, const int64_t *seq_start, int64_t n_seqs, int64_t cols) {
    for (int64_t s = 0; s < n_seqs; s++) {
        const int64_t t0 = seq_start[s], len = seq_start[s + 1] - t0;
        for (int64_t c = 0; c < cols; c++) {
            double acc = 0;
            for (int64_t t = t0; t < t0 + len; t++) acc += x[t * cols + c];
            y[s * cols + c] = (float)(acc / (double)(len > 0 ? len : 1));
        }
    }
}

void rlx__ref_l2_normalize(float *y, const float *x, int64_t rows, int64_t cols) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        double ss = 0;
        for (int64_t c = 0; c < cols; c++) ss += (double)xr[c] * xr[c];
        double n = sqrt(ss);
        if (n < 1e-12) n = 1e-12; /* torch F.normalize: x / max(‖x‖, eps) */
        for (int64_t c = 0; c < cols; c++) y[r * cols + c] = (float)(xr[c] / n);
    }
}

// ---- interpreter steps that need the model or the batch ----------------------------------------

static const rlx_named_ids *find_input(const rlx__batch *b, const char *name) {
    for (int64_t i = 0; i < b->n_inputs; i++)
        if (b->inputs[i].name && !strcmp(b->inputs[i].name, name)) return &b->inputs[i];
    return NULL;
}

rlx_status rlx__cpu_input_ids(int32_t *y, const rlx_model *m, int stage, const rlx__batch *b) {
    const rlx__stage *st = &m->list.stages[stage];
    const char *name = m->list.values[st->out[0]].name;
    const rlx_named_ids *in = find_input(b, name);
    if (!in) {
        if (st->required) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "prefill: the model needs input '%s' (one id per token)", name);
        memset(y, 0, (size_t)b->n_tokens * sizeof *y);
        return RLX_OK;
    }
    if (in->n != b->n_tokens || !in->ids)
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "prefill: input '%s' has %lld ids for %lld tokens", name, (long long)in->n,
                         (long long)b->n_tokens);
    memcpy(y, in->ids, (size_t)b->n_tokens * sizeof *y);
    return RLX_OK;
}

rlx_status rlx__cpu_gather_add(float *y, const float *x, const int32_t *ids, const rlx_model *m, int stage, int64_t rows,
                               int64_t cols) {
    const rlx__stage *st = &m->list.stages[stage];
    const int idx = m->stage_w[(size_t)stage * RLX__STAGE_MAX_W];
    if (idx < 0 || cols < 1) return rlx__fail(RLX_ERR_INTERNAL, "stage %s: no table", st->name);
    const rlx__weight *w = &m->weights[idx];
    const int64_t table_rows = (int64_t)(w->numel / (size_t)cols);
    /* rlx__check_batch_inputs has refused bad ids already; this keeps the reference from ever
     * reading outside the table when it is driven directly. */
    for (int64_t r = 0; r < rows; r++)
        if (ids[r] < 0 || ids[r] >= table_rows)
            return rlx__fail(RLX_ERR_TOKEN_RANGE, "stage %s: id %ld at token %lld is outside the %lld rows of '%s'", st->name,
                             (long)ids[r], (long long)r, (long long)table_rows, w->key);
    rlx__ref_gather_add(y, x, ids, w->f32, rows, cols);
    return RLX_OK;
}
