/* Example (a): a LLaMA-shaped flow assembled by hand from tier-0 blocks, on random weights.
 *
 * The flow below is what the Llama32 recipe builds, written out block by block: token input,
 * RoPE tables, embedding, a stack of layers (each: save → RMSNorm → attention → o_proj → add →
 * save → RMSNorm → SwiGLU → add), last-token gather, final norm, tied LM head. The program runs
 * one prefill and checks the logits against the recipe's. Run: ./example-hand-flow */
#include "rlx/flow.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char *what) {
    fprintf(stderr, "example-hand-flow: %s: %s\n", what, rlx_last_error());
    return 1;
}

/* One decoder layer from small blocks; user is the config. */
static rlx_status layer(rlx_flow *f, int64_t i, void *user) {
    const rlx_llama_config *c = user;
    char key[128], prefix[96];
    snprintf(prefix, sizeof prefix, "model.layers.%lld", (long long)i);
    rlx_attn_spec attn = {.prefix = key, .heads = c->num_attention_heads, .kv_heads = c->num_key_value_heads,
                          .head_dim = c->head_dim, .causal = 1, .rope = 1};
    rlx_flow_residual_save(f);
    snprintf(key, sizeof key, "%s.input_layernorm.weight", prefix);
    rlx_flow_rms_norm(f, key, c->rms_norm_eps);
    snprintf(key, sizeof key, "%s.self_attn", prefix);
    rlx_flow_self_attn_prefill(f, &attn);
    snprintf(key, sizeof key, "%s.self_attn.o_proj.weight", prefix);
    rlx_flow_linear(f, key, NULL);
    rlx_flow_residual_add(f);
    rlx_flow_residual_save(f);
    snprintf(key, sizeof key, "%s.post_attention_layernorm.weight", prefix);
    rlx_flow_rms_norm(f, key, c->rms_norm_eps);
    snprintf(key, sizeof key, "%s.mlp", prefix);
    rlx_flow_swiglu(f, key);
    return rlx_flow_residual_add(f); /* errors are sticky: the last status covers the layer */
}

/* Builds flow on weights, runs tokens, writes the logits of the last position to out[V]. */
static int run(const rlx_flow *flow, const rlx_weights *w, const int32_t *tokens, int64_t n, float *out, int64_t V) {
    rlx_model *m = NULL;
    rlx_session *s = NULL;
    rlx_status st = rlx_model_build(flow, w, NULL, &m);
    if (!st) st = rlx_session_create(m, &s);
    if (!st) st = rlx_session_prefill(s, tokens, n, NULL, 1, NULL);
    if (!st) st = rlx_session_output_to_host(s, out, (size_t)V);
    rlx_session_destroy(s);
    rlx_model_destroy(m);
    return st != RLX_OK;
}

int main(void) {
    rlx_llama_config c;
    rlx_weights *w = NULL;
    if (rlx_llama_builtin_config("tiny", &c) || rlx_llama_random_weights(&c, 2024, RLX_DTYPE_BF16, &w)) return fail("weights");
    const int64_t seq = 16;

    rlx_flow *f;
    if (rlx_flow_create("hand_llama", &f)) return fail("flow");
    rlx_rope_params rope = c.rope;
    rope.head_dim = c.head_dim;
    rope.max_positions = seq;
    rlx_flow_input_tokens(f, "tokens", 1, seq);
    rlx_flow_rope_tables(f, &rope);
    rlx_flow_token_embed(f, NULL);
    rlx_flow_repeat_layers(f, c.num_hidden_layers, layer, &c);
    rlx_flow_last_token(f);
    rlx_flow_final_norm(f, c.rms_norm_eps);
    rlx_flow_lm_head(f, c.vocab_size, c.hidden_size, c.tie_word_embeddings);
    if (rlx_flow_status(f)) return fail("assembling the flow");

    rlx_llama_recipe_params rp = rlx_llama_recipe_default_params();
    rp.seq = seq;
    rp.composed_layers = 1;
    rlx_flow *recipe;
    if (rlx_llama_flow(&c, &rp, &recipe)) return fail("recipe");

    const int32_t tokens[] = {1, 7, 3, 42, 5, 9, 2};
    const int64_t n = sizeof tokens / sizeof tokens[0], V = c.vocab_size;
    float *a = malloc((size_t)V * sizeof *a), *b = malloc((size_t)V * sizeof *b);
    if (!a || !b) return fail("memory");
    if (run(f, w, tokens, n, a, V)) return fail("hand-built flow");
    if (run(recipe, w, tokens, n, b, V)) return fail("recipe flow");
    int64_t best = 0;
    double diff = 0;
    for (int64_t v = 0; v < V; v++) {
        if (a[v] > a[best]) best = v;
        diff = fmax(diff, fabs((double)a[v] - b[v]));
    }
    printf("hand-built flow: %zu stages, %lld layers; next token %lld (logit %.4f); max |hand - recipe| = %g\n",
           rlx_flow_stage_count(f), (long long)c.num_hidden_layers, (long long)best, a[best], diff);
    int rc = diff == 0 ? 0 : 1;
    if (rc) fprintf(stderr, "example-hand-flow: the hand-built flow differs from the recipe\n");
    free(a);
    free(b);
    rlx_flow_destroy(recipe);
    rlx_flow_destroy(f);
    rlx_weights_destroy(w);
    return rc;
}
