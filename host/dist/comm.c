/* Communicators: the dispatch between backends, the local (in-process) backend, and the
 * torchrun-style setup from the environment with its file rendezvous. The NCCL backend is
 * comm_nccl.c.
 *
 * Local backend: the ranks of a group are threads of one process, their buffers host memory.
 * Every collective is two barriers: at the first each rank posts its buffers; between them each
 * rank reads every rank's send buffer and computes its own result (all-reduce: into scratch, since
 * its recv may be its own send, which the others are still reading); after the second nobody reads
 * a send buffer any more, and all-reduce results are stored. Sums run in f32 in rank order and are
 * rounded once, so every rank holds the same bits. Waits are bounded by the group's timeout; a
 * timeout, a failed rank or mismatched calls abort the whole group with a message naming who. */
#include "dist/comm.h"
#include "rlx/weights.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

rlx_comm_params rlx_comm_default_params(void) {
    rlx_comm_params p = {.timeout_ms = 300000};
    return p;
}

/* ---- local backend -------------------------------------------------------------------------------- */

enum { OP_ALL_REDUCE = 1, OP_ALL_GATHER, OP_GATHER_COLS };

static const char *op_name(int op) {
    return op == OP_ALL_REDUCE ? "all_reduce" : op == OP_ALL_GATHER ? "all_gather" : "all_gather (columns)";
}

typedef struct post {
    int op;
    const void *send;
    void *recv;
    size_t count;
    rlx_dtype dtype;
    int64_t rows, w, total; /* gather_cols */
} post;

struct rlx__local_group {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int size, refs, timeout_ms;
    int arrived;         /* ranks at the current barrier */
    uint64_t gen;        /* barriers completed */
    unsigned char *here; /* [size]: at the current barrier */
    int aborted;
    char reason[768];
    post *posts; /* [size] */
};

static void abort_locked(rlx__local_group *g, const char *reason) {
    if (g->aborted) return;
    g->aborted = 1;
    snprintf(g->reason, sizeof g->reason, "%s", reason);
    pthread_cond_broadcast(&g->cv);
}

static rlx_status aborted_fail(const rlx__local_group *g, int rank, const char *what) {
    return rlx__fail(RLX_ERR_COMM, "%s on rank %d: the tensor-parallel job was aborted: %s", what, rank, g->reason);
}

/* Called with g->mu held. */
static rlx_status barrier_locked(rlx__local_group *g, int rank, const char *what) {
    if (g->aborted) return aborted_fail(g, rank, what);
    const uint64_t my = g->gen;
    g->here[rank] = 1;
    if (++g->arrived == g->size) {
        g->arrived = 0;
        memset(g->here, 0, (size_t)g->size);
        g->gen++;
        pthread_cond_broadcast(&g->cv);
        return RLX_OK;
    }
    struct timespec dl;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    dl.tv_sec += g->timeout_ms / 1000;
    dl.tv_nsec += (long)(g->timeout_ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) dl.tv_sec++, dl.tv_nsec -= 1000000000L;
    while (g->gen == my && !g->aborted) {
        int rc = pthread_cond_timedwait(&g->cv, &g->mu, &dl);
        if (rc == ETIMEDOUT && g->gen == my && !g->aborted) {
            char missing[256];
            size_t len = 0;
            missing[0] = '\0';
            for (int q = 0; q < g->size && len + 16 < sizeof missing; q++)
                if (!g->here[q])
                    len += (size_t)snprintf(missing + len, sizeof missing - len, "%s%d", len ? ", " : "", q);
            char reason[512];
            snprintf(reason, sizeof reason, "rank %d waited %d ms in %s for rank%s %s, which never arrived", rank,
                     g->timeout_ms, what, strchr(missing, ',') ? "s" : "", missing);
            abort_locked(g, reason);
        }
    }
    if (g->gen != my) return RLX_OK; /* the barrier completed (an abort after it is for later calls) */
    return aborted_fail(g, rank, what);
}

static size_t esize(rlx_dtype t) { return t == RLX_DTYPE_F32 ? 4 : 2; }

static float ld(const void *p, size_t i, rlx_dtype t) {
    if (t == RLX_DTYPE_F32) return ((const float *)p)[i];
    const uint16_t h = ((const uint16_t *)p)[i];
    return t == RLX_DTYPE_BF16 ? rlx_bf16_to_f32(h) : rlx_f16_to_f32(h);
}

static void st(void *p, size_t i, float v, rlx_dtype t) {
    if (t == RLX_DTYPE_F32)
        ((float *)p)[i] = v;
    else
        ((uint16_t *)p)[i] = t == RLX_DTYPE_BF16 ? rlx_f32_to_bf16(v) : rlx_f32_to_f16(v);
}

static int same_call(const post *a, const post *b) {
    return a->op == b->op && a->count == b->count && a->dtype == b->dtype && a->rows == b->rows && a->w == b->w &&
           a->total == b->total;
}

static rlx_status local_collective(rlx_comm *c, const post *p) {
    rlx__local_group *g = c->group;
    char what[64];
    pthread_mutex_lock(&g->mu);
    snprintf(what, sizeof what, "%s #%llu", op_name(p->op), (unsigned long long)++c->n_ops);
    g->posts[c->rank] = *p;
    rlx_status s = barrier_locked(g, c->rank, what);
    pthread_mutex_unlock(&g->mu);
    if (s) return s;
    /* Every rank checks the calls match (they all see the same posts, so all refuse together). */
    for (int q = 0; q < g->size; q++) {
        const post *o = &g->posts[q];
        if (same_call(o, &g->posts[0])) continue;
        const post *z = &g->posts[0];
        char reason[512];
        snprintf(
            reason, sizeof reason,
            "mismatched collectives: rank %d called %s of %zu %s elements (%lld x %lld of %lld columns) while rank 0 "
            "called %s of %zu %s elements (%lld x %lld of %lld columns)",
            q, op_name(o->op), o->count, rlx_dtype_name(o->dtype), (long long)o->rows, (long long)o->w,
            (long long)o->total, op_name(z->op), z->count, rlx_dtype_name(z->dtype), (long long)z->rows,
            (long long)z->w, (long long)z->total);
        pthread_mutex_lock(&g->mu);
        abort_locked(g, reason);
        pthread_mutex_unlock(&g->mu);
        return aborted_fail(g, c->rank, what);
    }
    const size_t es = esize(p->dtype);
    float *acc = NULL;
    if (p->op == OP_ALL_REDUCE) {
        acc = malloc(p->count ? p->count * sizeof(float) : 1);
        if (!acc) {
            char reason[256];
            snprintf(reason, sizeof reason, "rank %d is out of host memory for %zu bytes of all_reduce scratch",
                     c->rank, p->count * sizeof(float));
            pthread_mutex_lock(&g->mu);
            abort_locked(g, reason);
            pthread_mutex_unlock(&g->mu);
            return aborted_fail(g, c->rank, what);
        }
        for (size_t i = 0; i < p->count; i++) {
            float a = 0.0f;
            for (int q = 0; q < g->size; q++)
                a += ld(g->posts[q].send, i, p->dtype); /* rank order: deterministic */
            acc[i] = a;
        }
    } else if (p->op == OP_ALL_GATHER) {
        for (int q = 0; q < g->size; q++)
            memmove((char *)p->recv + (size_t)q * p->count * es, g->posts[q].send, p->count * es);
    } else {
        for (int q = 0; q < g->size; q++) {
            const int64_t c0 = (int64_t)q * p->w, n = p->total - c0 < p->w ? p->total - c0 : p->w;
            for (int64_t r = 0; r < p->rows && n > 0; r++)
                memmove((char *)p->recv + (size_t)(r * p->total + c0) * es,
                        (const char *)g->posts[q].send + (size_t)(r * p->w) * es, (size_t)n * es);
        }
    }
    pthread_mutex_lock(&g->mu);
    s = barrier_locked(g, c->rank, what);
    pthread_mutex_unlock(&g->mu);
    if (!s && acc)
        for (size_t i = 0; i < p->count; i++)
            st(p->recv, i, acc[i], p->dtype);
    free(acc);
    return s;
}

static void group_release(rlx__local_group *g) {
    pthread_mutex_lock(&g->mu);
    int last = --g->refs == 0;
    pthread_mutex_unlock(&g->mu);
    if (!last) return;
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
    free(g->here);
    free(g->posts);
    free(g);
}

rlx_status rlx_comm_local_group(int n, const rlx_comm_params *params, rlx_comm **comms) {
    if (!comms) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_comm_local_group: comms is NULL");
    if (n < 1 || n > 1024)
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_comm_local_group: world size %d must be in [1, 1024]", n);
    for (int r = 0; r < n; r++)
        comms[r] = NULL;
    rlx_comm_params p = params ? *params : rlx_comm_default_params();
    if (p.timeout_ms <= 0)
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_comm_local_group: timeout_ms %d must be > 0", p.timeout_ms);
    rlx__local_group *g = rlx__calloc(1, sizeof *g, "a local communicator group");
    if (!g) return RLX_ERR_OUT_OF_MEMORY;
    g->here = rlx__calloc((size_t)n, 1, "a local communicator group");
    g->posts = rlx__calloc((size_t)n, sizeof *g->posts, "a local communicator group");
    if (!g->here || !g->posts) {
        free(g->here), free(g->posts), free(g);
        return RLX_ERR_OUT_OF_MEMORY;
    }
    g->size = n;
    g->timeout_ms = p.timeout_ms;
    pthread_mutex_init(&g->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* timeouts immune to wall-clock jumps */
    pthread_cond_init(&g->cv, &ca);
    pthread_condattr_destroy(&ca);
    for (int r = 0; r < n; r++) {
        rlx_comm *c = rlx__calloc(1, sizeof *c, "a communicator");
        if (!c) {
            for (int q = 0; q < r; q++)
                rlx_comm_destroy(comms[q]), comms[q] = NULL;
            if (r == 0) g->refs = 1, group_release(g);
            return RLX_ERR_OUT_OF_MEMORY;
        }
        c->kind = RLX_COMM_LOCAL;
        c->rank = r;
        c->size = n;
        c->device = -1;
        c->timeout_ms = p.timeout_ms;
        c->group = g;
        pthread_mutex_init(&c->lock, NULL);
        g->refs++;
        comms[r] = c;
    }
    return RLX_OK;
}

/* ---- dispatch --------------------------------------------------------------------------------------- */

int rlx_comm_nccl_available(void) {
#if defined(RLX_HAVE_NCCL)
    return 1;
#else
    return 0;
#endif
}

static rlx_status check_params(const rlx_comm_params *params, const char *fn, int *timeout) {
    rlx_comm_params p = params ? *params : rlx_comm_default_params();
    if (p.timeout_ms <= 0)
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "%s: timeout_ms %d must be > 0", fn, p.timeout_ms);
    *timeout = p.timeout_ms;
    return RLX_OK;
}

static rlx_comm *new_comm(int timeout) {
    rlx_comm *c = rlx__calloc(1, sizeof *c, "a communicator");
    if (!c) return NULL;
    c->kind = RLX_COMM_NCCL;
    c->timeout_ms = timeout;
    c->device = -1;
    pthread_mutex_init(&c->lock, NULL);
    return c;
}

rlx_status rlx_comm_nccl_unique_id(rlx_comm_id *out) {
    if (!out) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_comm_nccl_unique_id: out is NULL");
    return rlx__nccl_unique_id(out);
}

rlx_status rlx_comm_nccl_init(const rlx_comm_id *id, int size, int rank, int device, const rlx_comm_params *params,
                              rlx_comm **out) {
    if (!out) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_comm_nccl_init: out is NULL");
    *out = NULL;
    if (!id) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_comm_nccl_init: id is NULL");
    if (size < 1 || rank < 0 || rank >= size)
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT,
                         "rlx_comm_nccl_init: rank %d of world size %d (need 0 <= rank < size)", rank, size);
    if (device < 0) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_comm_nccl_init: CUDA device %d", device);
    int timeout = 0;
    rlx_status s = check_params(params, "rlx_comm_nccl_init", &timeout);
    if (s) return s;
    if (!rlx_comm_nccl_available()) return rlx__fail(RLX_ERR_UNSUPPORTED, "rlx_comm_nccl_init: %s", rlx__nccl_missing);
    rlx_comm *c = new_comm(timeout);
    if (!c) return RLX_ERR_OUT_OF_MEMORY;
    if ((s = rlx__nccl_init(id, size, rank, device, timeout, c))) {
        pthread_mutex_destroy(&c->lock);
        free(c);
        return s;
    }
    *out = c;
    return RLX_OK;
}

rlx_status rlx_comm_nccl_init_all(int size, const int *devices, const rlx_comm_params *params, rlx_comm **comms) {
    if (!comms) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_comm_nccl_init_all: comms is NULL");
    if (size < 1 || size > 1024)
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_comm_nccl_init_all: world size %d must be in [1, 1024]", size);
    for (int r = 0; r < size; r++)
        comms[r] = NULL;
    int timeout = 0;
    rlx_status s = check_params(params, "rlx_comm_nccl_init_all", &timeout);
    if (s) return s;
    if (!rlx_comm_nccl_available())
        return rlx__fail(RLX_ERR_UNSUPPORTED, "rlx_comm_nccl_init_all: %s", rlx__nccl_missing);
    for (int r = 0; r < size; r++)
        if (!(comms[r] = new_comm(timeout))) {
            for (int q = 0; q < r; q++)
                pthread_mutex_destroy(&comms[q]->lock), free(comms[q]), comms[q] = NULL;
            return RLX_ERR_OUT_OF_MEMORY;
        }
    if ((s = rlx__nccl_init_all(size, devices, timeout, comms))) {
        for (int r = 0; r < size; r++)
            pthread_mutex_destroy(&comms[r]->lock), free(comms[r]), comms[r] = NULL;
        return s;
    }
    return RLX_OK;
}

rlx_status rlx_comm_nccl_wrap(void *nccl_comm, const rlx_comm_params *params, rlx_comm **out) {
    if (!out) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_comm_nccl_wrap: out is NULL");
    *out = NULL;
    if (!nccl_comm) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_comm_nccl_wrap: the ncclComm_t is NULL");
    int timeout = 0;
    rlx_status s = check_params(params, "rlx_comm_nccl_wrap", &timeout);
    if (s) return s;
    if (!rlx_comm_nccl_available()) return rlx__fail(RLX_ERR_UNSUPPORTED, "rlx_comm_nccl_wrap: %s", rlx__nccl_missing);
    rlx_comm *c = new_comm(timeout);
    if (!c) return RLX_ERR_OUT_OF_MEMORY;
    if ((s = rlx__nccl_wrap(nccl_comm, c))) {
        pthread_mutex_destroy(&c->lock);
        free(c);
        return s;
    }
    *out = c;
    return RLX_OK;
}

void rlx_comm_destroy(rlx_comm *c) {
    if (!c) return;
    if (c->kind == RLX_COMM_LOCAL)
        group_release(c->group);
    else
        rlx__nccl_destroy(c);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

rlx_comm_kind rlx_comm_get_kind(const rlx_comm *c) { return c ? c->kind : RLX_COMM_LOCAL; }
int rlx_comm_rank(const rlx_comm *c) { return c ? c->rank : -1; }
int rlx_comm_size(const rlx_comm *c) { return c ? c->size : 0; }
int rlx_comm_device(const rlx_comm *c) { return c ? c->device : -1; }

static rlx_status check_dtype(rlx_dtype t, const char *fn) {
    if (t == RLX_DTYPE_F32 || t == RLX_DTYPE_BF16 || t == RLX_DTYPE_F16) return RLX_OK;
    return rlx__fail(RLX_ERR_UNSUPPORTED, "%s: dtype %s (F32, F16 or BF16)", fn, rlx_dtype_name(t));
}

rlx_status rlx_comm_all_reduce(rlx_comm *c, const void *send, void *recv, size_t count, rlx_dtype dtype, void *stream) {
    if (!c || ((!send || !recv) && count))
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_comm_all_reduce: NULL communicator or buffer");
    rlx_status s = check_dtype(dtype, "rlx_comm_all_reduce");
    if (s) return s;
    if (c->kind == RLX_COMM_NCCL) return rlx__nccl_all_reduce(c, send, recv, count, dtype, stream);
    post p = {.op = OP_ALL_REDUCE, .send = send, .recv = recv, .count = count, .dtype = dtype};
    return local_collective(c, &p);
}

rlx_status rlx_comm_all_gather(rlx_comm *c, const void *send, void *recv, size_t count, rlx_dtype dtype, void *stream) {
    if (!c || ((!send || !recv) && count))
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_comm_all_gather: NULL communicator or buffer");
    rlx_status s = check_dtype(dtype, "rlx_comm_all_gather");
    if (s) return s;
    if (c->kind == RLX_COMM_NCCL) return rlx__nccl_all_gather(c, send, recv, count, dtype, stream);
    post p = {.op = OP_ALL_GATHER, .send = send, .recv = recv, .count = count, .dtype = dtype};
    return local_collective(c, &p);
}

rlx_status rlx__comm_all_gather_cols(rlx_comm *c, const void *send, void *recv, void *staging, int64_t rows, int64_t w,
                                     int64_t total, rlx_dtype dtype, void *stream) {
    if (rows < 0 || w < 1 || total < 1 || total > w * c->size)
        return rlx__fail(RLX_ERR_INTERNAL, "all_gather (columns): %lld rows of %lld columns into %lld on %d ranks",
                         (long long)rows, (long long)w, (long long)total, c->size);
    if (c->kind == RLX_COMM_NCCL) return rlx__nccl_gather_cols(c, send, recv, staging, rows, w, total, dtype, stream);
    post p = {.op = OP_GATHER_COLS,
              .send = send,
              .recv = recv,
              .count = (size_t)(rows * w),
              .dtype = dtype,
              .rows = rows,
              .w = w,
              .total = total};
    return local_collective(c, &p);
}

rlx_status rlx_comm_synchronize(rlx_comm *c, void *stream) {
    if (!c) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_comm_synchronize: communicator is NULL");
    if (c->kind == RLX_COMM_NCCL) return rlx__nccl_synchronize(c, stream);
    return rlx_comm_check(c);
}

rlx_status rlx_comm_abort(rlx_comm *c, const char *reason) {
    if (!c) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_comm_abort: communicator is NULL");
    char why[640];
    snprintf(why, sizeof why, "rank %d aborted the job: %s", c->rank, reason && *reason ? reason : "rlx_comm_abort");
    if (c->kind == RLX_COMM_NCCL) return rlx__nccl_abort(c, why);
    pthread_mutex_lock(&c->group->mu);
    abort_locked(c->group, why);
    pthread_mutex_unlock(&c->group->mu);
    return RLX_OK;
}

rlx_status rlx_comm_check(rlx_comm *c) {
    if (!c) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_comm_check: communicator is NULL");
    if (c->kind == RLX_COMM_NCCL) return rlx__nccl_check(c);
    rlx__local_group *g = c->group;
    pthread_mutex_lock(&g->mu);
    rlx_status s = g->aborted ? aborted_fail(g, c->rank, "communicator") : RLX_OK;
    pthread_mutex_unlock(&g->mu);
    return s;
}

void rlx__comm_fail(rlx_comm *c, rlx_status s, const char *what) {
    if (!c) return;
    char why[768];
    snprintf(why, sizeof why, "rank %d failed (%s): %s", c->rank, rlx_status_name(s),
             what && *what ? what : rlx_status_string(s));
    if (c->kind == RLX_COMM_NCCL) {
        /* keep this thread's message: it is the rank's own error */
        char keep[1024];
        snprintf(keep, sizeof keep, "%s", rlx_last_error());
        rlx__nccl_abort(c, why);
        rlx__fail(s, "%s", keep);
        return;
    }
    pthread_mutex_lock(&c->group->mu);
    abort_locked(c->group, why);
    pthread_mutex_unlock(&c->group->mu);
}

rlx_status rlx__comm_enter(rlx_comm *c) {
    pthread_mutex_lock(&c->lock);
    int was = c->busy;
    c->busy = 1;
    pthread_mutex_unlock(&c->lock);
    if (was)
        return rlx__fail(
            RLX_ERR_INVALID_ARGUMENT,
            "rank %d: another prefill is under way on this communicator (one at a time: every rank must run the same "
            "prefills in the same order)",
            c->rank);
    return RLX_OK;
}

void rlx__comm_leave(rlx_comm *c) {
    pthread_mutex_lock(&c->lock);
    c->busy = 0;
    pthread_mutex_unlock(&c->lock);
}

rlx_status rlx__comm_bind(rlx_comm *c) { return c->kind == RLX_COMM_NCCL ? rlx__nccl_bind(c) : RLX_OK; }

rlx_status rlx__comm_stream_create(rlx_comm *c, void **stream) {
    *stream = NULL;
    return c->kind == RLX_COMM_NCCL ? rlx__nccl_stream_create(c, stream) : RLX_OK;
}

void rlx__comm_stream_destroy(rlx_comm *c, void *stream) {
    if (c && c->kind == RLX_COMM_NCCL && stream) rlx__nccl_stream_destroy(c, stream);
}

/* ---- rendezvous through a shared file ------------------------------------------------------------ */

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return 1e3 * (double)ts.tv_sec + 1e-6 * (double)ts.tv_nsec;
}

static void to_hex(char *out, const rlx_comm_id *id) {
    static const char hx[] = "0123456789abcdef";
    for (int i = 0; i < RLX_COMM_ID_BYTES; i++)
        out[2 * i] = hx[id->bytes[i] >> 4], out[2 * i + 1] = hx[id->bytes[i] & 15];
    out[2 * RLX_COMM_ID_BYTES] = '\0';
}

static int from_hex(rlx_comm_id *id, const char *s) {
    for (int i = 0; i < RLX_COMM_ID_BYTES; i++) {
        int v = 0;
        for (int k = 0; k < 2; k++) {
            char ch = s[2 * i + k];
            int d = ch >= '0' && ch <= '9'   ? ch - '0'
                    : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                    : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                                             : -1;
            if (d < 0) return 0;
            v = v * 16 + d;
        }
        id->bytes[i] = (unsigned char)v;
    }
    return s[2 * RLX_COMM_ID_BYTES] == '\0' || s[2 * RLX_COMM_ID_BYTES] == '\n';
}

/* Written to a temporary name and renamed, so a reader sees the whole file or none. */
static rlx_status write_record(const char *path, int world, const rlx_comm_id *id) {
    char tmp[1100], hex[2 * RLX_COMM_ID_BYTES + 1];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid() * 1000 + (long)(now_ms()) % 1000);
    to_hex(hex, id);
    FILE *f = fopen(tmp, "w");
    if (!f) return rlx__fail(RLX_ERR_IO, "rendezvous: cannot write %s: %s", tmp, strerror(errno));
    int ok = fprintf(f, "rlx-comm-id 1\nworld_size %d\nid %s\n", world, hex) > 0;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        rlx_status s = rlx__fail(RLX_ERR_IO, "rendezvous: cannot write %s: %s", path, strerror(errno));
        unlink(tmp);
        return s;
    }
    return RLX_OK;
}

/* 1 and the fields when path holds a complete record, 0 when it is absent, -1 when it is malformed. */
static int read_record(const char *path, int *world, rlx_comm_id *id) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char line[3][400];
    int n = 0;
    while (n < 3 && fgets(line[n], sizeof line[n], f))
        n++;
    fclose(f);
    if (n < 3 || strcmp(line[0], "rlx-comm-id 1\n") || sscanf(line[1], "world_size %d", world) != 1 ||
        strncmp(line[2], "id ", 3) || !from_hex(id, line[2] + 3))
        return -1;
    return 1;
}

/* Rank 0's verdict on a job, once every acknowledgement is in (or one is wrong, or missing):
 * "rlx-comm-verdict 1 / id HEX / ok 0|1 / why MESSAGE". The id ties it to this job, so a
 * verdict left by an earlier job at the same path is ignored. */
static rlx_status write_verdict(const char *path, const rlx_comm_id *id, int ok, const char *why) {
    char tmp[1200], hex[2 * RLX_COMM_ID_BYTES + 1];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid() * 1000 + (long)(now_ms()) % 1000);
    to_hex(hex, id);
    FILE *f = fopen(tmp, "w");
    if (!f) return rlx__fail(RLX_ERR_IO, "rendezvous: cannot write %s: %s", tmp, strerror(errno));
    int good = fprintf(f, "rlx-comm-verdict 1\nid %s\nok %d\nwhy %.700s\n", hex, ok, why && *why ? why : "-") > 0;
    good = (fclose(f) == 0) && good;
    if (!good || rename(tmp, path) != 0) {
        rlx_status s = rlx__fail(RLX_ERR_IO, "rendezvous: cannot write %s: %s", path, strerror(errno));
        unlink(tmp);
        return s;
    }
    return RLX_OK;
}

/* 1 with ok and why when path holds this job's verdict, 0 when it is absent or another job's,
 * -1 when it is malformed. */
static int read_verdict(const char *path, const rlx_comm_id *id, int *ok, char *why, size_t cap) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char line[4][800];
    int n = 0;
    while (n < 4 && fgets(line[n], sizeof line[n], f))
        n++;
    fclose(f);
    rlx_comm_id got;
    if (n < 4 || strcmp(line[0], "rlx-comm-verdict 1\n") || strncmp(line[1], "id ", 3) ||
        !from_hex(&got, line[1] + 3) || sscanf(line[2], "ok %d", ok) != 1 || strncmp(line[3], "why ", 4))
        return -1;
    if (memcmp(got.bytes, id->bytes, sizeof got.bytes)) return 0;
    line[3][strcspn(line[3], "\n")] = '\0';
    snprintf(why, cap, "%s", line[3] + 4);
    return 1;
}

rlx_status rlx__rendezvous_file(const char *path, int rank, int world, rlx_comm_id *id, int timeout_ms) {
    char ack[1100];
    const double deadline = now_ms() + timeout_ms;
    if (rank == 0) {
        char verdict[1100];
        snprintf(verdict, sizeof verdict, "%s.verdict", path);
        unlink(verdict); /* an earlier job's */
        for (int r = 1; r < world; r++) {
            snprintf(ack, sizeof ack, "%s.ack%d", path, r);
            unlink(ack); /* a crashed earlier job's */
            snprintf(ack, sizeof ack, "%s.seen%d", path, r);
            unlink(ack);
        }
        rlx_status s = write_record(path, world, id);
        if (s) return s;
        /* every other rank acknowledges with its own world size and the id it read */
        unsigned char *seen = rlx__calloc((size_t)world, 1, "the rendezvous");
        if (!seen) return RLX_ERR_OUT_OF_MEMORY;
        int left = world - 1;
        s = RLX_OK;
        while (left > 0 && !s) {
            for (int r = 1; r < world && !s; r++) {
                if (seen[r]) continue;
                snprintf(ack, sizeof ack, "%s.ack%d", path, r);
                int w = 0;
                rlx_comm_id got;
                int k = read_record(ack, &w, &got);
                if (k == 0) continue;
                seen[r] = 1, left--;
                if (k < 0)
                    s = rlx__fail(RLX_ERR_FORMAT, "rendezvous: %s is malformed", ack);
                else if (w != world)
                    s = rlx__fail(
                        RLX_ERR_COMM,
                        "rendezvous %s: world-size mismatch: rank %d was started with world size %d, rank 0 with %d",
                        path, r, w, world);
                else if (memcmp(got.bytes, id->bytes, sizeof got.bytes))
                    s = rlx__fail(RLX_ERR_COMM,
                                  "rendezvous %s: rank %d read another id (a stale file from an earlier job?)", path,
                                  r);
            }
            if (left > 0 && !s) {
                if (now_ms() > deadline) {
                    char missing[256];
                    size_t len = 0;
                    missing[0] = '\0';
                    for (int r = 1; r < world && len + 16 < sizeof missing; r++)
                        if (!seen[r])
                            len += (size_t)snprintf(missing + len, sizeof missing - len, "%s%d", len ? ", " : "", r);
                    s = rlx__fail(RLX_ERR_COMM, "rendezvous %s: rank 0 waited %d ms for rank%s %s to read it", path,
                                  timeout_ms, strchr(missing, ',') ? "s" : "", missing);
                } else {
                    usleep(5000);
                }
            }
        }
        for (int r = 1; r < world; r++) {
            snprintf(ack, sizeof ack, "%s.ack%d", path, r);
            unlink(ack);
        }
        unlink(path); /* the job has its id (or has failed): the path is free for the next one */
        /* every rank that acknowledged waits for the verdict, so a mismatch anywhere fails the job on
         * every rank, not only on rank 0 and the mismatched one */
        char why[768];
        snprintf(why, sizeof why, "%s", s ? rlx_last_error() : "");
        rlx_status v = write_verdict(verdict, id, !s, why);
        if (s || v) {
            free(seen);
            return s ? rlx__fail(s, "%s", why) : v; /* a failed job's verdict stays for its ranks to read */
        }
        /* a good job: each rank confirms it read the verdict, then it is removed */
        const double until = now_ms() + timeout_ms;
        memset(seen, 0, (size_t)world);
        for (left = world - 1; left > 0 && !s;) {
            for (int r = 1; r < world; r++) {
                snprintf(ack, sizeof ack, "%s.seen%d", path, r);
                if (!seen[r] && access(ack, F_OK) == 0) seen[r] = 1, left--, unlink(ack);
            }
            if (left == 0) break;
            if (now_ms() > until)
                s = rlx__fail(RLX_ERR_COMM, "rendezvous %s: rank 0 waited %d ms for the ranks to read its verdict",
                              path, timeout_ms);
            else
                usleep(5000);
        }
        free(seen);
        unlink(verdict);
        return s;
    }
    for (;;) {
        int w = 0;
        rlx_comm_id got;
        int k = read_record(path, &w, &got);
        if (k < 0) return rlx__fail(RLX_ERR_FORMAT, "rendezvous: %s is malformed", path);
        if (k > 0) {
            snprintf(ack, sizeof ack, "%s.ack%d", path, rank);
            rlx_status s = write_record(ack, world, &got);
            if (s) return s;
            if (w != world)
                return rlx__fail(RLX_ERR_COMM,
                                 "rendezvous %s: world-size mismatch: rank %d was started with world size %d but rank "
                                 "0 created the job with %d",
                                 path, rank, world, w);
            /* rank 0's verdict once every rank has acknowledged: another rank's mismatch fails this one too */
            char verdict[1100], why[800];
            snprintf(verdict, sizeof verdict, "%s.verdict", path);
            const double until = now_ms() + timeout_ms;
            for (;;) {
                int ok = 0;
                int kv = read_verdict(verdict, &got, &ok, why, sizeof why);
                if (kv < 0) return rlx__fail(RLX_ERR_FORMAT, "rendezvous: %s is malformed", verdict);
                if (kv > 0 && !ok)
                    return rlx__fail(RLX_ERR_COMM, "rendezvous: rank %d: rank 0 called the job off: %s", rank, why);
                if (kv > 0) break;
                if (now_ms() > until)
                    return rlx__fail(RLX_ERR_COMM, "rendezvous: rank %d waited %d ms for rank 0's verdict (%s)", rank,
                                     timeout_ms, verdict);
                usleep(5000);
            }
            snprintf(ack, sizeof ack, "%s.seen%d", path, rank);
            if ((s = write_record(ack, world, &got))) return s;
            *id = got;
            return RLX_OK;
        }
        if (now_ms() > deadline)
            return rlx__fail(RLX_ERR_COMM, "rendezvous: rank %d waited %d ms for rank 0 to write %s", rank, timeout_ms,
                             path);
        usleep(5000);
    }
}

/* ---- from the environment ------------------------------------------------------------------------- */

static int env_int(const char *a, const char *b, int *out, const char **name) {
    const char *v = getenv(a);
    *name = a;
    if ((!v || !*v) && b) v = getenv(b), *name = b;
    if (!v || !*v) return 0;
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || *end || n < 0 || n > (1 << 20)) return -1;
    *out = (int)n;
    return 1;
}

rlx_status rlx_comm_from_env(const rlx_comm_params *params, rlx_comm **out) {
    if (!out) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_comm_from_env: out is NULL");
    *out = NULL;
    int timeout = 0;
    rlx_status s = check_params(params, "rlx_comm_from_env", &timeout);
    if (s) return s;
    int rank = 0, world = 0, local = 0, t = 0;
    const char *rn, *wn, *ln, *tn;
    int kr = env_int("RLX_RANK", "RANK", &rank, &rn), kw = env_int("RLX_WORLD_SIZE", "WORLD_SIZE", &world, &wn);
    int kl = env_int("RLX_LOCAL_RANK", "LOCAL_RANK", &local, &ln), kt = env_int("RLX_COMM_TIMEOUT_MS", NULL, &t, &tn);
    if (kr == 0) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_comm_from_env: RLX_RANK (or RANK) is not set");
    if (kw == 0)
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_comm_from_env: RLX_WORLD_SIZE (or WORLD_SIZE) is not set");
    if (kr < 0 || kw < 0 || kl < 0 || kt < 0)
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_comm_from_env: %s is not a non-negative integer",
                         kr < 0   ? rn
                         : kw < 0 ? wn
                         : kl < 0 ? ln
                                  : tn);
    if (world < 1 || rank >= world)
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_comm_from_env: %s=%d is outside the world size %s=%d", rn, rank,
                         wn, world);
    if (kl == 0) local = rank;
    if (kt > 0) {
        if (t == 0) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_comm_from_env: RLX_COMM_TIMEOUT_MS must be > 0");
        timeout = t;
    }
    if (!rlx_comm_nccl_available()) return rlx__fail(RLX_ERR_UNSUPPORTED, "rlx_comm_from_env: %s", rlx__nccl_missing);
    rlx_comm_id id;
    const char *hex = getenv("RLX_NCCL_ID"), *file = getenv("RLX_NCCL_ID_FILE");
    if (hex && *hex) {
        if (strlen(hex) != 2 * RLX_COMM_ID_BYTES || !from_hex(&id, hex))
            return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_comm_from_env: RLX_NCCL_ID must be %d hex digits",
                             2 * RLX_COMM_ID_BYTES);
    } else if (file && *file) {
        if (rank == 0 && (s = rlx__nccl_unique_id(&id))) return s;
        if ((s = rlx__rendezvous_file(file, rank, world, &id, timeout))) return s;
    } else {
        return rlx__fail(
            RLX_ERR_INVALID_ARGUMENT,
            "rlx_comm_from_env: set RLX_NCCL_ID (the unique id as hex) or RLX_NCCL_ID_FILE (a path every rank sees)");
    }
    rlx_comm_params p = {.timeout_ms = timeout};
    return rlx_comm_nccl_init(&id, world, rank, local, &p, out);
}
