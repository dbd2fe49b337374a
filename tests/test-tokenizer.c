/* The tokenizer against Hugging Face `tokenizers`, token for token, on the fixture corpus
 * (tests/fixtures/tokenizer/, written by gen_tokenizer_fixtures.py): a byte-level BPE with the
 * Llama 3 split pattern and a WordPiece trained by `tokenizers`, two real tokenizers shipped in
 * PyPI packages (all-MiniLM-L6-v2's BERT WordPiece, the anthropic SDK's byte-level BPE), and
 * small tokenizers for the remaining components. Every line's ids (with and without the
 * post-processor's specials), both decodes and truncation on both sides must be equal.
 * Also: errors (missing file, unsupported components, invalid UTF-8), lookups, threads. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rlx/tokenizer.h"
#include "testutil.h"

static json_t *load_json(const char *rel) {
    char path[1200];
    snprintf(path, sizeof path, "%s/tokenizer/%s", rlxt_fixtures_dir(), rel);
    json_error_t err;
    json_t *j = json_load_file(path, JSON_ALLOW_NUL, &err);
    cr_assert(j, "%s: %s (line %d)", path, err.text, err.line);
    return j;
}

typedef struct corpus {
    json_t *root;
    const char **texts;
    size_t *bytes;
    int64_t n;
} corpus;

static corpus load_corpus(int64_t limit) {
    corpus c = {0};
    c.root = load_json("corpus.json");
    c.n = (int64_t)json_array_size(c.root);
    if (limit && c.n > limit) c.n = limit;
    c.texts = malloc((size_t)c.n * sizeof *c.texts);
    c.bytes = malloc((size_t)c.n * sizeof *c.bytes);
    for (int64_t i = 0; i < c.n; i++) {
        json_t *s = json_array_get(c.root, (size_t)i);
        c.texts[i] = json_string_value(s);
        c.bytes[i] = json_string_length(s);
    }
    return c;
}

static void free_corpus(corpus *c) {
    free(c->texts);
    free(c->bytes);
    json_decref(c->root);
}

static rlx_tokenizer *open_fixture(const char *rel) {
    char path[1200];
    snprintf(path, sizeof path, "%s/tokenizer/%s", rlxt_fixtures_dir(), rel);
    rlx_tokenizer *t = NULL;
    cr_assert_eq(rlx_tokenizer_open(path, &t), RLX_OK, "%s: %s", path, rlx_last_error());
    return t;
}

/* Compares packed ids with expected[i] (a JSON array of arrays); returns the mismatching lines
 * and prints the first few. */
static int compare_ids(const char *what, const corpus *c, const int32_t *ids, const int64_t *lens, json_t *expected,
                       int64_t n_lines) {
    int bad = 0;
    int64_t o = 0;
    for (int64_t i = 0; i < n_lines; i++) {
        json_t *e = json_array_get(expected, (size_t)i);
        int64_t ne = (int64_t)json_array_size(e);
        int64_t k = 0;
        while (k < ne && k < lens[i] && ids[o + k] == (int32_t)json_integer_value(json_array_get(e, (size_t)k)))
            k++;
        if (k != ne || k != lens[i]) {
            if (bad < 5)
                fprintf(
                    stderr,
                    "%s: line %lld %.60s...: %lld ids, expected %lld; first difference at %lld (got %d, want %lld)\n",
                    what, (long long)i, c->texts[i], (long long)lens[i], (long long)ne, (long long)k,
                    k < lens[i] ? ids[o + k] : -1,
                    k < ne ? (long long)json_integer_value(json_array_get(e, (size_t)k)) : -1LL);
            bad++;
        }
        o += lens[i];
    }
    return bad;
}

static void check_tokenizer(const char *rel, const char *name) {
    json_t *exp = load_json(name);
    json_t *ids_e = json_object_get(exp, "ids");
    int64_t lines = (int64_t)json_integer_value(json_object_get(exp, "lines"));
    corpus c = load_corpus(lines);
    cr_assert_eq(c.n, lines, "%s: %lld lines expected, the corpus has %lld", name, (long long)lines, (long long)c.n);
    rlx_tokenizer *t = open_fixture(rel);

    /* ids with the specials, on every core */
    int32_t *ids;
    int64_t *lens = malloc((size_t)c.n * sizeof *lens);
    cr_assert_eq(rlx_tokenizer_encode_batch(t, c.texts, c.bytes, c.n, NULL, &ids, lens), RLX_OK, "%s: %s", name,
                 rlx_last_error());
    int bad = compare_ids(name, &c, ids, lens, ids_e, c.n);
    cr_expect_eq(bad, 0, "%s: %d of %lld lines differ from tokenizers", name, bad, (long long)c.n);

    /* decodes, with and without the special tokens */
    json_t *dec = json_object_get(exp, "decode"), *dec_skip = json_object_get(exp, "decode_skip_special");
    int bad_dec = 0, bad_skip = 0;
    int64_t o = 0;
    for (int64_t i = 0; i < c.n; i++) {
        json_t *e = json_array_get(ids_e, (size_t)i);
        size_t ne = json_array_size(e);
        int32_t *ei = malloc((ne ? ne : 1) * sizeof *ei);
        for (size_t k = 0; k < ne; k++)
            ei[k] = (int32_t)json_integer_value(json_array_get(e, k));
        for (int skip = 0; skip < 2; skip++) {
            char *text;
            size_t nt;
            cr_assert_eq(rlx_tokenizer_decode(t, ei, (int64_t)ne, skip, &text, &nt), RLX_OK, "%s: %s", name,
                         rlx_last_error());
            json_t *want = json_array_get(skip ? dec_skip : dec, (size_t)i);
            const char *w;
            size_t nw;
            if (json_is_string(want))
                w = json_string_value(want), nw = json_string_length(want);
            else if (!skip)
                w = c.texts[i], nw = c.bytes[i];
            else {
                json_t *d0 = json_array_get(dec, (size_t)i);
                if (json_is_string(d0))
                    w = json_string_value(d0), nw = json_string_length(d0);
                else
                    w = c.texts[i], nw = c.bytes[i];
            }
            if (nt != nw || memcmp(text, w, nw)) {
                if ((skip ? bad_skip : bad_dec) < 3)
                    fprintf(stderr, "%s: decode%s of line %lld: got '%.80s' want '%.80s'\n", name,
                            skip ? " (skip special)" : "", (long long)i, text, w);
                if (skip)
                    bad_skip++;
                else
                    bad_dec++;
            }
            rlx_free(text);
        }
        free(ei);
        o += lens[i];
    }
    cr_expect_eq(bad_dec, 0, "%s: %d decodes differ", name, bad_dec);
    cr_expect_eq(bad_skip, 0, "%s: %d skip-special decodes differ", name, bad_skip);
    rlx_free(ids);

    /* without the post-processor's specials, one thread */
    json_t *raw = json_object_get(exp, "ids_no_special");
    int64_t n_raw = (int64_t)json_array_size(raw);
    rlx_tokenizer_encode_params p = rlx_tokenizer_encode_default_params();
    p.add_special_tokens = 0;
    p.threads = 1;
    cr_assert_eq(rlx_tokenizer_encode_batch(t, c.texts, c.bytes, n_raw, &p, &ids, lens), RLX_OK, "%s",
                 rlx_last_error());
    bad = compare_ids(name, &c, ids, lens, raw, n_raw);
    cr_expect_eq(bad, 0, "%s: %d lines differ without specials", name, bad);
    rlx_free(ids);

    /* truncation: right and left, at the generator's max_length */
    json_t *tr = json_object_get(exp, "truncated");
    p = rlx_tokenizer_encode_default_params();
    p.max_length = json_integer_value(json_object_get(tr, "max_length"));
    for (int left = 0; left < 2; left++) {
        p.truncate_left = left;
        json_t *cases = json_object_get(tr, left ? "left" : "right");
        for (size_t k = 0; k < json_array_size(cases); k++) {
            json_t *cs = json_array_get(cases, k);
            int64_t line = json_integer_value(json_array_get(cs, 0));
            json_t *want = json_array_get(cs, 1);
            int64_t n;
            cr_assert_eq(rlx_tokenizer_encode(t, c.texts[line], c.bytes[line], &p, &ids, &n), RLX_OK, "%s",
                         rlx_last_error());
            cr_expect_eq(n, (int64_t)json_array_size(want), "%s: line %lld truncated %s: %lld ids", name,
                         (long long)line, left ? "left" : "right", (long long)n);
            for (int64_t q = 0; q < n && q < (int64_t)json_array_size(want); q++)
                if (ids[q] != json_integer_value(json_array_get(want, (size_t)q))) {
                    cr_expect(0, "%s: line %lld truncated %s: id %lld differs", name, (long long)line,
                              left ? "left" : "right", (long long)q);
                    break;
                }
            rlx_free(ids);
        }
    }
    free(lens);
    rlx_tokenizer_destroy(t);
    free_corpus(&c);
    json_decref(exp);
}

Test(tokenizer_hf, llama_bpe) { check_tokenizer("llama_bpe", "expected/llama_bpe.json"); }
Test(tokenizer_hf, bert_wordpiece) { check_tokenizer("bert_wordpiece", "expected/bert_wordpiece.json"); }
Test(tokenizer_hf, minilm_l6_wordpiece) { check_tokenizer("minilm_l6_wordpiece", "expected/minilm_l6_wordpiece.json"); }
Test(tokenizer_hf, anthropic_bpe) { check_tokenizer("anthropic_bpe/tokenizer.json", "expected/anthropic_bpe.json"); }
Test(tokenizer_hf, gpt2_prefix_space) {
    check_tokenizer("components/gpt2_prefix_space.json", "expected/gpt2_prefix_space.json");
}
Test(tokenizer_hf, smollm_digits) { check_tokenizer("components/smollm_digits.json", "expected/smollm_digits.json"); }
Test(tokenizer_hf, qwen_nfc) { check_tokenizer("components/qwen_nfc.json", "expected/qwen_nfc.json"); }
Test(tokenizer_hf, roberta_nfkc_lower) {
    check_tokenizer("components/roberta_nfkc_lower.json", "expected/roberta_nfkc_lower.json");
}
Test(tokenizer_hf, split_string_nfkd) {
    check_tokenizer("components/split_string_nfkd.json", "expected/split_string_nfkd.json");
}
Test(tokenizer_hf, bpe_suffix_unk) {
    check_tokenizer("components/bpe_suffix_unk.json", "expected/bpe_suffix_unk.json");
}
Test(tokenizer_hf, wordpiece_cased) {
    check_tokenizer("components/wordpiece_cased.json", "expected/wordpiece_cased.json");
}
Test(tokenizer_hf, wordpiece_lower_keep_accents) {
    check_tokenizer("components/wordpiece_lower_keep_accents.json", "expected/wordpiece_lower_keep_accents.json");
}

/* ---- errors, lookups, invalid UTF-8 --------------------------------------------------------- */

static rlx_status open_text(const char *json, rlx_tokenizer **t) {
    return rlx_tokenizer_open_json(json, strlen(json), NULL, "test.json", t);
}

Test(tokenizer, missing_tokenizer_json_is_named) {
    char dir[1200];
    snprintf(dir, sizeof dir, "%s/llama/gqa_tied_f32", rlxt_fixtures_dir());
    rlx_tokenizer *t = (rlx_tokenizer *)1;
    cr_assert_eq(rlx_tokenizer_open(dir, &t), RLX_ERR_IO);
    cr_assert_null(t);
    cr_assert(strstr(rlx_last_error(), "tokenizer.json") && strstr(rlx_last_error(), "missing"), "%s",
              rlx_last_error());
    cr_assert_eq(rlx_tokenizer_open("/nonexistent/dir", &t), RLX_ERR_IO);
    cr_assert(strstr(rlx_last_error(), "/nonexistent/dir"), "%s", rlx_last_error());
}

Test(tokenizer, unsupported_components_are_named) {
    static const struct {
        const char *json, *name;
    } cases[] = {
        {"{\"model\":{\"type\":\"Unigram\",\"vocab\":[[\"a\",0.0]]}}", "Unigram"},
        {"{\"model\":{\"vocab\":[[\"a\",0.0]]}}", "Unigram"},
        {"{\"model\":{\"type\":\"WordLevel\",\"vocab\":{\"a\":0},\"unk_token\":\"a\"}}", "WordLevel"},
        {"{\"normalizer\":{\"type\":\"Precompiled\",\"precompiled_charsmap\":\"\"},\"model\":{\"type\":\"BPE\","
         "\"vocab\":{\"a\":0},\"merges\":[]}}",
         "Precompiled"},
        {"{\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFC\"},{\"type\":\"Replace\"}]},"
         "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}",
         "Replace"},
        {"{\"pre_tokenizer\":{\"type\":\"Metaspace\"},\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}",
         "Metaspace"},
        {"{\"decoder\":{\"type\":\"Fuse\"},\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}", "Fuse"},
        {"{\"post_processor\":{\"type\":\"Whatever\"},\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}",
         "Whatever"},
        {"{\"model\":{\"type\":\"BPE\",\"dropout\":0.1,\"vocab\":{\"a\":0},\"merges\":[]}}", "dropout"},
        {"{\"version\":\"2.0\",\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}", "2.0"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rlx_tokenizer *t = (rlx_tokenizer *)1;
        cr_expect_eq(open_text(cases[i].json, &t), RLX_ERR_UNSUPPORTED, "case %zu: %s", i, rlx_last_error());
        cr_expect_null(t);
        cr_expect(strstr(rlx_last_error(), cases[i].name), "case %zu: '%s' does not name %s", i, rlx_last_error(),
                  cases[i].name);
    }
}

Test(tokenizer, malformed_files_are_format_errors) {
    static const struct {
        const char *json, *what;
    } cases[] = {
        {"{\"model\":", "not valid JSON"},
        {"[]", "top level"},
        {"{}", "model"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"a c\"]}}",
         "'c' is not in the vocabulary"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"a b\"]}}", "merged token 'ab'"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":-3},\"merges\":[]}}", "model.vocab['a']"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[3]}}", "merges[0]"},
        {"{\"model\":{\"type\":\"WordPiece\",\"vocab\":{\"a\":0},\"max_input_chars_per_word\":\"x\"}}",
         "max_input_chars_per_word"},
        {"{\"added_tokens\":[{\"id\":0}],\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}", "content"},
        {"{\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"X\",\"type_id\":"
         "0}}],\"special_tokens\":{}},\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}",
         "no ids for 'X'"},
        {"{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(\"},\"behavior\":\"Isolated\",\"invert\":"
         "false},\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}",
         "does not compile"},
        {"{\"post_processor\":{\"type\":\"BertProcessing\",\"sep\":[\"[SEP]\",5],\"cls\":[\"a\",0]},\"model\":{\"type\":\"WordPiece\",\"vocab\":{\"a\":0}}}",
         "special token id 5 is outside the vocabulary"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rlx_tokenizer *t = NULL;
        rlx_status s = open_text(cases[i].json, &t);
        cr_expect(s == RLX_ERR_FORMAT || s == RLX_ERR_UNSUPPORTED, "case %zu: %s (%s)", i, rlx_status_name(s),
                  rlx_last_error());
        cr_expect_null(t);
        cr_expect(strstr(rlx_last_error(), cases[i].what), "case %zu: '%s' does not say %s", i, rlx_last_error(),
                  cases[i].what);
        cr_expect(strstr(rlx_last_error(), "test.json"), "case %zu: '%s' does not name the file", i, rlx_last_error());
    }
}

static void expect_ids(rlx_tokenizer *t, const char *text, size_t n, const rlx_tokenizer_encode_params *p,
                       const int32_t *want, int64_t n_want) {
    int32_t *ids;
    int64_t k;
    cr_assert_eq(rlx_tokenizer_encode(t, text, n, p, &ids, &k), RLX_OK, "%s", rlx_last_error());
    cr_expect_eq(k, n_want, "%lld ids, want %lld", (long long)k, (long long)n_want);
    for (int64_t i = 0; i < k && i < n_want; i++)
        cr_expect_eq(ids[i], want[i], "id %lld: %d, want %d", (long long)i, ids[i], want[i]);
    rlx_free(ids);
}

Test(tokenizer, invalid_utf8_error_or_replacement) {
    rlx_tokenizer *t = open_fixture("llama_bpe");
    int32_t *ids = (int32_t *)1;
    int64_t n;
    cr_assert_eq(rlx_tokenizer_encode(t, "ok\xff", 3, NULL, &ids, &n), RLX_ERR_INVALID_ARGUMENT);
    cr_assert_null(ids);
    cr_assert(strstr(rlx_last_error(), "not valid UTF-8") && strstr(rlx_last_error(), "offset 2"), "%s",
              rlx_last_error());
    /* in a batch, the message names the text */
    const char *texts[3] = {"fine", "also fine", "bad \xc0\xaf"};
    int64_t lens[3];
    cr_assert_eq(rlx_tokenizer_encode_batch(t, texts, NULL, 3, NULL, &ids, lens), RLX_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(rlx_last_error(), "text 2"), "%s", rlx_last_error());
    /* replacement: what Python's bytes.decode("utf-8", "replace") gives, then `tokenizers` */
    rlx_tokenizer_encode_params p = rlx_tokenizer_encode_default_params();
    p.invalid_utf8 = RLX_TOKENIZER_UTF8_REPLACE;
    expect_ids(t, "a\xff\xe4\xb8", 4, &p, (const int32_t[]){0, 70, 177, 129, 127, 177, 129, 127}, 8);
    expect_ids(t, "\xed\xa0\x80x", 4, &p, (const int32_t[]){0, 177, 129, 127, 177, 129, 127, 177, 129, 127, 93}, 11);
    expect_ids(t, "\xc0\xafok", 4, &p, (const int32_t[]){0, 177, 129, 127, 177, 129, 127, 333}, 8);
    expect_ids(t, "caf\xc3", 4, &p, (const int32_t[]){0, 72, 70, 75, 177, 129, 127}, 7);
    /* NUL is a character like any other when the length is given */
    int32_t *a, *b;
    int64_t na, nb;
    cr_assert_eq(rlx_tokenizer_encode(t, "x\0y", 3, NULL, &a, &na), RLX_OK);
    cr_assert_eq(rlx_tokenizer_encode(t, "x", 1, NULL, &b, &nb), RLX_OK);
    cr_expect_gt(na, nb);
    rlx_free(a);
    rlx_free(b);
    rlx_tokenizer_destroy(t);
}

Test(tokenizer, lookups_and_special_tokens) {
    rlx_tokenizer *t = open_fixture("llama_bpe");
    cr_expect_eq(rlx_tokenizer_model_kind(t), RLX_TOKENIZER_BPE);
    cr_expect_eq(rlx_tokenizer_vocab_size(t), 1802);
    cr_expect_eq(rlx_tokenizer_model_max_length(t), 2048);
    cr_expect_eq(rlx_tokenizer_special_id(t, RLX_SPECIAL_BOS), 0);
    cr_expect_eq(rlx_tokenizer_special_id(t, RLX_SPECIAL_EOS), 4);
    cr_expect_eq(rlx_tokenizer_special_id(t, RLX_SPECIAL_CLS), -1);
    cr_expect_eq(rlx_tokenizer_token_to_id(t, "<|eot_id|>"), 4);
    cr_expect_eq(rlx_tokenizer_token_to_id(t, "rlx_added"), 1800);
    cr_expect_eq(rlx_tokenizer_token_to_id(t, "<mask>"), 1801);
    cr_expect_eq(rlx_tokenizer_token_to_id(t, "no such token"), -1);
    cr_expect_str_eq(rlx_tokenizer_id_to_token(t, 4), "<|eot_id|>");
    cr_expect_null(rlx_tokenizer_id_to_token(t, 1802));
    cr_expect_null(rlx_tokenizer_id_to_token(t, -1));
    cr_expect_eq(rlx_tokenizer_is_special(t, 0), 1);
    cr_expect_eq(rlx_tokenizer_is_special(t, 1800), 0); /* rlx_added is not special */
    cr_expect_eq(rlx_tokenizer_is_special(t, 1801), 1);
    cr_expect_eq(rlx_tokenizer_is_special(t, 45), 0);
    /* the empty text is the specials only; the batch of none is an empty, non-NULL array */
    expect_ids(t, "", 0, NULL, (const int32_t[]){0}, 1);
    int32_t *ids = NULL;
    cr_assert_eq(rlx_tokenizer_encode_batch(t, NULL, NULL, 0, NULL, &ids, NULL), RLX_OK, "%s", rlx_last_error());
    cr_expect_not_null(ids);
    rlx_free(ids);
    /* decode: an id out of range is an error naming it and where */
    char *text = (char *)1;
    cr_assert_eq(rlx_tokenizer_decode(t, (const int32_t[]){45, 1802}, 2, 0, &text, NULL), RLX_ERR_TOKEN_RANGE);
    cr_assert_null(text);
    cr_assert(strstr(rlx_last_error(), "1802") && strstr(rlx_last_error(), "position 1"), "%s", rlx_last_error());
    cr_assert_eq(rlx_tokenizer_decode(t, NULL, 0, 0, &text, NULL), RLX_OK);
    cr_expect_str_eq(text, "");
    rlx_free(text);
    rlx_tokenizer_destroy(t);

    t = open_fixture("minilm_l6_wordpiece");
    cr_expect_eq(rlx_tokenizer_model_kind(t), RLX_TOKENIZER_WORDPIECE);
    cr_expect_eq(rlx_tokenizer_vocab_size(t), 30522);
    cr_expect_eq(rlx_tokenizer_model_max_length(t), 512);
    static const struct {
        rlx_special_token w;
        int32_t id;
    } sp[] = {{RLX_SPECIAL_CLS, 101},  {RLX_SPECIAL_SEP, 102}, {RLX_SPECIAL_PAD, 0}, {RLX_SPECIAL_UNK, 100},
              {RLX_SPECIAL_MASK, 103}, {RLX_SPECIAL_BOS, -1},  {RLX_SPECIAL_EOS, -1}};
    for (size_t i = 0; i < sizeof sp / sizeof sp[0]; i++)
        cr_expect_eq(rlx_tokenizer_special_id(t, sp[i].w), sp[i].id, "special %d", (int)sp[i].w);
    rlx_tokenizer_destroy(t);

    /* a normalized added token matches (and decodes as) its normalized form */
    t = open_fixture("bert_wordpiece");
    expect_ids(t, "NewTokenHere x", 14, NULL, (const int32_t[]){2, 2235, 65, 3}, 4);
    cr_expect_str_eq(rlx_tokenizer_id_to_token(t, 2235), "newtokenhere");
    rlx_tokenizer_destroy(t);
}

Test(tokenizer, truncation_parameters) {
    rlx_tokenizer *t = open_fixture("minilm_l6_wordpiece");
    rlx_tokenizer_encode_params p = rlx_tokenizer_encode_default_params();
    int32_t *ids;
    int64_t n;
    char text[6000];
    for (int i = 0; i < 1000; i++)
        memcpy(text + 5 * i, "word ", 5);
    p.max_length = RLX_TOKENIZER_MODEL_MAX_LENGTH; /* 512 from tokenizer_config.json */
    cr_assert_eq(rlx_tokenizer_encode(t, text, 5000, &p, &ids, &n), RLX_OK, "%s", rlx_last_error());
    cr_expect_eq(n, 512);
    cr_expect_eq(ids[0], 101);
    cr_expect_eq(ids[511], 102);
    rlx_free(ids);
    p.max_length = 1; /* [CLS] and [SEP] do not fit */
    cr_assert_eq(rlx_tokenizer_encode(t, text, 5000, &p, &ids, &n), RLX_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(rlx_last_error(), "max_length 1"), "%s", rlx_last_error());
    p.max_length = 2; /* exactly the specials */
    expect_ids(t, text, 5000, &p, (const int32_t[]){101, 102}, 2);
    p.add_special_tokens = 0;
    p.max_length = 1;
    cr_assert_eq(rlx_tokenizer_encode(t, text, 5000, &p, &ids, &n), RLX_OK, "%s", rlx_last_error());
    cr_expect_eq(n, 1);
    rlx_free(ids);
    rlx_tokenizer_destroy(t);
    /* no maximum anywhere: asking for the model's is an error */
    t = open_fixture("anthropic_bpe/tokenizer.json");
    p = rlx_tokenizer_encode_default_params();
    p.max_length = RLX_TOKENIZER_MODEL_MAX_LENGTH;
    cr_assert_eq(rlx_tokenizer_encode(t, "x", 1, &p, &ids, &n), RLX_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(rlx_last_error(), "names no maximum"), "%s", rlx_last_error());
    rlx_tokenizer_destroy(t);
}

Test(tokenizer, threads_give_the_same_ids) {
    corpus c = load_corpus(600);
    rlx_tokenizer *t = open_fixture("bert_wordpiece");
    int32_t *ref, *ids;
    int64_t *lr = malloc((size_t)c.n * sizeof *lr), *l = malloc((size_t)c.n * sizeof *l);
    rlx_tokenizer_encode_params p = rlx_tokenizer_encode_default_params();
    p.threads = 1;
    cr_assert_eq(rlx_tokenizer_encode_batch(t, c.texts, c.bytes, c.n, &p, &ref, lr), RLX_OK);
    int64_t total = 0;
    for (int64_t i = 0; i < c.n; i++)
        total += lr[i];
    for (int th = 2; th <= 7; th += 5) {
        p.threads = th;
        cr_assert_eq(rlx_tokenizer_encode_batch(t, c.texts, c.bytes, c.n, &p, &ids, l), RLX_OK);
        cr_expect_eq(memcmp(l, lr, (size_t)c.n * sizeof *l), 0, "%d threads: lengths differ", th);
        cr_expect_eq(memcmp(ids, ref, (size_t)total * sizeof *ids), 0, "%d threads: ids differ", th);
        rlx_free(ids);
    }
    rlx_free(ref);
    free(lr);
    free(l);
    rlx_tokenizer_destroy(t);
    free_corpus(&c);
}
