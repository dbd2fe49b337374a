/* rlx embed: sentence embeddings from a BERT or NomicBERT checkpoint.
 *
 *   rlx embed --model DIR --tokens 101,2023,102 | --text TEXT [...] [--token-types 0,0,0 ...]
 *             [--pool cls|mean|none] [--normalize] [--out F.npy] [--device auto|cpu|cuda|simt] [--json]
 *
 * Sequences of different lengths are packed, not padded; rlx computes the positions. A
 * sentence-transformers directory's modules.json decides pooling and normalization (as
 * SentenceTransformer.encode would run it), unless flags override it.
 * Writes float32 [batch, hidden] (--pool none: [tokens, hidden]). Exit codes as `rlx run`.
 */
#include "cli/cli.h"
#include "io/npy.h"
#include "rlx/encoder.h"
#include "rlx/tokenizer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SEQS 256

/* Appends lists[0..n) parsed from args to one packed array. */
static int pack_lists(const char *opt, const char **args, int n, int32_t **packed, int64_t *lens, int64_t *total) {
    *packed = NULL;
    *total = 0;
    for (int s = 0; s < n; s++) {
        int32_t *ids;
        int rc = cli_parse_ids(opt, args[s], &ids, &lens[s]);
        if (rc) {
            free(*packed);
            *packed = NULL;
            return rc;
        }
        int32_t *np = realloc(*packed, (size_t)(*total + lens[s]) * sizeof *np);
        if (!np) {
            free(ids);
            free(*packed);
            *packed = NULL;
            return cli_error(CLI_RUNTIME, "out of memory");
        }
        *packed = np;
        memcpy(np + *total, ids, (size_t)lens[s] * sizeof *ids);
        free(ids);
        *total += lens[s];
    }
    return CLI_OK;
}

static int cmd_embed(int argc, char **argv) {
    const char *model_dir = NULL, *out_path = NULL, *v;
    const char *tok_args[MAX_SEQS], *tt_args[MAX_SEQS];
    int is_text[MAX_SEQS]; /* tok_args[s] is a --text, not ids */
    int n_seqs = 0, n_tt = 0, n_texts = 0, normalize = -1, pool_given = 0, ignore_modules = 0, truncate = 0, json = 0;
    rlx_weights_open_params open_params = rlx_weights_open_default_params();
    rlx_pool pool = RLX_POOL_MEAN;
    rlx_device_kind dev = RLX_DEVICE_AUTO;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_opt(a, "--model")) {
            if (!(model_dir = cli_opt_value(argc, argv, &i, "--model"))) return CLI_USAGE;
        } else if (cli_is_opt(a, "--tokens")) {
            if (!(v = cli_opt_value(argc, argv, &i, "--tokens"))) return CLI_USAGE;
            if (n_seqs == MAX_SEQS) return cli_error(CLI_USAGE, "at most %d --tokens / --text", MAX_SEQS);
            is_text[n_seqs] = 0;
            tok_args[n_seqs++] = v;
        } else if (cli_is_opt(a, "--text")) {
            if (!(v = cli_opt_value(argc, argv, &i, "--text"))) return CLI_USAGE;
            if (n_seqs == MAX_SEQS) return cli_error(CLI_USAGE, "at most %d --tokens / --text", MAX_SEQS);
            is_text[n_seqs] = 1;
            tok_args[n_seqs++] = v;
            n_texts++;
        } else if (!strcmp(a, "--truncate")) {
            truncate = 1;
        } else if (cli_is_opt(a, "--token-types")) {
            if (!(v = cli_opt_value(argc, argv, &i, "--token-types"))) return CLI_USAGE;
            if (n_tt == MAX_SEQS) return cli_error(CLI_USAGE, "at most %d --token-types lists", MAX_SEQS);
            tt_args[n_tt++] = v;
        } else if (cli_is_opt(a, "--pool")) {
            if (!(v = cli_opt_value(argc, argv, &i, "--pool"))) return CLI_USAGE;
            if (!strcmp(v, "cls")) pool = RLX_POOL_CLS;
            else if (!strcmp(v, "mean")) pool = RLX_POOL_MEAN;
            else if (!strcmp(v, "none")) pool = RLX_POOL_NONE;
            else return cli_error(CLI_USAGE, "--pool: '%s' is not one of cls, mean, none", v);
            pool_given = 1;
        } else if (!strcmp(a, "--normalize")) {
            normalize = 1;
        } else if (!strcmp(a, "--no-normalize")) {
            normalize = 0;
        } else if (!strcmp(a, "--ignore-modules")) {
            ignore_modules = 1;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--check-weights")) {
            open_params.check_finite = 1;
        } else if (cli_is_opt(a, "--out")) {
            if (!(out_path = cli_opt_value(argc, argv, &i, "--out"))) return CLI_USAGE;
        } else if (cli_is_opt(a, "--device")) {
            if (!(v = cli_opt_value(argc, argv, &i, "--device")) || cli_parse_device(v, &dev)) return CLI_USAGE;
        } else {
            return cli_error(CLI_USAGE, "embed: unknown option '%s' (rlx embed --help lists them)", cli_echo(a));
        }
    }
    if (!model_dir) return cli_error(CLI_USAGE, "embed: --model DIR is required");
    if (!n_seqs) return cli_error(CLI_USAGE, "embed: --tokens is required, or --text (e.g. --tokens 101,2023,102)");
    if (n_tt && n_tt != n_seqs)
        return cli_error(CLI_USAGE, "--token-types: %d list%s for %d --tokens list%s (give one per sequence, or none for all zeros)", n_tt,
                         n_tt > 1 ? "s" : "", n_seqs, n_seqs > 1 ? "s" : "");

    /* id lists are parsed now (a usage error needs no model); texts once the tokenizer is open */
    int32_t *tokens = NULL, *types = NULL, *seq_ids[MAX_SEQS] = {0};
    int64_t lens[MAX_SEQS] = {0}, tt_lens[MAX_SEQS], total = 0, tt_total = 0, max_len = 0;
    rlx_tokenizer *tok = NULL;
    int rc = CLI_OK;
    for (int q = 0; !rc && q < n_seqs; q++)
        if (!is_text[q]) rc = cli_parse_ids("--tokens", tok_args[q], &seq_ids[q], &lens[q]);
    if (!rc && n_tt) rc = pack_lists("--token-types", tt_args, n_tt, &types, tt_lens, &tt_total);

    rlx_st_pipeline st = {.pool = RLX_POOL_MEAN};
    char weights_dir[1400];
    rlx_weights *w = NULL;
    rlx_encoder_config cfg;
    rlx_flow *flow = NULL;
    rlx_model *model = NULL;
    rlx_session *sess = NULL;
    float *emb = NULL;
    rlx_status s = RLX_OK;
    if (rc) goto out;
    /* the sentence-transformers pipeline, unless told to run the encoder alone */
    if (!ignore_modules && (s = rlx_sentence_transformers_read(model_dir, &st))) {
        rc = cli_status_error(s, "reading the sentence-transformers modules");
        goto out;
    }
    snprintf(weights_dir, sizeof weights_dir, "%s%s%s", model_dir, st.transformer_path[0] ? "/" : "", st.transformer_path);
    if ((s = rlx_weights_open_ex(weights_dir, &open_params, &w))) {
        rc = cli_status_error(s, "loading the model");
        goto out;
    }
    if ((s = rlx_encoder_config_from_weights(w, NULL, &cfg))) {
        rc = cli_status_error(s, "reading the config");
        goto out;
    }
    if (n_texts) {
        /* --text: the tokenizer.json next to the weights; --truncate cuts to the model's length */
        if ((rc = cli_tokenizer_open(weights_dir, &tok))) goto out;
        for (int q = 0; q < n_seqs; q++)
            if (is_text[q] &&
                (rc = cli_encode_texts(tok, &tok_args[q], 1, truncate ? cfg.max_position_embeddings : 0, &seq_ids[q], &lens[q])))
                goto out;
    }
    for (int q = 0; q < n_tt; q++)
        if (tt_lens[q] != lens[q]) {
            rc = cli_error(CLI_USAGE, "--token-types: list %d has %lld ids but its %s has %lld (one type per token)", q,
                           (long long)tt_lens[q], is_text[q] ? "--text's encoding" : "--tokens list", (long long)lens[q]);
            goto out;
        }
    for (int q = 0; q < n_seqs; q++) {
        total += lens[q];
        if (lens[q] > max_len) max_len = lens[q];
    }
    if (!(tokens = malloc((size_t)(total ? total : 1) * sizeof *tokens))) {
        rc = cli_error(CLI_RUNTIME, "out of memory");
        goto out;
    }
    for (int64_t q = 0, o = 0; q < n_seqs; o += lens[q], q++)
        if (lens[q]) memcpy(tokens + o, seq_ids[q], (size_t)lens[q] * sizeof *tokens);
    for (int64_t t = 0; t < total; t++)
        if (tokens[t] >= cfg.vocab_size) {
            rc = cli_error(CLI_USAGE, "--tokens: id %ld is outside the vocabulary [0, %lld)", (long)tokens[t], (long long)cfg.vocab_size);
            goto out;
        }
    if (types && cfg.type_vocab_size == 0) {
        rc = cli_error(CLI_USAGE, "--token-types: the model has no token-type embeddings (type_vocab_size 0)");
        goto out;
    }
    for (int64_t t = 0; types && t < tt_total; t++)
        if (types[t] >= cfg.type_vocab_size) {
            rc = cli_error(CLI_USAGE, "--token-types: type %ld is outside [0, %lld) (type_vocab_size)", (long)types[t],
                           (long long)cfg.type_vocab_size);
            goto out;
        }
    if (max_len > cfg.max_position_embeddings) {
        rc = cli_error(CLI_USAGE, "--tokens/--text: %lld tokens exceed max_position_embeddings %lld%s", (long long)max_len,
                       (long long)cfg.max_position_embeddings, n_texts ? " (--truncate cuts texts to it)" : "");
        goto out;
    }
    char pool_from[320] = "", norm_from[64] = "";
    const char *pool_src = "--pool", *norm_src = normalize < 0 ? "default" : "flag"; /* for --json */
    if (!pool_given) {
        if (st.has_pooling) pool = st.pool, snprintf(pool_from, sizeof pool_from, " (from %s)", st.pool_source);
        else snprintf(pool_from, sizeof pool_from, " (default)");
        pool_src = st.has_pooling ? st.pool_source : "default";
    }
    if (normalize < 0) {
        normalize = st.normalize;
        if (normalize) snprintf(norm_from, sizeof norm_from, " (modules.json: Normalize)");
        if (normalize) norm_src = "modules.json";
    }

    rlx_encoder_recipe_params rp = rlx_encoder_recipe_default_params();
    rp.batch = n_seqs;
    rp.seq = max_len;
    rp.pool = pool;
    rp.normalize = normalize;
    if ((s = rlx_encoder_flow(&cfg, &rp, &flow))) {
        rc = cli_status_error(s, "assembling the flow");
        goto out;
    }
    rlx_build_params bp = rlx_build_default_params();
    bp.device = dev;
    cli_progress prog;
    cli_progress_attach(&prog, &bp, "loading weights");
    s = rlx_model_build(flow, w, &bp, &model);
    if (s) {
        rc = cli_status_error(s, "building the model");
        goto out;
    }
    cli_warn_unused_layers(model, cfg.num_hidden_layers);
    rlx_named_ids tt = {RLX_TOKEN_TYPE_IDS, types, tt_total};
    rlx_prefill_batch pb = {.tokens = tokens, .n_tokens = total, .seq_lens = lens, .n_seqs = n_seqs, .inputs = &tt,
                            .n_inputs = types ? 1 : 0};
    int64_t rows = 0, H = 0;
    double t0 = cli_now();
    s = rlx_session_create(model, &sess);
    if (!s) s = rlx_session_prefill_ex(sess, &pb, NULL);
    if (!s) s = rlx_session_output_shape(sess, &rows, &H);
    if (!s && !(emb = malloc((size_t)rows * (size_t)H * sizeof(float)))) s = RLX_ERR_OUT_OF_MEMORY;
    if (!s) s = rlx_session_output_to_host(sess, emb, (size_t)rows * (size_t)H);
    double dt = cli_now() - t0;
    if (s) {
        rc = cli_status_error(s, "prefill");
        goto out;
    }
    if ((rc = cli_check_finite("prefill", emb, rows, H, lens, n_seqs))) goto out;
    if (out_path) {
        int64_t shape[2] = {rows, H};
        if ((s = rlx__npy_write_f32(out_path, emb, 2, shape))) {
            rc = cli_status_error(s, "--out");
            goto out;
        }
    }
    const char *arch = cfg.arch == RLX_ENCODER_NOMIC_BERT ? "nomic_bert" : "bert";
    if (json) {
        json_t *doc = json_object(), *rows_j = json_array();
        json_object_set_new(doc, "command", json_string("embed"));
        json_object_set_new(doc, "rlx_version", json_string(rlx_version_string()));
        json_object_set_new(doc, "model", json_string(model_dir));
        json_object_set_new(doc, "arch", json_string(arch));
        json_object_set_new(doc, "hidden", json_integer(cfg.hidden_size));
        json_object_set_new(doc, "layers", json_integer(cfg.num_hidden_layers));
        json_object_set_new(doc, "pool", json_string(rlx_pool_name(pool)));
        json_object_set_new(doc, "pool_from", json_string(pool_src));
        json_object_set_new(doc, "normalized", json_boolean(normalize));
        json_object_set_new(doc, "normalized_from", json_string(norm_src));
        json_object_set_new(doc, "device", json_string(rlx_device_kind_name(rlx_model_device(model))));
        json_object_set_new(doc, "tokens", json_integer(total));
        json_t *lens_j = json_array();
        for (int q = 0; q < n_seqs; q++) json_array_append_new(lens_j, json_integer(lens[q]));
        json_object_set_new(doc, "seq_lens", lens_j);
        json_object_set_new(doc, "ms", cli_json_real(dt * 1e3));
        json_object_set_new(doc, "shape", json_pack("[II]", (json_int_t)rows, (json_int_t)H));
        json_object_set_new(doc, "out", out_path ? json_string(out_path) : json_null());
        /* every row in full: [sequences, hidden], or [tokens, hidden] with --pool none */
        for (int64_t r = 0; r < rows; r++) {
            json_t *row = json_array();
            for (int64_t c = 0; c < H; c++) json_array_append_new(row, cli_json_real(emb[r * H + c]));
            json_array_append_new(rows_j, row);
        }
        json_object_set_new(doc, "embeddings", rows_j);
        rc = cli_json_print(doc);
        goto out;
    }
    printf("rlx embed: %s (%s, hidden %lld, %lld layers), %d sequence%s, %lld tokens, pool %s%s%s%s, device %s, %.1f ms\n", model_dir,
           arch, (long long)cfg.hidden_size, (long long)cfg.num_hidden_layers,
           n_seqs, n_seqs > 1 ? "s" : "", (long long)total, rlx_pool_name(pool), pool_from, normalize ? ", L2-normalized" : "",
           norm_from, rlx_device_kind_name(rlx_model_device(model)), dt * 1e3);
    /* A short summary: the norm and first values of each row (at most 16 rows). */
    int64_t q = 0, start = 0;
    for (int64_t r = 0; r < rows && r < 16; r++) {
        const float *e = emb + r * H;
        double ss = 0;
        for (int64_t c = 0; c < H; c++) ss += (double)e[c] * e[c];
        if (pool == RLX_POOL_NONE) {
            while (r >= start + lens[q]) start += lens[q++];
            printf("sequence %lld, token %lld: norm %.6f  [", (long long)q, (long long)(r - start), sqrt(ss));
        } else {
            printf("sequence %lld (%lld token%s): norm %.6f  [", (long long)r, (long long)lens[r], lens[r] > 1 ? "s" : "", sqrt(ss));
        }
        for (int64_t c = 0; c < H && c < 4; c++) printf("%s%.6f", c ? ", " : "", e[c]);
        printf("%s]\n", H > 4 ? ", ..." : "");
    }
    if (rows > 16) printf("... %lld more rows\n", (long long)(rows - 16));
    if (out_path) printf("embeddings [%lld, %lld] float32 written to %s\n", (long long)rows, (long long)H, out_path);
out:
    free(emb);
    rlx_session_destroy(sess);
    rlx_model_destroy(model);
    rlx_flow_destroy(flow);
    rlx_weights_destroy(w);
    free(tokens);
    free(types);
    for (int q = 0; q < n_seqs; q++) is_text[q] ? rlx_free(seq_ids[q]) : free(seq_ids[q]);
    rlx_tokenizer_destroy(tok);
    return rc;
}

const cli_command cli_cmd_embed = {
    .name = "embed",
    .run = cmd_embed,
    .summary = "BERT / NomicBERT sentence embeddings",
    .usage =
    "usage: rlx embed --model DIR (--tokens IDS | --text TEXT) [--tokens IDS | --text TEXT ...] [options]\n"
    "  --model DIR            BERT or NomicBERT model directory (sentence-transformers layout too)\n"
    "  --tokens 101,2023,102  one sequence's token ids; repeat for a batch\n"
    "  --text TEXT            one sequence as text, through the directory's tokenizer.json ([CLS] ... [SEP]\n"
    "                         added as its post-processor says); repeat for a batch, mix with --tokens\n"
    "  --truncate             cut each --text to max_position_embeddings (the specials kept)\n"
    "  --token-types 0,0,0    token-type ids of the matching --tokens (default all 0)\n"
    "  --pool cls|mean|none   pooling (default: the directory's sentence-transformers Pooling module, else mean)\n"
    "  --normalize            L2-normalise each vector (default: when modules.json lists Normalize)\n"
    "  --no-normalize         do not, even when modules.json lists Normalize\n"
    "  --ignore-modules       ignore modules.json and 1_Pooling: the encoder alone (mean pool unless --pool)\n"
    "  --check-weights        refuse a checkpoint holding a NaN or an infinity, naming the first such tensor\n"
    "  --out F.npy            write float32 [sequences, hidden] ([tokens, hidden] with --pool none)\n"
    "  --device D             auto|cpu|cuda|simt\n"
    "  --json                 print one JSON document instead of the text: model, arch, hidden, layers, pool,\n"
    "                         pool_from, normalized, normalized_from, device, tokens, seq_lens, ms, shape, out,\n"
    "                         embeddings (every row)\n",
};
