/* rlx — GPU-first transformer prefill runtime.
 *
 * Core public header: status codes, error reporting, version. Every public
 * function returns an rlx_status (or documents otherwise); on failure a
 * detailed, thread-local message is available from rlx_last_error().
 * Nothing in the library ends the process.
 */
#ifndef RLX_RLX_H
#define RLX_RLX_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library is compiled with hidden visibility; RLX_API marks what it exports (librlx.so's
 * version script, cmake/librlx.map, exports exactly the functions these headers declare). For
 * users of the headers the attribute is harmless. */
#if defined(__GNUC__) || defined(__clang__)
#define RLX_API __attribute__((visibility("default")))
#else
#define RLX_API
#endif

/* The version of these headers. This is the one place it is written: CMake reads it from here
 * for the project, the SONAME (librlx.so.MAJOR.MINOR while MAJOR is 0: a 0.x minor release may
 * change the ABI; librlx.so.MAJOR after), rlxConfigVersion.cmake and rlx.pc. */
#define RLX_VERSION_MAJOR 0
#define RLX_VERSION_MINOR 1
#define RLX_VERSION_PATCH 0
/* MAJOR·10000 + MINOR·100 + PATCH, comparable with rlx_version(). */
#define RLX_VERSION (RLX_VERSION_MAJOR * 10000 + RLX_VERSION_MINOR * 100 + RLX_VERSION_PATCH)
#define RLX__STR2(x) #x
#define RLX__STR(x) RLX__STR2(x)
#define RLX_VERSION_STRING RLX__STR(RLX_VERSION_MAJOR) "." RLX__STR(RLX_VERSION_MINOR) "." RLX__STR(RLX_VERSION_PATCH)

/* One table for every status: enum value, short name, message.
 * Values are only ever appended. */
#define RLX_STATUS_MAP(X)                                                                  \
    X(RLX_OK, 0, "success")                                                                \
    X(RLX_ERR_INVALID_ARGUMENT, 1, "invalid argument")                                     \
    X(RLX_ERR_IO, 2, "I/O error")                                                          \
    X(RLX_ERR_FORMAT, 3, "malformed file")                                                 \
    X(RLX_ERR_UNSUPPORTED, 4, "unsupported")                                               \
    X(RLX_ERR_CONFIG, 5, "invalid model config")                                           \
    X(RLX_ERR_MISSING_WEIGHT, 6, "missing weight")                                         \
    X(RLX_ERR_SHAPE, 7, "shape mismatch")                                                  \
    X(RLX_ERR_OUT_OF_MEMORY, 8, "out of memory")                                           \
    X(RLX_ERR_BUILD, 9, "flow build failed")                                               \
    X(RLX_ERR_DEVICE, 10, "device error")                                                  \
    X(RLX_ERR_NO_DEVICE, 11, "no device available")                                        \
    X(RLX_ERR_SESSION_BROKEN, 12, "session unusable after a device fault")                 \
    X(RLX_ERR_TOKEN_RANGE, 13, "token id out of range")                                    \
    X(RLX_ERR_PROFILE, 14, "invalid compile profile")                                      \
    X(RLX_ERR_INTERNAL, 15, "internal error")                                              \
    X(RLX_ERR_COMM, 16, "tensor-parallel communication failed")

typedef enum rlx_status {
#define RLX__STATUS_ENUM(name, value, msg) name = value,
    RLX_STATUS_MAP(RLX__STATUS_ENUM)
#undef RLX__STATUS_ENUM
} rlx_status;

/* Static text for a status ("out of memory"); never NULL. */
RLX_API const char *rlx_status_string(rlx_status status);

/* Symbolic name of a status ("RLX_ERR_OUT_OF_MEMORY"); never NULL. */
RLX_API const char *rlx_status_name(rlx_status status);

/* Detailed message for the last failure on this thread: names the file, tensor, key, bytes
 * involved. Empty string when no failure has been recorded. Valid until the next rlx call on
 * this thread. */
RLX_API const char *rlx_last_error(void);

/* Clears the last error of this thread. */
RLX_API void rlx_clear_error(void);

/* The version of the library that is running, RLX_VERSION's encoding: a program can check that
 * the librlx.so it loaded has the ABI it was compiled against (rlx_version() / 100 ==
 * RLX_VERSION / 100 while the major is 0, rlx_version() / 10000 == RLX_VERSION_MAJOR after) and is
 * at least as new (rlx_version() >= RLX_VERSION). */
RLX_API unsigned rlx_version(void);
/* The same as text, "0.1.0" (RLX_VERSION_STRING of the library's build). */
RLX_API const char *rlx_version_string(void);

/* Element types of tensors. Values are only ever appended. rlx computes with F32, F16 and BF16
 * weights (and I32 ids); the other types exist so that a checkpoint can carry tensors rlx never
 * reads — old transformers saved int64 `embeddings.position_ids`, bool attention masks — and
 * still open: such a tensor is listed as unused, and a stage that needs one is refused at build
 * naming it. */
typedef enum rlx_dtype {
    RLX_DTYPE_F32 = 0,
    RLX_DTYPE_F16 = 1,
    RLX_DTYPE_BF16 = 2,
    RLX_DTYPE_I32 = 3,
    RLX_DTYPE_I64 = 4,
    RLX_DTYPE_I16 = 5,
    RLX_DTYPE_I8 = 6,
    RLX_DTYPE_U8 = 7,
    RLX_DTYPE_BOOL = 8,
    RLX_DTYPE_F64 = 9,
    RLX_DTYPE_U16 = 10,
    RLX_DTYPE_U32 = 11,
    RLX_DTYPE_U64 = 12,
    RLX_DTYPE_F8_E4M3 = 13,
    RLX_DTYPE_F8_E5M2 = 14,
    RLX_DTYPE_F8_E8M0 = 15,
} rlx_dtype;

/* Fusion policy of the planner (profile key fusion.policy). */
typedef enum rlx_fusion_policy {
    RLX_FUSION_FUSED = 0, /* map stage patterns onto fused kernels (default) */
    RLX_FUSION_NONE = 1,  /* one primitive kernel per stage */
} rlx_fusion_policy;

/* Device compute precision (profile key precision.compute). */
typedef enum rlx_precision {
    RLX_PRECISION_BF16 = 0, /* bf16 weights and activations, f32 accumulation (default) */
    RLX_PRECISION_F32 = 1,  /* f32 throughout, TF32 off: for debugging */
    RLX_PRECISION_F16 = 2,
} rlx_precision;

/* The safetensors spelling ("F32", "I64", …), "?" for a value outside the enum. */
RLX_API const char *rlx_dtype_name(rlx_dtype dtype);
/* Bytes per element, 0 for a value outside the enum. */
RLX_API size_t rlx_dtype_size(rlx_dtype dtype);
/* 1 for the types rlx computes with as weights: F32, F16 and BF16. */
RLX_API int rlx_dtype_is_float_weight(rlx_dtype dtype);

#ifdef __cplusplus
}
#endif

#endif /* RLX_RLX_H */
