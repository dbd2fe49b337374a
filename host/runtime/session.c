/* Sessions: per-request state and the prefill entry point. */
#include "runtime/device.h"
#include "runtime/cpu_ref.h"
#include "runtime/session.h"
#include "dist/comm.h"
#include "rlx/encoder.h"
#include "rlx/kv.h"
#include "kv/kv.h"
#include "model/stages.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rlx_session {
    const rlx_model *model; /* holds a reference (rlx__model_retain), dropped by rlx_session_destroy */
    float *output;          /* CPU device: the last output [rows, cols] */
    rlx__dev_session dev;   /* device models: arena and batch metadata */
    void *stream;           /* stream of the last prefill */
    int64_t rows, cols;     /* shape of the last output; rows == 0 when there is none */
    int prefills;           /* prefill calls so far */
    rlx_status last;        /* status of the last one: its output is readable only when RLX_OK */
    const rlx_named_ids *inputs; /* named inputs of the rlx_session_prefill_ex call under way */
    int64_t n_inputs;
};

rlx_status rlx_session_create(const rlx_model *m, rlx_session **out) {
    if (!out) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_session_create: out is NULL");
    *out = NULL;
    if (!m) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_session_create: model is NULL");
    if (m->plan_only)
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_session_create: the model was built plan-only (rlx_build_params.plan_only); it cannot run");
    rlx_session *s = rlx__calloc(1, sizeof *s, "a session");
    if (!s) return RLX_ERR_OUT_OF_MEMORY;
    s->model = m;
    if (m->dev) {
        rlx_status st = rlx__dev_session_create(m, &s->dev);
        if (st) {
            free(s);
            return st;
        }
    }
    rlx__model_retain(m);
    *out = s;
    return RLX_OK;
}

void rlx_session_destroy(rlx_session *s) {
    if (!s) return;
    rlx__dev_session_free(s->model, &s->dev);
    free(s->output);
    /* the model goes with its last holder: the caller's handle or a session */
    rlx_model_destroy((rlx_model *)s->model);
    free(s);
}

/* One prefill; with times non-NULL, records the time of every kernel (device models, [plan.n]) or
 * stage (CPU, [n_stages]) in ms. Sets rows and cols on success only. kv/pages non-NULL: a KV-cache
 * call (rlx_session_prefill_kv). */
static rlx_status prefill_run(rlx_session *s, const int32_t *tokens, int64_t n_tokens, const int64_t *seq_lens,
                              int64_t n_seqs, void *stream, double *times, const rlx_kv_desc *kv, const rlx_kv_pages *pages) {
    double *kernel_ms = times;
    if (!s || !tokens) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_session_prefill: session and tokens are required");
    const rlx_model *m = s->model;
    if (n_tokens < 1) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "prefill: the token list is empty");
    if (!seq_lens) n_seqs = 1;
    if (n_seqs < 1) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "prefill: %lld sequences", (long long)n_seqs);
    if (n_tokens > m->max_tokens || n_seqs > m->max_seqs)
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT,
                         "prefill: %lld tokens in %lld sequences exceed the model's capacity of %lld tokens in %lld sequences (batch x seq at build)",
                         (long long)n_tokens, (long long)n_seqs, (long long)m->max_tokens, (long long)m->max_seqs);
    int64_t *start = rlx__malloc((size_t)(n_seqs + 1) * sizeof(int64_t), "sequence offsets");
    if (!start) return RLX_ERR_OUT_OF_MEMORY;
    start[0] = 0;
    for (int64_t i = 0; i < n_seqs; i++) {
        int64_t len = seq_lens ? seq_lens[i] : n_tokens;
        if (len < 1 || len > n_tokens - start[i]) {
            free(start);
            return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "prefill: sequence %lld has length %lld; lengths must be >= 1 and sum to %lld tokens",
                             (long long)i, (long long)len, (long long)n_tokens);
        }
        if (!kv && m->max_positions && len > m->max_positions) { /* with a cache: cached + new, checked below */
            free(start);
            return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "prefill: sequence %lld has %lld tokens, beyond the %lld positions of the rope tables (max_position_embeddings)",
                             (long long)i, (long long)len, (long long)m->max_positions);
        }
        start[i + 1] = start[i] + len;
    }
    const int64_t sum = start[n_seqs];
    if (sum != n_tokens) {
        free(start);
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "prefill: sequence lengths sum to %lld but %lld tokens were given",
                         (long long)sum, (long long)n_tokens);
    }
    for (int64_t t = 0; t < n_tokens; t++)
        if (tokens[t] < 0 || tokens[t] >= m->vocab) {
            free(start);
            return rlx__fail(RLX_ERR_TOKEN_RANGE, "prefill: token %lld (id %ld) is outside the vocabulary [0, %lld)", (long long)t,
                             (long)tokens[t], (long long)m->vocab);
        }
    rlx__batch b = {tokens, n_tokens, start, n_seqs, s->inputs, s->n_inputs, NULL};
    rlx_status in_st = rlx__check_batch_inputs(m, &b);
    if (in_st) {
        free(start);
        return in_st;
    }
    rlx__kv_call call;
    if (kv) {
        /* every check of the descriptor and the page lists, before anything runs or is written */
        if ((in_st = rlx__kv_call_begin(m, kv, pages, start, n_seqs, &call))) {
            free(start);
            return in_st;
        }
        b.kv = &call;
    }
    if (m->dev) {
        /* Device work is enqueued on the caller's stream; the output stays on the device. */
        rlx_status st = rlx__dev_prefill(m, &s->dev, &b, stream, kernel_ms);
        free(start);
        if (kv) rlx__kv_call_free(&call);
        if (st) return st;
        s->stream = stream;
        s->rows = m->list.values[m->output].rows == RLX__ROWS_SEQUENCES ? n_seqs : n_tokens;
        s->cols = m->list.values[m->output].cols;
        return RLX_OK;
    }
    float *out = NULL;
    int64_t rows = 0, cols = 0;
    rlx_status st = rlx__cpu_run_timed(m, &b, &out, &rows, &cols, times);
    free(start);
    if (kv) rlx__kv_call_free(&call);
    if (st) return st;
    free(s->output);
    s->output = out;
    s->rows = rows;
    s->cols = cols;
    return RLX_OK;
}

/* Records a prefill that failed before it ran: its output is gone like any failed prefill's. */
static rlx_status no_output(rlx_session *s, rlx_status st) {
    if (s) {
        s->rows = 0;
        s->prefills++;
        s->last = st;
    }
    return st;
}

static rlx_status prefill(rlx_session *s, const int32_t *tokens, int64_t n_tokens, const int64_t *seq_lens, int64_t n_seqs,
                          void *stream, double *times, const rlx_kv_desc *kv, const rlx_kv_pages *pages) {
    if (!s) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_session_prefill: session is NULL");
    /* Whatever happens below, the previous output is gone: a failed prefill leaves none, so
     * nobody reads the last request's logits as this one's. */
    s->rows = 0;
    s->prefills++;
    s->last = prefill_run(s, tokens, n_tokens, seq_lens, n_seqs, stream, times, kv, pages);
    return s->last;
}

/* RLX_OK when the last prefill succeeded; else why there is no output. */
static rlx_status output_ready(const rlx_session *s, const char *fn) {
    if (s->rows) return RLX_OK;
    if (!s->prefills) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "%s: no prefill has run on this session", fn);
    return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "%s: the last prefill on this session failed (%s); there is no output until one succeeds",
                     fn, rlx_status_name(s->last));
}

/* Tensor parallelism: the ranks run the same prefill in lockstep, so a rank that fails anywhere in
 * it (its arguments included) would leave the others waiting in a collective: it aborts the
 * communicator with its message instead, and every other rank's prefill (or its bounded wait in
 * rlx_session_output_to_host) returns RLX_ERR_COMM naming it. */
static rlx_status prefill_rank(rlx_session *s, const int32_t *tokens, int64_t n_tokens, const int64_t *seq_lens,
                               int64_t n_seqs, void *stream, double *times, const rlx_kv_desc *kv, const rlx_kv_pages *pages) {
    rlx_comm *c = s && s->model ? s->model->comm : NULL;
    if (!c) return prefill(s, tokens, n_tokens, seq_lens, n_seqs, stream, times, kv, pages);
    rlx_status st = rlx__comm_enter(c);
    if (st) return no_output(s, st); /* not a fault of the job: another prefill of this rank is under way */
    if (!(st = rlx__comm_bind(c))) st = prefill(s, tokens, n_tokens, seq_lens, n_seqs, stream, times, kv, pages);
    else no_output(s, st);
    if (st && st != RLX_ERR_COMM) rlx__comm_fail(c, st, rlx_last_error());
    rlx__comm_leave(c);
    return st;
}

rlx_status rlx_session_prefill(rlx_session *s, const int32_t *tokens, int64_t n_tokens, const int64_t *seq_lens,
                               int64_t n_seqs, void *stream) {
    return prefill_rank(s, tokens, n_tokens, seq_lens, n_seqs, stream, NULL, NULL, NULL);
}

rlx_status rlx__session_prefill_timed(rlx_session *s, const int32_t *tokens, int64_t n_tokens, const int64_t *seq_lens,
                                      int64_t n_seqs, void *stream, double *times) {
    return prefill_rank(s, tokens, n_tokens, seq_lens, n_seqs, stream, times, NULL, NULL);
}

rlx_status rlx__session_prefill_kv_timed(rlx_session *s, const rlx_prefill_batch *pb, const rlx_kv_desc *kv,
                                         const rlx_kv_pages *pages, void *stream, double *times) {
    if (!s || !pb) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_session_prefill_kv: session and batch are required");
    /* refused calls leave no output, like every failed prefill */
    if (!kv || !pages)
        return no_output(s, rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_session_prefill_kv: the KV descriptor and page lists are required"));
    if (pb->n_inputs)
        return no_output(s, rlx__fail(RLX_ERR_UNSUPPORTED,
                                      "rlx_session_prefill_kv: named inputs are not supported with a KV cache (decoders have none)"));
    return prefill_rank(s, pb->tokens, pb->n_tokens, pb->seq_lens, pb->n_seqs, stream, times, kv, pages);
}

rlx_status rlx_session_prefill_kv(rlx_session *s, const rlx_prefill_batch *pb, const rlx_kv_desc *kv, const rlx_kv_pages *pages,
                                  void *stream) {
    return rlx__session_prefill_kv_timed(s, pb, kv, pages, stream, NULL);
}

void rlx__session_graph_stats(const rlx_session *s, rlx__graph_stats *out) {
    memset(out, 0, sizeof *out);
    if (s && s->model->dev) rlx__dev_graph_stats(&s->dev, out);
}

int rlx__timing_count(const rlx_model *m) { return m->dev ? m->dev->plan.n : m->list.n_stages; }

void rlx__timing_label(const rlx_model *m, int i, char *buf, size_t n) {
    if (m->dev) {
        const rlx__kernel *k = &m->dev->plan.k[i];
        snprintf(buf, n, "%s %s%s", rlx__kernel_name(k->kind), m->list.stages[k->stages[0]].name, k->n_stages > 1 ? " +" : "");
    } else {
        snprintf(buf, n, "%s %s", rlx__op_name(m->list.stages[i].op), m->list.stages[i].name);
    }
}

rlx_status rlx_session_output_shape(const rlx_session *s, int64_t *rows, int64_t *cols) {
    if (!s) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_session_output_shape: session is NULL");
    rlx_status st = output_ready(s, "rlx_session_output_shape");
    if (st) return st;
    if (rows) *rows = s->rows;
    if (cols) *cols = s->cols;
    return RLX_OK;
}

rlx_status rlx_session_output_view(const rlx_session *s, rlx_output_view *out) {
    if (!s || !out) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_session_output_view: NULL argument");
    if (!s->rows) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "no prefill has run on this session");
    if (s->dev.broken) return rlx__fail(RLX_ERR_SESSION_BROKEN, "rlx_session_output_view: the session is broken by an earlier device fault");
    rlx_output_view v = {.rows = s->rows, .cols = s->cols, .device = rlx_model_device(s->model), .stream = s->stream};
    if (s->model->dev) {
        v.data = rlx__dev_output_ptr(s->model, &s->dev, &v.dtype);
        v.device_ordinal = s->model->dev->ordinal;
    } else {
        v.data = s->output;
        v.dtype = RLX_DTYPE_F32;
    }
    *out = v;
    return RLX_OK;
}

rlx_status rlx_session_synchronize(rlx_session *s) {
    if (!s) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_session_synchronize: session is NULL");
    if (!s->model->dev || !s->rows) return RLX_OK; /* CPU prefills return finished; nothing ran yet */
    const rlx__dev_model *dm = s->model->dev;
    /* the model's device current first: a NULL stream is that device's default stream */
    rlx_status st = dm->ops->bind(dm->dev);
    if (!st) st = dm->ops->sync(dm->dev, s->stream);
    if (st == RLX_ERR_SESSION_BROKEN) s->dev.broken = 1;
    return st;
}

rlx_status rlx_session_output_to_host(rlx_session *s, float *dst, size_t capacity) {
    if (!s || !dst) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_session_output_to_host: NULL argument");
    rlx_status st = output_ready(s, "rlx_session_output_to_host");
    if (st) return st;
    size_t n = (size_t)s->rows * (size_t)s->cols;
    if (capacity < n)
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "output needs %zu floats (%lld x %lld), the buffer holds %zu", n,
                         (long long)s->rows, (long long)s->cols, capacity);
    rlx_comm *c = s->model->comm;
    if (c && s->model->dev && rlx_comm_get_kind(c) == RLX_COMM_NCCL) {
        /* NCCL ranks: wait for the collectives with a bound (a failed peer aborts, never hangs) */
        st = rlx__comm_bind(c);
        if (!st) st = rlx_comm_synchronize(c, s->stream);
        if (st) return st;
    }
    if (s->model->dev) return rlx__dev_output(s->model, &s->dev, dst, s->rows, s->cols, s->stream);
    memcpy(dst, s->output, n * sizeof(float));
    return RLX_OK;
}

rlx_status rlx_session_output_nonfinite(rlx_session *s, int64_t *per_row, size_t rows_capacity, int64_t *total) {
    if (!s || !total) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_session_output_nonfinite: session and total are required");
    rlx_status st = output_ready(s, "rlx_session_output_nonfinite");
    if (st) return st;
    if (per_row && rows_capacity < (size_t)s->rows)
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_session_output_nonfinite: the output has %lld rows, per_row holds %zu",
                         (long long)s->rows, rows_capacity);
    if (!s->model->dev) {
        *total = rlx__count_nonfinite(s->output, s->rows, s->cols, per_row);
        return RLX_OK;
    }
    /* a device output: read it back as rlx_session_output_to_host does */
    const size_t n = (size_t)s->rows * (size_t)s->cols;
    float *host = rlx__malloc(n * sizeof(float), "the output read back for the finite check");
    if (!host) return RLX_ERR_OUT_OF_MEMORY;
    st = rlx_session_output_to_host(s, host, n);
    if (!st) *total = rlx__count_nonfinite(host, s->rows, s->cols, per_row);
    free(host);
    return st;
}

rlx_status rlx_session_prefill_ex(rlx_session *s, const rlx_prefill_batch *pb, void *stream) {
    if (!s || !pb) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_session_prefill_ex: session and batch are required");
    /* The named inputs ride along for this one call; rlx_session_prefill checks and uses them. */
    s->inputs = pb->inputs;
    s->n_inputs = pb->n_inputs;
    rlx_status st = rlx_session_prefill(s, pb->tokens, pb->n_tokens, pb->seq_lens, pb->n_seqs, stream);
    s->inputs = NULL;
    s->n_inputs = 0;
    return st;
}
