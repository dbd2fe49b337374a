/* Internal: small helpers over jansson shared by the JSON readers (safetensors headers, index
 * files, config.json parsers). */
#ifndef RLX_HOST_JSON_UTIL_H
#define RLX_HOST_JSON_UTIL_H

#include "core/internal.h"

#include <jansson.h>

/* "an object", "an integer", … — for "key 'x': expected a string, found an integer". */
const char *rlx__json_type_name(const json_t *v);

/* The integer value of config key `prefix``key` (v non-NULL): a JSON integer only — 32.0 is
 * refused as transformers would fail on it (nn.Embedding(32.0, ...)), with RLX_ERR_CONFIG
 * "<src>: key 'k': expected an integer, found a real number (32)". One rule for every
 * config.json reader. */
rlx_status rlx__json_config_int(const char *src, const char *prefix, const char *key, const json_t *v, int64_t *out);

#endif
