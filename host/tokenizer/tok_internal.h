/* Internals of the tokenizer (host/tokenizer/): the parsed tokenizer.json and the encode
 * pipeline's working state. Layer: calls core only (and PCRE2, utf8proc, jansson). */
#ifndef RLX_TOK_INTERNAL_H
#define RLX_TOK_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include "core/internal.h"
#include "rlx/tokenizer.h"

#include <pcre2.h>
#include <stdint.h>

/* ---- string -> id map (open addressing; keys point into the tokenizer's string pool) ------- */
typedef struct tk_map_slot {
    const char *key; /* NULL = empty */
    uint32_t len, hash;
    int32_t id;
} tk_map_slot;
typedef struct tk_map {
    tk_map_slot *slots;
    uint32_t mask, n;
} tk_map;
uint32_t rlx__tk_hash(const char *s, size_t n);
rlx_status rlx__tk_map_init(tk_map *m, size_t expected);
/* Inserts or overwrites; the key must outlive the map. */
rlx_status rlx__tk_map_put(tk_map *m, const char *key, size_t len, int32_t id);
int32_t rlx__tk_map_get(const tk_map *m, const char *key, size_t len); /* -1 if absent */
void rlx__tk_map_free(tk_map *m);

/* (left id, right id) -> (rank, merged id), for BPE merges. */
typedef struct tk_pair_slot {
    uint64_t key; /* UINT64_MAX = empty */
    int32_t rank, id;
} tk_pair_slot;
typedef struct tk_pair_map {
    tk_pair_slot *slots;
    uint64_t mask;
    int shift; /* 64 - log2(slots): the slot is the product's top bits (Fibonacci hashing) */
} tk_pair_map;

/* ---- components ---------------------------------------------------------------------------- */
typedef enum tk_norm_kind {
    TK_NORM_BERT,
    TK_NORM_NFC,
    TK_NORM_NFD,
    TK_NORM_NFKC,
    TK_NORM_NFKD,
    TK_NORM_LOWERCASE,
    TK_NORM_STRIP_ACCENTS,
    TK_NORM_STRIP,
    TK_NORM_STRIP_MN, /* BertNormalizer's accent stripping (after NFD): nonspacing marks only */
} tk_norm_kind;
typedef struct tk_norm {
    tk_norm_kind kind;
    int clean_text, handle_chinese, strip_accents, lowercase; /* BertNormalizer */
    int strip_left, strip_right;                              /* Strip */
} tk_norm;

typedef enum tk_split_behavior {
    TK_REMOVED,
    TK_ISOLATED,
    TK_MERGED_WITH_PREVIOUS,
    TK_MERGED_WITH_NEXT,
    TK_CONTIGUOUS,
} tk_split_behavior;

typedef enum tk_pre_kind {
    TK_PRE_BYTELEVEL,
    TK_PRE_SPLIT,
    TK_PRE_DIGITS,
    TK_PRE_BERT,
    TK_PRE_WHITESPACE,
    TK_PRE_WHITESPACE_SPLIT,
    TK_PRE_PUNCTUATION,
} tk_pre_kind;
typedef struct tk_pre {
    tk_pre_kind kind;
    pcre2_code *re;             /* Split (regex or escaped string); ByteLevel with use_regex */
    int jit;                    /* re is JIT-compiled: pcre2_jit_match may run it */
    int literal_empty;          /* Split on an empty string: matches nothing */
    tk_split_behavior behavior; /* Split, Punctuation */
    int invert;                 /* Split */
    int add_prefix_space;       /* ByteLevel */
    int use_regex;              /* ByteLevel */
    int individual_digits;      /* Digits */
} tk_pre;

typedef enum tk_post_kind { TK_POST_TEMPLATE, TK_POST_BYTELEVEL } tk_post_kind;
typedef struct tk_post {
    tk_post_kind kind;
    /* Template for one sequence: ids before and after $A (Bert/Roberta processing become one). */
    int32_t *before, *after;
    int64_t n_before, n_after;
} tk_post;

typedef enum tk_dec_kind { TK_DEC_BYTELEVEL, TK_DEC_WORDPIECE, TK_DEC_BPE } tk_dec_kind;
typedef struct tk_dec {
    tk_dec_kind kind;
    char *prefix; /* WordPiece */
    int cleanup;  /* WordPiece */
    char *suffix; /* BPEDecoder */
} tk_dec;

typedef struct tk_added {
    int32_t id;
    const char *content; /* in the pool */
    uint32_t len;
    const char *match; /* what is matched: content, or its normalized form when normalized */
    uint32_t match_len;
    int special, single_word, lstrip, rstrip, normalized;
} tk_added;

/* A byte trie over added tokens: leftmost-longest matching as `tokenizers`' Aho-Corasick does. */
typedef struct tk_trie_node {
    int32_t child;   /* first child, -1 none */
    int32_t sibling; /* next sibling, -1 none */
    int32_t added;   /* index into added[] of a token ending here, -1 none */
    uint8_t byte;
} tk_trie_node;
typedef struct tk_trie {
    tk_trie_node *nodes;
    int32_t n, cap;
    uint8_t first[256]; /* 1 if some token starts with this byte */
} tk_trie;

struct rlx_tokenizer {
    rlx_tokenizer_model model;
    /* vocabulary: id -> string (NULL = a hole), string -> id */
    char **id_str;
    uint32_t *id_len;
    int64_t vocab_size; /* max id + 1 over the model and the added tokens */
    tk_map model_vocab; /* the model's own vocabulary */
    int64_t model_vocab_n;
    tk_map added_vocab;    /* added tokens' content -> id */
    struct tk_chunk *pool; /* every string of the tokenizer (chunks: pointers stay put) */
    /* model options */
    int32_t unk_id; /* -1 none */
    char *unk_token;
    char *continuing_prefix;
    char *end_suffix;
    int fuse_unk, byte_fallback, ignore_merges;
    int64_t max_input_chars_per_word; /* WordPiece */
    int32_t byte_fallback_ids[256];   /* <0xAB> tokens, -1 absent */
    tk_pair_map merges;
    /* pipeline */
    tk_norm *norms;
    int n_norms;
    tk_pre *pres;
    int n_pres;
    tk_post *posts;
    int n_posts;
    tk_dec *decs;
    int n_decs;
    int has_decoder;
    /* added tokens */
    tk_added *added;
    int n_added;
    tk_trie trie_raw, trie_norm; /* non-normalized / normalized tokens */
    uint8_t *is_special;         /* [vocab_size] */
    /* named specials and lengths */
    int32_t special_ids[7];
    int64_t model_max_length, file_truncation;
};

/* ---- pieces of a text being encoded ------------------------------------------------------- */
typedef struct tk_piece {
    uint32_t off, len; /* in the work buffer */
    int32_t added;     /* >= 0: an added token's id (no further processing) */
} tk_piece;

typedef struct tk_event {
    uint32_t s, e;
    int m; /* 1 = a match of the split pattern */
} tk_event;

typedef struct tk_bpe_sym {
    int32_t c, prev, next;
    uint32_t len; /* bytes; 0 = merged away */
} tk_bpe_sym;
typedef struct tk_bpe_merge {
    int32_t rank, pos, id;
} tk_bpe_merge;

typedef struct tk_buf {
    char *p;
    size_t len, cap;
} tk_buf;
typedef struct tk_pieces {
    tk_piece *p;
    size_t n, cap;
} tk_pieces;

/* Per-thread scratch of the encoder; grows, never shrinks, freed with rlx__tk_work_free. */
typedef struct tk_work {
    const char *base; /* the text the current pieces index: the input, tb[0] or tb[1] */
    int base_buf;     /* -1 = the input text, else the tb[] it is */
    tk_buf tb[2];
    tk_pieces pc[2];
    int cur; /* pc[cur] is the current piece list */
    int32_t *ids;
    size_t n_ids, cap_ids;
    tk_event *ev;
    size_t n_ev, cap_ev;
    tk_bpe_sym *sym;
    size_t sym_cap;
    tk_bpe_merge *heap;
    size_t heap_cap;
    char *na, *nb; /* normalization ping-pong */
    size_t na_cap, nb_cap;
    char *scratch;
    size_t scratch_cap;
    char *utf8; /* the input with invalid sequences replaced */
    size_t utf8_cap;
    pcre2_match_data *md;
} tk_work;

void rlx__tk_work_free(tk_work *w);
rlx_status rlx__tk_reserve(void **p, size_t *cap, size_t need, size_t elem, const char *what);

/* ---- UTF-8 and character classes (utf8proc) ------------------------------------------------ */
/* Decodes one code point of valid UTF-8 at s (n bytes left); returns its length. */
static inline int rlx__tk_utf8_next(const uint8_t *s, size_t n, int32_t *cp) {
    uint8_t c = s[0];
    if (c < 0x80 || n < 2) {
        *cp = c;
        return 1;
    }
    if (c < 0xE0) {
        *cp = ((c & 0x1F) << 6) | (s[1] & 0x3F);
        return 2;
    }
    if (c < 0xF0 || n < 4) {
        *cp = ((c & 0x0F) << 12) | ((s[1] & 0x3F) << 6) | (s[2] & 0x3F);
        return 3;
    }
    *cp = ((c & 0x07) << 18) | ((s[1] & 0x3F) << 12) | ((s[2] & 0x3F) << 6) | (s[3] & 0x3F);
    return 4;
}
int rlx__tk_utf8_put(char *out, int32_t cp); /* returns bytes written (1..4) */
/* Offset of the first invalid byte, or n when s is valid UTF-8. */
size_t rlx__tk_utf8_check(const uint8_t *s, size_t n);
/* Writes s with each maximal invalid subsequence replaced by U+FFFD (WHATWG / Python / Rust
 * from_utf8_lossy semantics) to out (capacity 3n + 1); returns the length. */
size_t rlx__tk_utf8_lossy(const uint8_t *s, size_t n, char *out);

int rlx__tk_is_whitespace(int32_t cp); /* Rust char::is_whitespace (White_Space) */
int rlx__tk_is_punct(int32_t cp);      /* ASCII punctuation or a P* category (BERT) */
int rlx__tk_is_numeric(int32_t cp);    /* Nd, Nl, No (Rust char::is_numeric) */
int rlx__tk_is_word(int32_t cp);       /* Rust regex \w */

/* ---- stages -------------------------------------------------------------------------------- */
/* *jit: 1 when the pattern was JIT-compiled (pcre2_jit_match may be used). */
rlx_status rlx__tk_compile_regex(const char *pattern, int literal, const char *where, pcre2_code **out, int *jit);
void rlx__tk_bytelevel_maps(uint16_t byte_to_cp[256], int16_t cp_to_byte[324]);
/* The GPT-2 maps, filled once by rlx__tk_maps_init (thread-safe). */
extern uint16_t rlx__tk_byte_to_cp[256];
extern int16_t rlx__tk_cp_to_byte[324];
void rlx__tk_maps_init(void);
/* The tokenizer's normalizers over in[0..n): *out malloc'd, NUL-terminated. */
rlx_status rlx__tk_normalize_str(const rlx_tokenizer *t, const char *in, size_t n, char **out, size_t *out_len);

/* ---- loading ------------------------------------------------------------------------------- */
typedef struct tk_chunk {
    struct tk_chunk *next;
    size_t used, cap;
    char data[];
} tk_chunk;
char *rlx__tk_pool_add(rlx_tokenizer *t, const char *s, size_t n); /* NUL-terminated copy; NULL = OOM */
void rlx__tk_pool_free(rlx_tokenizer *t);

/* ---- pair map ------------------------------------------------------------------------------ */
rlx_status rlx__tk_pairs_init(tk_pair_map *m, size_t expected);
void rlx__tk_pairs_put(tk_pair_map *m, int32_t a, int32_t b, int32_t rank, int32_t id);
static inline const tk_pair_slot *rlx__tk_pairs_get(const tk_pair_map *m, int32_t a, int32_t b) {
    if (!m->slots) return NULL;
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    for (uint64_t i = (key * 0x9E3779B97F4A7C15ull) >> m->shift;; i = (i + 1) & m->mask) {
        const tk_pair_slot *s = &m->slots[i];
        if (s->key == key) return s;
        if (s->key == UINT64_MAX) return NULL;
    }
}

#endif
