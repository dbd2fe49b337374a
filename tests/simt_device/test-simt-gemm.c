/* The GEMM algorithm cache (runtime/gemm_algo.h) on the simt device, whose fake heuristic has the
 * cuBLASLt contract: bounded over many prompt lengths (bucketed M, LRU eviction), a refused first
 * algorithm falls back to the next, autotuning at build; and the device bound on every entry point
 * (a prefill from a thread that never touched the device). */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/device.h"
#include "rlx_simt_device.h"
#include "rlx/weights.h"
#include "testutil.h"

static const rlx__device_ops *simt_ops(void) {
    rlx_simt_device_install();
    const rlx__device_ops *ops = rlx__device_ops_for(RLX_DEVICE_SIMT);
    cr_assert(ops);
    return ops;
}

Test(simt_gemm, bucket_edges) {
    const int64_t in[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13, 17, 25, 33, 49, 97, 1000, 1024, 1025, 1537};
    const int64_t want[] = {1, 2, 3, 4, 6, 6, 8, 8, 12, 12, 16, 24, 32, 48, 64, 128, 1024, 1024, 1536, 2048};
    for (size_t i = 0; i < sizeof in / sizeof in[0]; i++)
        cr_expect_eq(rlx__gemm_bucket(in[i]), want[i], "bucket(%lld) = %lld, want %lld", (long long)in[i],
                     (long long)rlx__gemm_bucket(in[i]), (long long)want[i]);
    int distinct = 0;
    for (int64_t m = 1, last = 0; m <= 1000; m++)
        if (rlx__gemm_bucket(m) != last) last = rlx__gemm_bucket(m), distinct++;
    cr_expect_eq(distinct, 20, "prompt lengths 1..1000 fall into %d buckets", distinct);
    /* every bucket edge is at most 1.5x the previous one */
    for (int64_t m = 5; m < 100000; m = rlx__gemm_bucket(m) + 1)
        cr_expect(rlx__gemm_bucket(m) * 2 <= (m - 1) * 3, "bucket of %lld is %lld", (long long)m, (long long)rlx__gemm_bucket(m));
}

/* A device with bf16 X [maxM, K] and W [N, K] (random), and the reference result in f32 of one row. */
typedef struct fixture {
    const rlx__device_ops *ops;
    rlx__device *d;
    void *x, *w, *y;
    uint16_t *hx, *hw;
    int64_t maxM, N, K;
} fixture;

static void fixture_open(fixture *f, int64_t maxM, int64_t N, int64_t K) {
    memset(f, 0, sizeof *f);
    f->ops = simt_ops();
    f->maxM = maxM, f->N = N, f->K = K;
    cr_assert_eq(f->ops->open(0, &f->d), RLX_OK, "%s", rlx_last_error());
    f->hx = malloc((size_t)(maxM * K) * 2);
    f->hw = malloc((size_t)(N * K) * 2);
    rlxt_rng r = {17};
    for (int64_t i = 0; i < maxM * K; i++) f->hx[i] = rlx_f32_to_bf16(rlxt_uniform(&r));
    for (int64_t i = 0; i < N * K; i++) f->hw[i] = rlx_f32_to_bf16(rlxt_uniform(&r));
    cr_assert_eq(f->ops->alloc(f->d, (size_t)(maxM * K) * 2, "x", &f->x), RLX_OK);
    cr_assert_eq(f->ops->alloc(f->d, (size_t)(N * K) * 2, "w", &f->w), RLX_OK);
    cr_assert_eq(f->ops->alloc(f->d, (size_t)(maxM * N) * 4, "y", &f->y), RLX_OK);
    cr_assert_eq(f->ops->h2d(f->d, f->x, f->hx, (size_t)(maxM * K) * 2, NULL), RLX_OK);
    cr_assert_eq(f->ops->h2d(f->d, f->w, f->hw, (size_t)(N * K) * 2, NULL), RLX_OK);
}

static void fixture_close(fixture *f) {
    f->ops->free(f->d, f->x);
    f->ops->free(f->d, f->w);
    f->ops->free(f->d, f->y);
    f->ops->close(f->d);
    free(f->hx);
    free(f->hw);
}

static rlx__gemm_desc desc(const fixture *f, int64_t M, int64_t N) {
    rlx__gemm_desc g = {.M = M, .N = N, .K = f->K, .x = f->x, .ldx = f->K, .w = f->w, .ldw = f->K, .d = f->y,
                        .ldd = N, .ldc = N, .in_dtype = RLX_K_BF16, .out_dtype = RLX_K_F32};
    return g;
}

/* The output equals the f32 dot products of the bf16 inputs summed k-ascending (the simt GEMM's
 * order), bitwise. */
static void expect_result(const fixture *f, int64_t M, int64_t N) {
    float *got = malloc((size_t)(M * N) * 4);
    cr_assert_eq(f->ops->d2h_sync(f->d, got, f->y, (size_t)(M * N) * 4, NULL), RLX_OK);
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            float acc = 0;
            for (int64_t k = 0; k < f->K; k++)
                acc += rlx_bf16_to_f32(f->hx[m * f->K + k]) * rlx_bf16_to_f32(f->hw[n * f->K + k]);
            cr_assert_eq(got[m * N + n], acc, "GEMM M=%lld N=%lld: [%lld, %lld] = %g, want %g", (long long)M, (long long)N,
                         (long long)m, (long long)n, got[m * N + n], acc);
        }
    free(got);
}

Test(simt_gemm, cache_stays_bounded_over_1000_prompt_lengths) {
    fixture f;
    fixture_open(&f, 1000, 200, 16);
    rlx__gemm_cache *c = f.ops->gemm_cache(f.d);
    const uint64_t q0 = rlx_simt_device_heuristic_calls();
    const int64_t Ns[3] = {48, 16, 32}; /* three GEMM shapes of a model, as qkv, o and down */
    for (int64_t M = 1; M <= 1000; M++)
        for (int j = 0; j < 3; j++) {
            rlx__gemm_desc g = desc(&f, M, Ns[j]);
            cr_assert_eq(f.ops->gemm(f.d, &g, NULL), RLX_OK, "M=%lld: %s", (long long)M, rlx_last_error());
        }
    expect_result(&f, 1000, 32);
    rlx__gemm_stats st;
    int n = rlx__gemm_cache_snapshot(c, &st, NULL, 0);
    (void)n;
    /* 20 buckets x 3 shapes: one heuristic query each, every other GEMM a hit */
    cr_expect_eq(rlx_simt_device_heuristic_calls() - q0, 60, "heuristic queries: %llu",
                 (unsigned long long)(rlx_simt_device_heuristic_calls() - q0));
    cr_expect_eq(st.heuristic, 60);
    cr_expect_eq(st.gemms, 3000);
    cr_expect_eq(st.hits, 3000 - 60);
    cr_expect_eq(c->n, 60);
    cr_expect_eq(st.evictions, 0);
    /* more distinct shapes than the cache holds: it stays at its bound, least recently used out */
    for (int64_t N = 1; N <= 200; N++) {
        rlx__gemm_desc g = desc(&f, 5, N);
        cr_assert_eq(f.ops->gemm(f.d, &g, NULL), RLX_OK, "%s", rlx_last_error());
    }
    expect_result(&f, 5, 200);
    rlx__gemm_cache_snapshot(c, &st, NULL, 0);
    cr_expect_eq(c->n, RLX__GEMM_CACHE_CAP);
    /* N = 16, 32, 48 at M = 5 were there already (bucket 6 of the first sweep): 197 new keys */
    cr_expect_eq(st.evictions, 60 + 197 - RLX__GEMM_CACHE_CAP, "evictions %llu", (unsigned long long)st.evictions);
    /* the most recent shapes are still there: no new query for them */
    const uint64_t q1 = rlx_simt_device_heuristic_calls();
    for (int64_t N = 200; N > 200 - 64; N--) {
        rlx__gemm_desc g = desc(&f, 6, N); /* 6: the same bucket as 5 */
        cr_assert_eq(f.ops->gemm(f.d, &g, NULL), RLX_OK);
    }
    cr_expect_eq(rlx_simt_device_heuristic_calls(), q1);
    fixture_close(&f);
}

Test(simt_gemm, refused_first_algorithm_falls_back) {
    fixture f;
    fixture_open(&f, 40, 24, 40);
    rlx__gemm_cache *c = f.ops->gemm_cache(f.d);
    rlx_simt_device_set_gemm_algorithms(3, 0); /* algorithm #0 refuses every shape */
    rlx__gemm_desc g = desc(&f, 37, 24);
    cr_assert_eq(f.ops->gemm(f.d, &g, NULL), RLX_OK, "%s", rlx_last_error());
    cr_expect_str_eq(rlx_last_error(), "", "a refusal that fell back leaves no error behind");
    expect_result(&f, 37, 24);
    rlx__gemm_stats st;
    rlx__gemm_entry e[4];
    cr_assert_eq(rlx__gemm_cache_snapshot(c, &st, e, 4), 1);
    cr_expect_eq(st.fallbacks, 1);
    cr_expect_eq(e[0].chosen, 1, "the next candidate is the one in use");
    cr_expect_str_eq(e[0].cand[e[0].chosen].name, "simt reference GEMM #1");
    /* remembered: the refused algorithm is not tried first again */
    g.M = 33;
    cr_assert_eq(f.ops->gemm(f.d, &g, NULL), RLX_OK);
    expect_result(&f, 33, 24);
    rlx__gemm_cache_snapshot(c, &st, NULL, 0);
    cr_expect_eq(st.fallbacks, 1);
    /* nothing the library accepts: a clear error, not a crash or a silent wrong result */
    rlx_simt_device_set_gemm_algorithms(1, 0);
    g.N = 8;
    cr_expect_eq(f.ops->gemm(f.d, &g, NULL), RLX_ERR_UNSUPPORTED);
    cr_expect(strstr(rlx_last_error(), "refused every candidate"), "%s", rlx_last_error());
    cr_expect(strstr(rlx_last_error(), "M=33 N=8 K=40"), "%s", rlx_last_error());
    rlx_simt_device_set_gemm_algorithms(3, -1);
    fixture_close(&f);
}

/* ---- whole models ------------------------------------------------------------------------------- */

static rlx_weights *tiny_weights(rlx_llama_config *c) {
    cr_assert_eq(rlx_llama_builtin_config("tiny", c), RLX_OK);
    c->num_hidden_layers = 2;
    c->vocab_size = 200;
    c->hidden_size = 64;
    c->intermediate_size = 96;
    c->num_attention_heads = 4;
    c->num_key_value_heads = 2;
    c->head_dim = 16;
    c->rope.head_dim = 16;
    cr_assert_eq(rlx_llama_config_validate(c, "test"), RLX_OK, "%s", rlx_last_error());
    rlx_weights *w;
    cr_assert_eq(rlx_llama_random_weights(c, 3, RLX_DTYPE_BF16, &w), RLX_OK);
    return w;
}

static rlx_model *build(const rlx_llama_config *c, const rlx_weights *w, int64_t batch, int64_t seq,
                        const rlx_profile *prof, int ordinal) {
    rlx_llama_recipe_params rp = rlx_llama_recipe_default_params();
    rp.batch = batch;
    rp.seq = seq;
    rlx_flow *f;
    cr_assert_eq(rlx_llama_flow(c, &rp, &f), RLX_OK, "%s", rlx_last_error());
    rlx_build_params bp = rlx_build_default_params();
    bp.device = RLX_DEVICE_SIMT;
    bp.cuda_device = ordinal;
    bp.profile = prof;
    rlx_model *m;
    cr_assert_eq(rlx_model_build(f, w, &bp, &m), RLX_OK, "%s", rlx_last_error());
    rlx_flow_destroy(f);
    return m;
}

static float *prefill(rlx_model *m, const int32_t *tok, int64_t n, const int64_t *lens, int64_t n_seqs) {
    rlx_session *s;
    cr_assert_eq(rlx_session_create(m, &s), RLX_OK, "%s", rlx_last_error());
    cr_assert_eq(rlx_session_prefill(s, tok, n, lens, n_seqs, NULL), RLX_OK, "%s", rlx_last_error());
    int64_t rows, cols;
    cr_assert_eq(rlx_session_output_shape(s, &rows, &cols), RLX_OK);
    float *out = malloc((size_t)(rows * cols) * sizeof *out);
    cr_assert_eq(rlx_session_output_to_host(s, out, (size_t)(rows * cols)), RLX_OK, "%s", rlx_last_error());
    rlx_session_destroy(s);
    return out;
}

Test(simt_gemm, model_queries_once_per_bucket_and_shape) {
    simt_ops();
    rlx_llama_config c;
    rlx_weights *w = tiny_weights(&c);
    rlx_model *m = build(&c, w, 1, 64, NULL, 0);
    int32_t tok[64];
    for (int i = 0; i < 64; i++) tok[i] = (i * 37 + 5) % 200;
    const uint64_t q0 = rlx_simt_device_heuristic_calls();
    int buckets = 0;
    for (int64_t n = 1, last = 0; n <= 64; n += 3) {
        free(prefill(m, tok, n, NULL, 1));
        if (rlx__gemm_bucket(n) != last) last = rlx__gemm_bucket(n), buckets++;
    }
    const uint64_t q = rlx_simt_device_heuristic_calls() - q0;
    /* per-token GEMMs (packed qkv, o, gate|up, down: the same four shapes in every layer) once per
     * bucket of the lengths 1, 4, 7, …, 64; the LM head on one row per sequence: once */
    cr_expect_eq(buckets, 9);
    cr_expect_eq(q, 4 * (uint64_t)buckets + 1, "heuristic queries %llu", (unsigned long long)q);
    const uint64_t q1 = rlx_simt_device_heuristic_calls();
    for (int64_t n = 1; n <= 64; n += 3) { /* other lengths of the same buckets */
        const int64_t other = n + 1 <= 64 && rlx__gemm_bucket(n + 1) == rlx__gemm_bucket(n) ? n + 1 : n;
        free(prefill(m, tok, other, NULL, 1));
    }
    cr_expect_eq(rlx_simt_device_heuristic_calls(), q1);
    rlx_model_destroy(m);
    rlx_weights_destroy(w);
}

Test(simt_gemm, refused_algorithm_and_autotuning_keep_the_logits) {
    simt_ops();
    rlx_llama_config c;
    rlx_weights *w = tiny_weights(&c);
    int32_t tok[40];
    for (int i = 0; i < 40; i++) tok[i] = (i * 13 + 1) % 200;
    const int64_t lens[3] = {17, 1, 22};
    rlx_model *m = build(&c, w, 3, 22, NULL, 0);
    float *ref = prefill(m, tok, 40, lens, 3);
    rlx_model_destroy(m);
    /* the first algorithm refused everywhere: every GEMM falls back, the logits do not move */
    rlx_simt_device_set_gemm_algorithms(3, 0);
    m = build(&c, w, 3, 22, NULL, 0);
    float *got = prefill(m, tok, 40, lens, 3);
    cr_expect(!memcmp(got, ref, 3 * 200 * sizeof(float)), "fallback changed the logits");
    rlx__gemm_stats st;
    rlx__gemm_cache_snapshot(m->dev->ops->gemm_cache(m->dev->dev), &st, NULL, 0);
    cr_expect_gt(st.fallbacks, 0);
    free(got);
    rlx_model_destroy(m);
    /* autotuning at build: every shape and bucket timed, the refused algorithm never chosen */
    rlx_profile prof;
    rlx_profile_preset("prefill", &prof);
    prof.gemm_autotune = 1;
    m = build(&c, w, 3, 22, &prof, 0);
    cr_expect(strstr(rlx_model_pass_log(m), "gemm autotune: 5 GEMM shapes"), "%s", rlx_model_pass_log(m));
    rlx__gemm_entry e[RLX__GEMM_CACHE_CAP];
    const int n = rlx__gemm_cache_snapshot(m->dev->ops->gemm_cache(m->dev->dev), &st, e, RLX__GEMM_CACHE_CAP);
    /* packed qkv, o, gate|up, down at M = 1 2 3 4 6 8 12 16 24 32 48 64 and the capacity 66; the
     * LM head (one row per sequence) at 1 2 3 */
    cr_expect_eq(st.tuned, 4 * 13 + 3, "tuned %llu", (unsigned long long)st.tuned);
    for (int i = 0; i < n; i++) {
        cr_expect(e[i].tuned, "entry %d not tuned", i);
        cr_expect_neq(e[i].chosen, 0, "the refused algorithm was chosen");
        cr_expect_lt(e[i].tuned_ms[0], 0, "a refused candidate has no time");
    }
    got = prefill(m, tok, 40, lens, 3);
    cr_expect(!memcmp(got, ref, 3 * 200 * sizeof(float)), "autotuning changed the logits");
    free(got);
    rlx_model_destroy(m);
    rlx_simt_device_set_gemm_algorithms(3, -1);
    free(ref);
    rlx_weights_destroy(w);
}

/* ---- the device bound on every entry point ------------------------------------------------------ */

typedef struct thread_job {
    rlx_model *m;
    const int32_t *tok;
    float *out;
    rlx_status st;
} thread_job;

static void *prefill_thread(void *arg) {
    thread_job *j = arg;
    rlx_session *s = NULL;
    j->st = rlx_session_create(j->m, &s);
    if (!j->st) j->st = rlx_session_prefill(s, j->tok, 9, NULL, 1, NULL);
    if (!j->st) j->st = rlx_session_output_to_host(s, j->out, 200);
    rlx_session_destroy(s);
    return NULL;
}

Test(simt_gemm, device_bound_on_every_entry_point) {
    const rlx__device_ops *ops = simt_ops();
    rlx_llama_config c;
    rlx_weights *w = tiny_weights(&c);
    int32_t tok[9] = {1, 5, 9, 13, 17, 21, 25, 29, 33};
    rlx_model *m0 = build(&c, w, 1, 9, NULL, 0);
    float *ref = prefill(m0, tok, 9, NULL, 1);
    /* device 1, used from threads whose current device is 0 (a fresh thread's) */
    rlx_model *m = build(&c, w, 1, 9, NULL, 1);
    const uint64_t v0 = rlx_simt_device_bind_violations();
    float out[2][200];
    thread_job jobs[2] = {{m, tok, out[0], RLX_OK}, {m, tok, out[1], RLX_OK}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, prefill_thread, &jobs[i]);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 2; i++) {
        cr_expect_eq(jobs[i].st, RLX_OK, "thread %d: %s", i, rlx_status_string(jobs[i].st));
        cr_expect(!memcmp(out[i], ref, sizeof out[i]), "thread %d: logits differ from device 0's", i);
    }
    /* the main thread's current device is 0 again (m0's), and destroying m binds device 1 first */
    free(prefill(m0, tok, 9, NULL, 1));
    rlx_model_destroy(m);
    cr_expect_eq(rlx_simt_device_bind_violations(), v0);
    /* the check is real: an operation on device 1 from a thread bound to device 0 is refused */
    rlx__device *d1;
    cr_assert_eq(ops->open(1, &d1), RLX_OK);
    ops->bind(m0->dev->dev);
    void *p = NULL;
    cr_expect_eq(ops->alloc(d1, 64, "probe", &p), RLX_ERR_DEVICE);
    cr_expect(strstr(rlx_last_error(), "current device is 0"), "%s", rlx_last_error());
    cr_expect_eq(rlx_simt_device_bind_violations(), v0 + 1);
    ops->bind(d1);
    ops->close(d1);
    rlx_model_destroy(m0);
    free(ref);
    rlx_weights_destroy(w);
}
