/* Model build: expand composite stages, resolve every weight and width, prepare the device. */
#include "runtime/device.h"
#include "runtime/cpu_ref.h"
#include "dist/comm.h"
#include "dist/shard.h"
#include "kv/kv.h"
#include "model/stages.h"
#include "model/tiers.h"
#include "rlx/weights.h"
#include "io/safetensors.h"
#include "io/convert.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

rlx_build_params rlx_build_default_params(void) {
    rlx_build_params p = {.device = RLX_DEVICE_CPU, .cuda_device = 0, .threads = 0, .fusion = RLX_FUSION_FUSED,
                          .precision = RLX_PRECISION_BF16};
    return p;
}

/* ---- expansion ------------------------------------------------------------------------------ */

/* Expands the fused LLaMA layer into the composed primitives by running the same emitter on a
 * scratch builder that writes into the model's list. */
static rlx_status expand_llama_layer(rlx__slist *dst, const rlx__stage *st) {
    rlx_flow tmp;
    memset(&tmp, 0, sizeof tmp);
    tmp.name = "expand";
    tmp.list = *dst;
    tmp.cursor = st->in[0];
    tmp.cos = st->in[1];
    tmp.sin = st->in[2];
    tmp.saved = tmp.tokens = -1;
    snprintf(tmp.scope, sizeof tmp.scope, "%s", st->name);
    char prefix[512];
    snprintf(prefix, sizeof prefix, "%s", st->wkey[0]);
    char *dot = strstr(prefix, ".input_layernorm.weight");
    if (dot) *dot = '\0';
    rlx_llama_layer_spec sp = {.prefix = prefix, .heads = st->heads, .kv_heads = st->kv_heads,
                               .head_dim = st->head_dim, .eps = st->eps};
    rlx_status s = rlx__emit_llama_layer(&tmp, 0, &sp);
    *dst = tmp.list;
    free(tmp.error_msg);
    if (s != RLX_OK) return s;
    /* The last primitive (the MLP residual add) writes the composite's output value. */
    rlx__stage *last = &dst->stages[dst->n_stages - 1];
    dst->values[last->out[0]].producer = -1;
    last->out[0] = st->out[0];
    dst->values[st->out[0]].producer = dst->n_stages - 1;
    return RLX_OK;
}

static rlx_status expand(rlx__slist *dst, const rlx__slist *src) {
    rlx_status s = rlx__slist_copy_values(dst, src);
    if (s) return s;
    for (int i = 0; i < src->n_stages; i++) {
        const rlx__stage *st = &src->stages[i];
        if (st->op == RLX__OP_LLAMA_LAYER) s = expand_llama_layer(dst, st);
        else s = rlx__slist_add_stage(dst, st) < 0 ? RLX_ERR_OUT_OF_MEMORY : RLX_OK;
        if (s) return s;
    }
    return RLX_OK;
}

/* ---- problems list ---------------------------------------------------------------------------- */

typedef struct problems {
    char text[3072];
    size_t len;
    int count;
    rlx_status status;
} problems;

static void problem(problems *p, rlx_status s, const char *fmt, ...) RLX__PRINTF(3, 4);
static void problem(problems *p, rlx_status s, const char *fmt, ...) {
    if (p->count == 0) p->status = s;
    else if (p->status != s) p->status = RLX_ERR_BUILD;
    p->count++;
    if (p->len + 8 >= sizeof p->text) return;
    if (p->count > 1) p->len += (size_t)snprintf(p->text + p->len, sizeof p->text - p->len, "; ");
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(p->text + p->len, sizeof p->text - p->len, fmt, ap);
    va_end(ap);
    if (n > 0) p->len += (size_t)n;
    if (p->len >= sizeof p->text) p->len = sizeof p->text - 1;
}

/* ---- weights ---------------------------------------------------------------------------------- */

static int find_weight(const rlx_model *m, const char *key) {
    for (int i = 0; i < m->n_weights; i++)
        if (!strcmp(m->weights[i].key, key)) return i;
    return -1;
}

static rlx_status resolve_weights(rlx_model *m, const rlx_weights *w, problems *pr) {
    const rlx__slist *l = &m->list;
    size_t n = (size_t)l->n_stages * RLX__STAGE_MAX_W;
    m->stage_w = rlx__malloc(n * sizeof(int) + 1, "the stage weight table");
    m->weights = rlx__calloc(n + 1, sizeof(rlx__weight), "the weight table");
    if (!m->stage_w || !m->weights) return RLX_ERR_OUT_OF_MEMORY;
    for (size_t i = 0; i < n; i++) m->stage_w[i] = -1;
    for (int i = 0; i < l->n_stages; i++) {
        const rlx__stage *st = &l->stages[i];
        for (int k = 0; k < st->n_w; k++) {
            const char *key = st->wkey[k];
            if (!key) continue;
            int idx = find_weight(m, key);
            if (idx < 0) {
                rlx__weight *e = &m->weights[m->n_weights];
                if (!rlx_weights_has(w, key, &e->view)) {
                    /* Report each missing key once. */
                    int seen = 0;
                    for (int j = 0; j < i && !seen; j++)
                        for (int q = 0; q < l->stages[j].n_w; q++)
                            if (l->stages[j].wkey[q] && !strcmp(l->stages[j].wkey[q], key)) seen = 1;
                    if (!seen) problem(pr, RLX_ERR_MISSING_WEIGHT, "weight '%s' (stage %s) is missing", key, st->name);
                    continue;
                }
                if (!rlx_dtype_is_float_weight(e->view.dtype)) {
                    /* held so the checkpoint opens, but not something a stage can compute with */
                    int seen = 0;
                    for (int j = 0; j < i && !seen; j++)
                        for (int q = 0; q < l->stages[j].n_w; q++)
                            if (l->stages[j].wkey[q] && !strcmp(l->stages[j].wkey[q], key)) seen = 1;
                    if (!seen)
                        problem(pr, RLX_ERR_UNSUPPORTED, "weight '%s' (stage %s) is stored as %s in %s; rlx computes with F32, F16 and BF16 weights",
                                key, st->name, rlx_dtype_name(e->view.dtype), e->view.file);
                    memset(&e->view, 0, sizeof e->view);
                    continue;
                }
                if (!(e->key = rlx__strdup(key))) return RLX_ERR_OUT_OF_MEMORY;
                size_t numel = 1;
                for (int d = 0; d < e->view.ndim; d++) numel *= (size_t)e->view.shape[d];
                e->numel = numel;
                e->ndim = e->view.ndim;
                memcpy(e->shape, e->view.shape, sizeof e->shape);
                idx = m->n_weights++;
            }
            m->stage_w[(size_t)i * RLX__STAGE_MAX_W + (size_t)k] = idx;
        }
    }
    return RLX_OK;
}

/* The weights' tensors that no stage reads, by name (the weights are sorted by name). */
static rlx_status list_unused(rlx_model *m, const rlx_weights *w) {
    size_t n = rlx_weights_count(w);
    m->unused = rlx__calloc(n + 1, sizeof(char *), "the unused-tensor list");
    if (!m->unused) return RLX_ERR_OUT_OF_MEMORY;
    for (size_t i = 0; i < n; i++) {
        rlx_tensor_view v;
        if (rlx_weights_at(w, i, &v)) return RLX_ERR_INTERNAL;
        int used = find_weight(m, v.name) >= 0;
        for (int s = 0; s < m->list.n_stages && !used; s++)
            for (int k = 0; k < m->list.stages[s].n_w && !used; k++)
                used = m->list.stages[s].wkey[k] && !strcmp(m->list.stages[s].wkey[k], v.name);
        if (used) continue;
        if (!(m->unused[m->n_unused] = rlx__strdup(v.name))) return RLX_ERR_OUT_OF_MEMORY;
        m->n_unused++;
    }
    return RLX_OK;
}

static const rlx_tensor_view *wview(const rlx_model *m, int stage, int k) {
    int idx = m->stage_w[(size_t)stage * RLX__STAGE_MAX_W + (size_t)k];
    return idx < 0 ? NULL : &m->weights[idx].view;
}

static void shape_str(const rlx_tensor_view *v, char *buf, size_t n) {
    size_t len = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < v->ndim && len < n; d++)
        len += (size_t)snprintf(buf + len, n - len, "%s%lld", d ? ", " : "", (long long)v->shape[d]);
    if (len < n) snprintf(buf + len, n - len, "]");
}

/* Checks that weight k of stage i is [rows] (cols < 0) or [rows, cols]; 0 entries mean any. */
/* Whether a problem with weight `key` is already listed. */
static int reported(const problems *pr, const char *key) {
    char needle[600];
    snprintf(needle, sizeof needle, "weight '%s' ", key);
    return strstr(pr->text, needle) != NULL;
}

static int check_w(problems *pr, const rlx_model *m, int i, int k, int64_t rows, int64_t cols, const char *why) {
    const rlx_tensor_view *v = wview(m, i, k);
    if (!v) return 0;
    const rlx__stage *st = &m->list.stages[i];
    int want_nd = cols < 0 ? 1 : 2;
    int ok = v->ndim == want_nd && (rows == 0 || v->shape[0] == rows) && (want_nd == 1 || cols == 0 || v->shape[1] == cols);
    if (!ok && reported(pr, st->wkey[k])) return ok; /* a tied table read twice is one problem */
    if (!ok) {
        char got[96];
        shape_str(v, got, sizeof got);
        char want[96];
        if (want_nd == 1) snprintf(want, sizeof want, "[%lld]", (long long)rows);
        else if (rows && cols) snprintf(want, sizeof want, "[%lld, %lld]", (long long)rows, (long long)cols);
        else if (rows) snprintf(want, sizeof want, "[%lld, *]", (long long)rows);
        else snprintf(want, sizeof want, "[*, %lld]", (long long)cols);
        problem(pr, RLX_ERR_SHAPE, "weight '%s' (stage %s) has shape %s, expected %s%s%s", st->wkey[k], st->name, got, want,
                why ? " " : "", why ? why : "");
    }
    return ok;
}

/* ---- shape inference --------------------------------------------------------------------------- */

static void infer(rlx_model *m, problems *pr) {
    rlx__slist *l = &m->list;
    for (int i = 0; i < l->n_stages; i++) {
        rlx__stage *st = &l->stages[i];
        rlx__value *out = st->n_out ? &l->values[st->out[0]] : NULL;
        const rlx__value *x = st->n_in ? &l->values[st->in[0]] : NULL;
        int64_t xc = x ? x->cols : 0;
        char why[160];
        switch (st->op) {
        case RLX__OP_INPUT_TOKENS:
        case RLX__OP_ROPE_TABLES: break;
        case RLX__OP_EMBED: {
            const rlx_tensor_view *v = wview(m, i, 0);
            if (!v) break;
            if (v->ndim != 2 || v->shape[0] < 1 || v->shape[1] < 1) {
                check_w(pr, m, i, 0, 0, 0, "(vocab x hidden)");
                break;
            }
            if ((st->expect_rows && v->shape[0] != st->expect_rows) || (st->expect_cols && v->shape[1] != st->expect_cols)) {
                /* The table, not the layers reading it: go on with the config's widths so that
                 * every later stage is checked against them and not blamed for this table. */
                const int transposed = v->shape[0] == st->expect_cols && v->shape[1] == st->expect_rows;
                check_w(pr, m, i, 0, st->expect_rows, st->expect_cols,
                        transposed ? "(vocab x hidden from the config: the table is stored transposed)"
                                   : "(vocab x hidden from the config)");
                m->vocab = st->expect_rows ? st->expect_rows : v->shape[0];
                out->cols = st->expect_cols ? st->expect_cols : v->shape[1];
                break;
            }
            if (m->vocab && m->vocab != v->shape[0])
                problem(pr, RLX_ERR_SHAPE, "stage %s: embedding table has %lld rows but another has %lld", st->name,
                        (long long)v->shape[0], (long long)m->vocab);
            m->vocab = v->shape[0];
            out->cols = v->shape[1];
            break;
        }
        case RLX__OP_RMS_NORM: {
            /* Widths are 0 (unknown) only downstream of a problem already reported: check
             * against what is known and do not report the same fault twice. */
            const rlx_tensor_view *v = wview(m, i, 0);
            check_w(pr, m, i, 0, xc, -1, "(one gamma per feature)");
            out->cols = xc ? xc : (v && v->ndim == 1 ? v->shape[0] : 0);
            break;
        }
        case RLX__OP_LINEAR: {
            const rlx_tensor_view *v = wview(m, i, 0);
            int64_t n = st->expect_rows;
            if (v && v->ndim == 2) {
                snprintf(why, sizeof why, "(out x in, in = %lld features of the input)", (long long)xc);
                if (check_w(pr, m, i, 0, st->expect_rows, xc, why)) n = v->shape[0];
                if (st->expect_cols && xc && xc != st->expect_cols)
                    problem(pr, RLX_ERR_SHAPE, "stage %s: input has %lld features, expected %lld", st->name,
                            (long long)xc, (long long)st->expect_cols);
            } else if (v) {
                check_w(pr, m, i, 0, st->expect_rows, xc, "(a linear weight is 2-D: out x in)");
            }
            if (n == 0 && v && v->ndim == 2) n = v->shape[0];
            if (st->n_w > 1 && st->wkey[1]) check_w(pr, m, i, 1, n, -1, "(one bias per output)");
            out->cols = n;
            break;
        }
        case RLX__OP_ROPE:
            if (xc && xc != st->heads * st->head_dim)
                problem(pr, RLX_ERR_SHAPE, "stage %s: input has %lld features, expected heads %lld x head_dim %lld", st->name,
                        (long long)xc, (long long)st->heads, (long long)st->head_dim);
            out->cols = st->heads * st->head_dim;
            break;
        case RLX__OP_ATTENTION: {
            int64_t qc = l->values[st->in[0]].cols, kc = l->values[st->in[1]].cols, vc = l->values[st->in[2]].cols;
            if (qc && kc && vc && (qc != st->heads * st->head_dim || kc != st->kv_heads * st->head_dim || vc != kc))
                problem(pr, RLX_ERR_SHAPE, "stage %s: q/k/v have %lld/%lld/%lld features, expected %lld/%lld/%lld", st->name,
                        (long long)qc, (long long)kc, (long long)vc, (long long)(st->heads * st->head_dim),
                        (long long)(st->kv_heads * st->head_dim), (long long)(st->kv_heads * st->head_dim));
            out->cols = st->heads * st->head_dim;
            break;
        }
        case RLX__OP_ADD:
        case RLX__OP_SILU_MUL: {
            int64_t bc = l->values[st->in[1]].cols;
            if (xc && bc && xc != bc)
                problem(pr, RLX_ERR_SHAPE, "stage %s: operands have %lld and %lld features", st->name, (long long)xc, (long long)bc);
            out->cols = xc ? xc : bc;
            break;
        }
        case RLX__OP_LAST_TOKEN: out->cols = xc; break;
        case RLX__OP_INPUT_IDS:
        case RLX__OP_POSITIONS: break; /* i32, one column, set by the builder */
        case RLX__OP_GATHER_ADD: {
            /* table [rows, H]: expect_rows is the config's row count (0 = any); the ids are
             * checked against the real rows at every prefill */
            const rlx_tensor_view *v = wview(m, i, 0);
            check_w(pr, m, i, 0, st->expect_rows, xc, "(one row per id, as many columns as the input has features)");
            out->cols = xc ? xc : (v && v->ndim == 2 ? v->shape[1] : 0);
            break;
        }
        case RLX__OP_LAYER_NORM: {
            const rlx_tensor_view *v = wview(m, i, 0);
            check_w(pr, m, i, 0, xc, -1, "(one gamma per feature)");
            if (st->wkey[1]) check_w(pr, m, i, 1, xc ? xc : (v && v->ndim == 1 ? v->shape[0] : 0), -1, "(one beta per feature)");
            out->cols = xc ? xc : (v && v->ndim == 1 ? v->shape[0] : 0);
            break;
        }
        case RLX__OP_SLICE_COLS:
            if (xc && st->slice_begin + st->slice_width > xc)
                problem(pr, RLX_ERR_SHAPE, "stage %s: columns [%lld, %lld) of an input with %lld features", st->name,
                        (long long)st->slice_begin, (long long)(st->slice_begin + st->slice_width), (long long)xc);
            out->cols = st->slice_width;
            break;
        case RLX__OP_GELU:
        case RLX__OP_CLS_POOL:
        case RLX__OP_MEAN_POOL:
        case RLX__OP_L2_NORMALIZE: out->cols = xc; break;
        case RLX__OP_CUSTOM: {
            char msg[768];
            rlx_status cs = rlx__custom_infer(m, i, msg, sizeof msg);
            if (cs) problem(pr, cs, "%s", msg);
            break;
        }
        case RLX__OP_ALL_REDUCE:
        case RLX__OP_ALL_GATHER: /* inserted by the tp pass, after inference */
        case RLX__OP_LLAMA_LAYER:
        case RLX__OP_COUNT:
            problem(pr, RLX_ERR_INTERNAL, "stage %s: op %s survived expansion", st->name, rlx__op_name(st->op));
            break;
        }
    }
}

/* ---- CPU preparation ------------------------------------------------------------------------------ */

/* Every weight in f32 for the reference, converted in parallel (io/convert.h). */
static rlx_status prepare_cpu(rlx_model *m, rlx__load_progress *progress) {
    uint64_t total = 0;
    for (int i = 0; i < m->n_weights; i++) {
        const rlx__conv c = rlx__weight_conv(&m->weights[i], RLX_DTYPE_F32);
        total += rlx__conv_src_bytes(&c); /* a tp rank reads its parts only */
    }
    rlx__load_progress_begin(progress, total);
    for (int i = 0; i < m->n_weights; i++) {
        rlx__weight *w = &m->weights[i];
        size_t bytes;
        if (!rlx__mul_size(w->numel, sizeof(float), &bytes)) return rlx__fail(RLX_ERR_OUT_OF_MEMORY, "weight '%s' is too large", w->key);
        const rlx__conv c = rlx__weight_conv(w, RLX_DTYPE_F32);
        if (!rlx__conv_supported(&c))
            return rlx__fail(RLX_ERR_INTERNAL, "weight '%s': no conversion of %s to f32", w->key, rlx_dtype_name(w->view.dtype));
        w->f32 = rlx__malloc(bytes, w->key);
        if (!w->f32) return RLX_ERR_OUT_OF_MEMORY;
        rlx__conv_run(&c, w->f32, 0, rlx__conv_rows(&c), m->threads);
        rlx__load_progress_add(progress, rlx__conv_src_bytes(&c));
    }
    return RLX_OK;
}

static rlx_status prepare_consts(rlx_model *m) {
    m->consts = rlx__calloc((size_t)m->list.n_values + 1, sizeof(float *), "the constant table");
    if (!m->consts) return RLX_ERR_OUT_OF_MEMORY;
    for (int i = 0; i < m->list.n_stages; i++) {
        const rlx__stage *st = &m->list.stages[i];
        if (st->op != RLX__OP_ROPE_TABLES) continue;
        size_t n = (size_t)st->rope.max_positions * (size_t)(st->rope.head_dim / 2);
        float *c = rlx__malloc(n * sizeof(float), "the rope cos table");
        float *s = c ? rlx__malloc(n * sizeof(float), "the rope sin table") : NULL;
        if (!s) {
            free(c);
            return RLX_ERR_OUT_OF_MEMORY;
        }
        rlx__ref_rope_tables(c, s, &st->rope);
        m->consts[st->out[0]] = c;
        m->consts[st->out[1]] = s;
        if (!m->max_positions || st->rope.max_positions < m->max_positions) m->max_positions = st->rope.max_positions;
    }
    return RLX_OK;
}

/* ---- tensor parallelism ------------------------------------------------------------------------- */

/* The device a rank runs on follows from its communicator: local ranks share host memory (cpu,
 * simt; a simt rank's device ordinal is its rank, so a planted fault can pick one), NCCL ranks are
 * the CUDA device they were created on. */
static rlx_status tp_device(rlx_build_params *p) {
    const rlx_comm_kind kind = rlx_comm_get_kind(p->comm);
    const int rank = rlx_comm_rank(p->comm), size = rlx_comm_size(p->comm);
    if (kind == RLX_COMM_LOCAL) {
        if (p->device == RLX_DEVICE_AUTO) p->device = RLX_DEVICE_CPU;
        if (p->device == RLX_DEVICE_CUDA && !p->plan_only)
            return rlx__fail(RLX_ERR_INVALID_ARGUMENT,
                             "rlx_model_build: rank %d of %d: an in-process communicator (rlx_comm_local_group) works on host memory, "
                             "for the cpu and simt devices; cuda ranks need an NCCL communicator",
                             rank, size);
        p->cuda_device = rank;
        return RLX_OK;
    }
    if (p->device == RLX_DEVICE_AUTO) p->device = RLX_DEVICE_CUDA;
    if (p->device != RLX_DEVICE_CUDA && !p->plan_only)
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_model_build: rank %d of %d: an NCCL communicator serves the cuda device, not %s",
                         rank, size, rlx_device_kind_name(p->device));
    p->cuda_device = rlx_comm_device(p->comm);
    return rlx__comm_bind(p->comm);
}

/* ---- public -------------------------------------------------------------------------------------- */

/* Frees a model whose last reference went (the caller's, or a session's). */
static void model_free(rlx_model *m) {
    if (m->consts)
        for (int i = 0; i < m->list.n_values; i++) free(m->consts[i]);
    free(m->consts);
    for (int i = 0; i < m->n_weights; i++) {
        free(m->weights[i].key);
        free(m->weights[i].f32);
    }
    free(m->weights);
    free(m->stage_w);
    rlx__dev_model_free(m->dev);
    rlx__slist_free(&m->list);
    free(m->pass_log);
    for (int i = 0; i < m->n_unused; i++) free(m->unused[i]);
    free(m->unused);
    free(m->emul_keep);
    free(m);
}

void rlx__model_retain(const rlx_model *m) {
    /* the count is the one mutable field of a built model; the model itself is heap memory */
    __atomic_add_fetch(&((rlx_model *)m)->refs, 1, __ATOMIC_RELAXED);
}

void rlx_model_destroy(rlx_model *m) {
    if (!m) return;
    if (__atomic_sub_fetch(&m->refs, 1, __ATOMIC_ACQ_REL) == 0) model_free(m);
}

rlx_status rlx_model_build(const rlx_flow *flow, const rlx_weights *w, const rlx_build_params *params,
                           rlx_model **out) {
    if (!out) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_model_build: out is NULL");
    *out = NULL;
    if (!flow || !w) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_model_build: flow and weights are required");
    if (flow->error) return rlx__fail(flow->error, "%s", flow->error_msg ? flow->error_msg : "the flow has an earlier error");
    if (flow->tokens < 0) return rlx__fail(RLX_ERR_BUILD, "flow '%s' has no token input", flow->name);
    if (flow->saved >= 0) return rlx__fail(RLX_ERR_BUILD, "flow '%s': a residual_save was never added back", flow->name);
    if (flow->list.values[flow->cursor].dtype != RLX_DTYPE_F32)
        return rlx__fail(RLX_ERR_BUILD, "flow '%s' produces no activations (only the token input)", flow->name);
    rlx_build_params p = params ? *params : rlx_build_default_params();
    rlx_status s0;
    /* The profile decides fusion, precision and (for AUTO) the device; the model keeps the
     * effective settings. */
    rlx_profile prof;
    if (p.profile) {
        rlx_status ps = rlx_profile_validate(p.profile);
        if (ps) return ps;
        prof = *p.profile;
        p.fusion = prof.fusion_policy;
        p.precision = prof.compute;
        if (p.device == RLX_DEVICE_AUTO) p.device = prof.target;
    } else {
        rlx_profile_preset("prefill", &prof);
        prof.fusion_policy = p.fusion;
        prof.compute = p.precision;
    }
    if (p.threads < 0)
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_model_build: threads %d: 0 (one per core) or a positive count", p.threads);
    if (p.device < RLX_DEVICE_AUTO || p.device > RLX_DEVICE_SIMT)
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_model_build: unknown device kind %d", (int)p.device);
    if (p.fusion != RLX_FUSION_FUSED && p.fusion != RLX_FUSION_NONE)
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_model_build: unknown fusion policy %d", (int)p.fusion);
    if (p.precision != RLX_PRECISION_BF16 && p.precision != RLX_PRECISION_F32)
        return rlx__fail(RLX_ERR_UNSUPPORTED, "rlx_model_build: device precision %s is not supported (bf16 or f32)",
                         p.precision == RLX_PRECISION_F16 ? "f16" : "unknown");

    if (p.comm && (s0 = tp_device(&p))) return s0;
    if (prof.assert_clean && p.fusion == RLX_FUSION_NONE)
        return rlx__fail(RLX_ERR_PROFILE, "profile %s: fusion.assert_clean asks for a clean fused plan but fusion.policy is \"none\"",
                         prof.source);

    rlx_model *m = rlx__calloc(1, sizeof *m, "a model");
    if (!m) return RLX_ERR_OUT_OF_MEMORY;
    m->refs = 1; /* the caller's */
    m->device = p.device;
    m->plan_only = p.plan_only;
    m->profile = prof;
    m->threads = p.threads > 0 ? p.threads : rlx__cpu_count();
    m->output = flow->cursor;
    m->tokens = flow->tokens;
    m->max_seqs = flow->batch;
    m->max_tokens = flow->batch * flow->seq;
    m->comm = p.comm;
    m->tp_rank = p.comm ? rlx_comm_rank(p.comm) : 0;
    m->tp_size = p.comm ? rlx_comm_size(p.comm) : 1;
    rlx__load_progress progress = {.fn = p.progress, .user = p.progress_user};
    rlx_status s = expand(&m->list, &flow->list);
    if (s) goto fail;
    if ((s = rlx__pass_dce(m))) goto fail;
    problems pr = {0};
    if ((s = resolve_weights(m, w, &pr))) goto fail;
    if ((s = list_unused(m, w))) goto fail;
    infer(m, &pr);
    if (pr.count) {
        s = rlx__fail(pr.status, "flow '%s': %d weight problem%s: %s", flow->name, pr.count, pr.count > 1 ? "s" : "", pr.text);
        goto fail;
    }
    if (!m->vocab) {
        s = rlx__fail(RLX_ERR_BUILD, "flow '%s' has no token_embed stage", flow->name);
        goto fail;
    }
    /* Tensor data is read from here on: a mapped file truncated since it was opened would fault
     * (SIGBUS) instead of failing (the mmap contract, rlx/weights.h). */
    if (!p.plan_only && (s = rlx__weights_check_intact(w))) goto fail;
    /* tensor parallelism: this rank's part of the resolved list (widths and weights per rank) */
    if (m->comm && (s = rlx__dist_shard(m, m->tp_rank, m->tp_size))) goto fail;
    /* after the split: it wants each attention read by its o_proj alone */
    if ((s = rlx__pass_prune_last_layer(m))) goto fail;
    if ((s = prepare_consts(m))) goto fail;
    rlx__kv_model_init(m); /* before planning: the planner reads each attention's KV layer */
    if ((s = rlx__custom_prepare(m, flow))) goto fail;
    if (p.device != RLX_DEVICE_CPU && p.device != RLX_DEVICE_AUTO && !p.plan_only && (s = rlx__custom_check_device(m, p.device)))
        goto fail;
    if (p.device == RLX_DEVICE_AUTO && !p.plan_only && rlx__custom_check_device(m, RLX_DEVICE_CUDA) != RLX_OK) {
        /* a custom stage without a CUDA implementation runs where it can: the CPU */
        rlx_clear_error();
        p.device = m->device = RLX_DEVICE_CPU;
    }
    if (p.plan_only) {
        m->device = p.device == RLX_DEVICE_AUTO ? RLX_DEVICE_CPU : p.device;
    } else if (p.device == RLX_DEVICE_AUTO) {
        /* cuda when a device is present, else the CPU reference */
        s = rlx__dev_model_prepare(m, RLX_DEVICE_CUDA, p.cuda_device, p.fusion,
                                   p.precision == RLX_PRECISION_F32 ? RLX_K_F32 : RLX_K_BF16, &progress);
        if (s == RLX_OK) m->device = RLX_DEVICE_CUDA;
        else if (s == RLX_ERR_NO_DEVICE) m->device = RLX_DEVICE_CPU, s = RLX_OK, rlx_clear_error();
        else goto fail;
    } else if (p.device != RLX_DEVICE_CPU) {
        if ((s = rlx__dev_model_prepare(m, p.device, p.cuda_device, p.fusion,
                                        p.precision == RLX_PRECISION_F32 ? RLX_K_F32 : RLX_K_BF16, &progress)))
            goto fail;
    }
    if (m->device == RLX_DEVICE_CPU && !p.plan_only && (s = prepare_cpu(m, &progress))) goto fail;
    if (prof.assert_clean) {
        /* the plan is device-independent: a CPU or plan-only build checks the one a device would run */
        rlx__plan tmp, *pl = m->dev ? &m->dev->plan : &tmp;
        if (!m->dev && (s = rlx__plan_build(m, prof.fusion_policy, prof.compute == RLX_PRECISION_F32 ? RLX_K_F32 : RLX_K_BF16, &tmp)))
            goto fail;
        if (pl->n_missed)
            s = rlx__fail(RLX_ERR_BUILD, "flow '%s': fusion.assert_clean: %d standalone pass%s left in the fused plan: %s", flow->name,
                          pl->n_missed, pl->n_missed > 1 ? "es" : "", pl->missed);
        if (!m->dev) rlx__plan_free(&tmp);
        if (s) goto fail;
    }
    for (int i = 0; i < m->n_weights; i++) memset(&m->weights[i].view, 0, sizeof m->weights[i].view);
    *out = m;
    return RLX_OK;
fail:
    rlx_model_destroy(m);
    return s;
}

rlx_device_kind rlx_model_device(const rlx_model *m) { return m ? m->device : RLX_DEVICE_CPU; }
int64_t rlx_model_output_width(const rlx_model *m) { return m ? m->list.values[m->output].cols : 0; }
int64_t rlx_model_max_tokens(const rlx_model *m) { return m ? m->max_tokens : 0; }
int64_t rlx_model_max_sequences(const rlx_model *m) { return m ? m->max_seqs : 0; }
int rlx_model_output_per_sequence(const rlx_model *m) {
    return m ? m->list.values[m->output].rows == RLX__ROWS_SEQUENCES : 0;
}
int rlx_model_unused_tensor_count(const rlx_model *m) { return m ? m->n_unused : 0; }
const char *rlx_model_unused_tensor(const rlx_model *m, int i) {
    return m && i >= 0 && i < m->n_unused ? m->unused[i] : NULL;
}
rlx_status rlx_model_format(const rlx_model *m, char **text) {
    if (!m || !text) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_model_format: NULL argument");
    return rlx__slist_format(&m->list, text);
}
