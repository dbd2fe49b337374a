/* f32 <-> bf16 / f16: round to nearest even, specials, subnormals, and exhaustive checks at every
 * rounding boundary of both formats. The exhaustive loops only call Criterion on a mismatch:
 * every passing assertion is an IPC message to the runner, and there are millions of checks. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "rlx/weights.h"

static float f32_from(uint32_t u) {
    float x;
    memcpy(&x, &u, 4);
    return x;
}

static uint32_t bits_of(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

#define EXPECT_BF16(in_bits, want)                                                            \
    do {                                                                                      \
        uint16_t got_ = rlx_f32_to_bf16(f32_from(in_bits));                                   \
        if (got_ != (uint16_t)(want))                                                         \
            cr_expect(0, "bf16(0x%08x) = 0x%04x, want 0x%04x", (unsigned)(in_bits), got_,    \
                      (unsigned)(want));                                                      \
    } while (0)

#define EXPECT_F16(x, want)                                                                   \
    do {                                                                                      \
        float in_ = (x);                                                                      \
        uint16_t got_ = rlx_f32_to_f16(in_);                                                  \
        if (got_ != (uint16_t)(want))                                                         \
            cr_expect(0, "f16(%a) = 0x%04x, want 0x%04x", (double)in_, got_, (unsigned)(want)); \
    } while (0)

// ---- bf16 ------------------------------------------------------------------------------------

Test(dtype, bf16_hand_values) {
    EXPECT_BF16(0x3f800000u, 0x3f80); /* 1 */
    EXPECT_BF16(0xc0000000u, 0xc000); /* -2 */
    EXPECT_BF16(0x00000000u, 0x0000);
    EXPECT_BF16(0x80000000u, 0x8000); /* -0 keeps its sign */
    /* ties: exactly half an ulp goes to the even neighbour */
    EXPECT_BF16(0x3f808000u, 0x3f80); /* 1 + 2^-8: tie, 0x3f80 even */
    EXPECT_BF16(0x3f818000u, 0x3f82); /* tie, 0x3f81 odd -> up */
    EXPECT_BF16(0x3f808001u, 0x3f81); /* just above the tie */
    EXPECT_BF16(0x3f807fffu, 0x3f80); /* just below */
    EXPECT_BF16(0xbf818000u, 0xbf82); /* negative ties mirror */
    /* specials */
    EXPECT_BF16(0x7f800000u, 0x7f80);
    EXPECT_BF16(0xff800000u, 0xff80);
    EXPECT_BF16(0x7f7fffffu, 0x7f80); /* FLT_MAX rounds up to inf, as in PyTorch */
    EXPECT_BF16(0x7f7f7fffu, 0x7f7f); /* largest value that stays finite */
    EXPECT_BF16(0x7f7f8000u, 0x7f80); /* tie at the top, odd -> inf */
    /* subnormals round like everything else */
    EXPECT_BF16(0x00000001u, 0x0000);
    EXPECT_BF16(0x00008000u, 0x0000); /* tie, even */
    EXPECT_BF16(0x00018000u, 0x0002); /* tie, odd -> up */
    EXPECT_BF16(0x807fffffu, 0x8080); /* largest negative subnormal rounds to -FLT_MIN */
}

Test(dtype, bf16_nan_stays_nan) {
    const uint32_t nans[] = {0x7fc00000u, 0xffc00000u, 0x7f800001u, 0x7f80ffffu, 0xff800001u, 0x7fffffffu};
    for (size_t i = 0; i < sizeof nans / sizeof nans[0]; i++) {
        uint16_t h = rlx_f32_to_bf16(f32_from(nans[i]));
        /* A signalling NaN with only low payload bits would truncate to Inf: must not. */
        cr_expect((h & 0x7f80) == 0x7f80 && (h & 0x7f), "bf16 of NaN 0x%08x is 0x%04x", nans[i], h);
        cr_expect_eq(h & 0x8000, (nans[i] >> 16) & 0x8000, "sign of NaN 0x%08x", nans[i]);
        cr_expect(isnan(rlx_bf16_to_f32(h)));
    }
}

Test(dtype, bf16_widening_is_exact_and_round_trips) {
    for (uint32_t h = 0; h <= 0xffff; h++) {
        float x = rlx_bf16_to_f32((uint16_t)h);
        if (bits_of(x) != h << 16) cr_assert(0, "bf16 0x%04x widened to 0x%08x", h, bits_of(x));
        if (!isnan(x) && rlx_f32_to_bf16(x) != h) cr_assert(0, "0x%04x does not round-trip", h);
    }
}

/* At the midpoint between every pair of adjacent bf16 values (exact in f32), the tie goes to the
 * even one, and one f32 ulp either side goes to the nearer one. */
Test(dtype, bf16_every_rounding_boundary) {
    for (uint32_t h = 0; h < 0x7f7f; h++) {
        for (int sign = 0; sign < 2; sign++) {
            uint32_t s = sign ? 0x80000000u : 0;
            uint32_t lo = (h << 16) | s, mid = lo + 0x8000u;
            uint16_t even = (uint16_t)((h & 1 ? h + 1 : h) | (s >> 16));
            EXPECT_BF16(mid, even);
            EXPECT_BF16(mid - 1, (uint16_t)(h | (s >> 16)));
            EXPECT_BF16(mid + 1, (uint16_t)((h + 1) | (s >> 16)));
        }
    }
}

// ---- f16 -------------------------------------------------------------------------------------

Test(dtype, f16_hand_values) {
    EXPECT_F16(1.0f, 0x3c00);
    EXPECT_F16(-2.0f, 0xc000);
    EXPECT_F16(0.0f, 0x0000);
    EXPECT_F16(-0.0f, 0x8000);
    EXPECT_F16(0.5f, 0x3800);
    EXPECT_F16(0.1f, 0x2e66); /* 0x2e66 is the nearest, as numpy gives */
    /* ties at 1: ulp 2^-10 */
    EXPECT_F16(1.0f + 0x1p-11f, 0x3c00);        /* tie, even */
    EXPECT_F16(1.0f + 3 * 0x1p-11f, 0x3c02);    /* tie, odd -> up */
    EXPECT_F16(nextafterf(1.0f + 0x1p-11f, 2.0f), 0x3c01);
    /* the top of the range */
    EXPECT_F16(65504.0f, 0x7bff);
    EXPECT_F16(65519.996f, 0x7bff);
    EXPECT_F16(65520.0f, 0x7c00); /* tie between 65504 (odd) and 65536 -> inf */
    EXPECT_F16(-65520.0f, 0xfc00);
    EXPECT_F16(1e10f, 0x7c00);
    EXPECT_F16(INFINITY, 0x7c00);
    EXPECT_F16(-INFINITY, 0xfc00);
    /* subnormals: multiples of 2^-24 */
    EXPECT_F16(0x1p-24f, 0x0001);
    EXPECT_F16(0x1p-25f, 0x0000);                       /* tie with 0, even */
    EXPECT_F16(nextafterf(0x1p-25f, 1.0f), 0x0001);
    EXPECT_F16(3 * 0x1p-25f, 0x0002);                   /* tie between 1 and 2 -> 2 */
    EXPECT_F16(5 * 0x1p-25f, 0x0002);                   /* tie between 2 and 3 -> 2 */
    EXPECT_F16(1023 * 0x1p-24f, 0x03ff);                /* largest subnormal */
    EXPECT_F16(0x1p-14f - 0x1p-25f, 0x0400);            /* tie into the smallest normal */
    EXPECT_F16(0x1p-14f, 0x0400);
    EXPECT_F16(-0x1p-24f, 0x8001);
    EXPECT_F16(1e-8f, 0x0000);
    EXPECT_F16(-1e-8f, 0x8000);
    EXPECT_F16(f32_from(0x00000001u), 0x0000); /* f32 subnormal */
}

Test(dtype, f16_nan_stays_nan) {
    const uint32_t nans[] = {0x7fc00000u, 0xffc00000u, 0x7f800001u, 0x7f801fffu, 0x7fffffffu};
    for (size_t i = 0; i < sizeof nans / sizeof nans[0]; i++) {
        uint16_t h = rlx_f32_to_f16(f32_from(nans[i]));
        cr_expect((h & 0x7c00) == 0x7c00 && (h & 0x3ff), "f16 of NaN 0x%08x is 0x%04x", nans[i], h);
        cr_expect_eq(h & 0x8000, (nans[i] >> 16) & 0x8000);
        cr_expect(isnan(rlx_f16_to_f32(h)));
    }
}

Test(dtype, f16_widening_is_exact_and_round_trips) {
    for (uint32_t h = 0; h <= 0xffff; h++) {
        float x = rlx_f16_to_f32((uint16_t)h);
        uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff;
        double want = e == 0    ? ldexp((double)m, -24)
                      : e == 31 ? (m ? NAN : INFINITY)
                                : ldexp(1024.0 + m, (int)e - 25);
        if (h & 0x8000) want = -want;
        if (isnan(want)) {
            if (!isnan(x)) cr_assert(0, "0x%04x is a NaN, got %a", h, (double)x);
            continue;
        }
        if ((double)x != want || (signbit(x) != 0) != ((h & 0x8000) != 0))
            cr_assert(0, "f16 0x%04x -> %a, want %a", h, (double)x, want);
        if (rlx_f32_to_f16(x) != h) cr_assert(0, "0x%04x does not round-trip", h);
    }
}

Test(dtype, f16_every_rounding_boundary) {
    for (uint32_t h = 0; h < 0x7c00; h++) {
        double lo = (double)rlx_f16_to_f32((uint16_t)h);
        double hi = h == 0x7bff ? 65536.0 : (double)rlx_f16_to_f32((uint16_t)(h + 1));
        float mid = (float)((lo + hi) / 2); /* exact: 12 significant bits at most */
        if ((double)mid != (lo + hi) / 2) cr_assert(0, "midpoint above 0x%04x not exact", h);
        for (int sign = 0; sign < 2; sign++) {
            float m = sign ? -mid : mid;
            uint16_t s = sign ? 0x8000 : 0;
            EXPECT_F16(m, (uint16_t)((h & 1 ? h + 1 : h) | s));
            EXPECT_F16(nextafterf(m, 0.0f), (uint16_t)(h | s));
            EXPECT_F16(nextafterf(m, sign ? -INFINITY : INFINITY), (uint16_t)((h + 1) | s));
        }
    }
}

// ---- bulk ------------------------------------------------------------------------------------

Test(dtype, convert_to_f32_reads_unaligned_sources) {
    const float vals[5] = {1.0f, -0.5f, 65504.0f, 0x1p-24f, -3.25f};
    unsigned char raw[1 + 5 * 4];
    float out[5];

    uint16_t h[5], b[5];
    for (int i = 0; i < 5; i++) {
        h[i] = rlx_f32_to_f16(vals[i]);
        b[i] = rlx_f32_to_bf16(vals[i]);
    }
    memcpy(raw + 1, h, sizeof h);
    rlx_convert_to_f32(out, raw + 1, RLX_DTYPE_F16, 5);
    for (int i = 0; i < 5; i++) cr_expect_eq(out[i], vals[i], "f16 %d", i);

    memcpy(raw + 1, b, sizeof b);
    rlx_convert_to_f32(out, raw + 1, RLX_DTYPE_BF16, 5);
    for (int i = 0; i < 5; i++) cr_expect_eq(out[i], rlx_bf16_to_f32(b[i]), "bf16 %d", i);
    cr_expect_eq(out[4], -3.25f);

    memcpy(raw + 1, vals, sizeof vals);
    rlx_convert_to_f32(out, raw + 1, RLX_DTYPE_F32, 5);
    for (int i = 0; i < 5; i++) cr_expect_eq(out[i], vals[i], "f32 %d", i);

    const int32_t ints[3] = {-7, 0, 1 << 20};
    memcpy(raw + 1, ints, sizeof ints);
    rlx_convert_to_f32(out, raw + 1, RLX_DTYPE_I32, 3);
    cr_expect_eq(out[0], -7.0f);
    cr_expect_eq(out[2], 1048576.0f);

    /* An invalid dtype cannot return an error; it must at least not look like data. */
    rlx_convert_to_f32(out, raw + 1, (rlx_dtype)42, 2);
    cr_expect(isnan(out[0]) && isnan(out[1]));
    rlx_convert_to_f32(out, NULL, RLX_DTYPE_F32, 0);
}
