/* API misuse of the KV-cache functions (rlx/kv.h): NULL for every pointer parameter, out-of-range
 * values, calls on models that cannot take a cache. Each must return a status with a message (or
 * the documented neutral value), never crash, write nothing through the other pointers. */
#include <criterion/criterion.h>
#include <string.h>

#include "rlx/generate.h"
#include "rlx/kv.h"
#include "testutil.h"

static rlx_model *tiny_model(rlxt_llama_fixture *f) {
    char err[1600];
    cr_assert_eq(rlxt_llama_fixture_load("gqa_tied_f32", f, err, sizeof err), 0, "%s", err);
    rlx_llama_recipe_params p = rlx_llama_recipe_default_params();
    p.batch = 2, p.seq = 8, p.max_context = 16;
    rlx_flow *fl;
    cr_assert_eq(rlx_llama_flow(&f->cfg, &p, &fl), RLX_OK);
    rlx_model *m;
    cr_assert_eq(rlx_model_build(fl, f->w, NULL, &m), RLX_OK, "%s", rlx_last_error());
    rlx_flow_destroy(fl);
    return m;
}

#define EXPECT_REFUSED(call, want)                                                                  \
    do {                                                                                            \
        rlx_clear_error();                                                                          \
        rlx_status st_ = (call);                                                                    \
        cr_expect_eq(st_, want, "%s: %s, expected %s", #call, rlx_status_name(st_), rlx_status_name(want)); \
        cr_expect(*rlx_last_error(), "%s: no message", #call);                                      \
    } while (0)

Test(misuse_kv, null_and_neutral_values) {
    cr_expect_eq(rlx_kv_page_elems(NULL), 0);
    cr_expect_eq(rlx_model_max_context(NULL), 0);
    rlx_kv_desc d = rlx_kv_default_desc();
    cr_expect(d.dtype == RLX_DTYPE_BF16 && d.page_size == 16 && d.layout == RLX_KV_LAYOUT_NHD && !d.k_base && !d.k_layers);
    d.page_size = -4;
    cr_expect_eq(rlx_kv_page_elems(&d), 0);
    EXPECT_REFUSED(rlx_kv_desc_from_model(NULL, &d), RLX_ERR_INVALID_ARGUMENT);
    EXPECT_REFUSED(rlx_kv_desc_validate(NULL, &d), RLX_ERR_INVALID_ARGUMENT);
    EXPECT_REFUSED(rlx_session_prefill_kv(NULL, NULL, NULL, NULL, NULL), RLX_ERR_INVALID_ARGUMENT);
}

Test(misuse_kv, block_table_converter_arguments) {
    int32_t bt[4] = {0, 1, 2, 3}, ptr[3], idx[4], last[2];
    int64_t lens[2] = {3, 5};
    EXPECT_REFUSED(rlx_kv_pages_from_block_table(NULL, 2, 2, lens, 4, ptr, idx, 4, last), RLX_ERR_INVALID_ARGUMENT);
    EXPECT_REFUSED(rlx_kv_pages_from_block_table(bt, 2, 2, NULL, 4, ptr, idx, 4, last), RLX_ERR_INVALID_ARGUMENT);
    EXPECT_REFUSED(rlx_kv_pages_from_block_table(bt, 2, 2, lens, 4, NULL, idx, 4, last), RLX_ERR_INVALID_ARGUMENT);
    EXPECT_REFUSED(rlx_kv_pages_from_block_table(bt, 2, 2, lens, 4, ptr, NULL, 4, last), RLX_ERR_INVALID_ARGUMENT);
    EXPECT_REFUSED(rlx_kv_pages_from_block_table(bt, 0, 2, lens, 4, ptr, idx, 4, last), RLX_ERR_INVALID_ARGUMENT);
    EXPECT_REFUSED(rlx_kv_pages_from_block_table(bt, 2, 0, lens, 4, ptr, idx, 4, last), RLX_ERR_INVALID_ARGUMENT);
    EXPECT_REFUSED(rlx_kv_pages_from_block_table(bt, 2, 2, lens, 0, ptr, idx, 4, last), RLX_ERR_INVALID_ARGUMENT);
    EXPECT_REFUSED(rlx_kv_pages_from_block_table(bt, 2, 2, lens, 512, ptr, idx, 4, last), RLX_ERR_INVALID_ARGUMENT);
    EXPECT_REFUSED(rlx_kv_pages_from_block_table(bt, 2, 2, lens, 4, ptr, idx, -1, last), RLX_ERR_INVALID_ARGUMENT);
    /* a refusal writes nothing */
    memset(ptr, 0x5a, sizeof ptr);
    EXPECT_REFUSED(rlx_kv_pages_from_block_table(bt, 2, 2, lens, 2, ptr, idx, 4, last), RLX_ERR_INVALID_ARGUMENT); /* 5 tokens need 3 blocks */
    for (int i = 0; i < 3; i++) cr_expect_eq(ptr[i], 0x5a5a5a5a);
    /* NULL last-page output is fine */
    cr_expect_eq(rlx_kv_pages_from_block_table(bt, 2, 2, lens, 4, ptr, idx, 4, NULL), RLX_OK, "%s", rlx_last_error());
}

Test(misuse_kv, session_call_arguments) {
    rlxt_llama_fixture f;
    rlx_model *m = tiny_model(&f);
    rlx_session *s;
    cr_assert_eq(rlx_session_create(m, &s), RLX_OK);
    rlx_kv_desc d = rlx_kv_default_desc();
    EXPECT_REFUSED(rlx_kv_desc_from_model(m, NULL), RLX_ERR_INVALID_ARGUMENT);
    cr_assert_eq(rlx_kv_desc_from_model(m, &d), RLX_OK);
    EXPECT_REFUSED(rlx_kv_desc_validate(m, NULL), RLX_ERR_INVALID_ARGUMENT);
    EXPECT_REFUSED(rlx_kv_desc_validate(m, &d), RLX_ERR_INVALID_ARGUMENT); /* no pointers yet */
    static float k[2 * 4 * 2 * 16 * 4], v[2 * 4 * 2 * 16 * 4];
    d.page_size = 4, d.num_pages = 4, d.k_base = k, d.v_base = v, d.layer_stride = 4 * 4 * 2 * 16;
    cr_expect_eq(rlx_kv_desc_validate(m, &d), RLX_OK, "%s", rlx_last_error());
    int32_t tok[3] = {1, 2, 3}, ptr[2] = {0, 1}, idx[1] = {2};
    int64_t n = 3;
    rlx_kv_pages pg = {.n_seqs = 1, .kv_indptr = ptr, .kv_indices = idx};
    rlx_prefill_batch pb = {.tokens = tok, .n_tokens = 3, .seq_lens = &n, .n_seqs = 1};
    EXPECT_REFUSED(rlx_session_prefill_kv(NULL, &pb, &d, &pg, NULL), RLX_ERR_INVALID_ARGUMENT);
    EXPECT_REFUSED(rlx_session_prefill_kv(s, NULL, &d, &pg, NULL), RLX_ERR_INVALID_ARGUMENT);
    EXPECT_REFUSED(rlx_session_prefill_kv(s, &pb, NULL, &pg, NULL), RLX_ERR_INVALID_ARGUMENT);
    EXPECT_REFUSED(rlx_session_prefill_kv(s, &pb, &d, NULL, NULL), RLX_ERR_INVALID_ARGUMENT);
    rlx_prefill_batch bad = pb;
    bad.tokens = NULL;
    EXPECT_REFUSED(rlx_session_prefill_kv(s, &bad, &d, &pg, NULL), RLX_ERR_INVALID_ARGUMENT);
    bad = pb, bad.n_tokens = 0;
    EXPECT_REFUSED(rlx_session_prefill_kv(s, &bad, &d, &pg, NULL), RLX_ERR_INVALID_ARGUMENT);
    bad = pb, bad.n_tokens = 17; /* beyond the capacity */
    EXPECT_REFUSED(rlx_session_prefill_kv(s, &bad, &d, &pg, NULL), RLX_ERR_INVALID_ARGUMENT);
    rlx_named_ids ids = {.name = "token_type_ids", .ids = tok};
    bad = pb, bad.inputs = &ids, bad.n_inputs = 1;
    EXPECT_REFUSED(rlx_session_prefill_kv(s, &bad, &d, &pg, NULL), RLX_ERR_UNSUPPORTED);
    rlx_kv_pages bp = pg;
    bp.kv_indptr = NULL;
    EXPECT_REFUSED(rlx_session_prefill_kv(s, &pb, &d, &bp, NULL), RLX_ERR_INVALID_ARGUMENT);
    /* the good call works, and the session still serves plain prefills */
    cr_expect_eq(rlx_session_prefill_kv(s, &pb, &d, &pg, NULL), RLX_OK, "%s", rlx_last_error());
    cr_expect_eq(rlx_session_prefill(s, tok, 3, NULL, 1, NULL), RLX_OK, "%s", rlx_last_error());
    rlx_session_destroy(s);
    rlx_model_destroy(m);
    rlxt_llama_fixture_free(&f);
}

Test(misuse_kv, generate_functions) {
    rlx_generate_params gp = rlx_generate_default_params();
    cr_expect(gp.max_new_tokens == 32 && gp.temperature == 0 && gp.top_k == 0 && gp.top_p == 1 && gp.page_size == 16 && !gp.stop_tokens);
    int64_t n = 7;
    cr_expect_eq(rlx_generation_tokens(NULL, 0, &n), NULL);
    cr_expect_eq(n, 0);
    cr_expect_eq(rlx_generation_tokens(NULL, 0, NULL), NULL);
    cr_expect_eq(rlx_generation_stopped(NULL, 0), -1);
    cr_expect_eq(rlx_generation_count(NULL), 0);
    rlx_generation_destroy(NULL);
    EXPECT_REFUSED(rlx_generation_get_stats(NULL, NULL), RLX_ERR_INVALID_ARGUMENT);
    rlxt_llama_fixture f;
    rlx_model *m = tiny_model(&f);
    int32_t ids[4], tok[2] = {1, 2};
    int64_t len = 2;
    EXPECT_REFUSED(rlx_eos_tokens(f.w, NULL, 4, &n), RLX_ERR_INVALID_ARGUMENT);
    EXPECT_REFUSED(rlx_eos_tokens(f.w, ids, 4, NULL), RLX_ERR_INVALID_ARGUMENT);
    EXPECT_REFUSED(rlx_eos_tokens(f.w, ids, 0, &n), RLX_ERR_INVALID_ARGUMENT); /* one id, no room */
    rlx_generation *g = NULL;
    EXPECT_REFUSED(rlx_generate(m, tok, NULL, 1, &gp, NULL, &g), RLX_ERR_INVALID_ARGUMENT);
    EXPECT_REFUSED(rlx_generate(m, tok, &len, 0, &gp, NULL, &g), RLX_ERR_INVALID_ARGUMENT);
    gp.max_new_tokens = 0;
    EXPECT_REFUSED(rlx_generate(m, tok, &len, 1, &gp, NULL, &g), RLX_ERR_INVALID_ARGUMENT);
    gp.max_new_tokens = 2, gp.top_k = -1;
    EXPECT_REFUSED(rlx_generate(m, tok, &len, 1, &gp, NULL, &g), RLX_ERR_INVALID_ARGUMENT);
    gp.top_k = 0, gp.n_stop_tokens = 2;
    EXPECT_REFUSED(rlx_generate(m, tok, &len, 1, &gp, NULL, &g), RLX_ERR_INVALID_ARGUMENT); /* stop count without a list */
    gp.n_stop_tokens = 0;
    int64_t zero = 0;
    EXPECT_REFUSED(rlx_generate(m, tok, &zero, 1, &gp, NULL, &g), RLX_ERR_INVALID_ARGUMENT);
    cr_expect_eq(g, NULL);
    /* NULL params: the defaults (32 new tokens do not fit the model's 16 positions) */
    EXPECT_REFUSED(rlx_generate(m, tok, &len, 1, NULL, NULL, &g), RLX_ERR_INVALID_ARGUMENT);
    cr_expect_eq(rlx_generate(m, tok, &len, 1, &gp, NULL, &g), RLX_OK, "%s", rlx_last_error());
    rlx_generation_destroy(g);
    rlx_model_destroy(m);
    rlxt_llama_fixture_free(&f);
}
