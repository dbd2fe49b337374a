// Fused RoPE + GQA attention for LLaMA prefill (ARCHITECTURE.md, "RoPE + GQA attention" and "KV
// cache and decode"): FlashAttention-2-style tiles on the tensor cores (mma.sync m16n8k16 bf16, f32
// accumulate) with the online softmax in f32. Queries are the new tokens of each sequence, read
// from the packed QKV GEMM output with the norm's per-token scale and RoPE applied on load; keys
// and values are read from a KV cache — the caller's pages (rlx_session_prefill_kv) or, in a plain
// prefill, the contiguous rows kv_write made — already rotated and scaled once by kv_write, so
// this kernel never touches a key's scale or rotation.
//
// Contract (rlx_attn_args, rlx_kernels.h): q [T, ldq] bf16, query head h at columns h·D (the packed
// QKV row: ldq = (H + 2·KV)·D); q_scale f32 [T] (NULL = 1); cos_t/sin_t f32 [positions, D/2]; pos
// i32 [T] absolute positions; seq_start i32 [n_seqs + 1] of the new tokens; kv (rlx_kv_ref): key j
// of sequence s, kv head g at k + row(s, j) + g·head_stride with row() through the page table
// (page = indices[indptr[s] + j >> page_shift], slot j & (page size − 1)) or, contiguous, row
// seq_start[s] + j; kv_len[s] keys (NULL: the sequence's new tokens). o [T, ldo] bf16.
//
// Math per (sequence with L new tokens and N = kv_len keys, query head h, new token i), G = H / KV,
// g = h / G, s_i the row scale:
//   q_i = rope(s_i·q_i) at position pos_i;  o_i = Σ_j softmax_j(scale · q_i·k_j) v_j  over
//   j <= N − L + i (causal, bottom-right aligned: a query at absolute position cached + i sees the
//   whole cached prefix and the new tokens up to itself) or all N keys.
// rope is linear and s_i is per row, so s_i stays out of the bf16 Q operand: the mma runs on
// rope(q) (rounded to bf16 once, as any bf16 operand must be) and the score factor
// scale·log2(e)·s_i is applied in f32 to each row of S. K and V are used as stored (bf16).
//
// Tiles. One CTA = RLX_FA_WARPS (4) warps = BM = 64·MT rows of the query side × one kv head × one
// sequence. The rows are (token, head) pairs of the kv head's group, token-major: row r is token
// t0 + r / GH of query head g·G + hc·GH + r % GH, where GH = min(G, BM) heads are packed and
// TQ = BM / GH tokens per CTA (G > BM splits the group over hc). So every K/V tile brought into
// shared memory serves all query heads of the group; for G = 1 this is plain FA2 with BM tokens.
// Each warp owns 16·MT rows (MT m16 tiles) and all BN keys of a step: S = Q·Kᵀ in registers
// (MT × BN/8 n8 tiles), the online softmax on them, P re-used as the A operand of P·V without going
// through shared memory (the C and A fragment layouts line up), O in registers (MT × D/8 n8 tiles).
// Registers per thread ≈ O (MT·D/2) + S (MT·BN/2) + fragments and row state. The tile shapes
// (rlx_attn_args.tile, RLX_FA_TILE_* in rlx_kernels.h), with ptxas (CUDA 13.0) registers and
// shared memory, none spilling and none with a stack frame (ctest -L nvcc enforces both):
//   shape    D    MT  BM   BN   regs sm_80 / sm_90a   smem     every K/V fragment feeds
//   WIDE     64   2   128  64   240 / 240             48 KiB   2 mmas
//   WIDE     128  2   128  32   250 / 255             64 KiB   2 mmas
//   NARROW   64   1   64   64   144 / 128             40 KiB   1 mma
//   NARROW   128  1   64   64   164 / 162             80 KiB   1 mma
// WIDE is FA2's sm_80 tile (4 warps × 32 rows); at D = 128 its O alone is 128 registers, so the
// key step is 32 (S 32 registers; with 64 keys ptxas spilled 76 B on sm_80 and 108 B on sm_90a at
// 255 registers), and the rows' last visible keys are recomputed in the tiles that need a mask
// rather than held through the loop. NARROW has twice the CTAs for the same work. The launcher's
// rule (rlx_flash_tile): WIDE, unless its grid has fewer CTAs than the device has multiprocessors
// (rlx_attn_args.sm_count; e.g. Llama-3.1-8B at 1 × 512 tokens is 128 WIDE CTAs for an H200's 132
// SMs), then NARROW. Predicted, not measured: no GPU has run either.
// Shared memory (bf16, rows of D, 16-byte chunks XOR-swizzled by row % 8): Q [BM][D] (rope
// applied, loaded once, re-read by ldmatrix per step as FA2 does; it stages O at the end), K
// [2][BN][D] and V [2][BN][D] double-buffered with cp.async (step j+1 in flight while j is
// computed): (BM + 4·BN)·D·2 bytes, above. Each K/V row of a step is gathered by its own 16-byte
// cp.async chunks through the page table, so any page size (1 … 256) works with the same tiles;
// the page index is looked up per chunk (a cached global read).
//
// Bank conflicts. Element (r, d) of a [rows][D] tile lives at r·D + 8·((d/8) ^ (r % 8)) + d % 8
// (rlx_fa_swz): chunk c of row r at byte 16·(c ^ (r & 7)) of the row. Shared memory has 32 banks
// of 4 bytes; a row is 128 bytes (D = 64, exactly the 32 banks) or 256 (D = 128: two passes over
// them), so chunk position c' of any row covers banks 4·(c' & 7) … 4·(c' & 7) + 3, whatever the
// row. A 16-byte access (ldmatrix row, cp.async, uint4 store) is served a quarter-warp at a time:
// it is conflict-free when the 8 lanes of each quarter hit 8 different values of c' & 7. The
// 4-byte accesses of a full warp are conflict-free when the 32 lanes hit 32 different banks.
//  - ldmatrix (Q and K operands, and V .trans): each 8×8 matrix is 8 consecutive rows r0 + j
//    (r0 a multiple of 8, j = 0 … 7) at one logical chunk c: c' & 7 = (c & 7) ^ j, 8 values.
//  - cp.async of K/V (i → row i / (D/8), chunk i % (D/8)) and the final O copy-out (the same
//    mapping per warp): a quarter-warp is 8 consecutive chunks c = 8m … 8m + 7 of one row r,
//    c' & 7 = (c & 7) ^ (r & 7): 8 values.
//  - O staging (4-byte stores, lane = 4g + t4): row r0 + g + 8h, chunk nd, word t4: bank
//    4·((nd & 7) ^ g) + t4 — g = 0 … 7 and t4 = 0 … 3 give all 32 banks.
//  - Q staging (uint4 stores): thread i holds chunks c and c + D/16 of row r = i / (D/16) (the
//    two halves RoPE pairs). D = 128: a quarter-warp is c = 0 … 7 of one row, c' = c ^ (r & 7)
//    (and 8 + that), 8 values. D = 64: a quarter-warp is two rows r, r + 1 (r even) with c = 0 … 3
//    each; stored low half first, both rows' c ^ (r & 7) fall in the same half {0…3} or {4…7}
//    (r & 4 decides it for both): a 2-way conflict. So odd rows store their high half first: the
//    first store is c ^ (r & 7) for row r and (c + 4) ^ ((r + 1) & 7) for row r + 1 — one half
//    each, 8 values — and the second store the other way round.
// The rotation of K in shared memory (the other 2-way conflict at D = 64) is gone: kv_write
// rotates K once per token.
// Causal: a CTA loads only the key tiles up to its last token's visible key; a warp skips the
// tiles entirely above its rows and masks only tiles that cross the diagonal or the last key.
// Query tiles are launched in reverse order (longest key range first), so the tail of the grid is
// short. Few new tokens per sequence (decode) go to decode_attention instead (the planner's rule).
//
// Not measured: no GPU has run this kernel yet (PERF.md has the method). Before the KV cache, every
// CTA rotated every K tile it loaded in shared memory (one more barrier per tile, cos/sin rows 2×
// the K tile's bytes from L2, ~32× per tile at 2048 tokens); kv_write now does that once per token.
// Going past FA2 on H100 needs the sm_90a path (wgmma with operands in shared memory, TMA loads,
// warp-specialised producer/consumer), which this tile layout (64-row multiples, swizzled shared
// memory, K/V shared by the group) keeps open; TMA gathers of paged rows need a page size >= 8.
//
// Limits: bf16 only; D in {64, 128}; q and o 16-byte aligned, ldq and ldo multiples of 8; K/V
// bases 16-byte aligned, strides multiples of 8 elements; cos_t/sin_t 16-byte aligned; new tokens
// per sequence <= max_q and keys <= max_kv, both <= 2^31 - 256; n_seqs <= 65535; pos values inside
// the tables and page indices inside the cache (validated on the host, not on the device).
#include "rlx_kv.cuh"

#include <cmath>

#define RLX_FA_WARPS 4
#define RLX_FA_LOG2E 1.4426950408889634f

typedef struct rlx_fa_params {
    __nv_bfloat16 *o;
    const __nv_bfloat16 *q;
    const float *q_scale; // NULL = 1
    const float *cos_t, *sin_t;
    const int32_t *pos;
    const int32_t *seq_start;
    rlx_kv_ref kv;
    int64_t ldq, ldo;
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

// Issues the cp.async copies of key tile kt (keys kt·BN ..) of sequence seq into one K and one V
// buffer, each row gathered through the KV cache's page table (or the contiguous rows of a plain
// prefill), zero-filling rows past the sequence's nkv keys (their V must be 0, not the NaN a fresh
// buffer may hold: P is 0 there and 0·NaN would poison O).
template <int D, int BN>
static __device__ __forceinline__ void rlx_fa_load_kv(const rlx_fa_params &p, __nv_bfloat16 *sk, __nv_bfloat16 *sv, int seq,
                                                     int nkv, int kvh, int kt) {
    constexpr int CH = D / 8;
    const int kb = kt * BN;
    const __nv_bfloat16 *kbase = (const __nv_bfloat16 *)p.kv.k + kvh * p.kv.head_stride;
    const __nv_bfloat16 *vbase = (const __nv_bfloat16 *)p.kv.v + kvh * p.kv.head_stride;
    for (int i = threadIdx.x; i < BN * CH; i += RLX_FA_WARPS * 32) {
        const int r = i / CH, c = i % CH, key = kb + r;
        const bool in = key < nkv;
        const int64_t row = in ? rlx_kv_row(p.kv, p.seq_start, seq, key) : 0;
        rlx_cp_async_16_zfill(sk + rlx_fa_swz<D>(r, c), kbase + row + c * 8, in ? 16u : 0u);
        rlx_cp_async_16_zfill(sv + rlx_fa_swz<D>(r, c), vbase + row + c * 8, in ? 16u : 0u);
    }
}

template <int D, int MT, int BN>
__global__ void __launch_bounds__(RLX_FA_WARPS * 32) rlx_flash_attention_kernel(const rlx_fa_params p) {
    constexpr int CH = D / 8, HALF = CH / 2, WR = 16 * MT, BM = WR * RLX_FA_WARPS;
    constexpr int NT = RLX_FA_WARPS * 32;
    RLX_DYN_SMEM(__nv_bfloat16, smem);
    __nv_bfloat16 *sq = smem;              // [BM][D]
    __nv_bfloat16 *sk = sq + BM * D;       // [2][BN][D]
    __nv_bfloat16 *sv = sk + 2 * BN * D;   // [2][BN][D]

    const int seq = blockIdx.z, kvh = blockIdx.y / p.n_hc, hc = blockIdx.y % p.n_hc;
    const int64_t start = p.seq_start[seq];
    const int len = (int)((int64_t)p.seq_start[seq + 1] - start);  // new tokens (queries)
    const int nkv = (int)rlx_kv_len(p.kv, seq, len);                 // keys: cached + new
    const int off = nkv - len;                                       // causal: token i sees keys <= off + i
    const int t0 = (int)(gridDim.x - 1 - blockIdx.x) * p.tq; // longest key ranges first
    if (t0 >= len) return;                                   // the whole block, before any barrier
    const int rows_used = p.tq * p.gh;
    const int ntok = min(p.tq, len - t0);                    // tokens of this tile inside the sequence
    const int heads_here = min(p.gh, p.group - hc * p.gh);   // group heads of this CTA

    // ---- Q: load, rotate, round to bf16 into shared memory (rows outside the tile are 0) -----------
    // Thread i holds chunks c and c + HALF of row r (the two halves RoPE pairs). With D = 64 a
    // quarter-warp covers two rows whose swizzled chunks c ^ (r & 7), c < 4, fall in the same half
    // of the 128-byte row: odd rows store their high half first, so each store instruction's
    // quarter-warps hit all 8 chunk positions (header comment, "Bank conflicts").
    constexpr bool SWAP = HALF < 8;
    for (int i = threadIdx.x; i < BM * HALF; i += NT) {
        const int r = i / HALF, c = i % HALF;
        const int tq = r / p.gh, hh = r % p.gh;
        float lo[8], hi[8];
        if (r < rows_used && tq < ntok && hh < heads_here) {
            const int64_t t = start + t0 + tq;
            const __nv_bfloat16 *src = p.q + t * p.ldq + (int64_t)(kvh * p.group + hc * p.gh + hh) * D + c * 8;
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
        const bool swap = SWAP && (r & 1);
        if (swap) {
            #pragma unroll
            for (int k = 0; k < 8; k++) {
                const float x = lo[k];
                lo[k] = hi[k];
                hi[k] = x;
            }
        }
        rlx_fa_st8(sq + rlx_fa_swz<D>(r, swap ? c + HALF : c), lo);
        rlx_fa_st8(sq + rlx_fa_swz<D>(r, swap ? c : c + HALF), hi);
    }

    // ---- this lane's rows (warp·WR + mt·16 + g + 8h): f32 score factor (0 outside the tile) ---------
    // Their last visible keys are recomputed where a tile needs masking: held for the whole loop
    // they cost the registers that kept the wide D = 128 tile from spilling.
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
    float rfac[MT][2];
    #pragma unroll
    for (int mt = 0; mt < MT; mt++)
        #pragma unroll
        for (int h = 0; h < 2; h++) {
            const int r = warp * WR + mt * 16 + g + 8 * h, tq = r / p.gh;
            const bool valid = r < rows_used && tq < ntok && r % p.gh < heads_here;
            rfac[mt][h] = valid ? p.scale_log2 * (p.q_scale ? p.q_scale[start + t0 + tq] : 1.0f) : 0.0f;
        }
    // Tokens of the warp's first and last valid rows (rows are token-major): the keys it needs.
    const int w_r0 = warp * WR, w_r1 = min(warp * WR + WR, rows_used) - 1;
    const int w_tok0 = t0 + w_r0 / p.gh, w_tok1 = min(t0 + w_r1 / p.gh, t0 + ntok - 1);
    const bool w_any = w_r0 < rows_used && w_tok0 < t0 + ntok;
    const int w_kmax = !w_any ? -1 : p.causal ? off + w_tok1 : nkv - 1; // last key any of its rows sees

    // Keys this CTA needs: all of the sequence's, or (causal) up to its last token's.
    const int kend = p.causal ? off + t0 + ntok : nkv;
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

    rlx_fa_load_kv<D, BN>(p, sk, sv, seq, nkv, kvh, 0);
    rlx_cp_async_commit();

    for (int it = 0; it < n_tiles; it++) {
        const int buf = it & 1, kb = it * BN;
        const __nv_bfloat16 *kt = sk + buf * BN * D, *vt = sv + buf * BN * D;
        // Prefetch the next tile into the other buffer: its last readers finished before the
        // barrier that closed the previous iteration.
        if (it + 1 < n_tiles) rlx_fa_load_kv<D, BN>(p, sk + (buf ^ 1) * BN * D, sv + (buf ^ 1) * BN * D, seq, nkv, kvh, it + 1);
        rlx_cp_async_commit(); // possibly empty: keeps "all but the newest group" meaning this tile
        rlx_cp_async_wait<1>();
        __syncthreads();

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
            const bool need_mask = kb + BN > nkv || (p.causal && kb + BN - 1 > off + w_tok0);
            #pragma unroll
            for (int mt = 0; mt < MT; mt++)
                #pragma unroll
                for (int h = 0; h < 2; h++) {
                    float mx = -INFINITY;
                    // last key this row sees (rows past the tile are never stored: any bound works)
                    const int kmax = !need_mask ? 0 : p.causal ? off + t0 + (warp * WR + mt * 16 + g + 8 * h) / p.gh : nkv - 1;
                    #pragma unroll
                    for (int nb = 0; nb < BN / 8; nb++) {
                        #pragma unroll
                        for (int e = 0; e < 2; e++) {
                            float x = s_acc[mt][nb][2 * h + e] * rfac[mt][h];
                            const int j = kb + nb * 8 + 2 * t4 + e;
                            if (need_mask && (j >= nkv || j > kmax)) x = -INFINITY;
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

            // ---- O += P·V: P's C fragments are the A fragments of this mma ---------------------------
            #pragma unroll
            for (int kk = 0; kk < BN / 16; kk++) {
                uint32_t a[MT][4];
                const int n0 = 2 * kk, n1 = 2 * kk + 1;
                #pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    a[mt][0] = rlx_fa_pack(s_acc[mt][n0][0], s_acc[mt][n0][1]);
                    a[mt][1] = rlx_fa_pack(s_acc[mt][n0][2], s_acc[mt][n0][3]);
                    a[mt][2] = rlx_fa_pack(s_acc[mt][n1][0], s_acc[mt][n1][1]);
                    a[mt][3] = rlx_fa_pack(s_acc[mt][n1][2], s_acc[mt][n1][3]);
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

template <int D, int MT, int BN> static inline size_t rlx_fa_smem_bytes() {
    return (size_t)(16 * MT * RLX_FA_WARPS + 4 * BN) * D * sizeof(__nv_bfloat16);
}

template <int D, int MT, int BN> static inline int rlx_fa_launch(rlx_fa_params p, int64_t n_seqs, int64_t max_q, void *stream) {
    const int BM = 16 * MT * RLX_FA_WARPS;
    p.gh = p.group < BM ? p.group : BM;
    p.tq = BM / p.gh;
    p.n_hc = (p.group + p.gh - 1) / p.gh;
    const int64_t tiles = (max_q + p.tq - 1) / p.tq, gy = (int64_t)p.kv_heads * p.n_hc;
    if (tiles > 0x7fffffff || gy > 65535) return (int)cudaErrorInvalidValue;
    return (int)rlx_launch((rlx_flash_attention_kernel<D, MT, BN>), dim3((unsigned)tiles, (unsigned)gy, (unsigned)n_seqs),
                           dim3(RLX_FA_WARPS * 32), rlx_fa_smem_bytes<D, MT, BN>(), (cudaStream_t)stream, p);
}

extern "C" int RLX_KNAME(flash_attention)(const rlx_attn_args *a, void *stream) {
    const uintptr_t a16 = 15u;
    if (!a || a->dt != RLX_K_BF16 || !a->o || !a->q || !a->seq_start || a->n_seqs < 1 || a->n_seqs > 65535 || a->max_q < 1 ||
        a->max_q > 0x7fffff00 || a->max_kv > 0x7fffff00 || a->heads < 1 || a->kv_heads < 1 || a->heads > 0x7fffffff ||
        a->heads % a->kv_heads || (a->head_dim != 64 && a->head_dim != 128) || a->ldq < a->heads * a->head_dim || a->ldq % 8 ||
        a->ldo < a->heads * a->head_dim || a->ldo % 8 || ((uintptr_t)a->q & a16) || ((uintptr_t)a->o & a16) ||
        !std::isfinite(a->scale) || a->tile < RLX_FA_TILE_RULE || a->tile > RLX_FA_TILE_NARROW || a->sm_count < 0 ||
        !rlx_kv_ref_ok(a->kv, a->kv_heads, a->head_dim, 8))
        return (int)cudaErrorInvalidValue;
    if (a->rope && (!a->cos_t || !a->sin_t || !a->pos || ((uintptr_t)a->cos_t & a16) || ((uintptr_t)a->sin_t & a16)))
        return (int)cudaErrorInvalidValue;
    rlx_fa_params p;
    p.o = (__nv_bfloat16 *)a->o;
    p.q = (const __nv_bfloat16 *)a->q;
    p.q_scale = a->q_scale;
    p.cos_t = a->cos_t;
    p.sin_t = a->sin_t;
    p.pos = a->pos;
    p.seq_start = a->seq_start;
    p.kv = a->kv;
    p.ldq = a->ldq;
    p.ldo = a->ldo;
    p.heads = (int)a->heads;
    p.kv_heads = (int)a->kv_heads;
    p.group = (int)(a->heads / a->kv_heads);
    p.gh = p.tq = p.n_hc = 0; // set per tile shape
    p.causal = a->causal != 0;
    p.rope = a->rope != 0;
    p.scale_log2 = a->scale * RLX_FA_LOG2E;
    const int tile = a->tile ? a->tile : rlx_flash_tile(a->heads, a->kv_heads, a->n_seqs, a->max_q, a->sm_count);
    if (a->head_dim == 64)
        return tile == RLX_FA_TILE_WIDE ? rlx_fa_launch<64, 2, 64>(p, a->n_seqs, a->max_q, stream)
                                        : rlx_fa_launch<64, 1, 64>(p, a->n_seqs, a->max_q, stream);
    return tile == RLX_FA_TILE_WIDE ? rlx_fa_launch<128, 2, 32>(p, a->n_seqs, a->max_q, stream)
                                    : rlx_fa_launch<128, 1, 64>(p, a->n_seqs, a->max_q, stream);
}
