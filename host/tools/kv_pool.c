/* KV page pool: the caller's side of rlx/kv.h (host/tools/kv_pool.h). */
#include "tools/kv_pool.h"
#include "runtime/device.h"
#include "model/stages.h"

#include <stdlib.h>
#include <string.h>

size_t rlx__kv_bytes_per_token(const rlx_kv_desc *d) {
    return 2u * (size_t)d->num_layers * (size_t)d->kv_heads * (size_t)d->head_dim * rlx_dtype_size(d->dtype);
}

static void pool_free_mem(rlx__kv_pool *p, void *ptr) {
    if (!ptr) return;
    if (p->model->dev) {
        p->model->dev->ops->bind(p->model->dev->dev); /* a pool may be used on any thread (tp ranks run on their own) */
        p->model->dev->ops->free(p->model->dev->dev, ptr);
    }
    else free(ptr);
}

void rlx__kv_pool_destroy(rlx__kv_pool *p) {
    if (!p) return;
    pool_free_mem(p, p->k);
    pool_free_mem(p, p->v);
    for (int64_t i = 0; p->seq_pages && i < p->n_seqs; i++) free(p->seq_pages[i]);
    free(p->seq_pages);
    free(p->seq_n_pages);
    free(p->seq_cap);
    free(p->seq_len);
    free(p->free_list);
    free(p->cached);
    free(p->indptr);
    free(p->indices);
    free(p->last);
    free(p);
}

static rlx_status pool_alloc(rlx__kv_pool *p, size_t bytes, const char *what, void **out) {
    const rlx_model *m = p->model;
    if (m->dev) {
        rlx_status s = m->dev->ops->bind(m->dev->dev); /* the model's device on this thread (a tp rank's own) */
        if (!s) s = m->dev->ops->alloc(m->dev->dev, bytes, what, out);
        if (!s) s = m->dev->ops->memset(m->dev->dev, *out, 0xff, bytes, NULL);
        if (!s) s = m->dev->ops->sync(m->dev->dev, NULL);
        return s;
    }
    *out = rlx__malloc(bytes, what);
    if (!*out) return RLX_ERR_OUT_OF_MEMORY;
    memset(*out, 0xff, bytes);
    return RLX_OK;
}

rlx_status rlx__kv_pool_create(const rlx_model *m, int64_t page_size, rlx_kv_layout layout, int64_t num_pages, int64_t n_seqs,
                               int dtype, uint64_t seed, rlx__kv_pool **out) {
    *out = NULL;
    if (n_seqs < 1 || num_pages < 1) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "kv pool: %lld pages for %lld sequences", (long long)num_pages, (long long)n_seqs);
    rlx__kv_pool *p = rlx__calloc(1, sizeof *p, "a kv pool");
    if (!p) return RLX_ERR_OUT_OF_MEMORY;
    p->model = m;
    p->desc = rlx_kv_default_desc();
    rlx_status s = rlx_kv_desc_from_model(m, &p->desc);
    if (s) goto fail;
    if (dtype >= 0) p->desc.dtype = (rlx_dtype)dtype;
    p->desc.page_size = page_size;
    p->desc.layout = layout;
    p->desc.num_pages = num_pages;
    const int64_t pe = rlx_kv_page_elems(&p->desc);
    size_t layer_bytes, bytes;
    if (pe < 1 || !rlx__mul_size((size_t)pe * rlx_dtype_size(p->desc.dtype), (size_t)num_pages, &layer_bytes) ||
        !rlx__mul_size(layer_bytes, (size_t)p->desc.num_layers, &bytes)) {
        s = rlx__fail(RLX_ERR_OUT_OF_MEMORY, "kv pool: %lld pages of %lld elements x %lld layers overflow", (long long)num_pages,
                      (long long)pe, (long long)p->desc.num_layers);
        goto fail;
    }
    p->bytes = bytes;
    p->desc.layer_stride = pe * num_pages;
    if ((s = pool_alloc(p, bytes, "the KV cache's K pages", &p->k)) || (s = pool_alloc(p, bytes, "the KV cache's V pages", &p->v))) goto fail;
    p->desc.k_base = p->k;
    p->desc.v_base = p->v;
    /* validate what we built once, so a page-size or dtype mistake shows here */
    if ((s = rlx_kv_desc_validate(m, &p->desc))) goto fail;
    p->n_seqs = n_seqs;
    p->free_list = rlx__malloc((size_t)num_pages * sizeof(int32_t), "the kv free list");
    p->seq_pages = rlx__calloc((size_t)n_seqs, sizeof(int32_t *), "the kv page lists");
    p->seq_n_pages = rlx__calloc((size_t)n_seqs, sizeof(int64_t), "the kv page lists");
    p->seq_cap = rlx__calloc((size_t)n_seqs, sizeof(int64_t), "the kv page lists");
    p->seq_len = rlx__calloc((size_t)n_seqs, sizeof(int64_t), "the kv page lists");
    p->cached = rlx__malloc((size_t)n_seqs * sizeof(int64_t), "kv call lists");
    p->indptr = rlx__malloc((size_t)(n_seqs + 1) * sizeof(int32_t), "kv call lists");
    p->last = rlx__malloc((size_t)n_seqs * sizeof(int32_t), "kv call lists");
    if (!p->free_list || !p->seq_pages || !p->seq_n_pages || !p->seq_cap || !p->seq_len || !p->cached || !p->indptr || !p->last) {
        s = RLX_ERR_OUT_OF_MEMORY;
        goto fail;
    }
    /* popped from the end: pages 0, 1, 2 … in order, or a seeded shuffle of them */
    for (int64_t i = 0; i < num_pages; i++) p->free_list[i] = (int32_t)(num_pages - 1 - i);
    if (seed) {
        uint64_t x = seed;
        for (int64_t i = num_pages - 1; i > 0; i--) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            int64_t j = (int64_t)(x % (uint64_t)(i + 1));
            int32_t t = p->free_list[i];
            p->free_list[i] = p->free_list[j];
            p->free_list[j] = t;
        }
    }
    p->n_free = num_pages;
    *out = p;
    return RLX_OK;
fail:
    rlx__kv_pool_destroy(p);
    return s;
}

static rlx_status take_page(rlx__kv_pool *p, int64_t seq) {
    if (p->seq_n_pages[seq] == p->seq_cap[seq]) {
        int64_t nc = p->seq_cap[seq] ? 2 * p->seq_cap[seq] : 8;
        int32_t *np = realloc(p->seq_pages[seq], (size_t)nc * sizeof(int32_t));
        if (!np) return rlx__fail(RLX_ERR_OUT_OF_MEMORY, "kv pool: out of host memory for sequence %lld's page list", (long long)seq);
        p->seq_pages[seq] = np;
        p->seq_cap[seq] = nc;
    }
    p->seq_pages[seq][p->seq_n_pages[seq]++] = p->free_list[--p->n_free];
    return RLX_OK;
}

static void give_back_to(rlx__kv_pool *p, int64_t seq, int64_t keep) {
    while (p->seq_n_pages[seq] > keep) p->free_list[p->n_free++] = p->seq_pages[seq][--p->seq_n_pages[seq]];
}

rlx_status rlx__kv_pool_prepare(rlx__kv_pool *p, const int64_t *seqs, const int64_t *fresh, int64_t n, rlx_kv_pages *pages) {
    if (n < 1 || n > p->n_seqs) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "kv pool: %lld sequences in one call (pool of %lld)", (long long)n, (long long)p->n_seqs);
    const int64_t P = p->desc.page_size;
    int64_t total = 0;
    for (int64_t i = 0; i < n; i++) {
        const int64_t s = seqs[i];
        if (s < 0 || s >= p->n_seqs) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "kv pool: sequence slot %lld is not in [0, %lld)", (long long)s, (long long)p->n_seqs);
        total += (p->seq_len[s] + fresh[i] + P - 1) / P;
    }
    if (total > p->indices_cap) {
        int32_t *ni = realloc(p->indices, (size_t)total * sizeof(int32_t));
        if (!ni) return rlx__fail(RLX_ERR_OUT_OF_MEMORY, "kv pool: out of host memory for %lld page indices", (long long)total);
        p->indices = ni;
        p->indices_cap = total;
    }
    int64_t *had = rlx__malloc((size_t)n * sizeof(int64_t), "kv pool bookkeeping");
    if (!had) return RLX_ERR_OUT_OF_MEMORY;
    int64_t at = 0;
    p->indptr[0] = 0;
    for (int64_t i = 0; i < n; i++) {
        const int64_t s = seqs[i], len = p->seq_len[s] + fresh[i], need = (len + P - 1) / P;
        had[i] = p->seq_n_pages[s];
        while (p->seq_n_pages[s] < need) {
            rlx_status st = p->n_free ? take_page(p, s)
                                      : rlx__fail(RLX_ERR_OUT_OF_MEMORY,
                                                  "kv pool: no free page for sequence %lld (%lld tokens need %lld pages of %lld; the pool has %lld)",
                                                  (long long)s, (long long)len, (long long)need, (long long)P, (long long)p->desc.num_pages);
            if (st) {
                for (int64_t k = 0; k <= i; k++) give_back_to(p, seqs[k], had[k]);
                free(had);
                return st;
            }
        }
        memcpy(p->indices + at, p->seq_pages[s], (size_t)need * sizeof(int32_t));
        at += need;
        p->indptr[i + 1] = (int32_t)at;
        p->cached[i] = p->seq_len[s];
        p->last[i] = (int32_t)(len - (need - 1) * P);
    }
    free(had);
    pages->n_seqs = n;
    pages->cached_len = p->cached;
    pages->kv_indptr = p->indptr;
    pages->kv_indices = p->indices;
    pages->kv_last_page_len = p->last;
    return RLX_OK;
}

void rlx__kv_pool_commit(rlx__kv_pool *p, const int64_t *seqs, const int64_t *fresh, int64_t n) {
    for (int64_t i = 0; i < n; i++) p->seq_len[seqs[i]] += fresh[i];
}

void rlx__kv_pool_release(rlx__kv_pool *p, int64_t seq) {
    if (seq < 0 || seq >= p->n_seqs) return;
    give_back_to(p, seq, 0);
    p->seq_len[seq] = 0;
}
