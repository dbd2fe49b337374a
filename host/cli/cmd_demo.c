/* rlx demo: a built-in tiny LLaMA-3.2-shaped model with seeded random weights, end to end. */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmd_demo(int argc, char **argv) {
    rlx_device_kind dev = RLX_DEVICE_AUTO;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--device") && i + 1 < argc) {
            if (cli_parse_device(argv[++i], &dev)) return CLI_USAGE;
        } else if (!strncmp(argv[i], "--device=", 9)) {
            if (cli_parse_device(argv[i] + 9, &dev)) return CLI_USAGE;
        } else {
            return cli_error(CLI_USAGE, "demo: unknown option '%s' (demo takes only --device)", cli_echo(argv[i]));
        }
    }
    const int64_t batch = 2, seq = 64;
    rlx_llama_config cfg;
    rlx_weights *w = NULL;
    rlx_flow *flow = NULL;
    rlx_model *model = NULL;
    rlx_session *sess = NULL;
    float *logits = NULL;
    int rc = CLI_OK;
    rlx_status s = rlx_llama_builtin_config("tiny", &cfg);
    double t0 = cli_now();
    if (!s) s = rlx_llama_random_weights(&cfg, 42, RLX_DTYPE_BF16, &w);
    rlx_llama_recipe_params rp = rlx_llama_recipe_default_params();
    rp.batch = batch;
    rp.seq = seq;
    if (!s) s = rlx_llama_flow(&cfg, &rp, &flow);
    rlx_build_params bp = rlx_build_default_params();
    bp.device = dev;
    cli_progress prog;
    cli_progress_attach(&prog, &bp, "preparing weights");
    if (!s) s = rlx_model_build(flow, w, &bp, &model);
    if (!s) s = rlx_session_create(model, &sess);
    double t_build = cli_now() - t0;
    if (s) {
        rc = cli_status_error(s, "demo");
        goto out;
    }
    int32_t tokens[2 * 64];
    uint64_t r = 7;
    for (int i = 0; i < batch * seq; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        tokens[i] = (int32_t)((r >> 33) % (uint64_t)cfg.vocab_size);
    }
    int64_t lens[2] = {seq, seq};
    /* One warm-up, then the timed run. */
    s = rlx_session_prefill(sess, tokens, batch * seq, lens, batch, NULL);
    double t1 = cli_now();
    if (!s) s = rlx_session_prefill(sess, tokens, batch * seq, lens, batch, NULL);
    double dt = cli_now() - t1;
    int64_t rows = 0, V = 0;
    if (!s) s = rlx_session_output_shape(sess, &rows, &V);
    if (!s && !(logits = malloc((size_t)(rows * V) * sizeof(float)))) s = RLX_ERR_OUT_OF_MEMORY;
    if (!s) s = rlx_session_output_to_host(sess, logits, (size_t)(rows * V));
    if (s) {
        rc = cli_status_error(s, "demo");
        goto out;
    }
    printf("rlx demo: built-in tiny LLaMA-3.2-shaped model, seeded random bf16 weights\n");
    printf("  hidden %lld, %lld layers, %lld heads / %lld kv heads (head_dim %lld), intermediate %lld, vocab %lld, tied head, llama3 rope\n",
           (long long)cfg.hidden_size, (long long)cfg.num_hidden_layers, (long long)cfg.num_attention_heads,
           (long long)cfg.num_key_value_heads, (long long)cfg.head_dim, (long long)cfg.intermediate_size, (long long)cfg.vocab_size);
    const rlx_device_kind used = rlx_model_device(model);
    printf("  device: %s\n", rlx_model_device_name(model));
    printf("  build: %.1f ms; prefill of %lld x %lld tokens: %.1f ms (%.0f tokens/s, %s timing)\n", t_build * 1e3,
           (long long)batch, (long long)seq, dt * 1e3, (double)(batch * seq) / dt,
           used == RLX_DEVICE_CUDA ? "GPU" : used == RLX_DEVICE_SIMT ? "simt (CPU emulation, not a GPU)" : "CPU");
    for (int64_t q = 0; q < rows; q++) {
        int64_t best = 0;
        for (int64_t i = 1; i < V; i++)
            if (logits[q * V + i] > logits[q * V + best]) best = i;
        printf("  sequence %lld: next token %lld (logit %.4f)\n", (long long)q, (long long)best, logits[q * V + best]);
    }
out:
    free(logits);
    rlx_session_destroy(sess);
    rlx_model_destroy(model);
    rlx_flow_destroy(flow);
    rlx_weights_destroy(w);
    return rc;
}

const cli_command cli_cmd_demo = {
    .name = "demo",
    .run = cmd_demo,
    .summary = "run a built-in tiny LLaMA-3.2-shaped model with random weights",
    .usage =
    "usage: rlx demo [--device auto|cpu|cuda|simt]\n"
    "  --device D             where to run (default auto: cuda when a GPU is present)\n",
};
