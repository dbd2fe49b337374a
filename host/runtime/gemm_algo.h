/* The GEMM algorithm cache: which library algorithm runs each GEMM shape, shared by the cuda device
 * (cuBLASLt's heuristic and algorithms) and the simt device (a fake heuristic with the same
 * contract), so the cache's bounds, eviction and fallback are tested in CI without a GPU.
 *
 * Key: the GEMM's shape with M bucketed (M and the prompt length vary per prefill; N, K, the
 * leading dimensions, dtypes, bias/C and the workspace limit do not), so a server that has seen
 * any number of prompt lengths holds at most one entry per (bucket, shape). Buckets: M exact up to
 * 4, then 2^k and 1.5·2^k (6, 8, 12, 16, 24, …): two per octave, 20 up to 1,000 tokens and 39 up
 * to 2^20. A bucket is (previous edge, edge] with edge / previous edge <= 1.5, so an algorithm the
 * heuristic chose at the edge runs shapes at most a third smaller than the one it was chosen for.
 *
 * Entry: up to RLX__GEMM_CANDIDATES heuristic results, best first, and the index of the one in use.
 * A candidate the library refuses for the actual M (an algorithm is valid for a range of shapes,
 * not all) is skipped for the next; when all are refused the heuristic is asked again for the exact
 * M and the entry takes its answer. Bounded: RLX__GEMM_CACHE_CAP entries, least recently used
 * evicted. Thread-safe (a model, and so its device, is shared by sessions on many threads); the
 * heuristic and the GEMM itself run outside the lock.
 *
 * Autotuning (profile kernels.gemm_autotune): rlx__gemm_cache_tune times every candidate of one
 * shape with the device's timers (CUDA events on cuda) and makes the fastest the one in use.
 */
#ifndef RLX_HOST_GEMM_ALGO_H
#define RLX_HOST_GEMM_ALGO_H

#include "core/internal.h"
#include "rlx_kernels.h" /* rlx_kdtype */

#include <pthread.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rlx__device rlx__device; /* runtime/device.h */

#define RLX__GEMM_CANDIDATES 4
#define RLX__GEMM_CACHE_CAP 128

/* D[M, N] = X[M, K] · W[N, K]ᵀ (+ bias[N]) (+ beta · C[M, N]); row-major with leading
 * dimensions in elements; X, W, bias, C in in_dtype; D in out_dtype; f32 accumulation.
 * C may alias D (the residual add folded into the GEMM). */
typedef struct rlx__gemm_desc {
    int64_t M, N, K;
    const void *x;
    int64_t ldx;
    const void *w;
    int64_t ldw;
    const void *bias;
    const void *c;
    int64_t ldc;
    float beta;
    void *d;
    int64_t ldd;
    rlx_kdtype in_dtype, out_dtype;
    void *workspace;          /* caller-owned (the session's), may be NULL */
    size_t workspace_bytes;
} rlx__gemm_desc;

/* One library algorithm: opaque bytes (cublasLtMatmulAlgo_t is 64), the workspace it needs, and a
 * printable name ("cfg 23 tile 15 stages 20 splitK 1 swizzle 0"). */
typedef struct rlx__gemm_algo {
    uint64_t blob[8];
    size_t workspace;
    char name[64];
} rlx__gemm_algo;

typedef struct rlx__gemm_key {
    int64_t M_bucket, N, K, ldx, ldw, ldc, ldd;
    int64_t workspace_bytes;
    int in_dtype, out_dtype, has_bias, has_c;
} rlx__gemm_key;

typedef struct rlx__gemm_entry {
    rlx__gemm_key key;
    rlx__gemm_algo cand[RLX__GEMM_CANDIDATES];
    int n_cand;
    int chosen;          /* index into cand of the algorithm in use */
    int tuned;           /* chosen by timing (rlx__gemm_cache_tune) */
    double tuned_ms[RLX__GEMM_CANDIDATES]; /* median time of each candidate when tuned (<0: failed) */
    uint64_t last_use;   /* LRU stamp */
    uint64_t uses;
} rlx__gemm_entry;

typedef struct rlx__gemm_stats {
    uint64_t gemms;      /* GEMMs run through the cache */
    uint64_t hits;       /* of them, found in the cache */
    uint64_t heuristic;  /* heuristic queries (misses, and re-queries after every candidate failed) */
    uint64_t fallbacks;  /* candidates refused by the library and skipped */
    uint64_t evictions;
    uint64_t tuned;      /* shapes timed by rlx__gemm_cache_tune */
} rlx__gemm_stats;

/* What a device provides to the cache. */
typedef struct rlx__gemm_backend {
    /* Up to max algorithms for g's shape (g->M is the bucket's upper edge), best first; returns
     * how many (0 = none: the shape is unsupported) or a negative rlx_status after rlx__fail. */
    int (*heuristic)(rlx__device *dev, const rlx__gemm_desc *g, rlx__gemm_algo *out, int max);
    /* Runs g with algorithm a on stream: RLX_OK; RLX_ERR_UNSUPPORTED when the library refuses the
     * algorithm for this shape (the cache tries the next); any other status is a real failure. */
    rlx_status (*run)(rlx__device *dev, const rlx__gemm_desc *g, const rlx__gemm_algo *a, void *stream);
} rlx__gemm_backend;

typedef struct rlx__gemm_cache {
    pthread_mutex_t lock;
    rlx__gemm_entry e[RLX__GEMM_CACHE_CAP];
    int n;
    uint64_t clock;
    rlx__gemm_stats stats;
} rlx__gemm_cache;

void rlx__gemm_cache_init(rlx__gemm_cache *c);
void rlx__gemm_cache_destroy(rlx__gemm_cache *c);

/* The bucket of M: its upper edge (M itself for M <= 4; else the smallest 2^k or 1.5·2^k >= M). */
int64_t rlx__gemm_bucket(int64_t M);
rlx__gemm_key rlx__gemm_key_of(const rlx__gemm_desc *g);

/* Runs g through the cache: look up (or ask the heuristic), run the candidate in use, fall back to
 * the next on refusal. */
rlx_status rlx__gemm_cache_run(rlx__gemm_cache *c, const rlx__gemm_backend *be, rlx__device *dev, const rlx__gemm_desc *g,
                               void *stream);

/* Times every candidate of g's shape (warmup 1, then `repeat` GEMMs each between two timer marks;
 * the median per candidate) and makes the fastest the one in use. The timers are the device's
 * (rlx__device_ops timer_*: CUDA events on cuda). */
typedef struct rlx__gemm_timer {
    rlx_status (*create)(rlx__device *dev, int n_marks, void **timer);
    rlx_status (*mark)(rlx__device *dev, void *timer, int i, void *stream);
    rlx_status (*read)(rlx__device *dev, void *timer, int n_marks, double *ms);
    void (*destroy)(rlx__device *dev, void *timer, int n_marks);
} rlx__gemm_timer;

rlx_status rlx__gemm_cache_tune(rlx__gemm_cache *c, const rlx__gemm_backend *be, rlx__device *dev, const rlx__gemm_desc *g,
                                const rlx__gemm_timer *t, int repeat, void *stream);

/* A copy of the statistics and of up to max entries (most used first); returns how many. */
int rlx__gemm_cache_snapshot(rlx__gemm_cache *c, rlx__gemm_stats *stats, rlx__gemm_entry *out, int max);

#ifdef __cplusplus
}
#endif

#endif
