/* Sessions: the model lives as long as its last session (destroy in any order, from any thread),
 * and a session's output exists only while its last prefill succeeded. */
#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "rlx/custom.h"
#include "rlx/flow.h"
#include "testutil.h"

static const int32_t tokens[] = {3, 17, 42, 5, 9, 11, 60};
static const int64_t lens[] = {4, 3};

typedef struct tiny {
    rlx_weights *w;
    rlx_flow *f;
    rlx_model *m;
} tiny;

static tiny tiny_model(void) {
    rlx_llama_config c = {.vocab_size = 64, .hidden_size = 32, .intermediate_size = 48, .num_hidden_layers = 2,
                          .num_attention_heads = 4, .num_key_value_heads = 2, .head_dim = 8, .rms_norm_eps = 1e-5,
                          .max_position_embeddings = 64, .tie_word_embeddings = 1,
                          .rope = {.head_dim = 8, .max_positions = 64, .theta = 10000}};
    tiny t;
    cr_assert_eq(rlx_llama_random_weights(&c, 11, RLX_DTYPE_F32, &t.w), RLX_OK, "%s", rlx_last_error());
    rlx_llama_recipe_params rp = rlx_llama_recipe_default_params();
    rp.batch = 2;
    rp.seq = 8;
    cr_assert_eq(rlx_llama_flow(&c, &rp, &t.f), RLX_OK, "%s", rlx_last_error());
    rlx_build_params bp = rlx_build_default_params();
    bp.threads = 1;
    cr_assert_eq(rlx_model_build(t.f, t.w, &bp, &t.m), RLX_OK, "%s", rlx_last_error());
    return t;
}

/* [2, 64] logits of the test batch. */
static void logits(rlx_session *s, float *out) {
    cr_assert_eq(rlx_session_prefill(s, tokens, 7, lens, 2, NULL), RLX_OK, "%s", rlx_last_error());
    cr_assert_eq(rlx_session_output_to_host(s, out, 128), RLX_OK, "%s", rlx_last_error());
}

Test(session, model_destroyed_before_its_sessions) {
    tiny t = tiny_model();
    rlx_session *a, *b;
    cr_assert_eq(rlx_session_create(t.m, &a), RLX_OK);
    cr_assert_eq(rlx_session_create(t.m, &b), RLX_OK);
    float ref[128], got[128];
    logits(a, ref);
    rlx_model_destroy(t.m); /* the caller's handle goes; the sessions keep the model */
    rlx_flow_destroy(t.f);
    rlx_weights_destroy(t.w);
    logits(b, got);
    cr_expect(!memcmp(ref, got, sizeof ref), "a session of a destroyed model computes something else");
    rlx_session_destroy(a);
    logits(b, got);
    cr_expect(!memcmp(ref, got, sizeof ref));
    rlx_session_destroy(b); /* the last holder: the model is freed here (LeakSanitizer checks) */
}

static int destroyed;
static void count_destroy(void *user) {
    (void)user;
    destroyed++;
}
static rlx_status same_width(rlx_custom_shape_args *a) {
    a->out_cols[0] = a->in_cols[0];
    return RLX_OK;
}
static rlx_status copy_cpu(const rlx_custom_args *a) {
    memcpy(a->out[0], a->in[0], (size_t)a->rows * (size_t)a->out_cols[0] * sizeof(float));
    return RLX_OK;
}

Test(session, custom_stage_user_data_freed_with_the_last_session) {
    tiny t = tiny_model();
    rlx_custom_def def = {.name = "copy", .shape = same_width, .cpu = copy_cpu, .destroy = count_destroy};
    cr_assert_eq(rlx_flow_custom(t.f, &def, NULL, NULL), RLX_OK, "%s", rlx_last_error());
    rlx_model *m;
    cr_assert_eq(rlx_model_build(t.f, t.w, NULL, &m), RLX_OK, "%s", rlx_last_error());
    rlx_session *s;
    cr_assert_eq(rlx_session_create(m, &s), RLX_OK);
    rlx_flow_destroy(t.f);
    rlx_model_destroy(m);
    cr_expect_eq(destroyed, 0, "the session still needs the stage");
    float out[128];
    logits(s, out);
    rlx_session_destroy(s);
    cr_expect_eq(destroyed, 1);
    rlx_model_destroy(t.m);
    rlx_weights_destroy(t.w);
}

typedef struct worker {
    rlx_session *s;
    const float *ref;
    int same;
} worker;

static void *run_worker(void *arg) {
    worker *w = arg;
    float got[128];
    w->same = 1;
    for (int i = 0; i < 3; i++) {
        if (rlx_session_prefill(w->s, tokens, 7, lens, 2, NULL) || rlx_session_output_to_host(w->s, got, 128)) w->same = 0;
        else w->same &= !memcmp(got, w->ref, sizeof got);
    }
    rlx_session_destroy(w->s);
    return NULL;
}

/* The caller's handle and the sessions go on different threads, in no fixed order. */
Test(session, last_holder_on_any_thread) {
    tiny t = tiny_model();
    float ref[128];
    rlx_session *s0;
    cr_assert_eq(rlx_session_create(t.m, &s0), RLX_OK);
    logits(s0, ref);
    rlx_session_destroy(s0);
    enum { N = 4 };
    worker w[N];
    pthread_t tid[N];
    for (int i = 0; i < N; i++) {
        cr_assert_eq(rlx_session_create(t.m, &w[i].s), RLX_OK);
        w[i].ref = ref;
    }
    for (int i = 0; i < N; i++) cr_assert_eq(pthread_create(&tid[i], NULL, run_worker, &w[i]), 0);
    rlx_model_destroy(t.m);
    for (int i = 0; i < N; i++) {
        pthread_join(tid[i], NULL);
        cr_expect(w[i].same, "thread %d", i);
    }
    rlx_flow_destroy(t.f);
    rlx_weights_destroy(t.w);
}

static void expect_no_output(rlx_session *s, const char *why) {
    int64_t rows = -1, cols = -1;
    float out[128];
    cr_expect_eq(rlx_session_output_shape(s, &rows, &cols), RLX_ERR_INVALID_ARGUMENT, "%s: the shape is still there", why);
    cr_expect(strstr(rlx_last_error(), why), "wanted '%s' in: %s", why, rlx_last_error());
    cr_expect_eq(rlx_session_output_to_host(s, out, 128), RLX_ERR_INVALID_ARGUMENT, "%s: the output is still there", why);
    cr_expect(strstr(rlx_last_error(), why), "wanted '%s' in: %s", why, rlx_last_error());
}

Test(session, failed_prefill_leaves_no_output) {
    tiny t = tiny_model();
    rlx_session *s;
    cr_assert_eq(rlx_session_create(t.m, &s), RLX_OK);
    expect_no_output(s, "no prefill has run on this session");
    float ref[128], got[128];
    logits(s, ref);
    /* a token outside the vocabulary */
    const int32_t bad[2] = {1, 999};
    cr_assert_eq(rlx_session_prefill(s, bad, 2, NULL, 1, NULL), RLX_ERR_TOKEN_RANGE);
    expect_no_output(s, "the last prefill on this session failed (RLX_ERR_TOKEN_RANGE)");
    /* a good prefill brings it back */
    logits(s, got);
    cr_expect(!memcmp(ref, got, sizeof ref));
    /* bad arguments count as a failed prefill too */
    cr_assert_eq(rlx_session_prefill(s, NULL, 7, lens, 2, NULL), RLX_ERR_INVALID_ARGUMENT);
    expect_no_output(s, "failed (RLX_ERR_INVALID_ARGUMENT)");
    cr_assert_eq(rlx_session_prefill(s, tokens, 7, (int64_t[]){4, 4}, 2, NULL), RLX_ERR_INVALID_ARGUMENT);
    expect_no_output(s, "failed (RLX_ERR_INVALID_ARGUMENT)");
    logits(s, got);
    cr_expect(!memcmp(ref, got, sizeof ref));
    rlx_session_destroy(s);
    rlx_model_destroy(t.m);
    rlx_flow_destroy(t.f);
    rlx_weights_destroy(t.w);
}

/* A copy of w with row `row` of the (tied, F32) embedding table set to NaN. */
static rlx_weights *with_nan_row(const rlx_weights *w, int64_t row) {
    rlx_weights *o;
    cr_assert_eq(rlx_weights_create(&o), RLX_OK);
    for (size_t i = 0; i < rlx_weights_count(w); i++) {
        rlx_tensor_view v;
        cr_assert_eq(rlx_weights_at(w, i, &v), RLX_OK);
        void *data = malloc(v.nbytes + 1);
        memcpy(data, v.data, v.nbytes);
        if (!strcmp(v.name, "model.embed_tokens.weight")) {
            cr_assert_eq(v.dtype, RLX_DTYPE_F32);
            float *t = data;
            for (int64_t c = 0; c < v.shape[1]; c++) t[row * v.shape[1] + c] = NAN;
        }
        cr_assert_eq(rlx_weights_add(o, v.name, v.dtype, v.ndim, v.shape, data), RLX_OK, "%s", rlx_last_error());
        free(data);
    }
    return o;
}

/* The cheap finite check: counts per row. Token 5's embedding row is NaN (and, tied, its
 * logit column): the sequence that reads token 5 is NaN throughout, the other holds one NaN. */
Test(session, output_nonfinite_counts_per_row) {
    tiny t = tiny_model();
    rlx_session *s;
    cr_assert_eq(rlx_session_create(t.m, &s), RLX_OK);
    const int32_t toks[5] = {1, 2, 3, 5, 6};
    const int64_t l2[2] = {3, 2};
    cr_assert_eq(rlx_session_prefill(s, toks, 5, l2, 2, NULL), RLX_OK, "%s", rlx_last_error());
    int64_t per_row[2] = {-1, -1}, total = -1;
    cr_assert_eq(rlx_session_output_nonfinite(s, per_row, 2, &total), RLX_OK, "%s", rlx_last_error());
    cr_expect(total == 0 && per_row[0] == 0 && per_row[1] == 0);
    rlx_session_destroy(s);

    rlx_weights *bad = with_nan_row(t.w, 5);
    rlx_model *m;
    cr_assert_eq(rlx_model_build(t.f, bad, NULL, &m), RLX_OK, "%s", rlx_last_error());
    cr_assert_eq(rlx_session_create(m, &s), RLX_OK);
    cr_assert_eq(rlx_session_prefill(s, toks, 5, l2, 2, NULL), RLX_OK, "%s", rlx_last_error());
    cr_assert_eq(rlx_session_output_nonfinite(s, per_row, 2, &total), RLX_OK, "%s", rlx_last_error());
    cr_expect_eq(per_row[0], 1);
    cr_expect_eq(per_row[1], 64);
    cr_expect_eq(total, 65);
    cr_expect_eq(rlx_session_output_nonfinite(s, NULL, 0, &total), RLX_OK, "per_row is optional");
    cr_expect_eq(total, 65);
    cr_expect_eq(rlx_weights_check_finite(bad), RLX_ERR_FORMAT);
    cr_expect(strstr(rlx_last_error(), "tensor 'model.embed_tokens.weight' (F32) holds 32 non-finite values"), "%s", rlx_last_error());
    rlx_session_destroy(s);
    rlx_model_destroy(m);
    rlx_weights_destroy(bad);
    rlx_model_destroy(t.m);
    rlx_flow_destroy(t.f);
    rlx_weights_destroy(t.w);
}
