/* API misuse of the tokenizer (include/rlx/tokenizer.h): NULL pointers, bad arguments and
 * parameter values get RLX_ERR_INVALID_ARGUMENT with a message naming the argument, outputs
 * are cleared, nothing crashes or leaks. Lookups on NULL give their "none" values. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "rlx/tokenizer.h"
#include "testutil.h"

static rlx_tokenizer *open_bpe(void) {
    char path[1200];
    snprintf(path, sizeof path, "%s/tokenizer/llama_bpe", rlxt_fixtures_dir());
    rlx_tokenizer *t = NULL;
    cr_assert_eq(rlx_tokenizer_open(path, &t), RLX_OK, "%s", rlx_last_error());
    return t;
}

#define EXPECT_ARG(call, word)                                                                                         \
    do {                                                                                                               \
        rlx_clear_error();                                                                                             \
        rlx_status s_ = (call);                                                                                        \
        cr_expect_eq(s_, RLX_ERR_INVALID_ARGUMENT, "%s: %s", #call, rlx_status_name(s_));                              \
        cr_expect(strstr(rlx_last_error(), word), "%s: message '%s' does not name %s", #call, rlx_last_error(), word); \
    } while (0)

Test(misuse_tokenizer, open_and_destroy) {
    rlx_tokenizer *t = (rlx_tokenizer *)1;
    EXPECT_ARG(rlx_tokenizer_open(NULL, &t), "path");
    cr_expect_null(t);
    EXPECT_ARG(rlx_tokenizer_open("x", NULL), "out");
    t = (rlx_tokenizer *)1;
    EXPECT_ARG(rlx_tokenizer_open_json(NULL, 3, NULL, NULL, &t), "json");
    cr_expect_null(t);
    EXPECT_ARG(rlx_tokenizer_open_json("{}", 2, NULL, NULL, NULL), "out");
    rlx_tokenizer_destroy(NULL);
    /* an empty or truncated buffer is a format error, not a crash */
    cr_expect_eq(rlx_tokenizer_open_json("", 0, NULL, NULL, &t), RLX_ERR_FORMAT);
    cr_expect_eq(rlx_tokenizer_open_json("{\"model\"", 8, NULL, NULL, &t), RLX_ERR_FORMAT);
    /* a tokenizer_config.json that is not JSON is named */
    const char *j = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}";
    cr_expect_eq(rlx_tokenizer_open_json(j, strlen(j), "{nope", NULL, &t), RLX_ERR_FORMAT);
    cr_expect(strstr(rlx_last_error(), "tokenizer_config.json"), "%s", rlx_last_error());
}

Test(misuse_tokenizer, encode) {
    rlx_tokenizer *t = open_bpe();
    int32_t *ids = (int32_t *)1;
    int64_t n, lens[2];
    EXPECT_ARG(rlx_tokenizer_encode(NULL, "x", 1, NULL, &ids, &n), "tokenizer");
    cr_expect_null(ids);
    EXPECT_ARG(rlx_tokenizer_encode(t, NULL, 1, NULL, &ids, &n), "text");
    EXPECT_ARG(rlx_tokenizer_encode(t, "x", 1, NULL, NULL, &n), "ids_out");
    EXPECT_ARG(rlx_tokenizer_encode(t, "x", 1, NULL, &ids, NULL), "n_ids");
    const char *texts[2] = {"a", NULL};
    EXPECT_ARG(rlx_tokenizer_encode_batch(NULL, texts, NULL, 1, NULL, &ids, lens), "tokenizer");
    EXPECT_ARG(rlx_tokenizer_encode_batch(t, NULL, NULL, 1, NULL, &ids, lens), "texts");
    EXPECT_ARG(rlx_tokenizer_encode_batch(t, texts, NULL, 1, NULL, NULL, lens), "ids_out");
    EXPECT_ARG(rlx_tokenizer_encode_batch(t, texts, NULL, 1, NULL, &ids, NULL), "seq_lens");
    EXPECT_ARG(rlx_tokenizer_encode_batch(t, texts, NULL, -1, NULL, &ids, lens), "n_texts");
    ids = (int32_t *)1;
    EXPECT_ARG(rlx_tokenizer_encode_batch(t, texts, NULL, 2, NULL, &ids, lens), "texts[1]");
    cr_expect_null(ids);
    rlx_tokenizer_encode_params p = rlx_tokenizer_encode_default_params();
    p.invalid_utf8 = (rlx_tokenizer_utf8)7;
    EXPECT_ARG(rlx_tokenizer_encode(t, "x", 1, &p, &ids, &n), "invalid_utf8");
    p = rlx_tokenizer_encode_default_params();
    p.threads = -2;
    EXPECT_ARG(rlx_tokenizer_encode_batch(t, texts, NULL, 1, &p, &ids, lens), "threads");
    p = rlx_tokenizer_encode_default_params();
    p.max_length = -5;
    EXPECT_ARG(rlx_tokenizer_encode(t, "x", 1, &p, &ids, &n), "max_length");
    p.max_length = 0;
    p.truncate_left = 1; /* without a max_length: nothing to truncate, not an error */
    cr_expect_eq(rlx_tokenizer_encode(t, "x", 1, &p, &ids, &n), RLX_OK);
    rlx_free(ids);
    rlx_tokenizer_destroy(t);
}

Test(misuse_tokenizer, decode_and_lookups) {
    rlx_tokenizer *t = open_bpe();
    char *text = (char *)1;
    size_t nb = 7;
    const int32_t ids[2] = {45, -1};
    EXPECT_ARG(rlx_tokenizer_decode(NULL, ids, 1, 0, &text, &nb), "tokenizer");
    cr_expect_null(text);
    cr_expect_eq(nb, 0);
    EXPECT_ARG(rlx_tokenizer_decode(t, NULL, 1, 0, &text, NULL), "ids");
    EXPECT_ARG(rlx_tokenizer_decode(t, ids, 1, 0, NULL, NULL), "text_out");
    EXPECT_ARG(rlx_tokenizer_decode(t, ids, -1, 0, &text, NULL), "n_ids");
    cr_expect_eq(rlx_tokenizer_decode(t, ids, 2, 0, &text, NULL), RLX_ERR_TOKEN_RANGE);
    cr_expect(strstr(rlx_last_error(), "-1"), "%s", rlx_last_error());
    cr_expect_eq(rlx_tokenizer_vocab_size(NULL), 0);
    cr_expect_eq(rlx_tokenizer_model_max_length(NULL), 0);
    cr_expect_eq(rlx_tokenizer_token_to_id(NULL, "a"), -1);
    cr_expect_eq(rlx_tokenizer_token_to_id(t, NULL), -1);
    cr_expect_null(rlx_tokenizer_id_to_token(NULL, 0));
    cr_expect_null(rlx_tokenizer_id_to_token(t, INT32_MAX));
    cr_expect_eq(rlx_tokenizer_is_special(NULL, 0), 0);
    cr_expect_eq(rlx_tokenizer_is_special(t, -5), 0);
    cr_expect_eq(rlx_tokenizer_special_id(NULL, RLX_SPECIAL_BOS), -1);
    cr_expect_eq(rlx_tokenizer_special_id(t, (rlx_special_token)99), -1);
    cr_expect_eq(rlx_tokenizer_special_id(t, (rlx_special_token)-1), -1);
    rlx_tokenizer_destroy(t);
}
