/* LLaMA config.json text through rlx_llama_config_parse. An accepted config must validate, survive
 * rlx_llama_config_to_json → parse unchanged, and assemble a flow (every size derived from it is
 * then computed by the recipe and the blocks). */
#include "rlx/flow.h"
#include "fuzz_util.h"

static void same_config(const rlx_llama_config *a, const rlx_llama_config *b) {
    FUZZ_CHECK(a->vocab_size == b->vocab_size && a->hidden_size == b->hidden_size);
    FUZZ_CHECK(a->intermediate_size == b->intermediate_size && a->num_hidden_layers == b->num_hidden_layers);
    FUZZ_CHECK(a->num_attention_heads == b->num_attention_heads && a->num_key_value_heads == b->num_key_value_heads);
    FUZZ_CHECK(a->head_dim == b->head_dim && a->max_position_embeddings == b->max_position_embeddings);
    FUZZ_CHECK(a->tie_word_embeddings == b->tie_word_embeddings && a->rope.scaling == b->rope.scaling);
    FUZZ_CHECK(a->rope.head_dim == b->rope.head_dim && a->rope.max_positions == b->rope.max_positions);
    FUZZ_CHECK(a->rope.original_max_positions == b->rope.original_max_positions);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = fuzz_cstr(data, size);
    rlx_llama_config c;
    rlx_clear_error();
    rlx_status s = rlx_llama_config_parse(text, "fuzz/config.json", &c);
    free(text);
    FUZZ_FAILED_WITH_MESSAGE(s);
    if (s != RLX_OK) return 0;
    FUZZ_CHECK(rlx_llama_config_validate(&c, "fuzz") == RLX_OK);
    char *json = NULL;
    FUZZ_CHECK(rlx_llama_config_to_json(&c, &json) == RLX_OK);
    rlx_llama_config back;
    FUZZ_CHECK(rlx_llama_config_parse(json, "round trip", &back) == RLX_OK);
    rlx_free(json);
    same_config(&c, &back);
    rlx_llama_recipe_params p = rlx_llama_recipe_default_params();
    p.seq = c.max_position_embeddings < 4 ? c.max_position_embeddings : 4;
    rlx_flow *f = NULL;
    s = rlx_llama_flow(&c, &p, &f);
    FUZZ_FAILED_WITH_MESSAGE(s);
    rlx_flow_destroy(f);
    return 0;
}
