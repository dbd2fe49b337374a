// bench-simt: how fast the simt harness runs kernels (not a test: it only reports).
//   fiber switch      ns per context switch, from barrier- and shuffle-bound kernels
//   thread start      ns per CUDA thread of an almost empty kernel (fiber setup + run + exit)
//   launch            ms per launch of a tiny kernel (inline for one block; block pool otherwise)
// Run: ./bench-simt  (RLX_SIMT_THREADS=1 for the single-thread numbers)
#include "rlx_simt/runtime.h"
#include "simt_test_kernels.h"

#include <boost/context/detail/fcontext.hpp>

#include <chrono>
#include <cstdio>
#include <vector>

namespace bctx = boost::context::detail;

static double now() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

template <typename F> static void measure(const char *what, F launch, int reps) {
    launch(); // warm-up: stacks mapped, pool started
    rlx_simt_reset_stats();
    const double t0 = now();
    for (int i = 0; i < reps; ++i)
        if (launch() != cudaSuccess) {
            printf("%s: launch failed: %s\n", what, rlx_simt_last_error());
            return;
        }
    const double dt = now() - t0;
    rlx_simt_stats s;
    rlx_simt_get_stats(&s);
    printf("%-42s %9.1f us/launch  %6.1f ns/switch  %6.1f ns/thread  (%llu switches, %d pool threads)\n",
           what, 1e6 * dt / reps, 1e9 * dt / (double)s.switches, 1e9 * dt / (double)s.threads,
           (unsigned long long)s.switches, rlx_simt_get_threads());
}

// The bare cost of one boost.context switch: two contexts bouncing, no scheduler.
static void raw_switch_cost() {
    static std::vector<char> stack(64 * 1024);
    auto body = [](bctx::transfer_t t) {
        for (;;) t = bctx::jump_fcontext(t.fctx, nullptr);
    };
    bctx::fcontext_t c = bctx::make_fcontext(stack.data() + stack.size(), stack.size(), body);
    const int n = 2000000;
    const double t0 = now();
    for (int i = 0; i < n; ++i) c = bctx::jump_fcontext(c, nullptr).fctx;
    printf("%-42s %6.1f ns/switch\n", "raw fcontext switch (no scheduler)", 1e9 * (now() - t0) / (2.0 * n));
}

int main() {
    raw_switch_cost();
    std::vector<int> out(1024 * 64);
    int *o = out.data();
    measure("barriers: 1 block x 1024 threads x 200", [&] { return simt_bench_barriers(o, 200, 1, 1024, nullptr); }, 5);
    measure("barriers: 16 blocks x 256 threads x 200", [&] { return simt_bench_barriers(o, 200, 16, 256, nullptr); }, 5);
    measure("shuffles: 1 block x 1024 threads x 200", [&] { return simt_bench_shuffles(o, 200, 1, 1024, nullptr); }, 5);
    measure("empty: 64 blocks x 1024 threads", [&] { return simt_bench_barriers(o, 0, 64, 1024, nullptr); }, 5);
    measure("empty: 1024 blocks x 32 threads", [&] { return simt_bench_barriers(o, 0, 1024, 32, nullptr); }, 5);
    measure("launch: 1 block x 32 threads, empty", [&] { return simt_bench_barriers(o, 0, 1, 32, nullptr); }, 2000);
    measure("launch: 4 blocks x 32 threads, empty", [&] { return simt_bench_barriers(o, 0, 4, 32, nullptr); }, 2000);
    return 0;
}
