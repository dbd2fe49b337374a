/* `--tp N` on the rlx command: run gives tp = 1's answer with N in-process ranks (cpu: the same
 * logits within 1e-5; simt: the same top token), a tp that does not divide the heads and a
 * world-size mismatch with the environment are one-line usage errors (exit 2) before anything is
 * built, cuda without GPUs says why (exit 1), bench --tp prints its scaling table labelled as CPU
 * emulation, and every command lists --tp in its usage. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/npy.h"
#include "testutil.h"

static char out_text[1 << 16], err_text[1 << 14];

static int rlx_env(const char *env, const char *args) {
    int rc = rlxt_run_cli(env, args, out_text, sizeof out_text, err_text, sizeof err_text);
    cr_assert(rc >= 0, "rlx %s: %s", args,
              rc == -2 ? "RLX_CLI is not set (run through ctest)" : "did not exit normally");
    return rc;
}

static int rlx(const char *args) { return rlx_env(NULL, args); }

static void expect_one_line_error(void) {
    cr_expect(!strncmp(err_text, "rlx: error: ", 12), "stderr: %s", err_text);
    const char *nl = strchr(err_text, '\n');
    cr_expect(nl && nl[1] == '\0', "error is not one line: %s", err_text);
}

static const char *fixture(const char *name) {
    static char buf[1024];
    snprintf(buf, sizeof buf, "%s/llama/%s", rlxt_fixtures_dir(), name);
    return buf;
}

static float *logits_of(const char *dir, const char *model, const char *extra, int64_t *n) {
    char path[1100], a[3000];
    snprintf(path, sizeof path, "%s/logits.npy", dir);
    snprintf(a, sizeof a, "run --model %s --tokens 1,5,9,2 --tokens 3,3 --all-logits --logits-out %s %s", model, path,
             extra);
    cr_assert_eq(rlx(a), 0, "rlx %s: %s", a, err_text);
    float *x;
    int nd;
    int64_t shape[4];
    cr_assert_eq(rlx__npy_read_f32(path, &x, &nd, shape, 4), 0);
    *n = shape[0] * shape[1];
    return x;
}

Test(cli_tp, run_tp2_on_the_cpu_matches_tp1, .timeout = 120) {
    char *dir = rlxt_tmpdir();
    int64_t n1, n2;
    float *ref = logits_of(dir, fixture("mqa_untied_bf16"), "--device cpu", &n1);
    cr_expect(strstr(out_text, "device cpu,"), "%s", out_text);
    float *got = logits_of(dir, fixture("mqa_untied_bf16"), "--device cpu --tp 2", &n2);
    cr_expect(strstr(out_text, "tp 2 (one process, a thread per rank)"), "%s", out_text);
    cr_assert_eq(n1, n2);
    double rel = rlxt_max_abs_diff(got, ref, (size_t)n1) / rlxt_max_abs(ref, (size_t)n1);
    cr_expect(rel <= 1e-5, "--tp 2 on the cpu: max|d|/max|ref| %.3g", rel);
    free(ref), free(got);
    rlxt_rmtree(dir);
    free(dir);
}

Test(cli_tp, run_tp4_on_simt_gives_the_same_top_token, .timeout = 300) {
    char a[1200], top1[64], top4[64];
    snprintf(a, sizeof a, "run --model %s --tokens 1,5,9,2 --device simt --top-k 1", fixture("gqa_tied_f32"));
    cr_assert_eq(rlx(a), 0, "%s", err_text);
    const char *p = strstr(out_text, "id ");
    cr_assert(p);
    snprintf(top1, sizeof top1, "%.12s", p);
    snprintf(a, sizeof a, "run --model %s --tokens 1,5,9,2 --device simt --top-k 1 --tp 4", fixture("gqa_tied_f32"));
    cr_assert_eq(rlx(a), 0, "%s", err_text);
    cr_expect(strstr(out_text, "device simt, tp 4"), "%s", out_text);
    p = strstr(out_text, "id ");
    cr_assert(p);
    snprintf(top4, sizeof top4, "%.12s", p);
    cr_expect_str_eq(top4, top1);
}

Test(cli_tp, bad_tp_and_world_size_mismatch_are_usage_errors) {
    char a[1200];
    snprintf(a, sizeof a, "run --model %s --tokens 1,2 --device cpu --tp 3", fixture("gqa_tied_f32")); /* 4 heads */
    cr_expect_eq(rlx(a), 2);
    expect_one_line_error();
    cr_expect(strstr(err_text, "tp = 3 does not divide the 4 query heads"), "%s", err_text);
    snprintf(a, sizeof a, "run --model %s --tokens 1,2 --tp 0", fixture("gqa_tied_f32"));
    cr_expect_eq(rlx(a), 2);
    expect_one_line_error();
    snprintf(a, sizeof a, "run --model %s --tokens 1,2 --tp 2", fixture("gqa_tied_f32"));
    cr_expect_eq(rlx_env("RLX_WORLD_SIZE=4 RLX_RANK=1", a), 2);
    expect_one_line_error();
    cr_expect(strstr(err_text, "--tp 2: world-size mismatch: this process was started as one rank of RLX_WORLD_SIZE=4"),
              "%s", err_text);
    cr_expect_eq(rlx_env("WORLD_SIZE=3", a), 2);
    cr_expect(strstr(err_text, "one rank of WORLD_SIZE=3"), "%s", err_text);
    cr_expect_eq(rlx("check --tp x"), 2);
    cr_expect_eq(rlx("bench --tp 1,x"), 2);
    cr_expect_eq(rlx("bench --link-gbps 100"), 2);
    cr_expect(strstr(err_text, "give --tp"), "%s", err_text);
}

/* No GPU here (or no NCCL): --tp on cuda fails clearly, it never falls back. */
Test(cli_tp, cuda_without_gpus_says_why) {
    char a[1200];
    snprintf(a, sizeof a, "run --model %s --tokens 1,2 --device cuda --tp 2", fixture("gqa_tied_f32"));
    int rc = rlx(a);
    if (rc == 0) return; /* a machine with two GPUs and NCCL: nothing to refuse */
    cr_expect_eq(rc, 1, "%s", err_text);
    expect_one_line_error();
    cr_expect(strstr(err_text, "tp = 2 on cuda") && (strstr(err_text, "built without NCCL") ||
                                                     strstr(err_text, "CUDA device") || strstr(err_text, "no CUDA")),
              "%s", err_text);
}

Test(cli_tp, bench_tp_table_on_the_cpu, .timeout = 120) {
    char *dir = rlxt_tmpdir();
    char a[1200];
    snprintf(a, sizeof a,
             "bench --device cpu --shape tiny --seq 8 --tp 1,2 --repeat 1 --warmup 0 --gemm 0 --no-progress --json "
             "%s/tp.json",
             dir);
    cr_assert_eq(rlx(a), 0, "%s", err_text);
    cr_expect(strstr(out_text, "tensor-parallel scaling -- CPU emulation"), "%s", out_text);
    cr_expect(strstr(out_text, "all-red. ms") && strstr(out_text, "modelled ms"), "%s", out_text);
    char path[1100], json[1 << 14];
    snprintf(path, sizeof path, "%s/tp.json", dir);
    rlxt_slurp(path, json, sizeof json);
    cr_expect(strstr(json, "\"tp\": 2") && strstr(json, "\"modelled_allreduce_ms\"") && strstr(json, "CPU emulation"),
              "%s", json);
    rlxt_rmtree(dir);
    free(dir);
}

Test(cli_tp, plan_of_one_rank) {
    char a[1200];
    snprintf(a, sizeof a, "plan --model %s --seq 16 --tp 4 --rank 3", fixture("gqa_tied_f32"));
    cr_assert_eq(rlx(a), 0, "%s", err_text);
    cr_expect(strstr(out_text, "tp: rank 3 of 4") &&
                  strstr(out_text, "1 of 4 query heads, 1 of 2 kv heads, replicated"),
              "%s", out_text);
    cr_expect(strstr(out_text, "all_reduce") && strstr(out_text, "[4 tp ranks]") &&
                  strstr(out_text, "clean: no standalone"),
              "%s", out_text);
    snprintf(a, sizeof a, "plan --model %s --tp 2 --rank 2", fixture("gqa_tied_f32"));
    cr_expect_eq(rlx(a), 2);
    expect_one_line_error();
}

/* rlx generate --tp: the ranks generate in lockstep, each with a KV cache of its kv heads; greedy
 * on simt prints tp = 1's tokens (GQA, 2 kv heads: tp 4 replicates them). */
Test(cli_tp, generate_tp2_and_tp4_on_simt_print_tp1s_tokens, .timeout = 300) {
    char a[1200], want[4096];
    snprintf(a, sizeof a, "generate --model %s --tokens 1,5,9,2 --tokens 3,3 --max-new-tokens 6 --device simt",
             fixture("gqa_tied_f32"));
    cr_assert_eq(rlx(a), 0, "%s", err_text);
    const char *seq = strstr(out_text, "sequence 0");
    cr_assert(seq, "%s", out_text);
    snprintf(want, sizeof want, "%.*s",
             (int)(strstr(seq, "time to first token") ? strstr(seq, "time to first token") - seq : 0), seq);
    cr_assert(strlen(want) > 20, "%s", out_text);
    for (int tp = 2; tp <= 4; tp *= 2) {
        snprintf(a, sizeof a,
                 "generate --model %s --tokens 1,5,9,2 --tokens 3,3 --max-new-tokens 6 --device simt --tp %d",
                 fixture("gqa_tied_f32"), tp);
        cr_assert_eq(rlx(a), 0, "%s", err_text);
        char head[64];
        snprintf(head, sizeof head, "device simt, tp %d (one process, a thread per rank)", tp);
        cr_expect(strstr(out_text, head), "%s", out_text);
        cr_expect(strstr(out_text, want), "tp %d:\n%s\ntp 1:\n%s", tp, out_text, want);
        cr_expect(strstr(out_text, "on rank 0 (its own kv heads)"), "%s", out_text);
    }
    snprintf(a, sizeof a, "generate --model %s --tokens 1,2 --max-new-tokens 2 --device cpu --tp 3",
             fixture("gqa_tied_f32"));
    cr_expect_eq(rlx(a), 2);
    expect_one_line_error();
    cr_expect(strstr(err_text, "tp = 3 does not divide the 4 query heads"), "%s", err_text);
    snprintf(a, sizeof a, "generate --model %s --tokens 1,2 --max-new-tokens 2 --tp 2", fixture("gqa_tied_f32"));
    cr_expect_eq(rlx_env("RLX_WORLD_SIZE=4 RLX_RANK=1", a), 2);
    expect_one_line_error();
    cr_expect(strstr(err_text, "world-size mismatch"), "%s", err_text);
}

Test(cli_tp, usage_lists_tp) {
    const char *cmds[] = {"run", "check", "bench", "plan", "generate"};
    for (int i = 0; i < 5; i++) {
        char a[64];
        snprintf(a, sizeof a, "%s --help", cmds[i]);
        cr_expect_eq(rlx(a), 0);
        cr_expect(strstr(out_text, "--tp N"), "%s: %s", cmds[i], out_text);
    }
}
