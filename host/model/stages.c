/* Stage list storage and printing. */
#include "model/stages.h"
#include "model/tiers.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *rlx__op_name(rlx__op op) {
    switch (op) {
#define RLX__OP_CASE(e, name) \
    case e:                   \
        return name;
        RLX__OP_MAP(RLX__OP_CASE)
#undef RLX__OP_CASE
    case RLX__OP_COUNT: break;
    }
    return "?";
}

static void free_stage(rlx__stage *s) {
    free(s->name);
    for (int i = 0; i < s->n_w; i++) free(s->wkey[i]);
    rlx__custom_release(s->custom);
}

void rlx__slist_free(rlx__slist *l) {
    for (int i = 0; i < l->n_values; i++) free(l->values[i].name);
    for (int i = 0; i < l->n_stages; i++) free_stage(&l->stages[i]);
    free(l->values);
    free(l->stages);
    memset(l, 0, sizeof *l);
}

static int grow(void **p, int *cap, int need, size_t elem, const char *what) {
    if (need <= *cap) return 1;
    int nc = *cap ? *cap * 2 : 16;
    while (nc < need) nc *= 2;
    void *np = realloc(*p, (size_t)nc * elem);
    if (!np) {
        rlx__fail(RLX_ERR_OUT_OF_MEMORY, "out of host memory: %zu bytes for %s",
                  (size_t)nc * elem, what);
        return 0;
    }
    *p = np;
    *cap = nc;
    return 1;
}

int rlx__slist_add_value(rlx__slist *l, const char *name, rlx_dtype dtype, rlx__rows rows,
                         int64_t fixed_rows, int64_t cols) {
    if (!grow((void **)&l->values, &l->cap_values, l->n_values + 1, sizeof(rlx__value),
              "the value table"))
        return -1;
    char *n = rlx__strdup(name ? name : "");
    if (!n) return -1;
    rlx__value *v = &l->values[l->n_values];
    memset(v, 0, sizeof *v);
    v->name = n;
    v->dtype = dtype;
    v->rows = rows;
    v->fixed_rows = fixed_rows;
    v->cols = cols;
    v->producer = -1;
    return l->n_values++;
}

int rlx__slist_add_stage(rlx__slist *l, const rlx__stage *st) {
    if (!grow((void **)&l->stages, &l->cap_stages, l->n_stages + 1, sizeof(rlx__stage),
              "the stage list"))
        return -1;
    rlx__stage s = *st;
    s.custom = NULL; /* retained below, once the copy is complete */
    s.name = rlx__strdup(st->name ? st->name : rlx__op_name(st->op));
    if (!s.name) return -1;
    for (int i = 0; i < s.n_w; i++) {
        s.wkey[i] = NULL;
        if (st->wkey[i] && !(s.wkey[i] = rlx__strdup(st->wkey[i]))) {
            s.n_w = i;
            free_stage(&s);
            return -1;
        }
    }
    s.custom = st->custom;
    rlx__custom_retain(s.custom);
    l->stages[l->n_stages] = s;
    for (int i = 0; i < s.n_out; i++) l->values[s.out[i]].producer = l->n_stages;
    return l->n_stages++;
}

void rlx__slist_remove_stages(rlx__slist *l, const unsigned char *keep) {
    int n = 0;
    for (int i = 0; i < l->n_stages; i++) {
        if (!keep[i]) {
            for (int k = 0; k < l->stages[i].n_out; k++) l->values[l->stages[i].out[k]].producer = -1;
            free_stage(&l->stages[i]);
            continue;
        }
        l->stages[n] = l->stages[i];
        for (int k = 0; k < l->stages[n].n_out; k++) l->values[l->stages[n].out[k]].producer = n;
        n++;
    }
    l->n_stages = n;
}

void rlx__slist_residual_stream(const rlx__slist *l, unsigned char *res) {
    memset(res, 0, (size_t)l->n_values);
    for (int i = 0; i < l->n_stages; i++) {
        const rlx__stage *st = &l->stages[i];
        if (st->op != RLX__OP_ADD) continue;
        for (int j = 0; j < 2; j++) {
            int p = l->values[st->in[j]].producer;
            if (p >= 0 && l->stages[p].op == RLX__OP_EMBED) res[st->in[j]] = 1;
        }
    }
    /* stages are in order: a residual operand is marked before its add is reached */
    for (int i = 0; i < l->n_stages; i++) {
        const rlx__stage *st = &l->stages[i];
        if ((st->op == RLX__OP_ADD && (res[st->in[0]] || res[st->in[1]])) || (st->op == RLX__OP_LAST_TOKEN && res[st->in[0]]))
            res[st->out[0]] = 1;
    }
}

rlx_status rlx__slist_copy_values(rlx__slist *dst, const rlx__slist *src) {
    memset(dst, 0, sizeof *dst);
    for (int i = 0; i < src->n_values; i++) {
        const rlx__value *v = &src->values[i];
        if (rlx__slist_add_value(dst, v->name, v->dtype, v->rows, v->fixed_rows, v->cols) < 0) {
            rlx__slist_free(dst);
            return RLX_ERR_OUT_OF_MEMORY;
        }
    }
    return RLX_OK;
}

/* ---- printing ------------------------------------------------------------------------------ */

typedef struct strbuf {
    char *p;
    size_t n, cap;
    int oom;
} strbuf;

static void sb_printf(strbuf *b, const char *fmt, ...) RLX__PRINTF(2, 3);
static void sb_printf(strbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (n < 0) return;
        if (b->p && b->n + (size_t)n < b->cap) {
            b->n += (size_t)n;
            return;
        }
        size_t nc = b->cap ? b->cap * 2 : 4096;
        while (nc < b->n + (size_t)n + 1) nc *= 2;
        char *np = realloc(b->p, nc);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = nc;
    }
}

static void fmt_value(strbuf *b, const rlx__slist *l, int id) {
    const rlx__value *v = &l->values[id];
    const char *rows = v->rows == RLX__ROWS_TOKENS ? "T" : v->rows == RLX__ROWS_SEQUENCES ? "S" : NULL;
    if (rows && v->cols) sb_printf(b, "%%%d:%s[%s,%lld]", id, rlx_dtype_name(v->dtype), rows, (long long)v->cols);
    else if (rows) sb_printf(b, "%%%d:%s[%s,?]", id, rlx_dtype_name(v->dtype), rows);
    else sb_printf(b, "%%%d:%s[%lld,%lld]", id, rlx_dtype_name(v->dtype), (long long)v->fixed_rows, (long long)v->cols);
}

rlx_status rlx__slist_format(const rlx__slist *l, char **text) {
    strbuf b = {0};
    for (int i = 0; i < l->n_stages; i++) {
        const rlx__stage *s = &l->stages[i];
        sb_printf(&b, "%4d  %-12s %-22s ", i, rlx__op_name(s->op), s->name);
        for (int k = 0; k < s->n_out; k++) {
            if (k) sb_printf(&b, ", ");
            fmt_value(&b, l, s->out[k]);
        }
        sb_printf(&b, " <- ");
        for (int k = 0; k < s->n_in; k++) {
            if (k) sb_printf(&b, ", ");
            fmt_value(&b, l, s->in[k]);
        }
        for (int k = 0; k < s->n_w; k++)
            if (s->wkey[k]) sb_printf(&b, "%s%s", k || s->n_in ? ", " : "", s->wkey[k]);
        switch (s->op) {
        case RLX__OP_RMS_NORM: sb_printf(&b, "  eps=%g", s->eps); break;
        case RLX__OP_ROPE: sb_printf(&b, "  heads=%lld head_dim=%lld", (long long)s->heads, (long long)s->head_dim); break;
        case RLX__OP_ATTENTION:
            sb_printf(&b, "  heads=%lld kv_heads=%lld head_dim=%lld%s", (long long)s->heads,
                      (long long)s->kv_heads, (long long)s->head_dim, s->causal ? " causal" : "");
            break;
        case RLX__OP_LLAMA_LAYER:
            sb_printf(&b, "  heads=%lld kv_heads=%lld head_dim=%lld eps=%g", (long long)s->heads,
                      (long long)s->kv_heads, (long long)s->head_dim, s->eps);
            break;
        case RLX__OP_ROPE_TABLES:
            sb_printf(&b, "  theta=%g positions=%lld%s", s->rope.theta, (long long)s->rope.max_positions,
                      s->rope.scaling == RLX_ROPE_SCALING_LLAMA3 ? " llama3" : "");
            break;
        case RLX__OP_LAYER_NORM: sb_printf(&b, "  eps=%g", s->eps); break;
        case RLX__OP_CUSTOM: sb_printf(&b, "  op=%s", rlx__custom_def(s->custom) ? rlx__custom_def(s->custom)->name : "?"); break;
        case RLX__OP_SLICE_COLS:
            sb_printf(&b, "  cols=[%lld, %lld)", (long long)s->slice_begin, (long long)(s->slice_begin + s->slice_width));
            break;
        case RLX__OP_INPUT_IDS: sb_printf(&b, "  %s", s->required ? "required" : "optional (absent = zeros)"); break;
        case RLX__OP_GATHER_ADD:
            if (s->expect_rows) sb_printf(&b, "  rows=%lld", (long long)s->expect_rows);
            break;
        default: break;
        }
        sb_printf(&b, "\n");
    }
    if (b.oom || !b.p) {
        free(b.p);
        if (b.oom) return rlx__fail(RLX_ERR_OUT_OF_MEMORY, "out of host memory formatting the stage list");
        b.p = rlx__strdup("");
        if (!b.p) return RLX_ERR_OUT_OF_MEMORY;
    }
    *text = b.p;
    return RLX_OK;
}

void rlx_free(void *p) { free(p); }
