/* The soft-cap custom stage: shape function, CPU implementation, and the def that registers
 * whichever device launchers were built (softcap.cu). */
#include "softcap.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

rlx_status softcap_shape(rlx_custom_shape_args *a) {
    if (a->n_in != 1 || a->in_dtype[0] != RLX_DTYPE_F32) {
        snprintf(a->msg, a->msg_cap, "softcap reads one activation (got %d inputs)", a->n_in);
        return RLX_ERR_SHAPE;
    }
    a->out_cols[0] = a->in_cols[0];
    return RLX_OK;
}

rlx_status softcap_cpu(const rlx_custom_args *a) {
    const softcap_params *p = a->user;
    const float *x = a->in[0];
    float *y = a->out[0];
    const int64_t n = a->rows * a->out_cols[0];
    for (int64_t i = 0; i < n; i++) y[i] = p->cap * tanhf(x[i] / p->cap);
    return RLX_OK;
}

rlx_custom_def softcap_def(float cap) {
    softcap_params *p = malloc(sizeof *p);
    if (p) p->cap = cap;
    rlx_custom_def def = {.name = "softcap", .shape = softcap_shape, .cpu = softcap_cpu, .user = p, .destroy = free};
#if defined(SOFTCAP_HAVE_CUDA)
    def.cuda = softcap_cuda;
#endif
#if defined(SOFTCAP_HAVE_SIMT)
    def.simt = softcap_simt;
#endif
    return def;
}
