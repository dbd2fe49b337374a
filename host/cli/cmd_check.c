/* rlx check: validates an install — every kernel on random awkward shapes and a whole model on the
 * device, against the CPU reference. Kernels: the bounds of NUMERICS.md; the whole model (a LLaMA,
 * BERT or NomicBERT directory, or a built-in tiny LLaMA): the error budget of docs/numerics.md,
 * printed with the row. Exit 1 on any failure. */
#include "tools/check.h"
#include "cli/cli.h"
#include "rlx/encoder.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void print_rows(const rlx__check_report *r, int from, const char *dtype) {
    for (int i = from; i < r->n; i++) {
        const rlx__check_row *x = &r->rows[i];
        if (!strcmp(x->op, "model")) {
            printf("%-11s %s\n", x->op, x->shape);
            printf("            %-17s min cosine %.6f (1-cos %.3g <= %.3g), max|d|/max|ref| %.3g <= %.3g", x->dtype, x->min_cos,
                   1 - x->min_cos, 1 - x->cos_bound, x->rel, x->rel_bound);
            if (x->argmax)
                printf(", argmax %lld/%lld at decisive positions (of %lld)", (long long)x->agree, (long long)x->decisive, (long long)x->rows);
            printf("  %s\n", x->pass ? "pass" : "FAIL");
            if (x->naive_cos < 1 || x->naive_rel > 0)
                printf("            bound: 2 x the same model run naively in %s on the CPU (its worst 1-cos %.3g, max|d|/max|ref| %.3g), "
                       "%lld layers\n",
                       x->dtype, 1 - x->naive_cos, x->naive_rel, (long long)x->layers);
            else
                printf("            bound: the %s accumulation floor of %lld layers (docs/numerics.md)\n", x->dtype, (long long)x->layers);
        } else {
            printf("%-11s %-58s %-5s %10.3e %10.3e %10.1e  %s\n", x->op, x->shape, dtype, x->nmse, x->max_err, x->bound,
                   x->pass ? "pass" : "FAIL");
        }
        if (!x->pass && x->note[0]) printf("            ^ %s\n", x->note);
    }
}

/* --json: every row, with the dtype each ran in: rows [0, bf16_end) are the bf16 kernel pass,
 * [bf16_end, f32_end) the f32 pass, the model rows name their own. */
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
            /* whole model (docs/numerics.md): max|Δ|/max|ref| and the worst per-position cosine with
             * the bounds applied, the naive emulation's own errors they came from, and the argmax
             * agreement over the decisive positions (fraction; 1 when there are none) */
            json_object_set_new(o, "layers", json_integer(x->layers));
            json_object_set_new(o, "rel_err", cli_json_real(x->rel));
            json_object_set_new(o, "rel_err_bound", cli_json_real(x->rel_bound));
            json_object_set_new(o, "min_cosine", cli_json_real(x->min_cos));
            json_object_set_new(o, "min_cosine_bound", cli_json_real(x->cos_bound));
            json_object_set_new(o, "naive_min_cosine", cli_json_real(x->naive_cos));
            json_object_set_new(o, "naive_rel_err", cli_json_real(x->naive_rel));
            if (x->argmax) {
                json_object_set_new(o, "argmax_agreement", cli_json_real(x->decisive ? (double)x->agree / (double)x->decisive : 1.0));
                json_object_set_new(o, "decisive_positions", json_integer(x->decisive));
                json_object_set_new(o, "positions", json_integer(x->rows));
            }
        } else {
            json_object_set_new(o, "max_err", cli_json_real(x->max_err));
            json_object_set_new(o, "bound", cli_json_real(x->bound));
        }
        if (!x->pass && x->note[0]) json_object_set_new(o, "note", json_string(x->note));
        json_array_append_new(rows, o);
    }
    return rows;
}

/* The whole model to check: DIR's (LLaMA or encoder) or the built-in tiny LLaMA. Opened before
 * the kernel checks run, so a wrong --model fails in a second, not after minutes. */
typedef struct check_target {
    rlx_weights *w;
    rlx_flow *flow;
    char label[1200];
    int64_t lens[3];
    rlx__model_check mc;
} check_target;

static void target_close(check_target *t) {
    rlx_flow_destroy(t->flow);
    rlx_weights_destroy(t->w);
    memset(t, 0, sizeof *t);
}

static int target_open(const char *model_dir, check_target *t) {
    memset(t, 0, sizeof *t);
    rlx_status s = RLX_OK;
    t->lens[0] = 33, t->lens[1] = 1, t->lens[2] = 17;
    t->mc = (rlx__model_check){.lens = t->lens, .n_seqs = 3, .seed = 99, .label = t->label, .argmax = 1};
    if (model_dir && (s = rlx_weights_open(model_dir, &t->w))) return cli_status_error(s, "loading the model");
    if (model_dir && rlx_config_is_encoder(rlx_weights_config_json(t->w))) {
        rlx_encoder_config cfg;
        if ((s = rlx_encoder_config_from_weights(t->w, NULL, &cfg))) {
            target_close(t);
            return cli_status_error(s, "reading the config");
        }
        for (int q = 0; q < 3; q++)
            if (t->lens[q] > cfg.max_position_embeddings) t->lens[q] = cfg.max_position_embeddings;
        rlx_encoder_recipe_params rp = rlx_encoder_recipe_default_params();
        rp.batch = 3;
        rp.seq = t->lens[0];
        rp.pool = RLX_POOL_NONE; /* every position's hidden state */
        s = rlx_encoder_flow(&cfg, &rp, &t->flow);
        t->mc.argmax = 0;
        t->mc.type_vocab = cfg.type_vocab_size;
        snprintf(t->label, sizeof t->label, "%s (%s, hidden states)", model_dir, cfg.arch == RLX_ENCODER_NOMIC_BERT ? "nomic_bert" : "bert");
    } else {
        rlx_llama_config cfg;
        if (model_dir) {
            char src[1100];
            snprintf(src, sizeof src, "%s/config.json", model_dir);
            if (!rlx_weights_config_json(t->w)) {
                target_close(t);
                return cli_error(CLI_RUNTIME, "%s: missing", src);
            }
            if ((s = rlx_llama_config_parse(rlx_weights_config_json(t->w), src, &cfg))) {
                target_close(t);
                return cli_status_error(s, "reading the config");
            }
            snprintf(t->label, sizeof t->label, "%s (llama, all-position logits)", model_dir);
        } else {
            s = rlx_llama_builtin_config("tiny", &cfg);
            if (!s) s = rlx_llama_random_weights(&cfg, 42, RLX_DTYPE_BF16, &t->w);
            snprintf(t->label, sizeof t->label, "built-in tiny llama (all-position logits)");
        }
        for (int q = 0; q < 3 && !s; q++)
            if (t->lens[q] > cfg.max_position_embeddings) t->lens[q] = cfg.max_position_embeddings;
        rlx_llama_recipe_params rp = rlx_llama_recipe_default_params();
        rp.batch = 3;
        rp.seq = t->lens[0];
        rp.last_token_logits = 0;
        if (!s) s = rlx_llama_flow(&cfg, &rp, &t->flow);
    }
    if (s) {
        target_close(t);
        return cli_status_error(s, "check: assembling the model");
    }
    t->mc.flow = t->flow, t->mc.w = t->w;
    return CLI_OK;
}

static int cmd_check(int argc, char **argv) {
    const char *model_dir = NULL, *profile_path = NULL, *v;
    rlx_device_kind dev = RLX_DEVICE_AUTO;
    rlx_fusion_policy fusion = RLX_FUSION_FUSED;
    int fusion_set = 0, json = 0;
    int64_t tp = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--json")) {
            json = 1;
        } else if (cli_is_opt(a, "--tp")) {
            if (!(v = cli_opt_value(argc, argv, &i, "--tp")) || cli_parse_tp(v, &tp)) return CLI_USAGE;
            if (tp > 1 && cli_tp_from_env(tp))
                return cli_error(CLI_USAGE, "check: --tp runs every rank in this process; unset RLX_WORLD_SIZE/WORLD_SIZE");
        } else if (cli_is_opt(a, "--model")) {
            if (!(model_dir = cli_opt_value(argc, argv, &i, "--model"))) return CLI_USAGE;
        } else if (cli_is_opt(a, "--profile")) {
            if (!(profile_path = cli_opt_value(argc, argv, &i, "--profile"))) return CLI_USAGE;
        } else if (cli_is_opt(a, "--device")) {
            if (!(v = cli_opt_value(argc, argv, &i, "--device")) || cli_parse_device(v, &dev)) return CLI_USAGE;
            if (dev == RLX_DEVICE_CPU) return cli_error(CLI_USAGE, "check: --device must be a device (cuda or simt): the CPU is the reference");
        } else if (cli_is_opt(a, "--fusion")) {
            if (!(v = cli_opt_value(argc, argv, &i, "--fusion")) || cli_parse_fusion(v, &fusion)) return CLI_USAGE;
            fusion_set = 1;
        } else {
            return cli_error(CLI_USAGE, "check: unknown option or missing value '%s' (rlx check --help lists them)", cli_echo(a));
        }
    }
    rlx_profile profile;
    if (profile_path) {
        rlx_status ps = rlx_profile_load(profile_path, &profile);
        if (ps) return cli_error(ps == RLX_ERR_OUT_OF_MEMORY ? CLI_RUNTIME : CLI_USAGE, "--profile: %s", rlx_last_error());
        if (fusion_set) profile.fusion_policy = fusion;
    }
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
    if (!ops) return cli_error(CLI_RUNTIME, "check: device '%s' is not available in this build", rlx_device_kind_name(dev));
    rlx__device *d = NULL;
    rlx_status s = ops->open(0, &d);
    if (s) return cli_status_error(s, "check");
    char desc[300];
    snprintf(desc, sizeof desc, "%s", ops->describe(d));
    ops->close(d);
    check_target t;
    int rc = target_open(model_dir, &t);
    if (rc) return rc;
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
        rlx_build_params bp = rlx_build_default_params();
        bp.device = dev;
        bp.fusion = fusion;
        if (profile_path) bp.profile = &profile; /* its fusion policy, --fusion applied over it */
        t.mc.dev = &bp;
        cli_progress prog;
        cli_progress_attach(&prog, &bp, "loading weights");
        int from = r.n;
        s = rlx__check_model_ex(&t.mc, &r);
        /* --tp N: the same model as N ranks (one thread each) against the unsharded reference;
         * ranks build on threads of their own, so no progress line there */
        if (!s && tp > 1) {
            bp.progress = NULL;
            t.mc.tp = (int)tp;
            s = rlx__check_model_ex(&t.mc, &r);
        }
        if (!json) print_rows(&r, from, "");
        if (s) rc = cli_status_error(s, "check: whole model");
    }
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
    target_close(&t);
    return rc;
}

const cli_command cli_cmd_check = {
    .name = "check",
    .run = cmd_check,
    .summary = "every kernel and a whole model on the device against the CPU reference",
    .usage =
    "usage: rlx check [--model DIR] [options]\n"
    "  --model DIR            also check this model end to end: LLaMA (logits) or BERT/NomicBERT (hidden states)\n"
    "                         (default: kernels and a built-in tiny LLaMA)\n"
    "  --device cuda|simt     device to check (default: cuda when it opens, else simt, saying why;\n"
    "                         --device cuda never falls back)\n"
    "  --fusion fused|none    fusion policy (over the profile's)\n"
    "  --profile F.rlx.toml   compile profile\n"
    "  --tp N                 also check the model as N tensor-parallel ranks in this process (N GPUs over\n"
    "                         NCCL on cuda, N in-process ranks on simt) against the unsharded reference\n"
    "  --json                 print one JSON document instead of the table: device, device_name, model,\n"
    "                         checks[] {op, shape, dtype, pass, nmse, max_err, bound | layers, rel_err, rel_err_bound,\n"
    "                         min_cosine, min_cosine_bound, naive_min_cosine, naive_rel_err, argmax_agreement,\n"
    "                         decisive_positions, positions, note}, n_checks, failed, pass (exit 1 still when a check fails)\n",
};
