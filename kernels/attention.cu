// Primitive attention (unfused plan): one warp per query row, streaming over the keys of its
// sequence with an online softmax in f32; GQA by index (query head h reads kv head
// h / (heads / kv_heads)); causal mask bottom-right aligned (Sk == Sq: query i sees keys <= i).
// Correct for any length; no tensor cores (the fused flash kernel is the fast path).
// Layout: q [T, ldq], k/v [T, ldkv], o [T, ldo]; tokens of sequence s are
// seq_start[s] .. seq_start[s+1]-1. Limits: head_dim <= 256; max_len / 4 < 65536 blocks in y.
#include "rlx_dtype.cuh"

#define RLX_ATTN_WARPS 4
#define RLX_ATTN_MAX_PER_LANE 8 // head_dim <= 256

template <typename T>
__global__ void __launch_bounds__(RLX_ATTN_WARPS * 32)
    rlx_attention_kernel(T *o, const T *q, const T *k, const T *v, const int32_t *seq_start, int64_t heads,
                         int64_t group, int64_t D, int64_t ldq, int64_t ldkv, int64_t ldo, int causal, float scale) {
    const int64_t s = blockIdx.x / heads, h = blockIdx.x % heads, kvh = h / group;
    const int64_t start = seq_start[s], len = (int64_t)seq_start[s + 1] - start;
    const int64_t i = (int64_t)blockIdx.y * RLX_ATTN_WARPS + (threadIdx.x >> 5);
    const unsigned lane = threadIdx.x & 31;
    if (i >= len) return; // whole warp leaves together: no block barrier in this kernel
    float qv[RLX_ATTN_MAX_PER_LANE], acc[RLX_ATTN_MAX_PER_LANE];
    const T *qi = q + (start + i) * ldq + h * D;
    for (int r = 0; r < RLX_ATTN_MAX_PER_LANE; r++) {
        const int64_t d = lane + 32 * r;
        qv[r] = d < D ? rlx_ld(&qi[d]) * scale : 0.0f;
        acc[r] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    const int64_t nk = causal ? i + 1 : len;
    for (int64_t j = 0; j < nk; j++) {
        const T *kj = k + (start + j) * ldkv + kvh * D;
        float dot = 0.0f;
        for (int r = 0; r < RLX_ATTN_MAX_PER_LANE; r++) {
            const int64_t d = lane + 32 * r;
            if (d < D) dot += qv[r] * rlx_ld(&kj[d]);
        }
        for (int off = 16; off > 0; off >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, off);
        const float m_new = fmaxf(m, dot);
        const float corr = expf(m - m_new), p = expf(dot - m_new);
        l = l * corr + p;
        const T *vj = v + (start + j) * ldkv + kvh * D;
        for (int r = 0; r < RLX_ATTN_MAX_PER_LANE; r++) {
            const int64_t d = lane + 32 * r;
            if (d < D) acc[r] = acc[r] * corr + p * rlx_ld(&vj[d]);
        }
        m = m_new;
    }
    T *oi = o + (start + i) * ldo + h * D;
    const float inv = 1.0f / l;
    for (int r = 0; r < RLX_ATTN_MAX_PER_LANE; r++) {
        const int64_t d = lane + 32 * r;
        if (d < D) rlx_st(&oi[d], acc[r] * inv);
    }
}

extern "C" int RLX_KNAME(attention)(void *o, const void *q, const void *k, const void *v, const int32_t *seq_start,
                                    int64_t n_seqs, int64_t max_len, int64_t heads, int64_t kv_heads, int64_t head_dim,
                                    int64_t ldq, int64_t ldkv, int64_t ldo, int causal, float scale, rlx_kdtype dt,
                                    void *stream) {
    if (!o || !q || !k || !v || !seq_start || n_seqs < 1 || max_len < 1 || heads < 1 || kv_heads < 1 ||
        heads % kv_heads || head_dim < 1 || head_dim > 32 * RLX_ATTN_MAX_PER_LANE || ldq < heads * head_dim ||
        ldkv < kv_heads * head_dim || ldo < heads * head_dim || n_seqs * heads > 0x7fffffff)
        return (int)cudaErrorInvalidValue;
    const int64_t tiles = (max_len + RLX_ATTN_WARPS - 1) / RLX_ATTN_WARPS;
    if (tiles > 65535) return (int)cudaErrorInvalidValue;
    RLX_DISPATCH_DT(dt, {
        return (int)rlx_launch(rlx_attention_kernel<T>, dim3((unsigned)(n_seqs * heads), (unsigned)tiles),
                               dim3(RLX_ATTN_WARPS * 32), 0, (cudaStream_t)stream, (T *)o, (const T *)q, (const T *)k,
                               (const T *)v, seq_start, heads, heads / kv_heads, head_dim, ldq, ldkv, ldo, causal, scale);
    });
}
