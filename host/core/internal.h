/* Internal declarations shared by the library's translation units (rlx__ prefix). */
#ifndef RLX_HOST_INTERNAL_H
#define RLX_HOST_INTERNAL_H

#include "rlx/rlx.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define RLX__PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define RLX__PRINTF(a, b)
#endif

/* Records a detailed message for this thread and returns status, so a failure reads
 * `return rlx__fail(RLX_ERR_FORMAT, "%s: tensor '%s': ...", path, name);` */
rlx_status rlx__fail(rlx_status status, const char *fmt, ...) RLX__PRINTF(2, 3);
/* Prepends context to the message already recorded: "<new>: <old>". */
rlx_status rlx__fail_prefix(rlx_status status, const char *fmt, ...) RLX__PRINTF(2, 3);

/* 1 when s is a value of rlx_status. A status that comes from user code (a custom stage, a layer
 * callback) is checked with it before rlx passes it on: an undefined value becomes
 * RLX_ERR_INTERNAL naming the callback. */
int rlx__status_known(rlx_status s);

/* Overflow-checked size arithmetic: return 0 on overflow, 1 on success. */
static inline int rlx__mul_size(size_t a, size_t b, size_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}
static inline int rlx__add_size(size_t a, size_t b, size_t *out) {
    return !__builtin_add_overflow(a, b, out);
}

/* Allocation helpers that record an out-of-memory message naming the bytes asked for. */
void *rlx__malloc(size_t bytes, const char *what);
void *rlx__calloc(size_t n, size_t size, const char *what);
char *rlx__strdup(const char *s);

/* Counts the NaN and ±infinity values of x [rows, cols] (row-major): the total, and per row into
 * per_row[rows] when it is non-NULL. */
int64_t rlx__count_nonfinite(const float *x, int64_t rows, int64_t cols, int64_t *per_row);

/* Runs fn(i, ctx) for i in [0, n) on up to `threads` threads (0 = cores). */
void rlx__parallel_for(int64_t n, int threads, void (*fn)(int64_t begin, int64_t end, void *ctx),
                       void *ctx);
int rlx__cpu_count(void);

/* Progress of a model build's weight preparation, reported in checkpoint bytes through
 * rlx_build_params.progress (NULL fn: nothing is reported; a NULL progress pointer is fine too).
 * Called on the building thread only. */
typedef struct rlx__load_progress {
    void (*fn)(void *user, uint64_t done_bytes, uint64_t total_bytes);
    void *user;
    uint64_t done, total;
} rlx__load_progress;
void rlx__load_progress_begin(rlx__load_progress *p, uint64_t total_bytes);
void rlx__load_progress_add(rlx__load_progress *p, uint64_t bytes);

#ifdef __cplusplus
}
#endif

#endif
