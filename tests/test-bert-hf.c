/* Encoders end to end against Hugging Face: tiny random BERT checkpoints written and run by
 * transformers, and NomicBERT against the generator's PyTorch forward (cross-checked with
 * transformers' NomicBertModel); tests/fixtures/gen_bert_fixtures.py. The fixtures are
 * right-padded batches with a mask; rlx packs them (rlx_pack_padded) and never pads.
 * Bounds (issue 8, NUMERICS.md): per-sequence cosine ≥ 0.9999 for pooled outputs, and
 * max|Δ| / max|ref| ≤ 1e-4 over the real (mask = 1) positions of last_hidden_state.
 * Also: the `rlx embed` command on the same fixtures, its outputs and exit codes. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "io/npy.h"
#include "rlx/encoder.h"
#include "testutil.h"

typedef struct bert_case {
    char dir[1024];
    rlx_weights *w;
    rlx_encoder_config cfg;
    int64_t B, S, H, n;         /* padded shape, hidden, real tokens */
    int32_t *ids, *types;       /* packed [n] */
    int64_t lens[16];
    int32_t *mask;              /* padded [B, S] */
    float *hidden, *cls, *mean; /* references: [B, S, H], [B, H], [B, H] */
} bert_case;

static int32_t *json_matrix(json_t *root, const char *key, int64_t *B, int64_t *S) {
    json_t *rows = json_object_get(root, key);
    cr_assert(json_is_array(rows), "inputs.json: no '%s'", key);
    *B = (int64_t)json_array_size(rows);
    *S = (int64_t)json_array_size(json_array_get(rows, 0));
    int32_t *m = malloc((size_t)(*B * *S) * sizeof *m);
    for (int64_t b = 0; b < *B; b++)
        for (int64_t t = 0; t < *S; t++) m[b * *S + t] = (int32_t)json_integer_value(json_array_get(json_array_get(rows, (size_t)b), (size_t)t));
    return m;
}

static float *load_npy(const char *dir, const char *name, int nd_want, const int64_t *shape_want) {
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    float *d;
    int nd;
    int64_t shape[4];
    cr_assert_eq(rlx__npy_read_f32(path, &d, &nd, shape, 4), RLX_OK, "%s", rlx_last_error());
    cr_assert_eq(nd, nd_want, "%s", path);
    for (int i = 0; i < nd; i++) cr_assert_eq(shape[i], shape_want[i], "%s: dim %d", path, i);
    return d;
}

static void load_case(const char *name, bert_case *c) {
    memset(c, 0, sizeof *c);
    snprintf(c->dir, sizeof c->dir, "%s/bert/%s", rlxt_fixtures_dir(), name);
    cr_assert_eq(rlx_weights_open(c->dir, &c->w), RLX_OK, "%s", rlx_last_error());
    cr_assert_eq(rlx_encoder_config_from_weights(c->w, NULL, &c->cfg), RLX_OK, "%s", rlx_last_error());
    c->H = c->cfg.hidden_size;
    char path[1200];
    snprintf(path, sizeof path, "%s/inputs.json", c->dir);
    json_error_t err;
    json_t *j = json_load_file(path, 0, &err);
    cr_assert(j, "%s: %s", path, err.text);
    int64_t B2, S2, B3, S3;
    int32_t *ids = json_matrix(j, "input_ids", &c->B, &c->S);
    c->mask = json_matrix(j, "attention_mask", &B2, &S2);
    int32_t *tt = json_matrix(j, "token_type_ids", &B3, &S3);
    json_decref(j);
    cr_assert(B2 == c->B && B3 == c->B && S2 == c->S && S3 == c->S && c->B <= 16);
    c->ids = malloc((size_t)(c->B * c->S) * sizeof(int32_t));
    c->types = malloc((size_t)(c->B * c->S) * sizeof(int32_t));
    int64_t n2, lens2[16];
    cr_assert_eq(rlx_pack_padded(ids, c->mask, c->B, c->S, c->ids, c->lens, &c->n), RLX_OK, "%s", rlx_last_error());
    cr_assert_eq(rlx_pack_padded(tt, c->mask, c->B, c->S, c->types, lens2, &n2), RLX_OK, "%s", rlx_last_error());
    cr_assert_eq(n2, c->n);
    free(ids);
    free(tt);
    const int64_t s3[3] = {c->B, c->S, c->H}, s2[2] = {c->B, c->H};
    c->hidden = load_npy(c->dir, "last_hidden_state.npy", 3, s3);
    c->cls = load_npy(c->dir, "pooled_cls.npy", 2, s2);
    c->mean = load_npy(c->dir, "pooled_mean.npy", 2, s2);
}

static void free_case(bert_case *c) {
    rlx_weights_destroy(c->w);
    free(c->ids);
    free(c->types);
    free(c->mask);
    free(c->hidden);
    free(c->cls);
    free(c->mean);
}

/* Output of the recipe for the case's packed batch: [n, H] (pool none) or [B, H]. */
static float *run_case(const bert_case *c, rlx_pool pool, int normalize, int with_types) {
    rlx_encoder_recipe_params p = rlx_encoder_recipe_default_params();
    p.batch = c->B;
    p.seq = c->S;
    p.pool = pool;
    p.normalize = normalize;
    rlx_flow *f;
    cr_assert_eq(rlx_encoder_flow(&c->cfg, &p, &f), RLX_OK, "flow: %s", rlx_last_error());
    rlx_model *m;
    cr_assert_eq(rlx_model_build(f, c->w, NULL, &m), RLX_OK, "build: %s", rlx_last_error());
    rlx_session *s;
    cr_assert_eq(rlx_session_create(m, &s), RLX_OK);
    rlx_named_ids tt = {RLX_TOKEN_TYPE_IDS, c->types, c->n};
    rlx_prefill_batch b = {.tokens = c->ids, .n_tokens = c->n, .seq_lens = c->lens, .n_seqs = c->B, .inputs = &tt,
                           .n_inputs = with_types ? 1 : 0};
    cr_assert_eq(rlx_session_prefill_ex(s, &b, NULL), RLX_OK, "prefill: %s", rlx_last_error());
    int64_t rows, cols;
    cr_assert_eq(rlx_session_output_shape(s, &rows, &cols), RLX_OK);
    cr_assert_eq(rows, pool == RLX_POOL_NONE ? c->n : c->B);
    cr_assert_eq(cols, c->H);
    float *out = malloc((size_t)(rows * cols) * sizeof(float));
    cr_assert_eq(rlx_session_output_to_host(s, out, (size_t)(rows * cols)), RLX_OK);
    rlx_session_destroy(s);
    rlx_model_destroy(m);
    rlx_flow_destroy(f);
    return out;
}

static double cosine(const float *a, const float *b, int64_t n) {
    double ab = 0, aa = 0, bb = 0;
    for (int64_t i = 0; i < n; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    return ab / sqrt(aa * bb);
}

/* Pooled [B, H] against ref: per-sequence cosine ≥ 0.9999 and max|Δ|/max|ref| ≤ 1e-4. Returns
 * the worst cosine; *rel gets the relative error. */
static double check_pooled(const char *what, const bert_case *c, const float *got, const float *ref, double *rel) {
    double worst = 1;
    for (int64_t b = 0; b < c->B; b++) {
        double cs = cosine(got + b * c->H, ref + b * c->H, c->H);
        cr_expect(cs >= 0.9999, "%s: sequence %lld: cosine %.8f < 0.9999", what, (long long)b, cs);
        if (cs < worst) worst = cs;
    }
    const size_t n = (size_t)(c->B * c->H);
    *rel = rlxt_max_abs_diff(got, ref, n) / rlxt_max_abs(ref, n);
    cr_expect(*rel <= 1e-4, "%s: max|d|/max|ref| = %.3g > 1e-4", what, *rel);
    return worst;
}

static const char *cases[] = {"bert_token_types_f32", "bert_single_type_f32", "bert_prefixed_mlm_f32", "nomic_bert_f32",
                              "st_legacy_bert_f32"};
static int case_ids[] = {0, 1, 2, 3, 4};

ParameterizedTestParameters(bert_hf, matches_reference) {
    return cr_make_param_array(int, case_ids, sizeof case_ids / sizeof case_ids[0]);
}

ParameterizedTest(int *id, bert_hf, matches_reference) {
    const char *name = cases[*id];
    bert_case c;
    load_case(name, &c);
    if (!strcmp(name, "bert_prefixed_mlm_f32")) cr_expect_str_eq(c.cfg.prefix, "bert.");
    else cr_expect_str_eq(c.cfg.prefix, "");
    cr_expect_eq(c.cfg.arch, strncmp(name, "nomic", 5) ? RLX_ENCODER_BERT : RLX_ENCODER_NOMIC_BERT);

    /* last_hidden_state at the real positions: packed row k of sequence b is padded row b·S + t */
    float *h = run_case(&c, RLX_POOL_NONE, 0, 1);
    float *ref = malloc((size_t)(c.n * c.H) * sizeof(float));
    int64_t k = 0;
    for (int64_t b = 0; b < c.B; b++)
        for (int64_t t = 0; t < c.lens[b]; t++, k++) memcpy(ref + k * c.H, c.hidden + (b * c.S + t) * c.H, (size_t)c.H * sizeof(float));
    const size_t nh = (size_t)(c.n * c.H);
    double rel_h = rlxt_max_abs_diff(h, ref, nh) / rlxt_max_abs(ref, nh);
    cr_expect(rel_h <= 1e-4, "%s: last_hidden_state max|d|/max|ref| = %.3g > 1e-4", name, rel_h);

    double rel_cls, rel_mean, rel_norm;
    float *cls = run_case(&c, RLX_POOL_CLS, 0, 1);
    double cos_cls = check_pooled("cls", &c, cls, c.cls, &rel_cls);
    float *mean = run_case(&c, RLX_POOL_MEAN, 0, 1);
    double cos_mean = check_pooled("mean", &c, mean, c.mean, &rel_mean);
    /* normalized mean: the reference normalized the same way (f64) */
    float *norm = run_case(&c, RLX_POOL_MEAN, 1, 1);
    float *ref_norm = malloc((size_t)(c.B * c.H) * sizeof(float));
    for (int64_t b = 0; b < c.B; b++) {
        double ss = 0;
        for (int64_t i = 0; i < c.H; i++) ss += (double)c.mean[b * c.H + i] * c.mean[b * c.H + i];
        for (int64_t i = 0; i < c.H; i++) ref_norm[b * c.H + i] = (float)(c.mean[b * c.H + i] / sqrt(ss));
    }
    double cos_norm = check_pooled("mean+normalize", &c, norm, ref_norm, &rel_norm);
    cr_log_info("%s: last_hidden_state rel %.2e | cls 1-cos %.1e rel %.2e | mean 1-cos %.1e rel %.2e | normalized 1-cos %.1e rel %.2e", name,
                rel_h, 1 - cos_cls, rel_cls, 1 - cos_mean, rel_mean, 1 - cos_norm, rel_norm);
    free(h);
    free(ref);
    free(cls);
    free(mean);
    free(norm);
    free(ref_norm);
    free_case(&c);
}

/* type_vocab_size 1 with all-zero types: not passing token types is the same as zeros. */
Test(bert_hf, absent_token_types_are_zeros) {
    bert_case c;
    load_case("bert_single_type_f32", &c);
    for (int64_t i = 0; i < c.n; i++) cr_assert_eq(c.types[i], 0);
    float *a = run_case(&c, RLX_POOL_MEAN, 0, 1), *b = run_case(&c, RLX_POOL_MEAN, 0, 0);
    cr_expect_eq(rlxt_max_abs_diff(a, b, (size_t)(c.B * c.H)), 0.0);
    free(a);
    free(b);
    free_case(&c);
}

/* Token types change the result where the fixture has non-zero ones (guards a dropped gather). */
Test(bert_hf, token_types_are_used) {
    bert_case c;
    load_case("bert_token_types_f32", &c);
    float *a = run_case(&c, RLX_POOL_MEAN, 0, 1), *b = run_case(&c, RLX_POOL_MEAN, 0, 0);
    cr_expect(rlxt_max_abs_diff(a, b, (size_t)(c.B * c.H)) > 1e-3);
    free(a);
    free(b);
    free_case(&c);
}

// ---- rlx embed ------------------------------------------------------------------------------------

static char out_text[1 << 16], err_text[1 << 14];

static int rlx(const char *args) {
    int rc = rlxt_run_cli(NULL, args, out_text, sizeof out_text, err_text, sizeof err_text);
    cr_assert(rc >= 0, "rlx %s: %s", args, rc == -2 ? "RLX_CLI is not set (run through ctest)" : "did not exit normally");
    return rc;
}

static void write_text(const char *dir, const char *name, const char *text) { free(rlxt_write_file(dir, name, text, strlen(text))); }

static void expect_one_line_error(void) {
    cr_expect(!strncmp(err_text, "rlx: error: ", 12), "stderr: %s", err_text);
    const char *nl = strchr(err_text, '\n');
    cr_expect(nl && nl[1] == '\0', "error is not one line: %s", err_text);
}

/* "--tokens a,b,c --token-types x,y,z" for every sequence of the case. */
static void case_args(const bert_case *c, int with_types, char *buf, size_t cap) {
    size_t len = 0;
    int64_t k = 0;
    for (int64_t b = 0; b < c->B; b++) {
        len += (size_t)snprintf(buf + len, cap - len, " --tokens ");
        for (int64_t t = 0; t < c->lens[b]; t++) len += (size_t)snprintf(buf + len, cap - len, "%s%d", t ? "," : "", c->ids[k + t]);
        if (with_types) {
            len += (size_t)snprintf(buf + len, cap - len, " --token-types ");
            for (int64_t t = 0; t < c->lens[b]; t++) len += (size_t)snprintf(buf + len, cap - len, "%s%d", t ? "," : "", c->types[k + t]);
        }
        k += c->lens[b];
    }
}

Test(bert_hf, embed_writes_pooled_npy) {
    char *dir = rlxt_tmpdir();
    char npy[1100], a[8192], seqs[2048];
    snprintf(npy, sizeof npy, "%s/e.npy", dir);
    for (int i = 0; i < 4; i++) {
        bert_case c;
        load_case(cases[i], &c);
        case_args(&c, 1, seqs, sizeof seqs);
        for (int mode = 0; mode < 3; mode++) {
            static const char *flags[3] = {"--pool cls", "--pool mean", "--normalize"}; /* default pool: mean */
            snprintf(a, sizeof a, "embed --model %s%s %s --device cpu --out %s", c.dir, seqs, flags[mode], npy);
            cr_assert_eq(rlx(a), 0, "%s: %s", cases[i], err_text);
            cr_expect(strstr(out_text, "rlx embed:") && strstr(out_text, "sequence 0 ("), "%s", out_text);
            float *got;
            int nd;
            int64_t shape[4];
            cr_assert_eq(rlx__npy_read_f32(npy, &got, &nd, shape, 4), RLX_OK, "%s", rlx_last_error());
            cr_expect(nd == 2 && shape[0] == c.B && shape[1] == c.H);
            const float *ref = mode == 0 ? c.cls : c.mean;
            for (int64_t b = 0; b < c.B; b++) {
                double cs = cosine(got + b * c.H, ref + b * c.H, c.H);
                cr_expect(cs >= 0.9999, "%s %s: sequence %lld cosine %.8f", cases[i], flags[mode], (long long)b, cs);
                if (mode == 2) {
                    double ss = 0;
                    for (int64_t h = 0; h < c.H; h++) ss += (double)got[b * c.H + h] * got[b * c.H + h];
                    cr_expect(fabs(sqrt(ss) - 1) < 1e-5, "normalized norm %g", sqrt(ss));
                }
            }
            free(got);
        }
        free_case(&c);
    }
    rlxt_rmtree(dir);
    free(dir);
}

Test(bert_hf, embed_usage_errors_exit_2) {
    bert_case c;
    load_case("bert_token_types_f32", &c); /* vocab 61, type_vocab_size 2, 32 positions */
    char a[2400];
    const char *d = c.dir;
    static const char *bad[][2] = {
        {"--tokens 1,,2", "--tokens: expected a non-negative integer"},
        {"--tokens 1,x", "--tokens: expected"},
        {"--tokens -1", "--tokens: expected"},
        {"--tokens 1,61", "id 61 is outside the vocabulary [0, 61)"},
        {"--tokens 1,2 --tokens 3 --token-types 0,0", "1 list for 2 --tokens lists"},
        {"--tokens 1,2,3 --token-types 0,1", "list 0 has 2 ids but its --tokens list has 3"},
        {"--tokens 1,2 --token-types 0,2", "type 2 is outside [0, 2)"},
        {"--tokens 1,2 --token-types 0,a", "--token-types: expected"},
        {"--tokens 1 --pool max", "--pool: 'max' is not one of cls, mean, none"},
        {"--tokens 1 --device gpu", "--device"},
        {"--tokens 1 --bogus", "unknown option"},
        {"", "--tokens is required"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(a, sizeof a, "embed --model %s %s", d, bad[i][0]);
        cr_expect_eq(rlx(a), 2, "%s: %s", bad[i][0], err_text);
        expect_one_line_error();
        cr_expect(strstr(err_text, bad[i][1]), "%s: %s", bad[i][0], err_text);
    }
    /* 33 tokens: one more than max_position_embeddings 32 */
    char longer[200] = "";
    for (int i = 0; i < 33; i++) strcat(longer, i ? ",1" : "1");
    snprintf(a, sizeof a, "embed --model %s --tokens %s", d, longer);
    cr_expect_eq(rlx(a), 2);
    cr_expect(strstr(err_text, "33 tokens exceed max_position_embeddings 32"), "%s", err_text);
    cr_expect_eq(rlx("embed --tokens 1"), 2);
    free_case(&c);
}

Test(bert_hf, embed_model_errors_exit_1) {
    cr_expect_eq(rlx("embed --model /nonexistent/rlx-model --tokens 1"), 1);
    expect_one_line_error();
    /* a checkpoint missing two weights: both keys are named */
    bert_case c;
    load_case("bert_prefixed_mlm_f32", &c);
    rlx_weights *w;
    cr_assert_eq(rlx_weights_create(&w), RLX_OK);
    for (size_t i = 0; i < rlx_weights_count(c.w); i++) {
        rlx_tensor_view v;
        cr_assert_eq(rlx_weights_at(c.w, i, &v), RLX_OK);
        if (!strcmp(v.name, "bert.encoder.layer.0.output.dense.bias") || !strcmp(v.name, "bert.embeddings.position_embeddings.weight"))
            continue;
        cr_assert_eq(rlx_weights_add(w, v.name, v.dtype, v.ndim, v.shape, v.data), RLX_OK);
    }
    cr_assert_eq(rlx_weights_set_config_json(w, rlx_weights_config_json(c.w)), RLX_OK);
    char *dir = rlxt_tmpdir();
    cr_assert_eq(rlx_weights_save_dir(w, dir), RLX_OK, "%s", rlx_last_error());
    rlx_weights_destroy(w);
    char a[2400];
    snprintf(a, sizeof a, "embed --model %s --tokens 1,2,3", dir);
    cr_expect_eq(rlx(a), 1);
    expect_one_line_error();
    cr_expect(strstr(err_text, "'bert.encoder.layer.0.output.dense.bias'") && strstr(err_text, "'bert.embeddings.position_embeddings.weight'"),
              "%s", err_text);
    /* a config rlx cannot run */
    write_text(dir, "config.json", "{\"model_type\": \"roberta\"}");
    cr_expect_eq(rlx(a), 1);
    expect_one_line_error();
    cr_expect(strstr(err_text, "key 'model_type': 'roberta'"), "%s", err_text);
    write_text(dir, "config.json", "{\"model_type\": \"bert\", \"vocab_size\": 61}");
    cr_expect_eq(rlx(a), 1);
    cr_expect(strstr(err_text, "key 'hidden_size' is missing"), "%s", err_text);
    rlxt_rmtree(dir);
    free(dir);
    free_case(&c);
}

/* sentence-transformers layout: the BertModel keys at the top of the directory plus
 * 1_Pooling/config.json, which picks the pooling when --pool is not given. */
Test(bert_hf, embed_reads_sentence_transformers_pooling) {
    bert_case c;
    load_case("bert_token_types_f32", &c);
    char *dir = rlxt_tmpdir();
    cr_assert_eq(rlx_weights_save_dir(c.w, dir), RLX_OK, "%s", rlx_last_error());
    char sub[1100], a[8192], seqs[2048], npy[1100];
    snprintf(sub, sizeof sub, "%s/1_Pooling", dir);
    cr_assert_eq(mkdir(sub, 0700), 0);
    write_text(sub, "config.json", "{\"word_embedding_dimension\": 32, \"pooling_mode_cls_token\": true, \"pooling_mode_mean_tokens\": false}");
    snprintf(npy, sizeof npy, "%s/e.npy", dir);
    case_args(&c, 1, seqs, sizeof seqs);
    snprintf(a, sizeof a, "embed --model %s%s --out %s", dir, seqs, npy);
    cr_assert_eq(rlx(a), 0, "%s", err_text);
    cr_expect(strstr(out_text, "pool cls (from 1_Pooling/config.json)"), "%s", out_text);
    float *got;
    int nd;
    int64_t shape[4];
    cr_assert_eq(rlx__npy_read_f32(npy, &got, &nd, shape, 4), RLX_OK);
    for (int64_t b = 0; b < c.B; b++) cr_expect(cosine(got + b * c.H, c.cls + b * c.H, c.H) >= 0.9999);
    free(got);
    write_text(sub, "config.json", "{\"pooling_mode_max_tokens\": true}");
    cr_expect_eq(rlx(a), 1);
    cr_expect(strstr(err_text, "pooling_mode_max_tokens is not one rlx implements"), "%s", err_text);
    rlxt_rmtree(dir);
    free(dir);
    free_case(&c);
}

/* The way transformers < 4.31 saved BERT: an int64 embeddings.position_ids buffer beside the
 * weights. rlx computes positions itself: the buffer is held, unused, and named as such. */
Test(bert_hf, legacy_position_ids_buffer_is_unused) {
    bert_case c;
    load_case("st_legacy_bert_f32", &c);
    rlx_tensor_view v;
    cr_assert(rlx_weights_has(c.w, "embeddings.position_ids", &v));
    cr_expect_eq(v.dtype, RLX_DTYPE_I64);
    rlx_encoder_recipe_params p = rlx_encoder_recipe_default_params();
    p.seq = c.S;
    rlx_flow *f;
    cr_assert_eq(rlx_encoder_flow(&c.cfg, &p, &f), RLX_OK);
    rlx_model *m;
    cr_assert_eq(rlx_model_build(f, c.w, NULL, &m), RLX_OK, "%s", rlx_last_error());
    int found = 0;
    for (int i = 0; i < rlx_model_unused_tensor_count(m); i++) found += !strcmp(rlx_model_unused_tensor(m, i), "embeddings.position_ids");
    cr_expect_eq(found, 1);
    rlx_model_destroy(m);

    /* a tensor a stage reads, stored in a type rlx only holds: refused by name */
    rlx_weights *w2;
    cr_assert_eq(rlx_weights_create(&w2), RLX_OK);
    cr_assert_eq(rlx_weights_set_config_json(w2, rlx_weights_config_json(c.w)), RLX_OK);
    for (size_t i = 0; i < rlx_weights_count(c.w); i++) {
        rlx_tensor_view t;
        cr_assert_eq(rlx_weights_at(c.w, i, &t), RLX_OK);
        int swap = !strcmp(t.name, "embeddings.position_embeddings.weight");
        cr_assert_eq(rlx_weights_add(w2, t.name, swap ? RLX_DTYPE_I32 : t.dtype, t.ndim, t.shape, t.data), RLX_OK);
    }
    m = (rlx_model *)1;
    cr_expect_eq(rlx_model_build(f, w2, NULL, &m), RLX_ERR_UNSUPPORTED);
    cr_expect_null(m);
    cr_expect(strstr(rlx_last_error(), "weight 'embeddings.position_embeddings.weight'") && strstr(rlx_last_error(), "stored as I32"),
              "%s", rlx_last_error());
    rlx_weights_destroy(w2);
    rlx_flow_destroy(f);
    free_case(&c);
}

static float *read_npy2(const char *path, int64_t rows, int64_t cols) {
    float *got;
    int nd;
    int64_t shape[4];
    cr_assert_eq(rlx__npy_read_f32(path, &got, &nd, shape, 4), RLX_OK, "%s", rlx_last_error());
    cr_assert(nd == 2 && shape[0] == rows && shape[1] == cols, "%s: shape", path);
    return got;
}

static double row_norm(const float *x, int64_t n) {
    double ss = 0;
    for (int64_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
    return sqrt(ss);
}

/* A sentence-transformers directory (Transformer -> Pooling mean -> Normalize) gives what
 * SentenceTransformer.encode gives without any flag: unit vectors, the normalized mean pool. */
Test(bert_hf, embed_follows_sentence_transformers_modules) {
    bert_case c;
    load_case("st_legacy_bert_f32", &c);
    int64_t shp[2] = {c.B, c.H};
    float *want = load_npy(c.dir, "sentence_embedding.npy", 2, shp);
    char *dir = rlxt_tmpdir();
    char a[8192], seqs[2048], npy[1100];
    snprintf(npy, sizeof npy, "%s/e.npy", dir);
    case_args(&c, 0, seqs, sizeof seqs);
    snprintf(a, sizeof a, "embed --model %s%s --device cpu --out %s", c.dir, seqs, npy);
    cr_assert_eq(rlx(a), 0, "%s", err_text);
    cr_expect(strstr(out_text, "pool mean (from 1_Pooling/config.json), L2-normalized (modules.json: Normalize)"), "%s", out_text);
    float *got = read_npy2(npy, c.B, c.H);
    for (int64_t b = 0; b < c.B; b++) {
        cr_expect(fabs(row_norm(got + b * c.H, c.H) - 1) < 1e-5, "sequence %lld: norm %.7f", (long long)b, row_norm(got + b * c.H, c.H));
        double cs = cosine(got + b * c.H, want + b * c.H, c.H), d = rlxt_max_abs_diff(got + b * c.H, want + b * c.H, (size_t)c.H);
        cr_expect(cs >= 0.9999 && d <= 1e-4, "sequence %lld: cosine %.8f, max|d| %.3g against sentence_embedding.npy", (long long)b, cs, d);
    }
    free(got);
    /* flags override the modules: --no-normalize gives the plain mean pool, --pool cls the first token */
    snprintf(a, sizeof a, "embed --model %s%s --device cpu --no-normalize --out %s", c.dir, seqs, npy);
    cr_assert_eq(rlx(a), 0, "%s", err_text);
    cr_expect(!strstr(out_text, "L2-normalized"), "%s", out_text);
    got = read_npy2(npy, c.B, c.H);
    for (int64_t b = 0; b < c.B; b++) cr_expect(cosine(got + b * c.H, c.mean + b * c.H, c.H) >= 0.9999);
    cr_expect(fabs(row_norm(got, c.H) - row_norm(c.mean, c.H)) < 1e-3 * row_norm(c.mean, c.H));
    free(got);
    snprintf(a, sizeof a, "embed --model %s%s --device cpu --pool cls --out %s", c.dir, seqs, npy);
    cr_assert_eq(rlx(a), 0, "%s", err_text);
    cr_expect(strstr(out_text, "pool cls, L2-normalized (modules.json: Normalize)"), "%s", out_text);
    free(want);
    rlxt_rmtree(dir);
    free(dir);
    free_case(&c);
}

/* A module rlx cannot run is refused by name (exit 1); --ignore-modules embeds with the encoder. */
Test(bert_hf, embed_refuses_modules_it_cannot_run) {
    bert_case c;
    load_case("st_legacy_bert_f32", &c);
    char *dir = rlxt_tmpdir();
    cr_assert_eq(rlx_weights_save_dir(c.w, dir), RLX_OK, "%s", rlx_last_error());
    char sub[1100], a[8192], seqs[2048];
    snprintf(sub, sizeof sub, "%s/1_Pooling", dir);
    cr_assert_eq(mkdir(sub, 0700), 0);
    write_text(sub, "config.json", "{\"pooling_mode_mean_tokens\": true}");
    write_text(dir, "modules.json",
               "[{\"idx\": 0, \"name\": \"0\", \"path\": \"\", \"type\": \"sentence_transformers.models.Transformer\"},"
               " {\"idx\": 1, \"name\": \"1\", \"path\": \"1_Pooling\", \"type\": \"sentence_transformers.models.Pooling\"},"
               " {\"idx\": 2, \"name\": \"2\", \"path\": \"2_Dense\", \"type\": \"sentence_transformers.models.Dense\"}]");
    case_args(&c, 0, seqs, sizeof seqs);
    snprintf(a, sizeof a, "embed --model %s%s --device cpu", dir, seqs);
    cr_expect_eq(rlx(a), 1);
    expect_one_line_error();
    cr_expect(strstr(err_text, "module 2 '2_Dense' (sentence_transformers.models.Dense) is not a module rlx can run"), "%s", err_text);
    snprintf(a, sizeof a, "embed --model %s%s --device cpu --ignore-modules", dir, seqs);
    cr_expect_eq(rlx(a), 0, "%s", err_text);
    cr_expect(strstr(out_text, "pool mean (default)") && !strstr(out_text, "L2-normalized"), "%s", out_text);
    rlxt_rmtree(dir);
    free(dir);
    free_case(&c);
}

/* The reader itself: orders, folders, files that are not what they claim. */
Test(bert_hf, sentence_transformers_reader) {
    char *dir = rlxt_tmpdir();
    rlx_st_pipeline p;
    cr_expect_eq(rlx_sentence_transformers_read(NULL, &p), RLX_ERR_INVALID_ARGUMENT);
    cr_expect_eq(rlx_sentence_transformers_read(dir, NULL), RLX_ERR_INVALID_ARGUMENT);
    /* nothing there: no pipeline */
    cr_assert_eq(rlx_sentence_transformers_read(dir, &p), RLX_OK);
    cr_expect(!p.has_modules && !p.has_pooling && !p.normalize && p.pool == RLX_POOL_MEAN && !p.transformer_path[0]);
    char sub[1100];
    snprintf(sub, sizeof sub, "%s/pool", dir);
    cr_assert_eq(mkdir(sub, 0700), 0);
    write_text(sub, "config.json", "{\"pooling_mode_cls_token\": true}");
    static const struct {
        const char *json;
        rlx_status want;
        const char *needle;
    } cases_[] = {
        {"[{\"type\": \"sentence_transformers.models.Transformer\", \"path\": \"0_BERT\"}, {\"type\": \"sentence_transformers.models.Pooling\", \"path\": \"pool\"}]", RLX_OK, NULL},
        {"[{\"type\": \"sentence_transformers.models.Transformer\", \"path\": \"\"}, {\"type\": \"sentence_transformers.models.Normalize\", \"path\": \"n\"}]", RLX_ERR_UNSUPPORTED, "is out of the order rlx runs"},
        {"[{\"type\": \"sentence_transformers.models.Pooling\", \"path\": \"pool\"}]", RLX_ERR_UNSUPPORTED, "is out of the order"},
        {"[{\"type\": \"sentence_transformers.models.Transformer\", \"path\": \"../up\"}]", RLX_ERR_FORMAT, "not a folder inside"},
        {"[{\"type\": \"sentence_transformers.models.Transformer\", \"path\": \"\"}, {\"type\": \"sentence_transformers.models.Pooling\", \"path\": \"missing\"}]", RLX_ERR_FORMAT, "missing/config.json"},
        {"[{\"type\": \"my_package.MyPooling\", \"path\": \"x\"}]", RLX_ERR_UNSUPPORTED, "'x' (my_package.MyPooling) is not a module rlx can run"},
        {"[]", RLX_ERR_UNSUPPORTED, "no Transformer module"},
        {"{\"type\": 1}", RLX_ERR_FORMAT, "expected a JSON array"},
        {"[{\"path\": \"\"}]", RLX_ERR_FORMAT, "module 0 has no 'type'"},
        {"[{", RLX_ERR_FORMAT, "not valid JSON"},
    };
    for (size_t i = 0; i < sizeof cases_ / sizeof cases_[0]; i++) {
        write_text(dir, "modules.json", cases_[i].json);
        memset(&p, 0x5a, sizeof p);
        rlx_status s = rlx_sentence_transformers_read(dir, &p);
        cr_expect_eq(s, cases_[i].want, "case %zu: %s", i, rlx_last_error());
        if (cases_[i].needle) cr_expect(strstr(rlx_last_error(), cases_[i].needle) && strstr(rlx_last_error(), "modules.json"), "case %zu: %s", i, rlx_last_error());
        if (i == 0) {
            cr_expect(p.has_modules && p.has_pooling && p.pool == RLX_POOL_CLS && !p.normalize);
            cr_expect_str_eq(p.transformer_path, "0_BERT");
            cr_expect_str_eq(p.pool_source, "pool/config.json");
        }
    }
    rlxt_rmtree(dir);
    free(dir);
}
