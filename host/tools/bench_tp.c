/* Bench support for tensor parallelism (tools/bench_tp.h). */
#include "tools/bench_tp.h"
#include "tools/tp.h"
#include "dist/shard.h"
#include "runtime/device.h"
#include "runtime/session.h"
#include "model/stages.h"
#include "plan.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return 1e3 * (double)ts.tv_sec + 1e-6 * (double)ts.tv_nsec;
}

static uint64_t mix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* rank 0's collectives and every kernel of one timed run */
static void comm_share(const rlx_model *m, const double *times, double *comm, double *all) {
    *comm = *all = 0;
    const int n = rlx__timing_count(m);
    for (int i = 0; i < n; i++) {
        *all += times[i];
        int coll;
        if (m->dev)
            coll = m->dev->plan.k[i].kind == RLX__K_ALL_REDUCE || m->dev->plan.k[i].kind == RLX__K_ALL_GATHER;
        else
            coll = m->list.stages[i].op == RLX__OP_ALL_REDUCE || m->list.stages[i].op == RLX__OP_ALL_GATHER;
        if (coll) *comm += times[i];
    }
}

rlx_status rlx__bench_tp_run(const rlx_flow *flow, const rlx_weights *w, const rlx_build_params *bp, int tp,
                             const int64_t *lens, int64_t n_seqs, int64_t vocab, int warmup, int repeat, uint64_t seed,
                             int64_t hidden, int64_t layers, int elem, double link_gbps, rlx__bench_tp_row *out) {
    memset(out, 0, sizeof *out);
    out->tp = tp;
    int64_t T = 0;
    for (int64_t i = 0; i < n_seqs; i++)
        T += lens[i];
    int32_t *tok = rlx__malloc((size_t)T * sizeof *tok + 1, "bench token ids");
    double *ms = rlx__calloc((size_t)repeat + 1, sizeof *ms, "bench times");
    rlx__tp_group g;
    memset(&g, 0, sizeof g);
    rlx_model *m = NULL;
    rlx_session *s = NULL;
    double *kt = NULL;
    float *logits = NULL;
    rlx_status st = !tok || !ms ? RLX_ERR_OUT_OF_MEMORY : RLX_OK;
    if (!st) {
        if (tp > 1) {
            st = rlx__tp_group_create(flow, w, bp, tp, NULL, &g);
        } else {
            st = rlx_model_build(flow, w, bp, &m);
            if (!st) st = rlx_session_create(m, &s);
        }
    }
    const rlx_model *m0 = tp > 1 ? (g.r ? g.r[0].model : NULL) : m;
    if (!st && !(kt = rlx__calloc((size_t)rlx__timing_count(m0) + 1, sizeof *kt, "bench kernel times")))
        st = RLX_ERR_OUT_OF_MEMORY;
    for (int i = 0; i < warmup + repeat + 1 && !st; i++) {
        for (int64_t t = 0; t < T; t++)
            tok[t] = (int32_t)(mix(&seed) % (uint64_t)vocab);
        const int timed = i == warmup + repeat; /* the last: per-kernel times */
        const double t0 = now_ms();
        if (tp > 1) {
            st = rlx__tp_group_prefill(&g, tok, T, lens, n_seqs, timed);
        } else {
            st = timed ? rlx__session_prefill_timed(s, tok, T, lens, n_seqs, NULL, kt)
                       : rlx_session_prefill(s, tok, T, lens, n_seqs, NULL);
            if (!st && m->dev) st = m->dev->ops->sync(m->dev->dev, NULL);
        }
        if (i >= warmup && !timed) ms[i - warmup] = now_ms() - t0;
    }
    if (!st) {
        rlx__bench_stats_of(ms, repeat, &out->st);
        out->tokens_per_s = (double)T / (out->st.median * 1e-3);
        comm_share(m0, tp > 1 ? g.r[0].times : kt, &out->comm_ms, &out->kernels_ms);
        size_t sb;
        rlx_model_memory(m0, &out->weight_bytes, &sb);
        /* per layer: o_proj's and down_proj's all-reduce of [T, hidden] */
        out->allreduce_bytes = 2 * rlx__dist_allreduce_bytes(T, hidden, tp, elem);
        out->modelled_ms = link_gbps > 0 ? out->allreduce_bytes * (double)layers / (link_gbps * 1e9) * 1e3 : NAN;
        int64_t rows = 0, cols = 0;
        rlx_session *s0 = tp > 1 ? g.r[0].session : s;
        st = rlx_session_output_shape(s0, &rows, &cols);
        if (!st && !(logits = rlx__malloc((size_t)(rows * cols) * sizeof *logits + 1, "bench logits")))
            st = RLX_ERR_OUT_OF_MEMORY;
        if (!st)
            st = tp > 1 ? rlx__tp_group_output(&g, logits, (size_t)(rows * cols))
                        : rlx_session_output_to_host(s, logits, (size_t)(rows * cols));
        out->output_finite = 1;
        for (int64_t i = 0; !st && i < rows * cols; i++)
            if (!isfinite(logits[i])) {
                out->output_finite = 0;
                break;
            }
    }
    free(logits);
    free(kt);
    rlx_session_destroy(s);
    rlx_model_destroy(m);
    rlx__tp_group_free(&g);
    free(tok);
    free(ms);
    return st;
}
