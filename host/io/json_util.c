/* Helpers over jansson shared by the JSON readers. */
#include "io/json_util.h"

const char *rlx__json_type_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "?";
}

rlx_status rlx__json_config_int(const char *src, const char *prefix, const char *key, const json_t *v, int64_t *out) {
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return RLX_OK;
    }
    if (json_is_real(v))
        return rlx__fail(RLX_ERR_CONFIG, "%s: key '%s%s': expected an integer, found a real number (%g)", src, prefix, key,
                         json_real_value(v));
    return rlx__fail(RLX_ERR_CONFIG, "%s: key '%s%s': expected an integer, found %s", src, prefix, key, rlx__json_type_name(v));
}
