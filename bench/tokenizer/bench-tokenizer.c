/* Tokenizer throughput: tokens/s over a corpus, one text at a time on one thread and as one
 * batch on every core (rlx_tokenizer_encode / rlx_tokenizer_encode_batch). A benchmark, not a
 * test: it measures and prints, never asserts. Its counterpart for Hugging Face `tokenizers` is
 * bench_tokenizers.py beside it; README.md has the method and the numbers.
 *
 *   bench-tokenizer TOKENIZER CORPUS.json [repeat=5] [threads=0]
 *
 * TOKENIZER: a model directory or tokenizer.json; CORPUS.json: a JSON array of strings
 * (tests/fixtures/tokenizer/corpus.json). Each figure is the median of `repeat` passes over
 * the whole corpus, after one untimed pass. */
#include "rlx/tokenizer.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: bench-tokenizer TOKENIZER CORPUS.json [repeat=5] [threads=0]\n");
        return 2;
    }
    int repeat = argc > 3 ? atoi(argv[3]) : 5, threads = argc > 4 ? atoi(argv[4]) : 0;
    if (repeat < 1) repeat = 1;
    rlx_tokenizer *t;
    if (rlx_tokenizer_open(argv[1], &t)) {
        fprintf(stderr, "bench-tokenizer: %s\n", rlx_last_error());
        return 1;
    }
    json_error_t err;
    json_t *root = json_load_file(argv[2], JSON_ALLOW_NUL, &err);
    if (!json_is_array(root)) {
        fprintf(stderr, "bench-tokenizer: %s: not a JSON array of strings (%s)\n", argv[2], err.text);
        return 1;
    }
    size_t n = json_array_size(root), bytes = 0;
    const char **texts = malloc(n * sizeof *texts);
    size_t *lens = malloc(n * sizeof *lens);
    int64_t *seq = malloc(n * sizeof *seq);
    for (size_t i = 0; i < n; i++) {
        texts[i] = json_string_value(json_array_get(root, i));
        lens[i] = json_string_length(json_array_get(root, i));
        bytes += lens[i];
    }
    rlx_tokenizer_encode_params p = rlx_tokenizer_encode_default_params();
    double *times = malloc((size_t)(repeat + 1) * sizeof *times);
    int64_t tokens = 0;
    printf("tokenizer %s, corpus %s: %zu texts, %zu bytes\n", argv[1], argv[2], n, bytes);
    for (int mode = 0; mode < 2; mode++) {
        for (int r = 0; r <= repeat; r++) {
            double t0 = now();
            tokens = 0;
            if (mode == 0) { /* one text at a time, the calling thread */
                for (size_t i = 0; i < n; i++) {
                    int32_t *ids;
                    int64_t k;
                    if (rlx_tokenizer_encode(t, texts[i], lens[i], &p, &ids, &k)) {
                        fprintf(stderr, "bench-tokenizer: text %zu: %s\n", i, rlx_last_error());
                        return 1;
                    }
                    tokens += k;
                    rlx_free(ids);
                }
            } else { /* the corpus as one batch */
                int32_t *ids;
                p.threads = threads;
                if (rlx_tokenizer_encode_batch(t, texts, lens, (int64_t)n, &p, &ids, seq)) {
                    fprintf(stderr, "bench-tokenizer: %s\n", rlx_last_error());
                    return 1;
                }
                for (size_t i = 0; i < n; i++)
                    tokens += seq[i];
                rlx_free(ids);
            }
            times[r] = now() - t0;
        }
        qsort(times + 1, (size_t)repeat, sizeof *times, cmp_double); /* times[0]: the warm-up pass */
        double med = times[1 + repeat / 2];
        printf("%-28s %10lld tokens  median %8.2f ms  %12.0f tokens/s  %7.2f MB/s\n",
               mode == 0      ? "rlx single text, 1 thread"
               : threads == 1 ? "rlx batch, 1 thread"
                              : "rlx batch, all threads",
               (long long)tokens, med * 1e3, (double)tokens / med, (double)bytes / med / 1e6);
    }
    free(times);
    free(texts);
    free(lens);
    free(seq);
    json_decref(root);
    rlx_tokenizer_destroy(t);
    return 0;
}
