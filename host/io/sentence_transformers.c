/* sentence-transformers directories: the module pipeline in modules.json.
 *
 * SentenceTransformer(dir).encode runs the modules modules.json lists, in order: a Transformer
 * (the encoder whose weights are at the module's path, "" = the directory itself), a Pooling
 * (its config.json picks the mode), and optionally Normalize (L2). rlx runs exactly that
 * pipeline, so a user gets the vectors sentence-transformers would give. A module rlx cannot
 * run (Dense, LayerNorm, WordWeights, CNN, LSTM, a custom class…) is refused naming it, never
 * skipped: skipping would silently change the vectors. Directories without modules.json but
 * with 1_Pooling/config.json (some hub exports) keep that pooling.
 */
#include "io/json_util.h"
#include "core/internal.h"
#include "rlx/encoder.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define ST_PREFIX "sentence_transformers.models."

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static rlx_status load_object(const char *path, json_t **out, int want_array) {
    json_error_t err;
    json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
    if (!j) return rlx__fail(RLX_ERR_FORMAT, "%s: not valid JSON (line %d, column %d): %s", path, err.line, err.column, err.text);
    if (want_array ? !json_is_array(j) : !json_is_object(j)) {
        rlx_status s = rlx__fail(RLX_ERR_FORMAT, "%s: top level is %s, expected %s", path, rlx__json_type_name(j),
                                 want_array ? "a JSON array of modules" : "a JSON object");
        json_decref(j);
        return s;
    }
    *out = j;
    return RLX_OK;
}

/* A Pooling module's config.json: exactly one of the modes rlx implements (cls, mean). */
static rlx_status read_pooling(const char *path, rlx_pool *pool) {
    json_t *j;
    rlx_status s = load_object(path, &j, 0);
    if (s) return s;
    static const char *modes[] = {"pooling_mode_cls_token",           "pooling_mode_mean_tokens",
                                  "pooling_mode_max_tokens",          "pooling_mode_mean_sqrt_len_tokens",
                                  "pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken"};
    int on[6], n_on = 0;
    for (int i = 0; i < 6; i++) n_on += on[i] = json_is_true(json_object_get(j, modes[i]));
    json_decref(j);
    if (n_on != 1 || !(on[0] || on[1])) {
        const char *which = "none";
        for (int i = 0; i < 6; i++)
            if (on[i]) which = modes[i];
        return rlx__fail(RLX_ERR_UNSUPPORTED, "%s: pooling %s%s is not one rlx implements (cls or mean)", path, which,
                         n_on > 1 ? " and others" : "");
    }
    *pool = on[0] ? RLX_POOL_CLS : RLX_POOL_MEAN;
    return RLX_OK;
}

/* A module path must stay inside the directory: a plain relative path, no "..". */
static int path_ok(const char *p) {
    if (p[0] == '/' || strstr(p, "..") || strchr(p, '\\')) return 0;
    return strlen(p) < 200;
}

rlx_status rlx_sentence_transformers_read(const char *dir, rlx_st_pipeline *out) {
    if (!dir || !out) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_sentence_transformers_read: NULL argument");
    rlx_st_pipeline p;
    memset(&p, 0, sizeof p);
    p.pool = RLX_POOL_MEAN;
    char path[1400];
    snprintf(path, sizeof path, "%s/modules.json", dir);
    if (!file_exists(path)) {
        /* no pipeline: a lone 1_Pooling/config.json still names the pooling */
        snprintf(path, sizeof path, "%s/1_Pooling/config.json", dir);
        if (file_exists(path)) {
            rlx_status s = read_pooling(path, &p.pool);
            if (s) return s;
            p.has_pooling = 1;
            snprintf(p.pool_source, sizeof p.pool_source, "1_Pooling/config.json");
        }
        *out = p;
        return RLX_OK;
    }
    json_t *mods;
    rlx_status s = load_object(path, &mods, 1);
    if (s) return s;
    p.has_modules = 1;
    size_t i;
    json_t *m;
    int stage = 0; /* 0 expect Transformer, 1 Pooling, 2 Normalize, 3 done */
    json_array_foreach(mods, i, m) {
        const json_t *jt = json_object_get(m, "type"), *jp = json_object_get(m, "path");
        if (!json_is_object(m) || !json_is_string(jt)) {
            s = rlx__fail(RLX_ERR_FORMAT, "%s: module %zu has no 'type' string", path, i);
            break;
        }
        const char *type = json_string_value(jt), *mpath = json_is_string(jp) ? json_string_value(jp) : "";
        const char *cls = strncmp(type, ST_PREFIX, strlen(ST_PREFIX)) ? type : type + strlen(ST_PREFIX);
        if (!path_ok(mpath)) {
            s = rlx__fail(RLX_ERR_FORMAT, "%s: module %zu (%s) has path '%s', which is not a folder inside %s", path, i, type,
                          mpath, dir);
            break;
        }
        if (!strcmp(cls, "Transformer") && stage == 0) {
            snprintf(p.transformer_path, sizeof p.transformer_path, "%s", mpath);
            stage = 1;
        } else if (!strcmp(cls, "Pooling") && stage == 1) {
            char pc[1700];
            snprintf(pc, sizeof pc, "%s/%s%sconfig.json", dir, mpath, *mpath ? "/" : "");
            if ((s = read_pooling(pc, &p.pool))) {
                if (s != RLX_ERR_OUT_OF_MEMORY && !file_exists(pc))
                    s = rlx__fail(RLX_ERR_FORMAT, "%s: module %zu (Pooling) has no %s", path, i, pc);
                break;
            }
            p.has_pooling = 1;
            snprintf(p.pool_source, sizeof p.pool_source, "%s%sconfig.json", mpath, *mpath ? "/" : "");
            stage = 2;
        } else if (!strcmp(cls, "Normalize") && stage == 2) {
            p.normalize = 1;
            stage = 3;
        } else {
            const int known = !strcmp(cls, "Transformer") || !strcmp(cls, "Pooling") || !strcmp(cls, "Normalize");
            s = rlx__fail(RLX_ERR_UNSUPPORTED,
                          "%s: module %zu '%s' (%s) %s; rlx runs Transformer -> Pooling -> Normalize (pass "
                          "--ignore-modules to embed with the encoder alone)",
                          path, i, mpath, type, known ? "is out of the order rlx runs" : "is not a module rlx can run");
            break;
        }
    }
    if (!s && stage == 0) s = rlx__fail(RLX_ERR_UNSUPPORTED, "%s: no Transformer module: nothing for rlx to run", path);
    json_decref(mods);
    if (s) return s;
    *out = p;
    return RLX_OK;
}
