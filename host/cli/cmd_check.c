/* rlx check: validates an install — every kernel on random awkward shapes and a whole model on the
 * device, against the CPU reference, with the bounds of NUMERICS.md. Exit 1 on any failure. */
#include "tools/check.h"
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void print_rows(const rlx__check_report *r, int from, const char *dtype) {
    for (int i = from; i < r->n; i++) {
        const rlx__check_row *x = &r->rows[i];
        if (!strcmp(x->op, "model")) {
            printf("%-11s %-58s %-5s %10.3e %10.3e  cos>=%.3f argmax %5.1f%%  %s\n", x->op, x->shape, x->dtype, x->nmse,
                   x->max_err, x->extra, 100 * x->extra2, x->pass ? "pass" : "FAIL");
        } else {
            printf("%-11s %-58s %-5s %10.3e %10.3e %10.1e  %s\n", x->op, x->shape, dtype, x->nmse, x->max_err, x->bound,
                   x->pass ? "pass" : "FAIL");
        }
        if (!x->pass && x->note[0]) printf("            ^ %s\n", x->note);
    }
}

/* --json: every row, with the dtype each ran in: rows [0, bf16_end) are the bf16 kernel pass,
 * [bf16_end, f32_end) the f32 pass, the model row names its own. */
static json_t *rows_json(const rlx__check_report *r, int bf16_end, int f32_end) {
    json_t *rows = json_array();
    for (int i = 0; i < r->n; i++) {
        const rlx__check_row *x = &r->rows[i];
        json_t *o = json_object();
        json_object_set_new(o, "op", json_string(x->op));
        json_object_set_new(o, "shape", json_string(x->shape));
        json_object_set_new(o, "dtype", json_string(i < bf16_end ? "bf16" : i < f32_end ? "f32" : x->dtype));
        json_object_set_new(o, "pass", json_boolean(x->pass));
        json_object_set_new(o, "nmse", cli_json_real(x->nmse));
        if (!strcmp(x->op, "model")) {
            /* whole model: max|Δ|/max|ref|, min per-position cosine, argmax agreement (fraction) */
            json_object_set_new(o, "rel_err", cli_json_real(x->max_err));
            json_object_set_new(o, "min_cosine", cli_json_real(x->extra));
            json_object_set_new(o, "argmax_agreement", cli_json_real(x->extra2));
        } else {
            json_object_set_new(o, "max_err", cli_json_real(x->max_err));
            json_object_set_new(o, "bound", cli_json_real(x->bound));
        }
        if (!x->pass && x->note[0]) json_object_set_new(o, "note", json_string(x->note));
        json_array_append_new(rows, o);
    }
    return rows;
}

static int cmd_check(int argc, char **argv) {
    const char *model_dir = NULL, *profile_path = NULL;
    rlx_device_kind dev = RLX_DEVICE_AUTO;
    rlx_fusion_policy fusion = RLX_FUSION_FUSED;
    int fusion_set = 0, json = 0;
    int64_t tp = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = NULL;
        if (!strcmp(a, "--json")) {
            json = 1;
            continue;
        }
        if ((!strcmp(a, "--model") || !strcmp(a, "--device") || !strcmp(a, "--fusion") || !strcmp(a, "--profile") ||
             !strcmp(a, "--tp")) &&
            i + 1 < argc)
            v = argv[++i];
        else if (!strncmp(a, "--tp=", 5)) v = a + 5, a = "--tp";
        else if (!strncmp(a, "--model=", 8)) v = a + 8, a = "--model";
        else if (!strncmp(a, "--profile=", 10)) v = a + 10, a = "--profile";
        else if (!strncmp(a, "--device=", 9)) v = a + 9, a = "--device";
        else if (!strncmp(a, "--fusion=", 9)) v = a + 9, a = "--fusion";
        else return cli_error(CLI_USAGE, "check: unknown option or missing value '%s' (rlx check --help lists them)", a);
        if (!strcmp(a, "--model")) model_dir = v;
        else if (!strcmp(a, "--profile")) profile_path = v;
        else if (!strcmp(a, "--device")) {
            if (cli_parse_device(v, &dev)) return CLI_USAGE;
            if (dev == RLX_DEVICE_CPU) return cli_error(CLI_USAGE, "check: --device must be a device (cuda or simt): the CPU is the reference");
        } else if (!strcmp(a, "--fusion")) {
            if (cli_parse_fusion(v, &fusion)) return CLI_USAGE;
            fusion_set = 1;
        } else if (!strcmp(a, "--tp")) {
            if (cli_parse_tp(v, &tp)) return CLI_USAGE;
            if (tp > 1 && cli_tp_from_env(tp))
                return cli_error(CLI_USAGE, "check: --tp runs every rank in this process; unset RLX_WORLD_SIZE/WORLD_SIZE");
        }
    }
    rlx_profile profile;
    if (profile_path) {
        rlx_status ps = rlx_profile_load(profile_path, &profile);
        if (ps) return cli_error(ps == RLX_ERR_OUT_OF_MEMORY ? CLI_RUNTIME : CLI_USAGE, "--profile: %s", rlx_last_error());
        if (fusion_set) profile.fusion_policy = fusion;
    }
    cli_llama l;
    memset(&l, 0, sizeof l);
    int have_model = 0;
    int rc = CLI_OK;
    if (dev == RLX_DEVICE_AUTO) {
        /* The GPU when one opens, else the simt test device, and the user is told why: a broken
         * CUDA install must not "pass" on the CPU emulator unnoticed. --device cuda never falls
         * back (it fails below). */
        dev = RLX_DEVICE_CUDA;
        const rlx__device_ops *cops = rlx__device_ops_for(RLX_DEVICE_CUDA);
        rlx__device *cd = NULL;
        if (!cops) {
            dev = RLX_DEVICE_SIMT;
            fprintf(stderr, "rlx check: this build has no CUDA backend: checking the simt device (CUDA kernels emulated on the CPU)\n");
        } else if (cops->open(0, &cd)) {
            dev = RLX_DEVICE_SIMT;
            fprintf(stderr, "rlx check: CUDA did not open (%s): falling back to the simt device (CUDA kernels emulated on the CPU); "
                            "--device cuda fails instead\n", rlx_last_error());
        } else {
            cops->close(cd);
        }
        rlx_clear_error();
    }
    const rlx__device_ops *ops = rlx__device_ops_for(dev);
    rlx__device *d = NULL;
    rlx_status s = RLX_OK;
    if (!ops) {
        rc = cli_error(CLI_RUNTIME, "check: device '%s' is not available in this build", rlx_device_kind_name(dev));
        goto out_model;
    }
    if ((s = ops->open(0, &d))) {
        rc = cli_status_error(s, "check");
        goto out_model;
    }
    char desc[300];
    snprintf(desc, sizeof desc, "%s", ops->describe(d));
    ops->close(d);
    /* The model before the kernel checks: a wrong --model fails in a second, not after minutes. */
    if (model_dir) {
        if ((rc = cli_llama_open(model_dir, &l))) goto out_model;
        have_model = 1;
    }
    json_t *doc = NULL;
    if (json) {
        doc = json_object();
        json_object_set_new(doc, "command", json_string("check"));
        json_object_set_new(doc, "rlx_version", json_string(rlx_version_string()));
        json_object_set_new(doc, "device", json_string(rlx_device_kind_name(dev)));
        json_object_set_new(doc, "device_name", json_string(desc));
        json_object_set_new(doc, "model", json_string(model_dir ? model_dir : "built-in tiny llama"));
    } else {
        printf("rlx check: device %s (%s)\n", rlx_device_kind_name(dev), desc);
    }

    rlx__check_report r = {0};
    if (!json) printf("%-11s %-58s %-5s %10s %10s %10s  %s\n", "op", "shape", "dtype", "NMSE", "max err", "bound", "result");
    int pass_end[2] = {0, 0};
    const rlx_kdtype dts[2] = {RLX_K_BF16, RLX_K_F32};
    for (int i = 0; i < 2 && rc == CLI_OK; i++) {
        int from = r.n;
        s = rlx__check_kernels(dev, dts[i], 1234 + (uint64_t)i, &r);
        pass_end[i] = r.n;
        if (!json) print_rows(&r, from, dts[i] == RLX_K_F32 ? "f32" : "bf16");
        if (s) rc = cli_status_error(s, "check");
    }
    if (rc == CLI_OK) {
        rlx_llama_config cfg;
        rlx_weights *w = NULL;
        rlx_flow *flow = NULL;
        char label[160];
        if (have_model) {
            w = l.weights;
            cfg = l.cfg;
            snprintf(label, sizeof label, "%s", model_dir);
        } else {
            s = rlx_llama_builtin_config("tiny", &cfg);
            if (!s) s = rlx_llama_random_weights(&cfg, 42, RLX_DTYPE_BF16, &w);
            if (s) {
                rc = cli_status_error(s, "check");
                goto out;
            }
            snprintf(label, sizeof label, "built-in tiny llama");
        }
        int64_t lens[3] = {33, 1, 17};
        for (int q = 0; q < 3; q++)
            if (lens[q] > cfg.max_position_embeddings) lens[q] = cfg.max_position_embeddings;
        rlx_llama_recipe_params rp = rlx_llama_recipe_default_params();
        rp.batch = 3;
        rp.seq = lens[0];
        rp.last_token_logits = 0;
        s = rlx_llama_flow(&cfg, &rp, &flow);
        rlx_build_params bp = rlx_build_default_params();
        bp.device = dev;
        bp.fusion = fusion;
        if (profile_path) bp.profile = &profile; /* its fusion policy, --fusion applied over it */
        int from = r.n;
        if (!s) s = rlx__check_model(flow, w, &bp, lens, 3, 99, label, &r);
        /* --tp N: the same model as N ranks (one thread each) against the unsharded reference */
        if (!s && tp > 1) s = rlx__check_model_tp(flow, w, &bp, (int)tp, lens, 3, 99, label, &r);
        if (!json) print_rows(&r, from, "bf16");
        if (s) rc = cli_status_error(s, "check: whole model");
        rlx_flow_destroy(flow);
        if (!have_model) rlx_weights_destroy(w);
    }
out:
    if (rc == CLI_OK) {
        if (json) {
            json_object_set_new(doc, "checks", rows_json(&r, pass_end[0], pass_end[1]));
            json_object_set_new(doc, "n_checks", json_integer(r.n));
            json_object_set_new(doc, "failed", json_integer(r.failed));
            json_object_set_new(doc, "pass", json_boolean(r.failed == 0));
            rc = cli_json_print(doc);
            doc = NULL;
        } else {
            printf("%d checks, %d failed\n", r.n, r.failed);
        }
        if (rc == CLI_OK && r.failed) rc = CLI_RUNTIME;
    }
    json_decref(doc);
    rlx__check_report_free(&r);
out_model:
    if (have_model) cli_llama_close(&l);
    return rc;
}

const cli_command cli_cmd_check = {
    .name = "check",
    .run = cmd_check,
    .summary = "every kernel and a whole model on the device against the CPU reference",
    .usage =
    "usage: rlx check [--model DIR] [options]\n"
    "  --model DIR            also check this model end to end (default: kernels and a built-in model)\n"
    "  --device cuda|simt     device to check (default: cuda when it opens, else simt, saying why;\n"
    "                         --device cuda never falls back)\n"
    "  --fusion fused|none    fusion policy (over the profile's)\n"
    "  --profile F.rlx.toml   compile profile\n"
    "  --tp N                 also check the model as N tensor-parallel ranks in this process (N GPUs over\n"
    "                         NCCL on cuda, N in-process ranks on simt) against the unsharded reference\n"

    "  --json                 print one JSON document instead of the table: device, device_name, model,\n"
    "                         checks[] {op, shape, dtype, pass, nmse, max_err, bound | rel_err, min_cosine,\n"
    "                         argmax_agreement, note}, n_checks, failed, pass (exit 1 still when a check fails)\n",
};
