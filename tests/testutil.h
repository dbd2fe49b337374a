/* Helpers shared by the Criterion suites. */
#ifndef RLX_TESTUTIL_H
#define RLX_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

/* Deterministic generator for test data (splitmix64). */
typedef struct { uint64_t s; } rlxt_rng;
uint64_t rlxt_next(rlxt_rng *r);
/* Uniform in [-1, 1). */
float rlxt_uniform(rlxt_rng *r);
void rlxt_fill(rlxt_rng *r, float *x, size_t n, float scale);

/* A fresh temporary directory (mkdtemp under $TMPDIR or /tmp); caller frees the string. */
char *rlxt_tmpdir(void);
/* Writes bytes to dir/name; returns the full path (caller frees). */
char *rlxt_write_file(const char *dir, const char *name, const void *data, size_t n);
/* Removes a directory tree made by rlxt_tmpdir. */
void rlxt_rmtree(const char *dir);
/* Path of the committed fixtures (RLX_FIXTURES or the source tree default). */
const char *rlxt_fixtures_dir(void);

/* Reads a whole file into buf (NUL-terminated, cut at cap; empty if it cannot be read). */
void rlxt_slurp(const char *path, char *buf, size_t cap);

/* Runs `[env] $RLX_CLI <args>` through the shell (env: assignments like "X=1", or NULL) and
 * captures stdout and stderr (NUL-terminated, cut at their capacities). Returns the exit status,
 * -1 if the command did not exit normally, -2 if RLX_CLI is not set (run through ctest). */
int rlxt_run_cli(const char *env, const char *args, char *out, size_t out_cap, char *err, size_t err_cap);

/* NMSE sum((a-b)^2)/sum(b^2) and max |a-b|. */
double rlxt_nmse(const float *a, const float *b, size_t n);
double rlxt_max_abs_diff(const float *a, const float *b, size_t n);
double rlxt_max_abs(const float *a, size_t n);

#endif
