// RMSNorm (HF semantics): y = x / sqrt(mean(x²) + eps) · γ, one block per row; and the final
// norm fused with the last-token gather (the LM head then reads one row per sequence). The same on
// an f32 residual stream (residual_rms_norm: x f32, y and γ in the activation dtype).
// Statistics in f32 (warp shuffles, then one shared slot per warp). Limits: cols < 2^31.
#include "rlx_dtype.cuh"

#define RLX_RMS_THREADS 256

// Normalises one row per block; src_row maps the block to its input row (last-token: the last
// token of sequence blockIdx.x), NULL for row = block.
// x has type TX: T, or f32 for the f32 residual stream (residual_rms_norm).
template <typename T, typename TX = T>
__global__ void __launch_bounds__(RLX_RMS_THREADS)
    rlx_rms_norm_kernel(T *y, const TX *x, const T *gamma, const int32_t *seq_start, int64_t cols, float eps) {
    __shared__ float partial[RLX_RMS_THREADS / 32];
    const int64_t row = seq_start ? (int64_t)seq_start[blockIdx.x + 1] - 1 : (int64_t)blockIdx.x;
    const TX *xr = x + row * cols;
    T *yr = y + (int64_t)blockIdx.x * cols;
    float ss = 0.0f;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
        const float v = rlx_ld(&xr[c]);
        ss += v * v;
    }
    for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
    if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = ss;
    __syncthreads();
    float total = 0.0f;
    for (unsigned w = 0; w < blockDim.x / 32; w++) total += partial[w];
    const float inv = rsqrtf(total / (float)cols + eps);
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) rlx_st(&yr[c], rlx_ld(&gamma[c]) * (rlx_ld(&xr[c]) * inv));
}

extern "C" int RLX_KNAME(rms_norm)(void *y, const void *x, const void *gamma, int64_t rows, int64_t cols, float eps,
                                   rlx_kdtype dt, void *stream) {
    if (!y || !x || !gamma || rows < 0 || cols < 1 || rows > 0x7fffffff || !(eps > 0.0f)) return (int)cudaErrorInvalidValue;
    if (rows == 0) return 0;
    RLX_DISPATCH_DT(dt, {
        return (int)rlx_launch(rlx_rms_norm_kernel<T>, dim3((unsigned)rows), dim3(RLX_RMS_THREADS), 0,
                               (cudaStream_t)stream, (T *)y, (const T *)x, (const T *)gamma, (const int32_t *)NULL, cols,
                               eps);
    });
}

extern "C" int RLX_KNAME(last_token_rms_norm)(void *y, const void *x, const void *gamma, const int32_t *seq_start,
                                              int64_t n_seqs, int64_t cols, float eps, rlx_kdtype dt, void *stream) {
    if (!y || !x || !gamma || !seq_start || n_seqs < 1 || n_seqs > 0x7fffffff || cols < 1 || !(eps > 0.0f))
        return (int)cudaErrorInvalidValue;
    RLX_DISPATCH_DT(dt, {
        return (int)rlx_launch(rlx_rms_norm_kernel<T>, dim3((unsigned)n_seqs), dim3(RLX_RMS_THREADS), 0,
                               (cudaStream_t)stream, (T *)y, (const T *)x, (const T *)gamma, seq_start, cols, eps);
    });
}

extern "C" int RLX_KNAME(residual_rms_norm)(void *y, const float *x, const void *gamma, const int32_t *seq_start, int64_t rows,
                                            int64_t cols, float eps, rlx_kdtype dt, void *stream) {
    if (!y || !x || !gamma || rows < 0 || rows > 0x7fffffff || cols < 1 || !(eps > 0.0f)) return (int)cudaErrorInvalidValue;
    if (rows == 0) return 0;
    RLX_DISPATCH_DT(dt, {
        return (int)rlx_launch((rlx_rms_norm_kernel<T, float>), dim3((unsigned)rows), dim3(RLX_RMS_THREADS), 0, (cudaStream_t)stream,
                               (T *)y, x, (const T *)gamma, seq_start, cols, eps);
    });
}
