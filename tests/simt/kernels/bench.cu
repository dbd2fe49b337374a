// Kernels for bench-simt (the harness' speed: fiber switches per barrier and per shuffle, fiber
// start cost). Not part of any test.
#include "common/rlx_cuda.cuh"

#include "simt_test_kernels.h"

__global__ void simt_bench_barriers_kernel(int *out, int iters) {
    int acc = threadIdx.x;
    for (int i = 0; i < iters; ++i) {
        acc += i;
        __syncthreads();
    }
    out[blockIdx.x * blockDim.x + threadIdx.x] = acc;
}

__global__ void simt_bench_shuffles_kernel(int *out, int iters) {
    int acc = threadIdx.x;
    for (int i = 0; i < iters; ++i) acc += __shfl_xor_sync(0xffffffffu, acc, i & 31);
    out[blockIdx.x * blockDim.x + threadIdx.x] = acc;
}

cudaError_t simt_bench_barriers(int *out, int iters, int blocks, int threads, cudaStream_t s) {
    return rlx_launch(simt_bench_barriers_kernel, dim3(blocks), dim3(threads), 0, s, out, iters);
}
cudaError_t simt_bench_shuffles(int *out, int iters, int blocks, int threads, cudaStream_t s) {
    return rlx_launch(simt_bench_shuffles_kernel, dim3(blocks), dim3(threads), 0, s, out, iters);
}
