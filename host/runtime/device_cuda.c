/* The cuda device: cudart for memory and streams, cuBLASLt for GEMMs (bf16 or f32 inputs, f32
 * accumulation, TF32 off, algorithms from the shared cache of runtime/gemm_algo.h: bucketed M,
 * bounded, fallback over the heuristic's candidates, optional autotuning), the kernels/ launchers
 * for the rest. Compiled only when the CUDA toolkit is present (RLX_HAVE_CUDA). */
#if defined(RLX_HAVE_CUDA)

#include "runtime/device.h"

#include <cublasLt.h>
#include <cuda_runtime.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rlx__device {
    int ordinal;
    int sm_count; /* multiprocessors (cudaDeviceProp.multiProcessorCount) */
    cublasLtHandle_t lt;
    char desc[256];
    rlx__gemm_cache cache; /* algorithm per GEMM shape (runtime/gemm_algo.h) */
};

/* ---- errors ------------------------------------------------------------------------------------- */

static int sticky(cudaError_t e) {
    /* Faults that corrupt the context: every later call fails until the process resets it. */
    switch (e) {
    case cudaErrorIllegalAddress:
    case cudaErrorLaunchFailure:
    case cudaErrorHardwareStackError:
    case cudaErrorIllegalInstruction:
    case cudaErrorMisalignedAddress:
    case cudaErrorInvalidAddressSpace:
    case cudaErrorInvalidPc:
    case cudaErrorAssert:
    case cudaErrorLaunchTimeout:
    case cudaErrorECCUncorrectable:
        return 1;
    default:
        return 0;
    }
}

static rlx_status cuda_fail(cudaError_t e, const char *what) {
    if (sticky(e))
        return rlx__fail(RLX_ERR_SESSION_BROKEN, "CUDA fault in %s: %s (%s); the context is unusable", what,
                         cudaGetErrorString(e), cudaGetErrorName(e));
    cudaGetLastError(); /* clear a non-sticky error so later calls start clean */
    if (e == cudaErrorMemoryAllocation)
        return rlx__fail(RLX_ERR_OUT_OF_MEMORY, "CUDA out of memory in %s", what);
    if (e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver)
        return rlx__fail(RLX_ERR_NO_DEVICE, "no usable CUDA device: %s", cudaGetErrorString(e));
    return rlx__fail(RLX_ERR_DEVICE, "CUDA error in %s: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
}

static rlx_status check(rlx__device *d, int code, const char *what) {
    (void)d;
    cudaError_t e = code ? (cudaError_t)code : cudaPeekAtLastError();
    return e == cudaSuccess ? RLX_OK : cuda_fail(e, what);
}

/* The device is a property of the calling thread (cudaSetDevice), and servers call rlx from any
 * thread: every entry point that touches the device makes d current first. Cheap when it already
 * is (a thread-local compare in the runtime). */
static rlx_status use(rlx__device *d) {
    cudaError_t e = cudaSetDevice(d->ordinal);
    return e == cudaSuccess ? RLX_OK : cuda_fail(e, "cudaSetDevice");
}

static rlx_status bind(rlx__device *d) { return use(d); }

/* ---- lifetime ------------------------------------------------------------------------------------ */

static rlx_status dev_open(int ordinal, rlx__device **out) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        cudaGetLastError();
        return rlx__fail(RLX_ERR_NO_DEVICE, "no CUDA device: %s", e != cudaSuccess ? cudaGetErrorString(e) : "none found");
    }
    if (ordinal < 0 || ordinal >= n) return rlx__fail(RLX_ERR_NO_DEVICE, "CUDA device %d does not exist (%d present)", ordinal, n);
    if ((e = cudaSetDevice(ordinal)) != cudaSuccess) return cuda_fail(e, "cudaSetDevice");
    rlx__device *d = rlx__calloc(1, sizeof *d, "the CUDA device state");
    if (!d) return RLX_ERR_OUT_OF_MEMORY;
    d->ordinal = ordinal;
    if (cublasLtCreate(&d->lt) != CUBLAS_STATUS_SUCCESS) {
        free(d);
        return rlx__fail(RLX_ERR_DEVICE, "cublasLtCreate failed on device %d", ordinal);
    }
    rlx__gemm_cache_init(&d->cache);
    struct cudaDeviceProp prop;
    size_t free_b = 0, total_b = 0;
    if (cudaGetDeviceProperties(&prop, ordinal) != cudaSuccess) { /* described as unknown, rules take no SM count */
        memset(&prop, 0, sizeof prop);
        cudaGetLastError();
    }
    cudaMemGetInfo(&free_b, &total_b);
    d->sm_count = prop.multiProcessorCount;
    int n_ = snprintf(d->desc, sizeof d->desc, "%.200s, sm_%d%d, %.1f GiB", prop.name, prop.major, prop.minor,
                      (double)total_b / (1 << 30));
    if (n_ < 0) d->desc[0] = '\0';
    *out = d;
    return RLX_OK;
}

static void dev_close(rlx__device *d) {
    if (!d) return;
    use(d);
    cublasLtDestroy(d->lt);
    rlx__gemm_cache_destroy(&d->cache);
    free(d);
}

static const char *describe(rlx__device *d) { return d->desc; }
static int sm_count(rlx__device *d) { return d->sm_count; }

static rlx_status dalloc(rlx__device *d, size_t bytes, const char *what, void **ptr) {
    *ptr = NULL;
    rlx_status s = use(d);
    if (s) return s;
    cudaError_t e = cudaMalloc(ptr, bytes ? bytes : 1);
    if (e == cudaSuccess) return RLX_OK;
    *ptr = NULL;
    cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    if (e == cudaErrorMemoryAllocation)
        return rlx__fail(RLX_ERR_OUT_OF_MEMORY, "out of device memory: %zu bytes for %s (%zu of %zu bytes free on device %d)",
                         bytes, what, free_b, total_b, d->ordinal);
    return cuda_fail(e, what);
}

static void dfree(rlx__device *d, void *p) {
    if (!p) return;
    use(d);
    cudaFree(p);
}

static rlx_status h2d(rlx__device *d, void *dst, const void *src, size_t n, void *stream) {
    rlx_status s = use(d);
    if (s) return s;
    cudaError_t e = cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, (cudaStream_t)stream);
    return e == cudaSuccess ? RLX_OK : cuda_fail(e, "a host-to-device copy");
}

static rlx_status d2d(rlx__device *d, void *dst, const void *src, size_t n, void *stream) {
    rlx_status s = use(d);
    if (s) return s;
    cudaError_t e = cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, (cudaStream_t)stream);
    return e == cudaSuccess ? RLX_OK : cuda_fail(e, "a device-to-device copy");
}

static rlx_status d2h_sync(rlx__device *d, void *dst, const void *src, size_t n, void *stream) {
    rlx_status s = use(d);
    if (s) return s;
    cudaError_t e = cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, (cudaStream_t)stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize((cudaStream_t)stream);
    return e == cudaSuccess ? RLX_OK : cuda_fail(e, "a device-to-host copy");
}

static rlx_status dmemset(rlx__device *d, void *dst, int byte, size_t n, void *stream) {
    rlx_status s = use(d);
    if (s) return s;
    cudaError_t e = cudaMemsetAsync(dst, byte, n, (cudaStream_t)stream);
    return e == cudaSuccess ? RLX_OK : cuda_fail(e, "a memset");
}

static rlx_status dsync(rlx__device *d, void *stream) {
    rlx_status s = use(d);
    if (s) return s;
    cudaError_t e = cudaStreamSynchronize((cudaStream_t)stream);
    return e == cudaSuccess ? RLX_OK : cuda_fail(e, "a stream synchronize");
}

/* ---- GEMM ---------------------------------------------------------------------------------------- */

static cudaDataType_t cuda_type(rlx_kdtype t) { return t == RLX_K_F32 ? CUDA_R_32F : CUDA_R_16BF; }

static rlx_status lt_fail(cublasStatus_t st, const char *what, const rlx__gemm_desc *g) {
    return rlx__fail(st == CUBLAS_STATUS_ALLOC_FAILED ? RLX_ERR_OUT_OF_MEMORY : RLX_ERR_DEVICE,
                     "cuBLASLt %s failed (status %d) for GEMM M=%lld N=%lld K=%lld", what, (int)st, (long long)g->M,
                     (long long)g->N, (long long)g->K);
}

/* The cuBLASLt descriptors of one GEMM. Row-major D[M,N] = X[M,K]·W[N,K]ᵀ is column-major
 * Dᵀ[N,M] = op(W)·Xᵀ with op = transpose of the column-major [K,N] view of W: m = N, n = M, k = K. */
typedef struct lt_problem {
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, lc, ld;
} lt_problem;

static void lt_destroy(lt_problem *p) {
    if (p->ld) cublasLtMatrixLayoutDestroy(p->ld);
    if (p->lc) cublasLtMatrixLayoutDestroy(p->lc);
    if (p->lb) cublasLtMatrixLayoutDestroy(p->lb);
    if (p->la) cublasLtMatrixLayoutDestroy(p->la);
    if (p->op) cublasLtMatmulDescDestroy(p->op);
    memset(p, 0, sizeof *p);
}

static rlx_status lt_create(lt_problem *p, const rlx__gemm_desc *g) {
    memset(p, 0, sizeof *p);
    const cudaDataType_t ti = cuda_type(g->in_dtype), to = cuda_type(g->out_dtype);
    const cublasOperation_t tA = CUBLAS_OP_T, tB = CUBLAS_OP_N;
    cublasStatus_t st;
    if ((st = cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F))) return lt_fail(st, "MatmulDescCreate", g);
    cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &tA, sizeof tA);
    cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &tB, sizeof tB);
    if (g->bias) {
        cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
        cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi);
        cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &g->bias, sizeof g->bias);
        cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &ti, sizeof ti);
    }
    /* C has D's type: a residual in the activation dtype needs D in it too. */
    const int64_t ldc = g->c ? g->ldc : g->ldd;
    if ((st = cublasLtMatrixLayoutCreate(&p->la, ti, (uint64_t)g->K, (uint64_t)g->N, g->ldw)) ||
        (st = cublasLtMatrixLayoutCreate(&p->lb, ti, (uint64_t)g->K, (uint64_t)g->M, g->ldx)) ||
        (st = cublasLtMatrixLayoutCreate(&p->lc, to, (uint64_t)g->N, (uint64_t)g->M, ldc)) ||
        (st = cublasLtMatrixLayoutCreate(&p->ld, to, (uint64_t)g->N, (uint64_t)g->M, g->ldd))) {
        lt_destroy(p);
        return lt_fail(st, "MatrixLayoutCreate", g);
    }
    return RLX_OK;
}

static void algo_name(const cublasLtMatmulAlgo_t *a, char *buf, size_t n) {
    int id = -1, tile = -1, stages = -1, splitk = -1, swizzle = -1, red = -1;
    size_t w = 0;
    cublasLtMatmulAlgoConfigGetAttribute(a, CUBLASLT_ALGO_CONFIG_ID, &id, sizeof id, &w);
    cublasLtMatmulAlgoConfigGetAttribute(a, CUBLASLT_ALGO_CONFIG_TILE_ID, &tile, sizeof tile, &w);
    cublasLtMatmulAlgoConfigGetAttribute(a, CUBLASLT_ALGO_CONFIG_STAGES_ID, &stages, sizeof stages, &w);
    cublasLtMatmulAlgoConfigGetAttribute(a, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &splitk, sizeof splitk, &w);
    cublasLtMatmulAlgoConfigGetAttribute(a, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME, &red, sizeof red, &w);
    cublasLtMatmulAlgoConfigGetAttribute(a, CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING, &swizzle, sizeof swizzle, &w);
    snprintf(buf, n, "algo %d tile %d stages %d splitK %d red %d swizzle %d", id, tile, stages, splitk, red, swizzle);
}

/* The cache's backend (gemm_algo.h): cuBLASLt's heuristic, and a matmul with a given algorithm. */
static int lt_heuristic(rlx__device *d, const rlx__gemm_desc *g, rlx__gemm_algo *out, int max) {
    lt_problem p;
    rlx_status s = lt_create(&p, g);
    if (s) return -(int)s;
    cublasLtMatmulPreference_t pref = NULL;
    cublasLtMatmulHeuristicResult_t res[RLX__GEMM_CANDIDATES];
    int n = 0;
    size_t ws = g->workspace ? g->workspace_bytes : 0;
    if (max > RLX__GEMM_CANDIDATES) max = RLX__GEMM_CANDIDATES;
    cublasStatus_t st = cublasLtMatmulPreferenceCreate(&pref);
    if (!st) st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
    if (!st) st = cublasLtMatmulAlgoGetHeuristic(d->lt, p.op, p.la, p.lb, p.lc, p.ld, pref, max, res, &n);
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    lt_destroy(&p);
    if (st == CUBLAS_STATUS_NOT_SUPPORTED) return 0;
    if (st) return -(int)lt_fail(st, "AlgoGetHeuristic", g);
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (res[i].state != CUBLAS_STATUS_SUCCESS) continue;
        memset(&out[k], 0, sizeof out[k]);
        memcpy(out[k].blob, &res[i].algo, sizeof res[i].algo < sizeof out[k].blob ? sizeof res[i].algo : sizeof out[k].blob);
        out[k].workspace = res[i].workspaceSize;
        algo_name(&res[i].algo, out[k].name, sizeof out[k].name);
        k++;
    }
    return k;
}

static rlx_status lt_run(rlx__device *d, const rlx__gemm_desc *g, const rlx__gemm_algo *a, void *stream) {
    if (a->workspace > (g->workspace ? g->workspace_bytes : 0)) return RLX_ERR_UNSUPPORTED; /* not for this workspace */
    lt_problem p;
    rlx_status s = lt_create(&p, g);
    if (s) return s;
    cublasLtMatmulAlgo_t algo;
    memcpy(&algo, a->blob, sizeof algo);
    const float alpha = 1.0f, beta = g->c ? g->beta : 0.0f;
    const void *c = g->c ? g->c : g->d;
    cublasStatus_t st = cublasLtMatmul(d->lt, p.op, &alpha, g->w, p.la, g->x, p.lb, &beta, c, p.lc, g->d, p.ld, &algo,
                                       g->workspace, g->workspace_bytes, (cudaStream_t)stream);
    lt_destroy(&p);
    /* an algorithm valid for the bucket's edge but not for this M (or this workspace): the cache
     * tries the next candidate */
    if (st == CUBLAS_STATUS_NOT_SUPPORTED || st == CUBLAS_STATUS_INVALID_VALUE) return RLX_ERR_UNSUPPORTED;
    return st ? lt_fail(st, "Matmul", g) : RLX_OK;
}

static const rlx__gemm_backend lt_backend = {lt_heuristic, lt_run};

_Static_assert(sizeof(cublasLtMatmulAlgo_t) <= sizeof(((rlx__gemm_algo *)0)->blob), "cublasLtMatmulAlgo_t fits the cache's blob");

static rlx_status gemm(rlx__device *d, const rlx__gemm_desc *g, void *stream) {
    rlx_status s = use(d);
    if (s) return s;
    return rlx__gemm_cache_run(&d->cache, &lt_backend, d, g, stream);
}

static rlx__gemm_cache *gemm_cache(rlx__device *d) { return &d->cache; }

/* ---- timers: CUDA events -------------------------------------------------------------------------- */

static rlx_status dev_timer_create(rlx__device *d, int n, void **timer) {
    *timer = NULL;
    rlx_status s = use(d);
    if (s) return s;
    cudaEvent_t *ev = rlx__calloc((size_t)n, sizeof *ev, "CUDA events");
    if (!ev) return RLX_ERR_OUT_OF_MEMORY;
    for (int i = 0; i < n; i++) {
        cudaError_t e = cudaEventCreate(&ev[i]);
        if (e != cudaSuccess) {
            for (int j = 0; j < i; j++) cudaEventDestroy(ev[j]);
            free(ev);
            return cuda_fail(e, "cudaEventCreate");
        }
    }
    *timer = ev;
    return RLX_OK;
}

static rlx_status dev_timer_mark(rlx__device *d, void *timer, int i, void *stream) {
    rlx_status s = use(d);
    if (s) return s;
    cudaError_t e = cudaEventRecord(((cudaEvent_t *)timer)[i], (cudaStream_t)stream);
    return e == cudaSuccess ? RLX_OK : cuda_fail(e, "cudaEventRecord");
}

static rlx_status dev_timer_read(rlx__device *d, void *timer, int n, double *ms) {
    rlx_status s = use(d);
    if (s) return s;
    cudaEvent_t *ev = timer;
    cudaError_t e = cudaEventSynchronize(ev[n - 1]);
    if (e != cudaSuccess) return cuda_fail(e, "cudaEventSynchronize");
    for (int i = 0; i + 1 < n; i++) {
        float f = 0;
        if ((e = cudaEventElapsedTime(&f, ev[i], ev[i + 1])) != cudaSuccess) return cuda_fail(e, "cudaEventElapsedTime");
        ms[i] = f;
    }
    return RLX_OK;
}

static void dev_timer_destroy(rlx__device *d, void *timer, int n) {
    use(d);
    cudaEvent_t *ev = timer;
    for (int i = 0; i < n; i++) cudaEventDestroy(ev[i]);
    free(ev);
}

/* ---- CUDA graphs ---------------------------------------------------------------------------------- */

/* Each capture on a stream of its own, created for it: a prefill may be captured from any
 * session on any thread, and the caller's stream may be the legacy default stream, which cannot
 * be captured. ThreadLocal mode: other threads' unsafe calls do not invalidate this capture. */
static rlx_status graph_begin(rlx__device *d, void **capture_stream) {
    *capture_stream = NULL;
    rlx_status s = use(d);
    if (s) return s;
    cudaStream_t cs;
    cudaError_t e = cudaStreamCreateWithFlags(&cs, cudaStreamNonBlocking);
    if (e != cudaSuccess) return cuda_fail(e, "cudaStreamCreate (graph capture)");
    if ((e = cudaStreamBeginCapture(cs, cudaStreamCaptureModeThreadLocal)) != cudaSuccess) {
        cudaStreamDestroy(cs);
        return cuda_fail(e, "cudaStreamBeginCapture");
    }
    *capture_stream = cs;
    return RLX_OK;
}

static rlx_status graph_end(rlx__device *d, void *capture_stream, void **out) {
    *out = NULL;
    use(d);
    cudaStream_t cs = (cudaStream_t)capture_stream;
    cudaGraph_t g = NULL;
    cudaError_t e = cudaStreamEndCapture(cs, &g);
    cudaStreamDestroy(cs);
    if (e != cudaSuccess) {
        if (g) cudaGraphDestroy(g);
        return cuda_fail(e, "cudaStreamEndCapture");
    }
    cudaGraphExec_t exec = NULL;
    e = cudaGraphInstantiate(&exec, g, 0);
    cudaGraphDestroy(g);
    if (e != cudaSuccess) return cuda_fail(e, "cudaGraphInstantiate");
    *out = exec;
    return RLX_OK;
}

static rlx_status graph_launch(rlx__device *d, void *graph, void *stream) {
    rlx_status s = use(d);
    if (s) return s;
    cudaError_t e = cudaGraphLaunch((cudaGraphExec_t)graph, (cudaStream_t)stream);
    return e == cudaSuccess ? RLX_OK : cuda_fail(e, "cudaGraphLaunch");
}

static void graph_destroy(rlx__device *d, void *graph) {
    use(d);
    if (graph) cudaGraphExecDestroy((cudaGraphExec_t)graph);
}

static rlx_status host_alloc(rlx__device *d, size_t bytes, const char *what, void **ptr) {
    *ptr = NULL;
    rlx_status s = use(d);
    if (s) return s;
    cudaError_t e = cudaHostAlloc(ptr, bytes ? bytes : 1, cudaHostAllocDefault);
    if (e == cudaSuccess) return RLX_OK;
    *ptr = NULL;
    cudaGetLastError();
    return rlx__fail(e == cudaErrorMemoryAllocation ? RLX_ERR_OUT_OF_MEMORY : RLX_ERR_DEVICE,
                     "cudaHostAlloc of %zu bytes (pinned) for %s failed: %s", bytes, what, cudaGetErrorString(e));
}

static void host_free(rlx__device *d, void *ptr) {
    (void)d;
    if (ptr) cudaFreeHost(ptr);
}

static const rlx__gemm_timer lt_timer = {dev_timer_create, dev_timer_mark, dev_timer_read, dev_timer_destroy};

static rlx_status gemm_tune(rlx__device *d, const rlx__gemm_desc *g, int repeat, void *stream) {
    rlx_status s = use(d);
    if (s) return s;
    return rlx__gemm_cache_tune(&d->cache, &lt_backend, d, g, &lt_timer, repeat, stream);
}

static const rlx__device_ops cuda_ops = {
    .name = "cuda",
    .kind = RLX_DEVICE_CUDA,
    .open = dev_open,
    .close = dev_close,
    .describe = describe,
    .sm_count = sm_count,
    .alloc = dalloc,
    .free = dfree,
    .h2d = h2d,
    .d2d = d2d,
    .d2h_sync = d2h_sync,
    .memset = dmemset,
    .gemm = gemm,
    .gemm_tune = gemm_tune,
    .gemm_cache = gemm_cache,
    .bind = bind,
    .graph_begin = graph_begin,
    .graph_end = graph_end,
    .graph_launch = graph_launch,
    .graph_destroy = graph_destroy,
    .host_alloc = host_alloc,
    .host_free = host_free,
    .check = check,
    .sync = dsync,
    .timer_create = dev_timer_create,
    .timer_mark = dev_timer_mark,
    .timer_read = dev_timer_read,
    .timer_destroy = dev_timer_destroy,
    .k = RLX__KERNEL_TABLE(rlx_cuda_),
};

const rlx__device_ops *rlx__cuda_device_ops(void) { return &cuda_ops; }

#else
/* ISO C forbids an empty translation unit. */
typedef int rlx__device_cuda_unused;
#endif
