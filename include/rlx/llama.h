/* rlx — LLaMA 3.x: config, and the Llama32 recipe. */
#ifndef RLX_LLAMA_H
#define RLX_LLAMA_H

#include "rlx/rlx.h"
#include "rlx/weights.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum rlx_rope_scaling {
    RLX_ROPE_SCALING_NONE = 0,   /* rope_type "default" or no rope_scaling */
    RLX_ROPE_SCALING_LLAMA3 = 1, /* rope_type "llama3" */
} rlx_rope_scaling;

/* NeoX (HF half-rotation) RoPE with optional llama3 frequency scaling. */
typedef struct rlx_rope_params {
    int64_t head_dim;               /* even */
    int64_t max_positions;          /* table rows */
    double theta;                   /* base, e.g. 500000 */
    rlx_rope_scaling scaling;
    double factor;                  /* llama3: e.g. 32 */
    double low_freq_factor;         /* llama3: e.g. 1 */
    double high_freq_factor;        /* llama3: e.g. 4 */
    int64_t original_max_positions; /* llama3: e.g. 8192 */
} rlx_rope_params;

typedef struct rlx_llama_config {
    int64_t vocab_size;
    int64_t hidden_size;
    int64_t intermediate_size;
    int64_t num_hidden_layers;
    int64_t num_attention_heads;
    int64_t num_key_value_heads;     /* defaults to num_attention_heads when absent */
    int64_t head_dim;                /* defaults (absent or null) to hidden_size / num_attention_heads */
    double rms_norm_eps;             /* default 1e-6, as transformers LlamaConfig */
    int64_t max_position_embeddings; /* default 2048 (HF) */
    int tie_word_embeddings;         /* default 0 (HF LlamaConfig default is False) */
    rlx_rope_params rope;            /* theta (default 10000, HF), scaling; head_dim and
                                        max_positions filled in from the fields above */
} rlx_llama_config;

/* Parses config.json text (both layouts: top-level rope_theta + rope_scaling, and the
 * transformers 5 "rope_parameters" object; when both are present they must agree) and
 * validates it. source names the file in error messages ("config.json" when NULL). *out is
 * written only on success. RLX_ERR_FORMAT: not JSON (line and column given); RLX_ERR_CONFIG:
 * missing key, wrong JSON type, implausible or inconsistent value; RLX_ERR_UNSUPPORTED:
 * model_type other than "llama", rope types other than "default" and "llama3". */
RLX_API rlx_status rlx_llama_config_parse(const char *json_text, const char *source,
                                          rlx_llama_config *out);
/* Reads and parses a config.json file. */
RLX_API rlx_status rlx_llama_config_load(const char *path, rlx_llama_config *out);
/* Refuses inconsistent or implausible configs with a message naming the key. */
RLX_API rlx_status rlx_llama_config_validate(const rlx_llama_config *cfg, const char *source);

#ifdef __cplusplus
}
#endif

#endif /* RLX_LLAMA_H */
