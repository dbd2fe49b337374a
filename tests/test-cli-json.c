/* The rlx command's machine-readable side: --json on run, embed and check (one JSON document on
 * stdout, the same numbers as the text and the .npy outputs), and rlx --version / rlx version. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/npy.h"
#include "rlx/flow.h"
#include "testutil.h"

static char out_text[1 << 17], err_text[1 << 14];

static int rlx_env(const char *env, const char *args) {
    int rc = rlxt_run_cli(env, args, out_text, sizeof out_text, err_text, sizeof err_text);
    cr_assert(rc >= 0, "rlx %s: %s", args, rc == -2 ? "RLX_CLI is not set (run through ctest)" : "did not exit normally");
    return rc;
}
static int rlx(const char *args) { return rlx_env(NULL, args); }

/* stdout must be exactly one JSON object (and a newline). */
static json_t *parse_stdout(const char *args) {
    json_error_t e;
    json_t *doc = json_loads(out_text, 0, &e);
    cr_assert(doc && json_is_object(doc), "rlx %s: stdout is not one JSON object (%s at line %d): %.400s", args, e.text, e.line,
              out_text);
    size_t n = strlen(out_text);
    cr_expect(n > 0 && out_text[n - 1] == '\n' && !strchr(out_text, '\n')[1], "not one line: %.400s", out_text);
    cr_expect_str_eq(json_string_value(json_object_get(doc, "rlx_version")), RLX_VERSION_STRING);
    return doc;
}

static double num(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    cr_assert(json_is_number(v), "'%s' is not a number", key);
    return json_number_value(v);
}

static const char *fixture(const char *kind, const char *name) {
    static char buf[1024];
    snprintf(buf, sizeof buf, "%s/%s/%s", rlxt_fixtures_dir(), kind, name);
    return buf;
}

Test(cli_json, version_names_the_library_and_its_devices) {
    char want[64];
    snprintf(want, sizeof want, "rlx %s\ndevices: cpu", RLX_VERSION_STRING);
    const char *forms[] = {"--version", "version"};
    for (int f = 0; f < 2; f++) {
        cr_assert_eq(rlx(forms[f]), 0, "%s", err_text);
        cr_expect(!strncmp(out_text, want, strlen(want)), "rlx %s: %s", forms[f], out_text);
        /* the devices line lists exactly what this build has */
        cr_expect_eq(strstr(out_text, " cuda") != NULL, rlx_device_compiled(RLX_DEVICE_CUDA), "%s", out_text);
        cr_expect(strstr(out_text, " simt"), "the command links the simt device: %s", out_text);
    }
    cr_expect_eq(rlx("version --help"), 0);
    cr_expect(!strncmp(out_text, "usage: rlx version", 18), "%s", out_text);
    cr_expect_eq(rlx("version --bogus"), 2);
    cr_expect(!strncmp(err_text, "rlx: error: ", 12), "%s", err_text);
}

Test(cli_json, run_json_matches_the_logits_it_writes) {
    char *dir = rlxt_tmpdir();
    char a[2600], npy[1100];
    snprintf(npy, sizeof npy, "%s/l.npy", dir);
    snprintf(a, sizeof a, "run --model %s --tokens 96,88,16,65,13,19,6 --tokens 41,87,78 --top-k 4 --device cpu --json --logits-out %s",
             fixture("llama", "gqa_tied_f32"), npy);
    cr_assert_eq(rlx(a), 0, "%s", err_text);
    json_t *doc = parse_stdout(a);
    cr_expect_str_eq(json_string_value(json_object_get(doc, "command")), "run");
    cr_expect_str_eq(json_string_value(json_object_get(doc, "device")), "cpu");
    cr_expect_str_eq(json_string_value(json_object_get(doc, "logits_out")), npy);
    cr_expect_eq(num(doc, "tokens"), 10);
    json_t *shape = json_object_get(doc, "logits_shape");
    cr_expect(json_array_size(shape) == 2 && json_integer_value(json_array_get(shape, 0)) == 2 &&
              json_integer_value(json_array_get(shape, 1)) == 97);

    float *logits;
    int nd;
    int64_t sh[4];
    cr_assert_eq(rlx__npy_read_f32(npy, &logits, &nd, sh, 4), RLX_OK, "%s", rlx_last_error());
    json_t *seqs = json_object_get(doc, "sequences");
    cr_assert_eq(json_array_size(seqs), 2);
    const int lens[2] = {7, 3};
    for (int q = 0; q < 2; q++) {
        json_t *sq = json_array_get(seqs, (size_t)q);
        cr_expect_eq(num(sq, "tokens"), lens[q]);
        json_t *top = json_object_get(sq, "top_k");
        cr_assert_eq(json_array_size(top), 4);
        const float *row = logits + q * 97;
        double prev = 1e30;
        for (size_t i = 0; i < 4; i++) {
            json_t *e = json_array_get(top, i);
            int64_t id = (int64_t)num(e, "id");
            cr_assert(id >= 0 && id < 97);
            /* 9 significant digits: the float32 reads back exactly */
            cr_expect_eq((float)num(e, "logit"), row[id], "seq %d rank %zu", q, i);
            cr_expect(row[id] <= prev, "top_k is not in decreasing order");
            prev = row[id];
        }
        /* nothing outside the top 4 beats the 4th */
        int above = 0;
        for (int v = 0; v < 97; v++) above += row[v] > (float)prev;
        cr_expect_eq(above, 3, "seq %d: %d logits above the 4th of top_k", q, above);
    }
    free(logits);
    json_decref(doc);
    snprintf(a, sizeof a, "run --model %s --tokens 1,97 --json", fixture("llama", "gqa_tied_f32"));
    cr_expect_eq(rlx(a), 2, "a usage error stays a usage error");
    cr_expect_eq(out_text[0], '\0', "a failed command prints no document: %s", out_text);
    cr_expect(!strncmp(err_text, "rlx: error: ", 12), "%s", err_text);
    rlxt_rmtree(dir);
    free(dir);
}

Test(cli_json, embed_json_holds_every_row) {
    char *dir = rlxt_tmpdir();
    char a[2600], npy[1100];
    snprintf(npy, sizeof npy, "%s/e.npy", dir);
    const char *pools[2] = {"mean", "none"};
    for (int p = 0; p < 2; p++) {
        snprintf(a, sizeof a, "embed --model %s --tokens 1,7,9,2 --tokens 1,5,2 --token-types 0,0,1,1 --token-types 0,1,1 "
                 "--pool %s --device cpu --json --out %s", fixture("bert", "bert_token_types_f32"), pools[p], npy);
        cr_assert_eq(rlx(a), 0, "%s", err_text);
        json_t *doc = parse_stdout(a);
        cr_expect_str_eq(json_string_value(json_object_get(doc, "command")), "embed");
        cr_expect_str_eq(json_string_value(json_object_get(doc, "pool")), pools[p]);
        cr_expect_str_eq(json_string_value(json_object_get(doc, "pool_from")), "--pool");
        cr_expect_eq(json_object_get(doc, "normalized"), json_false());
        float *emb;
        int nd;
        int64_t sh[4];
        cr_assert_eq(rlx__npy_read_f32(npy, &emb, &nd, sh, 4), RLX_OK, "%s", rlx_last_error());
        cr_assert_eq(sh[0], p == 0 ? 2 : 7);
        json_t *rows = json_object_get(doc, "embeddings");
        cr_assert_eq((int64_t)json_array_size(rows), sh[0]);
        cr_expect_eq(num(doc, "hidden"), (double)sh[1]);
        for (int64_t r = 0; r < sh[0]; r++) {
            json_t *row = json_array_get(rows, (size_t)r);
            cr_assert_eq((int64_t)json_array_size(row), sh[1]);
            for (int64_t c = 0; c < sh[1]; c++)
                cr_expect_eq((float)json_number_value(json_array_get(row, (size_t)c)), emb[r * sh[1] + c], "pool %s [%lld, %lld]",
                             pools[p], (long long)r, (long long)c);
        }
        free(emb);
        json_decref(doc);
    }
    rlxt_rmtree(dir);
    free(dir);
}

/* The whole check, in the reverse thread order (ctest's rlx-check-simt-forward runs the table
 * form in the forward order): every row is there with its numbers, and they pass. */
Test(cli_json, check_json_reports_every_row) {
    cr_assert_eq(rlx_env("RLX_SIMT_ORDER=reverse", "check --device simt --json"), 0, "%s", err_text);
    json_t *doc = parse_stdout("check");
    cr_expect_str_eq(json_string_value(json_object_get(doc, "device")), "simt");
    json_t *checks = json_object_get(doc, "checks");
    size_t n = json_array_size(checks);
    cr_expect(n > 20, "only %zu checks", n);
    cr_expect_eq(num(doc, "n_checks"), (double)n);
    cr_expect_eq(num(doc, "failed"), 0);
    cr_expect_eq(json_object_get(doc, "pass"), json_true());
    int bf16 = 0, f32 = 0, models = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *c = json_array_get(checks, i);
        const char *op = json_string_value(json_object_get(c, "op")), *dt = json_string_value(json_object_get(c, "dtype"));
        cr_assert(op && dt && json_string_value(json_object_get(c, "shape")), "row %zu", i);
        cr_expect_eq(json_object_get(c, "pass"), json_true(), "row %zu (%s)", i, op);
        if (!strcmp(op, "model")) {
            models++;
            cr_expect(num(c, "min_cosine") >= 0.999 && num(c, "argmax_agreement") >= 0.95 && num(c, "rel_err") <= 3e-2);
        } else {
            cr_expect(num(c, "nmse") <= num(c, "bound"), "row %zu (%s)", i, op);
            bf16 += !strcmp(dt, "bf16");
            f32 += !strcmp(dt, "f32");
        }
    }
    cr_expect(bf16 > 0 && f32 > 0 && models == 1, "bf16 %d, f32 %d, model rows %d", bf16, f32, models);
    json_decref(doc);
}
