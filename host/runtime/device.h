/* Device interface: what a device implementation provides to the generic executor.
 *
 * Two implementations: cuda (cudart + cuBLASLt, host/device_cuda.c, kernels built by nvcc) and
 * simt (test device: host memory, a reference GEMM with the same descriptor semantics, and the
 * same kernel sources run through the simt harness; tests/simt). The executor
 * (host/device_exec.c) runs a kernel plan through this table and never knows which it has.
 */
#ifndef RLX_HOST_DEVICE_H
#define RLX_HOST_DEVICE_H

#include "plan.h"
#include "model/stages.h"
#include "runtime/gemm_algo.h" /* rlx__gemm_desc, the algorithm cache */

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rlx__device rlx__device;

/* The kernel launchers of one backend (rlx_cuda_* or rlx_simt_*). */
typedef struct rlx__kernel_table {
    int (*embed)(void *, const int32_t *, const void *, int64_t, int64_t, rlx_kdtype, void *);
    int (*rms_norm)(void *, const void *, const void *, int64_t, int64_t, float, rlx_kdtype, void *);
    int (*rope)(void *, const void *, const float *, const float *, const int32_t *, int64_t, int64_t, int64_t,
                int64_t, rlx_kdtype, void *);
    int (*attention)(const rlx_attn_args *, void *);
    int (*add)(void *, const void *, const void *, int64_t, rlx_kdtype, void *);
    int (*silu_mul)(void *, const void *, const void *, int64_t, int64_t, int64_t, int64_t, rlx_kdtype, void *);
    int (*last_token)(void *, const void *, const int32_t *, int64_t, int64_t, rlx_kdtype, void *);
    /* fused kernels (kernels/rlx_kernels.h) */
    int (*last_token_rms_norm)(void *, const void *, const void *, const int32_t *, int64_t, int64_t, float, rlx_kdtype,
                               void *);
    int (*flash_attention)(const rlx_attn_args *, void *);
    int (*decode_attention)(const rlx_attn_args *, void *);
    int (*kv_write)(const rlx_kv_write_args *, void *);
    int (*rms_rowscale)(float *, const void *, int64_t, int64_t, float, rlx_kdtype, void *);
    int (*add_rowscale)(void *, float *, const void *, const void *, int64_t, int64_t, float, rlx_kdtype, void *);
    int (*embed_rowscale)(void *, float *, const int32_t *, const void *, int64_t, int64_t, float, rlx_kdtype, void *);
    int (*swiglu_scaled)(void *, const void *, const float *, int64_t, int64_t, int64_t, rlx_kdtype, void *);
    /* the f32 residual stream (precision.mixed = "auto") */
    int (*residual_rowscale)(float *, void *, const float *, int64_t, int64_t, float, rlx_kdtype, void *);
    int (*residual_add)(float *, void *, float *, const float *, const void *, int64_t, int64_t, float, rlx_kdtype, void *);
    int (*embed_f32)(float *, void *, float *, const int32_t *, const void *, int64_t, int64_t, float, rlx_kdtype, void *);
    int (*residual_rms_norm)(void *, const float *, const void *, const int32_t *, int64_t, int64_t, float, rlx_kdtype, void *);
    /* encoder primitives */
    int (*layer_norm)(void *, const void *, const void *, const void *, const void *, int64_t, int64_t, float, rlx_kdtype,
                      void *);
    int (*gelu)(void *, const void *, int64_t, rlx_kdtype, void *);
    int (*gather_add)(void *, const void *, const int32_t *, const void *, int64_t, int64_t, rlx_kdtype, void *);
    int (*slice_cols)(void *, const void *, int64_t, int64_t, int64_t, int64_t, rlx_kdtype, void *);
    int (*seq_pool)(void *, const void *, const int32_t *, int64_t, int64_t, int, rlx_kdtype, void *);
    int (*l2_normalize)(void *, const void *, int64_t, int64_t, rlx_kdtype, void *);
} rlx__kernel_table;

/* The full table of one backend's launchers, named by prefix (rlx_cuda_ or rlx_simt_). */
#define RLX__KERNEL_TABLE(P)                                                                           \
    {                                                                                                 \
        .embed = P##embed, .rms_norm = P##rms_norm, .rope = P##rope, .attention = P##attention,       \
        .add = P##add, .silu_mul = P##silu_mul, .last_token = P##last_token,                          \
        .last_token_rms_norm = P##last_token_rms_norm, .flash_attention = P##flash_attention,          \
        .decode_attention = P##decode_attention, .kv_write = P##kv_write,                             \
        .rms_rowscale = P##rms_rowscale, .add_rowscale = P##add_rowscale,                             \
        .embed_rowscale = P##embed_rowscale, .swiglu_scaled = P##swiglu_scaled,                       \
        .residual_rowscale = P##residual_rowscale, .residual_add = P##residual_add,                   \
        .embed_f32 = P##embed_f32, .residual_rms_norm = P##residual_rms_norm,                         \
        .layer_norm = P##layer_norm, .gelu = P##gelu, .gather_add = P##gather_add,                    \
        .slice_cols = P##slice_cols, .seq_pool = P##seq_pool, .l2_normalize = P##l2_normalize,        \
    }

typedef struct rlx__device_ops {
    const char *name;
    rlx_device_kind kind;
    /* Opens device `ordinal`; RLX_ERR_NO_DEVICE when there is none. */
    rlx_status (*open)(int ordinal, rlx__device **out);
    void (*close)(rlx__device *d);
    /* Describes the device ("NVIDIA H100 80GB HBM3, sm_90, 79.1 GiB"). */
    const char *(*describe)(rlx__device *d);
    /* Optional (NULL: unknown): the device's multiprocessors, for kernel rules that size a grid
     * against one wave (flash_attention's tile, rlx_flash_tile). */
    int (*sm_count)(rlx__device *d);
    rlx_status (*alloc)(rlx__device *d, size_t bytes, const char *what, void **ptr);
    void (*free)(rlx__device *d, void *ptr);
    /* Optional (NULL: none): a host pointer through which device memory at ptr can be written
     * directly (simt, where device memory is host memory), NULL where there is none; the weight
     * loader then converts straight into it instead of staging. */
    void *(*host_view)(rlx__device *d, void *ptr);
    /* Copies; h2d/d2d are stream-ordered; d2h synchronizes the stream (its name says so). */
    rlx_status (*h2d)(rlx__device *d, void *dst, const void *src, size_t bytes, void *stream);
    rlx_status (*d2d)(rlx__device *d, void *dst, const void *src, size_t bytes, void *stream);
    rlx_status (*d2h_sync)(rlx__device *d, void *dst, const void *src, size_t bytes, void *stream);
    rlx_status (*memset)(rlx__device *d, void *dst, int byte, size_t bytes, void *stream);
    rlx_status (*gemm)(rlx__device *d, const rlx__gemm_desc *g, void *stream);
    /* Autotunes g's shape (rlx__gemm_cache_tune over the device's candidates and timers). */
    rlx_status (*gemm_tune)(rlx__device *d, const rlx__gemm_desc *g, int repeat, void *stream);
    /* The device's GEMM algorithm cache, for statistics and the bench's list of chosen algorithms. */
    rlx__gemm_cache *(*gemm_cache)(rlx__device *d);
    /* Makes d the calling thread's current device (cudaSetDevice): the executor calls it at every
     * entry point, since servers call from any thread; the device's own operations do it too. */
    rlx_status (*bind)(rlx__device *d);
    /* Maps a launcher's return code (and any sticky fault) to a status with a message naming
     * what was running. Sticky faults (illegal address…) return RLX_ERR_SESSION_BROKEN. */
    rlx_status (*check)(rlx__device *d, int code, const char *what);
    rlx_status (*sync)(rlx__device *d, void *stream);
    /* Timers for the bench's per-kernel breakdown: n + 1 marks recorded on the stream (CUDA
     * events on cuda); read synchronizes and gives ms[i] = mark[i+1] − mark[i]. A one-mark timer
     * is a fence: mark records it on the stream, read waits until the stream got there. */
    rlx_status (*timer_create)(rlx__device *d, int n_marks, void **timer);
    rlx_status (*timer_mark)(rlx__device *d, void *timer, int i, void *stream);
    rlx_status (*timer_read)(rlx__device *d, void *timer, int n_marks, double *ms);
    void (*timer_destroy)(rlx__device *d, void *timer, int n_marks);
    /* CUDA graphs (profile kernels.cuda_graphs). begin opens a stream capture on a stream of its
     * own (*capture_stream: enqueue there; nothing runs until a launch); end closes it and gives
     * the instantiated graph (or, after a failure in between, discards it and fails). launch
     * replays a graph on a stream. simt records its launch list and replays it. */
    rlx_status (*graph_begin)(rlx__device *d, void **capture_stream);
    rlx_status (*graph_end)(rlx__device *d, void *capture_stream, void **graph);
    rlx_status (*graph_launch)(rlx__device *d, void *graph, void *stream);
    void (*graph_destroy)(rlx__device *d, void *graph);
    /* Page-locked host memory (cudaHostAlloc): copies from it are asynchronous DMA, the only kind
     * of host source a graph may hold; the weight loader stages its uploads in it (NULL: malloc). */
    rlx_status (*host_alloc)(rlx__device *d, size_t bytes, const char *what, void **ptr);
    void (*host_free)(rlx__device *d, void *ptr);
    rlx__kernel_table k;
} rlx__device_ops;

/* Registry: cuda is compiled in when the toolkit is; simt when a program links the simt device
 * library and installs it. */
const rlx__device_ops *rlx__device_ops_for(rlx_device_kind kind);
void rlx__device_install(const rlx__device_ops *ops);
#if defined(RLX_HAVE_CUDA)
const rlx__device_ops *rlx__cuda_device_ops(void);
#endif

/* ---- executor state (held by rlx_model / rlx_session) ------------------------------------------ */

typedef struct rlx__dev_model {
    const rlx__device_ops *ops;
    rlx__device *dev;
    int ordinal;      /* the device's ordinal (rlx_build_params.cuda_device) */
    int sm_count;     /* its multiprocessors (ops->sm_count; 0 = unknown) */
    rlx__plan plan;
    void **wptr;      /* [n_weights + derived] device copies (NULL for weights no kernel reads) */
    int n_wptr;
    void **cptr;      /* [n_values] constant values (rope tables), else NULL */
    size_t n_cptr;
    size_t weight_bytes;
    unsigned char *positions_buf; /* [plan.n_buf]: 1 for a buffer upload_positions writes, which is
                                     meta's positions (uploaded with the batch) */
} rlx__dev_model;

/* Plans for the device and uploads every weight a kernel reads (converted to act, packed weights
 * with γ folded), reporting checkpoint bytes through progress (may be NULL). */
rlx_status rlx__dev_model_prepare(rlx_model *m, rlx_device_kind kind, int ordinal, rlx_fusion_policy policy,
                                  rlx_kdtype act, rlx__load_progress *progress);
void rlx__dev_model_free(rlx__dev_model *dm);
/* Tests: the most bytes converted per chunk (0 = the default, 64 MiB). */
void rlx__set_load_chunk_bytes(size_t bytes);

/* CUDA graphs of a session: one per (token bucket, sequence count), least recently used evicted. */
#define RLX__GRAPH_CAP 16

typedef struct rlx__graph_entry {
    int64_t tokens;   /* rows the graph runs: the bucket's edge, at most the capacity */
    int64_t seqs;
    void *graph;
    uint64_t last_use;
} rlx__graph_entry;

typedef struct rlx__graph_stats {
    uint64_t captures, replays, evictions, direct; /* direct: prefills run kernel by kernel */
} rlx__graph_stats;

typedef struct rlx__dev_session {
    void *arena;      /* activations at capacity */
    void *meta;       /* tokens [max_tokens] i32, positions [max_tokens] i32, seq_start [max_seqs+1] i32 */
    void *host_meta[2]; /* pinned staging of meta, used in turn; fence[i] is recorded after its copy */
    void *fence[2];
    int fenced[2], slot;
    void *workspace;  /* GEMM workspace, profile kernels.gemm_workspace_mb (NULL when 0) */
    void *kv_meta;    /* KV calls: kv_len [n], page indptr [n+1], tok_page [T], page indices, i32 (NULL
                         when the model has no KV layers) */
    size_t kv_meta_bytes;
    void *attn_work;  /* decode_attention's split-KV partials (NULL when no attention can use it) */
    size_t attn_work_bytes;
    int broken;       /* a sticky device fault happened */
    rlx__graph_entry graphs[RLX__GRAPH_CAP];
    int n_graphs;
    uint64_t clock;
    rlx__graph_stats gstats;
} rlx__dev_session;

rlx_status rlx__dev_session_create(const rlx_model *m, rlx__dev_session *s);
void rlx__dev_session_free(const rlx_model *m, rlx__dev_session *s);
/* Enqueues one prefill on stream. With kernel_ms non-NULL ([plan.n] doubles), times every kernel
 * (synchronizes at the end). */
rlx_status rlx__dev_prefill(const rlx_model *m, rlx__dev_session *s, const rlx__batch *b, void *stream,
                            double *kernel_ms);
void rlx__dev_graph_stats(const rlx__dev_session *s, rlx__graph_stats *out);
/* The output where it lives: its buffer and element type (no copy, no synchronization). */
const void *rlx__dev_output_ptr(const rlx_model *m, const rlx__dev_session *s, rlx_dtype *dtype);
/* Copies the output to host (synchronizes the stream). */
rlx_status rlx__dev_output(const rlx_model *m, rlx__dev_session *s, float *dst, int64_t rows, int64_t cols,
                           void *stream);

#ifdef __cplusplus
}
#endif

#endif
