/* Generation over the KV cache (rlx/generate.h, host/tools/generate.c) on the CPU reference:
 *   - greedy equals transformers' generate(do_sample=False) token for token, 32 new tokens, a
 *     batch of 3 prompts of different lengths, on every LLaMA fixture (tests/fixtures/…/generate.json),
 *     end tokens from generation_config.json, finish "stop" | "length" as transformers ended;
 *   - the same with a capacity of one short sequence (prompts prefilled in chunks, one per call);
 *   - seeded sampling is reproducible and independent of the batch; top-k 1 is greedy;
 *   - end tokens from generation_config.json / config.json, int or list; bad files named;
 *   - `rlx generate`: the --out JSON shape, usage errors. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rlx/generate.h"
#include "testutil.h"

static rlx_model *build(const rlxt_llama_fixture *f, int64_t batch, int64_t seq, int64_t ctx) {
    rlx_llama_recipe_params p = rlx_llama_recipe_default_params();
    p.batch = batch, p.seq = seq, p.max_context = ctx;
    rlx_flow *fl;
    cr_assert_eq(rlx_llama_flow(&f->cfg, &p, &fl), RLX_OK, "%s", rlx_last_error());
    rlx_model *m;
    cr_assert_eq(rlx_model_build(fl, f->w, NULL, &m), RLX_OK, "%s", rlx_last_error());
    rlx_flow_destroy(fl);
    return m;
}

static void load(const char *name, rlxt_llama_fixture *f) {
    char err[1600];
    cr_assert_eq(rlxt_llama_fixture_load(name, f, err, sizeof err), 0, "%s", err);
}

/* The fixture's prompts packed. */
static int32_t *packed_prompts(const rlxt_llama_fixture *f, int64_t *lens, int64_t *max_len) {
    int64_t total = 0;
    *max_len = 0;
    for (int i = 0; i < f->n_prompts; i++) {
        lens[i] = f->prompt_len[i];
        total += lens[i];
        if (lens[i] > *max_len) *max_len = lens[i];
    }
    int32_t *t = malloc(sizeof(int32_t) * (size_t)total);
    int64_t at = 0;
    for (int i = 0; i < f->n_prompts; i++) memcpy(t + at, f->prompt[i], sizeof(int32_t) * (size_t)lens[i]), at += lens[i];
    return t;
}

static void expect_equals_hf(const char *name, const rlxt_llama_fixture *f, const rlx_generation *g, const char *how) {
    cr_assert_eq(rlx_generation_count(g), f->n_prompts);
    for (int i = 0; i < f->n_prompts; i++) {
        int64_t n;
        const int32_t *ids = rlx_generation_tokens(g, i, &n);
        int64_t first_diff = -1;
        for (int64_t t = 0; t < n && t < f->gen_len[i] && first_diff < 0; t++)
            if (ids[t] != f->gen[i][t]) first_diff = t;
        cr_expect(n == f->gen_len[i] && first_diff < 0,
                  "%s (%s), prompt %d (%lld tokens): %lld new tokens, transformers %lld; first difference at new token %lld (%d vs %d)", name,
                  how, i, (long long)f->prompt_len[i], (long long)n, (long long)f->gen_len[i], (long long)first_diff,
                  first_diff >= 0 ? ids[first_diff] : -1, first_diff >= 0 ? f->gen[i][first_diff] : -1);
        cr_expect_eq(rlx_generation_stopped(g, i), f->gen_stop[i], "%s (%s), prompt %d: finish %s, transformers %s", name, how, i,
                     rlx_generation_stopped(g, i) ? "stop" : "length", f->gen_stop[i] ? "stop" : "length");
    }
}

static int case_ids[RLXT_N_LLAMA_FIXTURES] = {0, 1, 2, 3, 4, 5, 6, 7, 8};

ParameterizedTestParameters(generate, greedy_equals_transformers) { return cr_make_param_array(int, case_ids, RLXT_N_LLAMA_FIXTURES); }

ParameterizedTest(int *id, generate, greedy_equals_transformers) {
    const char *name = rlxt_llama_fixtures[*id];
    rlxt_llama_fixture f;
    load(name, &f);
    cr_assert_eq(f.n_prompts, 3);
    cr_assert_eq(f.max_new, 32);
    int64_t lens[4], max_len;
    int32_t *tok = packed_prompts(&f, lens, &max_len);
    cr_expect(lens[0] != lens[1] && lens[1] != lens[2], "the fixture's prompts have different lengths");
    int32_t eos[8];
    int64_t n_eos;
    cr_assert_eq(rlx_eos_tokens(f.w, eos, 8, &n_eos), RLX_OK, "%s", rlx_last_error());
    cr_expect(n_eos == f.n_eos && !memcmp(eos, f.eos, sizeof(int32_t) * (size_t)n_eos), "end tokens as transformers used");
    rlx_generate_params gp = rlx_generate_default_params();
    gp.max_new_tokens = 32;
    gp.stop_tokens = eos, gp.n_stop_tokens = n_eos;
    /* the whole batch in one prefill, pages of 16; then a capacity of 1 x 4 tokens (long prompts in
     * chunks, one sequence per call), pages of 1, HND */
    for (int variant = 0; variant < 2; variant++) {
        rlx_model *m = variant ? build(&f, 1, 4, max_len + 32) : build(&f, 3, max_len, max_len + 32);
        gp.page_size = variant ? 1 : 16;
        gp.layout = variant ? RLX_KV_LAYOUT_HND : RLX_KV_LAYOUT_NHD;
        rlx_generation *g;
        cr_assert_eq(rlx_generate(m, tok, lens, 3, &gp, NULL, &g), RLX_OK, "%s: %s", name, rlx_last_error());
        expect_equals_hf(name, &f, g, variant ? "capacity 1 x 4, pages of 1" : "one batch, pages of 16");
        rlx_generation_stats st;
        cr_assert_eq(rlx_generation_get_stats(g, &st), RLX_OK);
        int64_t new_total = 0;
        for (int i = 0; i < 3; i++) new_total += f.gen_len[i];
        cr_expect_eq(st.decode_tokens, new_total - 3, "every token after the first comes from a decode step");
        rlx_generation_destroy(g);
        rlx_model_destroy(m);
    }
    free(tok);
    rlxt_llama_fixture_free(&f);
}

Test(generate, seeded_sampling_is_reproducible_and_batch_independent) {
    rlxt_llama_fixture f;
    load("llama3_scaling_f32", &f);
    int64_t lens[4], max_len;
    int32_t *tok = packed_prompts(&f, lens, &max_len);
    rlx_model *m = build(&f, 3, max_len, max_len + 24);
    rlx_generate_params gp = rlx_generate_default_params();
    gp.max_new_tokens = 24, gp.temperature = 1.3, gp.top_k = 40, gp.top_p = 0.95, gp.seed = 77;
    rlx_generation *a, *b, *c, *one;
    cr_assert_eq(rlx_generate(m, tok, lens, 3, &gp, NULL, &a), RLX_OK, "%s", rlx_last_error());
    cr_assert_eq(rlx_generate(m, tok, lens, 3, &gp, NULL, &b), RLX_OK);
    gp.seed = 78;
    cr_assert_eq(rlx_generate(m, tok, lens, 3, &gp, NULL, &c), RLX_OK);
    gp.seed = 77;
    /* another prompt 0 (longer, other ids): prompts 1 and 2 keep their tokens (each sequence has its
     * own generator, seeded by the seed and its index) */
    int32_t *tok2 = malloc(sizeof(int32_t) * (size_t)(lens[0] + 5 + lens[1] + lens[2]));
    for (int64_t t = 0; t < lens[0] + 5; t++) tok2[t] = (int32_t)((t * 7 + 3) % 97);
    memcpy(tok2 + lens[0] + 5, tok + lens[0], sizeof(int32_t) * (size_t)(lens[1] + lens[2]));
    int64_t lens2[3] = {lens[0] + 5, lens[1], lens[2]};
    cr_assert_eq(rlx_generate(m, tok2, lens2, 3, &gp, NULL, &one), RLX_OK, "%s", rlx_last_error());
    free(tok2);
    int same_c = 1;
    for (int i = 0; i < 3; i++) {
        int64_t na, nb, nc;
        const int32_t *ta = rlx_generation_tokens(a, i, &na), *tb = rlx_generation_tokens(b, i, &nb), *tc = rlx_generation_tokens(c, i, &nc);
        cr_expect(na == nb && !memcmp(ta, tb, sizeof(int32_t) * (size_t)na), "seed 77 twice: prompt %d differs", i);
        same_c &= na == nc && !memcmp(ta, tc, sizeof(int32_t) * (size_t)na);
    }
    cr_expect(!same_c, "seeds 77 and 78 gave the same tokens for every prompt");
    for (int i = 1; i < 3; i++) {
        int64_t n1, n2;
        const int32_t *t1 = rlx_generation_tokens(one, i, &n1), *t2 = rlx_generation_tokens(a, i, &n2);
        cr_expect(n1 == n2 && !memcmp(t1, t2, sizeof(int32_t) * (size_t)n1), "prompt %d changed with another prompt 0 in the batch", i);
    }
    /* top-k 1 is greedy whatever the temperature */
    rlx_generation *greedy, *k1;
    rlx_generate_params gg = rlx_generate_default_params();
    gg.max_new_tokens = 24;
    cr_assert_eq(rlx_generate(m, tok, lens, 3, &gg, NULL, &greedy), RLX_OK);
    gp.top_k = 1;
    cr_assert_eq(rlx_generate(m, tok, lens, 3, &gp, NULL, &k1), RLX_OK);
    for (int i = 0; i < 3; i++) {
        int64_t na, nb;
        const int32_t *ta = rlx_generation_tokens(greedy, i, &na), *tb = rlx_generation_tokens(k1, i, &nb);
        cr_expect(na == nb && !memcmp(ta, tb, sizeof(int32_t) * (size_t)na), "top-k 1 differs from greedy for prompt %d", i);
    }
    rlx_generation_destroy(a), rlx_generation_destroy(b), rlx_generation_destroy(c), rlx_generation_destroy(one);
    rlx_generation_destroy(greedy), rlx_generation_destroy(k1);
    rlx_model_destroy(m);
    free(tok);
    rlxt_llama_fixture_free(&f);
}

/* A stop token ends only its own sequence; it is kept as the last new token. */
Test(generate, stop_tokens_end_sequences_independently) {
    rlxt_llama_fixture f;
    load("llama3_scaling_f32", &f);
    int64_t lens[4], max_len;
    int32_t *tok = packed_prompts(&f, lens, &max_len);
    rlx_model *m = build(&f, 3, max_len, max_len + 32);
    rlx_generate_params gp = rlx_generate_default_params();
    const int32_t stop = f.gen[1][4]; /* the 5th token transformers produced for prompt 1 */
    int64_t first = 0;
    while (f.gen[1][first] != stop) first++;
    gp.stop_tokens = &stop, gp.n_stop_tokens = 1;
    rlx_generation *g;
    cr_assert_eq(rlx_generate(m, tok, lens, 3, &gp, NULL, &g), RLX_OK, "%s", rlx_last_error());
    int64_t n;
    const int32_t *ids = rlx_generation_tokens(g, 1, &n);
    cr_expect(n == first + 1 && ids[n - 1] == stop && rlx_generation_stopped(g, 1) == 1, "prompt 1 stops at its first %d (new token %lld)",
              stop, (long long)first);
    for (int i = 0; i < 3; i += 2) {
        ids = rlx_generation_tokens(g, i, &n);
        int has = 0;
        for (int64_t t = 0; t < n; t++) has |= ids[t] == stop;
        cr_expect(has ? rlx_generation_stopped(g, i) == 1 && ids[n - 1] == stop : n == 32 && rlx_generation_stopped(g, i) == 0,
                  "prompt %d: %lld tokens, stopped %d", i, (long long)n, rlx_generation_stopped(g, i));
    }
    cr_expect_eq(rlx_generation_tokens(g, 3, &n), NULL);
    cr_expect_eq(n, 0);
    cr_expect_eq(rlx_generation_stopped(g, -1), -1);
    rlx_generation_destroy(g);
    rlx_model_destroy(m);
    free(tok);
    rlxt_llama_fixture_free(&f);
}

Test(generate, refused_before_any_work) {
    rlxt_llama_fixture f;
    load("gqa_tied_f32", &f);
    rlx_model *m = build(&f, 2, 8, 16);
    int32_t tok[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    int64_t lens[2] = {5, 3};
    rlx_generate_params gp = rlx_generate_default_params();
    rlx_generation *g = (rlx_generation *)1;
    gp.max_new_tokens = 12; /* 5 + 12 > 16 positions */
    cr_expect_eq(rlx_generate(m, tok, lens, 2, &gp, NULL, &g), RLX_ERR_INVALID_ARGUMENT);
    cr_expect(strstr(rlx_last_error(), "prompt 0") && strstr(rlx_last_error(), "16 positions"), "%s", rlx_last_error());
    cr_expect_eq(g, NULL);
    gp.max_new_tokens = 4;
    gp.top_p = 0;
    cr_expect_eq(rlx_generate(m, tok, lens, 2, &gp, NULL, &g), RLX_ERR_INVALID_ARGUMENT);
    gp.top_p = 1, gp.temperature = -1;
    cr_expect_eq(rlx_generate(m, tok, lens, 2, &gp, NULL, &g), RLX_ERR_INVALID_ARGUMENT);
    gp.temperature = 0, gp.page_size = 3;
    cr_expect_eq(rlx_generate(m, tok, lens, 2, &gp, NULL, &g), RLX_ERR_INVALID_ARGUMENT);
    gp.page_size = 16;
    tok[6] = 97;
    cr_expect_eq(rlx_generate(m, tok, lens, 2, &gp, NULL, &g), RLX_ERR_TOKEN_RANGE);
    cr_expect(strstr(rlx_last_error(), "prompt 1"), "%s", rlx_last_error());
    tok[6] = 7;
    cr_expect_eq(rlx_generate(m, NULL, lens, 2, &gp, NULL, &g), RLX_ERR_INVALID_ARGUMENT);
    cr_expect_eq(rlx_generate(m, tok, lens, 2, &gp, NULL, NULL), RLX_ERR_INVALID_ARGUMENT);
    cr_expect_eq(rlx_generate(NULL, tok, lens, 2, &gp, NULL, &g), RLX_ERR_INVALID_ARGUMENT);
    rlx_model_destroy(m);
    /* a model with logits per token */
    rlx_llama_recipe_params p = rlx_llama_recipe_default_params();
    p.batch = 2, p.seq = 8, p.max_context = 16, p.last_token_logits = 0;
    rlx_flow *fl;
    cr_assert_eq(rlx_llama_flow(&f.cfg, &p, &fl), RLX_OK);
    cr_assert_eq(rlx_model_build(fl, f.w, NULL, &m), RLX_OK);
    cr_expect_eq(rlx_generate(m, tok, lens, 2, &gp, NULL, &g), RLX_ERR_INVALID_ARGUMENT);
    cr_expect(strstr(rlx_last_error(), "last-token"), "%s", rlx_last_error());
    rlx_model_destroy(m);
    rlx_flow_destroy(fl);
    rlx_generation_stats st;
    cr_expect_eq(rlx_generation_get_stats(NULL, &st), RLX_ERR_INVALID_ARGUMENT);
    cr_expect_eq(rlx_generation_count(NULL), 0);
    rlx_generation_destroy(NULL);
    rlxt_llama_fixture_free(&f);
}

/* ---- end tokens from the model directory ------------------------------------------------------------ */

static char *model_dir_with(const char *config_extra, const char *gen_config) {
    char *dir = rlxt_tmpdir();
    char src[1200];
    snprintf(src, sizeof src, "%s/llama/gqa_tied_f32/model.safetensors", rlxt_fixtures_dir());
    FILE *f = fopen(src, "rb");
    cr_assert(f);
    fseek(f, 0, SEEK_END);
    const long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)size);
    size_t n = fread(buf, 1, (size_t)size, f);
    fclose(f);
    free(rlxt_write_file(dir, "model.safetensors", buf, n));
    free(buf);
    snprintf(src, sizeof src, "%s/llama/gqa_tied_f32/config.json", rlxt_fixtures_dir());
    char cfg[8192];
    rlxt_slurp(src, cfg, sizeof cfg);
    if (config_extra) {
        char *brace = strrchr(cfg, '}');
        snprintf(brace, sizeof cfg - (size_t)(brace - cfg), ", %s}\n", config_extra);
    }
    free(rlxt_write_file(dir, "config.json", cfg, strlen(cfg)));
    if (gen_config) free(rlxt_write_file(dir, "generation_config.json", gen_config, strlen(gen_config)));
    return dir;
}

Test(generate, eos_tokens_from_the_directory) {
    struct {
        const char *cfg, *gen;
        rlx_status want;
        int n;
        int32_t ids[3];
    } cases[] = {
        {NULL, "{\"eos_token_id\": [7, 9, 11]}", RLX_OK, 3, {7, 9, 11}},
        {NULL, "{\"eos_token_id\": 5}", RLX_OK, 1, {5}},
        {NULL, "{\"bos_token_id\": 1}", RLX_OK, 1, {2}},            /* none there: config.json's 2 */
        {NULL, NULL, RLX_OK, 1, {2}},                                 /* no generation_config.json */
        {"\"unused\": 0", "{\"eos_token_id\": null}", RLX_OK, 1, {2}}, /* null: config.json's */
        {NULL, "{\"eos_token_id\": \"2\"}", RLX_ERR_CONFIG, 0, {0}},
        {NULL, "{\"eos_token_id\": [1, -4]}", RLX_ERR_CONFIG, 0, {0}},
        {NULL, "{\"eos_token_id\": [1, 2, 3, 4, 5, 6, 7, 8, 9]}", RLX_ERR_INVALID_ARGUMENT, 0, {0}},
        {NULL, "{\"eos_token_id\": ", RLX_ERR_FORMAT, 0, {0}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *dir = model_dir_with(cases[i].cfg, cases[i].gen);
        rlx_weights *w;
        cr_assert_eq(rlx_weights_open(dir, &w), RLX_OK, "%s", rlx_last_error());
        int32_t ids[8];
        int64_t n = -1;
        rlx_status st = rlx_eos_tokens(w, ids, 8, &n);
        cr_expect_eq(st, cases[i].want, "case %zu: %s (%s)", i, rlx_status_name(st), rlx_last_error());
        if (st == RLX_OK) cr_expect(n == cases[i].n && !memcmp(ids, cases[i].ids, sizeof(int32_t) * (size_t)n), "case %zu: %lld ids", i, (long long)n);
        else cr_expect(strstr(rlx_last_error(), "generation_config.json"), "case %zu names the file: %s", i, rlx_last_error());
        rlx_weights_destroy(w);
        rlxt_rmtree(dir);
        free(dir);
    }
    cr_expect_eq(rlx_eos_tokens(NULL, NULL, 0, NULL), RLX_ERR_INVALID_ARGUMENT);
}

/* ---- the command ---------------------------------------------------------------------------------------- */

Test(generate, cli_out_json_and_usage) {
    char out[1 << 15], err[4096], args[8192], path[1200];
    char *dir = rlxt_tmpdir();
    snprintf(path, sizeof path, "%s/g.json", dir);
    rlxt_llama_fixture f;
    load("gqa_tied_f32", &f);
    /* the fixture's three prompts, greedy, 32 new tokens: the JSON holds transformers' tokens */
    char toks[3][400];
    for (int i = 0; i < 3; i++) {
        int n = 0;
        for (int64_t t = 0; t < f.prompt_len[i]; t++) n += snprintf(toks[i] + n, sizeof toks[i] - (size_t)n, "%s%d", t ? "," : "", f.prompt[i][t]);
    }
    snprintf(args, sizeof args, "generate --model %s --tokens %s --tokens %s --tokens %s --max-new-tokens 32 --page-size 4 --device cpu --out %s",
             f.dir, toks[0], toks[1], toks[2], path);
    int rc = rlxt_run_cli(NULL, args, out, sizeof out, err, sizeof err);
    cr_assert_eq(rc, 0, "rlx %s: exit %d: %s", args, rc, err);
    cr_expect(strstr(out, "time to first token") && strstr(out, "tokens/s"), "%s", out);
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    cr_assert(j, "%s: %s", path, je.text);
    cr_expect_eq(json_object_size(j), 1, "the file holds \"sequences\" only");
    json_t *seqs = json_object_get(j, "sequences");
    cr_assert(json_is_array(seqs) && json_array_size(seqs) == 3);
    for (int i = 0; i < 3; i++) {
        json_t *s = json_array_get(seqs, (size_t)i);
        cr_expect_eq(json_object_size(s), 3, "sequence %d: prompt, tokens, finish", i);
        json_t *pr = json_object_get(s, "prompt"), *tk = json_object_get(s, "tokens"), *fin = json_object_get(s, "finish");
        cr_assert(json_is_array(pr) && json_is_array(tk) && json_is_string(fin));
        cr_expect_eq((int64_t)json_array_size(pr), f.prompt_len[i]);
        for (size_t t = 0; t < json_array_size(pr); t++) cr_expect_eq(json_integer_value(json_array_get(pr, t)), f.prompt[i][t]);
        cr_expect_eq((int64_t)json_array_size(tk), f.gen_len[i], "sequence %d", i);
        for (size_t t = 0; t < json_array_size(tk) && (int64_t)t < f.gen_len[i]; t++)
            cr_expect_eq(json_integer_value(json_array_get(tk, t)), f.gen[i][t], "sequence %d token %zu", i, t);
        cr_expect_str_eq(json_string_value(fin), f.gen_stop[i] ? "stop" : "length");
    }
    json_decref(j);
    /* usage errors exit 2 with one line */
    const char *bad[] = {
        "generate --model %s --tokens 1,2",                                           /* no --max-new-tokens */
        "generate --model %s --max-new-tokens 4",                                     /* no --tokens */
        "generate --model %s --tokens 1,2 --max-new-tokens 4 --top-p 0",              /* top-p in (0, 1] */
        "generate --model %s --tokens 1,2 --max-new-tokens 4 --temperature -1",
        "generate --model %s --tokens 1,2 --max-new-tokens 4 --page-size 12",
        "generate --model %s --tokens 1,97 --max-new-tokens 4",                       /* vocabulary 97 */
        "generate --model %s --tokens 1,2 --max-new-tokens 63",                       /* 2 + 63 > 64 positions */
        "generate --model %s --tokens 1,2 --max-new-tokens 4 --stop-token 200",
        "generate --model %s --tokens 1,2 --max-new-tokens 4 --frobnicate",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(args, sizeof args, bad[i], f.dir);
        rc = rlxt_run_cli(NULL, args, out, sizeof out, err, sizeof err);
        cr_expect_eq(rc, 2, "rlx %s: exit %d (%s)", args, rc, err);
        cr_expect(!strncmp(err, "rlx: error: ", 12) && strchr(err, '\n') == err + strlen(err) - 1, "rlx %s: stderr '%s'", args, err);
    }
    rc = rlxt_run_cli(NULL, "generate --help", out, sizeof out, err, sizeof err);
    cr_expect_eq(rc, 0);
    const char *opts[] = {"--model", "--tokens", "--max-new-tokens", "--temperature", "--top-k", "--top-p", "--seed",
                          "--stop-token", "--page-size", "--device", "--out"};
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) cr_expect(strstr(out, opts[i]), "usage names %s", opts[i]);
    rlxt_llama_fixture_free(&f);
    rlxt_rmtree(dir);
    free(dir);
}

/* Sampling from the command line is reproducible with --seed, and --stop-token ends a sequence on
 * that token (kept as its last), "finish": "stop" in the JSON. */
Test(generate, cli_seeded_sampling_and_stop_token) {
    char out[1 << 15], err[4096], args[4096], path[1200], a[1 << 14], b[1 << 14];
    char *dir = rlxt_tmpdir();
    snprintf(path, sizeof path, "%s/s.json", dir);
    rlxt_llama_fixture f;
    load("gqa_tied_f32", &f);
    const char *sample = "generate --model %s --tokens 5,6,7 --tokens 9 --max-new-tokens 12 --temperature 1.2 --top-k 20 --top-p 0.9 "
                         "--seed %d --device cpu --out %s";
    for (int run = 0; run < 3; run++) {
        snprintf(args, sizeof args, sample, f.dir, run == 2 ? 12 : 11, path);
        const int rc = rlxt_run_cli(NULL, args, out, sizeof out, err, sizeof err);
        cr_assert_eq(rc, 0, "rlx %s: exit %d: %s", args, rc, err);
        rlxt_slurp(path, run ? b : a, sizeof a);
        if (run == 1) cr_expect_str_eq(a, b, "--seed 11 twice gave different tokens");
        if (run == 2) cr_expect(strcmp(a, b), "--seed 11 and --seed 12 gave the same tokens for both prompts");
    }
    /* greedy's 3rd new token for the fixture's prompt 2 as the stop token: generation ends at its
     * first occurrence */
    const int32_t stop = f.gen[2][2];
    int64_t first = 0;
    while (f.gen[2][first] != stop) first++;
    int n = snprintf(args, sizeof args, "generate --model %s --tokens ", f.dir);
    for (int64_t t = 0; t < f.prompt_len[2]; t++) n += snprintf(args + n, sizeof args - (size_t)n, "%s%d", t ? "," : "", f.prompt[2][t]);
    snprintf(args + n, sizeof args - (size_t)n, " --max-new-tokens 32 --stop-token %d --device cpu --out %s", stop, path);
    const int rc = rlxt_run_cli(NULL, args, out, sizeof out, err, sizeof err);
    cr_assert_eq(rc, 0, "rlx %s: exit %d: %s", args, rc, err);
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    cr_assert(j, "%s: %s", path, je.text);
    json_t *s = json_array_get(json_object_get(j, "sequences"), 0), *tk = json_object_get(s, "tokens");
    cr_expect_str_eq(json_string_value(json_object_get(s, "finish")), "stop");
    cr_expect_eq((int64_t)json_array_size(tk), first + 1, "stops at new token %lld", (long long)first);
    for (size_t t = 0; t < json_array_size(tk) && (int64_t)t < f.gen_len[2]; t++)
        cr_expect_eq(json_integer_value(json_array_get(tk, t)), f.gen[2][t], "token %zu", t);
    json_decref(j);
    rlxt_llama_fixture_free(&f);
    rlxt_rmtree(dir);
    free(dir);
}
