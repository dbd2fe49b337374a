/* rlx generate: prefill the prompts into a KV page pool, then decode steps (rlx_generate,
 * rlx/generate.h); prints the new ids per sequence (and their text when the model directory has a
 * tokenizer.json) and the time to first token / decode rate. */
#include "cli/cli.h"
#include "rlx/generate.h"
#include "rlx/tokenizer.h"

#include <sys/stat.h>

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_STOP 64

static int parse_real(const char *opt, const char *text, double lo, double hi, int lo_open, double *out) {
    char *end;
    errno = 0;
    double v = text ? strtod(text, &end) : NAN;
    if (!text || !*text || *end || errno || !isfinite(v) || v < lo || v > hi || (lo_open && v == lo))
        return cli_error(CLI_USAGE, "%s: '%s' is not a number in %s%g, %g]", opt, text ? text : "", lo_open ? "(" : "[", lo, hi);
    *out = v;
    return CLI_OK;
}

/* {"sequences": [{"prompt": [ids], "tokens": [new ids], "finish": "length" | "stop"[, "text": "..."]}]}:
 * "text" (the new tokens decoded) only where there is one. */
static int write_json(const char *path, const rlx_generation *g, const int32_t *tokens, const int64_t *lens, int n,
                      char *const *text, const size_t *text_bytes) {
    json_t *root = json_object(), *seqs = json_array();
    json_object_set_new(root, "sequences", seqs);
    int64_t at = 0;
    for (int i = 0; i < n; i++) {
        json_t *o = json_object(), *pr = json_array(), *tk = json_array();
        for (int64_t t = 0; t < lens[i]; t++) json_array_append_new(pr, json_integer(tokens[at + t]));
        at += lens[i];
        int64_t k;
        const int32_t *ids = rlx_generation_tokens(g, i, &k);
        for (int64_t t = 0; t < k; t++) json_array_append_new(tk, json_integer(ids[t]));
        json_object_set_new(o, "prompt", pr);
        json_object_set_new(o, "tokens", tk);
        json_object_set_new(o, "finish", json_string(rlx_generation_stopped(g, i) == 1 ? "stop" : "length"));
        if (text[i]) json_object_set_new(o, "text", json_stringn(text[i], text_bytes[i]));
        json_array_append_new(seqs, o);
    }
    int rc = json_dump_file(root, path, JSON_COMPACT) ? cli_error(CLI_RUNTIME, "--out %s: cannot write the file", path) : CLI_OK;
    json_decref(root);
    return rc;
}

/* The tokenizer to print text with: the one --prompt opened, else DIR/tokenizer.json when there is
 * one. Without it the command prints ids only, so a tokenizer rlx cannot read is a warning here,
 * not an error: generating from ids never needed it. */
static rlx_tokenizer *output_tokenizer(const char *model_dir, rlx_tokenizer *prompt_tok) {
    if (prompt_tok) return prompt_tok;
    char path[4096];
    struct stat st;
    if (snprintf(path, sizeof path, "%s/tokenizer.json", model_dir) >= (int)sizeof path || stat(path, &st)) return NULL;
    rlx_tokenizer *tok = NULL;
    if (rlx_tokenizer_open(model_dir, &tok)) {
        fprintf(stderr, "rlx: warning: %s: %s; printing ids only\n", path, rlx_last_error());
        return NULL;
    }
    return tok;
}

static int cmd_generate(int argc, char **argv) {
    const char *model_dir = NULL, *out_path = NULL, *v;
    cli_prompts prompts = {0};
    int n_stop = 0, max_new_set = 0;
    int32_t stop[MAX_STOP];
    rlx_generate_params gp = rlx_generate_default_params();
    rlx_device_kind dev = RLX_DEVICE_AUTO;
    int64_t x, tp = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int taken = cli_prompts_option(&prompts, argc, argv, &i);
        if (taken < 0) return CLI_USAGE;
        if (taken) continue;
        if (cli_is_opt(a, "--model")) {
            if (!(model_dir = cli_opt_value(argc, argv, &i, "--model"))) return CLI_USAGE;
        } else if (cli_is_opt(a, "--tp")) {
            if (!(v = cli_opt_value(argc, argv, &i, "--tp")) || cli_parse_tp(v, &tp)) return CLI_USAGE;
        } else if (cli_is_opt(a, "--max-new-tokens")) {
            if (!(v = cli_opt_value(argc, argv, &i, "--max-new-tokens")) ||
                cli_parse_count("--max-new-tokens", v, 1, 1 << 24, &gp.max_new_tokens))
                return CLI_USAGE;
            max_new_set = 1;
        } else if (cli_is_opt(a, "--temperature")) {
            if (!(v = cli_opt_value(argc, argv, &i, "--temperature")) || parse_real("--temperature", v, 0, 1e6, 0, &gp.temperature))
                return CLI_USAGE;
        } else if (cli_is_opt(a, "--top-k")) {
            if (!(v = cli_opt_value(argc, argv, &i, "--top-k")) || cli_parse_count("--top-k", v, 0, INT32_MAX, &gp.top_k)) return CLI_USAGE;
        } else if (cli_is_opt(a, "--top-p")) {
            if (!(v = cli_opt_value(argc, argv, &i, "--top-p")) || parse_real("--top-p", v, 0, 1, 1, &gp.top_p)) return CLI_USAGE;
        } else if (cli_is_opt(a, "--seed")) {
            if (!(v = cli_opt_value(argc, argv, &i, "--seed")) || cli_parse_count("--seed", v, 0, INT64_MAX, &x)) return CLI_USAGE;
            gp.seed = (uint64_t)x;
        } else if (cli_is_opt(a, "--stop-token")) {
            if (!(v = cli_opt_value(argc, argv, &i, "--stop-token")) || cli_parse_count("--stop-token", v, 0, INT32_MAX, &x)) return CLI_USAGE;
            if (n_stop == MAX_STOP) return cli_error(CLI_USAGE, "at most %d --stop-token ids", MAX_STOP);
            stop[n_stop++] = (int32_t)x;
        } else if (cli_is_opt(a, "--page-size")) {
            if (!(v = cli_opt_value(argc, argv, &i, "--page-size")) || cli_parse_count("--page-size", v, 1, 256, &gp.page_size)) return CLI_USAGE;
            if (gp.page_size & (gp.page_size - 1)) return cli_error(CLI_USAGE, "--page-size: %lld is not a power of two", (long long)gp.page_size);
        } else if (cli_is_opt(a, "--device")) {
            if (!(v = cli_opt_value(argc, argv, &i, "--device")) || cli_parse_device(v, &dev)) return CLI_USAGE;
        } else if (cli_is_opt(a, "--out")) {
            if (!(out_path = cli_opt_value(argc, argv, &i, "--out"))) return CLI_USAGE;
        } else {
            return cli_error(CLI_USAGE, "generate: unknown option '%s' (rlx generate --help lists them)", a);
        }
    }
    if (!model_dir) return cli_error(CLI_USAGE, "generate: --model DIR is required");
    if (!prompts.n) return cli_error(CLI_USAGE, "generate: --tokens or --prompt is required (e.g. --tokens 1,2,3)");
    if (!max_new_set) return cli_error(CLI_USAGE, "generate: --max-new-tokens N is required");
    if (cli_tp_check_env(tp)) return CLI_USAGE;

    const int n_seqs = prompts.n;
    rlx_tokenizer *prompt_tok = NULL, *tok = NULL;
    int32_t *tokens = NULL;
    int64_t lens[CLI_MAX_PROMPTS], total, max_len;
    char *text[CLI_MAX_PROMPTS] = {0};
    size_t text_bytes[CLI_MAX_PROMPTS] = {0};
    int rc = cli_prompts_pack(&prompts, model_dir, &prompt_tok, &tokens, lens, &total, &max_len);
    if (rc) return rc;
    cli_llama l;
    rlx_generation *g = NULL;
    if ((rc = cli_llama_open(model_dir, &l))) {
        free(tokens);
        rlx_tokenizer_destroy(prompt_tok);
        return rc;
    }
    if ((rc = cli_prompts_check_vocab(&prompts, tokens, lens, l.cfg.vocab_size))) goto out;
    tok = output_tokenizer(model_dir, prompt_tok);
    for (int i = 0; i < n_stop; i++)
        if (stop[i] >= l.cfg.vocab_size) {
            rc = cli_error(CLI_USAGE, "--stop-token: id %ld is outside the vocabulary [0, %lld)", (long)stop[i], (long long)l.cfg.vocab_size);
            goto out;
        }
    if (max_len + gp.max_new_tokens > l.cfg.max_position_embeddings) {
        rc = cli_error(CLI_USAGE, "--max-new-tokens: a prompt of %lld tokens with %lld new ones passes max_position_embeddings %lld",
                       (long long)max_len, (long long)gp.max_new_tokens, (long long)l.cfg.max_position_embeddings);
        goto out;
    }
    /* end tokens: the model's (generation_config.json, else config.json) and --stop-token */
    int32_t eos[MAX_STOP * 2];
    int64_t n_eos = 0;
    rlx_status s = rlx_eos_tokens(l.weights, eos, MAX_STOP, &n_eos);
    if (s) {
        rc = cli_status_error(s, "reading the end tokens");
        goto out;
    }
    for (int i = 0; i < n_stop; i++) eos[n_eos++] = stop[i];
    gp.stop_tokens = eos;
    gp.n_stop_tokens = n_eos;
    /* the capacity holds every prompt in one prefill; the tables cover prompt + new tokens */
    l.max_context = max_len + gp.max_new_tokens;
    l.tp = (int)tp;
    if ((rc = cli_llama_build(&l, n_seqs, max_len, 1, dev))) goto out;
    /* --tp: every rank generates in lockstep, each with a KV cache of its own kv heads */
    s = tp > 1 ? rlx__tp_group_generate(&l.group, tokens, lens, n_seqs, &gp, &g) : rlx_generate(l.model, tokens, lens, n_seqs, &gp, NULL, &g);
    if (s) {
        rc = cli_status_error(s, "generate");
        goto out;
    }
    if (!cli_tp_prints(&l)) {
        printf("rlx generate: rank %d of %d done (rank 0 prints the results)\n", l.group.first_rank, l.group.world);
        goto out;
    }
    /* the new tokens as text, special tokens dropped (what transformers' text-generation pipeline
     * prints); an id the tokenizer lacks (a checkpoint padded past its vocabulary) leaves that
     * sequence without text */
    for (int i = 0; tok && i < n_seqs; i++) {
        int64_t k;
        const int32_t *ids = rlx_generation_tokens(g, i, &k);
        if (rlx_tokenizer_decode(tok, ids, k, 1, &text[i], &text_bytes[i]))
            fprintf(stderr, "rlx: warning: sequence %d: no text: %s\n", i, rlx_last_error());
    }
    const rlx_device_kind used = rlx_model_device(l.model);
    char tps[96] = "";
    if (tp > 1)
        snprintf(tps, sizeof tps, ", tp %lld (%s)", (long long)tp, l.group.n == 1 ? "one process per rank" : "one process, a thread per rank");
    printf("rlx generate: %s, %d sequence%s, device %s%s, %s\n", model_dir, n_seqs, n_seqs > 1 ? "s" : "", rlx_device_kind_name(used),
           tps, gp.temperature > 0 ? "sampling" : "greedy");
    for (int i = 0; i < n_seqs; i++) {
        int64_t k;
        const int32_t *ids = rlx_generation_tokens(g, i, &k);
        printf("sequence %d (prompt %lld tokens): %lld new, finish %s\n  ", i, (long long)lens[i], (long long)k,
               rlx_generation_stopped(g, i) == 1 ? "stop" : "length");
        for (int64_t t = 0; t < k; t++) printf("%s%d", t ? "," : "", (int)ids[t]);
        if (text[i]) {
            printf("\n  '");
            cli_put_one_line(stdout, text[i], text_bytes[i]);
            printf("'");
        }
        printf("\n");
    }
    rlx_generation_stats st;
    rlx_generation_get_stats(g, &st);
    const char *label = used == RLX_DEVICE_SIMT ? "  (simt: the CUDA kernels emulated on the CPU, not a GPU figure)"
                        : used == RLX_DEVICE_CPU ? "  (the f32 CPU reference)"
                                                 : "";
    printf("time to first token %.1f ms; decode %lld tokens in %.1f ms", st.first_token_ms, (long long)st.decode_tokens, st.decode_ms);
    if (st.decode_tokens && st.decode_ms > 0) printf(" = %.1f tokens/s", 1e3 * (double)st.decode_tokens / st.decode_ms);
    printf("%s\nkv cache: %lld pages of %lld tokens, %.1f KiB%s, %lld calls\n", label, (long long)st.kv_pages, (long long)gp.page_size,
           (double)st.kv_bytes / 1024.0, tp > 1 ? " on rank 0 (its own kv heads)" : "", (long long)st.calls);
    if (out_path && (rc = write_json(out_path, g, tokens, lens, n_seqs, text, text_bytes)) == CLI_OK) printf("sequences written to %s\n", out_path);
out:
    for (int i = 0; i < n_seqs; i++) rlx_free(text[i]);
    if (tok != prompt_tok) rlx_tokenizer_destroy(tok);
    rlx_tokenizer_destroy(prompt_tok);
    rlx_generation_destroy(g);
    cli_llama_close(&l);
    free(tokens);
    return rc;
}

const cli_command cli_cmd_generate = {
    .name = "generate",
    .run = cmd_generate,
    .summary = "prefill the prompts, then decode new tokens over a KV cache (greedy or sampled)",
    .usage =
    "usage: rlx generate --model DIR (--tokens IDS | --prompt TEXT) [--tokens IDS | --prompt TEXT ...] --max-new-tokens N\n"
    "                    [options]\n"
    "  --model DIR            Hugging Face model directory (config.json + safetensors); with a tokenizer.json\n"
    "                         the new tokens are printed as text too (special tokens dropped)\n"
    "  --tokens 1,2,3         one prompt's token ids; repeat for a batch (sequences finish independently)\n"
    "  --prompt TEXT          one prompt as text, through the directory's tokenizer.json (BOS added as\n"
    "                         the tokenizer's post-processor says); repeat for a batch, mix with --tokens\n"
    "  --max-new-tokens N     new tokens per sequence at most\n"
    "  --temperature T        0 (default): greedy; > 0: sampling from softmax(logits / T)\n"
    "  --top-k K              sampling: the K most likely tokens only (default 0: all)\n"
    "  --top-p P              sampling: the smallest set with probability >= P, in (0, 1] (default 1)\n"
    "  --seed S               sampling seed: the same seed gives the same tokens (default 0)\n"
    "  --stop-token ID        an end token besides eos_token_id of generation_config.json / config.json; repeatable\n"
    "  --page-size N          KV cache page size, a power of two 1 .. 256 (default 16)\n"
    "  --device D             auto|cpu|cuda|simt (default auto: cuda when a GPU is present)\n"
    "  --tp N                 tensor parallelism over N ranks, each with a KV cache of its kv heads: N GPUs (NCCL),\n"
    "                         or N in-process ranks on cpu/simt; with RLX_WORLD_SIZE set, one rank of that job\n"
    "  --out F.json           write {\"sequences\": [{\"prompt\": [ids], \"tokens\": [new ids], \"finish\": \"length\"|\"stop\"}]},\n"
    "                         each sequence with \"text\" too (its new tokens decoded) when there is a tokenizer.json\n",
};
