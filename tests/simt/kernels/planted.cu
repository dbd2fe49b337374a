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

// ----------------------------------------------------------------------------------------------
// A double-buffered cp.async prefetch, as flash attention does it: tile t+1 is prefetched into
// one buffer while every thread reads all of tile t from the other. Without the barrier after the
// last read of a buffer (`trailing_barrier` = 0), a fast thread's prefetch of tile t+2 overwrites
// tile t while slower threads still read it; on a GPU the copy may land any time after it is
// issued, so simt makes the destination unreadable (poison) from the issue on.
#define SIMT_PF_THREADS 64
#define SIMT_PF_TILE (4 * SIMT_PF_THREADS) /* floats: one 16-byte cp.async per thread */

__global__ void simt_planted_prefetch_kernel(float *out, const float *in, int tiles, int trailing_barrier) {
    __shared__ __align__(16) float buf[2][SIMT_PF_TILE];
    const int t = threadIdx.x;
    rlx_cp_async_16(&buf[0][4 * t], in + 4 * t);
    rlx_cp_async_commit();
    for (int it = 0; it < tiles; it++) {
        if (it + 1 < tiles) rlx_cp_async_16(&buf[(it + 1) & 1][4 * t], in + (size_t)(it + 1) * SIMT_PF_TILE + 4 * t);
        rlx_cp_async_commit();
        rlx_cp_async_wait<1>();
        __syncthreads();
        float s = 0.0f; // every element of the tile, most of them written by other threads
        for (int i = 0; i < SIMT_PF_TILE; i++) s += buf[it & 1][(i + 4 * t) % SIMT_PF_TILE];
        out[it * SIMT_PF_THREADS + t] = s;
        if (trailing_barrier) __syncthreads();
    }
}

cudaError_t simt_planted_prefetch(float *out, const float *in, int tiles, int trailing_barrier, cudaStream_t s) {
    return rlx_launch(simt_planted_prefetch_kernel, dim3(1), dim3(SIMT_PF_THREADS), 0, s, out, in, tiles,
                      trailing_barrier);
}

// ----------------------------------------------------------------------------------------------
// mma.sync and ldmatrix are .aligned: every lane of the warp executes the same instruction. Here
// the two halves of the warp reach them from the two sides of a branch (`divergent` = 1): two
// instructions with the same name and mask, which hardware does not pair up. mode 0: mma,
// mode 1: ldmatrix. divergent = 0 is the same computation from one call site.
__global__ void simt_planted_divergent_mma_kernel(float *out, int mode, int divergent) {
    __shared__ __align__(16) __nv_bfloat16 tile[16 * 16];
    const int lane = threadIdx.x;
    for (int i = lane; i < 16 * 16; i += 32) tile[i] = __float2bfloat16((float)(i % 7) - 3.0f);
    __syncwarp();
    uint32_t a[4] = {0, 0, 0, 0}, b[2] = {0, 0};
    float d[4] = {0, 0, 0, 0};
    if (mode == 1) {
        const void *row = &tile[(lane & 15) * 16 + (lane >> 4) * 8];
        if (divergent && lane < 16) rlx_ldmatrix_x4(a, row);
        else if (divergent) rlx_ldmatrix_x4(a, row);
        else rlx_ldmatrix_x4(a, row);
        d[0] = (float)(a[0] & 0xffffu);
    } else {
        for (int i = 0; i < 4; i++) a[i] = rlx_pack_bf16x2(tile[lane * 4 + i], tile[(lane * 4 + i + 1) % 256]);
        b[0] = a[0], b[1] = a[3];
        if (divergent && lane < 16) rlx_mma_m16n8k16_bf16(d, a, b, d);
        else if (divergent) rlx_mma_m16n8k16_bf16(d, a, b, d);
        else rlx_mma_m16n8k16_bf16(d, a, b, d);
    }
    out[lane] = d[0];
}

cudaError_t simt_planted_divergent_mma(float *out, int mode, int divergent, cudaStream_t s) {
    return rlx_launch(simt_planted_divergent_mma_kernel, dim3(1), dim3(32), 0, s, out, mode, divergent);
}

// ----------------------------------------------------------------------------------------------
// ldmatrix and cp.async take shared-memory addresses (under nvcc, __cvta_generic_to_shared of
// anything else is garbage). mode 0: ldmatrix from global memory; 1: ldmatrix from a local array
// (the thread's stack); 2: cp.async into global memory; 3: cp.async from shared memory;
// 4: the correct uses (ldmatrix from __shared__ and dynamic shared memory, cp.async global ->
// shared).
__global__ void simt_planted_not_shared_kernel(float *out, const __nv_bfloat16 *g, float *gdst, int mode) {
    __shared__ __align__(16) __nv_bfloat16 st[8 * 8 * 4];
    RLX_DYN_SMEM(__nv_bfloat16, dyn);
    __align__(16) __nv_bfloat16 local[8 * 8 * 4];
    const int lane = threadIdx.x;
    for (int i = lane; i < 8 * 8 * 4; i += 32) st[i] = dyn[i] = local[i] = g[i];
    __syncwarp();
    uint32_t r[4] = {0, 0, 0, 0};
    if (mode == 0) rlx_ldmatrix_x4(r, g + lane * 8);
    if (mode == 1) rlx_ldmatrix_x4(r, local + lane * 8);
    if (mode == 2) {
        rlx_cp_async_16(gdst + 4 * lane, g + 8 * lane);
        rlx_cp_async_wait_all();
    }
    if (mode == 3) {
        __shared__ __align__(16) float sdst[4 * 32];
        rlx_cp_async_16(sdst + 4 * lane, st + 8 * lane);
        rlx_cp_async_wait_all();
        r[0] = __float_as_uint(sdst[4 * lane]);
    }
    if (mode == 4) {
        uint32_t q[4];
        rlx_ldmatrix_x4(r, st + lane * 8);
        rlx_ldmatrix_x4(q, dyn + lane * 8);
        __shared__ __align__(16) __nv_bfloat16 sdst[8 * 32];
        rlx_cp_async_16(sdst + 8 * lane, g + 8 * lane);
        rlx_cp_async_wait_all();
        __syncwarp();
        r[1] = q[0] ^ r[0] ^ (uint32_t)__bfloat16_as_ushort(sdst[8 * ((lane + 1) & 31)]);
    }
    out[lane] = (float)(r[0] & 0xffffu) + (float)(r[1] & 0xffffu);
}

cudaError_t simt_planted_not_shared(float *out, const __nv_bfloat16 *g, float *gdst, int mode, cudaStream_t s) {
    return rlx_launch(simt_planted_not_shared_kernel, dim3(1), dim3(32), 8 * 8 * 4 * sizeof(__nv_bfloat16), s, out, g, gdst,
                      mode);
}

// ----------------------------------------------------------------------------------------------
// A block asking for more dynamic shared memory than the target allows (sm_80: 163 KiB per block).
__global__ void simt_planted_smem_kernel(unsigned *out, size_t bytes) {
    RLX_DYN_SMEM(unsigned char, s);
    if (threadIdx.x == 0) {
        s[bytes - 1] = 7;
        out[0] = s[bytes - 1];
    }
}

cudaError_t simt_planted_smem(unsigned *out, size_t bytes, cudaStream_t s) {
    return rlx_launch(simt_planted_smem_kernel, dim3(1), dim3(32), bytes, s, out, bytes);
}
