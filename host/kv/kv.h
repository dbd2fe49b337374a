/* KV cache internals (host/kv/): a validated call of rlx_session_prefill_kv, the page addressing
 * both executors share, and the model facts a descriptor is checked against.
 *
 * Layering: kv sits between the planner and the runtime (core ← io ← model ← fusion ← kv ←
 * runtime): it reads the built model's KV facts (model/stages.h) and the runtime's session and
 * executors use it. */
#ifndef RLX_HOST_KV_H
#define RLX_HOST_KV_H

#include "rlx/kv.h"
#include "model/stages.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One validated call: the descriptor and page lists as the caller gave them (borrowed for the
 * call), plus what was derived from them. */
typedef struct rlx__kv_call {
    const rlx_kv_desc *desc;
    const rlx_kv_pages *pages;
    int64_t n_seqs;
    int64_t *cached;        /* [n_seqs] tokens already cached */
    int64_t *kv_len;        /* [n_seqs] tokens after the call (cached + new) */
    int64_t max_kv;         /* max of kv_len */
    int64_t total_pages;    /* kv_indptr[n_seqs] */
    int64_t page_elems;     /* page_size · kv_heads · head_dim */
    int64_t page_stride;    /* elements between pages (resolved: never 0) */
    int64_t token_stride;   /* elements between token slots of a page */
    int64_t head_stride;    /* elements between kv heads of a token slot */
    int page_shift;         /* log2(page_size) */
    size_t elem;            /* bytes per element */
} rlx__kv_call;

/* Build: numbers the model's causal attention stages as KV layers (st->kv_layer) and records
 * the KV facts (n_kv_layers, kv_heads, kv_head_dim) or why the model cannot use a cache. */
void rlx__kv_model_init(rlx_model *m);

/* Validates desc and pages against the model and the batch (seq_start [n_seqs + 1] of the new
 * tokens), before any work; fills *c (free with rlx__kv_call_free). device: 1 for device models
 * (the dtype must be the model's activation dtype). */
rlx_status rlx__kv_call_begin(const rlx_model *m, const rlx_kv_desc *desc, const rlx_kv_pages *pages,
                              const int64_t *seq_start, int64_t n_seqs, rlx__kv_call *c);
void rlx__kv_call_free(rlx__kv_call *c);

/* Layer l's K and V bases. */
void *rlx__kv_layer_k(const rlx__kv_call *c, int layer);
void *rlx__kv_layer_v(const rlx__kv_call *c, int layer);
/* Element offset, from a layer base, of token j of sequence s, kv head g. */
static inline int64_t rlx__kv_offset(const rlx__kv_call *c, int64_t s, int64_t j, int64_t g) {
    const int64_t page = c->pages->kv_indices[c->pages->kv_indptr[s] + (j >> c->page_shift)];
    return page * c->page_stride + (j & ((1 << c->page_shift) - 1)) * c->token_stride + g * c->head_stride;
}

#ifdef __cplusplus
}
#endif

#endif
