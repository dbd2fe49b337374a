// Every warp collective once, with values that identify the source lane, for test-simt-warp.cpp.
#include "common/rlx_cuda.cuh"

#include "simt_test_kernels.h"

// ----------------------------------------------------------------------------------------------
// v = 1000 * warp + lane + 1 identifies the lane a shuffled value came from. A lane whose source
// is outside its section keeps its own v (the PTX shfl rule).
__global__ void simt_warp_ops_kernel(int *out) {
    const int t = threadIdx.x, lane = t & 31, warp = t >> 5;
    const int v = 1000 * warp + lane + 1;
    int *o = out + t * SIMT_WARP_OPS;
    const unsigned full = __activemask(); // all lanes of a (possibly partial) warp
    o[0] = __shfl_sync(full, v, (lane * 7 + 3) & 31);
    o[1] = __shfl_sync(full, v, lane + 3, 8);
    o[2] = __shfl_up_sync(full, v, 3);
    o[3] = __shfl_up_sync(full, v, 2, 8);
    o[4] = __shfl_down_sync(full, v, 5);
    o[5] = __shfl_down_sync(full, v, 3, 16);
    o[6] = __shfl_xor_sync(full, v, 1);
    o[7] = __shfl_xor_sync(full, v, 16);
    o[8] = __shfl_xor_sync(full, v, 12, 8); // may cross into an earlier section of 8
    o[9] = (int)__ballot_sync(full, lane % 3 == 0);
    o[10] = __any_sync(full, lane == 17);
    o[11] = __any_sync(full, lane == 40);
    o[12] = __all_sync(full, lane < 32);
    o[13] = __all_sync(full, lane != 9);
    __syncwarp(full);
    // Two half-warps shuffle independently, each with its own mask.
    const unsigned half = lane < 16 ? 0x0000ffffu & full : 0xffff0000u & full;
    o[14] = __shfl_sync(half, v, 15 - (lane & 15), 16);
    o[15] = (int)__ballot_sync(half, lane & 1);
    __syncwarp(half);
    // Only the even lanes take part.
    if ((lane & 1) == 0) {
        const unsigned even = 0x55555555u & full;
        o[16] = __shfl_sync(even, v, (lane + 2) & 31);
        o[17] = (int)__ballot_sync(even, 1);
        __syncwarp(even);
    } else {
        o[16] = -1;
        o[17] = -1;
    }
    o[18] = __reduce_add_sync(full, (unsigned)lane);
    o[19] = __reduce_max_sync(full, (unsigned)lane * 3u);
    o[20] = (int)__reduce_min_sync(full, -lane);
    o[21] = (int)__activemask();
    o[22] = __shfl_up_sync(full, v, 0);
    o[23] = __shfl_sync(full, v, -1); // srcLane's low bits: 31
}

cudaError_t simt_warp_ops(int *out, int threads, cudaStream_t s) {
    return rlx_launch(simt_warp_ops_kernel, dim3(1), dim3(threads), 0, s, out);
}

// ----------------------------------------------------------------------------------------------
__global__ void simt_warp_types_kernel(float *outf, double *outd, __nv_bfloat16 *outh,
                                       long long *outll) {
    const int lane = threadIdx.x;
    outf[lane] = __shfl_xor_sync(0xffffffffu, 0.5f + (float)lane, 1);
    outd[lane] = __shfl_xor_sync(0xffffffffu, 0.25 + (double)lane, 2);
    outh[lane] = __shfl_xor_sync(0xffffffffu, __float2bfloat16((float)lane), 4);
    outll[lane] = __shfl_xor_sync(0xffffffffu, (1LL << 40) + lane, 8);
}

cudaError_t simt_warp_types(float *outf, double *outd, __nv_bfloat16 *outh, long long *outll,
                            cudaStream_t s) {
    return rlx_launch(simt_warp_types_kernel, dim3(1), dim3(32), 0, s, outf, outd, outh, outll);
}
