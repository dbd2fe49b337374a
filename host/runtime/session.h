/* Session internals the tools reach (runtime/session.c). */
#ifndef RLX_HOST_SESSION_H
#define RLX_HOST_SESSION_H

#include "model/stages.h"
#include "runtime/device.h"
#include "rlx/encoder.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bench support: one prefill with per-kernel (device) or per-stage (CPU) times in ms;
 * times holds rlx__timing_count(m) doubles; labels name each entry. */
rlx_status rlx__session_prefill_timed(rlx_session *s, const int32_t *tokens, int64_t n_tokens,
                                      const int64_t *seq_lens, int64_t n_seqs, void *stream,
                                      double *times);
/* The same for rlx_session_prefill_kv. */
struct rlx_kv_desc;
struct rlx_kv_pages;
rlx_status rlx__session_prefill_kv_timed(rlx_session *s, const rlx_prefill_batch *pb, const struct rlx_kv_desc *kv,
                                         const struct rlx_kv_pages *pages, void *stream, double *times);
int rlx__timing_count(const rlx_model *m);
/* CUDA graph counters of a device session (kernels.cuda_graphs); zeros on the CPU. */
void rlx__session_graph_stats(const rlx_session *s, rlx__graph_stats *out);
void rlx__timing_label(const rlx_model *m, int i, char *buf, size_t n);

#ifdef __cplusplus
}
#endif

#endif
