#define _XOPEN_SOURCE 700
#include "testutil.h"

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
