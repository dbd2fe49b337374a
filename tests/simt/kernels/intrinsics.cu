// A sample of the device intrinsics the simt shim supplies, for test-simt-basic.cpp (the values
// are exact on a GPU too).
#include "common/rlx_cuda.cuh"

#include "simt_test_kernels.h"

__global__ void simt_intrinsics_kernel(int *o, float *f) {
    o[0] = __popc(0xf0f0u);
    o[1] = __clz(1);
    o[2] = __ffs(8);
    o[3] = (int)__brev(1u);
    o[4] = (int)__byte_perm(0x33221100u, 0x77665544u, 0x5410u);
    o[5] = (int)__umulhi(0xffffffffu, 2u);
    o[6] = (int)__funnelshift_l(0x80000000u, 1u, 1u);
    o[7] = __mul24(-2, 3);
    o[8] = __float2int_rn(2.5f);
    o[9] = (int)__float_as_uint(1.0f);
    o[10] = min(3, -4);
    o[11] = (int)max(3u, 7u);
    o[13] = 5;
    o[12] = (int)atomicInc((unsigned *)&o[13], 5u); // returns 5, wraps o[13] to 0
    f[0] = __bfloat162float(__hfma(__float2bfloat16(2.0f), __float2bfloat16(3.0f), __float2bfloat16(1.0f)));
    f[1] = __bfloat162float(hexp(__float2bfloat16(0.0f)));
    f[2] = __bfloat162float(hrsqrt(__float2bfloat16(4.0f)));
    f[3] = __saturatef(1.5f);
    f[4] = __fdividef(1.0f, 4.0f);
    f[5] = __ldg(&f[4]);
    f[6] = rsqrtf(16.0f);
    f[7] = __expf(0.0f);
}

cudaError_t simt_intrinsics(int *o, float *f, cudaStream_t s) {
    return rlx_launch(simt_intrinsics_kernel, dim3(1), dim3(1), 0, s, o, f);
}
