/* The simt test device: rlx's kernel plan on the CPU, with the real kernels/ sources run through
 * the simt harness (tests/simt), host memory as device memory, and a reference GEMM honouring
 * the cuBLASLt path's descriptor. Not part of the library: programs that want
 * `--device simt` (the rlx CLI, the tests) link rlx_simt_device and install it once. */
#ifndef RLX_SIMT_DEVICE_H
#define RLX_SIMT_DEVICE_H

#ifdef __cplusplus
extern "C" {
#endif

/* Makes RLX_DEVICE_SIMT available to rlx_model_build in this process. */
void rlx_simt_device_install(void);

#ifdef __cplusplus
}
#endif

#endif
