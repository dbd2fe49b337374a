/* The rlx command: shared helpers of the subcommands. */
#ifndef RLX_CLI_H
#define RLX_CLI_H

#include "rlx/flow.h"
#include "rlx/llama.h"
#include "rlx/profile.h"
#include "rlx/rlx.h"
#include "rlx/weights.h"
#include "tools/tp.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>

/* Exit codes (scripts depend on them). */
enum { CLI_OK = 0, CLI_RUNTIME = 1, CLI_USAGE = 2 };

/* Prints "rlx: error: <msg>" on stderr and returns code. */
int cli_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Maps a library status to an exit code and prints the library's message. */
int cli_status_error(rlx_status s, const char *what);
/* s as a message may quote it: whole when short, else its first bytes and its length (a 100 KB
 * argument is not echoed whole). Valid until four more calls. */
const char *cli_echo(const char *s);
/* The finite check of an output x [rows, cols] whose rows are the n_seqs sequences or their
 * tokens (lens): CLI_OK, or a CLI_RUNTIME error naming each sequence with a NaN or an infinity
 * and how many it holds. */
int cli_check_finite(const char *what, const float *x, int64_t rows, int64_t cols, const int64_t *lens, int64_t n_seqs);

/* Id lists: "1,2,3", the value of option opt (--tokens, --decode, ...). Returns 0 and a malloc'd
 * array, or prints a usage error naming opt and returns 2. */
int cli_parse_ids(const char *opt, const char *text, int32_t **out, int64_t *n);
/* Device names: auto|cpu|cuda|simt. */
int cli_parse_device(const char *text, rlx_device_kind *out);
/* Positive integer option value. */
int cli_parse_count(const char *opt, const char *text, int64_t min, int64_t max, int64_t *out);

/* Option parsing shared by the commands: cli_is_opt matches "--opt" and "--opt=value";
 * cli_opt_value returns the value ("--opt value" or "--opt=value") and advances *i, or prints
 * a usage error and returns NULL when it is missing or empty ("--model="). */
int cli_is_opt(const char *arg, const char *name);
const char *cli_opt_value(int argc, char **argv, int *i, const char *name);

/* --json (run, embed, check): the command prints one JSON document on stdout instead of its text;
 * errors stay one line on stderr, and a command that fails prints no document. cli_json_print
 * writes doc on one line (floats with 9 significant digits: a float32 reads back exactly), takes it over and
 * returns CLI_OK, or CLI_RUNTIME when doc is NULL (out of memory) or cannot be written.
 * cli_json_real: a number, or null for NaN and infinities (JSON has neither). */
int cli_json_print(json_t *doc);
json_t *cli_json_real(double v);

/* Seconds since an arbitrary origin (monotonic). */
double cli_now(void);

/* The load progress line (progress.c): attaches to bp a callback that draws bytes, rate and ETA on
 * stderr when stderr is a terminal and the load runs longer than a second; nothing otherwise.
 * p must outlive the build. */
typedef struct cli_progress {
    const char *what;
    double t0, last, delay;
    int shown;
} cli_progress;
void cli_progress_attach(cli_progress *p, rlx_build_params *bp, const char *what);

/* rlx bench --load (bench_load.c): the table on stdout, JSON to args->json. */
typedef struct cli_bench_load_args {
    const char *shapes;            /* comma list of built-in shapes, or NULL with model_dir */
    const char *model_dir;         /* load this directory instead */
    const char *checkpoint_parent; /* shapes' checkpoints: <parent>/rlx-bench-<shape>-seed<N> */
    uint64_t seed;
    rlx_device_kind device;
    const char *device_name, *cpu_model, *commit, *date;
    int threads, repeat, progress, force;
    double host_limit_gib;         /* host devices refuse bigger shapes without force */
    const char *json;
} cli_bench_load_args;
int cli_bench_load(const cli_bench_load_args *args);

/* Opens DIR, parses its config and builds the Llama flow and model. */
typedef struct cli_llama {
    rlx_weights *weights;
    rlx_llama_config cfg;
    rlx_flow *flow;
    rlx_model *model;
    rlx_session *session;       /* cli_llama_prefill's (tp <= 1) */
    const rlx_profile *profile; /* set before cli_llama_build; NULL = the prefill preset */
    int plan_only;              /* build for `rlx plan`: nothing prepared, nothing runs */
    int tp;                     /* set before cli_llama_build: tensor-parallel ranks (0 or 1: none) */
    rlx__tp_group group;        /* tp > 1: the ranks (model is rank r[0]'s, owned by the group) */
    int plan_rank;              /* plan_only with tp > 1: the rank whose plan is built */
    rlx_comm **plan_comms;      /* its in-process group (a plan needs only the rank and world size) */
    int64_t max_context;        /* KV cache: positions a sequence may reach (0 = seq) */
} cli_llama;
/* --fusion fused|none */
int cli_parse_fusion(const char *text, rlx_fusion_policy *out);
int cli_llama_open(const char *dir, cli_llama *out);
/* A config with fewer layers than the checkpoint runs a model the checkpoint was not trained as:
 * warns on stderr with how many tensors of the layers from n_layers on no stage reads. */
void cli_warn_unused_layers(const rlx_model *m, int64_t n_layers);
/* With open params (NULL: the defaults): --check-weights sets check_finite. */
int cli_llama_open_ex(const char *dir, const rlx_weights_open_params *params, cli_llama *out);
int cli_llama_build(cli_llama *l, int64_t batch, int64_t seq, int last_token, rlx_device_kind dev);
void cli_llama_close(cli_llama *l);
/* One prefill of the built model (every rank of a tp group) and its output (r[0]'s). */
rlx_status cli_llama_prefill(cli_llama *l, const int32_t *tokens, int64_t n, const int64_t *lens, int64_t n_seqs);
rlx_status cli_llama_output(cli_llama *l, float **logits, int64_t *rows, int64_t *cols);

/* --tp N (cli/tp.c). Without RLX_WORLD_SIZE/WORLD_SIZE this process drives the N ranks (one thread
 * each: in-process ranks on cpu/simt, NCCL over CUDA devices 0..N-1); with it set, this process is
 * one rank of a job started one process per GPU (rlx_comm_from_env) and N must be its world size.
 * Prints a usage error (world-size mismatch, bad N) and returns 2, else 0. */
int cli_parse_tp(const char *text, int64_t *tp);
int cli_tp_check_env(int64_t tp);
/* 1 when this process is one rank of a job from the environment (RLX_WORLD_SIZE/WORLD_SIZE set, tp > 1). */
int cli_tp_from_env(int64_t tp);
/* 1 when this process prints the results: always, except on the other ranks of a job from the
 * environment (rank 0 prints). */
int cli_tp_prints(const cli_llama *l);

/* One subcommand: `rlx <name> [options]`. Each cmd_*.c defines its command (run, usage text)
 * and main.c lists them; `rlx <name> --help` and `rlx help <name>` print `usage`, exit 0.
 * usage: the synopsis line(s) first ("rlx run --model DIR ..."), then one line per option. */
typedef struct cli_command {
    const char *name;
    int (*run)(int argc, char **argv); /* argv[0] is the command's name */
    const char *summary;               /* one line for `rlx help` */
    const char *usage;
} cli_command;

extern const cli_command cli_cmd_run, cli_cmd_plan, cli_cmd_demo, cli_cmd_embed, cli_cmd_check,
    cli_cmd_bench, cli_cmd_tokenize, cli_cmd_version, cli_cmd_generate;

/* Text prompts (cmd_tokenize.c): opens DIR's tokenizer.json (a clear error when it is missing)
 * and encodes n texts into packed ids (free with rlx_free) and lens; max_length 0 = no
 * truncation. Both print the error and return the exit code. */
typedef struct rlx_tokenizer rlx_tokenizer;
int cli_tokenizer_open(const char *model_dir, rlx_tokenizer **out);
int cli_encode_texts(const rlx_tokenizer *tok, const char *const *texts, int n, int64_t max_length, int32_t **ids,
                     int64_t *lens);

/* Prompts given as --tokens IDS and --prompt TEXT, mixed, in command-line order (rlx run,
 * rlx generate; prompts.c). */
#define CLI_MAX_PROMPTS 256
typedef struct cli_prompts {
    const char *arg[CLI_MAX_PROMPTS];
    int is_text[CLI_MAX_PROMPTS]; /* arg[s] is a --prompt text, not ids */
    int n, n_text;
} cli_prompts;
/* argv[*i] is --tokens or --prompt: takes it and its value (advancing *i) and returns 1; another
 * option: 0; a missing value or too many prompts: prints the usage error and returns -1. */
int cli_prompts_option(cli_prompts *p, int argc, char **argv, int *i);
/* Every prompt as ids, packed in order into *tokens (malloc'd, at least one element) with lens[s]
 * per prompt, *total and *max_len: --tokens lists parsed first (a usage error needs no model), then
 * the texts encoded in one batch by model_dir's tokenizer.json, opened into *tok (NULL when no
 * --prompt was given; the caller destroys it). Prints the error and returns the exit code. */
int cli_prompts_pack(const cli_prompts *p, const char *model_dir, rlx_tokenizer **tok, int32_t **tokens, int64_t *lens,
                     int64_t *total, int64_t *max_len);
/* Every packed id below vocab; else a usage error naming the option, the id and the prompt
 * (counted from 0 in command-line order). */
int cli_prompts_check_vocab(const cli_prompts *p, const int32_t *tokens, const int64_t *lens, int64_t vocab);
/* Writes text to f on one line: newline, tab and carriage return as \n, \t, \r, other control
 * characters as \xNN. */
void cli_put_one_line(FILE *f, const char *text, size_t n);

#endif
