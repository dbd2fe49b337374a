/* Encoder config.json: BERT (transformers' BertConfig) and NomicBERT (nomic-ai's hub layout,
 * GPT-2 style names), plus what only the tensors know (key prefix, real table sizes).
 *
 * Defaults are those of the classes that read these files: BertConfig (max_position_embeddings
 * 512, type_vocab_size 2, layer_norm_eps 1e-12, hidden_act "gelu", position_embedding_type
 * "absolute") and nomic's NomicBertConfig over GPT2Config (n_inner 4·n_embd, n_positions 1024,
 * layer_norm_epsilon 1e-5, rotary_emb_base 1000, rotary_emb_fraction 0, qkv_proj_bias /
 * mlp_fc1_bias / mlp_fc2_bias true, type_vocab_size 2, activation_function "gelu_new"). A
 * feature rlx does not implement is refused with RLX_ERR_UNSUPPORTED naming the key, never
 * silently approximated.
 */
#include "io/json_util.h"
#include "core/internal.h"
#include "rlx/encoder.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CFG_MAX_VOCAB (INT64_C(1) << 24)
#define CFG_MAX_HIDDEN INT64_C(65536)
#define CFG_MAX_INTERMEDIATE (INT64_C(1) << 20)
#define CFG_MAX_LAYERS INT64_C(1024)
#define CFG_MAX_HEADS INT64_C(1024)
#define CFG_MAX_TYPES (INT64_C(1) << 20)
#define CFG_MAX_POSITIONS (INT64_C(1) << 24)

// ---- typed getters: absent keys give the default, required ones fail naming the key -------------

static rlx_status get_int(const char *src, const json_t *o, const char *key, int required, int64_t def, int64_t *out) {
    const json_t *v = json_object_get(o, key);
    if (!v) {
        if (required) return rlx__fail(RLX_ERR_CONFIG, "%s: key '%s' is missing", src, key);
        *out = def;
        return RLX_OK;
    }
    return rlx__json_config_int(src, "", key, v, out);
}

static rlx_status get_number(const char *src, const json_t *o, const char *key, double def, double *out) {
    const json_t *v = json_object_get(o, key);
    if (!v) {
        *out = def;
        return RLX_OK;
    }
    if (!json_is_number(v))
        return rlx__fail(RLX_ERR_CONFIG, "%s: key '%s': expected a number, found %s", src, key, rlx__json_type_name(v));
    *out = json_number_value(v);
    return RLX_OK;
}

static rlx_status get_bool(const char *src, const json_t *o, const char *key, int def, int *out) {
    const json_t *v = json_object_get(o, key);
    if (!v) {
        *out = def;
        return RLX_OK;
    }
    if (!json_is_boolean(v))
        return rlx__fail(RLX_ERR_CONFIG, "%s: key '%s': expected true or false, found %s", src, key, rlx__json_type_name(v));
    *out = json_is_true(v);
    return RLX_OK;
}

/* *out = the string, or def when absent. */
static rlx_status get_string(const char *src, const json_t *o, const char *key, const char *def, const char **out) {
    const json_t *v = json_object_get(o, key);
    if (!v) {
        *out = def;
        return RLX_OK;
    }
    if (!json_is_string(v))
        return rlx__fail(RLX_ERR_CONFIG, "%s: key '%s': expected a string, found %s", src, key, rlx__json_type_name(v));
    *out = json_string_value(v);
    return RLX_OK;
}

/* Keys that select features rlx does not implement: absent (def) or `ok`. */
static rlx_status want_bool(const char *src, const json_t *o, const char *key, int def, int ok, const char *why) {
    int v = def;
    rlx_status s = get_bool(src, o, key, def, &v);
    if (s) return s;
    if (v != ok)
        return rlx__fail(RLX_ERR_UNSUPPORTED, "%s: key '%s' is %s; rlx supports only %s (%s)", src, key, v ? "true" : "false",
                         ok ? "true" : "false", why);
    return RLX_OK;
}

static rlx_status want_null(const char *src, const json_t *o, const char *key, const char *why) {
    const json_t *v = json_object_get(o, key);
    if (v && !json_is_null(v))
        return rlx__fail(RLX_ERR_UNSUPPORTED, "%s: key '%s' is set; rlx supports only null (%s)", src, key, why);
    return RLX_OK;
}

// ---- BERT -------------------------------------------------------------------------------------------

static rlx_status parse_bert(const char *src, const json_t *root, rlx_encoder_config *c) {
    rlx_status s;
    c->arch = RLX_ENCODER_BERT;
    if ((s = get_int(src, root, "vocab_size", 1, 0, &c->vocab_size)) || (s = get_int(src, root, "hidden_size", 1, 0, &c->hidden_size)) ||
        (s = get_int(src, root, "num_hidden_layers", 1, 0, &c->num_hidden_layers)) ||
        (s = get_int(src, root, "num_attention_heads", 1, 0, &c->num_attention_heads)) ||
        (s = get_int(src, root, "intermediate_size", 1, 0, &c->intermediate_size)) ||
        (s = get_int(src, root, "max_position_embeddings", 0, 512, &c->max_position_embeddings)) ||
        (s = get_int(src, root, "type_vocab_size", 0, 2, &c->type_vocab_size)) ||
        (s = get_number(src, root, "layer_norm_eps", 1e-12, &c->layer_norm_eps)))
        return s;
    const char *act, *pos;
    if ((s = get_string(src, root, "hidden_act", "gelu", &act))) return s;
    if (strcmp(act, "gelu") != 0)
        return rlx__fail(RLX_ERR_UNSUPPORTED, "%s: key 'hidden_act': '%s' is not supported (rlx implements 'gelu', exact erf)", src, act);
    const json_t *pv = json_object_get(root, "position_embedding_type");
    if (pv && json_is_null(pv)) pos = "absolute"; /* BertModel treats null as "absolute" */
    else if ((s = get_string(src, root, "position_embedding_type", "absolute", &pos))) return s;
    if (strcmp(pos, "absolute") != 0)
        return rlx__fail(RLX_ERR_UNSUPPORTED, "%s: key 'position_embedding_type': '%s' is not supported (rlx implements 'absolute')", src,
                         pos);
    if ((s = want_bool(src, root, "is_decoder", 0, 0, "an encoder attends both ways"))) return s;
    c->qkv_bias = c->mlp_fc1_bias = c->mlp_fc2_bias = 1;
    return RLX_OK;
}

// ---- NomicBERT ----------------------------------------------------------------------------------------

static rlx_status parse_nomic(const char *src, const json_t *root, rlx_encoder_config *c) {
    rlx_status s;
    c->arch = RLX_ENCODER_NOMIC_BERT;
    if (!json_object_get(root, "n_embd") && json_object_get(root, "hidden_size"))
        return rlx__fail(RLX_ERR_UNSUPPORTED,
                         "%s: key 'n_embd' is missing: this looks like transformers' own nomic_bert layout (hidden_size, rope_parameters); rlx reads nomic-ai's hub layout (n_embd, n_head, n_layer, rotary_emb_base)",
                         src);
    if ((s = get_int(src, root, "vocab_size", 1, 0, &c->vocab_size)) || (s = get_int(src, root, "n_embd", 1, 0, &c->hidden_size)) ||
        (s = get_int(src, root, "n_layer", 1, 0, &c->num_hidden_layers)) ||
        (s = get_int(src, root, "n_head", 1, 0, &c->num_attention_heads)) ||
        (s = get_int(src, root, "n_positions", 0, 1024, &c->max_position_embeddings)) ||
        (s = get_int(src, root, "type_vocab_size", 0, 2, &c->type_vocab_size)) ||
        (s = get_number(src, root, "layer_norm_epsilon", 1e-5, &c->layer_norm_eps)) ||
        (s = get_number(src, root, "rotary_emb_base", 1000.0, &c->rope_theta)) ||
        (s = get_bool(src, root, "qkv_proj_bias", 1, &c->qkv_bias)) || (s = get_bool(src, root, "mlp_fc1_bias", 1, &c->mlp_fc1_bias)) ||
        (s = get_bool(src, root, "mlp_fc2_bias", 1, &c->mlp_fc2_bias)))
        return s;
    const json_t *ni = json_object_get(root, "n_inner");
    if (ni && !json_is_null(ni)) {
        if ((s = get_int(src, root, "n_inner", 1, 0, &c->intermediate_size))) return s;
    } else if (__builtin_mul_overflow(c->hidden_size, (int64_t)4, &c->intermediate_size)) {
        /* GPT2Config: n_inner None means 4 · n_embd. The config is not validated yet, so the
         * product is checked; on overflow validate() names n_embd, which is out of range. */
        c->intermediate_size = 0;
    }
    double frac;
    if ((s = get_number(src, root, "rotary_emb_fraction", 0.0, &frac))) return s;
    if (frac != 1.0)
        return rlx__fail(RLX_ERR_UNSUPPORTED,
                         "%s: key 'rotary_emb_fraction': %g is not supported (rlx implements full rotary embeddings, 1.0)", src, frac);
    const char *act;
    if ((s = get_string(src, root, "activation_function", "gelu_new", &act))) return s;
    if (strcmp(act, "swiglu") != 0)
        return rlx__fail(RLX_ERR_UNSUPPORTED, "%s: key 'activation_function': '%s' is not supported (rlx implements 'swiglu')", src, act);
    if ((s = want_bool(src, root, "rotary_emb_interleaved", 0, 0, "NeoX half rotation")) ||
        (s = want_null(src, root, "rotary_scaling_factor", "no dynamic NTK scaling")) ||
        (s = want_null(src, root, "rotary_emb_scale_base", "no xPos")) ||
        (s = want_bool(src, root, "prenorm", 0, 0, "post-LN layers")) ||
        (s = want_bool(src, root, "causal", 0, 0, "attention both ways")) ||
        (s = want_bool(src, root, "parallel_block", 0, 0, "sequential attention and MLP")) ||
        (s = want_bool(src, root, "use_rms_norm", 0, 0, "LayerNorm")))
        return s;
    return RLX_OK;
}

// ---- validation ------------------------------------------------------------------------------------------

static rlx_status check_range(const char *src, const char *key, int64_t v, int64_t lo, int64_t hi) {
    if (v < lo || v > hi)
        return rlx__fail(RLX_ERR_CONFIG, "%s: key '%s': %lld is outside the plausible range [%lld, %lld]", src, key, (long long)v,
                         (long long)lo, (long long)hi);
    return RLX_OK;
}

rlx_status rlx_encoder_config_validate(const rlx_encoder_config *c, const char *source) {
    if (!c) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_encoder_config_validate: cfg is NULL");
    const char *src = source ? source : "config";
    const int nomic = c->arch == RLX_ENCODER_NOMIC_BERT;
    if (c->arch != RLX_ENCODER_BERT && !nomic) return rlx__fail(RLX_ERR_CONFIG, "%s: arch %d is not bert or nomic_bert", src, (int)c->arch);
    rlx_status s;
    if ((s = check_range(src, "vocab_size", c->vocab_size, 1, CFG_MAX_VOCAB)) ||
        (s = check_range(src, nomic ? "n_embd" : "hidden_size", c->hidden_size, 1, CFG_MAX_HIDDEN)) ||
        (s = check_range(src, nomic ? "n_inner" : "intermediate_size", c->intermediate_size, 1, CFG_MAX_INTERMEDIATE)) ||
        (s = check_range(src, nomic ? "n_layer" : "num_hidden_layers", c->num_hidden_layers, 1, CFG_MAX_LAYERS)) ||
        (s = check_range(src, nomic ? "n_head" : "num_attention_heads", c->num_attention_heads, 1, CFG_MAX_HEADS)) ||
        (s = check_range(src, "type_vocab_size", c->type_vocab_size, 0, CFG_MAX_TYPES)) ||
        (s = check_range(src, nomic ? "n_positions" : "max_position_embeddings", c->max_position_embeddings, 1, CFG_MAX_POSITIONS)))
        return s;
    if (c->hidden_size % c->num_attention_heads)
        return rlx__fail(RLX_ERR_CONFIG, "%s: key '%s': %lld heads do not divide %s %lld", src, nomic ? "n_head" : "num_attention_heads",
                         (long long)c->num_attention_heads, nomic ? "n_embd" : "hidden_size", (long long)c->hidden_size);
    const int64_t head_dim = c->hidden_size / c->num_attention_heads;
    if (nomic && head_dim % 2)
        return rlx__fail(RLX_ERR_CONFIG, "%s: key 'n_head': head_dim %lld (n_embd / n_head) is odd; RoPE rotates pairs", src,
                         (long long)head_dim);
    if (!(c->layer_norm_eps > 0 && c->layer_norm_eps < 1))
        return rlx__fail(RLX_ERR_CONFIG, "%s: key '%s': %g is not in (0, 1)", src, nomic ? "layer_norm_epsilon" : "layer_norm_eps",
                         c->layer_norm_eps);
    if (nomic && (!(c->rope_theta > 0) || !isfinite(c->rope_theta)))
        return rlx__fail(RLX_ERR_CONFIG, "%s: key 'rotary_emb_base': %g is not a positive number", src, c->rope_theta);
    if ((c->qkv_bias | c->mlp_fc1_bias | c->mlp_fc2_bias) & ~1)
        return rlx__fail(RLX_ERR_CONFIG, "%s: bias flags must be 0 or 1", src);
    if (memchr(c->prefix, '\0', sizeof c->prefix) == NULL) return rlx__fail(RLX_ERR_CONFIG, "%s: prefix is not terminated", src);
    return RLX_OK;
}

// ---- entry points ------------------------------------------------------------------------------------------

static rlx_status parse_root(const char *src, const json_t *root, rlx_encoder_config *c) {
    if (!json_is_object(root))
        return rlx__fail(RLX_ERR_CONFIG, "%s: top level is %s, expected a JSON object", src, rlx__json_type_name(root));
    const json_t *mt = json_object_get(root, "model_type");
    if (!mt) return rlx__fail(RLX_ERR_CONFIG, "%s: key 'model_type' is missing (rlx reads 'bert' and 'nomic_bert' encoders)", src);
    if (!json_is_string(mt))
        return rlx__fail(RLX_ERR_CONFIG, "%s: key 'model_type': expected a string, found %s", src, rlx__json_type_name(mt));
    const char *type = json_string_value(mt);
    rlx_status s;
    if (!strcmp(type, "bert")) s = parse_bert(src, root, c);
    else if (!strcmp(type, "nomic_bert")) s = parse_nomic(src, root, c);
    else
        return rlx__fail(RLX_ERR_UNSUPPORTED, "%s: key 'model_type': '%s' is not an encoder rlx supports ('bert', 'nomic_bert')", src, type);
    return s ? s : rlx_encoder_config_validate(c, src);
}

int rlx_config_is_encoder(const char *json_text) {
    if (!json_text) return 0;
    json_error_t err;
    json_t *root = json_loads(json_text, JSON_DECODE_ANY, &err);
    const json_t *mt = json_is_object(root) ? json_object_get(root, "model_type") : NULL;
    int yes = json_is_string(mt) && (!strcmp(json_string_value(mt), "bert") || !strcmp(json_string_value(mt), "nomic_bert"));
    json_decref(root);
    return yes;
}

rlx_status rlx_encoder_config_parse(const char *json_text, const char *source, rlx_encoder_config *out) {
    const char *src = source ? source : "config.json";
    if (!json_text || !out) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_encoder_config_parse: NULL argument");
    json_error_t err;
    json_t *root = json_loads(json_text, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &err);
    if (!root) return rlx__fail(RLX_ERR_FORMAT, "%s: not valid JSON (line %d, column %d): %s", src, err.line, err.column, err.text);
    rlx_encoder_config c;
    memset(&c, 0, sizeof c);
    rlx_status s = parse_root(src, root, &c);
    json_decref(root);
    if (!s) *out = c; /* untouched on failure */
    return s;
}

/* Where "embeddings.word_embeddings.weight" is: the whole name or after a '.'. */
static rlx_status find_prefix(const rlx_weights *w, const char *src, char *prefix, size_t cap, rlx_tensor_view *table) {
    static const char suffix[] = "embeddings.word_embeddings.weight";
    const size_t sl = sizeof suffix - 1;
    int found = 0;
    const size_t n = rlx_weights_count(w);
    for (size_t i = 0; i < n; i++) {
        rlx_tensor_view v;
        if (rlx_weights_at(w, i, &v)) return RLX_ERR_INTERNAL;
        size_t len = strlen(v.name);
        if (len < sl || strcmp(v.name + len - sl, suffix) != 0) continue;
        size_t pl = len - sl;
        if (pl && v.name[pl - 1] != '.') continue;
        if (found)
            return rlx__fail(RLX_ERR_CONFIG, "%s: two word-embedding tables, '%s%s' and '%s'; rlx cannot tell which encoder to run", src,
                             prefix, suffix, v.name);
        if (pl >= cap) return rlx__fail(RLX_ERR_CONFIG, "%s: key prefix of '%s' is longer than %zu bytes", src, v.name, cap - 1);
        memcpy(prefix, v.name, pl);
        prefix[pl] = '\0';
        *table = v;
        found = 1;
    }
    if (!found)
        return rlx__fail(RLX_ERR_MISSING_WEIGHT, "%s: no tensor '%s' (with or without a prefix such as 'bert.') in the checkpoint", src,
                         suffix);
    return RLX_OK;
}

rlx_status rlx_encoder_config_from_weights(const rlx_weights *w, const char *source, rlx_encoder_config *out) {
    if (!w || !out) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_encoder_config_from_weights: NULL argument");
    char srcbuf[1100];
    const char *src = source;
    if (!src) {
        snprintf(srcbuf, sizeof srcbuf, "%s/config.json", rlx_weights_dir(w) ? rlx_weights_dir(w) : "<memory>");
        src = srcbuf;
    }
    const char *json = rlx_weights_config_json(w);
    if (!json) return rlx__fail(RLX_ERR_CONFIG, "%s: missing (an encoder checkpoint needs its config.json)", src);
    rlx_encoder_config c;
    rlx_status s = rlx_encoder_config_parse(json, src, &c);
    if (s) return s;
    rlx_tensor_view table = {0};
    if ((s = find_prefix(w, src, c.prefix, sizeof c.prefix, &table))) return s;
    /* The tensors are the truth where the file may round: nomic pads the vocabulary to a
     * multiple and rounds n_inner up; the build checks every other shape by key. */
    if (table.ndim == 2 && table.shape[0] >= 1) c.vocab_size = table.shape[0];
    if (c.arch == RLX_ENCODER_NOMIC_BERT) {
        char key[160];
        snprintf(key, sizeof key, "%sencoder.layers.0.mlp.fc11.weight", c.prefix);
        rlx_tensor_view fc11;
        if (rlx_weights_has(w, key, &fc11) && fc11.ndim == 2 && fc11.shape[0] >= 1) c.intermediate_size = fc11.shape[0];
    }
    if ((s = rlx_encoder_config_validate(&c, src))) return s;
    *out = c;
    return RLX_OK;
}
