// Attention without tensor cores, for any head size and both dtypes: the unfused plan's attention
// and the fused plan's where flash_attention / decode_attention do not apply (head_dim other than
// 64/128 or not a multiple of 8, f32 mode, unaligned cache rows). Contract: rlx_attn_args
// (rlx_kernels.h) — queries are the new tokens, optionally scaled by the norm's row scale and
// rotated on load; keys and values come from a KV cache (rlx_kv_ref: paged, or the contiguous rows
// a plain prefill's kv_write produced), already rotated and scaled; the causal mask is
// bottom-right aligned, so a query at absolute position cached + i sees keys 0 .. cached + i.
//
// Math per (sequence, query head h, new token i), g = h / (heads / kv_heads):
//   q_i = rope(s_i · q_i) · scale;  o_i = Σ_j softmax_j(q_i · k_j) v_j  over the visible keys j.
// Layout: one warp per query row, lane l holds dims l, l + 32, … (head_dim <= 256: 8 per lane);
// the warp streams the keys of its sequence one at a time, reduces each dot product with 5
// shuffles and keeps an online softmax (running max and sum) in f32. Keys are read straight from
// global memory (one row per key, lanes on consecutive elements); no shared memory, no block
// barriers. This is the correctness path, not a fast one: every query row reads every key row.
//
// Limits: head_dim <= 256; n_seqs · heads < 2^31 blocks in x; max_q / 4 < 65536 blocks in y.
// ptxas (CUDA 13): 48 registers (sm_80), 56 (sm_90a), bf16 and f32, no spills.
#include "rlx_kv.cuh"

#define RLX_ATTN_WARPS 4
#define RLX_ATTN_MAX_PER_LANE 8 // head_dim <= 256

// Element d of a head row at `p`, scaled by s and, with rope, rotated NeoX-style at position pos.
template <typename T>
__device__ __forceinline__ float rlx_attn_load(const T *p, int d, int half, float s, int rope, const float *c,
                                               const float *sn) {
    const float v = rlx_ld(&p[d]);
    if (!rope) return v * s;
    const int j = d < half ? d : d - half;
    const float partner = rlx_ld(&p[d < half ? d + half : d - half]);
    return s * (d < half ? v * c[j] - partner * sn[j] : v * c[j] + partner * sn[j]);
}

// Registers: __launch_bounds__ with 4 CTAs per SM caps the kernel at 128 registers (without the
// second argument ptxas spilled a few bytes, one local load per key in the inner loop).
template <typename T>
__global__ void __launch_bounds__(RLX_ATTN_WARPS * 32, 4) rlx_attention_kernel(const rlx_attn_args a) {
    // 32-bit index arithmetic where it fits (grid x < 2^31, heads, head_dim <= 256): a 64-bit
    // division is a called subroutine on the GPU whose calling convention adds register pressure.
    const int nh = (int)a.heads, s = (int)blockIdx.x / nh, h = (int)blockIdx.x % nh, kvh = h / (nh / (int)a.kv_heads);
    const int D = (int)a.head_dim, half = D / 2;
    const int64_t start = a.seq_start[s], len = (int64_t)a.seq_start[s + 1] - start;
    const int64_t i = (int64_t)blockIdx.y * RLX_ATTN_WARPS + (threadIdx.x >> 5);
    const unsigned lane = threadIdx.x & 31;
    if (i >= len) return; // whole warp leaves together: no block barrier in this kernel
    const int64_t nkv = rlx_kv_len(a.kv, s, len);
    float qv[RLX_ATTN_MAX_PER_LANE], acc[RLX_ATTN_MAX_PER_LANE];
    const T *qi = (const T *)a.q + (start + i) * a.ldq + (int64_t)h * D;
    const float sq = a.q_scale ? a.q_scale[start + i] : 1.0f;
    const float *cq = a.rope ? a.cos_t + (int64_t)a.pos[start + i] * half : NULL;
    const float *sq_t = a.rope ? a.sin_t + (int64_t)a.pos[start + i] * half : NULL;
    #pragma unroll
    for (int r = 0; r < RLX_ATTN_MAX_PER_LANE; r++) {
        const int d = (int)lane + 32 * r;
        qv[r] = d < D ? rlx_attn_load(qi, d, half, sq, a.rope, cq, sq_t) * a.scale : 0.0f;
        acc[r] = 0.0f;
    }
    const T *kb = (const T *)a.kv.k + (int64_t)kvh * a.kv.head_stride, *vb = (const T *)a.kv.v + (int64_t)kvh * a.kv.head_stride;
    float m = -INFINITY, l = 0.0f;
    const int64_t nk = a.causal ? i + 1 + (nkv - len) : nkv; // bottom-right aligned
    for (int64_t j = 0; j < nk; j++) {
        const int64_t row = rlx_kv_row(a.kv, a.seq_start, s, j);
        const T *kj = kb + row, *vj = vb + row;
        float dot = 0.0f;
        #pragma unroll
    for (int r = 0; r < RLX_ATTN_MAX_PER_LANE; r++) {
            const int d = (int)lane + 32 * r;
            if (d < D) dot += qv[r] * rlx_ld(&kj[d]);
        }
        for (int off = 16; off > 0; off >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, off);
        const float m_new = fmaxf(m, dot);
        const float corr = expf(m - m_new), p = expf(dot - m_new);
        l = l * corr + p;
        #pragma unroll
    for (int r = 0; r < RLX_ATTN_MAX_PER_LANE; r++) {
            const int d = (int)lane + 32 * r;
            if (d < D) acc[r] = acc[r] * corr + p * rlx_ld(&vj[d]);
        }
        m = m_new;
    }
    T *oi = (T *)a.o + (start + i) * a.ldo + (int64_t)h * D;
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    #pragma unroll
    for (int r = 0; r < RLX_ATTN_MAX_PER_LANE; r++) {
        const int d = (int)lane + 32 * r;
        if (d < D) rlx_st(&oi[d], acc[r] * inv);
    }
}

extern "C" int RLX_KNAME(attention)(const rlx_attn_args *a, void *stream) {
    if (!a || !a->o || !a->q || !a->seq_start || a->n_seqs < 1 || a->max_q < 1 || a->heads < 1 || a->kv_heads < 1 ||
        a->heads % a->kv_heads || a->head_dim < 1 || a->head_dim > 32 * RLX_ATTN_MAX_PER_LANE || a->ldq < a->heads * a->head_dim ||
        a->ldo < a->heads * a->head_dim || a->n_seqs * a->heads > 0x7fffffff ||
        (a->rope && (!a->cos_t || !a->sin_t || !a->pos || a->head_dim % 2)) || !rlx_kv_ref_ok(a->kv, a->kv_heads, a->head_dim, 0))
        return (int)cudaErrorInvalidValue;
    const int64_t tiles = (a->max_q + RLX_ATTN_WARPS - 1) / RLX_ATTN_WARPS;
    if (tiles > 65535) return (int)cudaErrorInvalidValue;
    RLX_DISPATCH_DT(a->dt, {
        return (int)rlx_launch(rlx_attention_kernel<T>, dim3((unsigned)(a->n_seqs * a->heads), (unsigned)tiles),
                               dim3(RLX_ATTN_WARPS * 32), 0, (cudaStream_t)stream, *a);
    });
}
