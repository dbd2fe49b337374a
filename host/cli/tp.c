/* --tp N on the commands: one process driving N ranks, or one rank of a job started one process
 * per GPU (RLX_WORLD_SIZE / WORLD_SIZE set; docs/tensor-parallel.md). */
#include "cli/cli.h"

#include <errno.h>
#include <stdlib.h>

/* The job's world size from the environment, 0 when none is set, -1 when it is not a number. */
static long env_world(const char **name) {
    const char *v = getenv(*name = "RLX_WORLD_SIZE");
    if (!v || !*v) v = getenv(*name = "WORLD_SIZE");
    if (!v || !*v) return 0;
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    return *end || errno || n < 1 ? -1 : n;
}

int cli_parse_tp(const char *text, int64_t *tp) { return cli_parse_count("--tp", text, 1, 1024, tp); }

int cli_tp_from_env(int64_t tp) {
    const char *name;
    return tp > 1 && env_world(&name) > 0;
}

int cli_tp_check_env(int64_t tp) {
    const char *name;
    long w = env_world(&name);
    if (tp <= 1 || w == 0) return CLI_OK;
    if (w < 0) return cli_error(CLI_USAGE, "--tp %lld: %s='%s' is not a world size", (long long)tp, name, getenv(name));
    if (w != tp)
        return cli_error(CLI_USAGE, "--tp %lld: world-size mismatch: this process was started as one rank of %s=%ld",
                         (long long)tp, name, w);
    return CLI_OK;
}

int cli_tp_prints(const cli_llama *l) { return l->tp <= 1 || l->group.first_rank == 0; }
