// Shared memory for test-simt-basic.cpp and the planted race: dynamic shared memory's NaN fill,
// a missing barrier, 2D blocks with static shared memory, __syncthreads_count/and/or.
#include "common/rlx_cuda.cuh"

#include "simt_test_kernels.h"

// ----------------------------------------------------------------------------------------------
// Reads each word before anyone writes it, then writes it: the next block must see the fill
// again, not this block's writes.
__global__ void simt_dyn_smem_probe_kernel(unsigned *out) {
    RLX_DYN_SMEM(unsigned, words);
    const int t = threadIdx.x;
    out[blockIdx.x * blockDim.x + t] = words[t];
    __syncthreads();
    words[t] = 0x12345678u + t;
    __syncthreads();
}

cudaError_t simt_dyn_smem_probe(unsigned *out, int threads, int blocks, cudaStream_t s) {
    return rlx_launch(simt_dyn_smem_probe_kernel, dim3(blocks), dim3(threads),
                      threads * sizeof(unsigned), s, out);
}

// ----------------------------------------------------------------------------------------------
// The planted race: thread t reads the word thread t + 1 wrote, with no barrier in between.
// Forward order runs t before t + 1 (reads the NaN fill); reverse runs t + 1 first.
__global__ void simt_shift_racy_kernel(float *out, const float *in) {
    RLX_DYN_SMEM(float, s);
    const int t = threadIdx.x, n = blockDim.x;
    s[t] = in[t];
    out[t] = s[(t + 1) % n];
}

__global__ void simt_shift_fixed_kernel(float *out, const float *in) {
    RLX_DYN_SMEM(float, s);
    const int t = threadIdx.x, n = blockDim.x;
    s[t] = in[t];
    __syncthreads();
    out[t] = s[(t + 1) % n];
}

cudaError_t simt_shift_racy(float *out, const float *in, int n, cudaStream_t s) {
    return rlx_launch(simt_shift_racy_kernel, dim3(1), dim3(n), n * sizeof(float), s, out, in);
}
cudaError_t simt_shift_fixed(float *out, const float *in, int n, cudaStream_t s) {
    return rlx_launch(simt_shift_fixed_kernel, dim3(1), dim3(n), n * sizeof(float), s, out, in);
}

// ----------------------------------------------------------------------------------------------
// A 2D block over static shared memory; each thread reads its transposed neighbour.
__global__ void simt_static_smem_2d_kernel(float *out, const float *in) {
    __shared__ float tile[32][33];
    const int x = threadIdx.x, y = threadIdx.y, w = blockDim.x;
    tile[y][x] = in[y * w + x];
    __syncthreads();
    const int i = y * w + x, tx = i % blockDim.y, ty = i / blockDim.y;
    out[i] = tile[tx][ty] + 1.0f;
}

cudaError_t simt_static_smem_2d(float *out, const float *in, int bx, int by, cudaStream_t s) {
    return rlx_launch(simt_static_smem_2d_kernel, dim3(1), dim3(bx, by), 0, s, out, in);
}

// ----------------------------------------------------------------------------------------------
__global__ void simt_sync_reduce_kernel(int *out) {
    const int t = threadIdx.x;
    const int c = __syncthreads_count(t % 3 == 0);
    const int a = __syncthreads_and(t < 1000);
    const int o = __syncthreads_or(t == 5);
    const int a2 = __syncthreads_and(t != 7);
    if (t == 0) {
        out[0] = c;
        out[1] = a;
        out[2] = o;
        out[3] = a2;
    }
}

cudaError_t simt_sync_reduce(int *out, int n, cudaStream_t s) {
    return rlx_launch(simt_sync_reduce_kernel, dim3(1), dim3(n), 0, s, out);
}
