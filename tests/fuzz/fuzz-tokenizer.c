/* The tokenizer (include/rlx/tokenizer.h) on hostile bytes. The first input byte picks what is
 * fuzzed, the second the encode options; the rest is the text:
 *   0..5   a fixture tokenizer (tests/fixtures/tokenizer/, loaded once) encodes the text: every
 *          id in the vocabulary, truncation honoured, invalid UTF-8 an error with a message
 *          (or replaced), decode succeeds; for the Llama-3-pattern BPE (no normalizer) decoding
 *          the ids gives the text back byte for byte;
 *   6..255 the rest is a tokenizer.json: opening it succeeds or fails with a message; an opened
 *          one encodes and decodes a fixed sample.
 * Seeds: tests/fuzz/corpus/tokenizer/ (texts from the fixture corpus, component tokenizers). */
#include "rlx/tokenizer.h"
#include "fuzz_util.h"

static const char *const FIXTURES[] = {"llama_bpe",
                                       "bert_wordpiece",
                                       "minilm_l6_wordpiece",
                                       "anthropic_bpe/tokenizer.json",
                                       "components/smollm_digits.json",
                                       "components/bpe_suffix_unk.json"};
#define N_FIXTURES 6

static rlx_tokenizer *fixture(int k) {
    static rlx_tokenizer *toks[N_FIXTURES];
    if (!toks[k]) {
        /* the fixtures sit beside this file's folder: tests/fuzz/ -> tests/fixtures/tokenizer/ */
        char path[2048];
        const char *file = __FILE__, *slash = strrchr(file, '/');
        int dir_len = slash ? (int)(slash - file) : 1;
        snprintf(path, sizeof path, "%.*s/../fixtures/tokenizer/%s", dir_len, slash ? file : ".", FIXTURES[k]);
        if (rlx_tokenizer_open(path, &toks[k]) != RLX_OK) {
            fprintf(stderr, "fuzz-tokenizer: %s\n", rlx_last_error());
            __builtin_trap();
        }
    }
    return toks[k];
}

static int contains(const char *s, size_t n, const char *w) {
    size_t k = strlen(w);
    for (size_t i = 0; i + k <= n; i++)
        if (!memcmp(s + i, w, k)) return 1;
    return 0;
}

static void check_encoding(const rlx_tokenizer *t, const int32_t *ids, int64_t n, int64_t max_length) {
    int64_t v = rlx_tokenizer_vocab_size(t);
    FUZZ_CHECK(n >= 0);
    if (max_length > 0) FUZZ_CHECK(n <= max_length);
    for (int64_t i = 0; i < n; i++)
        FUZZ_CHECK(ids[i] >= 0 && ids[i] < v);
}

static void fuzz_encode(int k, uint8_t flags, const char *text, size_t n) {
    rlx_tokenizer *t = fixture(k);
    rlx_tokenizer_encode_params p = rlx_tokenizer_encode_default_params();
    p.add_special_tokens = flags & 1;
    p.truncate_left = (flags >> 1) & 1;
    p.invalid_utf8 = (flags >> 2) & 1 ? RLX_TOKENIZER_UTF8_REPLACE : RLX_TOKENIZER_UTF8_ERROR;
    p.max_length = (flags >> 3) & 1 ? 2 + (flags >> 4) : 0;
    p.threads = 1;
    int32_t *ids = NULL;
    int64_t n_ids = 0;
    rlx_clear_error();
    rlx_status s = rlx_tokenizer_encode(t, text, n, &p, &ids, &n_ids);
    FUZZ_FAILED_WITH_MESSAGE(s);
    if (s != RLX_OK) {
        /* only invalid UTF-8 may fail, and only when it is not to be replaced */
        FUZZ_CHECK(s == RLX_ERR_INVALID_ARGUMENT && p.invalid_utf8 == RLX_TOKENIZER_UTF8_ERROR);
        FUZZ_CHECK(ids == NULL);
        return;
    }
    check_encoding(t, ids, n_ids, p.max_length);
    for (int skip = 0; skip < 2; skip++) {
        char *back = NULL;
        size_t nb = 0;
        FUZZ_CHECK(rlx_tokenizer_decode(t, ids, n_ids, skip, &back, &nb) == RLX_OK);
        FUZZ_CHECK(back != NULL && back[nb] == '\0');
        /* the byte-level BPE without a normalizer loses nothing: the text comes back, unless
         * the input was repaired, truncated, or holds <mask> (which strips the spaces around it) */
        if (k == 0 && !skip && !p.add_special_tokens && !p.max_length && !contains(text, n, "<mask>")) {
            int valid = 1;
            for (size_t i = 0; i < n && valid; i++)
                valid = (uint8_t)text[i] < 0x80;
            if (valid || p.invalid_utf8 == RLX_TOKENIZER_UTF8_ERROR) FUZZ_CHECK(nb == n && !memcmp(back, text, n));
        }
        rlx_free(back);
    }
    rlx_free(ids);
}

static void fuzz_open(const uint8_t *data, size_t size) {
    rlx_tokenizer *t = NULL;
    rlx_clear_error();
    rlx_status s = rlx_tokenizer_open_json((const char *)data, size, NULL, "fuzz/tokenizer.json", &t);
    FUZZ_FAILED_WITH_MESSAGE(s);
    if (s != RLX_OK) {
        FUZZ_CHECK(t == NULL);
        return;
    }
    static const char sample[] = "Hello, world! 123 4567 naïve café 中文 🥰 <|eot_id|> [CLS]  \t\n x";
    rlx_tokenizer_encode_params p = rlx_tokenizer_encode_default_params();
    p.threads = 1;
    int32_t *ids = NULL;
    int64_t n = 0;
    s = rlx_tokenizer_encode(t, sample, sizeof sample - 1, &p, &ids, &n);
    FUZZ_FAILED_WITH_MESSAGE(s);
    if (s == RLX_OK) {
        check_encoding(t, ids, n, 0);
        char *back = NULL;
        FUZZ_CHECK(rlx_tokenizer_decode(t, ids, n, 0, &back, NULL) == RLX_OK);
        rlx_free(back);
        rlx_free(ids);
    }
    rlx_tokenizer_destroy(t);
}

/* The fixtures load before the first input: reading the 65,000-token BPE under ASan takes
 * seconds, which is not the encoder's time. */
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    for (int k = 0; k < N_FIXTURES; k++)
        fixture(k);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    if (data[0] < N_FIXTURES) {
        /* the text is a copy: the encoder must not read past what it is given */
        char *text = malloc(size - 2 ? size - 2 : 1);
        FUZZ_CHECK(text != NULL);
        memcpy(text, data + 2, size - 2);
        fuzz_encode(data[0], data[1], text, size - 2);
        free(text);
    } else {
        fuzz_open(data + 1, size - 1);
    }
    return 0;
}
