/* CPU reference backend: interprets the expanded stage list in f32 with Hugging Face
 * semantics. Plain loops, obviously correct; threads only split independent rows. It never
 * looks at a kernel plan, so it stays an independent oracle for the device paths. */
#include "runtime/cpu_ref.h"
#include "dist/comm.h"
#include "model/tiers.h"
#include "kv/kv.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- primitives (outputs first, then inputs, then sizes) -------------------------------------- */

void rlx__ref_rms_norm(float *y, const float *x, const float *gamma, int64_t rows, int64_t cols, double eps) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        double ss = 0;
        for (int64_t c = 0; c < cols; c++) ss += (double)xr[c] * xr[c];
        /* HF: x * rsqrt(mean(x²) + eps), then γ · (that). eps inside the sqrt. */
        float inv = (float)(1.0 / sqrt(ss / (double)cols + eps));
        for (int64_t c = 0; c < cols; c++) y[r * cols + c] = gamma[c] * (xr[c] * inv);
    }
}

typedef struct linear_ctx {
    float *y;
    const float *x, *w, *b;
    int64_t rows, k, n;
} linear_ctx;

/* Splits over output features so each weight row is read by one thread. */
static void linear_part(int64_t n0, int64_t n1, void *arg) {
    const linear_ctx *c = arg;
    for (int64_t r = 0; r < c->rows; r++) {
        const float *xr = c->x + r * c->k;
        for (int64_t j = n0; j < n1; j++) {
            const float *wj = c->w + j * c->k;
            double acc = 0;
            for (int64_t i = 0; i < c->k; i++) acc += (double)xr[i] * wj[i];
            if (c->b) acc += c->b[j];
            c->y[r * c->n + j] = (float)acc;
        }
    }
}

void rlx__ref_linear(float *y, const float *x, const float *w, const float *bias, int64_t rows, int64_t k, int64_t n,
                     int threads) {
    linear_ctx c = {y, x, w, bias, rows, k, n};
    if ((double)rows * (double)k * (double)n < 1e6) threads = 1;
    rlx__parallel_for(n, threads, linear_part, &c);
}

void rlx__ref_rope_tables(float *cos_t, float *sin_t, const rlx_rope_params *p) {
    const int64_t half = p->head_dim / 2;
    const double pi = 3.14159265358979323846;
    for (int64_t i = 0; i < half; i++) {
        double inv_freq = pow(p->theta, -2.0 * (double)i / (double)p->head_dim);
        if (p->scaling == RLX_ROPE_SCALING_LLAMA3) {
            /* HF _compute_llama3_parameters: long wavelengths divided by factor, short kept,
             * the band between interpolated. */
            double orig = (double)p->original_max_positions;
            double low_wavelen = orig / p->low_freq_factor;
            double high_wavelen = orig / p->high_freq_factor;
            double wavelen = 2 * pi / inv_freq;
            if (wavelen > low_wavelen) {
                inv_freq = inv_freq / p->factor;
            } else if (wavelen >= high_wavelen) {
                double smooth = (orig / wavelen - p->low_freq_factor) / (p->high_freq_factor - p->low_freq_factor);
                inv_freq = (1 - smooth) * inv_freq / p->factor + smooth * inv_freq;
            }
        }
        for (int64_t pos = 0; pos < p->max_positions; pos++) {
            double a = (double)pos * inv_freq;
            cos_t[pos * half + i] = (float)cos(a);
            sin_t[pos * half + i] = (float)sin(a);
        }
    }
}

void rlx__ref_rope(float *y, const float *x, const float *cos_t, const float *sin_t, const int64_t *pos, int64_t tokens,
                   int64_t heads, int64_t head_dim) {
    const int64_t half = head_dim / 2, w = heads * head_dim;
    for (int64_t t = 0; t < tokens; t++) {
        const float *c = cos_t + pos[t] * half, *s = sin_t + pos[t] * half;
        for (int64_t h = 0; h < heads; h++) {
            const float *xh = x + t * w + h * head_dim;
            float *yh = y + t * w + h * head_dim;
            for (int64_t i = 0; i < half; i++) {
                float a = xh[i], b = xh[i + half];
                yh[i] = a * c[i] - b * s[i];
                yh[i + half] = b * c[i] + a * s[i];
            }
        }
    }
}

typedef struct attn_ctx {
    float *o;
    const float *q, *k, *v;
    const rlx__batch *b;
    int64_t heads, kv_heads, head_dim;
    int causal;
} attn_ctx;

/* One work item = (sequence, head). */
static void attn_part(int64_t i0, int64_t i1, void *arg) {
    const attn_ctx *c = arg;
    const int64_t D = c->head_dim, qw = c->heads * D, kw = c->kv_heads * D, group = c->heads / c->kv_heads;
    const double scale = 1.0 / sqrt((double)D);
    int64_t max_len = 0;
    for (int64_t s = 0; s < c->b->n_seqs; s++) {
        int64_t len = c->b->seq_start[s + 1] - c->b->seq_start[s];
        if (len > max_len) max_len = len;
    }
    double *p = malloc((size_t)(max_len ? max_len : 1) * sizeof(double));
    double *acc = malloc((size_t)D * sizeof(double));
    if (!p || !acc) { /* cannot happen for sane sizes; poison output so the caller's checks fail */
        for (int64_t it = i0; it < i1; it++) {
            int64_t s = it / c->heads, h = it % c->heads;
            for (int64_t t = c->b->seq_start[s]; t < c->b->seq_start[s + 1]; t++)
                for (int64_t d = 0; d < D; d++) c->o[t * qw + h * D + d] = NAN;
        }
        free(p);
        free(acc);
        return;
    }
    for (int64_t it = i0; it < i1; it++) {
        const int64_t s = it / c->heads, h = it % c->heads, kvh = h / group; /* HF repeat_kv */
        const int64_t start = c->b->seq_start[s], len = c->b->seq_start[s + 1] - start;
        for (int64_t i = 0; i < len; i++) {
            const float *qi = c->q + (start + i) * qw + h * D;
            /* bottom-right-aligned causal mask: with Sk == Sq keys, query i sees keys <= i */
            const int64_t nk = c->causal ? i + 1 : len;
            double mx = -INFINITY;
            for (int64_t j = 0; j < nk; j++) {
                const float *kj = c->k + (start + j) * kw + kvh * D;
                double dot = 0;
                for (int64_t d = 0; d < D; d++) dot += (double)qi[d] * kj[d];
                p[j] = dot * scale;
                if (p[j] > mx) mx = p[j];
            }
            double sum = 0;
            for (int64_t j = 0; j < nk; j++) sum += (p[j] = exp(p[j] - mx));
            for (int64_t d = 0; d < D; d++) acc[d] = 0;
            for (int64_t j = 0; j < nk; j++) {
                const float *vj = c->v + (start + j) * kw + kvh * D;
                for (int64_t d = 0; d < D; d++) acc[d] += p[j] * vj[d];
            }
            float *oi = c->o + (start + i) * qw + h * D;
            for (int64_t d = 0; d < D; d++) oi[d] = (float)(acc[d] / sum);
        }
    }
    free(p);
    free(acc);
}

void rlx__ref_attention(float *o, const float *q, const float *k, const float *v, const rlx__batch *b, int64_t heads,
                        int64_t kv_heads, int64_t head_dim, int causal, int threads) {
    attn_ctx c = {o, q, k, v, b, heads, kv_heads, head_dim, causal};
    rlx__parallel_for(b->n_seqs * heads, threads, attn_part, &c);
}

void rlx__ref_silu_mul(float *y, const float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float x = g[i];
        y[i] = (x / (1.0f + expf(-x))) * u[i];
    }
}

void rlx__ref_add(float *y, const float *a, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

/* ---- interpreter ------------------------------------------------------------------------------- */

static int64_t value_rows(const rlx__value *v, const rlx__batch *b) {
    switch (v->rows) {
    case RLX__ROWS_TOKENS: return b->n_tokens;
    case RLX__ROWS_SEQUENCES: return b->n_seqs;
    case RLX__ROWS_FIXED: return v->fixed_rows;
    }
    return 0;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return 1e3 * (double)ts.tv_sec + 1e-6 * (double)ts.tv_nsec;
}

static void round_bf16(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = rlx_bf16_to_f32(rlx_f32_to_bf16(x[i]));
}

rlx_status rlx__cpu_emulate(rlx_model *m, int bf16, int f32_residual) {
    if (!m || m->device != RLX_DEVICE_CPU || m->plan_only)
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx__cpu_emulate: needs a built CPU model");
    if (!bf16) return RLX_OK; /* f32 is the reference itself */
    for (int i = 0; i < m->n_weights; i++) round_bf16(m->weights[i].f32, m->weights[i].numel);
    if (f32_residual) {
        if (!(m->emul_keep = rlx__malloc((size_t)m->list.n_values + 1, "the emulation's residual mask"))) return RLX_ERR_OUT_OF_MEMORY;
        rlx__slist_residual_stream(&m->list, m->emul_keep);
    }
    m->emul_bf16 = 1;
    return RLX_OK;
}

rlx_status rlx__cpu_run(const rlx_model *m, const rlx__batch *b, float **out, int64_t *out_rows, int64_t *out_cols) {
    return rlx__cpu_run_timed(m, b, out, out_rows, out_cols, NULL);
}

rlx_status rlx__cpu_run_timed(const rlx_model *m, const rlx__batch *b, float **out, int64_t *out_rows, int64_t *out_cols,
                              double *stage_ms) {
    const rlx__slist *l = &m->list;
    const int nv = l->n_values;
    rlx_status s = RLX_OK;
    float **buf = rlx__calloc((size_t)nv, sizeof(float *), "value buffers");
    int *last_use = rlx__malloc((size_t)nv * sizeof(int), "value lifetimes");
    int64_t *pos = rlx__malloc((size_t)b->n_tokens * sizeof(int64_t), "token positions");
    if (!buf || !last_use || !pos) {
        s = RLX_ERR_OUT_OF_MEMORY;
        goto done;
    }
    for (int i = 0; i < nv; i++) last_use[i] = -1;
    for (int i = 0; i < l->n_stages; i++)
        for (int k = 0; k < l->stages[i].n_in; k++) last_use[l->stages[i].in[k]] = i;
    last_use[m->output] = l->n_stages;
    /* positions continue a cached prefix: the first new token of sequence sq is at cached_len */
    for (int64_t sq = 0; sq < b->n_seqs; sq++)
        for (int64_t t = b->seq_start[sq]; t < b->seq_start[sq + 1]; t++)
            pos[t] = (b->kv ? b->kv->cached[sq] : 0) + t - b->seq_start[sq];

    if (stage_ms)
        for (int i = 0; i < l->n_stages; i++) stage_ms[i] = 0;
    for (int i = 0; i < l->n_stages && s == RLX_OK; i++) {
        const rlx__stage *st = &l->stages[i];
        if (st->op == RLX__OP_INPUT_TOKENS || st->op == RLX__OP_ROPE_TABLES) continue;
        const double t0 = stage_ms ? now_ms() : 0;
        const rlx__value *ov = &l->values[st->out[0]];
        const int64_t rows = value_rows(ov, b), cols = ov->cols;
        float *y = rlx__malloc((size_t)rows * (size_t)cols * sizeof(float), st->name);
        if (!y) {
            s = RLX_ERR_OUT_OF_MEMORY;
            break;
        }
        buf[st->out[0]] = y;
        const float *in[RLX__STAGE_MAX_IN] = {0};
        for (int k = 0; k < st->n_in; k++) in[k] = m->consts[st->in[k]] ? m->consts[st->in[k]] : buf[st->in[k]];
        const float *w[RLX__STAGE_MAX_W] = {0};
        for (int k = 0; k < st->n_w; k++) {
            int idx = m->stage_w[(size_t)i * RLX__STAGE_MAX_W + (size_t)k];
            w[k] = idx < 0 ? NULL : m->weights[idx].f32;
        }
        const int64_t xc = st->n_in ? l->values[st->in[0]].cols : 0;
        switch (st->op) {
        case RLX__OP_EMBED:
            for (int64_t t = 0; t < rows; t++)
                memcpy(y + t * cols, w[0] + (int64_t)b->tokens[t] * cols, (size_t)cols * sizeof(float));
            break;
        case RLX__OP_RMS_NORM: rlx__ref_rms_norm(y, in[0], w[0], rows, cols, st->eps); break;
        case RLX__OP_LINEAR: rlx__ref_linear(y, in[0], w[0], w[1], rows, xc, cols, m->threads); break;
        case RLX__OP_ROPE: rlx__ref_rope(y, in[0], in[1], in[2], pos, rows, st->heads, st->head_dim); break;
        case RLX__OP_ATTENTION:
            if (b->kv && st->kv_layer >= 0)
                rlx__ref_attention_kv(y, in[0], in[1], in[2], b, st->kv_layer, st->heads, st->kv_heads, st->head_dim, st->causal,
                                      m->threads);
            else
                rlx__ref_attention(y, in[0], in[1], in[2], b, st->heads, st->kv_heads, st->head_dim, st->causal, m->threads);
            break;
        case RLX__OP_ADD: rlx__ref_add(y, in[0], in[1], rows * cols); break;
        case RLX__OP_SILU_MUL: rlx__ref_silu_mul(y, in[0], in[1], rows * cols); break;
        case RLX__OP_LAST_TOKEN:
            for (int64_t sq = 0; sq < b->n_seqs; sq++)
                memcpy(y + sq * cols, in[0] + (b->seq_start[sq + 1] - 1) * cols, (size_t)cols * sizeof(float));
            break;
        /* encoder stages (cpu_ref_encoder.c); i32 values live in the same 4-byte buffers */
        case RLX__OP_INPUT_IDS: s = rlx__cpu_input_ids((int32_t *)(void *)y, m, i, b); break;
        case RLX__OP_POSITIONS: rlx__ref_positions((int32_t *)(void *)y, b->seq_start, b->n_seqs); break;
        case RLX__OP_GATHER_ADD: s = rlx__cpu_gather_add(y, in[0], (const int32_t *)(const void *)in[1], m, i, rows, cols); break;
        case RLX__OP_LAYER_NORM: rlx__ref_layer_norm(y, in[0], w[0], w[1], rows, cols, st->eps); break;
        case RLX__OP_GELU: rlx__ref_gelu(y, in[0], rows * cols); break;
        case RLX__OP_SLICE_COLS: rlx__ref_slice_cols(y, in[0], rows, xc, st->slice_begin, cols); break;
        case RLX__OP_CLS_POOL: rlx__ref_cls_pool(y, in[0], b->seq_start, b->n_seqs, cols); break;
        case RLX__OP_MEAN_POOL: rlx__ref_mean_pool(y, in[0], b->seq_start, b->n_seqs, cols); break;
        case RLX__OP_L2_NORMALIZE: rlx__ref_l2_normalize(y, in[0], rows, cols); break;
        case RLX__OP_CUSTOM: s = rlx__custom_cpu(m, i, b, buf); break; /* custom.c: the user's f32 implementation */
        /* tensor parallelism (dist/): the sharded reference exchanges its f32 partials in-process */
        case RLX__OP_ALL_REDUCE:
            s = m->comm ? rlx_comm_all_reduce(m->comm, in[0], y, (size_t)(rows * cols), RLX_DTYPE_F32, NULL) : RLX_ERR_INTERNAL;
            break;
        case RLX__OP_ALL_GATHER:
            s = m->comm ? rlx__comm_all_gather_cols(m->comm, in[0], y, NULL, rows, xc, cols, RLX_DTYPE_F32, NULL) : RLX_ERR_INTERNAL;
            break;
        default: s = rlx__fail(RLX_ERR_INTERNAL, "CPU reference: stage %s has op %s it cannot run", st->name, rlx__op_name(st->op));
        }
        if (s && (st->op == RLX__OP_ALL_REDUCE || st->op == RLX__OP_ALL_GATHER))
            s = rlx__fail_prefix(s, "stage %s", st->name);
        if (m->emul_bf16 && s == RLX_OK)
            for (int k = 0; k < st->n_out; k++) {
                const int v = st->out[k];
                if (l->values[v].dtype != RLX_DTYPE_F32 || !buf[v] || (m->emul_keep && m->emul_keep[v])) continue;
                round_bf16(buf[v], (size_t)value_rows(&l->values[v], b) * (size_t)l->values[v].cols);
            }
        if (stage_ms) stage_ms[i] = now_ms() - t0;
        for (int k = 0; k < st->n_in; k++) {
            int v = st->in[k];
            if (last_use[v] == i && !m->consts[v]) {
                free(buf[v]);
                buf[v] = NULL;
            }
        }
    }
    if (s == RLX_OK) {
        *out = buf[m->output];
        buf[m->output] = NULL;
        *out_rows = value_rows(&l->values[m->output], b);
        *out_cols = l->values[m->output].cols;
    }
done:
    if (buf)
        for (int i = 0; i < nv; i++) free(buf[i]);
    free(buf);
    free(last_use);
    free(pos);
    return s;
}
