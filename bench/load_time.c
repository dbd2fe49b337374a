/* load_time: the model load that `rlx bench --load` times (rlx_weights_open + config parse +
 * rlx_llama_flow + rlx_model_build, destroyed after each repeat), through the public API only, so
 * the same program builds against any rlx commit and measures a loader from before `bench --load`
 * existed (bench/RESULTS.md, "Model load before and after"). A measurement, not a test.
 *
 *   cc -O2 -DLOAD_TIME_SIMT -I SRC/include -I SRC/tests/simt_device bench/load_time.c BUILD/librlx.a \
 *      BUILD/librlx_simt_device.a BUILD/librlx_simt.a -ljansson -lpcre2-8 -lutf8proc -lboost_context \
 *      -lstdc++ -lm -lpthread -ldl [-L/usr/local/cuda/lib64 -lcudart -lcublasLt] -o load_time
 *   ./load_time DIR cpu|simt THREADS REPEAT      (DIR: a bf16 checkpoint, e.g. rlx bench --load's)
 * The simt device holds bf16 weights in host memory, as the cuda device does in device memory:
 * its load is the bf16 -> (gamma folded, packed) bf16 path a GPU load takes, minus the upload.
 */
#include "rlx/flow.h"
#include "rlx/weights.h"
#ifdef LOAD_TIME_SIMT
#include "rlx_simt_device.h"
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double cpu_s(void) {
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    return (double)r.ru_utime.tv_sec + 1e-6 * (double)r.ru_utime.tv_usec + (double)r.ru_stime.tv_sec +
           1e-6 * (double)r.ru_stime.tv_usec;
}

static int cmp(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: load_time DIR cpu|simt THREADS REPEAT\n");
        return 2;
    }
    const char *dir = argv[1];
    const rlx_device_kind dev = !strcmp(argv[2], "simt") ? RLX_DEVICE_SIMT : RLX_DEVICE_CPU;
    const int threads = atoi(argv[3]), repeat = atoi(argv[4]) < 1 ? 1 : atoi(argv[4]) > 32 ? 32 : atoi(argv[4]);
    double wall[32], cpu[32];
#ifdef LOAD_TIME_SIMT
    rlx_simt_device_install();
#endif
    for (int r = 0; r < repeat; r++) {
        rlx_weights *w = NULL;
        rlx_flow *flow = NULL;
        rlx_model *m = NULL;
        rlx_build_params p = rlx_build_default_params();
        p.device = dev;
        p.threads = threads;
        p.fusion = RLX_FUSION_FUSED;
        const double c0 = cpu_s(), t0 = now_s();
        rlx_status s = rlx_weights_open(dir, &w);
        rlx_llama_config cfg;
        if (!s) s = rlx_llama_config_parse(rlx_weights_config_json(w), dir, &cfg);
        rlx_llama_recipe_params rp = rlx_llama_recipe_default_params();
        rp.batch = 1;
        rp.seq = 1;
        rp.last_token_logits = 1;
        if (!s) s = rlx_llama_flow(&cfg, &rp, &flow);
        if (!s) s = rlx_model_build(flow, w, &p, &m);
        wall[r] = now_s() - t0;
        cpu[r] = cpu_s() - c0;
        rlx_model_destroy(m);
        rlx_flow_destroy(flow);
        rlx_weights_destroy(w);
        if (s) {
            fprintf(stderr, "load_time: %s: %s\n", dir, rlx_last_error());
            return 1;
        }
        fprintf(stderr, "load %d: %.3f s wall, %.2f s cpu\n", r + 1, wall[r], cpu[r]);
    }
    qsort(wall, (size_t)repeat, sizeof wall[0], cmp);
    qsort(cpu, (size_t)repeat, sizeof cpu[0], cmp);
    printf("%s %s threads=%d repeat=%d: median %.3f s, min %.3f s, cpu median %.2f s\n", dir, argv[2], threads, repeat,
           wall[repeat / 2], wall[0], cpu[repeat / 2]);
    return 0;
}
