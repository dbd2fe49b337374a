/* The load progress line: bytes, rate and ETA of a model build's weight preparation, drawn on
 * stderr when it is a terminal and the load has taken more than a second (RLX_PROGRESS_DELAY_MS
 * changes the delay; tests set 0). Rewritten in place at most ten times a second and erased when
 * the load ends, so a terminal shows it only while it matters and logs never see it. */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static double delay_s(void) {
    const char *v = getenv("RLX_PROGRESS_DELAY_MS");
    if (v && *v) {
        char *end = NULL;
        long ms = strtol(v, &end, 10);
        if (end && !*end && ms >= 0) return (double)ms / 1e3;
    }
    return 1.0;
}

static void human(char *buf, size_t n, double bytes) {
    if (bytes >= 1e9) snprintf(buf, n, "%.2f GB", bytes / 1e9);
    else if (bytes >= 1e6) snprintf(buf, n, "%.1f MB", bytes / 1e6);
    else snprintf(buf, n, "%.0f kB", bytes / 1e3);
}

static void on_progress(void *user, uint64_t done, uint64_t total) {
    cli_progress *p = user;
    const double now = cli_now();
    if (done == 0 || p->t0 == 0) {
        p->t0 = now;
        p->last = 0;
        if (done == 0) return;
    }
    const double el = now - p->t0;
    if (done >= total) {
        if (p->shown) {
            fputs("\r\033[K", stderr);
            fflush(stderr);
        }
        p->shown = 0;
        p->t0 = 0;
        return;
    }
    if (el < p->delay || (p->shown && now - p->last < 0.1)) return;
    p->last = now;
    p->shown = 1;
    char d[32], t[32], r[32];
    human(d, sizeof d, (double)done);
    human(t, sizeof t, (double)total);
    const double rate = el > 0 ? (double)done / el : 0;
    human(r, sizeof r, rate);
    const double eta = rate > 0 ? (double)(total - done) / rate : 0;
    fprintf(stderr, "\r\033[K%s: %s of %s (%.0f%%), %s/s, ETA %.1f s", p->what, d, t, 100.0 * (double)done / (double)total, r,
            eta);
    fflush(stderr);
}

void cli_progress_attach(cli_progress *p, rlx_build_params *bp, const char *what) {
    memset(p, 0, sizeof *p);
    p->what = what ? what : "loading weights";
    p->delay = delay_s();
    if (!isatty(2)) return; /* quiet in logs and pipes */
    bp->progress = on_progress;
    bp->progress_user = p;
}
