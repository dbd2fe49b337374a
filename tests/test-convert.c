/* Weight conversion (host/io/convert.h): every dtype pair, γ folding, stacked parts, 2-D slices
 * (tensor-parallel shards), any row range and any thread count give bitwise what the element
 * functions of dtype.c give (f32 of the source, times γ in f32, rounded once); and the bench's
 * random weights are the sequential splitmix stream whatever the thread count. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "io/convert.h"
#include "rlx/flow.h"

static uint64_t rng_state;
static uint32_t rnd(void) {
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 32);
}

/* Random f32 values with the awkward ones mixed in: NaN, ±Inf, ±0, subnormals, halfway ties of
 * bf16 and f16, values past the f16 range. */
static float awkward(void) {
    static const uint32_t special[] = {0x7fc00000u, 0xff800001u, 0x7f800000u, 0xff800000u, 0x00000000u, 0x80000000u,
                                       0x00000001u, 0x807fffffu, 0x3f808000u, 0x3f818000u, 0x477ff000u, 0xc7800000u,
                                       0x33000000u, 0x38800000u};
    const uint32_t r = rnd();
    uint32_t bits;
    if (r % 8 == 0) bits = special[rnd() % (sizeof special / sizeof special[0])];
    else {
        float x = ((float)(rnd() % 2000001) - 1000000.0f) / 65536.0f;
        memcpy(&bits, &x, 4);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static void *make_src(rlx_dtype dt, size_t n) {
    void *p = malloc(n * rlx_dtype_size(dt) + 1);
    cr_assert(p);
    for (size_t i = 0; i < n; i++) {
        const float x = awkward();
        if (dt == RLX_DTYPE_F32) ((float *)p)[i] = x;
        else if (dt == RLX_DTYPE_BF16) ((uint16_t *)p)[i] = rlx_f32_to_bf16(x);
        else ((uint16_t *)p)[i] = rlx_f32_to_f16(x);
    }
    return p;
}

/* The reference: element functions, one at a time. */
static uint32_t ref_bits(const void *src, rlx_dtype in, size_t i, const float *scale, int64_t col, rlx_dtype out) {
    float x;
    rlx_convert_to_f32(&x, (const unsigned char *)src + i * rlx_dtype_size(in), in, 1);
    if (scale) x *= scale[col];
    uint32_t b = 0;
    if (out == RLX_DTYPE_F32) memcpy(&b, &x, 4);
    else if (out == RLX_DTYPE_BF16) b = rlx_f32_to_bf16(x);
    else b = rlx_f32_to_f16(x);
    return b;
}

static uint32_t out_bits(const void *dst, rlx_dtype out, size_t i) {
    uint32_t b = 0;
    if (out == RLX_DTYPE_F32) memcpy(&b, (const float *)dst + i, 4);
    else b = ((const uint16_t *)dst)[i];
    return b;
}

/* Two-part stack with a 2-D slice in the second part, γ or not, checked over a chunked run. */
static void check_case(rlx_dtype in0, rlx_dtype in1, rlx_dtype out, int gamma, int threads, uint64_t seed) {
    rng_state = seed;
    const int64_t cols = 37, r0 = 19, r1 = 23, full_cols = 53, c0 = 9; /* part 1: rows x [c0, c0 + cols) of [r1, 53] */
    void *a = make_src(in0, (size_t)(r0 * cols));
    void *b = make_src(in1, (size_t)(r1 * full_cols));
    float g[37];
    for (int i = 0; i < cols; i++) g[i] = 0.5f + (float)(rnd() % 1000) / 500.0f;
    rlx__conv c;
    memset(&c, 0, sizeof c);
    c.out = out;
    rlx__conv_add(&c, a, in0, r0, cols);
    rlx__conv_add(&c, (const unsigned char *)b + (size_t)c0 * rlx_dtype_size(in1), in1, r1, cols);
    c.part[1].ld = full_cols;
    if (gamma) c.col_scale = g;
    cr_assert(rlx__conv_supported(&c));
    const int64_t rows = rlx__conv_rows(&c);
    cr_assert_eq(rows, r0 + r1);
    cr_assert_eq(rlx__conv_out_bytes(&c), (size_t)(rows * cols) * rlx_dtype_size(out));
    const size_t osz = rlx_dtype_size(out);
    unsigned char *dst = malloc((size_t)(rows * cols) * osz);
    memset(dst, 0xa5, (size_t)(rows * cols) * osz);
    /* chunks of 5 rows, as the loader's staging would cut them (a chunk crossing the parts) */
    for (int64_t r = 0; r < rows; r += 5) rlx__conv_run(&c, dst + (size_t)(r * cols) * osz, r, rows - r < 5 ? rows - r : 5, threads);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t k = 0; k < cols; k++) {
            const size_t i = (size_t)(r * cols + k);
            uint32_t want = r < r0 ? ref_bits(a, in0, (size_t)(r * cols + k), gamma ? g : NULL, k, out)
                                   : ref_bits(b, in1, (size_t)((r - r0) * full_cols + c0 + k), gamma ? g : NULL, k, out);
            cr_assert_eq(out_bits(dst, out, i), want, "%s+%s -> %s gamma %d threads %d: row %lld col %lld: %08x, expected %08x",
                         rlx_dtype_name(in0), rlx_dtype_name(in1), rlx_dtype_name(out), gamma, threads, (long long)r, (long long)k,
                         out_bits(dst, out, i), want);
        }
    free(a), free(b), free(dst);
}

Test(convert, every_dtype_pair_gamma_slices_and_chunks_match_the_element_functions) {
    const rlx_dtype dts[3] = {RLX_DTYPE_F32, RLX_DTYPE_BF16, RLX_DTYPE_F16};
    uint64_t seed = 1;
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            for (int o = 0; o < 3; o++)
                for (int gamma = 0; gamma < 2; gamma++, seed++) check_case(dts[i], dts[j], dts[o], gamma, (int)(seed % 3) + 1, seed);
}

/* Big enough that rlx__conv_run really splits over threads: the result may not depend on how. */
Test(convert, parallel_split_is_bitwise_the_serial_one) {
    rng_state = 7;
    const int64_t rows = 3001, cols = 257; /* 771k elements, past the parallel threshold */
    void *src = make_src(RLX_DTYPE_BF16, (size_t)(rows * cols));
    float *g = malloc((size_t)cols * sizeof *g);
    for (int64_t i = 0; i < cols; i++) g[i] = 0.25f + (float)i / 100.0f;
    for (int gamma = 0; gamma < 2; gamma++) {
        rlx__conv c;
        memset(&c, 0, sizeof c);
        c.out = RLX_DTYPE_BF16;
        rlx__conv_add(&c, src, RLX_DTYPE_BF16, rows, cols);
        if (gamma) c.col_scale = g;
        uint16_t *one = malloc((size_t)(rows * cols) * 2), *many = malloc((size_t)(rows * cols) * 2);
        rlx__conv_run(&c, one, 0, rows, 1);
        rlx__conv_run(&c, many, 0, rows, 7);
        cr_assert(!memcmp(one, many, (size_t)(rows * cols) * 2), "gamma %d: the split changed the result", gamma);
        if (!gamma) cr_assert(!memcmp(one, src, (size_t)(rows * cols) * 2), "a bf16 -> bf16 copy is not a copy");
        free(one), free(many);
    }
    free(src), free(g);
}

Test(convert, views_and_refusals) {
    uint16_t data[12] = {0};
    rlx_tensor_view v = {.name = "x", .dtype = RLX_DTYPE_BF16, .ndim = 1, .shape = {12}, .data = data, .nbytes = 24};
    rlx__conv c = rlx__conv_of_view(&v, RLX_DTYPE_F32);
    cr_expect_eq(rlx__conv_rows(&c), 12);
    cr_expect_eq(c.cols, 1);
    cr_expect_eq(rlx__conv_src_bytes(&c), 24);
    cr_expect_eq(rlx__conv_out_bytes(&c), 48);
    cr_expect(rlx__conv_supported(&c));
    v.ndim = 2, v.shape[0] = 3, v.shape[1] = 4;
    c = rlx__conv_of_view(&v, RLX_DTYPE_BF16);
    cr_expect_eq(rlx__conv_rows(&c), 3);
    cr_expect_eq(c.cols, 4);
    v.dtype = RLX_DTYPE_I64;
    c = rlx__conv_of_view(&v, RLX_DTYPE_BF16);
    cr_expect(!rlx__conv_supported(&c), "an I64 tensor cannot be converted to bf16");
    v.dtype = RLX_DTYPE_F32;
    c = rlx__conv_of_view(&v, RLX_DTYPE_I32);
    cr_expect(!rlx__conv_supported(&c), "I32 is no output dtype");
}

/* splitmix64 drawn one value after the other, as the generator did before it was parallel. */
static uint64_t mix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

Test(convert, random_weights_are_the_sequential_stream) {
    rlx_llama_config c;
    cr_assert_eq(rlx_llama_builtin_config("tiny", &c), RLX_OK);
    c.num_hidden_layers = 1;
    rlx_weights *w;
    cr_assert_eq(rlx_llama_random_weights(&c, 5, RLX_DTYPE_BF16, &w), RLX_OK);
    /* the stream runs embedding, then layer 0 in the generator's order: check the embedding
     * (parallel: 2048 x 256 > the threshold) and the first tensor after it */
    uint64_t st = 5 ^ 0x726c78u;
    rlx_tensor_view e, n;
    cr_assert(rlx_weights_has(w, "model.embed_tokens.weight", &e));
    cr_assert(rlx_weights_has(w, "model.layers.0.input_layernorm.weight", &n));
    const uint16_t *ev = e.data, *nv = n.data;
    const size_t ne = (size_t)(e.shape[0] * e.shape[1]);
    for (size_t i = 0; i < ne; i++) {
        const float v = (float)((double)(mix(&st) >> 11) * 0x1.0p-52 - 1.0);
        cr_assert_eq(ev[i], rlx_f32_to_bf16(0 + 1.0f * v), "embedding element %zu", i);
    }
    for (int64_t i = 0; i < n.shape[0]; i++) {
        const float v = (float)((double)(mix(&st) >> 11) * 0x1.0p-52 - 1.0);
        cr_assert_eq(nv[i], rlx_f32_to_bf16(1.0f + 0.1f * v), "input_layernorm element %lld", (long long)i);
    }
    rlx_weights_destroy(w);
}

/* A part with no data is rows of zeros (a shard's vocabulary padding): 0 · γ rounded, so a
 * negative γ gives −0 as a zero source would; it reads nothing. */
Test(convert, zero_rows_for_padding) {
    uint16_t a[2 * 3] = {0x3f80, 0x4000, 0xbf80, 0x3f80, 0x4000, 0xbf80}; /* bf16 1, 2, -1 */
    const float g[3] = {1.0f, -2.0f, 0.5f};
    for (int gamma = 0; gamma < 2; gamma++) {
        rlx__conv c;
        memset(&c, 0, sizeof c);
        c.out = RLX_DTYPE_BF16;
        rlx__conv_add(&c, a, RLX_DTYPE_BF16, 2, 3);
        rlx__conv_add(&c, NULL, RLX_DTYPE_BF16, 2, 3);
        if (gamma) c.col_scale = g;
        cr_assert(rlx__conv_supported(&c));
        cr_expect_eq(rlx__conv_src_bytes(&c), 12, "zero rows read nothing");
        uint16_t out[12];
        memset(out, 0xa5, sizeof out);
        rlx__conv_run(&c, out, 0, 4, 1);
        for (int i = 0; i < 12; i++) {
            const int r = i / 3, k = i % 3;
            float x = r < 2 ? rlx_bf16_to_f32(a[r * 3 + k]) : 0.0f;
            if (gamma) x *= g[k];
            cr_expect_eq(out[i], rlx_f32_to_bf16(x), "gamma %d element %d: %04x", gamma, i, out[i]);
        }
    }
}
