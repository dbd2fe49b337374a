// Logit soft-cap y = cap · tanh(x / cap), the custom stage of examples/softcap.c, as a CUDA
// kernel. One source, two builds (kernels/README.md): nvcc makes softcap_cuda for the cuda
// device; rlx_simt_kernels() compiles the same file as host C++ into softcap_simt, which runs the
// kernel on the CPU (one fiber per CUDA thread) for the simt test device and CI.
// Layout: [rows, cols] row-major, F32 or BF16 elements (the profile's precision.compute), f32 math.
#include "common/rlx_cuda.cuh"

#include <stdio.h>

#include "softcap.h"

__device__ __forceinline__ float sc_ld(const float *p) { return *p; }
__device__ __forceinline__ float sc_ld(const __nv_bfloat16 *p) { return __bfloat162float(*p); }
__device__ __forceinline__ void sc_st(float *p, float v) { *p = v; }
__device__ __forceinline__ void sc_st(__nv_bfloat16 *p, float v) { *p = __float2bfloat16_rn(v); }

// ---- kernel: grid-stride over every element -----------------------------------------------------
template <typename T>
__global__ void softcap_kernel(T *y, const T *x, int64_t n, float cap) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        sc_st(&y[i], cap * tanhf(sc_ld(&x[i]) / cap)); // tanhf, not a fast approximation: matches the CPU to ulps
}

// ---- launcher: validates, picks the element type, enqueues on the session's stream --------------
#if RLX_SIMT
#define SOFTCAP_LAUNCHER softcap_simt
#else
#define SOFTCAP_LAUNCHER softcap_cuda
#endif

extern "C" rlx_status SOFTCAP_LAUNCHER(const rlx_custom_args *a) {
    const softcap_params *p = (const softcap_params *)a->user;
    if (!p || !(p->cap > 0) || a->n_in != 1 || a->n_out != 1 || a->out_cols[0] != a->in_cols[0] || a->rows < 0) {
        snprintf(a->msg, a->msg_cap, "softcap: bad arguments (one input and one output of equal width, cap > 0)");
        return RLX_ERR_INVALID_ARGUMENT;
    }
    const int64_t n = a->rows * a->out_cols[0];
    if (n == 0) return RLX_OK;
    const unsigned block = 256;
    const int64_t blocks = (n + block - 1) / block;
    const dim3 grid((unsigned)(blocks > 4096 ? 4096 : blocks));
    cudaStream_t stream = (cudaStream_t)a->stream;
    cudaError_t e;
    switch (a->dtype) {
    case RLX_DTYPE_F32:
        e = rlx_launch(softcap_kernel<float>, grid, dim3(block), 0, stream, (float *)a->out[0], (const float *)a->in[0], n, p->cap);
        break;
    case RLX_DTYPE_BF16:
        e = rlx_launch(softcap_kernel<__nv_bfloat16>, grid, dim3(block), 0, stream, (__nv_bfloat16 *)a->out[0],
                       (const __nv_bfloat16 *)a->in[0], n, p->cap);
        break;
    default:
        snprintf(a->msg, a->msg_cap, "softcap: element type %s is not supported (F32, BF16)", rlx_dtype_name(a->dtype));
        return RLX_ERR_UNSUPPORTED;
    }
    if (e != cudaSuccess) {
        snprintf(a->msg, a->msg_cap, "softcap_kernel launch (%lld elements): %s", (long long)n, cudaGetErrorString(e));
        return RLX_ERR_DEVICE;
    }
    return RLX_OK;
}
