/* rlx — checkpoints: Hugging Face model directories and safetensors files.
 *
 * A weights handle maps tensor names to typed, shaped views. Files are mmapped read-only;
 * views stay valid until rlx_weights_destroy. Supported dtypes: F32, F16, BF16.
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
    rlx_dtype dtype;               /* F32, F16 or BF16 */
    int ndim;                      /* 0..RLX_MAX_DIMS */
    int64_t shape[RLX_MAX_DIMS];   /* row-major, outermost first */
    const void *data;              /* little-endian elements, C order */
    size_t nbytes;                 /* == product(shape) * dtype size */
    const char *file;              /* file the tensor came from; "<memory>" if added in memory */
} rlx_tensor_view;

/* Opens a Hugging Face model directory: config.json plus either model.safetensors or
 * model.safetensors.index.json with its shards. Every file is validated as the reference
 * safetensors implementation does; errors name the file, the tensor and the rule broken. */
RLX_API rlx_status rlx_weights_open(const char *model_dir, rlx_weights **out);

/* Opens one .safetensors file (no config). */
RLX_API rlx_status rlx_weights_open_file(const char *path, rlx_weights **out);

/* An empty in-memory set, to be filled with rlx_weights_add (random weights, tests). */
RLX_API rlx_status rlx_weights_create(rlx_weights **out);

/* Copies a tensor into an in-memory set. Duplicate names are refused. */
RLX_API rlx_status rlx_weights_add(rlx_weights *w, const char *name, rlx_dtype dtype, int ndim,
                                   const int64_t *shape, const void *data);

/* Attaches config.json text to an in-memory set (copied). */
RLX_API rlx_status rlx_weights_set_config_json(rlx_weights *w, const char *json_text);

/* destroy(NULL) is fine. */
RLX_API void rlx_weights_destroy(rlx_weights *w);

/* Looks a tensor up by name: RLX_ERR_MISSING_WEIGHT (message names the key) if absent. */
RLX_API rlx_status rlx_weights_get(const rlx_weights *w, const char *name, rlx_tensor_view *out);

/* Non-failing lookup: 1 and fills *out if present, else 0. */
RLX_API int rlx_weights_has(const rlx_weights *w, const char *name, rlx_tensor_view *out);

RLX_API size_t rlx_weights_count(const rlx_weights *w);
/* i-th tensor in name order. */
RLX_API rlx_status rlx_weights_at(const rlx_weights *w, size_t i, rlx_tensor_view *out);

/* Directory the set was opened from (NULL for files and in-memory sets). */
RLX_API const char *rlx_weights_dir(const rlx_weights *w);
/* config.json text (NUL-terminated), or NULL when there is none. */
RLX_API const char *rlx_weights_config_json(const rlx_weights *w);

/* Writes every tensor to one .safetensors file (header padded to 8 bytes, names sorted).
 * With config_dir non-NULL... see rlx_weights_save_dir. */
RLX_API rlx_status rlx_weights_save_file(const rlx_weights *w, const char *path);

/* Writes a model directory: config.json (when the set has one) and model.safetensors. */
RLX_API rlx_status rlx_weights_save_dir(const rlx_weights *w, const char *dir);

/* Converts n elements of src (F32/F16/BF16) to f32. */
RLX_API void rlx_convert_to_f32(float *dst, const void *src, rlx_dtype dtype, size_t n);
/* Rounds f32 to bf16 (round to nearest even; NaN stays NaN). */
RLX_API uint16_t rlx_f32_to_bf16(float x);
RLX_API float rlx_bf16_to_f32(uint16_t x);
RLX_API uint16_t rlx_f32_to_f16(float x);
RLX_API float rlx_f16_to_f32(uint16_t x);

#ifdef __cplusplus
}
#endif

#endif /* RLX_WEIGHTS_H */
