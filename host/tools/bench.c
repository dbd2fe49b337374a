/* Bench support: FLOP counting, statistics, datasheet peaks, the reference GEMM measurement. */
#include "tools/bench.h"
#include "runtime/cpu_ref.h"
#include "runtime/device.h"
#include "model/stages.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The reference GEMM gets what the prefill preset gives a session (kernels.gemm_workspace_mb). */
#define BENCH_GEMM_WORKSPACE_BYTES ((size_t)32 << 20)

// ---- FLOP counting ----------------------------------------------------------------------------

rlx__bench_flops rlx__bench_llama_flops(const rlx_llama_config *c, const int64_t *seq_lens, int64_t n_seqs,
                                        int flags) {
    const int last_token = flags & RLX__BENCH_LAST_TOKEN, pruned = last_token && (flags & RLX__BENCH_PRUNED);
    rlx__bench_flops f = {0, 0, 0, 0};
    if (!c || !seq_lens || n_seqs < 1) return f;
    const double H = (double)c->hidden_size, I = (double)c->intermediate_size, L = (double)c->num_hidden_layers;
    const double q = (double)(c->num_attention_heads * c->head_dim), kv = (double)(c->num_key_value_heads * c->head_dim);
    /* q [heads·D, H], k and v [kv·D, H], o [H, heads·D], gate and up [I, H], down [H, I] */
    const double layer_params = H * q + 2 * H * kv + q * H + 3 * H * I;
    double tokens = 0, attn = 0;
    for (int64_t i = 0; i < n_seqs; i++) {
        const double len = (double)seq_lens[i];
        tokens += len;
        /* 2 (QKᵀ and PV) × 2 (multiply-add) × len queries × len/2 keys on average × heads·D */
        attn += 2.0 * 2.0 * len * (len / 2.0) * q;
    }
    f.linear = 2.0 * layer_params * L * tokens;
    /* pruned: the last layer's o, gate, up, down on one row per sequence instead of every token */
    if (pruned && L > 0) f.linear -= 2.0 * (q * H + 3 * H * I) * (tokens - (double)n_seqs);
    f.attention = attn * L;
    f.lm_head = 2.0 * H * (double)c->vocab_size * (last_token ? (double)n_seqs : tokens);
    f.total = f.linear + f.attention + f.lm_head;
    return f;
}

double rlx__bench_llama_params(const rlx_llama_config *c) {
    if (!c) return 0;
    const double H = (double)c->hidden_size, I = (double)c->intermediate_size, V = (double)c->vocab_size;
    const double q = (double)(c->num_attention_heads * c->head_dim), kv = (double)(c->num_key_value_heads * c->head_dim);
    const double layer = H * q + 2 * H * kv + q * H + 3 * H * I + 2 * H; /* + the two norm weights */
    return V * H + (double)c->num_hidden_layers * layer + H + (c->tie_word_embeddings ? 0 : V * H);
}

// ---- statistics -------------------------------------------------------------------------------

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* numpy's default ("linear"): position p·(n−1) between order statistics. */
static double quantile(const double *sorted, int n, double p) {
    const double pos = p * (double)(n - 1);
    const int lo = (int)floor(pos);
    const int hi = lo + 1 < n ? lo + 1 : lo;
    return sorted[lo] + (pos - (double)lo) * (sorted[hi] - sorted[lo]);
}

void rlx__bench_stats_of(const double *x, int n, rlx__bench_stats *out) {
    memset(out, 0, sizeof *out);
    if (!x || n < 1) return;
    double *s = malloc((size_t)n * sizeof *s);
    if (!s) return;
    memcpy(s, x, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    double sum = 0;
    for (int i = 0; i < n; i++) sum += s[i];
    const double mean = sum / n;
    double ss = 0;
    for (int i = 0; i < n; i++) ss += (s[i] - mean) * (s[i] - mean);
    out->n = n;
    out->mean = mean;
    out->stdev = n > 1 ? sqrt(ss / (n - 1)) : 0.0;
    out->min = s[0];
    out->max = s[n - 1];
    out->median = quantile(s, n, 0.5);
    out->p10 = quantile(s, n, 0.1);
    out->p90 = quantile(s, n, 0.9);
    free(s);
}

// ---- datasheet peaks --------------------------------------------------------------------------

double rlx__bench_datasheet_bf16_tflops(const char *name, const char **card) {
    if (card) *card = NULL;
    if (!name) return 0;
    /* Dense (no sparsity) bf16 tensor-core numbers from NVIDIA's datasheets. Anything else (H100
     * NVL, H800, L40S, consumer cards…) is unknown on purpose: a wrong peak is worse than none. */
    struct { const char *must, *also, *card; double tflops; } table[] = {
        {"H100", "PCIe", "H100 PCIe", 756},
        {"H100", "PCIE", "H100 PCIe", 756},
        {"H100", "NVL", NULL, 0},
        {"H100", NULL, "H100 SXM", 989},
        {"H200", NULL, "H200", 989}, /* also GH200: the same H100-class tensor cores */
        {"A100", NULL, "A100", 312},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        if (!strstr(name, table[i].must)) continue;
        if (table[i].also && !strstr(name, table[i].also)) continue;
        if (card) *card = table[i].card;
        return table[i].tflops;
    }
    return 0;
}

// ---- reference GEMM ---------------------------------------------------------------------------

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return 1e3 * (double)ts.tv_sec + 1e-6 * (double)ts.tv_nsec;
}

/* splitmix64 → uniform [-1, 1): random data, never zeros (PERF.md method). */
static float uni(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)((double)(z >> 11) * 0x1.0p-52 - 1.0);
}

static rlx_status finish(rlx__bench_gemm *out, double *ms, int repeat) {
    rlx__bench_stats st;
    rlx__bench_stats_of(ms, repeat, &st);
    out->repeat = repeat;
    out->median_ms = st.median;
    out->tflops = st.median > 0 ? 2.0 * (double)out->m * (double)out->n * (double)out->k / (st.median * 1e-3) / 1e12 : 0;
    return RLX_OK;
}

static rlx_status cpu_gemm(int threads, int warmup, int repeat, rlx__bench_gemm *out) {
    const size_t M = (size_t)out->m, N = (size_t)out->n, K = (size_t)out->k;
    float *x = rlx__malloc(M * K * sizeof(float), "bench GEMM X");
    float *w = rlx__malloc(N * K * sizeof(float), "bench GEMM W");
    float *y = rlx__malloc(M * N * sizeof(float), "bench GEMM D");
    double *ms = rlx__malloc((size_t)repeat * sizeof(double), "bench GEMM times");
    rlx_status s = RLX_OK;
    if (!x || !w || !y || !ms) {
        s = RLX_ERR_OUT_OF_MEMORY;
        goto out;
    }
    uint64_t seed = 0x67656d6dull;
    for (size_t i = 0; i < M * K; i++) x[i] = uni(&seed);
    for (size_t i = 0; i < N * K; i++) w[i] = uni(&seed);
    for (int i = 0; i < warmup + repeat; i++) {
        const double t0 = now_ms();
        rlx__ref_linear(y, x, w, NULL, out->m, out->k, out->n, threads);
        if (i >= warmup) ms[i - warmup] = now_ms() - t0;
    }
    snprintf(out->what, sizeof out->what, "CPU f32 reference linear %lldx%lldx%lld, %d threads", (long long)out->m,
             (long long)out->n, (long long)out->k, threads > 0 ? threads : rlx__cpu_count());
    s = finish(out, ms, repeat);
out:
    free(x);
    free(w);
    free(y);
    free(ms);
    return s;
}

static rlx_status device_gemm(const rlx__device_ops *ops, int ordinal, int warmup, int repeat, rlx__bench_gemm *out) {
    const size_t M = (size_t)out->m, N = (size_t)out->n, K = (size_t)out->k;
    rlx__device *d = NULL;
    void *x = NULL, *w = NULL, *y = NULL, *ws = NULL, *timer = NULL;
    uint16_t *host = NULL;
    double *ms = NULL;
    rlx_status s = ops->open(ordinal, &d);
    if (s) return s;
    const size_t big = M * K > N * K ? M * K : N * K;
    host = rlx__malloc(big * sizeof(uint16_t), "bench GEMM host staging");
    ms = rlx__malloc((size_t)repeat * sizeof(double), "bench GEMM times");
    if (!host || !ms) {
        s = RLX_ERR_OUT_OF_MEMORY;
        goto out;
    }
    if ((s = ops->alloc(d, M * K * 2, "bench GEMM X", &x)) || (s = ops->alloc(d, N * K * 2, "bench GEMM W", &w)) ||
        (s = ops->alloc(d, M * N * 2, "bench GEMM D", &y)) ||
        (s = ops->alloc(d, BENCH_GEMM_WORKSPACE_BYTES, "bench GEMM workspace", &ws)))
        goto out;
    uint64_t seed = 0x67656d6dull;
    for (size_t i = 0; i < M * K; i++) host[i] = rlx_f32_to_bf16(uni(&seed));
    if ((s = ops->h2d(d, x, host, M * K * 2, NULL)) || (s = ops->sync(d, NULL))) goto out;
    for (size_t i = 0; i < N * K; i++) host[i] = rlx_f32_to_bf16(uni(&seed));
    if ((s = ops->h2d(d, w, host, N * K * 2, NULL)) || (s = ops->sync(d, NULL))) goto out;
    const rlx__gemm_desc g = {.M = out->m, .N = out->n, .K = out->k, .x = x, .ldx = out->k, .w = w, .ldw = out->k,
                              .d = y, .ldd = out->n, .ldc = out->n, .in_dtype = RLX_K_BF16, .out_dtype = RLX_K_BF16,
                              .workspace = ws, .workspace_bytes = BENCH_GEMM_WORKSPACE_BYTES};
    for (int i = 0; i < warmup && !s; i++) s = ops->gemm(d, &g, NULL);
    if (!s) s = ops->sync(d, NULL);
    if (s || (s = ops->timer_create(d, repeat + 1, &timer))) goto out;
    /* One mark between consecutive GEMMs: each interval is one GEMM, back to back on the stream. */
    for (int i = 0; i < repeat && !s; i++) {
        s = ops->timer_mark(d, timer, i, NULL);
        if (!s) s = ops->gemm(d, &g, NULL);
    }
    if (!s) s = ops->timer_mark(d, timer, repeat, NULL);
    if (!s) s = ops->timer_read(d, timer, repeat + 1, ms);
    if (!s) s = ops->check(d, 0, "the bench GEMM");
    if (s) goto out;
    snprintf(out->what, sizeof out->what, "%s bf16 %lldx%lldx%lld on %.96s",
             ops->kind == RLX_DEVICE_CUDA ? "cuBLASLt" : "simt reference GEMM", (long long)out->m, (long long)out->n,
             (long long)out->k, ops->describe(d));
    s = finish(out, ms, repeat);
out:
    if (timer) ops->timer_destroy(d, timer, repeat + 1);
    if (ws) ops->free(d, ws);
    if (y) ops->free(d, y);
    if (w) ops->free(d, w);
    if (x) ops->free(d, x);
    ops->close(d);
    free(host);
    free(ms);
    return s;
}

rlx_status rlx__bench_measure_gemm(rlx_device_kind kind, int ordinal, int threads, int64_t m, int64_t n, int64_t k,
                                   int warmup, int repeat, rlx__bench_gemm *out) {
    if (!out) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx__bench_measure_gemm: out is NULL");
    memset(out, 0, sizeof *out);
    if (m < 1 || n < 1 || k < 1 || warmup < 0 || repeat < 1)
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "bench GEMM: bad size %lldx%lldx%lld or repeat %d", (long long)m,
                         (long long)n, (long long)k, repeat);
    out->m = m, out->n = n, out->k = k;
    if (kind == RLX_DEVICE_CPU) return cpu_gemm(threads, warmup, repeat, out);
    const rlx__device_ops *ops = rlx__device_ops_for(kind);
    if (!ops) return rlx__fail(RLX_ERR_NO_DEVICE, "bench GEMM: device '%s' is not available in this build", rlx_device_kind_name(kind));
    return device_gemm(ops, ordinal, warmup, repeat, out);
}
