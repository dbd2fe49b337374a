/* A KV page pool as a server keeps one (library-side tool for `rlx generate`, the decode bench and
 * the tests): one allocation per K and V holding every layer's pages, a free list, and per
 * sequence the pages it holds and its length. rlx itself never allocates pages (rlx/kv.h); this
 * is the caller's side of that contract, written once.
 */
#ifndef RLX_HOST_KV_POOL_H
#define RLX_HOST_KV_POOL_H

#include "rlx/kv.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rlx__kv_pool {
    const rlx_model *model;
    rlx_kv_desc desc;      /* k_base/v_base + layer_stride over the two allocations */
    void *k, *v;           /* device memory for device models, host memory on the CPU */
    size_t bytes;          /* of each */
    int32_t *free_list;    /* [num_pages]: free pages, popped from the end */
    int64_t n_free;
    int64_t n_seqs;        /* sequence slots */
    int32_t **seq_pages;   /* [n_seqs][cap] pages held, in order */
    int64_t *seq_n_pages, *seq_cap;
    int64_t *seq_len;      /* tokens stored */
    /* scratch for one call's page lists */
    int64_t *cached;
    int32_t *indptr, *indices, *last;
    int64_t indices_cap;
} rlx__kv_pool;

/* A pool of num_pages pages of page_size tokens for a built model, for up to n_seqs sequences.
 * dtype: an rlx_dtype (the CPU reference takes BF16 or F32), or -1 for the model's
 * (rlx_kv_desc_from_model).
 * shuffle_seed != 0 hands pages out in a seeded random order (so tests see shuffled indices);
 * 0 in index order. Pages start filled with 0xff bytes (NaN), so a read of a slot nothing wrote
 * shows. */
rlx_status rlx__kv_pool_create(const rlx_model *model, int64_t page_size, rlx_kv_layout layout, int64_t num_pages,
                               int64_t n_seqs, int dtype, uint64_t shuffle_seed, rlx__kv_pool **out);
void rlx__kv_pool_destroy(rlx__kv_pool *p);
/* Bytes of K + V one token takes over all layers. */
size_t rlx__kv_bytes_per_token(const rlx_kv_desc *d);

/* Page lists for one call: sequences seqs[0 .. n) (pool slots) each bringing new[i] tokens;
 * takes the pages they need from the free list (RLX_ERR_OUT_OF_MEMORY naming the sequence when
 * the pool is exhausted; pages taken for earlier sequences of the call are given back). The
 * lists are valid until the next call on the pool. */
rlx_status rlx__kv_pool_prepare(rlx__kv_pool *p, const int64_t *seqs, const int64_t *new_tokens, int64_t n,
                                rlx_kv_pages *pages);
/* After a successful call: the sequences hold their new tokens. */
void rlx__kv_pool_commit(rlx__kv_pool *p, const int64_t *seqs, const int64_t *new_tokens, int64_t n);
/* A sequence is done: its pages go back to the free list, its length to 0. */
void rlx__kv_pool_release(rlx__kv_pool *p, int64_t seq);

#ifdef __cplusplus
}
#endif

#endif
