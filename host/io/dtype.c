/* Element conversions between f32 and the 16-bit float formats checkpoints use.
 *
 * Both narrowings round to nearest, ties to even, as PyTorch and CUDA's __float2bfloat16_rn /
 * __float2half_rn do, so weights rounded here match weights rounded by the frameworks bit for
 * bit. NaN stays NaN (made quiet, sign kept), infinities stay infinite, values past the largest
 * finite number round to infinity, and f16 subnormals are produced and read exactly.
 */
#include "core/internal.h"
#include "rlx/weights.h"

#include <math.h>
#include <string.h>

static uint32_t f32_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static float bits_f32(uint32_t u) {
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

// ---- bf16: the top half of an f32 ----------------------------------------------------------

uint16_t rlx_f32_to_bf16(float x) {
    uint32_t u = f32_bits(x);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x0040u); /* quiet NaN; truncation could make it Inf */
    /* Adding 0x7fff plus the lowest kept bit rounds half to even; a carry out of the mantissa
     * correctly bumps the exponent, up to Inf for the largest values. */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float rlx_bf16_to_f32(uint16_t x) { return bits_f32((uint32_t)x << 16); }

// ---- f16: 1 sign, 5 exponent (bias 15), 10 mantissa bits -----------------------------------

uint16_t rlx_f32_to_f16(float x) {
    uint32_t u = f32_bits(x);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    u &= 0x7fffffffu;
    if (u > 0x7f800000u) /* NaN: keep the top payload bits, force quiet so it cannot become Inf */
        return (uint16_t)(sign | 0x7e00u | ((u >> 13) & 0x3ffu));
    /* 65520 is halfway between 65504 (max, odd mantissa) and 65536: ties-to-even goes up. */
    if (u >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);
    if (u >= 0x38800000u) { /* normal in f16: >= 2^-14 */
        uint32_t r = u - 0x38000000u; /* rebias exponent 127 -> 15 */
        r += 0xfffu + ((r >> 13) & 1u);
        return (uint16_t)(sign | (r >> 13));
    }
    /* Subnormal f16: multiples of 2^-24. Below 2^-25 everything rounds to zero, and exactly 2^-25
     * is a tie that goes to the even neighbour, zero. */
    if (u < 0x33000000u) return sign;
    uint32_t e = u >> 23;                     /* 102..112 */
    uint32_t m = (u & 0x7fffffu) | 0x800000u; /* value = m * 2^(e-150) = m * 2^(e-126) units */
    uint32_t shift = 126u - e;                /* 14..24 */
    uint32_t h = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (h & 1u))) h++; /* may carry into the smallest normal */
    return (uint16_t)(sign | h);
}

float rlx_f16_to_f32(uint16_t x) {
    uint32_t sign = (uint32_t)(x & 0x8000u) << 16;
    uint32_t e = (x >> 10) & 0x1fu, m = x & 0x3ffu;
    if (e == 0) {
        float v = (float)m * 0x1p-24f; /* exact: m < 2^10 */
        return sign ? -v : v;
    }
    if (e == 31) return bits_f32(sign | 0x7f800000u | (m << 13));
    return bits_f32(sign | ((e + 112u) << 23) | (m << 13));
}

// ---- bulk ----------------------------------------------------------------------------------

void rlx_convert_to_f32(float *dst, const void *src, rlx_dtype dtype, size_t n) {
    /* memcpy per element: src may be an unaligned view into a mapped file. */
    const unsigned char *p = src;
    if (!dst || !src) return; /* no status to return: NULL buffers convert nothing */
    switch (dtype) {
    case RLX_DTYPE_F32:
        if (n) memmove(dst, src, n * sizeof(float));
        return;
    case RLX_DTYPE_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = rlx_bf16_to_f32(h);
        }
        return;
    case RLX_DTYPE_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = rlx_f16_to_f32(h);
        }
        return;
    case RLX_DTYPE_I32:
        for (size_t i = 0; i < n; i++) {
            int32_t v;
            memcpy(&v, p + 4 * i, 4);
            dst[i] = (float)v;
        }
        return;
    default: break; /* types rlx only holds (I64, BOOL, …): the build never converts them */
    }
    /* No status to return: make a bad dtype impossible to miss rather than silently zero. */
    for (size_t i = 0; i < n; i++) dst[i] = NAN;
}
