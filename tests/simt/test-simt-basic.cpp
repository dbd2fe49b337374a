// simt harness: reductions, shared memory, atomics, launch configuration, thread order.
// Registered twice by ctest (forward and RLX_SIMT_ORDER=reverse); results must not depend on it.
#include <criterion/criterion.h>

#include "rlx_simt/runtime.h"
#include "simt_check.h"
#include "simt_test_kernels.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

using simt_check::Rng;

#define ASSERT_LAUNCH(call)                                                                        \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        cr_assert_eq(e_, cudaSuccess, "%s failed (%d): %s", #call, (int)e_, rlx_simt_last_error()); \
    } while (0)

// Per-block sums of a grid-stride assignment, in double.
static std::vector<double> block_sums(const std::vector<float> &x, int blocks, int threads,
                                      std::vector<double> *mags) {
    std::vector<double> s(blocks, 0.0);
    mags->assign(blocks, 0.0);
    for (size_t i = 0; i < x.size(); ++i) {
        const size_t b = (i % ((size_t)blocks * threads)) / threads;
        s[b] += x[i];
        (*mags)[b] += std::fabs(x[i]);
    }
    return s;
}

static void check_partials(const char *what, const float *got, const std::vector<float> &x,
                           int blocks, int threads, uint64_t seed) {
    std::vector<double> mags;
    std::vector<double> ref = block_sums(x, blocks, threads, &mags);
    for (int b = 0; b < blocks; ++b)
        cr_assert(std::fabs(got[b] - ref[b]) <= 1e-5 * mags[b],
                  "%s: block %d sum %.9g, reference %.9g (bound %.3g), n=%zu seed=%llu", what, b,
                  got[b], ref[b], 1e-5 * mags[b], x.size(), (unsigned long long)seed);
}

Test(reduce, shared_memory_tree) {
    const uint64_t seed = 11;
    Rng r{seed};
    for (int n : {1, 255, 256, 257, 100003}) {
        std::vector<float> x(n);
        for (float &v : x) v = r.uniform();
        const int blocks = 37;
        std::vector<float> partial(blocks, NAN);
        ASSERT_LAUNCH(simt_block_reduce(partial.data(), x.data(), n, blocks, nullptr));
        check_partials("block_reduce", partial.data(), x, blocks, 256, seed);
    }
}

Test(reduce, warp_shuffle) {
    const uint64_t seed = 12;
    Rng r{seed};
    for (int n : {1, 33, 128, 129, 50001}) {
        std::vector<float> x(n);
        for (float &v : x) v = r.uniform();
        const int blocks = 13;
        std::vector<float> partial(blocks, NAN);
        ASSERT_LAUNCH(simt_warp_reduce(partial.data(), x.data(), n, blocks, nullptr));
        check_partials("warp_reduce", partial.data(), x, blocks, 128, seed);
    }
}

// Blocks on several OS threads publish partials and take atomic tickets; the last one sums.
Test(reduce, last_block_after_threadfence) {
    rlx_simt_set_threads(4);
    const uint64_t seed = 13;
    Rng r{seed};
    const int n = 77777, blocks = 61;
    std::vector<float> x(n);
    double ref = 0.0, mag = 0.0;
    for (float &v : x) {
        v = r.uniform();
        ref += v;
        mag += std::fabs(v);
    }
    for (int rep = 0; rep < 5; ++rep) {
        float total = NAN;
        std::vector<float> scratch(blocks, NAN);
        unsigned ticket = 0;
        ASSERT_LAUNCH(simt_last_block_sum(&total, scratch.data(), &ticket, x.data(), n, blocks, nullptr));
        cr_assert_eq(ticket, (unsigned)blocks);
        cr_assert(std::fabs(total - ref) <= 1e-5 * mag, "total %.9g, reference %.9g, seed %llu",
                  total, ref, (unsigned long long)seed);
    }
}

Test(smem, dynamic_nan_fill_per_block) {
    rlx_simt_set_threads(2);
    for (int threads : {1, 31, 96, 1024}) {
        const int blocks = 5;
        std::vector<unsigned> out((size_t)threads * blocks, 0);
        ASSERT_LAUNCH(simt_dyn_smem_probe(out.data(), threads, blocks, nullptr));
        for (size_t i = 0; i < out.size(); ++i) {
            float f;
            std::memcpy(&f, &out[i], 4);
            cr_assert(out[i] == 0xffffffffu && std::isnan(f),
                      "threads=%d: word %zu read 0x%08x before any write, expected the NaN fill",
                      threads, i, out[i]);
        }
    }
}

Test(smem, static_shared_2d_block) {
    const int bx = 8, by = 12;
    std::vector<float> in(bx * by), out(bx * by, NAN);
    for (int i = 0; i < bx * by; ++i) in[i] = (float)i;
    ASSERT_LAUNCH(simt_static_smem_2d(out.data(), in.data(), bx, by, nullptr));
    for (int i = 0; i < bx * by; ++i) {
        const int tx = i % by, ty = i / by; // tile[tx][ty] holds in[tx * bx + ty]
        cr_assert_eq(out[i], in[tx * bx + ty] + 1.0f, "out[%d]", i);
    }
}

Test(smem, syncthreads_count_and_or) {
    for (int n : {1, 100, 1024}) {
        int out[4] = {-1, -1, -1, -1};
        ASSERT_LAUNCH(simt_sync_reduce(out, n, nullptr));
        cr_assert_eq(out[0], (n + 2) / 3, "count, n=%d", n);
        cr_assert_eq(out[1], n <= 1000 ? 1 : 0, "and, n=%d", n);
        cr_assert_eq(out[2], n > 5 ? 1 : 0, "or, n=%d", n);
        cr_assert_eq(out[3], n > 7 ? 0 : 1, "and (one false), n=%d", n);
    }
}

Test(atomics, across_concurrent_blocks) {
    rlx_simt_set_threads(4);
    const int blocks = 64, threads = 256, total = blocks * threads;
    for (int rep = 0; rep < 3; ++rep) {
        simt_atomic_results r;
        std::memset(&r, 0, sizeof r);
        std::vector<int> exch(blocks, 0);
        ASSERT_LAUNCH(simt_atomics(&r, exch.data(), blocks, threads, nullptr));
        cr_assert_eq(r.count, total);
        cr_assert_eq(r.ucount, 2u * total);
        cr_assert_eq(r.fsum, (float)total);
        cr_assert_eq(r.imax, total - 1);
        cr_assert_eq(r.imin, -(total - 1));
        cr_assert_eq(r.cas_count, (unsigned)total);
        cr_assert_eq(r.ull, 3ull * total);
        cr_assert_eq(r.sub, -total);
        for (int b = 0; b < blocks; ++b)
            cr_assert(exch[b] >= 1 && exch[b] <= threads, "exch[%d] = %d", b, exch[b]);
    }
}

// The ctest registration sets RLX_SIMT_ORDER; check that it really changes the run order.
Test(order, environment_selects_order) {
    const char *env = getenv("RLX_SIMT_ORDER");
    const bool reverse = env && strcmp(env, "reverse") == 0;
    cr_assert_eq(rlx_simt_get_order(), reverse ? RLX_SIMT_REVERSE : RLX_SIMT_FORWARD);
    const int n = 70;
    std::vector<int> out(n, -1);
    unsigned ticket = 0;
    ASSERT_LAUNCH(simt_order_probe(out.data(), &ticket, n, nullptr));
    for (int t = 0; t < n; ++t)
        cr_assert_eq(out[t], reverse ? n - 1 - t : t, "thread %d ran at position %d (%s order)", t,
                     out[t], reverse ? "reverse" : "forward");
}

Test(launch, invalid_configuration_is_an_error) {
    float out[1] = {0.0f};
    cudaError_t e = simt_shift_fixed(out, out, 2048, nullptr); // 2048 threads per block
    cr_assert_eq(e, cudaErrorInvalidConfiguration);
    cr_assert(strstr(rlx_simt_last_error(), "simt_shift_fixed_kernel") != nullptr, "%s",
              rlx_simt_last_error());
    e = simt_dyn_smem_probe(nullptr, 1, 0, nullptr); // empty grid
    cr_assert_eq(e, cudaErrorInvalidConfiguration);
    cr_assert_eq(rlx_simt_last_status(1), (int)cudaErrorInvalidConfiguration);
    cr_assert_eq(rlx_simt_last_status(0), 0, "status cleared by the first read");
}

Test(intrinsics, integer_float_bf16_sample) {
    int o[14];
    float f[8];
    ASSERT_LAUNCH(simt_intrinsics(o, f, nullptr));
    const int want_o[14] = {8, 31, 4, (int)0x80000000u, 0x55441100, 1, 3, -6, 2, 0x3f800000, -4, 7, 5, 0};
    for (int i = 0; i < 14; ++i) cr_assert_eq(o[i], want_o[i], "o[%d] = %d (0x%08x)", i, o[i], (unsigned)o[i]);
    const float want_f[8] = {7.0f, 1.0f, 0.5f, 1.0f, 0.25f, 0.25f, 0.25f, 1.0f};
    for (int i = 0; i < 8; ++i) cr_assert_eq(f[i], want_f[i], "f[%d] = %g", i, f[i]);
}
