/* The rlx_weights handle: tensors by name from a Hugging Face model directory, one safetensors
 * file, or memory.
 *
 * Tensors live in one array sorted by name (binary search for lookups, name order for
 * iteration). File-backed views point into read-only mappings owned by the handle; a tensor
 * whose bytes are not aligned to its element size in the file (legal, but never produced by the
 * reference writer) is copied once, so every view can be read through a typed pointer.
 *
 * Directory rules follow transformers: model.safetensors wins over an index when both exist;
 * with model.safetensors.index.json, weight_map must agree exactly with the shards' contents.
 */
#include "io/json_util.h"
#include "core/internal.h"
#include "io/safetensors.h"
#include "io/weights_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct w_entry {
    rlx_tensor_view v;  /* name/data/file point into storage owned below or by a file */
    char *owned_name;   /* in-memory tensors */
    void *owned_data;   /* in-memory tensors, and realigned copies of file tensors */
} w_entry;

struct rlx_weights {
    char *dir;          /* set when opened from a directory */
    char *origin;       /* what messages name: the directory, the file, or "in-memory weights" */
    char *config_json;  /* NUL-terminated, or NULL */
    rlx__st_file *files;
    size_t nfiles;
    w_entry *e;         /* sorted by name */
    size_t count, cap;
    int read_into_memory; /* files opened from now on are read into memory, not mapped */
};

static const char memory_file[] = "<memory>";

// ---- small helpers -------------------------------------------------------------------------

static char *path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name), n;
    if (!rlx__add_size(a, b, &n) || !rlx__add_size(n, 2, &n)) return NULL;
    char *p = rlx__malloc(n, "a path");
    if (p) snprintf(p, n, "%s%s%s", dir, (a && dir[a - 1] == '/') ? "" : "/", name);
    return p;
}

/* Reads a small text file (config.json, the index) whole; refuses files over max bytes so a
 * wrong path cannot make us read gigabytes. */
static rlx_status read_text(const char *path, size_t max, char **out, size_t *len) {
    *out = NULL;
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
    if ((uint64_t)st.st_size > max) {
        close(fd);
        return rlx__fail(RLX_ERR_FORMAT, "%s: %lld bytes, more than the %zu allowed for this file",
                         path, (long long)st.st_size, max);
    }
    size_t n = (size_t)st.st_size, got = 0;
    char *buf = rlx__malloc(n + 1, path);
    if (!buf) {
        close(fd);
        return RLX_ERR_OUT_OF_MEMORY;
    }
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int e = errno;
            close(fd);
            free(buf);
            return rlx__fail(RLX_ERR_IO, "%s: read failed: %s", path,
                             r == 0 ? "file shrank while reading" : strerror(e));
        }
        got += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return RLX_OK;
}

/* Parses text as a JSON object; messages carry jansson's line and column. */
static rlx_status load_json_object(const char *path, const char *text, size_t len, json_t **out) {
    json_error_t err;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
    if (!root)
        return rlx__fail(RLX_ERR_FORMAT, "%s: not valid JSON (line %d, column %d): %s", path,
                         err.line, err.column, err.text);
    if (!json_is_object(root)) {
        rlx_status s = rlx__fail(RLX_ERR_FORMAT, "%s: top level is %s, expected a JSON object",
                                 path, rlx__json_type_name(root));
        json_decref(root);
        return s;
    }
    *out = root;
    return RLX_OK;
}

// ---- the sorted table ------------------------------------------------------------------------

/* Index of name if present (*found = 1), else where it would be inserted. */
static size_t find_pos(const rlx_weights *w, const char *name, int *found) {
    size_t lo = 0, hi = w->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(w->e[mid].v.name, name);
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    *found = 0;
    return lo;
}

static rlx_status reserve(rlx_weights *w, size_t extra) {
    size_t need;
    if (!rlx__add_size(w->count, extra, &need))
        return rlx__fail(RLX_ERR_OUT_OF_MEMORY, "tensor table size overflow");
    if (need <= w->cap) return RLX_OK;
    size_t cap = w->cap ? w->cap : 16;
    while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    size_t bytes;
    if (!rlx__mul_size(cap, sizeof *w->e, &bytes))
        return rlx__fail(RLX_ERR_OUT_OF_MEMORY, "tensor table size overflow");
    w_entry *e = realloc(w->e, bytes);
    if (!e) return rlx__fail(RLX_ERR_OUT_OF_MEMORY, "out of host memory: %zu bytes for the tensor table", bytes);
    w->e = e;
    w->cap = cap;
    return RLX_OK;
}

static int cmp_entry(const void *a, const void *b) {
    return strcmp(((const w_entry *)a)->v.name, ((const w_entry *)b)->v.name);
}

/* Appends every tensor of f (already validated) to the table, unsorted; the caller sorts. */
static rlx_status append_file(rlx_weights *w, const rlx__st_file *f) {
    rlx_status s = reserve(w, f->count);
    if (s) return s;
    for (size_t i = 0; i < f->count; i++) {
        const rlx__st_tensor *t = &f->tensors[i];
        w_entry *e = &w->e[w->count];
        memset(e, 0, sizeof *e);
        e->v.name = t->name;
        e->v.dtype = t->dtype;
        e->v.ndim = t->ndim;
        memcpy(e->v.shape, t->shape, sizeof e->v.shape);
        e->v.nbytes = t->end - t->begin;
        e->v.file = f->path;
        const unsigned char *data = f->map + f->data_start + t->begin;
        size_t align = rlx_dtype_size(t->dtype);
        if (align > 1 && (uintptr_t)data % align) {
            e->owned_data = rlx__malloc(e->v.nbytes, "a realigned tensor");
            if (!e->owned_data) return RLX_ERR_OUT_OF_MEMORY;
            memcpy(e->owned_data, data, e->v.nbytes);
            data = e->owned_data;
        }
        e->v.data = data;
        w->count++;
    }
    return RLX_OK;
}

/* Sorts the table; two tensors of one name (from two files) are an error. */
static rlx_status sort_and_check(rlx_weights *w) {
    if (w->count > 1) qsort(w->e, w->count, sizeof *w->e, cmp_entry);
    for (size_t i = 0; i + 1 < w->count; i++)
        if (strcmp(w->e[i].v.name, w->e[i + 1].v.name) == 0)
            return rlx__fail(RLX_ERR_FORMAT, "%s: tensor '%s' appears in both %s and %s", w->origin,
                             w->e[i].v.name, w->e[i].v.file, w->e[i + 1].v.file);
    return RLX_OK;
}

static rlx_status add_file(rlx_weights *w, const char *path, rlx__st_file **added) {
    size_t bytes;
    if (!rlx__mul_size(w->nfiles + 1, sizeof *w->files, &bytes))
        return rlx__fail(RLX_ERR_OUT_OF_MEMORY, "file table overflow");
    rlx__st_file *files = realloc(w->files, bytes);
    if (!files) return rlx__fail(RLX_ERR_OUT_OF_MEMORY, "out of host memory for the file table");
    w->files = files;
    rlx_status s = rlx__st_open_ex(path, w->read_into_memory, &w->files[w->nfiles]);
    if (s) return s;
    *added = &w->files[w->nfiles++];
    return RLX_OK;
}

// ---- lifetime --------------------------------------------------------------------------------

rlx_status rlx_weights_create(rlx_weights **out) {
    if (!out) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_weights_create: out is NULL");
    *out = NULL;
    rlx_weights *w = rlx__calloc(1, sizeof *w, "a weights handle");
    if (!w) return RLX_ERR_OUT_OF_MEMORY;
    w->origin = rlx__strdup("in-memory weights");
    if (!w->origin) {
        free(w);
        return RLX_ERR_OUT_OF_MEMORY;
    }
    *out = w;
    return RLX_OK;
}

void rlx_weights_destroy(rlx_weights *w) {
    if (!w) return;
    for (size_t i = 0; i < w->count; i++) {
        free(w->e[i].owned_name);
        free(w->e[i].owned_data);
    }
    free(w->e);
    for (size_t i = 0; i < w->nfiles; i++) rlx__st_close(&w->files[i]);
    free(w->files);
    free(w->config_json);
    free(w->origin);
    free(w->dir);
    free(w);
}

static rlx_status new_with_origin(const char *origin, rlx_weights **out) {
    rlx_status s = rlx_weights_create(out);
    if (s) return s;
    free((*out)->origin);
    (*out)->origin = rlx__strdup(origin);
    if (!(*out)->origin) {
        rlx_weights_destroy(*out);
        *out = NULL;
        return RLX_ERR_OUT_OF_MEMORY;
    }
    return RLX_OK;
}

static rlx_status open_one_file(const char *path, const rlx_weights_open_params *p, rlx_weights **out) {
    rlx_weights *w;
    rlx_status s = new_with_origin(path, &w);
    if (s) return s;
    w->read_into_memory = p->read_into_memory;
    rlx__st_file *f = NULL;
    s = add_file(w, path, &f);
    if (!s) s = append_file(w, f);
    if (!s) s = sort_and_check(w);
    if (s) {
        rlx_weights_destroy(w);
        return s;
    }
    *out = w;
    return RLX_OK;
}

/* A shard name from weight_map must be a plain file name inside the model directory. */
static int shard_name_ok(const char *name) {
    return name[0] && !strchr(name, '/') && !strchr(name, '\\') && strcmp(name, ".") &&
           strcmp(name, "..");
}

static int cmp_cstr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int shard_has(const rlx__st_file *f, const char *name) {
    size_t lo = 0, hi = f->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->tensors[mid].name, name);
        if (c == 0) return 1;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return 0;
}

static rlx_status open_sharded(rlx_weights *w, const char *dir, const char *index_path) {
    char *text = NULL;
    size_t len = 0;
    rlx_status s = read_text(index_path, (size_t)256 << 20, &text, &len);
    if (s) return s;
    json_t *root = NULL;
    s = load_json_object(index_path, text, len, &root);
    free(text);
    if (s) return s;

    const char **shards = NULL;
    char *shard_path = NULL;
    json_t *map = json_object_get(root, "weight_map");
    if (!map) {
        s = rlx__fail(RLX_ERR_FORMAT, "%s: missing key 'weight_map'", index_path);
        goto done;
    }
    if (!json_is_object(map)) {
        s = rlx__fail(RLX_ERR_FORMAT, "%s: 'weight_map' is %s, expected an object", index_path,
                      rlx__json_type_name(map));
        goto done;
    }
    size_t nmap = json_object_size(map), nshards = 0;
    if (nmap == 0) {
        s = rlx__fail(RLX_ERR_FORMAT, "%s: 'weight_map' is empty", index_path);
        goto done;
    }
    shards = rlx__calloc(nmap, sizeof *shards, "shard names");
    if (!shards) {
        s = RLX_ERR_OUT_OF_MEMORY;
        goto done;
    }
    const char *key;
    json_t *val;
    json_object_foreach(map, key, val) {
        if (!json_is_string(val)) {
            s = rlx__fail(RLX_ERR_FORMAT, "%s: weight_map['%s'] is %s, expected a shard file name",
                          index_path, key, rlx__json_type_name(val));
            goto done;
        }
        const char *f = json_string_value(val);
        if (!shard_name_ok(f)) {
            s = rlx__fail(RLX_ERR_FORMAT,
                          "%s: weight_map['%s'] = '%s' is not a file name inside %s (no '/', "
                          "'\\', '.' or '..')",
                          index_path, key, f, dir);
            goto done;
        }
        shards[nshards++] = f;
    }
    qsort(shards, nshards, sizeof *shards, cmp_cstr);
    size_t u = 0;
    for (size_t i = 0; i < nshards; i++)
        if (u == 0 || strcmp(shards[u - 1], shards[i])) shards[u++] = shards[i];
    nshards = u;

    for (size_t i = 0; i < nshards; i++) {
        shard_path = path_join(dir, shards[i]);
        if (!shard_path) {
            s = RLX_ERR_OUT_OF_MEMORY;
            goto done;
        }
        rlx__st_file *f = NULL;
        s = add_file(w, shard_path, &f);
        if (s) {
            rlx__fail_prefix(s, "%s: shard '%s' listed in the index", index_path, shards[i]);
            goto done;
        }
        free(shard_path);
        shard_path = NULL;
        /* Every tensor of the shard must be one the index sends to this very shard. */
        for (size_t t = 0; t < f->count; t++) {
            const char *name = f->tensors[t].name;
            const json_t *m = json_object_get(map, name);
            if (!m) {
                s = rlx__fail(RLX_ERR_FORMAT, "%s: holds tensor '%s', which %s does not list",
                              f->path, name, index_path);
                goto done;
            }
            if (strcmp(json_string_value(m), shards[i])) {
                s = rlx__fail(RLX_ERR_FORMAT,
                              "%s: holds tensor '%s', but %s maps it to shard '%s'", f->path, name,
                              index_path, json_string_value(m));
                goto done;
            }
        }
        s = append_file(w, f);
        if (s) goto done;
    }
    /* And every tensor of the index must be in the shard it names. */
    json_object_foreach(map, key, val) {
        const char *f = json_string_value(val);
        const rlx__st_file *file = NULL;
        for (size_t i = 0; i < w->nfiles && !file; i++) {
            const char *base = strrchr(w->files[i].path, '/');
            if (strcmp(base ? base + 1 : w->files[i].path, f) == 0) file = &w->files[i];
        }
        if (!file || !shard_has(file, key)) {
            s = rlx__fail(RLX_ERR_FORMAT, "%s: maps tensor '%s' to shard '%s', which does not hold it",
                          index_path, key, f);
            goto done;
        }
    }
    s = sort_and_check(w);

done:
    free(shard_path);
    free(shards);
    json_decref(root);
    return s;
}

static rlx_status open_dir(const char *model_dir, const rlx_weights_open_params *p, rlx_weights **out) {
    /* Trailing slashes would double up in every path we print. */
    size_t dl = strlen(model_dir);
    while (dl > 1 && model_dir[dl - 1] == '/') dl--;
    char *dir = rlx__malloc(dl + 1, "a directory name");
    if (!dir) return RLX_ERR_OUT_OF_MEMORY;
    memcpy(dir, model_dir, dl);
    dir[dl] = '\0';

    rlx_weights *w = NULL;
    char *cfg_path = NULL, *single = NULL, *index = NULL, *text = NULL;
    rlx_status s = new_with_origin(dir, &w);
    if (s) goto fail;
    w->dir = dir;
    dir = NULL;
    w->read_into_memory = p->read_into_memory;

    struct stat st;
    if (stat(w->dir, &st) != 0) {
        s = rlx__fail(RLX_ERR_IO, "%s: cannot open model directory: %s", w->dir, strerror(errno));
        goto fail;
    }
    if (!S_ISDIR(st.st_mode)) {
        s = rlx__fail(RLX_ERR_IO, "%s: not a directory (use rlx_weights_open_file for one file)",
                      w->dir);
        goto fail;
    }

    cfg_path = path_join(w->dir, "config.json");
    single = path_join(w->dir, "model.safetensors");
    index = path_join(w->dir, "model.safetensors.index.json");
    if (!cfg_path || !single || !index) {
        s = RLX_ERR_OUT_OF_MEMORY;
        goto fail;
    }
    size_t len = 0;
    s = read_text(cfg_path, (size_t)16 << 20, &text, &len);
    if (s) goto fail;
    json_t *cfg = NULL;
    s = load_json_object(cfg_path, text, len, &cfg);
    if (s) goto fail;
    json_decref(cfg);
    w->config_json = text;
    text = NULL;

    if (stat(single, &st) == 0) {
        rlx__st_file *f = NULL;
        s = add_file(w, single, &f);
        if (!s) s = append_file(w, f);
        if (!s) s = sort_and_check(w);
    } else if (errno != ENOENT) {
        s = rlx__fail(RLX_ERR_IO, "%s: %s", single, strerror(errno));
    } else if (stat(index, &st) == 0) {
        s = open_sharded(w, w->dir, index);
    } else if (errno != ENOENT) {
        s = rlx__fail(RLX_ERR_IO, "%s: %s", index, strerror(errno));
    } else {
        s = rlx__fail(RLX_ERR_IO,
                      "%s: no model.safetensors or model.safetensors.index.json in the directory",
                      w->dir);
    }
    if (s) goto fail;
    free(cfg_path);
    free(single);
    free(index);
    *out = w;
    return RLX_OK;

fail:
    free(text);
    free(cfg_path);
    free(single);
    free(index);
    free(dir);
    rlx_weights_destroy(w);
    return s;
}

rlx_weights_open_params rlx_weights_open_default_params(void) {
    rlx_weights_open_params p = {.read_into_memory = 0, .check_finite = 0};
    return p;
}

/* Opens a directory or one file with p, then checks what p asks for. */
static rlx_status open_with(const char *path, int dir, const rlx_weights_open_params *params, rlx_weights **out) {
    const rlx_weights_open_params p = params ? *params : rlx_weights_open_default_params();
    if ((p.read_into_memory | p.check_finite) & ~1)
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_weights_open_ex: read_into_memory and check_finite are 0 or 1");
    rlx_weights *w = NULL;
    rlx_status s = dir ? open_dir(path, &p, &w) : open_one_file(path, &p, &w);
    if (!s && p.check_finite) s = rlx_weights_check_finite(w);
    if (s) {
        rlx_weights_destroy(w);
        return s;
    }
    *out = w;
    return RLX_OK;
}

rlx_status rlx_weights_open(const char *model_dir, rlx_weights **out) {
    if (!out || !model_dir) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_weights_open: NULL argument");
    *out = NULL;
    return open_with(model_dir, 1, NULL, out);
}

rlx_status rlx_weights_open_file(const char *path, rlx_weights **out) {
    if (!out || !path) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_weights_open_file: NULL argument");
    *out = NULL;
    return open_with(path, 0, NULL, out);
}

rlx_status rlx_weights_open_ex(const char *path, const rlx_weights_open_params *params, rlx_weights **out) {
    if (!out || !path) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_weights_open_ex: NULL argument");
    *out = NULL;
    struct stat st;
    if (stat(path, &st) != 0) return rlx__fail(RLX_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    return open_with(path, S_ISDIR(st.st_mode), params, out);
}

// ---- checks --------------------------------------------------------------------------------

/* Index of the first NaN or infinity among n elements of a float dtype, and how many there are. */
static size_t first_nonfinite(const void *data, rlx_dtype dtype, size_t n, size_t *count, int *is_nan) {
    const unsigned char *p = data;
    size_t first = n;
    *count = 0;
    for (size_t i = 0; i < n; i++) {
        int bad, nan;
        if (dtype == RLX_DTYPE_F32) {
            uint32_t u;
            memcpy(&u, p + 4 * i, 4);
            bad = (u & 0x7f800000u) == 0x7f800000u;
            nan = bad && (u & 0x007fffffu);
        } else {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            /* f16: 5 exponent bits; bf16: f32's 8 */
            const uint16_t exp = dtype == RLX_DTYPE_F16 ? 0x7c00u : 0x7f80u;
            bad = (h & exp) == exp;
            nan = bad && (h & (uint16_t)~(exp | 0x8000u));
        }
        if (!bad) continue;
        if (first == n) {
            first = i;
            *is_nan = nan;
        }
        (*count)++;
    }
    return first;
}

rlx_status rlx_weights_check_finite(const rlx_weights *w) {
    if (!w) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_weights_check_finite: weights are NULL");
    rlx_status s = rlx__weights_check_intact(w);
    if (s) return s;
    for (size_t i = 0; i < w->count; i++) {
        const rlx_tensor_view *v = &w->e[i].v;
        if (!rlx_dtype_is_float_weight(v->dtype)) continue; /* buffers rlx never computes with */
        const size_t n = v->nbytes / rlx_dtype_size(v->dtype);
        size_t count;
        int is_nan = 0;
        const size_t first = first_nonfinite(v->data, v->dtype, n, &count, &is_nan);
        if (first < n)
            return rlx__fail(RLX_ERR_FORMAT, "%s: tensor '%s' (%s) holds %zu non-finite value%s of %zu; the first is element %zu (%s)",
                             v->file, v->name, rlx_dtype_name(v->dtype), count, count > 1 ? "s" : "", n, first,
                             is_nan ? "NaN" : "infinity");
    }
    return RLX_OK;
}

rlx_status rlx__weights_check_intact(const rlx_weights *w) {
    for (size_t i = 0; w && i < w->nfiles; i++) {
        rlx_status s = rlx__st_check_intact(&w->files[i]);
        if (s) return s;
    }
    return RLX_OK;
}

// ---- in-memory sets --------------------------------------------------------------------------

/* rlx_weights_add, and with owned != NULL (== data) the entry takes that buffer instead of a copy. */
static rlx_status add_tensor(rlx_weights *w, const char *name, rlx_dtype dtype, int ndim,
                             const int64_t *shape, const void *data, void *owned) {
    if (!w || !name)
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_weights_add: %s is NULL", w ? "name" : "w");
    if (!name[0] || strcmp(name, "__metadata__") == 0)
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_weights_add: '%s' is not a usable tensor name",
                         name);
    if (rlx_dtype_size(dtype) == 0)
        return rlx__fail(RLX_ERR_UNSUPPORTED, "rlx_weights_add: tensor '%s': dtype %d is not an rlx_dtype",
                         name, (int)dtype);
    if (ndim < 0 || ndim > RLX_MAX_DIMS || (ndim > 0 && !shape))
        return rlx__fail(RLX_ERR_SHAPE, "rlx_weights_add: tensor '%s': ndim %d (allowed 0..%d%s)",
                         name, ndim, RLX_MAX_DIMS, ndim > 0 && !shape ? ", shape is NULL" : "");
    size_t nelem = 1, nbytes;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0)
            return rlx__fail(RLX_ERR_SHAPE, "rlx_weights_add: tensor '%s': shape[%d] = %lld is negative",
                             name, d, (long long)shape[d]);
        if (!rlx__mul_size(nelem, (size_t)shape[d], &nelem))
            return rlx__fail(RLX_ERR_SHAPE, "rlx_weights_add: tensor '%s': element count overflows",
                             name);
    }
    if (!rlx__mul_size(nelem, rlx_dtype_size(dtype), &nbytes))
        return rlx__fail(RLX_ERR_SHAPE, "rlx_weights_add: tensor '%s': byte count overflows", name);
    if (nbytes && !data)
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_weights_add: tensor '%s': data is NULL", name);
    int found;
    size_t pos = find_pos(w, name, &found);
    if (found)
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_weights_add: tensor '%s' already exists in %s",
                         name, w->origin);
    rlx_status s = reserve(w, 1);
    if (s) return s;
    char *nm = rlx__strdup(name);
    void *copy = owned ? owned : rlx__malloc(nbytes, "a tensor copy");
    if (!nm || !copy) {
        free(nm);
        if (!owned) free(copy);
        return RLX_ERR_OUT_OF_MEMORY;
    }
    if (nbytes && !owned) memcpy(copy, data, nbytes);
    memmove(&w->e[pos + 1], &w->e[pos], (w->count - pos) * sizeof *w->e);
    w_entry *e = &w->e[pos];
    memset(e, 0, sizeof *e);
    e->owned_name = nm;
    e->owned_data = copy;
    e->v.name = nm;
    e->v.dtype = dtype;
    e->v.ndim = ndim;
    for (int d = 0; d < ndim; d++) e->v.shape[d] = shape[d];
    e->v.data = copy;
    e->v.nbytes = nbytes;
    e->v.file = memory_file;
    w->count++;
    return RLX_OK;
}

rlx_status rlx_weights_add(rlx_weights *w, const char *name, rlx_dtype dtype, int ndim,
                           const int64_t *shape, const void *data) {
    return add_tensor(w, name, dtype, ndim, shape, data, NULL);
}

rlx_status rlx__weights_add_owned(rlx_weights *w, const char *name, rlx_dtype dtype, int ndim,
                                  const int64_t *shape, void *data) {
    rlx_status s = add_tensor(w, name, dtype, ndim, shape, data, data);
    if (s) free(data);
    return s;
}

rlx_status rlx_weights_set_config_json(rlx_weights *w, const char *json_text) {
    if (!w) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_weights_set_config_json: w is NULL");
    char *copy = NULL;
    if (json_text) {
        copy = rlx__strdup(json_text);
        if (!copy) return RLX_ERR_OUT_OF_MEMORY;
    }
    free(w->config_json);
    w->config_json = copy;
    return RLX_OK;
}

// ---- lookup ----------------------------------------------------------------------------------

/* Levenshtein distance, capped: only used to suggest a name when a lookup fails. */
static size_t edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 256 || lb > 256) return SIZE_MAX;
    size_t row[257];
    for (size_t j = 0; j <= lb; j++) row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

rlx_status rlx_weights_get(const rlx_weights *w, const char *name, rlx_tensor_view *out) {
    if (!w || !name || !out)
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_weights_get: NULL argument");
    int found;
    size_t pos = find_pos(w, name, &found);
    if (found) {
        *out = w->e[pos].v;
        return RLX_OK;
    }
    /* Suggest the closest name: a missing ".mlp" or a layer-index typo is the usual cause. */
    const char *best = NULL;
    size_t best_d = SIZE_MAX;
    for (size_t i = 0; i < w->count; i++) {
        size_t d = edit_distance(name, w->e[i].v.name);
        if (d < best_d) {
            best_d = d;
            best = w->e[i].v.name;
        }
    }
    size_t nl = strlen(name);
    if (best && best_d <= 2 + nl / 4)
        return rlx__fail(RLX_ERR_MISSING_WEIGHT, "tensor '%s' not found in %s (%zu tensors; closest: '%s')",
                         name, w->origin, w->count, best);
    return rlx__fail(RLX_ERR_MISSING_WEIGHT, "tensor '%s' not found in %s (%zu tensors)", name,
                     w->origin, w->count);
}

int rlx_weights_has(const rlx_weights *w, const char *name, rlx_tensor_view *out) {
    if (!w || !name) return 0;
    int found;
    size_t pos = find_pos(w, name, &found);
    if (found && out) *out = w->e[pos].v;
    return found;
}

size_t rlx_weights_count(const rlx_weights *w) { return w ? w->count : 0; }

rlx_status rlx_weights_at(const rlx_weights *w, size_t i, rlx_tensor_view *out) {
    if (!w || !out) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_weights_at: NULL argument");
    if (i >= w->count)
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_weights_at: index %zu out of range (%zu tensors in %s)",
                         i, w->count, w->origin);
    *out = w->e[i].v;
    return RLX_OK;
}

const char *rlx_weights_dir(const rlx_weights *w) { return w ? w->dir : NULL; }

const char *rlx_weights_config_json(const rlx_weights *w) { return w ? w->config_json : NULL; }

// ---- saving ----------------------------------------------------------------------------------

rlx_status rlx_weights_save_file(const rlx_weights *w, const char *path) {
    if (!w || !path) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_weights_save_file: NULL argument");
    rlx_status cs = rlx__weights_check_intact(w); /* the mapped data is about to be read */
    if (cs) return cs;
    rlx_tensor_view *views = rlx__calloc(w->count, sizeof *views, "tensor views");
    if (!views) return RLX_ERR_OUT_OF_MEMORY;
    for (size_t i = 0; i < w->count; i++) views[i] = w->e[i].v;
    rlx_status s = rlx__st_write(path, views, w->count);
    free(views);
    return s;
}

static rlx_status write_text_file(const char *path, const char *text) {
    /* Temporary file + rename, like the safetensors writer: never a half-written config. */
    size_t n = strlen(path) + 16;
    char *tmp = rlx__malloc(n, "a temporary file name");
    if (!tmp) return RLX_ERR_OUT_OF_MEMORY;
    snprintf(tmp, n, "%s.tmp-XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        rlx_status s = rlx__fail(RLX_ERR_IO, "%s: cannot create a temporary file next to it: %s",
                                 path, strerror(errno));
        free(tmp);
        return s;
    }
    size_t len = strlen(text), done = 0;
    int failed = fchmod(fd, 0644) != 0;
    while (!failed && done < len) {
        ssize_t r = write(fd, text + done, len - done);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) failed = 1;
        else done += (size_t)r;
    }
    int e = errno;
    if (close(fd) != 0 && !failed) {
        failed = 1;
        e = errno;
    }
    if (!failed && rename(tmp, path) != 0) {
        failed = 1;
        e = errno;
    }
    rlx_status s = RLX_OK;
    if (failed) {
        unlink(tmp);
        s = rlx__fail(RLX_ERR_IO, "%s: write failed: %s", path, strerror(e));
    }
    free(tmp);
    return s;
}

rlx_status rlx_weights_save_dir(const rlx_weights *w, const char *dir) {
    if (!w || !dir) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_weights_save_dir: NULL argument");
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return rlx__fail(RLX_ERR_IO, "%s: cannot create directory: %s", dir, strerror(errno));
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return rlx__fail(RLX_ERR_IO, "%s: not a directory", dir);
    char *cfg = path_join(dir, "config.json");
    char *model = path_join(dir, "model.safetensors");
    rlx_status s = (!cfg || !model) ? RLX_ERR_OUT_OF_MEMORY : RLX_OK;
    if (!s && w->config_json) s = write_text_file(cfg, w->config_json);
    if (!s) s = rlx_weights_save_file(w, model);
    free(cfg);
    free(model);
    return s;
}
