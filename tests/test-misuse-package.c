/* API misuse for the functions of the install/ABI/Python work (issue 13): the version queries,
 * rlx_device_compiled out of range, and rlx_session_output_view / rlx_session_synchronize with
 * NULL, before any prefill and after a failed one. (The simt-output-view suite checks what a view
 * holds on the CPU and the simt device.) */
#include <criterion/criterion.h>
#include <string.h>

#include "rlx/flow.h"

Test(misuse_package, version_queries_need_nothing) {
    cr_expect_eq(rlx_version(), RLX_VERSION);
    cr_expect_str_eq(rlx_version_string(), RLX_VERSION_STRING);
}

Test(misuse_package, device_compiled_out_of_range_is_zero) {
    cr_expect_eq(rlx_device_compiled((rlx_device_kind)4), 0);
    cr_expect_eq(rlx_device_compiled((rlx_device_kind)1000), 0);
    cr_expect_eq(rlx_device_compiled((rlx_device_kind)-7), 0);
    cr_expect_eq(rlx_device_compiled(RLX_DEVICE_CPU), 1);
}

Test(misuse_package, output_view_and_synchronize) {
    rlx_output_view v;
    memset(&v, 0x7f, sizeof v);
    cr_expect_eq(rlx_session_output_view(NULL, &v), RLX_ERR_INVALID_ARGUMENT);
    cr_expect(strstr(rlx_last_error(), "rlx_session_output_view"), "%s", rlx_last_error());
    cr_expect_eq(rlx_session_synchronize(NULL), RLX_ERR_INVALID_ARGUMENT);
    cr_expect(strstr(rlx_last_error(), "rlx_session_synchronize"), "%s", rlx_last_error());

    rlx_llama_config c;
    cr_assert_eq(rlx_llama_builtin_config("tiny", &c), RLX_OK);
    c.num_hidden_layers = 1;
    rlx_weights *w;
    cr_assert_eq(rlx_llama_random_weights(&c, 9, RLX_DTYPE_F32, &w), RLX_OK);
    rlx_llama_recipe_params rp = rlx_llama_recipe_default_params();
    rp.seq = 4;
    rlx_flow *f;
    cr_assert_eq(rlx_llama_flow(&c, &rp, &f), RLX_OK, "%s", rlx_last_error());
    rlx_build_params bp = rlx_build_default_params();
    rlx_model *m;
    cr_assert_eq(rlx_model_build(f, w, &bp, &m), RLX_OK, "%s", rlx_last_error());
    rlx_session *s;
    cr_assert_eq(rlx_session_create(m, &s), RLX_OK);
    cr_expect_eq(rlx_session_output_view(s, NULL), RLX_ERR_INVALID_ARGUMENT);
    cr_expect_eq(rlx_session_output_view(s, &v), RLX_ERR_INVALID_ARGUMENT, "no prefill yet");
    cr_expect_eq(rlx_session_synchronize(s), RLX_OK, "nothing to wait for");
    int32_t ok[2] = {1, 2}, bad[2] = {1, (int32_t)c.vocab_size};
    cr_assert_eq(rlx_session_prefill(s, ok, 2, NULL, 1, NULL), RLX_OK, "%s", rlx_last_error());
    cr_expect_eq(rlx_session_output_view(s, &v), RLX_OK, "%s", rlx_last_error());
    cr_expect(v.rows == 1 && v.cols == c.vocab_size && v.data && v.dtype == RLX_DTYPE_F32 && v.device == RLX_DEVICE_CPU);
    /* a failed prefill leaves no output to view */
    cr_expect_eq(rlx_session_prefill(s, bad, 2, NULL, 1, NULL), RLX_ERR_TOKEN_RANGE);
    cr_expect_neq(rlx_session_output_view(s, &v), RLX_OK, "a view of a failed prefill");
    cr_expect_eq(rlx_session_synchronize(s), RLX_OK);
    rlx_session_destroy(s);
    rlx_model_destroy(m);
    rlx_flow_destroy(f);
    rlx_weights_destroy(w);
}
