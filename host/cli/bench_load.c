/* rlx bench --load: seconds and GB/s of loading a bf16 checkpoint from disk (rlx_weights_open +
 * rlx_model_build), per built-in shape or for a --model directory; the measuring is
 * host/tools/bench_load.c, this file prints the table and the JSON (docs/bench.md). */
#include "cli/cli.h"
#include "tools/bench.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double gb(double bytes) { return bytes / 1e9; }

static json_t *row_json(const cli_bench_load_args *a, const char *shape, const char *dir, double written_s,
                        const rlx__bench_load *r) {
    json_t *secs = json_array(), *cpu = json_array();
    for (int i = 0; i < r->repeat; i++) {
        json_array_append_new(secs, json_real(r->wall_s[i]));
        json_array_append_new(cpu, json_real(r->cpu_s[i]));
    }
    const double median = r->wall.median;
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:i, s:s, s:I, s:I, s:I, s:i, s:o, s:f, s:f, s:f, s:o, s:f, s:f, s:f, s:f, s:s, s:s, s:s}",
                     "mode", "load", "shape", shape, "checkpoint_dir", dir, "device", rlx_device_kind_name(a->device),
                     "device_name", a->device_name, "threads", a->threads, "cpu", a->cpu_model,
                     "checkpoint_bytes", (json_int_t)r->checkpoint_bytes, "read_bytes", (json_int_t)r->read_bytes,
                     "device_bytes", (json_int_t)r->device_bytes, "repeat", r->repeat, "seconds", secs,
                     "median_s", median, "min_s", r->wall.min, "gbps", median > 0 ? gb((double)r->read_bytes) / median : 0.0,
                     "cpu_seconds", cpu, "cpu_median_s", r->cpu.median, "read_gbps", r->read_gbps, "h2d_gbps", r->h2d_gbps,
                     "checkpoint_written_s", written_s, "page_cache", "as found (not dropped)", "commit", a->commit,
                     "date", a->date);
}

int cli_bench_load(const cli_bench_load_args *a) {
    char shapes[512];
    snprintf(shapes, sizeof shapes, "%s", a->shapes ? a->shapes : "");
    if (!a->model_dir) { /* every name first: a typo fails before minutes of loading */
        char check[512], *sv = NULL;
        snprintf(check, sizeof check, "%s", shapes);
        for (char *t = strtok_r(check, ",", &sv); t; t = strtok_r(NULL, ",", &sv)) {
            rlx_llama_config cfg;
            if (rlx_llama_builtin_config(t, &cfg)) {
                rlx_clear_error();
                return cli_error(CLI_USAGE, "--shape: '%s' is not one of tiny, llama-3.2-1b, llama-3.2-3b, llama-3.1-8b", t);
            }
        }
    }
    json_t *rows = json_array();
    int rc = CLI_OK, n = 0;
    printf("rlx bench --load: device %s (%s), %d threads, %d load%s each; checkpoints bf16, page cache as found\n",
           rlx_device_kind_name(a->device), a->device_name, a->threads, a->repeat, a->repeat > 1 ? "s" : "");
    printf("%-16s %10s %10s %10s %9s %9s %8s %8s %9s %8s\n", "shape", "ckpt GB", "read GB", "device GB", "median s",
           "min s", "GB/s", "cpu s", "read GB/s", "h2d GB/s");
    char *save = NULL;
    for (char *shape = a->model_dir ? (char *)a->model_dir : strtok_r(shapes, ",", &save); shape && !rc;
         shape = a->model_dir ? NULL : strtok_r(NULL, ",", &save)) {
        char dir[1024];
        double written = 0;
        if (a->model_dir) {
            snprintf(dir, sizeof dir, "%s", a->model_dir);
        } else {
            rlx_llama_config cfg;
            if (rlx_llama_builtin_config(shape, &cfg)) {
                rc = cli_error(CLI_USAGE, "--shape: '%s' is not one of tiny, llama-3.2-1b, llama-3.2-3b, llama-3.1-8b", shape);
                break;
            }
            const double host_gib = (double)rlx__bench_llama_params(&cfg) * (a->device == RLX_DEVICE_CPU ? 4 : 2) / (1u << 30);
            if (a->device != RLX_DEVICE_CUDA && !a->force && host_gib > a->host_limit_gib) {
                rc = cli_error(CLI_USAGE, "bench --load: %s needs about %.1f GiB of host memory on the %s device (limit %.0f GiB without --force)",
                               shape, host_gib, rlx_device_kind_name(a->device), a->host_limit_gib);
                break;
            }
            snprintf(dir, sizeof dir, "%s/rlx-bench-%s-seed%llu", a->checkpoint_parent, shape, (unsigned long long)a->seed);
            if (a->progress) fprintf(stderr, "rlx bench --load: %s: checkpoint %s\n", shape, dir);
            rlx_status s = rlx__bench_load_checkpoint(&cfg, a->seed, dir, &written);
            if (s) {
                rc = cli_status_error(s, "bench --load: writing the checkpoint");
                break;
            }
        }
        rlx_build_params bp = rlx_build_default_params();
        bp.device = a->device;
        bp.threads = a->threads;
        bp.fusion = RLX_FUSION_FUSED;
        cli_progress prog;
        if (a->progress) cli_progress_attach(&prog, &bp, "loading weights");
        rlx__bench_load r;
        rlx_status s = rlx__bench_load_run(dir, &bp, a->repeat, &r);
        if (s) {
            rc = cli_status_error(s, "bench --load");
            break;
        }
        const double gbps = r.wall.median > 0 ? gb((double)r.read_bytes) / r.wall.median : 0;
        char h2d[32] = "-";
        if (r.h2d_gbps > 0) snprintf(h2d, sizeof h2d, "%.2f", r.h2d_gbps);
        printf("%-16s %10.2f %10.2f %10.2f %9.3f %9.3f %8.2f %8.2f %9.2f %8s\n", a->model_dir ? "(--model)" : shape,
               gb((double)r.checkpoint_bytes), gb((double)r.read_bytes), gb((double)r.device_bytes), r.wall.median, r.wall.min,
               gbps, r.cpu.median, r.read_gbps, h2d);
        if (written > 0) printf("  (checkpoint written first, %.1f s: its pages are in the page cache)\n", written);
        json_array_append_new(rows, row_json(a, a->model_dir ? a->model_dir : shape, dir, written, &r));
        n++;
    }
    if (!rc && n) {
        printf("GB/s: checkpoint bytes the build read / median seconds (rlx_weights_open + rlx_model_build).\n"
               "read GB/s: a parallel read() of the same files in this run (disk, or the page cache); h2d: pinned copies to the GPU.\n"
               "cpu s: user + system CPU seconds of the load, all threads.\n");
        if (a->device != RLX_DEVICE_CUDA) printf("(%s: host memory as device memory; this says nothing about a GPU host)\n",
                                                 rlx_device_kind_name(a->device));
    }
    if (!rc && a->json) {
        if (json_dump_file(rows, a->json, JSON_INDENT(2) | JSON_PRESERVE_ORDER))
            rc = cli_error(CLI_RUNTIME, "--json: cannot write %s", a->json);
        else
            printf("\njson: %s\n", a->json);
    }
    json_decref(rows);
    return rc;
}
