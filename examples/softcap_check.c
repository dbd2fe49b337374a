/* The soft-cap kernel (softcap.cu) checked directly against the CPU implementation, on awkward
 * shapes, in f32 and bf16 — through the simt harness (SOFTCAP_CHECK_SIMT: the kernel runs on the
 * CPU, one fiber per CUDA thread; ctest runs it in both thread orders) or on a GPU
 * (SOFTCAP_CHECK_CUDA: exits 77, "skipped", when there is none). Outputs are poisoned with NaN
 * and followed by a guard region, so an element the kernel skips or a write past the end fails. */
#include "rlx/weights.h"
#include "softcap.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(SOFTCAP_CHECK_CUDA)
#include <cuda_runtime_api.h>
#define LAUNCHER softcap_cuda
#define WHERE "cuda"
#elif defined(SOFTCAP_CHECK_SIMT)
#define LAUNCHER softcap_simt
#define WHERE "simt"
#else
#error "define SOFTCAP_CHECK_CUDA or SOFTCAP_CHECK_SIMT"
#endif

enum { GUARD = 64 };

static void *dev_alloc(size_t bytes) {
#if defined(SOFTCAP_CHECK_CUDA)
    void *p = NULL;
    return cudaMalloc(&p, bytes) == cudaSuccess ? p : NULL;
#else
    return malloc(bytes); /* simt: device memory is host memory */
#endif
}
static void dev_free(void *p) {
#if defined(SOFTCAP_CHECK_CUDA)
    cudaFree(p);
#else
    free(p);
#endif
}
static int copy(void *dst, const void *src, size_t bytes, int to_device) {
#if defined(SOFTCAP_CHECK_CUDA)
    return cudaMemcpy(dst, src, bytes, to_device ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost) != cudaSuccess;
#else
    (void)to_device;
    memcpy(dst, src, bytes);
    return 0;
#endif
}
static int sync_device(void) {
#if defined(SOFTCAP_CHECK_CUDA)
    return cudaDeviceSynchronize() != cudaSuccess;
#else
    return 0; /* simt launches run to completion */
#endif
}

static uint64_t rng = 0x5eed;
static float uniform(void) { /* [-1, 1) */
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(rng >> 11) * 0x1.0p-52 - 1.0);
}

/* Runs one shape and dtype; returns 0 when the kernel matches the CPU reference. */
static int check(int64_t rows, int64_t cols, rlx_dtype dt, float cap) {
    const size_t n = (size_t)rows * (size_t)cols, es = rlx_dtype_size(dt);
    float *x = malloc(n * sizeof *x), *want = malloc(n * sizeof *want), *got = malloc(n * sizeof *got);
    unsigned char *hx = malloc(n * es), *hy = malloc((n + GUARD) * es);
    void *dx = dev_alloc(n * es), *dy = dev_alloc((n + GUARD) * es);
    int bad = !x || !want || !got || !hx || !hy || !dx || !dy;
    for (size_t i = 0; !bad && i < n; i++) {
        x[i] = 4.0f * cap * uniform();
        if (dt == RLX_DTYPE_BF16) { /* the reference sees the same bf16-rounded inputs */
            uint16_t b = rlx_f32_to_bf16(x[i]);
            memcpy(hx + 2 * i, &b, 2);
            x[i] = rlx_bf16_to_f32(b);
        } else {
            memcpy(hx + 4 * i, &x[i], 4);
        }
    }
    softcap_params p = {cap};
    char msg[256] = "";
    int64_t in_rows = rows;
    rlx_dtype in_dt = RLX_DTYPE_F32;
    if (!bad) { /* the CPU reference, through the same argument block the executors build */
        const void *in[1] = {x};
        void *out[1] = {want};
        rlx_custom_args a = {.device = RLX_DEVICE_CPU, .dtype = RLX_DTYPE_F32, .rows = rows, .n_out = 1, .out = out,
                             .out_cols = &cols, .n_in = 1, .in = in, .in_rows = &in_rows, .in_cols = &cols, .in_dtype = &in_dt,
                             .user = &p, .msg = msg, .msg_cap = sizeof msg};
        bad = softcap_cpu(&a) != RLX_OK;
    }
    memset(hy, 0xff, (n + GUARD) * es); /* NaN in f32 and bf16 */
    bad = bad || copy(dx, hx, n * es, 1) || copy(dy, hy, (n + GUARD) * es, 1);
    rlx_status s = RLX_OK;
    if (!bad) {
        const void *in[1] = {dx};
        void *out[1] = {dy};
        in_dt = dt;
        rlx_custom_args a = {.device = WHERE[0] == 'c' ? RLX_DEVICE_CUDA : RLX_DEVICE_SIMT, .dtype = dt, .rows = rows, .n_out = 1,
                             .out = out, .out_cols = &cols, .n_in = 1, .in = in, .in_rows = &in_rows, .in_cols = &cols,
                             .in_dtype = &in_dt, .user = &p, .msg = msg, .msg_cap = sizeof msg};
        s = LAUNCHER(&a);
        bad = s != RLX_OK || sync_device() || copy(hy, dy, (n + GUARD) * es, 0);
    }
    double num = 0, den = 0, maxd = 0;
    for (size_t i = 0; !bad && i < n; i++) {
        if (dt == RLX_DTYPE_BF16) {
            uint16_t b;
            memcpy(&b, hy + 2 * i, 2);
            got[i] = rlx_bf16_to_f32(b);
        } else {
            memcpy(&got[i], hy + 4 * i, 4);
        }
        if (!isfinite(got[i])) {
            fprintf(stderr, "softcap %s [%lld, %lld] %s: element %zu is %g (not written?)\n", WHERE, (long long)rows,
                    (long long)cols, rlx_dtype_name(dt), i, got[i]);
            bad = 1;
            break;
        }
        double d = (double)got[i] - want[i];
        num += d * d;
        den += (double)want[i] * want[i];
        if (fabs(d) > maxd) maxd = fabs(d);
    }
    for (size_t i = n * es; !bad && i < (n + GUARD) * es; i++)
        if (hy[i] != 0xff) {
            fprintf(stderr, "softcap %s [%lld, %lld] %s: write past the end (guard byte %zu)\n", WHERE, (long long)rows,
                    (long long)cols, rlx_dtype_name(dt), i - n * es);
            bad = 1;
        }
    /* f32: a few ulps of tanhf; bf16: the output rounding (NUMERICS.md: elementwise NMSE <= 1e-5) */
    const double nmse = den > 0 ? num / den : num, bound = dt == RLX_DTYPE_BF16 ? 1e-5 : 1e-12;
    if (!bad && !(nmse <= bound)) {
        fprintf(stderr, "softcap %s [%lld, %lld] %s: NMSE %.3g > %.0e (max |diff| %.3g, seed 0x5eed)\n", WHERE, (long long)rows,
                (long long)cols, rlx_dtype_name(dt), nmse, bound, maxd);
        bad = 1;
    }
    if (s != RLX_OK) fprintf(stderr, "softcap %s: launcher failed: %s\n", WHERE, msg);
    if (!bad) printf("softcap %s [%5lld, %5lld] %-4s NMSE %.2e  max|diff| %.2e\n", WHERE, (long long)rows, (long long)cols,
                     rlx_dtype_name(dt), nmse, maxd);
    free(x);
    free(want);
    free(got);
    free(hx);
    free(hy);
    dev_free(dx);
    dev_free(dy);
    return bad;
}

int main(void) {
#if defined(SOFTCAP_CHECK_CUDA)
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count < 1) {
        printf("SKIP: no CUDA device, the soft-cap kernel was not run on a GPU\n");
        return 77;
    }
#endif
    static const int64_t shapes[][2] = {{1, 1}, {1, 128256}, {3, 1001}, {17, 129}, {2, 4097}};
    int failures = 0;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        failures += check(shapes[i][0], shapes[i][1], RLX_DTYPE_F32, 1.5f);
        failures += check(shapes[i][0], shapes[i][1], RLX_DTYPE_BF16, 30.0f);
    }
    /* an element type the kernel does not have is refused with a reason, not run */
    softcap_params p = {1.0f};
    int64_t one = 1;
    rlx_dtype f16 = RLX_DTYPE_F16;
    char msg[256] = "";
    float buf[2] = {0, 0};
    const void *in[1] = {buf};
    void *out[1] = {buf + 1};
    rlx_custom_args a = {.dtype = RLX_DTYPE_F16, .rows = 1, .n_out = 1, .out = out, .out_cols = &one, .n_in = 1, .in = in,
                         .in_rows = &one, .in_cols = &one, .in_dtype = &f16, .user = &p, .msg = msg, .msg_cap = sizeof msg};
    if (LAUNCHER(&a) != RLX_ERR_UNSUPPORTED || !strstr(msg, "F16")) {
        fprintf(stderr, "softcap %s: f16 was not refused (%s)\n", WHERE, msg);
        failures++;
    }
    if (failures) fprintf(stderr, "softcap %s: %d check(s) failed\n", WHERE, failures);
    return failures ? 1 : 0;
}
