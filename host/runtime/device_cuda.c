/* The cuda device: cudart for memory and streams, cuBLASLt for GEMMs (bf16 or f32 inputs, f32
 * accumulation, TF32 off, heuristic algorithm cached per shape), the kernels/ launchers for the
 * rest. Compiled only when the CUDA toolkit is present (RLX_HAVE_CUDA). */
#if defined(RLX_HAVE_CUDA)

#include "runtime/device.h"

#include <cublasLt.h>
#include <cuda_runtime.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GEMM_CACHE 256

typedef struct gemm_key {
    int64_t M, N, K, ldx, ldw, ldc, ldd;
    int in_dtype, out_dtype, has_bias, has_c;
} gemm_key;

typedef struct gemm_entry {
    gemm_key key;
    cublasLtMatmulAlgo_t algo;
    size_t workspace;
} gemm_entry;

struct rlx__device {
    int ordinal;
    cublasLtHandle_t lt;
    char desc[256];
    pthread_mutex_t lock; /* guards the algorithm cache: a model is shared by sessions on many threads */
    gemm_entry cache[GEMM_CACHE];
    int n_cache;
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
    pthread_mutex_init(&d->lock, NULL);
    struct cudaDeviceProp prop;
    size_t free_b = 0, total_b = 0;
    cudaGetDeviceProperties(&prop, ordinal);
    cudaMemGetInfo(&free_b, &total_b);
    int n_ = snprintf(d->desc, sizeof d->desc, "%.200s, sm_%d%d, %.1f GiB", prop.name, prop.major, prop.minor,
                      (double)total_b / (1 << 30));
    if (n_ < 0) d->desc[0] = '\0';
    *out = d;
    return RLX_OK;
}

static void dev_close(rlx__device *d) {
    if (!d) return;
    cublasLtDestroy(d->lt);
    pthread_mutex_destroy(&d->lock);
    free(d);
}

static const char *describe(rlx__device *d) { return d->desc; }

static rlx_status dalloc(rlx__device *d, size_t bytes, const char *what, void **ptr) {
    cudaSetDevice(d->ordinal);
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
    (void)d;
    if (p) cudaFree(p);
}

static rlx_status h2d(rlx__device *d, void *dst, const void *src, size_t n, void *stream) {
    (void)d;
    cudaError_t e = cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, (cudaStream_t)stream);
    return e == cudaSuccess ? RLX_OK : cuda_fail(e, "a host-to-device copy");
}

static rlx_status d2h_sync(rlx__device *d, void *dst, const void *src, size_t n, void *stream) {
    (void)d;
    cudaError_t e = cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, (cudaStream_t)stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize((cudaStream_t)stream);
    return e == cudaSuccess ? RLX_OK : cuda_fail(e, "a device-to-host copy");
}

static rlx_status dmemset(rlx__device *d, void *dst, int byte, size_t n, void *stream) {
    (void)d;
    cudaError_t e = cudaMemsetAsync(dst, byte, n, (cudaStream_t)stream);
    return e == cudaSuccess ? RLX_OK : cuda_fail(e, "a memset");
}

static rlx_status dsync(rlx__device *d, void *stream) {
    (void)d;
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

/* Row-major D[M,N] = X[M,K]·W[N,K]ᵀ is column-major Dᵀ[N,M] = op(W)·Xᵀ with op = transpose of the
 * column-major [K,N] view of W: m = N, n = M, k = K. */
static rlx_status gemm(rlx__device *d, const rlx__gemm_desc *g, void *stream) {
    cublasLtMatmulDesc_t op = NULL;
    cublasLtMatrixLayout_t la = NULL, lb = NULL, lc = NULL, ld = NULL;
    cublasLtMatmulPreference_t pref = NULL;
    rlx_status s = RLX_OK;
    cublasStatus_t st;
    const cudaDataType_t ti = cuda_type(g->in_dtype), to = cuda_type(g->out_dtype);
    const cublasOperation_t tA = CUBLAS_OP_T, tB = CUBLAS_OP_N;
    if ((st = cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F))) return lt_fail(st, "MatmulDescCreate", g);
    cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &tA, sizeof tA);
    cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tB, sizeof tB);
    if (g->bias) {
        cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
        cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi);
        cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &g->bias, sizeof g->bias);
        cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &ti, sizeof ti);
    }
    /* C has D's type: a residual in the activation dtype needs D in it too. */
    const void *c = g->c ? g->c : g->d;
    const int64_t ldc = g->c ? g->ldc : g->ldd;
    if ((st = cublasLtMatrixLayoutCreate(&la, ti, (uint64_t)g->K, (uint64_t)g->N, g->ldw)) ||
        (st = cublasLtMatrixLayoutCreate(&lb, ti, (uint64_t)g->K, (uint64_t)g->M, g->ldx)) ||
        (st = cublasLtMatrixLayoutCreate(&lc, to, (uint64_t)g->N, (uint64_t)g->M, ldc)) ||
        (st = cublasLtMatrixLayoutCreate(&ld, to, (uint64_t)g->N, (uint64_t)g->M, g->ldd))) {
        s = lt_fail(st, "MatrixLayoutCreate", g);
        goto out;
    }
    gemm_key key = {g->M, g->N, g->K, g->ldx, g->ldw, ldc, g->ldd, g->in_dtype, g->out_dtype, g->bias != NULL, g->c != NULL};
    cublasLtMatmulAlgo_t algo;
    int found = 0;
    pthread_mutex_lock(&d->lock);
    for (int i = 0; i < d->n_cache && !found; i++)
        if (!memcmp(&d->cache[i].key, &key, sizeof key) && d->cache[i].workspace <= g->workspace_bytes)
            algo = d->cache[i].algo, found = 1;
    pthread_mutex_unlock(&d->lock);
    if (!found) {
        cublasLtMatmulHeuristicResult_t res;
        int n = 0;
        size_t ws = g->workspace ? g->workspace_bytes : 0;
        cublasLtMatmulPreferenceCreate(&pref);
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
        st = cublasLtMatmulAlgoGetHeuristic(d->lt, op, la, lb, lc, ld, pref, 1, &res, &n);
        if (st || n == 0) {
            s = rlx__fail(RLX_ERR_UNSUPPORTED, "cuBLASLt has no algorithm for GEMM M=%lld N=%lld K=%lld (%s in, %s out)",
                          (long long)g->M, (long long)g->N, (long long)g->K, g->in_dtype == RLX_K_F32 ? "f32" : "bf16",
                          g->out_dtype == RLX_K_F32 ? "f32" : "bf16");
            goto out;
        }
        algo = res.algo;
        pthread_mutex_lock(&d->lock);
        if (d->n_cache < GEMM_CACHE) d->cache[d->n_cache++] = (gemm_entry){key, res.algo, res.workspaceSize};
        pthread_mutex_unlock(&d->lock);
    }
    const float alpha = 1.0f, beta = g->c ? g->beta : 0.0f;
    st = cublasLtMatmul(d->lt, op, &alpha, g->w, la, g->x, lb, &beta, c, lc, g->d, ld, &algo, g->workspace,
                        g->workspace_bytes, (cudaStream_t)stream);
    if (st) s = lt_fail(st, "Matmul", g);
out:
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (ld) cublasLtMatrixLayoutDestroy(ld);
    if (lc) cublasLtMatrixLayoutDestroy(lc);
    if (lb) cublasLtMatrixLayoutDestroy(lb);
    if (la) cublasLtMatrixLayoutDestroy(la);
    cublasLtMatmulDescDestroy(op);
    return s;
}

/* ---- timers: CUDA events -------------------------------------------------------------------------- */

static rlx_status dev_timer_create(rlx__device *d, int n, void **timer) {
    (void)d;
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
    (void)d;
    cudaError_t e = cudaEventRecord(((cudaEvent_t *)timer)[i], (cudaStream_t)stream);
    return e == cudaSuccess ? RLX_OK : cuda_fail(e, "cudaEventRecord");
}

static rlx_status dev_timer_read(rlx__device *d, void *timer, int n, double *ms) {
    (void)d;
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
    (void)d;
    cudaEvent_t *ev = timer;
    for (int i = 0; i < n; i++) cudaEventDestroy(ev[i]);
    free(ev);
}

static const rlx__device_ops cuda_ops = {
    .name = "cuda",
    .kind = RLX_DEVICE_CUDA,
    .open = dev_open,
    .close = dev_close,
    .describe = describe,
    .alloc = dalloc,
    .free = dfree,
    .h2d = h2d,
    .d2h_sync = d2h_sync,
    .memset = dmemset,
    .gemm = gemm,
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
