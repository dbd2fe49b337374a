/* Prompts on the command line: --tokens IDS and --prompt TEXT, mixed in any order (rlx run,
 * rlx generate). One path for both commands, so a --prompt means the same ids everywhere. */
#include "cli/cli.h"
#include "rlx/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_prompts_option(cli_prompts *p, int argc, char **argv, int *i) {
    const int text = cli_is_opt(argv[*i], "--prompt");
    if (!text && !cli_is_opt(argv[*i], "--tokens")) return 0;
    const char *v = cli_opt_value(argc, argv, i, text ? "--prompt" : "--tokens");
    if (!v) return -1;
    if (p->n == CLI_MAX_PROMPTS) {
        cli_error(CLI_USAGE, "at most %d --tokens / --prompt", CLI_MAX_PROMPTS);
        return -1;
    }
    p->arg[p->n] = v;
    p->is_text[p->n++] = text;
    p->n_text += text;
    return 1;
}

int cli_prompts_pack(const cli_prompts *p, const char *model_dir, rlx_tokenizer **tok, int32_t **tokens, int64_t *lens,
                     int64_t *total, int64_t *max_len) {
    *tok = NULL;
    *tokens = NULL;
    *total = *max_len = 0;
    int32_t *lists[CLI_MAX_PROMPTS] = {0}, *text_ids = NULL;
    int64_t text_lens[CLI_MAX_PROMPTS];
    int rc = CLI_OK;
    for (int s = 0; s < p->n && !rc; s++)
        if (!p->is_text[s]) rc = cli_parse_ids("--tokens", p->arg[s], &lists[s], &lens[s]);
    if (!rc && p->n_text) {
        const char *texts[CLI_MAX_PROMPTS];
        for (int s = 0, k = 0; s < p->n; s++)
            if (p->is_text[s]) texts[k++] = p->arg[s];
        rc = cli_tokenizer_open(model_dir, tok);
        if (!rc) rc = cli_encode_texts(*tok, texts, p->n_text, 0, &text_ids, text_lens);
    }
    if (!rc) {
        int64_t n = 0;
        for (int s = 0, k = 0; s < p->n; s++) n += p->is_text[s] ? text_lens[k++] : lens[s];
        if (!(*tokens = malloc((size_t)(n ? n : 1) * sizeof **tokens))) rc = cli_error(CLI_RUNTIME, "out of memory");
    }
    for (int s = 0, k = 0; !rc && s < p->n; s++) {
        const int32_t *src = lists[s];
        if (p->is_text[s]) {
            src = text_ids;
            for (int j = 0; j < k; j++) src += text_lens[j];
            lens[s] = text_lens[k++];
        }
        memcpy(*tokens + *total, src, (size_t)lens[s] * sizeof *src);
        *total += lens[s];
        if (lens[s] > *max_len) *max_len = lens[s];
    }
    for (int s = 0; s < p->n; s++) free(lists[s]);
    rlx_free(text_ids);
    if (rc) {
        free(*tokens);
        *tokens = NULL;
        rlx_tokenizer_destroy(*tok);
        *tok = NULL;
        *total = *max_len = 0;
    }
    return rc;
}

int cli_prompts_check_vocab(const cli_prompts *p, const int32_t *tokens, const int64_t *lens, int64_t vocab) {
    int64_t t = 0;
    for (int s = 0; s < p->n; s++)
        for (int64_t k = 0; k < lens[s]; k++, t++)
            if (tokens[t] >= vocab)
                return cli_error(CLI_USAGE, "%s: id %ld is outside the vocabulary [0, %lld) (prompt %d%s)",
                                 p->is_text[s] ? "--prompt" : "--tokens", (long)tokens[t], (long long)vocab, s,
                                 p->is_text[s] ? ": tokenizer.json has more ids than the checkpoint" : "");
    return CLI_OK;
}

void cli_put_one_line(FILE *f, const char *text, size_t n) {
    for (size_t i = 0; i < n; i++) {
        const unsigned char c = (unsigned char)text[i];
        if (c == '\n') fputs("\\n", f);
        else if (c == '\t') fputs("\\t", f);
        else if (c == '\r') fputs("\\r", f);
        else if (c < 0x20 || c == 0x7f) fprintf(f, "\\x%02x", c); /* a terminal would act on it */
        else fputc(c, f);
    }
}
