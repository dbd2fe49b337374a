// Encoder primitives (BERT, NomicBERT): LayerNorm (optionally fused with the residual add that
// precedes it in a post-LN layer), exact-erf GELU, gather-add of position / token-type rows,
// column slices, CLS and mean pooling over packed sequences, L2 normalisation. Activations bf16
// or f32, statistics in f32. Limits: rows < 2^31; ids are validated on the host before launch.
#include "rlx_dtype.cuh"

#define RLX_ENC_THREADS 256

// Block-wide sum of one float per thread (blockDim.x == RLX_ENC_THREADS); every thread gets it.
__device__ __forceinline__ float rlx_block_sum(float v, float *partial) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    __syncthreads(); // partial may still be read from a previous call
    if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = v;
    __syncthreads();
    float total = 0.0f;
    for (unsigned w = 0; w < blockDim.x / 32; w++) total += partial[w];
    return total;
}

// ---- LayerNorm: y = (x − mean) / sqrt(var + eps) · γ + β, population variance -------------------
// With r non-NULL the input is x + r (the residual add of a post-LN layer) and y may alias x or r.
// Two passes over the row (mean, then centred variance) as the reference computes it.
template <typename T>
__global__ void __launch_bounds__(RLX_ENC_THREADS)
    rlx_layer_norm_kernel(T *y, const T *x, const T *r, const T *gamma, const T *beta, int64_t cols, float eps) {
    __shared__ float partial[RLX_ENC_THREADS / 32];
    const int64_t off = (int64_t)blockIdx.x * cols;
    float s = 0.0f;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) s += rlx_ld(&x[off + c]) + (r ? rlx_ld(&r[off + c]) : 0.0f);
    const float mean = rlx_block_sum(s, partial) / (float)cols;
    float v = 0.0f;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
        const float d = rlx_ld(&x[off + c]) + (r ? rlx_ld(&r[off + c]) : 0.0f) - mean;
        v += d * d;
    }
    const float inv = rsqrtf(rlx_block_sum(v, partial) / (float)cols + eps);
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
        const float d = rlx_ld(&x[off + c]) + (r ? rlx_ld(&r[off + c]) : 0.0f) - mean;
        rlx_st(&y[off + c], d * inv * rlx_ld(&gamma[c]) + (beta ? rlx_ld(&beta[c]) : 0.0f));
    }
}

extern "C" int RLX_KNAME(layer_norm)(void *y, const void *x, const void *residual, const void *gamma, const void *beta,
                                     int64_t rows, int64_t cols, float eps, rlx_kdtype dt, void *stream) {
    if (!y || !x || !gamma || rows < 0 || rows > 0x7fffffff || cols < 1 || !(eps > 0.0f)) return (int)cudaErrorInvalidValue;
    if (rows == 0) return 0;
    RLX_DISPATCH_DT(dt, {
        return (int)rlx_launch(rlx_layer_norm_kernel<T>, dim3((unsigned)rows), dim3(RLX_ENC_THREADS), 0,
                               (cudaStream_t)stream, (T *)y, (const T *)x, (const T *)residual, (const T *)gamma,
                               (const T *)beta, cols, eps);
    });
}

// ---- GELU, exact: 0.5·x·(1 + erf(x/√2)) ----------------------------------------------------------
template <typename T>
__global__ void rlx_gelu_kernel(T *y, const T *x, int64_t n) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const float v = rlx_ld(&x[i]);
        rlx_st(&y[i], 0.5f * v * (1.0f + erff(v * 0.70710678118654752f)));
    }
}

extern "C" int RLX_KNAME(gelu)(void *y, const void *x, int64_t n, rlx_kdtype dt, void *stream) {
    if (!y || !x || n < 0) return (int)cudaErrorInvalidValue;
    if (n == 0) return 0;
    RLX_DISPATCH_DT(dt, {
        return (int)rlx_launch(rlx_gelu_kernel<T>, dim3(rlx_grid_for(n, 256)), dim3(256), 0, (cudaStream_t)stream, (T *)y,
                               (const T *)x, n);
    });
}

// ---- gather-add: y[t, :] = x[t, :] + table[ids[t], :] ----------------------------------------------
template <typename T>
__global__ void rlx_gather_add_kernel(T *y, const T *x, const int32_t *ids, const T *table, int64_t rows, int64_t cols) {
    const int64_t n = rows * cols;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t t = i / cols, c = i % cols;
        rlx_st(&y[i], rlx_ld(&x[i]) + rlx_ld(&table[(int64_t)ids[t] * cols + c]));
    }
}

extern "C" int RLX_KNAME(gather_add)(void *y, const void *x, const int32_t *ids, const void *table, int64_t rows,
                                     int64_t cols, rlx_kdtype dt, void *stream) {
    if (!y || !x || !ids || !table || rows < 0 || cols < 1) return (int)cudaErrorInvalidValue;
    if (rows == 0) return 0;
    RLX_DISPATCH_DT(dt, {
        return (int)rlx_launch(rlx_gather_add_kernel<T>, dim3(rlx_grid_for(rows * cols, 256)), dim3(256), 0,
                               (cudaStream_t)stream, (T *)y, (const T *)x, ids, (const T *)table, rows, cols);
    });
}

// ---- y = x[:, begin : begin + width] ------------------------------------------------------------------
template <typename T>
__global__ void rlx_slice_cols_kernel(T *y, const T *x, int64_t rows, int64_t ldx, int64_t begin, int64_t width) {
    const int64_t n = rows * width;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        y[i] = x[(i / width) * ldx + begin + i % width];
}

extern "C" int RLX_KNAME(slice_cols)(void *y, const void *x, int64_t rows, int64_t x_cols, int64_t begin, int64_t width,
                                     rlx_kdtype dt, void *stream) {
    if (!y || !x || rows < 0 || width < 1 || begin < 0 || begin + width > x_cols) return (int)cudaErrorInvalidValue;
    if (rows == 0) return 0;
    RLX_DISPATCH_DT(dt, {
        return (int)rlx_launch(rlx_slice_cols_kernel<T>, dim3(rlx_grid_for(rows * width, 256)), dim3(256), 0,
                               (cudaStream_t)stream, (T *)y, (const T *)x, rows, x_cols, begin, width);
    });
}

// ---- pooling over packed sequences: CLS (first token) or mean ----------------------------------------
template <typename T>
__global__ void rlx_pool_kernel(T *y, const T *x, const int32_t *seq_start, int64_t n_seqs, int64_t cols, int mean) {
    const int64_t n = n_seqs * cols;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t s = i / cols, c = i % cols, a = seq_start[s], b = seq_start[s + 1];
        if (!mean) {
            y[i] = x[a * cols + c];
            continue;
        }
        float acc = 0.0f;
        for (int64_t t = a; t < b; t++) acc += rlx_ld(&x[t * cols + c]);
        rlx_st(&y[i], acc / (float)(b - a));
    }
}

extern "C" int RLX_KNAME(seq_pool)(void *y, const void *x, const int32_t *seq_start, int64_t n_seqs, int64_t cols, int mean,
                                   rlx_kdtype dt, void *stream) {
    if (!y || !x || !seq_start || n_seqs < 1 || cols < 1) return (int)cudaErrorInvalidValue;
    RLX_DISPATCH_DT(dt, {
        return (int)rlx_launch(rlx_pool_kernel<T>, dim3(rlx_grid_for(n_seqs * cols, 256)), dim3(256), 0,
                               (cudaStream_t)stream, (T *)y, (const T *)x, seq_start, n_seqs, cols, mean);
    });
}

// ---- L2 normalisation per row: x / max(‖x‖, 1e-12) ---------------------------------------------------
template <typename T>
__global__ void __launch_bounds__(RLX_ENC_THREADS) rlx_l2_normalize_kernel(T *y, const T *x, int64_t cols) {
    __shared__ float partial[RLX_ENC_THREADS / 32];
    const int64_t off = (int64_t)blockIdx.x * cols;
    float s = 0.0f;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
        const float v = rlx_ld(&x[off + c]);
        s += v * v;
    }
    const float inv = 1.0f / fmaxf(sqrtf(rlx_block_sum(s, partial)), 1e-12f);
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) rlx_st(&y[off + c], rlx_ld(&x[off + c]) * inv);
}

extern "C" int RLX_KNAME(l2_normalize)(void *y, const void *x, int64_t rows, int64_t cols, rlx_kdtype dt, void *stream) {
    if (!y || !x || rows < 0 || rows > 0x7fffffff || cols < 1) return (int)cudaErrorInvalidValue;
    if (rows == 0) return 0;
    RLX_DISPATCH_DT(dt, {
        return (int)rlx_launch(rlx_l2_normalize_kernel<T>, dim3((unsigned)rows), dim3(RLX_ENC_THREADS), 0,
                               (cudaStream_t)stream, (T *)y, (const T *)x, cols);
    });
}
