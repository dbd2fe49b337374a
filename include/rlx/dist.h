/* rlx — tensor parallelism: communicators between the ranks of one model.
 *
 * A tensor-parallel model runs as `world size` ranks, one per GPU. Each rank builds its own
 * rlx_model from the same flow and checkpoint with rlx_build_params.comm set to its communicator:
 * the build shards the model Megatron-style (attention by heads, the MLP by intermediate columns,
 * lm_head by vocabulary rows; docs/tensor-parallel.md) and each rank's prefill runs its part,
 * exchanging partial sums through the communicator. Every rank must run the same prefills in the
 * same order (the same tokens and lengths), one at a time per communicator.
 *
 * Two kinds of communicator:
 *   - NCCL (the product): wraps an ncclComm_t the caller already has, or one rlx creates from an
 *     NCCL unique id (rank, world size, CUDA device); collectives are enqueued on the caller's
 *     cudaStream_t. Available when rlx was built with NCCL (rlx_comm_nccl_available()).
 *   - local (tests, the simt and cpu devices): N ranks as N threads of one process, collectives on
 *     host memory with NCCL's semantics. All-reduce sums in f32 in rank order (rank 0 first) and
 *     rounds once to the buffer's dtype, so every rank gets bitwise the same result on every run.
 *     (NCCL's own summation order follows its ring/tree algorithm: deterministic for one
 *     configuration, not the same order.)
 *
 * Faults: every wait is bounded (rlx_comm_params.timeout_ms). A rank whose prefill fails aborts the
 * communicator with its message; the other ranks' collectives (or their wait for them,
 * rlx_comm_synchronize) then return RLX_ERR_COMM naming the failed rank, after ncclCommAbort on
 * NCCL. An aborted communicator stays aborted: destroy the models and the communicator and create
 * new ones. No call ends the process.
 *
 * NCCL types never appear here: an ncclComm_t travels as void *, the unique id as 128 bytes.
 */
#ifndef RLX_DIST_H
#define RLX_DIST_H

#include "rlx/rlx.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rlx_comm rlx_comm;

typedef enum rlx_comm_kind {
    RLX_COMM_LOCAL = 0, /* in-process ranks on host memory */
    RLX_COMM_NCCL = 1,
} rlx_comm_kind;

/* The bytes of an ncclUniqueId (NCCL_UNIQUE_ID_BYTES): made once by rank 0, given to every rank. */
#define RLX_COMM_ID_BYTES 128
typedef struct rlx_comm_id {
    unsigned char bytes[RLX_COMM_ID_BYTES];
} rlx_comm_id;

typedef struct rlx_comm_params {
    int timeout_ms; /* bound of every wait: a collective's peers, NCCL init, rlx_comm_synchronize, the
                       rendezvous of rlx_comm_from_env; default 300000 (5 min), must be > 0 */
} rlx_comm_params;

RLX_API rlx_comm_params rlx_comm_default_params(void);

/* 1 when this build of rlx has NCCL support, else 0 (NCCL calls then return RLX_ERR_UNSUPPORTED saying
 * why). libnccl.so.2 itself is loaded at the first NCCL call (dlopen: the one already in the process,
 * else the RLX_NCCL_LIBRARY path, else the loader's search); when it cannot be, that call returns
 * RLX_ERR_UNSUPPORTED with the reason. */
RLX_API int rlx_comm_nccl_available(void);

/* world_size in-process communicators, comms[r] for rank r (comms holds world_size pointers).
 * Use each from its own thread; destroy each (the group goes with the last). */
RLX_API rlx_status rlx_comm_local_group(int world_size, const rlx_comm_params *params, rlx_comm **comms);

/* A fresh NCCL unique id (ncclGetUniqueId), to be sent to every rank. */
RLX_API rlx_status rlx_comm_nccl_unique_id(rlx_comm_id *out);
/* Rank `rank` of world_size on CUDA device cuda_device (ncclCommInitRankConfig, non-blocking, bounded
 * by timeout_ms). One process per GPU: how a job spans nodes. */
RLX_API rlx_status rlx_comm_nccl_init(const rlx_comm_id *id, int world_size, int rank, int cuda_device,
                                      const rlx_comm_params *params, rlx_comm **out);
/* One process driving world_size GPUs: comms[r] on cuda_devices[r] (NULL: devices 0..world_size-1).
 * Drive each rank from its own thread. */
RLX_API rlx_status rlx_comm_nccl_init_all(int world_size, const int *cuda_devices, const rlx_comm_params *params,
                                          rlx_comm **comms);
/* Wraps the caller's ncclComm_t (passed as void *). rlx never destroys it, but on a fault it calls
 * ncclCommAbort on it, after which the caller must neither use nor destroy the ncclComm_t. */
RLX_API rlx_status rlx_comm_nccl_wrap(void *nccl_comm, const rlx_comm_params *params, rlx_comm **out);
/* torchrun-style: rank from RLX_RANK (or RANK), world size from RLX_WORLD_SIZE (or WORLD_SIZE), the
 * CUDA device from RLX_LOCAL_RANK (or LOCAL_RANK, else the rank), and the unique id from RLX_NCCL_ID
 * (256 hex digits) or through the file RLX_NCCL_ID_FILE on a filesystem every rank sees (rank 0
 * writes it; every other rank reads it and acknowledges, so a rank started with another world size
 * is named on both sides). RLX_COMM_TIMEOUT_MS overrides params->timeout_ms. */
RLX_API rlx_status rlx_comm_from_env(const rlx_comm_params *params, rlx_comm **out);

/* destroy(NULL) is fine. An NCCL communicator rlx created is finalized (bounded) and destroyed. */
RLX_API void rlx_comm_destroy(rlx_comm *comm);

RLX_API rlx_comm_kind rlx_comm_get_kind(const rlx_comm *comm);
RLX_API int rlx_comm_rank(const rlx_comm *comm);
RLX_API int rlx_comm_size(const rlx_comm *comm);
/* The CUDA device of an NCCL rank; -1 for local ranks. */
RLX_API int rlx_comm_device(const rlx_comm *comm);

/* recv[i] = Σ over ranks of send[i], count elements of dtype (F32, F16 or BF16); send may equal recv.
 * NCCL: enqueued on stream (a cudaStream_t), device pointers. Local: host pointers, returns when
 * every rank has its result. */
RLX_API rlx_status rlx_comm_all_reduce(rlx_comm *comm, const void *send, void *recv, size_t count, rlx_dtype dtype,
                                       void *stream);
/* recv[r·count + i] = send of rank r [i] (NCCL's layout: world_size · count elements in recv). */
RLX_API rlx_status rlx_comm_all_gather(rlx_comm *comm, const void *send, void *recv, size_t count, rlx_dtype dtype,
                                       void *stream);
/* Waits, bounded by timeout_ms, until the work on stream (and this rank's collectives) is done,
 * polling NCCL's asynchronous error state; on an error or the timeout, aborts the communicator and
 * returns RLX_ERR_COMM. A server that synchronizes its stream itself uses this instead, so a failed
 * peer cannot hang it. Local: returns the communicator's state. */
RLX_API rlx_status rlx_comm_synchronize(rlx_comm *comm, void *stream);
/* Aborts the job: every rank's pending and later collectives fail with RLX_ERR_COMM and `reason`
 * (NCCL: ncclCommAbort on this rank; the peers see it as a remote error or their bounded wait). */
RLX_API rlx_status rlx_comm_abort(rlx_comm *comm, const char *reason);
/* RLX_OK, or RLX_ERR_COMM with the reason the job was aborted (rlx_last_error) — NCCL's
 * asynchronous error state included. */
RLX_API rlx_status rlx_comm_check(rlx_comm *comm);

#ifdef __cplusplus
}
#endif

#endif /* RLX_DIST_H */
