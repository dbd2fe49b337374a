/* CPU reference of the KV-cache contract (rlx/kv.h) on host pages: the oracle of the device
 * paths. Attention of a KV call first writes the new tokens' K (after RoPE) and V into their
 * sequence's pages, rounded to the cache's dtype, then every query reads keys and values from the
 * pages only — the cached prefix and the new tokens alike — with its absolute position
 * cached_len + i and the bottom-right-aligned causal mask: query i sees keys j <= cached_len + i. */
#include "runtime/cpu_ref.h"
#include "kv/kv.h"
#include "rlx/weights.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void put_elem(void *base, int64_t off, float x, rlx_dtype dt) {
    if (dt == RLX_DTYPE_F32) ((float *)base)[off] = x;
    else ((uint16_t *)base)[off] = rlx_f32_to_bf16(x);
}

static float get_elem(const void *base, int64_t off, rlx_dtype dt) {
    return dt == RLX_DTYPE_F32 ? ((const float *)base)[off] : rlx_bf16_to_f32(((const uint16_t *)base)[off]);
}

void rlx__ref_kv_write(const rlx__kv_call *kv, int layer, const float *k, const float *v, const rlx__batch *b, int64_t kv_heads,
                       int64_t D) {
    void *kb = rlx__kv_layer_k(kv, layer), *vb = rlx__kv_layer_v(kv, layer);
    const rlx_dtype dt = kv->desc->dtype;
    const int64_t w = kv_heads * D;
    for (int64_t s = 0; s < b->n_seqs; s++)
        for (int64_t t = b->seq_start[s]; t < b->seq_start[s + 1]; t++) {
            const int64_t j = kv->cached[s] + (t - b->seq_start[s]);
            for (int64_t g = 0; g < kv_heads; g++) {
                const int64_t off = rlx__kv_offset(kv, s, j, g);
                for (int64_t d = 0; d < D; d++) {
                    put_elem(kb, off + d, k[t * w + g * D + d], dt);
                    put_elem(vb, off + d, v[t * w + g * D + d], dt);
                }
            }
        }
}

typedef struct kv_attn_ctx {
    float *o;
    const float *q;
    const rlx__batch *b;
    const rlx__kv_call *kv;
    const void *kb, *vb;
    int64_t heads, kv_heads, head_dim;
    int causal;
} kv_attn_ctx;

/* One work item = (sequence, kv head): its keys and values are read from the pages once. */
static void kv_attn_part(int64_t i0, int64_t i1, void *arg) {
    const kv_attn_ctx *c = arg;
    const int64_t D = c->head_dim, qw = c->heads * D, group = c->heads / c->kv_heads;
    const rlx_dtype dt = c->kv->desc->dtype;
    const double scale = 1.0 / sqrt((double)D);
    const int64_t max_kv = c->kv->max_kv ? c->kv->max_kv : 1;
    float *K = malloc((size_t)(max_kv * D) * sizeof(float)), *V = malloc((size_t)(max_kv * D) * sizeof(float));
    double *p = malloc((size_t)max_kv * sizeof(double)), *acc = malloc((size_t)D * sizeof(double));
    for (int64_t it = i0; it < i1; it++) {
        const int64_t s = it / c->kv_heads, g = it % c->kv_heads;
        const int64_t start = c->b->seq_start[s], len = c->b->seq_start[s + 1] - start;
        if (!K || !V || !p || !acc) { /* cannot happen for sane sizes: poison so the caller's checks fail */
            for (int64_t t = start; t < start + len; t++)
                for (int64_t h = g * group; h < (g + 1) * group; h++)
                    for (int64_t d = 0; d < D; d++) c->o[t * qw + h * D + d] = NAN;
            continue;
        }
        const int64_t nkv = c->kv->kv_len[s], cached = c->kv->cached[s];
        for (int64_t j = 0; j < nkv; j++) {
            const int64_t off = rlx__kv_offset(c->kv, s, j, g);
            for (int64_t d = 0; d < D; d++) K[j * D + d] = get_elem(c->kb, off + d, dt), V[j * D + d] = get_elem(c->vb, off + d, dt);
        }
        for (int64_t h = g * group; h < (g + 1) * group; h++)
            for (int64_t i = 0; i < len; i++) {
                const float *qi = c->q + (start + i) * qw + h * D;
                const int64_t nk = c->causal ? cached + i + 1 : nkv; /* bottom-right aligned */
                double mx = -INFINITY;
                for (int64_t j = 0; j < nk; j++) {
                    double dot = 0;
                    for (int64_t d = 0; d < D; d++) dot += (double)qi[d] * K[j * D + d];
                    p[j] = dot * scale;
                    if (p[j] > mx) mx = p[j];
                }
                double sum = 0;
                for (int64_t j = 0; j < nk; j++) sum += (p[j] = exp(p[j] - mx));
                for (int64_t d = 0; d < D; d++) acc[d] = 0;
                for (int64_t j = 0; j < nk; j++)
                    for (int64_t d = 0; d < D; d++) acc[d] += p[j] * V[j * D + d];
                float *oi = c->o + (start + i) * qw + h * D;
                for (int64_t d = 0; d < D; d++) oi[d] = (float)(acc[d] / sum);
            }
    }
    free(K), free(V), free(p), free(acc);
}

void rlx__ref_attention_kv(float *o, const float *q, const float *k, const float *v, const rlx__batch *b, int layer,
                           int64_t heads, int64_t kv_heads, int64_t head_dim, int causal, int threads) {
    rlx__ref_kv_write(b->kv, layer, k, v, b, kv_heads, head_dim);
    kv_attn_ctx c = {o, q, b, b->kv, rlx__kv_layer_k(b->kv, layer), rlx__kv_layer_v(b->kv, layer), heads, kv_heads, head_dim, causal};
    rlx__parallel_for(b->n_seqs * kv_heads, threads, kv_attn_part, &c);
}
