/* Text on the command line: `rlx tokenize` (ids out, one line per --text, nothing else on
 * stdout; --decode back), `rlx run --prompt` and `rlx embed --text` on the tokenizer fixtures
 * (tests/fixtures/tokenizer/llama_bpe and bert_wordpiece: tokenizer.json next to a tiny random
 * checkpoint of the same vocabulary), and the error a directory without tokenizer.json gets. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static char out_text[1 << 20], err_text[1 << 16];

static int rlx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int rlx(const char *fmt, ...) {
    char args[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    int rc = rlxt_run_cli(NULL, args, out_text, sizeof out_text, err_text, sizeof err_text);
    cr_assert_neq(rc, -2, "RLX_CLI is not set (run through ctest)");
    return rc;
}

static const char *fx(const char *rel) {
    static char buf[4][1200];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/tokenizer/%s", rlxt_fixtures_dir(), rel);
    return buf[k];
}

/* The expected ids of corpus line i as "1,2,3". */
static void expected_line(const char *name, size_t line, char *out, size_t cap) {
    char path[1200];
    snprintf(path, sizeof path, "%s/tokenizer/expected/%s.json", rlxt_fixtures_dir(), name);
    json_error_t err;
    json_t *j = json_load_file(path, JSON_ALLOW_NUL, &err);
    cr_assert(j, "%s: %s", path, err.text);
    json_t *ids = json_array_get(json_object_get(j, "ids"), line);
    size_t w = 0;
    out[0] = '\0';
    for (size_t k = 0; k < json_array_size(ids); k++)
        w += (size_t)snprintf(out + w, cap - w, "%s%lld", k ? "," : "",
                              (long long)json_integer_value(json_array_get(ids, k)));
    json_decref(j);
}

Test(tokenizer_cli, tokenize_prints_one_line_of_ids_per_text) {
    /* corpus lines 0 and 1 (C code): exactly what tokenizers gives, and nothing else */
    char want0[4096], want1[4096], want[8300];
    expected_line("llama_bpe", 0, want0, sizeof want0);
    expected_line("llama_bpe", 1, want1, sizeof want1);
    snprintf(want, sizeof want, "%s\n%s\n", want0, want1);
    cr_assert_eq(
        rlx("tokenize --model %s --text 'int main(int argc, char **argv) {' --text '    return 0;'", fx("llama_bpe")),
        0, "%s", err_text);
    cr_expect_str_eq(out_text, want);
    cr_expect_str_eq(err_text, "");
    /* the ids go back through --decode, and into --tokens as they are */
    cr_assert_eq(rlx("tokenize --model %s --decode %s --decode %s", fx("llama_bpe"), want0, want1), 0, "%s", err_text);
    cr_expect_str_eq(out_text, "<|begin_of_text|>int main(int argc, char **argv) {\n<|begin_of_text|>    return 0;\n");
    cr_assert_eq(rlx("tokenize --model %s --decode %s --skip-special", fx("llama_bpe"), want1), 0, "%s", err_text);
    cr_expect_str_eq(out_text, "    return 0;\n");
}

Test(tokenizer_cli, tokenize_options) {
    /* --no-special drops the BOS the template adds */
    char want1[4096], want[4200];
    expected_line("llama_bpe", 1, want1, sizeof want1);
    snprintf(want, sizeof want, "%s\n", strchr(want1, ',') + 1);
    cr_assert_eq(rlx("tokenize --model %s --text '    return 0;' --no-special", fx("llama_bpe")), 0, "%s", err_text);
    cr_expect_str_eq(out_text, want);
    /* a tokenizer.json file works as --model too; --max-length keeps [CLS] ... [SEP] */
    cr_assert_eq(rlx("tokenize --model %s --text 'a b c d e f g' --max-length 4", fx("bert_wordpiece/tokenizer.json")),
                 0, "%s", err_text);
    int n = 1;
    for (const char *c = out_text; *c; c++)
        n += *c == ',';
    cr_expect_eq(n, 4, "%s", out_text);
    cr_expect(!strncmp(out_text, "2,", 2) && strstr(out_text, ",3\n"), "%s", out_text);
    /* invalid UTF-8: an error naming the offset, or U+FFFD on request */
    cr_expect_eq(rlx("tokenize --model %s --text \"$(printf 'ok\\377')\"", fx("llama_bpe")), 2);
    cr_expect(strstr(err_text, "offset 2"), "%s", err_text);
    cr_expect_str_eq(out_text, "");
    cr_expect_eq(rlx("tokenize --model %s --text \"$(printf 'ok\\377')\" --replace-invalid", fx("llama_bpe")), 0, "%s",
                 err_text);
    cr_expect_str_eq(out_text, "0,333,177,129,127\n");
}

Test(tokenizer_cli, usage_and_model_errors) {
    cr_expect_eq(rlx("tokenize --text hi"), 2);
    cr_expect(strstr(err_text, "--model"), "%s", err_text);
    cr_expect_eq(rlx("tokenize --model %s", fx("llama_bpe")), 2);
    cr_expect_eq(rlx("tokenize --model %s --text a --decode 1", fx("llama_bpe")), 2);
    cr_expect_eq(rlx("tokenize --model %s --decode 1,x", fx("llama_bpe")), 2);
    cr_expect(strstr(err_text, "--decode:") && !strstr(err_text, "--tokens"), "a bad list names --decode: %s", err_text);
    cr_expect_eq(rlx("tokenize --model %s --decode ''", fx("llama_bpe")), 2);
    cr_expect(strstr(err_text, "--decode") && !strstr(err_text, "--tokens"), "%s", err_text);
    cr_expect_eq(rlx("tokenize --model %s --decode 1,99999999999", fx("llama_bpe")), 2);
    cr_expect(strstr(err_text, "--decode:") && strstr(err_text, "too large"), "%s", err_text);
    cr_expect_eq(rlx("tokenize --model %s --decode 1,999999", fx("llama_bpe")), 2);
    cr_expect(strstr(err_text, "999999"), "%s", err_text);
    cr_expect_eq(rlx("tokenize --model %s --text a --max-length 0", fx("llama_bpe")), 2);
    cr_expect_eq(rlx("tokenize --model %s --text a --frob", fx("llama_bpe")), 2);
    /* a model directory without tokenizer.json: every text command says so, exit 1 */
    char dir[1200];
    snprintf(dir, sizeof dir, "%s/llama/gqa_tied_f32", rlxt_fixtures_dir());
    const char *cmds[] = {"tokenize --model %s --text hi", "run --model %s --prompt hi --device cpu",
                          "generate --model %s --prompt hi --max-new-tokens 2 --device cpu"};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        cr_expect_eq(rlx(cmds[i], dir), 1, "%s", cmds[i]);
        cr_expect(strstr(err_text, "tokenizer.json") && strstr(err_text, "missing"), "%s: %s", cmds[i], err_text);
        cr_expect_str_eq(out_text, "");
    }
    snprintf(dir, sizeof dir, "%s/bert/bert_token_types_f32", rlxt_fixtures_dir());
    cr_expect_eq(rlx("embed --model %s --text hi --device cpu", dir), 1);
    cr_expect(strstr(err_text, "tokenizer.json") && strstr(err_text, "missing"), "%s", err_text);
}

/* The "sequence ..." and "id N logit X" parts of `rlx run`'s output (the header has a time). */
static void top_k_part(const char *text, char *out, size_t cap) {
    size_t w = 0;
    char line[1024];
    for (const char *p = text; p && *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        snprintf(line, sizeof line, "%.*s", (int)len, p);
        if (!strncmp(line, "sequence", 8) || strstr(line, " id ")) {
            char *q = strstr(line, "  '"); /* the decoded text --prompt adds */
            if (q) *q = '\0';
            w += (size_t)snprintf(out + w, cap - w, "%s\n", line);
        }
        p = nl ? nl + 1 : NULL;
    }
}

Test(tokenizer_cli, run_prompt_equals_run_tokens) {
    char ids0[4096], ids1[4096], a[1 << 14], b[1 << 14];
    expected_line("llama_bpe", 0, ids0, sizeof ids0);
    expected_line("llama_bpe", 1, ids1, sizeof ids1);
    cr_assert_eq(rlx("run --model %s --device cpu --prompt 'int main(int argc, char **argv) {' --tokens %s --prompt '  "
                     "  return 0;'",
                     fx("llama_bpe"), ids1),
                 0, "%s", err_text);
    cr_expect(strstr(out_text, "3 sequences"), "%s", out_text);
    cr_expect(strstr(out_text, "  '"), "no decoded text in: %s", out_text);
    top_k_part(out_text, a, sizeof a);
    cr_assert_eq(
        rlx("run --model %s --device cpu --tokens %s --tokens %s --tokens %s", fx("llama_bpe"), ids0, ids1, ids1), 0,
        "%s", err_text);
    top_k_part(out_text, b, sizeof b);
    cr_expect_str_eq(a, b);
    /* a prompt longer than max_position_embeddings (2048): refused, or cut with --truncate */
    const char *long_text = "\"$(yes word | head -n 2500 | tr '\\n' ' ')\"";
    cr_expect_eq(rlx("run --model %s --device cpu --prompt %s", fx("llama_bpe"), long_text), 2);
    cr_expect(strstr(err_text, "--truncate"), "%s", err_text);
    cr_expect_eq(rlx("run --model %s --device cpu --top-k 1 --truncate --prompt %s", fx("llama_bpe"), long_text), 0,
                 "%s", err_text);
    cr_expect(strstr(out_text, "(2048 tokens)"), "%s", out_text);
}

Test(tokenizer_cli, embed_text_equals_embed_tokens) {
    char dir[1200];
    char *tmp = rlxt_tmpdir();
    snprintf(dir, sizeof dir, "%s", fx("bert_wordpiece"));
    cr_assert_eq(rlx("tokenize --model %s --text 'Hello world!' --text '中文 text, ok?'", dir), 0, "%s", err_text);
    char ids[2][4096];
    cr_assert_eq(sscanf(out_text, "%4095s\n%4095s", ids[0], ids[1]), 2, "%s", out_text);
    cr_assert_eq(
        rlx("embed --model %s --device cpu --text 'Hello world!' --text '中文 text, ok?' --out %s/a.npy", dir, tmp), 0,
        "%s", err_text);
    cr_assert_eq(rlx("embed --model %s --device cpu --tokens %s --tokens %s --out %s/b.npy", dir, ids[0], ids[1], tmp),
                 0, "%s", err_text);
    char pa[1300], pb[1300];
    snprintf(pa, sizeof pa, "%s/a.npy", tmp);
    snprintf(pb, sizeof pb, "%s/b.npy", tmp);
    static char fa[1 << 16], fb[1 << 16];
    rlxt_slurp(pa, fa, sizeof fa);
    rlxt_slurp(pb, fb, sizeof fb);
    FILE *f = fopen(pa, "rb");
    cr_assert(f);
    fseek(f, 0, SEEK_END);
    long na = ftell(f);
    fclose(f);
    cr_expect_gt(na, 128);
    cr_expect_eq(memcmp(fa, fb, (size_t)na), 0, "embed --text and --tokens wrote different embeddings");
    /* over max_position_embeddings (128): refused, or cut with --truncate keeping [CLS] ... [SEP] */
    const char *long_text = "\"$(yes word | head -n 300 | tr '\\n' ' ')\"";
    cr_expect_eq(rlx("embed --model %s --device cpu --text %s", dir, long_text), 2);
    cr_expect_eq(rlx("embed --model %s --device cpu --truncate --text %s", dir, long_text), 0, "%s", err_text);
    cr_expect(strstr(out_text, "(128 tokens)"), "%s", out_text);
    rlxt_rmtree(tmp);
    free(tmp);
}

/* ---- rlx generate --prompt (tests/fixtures/tokenizer/llama_bpe/generate_text.json, written by
 * gen_generate_text_fixtures.py: transformers' greedy generate and tokenizer.decode) ---------------- */

/* text as one single-quoted shell word */
static void shell_quote(const char *text, char *out, size_t cap) {
    size_t w = 0;
    out[w++] = '\'';
    for (const char *c = text; *c && w + 6 < cap; c++)
        if (*c == '\'') memcpy(out + w, "'\\''", 4), w += 4;
        else out[w++] = *c;
    out[w++] = '\'';
    out[w] = '\0';
}

static void ids_text(json_t *a, char *out, size_t cap) {
    size_t w = 0;
    out[0] = '\0';
    for (size_t k = 0; k < json_array_size(a); k++)
        w += (size_t)snprintf(out + w, cap - w, "%s%lld", k ? "," : "", (long long)json_integer_value(json_array_get(a, k)));
}

/* What `rlx generate` prints for a sequence's text: one line, control characters escaped. */
static void one_line(const char *text, char *out, size_t cap) {
    size_t w = 0;
    for (const unsigned char *c = (const unsigned char *)text; *c && w + 5 < cap; c++)
        if (*c == '\n') w += (size_t)snprintf(out + w, cap - w, "\\n");
        else if (*c == '\t') w += (size_t)snprintf(out + w, cap - w, "\\t");
        else if (*c == '\r') w += (size_t)snprintf(out + w, cap - w, "\\r");
        else if (*c < 0x20 || *c == 0x7f) w += (size_t)snprintf(out + w, cap - w, "\\x%02x", *c);
        else out[w++] = (char)*c;
    out[w] = '\0';
}

static json_t *generate_text_fixture(void) {
    char path[1200];
    snprintf(path, sizeof path, "%s/tokenizer/llama_bpe/generate_text.json", rlxt_fixtures_dir());
    json_error_t err;
    json_t *j = json_load_file(path, 0, &err);
    cr_assert(j, "%s: %s", path, err.text);
    return j;
}

/* --out's file (the caller decrefs it); *seqs its "sequences" */
static json_t *load_out(const char *path, json_t **seqs) {
    json_error_t err;
    json_t *j = json_load_file(path, 0, &err);
    cr_assert(j, "%s: %s", path, err.text);
    *seqs = json_object_get(j, "sequences");
    return j;
}

Test(tokenizer_cli, generate_prompt_equals_tokens_and_transformers) {
    json_t *fx_doc = generate_text_fixture(), *cases = json_object_get(fx_doc, "cases");
    const int64_t max_new = json_integer_value(json_object_get(fx_doc, "max_new_tokens"));
    size_t n = 0; /* the cases without an extra stop token, in one batch */
    while (n < json_array_size(cases) && !json_object_get(json_array_get(cases, n), "stop_tokens")) n++;
    cr_assert_geq(n, 3);
    static char prompts[1 << 13], tokens[1 << 14], q[1024], ids[8][4096], want_line[4096], args[1 << 15];
    size_t wp = 0, wt = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *c = json_array_get(cases, i);
        const char *text = json_string_value(json_object_get(c, "text"));
        shell_quote(text, q, sizeof q);
        /* rlx tokenize gives transformers' ids for the prompt, and they go into --tokens as they are */
        cr_assert_eq(rlx("tokenize --model %s --text %s", fx("llama_bpe"), q), 0, "%s", err_text);
        ids_text(json_object_get(c, "ids"), ids[i], sizeof ids[i]);
        char want[4200];
        snprintf(want, sizeof want, "%s\n", ids[i]);
        cr_expect_str_eq(out_text, want, "tokenize %s", q);
        wp += (size_t)snprintf(prompts + wp, sizeof prompts - wp, " --prompt %s", q);
        wt += (size_t)snprintf(tokens + wt, sizeof tokens - wt, " --tokens %s", ids[i]);
    }
    char *tmp = rlxt_tmpdir();
    snprintf(args, sizeof args, "generate --model %s --device cpu --max-new-tokens %lld --out %s/p.json%s", fx("llama_bpe"),
             (long long)max_new, tmp, prompts);
    cr_assert_eq(rlx("%s", args), 0, "%s", err_text);
    cr_expect_str_eq(err_text, "");
    /* stdout: per sequence the ids line, then the text on one line in quotes */
    for (size_t i = 0; i < n; i++) {
        json_t *c = json_array_get(cases, i);
        char tk[4096], line[8300];
        ids_text(json_object_get(c, "tokens"), tk, sizeof tk);
        one_line(json_string_value(json_object_get(c, "decode_skip_special")), want_line, sizeof want_line);
        snprintf(line, sizeof line, "\n  %s\n  '%s'\n", tk, want_line);
        cr_expect(strstr(out_text, line), "sequence %zu: no\n%s\nin\n%s", i, line, out_text);
    }
    snprintf(args, sizeof args, "generate --model %s --device cpu --max-new-tokens %lld --out %s/t.json%s", fx("llama_bpe"),
             (long long)max_new, tmp, tokens);
    cr_assert_eq(rlx("%s", args), 0, "%s", err_text);
    char pp[1300], pt[1300];
    snprintf(pp, sizeof pp, "%s/p.json", tmp);
    snprintf(pt, sizeof pt, "%s/t.json", tmp);
    json_t *sp, *st, *jp = load_out(pp, &sp), *jt = load_out(pt, &st);
    cr_assert(json_array_size(sp) == n && json_array_size(st) == n);
    for (size_t i = 0; i < n; i++) {
        json_t *c = json_array_get(cases, i), *a = json_array_get(sp, i), *b = json_array_get(st, i);
        /* --prompt's ids are transformers' (and tokenize's); --prompt and --tokens generate the same */
        cr_expect(json_equal(json_object_get(a, "prompt"), json_object_get(c, "ids")), "sequence %zu: prompt ids", i);
        cr_expect(json_equal(json_object_get(a, "prompt"), json_object_get(b, "prompt")), "sequence %zu", i);
        cr_expect(json_equal(json_object_get(a, "tokens"), json_object_get(b, "tokens")), "sequence %zu: --prompt and --tokens differ", i);
        cr_expect(json_equal(json_object_get(a, "tokens"), json_object_get(c, "tokens")), "sequence %zu: not transformers' greedy tokens", i);
        cr_expect_str_eq(json_string_value(json_object_get(a, "finish")), json_string_value(json_object_get(c, "finish")));
        /* the text: tokenizer.decode(tokens, skip_special_tokens=True), with or without --prompt */
        const char *want = json_string_value(json_object_get(c, "decode_skip_special"));
        cr_expect_str_eq(json_string_value(json_object_get(a, "text")), want, "sequence %zu", i);
        cr_expect_str_eq(json_string_value(json_object_get(b, "text")), want, "sequence %zu", i);
    }
    json_decref(jp);
    json_decref(jt);
    /* an end token given with --stop-token: transformers stopped on it too */
    for (size_t i = n; i < json_array_size(cases); i++) {
        json_t *c = json_array_get(cases, i);
        shell_quote(json_string_value(json_object_get(c, "text")), q, sizeof q);
        cr_assert_eq(rlx("generate --model %s --device cpu --max-new-tokens %lld --prompt %s --stop-token %lld --out %s/s.json",
                         fx("llama_bpe"), (long long)max_new, q,
                         (long long)json_integer_value(json_array_get(json_object_get(c, "stop_tokens"), 0)), tmp),
                     0, "%s", err_text);
        snprintf(pp, sizeof pp, "%s/s.json", tmp);
        json_t *ss, *js = load_out(pp, &ss), *s0 = json_array_get(ss, 0);
        cr_expect(json_equal(json_object_get(s0, "tokens"), json_object_get(c, "tokens")), "stop case %zu", i);
        cr_expect_str_eq(json_string_value(json_object_get(s0, "finish")), "stop");
        cr_expect_str_eq(json_string_value(json_object_get(s0, "text")), json_string_value(json_object_get(c, "decode_skip_special")));
        json_decref(js);
    }
    /* usage: --prompt is listed, and needs a value */
    cr_expect_eq(rlx("generate --help"), 0);
    cr_expect(strstr(out_text, "--prompt TEXT"), "%s", out_text);
    cr_expect_eq(rlx("generate --model %s --max-new-tokens 2 --prompt", fx("llama_bpe")), 2);
    cr_expect(strstr(err_text, "--prompt"), "%s", err_text);
    json_decref(fx_doc);
    rlxt_rmtree(tmp);
    free(tmp);
}
