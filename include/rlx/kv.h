/* rlx — a paged KV cache owned by the caller: prefill that writes K/V into it, prefill that
 * continues a cached prefix, decode steps.
 *
 * The server allocates the pages (on the device for device models, in host memory for the CPU
 * reference) and describes them once with an rlx_kv_desc; every call names, per sequence, the
 * pages that hold it (rlx_kv_pages, FlashInfer's CSR form) and how many of its tokens are already
 * cached. rlx never allocates pages and never keeps a pointer to them after a call returns.
 *
 *     rlx_kv_desc kv = rlx_kv_default_desc();
 *     rlx_kv_desc_from_model(model, &kv);         // layers, kv heads, head_dim, dtype
 *     kv.page_size = 16; kv.num_pages = 4096; kv.k_base = k_pool; kv.v_base = v_pool;
 *     kv.layer_stride = 4096 * rlx_kv_page_elems(&kv);
 *     // prompt: cached 0, its pages listed; then one token per step, cached = tokens so far
 *     rlx_session_prefill_kv(session, &batch, &kv, &pages, stream);
 *
 * Page contents. A page holds page_size token slots of one layer's K (or V): layout NHD is
 * [page_size, kv_heads, head_dim], HND is [kv_heads, page_size, head_dim] (FlashInfer's names),
 * elements of `dtype`, row-major. K is stored after RoPE (what transformers' cache holds and what
 * common decode kernels expect), V as computed. Token j of a sequence (its position, counting
 * from 0) lives in slot j % page_size of its (j / page_size)-th page.
 *
 * Where the pages are. Layer l's K pages start at k_layers[l] (pointer arrays: vLLM's per-layer
 * tensors) or at k_base + l·layer_stride elements (one tensor for every layer); V likewise. Page p
 * starts page_stride elements after page p-1. So vLLM's per-layer [2, blocks, block, kv_heads,
 * head_dim] tensors are k_layers[l] = t_l, v_layers[l] = t_l + blocks·block·kv_heads·head_dim,
 * page_stride 0 (dense); FlashInfer's [pages, 2, page_size, kv_heads, head_dim] per layer is
 * v_layers[l] = k_layers[l] + page_size·kv_heads·head_dim with page_stride twice the page's
 * elements. No copy either way.
 *
 * Every call validates everything before any work, and on a refusal nothing is written to the
 * cache: the descriptor against the model (dtype, layers, kv heads, head_dim, NULL layer
 * pointers), and per sequence the page list (an index outside [0, num_pages), a page listed twice
 * where this call writes it, too few or too many pages for cached + new tokens, a last-page length
 * that disagrees) and the context (cached + new tokens beyond the model's positions, i.e.
 * max_position_embeddings or the recipe's max_context). Messages name the sequence and the page.
 */
#ifndef RLX_KV_H
#define RLX_KV_H

#include "rlx/encoder.h"
#include "rlx/flow.h"
#include "rlx/rlx.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Order of a page's elements (FlashInfer's names). Values are only ever appended. */
typedef enum rlx_kv_layout {
    RLX_KV_LAYOUT_NHD = 0, /* [page_size, kv_heads, head_dim] */
    RLX_KV_LAYOUT_HND = 1, /* [kv_heads, page_size, head_dim] */
} rlx_kv_layout;

/* The cache of one model, described once. */
typedef struct rlx_kv_desc {
    rlx_dtype dtype;         /* RLX_DTYPE_BF16 for bf16 device models; RLX_DTYPE_F32 for f32-precision
                                device models; the CPU reference takes either (default BF16) */
    int64_t page_size;       /* tokens per page: a power of two, 1 .. 256 (default 16) */
    rlx_kv_layout layout;    /* default NHD */
    int64_t num_pages;       /* pages in the pool: every page index is < num_pages */
    int64_t num_layers;      /* the model's attention layers (rlx_kv_desc_from_model) */
    int64_t kv_heads;        /* the model's kv heads: per rank when the model is sharded */
    int64_t head_dim;
    void *const *k_layers;   /* [num_layers] K base of each layer; NULL: k_base + l·layer_stride */
    void *const *v_layers;   /* [num_layers] V base of each layer; NULL: v_base + l·layer_stride */
    void *k_base, *v_base;   /* with layer_stride, when the arrays are NULL */
    int64_t layer_stride;    /* elements from layer l's K (V) base to layer l+1's */
    int64_t page_stride;     /* elements from page p to page p+1; 0 = dense (rlx_kv_page_elems) */
} rlx_kv_desc;

/* Zeros, with dtype BF16, page_size 16, layout NHD. */
RLX_API rlx_kv_desc rlx_kv_default_desc(void);

/* Fills num_layers, kv_heads, head_dim and dtype (the model's activation dtype: BF16 on bf16
 * devices, F32 on f32-precision devices and on the CPU reference) from a built model; leaves the
 * rest of *desc as it is. RLX_ERR_UNSUPPORTED when the model cannot use a KV cache (no causal
 * attention, or a non-causal attention stage, or layers whose kv heads or head sizes differ). */
RLX_API rlx_status rlx_kv_desc_from_model(const rlx_model *model, rlx_kv_desc *desc);

/* Elements of one page: page_size · kv_heads · head_dim (0 for a NULL desc). */
RLX_API int64_t rlx_kv_page_elems(const rlx_kv_desc *desc);

/* Checks a descriptor against a model (everything rlx_session_prefill_kv checks of it). */
RLX_API rlx_status rlx_kv_desc_validate(const rlx_model *model, const rlx_kv_desc *desc);

/* The tokens a sequence may reach (cached + new): the rows of the model's RoPE tables, i.e.
 * min(max_position_embeddings, the recipe's max_context or seq). 0 for a NULL model. */
RLX_API int64_t rlx_model_max_context(const rlx_model *model);

/* Per call: where each sequence's tokens are, in CSR form (FlashInfer's paged layout). Host
 * memory. After the call, sequence i holds kv_len = cached_len[i] + (its new tokens) tokens in
 * the pages kv_indices[kv_indptr[i]] .. kv_indices[kv_indptr[i+1] - 1], in order, and lists
 * exactly the ceil(kv_len / page_size) pages that takes. Two sequences may list the same page
 * only where neither writes it (a shared, fully cached prefix); a page this call writes appears
 * once. */
typedef struct rlx_kv_pages {
    int64_t n_seqs;                  /* = the batch's sequences */
    const int64_t *cached_len;       /* [n_seqs] tokens already in the pages; NULL = all 0 */
    const int32_t *kv_indptr;        /* [n_seqs + 1]; kv_indptr[0] = 0, non-decreasing */
    const int32_t *kv_indices;       /* [kv_indptr[n_seqs]] page indices */
    const int32_t *kv_last_page_len; /* [n_seqs] tokens in each last page after the call
                                        (1 .. page_size); NULL = not checked */
} rlx_kv_pages;

/* A dense block table (vLLM: block_table [n_seqs, blocks_per_row] int32, row i's first
 * ceil(kv_lens[i] / page_size) entries are sequence i's pages) to CSR. kv_lens are the tokens each
 * sequence holds after the call (cached + new). kv_indptr gets n_seqs + 1 entries,
 * kv_last_page_len n_seqs (NULL: not written), kv_indices at most indices_capacity. Refuses a row
 * that needs more than blocks_per_row pages, a length < 1, and a short output, naming the
 * sequence. */
RLX_API rlx_status rlx_kv_pages_from_block_table(const int32_t *block_table, int64_t n_seqs,
                                                 int64_t blocks_per_row, const int64_t *kv_lens,
                                                 int64_t page_size, int32_t *kv_indptr,
                                                 int32_t *kv_indices, int64_t indices_capacity,
                                                 int32_t *kv_last_page_len);

/* Prefill that reads and writes the cache. For sequence i, pages->cached_len[i] tokens are
 * already in its pages; its batch->seq_lens[i] new tokens get positions cached_len[i] ..,
 * attend causally to the cached tokens and to themselves, and their K/V are written into its
 * pages. cached_len = 0 is a prefill that exports its K/V; one new token per sequence is a decode
 * step. The model must have been built with capacity for the new tokens (batch × seq) and with
 * RoPE tables covering the context (rlx_llama_recipe_params.max_context). Named inputs
 * (batch->inputs) are not supported here (decoder models have none). The output is what
 * rlx_session_prefill gives: last-token logits per sequence, or logits of every new token.
 * stream as rlx_session_prefill; the pages are read and written on it. */
RLX_API rlx_status rlx_session_prefill_kv(rlx_session *session, const rlx_prefill_batch *batch,
                                          const rlx_kv_desc *kv, const rlx_kv_pages *pages,
                                          void *stream);

#ifdef __cplusplus
}
#endif

#endif /* RLX_KV_H */
