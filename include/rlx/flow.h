/* rlx — flows (tier 0), built models and sessions.
 *
 * A flow is a model description assembled from blocks. Each block appends stages to the
 * flow's stage list and moves the flow's *cursor* (the current value) forward, like the seed's
 * ModelFlow chain:
 *
 *     rlx_flow *f;  rlx_flow_create("my_lm", &f);
 *     rlx_flow_input_tokens(f, "tokens", batch, seq);
 *     rlx_flow_rope_tables(f, &rope);
 *     rlx_flow_token_embed(f, NULL);
 *     rlx_flow_repeat_layers(f, n_layers, my_layer, &spec);
 *     rlx_flow_final_norm(f, eps);
 *     rlx_flow_lm_head(f, vocab, hidden, tied);
 *     rlx_model_build(f, weights, &params, &model);
 *
 * Errors are sticky: the first failing block records its status and message, later blocks do
 * nothing and return it again, and rlx_model_build reports it. Weight keys are only checked at
 * build, where every missing or mis-shaped weight is reported by key.
 *
 * Shapes: activations are [tokens, width] with tokens = the prompts of a batch packed one after
 * another (batch × seq at most); token ids are int32.
 */
#ifndef RLX_FLOW_H
#define RLX_FLOW_H

#include "rlx/llama.h"
#include "rlx/rlx.h"
#include "rlx/weights.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rlx_flow rlx_flow;
typedef struct rlx_model rlx_model;
typedef struct rlx_session rlx_session;
typedef struct rlx_profile rlx_profile; /* rlx/profile.h */
typedef struct rlx_comm rlx_comm;       /* rlx/dist.h */

/* ---- flow ------------------------------------------------------------------------------- */

RLX_API rlx_status rlx_flow_create(const char *name, rlx_flow **out);
RLX_API void rlx_flow_destroy(rlx_flow *flow);
/* The first error recorded by a block (RLX_OK if none). */
RLX_API rlx_status rlx_flow_status(const rlx_flow *flow);
RLX_API const char *rlx_flow_name(const rlx_flow *flow);

/* Token-id input [batch, seq] int32; becomes the cursor. batch × seq is the capacity a built
 * model accepts per prefill. */
RLX_API rlx_status rlx_flow_input_tokens(rlx_flow *flow, const char *name, int64_t batch,
                                         int64_t seq);
/* cos/sin tables [max_positions, head_dim/2] (f64 math, stored f32) used by attention blocks. */
RLX_API rlx_status rlx_flow_rope_tables(rlx_flow *flow, const rlx_rope_params *rope);
/* Gathers rows of the embedding table (key NULL: "model.embed_tokens.weight"). */
RLX_API rlx_status rlx_flow_token_embed(rlx_flow *flow, const char *key);
/* x / sqrt(mean(x²) + eps) · γ over the last axis. */
RLX_API rlx_status rlx_flow_rms_norm(rlx_flow *flow, const char *key, double eps);
/* RMSNorm with "model.norm.weight". */
RLX_API rlx_status rlx_flow_final_norm(rlx_flow *flow, double eps);
/* y = x·Wᵀ (+ b): W [out, in] from key, bias_key NULL for none. */
RLX_API rlx_status rlx_flow_linear(rlx_flow *flow, const char *key, const char *bias_key);
/* One save slot: save remembers the cursor; add makes cursor + saved and clears the slot. */
RLX_API rlx_status rlx_flow_residual_save(rlx_flow *flow);
RLX_API rlx_status rlx_flow_residual_add(rlx_flow *flow);

typedef struct rlx_attn_spec {
    const char *prefix; /* weight prefix, e.g. "model.layers.0.self_attn" */
    int64_t heads;
    int64_t kv_heads;   /* divides heads; 1 = MQA */
    int64_t head_dim;
    int causal;         /* 1: bottom-right-aligned causal mask */
    int rope;           /* 1: NeoX RoPE on q and k (needs rope_tables) */
} rlx_attn_spec;

/* q, k, v projections (prefix.{q,k,v}_proj.weight), RoPE on q and k, GQA attention with
 * scale 1/sqrt(head_dim). Output [tokens, heads·head_dim]; o_proj is the caller's. */
RLX_API rlx_status rlx_flow_self_attn_prefill(rlx_flow *flow, const rlx_attn_spec *spec);
/* HF MLP: down(silu(gate(x)) · up(x)) with prefix.{gate,up,down}_proj.weight. */
RLX_API rlx_status rlx_flow_swiglu(rlx_flow *flow, const char *prefix);
/* Keeps the last position of every sequence: [tokens, H] -> [sequences, H]. */
RLX_API rlx_status rlx_flow_last_token(rlx_flow *flow);
/* Logits x·Eᵀ (tied: "model.embed_tokens.weight") or x·lm_headᵀ ("lm_head.weight"). */
RLX_API rlx_status rlx_flow_lm_head(rlx_flow *flow, int64_t vocab, int64_t hidden, int tied);

/* LayerStack: runs fn inside a named scope; stages it adds are named "<name>.<stage>". */
typedef rlx_status (*rlx_layer_fn)(rlx_flow *flow, void *user);
RLX_API rlx_status rlx_flow_layer(rlx_flow *flow, const char *name, rlx_layer_fn fn, void *user);
/* Calls fn(flow, i, user) for i in [0, n), each inside scope "L<i>". */
typedef rlx_status (*rlx_repeat_fn)(rlx_flow *flow, int64_t index, void *user);
RLX_API rlx_status rlx_flow_repeat_layers(rlx_flow *flow, int64_t n, rlx_repeat_fn fn,
                                          void *user);

typedef struct rlx_llama_layer_spec {
    const char *prefix; /* NULL: "model.layers.<index>" */
    int64_t heads;
    int64_t kv_heads;
    int64_t head_dim;
    double eps;
} rlx_llama_layer_spec;

/* One composite stage for a whole LLaMA layer (14 inputs: x, 2 norm weights, q/k/v/o,
 * gate/up/down, cos, sin); expands to the composed form's primitives when executed. */
RLX_API rlx_status rlx_flow_llama_layer_fused(rlx_flow *flow, int64_t index,
                                              const rlx_llama_layer_spec *spec);
/* The same layer from small blocks: residual_save → rms_norm → self_attn_prefill →
 * linear(o_proj) → residual_add → residual_save → rms_norm → swiglu → residual_add. */
RLX_API rlx_status rlx_flow_llama_layer_composed(rlx_flow *flow, int64_t index,
                                                 const rlx_llama_layer_spec *spec);

/* Number of stages and a printable stage list ("rlx plan"); free the text with rlx_free. */
RLX_API size_t rlx_flow_stage_count(const rlx_flow *flow);
RLX_API rlx_status rlx_flow_format(const rlx_flow *flow, char **text);
RLX_API void rlx_free(void *p);

/* ---- Llama32 recipe ----------------------------------------------------------------------- */

/* Per-layer hook: emit layer `index` into flow. ctx gives the index, the layer spec and the
 * default stage (rlx_llama_layer_ctx_default), so one layer can be swapped. */
typedef struct rlx_llama_layer_ctx rlx_llama_layer_ctx;
typedef rlx_status (*rlx_llama_layer_hook)(rlx_flow *flow, const rlx_llama_layer_ctx *ctx,
                                           void *user);
RLX_API int64_t rlx_llama_layer_ctx_index(const rlx_llama_layer_ctx *ctx);
RLX_API const rlx_llama_layer_spec *rlx_llama_layer_ctx_spec(const rlx_llama_layer_ctx *ctx);
/* Emits the layer the recipe would have emitted without the hook. */
RLX_API rlx_status rlx_llama_layer_ctx_default(rlx_flow *flow, const rlx_llama_layer_ctx *ctx);

typedef struct rlx_llama_recipe_params {
    int64_t batch;              /* sequences per prefill (capacity); default 1 */
    int64_t seq;                /* tokens per sequence (capacity); default 128 */
    int last_token_logits;      /* 1 (default): logits of the last position only */
    int composed_layers;        /* 0 (default): fused layer stages; 1: composed blocks */
    rlx_llama_layer_hook layer; /* NULL: default stage for every layer */
    void *layer_user;
    /* Hooks in the seed's order: token_embed → before_layers → layers → after_layers →
     * last_token → final_norm → patch → lm_head. Each runs in its own scope (stage names
     * "before_layers.…", "after_layers.…", "patch.…") with hooks_user; NULL = none. */
    rlx_layer_fn before_layers;
    rlx_layer_fn after_layers;
    rlx_layer_fn patch;
    void *hooks_user;
    /* KV cache (rlx/kv.h): positions a sequence may reach, cached + new tokens, i.e. the rows of
     * the RoPE tables; 0 (default) = seq. At most max_position_embeddings. */
    int64_t max_context;
} rlx_llama_recipe_params;

RLX_API rlx_llama_recipe_params rlx_llama_recipe_default_params(void);
/* Assembles the Llama 3.x prefill flow for cfg. */
RLX_API rlx_status rlx_llama_flow(const rlx_llama_config *cfg, const rlx_llama_recipe_params *p,
                                  rlx_flow **out);

/* Built-in Llama-shaped configs for demos and benchmarks (no download needed):
 * "tiny", "llama-3.2-1b", "llama-3.2-3b", "llama-3.1-8b". */
RLX_API rlx_status rlx_llama_builtin_config(const char *name, rlx_llama_config *out);
/* Seeded random weights for cfg (dtype F32, F16 or BF16) with the HF key names and a config.json,
 * scaled so activations stay O(1) through the layers. */
RLX_API rlx_status rlx_llama_random_weights(const rlx_llama_config *cfg, uint64_t seed, rlx_dtype dtype,
                                            rlx_weights **out);
/* config.json text (transformers' layout) for cfg; free with rlx_free. */
RLX_API rlx_status rlx_llama_config_to_json(const rlx_llama_config *cfg, char **text);

/* ---- models and sessions ------------------------------------------------------------------- */

typedef enum rlx_device_kind {
    RLX_DEVICE_AUTO = 0, /* cuda when a device is present, else cpu */
    RLX_DEVICE_CPU = 1,  /* the f32 CPU reference */
    RLX_DEVICE_CUDA = 2,
    RLX_DEVICE_SIMT = 3, /* test device: CUDA kernels run on the CPU */
} rlx_device_kind;

RLX_API const char *rlx_device_kind_name(rlx_device_kind kind);
/* 1 when this build can make models for kind, else 0: cpu and auto always; cuda when the library
 * was compiled with CUDA (whether a GPU is present is rlx_model_build's to say:
 * RLX_ERR_NO_DEVICE); simt when the program links the simt test device and installed it. */
RLX_API int rlx_device_compiled(rlx_device_kind kind);

typedef struct rlx_build_params {
    rlx_device_kind device; /* default RLX_DEVICE_CPU */
    int cuda_device;        /* ordinal, default 0 */
    int threads;            /* CPU threads; 0 = one per core; at most 64 are used; negative is
                               refused (RLX_ERR_INVALID_ARGUMENT) */
    rlx_fusion_policy fusion;   /* device models: RLX_FUSION_FUSED (default) or RLX_FUSION_NONE */
    rlx_precision precision;    /* device models: RLX_PRECISION_BF16 (default) or RLX_PRECISION_F32 */
    const rlx_profile *profile; /* NULL = the "prefill" preset, with fusion and precision above;
                                   non-NULL: its fusion.policy and precision.compute replace
                                   them, its fusion.target picks the device when device is
                                   AUTO; the model keeps a copy (rlx/profile.h) */
    int plan_only;              /* 1: resolve and plan only (rlx plan): no weights are prepared and
                                   sessions refuse the model; 0 (default) */
    rlx_comm *comm;             /* tensor parallelism (rlx/dist.h): this rank's communicator, which
                                   must outlive the model; the model is this rank's part and its
                                   device follows from the communicator (local: cpu or simt, NCCL:
                                   its CUDA device). NULL (default): one device */
    /* Progress of the weight preparation (conversion and upload), in bytes of the checkpoint:
     * called on the building thread with done = 0 first, then after every chunk, done = total
     * last. NULL (default): no reports. The CLI draws a progress line from it. */
    void (*progress)(void *user, uint64_t done_bytes, uint64_t total_bytes);
    void *progress_user;
} rlx_build_params;

RLX_API rlx_build_params rlx_build_default_params(void);

/* Resolves the flow against weights: expands composite stages, infers every shape, checks
 * every weight (all missing or mis-shaped keys are listed in the message), and prepares the
 * weights for the device. The model keeps no reference to flow or weights. */
RLX_API rlx_status rlx_model_build(const rlx_flow *flow, const rlx_weights *weights,
                                   const rlx_build_params *params, rlx_model **out);
/* Lifetimes: handles may be destroyed in any order. A model needs neither its flow nor its
 * weights once built. Every session holds a reference to its model: rlx_model_destroy drops the
 * caller's, and the model (device memory, custom-stage user data) is freed when the last of the
 * caller's handle and its sessions goes — so destroying a model while sessions are alive is
 * safe and they keep working. After rlx_model_destroy the caller must not use the model handle
 * itself (rlx_session_create on it included); its sessions stay valid until destroyed. The
 * reference count is atomic: sessions of one model may be created and destroyed on any threads.
 * destroy(NULL) is fine. */
RLX_API void rlx_model_destroy(rlx_model *model);
RLX_API rlx_device_kind rlx_model_device(const rlx_model *model);
/* Width of the output (vocab for a causal LM). */
RLX_API int64_t rlx_model_output_width(const rlx_model *model);
RLX_API int64_t rlx_model_max_tokens(const rlx_model *model);
RLX_API int64_t rlx_model_max_sequences(const rlx_model *model);
/* 1 if the output holds one row per sequence (last-token logits), 0 if one per token. */
RLX_API int rlx_model_output_per_sequence(const rlx_model *model);
/* Device memory footprint: weights (and constants) uploaded once per model, and what each session
 * allocates (activation arena at capacity, batch metadata, GEMM workspace). 0 on the CPU. */
RLX_API rlx_status rlx_model_memory(const rlx_model *model, size_t *weight_bytes, size_t *session_bytes);
/* Human-readable description of the device the model runs on. */
RLX_API const char *rlx_model_device_name(const rlx_model *model);
/* The kernel plan as text: each kernel, the stages it covers, the bytes it moves; free with
 * rlx_free. A device model gives the plan it runs; a CPU or plan-only model gives the plan a
 * device would run with the model's profile (the plan is device-independent: `rlx plan`). */
RLX_API rlx_status rlx_model_format_plan(const rlx_model *model, char **text);
/* The executed (expanded, shape-resolved) stage list as text; free with rlx_free. */
RLX_API rlx_status rlx_model_format(const rlx_model *model, char **text);
/* Tensors of the weights the model was built from that no stage reads (buffers old checkpoints
 * carry, such as an int64 embeddings.position_ids or rotary_emb.inv_freq, heads a flow does not
 * use), in name order: the count, and the i-th name (NULL when i is out of range). */
RLX_API int rlx_model_unused_tensor_count(const rlx_model *model);
RLX_API const char *rlx_model_unused_tensor(const rlx_model *model, int i);

RLX_API rlx_status rlx_session_create(const rlx_model *model, rlx_session **out);
RLX_API void rlx_session_destroy(rlx_session *session);

/* Runs a prefill of n_seqs prompts packed one after another in tokens (seq_lens[i] tokens
 * each; seq_lens NULL means one sequence of n_tokens). Every token id is checked against the
 * vocabulary first. stream: a cudaStream_t for device models (NULL = default stream); the
 * CPU device runs synchronously. */
RLX_API rlx_status rlx_session_prefill(rlx_session *session, const int32_t *tokens,
                                       int64_t n_tokens, const int64_t *seq_lens, int64_t n_seqs,
                                       void *stream);
/* Shape of the last prefill's output: rows (sequences or tokens) × cols (vocab). The output
 * exists only while the last prefill succeeded: before any prefill, and after a failed one
 * (bad arguments included), this and rlx_session_output_to_host fail with
 * RLX_ERR_INVALID_ARGUMENT ("the last prefill on this session failed (...)") until a prefill
 * succeeds — never the previous request's output. rows/cols may be NULL. */
RLX_API rlx_status rlx_session_output_shape(const rlx_session *session, int64_t *rows,
                                            int64_t *cols);
/* Copies the last prefill's output to host memory (capacity in floats). */
RLX_API rlx_status rlx_session_output_to_host(rlx_session *session, float *dst, size_t capacity);
/* The finite check of an output: *total gets how many of the last prefill's output values are
 * NaN or ±infinity (0: all finite) and, when per_row is non-NULL, per_row[r] the count of row r
 * (rows_capacity >= the rows of rlx_session_output_shape). One pass over the output; on a device
 * it is read back first, as rlx_session_output_to_host does (waiting for the prefill's stream).
 * NaN logits mean bad weights or an overflow: rlx_weights_check_finite names a non-finite
 * tensor. Fails as rlx_session_output_shape does when there is no output. */
RLX_API rlx_status rlx_session_output_nonfinite(rlx_session *session, int64_t *per_row,
                                                size_t rows_capacity, int64_t *total);

/* The last prefill's output where it lives, for use without a copy (DLPack, a server's kernels). */
typedef struct rlx_output_view {
    const void *data;       /* rows × cols elements, row-major, contiguous; read-only */
    rlx_dtype dtype;        /* RLX_DTYPE_F32, or RLX_DTYPE_BF16 on bf16 device models */
    int64_t rows, cols;     /* as rlx_session_output_shape */
    rlx_device_kind device; /* RLX_DEVICE_CUDA: device memory; CPU and SIMT: host memory */
    int device_ordinal;     /* CUDA device ordinal (rlx_build_params.cuda_device); 0 elsewhere */
    void *stream;           /* the stream the prefill was enqueued on: the data is complete once the
                               work on it is (rlx_session_synchronize waits for it) */
} rlx_output_view;

/* Fills *out for the last prefill; no copy, no synchronization. The data stays valid and unchanged
 * until the next prefill on this session or rlx_session_destroy. RLX_ERR_INVALID_ARGUMENT before
 * any prefill. */
RLX_API rlx_status rlx_session_output_view(const rlx_session *session, rlx_output_view *out);
/* Blocks until the work of the last prefill on this session has completed on its stream (device
 * models); returns at once for CPU models and before any prefill. */
RLX_API rlx_status rlx_session_synchronize(rlx_session *session);

#ifdef __cplusplus
}
#endif

#endif /* RLX_FLOW_H */
