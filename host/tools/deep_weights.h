/* Internal: seeded LLaMA weights with the statistics that make rounding error grow with depth
 * (host/tools/deep_weights.c), for the f32-residual depth sweep and its test (docs/numerics.md).
 *
 * Random Gaussian or uniform weights give a network whose every layer is a small, incoherent
 * perturbation: rounding error stays flat with depth and a bf16 residual stream looks harmless.
 * Real checkpoints differ in the ways this recipe reproduces:
 *   - outlier channels: a few residual channels carry large, nearly token-independent values that
 *     grow with depth (the "massive activations" of LLaMA-family models), written by an
 *     always-active MLP neuron per layer that reads them back (the mechanism those models show);
 *   - heavy-tailed weights (Student-t) with per-row and per-column scales spread log-normally;
 *   - sharp attention: query/key scales that give score spreads of several units;
 *   - each sublayer writes an increment comparable to a typical channel, so the stream grows with
 *     depth and a late layer's increment is small next to the stream it is added to (where bf16
 *     rounding of the stream loses it);
 *   - a token-independent component along one dense direction, growing with depth, which the
 *     head does not read: the stream's anisotropy. Rounding a stream element costs an error
 *     relative to the whole element, shared part included, while the output depends on the
 *     token-specific part only: the error that reaches the logits grows faster than the depth.
 */
#ifndef RLX_HOST_DEEP_WEIGHTS_H
#define RLX_HOST_DEEP_WEIGHTS_H

#include "rlx/flow.h"

typedef struct rlx__deep_recipe {
    int n_outlier;        /* outlier channels of the residual stream */
    float outlier_embed;  /* their value in every embedding row, in typical-element units */
    float outlier_write;  /* what each layer's outlier neuron adds to them, same units */
    float outlier_gamma;  /* norm γ on the outlier channels (the rest: log-normal around 1) */
    float t_nu;           /* Student-t degrees of freedom of every weight */
    float scale_spread;   /* log-normal sd of per-row and per-column weight scales */
    float attn_sharpness; /* spread (std) of the attention scores, after 1/sqrt(head_dim) */
    float increment;      /* RMS of each sublayer's output, typical-element units */
    float shared_write;   /* what the outlier neuron also writes along one dense direction u of all
                             channels, per element: a token-independent component that grows with
                             depth next to the token-specific one (the stream's anisotropy) */
    int readout_ignores_shared; /* 1: lm_head rows orthogonal to u, as the head reads the token-specific part */
} rlx__deep_recipe;

/* The committed recipe (the deep fixture of tests/simt_device/test-simt-residual.c). */
rlx__deep_recipe rlx__deep_recipe_default(void);

/* The 32-layer config of the deep fixture: hidden 128, 2 heads of 64 (1 kv head), intermediate
 * 384, vocab 512, rope theta 10000; 32 layers unless layers > 0. */
rlx_llama_config rlx__deep_config(int64_t layers);

/* Weights with HF key names and a config.json for cfg, drawn from recipe r and seed. A flow of
 * fewer layers reads the first ones: one set serves a whole depth sweep. */
rlx_status rlx__llama_deep_weights(const rlx_llama_config *cfg, const rlx__deep_recipe *r, uint64_t seed, rlx_dtype dtype,
                                   rlx_weights **out);

#endif
