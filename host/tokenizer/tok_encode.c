/* Encoding, step by step as `tokenizers` does it (tokenizer/mod.rs encode_single_sequence):
 *   1. added tokens whose "normalized" is false are split out of the raw text;
 *   2. each remaining segment is normalized, then the normalized added tokens are split out;
 *   3. the pre-tokenizers split the text pieces further (ByteLevel also maps bytes to its
 *      printable alphabet); empty pieces are dropped after every split;
 *   4. the model turns each piece into ids (BPE merges by rank / WordPiece longest match);
 *   5. truncation (leaving room for the specials), then the post-processors add the specials.
 * No offsets are tracked: rlx needs ids only. */
#include "tokenizer/tok_internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* the common case (room left) without a call */
#define RESERVE(p, cap, need, what)                                                                                    \
    ((need) <= (cap) ? RLX_OK : rlx__tk_reserve((void **)&(p), &(cap), (need), sizeof *(p), what))

/* ---- normalizers ---------------------------------------------------------------------------- */

static int is_ascii(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if ((uint8_t)s[i] >= 0x80) return 0;
    return 1;
}

static int is_chinese(int32_t c) {
    /* BERT's definition of a "Chinese character": the CJK Unified Ideographs blocks */
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
           (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* utf8proc_map into out (NFC/NFD/NFKC/NFKD) */
static rlx_status unicode_form(const char *in, size_t n, int options, char **out, size_t *cap, size_t *len) {
    if (is_ascii(in, n)) { /* ASCII is invariant under every normalization form */
        rlx_status s = rlx__tk_reserve((void **)out, cap, n + 1, 1, "normalized text");
        if (s) return s;
        memcpy(*out, in, n);
        *len = n;
        return RLX_OK;
    }
    utf8proc_uint8_t *dst = NULL;
    utf8proc_ssize_t r =
        utf8proc_map((const utf8proc_uint8_t *)in, (utf8proc_ssize_t)n, &dst, (utf8proc_option_t)options);
    if (r < 0) {
        free(dst);
        return rlx__fail(r == UTF8PROC_ERROR_NOMEM ? RLX_ERR_OUT_OF_MEMORY : RLX_ERR_INTERNAL,
                         "normalizing %zu bytes: %s", n, utf8proc_errmsg(r));
    }
    rlx_status s = rlx__tk_reserve((void **)out, cap, (size_t)r + 1, 1, "normalized text");
    if (!s) {
        memcpy(*out, dst, (size_t)r);
        *len = (size_t)r;
    }
    free(dst);
    return s;
}

/* One normalizer: in[0..n) -> *out. */
static rlx_status norm_step(const tk_norm *nm, const char *in, size_t n, char **out, size_t *cap, size_t *len) {
    rlx_status s;
    const uint8_t *u = (const uint8_t *)in;
    switch (nm->kind) {
    case TK_NORM_NFC: return unicode_form(in, n, UTF8PROC_STABLE | UTF8PROC_COMPOSE, out, cap, len);
    case TK_NORM_NFD: return unicode_form(in, n, UTF8PROC_STABLE | UTF8PROC_DECOMPOSE, out, cap, len);
    case TK_NORM_NFKC: return unicode_form(in, n, UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT, out, cap, len);
    case TK_NORM_NFKD:
        return unicode_form(in, n, UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT, out, cap, len);
    case TK_NORM_STRIP: {
        size_t a = 0, b = n;
        int32_t cp;
        while (nm->strip_left && a < b) {
            int k = rlx__tk_utf8_next(u + a, b - a, &cp);
            if (!rlx__tk_is_whitespace(cp)) break;
            a += (size_t)k;
        }
        while (nm->strip_right && b > a) {
            size_t p = b - 1;
            while (p > a && (u[p] & 0xC0) == 0x80)
                p--;
            rlx__tk_utf8_next(u + p, b - p, &cp);
            if (!rlx__tk_is_whitespace(cp)) break;
            b = p;
        }
        if ((s = rlx__tk_reserve((void **)out, cap, b - a + 1, 1, "normalized text"))) return s;
        memcpy(*out, in + a, b - a);
        *len = b - a;
        return RLX_OK;
    }
    case TK_NORM_LOWERCASE:
    case TK_NORM_STRIP_ACCENTS:
    case TK_NORM_STRIP_MN:
    case TK_NORM_BERT: break;
    }
    /* per-character passes; at most 3 code points out per one in (a CJK character padded) */
    size_t need;
    if (!rlx__mul_size(n, 3, &need)) return rlx__fail(RLX_ERR_OUT_OF_MEMORY, "text of %zu bytes is too large", n);
    if ((s = rlx__tk_reserve((void **)out, cap, need + 1, 1, "normalized text"))) return s;
    char *o = *out;
    size_t w = 0;
    for (size_t i = 0; i < n;) {
        int32_t cp;
        int k = rlx__tk_utf8_next(u + i, n - i, &cp);
        i += (size_t)k;
        if (nm->kind == TK_NORM_STRIP_ACCENTS || nm->kind == TK_NORM_STRIP_MN) {
            utf8proc_category_t c = cp < 0x300 ? UTF8PROC_CATEGORY_LL : utf8proc_category(cp);
            if (c == UTF8PROC_CATEGORY_MN) continue;
            if (nm->kind == TK_NORM_STRIP_ACCENTS && (c == UTF8PROC_CATEGORY_MC || c == UTF8PROC_CATEGORY_ME)) continue;
            w += (size_t)rlx__tk_utf8_put(o + w, cp);
        } else if (nm->kind == TK_NORM_LOWERCASE) {
            if (cp == 0x130) { /* the one unconditional multi-character lowercase mapping */
                memcpy(o + w, "i\xCC\x87", 3);
                w += 3;
            } else {
                w += (size_t)rlx__tk_utf8_put(o + w, cp < 0x80 ? (cp >= 'A' && cp <= 'Z' ? cp + 32 : cp)
                                                               : utf8proc_tolower(cp));
            }
        } else { /* BertNormalizer's clean_text and handle_chinese_chars */
            if (nm->clean_text) {
                if (cp == 0 || cp == 0xFFFD) continue;
                if (cp == '\t' || cp == '\n' || cp == '\r')
                    cp = ' ';
                else if (cp < 0x20 || cp == 0x7F)
                    continue;
                else if (cp >= 0x80) {
                    utf8proc_category_t c = utf8proc_category(cp);
                    /* controls go (NEL too: the control test comes first), white space becomes ' ' */
                    if (c == UTF8PROC_CATEGORY_CC || c == UTF8PROC_CATEGORY_CF || c == UTF8PROC_CATEGORY_CO) continue;
                    if (rlx__tk_is_whitespace(cp)) {
                        cp = ' ';
                    }
                }
            }
            if (nm->handle_chinese && is_chinese(cp)) {
                o[w++] = ' ';
                w += (size_t)rlx__tk_utf8_put(o + w, cp);
                o[w++] = ' ';
            } else {
                w += (size_t)rlx__tk_utf8_put(o + w, cp);
            }
        }
    }
    *len = w;
    return RLX_OK;
}

/* Runs every normalizer over in[0..n); the result is in w->na or w->nb (*res, *res_len). */
static rlx_status normalize(const rlx_tokenizer *t, tk_work *w, const char *in, size_t n, const char **res,
                            size_t *res_len) {
    const char *cur = in;
    size_t cur_len = n;
    int which = 0; /* next output: 0 = na, 1 = nb */
    rlx_status s;
    for (int k = 0; k < t->n_norms; k++) {
        const tk_norm *nm = &t->norms[k];
        /* BertNormalizer is up to three passes: clean/CJK, accents (NFD, then marks out), lowercase */
        tk_norm steps[4];
        int n_steps = 0;
        if (nm->kind == TK_NORM_BERT) {
            if (nm->clean_text || nm->handle_chinese) steps[n_steps++] = *nm;
            if (nm->strip_accents) {
                steps[n_steps++] = (tk_norm){.kind = TK_NORM_NFD};
                steps[n_steps++] = (tk_norm){.kind = TK_NORM_STRIP_MN};
            }
            if (nm->lowercase) steps[n_steps++] = (tk_norm){.kind = TK_NORM_LOWERCASE};
        } else {
            steps[n_steps++] = *nm;
        }
        for (int j = 0; j < n_steps; j++) {
            char **out = which ? &w->nb : &w->na;
            size_t *cap = which ? &w->nb_cap : &w->na_cap;
            size_t len = 0;
            if ((s = norm_step(&steps[j], cur, cur_len, out, cap, &len))) return s;
            cur = *out;
            cur_len = len;
            which ^= 1;
        }
    }
    *res = cur;
    *res_len = cur_len;
    return RLX_OK;
}

rlx_status rlx__tk_normalize_str(const rlx_tokenizer *t, const char *in, size_t n, char **out, size_t *out_len) {
    tk_work w = {0};
    const char *r;
    size_t rl;
    rlx_status s = normalize(t, &w, in, n, &r, &rl);
    *out = NULL;
    if (!s && !(*out = malloc(rl + 1))) s = rlx__fail(RLX_ERR_OUT_OF_MEMORY, "out of host memory");
    if (!s) {
        memcpy(*out, r, rl);
        (*out)[rl] = '\0';
        *out_len = rl;
    }
    rlx__tk_work_free(&w);
    return s;
}

/* ---- added tokens --------------------------------------------------------------------------- */

static rlx_status push_piece(tk_pieces *out, size_t off, size_t len, int32_t added) {
    if (added < 0 && len == 0) return RLX_OK; /* empty splits are dropped */
    if (off > UINT32_MAX || len > UINT32_MAX)
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "a text of 4 GiB or more cannot be encoded");
    rlx_status s = RESERVE(out->p, out->cap, out->n + 1, "the pieces of a text");
    if (s) return s;
    out->p[out->n++] = (tk_piece){(uint32_t)off, (uint32_t)len, added};
    return RLX_OK;
}

static size_t prev_start(const uint8_t *s, size_t end) {
    size_t p = end - 1;
    while (p > 0 && (s[p] & 0xC0) == 0x80)
        p--;
    return p;
}

/* Splits s[0..n) on the trie's tokens (leftmost-longest), appending pieces with offsets + base. */
static rlx_status split_added(const rlx_tokenizer *t, const tk_trie *tr, const char *text, size_t n, size_t base,
                              tk_pieces *out) {
    const uint8_t *s = (const uint8_t *)text;
    size_t pos = 0, start_offset = 0;
    rlx_status st;
    int32_t cp;
    while (tr->nodes && pos < n) {
        if (!tr->first[s[pos]]) {
            pos++;
            continue;
        }
        int32_t node = 0, best = -1;
        size_t best_end = 0;
        for (size_t i = pos; i < n; i++) {
            int32_t ch = tr->nodes[node].child;
            while (ch >= 0 && tr->nodes[ch].byte != s[i])
                ch = tr->nodes[ch].sibling;
            if (ch < 0) break;
            node = ch;
            if (tr->nodes[node].added >= 0) best = tr->nodes[node].added, best_end = i + 1;
        }
        if (best < 0) {
            pos++;
            continue;
        }
        size_t ms = pos, me = best_end;
        pos = best_end; /* the search resumes after the match, whatever becomes of it */
        const tk_added *a = &t->added[best];
        if (a->single_word) {
            int start_space = ms == 0;
            if (!start_space) {
                size_t p = prev_start(s, ms);
                rlx__tk_utf8_next(s + p, ms - p, &cp);
                start_space = !rlx__tk_is_word(cp);
            }
            int stop_space = me == n;
            if (!stop_space) {
                rlx__tk_utf8_next(s + me, n - me, &cp);
                stop_space = !rlx__tk_is_word(cp);
            }
            if (!start_space || !stop_space) continue;
        }
        if (a->lstrip) {
            size_t ns = ms;
            while (ns > 0) {
                size_t p = prev_start(s, ns);
                rlx__tk_utf8_next(s + p, ns - p, &cp);
                if (!rlx__tk_is_whitespace(cp)) break;
                ns = p;
            }
            ms = ns > start_offset ? ns : start_offset;
        }
        if (a->rstrip) {
            while (me < n) {
                int k = rlx__tk_utf8_next(s + me, n - me, &cp);
                if (!rlx__tk_is_whitespace(cp)) break;
                me += (size_t)k;
            }
        }
        if (start_offset < ms && (st = push_piece(out, base + start_offset, ms - start_offset, -1))) return st;
        if ((st = push_piece(out, base + ms, me - ms, a->id))) return st;
        start_offset = me;
    }
    if (start_offset < n) return push_piece(out, base + start_offset, n - start_offset, -1);
    return RLX_OK;
}

/* Steps 1 and 2: the raw text -> w->base + w->pc[w->cur]. */
static rlx_status extract_and_normalize(const rlx_tokenizer *t, tk_work *w, const char *text, size_t n) {
    rlx_status s;
    w->cur = 0;
    w->pc[0].n = 0;
    w->base = text;
    w->base_buf = -1;
    if ((s = split_added(t, &t->trie_raw, text, n, 0, &w->pc[0]))) return s;
    if (!t->n_norms && !t->trie_norm.nodes) return RLX_OK;
    tk_buf *nb = &w->tb[0];
    tk_pieces *out = &w->pc[1];
    nb->len = 0;
    out->n = 0;
    for (size_t i = 0; i < w->pc[0].n; i++) {
        const tk_piece *p = &w->pc[0].p[i];
        if (p->added >= 0) {
            if ((s = push_piece(out, 0, 0, p->added))) return s;
            continue;
        }
        const char *r;
        size_t rl;
        if ((s = normalize(t, w, text + p->off, p->len, &r, &rl))) return s;
        if ((s = RESERVE(nb->p, nb->cap, nb->len + rl + 1, "normalized text"))) return s;
        memcpy(nb->p + nb->len, r, rl);
        if ((s = split_added(t, &t->trie_norm, nb->p + nb->len, rl, nb->len, out))) return s;
        nb->len += rl;
    }
    w->base = nb->p;
    w->base_buf = 0;
    w->cur = 1;
    return RLX_OK;
}

/* ---- pre-tokenizers ------------------------------------------------------------------------- */

static rlx_status push_event(tk_work *w, size_t s, size_t e, int m) {
    rlx_status st = RESERVE(w->ev, w->cap_ev, w->n_ev + 1, "split positions");
    if (st) return st;
    w->ev[w->n_ev++] = (tk_event){(uint32_t)s, (uint32_t)e, m};
    return RLX_OK;
}

/* Pattern::find_matches for a character predicate: every matching character is one match. */
static rlx_status events_pred(tk_work *w, const uint8_t *s, size_t n, int (*pred)(int32_t)) {
    size_t last = 0;
    rlx_status st;
    for (size_t i = 0; i < n;) {
        int32_t cp;
        int k = rlx__tk_utf8_next(s + i, n - i, &cp);
        if (pred(cp)) {
            if (last < i && (st = push_event(w, last, i, 0))) return st;
            if ((st = push_event(w, i, i + (size_t)k, 1))) return st;
            last = i + (size_t)k;
        }
        i += (size_t)k;
    }
    if (last < n) return push_event(w, last, n, 0);
    return RLX_OK;
}

/* Pattern::find_matches for a regex (onig's find_iter: an empty match right where the last
 * match ended is skipped by one character). */
static rlx_status events_regex(tk_work *w, const pcre2_code *re, int jit, const uint8_t *s, size_t n) {
    if (!w->md && !(w->md = pcre2_match_data_create(32, NULL)))
        return rlx__fail(RLX_ERR_OUT_OF_MEMORY, "out of host memory for regex match data");
    size_t prev = 0, at = 0, last_match_end = SIZE_MAX;
    rlx_status st;
    while (at <= n) {
        /* pcre2_jit_match skips pcre2_match's checks (the text is valid UTF-8, the pattern JIT
         * compiled); a JIT stack overflow retries on the interpreter, which uses the heap */
        int rc = jit ? pcre2_jit_match(re, (PCRE2_SPTR)s, n, at, PCRE2_NO_UTF_CHECK, w->md, NULL)
                     : pcre2_match(re, (PCRE2_SPTR)s, n, at, PCRE2_NO_UTF_CHECK, w->md, NULL);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
            rc = pcre2_match(re, (PCRE2_SPTR)s, n, at, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, w->md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0 && rc != 0) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return rlx__fail(rc == PCRE2_ERROR_NOMEMORY ? RLX_ERR_OUT_OF_MEMORY : RLX_ERR_INTERNAL,
                             "split regex on a piece of %zu bytes: %s", n, (const char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(w->md);
        size_t ms = ov[0], me = ov[1];
        if (ms == me && last_match_end == me) {
            if (at >= n) break;
            int32_t cp;
            at += (size_t)rlx__tk_utf8_next(s + at, n - at, &cp);
            continue;
        }
        at = me;
        last_match_end = me;
        if (prev != ms && (st = push_event(w, prev, ms, 0))) return st;
        if ((st = push_event(w, ms, me, 1))) return st;
        prev = me;
        if (ms == me) { /* an empty match: step past it */
            if (at >= n) break;
        }
    }
    if (prev != n) return push_event(w, prev, n, 0);
    return RLX_OK;
}

/* NormalizedString::split: the events after the behaviour, as pieces of base + off. */
static rlx_status apply_behavior(tk_work *w, tk_split_behavior b, int invert, size_t off, tk_pieces *out) {
    rlx_status st;
    if (invert)
        for (size_t i = 0; i < w->n_ev; i++)
            w->ev[i].m = !w->ev[i].m;
    tk_event *ev = w->ev;
    size_t n = w->n_ev, k = 0;
    switch (b) {
    case TK_ISOLATED: k = n; break;
    case TK_REMOVED:
        for (size_t i = 0; i < n; i++)
            if (!ev[i].m) ev[k++] = ev[i];
        break;
    case TK_CONTIGUOUS: {
        int prev = 0;
        for (size_t i = 0; i < n; i++) {
            if (ev[i].m == prev && k > 0)
                ev[k - 1].e = ev[i].e;
            else
                ev[k++] = ev[i];
            prev = ev[i].m;
        }
        break;
    }
    case TK_MERGED_WITH_PREVIOUS: {
        int prev = 0;
        for (size_t i = 0; i < n; i++) {
            if (ev[i].m && !prev && k > 0)
                ev[k - 1].e = ev[i].e;
            else
                ev[k++] = ev[i];
            prev = ev[i].m;
        }
        break;
    }
    case TK_MERGED_WITH_NEXT: {
        /* walk backwards, merging a match into the piece after it */
        int prev = 0;
        size_t kk = n; /* output grows down from the end */
        for (size_t i = n; i-- > 0;) {
            if (ev[i].m && !prev && kk < n)
                ev[kk].s = ev[i].s;
            else
                ev[--kk] = ev[i];
            prev = ev[i].m;
        }
        memmove(ev, ev + kk, (n - kk) * sizeof *ev);
        k = n - kk;
        break;
    }
    }
    for (size_t i = 0; i < k; i++)
        if ((st = push_piece(out, off + ev[i].s, ev[i].e - ev[i].s, -1))) return st;
    return RLX_OK;
}

static int pred_whitespace(int32_t c) { return rlx__tk_is_whitespace(c); }
static int pred_punct(int32_t c) { return rlx__tk_is_punct(c); }
static int pred_numeric(int32_t c) { return rlx__tk_is_numeric(c); }

/* Whitespace: runs of \w, runs of [^\w\s]; white space removed. */
static rlx_status split_whitespace(const uint8_t *s, size_t n, size_t off, tk_pieces *out) {
    size_t start = 0;
    int cls = -1; /* 0 word, 1 other, 2 space */
    rlx_status st;
    for (size_t i = 0; i < n;) {
        int32_t cp;
        int k = rlx__tk_utf8_next(s + i, n - i, &cp);
        int c = rlx__tk_is_word(cp) ? 0 : rlx__tk_is_whitespace(cp) ? 2 : 1;
        if (c != cls) {
            if (cls == 0 || cls == 1)
                if ((st = push_piece(out, off + start, i - start, -1))) return st;
            start = i;
            cls = c;
        }
        i += (size_t)k;
    }
    if (cls == 0 || cls == 1) return push_piece(out, off + start, n - start, -1);
    return RLX_OK;
}

/* One pre-tokenizer over the current pieces into the other list. */
static rlx_status pre_step(tk_work *w, const tk_pre *p) {
    tk_pieces *in = &w->pc[w->cur], *out = &w->pc[w->cur ^ 1];
    out->n = 0;
    rlx_status st = RLX_OK;
    tk_buf *nb = NULL;
    if (p->kind == TK_PRE_BYTELEVEL) {
        /* writes a new text: prefix space, split, bytes mapped to the printable alphabet */
        nb = &w->tb[w->base_buf == 0 ? 1 : 0];
        nb->len = 0;
    }
    for (size_t i = 0; i < in->n && !st; i++) {
        const tk_piece *pc = &in->p[i];
        if (pc->added >= 0) {
            st = push_piece(out, 0, 0, pc->added);
            continue;
        }
        const uint8_t *s = (const uint8_t *)w->base + pc->off;
        size_t n = pc->len;
        w->n_ev = 0;
        switch (p->kind) {
        case TK_PRE_SPLIT:
            if (p->literal_empty)
                st = push_event(w, 0, n, 0);
            else
                st = events_regex(w, p->re, p->jit, s, n);
            if (!st) st = apply_behavior(w, p->behavior, p->invert, pc->off, out);
            break;
        case TK_PRE_DIGITS:
            st = events_pred(w, s, n, pred_numeric);
            if (!st) st = apply_behavior(w, p->individual_digits ? TK_ISOLATED : TK_CONTIGUOUS, 0, pc->off, out);
            break;
        case TK_PRE_WHITESPACE_SPLIT:
            st = events_pred(w, s, n, pred_whitespace);
            if (!st) st = apply_behavior(w, TK_REMOVED, 0, pc->off, out);
            break;
        case TK_PRE_PUNCTUATION:
            st = events_pred(w, s, n, pred_punct);
            if (!st) st = apply_behavior(w, p->behavior, 0, pc->off, out);
            break;
        case TK_PRE_WHITESPACE: st = split_whitespace(s, n, pc->off, out); break;
        case TK_PRE_BERT: {
            /* white space removed, then punctuation isolated */
            st = events_pred(w, s, n, pred_whitespace);
            if (st) break;
            size_t n_ws = w->n_ev;
            tk_event *tmp = malloc((n_ws ? n_ws : 1) * sizeof *tmp);
            if (!tmp) {
                st = rlx__fail(RLX_ERR_OUT_OF_MEMORY, "out of host memory splitting a text");
                break;
            }
            memcpy(tmp, w->ev, n_ws * sizeof *tmp);
            for (size_t k = 0; k < n_ws && !st; k++) {
                if (tmp[k].m) continue;
                w->n_ev = 0;
                st = events_pred(w, s + tmp[k].s, tmp[k].e - tmp[k].s, pred_punct);
                if (!st) st = apply_behavior(w, TK_ISOLATED, 0, pc->off + tmp[k].s, out);
            }
            free(tmp);
            break;
        }
        case TK_PRE_BYTELEVEL: {
            /* the prefixed text goes to scratch, the split runs there, the pieces get mapped */
            size_t need = n + 1;
            if ((st = RESERVE(w->scratch, w->scratch_cap, need + 1, "a pre-token"))) break;
            size_t m = 0;
            if (p->add_prefix_space && s[0] != ' ') w->scratch[m++] = ' ';
            memcpy(w->scratch + m, s, n);
            m += n;
            const uint8_t *src = (const uint8_t *)w->scratch;
            if (p->use_regex)
                st = events_regex(w, p->re, p->jit, src, m);
            else
                st = push_event(w, 0, m, 0);
            if (st) break;
            if ((st = RESERVE(nb->p, nb->cap, nb->len + 2 * m + 1, "byte-level text"))) break;
            for (size_t k = 0; k < w->n_ev && !st; k++) {
                size_t o = nb->len;
                for (size_t b = w->ev[k].s; b < w->ev[k].e; b++) {
                    uint16_t c = rlx__tk_byte_to_cp[src[b]];
                    if (c < 0x80)
                        nb->p[nb->len++] = (char)c;
                    else {
                        nb->p[nb->len++] = (char)(0xC0 | (c >> 6));
                        nb->p[nb->len++] = (char)(0x80 | (c & 0x3F));
                    }
                }
                st = push_piece(out, o, nb->len - o, -1);
            }
            break;
        }
        }
    }
    if (st) return st;
    if (nb) {
        w->base = nb->p;
        w->base_buf = (int)(nb - w->tb);
    }
    w->cur ^= 1;
    return RLX_OK;
}

/* ---- models --------------------------------------------------------------------------------- */

static rlx_status push_id(tk_work *w, int32_t id) {
    rlx_status s = RESERVE(w->ids, w->cap_ids, w->n_ids + 1, "token ids");
    if (s) return s;
    w->ids[w->n_ids++] = id;
    return RLX_OK;
}

static int merge_less(const tk_bpe_merge *a, const tk_bpe_merge *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(tk_bpe_merge *h, size_t *n, tk_bpe_merge m) {
    size_t i = (*n)++;
    h[i] = m;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!merge_less(&h[i], &h[p])) break;
        tk_bpe_merge t = h[i];
        h[i] = h[p];
        h[p] = t;
        i = p;
    }
}

static tk_bpe_merge heap_pop(tk_bpe_merge *h, size_t *n) {
    tk_bpe_merge top = h[0];
    h[0] = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < *n && merge_less(&h[l], &h[m])) m = l;
        if (r < *n && merge_less(&h[r], &h[m])) m = r;
        if (m == i) break;
        tk_bpe_merge t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
    return top;
}

static rlx_status bpe_add(tk_work *w, size_t *n, int32_t c, uint32_t len) {
    rlx_status s = RESERVE(w->sym, w->sym_cap, *n + 1, "BPE symbols");
    if (s) return s;
    int32_t i = (int32_t)*n;
    w->sym[i] = (tk_bpe_sym){c, i - 1, -1, len};
    if (i > 0) w->sym[i - 1].next = i;
    (*n)++;
    return RLX_OK;
}

/* BPE::merge_word + Word::merge_all */
static rlx_status bpe_piece(const rlx_tokenizer *t, tk_work *w, const char *s, size_t n) {
    rlx_status st;
    if (t->ignore_merges) {
        int32_t id = rlx__tk_map_get(&t->model_vocab, s, n);
        if (id >= 0) return push_id(w, id);
    }
    size_t plen = t->continuing_prefix ? strlen(t->continuing_prefix) : 0;
    size_t slen = t->end_suffix ? strlen(t->end_suffix) : 0;
    size_t ns = 0;
    int32_t unk = -1;
    uint32_t unk_len = 0;
    const uint8_t *u = (const uint8_t *)s;
    for (size_t i = 0; i < n;) {
        int32_t cp;
        size_t k = (size_t)rlx__tk_utf8_next(u + i, n - i, &cp);
        int first = i == 0, last = i + k == n;
        const char *key = s + i;
        size_t kl = k;
        if ((!first && plen) || (last && slen)) {
            if ((st = RESERVE(w->scratch, w->scratch_cap, plen + k + slen + 1, "a BPE symbol"))) return st;
            kl = 0;
            if (!first && plen) memcpy(w->scratch, t->continuing_prefix, plen), kl = plen;
            memcpy(w->scratch + kl, s + i, k);
            kl += k;
            if (last && slen) memcpy(w->scratch + kl, t->end_suffix, slen), kl += slen;
            key = w->scratch;
        }
        int32_t id = rlx__tk_map_get(&t->model_vocab, key, kl);
        i += k;
        if (id >= 0) {
            if (unk >= 0) {
                if ((st = bpe_add(w, &ns, unk, unk_len))) return st;
                unk = -1;
            }
            if ((st = bpe_add(w, &ns, id, (uint32_t)k))) return st;
            continue;
        }
        if (t->byte_fallback) {
            int all = 1;
            for (size_t b = 0; b < kl; b++)
                all &= t->byte_fallback_ids[(uint8_t)key[b]] >= 0;
            if (all) {
                /* copy first: key may live in scratch, which bpe_add does not touch */
                for (size_t b = 0; b < kl; b++)
                    if ((st = bpe_add(w, &ns, t->byte_fallback_ids[(uint8_t)key[b]], 1))) return st;
                continue;
            }
        }
        if (t->unk_token) {
            if (t->unk_id < 0)
                return rlx__fail(RLX_ERR_FORMAT, "the BPE unk_token '%s' is not in the vocabulary", t->unk_token);
            if (unk >= 0 && t->fuse_unk) {
                unk_len += (uint32_t)k;
            } else {
                if (unk >= 0 && (st = bpe_add(w, &ns, unk, unk_len))) return st;
                unk = t->unk_id;
                unk_len = (uint32_t)k;
            }
        }
    }
    if (unk >= 0 && (st = bpe_add(w, &ns, unk, unk_len))) return st;
    if (!ns) return RLX_OK;
    tk_bpe_sym *sym = w->sym;
    if ((st = RESERVE(w->heap, w->heap_cap, 2 * ns + 2, "the BPE merge queue"))) return st;
    size_t hn = 0;
    for (size_t i = 0; i + 1 < ns; i++) {
        const tk_pair_slot *m = rlx__tk_pairs_get(&t->merges, sym[i].c, sym[i + 1].c);
        if (m) heap_push(w->heap, &hn, (tk_bpe_merge){m->rank, (int32_t)i, m->id});
    }
    while (hn) {
        tk_bpe_merge top = heap_pop(w->heap, &hn);
        tk_bpe_sym *cur = &sym[top.pos];
        if (cur->len == 0 || cur->next == -1) continue;
        int32_t next_pos = cur->next;
        tk_bpe_sym right = sym[next_pos];
        const tk_pair_slot *m = rlx__tk_pairs_get(&t->merges, cur->c, right.c);
        if (!m || m->id != top.id) continue; /* a stale entry */
        cur->c = top.id;
        cur->len += right.len;
        cur->next = right.next;
        sym[next_pos].len = 0;
        if (right.next >= 0 && (size_t)right.next < ns) sym[right.next].prev = top.pos;
        /* each merge removes one symbol and adds at most two entries: the queue holds 2 ns */
        if ((st = RESERVE(w->heap, w->heap_cap, hn + 2, "the BPE merge queue"))) return st;
        if (cur->prev >= 0) {
            const tk_pair_slot *pm = rlx__tk_pairs_get(&t->merges, sym[cur->prev].c, cur->c);
            if (pm) heap_push(w->heap, &hn, (tk_bpe_merge){pm->rank, cur->prev, pm->id});
        }
        if (cur->next >= 0 && (size_t)cur->next < ns) {
            const tk_pair_slot *nm = rlx__tk_pairs_get(&t->merges, cur->c, sym[cur->next].c);
            if (nm) heap_push(w->heap, &hn, (tk_bpe_merge){nm->rank, top.pos, nm->id});
        }
    }
    for (size_t i = 0; i < ns; i++)
        if (sym[i].len && (st = push_id(w, sym[i].c))) return st;
    return RLX_OK;
}

/* WordPiece::tokenize: greedy longest match; a word with an unmatched rest is one [UNK] */
static rlx_status wordpiece_piece(const rlx_tokenizer *t, tk_work *w, const char *s, size_t n) {
    rlx_status st;
    const uint8_t *u = (const uint8_t *)s;
    size_t chars = 0;
    for (size_t i = 0; i < n; i++)
        chars += (u[i] & 0xC0) != 0x80;
    if (t->unk_id < 0)
        return rlx__fail(RLX_ERR_FORMAT, "the WordPiece unk_token '%s' is not in the vocabulary", t->unk_token);
    if ((int64_t)chars > t->max_input_chars_per_word) return push_id(w, t->unk_id);
    size_t plen = strlen(t->continuing_prefix);
    if ((st = RESERVE(w->scratch, w->scratch_cap, plen + n + 1, "a word piece"))) return st;
    size_t mark = w->n_ids, start = 0;
    while (start < n) {
        size_t end = n;
        int32_t found = -1;
        while (start < end) {
            const char *key = s + start;
            size_t kl = end - start;
            if (start > 0) {
                memcpy(w->scratch, t->continuing_prefix, plen);
                memcpy(w->scratch + plen, s + start, end - start);
                key = w->scratch;
                kl += plen;
            }
            found = rlx__tk_map_get(&t->model_vocab, key, kl);
            if (found >= 0) break;
            end = prev_start(u, end); /* drop the last character */
            if (end < start) end = start;
        }
        if (found < 0) {
            w->n_ids = mark;
            return push_id(w, t->unk_id);
        }
        if ((st = push_id(w, found))) return st;
        start = end;
    }
    return RLX_OK;
}

/* ---- one text ------------------------------------------------------------------------------- */

static int64_t n_added_specials(const rlx_tokenizer *t) {
    int64_t n = 0;
    for (int i = 0; i < t->n_posts; i++)
        n += t->posts[i].n_before + t->posts[i].n_after;
    return n;
}

/* Encodes a valid UTF-8 text into w->ids. */
static rlx_status encode_one(const rlx_tokenizer *t, tk_work *w, const char *text, size_t n,
                             const rlx_tokenizer_encode_params *p, int64_t max_len) {
    rlx__tk_maps_init();
    w->n_ids = 0;
    rlx_status s = extract_and_normalize(t, w, text, n);
    for (int k = 0; !s && k < t->n_pres; k++)
        s = pre_step(w, &t->pres[k]);
    const tk_pieces *pcs = &w->pc[w->cur];
    for (size_t i = 0; !s && i < pcs->n; i++) {
        const tk_piece *pc = &pcs->p[i];
        if (pc->added >= 0)
            s = push_id(w, pc->added);
        else if (t->model == RLX_TOKENIZER_BPE)
            s = bpe_piece(t, w, w->base + pc->off, pc->len);
        else
            s = wordpiece_piece(t, w, w->base + pc->off, pc->len);
    }
    if (s) return s;
    /* truncation first, leaving room for the specials, then the post-processors */
    if (max_len > 0) {
        int64_t added = p->add_special_tokens ? n_added_specials(t) : 0, keep = max_len - added;
        if ((int64_t)w->n_ids > keep) {
            if (p->truncate_left) memmove(w->ids, w->ids + (w->n_ids - (size_t)keep), (size_t)keep * sizeof *w->ids);
            w->n_ids = (size_t)keep;
        }
    }
    if (!p->add_special_tokens) return RLX_OK;
    for (int k = 0; k < t->n_posts; k++) {
        const tk_post *pp = &t->posts[k];
        if (pp->kind != TK_POST_TEMPLATE || (!pp->n_before && !pp->n_after)) continue;
        size_t nb = (size_t)pp->n_before, na = (size_t)pp->n_after;
        if ((s = RESERVE(w->ids, w->cap_ids, w->n_ids + nb + na, "token ids"))) return s;
        memmove(w->ids + nb, w->ids, w->n_ids * sizeof *w->ids);
        if (nb) memcpy(w->ids, pp->before, nb * sizeof *w->ids);
        if (na) memcpy(w->ids + nb + w->n_ids, pp->after, na * sizeof *w->ids);
        w->n_ids += nb + na;
    }
    return RLX_OK;
}

/* Validates (or repairs) text i and encodes it. */
static rlx_status encode_text(const rlx_tokenizer *t, tk_work *w, const char *text, size_t n, int64_t index,
                              const rlx_tokenizer_encode_params *p, int64_t max_len) {
    size_t bad = rlx__tk_utf8_check((const uint8_t *)text, n);
    if (bad < n) {
        if (p->invalid_utf8 != RLX_TOKENIZER_UTF8_REPLACE)
            return rlx__fail(
                RLX_ERR_INVALID_ARGUMENT,
                "text %lld is not valid UTF-8: byte 0x%02X at offset %zu (pass RLX_TOKENIZER_UTF8_REPLACE to "
                "replace invalid sequences with U+FFFD)",
                (long long)index, (uint8_t)text[bad], bad);
        size_t need;
        rlx_status s;
        if (!rlx__mul_size(n, 3, &need) || (s = RESERVE(w->utf8, w->utf8_cap, need + 1, "the repaired text")))
            return rlx__fail(RLX_ERR_OUT_OF_MEMORY, "out of host memory repairing text %lld", (long long)index);
        n = rlx__tk_utf8_lossy((const uint8_t *)text, n, w->utf8);
        text = w->utf8;
    }
    return encode_one(t, w, text, n, p, max_len);
}

/* ---- the API -------------------------------------------------------------------------------- */

rlx_tokenizer_encode_params rlx_tokenizer_encode_default_params(void) {
    rlx_tokenizer_encode_params p = {0};
    p.add_special_tokens = 1;
    p.max_length = 0;
    p.truncate_left = 0;
    p.invalid_utf8 = RLX_TOKENIZER_UTF8_ERROR;
    p.threads = 0;
    return p;
}

static rlx_status check_params(const rlx_tokenizer *t, const rlx_tokenizer_encode_params *p, int64_t *max_len) {
    if (p->invalid_utf8 != RLX_TOKENIZER_UTF8_ERROR && p->invalid_utf8 != RLX_TOKENIZER_UTF8_REPLACE)
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT,
                         "encode params: invalid_utf8 %d is not RLX_TOKENIZER_UTF8_ERROR or _REPLACE",
                         (int)p->invalid_utf8);
    if (p->threads < 0) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "encode params: threads %d is negative", p->threads);
    *max_len = p->max_length;
    if (*max_len == RLX_TOKENIZER_MODEL_MAX_LENGTH) {
        *max_len = rlx_tokenizer_model_max_length(t);
        if (!*max_len)
            return rlx__fail(
                RLX_ERR_INVALID_ARGUMENT,
                "encode params: max_length RLX_TOKENIZER_MODEL_MAX_LENGTH, but the tokenizer names no maximum "
                "(no model_max_length in tokenizer_config.json, no truncation in tokenizer.json)");
    } else if (*max_len < 0) {
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "encode params: max_length %lld is negative", (long long)*max_len);
    }
    int64_t added = p->add_special_tokens ? n_added_specials(t) : 0;
    if (*max_len > 0 && *max_len < added)
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT,
                         "encode params: max_length %lld leaves no room for the %lld special tokens added",
                         (long long)*max_len, (long long)added);
    return RLX_OK;
}

typedef struct batch_job {
    const rlx_tokenizer *t;
    const char *const *texts;
    const size_t *bytes;
    int64_t n;
    const rlx_tokenizer_encode_params *p;
    int64_t max_len;
    int32_t **res;
    int64_t *lens;
    atomic_llong next;
    pthread_mutex_t mu;
    int64_t err_index; /* the lowest failing text, so the error reported does not depend on timing */
    rlx_status err;
    char msg[1024];
} batch_job;

static void record_error(batch_job *j, int64_t i, rlx_status s) {
    pthread_mutex_lock(&j->mu);
    if (j->err == RLX_OK || i < j->err_index) {
        j->err = s;
        j->err_index = i;
        snprintf(j->msg, sizeof j->msg, "%s", rlx_last_error());
    }
    pthread_mutex_unlock(&j->mu);
}

static void *batch_worker(void *arg) {
    batch_job *j = arg;
    tk_work w = {0};
    for (;;) {
        int64_t i = atomic_fetch_add(&j->next, 1);
        if (i >= j->n) break;
        pthread_mutex_lock(&j->mu);
        int failed = j->err != RLX_OK && j->err_index < i;
        pthread_mutex_unlock(&j->mu);
        if (failed) break;
        const char *text = j->texts[i];
        if (!text) {
            record_error(j, i, rlx__fail(RLX_ERR_INVALID_ARGUMENT, "texts[%lld] is NULL", (long long)i));
            break;
        }
        size_t n = j->bytes ? j->bytes[i] : strlen(text);
        rlx_status s = encode_text(j->t, &w, text, n, i, j->p, j->max_len);
        if (!s) {
            j->res[i] = malloc((w.n_ids ? w.n_ids : 1) * sizeof(int32_t));
            if (!j->res[i])
                s = rlx__fail(RLX_ERR_OUT_OF_MEMORY, "out of host memory for the ids of text %lld", (long long)i);
            else {
                if (w.n_ids) memcpy(j->res[i], w.ids, w.n_ids * sizeof(int32_t));
                j->lens[i] = (int64_t)w.n_ids;
            }
        }
        if (s) {
            record_error(j, i, s);
            break;
        }
    }
    rlx__tk_work_free(&w);
    return NULL;
}

rlx_status rlx_tokenizer_encode_batch(const rlx_tokenizer *t, const char *const *texts, const size_t *text_bytes,
                                      int64_t n_texts, const rlx_tokenizer_encode_params *params, int32_t **ids_out,
                                      int64_t *seq_lens) {
    if (ids_out) *ids_out = NULL;
    if (!t) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_tokenizer_encode_batch: tokenizer is NULL");
    if (!ids_out) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_tokenizer_encode_batch: ids_out is NULL");
    if (n_texts < 0)
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_tokenizer_encode_batch: n_texts %lld is negative",
                         (long long)n_texts);
    if (n_texts > 0 && (!texts || !seq_lens))
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_tokenizer_encode_batch: %s is NULL",
                         !texts ? "texts" : "seq_lens");
    rlx_tokenizer_encode_params p = params ? *params : rlx_tokenizer_encode_default_params();
    int64_t max_len = 0;
    rlx_status s = check_params(t, &p, &max_len);
    if (s) return s;
    batch_job j = {
        .t = t, .texts = texts, .bytes = text_bytes, .n = n_texts, .p = &p, .max_len = max_len, .err_index = INT64_MAX};
    atomic_init(&j.next, 0);
    pthread_mutex_init(&j.mu, NULL);
    j.lens = seq_lens;
    j.res = rlx__calloc((size_t)(n_texts ? n_texts : 1), sizeof *j.res, "the encoded texts");
    if (!j.res) {
        pthread_mutex_destroy(&j.mu);
        return RLX_ERR_OUT_OF_MEMORY;
    }
    int threads = p.threads ? p.threads : rlx__cpu_count();
    if (threads > 64) threads = 64;
    if (threads > n_texts) threads = (int)(n_texts ? n_texts : 1);
    pthread_t tid[64];
    int started[64] = {0};
    for (int k = 1; k < threads; k++)
        started[k] = pthread_create(&tid[k], NULL, batch_worker, &j) == 0;
    batch_worker(&j); /* the calling thread works too; a thread that did not start is not needed */
    for (int k = 1; k < threads; k++)
        if (started[k]) pthread_join(tid[k], NULL);
    s = j.err;
    int64_t total = 0;
    if (!s)
        for (int64_t i = 0; i < n_texts; i++)
            total += seq_lens[i];
    int32_t *all = NULL;
    if (!s && !(all = rlx__malloc((size_t)(total ? total : 1) * sizeof *all, "the token ids")))
        s = RLX_ERR_OUT_OF_MEMORY;
    if (!s) {
        int64_t o = 0;
        for (int64_t i = 0; i < n_texts; i++) {
            memcpy(all + o, j.res[i], (size_t)seq_lens[i] * sizeof *all);
            o += seq_lens[i];
        }
        *ids_out = all;
    } else if (j.err) {
        rlx__fail(j.err, "%s", j.msg);
    }
    for (int64_t i = 0; i < n_texts; i++)
        free(j.res[i]);
    free(j.res);
    pthread_mutex_destroy(&j.mu);
    return s;
}

rlx_status rlx_tokenizer_encode(const rlx_tokenizer *t, const char *text, size_t text_bytes,
                                const rlx_tokenizer_encode_params *params, int32_t **ids_out, int64_t *n_ids) {
    if (ids_out) *ids_out = NULL;
    if (!t || !text || !ids_out || !n_ids)
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_tokenizer_encode: %s is NULL",
                         !t         ? "tokenizer"
                         : !text    ? "text"
                         : !ids_out ? "ids_out"
                                    : "n_ids");
    rlx_tokenizer_encode_params p = params ? *params : rlx_tokenizer_encode_default_params();
    p.threads = 1;
    return rlx_tokenizer_encode_batch(t, &text, &text_bytes, 1, &p, ids_out, n_ids);
}
