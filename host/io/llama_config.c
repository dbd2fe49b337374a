/* LLaMA config.json: parsing (both rope layouts) and validation.
 *
 * Defaults are transformers' LlamaConfig defaults, not rlx-flow's: rope_theta 10000,
 * max_position_embeddings 2048, rms_norm_eps 1e-6 (transformers LlamaConfig; rlx-flow used 1e-5), tie_word_embeddings false, kv heads = heads,
 * head_dim = hidden / heads. A checkpoint that relies on a default gets what HF would give it.
 *
 * Two layouts carry RoPE settings: hub checkpoints have top-level rope_theta + rope_scaling;
 * transformers 5 writes one rope_parameters object holding rope_type, rope_theta and the
 * scaling factors. When both are present they must agree, so neither can silently win.
 */
#include "io/json_util.h"
#include "core/internal.h"
#include "rlx/llama.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CFG_MAX_VOCAB (INT64_C(1) << 24)
#define CFG_MAX_HIDDEN INT64_C(65536)
#define CFG_MAX_INTERMEDIATE (INT64_C(1) << 20)
#define CFG_MAX_LAYERS INT64_C(1024)
#define CFG_MAX_HEADS INT64_C(1024)
#define CFG_MAX_HEAD_DIM INT64_C(1024)
#define CFG_MAX_QK_WIDTH (INT64_C(1) << 18) /* heads * head_dim */
#define CFG_MAX_POSITIONS (INT64_C(1) << 24)

// ---- typed getters ---------------------------------------------------------------------------
/* Each reads obj[key] (prefix names the enclosing object in messages, "" at top level).
 * Absent keys, and null where null_ok, give the default (*present = 0); required keys fail. */

enum { OPTIONAL = 0, REQUIRED = 1 };

static rlx_status get_int(const char *src, const json_t *obj, const char *prefix, const char *key,
                          int required, int null_ok, int64_t def, int64_t *out, int *present) {
    const json_t *v = json_object_get(obj, key);
    if (present) *present = 0;
    if (!v || (null_ok && json_is_null(v))) {
        if (required) return rlx__fail(RLX_ERR_CONFIG, "%s: key '%s%s' is missing", src, prefix, key);
        *out = def;
        return RLX_OK;
    }
    rlx_status s = rlx__json_config_int(src, prefix, key, v, out);
    if (s) return s;
    if (present) *present = 1;
    return RLX_OK;
}

static rlx_status get_number(const char *src, const json_t *obj, const char *prefix,
                             const char *key, int required, double def, double *out, int *present) {
    const json_t *v = json_object_get(obj, key);
    if (present) *present = 0;
    if (!v) {
        if (required) return rlx__fail(RLX_ERR_CONFIG, "%s: key '%s%s' is missing", src, prefix, key);
        *out = def;
        return RLX_OK;
    }
    if (!json_is_number(v))
        return rlx__fail(RLX_ERR_CONFIG, "%s: key '%s%s': expected a number, found %s", src, prefix,
                         key, rlx__json_type_name(v));
    *out = json_number_value(v);
    if (present) *present = 1;
    return RLX_OK;
}

static rlx_status get_bool(const char *src, const json_t *obj, const char *key, int def, int *out) {
    const json_t *v = json_object_get(obj, key);
    if (!v) {
        *out = def;
        return RLX_OK;
    }
    if (!json_is_boolean(v))
        return rlx__fail(RLX_ERR_CONFIG, "%s: key '%s': expected true or false, found %s", src, key,
                         rlx__json_type_name(v));
    *out = json_is_true(v);
    return RLX_OK;
}

// ---- rope ------------------------------------------------------------------------------------

/* Reads one rope object (rope_scaling or rope_parameters) into r->scaling and the factors; the
 * theta inside it, if any, into *theta (*has_theta = 1). */
static rlx_status parse_rope_object(const char *src, const char *objkey, const json_t *o,
                                    rlx_rope_params *r, double *theta, int *has_theta) {
    char prefix[48];
    snprintf(prefix, sizeof prefix, "%s.", objkey);
    if (!json_is_object(o))
        return rlx__fail(RLX_ERR_CONFIG, "%s: key '%s': expected an object or null, found %s", src,
                         objkey, rlx__json_type_name(o));
    /* HF: rope_type, falling back to the legacy "type". */
    const char *tkey = "rope_type";
    const json_t *t = json_object_get(o, tkey);
    if (!t) t = json_object_get(o, tkey = "type");
    if (!t)
        return rlx__fail(RLX_ERR_CONFIG, "%s: key '%s': has no 'rope_type'", src, objkey);
    if (!json_is_string(t))
        return rlx__fail(RLX_ERR_CONFIG, "%s: key '%s%s': expected a string, found %s", src, prefix,
                         tkey, rlx__json_type_name(t));
    const char *type = json_string_value(t);
    rlx_status s = get_number(src, o, prefix, "rope_theta", OPTIONAL, 0.0, theta, has_theta);
    if (s) return s;
    if (strcmp(type, "default") == 0) {
        r->scaling = RLX_ROPE_SCALING_NONE;
        r->factor = r->low_freq_factor = r->high_freq_factor = 0;
        r->original_max_positions = 0;
        return RLX_OK;
    }
    if (strcmp(type, "llama3") != 0)
        return rlx__fail(RLX_ERR_UNSUPPORTED,
                         "%s: key '%s%s': rope type '%s' is not supported (rlx implements 'default' "
                         "and 'llama3')",
                         src, prefix, tkey, type);
    r->scaling = RLX_ROPE_SCALING_LLAMA3;
    s = get_number(src, o, prefix, "factor", REQUIRED, 0, &r->factor, NULL);
    if (!s) s = get_number(src, o, prefix, "low_freq_factor", REQUIRED, 0, &r->low_freq_factor, NULL);
    if (!s) s = get_number(src, o, prefix, "high_freq_factor", REQUIRED, 0, &r->high_freq_factor, NULL);
    if (!s)
        s = get_int(src, o, prefix, "original_max_position_embeddings", REQUIRED, 0, 0,
                    &r->original_max_positions, NULL);
    return s;
}

static int rope_scaling_equal(const rlx_rope_params *a, const rlx_rope_params *b) {
    if (a->scaling != b->scaling) return 0;
    if (a->scaling == RLX_ROPE_SCALING_NONE) return 1;
    return a->factor == b->factor && a->low_freq_factor == b->low_freq_factor &&
           a->high_freq_factor == b->high_freq_factor &&
           a->original_max_positions == b->original_max_positions;
}

/* Fills c->rope.{theta, scaling, factors}; *rope_key and *theta_key are what messages about
 * them should name (the keys the values actually came from). */
static rlx_status parse_rope(const char *src, const json_t *root, rlx_llama_config *c,
                             const char **rope_key, const char **theta_key) {
    double top_theta = 10000.0; /* HF LlamaConfig default */
    int has_top_theta;
    rlx_status s = get_number(src, root, "", "rope_theta", OPTIONAL, 10000.0, &top_theta, &has_top_theta);
    if (s) return s;
    const json_t *rs = json_object_get(root, "rope_scaling");
    const json_t *rp = json_object_get(root, "rope_parameters");
    if (json_is_null(rs)) rs = NULL;
    if (json_is_null(rp)) rp = NULL;

    memset(&c->rope, 0, sizeof c->rope);
    c->rope.theta = top_theta;
    *rope_key = "rope_scaling";
    *theta_key = "rope_theta";
    if (rs) {
        double th;
        int has_th;
        s = parse_rope_object(src, "rope_scaling", rs, &c->rope, &th, &has_th);
        if (s) return s;
        /* A rope_theta inside rope_scaling is not an HF layout; ignore it as HF does. */
    }
    if (rp) {
        rlx_rope_params p = {0};
        double th;
        int has_th;
        s = parse_rope_object(src, "rope_parameters", rp, &p, &th, &has_th);
        if (s) return s;
        if (rs && !rope_scaling_equal(&p, &c->rope))
            return rlx__fail(RLX_ERR_CONFIG,
                             "%s: keys 'rope_scaling' and 'rope_parameters' disagree; remove one",
                             src);
        if (has_th && has_top_theta && th != top_theta)
            return rlx__fail(RLX_ERR_CONFIG,
                             "%s: key 'rope_parameters.rope_theta' (%g) disagrees with top-level "
                             "'rope_theta' (%g)",
                             src, th, top_theta);
        p.theta = has_th ? th : top_theta;
        if (has_th) *theta_key = "rope_parameters.rope_theta";
        c->rope = p;
        *rope_key = "rope_parameters";
    }
    return RLX_OK;
}

// ---- validation ------------------------------------------------------------------------------

static rlx_status check_range(const char *src, const char *key, int64_t v, int64_t lo, int64_t hi) {
    if (v < lo || v > hi)
        return rlx__fail(RLX_ERR_CONFIG, "%s: key '%s': %lld is outside the plausible range [%lld, %lld]",
                         src, key, (long long)v, (long long)lo, (long long)hi);
    return RLX_OK;
}

static rlx_status validate(const rlx_llama_config *c, const char *src, const char *rope_key,
                           const char *theta_key) {
    rlx_status s;
    if ((s = check_range(src, "vocab_size", c->vocab_size, 1, CFG_MAX_VOCAB)) ||
        (s = check_range(src, "hidden_size", c->hidden_size, 1, CFG_MAX_HIDDEN)) ||
        (s = check_range(src, "intermediate_size", c->intermediate_size, 1, CFG_MAX_INTERMEDIATE)) ||
        (s = check_range(src, "num_hidden_layers", c->num_hidden_layers, 1, CFG_MAX_LAYERS)) ||
        (s = check_range(src, "num_attention_heads", c->num_attention_heads, 1, CFG_MAX_HEADS)) ||
        (s = check_range(src, "num_key_value_heads", c->num_key_value_heads, 1, CFG_MAX_HEADS)))
        return s;
    if (c->num_attention_heads % c->num_key_value_heads)
        return rlx__fail(RLX_ERR_CONFIG,
                         "%s: key 'num_key_value_heads': %lld does not divide num_attention_heads %lld",
                         src, (long long)c->num_key_value_heads, (long long)c->num_attention_heads);
    if ((s = check_range(src, "head_dim", c->head_dim, 2, CFG_MAX_HEAD_DIM))) return s;
    if (c->head_dim % 2)
        return rlx__fail(RLX_ERR_CONFIG,
                         "%s: key 'head_dim': %lld is odd; RoPE rotates pairs of dimensions", src,
                         (long long)c->head_dim);
    if (c->head_dim * c->num_attention_heads > CFG_MAX_QK_WIDTH)
        return rlx__fail(RLX_ERR_CONFIG,
                         "%s: key 'head_dim': %lld x num_attention_heads %lld = %lld is implausible "
                         "(limit %lld)",
                         src, (long long)c->head_dim, (long long)c->num_attention_heads,
                         (long long)(c->head_dim * c->num_attention_heads), (long long)CFG_MAX_QK_WIDTH);
    if (!(c->rms_norm_eps > 0 && c->rms_norm_eps < 1))
        return rlx__fail(RLX_ERR_CONFIG, "%s: key 'rms_norm_eps': %g is not in (0, 1)", src,
                         c->rms_norm_eps);
    if ((s = check_range(src, "max_position_embeddings", c->max_position_embeddings, 1, CFG_MAX_POSITIONS)))
        return s;
    if (c->tie_word_embeddings != 0 && c->tie_word_embeddings != 1)
        return rlx__fail(RLX_ERR_CONFIG, "%s: key 'tie_word_embeddings': %d is not 0 or 1", src,
                         c->tie_word_embeddings);

    const rlx_rope_params *r = &c->rope;
    if (!(r->theta > 0) || !isfinite(r->theta))
        return rlx__fail(RLX_ERR_CONFIG, "%s: key '%s': %g is not a positive number", src,
                         theta_key, r->theta);
    if (r->head_dim != c->head_dim)
        return rlx__fail(RLX_ERR_CONFIG, "%s: rope.head_dim %lld differs from head_dim %lld", src,
                         (long long)r->head_dim, (long long)c->head_dim);
    if (r->max_positions != c->max_position_embeddings)
        return rlx__fail(RLX_ERR_CONFIG,
                         "%s: rope.max_positions %lld differs from max_position_embeddings %lld", src,
                         (long long)r->max_positions, (long long)c->max_position_embeddings);
    if (r->scaling == RLX_ROPE_SCALING_NONE) return RLX_OK;
    if (r->scaling != RLX_ROPE_SCALING_LLAMA3)
        return rlx__fail(RLX_ERR_CONFIG, "%s: rope.scaling %d is not a known scaling", src,
                         (int)r->scaling);
    if (!(r->factor >= 1) || !isfinite(r->factor))
        return rlx__fail(RLX_ERR_CONFIG, "%s: key '%s.factor': %g; llama3 scaling needs a factor >= 1",
                         src, rope_key, r->factor);
    if (!(r->low_freq_factor > 0) || !isfinite(r->low_freq_factor))
        return rlx__fail(RLX_ERR_CONFIG, "%s: key '%s.low_freq_factor': %g is not positive", src,
                         rope_key, r->low_freq_factor);
    if (!(r->high_freq_factor > r->low_freq_factor) || !isfinite(r->high_freq_factor))
        return rlx__fail(RLX_ERR_CONFIG,
                         "%s: key '%s.high_freq_factor': %g must exceed low_freq_factor %g (the "
                         "interpolation band divides by their difference)",
                         src, rope_key, r->high_freq_factor, r->low_freq_factor);
    char key[80];
    snprintf(key, sizeof key, "%s.original_max_position_embeddings", rope_key);
    return check_range(src, key, r->original_max_positions, 1, CFG_MAX_POSITIONS);
}

rlx_status rlx_llama_config_validate(const rlx_llama_config *cfg, const char *source) {
    if (!cfg) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_llama_config_validate: cfg is NULL");
    return validate(cfg, source ? source : "config", "rope_scaling", "rope_theta");
}

// ---- parsing ---------------------------------------------------------------------------------

static rlx_status parse_root(const char *src, const json_t *root, rlx_llama_config *c) {
    if (!json_is_object(root))
        return rlx__fail(RLX_ERR_CONFIG, "%s: top level is %s, expected a JSON object", src,
                         rlx__json_type_name(root));
    const json_t *mt = json_object_get(root, "model_type");
    if (mt) {
        if (!json_is_string(mt))
            return rlx__fail(RLX_ERR_CONFIG, "%s: key 'model_type': expected a string, found %s", src,
                             rlx__json_type_name(mt));
        if (strcmp(json_string_value(mt), "llama") != 0)
            return rlx__fail(RLX_ERR_UNSUPPORTED,
                             "%s: key 'model_type': '%s' is not a LLaMA config (expected 'llama')",
                             src, json_string_value(mt));
    }
    rlx_status s;
    if ((s = get_int(src, root, "", "vocab_size", REQUIRED, 0, 0, &c->vocab_size, NULL)) ||
        (s = get_int(src, root, "", "hidden_size", REQUIRED, 0, 0, &c->hidden_size, NULL)) ||
        (s = get_int(src, root, "", "intermediate_size", REQUIRED, 0, 0, &c->intermediate_size, NULL)) ||
        (s = get_int(src, root, "", "num_hidden_layers", REQUIRED, 0, 0, &c->num_hidden_layers, NULL)) ||
        (s = get_int(src, root, "", "num_attention_heads", REQUIRED, 0, 0, &c->num_attention_heads, NULL)) ||
        (s = get_int(src, root, "", "num_key_value_heads", OPTIONAL, 1, c->num_attention_heads,
                     &c->num_key_value_heads, NULL)))
        return s;
    int has_head_dim;
    if ((s = get_int(src, root, "", "head_dim", OPTIONAL, 1, 0, &c->head_dim, &has_head_dim)))
        return s;
    if (!has_head_dim && c->num_attention_heads > 0) {
        /* Out-of-range sizes are left to validate(), which names the key that is wrong. */
        int sizes_sane = c->hidden_size >= 1 && c->hidden_size <= CFG_MAX_HIDDEN &&
                         c->num_attention_heads <= CFG_MAX_HEADS;
        if (sizes_sane && c->hidden_size % c->num_attention_heads)
            return rlx__fail(RLX_ERR_CONFIG,
                             "%s: key 'head_dim' is absent and hidden_size %lld is not a multiple "
                             "of num_attention_heads %lld",
                             src, (long long)c->hidden_size, (long long)c->num_attention_heads);
        c->head_dim = c->hidden_size / c->num_attention_heads;
    }
    if ((s = get_number(src, root, "", "rms_norm_eps", OPTIONAL, 1e-6, &c->rms_norm_eps, NULL)) ||
        (s = get_int(src, root, "", "max_position_embeddings", OPTIONAL, 0, 2048,
                     &c->max_position_embeddings, NULL)) ||
        (s = get_bool(src, root, "tie_word_embeddings", 0, &c->tie_word_embeddings)))
        return s;
    const char *rope_key, *theta_key;
    if ((s = parse_rope(src, root, c, &rope_key, &theta_key))) return s;
    c->rope.head_dim = c->head_dim;
    c->rope.max_positions = c->max_position_embeddings;
    return validate(c, src, rope_key, theta_key);
}

rlx_status rlx_llama_config_parse(const char *json_text, const char *source, rlx_llama_config *out) {
    const char *src = source ? source : "config.json";
    if (!json_text || !out)
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_llama_config_parse: NULL argument");
    json_error_t err;
    json_t *root = json_loads(json_text, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &err);
    if (!root)
        return rlx__fail(RLX_ERR_FORMAT, "%s: not valid JSON (line %d, column %d): %s", src,
                         err.line, err.column, err.text);
    rlx_llama_config c;
    memset(&c, 0, sizeof c);
    rlx_status s = parse_root(src, root, &c);
    json_decref(root);
    if (!s) *out = c; /* untouched on failure */
    return s;
}

rlx_status rlx_llama_config_load(const char *path, rlx_llama_config *out) {
    if (!path || !out) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_llama_config_load: NULL argument");
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
    /* config.json is a few KiB; the cap only stops a wrong path from reading a checkpoint. */
    const size_t cap = (size_t)16 << 20;
    if ((uint64_t)st.st_size > cap) {
        close(fd);
        return rlx__fail(RLX_ERR_CONFIG, "%s: %lld bytes, too large for a config.json", path,
                         (long long)st.st_size);
    }
    size_t n = (size_t)st.st_size, got = 0;
    char *buf = rlx__malloc(n + 1, "config.json text");
    if (!buf) {
        close(fd);
        return RLX_ERR_OUT_OF_MEMORY;
    }
    rlx_status s = RLX_OK;
    while (got < n && !s) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) s = rlx__fail(RLX_ERR_IO, "%s: read failed: %s", path, strerror(errno));
        else if (r == 0) s = rlx__fail(RLX_ERR_IO, "%s: file shrank while reading", path);
        else got += (size_t)r;
    }
    close(fd);
    if (!s && memchr(buf, '\0', n))
        s = rlx__fail(RLX_ERR_FORMAT, "%s: contains a NUL byte, so it is not JSON text", path);
    if (!s) {
        buf[n] = '\0';
        s = rlx_llama_config_parse(buf, path, out);
    }
    free(buf);
    return s;
}
