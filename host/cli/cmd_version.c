/* rlx version (also `rlx --version`): the library's version — the command is built from the same
 * tree — and the devices this build can run models on. */
#include "cli/cli.h"

#include <stdio.h>

static int cmd_version(int argc, char **argv) {
    if (argc > 1) return cli_error(CLI_USAGE, "version: unknown option '%s' (rlx version --help)", argv[1]);
    printf("rlx %s\ndevices:", rlx_version_string());
    const rlx_device_kind kinds[] = {RLX_DEVICE_CPU, RLX_DEVICE_CUDA, RLX_DEVICE_SIMT};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (rlx_device_compiled(kinds[i])) printf(" %s", rlx_device_kind_name(kinds[i]));
    printf("\n");
    return CLI_OK;
}

const cli_command cli_cmd_version = {
    .name = "version",
    .run = cmd_version,
    .summary = "print the library version and the devices compiled in (also rlx --version)",
    .usage =
    "usage: rlx version      (or rlx --version)\n"
    "  prints \"rlx MAJOR.MINOR.PATCH\", then \"devices:\" and the devices compiled in (cpu, cuda, simt);\n"
    "  whether a GPU is present is for rlx check or rlx run --device cuda to say\n",
};
