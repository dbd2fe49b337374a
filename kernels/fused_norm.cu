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
//
// The f32 residual stream (precision.mixed = "auto", docs/numerics.md): the stream x is f32 and a
// GEMM that reads it needs a bf16 operand, so the kernel that already touches the row also writes
// that operand (xb, "the shadow") and s, taken over the f32 values:
//   embed_f32          y32 = table[tokens] (exact), xb = the same rows in T, s     (reads table rows)
//   residual_rowscale  xb = x32 rounded to T, s                                     (reads x32)
//   residual_add       y32 = a32 + b (b in T: a GEMM's or an all_reduce's output), xb, s
// xb and s may each be NULL (not both for residual_rowscale: that would do nothing). 4-element
// vectors (16 bytes of f32, 8 of bf16) when cols % 4 == 0 and every base pointer is 16-byte
// aligned; element loops otherwise.
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

// ---- the f32 residual stream: 4-element vectors ---------------------------------------------------
static __device__ __forceinline__ void rlx_fn_ld4(const float *p, float v[4]) {
    const float4 u = *reinterpret_cast<const float4 *>(p);
    v[0] = u.x, v[1] = u.y, v[2] = u.z, v[3] = u.w;
}
static __device__ __forceinline__ void rlx_fn_ld4(const __nv_bfloat16 *p, float v[4]) {
    const uint2 u = *reinterpret_cast<const uint2 *>(p);
    v[0] = __uint_as_float(u.x << 16), v[1] = __uint_as_float(u.x & 0xffff0000u);
    v[2] = __uint_as_float(u.y << 16), v[3] = __uint_as_float(u.y & 0xffff0000u);
}
static __device__ __forceinline__ void rlx_fn_st4(float *p, const float v[4]) {
    *reinterpret_cast<float4 *>(p) = make_float4(v[0], v[1], v[2], v[3]);
}
static __device__ __forceinline__ void rlx_fn_st4(__nv_bfloat16 *p, const float v[4]) {
    *reinterpret_cast<uint2 *>(p) = make_uint2(rlx_pack_bf16x2(__float2bfloat16_rn(v[0]), __float2bfloat16_rn(v[1])),
                                               rlx_pack_bf16x2(__float2bfloat16_rn(v[2]), __float2bfloat16_rn(v[3])));
}

// ---- xb = x rounded to T, s of x (x f32) ------------------------------------------------------------
template <typename T>
__global__ void __launch_bounds__(RLX_FN_WARPS * 32)
    rlx_residual_rowscale_kernel(float *s, T *xb, const float *x, int64_t rows, int64_t cols, float eps, int vec) {
    const int lane = threadIdx.x & 31;
    const int64_t nwarps = (int64_t)gridDim.x * RLX_FN_WARPS;
    for (int64_t r = (int64_t)blockIdx.x * RLX_FN_WARPS + (threadIdx.x >> 5); r < rows; r += nwarps) {
        const float *xr = x + r * cols;
        T *br = xb ? xb + r * cols : NULL;
        float ss = 0.0f;
        if (vec && br) {
#pragma unroll 2
            for (int64_t c = (int64_t)lane * 4; c < cols; c += 32 * 4) {
                float v[4];
                rlx_fn_ld4(xr + c, v);
                for (int k = 0; k < 4; k++) ss += v[k] * v[k];
                rlx_fn_st4(br + c, v);
            }
        } else if (vec) {
#pragma unroll 4
            for (int64_t c = (int64_t)lane * 4; c < cols; c += 32 * 4) {
                float v[4];
                rlx_fn_ld4(xr + c, v);
                for (int k = 0; k < 4; k++) ss += v[k] * v[k];
            }
        } else {
            for (int64_t c = lane; c < cols; c += 32) {
                const float v = xr[c];
                ss += v * v;
                if (br) rlx_st(&br[c], v);
            }
        }
        ss = rlx_fn_warp_sum(ss);
        if (s && lane == 0) s[r] = rlx_fn_scale(ss, cols, eps);
    }
}

// ---- y = a + b (y, a f32; b in T), xb = y rounded to T, s of y --------------------------------------
template <typename T>
__global__ void __launch_bounds__(RLX_FN_WARPS * 32) rlx_residual_add_kernel(float *y, T *yb, float *s, const float *a, const T *b,
                                                                           int64_t rows, int64_t cols, float eps, int vec) {
    const int lane = threadIdx.x & 31;
    const int64_t nwarps = (int64_t)gridDim.x * RLX_FN_WARPS;
    for (int64_t r = (int64_t)blockIdx.x * RLX_FN_WARPS + (threadIdx.x >> 5); r < rows; r += nwarps) {
        const float *ar = a + r * cols;
        const T *brow = b + r * cols;
        float *yr = y + r * cols;
        T *ybr = yb ? yb + r * cols : NULL;
        float ss = 0.0f;
        if (vec) {
#pragma unroll 2
            for (int64_t c = (int64_t)lane * 4; c < cols; c += 32 * 4) {
                float va[4], vb[4];
                rlx_fn_ld4(ar + c, va);
                rlx_fn_ld4(brow + c, vb);
                for (int k = 0; k < 4; k++) {
                    va[k] += vb[k];
                    ss += va[k] * va[k];
                }
                rlx_fn_st4(yr + c, va);
                if (ybr) rlx_fn_st4(ybr + c, va);
            }
        } else {
            for (int64_t c = lane; c < cols; c += 32) {
                const float v = ar[c] + rlx_ld(&brow[c]);
                yr[c] = v;
                if (ybr) rlx_st(&ybr[c], v);
                ss += v * v;
            }
        }
        ss = rlx_fn_warp_sum(ss);
        if (s && lane == 0) s[r] = rlx_fn_scale(ss, cols, eps);
    }
}

// ---- y = table[tokens] in f32 (exact), yb = the rows in T, s of y -------------------------------------
template <typename T>
__global__ void __launch_bounds__(RLX_FN_WARPS * 32) rlx_embed_f32_kernel(float *y, T *yb, float *s, const int32_t *tokens,
                                                                        const T *table, int64_t rows, int64_t cols, float eps,
                                                                        int vec) {
    const int lane = threadIdx.x & 31;
    const int64_t nwarps = (int64_t)gridDim.x * RLX_FN_WARPS;
    for (int64_t r = (int64_t)blockIdx.x * RLX_FN_WARPS + (threadIdx.x >> 5); r < rows; r += nwarps) {
        const T *xr = table + (int64_t)tokens[r] * cols;
        float *yr = y + r * cols;
        T *ybr = yb ? yb + r * cols : NULL;
        float ss = 0.0f;
        if (vec) {
#pragma unroll 4
            for (int64_t c = (int64_t)lane * 4; c < cols; c += 32 * 4) {
                float v[4];
                rlx_fn_ld4(xr + c, v);
                rlx_fn_st4(yr + c, v);
                if (ybr) rlx_fn_st4(ybr + c, v); // T -> f32 -> T is exact: a copy of the bits
                for (int k = 0; k < 4; k++) ss += v[k] * v[k];
            }
        } else {
            for (int64_t c = lane; c < cols; c += 32) {
                const float v = rlx_ld(&xr[c]);
                yr[c] = v;
                if (ybr) ybr[c] = xr[c];
                ss += v * v;
            }
        }
        ss = rlx_fn_warp_sum(ss);
        if (s && lane == 0) s[r] = rlx_fn_scale(ss, cols, eps);
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

// The f32 residual stream's vectors: 16-byte aligned bases and rows of a multiple of 4 elements
// (every row start is then 16-byte aligned in f32 and 8-byte aligned in bf16).
static inline int rlx_fn_vec4(int64_t cols, const void *p0, const void *p1, const void *p2, const void *p3) {
    return cols % 4 == 0 && rlx_fn_aligned(p0) && rlx_fn_aligned(p1) && (!p2 || rlx_fn_aligned(p2)) && (!p3 || rlx_fn_aligned(p3));
}

extern "C" int RLX_KNAME(residual_rowscale)(float *s, void *xb, const float *x, int64_t rows, int64_t cols, float eps, rlx_kdtype dt,
                                            void *stream) {
    if ((!s && !xb) || !x || rows < 0 || cols < 1 || (s && !(eps > 0.0f))) return (int)cudaErrorInvalidValue;
    if (rows == 0) return 0;
    const int vec = rlx_fn_vec4(cols, x, x, xb, NULL);
    RLX_DISPATCH_DT(dt, {
        return (int)rlx_launch(rlx_residual_rowscale_kernel<T>, dim3(rlx_fn_grid(rows)), dim3(RLX_FN_WARPS * 32), 0,
                               (cudaStream_t)stream, s, (T *)xb, x, rows, cols, eps, vec);
    });
}

extern "C" int RLX_KNAME(residual_add)(float *y, void *yb, float *s, const float *a, const void *b, int64_t rows, int64_t cols,
                                       float eps, rlx_kdtype dt, void *stream) {
    if (!y || !a || !b || rows < 0 || cols < 1 || (s && !(eps > 0.0f))) return (int)cudaErrorInvalidValue;
    if (rows == 0) return 0;
    const int vec = rlx_fn_vec4(cols, y, a, b, yb);
    RLX_DISPATCH_DT(dt, {
        return (int)rlx_launch(rlx_residual_add_kernel<T>, dim3(rlx_fn_grid(rows)), dim3(RLX_FN_WARPS * 32), 0, (cudaStream_t)stream,
                               y, (T *)yb, s, a, (const T *)b, rows, cols, eps, vec);
    });
}

extern "C" int RLX_KNAME(embed_f32)(float *y, void *yb, float *s, const int32_t *tokens, const void *table, int64_t T_, int64_t H,
                                    float eps, rlx_kdtype dt, void *stream) {
    if (!y || !tokens || !table || T_ < 0 || H < 1 || (s && !(eps > 0.0f))) return (int)cudaErrorInvalidValue;
    if (T_ == 0) return 0;
    const int vec = rlx_fn_vec4(H, y, table, yb, NULL);
    RLX_DISPATCH_DT(dt, {
        return (int)rlx_launch(rlx_embed_f32_kernel<T>, dim3(rlx_fn_grid(T_)), dim3(RLX_FN_WARPS * 32), 0, (cudaStream_t)stream, y,
                               (T *)yb, s, tokens, (const T *)table, T_, H, eps, vec);
    });
}
