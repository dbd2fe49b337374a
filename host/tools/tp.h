/* Internal: one process driving every rank of a tensor-parallel model — a thread per rank, each
 * with its own communicator, model, session and stream (local communicators on cpu and simt, NCCL
 * over CUDA devices 0..tp-1 on cuda). What `rlx run|check|bench --tp N` and the tests use; a
 * server does the same with the public calls (docs/tensor-parallel.md). */
#ifndef RLX_HOST_TOOLS_TP_H
#define RLX_HOST_TOOLS_TP_H

#include "rlx/dist.h"
#include "rlx/flow.h"
#include "rlx/generate.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rlx__tp_rank {
    rlx_comm *comm;
    rlx_model *model;
    rlx_session *session;
    void *stream;      /* NCCL: a stream on the rank's device; NULL otherwise */
    rlx_status status; /* of the rank's last step (build, prefill) */
    char error[1024];  /* its message when status != RLX_OK */
    double *times;     /* per-kernel times of the last timed prefill ([rlx__timing_count]) */
} rlx__tp_rank;

typedef struct rlx__tp_group {
    int n;          /* ranks held by this process */
    int world;      /* ranks of the job */
    int first_rank; /* rank of r[0]: 0, or this process's rank in a job from the environment */
    rlx_device_kind device;
    rlx__tp_rank *r; /* [n] */
} rlx__tp_group;

/* Builds `tp` ranks of flow (device bp->device; AUTO: cuda when a device opens, else cpu) on their
 * own threads. On failure every rank's status is in g->r and the returned status and
 * rlx_last_error() are those of the first rank that failed by itself ("tp rank R of N: …"); g is
 * left empty. cp NULL: rlx_comm_default_params(). */
rlx_status rlx__tp_group_create(const rlx_flow *flow, const rlx_weights *w, const rlx_build_params *bp, int tp,
                                const rlx_comm_params *cp, rlx__tp_group *g);
/* One rank of a job started one process per GPU (rlx_comm_from_env: RLX_RANK, RLX_WORLD_SIZE, …): the
 * group holds this process's rank only (n = 1); prefill and output work as above. */
rlx_status rlx__tp_group_create_env(const rlx_flow *flow, const rlx_weights *w, const rlx_build_params *bp,
                                    const rlx_comm_params *cp, rlx__tp_group *g);
/* One prefill on every rank at once; each waits (bounded) for its collectives. timed: record every
 * rank's per-kernel times in r[i].times. Returns as rlx__tp_group_create does. */
rlx_status rlx__tp_group_prefill(rlx__tp_group *g, const int32_t *tokens, int64_t n_tokens, const int64_t *seq_lens,
                                 int64_t n_seqs, int timed);
/* rlx_generate on every rank at once, each on its own stream with its own KV page pool (its own kv
 * heads). Every rank draws the same tokens (they all hold the same gathered logits); *out gets
 * r[0]'s generation, the others' are compared with it (a difference is RLX_ERR_INTERNAL) and
 * destroyed. Returns as rlx__tp_group_create does. */
rlx_status rlx__tp_group_generate(rlx__tp_group *g, const int32_t *tokens, const int64_t *lens, int64_t n,
                                  const rlx_generate_params *params, rlx_generation **out);
/* r[0]'s output (every rank holds the same gathered logits). */
rlx_status rlx__tp_group_output(rlx__tp_group *g, float *dst, size_t capacity);
void rlx__tp_group_free(rlx__tp_group *g);

#ifdef __cplusplus
}
#endif

#endif
