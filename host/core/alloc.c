/* Allocation helpers: every failure records the byte count and what it was for. */
#include "core/internal.h"

#include <stdlib.h>
#include <string.h>

void *rlx__malloc(size_t bytes, const char *what) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) rlx__fail(RLX_ERR_OUT_OF_MEMORY, "out of host memory: %zu bytes for %s", bytes, what);
    return p;
}

void *rlx__calloc(size_t n, size_t size, const char *what) {
    size_t bytes;
    if (!rlx__mul_size(n, size, &bytes)) {
        rlx__fail(RLX_ERR_OUT_OF_MEMORY, "size overflow: %zu x %zu bytes for %s", n, size, what);
        return NULL;
    }
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) rlx__fail(RLX_ERR_OUT_OF_MEMORY, "out of host memory: %zu bytes for %s", bytes, what);
    return p;
}

char *rlx__strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = rlx__malloc(n, "a string");
    if (p) memcpy(p, s, n);
    return p;
}
