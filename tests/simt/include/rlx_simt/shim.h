/* rlx simt shim: what a .cu kernel file needs in order to compile as host C++ and run on the CPU.
 *
 * Included (only) through kernels/common/rlx_cuda.cuh when RLX_SIMT=1. Each CUDA thread is a
 * fiber; the built-in variables read the running fiber's context; barriers and warp collectives
 * switch fibers; device memory is host memory. The execution model and its limits are in
 * tests/simt/README.md; kernel-author conventions are in kernels/README.md.
 *
 * Sections: toolkit headers and qualifiers | runtime ABI | built-in variables | barriers and warp
 * collectives | atomics and fences | intrinsics (float, integer, bf16) | launch | CUDA runtime API
 * subset. */
#ifndef RLX_SIMT_SHIM_H
#define RLX_SIMT_SHIM_H

#ifndef __cplusplus
#error "rlx_simt/shim.h is C++: kernels compile as C++17 under simt"
#endif
#if defined(__CUDACC__)
#error "rlx_simt/shim.h is for host compilers; nvcc builds kernels natively"
#endif

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <tuple>
#include <type_traits>
#include <utility>

/* The toolkit's headers compile with g++ when __CUDACC__ is not defined: qualifiers become empty,
 * vector types and bf16/fp16 get their host implementations. cuda_runtime_api.h comes in with
 * them (declarations only; simt never links cudart). */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <driver_types.h>
#include <vector_functions.h>
#include <vector_types.h>

#include "rlx_simt/runtime.h"

// ---- qualifiers ------------------------------------------------------------------------------
/* One OS thread runs one block at a time, and all fibers of that block run on it, so a
 * function-local `static thread_local` is exactly "one instance per resident block". It is not
 * re-initialised between blocks: like real shared memory it starts with whatever the previous
 * block on that OS thread left (dynamic shared memory, by contrast, is NaN-filled per block). */
#undef __shared__
#define __shared__ static thread_local
#ifndef __launch_bounds__
#define __launch_bounds__(...)
#endif
#ifndef __grid_constant__
#define __grid_constant__
#endif

// ---- runtime ABI (implemented in tests/simt/src/runtime.cpp) --------------------------------
namespace rlx_simt {

/* Per-fiber values of the built-in variables. */
struct ThreadCtx {
    uint3 thread_idx;
    uint3 block_idx;
    dim3 block_dim;
    dim3 grid_dim;
    unsigned linear; /* threadIdx linearised, x fastest */
    unsigned lane;   /* linear % 32 */
    unsigned warp;   /* linear / 32 */
};

/* The running fiber's context; null outside kernels. __thread (not thread_local) so that access
 * from other translation units is a plain TLS load, with no C++ TLS wrapper call. */
extern __thread ThreadCtx *tls_cur __attribute__((tls_model("initial-exec")));

/* A warp collective's completion step. Called once, on the fiber of the last lane to arrive,
 * with every participating lane's data pointer (lanes[l] is null for lanes not in mask); it
 * writes each lane's result through those pointers. Returns null, or an error message that
 * fails the launch. */
typedef const char *(*CombineFn)(void *const *lanes, unsigned mask);

void block_barrier(const char *op, const char *file, int line);
/* __syncthreads_count/and/or: returns the number of arrivals with pred != 0 in *count and the
 * number of arrivals in *arrived. */
void block_barrier_count(const char *op, int pred, unsigned *count, unsigned *arrived,
                         const char *file, int line);
void warp_collective(const char *op, unsigned mask, void *lane_data, CombineFn fn,
                     const char *file, int line);
/* The same for .aligned instructions (mma.sync, ldmatrix): lanes meet only at the same call site;
 * a lane reaching the instruction at another site while others wait fails the launch. */
void warp_collective_aligned(const char *op, unsigned mask, void *lane_data, CombineFn fn,
                             const char *file, int line);
/* True when [p, p + n) lies in shared memory as simt lays it out: the block's dynamic shared
 * memory, or a function-local __shared__ (static thread_local) of the running OS thread. */
bool shared_address(const void *p, size_t n);
unsigned active_mask();
void *dynamic_smem();
/* cp.async emulation: queued per thread, performed at the wait that covers its group. */
void cp_async(void *dst, const void *src, unsigned bytes, unsigned src_bytes, const char *file,
              int line);
void cp_async_commit();
void cp_async_wait(int pending_groups_allowed);
/* Fails the launch from kernel code with a message; never returns to the kernel. */
[[noreturn]] void fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

inline const ThreadCtx &cur() { return *tls_cur; }

} // namespace rlx_simt

// ---- built-in variables ----------------------------------------------------------------------
#define threadIdx (::rlx_simt::cur().thread_idx)
#define blockIdx (::rlx_simt::cur().block_idx)
#define blockDim (::rlx_simt::cur().block_dim)
#define gridDim (::rlx_simt::cur().grid_dim)
static constexpr int warpSize = 32;

// ---- barriers and warp collectives -----------------------------------------------------------
namespace rlx_simt {

inline int syncthreads_count(int pred, const char *file, int line) {
    unsigned c, n;
    block_barrier_count("__syncthreads_count", pred, &c, &n, file, line);
    return (int)c;
}
inline int syncthreads_and(int pred, const char *file, int line) {
    unsigned c, n;
    block_barrier_count("__syncthreads_and", pred, &c, &n, file, line);
    return c == n;
}
inline int syncthreads_or(int pred, const char *file, int line) {
    unsigned c, n;
    block_barrier_count("__syncthreads_or", pred, &c, &n, file, line);
    return c != 0;
}

inline const char *combine_nothing(void *const *, unsigned) { return nullptr; }
inline void syncwarp(const char *file, int line, unsigned mask = 0xffffffffu) {
    warp_collective("__syncwarp", mask, nullptr, combine_nothing, file, line);
}

/* Shuffles. Each lane computes its source lane with the PTX shfl.sync rule (so width and the
 * out-of-section cases behave as on hardware), publishes its value, and reads the source's value
 * after the warp barrier. A source lane that exists but is not in mask (undefined on hardware)
 * yields all-ones bits: NaN for floating types, -1 for integers. */
struct ShflLane {
    uint64_t value;
    uint64_t result;
    unsigned src;
};
inline const char *combine_shfl(void *const *lanes, unsigned mask) {
    for (unsigned l = 0; l < 32; ++l) {
        if (!(mask >> l & 1u)) continue;
        ShflLane *me = static_cast<ShflLane *>(lanes[l]);
        me->result = (mask >> me->src & 1u) ? static_cast<ShflLane *>(lanes[me->src])->value
                                             : ~uint64_t{0};
    }
    return nullptr;
}
enum class ShflMode { Idx, Up, Down, Bfly };
template <typename T>
inline T shfl(const char *op, ShflMode mode, const char *file, int line, unsigned mask, T var,
              int b, int width) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value,
                  "warp shuffles move types of at most 8 bytes");
    if (width <= 0 || width > 32 || (width & (width - 1)))
        fail(file, line, "%s: width %d is not a power of 2 in [1, 32]", op, width);
    const unsigned lane = cur().lane;
    const unsigned first = lane & ~(unsigned)(width - 1), last = first + (unsigned)width - 1;
    const unsigned bval = (unsigned)b & 31u;
    unsigned j = lane;
    switch (mode) {
    case ShflMode::Idx: j = first | (bval & (unsigned)(width - 1)); break;
    case ShflMode::Up: j = (lane >= first + bval) ? lane - bval : lane; break;
    case ShflMode::Down: j = (lane + bval <= last) ? lane + bval : lane; break;
    case ShflMode::Bfly: j = ((lane ^ bval) <= last) ? (lane ^ bval) : lane; break;
    }
    ShflLane d{0, 0, j};
    std::memcpy(&d.value, static_cast<const void *>(&var), sizeof(T));
    warp_collective(op, mask, &d, combine_shfl, file, line);
    T r;
    std::memcpy(static_cast<void *>(&r), &d.result, sizeof(T));
    return r;
}

struct VoteLane {
    int pred;
    unsigned result;
};
inline const char *combine_ballot(void *const *lanes, unsigned mask) {
    unsigned bits = 0;
    for (unsigned l = 0; l < 32; ++l)
        if ((mask >> l & 1u) && static_cast<VoteLane *>(lanes[l])->pred) bits |= 1u << l;
    for (unsigned l = 0; l < 32; ++l)
        if (mask >> l & 1u) static_cast<VoteLane *>(lanes[l])->result = bits;
    return nullptr;
}
inline unsigned ballot(const char *op, const char *file, int line, unsigned mask, int pred) {
    VoteLane d{pred != 0, 0};
    warp_collective(op, mask, &d, combine_ballot, file, line);
    return d.result;
}
inline int any(const char *file, int line, unsigned mask, int pred) {
    return ballot("__any_sync", file, line, mask, pred) != 0;
}
inline const char *combine_all(void *const *lanes, unsigned mask) {
    unsigned all = 1;
    for (unsigned l = 0; l < 32; ++l)
        if ((mask >> l & 1u) && !static_cast<VoteLane *>(lanes[l])->pred) all = 0;
    for (unsigned l = 0; l < 32; ++l)
        if (mask >> l & 1u) static_cast<VoteLane *>(lanes[l])->result = all;
    return nullptr;
}
inline int all(const char *file, int line, unsigned mask, int pred) {
    VoteLane d{pred != 0, 0};
    warp_collective("__all_sync", mask, &d, combine_all, file, line);
    return (int)d.result;
}

/* __reduce_*_sync (sm_80): integer reductions over the lanes in mask. */
enum class RedOp { Add, Min, Max, And, Or, Xor };
struct RedLane {
    uint32_t value;
    uint32_t result;
    RedOp op;
    bool is_signed;
};
inline const char *combine_reduce(void *const *lanes, unsigned mask) {
    const RedLane *first = nullptr;
    for (unsigned l = 0; l < 32 && !first; ++l)
        if (mask >> l & 1u) first = static_cast<RedLane *>(lanes[l]);
    uint32_t acc = first->value;
    bool started = false;
    for (unsigned l = 0; l < 32; ++l) {
        if (!(mask >> l & 1u)) continue;
        uint32_t v = static_cast<RedLane *>(lanes[l])->value;
        if (!started) { acc = v; started = true; continue; }
        switch (first->op) {
        case RedOp::Add: acc += v; break;
        case RedOp::Min:
            acc = first->is_signed ? (uint32_t)std::min((int32_t)acc, (int32_t)v) : std::min(acc, v);
            break;
        case RedOp::Max:
            acc = first->is_signed ? (uint32_t)std::max((int32_t)acc, (int32_t)v) : std::max(acc, v);
            break;
        case RedOp::And: acc &= v; break;
        case RedOp::Or: acc |= v; break;
        case RedOp::Xor: acc ^= v; break;
        }
    }
    for (unsigned l = 0; l < 32; ++l)
        if (mask >> l & 1u) static_cast<RedLane *>(lanes[l])->result = acc;
    return nullptr;
}
template <typename T>
inline T reduce(const char *op, RedOp r, const char *file, int line, unsigned mask, T v) {
    static_assert(sizeof(T) == 4 && std::is_integral<T>::value, "__reduce_*_sync takes 32-bit ints");
    RedLane d{(uint32_t)v, 0, r, std::is_signed<T>::value};
    warp_collective(op, mask, &d, combine_reduce, file, line);
    return (T)d.result;
}

} // namespace rlx_simt

#define __syncthreads() ::rlx_simt::block_barrier("__syncthreads", __FILE__, __LINE__)
#define __syncthreads_count(p) ::rlx_simt::syncthreads_count((p), __FILE__, __LINE__)
#define __syncthreads_and(p) ::rlx_simt::syncthreads_and((p), __FILE__, __LINE__)
#define __syncthreads_or(p) ::rlx_simt::syncthreads_or((p), __FILE__, __LINE__)
#define __syncwarp(...) ::rlx_simt::syncwarp(__FILE__, __LINE__, ##__VA_ARGS__)
#define __activemask() ::rlx_simt::active_mask()

namespace rlx_simt {
template <typename T>
inline T shfl_sync(const char *f, int l, unsigned m, T v, int src, int w = 32) {
    return shfl("__shfl_sync", ShflMode::Idx, f, l, m, v, src, w);
}
template <typename T>
inline T shfl_up_sync(const char *f, int l, unsigned m, T v, unsigned d, int w = 32) {
    return shfl("__shfl_up_sync", ShflMode::Up, f, l, m, v, (int)d, w);
}
template <typename T>
inline T shfl_down_sync(const char *f, int l, unsigned m, T v, unsigned d, int w = 32) {
    return shfl("__shfl_down_sync", ShflMode::Down, f, l, m, v, (int)d, w);
}
template <typename T>
inline T shfl_xor_sync(const char *f, int l, unsigned m, T v, int x, int w = 32) {
    return shfl("__shfl_xor_sync", ShflMode::Bfly, f, l, m, v, x, w);
}
} // namespace rlx_simt

#define __shfl_sync(...) ::rlx_simt::shfl_sync(__FILE__, __LINE__, __VA_ARGS__)
#define __shfl_up_sync(...) ::rlx_simt::shfl_up_sync(__FILE__, __LINE__, __VA_ARGS__)
#define __shfl_down_sync(...) ::rlx_simt::shfl_down_sync(__FILE__, __LINE__, __VA_ARGS__)
#define __shfl_xor_sync(...) ::rlx_simt::shfl_xor_sync(__FILE__, __LINE__, __VA_ARGS__)
#define __ballot_sync(m, p) ::rlx_simt::ballot("__ballot_sync", __FILE__, __LINE__, (m), (p))
#define __any_sync(m, p) ::rlx_simt::any(__FILE__, __LINE__, (m), (p))
#define __all_sync(m, p) ::rlx_simt::all(__FILE__, __LINE__, (m), (p))
#define __reduce_add_sync(m, v) \
    ::rlx_simt::reduce("__reduce_add_sync", ::rlx_simt::RedOp::Add, __FILE__, __LINE__, (m), (v))
#define __reduce_min_sync(m, v) \
    ::rlx_simt::reduce("__reduce_min_sync", ::rlx_simt::RedOp::Min, __FILE__, __LINE__, (m), (v))
#define __reduce_max_sync(m, v) \
    ::rlx_simt::reduce("__reduce_max_sync", ::rlx_simt::RedOp::Max, __FILE__, __LINE__, (m), (v))
#define __reduce_and_sync(m, v) \
    ::rlx_simt::reduce("__reduce_and_sync", ::rlx_simt::RedOp::And, __FILE__, __LINE__, (m), (v))
#define __reduce_or_sync(m, v) \
    ::rlx_simt::reduce("__reduce_or_sync", ::rlx_simt::RedOp::Or, __FILE__, __LINE__, (m), (v))
#define __reduce_xor_sync(m, v) \
    ::rlx_simt::reduce("__reduce_xor_sync", ::rlx_simt::RedOp::Xor, __FILE__, __LINE__, (m), (v))

// ---- atomics and fences ----------------------------------------------------------------------
/* Blocks run concurrently on a pool of OS threads, so atomics are real atomics (sequentially
 * consistent: at least as strong as CUDA's relaxed device-scope atomics, and they order the
 * plain accesses around them the way __threadfence-based patterns expect). */
namespace rlx_simt {
template <typename T, typename F>
inline T atomic_update(T *p, F f) {
    static_assert(sizeof(T) == 2 || sizeof(T) == 4 || sizeof(T) == 8, "atomic width");
    using U = std::conditional_t<sizeof(T) == 2, uint16_t,
                                 std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>>;
    U *u = reinterpret_cast<U *>(p);
    U old_bits = __atomic_load_n(u, __ATOMIC_SEQ_CST);
    for (;;) {
        T old_val;
        std::memcpy(static_cast<void *>(&old_val), &old_bits, sizeof(T));
        const T new_val = f(old_val);
        U new_bits;
        std::memcpy(&new_bits, static_cast<const void *>(&new_val), sizeof(T));
        if (__atomic_compare_exchange_n(u, &old_bits, new_bits, false, __ATOMIC_SEQ_CST,
                                        __ATOMIC_SEQ_CST))
            return old_val;
    }
}
} // namespace rlx_simt

#define RLX_SIMT__ATOMIC_INT(T)                                                                   \
    inline T atomicAdd(T *p, T v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }           \
    inline T atomicSub(T *p, T v) { return __atomic_fetch_sub(p, v, __ATOMIC_SEQ_CST); }           \
    inline T atomicExch(T *p, T v) { return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST); }         \
    inline T atomicAnd(T *p, T v) { return __atomic_fetch_and(p, v, __ATOMIC_SEQ_CST); }           \
    inline T atomicOr(T *p, T v) { return __atomic_fetch_or(p, v, __ATOMIC_SEQ_CST); }             \
    inline T atomicXor(T *p, T v) { return __atomic_fetch_xor(p, v, __ATOMIC_SEQ_CST); }           \
    inline T atomicMin(T *p, T v) {                                                               \
        return ::rlx_simt::atomic_update(p, [v](T o) { return o < v ? o : v; });                   \
    }                                                                                             \
    inline T atomicMax(T *p, T v) {                                                               \
        return ::rlx_simt::atomic_update(p, [v](T o) { return o > v ? o : v; });                   \
    }                                                                                             \
    inline T atomicCAS(T *p, T cmp, T v) {                                                        \
        __atomic_compare_exchange_n(p, &cmp, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);        \
        return cmp;                                                                               \
    }
RLX_SIMT__ATOMIC_INT(int)
RLX_SIMT__ATOMIC_INT(unsigned int)
RLX_SIMT__ATOMIC_INT(unsigned long long)
#undef RLX_SIMT__ATOMIC_INT
inline long long atomicMin(long long *p, long long v) {
    return ::rlx_simt::atomic_update(p, [v](long long o) { return o < v ? o : v; });
}
inline long long atomicMax(long long *p, long long v) {
    return ::rlx_simt::atomic_update(p, [v](long long o) { return o > v ? o : v; });
}
inline unsigned short atomicCAS(unsigned short *p, unsigned short cmp, unsigned short v) {
    __atomic_compare_exchange_n(p, &cmp, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    return cmp;
}
inline unsigned atomicInc(unsigned *p, unsigned limit) {
    return ::rlx_simt::atomic_update(p, [limit](unsigned o) { return o >= limit ? 0u : o + 1; });
}
inline unsigned atomicDec(unsigned *p, unsigned limit) {
    return ::rlx_simt::atomic_update(
        p, [limit](unsigned o) { return (o == 0 || o > limit) ? limit : o - 1; });
}
inline float atomicAdd(float *p, float v) {
    return ::rlx_simt::atomic_update(p, [v](float o) { return o + v; });
}
inline double atomicAdd(double *p, double v) {
    return ::rlx_simt::atomic_update(p, [v](double o) { return o + v; });
}
inline float atomicExch(float *p, float v) {
    return ::rlx_simt::atomic_update(p, [v](float) { return v; });
}
inline __nv_bfloat16 atomicAdd(__nv_bfloat16 *p, __nv_bfloat16 v) {
    return ::rlx_simt::atomic_update(p, [v](__nv_bfloat16 o) {
        return __float2bfloat16_rn(__bfloat162float(o) + __bfloat162float(v));
    });
}
inline __nv_bfloat162 atomicAdd(__nv_bfloat162 *p, __nv_bfloat162 v) {
    return ::rlx_simt::atomic_update(p, [v](__nv_bfloat162 o) {
        return __floats2bfloat162_rn(__low2float(o) + __low2float(v),
                                     __high2float(o) + __high2float(v));
    });
}
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_system() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
/* Fibers of a block share one OS thread: a compiler barrier orders their accesses. */
inline void __threadfence_block() { __atomic_signal_fence(__ATOMIC_SEQ_CST); }

// ---- intrinsics: float -------------------------------------------------------------------------
/* The GPU's fast-math intrinsics (__expf, __fdividef, rsqrtf, ...) are approximations with a few
 * ulp of error; here they are the correctly rounded libm functions. See kernels/README.md. */
inline float __expf(float x) { return expf(x); }
inline float __exp10f(float x) { return powf(10.0f, x); }
inline float __logf(float x) { return logf(x); }
inline float __log2f(float x) { return log2f(x); }
inline float __log10f(float x) { return log10f(x); }
inline float __powf(float x, float y) { return powf(x, y); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __tanf(float x) { return tanf(x); }
inline void __sincosf(float x, float *s, float *c) { *s = sinf(x); *c = cosf(x); }
inline float __fdividef(float x, float y) { return x / y; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return sqrtf(x); }
inline float __frsqrt_rn(float x) { return 1.0f / sqrtf(x); }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float rcbrtf(float x) { return 1.0f / cbrtf(x); }
inline float normcdff(float x) { return 0.5f * erfcf(-x * 0.70710678118654752f); }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : (x == x ? x : 0.0f)); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline int __float2int_rn(float x) { return (int)nearbyintf(x); }
inline int __float2int_rz(float x) { return (int)truncf(x); }
inline int __float2int_rd(float x) { return (int)floorf(x); }
inline int __float2int_ru(float x) { return (int)ceilf(x); }
inline unsigned __float2uint_rn(float x) { return (unsigned)nearbyintf(x); }
inline float __int2float_rn(int x) { return (float)x; }
inline float __uint2float_rn(unsigned x) { return (float)x; }
inline int __float_as_int(float x) { int r; std::memcpy(&r, &x, 4); return r; }
inline unsigned __float_as_uint(float x) { unsigned r; std::memcpy(&r, &x, 4); return r; }
inline float __int_as_float(int x) { float r; std::memcpy(&r, &x, 4); return r; }
inline float __uint_as_float(unsigned x) { float r; std::memcpy(&r, &x, 4); return r; }
inline long long __double_as_longlong(double x) { long long r; std::memcpy(&r, &x, 8); return r; }
inline double __longlong_as_double(long long x) { double r; std::memcpy(&r, &x, 8); return r; }

// ---- intrinsics: integer ---------------------------------------------------------------------
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x ? __builtin_clz((unsigned)x) : 32; }
inline int __clzll(long long x) { return x ? __builtin_clzll((unsigned long long)x) : 64; }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline unsigned __brev(unsigned x) {
    x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
    x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
    x = ((x >> 4) & 0x0f0f0f0fu) | ((x & 0x0f0f0f0fu) << 4);
    x = ((x >> 8) & 0x00ff00ffu) | ((x & 0x00ff00ffu) << 8);
    return (x >> 16) | (x << 16);
}
inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s) {
    const uint64_t v = ((uint64_t)y << 32) | x;
    unsigned r = 0;
    for (int i = 0; i < 4; ++i) r |= (unsigned)((v >> (((s >> (4 * i)) & 7u) * 8)) & 0xffu) << (8 * i);
    return r;
}
inline unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((uint64_t)a * b) >> 32); }
inline int __mulhi(int a, int b) { return (int)(((int64_t)a * b) >> 32); }
inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
    return (unsigned long long)(((unsigned __int128)a * b) >> 64);
}
inline int __mul24(int a, int b) { /* low 32 bits of the product of the sign-extended low 24 bits */
    const int64_t x = (int32_t)((uint32_t)a << 8) >> 8, y = (int32_t)((uint32_t)b << 8) >> 8;
    return (int)(uint32_t)(uint64_t)(x * y);
}
inline unsigned __umul24(unsigned a, unsigned b) { return (a & 0xffffffu) * (b & 0xffffffu); }
inline unsigned __funnelshift_l(unsigned lo, unsigned hi, unsigned s) {
    return (unsigned)((((uint64_t)hi << 32 | lo) << (s & 31)) >> 32);
}
inline unsigned __funnelshift_r(unsigned lo, unsigned hi, unsigned s) {
    return (unsigned)(((uint64_t)hi << 32 | lo) >> (s & 31));
}
inline void __nanosleep(unsigned) {}

/* CUDA's device min/max overloads (host code has only std::min/std::max). */
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline unsigned min(int a, unsigned b) { return min((unsigned)a, b); }
inline unsigned max(int a, unsigned b) { return max((unsigned)a, b); }
inline unsigned min(unsigned a, int b) { return min(a, (unsigned)b); }
inline unsigned max(unsigned a, int b) { return max(a, (unsigned)b); }
inline long min(long a, long b) { return a < b ? a : b; }
inline long max(long a, long b) { return a > b ? a : b; }
inline unsigned long min(unsigned long a, unsigned long b) { return a < b ? a : b; }
inline unsigned long max(unsigned long a, unsigned long b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline unsigned long long min(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
inline unsigned long long max(unsigned long long a, unsigned long long b) { return a > b ? a : b; }
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }

// ---- intrinsics: loads and bf16 --------------------------------------------------------------
/* Cache-hinted loads and stores are plain accesses. */
template <typename T> inline T __ldg(const T *p) { return *p; }
template <typename T> inline T __ldca(const T *p) { return *p; }
template <typename T> inline T __ldcg(const T *p) { return *p; }
template <typename T> inline T __ldcs(const T *p) { return *p; }
template <typename T> inline T __ldlu(const T *p) { return *p; }
template <typename T> inline T __ldcv(const T *p) { return *p; }
template <typename T> inline void __stcg(T *p, T v) { *p = v; }
template <typename T> inline void __stcs(T *p, T v) { *p = v; }
template <typename T> inline void __stwb(T *p, T v) { *p = v; }
template <typename T> inline void __stwt(T *p, T v) { *p = v; }

/* cuda_bf16.h declares these for device code only. Each computes in f32 (double for the fused
 * multiply-add, so the one rounding is to bf16) and rounds to nearest even. */
namespace rlx_simt {
inline float bf(__nv_bfloat16 x) { return __bfloat162float(x); }
inline __nv_bfloat16 to_bf(float x) { return __float2bfloat16_rn(x); }
inline __nv_bfloat16 bf_fma(__nv_bfloat16 a, __nv_bfloat16 b, __nv_bfloat16 c) {
    return __double2bfloat16((double)bf(a) * (double)bf(b) + (double)bf(c));
}
} // namespace rlx_simt
inline __nv_bfloat16 __hfma(__nv_bfloat16 a, __nv_bfloat16 b, __nv_bfloat16 c) {
    return ::rlx_simt::bf_fma(a, b, c);
}
inline __nv_bfloat16 __hfma_relu(__nv_bfloat16 a, __nv_bfloat16 b, __nv_bfloat16 c) {
    __nv_bfloat16 r = ::rlx_simt::bf_fma(a, b, c);
    return __hisnan(r) ? r : (::rlx_simt::bf(r) < 0.0f ? ::rlx_simt::to_bf(0.0f) : r);
}
inline __nv_bfloat162 __hfma2(__nv_bfloat162 a, __nv_bfloat162 b, __nv_bfloat162 c) {
    return __halves2bfloat162(::rlx_simt::bf_fma(a.x, b.x, c.x), ::rlx_simt::bf_fma(a.y, b.y, c.y));
}
/* hexp/h2exp, hsqrt/h2sqrt, ...: scalar and pair versions from one expression. */
#define RLX_SIMT__BF16_UNARY(stem, expr)                                                          \
    inline __nv_bfloat16 h##stem(__nv_bfloat16 h) {                                               \
        const float x = ::rlx_simt::bf(h);                                                        \
        return ::rlx_simt::to_bf(expr);                                                           \
    }                                                                                             \
    inline __nv_bfloat162 h2##stem(__nv_bfloat162 h) {                                            \
        return __halves2bfloat162(h##stem(h.x), h##stem(h.y));                                    \
    }
RLX_SIMT__BF16_UNARY(exp, expf(x))
RLX_SIMT__BF16_UNARY(exp2, exp2f(x))
RLX_SIMT__BF16_UNARY(exp10, powf(10.0f, x))
RLX_SIMT__BF16_UNARY(log, logf(x))
RLX_SIMT__BF16_UNARY(log2, log2f(x))
RLX_SIMT__BF16_UNARY(log10, log10f(x))
RLX_SIMT__BF16_UNARY(sqrt, sqrtf(x))
RLX_SIMT__BF16_UNARY(rsqrt, 1.0f / sqrtf(x))
RLX_SIMT__BF16_UNARY(rcp, 1.0f / x)
RLX_SIMT__BF16_UNARY(sin, sinf(x))
RLX_SIMT__BF16_UNARY(cos, cosf(x))
RLX_SIMT__BF16_UNARY(tanh, tanhf(x))
RLX_SIMT__BF16_UNARY(ceil, ceilf(x))
RLX_SIMT__BF16_UNARY(floor, floorf(x))
RLX_SIMT__BF16_UNARY(trunc, truncf(x))
RLX_SIMT__BF16_UNARY(rint, nearbyintf(x))
#undef RLX_SIMT__BF16_UNARY
inline int __bfloat162int_rn(__nv_bfloat16 h) { return (int)nearbyintf(__bfloat162float(h)); }

// ---- launch ----------------------------------------------------------------------------------
namespace rlx_simt {
/* Behind rlx_launch (kernels/common/rlx_cuda.cuh). The arguments are converted to the kernel's
 * parameter types once, as CUDA does when it copies them to the parameter buffer; every fiber
 * then calls the kernel with its own copies. */
template <typename... KArgs, typename... Args>
inline cudaError_t launch(const char *name, void (*kernel)(KArgs...), dim3 grid, dim3 block,
                          size_t smem_bytes, cudaStream_t stream, Args &&...args) {
    static_assert(sizeof...(KArgs) == sizeof...(Args),
                  "rlx_launch: the number of arguments does not match the kernel's parameters");
    (void)stream; /* launches are synchronous: stream order holds trivially */
    using Tuple = std::tuple<std::decay_t<KArgs>...>;
    struct Pack {
        void (*k)(KArgs...);
        Tuple a;
    };
    Pack p{kernel, Tuple(static_cast<std::decay_t<KArgs>>(std::forward<Args>(args))...)};
    void (*entry)(void *) = [](void *c) {
        Pack *q = static_cast<Pack *>(c);
        std::apply(q->k, q->a);
    };
    if (rlx_simt_capturing()) { /* a stream capture records the launch with its own argument copy */
        Pack *kept = new (std::nothrow) Pack(p);
        if (!kept) return cudaErrorMemoryAllocation;
        return static_cast<cudaError_t>(rlx_simt_capture_launch(
            name, rlx_simt_dim3{grid.x, grid.y, grid.z}, rlx_simt_dim3{block.x, block.y, block.z}, smem_bytes, entry,
            kept, [](void *c) { delete static_cast<Pack *>(c); }));
    }
    return static_cast<cudaError_t>(rlx_simt_launch(name, rlx_simt_dim3{grid.x, grid.y, grid.z},
                                                    rlx_simt_dim3{block.x, block.y, block.z},
                                                    smem_bytes, entry, &p));
}
} // namespace rlx_simt

// ---- CUDA runtime API subset -----------------------------------------------------------------
/* The toolkit headers declared the real cudart functions; simt does not link cudart (the CLI may
 * link both backends), so the few calls a launcher may make are renamed to these. Any other
 * cudart call in a kernel file fails to link in the simt build, on purpose. */
namespace rlx_simt {
inline cudaError_t get_last_error() { return static_cast<cudaError_t>(rlx_simt_last_status(1)); }
inline cudaError_t peek_at_last_error() { return static_cast<cudaError_t>(rlx_simt_last_status(0)); }
inline const char *get_error_string(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorLaunchFailure: return "unspecified launch failure (simt: see rlx_simt_last_error())";
    default: return "simt: unknown error";
    }
}
template <typename K> inline cudaError_t func_set_attribute(K, cudaFuncAttribute, int) {
    return cudaSuccess;
}
inline cudaError_t memset_async(void *p, int v, size_t n, cudaStream_t = nullptr) {
    std::memset(p, v, n);
    return cudaSuccess;
}
inline cudaError_t memcpy_async(void *d, const void *s, size_t n, cudaMemcpyKind,
                                cudaStream_t = nullptr) {
    std::memmove(d, s, n);
    return cudaSuccess;
}
inline cudaError_t synchronize(cudaStream_t = nullptr) { return cudaSuccess; }
} // namespace rlx_simt
#define cudaGetLastError ::rlx_simt::get_last_error
#define cudaPeekAtLastError ::rlx_simt::peek_at_last_error
#define cudaGetErrorString ::rlx_simt::get_error_string
#define cudaFuncSetAttribute ::rlx_simt::func_set_attribute
#define cudaMemsetAsync ::rlx_simt::memset_async
#define cudaMemset ::rlx_simt::memset_async
#define cudaMemcpyAsync ::rlx_simt::memcpy_async
#define cudaMemcpy ::rlx_simt::memcpy_async
#define cudaStreamSynchronize ::rlx_simt::synchronize
#define cudaDeviceSynchronize ::rlx_simt::synchronize

#endif
