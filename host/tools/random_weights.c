/* Built-in model shapes and seeded random weights (demo, bench, tests). */
#include "model/stages.h"
#include "rlx/weights.h"
#include "io/weights_internal.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

rlx_status rlx_llama_builtin_config(const char *name, rlx_llama_config *c) {
    if (!name || !c) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_llama_builtin_config: NULL argument");
    memset(c, 0, sizeof *c);
    /* Llama 3.x rope: theta 500000 with llama3 scaling (factor 32 for 3.2, 8 for 3.1). */
    c->rope = (rlx_rope_params){.theta = 500000.0, .scaling = RLX_ROPE_SCALING_LLAMA3, .factor = 32,
                                .low_freq_factor = 1, .high_freq_factor = 4, .original_max_positions = 8192};
    c->rms_norm_eps = 1e-5;
    c->max_position_embeddings = 131072;
    if (!strcmp(name, "tiny")) {
        /* Llama-3.2-shaped (GQA 4, tied, llama3 rope) but small enough for the CPU reference. */
        *c = (rlx_llama_config){.vocab_size = 2048, .hidden_size = 256, .intermediate_size = 704,
                                .num_hidden_layers = 4, .num_attention_heads = 8, .num_key_value_heads = 2,
                                .head_dim = 32, .rms_norm_eps = 1e-5, .max_position_embeddings = 4096,
                                .tie_word_embeddings = 1, .rope = c->rope};
    } else if (!strcmp(name, "llama-3.2-1b")) {
        c->vocab_size = 128256, c->hidden_size = 2048, c->intermediate_size = 8192, c->num_hidden_layers = 16;
        c->num_attention_heads = 32, c->num_key_value_heads = 8, c->head_dim = 64, c->tie_word_embeddings = 1;
    } else if (!strcmp(name, "llama-3.2-3b")) {
        c->vocab_size = 128256, c->hidden_size = 3072, c->intermediate_size = 8192, c->num_hidden_layers = 28;
        c->num_attention_heads = 24, c->num_key_value_heads = 8, c->head_dim = 128, c->tie_word_embeddings = 1;
    } else if (!strcmp(name, "llama-3.1-8b")) {
        c->vocab_size = 128256, c->hidden_size = 4096, c->intermediate_size = 14336, c->num_hidden_layers = 32;
        c->num_attention_heads = 32, c->num_key_value_heads = 8, c->head_dim = 128, c->tie_word_embeddings = 0;
        c->rope.factor = 8;
    } else {
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "unknown built-in shape '%s' (tiny, llama-3.2-1b, llama-3.2-3b, llama-3.1-8b)", name);
    }
    c->rope.head_dim = c->head_dim;
    c->rope.max_positions = c->max_position_embeddings;
    return rlx_llama_config_validate(c, name);
}

rlx_status rlx_llama_config_to_json(const rlx_llama_config *c, char **text) {
    if (!c || !text) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_llama_config_to_json: NULL argument");
    json_t *o = json_object();
    json_t *scaling = c->rope.scaling == RLX_ROPE_SCALING_LLAMA3
                          ? json_pack("{s:s, s:f, s:f, s:f, s:I}", "rope_type", "llama3", "factor", c->rope.factor,
                                      "low_freq_factor", c->rope.low_freq_factor, "high_freq_factor",
                                      c->rope.high_freq_factor, "original_max_position_embeddings",
                                      (json_int_t)c->rope.original_max_positions)
                          : json_null();
    if (!o || !scaling) {
        json_decref(o);
        json_decref(scaling);
        return rlx__fail(RLX_ERR_OUT_OF_MEMORY, "out of host memory writing config.json");
    }
    json_object_set_new(o, "architectures", json_pack("[s]", "LlamaForCausalLM"));
    json_object_set_new(o, "model_type", json_string("llama"));
    json_object_set_new(o, "vocab_size", json_integer(c->vocab_size));
    json_object_set_new(o, "hidden_size", json_integer(c->hidden_size));
    json_object_set_new(o, "intermediate_size", json_integer(c->intermediate_size));
    json_object_set_new(o, "num_hidden_layers", json_integer(c->num_hidden_layers));
    json_object_set_new(o, "num_attention_heads", json_integer(c->num_attention_heads));
    json_object_set_new(o, "num_key_value_heads", json_integer(c->num_key_value_heads));
    json_object_set_new(o, "head_dim", json_integer(c->head_dim));
    json_object_set_new(o, "rms_norm_eps", json_real(c->rms_norm_eps));
    json_object_set_new(o, "rope_theta", json_real(c->rope.theta));
    json_object_set_new(o, "rope_scaling", scaling);
    json_object_set_new(o, "max_position_embeddings", json_integer(c->max_position_embeddings));
    json_object_set_new(o, "tie_word_embeddings", json_boolean(c->tie_word_embeddings));
    json_object_set_new(o, "hidden_act", json_string("silu"));
    json_object_set_new(o, "attention_bias", json_false());
    json_object_set_new(o, "mlp_bias", json_false());
    json_object_set_new(o, "torch_dtype", json_string("bfloat16"));
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (!s) return rlx__fail(RLX_ERR_OUT_OF_MEMORY, "out of host memory writing config.json");
    *text = rlx__strdup(s);
    free(s);
    return *text ? RLX_OK : RLX_ERR_OUT_OF_MEMORY;
}

/* splitmix64 → uniform [-1, 1): cheap, seeded, identical on every platform. The generator is a
 * counter: the k-th value drawn from state s0 is fin(s0 + k·γ), k = 1, 2, …, so any element of the
 * stream can be computed on its own and the tensors are filled in parallel with exactly the
 * values the sequential stream gives (one stream runs through all tensors, in the order added). */
#define SPLITMIX_GAMMA 0x9E3779B97F4A7C15ull

static uint64_t fin(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static float uni_at(uint64_t s0, uint64_t k) { return (float)((double)(fin(s0 + k * SPLITMIX_GAMMA) >> 11) * 0x1.0p-52 - 1.0); }

typedef struct fill_ctx {
    void *buf;
    rlx_dtype dtype;
    uint64_t s0, first; /* element i is draw number first + i + 1 of the stream from s0 */
    float center, scale;
} fill_ctx;

static void fill_range(int64_t b, int64_t e, void *arg) {
    const fill_ctx *f = arg;
    for (int64_t i = b; i < e; i++) {
        const float v = f->center + f->scale * uni_at(f->s0, f->first + (uint64_t)i + 1);
        if (f->dtype == RLX_DTYPE_F32) ((float *)f->buf)[i] = v;
        else if (f->dtype == RLX_DTYPE_BF16) ((uint16_t *)f->buf)[i] = rlx_f32_to_bf16(v);
        else ((uint16_t *)f->buf)[i] = rlx_f32_to_f16(v);
    }
}

typedef struct stream {
    uint64_t s0;    /* the seed state */
    uint64_t drawn; /* values drawn so far */
} stream;

static rlx_status add_random(rlx_weights *w, const char *key, int64_t rows, int64_t cols, float center, float scale,
                             stream *st, rlx_dtype dtype) {
    size_t n = (size_t)rows * (size_t)(cols ? cols : 1);
    size_t esz = rlx_dtype_size(dtype);
    void *buf = rlx__malloc(n * esz, key);
    if (!buf) return RLX_ERR_OUT_OF_MEMORY;
    fill_ctx f = {buf, dtype, st->s0, st->drawn, center, scale};
    /* threads only where there is enough work to pay for starting them */
    int threads = n >= ((size_t)1 << 18) ? 0 : 1;
    rlx__parallel_for((int64_t)n, threads, fill_range, &f);
    st->drawn += n;
    int64_t shape[2] = {rows, cols};
    return rlx__weights_add_owned(w, key, dtype, cols ? 2 : 1, shape, buf);
}

rlx_status rlx_llama_random_weights(const rlx_llama_config *c, uint64_t seed, rlx_dtype dtype, rlx_weights **out) {
    if (!out) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_llama_random_weights: out is NULL");
    *out = NULL;
    if (!c) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_llama_random_weights: config is NULL");
    if (dtype != RLX_DTYPE_F32 && dtype != RLX_DTYPE_BF16 && dtype != RLX_DTYPE_F16)
        return rlx__fail(RLX_ERR_UNSUPPORTED, "random weights: unsupported dtype %s", rlx_dtype_name(dtype));
    rlx_status s = rlx_llama_config_validate(c, "random weights");
    if (s) return s;
    rlx_weights *w;
    if ((s = rlx_weights_create(&w))) return s;
    char *json = NULL;
    if ((s = rlx_llama_config_to_json(c, &json)) || (s = rlx_weights_set_config_json(w, json))) goto fail;
    stream st = {seed ^ 0x726c78u, 0};
    const int64_t H = c->hidden_size, I = c->intermediate_size, D = c->head_dim;
    const int64_t q = c->num_attention_heads * D, kv = c->num_key_value_heads * D;
    /* Uniform(-a, a) has std a/sqrt(3): a = sqrt(3/fan_in) keeps each projection's output O(1). */
    const float aH = sqrtf(3.0f / (float)H), aI = sqrtf(3.0f / (float)I), aQ = sqrtf(3.0f / (float)q);
    if ((s = add_random(w, "model.embed_tokens.weight", c->vocab_size, H, 0, 1.0f, &st, dtype))) goto fail;
    char key[160];
#define W(suffix, rows, cols, center, scale)                                                          \
    do {                                                                                              \
        snprintf(key, sizeof key, "model.layers.%lld.%s", (long long)l, suffix);                      \
        if ((s = add_random(w, key, rows, cols, center, scale, &st, dtype))) goto fail;               \
    } while (0)
    for (int64_t l = 0; l < c->num_hidden_layers; l++) {
        W("input_layernorm.weight", H, 0, 1.0f, 0.1f);
        W("self_attn.q_proj.weight", q, H, 0, aH);
        W("self_attn.k_proj.weight", kv, H, 0, aH);
        W("self_attn.v_proj.weight", kv, H, 0, aH);
        W("self_attn.o_proj.weight", H, q, 0, 0.5f * aQ);
        W("post_attention_layernorm.weight", H, 0, 1.0f, 0.1f);
        W("mlp.gate_proj.weight", I, H, 0, aH);
        W("mlp.up_proj.weight", I, H, 0, aH);
        W("mlp.down_proj.weight", H, I, 0, 0.5f * aI);
    }
#undef W
    if ((s = add_random(w, "model.norm.weight", H, 0, 1.0f, 0.1f, &st, dtype))) goto fail;
    if (!c->tie_word_embeddings && (s = add_random(w, "lm_head.weight", c->vocab_size, H, 0, aH, &st, dtype))) goto fail;
    free(json);
    *out = w;
    return RLX_OK;
fail:
    free(json);
    rlx_weights_destroy(w);
    return s;
}
