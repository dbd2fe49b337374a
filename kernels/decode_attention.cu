// Decode attention (split-KV, flash-decoding): attention for steps that bring few new tokens per
// sequence — a decode step (one token), a few speculative tokens, the short tail of a chunked
// prefill — over a long KV cache. flash_attention's 128-row query tiles would be nearly empty here
// (one token × a GQA group of 4 fills 4 of 128 rows) and its one CTA per (sequence, kv head) would
// leave most SMs idle at small batches; this kernel instead splits each sequence's key range
// across CTAs and merges the partial softmax results.
//
// Contract: rlx_attn_args (rlx_kernels.h), the same as flash_attention: queries are the new tokens
// (q_scale and RoPE applied on load), keys and values come from the KV cache (rlx_kv_ref: paged or
// contiguous), causal bottom-right aligned (new token i of a sequence with nkv keys and q_len new
// tokens sees keys j <= nkv − q_len + i).
//
// Math, per (sequence, kv head g, query row r = i·G + hh for new token i and group head hh, query
// head h = g·G + hh), with split c owning keys [c·chunk, (c+1)·chunk) of the sequence:
//   x_rj = log2(e)·scale·s_i·rope(q_i)·k_j,  m_r = max_j x_rj,  l_r = Σ_j 2^(x_rj − m_r),
//   o_r = Σ_j 2^(x_rj − m_r) v_j / l_r,  lse_r = m_r + log2 l_r          (per split)
//   o = Σ_c 2^(lse_rc − M) o_rc / Σ_c 2^(lse_rc − M),  M = max_c lse_rc    (the merge)
// f32 throughout; the only rounding to bf16 is the output.
//
// Tiles. One CTA = 4 warps = (split, kv head, sequence): every K/V row it reads serves all R =
// q_len·G query rows of the group (R <= RMAX: 32 rows at head_dim <= 64, 16 at <= 128, 8 at <= 256,
// rlx_decode_max_rows). Warp w takes key blocks kb = chunk start + 32·w, + 128, …; lane l holds key
// kb + l: it reads that key's K row straight from global memory in 16-byte chunks (each chunk once
// per CTA; the rest of each 32-byte sector is the next chunk of the same lane, an L1 hit) and
// computes its dot products with all R rows, the queries broadcast from shared memory (f32,
// scaled and rotated once per CTA). Per row the warp keeps an online softmax (max by 5 shuffles per
// 32 keys, a per-lane partial sum). For P·V the lane holds output dims 2·l + 64·i (i < NP =
// head_dim/64 rounded up) of every row; the 32 probabilities of a key block go through a per-warp
// shared-memory row and are read back 4 keys at a time as broadcast float4s, and each V row is one
// coalesced 128-byte read per 64 dims. The key's row offset (through the page table) is computed
// by its lane and passed to the others with two shuffles. At the end the 4 warps' (m, l, o) merge
// in shared memory in warp order (deterministic: no atomics), and the CTA writes o (one split) or
// its split's (o, lse) to the workspace for rlx_decode_merge_kernel.
// Splits: enough CTAs for ~2 waves (256 CTAs) when n_seqs · kv_heads is small, at least 256 keys
// per split, at most 64 splits and what the workspace (T · heads · splits · (head_dim + 1) floats)
// holds. Shared memory: RMAX·head_dim·4 (queries, reused for the merge) + 4·RMAX·32·4
// (probabilities) + 2·4·RMAX·4 bytes: 16.5 KiB at head_dim 128 / 16 rows, 24.3 KiB at 64 / 32 rows.
//
// Not measured: no GPU has run it. Per key and row it does 2·head_dim FMAs against 4·head_dim
// bytes of K and V shared by R rows, so at R >= 4 it is memory-bound on an H200 only if the
// shared-memory broadcasts of q (2 float4 reads per 8 FMAs) keep up; a tensor-core variant (the
// group's rows as an m16 tile, as FlashInfer does for large groups) is the next step if not.
// Limits: bf16; head_dim a multiple of 8, <= 256; max_q·G <= RMAX; K/V bases 16-byte aligned and
// strides multiples of 8 elements; n_seqs <= 65535, kv_heads <= 65535.
// ptxas (CUDA 13), registers sm_80 / sm_90a, no spills anywhere (__launch_bounds__(128, 1): without
// the minimum-blocks hint ptxas capped the (1, 16) instance at 128 registers and spilled):
//   (NP, RMAX) = (1, 8) 96/96, (1, 32) 203/216, (2, 8) 96/106, (2, 16) 155/168, (4, 8) 139/168;
//   the merge kernel 34/32. Llama-3.2-1B (head_dim 64, G 4) and 3B/8B (128, G 3/4) decode steps
//   use the RMAX = 8 instances (~100 registers: 4-5 CTAs per SM); five instances keep nvcc's time
//   for this file near 20 s per architecture.
#include "rlx_kv.cuh"

#include <cmath>

#define RLX_DEC_WARPS 4
#define RLX_DEC_TARGET_CTAS 256
#define RLX_DEC_MIN_KEYS 256
#define RLX_DEC_MAX_SPLITS 64
#define RLX_DEC_LOG2E 1.4426950408889634f

typedef struct rlx_dec_params {
    rlx_attn_args a;
    float *work_o;   // [T·heads][n_splits][D] partial outputs (n_splits > 1)
    float *work_lse; // [T·heads][n_splits]
    int n_splits, chunk, group;
    float scale_log2;
} rlx_dec_params;

static __device__ __forceinline__ void rlx_dec_ld8(const __nv_bfloat16 *p, float v[8]) {
    const uint4 u = *reinterpret_cast<const uint4 *>(p);
    const uint32_t w[4] = {u.x, u.y, u.z, u.w};
    #pragma unroll
    for (int i = 0; i < 4; i++) {
        v[2 * i] = __uint_as_float(w[i] << 16);
        v[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
    }
}

template <int NP, int RMAX>
__global__ void __launch_bounds__(RLX_DEC_WARPS * 32, 1) rlx_decode_kernel(const rlx_dec_params p) {
    const rlx_attn_args &a = p.a;
    const int D = (int)a.head_dim, G = p.group, CH = D / 8;
    const int split = blockIdx.x, kvh = blockIdx.y, seq = blockIdx.z;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int64_t start = a.seq_start[seq];
    const int qlen = (int)((int64_t)a.seq_start[seq + 1] - start);
    const int nkv = (int)rlx_kv_len(a.kv, seq, qlen), off = nkv - qlen;
    const int R = qlen * G;
    const int k0 = split * p.chunk, k1 = min(nkv, k0 + p.chunk);

    RLX_DYN_SMEM(float, smem);
    float *sq = smem;                             // [RMAX][D] queries; the merge's output after the loop
    float *sp = sq + RMAX * D;                    // [warps][RMAX][32] probabilities of a key block
    float *sm = sp + RLX_DEC_WARPS * RMAX * 32;   // [warps][RMAX] running maxima
    float *sl = sm + RLX_DEC_WARPS * RMAX;        // [warps][RMAX] sums

    // ---- queries: s_i · rope(q) · scale · log2(e), f32 ---------------------------------------------
    for (int idx = threadIdx.x; idx < R * D; idx += RLX_DEC_WARPS * 32) {
        const int r = idx / D, d = idx % D, i = r / G, h = kvh * G + r % G;
        const int64_t t = start + i;
        const __nv_bfloat16 *qr = (const __nv_bfloat16 *)a.q + t * a.ldq + (int64_t)h * D;
        float x = __bfloat162float(qr[d]);
        if (a.rope) {
            const int half = D / 2, j = d < half ? d : d - half;
            const float c = a.cos_t[(int64_t)a.pos[t] * half + j], sn = a.sin_t[(int64_t)a.pos[t] * half + j];
            const float partner = __bfloat162float(qr[d < half ? d + half : d - half]);
            x = d < half ? x * c - partner * sn : x * c + partner * sn;
        }
        sq[r * D + d] = x * (a.q_scale ? a.q_scale[t] : 1.0f) * p.scale_log2;
    }
    __syncthreads();

    float m[RMAX], l[RMAX], o[RMAX][NP][2];
    #pragma unroll
    for (int r = 0; r < RMAX; r++) {
        m[r] = -INFINITY, l[r] = 0.0f;
        #pragma unroll
        for (int i = 0; i < NP; i++) o[r][i][0] = o[r][i][1] = 0.0f;
    }
    const __nv_bfloat16 *kbase = (const __nv_bfloat16 *)a.kv.k + kvh * a.kv.head_stride;
    const __nv_bfloat16 *vbase = (const __nv_bfloat16 *)a.kv.v + kvh * a.kv.head_stride;
    float *wp = sp + warp * RMAX * 32;

    for (int kb = k0 + 32 * warp; kb < k1; kb += 32 * RLX_DEC_WARPS) { // warp-uniform
        const int key = kb + lane;
        const bool valid = key < k1;
        const int64_t row = valid ? rlx_kv_row(a.kv, a.seq_start, seq, key) : 0;
        // ---- scores of this lane's key against every row ------------------------------------------
        float s[RMAX];
        #pragma unroll
        for (int r = 0; r < RMAX; r++) s[r] = 0.0f;
        if (valid) {
            const __nv_bfloat16 *kr = kbase + row;
            for (int c = 0; c < CH; c++) {
                float kf[8];
                rlx_dec_ld8(kr + c * 8, kf);
                #pragma unroll
                for (int r = 0; r < RMAX; r++) {
                    if (r < R) {
                        const float4 q0 = *reinterpret_cast<const float4 *>(sq + r * D + c * 8);
                        const float4 q1 = *reinterpret_cast<const float4 *>(sq + r * D + c * 8 + 4);
                        s[r] += q0.x * kf[0] + q0.y * kf[1] + q0.z * kf[2] + q0.w * kf[3] + q1.x * kf[4] + q1.y * kf[5] +
                                q1.z * kf[6] + q1.w * kf[7];
                    }
                }
            }
        }
        // ---- online softmax per row; probabilities to this warp's shared row ------------------------
        #pragma unroll
        for (int r = 0; r < RMAX; r++) {
            if (r < R) { // uniform
                const bool vis = valid && (!a.causal || key <= off + r / G);
                const float x = vis ? s[r] : -INFINITY;
                float mx = x;
                #pragma unroll
                for (int o2 = 16; o2 > 0; o2 >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o2));
                const float m_new = fmaxf(m[r], mx);
                const float m_use = m_new == -INFINITY ? 0.0f : m_new; // nothing visible yet: no inf − inf
                const float corr = exp2f(m[r] - m_use), pr = exp2f(x - m_use);
                m[r] = m_new;
                l[r] = l[r] * corr + pr;
                #pragma unroll
                for (int i = 0; i < NP; i++) o[r][i][0] *= corr, o[r][i][1] *= corr;
                wp[r * 32 + lane] = pr;
            }
        }
        __syncwarp(0xffffffffu);
        // ---- O += P·V over the block's valid keys, 4 at a time -----------------------------------------
        const int nvalid = min(32, k1 - kb);
        for (int kk = 0; kk < nvalid; kk += 4) {
            float v[4][NP][2];
            #pragma unroll
            for (int e = 0; e < 4; e++) {
                // every lane takes part in the shuffles (kk + e <= 31); rows past nvalid are never read
                const uint32_t lo = __shfl_sync(0xffffffffu, (uint32_t)(uint64_t)row, kk + e);
                const uint32_t hi = __shfl_sync(0xffffffffu, (uint32_t)((uint64_t)row >> 32), kk + e);
                const int64_t rk = (int64_t)(((uint64_t)hi << 32) | lo);
                #pragma unroll
                for (int i = 0; i < NP; i++) {
                    const int d = 2 * lane + 64 * i;
                    if (kk + e < nvalid && d < D) {
                        const __nv_bfloat162 v2 = *reinterpret_cast<const __nv_bfloat162 *>(vbase + rk + d);
                        v[e][i][0] = __low2float(v2), v[e][i][1] = __high2float(v2);
                    } else {
                        v[e][i][0] = v[e][i][1] = 0.0f;
                    }
                }
            }
            #pragma unroll
            for (int r = 0; r < RMAX; r++) {
                if (r < R) {
                    const float4 p4 = *reinterpret_cast<const float4 *>(wp + r * 32 + kk); // 0 past nvalid: v is 0 there
                    const float pe[4] = {kk + 0 < nvalid ? p4.x : 0.0f, kk + 1 < nvalid ? p4.y : 0.0f, kk + 2 < nvalid ? p4.z : 0.0f,
                                         kk + 3 < nvalid ? p4.w : 0.0f};
                    #pragma unroll
                    for (int i = 0; i < NP; i++)
                        #pragma unroll
                        for (int e = 0; e < 4; e++) o[r][i][0] += pe[e] * v[e][i][0], o[r][i][1] += pe[e] * v[e][i][1];
                }
            }
        }
        __syncwarp(0xffffffffu); // the next block overwrites wp
    }

    // ---- merge the 4 warps (warp order), then write o or this split's partial -------------------------
    #pragma unroll
    for (int r = 0; r < RMAX; r++) {
        float t = l[r];
        #pragma unroll
        for (int o2 = 16; o2 > 0; o2 >>= 1) t += __shfl_xor_sync(0xffffffffu, t, o2);
        l[r] = t;
        if (lane == 0 && r < R) sm[warp * RMAX + r] = m[r], sl[warp * RMAX + r] = t;
    }
    __syncthreads(); // also: every warp is done reading sq, which now takes the merged output
    for (int w = 0; w < RLX_DEC_WARPS; w++) {
        if (warp == w) {
            #pragma unroll
            for (int r = 0; r < RMAX; r++) {
                if (r < R) {
                    float M = -INFINITY;
                    for (int x = 0; x < RLX_DEC_WARPS; x++) M = fmaxf(M, sm[x * RMAX + r]);
                    const float f = m[r] == -INFINITY ? 0.0f : exp2f(m[r] - M);
                    #pragma unroll
                    for (int i = 0; i < NP; i++) {
                        const int d = 2 * lane + 64 * i;
                        if (d < D) {
                            float *dst = sq + r * D + d;
                            dst[0] = (w ? dst[0] : 0.0f) + f * o[r][i][0];
                            dst[1] = (w ? dst[1] : 0.0f) + f * o[r][i][1];
                        }
                    }
                }
            }
        }
        __syncthreads();
    }
    for (int idx = threadIdx.x; idx < R * D; idx += RLX_DEC_WARPS * 32) {
        const int r = idx / D, d = idx % D, i = r / G, h = kvh * G + r % G;
        float M = -INFINITY, L = 0.0f;
        for (int x = 0; x < RLX_DEC_WARPS; x++) M = fmaxf(M, sm[x * RMAX + r]);
        for (int x = 0; x < RLX_DEC_WARPS; x++)
            if (sm[x * RMAX + r] != -INFINITY) L += sl[x * RMAX + r] * exp2f(sm[x * RMAX + r] - M);
        const float val = L > 0.0f ? sq[r * D + d] / L : 0.0f;
        const int64_t t = start + i;
        if (p.n_splits == 1) {
            ((__nv_bfloat16 *)a.o)[t * a.ldo + (int64_t)h * D + d] = __float2bfloat16_rn(val);
        } else {
            const int64_t gr = t * a.heads + h;
            p.work_o[(gr * p.n_splits + split) * D + d] = val;
            if (d == 0) p.work_lse[gr * p.n_splits + split] = L > 0.0f ? M + log2f(L) : -INFINITY;
        }
    }
}

// One warp per (token, query head): o = Σ_c 2^(lse_c − M) o_c / Σ_c 2^(lse_c − M), in split order.
static __global__ void __launch_bounds__(128) rlx_decode_merge_kernel(const rlx_dec_params p, int64_t rows) {
    const rlx_attn_args &a = p.a;
    const int64_t gr = (int64_t)blockIdx.x * 4 + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31, D = (int)a.head_dim, S = p.n_splits;
    if (gr >= rows) return; // whole warps: no barrier in this kernel
    const float *lse = p.work_lse + gr * S;
    float M = -INFINITY;
    for (int c = 0; c < S; c++) M = fmaxf(M, lse[c]);
    float W = 0.0f;
    for (int c = 0; c < S; c++)
        if (lse[c] != -INFINITY) W += exp2f(lse[c] - M);
    const int64_t t = gr / a.heads, h = gr % a.heads;
    __nv_bfloat16 *dst = (__nv_bfloat16 *)a.o + t * a.ldo + h * D;
    for (int d = lane; d < D; d += 32) {
        float acc = 0.0f;
        for (int c = 0; c < S; c++)
            if (lse[c] != -INFINITY) acc += exp2f(lse[c] - M) * p.work_o[(gr * S + c) * D + d];
        dst[d] = __float2bfloat16_rn(W > 0.0f ? acc / W : 0.0f);
    }
}

template <int NP, int RMAX> static inline int rlx_dec_launch(const rlx_dec_params &p, void *stream) {
    const size_t smem = ((size_t)RMAX * (size_t)p.a.head_dim + RLX_DEC_WARPS * RMAX * 32 + 2 * RLX_DEC_WARPS * RMAX) * sizeof(float);
    return (int)rlx_launch((rlx_decode_kernel<NP, RMAX>), dim3((unsigned)p.n_splits, (unsigned)p.a.kv_heads, (unsigned)p.a.n_seqs),
                           dim3(RLX_DEC_WARPS * 32), smem, (cudaStream_t)stream, p);
}

extern "C" int RLX_KNAME(decode_attention)(const rlx_attn_args *a, void *stream) {
    if (!a || a->dt != RLX_K_BF16 || !a->o || !a->q || !a->seq_start || a->n_seqs < 1 || a->n_seqs > 65535 || a->max_q < 1 ||
        a->n_tokens < a->n_seqs || a->n_tokens > a->n_seqs * a->max_q ||
        a->max_kv < 1 || a->max_kv > 0x7fffff00 || a->heads < 1 || a->kv_heads < 1 || a->kv_heads > 65535 || a->heads % a->kv_heads ||
        rlx_decode_max_rows(a->head_dim) == 0 || a->ldq < a->heads * a->head_dim || a->ldo < a->heads * a->head_dim ||
        a->max_q * (a->heads / a->kv_heads) > rlx_decode_max_rows(a->head_dim) || !std::isfinite(a->scale) ||
        (a->rope && (!a->cos_t || !a->sin_t || !a->pos)) || !rlx_kv_ref_ok(a->kv, a->kv_heads, a->head_dim, 8))
        return (int)cudaErrorInvalidValue;
    rlx_dec_params p;
    p.a = *a;
    p.group = (int)(a->heads / a->kv_heads);
    p.scale_log2 = a->scale * RLX_DEC_LOG2E;
    // splits: ~2 waves of CTAs, >= RLX_DEC_MIN_KEYS keys each, what the workspace holds
    const int64_t base = a->n_seqs * a->kv_heads, rows = a->n_tokens * a->heads; // (token, query head) rows
    int64_t splits = (RLX_DEC_TARGET_CTAS + base - 1) / base;
    const int64_t by_len = (a->max_kv + RLX_DEC_MIN_KEYS - 1) / RLX_DEC_MIN_KEYS;
    const int64_t by_work = a->work ? (int64_t)(a->work_bytes / ((size_t)rows * (size_t)(a->head_dim + 1) * sizeof(float))) : 1;
    if (splits > by_len) splits = by_len;
    if (splits > by_work) splits = by_work;
    if (splits > RLX_DEC_MAX_SPLITS) splits = RLX_DEC_MAX_SPLITS;
    if (splits < 1) splits = 1;
    const int64_t chunk = ((a->max_kv + splits - 1) / splits + 127) / 128 * 128;
    p.chunk = (int)chunk;
    p.n_splits = (int)((a->max_kv + chunk - 1) / chunk);
    p.work_o = (float *)a->work;
    p.work_lse = p.n_splits > 1 ? p.work_o + rows * p.n_splits * a->head_dim : NULL;
    // instances: 8 rows (decode steps of groups up to 8) and the widest each head size allows
    const int R = (int)(a->max_q * p.group), NP = (int)((a->head_dim + 63) / 64);
    int code;
    if (NP == 1) code = R <= 8 ? rlx_dec_launch<1, 8>(p, stream) : rlx_dec_launch<1, 32>(p, stream);
    else if (NP == 2) code = R <= 8 ? rlx_dec_launch<2, 8>(p, stream) : rlx_dec_launch<2, 16>(p, stream);
    else code = rlx_dec_launch<4, 8>(p, stream); /* head_dim 136 .. 256: lanes past the row hold nothing */
    if (code || p.n_splits == 1) return code;
    return (int)rlx_launch(rlx_decode_merge_kernel, dim3((unsigned)((rows + 3) / 4)), dim3(128), 0, (cudaStream_t)stream, p, rows);
}
