// The one place K and V are written (ARCHITECTURE.md, "KV cache and decode"): right after the
// packed QKV GEMM, each new token's K gets the norm's row scale and RoPE once, and K and V land in
// the KV cache — the caller's pages, or (plain prefill) the contiguous rows the attention kernel of
// the same layer reads. Attention then never rotates or scales a key again (before, every CTA of
// flash_attention rotated every K tile it loaded, ~32 times per tile at 2048 tokens).
//
// Math, token t, kv head g, s = row_scale[t] (1 when NULL), p = pos[t], half = D/2:
//   K[d] = s·k[d]·cos(p, d) − s·k[d + half]·sin(p, d),  K[d + half] = s·k[d + half]·cos + s·k[d]·sin
//   (rope on; NeoX half rotation, the CPU reference's expressions), else K = s·k;  V = s·v;
//   each rounded once to the activation dtype.
// Layout: k, v [T, ld] (kv head g at columns g·D; in the fused plan both are column ranges of the
// packed QKV row); destination rlx_kv_ref: paged, slot p & (page size − 1) of page tok_page[t]
// (the host resolved each token's page from its sequence's page list), or contiguous, row t.
// One thread per (token, kv head, d < half) pair: it reads both halves of k and v and writes both
// halves, so every element is read once and written once; consecutive threads take consecutive d,
// so rows are read and written in coalesced runs. Grid-stride over the T · kv_heads · ceil(D/2)
// pairs (d, d + ceil(D/2)); for an odd D without rope (possible in a custom flow) the last pair
// has one element.
// Limits: rope needs an even head_dim; T · kv_heads · D < 2^62. Memory-bound: 4·T·kv_heads·D
// element reads and writes (bf16: 8 bytes per element pair of K and V).
// ptxas (CUDA 13, sm_80 and sm_90a): 30-32 registers, no spills, both dtypes.
#include "rlx_kv.cuh"

#define RLX_KVW_BLOCK 256

template <typename T> __global__ void __launch_bounds__(RLX_KVW_BLOCK) rlx_kv_write_kernel(const rlx_kv_write_args a) {
    const int64_t D = a.head_dim, half = (D + 1) / 2, KV = a.kv_heads, n = a.T * KV * half;
    const int shift = a.dst.page_shift;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t d = i % half, tg = i / half, g = tg % KV, t = tg / KV;
        const float s = a.row_scale ? a.row_scale[t] : 1.0f;
        const int p = a.pos[t];
        const int64_t row = a.tok_page ? (int64_t)a.tok_page[t] * a.dst.page_stride + (int64_t)(p & ((1 << shift) - 1)) * a.dst.token_stride
                                       : t * a.dst.token_stride;
        const T *ks = (const T *)a.k + t * a.ld + g * D, *vs = (const T *)a.v + t * a.ld + g * D;
        T *kd = (T *)a.dst.k + row + g * a.dst.head_stride, *vd = (T *)a.dst.v + row + g * a.dst.head_stride;
        const int64_t d2 = d + half; // the partner element; past the row only for odd D's last pair
        const bool two = d2 < D;
        const float k0 = s * rlx_ld(&ks[d]), k1 = two ? s * rlx_ld(&ks[d2]) : 0.0f;
        if (a.rope) { // D even here: half == D/2
            const float c = a.cos_t[(int64_t)p * half + d], sn = a.sin_t[(int64_t)p * half + d];
            rlx_st(&kd[d], k0 * c - k1 * sn);
            rlx_st(&kd[d2], k1 * c + k0 * sn);
        } else {
            rlx_st(&kd[d], k0);
            if (two) rlx_st(&kd[d2], k1);
        }
        rlx_st(&vd[d], s * rlx_ld(&vs[d]));
        if (two) rlx_st(&vd[d2], s * rlx_ld(&vs[d2]));
    }
}

extern "C" int RLX_KNAME(kv_write)(const rlx_kv_write_args *a, void *stream) {
    if (!a || !a->k || !a->v || !a->pos || a->T < 1 || a->kv_heads < 1 || a->head_dim < 1 || a->ld < a->kv_heads * a->head_dim ||
        (a->rope && (!a->cos_t || !a->sin_t || a->head_dim % 2)) || !rlx_kv_ref_ok(a->dst, a->kv_heads, a->head_dim, 0) ||
        (a->tok_page && a->dst.page_stride < 1))
        return (int)cudaErrorInvalidValue;
    const int64_t n = a->T * a->kv_heads * ((a->head_dim + 1) / 2);
    RLX_DISPATCH_DT(a->dt, {
        return (int)rlx_launch(rlx_kv_write_kernel<T>, dim3(rlx_grid_for(n, RLX_KVW_BLOCK)), dim3(RLX_KVW_BLOCK), 0,
                               (cudaStream_t)stream, *a);
    });
}
