// Element access for rlx kernels: activations are bf16 or f32; math is always f32.
#ifndef RLX_KERNELS_DTYPE_CUH
#define RLX_KERNELS_DTYPE_CUH

#include "common/rlx_cuda.cuh"
#include "rlx_kernels.h"

__device__ __forceinline__ float rlx_ld(const float *p) { return *p; }
__device__ __forceinline__ float rlx_ld(const __nv_bfloat16 *p) { return __bfloat162float(*p); }
__device__ __forceinline__ void rlx_st(float *p, float v) { *p = v; }
__device__ __forceinline__ void rlx_st(__nv_bfloat16 *p, float v) { *p = __float2bfloat16_rn(v); }

// Grid-stride launches: enough blocks to fill a large GPU, few enough that simt stays quick.
static inline unsigned rlx_grid_for(int64_t n, unsigned block) {
    int64_t b = (n + block - 1) / block;
    return (unsigned)(b < 1 ? 1 : b > 4096 ? 4096 : b);
}

// Calls body<T>() with T = __nv_bfloat16 or float according to dt.
#define RLX_DISPATCH_DT(dt, ...)                          \
    do {                                                  \
        if ((dt) == RLX_K_BF16) {                         \
            typedef __nv_bfloat16 T;                      \
            __VA_ARGS__                                   \
        } else if ((dt) == RLX_K_F32) {                   \
            typedef float T;                              \
            __VA_ARGS__                                   \
        } else {                                          \
            return (int)cudaErrorInvalidValue;            \
        }                                                 \
    } while (0)

#endif
