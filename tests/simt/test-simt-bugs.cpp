// simt harness: planted kernel bugs must be caught. A missing barrier shows as a difference
// between the two thread orders; deadlocks and divergent barriers fail the launch with a message
// naming the kernel, block and thread (the harness never ends the process).
#include <criterion/criterion.h>

#include "rlx_simt/runtime.h"
#include "simt_test_kernels.h"

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#define ASSERT_LAUNCH(call)                                                                        \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        cr_assert_eq(e_, cudaSuccess, "%s failed (%d): %s", #call, (int)e_, rlx_simt_last_error()); \
    } while (0)

// The launch must fail with cudaErrorLaunchFailure and a message containing every needle.
static void expect_failure(cudaError_t e, const char *kernel, std::vector<const char *> needles) {
    const std::string msg = rlx_simt_last_error();
    cr_assert_eq(e, cudaErrorLaunchFailure, "expected the launch to fail; got %d, message '%s'",
                 (int)e, msg.c_str());
    needles.push_back(kernel);
    needles.push_back("block (");
    needles.push_back("thread (");
    for (const char *n : needles)
        cr_assert(msg.find(n) != std::string::npos, "message lacks '%s': %s", n, msg.c_str());
    cr_log_info("%s", msg.c_str());
}

static std::vector<uint32_t> bits(const std::vector<float> &v) {
    std::vector<uint32_t> b(v.size());
    std::memcpy(b.data(), v.data(), v.size() * 4);
    return b;
}

Test(race, missing_barrier_is_caught_by_the_orders) {
    const int n = 64;
    std::vector<float> in(n), fwd(n, 0.0f), rev(n, 0.0f), fixed_fwd(n, 0.0f), fixed_rev(n, 0.0f);
    for (int i = 0; i < n; ++i) in[i] = 0.5f + (float)i;

    rlx_simt_set_order(RLX_SIMT_FORWARD);
    ASSERT_LAUNCH(simt_shift_racy(fwd.data(), in.data(), n, nullptr));
    ASSERT_LAUNCH(simt_shift_fixed(fixed_fwd.data(), in.data(), n, nullptr));
    rlx_simt_set_order(RLX_SIMT_REVERSE);
    ASSERT_LAUNCH(simt_shift_racy(rev.data(), in.data(), n, nullptr));
    ASSERT_LAUNCH(simt_shift_fixed(fixed_rev.data(), in.data(), n, nullptr));

    // The racy kernel: the two orders disagree, and at least one of them is visibly wrong.
    cr_assert(bits(fwd) != bits(rev), "the missing barrier went unnoticed: both orders agree");
    int wrong = 0;
    for (int t = 0; t < n; ++t) wrong += std::isnan(fwd[t]) + std::isnan(rev[t]);
    cr_assert_gt(wrong, 0);
    // The fixed kernel: both orders agree and are right.
    cr_assert(bits(fixed_fwd) == bits(fixed_rev), "the fixed kernel depends on the order");
    for (int t = 0; t < n; ++t) cr_assert_eq(fixed_fwd[t], in[(t + 1) % n], "fixed out[%d]", t);
}

Test(deadlock, shuffle_waits_for_a_lane_at_syncthreads) {
    std::vector<int> out(128, 0);
    expect_failure(simt_planted_deadlock(out.data(), nullptr), "simt_planted_deadlock_kernel",
                   {"deadlock", "__shfl_sync", "__syncthreads", "planted.cu"});
}

Test(divergence, two_different_syncthreads) {
    std::vector<int> out(64, 0);
    expect_failure(simt_planted_divergent_barrier(out.data(), nullptr),
                   "simt_planted_divergent_barrier_kernel", {"divergent barrier", "planted.cu:"});
}

Test(divergence, different_warp_collectives) {
    std::vector<int> out(32, 0);
    expect_failure(simt_planted_divergent_warp(out.data(), nullptr),
                   "simt_planted_divergent_warp_kernel",
                   {"divergent warp collective", "__shfl_sync", "__ballot_sync"});
}

Test(divergence, exit_before_a_barrier_others_reach) {
    std::vector<int> out(64, -1);
    expect_failure(simt_planted_exit_before_barrier(out.data(), 40, 64, nullptr),
                   "simt_planted_exit_before_barrier_kernel", {"exit", "__syncthreads"});
    // Hardware semantics (exited threads count as arrived) on request.
    rlx_simt_set_strict_exit(0);
    ASSERT_LAUNCH(simt_planted_exit_before_barrier(out.data(), 40, 64, nullptr));
    for (int t = 0; t < 40; ++t) cr_assert_eq(out[t], 39 - t, "out[%d]", t);
    rlx_simt_set_strict_exit(1);
    // The whole block exiting together is fine in both modes.
    ASSERT_LAUNCH(simt_planted_exit_before_barrier(out.data(), 64, 64, nullptr));
}

// A failed launch abandons its fibers mid-kernel; the next launches must work normally.
Test(launch, recovers_after_a_failure) {
    std::vector<int> out(128, 0);
    for (int i = 0; i < 3; ++i) {
        cr_assert_eq(simt_planted_deadlock(out.data(), nullptr), cudaErrorLaunchFailure);
        std::vector<float> in(256), fixed(256, 0.0f);
        for (int t = 0; t < 256; ++t) in[t] = (float)t;
        ASSERT_LAUNCH(simt_shift_fixed(fixed.data(), in.data(), 256, nullptr));
        for (int t = 0; t < 256; ++t) cr_assert_eq(fixed[t], in[(t + 1) % 256]);
    }
}

// ---- the stricter simt of issue 18: each planted bug below passed the simt before it --------------

// A prefetch that overwrites a buffer other threads still read (no barrier after the last read)
// races on a GPU whatever order the warps run in; simt poisons a cp.async destination when the
// copy is issued, so the race shows in each thread order on its own, not only as a difference
// between the two.
Test(cp_async, missing_trailing_barrier_in_a_double_buffered_prefetch_is_caught_in_each_order) {
    const int tiles = 5, per = 4 * 64;
    std::vector<float> in((size_t)tiles * per), want((size_t)tiles * 64);
    uint32_t st = 12345;
    for (float &x : in) {
        st = st * 1664525u + 1013904223u;
        x = (float)(st >> 8) / (float)(1u << 24) - 0.5f;
    }
    for (int it = 0; it < tiles; ++it)
        for (int t = 0; t < 64; ++t) {
            float s = 0.0f;
            for (int i = 0; i < per; ++i) s += in[(size_t)it * per + (i + 4 * t) % per];
            want[(size_t)it * 64 + t] = s;
        }
    for (int order = 0; order < 2; ++order) {
        rlx_simt_set_order(order ? RLX_SIMT_REVERSE : RLX_SIMT_FORWARD);
        std::vector<float> fixed(want.size(), 0.0f), racy(want.size(), 0.0f);
        ASSERT_LAUNCH(simt_planted_prefetch(fixed.data(), in.data(), tiles, 1, nullptr));
        ASSERT_LAUNCH(simt_planted_prefetch(racy.data(), in.data(), tiles, 0, nullptr));
        cr_assert(bits(fixed) == bits(want), "order %d: the kernel with its barrier is wrong", order);
        int wrong = 0;
        for (size_t i = 0; i < racy.size(); ++i) wrong += std::isnan(racy[i]);
        cr_assert_gt(wrong, 0, "order %d: the missing trailing barrier went unnoticed", order);
    }
    rlx_simt_set_order(RLX_SIMT_FORWARD);
}

// mma.sync / ldmatrix are .aligned: the two halves of a warp reaching one from two call sites
// is not one instruction, even with the same name and mask.
Test(divergence, aligned_collectives_from_two_call_sites) {
    std::vector<float> out(32, 0.0f);
    expect_failure(simt_planted_divergent_mma(out.data(), 0, 1, nullptr), "simt_planted_divergent_mma_kernel",
                   {"divergent warp collective", "mma.sync", ".aligned", "planted.cu:"});
    expect_failure(simt_planted_divergent_mma(out.data(), 1, 1, nullptr), "simt_planted_divergent_mma_kernel",
                   {"divergent warp collective", "ldmatrix", ".aligned", "planted.cu:"});
    ASSERT_LAUNCH(simt_planted_divergent_mma(out.data(), 0, 0, nullptr));
    ASSERT_LAUNCH(simt_planted_divergent_mma(out.data(), 1, 0, nullptr));
}

// ldmatrix reads shared memory and cp.async copies global to shared; any other address is a bug
// that simt used to execute as a plain host access.
Test(address_space, ldmatrix_and_cp_async_need_shared_memory) {
    std::vector<__nv_bfloat16> g(256);
    for (int i = 0; i < 256; ++i) g[i] = __float2bfloat16((float)(i % 13));
    std::vector<float> out(32, 0.0f), gdst(128, 0.0f);
    expect_failure(simt_planted_not_shared(out.data(), g.data(), gdst.data(), 0, nullptr), "simt_planted_not_shared_kernel",
                   {"ldmatrix", "not shared memory"});
    expect_failure(simt_planted_not_shared(out.data(), g.data(), gdst.data(), 1, nullptr), "simt_planted_not_shared_kernel",
                   {"ldmatrix", "not shared memory"});
    expect_failure(simt_planted_not_shared(out.data(), g.data(), gdst.data(), 2, nullptr), "simt_planted_not_shared_kernel",
                   {"cp.async", "destination", "not shared memory"});
    expect_failure(simt_planted_not_shared(out.data(), g.data(), gdst.data(), 3, nullptr), "simt_planted_not_shared_kernel",
                   {"cp.async", "source", "is shared memory"});
    ASSERT_LAUNCH(simt_planted_not_shared(out.data(), g.data(), gdst.data(), 4, nullptr));
}

// Dynamic shared memory is capped per target: 163 KiB per block on sm_80 (the code path simt
// runs), 227 KiB on sm_90.
Test(launch, dynamic_shared_memory_is_capped_per_target) {
    unsigned out = 0;
    rlx_simt_set_target_arch(80);
    ASSERT_LAUNCH(simt_planted_smem(&out, 166912, nullptr));
    cr_assert_eq(out, 7u);
    cudaError_t e = simt_planted_smem(&out, 200 * 1024, nullptr);
    cr_assert_eq(e, cudaErrorInvalidValue, "200 KiB on sm_80: %d (%s)", (int)e, rlx_simt_last_error());
    cr_assert(strstr(rlx_simt_last_error(), "sm_80") && strstr(rlx_simt_last_error(), "166912"), "%s", rlx_simt_last_error());
    cr_assert_eq(rlx_simt_max_dynamic_smem(), (size_t)166912);
    rlx_simt_set_target_arch(90);
    cr_assert_eq(rlx_simt_max_dynamic_smem(), (size_t)232448);
    out = 0;
    ASSERT_LAUNCH(simt_planted_smem(&out, 200 * 1024, nullptr));
    cr_assert_eq(out, 7u);
    cr_assert_eq(simt_planted_smem(&out, 232448 + 1, nullptr), cudaErrorInvalidValue);
    rlx_simt_set_target_arch(0);
}
