/* The Llama32 recipe: Llama 3.x prefill flows from a config, with a per-layer hook. */
#include "model/stages.h"

#include <stdlib.h>

struct rlx_llama_layer_ctx {
    int64_t index;
    rlx_llama_layer_spec spec;
    int composed;
};

int64_t rlx_llama_layer_ctx_index(const rlx_llama_layer_ctx *c) { return c ? c->index : -1; }
const rlx_llama_layer_spec *rlx_llama_layer_ctx_spec(const rlx_llama_layer_ctx *c) { return c ? &c->spec : NULL; }

rlx_status rlx_llama_layer_ctx_default(rlx_flow *f, const rlx_llama_layer_ctx *c) {
    if (!c) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_llama_layer_ctx_default: ctx is NULL");
    return c->composed ? rlx_flow_llama_layer_composed(f, c->index, &c->spec)
                       : rlx_flow_llama_layer_fused(f, c->index, &c->spec);
}

rlx_llama_recipe_params rlx_llama_recipe_default_params(void) {
    rlx_llama_recipe_params p = {.batch = 1, .seq = 128, .last_token_logits = 1};
    return p;
}

typedef struct recipe_ctx {
    const rlx_llama_config *cfg;
    const rlx_llama_recipe_params *p;
} recipe_ctx;

static rlx_status one_layer(rlx_flow *f, int64_t i, void *user) {
    const recipe_ctx *rc = user;
    rlx_llama_layer_ctx c = {.index = i, .composed = rc->p->composed_layers};
    c.spec = (rlx_llama_layer_spec){.prefix = NULL, .heads = rc->cfg->num_attention_heads,
                                    .kv_heads = rc->cfg->num_key_value_heads, .head_dim = rc->cfg->head_dim,
                                    .eps = rc->cfg->rms_norm_eps};
    if (rc->p->layer) {
        size_t before = rlx_flow_stage_count(f);
        rlx_status s = rc->p->layer(f, &c, rc->p->layer_user);
        if (!rlx__status_known(s))
            return rlx__fail(RLX_ERR_INTERNAL, "llama recipe: the layer hook returned %d for layer %lld, which is not an rlx_status", (int)s,
                             (long long)i);
        if (s) return s;
        if (rlx_flow_stage_count(f) == before)
            return rlx__fail(RLX_ERR_BUILD, "llama recipe: the layer hook emitted nothing for layer %lld", (long long)i);
        return rlx_flow_status(f);
    }
    return rlx_llama_layer_ctx_default(f, &c);
}

rlx_status rlx_llama_flow(const rlx_llama_config *cfg, const rlx_llama_recipe_params *params, rlx_flow **out) {
    if (!out) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_llama_flow: out is NULL");
    *out = NULL;
    if (!cfg) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_llama_flow: config is NULL");
    rlx_status s = rlx_llama_config_validate(cfg, "config");
    if (s) return s;
    rlx_llama_recipe_params p = params ? *params : rlx_llama_recipe_default_params();
    if (p.seq > cfg->max_position_embeddings)
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "llama recipe: seq %lld exceeds max_position_embeddings %lld",
                         (long long)p.seq, (long long)cfg->max_position_embeddings);
    if (p.max_context < 0 || p.max_context > cfg->max_position_embeddings)
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "llama recipe: max_context %lld is not in [0, max_position_embeddings %lld]",
                         (long long)p.max_context, (long long)cfg->max_position_embeddings);
    rlx_flow *f;
    if ((s = rlx_flow_create("llama32", &f))) return s;
    rlx_rope_params rope = cfg->rope;
    rope.head_dim = cfg->head_dim;
    /* Tables only as long as a sequence can be: a prompt (the capacity) or, with a KV cache, the
     * context the server asks for. */
    rope.max_positions = p.max_context > p.seq ? p.max_context : p.seq;
    recipe_ctx rc = {cfg, &p};
    rlx_flow_input_tokens(f, "tokens", p.batch, p.seq);
    rlx_flow_rope_tables(f, &rope);
    rlx_flow_token_embed(f, NULL);
    rlx__flow_expect_embedding(f, cfg->vocab_size, cfg->hidden_size);
    if (p.before_layers) rlx_flow_layer(f, "before_layers", p.before_layers, p.hooks_user);
    rlx_flow_repeat_layers(f, cfg->num_hidden_layers, one_layer, &rc);
    if (p.after_layers) rlx_flow_layer(f, "after_layers", p.after_layers, p.hooks_user);
    if (p.last_token_logits) rlx_flow_last_token(f);
    rlx_flow_final_norm(f, cfg->rms_norm_eps);
    if (p.patch) rlx_flow_layer(f, "patch", p.patch, p.hooks_user);
    rlx_flow_lm_head(f, cfg->vocab_size, cfg->hidden_size, cfg->tie_word_embeddings);
    if ((s = rlx_flow_status(f))) {
        rlx_flow_destroy(f);
        return s;
    }
    *out = f;
    return RLX_OK;
}
