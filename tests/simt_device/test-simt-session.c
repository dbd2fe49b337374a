/* Sessions on the simt device (the device path of the CUDA executor, on the CPU): the model
 * outlives its destroyed handle in its sessions, a failed prefill leaves no output, and the
 * finite check reads the device output back. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rlx/flow.h"
#include "rlx_simt_device.h"

Test(simt_session, lifetime_failed_prefill_and_finite_check_on_a_device) {
    rlx_simt_device_install();
    rlx_llama_config c = {.vocab_size = 64, .hidden_size = 32, .intermediate_size = 48, .num_hidden_layers = 1,
                          .num_attention_heads = 4, .num_key_value_heads = 2, .head_dim = 8, .rms_norm_eps = 1e-5,
                          .max_position_embeddings = 64, .tie_word_embeddings = 1,
                          .rope = {.head_dim = 8, .max_positions = 64, .theta = 10000}};
    rlx_weights *w;
    cr_assert_eq(rlx_llama_random_weights(&c, 4, RLX_DTYPE_BF16, &w), RLX_OK, "%s", rlx_last_error());
    rlx_llama_recipe_params rp = rlx_llama_recipe_default_params();
    rp.batch = 2;
    rp.seq = 8;
    rlx_flow *f;
    cr_assert_eq(rlx_llama_flow(&c, &rp, &f), RLX_OK, "%s", rlx_last_error());
    rlx_build_params bp = rlx_build_default_params();
    bp.device = RLX_DEVICE_SIMT;
    rlx_model *m;
    cr_assert_eq(rlx_model_build(f, w, &bp, &m), RLX_OK, "%s", rlx_last_error());
    rlx_session *s;
    cr_assert_eq(rlx_session_create(m, &s), RLX_OK, "%s", rlx_last_error());
    rlx_model_destroy(m); /* the session keeps the device model */
    rlx_flow_destroy(f);
    rlx_weights_destroy(w);
    const int32_t toks[5] = {1, 2, 3, 5, 6};
    const int64_t lens[2] = {3, 2};
    cr_assert_eq(rlx_session_prefill(s, toks, 5, lens, 2, NULL), RLX_OK, "%s", rlx_last_error());
    int64_t per_row[2] = {-1, -1}, total = -1;
    cr_assert_eq(rlx_session_output_nonfinite(s, per_row, 2, &total), RLX_OK, "%s", rlx_last_error());
    cr_expect(total == 0 && per_row[0] == 0 && per_row[1] == 0, "%lld %lld %lld", (long long)total, (long long)per_row[0],
              (long long)per_row[1]);
    const int32_t bad[2] = {1, 99};
    cr_assert_eq(rlx_session_prefill(s, bad, 2, NULL, 1, NULL), RLX_ERR_TOKEN_RANGE);
    float out[128];
    cr_expect_eq(rlx_session_output_to_host(s, out, 128), RLX_ERR_INVALID_ARGUMENT);
    cr_expect(strstr(rlx_last_error(), "the last prefill on this session failed (RLX_ERR_TOKEN_RANGE)"), "%s", rlx_last_error());
    cr_expect_eq(rlx_session_output_nonfinite(s, NULL, 0, &total), RLX_ERR_INVALID_ARGUMENT);
    cr_assert_eq(rlx_session_prefill(s, toks, 5, lens, 2, NULL), RLX_OK, "%s", rlx_last_error());
    cr_expect_eq(rlx_session_output_to_host(s, out, 128), RLX_OK, "%s", rlx_last_error());
    for (int i = 0; i < 128; i++) cr_assert(isfinite(out[i]), "logit %d = %g", i, out[i]);
    rlx_session_destroy(s); /* the last holder: the device model goes here */
}
