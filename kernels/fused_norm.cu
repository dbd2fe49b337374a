// Row scales for the fused LLaMA plan (ARCHITECTURE.md, "RMSNorm → QKV without a normalized
// tensor"): s[t] = 1/sqrt(mean(x[t]²) + eps) in f32, computed by whichever kernel already reads or
// writes the row, so a norm costs one float per token and the GEMM after it runs on the raw rows.
//   rms_rowscale    s of an existing x                                   (reads x)
//   add_rowscale    y = a + b and s of y, one pass                       (reads a, b; writes y)
//   embed_rowscale  y = table[tokens] and s of y, one pass               (reads table rows; writes y)
//   scale_rows      y = γ·(x·s) per row: materialises rms_norm(x)·γ where a fallback needs it
// Layout: x, y, a, b [rows, cols] dense, activation dtype (bf16 or f32); s f32 [rows]; γ [cols].
// One warp per row (no block barriers), 16-byte vector accesses when every row start is 16-byte
// aligned (cols·sizeof(elem) % 16 == 0 and aligned base pointers), element loops otherwise; grid-
// stride over rows. Each lane reads and writes the same elements, so y may alias a or b (or x).
// The sum of squares is taken over the values as stored (rounded to the activation dtype), so s
// matches what an rms_norm run on the stored y would compute. Limits: rows < 2^62; token ids are
// validated on the host before launch (as for embed).
#include "rlx_dtype.cuh"

#define RLX_FN_WARPS 8 // rows per block (one warp each)

// ---- 16-byte vectors: 8 bf16 or 4 f32 in f32 registers -----------------------------------------
static __device__ __forceinline__ void rlx_fn_ld16(const __nv_bfloat16 *p, float v[8]) {
    const uint4 u = *reinterpret_cast<const uint4 *>(p);
    const uint32_t w[4] = {u.x, u.y, u.z, u.w};
    for (int i = 0; i < 4; i++) {
        v[2 * i] = __uint_as_float(w[i] << 16); // bf16 is the top half of an f32
        v[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
    }
}
static __device__ __forceinline__ void rlx_fn_ld16(const float *p, float v[4]) {
    const float4 u = *reinterpret_cast<const float4 *>(p);
    v[0] = u.x, v[1] = u.y, v[2] = u.z, v[3] = u.w;
}
static __device__ __forceinline__ void rlx_fn_st16(__nv_bfloat16 *p, const float v[8]) {
    uint32_t w[4];
    for (int i = 0; i < 4; i++) w[i] = rlx_pack_bf16x2(__float2bfloat16_rn(v[2 * i]), __float2bfloat16_rn(v[2 * i + 1]));
    *reinterpret_cast<uint4 *>(p) = make_uint4(w[0], w[1], w[2], w[3]);
}
static __device__ __forceinline__ void rlx_fn_st16(float *p, const float v[4]) {
    *reinterpret_cast<float4 *>(p) = make_float4(v[0], v[1], v[2], v[3]);
}
// The value as it will be stored in T (what a later reader of y sees).
static __device__ __forceinline__ float rlx_fn_round(const __nv_bfloat16 *, float v) {
    return __bfloat162float(__float2bfloat16_rn(v));
}
static __device__ __forceinline__ float rlx_fn_round(const float *, float v) { return v; }

static __device__ __forceinline__ float rlx_fn_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
// sqrtf and the division are IEEE-rounded on the GPU (rsqrtf is not), so s is within an ulp or
// two of the f64 reference.
static __device__ __forceinline__ float rlx_fn_scale(float ss, int64_t cols, float eps) {
    return 1.0f / sqrtf(ss / (float)cols + eps);
}

// ---- s[r] = 1/sqrt(mean(x[r]²) + eps) ----------------------------------------------------------
template <typename T>
__global__ void __launch_bounds__(RLX_FN_WARPS * 32)
    rlx_rms_rowscale_kernel(float *s, const T *x, int64_t rows, int64_t cols, float eps, int vec) {
    constexpr int V = 16 / sizeof(T);
    const int lane = threadIdx.x & 31;
    const int64_t nwarps = (int64_t)gridDim.x * RLX_FN_WARPS;
    for (int64_t r = (int64_t)blockIdx.x * RLX_FN_WARPS + (threadIdx.x >> 5); r < rows; r += nwarps) {
        const T *xr = x + r * cols;
        float ss = 0.0f;
        if (vec) {
#pragma unroll 4
            for (int64_t c = (int64_t)lane * V; c < cols; c += 32 * V) {
                float v[V];
                rlx_fn_ld16(xr + c, v);
                for (int k = 0; k < V; k++) ss += v[k] * v[k];
            }
        } else {
            for (int64_t c = lane; c < cols; c += 32) {
                const float v = rlx_ld(&xr[c]);
                ss += v * v;
            }
        }
        ss = rlx_fn_warp_sum(ss);
        if (lane == 0) s[r] = rlx_fn_scale(ss, cols, eps);
    }
}

// ---- y = a + b, s of y ---------------------------------------------------------------------------
template <typename T>
__global__ void __launch_bounds__(RLX_FN_WARPS * 32)
    rlx_add_rowscale_kernel(T *y, float *s, const T *a, const T *b, int64_t rows, int64_t cols, float eps, int vec) {
    constexpr int V = 16 / sizeof(T);
    const int lane = threadIdx.x & 31;
    const int64_t nwarps = (int64_t)gridDim.x * RLX_FN_WARPS;
    for (int64_t r = (int64_t)blockIdx.x * RLX_FN_WARPS + (threadIdx.x >> 5); r < rows; r += nwarps) {
        const T *ar = a + r * cols, *br = b + r * cols;
        T *yr = y + r * cols;
        float ss = 0.0f;
        if (vec) {
#pragma unroll 2
            for (int64_t c = (int64_t)lane * V; c < cols; c += 32 * V) {
                float va[V], vb[V];
                rlx_fn_ld16(ar + c, va);
                rlx_fn_ld16(br + c, vb);
                for (int k = 0; k < V; k++) {
                    va[k] = rlx_fn_round(yr, va[k] + vb[k]);
                    ss += va[k] * va[k];
                }
                rlx_fn_st16(yr + c, va);
            }
        } else {
            for (int64_t c = lane; c < cols; c += 32) {
                const float v = rlx_fn_round(yr, rlx_ld(&ar[c]) + rlx_ld(&br[c]));
                rlx_st(&yr[c], v);
                ss += v * v;
            }
        }
        ss = rlx_fn_warp_sum(ss);
        if (lane == 0) s[r] = rlx_fn_scale(ss, cols, eps);
    }
}

// ---- y[t] = table[tokens[t]], s of y --------------------------------------------------------------
template <typename T>
__global__ void __launch_bounds__(RLX_FN_WARPS * 32) rlx_embed_rowscale_kernel(T *y, float *s, const int32_t *tokens,
                                                                             const T *table, int64_t rows,
                                                                             int64_t cols, float eps, int vec) {
    constexpr int V = 16 / sizeof(T);
    const int lane = threadIdx.x & 31;
    const int64_t nwarps = (int64_t)gridDim.x * RLX_FN_WARPS;
    for (int64_t r = (int64_t)blockIdx.x * RLX_FN_WARPS + (threadIdx.x >> 5); r < rows; r += nwarps) {
        const T *xr = table + (int64_t)tokens[r] * cols;
        T *yr = y + r * cols;
        float ss = 0.0f;
        if (vec) {
#pragma unroll 4
            for (int64_t c = (int64_t)lane * V; c < cols; c += 32 * V) {
                float v[V];
                rlx_fn_ld16(xr + c, v);
                rlx_fn_st16(yr + c, v); // T -> f32 -> T is exact: the gather copies the bits
                for (int k = 0; k < V; k++) ss += v[k] * v[k];
            }
        } else {
            for (int64_t c = lane; c < cols; c += 32) {
                yr[c] = xr[c];
                const float v = rlx_ld(&xr[c]);
                ss += v * v;
            }
        }
        ss = rlx_fn_warp_sum(ss);
        if (lane == 0) s[r] = rlx_fn_scale(ss, cols, eps);
    }
}

// ---- y[r, :] = γ·(x[r, :]·s[r]) ------------------------------------------------------------------
template <typename T>
__global__ void __launch_bounds__(RLX_FN_WARPS * 32)
    rlx_scale_rows_kernel(T *y, const T *x, const float *s, const T *gamma, int64_t rows, int64_t cols, int vec) {
    constexpr int V = 16 / sizeof(T);
    const int lane = threadIdx.x & 31;
    const int64_t nwarps = (int64_t)gridDim.x * RLX_FN_WARPS;
    for (int64_t r = (int64_t)blockIdx.x * RLX_FN_WARPS + (threadIdx.x >> 5); r < rows; r += nwarps) {
        const T *xr = x + r * cols;
        T *yr = y + r * cols;
        const float sr = s[r];
        if (vec) {
#pragma unroll 2
            for (int64_t c = (int64_t)lane * V; c < cols; c += 32 * V) {
                float v[V], g[V];
                rlx_fn_ld16(xr + c, v);
                if (gamma) rlx_fn_ld16(gamma + c, g);
                // the order of rms_norm: γ · (x · s)
                for (int k = 0; k < V; k++) v[k] = gamma ? g[k] * (v[k] * sr) : v[k] * sr;
                rlx_fn_st16(yr + c, v);
            }
        } else {
            for (int64_t c = lane; c < cols; c += 32) {
                const float v = rlx_ld(&xr[c]) * sr;
                rlx_st(&yr[c], gamma ? rlx_ld(&gamma[c]) * v : v);
            }
        }
    }
}

// ---- launchers -----------------------------------------------------------------------------------
static inline int rlx_fn_aligned(const void *p) { return ((uintptr_t)p & 15u) == 0; }

// 16-byte accesses need every row start aligned: the base pointers and the row length in bytes.
static inline int rlx_fn_vec(rlx_kdtype dt, int64_t cols, const void *p0, const void *p1, const void *p2) {
    const int64_t esz = dt == RLX_K_F32 ? 4 : 2;
    return (cols * esz) % 16 == 0 && rlx_fn_aligned(p0) && rlx_fn_aligned(p1) && rlx_fn_aligned(p2);
}

static inline unsigned rlx_fn_grid(int64_t rows) { return rlx_grid_for(rows, RLX_FN_WARPS); }

extern "C" int RLX_KNAME(rms_rowscale)(float *s, const void *x, int64_t rows, int64_t cols, float eps, rlx_kdtype dt,
                                       void *stream) {
    if (!s || !x || rows < 0 || cols < 1 || !(eps > 0.0f)) return (int)cudaErrorInvalidValue;
    if (rows == 0) return 0;
    const int vec = rlx_fn_vec(dt, cols, x, x, x);
    RLX_DISPATCH_DT(dt, {
        return (int)rlx_launch(rlx_rms_rowscale_kernel<T>, dim3(rlx_fn_grid(rows)), dim3(RLX_FN_WARPS * 32), 0,
                               (cudaStream_t)stream, s, (const T *)x, rows, cols, eps, vec);
    });
}

extern "C" int RLX_KNAME(add_rowscale)(void *y, float *s, const void *a, const void *b, int64_t rows, int64_t cols,
                                       float eps, rlx_kdtype dt, void *stream) {
    if (!y || !s || !a || !b || rows < 0 || cols < 1 || !(eps > 0.0f)) return (int)cudaErrorInvalidValue;
    if (rows == 0) return 0;
    const int vec = rlx_fn_vec(dt, cols, y, a, b);
    RLX_DISPATCH_DT(dt, {
        return (int)rlx_launch(rlx_add_rowscale_kernel<T>, dim3(rlx_fn_grid(rows)), dim3(RLX_FN_WARPS * 32), 0,
                               (cudaStream_t)stream, (T *)y, s, (const T *)a, (const T *)b, rows, cols, eps, vec);
    });
}

extern "C" int RLX_KNAME(embed_rowscale)(void *y, float *s, const int32_t *tokens, const void *table, int64_t T_,
                                         int64_t H, float eps, rlx_kdtype dt, void *stream) {
    if (!y || !s || !tokens || !table || T_ < 0 || H < 1 || !(eps > 0.0f)) return (int)cudaErrorInvalidValue;
    if (T_ == 0) return 0;
    const int vec = rlx_fn_vec(dt, H, y, table, table);
    RLX_DISPATCH_DT(dt, {
        return (int)rlx_launch(rlx_embed_rowscale_kernel<T>, dim3(rlx_fn_grid(T_)), dim3(RLX_FN_WARPS * 32), 0,
                               (cudaStream_t)stream, (T *)y, s, tokens, (const T *)table, T_, H, eps, vec);
    });
}

extern "C" int RLX_KNAME(scale_rows)(void *y, const void *x, const float *s, const void *gamma, int64_t rows,
                                     int64_t cols, rlx_kdtype dt, void *stream) {
    if (!y || !x || !s || rows < 0 || cols < 1) return (int)cudaErrorInvalidValue;
    if (rows == 0) return 0;
    const int vec = rlx_fn_vec(dt, cols, y, x, gamma ? gamma : x);
    RLX_DISPATCH_DT(dt, {
        return (int)rlx_launch(rlx_scale_rows_kernel<T>, dim3(rlx_fn_grid(rows)), dim3(RLX_FN_WARPS * 32), 0,
                               (cudaStream_t)stream, (T *)y, (const T *)x, s, (const T *)gamma, rows, cols, vec);
    });
}
