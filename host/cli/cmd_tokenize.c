/* rlx tokenize: text -> ids (one line of comma-separated ids per --text, the form --tokens
 * takes, and nothing else on stdout) and ids -> text (--decode). Also the helper the other
 * commands use for --prompt / --text. */
#include "cli/cli.h"
#include "rlx/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_tokenizer_open(const char *model_dir, rlx_tokenizer **out) {
    rlx_status s = rlx_tokenizer_open(model_dir, out);
    if (s)
        return cli_error(s == RLX_ERR_INVALID_ARGUMENT ? CLI_USAGE : CLI_RUNTIME, "loading the tokenizer: %s",
                         rlx_last_error());
    return CLI_OK;
}

int cli_encode_texts(const rlx_tokenizer *tok, const char *const *texts, int n, int64_t max_length, int32_t **ids,
                     int64_t *lens) {
    rlx_tokenizer_encode_params p = rlx_tokenizer_encode_default_params();
    p.max_length = max_length;
    rlx_status s = rlx_tokenizer_encode_batch(tok, texts, NULL, n, &p, ids, lens);
    if (s) return cli_status_error(s, "tokenizing");
    return CLI_OK;
}

#define MAX_TEXTS 4096

static int cmd_tokenize(int argc, char **argv) {
    const char *model_dir = NULL, *v;
    const char *texts[MAX_TEXTS], *decodes[MAX_TEXTS];
    int n_texts = 0, n_decodes = 0, skip_special = 0, truncate_left = 0;
    rlx_tokenizer_encode_params p = rlx_tokenizer_encode_default_params();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_opt(a, "--model")) {
            if (!(model_dir = cli_opt_value(argc, argv, &i, "--model"))) return CLI_USAGE;
        } else if (cli_is_opt(a, "--text")) {
            if (!(v = cli_opt_value(argc, argv, &i, "--text"))) return CLI_USAGE;
            if (n_texts == MAX_TEXTS) return cli_error(CLI_USAGE, "tokenize: at most %d --text", MAX_TEXTS);
            texts[n_texts++] = v;
        } else if (cli_is_opt(a, "--decode")) {
            if (!(v = cli_opt_value(argc, argv, &i, "--decode"))) return CLI_USAGE;
            if (n_decodes == MAX_TEXTS) return cli_error(CLI_USAGE, "tokenize: at most %d --decode", MAX_TEXTS);
            decodes[n_decodes++] = v;
        } else if (!strcmp(a, "--no-special")) {
            p.add_special_tokens = 0;
        } else if (!strcmp(a, "--skip-special")) {
            skip_special = 1;
        } else if (cli_is_opt(a, "--max-length")) {
            if (!(v = cli_opt_value(argc, argv, &i, "--max-length"))) return CLI_USAGE;
            if (!strcmp(v, "model"))
                p.max_length = RLX_TOKENIZER_MODEL_MAX_LENGTH;
            else if (cli_parse_count("--max-length", v, 1, INT32_MAX, &p.max_length))
                return CLI_USAGE;
        } else if (!strcmp(a, "--truncate-left")) {
            truncate_left = 1;
        } else if (!strcmp(a, "--replace-invalid")) {
            p.invalid_utf8 = RLX_TOKENIZER_UTF8_REPLACE;
        } else {
            return cli_error(CLI_USAGE, "tokenize: unknown option '%s' (rlx tokenize --help lists them)", cli_echo(a));
        }
    }
    if (!model_dir) return cli_error(CLI_USAGE, "tokenize: --model DIR is required");
    if (!n_texts && !n_decodes) return cli_error(CLI_USAGE, "tokenize: give --text TEXT or --decode IDS");
    if (n_texts && n_decodes)
        return cli_error(CLI_USAGE, "tokenize: --text and --decode cannot be mixed (run it twice)");
    p.truncate_left = truncate_left;
    /* the id lists are checked before the tokenizer is read: a usage error needs no model */
    int32_t *lists[MAX_TEXTS];
    int64_t list_n[MAX_TEXTS];
    int rc = CLI_OK, n_lists = 0;
    for (; n_lists < n_decodes && !rc; n_lists++)
        rc = cli_parse_ids("--decode", decodes[n_lists], &lists[n_lists], &list_n[n_lists]);
    if (rc) n_lists--;
    rlx_tokenizer *tok = NULL;
    if (!rc) rc = cli_tokenizer_open(model_dir, &tok);
    if (!rc && n_texts) {
        int32_t *ids = NULL;
        int64_t *lens = malloc((size_t)n_texts * sizeof *lens);
        rlx_status s =
            lens ? rlx_tokenizer_encode_batch(tok, texts, NULL, n_texts, &p, &ids, lens) : RLX_ERR_OUT_OF_MEMORY;
        if (s) rc = cli_status_error(s, "tokenizing");
        for (int64_t t = 0, o = 0; !rc && t < n_texts; t++) {
            for (int64_t k = 0; k < lens[t]; k++)
                printf("%s%d", k ? "," : "", ids[o + k]);
            putchar('\n');
            o += lens[t];
        }
        rlx_free(ids);
        free(lens);
    }
    for (int d = 0; !rc && d < n_lists; d++) {
        char *text;
        size_t nb;
        rlx_status s = rlx_tokenizer_decode(tok, lists[d], list_n[d], skip_special, &text, &nb);
        if (s) {
            rc = cli_status_error(s, "--decode");
            break;
        }
        fwrite(text, 1, nb, stdout);
        putchar('\n');
        rlx_free(text);
    }
    for (int d = 0; d < n_lists; d++)
        free(lists[d]);
    rlx_tokenizer_destroy(tok);
    if (!rc && fflush(stdout)) rc = cli_error(CLI_RUNTIME, "tokenize: writing the output failed");
    return rc;
}

const cli_command cli_cmd_tokenize = {
    .name = "tokenize",
    .run = cmd_tokenize,
    .summary = "text to token ids and back with the model's tokenizer.json (docs/tokenizer.md)",
    .usage = "usage: rlx tokenize --model DIR --text TEXT [--text TEXT ...] [options]\n"
             "       rlx tokenize --model DIR --decode IDS [--decode IDS ...] [--skip-special]\n"
             "  --model DIR            model directory with tokenizer.json (or the tokenizer.json file)\n"
             "  --text TEXT            a text to encode; prints one line of comma-separated ids per --text\n"
             "                         (the form --tokens takes), nothing else on stdout\n"
             "  --decode 1,2,3         ids to decode; prints the text, one line per --decode\n"
             "  --no-special           no BOS / [CLS] ... [SEP] from the post-processor\n"
             "  --skip-special         --decode: drop the special tokens\n"
             "  --max-length N|model   truncate each text to N ids (model: tokenizer_config.json's model_max_length)\n"
             "  --truncate-left        truncate from the start instead of the end\n"
             "  --replace-invalid      invalid UTF-8 becomes U+FFFD instead of an error\n",
};
