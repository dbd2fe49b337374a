// Atomics from every thread of a grid; with simt's block pool the blocks really run concurrently.
#include "common/rlx_cuda.cuh"

#include "simt_test_kernels.h"

__global__ void simt_atomics_kernel(simt_atomic_results *r, int *exch) {
    const int g = blockIdx.x * blockDim.x + threadIdx.x;
    atomicAdd(&r->count, 1);
    atomicAdd(&r->ucount, 2u);
    atomicAdd(&r->fsum, 1.0f);
    atomicMax(&r->imax, g);
    atomicMin(&r->imin, -g);
    unsigned old = r->cas_count, seen;
    while ((seen = atomicCAS(&r->cas_count, old, old + 1)) != old) old = seen;
    atomicAdd(&r->ull, 3ull);
    atomicSub(&r->sub, 1);
    atomicExch(&exch[blockIdx.x], (int)threadIdx.x + 1);
}

cudaError_t simt_atomics(simt_atomic_results *r, int *exch, int blocks, int threads, cudaStream_t s) {
    return rlx_launch(simt_atomics_kernel, dim3(blocks), dim3(threads), 0, s, r, exch);
}

// ----------------------------------------------------------------------------------------------
// out[t] = the order in which thread t ran its first segment (an atomic ticket): t in forward
// order, n - 1 - t in reverse. One block.
__global__ void simt_order_probe_kernel(int *out, unsigned *ticket) {
    out[threadIdx.x] = (int)atomicAdd(ticket, 1u);
}

cudaError_t simt_order_probe(int *out, unsigned *ticket, int threads, cudaStream_t s) {
    return rlx_launch(simt_order_probe_kernel, dim3(1), dim3(threads), 0, s, out, ticket);
}
