/* rlx_ptx.cuh: tensor-core and async-copy PTX behind named device functions, each with an
 * emulation for the simt build (included by rlx_cuda.cuh; do not include it on its own).
 *
 *   rlx_mma_m16n8k16_bf16(d, a, b, c)   mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32
 *   rlx_ldmatrix_x{1,2,4}(r, p)         ldmatrix.sync.aligned.m8n8.x{1,2,4}.shared.b16
 *   rlx_ldmatrix_x{1,2,4}_trans(r, p)   ... .trans
 *   rlx_cp_async_16(dst, src)           cp.async.cg.shared.global, 16 bytes
 *   rlx_cp_async_16_zfill(dst, src, n)  ... copying n <= 16 bytes and zero-filling the rest
 *   rlx_cp_async_commit()               cp.async.commit_group
 *   rlx_cp_async_wait<N>()              cp.async.wait_group N
 *   rlx_cp_async_wait_all()             cp.async.wait_all
 *
 * Fragment layouts (PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point type"), with
 * g = lane >> 2 and t = lane & 3; a register holds two bf16, element i in the low half:
 *   A (16x16, row-major)  a[0] = A[g][2t..2t+1]     a[1] = A[g+8][2t..2t+1]
 *                         a[2] = A[g][2t+8..2t+9]   a[3] = A[g+8][2t+8..2t+9]
 *   B (16x8, "col": k x n) b[0] = B[2t..2t+1][g]    b[1] = B[2t+8..2t+9][g]
 *   C, D (16x8 f32)       c[0..1] = C[g][2t..2t+1]  c[2..3] = C[g+8][2t..2t+1]
 * ldmatrix: lanes 8j..8j+7 give the row addresses (16 bytes each, 16-byte aligned) of matrix j;
 * r[j] of lane l receives row l/4, columns 2(l%4) and 2(l%4)+1 of matrix j (.trans: the
 * transposed matrix, i.e. column l/4, rows 2(l%4) and 2(l%4)+1). For .x1/.x2 only the addresses
 * of lanes 0-7 / 0-15 are read.
 */
#ifndef RLX_PTX_CUH
#define RLX_PTX_CUH

#include "rlx_cuda.cuh"

#if RLX_DEVICE_CODE && !RLX_SIMT && RLX_DEVICE_ARCH < 800
#error "rlx kernels need sm_80 or newer (bf16 mma.sync, ldmatrix, cp.async)"
#endif

/* Under simt the wrappers take the caller's file and line as hidden default arguments, so a
 * deadlock or misuse inside one is reported at the kernel line that called it. */
#if RLX_SIMT
#define RLX_PTX_SITE , const char *rlx_file_ = __builtin_FILE(), int rlx_line_ = __builtin_LINE()
#else
#define RLX_PTX_SITE
#endif

// ---- bf16 pairs ------------------------------------------------------------------------------
__host__ __device__ __forceinline__ uint32_t rlx_pack_bf16x2(__nv_bfloat16 lo, __nv_bfloat16 hi) {
    return (uint32_t)__bfloat16_as_ushort(lo) | ((uint32_t)__bfloat16_as_ushort(hi) << 16);
}
__host__ __device__ __forceinline__ __nv_bfloat16 rlx_bf16_lo(uint32_t r) {
    return __ushort_as_bfloat16((unsigned short)(r & 0xffffu));
}
__host__ __device__ __forceinline__ __nv_bfloat16 rlx_bf16_hi(uint32_t r) {
    return __ushort_as_bfloat16((unsigned short)(r >> 16));
}

#if RLX_SIMT
// ---- simt emulation: each is one warp collective; the last lane to arrive computes for all ----
namespace rlx_simt_ptx {

inline float bf16_bits_to_float(uint32_t bits16) {
    const uint32_t f = bits16 << 16; /* bf16 is the top half of an f32 */
    float r;
    memcpy(&r, &f, 4);
    return r;
}

struct MmaLane {
    const uint32_t *a;
    const uint32_t *b;
    const float *c;
    float *d;
};
/* D = A B + C with the products exact (bf16 x bf16 fits in f32) and the sum accumulated in f32,
 * k ascending, starting from C. Tensor cores add in an unspecified order with at least f32
 * precision, so the GPU may differ in the last bits. */
inline const char *combine_mma(void *const *lanes, unsigned mask) {
    if (mask != 0xffffffffu) return "mma.sync m16n8k16 needs all 32 lanes of the warp";
    float A[16][16], B[16][8], C[16][8];
    for (unsigned l = 0; l < 32; ++l) {
        const MmaLane *m = static_cast<const MmaLane *>(lanes[l]);
        const unsigned g = l >> 2, t = l & 3;
        for (unsigned h = 0; h < 2; ++h) {
            A[g][2 * t + h] = bf16_bits_to_float(m->a[0] >> (16 * h) & 0xffffu);
            A[g + 8][2 * t + h] = bf16_bits_to_float(m->a[1] >> (16 * h) & 0xffffu);
            A[g][2 * t + 8 + h] = bf16_bits_to_float(m->a[2] >> (16 * h) & 0xffffu);
            A[g + 8][2 * t + 8 + h] = bf16_bits_to_float(m->a[3] >> (16 * h) & 0xffffu);
            B[2 * t + h][g] = bf16_bits_to_float(m->b[0] >> (16 * h) & 0xffffu);
            B[2 * t + 8 + h][g] = bf16_bits_to_float(m->b[1] >> (16 * h) & 0xffffu);
            C[g][2 * t + h] = m->c[h];
            C[g + 8][2 * t + h] = m->c[2 + h];
        }
    }
    /* All C is read before any D is written: d may alias c (in-place accumulation). */
    float D[16][8];
    for (unsigned r = 0; r < 16; ++r)
        for (unsigned n = 0; n < 8; ++n) {
            float acc = C[r][n];
            for (unsigned k = 0; k < 16; ++k) acc += A[r][k] * B[k][n];
            D[r][n] = acc;
        }
    for (unsigned l = 0; l < 32; ++l) {
        const MmaLane *m = static_cast<const MmaLane *>(lanes[l]);
        const unsigned g = l >> 2, t = l & 3;
        m->d[0] = D[g][2 * t];
        m->d[1] = D[g][2 * t + 1];
        m->d[2] = D[g + 8][2 * t];
        m->d[3] = D[g + 8][2 * t + 1];
    }
    return nullptr;
}

struct LdmLane {
    const void *addr;
    uint32_t *r;
};
template <int NUM, bool TRANS>
inline const char *combine_ldmatrix(void *const *lanes, unsigned mask) {
    if (mask != 0xffffffffu) return "ldmatrix needs all 32 lanes of the warp";
    uint16_t M[4][8][8];
    for (int j = 0; j < NUM; ++j)
        for (int row = 0; row < 8; ++row) {
            const void *p = static_cast<const LdmLane *>(lanes[8 * j + row])->addr;
            if ((uintptr_t)p % 16 != 0) return "ldmatrix: a row address is not 16-byte aligned";
            if (!::rlx_simt::shared_address(p, 16))
                return "ldmatrix: a row address is not shared memory (a __shared__ variable or the "
                       "block's dynamic shared memory): ldmatrix reads shared memory only";
            memcpy(M[j][row], p, 16);
        }
    for (unsigned l = 0; l < 32; ++l) {
        const LdmLane *m = static_cast<const LdmLane *>(lanes[l]);
        const unsigned q = l >> 2, t = l & 3;
        for (int j = 0; j < NUM; ++j) {
            const uint16_t lo = TRANS ? M[j][2 * t][q] : M[j][q][2 * t];
            const uint16_t hi = TRANS ? M[j][2 * t + 1][q] : M[j][q][2 * t + 1];
            m->r[j] = (uint32_t)lo | ((uint32_t)hi << 16);
        }
    }
    return nullptr;
}

} // namespace rlx_simt_ptx
#endif

// ---- mma.sync ----------------------------------------------------------------------------------
/* d = a * b + c for one 16x8x16 tile per warp; every lane of the warp must call it together.
 * d may be the same array as c. */
__device__ __forceinline__ void rlx_mma_m16n8k16_bf16(float d[4], const uint32_t a[4],
                                                      const uint32_t b[2],
                                                      const float c[4] RLX_PTX_SITE) {
#if RLX_SIMT
    rlx_simt_ptx::MmaLane lane{a, b, c, d};
    ::rlx_simt::warp_collective_aligned("mma.sync.m16n8k16.bf16", 0xffffffffu, &lane,
                                        rlx_simt_ptx::combine_mma, rlx_file_, rlx_line_);
#elif RLX_DEVICE_CODE
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};\n"
                 : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]),
                   "f"(c[1]), "f"(c[2]), "f"(c[3]));
#endif
}

// ---- ldmatrix --------------------------------------------------------------------------------
#if RLX_SIMT
#define RLX_LDMATRIX(NAME, NUM, TRANS, PTX)                                                        \
    __device__ __forceinline__ void NAME(uint32_t r[NUM], const void *smem_row RLX_PTX_SITE) {     \
        rlx_simt_ptx::LdmLane lane{smem_row, r};                                                   \
        ::rlx_simt::warp_collective_aligned(PTX, 0xffffffffu, &lane,                               \
                                            rlx_simt_ptx::combine_ldmatrix<NUM, TRANS>, rlx_file_, \
                                            rlx_line_);                                            \
    }
RLX_LDMATRIX(rlx_ldmatrix_x1, 1, false, "ldmatrix.x1")
RLX_LDMATRIX(rlx_ldmatrix_x2, 2, false, "ldmatrix.x2")
RLX_LDMATRIX(rlx_ldmatrix_x4, 4, false, "ldmatrix.x4")
RLX_LDMATRIX(rlx_ldmatrix_x1_trans, 1, true, "ldmatrix.x1.trans")
RLX_LDMATRIX(rlx_ldmatrix_x2_trans, 2, true, "ldmatrix.x2.trans")
RLX_LDMATRIX(rlx_ldmatrix_x4_trans, 4, true, "ldmatrix.x4.trans")
#undef RLX_LDMATRIX
#else
__device__ __forceinline__ void rlx_ldmatrix_x1(uint32_t r[1], const void *smem_row) {
#if RLX_DEVICE_CODE
    const unsigned s = (unsigned)__cvta_generic_to_shared(smem_row);
    asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];\n"
                 : "=r"(r[0]) : "r"(s) : "memory");
#endif
}
__device__ __forceinline__ void rlx_ldmatrix_x2(uint32_t r[2], const void *smem_row) {
#if RLX_DEVICE_CODE
    const unsigned s = (unsigned)__cvta_generic_to_shared(smem_row);
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n"
                 : "=r"(r[0]), "=r"(r[1]) : "r"(s) : "memory");
#endif
}
__device__ __forceinline__ void rlx_ldmatrix_x4(uint32_t r[4], const void *smem_row) {
#if RLX_DEVICE_CODE
    const unsigned s = (unsigned)__cvta_generic_to_shared(smem_row);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(s) : "memory");
#endif
}
__device__ __forceinline__ void rlx_ldmatrix_x1_trans(uint32_t r[1], const void *smem_row) {
#if RLX_DEVICE_CODE
    const unsigned s = (unsigned)__cvta_generic_to_shared(smem_row);
    asm volatile("ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16 {%0}, [%1];\n"
                 : "=r"(r[0]) : "r"(s) : "memory");
#endif
}
__device__ __forceinline__ void rlx_ldmatrix_x2_trans(uint32_t r[2], const void *smem_row) {
#if RLX_DEVICE_CODE
    const unsigned s = (unsigned)__cvta_generic_to_shared(smem_row);
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n"
                 : "=r"(r[0]), "=r"(r[1]) : "r"(s) : "memory");
#endif
}
__device__ __forceinline__ void rlx_ldmatrix_x4_trans(uint32_t r[4], const void *smem_row) {
#if RLX_DEVICE_CODE
    const unsigned s = (unsigned)__cvta_generic_to_shared(smem_row);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(s) : "memory");
#endif
}
#endif

// ---- cp.async --------------------------------------------------------------------------------
/* Under simt a copy is queued by the issuing thread and performed at the rlx_cp_async_wait that
 * covers its group, so data read from shared memory before the wait (and the __syncthreads that
 * must follow it) is the NaN fill or stale, as it can be on the GPU. */
__device__ __forceinline__ void rlx_cp_async_16(void *smem_dst, const void *gmem_src RLX_PTX_SITE) {
#if RLX_SIMT
    ::rlx_simt::cp_async(smem_dst, gmem_src, 16, 16, rlx_file_, rlx_line_);
#elif RLX_DEVICE_CODE
    const unsigned s = (unsigned)__cvta_generic_to_shared(smem_dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem_src) : "memory");
#endif
}
/* Copies src_bytes (0..16) and zero-fills the rest of the 16: the tail of a tile past the end of
 * a tensor. With src_bytes == 0 nothing is read. */
__device__ __forceinline__ void rlx_cp_async_16_zfill(void *smem_dst, const void *gmem_src,
                                                      unsigned src_bytes RLX_PTX_SITE) {
#if RLX_SIMT
    ::rlx_simt::cp_async(smem_dst, gmem_src, 16, src_bytes, rlx_file_, rlx_line_);
#elif RLX_DEVICE_CODE
    const unsigned s = (unsigned)__cvta_generic_to_shared(smem_dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem_src),
                 "r"(src_bytes)
                 : "memory");
#endif
}
__device__ __forceinline__ void rlx_cp_async_commit() {
#if RLX_SIMT
    ::rlx_simt::cp_async_commit();
#elif RLX_DEVICE_CODE
    asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}
/* Waits until at most N of this thread's committed groups are still in flight. */
template <int N> __device__ __forceinline__ void rlx_cp_async_wait() {
    static_assert(N >= 0, "cp.async.wait_group takes a count of groups >= 0");
#if RLX_SIMT
    ::rlx_simt::cp_async_wait(N);
#elif RLX_DEVICE_CODE
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#endif
}
__device__ __forceinline__ void rlx_cp_async_wait_all() {
#if RLX_SIMT
    ::rlx_simt::cp_async_commit();
    ::rlx_simt::cp_async_wait(0);
#elif RLX_DEVICE_CODE
    asm volatile("cp.async.wait_all;\n" ::: "memory");
#endif
}

#endif
