/* Tier 2: custom stages (the builder context, shape inference, one call path shared by every
 * executor) and flow control (select, when, sequence). */
#include "model/tiers.h"

#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(RLX_CUSTOM_MAX_INPUTS == RLX__STAGE_MAX_IN, "custom.h and stages.h disagree on inputs");
_Static_assert(RLX_CUSTOM_MAX_OUTPUTS == RLX__STAGE_MAX_OUT, "custom.h and stages.h disagree on outputs");
_Static_assert(RLX_CUSTOM_MAX_WEIGHTS == RLX__STAGE_MAX_W, "custom.h and stages.h disagree on weights");

struct rlx__custom {
    atomic_int refs;
    char name[64];
    rlx_custom_def def; /* def.name points at name */
};

const rlx_custom_def *rlx__custom_def(const rlx__custom *c) { return c ? &c->def : NULL; }

void rlx__custom_retain(rlx__custom *c) {
    if (c) atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
}

void rlx__custom_release(rlx__custom *c) {
    if (!c) return;
    if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1) return;
    if (c->def.destroy) c->def.destroy(c->def.user);
    free(c);
}

void rlx__params_free(struct rlx__params *p) {
    if (!p) return;
    for (int i = 0; i < p->n; i++) free(p->data[i]);
    free(p->data);
    free(p->value);
    free(p);
}

/* ---- sticky errors: flow.c's (rlx__flow_fail, rlx__flow_remember) ---------------------------------- */

static rlx_status replay(const rlx_flow *f) {
    rlx__fail(f->error, "%s", f->error_msg ? f->error_msg : "earlier error");
    return f->error;
}

static int find_value(const rlx_flow *f, const char *name) {
    for (int v = f->list.n_values - 1; v >= 0; v--)
        if (!strcmp(f->list.values[v].name, name)) return v;
    return -1;
}

static const char *rows_name(rlx__rows r) {
    return r == RLX__ROWS_TOKENS ? "one row per token" : r == RLX__ROWS_SEQUENCES ? "one row per sequence" : "fixed rows";
}

/* ---- the builder context ----------------------------------------------------------------------- */

struct rlx_custom_ctx {
    rlx_flow *flow;
    rlx__custom *custom;
    char stage_name[320];
    rlx__rows rows;                        /* of input 0, and so of every output */
    int n_in;
    int in[RLX__STAGE_MAX_IN];
    int n_w;
    char *wkey[RLX__STAGE_MAX_W];
    int n_out;
    char *out_name[RLX__STAGE_MAX_OUT];    /* [0] unused: the main output is named after the stage */
    int n_params;
};

static rlx_status ctx_fail(rlx_custom_ctx *c, rlx_status s, const char *fmt, ...) RLX__PRINTF(3, 4);
static rlx_status ctx_fail(rlx_custom_ctx *c, rlx_status s, const char *fmt, ...) {
    char msg[640];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return rlx__flow_fail(c->flow, s, "custom stage '%s': %s", c->custom->name, msg);
}

#define CTX_ENTER(c, slot)                                                                         \
    do {                                                                                           \
        if (!(c)) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "%s: ctx is NULL", __func__);         \
        if ((c)->flow->error) return replay((c)->flow);                                            \
        if (!(slot)) return ctx_fail((c), RLX_ERR_INVALID_ARGUMENT, "%s: slot is NULL", __func__); \
    } while (0)

static void ctx_free(rlx_custom_ctx *c) {
    for (int i = 0; i < c->n_w; i++) free(c->wkey[i]);
    for (int i = 1; i < c->n_out; i++) free(c->out_name[i]);
}

static rlx_status add_input(rlx_custom_ctx *c, int value, int *slot) {
    if (c->n_in == RLX__STAGE_MAX_IN)
        return ctx_fail(c, RLX_ERR_INVALID_ARGUMENT, "more than %d inputs (the cursor included)", RLX__STAGE_MAX_IN);
    c->in[c->n_in] = value;
    *slot = c->n_in++;
    return RLX_OK;
}

rlx_status rlx_custom_weight(rlx_custom_ctx *c, const char *key, int *slot) {
    CTX_ENTER(c, slot);
    if (!key || !*key) return ctx_fail(c, RLX_ERR_INVALID_ARGUMENT, "weight key is empty");
    for (int i = 0; i < c->n_w; i++)
        if (!strcmp(c->wkey[i], key)) {
            *slot = i;
            return RLX_OK;
        }
    if (c->n_w == RLX__STAGE_MAX_W) return ctx_fail(c, RLX_ERR_INVALID_ARGUMENT, "more than %d weights ('%s')", RLX__STAGE_MAX_W, key);
    if (!(c->wkey[c->n_w] = rlx__strdup(key))) return rlx__flow_remember(c->flow, RLX_ERR_OUT_OF_MEMORY);
    *slot = c->n_w++;
    return RLX_OK;
}

rlx_status rlx_custom_param(rlx_custom_ctx *c, const char *name, int64_t rows, int64_t cols, const float *data, int *slot) {
    CTX_ENTER(c, slot);
    char auto_name[352];
    if (!name) {
        snprintf(auto_name, sizeof auto_name, "%s.param%d", c->stage_name, c->n_params);
        name = auto_name;
    }
    if (!*name) return ctx_fail(c, RLX_ERR_INVALID_ARGUMENT, "parameter name is empty");
    if (!data) return ctx_fail(c, RLX_ERR_INVALID_ARGUMENT, "parameter '%s': data is NULL", name);
    if (rows < 1 || cols < 1 || rows > (1 << 28) / cols)
        return ctx_fail(c, RLX_ERR_INVALID_ARGUMENT, "parameter '%s': [%lld, %lld] is not a valid shape (each >= 1, at most 2^28 elements)",
                        name, (long long)rows, (long long)cols);
    if (c->n_in == RLX__STAGE_MAX_IN)
        return ctx_fail(c, RLX_ERR_INVALID_ARGUMENT, "more than %d inputs (the cursor included)", RLX__STAGE_MAX_IN);
    rlx_flow *f = c->flow;
    struct rlx__params *p = f->params;
    if (!p && !(p = f->params = rlx__calloc(1, sizeof *p, "the parameter table"))) return rlx__flow_remember(f, RLX_ERR_OUT_OF_MEMORY);
    if (p->n == p->cap) {
        int nc = p->cap ? p->cap * 2 : 8;
        int *nv = realloc(p->value, (size_t)nc * sizeof *nv);
        if (nv) p->value = nv;
        float **nd = nv ? realloc(p->data, (size_t)nc * sizeof *nd) : NULL;
        if (nd) p->data = nd;
        if (!nv || !nd) return rlx__flow_fail(f, RLX_ERR_OUT_OF_MEMORY, "out of host memory growing the parameter table");
        p->cap = nc;
    }
    size_t n = (size_t)rows * (size_t)cols;
    float *copy = rlx__malloc(n * sizeof(float), "a custom-stage parameter");
    if (!copy) return rlx__flow_remember(f, RLX_ERR_OUT_OF_MEMORY);
    memcpy(copy, data, n * sizeof(float));
    int v = rlx__slist_add_value(&f->list, name, RLX_DTYPE_F32, RLX__ROWS_FIXED, rows, cols);
    if (v < 0) {
        free(copy);
        return rlx__flow_remember(f, RLX_ERR_OUT_OF_MEMORY);
    }
    p->value[p->n] = v;
    p->data[p->n] = copy;
    p->n++;
    c->n_params++;
    return add_input(c, v, slot);
}

rlx_status rlx_custom_input(rlx_custom_ctx *c, const char *name, int *slot) {
    CTX_ENTER(c, slot);
    if (!name || !*name) return ctx_fail(c, RLX_ERR_INVALID_ARGUMENT, "input name is empty");
    int v = find_value(c->flow, name);
    if (v < 0) return ctx_fail(c, RLX_ERR_BUILD, "no value called '%s' precedes this stage", name);
    const rlx__value *val = &c->flow->list.values[v];
    if (val->rows != RLX__ROWS_FIXED && val->rows != c->rows)
        return ctx_fail(c, RLX_ERR_BUILD, "input '%s' has %s, but the stage's cursor has %s", name, rows_name(val->rows),
                        rows_name(c->rows));
    return add_input(c, v, slot);
}

rlx_status rlx_custom_output(rlx_custom_ctx *c, const char *name, int *slot) {
    CTX_ENTER(c, slot);
    if (!name || !*name || strlen(name) > 255) return ctx_fail(c, RLX_ERR_INVALID_ARGUMENT, "output name must have 1 to 255 characters");
    if (!strcmp(name, c->stage_name)) return ctx_fail(c, RLX_ERR_INVALID_ARGUMENT, "output '%s' is the main output's name", name);
    for (int i = 1; i < c->n_out; i++)
        if (!strcmp(c->out_name[i], name)) return ctx_fail(c, RLX_ERR_INVALID_ARGUMENT, "output '%s' is added twice", name);
    if (c->n_out == RLX__STAGE_MAX_OUT)
        return ctx_fail(c, RLX_ERR_INVALID_ARGUMENT, "more than %d outputs (the main one included)", RLX__STAGE_MAX_OUT);
    if (!(c->out_name[c->n_out] = rlx__strdup(name))) return rlx__flow_remember(c->flow, RLX_ERR_OUT_OF_MEMORY);
    *slot = c->n_out++;
    return RLX_OK;
}

const char *rlx_custom_ctx_stage_name(const rlx_custom_ctx *c) { return c ? c->stage_name : ""; }
rlx_flow *rlx_custom_ctx_flow(const rlx_custom_ctx *c) { return c ? c->flow : NULL; }

/* ---- rlx_flow_custom ---------------------------------------------------------------------------- */

static void drop_user(const rlx_custom_def *def) {
    if (def && def->destroy) def->destroy(def->user);
}

static int valid_op_name(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 63) return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_' || *s == '-' || *s == '.'))
            return 0;
    return 1;
}

rlx_status rlx_flow_custom(rlx_flow *f, const rlx_custom_def *def, rlx_custom_build_fn build, void *build_user) {
    if (!f) {
        drop_user(def);
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_flow_custom: flow is NULL");
    }
    if (f->error) {
        drop_user(def);
        return replay(f);
    }
    if (!def) return rlx__flow_fail(f, RLX_ERR_INVALID_ARGUMENT, "custom stage: def is NULL");
    if (!def->name || !valid_op_name(def->name)) {
        drop_user(def);
        return rlx__flow_fail(f, RLX_ERR_INVALID_ARGUMENT, "custom stage: name '%s' must be 1 to 63 of [A-Za-z0-9_.-]",
                         def->name ? def->name : "(null)");
    }
    if (!def->shape || !def->cpu) {
        drop_user(def);
        return rlx__flow_fail(f, RLX_ERR_INVALID_ARGUMENT, "custom stage '%s': a shape function and a CPU implementation are required",
                         def->name);
    }
    if (f->cursor < 0) {
        drop_user(def);
        return rlx__flow_fail(f, RLX_ERR_BUILD, "custom stage '%s' needs an input first (rlx_flow_input_tokens)", def->name);
    }
    rlx__custom *cu = rlx__calloc(1, sizeof *cu, "a custom stage");
    if (!cu) {
        drop_user(def);
        return rlx__flow_remember(f, RLX_ERR_OUT_OF_MEMORY);
    }
    atomic_init(&cu->refs, 1);
    snprintf(cu->name, sizeof cu->name, "%s", def->name);
    cu->def = *def;
    cu->def.name = cu->name;

    rlx_custom_ctx c;
    memset(&c, 0, sizeof c);
    c.flow = f;
    c.custom = cu;
    int len = f->scope[0] ? snprintf(c.stage_name, sizeof c.stage_name, "%s.%s", f->scope, cu->name)
                          : snprintf(c.stage_name, sizeof c.stage_name, "%s", cu->name);
    if (len < 0 || (size_t)len >= sizeof c.stage_name) c.stage_name[sizeof c.stage_name - 1] = '\0';
    c.rows = f->list.values[f->cursor].rows;
    c.in[0] = f->cursor;
    c.n_in = 1;
    c.n_out = 1;

    rlx_status s = RLX_OK;
    if (build) {
        s = build(&c, build_user);
        if (!rlx__status_known(s))
            s = rlx__flow_fail(f, RLX_ERR_INTERNAL, "custom stage '%s': the build callback returned %d, which is not an rlx_status",
                               cu->name, (int)s);
        if (s == RLX_OK && f->error) s = f->error;
        if (s != RLX_OK && f->error == RLX_OK)
            rlx__flow_fail(f, s, "custom stage '%s': the build callback failed: %s", cu->name,
                      *rlx_last_error() ? rlx_last_error() : rlx_status_string(s));
    }
    if (s == RLX_OK) {
        rlx__stage st = {.op = RLX__OP_CUSTOM, .name = c.stage_name, .n_in = c.n_in, .n_w = c.n_w, .n_out = c.n_out, .custom = cu};
        memcpy(st.in, c.in, sizeof c.in);
        for (int k = 0; k < c.n_w; k++) st.wkey[k] = c.wkey[k];
        for (int k = 0; k < c.n_out && s == RLX_OK; k++) {
            st.out[k] = rlx__slist_add_value(&f->list, k ? c.out_name[k] : c.stage_name, RLX_DTYPE_F32, c.rows, 0, 0);
            if (st.out[k] < 0) s = rlx__flow_remember(f, RLX_ERR_OUT_OF_MEMORY);
        }
        if (s == RLX_OK && rlx__slist_add_stage(&f->list, &st) < 0) s = rlx__flow_remember(f, RLX_ERR_OUT_OF_MEMORY);
        if (s == RLX_OK) f->cursor = st.out[0];
    }
    ctx_free(&c);
    rlx__custom_release(cu); /* the stage list holds its own reference */
    return s;
}

/* ---- flow control ---------------------------------------------------------------------------------- */

rlx_status rlx_flow_select(rlx_flow *f, const char *name) {
    if (!f) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_flow_select: flow is NULL");
    if (f->error) return replay(f);
    if (!name || !*name) return rlx__flow_fail(f, RLX_ERR_INVALID_ARGUMENT, "select: name is empty");
    int v = find_value(f, name);
    if (v < 0) return rlx__flow_fail(f, RLX_ERR_BUILD, "select: no value called '%s'", name);
    if (f->list.values[v].rows == RLX__ROWS_FIXED)
        return rlx__flow_fail(f, RLX_ERR_BUILD, "select: '%s' is a constant; the cursor must be an activation or the token input", name);
    f->cursor = v;
    return RLX_OK;
}

rlx_status rlx_flow_when(rlx_flow *f, int cond, rlx_layer_fn fn, void *user) {
    if (!f) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_flow_when: flow is NULL");
    if (f->error) return replay(f);
    if (!fn) return rlx__flow_fail(f, RLX_ERR_INVALID_ARGUMENT, "when: callback is NULL");
    if (!cond) return RLX_OK;
    rlx_status s = fn(f, user);
    if (!rlx__status_known(s)) return rlx__flow_fail(f, RLX_ERR_INTERNAL, "when: the callback returned %d, which is not an rlx_status", (int)s);
    if (s != RLX_OK && f->error == RLX_OK) rlx__flow_remember(f, s); /* the callback failed without a block recording it */
    return s;
}

rlx_status rlx_flow_sequence(rlx_flow *f, const rlx_layer_fn *fns, size_t n, void *user) {
    if (!f) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_flow_sequence: flow is NULL");
    if (f->error) return replay(f);
    if (n && !fns) return rlx__flow_fail(f, RLX_ERR_INVALID_ARGUMENT, "sequence: %zu callbacks but the array is NULL", n);
    for (size_t i = 0; i < n; i++)
        if (!fns[i]) return rlx__flow_fail(f, RLX_ERR_INVALID_ARGUMENT, "sequence: callback %zu of %zu is NULL", i, n);
    for (size_t i = 0; i < n; i++) {
        rlx_status s = fns[i](f, user);
        if (!rlx__status_known(s))
            return rlx__flow_fail(f, RLX_ERR_INTERNAL, "sequence: callback %zu returned %d, which is not an rlx_status", i, (int)s);
        if (s != RLX_OK) {
            if (f->error == RLX_OK) rlx__flow_remember(f, s);
            return s;
        }
    }
    return RLX_OK;
}

/* ---- build ---------------------------------------------------------------------------------------- */

static const rlx__weight *stage_weight(const rlx_model *m, int stage, int k) {
    int idx = m->stage_w[(size_t)stage * RLX__STAGE_MAX_W + (size_t)k];
    return idx < 0 ? NULL : &m->weights[idx];
}

rlx_status rlx__custom_infer(rlx_model *m, int i, char *msg, size_t cap) {
    rlx__slist *l = &m->list;
    const rlx__stage *st = &l->stages[i];
    const rlx__custom *cu = st->custom;
    int64_t in_cols[RLX__STAGE_MAX_IN];
    rlx_dtype in_dtype[RLX__STAGE_MAX_IN];
    rlx_tensor_view wv[RLX__STAGE_MAX_W];
    int64_t out_cols[RLX__STAGE_MAX_OUT] = {0};
    /* An unknown width or a missing weight was reported where it arose: do not pile on. */
    for (int k = 0; k < st->n_in; k++) {
        if (!(in_cols[k] = l->values[st->in[k]].cols)) return RLX_OK;
        in_dtype[k] = l->values[st->in[k]].dtype;
    }
    for (int k = 0; k < st->n_w; k++) {
        const rlx__weight *w = stage_weight(m, i, k);
        if (!w) return RLX_OK;
        wv[k] = w->view;
    }
    char why[384] = "";
    rlx_custom_shape_args a = {.n_in = st->n_in, .in_cols = in_cols, .in_dtype = in_dtype, .n_w = st->n_w, .w = wv,
                               .n_out = st->n_out, .out_cols = out_cols, .user = cu->def.user, .msg = why, .msg_cap = sizeof why};
    rlx_status s = cu->def.shape(&a);
    /* the function may have filled msg to its capacity without a terminator */
    why[sizeof why - 1] = '\0';
    char widths[160];
    size_t len = 0;
    widths[0] = '\0';
    for (int k = 0; k < st->n_in && len < sizeof widths; k++)
        len += (size_t)snprintf(widths + len, sizeof widths - len, "%s%lld", k ? ", " : "", (long long)in_cols[k]);
    if (!rlx__status_known(s)) {
        snprintf(msg, cap, "stage %s (custom op '%s'): the shape function returned %d, which is not an rlx_status", st->name, cu->name,
                 (int)s);
        return RLX_ERR_INTERNAL;
    }
    if (s != RLX_OK) {
        snprintf(msg, cap, "stage %s (custom op '%s'): the shape function refused input widths [%s]: %s", st->name, cu->name, widths,
                 why[0] ? why : rlx_status_string(s));
        return s;
    }
    for (int k = 0; k < st->n_out; k++)
        if (out_cols[k] < 1 || out_cols[k] > (1 << 24)) {
            snprintf(msg, cap, "stage %s (custom op '%s'): the shape function gave output %d width %lld for input widths [%s] (need 1 .. 2^24)",
                     st->name, cu->name, k, (long long)out_cols[k], widths);
            return RLX_ERR_SHAPE;
        }
    for (int k = 0; k < st->n_out; k++) l->values[st->out[k]].cols = out_cols[k];
    return RLX_OK;
}

static rlx_custom_fn impl_for(const rlx__custom *cu, rlx_device_kind d) {
    switch (d) {
    case RLX_DEVICE_CPU: return cu->def.cpu;
    case RLX_DEVICE_CUDA: return cu->def.cuda;
    case RLX_DEVICE_SIMT: return cu->def.simt;
    case RLX_DEVICE_AUTO: break;
    }
    return NULL;
}

rlx_status rlx__custom_check_device(const rlx_model *m, rlx_device_kind device) {
    for (int i = 0; i < m->list.n_stages; i++) {
        const rlx__stage *st = &m->list.stages[i];
        if (st->op != RLX__OP_CUSTOM || impl_for(st->custom, device)) continue;
        return rlx__fail(RLX_ERR_UNSUPPORTED, "stage %s (custom op '%s') has no %s implementation (rlx_custom_def.%s is NULL)", st->name,
                         st->custom->name, rlx_device_kind_name(device), rlx_device_kind_name(device));
    }
    return RLX_OK;
}

rlx_status rlx__custom_prepare(rlx_model *m, const rlx_flow *f) {
    const struct rlx__params *p = f->params;
    if (!p) return RLX_OK;
    for (int j = 0; j < p->n; j++) {
        const int v = p->value[j];
        int read = 0;
        for (int i = 0; i < m->list.n_stages && !read; i++)
            for (int k = 0; k < m->list.stages[i].n_in; k++) read |= m->list.stages[i].in[k] == v;
        if (!read || m->consts[v]) continue;
        const rlx__value *val = &m->list.values[v];
        size_t n = (size_t)val->fixed_rows * (size_t)val->cols;
        if (!(m->consts[v] = rlx__malloc(n * sizeof(float), val->name))) return RLX_ERR_OUT_OF_MEMORY;
        memcpy(m->consts[v], p->data[j], n * sizeof(float));
    }
    return RLX_OK;
}

/* ---- execution ------------------------------------------------------------------------------------- */

static int64_t rows_of(const rlx__value *v, int64_t n_tokens, int64_t n_seqs) {
    switch (v->rows) {
    case RLX__ROWS_TOKENS: return n_tokens;
    case RLX__ROWS_SEQUENCES: return n_seqs;
    case RLX__ROWS_FIXED: return v->fixed_rows;
    }
    return 0;
}

rlx_status rlx__custom_invoke(const rlx_model *m, int i, const rlx__custom_io *io) {
    const rlx__slist *l = &m->list;
    const rlx__stage *st = &l->stages[i];
    const rlx__custom *cu = st->custom;
    if (st->op != RLX__OP_CUSTOM || !cu) return rlx__fail(RLX_ERR_INTERNAL, "stage %s is not a custom stage", st->name);
    rlx_custom_fn fn = impl_for(cu, io->device);
    if (!fn)
        return rlx__fail(RLX_ERR_UNSUPPORTED, "stage %s (custom op '%s') has no %s implementation", st->name, cu->name,
                         rlx_device_kind_name(io->device));
    int64_t in_rows[RLX__STAGE_MAX_IN], in_cols[RLX__STAGE_MAX_IN], out_cols[RLX__STAGE_MAX_OUT];
    int64_t w_rows[RLX__STAGE_MAX_W], w_cols[RLX__STAGE_MAX_W];
    rlx_dtype in_dtype[RLX__STAGE_MAX_IN];
    for (int k = 0; k < st->n_in; k++) {
        const rlx__value *v = &l->values[st->in[k]];
        in_rows[k] = rows_of(v, io->n_tokens, io->n_seqs);
        in_cols[k] = v->cols;
        in_dtype[k] = v->dtype == RLX_DTYPE_I32 ? RLX_DTYPE_I32 : io->dtype;
    }
    for (int k = 0; k < st->n_out; k++) out_cols[k] = l->values[st->out[k]].cols;
    for (int k = 0; k < st->n_w; k++) {
        const rlx__weight *w = stage_weight(m, i, k);
        w_rows[k] = w && w->ndim ? w->shape[0] : 1;
        w_cols[k] = w && w_rows[k] ? (int64_t)w->numel / w_rows[k] : 0;
    }
    char why[384] = "";
    rlx_custom_args a = {.device = io->device, .dtype = io->dtype, .rows = rows_of(&l->values[st->out[0]], io->n_tokens, io->n_seqs),
                         .n_out = st->n_out, .out = io->out, .out_cols = out_cols,
                         .n_in = st->n_in, .in = io->in, .in_rows = in_rows, .in_cols = in_cols, .in_dtype = in_dtype,
                         .n_w = st->n_w, .w = io->w, .w_rows = w_rows, .w_cols = w_cols,
                         .n_seqs = io->n_seqs, .seq_start = io->seq_start, .stream = io->stream, .threads = io->threads,
                         .user = cu->def.user, .msg = why, .msg_cap = sizeof why};
    rlx_clear_error();
    rlx_status s = fn(&a);
    if (s == RLX_OK) return RLX_OK;
    /* the implementation may have filled msg to its capacity without a terminator */
    why[sizeof why - 1] = '\0';
    if (!rlx__status_known(s))
        return rlx__fail(RLX_ERR_INTERNAL, "stage %s (custom op '%s') on %s: the implementation returned %d, which is not an rlx_status",
                         st->name, cu->name, rlx_device_kind_name(io->device), (int)s);
    if (!why[0]) snprintf(why, sizeof why, "%s", *rlx_last_error() ? rlx_last_error() : rlx_status_string(s));
    return rlx__fail(s, "stage %s (custom op '%s') on %s: %s", st->name, cu->name, rlx_device_kind_name(io->device), why);
}

rlx_status rlx__custom_cpu(const rlx_model *m, int i, const rlx__batch *b, float **buf) {
    const rlx__slist *l = &m->list;
    const rlx__stage *st = &l->stages[i];
    void *out[RLX__STAGE_MAX_OUT] = {0};
    const void *in[RLX__STAGE_MAX_IN] = {0};
    const void *w[RLX__STAGE_MAX_W] = {0};
    for (int k = 0; k < st->n_out; k++) {
        const rlx__value *v = &l->values[st->out[k]];
        size_t n = (size_t)rows_of(v, b->n_tokens, b->n_seqs) * (size_t)v->cols;
        if (k && !(buf[st->out[k]] = rlx__malloc(n * sizeof(float), v->name))) return RLX_ERR_OUT_OF_MEMORY;
        /* NaN until written: an implementation that skips part of an output is caught by the
         * callers' finite checks instead of passing on stale memory. */
        for (size_t e = 0; e < n; e++) buf[st->out[k]][e] = NAN;
        out[k] = buf[st->out[k]];
    }
    for (int k = 0; k < st->n_in; k++) {
        const int v = st->in[k];
        /* the token input has no buffer of its own; other i32 values (ids) live in buf */
        in[k] = v == m->tokens ? (const void *)b->tokens : m->consts[v] ? (const void *)m->consts[v] : (const void *)buf[v];
        if (!in[k]) return rlx__fail(RLX_ERR_INTERNAL, "CPU reference: input %d (%s) of stage %s has no buffer", k, l->values[v].name, st->name);
    }
    for (int k = 0; k < st->n_w; k++) {
        const rlx__weight *wt = stage_weight(m, i, k);
        w[k] = wt ? wt->f32 : NULL;
    }
    int32_t *seq = rlx__malloc((size_t)(b->n_seqs + 1) * sizeof *seq, "sequence offsets");
    if (!seq) return RLX_ERR_OUT_OF_MEMORY;
    for (int64_t q = 0; q <= b->n_seqs; q++) seq[q] = (int32_t)b->seq_start[q];
    rlx__custom_io io = {.device = RLX_DEVICE_CPU, .dtype = RLX_DTYPE_F32, .out = out, .in = in, .w = w, .n_tokens = b->n_tokens,
                         .n_seqs = b->n_seqs, .seq_start = seq, .stream = NULL, .threads = m->threads};
    rlx_status s = rlx__custom_invoke(m, i, &io);
    free(seq);
    return s;
}
