/* Internal additions to the rlx_weights API (rlx/weights.h) for the library's own callers. */
#ifndef RLX_HOST_IO_WEIGHTS_INTERNAL_H
#define RLX_HOST_IO_WEIGHTS_INTERNAL_H

#include "rlx/weights.h"

#ifdef __cplusplus
extern "C" {
#endif

/* rlx_weights_add without the copy: the set takes data (malloc'd, nbytes of the shape and dtype)
 * and frees it with itself; on failure data is freed here. For generators of large in-memory sets
 * (the bench's random weights), where a copy of every tensor would double the peak memory. */
rlx_status rlx__weights_add_owned(rlx_weights *w, const char *name, rlx_dtype dtype, int ndim,
                                  const int64_t *shape, void *data);

#ifdef __cplusplus
}
#endif

#endif
