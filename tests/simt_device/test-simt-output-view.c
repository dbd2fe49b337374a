/* rlx_session_output_view and rlx_session_synchronize: the output where it lives, no copy. On the
 * CPU it is the session's f32 buffer; on the simt device (host memory, the cuda device's plan)
 * the arena buffer in the plan's dtype — both must hold exactly what rlx_session_output_to_host
 * copies out. Misuse: NULL arguments and a view before any prefill. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "rlx/flow.h"
#include "rlx_simt_device.h"
#include "testutil.h"

static void run_and_view(rlx_device_kind dev, rlx_precision prec, int last_token) {
    rlx_llama_config c;
    cr_assert_eq(rlx_llama_builtin_config("tiny", &c), RLX_OK);
    c.num_hidden_layers = 1;
    rlx_weights *w;
    cr_assert_eq(rlx_llama_random_weights(&c, 11, RLX_DTYPE_BF16, &w), RLX_OK);
    rlx_llama_recipe_params rp = rlx_llama_recipe_default_params();
    rp.batch = 2;
    rp.seq = 9;
    rp.last_token_logits = last_token;
    rlx_flow *f;
    cr_assert_eq(rlx_llama_flow(&c, &rp, &f), RLX_OK, "%s", rlx_last_error());
    rlx_build_params bp = rlx_build_default_params();
    bp.device = dev;
    bp.precision = prec;
    rlx_model *m;
    cr_assert_eq(rlx_model_build(f, w, &bp, &m), RLX_OK, "%s", rlx_last_error());
    rlx_session *s;
    cr_assert_eq(rlx_session_create(m, &s), RLX_OK, "%s", rlx_last_error());

    rlx_output_view v;
    memset(&v, 0x5a, sizeof v);
    cr_expect_eq(rlx_session_output_view(s, &v), RLX_ERR_INVALID_ARGUMENT, "a view before any prefill");
    cr_expect(strstr(rlx_last_error(), "no prefill"), "%s", rlx_last_error());
    cr_expect_eq(rlx_session_synchronize(s), RLX_OK, "nothing to wait for yet");

    rlxt_rng rng = {(uint64_t)dev * 31 + (uint64_t)prec};
    int32_t tokens[14];
    for (int i = 0; i < 14; i++) tokens[i] = (int32_t)(rlxt_next(&rng) % (uint64_t)c.vocab_size);
    int64_t lens[2] = {9, 5};
    cr_assert_eq(rlx_session_prefill(s, tokens, 14, lens, 2, NULL), RLX_OK, "%s", rlx_last_error());
    cr_assert_eq(rlx_session_synchronize(s), RLX_OK, "%s", rlx_last_error());
    cr_assert_eq(rlx_session_output_view(s, &v), RLX_OK, "%s", rlx_last_error());
    int64_t rows, cols;
    cr_assert_eq(rlx_session_output_shape(s, &rows, &cols), RLX_OK);
    cr_expect(v.rows == rows && v.cols == cols && rows == (last_token ? 2 : 14) && cols == c.vocab_size);
    cr_expect_eq(v.device, dev);
    cr_expect_eq(v.device_ordinal, 0);
    cr_expect_null(v.stream);
    cr_assert_not_null(v.data);
    size_t n = (size_t)rows * (size_t)cols;
    float *host = malloc(n * sizeof *host), *viewed = malloc(n * sizeof *viewed);
    cr_assert_eq(rlx_session_output_to_host(s, host, n), RLX_OK, "%s", rlx_last_error());
    if (dev == RLX_DEVICE_CPU || prec == RLX_PRECISION_F32) {
        cr_expect_eq(v.dtype, RLX_DTYPE_F32);
    } else {
        /* bf16 models: whatever the plan keeps (an f32 GEMM output, or bf16), to_host agrees */
        cr_expect(v.dtype == RLX_DTYPE_F32 || v.dtype == RLX_DTYPE_BF16, "dtype %d", v.dtype);
    }
    rlx_convert_to_f32(viewed, v.data, v.dtype, n);
    cr_expect_eq(memcmp(viewed, host, n * sizeof *host), 0, "device %d precision %d: the view differs from the host copy", dev, prec);
    free(host);
    free(viewed);
    rlx_session_destroy(s);
    rlx_model_destroy(m);
    rlx_flow_destroy(f);
    rlx_weights_destroy(w);
}

Test(output_view, cpu_view_is_the_host_output) {
    run_and_view(RLX_DEVICE_CPU, RLX_PRECISION_BF16, 1);
    run_and_view(RLX_DEVICE_CPU, RLX_PRECISION_BF16, 0);
}

Test(output_view, simt_view_is_the_device_buffer) {
    rlx_simt_device_install();
    run_and_view(RLX_DEVICE_SIMT, RLX_PRECISION_BF16, 1);
    run_and_view(RLX_DEVICE_SIMT, RLX_PRECISION_BF16, 0);
    run_and_view(RLX_DEVICE_SIMT, RLX_PRECISION_F32, 0);
}

Test(output_view, misuse) {
    rlx_output_view v;
    cr_expect_eq(rlx_session_output_view(NULL, &v), RLX_ERR_INVALID_ARGUMENT);
    cr_expect(strstr(rlx_last_error(), "rlx_session_output_view"), "%s", rlx_last_error());
    cr_expect_eq(rlx_session_synchronize(NULL), RLX_ERR_INVALID_ARGUMENT);
    rlx_llama_config c;
    cr_assert_eq(rlx_llama_builtin_config("tiny", &c), RLX_OK);
    c.num_hidden_layers = 1;
    rlx_weights *w;
    cr_assert_eq(rlx_llama_random_weights(&c, 3, RLX_DTYPE_F32, &w), RLX_OK);
    rlx_llama_recipe_params rp = rlx_llama_recipe_default_params();
    rlx_flow *f;
    cr_assert_eq(rlx_llama_flow(&c, &rp, &f), RLX_OK);
    rlx_build_params bp = rlx_build_default_params();
    rlx_model *m;
    cr_assert_eq(rlx_model_build(f, w, &bp, &m), RLX_OK);
    rlx_session *s;
    cr_assert_eq(rlx_session_create(m, &s), RLX_OK);
    cr_expect_eq(rlx_session_output_view(s, NULL), RLX_ERR_INVALID_ARGUMENT);
    rlx_session_destroy(s);
    rlx_model_destroy(m);
    rlx_flow_destroy(f);
    rlx_weights_destroy(w);
}
