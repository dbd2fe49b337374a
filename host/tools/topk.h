/* Internal: the k largest logits of a row (rlx run's top-k), shared by the CLI and the tests. */
#ifndef RLX_HOST_TOPK_H
#define RLX_HOST_TOPK_H

#include <stdint.h>

#include "core/internal.h"

/* Writes the ids of the min(k, n) largest values of row[0..n) to ids, largest first; equal
 * values by increasing id. A NaN orders below every number (−inf included), so the order is a
 * strict weak order whatever the row holds. RLX_ERR_OUT_OF_MEMORY is the only failure. */
rlx_status rlx__top_k(const float *row, int64_t n, int64_t k, int64_t *ids);

#endif
