/* One process driving every rank of a tensor-parallel model (tools/tp.h). */
#include "tools/tp.h"
#include "dist/comm.h"
#include "runtime/device.h"
#include "runtime/session.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct job {
    rlx__tp_group *g;
    int rank;
    /* build */
    const rlx_flow *flow;
    const rlx_weights *w;
    const rlx_build_params *bp;
    /* prefill, generate */
    const int32_t *tokens;
    int64_t n_tokens, n_seqs;
    const int64_t *seq_lens;
    int timed;
    const rlx_generate_params *gen;
    rlx_generation *generation;
} job;

static void keep(rlx__tp_rank *r, rlx_status s) {
    r->status = s;
    snprintf(r->error, sizeof r->error, "%s", s ? rlx_last_error() : "");
}

static void *build_rank(void *arg) {
    job *j = arg;
    rlx__tp_rank *r = &j->g->r[j->rank];
    rlx_build_params bp = *j->bp;
    bp.comm = r->comm;
    bp.device = j->g->device;
    rlx_status s = rlx_model_build(j->flow, j->w, &bp, &r->model);
    if (!s) s = rlx_session_create(r->model, &r->session);
    if (!s) s = rlx__comm_stream_create(r->comm, &r->stream);
    if (!s && !(r->times = rlx__calloc((size_t)rlx__timing_count(r->model) + 1, sizeof(double), "kernel times")))
        s = RLX_ERR_OUT_OF_MEMORY;
    keep(r, s);
    return NULL;
}

static void *prefill_rank(void *arg) {
    job *j = arg;
    rlx__tp_rank *r = &j->g->r[j->rank];
    rlx_status s = j->timed
                       ? rlx__session_prefill_timed(r->session, j->tokens, j->n_tokens, j->seq_lens, j->n_seqs,
                                                    r->stream, r->times)
                       : rlx_session_prefill(r->session, j->tokens, j->n_tokens, j->seq_lens, j->n_seqs, r->stream);
    /* every rank waits for its own collectives, bounded: a failed peer cannot hang it */
    if (!s) s = rlx_comm_synchronize(r->comm, r->stream);
    keep(r, s);
    return NULL;
}

static void *generate_rank(void *arg) {
    job *j = arg;
    rlx__tp_rank *r = &j->g->r[j->rank];
    rlx_status s = rlx__comm_bind(r->comm);
    if (!s) s = rlx_generate(r->model, j->tokens, j->seq_lens, j->n_seqs, j->gen, r->stream, &j->generation);
    keep(r, s);
    return NULL;
}

/* Runs fn for every rank on its own thread (rank 0 on this one). */
static void run_all(rlx__tp_group *g, job *jobs, void *(*fn)(void *)) {
    pthread_t *t = calloc((size_t)g->n, sizeof *t);
    unsigned char *started = calloc((size_t)g->n, 1);
    for (int i = 1; i < g->n; i++)
        started[i] = t && started && pthread_create(&t[i], NULL, fn, &jobs[i]) == 0;
    for (int i = 1; i < g->n; i++)
        if (!started || !started[i]) fn(&jobs[i]); /* no thread: in line (a local group then times out, bounded) */
    fn(&jobs[0]);
    for (int i = 1; i < g->n; i++)
        if (started && started[i]) pthread_join(t[i], NULL);
    free(t);
    free(started);
}

/* The first rank that failed by itself (RLX_ERR_COMM is the others' echo of it), else the first. */
static rlx_status first_failure(const rlx__tp_group *g) {
    int pick = -1;
    for (int i = 0; i < g->n; i++)
        if (g->r[i].status && (pick < 0 || (g->r[pick].status == RLX_ERR_COMM && g->r[i].status != RLX_ERR_COMM)))
            pick = i;
    if (pick < 0) return RLX_OK;
    char named[64];
    snprintf(named, sizeof named, "(rank %d of %d)", g->first_rank + pick, g->world);
    if (strstr(g->r[pick].error, named))
        return rlx__fail(g->r[pick].status, "%s", g->r[pick].error); /* names it already */
    return rlx__fail(g->r[pick].status, "tp rank %d of %d: %s", g->first_rank + pick, g->world, g->r[pick].error);
}

static void free_ranks(rlx__tp_group *g) {
    for (int i = 0; g->r && i < g->n; i++) {
        rlx__tp_rank *r = &g->r[i];
        rlx_session_destroy(r->session);
        rlx_model_destroy(r->model);
        rlx__comm_stream_destroy(r->comm, r->stream);
        free(r->times);
    }
    for (int i = 0; g->r && i < g->n; i++)
        rlx_comm_destroy(g->r[i].comm);
    free(g->r);
    g->r = NULL;
    g->n = g->world = 0;
}

rlx_status rlx__tp_group_create(const rlx_flow *flow, const rlx_weights *w, const rlx_build_params *bp, int tp,
                                const rlx_comm_params *cp, rlx__tp_group *g) {
    memset(g, 0, sizeof *g);
    if (!flow || !w || !bp)
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "tp group: flow, weights and build params are required");
    if (tp < 1 || tp > 1024) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "tp group: tp %d must be in [1, 1024]", tp);
    rlx_device_kind dev = bp->device;
    if (dev == RLX_DEVICE_AUTO) {
        dev = RLX_DEVICE_CPU;
        const rlx__device_ops *ops = rlx__device_ops_for(RLX_DEVICE_CUDA);
        rlx__device *d = NULL;
        if (ops && ops->open(0, &d) == RLX_OK) dev = RLX_DEVICE_CUDA, ops->close(d);
        rlx_clear_error();
    }
    g->r = rlx__calloc((size_t)tp, sizeof *g->r, "the tp ranks");
    rlx_comm **comms = rlx__calloc((size_t)tp, sizeof *comms, "the tp ranks");
    job *jobs = rlx__calloc((size_t)tp, sizeof *jobs, "the tp ranks");
    rlx_status s = !g->r || !comms || !jobs ? RLX_ERR_OUT_OF_MEMORY : RLX_OK;
    if (!s) {
        s = dev == RLX_DEVICE_CUDA ? rlx_comm_nccl_init_all(tp, NULL, cp, comms) : rlx_comm_local_group(tp, cp, comms);
        if (s) s = rlx__fail_prefix(s, "tp = %d on %s", tp, rlx_device_kind_name(dev));
    }
    if (s) {
        free(g->r), free(comms), free(jobs);
        g->r = NULL;
        return s;
    }
    g->n = g->world = tp;
    g->device = dev;
    for (int i = 0; i < tp; i++) {
        g->r[i].comm = comms[i];
        jobs[i] = (job){.g = g, .rank = i, .flow = flow, .w = w, .bp = bp};
    }
    free(comms);
    run_all(g, jobs, build_rank);
    free(jobs);
    if ((s = first_failure(g))) free_ranks(g);
    return s;
}

rlx_status rlx__tp_group_create_env(const rlx_flow *flow, const rlx_weights *w, const rlx_build_params *bp,
                                    const rlx_comm_params *cp, rlx__tp_group *g) {
    memset(g, 0, sizeof *g);
    if (!flow || !w || !bp)
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "tp group: flow, weights and build params are required");
    rlx_comm *c = NULL;
    rlx_status s = rlx_comm_from_env(cp, &c);
    if (s) return s;
    if (!(g->r = rlx__calloc(1, sizeof *g->r, "the tp rank"))) {
        rlx_comm_destroy(c);
        return RLX_ERR_OUT_OF_MEMORY;
    }
    g->n = 1;
    g->world = rlx_comm_size(c);
    g->first_rank = rlx_comm_rank(c);
    g->device = RLX_DEVICE_CUDA; /* an NCCL rank */
    g->r[0].comm = c;
    job j = {.g = g, .rank = 0, .flow = flow, .w = w, .bp = bp};
    build_rank(&j);
    if ((s = g->r[0].status)) {
        s = rlx__fail(s, "tp rank %d of %d: %s", g->first_rank, g->world, g->r[0].error);
        free_ranks(g);
    }
    return s;
}

rlx_status rlx__tp_group_prefill(rlx__tp_group *g, const int32_t *tokens, int64_t n_tokens, const int64_t *seq_lens,
                                 int64_t n_seqs, int timed) {
    if (!g || !g->r) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "tp group: not created");
    job *jobs = rlx__calloc((size_t)g->n, sizeof *jobs, "the tp ranks");
    if (!jobs) return RLX_ERR_OUT_OF_MEMORY;
    for (int i = 0; i < g->n; i++)
        jobs[i] = (job){.g = g,
                        .rank = i,
                        .tokens = tokens,
                        .n_tokens = n_tokens,
                        .seq_lens = seq_lens,
                        .n_seqs = n_seqs,
                        .timed = timed};
    run_all(g, jobs, prefill_rank);
    free(jobs);
    return first_failure(g);
}

rlx_status rlx__tp_group_generate(rlx__tp_group *g, const int32_t *tokens, const int64_t *lens, int64_t n,
                                  const rlx_generate_params *params, rlx_generation **out) {
    if (!out) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "tp group: out is NULL");
    *out = NULL;
    if (!g || !g->r) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "tp group: not created");
    job *jobs = rlx__calloc((size_t)g->n, sizeof *jobs, "the tp ranks");
    if (!jobs) return RLX_ERR_OUT_OF_MEMORY;
    for (int i = 0; i < g->n; i++)
        jobs[i] = (job){.g = g, .rank = i, .tokens = tokens, .seq_lens = lens, .n_seqs = n, .gen = params};
    run_all(g, jobs, generate_rank);
    rlx_status s = first_failure(g);
    /* lockstep: every rank sampled from the same logits, so the same tokens */
    for (int i = 1; i < g->n && !s; i++)
        for (int64_t q = 0; q < n && !s; q++) {
            int64_t a, b;
            const int32_t *x = rlx_generation_tokens(jobs[0].generation, q, &a),
                          *y = rlx_generation_tokens(jobs[i].generation, q, &b);
            if (a != b || (a && memcmp(x, y, (size_t)a * sizeof *x)))
                s = rlx__fail(RLX_ERR_INTERNAL, "tp generate: rank %d's tokens for sequence %lld differ from rank 0's",
                              g->first_rank + i, (long long)q);
        }
    if (!s) *out = jobs[0].generation, jobs[0].generation = NULL;
    for (int i = 0; i < g->n; i++)
        rlx_generation_destroy(jobs[i].generation);
    free(jobs);
    return s;
}

rlx_status rlx__tp_group_output(rlx__tp_group *g, float *dst, size_t capacity) {
    if (!g || !g->r) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "tp group: not created");
    rlx_status s = rlx__comm_bind(g->r[0].comm);
    return s ? s : rlx_session_output_to_host(g->r[0].session, dst, capacity);
}

void rlx__tp_group_free(rlx__tp_group *g) {
    if (g) free_ranks(g);
}
