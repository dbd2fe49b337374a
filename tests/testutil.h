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

/* ---- the LLaMA fixtures (tests/fixtures/llama/<case>/) ---- */

#include "rlx/flow.h"

#define RLXT_N_LLAMA_FIXTURES 9
extern const char *const rlxt_llama_fixtures[RLXT_N_LLAMA_FIXTURES];

typedef struct rlxt_llama_fixture {
    char dir[1024];
    rlx_weights *w;
    rlx_llama_config cfg;
    int32_t *tokens;          /* tokens.json [B, S] */
    int64_t B, S, V;
    float *logits;            /* logits.npy [B, S, V] */
    float *past_kv;           /* past_kv.npy [L, 2, B, KV, S, D]: transformers' cache after tokens */
    int64_t L, KV, D;
    int n_prompts;            /* generate.json: greedy generation of 3 prompts */
    int64_t max_new;
    int32_t *prompt[4], *gen[4];
    int64_t prompt_len[4], gen_len[4];
    int gen_stop[4];          /* 1: finish "stop" */
    int32_t eos[8];
    int n_eos;
} rlxt_llama_fixture;

/* Every directory under tests/fixtures/llama/ with a config.json and a tokens.json (the logits
 * fixtures, including those without generate.json), sorted by name: a test that must cover every
 * fixture uses this rather than a list that a new fixture would not join. Returns how many were
 * found (at most cap; names are static strings owned by the helper). */
int rlxt_llama_fixture_dirs(const char **names, int cap);

/* Loads everything of one case; returns 0, or -1 with a message in err. */
int rlxt_llama_fixture_load(const char *name, rlxt_llama_fixture *f, char *err, size_t err_cap);
void rlxt_llama_fixture_free(rlxt_llama_fixture *f);

#endif
