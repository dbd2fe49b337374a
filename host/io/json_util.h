/* Internal: small helpers over jansson shared by the JSON readers (safetensors headers, index
 * files, config.json parsers). */
#ifndef RLX_HOST_JSON_UTIL_H
#define RLX_HOST_JSON_UTIL_H

#include <jansson.h>

/* "an object", "an integer", … — for "key 'x': expected a string, found an integer". */
const char *rlx__json_type_name(const json_t *v);

#endif
