/* passes.prune_last_layer: when only last-token logits are asked, the row-wise stages between the
 * last token-mixing stage and the last_token gather run on the gathered rows only.
 *
 * A last_token stage picks one row per sequence; every stage that works row by row (linear, add,
 * rms_norm, silu_mul, layer_norm, gelu, slice_cols, l2_normalize) gives the same row whether it
 * runs on all tokens or on that one, so the gather can move up through them to the values where
 * rows meet (the attention output, and the residual stream entering the last layer) and everything
 * after runs on n_seqs rows. For a LLaMA flow this is the last layer's o_proj, residual adds,
 * post-attention norm and MLP: about (2·H·heads·D + 3·H·I)/(layer weights) of one layer's GEMM
 * FLOPs and bytes saved, 1/L of the model's linear work at large prompts.
 *
 * Legality (checked per stage, sweeping back from the gather): the stage's op is row-wise, its
 * output has one row per token, is not the model's output, and every consumer of it is already
 * in the pruned set (or is the gather). So no value anyone else reads (a KV export, a hidden
 * state output, a custom stage's input) changes its rows; K and V come from the QKV linears
 * before attention, which is where the sweep stops. The values entering the set from outside
 * are gathered by new last_token stages placed before their first pruned consumer; the pruned
 * stage that produced the gather's input writes the gather's output instead, and the gather goes.
 * The CPU reference and the planner both see the rewritten list: the per-row arithmetic is the
 * same, so the logits are bitwise those of the unpruned list on the CPU reference and on simt.
 * It runs after weights are resolved and after the tensor-parallel split (which wants attention
 * read by its o_proj), so it carries the per-stage weight table along; an all_reduce is a
 * row-wise stage like an add, every rank pruning alike.
 */
#include "model/stages.h"
#include "model/tiers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int row_wise(rlx__op op) {
    switch (op) {
    case RLX__OP_LINEAR:
    case RLX__OP_ADD:
    case RLX__OP_RMS_NORM:
    case RLX__OP_SILU_MUL:
    case RLX__OP_LAYER_NORM:
    case RLX__OP_GELU:
    case RLX__OP_SLICE_COLS:
    case RLX__OP_L2_NORMALIZE:
    case RLX__OP_ALL_REDUCE: /* an elementwise sum over the tp ranks, which all prune alike */
        return 1;
    default: return 0;
    }
}

/* Marks in `pruned` the stages the gather `lt` can move above; returns how many. */
static int sweep(const rlx_model *m, int lt, const int *n_cons, int *const *cons, unsigned char *pruned) {
    const rlx__slist *l = &m->list;
    int n = 0;
    pruned[lt] = 1; /* the gather itself counts as an accepted consumer */
    for (int i = lt - 1; i >= 0; i--) {
        const rlx__stage *st = &l->stages[i];
        if (!row_wise(st->op) || st->n_out != 1) continue;
        const int v = st->out[0];
        if (v == m->output || l->values[v].rows != RLX__ROWS_TOKENS || n_cons[v] == 0) continue;
        int all = 1;
        for (int c = 0; c < n_cons[v] && all; c++) all = pruned[cons[v][c]];
        if (!all) continue;
        /* every input from outside the set must have one row per token (it gets gathered) */
        int inputs_ok = 1;
        for (int j = 0; j < st->n_in && inputs_ok; j++) {
            const int p = l->values[st->in[j]].producer;
            inputs_ok = l->values[st->in[j]].rows == RLX__ROWS_TOKENS || (p >= 0 && pruned[p]);
        }
        if (!inputs_ok) continue;
        pruned[i] = 1;
        n++;
    }
    pruned[lt] = 0;
    return n;
}

/* Rewrites the list for gather `lt` and the marked stages. */
static rlx_status rewrite(rlx_model *m, int lt, const unsigned char *pruned, int *n_gathers) {
    rlx__slist *l = &m->list, nl;
    rlx_status s = rlx__slist_copy_values(&nl, l);
    if (s) return s;
    const rlx__stage *g = &l->stages[lt];
    const int y = g->in[0], yl = g->out[0];
    int *gathered = rlx__malloc(((size_t)l->n_values + 1) * sizeof(int), "the pruning pass");
    if (!gathered) {
        rlx__slist_free(&nl);
        return RLX_ERR_OUT_OF_MEMORY;
    }
    for (int v = 0; v < l->n_values; v++) gathered[v] = -1;
    *n_gathers = 0;
    /* the per-stage weight table follows the stages (the pass runs after weights are resolved) */
    const size_t W = RLX__STAGE_MAX_W;
    int *sw = rlx__malloc(((size_t)l->n_stages * 2 + 1) * W * sizeof(int), "the pruning pass");
    if (!sw) {
        free(gathered);
        rlx__slist_free(&nl);
        return RLX_ERR_OUT_OF_MEMORY;
    }
    for (int i = 0; i < l->n_stages && !s; i++) {
        if (i == lt) continue;
        rlx__stage st = l->stages[i];
        if (pruned[i]) {
            for (int j = 0; j < st.n_in; j++) {
                const int v = st.in[j], p = l->values[v].producer;
                if (p >= 0 && pruned[p]) continue; /* made in the set: already one row per sequence */
                if (gathered[v] < 0) {
                    char name[512];
                    snprintf(name, sizeof name, "%s.last_token", l->values[v].name);
                    const int gv = rlx__slist_add_value(&nl, name, l->values[v].dtype, RLX__ROWS_SEQUENCES, 0, l->values[v].cols);
                    snprintf(name, sizeof name, "%s.last_token(%s)", st.name, l->values[v].name);
                    rlx__stage gs = {.op = RLX__OP_LAST_TOKEN, .name = name, .n_in = 1, .in = {v}, .n_out = 1, .out = {gv}};
                    if (gv < 0 || rlx__slist_add_stage(&nl, &gs) < 0) {
                        s = RLX_ERR_OUT_OF_MEMORY;
                        break;
                    }
                    for (size_t k = 0; k < W; k++) sw[(size_t)(nl.n_stages - 1) * W + k] = -1;
                    gathered[v] = gv;
                    ++*n_gathers;
                }
                st.in[j] = gathered[v];
            }
            if (st.out[0] == y) st.out[0] = yl; /* the gather's output, so its readers are untouched */
            else nl.values[st.out[0]].rows = RLX__ROWS_SEQUENCES;
        }
        if (!s && rlx__slist_add_stage(&nl, &st) < 0) s = RLX_ERR_OUT_OF_MEMORY;
        if (!s)
            for (size_t k = 0; k < W; k++)
                sw[(size_t)(nl.n_stages - 1) * W + k] = m->stage_w ? m->stage_w[(size_t)i * W + k] : -1;
    }
    free(gathered);
    if (s) {
        free(sw);
        rlx__slist_free(&nl);
        return s;
    }
    nl.values[y].producer = -1; /* y is read by no one now */
    rlx__slist_free(l);
    *l = nl;
    free(m->stage_w);
    m->stage_w = sw;
    return RLX_OK;
}

rlx_status rlx__pass_prune_last_layer(rlx_model *m) {
    if (!m->profile.prune_last_layer) return rlx__model_log(m, "prune: off (passes.prune_last_layer = false)");
    rlx__slist *l = &m->list;
    rlx_status s = RLX_OK;
    int total = 0, gathers_seen = 0;
    /* one gather at a time: each rewrite renumbers the stages */
    for (int lt = l->n_stages - 1; lt >= 0 && !s; lt--) {
        if (l->stages[lt].op != RLX__OP_LAST_TOKEN || l->values[l->stages[lt].in[0]].rows != RLX__ROWS_TOKENS) continue;
        gathers_seen++;
        const int nv = l->n_values, ns = l->n_stages;
        int *n_cons = rlx__calloc((size_t)nv + 1, sizeof(int), "the pruning pass");
        int **cons = rlx__calloc((size_t)nv + 1, sizeof(int *), "the pruning pass");
        unsigned char *pruned = rlx__calloc((size_t)ns + 1, 1, "the pruning pass");
        int *pool = NULL;
        size_t n_edges = 0;
        for (int i = 0; i < ns; i++) n_edges += (size_t)l->stages[i].n_in;
        if (n_cons && cons && pruned) pool = rlx__malloc((n_edges + 1) * sizeof(int), "the pruning pass");
        if (!pool) {
            s = RLX_ERR_OUT_OF_MEMORY;
        } else {
            for (int i = 0; i < ns; i++)
                for (int j = 0; j < l->stages[i].n_in; j++) n_cons[l->stages[i].in[j]]++;
            size_t at = 0;
            for (int v = 0; v < nv; v++) cons[v] = pool + at, at += (size_t)n_cons[v], n_cons[v] = 0;
            for (int i = 0; i < ns; i++)
                for (int j = 0; j < l->stages[i].n_in; j++) {
                    const int v = l->stages[i].in[j];
                    cons[v][n_cons[v]++] = i;
                }
            const int n = sweep(m, lt, n_cons, cons, pruned);
            const int producer = l->values[l->stages[lt].in[0]].producer;
            if (n > 0 && producer >= 0 && pruned[producer]) {
                char gname[256];
                snprintf(gname, sizeof gname, "%s", l->stages[lt].name);
                int gathers = 0;
                if (m->profile.verbose)
                    for (int i = 0; i < ns && !s; i++)
                        if (pruned[i])
                            s = rlx__model_log(m, "prune: stage %s (%s) runs on the last token of each sequence", l->stages[i].name,
                                               rlx__op_name(l->stages[i].op));
                if (!s) s = rewrite(m, lt, pruned, &gathers);
                if (!s)
                    s = rlx__model_log(m, "prune: %d stages before %s run on one row per sequence (%d value%s gathered)", n, gname,
                                       gathers, gathers == 1 ? "" : "s");
                if (!s) m->pruned_stages += n;
                total += n;
            }
        }
        free(pool);
        free(n_cons);
        free(cons);
        free(pruned);
    }
    /* quiet without a gather (all-position outputs, encoders): there is nothing to say */
    if (!s && !total && gathers_seen) s = rlx__model_log(m, "prune: nothing to prune (no row-wise stage before the last_token gather)");
    return s;
}
