/* The weight loader on the simt device: converting straight into device memory and going through
 * staging buffers with asynchronous uploads (the cuda path, with simt performing each upload as
 * late as a GPU may) put the same bytes on the device, chunk boundaries inside weights included;
 * the staged mode really defers its copies (so reusing a buffer early would show); and the
 * build reports its progress in checkpoint bytes. */
#include <criterion/criterion.h>
#include <string.h>

#include "rlx/flow.h"
#include "rlx_simt_device.h"
#include "runtime/device.h"

static rlx_llama_config small(void) {
    rlx_llama_config c;
    cr_assert_eq(rlx_llama_builtin_config("tiny", &c), RLX_OK);
    c.num_hidden_layers = 2;
    return c;
}

static rlx_model *build(const rlx_llama_config *c, rlx_weights *w, rlx_build_params *bp) {
    rlx_llama_recipe_params p = rlx_llama_recipe_default_params();
    p.batch = 2;
    p.seq = 8;
    rlx_flow *f;
    cr_assert_eq(rlx_llama_flow(c, &p, &f), RLX_OK, "%s", rlx_last_error());
    rlx_model *m = NULL;
    cr_assert_eq(rlx_model_build(f, w, bp, &m), RLX_OK, "%s", rlx_last_error());
    rlx_flow_destroy(f);
    return m;
}

/* Every device weight of a and b, byte for byte (simt device memory is host memory). */
static void expect_same_weights(const rlx_model *a, const rlx_model *b) {
    const rlx__dev_model *x = a->dev, *y = b->dev;
    cr_assert_eq(x->n_wptr, y->n_wptr);
    int compared = 0;
    for (int i = 0; i < x->n_wptr; i++) {
        cr_assert_eq(!x->wptr[i], !y->wptr[i], "weight %d uploaded by one build only", i);
        if (!x->wptr[i]) continue;
        size_t bytes;
        if (i < a->n_weights) bytes = a->weights[i].numel * 2;
        else bytes = (size_t)(x->plan.dw[i - a->n_weights].rows * x->plan.dw[i - a->n_weights].cols) * 2;
        cr_assert(!memcmp(x->wptr[i], y->wptr[i], bytes), "device weight %d (%zu bytes) differs", i, bytes);
        compared++;
    }
    cr_assert_gt(compared, 6);
}

Test(simt_load, staged_chunked_uploads_put_the_same_bytes_on_the_device) {
    rlx_simt_device_install();
    rlx_llama_config c = small();
    rlx_weights *w;
    cr_assert_eq(rlx_llama_random_weights(&c, 3, RLX_DTYPE_BF16, &w), RLX_OK);
    rlx_build_params bp = rlx_build_default_params();
    bp.device = RLX_DEVICE_SIMT;
    rlx_model *direct = build(&c, w, &bp);
    /* 3000-byte chunks: a 256-wide bf16 row is 512 bytes, so most weights take many chunks and
     * both staging buffers turn over many times */
    rlx_simt_device_set_staged_uploads(1);
    rlx__set_load_chunk_bytes(3000);
    rlx_model *staged = build(&c, w, &bp);
    rlx__set_load_chunk_bytes(0);
    rlx_simt_device_set_staged_uploads(0);
    expect_same_weights(direct, staged);
    rlx_model_destroy(direct);
    rlx_model_destroy(staged);
    rlx_weights_destroy(w);
}

/* The staged mode's copies happen at the next stream operation, not at the h2d: a buffer
 * rewritten before the sync reaches the device rewritten. */
Test(simt_load, staged_uploads_are_deferred_to_the_next_stream_operation) {
    rlx_simt_device_install();
    const rlx__device_ops *ops = rlx__device_ops_for(RLX_DEVICE_SIMT);
    rlx__device *d;
    cr_assert_eq(ops->open(0, &d), RLX_OK);
    rlx_simt_device_set_staged_uploads(1);
    unsigned char *h, *g;
    cr_assert_eq(ops->host_alloc(d, 64, "probe", (void **)&h), RLX_OK);
    cr_assert_eq(ops->alloc(d, 64, "probe", (void **)&g), RLX_OK);
    cr_assert_null(ops->host_view(d, g), "staged mode still offers direct writes");
    memset(h, 1, 64);
    cr_assert_eq(ops->h2d(d, g, h, 64, NULL), RLX_OK);
    memset(h, 2, 64); /* what a loader without the sync would do */
    cr_assert_eq(ops->sync(d, NULL), RLX_OK);
    cr_expect_eq(g[0], 2, "the copy was not deferred (device holds %d)", g[0]);
    memset(h, 3, 64);
    cr_assert_eq(ops->h2d(d, g, h, 64, NULL), RLX_OK);
    cr_assert_eq(ops->sync(d, NULL), RLX_OK);
    memset(h, 4, 64);
    cr_expect_eq(g[63], 3, "a synced copy changed afterwards");
    rlx_simt_device_set_staged_uploads(0);
    cr_assert_not_null(ops->host_view(d, g));
    ops->host_free(d, h);
    ops->free(d, g);
    ops->close(d);
}

typedef struct seen {
    int calls, zero_first, monotonic;
    uint64_t last, total;
} seen;

static void on_progress(void *user, uint64_t done, uint64_t total) {
    seen *s = user;
    if (s->calls == 0) s->zero_first = done == 0;
    if (done < s->last || (s->total && total != s->total)) s->monotonic = 0;
    s->last = done;
    s->total = total;
    s->calls++;
}

Test(simt_load, progress_reports_checkpoint_bytes_to_the_end) {
    rlx_simt_device_install();
    rlx_llama_config c = small();
    rlx_weights *w;
    cr_assert_eq(rlx_llama_random_weights(&c, 4, RLX_DTYPE_BF16, &w), RLX_OK);
    uint64_t all = 0; /* tiny is tied: every tensor of the checkpoint is read */
    for (size_t i = 0; i < rlx_weights_count(w); i++) {
        rlx_tensor_view v;
        cr_assert_eq(rlx_weights_at(w, i, &v), RLX_OK);
        all += v.nbytes;
    }
    const rlx_device_kind devs[2] = {RLX_DEVICE_SIMT, RLX_DEVICE_CPU};
    for (int k = 0; k < 2; k++) {
        seen s = {.monotonic = 1};
        rlx_build_params bp = rlx_build_default_params();
        bp.device = devs[k];
        bp.progress = on_progress;
        bp.progress_user = &s;
        rlx__set_load_chunk_bytes(4096);
        rlx_model *m = build(&c, w, &bp);
        rlx__set_load_chunk_bytes(0);
        cr_expect(s.zero_first, "%s: the first report is not 0 bytes", rlx_device_kind_name(devs[k]));
        cr_expect(s.monotonic, "%s: progress went back or the total changed", rlx_device_kind_name(devs[k]));
        cr_expect_gt(s.calls, 15, "%s: %d reports", rlx_device_kind_name(devs[k]), s.calls);
        cr_expect_eq(s.total, all, "%s: total %llu, the checkpoint holds %llu", rlx_device_kind_name(devs[k]),
                     (unsigned long long)s.total, (unsigned long long)all);
        cr_expect_eq(s.last, s.total, "%s: ended at %llu of %llu", rlx_device_kind_name(devs[k]), (unsigned long long)s.last,
                     (unsigned long long)s.total);
        rlx_model_destroy(m);
    }
    rlx_weights_destroy(w);
}
