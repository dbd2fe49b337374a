/* API misuse of the tensor-parallel entry points (rlx/dist.h, rlx_build_params.comm): NULL and
 * out-of-range arguments, communicators on the wrong device, use after an abort. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

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

/* One prefill at a time per communicator: a second one on the same rank is refused, not
 * interleaved with the first's collectives. */
typedef struct busy_job {
    rlx_session *s;
    rlx_status st;
} busy_job;

static void *busy_prefill(void *arg) {
    busy_job *j = arg;
    int32_t tok[3] = {1, 2, 3};
    j->st = rlx_session_prefill(j->s, tok, 3, NULL, 1, NULL);
    return NULL;
}

Test(misuse_dist, one_prefill_at_a_time_per_communicator, .timeout = 60) {
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
    rlx_comm_params cp = fast(30000);
    cr_assert_eq(rlx_comm_local_group(2, &cp, comms), RLX_OK);
    rlx_build_params bp = rlx_build_default_params();
    rlx_model *m[2];
    rlx_session *s[3];
    for (int r = 0; r < 2; r++) {
        bp.comm = comms[r];
        cr_assert_eq(rlx_model_build(f, w, &bp, &m[r]), RLX_OK, "%s", rlx_last_error());
        cr_assert_eq(rlx_session_create(m[r], &s[r]), RLX_OK);
    }
    cr_assert_eq(rlx_session_create(m[0], &s[2]), RLX_OK); /* a second session of rank 0 */
    busy_job a = {s[0], RLX_OK}, b = {s[1], RLX_OK};
    pthread_t ta, tb;
    cr_assert_eq(pthread_create(&ta, NULL, busy_prefill, &a), 0);
    for (int i = 0; i < 20000; i++) { /* until rank 0's prefill is under way (it waits for rank 1) */
        pthread_mutex_lock(&comms[0]->lock);
        int busy = comms[0]->busy;
        pthread_mutex_unlock(&comms[0]->lock);
        if (busy) break;
        usleep(100);
    }
    int32_t tok[3] = {1, 2, 3};
    cr_expect_eq(rlx_session_prefill(s[2], tok, 3, NULL, 1, NULL), RLX_ERR_INVALID_ARGUMENT);
    cr_expect(strstr(rlx_last_error(), "another prefill is under way on this communicator"), "%s", rlx_last_error());
    cr_assert_eq(pthread_create(&tb, NULL, busy_prefill, &b), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    cr_expect_eq(a.st, RLX_OK); /* the refusal did not abort the job */
    cr_expect_eq(b.st, RLX_OK);
    for (int i = 0; i < 3; i++)
        rlx_session_destroy(s[i]);
    for (int r = 0; r < 2; r++)
        rlx_model_destroy(m[r]), rlx_comm_destroy(comms[r]);
    rlx_flow_destroy(f);
    rlx_weights_destroy(w);
}
