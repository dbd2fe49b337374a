/* Encoder stages and blocks: CPU reference ops by hand (LayerNorm, exact GELU, gathers,
 * pooling over packed sequences, L2 normalisation), builder and build errors by key, prefill
 * checks of named inputs, config parsing, and rlx_pack_padded. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rlx/encoder.h"
#include "runtime/cpu_ref.h"
#include "model/stages.h"
#include "testutil.h"

// ---- reference ops by hand ------------------------------------------------------------------------

Test(encoder_ref, layer_norm_by_hand) {
    /* row 0: mean 2.5, population variance 1.25; row 1: constant, so only β survives; row 2: a
     * large mean that would cancel in E[x²] − mean² (var 1 around 1e4) */
    const float x[12] = {1, 2, 3, 4, 5, 5, 5, 5, 9999, 10001, 9999, 10001};
    const float g[4] = {1, 2, 1, 0.5f}, be[4] = {0, 1, -1, 0.5f};
    float y[12], y_nobias[12];
    const double eps = 1e-5;
    rlx__ref_layer_norm(y, x, g, be, 3, 4, eps);
    rlx__ref_layer_norm(y_nobias, x, g, NULL, 3, 4, eps);
    const double inv0 = 1.0 / sqrt(1.25 + eps), inv2 = 1.0 / sqrt(1.0 + eps);
    const double want[12] = {-1.5 * inv0 * 1 + 0, -0.5 * inv0 * 2 + 1, 0.5 * inv0 * 1 - 1, 1.5 * inv0 * 0.5 + 0.5,
                             0,                   1,                   -1,                 0.5,
                             -inv2,               inv2 * 2 + 1,        -inv2 - 1,          inv2 * 0.5 + 0.5};
    for (int i = 0; i < 12; i++) {
        cr_expect(fabs(y[i] - want[i]) < 1e-5, "y[%d] = %.7f, want %.7f", i, y[i], want[i]);
        cr_expect(fabs(y_nobias[i] - (want[i] - be[i % 4])) < 1e-5, "no-bias y[%d] = %.7f", i, y_nobias[i]);
    }
}

Test(encoder_ref, gelu_is_exact_erf) {
    /* 0.5·x·(1 + erf(x/√2)); the tanh approximation gives 0.8411920 at 1, off by 1.5e-4 */
    const float x[7] = {0, 1, -1, 2, -3, 0.5f, 6};
    const double want[7] = {0, 0.8413447460685429, -0.15865525393145707, 1.9544997361036416, -0.0040496985765324,
                            0.34573123063700656, 5.999999994079};
    float y[7];
    rlx__ref_gelu(y, x, 7);
    for (int i = 0; i < 7; i++) cr_expect(fabs(y[i] - want[i]) < 2e-7, "gelu(%g) = %.9f, want %.9f", x[i], y[i], want[i]);
}

Test(encoder_ref, positions_restart_in_every_sequence) {
    const int64_t start[4] = {0, 3, 4, 8};
    int32_t pos[8];
    rlx__ref_positions(pos, start, 3);
    const int32_t want[8] = {0, 1, 2, 0, 0, 1, 2, 3};
    for (int i = 0; i < 8; i++) cr_expect_eq(pos[i], want[i], "token %d: position %d", i, pos[i]);
}

Test(encoder_ref, gather_add_and_slice) {
    const float x[6] = {1, 2, 3, 4, 5, 6};                  /* [3, 2] */
    const float table[6] = {10, 20, 30, 40, 50, 60};        /* [3, 2] */
    const int32_t ids[3] = {2, 0, 2};
    float y[6];
    rlx__ref_gather_add(y, x, ids, table, 3, 2);
    const float want[6] = {51, 62, 13, 24, 55, 66};
    for (int i = 0; i < 6; i++) cr_expect_eq(y[i], want[i]);
    const float qkv[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}; /* [2, 6] */
    float k[4];
    rlx__ref_slice_cols(k, qkv, 2, 6, 2, 2);
    const float wk[4] = {3, 4, 9, 10};
    for (int i = 0; i < 4; i++) cr_expect_eq(k[i], wk[i]);
}

Test(encoder_ref, pooling_over_packed_sequences) {
    /* sequences of 3, 1 and 4 tokens, 2 features */
    const int64_t start[4] = {0, 3, 4, 8};
    const float x[16] = {1, -1, 2, -2, 6, 0, /* s0 */ 7, 7, /* s1 */ 0, 1, 0, 2, 0, 3, 4, 10 /* s2 */};
    float cls[6], mean[6];
    rlx__ref_cls_pool(cls, x, start, 3, 2);
    rlx__ref_mean_pool(mean, x, start, 3, 2);
    const float wc[6] = {1, -1, 7, 7, 0, 1}, wm[6] = {3, -1, 7, 7, 1, 4};
    for (int i = 0; i < 6; i++) {
        cr_expect_eq(cls[i], wc[i], "cls[%d] = %g", i, cls[i]);
        cr_expect(fabs(mean[i] - wm[i]) < 1e-6, "mean[%d] = %g, want %g", i, mean[i], wm[i]);
    }
}

Test(encoder_ref, l2_normalize_rows) {
    const float x[6] = {3, 4, 0, 0, 0, 0}; /* a zero row stays zero (eps 1e-12), no NaN */
    float y[6];
    rlx__ref_l2_normalize(y, x, 2, 3);
    const float want[6] = {0.6f, 0.8f, 0, 0, 0, 0};
    for (int i = 0; i < 6; i++) cr_expect(fabs(y[i] - want[i]) < 1e-7 && !isnan(y[i]), "y[%d] = %g", i, y[i]);
}

// ---- a tiny BERT in memory ------------------------------------------------------------------------

enum { V = 11, H = 8, NH = 2, I = 12, T = 2, P = 6 };

static const char *tiny_bert_json =
    "{\"model_type\": \"bert\", \"vocab_size\": 11, \"hidden_size\": 8, \"num_hidden_layers\": 1, "
    "\"num_attention_heads\": 2, \"intermediate_size\": 12, \"max_position_embeddings\": 6, "
    "\"type_vocab_size\": 2, \"layer_norm_eps\": 1e-12, \"hidden_act\": \"gelu\"}";

static void add_rand(rlx_weights *w, rlxt_rng *r, const char *prefix, const char *name, int64_t d0, int64_t d1, float scale,
                     float offset) {
    char key[256];
    snprintf(key, sizeof key, "%s%s", prefix, name);
    int64_t shape[2] = {d0, d1};
    size_t n = (size_t)(d0 * (d1 ? d1 : 1));
    float *data = malloc(n * sizeof(float));
    rlxt_fill(r, data, n, scale);
    for (size_t i = 0; i < n; i++) data[i] += offset;
    cr_assert_eq(rlx_weights_add(w, key, RLX_DTYPE_F32, d1 ? 2 : 1, shape, data), RLX_OK, "%s", rlx_last_error());
    free(data);
}

/* A 1-layer BERT with every key under prefix, except the key named `skip` (and `skip2`). */
static rlx_weights *tiny_bert(const char *prefix, const char *skip, const char *skip2, int64_t type_rows) {
    rlx_weights *w;
    cr_assert_eq(rlx_weights_create(&w), RLX_OK);
    rlxt_rng r = {0x5eed};
    static const struct { const char *name; int64_t d0, d1; float scale, offset; } keys[] = {
        {"embeddings.word_embeddings.weight", V, H, 0.5f, 0},
        {"embeddings.position_embeddings.weight", P, H, 0.5f, 0},
        {"embeddings.token_type_embeddings.weight", T, H, 0.5f, 0},
        {"embeddings.LayerNorm.weight", H, 0, 0.3f, 1},
        {"embeddings.LayerNorm.bias", H, 0, 0.1f, 0},
        {"encoder.layer.0.attention.self.query.weight", H, H, 0.4f, 0},
        {"encoder.layer.0.attention.self.query.bias", H, 0, 0.1f, 0},
        {"encoder.layer.0.attention.self.key.weight", H, H, 0.4f, 0},
        {"encoder.layer.0.attention.self.key.bias", H, 0, 0.1f, 0},
        {"encoder.layer.0.attention.self.value.weight", H, H, 0.4f, 0},
        {"encoder.layer.0.attention.self.value.bias", H, 0, 0.1f, 0},
        {"encoder.layer.0.attention.output.dense.weight", H, H, 0.4f, 0},
        {"encoder.layer.0.attention.output.dense.bias", H, 0, 0.1f, 0},
        {"encoder.layer.0.attention.output.LayerNorm.weight", H, 0, 0.3f, 1},
        {"encoder.layer.0.attention.output.LayerNorm.bias", H, 0, 0.1f, 0},
        {"encoder.layer.0.intermediate.dense.weight", I, H, 0.4f, 0},
        {"encoder.layer.0.intermediate.dense.bias", I, 0, 0.1f, 0},
        {"encoder.layer.0.output.dense.weight", H, I, 0.4f, 0},
        {"encoder.layer.0.output.dense.bias", H, 0, 0.1f, 0},
        {"encoder.layer.0.output.LayerNorm.weight", H, 0, 0.3f, 1},
        {"encoder.layer.0.output.LayerNorm.bias", H, 0, 0.1f, 0},
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        if ((skip && !strcmp(keys[i].name, skip)) || (skip2 && !strcmp(keys[i].name, skip2))) continue;
        int64_t d0 = keys[i].d0;
        if (!strcmp(keys[i].name, "embeddings.token_type_embeddings.weight")) d0 = type_rows;
        add_rand(w, &r, prefix, keys[i].name, d0, keys[i].d1, keys[i].scale, keys[i].offset);
    }
    cr_assert_eq(rlx_weights_set_config_json(w, tiny_bert_json), RLX_OK);
    return w;
}

static rlx_model *build_tiny(rlx_weights *w, rlx_pool pool, int normalize, int64_t batch, int64_t seq) {
    rlx_encoder_config cfg;
    cr_assert_eq(rlx_encoder_config_from_weights(w, "tiny/config.json", &cfg), RLX_OK, "%s", rlx_last_error());
    rlx_encoder_recipe_params p = rlx_encoder_recipe_default_params();
    p.batch = batch;
    p.seq = seq;
    p.pool = pool;
    p.normalize = normalize;
    rlx_flow *f;
    cr_assert_eq(rlx_encoder_flow(&cfg, &p, &f), RLX_OK, "%s", rlx_last_error());
    rlx_model *m;
    rlx_status s = rlx_model_build(f, w, NULL, &m);
    cr_assert_eq(s, RLX_OK, "%s", rlx_last_error());
    rlx_flow_destroy(f);
    return m;
}

/* Runs a prefill and returns the output (rows × H). */
static float *run(rlx_model *m, const int32_t *tok, const int32_t *types, int64_t n, const int64_t *lens, int64_t ns, int64_t *rows) {
    rlx_session *s;
    cr_assert_eq(rlx_session_create(m, &s), RLX_OK);
    rlx_named_ids tt = {RLX_TOKEN_TYPE_IDS, types, n};
    rlx_prefill_batch b = {.tokens = tok, .n_tokens = n, .seq_lens = lens, .n_seqs = ns, .inputs = &tt, .n_inputs = types ? 1 : 0};
    cr_assert_eq(rlx_session_prefill_ex(s, &b, NULL), RLX_OK, "%s", rlx_last_error());
    int64_t cols;
    cr_assert_eq(rlx_session_output_shape(s, rows, &cols), RLX_OK);
    cr_assert_eq(cols, H);
    float *out = malloc((size_t)(*rows * cols) * sizeof(float));
    cr_assert_eq(rlx_session_output_to_host(s, out, (size_t)(*rows * cols)), RLX_OK);
    rlx_session_destroy(s);
    return out;
}

// ---- end to end on the tiny model -------------------------------------------------------------------

Test(encoder, packed_sequences_equal_separate_runs) {
    rlx_weights *w = tiny_bert("", NULL, NULL, T);
    const int32_t tok[9] = {1, 5, 9, 2, /* s1 */ 7, /* s2 */ 3, 3, 10, 0};
    const int32_t types[9] = {0, 0, 1, 1, 0, 0, 1, 0, 1};
    const int64_t lens[3] = {4, 1, 4};
    for (int pool = RLX_POOL_NONE; pool <= RLX_POOL_MEAN; pool++) {
        rlx_model *m = build_tiny(w, (rlx_pool)pool, pool == RLX_POOL_MEAN, 3, 4);
        int64_t rows;
        float *all = run(m, tok, types, 9, lens, 3, &rows);
        cr_expect_eq(rows, pool == RLX_POOL_NONE ? 9 : 3);
        int64_t off = 0;
        for (int q = 0; q < 3; q++) {
            int64_t r1;
            float *one = run(m, tok + off, types + off, lens[q], &lens[q], 1, &r1);
            const float *got = all + (pool == RLX_POOL_NONE ? off : q) * H;
            for (int64_t i = 0; i < r1 * H; i++)
                cr_expect_eq(got[i], one[i], "pool %s, sequence %d, element %lld: packed %.9g, alone %.9g", rlx_pool_name((rlx_pool)pool), q,
                             (long long)i, got[i], one[i]);
            free(one);
            off += lens[q];
        }
        for (int64_t i = 0; i < rows * H; i++) cr_expect(isfinite(all[i]));
        if (pool == RLX_POOL_MEAN)
            for (int q = 0; q < 3; q++) {
                double ss = 0;
                for (int c = 0; c < H; c++) ss += (double)all[q * H + c] * all[q * H + c];
                cr_expect(fabs(sqrt(ss) - 1) < 1e-6, "normalized row %d has norm %g", q, sqrt(ss));
            }
        free(all);
        rlx_model_destroy(m);
    }
    rlx_weights_destroy(w);
}

Test(encoder, token_types_matter_and_default_to_zero) {
    rlx_weights *w = tiny_bert("", NULL, NULL, T);
    rlx_model *m = build_tiny(w, RLX_POOL_NONE, 0, 1, 4);
    const int32_t tok[4] = {1, 2, 3, 4}, zeros[4] = {0}, ones[4] = {1, 1, 1, 1};
    const int64_t len = 4;
    int64_t rows;
    float *a = run(m, tok, zeros, 4, &len, 1, &rows);
    float *b = run(m, tok, NULL, 4, &len, 1, &rows); /* absent: zeros, as HF */
    float *c = run(m, tok, ones, 4, &len, 1, &rows);
    cr_expect_eq(rlxt_max_abs_diff(a, b, 4 * H), 0.0);
    cr_expect(rlxt_max_abs_diff(a, c, 4 * H) > 1e-3, "token types were ignored");
    /* plain rlx_session_prefill is prefill_ex without named inputs */
    rlx_session *s;
    rlx_session_create(m, &s);
    cr_assert_eq(rlx_session_prefill(s, tok, 4, &len, 1, NULL), RLX_OK, "%s", rlx_last_error());
    float d[4 * H];
    cr_assert_eq(rlx_session_output_to_host(s, d, 4 * H), RLX_OK);
    cr_expect_eq(rlxt_max_abs_diff(a, d, 4 * H), 0.0);
    rlx_session_destroy(s);
    free(a);
    free(b);
    free(c);
    rlx_model_destroy(m);
    rlx_weights_destroy(w);
}

static rlx_status prefill_ex(rlx_model *m, const int32_t *tok, int64_t n, const int64_t *lens, int64_t ns, const rlx_named_ids *in,
                             int64_t n_in) {
    rlx_session *s;
    cr_assert_eq(rlx_session_create(m, &s), RLX_OK);
    rlx_prefill_batch b = {.tokens = tok, .n_tokens = n, .seq_lens = lens, .n_seqs = ns, .inputs = in, .n_inputs = n_in};
    rlx_status st = rlx_session_prefill_ex(s, &b, NULL);
    rlx_session_destroy(s);
    return st;
}

Test(encoder, bad_inputs_get_clear_errors) {
    rlx_weights *w = tiny_bert("", NULL, NULL, T);
    rlx_model *m = build_tiny(w, RLX_POOL_CLS, 0, 2, 6);
    const int32_t tok[5] = {1, 2, 3, 4, 5}, types[5] = {0, 1, 0, 1, 0}, bad_types[5] = {0, 1, 2, 0, 0};
    const int64_t lens[2] = {3, 2};
    rlx_named_ids tt = {RLX_TOKEN_TYPE_IDS, types, 4};
    /* the mask/length mismatch: token types for a different number of tokens */
    cr_expect_eq(prefill_ex(m, tok, 5, lens, 2, &tt, 1), RLX_ERR_INVALID_ARGUMENT);
    cr_expect(strstr(rlx_last_error(), "input 'token_type_ids' has 4 ids but the batch has 5 tokens"), "%s", rlx_last_error());
    /* a token type >= type_vocab_size */
    tt = (rlx_named_ids){RLX_TOKEN_TYPE_IDS, bad_types, 5};
    cr_expect_eq(prefill_ex(m, tok, 5, lens, 2, &tt, 1), RLX_ERR_TOKEN_RANGE);
    cr_expect(strstr(rlx_last_error(), "token_type_ids[2] = 2 (sequence 0, position 2) is outside [0, 2)") &&
                  strstr(rlx_last_error(), "embeddings.token_type_embeddings.weight"),
              "%s", rlx_last_error());
    /* a token id >= vocab, and a negative one */
    const int32_t big[5] = {1, 2, 3, 11, 5}, neg[5] = {1, -1, 3, 4, 5};
    cr_expect_eq(prefill_ex(m, big, 5, lens, 2, NULL, 0), RLX_ERR_TOKEN_RANGE);
    cr_expect(strstr(rlx_last_error(), "outside the vocabulary [0, 11)"), "%s", rlx_last_error());
    cr_expect_eq(prefill_ex(m, neg, 5, lens, 2, NULL, 0), RLX_ERR_TOKEN_RANGE);
    /* an input the model does not have, one given twice, one without ids */
    rlx_named_ids other = {"segment_ids", types, 5};
    cr_expect_eq(prefill_ex(m, tok, 5, lens, 2, &other, 1), RLX_ERR_INVALID_ARGUMENT);
    cr_expect(strstr(rlx_last_error(), "no input 'segment_ids' (its inputs: 'token_type_ids')"), "%s", rlx_last_error());
    rlx_named_ids twice[2] = {{RLX_TOKEN_TYPE_IDS, types, 5}, {RLX_TOKEN_TYPE_IDS, types, 5}};
    cr_expect_eq(prefill_ex(m, tok, 5, lens, 2, twice, 2), RLX_ERR_INVALID_ARGUMENT);
    cr_expect(strstr(rlx_last_error(), "given twice"), "%s", rlx_last_error());
    rlx_named_ids no_ids = {RLX_TOKEN_TYPE_IDS, NULL, 5};
    cr_expect_eq(prefill_ex(m, tok, 5, lens, 2, &no_ids, 1), RLX_ERR_INVALID_ARGUMENT);
    /* lengths that do not add up */
    const int64_t wrong[2] = {3, 3};
    cr_expect_eq(prefill_ex(m, tok, 5, wrong, 2, NULL, 0), RLX_ERR_INVALID_ARGUMENT);
    rlx_model_destroy(m);
    /* one sequence longer than the position table (capacity 2 x 6 = 12 tokens, 6 positions) */
    m = build_tiny(w, RLX_POOL_CLS, 0, 2, 6);
    int32_t seven[7] = {1, 2, 3, 4, 5, 6, 7};
    const int64_t len7 = 7;
    cr_expect_eq(prefill_ex(m, seven, 7, &len7, 1, NULL, 0), RLX_ERR_INVALID_ARGUMENT);
    cr_expect(strstr(rlx_last_error(), "sequence 0 has 7 tokens, beyond the 6 positions of 'embeddings.position_embeddings.weight'"), "%s",
              rlx_last_error());
    rlx_model_destroy(m);
    rlx_weights_destroy(w);
}

Test(encoder, missing_and_misshaped_weights_are_listed_by_key) {
    rlx_weights *w = tiny_bert("bert.", "encoder.layer.0.attention.self.key.bias", "embeddings.LayerNorm.weight", T);
    rlx_encoder_config cfg;
    cr_assert_eq(rlx_encoder_config_from_weights(w, "tiny", &cfg), RLX_OK, "%s", rlx_last_error());
    cr_expect_str_eq(cfg.prefix, "bert.");
    rlx_encoder_recipe_params p = rlx_encoder_recipe_default_params();
    p.seq = P;
    rlx_flow *f;
    cr_assert_eq(rlx_encoder_flow(&cfg, &p, &f), RLX_OK, "%s", rlx_last_error());
    rlx_model *m = NULL;
    cr_expect_eq(rlx_model_build(f, w, NULL, &m), RLX_ERR_MISSING_WEIGHT);
    const char *e = rlx_last_error();
    cr_expect(strstr(e, "2 weight problems") && strstr(e, "'bert.encoder.layer.0.attention.self.key.bias'") &&
                  strstr(e, "'bert.embeddings.LayerNorm.weight'"),
              "%s", e);
    cr_expect_null(m);
    rlx_flow_destroy(f);
    rlx_weights_destroy(w);
    /* a token-type table with 3 rows where the config says type_vocab_size 2 */
    w = tiny_bert("", NULL, NULL, 3);
    cr_assert_eq(rlx_encoder_config_from_weights(w, "tiny", &cfg), RLX_OK);
    cr_assert_eq(rlx_encoder_flow(&cfg, &p, &f), RLX_OK);
    cr_expect_eq(rlx_model_build(f, w, NULL, &m), RLX_ERR_SHAPE);
    cr_expect(strstr(rlx_last_error(), "'embeddings.token_type_embeddings.weight'") && strstr(rlx_last_error(), "[3, 8], expected [2, 8]"),
              "%s", rlx_last_error());
    rlx_flow_destroy(f);
    rlx_weights_destroy(w);
}

// ---- builder --------------------------------------------------------------------------------------------

Test(encoder_flow, builder_errors_are_sticky_and_named) {
    rlx_flow *f;
    rlx_flow_create("t", &f);
    cr_expect_eq(rlx_flow_input_ids(f, "@x", 0), RLX_ERR_INVALID_ARGUMENT);
    rlx_flow_destroy(f);

    rlx_flow_create("t", &f);
    rlx_flow_input_tokens(f, "tokens", 1, 4);
    cr_expect_eq(rlx_flow_input_ids(f, "types", 0), RLX_OK);
    cr_expect_eq(rlx_flow_input_ids(f, "types", 1), RLX_ERR_BUILD);
    cr_expect(strstr(rlx_last_error(), "already has an input named 'types'"), "%s", rlx_last_error());
    cr_expect_eq(rlx_flow_token_embed(f, "e"), RLX_ERR_BUILD); /* sticky */
    rlx_flow_destroy(f);

    rlx_flow_create("t", &f);
    rlx_flow_input_tokens(f, "tokens", 1, 4);
    cr_expect_eq(rlx_flow_gather_add(f, RLX_INPUT_POSITIONS, "p", 0), RLX_ERR_BUILD); /* before token_embed */
    rlx_flow_destroy(f);

    rlx_flow_create("t", &f);
    rlx_flow_input_tokens(f, "tokens", 1, 4);
    rlx_flow_token_embed(f, "e");
    cr_expect_eq(rlx_flow_gather_add(f, "segments", "s", 2), RLX_ERR_BUILD);
    cr_expect(strstr(rlx_last_error(), "no input named 'segments'"), "%s", rlx_last_error());
    rlx_flow_destroy(f);

    rlx_flow_create("t", &f);
    rlx_flow_input_tokens(f, "tokens", 1, 4);
    rlx_flow_token_embed(f, "e");
    cr_expect_eq(rlx_flow_layer_norm(f, "g", "b", 0.0), RLX_ERR_INVALID_ARGUMENT);
    rlx_flow_destroy(f);

    rlx_flow_create("t", &f);
    rlx_flow_input_tokens(f, "tokens", 1, 4);
    rlx_flow_token_embed(f, "e");
    rlx_nomic_layer_spec ns = {.heads = 2, .head_dim = 4, .eps = 1e-5};
    cr_expect_eq(rlx_flow_nomic_encoder_layer(f, 0, &ns), RLX_ERR_BUILD);
    cr_expect(strstr(rlx_last_error(), "needs rope_tables"), "%s", rlx_last_error());
    rlx_flow_destroy(f);

    rlx_flow_create("t", &f);
    rlx_flow_input_tokens(f, "tokens", 1, 4);
    rlx_flow_token_embed(f, "e");
    cr_expect_eq(rlx_flow_mean_pool(f), RLX_OK);
    cr_expect_eq(rlx_flow_cls_pool(f), RLX_ERR_BUILD); /* already one row per sequence */
    rlx_flow_destroy(f);

    rlx_flow_create("t", &f);
    rlx_flow_input_tokens(f, "tokens", 1, 4);
    rlx_flow_token_embed(f, "e");
    cr_expect_eq(rlx_flow_slice_cols(f, 0, 0), RLX_ERR_INVALID_ARGUMENT);
    rlx_flow_destroy(f);
}

Test(encoder_flow, bert_layer_is_primitive_stages) {
    rlx_flow *f;
    rlx_flow_create("t", &f);
    rlx_flow_input_tokens(f, "tokens", 1, 4);
    rlx_flow_token_embed(f, "e");
    rlx_bert_layer_spec sp = {.layers_prefix = "bert.encoder.layer", .heads = 2, .head_dim = 4, .eps = 1e-12};
    cr_assert_eq(rlx_flow_bert_encoder_layer(f, 3, &sp), RLX_OK, "%s", rlx_last_error());
    char *text;
    cr_assert_eq(rlx_flow_format(f, &text), RLX_OK);
    /* bias on the linears, GELU, residual add and LayerNorm as separate stages, non-causal */
    cr_expect(strstr(text, "bert.encoder.layer.3.attention.self.query.weight, bert.encoder.layer.3.attention.self.query.bias"), "%s", text);
    cr_expect(strstr(text, "gelu") && strstr(text, "layer_norm") && strstr(text, "add"), "%s", text);
    cr_expect(strstr(text, "heads=2 kv_heads=2 head_dim=4\n") != NULL, "attention should not be causal: %s", text);
    rlx_free(text);
    rlx_flow_destroy(f);
}

// ---- configs ------------------------------------------------------------------------------------------------

static rlx_status parse(const char *json, rlx_encoder_config *c) { return rlx_encoder_config_parse(json, "cfg.json", c); }

Test(encoder_config, bert_defaults_and_errors) {
    rlx_encoder_config c;
    cr_assert_eq(parse("{\"model_type\":\"bert\",\"vocab_size\":30522,\"hidden_size\":384,\"num_hidden_layers\":6,"
                       "\"num_attention_heads\":12,\"intermediate_size\":1536}",
                       &c),
                 RLX_OK, "%s", rlx_last_error());
    cr_expect_eq(c.arch, RLX_ENCODER_BERT);
    cr_expect_eq(c.type_vocab_size, 2);
    cr_expect_eq(c.max_position_embeddings, 512);
    cr_expect_eq(c.layer_norm_eps, 1e-12);
    cr_expect_str_eq(c.prefix, "");

    cr_expect_eq(parse("{\"model_type\":\"bert\",\"hidden_size\":8}", &c), RLX_ERR_CONFIG);
    cr_expect(strstr(rlx_last_error(), "cfg.json: key 'vocab_size' is missing"), "%s", rlx_last_error());
    cr_expect_eq(parse("{\"model_type\":\"bert\",\"vocab_size\":\"many\",\"hidden_size\":8}", &c), RLX_ERR_CONFIG);
    cr_expect(strstr(rlx_last_error(), "key 'vocab_size': expected an integer, found a string"), "%s", rlx_last_error());
    const char *base = "\"model_type\":\"bert\",\"vocab_size\":10,\"hidden_size\":8,\"num_hidden_layers\":1,"
                       "\"num_attention_heads\":3,\"intermediate_size\":16";
    char buf[512];
    snprintf(buf, sizeof buf, "{%s}", base);
    cr_expect_eq(parse(buf, &c), RLX_ERR_CONFIG); /* 3 heads do not divide 8 */
    cr_expect(strstr(rlx_last_error(), "key 'num_attention_heads'"), "%s", rlx_last_error());
    snprintf(buf, sizeof buf, "{%s, \"hidden_act\": \"gelu_new\"}", base);
    cr_expect_eq(parse(buf, &c), RLX_ERR_UNSUPPORTED);
    cr_expect(strstr(rlx_last_error(), "key 'hidden_act': 'gelu_new'"), "%s", rlx_last_error());
    snprintf(buf, sizeof buf, "{%s, \"position_embedding_type\": \"relative_key\"}", base);
    cr_expect_eq(parse(buf, &c), RLX_ERR_UNSUPPORTED);
    snprintf(buf, sizeof buf, "{%s, \"type_vocab_size\": -1}", base);
    cr_expect_eq(parse(buf, &c), RLX_ERR_CONFIG);
    cr_expect_eq(parse("{\"model_type\":\"llama\"}", &c), RLX_ERR_UNSUPPORTED);
    cr_expect(strstr(rlx_last_error(), "key 'model_type': 'llama' is not an encoder"), "%s", rlx_last_error());
    cr_expect_eq(parse("{\"vocab_size\": 3}", &c), RLX_ERR_CONFIG);
    cr_expect_eq(parse("{\"model_type\":", &c), RLX_ERR_FORMAT);
}

Test(encoder_config, nomic_keys_and_unsupported_features) {
    const char *base = "\"model_type\":\"nomic_bert\",\"vocab_size\":64,\"n_embd\":32,\"n_layer\":2,\"n_head\":4,"
                       "\"rotary_emb_fraction\":1.0,\"activation_function\":\"swiglu\"";
    char buf[512];
    rlx_encoder_config c;
    snprintf(buf, sizeof buf, "{%s}", base);
    cr_assert_eq(parse(buf, &c), RLX_OK, "%s", rlx_last_error());
    cr_expect_eq(c.arch, RLX_ENCODER_NOMIC_BERT);
    cr_expect_eq(c.intermediate_size, 128); /* n_inner absent: 4 · n_embd */
    cr_expect_eq(c.rope_theta, 1000.0);
    cr_expect(c.qkv_bias && c.mlp_fc1_bias && c.mlp_fc2_bias); /* nomic's class defaults */
    static const struct { const char *extra; const char *key; } bad[] = {
        {"\"rotary_emb_fraction\":0.5", "rotary_emb_fraction"}, {"\"rotary_emb_interleaved\":true", "rotary_emb_interleaved"},
        {"\"rotary_scaling_factor\":2.0", "rotary_scaling_factor"}, {"\"prenorm\":true", "prenorm"},
        {"\"causal\":true", "causal"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        /* the later duplicate would be refused, so replace rather than append */
        snprintf(buf, sizeof buf, "{\"model_type\":\"nomic_bert\",\"vocab_size\":64,\"n_embd\":32,\"n_layer\":2,\"n_head\":4,"
                                  "\"activation_function\":\"swiglu\",%s%s}",
                 bad[i].extra, strstr(bad[i].extra, "fraction") ? "" : ",\"rotary_emb_fraction\":1.0");
        cr_expect_eq(parse(buf, &c), RLX_ERR_UNSUPPORTED, "%s", bad[i].extra);
        cr_expect(strstr(rlx_last_error(), bad[i].key), "%s", rlx_last_error());
    }
    cr_expect_eq(parse("{\"model_type\":\"nomic_bert\",\"vocab_size\":64,\"hidden_size\":32}", &c), RLX_ERR_UNSUPPORTED);
    cr_expect(strstr(rlx_last_error(), "key 'n_embd' is missing"), "%s", rlx_last_error());
    snprintf(buf, sizeof buf, "{%s, \"n_head\": 10}", "\"model_type\":\"nomic_bert\",\"vocab_size\":64,\"n_embd\":30,\"n_layer\":2,"
                                                    "\"rotary_emb_fraction\":1.0,\"activation_function\":\"swiglu\"");
    cr_expect_eq(parse(buf, &c), RLX_ERR_CONFIG); /* head_dim 3: RoPE needs pairs */
    cr_expect(strstr(rlx_last_error(), "head_dim 3"), "%s", rlx_last_error());
}

Test(encoder_config, prefix_detection) {
    rlx_weights *w;
    rlx_weights_create(&w);
    float z[8] = {0};
    int64_t sh[2] = {1, 8};
    rlx_weights_add(w, "cls.predictions.bias", RLX_DTYPE_F32, 1, sh + 1, z);
    rlx_weights_set_config_json(w, tiny_bert_json);
    rlx_encoder_config c;
    cr_expect_eq(rlx_encoder_config_from_weights(w, "d/config.json", &c), RLX_ERR_MISSING_WEIGHT);
    cr_expect(strstr(rlx_last_error(), "no tensor 'embeddings.word_embeddings.weight'"), "%s", rlx_last_error());
    rlx_weights_add(w, "bert.embeddings.word_embeddings.weight", RLX_DTYPE_F32, 2, sh, z);
    cr_assert_eq(rlx_encoder_config_from_weights(w, "d/config.json", &c), RLX_OK, "%s", rlx_last_error());
    cr_expect_str_eq(c.prefix, "bert.");
    cr_expect_eq(c.vocab_size, 1); /* the table decides */
    rlx_weights_add(w, "bert.xembeddings.word_embeddings.weight", RLX_DTYPE_F32, 2, sh, z); /* not after a '.' */
    cr_expect_eq(rlx_encoder_config_from_weights(w, "d/config.json", &c), RLX_OK);
    rlx_weights_add(w, "embeddings.word_embeddings.weight", RLX_DTYPE_F32, 2, sh, z);
    cr_expect_eq(rlx_encoder_config_from_weights(w, "d/config.json", &c), RLX_ERR_CONFIG);
    cr_expect(strstr(rlx_last_error(), "two word-embedding tables"), "%s", rlx_last_error());
    rlx_weights_destroy(w);
    rlx_weights_create(&w);
    cr_expect_eq(rlx_encoder_config_from_weights(w, NULL, &c), RLX_ERR_CONFIG); /* no config.json */
    rlx_weights_destroy(w);
}

// ---- padded batches -------------------------------------------------------------------------------------------

Test(encoder, pack_padded) {
    const int32_t ids[8] = {5, 6, 7, 0, 8, 0, 0, 0}, mask[8] = {1, 1, 1, 0, 1, 0, 0, 0};
    int32_t packed[8];
    int64_t lens[2], n;
    cr_assert_eq(rlx_pack_padded(ids, mask, 2, 4, packed, lens, &n), RLX_OK, "%s", rlx_last_error());
    cr_expect(n == 4 && lens[0] == 3 && lens[1] == 1 && packed[0] == 5 && packed[2] == 7 && packed[3] == 8);
    const int32_t left[8] = {0, 1, 1, 1, 1, 1, 1, 1};
    cr_expect_eq(rlx_pack_padded(ids, left, 2, 4, packed, lens, &n), RLX_ERR_INVALID_ARGUMENT);
    cr_expect(strstr(rlx_last_error(), "mask row 0 has a 1 at position 1 after a 0 at 0"), "%s", rlx_last_error());
    const int32_t empty[8] = {1, 1, 1, 1, 0, 0, 0, 0};
    cr_expect_eq(rlx_pack_padded(ids, empty, 2, 4, packed, lens, &n), RLX_ERR_INVALID_ARGUMENT);
    cr_expect(strstr(rlx_last_error(), "mask row 1 keeps no token"), "%s", rlx_last_error());
    const int32_t two[8] = {1, 2, 0, 0, 1, 0, 0, 0};
    cr_expect_eq(rlx_pack_padded(ids, two, 2, 4, packed, lens, &n), RLX_ERR_INVALID_ARGUMENT);
    cr_expect(strstr(rlx_last_error(), "is 2, not 0 or 1"), "%s", rlx_last_error());
}

/* A size the parser derives before validating (NomicBERT's n_inner = 4 · n_embd when absent) is
 * computed with an overflow check: a huge n_embd is refused by name, never multiplied into
 * undefined behaviour. */
Test(encoder_config, derived_sizes_cannot_overflow) {
    static const char *const embd[] = {"4611686018427387904", "9223372036854775807", "-4611686018427387904", "2305843009213693952"};
    for (size_t i = 0; i < sizeof embd / sizeof embd[0]; i++) {
        char buf[512];
        snprintf(buf, sizeof buf,
                 "{\"model_type\":\"nomic_bert\",\"vocab_size\":64,\"n_embd\":%s,\"n_layer\":2,\"n_head\":4,"
                 "\"rotary_emb_fraction\":1.0,\"activation_function\":\"swiglu\"}",
                 embd[i]);
        rlx_encoder_config c;
        cr_expect_eq(parse(buf, &c), RLX_ERR_CONFIG, "n_embd %s", embd[i]);
        cr_expect(strstr(rlx_last_error(), "key 'n_embd'"), "%s", rlx_last_error());
    }
}

/* Integer keys: the encoder parsers and the LLaMA parser follow one rule (a JSON integer; 512.0
 * is refused as transformers would fail on it). */
Test(encoder_config, integer_keys_refuse_reals_like_llama) {
    rlx_encoder_config c;
    cr_expect_eq(parse("{\"model_type\":\"bert\",\"vocab_size\":30,\"hidden_size\":8,\"num_hidden_layers\":1,"
                       "\"num_attention_heads\":2,\"intermediate_size\":16,\"max_position_embeddings\":512.0}",
                       &c),
                 RLX_ERR_CONFIG);
    cr_expect(strstr(rlx_last_error(), "key 'max_position_embeddings': expected an integer, found a real number (512)"), "%s",
              rlx_last_error());
    cr_expect_eq(parse("{\"model_type\":\"nomic_bert\",\"vocab_size\":64,\"n_embd\":32.0,\"n_layer\":2,\"n_head\":4,"
                       "\"rotary_emb_fraction\":1.0,\"activation_function\":\"swiglu\"}",
                       &c),
                 RLX_ERR_CONFIG);
    cr_expect(strstr(rlx_last_error(), "key 'n_embd': expected an integer, found a real number (32)"), "%s", rlx_last_error());
    rlx_llama_config l;
    cr_expect_eq(rlx_llama_config_parse("{\"vocab_size\":64,\"hidden_size\":32.0,\"intermediate_size\":64,\"num_hidden_layers\":1,"
                                        "\"num_attention_heads\":4}",
                                        "cfg.json", &l),
                 RLX_ERR_CONFIG);
    cr_expect(strstr(rlx_last_error(), "key 'hidden_size': expected an integer, found a real number (32)"), "%s", rlx_last_error());
}
