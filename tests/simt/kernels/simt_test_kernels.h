/* Launchers of the simt harness' own test kernels (the .cu files beside this header). The same sources
 * build for the CPU (rlx_simt_kernels) and, for the GPU test, with nvcc. Pointers are device
 * pointers: host memory under simt. Each returns what rlx_launch returned. */
#ifndef RLX_SIMT_TEST_KERNELS_H
#define RLX_SIMT_TEST_KERNELS_H

#include <cuda_bf16.h>
#include <driver_types.h>
#include <stdint.h>

// ---- reduce.cu ---------------------------------------------------------------------------------
/* partial[b] = sum of in[i] over the grid-stride slice of block b; 256 threads, shared-memory tree. */
cudaError_t simt_block_reduce(float *partial, const float *in, int n, int blocks, cudaStream_t s);
/* Same sums with warp shuffles (__shfl_down_sync) and one shared slot per warp; 128 threads. */
cudaError_t simt_warp_reduce(float *partial, const float *in, int n, int blocks, cudaStream_t s);
/* *total = sum of in[0..n): per-block partials in scratch[blocks], then the last block to finish
 * (atomic ticket after __threadfence) adds them. *ticket must be 0. */
cudaError_t simt_last_block_sum(float *total, float *scratch, unsigned *ticket, const float *in,
                                int n, int blocks, cudaStream_t s);

// ---- warp.cu -----------------------------------------------------------------------------------
#define SIMT_WARP_OPS 24
/* out[t * SIMT_WARP_OPS + op] for every thread t of one block of `threads` threads. The ops and
 * their expected values are listed in test-simt-warp.cpp. */
cudaError_t simt_warp_ops(int *out, int threads, cudaStream_t s);
/* Shuffles of other types: outf[t] = float from lane ^ 1, outd[t] = double from lane ^ 2,
 * outh[t] = bf16 from lane ^ 4, outll[t] = long long from lane ^ 8. One warp. */
cudaError_t simt_warp_types(float *outf, double *outd, __nv_bfloat16 *outh, long long *outll,
                            cudaStream_t s);

// ---- smem.cu -----------------------------------------------------------------------------------
/* out[b * threads + t] = the bits of dynamic shared word t as block b first reads it. */
cudaError_t simt_dyn_smem_probe(unsigned *out, int threads, int blocks, cudaStream_t s);
/* out[t] = in[(t + 1) % n] through dynamic shared memory, one block of n threads; the racy
 * version has no __syncthreads between the writes and the reads. */
cudaError_t simt_shift_racy(float *out, const float *in, int n, cudaStream_t s);
cudaError_t simt_shift_fixed(float *out, const float *in, int n, cudaStream_t s);
/* out[t] = s[t] + 1 where s is __shared__ written as s[t] = in[t]; a 2D block (x, y). */
cudaError_t simt_static_smem_2d(float *out, const float *in, int bx, int by, cudaStream_t s);
/* __syncthreads_count/and/or: out[0..2] for predicates over one block of n threads. */
cudaError_t simt_sync_reduce(int *out, int n, cudaStream_t s);

// ---- atomics.cu --------------------------------------------------------------------------------
struct simt_atomic_results {
    int count;           /* atomicAdd(int) of 1 per thread */
    unsigned ucount;     /* atomicAdd(unsigned) of 2 per thread */
    float fsum;          /* atomicAdd(float) of 1.0 per thread (exact below 2^24) */
    int imax;            /* atomicMax of the global thread index */
    int imin;            /* atomicMin of -(global thread index) */
    unsigned cas_count;  /* increments by an atomicCAS loop */
    unsigned long long ull; /* atomicAdd(unsigned long long) of 3 per thread */
    int sub;             /* atomicSub of 1 per thread from 0 */
};
/* All atomics over grid x block threads; exch[b] = atomicExch'd thread index of block b. Every
 * field of *r and exch[] must start at 0. */
cudaError_t simt_atomics(struct simt_atomic_results *r, int *exch, int blocks, int threads,
                         cudaStream_t s);

/* out[t] = the position of thread t in the run order (*ticket must start at 0). One block. */
cudaError_t simt_order_probe(int *out, unsigned *ticket, int threads, cudaStream_t s);

// ---- planted.cu: kernels with deliberate bugs ------------------------------------------------
cudaError_t simt_planted_deadlock(int *out, cudaStream_t s);
cudaError_t simt_planted_divergent_barrier(int *out, cudaStream_t s);
cudaError_t simt_planted_divergent_warp(int *out, cudaStream_t s);
/* Threads t >= n return before a __syncthreads the others reach. */
cudaError_t simt_planted_exit_before_barrier(int *out, int n, int threads, cudaStream_t s);
/* Out-of-bounds writes: mode 0 writes out[n] (global), mode 1 writes one float past the dynamic
 * shared memory, mode 2 writes past a local array (index `n` of a [4] array). */
cudaError_t simt_planted_oob(float *out, int n, int mode, cudaStream_t s);
/* A double-buffered cp.async prefetch of `tiles` tiles of 256 floats by 64 threads: out[it * 64 + t]
 * = the sum of tile it (read in an order starting at thread t's own chunk); trailing_barrier = 0
 * plants the missing barrier after the last read of a buffer. */
cudaError_t simt_planted_prefetch(float *out, const float *in, int tiles, int trailing_barrier, cudaStream_t s);
/* One warp: mma (mode 0) or ldmatrix (mode 1), reached by the two half-warps from two call sites
 * when divergent = 1, from one otherwise. out[32]. */
cudaError_t simt_planted_divergent_mma(float *out, int mode, int divergent, cudaStream_t s);
/* One warp: ldmatrix from global (mode 0) or local memory (1), cp.async into global (2) or from
 * shared memory (3), or the correct uses (4). g: 256 bf16 (global), gdst: 128 floats. out[32]. */
cudaError_t simt_planted_not_shared(float *out, const __nv_bfloat16 *g, float *gdst, int mode, cudaStream_t s);
/* A launch with `bytes` of dynamic shared memory; out[0] = 7 when it ran. */
cudaError_t simt_planted_smem(unsigned *out, size_t bytes, cudaStream_t s);

// ---- intrinsics.cu -----------------------------------------------------------------------------
/* o[0..13] and f[0..7]: a sample of integer, float and bf16 intrinsics (see test-simt-basic.cpp). */
cudaError_t simt_intrinsics(int *o, float *f, cudaStream_t s);

// ---- bench.cu (bench-simt only) ---------------------------------------------------------------
/* Each thread passes `iters` __syncthreads / does `iters` __shfl_xor_sync; out[grid * block]. */
cudaError_t simt_bench_barriers(int *out, int iters, int blocks, int threads, cudaStream_t s);
cudaError_t simt_bench_shuffles(int *out, int iters, int blocks, int threads, cudaStream_t s);

// ---- mma.cu ----------------------------------------------------------------------------------
/* C[M][N] (f32) = A[M][K] B[K][N], A and B bf16 row-major, one warp per 16x8 tile, fragments
 * loaded straight from global memory with the PTX ISA fragment formulas. M%16 = N%8 = K%16 = 0. */
cudaError_t simt_mma_direct(float *C, const __nv_bfloat16 *A, const __nv_bfloat16 *B, int M,
                            int N, int K, cudaStream_t s);
/* The same product through cp.async (2-stage pipeline, wait_group 1), ldmatrix and mma, one warp
 * per 16x16 tile. M%16 = N%16 = K%16 = 0. a_kmajor: A given as At[K][M]; b_nmajor: B given as
 * Bt[N][K]. variant: 0 = x4 for B, 1 = x2, 2 = x1 (A always x4; .trans where the layout needs it). */
cudaError_t simt_mma_ldmatrix(float *C, const __nv_bfloat16 *A, const __nv_bfloat16 *B, int M,
                              int N, int K, int a_kmajor, int b_nmajor, int variant,
                              cudaStream_t s);
/* One warp loads src (4 matrices of 8x8 bf16 stored as rows of 8, matrix j at src + 64 j) with
 * ldmatrix .x{num} (.trans if trans) and writes out[lane * 4 + j] = register j. */
cudaError_t simt_ldmatrix_probe(uint32_t *out, const __nv_bfloat16 *src, int num, int trans,
                                cudaStream_t s);
/* cp.async visibility: out[0] = bits of a shared word read before the wait (NaN fill under simt:
 * the copy lands at the wait), out[1] = after rlx_cp_async_wait<0>, out[2..3] = a zfill copy of
 * 4 source bytes (the value, then 0). One thread. */
cudaError_t simt_cp_async_probe(uint32_t *out, const uint32_t *src, cudaStream_t s);

#endif
