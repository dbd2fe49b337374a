/* CPU reference primitives against values computed by hand (or by an independent formula). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

#include "model/stages.h"
#include "runtime/cpu_ref.h"
#include "testutil.h"

Test(cpu_ref, rms_norm_by_hand) {
    /* row [3, 4]: mean(x²) = 12.5; with eps 0.5 → 1/sqrt(13) */
    float x[4] = {3, 4, -1, 1}, g[2] = {2, 0.5f}, y[4];
    rlx__ref_rms_norm(y, x, g, 2, 2, 0.5);
    double s0 = 1 / sqrt(13.0), s1 = 1 / sqrt(1.5);
    cr_expect_float_eq(y[0], (float)(2 * 3 * s0), 1e-6);
    cr_expect_float_eq(y[1], (float)(0.5 * 4 * s0), 1e-6);
    cr_expect_float_eq(y[2], (float)(2 * -1 * s1), 1e-6);
    cr_expect_float_eq(y[3], (float)(0.5 * 1 * s1), 1e-6);
}

Test(cpu_ref, linear_by_hand) {
    /* x [2,3], W [2,3] (out, in), b [2] */
    float x[6] = {1, 2, 3, -1, 0, 1}, w[6] = {1, 0, -1, 2, 1, 0}, b[2] = {0.5f, -1}, y[4];
    rlx__ref_linear(y, x, w, b, 2, 3, 2, 1);
    cr_expect_float_eq(y[0], 1 - 3 + 0.5f, 1e-6);
    cr_expect_float_eq(y[1], 2 + 2 - 1, 1e-6);
    cr_expect_float_eq(y[2], -1 - 1 + 0.5f, 1e-6);
    cr_expect_float_eq(y[3], -2 - 1, 1e-6);
    rlx__ref_linear(y, x, w, NULL, 2, 3, 2, 4);
    cr_expect_float_eq(y[0], -2, 1e-6);
}

Test(cpu_ref, linear_threads_agree) {
    rlxt_rng r = {11};
    int64_t M = 37, K = 129, N = 301;
    float *x = malloc(sizeof(float) * (size_t)(M * K)), *w = malloc(sizeof(float) * (size_t)(N * K));
    float *y1 = malloc(sizeof(float) * (size_t)(M * N)), *y4 = malloc(sizeof(float) * (size_t)(M * N));
    rlxt_fill(&r, x, (size_t)(M * K), 1);
    rlxt_fill(&r, w, (size_t)(N * K), 1);
    rlx__ref_linear(y1, x, w, NULL, M, K, N, 1);
    rlx__ref_linear(y4, x, w, NULL, M, K, N, 4);
    cr_expect_eq(rlxt_max_abs_diff(y1, y4, (size_t)(M * N)), 0.0);
    free(x), free(w), free(y1), free(y4);
}

Test(cpu_ref, rope_tables_plain) {
    rlx_rope_params p = {.head_dim = 4, .max_positions = 3, .theta = 100.0};
    float c[6], s[6];
    rlx__ref_rope_tables(c, s, &p);
    /* inv_freq = [1, 100^-0.5 = 0.1] */
    cr_expect_float_eq(c[0], 1.0f, 1e-7);
    cr_expect_float_eq(s[2], (float)sin(1.0), 1e-7);
    cr_expect_float_eq(s[3], (float)sin(0.1), 1e-7);
    cr_expect_float_eq(c[5], (float)cos(0.2), 1e-7);
}

Test(cpu_ref, rope_tables_llama3_bands) {
    /* head_dim 8, theta 10000: inv_freq 1, 0.1, 0.01, 0.001 (wavelengths 6.3, 63, 628, 6283).
     * orig 1000, low 1, high 4 → keep below 250, divide above 1000, interpolate between:
     * kept, kept, interpolated, divided. */
    rlx_rope_params p = {.head_dim = 8, .max_positions = 2, .theta = 10000.0, .scaling = RLX_ROPE_SCALING_LLAMA3,
                         .factor = 8, .low_freq_factor = 1, .high_freq_factor = 4, .original_max_positions = 1000};
    float c[8], s[8];
    rlx__ref_rope_tables(c, s, &p);
    double pi = 3.14159265358979323846;
    double f2 = 0.01, wl = 2 * pi / f2, sm = (1000 / wl - 1) / 3.0;
    double want[4] = {1.0, 0.1, (1 - sm) * f2 / 8 + sm * f2, 0.001 / 8};
    for (int i = 0; i < 4; i++) cr_expect_float_eq(s[4 + i], (float)sin(want[i]), 1e-7, "band %d", i);
}

Test(cpu_ref, rope_rotates_half_pairs) {
    /* one head of dim 4 at position 1 with angles a0, a1: o[i] = x[i]cos - x[i+2]sin */
    float cos_t[4] = {1, 1, 0.6f, 0.8f}, sin_t[4] = {0, 0, 0.8f, 0.6f};
    float x[4] = {1, 2, 3, 4}, y[4];
    int64_t pos = 1;
    rlx__ref_rope(y, x, cos_t, sin_t, &pos, 1, 1, 4);
    cr_expect_float_eq(y[0], 1 * 0.6f - 3 * 0.8f, 1e-6);
    cr_expect_float_eq(y[1], 2 * 0.8f - 4 * 0.6f, 1e-6);
    cr_expect_float_eq(y[2], 3 * 0.6f + 1 * 0.8f, 1e-6);
    cr_expect_float_eq(y[3], 4 * 0.8f + 2 * 0.6f, 1e-6);
}

Test(cpu_ref, attention_causal_gqa_by_hand) {
    /* 2 query heads sharing 1 kv head, head_dim 1, one sequence of 2 tokens. */
    float q[4] = {1, 2, /* t1 */ 0.5f, -1}, k[2] = {1, 3}, v[2] = {10, 20}, o[4];
    int64_t start[2] = {0, 2};
    rlx__batch b = {.tokens = NULL, .n_tokens = 2, .seq_start = start, .n_seqs = 1};
    rlx__ref_attention(o, q, k, v, &b, 2, 1, 1, 1, 1);
    /* t0 sees only key 0 */
    cr_expect_float_eq(o[0], 10, 1e-5);
    cr_expect_float_eq(o[1], 10, 1e-5);
    /* t1 head 0: scores 0.5*1, 0.5*3 → softmax weights */
    double w0 = exp(0.5) / (exp(0.5) + exp(1.5));
    cr_expect_float_eq(o[2], (float)(w0 * 10 + (1 - w0) * 20), 1e-5);
    double w1 = exp(-1.0) / (exp(-1.0) + exp(-3.0));
    cr_expect_float_eq(o[3], (float)(w1 * 10 + (1 - w1) * 20), 1e-5);
}

Test(cpu_ref, attention_sequences_do_not_mix) {
    /* Two sequences of one token each: each sees only itself. */
    float q[2] = {1, 1}, k[2] = {1, 1}, v[2] = {3, 7}, o[2];
    int64_t start[3] = {0, 1, 2};
    rlx__batch b = {.tokens = NULL, .n_tokens = 2, .seq_start = start, .n_seqs = 2};
    rlx__ref_attention(o, q, k, v, &b, 1, 1, 1, 1, 1);
    cr_expect_float_eq(o[0], 3, 1e-6);
    cr_expect_float_eq(o[1], 7, 1e-6);
    /* non-causal over one sequence of two: both see both */
    int64_t one[2] = {0, 2};
    rlx__batch b2 = {.tokens = NULL, .n_tokens = 2, .seq_start = one, .n_seqs = 1};
    rlx__ref_attention(o, q, k, v, &b2, 1, 1, 1, 0, 1);
    cr_expect_float_eq(o[0], 5, 1e-6);
    cr_expect_float_eq(o[1], 5, 1e-6);
}

Test(cpu_ref, silu_mul_and_add) {
    float g[3] = {0, 1, -2}, u[3] = {5, 2, 3}, y[3];
    rlx__ref_silu_mul(y, g, u, 3);
    cr_expect_float_eq(y[0], 0, 1e-7);
    cr_expect_float_eq(y[1], (float)(2 / (1 + exp(-1.0))), 1e-6);
    cr_expect_float_eq(y[2], (float)(3 * -2 / (1 + exp(2.0))), 1e-6);
    rlx__ref_add(y, g, u, 3);
    cr_expect_float_eq(y[2], 1, 1e-7);
}

static int64_t sum;
static void count_part(int64_t b, int64_t e, void *ctx) {
    (void)ctx;
    __atomic_add_fetch(&sum, e - b, __ATOMIC_RELAXED);
}

Test(cpu_ref, parallel_for_covers_range) {
    for (int t = 1; t <= 8; t++) {
        sum = 0;
        rlx__parallel_for(1001, t, count_part, NULL);
        cr_expect_eq(sum, 1001, "threads %d", t);
    }
}
