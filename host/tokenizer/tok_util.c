/* Tokenizer helpers: hash maps, the string pool, UTF-8, and the character classes of
 * `tokenizers`' components expressed through utf8proc's Unicode categories. */
#include "tokenizer/tok_internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* ---- growable arrays ------------------------------------------------------------------------ */

rlx_status rlx__tk_reserve(void **p, size_t *cap, size_t need, size_t elem, const char *what) {
    if (need <= *cap) return RLX_OK;
    size_t nc = *cap ? *cap : 64;
    while (nc < need) {
        if (nc > SIZE_MAX / 2) return rlx__fail(RLX_ERR_OUT_OF_MEMORY, "size overflow growing %s", what);
        nc *= 2;
    }
    size_t bytes;
    if (!rlx__mul_size(nc, elem, &bytes)) return rlx__fail(RLX_ERR_OUT_OF_MEMORY, "size overflow growing %s", what);
    void *np = realloc(*p, bytes);
    if (!np) return rlx__fail(RLX_ERR_OUT_OF_MEMORY, "out of host memory: %zu bytes for %s", bytes, what);
    *p = np;
    *cap = nc;
    return RLX_OK;
}

void rlx__tk_work_free(tk_work *w) {
    for (int i = 0; i < 2; i++) {
        free(w->tb[i].p);
        free(w->pc[i].p);
    }
    free(w->ids);
    free(w->ev);
    free(w->sym);
    free(w->heap);
    free(w->na);
    free(w->nb);
    free(w->scratch);
    free(w->utf8);
    if (w->md) pcre2_match_data_free(w->md);
    memset(w, 0, sizeof *w);
}

/* ---- string pool ---------------------------------------------------------------------------- */

char *rlx__tk_pool_add(rlx_tokenizer *t, const char *s, size_t n) {
    tk_chunk *c = t->pool;
    if (!c || c->cap - c->used < n + 1) {
        size_t cap = n + 1 > (1u << 20) ? n + 1 : (1u << 20);
        tk_chunk *nc = malloc(sizeof *nc + cap);
        if (!nc) {
            rlx__fail(RLX_ERR_OUT_OF_MEMORY, "out of host memory: %zu bytes for the tokenizer's strings", cap);
            return NULL;
        }
        nc->next = c;
        nc->used = 0;
        nc->cap = cap;
        t->pool = c = nc;
    }
    char *p = c->data + c->used;
    memcpy(p, s, n);
    p[n] = '\0';
    c->used += n + 1;
    return p;
}

void rlx__tk_pool_free(rlx_tokenizer *t) {
    for (tk_chunk *c = t->pool, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    t->pool = NULL;
}

/* ---- string -> id map ----------------------------------------------------------------------- */

uint32_t rlx__tk_hash(const char *s, size_t n) {
    /* FNV-1a, then a final mix so the low bits (the slot) depend on every byte. */
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 16777619u;
    h ^= h >> 15;
    h *= 0x2C1B3C6Du;
    h ^= h >> 12;
    return h;
}

rlx_status rlx__tk_map_init(tk_map *m, size_t expected) {
    size_t cap = 16;
    while (cap < expected * 2 + 16)
        cap *= 2;
    if (cap > (1u << 30)) return rlx__fail(RLX_ERR_OUT_OF_MEMORY, "vocabulary of %zu entries is too large", expected);
    m->slots = rlx__calloc(cap, sizeof *m->slots, "a vocabulary map");
    if (!m->slots) return RLX_ERR_OUT_OF_MEMORY;
    m->mask = (uint32_t)cap - 1;
    m->n = 0;
    return RLX_OK;
}

static rlx_status map_grow(tk_map *m) {
    tk_map nm;
    rlx_status s = rlx__tk_map_init(&nm, (size_t)m->n * 2);
    if (s) return s;
    for (uint32_t i = 0; i <= m->mask; i++) {
        tk_map_slot *o = &m->slots[i];
        if (!o->key) continue;
        uint32_t j = o->hash & nm.mask;
        while (nm.slots[j].key)
            j = (j + 1) & nm.mask;
        nm.slots[j] = *o;
        nm.n++;
    }
    free(m->slots);
    *m = nm;
    return RLX_OK;
}

rlx_status rlx__tk_map_put(tk_map *m, const char *key, size_t len, int32_t id) {
    if ((size_t)(m->n + 1) * 2 > (size_t)m->mask + 1) {
        rlx_status s = map_grow(m);
        if (s) return s;
    }
    uint32_t h = rlx__tk_hash(key, len);
    for (uint32_t i = h & m->mask;; i = (i + 1) & m->mask) {
        tk_map_slot *sl = &m->slots[i];
        if (!sl->key) {
            *sl = (tk_map_slot){key, (uint32_t)len, h, id};
            m->n++;
            return RLX_OK;
        }
        if (sl->hash == h && sl->len == len && !memcmp(sl->key, key, len)) {
            sl->id = id;
            return RLX_OK;
        }
    }
}

int32_t rlx__tk_map_get(const tk_map *m, const char *key, size_t len) {
    if (!m->slots) return -1;
    uint32_t h = rlx__tk_hash(key, len);
    for (uint32_t i = h & m->mask;; i = (i + 1) & m->mask) {
        const tk_map_slot *sl = &m->slots[i];
        if (!sl->key) return -1;
        if (sl->hash == h && sl->len == len && !memcmp(sl->key, key, len)) return sl->id;
    }
}

void rlx__tk_map_free(tk_map *m) {
    free(m->slots);
    memset(m, 0, sizeof *m);
}

/* ---- pair map ------------------------------------------------------------------------------- */

rlx_status rlx__tk_pairs_init(tk_pair_map *m, size_t expected) {
    size_t cap = 16;
    int bits = 4;
    while (cap < expected * 2 + 16)
        cap *= 2, bits++;
    m->slots = rlx__malloc(cap * sizeof *m->slots, "the BPE merge table");
    if (!m->slots) return RLX_ERR_OUT_OF_MEMORY;
    for (size_t i = 0; i < cap; i++)
        m->slots[i].key = UINT64_MAX;
    m->mask = cap - 1;
    m->shift = 64 - bits;
    return RLX_OK;
}

void rlx__tk_pairs_put(tk_pair_map *m, int32_t a, int32_t b, int32_t rank, int32_t id) {
    /* The table is sized for every merge up front; a pair seen twice keeps its first (lowest)
     * rank, as `tokenizers` does when it builds its merge map from the list in order. */
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    for (uint64_t i = (key * 0x9E3779B97F4A7C15ull) >> m->shift;; i = (i + 1) & m->mask) {
        tk_pair_slot *s = &m->slots[i];
        if (s->key == key) return;
        if (s->key == UINT64_MAX) {
            *s = (tk_pair_slot){key, rank, id};
            return;
        }
    }
}

/* ---- UTF-8 ---------------------------------------------------------------------------------- */

int rlx__tk_utf8_put(char *out, int32_t cp) {
    uint8_t *o = (uint8_t *)out;
    if (cp < 0x80) {
        o[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (uint8_t)(0xC0 | (cp >> 6));
        o[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (uint8_t)(0xE0 | (cp >> 12));
        o[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (uint8_t)(0xF0 | (cp >> 18));
    o[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

/* Length of the valid sequence at s (1..4), or 0 when s[0] starts no valid sequence; *bad is
 * then the length of the maximal subpart to replace (Unicode's "best practice", U+FFFD each). */
static int utf8_seq(const uint8_t *s, size_t n, size_t *bad) {
    uint8_t c = s[0];
    if (c < 0x80) return 1;
    int need;
    uint8_t lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        need = 1;
    else if (c == 0xE0)
        need = 2, lo = 0xA0;
    else if (c >= 0xE1 && c <= 0xEC)
        need = 2;
    else if (c == 0xED)
        need = 2, hi = 0x9F; /* no surrogates */
    else if (c >= 0xEE && c <= 0xEF)
        need = 2;
    else if (c == 0xF0)
        need = 3, lo = 0x90;
    else if (c >= 0xF1 && c <= 0xF3)
        need = 3;
    else if (c == 0xF4)
        need = 3, hi = 0x8F;
    else {
        *bad = 1;
        return 0;
    }
    for (int k = 1; k <= need; k++) {
        if ((size_t)k >= n || s[k] < lo || s[k] > hi) {
            *bad = (size_t)k;
            return 0;
        }
        lo = 0x80, hi = 0xBF;
    }
    return need + 1;
}

size_t rlx__tk_utf8_check(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        size_t bad;
        int k = utf8_seq(s + i, n - i, &bad);
        if (!k) return i;
        i += (size_t)k;
    }
    return n;
}

size_t rlx__tk_utf8_lossy(const uint8_t *s, size_t n, char *out) {
    size_t i = 0, o = 0;
    while (i < n) {
        size_t bad;
        int k = utf8_seq(s + i, n - i, &bad);
        if (k) {
            memcpy(out + o, s + i, (size_t)k);
            o += (size_t)k;
            i += (size_t)k;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i += bad;
        }
    }
    out[o] = '\0';
    return o;
}

/* ---- character classes ---------------------------------------------------------------------- */

int rlx__tk_is_whitespace(int32_t cp) {
    /* White_Space: the controls TAB..CR and NEL, and the separators (Zs, Zl, Zp). */
    if (cp < 0x80) return cp == ' ' || (cp >= 9 && cp <= 13);
    if (cp == 0x85) return 1;
    utf8proc_category_t c = utf8proc_category(cp);
    return c == UTF8PROC_CATEGORY_ZS || c == UTF8PROC_CATEGORY_ZL || c == UTF8PROC_CATEGORY_ZP;
}

int rlx__tk_is_punct(int32_t cp) {
    if (cp < 0x80)
        return (cp >= 0x21 && cp <= 0x2F) || (cp >= 0x3A && cp <= 0x40) || (cp >= 0x5B && cp <= 0x60) ||
               (cp >= 0x7B && cp <= 0x7E);
    utf8proc_category_t c = utf8proc_category(cp);
    return c >= UTF8PROC_CATEGORY_PC && c <= UTF8PROC_CATEGORY_PO;
}

int rlx__tk_is_numeric(int32_t cp) {
    if (cp < 0x80) return cp >= '0' && cp <= '9';
    utf8proc_category_t c = utf8proc_category(cp);
    return c == UTF8PROC_CATEGORY_ND || c == UTF8PROC_CATEGORY_NL || c == UTF8PROC_CATEGORY_NO;
}

int rlx__tk_is_word(int32_t cp) {
    /* Rust regex's Unicode \w: Alphabetic, marks, decimal digits, connector punctuation and the
     * join controls; Alphabetic taken as the letters and Nl. */
    if (cp < 0x80) return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || cp == '_';
    if (cp == 0x200C || cp == 0x200D) return 1;
    utf8proc_category_t c = utf8proc_category(cp);
    return (c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_ND) || c == UTF8PROC_CATEGORY_NL ||
           c == UTF8PROC_CATEGORY_PC;
}

/* ---- the GPT-2 byte <-> unicode map --------------------------------------------------------- */

uint16_t rlx__tk_byte_to_cp[256];
int16_t rlx__tk_cp_to_byte[324];
static pthread_once_t maps_once = PTHREAD_ONCE_INIT;
static void maps_init(void) { rlx__tk_bytelevel_maps(rlx__tk_byte_to_cp, rlx__tk_cp_to_byte); }
void rlx__tk_maps_init(void) { pthread_once(&maps_once, maps_init); }

void rlx__tk_bytelevel_maps(uint16_t byte_to_cp[256], int16_t cp_to_byte[324]) {
    /* Printable bytes map to themselves; the 68 others, in order, to U+0100 upwards. */
    for (int i = 0; i < 324; i++)
        cp_to_byte[i] = -1;
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        byte_to_cp[b] = (uint16_t)(printable ? b : 256 + n++);
        cp_to_byte[byte_to_cp[b]] = (int16_t)b;
    }
}
