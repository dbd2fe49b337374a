/* Device failure paths, on the simt device: out-of-memory names the bytes and leaks nothing (ASan
 * checks), and a sticky fault retires the session while the model stays usable. */
#include <criterion/criterion.h>
#include <string.h>

#include "rlx/flow.h"
#include "rlx_simt_device.h"

static rlx_llama_config small(void) {
    rlx_llama_config c;
    cr_assert_eq(rlx_llama_builtin_config("tiny", &c), RLX_OK);
    c.num_hidden_layers = 2;
    return c;
}

static rlx_flow *flow_for(const rlx_llama_config *c) {
    rlx_llama_recipe_params p = rlx_llama_recipe_default_params();
    p.batch = 2;
    p.seq = 16;
    rlx_flow *f;
    cr_assert_eq(rlx_llama_flow(c, &p, &f), RLX_OK, "%s", rlx_last_error());
    return f;
}

Test(simt_faults, out_of_memory_at_build_names_bytes) {
    rlx_simt_device_install();
    rlx_llama_config c = small();
    rlx_weights *w;
    cr_assert_eq(rlx_llama_random_weights(&c, 1, RLX_DTYPE_BF16, &w), RLX_OK);
    rlx_flow *f = flow_for(&c);
    rlx_build_params bp = rlx_build_default_params();
    bp.device = RLX_DEVICE_SIMT;
    /* every size from nothing up to what the weights need fails cleanly, with the bytes named */
    const size_t limits[] = {1, 4096, 1u << 20, 3u << 20};
    for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++) {
        rlx_simt_device_set_memory_limit(limits[i]);
        rlx_model *m = (rlx_model *)1;
        rlx_status s = rlx_model_build(f, w, &bp, &m);
        cr_expect_eq(s, RLX_ERR_OUT_OF_MEMORY, "limit %zu: %s", limits[i], rlx_last_error());
        cr_expect_null(m);
        cr_expect(strstr(rlx_last_error(), "out of device memory:") && strstr(rlx_last_error(), "bytes for"), "%s", rlx_last_error());
    }
    rlx_simt_device_set_memory_limit(0);
    rlx_flow_destroy(f);
    rlx_weights_destroy(w);
}

Test(simt_faults, out_of_memory_at_session) {
    rlx_simt_device_install();
    rlx_llama_config c = small();
    rlx_weights *w;
    rlx_llama_random_weights(&c, 1, RLX_DTYPE_BF16, &w);
    rlx_flow *f = flow_for(&c);
    rlx_build_params bp = rlx_build_default_params();
    bp.device = RLX_DEVICE_SIMT;
    rlx_model *m;
    cr_assert_eq(rlx_model_build(f, w, &bp, &m), RLX_OK, "%s", rlx_last_error());
    size_t wb, sb;
    cr_assert_eq(rlx_model_memory(m, &wb, &sb), RLX_OK);
    cr_expect_gt(wb, 0);
    cr_expect_gt(sb, 0);
    rlx_simt_device_set_memory_limit(wb + sb / 2 + 4096); /* the weights fit, a session does not */
    rlx_session *s = (rlx_session *)1;
    cr_expect_eq(rlx_session_create(m, &s), RLX_ERR_OUT_OF_MEMORY, "%s", rlx_last_error());
    cr_expect_null(s);
    rlx_simt_device_set_memory_limit(0);
    cr_expect_eq(rlx_session_create(m, &s), RLX_OK);
    rlx_session_destroy(s);
    rlx_model_destroy(m);
    rlx_flow_destroy(f);
    rlx_weights_destroy(w);
}

Test(simt_faults, sticky_fault_retires_the_session) {
    rlx_simt_device_install();
    rlx_llama_config c = small();
    rlx_weights *w;
    rlx_llama_random_weights(&c, 1, RLX_DTYPE_BF16, &w);
    rlx_flow *f = flow_for(&c);
    rlx_build_params bp = rlx_build_default_params();
    bp.device = RLX_DEVICE_SIMT;
    rlx_model *m;
    cr_assert_eq(rlx_model_build(f, w, &bp, &m), RLX_OK, "%s", rlx_last_error());
    rlx_session *s;
    cr_assert_eq(rlx_session_create(m, &s), RLX_OK);
    int32_t tok[5] = {1, 2, 3, 4, 5};
    rlx_simt_device_plant_fault(2);
    cr_expect_eq(rlx_session_prefill(s, tok, 5, NULL, 1, NULL), RLX_ERR_SESSION_BROKEN, "%s", rlx_last_error());
    cr_expect(strstr(rlx_last_error(), "planted fault"), "%s", rlx_last_error());
    /* the session stays retired, and says so */
    cr_expect_eq(rlx_session_prefill(s, tok, 5, NULL, 1, NULL), RLX_ERR_SESSION_BROKEN);
    cr_expect(strstr(rlx_last_error(), "cannot run again"), "%s", rlx_last_error());
    rlx_session_destroy(s);
    /* a fresh session on the same model works */
    cr_assert_eq(rlx_session_create(m, &s), RLX_OK);
    cr_expect_eq(rlx_session_prefill(s, tok, 5, NULL, 1, NULL), RLX_OK, "%s", rlx_last_error());
    rlx_session_destroy(s);
    rlx_model_destroy(m);
    rlx_flow_destroy(f);
    rlx_weights_destroy(w);
}
