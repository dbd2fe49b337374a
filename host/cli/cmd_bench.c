/* rlx bench: prefill throughput of Llama-shaped models — tokens/s, TFLOP/s (PERF.md counting), MFU
 * against the datasheet peak and a GEMM measured in the same run, median and spread, the
 * per-kernel breakdown, fused vs unfused speedup, device memory. Outputs: a table on stdout,
 * --json, --csv, --plot. docs/bench.md documents every option and field.
 *
 * Method: warmup, then `repeat` timed prefills; on a device each prefill sits between two timer
 * marks (CUDA events on cuda) on the stream it runs on, on the CPU between two host-clock reads.
 * The per-kernel breakdown comes from separate timed runs on a device (a mark between every
 * kernel costs a little, so it never touches the headline numbers) and from the same runs on the
 * CPU (per-stage host clock). Token ids are random and change every repeat.
 */
#include "tools/bench.h"
#include "tools/bench_tp.h"
#include "tools/bench_decode.h"
#include "runtime/session.h"
#include "cli/cli.h"
#include "runtime/device.h"
#include "plan.h"
#include "model/stages.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_LIST 32
#define MAX_GROUPS 64
/* What the host-run devices may be asked without --force: the CPU reference runs a few GFLOP/s,
 * the simt device (kernels emulated per thread) far less. */
#define CPU_MAX_GFLOP 50.0
#define SIMT_MAX_GFLOP 2.0
#define HOST_MAX_WEIGHT_GIB 8.0
#define DEVICE_BREAKDOWN_RUNS 5

// ---- options ----------------------------------------------------------------------------------

typedef enum { FUSION_FUSED, FUSION_NONE, FUSION_BOTH } fusion_mode;

typedef struct opts {
    const char *shape, *model_dir, *json, *csv, *plot, *save_checkpoint, *profile, *checkpoint_dir;
    int64_t batch[MAX_LIST], seq[MAX_LIST];
    int n_batch, n_seq;
    rlx_device_kind device;
    fusion_mode fusion;
    int fusion_given;
    int64_t repeat, warmup, seed, top, gemm, threads; /* -1: the device's default */
    int breakdown;                                     /* -1: on when one configuration runs */
    double peak;                                       /* 0: from the datasheet table */
    int force, progress, load;
    int decode;                                        /* --decode: the decode table instead */
    int64_t tp[MAX_LIST];                              /* --tp: the scaling table's tp values */
    int n_tp;
    double link_gbps;                                  /* --link-gbps: the modelled all-reduce's link */
} opts;

/* "512,2048,8192" */
static int parse_list(const char *opt, const char *text, int64_t max, int64_t *out, int *n) {
    *n = 0;
    const char *p = text;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char item[32];
        if (len == 0 || len >= sizeof item)
            return cli_error(CLI_USAGE, "%s: '%s' is not a comma-separated list of integers in [1, %lld]", opt, text, (long long)max);
        if (*n == MAX_LIST) return cli_error(CLI_USAGE, "%s: at most %d values", opt, MAX_LIST);
        memcpy(item, p, len);
        item[len] = '\0';
        if (cli_parse_count(opt, item, 1, max, &out[*n])) return CLI_USAGE;
        ++*n;
        if (!comma) break;
        p = comma + 1;
    }
    return CLI_OK;
}

static int parse_opts(int argc, char **argv, opts *o) {
    memset(o, 0, sizeof *o);
    o->device = RLX_DEVICE_AUTO;
    o->repeat = o->warmup = o->gemm = -1;
    o->threads = 0;
    o->seed = 1;
    o->top = 10;
    o->breakdown = -1;
    o->progress = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
#define VALUE(name)                                                 \
    do {                                                            \
        if (!(v = cli_opt_value(argc, argv, &i, name))) return CLI_USAGE; \
    } while (0)
        if (cli_is_opt(a, "--shape")) {
            VALUE("--shape");
            o->shape = v;
        } else if (cli_is_opt(a, "--model")) {
            VALUE("--model");
            o->model_dir = v;
        } else if (cli_is_opt(a, "--profile")) {
            VALUE("--profile");
            o->profile = v;
        } else if (cli_is_opt(a, "--batch")) {
            VALUE("--batch");
            if (parse_list("--batch", v, 4096, o->batch, &o->n_batch)) return CLI_USAGE;
        } else if (cli_is_opt(a, "--seq")) {
            VALUE("--seq");
            if (parse_list("--seq", v, 1 << 20, o->seq, &o->n_seq)) return CLI_USAGE;
        } else if (cli_is_opt(a, "--device")) {
            VALUE("--device");
            if (cli_parse_device(v, &o->device)) return CLI_USAGE;
        } else if (cli_is_opt(a, "--fusion")) {
            VALUE("--fusion");
            o->fusion_given = 1;
            if (!strcmp(v, "fused")) o->fusion = FUSION_FUSED;
            else if (!strcmp(v, "none")) o->fusion = FUSION_NONE;
            else if (!strcmp(v, "both")) o->fusion = FUSION_BOTH;
            else return cli_error(CLI_USAGE, "--fusion: '%s' is not fused, none or both", v);
        } else if (cli_is_opt(a, "--repeat")) {
            VALUE("--repeat");
            if (cli_parse_count("--repeat", v, 1, 100000, &o->repeat)) return CLI_USAGE;
        } else if (cli_is_opt(a, "--warmup")) {
            VALUE("--warmup");
            if (cli_parse_count("--warmup", v, 0, 100000, &o->warmup)) return CLI_USAGE;
        } else if (cli_is_opt(a, "--seed")) {
            VALUE("--seed");
            if (cli_parse_count("--seed", v, 0, INT64_MAX, &o->seed)) return CLI_USAGE;
        } else if (cli_is_opt(a, "--top")) {
            VALUE("--top");
            if (cli_parse_count("--top", v, 0, 100000, &o->top)) return CLI_USAGE;
        } else if (cli_is_opt(a, "--gemm")) {
            VALUE("--gemm");
            if (cli_parse_count("--gemm", v, 0, 65536, &o->gemm)) return CLI_USAGE;
        } else if (cli_is_opt(a, "--threads")) {
            VALUE("--threads");
            if (cli_parse_count("--threads", v, 0, 4096, &o->threads)) return CLI_USAGE;
        } else if (cli_is_opt(a, "--peak-tflops")) {
            VALUE("--peak-tflops");
            char *end;
            o->peak = strtod(v, &end);
            if (!*v || *end || !(o->peak > 0) || !isfinite(o->peak))
                return cli_error(CLI_USAGE, "--peak-tflops: '%s' is not a positive number", v);
        } else if (cli_is_opt(a, "--tp")) {
            VALUE("--tp");
            if (parse_list("--tp", v, 1024, o->tp, &o->n_tp)) return CLI_USAGE;
        } else if (cli_is_opt(a, "--link-gbps")) {
            VALUE("--link-gbps");
            char *end;
            o->link_gbps = strtod(v, &end);
            if (!*v || *end || !(o->link_gbps > 0) || !isfinite(o->link_gbps))
                return cli_error(CLI_USAGE, "--link-gbps: '%s' is not a positive number", v);
        } else if (cli_is_opt(a, "--json")) {
            VALUE("--json");
            o->json = v;
        } else if (cli_is_opt(a, "--csv")) {
            VALUE("--csv");
            o->csv = v;
        } else if (cli_is_opt(a, "--plot")) {
            VALUE("--plot");
            o->plot = v;
        } else if (cli_is_opt(a, "--save-checkpoint")) {
            VALUE("--save-checkpoint");
            o->save_checkpoint = v;
        } else if (!strcmp(a, "--breakdown")) {
            o->breakdown = 1;
        } else if (!strcmp(a, "--no-breakdown")) {
            o->breakdown = 0;
        } else if (!strcmp(a, "--load")) {
            o->load = 1;
        } else if (cli_is_opt(a, "--checkpoint-dir")) {
            VALUE("--checkpoint-dir");
            o->checkpoint_dir = v;
        } else if (!strcmp(a, "--decode")) {
            o->decode = 1;
        } else if (!strcmp(a, "--force")) {
            o->force = 1;
        } else if (!strcmp(a, "--no-progress")) {
            o->progress = 0;
        } else {
            return cli_error(CLI_USAGE, "bench: unknown option '%s' (rlx bench --help lists them)", cli_echo(a));
        }
#undef VALUE
    }
    if (o->shape && o->model_dir) return cli_error(CLI_USAGE, "bench: --shape and --model are exclusive");
    if (o->save_checkpoint && o->model_dir)
        return cli_error(CLI_USAGE, "bench: --save-checkpoint writes a built-in --shape's random weights, not a --model");
    if ((o->json && !*o->json) || (o->csv && !*o->csv) || (o->plot && !*o->plot) ||
        (o->save_checkpoint && !*o->save_checkpoint) || (o->model_dir && !*o->model_dir))
        return cli_error(CLI_USAGE, "bench: a path option is empty");
    if (o->load && (o->n_batch || o->n_seq || o->csv || o->plot || o->save_checkpoint || o->profile || o->fusion_given))
        return cli_error(CLI_USAGE, "bench --load times the weight load only: --batch, --seq, --fusion, --profile, --csv, --plot and "
                                    "--save-checkpoint do not apply");
    if (o->checkpoint_dir && (!o->load || o->model_dir || !*o->checkpoint_dir))
        return cli_error(CLI_USAGE, "bench: --checkpoint-dir DIR goes with --load and a --shape");
    if (o->shape && strchr(o->shape, ',') && !o->load)
        return cli_error(CLI_USAGE, "--shape: a list of shapes goes with --load only");
    if (o->plot && strpbrk(o->plot, "'\n"))
        return cli_error(CLI_USAGE, "--plot: the file name may not contain a single quote or a newline");
    if (!o->shape && !o->model_dir) o->shape = "tiny";
    if (o->decode && (o->load || o->n_tp || o->csv || o->plot || o->save_checkpoint || o->fusion == FUSION_BOTH))
        return cli_error(CLI_USAGE, "bench --decode: --load, --tp, --csv, --plot, --save-checkpoint and --fusion both do not apply "
                                    "(its output is the table and --json)");
    if (o->n_tp && (o->csv || o->plot || o->save_checkpoint))
        return cli_error(CLI_USAGE, "bench: --tp prints its scaling table (and --json); --csv, --plot and --save-checkpoint go without it");
    if (o->link_gbps > 0 && !o->n_tp) return cli_error(CLI_USAGE, "bench: --link-gbps models the all-reduce of --tp runs: give --tp");
    if (!(o->link_gbps > 0)) o->link_gbps = 450; /* NVLink 4 (H100/H200 SXM): 900 GB/s both ways */
    return CLI_OK;
}

// ---- results ----------------------------------------------------------------------------------

typedef struct kernel_row {
    char label[128];
    const char *kind;
    double ms;      /* median over the breakdown runs */
    double flops;   /* counted stages it covers (linear, attention) */
    double bytes;   /* device kernels: what the plan says it moves; 0 unknown */
} kernel_row;

typedef struct group_row {
    const char *kind;
    int count;
    double ms, flops, bytes;
} group_row;

typedef struct result {
    int64_t batch, seq;
    const char *fusion;  /* "fused", "none", or "n/a" on the CPU */
    double *times;       /* [repeat] ms */
    int n_times;
    rlx__bench_stats st;
    rlx__bench_flops flops;
    double tokens_per_s, tflops, mfu, mfu_gemm; /* NAN when not applicable */
    size_t weight_bytes, session_bytes;
    double build_ms;
    kernel_row *rows;    /* sorted by time, longest first */
    int n_rows;
    group_row groups[MAX_GROUPS];
    int n_groups;
    double kernels_ms;   /* sum of the breakdown medians */
    int breakdown_runs;
    double speedup;      /* fused rows: unfused median / fused median; NAN otherwise */
    int output_finite;
    int pruned;          /* the model's last layer runs on one row per sequence (passes.prune_last_layer) */
    int graphs;          /* kernels.cuda_graphs was on */
    rlx__graph_stats graph_stats;
    rlx__gemm_stats gemm_stats; /* device runs: the model's GEMM algorithm cache afterwards */
    rlx__gemm_entry *gemm_algos; /* its entries, most used first */
    int n_gemm_algos;
} result;

typedef struct bench_ctx {
    opts o;
    rlx_device_kind dev;
    char device_name[256];
    char cpu_model[160];
    const char *shape_label;
    rlx_llama_config cfg;
    double params;
    rlx_weights *weights;
    int threads;
    rlx__bench_gemm gemm;
    int have_gemm;
    char gemm_note[200];
    double peak;
    const char *peak_source; /* "H100 SXM datasheet", "--peak-tflops", NULL unknown */
    char commit[64];
    char date[32];
    int64_t repeat, warmup;
    int breakdown;
    int tty;
    int cur, total;
    rlx_profile profile; /* --profile FILE; its fusion policy is replaced per configuration */
    int have_profile;
} bench_ctx;

static void result_free(result *r) {
    free(r->times);
    free(r->rows);
    free(r->gemm_algos);
}

// ---- progress ---------------------------------------------------------------------------------

/* A line on stderr: rewritten in place on a terminal; elsewhere (CI logs) only milestones are
 * printed, one per line, and the per-repeat steps are skipped. */
static void progress_v(const bench_ctx *c, int step, const char *fmt, va_list ap) {
    if (!c->o.progress || (step && !c->tty)) return;
    if (c->tty) fputs("\r\033[K", stderr);
    vfprintf(stderr, fmt, ap);
    if (!c->tty) fputc('\n', stderr);
    fflush(stderr);
}

static void progress(const bench_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void progress(const bench_ctx *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    progress_v(c, 0, fmt, ap);
    va_end(ap);
}

static void progress_step(const bench_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void progress_step(const bench_ctx *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    progress_v(c, 1, fmt, ap);
    va_end(ap);
}

static void progress_done(const bench_ctx *c) {
    if (c->o.progress && c->tty) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
    }
}

// ---- one configuration ------------------------------------------------------------------------

/* splitmix64: token ids, different for every repeat. */
static uint64_t mix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void fill_tokens(int32_t *t, int64_t n, int64_t vocab, uint64_t seed) {
    for (int64_t i = 0; i < n; i++) t[i] = (int32_t)(mix(&seed) % (uint64_t)vocab);
}

static int64_t value_rows(const rlx_model *m, int v, int64_t T, int64_t S) {
    const rlx__value *x = &m->list.values[v];
    return x->rows == RLX__ROWS_TOKENS ? T : x->rows == RLX__ROWS_SEQUENCES ? S : x->fixed_rows;
}

/* FLOPs of one stage of the executed list, counted as PERF.md counts the whole prefill. */
static double stage_flops(const rlx_model *m, int i, int64_t T, int64_t S, int64_t seq) {
    const rlx__stage *st = &m->list.stages[i];
    if (st->op == RLX__OP_LINEAR && st->n_in > 0 && st->n_out > 0) {
        const double K = (double)m->list.values[st->in[0]].cols, N = (double)m->list.values[st->out[0]].cols;
        return 2.0 * (double)value_rows(m, st->out[0], T, S) * K * N;
    }
    if (st->op == RLX__OP_ATTENTION) {
        const double per_seq = 2.0 * 2.0 * (double)seq * (st->causal ? (double)seq / 2.0 : (double)seq);
        return per_seq * (double)st->heads * (double)st->head_dim * (double)S;
    }
    return 0;
}

static int by_ms_desc(const void *a, const void *b) {
    const kernel_row *x = a, *y = b;
    return (x->ms < y->ms) - (x->ms > y->ms);
}

static void build_breakdown(const rlx_model *m, const double *kt, int runs, int n, int64_t B, int64_t S, result *r) {
    const int64_t T = B * S;
    double *col = malloc((size_t)(runs > 0 ? runs : 1) * sizeof *col);
    r->rows = calloc((size_t)(n > 0 ? n : 1), sizeof *r->rows);
    if (!col || !r->rows) {
        free(col);
        return;
    }
    r->n_rows = n;
    for (int j = 0; j < n; j++) {
        kernel_row *k = &r->rows[j];
        for (int i = 0; i < runs; i++) col[i] = kt[(size_t)i * (size_t)n + (size_t)j];
        rlx__bench_stats st;
        rlx__bench_stats_of(col, runs, &st);
        k->ms = st.median;
        rlx__timing_label(m, j, k->label, sizeof k->label);
        if (m->dev) {
            const rlx__kernel *kk = &m->dev->plan.k[j];
            k->kind = rlx__kernel_name(kk->kind);
            for (int q = 0; q < kk->n_stages; q++) k->flops += stage_flops(m, kk->stages[q], T, B, S);
            k->bytes = rlx__kernel_bytes(&m->dev->plan, m, kk, T, B);
        } else {
            k->kind = rlx__op_name(m->list.stages[j].op);
            k->flops = stage_flops(m, j, T, B, S);
        }
        r->kernels_ms += k->ms;
        int g = 0;
        while (g < r->n_groups && strcmp(r->groups[g].kind, k->kind)) g++;
        if (g == r->n_groups) {
            if (g == MAX_GROUPS) continue;
            r->groups[r->n_groups++] = (group_row){k->kind, 0, 0, 0, 0};
        }
        r->groups[g].count++;
        r->groups[g].ms += k->ms;
        r->groups[g].flops += k->flops;
        r->groups[g].bytes += k->bytes;
    }
    free(col);
    qsort(r->rows, (size_t)n, sizeof *r->rows, by_ms_desc);
    for (int a = 1; a < r->n_groups; a++)
        for (int b = a; b > 0 && r->groups[b].ms > r->groups[b - 1].ms; b--) {
            group_row t = r->groups[b];
            r->groups[b] = r->groups[b - 1];
            r->groups[b - 1] = t;
        }
}

static int run_config(bench_ctx *c, int64_t B, int64_t S, rlx_fusion_policy fusion, const char *fusion_name, result *r) {
    memset(r, 0, sizeof *r);
    r->batch = B, r->seq = S, r->fusion = fusion_name;
    r->mfu = r->mfu_gemm = r->speedup = NAN;
    const int64_t T = B * S;
    int64_t *lens = malloc((size_t)B * sizeof *lens);
    int32_t *tokens = malloc((size_t)T * sizeof *tokens);
    const int n_rep = (int)c->repeat;
    r->times = calloc((size_t)n_rep, sizeof *r->times);
    rlx_flow *flow = NULL;
    rlx_model *m = NULL;
    rlx_session *sess = NULL;
    double *kt = NULL;
    float *logits = NULL;
    void *timer = NULL;
    const rlx__device_ops *ops = NULL;
    rlx__device *dd = NULL;
    int rc = CLI_OK;
    rlx_status s = RLX_OK;
    if (!lens || !tokens || !r->times) {
        rc = cli_error(CLI_RUNTIME, "out of host memory");
        goto out;
    }
    for (int64_t i = 0; i < B; i++) lens[i] = S;
    r->flops = rlx__bench_llama_flops(&c->cfg, lens, B, 1);

    char what[160];
    snprintf(what, sizeof what, "[%d/%d] %s b=%lld s=%lld %s", c->cur, c->total, c->shape_label, (long long)B, (long long)S,
             fusion_name);
    progress(c, "%s: building", what);
    rlx_llama_recipe_params rp = rlx_llama_recipe_default_params();
    rp.batch = B;
    rp.seq = S;
    rp.last_token_logits = 1;
    if ((s = rlx_llama_flow(&c->cfg, &rp, &flow))) {
        rc = cli_status_error(s, "bench: assembling the flow");
        goto out;
    }
    rlx_build_params bp = rlx_build_default_params();
    bp.device = c->dev;
    bp.fusion = fusion;
    bp.precision = RLX_PRECISION_BF16;
    bp.threads = c->threads;
    rlx_profile prof;
    if (c->have_profile) { /* the file's settings, with this configuration's fusion policy */
        prof = c->profile;
        prof.fusion_policy = fusion;
        bp.profile = &prof;
    }
    cli_progress prog;
    if (c->o.progress) cli_progress_attach(&prog, &bp, "preparing weights");
    const double t_build = cli_now();
    if ((s = rlx_model_build(flow, c->weights, &bp, &m))) {
        rc = cli_status_error(s, "bench: building the model");
        goto out;
    }
    r->build_ms = (cli_now() - t_build) * 1e3;
    /* count what runs: a pruned last layer does its o_proj and MLP on one row per sequence */
    r->pruned = m->pruned_stages > 0;
    r->flops = rlx__bench_llama_flops(&c->cfg, lens, B, RLX__BENCH_LAST_TOKEN | (r->pruned ? RLX__BENCH_PRUNED : 0));
    rlx_model_memory(m, &r->weight_bytes, &r->session_bytes);
    if ((s = rlx_session_create(m, &sess))) {
        rc = cli_status_error(s, "bench: creating a session");
        goto out;
    }
    ops = m->dev ? m->dev->ops : NULL;
    dd = m->dev ? m->dev->dev : NULL;
    const int n_k = rlx__timing_count(m);
    const int runs = m->dev ? (n_rep < DEVICE_BREAKDOWN_RUNS ? n_rep : DEVICE_BREAKDOWN_RUNS) : n_rep;
    if (!(kt = calloc((size_t)runs * (size_t)(n_k > 0 ? n_k : 1), sizeof *kt))) {
        rc = cli_error(CLI_RUNTIME, "out of host memory");
        goto out;
    }
    uint64_t seed = (uint64_t)c->o.seed * 1000003u + 17;
    for (int i = 0; i < c->warmup && !s; i++) {
        progress_step(c, "%s: warmup %d/%lld", what, i + 1, (long long)c->warmup);
        fill_tokens(tokens, T, c->cfg.vocab_size, seed + (uint64_t)i);
        s = rlx_session_prefill(sess, tokens, T, lens, B, NULL);
        if (!s && ops) s = ops->sync(dd, NULL);
    }
    if (!s && ops) s = ops->timer_create(dd, 2, &timer);
    for (int i = 0; i < n_rep && !s; i++) {
        progress_step(c, "%s: repeat %d/%d", what, i + 1, n_rep);
        fill_tokens(tokens, T, c->cfg.vocab_size, seed + 1000 + (uint64_t)i);
        if (ops) {
            /* the region: one prefill on the stream, between two marks (CUDA events) */
            double ms = 0;
            s = ops->timer_mark(dd, timer, 0, NULL);
            if (!s) s = rlx_session_prefill(sess, tokens, T, lens, B, NULL);
            if (!s) s = ops->timer_mark(dd, timer, 1, NULL);
            if (!s) s = ops->timer_read(dd, timer, 2, &ms);
            r->times[i] = ms;
        } else {
            const double t0 = cli_now();
            s = rlx__session_prefill_timed(sess, tokens, T, lens, B, NULL, kt + (size_t)i * (size_t)n_k);
            r->times[i] = (cli_now() - t0) * 1e3;
        }
    }
    if (ops) {
        for (int i = 0; i < runs && !s; i++) {
            progress_step(c, "%s: per-kernel timing %d/%d", what, i + 1, runs);
            fill_tokens(tokens, T, c->cfg.vocab_size, seed + 2000 + (uint64_t)i);
            s = rlx__session_prefill_timed(sess, tokens, T, lens, B, NULL, kt + (size_t)i * (size_t)n_k);
        }
    }
    if (s) {
        rc = cli_status_error(s, "bench: prefill");
        goto out;
    }
    r->n_times = n_rep;
    r->breakdown_runs = runs;
    /* A bench of a model producing NaNs measures nothing: say so next to the numbers. */
    int64_t rows = 0, cols = 0;
    r->output_finite = 1;
    if (!(s = rlx_session_output_shape(sess, &rows, &cols)) &&
        (logits = malloc((size_t)(rows * cols) * sizeof *logits)) &&
        !(s = rlx_session_output_to_host(sess, logits, (size_t)(rows * cols)))) {
        for (int64_t i = 0; i < rows * cols; i++)
            if (!isfinite(logits[i])) {
                r->output_finite = 0;
                break;
            }
    }
    if (s) {
        rc = cli_status_error(s, "bench: reading the output");
        goto out;
    }
    rlx__bench_stats_of(r->times, n_rep, &r->st);
    r->tokens_per_s = (double)T / (r->st.median * 1e-3);
    r->tflops = r->flops.total / (r->st.median * 1e-3) / 1e12;
    if (c->peak > 0) r->mfu = r->tflops / c->peak;
    if (c->have_gemm && c->gemm.tflops > 0) r->mfu_gemm = r->tflops / c->gemm.tflops;
    build_breakdown(m, kt, runs, n_k, B, S, r);
    r->graphs = m->profile.cuda_graphs && m->dev;
    rlx__session_graph_stats(sess, &r->graph_stats);
    if (ops && (r->gemm_algos = malloc(RLX__GEMM_CACHE_CAP * sizeof *r->gemm_algos)))
        r->n_gemm_algos = rlx__gemm_cache_snapshot(ops->gemm_cache(dd), &r->gemm_stats, r->gemm_algos, RLX__GEMM_CACHE_CAP);
out:
    if (timer) ops->timer_destroy(dd, timer, 2);
    free(logits);
    free(kt);
    rlx_session_destroy(sess);
    rlx_model_destroy(m);
    rlx_flow_destroy(flow);
    free(tokens);
    free(lens);
    return rc;
}

// ---- environment ------------------------------------------------------------------------------

static void read_cpu_model(char *buf, size_t n) {
    snprintf(buf, n, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10)) continue;
        const char *p = strchr(line, ':');
        if (!p) break;
        p++;
        while (*p == ' ' || *p == '\t') p++;
        snprintf(buf, n, "%s", p);
        buf[strcspn(buf, "\n")] = '\0';
        break;
    }
    fclose(f);
}

/* The commit of the checkout the rlx binary was built in (RLX_BENCH_COMMIT overrides); "" if
 * unknown. "-dirty" marks uncommitted changes. */
static void read_commit(char *buf, size_t n) {
    buf[0] = '\0';
    const char *env = getenv("RLX_BENCH_COMMIT");
    if (env && *env) {
        snprintf(buf, n, "%s", env);
        return;
    }
    char exe[1024];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len <= 0) return;
    exe[len] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash || strchr(exe, '\'')) return;
    *slash = '\0';
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "git -C '%s' describe --always --dirty --abbrev=12 2>/dev/null", exe);
    FILE *p = popen(cmd, "r");
    if (!p) return;
    if (!fgets(buf, (int)n, p)) buf[0] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
    pclose(p);
}

static const char *gnuplot_command(void) {
    const char *g = getenv("RLX_GNUPLOT");
    return g && *g ? g : "gnuplot";
}

static int have_gnuplot(void) {
    const char *g = gnuplot_command();
    if (strchr(g, '\'')) return 0;
    char cmd[1100];
    snprintf(cmd, sizeof cmd, "command -v '%s' >/dev/null 2>&1", g);
    return system(cmd) == 0;
}

// ---- output -----------------------------------------------------------------------------------

static const char *na(double x, const char *fmt, char *buf, size_t n) {
    if (isnan(x)) snprintf(buf, n, "-");
    else snprintf(buf, n, fmt, x);
    return buf;
}

static void print_header(const bench_ctx *c) {
    const rlx_llama_config *g = &c->cfg;
    printf("rlx bench: prefill throughput\n");
    if (c->dev == RLX_DEVICE_CPU) {
        printf("\n*** CPU timings (the f32 reference; they say nothing about a GPU) ***\n");
        printf("*** %s ***\n\n", c->device_name);
    } else if (c->dev == RLX_DEVICE_SIMT) {
        printf("\n*** simt timings (the CUDA kernels emulated on the CPU, a test device; they say nothing about a GPU) ***\n");
        printf("*** %s ***\n\n", c->cpu_model);
    }
    printf("device:  %s (%s)\n", rlx_device_kind_name(c->dev), c->device_name);
    printf("model:   %s (%s): hidden %lld, layers %lld, heads %lld (kv %lld) x %lld, intermediate %lld, vocab %lld, %s head, %.4g M params\n",
           c->shape_label, c->o.model_dir ? "checkpoint" : "built-in shape, seeded random bf16 weights", (long long)g->hidden_size,
           (long long)g->num_hidden_layers, (long long)g->num_attention_heads, (long long)g->num_key_value_heads,
           (long long)g->head_dim, (long long)g->intermediate_size, (long long)g->vocab_size,
           g->tie_word_embeddings ? "tied" : "untied", c->params / 1e6);
    printf("compute: %s; last-token logits\n", c->dev == RLX_DEVICE_CPU ? "f32 (the CPU reference)" : "bf16, f32 accumulation");
    printf("FLOPs per prefill (PERF.md): 2 x (q,k,v,o,gate,up,down weights) x layers per token\n"
           "         (a pruned last layer, passes.prune_last_layer: its o,gate,up,down per sequence, not per token)\n"
           "         + attention 2*2*(S/2)*heads*head_dim x layers per token (causal half, as FlashAttention counts)\n"
           "         + LM head 2*hidden*vocab per sequence; embedding, norms, RoPE, SiLU, adds not counted\n");
    if (c->have_gemm)
        printf("GEMM:    %s: %.4g ms, %.4g TFLOP/s (median of %d)\n", c->gemm.what, c->gemm.median_ms, c->gemm.tflops,
               c->gemm.repeat);
    else
        printf("GEMM:    not measured (%s)\n", c->gemm_note);
    if (c->peak > 0) printf("peak:    %.0f TFLOP/s dense bf16 (%s)\n", c->peak, c->peak_source);
    else if (c->dev == RLX_DEVICE_CUDA)
        printf("peak:    unknown card: MFU against the datasheet is not reported (give --peak-tflops)\n");
    else printf("peak:    none (not a GPU): MFU is reported against the measured GEMM only\n");
    const char *how = c->dev == RLX_DEVICE_CUDA ? "CUDA events around each prefill on the default stream"
                      : c->dev == RLX_DEVICE_SIMT ? "host clock around each prefill (simt timers)"
                                                  : "host clock around each prefill";
    printf("timing:  warmup %lld, repeat %lld, %s; random token ids, new each repeat\n", (long long)c->warmup,
           (long long)c->repeat, how);
    printf("commit:  %s, %s\n\n", c->commit[0] ? c->commit : "unknown", c->date);
}

static void print_table(const bench_ctx *c, const result *res, int n) {
    printf("%-14s %5s %6s %-6s %9s %9s %9s %9s %8s %11s %9s %7s %7s %9s\n", "shape", "batch", "seq", "fusion", "median ms",
           "min ms", "p10 ms", "p90 ms", "stdev", "tokens/s", "TFLOP/s", "MFU", "MFU/gemm", "mem MiB");
    for (int i = 0; i < n; i++) {
        const result *r = &res[i];
        char a[32], b[32], mem[32];
        const char *lab = c->shape_label;
        const char *base = strrchr(lab, '/');
        if (base && base[1]) lab = base + 1;
        if (c->dev == RLX_DEVICE_CPU) snprintf(mem, sizeof mem, "-");
        else snprintf(mem, sizeof mem, "%.1f", (double)(r->weight_bytes + r->session_bytes) / (1 << 20));
        printf("%-14.14s %5lld %6lld %-6s %9.3f %9.3f %9.3f %9.3f %8.3f %11.1f %9.4g %7s %7s %9s%s\n", lab, (long long)r->batch,
               (long long)r->seq, r->fusion, r->st.median, r->st.min, r->st.p10, r->st.p90, r->st.stdev, r->tokens_per_s,
               r->tflops, na(100 * r->mfu, "%.1f%%", a, sizeof a), na(100 * r->mfu_gemm, "%.1f%%", b, sizeof b), mem,
               r->output_finite ? "" : "  (output has NaN/inf!)");
    }
    if (c->dev == RLX_DEVICE_CPU) printf("(CPU timings: the f32 reference; they say nothing about a GPU)\n");
    else if (c->dev == RLX_DEVICE_SIMT) printf("(simt timings: kernels emulated on the CPU; they say nothing about a GPU)\n");
    int any = 0;
    for (int i = 0; i < n; i++) {
        if (isnan(res[i].speedup)) continue;
        if (!any++) printf("\nfused vs unfused (unfused median / fused median):\n");
        const result *u = NULL;
        for (int j = 0; j < n; j++)
            if (res[j].batch == res[i].batch && res[j].seq == res[i].seq && !strcmp(res[j].fusion, "none")) u = &res[j];
        printf("  b=%lld s=%lld: none %.3f ms, fused %.3f ms: %.2fx\n", (long long)res[i].batch, (long long)res[i].seq,
               u ? u->st.median : NAN, res[i].st.median, res[i].speedup);
    }
}

static void print_breakdown(const bench_ctx *c, const result *r) {
    const int dev = c->dev != RLX_DEVICE_CPU;
    printf("\nbreakdown: %s b=%lld s=%lld %s: %s %s, median of %d run%s; they sum to %.3f ms of the %.3f ms prefill median\n",
           c->shape_label, (long long)r->batch, (long long)r->seq, r->fusion, dev ? "kernel times" : "stage times",
           c->dev == RLX_DEVICE_CUDA ? "(CUDA events between kernels, separate runs)"
           : dev                     ? "(CPU emulation: the CUDA kernels on simt, host clock between kernels, separate runs)"
                                     : "(host clock per stage, the timed runs)",
           r->breakdown_runs, r->breakdown_runs == 1 ? "" : "s", r->kernels_ms, r->st.median);
    printf("  %-22s %6s %10s %7s %9s%s\n", dev ? "kernel kind" : "stage op", "count", "ms", "share", "TFLOP/s", dev ? "      GB/s" : "");
    for (int g = 0; g < r->n_groups; g++) {
        const group_row *x = &r->groups[g];
        char a[32], b[32];
        printf("  %-22s %6d %10.4f %6.1f%% %9s %9s\n", x->kind, x->count, x->ms, r->kernels_ms > 0 ? 100 * x->ms / r->kernels_ms : 0,
               na(x->flops > 0 && x->ms > 0 ? x->flops / (x->ms * 1e-3) / 1e12 : NAN, "%.4g", a, sizeof a),
               dev ? na(x->bytes > 0 && x->ms > 0 ? x->bytes / (x->ms * 1e-3) / 1e9 : NAN, "%.1f", b, sizeof b) : "");
    }
    const int top = (int)(c->o.top < r->n_rows ? c->o.top : r->n_rows);
    if (top > 0) {
        printf("  top %d %s by time:\n", top, dev ? "kernels" : "stages");
        printf("  %10s %7s %9s %9s  %s\n", "ms", "share", "TFLOP/s", dev ? "GB/s" : "", dev ? "kernel (first stage; + = more fused in)" : "stage");
        for (int i = 0; i < top; i++) {
            const kernel_row *k = &r->rows[i];
            char a[32], b[32];
            printf("  %10.4f %6.1f%% %9s %9s  %s\n", k->ms, r->kernels_ms > 0 ? 100 * k->ms / r->kernels_ms : 0,
                   na(k->flops > 0 && k->ms > 0 ? k->flops / (k->ms * 1e-3) / 1e12 : NAN, "%.4g", a, sizeof a),
                   dev ? na(k->bytes > 0 && k->ms > 0 ? k->bytes / (k->ms * 1e-3) / 1e9 : NAN, "%.1f", b, sizeof b) : "", k->label);
        }
    }
}

/* The algorithm the device's cache chose for each GEMM shape the configuration ran. */
static void print_gemm_algos(const bench_ctx *c, const result *r) {
    if (r->graphs)
        printf("\nCUDA graphs (kernels.cuda_graphs): %llu captured, %llu replays, %llu prefills kernel by kernel (first of a shape, breakdown runs)\n",
               (unsigned long long)r->graph_stats.captures, (unsigned long long)r->graph_stats.replays,
               (unsigned long long)r->graph_stats.direct);
    if (!r->n_gemm_algos) return;
    const rlx__gemm_stats *st = &r->gemm_stats;
    printf("\nGEMM algorithms: %s b=%lld s=%lld %s: %d shapes (M bucketed); %llu GEMMs, %llu heuristic queries, %llu fallbacks, %llu tuned\n",
           c->shape_label, (long long)r->batch, (long long)r->seq, r->fusion, r->n_gemm_algos, (unsigned long long)st->gemms,
           (unsigned long long)st->heuristic, (unsigned long long)st->fallbacks, (unsigned long long)st->tuned);
    printf("  %7s %7s %7s %-13s %6s  %s\n", "M <=", "N", "K", "dtypes", "uses", "algorithm (candidate of n; tuned ms)");
    for (int i = 0; i < r->n_gemm_algos; i++) {
        const rlx__gemm_entry *e = &r->gemm_algos[i];
        char tuned[32] = "";
        if (e->tuned) snprintf(tuned, sizeof tuned, "; %.4g ms", e->tuned_ms[e->chosen]);
        printf("  %7lld %7lld %7lld %-13s %6llu  %s (%d of %d%s)\n", (long long)e->key.M_bucket, (long long)e->key.N,
               (long long)e->key.K,
               e->key.out_dtype == RLX_K_F32 ? (e->key.has_c ? "bf16>f32 +C" : "bf16>f32") : (e->key.has_c ? "bf16 +C" : "bf16"),
               (unsigned long long)e->uses, e->cand[e->chosen].name, e->chosen + 1, e->n_cand, tuned);
    }
}

static json_t *jnum(double x) { return isfinite(x) ? json_real(x) : json_null(); }

static json_t *jstr_or_null(const char *s) { return s && *s ? json_string(s) : json_null(); }

static json_t *result_json(const bench_ctx *c, const result *r) {
    const int dev = c->dev != RLX_DEVICE_CPU;
    json_t *o = json_object();
    json_object_set_new(o, "shape", json_string(c->shape_label));
    json_object_set_new(o, "source", json_string(c->o.model_dir ? "checkpoint" : "builtin"));
    json_object_set_new(o, "seed", c->o.model_dir ? json_null() : json_integer((json_int_t)c->o.seed));
    json_object_set_new(o, "device", json_string(rlx_device_kind_name(c->dev)));
    json_object_set_new(o, "device_name", json_string(c->device_name));
    json_object_set_new(o, "host_cpu", json_string(c->cpu_model));
    json_object_set_new(o, "threads", dev ? json_null() : json_integer(c->threads > 0 ? c->threads : rlx__cpu_count()));
    json_object_set_new(o, "compute_dtype", json_string(dev ? "bf16" : "f32"));
    json_object_set_new(o, "batch", json_integer(r->batch));
    json_object_set_new(o, "seq", json_integer(r->seq));
    json_object_set_new(o, "tokens", json_integer(r->batch * r->seq));
    json_object_set_new(o, "fusion", json_string(r->fusion));
    json_object_set_new(o, "warmup", json_integer(c->warmup));
    json_object_set_new(o, "repeat", json_integer(r->n_times));
    json_object_set_new(o, "median_ms", jnum(r->st.median));
    json_object_set_new(o, "mean_ms", jnum(r->st.mean));
    json_object_set_new(o, "stdev_ms", jnum(r->st.stdev));
    json_object_set_new(o, "min_ms", jnum(r->st.min));
    json_object_set_new(o, "max_ms", jnum(r->st.max));
    json_object_set_new(o, "p10_ms", jnum(r->st.p10));
    json_object_set_new(o, "p90_ms", jnum(r->st.p90));
    json_t *times = json_array();
    for (int i = 0; i < r->n_times; i++) json_array_append_new(times, jnum(r->times[i]));
    json_object_set_new(o, "times_ms", times);
    json_object_set_new(o, "tokens_per_s", jnum(r->tokens_per_s));
    json_object_set_new(o, "flops", jnum(r->flops.total));
    json_object_set_new(o, "flops_linear", jnum(r->flops.linear));
    json_object_set_new(o, "flops_attention", jnum(r->flops.attention));
    json_object_set_new(o, "flops_lm_head", jnum(r->flops.lm_head));
    json_object_set_new(o, "pruned_last_layer", json_boolean(r->pruned));
    json_object_set_new(o, "tflops", jnum(r->tflops));
    json_object_set_new(o, "peak_tflops", c->peak > 0 ? json_real(c->peak) : json_null());
    json_object_set_new(o, "peak_source", jstr_or_null(c->peak_source));
    json_object_set_new(o, "mfu", jnum(r->mfu));
    json_object_set_new(o, "gemm_tflops", c->have_gemm ? jnum(c->gemm.tflops) : json_null());
    json_object_set_new(o, "gemm", c->have_gemm ? json_pack("{s:s, s:I, s:I, s:I, s:f, s:i}", "what", c->gemm.what, "m",
                                                            (json_int_t)c->gemm.m, "n", (json_int_t)c->gemm.n, "k",
                                                            (json_int_t)c->gemm.k, "median_ms", c->gemm.median_ms, "repeat",
                                                            c->gemm.repeat)
                                                : json_null());
    json_object_set_new(o, "mfu_gemm", jnum(r->mfu_gemm));
    json_object_set_new(o, "speedup_fused_vs_none", jnum(r->speedup));
    json_object_set_new(o, "weight_bytes", dev ? json_integer((json_int_t)r->weight_bytes) : json_null());
    json_object_set_new(o, "session_bytes", dev ? json_integer((json_int_t)r->session_bytes) : json_null());
    json_object_set_new(o, "peak_device_bytes", dev ? json_integer((json_int_t)(r->weight_bytes + r->session_bytes)) : json_null());
    json_object_set_new(o, "build_ms", jnum(r->build_ms));
    json_object_set_new(o, "output_finite", json_boolean(r->output_finite));
    json_t *groups = json_array();
    for (int g = 0; g < r->n_groups; g++) {
        const group_row *x = &r->groups[g];
        json_array_append_new(groups, json_pack("{s:s, s:i, s:o, s:o, s:o, s:o}", "kind", x->kind, "count", x->count, "ms",
                                                jnum(x->ms), "share", jnum(r->kernels_ms > 0 ? x->ms / r->kernels_ms : NAN),
                                                "tflops", jnum(x->flops > 0 && x->ms > 0 ? x->flops / (x->ms * 1e-3) / 1e12 : NAN),
                                                "gbps", jnum(x->bytes > 0 && x->ms > 0 ? x->bytes / (x->ms * 1e-3) / 1e9 : NAN)));
    }
    json_t *top = json_array();
    const int n_top = (int)(c->o.top < r->n_rows ? c->o.top : r->n_rows);
    for (int i = 0; i < n_top; i++) {
        const kernel_row *k = &r->rows[i];
        json_array_append_new(top, json_pack("{s:s, s:s, s:o, s:o, s:o}", "label", k->label, "kind", k->kind, "ms", jnum(k->ms),
                                             "tflops", jnum(k->flops > 0 && k->ms > 0 ? k->flops / (k->ms * 1e-3) / 1e12 : NAN),
                                             "gbps", jnum(k->bytes > 0 && k->ms > 0 ? k->bytes / (k->ms * 1e-3) / 1e9 : NAN)));
    }
    json_object_set_new(o, "breakdown", json_pack("{s:s, s:i, s:o, s:o, s:o}", "unit", dev ? "kernel" : "stage", "runs",
                                                  r->breakdown_runs, "sum_ms", jnum(r->kernels_ms), "by_kind", groups,
                                                  "top", top));
    json_t *algos = json_array();
    for (int i = 0; i < r->n_gemm_algos; i++) {
        const rlx__gemm_entry *e = &r->gemm_algos[i];
        json_array_append_new(algos, json_pack("{s:I, s:I, s:I, s:s, s:b, s:b, s:s, s:i, s:i, s:b, s:o, s:I}", "m_bucket",
                                               (json_int_t)e->key.M_bucket, "n", (json_int_t)e->key.N, "k", (json_int_t)e->key.K,
                                               "out_dtype", e->key.out_dtype == RLX_K_F32 ? "f32" : "bf16", "bias", e->key.has_bias,
                                               "residual", e->key.has_c, "algorithm", e->cand[e->chosen].name, "candidate",
                                               e->chosen + 1, "candidates", e->n_cand, "tuned", e->tuned, "tuned_ms",
                                               e->tuned ? jnum(e->tuned_ms[e->chosen]) : json_null(), "uses", (json_int_t)e->uses));
    }
    json_object_set_new(o, "cuda_graphs", r->graphs ? json_pack("{s:I, s:I, s:I, s:I}", "captures", (json_int_t)r->graph_stats.captures,
                                                                "replays", (json_int_t)r->graph_stats.replays, "evictions",
                                                                (json_int_t)r->graph_stats.evictions, "direct",
                                                                (json_int_t)r->graph_stats.direct)
                                                    : json_null());
    json_object_set_new(o, "gemm_algorithms", dev ? algos : (json_decref(algos), json_null()));
    const rlx__gemm_stats *gs = &r->gemm_stats;
    json_object_set_new(o, "gemm_cache", dev ? json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "gemms", (json_int_t)gs->gemms, "hits",
                                                         (json_int_t)gs->hits, "heuristic", (json_int_t)gs->heuristic,
                                                         "fallbacks", (json_int_t)gs->fallbacks, "evictions",
                                                         (json_int_t)gs->evictions, "tuned", (json_int_t)gs->tuned)
                                             : json_null());
    const rlx_llama_config *g = &c->cfg;
    json_object_set_new(o, "model_config",
                        json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:f}", "hidden_size", (json_int_t)g->hidden_size,
                                  "intermediate_size", (json_int_t)g->intermediate_size, "num_hidden_layers",
                                  (json_int_t)g->num_hidden_layers, "num_attention_heads", (json_int_t)g->num_attention_heads,
                                  "num_key_value_heads", (json_int_t)g->num_key_value_heads, "head_dim",
                                  (json_int_t)g->head_dim, "vocab_size", (json_int_t)g->vocab_size, "tie_word_embeddings",
                                  g->tie_word_embeddings, "params", c->params));
    json_object_set_new(o, "commit", jstr_or_null(c->commit));
    json_object_set_new(o, "date", json_string(c->date));
    json_object_set_new(o, "rlx_version", json_string(rlx_version_string()));
    json_object_set_new(o, "note", json_string(c->dev == RLX_DEVICE_CPU    ? "CPU timings (the f32 reference; they say nothing about a GPU)"
                                               : c->dev == RLX_DEVICE_SIMT ? "simt timings (CUDA kernels emulated on the CPU; they say nothing about a GPU)"
                                                                           : ""));
    return o;
}

static int write_json(const bench_ctx *c, const result *res, int n) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, result_json(c, &res[i]));
    int err = json_dump_file(a, c->o.json, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(a);
    if (err) return cli_error(CLI_RUNTIME, "--json: cannot write %s", c->o.json);
    return CLI_OK;
}

static void csv_field(FILE *f, const char *s) {
    if (!strpbrk(s, ",\"\n")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void csv_num(FILE *f, double x) {
    if (isfinite(x)) fprintf(f, ",%.6g", x);
    else fputc(',', f);
}

#define CSV_HEADER                                                                                                   \
    "shape,device,device_name,batch,seq,tokens,fusion,repeat,median_ms,min_ms,p10_ms,p90_ms,max_ms,stdev_ms,"       \
    "tokens_per_s,flops,tflops,peak_tflops,mfu,gemm_tflops,mfu_gemm,speedup_fused_vs_none,weight_bytes,session_bytes," \
    "peak_device_bytes,commit,date\n"

static int write_csv(const bench_ctx *c, const result *res, int n) {
    FILE *f = fopen(c->o.csv, "w");
    if (!f) return cli_error(CLI_RUNTIME, "--csv: cannot write %s", c->o.csv);
    fputs(CSV_HEADER, f);
    const int dev = c->dev != RLX_DEVICE_CPU;
    for (int i = 0; i < n; i++) {
        const result *r = &res[i];
        csv_field(f, c->shape_label);
        fprintf(f, ",%s,", rlx_device_kind_name(c->dev));
        csv_field(f, c->device_name);
        fprintf(f, ",%lld,%lld,%lld,%s,%d", (long long)r->batch, (long long)r->seq, (long long)(r->batch * r->seq), r->fusion,
                r->n_times);
        csv_num(f, r->st.median);
        csv_num(f, r->st.min);
        csv_num(f, r->st.p10);
        csv_num(f, r->st.p90);
        csv_num(f, r->st.max);
        csv_num(f, r->st.stdev);
        csv_num(f, r->tokens_per_s);
        csv_num(f, r->flops.total);
        csv_num(f, r->tflops);
        csv_num(f, c->peak > 0 ? c->peak : NAN);
        csv_num(f, r->mfu);
        csv_num(f, c->have_gemm ? c->gemm.tflops : NAN);
        csv_num(f, r->mfu_gemm);
        csv_num(f, r->speedup);
        csv_num(f, dev ? (double)r->weight_bytes : NAN);
        csv_num(f, dev ? (double)r->session_bytes : NAN);
        csv_num(f, dev ? (double)(r->weight_bytes + r->session_bytes) : NAN);
        fputc(',', f);
        csv_field(f, c->commit);
        fprintf(f, ",%s\n", c->date);
    }
    if (fclose(f)) return cli_error(CLI_RUNTIME, "--csv: cannot write %s", c->o.csv);
    return CLI_OK;
}

/* tokens/s against sequence length, one line per (batch, fusion). */
static int write_plot(const bench_ctx *c, const result *res, int n) {
    char cmd[1100];
    snprintf(cmd, sizeof cmd, "'%s'", gnuplot_command());
    FILE *p = popen(cmd, "w");
    if (!p) return cli_error(CLI_RUNTIME, "--plot: cannot run %s", gnuplot_command());
    fprintf(p, "set terminal pngcairo size 1000,640 noenhanced font ',10'\n");
    fprintf(p, "set output '%s'\n", c->o.plot);
    char title[512];
    snprintf(title, sizeof title, "rlx prefill: %s on %s (%s)%s", c->shape_label, rlx_device_kind_name(c->dev), c->device_name,
             c->dev == RLX_DEVICE_CPU ? " - CPU reference timings, not a GPU" : c->dev == RLX_DEVICE_SIMT ? " - simt emulation, not a GPU" : "");
    for (char *q = title; *q; q++)
        if (*q == '"' || *q == '\\') *q = '\'';
    fprintf(p, "set title \"%s\"\n", title);
    fprintf(p, "set xlabel 'sequence length (tokens)'\nset ylabel 'tokens/s'\nset logscale x 2\nset grid\nset key below\n");
    fprintf(p, "set yrange [0:*]\n");
    int64_t lo = res[0].seq, hi = res[0].seq;
    for (int i = 1; i < n; i++) {
        if (res[i].seq < lo) lo = res[i].seq;
        if (res[i].seq > hi) hi = res[i].seq;
    }
    /* a margin either side (a single length would otherwise be an empty range) */
    fprintf(p, "set xrange [%g:%g]\n", (double)lo / 1.25, (double)hi * 1.25);
    /* series: distinct (batch, fusion) in first-seen order */
    int series[MAX_LIST * 3][2], n_series = 0;
    for (int i = 0; i < n; i++) {
        int found = 0;
        for (int j = 0; j < n_series; j++)
            if (res[series[j][0]].batch == res[i].batch && !strcmp(res[series[j][0]].fusion, res[i].fusion)) found = 1;
        if (!found && n_series < MAX_LIST * 3) series[n_series][0] = i, series[n_series++][1] = 0;
    }
    for (int j = 0; j < n_series; j++) {
        const result *s0 = &res[series[j][0]];
        fprintf(p, "$d%d << EOD\n", j);
        for (int i = 0; i < n; i++)
            if (res[i].batch == s0->batch && !strcmp(res[i].fusion, s0->fusion))
                fprintf(p, "%lld %.6g\n", (long long)res[i].seq, res[i].tokens_per_s);
        fprintf(p, "EOD\n");
    }
    fprintf(p, "plot ");
    for (int j = 0; j < n_series; j++) {
        const result *s0 = &res[series[j][0]];
        if (strcmp(s0->fusion, "n/a"))
            fprintf(p, "%s$d%d using 1:2 with linespoints pointtype 7 title 'batch %lld, fusion %s'", j ? ", " : "", j,
                    (long long)s0->batch, s0->fusion);
        else
            fprintf(p, "%s$d%d using 1:2 with linespoints pointtype 7 title 'batch %lld'", j ? ", " : "", j, (long long)s0->batch);
    }
    fprintf(p, "\n");
    int st = pclose(p);
    struct stat sb;
    if (st != 0 || stat(c->o.plot, &sb) || sb.st_size == 0)
        return cli_error(CLI_RUNTIME, "--plot: gnuplot failed to write %s (exit status %d)", c->o.plot, st);
    return CLI_OK;
}

// ---- tensor-parallel scaling ------------------------------------------------------------------

typedef struct tp_result {
    int64_t batch, seq;
    const char *fusion;
    rlx__bench_tp_row row;
    double speedup; /* the tp = 1 row's median / this median; NAN without a tp = 1 row */
} tp_result;

static int run_tp_table(bench_ctx *c, int n_fusion) {
    const int total = c->o.n_batch * c->o.n_seq * n_fusion * c->o.n_tp;
    tp_result *res = calloc((size_t)total + 1, sizeof *res);
    if (!res) return cli_error(CLI_RUNTIME, "out of host memory");
    int n = 0, rc = CLI_OK;
    const int elem = c->dev == RLX_DEVICE_CPU ? 4 : 2;
    for (int b = 0; b < c->o.n_batch && !rc; b++)
        for (int q = 0; q < c->o.n_seq && !rc; q++)
            for (int f = 0; f < n_fusion && !rc; f++) {
                const int64_t B = c->o.batch[b], S = c->o.seq[q];
                rlx_fusion_policy pol = (c->o.fusion == FUSION_NONE || f == 1) ? RLX_FUSION_NONE : RLX_FUSION_FUSED;
                const char *fname = c->dev == RLX_DEVICE_CPU ? "n/a" : pol == RLX_FUSION_NONE ? "none" : "fused";
                int64_t *lens = malloc((size_t)B * sizeof *lens);
                rlx_flow *flow = NULL;
                rlx_llama_recipe_params rp = rlx_llama_recipe_default_params();
                rp.batch = B, rp.seq = S, rp.last_token_logits = 1;
                rlx_status s = lens ? rlx_llama_flow(&c->cfg, &rp, &flow) : RLX_ERR_OUT_OF_MEMORY;
                for (int64_t i = 0; lens && i < B; i++) lens[i] = S;
                rlx_build_params bp = rlx_build_default_params();
                bp.device = c->dev, bp.fusion = pol, bp.precision = RLX_PRECISION_BF16, bp.threads = c->threads;
                rlx_profile prof;
                if (c->have_profile) prof = c->profile, prof.fusion_policy = pol, bp.profile = &prof;
                const int first = n;
                for (int t = 0; t < c->o.n_tp && !s; t++) {
                    progress(c, "[%d/%d] %s b=%lld s=%lld %s tp %lld", n + 1, total, c->shape_label, (long long)B, (long long)S,
                             fname, (long long)c->o.tp[t]);
                    tp_result *r = &res[n];
                    r->batch = B, r->seq = S, r->fusion = fname;
                    s = rlx__bench_tp_run(flow, c->weights, &bp, (int)c->o.tp[t], lens, B, c->cfg.vocab_size, (int)c->warmup,
                                          (int)c->repeat, (uint64_t)c->o.seed * 1000003u + 17, c->cfg.hidden_size,
                                          c->cfg.num_hidden_layers, elem, c->o.link_gbps, &r->row);
                    if (!s) n++;
                }
                for (int i = first; i < n; i++) {
                    res[i].speedup = NAN;
                    for (int j = first; j < n; j++)
                        if (res[j].row.tp == 1) res[i].speedup = res[j].row.st.median / res[i].row.st.median;
                }
                if (s) rc = cli_status_error(s, "bench --tp");
                rlx_flow_destroy(flow);
                free(lens);
            }
    progress_done(c);
    if (rc) {
        free(res);
        return rc;
    }
    print_header(c);
    const int host = c->dev != RLX_DEVICE_CUDA;
    printf("tensor-parallel scaling%s: one process, a thread per rank (%s); time = every rank done (host clock)\n",
           host ? " -- CPU emulation: the ranks share this machine's cores, so these numbers say nothing about GPUs" : "",
           c->dev == RLX_DEVICE_CUDA ? "NCCL over CUDA devices 0..tp-1" : "in-process communicators on host memory");
    printf("modelled all-reduce: 2 per layer of [tokens, hidden] in %s, ring: each rank sends 2(tp-1)/tp of it, over %.0f GB/s "
           "per direction (--link-gbps)\n\n",
           elem == 2 ? "bf16" : "f32", c->o.link_gbps);
    printf("%-14s %5s %6s %-6s %4s %10s %11s %8s %12s %8s %14s %13s %9s\n", "shape", "batch", "seq", "fusion", "tp", "median ms",
           "tokens/s", "speedup", "all-red. ms", "share", "MB/layer/rank", "modelled ms", "mem MiB");
    const char *lab = c->shape_label, *base = strrchr(lab, '/');
    if (base && base[1]) lab = base + 1;
    for (int i = 0; i < n; i++) {
        const tp_result *r = &res[i];
        char sp[32], mem[32];
        if (c->dev == RLX_DEVICE_CPU) snprintf(mem, sizeof mem, "-");
        else snprintf(mem, sizeof mem, "%.1f", (double)r->row.weight_bytes / (1 << 20));
        printf("%-14.14s %5lld %6lld %-6s %4d %10.3f %11.1f %8s %12.4f %7.1f%% %14.4f %13.4f %9s%s\n", lab, (long long)r->batch,
               (long long)r->seq, r->fusion, r->row.tp, r->row.st.median, r->row.tokens_per_s,
               na(r->speedup, "%.2fx", sp, sizeof sp), r->row.comm_ms,
               r->row.kernels_ms > 0 ? 100 * r->row.comm_ms / r->row.kernels_ms : 0.0, r->row.allreduce_bytes / 1e6,
               r->row.modelled_ms, mem, r->row.output_finite ? "" : "  (output has NaN/inf!)");
    }
    printf("(all-red. ms and share: rank 0's all_reduce and all_gather entries in one timed run, of its kernel times%s;\n"
           " mem: rank 0's weights)\n",
           host ? "; on the host they include waiting for the other ranks" : "");
    if (c->o.json) {
        json_t *a = json_array();
        for (int i = 0; i < n; i++) {
            const tp_result *r = &res[i];
            json_t *o = json_object();
            json_object_set_new(o, "shape", json_string(c->shape_label));
            json_object_set_new(o, "device", json_string(rlx_device_kind_name(c->dev)));
            json_object_set_new(o, "device_name", json_string(c->device_name));
            json_object_set_new(o, "batch", json_integer(r->batch));
            json_object_set_new(o, "seq", json_integer(r->seq));
            json_object_set_new(o, "fusion", json_string(r->fusion));
            json_object_set_new(o, "tp", json_integer(r->row.tp));
            json_object_set_new(o, "repeat", json_integer(r->row.st.n));
            json_object_set_new(o, "median_ms", jnum(r->row.st.median));
            json_object_set_new(o, "p10_ms", jnum(r->row.st.p10));
            json_object_set_new(o, "p90_ms", jnum(r->row.st.p90));
            json_object_set_new(o, "tokens_per_s", jnum(r->row.tokens_per_s));
            json_object_set_new(o, "speedup_vs_tp1", jnum(r->speedup));
            json_object_set_new(o, "allreduce_ms", jnum(r->row.comm_ms));
            json_object_set_new(o, "kernels_ms", jnum(r->row.kernels_ms));
            json_object_set_new(o, "allreduce_share", jnum(r->row.kernels_ms > 0 ? r->row.comm_ms / r->row.kernels_ms : NAN));
            json_object_set_new(o, "allreduce_bytes_per_layer_per_rank", jnum(r->row.allreduce_bytes));
            json_object_set_new(o, "modelled_allreduce_ms", jnum(r->row.modelled_ms));
            json_object_set_new(o, "link_gbps", jnum(c->o.link_gbps));
            json_object_set_new(o, "weight_bytes_rank0", json_integer((json_int_t)r->row.weight_bytes));
            json_object_set_new(o, "output_finite", json_boolean(r->row.output_finite));
            json_object_set_new(o, "commit", jstr_or_null(c->commit));
            json_object_set_new(o, "date", json_string(c->date));
            json_object_set_new(o, "note", json_string(host ? "CPU emulation of tensor parallelism (ranks share the host's cores); says nothing about GPUs" : ""));
            json_array_append_new(a, o);
        }
        int err = json_dump_file(a, c->o.json, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        json_decref(a);
        if (err) rc = cli_error(CLI_RUNTIME, "--json: cannot write %s", c->o.json);
        else printf("\njson: %s\n", c->o.json);
    }
    free(res);
    return rc;
}

// ---- the command ------------------------------------------------------------------------------

static int save_checkpoint(bench_ctx *c) {
    rlx_status s = rlx_llama_random_weights(&c->cfg, (uint64_t)c->o.seed, RLX_DTYPE_BF16, &c->weights);
    if (!s) s = rlx_weights_save_dir(c->weights, c->o.save_checkpoint);
    if (s) return cli_status_error(s, "--save-checkpoint");
    printf("wrote %s (config.json + model.safetensors): shape %s, seed %lld, bf16, %.4g M params\n", c->o.save_checkpoint,
           c->shape_label, (long long)c->o.seed, c->params / 1e6);
    return CLI_OK;
}

/* auto: cuda when a device opens, else the CPU reference. Fills the device description. */
static int resolve_device(bench_ctx *c) {
    c->dev = c->o.device;
    if (c->dev == RLX_DEVICE_AUTO) {
        const rlx__device_ops *ops = rlx__device_ops_for(RLX_DEVICE_CUDA);
        rlx__device *d = NULL;
        if (ops && !ops->open(0, &d)) {
            c->dev = RLX_DEVICE_CUDA;
            ops->close(d);
        } else {
            c->dev = RLX_DEVICE_CPU;
            fprintf(stderr, "rlx bench: --device auto: no CUDA device (%s); timing the CPU reference\n",
                    ops ? rlx_last_error() : "this build has no CUDA backend");
        }
        rlx_clear_error();
    }
    if (c->dev == RLX_DEVICE_CPU) {
        snprintf(c->device_name, sizeof c->device_name, "the f32 reference on %s, %d threads", c->cpu_model,
                 c->threads > 0 ? c->threads : rlx__cpu_count());
        return CLI_OK;
    }
    const rlx__device_ops *ops = rlx__device_ops_for(c->dev);
    if (!ops)
        return cli_error(CLI_RUNTIME, "bench: device '%s' is not available in this build", rlx_device_kind_name(c->dev));
    rlx__device *d = NULL;
    rlx_status s = ops->open(0, &d);
    if (s) return cli_status_error(s, "bench");
    snprintf(c->device_name, sizeof c->device_name, "%s", ops->describe(d));
    ops->close(d);
    return CLI_OK;
}

/* The host-run devices refuse work that would take hours unless --force. */
static int check_host_budget(const bench_ctx *c) {
    if (c->dev == RLX_DEVICE_CUDA || c->o.force) return CLI_OK;
    const double limit = c->dev == RLX_DEVICE_CPU ? CPU_MAX_GFLOP : SIMT_MAX_GFLOP;
    const char *name = rlx_device_kind_name(c->dev);
    /* the CPU keeps an f32 copy next to the bf16 weights; simt a bf16 device copy */
    const double wbytes = c->params * (c->o.model_dir ? 0 : 2) + c->params * (c->dev == RLX_DEVICE_CPU ? 4 : 2);
    if (wbytes > HOST_MAX_WEIGHT_GIB * (1u << 30))
        return cli_error(CLI_USAGE, "bench: %s needs about %.1f GiB of host memory for its weights on the %s device (limit %.0f GiB without --force); "
                         "run it on a GPU (--device cuda) or pick a smaller --shape",
                         c->shape_label, wbytes / (1u << 30), name, HOST_MAX_WEIGHT_GIB);
    for (int b = 0; b < c->o.n_batch; b++)
        for (int q = 0; q < c->o.n_seq; q++) {
            int64_t lens[4096];
            for (int64_t i = 0; i < c->o.batch[b]; i++) lens[i] = c->o.seq[q];
            const rlx__bench_flops f = rlx__bench_llama_flops(&c->cfg, lens, c->o.batch[b], 1);
            if (f.total > limit * 1e9)
                return cli_error(CLI_USAGE, "bench: %s b=%lld s=%lld is %.1f GFLOP per prefill, too much for the %s device "
                                 "(limit %.0f GFLOP without --force); run it on a GPU (--device cuda), or pick a smaller --shape, --batch or --seq",
                                 c->shape_label, (long long)c->o.batch[b], (long long)c->o.seq[q], f.total / 1e9,
                                 c->dev == RLX_DEVICE_CPU ? "cpu (the f32 reference)" : name, limit);
        }
    return CLI_OK;
}

// ---- --decode -------------------------------------------------------------------------------------------

static int run_decode_table(bench_ctx *c) {
    const int gpu = c->dev == RLX_DEVICE_CUDA;
    rlx__bench_copy copy;
    const size_t copy_bytes = gpu ? (size_t)512 << 20 : c->dev == RLX_DEVICE_SIMT ? (size_t)32 << 20 : (size_t)64 << 20;
    progress(c, "measuring the copy bandwidth (%zu MiB)", copy_bytes >> 20);
    rlx_status s = rlx__bench_measure_copy(c->dev, 0, copy_bytes, gpu ? 20 : 5, &copy);
    if (s) {
        progress_done(c);
        return cli_status_error(s, "bench --decode: the copy bandwidth");
    }
    const int total = c->o.n_batch * c->o.n_seq;
    rlx__bench_decode_result *res = calloc((size_t)total + 1, sizeof *res);
    if (!res) return cli_error(CLI_RUNTIME, "out of host memory");
    rlx_build_params bp = rlx_build_default_params();
    bp.device = c->dev, bp.fusion = c->o.fusion == FUSION_NONE ? RLX_FUSION_NONE : RLX_FUSION_FUSED, bp.threads = c->threads;
    rlx_profile prof;
    if (c->have_profile) prof = c->profile, prof.fusion_policy = bp.fusion, bp.profile = &prof;
    int n = 0, rc = CLI_OK;
    for (int b = 0; b < c->o.n_batch && !rc; b++)
        for (int q = 0; q < c->o.n_seq && !rc; q++) {
            progress(c, "[%d/%d] %s decode b=%lld context %lld", n + 1, total, c->shape_label, (long long)c->o.batch[b], (long long)c->o.seq[q]);
            s = rlx__bench_decode(&c->cfg, c->weights, &bp, c->o.batch[b], c->o.seq[q], (int)c->warmup, (int)c->repeat,
                                  (uint64_t)c->o.seed * 1000003u + 29, copy.gbps, &res[n]);
            if (s) rc = cli_status_error(s, "bench --decode");
            else n++;
        }
    progress_done(c);
    if (rc) {
        free(res);
        return rc;
    }
    const rlx_llama_config *g = &c->cfg;
    printf("rlx bench --decode: decode over a KV cache\n");
    if (c->dev == RLX_DEVICE_CPU) printf("\n*** CPU timings (the f32 reference; they say nothing about a GPU) ***\n\n");
    else if (c->dev == RLX_DEVICE_SIMT)
        printf("\n*** simt timings (the CUDA kernels emulated on the CPU: CPU emulation, a test device; they say nothing about a GPU) ***\n\n");
    printf("device:   %s (%s)\n", rlx_device_kind_name(c->dev), c->device_name);
    printf("model:    %s: hidden %lld, layers %lld, heads %lld (kv %lld) x %lld, vocab %lld, %.4g M params\n", c->shape_label,
           (long long)g->hidden_size, (long long)g->num_hidden_layers, (long long)g->num_attention_heads,
           (long long)g->num_key_value_heads, (long long)g->head_dim, (long long)g->vocab_size, c->params / 1e6);
    printf("method:   TTFT = prefill of batch x context random tokens + the logits copy; a decode step = page lists + one token per\n"
           "          sequence + the logits copy (what a server waits for), host clock, median of %lld after %lld warm-up; kernels =\n"
           "          the device time of one step (timer marks between kernels); KV pages of 16 in the model's dtype\n",
           (long long)c->repeat, (long long)c->warmup);
    printf("roofline: a step reads every weight once + the K/V of every context; floor = those bytes / %.1f GB/s\n"
           "          (%s, read + write counted)\n",
           copy.gbps, copy.what);
    printf("commit:   %s, %s\n\n", c->commit[0] ? c->commit : "unknown", c->date);
    printf("%-14s %5s %7s %9s %9s %9s %9s %10s %11s %10s %10s %11s %9s\n", "shape", "batch", "context", "TTFT ms", "step ms",
           "p90 ms", "kernels", "tokens/s", "KV B/token", "weights MB", "KV MB/step", "floor ms", "of floor");
    const char *lab = c->shape_label, *base = strrchr(lab, '/');
    if (base && base[1]) lab = base + 1;
    for (int i = 0; i < n; i++) {
        const rlx__bench_decode_result *r = &res[i];
        printf("%-14.14s %5lld %7lld %9.2f %9.3f %9.3f %9.3f %10.1f %11zu %10.1f %10.2f %11.4f %8.1f%%\n", lab, (long long)r->batch,
               (long long)r->context, r->ttft_ms, r->step.median, r->step.p90, r->kernels_ms, r->tokens_per_s, r->kv_bytes_per_token,
               r->weight_bytes / 1e6, r->kv_read_bytes / 1e6, r->roofline_ms, 100 * r->roofline_frac);
    }
    printf("(of floor: the roofline floor over the measured median step; 100%% would be the memory bound%s)\n",
           gpu ? "" : " -- meaningless off a GPU");
    if (c->o.json) {
        json_t *a = json_array();
        for (int i = 0; i < n; i++) {
            const rlx__bench_decode_result *r = &res[i];
            json_t *o = json_object();
            json_object_set_new(o, "shape", json_string(c->shape_label));
            json_object_set_new(o, "device", json_string(rlx_device_kind_name(c->dev)));
            json_object_set_new(o, "device_name", json_string(c->device_name));
            json_object_set_new(o, "gpu", json_boolean(gpu)); /* false: CPU figures (the reference, or simt emulation) */
            json_object_set_new(o, "batch", json_integer(r->batch));
            json_object_set_new(o, "context", json_integer(r->context));
            json_object_set_new(o, "steps", json_integer(r->steps));
            json_object_set_new(o, "ttft_ms", jnum(r->ttft_ms));
            json_object_set_new(o, "step_median_ms", jnum(r->step.median));
            json_object_set_new(o, "step_p10_ms", jnum(r->step.p10));
            json_object_set_new(o, "step_p90_ms", jnum(r->step.p90));
            json_object_set_new(o, "step_kernels_ms", jnum(r->kernels_ms));
            json_object_set_new(o, "decode_tokens_per_s", jnum(r->tokens_per_s));
            json_object_set_new(o, "kv_bytes_per_token", json_integer((json_int_t)r->kv_bytes_per_token));
            json_object_set_new(o, "weight_bytes", jnum(r->weight_bytes));
            json_object_set_new(o, "kv_read_bytes_per_step", jnum(r->kv_read_bytes));
            json_object_set_new(o, "copy_gbps", jnum(r->copy_gbps));
            json_object_set_new(o, "roofline_ms", jnum(r->roofline_ms));
            json_object_set_new(o, "roofline_fraction", jnum(r->roofline_frac));
            json_object_set_new(o, "commit", json_string(c->commit));
            json_object_set_new(o, "date", json_string(c->date));
            json_array_append_new(a, o);
        }
        json_t *root = json_pack("{s:o}", "decode", a);
        if (json_dump_file(root, c->o.json, JSON_INDENT(1))) rc = cli_error(CLI_RUNTIME, "--json %s: cannot write the file", c->o.json);
        else printf("results written to %s\n", c->o.json);
        json_decref(root);
    }
    free(res);
    return rc;
}

static int cmd_bench(int argc, char **argv) {
    bench_ctx c;
    memset(&c, 0, sizeof c);
    int rc = parse_opts(argc, argv, &c.o);
    if (rc) return rc;
    cli_llama l;
    memset(&l, 0, sizeof l);
    result *res = NULL;
    int n_res = 0;
    read_cpu_model(c.cpu_model, sizeof c.cpu_model);
    c.tty = isatty(2);
    c.threads = (int)c.o.threads;
    if (c.o.profile) { /* a bad file is refused before anything is measured */
        rlx_status ps = rlx_profile_load(c.o.profile, &c.profile);
        if (ps) return cli_error(ps == RLX_ERR_OUT_OF_MEMORY ? CLI_RUNTIME : CLI_USAGE, "--profile: %s", rlx_last_error());
        c.have_profile = 1;
        /* without --fusion the file's policy decides */
        if (!c.o.fusion_given) c.o.fusion = c.profile.fusion_policy == RLX_FUSION_NONE ? FUSION_NONE : FUSION_FUSED;
    }

    // -- model config (weights later: they can be big) --
    if (c.o.model_dir) {
        if ((rc = cli_llama_open(c.o.model_dir, &l))) return rc;
        c.cfg = l.cfg;
        c.weights = l.weights;
        c.shape_label = c.o.model_dir;
    } else {
        char first[64];
        snprintf(first, sizeof first, "%.*s", (int)strcspn(c.o.shape, ","), c.o.shape); /* --load takes a list */
        rlx_status s = rlx_llama_builtin_config(first, &c.cfg);
        if (s) return cli_error(CLI_USAGE, "--shape: '%s' is not one of tiny, llama-3.2-1b, llama-3.2-3b, llama-3.1-8b", first);
        c.shape_label = c.o.shape;
    }
    c.params = rlx__bench_llama_params(&c.cfg);
    if (c.o.save_checkpoint) {
        rc = save_checkpoint(&c);
        goto out;
    }

    // -- device, defaults, checks before anything slow --
    if ((rc = resolve_device(&c))) goto out;
    if (c.o.load) {
        read_commit(c.commit, sizeof c.commit);
        time_t t = time(NULL);
        struct tm tmv_;
        gmtime_r(&t, &tmv_);
        strftime(c.date, sizeof c.date, "%Y-%m-%dT%H:%M:%SZ", &tmv_);
        const char *tmp = getenv("TMPDIR");
        cli_bench_load_args la = {.shapes = c.o.model_dir ? NULL : c.o.shape, .model_dir = c.o.model_dir,
                                  .checkpoint_parent = c.o.checkpoint_dir ? c.o.checkpoint_dir : tmp && *tmp ? tmp : "/tmp",
                                  .seed = (uint64_t)c.o.seed, .device = c.dev, .device_name = c.device_name,
                                  .cpu_model = c.cpu_model, .commit = c.commit, .date = c.date,
                                  .threads = c.threads > 0 ? c.threads : rlx__cpu_count(),
                                  .repeat = c.o.repeat > 0 ? (int)c.o.repeat : 3, .progress = c.o.progress, .force = c.o.force,
                                  .host_limit_gib = HOST_MAX_WEIGHT_GIB, .json = c.o.json};
        rc = cli_bench_load(&la);
        goto out;
    }
    const int gpu = c.dev == RLX_DEVICE_CUDA;
    c.repeat = c.o.repeat > 0 ? c.o.repeat : gpu ? 20 : 3;
    c.warmup = c.o.warmup >= 0 ? c.o.warmup : gpu ? 5 : 1;
    if (c.o.decode) {
        /* the table on a GPU; small enough to finish on the host devices */
        c.repeat = c.o.repeat > 0 ? c.o.repeat : gpu ? 32 : 4;
        c.warmup = c.o.warmup >= 0 ? c.o.warmup : gpu ? 4 : 1;
        if (!c.o.n_batch) {
            c.o.batch[c.o.n_batch++] = 1, c.o.batch[c.o.n_batch++] = 8;
            if (gpu) c.o.batch[c.o.n_batch++] = 64;
        }
        if (!c.o.n_seq) {
            if (gpu) c.o.seq[c.o.n_seq++] = 512, c.o.seq[c.o.n_seq++] = 2048;
            else c.o.seq[c.o.n_seq++] = c.dev == RLX_DEVICE_SIMT ? 32 : 128;
        }
    }
    if (!c.o.n_batch) c.o.batch[c.o.n_batch++] = gpu ? 4 : 1;
    if (!c.o.n_seq) c.o.seq[c.o.n_seq++] = gpu ? 2048 : 128;
    for (int q = 0; q < c.o.n_seq; q++)
        if (c.o.seq[q] > c.cfg.max_position_embeddings) {
            rc = cli_error(CLI_USAGE, "--seq %lld exceeds max_position_embeddings %lld of %s", (long long)c.o.seq[q],
                           (long long)c.cfg.max_position_embeddings, c.shape_label);
            goto out;
        }
    for (int b = 0; b < c.o.n_batch; b++)
        for (int q = 0; q < c.o.n_seq; q++)
            if (c.o.batch[b] * c.o.seq[q] > INT32_MAX) {
                rc = cli_error(CLI_USAGE, "bench: --batch %lld x --seq %lld is more tokens than one prefill can hold (2^31 - 1)",
                               (long long)c.o.batch[b], (long long)c.o.seq[q]);
                goto out;
            }
    if (c.dev == RLX_DEVICE_CPU && c.o.fusion_given && c.o.fusion != FUSION_FUSED)
        fprintf(stderr, "rlx bench: --fusion has no effect on the cpu device (the reference runs the stage list): each configuration runs once\n");
    const int n_fusion = c.dev == RLX_DEVICE_CPU ? 1 : c.o.fusion == FUSION_BOTH ? 2 : 1;
    if ((rc = check_host_budget(&c))) goto out;
    if (c.o.plot && !have_gnuplot()) {
        rc = cli_error(CLI_RUNTIME, "--plot: gnuplot is not installed (e.g. apt-get install gnuplot-nox); nothing was run. "
                       "Drop --plot, or plot the --json/--csv output elsewhere");
        goto out;
    }
    c.breakdown = c.o.breakdown >= 0 ? c.o.breakdown : (c.o.n_batch * c.o.n_seq * n_fusion == 1);
    read_commit(c.commit, sizeof c.commit);
    time_t now = time(NULL);
    struct tm tmv;
    gmtime_r(&now, &tmv);
    strftime(c.date, sizeof c.date, "%Y-%m-%dT%H:%M:%SZ", &tmv);

    // -- peak and the reference GEMM --
    if (c.o.peak > 0) {
        c.peak = c.o.peak;
        c.peak_source = "--peak-tflops";
    } else if (gpu) {
        const char *card = NULL;
        c.peak = rlx__bench_datasheet_bf16_tflops(c.device_name, &card);
        static char src[64];
        snprintf(src, sizeof src, "%s datasheet", card ? card : "?");
        c.peak_source = c.peak > 0 ? src : NULL;
    }
    /* --decode is bounded by memory: its reference is the copy bandwidth, not a GEMM */
    const int64_t gn = c.o.decode ? 0 : c.o.gemm >= 0 ? c.o.gemm : gpu ? 8192 : c.dev == RLX_DEVICE_SIMT ? 128 : 512;
    if (gn > 0) {
        progress(&c, "measuring the reference GEMM (%lld^3)", (long long)gn);
        rlx_status s = rlx__bench_measure_gemm(c.dev, 0, c.threads, gn, gn, gn, gpu ? 5 : 1, gpu ? 20 : 3, &c.gemm);
        if (s) {
            progress_done(&c);
            rc = cli_status_error(s, "bench: the reference GEMM");
            goto out;
        }
        c.have_gemm = 1;
    } else {
        snprintf(c.gemm_note, sizeof c.gemm_note, "--gemm 0");
    }

    // -- weights --
    if (!c.weights) {
        progress(&c, "generating random %s weights (seed %lld, bf16)", c.shape_label, (long long)c.o.seed);
        rlx_status s = rlx_llama_random_weights(&c.cfg, (uint64_t)c.o.seed, RLX_DTYPE_BF16, &c.weights);
        if (s) {
            progress_done(&c);
            rc = cli_status_error(s, "bench: random weights");
            goto out;
        }
    }

    // -- the runs --
    if (c.o.decode) {
        rc = run_decode_table(&c);
        goto out;
    }
    if (c.o.n_tp) {
        rc = run_tp_table(&c, n_fusion);
        goto out;
    }
    c.total = c.o.n_batch * c.o.n_seq * n_fusion;
    if (!(res = calloc((size_t)c.total, sizeof *res))) {
        rc = cli_error(CLI_RUNTIME, "out of host memory");
        goto out;
    }
    for (int b = 0; b < c.o.n_batch && !rc; b++)
        for (int q = 0; q < c.o.n_seq && !rc; q++)
            for (int f = 0; f < n_fusion && !rc; f++) {
                rlx_fusion_policy pol = (c.o.fusion == FUSION_NONE || f == 1) ? RLX_FUSION_NONE : RLX_FUSION_FUSED;
                const char *fname = c.dev == RLX_DEVICE_CPU ? "n/a" : pol == RLX_FUSION_NONE ? "none" : "fused";
                c.cur = n_res + 1;
                rc = run_config(&c, c.o.batch[b], c.o.seq[q], pol, fname, &res[n_res]);
                n_res++;
            }
    progress_done(&c);
    if (rc) goto out;
    for (int i = 0; i < n_res; i++) {
        if (strcmp(res[i].fusion, "fused")) continue;
        for (int j = 0; j < n_res; j++)
            if (res[j].batch == res[i].batch && res[j].seq == res[i].seq && !strcmp(res[j].fusion, "none"))
                res[i].speedup = res[j].st.median / res[i].st.median;
    }

    // -- outputs --
    print_header(&c);
    print_table(&c, res, n_res);
    if (c.breakdown)
        for (int i = 0; i < n_res; i++) {
            print_breakdown(&c, &res[i]);
            print_gemm_algos(&c, &res[i]);
        }
    if (c.o.json && (rc = write_json(&c, res, n_res))) goto out;
    if (c.o.csv && (rc = write_csv(&c, res, n_res))) goto out;
    if (c.o.plot && (rc = write_plot(&c, res, n_res))) goto out;
    if (c.o.json) printf("\njson: %s\n", c.o.json);
    if (c.o.csv) printf("csv: %s\n", c.o.csv);
    if (c.o.plot) printf("plot: %s\n", c.o.plot);
out:
    for (int i = 0; i < n_res; i++) result_free(&res[i]);
    free(res);
    if (c.o.model_dir) cli_llama_close(&l);
    else rlx_weights_destroy(c.weights);
    return rc;
}

const cli_command cli_cmd_bench = {
    .name = "bench",
    .run = cmd_bench,
    .summary = "prefill throughput: tokens/s, TFLOP/s, MFU, per-kernel breakdown (docs/bench.md)",
    .usage =
    "usage: rlx bench [--shape NAME | --model DIR] [options]      (docs/bench.md)\n"
    "  --shape NAME           tiny|llama-3.2-1b|llama-3.2-3b|llama-3.1-8b (random weights)\n"
    "  --model DIR            a Hugging Face LLaMA directory instead of a built-in shape\n"
    "  --batch B,..           sequences per prefill (list)\n"
    "  --seq S,..             tokens per sequence (list)\n"
    "  --device D             auto|cpu|cuda|simt\n"
    "  --fusion fused|none|both\n"
    "  --profile F.rlx.toml   compile profile (its fusion policy replaced per configuration)\n"
    "  --repeat N             timed prefills per configuration (--load: timed loads, default 3)\n"
    "  --warmup N             untimed prefills first\n"
    "  --seed N               weights seed of a built-in shape\n"
    "  --top N                kernels listed in the breakdown's top list\n"
    "  --gemm N               size of the reference GEMM (0 skips it)\n"
    "  --threads N            CPU threads of the cpu device (0 = every core)\n"
    "  --peak-tflops X        the card's dense bf16 peak, when the built-in table does not know it\n"
    "  --tp N,..              tensor-parallel scaling table instead: each configuration at each tp (one process,\n"
    "                         a thread per rank), tokens/s, share of time in all-reduce, modelled all-reduce cost\n"
    "  --link-gbps X          per-direction link bandwidth of the modelled all-reduce (default 450, NVLink 4)\n"
    "  --json F | --csv F | --plot F.png   results as JSON, CSV, or a gnuplot chart\n"
    "  --breakdown | --no-breakdown        per-kernel times\n"
    "  --save-checkpoint DIR  write the random weights as a bf16 checkpoint\n"
    "  --load                 time the model load instead (seconds, GB/s): --shape S,.. from a bf16\n"
    "                         checkpoint on disk (written once, then reused), or --model DIR\n"
    "  --checkpoint-dir DIR   --load: where the shapes' checkpoints live (default $TMPDIR or /tmp)\n"
    "  --decode               the decode table instead: time to first token, decode tokens/s, KV bytes per token and\n"
    "                         the memory roofline per (batch, context) (defaults --batch 1,8,64 --seq 512,2048 on a GPU;\n"
    "                         --seq is the context, --repeat the timed decode steps)\n"
    "  --force                run shapes the cpu/simt devices would otherwise refuse\n"
    "  --no-progress          no progress line on stderr\n",
};
