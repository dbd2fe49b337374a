/* API misuse of the tensor-parallel entry points (rlx/dist.h, rlx_build_params.comm): NULL and
 * out-of-range arguments, communicators on the wrong device, use after an abort. */
#include <criterion/criterion.h>
#include <string.h>

#include "dist/comm.h"
#include "rlx/flow.h"

static rlx_comm_params fast(int ms) {
    rlx_comm_params p = rlx_comm_default_params();
    p.timeout_ms = ms;
    return p;
}

Test(misuse_dist, comm_arguments) {
    rlx_comm *c[2];
    cr_expect_eq(rlx_comm_local_group(0, NULL, c), RLX_ERR_INVALID_ARGUMENT);
    cr_expect_eq(rlx_comm_local_group(2, NULL, NULL), RLX_ERR_INVALID_ARGUMENT);
    rlx_comm_params p = fast(0);
    cr_expect_eq(rlx_comm_local_group(2, &p, c), RLX_ERR_INVALID_ARGUMENT);
    cr_expect(strstr(rlx_last_error(), "timeout_ms"));
    float x = 0;
    cr_expect_eq(rlx_comm_all_reduce(NULL, &x, &x, 1, RLX_DTYPE_F32, NULL), RLX_ERR_INVALID_ARGUMENT);
    cr_expect_eq(rlx_comm_all_gather(NULL, &x, &x, 1, RLX_DTYPE_F32, NULL), RLX_ERR_INVALID_ARGUMENT);
    cr_assert_eq(rlx_comm_local_group(1, NULL, c), RLX_OK);
    cr_expect_eq(rlx_comm_all_reduce(c[0], &x, &x, 1, RLX_DTYPE_I32, NULL), RLX_ERR_UNSUPPORTED);
    cr_expect_eq(rlx_comm_all_reduce(c[0], NULL, &x, 1, RLX_DTYPE_F32, NULL), RLX_ERR_INVALID_ARGUMENT);
    x = 3;
    cr_expect_eq(rlx_comm_all_reduce(c[0], &x, &x, 1, RLX_DTYPE_F32, NULL), RLX_OK); /* one rank: itself */
    cr_expect_eq(x, 3);
    rlx_comm_destroy(c[0]);
    cr_expect_eq(rlx_comm_rank(NULL), -1);
    cr_expect_eq(rlx_comm_size(NULL), 0);
    cr_expect_eq(rlx_comm_check(NULL), RLX_ERR_INVALID_ARGUMENT);
    cr_expect_eq(rlx_comm_abort(NULL, "x"), RLX_ERR_INVALID_ARGUMENT);
    cr_expect_eq(rlx_comm_synchronize(NULL, NULL), RLX_ERR_INVALID_ARGUMENT);
    cr_expect_eq(rlx_comm_nccl_unique_id(NULL), RLX_ERR_INVALID_ARGUMENT);
    cr_expect_eq(rlx_comm_nccl_wrap(NULL, NULL, c), RLX_ERR_INVALID_ARGUMENT);
    rlx_comm_id id = {{0}};
    cr_expect_eq(rlx_comm_nccl_init(&id, 2, 2, 0, NULL, c), RLX_ERR_INVALID_ARGUMENT);
    cr_expect(strstr(rlx_last_error(), "rank 2 of world size 2"), "%s", rlx_last_error());
}

Test(misuse_dist, communicator_on_the_wrong_device) {
    rlx_llama_config c;
    cr_assert_eq(rlx_llama_builtin_config("tiny", &c), RLX_OK);
    c.num_hidden_layers = 1;
    rlx_weights *w;
    cr_assert_eq(rlx_llama_random_weights(&c, 1, RLX_DTYPE_F32, &w), RLX_OK);
    rlx_llama_recipe_params rp = rlx_llama_recipe_default_params();
    rp.seq = 4;
    rlx_flow *f;
    cr_assert_eq(rlx_llama_flow(&c, &rp, &f), RLX_OK);
    rlx_comm *comms[2];
    cr_assert_eq(rlx_comm_local_group(2, NULL, comms), RLX_OK);
    rlx_build_params bp = rlx_build_default_params();
    bp.comm = comms[0];
    bp.device = RLX_DEVICE_CUDA;
    rlx_model *m = (rlx_model *)1;
    cr_expect_eq(rlx_model_build(f, w, &bp, &m), RLX_ERR_INVALID_ARGUMENT);
    cr_expect_null(m);
    cr_expect(strstr(rlx_last_error(), "in-process communicator") && strstr(rlx_last_error(), "NCCL"), "%s",
              rlx_last_error());
    /* an aborted job: building still works (no collective), every prefill says the job is over */
    bp.device = RLX_DEVICE_CPU;
    rlx_model *ms[2];
    rlx_session *ss[2];
    for (int r = 0; r < 2; r++) {
        bp.comm = comms[r];
        cr_assert_eq(rlx_model_build(f, w, &bp, &ms[r]), RLX_OK, "%s", rlx_last_error());
        cr_assert_eq(rlx_session_create(ms[r], &ss[r]), RLX_OK);
    }
    cr_expect_eq(rlx_comm_abort(comms[1], "test"), RLX_OK);
    int32_t tok[2] = {1, 2};
    cr_expect_eq(rlx_session_prefill(ss[0], tok, 2, NULL, 1, NULL), RLX_ERR_COMM);
    cr_expect(strstr(rlx_last_error(), "rank 1 aborted the job: test"), "%s", rlx_last_error());
    for (int r = 0; r < 2; r++) {
        rlx_session_destroy(ss[r]);
        rlx_model_destroy(ms[r]);
        rlx_comm_destroy(comms[r]);
    }
    rlx_flow_destroy(f);
    rlx_weights_destroy(w);
}
