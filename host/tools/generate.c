/* rlx_generate (rlx/generate.h): prompts prefilled into a KV page pool, then decode steps, each
 * sequence finishing on its own. The scheduling a server does, in its simplest honest form. */
#include "rlx/generate.h"
#include "dist/comm.h"
#include "tools/kv_pool.h"
#include "model/stages.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct rlx_generation {
    int64_t n;
    int32_t **tokens; /* [n][max_new] */
    int64_t *len;
    int *stopped;
    rlx_generation_stats stats;
};

rlx_generate_params rlx_generate_default_params(void) {
    rlx_generate_params p;
    memset(&p, 0, sizeof p);
    p.max_new_tokens = 32;
    p.top_p = 1.0;
    p.page_size = 16;
    p.layout = RLX_KV_LAYOUT_NHD;
    return p;
}

void rlx_generation_destroy(rlx_generation *g) {
    if (!g) return;
    for (int64_t i = 0; g->tokens && i < g->n; i++) free(g->tokens[i]);
    free(g->tokens);
    free(g->len);
    free(g->stopped);
    free(g);
}

int64_t rlx_generation_count(const rlx_generation *g) { return g ? g->n : 0; }

const int32_t *rlx_generation_tokens(const rlx_generation *g, int64_t i, int64_t *n) {
    if (n) *n = 0;
    if (!g || i < 0 || i >= g->n) return NULL;
    if (n) *n = g->len[i];
    return g->tokens[i];
}

int rlx_generation_stopped(const rlx_generation *g, int64_t i) { return !g || i < 0 || i >= g->n ? -1 : g->stopped[i]; }

rlx_status rlx_generation_get_stats(const rlx_generation *g, rlx_generation_stats *out) {
    if (!g || !out) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_generation_get_stats: NULL argument");
    *out = g->stats;
    return RLX_OK;
}

/* ---- sampling -------------------------------------------------------------------------------------- */

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

typedef struct cand {
    double p;
    int32_t id;
} cand;

static int by_p_desc(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->p != y->p) return x->p < y->p ? 1 : -1;
    return x->id - y->id;
}

/* Greedy: argmax, the lowest id on a tie. Sampling: softmax(logits / T) over the top_k, then the
 * smallest prefix reaching top_p, one uniform draw from the sequence's own generator. */
static int32_t pick(const float *logits, int64_t V, const rlx_generate_params *p, uint64_t *rng, cand *scratch) {
    if (p->temperature <= 0) {
        int64_t best = 0;
        for (int64_t i = 1; i < V; i++)
            if (logits[i] > logits[best]) best = i;
        return (int32_t)best;
    }
    float mx = -INFINITY;
    for (int64_t i = 0; i < V; i++)
        if (logits[i] > mx) mx = logits[i];
    for (int64_t i = 0; i < V; i++) scratch[i] = (cand){exp(((double)logits[i] - mx) / p->temperature), (int32_t)i};
    qsort(scratch, (size_t)V, sizeof *scratch, by_p_desc);
    int64_t keep = p->top_k > 0 && p->top_k < V ? p->top_k : V;
    double sum = 0;
    for (int64_t i = 0; i < keep; i++) sum += scratch[i].p;
    if (p->top_p < 1) {
        double acc = 0;
        for (int64_t i = 0; i < keep; i++) {
            acc += scratch[i].p;
            if (acc >= p->top_p * sum) {
                keep = i + 1;
                break;
            }
        }
        sum = acc;
    }
    const double u = (double)(splitmix(rng) >> 11) * 0x1.0p-53 * sum;
    double acc = 0;
    for (int64_t i = 0; i < keep; i++) {
        acc += scratch[i].p;
        if (u < acc) return scratch[i].id;
    }
    return scratch[keep - 1].id;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return 1e3 * (double)ts.tv_sec + 1e-6 * (double)ts.tv_nsec;
}

/* ---- the loop ------------------------------------------------------------------------------------------- */

static rlx_status check(const rlx_model *m, const int32_t *tokens, const int64_t *lens, int64_t n, const rlx_generate_params *p) {
    if (!m || !tokens || !lens) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_generate: model, tokens and prompt_lens are required");
    if (n < 1 || n > (1 << 20)) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_generate: %lld prompts", (long long)n);
    if (m->plan_only) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_generate: the model was built plan-only");
    if (!rlx_model_output_per_sequence(m))
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_generate: the model gives logits per token; build it with last-token logits "
                                                   "(rlx_llama_recipe_params.last_token_logits = 1, the default)");
    if (m->kv_unsupported) return rlx__fail(RLX_ERR_UNSUPPORTED, "rlx_generate: this model cannot use a KV cache: %s", m->kv_unsupported);
    if (p->max_new_tokens < 1 || p->max_new_tokens > (1 << 24))
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_generate: max_new_tokens %lld is not in [1, 2^24]", (long long)p->max_new_tokens);
    if (!(p->temperature >= 0) || !isfinite(p->temperature))
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_generate: temperature %g must be a finite number >= 0", p->temperature);
    if (p->top_k < 0) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_generate: top_k %lld is negative", (long long)p->top_k);
    if (!(p->top_p > 0 && p->top_p <= 1)) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_generate: top_p %g is not in (0, 1]", p->top_p);
    if (p->n_stop_tokens < 0 || (p->n_stop_tokens && !p->stop_tokens))
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_generate: %lld stop tokens without a list", (long long)p->n_stop_tokens);
    const int64_t ctx = rlx_model_max_context(m);
    int64_t at = 0;
    for (int64_t i = 0; i < n; i++) {
        if (lens[i] < 1) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_generate: prompt %lld is empty", (long long)i);
        if (lens[i] > ctx - p->max_new_tokens)
            return rlx__fail(RLX_ERR_INVALID_ARGUMENT,
                             "rlx_generate: prompt %lld has %lld tokens; with %lld new ones it passes the model's %lld positions "
                             "(max_position_embeddings, or the recipe's max_context)",
                             (long long)i, (long long)lens[i], (long long)p->max_new_tokens, (long long)ctx);
        for (int64_t t = 0; t < lens[i]; t++)
            if (tokens[at + t] < 0 || tokens[at + t] >= m->vocab)
                return rlx__fail(RLX_ERR_TOKEN_RANGE, "rlx_generate: prompt %lld, token %lld: id %ld is outside the vocabulary [0, %lld)",
                                 (long long)i, (long long)t, (long)tokens[at + t], (long long)m->vocab);
        at += lens[i];
    }
    return RLX_OK;
}

static int is_stop(const rlx_generate_params *p, int32_t id) {
    for (int64_t i = 0; i < p->n_stop_tokens; i++)
        if (p->stop_tokens[i] == id) return 1;
    return 0;
}

static rlx_status generate(const rlx_model *m, const int32_t *tokens, const int64_t *lens, int64_t n, const rlx_generate_params *params,
                           void *stream, rlx_generation **out) {
    if (!out) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_generate: out is NULL");
    *out = NULL;
    const rlx_generate_params p = params ? *params : rlx_generate_default_params();
    rlx_status st = check(m, tokens, lens, n, &p);
    if (st) return st;
    const int64_t V = rlx_model_output_width(m), cap_seqs = m->max_seqs, cap_tokens = m->max_tokens, N = p.max_new_tokens;
    const int64_t P = p.page_size;
    if (P < 1 || P > 256 || (P & (P - 1)))
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_generate: page_size %lld is not a power of two in [1, 256]", (long long)P);
    rlx_generation *g = rlx__calloc(1, sizeof *g, "a generation");
    if (!g) return RLX_ERR_OUT_OF_MEMORY;
    g->n = n;
    g->tokens = rlx__calloc((size_t)n, sizeof(int32_t *), "generated tokens");
    g->len = rlx__calloc((size_t)n, sizeof(int64_t), "generated tokens");
    g->stopped = rlx__calloc((size_t)n, sizeof(int), "generated tokens");
    int64_t *start = rlx__malloc((size_t)(n + 1) * sizeof(int64_t), "prompt offsets"), *done = rlx__calloc((size_t)n, sizeof(int64_t), "prompt progress");
    uint64_t *rng = rlx__malloc((size_t)n * sizeof(uint64_t), "sampling state");
    int64_t *seqs = rlx__malloc((size_t)cap_seqs * sizeof(int64_t), "a call's sequences"), *fresh = rlx__malloc((size_t)cap_seqs * sizeof(int64_t), "a call's sequences");
    int32_t *call_tok = rlx__malloc((size_t)cap_tokens * sizeof(int32_t), "a call's tokens");
    float *logits = rlx__malloc((size_t)(cap_seqs * V) * sizeof(float), "logits");
    cand *scratch = p.temperature > 0 ? rlx__malloc((size_t)V * sizeof(cand), "sampling scratch") : NULL;
    rlx_session *s = NULL;
    rlx__kv_pool *pool = NULL;
    if (!g->tokens || !g->len || !g->stopped || !start || !done || !rng || !seqs || !fresh || !call_tok || !logits || (p.temperature > 0 && !scratch)) {
        st = RLX_ERR_OUT_OF_MEMORY;
        goto out;
    }
    int64_t pages = 0;
    start[0] = 0;
    for (int64_t i = 0; i < n; i++) {
        start[i + 1] = start[i] + lens[i];
        pages += (lens[i] + N + P - 1) / P;
        uint64_t seed = p.seed ^ (0xD1B54A32D192ED03ull * (uint64_t)(i + 1));
        rng[i] = splitmix(&seed);
        if (!(g->tokens[i] = rlx__malloc((size_t)N * sizeof(int32_t), "generated tokens"))) {
            st = RLX_ERR_OUT_OF_MEMORY;
            goto out;
        }
    }
    if ((st = rlx__kv_pool_create(m, P, p.layout, pages, n, -1, 0, &pool))) goto out;
    if ((st = rlx_session_create(m, &s))) goto out;
    g->stats.kv_pages = pages;
    g->stats.kv_bytes = 2 * pool->bytes;
    const double t0 = now_ms();
    double t_first = 0;
    /* prefill: prompts packed into calls as the capacity allows (long prompts in chunks); then
     * decode steps over the sequences still running, `batch` per call */
    int64_t next = 0, active = n;
    for (int decoding = 0; active > 0;) {
        int64_t k = 0, T = 0;
        if (!decoding) {
            for (int64_t i = next; i < n && k < cap_seqs && T < cap_tokens; i++) {
                const int64_t take = lens[i] - done[i] < cap_tokens - T ? lens[i] - done[i] : cap_tokens - T;
                seqs[k] = i, fresh[k] = take;
                memcpy(call_tok + T, tokens + start[i] + done[i], (size_t)take * sizeof(int32_t));
                T += take, k++;
            }
        } else {
            for (int64_t i = next; i < n && k < cap_seqs; i++) {
                if (g->stopped[i] || g->len[i] == N) continue;
                seqs[k] = i, fresh[k] = 1, call_tok[T++] = g->tokens[i][g->len[i] - 1];
                k++;
            }
        }
        if (k == 0) { /* a pass over the sequences is complete */
            if (!decoding) {
                decoding = 1;
                t_first = now_ms();
                g->stats.first_token_ms = t_first - t0;
            }
            next = 0;
            continue;
        }
        next = seqs[k - 1] + 1;
        rlx_kv_pages pg;
        if ((st = rlx__kv_pool_prepare(pool, seqs, fresh, k, &pg))) goto out;
        rlx_prefill_batch pb = {.tokens = call_tok, .n_tokens = T, .seq_lens = fresh, .n_seqs = k};
        if ((st = rlx_session_prefill_kv(s, &pb, &pool->desc, &pg, stream))) goto out;
        if ((st = rlx_session_output_to_host(s, logits, (size_t)(k * V)))) goto out;
        rlx__kv_pool_commit(pool, seqs, fresh, k);
        g->stats.calls++;
        for (int64_t j = 0; j < k; j++) {
            const int64_t i = seqs[j];
            if (!decoding) {
                done[i] += fresh[j];
                if (done[i] < lens[i]) continue; /* a chunk of a long prompt: no token yet */
            }
            const int32_t id = pick(logits + j * V, V, &p, &rng[i], scratch);
            g->tokens[i][g->len[i]++] = id;
            if (decoding) g->stats.decode_tokens++;
            if (is_stop(&p, id)) g->stopped[i] = 1;
            if (g->stopped[i] || g->len[i] == N) {
                active--;
                rlx__kv_pool_release(pool, i); /* its pages go back to the free list */
            }
        }
        if (!decoding && done[seqs[k - 1]] < lens[seqs[k - 1]]) next = seqs[k - 1]; /* resume the chunked prompt */
    }
    if (!t_first) g->stats.first_token_ms = now_ms() - t0; /* every sequence ended with its first token */
    else g->stats.decode_ms = now_ms() - t_first;
out:
    rlx_session_destroy(s);
    rlx__kv_pool_destroy(pool);
    free(start), free(done), free(rng), free(seqs), free(fresh), free(call_tok), free(logits), free(scratch);
    if (st) {
        rlx_generation_destroy(g);
        return st;
    }
    *out = g;
    return RLX_OK;
}

rlx_status rlx_generate(const rlx_model *m, const int32_t *tokens, const int64_t *lens, int64_t n, const rlx_generate_params *params,
                        void *stream, rlx_generation **out) {
    rlx_status st = generate(m, tokens, lens, n, params, stream, out);
    /* tensor parallelism: every rank generates in lockstep (the same logits, so the same tokens); one
     * that fails anywhere — its arguments, its page pool — aborts the job, so the others' collectives
     * return RLX_ERR_COMM naming it instead of waiting (dist/comm.h) */
    if (st && st != RLX_ERR_COMM && m && m->comm) rlx__comm_fail(m->comm, st, rlx_last_error());
    return st;
}
