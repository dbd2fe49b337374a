/* CUDA graphs on simt: stream capture records launches (and the host work a device layer adds)
 * into a node list instead of running them; a graph launch replays the list in order. Capture is
 * per host thread (cudaStreamCaptureModeThreadLocal's semantics). See rlx_simt/runtime.h. */
#include "rlx_simt/runtime.h"

#include <new>
#include <vector>

namespace {

struct Node {
    int host;                  /* 1: a host function, 0: a kernel launch */
    const char *name;          /* kernel name (a string literal: static lifetime) */
    rlx_simt_dim3 grid, block;
    size_t smem;
    void (*entry)(void *);
    int (*fn)(void *);
    void *ctx;
    void (*free_ctx)(void *);
};

} // namespace

struct rlx_simt_graph {
    std::vector<Node> nodes;
};

namespace {
thread_local rlx_simt_graph *t_capture = nullptr;

void free_nodes(rlx_simt_graph *g) {
    for (Node &n : g->nodes)
        if (n.free_ctx) n.free_ctx(n.ctx);
    g->nodes.clear();
}

int record(const Node &n) {
    try {
        t_capture->nodes.push_back(n);
    } catch (const std::bad_alloc &) {
        if (n.free_ctx) n.free_ctx(n.ctx);
        return 2; /* cudaErrorMemoryAllocation */
    }
    return 0;
}
} // namespace

extern "C" int rlx_simt_capture_begin(void) {
    if (t_capture) return 900; /* cudaErrorStreamCaptureUnsupported: one capture at a time */
    t_capture = new (std::nothrow) rlx_simt_graph;
    return t_capture ? 0 : 2;
}

extern "C" rlx_simt_graph *rlx_simt_capture_end(void) {
    rlx_simt_graph *g = t_capture;
    t_capture = nullptr;
    return g;
}

extern "C" int rlx_simt_capturing(void) { return t_capture != nullptr; }

extern "C" int rlx_simt_capture_launch(const char *kernel_name, rlx_simt_dim3 grid, rlx_simt_dim3 block, size_t smem,
                                       void (*entry)(void *), void *ctx, void (*free_ctx)(void *)) {
    if (!t_capture) {
        if (free_ctx) free_ctx(ctx);
        return 901; /* cudaErrorStreamCaptureInvalidated */
    }
    return record(Node{0, kernel_name ? kernel_name : "?", grid, block, smem, entry, nullptr, ctx, free_ctx});
}

extern "C" int rlx_simt_capture_host(int (*fn)(void *ctx), void *ctx, void (*free_ctx)(void *)) {
    if (!t_capture) {
        if (free_ctx) free_ctx(ctx);
        return 901;
    }
    return record(Node{1, "host", {1, 1, 1}, {1, 1, 1}, 0, nullptr, fn, ctx, free_ctx});
}

extern "C" int rlx_simt_graph_launch(rlx_simt_graph *g, int *failed_in_host) {
    if (failed_in_host) *failed_in_host = 0;
    if (!g) return 400; /* cudaErrorInvalidResourceHandle */
    if (t_capture) return 900; /* a graph launch inside a capture: not supported here */
    for (const Node &n : g->nodes) {
        int rc = n.host ? n.fn(n.ctx) : rlx_simt_launch(n.name, n.grid, n.block, n.smem, n.entry, n.ctx);
        if (rc) {
            if (failed_in_host) *failed_in_host = n.host;
            return rc;
        }
    }
    return 0;
}

extern "C" size_t rlx_simt_graph_nodes(const rlx_simt_graph *g) { return g ? g->nodes.size() : 0; }

extern "C" void rlx_simt_graph_destroy(rlx_simt_graph *g) {
    if (!g) return;
    free_nodes(g);
    delete g;
}
