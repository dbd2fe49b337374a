/* BERT / NomicBERT config.json text through rlx_encoder_config_parse. An accepted config must
 * validate and assemble a flow. */
#include "rlx/encoder.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = fuzz_cstr(data, size);
    rlx_encoder_config c;
    rlx_clear_error();
    rlx_status s = rlx_encoder_config_parse(text, "fuzz/config.json", &c);
    free(text);
    FUZZ_FAILED_WITH_MESSAGE(s);
    if (s != RLX_OK) return 0;
    FUZZ_CHECK(rlx_encoder_config_validate(&c, "fuzz") == RLX_OK);
    rlx_encoder_recipe_params p = rlx_encoder_recipe_default_params();
    p.seq = c.max_position_embeddings < 4 ? c.max_position_embeddings : 4;
    rlx_flow *f = NULL;
    s = rlx_encoder_flow(&c, &p, &f);
    FUZZ_FAILED_WITH_MESSAGE(s);
    rlx_flow_destroy(f);
    return 0;
}
