/* rlx — tier 2: custom stages and flow control.
 *
 * A custom stage is computation the planner does not know: the author supplies its shape
 * function, a CPU implementation (f32, the oracle) and, per device, a launcher that enqueues
 * it on the session's stream. It works inside any flow, next to the built-in blocks:
 *
 *     static rlx_status build(rlx_custom_ctx *ctx, void *user) {
 *         int w;
 *         return rlx_custom_weight(ctx, "model.scale.weight", &w);   // args->w[w] at run time
 *     }
 *     rlx_custom_def def = {.name = "softcap", .shape = same_width, .cpu = softcap_cpu,
 *                           .cuda = softcap_cuda, .user = cap, .destroy = free};
 *     rlx_flow_custom(flow, &def, build, NULL);   // reads the cursor, becomes the new cursor
 *
 * Execution model. Input 0 is the flow's cursor; more inputs come from the build callback
 * (named values, parameters). Every output has as many rows as input 0 (tokens or sequences
 * of the prefill); the shape function gives each output's width from the inputs' widths and
 * the weights' shapes. Buffers are row-major [rows, cols]. Fusion never crosses a custom
 * stage: the planner runs it as its own step, with its inputs materialised.
 *
 * Ownership. rlx_flow_custom copies the def; def->user belongs to rlx from that call on,
 * whatever the call returns: def->destroy(def->user) runs exactly once per call, when neither
 * the flow nor any model built from it needs the stage (right away when the call fails).
 * Implementations may run on any thread, but never on two threads for the same session at once.
 */
#ifndef RLX_CUSTOM_H
#define RLX_CUSTOM_H

#include "rlx/flow.h"
#include "rlx/rlx.h"
#include "rlx/weights.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RLX_CUSTOM_MAX_INPUTS 8  /* the cursor included */
#define RLX_CUSTOM_MAX_OUTPUTS 4 /* the main output included */
#define RLX_CUSTOM_MAX_WEIGHTS 9

/* Shape function: fill out_cols[0..n_out) (each > 0) or return a status with a reason in msg.
 * Called once per build, with every input width known. */
typedef struct rlx_custom_shape_args {
    int n_in;
    const int64_t *in_cols;    /* [n_in] widths; input 0 is the cursor */
    const rlx_dtype *in_dtype; /* [n_in] F32, or I32 for token ids */
    int n_w;
    const rlx_tensor_view *w;  /* [n_w] name, dtype, shape of each weight (data valid in call) */
    int n_out;
    int64_t *out_cols;         /* [n_out] to fill */
    void *user;                /* def.user */
    char *msg;                 /* on failure: why (the build prefixes the stage's name) */
    size_t msg_cap;
} rlx_custom_shape_args;
typedef rlx_status (*rlx_custom_shape_fn)(rlx_custom_shape_args *args);

/* Everything an implementation gets, on every backend. On the CPU the buffers are host f32
 * (token ids int32); on a device they are device pointers whose elements are `dtype` (the
 * profile's precision.compute: bf16 unless told otherwise) — activations, parameters and
 * weights alike, token ids int32. Outputs are written in full; inputs are read-only. */
typedef struct rlx_custom_args {
    rlx_device_kind device;    /* RLX_DEVICE_CPU, _CUDA or _SIMT */
    rlx_dtype dtype;           /* F32 on the CPU; BF16, F16 or F32 on a device */
    int64_t rows;              /* rows of every output and of every activation input */
    int n_out;
    void *const *out;          /* [n_out] [rows, out_cols[i]] */
    const int64_t *out_cols;
    int n_in;
    const void *const *in;     /* [n_in] [in_rows[i], in_cols[i]] */
    const int64_t *in_rows;    /* rows, or the fixed row count of a parameter/table */
    const int64_t *in_cols;
    const rlx_dtype *in_dtype; /* dtype, or I32 for token ids */
    int n_w;
    const void *const *w;      /* [n_w] row-major weights, in the order they were loaded */
    const int64_t *w_rows;     /* shape[0] (1 for a scalar) */
    const int64_t *w_cols;     /* elements / w_rows */
    int64_t n_seqs;            /* sequences in this prefill */
    const int32_t *seq_start;  /* [n_seqs + 1] token offsets, in the same memory as `in` */
    void *stream;              /* cudaStream_t on CUDA (NULL = default stream), else NULL */
    int threads;               /* CPU: threads the stage may use; else 0 */
    void *user;                /* def.user */
    char *msg;                 /* on failure: why (rlx prefixes stage name and device) */
    size_t msg_cap;
} rlx_custom_args;
/* An implementation. A device launcher enqueues on args->stream and returns without
 * synchronising; it returns RLX_ERR_DEVICE (say why in msg) when a launch fails. */
typedef rlx_status (*rlx_custom_fn)(const rlx_custom_args *args);

typedef struct rlx_custom_def {
    const char *name;            /* op name in plans and messages: [A-Za-z0-9_.-], <= 63 chars */
    rlx_custom_shape_fn shape;   /* required */
    rlx_custom_fn cpu;           /* required: f32 host implementation (the reference) */
    rlx_custom_fn cuda;          /* CUDA launcher; NULL: models on cuda refuse to build */
    rlx_custom_fn simt;          /* the same kernel built for the simt test device; NULL: idem */
    void *user;                  /* passed to every function above */
    void (*destroy)(void *user); /* optional; see "Ownership" */
} rlx_custom_def;

/* ---- building a custom stage -------------------------------------------------------------- */

typedef struct rlx_custom_ctx rlx_custom_ctx;
/* Called once, inside rlx_flow_custom, to gather what the stage reads. */
typedef rlx_status (*rlx_custom_build_fn)(rlx_custom_ctx *ctx, void *user);

/* Appends a custom stage named "<scope>.<def->name>" reading the cursor (input 0) and whatever
 * build (may be NULL) adds; its main output becomes the cursor. Errors are sticky, as for every
 * block. */
RLX_API rlx_status rlx_flow_custom(rlx_flow *flow, const rlx_custom_def *def,
                                   rlx_custom_build_fn build, void *build_user);

/* Loads a weight by checkpoint key: checked at build like any block's (missing keys are
 * listed), converted like the others, passed as args->w[*slot]. */
RLX_API rlx_status rlx_custom_weight(rlx_custom_ctx *ctx, const char *key, int *slot);
/* Creates a parameter: a constant [rows, cols] f32 tensor (data copied; the flow owns it),
 * passed as args->in[*slot] and readable by later custom stages under name (NULL: named
 * "<stage>.param<k>"). */
RLX_API rlx_status rlx_custom_param(rlx_custom_ctx *ctx, const char *name, int64_t rows,
                                    int64_t cols, const float *data, int *slot);
/* Reads the latest value called name (a stage's scoped name such as "L0.attn.o_proj", the
 * token input, "rope.cos", a parameter or a named output) as args->in[*slot]. An activation
 * must have the stage's rows (per token or per sequence, as the cursor). */
RLX_API rlx_status rlx_custom_input(rlx_custom_ctx *ctx, const char *name, int *slot);
/* Adds an output called name (used verbatim), written to args->out[*slot]; later stages read
 * it with rlx_custom_input or rlx_flow_select. The main output is slot 0. */
RLX_API rlx_status rlx_custom_output(rlx_custom_ctx *ctx, const char *name, int *slot);
/* The stage's scoped name ("L3.softcap") and the flow it is being added to. */
RLX_API const char *rlx_custom_ctx_stage_name(const rlx_custom_ctx *ctx);
RLX_API rlx_flow *rlx_custom_ctx_flow(const rlx_custom_ctx *ctx);

/* ---- flow control ------------------------------------------------------------------------- */

/* Makes the latest activation called name the cursor (a named output, a layer's output). */
RLX_API rlx_status rlx_flow_select(rlx_flow *flow, const char *name);
/* Build-time condition: runs fn(flow, user) when cond is non-zero, else adds nothing. */
RLX_API rlx_status rlx_flow_when(rlx_flow *flow, int cond, rlx_layer_fn fn, void *user);
/* Runs fns[0..n) in order on the flow, each with user; stops at the first failure. */
RLX_API rlx_status rlx_flow_sequence(rlx_flow *flow, const rlx_layer_fn *fns, size_t n,
                                     void *user);

#ifdef __cplusplus
}
#endif

#endif /* RLX_CUSTOM_H */
