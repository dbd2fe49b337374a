// simt harness: the emulated mma.sync m16n8k16 bf16 and ldmatrix follow the PTX ISA fragment
// layouts (checked against a plain matmul on random bf16 data and against the ldmatrix formula),
// and cp.async data lands at the wait. simt-mma-gpu runs the same kernels on a GPU.
#include <criterion/criterion.h>

#include "rlx_simt/runtime.h"
#include "simt_check.h"
#include "simt_test_kernels.h"

#include <vector>

using namespace simt_check;

#define ASSERT_LAUNCH(call)                                                                        \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        cr_assert_eq(e_, cudaSuccess, "%s failed (%d): %s", #call, (int)e_, rlx_simt_last_error()); \
    } while (0)

Test(mma, fragments_from_ptx_formulas_match_matmul) {
    const uint64_t seed = 21;
    Rng r{seed};
    const int shapes[][3] = {{16, 8, 16}, {32, 24, 48}, {64, 40, 128}};
    for (const auto &s : shapes) {
        const int M = s[0], N = s[1], K = s[2];
        auto A = random_bf16(r, (size_t)M * K), B = random_bf16(r, (size_t)K * N);
        std::vector<float> C((size_t)M * N, NAN);
        ASSERT_LAUNCH(simt_mma_direct(C.data(), A.data(), B.data(), M, N, K, nullptr));
        const std::string err = check_matmul(C.data(), to_float(A), to_float(B), M, N, K);
        cr_assert(err.empty(), "mma direct, seed %llu: %s", (unsigned long long)seed, err.c_str());
    }
}

Test(mma, ldmatrix_registers_follow_ptx_layout) {
    std::vector<__nv_bfloat16> src(256);
    for (int i = 0; i < 256; ++i) src[i] = __float2bfloat16((float)i); // exact in bf16
    const uint16_t *bits = reinterpret_cast<const uint16_t *>(src.data());
    for (int num : {1, 2, 4})
        for (int trans = 0; trans < 2; ++trans) {
            std::vector<uint32_t> out(128, 0xdeadbeefu);
            ASSERT_LAUNCH(simt_ldmatrix_probe(out.data(), src.data(), num, trans, nullptr));
            for (int lane = 0; lane < 32; ++lane)
                for (int j = 0; j < 4; ++j)
                    cr_assert_eq(out[lane * 4 + j], ldmatrix_expected(bits, num, trans, lane, j),
                                 "ldmatrix .x%d%s lane %d register %d: 0x%08x, want 0x%08x", num,
                                 trans ? ".trans" : "", lane, j, out[lane * 4 + j],
                                 ldmatrix_expected(bits, num, trans, lane, j));
        }
}

Test(mma, cp_async_ldmatrix_mma_pipeline_matches_matmul) {
    const uint64_t seed = 22;
    Rng r{seed};
    const int M = 32, N = 48, K = 64;
    auto A = random_bf16(r, (size_t)M * K), B = random_bf16(r, (size_t)K * N);
    const auto Af = to_float(A), Bf = to_float(B);
    const auto At = transpose(A, M, K), Bt = transpose(B, K, N);
    for (int a_kmajor = 0; a_kmajor < 2; ++a_kmajor)
        for (int b_nmajor = 0; b_nmajor < 2; ++b_nmajor)
            for (int variant = 0; variant < 3; ++variant) {
                std::vector<float> C((size_t)M * N, NAN);
                ASSERT_LAUNCH(simt_mma_ldmatrix(C.data(), a_kmajor ? At.data() : A.data(),
                                                b_nmajor ? Bt.data() : B.data(), M, N, K, a_kmajor,
                                                b_nmajor, variant, nullptr));
                const std::string err = check_matmul(C.data(), Af, Bf, M, N, K);
                cr_assert(err.empty(), "a_kmajor=%d b_nmajor=%d variant=%d seed %llu: %s", a_kmajor,
                          b_nmajor, variant, (unsigned long long)seed, err.c_str());
            }
}

Test(mma, cp_async_lands_at_the_wait) {
    const uint32_t src[8] = {0x11111111u, 2, 3, 4, 0x55555555u, 0x66666666u, 7, 8};
    uint32_t out[4] = {0, 0, 0, 0};
    ASSERT_LAUNCH(simt_cp_async_probe(out, src, nullptr));
    cr_assert_eq(out[0], 0xffffffffu, "read before the wait saw 0x%08x, not the NaN fill", out[0]);
    cr_assert_eq(out[1], src[0]);
    cr_assert_eq(out[2], src[4], "zfill copies its source bytes");
    cr_assert_eq(out[3], 0u, "zfill zeroes the rest");
}
