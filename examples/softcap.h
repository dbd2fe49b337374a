/* The logit soft-cap custom stage of examples/softcap.c: y = cap · tanh(x / cap) (Gemma 2's
 * final-logit soft-capping), as a tier-2 custom stage with a CPU implementation and a CUDA
 * kernel (softcap.cu) that also runs on the simt test device. */
#ifndef RLX_EXAMPLE_SOFTCAP_H
#define RLX_EXAMPLE_SOFTCAP_H

#include "rlx/custom.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct softcap_params {
    float cap; /* > 0 */
} softcap_params;

/* Output width = input width. */
rlx_status softcap_shape(rlx_custom_shape_args *a);
/* The f32 reference. */
rlx_status softcap_cpu(const rlx_custom_args *a);
/* softcap.cu built by nvcc (SOFTCAP_HAVE_CUDA) and for simt (SOFTCAP_HAVE_SIMT): enqueue the
 * kernel on a->stream for F32 or BF16 buffers. */
rlx_status softcap_cuda(const rlx_custom_args *a);
rlx_status softcap_simt(const rlx_custom_args *a);

/* A def with every implementation this build has; user is a malloc'd softcap_params that the
 * def's destroy frees (so the def can be handed to rlx_flow_custom as it is). */
rlx_custom_def softcap_def(float cap);

#ifdef __cplusplus
}
#endif

#endif
