/* Internal: float32 .npy files (CLI outputs, test fixtures). */
#ifndef RLX_HOST_NPY_H
#define RLX_HOST_NPY_H

#include "core/internal.h"

rlx_status rlx__npy_write_f32(const char *path, const float *data, int ndim, const int64_t *shape);
/* Reads a float32 array; *data is malloc'd (caller frees). */
rlx_status rlx__npy_read_f32(const char *path, float **data, int *ndim, int64_t *shape, int max_dims);

#endif
