/* A downstream program: what a server that links an installed rlx does, and nothing more. It
 * sees only the installed headers and library (tests/package/test-consumer.sh builds it against
 * an install prefix with find_package(rlx) and with pkg-config), runs a Llama checkpoint on the
 * CPU and writes the logits of every position as raw float32, for comparison with `rlx run`.
 *
 *   consumer MODEL_DIR OUT.f32 IDS [IDS ...]      (IDS: one prompt's comma-separated token ids)
 */
#include <rlx/flow.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TOKENS 4096
#define MAX_SEQS 64

static int fail(rlx_status s, const char *what) {
    fprintf(stderr, "consumer: %s: %s (%s)\n", what, rlx_last_error(), rlx_status_name(s));
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: consumer MODEL_DIR OUT.f32 IDS [IDS ...]\n");
        return 2;
    }
    /* The headers compiled against and the library loaded must agree. */
    if (rlx_version() != RLX_VERSION || strcmp(rlx_version_string(), RLX_VERSION_STRING) != 0) {
        fprintf(stderr, "consumer: headers %s, library %s (%u)\n", RLX_VERSION_STRING, rlx_version_string(), rlx_version());
        return 1;
    }
    static int32_t tokens[MAX_TOKENS];
    int64_t lens[MAX_SEQS], n_tokens = 0, n_seqs = 0, longest = 0;
    for (int a = 3; a < argc && n_seqs < MAX_SEQS; a++, n_seqs++) {
        lens[n_seqs] = 0;
        for (char *p = argv[a]; *p && n_tokens < MAX_TOKENS;) {
            tokens[n_tokens++] = (int32_t)strtol(p, &p, 10);
            lens[n_seqs]++;
            if (*p == ',') p++;
        }
        if (lens[n_seqs] > longest) longest = lens[n_seqs];
    }

    rlx_weights *w = NULL;
    rlx_llama_config cfg;
    rlx_flow *flow = NULL;
    rlx_model *model = NULL;
    rlx_session *sess = NULL;
    float *logits = NULL;
    int rc = 1;
    rlx_status s = rlx_weights_open(argv[1], &w);
    if (s) return fail(s, "opening the model");
    if ((s = rlx_llama_config_parse(rlx_weights_config_json(w), "config.json", &cfg))) {
        rc = fail(s, "config");
        goto out;
    }
    rlx_llama_recipe_params rp = rlx_llama_recipe_default_params();
    rp.batch = n_seqs;
    rp.seq = longest;
    rp.last_token_logits = 0;
    if ((s = rlx_llama_flow(&cfg, &rp, &flow))) {
        rc = fail(s, "flow");
        goto out;
    }
    rlx_build_params bp = rlx_build_default_params();
    bp.device = RLX_DEVICE_CPU;
    if ((s = rlx_model_build(flow, w, &bp, &model)) || (s = rlx_session_create(model, &sess)) ||
        (s = rlx_session_prefill(sess, tokens, n_tokens, lens, n_seqs, NULL))) {
        rc = fail(s, "prefill");
        goto out;
    }
    int64_t rows, cols;
    if ((s = rlx_session_output_shape(sess, &rows, &cols))) {
        rc = fail(s, "output shape");
        goto out;
    }
    size_t n = (size_t)rows * (size_t)cols;
    if (!(logits = malloc(n * sizeof *logits))) goto out;
    if ((s = rlx_session_output_to_host(sess, logits, n))) {
        rc = fail(s, "output");
        goto out;
    }
    FILE *f = fopen(argv[2], "wb");
    if (!f || fwrite(logits, sizeof *logits, n, f) != n || fclose(f) != 0) {
        fprintf(stderr, "consumer: cannot write %s\n", argv[2]);
        goto out;
    }
    printf("consumer: rlx %s, logits [%lld, %lld]\n", rlx_version_string(), (long long)rows, (long long)cols);
    rc = 0;
out:
    free(logits);
    rlx_session_destroy(sess);
    rlx_model_destroy(model);
    rlx_flow_destroy(flow);
    rlx_weights_destroy(w);
    return rc;
}
