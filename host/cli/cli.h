/* The rlx command: shared helpers of the subcommands. */
#ifndef RLX_CLI_H
#define RLX_CLI_H

#include "rlx/flow.h"
#include "rlx/llama.h"
#include "rlx/profile.h"
#include "rlx/rlx.h"
#include "rlx/weights.h"

#include <stdint.h>

/* Exit codes (scripts depend on them). */
enum { CLI_OK = 0, CLI_RUNTIME = 1, CLI_USAGE = 2 };

/* Prints "rlx: error: <msg>" on stderr and returns code. */
int cli_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Maps a library status to an exit code and prints the library's message. */
int cli_status_error(rlx_status s, const char *what);

/* Token lists: "1,2,3". Returns 0 and a malloc'd array, or prints a usage error and returns 2. */
int cli_parse_tokens(const char *text, int32_t **out, int64_t *n);
/* Device names: auto|cpu|cuda|simt. */
int cli_parse_device(const char *text, rlx_device_kind *out);
/* Positive integer option value. */
int cli_parse_count(const char *opt, const char *text, int64_t min, int64_t max, int64_t *out);

/* Option parsing shared by the commands: cli_is_opt matches "--opt" and "--opt=value";
 * cli_opt_value returns the value ("--opt value" or "--opt=value") and advances *i, or prints
 * a usage error and returns NULL when it is missing. */
int cli_is_opt(const char *arg, const char *name);
const char *cli_opt_value(int argc, char **argv, int *i, const char *name);

/* Seconds since an arbitrary origin (monotonic). */
double cli_now(void);

/* Opens DIR, parses its config and builds the Llama flow and model. */
typedef struct cli_llama {
    rlx_weights *weights;
    rlx_llama_config cfg;
    rlx_flow *flow;
    rlx_model *model;
    const rlx_profile *profile; /* set before cli_llama_build; NULL = the prefill preset */
    int plan_only;              /* build for `rlx plan`: nothing prepared, nothing runs */
} cli_llama;
/* --fusion fused|none */
int cli_parse_fusion(const char *text, rlx_fusion_policy *out);
int cli_llama_open(const char *dir, cli_llama *out);
int cli_llama_build(cli_llama *l, int64_t batch, int64_t seq, int last_token, rlx_device_kind dev);
void cli_llama_close(cli_llama *l);

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
    cli_cmd_bench, cli_cmd_tokenize;

/* Text prompts (cmd_tokenize.c): opens DIR's tokenizer.json (a clear error when it is missing)
 * and encodes n texts into packed ids (free with rlx_free) and lens; max_length 0 = no
 * truncation. Both print the error and return the exit code. */
typedef struct rlx_tokenizer rlx_tokenizer;
int cli_tokenizer_open(const char *model_dir, rlx_tokenizer **out);
int cli_encode_texts(const rlx_tokenizer *tok, const char *const *texts, int n, int64_t max_length, int32_t **ids,
                     int64_t *lens);

#endif
