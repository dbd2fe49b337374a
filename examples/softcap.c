/* Example (c): a custom stage — logit soft-capping y = cap · tanh(x / cap) after the LM head of
 * a Llama32 flow. The recipe's flow stays patchable after it is assembled, so the stage is
 * appended with rlx_flow_custom; its CPU implementation runs here and is checked against the
 * formula applied to the uncapped logits. The CUDA kernel is softcap.cu (registered in the def
 * when this build has nvcc and/or simt). Run: ./example-softcap */
#include "rlx/custom.h"
#include "rlx/flow.h"
#include "softcap.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int fail(const char *what) {
    fprintf(stderr, "example-softcap: %s: %s\n", what, rlx_last_error());
    return 1;
}

static int logits(const rlx_flow *f, const rlx_weights *w, float *out, size_t n, char **plan) {
    rlx_model *m = NULL;
    rlx_session *s = NULL;
    const int32_t tokens[] = {3, 1, 4, 1, 5, 9, 2, 6};
    rlx_status st = rlx_model_build(f, w, NULL, &m);
    if (!st && plan) st = rlx_model_format(m, plan);
    if (!st) st = rlx_session_create(m, &s);
    if (!st) st = rlx_session_prefill(s, tokens, 8, NULL, 1, NULL);
    if (!st) st = rlx_session_output_to_host(s, out, n);
    rlx_session_destroy(s);
    rlx_model_destroy(m);
    return st != RLX_OK;
}

int main(void) {
    const float cap = 30.0f; /* Gemma 2's final-logit cap; random weights give logits on both sides of it */
    rlx_llama_config c;
    rlx_weights *w = NULL;
    if (rlx_llama_builtin_config("tiny", &c) || rlx_llama_random_weights(&c, 11, RLX_DTYPE_F32, &w)) return fail("weights");
    rlx_llama_recipe_params rp = rlx_llama_recipe_default_params();
    rp.seq = 16;
    const size_t V = (size_t)c.vocab_size;
    float *plain = malloc(V * sizeof *plain), *capped = malloc(V * sizeof *capped);
    if (!plain || !capped) return fail("memory");

    rlx_flow *f;
    if (rlx_llama_flow(&c, &rp, &f) || logits(f, w, plain, V, NULL)) return fail("uncapped model");
    rlx_custom_def def = softcap_def(cap);
    if (rlx_flow_custom(f, &def, NULL, NULL)) return fail("adding the soft-cap stage");
    char *plan = NULL;
    if (logits(f, w, capped, V, &plan)) return fail("capped model");

    double worst = 0, top = 0;
    for (size_t v = 0; v < V; v++) {
        worst = fmax(worst, fabs((double)capped[v] - cap * tanh((double)plain[v] / cap)));
        top = fmax(top, fabs((double)plain[v]));
    }
    const char *last = plan;
    for (const char *p = plan; *p; p++)
        if (p[0] == '\n' && p[1]) last = p + 1;
    printf("soft-cap %.2f after lm_head (cuda launcher %s, simt launcher %s)\n  last stage: %s", cap,
           def.cuda ? "built" : "not built", def.simt ? "built" : "not built", last);
    printf("  max |logit| before %.3f, after %.3f; max |cpu - formula| = %.3g\n", top, cap * tanh(top / cap), worst);
    const int ok = worst <= 4e-6 * cap && top > cap; /* a few f32 ulps; the cap must bite, or the check proves nothing */
    if (!ok) fprintf(stderr, "example-softcap: check failed\n");
    rlx_free(plan);
    rlx_flow_destroy(f);
    free(plain);
    free(capped);
    rlx_weights_destroy(w);
    return ok ? 0 : 1;
}
