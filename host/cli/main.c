/* rlx — command-line front end. Exit codes: 0 success, 1 model/runtime error, 2 usage error. */
#include "cli/cli.h"
#if defined(RLX_CLI_SIMT)
#include "rlx_simt_device.h"
#endif

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int cli_error(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("rlx: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return code;
}

int cli_status_error(rlx_status s, const char *what) {
    /* Bad ids and bad arguments are the caller's mistake; everything else is the model's or
     * the machine's. */
    int code = (s == RLX_ERR_TOKEN_RANGE || s == RLX_ERR_INVALID_ARGUMENT) ? CLI_USAGE : CLI_RUNTIME;
    const char *msg = rlx_last_error();
    return cli_error(code, "%s: %s", what, *msg ? msg : rlx_status_string(s));
}

int cli_parse_tokens(const char *text, int32_t **out, int64_t *n) {
    *out = NULL;
    *n = 0;
    if (!text || !*text) return cli_error(CLI_USAGE, "--tokens: the token list is empty");
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
            return cli_error(CLI_USAGE, "--tokens: expected a non-negative integer at position %lld of '%s'", (long long)(p - text) + 1, text);
        }
        errno = 0;
        char *end;
        long long v = strtoll(p, &end, 10);
        if (errno || v > INT32_MAX) {
            free(ids);
            return cli_error(CLI_USAGE, "--tokens: id '%.*s' is too large", (int)(end - p), p);
        }
        ids[k++] = (int32_t)v;
        p = end;
        while (*p == ' ') p++;
        if (!*p) break;
        if (*p != ',') {
            free(ids);
            return cli_error(CLI_USAGE, "--tokens: unexpected '%c' at position %lld of '%s' (ids are separated by commas)", *p, (long long)(p - text) + 1, text);
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
    return cli_error(CLI_USAGE, "--device: '%s' is not one of auto, cpu, cuda, simt", text ? text : "");
}

int cli_parse_fusion(const char *text, rlx_fusion_policy *out) {
    if (text && !strcmp(text, "fused")) *out = RLX_FUSION_FUSED;
    else if (text && !strcmp(text, "none")) *out = RLX_FUSION_NONE;
    else return cli_error(CLI_USAGE, "--fusion: '%s' is not fused or none", text ? text : "");
    return CLI_OK;
}

int cli_parse_count(const char *opt, const char *text, int64_t min, int64_t max, int64_t *out) {
    char *end;
    errno = 0;
    long long v = text ? strtoll(text, &end, 10) : 0;
    if (!text || !*text || *end || errno || v < min || v > max)
        return cli_error(CLI_USAGE, "%s: '%s' is not an integer in [%lld, %lld]", opt, text ? text : "", (long long)min, (long long)max);
    *out = v;
    return CLI_OK;
}

double cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int cli_llama_open(const char *dir, cli_llama *l) {
    memset(l, 0, sizeof *l);
    if (!dir) return cli_error(CLI_USAGE, "--model DIR is required");
    rlx_status s = rlx_weights_open(dir, &l->weights);
    if (s) return cli_status_error(s, "loading the model");
    const char *json = rlx_weights_config_json(l->weights);
    char src[1024];
    snprintf(src, sizeof src, "%s/config.json", dir);
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

int cli_llama_build(cli_llama *l, int64_t batch, int64_t seq, int last_token, rlx_device_kind dev) {
    rlx_llama_recipe_params rp = rlx_llama_recipe_default_params();
    rp.batch = batch;
    rp.seq = seq;
    rp.last_token_logits = last_token;
    rlx_status s = rlx_llama_flow(&l->cfg, &rp, &l->flow);
    if (s) return cli_status_error(s, "assembling the flow");
    rlx_build_params bp = rlx_build_default_params();
    bp.device = dev;
    bp.profile = l->profile;
    bp.plan_only = l->plan_only;
    if ((s = rlx_model_build(l->flow, l->weights, &bp, &l->model))) return cli_status_error(s, "building the model");
    return CLI_OK;
}

void cli_llama_close(cli_llama *l) {
    rlx_model_destroy(l->model);
    rlx_flow_destroy(l->flow);
    rlx_weights_destroy(l->weights);
    memset(l, 0, sizeof *l);
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: rlx <command> [options]\n"
            "\n"
            "commands:\n"
            "  run   --model DIR --tokens 1,2,3 [--tokens ...] [--device auto|cpu|cuda|simt]\n"
            "        [--profile F.rlx.toml] [--fusion fused|none]\n"
            "        [--all-logits] [--logits-out F.npy] [--top-k N]\n"
            "                   prefill the prompts and print the top-k next tokens\n"
            "  plan  --model DIR [--seq N] [--batch B] [--profile F.rlx.toml] [--fusion fused|none] [--assert-clean]\n"
            "                   print the stage list and the kernel plan (each kernel, its stages, bytes moved)\n"
            "  demo  [--device auto|cpu|cuda|simt]\n"
            "                   run a built-in tiny LLaMA-3.2-shaped model with random weights\n"
            "  check [--model DIR] [--device cuda|simt] [--fusion fused|none] [--profile F.rlx.toml]\n"
            "                   every kernel and a whole model on the device against the CPU reference\n"
            "  embed --model DIR --tokens IDS [--tokens ...] [--token-types IDS ...] [--pool cls|mean|none] [--normalize] [--out F.npy] [--device ...]\n"
            "  bench [--shape tiny|llama-3.2-1b|llama-3.2-3b|llama-3.1-8b | --model DIR] [--batch B,..] [--seq S,..]\n"
            "        [--device auto|cpu|cuda|simt] [--fusion fused|none|both] [--repeat N] [--warmup N]\n"
            "        [--json F] [--csv F] [--plot F.png] [--breakdown] [--save-checkpoint DIR] (docs/bench.md)\n"
            "                   prefill throughput: tokens/s, TFLOP/s, MFU, per-kernel breakdown\n"
            "  version          print the version\n"
            "\n"
            "exit codes: 0 success, 1 model or runtime error, 2 usage error\n");
}

int main(int argc, char **argv) {
#if defined(RLX_CLI_SIMT)
    /* --device simt: the test device, linked into the command for `rlx check` and CI */
    rlx_simt_device_install();
#endif
    if (argc < 2) return cli_error(CLI_USAGE, "no command given (rlx help lists them)");
    const char *cmd = argv[1];
    if (!strcmp(cmd, "run")) return cmd_run(argc - 1, argv + 1);
    if (!strcmp(cmd, "plan")) return cmd_plan(argc - 1, argv + 1);
    if (!strcmp(cmd, "demo")) return cmd_demo(argc - 1, argv + 1);
    if (!strcmp(cmd, "embed")) return cmd_embed(argc - 1, argv + 1);
    if (!strcmp(cmd, "check")) return cmd_check(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench")) return cmd_bench(argc - 1, argv + 1);
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        printf("rlx %s\n", rlx_version_string());
        return CLI_OK;
    }
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        usage(stdout);
        return CLI_OK;
    }
    return cli_error(CLI_USAGE, "unknown command '%s' (rlx help lists them)", cmd);
}
