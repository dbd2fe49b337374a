/* Communicators (include/rlx/dist.h): the in-process backend's collectives against their NCCL
 * semantics (sums in f32 in rank order, rounded once, the same bits on every rank), its faults
 * (mismatched calls, a rank that never arrives, a failed rank) bounded and reported on every rank,
 * the file rendezvous of rlx_comm_from_env (a world-size mismatch named on both sides), and the
 * argument checks. Every test has a Criterion timeout: a hang fails it. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dist/comm.h"
#include "rlx/weights.h"
#include "testutil.h"

#define MAXR 8

typedef struct rank_ctx {
    rlx_comm *c;
    int rank, n;
    void *(*body)(struct rank_ctx *);
    rlx_status st;
    char msg[1024];
    void *buf[4];
    size_t count;
    rlx_dtype dtype;
    int skip; /* this rank does nothing (a rank that never arrives) */
    int fail; /* this rank fails instead of calling the collective */
} rank_ctx;

static void *thread_main(void *arg) {
    rank_ctx *r = arg;
    return r->body(r);
}

static void run_ranks(rank_ctx *r, int n) {
    pthread_t t[MAXR];
    for (int i = 0; i < n; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, thread_main, &r[i]), 0);
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);
}

static void keep(rank_ctx *r, rlx_status s) {
    r->st = s;
    snprintf(r->msg, sizeof r->msg, "%s", s ? rlx_last_error() : "");
}

static void *do_all_reduce(rank_ctx *r) {
    if (r->skip) return NULL;
    if (r->fail) {
        rlx__fail(RLX_ERR_DEVICE, "planted failure before the collective");
        rlx__comm_fail(r->c, RLX_ERR_DEVICE, rlx_last_error());
        keep(r, RLX_ERR_DEVICE);
        return NULL;
    }
    keep(r, rlx_comm_all_reduce(r->c, r->buf[0], r->buf[1], r->count, r->dtype, NULL));
    return NULL;
}

static void *do_all_gather(rank_ctx *r) {
    keep(r, rlx_comm_all_gather(r->c, r->buf[0], r->buf[1], r->count, r->dtype, NULL));
    return NULL;
}

static size_t es(rlx_dtype t) { return t == RLX_DTYPE_F32 ? 4 : 2; }

static float ldv(const void *p, size_t i, rlx_dtype t) {
    if (t == RLX_DTYPE_F32) return ((const float *)p)[i];
    uint16_t h = ((const uint16_t *)p)[i];
    return t == RLX_DTYPE_BF16 ? rlx_bf16_to_f32(h) : rlx_f16_to_f32(h);
}

static void stv(void *p, size_t i, float v, rlx_dtype t) {
    if (t == RLX_DTYPE_F32)
        ((float *)p)[i] = v;
    else
        ((uint16_t *)p)[i] = t == RLX_DTYPE_BF16 ? rlx_f32_to_bf16(v) : rlx_f32_to_f16(v);
}

static rlx_comm_params fast(int ms) {
    rlx_comm_params p = rlx_comm_default_params();
    p.timeout_ms = ms;
    return p;
}

Test(dist_comm, all_reduce_sums_in_rank_order_identically_on_every_rank, .timeout = 60) {
    const rlx_dtype dts[3] = {RLX_DTYPE_F32, RLX_DTYPE_BF16, RLX_DTYPE_F16};
    const size_t counts[3] = {1, 17, 4099};
    for (int n = 1; n <= 4; n++)
        for (int di = 0; di < 3; di++)
            for (int ci = 0; ci < 3; ci++)
                for (int inplace = 0; inplace < 2; inplace++) {
                    const rlx_dtype dt = dts[di];
                    const size_t cnt = counts[ci];
                    rlx_comm *c[MAXR];
                    rlx_comm_params p = fast(20000);
                    cr_assert_eq(rlx_comm_local_group(n, &p, c), RLX_OK, "%s", rlx_last_error());
                    rank_ctx r[MAXR];
                    memset(r, 0, sizeof r);
                    rlxt_rng g = {(uint64_t)(n * 100 + di * 10 + ci)};
                    for (int i = 0; i < n; i++) {
                        r[i] =
                            (rank_ctx){.c = c[i], .rank = i, .n = n, .body = do_all_reduce, .count = cnt, .dtype = dt};
                        r[i].buf[0] = malloc(cnt * es(dt));
                        r[i].buf[1] = inplace ? r[i].buf[0] : malloc(cnt * es(dt));
                        for (size_t k = 0; k < cnt; k++)
                            stv(r[i].buf[0], k, rlxt_uniform(&g) * 8.0f, dt);
                    }
                    /* the expected bits: f32 sum over ranks 0..n-1, rounded once */
                    void *want = malloc(cnt * es(dt));
                    for (size_t k = 0; k < cnt; k++) {
                        float a = 0.0f;
                        for (int i = 0; i < n; i++)
                            a += ldv(r[i].buf[0], k, dt);
                        stv(want, k, a, dt);
                    }
                    run_ranks(r, n);
                    for (int i = 0; i < n; i++) {
                        cr_expect_eq(r[i].st, RLX_OK, "n %d rank %d: %s", n, i, r[i].msg);
                        cr_expect_eq(memcmp(r[i].buf[1], want, cnt * es(dt)), 0,
                                     "n %d rank %d dtype %s count %zu in-place %d: bits differ", n, i,
                                     rlx_dtype_name(dt), cnt, inplace);
                    }
                    for (int i = 0; i < n; i++) {
                        if (!inplace) free(r[i].buf[1]);
                        free(r[i].buf[0]);
                        rlx_comm_destroy(c[i]);
                    }
                    free(want);
                }
}

Test(dist_comm, all_gather_uses_nccl_layout, .timeout = 60) {
    const int n = 3;
    const size_t cnt = 5;
    rlx_comm *c[MAXR];
    cr_assert_eq(rlx_comm_local_group(n, NULL, c), RLX_OK);
    rank_ctx r[MAXR];
    for (int i = 0; i < n; i++) {
        r[i] = (rank_ctx){.c = c[i], .rank = i, .n = n, .body = do_all_gather, .count = cnt, .dtype = RLX_DTYPE_F32};
        float *s = malloc(cnt * 4);
        for (size_t k = 0; k < cnt; k++)
            s[k] = (float)(i * 100 + (int)k);
        r[i].buf[0] = s;
        r[i].buf[1] = calloc((size_t)n * cnt, 4);
    }
    run_ranks(r, n);
    for (int i = 0; i < n; i++) {
        cr_expect_eq(r[i].st, RLX_OK, "%s", r[i].msg);
        const float *g = r[i].buf[1];
        for (int q = 0; q < n; q++)
            for (size_t k = 0; k < cnt; k++)
                cr_expect_eq(g[(size_t)q * cnt + k], (float)(q * 100 + (int)k), "rank %d [%d][%zu]", i, q, k);
        free(r[i].buf[0]), free(r[i].buf[1]);
        rlx_comm_destroy(c[i]);
    }
}

typedef struct cols_ctx {
    rank_ctx base;
    int64_t rows, w, total;
} cols_ctx;

static void *do_cols(rank_ctx *r) {
    cols_ctx *cc = (cols_ctx *)r;
    keep(r,
         rlx__comm_all_gather_cols(r->c, r->buf[0], r->buf[1], NULL, cc->rows, cc->w, cc->total, RLX_DTYPE_F32, NULL));
    return NULL;
}

static void *cols_main(void *arg) { return do_cols(arg); }

/* lm_head's gather: [rows, w] blocks into [rows, total], the last block cut (vocabulary padding). */
Test(dist_comm, all_gather_cols_cuts_the_padded_block, .timeout = 60) {
    const int n = 4;
    const int64_t rows = 3, total = 97, w = (total + n - 1) / n; /* 25, the last rank has 22 real columns */
    rlx_comm *c[MAXR];
    cr_assert_eq(rlx_comm_local_group(n, NULL, c), RLX_OK);
    cols_ctx r[MAXR];
    pthread_t t[MAXR];
    for (int i = 0; i < n; i++) {
        r[i] = (cols_ctx){.base = {.c = c[i], .rank = i, .n = n}, .rows = rows, .w = w, .total = total};
        float *s = malloc((size_t)(rows * w) * 4);
        for (int64_t row = 0; row < rows; row++)
            for (int64_t k = 0; k < w; k++)
                s[row * w + k] = (float)(row * 1000 + i * w + k);
        r[i].base.buf[0] = s;
        r[i].base.buf[1] = calloc((size_t)(rows * total), 4);
        pthread_create(&t[i], NULL, cols_main, &r[i]);
    }
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < n; i++) {
        cr_expect_eq(r[i].base.st, RLX_OK, "%s", r[i].base.msg);
        const float *g = r[i].base.buf[1];
        for (int64_t row = 0; row < rows; row++)
            for (int64_t k = 0; k < total; k++)
                cr_expect_eq(g[row * total + k], (float)(row * 1000 + k), "rank %d [%lld][%lld]", i, (long long)row,
                             (long long)k);
        free(r[i].base.buf[0]), free(r[i].base.buf[1]);
        rlx_comm_destroy(c[i]);
    }
}

/* Ranks calling different collectives: every rank gets the same clear error, none hangs. */
static void *do_mismatch(rank_ctx *r) {
    size_t cnt = r->rank == 1 ? 8 : 16;
    keep(r, rlx_comm_all_reduce(r->c, r->buf[0], r->buf[0], cnt, RLX_DTYPE_F32, NULL));
    if (!r->st) return NULL;
    /* the group stays aborted: a later call fails at once */
    rlx_status s2 = rlx_comm_all_reduce(r->c, r->buf[0], r->buf[0], 16, RLX_DTYPE_F32, NULL);
    if (s2 != RLX_ERR_COMM) r->st = RLX_OK;
    return NULL;
}

Test(dist_comm, mismatched_calls_fail_on_every_rank, .timeout = 60) {
    const int n = 3;
    rlx_comm *c[MAXR];
    rlx_comm_params p = fast(20000);
    cr_assert_eq(rlx_comm_local_group(n, &p, c), RLX_OK);
    rank_ctx r[MAXR];
    for (int i = 0; i < n; i++) {
        r[i] = (rank_ctx){.c = c[i], .rank = i, .n = n, .body = do_mismatch};
        r[i].buf[0] = calloc(16, 4);
    }
    run_ranks(r, n);
    for (int i = 0; i < n; i++) {
        cr_expect_eq(r[i].st, RLX_ERR_COMM, "rank %d: %s", i, r[i].msg);
        cr_expect(strstr(r[i].msg, "mismatched collectives: rank 1 called all_reduce of 8 F32 elements"), "rank %d: %s",
                  i, r[i].msg);
        cr_expect_eq(rlx_comm_check(c[i]), RLX_ERR_COMM);
        free(r[i].buf[0]);
        rlx_comm_destroy(c[i]);
    }
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* A rank that never arrives: the others wait their bound, then report who is missing. */
Test(dist_comm, missing_rank_times_out_with_its_name, .timeout = 60) {
    const int n = 4;
    rlx_comm *c[MAXR];
    rlx_comm_params p = fast(300);
    cr_assert_eq(rlx_comm_local_group(n, &p, c), RLX_OK);
    rank_ctx r[MAXR];
    for (int i = 0; i < n; i++) {
        r[i] = (rank_ctx){
            .c = c[i], .rank = i, .n = n, .body = do_all_reduce, .count = 4, .dtype = RLX_DTYPE_F32, .skip = i == 2};
        r[i].buf[0] = r[i].buf[1] = calloc(4, 4);
    }
    double t0 = now_s();
    run_ranks(r, n);
    double dt = now_s() - t0;
    cr_expect(dt < 10.0, "took %.1f s", dt);
    for (int i = 0; i < n; i++) {
        if (i == 2) continue;
        cr_expect_eq(r[i].st, RLX_ERR_COMM, "rank %d: %s", i, r[i].msg);
        cr_expect(strstr(r[i].msg, "for rank 2, which never arrived"), "rank %d: %s", i, r[i].msg);
    }
    for (int i = 0; i < n; i++)
        free(r[i].buf[0]), rlx_comm_destroy(c[i]);
}

/* A rank that fails says so: the others' collectives return at once with its message. */
Test(dist_comm, failed_rank_is_named_on_every_rank, .timeout = 60) {
    const int n = 3;
    rlx_comm *c[MAXR];
    rlx_comm_params p = fast(60000); /* the test must not pass by timing out */
    cr_assert_eq(rlx_comm_local_group(n, &p, c), RLX_OK);
    rank_ctx r[MAXR];
    for (int i = 0; i < n; i++) {
        r[i] = (rank_ctx){
            .c = c[i], .rank = i, .n = n, .body = do_all_reduce, .count = 4, .dtype = RLX_DTYPE_F32, .fail = i == 1};
        r[i].buf[0] = r[i].buf[1] = calloc(4, 4);
    }
    double t0 = now_s();
    run_ranks(r, n);
    cr_expect(now_s() - t0 < 30.0);
    cr_expect_eq(r[1].st, RLX_ERR_DEVICE);
    cr_expect(strstr(r[1].msg, "planted failure"), "%s", r[1].msg); /* its own message is kept */
    for (int i = 0; i < n; i += 2) {
        cr_expect_eq(r[i].st, RLX_ERR_COMM, "rank %d: %s", i, r[i].msg);
        cr_expect(strstr(r[i].msg, "rank 1 failed (RLX_ERR_DEVICE): planted failure before the collective"),
                  "rank %d: %s", i, r[i].msg);
    }
    for (int i = 0; i < n; i++)
        free(r[i].buf[0]), rlx_comm_destroy(c[i]);
}

Test(dist_comm, abort_and_queries, .timeout = 30) {
    rlx_comm *c[2];
    cr_assert_eq(rlx_comm_local_group(2, NULL, c), RLX_OK);
    cr_expect_eq(rlx_comm_get_kind(c[1]), RLX_COMM_LOCAL);
    cr_expect_eq(rlx_comm_rank(c[1]), 1);
    cr_expect_eq(rlx_comm_size(c[1]), 2);
    cr_expect_eq(rlx_comm_device(c[1]), -1);
    cr_expect_eq(rlx_comm_check(c[0]), RLX_OK);
    cr_expect_eq(rlx_comm_synchronize(c[0], NULL), RLX_OK);
    cr_expect_eq(rlx_comm_abort(c[1], "operator stop"), RLX_OK);
    cr_expect_eq(rlx_comm_check(c[0]), RLX_ERR_COMM);
    cr_expect(strstr(rlx_last_error(), "rank 1 aborted the job: operator stop"), "%s", rlx_last_error());
    float x = 1;
    cr_expect_eq(rlx_comm_all_reduce(c[0], &x, &x, 1, RLX_DTYPE_F32, NULL), RLX_ERR_COMM);
    rlx_comm_destroy(c[0]);
    rlx_comm_destroy(c[1]);
    rlx_comm_destroy(NULL);
}

/* Without NCCL the NCCL entry points say why; with it, a machine without a GPU says that. */
Test(dist_comm, nccl_entry_points_without_a_gpu) {
    rlx_comm *c = (rlx_comm *)1;
    rlx_comm_id id = {{0}};
    rlx_status s = rlx_comm_nccl_init(&id, 1, 0, 0, NULL, &c);
    cr_expect_null(c);
    if (!rlx_comm_nccl_available()) {
        cr_expect_eq(s, RLX_ERR_UNSUPPORTED);
        cr_expect(strstr(rlx_last_error(), "built without NCCL"), "%s", rlx_last_error());
        cr_expect(strstr(rlx_last_error(), "NCCL_ROOT"), "%s", rlx_last_error());
    } else if (s != RLX_OK) {
        cr_expect(s == RLX_ERR_NO_DEVICE || s == RLX_ERR_COMM, "%s: %s", rlx_status_name(s), rlx_last_error());
    } else {
        rlx_comm_destroy(c); /* a GPU is present: world size 1 works */
    }
}

/* NCCL is loaded with dlopen at the first NCCL call (Criterion runs each test in its own process,
 * so each test here sees a fresh load). */
Test(dist_comm, nccl_library_named_but_missing) {
    if (!rlx_comm_nccl_available()) return; /* no NCCL support built in: nccl_entry_points_without_a_gpu covers it */
    setenv("RLX_NCCL_LIBRARY", "/nonexistent/libnccl.so.2", 1);
    rlx_comm_id id;
    cr_expect_eq(rlx_comm_nccl_unique_id(&id), RLX_ERR_UNSUPPORTED);
    cr_expect(strstr(rlx_last_error(), "NCCL could not be loaded") && strstr(rlx_last_error(), "/nonexistent/libnccl.so.2") &&
                  strstr(rlx_last_error(), "RLX_NCCL_LIBRARY"),
              "%s", rlx_last_error());
    unsetenv("RLX_NCCL_LIBRARY");
}

Test(dist_comm, nccl_loads_at_first_use) {
    if (!rlx_comm_nccl_available()) return;
    unsetenv("RLX_NCCL_LIBRARY");
    rlx_comm_id id;
    memset(&id, 0, sizeof id);
    rlx_status s = rlx_comm_nccl_unique_id(&id); /* no GPU needed for an id */
    if (s == RLX_ERR_UNSUPPORTED) {
        cr_expect(strstr(rlx_last_error(), "NCCL could not be loaded"), "%s", rlx_last_error());
        return; /* built with nccl.h, the library is not on this machine: said clearly */
    }
    cr_expect_eq(s, RLX_OK, "%s", rlx_last_error());
    int nonzero = 0;
    for (int i = 0; i < RLX_COMM_ID_BYTES; i++) nonzero |= id.bytes[i];
    cr_expect(nonzero, "an NCCL unique id of zeros");
}

/* CI (.ci/run sets RLX_REQUIRE_NCCL=1, and scripts/test.sh then configures with -DRLX_NCCL=ON, so a
 * toolkit without nccl.h fails the configure): a build with the CUDA backend has the NCCL backend
 * compiled in, and the library loads at first use with every entry point rlx calls bound
 * (ncclGetUniqueId needs no GPU). Elsewhere the NCCL tests above say what they could check. */
Test(dist_comm, nccl_compiled_and_loaded_where_required) {
    const char *req = getenv("RLX_REQUIRE_NCCL");
    if (!req || strcmp(req, "1")) cr_skip_test("RLX_REQUIRE_NCCL is not 1 (CI sets it)");
    if (!rlx_device_compiled(RLX_DEVICE_CUDA)) cr_skip_test("this build has no CUDA backend (the sanitizer build)");
    cr_assert(rlx_comm_nccl_available(), "RLX_REQUIRE_NCCL=1: the CUDA build has no NCCL backend");
    rlx_comm_id id;
    memset(&id, 0, sizeof id);
    cr_assert_eq(rlx_comm_nccl_unique_id(&id), RLX_OK, "RLX_REQUIRE_NCCL=1: %s", rlx_last_error());
    int nonzero = 0;
    for (int i = 0; i < RLX_COMM_ID_BYTES; i++)
        nonzero |= id.bytes[i];
    cr_expect(nonzero, "an NCCL unique id of zeros");
}

/* ---- the file rendezvous -------------------------------------------------------------------------- */

typedef struct rv_ctx {
    const char *path;
    int rank, world, timeout;
    rlx_comm_id id;
    rlx_status st;
    char msg[1024];
} rv_ctx;

static void *rv_main(void *arg) {
    rv_ctx *r = arg;
    r->st = rlx__rendezvous_file(r->path, r->rank, r->world, &r->id, r->timeout);
    snprintf(r->msg, sizeof r->msg, "%s", r->st ? rlx_last_error() : "");
    return NULL;
}

static void rendezvous(rv_ctx *r, int n) {
    pthread_t t[MAXR];
    for (int i = 0; i < n; i++)
        pthread_create(&t[i], NULL, rv_main, &r[i]);
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);
}

Test(dist_comm, rendezvous_hands_every_rank_the_id, .timeout = 60) {
    char *dir = rlxt_tmpdir();
    char path[1024];
    snprintf(path, sizeof path, "%s/nccl.id", dir);
    rv_ctx r[3];
    for (int i = 0; i < 3; i++)
        r[i] = (rv_ctx){.path = path, .rank = i, .world = 3, .timeout = 20000};
    for (int k = 0; k < RLX_COMM_ID_BYTES; k++)
        r[0].id.bytes[k] = (unsigned char)(k * 7 + 1);
    rendezvous(r, 3);
    for (int i = 0; i < 3; i++) {
        cr_expect_eq(r[i].st, RLX_OK, "rank %d: %s", i, r[i].msg);
        cr_expect_eq(memcmp(r[i].id.bytes, r[0].id.bytes, RLX_COMM_ID_BYTES), 0, "rank %d", i);
    }
    /* rank 0 returns once every rank has read its verdict, and removes every file */
    DIR *d = opendir(dir);
    cr_assert(d);
    for (struct dirent *e; (e = readdir(d));)
        cr_expect(e->d_name[0] == '.', "left behind: %s", e->d_name);
    closedir(d);
    cr_expect_neq(access(path, F_OK), 0, "rank 0 removes the file once the job has its id");
    rlxt_rmtree(dir);
    free(dir);
}

Test(dist_comm, rendezvous_world_size_mismatch_on_both_sides, .timeout = 60) {
    char *dir = rlxt_tmpdir();
    char path[1024];
    snprintf(path, sizeof path, "%s/nccl.id", dir);
    rv_ctx r[2] = {{.path = path, .rank = 0, .world = 2, .timeout = 20000},
                   {.path = path, .rank = 1, .world = 4, .timeout = 20000}};
    rendezvous(r, 2);
    cr_expect_eq(r[0].st, RLX_ERR_COMM, "%s", r[0].msg);
    cr_expect(strstr(r[0].msg, "world-size mismatch: rank 1 was started with world size 4, rank 0 with 2"), "%s",
              r[0].msg);
    cr_expect_eq(r[1].st, RLX_ERR_COMM, "%s", r[1].msg);
    cr_expect(
        strstr(r[1].msg, "world-size mismatch: rank 1 was started with world size 4 but rank 0 created the job with 2"),
        "%s", r[1].msg);
    rlxt_rmtree(dir);
    free(dir);
}

/* Three ranks, the last started with another world size: it and rank 0 see the mismatch, and
 * rank 1, whose own record was right, is told by rank 0's verdict, so no rank goes on to NCCL init
 * (where it would wait for the others until its bound). */
Test(dist_comm, rendezvous_world_size_mismatch_reaches_every_rank, .timeout = 60) {
    char *dir = rlxt_tmpdir();
    char path[1024];
    snprintf(path, sizeof path, "%s/nccl.id", dir);
    rv_ctx r[3] = {{.path = path, .rank = 0, .world = 3, .timeout = 20000},
                   {.path = path, .rank = 1, .world = 3, .timeout = 20000},
                   {.path = path, .rank = 2, .world = 4, .timeout = 20000}};
    for (int k = 0; k < RLX_COMM_ID_BYTES; k++)
        r[0].id.bytes[k] = (unsigned char)(k + 3);
    rendezvous(r, 3);
    const char *mismatch = "world-size mismatch: rank 2 was started with world size 4, rank 0 with 3";
    cr_expect_eq(r[0].st, RLX_ERR_COMM, "%s", r[0].msg);
    cr_expect(strstr(r[0].msg, mismatch), "%s", r[0].msg);
    cr_expect_eq(r[1].st, RLX_ERR_COMM, "%s", r[1].msg);
    cr_expect(strstr(r[1].msg, "rank 1: rank 0 called the job off") && strstr(r[1].msg, mismatch), "%s", r[1].msg);
    cr_expect_eq(r[2].st, RLX_ERR_COMM, "%s", r[2].msg);
    cr_expect(strstr(r[2].msg, "rank 2 was started with world size 4 but rank 0 created the job with 3"), "%s",
              r[2].msg);
    /* a later job at the same path is not confused by the failed job's verdict */
    rv_ctx ok[2] = {{.path = path, .rank = 0, .world = 2, .timeout = 20000},
                    {.path = path, .rank = 1, .world = 2, .timeout = 20000}};
    for (int k = 0; k < RLX_COMM_ID_BYTES; k++)
        ok[0].id.bytes[k] = (unsigned char)(k * 5 + 1);
    rendezvous(ok, 2);
    for (int i = 0; i < 2; i++)
        cr_expect_eq(ok[i].st, RLX_OK, "rank %d: %s", i, ok[i].msg);
    cr_expect_eq(memcmp(ok[1].id.bytes, ok[0].id.bytes, RLX_COMM_ID_BYTES), 0);
    rlxt_rmtree(dir);
    free(dir);
}

Test(dist_comm, rendezvous_missing_ranks_time_out, .timeout = 60) {
    char *dir = rlxt_tmpdir();
    char path[1024];
    snprintf(path, sizeof path, "%s/nccl.id", dir);
    rv_ctx r0 = {.path = path, .rank = 0, .world = 3, .timeout = 300};
    rv_main(&r0);
    cr_expect_eq(r0.st, RLX_ERR_COMM);
    cr_expect(strstr(r0.msg, "rank 0 waited 300 ms for ranks 1, 2 to read it"), "%s", r0.msg);
    rv_ctx r1 = {.path = path, .rank = 1, .world = 3, .timeout = 300};
    rv_main(&r1);
    cr_expect_eq(r1.st, RLX_ERR_COMM);
    cr_expect(strstr(r1.msg, "rank 1 waited 300 ms for rank 0 to write"), "%s", r1.msg);
    rlxt_rmtree(dir);
    free(dir);
}

Test(dist_comm, from_env_says_what_is_missing) {
    rlx_comm *c = (rlx_comm *)1;
    unsetenv("RLX_RANK"), unsetenv("RANK"), unsetenv("RLX_WORLD_SIZE"), unsetenv("WORLD_SIZE");
    cr_expect_eq(rlx_comm_from_env(NULL, &c), RLX_ERR_INVALID_ARGUMENT);
    cr_expect_null(c);
    cr_expect(strstr(rlx_last_error(), "RLX_RANK (or RANK) is not set"), "%s", rlx_last_error());
    setenv("RANK", "1", 1);
    cr_expect_eq(rlx_comm_from_env(NULL, &c), RLX_ERR_INVALID_ARGUMENT);
    cr_expect(strstr(rlx_last_error(), "RLX_WORLD_SIZE (or WORLD_SIZE) is not set"), "%s", rlx_last_error());
    setenv("RLX_WORLD_SIZE", "1", 1);
    cr_expect_eq(rlx_comm_from_env(NULL, &c), RLX_ERR_INVALID_ARGUMENT);
    cr_expect(strstr(rlx_last_error(), "RANK=1 is outside the world size RLX_WORLD_SIZE=1"), "%s", rlx_last_error());
    setenv("RLX_WORLD_SIZE", "two", 1);
    cr_expect_eq(rlx_comm_from_env(NULL, &c), RLX_ERR_INVALID_ARGUMENT);
    cr_expect(strstr(rlx_last_error(), "RLX_WORLD_SIZE is not a non-negative integer"), "%s", rlx_last_error());
    setenv("RLX_WORLD_SIZE", "2", 1);
    unsetenv("RLX_NCCL_ID"), unsetenv("RLX_NCCL_ID_FILE");
    rlx_status s = rlx_comm_from_env(NULL, &c);
    if (rlx_comm_nccl_available()) {
        cr_expect_eq(s, RLX_ERR_INVALID_ARGUMENT);
        cr_expect(strstr(rlx_last_error(), "set RLX_NCCL_ID"), "%s", rlx_last_error());
        setenv("RLX_NCCL_ID", "abc", 1);
        cr_expect_eq(rlx_comm_from_env(NULL, &c), RLX_ERR_INVALID_ARGUMENT);
        cr_expect(strstr(rlx_last_error(), "256 hex digits"), "%s", rlx_last_error());
    } else {
        cr_expect_eq(s, RLX_ERR_UNSUPPORTED);
        cr_expect(strstr(rlx_last_error(), "built without NCCL"), "%s", rlx_last_error());
    }
    unsetenv("RANK"), unsetenv("RLX_WORLD_SIZE"), unsetenv("RLX_NCCL_ID");
}
