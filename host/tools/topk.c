/* The k largest logits of a row. qsort needs a strict weak order: with `<` alone a NaN compares
 * neither below nor above anything, and the sort may return ids 0, 1, 2, … unsorted. */
#include "tools/topk.h"

#include <math.h>
#include <stdlib.h>

typedef struct idx_val {
    int64_t id;
    float v;
} idx_val;

/* Largest first; NaN last; ties by id. */
static int by_value_desc(const void *a, const void *b) {
    const idx_val *x = a, *y = b;
    const int xn = isnan(x->v), yn = isnan(y->v);
    if (xn != yn) return xn - yn;
    if (!xn && x->v != y->v) return x->v < y->v ? 1 : -1;
    return x->id < y->id ? -1 : x->id > y->id;
}

rlx_status rlx__top_k(const float *row, int64_t n, int64_t k, int64_t *ids) {
    if (n <= 0 || k <= 0) return RLX_OK;
    idx_val *all = rlx__malloc((size_t)n * sizeof *all, "the top-k sort");
    if (!all) return RLX_ERR_OUT_OF_MEMORY;
    for (int64_t i = 0; i < n; i++) all[i] = (idx_val){i, row[i]};
    qsort(all, (size_t)n, sizeof *all, by_value_desc);
    for (int64_t i = 0; i < k && i < n; i++) ids[i] = all[i].id;
    free(all);
    return RLX_OK;
}
