/* rlx run's top-k (host/tools/topk.c): a strict weak order whatever the row holds — NaN below
 * every number, infinities in place, ties by id — checked against a brute-force selection. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

#include "tools/topk.h"
#include "testutil.h"

/* x ranks above y: numbers by value (NaN lowest), then the lower id */
static int above(const float *row, int64_t x, int64_t y) {
    const int xn = isnan(row[x]), yn = isnan(row[y]);
    if (xn != yn) return yn;
    if (!xn && row[x] != row[y]) return row[x] > row[y];
    return x < y;
}

static void expect_top_k(const float *row, int64_t n, int64_t k, const char *what) {
    int64_t ids[64];
    cr_assert_eq(rlx__top_k(row, n, k, ids), RLX_OK);
    int taken[256] = {0};
    for (int64_t i = 0; i < k && i < n; i++) {
        /* the best of what is left */
        int64_t best = -1;
        for (int64_t j = 0; j < n; j++)
            if (!taken[j] && (best < 0 || above(row, j, best))) best = j;
        cr_expect_eq(ids[i], best, "%s: rank %lld is id %lld, expected %lld", what, (long long)i, (long long)ids[i], (long long)best);
        taken[best] = 1;
    }
}

Test(topk, nan_infinities_and_ties) {
    const float a[8] = {NAN, 1, NAN, -INFINITY, 3, 3, INFINITY, NAN};
    expect_top_k(a, 8, 8, "mixed");
    expect_top_k(a, 8, 3, "mixed, k 3");
    const float all_nan[5] = {NAN, NAN, NAN, NAN, NAN};
    expect_top_k(all_nan, 5, 5, "all NaN");
    const float one[1] = {2};
    expect_top_k(one, 1, 5, "k beyond n");
    /* a long row mostly NaN: qsort with a broken order returned ids 0, 1, 2, ... here */
    float row[256];
    rlxt_rng r = {9};
    for (int i = 0; i < 256; i++) row[i] = (i % 3) ? NAN : rlxt_uniform(&r);
    row[200] = 50;
    expect_top_k(row, 256, 10, "mostly NaN");
    int64_t ids[1];
    cr_assert_eq(rlx__top_k(row, 256, 1, ids), RLX_OK);
    cr_expect_eq(ids[0], 200);
}
