/* rlx simt runtime: runs CUDA kernels compiled as host C++ on the CPU, one fiber per CUDA thread.
 *
 * This is the C face of the runtime: launch, error text, configuration. Kernel code never calls
 * it directly; it goes through kernels/common/rlx_cuda.cuh (rlx_launch) and the shim
 * (rlx_simt/shim.h). Nothing here ends the process: a kernel that deadlocks or reaches a
 * divergent barrier makes its launch return an error, and rlx_simt_last_error() names the
 * kernel, block and thread. See tests/simt/README.md for the execution model. */
#ifndef RLX_SIMT_RUNTIME_H
#define RLX_SIMT_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rlx_simt_dim3 {
    unsigned x, y, z;
} rlx_simt_dim3;

/* Thread order inside a block (and block order inside a grid). Forward runs thread 0 first;
 * reverse runs the last thread first, so a missing barrier reads different data in the two
 * orders. The default comes from RLX_SIMT_ORDER=forward|reverse. */
typedef enum rlx_simt_order {
    RLX_SIMT_FORWARD = 0,
    RLX_SIMT_REVERSE = 1
} rlx_simt_order;

/* Runs a whole grid synchronously: every block, every thread, before returning. entry(ctx) is
 * called once per CUDA thread, on that thread's fiber. Returns 0 (cudaSuccess) or a cudaError_t
 * value: cudaErrorInvalidConfiguration for bad dimensions / shared-memory size,
 * cudaErrorLaunchFailure for a deadlock, a divergent barrier or a misused warp collective.
 * Launches from several host threads are serialised. */
int rlx_simt_launch(const char *kernel_name, rlx_simt_dim3 grid, rlx_simt_dim3 block,
                    size_t dynamic_smem_bytes, void (*entry)(void *ctx), void *ctx);

/* Stream capture (CUDA graphs): between capture_begin and capture_end on one host thread, kernel
 * launches are recorded into a graph instead of being run (rlx_launch does it through
 * capture_launch, handing over a heap copy of its arguments and how to free it), and a device
 * layer records its own host work (copies, its reference GEMM) with capture_host; fn returns 0
 * or the device layer's own error code. A graph launch replays the nodes in order, synchronously,
 * and stops at the first failing one (*failed_in_host = 1 when that was a host node, whose code
 * is then the device layer's). Graphs are independent of the thread that captured them.
 * capture_begin fails while a capture is open on this thread. */
typedef struct rlx_simt_graph rlx_simt_graph;
int rlx_simt_capture_begin(void);
rlx_simt_graph *rlx_simt_capture_end(void);
int rlx_simt_capturing(void);
int rlx_simt_capture_launch(const char *kernel_name, rlx_simt_dim3 grid, rlx_simt_dim3 block, size_t smem,
                            void (*entry)(void *ctx), void *ctx, void (*free_ctx)(void *ctx));
int rlx_simt_capture_host(int (*fn)(void *ctx), void *ctx, void (*free_ctx)(void *ctx));
int rlx_simt_graph_launch(rlx_simt_graph *g, int *failed_in_host);
size_t rlx_simt_graph_nodes(const rlx_simt_graph *g);
void rlx_simt_graph_destroy(rlx_simt_graph *g);

/* Detailed message of the last failed launch on this host thread ("" if none). */
const char *rlx_simt_last_error(void);
/* Forgets the last error (message and code) of this host thread. */
void rlx_simt_clear_error(void);
/* The cudaError_t value of the last launch on this host thread; clear != 0 resets it to 0, like
 * cudaGetLastError (clear = 1) and cudaPeekAtLastError (clear = 0). */
int rlx_simt_last_status(int clear);

/* Configuration; each setter overrides its environment variable for the whole process. */
void rlx_simt_set_order(rlx_simt_order order);              /* RLX_SIMT_ORDER */
rlx_simt_order rlx_simt_get_order(void);
void rlx_simt_set_threads(int n);                           /* RLX_SIMT_THREADS; 0 = default (cores) */
int rlx_simt_get_threads(void);
void rlx_simt_set_stack_size(size_t bytes);                 /* RLX_SIMT_STACK_KB; 0 = default */
size_t rlx_simt_get_stack_size(void);
/* 1 (default): a thread that exits while others of its block wait at __syncthreads, or before
 * a __syncthreads that others reach in the same phase, fails the launch (the CUDA rule that a
 * barrier must be reached by the whole block). 0: exited threads count as arrived, as hardware
 * tolerates. RLX_SIMT_STRICT_EXIT=0 sets 0. */
void rlx_simt_set_strict_exit(int strict);
int rlx_simt_get_strict_exit(void);
/* The target whose per-block dynamic shared-memory maximum a launch is checked against: 80
 * (default; A100, 163 KiB = 166912 bytes) or 90 (H100/H200, 227 KiB = 232448 bytes). simt runs
 * the sm_80 code path (RLX_DEVICE_ARCH 800), so the default is the limit that code meets on an
 * A100. RLX_SIMT_ARCH=80|90 sets it; 0 = from the environment. */
void rlx_simt_set_target_arch(int sm);
int rlx_simt_get_target_arch(void);
size_t rlx_simt_max_dynamic_smem(void);

/* Counters since process start (or the last reset), for the benchmark and for tests that check
 * the harness did what they think it did. */
typedef struct rlx_simt_stats {
    uint64_t launches;
    uint64_t blocks;
    uint64_t threads;  /* fibers started */
    uint64_t switches; /* fiber context switches (both directions counted) */
} rlx_simt_stats;
void rlx_simt_get_stats(rlx_simt_stats *out);
void rlx_simt_reset_stats(void);

#ifdef __cplusplus
}
#endif

#endif
