// Memory-bound primitives of the unfused LLaMA plan: embedding gather, residual add, SwiGLU
// activation, last-token gather. Grid-stride loops; bf16 or f32 activations, f32 math.
// Limits: sizes < 2^62; token ids are validated on the host before launch.
#include "rlx_dtype.cuh"

// ---- embedding gather: y[t, :] = table[tokens[t], :] ------------------------------------------
template <typename T>
__global__ void rlx_embed_kernel(T *y, const int32_t *tokens, const T *table, int64_t T_, int64_t H) {
    const int64_t n = T_ * H;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t t = i / H, c = i % H;
        y[i] = table[(int64_t)tokens[t] * H + c];
    }
}

extern "C" int RLX_KNAME(embed)(void *y, const int32_t *tokens, const void *table, int64_t T_, int64_t H, rlx_kdtype dt,
                                void *stream) {
    if (!y || !tokens || !table || T_ < 0 || H < 1) return (int)cudaErrorInvalidValue;
    if (T_ == 0) return 0;
    RLX_DISPATCH_DT(dt, {
        return (int)rlx_launch(rlx_embed_kernel<T>, dim3(rlx_grid_for(T_ * H, 256)), dim3(256), 0, (cudaStream_t)stream,
                               (T *)y, tokens, (const T *)table, T_, H);
    });
}

// ---- y = a + b ---------------------------------------------------------------------------------
template <typename T>
__global__ void rlx_add_kernel(T *y, const T *a, const T *b, int64_t n) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        rlx_st(&y[i], rlx_ld(&a[i]) + rlx_ld(&b[i]));
}

extern "C" int RLX_KNAME(add)(void *y, const void *a, const void *b, int64_t n, rlx_kdtype dt, void *stream) {
    if (!y || !a || !b || n < 0) return (int)cudaErrorInvalidValue;
    if (n == 0) return 0;
    RLX_DISPATCH_DT(dt, {
        return (int)rlx_launch(rlx_add_kernel<T>, dim3(rlx_grid_for(n, 256)), dim3(256), 0, (cudaStream_t)stream, (T *)y,
                               (const T *)a, (const T *)b, n);
    });
}

// ---- y = silu(g) · u ---------------------------------------------------------------------------
template <typename T>
__global__ void rlx_silu_mul_kernel(T *y, const T *g, const T *u, int64_t rows, int64_t cols, int64_t ldg, int64_t ldu) {
    const int64_t n = rows * cols;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = i / cols, c = i % cols;
        const float x = rlx_ld(&g[r * ldg + c]);
        // expf, not __expf: simt and the GPU then differ only by contraction (kernels/README.md)
        rlx_st(&y[i], x / (1.0f + expf(-x)) * rlx_ld(&u[r * ldu + c]));
    }
}

extern "C" int RLX_KNAME(silu_mul)(void *y, const void *g, const void *u, int64_t rows, int64_t cols, int64_t ldg,
                                   int64_t ldu, rlx_kdtype dt, void *stream) {
    if (!y || !g || !u || rows < 0 || cols < 1 || ldg < cols || ldu < cols) return (int)cudaErrorInvalidValue;
    if (rows == 0) return 0;
    RLX_DISPATCH_DT(dt, {
        return (int)rlx_launch(rlx_silu_mul_kernel<T>, dim3(rlx_grid_for(rows * cols, 256)), dim3(256), 0,
                               (cudaStream_t)stream, (T *)y, (const T *)g, (const T *)u, rows, cols, ldg, ldu);
    });
}

// ---- y[s, :] = x[last token of sequence s, :] ----------------------------------------------------
template <typename T>
__global__ void rlx_last_token_kernel(T *y, const T *x, const int32_t *seq_start, int64_t n_seqs, int64_t cols) {
    const int64_t n = n_seqs * cols;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t s = i / cols, c = i % cols;
        y[i] = x[((int64_t)seq_start[s + 1] - 1) * cols + c];
    }
}

extern "C" int RLX_KNAME(last_token)(void *y, const void *x, const int32_t *seq_start, int64_t n_seqs, int64_t cols,
                                     rlx_kdtype dt, void *stream) {
    if (!y || !x || !seq_start || n_seqs < 1 || cols < 1) return (int)cudaErrorInvalidValue;
    RLX_DISPATCH_DT(dt, {
        return (int)rlx_launch(rlx_last_token_kernel<T>, dim3(rlx_grid_for(n_seqs * cols, 256)), dim3(256), 0,
                               (cudaStream_t)stream, (T *)y, (const T *)x, seq_start, n_seqs, cols);
    });
}
