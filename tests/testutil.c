#define _XOPEN_SOURCE 700
#include "testutil.h"

#include <dirent.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

uint64_t rlxt_next(rlxt_rng *r) {
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

float rlxt_uniform(rlxt_rng *r) { return (float)((double)(rlxt_next(r) >> 11) * 0x1.0p-52 - 1.0); }

void rlxt_fill(rlxt_rng *r, float *x, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) x[i] = rlxt_uniform(r) * scale;
}

char *rlxt_tmpdir(void) {
    const char *base = getenv("TMPDIR");
    if (!base || !*base) base = "/tmp";
    size_t n = strlen(base) + 32;
    char *p = malloc(n);
    snprintf(p, n, "%s/rlx-test-XXXXXX", base);
    if (!mkdtemp(p)) {
        free(p);
        return NULL;
    }
    return p;
}

char *rlxt_write_file(const char *dir, const char *name, const void *data, size_t n) {
    size_t len = strlen(dir) + strlen(name) + 2;
    char *p = malloc(len);
    snprintf(p, len, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (f) {
        if (n) fwrite(data, 1, n, f);
        fclose(f);
    }
    return p;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb; (void)flag; (void)ftw;
    return remove(path);
}

void rlxt_rmtree(const char *dir) {
    if (dir) nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

const char *rlxt_fixtures_dir(void) {
    const char *p = getenv("RLX_FIXTURES");
    return (p && *p) ? p : "tests/fixtures";
}

double rlxt_nmse(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * (double)b[i];
    }
    return den > 0 ? num / den : num;
}

double rlxt_max_abs_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= m)) m = d; /* NaN propagates */
    }
    return m;
}

double rlxt_max_abs(const float *a, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs((double)a[i]) > m) m = fabs((double)a[i]);
    return m;
}

void rlxt_slurp(const char *path, char *buf, size_t cap) {
    buf[0] = '\0';
    FILE *f = fopen(path, "rb");
    if (!f) return;
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
}

int rlxt_run_cli(const char *env, const char *args, char *out, size_t out_cap, char *err, size_t err_cap) {
    const char *cli = getenv("RLX_CLI");
    if (!cli || !*cli) return -2;
    char *dir = rlxt_tmpdir();
    if (!dir) return -1;
    size_t n = strlen(cli) + strlen(args) + (env ? strlen(env) : 0) + 2 * strlen(dir) + 32;
    char *cmd = malloc(n), p[1024];
    snprintf(cmd, n, "%s %s %s >%s/out 2>%s/err", env ? env : "", cli, args, dir, dir);
    int st = system(cmd);
    free(cmd);
    snprintf(p, sizeof p, "%s/out", dir);
    rlxt_slurp(p, out, out_cap);
    snprintf(p, sizeof p, "%s/err", dir);
    rlxt_slurp(p, err, err_cap);
    rlxt_rmtree(dir);
    free(dir);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ---- LLaMA fixtures ---------------------------------------------------------------------------- */

#include <jansson.h>

#include "io/npy.h"

const char *const rlxt_llama_fixtures[RLXT_N_LLAMA_FIXTURES] = {
    "gqa_tied_f32", "mqa_untied_bf16", "llama3_scaling_f32", "head_dim_explicit_f32",
    "sharded_bf16", "legacy_config_f32", "f16",             "single_token_f32",
    "legacy_buffers_f32"};

static int32_t *json_ids(json_t *a, int64_t *n) {
    *n = (int64_t)json_array_size(a);
    int32_t *ids = malloc((size_t)(*n ? *n : 1) * sizeof(int32_t));
    for (int64_t i = 0; ids && i < *n; i++) ids[i] = (int32_t)json_integer_value(json_array_get(a, (size_t)i));
    return ids;
}

int rlxt_llama_fixture_load(const char *name, rlxt_llama_fixture *f, char *err, size_t cap) {
    memset(f, 0, sizeof *f);
    char path[1200];
    snprintf(f->dir, sizeof f->dir, "%s/llama/%s", rlxt_fixtures_dir(), name);
    if (rlx_weights_open(f->dir, &f->w)) return snprintf(err, cap, "open %s: %s", f->dir, rlx_last_error()), -1;
    if (rlx_llama_config_parse(rlx_weights_config_json(f->w), f->dir, &f->cfg))
        return snprintf(err, cap, "config %s: %s", f->dir, rlx_last_error()), -1;
    json_error_t je;
    snprintf(path, sizeof path, "%s/tokens.json", f->dir);
    json_t *j = json_load_file(path, 0, &je);
    if (!j) return snprintf(err, cap, "%s: %s", path, je.text), -1;
    json_t *rows = json_object_get(j, "tokens");
    f->B = (int64_t)json_array_size(rows);
    f->S = (int64_t)json_array_size(json_array_get(rows, 0));
    f->tokens = malloc((size_t)(f->B * f->S) * sizeof(int32_t));
    for (int64_t b = 0; b < f->B; b++)
        for (int64_t t = 0; t < f->S; t++)
            f->tokens[b * f->S + t] = (int32_t)json_integer_value(json_array_get(json_array_get(rows, (size_t)b), (size_t)t));
    json_decref(j);
    int nd;
    int64_t shape[8];
    snprintf(path, sizeof path, "%s/logits.npy", f->dir);
    if (rlx__npy_read_f32(path, &f->logits, &nd, shape, 8) || nd != 3) return snprintf(err, cap, "%s: %s", path, rlx_last_error()), -1;
    f->V = shape[2];
    snprintf(path, sizeof path, "%s/past_kv.npy", f->dir);
    if (rlx__npy_read_f32(path, &f->past_kv, &nd, shape, 8) || nd != 6 || shape[1] != 2 || shape[2] != f->B || shape[4] != f->S)
        return snprintf(err, cap, "%s: %s (expected [L, 2, B, KV, S, D])", path, rlx_last_error()), -1;
    f->L = shape[0], f->KV = shape[3], f->D = shape[5];
    snprintf(path, sizeof path, "%s/generate.json", f->dir);
    if (!(j = json_load_file(path, 0, &je))) return snprintf(err, cap, "%s: %s", path, je.text), -1;
    json_t *pr = json_object_get(j, "prompts"), *gt = json_object_get(j, "tokens"), *fin = json_object_get(j, "finish"),
           *eos = json_object_get(j, "eos_token_id");
    f->max_new = (int64_t)json_integer_value(json_object_get(j, "max_new_tokens"));
    f->n_prompts = (int)json_array_size(pr);
    if (f->n_prompts < 1 || f->n_prompts > 4 || json_array_size(gt) != (size_t)f->n_prompts) {
        json_decref(j);
        return snprintf(err, cap, "%s: expected 1-4 prompts with their tokens", path), -1;
    }
    for (int i = 0; i < f->n_prompts; i++) {
        f->prompt[i] = json_ids(json_array_get(pr, (size_t)i), &f->prompt_len[i]);
        f->gen[i] = json_ids(json_array_get(gt, (size_t)i), &f->gen_len[i]);
        f->gen_stop[i] = !strcmp(json_string_value(json_array_get(fin, (size_t)i)) ? json_string_value(json_array_get(fin, (size_t)i)) : "", "stop");
    }
    for (size_t i = 0; i < json_array_size(eos) && i < 8; i++) f->eos[f->n_eos++] = (int32_t)json_integer_value(json_array_get(eos, i));
    json_decref(j);
    return 0;
}

void rlxt_llama_fixture_free(rlxt_llama_fixture *f) {
    rlx_weights_destroy(f->w);
    free(f->tokens);
    free(f->logits);
    free(f->past_kv);
    for (int i = 0; i < 4; i++) free(f->prompt[i]), free(f->gen[i]);
    memset(f, 0, sizeof *f);
}

static int by_name(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

int rlxt_llama_fixture_dirs(const char **names, int cap) {
    static char store[64][128];
    static int n_store = -1;
    if (n_store < 0) {
        n_store = 0;
        char dir[1100], path[1400];
        snprintf(dir, sizeof dir, "%s/llama", rlxt_fixtures_dir());
        DIR *d = opendir(dir);
        for (struct dirent *e; d && (e = readdir(d)) && n_store < 64;) {
            if (e->d_name[0] == '.' || strlen(e->d_name) >= sizeof store[0]) continue;
            snprintf(path, sizeof path, "%s/%s/config.json", dir, e->d_name);
            if (access(path, R_OK)) continue;
            snprintf(path, sizeof path, "%s/%s/tokens.json", dir, e->d_name);
            if (access(path, R_OK)) continue;
            memcpy(store[n_store++], e->d_name, strlen(e->d_name) + 1); /* shorter than a slot: checked above */
        }
        if (d) closedir(d);
    }
    const char *all[64];
    for (int i = 0; i < n_store; i++)
        all[i] = store[i];
    qsort(all, (size_t)n_store, sizeof all[0], by_name);
    int n = n_store < cap ? n_store : cap;
    for (int i = 0; i < n; i++)
        names[i] = all[i];
    return n;
}
