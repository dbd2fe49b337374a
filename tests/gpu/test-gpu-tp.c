/* GPU tests of tensor parallelism over NCCL (ctest label gpu). Two modes:
 *   test-gpu-tp one   one GPU: a one-rank NCCL communicator, so the NCCL calls, the per-rank plan
 *                     with its all_reduce/all_gather entries and the bounded waits run on a real
 *                     device, against the CPU reference and against the model without one;
 *   test-gpu-tp two   two GPUs: tp = 2 (one process, a thread per rank) against the CPU reference
 *                     (bf16 bounds) and against tp = 1, a rank that aborts (the other's bounded wait
 *                     returns RLX_ERR_COMM, no hang), and, when RLX_CLI is set, `rlx run --tp 2` as
 *                     two processes (RLX_RANK / RLX_WORLD_SIZE / RLX_NCCL_ID_FILE) giving the same
 *                     logits as one process; rlx_generate on both ranks (each KV cache on its own
 *                     GPU with its kv heads) giving tp = 1's greedy tokens (>= 95 % of them).
 * Exits 77 (skipped) with the reason when the build has no NCCL or fewer GPUs are present: it never
 * passes vacuously. */
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/npy.h"
#include "rlx/dist.h"
#include "rlx/kv.h"
#include "tools/check.h"
#include "tools/tp.h"

static int failed;

static void expect(int ok, const char *what) {
    printf("%s %s\n", ok ? "ok  " : "FAIL", what);
    if (!ok) failed++;
}

static void check_rows(const rlx__check_report *r, const char *what) {
    for (int i = 0; i < r->n; i++) {
        const rlx__check_row *x = &r->rows[i];
        char line[1024];
        snprintf(line, sizeof line, "%s: %s: min cosine %.6f (bound %.6f), max|d|/max|ref| %.3g (bound %.3g), argmax %lld/%lld decisive %s",
                 what, x->shape, x->min_cos, x->cos_bound, x->max_err, x->rel_bound, (long long)x->agree, (long long)x->decisive, x->note);
        expect(x->pass, line);
    }
}

static rlx_flow *tiny_flow(rlx_llama_config *c, rlx_weights **w, int last_token) {
    rlx_llama_recipe_params rp = rlx_llama_recipe_default_params();
    rp.batch = 4;
    rp.seq = 129;
    rp.last_token_logits = last_token;
    rlx_flow *f = NULL;
    if (rlx_llama_builtin_config("tiny", c) || rlx_llama_random_weights(c, 42, RLX_DTYPE_BF16, w) ||
        rlx_llama_flow(c, &rp, &f)) {
        printf("FAIL: %s\n", rlx_last_error());
        exit(1);
    }
    return f;
}

static void model_checks(int tp) {
    rlx_llama_config c;
    rlx_weights *w;
    rlx_flow *f = tiny_flow(&c, &w, 0);
    int64_t lens[4] = {129, 1, 17, 64};
    for (int pol = 0; pol < 2; pol++) {
        rlx_build_params bp = rlx_build_default_params();
        bp.device = RLX_DEVICE_CUDA;
        bp.fusion = pol ? RLX_FUSION_NONE : RLX_FUSION_FUSED;
        rlx__check_report r = {0};
        char what[64];
        snprintf(what, sizeof what, "tp %d fusion %s", tp, pol ? "none" : "fused");
        rlx_status s = rlx__check_model_tp(f, w, &bp, tp, lens, 4, 5, "tiny", &r);
        if (s) expect(0, rlx_last_error());
        check_rows(&r, what);
        rlx__check_report_free(&r);
    }
    rlx_flow_destroy(f);
    rlx_weights_destroy(w);
}

/* Rank 1 aborts instead of prefilling: rank 0's prefill enqueues, its bounded wait ends in
 * RLX_ERR_COMM (a remote error or the timeout, then ncclCommAbort), never a hang. */
static void abort_check(void) {
    rlx_llama_config c;
    rlx_weights *w;
    rlx_flow *f = tiny_flow(&c, &w, 1);
    rlx_build_params bp = rlx_build_default_params();
    bp.device = RLX_DEVICE_CUDA;
    rlx_comm_params cp = rlx_comm_default_params();
    cp.timeout_ms = 20000;
    rlx__tp_group g;
    if (rlx__tp_group_create(f, w, &bp, 2, &cp, &g)) {
        expect(0, rlx_last_error());
        return;
    }
    rlx_comm_abort(g.r[1].comm, "planted: rank 1 stops");
    int32_t tok[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    rlx_status s = rlx_session_prefill(g.r[0].session, tok, 8, NULL, 1, g.r[0].stream);
    if (!s) s = rlx_comm_synchronize(g.r[0].comm, g.r[0].stream);
    char line[1200];
    snprintf(line, sizeof line, "a rank that aborts: rank 0 gets RLX_ERR_COMM (%s: %s)", rlx_status_name(s),
             rlx_last_error());
    expect(s == RLX_ERR_COMM, line);
    rlx__tp_group_free(&g);
    rlx_flow_destroy(f);
    rlx_weights_destroy(w);
}

/* rlx_generate on both ranks in lockstep (what `rlx generate --tp 2` runs), each rank's KV cache
 * on its own GPU with its own kv heads, against tp = 1 on GPU 0: greedy tokens equal on >= 95 % of
 * the new tokens (a token after a sequence's first difference counts as a miss), as on simt. */
static void generate_check(void) {
    rlx_llama_config c;
    rlx_weights *w = NULL;
    rlx_llama_recipe_params rp = rlx_llama_recipe_default_params();
    rp.batch = 3, rp.seq = 40, rp.max_context = 40 + 24;
    rlx_flow *f = NULL;
    if (rlx_llama_builtin_config("tiny", &c) || rlx_llama_random_weights(&c, 7, RLX_DTYPE_BF16, &w) ||
        rlx_llama_flow(&c, &rp, &f)) {
        expect(0, rlx_last_error());
        return;
    }
    int32_t tok[40 + 9 + 1];
    for (int i = 0; i < 50; i++)
        tok[i] = (int32_t)((i * 131 + 7) % c.vocab_size);
    int64_t lens[3] = {40, 9, 1};
    rlx_generate_params gp = rlx_generate_default_params();
    gp.max_new_tokens = 24;
    rlx_build_params bp = rlx_build_default_params();
    bp.device = RLX_DEVICE_CUDA;
    rlx_model *m = NULL;
    rlx_generation *ref = NULL, *got = NULL;
    rlx__tp_group g;
    memset(&g, 0, sizeof g);
    rlx_status s = rlx_model_build(f, w, &bp, &m);
    if (!s) s = rlx_generate(m, tok, lens, 3, &gp, NULL, &ref);
    if (!s) s = rlx__tp_group_create(f, w, &bp, 2, NULL, &g);
    if (!s) s = rlx__tp_group_generate(&g, tok, lens, 3, &gp, &got);
    if (s) {
        expect(0, rlx_last_error());
    } else {
        int64_t same_all = 0, all = 0;
        for (int i = 0; i < 3; i++) {
            int64_t a, b, same = 0;
            const int32_t *x = rlx_generation_tokens(ref, i, &a), *y = rlx_generation_tokens(got, i, &b);
            while (same < a && same < b && x[same] == y[same])
                same++;
            same_all += same, all += a;
        }
        char line[256];
        snprintf(line, sizeof line, "generate tp 2 vs tp 1: %lld of %lld new tokens equal", (long long)same_all,
                 (long long)all);
        expect(all > 0 && same_all >= 0.95 * (double)all, line);
        rlx_kv_desc d = rlx_kv_default_desc();
        s = rlx_kv_desc_from_model(g.r[1].model, &d);
        snprintf(line, sizeof line, "rank 1's KV cache: %lld of %lld kv heads", (long long)d.kv_heads,
                 (long long)c.num_key_value_heads);
        expect(!s && d.kv_heads == (c.num_key_value_heads >= 2 ? c.num_key_value_heads / 2 : 1), line);
    }
    rlx_generation_destroy(ref), rlx_generation_destroy(got);
    if (g.r) rlx__tp_group_free(&g);
    rlx_model_destroy(m);
    rlx_flow_destroy(f);
    rlx_weights_destroy(w);
}

/* `rlx run --tp 2` as two processes against the same run in one process. */
static void two_process_check(const char *cli) {
    char dir[] = "/tmp/rlx-gpu-tp-XXXXXX";
    if (!mkdtemp(dir)) {
        expect(0, "mkdtemp");
        return;
    }
    char model[300], idf[300], one[300], two[300], cmd[4096];
    snprintf(model, sizeof model, "%s/model", dir);
    snprintf(idf, sizeof idf, "%s/nccl.id", dir);
    snprintf(one, sizeof one, "%s/one.npy", dir);
    snprintf(two, sizeof two, "%s/two.npy", dir);
    snprintf(cmd, sizeof cmd,
             "'%s' bench --shape tiny --save-checkpoint '%s' >/dev/null && '%s' run --model '%s' --tokens 1,2,3,4,5 "
             "--tp 2 --device cuda --logits-out '%s' >/dev/null",
             cli, model, cli, model, one);
    expect(system(cmd) == 0, "rlx run --tp 2, one process");
    pid_t pid[2];
    for (int r = 0; r < 2; r++) {
        if ((pid[r] = fork()) == 0) {
            char rank[8];
            snprintf(rank, sizeof rank, "%d", r);
            setenv("RLX_RANK", rank, 1);
            setenv("RLX_WORLD_SIZE", "2", 1);
            setenv("RLX_NCCL_ID_FILE", idf, 1);
            setenv("RLX_COMM_TIMEOUT_MS", "60000", 1);
            if (r == 0)
                execl(cli, cli, "run", "--model", model, "--tokens", "1,2,3,4,5", "--tp", "2", "--logits-out", two,
                      (char *)NULL);
            else
                execl(cli, cli, "run", "--model", model, "--tokens", "1,2,3,4,5", "--tp", "2", (char *)NULL);
            _exit(127);
        }
    }
    int ok = 1;
    for (int r = 0; r < 2; r++) {
        int st = 0;
        waitpid(pid[r], &st, 0);
        ok &= WIFEXITED(st) && WEXITSTATUS(st) == 0;
    }
    expect(ok, "rlx run --tp 2, two processes (RLX_RANK, RLX_WORLD_SIZE, RLX_NCCL_ID_FILE)");
    float *a = NULL, *b = NULL;
    int nd;
    int64_t sa[4], sb[4];
    if (ok && !rlx__npy_read_f32(one, &a, &nd, sa, 4) && !rlx__npy_read_f32(two, &b, &nd, sb, 4)) {
        double mc, rel, agree;
        rlx__compare_logits(b, a, sa[0], sa[1], &mc, &rel, &agree);
        char line[256];
        snprintf(line, sizeof line, "two processes vs one: cos %.6f, max|d|/max|ref| %.3g", mc, rel);
        expect(mc >= 0.999 && agree >= 0.95, line);
    }
    free(a), free(b);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) printf("note: could not remove %s\n", dir);
}

int main(int argc, char **argv) {
    const int two = argc > 1 && !strcmp(argv[1], "two");
    if (!rlx_comm_nccl_available()) {
        printf("skipped: this build has no NCCL (CMake found none; set NCCL_ROOT)\n");
        return 77;
    }
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) n = 0;
    const int need = two ? 2 : 1;
    if (n < need) {
        printf("skipped: tensor parallelism over NCCL needs %d CUDA device%s, %d present\n", need, need > 1 ? "s" : "",
               n);
        return 77;
    }
    if (!two) {
        model_checks(1); /* a one-rank NCCL group */
    } else {
        model_checks(2);
        abort_check();
        generate_check();
        const char *cli = getenv("RLX_CLI");
        if (cli && *cli)
            two_process_check(cli);
        else
            printf("note: RLX_CLI not set: the two-process run is not checked\n");
    }
    printf("%s\n", failed ? "FAILED" : "all tensor-parallel GPU checks passed");
    return failed ? 1 : 0;
}
