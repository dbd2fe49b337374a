/* rlx — compile profiles (tier 1): `*.rlx.toml` files that tune how a flow is planned and run
 * without touching code.
 *
 *     [fusion]
 *     policy = "fused"          # or "none"
 *     [precision]
 *     compute = "bf16"
 *
 * docs/profiles.md is the one place that documents every key: its type, default and effect.
 * Files are read with a maintained TOML library; an unknown table or key, a value of the wrong
 * type and an out-of-range value are refused (RLX_ERR_PROFILE) with a message that starts
 * "<file>:<line>:<col>: key '<table>.<key>': ..." — never silently defaulted.
 *
 * A profile travels into a model through rlx_build_params.profile (NULL = the prefill preset);
 * the built model keeps a copy (rlx_model_profile).
 */
#ifndef RLX_PROFILE_H
#define RLX_PROFILE_H

#include "rlx/flow.h"
#include "rlx/rlx.h"
#include "rlx/weights.h"

#ifdef __cplusplus
extern "C" {
#endif

/* [fusion] policy: rlx_fusion_policy, defined in rlx/rlx.h (RLX_FUSION_FUSED = "fused", seed
 * spelling "fusable"; RLX_FUSION_NONE = "none", seed "direct", or skip = true). */

/* [precision] mixed. Values are only ever appended. */
typedef enum rlx_mixed_precision {
    RLX_MIXED_NONE = 0, /* "none": every device activation is precision.compute */
    RLX_MIXED_AUTO = 1, /* "auto": the residual stream stays f32 on the device */
} rlx_mixed_precision;

#define RLX_PROFILE_SOURCE_MAX 1024

/* Plain struct: fill it with rlx_profile_preset, then edit fields or load a file over it.
 * Defaults below are the "prefill" preset's. (The typedef is in rlx/flow.h.) */
struct rlx_profile {
    /* Where the values came from: "preset:<name>" or the path of the file. */
    char source[RLX_PROFILE_SOURCE_MAX];
    /* [fusion] */
    rlx_fusion_policy fusion_policy; /* RLX_FUSION_FUSED */
    rlx_device_kind target;          /* RLX_DEVICE_AUTO: the device a build uses when
                                        rlx_build_params.device is RLX_DEVICE_AUTO */
    int assert_clean;                /* 0; 1: the build fails listing missed fusion patterns */
    /* [passes] */
    int dce;                         /* 1: stages whose outputs nobody reads are removed */
    int constant_folding;            /* 1: the planner folds norm weights into GEMM weights */
    int verbose;                     /* 0; 1: the pass log lists every change, not counts */
    /* [precision] */
    rlx_precision compute;           /* RLX_PRECISION_BF16 (F32 = device debug mode) */
    rlx_mixed_precision mixed;       /* RLX_MIXED_AUTO (the preset): an f32 residual stream with bf16 compute */
    /* [kernels] */
    int attention_block_q;           /* flash_attention's query rows per CTA: 128, 64, or 0 = the launcher's rule */
    int gemm_workspace_mb;           /* 32: cuBLASLt workspace per session, MiB, [0, 4096] */
    int cuda_graphs;                 /* 0; 1: a session replays a CUDA graph per (token bucket, sequence
                                        count) after capturing it once (docs/profiles.md) */
    int gemm_autotune;               /* 0; 1: a device build times the GEMM algorithms the heuristic offers
                                        for every GEMM shape of the plan (each M bucket up to the capacity)
                                        and keeps the fastest */
    /* [passes], appended */
    int prune_last_layer;            /* 1: with last-token logits, the row-wise stages after the last
                                        attention (o_proj, norms, MLP of the last layer) run on one row
                                        per sequence (same logits, fewer FLOPs) */
};

/* Presets: "prefill" (the default, also for name NULL) and "debug" (fusion none, f32 compute,
 * no CUDA graphs, verbose pass log). RLX_ERR_PROFILE for another name. */
RLX_API rlx_status rlx_profile_preset(const char *name, rlx_profile *out);

/* Parses profile text over the prefill preset: keys absent from the text keep their preset
 * values. source_name appears in messages and in out->source (NULL: "<profile>"). *out is
 * written only on success. */
RLX_API rlx_status rlx_profile_parse(const char *text, const char *source_name, rlx_profile *out);

/* Reads and parses a file (RLX_ERR_IO when it cannot be read). */
RLX_API rlx_status rlx_profile_load(const char *path, rlx_profile *out);

/* The profile that belongs next to a checkpoint: "<dir>/<family>.rlx.toml" (e.g. family
 * "llama32") when weights were opened from a directory holding that file, else the prefill
 * preset. A file that is present but bad is an error, never skipped. out->source says which. */
RLX_API rlx_status rlx_profile_near(const rlx_weights *weights, const char *family,
                                    rlx_profile *out);

/* Checks a profile filled in by hand (enum values, ranges); rlx_model_build calls it. */
RLX_API rlx_status rlx_profile_validate(const rlx_profile *profile);

/* Effective settings on one line, in the file's own spelling:
 * "fusion.policy=fused fusion.target=auto ... kernels.gemm_autotune=false". Free with rlx_free. */
RLX_API rlx_status rlx_profile_format(const rlx_profile *profile, char **text);

/* The profile a model was built with (never NULL for a valid model). */
RLX_API const rlx_profile *rlx_model_profile(const rlx_model *model);
/* What the build's passes did, one line each ("dce: removed 2 of 40 stages"); with
 * passes.verbose every removed stage is named. "" when there is nothing to say. */
RLX_API const char *rlx_model_pass_log(const rlx_model *model);

#ifdef __cplusplus
}
#endif

#endif /* RLX_PROFILE_H */
