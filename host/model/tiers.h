/* Internal declarations of tier 1 (profiles and the build's passes, host/profile.c) and tier 2
 * (custom stages, host/custom.c). */
#ifndef RLX_HOST_TIERS_H
#define RLX_HOST_TIERS_H

#include "rlx/custom.h"
#include "rlx/profile.h"
#include "model/stages.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- passes (profile.c) ------------------------------------------------------------------- */

/* Appends one line to the model's pass log (rlx_model_pass_log). */
rlx_status rlx__model_log(rlx_model *m, const char *fmt, ...) RLX__PRINTF(2, 3);
/* Dead-stage elimination over the expanded list when m->profile.dce: keeps the stages the
 * output depends on (and the token input and embedding, which define the accepted token
 * range). Logs what it did (or that it is off). */
rlx_status rlx__pass_dce(rlx_model *m);
/* passes.prune_last_layer (model/prune.c): last_token gathers moved up through the row-wise stages
 * before them, which then run on one row per sequence; m->pruned_stages counts them. */
rlx_status rlx__pass_prune_last_layer(rlx_model *m);

/* ---- custom stages (custom.c) ------------------------------------------------------------- */

/* The copy of a def that a flow and the models built from it share (st->custom); opaque so
 * that C++ executors can include this header. */
typedef struct rlx__custom rlx__custom;
const rlx_custom_def *rlx__custom_def(const rlx__custom *c);

void rlx__custom_retain(rlx__custom *c);
/* Drops a reference; the last one calls def.destroy(def.user) and frees c. NULL is fine. */
void rlx__custom_release(rlx__custom *c);

/* Parameters made by custom stages: constants owned by the flow (flow->params). */
struct rlx__params {
    int n, cap;
    int *value;    /* [n] value ids */
    float **data;  /* [n] [fixed_rows * cols] */
};
void rlx__params_free(struct rlx__params *p);

/* Build: resolves the widths of stage `stage` (an RLX__OP_CUSTOM) through its shape function.
 * On failure writes the reason, naming the stage, into msg and returns the status. */
rlx_status rlx__custom_infer(rlx_model *m, int stage, char *msg, size_t msg_cap);
/* Build: every custom stage has an implementation for device (RLX_ERR_UNSUPPORTED naming the
 * stage otherwise). Called before a device model is prepared. */
rlx_status rlx__custom_check_device(const rlx_model *m, rlx_device_kind device);
/* Build: copies the parameters the model's stages read into m->consts. */
rlx_status rlx__custom_prepare(rlx_model *m, const rlx_flow *flow);

/* One call of a custom stage's implementation, as any executor makes it. Buffers are indexed
 * like the stage's out[], in[] and wkey[]; the rest of rlx_custom_args is filled in here. */
typedef struct rlx__custom_io {
    rlx_device_kind device;   /* picks def.cpu, def.cuda or def.simt */
    rlx_dtype dtype;          /* F32 on the CPU; the profile's precision.compute on a device */
    void *const *out;
    const void *const *in;
    const void *const *w;
    int64_t n_tokens, n_seqs;
    const int32_t *seq_start; /* [n_seqs + 1], in the device's memory */
    void *stream;
    int threads;
} rlx__custom_io;
rlx_status rlx__custom_invoke(const rlx_model *m, int stage, const rlx__custom_io *io);

/* CPU reference: runs custom stage `stage`; buf[out[0]] is allocated by the caller, the other
 * outputs here (into buf). */
rlx_status rlx__custom_cpu(const rlx_model *m, int stage, const rlx__batch *b, float **buf);

#ifdef __cplusplus
}
#endif

#endif
