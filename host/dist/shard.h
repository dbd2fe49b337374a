/* Tensor-parallel sharding at build time (host/dist/shard.c).
 *
 * rlx__dist_shard rewrites a built model's expanded, resolved stage list into one rank's part,
 * Megatron-style, so the CPU reference, the planner and the executors all see per-rank shapes:
 *   attention: q_proj rows for this rank's H/tp query heads, k_proj and v_proj rows for its kv
 *     heads (KV/tp of them, or when KV < tp the one kv head its query heads read, replicated as
 *     vLLM does), RoPE and attention on those heads; o_proj takes the matching input columns and
 *     an all_reduce sums the ranks' partial outputs before the residual add;
 *   SwiGLU MLP: gate_proj and up_proj rows [r·I/tp, (r+1)·I/tp), down_proj those columns, then an
 *     all_reduce;
 *   lm_head (the linear that makes the output): vocabulary rows [r·⌈V/tp⌉, (r+1)·⌈V/tp⌉) (rows past V
 *     are zeros), then an all_gather of the columns into [rows, V];
 *   everything else (embedding, norms, last_token, custom stages) is replicated.
 * A rank's weight table holds only its parts: a whole tensor is kept only where it is replicated
 * (the embedding, the norms). Errors (tp not dividing the heads or the intermediate size, a
 * pattern it cannot split) name the stage and are the same on every rank. */
#ifndef RLX_HOST_DIST_SHARD_H
#define RLX_HOST_DIST_SHARD_H

#include "model/stages.h"
#include "io/convert.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Rank `rank` of `size` (size >= 1; size 1 keeps every tensor whole but still inserts the
 * collectives, so a one-rank communicator runs the same plan). Logs what it did (pass log). */
rlx_status rlx__dist_shard(rlx_model *m, int rank, int size);

/* Weight w (its part, when it is one: the rows and columns of the view it keeps, then zero rows
 * for the vocabulary padding) as a conversion to dtype out (io/convert.h): what the build's CPU
 * preparation and the device loader run, over all cores, reading only the part's bytes. */
rlx__conv rlx__weight_conv(const rlx__weight *w, rlx_dtype out);
/* Converts weight w (its part, when it is one) to f32: dst holds w->numel floats. */
void rlx__weight_to_f32(const rlx__weight *w, float *dst);

/* Bytes one all_reduce of a model with hidden size H moves per token at dtype size e: the ring's
 * 2·(tp−1)/tp · H · e per rank (the bench's modelled cost). */
double rlx__dist_allreduce_bytes(int64_t tokens, int64_t hidden, int tp, int elem);

#ifdef __cplusplus
}
#endif

#endif
