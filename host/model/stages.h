/* The stage list: a flat array of typed stages over a table of values.
 *
 * A flow owns one stage list plus its builder state (cursor, residual slot, scope). A built
 * model owns a second one: the flow's values copied, composite stages expanded into the
 * primitives the CPU reference and the planner both see, and every width resolved.
 */
#ifndef RLX_HOST_STAGES_H
#define RLX_HOST_STAGES_H

#include "rlx/flow.h"
#include "rlx/profile.h"
#include "core/internal.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RLX__STAGE_MAX_IN 8  /* custom stages read up to 8 values (rlx/custom.h) */
#define RLX__STAGE_MAX_OUT 4
#define RLX__STAGE_MAX_W 9

/* Ops, one table: enum, printed name. Only ever appended. */
#define RLX__OP_MAP(X)                                                                      \
    X(RLX__OP_INPUT_TOKENS, "input_tokens")   /* -> tokens [T] i32 */                        \
    X(RLX__OP_ROPE_TABLES, "rope_tables")     /* -> cos, sin [P, D/2] */                     \
    X(RLX__OP_EMBED, "token_embed")           /* tokens, W[V,H] -> [T,H] */                  \
    X(RLX__OP_RMS_NORM, "rms_norm")           /* x, γ[H] -> [R,H] */                         \
    X(RLX__OP_LINEAR, "linear")               /* x, W[N,K] (, b[N]) -> [R,N] */              \
    X(RLX__OP_ROPE, "rope")                   /* x[T,h·D], cos, sin -> [T,h·D] */            \
    X(RLX__OP_ATTENTION, "attention")         /* q, k, v -> [T, heads·D] */                  \
    X(RLX__OP_ADD, "add")                     /* a, b -> a + b */                            \
    X(RLX__OP_SILU_MUL, "silu_mul")           /* g, u -> silu(g)·u */                        \
    X(RLX__OP_LAST_TOKEN, "last_token")       /* x[T,H] -> [S,H] */                          \
    X(RLX__OP_LLAMA_LAYER, "llama_layer")     /* composite: x, cos, sin + 9 weights */       \
    X(RLX__OP_INPUT_IDS, "input_ids")         /* -> named prefill ids [T] i32 */             \
    X(RLX__OP_POSITIONS, "positions")         /* -> [T] i32: 0..len-1 in each sequence */    \
    X(RLX__OP_GATHER_ADD, "gather_add")       /* x[T,H], ids[T], W[N,H] -> x + W[ids] */     \
    X(RLX__OP_LAYER_NORM, "layer_norm")       /* x, γ[H] (, β[H]) -> [R,H] */                \
    X(RLX__OP_GELU, "gelu")                   /* x -> 0.5·x·(1 + erf(x/√2)) */               \
    X(RLX__OP_SLICE_COLS, "slice_cols")       /* x[R,C] -> x[:, begin:begin+width] */        \
    X(RLX__OP_CLS_POOL, "cls_pool")           /* x[T,H] -> [S,H]: first token */             \
    X(RLX__OP_MEAN_POOL, "mean_pool")         /* x[T,H] -> [S,H]: mean of each sequence */   \
    X(RLX__OP_L2_NORMALIZE, "l2_normalize")   /* x / max(‖x‖, 1e-12) per row */              \
    X(RLX__OP_CUSTOM, "custom")               /* tier 2: the user's stage (st->custom) */   \
    X(RLX__OP_ALL_REDUCE, "all_reduce")       /* x -> Σ over the tp ranks of x (dist/) */    \
    X(RLX__OP_ALL_GATHER, "all_gather")       /* x[R,w] -> [R,total]: rank r's columns at r·w */

typedef enum rlx__op {
#define RLX__OP_ENUM(e, name) e,
    RLX__OP_MAP(RLX__OP_ENUM)
#undef RLX__OP_ENUM
    RLX__OP_COUNT
} rlx__op;

const char *rlx__op_name(rlx__op op);

/* How many rows a value has: known only per prefill for activations. */
typedef enum rlx__rows {
    RLX__ROWS_TOKENS = 0,    /* one per token of the prefill */
    RLX__ROWS_SEQUENCES = 1, /* one per sequence */
    RLX__ROWS_FIXED = 2,     /* constants: fixed_rows */
} rlx__rows;

typedef struct rlx__value {
    char *name;
    rlx_dtype dtype;     /* F32 activations, I32 token ids */
    rlx__rows rows;
    int64_t fixed_rows;  /* RLX__ROWS_FIXED */
    int64_t cols;        /* 0 until resolved at build */
    int producer;        /* stage index, -1 for none */
} rlx__value;

typedef struct rlx__stage {
    rlx__op op;
    char *name;                      /* scoped: "L3.attn.q_proj" */
    int n_in;
    int in[RLX__STAGE_MAX_IN];       /* value ids */
    int n_out;
    int out[RLX__STAGE_MAX_OUT];
    int n_w;
    char *wkey[RLX__STAGE_MAX_W];    /* weight keys; NULL entries allowed for optional ones */
    /* attributes (meaning per op) */
    double eps;
    int64_t heads, kv_heads, head_dim;
    int64_t expect_rows, expect_cols; /* linear/embed: expected weight shape (0 = any) */
    int causal;
    rlx_rope_params rope;
    int64_t slice_begin, slice_width; /* slice_cols: kept input columns */
    int required;                     /* input_ids: 1 = a prefill must pass it */
    struct rlx__custom *custom;       /* custom: the user's def, refcounted (tiers.h) */
    int kv_layer;                     /* attention in a built model: its layer of a KV cache
                                         (0, 1, … in stage order), -1 when it has none */
} rlx__stage;

typedef struct rlx__slist {
    rlx__value *values;
    int n_values, cap_values;
    rlx__stage *stages;
    int n_stages, cap_stages;
} rlx__slist;

void rlx__slist_free(rlx__slist *l);
/* Deep copy of the values table only (stages left empty). */
rlx_status rlx__slist_copy_values(rlx__slist *dst, const rlx__slist *src);
/* Adds a value; returns its id or -1 (status recorded). */
int rlx__slist_add_value(rlx__slist *l, const char *name, rlx_dtype dtype, rlx__rows rows,
                         int64_t fixed_rows, int64_t cols);
/* Appends a copy of *st (names and keys duplicated); returns its index or -1. */
int rlx__slist_add_stage(rlx__slist *l, const rlx__stage *st);
/* Human-readable list (one stage per line). */
rlx_status rlx__slist_format(const rlx__slist *l, char **text);
/* Drops every stage i with keep[i] == 0 (order kept, producers renumbered); values stay. */
void rlx__slist_remove_stages(rlx__slist *l, const unsigned char *keep);
/* The residual stream of a pre-norm network: res[v] = 1 for the token embedding when a residual
 * add reads it, every add with a residual operand, and the last-token rows of a residual value.
 * precision.mixed = "auto" keeps exactly these values in f32 on a device (the planner), and the
 * CPU reference's precision emulation leaves them unrounded; post-LN encoders have none (their
 * stream is a norm's output). res has n_values entries. */
void rlx__slist_residual_stream(const rlx__slist *l, unsigned char *res);

/* ---- builder state ------------------------------------------------------------------------ */

struct rlx_flow {
    char *name;
    rlx__slist list;
    int cursor;          /* current value id, -1 before any input */
    int saved;           /* residual slot, -1 when empty */
    int tokens;          /* token input value id */
    int cos, sin;        /* rope tables, -1 if none */
    int64_t batch, seq;  /* capacity */
    char scope[256];     /* "L3" inside a layer */
    rlx_status error;    /* sticky */
    char *error_msg;
    struct rlx__params *params; /* constants made by custom stages (tiers.h), or NULL */
};

/* Sticky errors of the builder (flow.c), shared by every file that defines blocks: the first
 * failure is kept in the flow and every later block replays it. */
rlx_status rlx__flow_remember(rlx_flow *f, rlx_status s);
/* Recipes: the shape the config gives the embedding table of the token_embed stage just added
 * ([vocab, hidden]), so the build blames a wrong table itself rather than every layer after it. */
void rlx__flow_expect_embedding(rlx_flow *f, int64_t vocab, int64_t hidden);
/* Records "flow '<name>', in <scope>: <message>" and makes it the flow's sticky error. */
rlx_status rlx__flow_fail(rlx_flow *f, rlx_status s, const char *fmt, ...) RLX__PRINTF(3, 4);
/* "<scope>.<local>" (or local outside any scope), cut at n. */
void rlx__flow_scoped(const rlx_flow *f, const char *local, char *buf, size_t n);
/* Entry check of every block: NULL flow, or an earlier failure replayed. */
#define RLX__FLOW_ENTER(f)                                                                      \
    do {                                                                                        \
        if (!(f)) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "%s: flow is NULL", __func__);     \
        if ((f)->error != RLX_OK) {                                                             \
            rlx__fail((f)->error, "%s", (f)->error_msg ? (f)->error_msg : "earlier error");     \
            return (f)->error;                                                                  \
        }                                                                                       \
    } while (0)

/* Emits the composed LLaMA layer's primitives on flow's cursor (shared by the composed form
 * and the fused stage's expansion, so the two cannot drift apart). */
rlx_status rlx__emit_llama_layer(rlx_flow *flow, int64_t index, const rlx_llama_layer_spec *spec);

/* ---- built model -------------------------------------------------------------------------- */

typedef struct rlx__weight {
    char *key;
    rlx_tensor_view view; /* view into the weights handle (valid during build only) */
    float *f32;           /* CPU device: converted copy [numel] */
    size_t numel;
    int ndim;             /* the view's shape, kept after build (a tp part's shape when part) */
    int64_t shape[RLX_MAX_DIMS];
    /* Tensor parallelism (dist/shard.c): this rank's part of a 2-D tensor, rows
     * [row0, row0 + shape[0]) × columns [col0, col0 + shape[1]) of the view; rows past the view's
     * end read as zeros (vocabulary padding). Read it with rlx__weight_to_f32. */
    int part;
    int64_t row0, col0;
} rlx__weight;

struct rlx_model {
    int refs;             /* the caller's reference and one per session (__atomic builtins) */
    rlx_device_kind device;
    int threads;
    rlx__slist list;      /* expanded, resolved */
    int output;           /* value id */
    int tokens;           /* value id */
    int64_t max_tokens, max_seqs;
    int64_t vocab;        /* token range, from the embedding table */
    int64_t max_positions; /* rope table rows (0 = no rope) */
    rlx__weight *weights; /* one per distinct key */
    int n_weights;
    int *stage_w;         /* [n_stages][RLX__STAGE_MAX_W] weight index or -1 */
    float **consts;       /* [n_values]: data of constant values (rope tables), else NULL */
    struct rlx__dev_model *dev; /* device models: plan, device weights (NULL on the CPU) */
    rlx_profile profile;  /* effective compile profile (rlx/profile.h) */
    char *pass_log;       /* what the build's passes did (rlx_model_pass_log), or NULL */
    int plan_only;        /* built with rlx_build_params.plan_only: formats, never runs */
    char **unused;        /* [n_unused] names of the weights' tensors no stage reads (sorted) */
    int n_unused;
    struct rlx_comm *comm; /* tensor parallelism (rlx/dist.h): this rank's communicator, else NULL */
    int tp_rank, tp_size;  /* 0 and 1 without tensor parallelism */
    int pruned_stages;    /* stages passes.prune_last_layer moved onto one row per sequence */
    /* CPU models only, set by rlx__cpu_emulate (rlx check's error budget): round every stage
     * output to bf16 except the values marked in emul_keep (weights were rounded once) */
    int emul_bf16;
    unsigned char *emul_keep; /* [n_values] or NULL */
    /* KV cache (rlx/kv.h): the causal attention stages are its layers, in stage order */
    int n_kv_layers;
    int64_t kv_heads, kv_head_dim;
    const char *kv_unsupported; /* why the model cannot use a KV cache, NULL when it can */
};

/* A session's reference (runtime/build.c); rlx_model_destroy drops one, the last frees. */
void rlx__model_retain(const rlx_model *m);

/* One prefill as the executors see it. */
typedef struct rlx__batch {
    const int32_t *tokens;
    int64_t n_tokens;
    const int64_t *seq_start; /* [n_seqs + 1] offsets */
    int64_t n_seqs;
    const struct rlx_named_ids *inputs; /* named id inputs (rlx_session_prefill_ex) */
    int64_t n_inputs;
    const struct rlx__kv_call *kv;      /* KV cache of rlx_session_prefill_kv (host/kv/kv.h), or NULL */
} rlx__batch;

/* ---- encoder stages (model/encoder.c) ----------------------------------------------------- */

/* Prefill-time checks of a batch against the model's named inputs and gather tables: inputs
 * declared, n_tokens ids each, required ones present, ids within their table, sequences no
 * longer than a position table. */
rlx_status rlx__check_batch_inputs(const rlx_model *m, const rlx__batch *b);

#ifdef __cplusplus
}
#endif

#endif
