/* Decode benchmark (`rlx bench --decode`, host/tools/bench_decode.h): time to first token and
 * decode steps over a KV cache, with the memory roofline a decode step is bounded by. Benchmarks
 * never assert; this only measures. docs/bench.md documents every number.
 *
 * Method, per (batch B, context C): a model with capacity B × C and RoPE tables for C + the steps;
 * a page pool (pages of 16, the model's dtype) with B × ceil((C + steps) / 16) pages. One warm-up
 * prefill of B random prompts of C tokens into the pool (then given back), then the timed one:
 * prefill + the copy of the last-token logits to the host (what a server waits for before its first
 * token). Decode: warm-up steps, then `steps` timed steps of one random token per sequence, each
 * step as a server runs it — the page lists (host), rlx_session_prefill_kv, the logits copy (which
 * synchronizes) — timed on the host clock; one more step with a timer mark between kernels gives
 * the device time of one step. The roofline of a step is the bytes it must read — every weight
 * once, plus the K and V of the B sequences' contexts — over the copy bandwidth measured on the same
 * device (a device-to-device copy, read + write counted, as PERF.md measures it). */
#include "tools/bench_decode.h"
#include "tools/kv_pool.h"
#include "runtime/device.h"
#include "runtime/session.h"
#include "model/stages.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return 1e3 * (double)ts.tv_sec + 1e-6 * (double)ts.tv_nsec;
}

static uint64_t mix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// ---- copy bandwidth -------------------------------------------------------------------------------

rlx_status rlx__bench_measure_copy(rlx_device_kind kind, int ordinal, size_t bytes, int repeat, rlx__bench_copy *out) {
    memset(out, 0, sizeof *out);
    if (bytes < 4096 || repeat < 1) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "bench copy: %zu bytes x %d", bytes, repeat);
    out->bytes = bytes;
    out->repeat = repeat;
    double *ms = rlx__malloc((size_t)repeat * sizeof(double), "bench copy times");
    if (!ms) return RLX_ERR_OUT_OF_MEMORY;
    rlx_status s = RLX_OK;
    if (kind == RLX_DEVICE_CPU) {
        unsigned char *a = rlx__malloc(bytes, "bench copy source"), *b = a ? rlx__malloc(bytes, "bench copy destination") : NULL;
        if (!b) {
            free(a), free(ms);
            return RLX_ERR_OUT_OF_MEMORY;
        }
        memset(a, 1, bytes), memset(b, 2, bytes);
        memcpy(b, a, bytes); /* warm */
        for (int i = 0; i < repeat; i++) {
            const double t0 = now_ms();
            memcpy(i & 1 ? a : b, i & 1 ? b : a, bytes);
            ms[i] = now_ms() - t0;
        }
        snprintf(out->what, sizeof out->what, "memcpy of %zu MiB on the host (one thread)", bytes >> 20);
        free(a), free(b);
    } else {
        const rlx__device_ops *ops = rlx__device_ops_for(kind);
        if (!ops) {
            free(ms);
            return rlx__fail(RLX_ERR_NO_DEVICE, "bench copy: device '%s' is not available", rlx_device_kind_name(kind));
        }
        rlx__device *d = NULL;
        void *a = NULL, *b = NULL, *timer = NULL;
        if ((s = ops->open(ordinal, &d))) {
            free(ms);
            return s;
        }
        if (!(s = ops->alloc(d, bytes, "bench copy source", &a)) && !(s = ops->alloc(d, bytes, "bench copy destination", &b)) &&
            !(s = ops->memset(d, a, 1, bytes, NULL)) && !(s = ops->d2d(d, b, a, bytes, NULL)) && !(s = ops->sync(d, NULL)) &&
            !(s = ops->timer_create(d, repeat + 1, &timer))) {
            for (int i = 0; i < repeat && !s; i++) {
                s = ops->timer_mark(d, timer, i, NULL);
                if (!s) s = ops->d2d(d, i & 1 ? a : b, i & 1 ? b : a, bytes, NULL);
            }
            if (!s) s = ops->timer_mark(d, timer, repeat, NULL);
            if (!s) s = ops->timer_read(d, timer, repeat + 1, ms);
        }
        if (!s) snprintf(out->what, sizeof out->what, "device-to-device copy of %zu MiB on %.100s", bytes >> 20, ops->describe(d));
        if (timer) ops->timer_destroy(d, timer, repeat + 1);
        if (b) ops->free(d, b);
        if (a) ops->free(d, a);
        ops->close(d);
    }
    if (!s) {
        rlx__bench_stats st;
        rlx__bench_stats_of(ms, repeat, &st);
        out->median_ms = st.median;
        out->gbps = st.median > 0 ? 2.0 * (double)bytes / (st.median * 1e6) : 0; /* read + write */
    }
    free(ms);
    return s;
}

// ---- one configuration -------------------------------------------------------------------------------

rlx_status rlx__bench_decode(const rlx_llama_config *cfg, const rlx_weights *w, const rlx_build_params *bp, int64_t B, int64_t C,
                             int warmup, int steps, uint64_t seed, double copy_gbps, rlx__bench_decode_result *r) {
    memset(r, 0, sizeof *r);
    r->batch = B, r->context = C, r->steps = steps;
    if (B < 1 || C < 1 || steps < 1 || warmup < 0)
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "bench decode: batch %lld, context %lld, %d steps", (long long)B, (long long)C, steps);
    if (C + warmup + steps > cfg->max_position_embeddings)
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "bench decode: context %lld + %d steps passes max_position_embeddings %lld",
                         (long long)C, warmup + steps, (long long)cfg->max_position_embeddings);
    rlx_llama_recipe_params rp = rlx_llama_recipe_default_params();
    rp.batch = B, rp.seq = C, rp.max_context = C + warmup + steps + 1;
    rlx_flow *f = NULL;
    rlx_model *m = NULL;
    rlx_session *s = NULL;
    rlx__kv_pool *pool = NULL;
    int32_t *tok = NULL;
    float *logits = NULL;
    double *step_ms = NULL, *kernel_ms = NULL;
    rlx_status st = rlx_llama_flow(cfg, &rp, &f);
    if (!st) st = rlx_model_build(f, w, bp, &m);
    if (!st) st = rlx_session_create(m, &s);
    const int64_t P = 16, V = m ? rlx_model_output_width(m) : 0;
    if (!st) st = rlx__kv_pool_create(m, P, RLX_KV_LAYOUT_NHD, B * ((C + warmup + steps + 1 + P - 1) / P), B, -1, 0, &pool);
    if (st) goto out;
    tok = rlx__malloc((size_t)(B * C) * sizeof(int32_t), "bench prompts");
    logits = rlx__malloc((size_t)(B * V) * sizeof(float), "bench logits");
    step_ms = rlx__malloc((size_t)steps * sizeof(double), "bench step times");
    kernel_ms = rlx__calloc((size_t)rlx__timing_count(m) + 1, sizeof(double), "bench kernel times");
    int64_t *seqs = rlx__malloc((size_t)B * sizeof(int64_t) * 2, "bench sequences"), *fresh = seqs ? seqs + B : NULL;
    if (!tok || !logits || !step_ms || !kernel_ms || !seqs) {
        free(seqs);
        st = RLX_ERR_OUT_OF_MEMORY;
        goto out;
    }
    const int64_t vocab = m->vocab;
    for (int64_t i = 0; i < B; i++) seqs[i] = i;
    /* prefill: a warm-up one (given back), then the timed one */
    for (int pass = 0; pass < 2 && !st; pass++) {
        for (int64_t i = 0; i < B * C; i++) tok[i] = (int32_t)(mix(&seed) % (uint64_t)vocab);
        for (int64_t i = 0; i < B; i++) fresh[i] = C;
        rlx_kv_pages pg;
        const double t0 = now_ms();
        if ((st = rlx__kv_pool_prepare(pool, seqs, fresh, B, &pg))) break;
        rlx_prefill_batch pb = {.tokens = tok, .n_tokens = B * C, .seq_lens = fresh, .n_seqs = B};
        if ((st = rlx_session_prefill_kv(s, &pb, &pool->desc, &pg, NULL))) break;
        if ((st = rlx_session_output_to_host(s, logits, (size_t)(B * V)))) break;
        r->ttft_ms = now_ms() - t0;
        rlx__kv_pool_commit(pool, seqs, fresh, B);
        if (pass == 0)
            for (int64_t i = 0; i < B; i++) rlx__kv_pool_release(pool, i);
    }
    /* decode steps: one random token per sequence, logits read back every step */
    for (int i = 0; i < warmup + steps + 1 && !st; i++) {
        for (int64_t q = 0; q < B; q++) tok[q] = (int32_t)(mix(&seed) % (uint64_t)vocab), fresh[q] = 1;
        const int timed_kernels = i == warmup + steps;
        rlx_kv_pages pg;
        const double t0 = now_ms();
        if ((st = rlx__kv_pool_prepare(pool, seqs, fresh, B, &pg))) break;
        rlx_prefill_batch pb = {.tokens = tok, .n_tokens = B, .seq_lens = fresh, .n_seqs = B};
        if ((st = rlx__session_prefill_kv_timed(s, &pb, &pool->desc, &pg, NULL, timed_kernels ? kernel_ms : NULL))) break;
        if ((st = rlx_session_output_to_host(s, logits, (size_t)(B * V)))) break;
        if (i >= warmup && !timed_kernels) step_ms[i - warmup] = now_ms() - t0;
        rlx__kv_pool_commit(pool, seqs, fresh, B);
    }
    free(seqs);
    if (st) goto out;
    rlx__bench_stats_of(step_ms, steps, &r->step);
    for (int i = 0; i < rlx__timing_count(m); i++) r->kernels_ms += kernel_ms[i];
    r->tokens_per_s = r->step.median > 0 ? 1e3 * (double)B / r->step.median : 0;
    r->kv_bytes_per_token = rlx__kv_bytes_per_token(&pool->desc);
    size_t wb = 0;
    rlx_model_memory(m, &wb, NULL);
    if (!m->dev) /* the CPU reference reads its f32 copies */
        for (int i = 0; i < m->n_weights; i++) wb += m->weights[i].numel * sizeof(float);
    r->weight_bytes = (double)wb;
    /* the timed steps read contexts C + warmup + 1 … C + warmup + steps: their mean */
    const double ctx = (double)C + warmup + 0.5 * (steps + 1);
    r->kv_read_bytes = (double)B * ctx * (double)r->kv_bytes_per_token;
    r->copy_gbps = copy_gbps;
    if (copy_gbps > 0) {
        r->roofline_ms = (r->weight_bytes + r->kv_read_bytes) / (copy_gbps * 1e6);
        r->roofline_frac = r->step.median > 0 ? r->roofline_ms / r->step.median : 0;
    }
    r->device = rlx_model_device(m);
out:
    free(tok), free(logits), free(step_ms), free(kernel_ms);
    rlx__kv_pool_destroy(pool);
    rlx_session_destroy(s);
    rlx_model_destroy(m);
    rlx_flow_destroy(f);
    return st;
}
