/* rlx run / rlx plan */
#include "cli/cli.h"
#include "io/npy.h"
#include "rlx/tokenizer.h"
#include "tools/topk.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* tok (may be NULL): also print each id's decoded text */
static void print_top_k(const float *row, int64_t V, int64_t k, const rlx_tokenizer *tok) {
    if (k > V) k = V;
    int64_t *ids = malloc((size_t)(k > 0 ? k : 1) * sizeof *ids);
    if (!ids || rlx__top_k(row, V, k, ids)) {
        free(ids);
        return;
    }
    for (int64_t i = 0; i < k; i++) {
        printf("  %2lld  id %-8lld logit %.6f", (long long)i + 1, (long long)ids[i], row[ids[i]]);
        char *text = NULL;
        int32_t id = (int32_t)ids[i];
        if (tok && rlx_tokenizer_decode(tok, &id, 1, 0, &text, NULL) == RLX_OK) {
            printf("  '");
            cli_put_one_line(stdout, text, strlen(text)); /* one line per token */
            printf("'");
        }
        rlx_free(text);
        putchar('\n');
    }
    free(ids);
}

/* --json: [{id, logit, text (with a tokenizer)}], or NULL when out of memory. */
static json_t *top_k_json(const float *row, int64_t V, int64_t k, const rlx_tokenizer *tok) {
    if (k > V) k = V;
    int64_t *ids = malloc((size_t)(k > 0 ? k : 1) * sizeof *ids);
    json_t *a = ids && !rlx__top_k(row, V, k, ids) ? json_array() : NULL;
    for (int64_t i = 0; a && i < k; i++) {
        json_t *e = json_pack("{sIso}", "id", (json_int_t)ids[i], "logit", cli_json_real(row[ids[i]]));
        char *text = NULL;
        int32_t id = (int32_t)ids[i];
        if (e && tok && rlx_tokenizer_decode(tok, &id, 1, 0, &text, NULL) == RLX_OK)
            json_object_set_new(e, "text", json_string(text));
        rlx_free(text);
        if (!e || json_array_append_new(a, e)) {
            json_decref(a);
            a = NULL;
        }
    }
    free(ids);
    return a;
}

/* --profile FILE, or the model directory's llama32.rlx.toml, or the prefill preset. A bad file
 * named on the command line is a usage error; one shipped next to the weights is the model's. */
static int load_profile(const char *path, const rlx_weights *w, rlx_profile *out) {
    rlx_status s = path ? rlx_profile_load(path, out) : rlx_profile_near(w, "llama32", out);
    if (s == RLX_OK) return CLI_OK;
    return cli_error(path && s != RLX_ERR_OUT_OF_MEMORY ? CLI_USAGE : CLI_RUNTIME, "%s: %s", path ? "--profile" : "profile",
                     rlx_last_error());
}

static int cmd_run(int argc, char **argv) {
    const char *model_dir = NULL, *logits_out = NULL, *profile_path = NULL;
    cli_prompts prompts = {0};
    rlx_fusion_policy fusion = RLX_FUSION_FUSED;
    int fusion_set = 0;
    int all_logits = 0, truncate = 0, json = 0;
    rlx_weights_open_params open_params = rlx_weights_open_default_params();
    int64_t top_k = 5, tp = 1;
    rlx_device_kind dev = RLX_DEVICE_AUTO;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        int taken = cli_prompts_option(&prompts, argc, argv, &i);
        if (taken < 0) return CLI_USAGE;
        if (taken) continue;
        if (cli_is_opt(a, "--model")) {
            if (!(model_dir = cli_opt_value(argc, argv, &i, "--model"))) return CLI_USAGE;
        } else if (cli_is_opt(a, "--tp")) {
            if (!(v = cli_opt_value(argc, argv, &i, "--tp")) || cli_parse_tp(v, &tp)) return CLI_USAGE;
        } else if (!strcmp(a, "--truncate")) {
            truncate = 1;
        } else if (cli_is_opt(a, "--device")) {
            if (!(v = cli_opt_value(argc, argv, &i, "--device")) || cli_parse_device(v, &dev)) return CLI_USAGE;
        } else if (cli_is_opt(a, "--profile")) {
            if (!(profile_path = cli_opt_value(argc, argv, &i, "--profile"))) return CLI_USAGE;
        } else if (cli_is_opt(a, "--fusion")) {
            if (!(v = cli_opt_value(argc, argv, &i, "--fusion")) || cli_parse_fusion(v, &fusion)) return CLI_USAGE;
            fusion_set = 1;
        } else if (!strcmp(a, "--all-logits")) {
            all_logits = 1;
        } else if (!strcmp(a, "--check-weights")) {
            open_params.check_finite = 1;
        } else if (cli_is_opt(a, "--logits-out")) {
            if (!(logits_out = cli_opt_value(argc, argv, &i, "--logits-out"))) return CLI_USAGE;
        } else if (cli_is_opt(a, "--top-k")) {
            if (!(v = cli_opt_value(argc, argv, &i, "--top-k")) || cli_parse_count("--top-k", v, 0, 1 << 20, &top_k)) return CLI_USAGE;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else {
            return cli_error(CLI_USAGE, "run: unknown option '%s' (rlx run --help lists them)", cli_echo(a));
        }
    }
    if (!model_dir) return cli_error(CLI_USAGE, "run: --model DIR is required");
    if (!prompts.n) return cli_error(CLI_USAGE, "run: --tokens is required, or --prompt (e.g. --tokens 1,2,3)");
    if (cli_tp_check_env(tp)) return CLI_USAGE;

    /* --prompt texts go through the model directory's tokenizer.json */
    const int n_seqs = prompts.n;
    rlx_tokenizer *tok = NULL;
    int32_t *tokens = NULL;
    int64_t lens[CLI_MAX_PROMPTS], total, max_len;
    int rc = cli_prompts_pack(&prompts, model_dir, &tok, &tokens, lens, &total, &max_len);
    if (rc) return rc;
    cli_llama l;
    if ((rc = cli_llama_open_ex(model_dir, &open_params, &l))) {
        free(tokens);
        rlx_tokenizer_destroy(tok);
        return rc;
    }
    if (truncate && max_len > l.cfg.max_position_embeddings) {
        /* keep each prompt's first max_position_embeddings tokens */
        int64_t cap = l.cfg.max_position_embeddings, o = 0, w = 0;
        for (int q = 0; q < n_seqs; q++) {
            int64_t keep = lens[q] < cap ? lens[q] : cap;
            memmove(tokens + w, tokens + o, (size_t)keep * sizeof *tokens);
            o += lens[q];
            w += keep;
            lens[q] = keep;
        }
        total = w;
        max_len = cap;
    }
    if ((rc = cli_prompts_check_vocab(&prompts, tokens, lens, l.cfg.vocab_size))) goto out;
    if (max_len > l.cfg.max_position_embeddings) {
        rc = cli_error(CLI_USAGE, "--tokens/--prompt: %lld tokens exceed max_position_embeddings %lld (--truncate cuts them)",
                       (long long)max_len, (long long)l.cfg.max_position_embeddings);
        goto out;
    }
    rlx_profile profile;
    if ((rc = load_profile(profile_path, l.weights, &profile))) goto out;
    if (fusion_set) profile.fusion_policy = fusion; /* the command line wins over the file */
    l.profile = &profile;
    l.tp = (int)tp;
    if ((rc = cli_llama_build(&l, n_seqs, max_len, !all_logits, dev))) goto out;

    double t0 = cli_now();
    rlx_status s = cli_llama_prefill(&l, tokens, total, lens, n_seqs);
    double dt = cli_now() - t0;
    int64_t rows = 0, V = 0;
    float *logits = NULL;
    if (!s) s = cli_llama_output(&l, &logits, &rows, &V);
    /* NaN logits rank nothing: report them instead of a top-k of garbage, and exit 1 */
    if (!s && (rc = cli_check_finite("prefill", logits, rows, V, lens, n_seqs))) {
        free(logits);
        goto out;
    }
    char tps[96] = "";
    if (tp > 1)
        snprintf(tps, sizeof tps, ", tp %lld (%s)", (long long)tp,
                 l.group.n == 1 ? "one process per rank" : "one process, a thread per rank");
    if (s) {
        rc = cli_status_error(s, "prefill");
    } else if (!cli_tp_prints(&l)) {
        printf("rlx run: rank %d of %d: %lld tokens, %.1f ms (rank 0 prints the results)\n", l.group.first_rank, l.group.world,
               (long long)total, dt * 1e3);
    } else if (json) {
        int64_t shape[2] = {rows, V};
        if (logits_out && (s = rlx__npy_write_f32(logits_out, logits, 2, shape))) {
            rc = cli_status_error(s, "--logits-out");
        } else {
            json_t *doc = json_object(), *seqs = json_array();
            json_object_set_new(doc, "command", json_string("run"));
            json_object_set_new(doc, "rlx_version", json_string(rlx_version_string()));
            json_object_set_new(doc, "model", json_string(model_dir));
            json_object_set_new(doc, "device", json_string(rlx_device_kind_name(rlx_model_device(l.model))));
            json_object_set_new(doc, "tokens", json_integer(total));
            json_object_set_new(doc, "tp", json_integer(tp));
            json_object_set_new(doc, "ms", cli_json_real(dt * 1e3));
            json_object_set_new(doc, "logits_shape", json_pack("[II]", (json_int_t)rows, (json_int_t)V));
            json_object_set_new(doc, "logits_out", logits_out ? json_string(logits_out) : json_null());
            int64_t start = 0;
            for (int q = 0; q < n_seqs && doc; q++) {
                /* the next-token logits of sequence q: its row, or its last position's with --all-logits */
                int64_t row = all_logits ? start + lens[q] - 1 : q;
                json_t *top = top_k_json(logits + row * V, V, top_k, tok);
                if (!top || json_array_append_new(seqs, json_pack("{sIso}", "tokens", (json_int_t)lens[q], "top_k", top))) {
                    json_decref(doc);
                    doc = NULL;
                }
                start += lens[q];
            }
            if (doc) json_object_set_new(doc, "sequences", seqs);
            else json_decref(seqs);
            rc = cli_json_print(doc);
        }
    } else {
        printf("rlx run: %s, %d sequence%s, %lld tokens, device %s%s, %.1f ms\n", model_dir, n_seqs, n_seqs > 1 ? "s" : "",
               (long long)total, rlx_device_kind_name(rlx_model_device(l.model)), tps, dt * 1e3);
        int64_t start = 0;
        for (int q = 0; q < n_seqs; q++) {
            int64_t row = all_logits ? start + lens[q] - 1 : q;
            if (top_k > 0) {
                printf("sequence %d (%lld tokens): top-%lld next tokens\n", q, (long long)lens[q], (long long)top_k);
                print_top_k(logits + row * V, V, top_k, tok);
            }
            start += lens[q];
        }
        if (logits_out) {
            int64_t shape[2] = {rows, V};
            if ((s = rlx__npy_write_f32(logits_out, logits, 2, shape))) rc = cli_status_error(s, "--logits-out");
            else printf("logits [%lld, %lld] float32 written to %s\n", (long long)rows, (long long)V, logits_out);
        }
    }
    free(logits);
out:
    cli_llama_close(&l);
    free(tokens);
    rlx_tokenizer_destroy(tok);
    return rc;
}

/* The checkpoint's tensors no stage reads (old buffers, unused heads), with dtype and shape. */
static void print_unused(const rlx_model *m, const rlx_weights *w) {
    int n = rlx_model_unused_tensor_count(m);
    printf("unused tensors (%d)%s\n", n, n ? ": in the checkpoint, read by no stage" : "");
    for (int i = 0; i < n; i++) {
        rlx_tensor_view v;
        const char *name = rlx_model_unused_tensor(m, i);
        if (!rlx_weights_has(w, name, &v)) continue;
        printf("  %s %s [", name, rlx_dtype_name(v.dtype));
        for (int d = 0; d < v.ndim; d++) printf("%s%lld", d ? ", " : "", (long long)v.shape[d]);
        printf("]\n");
    }
    printf("\n");
}

static int cmd_plan(int argc, char **argv) {
    const char *model_dir = NULL, *profile_path = NULL, *v;
    int64_t batch = 1, seq = 0, tp = 1, rank = 0;
    rlx_fusion_policy fusion = RLX_FUSION_FUSED;
    int fusion_set = 0, assert_clean = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_opt(a, "--model")) {
            if (!(model_dir = cli_opt_value(argc, argv, &i, "--model"))) return CLI_USAGE;
        } else if (cli_is_opt(a, "--tp")) {
            if (!(v = cli_opt_value(argc, argv, &i, "--tp")) || cli_parse_tp(v, &tp)) return CLI_USAGE;
        } else if (cli_is_opt(a, "--rank")) {
            if (!(v = cli_opt_value(argc, argv, &i, "--rank")) || cli_parse_count("--rank", v, 0, 1023, &rank)) return CLI_USAGE;
        } else if (cli_is_opt(a, "--batch")) {
            if (!(v = cli_opt_value(argc, argv, &i, "--batch")) || cli_parse_count("--batch", v, 1, 1 << 16, &batch)) return CLI_USAGE;
        } else if (cli_is_opt(a, "--seq")) {
            if (!(v = cli_opt_value(argc, argv, &i, "--seq")) || cli_parse_count("--seq", v, 1, 1 << 24, &seq)) return CLI_USAGE;
        } else if (cli_is_opt(a, "--profile")) {
            if (!(profile_path = cli_opt_value(argc, argv, &i, "--profile"))) return CLI_USAGE;
        } else if (cli_is_opt(a, "--fusion")) {
            if (!(v = cli_opt_value(argc, argv, &i, "--fusion")) || cli_parse_fusion(v, &fusion)) return CLI_USAGE;
            fusion_set = 1;
        } else if (!strcmp(a, "--assert-clean")) {
            assert_clean = 1;
        } else {
            return cli_error(CLI_USAGE, "plan: unknown option '%s' (rlx plan --help lists them)", cli_echo(a));
        }
    }
    if (!model_dir) return cli_error(CLI_USAGE, "plan: --model DIR is required");
    if (rank >= tp) return cli_error(CLI_USAGE, "plan: --rank %lld of --tp %lld (ranks are 0..tp-1)", (long long)rank, (long long)tp);
    cli_llama l;
    int rc = cli_llama_open(model_dir, &l);
    if (rc) return rc;
    l.tp = (int)tp;
    l.plan_rank = (int)rank;
    if (!seq) seq = l.cfg.max_position_embeddings < 2048 ? l.cfg.max_position_embeddings : 2048;
    if (seq > l.cfg.max_position_embeddings) {
        /* the message reads the config: print it before closing clears it */
        rc = cli_error(CLI_USAGE, "--seq %lld exceeds max_position_embeddings %lld", (long long)seq, (long long)l.cfg.max_position_embeddings);
        cli_llama_close(&l);
        return rc;
    }
    rlx_profile profile;
    if ((rc = load_profile(profile_path, l.weights, &profile))) {
        cli_llama_close(&l);
        return rc;
    }
    if (fusion_set) profile.fusion_policy = fusion;
    if (assert_clean) profile.assert_clean = 1;
    l.profile = &profile;
    l.plan_only = 1; /* the plan is device-independent: nothing is uploaded or converted */
    if ((rc = cli_llama_build(&l, batch, seq, 1, RLX_DEVICE_CPU))) {
        cli_llama_close(&l);
        return rc;
    }
    char *flow_text = NULL, *model_text = NULL, *profile_text = NULL, *plan_text = NULL;
    rlx_status s = rlx_flow_format(l.flow, &flow_text);
    if (!s) s = rlx_model_format(l.model, &model_text);
    if (!s) s = rlx_model_format_plan(l.model, &plan_text);
    if (!s) s = rlx_profile_format(rlx_model_profile(l.model), &profile_text);
    if (s) {
        rc = cli_status_error(s, "plan");
    } else {
        const rlx_llama_config *c = &l.cfg;
        printf("model: %s\n", model_dir);
        printf("config: hidden %lld, layers %lld, heads %lld (kv %lld, head_dim %lld), intermediate %lld, vocab %lld, %s head\n",
               (long long)c->hidden_size, (long long)c->num_hidden_layers, (long long)c->num_attention_heads,
               (long long)c->num_key_value_heads, (long long)c->head_dim, (long long)c->intermediate_size,
               (long long)c->vocab_size, c->tie_word_embeddings ? "tied" : "untied");
        printf("capacity: batch %lld x seq %lld; values: T = tokens of a prefill, S = sequences\n", (long long)batch, (long long)seq);
        const rlx_profile *pf = rlx_model_profile(l.model);
        printf("profile: %s%s: %s\n", pf->source,
               profile_path ? " (--profile)" : strncmp(pf->source, "preset:", 7) ? " (next to the weights)" : " (no llama32.rlx.toml next to the weights)",
               profile_text);
        printf("passes:\n%s\n", rlx_model_pass_log(l.model));
        printf("flow stages (%zu):\n%s\n", rlx_flow_stage_count(l.flow), flow_text);
        printf("executed stages (composites expanded):\n%s\n", model_text);
        print_unused(l.model, l.weights);
        printf("%s", plan_text);
    }
    rlx_free(plan_text);
    rlx_free(flow_text);
    rlx_free(model_text);
    rlx_free(profile_text);
    cli_llama_close(&l);
    return rc;
}

const cli_command cli_cmd_run = {
    .name = "run",
    .run = cmd_run,
    .summary = "prefill the prompts and print the top-k next tokens",
    .usage =
    "usage: rlx run --model DIR (--tokens IDS | --prompt TEXT) [--tokens IDS | --prompt TEXT ...] [options]\n"
    "  --model DIR            Hugging Face model directory (config.json + safetensors)\n"
    "  --tokens 1,2,3         one prompt's token ids; repeat for a batch\n"
    "  --prompt TEXT          one prompt as text, through the directory's tokenizer.json (BOS added as\n"
    "                         the tokenizer's post-processor says); repeat for a batch, mix with --tokens\n"
    "  --truncate             cut prompts longer than max_position_embeddings instead of refusing them\n"
    "  --device D             auto|cpu|cuda|simt (default auto: cuda when a GPU is present)\n"
    "  --tp N                 tensor parallelism over N ranks: N GPUs (NCCL), or N in-process ranks on cpu/simt;\n"
    "                         with RLX_WORLD_SIZE (or WORLD_SIZE) set, this process is one rank of that job\n"
    "                         (RLX_RANK, RLX_LOCAL_RANK, RLX_NCCL_ID or RLX_NCCL_ID_FILE; docs/tensor-parallel.md)\n"
    "  --profile F.rlx.toml   compile profile (default: the model directory's llama32.rlx.toml)\n"
    "  --fusion fused|none    fusion policy (over the profile's)\n"
    "  --all-logits           logits at every position, not only the last\n"
    "  --check-weights        refuse a checkpoint holding a NaN or an infinity, naming the first such tensor\n"
    "  --logits-out F.npy     write the logits as float32 .npy ([sequences|tokens, vocab])\n"
    "  --top-k N              next tokens printed per sequence (default 5)\n"
    "  --json                 print one JSON document instead of the text: model, device, tokens, ms,\n"
    "                         tp, logits_shape, logits_out, sequences[] {tokens, top_k[] {id, logit, text}}\n",
};

const cli_command cli_cmd_plan = {
    .name = "plan",
    .run = cmd_plan,
    .summary = "print the stage list and the kernel plan (each kernel, its stages, bytes moved)",
    .usage =
    "usage: rlx plan --model DIR [options]\n"
    "  --model DIR            Hugging Face model directory\n"
    "  --batch B              sequences of the capacity (default 1)\n"
    "  --seq S                tokens per sequence of the capacity (default: max_position_embeddings, at most 2048)\n"
    "  --profile F.rlx.toml   compile profile\n"
    "  --fusion fused|none    fusion policy (over the profile's)\n"
    "  --assert-clean         fail (exit 1) when a norm, rope or add runs as a pass of its own\n"
    "  --tp N                 the plan of one of N tensor-parallel ranks (its heads, columns, collectives)\n"
    "  --rank R               which rank's plan with --tp (default 0)\n",
};
