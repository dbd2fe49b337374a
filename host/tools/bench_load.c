/* rlx bench --load: the model load (bench.h). Benchmarks never assert; this only measures. */
#include "tools/bench.h"
#include "runtime/device.h"
#include "model/stages.h"
#include "rlx/weights.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double cpu_s(void) {
    struct rusage r;
    if (getrusage(RUSAGE_SELF, &r)) return 0;
    return (double)r.ru_utime.tv_sec + 1e-6 * (double)r.ru_utime.tv_usec + (double)r.ru_stime.tv_sec +
           1e-6 * (double)r.ru_stime.tv_usec;
}

static int same_shape(const rlx_llama_config *a, const rlx_llama_config *b) {
    return a->vocab_size == b->vocab_size && a->hidden_size == b->hidden_size && a->intermediate_size == b->intermediate_size &&
           a->num_hidden_layers == b->num_hidden_layers && a->num_attention_heads == b->num_attention_heads &&
           a->num_key_value_heads == b->num_key_value_heads && a->head_dim == b->head_dim &&
           a->tie_word_embeddings == b->tie_word_embeddings;
}

rlx_status rlx__bench_load_checkpoint(const rlx_llama_config *cfg, uint64_t seed, const char *dir, double *written_s) {
    *written_s = 0;
    rlx_weights *w = NULL;
    if (rlx_weights_open(dir, &w) == RLX_OK) {
        rlx_llama_config have;
        const char *json = rlx_weights_config_json(w);
        int ok = json && rlx_llama_config_parse(json, dir, &have) == RLX_OK && same_shape(&have, cfg);
        rlx_weights_destroy(w);
        if (ok) return RLX_OK;
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "%s holds a checkpoint of another shape; remove it or pick another directory", dir);
    }
    rlx_clear_error();
    const double t0 = now_s();
    rlx_status s = rlx_llama_random_weights(cfg, seed, RLX_DTYPE_BF16, &w);
    if (!s) s = rlx_weights_save_dir(w, dir);
    rlx_weights_destroy(w);
    if (!s) *written_s = now_s() - t0;
    return s;
}

/* ---- the bounds ------------------------------------------------------------------------------------ */

typedef struct read_job {
    char path[1024];
    uint64_t size;
} read_job;

typedef struct read_ctx {
    const read_job *files;
    int n_files;
    uint64_t chunk;
    int64_t *first; /* [n_files + 1]: chunk index where each file starts */
    int failed;
} read_ctx;

#define READ_CHUNK ((uint64_t)64 << 20)
#define READ_BUF ((size_t)8 << 20)

static void read_chunks(int64_t b, int64_t e, void *arg) {
    read_ctx *x = arg;
    char *buf = malloc(READ_BUF);
    if (!buf) {
        x->failed = 1;
        return;
    }
    for (int64_t c = b; c < e; c++) {
        int f = 0;
        while (f + 1 < x->n_files && x->first[f + 1] <= c) f++;
        const uint64_t off = (uint64_t)(c - x->first[f]) * x->chunk;
        uint64_t end = off + x->chunk;
        if (end > x->files[f].size) end = x->files[f].size;
        int fd = open(x->files[f].path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            x->failed = 1;
            continue;
        }
        for (uint64_t at = off; at < end;) {
            size_t want = end - at < READ_BUF ? (size_t)(end - at) : READ_BUF;
            ssize_t r = pread(fd, buf, want, (off_t)at);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) {
                x->failed = 1;
                break;
            }
            at += (uint64_t)r;
        }
        close(fd);
    }
    free(buf);
}

/* The safetensors files of dir, and their bytes. */
static int list_files(const char *dir, read_job *files, int cap, uint64_t *total) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    *total = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < cap) {
        size_t len = strlen(e->d_name);
        if (len < 12 || strcmp(e->d_name + len - 12, ".safetensors")) continue;
        snprintf(files[n].path, sizeof files[n].path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(files[n].path, &st) || !S_ISREG(st.st_mode)) continue;
        files[n].size = (uint64_t)st.st_size;
        *total += files[n].size;
        n++;
    }
    closedir(d);
    return n;
}

static double measure_read(const read_job *files, int n, int threads, uint64_t total) {
    int64_t first[65];
    int64_t chunks = 0;
    for (int f = 0; f < n; f++) {
        first[f] = chunks;
        chunks += (int64_t)((files[f].size + READ_CHUNK - 1) / READ_CHUNK);
    }
    first[n] = chunks;
    read_ctx x = {files, n, READ_CHUNK, first, 0};
    const double t0 = now_s();
    rlx__parallel_for(chunks, threads, read_chunks, &x);
    const double dt = now_s() - t0;
    return x.failed || dt <= 0 ? 0 : (double)total / dt / 1e9;
}

/* cuda: pinned 64 MiB host-to-device copies, 16 of them after one warm-up. */
static double measure_h2d(int ordinal) {
    const rlx__device_ops *ops = rlx__device_ops_for(RLX_DEVICE_CUDA);
    rlx__device *d = NULL;
    if (!ops || !ops->host_alloc || ops->open(ordinal, &d)) {
        rlx_clear_error();
        return 0;
    }
    const size_t n = (size_t)64 << 20;
    void *h = NULL, *g = NULL;
    double gbps = 0;
    if (!ops->host_alloc(d, n, "the h2d bandwidth probe", &h) && !ops->alloc(d, n, "the h2d bandwidth probe", &g)) {
        memset(h, 0x5a, n);
        if (!ops->h2d(d, g, h, n, NULL) && !ops->sync(d, NULL)) {
            const double t0 = now_s();
            int ok = 1;
            for (int i = 0; i < 16 && ok; i++) ok = !ops->h2d(d, g, h, n, NULL);
            ok = ok && !ops->sync(d, NULL);
            const double dt = now_s() - t0;
            if (ok && dt > 0) gbps = 16.0 * (double)n / dt / 1e9;
        }
    }
    if (g) ops->free(d, g);
    if (h) ops->host_free(d, h);
    ops->close(d);
    rlx_clear_error();
    return gbps;
}

/* ---- the timed loads --------------------------------------------------------------------------------- */

typedef struct total_probe {
    const rlx_build_params *bp;
    uint64_t total;
} total_probe;

/* Passes the caller's progress on and keeps the total the build reports (the bytes it reads). */
static void probe_progress(void *user, uint64_t done, uint64_t total) {
    total_probe *p = user;
    p->total = total;
    if (p->bp->progress) p->bp->progress(p->bp->progress_user, done, total);
}

rlx_status rlx__bench_load_run(const char *dir, const rlx_build_params *bp, int repeat, rlx__bench_load *out) {
    memset(out, 0, sizeof *out);
    if (repeat < 1) repeat = 1;
    if (repeat > RLX__BENCH_LOAD_MAX_REPEAT) repeat = RLX__BENCH_LOAD_MAX_REPEAT;
    read_job files[64];
    int nf = list_files(dir, files, 64, &out->checkpoint_bytes);
    if (nf <= 0) return rlx__fail(RLX_ERR_IO, "%s: no .safetensors files to load", dir);
    out->read_gbps = measure_read(files, nf, bp->threads, out->checkpoint_bytes);
    if (bp->device == RLX_DEVICE_CUDA) out->h2d_gbps = measure_h2d(bp->cuda_device);
    for (int r = 0; r < repeat; r++) {
        rlx_weights *w = NULL;
        rlx_flow *flow = NULL;
        rlx_model *m = NULL;
        total_probe probe = {bp, 0};
        rlx_build_params p = *bp;
        p.progress = probe_progress;
        p.progress_user = &probe;
        const double c0 = cpu_s(), t0 = now_s();
        rlx_status s = rlx_weights_open(dir, &w);
        rlx_llama_config cfg;
        if (!s) s = rlx_llama_config_parse(rlx_weights_config_json(w), dir, &cfg);
        rlx_llama_recipe_params rp = rlx_llama_recipe_default_params();
        rp.batch = 1;
        rp.seq = 1;
        rp.last_token_logits = 1;
        if (!s) s = rlx_llama_flow(&cfg, &rp, &flow);
        if (!s) s = rlx_model_build(flow, w, &p, &m);
        const double t1 = now_s(), c1 = cpu_s();
        if (!s) {
            size_t wb = 0, sb = 0;
            rlx_model_memory(m, &wb, &sb);
            out->device_bytes = wb;
            if (rlx_model_device(m) == RLX_DEVICE_CPU) { /* the reference's f32 copies */
                size_t f32 = 0;
                for (int i = 0; i < m->n_weights; i++) f32 += m->weights[i].numel * sizeof(float);
                out->device_bytes = f32;
            }
            out->read_bytes = probe.total;
        }
        rlx_model_destroy(m);
        rlx_flow_destroy(flow);
        rlx_weights_destroy(w);
        if (s) return s;
        out->wall_s[r] = t1 - t0;
        out->cpu_s[r] = c1 - c0;
        out->repeat = r + 1;
    }
    rlx__bench_stats_of(out->wall_s, out->repeat, &out->wall);
    rlx__bench_stats_of(out->cpu_s, out->repeat, &out->cpu);
    return RLX_OK;
}
