/* Helpers shared by the fuzz targets (tests/fuzz/fuzz-*.c). A broken invariant is a crash
 * libFuzzer reports with the input that caused it: FUZZ_CHECK traps. */
#ifndef RLX_FUZZ_UTIL_H
#define RLX_FUZZ_UTIL_H

#include <dirent.h>
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

static char fuzz_dir_[512];

/* Removes the scratch directory (it holds files only) when the run ends normally: libFuzzer
 * exits through exit(). A crash leaves it. */
static void fuzz_cleanup_(void) {
    DIR *d = fuzz_dir_[0] ? opendir(fuzz_dir_) : NULL;
    if (!d) return;
    for (struct dirent *e; (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char path[800];
        snprintf(path, sizeof path, "%s/%s", fuzz_dir_, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(fuzz_dir_);
}

/* A scratch directory for the whole run (under TMPDIR, else /tmp), made on first use. */
static inline const char *fuzz_tmpdir(void) {
    if (!fuzz_dir_[0]) {
        const char *base = getenv("TMPDIR");
        snprintf(fuzz_dir_, sizeof fuzz_dir_, "%s/rlx-fuzz-XXXXXX", base && *base ? base : "/tmp");
        FUZZ_CHECK(mkdtemp(fuzz_dir_) != NULL);
        atexit(fuzz_cleanup_);
    }
    return fuzz_dir_;
}

/* Writes size bytes to path (a scratch file), as a new file: truncating the old one in place
 * makes ext4 (auto_da_alloc) flush it at close, 2.6 ms a write on a busy disk against 60 us, and
 * the file-reading targets ran 50x slower for it. */
static inline void fuzz_write(const char *path, const void *data, size_t size) {
    unlink(path);
    FILE *f = fopen(path, "wb");
    FUZZ_CHECK(f != NULL);
    FUZZ_CHECK(size == 0 || fwrite(data, 1, size, f) == size);
    FUZZ_CHECK(fclose(f) == 0);
}

/* Every failure leaves a message: a failing call without one is a bug. */
#define FUZZ_FAILED_WITH_MESSAGE(status) FUZZ_CHECK((status) == 0 || rlx_last_error()[0] != '\0')

#endif
