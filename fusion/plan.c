/* Planner: stage list → kernel plan (primitives or fused patterns) + activation arena by liveness. */
#include "plan.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *rlx__kernel_name(rlx__kkind k) {
    switch (k) {
#define RLX__K_CASE(e, name, standalone) \
    case e:                              \
        return name;
        RLX__KERNEL_MAP(RLX__K_CASE)
#undef RLX__K_CASE
    case RLX__K_COUNT: break;
    }
    return "?";
}

int rlx__kernel_is_standalone_pass(rlx__kkind k) {
    switch (k) {
#define RLX__K_CASE(e, name, standalone) \
    case e:                              \
        return standalone;
        RLX__KERNEL_MAP(RLX__K_CASE)
#undef RLX__K_CASE
    case RLX__K_COUNT: break;
    }
    return 0;
}

void rlx__plan_free(rlx__plan *p) {
    if (!p) return;
    free(p->k);
    free(p->buf);
    free(p->dw);
    free(p->used_weight);
    free(p->act_copy);
    free(p->offset);
    free(p->bytes);
    free(p->missed);
    memset(p, 0, sizeof *p);
}

/* ---- building blocks ---------------------------------------------------------------------------- */

typedef struct planner {
    const rlx_model *m;
    rlx__plan *p;
    int *n_cons;      /* [n_values]: consumers of each value */
    int **cons;       /* [n_values][n_cons]: consumer stage indices */
    int *covered;     /* [n_stages]: pattern id + 1 covering the stage, 0 = none */
    int *scale_of;    /* [n_values]: buffer of s(value) when some kernel needs it, else -1 */
    float *scale_eps; /* [n_values]: eps of that scale */
    rlx_status err;
} planner;

static int stage_w(const rlx_model *m, int stage, int k) {
    return k < m->list.stages[stage].n_w ? m->stage_w[(size_t)stage * RLX__STAGE_MAX_W + (size_t)k] : -1;
}

static rlx__kernel *add_kernel(planner *pl, rlx__kkind kind, const rlx__stage *st) {
    rlx__plan *p = pl->p;
    if (pl->err) return NULL;
    if (p->n == p->cap) {
        int nc = p->cap ? p->cap * 2 : 64;
        rlx__kernel *nk = realloc(p->k, (size_t)nc * sizeof *nk);
        if (!nk) {
            pl->err = rlx__fail(RLX_ERR_OUT_OF_MEMORY, "out of host memory for the kernel plan");
            return NULL;
        }
        p->k = nk;
        p->cap = nc;
    }
    rlx__kernel *k = &p->k[p->n++];
    memset(k, 0, sizeof *k);
    k->kind = kind;
    k->in[0] = k->in[1] = k->in[2] = k->in[3] = -1;
    k->out = k->out2 = k->w = k->bias = k->residual = k->gamma = k->shadow = -1;
    k->kv_layer = k->kv_k = k->kv_v = -1;
    k->st = st;
    return k;
}

static void cover(rlx__kernel *k, int stage) {
    if (k && k->n_stages < RLX__KERNEL_MAX_STAGES) k->stages[k->n_stages++] = stage;
}

static int add_buf(planner *pl, rlx__rows rows, int64_t cols, int kind) {
    rlx__plan *p = pl->p;
    if (pl->err) return -1;
    if (p->n_buf == p->cap_buf) {
        int nc = p->cap_buf ? p->cap_buf * 2 : 64;
        rlx__buf *nb = realloc(p->buf, (size_t)nc * sizeof *nb);
        if (!nb) {
            pl->err = rlx__fail(RLX_ERR_OUT_OF_MEMORY, "out of host memory for the buffer plan");
            return -1;
        }
        p->buf = nb;
        p->cap_buf = nc;
    }
    rlx__buf *b = &p->buf[p->n_buf];
    b->value = -1;
    b->rows = rows;
    b->fixed_rows = 0;
    b->cols = cols;
    b->kind = kind;
    b->stream = 0;
    b->elem = kind == 0 ? (p->act_dtype == RLX_K_F32 ? 4 : 2) : 4;
    return p->n_buf++;
}

static int add_dweight(planner *pl, const int *src, int n, int gamma, int64_t rows, int64_t cols) {
    rlx__plan *p = pl->p;
    rlx__dweight *nd = realloc(p->dw, (size_t)(p->n_dw + 1) * sizeof *nd);
    if (!nd) {
        pl->err = rlx__fail(RLX_ERR_OUT_OF_MEMORY, "out of host memory for derived weights");
        return -1;
    }
    p->dw = nd;
    rlx__dweight *d = &p->dw[p->n_dw];
    memset(d, 0, sizeof *d);
    d->n_parts = n;
    for (int i = 0; i < n; i++) d->src[i] = src[i];
    d->gamma = gamma;
    d->rows = rows;
    d->cols = cols;
    return p->n_weights + p->n_dw++;
}

/* The stage producing value v (or -1), and whether v has exactly one consumer. */
static int producer(const planner *pl, int v) { return pl->m->list.values[v].producer; }
static int single_use(const planner *pl, int v) { return pl->n_cons[v] == 1 && v != pl->m->output; }
static const rlx__stage *S(const planner *pl, int i) { return &pl->m->list.stages[i]; }

/* ---- fused patterns ------------------------------------------------------------------------------- */

enum { PAT_ATTN = 1, PAT_MLP, PAT_RESID, PAT_FINAL, PAT_ADD_LN };

typedef struct pattern {
    int kind;
    int anchor;       /* stage at whose position the kernels are emitted */
    int stages[12];
    int n;
    /* attention / MLP */
    int x;            /* raw input value of the folded GEMM */
    int norm;         /* rms_norm stage folded (-1: none) */
    int lin[3];       /* linear stages in weight order */
    int n_lin;
    int rope;         /* attention: rope on q and k */
    /* residual */
    int lin_stage, other;
} pattern;

static void pat_add(pattern *pt, int stage) {
    if (pt->n < 12) pt->stages[pt->n++] = stage;
}

/* A linear with no bias reading value `in`, single use, not the output. */
static int plain_linear(const planner *pl, int stage, int in) {
    if (stage < 0) return 0;
    const rlx__stage *st = S(pl, stage);
    return st->op == RLX__OP_LINEAR && st->in[0] == in && stage_w(pl->m, stage, 1) < 0 && stage_w(pl->m, stage, 0) >= 0 &&
           single_use(pl, st->out[0]);
}

/* Norm feeding exactly `n` linears: returns the norm stage or -1 (x is then the linears' input). */
static int folded_norm(const planner *pl, int in, int n) {
    if (!pl->m->profile.constant_folding) return -1; /* passes.constant_folding = false: γ stays a norm */
    int ns = producer(pl, in);
    if (ns < 0 || S(pl, ns)->op != RLX__OP_RMS_NORM || pl->n_cons[in] != n || in == pl->m->output) return -1;
    if (stage_w(pl->m, ns, 0) < 0) return -1;
    return ns;
}

static int match_attention(const planner *pl, int a, pattern *pt) {
    const rlx__stage *st = S(pl, a);
    if (st->head_dim > 256) return 0; /* rope_attention's limit */
    memset(pt, 0, sizeof *pt);
    pt->kind = PAT_ATTN;
    pt->anchor = a;
    int lin[3], ropes = 0, cos = -1, sin = -1;
    for (int j = 0; j < 3; j++) {
        int v = st->in[j], ps = producer(pl, v);
        if (ps < 0 || !single_use(pl, v)) return 0;
        if (j < 2 && S(pl, ps)->op == RLX__OP_ROPE) {
            const rlx__stage *r = S(pl, ps);
            if (r->head_dim != st->head_dim || r->heads != (j == 0 ? st->heads : st->kv_heads)) return 0;
            if (cos >= 0 && (r->in[1] != cos || r->in[2] != sin)) return 0;
            cos = r->in[1], sin = r->in[2];
            pat_add(pt, ps);
            ropes++;
            v = r->in[0];
            ps = producer(pl, v);
            if (ps < 0 || !single_use(pl, v)) return 0;
        }
        lin[j] = ps;
    }
    if (ropes != 0 && ropes != 2) return 0; /* RoPE on q and k, or on neither */
    const int x = S(pl, lin[0])->in[0];
    for (int j = 0; j < 3; j++)
        if (!plain_linear(pl, lin[j], x) || S(pl, lin[j])->op != RLX__OP_LINEAR) return 0;
    pt->rope = ropes == 2;
    pt->norm = folded_norm(pl, x, 3);
    pt->x = pt->norm >= 0 ? S(pl, pt->norm)->in[0] : x;
    for (int j = 0; j < 3; j++) pt->lin[j] = lin[j], pat_add(pt, lin[j]);
    pt->n_lin = 3;
    if (pt->norm >= 0) pat_add(pt, pt->norm);
    pat_add(pt, a);
    return 1;
}

static int match_mlp(const planner *pl, int sm, pattern *pt) {
    const rlx__stage *st = S(pl, sm);
    memset(pt, 0, sizeof *pt);
    pt->kind = PAT_MLP;
    pt->anchor = sm;
    int g = producer(pl, st->in[0]), u = producer(pl, st->in[1]);
    if (g < 0 || u < 0 || g == u) return 0;
    const int x = S(pl, g)->in[0];
    if (!plain_linear(pl, g, x) || !plain_linear(pl, u, x)) return 0;
    pt->norm = folded_norm(pl, x, 2);
    pt->x = pt->norm >= 0 ? S(pl, pt->norm)->in[0] : x;
    pt->lin[0] = g, pt->lin[1] = u, pt->n_lin = 2;
    pat_add(pt, g), pat_add(pt, u);
    if (pt->norm >= 0) pat_add(pt, pt->norm);
    pat_add(pt, sm);
    return 1;
}

static int match_resid(const planner *pl, int ad, pattern *pt) {
    const rlx__stage *st = S(pl, ad);
    memset(pt, 0, sizeof *pt);
    pt->kind = PAT_RESID;
    pt->anchor = ad;
    for (int j = 0; j < 2; j++) {
        int ls = producer(pl, st->in[j]);
        if (ls < 0 || S(pl, ls)->op != RLX__OP_LINEAR || !single_use(pl, st->in[j]) || st->in[0] == st->in[1]) continue;
        if (pl->covered[ls]) continue;
        pt->lin_stage = ls;
        pt->other = st->in[1 - j];
        pat_add(pt, ls);
        pat_add(pt, ad);
        return 1;
    }
    return 0;
}

/* add → layer_norm: the norm reads both operands (post-LN encoder layers). */
static int match_add_ln(const planner *pl, int ln, pattern *pt) {
    const rlx__stage *st = S(pl, ln);
    int ad = producer(pl, st->in[0]);
    if (ad < 0 || S(pl, ad)->op != RLX__OP_ADD || !single_use(pl, st->in[0])) return 0;
    memset(pt, 0, sizeof *pt);
    pt->kind = PAT_ADD_LN;
    pt->anchor = ln;
    pt->lin_stage = ad;
    pat_add(pt, ad);
    pat_add(pt, ln);
    return 1;
}

static int match_final(const planner *pl, int ns, pattern *pt) {
    const rlx__stage *st = S(pl, ns);
    int lt = producer(pl, st->in[0]);
    if (lt < 0 || S(pl, lt)->op != RLX__OP_LAST_TOKEN || !single_use(pl, st->in[0]) || stage_w(pl->m, ns, 0) < 0) return 0;
    memset(pt, 0, sizeof *pt);
    pt->kind = PAT_FINAL;
    pt->anchor = ns;
    pat_add(pt, lt);
    pat_add(pt, ns);
    return 1;
}

/* ---- emission ------------------------------------------------------------------------------------ */

static void needs_scale(planner *pl, int x, float eps) {
    if (pl->scale_of[x] >= 0) return;
    pl->scale_of[x] = add_buf(pl, pl->m->list.values[x].rows, 1, 1);
    pl->scale_eps[x] = eps;
}

/* One primitive kernel for stage i (policy none, and whatever no rule covers). */
static void emit_primitive(planner *pl, int i) {
    const rlx_model *m = pl->m;
    const rlx__stage *st = S(pl, i);
    rlx__kkind kind;
    switch (st->op) {
    case RLX__OP_INPUT_TOKENS:
    case RLX__OP_ROPE_TABLES: return; /* uploaded, not computed */
    case RLX__OP_EMBED: kind = RLX__K_EMBED; break;
    case RLX__OP_RMS_NORM: kind = RLX__K_RMS_NORM; break;
    case RLX__OP_LINEAR: kind = RLX__K_GEMM; break;
    case RLX__OP_ROPE: kind = RLX__K_ROPE; break;
    case RLX__OP_ATTENTION: kind = RLX__K_ATTENTION; break;
    case RLX__OP_ADD: kind = RLX__K_ADD; break;
    case RLX__OP_SILU_MUL: kind = RLX__K_SILU_MUL; break;
    case RLX__OP_LAST_TOKEN: kind = RLX__K_LAST_TOKEN; break;
    case RLX__OP_INPUT_IDS: kind = RLX__K_INPUT_IDS; break;
    case RLX__OP_POSITIONS: kind = RLX__K_POSITIONS; break;
    case RLX__OP_GATHER_ADD: kind = RLX__K_GATHER_ADD; break;
    case RLX__OP_LAYER_NORM: kind = RLX__K_LAYER_NORM; break;
    case RLX__OP_GELU: kind = RLX__K_GELU; break;
    case RLX__OP_SLICE_COLS: kind = RLX__K_SLICE_COLS; break;
    case RLX__OP_CLS_POOL: kind = RLX__K_CLS_POOL; break;
    case RLX__OP_MEAN_POOL: kind = RLX__K_MEAN_POOL; break;
    case RLX__OP_L2_NORMALIZE: kind = RLX__K_L2_NORMALIZE; break;
    case RLX__OP_CUSTOM: kind = RLX__K_CUSTOM; break;
    case RLX__OP_ALL_REDUCE: kind = RLX__K_ALL_REDUCE; break;
    case RLX__OP_ALL_GATHER: kind = RLX__K_ALL_GATHER; break;
    default:
        pl->err = rlx__fail(RLX_ERR_UNSUPPORTED, "planner: stage %s (op %s) has no device kernel yet; build it for the cpu device",
                            st->name, rlx__op_name(st->op));
        return;
    }
    if (kind == RLX__K_ATTENTION && st->kv_layer >= 0) {
        /* a KV call appends the rotated k and v to the pages before attention reads them there */
        rlx__kernel *w = add_kernel(pl, RLX__K_KV_WRITE, st);
        if (!w) return;
        cover(w, i);
        w->in[0] = st->in[1];
        w->in[1] = st->in[2];
        w->kv_layer = st->kv_layer;
        w->kv_only = 1;
    }
    rlx__kernel *k = add_kernel(pl, kind, st);
    if (!k) return;
    cover(k, i);
    for (int j = 0; j < st->n_in && j < 4; j++) k->in[j] = st->in[j];
    if (kind == RLX__K_ATTENTION) k->kv_k = st->in[1], k->kv_v = st->in[2], k->kv_layer = st->kv_layer;
    k->out = st->n_out ? st->out[0] : -1;
    k->eps = (float)st->eps;
    if (kind == RLX__K_GEMM) {
        k->w = stage_w(m, i, 0);
        k->bias = stage_w(m, i, 1);
        k->n_cols = m->list.values[k->out].cols;
    } else if (kind == RLX__K_EMBED || kind == RLX__K_RMS_NORM || kind == RLX__K_GATHER_ADD) {
        k->w = stage_w(m, i, 0);
    } else if (kind == RLX__K_LAYER_NORM) {
        k->w = stage_w(m, i, 0);
        k->bias = stage_w(m, i, 1); /* β */
    } else if (kind == RLX__K_ALL_GATHER) {
        const rlx__value *x = &m->list.values[st->in[0]];
        k->out2 = add_buf(pl, x->rows, x->cols * (m->tp_size > 0 ? m->tp_size : 1), 0); /* NCCL's staging */
    }
}

static void emit_pattern(planner *pl, const pattern *pt) {
    const rlx_model *m = pl->m;
    const rlx__stage *anchor = S(pl, pt->anchor);
    switch (pt->kind) {
    case PAT_ATTN:
    case PAT_MLP: {
        int src[3];
        int64_t rows = 0;
        for (int j = 0; j < pt->n_lin; j++) {
            src[j] = stage_w(m, pt->lin[j], 0);
            rows += m->list.values[S(pl, pt->lin[j])->out[0]].cols;
        }
        const int64_t K = m->list.values[pt->x].cols;
        int gamma = pt->norm >= 0 ? stage_w(m, pt->norm, 0) : -1;
        int w = add_dweight(pl, src, pt->n_lin, gamma, rows, K);
        /* as many rows as the GEMM's input: one per token, or one per sequence in a pruned last layer */
        int packed = add_buf(pl, m->list.values[pt->x].rows, rows, 0);
        rlx__kernel *g = add_kernel(pl, RLX__K_GEMM, S(pl, pt->lin[0]));
        if (!g) return;
        g->in[0] = pt->x;
        g->out = packed;
        g->w = w;
        g->n_cols = rows;
        for (int j = 0; j < pt->n_lin; j++) cover(g, pt->lin[j]);
        if (pt->norm >= 0) cover(g, pt->norm);
        int kv_w = -1;
        if (pt->kind == PAT_ATTN) {
            /* K rotated and scaled once, with V, into the buffers (or pages) attention reads */
            const int64_t kvw = anchor->kv_heads * anchor->head_dim;
            int kb = add_buf(pl, RLX__ROWS_TOKENS, kvw, 0), vb = add_buf(pl, RLX__ROWS_TOKENS, kvw, 0);
            rlx__kernel *w = add_kernel(pl, RLX__K_KV_WRITE, anchor);
            if (!w) return;
            w->in[0] = packed;
            w->in[1] = pt->norm >= 0 ? pl->scale_of[pt->x] : -1;
            w->out = kb;
            w->out2 = vb;
            w->rope = pt->rope;
            w->kv_layer = anchor->kv_layer;
            if (pt->rope) {
                const rlx__stage *r = S(pl, producer(pl, anchor->in[1])); /* rope(k) */
                w->in[2] = r->in[1], w->in[3] = r->in[2];
                cover(w, producer(pl, anchor->in[1]));
            } else {
                cover(w, pt->anchor);
            }
            kv_w = pl->p->n - 1;
        }
        /* flash: bf16, head_dim 64 or 128, its grid limit on sequences; else the same contract
         * without tensor cores */
        const int flash = pl->p->act_dtype == RLX_K_BF16 && (anchor->head_dim == 64 || anchor->head_dim == 128) &&
                          m->max_seqs <= 65535;
        rlx__kernel *k = add_kernel(pl, pt->kind == PAT_MLP ? RLX__K_SWIGLU_SCALED
                                        : flash         ? RLX__K_FLASH_ATTENTION
                                                        : RLX__K_ROPE_ATTENTION,
                                    anchor);
        if (!k) return;
        k->in[0] = packed;
        k->in[1] = pt->norm >= 0 ? pl->scale_of[pt->x] : -1;
        k->out = anchor->out[0];
        k->n_cols = m->list.values[k->out].cols;
        if (pt->kind == PAT_ATTN) {
            k->rope = pt->rope;
            if (k->rope && anchor->head_dim % 2) pl->err = rlx__fail(RLX_ERR_INTERNAL, "planner: odd head_dim with RoPE");
            if (pt->rope) {
                const rlx__stage *r = S(pl, producer(pl, anchor->in[0]));
                k->in[2] = r->in[1], k->in[3] = r->in[2];
            }
            k->kv_k = pl->p->k[kv_w].out;
            k->kv_v = pl->p->k[kv_w].out2;
            k->kv_layer = anchor->kv_layer;
        }
        /* the rope of k is listed with kv_write */
        const int rope_k = pt->kind == PAT_ATTN && pt->rope ? producer(pl, anchor->in[1]) : -1;
        for (int j = 0; j < pt->n; j++)
            if (pt->stages[j] != pt->lin[0] && pt->stages[j] != pt->lin[1] && pt->stages[j] != pt->lin[2] &&
                pt->stages[j] != pt->norm && pt->stages[j] != rope_k)
                cover(k, pt->stages[j]);
        break;
    }
    case PAT_RESID: {
        const rlx__stage *l = S(pl, pt->lin_stage);
        rlx__kernel *g = add_kernel(pl, RLX__K_GEMM, l);
        if (!g) return;
        g->in[0] = l->in[0];
        g->w = stage_w(m, pt->lin_stage, 0);
        g->bias = stage_w(m, pt->lin_stage, 1);
        g->residual = pt->other;
        g->out = anchor->out[0];
        g->n_cols = m->list.values[g->out].cols;
        cover(g, pt->lin_stage);
        cover(g, pt->anchor);
        break;
    }
    case PAT_ADD_LN: {
        const rlx__stage *ad = S(pl, pt->lin_stage);
        rlx__kernel *k = add_kernel(pl, RLX__K_LAYER_NORM, anchor);
        if (!k) return;
        k->in[0] = ad->in[0];
        k->in[1] = ad->in[1];
        k->out = anchor->out[0];
        k->w = stage_w(m, pt->anchor, 0);
        k->bias = stage_w(m, pt->anchor, 1);
        k->eps = (float)anchor->eps;
        cover(k, pt->lin_stage);
        cover(k, pt->anchor);
        break;
    }
    case PAT_FINAL: {
        const rlx__stage *lt = S(pl, pt->stages[0]);
        rlx__kernel *k = add_kernel(pl, RLX__K_LAST_TOKEN_NORM, anchor);
        if (!k) return;
        k->in[0] = lt->in[0];
        k->out = anchor->out[0];
        k->w = stage_w(m, pt->anchor, 0);
        k->eps = (float)anchor->eps;
        cover(k, pt->stages[0]);
        cover(k, pt->anchor);
        break;
    }
    }
}

/* After the kernel that produced v: make its row scales, in the same kernel where one exists. */
static void emit_scale_after(planner *pl, int v) {
    if (v < 0 || pl->scale_of[v] < 0 || pl->p->n == 0) return;
    rlx__kernel *last = &pl->p->k[pl->p->n - 1];
    if (last->out != v) return;
    if (last->kind == RLX__K_EMBED || last->kind == RLX__K_ADD) {
        last->kind = last->kind == RLX__K_EMBED ? RLX__K_EMBED_ROWSCALE : RLX__K_ADD_ROWSCALE;
        last->out2 = pl->scale_of[v];
        last->eps = pl->scale_eps[v];
        return;
    }
    rlx__kernel *k = add_kernel(pl, RLX__K_ROWSCALE, last->st);
    if (!k) return;
    k->in[0] = v;
    k->out = pl->scale_of[v];
    k->eps = pl->scale_eps[v];
}

static int pattern_free(const planner *pl, const pattern *pt) {
    for (int j = 0; j < pt->n; j++)
        if (pl->covered[pt->stages[j]]) return 0;
    return 1;
}

static void claim(planner *pl, pattern *pats, const pattern *pt) {
    pats[pt->anchor] = *pt;
    for (int j = 0; j < pt->n; j++) pl->covered[pt->stages[j]] = pt->anchor + 1;
}

static void plan_stages(planner *pl) {
    const rlx__slist *l = &pl->m->list;
    pattern *pats = rlx__calloc((size_t)l->n_stages + 1, sizeof *pats, "fusion patterns");
    if (!pats) {
        pl->err = RLX_ERR_OUT_OF_MEMORY;
        return;
    }
    if (pl->p->policy == RLX_FUSION_FUSED) {
        pattern pt;
        for (int i = 0; i < l->n_stages; i++) {
            const rlx__stage *st = S(pl, i);
            int ok = 0;
            if (st->op == RLX__OP_ATTENTION) ok = match_attention(pl, i, &pt);
            else if (st->op == RLX__OP_SILU_MUL) ok = match_mlp(pl, i, &pt);
            else if (st->op == RLX__OP_RMS_NORM) ok = match_final(pl, i, &pt);
            else if (st->op == RLX__OP_LAYER_NORM) ok = match_add_ln(pl, i, &pt);
            if (!ok || !pattern_free(pl, &pt)) continue;
            /* one scale per value: two norms of x with different eps cannot share it */
            if ((pt.kind == PAT_ATTN || pt.kind == PAT_MLP) && pt.norm >= 0) {
                float eps = (float)S(pl, pt.norm)->eps;
                if (pl->scale_of[pt.x] >= 0 && pl->scale_eps[pt.x] != eps) continue;
                needs_scale(pl, pt.x, eps);
            }
            claim(pl, pats, &pt);
        }
        for (int i = 0; i < l->n_stages; i++)
            if (S(pl, i)->op == RLX__OP_ADD && !pl->covered[i] && match_resid(pl, i, &pt) && pattern_free(pl, &pt))
                claim(pl, pats, &pt);
    }
    for (int i = 0; i < l->n_stages && !pl->err; i++) {
        int c = pl->covered[i];
        if (c && c - 1 != i) continue; /* emitted with its pattern's anchor */
        if (c) emit_pattern(pl, &pats[i]);
        else emit_primitive(pl, i);
        const rlx__stage *st = S(pl, i);
        if (st->n_out) emit_scale_after(pl, st->out[0]);
    }
    free(pats);
}

/* ---- the f32 residual stream (precision.mixed = "auto"; plan.h) ------------------------------------ */

static int is_f32(const rlx__plan *p, int b) { return b >= 0 && p->buf[b].stream; }

/* Kernels that can write the bf16 copy of the f32 stream buffer b as they touch it. */
static int can_shadow(const rlx__plan *p, const rlx__kernel *k, int b) {
    if (!k->resid) return 0;
    switch (k->kind) {
    case RLX__K_EMBED:
    case RLX__K_EMBED_ROWSCALE: return k->out == b;
    case RLX__K_ADD:
    case RLX__K_ADD_ROWSCALE: return k->out == b && k->resid == 1;
    case RLX__K_ROWSCALE: return k->in[0] == b;
    default: (void)p; return 0;
    }
}

/* The activation-dtype copy of f32 buffer b for the reader about to be appended to out[0..*n):
 * the shadow a kernel already writes, or one a writer of b takes on, or a residual_cast appended
 * now (it runs right before the reader). */
static int act_copy_of(planner *pl, rlx__kernel *out, int *n, int b, const rlx__stage *reader) {
    rlx__plan *p = pl->p;
    if (p->act_copy[b] >= 0) return p->act_copy[b];
    const int sh = add_buf(pl, p->buf[b].rows, p->buf[b].cols, 0);
    if (sh < 0) return -1;
    p->buf[sh].fixed_rows = p->buf[b].fixed_rows;
    p->act_copy[b] = sh;
    for (int i = *n - 1; i >= 0; i--)
        if (can_shadow(p, &out[i], b)) {
            out[i].shadow = sh;
            return sh;
        }
    rlx__kernel *c = &out[(*n)++];
    memset(c, 0, sizeof *c);
    c->kind = RLX__K_RESIDUAL_CAST;
    c->in[0] = b, c->in[1] = c->in[2] = c->in[3] = -1;
    c->out = sh;
    c->out2 = c->w = c->bias = c->residual = c->gamma = c->shadow = -1;
    c->resid = 1;
    c->st = reader;
    return sh;
}

static void plan_residual_stream(planner *pl) {
    const rlx_model *m = pl->m;
    rlx__plan *p = pl->p;
    const int nv = m->list.n_values;
    unsigned char *res = rlx__malloc((size_t)nv + 1, "the residual-stream mask");
    if (!res) {
        pl->err = RLX_ERR_OUT_OF_MEMORY;
        return;
    }
    rlx__slist_residual_stream(&m->list, res);
    for (int v = 0; v < nv; v++)
        if (res[v] && p->buf[v].kind == 0) p->buf[v].kind = 1, p->buf[v].elem = 4, p->buf[v].stream = 1, p->n_f32_resid++;
    free(res);
    if (!p->n_f32_resid) return;
    /* every reader needs at most one copy kernel in front of it: at most twice as many entries */
    rlx__kernel *out = rlx__calloc((size_t)p->n * 2 + 1, sizeof *out, "the kernel plan");
    p->act_copy = rlx__malloc(((size_t)p->n_buf * 2 + (size_t)p->n * 2 + 1) * sizeof(int), "the residual-stream copies");
    if (!out || !p->act_copy) {
        free(out);
        pl->err = RLX_ERR_OUT_OF_MEMORY;
        return;
    }
    for (int b = 0; b < p->n_buf * 2 + p->n * 2 + 1; b++) p->act_copy[b] = -1;
    int n = 0;
    for (int i = 0; i < p->n && !pl->err; i++) {
        rlx__kernel k = p->k[i];
        switch (k.kind) {
        case RLX__K_EMBED:
        case RLX__K_EMBED_ROWSCALE: k.resid = is_f32(p, k.out); break;
        case RLX__K_ADD:
        case RLX__K_ADD_ROWSCALE:
            if (!is_f32(p, k.out)) break;
            if (!is_f32(p, k.in[0])) { /* the stream operand first: a is f32, b the branch */
                const int t = k.in[0];
                k.in[0] = k.in[1], k.in[1] = t;
            }
            k.resid = is_f32(p, k.in[1]) ? 2 : 1;
            break;
        case RLX__K_ROWSCALE:
        case RLX__K_RMS_NORM:
        case RLX__K_LAST_TOKEN:
        case RLX__K_LAST_TOKEN_NORM: k.resid = is_f32(p, k.in[0]); break;
        case RLX__K_GEMM:
            /* C = D in f32 (cuBLASLt: C has D's type); the operand X is the stream's bf16 copy */
            if (is_f32(p, k.residual) != is_f32(p, k.out))
                pl->err = rlx__fail(RLX_ERR_INTERNAL, "planner: GEMM %s adds an %s residual into an %s output", k.st->name,
                                    is_f32(p, k.residual) ? "f32" : "activation", is_f32(p, k.out) ? "f32" : "activation");
            if (is_f32(p, k.in[0])) k.in[0] = act_copy_of(pl, out, &n, k.in[0], k.st);
            break;
        case RLX__K_CUSTOM:
            for (int j = 0; j < k.st->n_in; j++)
                if (is_f32(p, k.st->in[j]) && k.st->in[j] != m->tokens) act_copy_of(pl, out, &n, k.st->in[j], k.st);
            break;
        default:
            for (int j = 0; j < 4; j++)
                if (is_f32(p, k.in[j]) && p->buf[k.in[j]].rows != RLX__ROWS_FIXED) k.in[j] = act_copy_of(pl, out, &n, k.in[j], k.st);
            break;
        }
        out[n++] = k;
    }
    free(p->k);
    p->k = out;
    p->n = n;
    p->cap = n;
}

/* ---- arena by liveness ---------------------------------------------------------------------------- */

typedef struct live {
    int buf;
    int first, last; /* kernel indices; -1 = before the first kernel (inputs) */
    size_t bytes;
} live;

static int by_size_desc(const void *a, const void *b) {
    const live *x = a, *y = b;
    if (x->bytes != y->bytes) return x->bytes < y->bytes ? 1 : -1;
    return x->buf - y->buf;
}

#define RLX__ALIGN 256

static int64_t cap_rows(const rlx_model *m, const rlx__buf *b) {
    switch (b->rows) {
    case RLX__ROWS_TOKENS: return m->max_tokens;
    case RLX__ROWS_SEQUENCES: return m->max_seqs;
    case RLX__ROWS_FIXED: return b->fixed_rows;
    }
    return 0;
}

static int kernel_touches(const rlx__plan *p, const rlx__kernel *k, int b, int *writes) {
    if (k->kind == RLX__K_CUSTOM) { /* up to 8 inputs and 4 outputs: the stage's own lists */
        *writes = 0;
        for (int j = 0; j < k->st->n_out; j++) *writes |= k->st->out[j] == b;
        if (*writes) return 1;
        for (int j = 0; j < k->st->n_in; j++)
            if (k->st->in[j] == b || (p->act_copy && p->act_copy[k->st->in[j]] == b)) return 1;
        return 0;
    }
    *writes = k->out == b || k->out2 == b || k->shadow == b;
    if (*writes) return 1;
    for (int j = 0; j < 4; j++)
        if (k->in[j] == b) return 1;
    return k->residual == b || k->kv_k == b || k->kv_v == b;
}

static rlx_status plan_arena(const rlx_model *m, rlx__plan *p) {
    const int nb = p->n_buf;
    p->offset = rlx__malloc((size_t)nb * sizeof(size_t) + 1, "the buffer plan");
    p->bytes = rlx__calloc((size_t)nb + 1, sizeof(size_t), "the buffer plan");
    live *lv = rlx__malloc((size_t)nb * sizeof(live) + 1, "the buffer plan");
    if (!p->offset || !p->bytes || !lv) {
        free(lv);
        return RLX_ERR_OUT_OF_MEMORY;
    }
    int n_live = 0;
    for (int b = 0; b < nb; b++) {
        p->offset[b] = SIZE_MAX;
        const rlx__buf *bf = &p->buf[b];
        if (bf->rows == RLX__ROWS_FIXED) continue; /* constants live with the weights */
        int first = -2, last = -2;
        if (bf->value >= 0 && bf->value == m->tokens) first = -1;
        for (int i = 0; i < p->n; i++) {
            int w;
            if (!kernel_touches(p, &p->k[i], b, &w)) continue;
            if (w && first == -2) first = i;
            last = i;
        }
        if (first == -2) continue; /* never produced on the device */
        if (b == p->output_buf) last = p->n;
        if (last < first) last = first;
        size_t sz = (size_t)cap_rows(m, bf) * (size_t)bf->cols * (size_t)bf->elem;
        sz = (sz + RLX__ALIGN - 1) / RLX__ALIGN * RLX__ALIGN;
        p->bytes[b] = sz;
        p->naive_bytes += sz;
        lv[n_live++] = (live){b, first, last, sz};
    }
    /* Greedy first fit, biggest first: each buffer goes to the lowest offset that overlaps no
     * placed buffer whose lifetime overlaps its own. */
    qsort(lv, (size_t)n_live, sizeof *lv, by_size_desc);
    for (int i = 0; i < n_live; i++) {
        size_t off = 0;
        for (int again = 1; again;) {
            again = 0;
            for (int j = 0; j < i; j++) {
                if (lv[j].last < lv[i].first || lv[i].last < lv[j].first) continue;
                size_t o = p->offset[lv[j].buf];
                if (off < o + lv[j].bytes && o < off + lv[i].bytes) {
                    off = o + lv[j].bytes;
                    again = 1;
                }
            }
        }
        p->offset[lv[i].buf] = off;
        if (off + lv[i].bytes > p->arena_bytes) p->arena_bytes = off + lv[i].bytes;
    }
    free(lv);
    return RLX_OK;
}

/* ---- the plan --------------------------------------------------------------------------------------- */

/* tp: the add reading an all_reduce's output is that entry's consumer, fusing the residual and the
 * next row scales (plan.h); it is not a pass the planner could have folded. */
static int after_all_reduce(const rlx__plan *p, int i) {
    const rlx__kernel *k = &p->k[i];
    if (k->kind != RLX__K_ADD && k->kind != RLX__K_ADD_ROWSCALE) return 0;
    for (int j = 0; j < i; j++)
        if (p->k[j].kind == RLX__K_ALL_REDUCE && (p->k[j].out == k->in[0] || p->k[j].out == k->in[1])) return 1;
    return 0;
}

int rlx__plan_is_standalone_pass(const rlx__plan *p, const rlx__kernel *k) {
    /* a pass over one row per sequence (the final norm after last-layer pruning) costs nothing
     * worth a fusion rule: only passes over the tokens count */
    return rlx__kernel_is_standalone_pass(k->kind) && k->out >= 0 && p->buf[k->out].rows != RLX__ROWS_SEQUENCES;
}

static rlx_status list_missed(const rlx_model *m, rlx__plan *p) {
    size_t cap = 256, len = 0;
    for (int i = 0; i < p->n; i++) {
        const rlx__kernel *k = &p->k[i];
        if (!rlx__plan_is_standalone_pass(p, k) || after_all_reduce(p, i)) continue;
        const char *why = k->kind == RLX__K_RMS_NORM ? "norm not folded into a GEMM"
                          : k->kind == RLX__K_ROPE   ? "RoPE not fused into attention"
                          : k->kind == RLX__K_SILU_MUL ? "activation not fused"
                                                       : "residual add not folded into a GEMM";
        char line[400];
        int n = snprintf(line, sizeof line, "%s%s (%s: %s)", p->n_missed ? "; " : "", m->list.stages[k->stages[0]].name,
                         rlx__kernel_name(k->kind), why);
        if (n < 0) continue;
        char *np = realloc(p->missed, cap + len + (size_t)n + 1);
        if (!np) return rlx__fail(RLX_ERR_OUT_OF_MEMORY, "out of host memory listing missed fusions");
        p->missed = np;
        memcpy(p->missed + len, line, (size_t)n + 1);
        len += (size_t)n;
        p->n_missed++;
    }
    return RLX_OK;
}

rlx_status rlx__plan_build(const rlx_model *m, rlx_fusion_policy policy, rlx_kdtype act, rlx__plan *p) {
    memset(p, 0, sizeof *p);
    p->policy = policy;
    p->act_dtype = act;
    p->n_weights = m->n_weights;
    const rlx__slist *l = &m->list;
    planner pl = {.m = m, .p = p};
    pl.n_cons = rlx__calloc((size_t)l->n_values + 1, sizeof(int), "the planner");
    pl.cons = NULL;
    pl.covered = rlx__calloc((size_t)l->n_stages + 1, sizeof(int), "the planner");
    pl.scale_of = rlx__malloc(((size_t)l->n_values + 1) * sizeof(int), "the planner");
    pl.scale_eps = rlx__calloc((size_t)l->n_values + 1, sizeof(float), "the planner");
    p->used_weight = rlx__calloc((size_t)m->n_weights + 1, 1, "the planner");
    rlx_status s = RLX_OK;
    if (!pl.n_cons || !pl.covered || !pl.scale_of || !pl.scale_eps || !p->used_weight) {
        s = RLX_ERR_OUT_OF_MEMORY;
        goto out;
    }
    for (int v = 0; v < l->n_values; v++) pl.scale_of[v] = -1;
    for (int i = 0; i < l->n_stages; i++)
        for (int j = 0; j < l->stages[i].n_in; j++) pl.n_cons[l->stages[i].in[j]]++;
    /* buffers 0 .. n_values-1 are the model's values */
    for (int v = 0; v < l->n_values; v++) {
        const rlx__value *val = &l->values[v];
        int b = add_buf(&pl, val->rows, val->cols, val->dtype == RLX_DTYPE_I32 ? 2 : val->rows == RLX__ROWS_FIXED ? 1 : 0);
        if (b >= 0) p->buf[b].value = v, p->buf[b].fixed_rows = val->fixed_rows;
    }
    plan_stages(&pl);
    if (!pl.err && act == RLX_K_BF16 && m->profile.mixed == RLX_MIXED_AUTO) plan_residual_stream(&pl);
    if ((s = pl.err)) goto out;
    p->output_buf = m->output;
    for (int i = p->n - 1; i >= 0; i--)
        if (p->k[i].out == m->output) {
            p->output_f32 = p->k[i].kind == RLX__K_GEMM;
            if (p->k[i].kind == RLX__K_ALL_GATHER) {
                /* tp: lm_head's GEMM writes its columns in f32 and they are gathered in f32 */
                const rlx__kernel *ag = &p->k[i];
                for (int j = i - 1; j >= 0 && !p->output_f32; j--)
                    if (p->k[j].out == ag->in[0]) {
                        if (p->k[j].kind != RLX__K_GEMM) break;
                        p->output_f32 = 1;
                        p->buf[ag->in[0]].kind = p->buf[ag->out2].kind = 1;
                        p->buf[ag->in[0]].elem = p->buf[ag->out2].elem = 4;
                    }
            }
            break;
        }
    if (p->buf[m->output].kind == 1) p->output_f32 = 1; /* a stream value as the output: f32 */
    if (p->output_f32) p->buf[m->output].kind = 1, p->buf[m->output].elem = 4;
    for (int i = 0; i < p->n; i++) {
        const rlx__kernel *k = &p->k[i];
        int ws[3] = {k->w, k->bias, k->gamma};
        for (int j = 0; j < 3; j++)
            if (ws[j] >= 0 && ws[j] < m->n_weights) p->used_weight[ws[j]] = 1;
        if (k->kind == RLX__K_CUSTOM)
            for (int j = 0; j < k->st->n_w; j++) {
                int w = stage_w(m, k->stages[0], j);
                if (w >= 0) p->used_weight[w] = 1;
            }
    }
    if ((s = plan_arena(m, p))) goto out;
    if (policy == RLX_FUSION_FUSED) s = list_missed(m, p);
out:
    free(pl.n_cons);
    free(pl.covered);
    free(pl.scale_of);
    free(pl.scale_eps);
    if (s) rlx__plan_free(p);
    return s;
}

rlx__kkind rlx__plan_attention_kind(const rlx__plan *p, const rlx__kernel *k, int64_t max_q, int kv_aligned) {
    if (k->kind != RLX__K_FLASH_ATTENTION && k->kind != RLX__K_ROPE_ATTENTION) return k->kind;
    const rlx__stage *st = k->st;
    const int64_t rows = rlx_decode_max_rows(st->head_dim);
    if (p->act_dtype == RLX_K_BF16 && kv_aligned && max_q <= RLX__DECODE_MAX_Q && rows && max_q * (st->heads / st->kv_heads) <= rows &&
        st->kv_heads <= 65535)
        return RLX__K_DECODE_ATTENTION;
    return k->kind;
}

/* ---- explain ------------------------------------------------------------------------------------------ */

static double buf_bytes(const rlx__plan *p, int b, int64_t T, int64_t S) {
    if (b < 0) return 0;
    const rlx__buf *bf = &p->buf[b];
    double rows = bf->rows == RLX__ROWS_TOKENS ? (double)T : bf->rows == RLX__ROWS_SEQUENCES ? (double)S : 0;
    return rows * (double)bf->cols * (double)bf->elem;
}

static double weight_bytes(const rlx__plan *p, const rlx_model *m, int w) {
    if (w < 0) return 0;
    const double e = p->act_dtype == RLX_K_F32 ? 4 : 2;
    if (w < m->n_weights) return (double)m->weights[w].numel * e;
    const rlx__dweight *d = &p->dw[w - m->n_weights];
    return (double)d->rows * (double)d->cols * e;
}

double rlx__kernel_bytes(const rlx__plan *p, const rlx_model *m, const rlx__kernel *k, int64_t T, int64_t S) {
    double b = 0;
    for (int j = 0; j < 4; j++) {
        if (k->in[j] < 0 || p->buf[k->in[j]].rows == RLX__ROWS_FIXED) continue; /* rope tables: small */
        b += buf_bytes(p, k->in[j], T, S);
    }
    b += buf_bytes(p, k->out, T, S) + buf_bytes(p, k->out2, T, S) + buf_bytes(p, k->residual, T, S) + buf_bytes(p, k->shadow, T, S);
    if (k->kind != RLX__K_KV_WRITE) b += buf_bytes(p, k->kv_k, T, S) + buf_bytes(p, k->kv_v, T, S); /* attention reads K and V */
    if (k->kind == RLX__K_EMBED || k->kind == RLX__K_EMBED_ROWSCALE)
        b += buf_bytes(p, k->out, T, S); /* the gathered rows, not the whole table */
    else
        b += weight_bytes(p, m, k->w) + weight_bytes(p, m, k->bias);
    b += weight_bytes(p, m, k->gamma);
    return b;
}

static void human(char *buf, size_t n, double b) {
    if (b >= 1e9) snprintf(buf, n, "%.2f GB", b / 1e9);
    else if (b >= 1e6) snprintf(buf, n, "%.2f MB", b / 1e6);
    else if (b >= 1e3) snprintf(buf, n, "%.1f kB", b / 1e3);
    else snprintf(buf, n, "%.0f B", b);
}

rlx_status rlx__plan_format(const rlx__plan *p, const rlx_model *m, char **text) {
    size_t cap = 1024 + (size_t)p->n * 512 + (p->missed ? strlen(p->missed) : 0), len = 0;
    char *t = rlx__malloc(cap, "the plan text");
    if (!t) return RLX_ERR_OUT_OF_MEMORY;
    char h1[32], h2[32], h3[32];
    human(h1, sizeof h1, (double)p->arena_bytes);
    human(h2, sizeof h2, (double)p->naive_bytes);
    double total = 0;
    for (int i = 0; i < p->n; i++) total += rlx__kernel_bytes(p, m, &p->k[i], m->max_tokens, m->max_seqs);
    human(h3, sizeof h3, total);
#define OUT(...)                                                               \
    do {                                                                       \
        int w_ = snprintf(t + len, cap - len, __VA_ARGS__);                    \
        if (w_ > 0) len = len + (size_t)w_ < cap ? len + (size_t)w_ : cap - 1; \
    } while (0)
    char stream[96] = "";
    if (p->n_f32_resid) snprintf(stream, sizeof stream, ", f32 residual stream (%d buffers)", p->n_f32_resid);
    OUT("kernel plan: fusion %s, %d kernels, %s activations%s; arena %s at capacity (%s without reuse); %s moved per prefill at capacity\n",
        p->policy == RLX_FUSION_FUSED ? "fused" : "none", p->n, p->act_dtype == RLX_K_F32 ? "f32" : "bf16", stream, h1, h2, h3);
    for (int i = 0; i < p->n; i++) {
        const rlx__kernel *k = &p->k[i];
        char hb[32];
        human(hb, sizeof hb, rlx__kernel_bytes(p, m, k, m->max_tokens, m->max_seqs));
        OUT("%4d  %-20s %10s  ", i, rlx__kernel_name(k->kind), hb);
        for (int j = 0; j < k->n_stages; j++) OUT("%s%s", j ? " + " : "", m->list.stages[k->stages[j]].name);
        if (k->kind == RLX__K_ROWSCALE) OUT("(row scales of %s)", m->list.stages[k->st - m->list.stages].name);
        if (k->kind == RLX__K_RESIDUAL_CAST) OUT("(bf16 copy of the f32 stream for %s)", k->st->name);
        if (k->residual >= 0) OUT("  [+residual%s]", p->buf[k->residual].stream ? " f32" : "");
        if (k->resid && k->kind != RLX__K_RESIDUAL_CAST) OUT("  [f32 stream]");
        if (k->shadow >= 0) OUT("  [+bf16 copy]");
        if (k->kind == RLX__K_ALL_REDUCE || k->kind == RLX__K_ALL_GATHER) OUT("  [%d tp ranks]", m->tp_size);
        if (after_all_reduce(p, i)) OUT("  [residual add + row scales after the all_reduce]");
        if (k->w >= m->n_weights) OUT("  [gamma-folded packed weight]");
        if (k->kind == RLX__K_KV_WRITE) OUT(k->kv_only ? "  [KV-cache calls only]" : "  [into the KV cache's pages in KV-cache calls]");
        if (rlx__plan_attention_kind(p, k, 1, 1) == RLX__K_DECODE_ATTENTION) {
            int64_t q = rlx_decode_max_rows(k->st->head_dim) / (k->st->heads / k->st->kv_heads);
            OUT("  [decode_attention for <= %lld new tokens per sequence]", (long long)(q < RLX__DECODE_MAX_Q ? q : RLX__DECODE_MAX_Q));
        }
        OUT("\n");
    }
    if (p->policy == RLX_FUSION_FUSED) {
        if (p->n_missed) OUT("missed fusions (%d): %s\n", p->n_missed, p->missed);
        else OUT("clean: no standalone norm, rope, residual-add or activation pass\n");
    }
#undef OUT
    *text = t;
    return RLX_OK;
}
