/* End tokens of a Hugging Face model directory (rlx_eos_tokens, rlx/generate.h): eos_token_id of
 * generation_config.json, else of config.json — transformers' generate() reads the former, which
 * save_pretrained writes from the latter. */
#include "io/json_util.h"
#include "rlx/generate.h"
#include "rlx/weights.h"
#include "core/internal.h"

#include <stdio.h>
#include <string.h>

/* 1 with *ids filled when obj has eos_token_id (int or list of ints), 0 when it has none or null,
 * or a status < 0 (negated) with the message recorded. */
static int eos_of(const json_t *obj, const char *file, int32_t *ids, int64_t cap, int64_t *n) {
    const json_t *e = json_object_get(obj, "eos_token_id");
    if (!e || json_is_null(e)) return 0;
    if (json_is_integer(e)) {
        if (cap < 1) return -(int)rlx__fail(RLX_ERR_INVALID_ARGUMENT, "%s: eos_token_id: 1 id, room for %lld", file, (long long)cap);
        json_int_t v = json_integer_value(e);
        if (v < 0 || v > INT32_MAX) return -(int)rlx__fail(RLX_ERR_CONFIG, "%s: eos_token_id %lld is not a token id", file, (long long)v);
        ids[0] = (int32_t)v;
        *n = 1;
        return 1;
    }
    if (!json_is_array(e))
        return -(int)rlx__fail(RLX_ERR_CONFIG, "%s: eos_token_id: expected an integer or a list of integers, found %s", file,
                               rlx__json_type_name(e));
    const int64_t k = (int64_t)json_array_size(e);
    if (k > cap) return -(int)rlx__fail(RLX_ERR_INVALID_ARGUMENT, "%s: eos_token_id lists %lld ids, room for %lld", file, (long long)k, (long long)cap);
    for (int64_t i = 0; i < k; i++) {
        const json_t *x = json_array_get(e, (size_t)i);
        if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) > INT32_MAX)
            return -(int)rlx__fail(RLX_ERR_CONFIG, "%s: eos_token_id[%lld] is not a token id (%s)", file, (long long)i, rlx__json_type_name(x));
        ids[i] = (int32_t)json_integer_value(x);
    }
    *n = k;
    return 1;
}

rlx_status rlx_eos_tokens(const rlx_weights *w, int32_t *ids, int64_t cap, int64_t *n) {
    if (!w || !ids || !n) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_eos_tokens: NULL argument");
    *n = 0;
    const char *dir = rlx_weights_dir(w);
    if (dir) {
        char path[4096];
        snprintf(path, sizeof path, "%s/generation_config.json", dir);
        FILE *f = fopen(path, "rb");
        if (f) {
            fclose(f);
            json_error_t je;
            json_t *j = json_load_file(path, 0, &je);
            if (!j) return rlx__fail(RLX_ERR_FORMAT, "%s:%d:%d: %s", path, je.line, je.column, je.text);
            int r = json_is_object(j) ? eos_of(j, path, ids, cap, n) : -(int)rlx__fail(RLX_ERR_FORMAT, "%s: not a JSON object", path);
            json_decref(j);
            if (r) return r < 0 ? (rlx_status)-r : RLX_OK;
        }
    }
    const char *cfg = rlx_weights_config_json(w);
    if (!cfg) return RLX_OK;
    json_error_t je;
    json_t *j = json_loads(cfg, 0, &je);
    if (!j) return rlx__fail(RLX_ERR_FORMAT, "config.json:%d:%d: %s", je.line, je.column, je.text);
    int r = json_is_object(j) ? eos_of(j, "config.json", ids, cap, n) : 0;
    json_decref(j);
    return r < 0 ? (rlx_status)-r : RLX_OK;
}
