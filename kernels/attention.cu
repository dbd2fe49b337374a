// Attention without tensor cores: one warp per query row, streaming over the keys of its sequence
// with an online softmax in f32; GQA by index (query head h reads kv head h / (heads / kv_heads));
// causal mask bottom-right aligned (Sk == Sq: query i sees keys <= i). Correct for any length.
// Two entry points: `attention` (unfused plan: q, k, v already projected and rotated) and
// `rope_attention` (fused plan where flash_attention does not apply — head_dim other than 64/128,
// or f32 mode): q, k, v read from the packed QKV GEMM output with the per-token norm scale and
// RoPE applied on load, the same contract as flash_attention. The flash kernel is the fast path.
// Layout: q [T, ldq], k/v [T, ldkv], o [T, ldo]; tokens of sequence s are
// seq_start[s] .. seq_start[s+1]-1. Limits: head_dim <= 256; max_len / 4 < 65536 blocks in y.
#include "rlx_dtype.cuh"

#define RLX_ATTN_WARPS 4
#define RLX_ATTN_MAX_PER_LANE 8 // head_dim <= 256

// Element d of a head row at `p`, scaled by s and, with rope, rotated NeoX-style at position pos.
template <typename T>
__device__ __forceinline__ float rlx_attn_load(const T *p, int64_t d, int64_t half, float s, int rope, const float *c,
                                               const float *sn) {
    const float v = rlx_ld(&p[d]);
    if (!rope) return v * s;
    const int64_t j = d < half ? d : d - half;
    const float partner = rlx_ld(&p[d < half ? d + half : d - half]);
    return s * (d < half ? v * c[j] - partner * sn[j] : v * c[j] + partner * sn[j]);
}

// Registers: __launch_bounds__ with 4 CTAs per SM caps the kernel at 128 registers. Without the
// second argument ptxas (CUDA 13, sm_80) settled on 80 registers and spilled 8-12 bytes, one local
// load per key in the inner loop; with it, sm_80 uses 89 and sm_90a 94-96, no spills (ptxas -v).
template <typename T>
__global__ void __launch_bounds__(RLX_ATTN_WARPS * 32, 4)
    rlx_attention_kernel(T *o, const T *q, const T *k, const T *v, const int32_t *seq_start, int64_t heads,
                         int64_t group, int64_t D, int64_t ldq, int64_t ldkv, int64_t ldo, int causal, float scale,
                         const float *row_scale, const float *cos_t, const float *sin_t, const int32_t *pos, int rope) {
    // 32-bit index arithmetic where it fits (grid x < 2^31, heads, head_dim <= 256): a 64-bit
    // division is a called subroutine on the GPU whose calling convention added register pressure.
    const int nh = (int)heads, s = (int)blockIdx.x / nh, h = (int)blockIdx.x % nh, kvh = h / (int)group;
    const int half = (int)D / 2;
    const int64_t start = seq_start[s], len = (int64_t)seq_start[s + 1] - start;
    const int64_t i = (int64_t)blockIdx.y * RLX_ATTN_WARPS + (threadIdx.x >> 5);
    const unsigned lane = threadIdx.x & 31;
    if (i >= len) return; // whole warp leaves together: no block barrier in this kernel
    float qv[RLX_ATTN_MAX_PER_LANE], acc[RLX_ATTN_MAX_PER_LANE];
    const T *qi = q + (start + i) * ldq + h * D;
    const float sq = row_scale ? row_scale[start + i] : 1.0f;
    const float *cq = rope ? cos_t + (int64_t)pos[start + i] * half : NULL, *sq_t = rope ? sin_t + (int64_t)pos[start + i] * half : NULL;
    for (int r = 0; r < RLX_ATTN_MAX_PER_LANE; r++) {
        const int64_t d = lane + 32 * r;
        qv[r] = d < D ? rlx_attn_load(qi, d, half, sq, rope, cq, sq_t) * scale : 0.0f;
        acc[r] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    const int64_t nk = causal ? i + 1 : len;
    for (int64_t j = 0; j < nk; j++) {
        const int64_t tj = start + j;
        const T *kj = k + tj * ldkv + kvh * D;
        const float sk = row_scale ? row_scale[tj] : 1.0f;
        const float *ck = rope ? cos_t + (int64_t)pos[tj] * half : NULL, *sk_t = rope ? sin_t + (int64_t)pos[tj] * half : NULL;
        float dot = 0.0f;
        for (int r = 0; r < RLX_ATTN_MAX_PER_LANE; r++) {
            const int64_t d = lane + 32 * r;
            if (d < D) dot += qv[r] * rlx_attn_load(kj, d, half, sk, rope, ck, sk_t);
        }
        for (int off = 16; off > 0; off >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, off);
        const float m_new = fmaxf(m, dot);
        const float corr = expf(m - m_new), p = expf(dot - m_new);
        l = l * corr + p;
        const T *vj = v + tj * ldkv + kvh * D;
        for (int r = 0; r < RLX_ATTN_MAX_PER_LANE; r++) {
            const int64_t d = lane + 32 * r;
            if (d < D) acc[r] = acc[r] * corr + p * sk * rlx_ld(&vj[d]);
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
                               (const T *)v, seq_start, heads, heads / kv_heads, head_dim, ldq, ldkv, ldo, causal, scale,
                               (const float *)NULL, (const float *)NULL, (const float *)NULL, (const int32_t *)NULL, 0);
    });
}

extern "C" int RLX_KNAME(rope_attention)(void *o, const void *qkv, const float *row_scale, const float *cos_t,
                                         const float *sin_t, const int32_t *pos, const int32_t *seq_start, int64_t n_seqs,
                                         int64_t max_len, int64_t heads, int64_t kv_heads, int64_t head_dim, int64_t ld_qkv,
                                         int64_t ldo, int causal, int rope, float scale, rlx_kdtype dt, void *stream) {
    if (!o || !qkv || !seq_start || n_seqs < 1 || max_len < 1 || heads < 1 || kv_heads < 1 || heads % kv_heads ||
        head_dim < 1 || head_dim > 32 * RLX_ATTN_MAX_PER_LANE || ld_qkv < (heads + 2 * kv_heads) * head_dim ||
        ldo < heads * head_dim || n_seqs * heads > 0x7fffffff || (rope && (!cos_t || !sin_t || !pos || head_dim % 2)))
        return (int)cudaErrorInvalidValue;
    const int64_t tiles = (max_len + RLX_ATTN_WARPS - 1) / RLX_ATTN_WARPS;
    if (tiles > 65535) return (int)cudaErrorInvalidValue;
    RLX_DISPATCH_DT(dt, {
        const T *base = (const T *)qkv;
        return (int)rlx_launch(rlx_attention_kernel<T>, dim3((unsigned)(n_seqs * heads), (unsigned)tiles),
                               dim3(RLX_ATTN_WARPS * 32), 0, (cudaStream_t)stream, (T *)o, base, base + heads * head_dim,
                               base + (heads + kv_heads) * head_dim, seq_start, heads, heads / kv_heads, head_dim, ld_qkv,
                               ld_qkv, ldo, causal, scale, row_scale, cos_t, sin_t, pos, rope);
    });
}
