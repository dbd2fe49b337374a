/* rlx — checkpoints: Hugging Face model directories and safetensors files.
 *
 * A weights handle maps tensor names to typed, shaped views. Views stay valid until
 * rlx_weights_destroy (adding tensors does not move earlier views). Every view's data is aligned
 * to its element size, so it can be read through a typed pointer (a tensor stored unaligned in a
 * file, which the reference writer never produces, is copied once at open). Supported dtypes:
 * F32, F16, BF16. Handles are not thread-safe for mutation; concurrent lookups on a handle nobody
 * mutates are fine.
 *
 * The mmap contract. By default every file is mapped read-only (MAP_PRIVATE) and tensor data is
 * read through the mapping when it is used: by rlx_model_build (conversion and upload), by
 * rlx_weights_save_file and rlx_weights_check_finite, and by whoever reads a view. The files must
 * therefore stay intact while the set is open. Replacing a file (a new file renamed over it, as
 * rlx_weights_save_file and most tools do) is safe: the mapping keeps the old one. Truncating or
 * rewriting a file in place is not: reading a mapped page past the file's new end raises SIGBUS
 * in the reading process, which no library can turn into a status. rlx checks before it reads
 * (rlx_model_build, rlx_weights_save_file, rlx_weights_check_finite) that every mapped file
 * still has its size at open, and fails with RLX_ERR_IO naming the file and both sizes
 * otherwise; a truncation during the read itself cannot be caught. When the files may change
 * while open, open with rlx_weights_open_params.read_into_memory = 1: each file is read into
 * host memory at open (its size in RAM) and nothing depends on it afterwards.
 */
#ifndef RLX_WEIGHTS_H
#define RLX_WEIGHTS_H

#include "rlx/rlx.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RLX_MAX_DIMS 8

typedef struct rlx_weights rlx_weights;

typedef struct rlx_tensor_view {
    const char *name;              /* tensor name, e.g. "model.embed_tokens.weight" */
    rlx_dtype dtype;               /* F32, F16, BF16, or a type rlx only holds (I64, BOOL, …) */
    int ndim;                      /* 0..RLX_MAX_DIMS */
    int64_t shape[RLX_MAX_DIMS];   /* row-major, outermost first */
    const void *data;              /* little-endian elements, C order */
    size_t nbytes;                 /* == product(shape) * dtype size */
    const char *file;              /* file the tensor came from; "<memory>" if added in memory */
} rlx_tensor_view;

/* Opens a Hugging Face model directory: config.json plus either model.safetensors or
 * model.safetensors.index.json with its shards (model.safetensors wins when both exist, as in
 * transformers). Every file is validated as the reference safetensors implementation does, and
 * the index must match the shards exactly (each tensor in the shard the index names, nothing
 * unlisted, shard names plain file names inside the directory). Errors name the file, the
 * tensor and the rule broken: RLX_ERR_IO (missing/unreadable files), RLX_ERR_FORMAT (malformed
 * content), RLX_ERR_UNSUPPORTED (sub-byte dtypes F4/F6_*, complex C64, more than RLX_MAX_DIMS
 * dims). */
RLX_API rlx_status rlx_weights_open(const char *model_dir, rlx_weights **out);

/* Opens one .safetensors file (no config). */
RLX_API rlx_status rlx_weights_open_file(const char *path, rlx_weights **out);

typedef struct rlx_weights_open_params {
    int read_into_memory; /* 0 (default): files are mapped (the mmap contract above); 1: each file
                             is read into host memory at open, so later changes to it cannot
                             reach the set (costs the files' size in RAM, and the read time) */
    int check_finite;     /* 0 (default); 1: rlx_weights_check_finite runs at open, and the first
                             tensor holding a NaN or an infinity fails the open */
} rlx_weights_open_params;

RLX_API rlx_weights_open_params rlx_weights_open_default_params(void);

/* rlx_weights_open (path a model directory) or rlx_weights_open_file (path a file) with params
 * (NULL = the defaults: what those two functions do). Fields other than 0 or 1 are
 * RLX_ERR_INVALID_ARGUMENT. */
RLX_API rlx_status rlx_weights_open_ex(const char *path, const rlx_weights_open_params *params,
                                       rlx_weights **out);

/* Scans every F32/F16/BF16 tensor (each byte once, in name order) and fails on the first holding
 * a NaN or an infinity: RLX_ERR_FORMAT "<file>: tensor '<name>' (BF16) holds 3 non-finite values
 * of 4096; the first is element 17 (NaN)". Tensors of other dtypes (buffers no stage computes
 * with) are skipped. */
RLX_API rlx_status rlx_weights_check_finite(const rlx_weights *w);

/* An empty in-memory set, to be filled with rlx_weights_add (random weights, tests). */
RLX_API rlx_status rlx_weights_create(rlx_weights **out);

/* Copies a tensor into a set (in-memory or opened). Refused: duplicate names and empty or
 * "__metadata__" names (RLX_ERR_INVALID_ARGUMENT), a dtype outside rlx_dtype
 * (RLX_ERR_UNSUPPORTED), ndim outside 0..RLX_MAX_DIMS, negative dims or overflowing sizes
 * (RLX_ERR_SHAPE). data may be NULL only when the tensor has zero elements. */
RLX_API rlx_status rlx_weights_add(rlx_weights *w, const char *name, rlx_dtype dtype, int ndim,
                                   const int64_t *shape, const void *data);

/* Attaches config.json text to a set (copied; NULL removes it). */
RLX_API rlx_status rlx_weights_set_config_json(rlx_weights *w, const char *json_text);

/* destroy(NULL) is fine. */
RLX_API void rlx_weights_destroy(rlx_weights *w);

/* Looks a tensor up by name: RLX_ERR_MISSING_WEIGHT (message names the key) if absent. */
RLX_API rlx_status rlx_weights_get(const rlx_weights *w, const char *name, rlx_tensor_view *out);

/* Non-failing lookup: 1 and fills *out (when non-NULL) if present, else 0; records no error. */
RLX_API int rlx_weights_has(const rlx_weights *w, const char *name, rlx_tensor_view *out);

RLX_API size_t rlx_weights_count(const rlx_weights *w);
/* i-th tensor in name order. */
RLX_API rlx_status rlx_weights_at(const rlx_weights *w, size_t i, rlx_tensor_view *out);

/* Directory the set was opened from (NULL for files and in-memory sets). */
RLX_API const char *rlx_weights_dir(const rlx_weights *w);
/* config.json text (NUL-terminated), or NULL when there is none. */
RLX_API const char *rlx_weights_config_json(const rlx_weights *w);

/* Writes every tensor to one .safetensors file: header keys sorted, header padded with spaces
 * to a multiple of 8, data ordered by decreasing element size then name (the reference
 * writer's order, which keeps every tensor aligned). Written to a temporary file and renamed,
 * so saving over the file a set was opened from is safe. */
RLX_API rlx_status rlx_weights_save_file(const rlx_weights *w, const char *path);

/* Writes a model directory (created if missing): config.json (when the set has one) and
 * model.safetensors. */
RLX_API rlx_status rlx_weights_save_dir(const rlx_weights *w, const char *dir);

/* Converts n elements of src (F32/F16/BF16, also I32) to f32; src need not be aligned. Any
 * other dtype fills dst with NaN, and a NULL dst or src converts nothing (there is no status to
 * return). */
RLX_API void rlx_convert_to_f32(float *dst, const void *src, rlx_dtype dtype, size_t n);
/* Rounds f32 to bf16 / f16: round to nearest even, NaN stays a (quiet) NaN with its sign,
 * overflow goes to infinity, f16 subnormals are exact. Widening is exact. */
RLX_API uint16_t rlx_f32_to_bf16(float x);
RLX_API float rlx_bf16_to_f32(uint16_t x);
RLX_API uint16_t rlx_f32_to_f16(float x);
RLX_API float rlx_f16_to_f32(uint16_t x);

#ifdef __cplusplus
}
#endif

#endif /* RLX_WEIGHTS_H */
