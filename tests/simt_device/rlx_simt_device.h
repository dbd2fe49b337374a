/* The simt test device: rlx's kernel plan on the CPU, with the real kernels/ sources run through
 * the simt harness (tests/simt), host memory as device memory, and a reference GEMM honouring
 * the cuBLASLt path's descriptor. Not part of the library: programs that want
 * `--device simt` (the rlx CLI, the tests) link rlx_simt_device and install it once. */
#ifndef RLX_SIMT_DEVICE_H
#define RLX_SIMT_DEVICE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Makes RLX_DEVICE_SIMT available to rlx_model_build in this process. */
void rlx_simt_device_install(void);

/* Test controls. A memory limit makes allocations beyond `bytes` in total fail as a GPU's would
 * (0 = no limit), so out-of-memory paths can be tested; a planted fault makes the n-th GEMM from
 * now (1 = the next) fail like a sticky CUDA fault (illegal address), 0 = none. */
void rlx_simt_device_set_memory_limit(size_t bytes);
void rlx_simt_device_plant_fault(int nth_gemm);
/* The same on the simt device of one ordinal only (a tensor-parallel rank's is its rank): its n-th
 * GEMM from now fails, the other ranks' GEMMs are not counted. */
void rlx_simt_device_plant_fault_on(int ordinal, int nth_gemm);
/* Staged uploads (0 = off, the default): the weight loader does not write device memory directly
 * but goes through staging buffers as on cuda, and a copy from a staging buffer is performed only
 * at the next stream operation (sync, memset, d2h, GEMM, another upload not from staging), the
 * latest a GPU could perform an asynchronous copy; so a staging buffer reused before its upload
 * finished puts wrong bytes on the device. Kernel launches do not wait for pending copies, so
 * turn it on around model builds only (the loader syncs before it returns); a prefill in this
 * mode could read its batch metadata before the copy lands. */
void rlx_simt_device_set_staged_uploads(int on);

/* The GEMM algorithm cache under test (runtime/gemm_algo.h): the fake heuristic offers n
 * "algorithms" (1 .. 4; default 3), all the reference GEMM; algorithm index `failing` (-1 = none,
 * the default) is refused for every shape, as cuBLASLt refuses one outside its range. The counter
 * is the number of heuristic queries since the process started. */
void rlx_simt_device_set_gemm_algorithms(int n, int failing);
uint64_t rlx_simt_device_heuristic_calls(void);

/* Simulated devices 0 .. 63 (build params' cuda_device). Every device operation checks that the
 * calling thread made the device current (the executor's bind, cudaSetDevice on cuda) and fails
 * otherwise; this counts those failures. */
uint64_t rlx_simt_device_bind_violations(void);
/* A planted numerical error: from now on every output element of every launch of `kernel` (a
 * kernel-table name: "gemm", "flash_attention", "rms_rowscale", "layer_norm", …) is multiplied by
 * 1 + rel or 1 − rel (a fixed pseudo-random sign per element), as a subtly wrong kernel would be;
 * kernel NULL or rel 0 removes it. What `rlx check` must catch. */
void rlx_simt_device_plant_error(const char *kernel, double rel);

#ifdef __cplusplus
}
#endif

#endif
