// RoPE, NeoX / HF half rotation, from f32 cos/sin tables [positions, D/2] built on the host in
// f64 (with llama3 frequency scaling folded in). One thread per rotated pair; y may equal x
// because each thread reads both elements of its pair before writing them.
#include "rlx_dtype.cuh"

template <typename T>
__global__ void rlx_rope_kernel(T *y, const T *x, const float *cos_t, const float *sin_t, const int32_t *pos, int64_t T_,
                                int64_t heads, int64_t half, int64_t ld) {
    const int64_t n = T_ * heads * half;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t t = i / (heads * half), h = (i / half) % heads, j = i % half;
        const int64_t base = t * ld + h * 2 * half;
        const int64_t p = (int64_t)pos[t] * half + j;
        const float c = cos_t[p], s = sin_t[p];
        const float a = rlx_ld(&x[base + j]), b = rlx_ld(&x[base + j + half]);
        rlx_st(&y[base + j], a * c - b * s);
        rlx_st(&y[base + j + half], b * c + a * s);
    }
}

extern "C" int RLX_KNAME(rope)(void *y, const void *x, const float *cos_t, const float *sin_t, const int32_t *pos,
                               int64_t T_, int64_t heads, int64_t head_dim, int64_t ld, rlx_kdtype dt, void *stream) {
    if (!y || !x || !cos_t || !sin_t || !pos || T_ < 0 || heads < 1 || head_dim < 2 || head_dim % 2 ||
        ld < heads * head_dim)
        return (int)cudaErrorInvalidValue;
    if (T_ == 0) return 0;
    const int64_t half = head_dim / 2;
    RLX_DISPATCH_DT(dt, {
        return (int)rlx_launch(rlx_rope_kernel<T>, dim3(rlx_grid_for(T_ * heads * half, 256)), dim3(256), 0,
                               (cudaStream_t)stream, (T *)y, (const T *)x, cos_t, sin_t, pos, T_, heads, half, ld);
    });
}
