/* Internal: the safetensors file format (parse, validate, write). Used by weights.c.
 *
 * Layout: u64 little-endian header length N, N bytes of UTF-8 JSON, then the data section.
 * The JSON maps tensor names to {dtype, shape, data_offsets}; offsets are relative to the data
 * section, and the tensors sorted by offset tile it exactly (no gap, no overlap, no tail).
 */
#ifndef RLX_HOST_SAFETENSORS_H
#define RLX_HOST_SAFETENSORS_H

#include "rlx/weights.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The reference implementation's cap on N; a larger header is refused before parsing. */
#define RLX__ST_MAX_HEADER 100000000u

typedef struct rlx__st_tensor {
    char *name;                   /* owned */
    rlx_dtype dtype;              /* F32, F16 or BF16 */
    int ndim;
    int64_t shape[RLX_MAX_DIMS];
    size_t begin, end;            /* byte range inside the data section */
} rlx__st_tensor;

typedef struct rlx__st_file {
    char *path;                   /* owned copy of the path it was opened from */
    const unsigned char *map;     /* read-only mapping of the whole file, or its copy (owned) */
    int owned;                    /* 1: map is a malloc'd copy (read into memory) */
    int fd;                       /* mapped files: the open descriptor (rlx__st_check_intact) */
    size_t size;                  /* file length in bytes */
    size_t data_start;            /* 8 + N */
    rlx__st_tensor *tensors;      /* sorted by name (strcmp) */
    size_t count;
} rlx__st_file;

/* Validates a whole file image buf[0..len) as the reference implementation does and returns
 * its tensors sorted by name. path only names the file in error messages. On failure nothing is
 * returned and the message names path, tensor/key and the rule broken. */
rlx_status rlx__st_parse(const char *path, const unsigned char *buf, size_t len,
                         rlx__st_tensor **tensors, size_t *count, size_t *data_start);

/* mmaps path read-only and parses it. On failure *f is left zeroed. */
rlx_status rlx__st_open(const char *path, rlx__st_file *f);
/* Same, or with read_into_memory the whole file is read into a buffer of its own (nothing done to
 * the file afterwards can reach the tensors). */
rlx_status rlx__st_open_ex(const char *path, int read_into_memory, rlx__st_file *f);
/* A mapped file still has the size it was opened with (RLX_ERR_IO naming it and both sizes if
 * it shrank: reading the mapping past the new end would raise SIGBUS). Copies always pass. */
rlx_status rlx__st_check_intact(const rlx__st_file *f);

/* Every mapped file of w is intact (rlx__st_check_intact): called before tensor data is read
 * (rlx_model_build, rlx_weights_save_file, rlx_weights_check_finite). */
rlx_status rlx__weights_check_intact(const rlx_weights *w);
/* Unmaps and frees; a zeroed file is fine. */
void rlx__st_close(rlx__st_file *f);
void rlx__st_free_tensors(rlx__st_tensor *t, size_t n);

/* Writes views[0..n) (names unique) as one safetensors file: header keys sorted, header padded
 * with spaces so the data starts at a multiple of 8, data ordered by decreasing element size and
 * then by name so every tensor is aligned to its element size (what the reference writer does).
 * Written to a temporary file in the same directory and renamed over path, so a failure leaves
 * no half-written file and a mapping of the old file stays valid. */
rlx_status rlx__st_write(const char *path, const rlx_tensor_view *views, size_t n);

#ifdef __cplusplus
}
#endif

#endif
