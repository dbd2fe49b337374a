/* The NCCL backend of rlx_comm (NCCL loaded with dlopen at the first NCCL call): communicators created non-blocking (ncclConfig_t.blocking = 0) so
 * that init and every enqueue can be waited on with a bound, the asynchronous error state polled
 * while a rank waits for its stream, and ncclCommAbort when a wait runs out or a peer failed — the
 * watchdog pattern of the serving stacks, without a thread of its own: the waits are the caller's
 * (rlx_comm_synchronize, rlx_session_output_to_host). Compiled with NCCL when CMake finds it
 * (RLX_HAVE_NCCL); without it every entry point says why it cannot run. */
#include "dist/comm.h"

#include <stdio.h>
#include <string.h>

#if defined(RLX_HAVE_NCCL)

#include <cuda_runtime.h>
#include <dlfcn.h>
#include <nccl.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#if NCCL_VERSION_CODE < NCCL_VERSION(2, 14, 0)
#error "rlx needs NCCL 2.14 or newer (non-blocking communicators, ncclCommFinalize)"
#endif

_Static_assert(sizeof(ncclUniqueId) == RLX_COMM_ID_BYTES, "rlx_comm_id must hold an ncclUniqueId");

const char rlx__nccl_missing[] = "NCCL is present";

/* ---- the library, loaded at the first NCCL call ------------------------------------------------------
 * librlx.so does not link libnccl: a process holds one libnccl.so.2 (the loader matches by SONAME),
 * and a hard dependency would impose rlx's on a framework that ships its own (torch). dlopen at first
 * use takes the one already in the process when there is one, else RLX_NCCL_LIBRARY, the loader's
 * search, then the library CMake found. nccl.h gives the types only. */

typedef struct nccl_api {
    ncclResult_t (*GetVersion)(int *);
    ncclResult_t (*GetUniqueId)(ncclUniqueId *);
    ncclResult_t (*CommInitRankConfig)(ncclComm_t *, int, ncclUniqueId, int, ncclConfig_t *);
    ncclResult_t (*CommGetAsyncError)(ncclComm_t, ncclResult_t *);
    const char *(*GetErrorString)(ncclResult_t);
    const char *(*GetLastError)(ncclComm_t);
    ncclResult_t (*CommAbort)(ncclComm_t);
    ncclResult_t (*CommFinalize)(ncclComm_t);
    ncclResult_t (*CommDestroy)(ncclComm_t);
    ncclResult_t (*CommCount)(const ncclComm_t, int *);
    ncclResult_t (*CommUserRank)(const ncclComm_t, int *);
    ncclResult_t (*CommCuDevice)(const ncclComm_t, int *);
    ncclResult_t (*AllReduce)(const void *, void *, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t, cudaStream_t);
    ncclResult_t (*AllGather)(const void *, void *, size_t, ncclDataType_t, ncclComm_t, cudaStream_t);
    ncclResult_t (*GroupStart)(void);
    ncclResult_t (*GroupEnd)(void);
} nccl_api;

static nccl_api N;
static int n_loaded;
static char n_error[1024];
static pthread_once_t n_once = PTHREAD_ONCE_INIT;

static void *try_open(const char *path, size_t *len) {
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h && *len < sizeof n_error) {
        const char *e = dlerror();
        *len += (size_t)snprintf(n_error + *len, sizeof n_error - *len, "%s%s", *len ? "; " : "", e ? e : path);
    }
    return h;
}

static void load_nccl(void) {
    size_t len = 0;
    const char *env = getenv("RLX_NCCL_LIBRARY");
    void *h = NULL;
    if (env && *env) {
        h = try_open(env, &len); /* named explicitly: no fallback */
    } else {
        h = try_open("libnccl.so.2", &len);
#if defined(RLX_NCCL_BUILD_LIBRARY)
        if (!h) h = try_open(RLX_NCCL_BUILD_LIBRARY, &len);
#endif
    }
    if (!h) {
        char why[sizeof n_error];
        snprintf(why, sizeof why, "%s", n_error);
        snprintf(n_error, sizeof n_error,
                 "NCCL could not be loaded (%.800s): install NCCL 2.14 or newer, or set RLX_NCCL_LIBRARY to its libnccl.so.2", why);
        return;
    }
    struct {
        void **slot;
        const char *name;
    } syms[] = {
        {(void **)&N.GetVersion, "ncclGetVersion"},
        {(void **)&N.GetUniqueId, "ncclGetUniqueId"},
        {(void **)&N.CommInitRankConfig, "ncclCommInitRankConfig"},
        {(void **)&N.CommGetAsyncError, "ncclCommGetAsyncError"},
        {(void **)&N.GetErrorString, "ncclGetErrorString"},
        {(void **)&N.GetLastError, "ncclGetLastError"},
        {(void **)&N.CommAbort, "ncclCommAbort"},
        {(void **)&N.CommFinalize, "ncclCommFinalize"},
        {(void **)&N.CommDestroy, "ncclCommDestroy"},
        {(void **)&N.CommCount, "ncclCommCount"},
        {(void **)&N.CommUserRank, "ncclCommUserRank"},
        {(void **)&N.CommCuDevice, "ncclCommCuDevice"},
        {(void **)&N.AllReduce, "ncclAllReduce"},
        {(void **)&N.AllGather, "ncclAllGather"},
        {(void **)&N.GroupStart, "ncclGroupStart"},
        {(void **)&N.GroupEnd, "ncclGroupEnd"},
    };
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++)
        if (!(*syms[i].slot = dlsym(h, syms[i].name))) {
            snprintf(n_error, sizeof n_error, "the NCCL library loaded (%s) has no %s: NCCL 2.14 or newer is needed",
                     env && *env ? env : "libnccl.so.2", syms[i].name);
            return; /* the handle stays open: dlclose under a framework that uses it could unload it */
        }
    int v = 0;
    if (N.GetVersion(&v) != ncclSuccess || v < NCCL_VERSION(2, 14, 0)) {
        snprintf(n_error, sizeof n_error, "the NCCL library loaded is version %d.%d.%d: rlx needs 2.14 or newer (non-blocking communicators)",
                 v / 10000, v / 100 % 100, v % 100);
        return;
    }
    n_loaded = 1;
}

/* RLX_OK once NCCL's functions are bound; RLX_ERR_UNSUPPORTED saying why not. */
static rlx_status nccl_load(void) {
    pthread_once(&n_once, load_nccl);
    return n_loaded ? RLX_OK : rlx__fail(RLX_ERR_UNSUPPORTED, "%s", n_error);
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return 1e3 * (double)ts.tv_sec + 1e-6 * (double)ts.tv_nsec;
}

static void nap(void) {
    /* the waits poll; a short sleep keeps a waiting rank from taking a core from the others */
    struct timespec ts = {0, 20000};
    nanosleep(&ts, NULL);
}

static rlx_status nccl_fail(ncclResult_t r, ncclComm_t comm, const char *what) {
    const char *detail = N.GetLastError(comm);
    return rlx__fail(RLX_ERR_COMM, "NCCL %s: %s%s%s", what, N.GetErrorString(r), detail && *detail ? ": " : "",
                     detail ? detail : "");
}

static ncclDataType_t nccl_type(rlx_dtype t) {
    return t == RLX_DTYPE_F32 ? ncclFloat32 : t == RLX_DTYPE_BF16 ? ncclBfloat16 : ncclFloat16;
}

/* Aborts once; keeps the first reason. Records no error. */
static void abort_comm(rlx_comm *c, const char *reason) {
    pthread_mutex_lock(&c->lock);
    if (!c->aborted) {
        c->aborted = 1;
        snprintf(c->reason, sizeof c->reason, "%s", reason);
        if (c->nccl) {
            cudaSetDevice(c->device);
            N.CommAbort((ncclComm_t)c->nccl);
        }
    }
    pthread_mutex_unlock(&c->lock);
}

static rlx_status aborted_fail(rlx_comm *c, const char *what) {
    pthread_mutex_lock(&c->lock);
    char reason[sizeof c->reason];
    memcpy(reason, c->reason, sizeof reason);
    pthread_mutex_unlock(&c->lock);
    return rlx__fail(RLX_ERR_COMM, "%s on rank %d: the tensor-parallel job was aborted: %s", what, c->rank, reason);
}

static int is_aborted(rlx_comm *c) {
    pthread_mutex_lock(&c->lock);
    int a = c->aborted;
    pthread_mutex_unlock(&c->lock);
    return a;
}

/* After a call on a non-blocking communicator: waits (bounded) until NCCL has left ncclInProgress. */
static rlx_status settle(rlx_comm *c, ncclComm_t comm, ncclResult_t r, int timeout_ms, const char *what) {
    const double deadline = now_ms() + timeout_ms;
    while (r == ncclInProgress) {
        if (now_ms() > deadline) {
            char why[512];
            snprintf(why, sizeof why, "rank %d: NCCL %s did not complete within %d ms", c->rank, what, timeout_ms);
            abort_comm(c, why);
            return rlx__fail(RLX_ERR_COMM, "%s; the communicator was aborted", why);
        }
        nap();
        if (N.CommGetAsyncError(comm, &r) != ncclSuccess) break;
    }
    if (r == ncclSuccess) return RLX_OK;
    rlx_status s = nccl_fail(r, comm, what);
    char why[512];
    snprintf(why, sizeof why, "rank %d: NCCL %s failed: %s", c->rank, what, N.GetErrorString(r));
    abort_comm(c, why);
    return s;
}

rlx_status rlx__nccl_unique_id(rlx_comm_id *out) {
    rlx_status s = nccl_load();
    if (s) return s;
    ncclUniqueId id;
    ncclResult_t r = N.GetUniqueId(&id);
    if (r != ncclSuccess) return nccl_fail(r, NULL, "ncclGetUniqueId");
    memcpy(out->bytes, &id, sizeof id);
    return RLX_OK;
}

static rlx_status check_device(int device) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        cudaGetLastError();
        return rlx__fail(RLX_ERR_NO_DEVICE, "no CUDA device: %s",
                         e != cudaSuccess ? cudaGetErrorString(e) : "none found");
    }
    if (device < 0 || device >= n)
        return rlx__fail(RLX_ERR_NO_DEVICE, "CUDA device %d does not exist (%d present)", device, n);
    return RLX_OK;
}

rlx_status rlx__nccl_init(const rlx_comm_id *id, int size, int rank, int device, int timeout_ms, rlx_comm *c) {
    rlx_status s = check_device(device);
    if (!s) s = nccl_load();
    if (s) return s;
    cudaSetDevice(device);
    ncclUniqueId uid;
    memcpy(&uid, id->bytes, sizeof uid);
    ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
    cfg.blocking = 0;
    ncclComm_t comm = NULL;
    c->rank = rank;
    c->size = size;
    c->device = device;
    ncclResult_t r = N.CommInitRankConfig(&comm, size, uid, rank, &cfg);
    if (r != ncclSuccess && r != ncclInProgress) {
        rlx_status e = nccl_fail(r, comm, "ncclCommInitRankConfig");
        if (comm) N.CommAbort(comm);
        return e;
    }
    c->nccl = comm;
    char what[160];
    snprintf(what, sizeof what, "init of rank %d of %d (every rank must start with the same world size and unique id)",
             rank, size);
    if ((s = settle(c, comm, r, timeout_ms, what))) {
        c->nccl = NULL; /* aborted: nothing left to destroy */
        return s;
    }
    c->owns_nccl = 1;
    return RLX_OK;
}

rlx_status rlx__nccl_init_all(int size, const int *devices, int timeout_ms, rlx_comm **comms) {
    for (int r = 0; r < size; r++) {
        rlx_status s = check_device(devices ? devices[r] : r);
        if (s) return s;
    }
    rlx_status ls = nccl_load();
    if (ls) return ls;
    ncclUniqueId uid;
    ncclResult_t r = N.GetUniqueId(&uid);
    if (r != ncclSuccess) return nccl_fail(r, NULL, "ncclGetUniqueId");
    ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
    cfg.blocking = 0;
    /* one thread initialising every rank: the inits must be one group */
    ncclResult_t gr = N.GroupStart();
    for (int q = 0; q < size && (gr == ncclSuccess || gr == ncclInProgress); q++) {
        rlx_comm *c = comms[q];
        c->rank = q;
        c->size = size;
        c->device = devices ? devices[q] : q;
        cudaSetDevice(c->device);
        ncclComm_t comm = NULL;
        gr = N.CommInitRankConfig(&comm, size, uid, q, &cfg);
        c->nccl = comm;
    }
    ncclResult_t ge = N.GroupEnd();
    if (gr == ncclSuccess || gr == ncclInProgress) gr = ge;
    rlx_status s = RLX_OK;
    if (gr != ncclSuccess && gr != ncclInProgress)
        s = nccl_fail(gr, NULL, "ncclCommInitRankConfig (one process, all ranks)");
    for (int q = 0; q < size && !s; q++) {
        ncclResult_t a = ncclInProgress;
        if (comms[q]->nccl) N.CommGetAsyncError((ncclComm_t)comms[q]->nccl, &a);
        s = settle(comms[q], (ncclComm_t)comms[q]->nccl, a, timeout_ms, "init (one process, all ranks)");
    }
    if (s) {
        for (int q = 0; q < size; q++) {
            abort_comm(comms[q], "init failed");
            comms[q]->nccl = NULL;
        }
        return s;
    }
    for (int q = 0; q < size; q++)
        comms[q]->owns_nccl = 1;
    return RLX_OK;
}

rlx_status rlx__nccl_wrap(void *nccl_comm, rlx_comm *c) {
    rlx_status s = nccl_load(); /* the caller's NCCL is in the process already: dlopen finds it */
    if (s) return s;
    ncclComm_t comm = (ncclComm_t)nccl_comm;
    ncclResult_t r;
    if ((r = N.CommCount(comm, &c->size)) != ncclSuccess) return nccl_fail(r, comm, "ncclCommCount");
    if ((r = N.CommUserRank(comm, &c->rank)) != ncclSuccess) return nccl_fail(r, comm, "ncclCommUserRank");
    if ((r = N.CommCuDevice(comm, &c->device)) != ncclSuccess) return nccl_fail(r, comm, "ncclCommCuDevice");
    c->nccl = comm;
    c->owns_nccl = 0;
    return RLX_OK;
}

void rlx__nccl_destroy(rlx_comm *c) {
    if (!c->nccl || !c->owns_nccl || is_aborted(c)) return;
    ncclComm_t comm = (ncclComm_t)c->nccl;
    cudaSetDevice(c->device);
    /* finalize flushes what is in flight; bounded, then destroy (or abort when it does not finish) */
    ncclResult_t r = N.CommFinalize(comm);
    const double deadline = now_ms() + c->timeout_ms;
    while (r == ncclInProgress && now_ms() < deadline) {
        nap();
        if (N.CommGetAsyncError(comm, &r) != ncclSuccess) break;
    }
    if (r == ncclSuccess)
        N.CommDestroy(comm);
    else
        N.CommAbort(comm);
    c->nccl = NULL;
}

rlx_status rlx__nccl_all_reduce(rlx_comm *c, const void *send, void *recv, size_t count, rlx_dtype dtype,
                                void *stream) {
    if (is_aborted(c)) return aborted_fail(c, "all_reduce");
    ncclComm_t comm = (ncclComm_t)c->nccl;
    ncclResult_t r = N.AllReduce(send, recv, count, nccl_type(dtype), ncclSum, comm, (cudaStream_t)stream);
    return settle(c, comm, r, c->timeout_ms, "ncclAllReduce");
}

rlx_status rlx__nccl_all_gather(rlx_comm *c, const void *send, void *recv, size_t count, rlx_dtype dtype,
                                void *stream) {
    if (is_aborted(c)) return aborted_fail(c, "all_gather");
    ncclComm_t comm = (ncclComm_t)c->nccl;
    ncclResult_t r = N.AllGather(send, recv, count, nccl_type(dtype), comm, (cudaStream_t)stream);
    return settle(c, comm, r, c->timeout_ms, "ncclAllGather");
}

rlx_status rlx__nccl_gather_cols(rlx_comm *c, const void *send, void *recv, void *staging, int64_t rows, int64_t w,
                                 int64_t total, rlx_dtype dtype, void *stream) {
    if (!staging) return rlx__fail(RLX_ERR_INTERNAL, "all_gather (columns): no staging buffer");
    rlx_status s = rlx__nccl_all_gather(c, send, staging, (size_t)(rows * w), dtype, stream);
    if (s || rows == 0) return s;
    const size_t es = dtype == RLX_DTYPE_F32 ? 4 : 2;
    /* staging is [rank][rows][w]; recv [rows][total]: one strided copy per rank's block */
    for (int q = 0; q < c->size; q++) {
        const int64_t c0 = (int64_t)q * w, n = total - c0 < w ? total - c0 : w;
        if (n <= 0) break;
        cudaError_t e = cudaMemcpy2DAsync((char *)recv + (size_t)c0 * es, (size_t)total * es,
                                          (const char *)staging + (size_t)(q * rows * w) * es, (size_t)w * es,
                                          (size_t)n * es, (size_t)rows, cudaMemcpyDeviceToDevice, (cudaStream_t)stream);
        if (e != cudaSuccess) {
            cudaGetLastError();
            return rlx__fail(RLX_ERR_DEVICE, "all_gather (columns): cudaMemcpy2DAsync of rank %d's block: %s", q,
                             cudaGetErrorString(e));
        }
    }
    return RLX_OK;
}

rlx_status rlx__nccl_synchronize(rlx_comm *c, void *stream) {
    if (is_aborted(c)) return aborted_fail(c, "synchronize");
    ncclComm_t comm = (ncclComm_t)c->nccl;
    cudaSetDevice(c->device);
    const double deadline = now_ms() + c->timeout_ms;
    for (;;) {
        cudaError_t e = cudaStreamQuery((cudaStream_t)stream);
        if (e == cudaSuccess) break;
        if (e != cudaErrorNotReady) {
            cudaGetLastError();
            char why[400];
            snprintf(why, sizeof why, "rank %d: its stream failed while waiting for the collectives: %s", c->rank,
                     cudaGetErrorString(e));
            abort_comm(c, why);
            return rlx__fail(RLX_ERR_COMM, "%s; the communicator was aborted", why);
        }
        ncclResult_t a = ncclSuccess;
        N.CommGetAsyncError(comm, &a);
        if (a != ncclSuccess && a != ncclInProgress) {
            char why[400];
            snprintf(why, sizeof why,
                     "rank %d: NCCL reported %s while waiting for the prefill's collectives (a peer rank failed?)",
                     c->rank, N.GetErrorString(a));
            abort_comm(c, why);
            return rlx__fail(RLX_ERR_COMM, "%s; the communicator was aborted", why);
        }
        if (now_ms() > deadline) {
            char why[400];
            snprintf(why, sizeof why,
                     "rank %d waited %d ms for the prefill's collectives (a peer rank failed or stopped)", c->rank,
                     c->timeout_ms);
            abort_comm(c, why);
            return rlx__fail(RLX_ERR_COMM, "%s; the communicator was aborted", why);
        }
        nap();
    }
    return rlx__nccl_check(c);
}

rlx_status rlx__nccl_abort(rlx_comm *c, const char *reason) {
    abort_comm(c, reason);
    return RLX_OK;
}

rlx_status rlx__nccl_check(rlx_comm *c) {
    if (is_aborted(c)) return aborted_fail(c, "communicator");
    ncclResult_t a = ncclSuccess;
    ncclResult_t r = N.CommGetAsyncError((ncclComm_t)c->nccl, &a);
    if (r != ncclSuccess) a = r;
    if (a == ncclSuccess || a == ncclInProgress) return RLX_OK;
    char why[400];
    snprintf(why, sizeof why, "rank %d: NCCL asynchronous error: %s", c->rank, N.GetErrorString(a));
    abort_comm(c, why);
    return rlx__fail(RLX_ERR_COMM, "%s; the communicator was aborted", why);
}

rlx_status rlx__nccl_bind(rlx_comm *c) {
    cudaError_t e = cudaSetDevice(c->device);
    if (e == cudaSuccess) return RLX_OK;
    cudaGetLastError();
    return rlx__fail(RLX_ERR_DEVICE, "rank %d: cudaSetDevice(%d): %s", c->rank, c->device, cudaGetErrorString(e));
}

rlx_status rlx__nccl_stream_create(rlx_comm *c, void **stream) {
    rlx_status s = rlx__nccl_bind(c);
    if (s) return s;
    cudaStream_t st;
    cudaError_t e = cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return rlx__fail(RLX_ERR_DEVICE, "rank %d: cudaStreamCreate on device %d: %s", c->rank, c->device,
                         cudaGetErrorString(e));
    }
    *stream = st;
    return RLX_OK;
}

void rlx__nccl_stream_destroy(rlx_comm *c, void *stream) {
    cudaSetDevice(c->device);
    cudaStreamDestroy((cudaStream_t)stream);
}

#else /* no NCCL in this build */

const char rlx__nccl_missing[] =
    "this rlx was built without NCCL (CMake found no nccl.h and libnccl: install NCCL, or set NCCL_ROOT, and rebuild), "
    "so tensor parallelism over CUDA devices is unavailable; tp = 1 and the in-process communicator still work";

static rlx_status missing(void) { return rlx__fail(RLX_ERR_UNSUPPORTED, "%s", rlx__nccl_missing); }

rlx_status rlx__nccl_unique_id(rlx_comm_id *out) {
    (void)out;
    return missing();
}
rlx_status rlx__nccl_init(const rlx_comm_id *id, int size, int rank, int device, int timeout_ms, rlx_comm *c) {
    (void)id, (void)size, (void)rank, (void)device, (void)timeout_ms, (void)c;
    return missing();
}
rlx_status rlx__nccl_init_all(int size, const int *devices, int timeout_ms, rlx_comm **comms) {
    (void)size, (void)devices, (void)timeout_ms, (void)comms;
    return missing();
}
rlx_status rlx__nccl_wrap(void *nccl_comm, rlx_comm *c) {
    (void)nccl_comm, (void)c;
    return missing();
}
void rlx__nccl_destroy(rlx_comm *c) { (void)c; }
rlx_status rlx__nccl_all_reduce(rlx_comm *c, const void *send, void *recv, size_t count, rlx_dtype dtype,
                                void *stream) {
    (void)c, (void)send, (void)recv, (void)count, (void)dtype, (void)stream;
    return missing();
}
rlx_status rlx__nccl_all_gather(rlx_comm *c, const void *send, void *recv, size_t count, rlx_dtype dtype,
                                void *stream) {
    (void)c, (void)send, (void)recv, (void)count, (void)dtype, (void)stream;
    return missing();
}
rlx_status rlx__nccl_gather_cols(rlx_comm *c, const void *send, void *recv, void *staging, int64_t rows, int64_t w,
                                 int64_t total, rlx_dtype dtype, void *stream) {
    (void)c, (void)send, (void)recv, (void)staging, (void)rows, (void)w, (void)total, (void)dtype, (void)stream;
    return missing();
}
rlx_status rlx__nccl_synchronize(rlx_comm *c, void *stream) {
    (void)c, (void)stream;
    return missing();
}
rlx_status rlx__nccl_abort(rlx_comm *c, const char *reason) {
    (void)c, (void)reason;
    return missing();
}
rlx_status rlx__nccl_check(rlx_comm *c) {
    (void)c;
    return missing();
}
rlx_status rlx__nccl_bind(rlx_comm *c) {
    (void)c;
    return missing();
}
rlx_status rlx__nccl_stream_create(rlx_comm *c, void **stream) {
    (void)c, (void)stream;
    return missing();
}
void rlx__nccl_stream_destroy(rlx_comm *c, void *stream) { (void)c, (void)stream; }

#endif
