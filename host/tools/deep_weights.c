/* Seeded LLaMA weights whose rounding error grows with depth (the recipe: tools/deep_weights.h).
 * Units: a "typical element" of the residual stream has RMS 1 in the embedding; every scale
 * below is chosen from the fan-in so that projections keep that unit. */
#include "tools/deep_weights.h"
#include "core/internal.h"
#include "rlx/weights.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

rlx__deep_recipe rlx__deep_recipe_default(void) {
    rlx__deep_recipe r = {.n_outlier = 4,
                          .outlier_embed = 16.0f,
                          .outlier_write = 4.0f,
                          .outlier_gamma = 0.25f,
                          .t_nu = 5.0f,
                          .scale_spread = 0.3f,
                          .attn_sharpness = 4.0f,
                          .increment = 0.2f,
                          .shared_write = 1.5f,
                          .readout_ignores_shared = 1};
    return r;
}

rlx_llama_config rlx__deep_config(int64_t layers) {
    rlx_llama_config c;
    memset(&c, 0, sizeof c);
    c.vocab_size = 512;
    c.hidden_size = 128;
    c.intermediate_size = 384;
    c.num_hidden_layers = layers > 0 ? layers : 32;
    c.num_attention_heads = 2;
    c.num_key_value_heads = 1;
    c.head_dim = 64;
    c.rms_norm_eps = 1e-5;
    c.max_position_embeddings = 256;
    c.tie_word_embeddings = 0;
    c.rope = (rlx_rope_params){.head_dim = 64, .max_positions = 256, .theta = 10000.0, .scaling = RLX_ROPE_SCALING_NONE};
    return c;
}

// ---- seeded draws: splitmix64 → uniform, normal (Box–Muller), Student-t --------------------------

typedef struct rng {
    uint64_t s;
    int have;
    double spare;
} rng;

static uint64_t next(rng *r) {
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double uniform01(rng *r) { return ((double)(next(r) >> 11) + 0.5) * 0x1.0p-53; } /* (0, 1) */

static double normal(rng *r) {
    if (r->have) {
        r->have = 0;
        return r->spare;
    }
    double u = uniform01(r), v = uniform01(r), m = sqrt(-2.0 * log(u));
    r->spare = m * sin(2 * M_PI * v);
    r->have = 1;
    return m * cos(2 * M_PI * v);
}

/* Student-t with nu degrees of freedom, scaled to unit variance (nu > 2). */
static double student_t(rng *r, double nu) {
    double chi2 = 0;
    const int k = (int)nu;
    for (int i = 0; i < k; i++) {
        double z = normal(r);
        chi2 += z * z;
    }
    return normal(r) / sqrt(chi2 / nu) * sqrt((nu - 2) / nu);
}

// ---- tensors ---------------------------------------------------------------------------------------

typedef struct gen {
    rlx_weights *w;
    rlx_dtype dtype;
    rng r;
    const rlx__deep_recipe *rc;
    int64_t H;
    unsigned char *outlier; /* [H] */
    float *sign;            /* [H]: the fixed sign of each outlier channel */
    double *u;              /* [H]: the shared direction, unit norm */
} gen;

static rlx_status put(gen *g, const char *key, int64_t rows, int64_t cols, const float *f) {
    const size_t n = (size_t)rows * (size_t)(cols ? cols : 1);
    void *buf = rlx__malloc(n * rlx_dtype_size(g->dtype), key);
    if (!buf) return RLX_ERR_OUT_OF_MEMORY;
    for (size_t i = 0; i < n; i++) {
        if (g->dtype == RLX_DTYPE_F32) ((float *)buf)[i] = f[i];
        else if (g->dtype == RLX_DTYPE_BF16) ((uint16_t *)buf)[i] = rlx_f32_to_bf16(f[i]);
        else ((uint16_t *)buf)[i] = rlx_f32_to_f16(f[i]);
    }
    int64_t shape[2] = {rows, cols};
    rlx_status s = rlx_weights_add(g->w, key, g->dtype, cols ? 2 : 1, shape, buf);
    free(buf);
    return s;
}

/* W[rows, cols] = sigma · t · row_scale · col_scale, heavy-tailed with log-normal channel scales. */
static float *matrix(gen *g, int64_t rows, int64_t cols, double sigma) {
    float *f = rlx__malloc((size_t)rows * (size_t)cols * sizeof(float), "a deep-fixture weight");
    double *cs = rlx__malloc((size_t)cols * sizeof(double), "column scales");
    if (!f || !cs) {
        free(f), free(cs);
        return NULL;
    }
    for (int64_t j = 0; j < cols; j++) cs[j] = exp(g->rc->scale_spread * normal(&g->r));
    for (int64_t i = 0; i < rows; i++) {
        const double rs = exp(g->rc->scale_spread * normal(&g->r));
        for (int64_t j = 0; j < cols; j++) f[i * cols + j] = (float)(sigma * rs * cs[j] * student_t(&g->r, g->rc->t_nu));
    }
    free(cs);
    return f;
}

static float *norm_gamma(gen *g) {
    float *f = rlx__malloc((size_t)g->H * sizeof(float), "a norm weight");
    if (!f) return NULL;
    for (int64_t c = 0; c < g->H; c++) f[c] = g->outlier[c] ? g->rc->outlier_gamma : (float)exp(0.2 * normal(&g->r));
    return f;
}

#define PUT(key, rows, cols, expr)                                                                                       \
    do {                                                                                                                 \
        float *m_ = (expr);                                                                                              \
        if (!m_) {                                                                                                       \
            s = RLX_ERR_OUT_OF_MEMORY;                                                                                   \
            goto done;                                                                                                   \
        }                                                                                                                \
        s = put(&g, key, rows, cols, m_);                                                                                \
        free(m_);                                                                                                        \
        if (s) goto done;                                                                                                \
    } while (0)

rlx_status rlx__llama_deep_weights(const rlx_llama_config *c, const rlx__deep_recipe *rc, uint64_t seed, rlx_dtype dtype,
                                   rlx_weights **out) {
    *out = NULL;
    rlx_status s = rlx_llama_config_validate(c, "deep weights");
    if (s) return s;
    const int64_t H = c->hidden_size, I = c->intermediate_size, D = c->head_dim, L = c->num_hidden_layers;
    const int64_t q = c->num_attention_heads * D, kv = c->num_key_value_heads * D;
    if (rc->n_outlier < 0 || rc->n_outlier > H / 4 || rc->t_nu < 3)
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "deep weights: %d outlier channels of %lld, nu %g", rc->n_outlier, (long long)H,
                         rc->t_nu);
    gen g = {.dtype = dtype, .r = {.s = seed ^ 0xdee9ull}, .rc = rc, .H = H};
    char key[160], *json = NULL;
    g.outlier = rlx__calloc((size_t)H, 1, "outlier channels");
    g.sign = rlx__calloc((size_t)H, sizeof(float), "outlier signs");
    if (!g.outlier || !g.sign) {
        s = RLX_ERR_OUT_OF_MEMORY;
        goto done;
    }
    /* outlier channels spread over the width, as the hub models' are (not adjacent) */
    for (int k = 0; k < rc->n_outlier; k++) {
        int64_t ch = (int64_t)((k * 2 + 1) * H / (2 * rc->n_outlier)) + 3 * k % 7;
        g.outlier[ch % H] = 1;
        g.sign[ch % H] = (k & 1) ? -1.0f : 1.0f;
    }
    g.u = rlx__malloc((size_t)H * sizeof(double), "the shared direction");
    if (!g.u) {
        s = RLX_ERR_OUT_OF_MEMORY;
        goto done;
    }
    {
        double nn = 0;
        for (int64_t ch = 0; ch < H; ch++) g.u[ch] = g.outlier[ch] ? 0 : normal(&g.r), nn += g.u[ch] * g.u[ch];
        for (int64_t ch = 0; ch < H; ch++) g.u[ch] /= sqrt(nn);
    }
    if ((s = rlx_weights_create(&g.w))) goto done;
    if ((s = rlx_llama_config_to_json(c, &json)) || (s = rlx_weights_set_config_json(g.w, json))) goto done;

    /* embedding: typical channels N(0, 1); outlier channels a fixed large value (± per channel) */
    {
        float *e = rlx__malloc((size_t)c->vocab_size * (size_t)H * sizeof(float), "the embedding");
        if (!e) {
            s = RLX_ERR_OUT_OF_MEMORY;
            goto done;
        }
        for (int64_t v = 0; v < c->vocab_size; v++)
            for (int64_t ch = 0; ch < H; ch++)
                e[v * H + ch] = g.outlier[ch] ? g.sign[ch] * rc->outlier_embed * (float)(1 + 0.05 * normal(&g.r)) : (float)normal(&g.r);
        s = put(&g, "model.embed_tokens.weight", c->vocab_size, H, e);
        free(e);
        if (s) goto done;
    }
    /* Projections: the normalized input has RMS 1, so fan-in scaling keeps each projection's
     * output at RMS 1; q and k are scaled up to the recipe's score spread. The sublayer outputs
     * (o_proj, down) write `increment` per element. */
    const double sig_qk = sqrt(rc->attn_sharpness / (double)H), sig_v = 1 / sqrt((double)H);
    const double sig_o = rc->increment / sqrt((double)q), sig_g = 1 / sqrt((double)H);
    const double sig_d = rc->increment / (0.5 * sqrt((double)I)); /* silu(g)·u has RMS ≈ 0.5 */
    for (int64_t l = 0; l < L; l++) {
#define KEY(suffix) (snprintf(key, sizeof key, "model.layers.%lld.%s", (long long)l, suffix), key)
        PUT(KEY("input_layernorm.weight"), H, 0, norm_gamma(&g));
        PUT(KEY("self_attn.q_proj.weight"), q, H, matrix(&g, q, H, sig_qk));
        PUT(KEY("self_attn.k_proj.weight"), kv, H, matrix(&g, kv, H, sig_qk));
        PUT(KEY("self_attn.v_proj.weight"), kv, H, matrix(&g, kv, H, sig_v));
        PUT(KEY("self_attn.o_proj.weight"), H, q, matrix(&g, H, q, sig_o));
        PUT(KEY("post_attention_layernorm.weight"), H, 0, norm_gamma(&g));
        /* the outlier neuron n = l mod I: gate and up read the outlier channels (nearly constant
         * across tokens, so the neuron is always on), down writes outlier_write back into them */
        const int64_t n = l % I;
        float *gate = matrix(&g, I, H, sig_g), *up = matrix(&g, I, H, sig_g), *down = matrix(&g, H, I, sig_d);
        if (!gate || !up || !down) {
            free(gate), free(up), free(down);
            s = RLX_ERR_OUT_OF_MEMORY;
            goto done;
        }
        /* the normalized outlier value: γ·x/rms(x) ≈ γ·sqrt(H / n_outlier) once the outliers hold
         * most of the row's energy; gate and up then sit near 2 */
        const double nv = rc->outlier_gamma * sqrt((double)H / (double)(rc->n_outlier ? rc->n_outlier : 1));
        const double act = 2.0 / (1 + exp(-2.0)) * 2.0; /* silu(2)·2: the neuron's output */
        for (int64_t ch = 0; ch < H; ch++) {
            if (!g.outlier[ch]) {
                /* the shared direction, written per element at shared_write on average */
                down[ch * I + n] = (float)(rc->shared_write * sqrt((double)H) * g.u[ch] / act);
                continue;
            }
            gate[n * H + ch] = (float)(g.sign[ch] * 2.0 / (nv * rc->n_outlier));
            up[n * H + ch] = (float)(g.sign[ch] * 2.0 / (nv * rc->n_outlier));
            down[ch * I + n] = (float)(g.sign[ch] * rc->outlier_write / act);
        }
        s = put(&g, KEY("mlp.gate_proj.weight"), I, H, gate);
        if (!s) s = put(&g, KEY("mlp.up_proj.weight"), I, H, up);
        if (!s) s = put(&g, KEY("mlp.down_proj.weight"), H, I, down);
        free(gate), free(up), free(down);
        if (s) goto done;
#undef KEY
    }
    PUT("model.norm.weight", H, 0, norm_gamma(&g));
    {
        float *head = matrix(&g, c->vocab_size, H, 2 / sqrt((double)H));
        if (!head) {
            s = RLX_ERR_OUT_OF_MEMORY;
            goto done;
        }
        for (int64_t v = 0; rc->readout_ignores_shared && v < c->vocab_size; v++) {
            double d = 0;
            for (int64_t ch = 0; ch < H; ch++) d += head[v * H + ch] * g.u[ch];
            for (int64_t ch = 0; ch < H; ch++) head[v * H + ch] -= (float)(d * g.u[ch]);
        }
        s = put(&g, "lm_head.weight", c->vocab_size, H, head);
        free(head);
        if (s) goto done;
    }
done:
    free(json);
    free(g.outlier);
    free(g.sign);
    free(g.u);
    if (s) rlx_weights_destroy(g.w);
    else *out = g.w;
    return s;
}
