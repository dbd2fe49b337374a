/* Generic device executor: uploads weights, holds the kernel plan, runs a prefill through the
 * device interface. Knows nothing of CUDA: the cuda and simt devices plug in below. */
#include "runtime/device.h"
#include "runtime/cpu_ref.h"
#include "dist/comm.h"
#include "dist/shard.h"
#include "rlx/weights.h"
#include "model/tiers.h"
#include "io/convert.h"
#include "kv/kv.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- registry ------------------------------------------------------------------------------------ */

static const rlx__device_ops *installed_simt;

void rlx__device_install(const rlx__device_ops *ops) {
    if (ops && ops->kind == RLX_DEVICE_SIMT) installed_simt = ops;
}

const rlx__device_ops *rlx__device_ops_for(rlx_device_kind kind) {
    switch (kind) {
    case RLX_DEVICE_SIMT: return installed_simt;
    case RLX_DEVICE_CUDA:
#if defined(RLX_HAVE_CUDA)
        return rlx__cuda_device_ops();
#else
        return NULL;
#endif
    default: return NULL;
    }
}

int rlx_device_compiled(rlx_device_kind kind) {
    if (kind == RLX_DEVICE_CPU || kind == RLX_DEVICE_AUTO) return 1;
    return rlx__device_ops_for(kind) != NULL;
}

/* ---- model ----------------------------------------------------------------------------------------- */

void rlx__dev_model_free(rlx__dev_model *dm) {
    if (!dm) return;
    if (dm->dev) {
        dm->ops->bind(dm->dev); /* a model may be destroyed on another thread than it was built on */
        for (int i = 0; dm->wptr && i < dm->n_wptr; i++)
            if (dm->wptr[i]) dm->ops->free(dm->dev, dm->wptr[i]);
        for (size_t i = 0; dm->cptr && i < dm->n_cptr; i++)
            if (dm->cptr[i]) dm->ops->free(dm->dev, dm->cptr[i]);
        dm->ops->close(dm->dev);
    }
    free(dm->wptr);
    free(dm->cptr);
    free(dm->positions_buf);
    rlx__plan_free(&dm->plan);
    free(dm);
}

/* Uploads host f32 data [n] in the activation dtype (rounded once): small tables only (the
 * parameters of tier-2 stages); weights go through the loader below. */
static rlx_status upload_f32(rlx__dev_model *dm, float *f, size_t n, rlx_kdtype act, const char *what, void **out) {
    size_t esz = act == RLX_K_F32 ? 4 : 2;
    if (act == RLX_K_BF16) {
        /* In place: element i's bf16 lands at byte 2i, behind the f32 being read at 4i. */
        uint16_t *h = (uint16_t *)f;
        for (size_t i = 0; i < n; i++) h[i] = rlx_f32_to_bf16(f[i]);
    }
    rlx_status s = dm->ops->alloc(dm->dev, n * esz, what, out);
    if (!s) s = dm->ops->h2d(dm->dev, *out, f, n * esz, NULL);
    if (!s) s = dm->ops->sync(dm->dev, NULL); /* the host buffer is freed next */
    if (!s) dm->weight_bytes += n * esz;
    return s;
}

/* ---- the weight loader ----------------------------------------------------------------------------
 * Each weight is converted (io/convert.h: parallel over the cores, one pass, a memcpy where the
 * dtype does not change) straight into device memory where the device lets the host write it
 * (simt), else chunk by chunk into two staging buffers (pinned where the device offers it) whose
 * uploads run while the next chunk converts:
 *     convert chunk i into buffer i%2 · sync (the upload of chunk i-1, from the other buffer, is done)
 *     · upload chunk i from buffer i%2 (asynchronous)
 * so that the buffer being converted into is never one an upload still reads. */
#define STAGE_BYTES ((size_t)64 << 20)

/* Tests make chunks small (rlx__set_load_chunk_bytes) so tiny models cross chunk boundaries. */
static size_t chunk_override;
void rlx__set_load_chunk_bytes(size_t bytes) { chunk_override = bytes; }
static size_t chunk_limit(void) { return chunk_override ? chunk_override : STAGE_BYTES; }

typedef struct loader {
    rlx__dev_model *dm;
    rlx__load_progress *progress;
    int threads;
    void *stage[2];
    size_t stage_bytes;
    int pinned;
    int n;        /* chunks uploaded through staging so far */
    int in_flight; /* an upload from a staging buffer may still be running */
} loader;

static rlx_status stage_alloc(loader *L, size_t bytes) {
    if (L->stage[0] && L->stage_bytes >= bytes) return RLX_OK;
    rlx__device *d = L->dm->dev;
    const rlx__device_ops *ops = L->dm->ops;
    if (L->in_flight) {
        rlx_status s = ops->sync(d, NULL);
        if (s) return s;
        L->in_flight = 0;
    }
    for (int i = 0; i < 2; i++) {
        if (L->stage[i]) L->pinned ? ops->host_free(d, L->stage[i]) : free(L->stage[i]);
        L->stage[i] = NULL;
    }
    if (bytes < chunk_limit()) bytes = chunk_limit();
    L->pinned = ops->host_alloc != NULL;
    for (int i = 0; i < 2 && L->pinned; i++)
        if (ops->host_alloc(d, bytes, "a weight staging buffer", &L->stage[i]) != RLX_OK) {
            /* pageable staging still works; the copies are then synchronous */
            rlx_clear_error();
            if (i) ops->host_free(d, L->stage[0]);
            L->stage[0] = NULL;
            L->pinned = 0;
        }
    for (int i = 0; i < 2 && !L->pinned; i++)
        if (!(L->stage[i] = rlx__malloc(bytes, "a weight staging buffer"))) return RLX_ERR_OUT_OF_MEMORY;
    L->stage_bytes = bytes;
    return RLX_OK;
}

static rlx_status loader_finish(loader *L, rlx_status s) {
    rlx__device *d = L->dm->dev;
    const rlx__device_ops *ops = L->dm->ops;
    if (L->in_flight) {
        rlx_status t = ops->sync(d, NULL); /* never free a buffer an upload still reads */
        if (!s) s = t;
    }
    for (int i = 0; i < 2; i++)
        if (L->stage[i]) L->pinned ? ops->host_free(d, L->stage[i]) : free(L->stage[i]);
    memset(L->stage, 0, sizeof L->stage);
    return s;
}

/* Converts and uploads c into a new device buffer *out. */
static rlx_status load_conv(loader *L, const rlx__conv *c, const char *what, void **out) {
    rlx__device *d = L->dm->dev;
    const rlx__device_ops *ops = L->dm->ops;
    if (!rlx__conv_supported(c)) return rlx__fail(RLX_ERR_INTERNAL, "%s: no conversion to the device dtype", what);
    const size_t bytes = rlx__conv_out_bytes(c), row_bytes = (size_t)c->cols * rlx_dtype_size(c->out);
    const int64_t rows = rlx__conv_rows(c);
    const double src_per_row = rows ? (double)rlx__conv_src_bytes(c) / (double)rows : 0;
    rlx_status s = ops->alloc(d, bytes, what, out);
    if (s) return s;
    L->dm->weight_bytes += bytes;
    if (!rows || !row_bytes) return RLX_OK;
    unsigned char *direct = ops->host_view ? ops->host_view(d, *out) : NULL;
    if (!direct && (s = stage_alloc(L, row_bytes))) return s;
    const size_t chunk_bytes = direct ? chunk_limit() : L->stage_bytes < chunk_limit() ? L->stage_bytes : chunk_limit();
    int64_t chunk = (int64_t)(chunk_bytes / row_bytes);
    if (chunk < 1) chunk = 1;
    for (int64_t r = 0; r < rows; r += chunk) {
        const int64_t n = rows - r < chunk ? rows - r : chunk;
        if (direct) {
            rlx__conv_run(c, direct + (size_t)r * row_bytes, r, n, L->threads);
        } else {
            void *buf = L->stage[L->n & 1];
            rlx__conv_run(c, buf, r, n, L->threads);
            if (L->in_flight && (s = ops->sync(d, NULL))) return s;
            L->in_flight = 0;
            if ((s = ops->h2d(d, (unsigned char *)*out + (size_t)r * row_bytes, buf, (size_t)n * row_bytes, NULL))) return s;
            L->in_flight = 1;
            L->n++;
        }
        rlx__load_progress_add(L->progress, (uint64_t)(src_per_row * (double)n + 0.5));
    }
    return RLX_OK;
}

static rlx_status load_weight(loader *L, const rlx__weight *w, rlx_kdtype act, void **out) {
    const rlx__conv c = rlx__weight_conv(w, act == RLX_K_F32 ? RLX_DTYPE_F32 : RLX_DTYPE_BF16);
    return load_conv(L, &c, w->key, out);
}

/* The source bytes of a packed weight's parts and γ (what its load reads). */
static uint64_t derived_src_bytes(const rlx_model *m, const rlx__dweight *dw) {
    uint64_t b = 0;
    for (int p = 0; p < dw->n_parts; p++) {
        const rlx__conv c = rlx__weight_conv(&m->weights[dw->src[p]], RLX_DTYPE_F32);
        b += rlx__conv_src_bytes(&c);
    }
    if (dw->gamma >= 0) {
        const rlx__conv c = rlx__weight_conv(&m->weights[dw->gamma], RLX_DTYPE_F32);
        b += rlx__conv_src_bytes(&c);
    }
    return b;
}

/* A derived weight: source rows stacked (a tp rank's rows of each), column c scaled by γ[c] in
 * f32, rounded once. */
static rlx_status load_derived(loader *L, const rlx_model *m, const rlx__dweight *dw, rlx_kdtype act, void **out) {
    rlx__conv c;
    memset(&c, 0, sizeof c);
    c.out = act == RLX_K_F32 ? RLX_DTYPE_F32 : RLX_DTYPE_BF16;
    c.cols = dw->cols;
    for (int p = 0; p < dw->n_parts; p++) {
        const rlx__conv w = rlx__weight_conv(&m->weights[dw->src[p]], c.out);
        if (w.cols != dw->cols || c.n_parts + w.n_parts > RLX__CONV_MAX_PARTS)
            return rlx__fail(RLX_ERR_INTERNAL, "packed weight of %s: part %d does not stack (%lld columns, %d pieces)",
                             m->weights[dw->src[0]].key, p, (long long)w.cols, c.n_parts + w.n_parts);
        for (int q = 0; q < w.n_parts; q++) c.part[c.n_parts++] = w.part[q];
    }
    float *g = NULL;
    if (dw->gamma >= 0) {
        const rlx__weight *gw = &m->weights[dw->gamma];
        if (gw->numel != (size_t)dw->cols)
            return rlx__fail(RLX_ERR_INTERNAL, "packed weight of %s: γ '%s' has %zu elements for %lld columns",
                             m->weights[dw->src[0]].key, gw->key, gw->numel, (long long)dw->cols);
        if (!(g = rlx__malloc((size_t)dw->cols * sizeof(float), "a norm weight"))) return RLX_ERR_OUT_OF_MEMORY;
        rlx__weight_to_f32(gw, g);
        c.col_scale = g;
        const rlx__conv gc = rlx__weight_conv(gw, RLX_DTYPE_F32);
        rlx__load_progress_add(L->progress, rlx__conv_src_bytes(&gc));
    }
    char what[160];
    snprintf(what, sizeof what, "packed weight of %s", m->weights[dw->src[0]].key);
    rlx_status s = load_conv(L, &c, what, out);
    free(g);
    return s;
}

static int custom_reads(const rlx_model *m, int v) {
    for (int i = 0; i < m->list.n_stages; i++) {
        const rlx__stage *st = &m->list.stages[i];
        if (st->op != RLX__OP_CUSTOM) continue;
        for (int j = 0; j < st->n_in; j++)
            if (st->in[j] == v) return 1;
    }
    return 0;
}

static int kernel_available(const rlx__kernel_table *t, const rlx__kernel *k) {
    if (k->resid) { /* the f32 residual stream's variants */
        switch (k->kind) {
        case RLX__K_EMBED:
        case RLX__K_EMBED_ROWSCALE: return t->embed_f32 != NULL;
        case RLX__K_ADD:
        case RLX__K_ADD_ROWSCALE: return t->residual_add != NULL;
        case RLX__K_ROWSCALE:
        case RLX__K_RESIDUAL_CAST: return t->residual_rowscale != NULL;
        case RLX__K_RMS_NORM:
        case RLX__K_LAST_TOKEN_NORM: return t->residual_rms_norm != NULL;
        default: break;
        }
    }
    switch (k->kind) {
    case RLX__K_GEMM: return 1; /* the device's own GEMM */
    case RLX__K_EMBED: return t->embed != NULL;
    case RLX__K_RMS_NORM: return t->rms_norm != NULL;
    case RLX__K_ROPE: return t->rope != NULL;
    case RLX__K_ATTENTION: return t->attention != NULL;
    case RLX__K_ADD: return t->add != NULL;
    case RLX__K_SILU_MUL: return t->silu_mul != NULL;
    case RLX__K_LAST_TOKEN: return t->last_token != NULL;
    case RLX__K_EMBED_ROWSCALE: return t->embed_rowscale != NULL;
    case RLX__K_ROWSCALE: return t->rms_rowscale != NULL;
    case RLX__K_ADD_ROWSCALE: return t->add_rowscale != NULL;
    case RLX__K_FLASH_ATTENTION: return t->flash_attention != NULL;
    case RLX__K_ROPE_ATTENTION: return t->attention != NULL;
    case RLX__K_KV_WRITE: return t->kv_write != NULL;
    case RLX__K_DECODE_ATTENTION: return t->decode_attention != NULL;
    case RLX__K_SWIGLU_SCALED: return t->swiglu_scaled != NULL;
    case RLX__K_LAST_TOKEN_NORM: return t->last_token_rms_norm != NULL;
    case RLX__K_INPUT_IDS:
    case RLX__K_POSITIONS: return 1; /* uploads */
    case RLX__K_GATHER_ADD: return t->gather_add != NULL;
    case RLX__K_LAYER_NORM: return t->layer_norm != NULL;
    case RLX__K_GELU: return t->gelu != NULL;
    case RLX__K_SLICE_COLS: return t->slice_cols != NULL;
    case RLX__K_CLS_POOL:
    case RLX__K_MEAN_POOL: return t->seq_pool != NULL;
    case RLX__K_L2_NORMALIZE: return t->l2_normalize != NULL;
    case RLX__K_CUSTOM: return 1; /* the build checked the stage has an implementation here */
    case RLX__K_ALL_REDUCE:
    case RLX__K_ALL_GATHER: return 1; /* the model's communicator */
    case RLX__K_RESIDUAL_CAST: return t->residual_rowscale != NULL;
    case RLX__K_COUNT: break;
    }
    return 0;
}

static size_t workspace_bytes(const rlx_model *m) { return (size_t)m->profile.gemm_workspace_mb << 20; }

/* The descriptor of GEMM kernel k at M rows: x [M, K], c (the residual, or NULL) and d [M, N]. */
static rlx__gemm_desc gemm_desc(const rlx_model *m, const rlx__kernel *k, int64_t M, const void *x, const void *c,
                                void *d, void *workspace) {
    const rlx__plan *p = &m->dev->plan;
    const int64_t N = p->buf[k->out].cols, K = p->buf[k->in[0]].cols;
    rlx__gemm_desc g = {.M = M, .N = N, .K = K, .x = x, .ldx = K, .w = m->dev->wptr[k->w], .ldw = K,
                        .bias = k->bias >= 0 ? m->dev->wptr[k->bias] : NULL, .c = c, .ldc = N,
                        .beta = c ? 1.0f : 0.0f, .d = d, .ldd = N, .in_dtype = p->act_dtype,
                        .out_dtype = p->buf[k->out].kind == 1 ? RLX_K_F32 : p->act_dtype,
                        .workspace = workspace, .workspace_bytes = workspace ? workspace_bytes(m) : 0};
    return g;
}

static int64_t cap_rows(const rlx_model *m, const rlx__buf *b) {
    return b->rows == RLX__ROWS_TOKENS ? m->max_tokens : b->rows == RLX__ROWS_SEQUENCES ? m->max_seqs : b->fixed_rows;
}

/* profile kernels.gemm_autotune: every distinct GEMM shape of the plan, at each M bucket up to its
 * capacity (the capacity itself last), timed over the heuristic's candidates; the fastest goes
 * into the device's algorithm cache. Inputs are a non-zero constant (0x3c bytes: finite in bf16
 * and f32), the weights the real ones, C aliases D as the residual add does. */
static rlx_status autotune(rlx_model *m, rlx__dev_model *dm) {
    const rlx__plan *p = &dm->plan;
    const rlx__device_ops *ops = dm->ops;
    size_t xb = 0, db = 0;
    for (int i = 0; i < p->n; i++) {
        const rlx__kernel *k = &p->k[i];
        if (k->kind != RLX__K_GEMM) continue;
        const size_t rows = (size_t)cap_rows(m, &p->buf[k->out]);
        const size_t x = rows * (size_t)p->buf[k->in[0]].cols * (size_t)p->buf[k->in[0]].elem;
        const size_t d = rows * (size_t)p->buf[k->out].cols * (size_t)p->buf[k->out].elem;
        if (x > xb) xb = x;
        if (d > db) db = d;
    }
    if (!xb) return RLX_OK;
    void *x = NULL, *d = NULL, *ws = NULL;
    rlx_status s = ops->alloc(dm->dev, xb, "GEMM autotuning inputs", &x);
    if (!s) s = ops->alloc(dm->dev, db, "GEMM autotuning outputs", &d);
    if (!s && m->profile.gemm_workspace_mb > 0) s = ops->alloc(dm->dev, workspace_bytes(m), "GEMM autotuning workspace", &ws);
    if (!s) s = ops->memset(dm->dev, x, 0x3c, xb, NULL);
    if (!s) s = ops->memset(dm->dev, d, 0x3c, db, NULL);
    void *timer = NULL;
    if (!s) s = ops->timer_create(dm->dev, 2, &timer);
    if (!s) s = ops->timer_mark(dm->dev, timer, 0, NULL);
    /* distinct shapes (keys without M) and the (shape, bucket) pairs already timed: the per-layer
     * GEMMs repeat, and a pruned last layer's GEMMs are the same shapes at small M */
    int shapes = 0, timed = 0, max_pairs = 0;
    for (int i = 0; i < p->n; i++)
        if (p->k[i].kind == RLX__K_GEMM) max_pairs += 64; /* buckets up to 2^31 rows: < 64 */
    rlx__gemm_key *seen = s ? NULL : rlx__calloc((size_t)p->n + 1, sizeof *seen, "GEMM autotuning shapes");
    rlx__gemm_key *done = s ? NULL : rlx__calloc((size_t)max_pairs + 1, sizeof *done, "GEMM autotuning shapes");
    if (!s && (!seen || !done)) s = RLX_ERR_OUT_OF_MEMORY;
    for (int i = 0; i < p->n && !s; i++) {
        const rlx__kernel *k = &p->k[i];
        if (k->kind != RLX__K_GEMM) continue;
        const int64_t cap = cap_rows(m, &p->buf[k->out]);
        rlx__gemm_desc g = gemm_desc(m, k, cap, x, k->residual >= 0 ? d : NULL, d, ws);
        rlx__gemm_key shape = rlx__gemm_key_of(&g);
        shape.M_bucket = 0;
        int known = 0;
        for (int j = 0; j < shapes && !known; j++) known = !memcmp(&seen[j], &shape, sizeof shape);
        if (!known) seen[shapes++] = shape;
        for (int64_t M = 1; !s; M = rlx__gemm_bucket(M) + 1) {
            g.M = rlx__gemm_bucket(M) < cap ? rlx__gemm_bucket(M) : cap;
            const rlx__gemm_key key = rlx__gemm_key_of(&g);
            int again = 0;
            for (int j = 0; j < timed && !again; j++) again = !memcmp(&done[j], &key, sizeof key);
            if (!again && timed < max_pairs) {
                s = ops->gemm_tune(dm->dev, &g, 3, NULL);
                done[timed++] = key;
            }
            if (g.M == cap) break;
        }
    }
    double ms = 0;
    if (!s) s = ops->timer_mark(dm->dev, timer, 1, NULL);
    if (!s) s = ops->timer_read(dm->dev, timer, 2, &ms);
    if (timer) ops->timer_destroy(dm->dev, timer, 2);
    free(seen);
    free(done);
    if (ws) ops->free(dm->dev, ws);
    if (d) ops->free(dm->dev, d);
    if (x) ops->free(dm->dev, x);
    if (s) return rlx__fail_prefix(s, "kernels.gemm_autotune");
    return rlx__model_log(m, "gemm autotune: %d GEMM shapes at %d (shape, M bucket) pairs timed in %.1f ms", shapes, timed, ms);
}

rlx_status rlx__dev_model_prepare(rlx_model *m, rlx_device_kind kind, int ordinal, rlx_fusion_policy policy,
                                  rlx_kdtype act, rlx__load_progress *progress) {
    const rlx__device_ops *ops = rlx__device_ops_for(kind);
    if (!ops) {
        if (kind == RLX_DEVICE_SIMT)
            return rlx__fail(RLX_ERR_NO_DEVICE, "device 'simt' is not linked into this program (it is a test device: link rlx_simt_device and call rlx_simt_device_install)");
        return rlx__fail(RLX_ERR_NO_DEVICE, "device '%s' is not available: this build of rlx has no CUDA backend", rlx_device_kind_name(kind));
    }
    rlx__dev_model *dm = rlx__calloc(1, sizeof *dm, "a device model");
    if (!dm) return RLX_ERR_OUT_OF_MEMORY;
    dm->ops = ops;
    dm->ordinal = ordinal;
    rlx_status s = ops->open(ordinal, &dm->dev);
    if (s) goto fail;
    dm->sm_count = ops->sm_count ? ops->sm_count(dm->dev) : 0;
    if ((s = rlx__plan_build(m, policy, act, &dm->plan))) goto fail;
    for (int i = 0; i < dm->plan.n; i++) {
        const rlx__kernel *k = &dm->plan.k[i];
        if (!kernel_available(&ops->k, k)) {
            s = rlx__fail(RLX_ERR_UNSUPPORTED, "device '%s' has no %s kernel (stage %s)", ops->name,
                          rlx__kernel_name(k->kind), k->st->name);
            goto fail;
        }
    }
    if (!(dm->positions_buf = rlx__calloc((size_t)dm->plan.n_buf + 1, 1, "the positions map"))) {
        s = RLX_ERR_OUT_OF_MEMORY;
        goto fail;
    }
    for (int i = 0; i < dm->plan.n; i++) {
        const rlx__kernel *k = &dm->plan.k[i];
        if (k->kind == RLX__K_POSITIONS) dm->positions_buf[k->out] = 1;
        /* a graph holds device work only: host code in the middle of a prefill cannot be replayed */
        if (m->profile.cuda_graphs && (k->kind == RLX__K_CUSTOM || k->kind == RLX__K_INPUT_IDS ||
                                       k->kind == RLX__K_ALL_REDUCE || k->kind == RLX__K_ALL_GATHER)) {
            s = rlx__fail(RLX_ERR_UNSUPPORTED,
                          "profile %s: kernels.cuda_graphs = true, but the plan's %s kernel (stage %s) %s, which a CUDA "
                          "graph cannot replay yet; set it to false",
                          m->profile.source, rlx__kernel_name(k->kind), k->st->name,
                          k->kind == RLX__K_CUSTOM      ? "runs a custom stage's launcher (host code) mid-prefill"
                          : k->kind == RLX__K_INPUT_IDS ? "stages named id inputs from the host per prefill"
                                                        : "is a tensor-parallel collective (not captured yet)");
            goto fail;
        }
    }
    dm->n_wptr = m->n_weights + dm->plan.n_dw;
    dm->wptr = rlx__calloc((size_t)dm->n_wptr + 1, sizeof(void *), "device weight table");
    dm->n_cptr = (size_t)m->list.n_values;
    dm->cptr = rlx__calloc(dm->n_cptr + 1, sizeof(void *), "device constant table");
    if (!dm->wptr || !dm->cptr) {
        s = RLX_ERR_OUT_OF_MEMORY;
        goto fail;
    }
    /* Only what some kernel reads: a weight folded into a packed one is not uploaded alone. */
    loader L = {.dm = dm, .progress = progress, .threads = m->threads};
    if (progress) {
        uint64_t total = 0;
        for (int i = 0; i < m->n_weights; i++)
            if (dm->plan.used_weight[i]) {
                const rlx__conv c = rlx__weight_conv(&m->weights[i], RLX_DTYPE_F32);
                total += rlx__conv_src_bytes(&c); /* a tp rank reads its parts only */
            }
        for (int j = 0; j < dm->plan.n_dw; j++) total += derived_src_bytes(m, &dm->plan.dw[j]);
        rlx__load_progress_begin(progress, total);
    }
    for (int i = 0; i < m->n_weights && !s; i++)
        if (dm->plan.used_weight[i]) s = load_weight(&L, &m->weights[i], act, &dm->wptr[i]);
    for (int j = 0; j < dm->plan.n_dw && !s; j++) s = load_derived(&L, m, &dm->plan.dw[j], act, &dm->wptr[m->n_weights + j]);
    if ((s = loader_finish(&L, s))) goto fail;
    for (int v = 0; v < m->list.n_values; v++) {
        if (!m->consts[v]) continue;
        const rlx__value *val = &m->list.values[v];
        const size_t n = (size_t)val->fixed_rows * (size_t)val->cols, bytes = n * sizeof(float);
        if (custom_reads(m, v)) {
            /* parameters of tier-2 stages: in the activation dtype, as every buffer they get */
            float *f = rlx__malloc(bytes, val->name);
            if (!f) {
                s = RLX_ERR_OUT_OF_MEMORY;
                goto fail;
            }
            memcpy(f, m->consts[v], bytes);
            s = upload_f32(dm, f, n, act, val->name, &dm->cptr[v]);
            free(f);
            if (s) goto fail;
            continue;
        }
        if ((s = ops->alloc(dm->dev, bytes, val->name, &dm->cptr[v]))) goto fail;
        if ((s = ops->h2d(dm->dev, dm->cptr[v], m->consts[v], bytes, NULL))) goto fail;
        dm->weight_bytes += bytes;
    }
    if ((s = ops->sync(dm->dev, NULL))) goto fail;
    m->dev = dm;
    if (m->profile.gemm_autotune && (s = autotune(m, dm))) {
        m->dev = NULL;
        goto fail;
    }
    return RLX_OK;
fail:
    rlx__dev_model_free(dm);
    return s;
}

/* ---- session ----------------------------------------------------------------------------------------- */

static size_t meta_bytes(const rlx_model *m) {
    return (size_t)(2 * m->max_tokens + m->max_seqs + 1) * sizeof(int32_t);
}

/* Page indices one KV call may list: every sequence at the model's context in pages of 1 token
 * (capped at 2^20 tokens per sequence for models without RoPE tables, whose context is unbounded). */
static int64_t kv_index_cap(const rlx_model *m) {
    int64_t ctx = rlx_model_max_context(m);
    return m->max_seqs * (ctx < (1 << 20) ? ctx : (1 << 20));
}

static size_t kv_meta_bytes(const rlx_model *m) {
    if (!m->n_kv_layers) return 0;
    return (size_t)(2 * m->max_seqs + 1 + m->max_tokens + kv_index_cap(m)) * sizeof(int32_t);
}

/* decode_attention's split-KV partials: about 2 waves of 256 CTAs' query rows at full width (the
 * launcher uses fewer splits when a call needs more room), for models whose fused attention can
 * take the decode kernel; 0 otherwise. */
static size_t attn_work_bytes(const rlx_model *m) {
    const rlx__plan *p = &m->dev->plan;
    size_t best = 0;
    for (int i = 0; i < p->n; i++) {
        const rlx__kernel *k = &p->k[i];
        if (rlx__plan_attention_kind(p, k, 1, 1) != RLX__K_DECODE_ATTENTION) continue;
        const size_t b = (size_t)2 * 256 * (size_t)rlx_decode_max_rows(k->st->head_dim) * (size_t)(k->st->head_dim + 1) * sizeof(float);
        if (b > best) best = b;
    }
    return best;
}

rlx_status rlx__dev_session_create(const rlx_model *m, rlx__dev_session *s) {
    memset(s, 0, sizeof *s);
    const rlx__dev_model *dm = m->dev;
    rlx_status st = dm->ops->bind(dm->dev);
    if (st) return st;
    st = dm->ops->alloc(dm->dev, dm->plan.arena_bytes ? dm->plan.arena_bytes : 256, "the activation arena", &s->arena);
    if (!st) st = dm->ops->alloc(dm->dev, meta_bytes(m), "the batch metadata", &s->meta);
    for (int i = 0; i < 2 && !st; i++) {
        st = dm->ops->host_alloc(dm->dev, meta_bytes(m), "the batch metadata staging (pinned)", &s->host_meta[i]);
        if (!st) st = dm->ops->timer_create(dm->dev, 1, &s->fence[i]);
    }
    if (!st && m->profile.gemm_workspace_mb > 0)
        st = dm->ops->alloc(dm->dev, workspace_bytes(m), "the GEMM workspace (profile kernels.gemm_workspace_mb)", &s->workspace);
    if (!st && (s->kv_meta_bytes = kv_meta_bytes(m)))
        st = dm->ops->alloc(dm->dev, s->kv_meta_bytes, "the KV page tables of a call", &s->kv_meta);
    if (!st && (s->attn_work_bytes = attn_work_bytes(m)))
        st = dm->ops->alloc(dm->dev, s->attn_work_bytes, "decode attention's split-KV workspace", &s->attn_work);
    if (st) rlx__dev_session_free(m, s);
    return st;
}

void rlx__dev_session_free(const rlx_model *m, rlx__dev_session *s) {
    if (!m || !m->dev) return;
    const rlx__device_ops *ops = m->dev->ops;
    ops->bind(m->dev->dev);
    for (int i = 0; i < s->n_graphs; i++) ops->graph_destroy(m->dev->dev, s->graphs[i].graph);
    for (int i = 0; i < 2; i++) {
        /* a copy from the staging may still be in flight */
        if (s->fence[i] && s->fenced[i]) ops->timer_read(m->dev->dev, s->fence[i], 1, NULL);
        if (s->fence[i]) ops->timer_destroy(m->dev->dev, s->fence[i], 1);
        if (s->host_meta[i]) ops->host_free(m->dev->dev, s->host_meta[i]);
    }
    if (s->arena) m->dev->ops->free(m->dev->dev, s->arena);
    if (s->meta) m->dev->ops->free(m->dev->dev, s->meta);
    if (s->workspace) m->dev->ops->free(m->dev->dev, s->workspace);
    if (s->kv_meta) m->dev->ops->free(m->dev->dev, s->kv_meta);
    if (s->attn_work) m->dev->ops->free(m->dev->dev, s->attn_work);
    memset(s, 0, sizeof *s);
}

/* Device address of plan buffer b (model values first, then the planner's own buffers). */
static void *bptr(const rlx_model *m, const rlx__dev_session *s, int b) {
    const rlx__dev_model *dm = m->dev;
    if (b < 0) return NULL;
    if (b < m->list.n_values) {
        if (dm->cptr[b]) return dm->cptr[b];
        if (b == m->tokens) return s->meta;
    }
    if (dm->positions_buf[b]) return (int32_t *)s->meta + m->max_tokens;
    if (dm->plan.offset[b] == SIZE_MAX) return NULL;
    return (char *)s->arena + dm->plan.offset[b];
}

static int64_t buf_rows(const rlx__buf *bf, const rlx__batch *b) {
    return bf->rows == RLX__ROWS_TOKENS ? b->n_tokens : bf->rows == RLX__ROWS_SEQUENCES ? b->n_seqs : bf->fixed_rows;
}

/* A KV call's page tables on the device (s->kv_meta) and whether the fast kernels may read its
 * rows (16-byte aligned bases and strides). */
typedef struct kv_dev {
    const rlx__kv_call *kv;
    const int32_t *kv_len, *indptr, *tok_page, *indices;
    int aligned;
} kv_dev;

/* Uploads the page tables of b->kv: kv_len [n], page indptr [n+1], each new token's page [T], the
 * page indices, packed into s->kv_meta (a stream-ordered copy of pageable memory: it has left the
 * host buffer when the call returns). */
static rlx_status kv_upload(const rlx_model *m, rlx__dev_session *s, const rlx__batch *b, void *stream, kv_dev *out) {
    const rlx__kv_call *kv = b->kv;
    const rlx__device_ops *ops = m->dev->ops;
    const int64_t n = b->n_seqs, T = b->n_tokens, np = kv->total_pages;
    if (np > kv_index_cap(m) || !s->kv_meta)
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "kv pages: %lld pages in one call exceed the session's page-table capacity of %lld",
                         (long long)np, (long long)kv_index_cap(m));
    const size_t nb = (size_t)(2 * n + 1 + T + np) * sizeof(int32_t);
    int32_t *h = rlx__malloc(nb, "the KV page tables");
    if (!h) return RLX_ERR_OUT_OF_MEMORY;
    int32_t *h_len = h, *h_ptr = h + n, *h_tok = h + 2 * n + 1, *h_idx = h + 2 * n + 1 + T;
    for (int64_t q = 0; q < n; q++) {
        h_len[q] = (int32_t)kv->kv_len[q];
        for (int64_t t = b->seq_start[q]; t < b->seq_start[q + 1]; t++)
            h_tok[t] = kv->pages->kv_indices[kv->pages->kv_indptr[q] + ((kv->cached[q] + t - b->seq_start[q]) >> kv->page_shift)];
    }
    memcpy(h_ptr, kv->pages->kv_indptr, (size_t)(n + 1) * sizeof(int32_t));
    memcpy(h_idx, kv->pages->kv_indices, (size_t)np * sizeof(int32_t));
    rlx_status st = ops->h2d(m->dev->dev, s->kv_meta, h, nb, stream);
    free(h);
    if (st) return st;
    out->kv = kv;
    out->kv_len = (const int32_t *)s->kv_meta, out->indptr = out->kv_len + n, out->tok_page = out->kv_len + 2 * n + 1;
    out->indices = out->tok_page + T;
    const int64_t vec = 16 / (int64_t)kv->elem;
    out->aligned = kv->page_stride % vec == 0 && kv->token_stride % vec == 0 && kv->head_stride % vec == 0;
    for (int l = 0; l < kv->desc->num_layers && out->aligned; l++)
        out->aligned = !((uintptr_t)rlx__kv_layer_k(kv, l) & 15u) && !((uintptr_t)rlx__kv_layer_v(kv, l) & 15u);
    return RLX_OK;
}

/* Enqueues the plan's kernels for batch b on stream; the batch metadata is already in s->meta.
 * b->n_tokens rows per token (a graph runs its bucket's edge: the rows past the real tokens are
 * padding that no sequence reads), max_len bounds every sequence. With timer, marks every kernel.
 * kd: a KV call's page tables (NULL for a plain prefill). */
/* profile kernels.attention_block_q: the query rows of flash_attention's CTA tile (128 = WIDE,
 * 64 = NARROW); 0 leaves the launcher's rule (rlx_flash_tile) to choose. The other attention
 * kernels have one shape and read no tile. */
static int flash_tile(int block_q) {
    return block_q == 128 ? RLX_FA_TILE_WIDE : block_q == 64 ? RLX_FA_TILE_NARROW : RLX_FA_TILE_RULE;
}

static rlx_status run_plan(const rlx_model *m, rlx__dev_session *s, const rlx__batch *b, int64_t max_len, void *stream,
                           void *timer, const kv_dev *kd) {
    const rlx__dev_model *dm = m->dev;
    const rlx__device_ops *ops = dm->ops;
    const rlx__plan *p = &dm->plan;
    const int32_t *d_pos = (const int32_t *)s->meta + m->max_tokens, *d_start = (const int32_t *)s->meta + 2 * m->max_tokens;
    const rlx_kdtype dt = p->act_dtype;
    int32_t *ids = NULL; /* host staging of named id inputs */
    rlx_status st = RLX_OK;
    for (int i = 0; i < p->n && !st; i++) {
        if (timer && (st = ops->timer_mark(dm->dev, timer, i, stream))) break;
        const rlx__kernel *k = &p->k[i];
        const rlx__stage *sg = k->st;
        const rlx__buf *ob = k->out >= 0 ? &p->buf[k->out] : NULL; /* kv_only kv_write has no output buffer */
        const int64_t rows = ob ? buf_rows(ob, b) : 0, cols = ob ? ob->cols : 0;
        void *y = bptr(m, s, k->out);
        const void *x = bptr(m, s, k->in[0]);
        const int64_t xc = k->in[0] >= 0 ? p->buf[k->in[0]].cols : 0;
        void *w = k->w >= 0 ? dm->wptr[k->w] : NULL;
        void *sh = bptr(m, s, k->shadow); /* the f32 stream's bf16 copy this kernel also writes, or NULL */
        int code = 0;
        switch (k->kind) {
        case RLX__K_EMBED:
        case RLX__K_EMBED_ROWSCALE:
            if (k->resid)
                code = ops->k.embed_f32(y, sh, k->kind == RLX__K_EMBED_ROWSCALE ? bptr(m, s, k->out2) : NULL, s->meta, w, rows, cols,
                                        k->eps > 0 ? k->eps : 1e-6f, dt, stream);
            else if (k->kind == RLX__K_EMBED)
                code = ops->k.embed(y, s->meta, w, rows, cols, dt, stream);
            else
                code = ops->k.embed_rowscale(y, bptr(m, s, k->out2), s->meta, w, rows, cols, k->eps, dt, stream);
            break;
        case RLX__K_RMS_NORM:
            code = k->resid ? ops->k.residual_rms_norm(y, x, w, NULL, rows, cols, k->eps, dt, stream)
                            : ops->k.rms_norm(y, x, w, rows, cols, k->eps, dt, stream);
            break;
        case RLX__K_ROWSCALE: {
            const rlx__buf *xb = &p->buf[k->in[0]];
            code = k->resid ? ops->k.residual_rowscale(y, sh, x, buf_rows(xb, b), xb->cols, k->eps, dt, stream)
                            : ops->k.rms_rowscale(y, x, buf_rows(xb, b), xb->cols, k->eps, dt, stream);
            break;
        }
        case RLX__K_RESIDUAL_CAST: code = ops->k.residual_rowscale(NULL, y, x, rows, cols, 1e-6f, dt, stream); break;
        case RLX__K_GEMM: {
            const rlx__gemm_desc g = gemm_desc(m, k, rows, x, k->residual >= 0 ? bptr(m, s, k->residual) : NULL, y,
                                               s->workspace);
            st = ops->gemm(dm->dev, &g, stream);
            break;
        }
        case RLX__K_ROPE:
            code = ops->k.rope(y, x, bptr(m, s, k->in[1]), bptr(m, s, k->in[2]), d_pos, rows, sg->heads, sg->head_dim,
                               cols, dt, stream);
            break;
        case RLX__K_KV_WRITE: {
            const int paged = kd && k->kv_layer >= 0;
            if (k->kv_only && !paged) break; /* plain prefill: attention reads k and v where they are */
            const int64_t kvw = sg->kv_heads * sg->head_dim;
            rlx_kv_write_args a = {.k = x, .v = x, .ld = xc, .row_scale = bptr(m, s, k->in[1]), .rope = k->rope,
                                   .cos_t = bptr(m, s, k->in[2]), .sin_t = bptr(m, s, k->in[3]), .pos = d_pos,
                                   .T = b->n_tokens, .kv_heads = sg->kv_heads, .head_dim = sg->head_dim, .dt = dt};
            if (k->kv_only) { /* unfused: rotated k and v in buffers of their own */
                a.v = bptr(m, s, k->in[1]);
                a.row_scale = NULL;
            } else { /* fused: the K and V columns of the packed QKV row */
                const size_t e = dt == RLX_K_F32 ? 4 : 2;
                a.k = (const char *)x + (size_t)(sg->heads * sg->head_dim) * e;
                a.v = (const char *)x + (size_t)(sg->heads * sg->head_dim + kvw) * e;
            }
            if (paged) {
                const rlx__kv_call *kv = kd->kv;
                a.tok_page = kd->tok_page;
                a.dst = (rlx_kv_ref){.k = rlx__kv_layer_k(kv, k->kv_layer), .v = rlx__kv_layer_v(kv, k->kv_layer),
                                     .page_stride = kv->page_stride, .token_stride = kv->token_stride,
                                     .head_stride = kv->head_stride, .page_shift = kv->page_shift};
            } else {
                a.dst = (rlx_kv_ref){.k = y, .v = bptr(m, s, k->out2), .token_stride = kvw, .head_stride = sg->head_dim};
            }
            code = ops->k.kv_write(&a, stream);
            break;
        }
        case RLX__K_ATTENTION:
        case RLX__K_FLASH_ATTENTION:
        case RLX__K_ROPE_ATTENTION: {
            const int unfused = k->kind == RLX__K_ATTENTION, paged = kd && k->kv_layer >= 0;
            const rlx__kv_call *kv = paged ? kd->kv : NULL;
            rlx_attn_args a = {.o = y, .q = x, .ldq = xc, .ldo = cols, .seq_start = d_start, .n_tokens = b->n_tokens,
                               .n_seqs = b->n_seqs, .max_q = max_len, .max_kv = paged ? kv->max_kv : max_len,
                               .heads = sg->heads, .kv_heads = sg->kv_heads, .head_dim = sg->head_dim, .causal = sg->causal,
                               .scale = (float)(1.0 / sqrt((double)sg->head_dim)), .dt = dt,
                               .work = s->attn_work, .work_bytes = s->attn_work_bytes, .sm_count = m->dev->sm_count,
                               .tile = flash_tile(m->profile.attention_block_q)};
            if (!unfused) {
                a.q_scale = bptr(m, s, k->in[1]);
                a.rope = k->rope;
                a.cos_t = bptr(m, s, k->in[2]), a.sin_t = bptr(m, s, k->in[3]), a.pos = d_pos;
            }
            if (paged)
                a.kv = (rlx_kv_ref){.k = rlx__kv_layer_k(kv, k->kv_layer), .v = rlx__kv_layer_v(kv, k->kv_layer),
                                    .page_indptr = kd->indptr, .page_indices = kd->indices, .kv_len = kd->kv_len,
                                    .page_stride = kv->page_stride, .token_stride = kv->token_stride,
                                    .head_stride = kv->head_stride, .page_shift = kv->page_shift};
            else
                a.kv = (rlx_kv_ref){.k = bptr(m, s, k->kv_k), .v = bptr(m, s, k->kv_v), .token_stride = p->buf[k->kv_k].cols,
                                    .head_stride = sg->head_dim};
            /* the planner's rule picks the kernel for this call's shape */
            const rlx__kkind run = rlx__plan_attention_kind(p, k, max_len, paged ? kd->aligned : 1);
            code = run == RLX__K_DECODE_ATTENTION  ? ops->k.decode_attention(&a, stream)
                   : run == RLX__K_FLASH_ATTENTION ? ops->k.flash_attention(&a, stream)
                                                   : ops->k.attention(&a, stream);
            break;
        }
        case RLX__K_DECODE_ATTENTION: st = rlx__fail(RLX_ERR_INTERNAL, "kernel plan: decode_attention is chosen per call, never planned"); break;
        case RLX__K_ADD:
        case RLX__K_ADD_ROWSCALE:
            if (k->resid) /* f32 stream + branch (in dt; in f32 when resid == 2) */
                code = ops->k.residual_add(y, sh, k->kind == RLX__K_ADD_ROWSCALE ? bptr(m, s, k->out2) : NULL, x, bptr(m, s, k->in[1]),
                                           rows, cols, k->eps > 0 ? k->eps : 1e-6f, k->resid == 2 ? RLX_K_F32 : dt, stream);
            else if (k->kind == RLX__K_ADD)
                code = ops->k.add(y, x, bptr(m, s, k->in[1]), rows * cols, dt, stream);
            else
                code = ops->k.add_rowscale(y, bptr(m, s, k->out2), x, bptr(m, s, k->in[1]), rows, cols, k->eps, dt, stream);
            break;
        case RLX__K_SILU_MUL: code = ops->k.silu_mul(y, x, bptr(m, s, k->in[1]), rows, cols, cols, cols, dt, stream); break;
        case RLX__K_SWIGLU_SCALED:
            code = ops->k.swiglu_scaled(y, x, bptr(m, s, k->in[1]), rows, cols, xc, dt, stream);
            break;
        case RLX__K_LAST_TOKEN: code = ops->k.last_token(y, x, d_start, b->n_seqs, cols, k->resid ? RLX_K_F32 : dt, stream); break;
        case RLX__K_LAST_TOKEN_NORM:
            code = k->resid ? ops->k.residual_rms_norm(y, x, w, d_start, b->n_seqs, cols, k->eps, dt, stream)
                            : ops->k.last_token_rms_norm(y, x, w, d_start, b->n_seqs, cols, k->eps, dt, stream);
            break;
        case RLX__K_INPUT_IDS:
            if (!ids && !(ids = rlx__malloc((size_t)b->n_tokens * sizeof *ids, "id inputs"))) {
                st = RLX_ERR_OUT_OF_MEMORY;
                break;
            }
            st = rlx__cpu_input_ids(ids, m, (int)(k->st - m->list.stages), b);
            if (!st) st = ops->h2d(dm->dev, y, ids, (size_t)b->n_tokens * sizeof *ids, stream);
            if (!st) st = ops->sync(dm->dev, stream); /* ids is reused by the next upload */
            break;
        case RLX__K_POSITIONS: break; /* y is meta's positions, uploaded with the batch (bptr) */
        case RLX__K_GATHER_ADD:
            code = ops->k.gather_add(y, x, bptr(m, s, k->in[1]), w, rows, cols, dt, stream);
            break;
        case RLX__K_LAYER_NORM:
            code = ops->k.layer_norm(y, x, bptr(m, s, k->in[1]), w, k->bias >= 0 ? dm->wptr[k->bias] : NULL, rows, cols,
                                     k->eps, dt, stream);
            break;
        case RLX__K_GELU: code = ops->k.gelu(y, x, rows * cols, dt, stream); break;
        case RLX__K_SLICE_COLS:
            code = ops->k.slice_cols(y, x, rows, xc, sg->slice_begin, cols, dt, stream);
            break;
        case RLX__K_CLS_POOL:
        case RLX__K_MEAN_POOL:
            code = ops->k.seq_pool(y, x, d_start, b->n_seqs, cols, k->kind == RLX__K_MEAN_POOL, dt, stream);
            break;
        case RLX__K_L2_NORMALIZE: code = ops->k.l2_normalize(y, x, rows, cols, dt, stream); break;
        case RLX__K_CUSTOM: {
            void *outs[RLX__STAGE_MAX_OUT] = {0};
            const void *ins[RLX__STAGE_MAX_IN] = {0}, *ws[RLX__STAGE_MAX_W] = {0};
            const int si = k->stages[0];
            for (int j = 0; j < sg->n_out; j++) outs[j] = bptr(m, s, sg->out[j]);
            /* a stream value reaches the stage as its copy in the activation dtype */
            for (int j = 0; j < sg->n_in; j++)
                ins[j] = sg->in[j] == m->tokens ? s->meta
                         : p->act_copy && p->act_copy[sg->in[j]] >= 0 ? bptr(m, s, p->act_copy[sg->in[j]])
                                                                       : bptr(m, s, sg->in[j]);
            for (int j = 0; j < sg->n_w; j++) {
                int wi = m->stage_w[(size_t)si * RLX__STAGE_MAX_W + (size_t)j];
                ws[j] = wi >= 0 ? dm->wptr[wi] : NULL;
            }
            rlx__custom_io io = {.device = m->device, .dtype = dt == RLX_K_F32 ? RLX_DTYPE_F32 : RLX_DTYPE_BF16,
                                 .out = outs, .in = ins, .w = ws, .n_tokens = b->n_tokens, .n_seqs = b->n_seqs,
                                 .seq_start = d_start, .stream = stream, .threads = m->threads};
            st = rlx__custom_invoke(m, si, &io);
            if (!st) st = ops->check(dm->dev, 0, sg->name);
            break;
        }
        case RLX__K_ALL_REDUCE:
        case RLX__K_ALL_GATHER: {
            /* one plan entry: the partial sums (or this rank's logit columns) of every rank */
            const rlx_dtype cdt = ob->kind == 1 || dt == RLX_K_F32 ? RLX_DTYPE_F32 : RLX_DTYPE_BF16;
            if (k->kind == RLX__K_ALL_REDUCE)
                st = rlx_comm_all_reduce(m->comm, x, y, (size_t)(rows * cols), cdt, stream);
            else
                st = rlx__comm_all_gather_cols(m->comm, x, y, bptr(m, s, k->out2), rows, xc, cols, cdt, stream);
            if (st) st = rlx__fail_prefix(st, "stage %s", sg->name);
            break;
        }
        case RLX__K_COUNT: st = rlx__fail(RLX_ERR_INTERNAL, "kernel plan: bad kernel kind"); break;
        }
        if (!st && code) st = ops->check(dm->dev, code, sg->name);
    }
    if (timer && !st) st = ops->timer_mark(dm->dev, timer, p->n, stream);
    free(ids);
    return st;
}

/* The graph of (tokens, seqs), or NULL; bumps its LRU stamp. */
static rlx__graph_entry *find_graph(rlx__dev_session *s, int64_t tokens, int64_t seqs) {
    for (int i = 0; i < s->n_graphs; i++)
        if (s->graphs[i].tokens == tokens && s->graphs[i].seqs == seqs) {
            s->graphs[i].last_use = ++s->clock;
            return &s->graphs[i];
        }
    return NULL;
}

static void keep_graph(const rlx_model *m, rlx__dev_session *s, int64_t tokens, int64_t seqs, void *graph) {
    int at = s->n_graphs;
    if (at == RLX__GRAPH_CAP) {
        at = 0;
        for (int i = 1; i < s->n_graphs; i++)
            if (s->graphs[i].last_use < s->graphs[at].last_use) at = i;
        m->dev->ops->graph_destroy(m->dev->dev, s->graphs[at].graph);
        s->gstats.evictions++;
    } else {
        s->n_graphs++;
    }
    s->graphs[at] = (rlx__graph_entry){tokens, seqs, graph, ++s->clock};
}

/* Captures the plan for (tokens rows, seqs) on a capture stream of the device (nothing runs). */
static rlx_status capture(const rlx_model *m, rlx__dev_session *s, const rlx__batch *b, int64_t tokens) {
    const rlx__device_ops *ops = m->dev->ops;
    void *cs = NULL, *graph = NULL;
    rlx_status st = ops->graph_begin(m->dev->dev, &cs);
    if (st) return st;
    rlx__batch pb = *b;
    pb.n_tokens = tokens;
    /* every sequence of a batch that maps to this graph is at most `tokens` long */
    rlx_status run = run_plan(m, s, &pb, tokens, cs, NULL, NULL);
    st = ops->graph_end(m->dev->dev, cs, &graph); /* ends the capture whatever happened */
    if (run) {
        if (!st) ops->graph_destroy(m->dev->dev, graph);
        return run;
    }
    if (st) return st;
    keep_graph(m, s, tokens, b->n_seqs, graph);
    s->gstats.captures++;
    return RLX_OK;
}

void rlx__dev_graph_stats(const rlx__dev_session *s, rlx__graph_stats *out) { *out = s->gstats; }

rlx_status rlx__dev_prefill(const rlx_model *m, rlx__dev_session *s, const rlx__batch *b, void *stream,
                            double *kernel_ms) {
    const rlx__dev_model *dm = m->dev;
    const rlx__device_ops *ops = dm->ops;
    const rlx__plan *p = &dm->plan;
    if (s->broken)
        return rlx__fail(RLX_ERR_SESSION_BROKEN, "this session hit a device fault earlier and cannot run again: destroy it and create a new one");
    rlx_status st = ops->bind(dm->dev); /* servers call from any thread: the model's device, every time */
    if (st) return st;
    /* A graph (kernels.cuda_graphs) runs the bucket of the token count: one graph serves every
     * prompt length of the bucket, the rows past the real tokens are padding (token 0, position 0)
     * that no sequence covers. The per-kernel timing of the bench runs kernel by kernel. */
    /* KV calls run kernel by kernel: their page tables, key counts and decode split counts change
     * from call to call, which a captured graph would freeze */
    const int graphs = m->profile.cuda_graphs && !kernel_ms && !b->kv;
    int64_t rows = b->n_tokens;
    if (graphs) {
        rows = rlx__gemm_bucket(b->n_tokens);
        if (rows > m->max_tokens) rows = m->max_tokens;
    }
    /* Metadata through pinned staging, two buffers in turn: the copy is asynchronous, so a buffer
     * is refilled only after its previous copy ran (its fence: two prefills ago, long done). */
    const int slot = s->slot;
    s->slot ^= 1;
    if (s->fenced[slot] && (st = ops->timer_read(dm->dev, s->fence[slot], 1, NULL))) goto out;
    s->fenced[slot] = 0;
    int32_t *meta = s->host_meta[slot];
    int32_t *pos = meta + m->max_tokens, *start = meta + 2 * m->max_tokens;
    int64_t max_len = 0;
    memcpy(meta, b->tokens, (size_t)b->n_tokens * sizeof(int32_t));
    for (int64_t q = 0; q < b->n_seqs; q++) {
        start[q] = (int32_t)b->seq_start[q];
        int64_t len = b->seq_start[q + 1] - b->seq_start[q];
        if (len > max_len) max_len = len;
        /* a KV call continues each sequence at its cached length */
        const int64_t p0 = b->kv ? b->kv->cached[q] : 0;
        for (int64_t t = b->seq_start[q]; t < b->seq_start[q + 1]; t++) pos[t] = (int32_t)(p0 + t - b->seq_start[q]);
    }
    start[b->n_seqs] = (int32_t)b->n_tokens;
    for (int64_t t = b->n_tokens; t < rows; t++) meta[t] = 0, pos[t] = 0; /* the padding rows of a graph */
    if ((st = ops->h2d(dm->dev, s->meta, meta, meta_bytes(m), stream))) goto out;
    if ((st = ops->timer_mark(dm->dev, s->fence[slot], 0, stream))) goto out;
    s->fenced[slot] = 1;
    kv_dev kd = {0};
    if (b->kv && (st = kv_upload(m, s, b, stream, &kd))) goto out;
    if (graphs) {
        const rlx__graph_entry *g = find_graph(s, rows, b->n_seqs);
        if (g) {
            st = ops->graph_launch(dm->dev, g->graph, stream);
            if (!st) s->gstats.replays++;
        } else {
            /* first time of this shape: run it directly (which also sets every lazy attribute and
             * algorithm up), then capture it for the next prefill of the same shape */
            st = run_plan(m, s, b, max_len, stream, NULL, NULL);
            s->gstats.direct++;
            if (!st) st = capture(m, s, b, rows);
        }
    } else {
        void *timer = NULL;
        if (kernel_ms && (st = ops->timer_create(dm->dev, p->n + 1, &timer))) goto out;
        st = run_plan(m, s, b, max_len, stream, timer, b->kv ? &kd : NULL);
        s->gstats.direct++;
        if (timer) {
            /* tp: reading the timers waits for the stream; wait with the communicator's bound first */
            if (!st && m->comm) st = rlx_comm_synchronize(m->comm, stream);
            if (!st) st = ops->timer_read(dm->dev, timer, p->n + 1, kernel_ms);
            ops->timer_destroy(dm->dev, timer, p->n + 1);
        }
    }
    if (!st) st = ops->check(dm->dev, 0, "prefill");
out:
    if (st == RLX_ERR_SESSION_BROKEN) s->broken = 1;
    return st;
}

const void *rlx__dev_output_ptr(const rlx_model *m, const rlx__dev_session *s, rlx_dtype *dtype) {
    const rlx__dev_model *dm = m->dev;
    *dtype = dm->plan.output_f32 || dm->plan.act_dtype == RLX_K_F32 ? RLX_DTYPE_F32 : RLX_DTYPE_BF16;
    return bptr(m, s, dm->plan.output_buf);
}

rlx_status rlx__dev_output(const rlx_model *m, rlx__dev_session *s, float *dst, int64_t rows, int64_t cols, void *stream) {
    const rlx__dev_model *dm = m->dev;
    size_t n = (size_t)rows * (size_t)cols;
    rlx_dtype dt;
    const void *src = rlx__dev_output_ptr(m, s, &dt);
    rlx_status st = dm->ops->bind(dm->dev);
    if (st) return st;
    if (dt == RLX_DTYPE_F32) {
        st = dm->ops->d2h_sync(dm->dev, dst, src, n * sizeof(float), stream);
    } else {
        uint16_t *h = rlx__malloc(n * sizeof(uint16_t), "the output copy");
        if (!h) return RLX_ERR_OUT_OF_MEMORY;
        st = dm->ops->d2h_sync(dm->dev, h, src, n * sizeof(uint16_t), stream);
        if (!st) rlx_convert_to_f32(dst, h, RLX_DTYPE_BF16, n);
        free(h);
    }
    if (st == RLX_ERR_SESSION_BROKEN) s->broken = 1;
    return st;
}

/* ---- public queries ------------------------------------------------------------------------------ */

rlx_status rlx_model_memory(const rlx_model *m, size_t *weight_bytes, size_t *session_bytes) {
    if (!m) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_model_memory: model is NULL");
    size_t w = 0, sb = 0;
    if (m->dev) {
        w = m->dev->weight_bytes; /* constants (rope tables) included */
        sb = m->dev->plan.arena_bytes + meta_bytes(m) + workspace_bytes(m) + kv_meta_bytes(m) + attn_work_bytes(m);
    }
    if (weight_bytes) *weight_bytes = w;
    if (session_bytes) *session_bytes = sb;
    return RLX_OK;
}

const char *rlx_model_device_name(const rlx_model *m) {
    if (!m) return "";
    if (!m->dev) return "cpu: the f32 CPU reference";
    return m->dev->ops->describe(m->dev->dev);
}

rlx_status rlx_model_format_plan(const rlx_model *m, char **text) {
    if (!m || !text) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_model_format_plan: NULL argument");
    if (m->dev) return rlx__plan_format(&m->dev->plan, m, text);
    /* CPU and plan-only models: the plan a device would run with this model's profile */
    rlx__plan p;
    rlx_status s = rlx__plan_build(m, m->profile.fusion_policy, m->profile.compute == RLX_PRECISION_F32 ? RLX_K_F32 : RLX_K_BF16, &p);
    if (s) return s;
    s = rlx__plan_format(&p, m, text);
    rlx__plan_free(&p);
    return s;
}
