// SwiGLU activation of the fused LLaMA MLP (ARCHITECTURE.md): gate and up are one GEMM on the raw
// residual rows (γ of the post-attention norm folded into [Wg; Wu]), so the norm's per-token scale
// s[r] is applied here, where the GEMM output is next read:
//   y[r, c] = silu(s[r]·g[r, c]) · (s[r]·u[r, c]),   silu(x) = x / (1 + e^-x)
// Layout: gu [rows, ld_gu] packed GEMM output, gate at columns [0, I), up at [I, 2I); s f32 [rows]
// (NULL = 1); y [rows, I] dense. bf16 or f32 activations, f32 math.
// Memory-bound: one read of 2·I and one write of I values per row. A 2-D grid (x: column chunks,
// y: rows, both grid-stride) so that short and long rows alike fill the machine without a 64-bit
// division per element; 16-byte accesses when I, ld_gu and the pointers allow, elements otherwise.
// Limits: sizes < 2^62.
#include "rlx_dtype.cuh"

#define RLX_SW_THREADS 256

static __device__ __forceinline__ void rlx_sw_ld16(const __nv_bfloat16 *p, float v[8]) {
    const uint4 u = *reinterpret_cast<const uint4 *>(p);
    const uint32_t w[4] = {u.x, u.y, u.z, u.w};
    for (int i = 0; i < 4; i++) {
        v[2 * i] = __uint_as_float(w[i] << 16); // bf16 is the top half of an f32
        v[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
    }
}
static __device__ __forceinline__ void rlx_sw_ld16(const float *p, float v[4]) {
    const float4 u = *reinterpret_cast<const float4 *>(p);
    v[0] = u.x, v[1] = u.y, v[2] = u.z, v[3] = u.w;
}
static __device__ __forceinline__ void rlx_sw_st16(__nv_bfloat16 *p, const float v[8]) {
    uint32_t w[4];
    for (int i = 0; i < 4; i++) w[i] = rlx_pack_bf16x2(__float2bfloat16_rn(v[2 * i]), __float2bfloat16_rn(v[2 * i + 1]));
    *reinterpret_cast<uint4 *>(p) = make_uint4(w[0], w[1], w[2], w[3]);
}
static __device__ __forceinline__ void rlx_sw_st16(float *p, const float v[4]) {
    *reinterpret_cast<float4 *>(p) = make_float4(v[0], v[1], v[2], v[3]);
}

// The CPU reference's expression (rlx__ref_silu_mul) on the scaled inputs; expf, not __expf, so
// simt and the GPU differ only by contraction and libm ulps.
static __device__ __forceinline__ float rlx_sw_act(float g, float u, float s) {
    const float x = s * g;
    return x / (1.0f + expf(-x)) * (s * u);
}

template <typename T>
__global__ void __launch_bounds__(RLX_SW_THREADS)
    rlx_swiglu_scaled_kernel(T *y, const T *gu, const float *s, int64_t rows, int64_t I, int64_t ld_gu, int vec) {
    constexpr int V = 16 / sizeof(T);
    const int64_t chunks = vec ? I / V : I; // per row
    for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
        const float sr = s ? s[r] : 1.0f;
        const T *g = gu + r * ld_gu, *u = g + I;
        T *yr = y + r * I;
        for (int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; c < chunks;
             c += (int64_t)gridDim.x * blockDim.x) {
            if (vec) {
                float vg[V], vu[V];
                rlx_sw_ld16(g + c * V, vg);
                rlx_sw_ld16(u + c * V, vu);
                for (int k = 0; k < V; k++) vg[k] = rlx_sw_act(vg[k], vu[k], sr);
                rlx_sw_st16(yr + c * V, vg);
            } else {
                rlx_st(&yr[c], rlx_sw_act(rlx_ld(&g[c]), rlx_ld(&u[c]), sr));
            }
        }
    }
}

extern "C" int RLX_KNAME(swiglu_scaled)(void *y, const void *gu, const float *s, int64_t rows, int64_t I,
                                        int64_t ld_gu, rlx_kdtype dt, void *stream) {
    if (!y || !gu || rows < 0 || I < 1 || ld_gu < 2 * I) return (int)cudaErrorInvalidValue;
    if (rows == 0) return 0;
    const int64_t esz = dt == RLX_K_F32 ? 4 : 2, V = 16 / esz;
    const int vec = (I * esz) % 16 == 0 && (ld_gu * esz) % 16 == 0 && ((uintptr_t)y & 15u) == 0 &&
                    ((uintptr_t)gu & 15u) == 0;
    const int64_t chunks = vec ? I / V : I;
    // x: enough blocks for a row (at most 16, the loop covers the rest); y: rows, so that the grid
    // holds at most rlx_grid_for's 4096 blocks.
    int64_t gx = (chunks + RLX_SW_THREADS - 1) / RLX_SW_THREADS;
    gx = gx > 16 ? 16 : gx;
    int64_t gy = 4096 / gx;
    gy = gy > rows ? rows : gy > 65535 ? 65535 : gy;
    RLX_DISPATCH_DT(dt, {
        return (int)rlx_launch(rlx_swiglu_scaled_kernel<T>, dim3((unsigned)gx, (unsigned)gy), dim3(RLX_SW_THREADS),
                               0, (cudaStream_t)stream, (T *)y, (const T *)gu, s, rows, I, ld_gu, vec);
    });
}
