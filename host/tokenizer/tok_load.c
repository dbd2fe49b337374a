/* Reading tokenizer.json (and tokenizer_config.json / special_tokens_map.json) into an
 * rlx_tokenizer, the way `tokenizers`' deserializer builds its Tokenizer: added tokens take the
 * model's id when the model knows their content, else the next free id. Anything rlx does not
 * implement is refused by name here, never at encode time. */
#include "tokenizer/tok_internal.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct tk_load {
    rlx_tokenizer *t;
    const char *name;
    int64_t id_cap; /* allocated entries of t->id_str / t->id_len */
} tk_load;

static const char *jtype(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "?";
}

/* Optional boolean member: absent or null = def. */
static rlx_status get_bool(const tk_load *L, const json_t *o, const char *key, const char *where, int def, int *out) {
    const json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return RLX_OK;
    }
    if (!json_is_boolean(v))
        return rlx__fail(RLX_ERR_FORMAT, "%s: %s.%s is %s, not a boolean", L->name, where, key, jtype(v));
    *out = json_is_true(v);
    return RLX_OK;
}

/* Optional string member: absent or null = NULL. */
static rlx_status get_str(const tk_load *L, const json_t *o, const char *key, const char *where, const char **out) {
    const json_t *v = json_object_get(o, key);
    *out = NULL;
    if (!v || json_is_null(v)) return RLX_OK;
    if (!json_is_string(v))
        return rlx__fail(RLX_ERR_FORMAT, "%s: %s.%s is %s, not a string", L->name, where, key, jtype(v));
    *out = json_string_value(v);
    return RLX_OK;
}

static rlx_status pool_str(tk_load *L, const char *s, char **out) {
    *out = NULL;
    if (!s) return RLX_OK;
    return (*out = rlx__tk_pool_add(L->t, s, strlen(s))) ? RLX_OK : RLX_ERR_OUT_OF_MEMORY;
}

static const char *type_of(const json_t *o) {
    const json_t *v = json_object_get(o, "type");
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* ---- normalizers ---------------------------------------------------------------------------- */

static rlx_status add_norm(tk_load *L, tk_norm n) {
    rlx_tokenizer *t = L->t;
    tk_norm *p = realloc(t->norms, (size_t)(t->n_norms + 1) * sizeof *p);
    if (!p) return rlx__fail(RLX_ERR_OUT_OF_MEMORY, "out of host memory reading the normalizer");
    t->norms = p;
    p[t->n_norms++] = n;
    return RLX_OK;
}

static rlx_status parse_normalizer(tk_load *L, const json_t *o, const char *where, int depth) {
    if (depth > 16) return rlx__fail(RLX_ERR_FORMAT, "%s: %s nests Sequences too deeply", L->name, where);
    if (!json_is_object(o)) return rlx__fail(RLX_ERR_FORMAT, "%s: %s is %s, not an object", L->name, where, jtype(o));
    const char *ty = type_of(o);
    if (!ty) return rlx__fail(RLX_ERR_FORMAT, "%s: %s has no \"type\"", L->name, where);
    tk_norm n = {0};
    rlx_status s = RLX_OK;
    if (!strcmp(ty, "Sequence")) {
        const json_t *a = json_object_get(o, "normalizers");
        if (!json_is_array(a))
            return rlx__fail(RLX_ERR_FORMAT, "%s: %s (Sequence) has no \"normalizers\" array", L->name, where);
        for (size_t i = 0; i < json_array_size(a); i++) {
            char w[256];
            snprintf(w, sizeof w, "%s.normalizers[%zu]", where, i);
            if ((s = parse_normalizer(L, json_array_get(a, i), w, depth + 1))) return s;
        }
        return RLX_OK;
    }
    if (!strcmp(ty, "BertNormalizer")) {
        n.kind = TK_NORM_BERT;
        int sa = -1;
        const json_t *v = json_object_get(o, "strip_accents");
        if (v && !json_is_null(v) && !json_is_boolean(v))
            return rlx__fail(RLX_ERR_FORMAT, "%s: %s.strip_accents is %s, not a boolean or null", L->name, where,
                             jtype(v));
        if (json_is_boolean(v)) sa = json_is_true(v);
        if ((s = get_bool(L, o, "clean_text", where, 1, &n.clean_text)) ||
            (s = get_bool(L, o, "handle_chinese_chars", where, 1, &n.handle_chinese)) ||
            (s = get_bool(L, o, "lowercase", where, 1, &n.lowercase)))
            return s;
        n.strip_accents = sa < 0 ? n.lowercase : sa; /* null follows lowercase */
    } else if (!strcmp(ty, "NFC"))
        n.kind = TK_NORM_NFC;
    else if (!strcmp(ty, "NFD"))
        n.kind = TK_NORM_NFD;
    else if (!strcmp(ty, "NFKC"))
        n.kind = TK_NORM_NFKC;
    else if (!strcmp(ty, "NFKD"))
        n.kind = TK_NORM_NFKD;
    else if (!strcmp(ty, "Lowercase"))
        n.kind = TK_NORM_LOWERCASE;
    else if (!strcmp(ty, "StripAccents"))
        n.kind = TK_NORM_STRIP_ACCENTS;
    else if (!strcmp(ty, "Strip")) {
        n.kind = TK_NORM_STRIP;
        if ((s = get_bool(L, o, "strip_left", where, 1, &n.strip_left)) ||
            (s = get_bool(L, o, "strip_right", where, 1, &n.strip_right)))
            return s;
    } else {
        return rlx__fail(RLX_ERR_UNSUPPORTED,
                         "%s: %s: normalizer '%s' is not supported (rlx reads BertNormalizer, NFC, NFD, NFKC, NFKD, "
                         "Lowercase, StripAccents, Strip, Sequence)",
                         L->name, where, ty);
    }
    return add_norm(L, n);
}

/* ---- pre-tokenizers ------------------------------------------------------------------------- */

static rlx_status parse_behavior(tk_load *L, const json_t *o, const char *where, tk_split_behavior *out) {
    const char *b;
    rlx_status s = get_str(L, o, "behavior", where, &b);
    if (s) return s;
    static const struct {
        const char *name;
        tk_split_behavior b;
    } names[] = {{"Removed", TK_REMOVED},
                 {"Isolated", TK_ISOLATED},
                 {"MergedWithPrevious", TK_MERGED_WITH_PREVIOUS},
                 {"MergedWithNext", TK_MERGED_WITH_NEXT},
                 {"Contiguous", TK_CONTIGUOUS}};
    if (!b) {
        *out = TK_ISOLATED;
        return RLX_OK;
    }
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(b, names[i].name)) {
            *out = names[i].b;
            return RLX_OK;
        }
    return rlx__fail(
        RLX_ERR_FORMAT,
        "%s: %s.behavior '%s' is not one of Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous", L->name,
        where, b);
}

static rlx_status add_pre(tk_load *L, tk_pre p) {
    rlx_tokenizer *t = L->t;
    tk_pre *np = realloc(t->pres, (size_t)(t->n_pres + 1) * sizeof *np);
    if (!np) {
        if (p.re) pcre2_code_free(p.re);
        return rlx__fail(RLX_ERR_OUT_OF_MEMORY, "out of host memory reading the pre-tokenizer");
    }
    t->pres = np;
    np[t->n_pres++] = p;
    return RLX_OK;
}

/* The GPT-2 pattern ByteLevel uses when use_regex is true. */
static const char GPT2_PATTERN[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static rlx_status parse_pre(tk_load *L, const json_t *o, const char *where, int depth) {
    if (depth > 16) return rlx__fail(RLX_ERR_FORMAT, "%s: %s nests Sequences too deeply", L->name, where);
    if (!json_is_object(o)) return rlx__fail(RLX_ERR_FORMAT, "%s: %s is %s, not an object", L->name, where, jtype(o));
    const char *ty = type_of(o);
    if (!ty) return rlx__fail(RLX_ERR_FORMAT, "%s: %s has no \"type\"", L->name, where);
    tk_pre p = {0};
    rlx_status s = RLX_OK;
    if (!strcmp(ty, "Sequence")) {
        const json_t *a = json_object_get(o, "pretokenizers");
        if (!json_is_array(a))
            return rlx__fail(RLX_ERR_FORMAT, "%s: %s (Sequence) has no \"pretokenizers\" array", L->name, where);
        for (size_t i = 0; i < json_array_size(a); i++) {
            char w[256];
            snprintf(w, sizeof w, "%s.pretokenizers[%zu]", where, i);
            if ((s = parse_pre(L, json_array_get(a, i), w, depth + 1))) return s;
        }
        return RLX_OK;
    }
    if (!strcmp(ty, "ByteLevel")) {
        p.kind = TK_PRE_BYTELEVEL;
        if ((s = get_bool(L, o, "add_prefix_space", where, 1, &p.add_prefix_space)) ||
            (s = get_bool(L, o, "use_regex", where, 1, &p.use_regex)))
            return s;
        if (p.use_regex &&
            (s = rlx__tk_compile_regex(GPT2_PATTERN, 0, "the ByteLevel pre-tokenizer's regex", &p.re, &p.jit)))
            return s;
    } else if (!strcmp(ty, "Split")) {
        p.kind = TK_PRE_SPLIT;
        const json_t *pat = json_object_get(o, "pattern");
        const char *rx = NULL, *lit = NULL;
        if (json_is_object(pat)) {
            const json_t *r = json_object_get(pat, "Regex"), *st = json_object_get(pat, "String");
            if (json_is_string(r))
                rx = json_string_value(r);
            else if (json_is_string(st))
                lit = json_string_value(st);
        }
        if (!rx && !lit)
            return rlx__fail(RLX_ERR_FORMAT, "%s: %s.pattern is not {\"Regex\": ...} or {\"String\": ...}", L->name,
                             where);
        if ((s = parse_behavior(L, o, where, &p.behavior)) || (s = get_bool(L, o, "invert", where, 0, &p.invert)))
            return s;
        if (lit && !*lit)
            p.literal_empty = 1;
        else {
            char w[300];
            snprintf(w, sizeof w, "%s: %s.pattern", L->name, where);
            if ((s = rlx__tk_compile_regex(rx ? rx : lit, lit != NULL, w, &p.re, &p.jit))) return s;
        }
    } else if (!strcmp(ty, "Digits")) {
        p.kind = TK_PRE_DIGITS;
        if ((s = get_bool(L, o, "individual_digits", where, 0, &p.individual_digits))) return s;
    } else if (!strcmp(ty, "BertPreTokenizer"))
        p.kind = TK_PRE_BERT;
    else if (!strcmp(ty, "Whitespace"))
        p.kind = TK_PRE_WHITESPACE;
    else if (!strcmp(ty, "WhitespaceSplit"))
        p.kind = TK_PRE_WHITESPACE_SPLIT;
    else if (!strcmp(ty, "Punctuation")) {
        p.kind = TK_PRE_PUNCTUATION;
        if ((s = parse_behavior(L, o, where, &p.behavior))) return s;
    } else {
        return rlx__fail(RLX_ERR_UNSUPPORTED,
                         "%s: %s: pre-tokenizer '%s' is not supported (rlx reads ByteLevel, Split, Digits, "
                         "BertPreTokenizer, Whitespace, WhitespaceSplit, Punctuation, Sequence)",
                         L->name, where, ty);
    }
    return add_pre(L, p);
}

/* ---- post-processors ------------------------------------------------------------------------ */

static rlx_status add_post(tk_load *L, tk_post p) {
    rlx_tokenizer *t = L->t;
    tk_post *np = realloc(t->posts, (size_t)(t->n_posts + 1) * sizeof *np);
    if (!np) {
        free(p.before);
        free(p.after);
        return rlx__fail(RLX_ERR_OUT_OF_MEMORY, "out of host memory reading the post-processor");
    }
    t->posts = np;
    np[t->n_posts++] = p;
    return RLX_OK;
}

static rlx_status push_id(int32_t **a, int64_t *n, int64_t id) {
    int32_t *p = realloc(*a, (size_t)(*n + 1) * sizeof *p);
    if (!p) return rlx__fail(RLX_ERR_OUT_OF_MEMORY, "out of host memory reading the post-processor");
    p[(*n)++] = (int32_t)id;
    *a = p;
    return RLX_OK;
}

/* ["[CLS]", 101] of BertProcessing / RobertaProcessing */
static rlx_status pair_id(tk_load *L, const json_t *o, const char *key, const char *where, int64_t *id) {
    const json_t *v = json_object_get(o, key);
    const json_t *i = json_is_array(v) && json_array_size(v) == 2 ? json_array_get(v, 1) : NULL;
    if (!json_is_integer(i) || json_integer_value(i) < 0 || json_integer_value(i) > INT32_MAX)
        return rlx__fail(RLX_ERR_FORMAT, "%s: %s.%s is not [token, id]", L->name, where, key);
    *id = json_integer_value(i);
    return RLX_OK;
}

static rlx_status parse_post(tk_load *L, const json_t *o, const char *where, int depth) {
    if (depth > 16) return rlx__fail(RLX_ERR_FORMAT, "%s: %s nests Sequences too deeply", L->name, where);
    if (!json_is_object(o)) return rlx__fail(RLX_ERR_FORMAT, "%s: %s is %s, not an object", L->name, where, jtype(o));
    const char *ty = type_of(o);
    if (!ty) return rlx__fail(RLX_ERR_FORMAT, "%s: %s has no \"type\"", L->name, where);
    tk_post p = {0};
    rlx_status s = RLX_OK;
    if (!strcmp(ty, "Sequence")) {
        const json_t *a = json_object_get(o, "processors");
        if (!json_is_array(a))
            return rlx__fail(RLX_ERR_FORMAT, "%s: %s (Sequence) has no \"processors\" array", L->name, where);
        for (size_t i = 0; i < json_array_size(a); i++) {
            char w[256];
            snprintf(w, sizeof w, "%s.processors[%zu]", where, i);
            if ((s = parse_post(L, json_array_get(a, i), w, depth + 1))) return s;
        }
        return RLX_OK;
    }
    if (!strcmp(ty, "ByteLevel")) {
        p.kind = TK_POST_BYTELEVEL; /* offsets only: ids unchanged */
        return add_post(L, p);
    }
    p.kind = TK_POST_TEMPLATE;
    if (!strcmp(ty, "BertProcessing") || !strcmp(ty, "RobertaProcessing")) {
        int64_t cls, sep;
        if ((s = pair_id(L, o, "cls", where, &cls)) || (s = pair_id(L, o, "sep", where, &sep))) return s;
        if ((s = push_id(&p.before, &p.n_before, cls)) || (s = push_id(&p.after, &p.n_after, sep))) {
            free(p.before);
            return s;
        }
        return add_post(L, p);
    }
    if (strcmp(ty, "TemplateProcessing"))
        return rlx__fail(RLX_ERR_UNSUPPORTED,
                         "%s: %s: post-processor '%s' is not supported (rlx reads TemplateProcessing, BertProcessing, "
                         "RobertaProcessing, ByteLevel, Sequence)",
                         L->name, where, ty);
    const json_t *single = json_object_get(o, "single"), *specials = json_object_get(o, "special_tokens");
    if (!json_is_array(single)) return rlx__fail(RLX_ERR_FORMAT, "%s: %s.single is not an array", L->name, where);
    int seen_a = 0;
    for (size_t i = 0; i < json_array_size(single) && !s; i++) {
        const json_t *piece = json_array_get(single, i);
        const json_t *sp = json_object_get(piece, "SpecialToken"), *sq = json_object_get(piece, "Sequence");
        if (json_is_object(sq)) {
            const char *id = json_string_value(json_object_get(sq, "id"));
            if (!id || strcmp(id, "A") || seen_a)
                s = rlx__fail(RLX_ERR_UNSUPPORTED, "%s: %s.single[%zu]: a single-sequence template must hold $A once",
                              L->name, where, i);
            seen_a = 1;
            continue;
        }
        const char *name = json_is_object(sp) ? json_string_value(json_object_get(sp, "id")) : NULL;
        if (!name) {
            s = rlx__fail(RLX_ERR_FORMAT, "%s: %s.single[%zu] is neither {\"SpecialToken\"} nor {\"Sequence\"}",
                          L->name, where, i);
            break;
        }
        const json_t *ids = json_object_get(json_object_get(specials, name), "ids");
        if (!json_is_array(ids)) {
            s = rlx__fail(RLX_ERR_FORMAT, "%s: %s.special_tokens has no ids for '%s'", L->name, where, name);
            break;
        }
        for (size_t k = 0; k < json_array_size(ids) && !s; k++) {
            const json_t *v = json_array_get(ids, k);
            if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT32_MAX)
                s = rlx__fail(RLX_ERR_FORMAT, "%s: %s.special_tokens['%s'].ids[%zu] is not an id", L->name, where, name,
                              k);
            else
                s = seen_a ? push_id(&p.after, &p.n_after, json_integer_value(v))
                           : push_id(&p.before, &p.n_before, json_integer_value(v));
        }
    }
    if (!s && !seen_a) s = rlx__fail(RLX_ERR_FORMAT, "%s: %s.single has no $A", L->name, where);
    if (s) {
        free(p.before);
        free(p.after);
        return s;
    }
    return add_post(L, p);
}

/* ---- decoders ------------------------------------------------------------------------------- */

static rlx_status parse_dec(tk_load *L, const json_t *o, const char *where, int depth) {
    if (depth > 16) return rlx__fail(RLX_ERR_FORMAT, "%s: %s nests Sequences too deeply", L->name, where);
    if (!json_is_object(o)) return rlx__fail(RLX_ERR_FORMAT, "%s: %s is %s, not an object", L->name, where, jtype(o));
    const char *ty = type_of(o);
    if (!ty) return rlx__fail(RLX_ERR_FORMAT, "%s: %s has no \"type\"", L->name, where);
    rlx_status s = RLX_OK;
    if (!strcmp(ty, "Sequence")) {
        const json_t *a = json_object_get(o, "decoders");
        if (!json_is_array(a))
            return rlx__fail(RLX_ERR_FORMAT, "%s: %s (Sequence) has no \"decoders\" array", L->name, where);
        for (size_t i = 0; i < json_array_size(a); i++) {
            char w[256];
            snprintf(w, sizeof w, "%s.decoders[%zu]", where, i);
            if ((s = parse_dec(L, json_array_get(a, i), w, depth + 1))) return s;
        }
        return RLX_OK;
    }
    tk_dec d = {0};
    const char *str = NULL;
    if (!strcmp(ty, "ByteLevel"))
        d.kind = TK_DEC_BYTELEVEL;
    else if (!strcmp(ty, "WordPiece")) {
        d.kind = TK_DEC_WORDPIECE;
        if ((s = get_str(L, o, "prefix", where, &str)) || (s = pool_str(L, str ? str : "##", &d.prefix)) ||
            (s = get_bool(L, o, "cleanup", where, 1, &d.cleanup)))
            return s;
    } else if (!strcmp(ty, "BPEDecoder")) {
        d.kind = TK_DEC_BPE;
        if ((s = get_str(L, o, "suffix", where, &str)) || (s = pool_str(L, str ? str : "</w>", &d.suffix))) return s;
    } else {
        return rlx__fail(RLX_ERR_UNSUPPORTED,
                         "%s: %s: decoder '%s' is not supported (rlx reads ByteLevel, WordPiece, BPEDecoder, Sequence)",
                         L->name, where, ty);
    }
    rlx_tokenizer *t = L->t;
    tk_dec *nd = realloc(t->decs, (size_t)(t->n_decs + 1) * sizeof *nd);
    if (!nd) return rlx__fail(RLX_ERR_OUT_OF_MEMORY, "out of host memory reading the decoder");
    t->decs = nd;
    nd[t->n_decs++] = d;
    return RLX_OK;
}

/* ---- the model ------------------------------------------------------------------------------ */

static rlx_status set_token(tk_load *L, int64_t id, const char *s, size_t n) {
    rlx_tokenizer *t = L->t;
    if (id >= t->vocab_size) {
        if (id >= L->id_cap) { /* geometric growth: vocabularies arrive one id at a time */
            int64_t nc = L->id_cap ? L->id_cap : 1024;
            while (nc <= id)
                nc *= 2;
            char **ns = realloc(t->id_str, (size_t)nc * sizeof *ns);
            if (!ns) return rlx__fail(RLX_ERR_OUT_OF_MEMORY, "out of host memory for the vocabulary");
            t->id_str = ns;
            uint32_t *nl = realloc(t->id_len, (size_t)nc * sizeof *nl);
            if (!nl) return rlx__fail(RLX_ERR_OUT_OF_MEMORY, "out of host memory for the vocabulary");
            t->id_len = nl;
            L->id_cap = nc;
        }
        for (int64_t i = t->vocab_size; i <= id; i++)
            t->id_str[i] = NULL, t->id_len[i] = 0;
        t->vocab_size = id + 1;
    }
    char *p = rlx__tk_pool_add(t, s, n);
    if (!p) return RLX_ERR_OUT_OF_MEMORY;
    t->id_str[id] = p;
    t->id_len[id] = (uint32_t)n;
    return RLX_OK;
}

static rlx_status parse_vocab(tk_load *L, const json_t *vocab) {
    rlx_tokenizer *t = L->t;
    if (!json_is_object(vocab)) return rlx__fail(RLX_ERR_FORMAT, "%s: model.vocab is not an object", L->name);
    size_t n = json_object_size(vocab);
    int64_t max_id = -1;
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)vocab, key, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= INT32_MAX)
            return rlx__fail(RLX_ERR_FORMAT, "%s: model.vocab['%s'] is not an id in [0, 2^31 - 1)", L->name, key);
        if (json_integer_value(v) > max_id) max_id = json_integer_value(v);
    }
    if (max_id > (int64_t)n * 4 + 1024)
        return rlx__fail(RLX_ERR_FORMAT, "%s: model.vocab has %zu entries but ids up to %lld", L->name, n,
                         (long long)max_id);
    rlx_status s = rlx__tk_map_init(&t->model_vocab, n);
    if (s) return s;
    t->model_vocab_n = (int64_t)n;
    json_object_foreach((json_t *)vocab, key, v) {
        /* jansson keys are NUL-terminated; a token holding NUL is not representable there and
         * `tokenizers` never writes one unescaped, so strlen is the key's length. */
        size_t len = strlen(key);
        int64_t id = json_integer_value(v);
        if ((s = set_token(L, id, key, len))) return s;
        if ((s = rlx__tk_map_put(&t->model_vocab, t->id_str[id], len, (int32_t)id))) return s;
    }
    return RLX_OK;
}

static rlx_status parse_merges(tk_load *L, const json_t *merges) {
    rlx_tokenizer *t = L->t;
    if (!merges || json_is_null(merges)) return RLX_OK;
    if (!json_is_array(merges)) return rlx__fail(RLX_ERR_FORMAT, "%s: model.merges is not an array", L->name);
    size_t n = json_array_size(merges);
    rlx_status s = rlx__tk_pairs_init(&t->merges, n);
    if (s) return s;
    size_t plen = t->continuing_prefix ? strlen(t->continuing_prefix) : 0;
    char *buf = NULL;
    size_t cap = 0;
    for (size_t i = 0; i < n; i++) {
        const json_t *m = json_array_get(merges, i);
        const char *a, *b;
        size_t la, lb;
        if (json_is_string(m)) {
            /* legacy "a b" */
            a = json_string_value(m);
            const char *sp = strchr(a, ' ');
            if (!sp || strchr(sp + 1, ' ')) {
                free(buf);
                return rlx__fail(RLX_ERR_FORMAT, "%s: model.merges[%zu] '%s' is not two tokens separated by one space",
                                 L->name, i, a);
            }
            la = (size_t)(sp - a);
            b = sp + 1;
            lb = strlen(b);
        } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
                   json_is_string(json_array_get(m, 1))) {
            a = json_string_value(json_array_get(m, 0));
            b = json_string_value(json_array_get(m, 1));
            la = strlen(a);
            lb = strlen(b);
        } else {
            free(buf);
            return rlx__fail(RLX_ERR_FORMAT, "%s: model.merges[%zu] is neither \"a b\" nor [\"a\", \"b\"]", L->name, i);
        }
        int32_t ia = rlx__tk_map_get(&t->model_vocab, a, la), ib = rlx__tk_map_get(&t->model_vocab, b, lb);
        if (ia < 0 || ib < 0) {
            free(buf);
            return rlx__fail(RLX_ERR_FORMAT, "%s: model.merges[%zu]: '%.*s' is not in the vocabulary", L->name, i,
                             (int)(ia < 0 ? la : lb), ia < 0 ? a : b);
        }
        /* the merged token: a + b, without b's continuing-subword prefix */
        size_t skip = plen && lb >= plen && !memcmp(b, t->continuing_prefix, plen) ? plen : 0;
        if ((s = rlx__tk_reserve((void **)&buf, &cap, la + lb + 1, 1, "a merge"))) return s;
        memcpy(buf, a, la);
        memcpy(buf + la, b + skip, lb - skip);
        int32_t im = rlx__tk_map_get(&t->model_vocab, buf, la + lb - skip);
        if (im < 0) {
            s = rlx__fail(RLX_ERR_FORMAT, "%s: model.merges[%zu]: the merged token '%.*s' is not in the vocabulary",
                          L->name, i, (int)(la + lb - skip), buf);
            free(buf);
            return s;
        }
        rlx__tk_pairs_put(&t->merges, ia, ib, (int32_t)i, im);
    }
    free(buf);
    return RLX_OK;
}

static rlx_status parse_model(tk_load *L, const json_t *m) {
    rlx_tokenizer *t = L->t;
    if (!json_is_object(m)) return rlx__fail(RLX_ERR_FORMAT, "%s: \"model\" is missing or not an object", L->name);
    const char *ty = type_of(m);
    if (!ty) {
        /* files written before models were tagged: tell them apart by their fields */
        if (json_object_get(m, "merges"))
            ty = "BPE";
        else if (json_object_get(m, "max_input_chars_per_word") || json_object_get(m, "continuing_subword_prefix"))
            ty = "WordPiece";
        else if (json_is_array(json_object_get(m, "vocab")))
            ty = "Unigram";
        else
            ty = "WordLevel";
    }
    rlx_status s;
    const char *str;
    if (!strcmp(ty, "BPE")) {
        t->model = RLX_TOKENIZER_BPE;
        const json_t *dr = json_object_get(m, "dropout");
        if (dr && !json_is_null(dr) && !(json_is_number(dr) && json_number_value(dr) == 0.0))
            return rlx__fail(RLX_ERR_UNSUPPORTED,
                             "%s: model.dropout %g: BPE dropout is random; rlx runs deterministic BPE only", L->name,
                             json_number_value(dr));
        if ((s = get_str(L, m, "unk_token", "model", &str)) || (s = pool_str(L, str, &t->unk_token)) ||
            (s = get_str(L, m, "continuing_subword_prefix", "model", &str)) ||
            (s = pool_str(L, str, &t->continuing_prefix)) || (s = get_str(L, m, "end_of_word_suffix", "model", &str)) ||
            (s = pool_str(L, str, &t->end_suffix)) || (s = get_bool(L, m, "fuse_unk", "model", 0, &t->fuse_unk)) ||
            (s = get_bool(L, m, "byte_fallback", "model", 0, &t->byte_fallback)) ||
            (s = get_bool(L, m, "ignore_merges", "model", 0, &t->ignore_merges)))
            return s;
        if (t->continuing_prefix && !*t->continuing_prefix) t->continuing_prefix = NULL;
        if (t->end_suffix && !*t->end_suffix) t->end_suffix = NULL;
        if ((s = parse_vocab(L, json_object_get(m, "vocab"))) || (s = parse_merges(L, json_object_get(m, "merges"))))
            return s;
        for (int b = 0; b < 256; b++) {
            char name[8];
            snprintf(name, sizeof name, "<0x%02X>", b);
            t->byte_fallback_ids[b] = rlx__tk_map_get(&t->model_vocab, name, 6);
        }
    } else if (!strcmp(ty, "WordPiece")) {
        t->model = RLX_TOKENIZER_WORDPIECE;
        const json_t *mx = json_object_get(m, "max_input_chars_per_word");
        t->max_input_chars_per_word = 100;
        if (mx && !json_is_null(mx)) {
            if (!json_is_integer(mx) || json_integer_value(mx) < 0)
                return rlx__fail(RLX_ERR_FORMAT, "%s: model.max_input_chars_per_word is not a non-negative integer",
                                 L->name);
            t->max_input_chars_per_word = json_integer_value(mx);
        }
        if ((s = get_str(L, m, "unk_token", "model", &str)) || (s = pool_str(L, str ? str : "[UNK]", &t->unk_token)) ||
            (s = get_str(L, m, "continuing_subword_prefix", "model", &str)) ||
            (s = pool_str(L, str ? str : "##", &t->continuing_prefix)))
            return s;
        if ((s = parse_vocab(L, json_object_get(m, "vocab")))) return s;
    } else {
        return rlx__fail(RLX_ERR_UNSUPPORTED, "%s: model type '%s' is not supported (rlx reads BPE and WordPiece)",
                         L->name, ty);
    }
    t->unk_id = t->unk_token ? rlx__tk_map_get(&t->model_vocab, t->unk_token, strlen(t->unk_token)) : -1;
    return RLX_OK;
}

/* ---- added tokens --------------------------------------------------------------------------- */

static rlx_status trie_add(tk_trie *tr, const char *s, size_t n, int32_t added) {
    if (!tr->nodes) {
        tr->cap = 64;
        if (!(tr->nodes = malloc((size_t)tr->cap * sizeof *tr->nodes)))
            return rlx__fail(RLX_ERR_OUT_OF_MEMORY, "out of host memory for the added tokens");
        tr->nodes[0] = (tk_trie_node){-1, -1, -1, 0};
        tr->n = 1;
    }
    tr->first[(uint8_t)s[0]] = 1;
    int32_t node = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)s[i];
        int32_t ch = tr->nodes[node].child;
        while (ch >= 0 && tr->nodes[ch].byte != c)
            ch = tr->nodes[ch].sibling;
        if (ch < 0) {
            if (tr->n == tr->cap) {
                tk_trie_node *nn = realloc(tr->nodes, (size_t)tr->cap * 2 * sizeof *nn);
                if (!nn) return rlx__fail(RLX_ERR_OUT_OF_MEMORY, "out of host memory for the added tokens");
                tr->nodes = nn;
                tr->cap *= 2;
            }
            ch = tr->n++;
            tr->nodes[ch] = (tk_trie_node){-1, tr->nodes[node].child, -1, c};
            tr->nodes[node].child = ch;
        }
        node = ch;
    }
    tr->nodes[node].added = added;
    return RLX_OK;
}

static rlx_status parse_added(tk_load *L, const json_t *a) {
    rlx_tokenizer *t = L->t;
    if (!a || json_is_null(a)) return RLX_OK;
    if (!json_is_array(a)) return rlx__fail(RLX_ERR_FORMAT, "%s: \"added_tokens\" is not an array", L->name);
    size_t n = json_array_size(a);
    t->added = rlx__calloc(n ? n : 1, sizeof *t->added, "the added tokens");
    if (!t->added) return RLX_ERR_OUT_OF_MEMORY;
    rlx_status s = rlx__tk_map_init(&t->added_vocab, n);
    if (s) return s;
    /* the next id for a token the model does not know, as `tokenizers` computes it */
    int64_t max_added = -1;
    for (size_t i = 0; i < n; i++) {
        char where[64];
        snprintf(where, sizeof where, "added_tokens[%zu]", i);
        const json_t *o = json_array_get(a, i);
        if (!json_is_object(o)) return rlx__fail(RLX_ERR_FORMAT, "%s: %s is not an object", L->name, where);
        const char *content;
        tk_added tk = {0};
        if ((s = get_str(L, o, "content", where, &content))) return s;
        if (!content) return rlx__fail(RLX_ERR_FORMAT, "%s: %s has no \"content\"", L->name, where);
        if ((s = get_bool(L, o, "special", where, 0, &tk.special)) ||
            (s = get_bool(L, o, "single_word", where, 0, &tk.single_word)) ||
            (s = get_bool(L, o, "lstrip", where, 0, &tk.lstrip)) ||
            (s = get_bool(L, o, "rstrip", where, 0, &tk.rstrip)) ||
            (s = get_bool(L, o, "normalized", where, !tk.special, &tk.normalized)))
            return s;
        size_t len = strlen(content);
        if (!len) continue; /* `tokenizers` ignores empty tokens */
        int32_t id = rlx__tk_map_get(&t->added_vocab, content, len);
        int existing = id >= 0;
        if (id < 0) id = rlx__tk_map_get(&t->model_vocab, content, len);
        if (id < 0) {
            int64_t next = t->model_vocab_n;
            if (max_added >= 0)
                next = (max_added >= t->model_vocab_n || t->model_vocab_n == 0) ? max_added + 1 : t->model_vocab_n;
            if (next >= INT32_MAX) return rlx__fail(RLX_ERR_FORMAT, "%s: too many added tokens", L->name);
            id = (int32_t)next;
        }
        if (id > max_added) max_added = id;
        if ((s = set_token(L, id, content, len))) return s;
        tk.id = id;
        tk.content = t->id_str[id];
        tk.len = (uint32_t)len;
        tk.match = tk.content;
        tk.match_len = tk.len;
        if ((s = rlx__tk_map_put(&t->added_vocab, tk.content, len, id))) return s;
        if (existing) {
            for (int k = 0; k < t->n_added; k++)
                if (t->added[k].id == id) t->added[k] = tk;
        } else {
            t->added[t->n_added++] = tk;
        }
    }
    return RLX_OK;
}

/* After the normalizer is known: normalized tokens match (and decode as) their normalized form. */
static rlx_status finish_added(tk_load *L) {
    rlx_tokenizer *t = L->t;
    rlx_status s;
    tk_map specials = {0};
    if ((s = rlx__tk_map_init(&specials, (size_t)t->n_added))) return s;
    for (int k = 0; k < t->n_added && !s; k++) {
        tk_added *a = &t->added[k];
        if (a->special) s = rlx__tk_map_put(&specials, a->content, a->len, a->id);
        if (!s && a->normalized && t->n_norms) {
            char *norm;
            size_t nl;
            if ((s = rlx__tk_normalize_str(t, a->content, a->len, &norm, &nl))) break;
            if (nl != a->len || memcmp(norm, a->content, nl)) {
                char *p = rlx__tk_pool_add(t, norm, nl);
                if (!p)
                    s = RLX_ERR_OUT_OF_MEMORY;
                else {
                    a->match = p;
                    a->match_len = (uint32_t)nl;
                    t->id_str[a->id] = p;
                    t->id_len[a->id] = (uint32_t)nl;
                }
            }
            free(norm);
        }
    }
    for (int k = 0; k < t->n_added && !s; k++) {
        tk_added *a = &t->added[k];
        if (a->match_len) s = trie_add(a->normalized ? &t->trie_norm : &t->trie_raw, a->match, a->match_len, k);
    }
    if (!s && !(t->is_special = rlx__calloc((size_t)t->vocab_size, 1, "the special-token flags")))
        s = RLX_ERR_OUT_OF_MEMORY;
    /* decode skips an id whose string is a special token's content (`tokenizers` compares strings) */
    for (int64_t id = 0; !s && id < t->vocab_size; id++)
        if (t->id_str[id] && rlx__tk_map_get(&specials, t->id_str[id], t->id_len[id]) >= 0) t->is_special[id] = 1;
    rlx__tk_map_free(&specials);
    return s;
}

/* ---- tokenizer_config.json ------------------------------------------------------------------ */

static void read_config(rlx_tokenizer *t, const json_t *cfg) {
    static const char *names[7] = {"bos_token", "eos_token", "unk_token", "pad_token",
                                   "cls_token", "sep_token", "mask_token"};
    if (!json_is_object(cfg)) return;
    for (int k = 0; k < 7; k++) {
        const json_t *v = json_object_get(cfg, names[k]);
        if (json_is_object(v)) v = json_object_get(v, "content");
        if (!json_is_string(v)) continue;
        int32_t id = rlx_tokenizer_token_to_id(t, json_string_value(v));
        if (id >= 0) t->special_ids[k] = id;
    }
    const json_t *ml = json_object_get(cfg, "model_max_length");
    /* transformers writes 1e30 for "no limit" */
    if (json_is_number(ml) && json_number_value(ml) >= 1 && json_number_value(ml) < 1e12)
        t->model_max_length = (int64_t)json_number_value(ml);
}

/* ---- open ----------------------------------------------------------------------------------- */

void rlx_tokenizer_destroy(rlx_tokenizer *t) {
    if (!t) return;
    rlx__tk_map_free(&t->model_vocab);
    rlx__tk_map_free(&t->added_vocab);
    free(t->merges.slots);
    for (int i = 0; i < t->n_pres; i++)
        if (t->pres[i].re) pcre2_code_free(t->pres[i].re);
    for (int i = 0; i < t->n_posts; i++) {
        free(t->posts[i].before);
        free(t->posts[i].after);
    }
    free(t->norms);
    free(t->pres);
    free(t->posts);
    free(t->decs);
    free(t->added);
    free(t->trie_raw.nodes);
    free(t->trie_norm.nodes);
    free(t->is_special);
    free(t->id_str);
    free(t->id_len);
    rlx__tk_pool_free(t);
    free(t);
}

static rlx_status load(const char *json, size_t json_bytes, const char *config, const char *stmap, const char *name,
                       rlx_tokenizer **out) {
    *out = NULL;
    json_error_t err;
    json_t *root = json_loadb(json, json_bytes, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &err);
    if (!root)
        return rlx__fail(RLX_ERR_FORMAT, "%s: not valid JSON (line %d, column %d: %s)", name, err.line, err.column,
                         err.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return rlx__fail(RLX_ERR_FORMAT, "%s: the top level is not a JSON object", name);
    }
    rlx_tokenizer *t = rlx__calloc(1, sizeof *t, "a tokenizer");
    if (!t) {
        json_decref(root);
        return RLX_ERR_OUT_OF_MEMORY;
    }
    for (int k = 0; k < 7; k++)
        t->special_ids[k] = -1;
    t->unk_id = -1;
    tk_load L = {t, name, 0};
    rlx_status s = RLX_OK;
    const json_t *ver = json_object_get(root, "version");
    if (ver && !(json_is_string(ver) && !strcmp(json_string_value(ver), "1.0")))
        s = rlx__fail(RLX_ERR_UNSUPPORTED, "%s: version %s%s%s is not 1.0, the tokenizer.json format rlx reads", name,
                      json_is_string(ver) ? "'" : "", json_is_string(ver) ? json_string_value(ver) : jtype(ver),
                      json_is_string(ver) ? "'" : "");
    const json_t *v;
    if (!s) s = parse_model(&L, json_object_get(root, "model"));
    if (!s && (v = json_object_get(root, "normalizer")) && !json_is_null(v))
        s = parse_normalizer(&L, v, "normalizer", 0);
    if (!s && (v = json_object_get(root, "pre_tokenizer")) && !json_is_null(v))
        s = parse_pre(&L, v, "pre_tokenizer", 0);
    if (!s && (v = json_object_get(root, "post_processor")) && !json_is_null(v))
        s = parse_post(&L, v, "post_processor", 0);
    if (!s && (v = json_object_get(root, "decoder")) && !json_is_null(v)) {
        t->has_decoder = 1;
        s = parse_dec(&L, v, "decoder", 0);
    }
    if (!s) s = parse_added(&L, json_object_get(root, "added_tokens"));
    if (!s) s = finish_added(&L);
    if (!s && t->vocab_size == 0) s = rlx__fail(RLX_ERR_FORMAT, "%s: the vocabulary is empty", name);
    /* the specials a post-processor adds must be ids of this vocabulary */
    for (int k = 0; !s && k < t->n_posts; k++) {
        const tk_post *pp = &t->posts[k];
        for (int64_t i = 0; !s && i < pp->n_before + pp->n_after; i++) {
            int32_t id = i < pp->n_before ? pp->before[i] : pp->after[i - pp->n_before];
            if (id >= t->vocab_size)
                s = rlx__fail(RLX_ERR_FORMAT, "%s: post_processor: special token id %ld is outside the vocabulary [0, %lld)", name,
                              (long)id, (long long)t->vocab_size);
        }
    }
    if (!s) {
        const json_t *tr = json_object_get(root, "truncation");
        const json_t *ml = json_object_get(tr, "max_length");
        if (json_is_integer(ml) && json_integer_value(ml) > 0) t->file_truncation = json_integer_value(ml);
        if (t->unk_id >= 0) t->special_ids[RLX_SPECIAL_UNK] = t->unk_id;
        const char *texts[2] = {config, stmap}, *which[2] = {"tokenizer_config.json", "special_tokens_map.json"};
        for (int k = 0; k < 2 && !s; k++) {
            if (!texts[k] || !*texts[k]) continue;
            json_t *j = json_loads(texts[k], 0, &err);
            if (!j) s = rlx__fail(RLX_ERR_FORMAT, "%s: not valid JSON (line %d: %s)", which[k], err.line, err.text);
            read_config(t, j);
            json_decref(j);
        }
    }
    json_decref(root);
    if (s) {
        rlx_tokenizer_destroy(t);
        return s;
    }
    *out = t;
    return RLX_OK;
}

rlx_status rlx_tokenizer_open_json(const char *json, size_t json_bytes, const char *config_json, const char *name,
                                   rlx_tokenizer **out) {
    if (!out) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_tokenizer_open_json: out is NULL");
    *out = NULL;
    if (!json) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_tokenizer_open_json: json is NULL");
    return load(json, json_bytes, config_json, NULL, name ? name : "tokenizer.json", out);
}

/* Reads a whole file; *out NULL (and RLX_OK) when it does not exist and optional is set. */
static rlx_status slurp(const char *path, int optional, char **out, size_t *n) {
    *out = NULL;
    if (n) *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (optional && errno == ENOENT) return RLX_OK;
        return rlx__fail(RLX_ERR_IO, "%s: cannot open (%s)", path, strerror(errno));
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    rlx_status s = RLX_OK;
    for (;;) {
        if ((s = rlx__tk_reserve((void **)&buf, &cap, len + 65536 + 1, 1, path))) break;
        size_t r = fread(buf + len, 1, cap - len - 1, f);
        len += r;
        if (r == 0) {
            if (ferror(f)) s = rlx__fail(RLX_ERR_IO, "%s: read error", path);
            break;
        }
    }
    fclose(f);
    if (s) {
        free(buf);
        return s;
    }
    buf[len] = '\0';
    *out = buf;
    if (n) *n = len;
    return RLX_OK;
}

rlx_status rlx_tokenizer_open(const char *path, rlx_tokenizer **out) {
    if (!out) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_tokenizer_open: out is NULL");
    *out = NULL;
    if (!path) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_tokenizer_open: path is NULL");
    struct stat st;
    if (stat(path, &st) != 0) return rlx__fail(RLX_ERR_IO, "%s: %s", path, strerror(errno));
    size_t pl = strlen(path);
    char *file = malloc(pl + 64), *dir = malloc(pl + 64);
    if (!file || !dir) {
        free(file);
        free(dir);
        return rlx__fail(RLX_ERR_OUT_OF_MEMORY, "out of host memory");
    }
    if (S_ISDIR(st.st_mode)) {
        snprintf(dir, pl + 64, "%s", path);
        snprintf(file, pl + 64, "%s/tokenizer.json", path);
    } else {
        snprintf(file, pl + 64, "%s", path);
        const char *slash = strrchr(path, '/');
        if (slash)
            snprintf(dir, pl + 64, "%.*s", (int)(slash - path), path);
        else
            snprintf(dir, pl + 64, ".");
    }
    char *json = NULL, *cfg = NULL, *stm = NULL, *p = malloc(pl + 64);
    size_t n = 0;
    rlx_status s = p ? RLX_OK : rlx__fail(RLX_ERR_OUT_OF_MEMORY, "out of host memory");
    if (!s && S_ISDIR(st.st_mode) && stat(file, &st) != 0)
        s = rlx__fail(RLX_ERR_IO, "%s: missing: the model directory has no tokenizer.json (give token ids instead)",
                      file);
    if (!s) s = slurp(file, 0, &json, &n);
    if (!s) {
        snprintf(p, pl + 64, "%s/tokenizer_config.json", dir);
        s = slurp(p, 1, &cfg, NULL);
    }
    if (!s) {
        snprintf(p, pl + 64, "%s/special_tokens_map.json", dir);
        s = slurp(p, 1, &stm, NULL);
    }
    if (!s) s = load(json, n, cfg, stm, file, out);
    free(json);
    free(cfg);
    free(stm);
    free(p);
    free(file);
    free(dir);
    return s;
}

/* ---- lookups -------------------------------------------------------------------------------- */

rlx_tokenizer_model rlx_tokenizer_model_kind(const rlx_tokenizer *t) { return t ? t->model : RLX_TOKENIZER_BPE; }

int64_t rlx_tokenizer_vocab_size(const rlx_tokenizer *t) { return t ? t->vocab_size : 0; }

int64_t rlx_tokenizer_model_max_length(const rlx_tokenizer *t) {
    if (!t) return 0;
    return t->model_max_length ? t->model_max_length : t->file_truncation;
}

int32_t rlx_tokenizer_token_to_id(const rlx_tokenizer *t, const char *token) {
    if (!t || !token) return -1;
    size_t n = strlen(token);
    int32_t id = rlx__tk_map_get(&t->added_vocab, token, n);
    return id >= 0 ? id : rlx__tk_map_get(&t->model_vocab, token, n);
}

const char *rlx_tokenizer_id_to_token(const rlx_tokenizer *t, int32_t id) {
    if (!t || id < 0 || id >= t->vocab_size) return NULL;
    return t->id_str[id];
}

int rlx_tokenizer_is_special(const rlx_tokenizer *t, int32_t id) {
    if (!t || id < 0 || id >= t->vocab_size) return 0;
    return t->is_special[id];
}

int32_t rlx_tokenizer_special_id(const rlx_tokenizer *t, rlx_special_token which) {
    if (!t || (int)which < 0 || (int)which >= 7) return -1;
    return t->special_ids[which];
}
