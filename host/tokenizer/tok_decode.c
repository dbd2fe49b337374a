/* Decoding, as `tokenizers`' Tokenizer::decode: ids -> token strings (added tokens first, the
 * special ones dropped on request), then each decoder's decode_chain over the list, then the
 * pieces joined. Without a decoder the tokens are joined with spaces. */
#include "tokenizer/tok_internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct tk_str {
    char *p;
    size_t n;
} tk_str;

typedef struct tk_list {
    tk_str *s;
    size_t n;
} tk_list;

static void list_free(tk_list *l) {
    for (size_t i = 0; i < l->n; i++)
        free(l->s[i].p);
    free(l->s);
    l->s = NULL;
    l->n = 0;
}

static rlx_status str_make(tk_str *out, const char *a, size_t na, const char *b, size_t nb) {
    out->p = malloc(na + nb + 1);
    if (!out->p) return rlx__fail(RLX_ERR_OUT_OF_MEMORY, "out of host memory decoding");
    if (na) memcpy(out->p, a, na);
    if (nb) memcpy(out->p + na, b, nb);
    out->n = na + nb;
    out->p[out->n] = '\0';
    return RLX_OK;
}

/* Rust's str::replace: every non-overlapping occurrence, left to right. */
static rlx_status replace_all(tk_str *s, const char *from, const char *to) {
    size_t nf = strlen(from), nt = strlen(to);
    if (!nf || s->n < nf) return RLX_OK;
    size_t count = 0;
    for (size_t i = 0; i + nf <= s->n;)
        if (!memcmp(s->p + i, from, nf))
            count++, i += nf;
        else
            i++;
    if (!count) return RLX_OK;
    size_t nn = s->n - count * nf + count * nt;
    char *o = malloc(nn + 1);
    if (!o) return rlx__fail(RLX_ERR_OUT_OF_MEMORY, "out of host memory decoding");
    size_t w = 0;
    for (size_t i = 0; i < s->n;) {
        if (i + nf <= s->n && !memcmp(s->p + i, from, nf)) {
            memcpy(o + w, to, nt);
            w += nt;
            i += nf;
        } else {
            o[w++] = s->p[i++];
        }
    }
    o[w] = '\0';
    free(s->p);
    s->p = o;
    s->n = w;
    return RLX_OK;
}

static rlx_status dec_bytelevel(tk_list *l) {
    rlx__tk_maps_init();
    const int16_t *c2b = rlx__tk_cp_to_byte;
    size_t total = 0;
    for (size_t i = 0; i < l->n; i++)
        total += l->s[i].n;
    uint8_t *bytes = malloc(total + 1);
    if (!bytes) return rlx__fail(RLX_ERR_OUT_OF_MEMORY, "out of host memory decoding");
    size_t nb = 0;
    for (size_t i = 0; i < l->n; i++) {
        /* a token all of whose characters are in the byte alphabet gives those bytes; any other
         * token (an added token with a space, say) gives its own UTF-8 */
        const uint8_t *u = (const uint8_t *)l->s[i].p;
        size_t n = l->s[i].n, start = nb;
        int ok = 1;
        for (size_t k = 0; k < n && ok;) {
            int32_t cp;
            k += (size_t)rlx__tk_utf8_next(u + k, n - k, &cp);
            if (cp < 324 && c2b[cp] >= 0)
                bytes[nb++] = (uint8_t)c2b[cp];
            else
                ok = 0;
        }
        if (!ok) {
            nb = start;
            memcpy(bytes + nb, u, n);
            nb += n;
        }
    }
    char *out = malloc(3 * nb + 1);
    if (!out) {
        free(bytes);
        return rlx__fail(RLX_ERR_OUT_OF_MEMORY, "out of host memory decoding");
    }
    size_t n = rlx__tk_utf8_lossy(bytes, nb, out);
    free(bytes);
    list_free(l);
    l->s = malloc(sizeof *l->s);
    if (!l->s) {
        free(out);
        return rlx__fail(RLX_ERR_OUT_OF_MEMORY, "out of host memory decoding");
    }
    l->s[0] = (tk_str){out, n};
    l->n = 1;
    return RLX_OK;
}

static rlx_status dec_wordpiece(const tk_dec *d, tk_list *l) {
    static const char *const cleanup[][2] = {{" .", "."},   {" ?", "?"},     {" !", "!"},    {" ,", ","},
                                             {" ' ", "'"},  {" n't", "n't"}, {" 'm", "'m"},  {" do not", " don't"},
                                             {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
    size_t pl = strlen(d->prefix);
    rlx_status s;
    for (size_t i = 0; i < l->n; i++) {
        tk_str *t = &l->s[i];
        if (i != 0) {
            tk_str nt;
            if (t->n >= pl && !memcmp(t->p, d->prefix, pl))
                s = str_make(&nt, t->p + pl, t->n - pl, NULL, 0);
            else
                s = str_make(&nt, " ", 1, t->p, t->n);
            if (s) return s;
            free(t->p);
            *t = nt;
        }
        if (d->cleanup)
            for (size_t k = 0; k < sizeof cleanup / sizeof cleanup[0]; k++)
                if ((s = replace_all(t, cleanup[k][0], cleanup[k][1]))) return s;
    }
    return RLX_OK;
}

static rlx_status dec_bpe(const tk_dec *d, tk_list *l) {
    rlx_status s;
    for (size_t i = 0; i < l->n; i++)
        if ((s = replace_all(&l->s[i], d->suffix, i + 1 == l->n ? "" : " "))) return s;
    return RLX_OK;
}

rlx_status rlx_tokenizer_decode(const rlx_tokenizer *t, const int32_t *ids, int64_t n_ids, int skip_special_tokens,
                                char **text_out, size_t *text_bytes) {
    if (text_out) *text_out = NULL;
    if (text_bytes) *text_bytes = 0;
    if (!t || !text_out || (n_ids > 0 && !ids))
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_tokenizer_decode: %s is NULL",
                         !t          ? "tokenizer"
                         : !text_out ? "text_out"
                                     : "ids");
    if (n_ids < 0)
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_tokenizer_decode: n_ids %lld is negative", (long long)n_ids);
    for (int64_t i = 0; i < n_ids; i++)
        if (ids[i] < 0 || ids[i] >= t->vocab_size)
            return rlx__fail(RLX_ERR_TOKEN_RANGE, "decode: id %ld at position %lld is outside the vocabulary [0, %lld)",
                             (long)ids[i], (long long)i, (long long)t->vocab_size);
    tk_list l = {0};
    l.s = malloc((size_t)(n_ids ? n_ids : 1) * sizeof *l.s);
    if (!l.s) return rlx__fail(RLX_ERR_OUT_OF_MEMORY, "out of host memory decoding %lld ids", (long long)n_ids);
    rlx_status s = RLX_OK;
    for (int64_t i = 0; i < n_ids && !s; i++) {
        int32_t id = ids[i];
        if (!t->id_str[id]) continue; /* an id no token has: `tokenizers` drops it too */
        if (skip_special_tokens && t->is_special[id]) continue;
        s = str_make(&l.s[l.n], t->id_str[id], t->id_len[id], NULL, 0);
        if (!s) l.n++;
    }
    for (int k = 0; k < t->n_decs && !s; k++) {
        const tk_dec *d = &t->decs[k];
        if (d->kind == TK_DEC_BYTELEVEL)
            s = dec_bytelevel(&l);
        else if (d->kind == TK_DEC_WORDPIECE)
            s = dec_wordpiece(d, &l);
        else
            s = dec_bpe(d, &l);
    }
    size_t total = 0;
    const char *sep = t->has_decoder ? "" : " ";
    size_t nsep = strlen(sep);
    for (size_t i = 0; i < l.n; i++)
        total += l.s[i].n + (i ? nsep : 0);
    char *out = s ? NULL : rlx__malloc(total + 1, "the decoded text");
    if (!s && !out) s = RLX_ERR_OUT_OF_MEMORY;
    if (!s) {
        size_t w = 0;
        for (size_t i = 0; i < l.n; i++) {
            if (i && nsep) memcpy(out + w, sep, nsep), w += nsep;
            memcpy(out + w, l.s[i].p, l.s[i].n);
            w += l.s[i].n;
        }
        out[w] = '\0';
        *text_out = out;
        if (text_bytes) *text_bytes = w;
    }
    list_free(&l);
    return s;
}
