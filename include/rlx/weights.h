/* rlx — checkpoints: Hugging Face model directories and safetensors files.
 *
 * A weights handle maps tensor names to typed, shaped views. Files are mmapped read-only;
 * views stay valid until rlx_weights_destroy (adding tensors does not move earlier views).
 * Every view's data is aligned to its element size, so it can be read through a typed pointer
 * (a tensor stored unaligned in a file, which the reference writer never produces, is copied
 * once at open). Tensors of every whole-byte safetensors dtype are held (rlx_dtype); models compute
 * with F32, F16 and BF16 weights, and a build refuses a stage that needs a tensor of another type,
 * naming it. Handles are not thread-safe for mutation;
 * concurrent lookups on a handle nobody mutates are fine.
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
