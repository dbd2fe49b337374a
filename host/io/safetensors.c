/* safetensors: read-only mmap (or a copy in memory), validation and writing.
 *
 * Validation follows the reference implementation (the Rust `safetensors` crate): u64 LE header
 * length N, N <= 100,000,000, 8 + N <= file length, UTF-8 JSON object (whitespace around it is
 * fine; writers pad with spaces), an optional "__metadata__" object of strings, and for every
 * other key exactly {dtype, shape, data_offsets} with byte size == product(shape) x dtype size,
 * computed with overflow checks. Sorted by offset, the tensors must tile the data section from 0
 * to its very end. rlx is stricter in three places, to catch broken writers early and to hold
 * only names rlx_weights_add accepts: duplicate names, unknown keys inside a tensor entry and an
 * empty tensor name are refused.
 *
 * Every message names the file, the tensor or key, and the rule broken.
 */
#include "io/json_util.h"
#include "io/safetensors.h"

#include "core/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "rlx hands out safetensors data in place, which assumes a little-endian host"
#endif

// ---- dtypes ----------------------------------------------------------------------------------

/* Every dtype the reference knows, so that a valid file is never reported as malformed. Sizes are
 * in bits because of the sub-byte float formats. Whole-byte types are kept as rlx_dtype values (a
 * tensor rlx never reads, like an int64 position_ids buffer, must not stop a checkpoint from
 * opening; the build refuses a stage that needs a non-float one); the sub-byte ones cannot be
 * viewed as arrays of elements and are refused at open. */
typedef struct st_dtype {
    const char *name;
    unsigned bits;
    int rlx; /* rlx_dtype, or -1 when rlx cannot hold it */
} st_dtype;

static const st_dtype st_dtypes[] = {
    {"F32", 32, RLX_DTYPE_F32},        {"F16", 16, RLX_DTYPE_F16},        {"BF16", 16, RLX_DTYPE_BF16},
    {"F64", 64, RLX_DTYPE_F64},        {"I64", 64, RLX_DTYPE_I64},        {"U64", 64, RLX_DTYPE_U64},
    {"C64", 64, -1},                   {"I32", 32, RLX_DTYPE_I32},        {"U32", 32, RLX_DTYPE_U32},
    {"I16", 16, RLX_DTYPE_I16},        {"U16", 16, RLX_DTYPE_U16},        {"I8", 8, RLX_DTYPE_I8},
    {"U8", 8, RLX_DTYPE_U8},           {"BOOL", 8, RLX_DTYPE_BOOL},       {"F8_E4M3", 8, RLX_DTYPE_F8_E4M3},
    {"F8_E5M2", 8, RLX_DTYPE_F8_E5M2}, {"F8_E8M0", 8, RLX_DTYPE_F8_E8M0}, {"F6_E2M3", 6, -1},
    {"F6_E3M2", 6, -1},                {"F4", 4, -1},
};

static const st_dtype *st_dtype_find(const char *name) {
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (strcmp(st_dtypes[i].name, name) == 0) return &st_dtypes[i];
    return NULL;
}

static const char *st_dtype_string(rlx_dtype d) {
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (st_dtypes[i].rlx == (int)d) return st_dtypes[i].name;
    return NULL;
}

/* "[2, 3]" from a JSON shape array, shortened with "..." when long. */
static void fmt_shape(char *buf, size_t cap, const json_t *shape) {
    size_t used = 0;
    int n = snprintf(buf, cap, "[");
    used = (size_t)n;
    for (size_t i = 0; i < json_array_size(shape) && used < cap; i++) {
        const json_t *d = json_array_get(shape, i);
        if (used + 24 >= cap) {
            snprintf(buf + used, cap - used, "...");
            used = strlen(buf);
            break;
        }
        n = snprintf(buf + used, cap - used, "%s%lld", i ? ", " : "", (long long)json_integer_value(d));
        used += (size_t)n;
    }
    if (used < cap) snprintf(buf + used, cap - used, "]");
}

// ---- parsing ---------------------------------------------------------------------------------

void rlx__st_free_tensors(rlx__st_tensor *t, size_t n) {
    if (!t) return;
    for (size_t i = 0; i < n; i++) free(t[i].name);
    free(t);
}

static int cmp_cstr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int cmp_by_offset(const void *a, const void *b) {
    const rlx__st_tensor *x = *(const rlx__st_tensor *const *)a;
    const rlx__st_tensor *y = *(const rlx__st_tensor *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name); /* deterministic messages when offsets tie */
}

static rlx_status st_metadata(const char *path, const json_t *meta) {
    /* The reference reads it as Option<HashMap<String, String>>: null is "absent". */
    if (json_is_null(meta)) return RLX_OK;
    if (!json_is_object(meta))
        return rlx__fail(RLX_ERR_FORMAT, "%s: '__metadata__' is %s, expected an object of strings",
                         path, rlx__json_type_name(meta));
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)meta, k, v) {
        if (!json_is_string(v))
            return rlx__fail(RLX_ERR_FORMAT,
                             "%s: '__metadata__' key '%s' is %s, expected a string", path, k,
                             rlx__json_type_name(v));
    }
    return RLX_OK;
}

/* Why a structurally valid tensor cannot be used by rlx; reported after the whole file has been
 * validated, so a malformed file is always reported as malformed. */
typedef struct st_unsupported {
    const char *name;
    const char *dtype; /* non-NULL: unsupported dtype */
    size_t ndim;       /* else: too many dimensions */
} st_unsupported;

static rlx_status st_nonneg_int(const char *path, const char *name, const char *what, size_t i,
                                const json_t *v, size_t *out) {
    if (!json_is_integer(v))
        return rlx__fail(RLX_ERR_FORMAT, "%s: tensor '%s': %s[%zu] is %s, expected a non-negative integer",
                         path, name, what, i, rlx__json_type_name(v));
    json_int_t x = json_integer_value(v);
    if (x < 0)
        return rlx__fail(RLX_ERR_FORMAT, "%s: tensor '%s': %s[%zu] is %lld, expected a non-negative integer",
                         path, name, what, i, (long long)x);
    if ((unsigned long long)x > SIZE_MAX)
        return rlx__fail(RLX_ERR_FORMAT, "%s: tensor '%s': %s[%zu] = %lld does not fit in size_t",
                         path, name, what, i, (long long)x);
    *out = (size_t)x;
    return RLX_OK;
}

static rlx_status st_entry(const char *path, const char *name, const json_t *v, rlx__st_tensor *t,
                           st_unsupported *unsup) {
    if (!json_is_object(v))
        return rlx__fail(RLX_ERR_FORMAT,
                         "%s: tensor '%s': entry is %s, expected an object with dtype, shape and "
                         "data_offsets",
                         path, name, rlx__json_type_name(v));
    const char *k;
    const json_t *x;
    json_object_foreach((json_t *)v, k, x) {
        if (strcmp(k, "dtype") && strcmp(k, "shape") && strcmp(k, "data_offsets"))
            return rlx__fail(RLX_ERR_FORMAT,
                             "%s: tensor '%s': unexpected key '%s' (an entry holds exactly dtype, "
                             "shape and data_offsets)",
                             path, name, k);
    }
    static const char *const required[] = {"dtype", "shape", "data_offsets"};
    for (int i = 0; i < 3; i++)
        if (!json_object_get(v, required[i]))
            return rlx__fail(RLX_ERR_FORMAT, "%s: tensor '%s': missing key '%s'", path, name,
                             required[i]);

    const json_t *jd = json_object_get(v, "dtype");
    if (!json_is_string(jd))
        return rlx__fail(RLX_ERR_FORMAT, "%s: tensor '%s': 'dtype' is %s, expected a string", path,
                         name, rlx__json_type_name(jd));
    const st_dtype *dt = st_dtype_find(json_string_value(jd));
    if (!dt)
        return rlx__fail(RLX_ERR_FORMAT, "%s: tensor '%s': unknown dtype '%s'", path, name,
                         json_string_value(jd));

    const json_t *js = json_object_get(v, "shape");
    if (!json_is_array(js))
        return rlx__fail(RLX_ERR_FORMAT, "%s: tensor '%s': 'shape' is %s, expected an array", path,
                         name, rlx__json_type_name(js));
    size_t ndim = json_array_size(js), nelem = 1;
    int overflow = 0;
    for (size_t i = 0; i < ndim; i++) {
        size_t d = 0;
        rlx_status s = st_nonneg_int(path, name, "shape", i, json_array_get(js, i), &d);
        if (s) return s;
        if (!rlx__mul_size(nelem, d, &nelem)) overflow = 1;
        if (i < RLX_MAX_DIMS) t->shape[i] = (int64_t)d;
    }
    /* A zero dimension makes the product 0 whatever the others are, but the reference folds
     * left with checked_mul and fails on the first overflow; do the same. */

    const json_t *jo = json_object_get(v, "data_offsets");
    if (!json_is_array(jo) || json_array_size(jo) != 2)
        return rlx__fail(RLX_ERR_FORMAT,
                         "%s: tensor '%s': 'data_offsets' is %s, expected [begin, end]", path, name,
                         json_is_array(jo) ? "an array of the wrong length" : rlx__json_type_name(jo));
    size_t begin = 0, end = 0;
    rlx_status s = st_nonneg_int(path, name, "data_offsets", 0, json_array_get(jo, 0), &begin);
    if (!s) s = st_nonneg_int(path, name, "data_offsets", 1, json_array_get(jo, 1), &end);
    if (s) return s;
    if (begin > end)
        return rlx__fail(RLX_ERR_FORMAT, "%s: tensor '%s': data_offsets [%zu, %zu] end before they begin",
                         path, name, begin, end);

    char shp[160];
    fmt_shape(shp, sizeof shp, js);
    size_t bits = 0;
    if (overflow || !rlx__mul_size(nelem, dt->bits, &bits))
        return rlx__fail(RLX_ERR_FORMAT, "%s: tensor '%s': shape %s x %s overflows the byte count",
                         path, name, shp, dt->name);
    if (bits % 8)
        return rlx__fail(RLX_ERR_FORMAT,
                         "%s: tensor '%s': shape %s x %s is not a whole number of bytes", path,
                         name, shp, dt->name);
    if (end - begin != bits / 8)
        return rlx__fail(RLX_ERR_FORMAT,
                         "%s: tensor '%s': data_offsets [%zu, %zu] hold %zu bytes but shape %s x %s "
                         "needs %zu",
                         path, name, begin, end, end - begin, shp, dt->name, bits / 8);

    t->begin = begin;
    t->end = end;
    t->ndim = ndim <= RLX_MAX_DIMS ? (int)ndim : RLX_MAX_DIMS;
    t->dtype = dt->rlx >= 0 ? (rlx_dtype)dt->rlx : RLX_DTYPE_F32;
    if (!unsup->name && (dt->rlx < 0 || ndim > RLX_MAX_DIMS)) {
        unsup->name = name;
        unsup->dtype = dt->rlx < 0 ? dt->name : NULL;
        unsup->ndim = ndim;
    }
    return RLX_OK;
}

/* Sorted by offset, the tensors must tile [0, data_len) exactly. */
static rlx_status st_check_tiling(const char *path, rlx__st_tensor *t, size_t n, size_t data_len,
                                  size_t file_len, size_t header_len) {
    rlx__st_tensor **order = rlx__calloc(n, sizeof *order, "safetensors offset order");
    if (!order) return RLX_ERR_OUT_OF_MEMORY;
    for (size_t i = 0; i < n; i++) order[i] = &t[i];
    qsort(order, n, sizeof *order, cmp_by_offset);
    size_t pos = 0;
    rlx_status s = RLX_OK;
    for (size_t i = 0; i < n && !s; i++) {
        const rlx__st_tensor *x = order[i];
        if (x->begin == pos) {
            pos = x->end;
            continue;
        }
        if (i == 0)
            s = rlx__fail(RLX_ERR_FORMAT,
                          "%s: tensor '%s': data_offsets [%zu, %zu] start at %zu, but the first "
                          "tensor's data must start at 0",
                          path, x->name, x->begin, x->end, x->begin);
        else if (x->begin > pos)
            s = rlx__fail(RLX_ERR_FORMAT,
                          "%s: tensor '%s': data_offsets [%zu, %zu] leave a gap of %zu bytes after "
                          "tensor '%s' (ends at %zu)",
                          path, x->name, x->begin, x->end, x->begin - pos, order[i - 1]->name, pos);
        else
            s = rlx__fail(RLX_ERR_FORMAT,
                          "%s: tensor '%s': data_offsets [%zu, %zu] overlap tensor '%s' [%zu, %zu]",
                          path, x->name, x->begin, x->end, order[i - 1]->name, order[i - 1]->begin,
                          order[i - 1]->end);
    }
    free(order);
    if (s) return s;
    if (pos != data_len)
        return rlx__fail(RLX_ERR_FORMAT,
                         "%s: file is %zu bytes: after the 8-byte length and the %zu-byte header it "
                         "holds %zu bytes of data, but the tensors cover %zu",
                         path, file_len, header_len, data_len, pos);
    return RLX_OK;
}

rlx_status rlx__st_parse(const char *path, const unsigned char *buf, size_t len,
                         rlx__st_tensor **tensors, size_t *count, size_t *data_start) {
    *tensors = NULL;
    *count = 0;
    *data_start = 0;
    if (len < 8)
        return rlx__fail(RLX_ERR_FORMAT,
                         "%s: file is %zu bytes, shorter than the 8-byte header length", path, len);
    uint64_t n = 0;
    for (int i = 0; i < 8; i++) n |= (uint64_t)buf[i] << (8 * i);
    if (n > RLX__ST_MAX_HEADER)
        return rlx__fail(RLX_ERR_FORMAT, "%s: header length %llu exceeds the limit of %u bytes", path,
                         (unsigned long long)n, RLX__ST_MAX_HEADER);
    if (n > len - 8)
        return rlx__fail(RLX_ERR_FORMAT,
                         "%s: header length %llu runs past the end of the file (%zu bytes)", path,
                         (unsigned long long)n, len);

    /* jansson checks UTF-8, rejects trailing garbage but not trailing whitespace (the padding),
     * refuses \u0000 in strings so names are C strings, and limits nesting depth. */
    json_error_t jerr;
    json_t *root = json_loadb((const char *)buf + 8, (size_t)n, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return rlx__fail(RLX_ERR_FORMAT, "%s: header is not valid JSON (line %d, column %d): %s",
                         path, jerr.line, jerr.column, jerr.text);
    rlx_status s = RLX_OK;
    const char **keys = NULL;
    rlx__st_tensor *t = NULL;
    size_t nt = 0;
    if (!json_is_object(root)) {
        s = rlx__fail(RLX_ERR_FORMAT, "%s: header is %s, expected a JSON object", path,
                      rlx__json_type_name(root));
        goto done;
    }

    /* Walk keys in name order so that which error is reported does not depend on hashing. */
    size_t nkeys = json_object_size(root), k = 0;
    keys = rlx__calloc(nkeys, sizeof *keys, "safetensors header keys");
    t = rlx__calloc(nkeys, sizeof *t, "safetensors tensor table");
    if (!keys || !t) {
        s = RLX_ERR_OUT_OF_MEMORY;
        goto done;
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) keys[k++] = key;
    qsort(keys, nkeys, sizeof *keys, cmp_cstr);

    st_unsupported unsup = {0};
    for (k = 0; k < nkeys && !s; k++) {
        const json_t *v = json_object_get(root, keys[k]);
        if (strcmp(keys[k], "__metadata__") == 0) {
            s = st_metadata(path, v);
            continue;
        }
        /* "" is a JSON key but no tensor name: rlx_weights_add refuses it, and a set opened from a
         * file must hold only what a set built in memory may (found by fuzz-safetensors). */
        if (!keys[k][0]) {
            s = rlx__fail(RLX_ERR_FORMAT, "%s: a tensor has an empty name", path);
            break;
        }
        s = st_entry(path, keys[k], v, &t[nt], &unsup);
        if (!s) {
            t[nt].name = rlx__strdup(keys[k]);
            if (!t[nt].name) s = RLX_ERR_OUT_OF_MEMORY;
            else nt++;
        }
    }
    if (!s) s = st_check_tiling(path, t, nt, len - 8 - (size_t)n, len, (size_t)n);
    if (!s && unsup.name) {
        if (unsup.dtype)
            s = rlx__fail(RLX_ERR_UNSUPPORTED,
                          "%s: tensor '%s': unsupported dtype %s (rlx holds whole-byte element types "
                          "and computes with F32, F16 and BF16)",
                          path, unsup.name, unsup.dtype);
        else
            s = rlx__fail(RLX_ERR_UNSUPPORTED, "%s: tensor '%s': %zu dimensions, rlx supports at most %d",
                          path, unsup.name, unsup.ndim, RLX_MAX_DIMS);
    }

done:
    free(keys);
    json_decref(root);
    if (s) {
        rlx__st_free_tensors(t, nt);
        return s;
    }
    *tensors = t;
    *count = nt;
    *data_start = 8 + (size_t)n;
    return RLX_OK;
}

// ---- files -----------------------------------------------------------------------------------

void rlx__st_close(rlx__st_file *f) {
    if (!f) return;
    if (f->map && f->owned) free((void *)f->map);
    else if (f->map) {
        munmap((void *)f->map, f->size);
        close(f->fd);
    }
    rlx__st_free_tensors(f->tensors, f->count);
    free(f->path);
    memset(f, 0, sizeof *f);
}

/* Reads size bytes of fd into a fresh buffer; a file that shrinks meanwhile is an error. */
static rlx_status read_whole(const char *path, int fd, size_t size, unsigned char **out) {
    unsigned char *buf = rlx__malloc(size, "a checkpoint file read into memory");
    if (!buf) return RLX_ERR_OUT_OF_MEMORY;
    size_t got = 0;
    while (got < size) {
        size_t chunk = size - got < ((size_t)1 << 30) ? size - got : ((size_t)1 << 30);
        ssize_t r = pread(fd, buf + got, chunk, (off_t)got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int e = errno;
            free(buf);
            if (r == 0)
                return rlx__fail(RLX_ERR_IO, "%s: the file shrank while it was read (%zu of %zu bytes)", path, got, size);
            return rlx__fail(RLX_ERR_IO, "%s: read failed at byte %zu: %s", path, got, strerror(e));
        }
        got += (size_t)r;
    }
    *out = buf;
    return RLX_OK;
}

rlx_status rlx__st_open(const char *path, rlx__st_file *f) { return rlx__st_open_ex(path, 0, f); }

rlx_status rlx__st_open_ex(const char *path, int read_into_memory, rlx__st_file *f) {
    memset(f, 0, sizeof *f);
    /* O_NONBLOCK: a FIFO planted where a shard should be must fail the S_ISREG check below,
     * not hang in open(); regular files ignore the flag. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return rlx__fail(RLX_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return rlx__fail(RLX_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return rlx__fail(RLX_ERR_IO, "%s: not a regular file", path);
    }
    size_t size = (size_t)st.st_size;
    if (size < 8) {
        /* mmap of an empty file fails; the length check is all the parser would do anyway. */
        close(fd);
        unsigned char tiny[8] = {0};
        rlx__st_tensor *t;
        size_t n, ds;
        return rlx__st_parse(path, tiny, size, &t, &n, &ds);
    }
    const unsigned char *map;
    if (read_into_memory) {
        /* A private copy: nothing done to the file after this can reach the set. */
        unsigned char *buf = NULL;
        rlx_status rs = read_whole(path, fd, size, &buf);
        close(fd);
        if (rs) return rs;
        map = buf;
        f->owned = 1;
        f->fd = -1;
    } else {
        /* MAP_PRIVATE + PROT_READ: the checkpoint can never be written through the views. A file
         * truncated while mapped faults on access (SIGBUS): the descriptor stays open so that
         * rlx__st_check_intact can see a size change before the data is read (weights.h). */
        void *m = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        int e = errno;
        if (m == MAP_FAILED) {
            close(fd);
            return rlx__fail(RLX_ERR_IO, "%s: cannot mmap %zu bytes: %s", path, size, strerror(e));
        }
        map = m;
        f->fd = fd;
    }
    f->map = map;
    f->size = size;
    rlx_status s = rlx__st_parse(path, map, size, &f->tensors, &f->count, &f->data_start);
    if (!s) {
        f->path = rlx__strdup(path);
        if (!f->path) s = RLX_ERR_OUT_OF_MEMORY;
    }
    if (s) rlx__st_close(f);
    return s;
}

rlx_status rlx__st_check_intact(const rlx__st_file *f) {
    if (!f->map || f->owned) return RLX_OK;
    struct stat st;
    if (fstat(f->fd, &st) != 0) return rlx__fail(RLX_ERR_IO, "%s: cannot stat the open file: %s", f->path, strerror(errno));
    if ((uint64_t)st.st_size < (uint64_t)f->size)
        return rlx__fail(RLX_ERR_IO,
                         "%s: the file shrank from %zu to %lld bytes since it was opened; a mapped checkpoint must stay intact while "
                         "open (open it with rlx_weights_open_params.read_into_memory when it may change)",
                         f->path, f->size, (long long)st.st_size);
    return RLX_OK;
}

// ---- writing ---------------------------------------------------------------------------------

static int cmp_write_order(const void *a, const void *b) {
    const rlx_tensor_view *x = *(const rlx_tensor_view *const *)a;
    const rlx_tensor_view *y = *(const rlx_tensor_view *const *)b;
    size_t sx = rlx_dtype_size(x->dtype), sy = rlx_dtype_size(y->dtype);
    if (sx != sy) return sx > sy ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int write_all(int fd, const void *p, size_t n) {
    const unsigned char *c = p;
    while (n) {
        size_t chunk = n < ((size_t)1 << 30) ? n : ((size_t)1 << 30);
        ssize_t w = write(fd, c, chunk);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

static rlx_status st_build_header(const char *path, const rlx_tensor_view *const *order, size_t n,
                                  char **out, size_t *out_len) {
    json_t *root = json_object();
    if (!root) return rlx__fail(RLX_ERR_OUT_OF_MEMORY, "out of memory building a safetensors header");
    size_t off = 0;
    rlx_status s = RLX_OK;
    for (size_t i = 0; i < n && !s; i++) {
        const rlx_tensor_view *v = order[i];
        if (json_object_get(root, v->name)) {
            s = rlx__fail(RLX_ERR_INVALID_ARGUMENT, "%s: tensor '%s' given twice", path, v->name);
            break;
        }
        json_t *shape = json_array();
        for (int d = 0; shape && d < v->ndim; d++) json_array_append_new(shape, json_integer(v->shape[d]));
        json_t *e = json_pack("{s:s, s:o, s:[I, I]}", "dtype", st_dtype_string(v->dtype), "shape",
                              shape, "data_offsets", (json_int_t)off, (json_int_t)(off + v->nbytes));
        if (!e || json_object_set_new(root, v->name, e) != 0)
            s = rlx__fail(RLX_ERR_OUT_OF_MEMORY, "out of memory building a safetensors header");
        off += v->nbytes;
    }
    char *text = s ? NULL : json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(root);
    if (s) return s;
    if (!text) return rlx__fail(RLX_ERR_OUT_OF_MEMORY, "out of memory serialising a safetensors header");
    *out = text;
    *out_len = strlen(text);
    return RLX_OK;
}

rlx_status rlx__st_write(const char *path, const rlx_tensor_view *views, size_t n) {
    const rlx_tensor_view **order = rlx__calloc(n, sizeof *order, "safetensors write order");
    if (!order) return RLX_ERR_OUT_OF_MEMORY;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        const rlx_tensor_view *v = &views[i];
        size_t nelem = 1, bytes;
        /* "__metadata__" would be read back as the metadata object, not as a tensor. */
        int ok = st_dtype_string(v->dtype) && v->ndim >= 0 && v->ndim <= RLX_MAX_DIMS && v->name &&
                 strcmp(v->name, "__metadata__") != 0;
        for (int d = 0; ok && d < v->ndim; d++)
            ok = v->shape[d] >= 0 && rlx__mul_size(nelem, (size_t)v->shape[d], &nelem);
        ok = ok && rlx__mul_size(nelem, rlx_dtype_size(v->dtype), &bytes) && bytes == v->nbytes &&
             (v->data || !bytes) && rlx__add_size(total, bytes, &total) && total <= INT64_MAX;
        if (!ok) {
            free(order);
            return rlx__fail(RLX_ERR_INVALID_ARGUMENT,
                             "%s: cannot write tensor '%s': inconsistent dtype, shape or size", path,
                             v->name ? v->name : "(null)");
        }
        order[i] = v;
    }
    qsort(order, n, sizeof *order, cmp_write_order);

    char *header = NULL;
    size_t hlen = 0;
    rlx_status s = st_build_header(path, order, n, &header, &hlen);
    if (s) {
        free(order);
        return s;
    }
    size_t padded = (hlen + 7) / 8 * 8;
    char *hbuf = rlx__malloc(8 + padded, "safetensors header");
    if (!hbuf) {
        free(header);
        free(order);
        return RLX_ERR_OUT_OF_MEMORY;
    }
    for (int i = 0; i < 8; i++) hbuf[i] = (char)(((uint64_t)padded >> (8 * i)) & 0xff);
    memcpy(hbuf + 8, header, hlen);
    memset(hbuf + 8 + hlen, ' ', padded - hlen);
    free(header);

    size_t plen = strlen(path);
    char *tmp = rlx__malloc(plen + 16, "a temporary file name");
    if (!tmp) {
        free(hbuf);
        free(order);
        return RLX_ERR_OUT_OF_MEMORY;
    }
    snprintf(tmp, plen + 16, "%s.tmp-XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        s = rlx__fail(RLX_ERR_IO, "%s: cannot create a temporary file next to it: %s", path,
                      strerror(errno));
    } else {
        int failed = fchmod(fd, 0644) != 0 || write_all(fd, hbuf, 8 + padded) != 0;
        for (size_t i = 0; i < n && !failed; i++)
            failed = write_all(fd, order[i]->data, order[i]->nbytes) != 0;
        int e = errno;
        if (close(fd) != 0 && !failed) {
            failed = 1;
            e = errno;
        }
        if (!failed && rename(tmp, path) != 0) {
            failed = 1;
            e = errno;
        }
        if (failed) {
            unlink(tmp);
            s = rlx__fail(RLX_ERR_IO, "%s: write failed: %s", path, strerror(e));
        }
    }
    free(tmp);
    free(hbuf);
    free(order);
    return s;
}
