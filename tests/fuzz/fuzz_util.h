/* Helpers shared by the fuzz targets (tests/fuzz/fuzz-*.c). A broken invariant is a crash
 * libFuzzer reports with the input that caused it: FUZZ_CHECK traps. */
#ifndef RLX_FUZZ_UTIL_H
#define RLX_FUZZ_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: fuzz invariant failed: %s\n", __FILE__, __LINE__, #cond);      \
            __builtin_trap();                                                                      \
        }                                                                                          \
    } while (0)

/* A copy of the input with a NUL after it, for APIs that take C strings (the input may hold
 * NULs of its own: the API then sees a prefix). */
static inline char *fuzz_cstr(const uint8_t *data, size_t size) {
    char *s = malloc(size + 1);
    FUZZ_CHECK(s != NULL);
    if (size) memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

/* A scratch directory for the whole run (under TMPDIR, else /tmp), made on first use. It is
 * left behind when the process ends: libFuzzer exits from many places. */
static inline const char *fuzz_tmpdir(void) {
    static char dir[512];
    if (!dir[0]) {
        const char *base = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/rlx-fuzz-XXXXXX", base && *base ? base : "/tmp");
        FUZZ_CHECK(mkdtemp(dir) != NULL);
    }
    return dir;
}

/* Writes size bytes to path (a scratch file). */
static inline void fuzz_write(const char *path, const void *data, size_t size) {
    FILE *f = fopen(path, "wb");
    FUZZ_CHECK(f != NULL);
    FUZZ_CHECK(size == 0 || fwrite(data, 1, size, f) == size);
    FUZZ_CHECK(fclose(f) == 0);
}

/* Every failure leaves a message: a failing call without one is a bug. */
#define FUZZ_FAILED_WITH_MESSAGE(status) FUZZ_CHECK((status) == 0 || rlx_last_error()[0] != '\0')

#endif
