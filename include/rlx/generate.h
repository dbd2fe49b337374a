/* rlx — text generation over a KV cache: prefill the prompts, then decode steps until each
 * sequence has max_new_tokens new tokens or produced an end token. What `rlx generate` runs, and a
 * complete example of rlx_session_prefill_kv (rlx/kv.h) as a server would drive it.
 *
 *     rlx_generate_params gp = rlx_generate_default_params();
 *     gp.max_new_tokens = 64;
 *     int32_t eos[8]; int64_t n_eos;
 *     rlx_eos_tokens(weights, eos, 8, &n_eos);
 *     gp.stop_tokens = eos; gp.n_stop_tokens = n_eos;
 *     rlx_generation *g;
 *     rlx_generate(model, tokens, prompt_lens, n_prompts, &gp, stream, &g);
 *     const int32_t *ids = rlx_generation_tokens(g, 0, &n);   // new tokens of prompt 0
 *     rlx_generation_destroy(g);
 *
 * The model must give last-token logits (the Llama recipe's default) and its RoPE tables must cover
 * every prompt plus max_new_tokens (rlx_llama_recipe_params.max_context). Any capacity works: the
 * prompts are prefilled in as many calls as the capacity (batch × seq) needs, a prompt longer than
 * it in chunks, and decode steps take up to `batch` sequences per call. The KV pages come from a pool
 * allocated for the call (on the model's device) with a free list: a sequence that ends gives its
 * pages back while the others go on. Sequences of different lengths finish independently.
 */
#ifndef RLX_GENERATE_H
#define RLX_GENERATE_H

#include "rlx/flow.h"
#include "rlx/kv.h"
#include "rlx/rlx.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rlx_generate_params {
    int64_t max_new_tokens;     /* new tokens per sequence at most (default 32) */
    double temperature;         /* 0 (default): greedy (argmax, lowest id on a tie); > 0: sampling */
    int64_t top_k;              /* sampling: keep the k most likely tokens; 0 (default) = all */
    double top_p;               /* sampling: keep the smallest set with probability >= top_p; 1 = all */
    uint64_t seed;              /* sampling: sequence i draws from its own generator, seeded by
                                   (seed, i): the same seed and index give the same tokens whatever
                                   the other prompts are */
    const int32_t *stop_tokens; /* a sequence ends after producing one of these (kept in its
                                   tokens); NULL = none (rlx_eos_tokens reads the model's) */
    int64_t n_stop_tokens;
    int64_t page_size;          /* KV page size, a power of two 1 .. 256 (default 16) */
    rlx_kv_layout layout;       /* default NHD */
} rlx_generate_params;

RLX_API rlx_generate_params rlx_generate_default_params(void);

/* The result of one rlx_generate. */
typedef struct rlx_generation rlx_generation;

/* Generates for n_prompts prompts packed in tokens (prompt_lens[i] ids each). Blocks until done
 * (it reads the logits of every step to the host); device work runs on stream. Refused before any
 * work: a prompt that with max_new_tokens exceeds rlx_model_max_context, a model without
 * last-token logits or without a KV cache, bad parameters, ids outside the vocabulary.
 * Tensor parallelism (a model built with rlx_build_params.comm): every rank calls rlx_generate with
 * the same arguments at once, each on its own thread and stream; each rank's page pool holds its
 * own kv heads, and the ranks draw the same tokens (they hold the same gathered logits). A rank
 * that fails aborts the communicator, so the others return RLX_ERR_COMM naming it. */
RLX_API rlx_status rlx_generate(const rlx_model *model, const int32_t *tokens, const int64_t *prompt_lens,
                                int64_t n_prompts, const rlx_generate_params *params, void *stream,
                                rlx_generation **out);
RLX_API void rlx_generation_destroy(rlx_generation *g);
/* Number of sequences (= n_prompts); 0 for NULL. */
RLX_API int64_t rlx_generation_count(const rlx_generation *g);
/* New tokens of sequence i (the end token included when it stopped on one); *n gets their count.
 * NULL (and *n = 0) for a bad index. Valid until rlx_generation_destroy. */
RLX_API const int32_t *rlx_generation_tokens(const rlx_generation *g, int64_t i, int64_t *n);
/* 1: sequence i ended on a stop token ("stop"); 0: it reached max_new_tokens ("length"); -1 for a
 * bad index. */
RLX_API int rlx_generation_stopped(const rlx_generation *g, int64_t i);

typedef struct rlx_generation_stats {
    double first_token_ms;  /* start to every sequence's first new token (the prefill calls + sampling) */
    double decode_ms;       /* the decode steps after that */
    int64_t decode_tokens;  /* tokens the decode steps produced (all sequences) */
    int64_t calls;          /* rlx_session_prefill_kv calls, prefill and decode */
    int64_t kv_pages;       /* pages of the pool */
    size_t kv_bytes;        /* bytes of the pool (K and V, every layer) */
} rlx_generation_stats;
RLX_API rlx_status rlx_generation_get_stats(const rlx_generation *g, rlx_generation_stats *out);

/* The end tokens of a Hugging Face model directory: eos_token_id of generation_config.json, or
 * else of config.json, an integer or a list. *n = 0 when neither names one; RLX_ERR_FORMAT /
 * RLX_ERR_CONFIG for a malformed file or value (naming it), RLX_ERR_INVALID_ARGUMENT when more
 * than cap ids are listed. */
RLX_API rlx_status rlx_eos_tokens(const rlx_weights *weights, int32_t *ids, int64_t cap, int64_t *n);

#ifdef __cplusplus
}
#endif

#endif /* RLX_GENERATE_H */
