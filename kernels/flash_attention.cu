// Fused RoPE + GQA attention for LLaMA prefill (ARCHITECTURE.md, "RoPE + GQA attention"): Q, K, V
// read straight from the packed QKV GEMM output, the norm's per-token scale and RoPE applied on
// load, FlashAttention-2-style tiles on the tensor cores (mma.sync m16n8k16 bf16, f32 accumulate)
// with the online softmax in f32, varlen sequences by offsets into the packed tokens.
//
// Layout: qkv [T, ld_qkv] bf16: q of head h at columns h·D, k of kv head g at (H + g)·D, v at
// (H + KV + g)·D; row_scale f32 [T] (NULL = 1); cos_t/sin_t f32 [positions, D/2]; pos i32 [T];
// seq_start i32 [n_seqs + 1]; o [T, ldo] bf16, query head h at columns h·D.
//
// Math per (sequence, query head h, query token i), G = H / KV, g = h / G, with s the row scale:
//   q_i = rope(s_i·q_i), k_j = rope(s_j·k_j), v_j = s_j·v_j,
//   o_i = Σ_j softmax_j(scale · q_i·k_j) v_j over j <= i (causal) or all j of the sequence.
// rope is linear, so s is kept out of the bf16 operands: the mma runs on rope(q) and rope(k)
// (rounded to bf16 once, as any bf16 operand must be) and on v as stored, and the scales enter in
// f32 with no extra bf16 rounding: scores get scale·log2(e)·s_i·s_j, and P's column j is
// multiplied by s_j before P is rounded for the P·V mma. V therefore needs no pass over shared
// memory at all, K only when rope is on.
//
// Tiles. One CTA = RLX_FA_WARPS (4) warps = BM = 64·MT rows of the query side × one kv head × one
// sequence. The rows are (token, head) pairs of the kv head's group, token-major: row r is token
// t0 + r / GH of query head g·G + hc·GH + r % GH, where GH = min(G, BM) heads are packed and
// TQ = BM / GH tokens per CTA (G > BM splits the group over hc). So every K/V tile brought into
// shared memory serves all query heads of the group; for G = 1 this is plain FA2 with BM tokens.
// Each warp owns 16·MT rows (MT m16 tiles) and all BN = 64 keys of a tile: S = Q·Kᵀ in registers
// (MT × 8 n8 tiles), the online softmax on them, P re-used as the A operand of P·V without going
// through shared memory (the C and A fragment layouts line up), O in registers (MT × D/8 n8 tiles).
// Both head sizes use MT = 2 (BM = 128), FA2's tile for sm_80 (4 warps × 32 rows): every K/V
// fragment loaded by ldmatrix feeds two mmas (with 16 rows per warp, ldmatrix traffic would need
// about twice the shared-memory bandwidth the mmas can consume). Registers per thread ≈ O (MT·D/2)
// + S (MT·BN/2) + fragments: ptxas (CUDA 13) reports ~240 registers and no spills for D = 64, and
// 255 registers with ~160 bytes of spills for D = 128 (sm_80 and sm_90a) — the first thing to
// profile on a GPU; MT = 1 or BN = 32 for D = 128 are one-line changes in the launcher.
// Shared memory (bf16, rows of D, 16-byte chunks XOR-swizzled by row % 8 so that ldmatrix and the
// 16-byte stores are free of bank conflicts): Q [BM][D] (rope applied, loaded once, re-read by
// ldmatrix per tile as FA2 does; it stages O at the end), K [2][BN][D] and V [2][BN][D] double-
// buffered with cp.async (tile j+1 in flight while tile j is computed), key scales f32 [2][BN]:
// D = 64: 48.5 KiB; D = 128: 96.5 KiB (2 CTAs per SM fit H100's 228 KiB, 1 fits A100's 164 KiB).
// Causal: a CTA loads only the key tiles up to its last token; a warp skips the tiles entirely
// above its rows' tokens and masks only tiles that cross the diagonal or the sequence end. Query
// tiles are launched in reverse order (longest key range first), so the tail of the grid is short.
//
// Not measured: no GPU has run this kernel yet (PERF.md has the method). The design aims at FA2's
// throughput with the same mma.sync tiles; its extra costs are the cos/sin rows every CTA reads
// for every key tile when rope is on (2× the bytes of the K tile, from L2) and the in-place K
// rotation with one more barrier per tile. Going past FA2 on H100 needs the sm_90a path (wgmma
// with operands in shared memory, TMA loads, warp-specialised producer/consumer), which this tile
// layout (64-row multiples, swizzled shared memory, K/V shared by the group) keeps open.
//
// Limits: bf16 only; D in {64, 128}; qkv and o 16-byte aligned, ld_qkv and ldo multiples of 8;
// cos_t/sin_t 16-byte aligned; every sequence length <= max_len <= 2^31 - 256; n_seqs <= 65535;
// pos values inside the tables (not checked on the device).
#include "rlx_dtype.cuh"

#include <cmath>

#define RLX_FA_WARPS 4
#define RLX_FA_BN 64
#define RLX_FA_LOG2E 1.4426950408889634f

typedef struct rlx_fa_params {
    __nv_bfloat16 *o;
    const __nv_bfloat16 *qkv;
    const float *row_scale; // NULL = 1
    const float *cos_t, *sin_t;
    const int32_t *pos;
    const int32_t *seq_start;
    int64_t ld_qkv, ldo;
    int heads, kv_heads;
    int group;      // G = heads / kv_heads
    int gh;         // heads of the group packed into one CTA
    int tq;         // query tokens per CTA
    int n_hc;       // CTAs along the group (ceil(G / gh))
    int causal, rope;
    float scale_log2; // scale · log2(e): the softmax runs on exp2
} rlx_fa_params;

// Element offset of 16-byte chunk c of row r in a [rows][D] bf16 tile.
template <int D> static __device__ __forceinline__ int rlx_fa_swz(int r, int c) {
    return r * D + ((c ^ (r & 7)) << 3);
}

static __device__ __forceinline__ void rlx_fa_ld8(const __nv_bfloat16 *p, float v[8]) {
    const uint4 u = *reinterpret_cast<const uint4 *>(p);
    const uint32_t w[4] = {u.x, u.y, u.z, u.w};
    #pragma unroll
    for (int i = 0; i < 4; i++) {
        v[2 * i] = __uint_as_float(w[i] << 16); // bf16 is the top half of an f32
        v[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
    }
}
static __device__ __forceinline__ void rlx_fa_st8(__nv_bfloat16 *p, const float v[8]) {
    uint32_t w[4];
    #pragma unroll
    for (int i = 0; i < 4; i++) w[i] = rlx_pack_bf16x2(__float2bfloat16_rn(v[2 * i]), __float2bfloat16_rn(v[2 * i + 1]));
    *reinterpret_cast<uint4 *>(p) = make_uint4(w[0], w[1], w[2], w[3]);
}
static __device__ __forceinline__ uint32_t rlx_fa_pack(float lo, float hi) {
    return rlx_pack_bf16x2(__float2bfloat16_rn(lo), __float2bfloat16_rn(hi));
}

// NeoX rotation of 8 pairs (lo[k], hi[k]) = (x[d], x[d + D/2]) with the table entries of d.
// The CPU reference's expressions (rlx__ref_rope).
static __device__ __forceinline__ void rlx_fa_rope8(float lo[8], float hi[8], const float *c, const float *s) {
    const float4 c0 = *reinterpret_cast<const float4 *>(c), c1 = *reinterpret_cast<const float4 *>(c + 4);
    const float4 s0 = *reinterpret_cast<const float4 *>(s), s1 = *reinterpret_cast<const float4 *>(s + 4);
    const float cs[8] = {c0.x, c0.y, c0.z, c0.w, c1.x, c1.y, c1.z, c1.w};
    const float sn[8] = {s0.x, s0.y, s0.z, s0.w, s1.x, s1.y, s1.z, s1.w};
    #pragma unroll
    for (int k = 0; k < 8; k++) {
        const float a = lo[k], b = hi[k];
        lo[k] = a * cs[k] - b * sn[k];
        hi[k] = b * cs[k] + a * sn[k];
    }
}

// Issues the cp.async copies of key tile kt (keys kt·BN ..) into buffer `buf`, zero-filling rows
// past the sequence end (their V must be 0, not the NaN a fresh buffer may hold: P is 0 there and
// 0·NaN would poison O), and writes the tile's key scales (0 past the end).
template <int D>
static __device__ __forceinline__ void rlx_fa_load_kv(const rlx_fa_params &p, __nv_bfloat16 *sk, __nv_bfloat16 *sv,
                                                     float *sks, int64_t start, int len, int kvh, int kt) {
    constexpr int BN = RLX_FA_BN, CH = D / 8;
    const int kb = kt * BN;
    const int64_t kcol = (int64_t)(p.heads + kvh) * D, vcol = (int64_t)(p.heads + p.kv_heads + kvh) * D;
    for (int i = threadIdx.x; i < BN * CH; i += RLX_FA_WARPS * 32) {
        const int r = i / CH, c = i % CH, key = kb + r;
        const bool in = key < len;
        const __nv_bfloat16 *row = p.qkv + (start + (in ? key : 0)) * p.ld_qkv + c * 8;
        rlx_cp_async_16_zfill(sk + rlx_fa_swz<D>(r, c), row + kcol, in ? 16u : 0u);
        rlx_cp_async_16_zfill(sv + rlx_fa_swz<D>(r, c), row + vcol, in ? 16u : 0u);
    }
    for (int r = threadIdx.x; r < BN; r += RLX_FA_WARPS * 32) {
        const int key = kb + r;
        sks[r] = key < len ? (p.row_scale ? p.row_scale[start + key] : 1.0f) : 0.0f;
    }
}

template <int D, int MT>
__global__ void __launch_bounds__(RLX_FA_WARPS * 32) rlx_flash_attention_kernel(const rlx_fa_params p) {
    constexpr int BN = RLX_FA_BN, CH = D / 8, HALF = CH / 2, WR = 16 * MT, BM = WR * RLX_FA_WARPS;
    constexpr int NT = RLX_FA_WARPS * 32;
    RLX_DYN_SMEM(__nv_bfloat16, smem);
    __nv_bfloat16 *sq = smem;              // [BM][D]
    __nv_bfloat16 *sk = sq + BM * D;       // [2][BN][D]
    __nv_bfloat16 *sv = sk + 2 * BN * D;   // [2][BN][D]
    float *sks = reinterpret_cast<float *>(sv + 2 * BN * D); // [2][BN]

    const int seq = blockIdx.z, kvh = blockIdx.y / p.n_hc, hc = blockIdx.y % p.n_hc;
    const int64_t start = p.seq_start[seq];
    const int len = (int)((int64_t)p.seq_start[seq + 1] - start);
    const int t0 = (int)(gridDim.x - 1 - blockIdx.x) * p.tq; // longest key ranges first
    if (t0 >= len) return;                                   // the whole block, before any barrier
    const int rows_used = p.tq * p.gh;
    const int ntok = min(p.tq, len - t0);                    // tokens of this tile inside the sequence
    const int heads_here = min(p.gh, p.group - hc * p.gh);   // group heads of this CTA

    // ---- Q: load, rotate, round to bf16 into shared memory (rows outside the tile are 0) -----------
    for (int i = threadIdx.x; i < BM * HALF; i += NT) {
        const int r = i / HALF, c = i % HALF;
        const int tq = r / p.gh, hh = r % p.gh;
        float lo[8], hi[8];
        if (r < rows_used && tq < ntok && hh < heads_here) {
            const int64_t t = start + t0 + tq;
            const __nv_bfloat16 *src =
                p.qkv + t * p.ld_qkv + (int64_t)(kvh * p.group + hc * p.gh + hh) * D + c * 8;
            rlx_fa_ld8(src, lo);
            rlx_fa_ld8(src + D / 2, hi);
            if (p.rope) {
                const int64_t e = (int64_t)p.pos[t] * (D / 2) + c * 8;
                rlx_fa_rope8(lo, hi, p.cos_t + e, p.sin_t + e);
            }
        } else {
            #pragma unroll
            for (int k = 0; k < 8; k++) lo[k] = hi[k] = 0.0f;
        }
        rlx_fa_st8(sq + rlx_fa_swz<D>(r, c), lo);
        rlx_fa_st8(sq + rlx_fa_swz<D>(r, c + HALF), hi);
    }

    // ---- this lane's rows: token (or -1 outside the sequence), f32 score factor ------------------
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
    int rtok[MT][2];
    float rfac[MT][2];
    #pragma unroll
    for (int mt = 0; mt < MT; mt++)
        #pragma unroll
        for (int h = 0; h < 2; h++) {
            const int r = warp * WR + mt * 16 + g + 8 * h, tq = r / p.gh;
            const bool valid = r < rows_used && tq < ntok && r % p.gh < heads_here;
            rtok[mt][h] = valid ? t0 + tq : -1;
            rfac[mt][h] = valid ? p.scale_log2 * (p.row_scale ? p.row_scale[start + t0 + tq] : 1.0f) : 0.0f;
        }
    // Tokens of the warp's first and last valid rows (rows are token-major): the keys it needs.
    const int w_r0 = warp * WR, w_r1 = min(warp * WR + WR, rows_used) - 1;
    const int w_tok0 = t0 + w_r0 / p.gh, w_tok1 = min(t0 + w_r1 / p.gh, t0 + ntok - 1);
    const bool w_any = w_r0 < rows_used && w_tok0 < t0 + ntok;
    const int w_kmax = !w_any ? -1 : p.causal ? w_tok1 : len - 1; // last key any of its rows sees

    // Keys this CTA needs: all of the sequence, or (causal) up to its last token.
    const int kend = p.causal ? t0 + ntok : len;
    const int n_tiles = (kend + BN - 1) / BN;

    float o_acc[MT][D / 8][4], m_run[MT][2], l_run[MT][2];
    #pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        #pragma unroll
        for (int nd = 0; nd < D / 8; nd++)
            #pragma unroll
            for (int e = 0; e < 4; e++) o_acc[mt][nd][e] = 0.0f;
        m_run[mt][0] = m_run[mt][1] = -INFINITY;
        l_run[mt][0] = l_run[mt][1] = 0.0f;
    }

    rlx_fa_load_kv<D>(p, sk, sv, sks, start, len, kvh, 0);
    rlx_cp_async_commit();

    for (int it = 0; it < n_tiles; it++) {
        const int buf = it & 1, kb = it * BN;
        __nv_bfloat16 *kt = sk + buf * BN * D, *vt = sv + buf * BN * D;
        const float *ks = sks + buf * BN;
        // Prefetch the next tile into the other buffer: its last readers finished before the
        // barrier that closed the previous iteration.
        if (it + 1 < n_tiles)
            rlx_fa_load_kv<D>(p, sk + (buf ^ 1) * BN * D, sv + (buf ^ 1) * BN * D, sks + (buf ^ 1) * BN, start, len,
                              kvh, it + 1);
        rlx_cp_async_commit(); // possibly empty: keeps "all but the newest group" meaning this tile
        rlx_cp_async_wait<1>();
        __syncthreads();

        if (p.rope) { // rotate this K tile in place, once per CTA
            for (int i = threadIdx.x; i < BN * HALF; i += NT) {
                const int r = i / HALF, c = i % HALF, key = kb + r;
                if (key >= len) continue;
                __nv_bfloat16 *plo = kt + rlx_fa_swz<D>(r, c), *phi = kt + rlx_fa_swz<D>(r, c + HALF);
                float lo[8], hi[8];
                rlx_fa_ld8(plo, lo);
                rlx_fa_ld8(phi, hi);
                const int64_t e = (int64_t)p.pos[start + key] * (D / 2) + c * 8;
                rlx_fa_rope8(lo, hi, p.cos_t + e, p.sin_t + e);
                rlx_fa_st8(plo, lo);
                rlx_fa_st8(phi, hi);
            }
            __syncthreads();
        }

        if (kb <= w_kmax) { // warp-uniform: skip tiles entirely above this warp's rows
            // ---- S = Q·Kᵀ ------------------------------------------------------------------------
            float s_acc[MT][BN / 8][4];
            #pragma unroll
            for (int mt = 0; mt < MT; mt++)
                #pragma unroll
                for (int nb = 0; nb < BN / 8; nb++)
                    #pragma unroll
                    for (int e = 0; e < 4; e++) s_acc[mt][nb][e] = 0.0f;
            #pragma unroll 2
            for (int kc = 0; kc < D / 16; kc++) {
                uint32_t a[MT][4];
                #pragma unroll
                for (int mt = 0; mt < MT; mt++) // matrices: rows 0-7 | 8-15 of chunk 2kc, then of 2kc+1
                    rlx_ldmatrix_x4(a[mt], sq + rlx_fa_swz<D>(warp * WR + mt * 16 + (lane & 15), 2 * kc + (lane >> 4)));
                #pragma unroll
                for (int nb2 = 0; nb2 < BN / 16; nb2++) {
                    uint32_t b[4]; // keys 0-7: chunk 2kc, 2kc+1; keys 8-15: chunk 2kc, 2kc+1
                    rlx_ldmatrix_x4(b, kt + rlx_fa_swz<D>(nb2 * 16 + (lane & 7) + ((lane >> 4) << 3),
                                                          2 * kc + ((lane >> 3) & 1)));
                    #pragma unroll
                    for (int mt = 0; mt < MT; mt++) {
                        rlx_mma_m16n8k16_bf16(s_acc[mt][2 * nb2], a[mt], b, s_acc[mt][2 * nb2]);
                        rlx_mma_m16n8k16_bf16(s_acc[mt][2 * nb2 + 1], a[mt], b + 2, s_acc[mt][2 * nb2 + 1]);
                    }
                }
            }

            // ---- scale, mask, online softmax (log2 domain) -----------------------------------------
            const bool need_mask = kb + BN > len || (p.causal && kb + BN - 1 > w_tok0);
            #pragma unroll
            for (int mt = 0; mt < MT; mt++)
                #pragma unroll
                for (int h = 0; h < 2; h++) {
                    float mx = -INFINITY;
                    #pragma unroll
                    for (int nb = 0; nb < BN / 8; nb++) {
                        // s_j of this lane's two key columns (re-read from shared memory rather than
                        // held: registers are the scarce resource at D = 128)
                        const float2 ksj = *reinterpret_cast<const float2 *>(ks + nb * 8 + 2 * t4);
                        #pragma unroll
                        for (int e = 0; e < 2; e++) {
                            float x = s_acc[mt][nb][2 * h + e] * rfac[mt][h] * (e ? ksj.y : ksj.x);
                            const int j = kb + nb * 8 + 2 * t4 + e;
                            if (need_mask && (j >= len || (p.causal && j > rtok[mt][h]))) x = -INFINITY;
                            s_acc[mt][nb][2 * h + e] = x;
                            mx = fmaxf(mx, x);
                        }
                    }
                    // the 4 lanes of a row are lanes 4g .. 4g+3
                    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                    const float m_new = fmaxf(m_run[mt][h], mx);
                    // a row with nothing visible yet (or a padding row) keeps exp2 away from inf - inf
                    const float m_use = m_new == -INFINITY ? 0.0f : m_new;
                    const float corr = exp2f(m_run[mt][h] - m_use);
                    m_run[mt][h] = m_new;
                    float sum = 0.0f;
                    #pragma unroll
                    for (int nb = 0; nb < BN / 8; nb++)
                        #pragma unroll
                        for (int e = 0; e < 2; e++) {
                            const float pr = exp2f(s_acc[mt][nb][2 * h + e] - m_use);
                            s_acc[mt][nb][2 * h + e] = pr;
                            sum += pr;
                        }
                    l_run[mt][h] = l_run[mt][h] * corr + sum; // this lane's part of the row sum
                    #pragma unroll
                    for (int nd = 0; nd < D / 8; nd++) {
                        o_acc[mt][nd][2 * h] *= corr;
                        o_acc[mt][nd][2 * h + 1] *= corr;
                    }
                }

            // ---- O += (P·diag(s_j))·V: P's C fragments are the A fragments of this mma -------------
            #pragma unroll
            for (int kk = 0; kk < BN / 16; kk++) {
                uint32_t a[MT][4];
                const int n0 = 2 * kk, n1 = 2 * kk + 1;
                const float2 k0 = *reinterpret_cast<const float2 *>(ks + n0 * 8 + 2 * t4);
                const float2 k1 = *reinterpret_cast<const float2 *>(ks + n1 * 8 + 2 * t4);
                #pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    a[mt][0] = rlx_fa_pack(s_acc[mt][n0][0] * k0.x, s_acc[mt][n0][1] * k0.y);
                    a[mt][1] = rlx_fa_pack(s_acc[mt][n0][2] * k0.x, s_acc[mt][n0][3] * k0.y);
                    a[mt][2] = rlx_fa_pack(s_acc[mt][n1][0] * k1.x, s_acc[mt][n1][1] * k1.y);
                    a[mt][3] = rlx_fa_pack(s_acc[mt][n1][2] * k1.x, s_acc[mt][n1][3] * k1.y);
                }
                #pragma unroll
                for (int nd2 = 0; nd2 < D / 16; nd2++) {
                    uint32_t b[4]; // keys 0-7 | 8-15 of chunk 2nd2, then of chunk 2nd2+1, transposed
                    rlx_ldmatrix_x4_trans(b, vt + rlx_fa_swz<D>(kk * 16 + (lane & 15), 2 * nd2 + (lane >> 4)));
                    #pragma unroll
                    for (int mt = 0; mt < MT; mt++) {
                        rlx_mma_m16n8k16_bf16(o_acc[mt][2 * nd2], a[mt], b, o_acc[mt][2 * nd2]);
                        rlx_mma_m16n8k16_bf16(o_acc[mt][2 * nd2 + 1], a[mt], b + 2, o_acc[mt][2 * nd2 + 1]);
                    }
                }
            }
        }
        __syncthreads(); // every warp is done with this buffer before it is refilled
    }

    // ---- O / l, staged through this warp's own Q rows, 16-byte stores --------------------------------
    #pragma unroll
    for (int mt = 0; mt < MT; mt++)
        #pragma unroll
        for (int h = 0; h < 2; h++) {
            float l = l_run[mt][h];
            l += __shfl_xor_sync(0xffffffffu, l, 1);
            l += __shfl_xor_sync(0xffffffffu, l, 2);
            const float inv = l > 0.0f ? 1.0f / l : 0.0f;
            const int r = warp * WR + mt * 16 + g + 8 * h;
            #pragma unroll
            for (int nd = 0; nd < D / 8; nd++)
                *reinterpret_cast<uint32_t *>(sq + rlx_fa_swz<D>(r, nd) + 2 * t4) =
                    rlx_fa_pack(o_acc[mt][nd][2 * h] * inv, o_acc[mt][nd][2 * h + 1] * inv);
        }
    __syncwarp(0xffffffffu);
    for (int i = lane; i < WR * CH; i += 32) {
        const int r = warp * WR + i / CH, c = i % CH, tq = r / p.gh, hh = r % p.gh;
        if (r >= rows_used || tq >= ntok || hh >= heads_here) continue;
        __nv_bfloat16 *dst = p.o + (start + t0 + tq) * p.ldo + (int64_t)(kvh * p.group + hc * p.gh + hh) * D + c * 8;
        *reinterpret_cast<uint4 *>(dst) = *reinterpret_cast<const uint4 *>(sq + rlx_fa_swz<D>(r, c));
    }
}

template <int D, int MT> static inline size_t rlx_fa_smem_bytes() {
    return (size_t)(16 * MT * RLX_FA_WARPS + 4 * RLX_FA_BN) * D * sizeof(__nv_bfloat16) + 2 * RLX_FA_BN * sizeof(float);
}

template <int D, int MT> static inline int rlx_fa_launch(rlx_fa_params p, int64_t n_seqs, int64_t max_len, void *stream) {
    const int BM = 16 * MT * RLX_FA_WARPS;
    p.gh = p.group < BM ? p.group : BM;
    p.tq = BM / p.gh;
    p.n_hc = (p.group + p.gh - 1) / p.gh;
    const int64_t tiles = (max_len + p.tq - 1) / p.tq, gy = (int64_t)p.kv_heads * p.n_hc;
    if (tiles > 0x7fffffff || gy > 65535) return (int)cudaErrorInvalidValue;
    return (int)rlx_launch((rlx_flash_attention_kernel<D, MT>), dim3((unsigned)tiles, (unsigned)gy, (unsigned)n_seqs),
                           dim3(RLX_FA_WARPS * 32), rlx_fa_smem_bytes<D, MT>(), (cudaStream_t)stream, p);
}

extern "C" int RLX_KNAME(flash_attention)(void *o, const void *qkv, const float *row_scale, const float *cos_t,
                                          const float *sin_t, const int32_t *pos, const int32_t *seq_start,
                                          int64_t n_seqs, int64_t max_len, int64_t heads, int64_t kv_heads,
                                          int64_t head_dim, int64_t ld_qkv, int64_t ldo, int causal, int rope,
                                          float scale, rlx_kdtype dt, void *stream) {
    const uintptr_t a16 = 15u;
    if (dt != RLX_K_BF16 || !o || !qkv || !seq_start || n_seqs < 1 || n_seqs > 65535 || max_len < 1 ||
        max_len > 0x7fffff00 || heads < 1 || kv_heads < 1 || heads > 0x7fffffff || heads % kv_heads ||
        (head_dim != 64 && head_dim != 128) || ld_qkv < (heads + 2 * kv_heads) * head_dim || ld_qkv % 8 ||
        ldo < heads * head_dim || ldo % 8 || ((uintptr_t)qkv & a16) || ((uintptr_t)o & a16) || !std::isfinite(scale))
        return (int)cudaErrorInvalidValue;
    if (rope && (!cos_t || !sin_t || !pos || ((uintptr_t)cos_t & a16) || ((uintptr_t)sin_t & a16)))
        return (int)cudaErrorInvalidValue;
    rlx_fa_params p;
    p.o = (__nv_bfloat16 *)o;
    p.qkv = (const __nv_bfloat16 *)qkv;
    p.row_scale = row_scale;
    p.cos_t = cos_t;
    p.sin_t = sin_t;
    p.pos = pos;
    p.seq_start = seq_start;
    p.ld_qkv = ld_qkv;
    p.ldo = ldo;
    p.heads = (int)heads;
    p.kv_heads = (int)kv_heads;
    p.group = (int)(heads / kv_heads);
    p.gh = p.tq = p.n_hc = 0; // set per tile shape
    p.causal = causal != 0;
    p.rope = rope != 0;
    p.scale_log2 = scale * RLX_FA_LOG2E;
    if (head_dim == 64) return rlx_fa_launch<64, 2>(p, n_seqs, max_len, stream);
    return rlx_fa_launch<128, 2>(p, n_seqs, max_len, stream);
}
