// Key/value rows of a KV cache as attention kernels and kv_write address them (rlx_kv_ref in
// rlx_kernels.h): paged through the page table, or contiguous rows of a plain prefill.
#ifndef RLX_KERNELS_KV_CUH
#define RLX_KERNELS_KV_CUH

#include "rlx_dtype.cuh"

// Element offset of key j of sequence s (kv head 0) from the layer's K (or V) base.
static __device__ __forceinline__ int64_t rlx_kv_row(const rlx_kv_ref &kv, const int32_t *seq_start, int s, int64_t j) {
    if (kv.page_indptr) {
        const int64_t page = kv.page_indices[kv.page_indptr[s] + (int)(j >> kv.page_shift)];
        return page * kv.page_stride + (j & ((1 << kv.page_shift) - 1)) * kv.token_stride;
    }
    return ((int64_t)seq_start[s] + j) * kv.token_stride;
}

// Keys of sequence s whose queries are its q_len new tokens.
static __device__ __forceinline__ int64_t rlx_kv_len(const rlx_kv_ref &kv, int s, int64_t q_len) {
    return kv.kv_len ? (int64_t)kv.kv_len[s] : q_len;
}

// Host-side checks every attention launcher makes of a kv ref: bases, a page table when paged,
// page size at most 256, positive strides. vec: elements per 16-byte access the kernel makes of a
// row (0 = any alignment).
static inline bool rlx_kv_ref_ok(const rlx_kv_ref &kv, int64_t kv_heads, int64_t head_dim, int vec) {
    if (!kv.k || !kv.v || kv.token_stride < 1 || kv.head_stride < 0 || (kv_heads > 1 && kv.head_stride < head_dim)) return false;
    if (kv.page_indptr && (!kv.page_indices || kv.page_shift < 0 || kv.page_shift > 8 || kv.page_stride < 1)) return false;
    if (vec) {
        const uintptr_t a16 = 15u;
        if (((uintptr_t)kv.k & a16) || ((uintptr_t)kv.v & a16) || kv.token_stride % vec || kv.head_stride % vec ||
            (kv.page_indptr && kv.page_stride % vec))
            return false;
    }
    return true;
}

#endif
