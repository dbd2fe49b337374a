/* Example (b): the Llama32 recipe with one layer swapped for its composed form through the
 * per-layer hook. The fused layer stage expands into exactly the composed primitives, so the
 * logits must be identical to the default recipe's. Run: ./example-swap-layer */
#include "rlx/flow.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char *what) {
    fprintf(stderr, "example-swap-layer: %s: %s\n", what, rlx_last_error());
    return 1;
}

/* Layer `swap` (user) is emitted from small blocks; every other layer as the recipe would. */
static rlx_status swap_one(rlx_flow *f, const rlx_llama_layer_ctx *ctx, void *user) {
    const int64_t swap = *(const int64_t *)user, i = rlx_llama_layer_ctx_index(ctx);
    if (i == swap) return rlx_flow_llama_layer_composed(f, i, rlx_llama_layer_ctx_spec(ctx));
    return rlx_llama_layer_ctx_default(f, ctx);
}

static int logits(const rlx_llama_config *c, const rlx_weights *w, const rlx_llama_recipe_params *rp, float *out,
                  size_t *stages) {
    rlx_flow *f = NULL;
    rlx_model *m = NULL;
    rlx_session *s = NULL;
    const int32_t tokens[] = {4, 8, 15, 16, 23, 42, 3, 1, 9};
    const int64_t lens[] = {5, 4};
    rlx_status st = rlx_llama_flow(c, rp, &f);
    if (!st) *stages = rlx_flow_stage_count(f);
    if (!st) st = rlx_model_build(f, w, NULL, &m);
    if (!st) st = rlx_session_create(m, &s);
    if (!st) st = rlx_session_prefill(s, tokens, 9, lens, 2, NULL);
    if (!st) st = rlx_session_output_to_host(s, out, (size_t)(2 * c->vocab_size));
    rlx_session_destroy(s);
    rlx_model_destroy(m);
    rlx_flow_destroy(f);
    return st != RLX_OK;
}

int main(void) {
    rlx_llama_config c;
    rlx_weights *w = NULL;
    if (rlx_llama_builtin_config("tiny", &c) || rlx_llama_random_weights(&c, 7, RLX_DTYPE_F32, &w)) return fail("weights");
    int64_t swap = c.num_hidden_layers / 2;
    rlx_llama_recipe_params rp = rlx_llama_recipe_default_params();
    rp.batch = 2;
    rp.seq = 8;
    const size_t n = (size_t)(2 * c.vocab_size);
    float *base = malloc(n * sizeof *base), *swapped = malloc(n * sizeof *swapped);
    if (!base || !swapped) return fail("memory");
    size_t s0 = 0, s1 = 0;
    if (logits(&c, w, &rp, base, &s0)) return fail("default recipe");
    rp.layer = swap_one;
    rp.layer_user = &swap;
    if (logits(&c, w, &rp, swapped, &s1)) return fail("recipe with a swapped layer");
    int same = !memcmp(base, swapped, n * sizeof *base);
    printf("layer %lld composed: %zu flow stages instead of %zu; logits of 2 sequences %s\n", (long long)swap, s1, s0,
           same ? "identical" : "DIFFER");
    free(base);
    free(swapped);
    rlx_weights_destroy(w);
    return same ? 0 : 1;
}
