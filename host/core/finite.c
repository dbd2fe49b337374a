/* Counting non-finite values (NaN, ±infinity): the finite check of outputs (sessions, the CLI). */
#include "core/internal.h"

#include <math.h>

int64_t rlx__count_nonfinite(const float *x, int64_t rows, int64_t cols, int64_t *per_row) {
    int64_t total = 0;
    for (int64_t r = 0; r < rows; r++) {
        const float *row = x + r * cols;
        int64_t n = 0;
        for (int64_t c = 0; c < cols; c++) n += !isfinite(row[c]);
        if (per_row) per_row[r] = n;
        total += n;
    }
    return total;
}
