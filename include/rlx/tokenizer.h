/* rlx — text in, text out: Hugging Face `tokenizer.json` read and run in C.
 *
 * Supported (anything else is refused by name when the file is opened):
 *   models          BPE (byte-level as in Llama 3, SmolLM2, GPT-2, Qwen; also continuing-subword
 *                   prefix, end-of-word suffix, unk/fuse_unk, byte_fallback, ignore_merges) and
 *                   WordPiece (BERT)
 *   normalizers     BertNormalizer, NFC, NFD, NFKC, NFKD, Lowercase, StripAccents, Strip, Sequence
 *   pre-tokenizers  ByteLevel, Split (regex or string; every behaviour; invert), Digits,
 *                   BertPreTokenizer, Whitespace, WhitespaceSplit, Punctuation, Sequence
 *   post-processors TemplateProcessing, BertProcessing, RobertaProcessing, ByteLevel, Sequence
 *   decoders        ByteLevel, WordPiece, BPEDecoder, Sequence
 * Added tokens (special or not; single_word, lstrip, rstrip, normalized) are matched before the
 * normalizer as `tokenizers` does. Split regexes run on PCRE2 (JIT); normalization uses utf8proc.
 * The ids are those of Hugging Face `tokenizers` (tests/test-tokenizer.c checks a 2,000-line
 * corpus token for token); docs/tokenizer.md lists the known differences (characters assigned in
 * recent Unicode versions, where the two libraries' Unicode tables differ).
 *
 * A tokenizer is immutable once opened: one handle may be used from many threads at once.
 * Texts are UTF-8 (length in bytes, so they may hold NUL). Invalid UTF-8 is an error naming the
 * byte offset, or, with RLX_TOKENIZER_UTF8_REPLACE, each maximal invalid subsequence becomes
 * U+FFFD first (what Python's bytes.decode("utf-8", "replace") does; `tokenizers` itself only
 * ever sees valid strings). rlx never pads: a batch comes back packed, ids of text 0 then text 1
 * ..., with one length per text — the form rlx_session_prefill takes.
 */
#ifndef RLX_TOKENIZER_H
#define RLX_TOKENIZER_H

#include "rlx/rlx.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rlx_tokenizer rlx_tokenizer;

/* Frees memory the library returned (the same function as in rlx/flow.h). */
RLX_API void rlx_free(void *p);

/* Opens `path`: a model directory (reads DIR/tokenizer.json, and DIR/tokenizer_config.json and
 * DIR/special_tokens_map.json when present, for the named special tokens and
 * model_max_length) or a tokenizer.json file (the two optional files are looked for beside it).
 * A directory without tokenizer.json fails with RLX_ERR_IO and a message saying it is missing;
 * an unsupported model or component fails with RLX_ERR_UNSUPPORTED naming it; a malformed file
 * with RLX_ERR_FORMAT naming the key. */
RLX_API rlx_status rlx_tokenizer_open(const char *path, rlx_tokenizer **out);

/* The same from tokenizer.json text in memory (json_bytes bytes; config_json: the text of a
 * tokenizer_config.json or NULL). `name` labels error messages (e.g. a file name; NULL = "tokenizer.json"). */
RLX_API rlx_status rlx_tokenizer_open_json(const char *json, size_t json_bytes, const char *config_json,
                                           const char *name, rlx_tokenizer **out);

/* NULL is fine. */
RLX_API void rlx_tokenizer_destroy(rlx_tokenizer *tok);

typedef enum rlx_tokenizer_model {
    RLX_TOKENIZER_BPE = 0,
    RLX_TOKENIZER_WORDPIECE = 1,
} rlx_tokenizer_model;

/* Invalid UTF-8 in a text to encode. */
typedef enum rlx_tokenizer_utf8 {
    RLX_TOKENIZER_UTF8_ERROR = 0,   /* RLX_ERR_INVALID_ARGUMENT naming the text and byte offset */
    RLX_TOKENIZER_UTF8_REPLACE = 1, /* each maximal invalid subsequence becomes U+FFFD */
} rlx_tokenizer_utf8;

/* Truncation length that means "the model's maximum" (tokenizer_config.json model_max_length,
 * else tokenizer.json's own truncation.max_length). */
#define RLX_TOKENIZER_MODEL_MAX_LENGTH (-1)

typedef struct rlx_tokenizer_encode_params {
    int add_special_tokens;          /* 1 (default): the post-processor's BOS / [CLS] ... [SEP]; 0: none */
    int64_t max_length;              /* truncate each text's ids (added specials included) to this many:
                                        0 = never (default); RLX_TOKENIZER_MODEL_MAX_LENGTH; a value below
                                        the number of added specials is an invalid argument */
    int truncate_left;               /* 0 (default): drop ids from the end; 1: from the start (specials
                                        are added after truncation either way, as `tokenizers` does) */
    rlx_tokenizer_utf8 invalid_utf8; /* default RLX_TOKENIZER_UTF8_ERROR */
    int threads;                     /* batch encode: 0 = every core (default), 1 = the calling thread only */
} rlx_tokenizer_encode_params;

RLX_API rlx_tokenizer_encode_params rlx_tokenizer_encode_default_params(void);

/* Encodes n_texts texts. texts[i] has text_bytes[i] bytes (text_bytes NULL: each text is
 * NUL-terminated). On success *ids_out holds every text's ids packed in order (free with
 * rlx_free; non-NULL even when empty) and seq_lens[i] (caller's array of n_texts) the count of
 * text i. params NULL = the defaults. On failure *ids_out is NULL and nothing is leaked. */
RLX_API rlx_status rlx_tokenizer_encode_batch(const rlx_tokenizer *tok, const char *const *texts,
                                              const size_t *text_bytes, int64_t n_texts,
                                              const rlx_tokenizer_encode_params *params, int32_t **ids_out,
                                              int64_t *seq_lens);

/* One text: *ids_out (free with rlx_free) holds *n_ids ids. */
RLX_API rlx_status rlx_tokenizer_encode(const rlx_tokenizer *tok, const char *text, size_t text_bytes,
                                        const rlx_tokenizer_encode_params *params, int32_t **ids_out, int64_t *n_ids);

/* Decodes ids to UTF-8 text through the tokenizer's decoder: *text_out is NUL-terminated (free
 * with rlx_free), *text_bytes (may be NULL) its length. skip_special_tokens = 1 drops the special
 * added tokens first (`tokenizers`' decode(..., skip_special_tokens=True)). Byte sequences that
 * are not UTF-8 decode to U+FFFD, as `tokenizers` does. An id outside [0, vocab size) is
 * RLX_ERR_TOKEN_RANGE naming it and its position. */
RLX_API rlx_status rlx_tokenizer_decode(const rlx_tokenizer *tok, const int32_t *ids, int64_t n_ids,
                                        int skip_special_tokens, char **text_out, size_t *text_bytes);

/* ---- lookups (none fails on a valid tokenizer; tok NULL gives 0 / -1 / NULL) ---------------- */

RLX_API rlx_tokenizer_model rlx_tokenizer_model_kind(const rlx_tokenizer *tok);
/* Ids are in [0, vocab size): the model's vocabulary and the added tokens. */
RLX_API int64_t rlx_tokenizer_vocab_size(const rlx_tokenizer *tok);
/* tokenizer_config.json model_max_length, else tokenizer.json truncation.max_length, else 0. */
RLX_API int64_t rlx_tokenizer_model_max_length(const rlx_tokenizer *tok);
/* The id of a token string exactly as the vocabulary spells it (added tokens first, then the
 * model's; byte-level vocabularies spell a leading space "Ġ"), or -1. */
RLX_API int32_t rlx_tokenizer_token_to_id(const rlx_tokenizer *tok, const char *token);
/* The vocabulary's string for an id (valid while tok lives), or NULL outside the vocabulary. */
RLX_API const char *rlx_tokenizer_id_to_token(const rlx_tokenizer *tok, int32_t id);
/* 1 if the id is a special added token (what skip_special_tokens drops), else 0. */
RLX_API int rlx_tokenizer_is_special(const rlx_tokenizer *tok, int32_t id);

/* Named special tokens, from tokenizer_config.json / special_tokens_map.json (bos_token, ...);
 * UNK falls back to the model's unk_token. Values are only ever appended. */
typedef enum rlx_special_token {
    RLX_SPECIAL_BOS = 0,
    RLX_SPECIAL_EOS = 1,
    RLX_SPECIAL_UNK = 2,
    RLX_SPECIAL_PAD = 3,
    RLX_SPECIAL_CLS = 4,
    RLX_SPECIAL_SEP = 5,
    RLX_SPECIAL_MASK = 6,
} rlx_special_token;

/* The id of a named special token, or -1 when the tokenizer names none (or which is unknown). */
RLX_API int32_t rlx_tokenizer_special_id(const rlx_tokenizer *tok, rlx_special_token which);

#ifdef __cplusplus
}
#endif

#endif /* RLX_TOKENIZER_H */
