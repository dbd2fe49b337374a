/* rlx_cuda.cuh: the one header every kernel file includes (first), so that the same source builds
 * with nvcc for the GPU and as host C++ for the simt harness (tests/simt: every CUDA thread a
 * fiber on the CPU). The conventions it enables are in kernels/README.md; in short:
 *
 *   rlx_launch(kernel, grid, block, smem_bytes, stream, args...)  -> cudaError_t
 *       the only way to launch (no <<<...>>> at call sites). A macro, so simt can name the kernel
 *       in its error messages; a template kernel goes in parentheses: rlx_launch((k<64>), ...).
 *   RLX_DYN_SMEM(T, name);       dynamic shared memory as `T *name` (16-byte aligned)
 *   RLX_SIMT                     1 in the simt build, 0 under nvcc
 *   RLX_DEVICE_CODE              1 where device code is being compiled (nvcc device pass, simt)
 *   RLX_DEVICE_ARCH              __CUDA_ARCH__ in nvcc's device pass, 800 under simt, 0 on host;
 *                                test this, never __CUDA_ARCH__ directly
 *   rlx_mma_m16n8k16_bf16, rlx_ldmatrix_*, rlx_cp_async_*   (rlx_ptx.cuh, included below)
 */
#ifndef RLX_CUDA_CUH
#define RLX_CUDA_CUH

#ifndef RLX_SIMT
#define RLX_SIMT 0
#endif

#if RLX_SIMT
#include "rlx_simt/shim.h"
#define RLX_DEVICE_CODE 1
/* simt emulates an sm_80 feature set: mma.sync, ldmatrix, cp.async; no Hopper-only paths. */
#define RLX_DEVICE_ARCH 800
#else
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#if defined(__CUDA_ARCH__) /* the one place that tests it */
#define RLX_DEVICE_CODE 1
#define RLX_DEVICE_ARCH __CUDA_ARCH__
#else
#define RLX_DEVICE_CODE 0
#define RLX_DEVICE_ARCH 0
#endif
#endif

#include <stddef.h>
#include <stdint.h>

#include <utility>
#if !RLX_SIMT
#include <mutex>
#endif

// ---- dynamic shared memory -------------------------------------------------------------------
/* `extern __shared__ T x[]` does not compile as host C++, and two kernels in one file may want
 * different element types; one byte array declared here serves both builds. Under simt the
 * bytes are a fresh NaN-filled (0xff) heap block per thread block, sized exactly as launched. */
#if RLX_SIMT
#define RLX_DYN_SMEM(T, name) T *name = reinterpret_cast<T *>(::rlx_simt::dynamic_smem())
#else
#define RLX_DYN_SMEM(T, name)                                                                      \
    extern __shared__ __align__(16) unsigned char rlx_dyn_smem_[];                                 \
    T *name = reinterpret_cast<T *>(rlx_dyn_smem_)
#endif

// ---- launch ----------------------------------------------------------------------------------
#if RLX_SIMT
/* Runs the whole grid on the CPU before returning; a deadlock, divergent barrier or misused warp
 * collective returns cudaErrorLaunchFailure with the details in rlx_simt_last_error(). */
#define rlx_launch(kernel, grid, block, smem_bytes, stream, ...)                                   \
    ::rlx_simt::launch(#kernel, kernel, grid, block, smem_bytes, stream, ##__VA_ARGS__)
#else
/* More than 48 KiB of dynamic shared memory needs the kernel's opt-in attribute, which belongs to
 * (kernel, device) and stays set: it is set once per pair (or again when a launch asks for more),
 * not per launch. A small table per translation unit (each kernel family is one), read under a
 * mutex: the lock is uncontended and far cheaper than the attribute call it saves. */
static inline cudaError_t rlx__smem_opt_in(const void *kernel, size_t smem_bytes) {
    struct entry {
        const void *kernel;
        int device, bytes;
    };
    static entry table[64];
    static int n;
    static std::mutex lock;
    int device = 0;
    cudaError_t e = cudaGetDevice(&device);
    if (e != cudaSuccess) return e;
    std::lock_guard<std::mutex> guard(lock);
    int i = 0;
    while (i < n && (table[i].kernel != kernel || table[i].device != device)) i++;
    if (i < n && table[i].bytes >= (int)smem_bytes) return cudaSuccess;
    e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem_bytes);
    if (e != cudaSuccess) return e;
    if (i < n) table[i].bytes = (int)smem_bytes;
    else if (n < 64) table[n++] = entry{kernel, device, (int)smem_bytes};
    return cudaSuccess; /* a full table only means the attribute is set again next time */
}

/* <<<>>> then cudaGetLastError(), so a bad configuration is reported at the launch that made
 * it. */
template <typename... KArgs, typename... Args>
static inline cudaError_t rlx__launch(void (*kernel)(KArgs...), dim3 grid, dim3 block,
                                      size_t smem_bytes, cudaStream_t stream, Args &&...args) {
    static_assert(sizeof...(KArgs) == sizeof...(Args),
                  "rlx_launch: the number of arguments does not match the kernel's parameters");
    if (smem_bytes > 48 * 1024) {
        cudaError_t e = rlx__smem_opt_in((const void *)kernel, smem_bytes);
        if (e != cudaSuccess) return e;
    }
    kernel<<<grid, block, smem_bytes, stream>>>(static_cast<KArgs>(std::forward<Args>(args))...);
    return cudaGetLastError();
}
#define rlx_launch(kernel, grid, block, smem_bytes, stream, ...)                                   \
    rlx__launch(kernel, grid, block, smem_bytes, stream, ##__VA_ARGS__)
#endif

#include "rlx_ptx.cuh"

#endif
