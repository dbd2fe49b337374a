// Reductions for the simt harness' tests: a shared-memory tree, warp shuffles, and the "last
// block" pattern (per-block partials, __threadfence, an atomic ticket).
#include "common/rlx_cuda.cuh"

#include "simt_test_kernels.h"

// ----------------------------------------------------------------------------------------------
// Shared-memory tree: 256 threads, log2 steps, a barrier after each.
__global__ void __launch_bounds__(256) simt_block_reduce_kernel(float *partial, const float *in, int n) {
    __shared__ float s[256];
    const int t = threadIdx.x;
    float acc = 0.0f;
    for (int i = blockIdx.x * blockDim.x + t; i < n; i += gridDim.x * blockDim.x) acc += in[i];
    s[t] = acc;
    __syncthreads();
    for (int stride = 128; stride > 0; stride >>= 1) {
        if (t < stride) s[t] += s[t + stride];
        __syncthreads();
    }
    if (t == 0) partial[blockIdx.x] = s[0];
}

cudaError_t simt_block_reduce(float *partial, const float *in, int n, int blocks, cudaStream_t s) {
    return rlx_launch(simt_block_reduce_kernel, dim3(blocks), dim3(256), 0, s, partial, in, n);
}

// ----------------------------------------------------------------------------------------------
// Warp shuffles, then one shared slot per warp, then the first warp.
__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    return v;
}

__global__ void simt_warp_reduce_kernel(float *partial, const float *in, int n) {
    __shared__ float warp_sums[32];
    const int t = threadIdx.x, lane = t & 31, warp = t >> 5, nwarps = blockDim.x >> 5;
    float acc = 0.0f;
    for (int i = blockIdx.x * blockDim.x + t; i < n; i += gridDim.x * blockDim.x) acc += in[i];
    acc = warp_sum(acc);
    if (lane == 0) warp_sums[warp] = acc;
    __syncthreads();
    if (warp == 0) {
        float v = lane < nwarps ? warp_sums[lane] : 0.0f;
        v = warp_sum(v);
        if (lane == 0) partial[blockIdx.x] = v;
    }
}

cudaError_t simt_warp_reduce(float *partial, const float *in, int n, int blocks, cudaStream_t s) {
    return rlx_launch(simt_warp_reduce_kernel, dim3(blocks), dim3(128), 0, s, partial, in, n);
}

// ----------------------------------------------------------------------------------------------
// Last block: every block publishes its partial, fences, takes a ticket; the block that takes
// the last ticket reads all partials. Needs real atomics and fences between blocks that run
// concurrently (simt's block pool).
__global__ void simt_last_block_sum_kernel(float *total, float *scratch, unsigned *ticket,
                                           const float *in, int n) {
    __shared__ float s[128];
    __shared__ bool is_last;
    const int t = threadIdx.x;
    float acc = 0.0f;
    for (int i = blockIdx.x * blockDim.x + t; i < n; i += gridDim.x * blockDim.x) acc += in[i];
    s[t] = acc;
    __syncthreads();
    for (int stride = 64; stride > 0; stride >>= 1) {
        if (t < stride) s[t] += s[t + stride];
        __syncthreads();
    }
    if (t == 0) {
        scratch[blockIdx.x] = s[0];
        __threadfence();
        is_last = atomicAdd(ticket, 1u) == gridDim.x - 1;
    }
    __syncthreads();
    if (is_last && t == 0) {
        float sum = 0.0f;
        for (unsigned b = 0; b < gridDim.x; ++b) sum += ((volatile float *)scratch)[b];
        *total = sum;
    }
}

cudaError_t simt_last_block_sum(float *total, float *scratch, unsigned *ticket, const float *in,
                                int n, int blocks, cudaStream_t s) {
    return rlx_launch(simt_last_block_sum_kernel, dim3(blocks), dim3(128), 0, s, total, scratch,
                      ticket, in, n);
}
