// Tensor-core fragment layouts for the simt harness' tests and the GPU test: mma.sync with
// fragments built from the PTX ISA formulas, the cp.async -> ldmatrix -> mma path a flash-attention
// kernel uses, an ldmatrix probe, and cp.async visibility.
#include "common/rlx_cuda.cuh"

#include "simt_test_kernels.h"

// ----------------------------------------------------------------------------------------------
// One warp per 16x8 tile of C; fragments straight from global memory (g = lane / 4, t = lane % 4).
__global__ void simt_mma_direct_kernel(float *C, const __nv_bfloat16 *A, const __nv_bfloat16 *B,
                                       int N, int K) {
    const int lane = threadIdx.x, g = lane >> 2, t = lane & 3;
    const int m0 = blockIdx.y * 16, n0 = blockIdx.x * 8;
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int k0 = 0; k0 < K; k0 += 16) {
        const __nv_bfloat16 *a = A + (size_t)m0 * K + k0; // [16][K]
        const __nv_bfloat16 *b = B + (size_t)k0 * N + n0; // [16][N]
        uint32_t af[4], bf[2];
        af[0] = rlx_pack_bf16x2(a[g * K + 2 * t], a[g * K + 2 * t + 1]);
        af[1] = rlx_pack_bf16x2(a[(g + 8) * K + 2 * t], a[(g + 8) * K + 2 * t + 1]);
        af[2] = rlx_pack_bf16x2(a[g * K + 2 * t + 8], a[g * K + 2 * t + 9]);
        af[3] = rlx_pack_bf16x2(a[(g + 8) * K + 2 * t + 8], a[(g + 8) * K + 2 * t + 9]);
        bf[0] = rlx_pack_bf16x2(b[(2 * t) * N + g], b[(2 * t + 1) * N + g]);
        bf[1] = rlx_pack_bf16x2(b[(2 * t + 8) * N + g], b[(2 * t + 9) * N + g]);
        rlx_mma_m16n8k16_bf16(acc, af, bf, acc);
    }
    C[(size_t)(m0 + g) * N + n0 + 2 * t] = acc[0];
    C[(size_t)(m0 + g) * N + n0 + 2 * t + 1] = acc[1];
    C[(size_t)(m0 + g + 8) * N + n0 + 2 * t] = acc[2];
    C[(size_t)(m0 + g + 8) * N + n0 + 2 * t + 1] = acc[3];
}

cudaError_t simt_mma_direct(float *C, const __nv_bfloat16 *A, const __nv_bfloat16 *B, int M,
                            int N, int K, cudaStream_t s) {
    return rlx_launch(simt_mma_direct_kernel, dim3(N / 8, M / 16), dim3(32), 0, s, C, A, B, N, K);
}

// ----------------------------------------------------------------------------------------------
// One warp per 16x16 tile of C (two 16x8 mma tiles). Each K step stages a 16x16 tile of A and of
// B in shared memory with cp.async (one 16-byte chunk per lane each), double-buffered: the copy
// of step k+1 is in flight while step k computes (wait_group 1).
//   As[s][r][c]: A[m0 + r][k0 + c], or for a_kmajor At[k0 + r][m0 + c]
//   Bs[s][r][c]: B[k0 + r][n0 + c], or for b_nmajor Bt[n0 + r][k0 + c]
__global__ void simt_mma_ldmatrix_kernel(float *C, const __nv_bfloat16 *A, const __nv_bfloat16 *B,
                                         int M, int N, int K, int a_kmajor, int b_nmajor,
                                         int variant) {
    __shared__ __align__(16) __nv_bfloat16 As[2][16][16];
    __shared__ __align__(16) __nv_bfloat16 Bs[2][16][16];
    const int lane = threadIdx.x, g = lane >> 2, t = lane & 3;
    const int m0 = blockIdx.y * 16, n0 = blockIdx.x * 16;
    const int cr = lane >> 1, cc = (lane & 1) * 8; // this lane's 16-byte chunk of a 16x16 tile

    auto stage = [&](int s, int k0) {
        const __nv_bfloat16 *a = a_kmajor ? A + (size_t)(k0 + cr) * M + m0 + cc
                                          : A + (size_t)(m0 + cr) * K + k0 + cc;
        const __nv_bfloat16 *b = b_nmajor ? B + (size_t)(n0 + cr) * K + k0 + cc
                                          : B + (size_t)(k0 + cr) * N + n0 + cc;
        rlx_cp_async_16(&As[s][cr][cc], a);
        rlx_cp_async_16(&Bs[s][cr][cc], b);
        rlx_cp_async_commit();
    };

    float acc[2][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};
    const int steps = K / 16;
    stage(0, 0);
    for (int k = 0; k < steps; ++k) {
        const int s = k & 1;
        if (k + 1 < steps) {
            stage(s ^ 1, (k + 1) * 16);
            rlx_cp_async_wait<1>();
        } else {
            rlx_cp_async_wait<0>();
        }
        __syncwarp();

        // A: matrices (rows 0-7, k 0-7), (rows 8-15, k 0-7), (rows 0-7, k 8-15), (rows 8-15, k 8-15).
        uint32_t af[4];
        if (a_kmajor) // stored [k][m]: the same four matrices, transposed on load
            rlx_ldmatrix_x4_trans(af, &As[s][(lane >> 4) * 8 + (lane & 7)][((lane >> 3) & 1) * 8]);
        else
            rlx_ldmatrix_x4(af, &As[s][lane & 15][(lane >> 4) * 8]);

        // B for n-tile j: b[j][0] = B[2t..2t+1][8j + g], b[j][1] = B[2t+8..2t+9][8j + g].
        uint32_t bf[2][2];
        if (!b_nmajor) { // stored [k][n]: pairs along k are columns, so .trans
            if (variant == 0) {
                uint32_t r[4]; // (k 0-7, n 0-7), (k 8-15, n 0-7), (k 0-7, n 8-15), (k 8-15, n 8-15)
                rlx_ldmatrix_x4_trans(r, &Bs[s][lane & 15][(lane >> 4) * 8]);
                bf[0][0] = r[0]; bf[0][1] = r[1]; bf[1][0] = r[2]; bf[1][1] = r[3];
            } else if (variant == 1) {
                for (int j = 0; j < 2; ++j) rlx_ldmatrix_x2_trans(bf[j], &Bs[s][lane & 15][8 * j]);
            } else {
                for (int j = 0; j < 2; ++j)
                    for (int h = 0; h < 2; ++h)
                        rlx_ldmatrix_x1_trans(&bf[j][h], &Bs[s][8 * h + (lane & 7)][8 * j]);
            }
        } else { // stored [n][k]: pairs along k are rows, no transpose
            if (variant == 0) {
                uint32_t r[4]; // (n 0-7, k 0-7), (n 0-7, k 8-15), (n 8-15, k 0-7), (n 8-15, k 8-15)
                rlx_ldmatrix_x4(r, &Bs[s][(lane >> 4) * 8 + (lane & 7)][((lane >> 3) & 1) * 8]);
                bf[0][0] = r[0]; bf[0][1] = r[1]; bf[1][0] = r[2]; bf[1][1] = r[3];
            } else if (variant == 1) {
                for (int j = 0; j < 2; ++j)
                    rlx_ldmatrix_x2(bf[j], &Bs[s][8 * j + (lane & 7)][((lane >> 3) & 1) * 8]);
            } else {
                for (int j = 0; j < 2; ++j)
                    for (int h = 0; h < 2; ++h)
                        rlx_ldmatrix_x1(&bf[j][h], &Bs[s][8 * j + (lane & 7)][8 * h]);
            }
        }
        for (int j = 0; j < 2; ++j) rlx_mma_m16n8k16_bf16(acc[j], af, bf[j], acc[j]);
        __syncwarp(); // everyone is done with stage s before it is refilled
    }
    for (int j = 0; j < 2; ++j) {
        float *c = C + (size_t)(m0 + g) * N + n0 + 8 * j + 2 * t;
        c[0] = acc[j][0];
        c[1] = acc[j][1];
        c[(size_t)8 * N] = acc[j][2];
        c[(size_t)8 * N + 1] = acc[j][3];
    }
}

cudaError_t simt_mma_ldmatrix(float *C, const __nv_bfloat16 *A, const __nv_bfloat16 *B, int M,
                              int N, int K, int a_kmajor, int b_nmajor, int variant,
                              cudaStream_t s) {
    return rlx_launch(simt_mma_ldmatrix_kernel, dim3(N / 16, M / 16), dim3(32), 0, s, C, A, B, M,
                      N, K, a_kmajor, b_nmajor, variant);
}

// ----------------------------------------------------------------------------------------------
__global__ void simt_ldmatrix_probe_kernel(uint32_t *out, const __nv_bfloat16 *src, int num,
                                           int trans) {
    __shared__ __align__(16) __nv_bfloat16 m[4][8][8];
    const int lane = threadIdx.x;
    for (int i = lane; i < 256; i += 32) (&m[0][0][0])[i] = src[i];
    __syncwarp();
    const void *row = &m[(lane >> 3) & 3][lane & 7][0]; // lanes 8j..8j+7: rows of matrix j
    uint32_t r[4] = {0, 0, 0, 0};
    if (num == 1) trans ? rlx_ldmatrix_x1_trans(r, row) : rlx_ldmatrix_x1(r, row);
    if (num == 2) trans ? rlx_ldmatrix_x2_trans(r, row) : rlx_ldmatrix_x2(r, row);
    if (num == 4) trans ? rlx_ldmatrix_x4_trans(r, row) : rlx_ldmatrix_x4(r, row);
    for (int j = 0; j < 4; ++j) out[lane * 4 + j] = r[j];
}

cudaError_t simt_ldmatrix_probe(uint32_t *out, const __nv_bfloat16 *src, int num, int trans,
                                cudaStream_t s) {
    return rlx_launch(simt_ldmatrix_probe_kernel, dim3(1), dim3(32), 0, s, out, src, num, trans);
}

// ----------------------------------------------------------------------------------------------
__global__ void simt_cp_async_probe_kernel(uint32_t *out, const uint32_t *src) {
    RLX_DYN_SMEM(uint32_t, s); // 8 words
    rlx_cp_async_16(&s[0], src);
    rlx_cp_async_16_zfill(&s[4], src + 4, 4);
    rlx_cp_async_commit();
    out[0] = ((volatile uint32_t *)s)[0];
    rlx_cp_async_wait<0>();
    out[1] = s[0];
    out[2] = s[4];
    out[3] = s[5];
}

cudaError_t simt_cp_async_probe(uint32_t *out, const uint32_t *src, cudaStream_t s) {
    return rlx_launch(simt_cp_async_probe_kernel, dim3(1), dim3(1), 8 * sizeof(uint32_t), s, out, src);
}
