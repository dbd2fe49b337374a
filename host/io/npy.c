/* NumPy .npy writer/reader for float32 arrays (format version 1.0, little-endian, C order). */
#include "io/npy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

rlx_status rlx__npy_write_f32(const char *path, const float *data, int ndim, const int64_t *shape) {
    char dict[256];
    size_t n = 1;
    int len = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    for (int i = 0; i < ndim; i++) {
        len += snprintf(dict + len, sizeof dict - (size_t)len, "%lld,%s", (long long)shape[i], i + 1 < ndim ? " " : "");
        n *= (size_t)shape[i];
    }
    len += snprintf(dict + len, sizeof dict - (size_t)len, "), }");
    /* magic(6) + version(2) + header length(2) + dict + padding + '\n' is a multiple of 64 */
    size_t total = 10 + (size_t)len + 1;
    size_t pad = (64 - total % 64) % 64;
    FILE *f = fopen(path, "wb");
    if (!f) return rlx__fail(RLX_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    unsigned short hl = (unsigned short)((size_t)len + pad + 1);
    unsigned char head[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hl & 0xff), (unsigned char)(hl >> 8)};
    int ok = fwrite(head, 1, 10, f) == 10 && fwrite(dict, 1, (size_t)len, f) == (size_t)len;
    for (size_t i = 0; ok && i < pad; i++) ok = fputc(' ', f) != EOF;
    ok = ok && fputc('\n', f) != EOF;
    ok = ok && (n == 0 || fwrite(data, sizeof(float), n, f) == n); /* x86-64 and arm64 are little-endian */
    if (fclose(f) != 0) ok = 0;
    if (!ok) return rlx__fail(RLX_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    return RLX_OK;
}

rlx_status rlx__npy_read_f32(const char *path, float **data, int *ndim, int64_t *shape, int max_dims) {
    *data = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return rlx__fail(RLX_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    unsigned char head[10];
    rlx_status s = RLX_OK;
    char dict[4096];
    if (fread(head, 1, 10, f) != 10 || memcmp(head, "\x93NUMPY", 6) || head[6] != 1) {
        s = rlx__fail(RLX_ERR_FORMAT, "%s: not a version-1 .npy file", path);
        goto done;
    }
    size_t hl = (size_t)head[8] | (size_t)head[9] << 8;
    if (hl >= sizeof dict || fread(dict, 1, hl, f) != hl) {
        s = rlx__fail(RLX_ERR_FORMAT, "%s: truncated .npy header", path);
        goto done;
    }
    dict[hl] = '\0';
    if (!strstr(dict, "'descr': '<f4'") || !strstr(dict, "'fortran_order': False")) {
        s = rlx__fail(RLX_ERR_FORMAT, "%s: only little-endian float32 C-order arrays are read", path);
        goto done;
    }
    const char *p = strstr(dict, "'shape': (");
    if (!p) {
        s = rlx__fail(RLX_ERR_FORMAT, "%s: .npy header has no shape", path);
        goto done;
    }
    p += 10;
    *ndim = 0;
    size_t n = 1;
    while (*p && *p != ')') {
        char *end;
        long long v = strtoll(p, &end, 10);
        if (end == p || v < 0 || *ndim >= max_dims) {
            s = rlx__fail(RLX_ERR_FORMAT, "%s: bad .npy shape", path);
            goto done;
        }
        shape[(*ndim)++] = v;
        n *= (size_t)v;
        p = end;
        while (*p == ',' || *p == ' ') p++;
    }
    *data = rlx__malloc(n * sizeof(float), path);
    if (!*data) {
        s = RLX_ERR_OUT_OF_MEMORY;
        goto done;
    }
    if (fread(*data, sizeof(float), n, f) != n) {
        free(*data);
        *data = NULL;
        s = rlx__fail(RLX_ERR_FORMAT, "%s: .npy data shorter than its shape", path);
    }
done:
    fclose(f);
    return s;
}
