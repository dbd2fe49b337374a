/* Communicator internals (host/dist/comm.c: the local backend, the dispatch and the rendezvous;
 * host/dist/comm_nccl.c: the NCCL backend). The runtime reaches these through the model's comm. */
#ifndef RLX_HOST_DIST_COMM_H
#define RLX_HOST_DIST_COMM_H

#include "rlx/dist.h"
#include "core/internal.h"

#include <pthread.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rlx__local_group rlx__local_group;

struct rlx_comm {
    rlx_comm_kind kind;
    int rank, size;
    int device; /* CUDA ordinal (NCCL), -1 (local) */
    int timeout_ms;
    rlx__local_group *group; /* local */
    void *nccl;              /* ncclComm_t */
    int owns_nccl;           /* rlx created it: finalize and destroy it */
    pthread_mutex_t lock;    /* NCCL: the aborted state below */
    int aborted;             /* NCCL: ncclCommAbort has run */
    char reason[768];        /* NCCL: why */
    int busy;                /* a prefill is under way on this rank (one at a time per communicator) */
    uint64_t n_ops;          /* collectives this rank has called (messages name them) */
};

/* The job failed on this rank (status s, message what, usually rlx_last_error()): aborts the
 * communicator with "rank R failed: what" unless it is aborted already. Keeps this thread's
 * last error as it was. */
void rlx__comm_fail(rlx_comm *c, rlx_status s, const char *what);

/* rows × w elements of dtype on every rank (row-major, this rank's columns) become recv [rows, total]
 * with rank r's block at columns [r·w, r·w + w) cut at total (the last block may be short: vocabulary
 * padding). NCCL gathers into staging [size, rows, w] and lays the blocks out with 2-D copies; the
 * local backend writes recv directly (staging unused). */
rlx_status rlx__comm_all_gather_cols(rlx_comm *c, const void *send, void *recv, void *staging, int64_t rows, int64_t w,
                                     int64_t total, rlx_dtype dtype, void *stream);

/* Marks a prefill under way (RLX_ERR_INVALID_ARGUMENT when one already is) / done. */
rlx_status rlx__comm_enter(rlx_comm *c);
void rlx__comm_leave(rlx_comm *c);

/* NCCL: makes the comm's CUDA device current on this thread (a rank may run on any thread). */
rlx_status rlx__comm_bind(rlx_comm *c);

/* A stream on the comm's device for a rank's prefills (NCCL; NULL stream for local ranks). */
rlx_status rlx__comm_stream_create(rlx_comm *c, void **stream);
void rlx__comm_stream_destroy(rlx_comm *c, void *stream);

/* The rendezvous of rlx_comm_from_env through a shared file (comm.c), exposed for its tests: rank 0
 * writes id (and world size) to path and waits for every rank's acknowledgement; other ranks wait
 * for the file, check the world size, acknowledge, and read id. Bounded by timeout_ms; a mismatch
 * of world sizes is an error on both sides. */
rlx_status rlx__rendezvous_file(const char *path, int rank, int world_size, rlx_comm_id *id, int timeout_ms);

/* ---- NCCL backend (comm_nccl.c; without NCCL each returns RLX_ERR_UNSUPPORTED saying why) ---- */
rlx_status rlx__nccl_unique_id(rlx_comm_id *out);
rlx_status rlx__nccl_init(const rlx_comm_id *id, int size, int rank, int device, int timeout_ms, rlx_comm *c);
rlx_status rlx__nccl_init_all(int size, const int *devices, int timeout_ms, rlx_comm **comms);
rlx_status rlx__nccl_wrap(void *nccl_comm, rlx_comm *c);
void rlx__nccl_destroy(rlx_comm *c);
rlx_status rlx__nccl_all_reduce(rlx_comm *c, const void *send, void *recv, size_t count, rlx_dtype dtype, void *stream);
rlx_status rlx__nccl_all_gather(rlx_comm *c, const void *send, void *recv, size_t count, rlx_dtype dtype, void *stream);
rlx_status rlx__nccl_gather_cols(rlx_comm *c, const void *send, void *recv, void *staging, int64_t rows, int64_t w,
                                 int64_t total, rlx_dtype dtype, void *stream);
rlx_status rlx__nccl_synchronize(rlx_comm *c, void *stream);
rlx_status rlx__nccl_abort(rlx_comm *c, const char *reason);
rlx_status rlx__nccl_check(rlx_comm *c);
rlx_status rlx__nccl_bind(rlx_comm *c);
rlx_status rlx__nccl_stream_create(rlx_comm *c, void **stream);
void rlx__nccl_stream_destroy(rlx_comm *c, void *stream);
/* Why NCCL is missing from this build (a sentence for messages). */
extern const char rlx__nccl_missing[];

#ifdef __cplusplus
}
#endif

#endif
