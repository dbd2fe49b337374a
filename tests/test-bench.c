/* rlx bench: FLOP counting by hand, statistics, datasheet lookup, and the CLI on the CPU device
 * (tiny shape, few repeats: CI smoke, never a timing assertion). */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "tools/bench.h"
#include "testutil.h"

static char out_text[1 << 17], err_text[1 << 14];

/* Runs `[env] rlx <args>`; returns the exit code, stdout and stderr captured. */
static int rlx_env(const char *env, const char *args) {
    int rc = rlxt_run_cli(env, args, out_text, sizeof out_text, err_text, sizeof err_text);
    cr_assert(rc >= 0, "rlx %s: %s", args, rc == -2 ? "RLX_CLI is not set (run through ctest)" : "did not exit normally");
    return rc;
}

static int rlx(const char *args) { return rlx_env(NULL, args); }

static const char *last_error_line(void) {
    const char *e = strstr(err_text, "rlx: error: ");
    return e ? e : err_text;
}

// ---- FLOP counting ----------------------------------------------------------------------------

Test(bench, flops_tiny_by_hand) {
    rlx_llama_config c;
    cr_assert_eq(rlx_llama_builtin_config("tiny", &c), RLX_OK);
    /* tiny: H 256, I 704, 4 layers, 8 heads (2 kv) x 32, vocab 2048, tied.
     * per layer: q 256·256 = 65536, k = v = 256·64 = 16384, o 65536, gate = up = down = 256·704 = 180224
     *            sum 131072 + 32768 + 540672 = 704512 weight elements
     * batch 2 x seq 16 = 32 tokens:
     *   linear    = 2 · 704512 · 4 layers · 32 tokens        = 180355072
     *   attention = 2·2·16·(16/2)·(8·32) per sequence+layer   = 131072; x 4 layers x 2 sequences = 1048576
     *   lm_head   = 2 · 256 · 2048 per sequence (last token)  = 1048576; x 2 = 2097152 */
    const int64_t lens[2] = {16, 16};
    rlx__bench_flops f = rlx__bench_llama_flops(&c, lens, 2, 1);
    cr_expect_eq(f.linear, 180355072.0);
    cr_expect_eq(f.attention, 1048576.0);
    cr_expect_eq(f.lm_head, 2097152.0);
    cr_expect_eq(f.total, 183500800.0);
    /* all logits: the LM head on every token, 32 · 1048576 */
    f = rlx__bench_llama_flops(&c, lens, 2, 0);
    cr_expect_eq(f.lm_head, 33554432.0);
    /* the last layer pruned: its o (65536) and gate, up, down (3 · 180224) on 2 rows instead of 32:
     * 2 · 606208 · 30 = 36372480 fewer */
    f = rlx__bench_llama_flops(&c, lens, 2, RLX__BENCH_LAST_TOKEN | RLX__BENCH_PRUNED);
    cr_expect_eq(f.linear, 180355072.0 - 36372480.0);
    cr_expect_eq(f.total, 183500800.0 - 36372480.0);
    /* pruning needs last-token logits: all-logits counts are untouched */
    f = rlx__bench_llama_flops(&c, lens, 2, RLX__BENCH_PRUNED);
    cr_expect_eq(f.linear, 180355072.0);
    /* weights: embedding 2048·256 = 524288, layers 4 · (704512 + 2·256 norms) = 2820096, final norm 256 */
    cr_expect_eq(rlx__bench_llama_params(&c), 3344640.0);
    c.tie_word_embeddings = 0;
    cr_expect_eq(rlx__bench_llama_params(&c), 3344640.0 + 524288.0);
}

Test(bench, flops_small_ragged_by_hand) {
    rlx_llama_config c;
    memset(&c, 0, sizeof c);
    c.hidden_size = 6, c.intermediate_size = 10, c.num_hidden_layers = 3, c.num_attention_heads = 3;
    c.num_key_value_heads = 1, c.head_dim = 2, c.vocab_size = 11;
    /* per layer: q 6·6 = 36, k = v = 6·2 = 12, o 36, gate = up = down = 60 -> 276
     * sequences of 5 and 3 tokens (8 tokens), all logits:
     *   linear    = 2 · 276 · 3 · 8                                    = 13248
     *   attention = 3 layers · 2·2·6 · (5·5/2 + 3·3/2) = 3 · 24 · 17   = 1224
     *   lm_head   = 2 · 6 · 11 · 8                                     = 1056 */
    const int64_t lens[2] = {5, 3};
    rlx__bench_flops f = rlx__bench_llama_flops(&c, lens, 2, 0);
    cr_expect_eq(f.linear, 13248.0);
    cr_expect_eq(f.attention, 1224.0);
    cr_expect_eq(f.lm_head, 1056.0);
    cr_expect_eq(f.total, 15528.0);
    f = rlx__bench_llama_flops(&c, lens, 2, 1);
    cr_expect_eq(f.lm_head, 2 * 6 * 11 * 2.0);
    f = rlx__bench_llama_flops(&c, NULL, 2, 1);
    cr_expect_eq(f.total, 0.0);
}

// ---- statistics and peaks ---------------------------------------------------------------------

Test(bench, stats) {
    const double x[5] = {5, 1, 4, 2, 3};
    rlx__bench_stats s;
    rlx__bench_stats_of(x, 5, &s);
    cr_expect_eq(s.n, 5);
    cr_expect_eq(s.median, 3.0);
    cr_expect_eq(s.min, 1.0);
    cr_expect_eq(s.max, 5.0);
    cr_expect(fabs(s.p10 - 1.4) < 1e-12, "p10 %g", s.p10); /* numpy: 1 + 0.4·(2 − 1) */
    cr_expect(fabs(s.p90 - 4.6) < 1e-12, "p90 %g", s.p90);
    cr_expect_eq(s.mean, 3.0);
    cr_expect(fabs(s.stdev - sqrt(2.5)) < 1e-12, "stdev %g", s.stdev);
    const double even[4] = {4, 1, 3, 2};
    rlx__bench_stats_of(even, 4, &s);
    cr_expect_eq(s.median, 2.5);
    const double one = 7;
    rlx__bench_stats_of(&one, 1, &s);
    cr_expect(s.median == 7 && s.p10 == 7 && s.p90 == 7 && s.stdev == 0);
}

Test(bench, datasheet_peaks) {
    const char *card;
    cr_expect_eq(rlx__bench_datasheet_bf16_tflops("NVIDIA H100 80GB HBM3, sm_90, 79.1 GiB", &card), 989.0);
    cr_expect_str_eq(card, "H100 SXM");
    cr_expect_eq(rlx__bench_datasheet_bf16_tflops("NVIDIA H100 PCIe, sm_90, 79.1 GiB", NULL), 756.0);
    cr_expect_eq(rlx__bench_datasheet_bf16_tflops("NVIDIA H200, sm_90, 139.8 GiB", NULL), 989.0);
    cr_expect_eq(rlx__bench_datasheet_bf16_tflops("NVIDIA A100-SXM4-80GB, sm_80, 79.2 GiB", NULL), 312.0);
    cr_expect_eq(rlx__bench_datasheet_bf16_tflops("NVIDIA H100 NVL, sm_90, 93.1 GiB", &card), 0.0);
    cr_expect_null(card);
    cr_expect_eq(rlx__bench_datasheet_bf16_tflops("NVIDIA L4, sm_89, 22.0 GiB", NULL), 0.0);
    cr_expect_eq(rlx__bench_datasheet_bf16_tflops("simt (CUDA kernels on the CPU, test device)", NULL), 0.0);
    cr_expect_eq(rlx__bench_datasheet_bf16_tflops(NULL, NULL), 0.0);
}

Test(bench, cpu_reference_gemm) {
    rlx__bench_gemm g;
    cr_assert_eq(rlx__bench_measure_gemm(RLX_DEVICE_CPU, 0, 1, 8, 16, 32, 0, 3, &g), RLX_OK, "%s", rlx_last_error());
    cr_expect(g.m == 8 && g.n == 16 && g.k == 32 && g.repeat == 3);
    cr_expect(g.median_ms >= 0 && g.tflops >= 0);
    cr_expect(strstr(g.what, "CPU"), "%s", g.what);
    cr_expect_eq(rlx__bench_measure_gemm(RLX_DEVICE_CPU, 0, 1, 0, 16, 32, 0, 3, &g), RLX_ERR_INVALID_ARGUMENT);
}

// ---- the command ------------------------------------------------------------------------------

static json_t *field(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    cr_assert(v, "JSON field '%s' is missing", key);
    return v;
}

static double num(json_t *o, const char *key) {
    json_t *v = field(o, key);
    cr_assert(json_is_number(v), "JSON field '%s' is not a number", key);
    return json_number_value(v);
}

Test(bench, cpu_json_has_the_documented_fields) {
    char *dir = rlxt_tmpdir();
    char args[2048];
    snprintf(args, sizeof args, "bench --shape tiny --device cpu --batch 1 --seq 16 --repeat 2 --warmup 1 --json %s/r.json --no-progress",
             dir);
    cr_assert_eq(rlx(args), 0, "stderr: %s", err_text);
    cr_expect(strstr(out_text, "CPU timings (the f32 reference; they say nothing about a GPU)"), "%s", out_text);
    cr_expect(strstr(out_text, "2 x (q,k,v,o,gate,up,down weights)"), "the FLOP formula is in the header: %s", out_text);
    cr_expect(strstr(out_text, "breakdown:"), "one configuration prints its breakdown by default");
    char path[1100];
    snprintf(path, sizeof path, "%s/r.json", dir);
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    cr_assert(root, "%s: %s", path, jerr.text);
    cr_assert(json_is_array(root) && json_array_size(root) == 1);
    json_t *o = json_array_get(root, 0);
    cr_expect_str_eq(json_string_value(field(o, "shape")), "tiny");
    cr_expect_str_eq(json_string_value(field(o, "device")), "cpu");
    cr_expect_str_eq(json_string_value(field(o, "fusion")), "n/a");
    cr_expect_str_eq(json_string_value(field(o, "source")), "builtin");
    cr_expect_eq(num(o, "batch"), 1);
    cr_expect_eq(num(o, "seq"), 16);
    cr_expect_eq(num(o, "tokens"), 16);
    cr_expect_eq(num(o, "repeat"), 2);
    cr_expect_eq(num(o, "warmup"), 1);
    cr_expect_eq(json_array_size(field(o, "times_ms")), 2);
    const double med = num(o, "median_ms");
    cr_expect(med > 0 && num(o, "min_ms") <= med && med <= num(o, "max_ms"), "median %g", med);
    cr_expect(num(o, "p10_ms") <= med && med <= num(o, "p90_ms"));
    cr_expect(num(o, "stdev_ms") >= 0);
    /* the counting of the library, and tokens/s and TFLOP/s derived from the median */
    rlx_llama_config c;
    cr_assert_eq(rlx_llama_builtin_config("tiny", &c), RLX_OK);
    const int64_t len = 16;
    /* the prefill preset prunes the last layer: the count drops by what no longer runs */
    cr_expect(json_is_true(field(o, "pruned_last_layer")));
    const rlx__bench_flops f = rlx__bench_llama_flops(&c, &len, 1, RLX__BENCH_LAST_TOKEN | RLX__BENCH_PRUNED);
    const rlx__bench_flops unpruned = rlx__bench_llama_flops(&c, &len, 1, RLX__BENCH_LAST_TOKEN);
    cr_expect_lt(f.total, unpruned.total);
    cr_expect_eq(num(o, "flops"), f.total);
    cr_expect_eq(num(o, "flops_linear") + num(o, "flops_attention") + num(o, "flops_lm_head"), f.total);
    cr_expect(fabs(num(o, "tokens_per_s") - 16 / (med * 1e-3)) < 1e-6 * num(o, "tokens_per_s"));
    cr_expect(fabs(num(o, "tflops") - f.total / (med * 1e-3) / 1e12) < 1e-6 * num(o, "tflops"));
    /* no datasheet peak for a CPU; MFU against the CPU reference GEMM measured in the run */
    cr_expect(json_is_null(field(o, "mfu")));
    cr_expect(json_is_null(field(o, "peak_tflops")));
    cr_expect(num(o, "gemm_tflops") > 0);
    cr_expect(fabs(num(o, "mfu_gemm") - num(o, "tflops") / num(o, "gemm_tflops")) < 1e-9);
    cr_expect(json_is_null(field(o, "speedup_fused_vs_none")));
    cr_expect(json_is_null(field(o, "peak_device_bytes")), "the CPU has no device memory");
    cr_expect(json_is_true(field(o, "output_finite")));
    cr_expect(strstr(json_string_value(field(o, "note")), "CPU timings"));
    json_t *bd = field(o, "breakdown");
    cr_expect_str_eq(json_string_value(field(bd, "unit")), "stage");
    cr_expect_eq(num(bd, "runs"), 2);
    json_t *kinds = field(bd, "by_kind");
    int has_linear = 0;
    for (size_t i = 0; i < json_array_size(kinds); i++)
        if (!strcmp(json_string_value(field(json_array_get(kinds, i), "kind")), "linear")) {
            has_linear = 1;
            /* 4 layers x 7 projections + the LM head */
            cr_expect_eq(num(json_array_get(kinds, i), "count"), 29);
        }
    cr_expect(has_linear);
    cr_expect(json_array_size(field(bd, "top")) > 0);
    cr_expect(json_is_object(field(o, "model_config")));
    field(o, "date");
    field(o, "commit");
    json_decref(root);
    rlxt_rmtree(dir);
    free(dir);
}

/* simt prints the breakdown a GPU run prints, kernel by kernel with the same columns, labelled as
 * CPU emulation; the chosen GEMM algorithms and the cache's counters; the pruned FLOP count. */
Test(bench, simt_breakdown_like_a_gpu) {
    char *dir = rlxt_tmpdir();
    char args[2048];
    snprintf(args, sizeof args, "bench --shape tiny --device simt --batch 1 --seq 8 --repeat 1 --warmup 0 --json %s/r.json --no-progress",
             dir);
    int rc = rlx(args);
    if (rc == 1 && strstr(err_text, "simt")) {
        rlxt_rmtree(dir);
        free(dir);
        cr_skip_test("this rlx has no simt device: %s", err_text);
    }
    cr_assert_eq(rc, 0, "stderr: %s", err_text);
    cr_expect(strstr(out_text, "simt timings"), "%s", out_text);
    cr_expect(strstr(out_text, "kernel times (CPU emulation"), "the breakdown says it is CPU emulation: %s", out_text);
    cr_expect(strstr(out_text, "  kernel kind             count         ms   share   TFLOP/s      GB/s"),
              "the GPU's breakdown columns: %s", out_text);
    cr_expect(strstr(out_text, "GEMM algorithms: tiny b=1 s=8 fused"), "%s", out_text);
    cr_expect(strstr(out_text, "simt reference GEMM #0 (1 of 3)"), "%s", out_text);
    char path[1100];
    snprintf(path, sizeof path, "%s/r.json", dir);
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    cr_assert(root, "%s: %s", path, jerr.text);
    json_t *o = json_array_get(root, 0);
    cr_expect_str_eq(json_string_value(field(field(o, "breakdown"), "unit")), "kernel");
    json_t *kinds = field(field(o, "breakdown"), "by_kind");
    int gemm_seen = 0;
    for (size_t i = 0; i < json_array_size(kinds); i++) {
        json_t *k = json_array_get(kinds, i);
        if (!strcmp(json_string_value(field(k, "kind")), "gemm")) {
            gemm_seen = 1;
            cr_expect(json_is_number(field(k, "tflops")) && json_is_number(field(k, "gbps")), "GEMMs get TFLOP/s and GB/s");
        }
    }
    cr_expect(gemm_seen);
    json_t *algos = field(o, "gemm_algorithms");
    /* packed qkv, o, gate|up, down at M <= 8; the pruned last layer's o, gate|up and down at M = 1;
     * the LM head */
    cr_expect(json_is_array(algos) && json_array_size(algos) == 8, "%zu entries", json_array_size(algos));
    cr_expect(num(field(o, "gemm_cache"), "heuristic") == 8);
    cr_expect(json_is_true(field(o, "pruned_last_layer")));
    rlx_llama_config c;
    cr_assert_eq(rlx_llama_builtin_config("tiny", &c), RLX_OK);
    const int64_t len = 8;
    cr_expect_eq(num(o, "flops"), rlx__bench_llama_flops(&c, &len, 1, RLX__BENCH_LAST_TOKEN | RLX__BENCH_PRUNED).total);
    json_decref(root);
    rlxt_rmtree(dir);
    free(dir);
}

Test(bench, csv_header_and_rows) {
    char *dir = rlxt_tmpdir();
    char args[2048];
    snprintf(args, sizeof args, "bench --shape tiny --device cpu --batch 1 --seq 8,16 --repeat 1 --warmup 0 --gemm 0 --csv %s/r.csv", dir);
    cr_assert_eq(rlx(args), 0, "stderr: %s", err_text);
    cr_expect(strstr(out_text, "GEMM:    not measured"), "%s", out_text);
    cr_expect(!strstr(out_text, "breakdown:"), "several configurations: no breakdown unless --breakdown");
    char path[1100], text[8192];
    snprintf(path, sizeof path, "%s/r.csv", dir);
    rlxt_slurp(path, text, sizeof text);
    cr_expect(!strncmp(text, "shape,device,device_name,batch,seq,tokens,fusion,repeat,median_ms,", 65), "%s", text);
    int lines = 0;
    for (const char *p = text; *p; p++) lines += *p == '\n';
    cr_expect_eq(lines, 3, "header + 2 configurations: %s", text);
    cr_expect(strstr(text, "\ntiny,cpu,"), "%s", text);
    rlxt_rmtree(dir);
    free(dir);
}

Test(bench, usage_errors_exit_2) {
    const char *bad[] = {
        "bench --seq 0",
        "bench --seq 16,,32",
        "bench --seq x",
        "bench --batch",
        "bench --fusion maybe",
        "bench --shape huge",
        "bench --shape tiny --model /tmp",
        "bench --device gpu",
        "bench --repeat 0",
        "bench --frobnicate",
        "bench --peak-tflops -3",
        "bench --model /tmp --save-checkpoint /tmp/x",
        "bench --shape tiny --device cpu --seq 5000", /* beyond max_position_embeddings 4096 */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_expect_eq(rlx(bad[i]), 2, "%s: %s", bad[i], err_text);
        cr_expect(!strncmp(last_error_line(), "rlx: error: ", 12), "%s: %s", bad[i], err_text);
    }
    /* absurd CPU work is refused before anything runs */
    cr_expect_eq(rlx("bench --shape llama-3.2-1b --device cpu --batch 4 --seq 2048"), 2);
    cr_expect(strstr(err_text, "--force"), "%s", err_text);
    cr_expect_eq(rlx("bench --shape llama-3.1-8b --device cpu --seq 1"), 2);
    cr_expect(strstr(err_text, "GiB"), "%s", err_text);
}

Test(bench, plot_without_gnuplot_exits_1_before_running) {
    cr_expect_eq(rlx_env("RLX_GNUPLOT=/nonexistent/gnuplot", "bench --shape tiny --device cpu --seq 8 --plot /tmp/never.png"), 1);
    cr_expect(strstr(err_text, "gnuplot is not installed"), "%s", err_text);
    cr_expect(!strstr(out_text, "tokens/s"), "nothing was run: %s", out_text);
}

Test(bench, plot_with_gnuplot) {
    if (system("command -v gnuplot >/dev/null 2>&1") != 0) cr_skip_test("gnuplot is not installed");
    char *dir = rlxt_tmpdir();
    char args[2048];
    snprintf(args, sizeof args, "bench --shape tiny --device cpu --batch 1 --seq 8,16 --repeat 1 --warmup 0 --gemm 0 --plot %s/p.png", dir);
    cr_assert_eq(rlx(args), 0, "stderr: %s", err_text);
    char path[1100];
    snprintf(path, sizeof path, "%s/p.png", dir);
    unsigned char magic[8] = {0};
    FILE *f = fopen(path, "rb");
    cr_assert(f, "%s was not written", path);
    cr_expect_eq(fread(magic, 1, 8, f), 8);
    fclose(f);
    cr_expect(!memcmp(magic, "\x89PNG\r\n\x1a\n", 8), "not a PNG");
    rlxt_rmtree(dir);
    free(dir);
}

Test(bench, save_checkpoint_then_bench_the_model) {
    char *dir = rlxt_tmpdir();
    char args[2048];
    snprintf(args, sizeof args, "bench --shape tiny --seed 7 --save-checkpoint %s/ckpt", dir);
    cr_assert_eq(rlx(args), 0, "stderr: %s", err_text);
    snprintf(args, sizeof args, "bench --model %s/ckpt --device cpu --seq 8 --repeat 1 --warmup 0 --gemm 0 --json %s/r.json", dir, dir);
    cr_assert_eq(rlx(args), 0, "stderr: %s", err_text);
    char path[1100];
    snprintf(path, sizeof path, "%s/r.json", dir);
    json_t *root = json_load_file(path, 0, NULL);
    cr_assert(root);
    json_t *o = json_array_get(root, 0);
    cr_expect_str_eq(json_string_value(field(o, "source")), "checkpoint");
    cr_expect(json_is_null(field(o, "seed")));
    cr_expect(json_is_null(field(o, "mfu_gemm")), "--gemm 0: nothing to compare against");
    json_decref(root);
    rlxt_rmtree(dir);
    free(dir);
}

/* rlx bench --load: a checkpoint written once and reused, seconds and GB/s per shape, the bounds
 * measured in the same run, and the documented JSON fields. */
Test(bench, load_writes_then_reuses_the_checkpoint_and_reports_gbps) {
    char *dir = rlxt_tmpdir();
    char args[2048], path[1200];
    snprintf(args, sizeof args, "bench --load --shape tiny --device cpu --repeat 2 --checkpoint-dir %s --json %s/l.json", dir, dir);
    cr_assert_eq(rlx(args), 0, "stderr: %s", err_text);
    cr_expect(strstr(out_text, "checkpoint written first"), "the first run writes the checkpoint: %s", out_text);
    cr_expect(strstr(out_text, "GB/s"), "%s", out_text);
    snprintf(path, sizeof path, "%s/l.json", dir);
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    cr_assert(root, "%s: %s", path, jerr.text);
    cr_assert(json_is_array(root) && json_array_size(root) == 1);
    json_t *o = json_array_get(root, 0);
    cr_expect_str_eq(json_string_value(field(o, "mode")), "load");
    cr_expect_str_eq(json_string_value(field(o, "shape")), "tiny");
    cr_expect_str_eq(json_string_value(field(o, "device")), "cpu");
    cr_expect_eq(num(o, "repeat"), 2);
    cr_expect_eq(json_array_size(field(o, "seconds")), 2);
    rlx_llama_config c;
    cr_assert_eq(rlx_llama_builtin_config("tiny", &c), RLX_OK);
    const double params = rlx__bench_llama_params(&c);
    cr_expect_eq(num(o, "read_bytes"), 2 * params, "tiny is tied: the build reads every bf16 weight once");
    cr_expect(num(o, "checkpoint_bytes") > num(o, "read_bytes"), "the file has a header too");
    cr_expect_eq(num(o, "device_bytes"), 4 * params, "the reference keeps f32 copies");
    const double med = num(o, "median_s");
    cr_expect(med > 0 && num(o, "min_s") <= med);
    cr_expect(fabs(num(o, "gbps") - num(o, "read_bytes") / med / 1e9) < 1e-9 * num(o, "gbps"));
    cr_expect(num(o, "read_gbps") > 0);
    cr_expect_eq(num(o, "h2d_gbps"), 0, "no GPU, no PCIe figure");
    cr_expect(num(o, "checkpoint_written_s") > 0);
    json_decref(root);
    /* second run: reused */
    cr_assert_eq(rlx(args), 0, "stderr: %s", err_text);
    cr_expect(!strstr(out_text, "checkpoint written first"), "the checkpoint was written again: %s", out_text);
    /* a directory holding another shape is refused, not silently measured */
    char sub[1200];
    snprintf(sub, sizeof sub, "%s/rlx-bench-tiny-seed1/config.json", dir);
    FILE *f = fopen(sub, "r+");
    cr_assert(f);
    char cfg[4096];
    size_t n = fread(cfg, 1, sizeof cfg - 1, f);
    cfg[n] = '\0';
    char *h = strstr(cfg, "\"hidden_size\": 256");
    cr_assert(h, "%s", cfg);
    memcpy(h, "\"hidden_size\": 128", 18);
    rewind(f);
    fwrite(cfg, 1, n, f);
    fclose(f);
    cr_expect_eq(rlx(args), 2, "a directory of the wrong shape is the caller's mistake");
    cr_expect(strstr(err_text, "another shape"), "%s", err_text);
    rlxt_rmtree(dir);
    free(dir);
}

Test(bench, load_usage_errors_exit_2) {
    cr_expect_eq(rlx("bench --load --shape tiny --batch 2"), 2);
    cr_expect(strstr(err_text, "--load times the weight load only"), "%s", err_text);
    cr_expect_eq(rlx("bench --shape tiny,llama-3.2-1b --device cpu"), 2);
    cr_expect_eq(rlx("bench --checkpoint-dir /tmp --shape tiny"), 2);
    cr_expect_eq(rlx("bench --load --shape tiny,nope --device cpu --checkpoint-dir /nonexistent-rlx"), 2);
}

// ---- --decode -----------------------------------------------------------------------------------------

Test(bench, decode_table_and_json) {
    char *dir = rlxt_tmpdir();
    char args[2048];
    snprintf(args, sizeof args, "bench --decode --shape tiny --device cpu --batch 1,3 --seq 24 --repeat 3 --warmup 1 --json %s/d.json --no-progress",
             dir);
    cr_assert_eq(rlx(args), 0, "stderr: %s", err_text);
    cr_expect(strstr(out_text, "CPU timings (the f32 reference; they say nothing about a GPU)"), "%s", out_text);
    cr_expect(strstr(out_text, "TTFT ms") && strstr(out_text, "KV B/token") && strstr(out_text, "floor ms"), "%s", out_text);
    cr_expect(strstr(out_text, "GB/s"), "the copy bandwidth is printed: %s", out_text);
    char path[1100];
    snprintf(path, sizeof path, "%s/d.json", dir);
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    cr_assert(root, "%s: %s", path, jerr.text);
    json_t *rows = json_object_get(root, "decode");
    cr_assert(json_is_array(rows) && json_array_size(rows) == 2);
    const char *keys[] = {"batch", "context", "steps", "ttft_ms", "step_median_ms", "step_p90_ms", "step_kernels_ms", "decode_tokens_per_s",
                          "kv_bytes_per_token", "weight_bytes", "kv_read_bytes_per_step", "copy_gbps", "roofline_ms", "roofline_fraction"};
    for (size_t r = 0; r < 2; r++) {
        json_t *o = json_array_get(rows, r);
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) cr_expect(json_object_get(o, keys[k]), "row %zu has no '%s'", r, keys[k]);
        cr_expect(json_is_false(json_object_get(o, "gpu")));
        /* the tiny shape: 4 layers x 2 kv heads x 32 x (K, V) x f32 on the CPU reference */
        cr_expect_eq(json_integer_value(json_object_get(o, "kv_bytes_per_token")), 4 * 2 * 32 * 2 * 4);
        cr_expect(json_real_value(json_object_get(o, "decode_tokens_per_s")) > 0 && json_real_value(json_object_get(o, "roofline_ms")) > 0);
    }
    cr_expect_eq(json_integer_value(json_object_get(json_array_get(rows, 1), "batch")), 3);
    json_decref(root);
    rlxt_rmtree(dir);
    free(dir);
    const char *bad[] = {"bench --decode --tp 2", "bench --decode --csv x.csv", "bench --decode --fusion both", "bench --decode --load",
                         "bench --decode --shape tiny --device cpu --seq 4095"}; /* context + steps past 4096 positions */
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const int rc = rlx(bad[i]);
        cr_expect(rc == 2 || (i == 4 && rc == 1), "%s: exit %d: %s", bad[i], rc, err_text);
        cr_expect(!strncmp(last_error_line(), "rlx: error: ", 12), "%s: %s", bad[i], err_text);
    }
}
