// Kernels with deliberate bugs: the harness must report each one (or ASan must, for the
// out-of-bounds writes). They compile cleanly with nvcc too; do not run them on a GPU.
#include "common/rlx_cuda.cuh"

#include "simt_test_kernels.h"

// ----------------------------------------------------------------------------------------------
// Lane 0 of each warp waits in a shuffle for lane 1, which waits at __syncthreads for lane 0.
__global__ void simt_planted_deadlock_kernel(int *out) {
    int v = threadIdx.x;
    if ((threadIdx.x & 31) == 0) v = __shfl_sync(0xffffffffu, v, 1);
    __syncthreads();
    out[threadIdx.x] = v;
}

cudaError_t simt_planted_deadlock(int *out, cudaStream_t s) {
    return rlx_launch(simt_planted_deadlock_kernel, dim3(2), dim3(64), 0, s, out);
}

// ----------------------------------------------------------------------------------------------
// Two halves of the block wait at two different __syncthreads.
__global__ void simt_planted_divergent_barrier_kernel(int *out) {
    if (threadIdx.x < 16) {
        __syncthreads();
        out[threadIdx.x] = 1;
    } else {
        __syncthreads();
        out[threadIdx.x] = 2;
    }
}

cudaError_t simt_planted_divergent_barrier(int *out, cudaStream_t s) {
    return rlx_launch(simt_planted_divergent_barrier_kernel, dim3(1), dim3(64), 0, s, out);
}

// ----------------------------------------------------------------------------------------------
// Half a warp shuffles with the full mask while the other half votes with it.
__global__ void simt_planted_divergent_warp_kernel(int *out) {
    const int lane = threadIdx.x & 31;
    if (lane < 16)
        out[threadIdx.x] = __shfl_sync(0xffffffffu, lane, 0);
    else
        out[threadIdx.x] = (int)__ballot_sync(0xffffffffu, 1);
}

cudaError_t simt_planted_divergent_warp(int *out, cudaStream_t s) {
    return rlx_launch(simt_planted_divergent_warp_kernel, dim3(1), dim3(32), 0, s, out);
}

// ----------------------------------------------------------------------------------------------
// The early return many kernels write: fine on hardware, where exited threads count as arrived,
// but against the CUDA rule that a barrier is reached by the whole block.
__global__ void simt_planted_exit_before_barrier_kernel(int *out, int n) {
    __shared__ int s[1024];
    const int t = threadIdx.x;
    if (t >= n) return;
    s[t] = t;
    __syncthreads();
    out[t] = s[n - 1 - t];
}

cudaError_t simt_planted_exit_before_barrier(int *out, int n, int threads, cudaStream_t s) {
    return rlx_launch(simt_planted_exit_before_barrier_kernel, dim3(1), dim3(threads), 0, s, out, n);
}

// ----------------------------------------------------------------------------------------------
// Out-of-bounds writes for ASan. The stack write goes through a function the compiler cannot see
// into, so UBSan's bounds and object-size checks leave it to ASan.
#if RLX_SIMT
#define SIMT_NOINLINE __attribute__((noinline))
#else
#define SIMT_NOINLINE __noinline__
#endif
SIMT_NOINLINE __device__ void simt_poke(volatile float *p, int i, float v) { p[i] = v; }

// Out-of-bounds writes for ASan: one thread per block too many for the buffer it writes.
__global__ void simt_planted_oob_kernel(float *out, int n, int mode) {
    const int t = threadIdx.x;
    if (mode == 0) {
        out[t] = 1.0f; // the launch has n + 1 threads for an n-float buffer
    } else if (mode == 1) {
        RLX_DYN_SMEM(float, s); // n floats
        s[t] = 2.0f;            // t == n is one past the end
        __syncthreads();
        if (t < n) out[t] = s[t];
    } else {
        volatile float local[4];
        for (int i = 0; i < 4; ++i) local[i] = (float)i;
        simt_poke(local, n, 3.0f); // n == 4: one past the end, on the fiber's stack
        if (t < n) out[t] = local[t % 4];
    }
}

cudaError_t simt_planted_oob(float *out, int n, int mode, cudaStream_t s) {
    const int threads = mode == 2 ? 1 : n + 1;
    return rlx_launch(simt_planted_oob_kernel, dim3(1), dim3(threads),
                      mode == 1 ? n * sizeof(float) : 0, s, out, n, mode);
}
