/* rlx — encoders: BERT and NomicBERT blocks, recipes from Hugging Face config.json, and the
 * prefill form with named id inputs (token types).
 *
 * rlx never pads. A batch is its sequences packed one after another plus their lengths, so HF's
 * attention mask (1 keep / 0 pad) is the lengths themselves: encoder attention runs within each
 * sequence and is not causal. rlx_pack_padded turns an HF-style right-padded batch into that
 * form. Position ids are computed by rlx (0 .. len−1 within each sequence), never passed in.
 *
 * What rlx_encoder_flow assembles for a BERT checkpoint, from these blocks:
 *
 *     rlx_flow_input_tokens(f, "tokens", batch, seq);
 *     rlx_flow_input_ids(f, RLX_TOKEN_TYPE_IDS, 0);                  // optional: absent = zeros
 *     rlx_flow_token_embed(f, "embeddings.word_embeddings.weight");
 *     rlx_flow_gather_add(f, RLX_TOKEN_TYPE_IDS, "embeddings.token_type_embeddings.weight", 2);
 *     rlx_flow_gather_add(f, RLX_INPUT_POSITIONS, "embeddings.position_embeddings.weight", 512);
 *     rlx_flow_layer_norm(f, "embeddings.LayerNorm.weight", "embeddings.LayerNorm.bias", eps);
 *     rlx_flow_repeat_bert_layers(f, layers, &spec);                 // post-LN, biases, GELU
 *     rlx_flow_mean_pool(f);                                         // [tokens, H] -> [seqs, H]
 *     rlx_flow_l2_normalize(f);
 *
 * Every block is made of primitive stages a device planner can map one by one or fuse: LINEAR
 * carries its bias, GELU, LAYER_NORM and the residual ADD are separate stages, attention is the
 * shared ATTENTION op with causal = 0.
 */
#ifndef RLX_ENCODER_H
#define RLX_ENCODER_H

#include "rlx/flow.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- blocks -------------------------------------------------------------------------------- */

/* The name the recipes give the token-type input. */
#define RLX_TOKEN_TYPE_IDS "token_type_ids"
/* The computed position ids (0 .. len−1 within each sequence) as the ids of rlx_flow_gather_add.
 * Names starting with '@' are reserved for computed inputs. */
#define RLX_INPUT_POSITIONS "@positions"

/* Declares a named int32 prefill input with one id per token (e.g. RLX_TOKEN_TYPE_IDS), passed
 * to rlx_session_prefill_ex. required = 0: a prefill that does not pass it reads zeros (HF's
 * default token_type_ids); required = 1: such a prefill fails. Does not move the cursor. */
RLX_API rlx_status rlx_flow_input_ids(rlx_flow *flow, const char *name, int required);

/* x += table[ids] row by row: ids names an input declared with rlx_flow_input_ids, or
 * RLX_INPUT_POSITIONS. table_rows: the table's expected row count (0 = any); every id is
 * checked against the real row count at prefill (positions: every sequence length). */
RLX_API rlx_status rlx_flow_gather_add(rlx_flow *flow, const char *ids, const char *key,
                                       int64_t table_rows);

/* (x − mean) / sqrt(var + eps) · γ + β over the last axis, population variance (HF LayerNorm).
 * bias_key NULL: no β. */
RLX_API rlx_status rlx_flow_layer_norm(rlx_flow *flow, const char *weight_key,
                                       const char *bias_key, double eps);

/* Exact GELU: 0.5 · x · (1 + erf(x / √2)) (HF "gelu"; not the tanh approximation). */
RLX_API rlx_status rlx_flow_gelu(rlx_flow *flow);

/* BERT FFN: dense2(gelu(dense1(x) + b1)) + b2 with {prefix}.intermediate.dense.{weight,bias} and
 * {prefix}.output.dense.{weight,bias}. */
RLX_API rlx_status rlx_flow_gelu_ffn(rlx_flow *flow, const char *prefix);

/* Keeps columns [begin, begin + width) of the cursor (e.g. q, k, v out of a fused QKV GEMM). */
RLX_API rlx_status rlx_flow_slice_cols(rlx_flow *flow, int64_t begin, int64_t width);

/* Pooling over each packed sequence: [tokens, H] -> [sequences, H]. cls: the first token;
 * mean: the average of the sequence's tokens (all of them are real: rlx does not pad). */
RLX_API rlx_status rlx_flow_cls_pool(rlx_flow *flow);
RLX_API rlx_status rlx_flow_mean_pool(rlx_flow *flow);
/* x / max(‖x‖₂, 1e-12) per row (torch.nn.functional.normalize, sentence-transformers Normalize). */
RLX_API rlx_status rlx_flow_l2_normalize(rlx_flow *flow);

typedef struct rlx_bert_layer_spec {
    const char *layers_prefix; /* layer i reads "<layers_prefix>.<i>.…"; NULL: "encoder.layer" */
    int64_t heads;
    int64_t head_dim;          /* heads · head_dim = hidden */
    double eps;                /* layer_norm_eps */
} rlx_bert_layer_spec;

/* Post-LN BERT layer: h1 = LN(x + attn(x)·Wo + bo), out = LN(h1 + gelu_ffn(h1)); q, k, v with
 * biases, attention within each sequence, not causal. Keys under "<layers_prefix>.<index>":
 * attention.self.{query,key,value}.*, attention.output.dense.*, attention.output.LayerNorm.*,
 * intermediate.dense.*, output.dense.*, output.LayerNorm.* (each .weight and .bias). */
RLX_API rlx_status rlx_flow_bert_encoder_layer(rlx_flow *flow, int64_t index,
                                               const rlx_bert_layer_spec *spec);
/* Layers 0 .. n−1, each in scope "L<i>". */
RLX_API rlx_status rlx_flow_repeat_bert_layers(rlx_flow *flow, int64_t n,
                                               const rlx_bert_layer_spec *spec);

typedef struct rlx_nomic_layer_spec {
    const char *layers_prefix; /* NULL: "encoder.layers" */
    int64_t heads;
    int64_t head_dim;          /* needs rope_tables for this head_dim */
    double eps;                /* layer_norm_epsilon */
    int qkv_bias;              /* config qkv_proj_bias: Wqkv.bias and out_proj.bias */
    int fc1_bias;              /* config mlp_fc1_bias: fc11.bias and fc12.bias */
    int fc2_bias;              /* config mlp_fc2_bias: fc2.bias */
} rlx_nomic_layer_spec;

/* Post-LN NomicBERT layer: qkv = x·Wqkvᵀ (one [3·H, H] GEMM, sliced into q | k | v), NeoX RoPE on
 * q and k, attention within each sequence (not causal), h1 = LN(norm1)(x + attn·out_projᵀ),
 * out = LN(norm2)(h1 + fc2(fc11(h1) · silu(fc12(h1)))). Keys under "<layers_prefix>.<index>":
 * attn.Wqkv.weight, attn.out_proj.weight, norm1.*, mlp.fc11.weight (up), mlp.fc12.weight (gate),
 * mlp.fc2.weight, norm2.* (plus the biases the spec asks for). */
RLX_API rlx_status rlx_flow_nomic_encoder_layer(rlx_flow *flow, int64_t index,
                                                const rlx_nomic_layer_spec *spec);
RLX_API rlx_status rlx_flow_repeat_nomic_layers(rlx_flow *flow, int64_t n,
                                                const rlx_nomic_layer_spec *spec);

/* ---- configs and recipes ------------------------------------------------------------------- */

typedef enum rlx_encoder_arch {
    RLX_ENCODER_BERT = 0,       /* model_type "bert" (BertModel, BertFor*, sentence-transformers) */
    RLX_ENCODER_NOMIC_BERT = 1, /* model_type "nomic_bert", nomic-ai's hub layout */
} rlx_encoder_arch;

typedef struct rlx_encoder_config {
    rlx_encoder_arch arch;
    int64_t vocab_size;              /* rows of the word-embedding table when known */
    int64_t hidden_size;             /* nomic: n_embd */
    int64_t intermediate_size;       /* nomic: rows of mlp.fc11 when known, else n_inner */
    int64_t num_hidden_layers;       /* nomic: n_layer */
    int64_t num_attention_heads;     /* nomic: n_head */
    int64_t type_vocab_size;         /* 0: no token-type table */
    int64_t max_position_embeddings; /* longest sequence (BERT: position table rows; nomic: n_positions) */
    double layer_norm_eps;           /* nomic: layer_norm_epsilon */
    double rope_theta;               /* nomic: rotary_emb_base */
    int qkv_bias, mlp_fc1_bias, mlp_fc2_bias; /* nomic flags (BERT always has biases) */
    char prefix[64];                 /* weight key prefix: "" or e.g. "bert." */
} rlx_encoder_config;

/* Parses config.json text (model_type "bert" or "nomic_bert") and validates it; source names
 * the file in messages. prefix is left "" (the weights decide it: see below). */
RLX_API rlx_status rlx_encoder_config_parse(const char *json_text, const char *source,
                                            rlx_encoder_config *out);
/* Parses w's config.json and completes it from the tensors: the key prefix ("" or "bert.", from
 * where "embeddings.word_embeddings.weight" is), the vocabulary (the table's rows) and, for
 * NomicBERT, the intermediate size (mlp.fc11's rows: nomic rounds n_inner up). source NULL:
 * "<dir>/config.json". */
RLX_API rlx_status rlx_encoder_config_from_weights(const rlx_weights *w, const char *source,
                                                   rlx_encoder_config *out);
/* 1 when config.json text names an encoder rlx runs (model_type "bert" or "nomic_bert"), else 0
 * (NULL, malformed, or another model type); records no error. */
RLX_API int rlx_config_is_encoder(const char *json_text);
/* Refuses inconsistent or implausible configs with a message naming the key. */
RLX_API rlx_status rlx_encoder_config_validate(const rlx_encoder_config *cfg, const char *source);

typedef enum rlx_pool {
    RLX_POOL_NONE = 0, /* output [tokens, H]: the last hidden state of every token */
    RLX_POOL_CLS = 1,  /* [sequences, H]: the first token */
    RLX_POOL_MEAN = 2, /* [sequences, H]: the mean over each sequence */
} rlx_pool;

RLX_API const char *rlx_pool_name(rlx_pool pool);

/* A sentence-transformers directory's module pipeline (what SentenceTransformer.encode runs). */
typedef struct rlx_st_pipeline {
    int has_modules;            /* modules.json was read */
    char transformer_path[256]; /* the Transformer module's folder ("" = the directory itself) */
    int has_pooling;            /* a Pooling module (or a lone 1_Pooling/config.json) set pool */
    rlx_pool pool;              /* RLX_POOL_MEAN when has_pooling is 0 */
    char pool_source[256];      /* the file the pooling came from, relative to the directory */
    int normalize;              /* a Normalize module follows the pooling */
} rlx_st_pipeline;

/* Reads dir/modules.json: Transformer, then Pooling (its config.json: cls or mean), then an
 * optional Normalize. Without modules.json, a dir/1_Pooling/config.json alone still sets the
 * pooling; with neither, *out says "no pipeline" (has_modules = has_pooling = 0). A module rlx
 * cannot run (Dense, LayerNorm, a custom class…), one out of that order, or a pooling mode other
 * than cls/mean is RLX_ERR_UNSUPPORTED naming the module (index, path, type); malformed JSON is
 * RLX_ERR_FORMAT. *out is written only on success. */
RLX_API rlx_status rlx_sentence_transformers_read(const char *dir, rlx_st_pipeline *out);

typedef struct rlx_encoder_recipe_params {
    int64_t batch;  /* sequences per prefill (capacity); default 1 */
    int64_t seq;    /* tokens per sequence (capacity); default 128, at most max_position_embeddings */
    rlx_pool pool;  /* default RLX_POOL_MEAN */
    int normalize;  /* 1: L2-normalise each output row; default 0 */
} rlx_encoder_recipe_params;

RLX_API rlx_encoder_recipe_params rlx_encoder_recipe_default_params(void);
/* Assembles the encoder flow for cfg (BERT or NomicBERT). Weight keys get cfg->prefix. */
RLX_API rlx_status rlx_encoder_flow(const rlx_encoder_config *cfg,
                                    const rlx_encoder_recipe_params *p, rlx_flow **out);

/* ---- prefill with named inputs --------------------------------------------------------------- */

/* One named int32 input (declared in the flow with rlx_flow_input_ids): one id per token, packed
 * like the tokens. */
typedef struct rlx_named_ids {
    const char *name;    /* e.g. RLX_TOKEN_TYPE_IDS */
    const int32_t *ids;  /* [n] */
    int64_t n;           /* must equal the batch's n_tokens */
} rlx_named_ids;

/* A packed prefill: n_seqs sequences one after another in tokens (seq_lens[i] tokens each;
 * seq_lens NULL = one sequence of n_tokens), plus named inputs (n_inputs may be 0). Zero-init
 * and fill what you need. */
typedef struct rlx_prefill_batch {
    const int32_t *tokens;
    int64_t n_tokens;
    const int64_t *seq_lens;
    int64_t n_seqs;
    const rlx_named_ids *inputs;
    int64_t n_inputs;
} rlx_prefill_batch;

/* rlx_session_prefill with named inputs: checks, before any work, that every input is declared
 * by the model and has n_tokens ids, that required inputs are present, that each id is a row of
 * the table it indexes (RLX_ERR_TOKEN_RANGE, naming input, position and table key), and that no
 * sequence is longer than a position table. rlx_session_prefill is this with no named inputs.
 * The output (rlx_session_output_shape / _to_host) is [sequences, H] for pooled models and
 * [tokens, H] otherwise. */
RLX_API rlx_status rlx_session_prefill_ex(rlx_session *session, const rlx_prefill_batch *batch,
                                          void *stream);

/* Packs a right-padded HF batch: padded [batch, seq] with mask [batch, seq] (1 keep, 0 pad) ->
 * packed (capacity batch · seq ids) and seq_lens [batch]; *n_tokens gets the total. Each mask row
 * must be ones then zeros with at least one 1 (left padding or holes would change HF's position
 * ids, so they are refused with RLX_ERR_INVALID_ARGUMENT naming the row). Call it once per
 * array (input_ids, token_type_ids) with the same mask. */
RLX_API rlx_status rlx_pack_padded(const int32_t *padded, const int32_t *mask, int64_t batch,
                                   int64_t seq, int32_t *packed, int64_t *seq_lens,
                                   int64_t *n_tokens);

#ifdef __cplusplus
}
#endif

#endif /* RLX_ENCODER_H */
