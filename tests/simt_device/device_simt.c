/* simt device: host memory for device memory, a reference GEMM with the cuBLASLt descriptor's
 * semantics (f32 accumulation, epilogue bias, beta·C, one rounding to the output type), and the
 * rlx_simt_* launchers (the kernels/ sources compiled through the simt harness), each behind a
 * thin wrapper that can plant a numerical error in its output (rlx_simt_device_plant_error). */
#include "runtime/device.h"
#include "rlx_simt_device.h"
#include "rlx/weights.h"
#include "rlx_simt/runtime.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Copies from staging memory (host_alloc) waiting for the stream to reach them: performed at the
 * next stream operation, the latest a GPU could perform an asynchronous copy, so that a loader
 * reusing a staging buffer before its upload finished is caught (staged uploads mode). */
#define SIMT_MAX_PENDING 16
#define SIMT_MAX_STAGING 8
typedef struct pending_copy {
    void *dst;
    const void *src;
    size_t n;
} pending_copy;

struct rlx__device {
    int ordinal; /* a tp rank's simt device is its rank (planted faults can pick one) */
    rlx__gemm_cache cache; /* the same algorithm cache as cuda (runtime/gemm_algo.h) */
    pending_copy pending[SIMT_MAX_PENDING];
    int n_pending;
    pending_copy staging[SIMT_MAX_STAGING]; /* blocks from shost_alloc: dst = block, n = bytes */
    int n_staging;
};

/* Test controls (rlx_simt_device.h); process-wide, like a real device's memory. */
static size_t mem_limit, mem_used;
static int fault_countdown, fault_ordinal = -1;
static int n_algos = 3, failing_algo = -1;
static uint64_t heuristic_calls, bind_violations;
static int staged_uploads;
static pthread_mutex_t ctl_lock = PTHREAD_MUTEX_INITIALIZER;

/* The calling thread's current device, as cudaSetDevice keeps it: 0 on a fresh thread. */
static _Thread_local int current_ordinal;

void rlx_simt_device_set_memory_limit(size_t bytes) {
    pthread_mutex_lock(&ctl_lock);
    mem_limit = bytes;
    pthread_mutex_unlock(&ctl_lock);
}

void rlx_simt_device_set_staged_uploads(int on) {
    pthread_mutex_lock(&ctl_lock);
    staged_uploads = on != 0;
    pthread_mutex_unlock(&ctl_lock);
}

static int staged(void) {
    pthread_mutex_lock(&ctl_lock);
    int on = staged_uploads;
    pthread_mutex_unlock(&ctl_lock);
    return on;
}

void rlx_simt_device_plant_fault(int nth_gemm) { rlx_simt_device_plant_fault_on(-1, nth_gemm); }

void rlx_simt_device_plant_fault_on(int ordinal, int nth_gemm) {
    pthread_mutex_lock(&ctl_lock);
    fault_countdown = nth_gemm;
    fault_ordinal = ordinal;
    pthread_mutex_unlock(&ctl_lock);
}

void rlx_simt_device_set_gemm_algorithms(int n, int failing) {
    pthread_mutex_lock(&ctl_lock);
    n_algos = n < 1 ? 1 : n > RLX__GEMM_CANDIDATES ? RLX__GEMM_CANDIDATES : n;
    failing_algo = failing;
    pthread_mutex_unlock(&ctl_lock);
}

uint64_t rlx_simt_device_heuristic_calls(void) {
    pthread_mutex_lock(&ctl_lock);
    uint64_t n = heuristic_calls;
    pthread_mutex_unlock(&ctl_lock);
    return n;
}

uint64_t rlx_simt_device_bind_violations(void) {
    pthread_mutex_lock(&ctl_lock);
    uint64_t n = bind_violations;
    pthread_mutex_unlock(&ctl_lock);
    return n;
}

/* Every operation checks that the calling thread made this device current first, as a CUDA call
 * would silently run on whatever device the thread had: a missing bind at an entry point shows
 * as an error here (and in rlx_simt_device_bind_violations) instead of as wrong-device work on a
 * multi-GPU server. */
static rlx_status bound(rlx__device *d, const char *what) {
    if (current_ordinal == d->ordinal) return RLX_OK;
    pthread_mutex_lock(&ctl_lock);
    bind_violations++;
    pthread_mutex_unlock(&ctl_lock);
    return rlx__fail(RLX_ERR_DEVICE, "simt: %s on device %d from a thread whose current device is %d (an entry point did not bind its device)",
                     what, d->ordinal, current_ordinal);
}

/* Host work recorded into a graph under capture (cuBLASLt and cudaMemcpyAsync would add nodes). */
static rlx_status record(int (*fn)(void *), void *ctx, const char *what) {
    if (!ctx) return rlx__fail(RLX_ERR_OUT_OF_MEMORY, "simt: out of host memory recording %s into a graph", what);
    int rc = rlx_simt_capture_host(fn, ctx, free);
    return rc ? rlx__fail(RLX_ERR_DEVICE, "simt: recording %s into a graph failed (CUDA error %d)", what, rc) : RLX_OK;
}

/* What CUDA forbids while a stream is being captured (allocation, synchronization, events read). */
static rlx_status not_in_capture(const char *what) {
    if (!rlx_simt_capturing()) return RLX_OK;
    return rlx__fail(RLX_ERR_DEVICE, "simt: %s while a stream is being captured into a graph (CUDA invalidates the capture)", what);
}

static rlx_status sbind(rlx__device *d) {
    current_ordinal = d->ordinal;
    return RLX_OK;
}

/* ---- planted numerical errors: a wrong kernel, on purpose ------------------------------------- */

static char plant_kernel[32];
static double plant_rel;
static uint64_t plant_launch;

void rlx_simt_device_plant_error(const char *kernel, double rel) {
    pthread_mutex_lock(&ctl_lock);
    snprintf(plant_kernel, sizeof plant_kernel, "%s", kernel && rel != 0 ? kernel : "");
    plant_rel = kernel ? rel : 0;
    plant_launch = 0;
    pthread_mutex_unlock(&ctl_lock);
}

static uint64_t plant_hash(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* After a launch of `kernel`: when it is the planted one, every element of its output [rows, cols]
 * (row stride ld) becomes y·(1 ± rel), the sign a hash of the element and the launch. */
static void plant(const char *kernel, void *y, int dtype_f32, int64_t rows, int64_t cols, int64_t ld) {
    pthread_mutex_lock(&ctl_lock);
    const int on = plant_kernel[0] && !strcmp(plant_kernel, kernel);
    const double rel = plant_rel;
    const uint64_t launch = on ? plant_launch++ : 0;
    pthread_mutex_unlock(&ctl_lock);
    if (!on || !y) return;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            const int64_t i = r * ld + c;
            const float f = (plant_hash(((uint64_t)i << 20) ^ launch ^ 0x5eedull) & 1) ? (float)(1 + rel) : (float)(1 - rel);
            if (dtype_f32) ((float *)y)[i] *= f;
            else ((uint16_t *)y)[i] = rlx_f32_to_bf16(rlx_bf16_to_f32(((uint16_t *)y)[i]) * f);
        }
}

#define F32(dt) ((dt) == RLX_K_F32)

static int p_embed(void *y, const int32_t *t, const void *tab, int64_t T, int64_t H, rlx_kdtype dt, void *st) {
    int c = rlx_simt_embed(y, t, tab, T, H, dt, st);
    if (!c) plant("embed", y, F32(dt), T, H, H);
    return c;
}
static int p_rms_norm(void *y, const void *x, const void *g, int64_t rows, int64_t cols, float eps, rlx_kdtype dt, void *st) {
    int c = rlx_simt_rms_norm(y, x, g, rows, cols, eps, dt, st);
    if (!c) plant("rms_norm", y, F32(dt), rows, cols, cols);
    return c;
}
static int p_rope(void *y, const void *x, const float *ct, const float *stt, const int32_t *pos, int64_t T, int64_t heads,
                  int64_t D, int64_t ld, rlx_kdtype dt, void *st) {
    int c = rlx_simt_rope(y, x, ct, stt, pos, T, heads, D, ld, dt, st);
    if (!c) plant("rope", y, F32(dt), T, heads * D, ld);
    return c;
}
/* The generic kernel serves two plan kinds: the unfused plan's attention (q as stored) and the fused
 * plan's rope_attention (q scaled and rotated on load). */
static int p_attention(const rlx_attn_args *a, void *st) {
    int c = rlx_simt_attention(a, st);
    if (!c) plant(a->q_scale || a->rope ? "rope_attention" : "attention", a->o, F32(a->dt), a->n_tokens, a->heads * a->head_dim, a->ldo);
    return c;
}
static int p_add(void *y, const void *a, const void *b, int64_t n, rlx_kdtype dt, void *st) {
    int c = rlx_simt_add(y, a, b, n, dt, st);
    if (!c) plant("add", y, F32(dt), 1, n, n);
    return c;
}
static int p_silu_mul(void *y, const void *g, const void *u, int64_t rows, int64_t cols, int64_t ldg, int64_t ldu, rlx_kdtype dt,
                      void *st) {
    int c = rlx_simt_silu_mul(y, g, u, rows, cols, ldg, ldu, dt, st);
    if (!c) plant("silu_mul", y, F32(dt), rows, cols, cols);
    return c;
}
static int p_last_token(void *y, const void *x, const int32_t *ss, int64_t n, int64_t cols, rlx_kdtype dt, void *st) {
    int c = rlx_simt_last_token(y, x, ss, n, cols, dt, st);
    if (!c) plant("last_token", y, F32(dt), n, cols, cols);
    return c;
}
static int p_last_token_rms_norm(void *y, const void *x, const void *g, const int32_t *ss, int64_t n, int64_t cols, float eps,
                                 rlx_kdtype dt, void *st) {
    int c = rlx_simt_last_token_rms_norm(y, x, g, ss, n, cols, eps, dt, st);
    if (!c) plant("last_token_rms_norm", y, F32(dt), n, cols, cols);
    return c;
}
static int p_flash_attention(const rlx_attn_args *a, void *st) {
    int c = rlx_simt_flash_attention(a, st);
    if (!c) plant("flash_attention", a->o, F32(a->dt), a->n_tokens, a->heads * a->head_dim, a->ldo);
    return c;
}
static int p_decode_attention(const rlx_attn_args *a, void *st) {
    int c = rlx_simt_decode_attention(a, st);
    if (!c) plant("decode_attention", a->o, F32(a->dt), a->n_tokens, a->heads * a->head_dim, a->ldo);
    return c;
}
/* kv_write's output is K and V: planted into K (contiguous rows of a plain prefill; pages are the
 * caller's and left alone) */
static int p_kv_write(const rlx_kv_write_args *a, void *st) {
    int c = rlx_simt_kv_write(a, st);
    if (!c && !a->tok_page) plant("kv_write", a->dst.k, F32(a->dt), a->T, a->kv_heads * a->head_dim, a->dst.token_stride);
    return c;
}
static int p_rms_rowscale(float *s, const void *x, int64_t rows, int64_t cols, float eps, rlx_kdtype dt, void *st) {
    int c = rlx_simt_rms_rowscale(s, x, rows, cols, eps, dt, st);
    if (!c) plant("rms_rowscale", s, 1, 1, rows, rows);
    return c;
}
static int p_add_rowscale(void *y, float *s, const void *a, const void *b, int64_t rows, int64_t cols, float eps, rlx_kdtype dt,
                          void *st) {
    int c = rlx_simt_add_rowscale(y, s, a, b, rows, cols, eps, dt, st);
    if (!c) plant("add_rowscale", y, F32(dt), rows, cols, cols);
    return c;
}
static int p_embed_rowscale(void *y, float *s, const int32_t *t, const void *tab, int64_t T, int64_t H, float eps, rlx_kdtype dt,
                            void *st) {
    int c = rlx_simt_embed_rowscale(y, s, t, tab, T, H, eps, dt, st);
    if (!c) plant("embed_rowscale", y, F32(dt), T, H, H);
    return c;
}
static int p_swiglu_scaled(void *y, const void *gu, const float *s, int64_t rows, int64_t I, int64_t ld, rlx_kdtype dt, void *st) {
    int c = rlx_simt_swiglu_scaled(y, gu, s, rows, I, ld, dt, st);
    if (!c) plant("swiglu_scaled", y, F32(dt), rows, I, I);
    return c;
}
static int p_residual_rowscale(float *s, void *xb, const float *x, int64_t rows, int64_t cols, float eps, rlx_kdtype dt, void *st) {
    int c = rlx_simt_residual_rowscale(s, xb, x, rows, cols, eps, dt, st);
    if (!c) plant("residual_rowscale", xb ? xb : (void *)s, xb ? F32(dt) : 1, xb ? rows : 1, xb ? cols : rows, xb ? cols : rows);
    return c;
}
static int p_residual_add(float *y, void *yb, float *s, const float *a, const void *b, int64_t rows, int64_t cols, float eps,
                          rlx_kdtype dt, void *st) {
    int c = rlx_simt_residual_add(y, yb, s, a, b, rows, cols, eps, dt, st);
    if (!c) plant("residual_add", y, 1, rows, cols, cols), plant("residual_add", yb, F32(dt), rows, cols, cols); /* both outputs */
    return c;
}
static int p_embed_f32(float *y, void *yb, float *s, const int32_t *t, const void *tab, int64_t T, int64_t H, float eps, rlx_kdtype dt,
                       void *st) {
    int c = rlx_simt_embed_f32(y, yb, s, t, tab, T, H, eps, dt, st);
    if (!c) plant("embed_f32", y, 1, T, H, H), plant("embed_f32", yb, F32(dt), T, H, H); /* both outputs */
    return c;
}
static int p_residual_rms_norm(void *y, const float *x, const void *g, const int32_t *ss, int64_t rows, int64_t cols, float eps,
                               rlx_kdtype dt, void *st) {
    int c = rlx_simt_residual_rms_norm(y, x, g, ss, rows, cols, eps, dt, st);
    if (!c) plant("residual_rms_norm", y, F32(dt), rows, cols, cols);
    return c;
}
static int p_layer_norm(void *y, const void *x, const void *r, const void *g, const void *b, int64_t rows, int64_t cols, float eps,
                        rlx_kdtype dt, void *st) {
    int c = rlx_simt_layer_norm(y, x, r, g, b, rows, cols, eps, dt, st);
    if (!c) plant("layer_norm", y, F32(dt), rows, cols, cols);
    return c;
}
static int p_gelu(void *y, const void *x, int64_t n, rlx_kdtype dt, void *st) {
    int c = rlx_simt_gelu(y, x, n, dt, st);
    if (!c) plant("gelu", y, F32(dt), 1, n, n);
    return c;
}
static int p_gather_add(void *y, const void *x, const int32_t *ids, const void *tab, int64_t rows, int64_t cols, rlx_kdtype dt,
                        void *st) {
    int c = rlx_simt_gather_add(y, x, ids, tab, rows, cols, dt, st);
    if (!c) plant("gather_add", y, F32(dt), rows, cols, cols);
    return c;
}
static int p_slice_cols(void *y, const void *x, int64_t rows, int64_t xc, int64_t begin, int64_t width, rlx_kdtype dt, void *st) {
    int c = rlx_simt_slice_cols(y, x, rows, xc, begin, width, dt, st);
    if (!c) plant("slice_cols", y, F32(dt), rows, width, width);
    return c;
}
static int p_seq_pool(void *y, const void *x, const int32_t *ss, int64_t n, int64_t cols, int mean, rlx_kdtype dt, void *st) {
    int c = rlx_simt_seq_pool(y, x, ss, n, cols, mean, dt, st);
    if (!c) plant("seq_pool", y, F32(dt), n, cols, cols);
    return c;
}
static int p_l2_normalize(void *y, const void *x, int64_t rows, int64_t cols, rlx_kdtype dt, void *st) {
    int c = rlx_simt_l2_normalize(y, x, rows, cols, dt, st);
    if (!c) plant("l2_normalize", y, F32(dt), rows, cols, cols);
    return c;
}

/* Each block remembers its size in a header so free() can give it back to the budget. */
#define SIMT_HDR 256
#define SIMT_DEVICES 64

static rlx_status sopen(int ordinal, rlx__device **out) {
    if (ordinal < 0 || ordinal >= SIMT_DEVICES)
        return rlx__fail(RLX_ERR_NO_DEVICE, "simt device %d does not exist (%d present)", ordinal, SIMT_DEVICES);
    rlx__device *d = rlx__calloc(1, sizeof *d, "the simt device");
    if (!d) return RLX_ERR_OUT_OF_MEMORY;
    d->ordinal = ordinal;
    rlx__gemm_cache_init(&d->cache);
    current_ordinal = ordinal; /* as cuda's open: cudaSetDevice */
    *out = d;
    return RLX_OK;
}

static void sclose(rlx__device *d) {
    if (!d) return;
    bound(d, "close");
    rlx__gemm_cache_destroy(&d->cache);
    free(d);
}

static const char *describe(rlx__device *d) {
    (void)d;
    return "simt: the CUDA kernels on the CPU (test device)";
}

typedef struct poison_ctx {
    unsigned char *p;
} poison_ctx;

static void poison_range(int64_t b, int64_t e, void *arg) {
    const poison_ctx *c = arg;
    memset(c->p + (size_t)b * ((size_t)1 << 20), 0xff, (size_t)(e - b) << 20);
}

/* 0xff over n bytes: in parallel for big blocks (model weights), whose first touch is most of a
 * simt model load. */
static void poison(unsigned char *p, size_t n) {
    const size_t mib = n >> 20;
    if (mib < 64) {
        memset(p, 0xff, n);
        return;
    }
    poison_ctx c = {p};
    rlx__parallel_for((int64_t)mib, 0, poison_range, &c);
    memset(p + (mib << 20), 0xff, n - (mib << 20));
}

static rlx_status salloc(rlx__device *d, size_t bytes, const char *what, void **ptr) {
    *ptr = NULL;
    rlx_status bs = bound(d, "alloc");
    if (!bs) bs = not_in_capture("a device allocation");
    if (bs) return bs;
    /* 256-byte aligned like cudaMalloc; poisoned so a kernel that reads before writing shows. */
    size_t n = (bytes + 255) / 256 * 256;
    if (!n) n = 256;
    *ptr = NULL;
    pthread_mutex_lock(&ctl_lock);
    int over = mem_limit && mem_used + n > mem_limit;
    if (!over) mem_used += n;
    size_t used = mem_used;
    pthread_mutex_unlock(&ctl_lock);
    if (over)
        return rlx__fail(RLX_ERR_OUT_OF_MEMORY, "out of device memory: %zu bytes for %s (simt limit %zu bytes, %zu in use)", bytes,
                         what, mem_limit, used);
    unsigned char *p = aligned_alloc(256, n + SIMT_HDR);
    if (!p) {
        pthread_mutex_lock(&ctl_lock);
        mem_used -= n;
        pthread_mutex_unlock(&ctl_lock);
        return rlx__fail(RLX_ERR_OUT_OF_MEMORY, "out of (simt) device memory: %zu bytes for %s", bytes, what);
    }
    memcpy(p, &n, sizeof n);
    poison(p + SIMT_HDR, n);
    *ptr = p + SIMT_HDR;
    return RLX_OK;
}

static void sfree(rlx__device *d, void *ptr) {
    if (!ptr) return;
    bound(d, "free");
    unsigned char *p = (unsigned char *)ptr - SIMT_HDR;
    size_t n;
    memcpy(&n, p, sizeof n);
    pthread_mutex_lock(&ctl_lock);
    mem_used -= n;
    pthread_mutex_unlock(&ctl_lock);
    free(p);
}

typedef struct copy_node {
    void *dst;
    const void *src; /* NULL: a memset to `byte` */
    size_t n;
    int byte;
} copy_node;

static int copy_run(void *ctx) {
    const copy_node *c = ctx;
    if (c->src) memmove(c->dst, c->src, c->n);
    else memset(c->dst, c->byte, c->n);
    return 0;
}

/* Under capture: a copy or memset node, reading its source when the graph runs (so a graph's
 * host source must stay valid: pinned staging, as on cuda). */
static rlx_status record_copy(void *dst, const void *src, size_t n, int byte) {
    copy_node *c = malloc(sizeof *c);
    if (c) *c = (copy_node){dst, src, n, byte};
    return record(copy_run, c, src ? "a copy" : "a memset");
}

static void flush_pending(rlx__device *d) {
    for (int i = 0; i < d->n_pending; i++) memmove(d->pending[i].dst, d->pending[i].src, d->pending[i].n);
    d->n_pending = 0;
}

static int from_staging(const rlx__device *d, const void *src, size_t n) {
    const unsigned char *p = src;
    for (int i = 0; i < d->n_staging; i++) {
        const unsigned char *b = d->staging[i].dst;
        if (p >= b && p + n <= b + d->staging[i].n) return 1;
    }
    return 0;
}

static rlx_status scopy(rlx__device *d, void *dst, const void *src, size_t n, void *stream) {
    (void)stream;
    rlx_status bs = bound(d, "copy");
    if (bs) return bs;
    if (rlx_simt_capturing()) return record_copy(dst, src, n, 0);
    flush_pending(d);
    memmove(dst, src, n);
    return RLX_OK;
}

/* Host to device: in the staged-uploads mode a copy from staging memory waits for the next stream
 * operation, as an asynchronous copy may on a GPU. */
static rlx_status sh2d(rlx__device *d, void *dst, const void *src, size_t n, void *stream) {
    if (!rlx_simt_capturing() && n && staged() && from_staging(d, src, n)) {
        rlx_status bs = bound(d, "copy");
        if (bs) return bs;
        if (d->n_pending == SIMT_MAX_PENDING) flush_pending(d);
        d->pending[d->n_pending++] = (pending_copy){dst, src, n};
        return RLX_OK;
    }
    return scopy(d, dst, src, n, stream);
}

static rlx_status scopy_sync(rlx__device *d, void *dst, const void *src, size_t n, void *stream) {
    rlx_status s = not_in_capture("a synchronous device-to-host copy");
    return s ? s : scopy(d, dst, src, n, stream);
}

static rlx_status smemset(rlx__device *d, void *dst, int byte, size_t n, void *stream) {
    (void)stream;
    rlx_status bs = bound(d, "memset");
    if (bs) return bs;
    if (rlx_simt_capturing()) return record_copy(dst, NULL, n, byte);
    flush_pending(d);
    memset(dst, byte, n);
    return RLX_OK;
}

static rlx_status ssync(rlx__device *d, void *stream) {
    (void)stream;
    rlx_status s = not_in_capture("a stream synchronize");
    if (!s) s = bound(d, "synchronize");
    if (!s) flush_pending(d);
    return s;
}

static rlx_status scheck(rlx__device *d, int code, const char *what) {
    (void)d;
    if (!code) code = rlx_simt_last_status(1);
    if (!code) return RLX_OK;
    const char *msg = rlx_simt_last_error();
    /* A failed launch (deadlock, divergent barrier, bad collective) leaves partial results: treat
     * it like the GPU's sticky faults and retire the session. */
    if (code == 719 /* cudaErrorLaunchFailure */)
        return rlx__fail(RLX_ERR_SESSION_BROKEN, "simt kernel fault in %s: %s", what, *msg ? msg : "launch failure");
    return rlx__fail(RLX_ERR_DEVICE, "simt launch of %s failed with CUDA error %d%s%s", what, code, *msg ? ": " : "", msg);
}

/* ---- reference GEMM ----------------------------------------------------------------------------- */

static float ld_elem(const void *p, int64_t i, rlx_kdtype t) {
    if (t == RLX_K_F32) return ((const float *)p)[i];
    return rlx_bf16_to_f32(((const uint16_t *)p)[i]);
}

static void st_elem(void *p, int64_t i, float v, rlx_kdtype t) {
    if (t == RLX_K_F32) ((float *)p)[i] = v;
    else ((uint16_t *)p)[i] = rlx_f32_to_bf16(v);
}

typedef struct gemm_ctx {
    const rlx__gemm_desc *g;
    float *out; /* [M, N] f32 results, written back after every row is done (C may alias D) */
} gemm_ctx;

static void gemm_rows(int64_t m0, int64_t m1, void *arg) {
    const gemm_ctx *c = arg;
    const rlx__gemm_desc *g = c->g;
    float *xr = malloc((size_t)g->K * sizeof(float));
    if (!xr) return; /* out stays NaN-filled: the caller's comparison fails loudly */
    for (int64_t m = m0; m < m1; m++) {
        for (int64_t k = 0; k < g->K; k++) xr[k] = ld_elem(g->x, m * g->ldx + k, g->in_dtype);
        for (int64_t n = 0; n < g->N; n++) {
            float acc = 0.0f;
            for (int64_t k = 0; k < g->K; k++) acc += xr[k] * ld_elem(g->w, n * g->ldw + k, g->in_dtype);
            if (g->bias) acc += ld_elem(g->bias, n, g->in_dtype);
            if (g->c && g->beta != 0.0f) acc += g->beta * ld_elem(g->c, m * g->ldc + n, g->out_dtype);
            c->out[m * g->N + n] = acc;
        }
    }
    free(xr);
}

/* The cache's backend: a fake heuristic that offers n_algos "algorithms" (all the reference GEMM,
 * so every choice gives the same bits) and counts its calls; the planted failing one refuses every
 * shape, as cuBLASLt refuses an algorithm outside its range. */
static int sim_heuristic(rlx__device *d, const rlx__gemm_desc *g, rlx__gemm_algo *out, int max) {
    (void)d, (void)g;
    pthread_mutex_lock(&ctl_lock);
    heuristic_calls++;
    const int n = n_algos < max ? n_algos : max;
    pthread_mutex_unlock(&ctl_lock);
    for (int i = 0; i < n; i++) {
        memset(&out[i], 0, sizeof out[i]);
        out[i].blob[0] = (uint64_t)i;
        snprintf(out[i].name, sizeof out[i].name, "simt reference GEMM #%d", i);
    }
    return n;
}

/* The reference GEMM itself: at the call, or when a captured graph replays it. */
static rlx_status ref_gemm(int ordinal, const rlx__gemm_desc *g) {
    pthread_mutex_lock(&ctl_lock);
    int fault = fault_countdown > 0 && (fault_ordinal < 0 || fault_ordinal == ordinal) && --fault_countdown == 0;
    pthread_mutex_unlock(&ctl_lock);
    if (fault)
        return rlx__fail(RLX_ERR_SESSION_BROKEN, "simt: planted fault in a GEMM (M=%lld N=%lld K=%lld), as an illegal address would be",
                         (long long)g->M, (long long)g->N, (long long)g->K);
    size_t n = (size_t)g->M * (size_t)g->N;
    float *out = malloc((n ? n : 1) * sizeof(float));
    if (!out) return rlx__fail(RLX_ERR_OUT_OF_MEMORY, "simt GEMM: %zu bytes of scratch", n * sizeof(float));
    for (size_t i = 0; i < n; i++) out[i] = __builtin_nanf("");
    gemm_ctx c = {g, out};
    rlx__parallel_for(g->M, 0, gemm_rows, &c);
    for (int64_t m = 0; m < g->M; m++)
        for (int64_t j = 0; j < g->N; j++) st_elem(g->d, m * g->ldd + j, out[m * g->N + j], g->out_dtype);
    free(out);
    plant("gemm", g->d, g->out_dtype == RLX_K_F32, g->M, g->N, g->ldd);
    return RLX_OK;
}

typedef struct gemm_node_ctx {
    int ordinal;
    rlx__gemm_desc g;
} gemm_node_ctx;

static int gemm_node(void *ctx) {
    const gemm_node_ctx *c = ctx;
    return (int)ref_gemm(c->ordinal, &c->g);
}

static rlx_status sim_run(rlx__device *d, const rlx__gemm_desc *g, const rlx__gemm_algo *a, void *stream) {
    (void)stream;
    pthread_mutex_lock(&ctl_lock);
    const int refuse = (int64_t)a->blob[0] == failing_algo;
    pthread_mutex_unlock(&ctl_lock);
    if (refuse)
        return rlx__fail(RLX_ERR_UNSUPPORTED, "simt: GEMM algorithm #%d refused for M=%lld N=%lld K=%lld (planted)",
                         (int)a->blob[0], (long long)g->M, (long long)g->N, (long long)g->K);
    if (g->M < 0 || g->N < 1 || g->K < 1 || g->ldx < g->K || g->ldw < g->K || g->ldd < g->N || (g->c && g->ldc < g->N))
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "simt GEMM: bad descriptor M=%lld N=%lld K=%lld", (long long)g->M,
                         (long long)g->N, (long long)g->K);
    if (rlx_simt_capturing()) {
        gemm_node_ctx *kept = malloc(sizeof *kept);
        if (kept) kept->ordinal = d->ordinal, kept->g = *g;
        return record(gemm_node, kept, "a GEMM");
    }
    return ref_gemm(d->ordinal, g);
}

static const rlx__gemm_backend sim_backend = {sim_heuristic, sim_run};

static rlx_status sgemm(rlx__device *d, const rlx__gemm_desc *g, void *stream) {
    rlx_status bs = bound(d, "GEMM");
    if (bs) return bs;
    flush_pending(d);
    return rlx__gemm_cache_run(&d->cache, &sim_backend, d, g, stream);
}

static rlx__gemm_cache *sgemm_cache(rlx__device *d) { return &d->cache; }

/* ---- timers: the host clock (launches are synchronous) ------------------------------------------ */

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return 1e3 * (double)ts.tv_sec + 1e-6 * (double)ts.tv_nsec;
}

static rlx_status dev_timer_create(rlx__device *d, int n, void **timer) {
    *timer = NULL;
    rlx_status bs = bound(d, "timer");
    if (!bs) bs = not_in_capture("creating timer events");
    if (bs) return bs;
    *timer = rlx__calloc((size_t)n, sizeof(double), "simt timer marks");
    return *timer ? RLX_OK : RLX_ERR_OUT_OF_MEMORY;
}

static rlx_status dev_timer_mark(rlx__device *d, void *timer, int i, void *stream) {
    (void)stream;
    rlx_status bs = bound(d, "timer mark");
    if (bs) return bs;
    ((double *)timer)[i] = now_ms();
    return RLX_OK;
}

static rlx_status dev_timer_read(rlx__device *d, void *timer, int n, double *ms) {
    (void)d;
    rlx_status s = not_in_capture("waiting on an event");
    if (s) return s;
    const double *t = timer;
    for (int i = 0; i + 1 < n; i++) ms[i] = t[i + 1] - t[i];
    return RLX_OK;
}

static void dev_timer_destroy(rlx__device *d, void *timer, int n) {
    (void)d, (void)n;
    free(timer);
}

/* ---- graphs: the simt runtime records the launch list (rlx_simt/runtime.h) ------------------- */

static int capture_token; /* the "capture stream" handed out: any non-NULL value */

static rlx_status sgraph_begin(rlx__device *d, void **capture_stream) {
    rlx_status bs = bound(d, "a graph capture");
    if (bs) return bs;
    int rc = rlx_simt_capture_begin();
    if (rc) return rlx__fail(RLX_ERR_DEVICE, "simt: cannot begin a stream capture (CUDA error %d: one is open on this thread)", rc);
    *capture_stream = &capture_token;
    return RLX_OK;
}

static rlx_status sgraph_end(rlx__device *d, void *capture_stream, void **graph) {
    (void)d, (void)capture_stream;
    *graph = rlx_simt_capture_end();
    return *graph ? RLX_OK : rlx__fail(RLX_ERR_DEVICE, "simt: ending a stream capture that was not open");
}

static rlx_status sgraph_launch(rlx__device *d, void *graph, void *stream) {
    (void)stream;
    rlx_status bs = bound(d, "a graph launch");
    if (bs) return bs;
    int host = 0;
    const int rc = rlx_simt_graph_launch(graph, &host);
    if (!rc) return RLX_OK;
    if (host) return (rlx_status)rc; /* the node's own status, its message already recorded */
    return scheck(d, rc, "a CUDA graph replay");
}

static void sgraph_destroy(rlx__device *d, void *graph) {
    (void)d;
    rlx_simt_graph_destroy(graph);
}

/* "Page-locked" host memory: heap blocks the device remembers (the first SIMT_MAX_STAGING), so
 * that copies from them can be treated as asynchronous in the staged-uploads mode. */
static rlx_status shost_alloc(rlx__device *d, size_t bytes, const char *what, void **ptr) {
    *ptr = malloc(bytes ? bytes : 1);
    if (!*ptr) return rlx__fail(RLX_ERR_OUT_OF_MEMORY, "out of host memory: %zu bytes for %s", bytes, what);
    if (d->n_staging < SIMT_MAX_STAGING) d->staging[d->n_staging++] = (pending_copy){*ptr, NULL, bytes};
    return RLX_OK;
}

static void shost_free(rlx__device *d, void *ptr) {
    if (!ptr) return;
    flush_pending(d); /* cudaFreeHost synchronizes the device first */
    for (int i = 0; i < d->n_staging; i++)
        if (d->staging[i].dst == ptr) d->staging[i] = d->staging[--d->n_staging];
    free(ptr);
}

/* simt device memory is host memory: the weight loader converts straight into it, unless the
 * staged-uploads mode makes it go through staging memory as on cuda. */
static void *shost_view(rlx__device *d, void *ptr) {
    (void)d;
    return staged() ? NULL : ptr;
}

static const rlx__gemm_timer sim_timer = {dev_timer_create, dev_timer_mark, dev_timer_read, dev_timer_destroy};

static rlx_status sgemm_tune(rlx__device *d, const rlx__gemm_desc *g, int repeat, void *stream) {
    rlx_status bs = bound(d, "GEMM autotuning");
    if (bs) return bs;
    return rlx__gemm_cache_tune(&d->cache, &sim_backend, d, g, &sim_timer, repeat, stream);
}

static const rlx__device_ops simt_ops = {
    .name = "simt",
    .kind = RLX_DEVICE_SIMT,
    .open = sopen,
    .close = sclose,
    .describe = describe,
    .alloc = salloc,
    .free = sfree,
    .h2d = sh2d,
    .d2d = scopy,
    .d2h_sync = scopy_sync,
    .memset = smemset,
    .gemm = sgemm,
    .gemm_tune = sgemm_tune,
    .gemm_cache = sgemm_cache,
    .bind = sbind,
    .graph_begin = sgraph_begin,
    .graph_end = sgraph_end,
    .graph_launch = sgraph_launch,
    .graph_destroy = sgraph_destroy,
    .host_alloc = shost_alloc,
    .host_free = shost_free,
    .host_view = shost_view,
    .check = scheck,
    .sync = ssync,
    .timer_create = dev_timer_create,
    .timer_mark = dev_timer_mark,
    .timer_read = dev_timer_read,
    .timer_destroy = dev_timer_destroy,
    .k = RLX__KERNEL_TABLE(p_),
};

void rlx_simt_device_install(void) { rlx__device_install(&simt_ops); }
