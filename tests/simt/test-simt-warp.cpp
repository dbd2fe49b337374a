// simt harness: every warp collective against the semantics in the CUDA programming guide and the
// PTX shfl.sync rule, for a full block, several warps, and a partial last warp.
#include <criterion/criterion.h>

#include "rlx_simt/runtime.h"
#include "simt_test_kernels.h"

#include <cstring>
#include <vector>

#define ASSERT_LAUNCH(call)                                                                        \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        cr_assert_eq(e_, cudaSuccess, "%s failed (%d): %s", #call, (int)e_, rlx_simt_last_error()); \
    } while (0)

// What lane l of warp w sees for op, with `lanes` lanes present in the warp. A source lane that
// does not exist or is not in the mask gives -1 (simt's all-ones poison; undefined on hardware).
static int expected(int op, int w, int l, int lanes) {
    auto val = [&](int j) { return j < lanes ? 1000 * w + j + 1 : -1; };
    const unsigned present = lanes == 32 ? 0xffffffffu : (1u << lanes) - 1;
    auto bits = [&](unsigned mask, auto pred) {
        unsigned b = 0;
        for (int j = 0; j < 32; ++j)
            if ((mask >> j & 1u) && pred(j)) b |= 1u << j;
        return (int)b;
    };
    switch (op) {
    case 0: return val((l * 7 + 3) & 31);
    case 1: return val((l & ~7) | ((l + 3) & 7));
    case 2: return val(l >= 3 ? l - 3 : l);
    case 3: return val(l % 8 >= 2 ? l - 2 : l);
    case 4: return val(l + 5 <= 31 ? l + 5 : l);
    case 5: return val(l % 16 + 3 < 16 ? l + 3 : l);
    case 6: return val(l ^ 1);
    case 7: return val(l ^ 16);
    case 8: return val((l ^ 12) <= (l | 7) ? (l ^ 12) : l);
    case 9: return bits(present, [](int j) { return j % 3 == 0; });
    case 10: return 17 < lanes;
    case 11: return 0;
    case 12: return 1;
    case 13: return 9 < lanes ? 0 : 1;
    case 14: return val((l & ~15) | (15 - (l & 15)));
    case 15: return bits(present & (l < 16 ? 0x0000ffffu : 0xffff0000u), [](int j) { return j & 1; });
    case 16: return (l & 1) ? -1 : val((l + 2) & 31);
    case 17: return (l & 1) ? -1 : (int)(present & 0x55555555u);
    case 18: return lanes * (lanes - 1) / 2;
    case 19: return 3 * (lanes - 1);
    case 20: return -(lanes - 1);
    case 21: return (int)present;
    case 22: return val(l);
    case 23: return val(31);
    }
    return 0;
}

static void check_warp_ops(int threads) {
    std::vector<int> out((size_t)threads * SIMT_WARP_OPS, 0x7eadbeef);
    ASSERT_LAUNCH(simt_warp_ops(out.data(), threads, nullptr));
    for (int t = 0; t < threads; ++t) {
        const int w = t / 32, l = t % 32, lanes = threads - 32 * w >= 32 ? 32 : threads - 32 * w;
        for (int op = 0; op < SIMT_WARP_OPS; ++op) {
            const int want = expected(op, w, l, lanes), got = out[(size_t)t * SIMT_WARP_OPS + op];
            cr_assert_eq(got, want, "threads=%d thread %d (warp %d lane %d) op %d: got %d (0x%08x), want %d (0x%08x)",
                         threads, t, w, l, op, got, (unsigned)got, want, (unsigned)want);
        }
    }
}

Test(warp, one_full_warp) { check_warp_ops(32); }
Test(warp, several_warps) { check_warp_ops(128); }
Test(warp, partial_last_warp) { check_warp_ops(80); }
Test(warp, single_thread) { check_warp_ops(1); }

Test(warp, shuffle_value_types) {
    float f[32];
    double d[32];
    __nv_bfloat16 h[32];
    long long ll[32];
    ASSERT_LAUNCH(simt_warp_types(f, d, h, ll, nullptr));
    for (int l = 0; l < 32; ++l) {
        cr_assert_eq(f[l], 0.5f + (float)(l ^ 1), "float lane %d", l);
        cr_assert_eq(d[l], 0.25 + (double)(l ^ 2), "double lane %d", l);
        cr_assert_eq(__bfloat162float(h[l]), (float)(l ^ 4), "bf16 lane %d", l);
        cr_assert_eq(ll[l], (1LL << 40) + (l ^ 8), "long long lane %d", l);
    }
}
