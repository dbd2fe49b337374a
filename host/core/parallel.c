/* Splitting independent rows of CPU work over threads (the CPU reference, weight conversion), and
 * the progress of a build's weight preparation. */
#include "core/internal.h"

#include <pthread.h>
#include <unistd.h>

/* ---- threads ---------------------------------------------------------------------------------- */

int rlx__cpu_count(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 64 ? 64 : (int)n;
}

typedef struct pf_task {
    void (*fn)(int64_t, int64_t, void *);
    void *ctx;
    int64_t begin, end;
} pf_task;

static void *pf_run(void *arg) {
    pf_task *t = arg;
    t->fn(t->begin, t->end, t->ctx);
    return NULL;
}

void rlx__parallel_for(int64_t n, int threads, void (*fn)(int64_t, int64_t, void *), void *ctx) {
    if (threads <= 0) threads = rlx__cpu_count();
    if (threads > 64) threads = 64;
    if (n < 2 * threads || threads == 1) {
        fn(0, n, ctx);
        return;
    }
    pthread_t tid[64];
    pf_task task[64];
    int joined[64] = {0};
    for (int t = 0; t < threads; t++) task[t] = (pf_task){fn, ctx, n * t / threads, n * (t + 1) / threads};
    /* The calling thread takes the first share; a share whose thread cannot start runs inline. */
    for (int t = 1; t < threads; t++) {
        joined[t] = pthread_create(&tid[t], NULL, pf_run, &task[t]) == 0;
        if (!joined[t]) fn(task[t].begin, task[t].end, ctx);
    }
    fn(task[0].begin, task[0].end, ctx);
    for (int t = 1; t < threads; t++)
        if (joined[t]) pthread_join(tid[t], NULL);
}

/* ---- build progress ---------------------------------------------------------------------------- */

void rlx__load_progress_begin(rlx__load_progress *p, uint64_t total_bytes) {
    if (!p || !p->fn) return;
    p->done = 0;
    p->total = total_bytes;
    p->fn(p->user, 0, total_bytes);
}

void rlx__load_progress_add(rlx__load_progress *p, uint64_t bytes) {
    if (!p || !p->fn) return;
    p->done += bytes;
    if (p->done > p->total) p->done = p->total; /* rounding of per-row shares */
    p->fn(p->user, p->done, p->total);
}
