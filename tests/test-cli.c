/* The rlx command: exit codes (0 ok, 1 model/runtime, 2 usage), one-line errors, outputs. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pty.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/npy.h"
#include "runtime/device.h"
#include "testutil.h"

static char out_text[1 << 16], err_text[1 << 14];

static int rlx(const char *args) {
    int rc = rlxt_run_cli(NULL, args, out_text, sizeof out_text, err_text, sizeof err_text);
    cr_assert(rc >= 0, "rlx %s: %s", args, rc == -2 ? "RLX_CLI is not set (run through ctest)" : "did not exit normally");
    return rc;
}

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

Test(cli, usage_errors_exit_2) {
    cr_expect_eq(rlx(""), 2);
    cr_expect_eq(rlx("frobnicate"), 2);
    expect_one_line_error();
    cr_expect_eq(rlx("run --tokens 1,2"), 2);
    expect_one_line_error();
    char a[1200];
    snprintf(a, sizeof a, "run --model %s", fixture("gqa_tied_f32"));
    cr_expect_eq(rlx(a), 2);
    const char *bad[] = {"''", "1,,2", "1,x", "-1", "1,2,", "99999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(a, sizeof a, "run --model %s --tokens %s", fixture("gqa_tied_f32"), bad[i]);
        cr_expect_eq(rlx(a), 2, "--tokens %s", bad[i]);
        expect_one_line_error();
    }
    snprintf(a, sizeof a, "run --model %s --tokens 1,97", fixture("gqa_tied_f32")); /* vocab 97 */
    cr_expect_eq(rlx(a), 2);
    cr_expect(strstr(err_text, "id 97 is outside the vocabulary [0, 97)"), "%s", err_text);
    snprintf(a, sizeof a, "run --model %s --tokens 1 --device gpu", fixture("gqa_tied_f32"));
    cr_expect_eq(rlx(a), 2);
    snprintf(a, sizeof a, "run --model %s --tokens 1 --top-k x", fixture("gqa_tied_f32"));
    cr_expect_eq(rlx(a), 2);
}

Test(cli, model_errors_exit_1) {
    cr_expect_eq(rlx("run --model /nonexistent/rlx-model --tokens 1"), 1);
    expect_one_line_error();
    cr_expect(strstr(err_text, "/nonexistent/rlx-model"), "%s", err_text);
    char *dir = rlxt_tmpdir();
    free(rlxt_write_file(dir, "config.json", "{\"model_type\": \"llama\"}", 23));
    free(rlxt_write_file(dir, "model.safetensors", "\x08\0\0\0\0\0\0\0{}      ", 16));
    char a[1200];
    snprintf(a, sizeof a, "run --model %s --tokens 1", dir);
    cr_expect_eq(rlx(a), 1);
    expect_one_line_error();
    rlxt_rmtree(dir);
    free(dir);
}

Test(cli, run_prints_top_k_and_writes_npy) {
    char *dir = rlxt_tmpdir();
    char a[2400], npy[1100];
    snprintf(npy, sizeof npy, "%s/l.npy", dir);
    /* the first prompt of the fixture */
    snprintf(a, sizeof a, "run --model %s --tokens 96,88,16,65,13,19,6 --top-k 3 --logits-out %s", fixture("gqa_tied_f32"), npy);
    cr_assert_eq(rlx(a), 0, "%s", err_text);
    cr_expect(strstr(out_text, "top-3 next tokens"), "%s", out_text);
    float *got, *ref;
    int nd, nd2;
    int64_t shape[4], rshape[4];
    cr_assert_eq(rlx__npy_read_f32(npy, &got, &nd, shape, 4), RLX_OK, "%s", rlx_last_error());
    cr_expect(nd == 2 && shape[0] == 1 && shape[1] == 97);
    char refp[1200];
    snprintf(refp, sizeof refp, "%s/logits.npy", fixture("gqa_tied_f32"));
    cr_assert_eq(rlx__npy_read_f32(refp, &ref, &nd2, rshape, 4), RLX_OK);
    const float *last = ref + 6 * 97; /* batch 0, position 6 */
    cr_expect(rlxt_max_abs_diff(got, last, 97) / rlxt_max_abs(last, 97) <= 1e-4);
    free(got);

    snprintf(a, sizeof a, "run --model %s --tokens 96,88,16,65,13,19,6 --all-logits --top-k 0 --logits-out %s",
             fixture("gqa_tied_f32"), npy);
    cr_assert_eq(rlx(a), 0, "%s", err_text);
    cr_assert_eq(rlx__npy_read_f32(npy, &got, &nd, shape, 4), RLX_OK);
    cr_expect(nd == 2 && shape[0] == 7 && shape[1] == 97);
    cr_expect(rlxt_max_abs_diff(got, ref, 7 * 97) / rlxt_max_abs(ref, 7 * 97) <= 1e-4);
    free(got);
    free(ref);
    rlxt_rmtree(dir);
    free(dir);
}

Test(cli, plan_and_demo) {
    char a[1200];
    snprintf(a, sizeof a, "plan --model %s --seq 16", fixture("mqa_untied_bf16"));
    cr_assert_eq(rlx(a), 0, "%s", err_text);
    cr_expect(strstr(out_text, "llama_layer") && strstr(out_text, "lm_head.weight") && strstr(out_text, "attention"), "%s", out_text);
    cr_assert_eq(rlx("demo"), 0, "%s", err_text);
    cr_expect(strstr(out_text, "rlx demo") && strstr(out_text, "tokens/s"), "%s", out_text);
    cr_expect_eq(rlx("demo --bogus"), 2);
}

Test(cli, plan_kernel_plan_and_assert_clean) {
    char a[2400];
    snprintf(a, sizeof a, "plan --model %s --seq 16 --assert-clean", fixture("gqa_tied_f32"));
    cr_assert_eq(rlx(a), 0, "%s", err_text);
    cr_expect(strstr(out_text, "kernel plan: fusion fused") && strstr(out_text, "clean: no standalone") &&
                  strstr(out_text, "rope_attention") && strstr(out_text, "[gamma-folded packed weight]"),
              "%s", out_text);
    /* the KV cache's kernels are part of the clean plan (issue 11): kv_write is the K rotation, the
     * decode kernel the attention's few-token variant */
    cr_expect(strstr(out_text, "kv_write") && strstr(out_text, "[decode_attention for <= 8 new tokens per sequence]"), "%s", out_text);
    snprintf(a, sizeof a, "plan --model %s --seq 16 --fusion none", fixture("gqa_tied_f32"));
    cr_assert_eq(rlx(a), 0, "%s", err_text);
    cr_expect(strstr(out_text, "kernel plan: fusion none") && strstr(out_text, " rope ") && strstr(out_text, " attention "),
              "%s", out_text);
    snprintf(a, sizeof a, "plan --model %s --fusion none --assert-clean", fixture("gqa_tied_f32"));
    cr_expect_eq(rlx(a), 1, "assert-clean with fusion none is a contradiction");
    expect_one_line_error();
    snprintf(a, sizeof a, "plan --model %s --fusion sometimes", fixture("gqa_tied_f32"));
    cr_expect_eq(rlx(a), 2);
    /* a profile that keeps γ out of the GEMMs leaves standalone norms: assert-clean lists them by layer */
    char *dir = rlxt_tmpdir();
    const char *toml = "[passes]\nconstant_folding = false\n";
    char *prof = rlxt_write_file(dir, "nofold.rlx.toml", toml, strlen(toml));
    snprintf(a, sizeof a, "plan --model %s --profile %s --assert-clean", fixture("gqa_tied_f32"), prof);
    cr_expect_eq(rlx(a), 1);
    expect_one_line_error();
    cr_expect(strstr(err_text, "fusion.assert_clean") && strstr(err_text, "L0.llama_layer.rms_norm") &&
                  strstr(err_text, "L1.llama_layer.rms_norm"),
              "%s", err_text);
    free(prof);
    rlxt_rmtree(dir);
    free(dir);
}

Test(cli, run_on_the_simt_device_matches_transformers) {
    char *dir = rlxt_tmpdir();
    char a[2400], npy[1100], refp[1200];
    snprintf(npy, sizeof npy, "%s/l.npy", dir);
    const char *fus[2] = {"fused", "none"};
    for (int f = 0; f < 2; f++) {
        snprintf(a, sizeof a, "run --model %s --tokens 96,88,16,65,13,19,6 --device simt --fusion %s --all-logits --top-k 1 --logits-out %s",
                 fixture("gqa_tied_f32"), fus[f], npy);
        cr_assert_eq(rlx(a), 0, "%s", err_text);
        cr_expect(strstr(out_text, "device simt"), "%s", out_text);
        float *got, *ref;
        int nd;
        int64_t shape[4];
        cr_assert_eq(rlx__npy_read_f32(npy, &got, &nd, shape, 4), RLX_OK);
        snprintf(refp, sizeof refp, "%s/logits.npy", fixture("gqa_tied_f32"));
        cr_assert_eq(rlx__npy_read_f32(refp, &ref, &nd, shape, 4), RLX_OK);
        /* bf16 whole-model bounds of NUMERICS.md against transformers' f32 logits */
        cr_expect(rlxt_max_abs_diff(got, ref, 7 * 97) / rlxt_max_abs(ref, 7 * 97) <= 3e-2, "fusion %s", fus[f]);
        free(got);
        free(ref);
    }
    rlxt_rmtree(dir);
    free(dir);
}

/* Every command answers --help (and `rlx help <command>`) on stdout with exit 0, whatever else
 * is on the line; its text starts with the command's synopsis. */
Test(cli, every_command_has_help) {
    const char *cmds[] = {"run", "plan", "check", "bench", "embed", "tokenize", "demo"};
    char a[256], want[64];
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        snprintf(want, sizeof want, "usage: rlx %s", cmds[i]);
        const char *forms[] = {"%s --help", "%s -h", "help %s", "%s --model /nonexistent --help"};
        for (size_t f = 0; f < sizeof forms / sizeof forms[0]; f++) {
            snprintf(a, sizeof a, forms[f], cmds[i]);
            cr_expect_eq(rlx(a), 0, "rlx %s", a);
            cr_expect(!strncmp(out_text, want, strlen(want)), "rlx %s printed: %s", a, out_text);
            cr_expect_eq(err_text[0], '\0', "rlx %s wrote to stderr: %s", a, err_text);
        }
    }
    cr_expect_eq(rlx("help"), 0);
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) cr_expect(strstr(out_text, cmds[i]), "rlx help lacks %s", cmds[i]);
    cr_expect_eq(rlx("help frobnicate"), 2);
    expect_one_line_error();
}

/* rlx check picks cuda when it opens; otherwise it says it falls back to simt and why, and with
 * --device cuda it fails instead of falling back. A missing --model is reported before any
 * kernel check runs, so these cases take a second. */
Test(cli, check_says_when_it_falls_back_and_never_with_device_cuda) {
    const rlx__device_ops *ops = rlx__device_ops_for(RLX_DEVICE_CUDA);
    rlx__device *d = NULL;
    const int gpu = ops && ops->open(0, &d) == RLX_OK;
    if (gpu) ops->close(d);
    rlx_clear_error();

    cr_expect_eq(rlx("check --model /nonexistent/rlx-model"), 1);
    cr_expect(strstr(err_text, "/nonexistent/rlx-model"), "%s", err_text);
    cr_expect(!strstr(out_text, "checks, "), "kernel checks ran before the model was opened: %s", out_text);
    if (gpu) {
        cr_expect(!strstr(err_text, "simt"), "a GPU is present, yet: %s", err_text);
    } else if (ops) {
        cr_expect(strstr(err_text, "rlx check: CUDA did not open (") && strstr(err_text, "falling back to the simt device"),
                  "no notice of the fallback: %s", err_text);
    } else {
        cr_expect(strstr(err_text, "this build has no CUDA backend: checking the simt device"), "%s", err_text);
    }

    cr_expect_eq(rlx("check --device cuda --model /nonexistent/rlx-model"), 1);
    expect_one_line_error();
    cr_expect(!strstr(err_text, "simt"), "--device cuda mentions simt: %s", err_text);
    if (!gpu) cr_expect(strstr(err_text, ops ? "CUDA" : "not available in this build"), "%s", err_text);
}

/* The load progress line: drawn on a terminal (bytes, rate, ETA, erased at the end), absent when
 * stderr is a pipe or a file. RLX_PROGRESS_DELAY_MS=0 draws it for a fixture that loads in
 * milliseconds (the default waits a second). */
static int run_in_pty(const char *args, char *out, size_t cap) {
    const char *cli = getenv("RLX_CLI");
    cr_assert(cli && *cli, "RLX_CLI is not set (run through ctest)");
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "exec %s %s", cli, args);
    int master = -1;
    pid_t pid = forkpty(&master, NULL, NULL, NULL);
    cr_assert(pid >= 0, "forkpty failed");
    if (pid == 0) {
        setenv("RLX_PROGRESS_DELAY_MS", "0", 1);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    size_t n = 0;
    for (;;) { /* until the child closes the terminal (EIO on Linux) */
        ssize_t r = read(master, out + n, cap - 1 - n);
        if (r <= 0) break;
        n += (size_t)r;
        if (n == cap - 1) break;
    }
    out[n] = '\0';
    close(master);
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(cli, load_progress_on_a_terminal_and_quiet_elsewhere) {
    char args[1200];
    snprintf(args, sizeof args, "run --model %s --tokens 1,2,3 --device cpu", fixture("gqa_tied_f32"));
    static char tty[1 << 16];
    cr_assert_eq(run_in_pty(args, tty, sizeof tty), 0, "%s", tty);
    const char *line = strstr(tty, "loading weights: ");
    cr_expect(line, "no progress line on the terminal: %s", tty);
    if (line) {
        cr_expect(strstr(line, " of ") && strstr(line, "%), ") && strstr(line, "B/s, ETA ") && strstr(line, " s"),
                  "the line lacks bytes, rate or ETA: %.200s", line);
        cr_expect(strstr(line, "\r\033[K"), "the line is not erased when the load ends");
    }
    cr_expect(strstr(tty, "top-"), "the run's own output is there too: %s", tty);
    /* the same command with stderr a file */
    cr_assert_eq(rlxt_run_cli("RLX_PROGRESS_DELAY_MS=0", args, out_text, sizeof out_text, err_text, sizeof err_text), 0, "%s",
                 err_text);
    cr_expect(!strstr(err_text, "loading weights") && !strchr(err_text, '\r'), "progress in a log: %s", err_text);
}

/* ---- hardening: non-finite outputs, messages ------------------------------------------------- */

#include <math.h>
#include "rlx/flow.h"

/* A 2-layer tiny LLaMA (vocab 64, F32, tied) saved as dir. nan_row >= 0: that embedding row is
 * NaN. cfg_layers > 0: config.json says that many layers. transposed: the embedding is stored
 * [hidden, vocab]. */
static void tiny_dir(const char *dir, int nan_row, int cfg_layers, int transposed) {
    rlx_llama_config c = {.vocab_size = 64, .hidden_size = 32, .intermediate_size = 48, .num_hidden_layers = 2,
                          .num_attention_heads = 4, .num_key_value_heads = 2, .head_dim = 8, .rms_norm_eps = 1e-5,
                          .max_position_embeddings = 64, .tie_word_embeddings = 1,
                          .rope = {.head_dim = 8, .max_positions = 64, .theta = 10000}};
    rlx_weights *w, *o;
    cr_assert_eq(rlx_llama_random_weights(&c, 3, RLX_DTYPE_F32, &w), RLX_OK, "%s", rlx_last_error());
    cr_assert_eq(rlx_weights_create(&o), RLX_OK);
    for (size_t i = 0; i < rlx_weights_count(w); i++) {
        rlx_tensor_view v;
        cr_assert_eq(rlx_weights_at(w, i, &v), RLX_OK);
        float *d = malloc(v.nbytes + 4);
        memcpy(d, v.data, v.nbytes);
        int64_t shape[RLX_MAX_DIMS];
        memcpy(shape, v.shape, sizeof shape);
        if (!strcmp(v.name, "model.embed_tokens.weight")) {
            if (nan_row >= 0)
                for (int64_t k = 0; k < v.shape[1]; k++) d[nan_row * v.shape[1] + k] = NAN;
            if (transposed) shape[0] = v.shape[1], shape[1] = v.shape[0];
        }
        cr_assert_eq(rlx_weights_add(o, v.name, v.dtype, v.ndim, shape, d), RLX_OK, "%s", rlx_last_error());
        free(d);
    }
    if (cfg_layers > 0) c.num_hidden_layers = cfg_layers;
    char *json;
    cr_assert_eq(rlx_llama_config_to_json(&c, &json), RLX_OK);
    cr_assert_eq(rlx_weights_set_config_json(o, json), RLX_OK);
    rlx_free(json);
    cr_assert_eq(rlx_weights_save_dir(o, dir), RLX_OK, "%s", rlx_last_error());
    rlx_weights_destroy(o);
    rlx_weights_destroy(w);
}

/* NaN weights give NaN logits: rlx run exits 1 naming the sequences and their counts instead of
 * printing a top-k of garbage, and --check-weights names the tensor before anything runs. */
Test(cli, nonfinite_logits_exit_1_naming_the_sequences) {
    char *dir = rlxt_tmpdir();
    tiny_dir(dir, 5, 0, 0);
    char a[1400];
    snprintf(a, sizeof a, "run --model %s --device cpu --tokens 1,2,3 --tokens 5,6", dir);
    cr_expect_eq(rlx(a), 1, "%s", out_text);
    expect_one_line_error();
    cr_expect(strstr(err_text, "prefill: 65 non-finite values (NaN or infinity) in 2 of 2 sequences: sequence 0: 1 of 64, "
                               "sequence 1: 64 of 64"),
              "%s", err_text);
    cr_expect(!strstr(out_text, "top-"), "a top-k was printed: %s", out_text);
    snprintf(a, sizeof a, "run --model %s --device cpu --tokens 1,2,3 --tokens 5,6 --all-logits", dir);
    cr_expect_eq(rlx(a), 1);
    cr_expect(strstr(err_text, "sequence 0: 3 of 192, sequence 1: 128 of 128"), "%s", err_text);
    snprintf(a, sizeof a, "run --model %s --device cpu --tokens 1,2,3 --check-weights", dir);
    cr_expect_eq(rlx(a), 1);
    expect_one_line_error();
    cr_expect(strstr(err_text, "tensor 'model.embed_tokens.weight' (F32) holds 32 non-finite values of 2048; the first is element 160 (NaN)"),
              "%s", err_text);
    rlxt_rmtree(dir);
    free(dir);
}

Test(cli, messages_name_the_right_thing) {
    char *dir = rlxt_tmpdir();
    tiny_dir(dir, -1, 0, 0);
    char a[1400];
    /* plan --seq beyond the config reads the config before it is closed */
    snprintf(a, sizeof a, "plan --model %s --seq 100000", dir);
    cr_expect_eq(rlx(a), 2);
    cr_expect(strstr(err_text, "--seq 100000 exceeds max_position_embeddings 64"), "%s", err_text);
    /* an empty value is a usage error, whatever the option */
    cr_expect_eq(rlx("run --model= --tokens 1"), 2);
    expect_one_line_error();
    cr_expect(strstr(err_text, "--model has an empty value"), "%s", err_text);
    snprintf(a, sizeof a, "run --model %s --tokens 1 --profile=", dir);
    cr_expect_eq(rlx(a), 2);
    /* DIR/ is not DIR//config.json in messages */
    char *bad = rlxt_tmpdir();
    tiny_dir(bad, -1, 0, 0);
    free(rlxt_write_file(bad, "config.json", "{\"model_type\": \"bert\"}", 22));
    snprintf(a, sizeof a, "run --model %s/ --tokens 1", bad);
    cr_expect_eq(rlx(a), 1);
    cr_expect(strstr(err_text, "/config.json") && !strstr(err_text, "//"), "%s", err_text);
    rlxt_rmtree(bad);
    free(bad);
    /* a transposed embedding table is blamed, not the layers after it */
    char *tr = rlxt_tmpdir();
    tiny_dir(tr, -1, 0, 1);
    snprintf(a, sizeof a, "run --model %s --device cpu --tokens 1", tr);
    cr_expect_eq(rlx(a), 1);
    cr_expect(strstr(err_text, "1 weight problem: weight 'model.embed_tokens.weight' (stage token_embed) has shape [32, 64], "
                               "expected [64, 32] (vocab x hidden from the config: the table is stored transposed)"),
              "%s", err_text);
    rlxt_rmtree(tr);
    free(tr);
    rlxt_rmtree(dir);
    free(dir);
}

/* An oversized argument is quoted by its start and its length, never echoed whole. */
Test(cli, oversized_arguments_are_not_echoed_whole) {
    enum { BIG = 60000 };
    char *a = malloc(BIG + 200), *junk = malloc(BIG + 1);
    for (int i = 0; i < BIG; i++) junk[i] = i % 2 ? ',' : '1';
    junk[BIG - 1] = 'x';
    junk[BIG] = '\0';
    snprintf(a, BIG + 200, "run --model %s --tokens %s", fixture("gqa_tied_f32"), junk);
    cr_expect_eq(rlx(a), 2);
    expect_one_line_error();
    cr_expect(strlen(err_text) < 1200, "%zu bytes of error", strlen(err_text));
    cr_expect(strstr(err_text, "(60000 bytes)"), "%s", err_text);
    snprintf(a, BIG + 200, "run --model %s --tokens 1 --device %s", fixture("gqa_tied_f32"), junk);
    cr_expect_eq(rlx(a), 2);
    cr_expect(strlen(err_text) < 1200, "%zu bytes of error", strlen(err_text));
    snprintf(a, BIG + 200, "run --%s", junk);
    cr_expect_eq(rlx(a), 2);
    cr_expect(strlen(err_text) < 1200, "%zu bytes of error", strlen(err_text));
    snprintf(a, BIG + 200, "run --model /nonexistent/%s --tokens 1", junk);
    cr_expect_eq(rlx(a), 1);
    cr_expect(strlen(err_text) < 1200, "%zu bytes of error", strlen(err_text));
    free(a);
    free(junk);
}

/* A config with fewer layers than the checkpoint runs, and says how many tensors it leaves. */
Test(cli, fewer_layers_than_the_checkpoint_warns) {
    char *dir = rlxt_tmpdir();
    tiny_dir(dir, -1, 1, 0);
    char a[1400];
    snprintf(a, sizeof a, "run --model %s --device cpu --tokens 1,2,3", dir);
    cr_expect_eq(rlx(a), 0, "%s", err_text);
    cr_expect(strstr(err_text, "rlx: warning: 9 tensors of layer 1..1 in the checkpoint are read by no stage: config.json has 1 layers"),
              "%s", err_text);
    rlxt_rmtree(dir);
    free(dir);
    /* the whole checkpoint used: no warning */
    dir = rlxt_tmpdir();
    tiny_dir(dir, -1, 0, 0);
    snprintf(a, sizeof a, "run --model %s --device cpu --tokens 1,2,3", dir);
    cr_expect_eq(rlx(a), 0, "%s", err_text);
    cr_expect(!strstr(err_text, "warning"), "%s", err_text);
    rlxt_rmtree(dir);
    free(dir);
}
