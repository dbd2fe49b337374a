/* KV cache descriptors and page lists: what a model's cache looks like, every check a call makes
 * before any work, the block-table converter. */
#include "kv/kv.h"
#include "model/stages.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

rlx_kv_desc rlx_kv_default_desc(void) {
    rlx_kv_desc d;
    memset(&d, 0, sizeof d);
    d.dtype = RLX_DTYPE_BF16;
    d.page_size = 16;
    d.layout = RLX_KV_LAYOUT_NHD;
    return d;
}

int64_t rlx_kv_page_elems(const rlx_kv_desc *d) {
    if (!d || d->page_size < 0 || d->kv_heads < 0 || d->head_dim < 0) return 0;
    int64_t n;
    if (__builtin_mul_overflow(d->page_size, d->kv_heads, &n) || __builtin_mul_overflow(n, d->head_dim, &n)) return 0;
    return n;
}

int64_t rlx_model_max_context(const rlx_model *m) {
    if (!m) return 0;
    return m->max_positions ? m->max_positions : INT32_MAX;
}

/* ---- the model's side ------------------------------------------------------------------------- */

void rlx__kv_model_init(rlx_model *m) {
    m->n_kv_layers = 0;
    m->kv_heads = m->kv_head_dim = 0;
    m->kv_unsupported = NULL;
    const char *reason = NULL;
    for (int i = 0; i < m->list.n_stages; i++) {
        rlx__stage *st = &m->list.stages[i];
        st->kv_layer = -1;
        if (st->op != RLX__OP_ATTENTION || reason) continue;
        if (!st->causal) {
            /* an encoder: every token sees every other, so there is no prefix to cache */
            reason = "it has non-causal attention (an encoder); a KV cache serves causal decoders";
            continue;
        }
        if (m->n_kv_layers && (st->kv_heads != m->kv_heads || st->head_dim != m->kv_head_dim)) {
            reason = "its attention layers differ in kv heads or head_dim (one descriptor describes every layer)";
            continue;
        }
        m->kv_heads = st->kv_heads;
        m->kv_head_dim = st->head_dim;
        st->kv_layer = m->n_kv_layers++;
    }
    if (!reason && !m->n_kv_layers) reason = "it has no causal attention stage";
    if (reason) {
        m->kv_unsupported = reason; /* a string constant */
        m->n_kv_layers = 0;
        for (int i = 0; i < m->list.n_stages; i++) m->list.stages[i].kv_layer = -1;
    }
}

/* The dtype the model's executor computes in: f32 on the CPU reference, else the plan's. */
static rlx_dtype model_act_dtype(const rlx_model *m) {
    if (m->device == RLX_DEVICE_CPU) return RLX_DTYPE_F32;
    return m->profile.compute == RLX_PRECISION_F32 ? RLX_DTYPE_F32 : RLX_DTYPE_BF16;
}

rlx_status rlx_kv_desc_from_model(const rlx_model *m, rlx_kv_desc *d) {
    if (!m || !d) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_kv_desc_from_model: NULL argument");
    if (m->kv_unsupported) return rlx__fail(RLX_ERR_UNSUPPORTED, "this model cannot use a KV cache: %s", m->kv_unsupported);
    d->num_layers = m->n_kv_layers;
    d->kv_heads = m->kv_heads;
    d->head_dim = m->kv_head_dim;
    d->dtype = model_act_dtype(m);
    return RLX_OK;
}

static rlx_status check_desc(const rlx_model *m, const rlx_kv_desc *d) {
    if (!m || !d) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "kv cache: model and descriptor are required");
    if (m->kv_unsupported) return rlx__fail(RLX_ERR_UNSUPPORTED, "this model cannot use a KV cache: %s", m->kv_unsupported);
    if (d->dtype != RLX_DTYPE_BF16 && d->dtype != RLX_DTYPE_F32)
        return rlx__fail(RLX_ERR_UNSUPPORTED, "kv cache: dtype %s; pages hold bf16 or f32", rlx_dtype_name(d->dtype));
    if (m->device != RLX_DEVICE_CPU && d->dtype != model_act_dtype(m))
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT,
                         "kv cache: dtype %s, but this %s model computes in %s and its kernels read and write %s pages",
                         rlx_dtype_name(d->dtype), rlx_device_kind_name(m->device), rlx_dtype_name(model_act_dtype(m)),
                         rlx_dtype_name(model_act_dtype(m)));
    if (d->page_size < 1 || d->page_size > 256 || (d->page_size & (d->page_size - 1)))
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "kv cache: page_size %lld is not a power of two in [1, 256]", (long long)d->page_size);
    if (d->layout != RLX_KV_LAYOUT_NHD && d->layout != RLX_KV_LAYOUT_HND)
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "kv cache: unknown layout %d (NHD or HND)", (int)d->layout);
    if (d->num_pages < 1 || d->num_pages > INT32_MAX)
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "kv cache: num_pages %lld is not in [1, 2^31) (page indices are int32)",
                         (long long)d->num_pages);
    if (d->num_layers != m->n_kv_layers)
        return rlx__fail(RLX_ERR_SHAPE, "kv cache: the descriptor has %lld layers, the model has %d attention layers",
                         (long long)d->num_layers, m->n_kv_layers);
    if (d->kv_heads != m->kv_heads)
        return rlx__fail(RLX_ERR_SHAPE, "kv cache: the descriptor has %lld kv heads, the model's attention has %lld%s",
                         (long long)d->kv_heads, (long long)m->kv_heads, " (per rank when the model is sharded)");
    if (d->head_dim != m->kv_head_dim)
        return rlx__fail(RLX_ERR_SHAPE, "kv cache: the descriptor has head_dim %lld, the model's attention has %lld",
                         (long long)d->head_dim, (long long)m->kv_head_dim);
    const int64_t pe = rlx_kv_page_elems(d);
    if (pe < 1) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "kv cache: page_size x kv_heads x head_dim overflows");
    if (d->page_stride != 0 && d->page_stride < pe)
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "kv cache: page_stride %lld is smaller than a page (%lld elements): pages would overlap",
                         (long long)d->page_stride, (long long)pe);
    const int64_t ps = d->page_stride ? d->page_stride : pe;
    int64_t span;
    if (__builtin_mul_overflow(ps, d->num_pages, &span))
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "kv cache: num_pages x page_stride overflows");
    for (int kv = 0; kv < 2; kv++) {
        void *const *arr = kv ? d->v_layers : d->k_layers;
        const char *name = kv ? "v" : "k";
        if (arr) {
            for (int64_t l = 0; l < d->num_layers; l++)
                if (!arr[l]) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "kv cache: %s_layers[%lld] (layer %lld's %s pages) is NULL", name,
                                              (long long)l, (long long)l, kv ? "V" : "K");
        } else {
            if (!(kv ? d->v_base : d->k_base))
                return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "kv cache: neither %s_layers nor %s_base is given (layer 0's %s pages are NULL)",
                                 name, name, kv ? "V" : "K");
            if (d->num_layers > 1 && d->layer_stride < span)
                return rlx__fail(RLX_ERR_INVALID_ARGUMENT,
                                 "kv cache: layer_stride %lld is smaller than a layer's pages (%lld pages x %lld elements): layers would overlap",
                                 (long long)d->layer_stride, (long long)d->num_pages, (long long)ps);
        }
    }
    return RLX_OK;
}

rlx_status rlx_kv_desc_validate(const rlx_model *m, const rlx_kv_desc *d) { return check_desc(m, d); }

/* ---- a call ---------------------------------------------------------------------------------------- */

typedef struct page_use {
    int32_t page;
    int32_t entry;   /* index within its sequence's list */
    int64_t seq;
    int written;     /* the call writes some slot of it */
} page_use;

static int by_page(const void *a, const void *b) {
    const page_use *x = a, *y = b;
    if (x->page != y->page) return x->page < y->page ? -1 : 1;
    if (x->seq != y->seq) return x->seq < y->seq ? -1 : 1;
    return x->entry - y->entry;
}

void rlx__kv_call_free(rlx__kv_call *c) {
    if (!c) return;
    free(c->cached);
    free(c->kv_len);
    memset(c, 0, sizeof *c);
}

rlx_status rlx__kv_call_begin(const rlx_model *m, const rlx_kv_desc *d, const rlx_kv_pages *pg, const int64_t *seq_start,
                              int64_t n_seqs, rlx__kv_call *c) {
    memset(c, 0, sizeof *c);
    rlx_status s = check_desc(m, d);
    if (s) return s;
    if (!pg) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "kv pages: the page lists are NULL");
    if (pg->n_seqs != n_seqs)
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "kv pages: page lists for %lld sequences, the batch has %lld", (long long)pg->n_seqs,
                         (long long)n_seqs);
    if (!pg->kv_indptr || !pg->kv_indices) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "kv pages: kv_indptr and kv_indices are required");
    if (pg->kv_indptr[0] != 0) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "kv pages: kv_indptr[0] is %d, must be 0", (int)pg->kv_indptr[0]);
    const int64_t P = d->page_size;
    const int64_t max_ctx = rlx_model_max_context(m);
    c->cached = rlx__malloc((size_t)n_seqs * sizeof(int64_t), "kv cached lengths");
    c->kv_len = rlx__malloc((size_t)n_seqs * sizeof(int64_t), "kv lengths");
    if (!c->cached || !c->kv_len) {
        rlx__kv_call_free(c);
        return RLX_ERR_OUT_OF_MEMORY;
    }
    for (int64_t i = 0; i < n_seqs; i++) {
        const int64_t cached = pg->cached_len ? pg->cached_len[i] : 0, fresh = seq_start[i + 1] - seq_start[i];
        if (cached < 0) {
            rlx__kv_call_free(c);
            return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "kv pages: sequence %lld: cached_len %lld is negative", (long long)i, (long long)cached);
        }
        if (cached > max_ctx - fresh) {
            rlx__kv_call_free(c);
            return rlx__fail(RLX_ERR_INVALID_ARGUMENT,
                             "kv pages: sequence %lld: %lld cached + %lld new tokens reach position %lld, beyond the model's %lld positions "
                             "(max_position_embeddings, or the recipe's max_context)",
                             (long long)i, (long long)cached, (long long)fresh, (long long)(cached + fresh - 1), (long long)max_ctx);
        }
        const int64_t len = cached + fresh, need = (len + P - 1) / P;
        const int64_t a = pg->kv_indptr[i], b = pg->kv_indptr[i + 1];
        if (b < a) {
            rlx__kv_call_free(c);
            return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "kv pages: kv_indptr decreases at sequence %lld (%lld then %lld)", (long long)i,
                             (long long)a, (long long)b);
        }
        if (b - a != need) {
            rlx__kv_call_free(c);
            return rlx__fail(RLX_ERR_INVALID_ARGUMENT,
                             "kv pages: sequence %lld: cached_len %lld + %lld new tokens need %lld page%s of %lld tokens, but %lld %s listed%s",
                             (long long)i, (long long)cached, (long long)fresh, (long long)need, need == 1 ? "" : "s", (long long)P,
                             (long long)(b - a), b - a == 1 ? "is" : "are",
                             b - a < need ? " (cached_len beyond the pages given, or too few pages for the new tokens)" : "");
        }
        if (pg->kv_last_page_len) {
            const int64_t last = len - (need - 1) * P;
            if (pg->kv_last_page_len[i] != last) {
                rlx__kv_call_free(c);
                return rlx__fail(RLX_ERR_INVALID_ARGUMENT,
                                 "kv pages: sequence %lld: kv_last_page_len %d, but %lld tokens in pages of %lld leave %lld in the last page",
                                 (long long)i, (int)pg->kv_last_page_len[i], (long long)len, (long long)P, (long long)last);
            }
        }
        c->cached[i] = cached;
        c->kv_len[i] = len;
        if (len > c->max_kv) c->max_kv = len;
    }
    const int64_t total = pg->kv_indptr[n_seqs];
    page_use *use = rlx__malloc((size_t)total * sizeof *use + 1, "the page check");
    if (!use) {
        rlx__kv_call_free(c);
        return RLX_ERR_OUT_OF_MEMORY;
    }
    int64_t n = 0;
    for (int64_t i = 0; i < n_seqs; i++)
        for (int64_t e = pg->kv_indptr[i]; e < pg->kv_indptr[i + 1]; e++) {
            const int32_t page = pg->kv_indices[e];
            const int64_t entry = e - pg->kv_indptr[i];
            if (page < 0 || page >= d->num_pages) {
                free(use);
                rlx__kv_call_free(c);
                return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "kv pages: sequence %lld: page %d (entry %lld of its list) is outside the cache's %lld pages",
                                 (long long)i, (int)page, (long long)entry, (long long)d->num_pages);
            }
            /* slots [entry·P, entry·P + P) of the sequence; the call writes [cached, kv_len) */
            use[n++] = (page_use){page, (int32_t)entry, i, (entry + 1) * P > c->cached[i]};
        }
    qsort(use, (size_t)n, sizeof *use, by_page);
    for (int64_t k = 1; k < n; k++) {
        const page_use *x = &use[k - 1], *y = &use[k];
        if (x->page != y->page) continue;
        /* a shared, fully cached prefix page is fine; anything written, or a page twice in one list, is not */
        if (x->written || y->written || x->seq == y->seq) {
            const page_use *w = y->written && !x->written ? y : x, *o = w == x ? y : x;
            char msg[320];
            if (x->seq == y->seq)
                snprintf(msg, sizeof msg, "kv pages: sequence %lld lists page %d twice (entries %d and %d)", (long long)x->seq, (int)x->page,
                         (int)x->entry, (int)y->entry);
            else
                snprintf(msg, sizeof msg,
                         "kv pages: page %d is given twice in one call: sequence %lld (entry %d) and sequence %lld (entry %d), and this call "
                         "writes it for sequence %lld",
                         (int)x->page, (long long)o->seq, (int)o->entry, (long long)w->seq, (int)w->entry, (long long)w->seq);
            free(use);
            rlx__kv_call_free(c);
            return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "%s", msg);
        }
    }
    free(use);
    c->desc = d;
    c->pages = pg;
    c->n_seqs = n_seqs;
    c->total_pages = total;
    c->page_elems = rlx_kv_page_elems(d);
    c->page_stride = d->page_stride ? d->page_stride : c->page_elems;
    c->head_stride = d->layout == RLX_KV_LAYOUT_NHD ? d->head_dim : P * d->head_dim;
    c->token_stride = d->layout == RLX_KV_LAYOUT_NHD ? d->kv_heads * d->head_dim : d->head_dim;
    c->page_shift = __builtin_ctzll((unsigned long long)P);
    c->elem = rlx_dtype_size(d->dtype);
    return RLX_OK;
}

void *rlx__kv_layer_k(const rlx__kv_call *c, int l) {
    const rlx_kv_desc *d = c->desc;
    return d->k_layers ? d->k_layers[l] : (char *)d->k_base + (size_t)l * (size_t)d->layer_stride * c->elem;
}

void *rlx__kv_layer_v(const rlx__kv_call *c, int l) {
    const rlx_kv_desc *d = c->desc;
    return d->v_layers ? d->v_layers[l] : (char *)d->v_base + (size_t)l * (size_t)d->layer_stride * c->elem;
}

/* ---- block table → CSR -------------------------------------------------------------------------------- */

rlx_status rlx_kv_pages_from_block_table(const int32_t *bt, int64_t n_seqs, int64_t per_row, const int64_t *kv_lens,
                                         int64_t page_size, int32_t *indptr, int32_t *indices, int64_t cap, int32_t *last) {
    if (!bt || !kv_lens || !indptr || !indices)
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_kv_pages_from_block_table: block_table, kv_lens, kv_indptr and kv_indices are required");
    if (n_seqs < 1 || per_row < 1)
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_kv_pages_from_block_table: %lld sequences x %lld blocks per row", (long long)n_seqs,
                         (long long)per_row);
    if (page_size < 1 || page_size > 256 || (page_size & (page_size - 1)))
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_kv_pages_from_block_table: page_size %lld is not a power of two in [1, 256]",
                         (long long)page_size);
    /* check everything first, so a refusal writes nothing */
    int64_t total = 0;
    for (int64_t i = 0; i < n_seqs; i++) {
        if (kv_lens[i] < 1)
            return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_kv_pages_from_block_table: sequence %lld has length %lld (>= 1)", (long long)i,
                             (long long)kv_lens[i]);
        const int64_t need = (kv_lens[i] + page_size - 1) / page_size;
        if (need > per_row)
            return rlx__fail(RLX_ERR_INVALID_ARGUMENT,
                             "rlx_kv_pages_from_block_table: sequence %lld: %lld tokens need %lld blocks of %lld, its row has %lld",
                             (long long)i, (long long)kv_lens[i], (long long)need, (long long)page_size, (long long)per_row);
        total += need;
        if (total > INT32_MAX)
            return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_kv_pages_from_block_table: more than 2^31 pages in one call");
    }
    if (total > cap)
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_kv_pages_from_block_table: %lld pages do not fit kv_indices (capacity %lld)",
                         (long long)total, (long long)cap);
    int64_t at = 0;
    indptr[0] = 0;
    for (int64_t i = 0; i < n_seqs; i++) {
        const int64_t need = (kv_lens[i] + page_size - 1) / page_size;
        for (int64_t e = 0; e < need; e++) indices[at++] = bt[i * per_row + e];
        indptr[i + 1] = (int32_t)at;
        if (last) last[i] = (int32_t)(kv_lens[i] - (need - 1) * page_size);
    }
    return RLX_OK;
}
