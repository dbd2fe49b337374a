/* Split patterns on PCRE2. `tokenizers` runs them on Oniguruma (Ruby syntax, UTF-8), whose
 * classes differ from PCRE2's in a few places; the pattern is rewritten so both mean the same:
 *   \s  Oniguruma: White_Space (TAB..CR, space, NEL, NBSP, U+1680, U+2000..200A, U+2028/9,
 *       U+202F, U+205F, U+3000). PCRE2 with UCP also takes U+180E, so \s becomes that class.
 *   \w  Oniguruma: letters, marks, numbers, connector punctuation. PCRE2 with UCP: L, N and '_'.
 *   \uHHHH (Ruby) becomes \x{HHHH}; ^ and $ are line anchors in Ruby (PCRE2_MULTILINE).
 * Anything else is passed through: the split patterns of Llama 3, GPT-2, Qwen, SmolLM and
 * DeepSeek only use \p{..}, \s, classes, lookahead and (?i:...), which mean the same in both. */
#include "tokenizer/tok_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WS_ITEMS   "\\t-\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"
#define WORD_ITEMS "\\p{L}\\p{M}\\p{N}\\p{Pc}"

typedef struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t nc = (b->n + n + 1) * 2;
        char *np = realloc(b->p, nc);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}
#define PUTS(b, s) put(b, s, strlen(s))

/* Rewrites an Oniguruma pattern (see above); literal: quote every character. */
static char *translate(const char *pat, int literal) {
    sbuf b = {0};
    size_t n = strlen(pat);
    if (literal) {
        PUTS(&b, "\\Q");
        for (size_t i = 0; i < n; i++) {
            if (pat[i] == '\\' && i + 1 < n && pat[i + 1] == 'E')
                PUTS(&b, "\\E\\\\E\\Q"), i++;
            else
                put(&b, pat + i, 1);
        }
        PUTS(&b, "\\E");
        return b.oom ? (free(b.p), NULL) : b.p;
    }
    int in_class = 0;    /* depth of [...] (Oniguruma nests classes) */
    int class_start = 0; /* just after '[' or '[^': a ']' here is literal */
    for (size_t i = 0; i < n; i++) {
        char c = pat[i];
        if (c == '\\' && i + 1 < n) {
            char e = pat[i + 1];
            if (e == 's' || e == 'S' || e == 'w' || e == 'W') {
                const char *items = (e == 's' || e == 'S') ? WS_ITEMS : WORD_ITEMS;
                int neg = e == 'S' || e == 'W';
                if (!in_class) {
                    PUTS(&b, neg ? "[^" : "[");
                    PUTS(&b, items);
                    PUTS(&b, "]");
                } else if (!neg) {
                    PUTS(&b, items);
                } else {
                    put(&b, pat + i, 2); /* \S or \W inside a class: PCRE2's own meaning */
                }
                i++;
                class_start = 0;
                continue;
            }
            if (e == 'u' && i + 5 < n + 0 && strspn(pat + i + 2, "0123456789abcdefABCDEF") >= 4) {
                PUTS(&b, "\\x{");
                put(&b, pat + i + 2, 4);
                PUTS(&b, "}");
                i += 5;
                class_start = 0;
                continue;
            }
            put(&b, pat + i, 2);
            i++;
            class_start = 0;
            continue;
        }
        if (c == '[') {
            if (in_class && i + 1 < n && pat[i + 1] == ':') {
                /* POSIX [:alpha:] inside a class */
                const char *end = strstr(pat + i, ":]");
                if (end) {
                    put(&b, pat + i, (size_t)(end + 2 - (pat + i)));
                    i = (size_t)(end + 1 - pat);
                    continue;
                }
            }
            in_class++;
            PUTS(&b, "[");
            if (i + 1 < n && pat[i + 1] == '^') {
                PUTS(&b, "^");
                i++;
            }
            class_start = 1;
            continue;
        }
        if (c == ']' && in_class && !class_start) {
            in_class--;
            PUTS(&b, "]");
            continue;
        }
        class_start = 0;
        put(&b, &c, 1);
    }
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    if (!b.p) b.p = calloc(1, 1);
    return b.p;
}

rlx_status rlx__tk_compile_regex(const char *pattern, int literal, const char *where, pcre2_code **out, int *jit) {
    *out = NULL;
    *jit = 0;
    char *p = translate(pattern, literal);
    if (!p) return rlx__fail(RLX_ERR_OUT_OF_MEMORY, "out of host memory compiling %s", where);
    int err;
    PCRE2_SIZE off;
    pcre2_compile_context *cc = pcre2_compile_context_create(NULL);
    if (!cc) {
        free(p);
        return rlx__fail(RLX_ERR_OUT_OF_MEMORY, "out of host memory compiling %s", where);
    }
    pcre2_set_newline(cc, PCRE2_NEWLINE_LF);
    pcre2_code *re =
        pcre2_compile((PCRE2_SPTR)p, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE, &err, &off, cc);
    pcre2_compile_context_free(cc);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        rlx_status s = rlx__fail(RLX_ERR_UNSUPPORTED, "%s: regex '%s' does not compile with PCRE2 at offset %zu: %s",
                                 where, pattern, (size_t)off, (const char *)msg);
        free(p);
        return s;
    }
    free(p);
    /* JIT when the platform has it; pcre2_match falls back to the interpreter otherwise. */
    *jit = pcre2_jit_compile(re, PCRE2_JIT_COMPLETE) == 0;
    *out = re;
    return RLX_OK;
}
