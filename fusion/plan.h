/* The kernel plan: what the device executors run.
 *
 * The planner maps the model's expanded stage list onto kernel invocations — one primitive per
 * stage under policy "none"; under "fused", the LLaMA patterns below — and plans the activation
 * memory by liveness: every buffer gets an offset in one arena, buffers whose lifetimes do not
 * overlap share bytes, and the peak is known before anything runs. Device-independent; `rlx plan`
 * prints it.
 *
 * Fusion rules (fusion/plan.c), each with legality checks (every intermediate has one consumer
 * and is not the requested output; shapes and dtypes fit; otherwise the stages fall back to
 * primitives):
 *   norm→QKV + RoPE + GQA attention: rms_norm(x) → q,k,v linears → rope(q), rope(k) → attention
 *       becomes one GEMM on the raw x with γ folded into the concatenated [Wq; Wk; Wv], one
 *       kv_write kernel that applies s(x) and RoPE to K once and writes K and V where attention
 *       reads them (the caller's KV-cache pages in rlx_session_prefill_kv, else two activation
 *       buffers [T, kv_heads·D]), and one flash_attention kernel that applies s(x) and RoPE to Q on
 *       load and reads K/V from there (rope_attention, the same contract without tensor cores,
 *       where flash does not apply: head_dim other than 64/128, f32 mode). Per call the executor
 *       may run decode_attention instead (rlx__plan_attention_kind: few new tokens per sequence);
 *   the unfused attention primitive reads the rotated k and v buffers directly; in a KV call a
 *       kv_write entry before it (kv_only: skipped in plain prefills) appends them to the pages;
 *   norm→gate/up + SwiGLU: rms_norm(x) → gate, up linears → silu_mul becomes one GEMM with γ
 *       folded into [Wg; Wu] and one swiglu_scaled kernel applying s(x);
 *   residual add into the GEMM: add(linear(…), r) becomes the GEMM with C = r, beta = 1;
 *   row scales s(x) = 1/sqrt(mean(x²)+eps) come from the kernel that produced x (embed_rowscale,
 *       add_rowscale) or a row-statistics kernel right after it (rms_rowscale);
 *   last_token → final rms_norm becomes one last_token_rms_norm kernel (after last-layer pruning,
 *       passes.prune_last_layer, the gather sits before the last layer's o_proj instead and the
 *       final norm is an rms_norm over one row per sequence, which counts as no standalone pass);
 *   add → layer_norm (post-LN encoders) becomes one layer_norm kernel reading both operands.
 * A custom stage (tier 2) is one kernel-plan entry of its own (its stage's in/out lists are its
 * buffers); no rule matches across it.
 *
 * The f32 residual stream (precision.mixed = "auto", bf16 activations; docs/numerics.md): the
 * values rlx__slist_residual_stream marks (the embedding, every residual add, their last-token
 * rows) are f32 buffers. The residual GEMMs (o_proj, down) take C and write D in f32 from bf16
 * operands; the kernel that computes a stream row's scales (embed_f32, residual_rowscale,
 * residual_add) also writes its bf16 copy, the "shadow", which the next packed GEMM reads; norms
 * of the stream read f32 (residual_rms_norm). Any other kernel that reads a stream value gets its
 * shadow; where no kernel writes one, a residual_cast entry does. Nothing else changes: attention,
 * SwiGLU and every packed buffer stay bf16.
 *
 * Tensor parallelism (the list is already one rank's, dist/shard.h): each all_reduce is one plan
 * entry on the communicator (out-of-place, in the activation dtype). Its consumer fuses the
 * residual add and the next norm's row scales (add_rowscale): the partial sums cannot take the
 * residual inside the GEMM, since every rank would add it, so that add is not a missed fusion. The
 * rest of each rank's layer keeps every rule above: γ folds into the rank's rows of the packed
 * QKV and gate|up weights. The all_gather of lm_head's columns is one entry too (out2: NCCL's
 * staging [tp, rows, cols/tp]); lm_head then writes f32, gathered in f32.
 */
#ifndef RLX_FUSION_PLAN_H
#define RLX_FUSION_PLAN_H

#include "model/stages.h"
#include "../kernels/rlx_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Kernel kinds: enum, printed name, 1 if it is a standalone norm/rope/add/activation pass
 * (what --assert-clean reports). */
#define RLX__KERNEL_MAP(X)                                    \
    X(RLX__K_EMBED, "embed", 0)                               \
    X(RLX__K_RMS_NORM, "rms_norm", 1)                         \
    X(RLX__K_GEMM, "gemm", 0)                                 \
    X(RLX__K_ROPE, "rope", 1)                                 \
    X(RLX__K_ATTENTION, "attention", 0)                       \
    X(RLX__K_ADD, "add", 1)                                   \
    X(RLX__K_SILU_MUL, "silu_mul", 1)                         \
    X(RLX__K_LAST_TOKEN, "last_token", 0)                     \
    X(RLX__K_EMBED_ROWSCALE, "embed_rowscale", 0)             \
    X(RLX__K_ROWSCALE, "rms_rowscale", 0)                     \
    X(RLX__K_ADD_ROWSCALE, "add_rowscale", 1)                 \
    X(RLX__K_FLASH_ATTENTION, "flash_attention", 0)           \
    X(RLX__K_ROPE_ATTENTION, "rope_attention", 0)             \
    X(RLX__K_SWIGLU_SCALED, "swiglu_scaled", 0)               \
    X(RLX__K_LAST_TOKEN_NORM, "last_token_rms_norm", 0)       \
    X(RLX__K_INPUT_IDS, "upload_ids", 0)                      \
    X(RLX__K_POSITIONS, "upload_positions", 0)                \
    X(RLX__K_GATHER_ADD, "gather_add", 0)                     \
    X(RLX__K_LAYER_NORM, "layer_norm", 0)                     \
    X(RLX__K_GELU, "gelu", 1)                                 \
    X(RLX__K_SLICE_COLS, "slice_cols", 0)                     \
    X(RLX__K_CLS_POOL, "cls_pool", 0)                         \
    X(RLX__K_MEAN_POOL, "mean_pool", 0)                       \
    X(RLX__K_L2_NORMALIZE, "l2_normalize", 0)                 \
    X(RLX__K_CUSTOM, "custom", 0)                             \
    X(RLX__K_ALL_REDUCE, "all_reduce", 0)                     \
    X(RLX__K_ALL_GATHER, "all_gather", 0)                     \
    X(RLX__K_KV_WRITE, "kv_write", 0)                         \
    X(RLX__K_DECODE_ATTENTION, "decode_attention", 0)         \
    X(RLX__K_RESIDUAL_CAST, "residual_cast", 0)

typedef enum rlx__kkind {
#define RLX__K_ENUM(e, name, standalone) e,
    RLX__KERNEL_MAP(RLX__K_ENUM)
#undef RLX__K_ENUM
    RLX__K_COUNT
} rlx__kkind;

const char *rlx__kernel_name(rlx__kkind k);
int rlx__kernel_is_standalone_pass(rlx__kkind k);

#define RLX__KERNEL_MAX_STAGES 12

/* A buffer of the plan: a model value (value >= 0), or one the planner adds (packed GEMM
 * outputs, row scales). */
typedef struct rlx__buf {
    int value;        /* model value id, -1 for planner buffers */
    rlx__rows rows;
    int64_t fixed_rows;
    int64_t cols;
    int elem;         /* bytes per element */
    int kind;         /* 0 activation (act dtype), 1 f32, 2 i32 */
    int stream;       /* 1: a residual-stream value kept in f32 (precision.mixed = "auto") */
} rlx__buf;

/* A weight the planner derives: rows of source weights stacked, each column c scaled by γ[c]
 * when gamma >= 0 (done in f32 at upload, then rounded once). */
typedef struct rlx__dweight {
    int n_parts;
    int src[3];       /* model weight indices */
    int gamma;        /* model weight index or -1 */
    int64_t rows, cols;
} rlx__dweight;

typedef struct rlx__kernel {
    rlx__kkind kind;
    int n_stages;
    int stages[RLX__KERNEL_MAX_STAGES]; /* stage indices of the model's list it covers */
    int in[4];                          /* buffer ids (-1 = none) */
    int out, out2;                      /* buffer ids (out2: the row scales a kernel also writes) */
    int w, bias;                        /* weight ids: < n_weights model weights, else derived */
    int residual;                       /* GEMM: buffer added with beta = 1 (-1 = none) */
    int gamma;                          /* weight id of a norm γ read by the kernel (-1 = none) */
    float eps;
    int rope;                           /* flash_attention: apply RoPE */
    int64_t n_cols;                     /* columns of the output (GEMM N) */
    const rlx__stage *st;               /* the primary stage (attributes, name) */
    /* attention and kv_write: the KV layer (st->kv_layer of the attention, -1 = none), and the
     * buffers holding K and V in a plain prefill (kv_write writes them, attention reads them) */
    int kv_layer;
    int kv_k, kv_v;
    int kv_only;                        /* kv_write: runs only in KV-cache calls (unfused plans) */
    /* the f32 residual stream (precision.mixed = "auto"): resid = 1 when the kernel's stream side
     * is f32 — the output of embed(_rowscale) and add(_rowscale), the input of rms_rowscale,
     * rms_norm, last_token(_rms_norm); 2 for an add of two f32 operands. shadow: the bf16 copy of
     * that f32 buffer the kernel also writes (-1 = none). */
    int resid;
    int shadow;
} rlx__kernel;

typedef struct rlx__plan {
    rlx_fusion_policy policy;
    rlx_kdtype act_dtype;    /* activations on the device */
    rlx__kernel *k;
    int n, cap;
    rlx__buf *buf;           /* [n_buf]; ids < n_values are the model's values */
    int n_buf, cap_buf;
    rlx__dweight *dw;        /* derived weights; weight id = n_weights + index */
    int n_dw;
    int n_weights;           /* the model's weight count (ids below it are model weights) */
    char *used_weight;       /* [n_weights]: 1 if some kernel reads the weight as is */
    size_t *offset;          /* [n_buf]: arena offset, SIZE_MAX when not in the arena */
    size_t *bytes;           /* [n_buf]: bytes at capacity */
    size_t arena_bytes;      /* peak activation bytes at capacity (max tokens, max sequences) */
    size_t naive_bytes;      /* what the activations would take without reuse */
    int output_buf;          /* buffer of the model's output */
    int n_f32_resid;         /* residual-stream buffers kept in f32 (precision.mixed = "auto"), 0 = none */
    int *act_copy;           /* [n_buf]: the activation-dtype copy of an f32 residual buffer, -1 = none */
    int output_f32;          /* the output is written in f32 (by a GEMM), else in act_dtype */
    char *missed;            /* fused policy: standalone passes left, "layer: stage (why)"; NULL if clean */
    int n_missed;
} rlx__plan;

/* 1 if kernel k of plan p is a standalone norm/rope/add/activation pass over the tokens (what the
 * fused plan's missed list and --assert-clean report); a pass over one row per sequence, such as
 * the final norm after passes.prune_last_layer, is not one. */
int rlx__plan_is_standalone_pass(const rlx__plan *p, const rlx__kernel *k);

/* Builds the plan for model m at its capacity. */
rlx_status rlx__plan_build(const rlx_model *m, rlx_fusion_policy policy, rlx_kdtype act_dtype, rlx__plan *out);
void rlx__plan_free(rlx__plan *p);
/* The attention kernel one call runs for plan entry k (an attention kind): decode_attention when
 * the activations are bf16, every sequence brings at most RLX__DECODE_MAX_Q new tokens,
 * max_q · (heads / kv_heads) query rows fit its CTA (rlx_decode_max_rows) and the KV rows it reads
 * are 16-byte aligned (kv_aligned); else the entry's own kind. */
#define RLX__DECODE_MAX_Q 8
rlx__kkind rlx__plan_attention_kind(const rlx__plan *p, const rlx__kernel *k, int64_t max_q, int kv_aligned);
/* Bytes a kernel reads and writes at T tokens and S sequences (weights included). */
double rlx__kernel_bytes(const rlx__plan *p, const rlx_model *m, const rlx__kernel *k, int64_t T, int64_t S);
/* Printable plan: one kernel per line, the stages it covers, the bytes it moves. */
rlx_status rlx__plan_format(const rlx__plan *p, const rlx_model *m, char **text);

#ifdef __cplusplus
}
#endif

#endif
