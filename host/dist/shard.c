/* Tensor-parallel sharding at build time: the stage list of one rank (rules in dist/shard.h).
 *
 * The pass runs on the expanded stage list after every weight was resolved and every width
 * inferred on the whole checkpoint (so shape errors name the stored tensors), and before anything
 * is converted or planned: it marks which rows or columns of each weight this rank reads, sets the
 * per-rank heads and widths, inserts the collectives, and re-resolves the weight table so it holds
 * only what this rank uses. */
#include "dist/shard.h"
#include "model/tiers.h"
#include "rlx/weights.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct wpart {
    int set;
    int64_t row0, rows, col0, cols; /* cols < 0: 1-D (a bias) */
} wpart;

enum { INS_NONE = 0, INS_ALL_REDUCE, INS_ALL_GATHER };

typedef struct sharder {
    rlx_model *m;
    int rank, size;
    int *n_cons;            /* [n_values] */
    int *first_cons;        /* [n_values]: the first consuming stage (for single-consumer chains) */
    unsigned char *claimed; /* [n_stages] */
    wpart *part;            /* [n_stages][RLX__STAGE_MAX_W] */
    int *insert;            /* [n_stages]: collective after the stage */
    int n_attn, n_mlp, n_insert, head;
    int64_t heads_l, heads, kv_l, kv, inter_l, inter, vocab_l, vocab;
} sharder;

static const rlx__stage *S(const sharder *sh, int i) { return &sh->m->list.stages[i]; }
static int producer(const sharder *sh, int v) { return sh->m->list.values[v].producer; }
static int wslot(const sharder *sh, int stage, int k) {
    return k < S(sh, stage)->n_w ? sh->m->stage_w[(size_t)stage * RLX__STAGE_MAX_W + (size_t)k] : -1;
}
static int single(const sharder *sh, int v) { return sh->n_cons[v] == 1 && v != sh->m->output; }

static rlx_status refuse(const sharder *sh, rlx_status s, const char *stage, const char *why) {
    return rlx__fail(s, "tensor parallelism (rank %d of %d), stage %s: %s", sh->rank, sh->size, stage, why);
}

/* Rows [row0, row0 + rows) of a linear's weight (column-parallel), its bias with them. */
static void split_rows(sharder *sh, int stage, int64_t row0, int64_t rows) {
    const int64_t cols = sh->m->weights[wslot(sh, stage, 0)].shape[1];
    sh->part[(size_t)stage * RLX__STAGE_MAX_W] = (wpart){1, row0, rows, 0, cols};
    if (wslot(sh, stage, 1) >= 0) sh->part[(size_t)stage * RLX__STAGE_MAX_W + 1] = (wpart){1, row0, rows, 0, -1};
    sh->claimed[stage] = 1;
    sh->m->list.values[S(sh, stage)->out[0]].cols = rows;
}

/* Columns [col0, col0 + cols) of a linear's weight (row-parallel), then an all_reduce. */
static void split_cols(sharder *sh, int stage, int64_t col0, int64_t cols) {
    const int64_t rows = sh->m->weights[wslot(sh, stage, 0)].shape[0];
    sh->part[(size_t)stage * RLX__STAGE_MAX_W] = (wpart){1, 0, rows, col0, cols};
    sh->claimed[stage] = 1;
    sh->insert[stage] = INS_ALL_REDUCE;
    sh->n_insert++;
}

static int plain_linear(const sharder *sh, int stage) {
    return stage >= 0 && S(sh, stage)->op == RLX__OP_LINEAR && wslot(sh, stage, 0) >= 0 && !sh->claimed[stage] &&
           sh->m->weights[wslot(sh, stage, 0)].ndim == 2;
}

/* The one linear reading value v (the row-parallel projection after a split block), or -1. */
static int sole_linear_reader(const sharder *sh, int v) {
    if (!single(sh, v)) return -1;
    int c = sh->first_cons[v];
    return plain_linear(sh, c) && S(sh, c)->in[0] == v ? c : -1;
}

static rlx_status shard_attention(sharder *sh, int a) {
    rlx__stage *A = &sh->m->list.stages[a];
    const int64_t H = A->heads, KV = A->kv_heads, D = A->head_dim;
    const int size = sh->size, rank = sh->rank;
    char why[400];
    if (H % size) {
        snprintf(why, sizeof why,
                 "tp = %d does not divide the %lld query heads: every rank needs a whole number of heads", size,
                 (long long)H);
        return refuse(sh, RLX_ERR_INVALID_ARGUMENT, A->name, why);
    }
    if (KV % size && size % KV) {
        snprintf(why, sizeof why,
                 "tp = %d and %lld kv heads: tp must divide the kv heads, or be a multiple of them (each kv head then "
                 "replicated)",
                 size, (long long)KV);
        return refuse(sh, RLX_ERR_INVALID_ARGUMENT, A->name, why);
    }
    const int64_t Hl = H / size, KVl = KV >= size ? KV / size : 1;
    /* KV < tp: rank r's query heads [r·Hl, (r+1)·Hl) all read kv head r·Hl / (H/KV) = r / (tp/KV) */
    const int64_t kv0 = KV >= size ? rank * KVl : rank / (size / KV);
    int lin[3], rope[3];
    for (int j = 0; j < 3; j++) {
        int v = A->in[j], ps = producer(sh, v);
        rope[j] = -1;
        if (ps >= 0 && S(sh, ps)->op == RLX__OP_ROPE && single(sh, v)) {
            rope[j] = ps;
            v = S(sh, ps)->in[0];
            ps = producer(sh, v);
        }
        if (!single(sh, v) || !plain_linear(sh, ps))
            return refuse(
                sh, RLX_ERR_UNSUPPORTED, A->name,
                "splitting attention by heads needs its q, k and v to come straight from linears (through rope) that "
                "nothing else reads");
        lin[j] = ps;
    }
    const int o = sole_linear_reader(sh, A->out[0]);
    if (o < 0)
        return refuse(sh, RLX_ERR_UNSUPPORTED, A->name,
                      "splitting attention by heads needs exactly one linear (o_proj) reading its output");
    if (wslot(sh, o, 1) >= 0)
        return refuse(sh, RLX_ERR_UNSUPPORTED, S(sh, o)->name,
                      "a row-parallel linear with a bias (it would be added on every rank): not supported");
    split_rows(sh, lin[0], rank * Hl * D, Hl * D);
    split_rows(sh, lin[1], kv0 * D, KVl * D);
    split_rows(sh, lin[2], kv0 * D, KVl * D);
    for (int j = 0; j < 2; j++)
        if (rope[j] >= 0) {
            rlx__stage *r = &sh->m->list.stages[rope[j]];
            r->heads = j == 0 ? Hl : KVl;
            sh->m->list.values[r->out[0]].cols = r->heads * D;
            sh->claimed[rope[j]] = 1;
        }
    A->heads = Hl;
    A->kv_heads = KVl;
    sh->m->list.values[A->out[0]].cols = Hl * D;
    sh->claimed[a] = 1;
    split_cols(sh, o, rank * Hl * D, Hl * D);
    sh->n_attn++;
    sh->heads = H, sh->heads_l = Hl, sh->kv = KV, sh->kv_l = KVl;
    return RLX_OK;
}

static rlx_status shard_mlp(sharder *sh, int sm) {
    rlx__stage *M = &sh->m->list.stages[sm];
    const int g = producer(sh, M->in[0]), u = producer(sh, M->in[1]);
    if (!single(sh, M->in[0]) || !single(sh, M->in[1]) || !plain_linear(sh, g) || !plain_linear(sh, u) || g == u)
        return refuse(sh, RLX_ERR_UNSUPPORTED, M->name,
                      "splitting SwiGLU by columns needs gate and up to be two linears that nothing else reads");
    const int down = sole_linear_reader(sh, M->out[0]);
    if (down < 0)
        return refuse(sh, RLX_ERR_UNSUPPORTED, M->name,
                      "splitting SwiGLU by columns needs one linear (down_proj) reading its output");
    if (wslot(sh, down, 1) >= 0)
        return refuse(sh, RLX_ERR_UNSUPPORTED, S(sh, down)->name,
                      "a row-parallel linear with a bias (it would be added on every rank): not supported");
    const int64_t I = sh->m->list.values[M->out[0]].cols;
    if (I % sh->size) {
        char why[256];
        snprintf(why, sizeof why, "tp = %d does not divide the intermediate size %lld", sh->size, (long long)I);
        return refuse(sh, RLX_ERR_INVALID_ARGUMENT, M->name, why);
    }
    const int64_t Il = I / sh->size;
    split_rows(sh, g, sh->rank * Il, Il);
    split_rows(sh, u, sh->rank * Il, Il);
    sh->m->list.values[M->out[0]].cols = Il;
    sh->claimed[sm] = 1;
    split_cols(sh, down, sh->rank * Il, Il);
    sh->n_mlp++;
    sh->inter = I, sh->inter_l = Il;
    return RLX_OK;
}

/* lm_head: vocabulary rows, ⌈V/tp⌉ per rank (the last rank's tail zero rows), gathered after. */
static void shard_head(sharder *sh, int lm) {
    const int64_t V = sh->m->list.values[S(sh, lm)->out[0]].cols, Vl = (V + sh->size - 1) / sh->size;
    split_rows(sh, lm, sh->rank * Vl, Vl);
    sh->insert[lm] = INS_ALL_GATHER;
    sh->n_insert++;
    sh->head = 1;
    sh->vocab = V, sh->vocab_l = Vl;
}

static int same_part(const rlx__weight *w, const wpart *p) {
    if (!p->set) return !w->part;
    return w->part && w->row0 == p->row0 && w->col0 == p->col0 && w->shape[0] == p->rows &&
           (p->cols < 0 || w->shape[1] == p->cols);
}

/* A new weight table with one entry per (key, part) some stage reads: no whole tensor is kept
 * where only a part is used. */
static rlx_status reresolve(sharder *sh) {
    rlx_model *m = sh->m;
    const size_t n = (size_t)m->list.n_stages * RLX__STAGE_MAX_W;
    rlx__weight *nw = rlx__calloc(n + 1, sizeof *nw, "the weight table");
    if (!nw) return RLX_ERR_OUT_OF_MEMORY;
    int nn = 0;
    rlx_status s = RLX_OK;
    for (size_t slot = 0; slot < n && !s; slot++) {
        const int old = m->stage_w[slot];
        if (old < 0) continue;
        const rlx__weight *ow = &m->weights[old];
        const wpart *p = &sh->part[slot];
        int idx = -1;
        for (int j = 0; j < nn && idx < 0; j++)
            if (!strcmp(nw[j].key, ow->key) && same_part(&nw[j], p)) idx = j;
        if (idx < 0) {
            rlx__weight *e = &nw[nn];
            *e = *ow;
            if (!(e->key = rlx__strdup(ow->key))) {
                s = RLX_ERR_OUT_OF_MEMORY;
                break;
            }
            if (p->set) {
                e->part = 1;
                e->row0 = p->row0;
                e->col0 = p->col0;
                e->shape[0] = p->rows;
                if (p->cols >= 0) e->shape[1] = p->cols;
                e->numel = (size_t)p->rows * (size_t)(p->cols >= 0 ? p->cols : 1);
            }
            idx = nn++;
        }
        m->stage_w[slot] = idx;
    }
    if (s) {
        for (int j = 0; j < nn; j++)
            free(nw[j].key);
        free(nw);
        return s;
    }
    for (int i = 0; i < m->n_weights; i++)
        free(m->weights[i].key), free(m->weights[i].f32);
    free(m->weights);
    m->weights = nw;
    m->n_weights = nn;
    return RLX_OK;
}

/* The stage list again, with a collective after every stage marked for one. */
static rlx_status insert_collectives(sharder *sh) {
    rlx_model *m = sh->m;
    const rlx__slist *l = &m->list;
    const int n_st = l->n_stages + sh->n_insert;
    rlx__slist nl;
    rlx_status s = rlx__slist_copy_values(&nl, l);
    int *redirect = rlx__malloc(((size_t)l->n_values + (size_t)sh->n_insert + 1) * sizeof(int), "the tp stage list");
    int *nsw = rlx__malloc((size_t)n_st * RLX__STAGE_MAX_W * sizeof(int) + 1, "the tp stage list");
    if (s || !redirect || !nsw) {
        rlx__slist_free(&nl);
        free(redirect), free(nsw);
        return s ? s : RLX_ERR_OUT_OF_MEMORY;
    }
    for (int v = 0; v < l->n_values + sh->n_insert; v++)
        redirect[v] = v;
    for (int i = 0; i < l->n_stages && !s; i++) {
        rlx__stage st = l->stages[i];
        for (int k = 0; k < st.n_in; k++)
            st.in[k] = redirect[st.in[k]];
        int at = rlx__slist_add_stage(&nl, &st);
        if (at < 0) {
            s = RLX_ERR_OUT_OF_MEMORY;
            break;
        }
        memcpy(&nsw[(size_t)at * RLX__STAGE_MAX_W], &m->stage_w[(size_t)i * RLX__STAGE_MAX_W],
               RLX__STAGE_MAX_W * sizeof(int));
        if (!sh->insert[i]) continue;
        const int v = st.out[0];
        const int gather = sh->insert[i] == INS_ALL_GATHER;
        char name[512];
        snprintf(name, sizeof name, "%s.%s", st.name, gather ? "all_gather" : "all_reduce");
        const rlx__value *val = &nl.values[v];
        const int64_t cols = gather ? sh->vocab : val->cols;
        int nv = rlx__slist_add_value(&nl, name, RLX_DTYPE_F32, val->rows, val->fixed_rows, cols);
        rlx__stage c = {.op = gather ? RLX__OP_ALL_GATHER : RLX__OP_ALL_REDUCE,
                        .name = name,
                        .n_in = 1,
                        .in = {v},
                        .n_out = 1,
                        .out = {nv}};
        int ca = nv < 0 ? -1 : rlx__slist_add_stage(&nl, &c);
        if (ca < 0) {
            s = RLX_ERR_OUT_OF_MEMORY;
            break;
        }
        for (int k = 0; k < RLX__STAGE_MAX_W; k++)
            nsw[(size_t)ca * RLX__STAGE_MAX_W + (size_t)k] = -1;
        redirect[v] = nv;
        if (m->output == v) m->output = nv;
    }
    free(redirect);
    if (s) {
        rlx__slist_free(&nl);
        free(nsw);
        return s;
    }
    rlx__slist_free(&m->list);
    m->list = nl;
    free(m->stage_w);
    m->stage_w = nsw;
    return RLX_OK;
}

rlx_status rlx__dist_shard(rlx_model *m, int rank, int size) {
    rlx__slist *l = &m->list;
    sharder sh = {.m = m, .rank = rank, .size = size};
    sh.n_cons = rlx__calloc((size_t)l->n_values + 1, sizeof(int), "the tp pass");
    sh.first_cons = rlx__malloc(((size_t)l->n_values + 1) * sizeof(int), "the tp pass");
    sh.claimed = rlx__calloc((size_t)l->n_stages + 1, 1, "the tp pass");
    sh.part = rlx__calloc((size_t)l->n_stages * RLX__STAGE_MAX_W + 1, sizeof(wpart), "the tp pass");
    sh.insert = rlx__calloc((size_t)l->n_stages + 1, sizeof(int), "the tp pass");
    rlx_status s = RLX_OK;
    if (!sh.n_cons || !sh.first_cons || !sh.claimed || !sh.part || !sh.insert) {
        s = RLX_ERR_OUT_OF_MEMORY;
        goto out;
    }
    for (int v = 0; v < l->n_values; v++)
        sh.first_cons[v] = -1;
    for (int i = 0; i < l->n_stages; i++)
        for (int k = 0; k < l->stages[i].n_in; k++) {
            int v = l->stages[i].in[k];
            if (sh.first_cons[v] < 0) sh.first_cons[v] = i;
            sh.n_cons[v]++;
        }
    for (int i = 0; i < l->n_stages && !s; i++) {
        const rlx__stage *st = &l->stages[i];
        if (st->op == RLX__OP_ATTENTION)
            s = shard_attention(&sh, i);
        else if (st->op == RLX__OP_SILU_MUL)
            s = shard_mlp(&sh, i);
    }
    if (s) goto out;
    /* the head: the linear that makes the output, when nothing above claimed it */
    const int lm = l->values[m->output].producer;
    if (lm >= 0 && plain_linear(&sh, lm) && l->values[m->output].rows != RLX__ROWS_FIXED) shard_head(&sh, lm);
    if ((s = reresolve(&sh))) goto out;
    if ((s = insert_collectives(&sh))) goto out;
    size_t part_bytes = 0, whole_bytes = 0;
    for (int i = 0; i < m->n_weights; i++) {
        const rlx__weight *w = &m->weights[i];
        size_t b = w->numel * rlx_dtype_size(w->view.dtype);
        if (w->part)
            part_bytes += b;
        else
            whole_bytes += b;
    }
    char attn[160] = "no attention", mlp[96] = "no SwiGLU MLP", head[128] = "output replicated";
    if (sh.n_attn)
        snprintf(attn, sizeof attn, "%d attention blocks by heads (%lld of %lld query heads, %lld of %lld kv heads%s)",
                 sh.n_attn, (long long)sh.heads_l, (long long)sh.heads, (long long)sh.kv_l, (long long)sh.kv,
                 sh.kv < size ? ", replicated" : "");
    if (sh.n_mlp)
        snprintf(mlp, sizeof mlp, "%d MLPs by columns (%lld of %lld)", sh.n_mlp, (long long)sh.inter_l,
                 (long long)sh.inter);
    if (sh.head)
        snprintf(head, sizeof head, "lm_head by vocabulary rows (%lld of %lld%s)", (long long)sh.vocab_l,
                 (long long)sh.vocab, sh.vocab_l * size != sh.vocab ? ", padded with zero rows" : "");
    s = rlx__model_log(m,
                       "tp: rank %d of %d: %s; %s; %s; %d all_reduce%s, %d all_gather; weights: %zu bytes in parts, "
                       "%zu whole (replicated)",
                       rank, size, attn, mlp, head, sh.n_insert - sh.head, sh.n_insert - sh.head == 1 ? "" : "s",
                       sh.head, part_bytes, whole_bytes);
out:
    free(sh.n_cons);
    free(sh.first_cons);
    free(sh.claimed);
    free(sh.part);
    free(sh.insert);
    return s;
}

rlx__conv rlx__weight_conv(const rlx__weight *w, rlx_dtype out) {
    if (!w->part) return rlx__conv_of_view(&w->view, out);
    rlx__conv c;
    memset(&c, 0, sizeof c);
    c.out = out;
    const size_t es = rlx_dtype_size(w->view.dtype);
    const int64_t stored_rows = w->view.shape[0], ld = w->view.ndim == 2 ? w->view.shape[1] : 1;
    const int64_t rows = w->shape[0], cols = w->ndim == 2 ? w->shape[1] : 1;
    int64_t kept = stored_rows - w->row0;
    kept = kept < 0 ? 0 : kept > rows ? rows : kept;
    /* only this part's bytes are read: a rank never touches the rest of the mapping */
    c.cols = cols;
    if (kept > 0) {
        rlx__conv_add(&c, (const unsigned char *)w->view.data + ((size_t)w->row0 * (size_t)ld + (size_t)w->col0) * es,
                      w->view.dtype, kept, cols);
        c.part[c.n_parts - 1].ld = ld;
    }
    if (rows > kept) rlx__conv_add(&c, NULL, w->view.dtype, rows - kept, cols); /* rows past the end: zeros */
    return c;
}

void rlx__weight_to_f32(const rlx__weight *w, float *dst) {
    const rlx__conv c = rlx__weight_conv(w, RLX_DTYPE_F32);
    if (!rlx__conv_supported(&c)) { /* not a float dtype: NaN, impossible to miss */
        rlx_convert_to_f32(dst, w->view.data, w->view.dtype, w->numel);
        return;
    }
    rlx__conv_run(&c, dst, 0, rlx__conv_rows(&c), 0);
}

double rlx__dist_allreduce_bytes(int64_t tokens, int64_t hidden, int tp, int elem) {
    if (tp <= 1) return 0;
    return 2.0 * (double)(tp - 1) / (double)tp * (double)tokens * (double)hidden * (double)elem;
}
