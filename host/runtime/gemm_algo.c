/* The GEMM algorithm cache (gemm_algo.h): bucketed keys, LRU-bounded entries, fallback over the
 * heuristic's candidates, autotuning with the device's timers. Device-independent. */
#include "runtime/gemm_algo.h"

#include <stdlib.h>
#include <string.h>

void rlx__gemm_cache_init(rlx__gemm_cache *c) {
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->lock, NULL);
}

void rlx__gemm_cache_destroy(rlx__gemm_cache *c) {
    if (c) pthread_mutex_destroy(&c->lock);
}

int64_t rlx__gemm_bucket(int64_t M) {
    if (M <= 4) return M;
    for (int64_t p = 4; p <= INT64_MAX / 4; p *= 2) {
        if (M <= p + p / 2) return M <= p ? p : p + p / 2;
    }
    return M;
}

rlx__gemm_key rlx__gemm_key_of(const rlx__gemm_desc *g) {
    rlx__gemm_key k;
    memset(&k, 0, sizeof k); /* memcmp'd: no stray bytes */
    k.M_bucket = rlx__gemm_bucket(g->M);
    k.N = g->N;
    k.K = g->K;
    k.ldx = g->ldx;
    k.ldw = g->ldw;
    k.ldc = g->c ? g->ldc : 0;
    k.ldd = g->ldd;
    k.workspace_bytes = g->workspace ? (int64_t)g->workspace_bytes : 0;
    k.in_dtype = (int)g->in_dtype;
    k.out_dtype = (int)g->out_dtype;
    k.has_bias = g->bias != NULL;
    k.has_c = g->c != NULL;
    return k;
}

/* Caller holds the lock. */
static int find(const rlx__gemm_cache *c, const rlx__gemm_key *k) {
    for (int i = 0; i < c->n; i++)
        if (!memcmp(&c->e[i].key, k, sizeof *k)) return i;
    return -1;
}

/* Inserts or, when another thread got there first, keeps the entry present. Caller holds the lock. */
static int insert(rlx__gemm_cache *c, const rlx__gemm_key *k, const rlx__gemm_algo *cand, int n) {
    int i = find(c, k);
    if (i >= 0) return i;
    if (c->n < RLX__GEMM_CACHE_CAP) {
        i = c->n++;
    } else {
        i = 0;
        for (int j = 1; j < c->n; j++)
            if (c->e[j].last_use < c->e[i].last_use) i = j;
        c->stats.evictions++;
    }
    rlx__gemm_entry *e = &c->e[i];
    memset(e, 0, sizeof *e);
    e->key = *k;
    memcpy(e->cand, cand, (size_t)n * sizeof *cand);
    e->n_cand = n;
    e->last_use = ++c->clock;
    return i;
}

static int ask(rlx__gemm_cache *c, const rlx__gemm_backend *be, rlx__device *dev, const rlx__gemm_desc *g, int64_t M,
               rlx__gemm_algo *cand) {
    rlx__gemm_desc q = *g;
    q.M = M;
    pthread_mutex_lock(&c->lock);
    c->stats.heuristic++;
    pthread_mutex_unlock(&c->lock);
    return be->heuristic(dev, &q, cand, RLX__GEMM_CANDIDATES);
}

static rlx_status no_algorithm(const rlx__gemm_desc *g, const char *why) {
    return rlx__fail(RLX_ERR_UNSUPPORTED, "no GEMM algorithm for M=%lld N=%lld K=%lld (%s in, %s out%s%s): %s",
                     (long long)g->M, (long long)g->N, (long long)g->K, g->in_dtype == RLX_K_F32 ? "f32" : "bf16",
                     g->out_dtype == RLX_K_F32 ? "f32" : "bf16", g->bias ? ", bias" : "", g->c ? ", +C" : "", why);
}

/* Runs the candidates from `first` on, wrapping around; *used is the one that ran, *refused how
 * many the library refused before it. RLX_ERR_UNSUPPORTED when every candidate was refused. */
static rlx_status run_from(const rlx__gemm_backend *be, rlx__device *dev, const rlx__gemm_desc *g, const rlx__gemm_algo *cand,
                           int n, int first, void *stream, int *used, int *refused) {
    *refused = 0;
    for (int t = 0; t < n; t++) {
        const int i = (first + t) % n;
        rlx_status s = be->run(dev, g, &cand[i], stream);
        if (s == RLX_OK) {
            *used = i;
            return RLX_OK;
        }
        if (s != RLX_ERR_UNSUPPORTED) return s;
        rlx_clear_error(); /* a refusal is not an error while another candidate remains */
        ++*refused;
    }
    return RLX_ERR_UNSUPPORTED;
}

rlx_status rlx__gemm_cache_run(rlx__gemm_cache *c, const rlx__gemm_backend *be, rlx__device *dev, const rlx__gemm_desc *g,
                               void *stream) {
    const rlx__gemm_key key = rlx__gemm_key_of(g);
    rlx__gemm_algo cand[RLX__GEMM_CANDIDATES];
    int n = 0, chosen = 0;
    pthread_mutex_lock(&c->lock);
    c->stats.gemms++;
    int at = find(c, &key);
    if (at >= 0) {
        rlx__gemm_entry *e = &c->e[at];
        n = e->n_cand;
        chosen = e->chosen;
        memcpy(cand, e->cand, (size_t)n * sizeof *cand);
        e->last_use = ++c->clock;
        e->uses++;
        c->stats.hits++;
    }
    pthread_mutex_unlock(&c->lock);
    if (at < 0) {
        /* A miss: ask at the bucket's upper edge, so the answer serves the whole bucket. */
        n = ask(c, be, dev, g, key.M_bucket, cand);
        if (n < 0) return (rlx_status)-n;
        if (n == 0 && key.M_bucket != g->M && (n = ask(c, be, dev, g, g->M, cand)) < 0) return (rlx_status)-n;
        if (n == 0) return no_algorithm(g, "the library's heuristic returned none");
        pthread_mutex_lock(&c->lock);
        at = insert(c, &key, cand, n);
        c->e[at].uses++;
        pthread_mutex_unlock(&c->lock);
    }
    int used = 0, refused = 0;
    rlx_status s = run_from(be, dev, g, cand, n, chosen, stream, &used, &refused);
    if (s == RLX_ERR_UNSUPPORTED) {
        /* Every candidate of the bucket refused this M: take the heuristic's answer for it. */
        const int n2 = ask(c, be, dev, g, g->M, cand);
        if (n2 < 0) return (rlx_status)-n2;
        int refused2 = 0;
        s = n2 ? run_from(be, dev, g, cand, n2, 0, stream, &used, &refused2) : RLX_ERR_UNSUPPORTED;
        refused += refused2;
        if (s == RLX_ERR_UNSUPPORTED) {
            pthread_mutex_lock(&c->lock);
            c->stats.fallbacks += (uint64_t)refused;
            pthread_mutex_unlock(&c->lock);
            return no_algorithm(g, "the library refused every candidate of the heuristic");
        }
        n = n2;
    }
    if (s) return s;
    if (refused || used != chosen) {
        pthread_mutex_lock(&c->lock);
        c->stats.fallbacks += (uint64_t)refused;
        const int i = find(c, &key);
        if (i >= 0) {
            /* Remember what ran, so the refused candidates are not tried first again. */
            rlx__gemm_entry *e = &c->e[i];
            memcpy(e->cand, cand, (size_t)n * sizeof *cand);
            e->n_cand = n;
            e->chosen = used;
        }
        pthread_mutex_unlock(&c->lock);
    }
    return RLX_OK;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

rlx_status rlx__gemm_cache_tune(rlx__gemm_cache *c, const rlx__gemm_backend *be, rlx__device *dev, const rlx__gemm_desc *g,
                                const rlx__gemm_timer *t, int repeat, void *stream) {
    if (repeat < 1) repeat = 1;
    /* populates the entry (and warms the library up) */
    rlx_status s = rlx__gemm_cache_run(c, be, dev, g, stream);
    if (s) return s;
    const rlx__gemm_key key = rlx__gemm_key_of(g);
    rlx__gemm_algo cand[RLX__GEMM_CANDIDATES];
    pthread_mutex_lock(&c->lock);
    int at = find(c, &key), n = 0;
    if (at >= 0) {
        n = c->e[at].n_cand;
        memcpy(cand, c->e[at].cand, (size_t)n * sizeof *cand);
    }
    pthread_mutex_unlock(&c->lock);
    if (at < 0) return RLX_OK; /* evicted meanwhile by another thread: nothing to tune */
    double med[RLX__GEMM_CANDIDATES];
    double *ms = rlx__malloc((size_t)repeat * sizeof *ms, "GEMM autotuning times");
    if (!ms) return RLX_ERR_OUT_OF_MEMORY;
    void *timer = NULL;
    if ((s = t->create(dev, repeat + 1, &timer))) {
        free(ms);
        return s;
    }
    int best = -1;
    for (int i = 0; i < n && !s; i++) {
        med[i] = -1;
        s = be->run(dev, g, &cand[i], stream); /* warmup; a refusal just drops the candidate */
        if (s == RLX_ERR_UNSUPPORTED) {
            rlx_clear_error();
            s = RLX_OK;
            continue;
        }
        for (int r = 0; r < repeat && !s; r++) {
            s = t->mark(dev, timer, r, stream);
            if (!s) s = be->run(dev, g, &cand[i], stream);
        }
        if (!s) s = t->mark(dev, timer, repeat, stream);
        if (!s) s = t->read(dev, timer, repeat + 1, ms);
        if (s) break;
        qsort(ms, (size_t)repeat, sizeof *ms, cmp_double);
        med[i] = repeat % 2 ? ms[repeat / 2] : 0.5 * (ms[repeat / 2 - 1] + ms[repeat / 2]);
        if (best < 0 || med[i] < med[best]) best = i;
    }
    t->destroy(dev, timer, repeat + 1);
    free(ms);
    if (s) return s;
    if (best < 0) return no_algorithm(g, "autotuning: the library refused every candidate");
    pthread_mutex_lock(&c->lock);
    at = find(c, &key);
    if (at >= 0) {
        rlx__gemm_entry *e = &c->e[at];
        e->chosen = best;
        e->tuned = 1;
        for (int i = 0; i < n; i++) e->tuned_ms[i] = med[i];
    }
    c->stats.tuned++;
    pthread_mutex_unlock(&c->lock);
    return RLX_OK;
}

static int by_uses_desc(const void *a, const void *b) {
    const rlx__gemm_entry *x = a, *y = b;
    return (x->uses < y->uses) - (x->uses > y->uses);
}

int rlx__gemm_cache_snapshot(rlx__gemm_cache *c, rlx__gemm_stats *stats, rlx__gemm_entry *out, int max) {
    pthread_mutex_lock(&c->lock);
    if (stats) *stats = c->stats;
    rlx__gemm_entry *all = out && max > 0 ? malloc((size_t)(c->n ? c->n : 1) * sizeof *all) : NULL;
    const int n = c->n;
    if (all) memcpy(all, c->e, (size_t)n * sizeof *all);
    pthread_mutex_unlock(&c->lock);
    if (!all) return 0;
    qsort(all, (size_t)n, sizeof *all, by_uses_desc);
    const int k = n < max ? n : max;
    memcpy(out, all, (size_t)k * sizeof *out);
    free(all);
    return k;
}
