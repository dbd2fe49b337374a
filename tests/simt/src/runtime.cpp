// rlx simt runtime: fibers, the per-block scheduler, barriers, warp collectives, the block pool.
//
// One launch = a grid of blocks. Blocks are independent, so they are handed out to a small pool
// of OS threads (the calling thread included). One OS thread runs one block at a time: it creates
// a fiber (boost.context fcontext) per CUDA thread on stacks it owns, then runs them in passes,
// thread 0 first (forward) or last thread first (reverse). A fiber runs until it reaches a barrier
// or a warp collective, then switches back to the scheduler. A pass that resumes nobody while
// threads are still live is a deadlock. Everything that goes wrong fails the launch with a message;
// the process never exits from here. Design notes: tests/simt/README.md.

#include "rlx_simt/runtime.h"
#include "rlx_simt/shim.h"

#include <boost/context/detail/fcontext.hpp>

#include <elf.h>
#include <link.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#define RLX_SIMT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RLX_SIMT_ASAN 1
#endif
#endif
#ifndef RLX_SIMT_ASAN
#define RLX_SIMT_ASAN 0
#endif
#if RLX_SIMT_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

namespace bctx = boost::context::detail;

namespace rlx_simt {

__thread ThreadCtx *tls_cur __attribute__((tls_model("initial-exec"))) = nullptr;

namespace {

// ---- configuration ---------------------------------------------------------------------------

#if RLX_SIMT_ASAN
constexpr size_t kDefaultStack = 256 * 1024; // ASan's redzones make frames several times larger
#else
constexpr size_t kDefaultStack = 128 * 1024;
#endif
// Dynamic shared memory a block may opt into (cudaDevAttrMaxSharedMemoryPerBlockOptin): 163 KiB on
// sm_80 (A100), 227 KiB on sm_90 (H100/H200). simt runs the sm_80 code path (RLX_DEVICE_ARCH 800),
// so it checks sm_80's limit unless told the target is sm_90.
constexpr size_t kMaxDynamicSmemSm80 = 163 * 1024;
constexpr size_t kMaxDynamicSmemSm90 = 227 * 1024;
constexpr unsigned char kSmemPoison = 0xff;    // NaN in bf16, f16, f32 and f64; -1 in integers

struct Config {
    std::atomic<int> order{-1};     // -1: from RLX_SIMT_ORDER
    std::atomic<int> threads{0};    // 0: from RLX_SIMT_THREADS, else cores
    std::atomic<size_t> stack{0};   // 0: from RLX_SIMT_STACK_KB, else kDefaultStack
    std::atomic<int> strict_exit{-1};
    std::atomic<int> arch{0};       // 0: from RLX_SIMT_ARCH, else 80
};
Config g_config;

int env_int(const char *name, int fallback) {
    const char *v = getenv(name);
    if (!v || !*v) return fallback;
    char *end = nullptr;
    long n = strtol(v, &end, 10);
    return (end && *end == '\0' && n >= 0 && n < (1L << 30)) ? (int)n : fallback;
}

int cores() {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0) return n;
    }
    unsigned n = std::thread::hardware_concurrency();
    return n ? (int)n : 1;
}

bool reverse_order() {
    int o = g_config.order.load();
    if (o >= 0) return o == RLX_SIMT_REVERSE;
    const char *v = getenv("RLX_SIMT_ORDER");
    return v && strcmp(v, "reverse") == 0;
}
int pool_threads() {
    int n = g_config.threads.load();
    if (n <= 0) n = env_int("RLX_SIMT_THREADS", 0);
    if (n <= 0) n = cores();
    return n > 256 ? 256 : n;
}
size_t stack_bytes() {
    size_t s = g_config.stack.load();
    if (!s) s = (size_t)env_int("RLX_SIMT_STACK_KB", 0) * 1024;
    if (!s) s = kDefaultStack;
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    if (s < 4 * page) s = 4 * page;
    return (s + page - 1) / page * page;
}
int target_arch() {
    int a = g_config.arch.load();
    if (a <= 0) a = env_int("RLX_SIMT_ARCH", 80);
    return a >= 90 ? 90 : 80;
}
size_t max_dynamic_smem() { return target_arch() >= 90 ? kMaxDynamicSmemSm90 : kMaxDynamicSmemSm80; }

bool strict_exit() {
    int s = g_config.strict_exit.load();
    if (s >= 0) return s != 0;
    return env_int("RLX_SIMT_STRICT_EXIT", 1) != 0;
}

// ---- statistics and per-host-thread error state ----------------------------------------------

std::atomic<uint64_t> g_launches{0}, g_blocks{0}, g_threads{0}, g_switches{0};

thread_local std::string t_error;
thread_local int t_status = 0;

// ---- data structures -------------------------------------------------------------------------

enum class State : uint8_t { Runnable, BlockBar, WarpBar, Exited, Dead };

struct CpOp {
    void *dst;
    const void *src;
    unsigned bytes, src_bytes, group;
};

struct Fiber {
    ThreadCtx ctx; // what the built-in variables read
    bctx::fcontext_t fc = nullptr;
    char *stack_lo = nullptr;
    size_t stack_size = 0;
    State state = State::Runnable;
    // Where the fiber waits (for divergence checks and messages).
    const char *op = nullptr;
    const char *file = nullptr;
    int line = 0;
    // Pending warp collective.
    unsigned wmask = 0;
    void *wdata = nullptr;
    CombineFn wfn = nullptr;
    // Pending cp.async copies; group = number of commits before the copy was issued.
    std::vector<CpOp> cp;
    unsigned cp_commits = 0;
    void *asan_fake = nullptr;
    unsigned pos = 0; // position in a pass
};

// A warp collective in progress: the lanes that arrived so far, waiting for the rest of mask.
struct Group {
    unsigned mask;
    unsigned arrived;
    const char *op;
    // .aligned instructions (mma.sync, ldmatrix): every lane must execute the same one, so lanes
    // meet only at the same call site; other collectives may meet from different sites.
    bool aligned;
    const char *file;
    int line;
};

struct Warp {
    unsigned present; // lanes that exist (the last warp of a block may be partial)
    unsigned exited;
    unsigned waiting; // lanes blocked in a warp collective
    unsigned ngroups; // open collectives; disjoint masks may be in flight together
    Group groups[32];
};

struct Launch {
    const char *name;
    rlx_simt_dim3 grid, block;
    size_t smem;
    void (*entry)(void *);
    void *ctx;
    unsigned nthreads;
    uint64_t nblocks;
    bool reverse, strict;
    size_t stack;
    std::atomic<uint64_t> next{0};
    std::atomic<int> helper_slots{0}; // pool helpers that take part (the rest go back to sleep)
    std::atomic<bool> failed{false};
    std::mutex error_mutex;
    std::string error;
};

struct Block {
    Launch *L;
    uint3 idx;
    Fiber *fibers;
    unsigned n, nwarps;
    Warp warps[32];
    unsigned live;
    // Current block-barrier phase.
    unsigned arrived = 0, count = 0;
    Fiber *first_arrival = nullptr;
    Fiber *exited_in_phase = nullptr; // first thread that exited since the last release
    unsigned result_count = 0, result_arrived = 0;
    unsigned char *dyn = nullptr;
    bool failed = false;
};

struct Stack {
    char *map = nullptr;
    size_t map_bytes = 0;
    char *lo = nullptr;
    size_t size = 0;
};

// Everything an OS thread needs to run blocks; lives as long as the thread.
struct Worker {
    std::vector<Stack> stacks;
    std::vector<Fiber> fibers;
    Block *block = nullptr;
    Fiber *cur = nullptr;
    bctx::fcontext_t sched_fc = nullptr;
    void *sched_fake = nullptr;
    const void *sched_lo = nullptr;
    size_t sched_size = 0;
    uint64_t switches = 0;
    // This OS thread's static TLS blocks, where function-local `__shared__` (static thread_local)
    // variables live: [lo, hi) per module, read once with dl_iterate_phdr.
    std::vector<std::pair<uintptr_t, uintptr_t>> tls;
    bool tls_read = false;

    ~Worker() { release_stacks(); }
    void release_stacks() {
        for (Stack &s : stacks) munmap(s.map, s.map_bytes);
        stacks.clear();
    }
    // Stacks are reused across blocks and launches; each has a PROT_NONE guard page below it,
    // so an overflow faults instead of silently corrupting the neighbouring fiber.
    bool ensure_stacks(unsigned n, size_t size) {
        if (!stacks.empty() && stacks[0].size != size) release_stacks();
        const size_t page = (size_t)sysconf(_SC_PAGESIZE);
        while (stacks.size() < n) {
            Stack s;
            s.map_bytes = size + page;
            void *m = mmap(nullptr, s.map_bytes, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
            if (m == MAP_FAILED) return false;
            s.map = static_cast<char *>(m);
            if (mprotect(s.map, page, PROT_NONE) != 0) {
                munmap(m, s.map_bytes);
                return false;
            }
            s.lo = s.map + page;
            s.size = size;
            stacks.push_back(s);
        }
        return true;
    }
};
thread_local Worker t_worker;

// ---- messages --------------------------------------------------------------------------------

// Messages are built in fixed buffers, never on the heap: a failing fiber is abandoned with its
// stack, so nothing on that stack is ever destroyed (a std::string there would leak).
struct Text {
    char s[1024];
    const char *c_str() const { return s; }
};
Text fmt_v(const char *f, va_list ap) {
    Text t;
    vsnprintf(t.s, sizeof t.s, f, ap);
    return t;
}
Text fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
Text fmt(const char *f, ...) {
    va_list ap;
    va_start(ap, f);
    Text t = fmt_v(f, ap);
    va_end(ap);
    return t;
}
Text thread_name(const Fiber &f) {
    return fmt("thread (%u,%u,%u) [warp %u lane %u]", f.ctx.thread_idx.x, f.ctx.thread_idx.y,
               f.ctx.thread_idx.z, f.ctx.warp, f.ctx.lane);
}
Text site(const char *op, const char *file, int line) {
    return fmt("%s at %s:%d", op ? op : "?", file ? file : "?", line);
}
Text wait_site(const Fiber &f) { return site(f.op, f.file, f.line); }
// Sites are string literals: usually the same pointer, compared by content otherwise.
inline bool same_str(const char *a, const char *b) { return a == b || strcmp(a, b) == 0; }

void record_error(Launch &L, const Text &msg) {
    std::lock_guard<std::mutex> lk(L.error_mutex);
    if (L.error.empty()) L.error = msg.c_str();
    L.failed.store(true);
}
// Fails the block's launch naming the kernel, the block and the given thread.
void fail_block(Block &B, const Fiber &f, const Text &what) {
    record_error(*B.L, fmt("simt: kernel '%s' block (%u,%u,%u) %s: %s", B.L->name, B.idx.x,
                           B.idx.y, B.idx.z, thread_name(f).c_str(), what.c_str()));
    B.failed = true;
}

// ---- fiber switching -------------------------------------------------------------------------
// A pass runs the runnable fibers in position order (position k is thread k forward, thread
// n-1-k in reverse). A fiber that blocks switches straight to the next runnable fiber of the pass
// (one switch instead of two through the scheduler); the last one switches to the scheduler,
// which starts the next pass. Every jump passes the slot where the jumper's continuation is to
// be stored, and the side that lands stores it there.

Fiber *next_in_pass(Worker &W, unsigned from_pos) {
    Block &B = *W.block;
    if (B.failed || B.L->failed.load(std::memory_order_relaxed)) return nullptr;
    const bool rev = B.L->reverse;
    for (unsigned k = from_pos; k < B.n; ++k) {
        Fiber &f = B.fibers[rev ? B.n - 1 - k : k];
        if (f.state == State::Runnable) return &f;
    }
    return nullptr;
}

// Runs in the context that was just switched to (`self`; null for the scheduler).
inline void landed(Worker &W, bctx::transfer_t t, Fiber *self) {
    *static_cast<bctx::fcontext_t *>(t.data) = t.fctx;
#if RLX_SIMT_ASAN
    const void *lo = nullptr;
    size_t size = 0;
    __sanitizer_finish_switch_fiber(self ? self->asan_fake : W.sched_fake, &lo, &size);
    if (t.data == &W.sched_fc) { // came from the scheduler: remember its stack for the way back
        W.sched_lo = lo;
        W.sched_size = size;
    }
#else
    (void)W;
    (void)self;
#endif
}

// From the running context (fiber `from`, or the scheduler when null) to fiber `to` (or the
// scheduler when null); returns when something switches back to `from`.
void switch_to(Worker &W, Fiber *from, Fiber *to) {
    bctx::fcontext_t *slot = from ? &from->fc : &W.sched_fc;
    const bctx::fcontext_t target = to ? to->fc : W.sched_fc;
    W.cur = to;
    tls_cur = to ? &to->ctx : nullptr;
    W.switches++;
#if RLX_SIMT_ASAN
    __sanitizer_start_switch_fiber(from ? &from->asan_fake : &W.sched_fake,
                                   to ? to->stack_lo : W.sched_lo,
                                   to ? to->stack_size : W.sched_size);
#endif
    bctx::transfer_t t = bctx::jump_fcontext(target, slot);
    landed(W, t, from);
}

// The running fiber leaves for good (it exited, or its block failed).
[[noreturn]] void switch_away_for_good(Worker &W, Fiber *from, Fiber *to) {
    const bctx::fcontext_t target = to ? to->fc : W.sched_fc;
    W.cur = to;
    tls_cur = to ? &to->ctx : nullptr;
    W.switches++;
#if RLX_SIMT_ASAN
    __sanitizer_start_switch_fiber(nullptr, to ? to->stack_lo : W.sched_lo,
                                   to ? to->stack_size : W.sched_size); // drops its fake stack
#endif
    bctx::jump_fcontext(target, &from->fc);
    abort(); // unreachable: an exited or dead fiber is never resumed
}

// The running fiber has blocked (or released others); let the rest of the pass run.
void yield(Worker &W) {
    Fiber *me = W.cur;
    switch_to(W, me, next_in_pass(W, me->pos + 1));
}

// Fails the launch from the running fiber and parks it for good: the scheduler abandons the
// block, and the fiber's stack is reclaimed with the block.
[[noreturn]] void fail_here(Worker &W, const Text &what) {
    Fiber &f = *W.cur;
    fail_block(*W.block, f, what);
    f.state = State::Dead;
    switch_away_for_good(W, &f, nullptr);
}

// ---- block barrier ---------------------------------------------------------------------------

void release_block_barrier(Block &B) {
    B.result_count = B.count;
    B.result_arrived = B.arrived;
    B.arrived = 0;
    B.count = 0;
    B.first_arrival = nullptr;
    B.exited_in_phase = nullptr;
    for (unsigned i = 0; i < B.n; ++i)
        if (B.fibers[i].state == State::BlockBar) B.fibers[i].state = State::Runnable;
}

void arrive_block_barrier(const char *op, int pred, const char *file, int line) {
    Worker &W = t_worker;
    Block &B = *W.block;
    Fiber &f = *W.cur;
    if (B.L->strict && B.exited_in_phase)
        fail_here(W, fmt("reaches %s, but %s exited without reaching it (threads must not exit "
                         "before a barrier the rest of the block reaches)",
                         site(op, file, line).c_str(), thread_name(*B.exited_in_phase).c_str()));
    if (B.first_arrival) {
        const Fiber &g = *B.first_arrival;
        if (g.line != line || !same_str(g.file, file) || !same_str(g.op, op))
            fail_here(W, fmt("divergent barrier: waits at %s while %s waits at %s",
                             site(op, file, line).c_str(), thread_name(g).c_str(),
                             wait_site(g).c_str()));
    } else {
        B.first_arrival = &f;
    }
    f.state = State::BlockBar;
    f.op = op;
    f.file = file;
    f.line = line;
    B.arrived++;
    B.count += pred != 0;
    if (B.arrived == B.live) release_block_barrier(B);
    yield(W);
}

// ---- warp collectives ------------------------------------------------------------------------

// Runs the combine step of group gi (all its lanes have arrived) and releases its lanes.
void complete_warp_collective(Worker &W, Block &B, unsigned warp, unsigned gi, CombineFn fn) {
    Warp &w = B.warps[warp];
    const unsigned need = w.groups[gi].mask & w.present;
    Fiber *base = B.fibers + warp * 32;
    void *lanes[32] = {};
    for (unsigned rest = need; rest; rest &= rest - 1) {
        const unsigned l = (unsigned)__builtin_ctz(rest);
        lanes[l] = base[l].wdata;
    }
    const char *err = fn(lanes, need);
    if (err) fail_here(W, fmt("%s: %s", wait_site(*W.cur).c_str(), err));
    for (unsigned rest = need; rest; rest &= rest - 1) {
        Fiber &g = base[__builtin_ctz(rest)];
        g.state = State::Runnable;
        g.wdata = nullptr;
    }
    w.waiting &= ~need;
    w.groups[gi] = w.groups[--w.ngroups];
}

void arrive_warp_collective(const char *op, unsigned mask, void *data, CombineFn fn,
                            const char *file, int line, bool aligned) {
    Worker &W = t_worker;
    Block &B = *W.block;
    Fiber &f = *W.cur;
    Warp &w = B.warps[f.ctx.warp];
    const unsigned bit = 1u << f.ctx.lane;
    if (!(mask & bit))
        fail_here(W, fmt("%s: mask 0x%08x does not include the calling lane %u",
                         site(op, file, line).c_str(), mask, f.ctx.lane));
    const unsigned need = mask & w.present;
    if (need & w.exited) {
        const unsigned l = (unsigned)__builtin_ctz(need & w.exited);
        fail_here(W, fmt("%s: mask 0x%08x names lane %u, which has exited",
                         site(op, file, line).c_str(), mask, l));
    }
    // Join the open collective with the same intrinsic and mask, or open one. Two lanes that
    // name each other must meet in the same intrinsic with the same mask, or they wait for each
    // other forever. A lane waiting in a collective that does not name this lane (or that this
    // one does not need) is fine: it may come here afterwards (independent thread scheduling);
    // longer cycles are found as deadlocks when no fiber can run.
    Fiber *base = B.fibers + f.ctx.warp * 32;
    unsigned gi = w.ngroups;
    for (unsigned i = 0; i < w.ngroups; ++i) {
        const Group &G = w.groups[i];
        if (G.mask == mask && same_str(G.op, op) &&
            (!aligned || (G.line == line && same_str(G.file, file)))) {
            gi = i;
            continue;
        }
        if (aligned && G.aligned && (G.mask & bit) && (need & G.arrived) && same_str(G.op, op)) {
            const Fiber &g = base[__builtin_ctz(need & G.arrived)];
            fail_here(W, fmt("divergent warp collective: %s is .aligned (every lane of the warp "
                             "executes the same instruction), but this lane reaches it at %s:%d "
                             "while %s waits at %s",
                             op, file, line, thread_name(g).c_str(), wait_site(g).c_str()));
        }
        if ((G.mask & bit) && (need & G.arrived)) {
            const Fiber &g = base[__builtin_ctz(need & G.arrived)];
            fail_here(W, fmt("divergent warp collective: %s (mask 0x%08x) while %s waits for this "
                             "lane at %s (mask 0x%08x)",
                             site(op, file, line).c_str(), mask, thread_name(g).c_str(),
                             wait_site(g).c_str(), g.wmask));
        }
    }
    if (gi == w.ngroups) w.groups[w.ngroups++] = Group{mask, 0, op, aligned, file, line};
    Group &G = w.groups[gi];
    G.arrived |= bit;
    f.state = State::WarpBar;
    f.op = op;
    f.file = file;
    f.line = line;
    f.wmask = mask;
    f.wdata = data;
    f.wfn = fn;
    w.waiting |= bit;
    if ((G.arrived & need) == need) complete_warp_collective(W, B, f.ctx.warp, gi, fn);
    yield(W);
}

// ---- thread exit -----------------------------------------------------------------------------

void on_exit(Worker &W) {
    Block &B = *W.block;
    Fiber &f = *W.cur;
    Warp &w = B.warps[f.ctx.warp];
    const unsigned bit = 1u << f.ctx.lane;
    Fiber *base = B.fibers + f.ctx.warp * 32;
    for (unsigned i = 0; i < w.ngroups; ++i) {
        const Group &G = w.groups[i];
        if (!(G.mask & bit)) continue;
        const Fiber &g = base[__builtin_ctz(G.arrived)];
        fail_here(W, fmt("exits while %s waits for it at %s (mask 0x%08x)", thread_name(g).c_str(),
                         wait_site(g).c_str(), G.mask));
    }
    if (B.L->strict && B.arrived > 0)
        fail_here(W, fmt("exits while %u thread(s) wait at %s, e.g. %s (threads must not exit "
                         "before a barrier the rest of the block reaches)",
                         B.arrived, wait_site(*B.first_arrival).c_str(),
                         thread_name(*B.first_arrival).c_str()));
    f.state = State::Exited;
    f.cp.clear(); // copies never waited for never become visible
    w.exited |= bit;
    B.live--;
    if (!B.exited_in_phase) B.exited_in_phase = &f;
    if (B.arrived > 0 && B.arrived == B.live) release_block_barrier(B);
}

void fiber_entry(bctx::transfer_t t) {
    Worker &W = t_worker;
    Fiber *self = W.cur;
    landed(W, t, self);
    Launch &L = *W.block->L;
    L.entry(L.ctx);
    on_exit(W);
    switch_away_for_good(W, self, next_in_pass(W, self->pos + 1));
}

// ---- the per-block scheduler -----------------------------------------------------------------

void diagnose_deadlock(Block &B) {
    for (unsigned i = 0; i < B.n; ++i) {
        const Fiber &f = B.fibers[i];
        if (f.state != State::WarpBar) continue;
        const Warp &w = B.warps[f.ctx.warp];
        const Fiber *base = B.fibers + f.ctx.warp * 32;
        unsigned missing = 0; // lanes of the mask not waiting in this same collective
        for (unsigned l = 0; l < 32; ++l)
            if ((f.wmask & w.present) >> l & 1u)
                if (base[l].state != State::WarpBar || base[l].wmask != f.wmask ||
                    strcmp(base[l].op, f.op) != 0)
                    missing |= 1u << l;
        if (!missing) continue;
        const Fiber &g = base[(unsigned)__builtin_ctz(missing)];
        const Text where = g.state == State::BlockBar || g.state == State::WarpBar
                               ? fmt("waits at %s", wait_site(g).c_str())
                               : fmt("cannot proceed");
        fail_block(B, f,
                   fmt("deadlock: waits at %s (mask 0x%08x) for %s, which %s", wait_site(f).c_str(),
                       f.wmask, thread_name(g).c_str(), where.c_str()));
        return;
    }
    for (unsigned i = 0; i < B.n; ++i) {
        const Fiber &f = B.fibers[i];
        if (f.state == State::BlockBar || f.state == State::WarpBar) {
            fail_block(B, f, fmt("deadlock: %u live thread(s) blocked; this one waits at %s",
                                 B.live, wait_site(f).c_str()));
            return;
        }
    }
}

uint3 unflatten(uint64_t i, rlx_simt_dim3 d) {
    uint3 r;
    r.x = (unsigned)(i % d.x);
    r.y = (unsigned)((i / d.x) % d.y);
    r.z = (unsigned)(i / ((uint64_t)d.x * d.y));
    return r;
}

void run_block(Launch &L, uint64_t linear_block) {
    Worker &W = t_worker;
    const unsigned n = L.nthreads;
    if (!W.ensure_stacks(n, L.stack)) {
        record_error(L, fmt("simt: kernel '%s': cannot map %u fiber stacks of %zu bytes", L.name, n,
                            L.stack));
        return;
    }
    if (W.fibers.size() < n) W.fibers.resize(n);

    Block B;
    B.L = &L;
    B.idx = unflatten(linear_block, L.grid);
    B.fibers = W.fibers.data();
    B.n = n;
    B.nwarps = (n + 31) / 32;
    B.live = n;
    for (unsigned w = 0; w < B.nwarps; ++w) {
        const unsigned lanes = n - w * 32 >= 32 ? 32 : n - w * 32;
        B.warps[w].present = lanes == 32 ? ~0u : (1u << lanes) - 1;
        B.warps[w].exited = B.warps[w].waiting = B.warps[w].ngroups = 0;
    }
    // Dynamic shared memory: an exact-size heap block (so ASan sees overruns), NaN-filled so a
    // read before the first write shows up in the output.
    void *dyn = nullptr;
    if (posix_memalign(&dyn, 128, L.smem) != 0) {
        record_error(L, fmt("simt: kernel '%s': cannot allocate %zu bytes of dynamic shared memory",
                            L.name, L.smem));
        return;
    }
    if (L.smem) memset(dyn, kSmemPoison, L.smem);
    B.dyn = static_cast<unsigned char *>(dyn);

    const dim3 bdim(L.block.x, L.block.y, L.block.z), gdim(L.grid.x, L.grid.y, L.grid.z);
    for (unsigned i = 0; i < n; ++i) {
        Fiber &f = W.fibers[i];
        f.ctx.thread_idx = unflatten(i, L.block);
        f.ctx.block_idx = B.idx;
        f.ctx.block_dim = bdim;
        f.ctx.grid_dim = gdim;
        f.ctx.linear = i;
        f.ctx.lane = i & 31;
        f.ctx.warp = i >> 5;
        f.pos = L.reverse ? n - 1 - i : i;
        f.state = State::Runnable;
        f.op = f.file = nullptr;
        f.line = 0;
        f.wmask = 0;
        f.wdata = nullptr;
        f.wfn = nullptr;
        f.cp.clear();
        f.cp_commits = 0;
        f.asan_fake = nullptr;
        f.stack_lo = W.stacks[i].lo;
        f.stack_size = W.stacks[i].size;
        f.fc = bctx::make_fcontext(f.stack_lo + f.stack_size, f.stack_size, fiber_entry);
    }

    W.block = &B;
    for (;;) {
        if (B.failed || B.live == 0) break;
        if (L.failed.load()) { // another block failed: stop this one too
            B.failed = true;
            break;
        }
        Fiber *first = next_in_pass(W, 0);
        if (!first) { // live threads, none can run
            diagnose_deadlock(B);
            break;
        }
        switch_to(W, nullptr, first); // one pass
    }
    W.block = nullptr;
#if RLX_SIMT_ASAN
    // Abandoned fibers leave their frames' redzones poisoned; the stacks are reused.
    if (B.failed)
        for (unsigned i = 0; i < n; ++i) ASAN_UNPOISON_MEMORY_REGION(W.stacks[i].lo, W.stacks[i].size);
#endif
    free(dyn);
    g_blocks.fetch_add(1, std::memory_order_relaxed);
    g_threads.fetch_add(n, std::memory_order_relaxed);
    g_switches.fetch_add(W.switches, std::memory_order_relaxed);
    W.switches = 0;
}

void work(Launch &L) {
    for (;;) {
        if (L.failed.load()) return;
        const uint64_t i = L.next.fetch_add(1);
        if (i >= L.nblocks) return;
        run_block(L, L.reverse ? L.nblocks - 1 - i : i);
    }
}

// ---- the block pool --------------------------------------------------------------------------

// nthreads - 1 helper threads; the launching thread is the last worker. One job at a time.
struct Pool {
    std::mutex m;
    std::condition_variable cv_start, cv_done;
    std::vector<std::thread> threads;
    Launch *job = nullptr;
    uint64_t gen = 0;
    unsigned busy = 0;

    explicit Pool(unsigned helpers) {
        for (unsigned i = 0; i < helpers; ++i) threads.emplace_back([this] { loop(); });
    }
    void loop() {
        uint64_t seen = 0;
        for (;;) {
            Launch *L;
            {
                std::unique_lock<std::mutex> lk(m);
                cv_start.wait(lk, [&] { return gen != seen; });
                seen = gen;
                L = job;
            }
            if (L->helper_slots.fetch_sub(1) > 0) work(*L);
            std::lock_guard<std::mutex> lk(m);
            if (--busy == 0) cv_done.notify_all();
        }
    }
    void run(Launch &L) {
        {
            std::lock_guard<std::mutex> lk(m);
            job = &L;
            busy = (unsigned)threads.size();
            gen++;
        }
        cv_start.notify_all();
        work(L);
        std::unique_lock<std::mutex> lk(m);
        cv_done.wait(lk, [&] { return busy == 0; });
        job = nullptr;
    }
};

std::mutex g_launch_mutex; // one launch at a time: the pool has one job slot
Pool *g_pool = nullptr;    // never destroyed: helpers sleep until the process exits
unsigned g_pool_size = 0;
std::once_flag g_atfork_once;

void atfork_child() {
    // The helpers do not exist in a forked child; start a fresh pool there on first use.
    g_pool = nullptr;
    g_pool_size = 0;
    new (&g_launch_mutex) std::mutex();
}

int set_status(int status, const char *msg) {
    t_status = status;
    t_error = msg;
    return status;
}
int set_status(int status, const Text &msg) { return set_status(status, msg.c_str()); }

} // namespace

// ---- entry points called by the shim ---------------------------------------------------------

void block_barrier(const char *op, const char *file, int line) {
    arrive_block_barrier(op, 0, file, line);
}

void block_barrier_count(const char *op, int pred, unsigned *count, unsigned *arrived,
                         const char *file, int line) {
    arrive_block_barrier(op, pred, file, line);
    // Stable until this fiber arrives at the next barrier: that one cannot release without it.
    *count = t_worker.block->result_count;
    *arrived = t_worker.block->result_arrived;
}

void warp_collective(const char *op, unsigned mask, void *lane_data, CombineFn fn,
                     const char *file, int line) {
    arrive_warp_collective(op, mask, lane_data, fn, file, line, false);
}

void warp_collective_aligned(const char *op, unsigned mask, void *lane_data, CombineFn fn,
                             const char *file, int line) {
    arrive_warp_collective(op, mask, lane_data, fn, file, line, true);
}

namespace {
int add_tls_range(struct dl_phdr_info *info, size_t, void *arg) {
    auto *out = static_cast<std::vector<std::pair<uintptr_t, uintptr_t>> *>(arg);
    if (!info->dlpi_tls_data) return 0;
    for (int i = 0; i < info->dlpi_phnum; ++i)
        if (info->dlpi_phdr[i].p_type == PT_TLS) {
            const uintptr_t lo = (uintptr_t)info->dlpi_tls_data;
            out->emplace_back(lo, lo + info->dlpi_phdr[i].p_memsz);
        }
    return 0;
}
bool in_tls(const std::vector<std::pair<uintptr_t, uintptr_t>> &v, uintptr_t a, size_t n) {
    for (const auto &r : v)
        if (a >= r.first && a + n <= r.second) return true;
    return false;
}
} // namespace

bool shared_address(const void *p, size_t n) {
    Worker &W = t_worker;
    const uintptr_t a = (uintptr_t)p;
    const Block *B = W.block;
    if (B && B->dyn && a >= (uintptr_t)B->dyn && a + n <= (uintptr_t)B->dyn + B->L->smem) return true;
    if (!W.tls_read) {
        dl_iterate_phdr(add_tls_range, &W.tls);
        W.tls_read = true;
    }
    if (in_tls(W.tls, a, n)) return true;
    // a module (and its TLS) may have appeared since: read them again before saying no
    W.tls.clear();
    dl_iterate_phdr(add_tls_range, &W.tls);
    return in_tls(W.tls, a, n);
}

unsigned active_mask() {
    Worker &W = t_worker;
    const Warp &w = W.block->warps[W.cur->ctx.warp];
    return w.present & ~w.exited;
}

void *dynamic_smem() { return t_worker.block->dyn; }

void cp_async(void *dst, const void *src, unsigned bytes, unsigned src_bytes, const char *file,
              int line) {
    Worker &W = t_worker;
    if (!shared_address(dst, bytes))
        fail_here(W, fmt("cp.async at %s:%d: destination %p is not shared memory (a __shared__ "
                         "variable or the block's dynamic shared memory); cp.async copies global "
                         "to shared",
                         file, line, dst));
    if (src_bytes && shared_address(src, src_bytes))
        fail_here(W, fmt("cp.async at %s:%d: source %p is shared memory; cp.async reads global memory",
                         file, line, src));
    if (((uintptr_t)dst | (src_bytes ? (uintptr_t)src : 0)) % bytes != 0)
        fail_here(W, fmt("cp.async at %s:%d: %u-byte copy %p <- %p is not %u-byte aligned", file,
                         line, bytes, dst, src, bytes));
    if (src_bytes > bytes)
        fail_here(W, fmt("cp.async at %s:%d: src_bytes %u > %u", file, line, src_bytes, bytes));
    Fiber &f = *W.cur;
    f.cp.push_back(CpOp{dst, src, bytes, src_bytes, f.cp_commits});
    // Until the wait that covers it, the destination holds nothing a reader may rely on: another
    // thread still reading the old tile there (a prefetch without the barrier after the last read
    // of the buffer) sees the poison, in either thread order.
    memset(dst, kSmemPoison, bytes);
}

void cp_async_commit() { t_worker.cur->cp_commits++; }

void cp_async_wait(int allowed) {
    Fiber &f = *t_worker.cur;
    // Groups 0..commits-1 are committed; all but the newest `allowed` must be complete.
    const long limit = (long)f.cp_commits - (allowed < 0 ? 0 : allowed);
    size_t keep = 0;
    for (size_t i = 0; i < f.cp.size(); ++i) {
        const CpOp &c = f.cp[i];
        if ((long)c.group < limit) {
            if (c.src_bytes) memcpy(c.dst, c.src, c.src_bytes);
            memset(static_cast<char *>(c.dst) + c.src_bytes, 0, c.bytes - c.src_bytes);
        } else {
            f.cp[keep++] = c;
        }
    }
    f.cp.resize(keep);
}

void fail(const char *file, int line, const char *f, ...) {
    va_list ap;
    va_start(ap, f);
    const Text msg = fmt_v(f, ap);
    va_end(ap);
    fail_here(t_worker, fmt("%s (%s:%d)", msg.c_str(), file, line));
}

} // namespace rlx_simt

// ---- C API -----------------------------------------------------------------------------------

using namespace rlx_simt;

extern "C" int rlx_simt_launch(const char *kernel_name, rlx_simt_dim3 grid, rlx_simt_dim3 block,
                               size_t smem, void (*entry)(void *), void *ctx) {
    if (!kernel_name) kernel_name = "?";
    if (tls_cur)
        return set_status(cudaErrorNotSupported,
                          fmt("simt: kernel '%s': launched from inside a kernel (dynamic "
                              "parallelism is not supported)", kernel_name));
    const uint64_t nthreads = (uint64_t)block.x * block.y * block.z;
    if (!entry || block.x == 0 || block.y == 0 || block.z == 0 || block.x > 1024 ||
        block.y > 1024 || block.z > 64 || nthreads > 1024 || grid.x == 0 || grid.y == 0 ||
        grid.z == 0 || grid.x > 0x7fffffffu || grid.y > 65535 || grid.z > 65535)
        return set_status(cudaErrorInvalidConfiguration,
                          fmt("simt: kernel '%s': invalid launch configuration grid (%u,%u,%u) "
                              "block (%u,%u,%u)", kernel_name, grid.x, grid.y, grid.z, block.x,
                              block.y, block.z));
    if (smem > max_dynamic_smem())
        return set_status(cudaErrorInvalidValue,
                          fmt("simt: kernel '%s': %zu bytes of dynamic shared memory > %zu, the "
                              "per-block maximum of sm_%d%s",
                              kernel_name, smem, max_dynamic_smem(), target_arch(),
                              target_arch() < 90 ? " (A100; RLX_SIMT_ARCH=90 checks sm_90's 232448)" : " (H100/H200)"));

    Launch L;
    L.name = kernel_name;
    L.grid = grid;
    L.block = block;
    L.smem = smem;
    L.entry = entry;
    L.ctx = ctx;
    L.nthreads = (unsigned)nthreads;
    L.nblocks = (uint64_t)grid.x * grid.y * grid.z;
    L.reverse = reverse_order();
    L.strict = strict_exit();
    L.stack = stack_bytes();

    {
        std::lock_guard<std::mutex> lk(g_launch_mutex);
        std::call_once(g_atfork_once, [] { pthread_atfork(nullptr, nullptr, atfork_child); });
        const unsigned want = (unsigned)pool_threads();
        // Waking helpers costs tens of microseconds: worth it only with at least ~1024 CUDA
        // threads of work per OS thread.
        const uint64_t by_work = std::max<uint64_t>(1, L.nblocks * L.nthreads / 1024);
        const unsigned workers = (unsigned)std::min<uint64_t>({want, L.nblocks, by_work});
        if (workers <= 1) {
            work(L);
        } else {
            if (!g_pool || g_pool_size != want) {
                // A resized pool replaces the old one; the old helpers stay asleep (leaked).
                g_pool = new Pool(want - 1);
                g_pool_size = want;
            }
            L.helper_slots.store((int)workers - 1);
            g_pool->run(L);
        }
    }
    g_launches.fetch_add(1, std::memory_order_relaxed);
    if (L.failed.load()) return set_status(cudaErrorLaunchFailure, L.error.c_str());
    return set_status(cudaSuccess, "");
}

extern "C" const char *rlx_simt_last_error(void) { return t_error.c_str(); }
extern "C" void rlx_simt_clear_error(void) {
    t_error.clear();
    t_status = 0;
}
extern "C" int rlx_simt_last_status(int clear) {
    const int s = t_status;
    if (clear) t_status = 0;
    return s;
}
extern "C" void rlx_simt_set_order(rlx_simt_order order) { g_config.order.store((int)order); }
extern "C" rlx_simt_order rlx_simt_get_order(void) {
    return reverse_order() ? RLX_SIMT_REVERSE : RLX_SIMT_FORWARD;
}
extern "C" void rlx_simt_set_threads(int n) { g_config.threads.store(n < 0 ? 0 : n); }
extern "C" int rlx_simt_get_threads(void) { return pool_threads(); }
extern "C" void rlx_simt_set_stack_size(size_t bytes) { g_config.stack.store(bytes); }
extern "C" size_t rlx_simt_get_stack_size(void) { return stack_bytes(); }
extern "C" void rlx_simt_set_target_arch(int sm) { g_config.arch.store(sm < 0 ? 0 : sm); }
extern "C" int rlx_simt_get_target_arch(void) { return target_arch(); }
extern "C" size_t rlx_simt_max_dynamic_smem(void) { return max_dynamic_smem(); }
extern "C" void rlx_simt_set_strict_exit(int strict) { g_config.strict_exit.store(strict ? 1 : 0); }
extern "C" int rlx_simt_get_strict_exit(void) { return strict_exit() ? 1 : 0; }
extern "C" void rlx_simt_get_stats(rlx_simt_stats *out) {
    out->launches = g_launches.load();
    out->blocks = g_blocks.load();
    out->threads = g_threads.load();
    out->switches = g_switches.load();
}
extern "C" void rlx_simt_reset_stats(void) {
    g_launches = 0;
    g_blocks = 0;
    g_threads = 0;
    g_switches = 0;
}
