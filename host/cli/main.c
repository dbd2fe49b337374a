/* rlx — command-line front end. Exit codes: 0 success, 1 model/runtime error, 2 usage error. */
#include "cli/cli.h"
#include "core/internal.h"
#if defined(RLX_CLI_SIMT)
#include "rlx_simt_device.h"
#endif

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* One error is one line of bounded length: what a message quotes (an argument, a library
 * message) is cut at the end rather than echoed whole (cli_echo keeps each quote short). */
#define CLI_ERROR_MAX 1024

int cli_error(int code, const char *fmt, ...) {
    char buf[CLI_ERROR_MAX + 1];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fputs("rlx: error: ", stderr);
    fputs(buf, stderr);
    if (n > CLI_ERROR_MAX) fprintf(stderr, "... (%d more bytes cut)", n - CLI_ERROR_MAX);
    fputc('\n', stderr);
    return code;
}

const char *cli_echo(const char *s) {
    enum { KEEP = 48, SLOTS = 4 };
    static char bufs[SLOTS][KEEP + 48];
    static int next;
    if (!s) return "";
    size_t n = strlen(s);
    if (n <= KEEP + 16) return s;
    char *b = bufs[next++ % SLOTS];
    snprintf(b, sizeof bufs[0], "%.*s... (%zu bytes)", KEEP, s, n);
    return b;
}

int cli_status_error(rlx_status s, const char *what) {
    /* Bad ids and bad arguments are the caller's mistake; everything else is the model's or
     * the machine's. */
    int code = (s == RLX_ERR_TOKEN_RANGE || s == RLX_ERR_INVALID_ARGUMENT) ? CLI_USAGE : CLI_RUNTIME;
    const char *msg = rlx_last_error();
    return cli_error(code, "%s: %s", what, *msg ? msg : rlx_status_string(s));
}

int cli_parse_ids(const char *opt, const char *text, int32_t **out, int64_t *n) {
    *out = NULL;
    *n = 0;
    if (!text || !*text) return cli_error(CLI_USAGE, "%s: the list of ids is empty", opt);
    size_t cap = 1;
    for (const char *p = text; *p; p++) cap += *p == ',';
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids) return cli_error(CLI_RUNTIME, "out of memory");
    const char *p = text;
    int64_t k = 0;
    for (;;) {
        while (*p == ' ') p++;
        if (*p < '0' || *p > '9') {
            free(ids);
            return cli_error(CLI_USAGE, "%s: expected a non-negative integer at position %lld of '%s'", opt, (long long)(p - text) + 1,
                             cli_echo(text));
        }
        errno = 0;
        char *end;
        long long v = strtoll(p, &end, 10);
        if (errno || v > INT32_MAX) {
            free(ids);
            return cli_error(CLI_USAGE, "%s: id '%.*s' is too large", opt, (int)(end - p) < 32 ? (int)(end - p) : 32, p);
        }
        ids[k++] = (int32_t)v;
        p = end;
        while (*p == ' ') p++;
        if (!*p) break;
        if (*p != ',') {
            free(ids);
            return cli_error(CLI_USAGE, "%s: unexpected '%c' at position %lld of '%s' (ids are separated by commas)", opt, *p,
                             (long long)(p - text) + 1, cli_echo(text));
        }
        p++;
    }
    *out = ids;
    *n = k;
    return CLI_OK;
}

int cli_parse_device(const char *text, rlx_device_kind *out) {
    static const struct { const char *name; rlx_device_kind kind; } names[] = {
        {"auto", RLX_DEVICE_AUTO}, {"cpu", RLX_DEVICE_CPU}, {"cuda", RLX_DEVICE_CUDA}, {"simt", RLX_DEVICE_SIMT}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (text && !strcmp(text, names[i].name)) {
            *out = names[i].kind;
            return CLI_OK;
        }
    return cli_error(CLI_USAGE, "--device: '%s' is not one of auto, cpu, cuda, simt", cli_echo(text));
}

int cli_parse_fusion(const char *text, rlx_fusion_policy *out) {
    if (text && !strcmp(text, "fused")) *out = RLX_FUSION_FUSED;
    else if (text && !strcmp(text, "none")) *out = RLX_FUSION_NONE;
    else return cli_error(CLI_USAGE, "--fusion: '%s' is not fused or none", cli_echo(text));
    return CLI_OK;
}

int cli_parse_count(const char *opt, const char *text, int64_t min, int64_t max, int64_t *out) {
    char *end;
    errno = 0;
    long long v = text ? strtoll(text, &end, 10) : 0;
    if (!text || !*text || *end || errno || v < min || v > max)
        return cli_error(CLI_USAGE, "%s: '%s' is not an integer in [%lld, %lld]", opt, cli_echo(text), (long long)min, (long long)max);
    *out = v;
    return CLI_OK;
}

json_t *cli_json_real(double v) { return isfinite(v) ? json_real(v) : json_null(); }

int cli_json_print(json_t *doc) {
    int bad = !doc || json_dumpf(doc, stdout, JSON_COMPACT | JSON_REAL_PRECISION(9)) != 0;
    json_decref(doc);
    if (bad || fputc('\n', stdout) == EOF || fflush(stdout) != 0) return cli_error(CLI_RUNTIME, "--json: could not write the document");
    return CLI_OK;
}

double cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int cli_llama_open(const char *dir, cli_llama *l) { return cli_llama_open_ex(dir, NULL, l); }

int cli_llama_open_ex(const char *dir, const rlx_weights_open_params *p, cli_llama *l) {
    memset(l, 0, sizeof *l);
    if (!dir) return cli_error(CLI_USAGE, "--model DIR is required");
    rlx_status s = rlx_weights_open_ex(dir, p, &l->weights);
    if (s) return cli_status_error(s, "loading the model");
    const char *json = rlx_weights_config_json(l->weights);
    char src[1100];
    /* the directory as the weights hold it: no trailing slash to double */
    snprintf(src, sizeof src, "%s/config.json", rlx_weights_dir(l->weights) ? rlx_weights_dir(l->weights) : dir);
    if (!json) {
        cli_llama_close(l);
        return cli_error(CLI_RUNTIME, "%s: missing", src);
    }
    if ((s = rlx_llama_config_parse(json, src, &l->cfg))) {
        cli_llama_close(l);
        return cli_status_error(s, "reading the config");
    }
    return CLI_OK;
}

/* The layer index of a per-layer tensor name ("model.layers.7.mlp...", "encoder.layer.7..."),
 * or -1. */
static long long layer_of(const char *name) {
    for (const char *p = name; (p = strstr(p, "layer")); p++) {
        const char *d = p + 5;
        if (*d == 's') d++;
        if (*d++ != '.' || *d < '0' || *d > '9') continue;
        char *end;
        long long v = strtoll(d, &end, 10);
        if (*end == '.') return v;
    }
    return -1;
}

void cli_warn_unused_layers(const rlx_model *m, int64_t n_layers) {
    int n = 0;
    long long first = -1, last = -1;
    for (int i = 0; i < rlx_model_unused_tensor_count(m); i++) {
        const char *name = rlx_model_unused_tensor(m, i);
        const long long layer = name ? layer_of(name) : -1;
        if (layer < n_layers) continue;
        n++;
        if (first < 0 || layer < first) first = layer;
        if (layer > last) last = layer;
    }
    if (n)
        fprintf(stderr,
                "rlx: warning: %d tensor%s of layer%s %lld..%lld in the checkpoint %s read by no stage: config.json has "
                "%lld layers (rlx plan lists the unused tensors)\n",
                n, n > 1 ? "s" : "", last > first ? "s" : "", first, last, n > 1 ? "are" : "is", (long long)n_layers);
}

int cli_llama_build(cli_llama *l, int64_t batch, int64_t seq, int last_token, rlx_device_kind dev) {
    rlx_llama_recipe_params rp = rlx_llama_recipe_default_params();
    rp.batch = batch;
    rp.seq = seq;
    rp.last_token_logits = last_token;
    rp.max_context = l->max_context;
    rlx_status s = rlx_llama_flow(&l->cfg, &rp, &l->flow);
    if (s) return cli_status_error(s, "assembling the flow");
    rlx_build_params bp = rlx_build_default_params();
    bp.device = dev;
    bp.profile = l->profile;
    bp.plan_only = l->plan_only;
    if (l->tp > 1 && l->plan_only) {
        /* one rank's plan: it needs only its rank and the world size, so in-process communicators do */
        if (!(l->plan_comms = calloc((size_t)l->tp, sizeof *l->plan_comms))) return cli_error(CLI_RUNTIME, "out of memory");
        if ((s = rlx_comm_local_group(l->tp, NULL, l->plan_comms))) return cli_status_error(s, "--tp");
        bp.comm = l->plan_comms[l->plan_rank];
        if ((s = rlx_model_build(l->flow, l->weights, &bp, &l->model))) return cli_status_error(s, "building the model");
        return CLI_OK;
    }
    if (l->tp > 1) {
        s = cli_tp_from_env(l->tp) ? rlx__tp_group_create_env(l->flow, l->weights, &bp, NULL, &l->group)
                                   : rlx__tp_group_create(l->flow, l->weights, &bp, l->tp, NULL, &l->group);
        if (s) return cli_status_error(s, "building the tensor-parallel model");
        l->model = l->group.r[0].model;
        return CLI_OK;
    }
    cli_progress prog;
    cli_progress_attach(&prog, &bp, "loading weights");
    if ((s = rlx_model_build(l->flow, l->weights, &bp, &l->model))) return cli_status_error(s, "building the model");
    cli_warn_unused_layers(l->model, l->cfg.num_hidden_layers);
    return CLI_OK;
}

rlx_status cli_llama_prefill(cli_llama *l, const int32_t *tokens, int64_t n, const int64_t *lens, int64_t n_seqs) {
    if (l->tp > 1) return rlx__tp_group_prefill(&l->group, tokens, n, lens, n_seqs, 0);
    if (!l->session) {
        rlx_status s = rlx_session_create(l->model, &l->session);
        if (s) return s;
    }
    return rlx_session_prefill(l->session, tokens, n, lens, n_seqs, NULL);
}

rlx_status cli_llama_output(cli_llama *l, float **logits, int64_t *rows, int64_t *cols) {
    *logits = NULL;
    rlx_session *s = l->tp > 1 ? l->group.r[0].session : l->session;
    rlx_status st = rlx_session_output_shape(s, rows, cols);
    if (!st && !(*logits = malloc((size_t)(*rows * *cols) * sizeof(float) + 1))) st = RLX_ERR_OUT_OF_MEMORY;
    if (!st) st = l->tp > 1 ? rlx__tp_group_output(&l->group, *logits, (size_t)(*rows * *cols))
                            : rlx_session_output_to_host(s, *logits, (size_t)(*rows * *cols));
    if (st) free(*logits), *logits = NULL;
    return st;
}

void cli_llama_close(cli_llama *l) {
    rlx_session_destroy(l->session);
    if (l->tp > 1 && !l->plan_only) rlx__tp_group_free(&l->group); /* the ranks' models with it */
    else rlx_model_destroy(l->model);
    for (int i = 0; l->plan_comms && i < l->tp; i++) rlx_comm_destroy(l->plan_comms[i]);
    free(l->plan_comms);
    rlx_flow_destroy(l->flow);
    rlx_weights_destroy(l->weights);
    memset(l, 0, sizeof *l);
}

int cli_is_opt(const char *arg, const char *name) {
    size_t n = strlen(name);
    return !strncmp(arg, name, n) && (arg[n] == '\0' || arg[n] == '=');
}

const char *cli_opt_value(int argc, char **argv, int *i, const char *name) {
    const char *a = argv[*i];
    size_t n = strlen(name);
    const char *v = a[n] == '=' ? a + n + 1 : *i + 1 < argc ? argv[++*i] : NULL;
    if (!v) {
        cli_error(CLI_USAGE, "%s: %s needs a value", argv[0], name);
        return NULL;
    }
    /* "--model=" names no directory: the caller's mistake (exit 2), not a missing model (1) */
    if (!*v) {
        cli_error(CLI_USAGE, "%s: %s has an empty value", argv[0], name);
        return NULL;
    }
    return v;
}

int cli_check_finite(const char *what, const float *x, int64_t rows, int64_t cols, const int64_t *lens, int64_t n_seqs) {
    int64_t *per_row = malloc((size_t)(rows > 0 ? rows : 1) * sizeof *per_row);
    if (!per_row) return cli_error(CLI_RUNTIME, "out of memory");
    int64_t total = rlx__count_nonfinite(x, rows, cols, per_row);
    if (!total) {
        free(per_row);
        return CLI_OK;
    }
    /* rows are sequences, or tokens packed sequence after sequence */
    char list[640];
    size_t len = 0;
    int shown = 0, bad = 0;
    list[0] = '\0';
    for (int64_t q = 0, r = 0; q < n_seqs; q++) {
        const int64_t n_rows = rows == n_seqs ? 1 : lens[q];
        int64_t cnt = 0;
        for (int64_t k = 0; k < n_rows && r < rows; k++, r++) cnt += per_row[r];
        if (!cnt) continue;
        bad++;
        if (shown < 8 && len < sizeof list) {
            len += (size_t)snprintf(list + len, sizeof list - len, "%ssequence %lld: %lld of %lld", shown ? ", " : "", (long long)q,
                                    (long long)cnt, (long long)(n_rows * cols));
            shown++;
        }
    }
    free(per_row);
    return cli_error(CLI_RUNTIME, "%s: %lld non-finite value%s (NaN or infinity) in %d of %lld sequence%s: %s%s; --check-weights names a "
                     "non-finite weight",
                     what, (long long)total, total > 1 ? "s" : "", bad, (long long)n_seqs, n_seqs > 1 ? "s" : "", list,
                     bad > shown ? ", ..." : "");
}

/* Every command, in the order `rlx help` lists them. */
static const cli_command *const commands[] = {&cli_cmd_run,   &cli_cmd_generate, &cli_cmd_plan,     &cli_cmd_check, &cli_cmd_bench,
                                              &cli_cmd_embed, &cli_cmd_tokenize, &cli_cmd_demo,     &cli_cmd_version};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static const cli_command *find_command(const char *name) {
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (!strcmp(commands[i]->name, name)) return commands[i];
    return NULL;
}

static void usage(FILE *f) {
    fprintf(f, "usage: rlx <command> [options]      (rlx <command> --help for its options)\n\ncommands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++) fprintf(f, "  %-9s %s\n", commands[i]->name, commands[i]->summary);
    fprintf(f, "  %-9s %s\n", "help", "this list, or `rlx help <command>`");
    fprintf(f, "\nexit codes: 0 success, 1 model or runtime error, 2 usage error\n");
}

int main(int argc, char **argv) {
#if defined(RLX_CLI_SIMT)
    /* --device simt: the test device, linked into the command for `rlx check` and CI */
    rlx_simt_device_install();
#endif
    if (argc < 2) return cli_error(CLI_USAGE, "no command given (rlx help lists them)");
    const char *name = argv[1];
    if (!strcmp(name, "--version")) name = "version";
    if (!strcmp(name, "help") || !strcmp(name, "--help") || !strcmp(name, "-h")) {
        if (argc > 2) {
            const cli_command *c = find_command(argv[2]);
            if (!c) return cli_error(CLI_USAGE, "help: unknown command '%s' (rlx help lists them)", cli_echo(argv[2]));
            fputs(c->usage, stdout);
            return CLI_OK;
        }
        usage(stdout);
        return CLI_OK;
    }
    const cli_command *c = find_command(name);
    if (!c) return cli_error(CLI_USAGE, "unknown command '%s' (rlx help lists them)", cli_echo(name));
    for (int i = 2; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(c->usage, stdout);
            return CLI_OK;
        }
    return c->run(argc - 1, argv + 1);
}
