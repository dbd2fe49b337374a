/* Encoder blocks (BERT, NomicBERT), the encoder recipe, and the prefill-time checks of named
 * inputs. Blocks follow flow.c's contract: they append primitive stages, move the cursor, and
 * record the first error in the flow (sticky). Semantics: SEED-NOTES.md, encoder rows. */
#include "rlx/encoder.h"
#include "model/stages.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


/* "<prefix>.<index>.<suffix>" (index < 0: "<prefix>.<suffix>"). A truncated key is reported
 * missing at build, by key. */
static char *layer_key(char *buf, size_t n, const char *prefix, int64_t index, const char *suffix) {
    int len = index < 0 ? snprintf(buf, n, "%s.%s", prefix, suffix)
                        : snprintf(buf, n, "%s.%lld.%s", prefix, (long long)index, suffix);
    if (len < 0 || (size_t)len >= n) buf[n - 1] = '\0';
    return buf;
}

static rlx_status need_tokens_activation(rlx_flow *f, const char *block, int per_token) {
    if (f->cursor < 0) return rlx__flow_fail(f, RLX_ERR_BUILD, "%s needs an input first (rlx_flow_input_tokens)", block);
    const rlx__value *v = &f->list.values[f->cursor];
    if (v->dtype != RLX_DTYPE_F32)
        return rlx__flow_fail(f, RLX_ERR_BUILD, "%s needs activations, but the current value is token ids (add token_embed first)", block);
    if (per_token && v->rows != RLX__ROWS_TOKENS)
        return rlx__flow_fail(f, RLX_ERR_BUILD, "%s needs one row per token, but the current value has one per sequence (it comes before pooling)", block);
    return RLX_OK;
}

/* Appends st with inputs already set (or the cursor as its only input), producing one new
 * value of `rows` rows; the new value becomes the cursor when move is set. Returns its id via
 * *out_id when non-NULL. */
static rlx_status emit(rlx_flow *f, rlx__stage *st, const char *local, rlx_dtype dtype, rlx__rows rows, int64_t cols,
                       int move, int *out_id) {
    char name[320];
    rlx__flow_scoped(f, local, name, sizeof name);
    int out = rlx__slist_add_value(&f->list, name, dtype, rows, 0, cols);
    if (out < 0) return rlx__flow_remember(f, RLX_ERR_OUT_OF_MEMORY);
    st->n_out = 1;
    st->out[0] = out;
    if (st->n_in == 0) {
        st->n_in = 1;
        st->in[0] = f->cursor;
    }
    st->name = name;
    if (rlx__slist_add_stage(&f->list, st) < 0) return rlx__flow_remember(f, RLX_ERR_OUT_OF_MEMORY);
    if (move) f->cursor = out;
    if (out_id) *out_id = out;
    return RLX_OK;
}

static rlx_status unary(rlx_flow *f, rlx__stage *st, const char *local, rlx__rows rows) {
    return emit(f, st, local, RLX_DTYPE_F32, rows, 0, 1, NULL);
}

/* LINEAR on the cursor: key [expect_rows, *] (0 = any), optional bias. */
static rlx_status linear(rlx_flow *f, const char *key, const char *bias, const char *local, int64_t expect_rows) {
    rlx__stage st = {.op = RLX__OP_LINEAR, .n_w = 2, .expect_rows = expect_rows};
    st.wkey[0] = (char *)key;
    st.wkey[1] = (char *)bias;
    return unary(f, &st, local, f->list.values[f->cursor].rows);
}

static rlx_status add_values(rlx_flow *f, int a, int b, const char *local) {
    rlx__stage st = {.op = RLX__OP_ADD, .n_in = 2, .in = {a, b}};
    return unary(f, &st, local, f->list.values[a].rows);
}

static rlx_status check_eps(rlx_flow *f, const char *what, double eps) {
    if (!(eps > 0 && eps < 1)) return rlx__flow_fail(f, RLX_ERR_INVALID_ARGUMENT, "%s: eps %g must be in (0, 1)", what, eps);
    return RLX_OK;
}

static rlx_status check_heads(rlx_flow *f, const char *what, int64_t heads, int64_t head_dim) {
    if (heads < 1 || head_dim < 1 || heads > 4096 || head_dim > 4096)
        return rlx__flow_fail(f, RLX_ERR_INVALID_ARGUMENT, "%s: heads %lld and head_dim %lld must be in [1, 4096]", what,
                        (long long)heads, (long long)head_dim);
    return RLX_OK;
}

// ---- blocks -------------------------------------------------------------------------------------

static int find_input_value(const rlx_flow *f, const char *name) {
    for (int i = 0; i < f->list.n_stages; i++) {
        const rlx__stage *st = &f->list.stages[i];
        if (st->op == RLX__OP_INPUT_IDS && !strcmp(f->list.values[st->out[0]].name, name)) return st->out[0];
    }
    return -1;
}

rlx_status rlx_flow_input_ids(rlx_flow *f, const char *name, int required) {
    RLX__FLOW_ENTER(f);
    if (!name || !*name) return rlx__flow_fail(f, RLX_ERR_INVALID_ARGUMENT, "input_ids: the name is empty");
    if (name[0] == '@') return rlx__flow_fail(f, RLX_ERR_INVALID_ARGUMENT, "input_ids '%s': names starting with '@' are reserved", name);
    if (required != 0 && required != 1)
        return rlx__flow_fail(f, RLX_ERR_INVALID_ARGUMENT, "input_ids '%s': required is %d, not 0 or 1", name, required);
    if (find_input_value(f, name) >= 0 || (f->tokens >= 0 && !strcmp(f->list.values[f->tokens].name, name)))
        return rlx__flow_fail(f, RLX_ERR_BUILD, "input_ids: the flow already has an input named '%s'", name);
    int id = rlx__slist_add_value(&f->list, name, RLX_DTYPE_I32, RLX__ROWS_TOKENS, 0, 1);
    if (id < 0) return rlx__flow_remember(f, RLX_ERR_OUT_OF_MEMORY);
    /* Inputs are flow-wide: neither the value nor the stage takes the current scope. */
    rlx__stage st = {.op = RLX__OP_INPUT_IDS, .n_out = 1, .out = {id}, .required = required};
    st.name = (char *)name;
    if (rlx__slist_add_stage(&f->list, &st) < 0) return rlx__flow_remember(f, RLX_ERR_OUT_OF_MEMORY);
    return RLX_OK;
}

/* The flow's position-id value, made on first use. */
static int positions_value(rlx_flow *f) {
    for (int i = 0; i < f->list.n_stages; i++)
        if (f->list.stages[i].op == RLX__OP_POSITIONS) return f->list.stages[i].out[0];
    int id = rlx__slist_add_value(&f->list, RLX_INPUT_POSITIONS, RLX_DTYPE_I32, RLX__ROWS_TOKENS, 0, 1);
    if (id < 0) return -1;
    rlx__stage st = {.op = RLX__OP_POSITIONS, .n_out = 1, .out = {id}};
    st.name = "positions";
    if (rlx__slist_add_stage(&f->list, &st) < 0) return -1;
    return id;
}

rlx_status rlx_flow_gather_add(rlx_flow *f, const char *ids, const char *key, int64_t table_rows) {
    RLX__FLOW_ENTER(f);
    rlx_status s = need_tokens_activation(f, "gather_add", 1);
    if (s) return s;
    if (!ids || !*ids || !key || !*key) return rlx__flow_fail(f, RLX_ERR_INVALID_ARGUMENT, "gather_add: ids name and table key are required");
    if (table_rows < 0) return rlx__flow_fail(f, RLX_ERR_INVALID_ARGUMENT, "gather_add '%s': table_rows %lld is negative", key, (long long)table_rows);
    int idv;
    if (!strcmp(ids, RLX_INPUT_POSITIONS)) {
        if ((idv = positions_value(f)) < 0) return rlx__flow_remember(f, RLX_ERR_OUT_OF_MEMORY);
    } else if ((idv = find_input_value(f, ids)) < 0) {
        return rlx__flow_fail(f, RLX_ERR_BUILD, "gather_add '%s': no input named '%s' (declare it with rlx_flow_input_ids)", key, ids);
    }
    rlx__stage st = {.op = RLX__OP_GATHER_ADD, .n_in = 2, .in = {f->cursor, idv}, .n_w = 1, .expect_rows = table_rows};
    st.wkey[0] = (char *)key;
    char local[96];
    snprintf(local, sizeof local, "gather_add.%s", ids[0] == '@' ? ids + 1 : ids);
    return unary(f, &st, local, RLX__ROWS_TOKENS);
}

rlx_status rlx_flow_layer_norm(rlx_flow *f, const char *weight_key, const char *bias_key, double eps) {
    RLX__FLOW_ENTER(f);
    rlx_status s = need_tokens_activation(f, "layer_norm", 0);
    if (s) return s;
    if (!weight_key || !*weight_key) return rlx__flow_fail(f, RLX_ERR_INVALID_ARGUMENT, "layer_norm: weight key is empty");
    if ((s = check_eps(f, "layer_norm", eps))) return s;
    rlx__stage st = {.op = RLX__OP_LAYER_NORM, .n_w = 2, .eps = eps};
    st.wkey[0] = (char *)weight_key;
    st.wkey[1] = (char *)(bias_key && *bias_key ? bias_key : NULL);
    return unary(f, &st, "layer_norm", f->list.values[f->cursor].rows);
}

rlx_status rlx_flow_gelu(rlx_flow *f) {
    RLX__FLOW_ENTER(f);
    rlx_status s = need_tokens_activation(f, "gelu", 0);
    if (s) return s;
    rlx__stage st = {.op = RLX__OP_GELU};
    return unary(f, &st, "gelu", f->list.values[f->cursor].rows);
}

rlx_status rlx_flow_gelu_ffn(rlx_flow *f, const char *prefix) {
    RLX__FLOW_ENTER(f);
    if (!prefix || !*prefix) return rlx__flow_fail(f, RLX_ERR_INVALID_ARGUMENT, "gelu_ffn: prefix is empty");
    rlx_status s = need_tokens_activation(f, "gelu_ffn", 0);
    if (s) return s;
    char w[512], b[512];
    if ((s = linear(f, layer_key(w, sizeof w, prefix, -1, "intermediate.dense.weight"),
                    layer_key(b, sizeof b, prefix, -1, "intermediate.dense.bias"), "ffn.intermediate", 0)))
        return s;
    if ((s = rlx_flow_gelu(f))) return s;
    return linear(f, layer_key(w, sizeof w, prefix, -1, "output.dense.weight"), layer_key(b, sizeof b, prefix, -1, "output.dense.bias"),
                  "ffn.output", 0);
}

rlx_status rlx_flow_slice_cols(rlx_flow *f, int64_t begin, int64_t width) {
    RLX__FLOW_ENTER(f);
    rlx_status s = need_tokens_activation(f, "slice_cols", 0);
    if (s) return s;
    if (begin < 0 || width < 1 || begin > INT64_MAX - width)
        return rlx__flow_fail(f, RLX_ERR_INVALID_ARGUMENT, "slice_cols: begin %lld and width %lld must be >= 0 and >= 1", (long long)begin,
                        (long long)width);
    rlx__stage st = {.op = RLX__OP_SLICE_COLS, .slice_begin = begin, .slice_width = width};
    return unary(f, &st, "slice_cols", f->list.values[f->cursor].rows);
}

static rlx_status pool(rlx_flow *f, rlx__op op, const char *name) {
    rlx_status s = need_tokens_activation(f, name, 1);
    if (s) return s;
    rlx__stage st = {.op = op};
    return unary(f, &st, name, RLX__ROWS_SEQUENCES);
}

rlx_status rlx_flow_cls_pool(rlx_flow *f) {
    RLX__FLOW_ENTER(f);
    return pool(f, RLX__OP_CLS_POOL, "cls_pool");
}

rlx_status rlx_flow_mean_pool(rlx_flow *f) {
    RLX__FLOW_ENTER(f);
    return pool(f, RLX__OP_MEAN_POOL, "mean_pool");
}

rlx_status rlx_flow_l2_normalize(rlx_flow *f) {
    RLX__FLOW_ENTER(f);
    rlx_status s = need_tokens_activation(f, "l2_normalize", 0);
    if (s) return s;
    rlx__stage st = {.op = RLX__OP_L2_NORMALIZE};
    return unary(f, &st, "l2_normalize", f->list.values[f->cursor].rows);
}

/* Attention within each sequence over q, k, v values (no RoPE here), not causal. */
static rlx_status encoder_attention(rlx_flow *f, int q, int k, int v, int64_t heads, int64_t head_dim) {
    rlx__stage st = {.op = RLX__OP_ATTENTION, .n_in = 3, .in = {q, k, v}, .heads = heads, .kv_heads = heads,
                     .head_dim = head_dim, .causal = 0};
    return unary(f, &st, "attn.sdpa", RLX__ROWS_TOKENS);
}

// ---- BERT layer -----------------------------------------------------------------------------------

static rlx_status check_bert_spec(rlx_flow *f, const rlx_bert_layer_spec *sp) {
    if (!sp) return rlx__flow_fail(f, RLX_ERR_INVALID_ARGUMENT, "bert_encoder_layer: spec is NULL");
    rlx_status s = check_heads(f, "bert_encoder_layer", sp->heads, sp->head_dim);
    if (!s) s = check_eps(f, "bert_encoder_layer", sp->eps);
    if (!s) s = need_tokens_activation(f, "bert_encoder_layer", 1);
    return s;
}

static rlx_status emit_bert_layer(rlx_flow *f, int64_t index, const rlx_bert_layer_spec *sp) {
    const char *lp = sp->layers_prefix ? sp->layers_prefix : "encoder.layer";
    char prefix[400], w[512], b[512];
    snprintf(prefix, sizeof prefix, "%s.%lld", lp, (long long)index);
    const int64_t width = sp->heads * sp->head_dim;
    const int x = f->cursor;
    static const char *proj[3] = {"query", "key", "value"};
    int qkv[3];
    rlx_status s;
    for (int i = 0; i < 3; i++) {
        char wk[64], bk[64], local[32];
        snprintf(wk, sizeof wk, "attention.self.%s.weight", proj[i]);
        snprintf(bk, sizeof bk, "attention.self.%s.bias", proj[i]);
        snprintf(local, sizeof local, "attn.%s", proj[i]);
        f->cursor = x;
        if ((s = linear(f, layer_key(w, sizeof w, prefix, -1, wk), layer_key(b, sizeof b, prefix, -1, bk), local, width))) return s;
        qkv[i] = f->cursor;
    }
    if ((s = encoder_attention(f, qkv[0], qkv[1], qkv[2], sp->heads, sp->head_dim))) return s;
    if ((s = linear(f, layer_key(w, sizeof w, prefix, -1, "attention.output.dense.weight"),
                    layer_key(b, sizeof b, prefix, -1, "attention.output.dense.bias"), "attn.output", 0)))
        return s;
    if ((s = add_values(f, f->cursor, x, "attn.residual_add"))) return s;
    if ((s = rlx_flow_layer_norm(f, layer_key(w, sizeof w, prefix, -1, "attention.output.LayerNorm.weight"),
                                 layer_key(b, sizeof b, prefix, -1, "attention.output.LayerNorm.bias"), sp->eps)))
        return s;
    const int h1 = f->cursor;
    if ((s = rlx_flow_gelu_ffn(f, prefix))) return s;
    if ((s = add_values(f, f->cursor, h1, "ffn.residual_add"))) return s;
    return rlx_flow_layer_norm(f, layer_key(w, sizeof w, prefix, -1, "output.LayerNorm.weight"),
                               layer_key(b, sizeof b, prefix, -1, "output.LayerNorm.bias"), sp->eps);
}

rlx_status rlx_flow_bert_encoder_layer(rlx_flow *f, int64_t index, const rlx_bert_layer_spec *sp) {
    RLX__FLOW_ENTER(f);
    rlx_status s = check_bert_spec(f, sp);
    if (s) return s;
    if (index < 0) return rlx__flow_fail(f, RLX_ERR_INVALID_ARGUMENT, "bert_encoder_layer: index %lld is negative", (long long)index);
    return emit_bert_layer(f, index, sp);
}

static rlx_status bert_one(rlx_flow *f, int64_t i, void *user) { return rlx_flow_bert_encoder_layer(f, i, user); }

rlx_status rlx_flow_repeat_bert_layers(rlx_flow *f, int64_t n, const rlx_bert_layer_spec *sp) {
    RLX__FLOW_ENTER(f);
    rlx_status s = check_bert_spec(f, sp);
    if (s) return s;
    return rlx_flow_repeat_layers(f, n, bert_one, (void *)sp);
}

// ---- NomicBERT layer ------------------------------------------------------------------------------

static rlx_status check_nomic_spec(rlx_flow *f, const rlx_nomic_layer_spec *sp) {
    if (!sp) return rlx__flow_fail(f, RLX_ERR_INVALID_ARGUMENT, "nomic_encoder_layer: spec is NULL");
    rlx_status s = check_heads(f, "nomic_encoder_layer", sp->heads, sp->head_dim);
    if (!s) s = check_eps(f, "nomic_encoder_layer", sp->eps);
    if (!s) s = need_tokens_activation(f, "nomic_encoder_layer", 1);
    if (s) return s;
    if (f->cos < 0) return rlx__flow_fail(f, RLX_ERR_BUILD, "nomic_encoder_layer needs rope_tables first");
    if (f->list.values[f->cos].cols * 2 != sp->head_dim)
        return rlx__flow_fail(f, RLX_ERR_BUILD, "nomic_encoder_layer: head_dim %lld but the rope tables are for head_dim %lld",
                        (long long)sp->head_dim, (long long)f->list.values[f->cos].cols * 2);
    return RLX_OK;
}

static rlx_status emit_nomic_layer(rlx_flow *f, int64_t index, const rlx_nomic_layer_spec *sp) {
    const char *lp = sp->layers_prefix ? sp->layers_prefix : "encoder.layers";
    char prefix[400], w[512], b[512];
    snprintf(prefix, sizeof prefix, "%s.%lld", lp, (long long)index);
    const int64_t width = sp->heads * sp->head_dim;
    const int x = f->cursor;
    rlx_status s;
    /* One [3·width, H] GEMM, then q | k | v as column slices (a planner may read them in place). */
    if ((s = linear(f, layer_key(w, sizeof w, prefix, -1, "attn.Wqkv.weight"),
                    sp->qkv_bias ? layer_key(b, sizeof b, prefix, -1, "attn.Wqkv.bias") : NULL, "attn.Wqkv", 3 * width)))
        return s;
    const int qkv = f->cursor;
    static const char *part[3] = {"attn.q", "attn.k", "attn.v"};
    int out[3];
    for (int i = 0; i < 3; i++) {
        rlx__stage st = {.op = RLX__OP_SLICE_COLS, .n_in = 1, .in = {qkv}, .slice_begin = i * width, .slice_width = width};
        if ((s = unary(f, &st, part[i], RLX__ROWS_TOKENS))) return s;
        if (i < 2) {
            rlx__stage r = {.op = RLX__OP_ROPE, .n_in = 3, .in = {f->cursor, f->cos, f->sin}, .heads = sp->heads,
                            .head_dim = sp->head_dim};
            if ((s = unary(f, &r, i == 0 ? "attn.rope_q" : "attn.rope_k", RLX__ROWS_TOKENS))) return s;
        }
        out[i] = f->cursor;
    }
    if ((s = encoder_attention(f, out[0], out[1], out[2], sp->heads, sp->head_dim))) return s;
    if ((s = linear(f, layer_key(w, sizeof w, prefix, -1, "attn.out_proj.weight"),
                    sp->qkv_bias ? layer_key(b, sizeof b, prefix, -1, "attn.out_proj.bias") : NULL, "attn.out_proj", 0)))
        return s;
    if ((s = add_values(f, f->cursor, x, "attn.residual_add"))) return s;
    if ((s = rlx_flow_layer_norm(f, layer_key(w, sizeof w, prefix, -1, "norm1.weight"), layer_key(b, sizeof b, prefix, -1, "norm1.bias"),
                                 sp->eps)))
        return s;
    const int h1 = f->cursor;
    if ((s = linear(f, layer_key(w, sizeof w, prefix, -1, "mlp.fc12.weight"),
                    sp->fc1_bias ? layer_key(b, sizeof b, prefix, -1, "mlp.fc12.bias") : NULL, "mlp.fc12_gate", 0)))
        return s;
    const int gate = f->cursor;
    f->cursor = h1;
    if ((s = linear(f, layer_key(w, sizeof w, prefix, -1, "mlp.fc11.weight"),
                    sp->fc1_bias ? layer_key(b, sizeof b, prefix, -1, "mlp.fc11.bias") : NULL, "mlp.fc11_up", 0)))
        return s;
    rlx__stage sm = {.op = RLX__OP_SILU_MUL, .n_in = 2, .in = {gate, f->cursor}};
    if ((s = unary(f, &sm, "mlp.silu_mul", RLX__ROWS_TOKENS))) return s;
    if ((s = linear(f, layer_key(w, sizeof w, prefix, -1, "mlp.fc2.weight"),
                    sp->fc2_bias ? layer_key(b, sizeof b, prefix, -1, "mlp.fc2.bias") : NULL, "mlp.fc2", 0)))
        return s;
    if ((s = add_values(f, f->cursor, h1, "mlp.residual_add"))) return s;
    return rlx_flow_layer_norm(f, layer_key(w, sizeof w, prefix, -1, "norm2.weight"), layer_key(b, sizeof b, prefix, -1, "norm2.bias"),
                               sp->eps);
}

rlx_status rlx_flow_nomic_encoder_layer(rlx_flow *f, int64_t index, const rlx_nomic_layer_spec *sp) {
    RLX__FLOW_ENTER(f);
    rlx_status s = check_nomic_spec(f, sp);
    if (s) return s;
    if (index < 0) return rlx__flow_fail(f, RLX_ERR_INVALID_ARGUMENT, "nomic_encoder_layer: index %lld is negative", (long long)index);
    return emit_nomic_layer(f, index, sp);
}

static rlx_status nomic_one(rlx_flow *f, int64_t i, void *user) { return rlx_flow_nomic_encoder_layer(f, i, user); }

rlx_status rlx_flow_repeat_nomic_layers(rlx_flow *f, int64_t n, const rlx_nomic_layer_spec *sp) {
    RLX__FLOW_ENTER(f);
    rlx_status s = check_nomic_spec(f, sp);
    if (s) return s;
    return rlx_flow_repeat_layers(f, n, nomic_one, (void *)sp);
}

// ---- recipe -------------------------------------------------------------------------------------------

const char *rlx_pool_name(rlx_pool p) {
    switch (p) {
    case RLX_POOL_NONE: return "none";
    case RLX_POOL_CLS: return "cls";
    case RLX_POOL_MEAN: return "mean";
    }
    return "?";
}

rlx_encoder_recipe_params rlx_encoder_recipe_default_params(void) {
    rlx_encoder_recipe_params p = {.batch = 1, .seq = 128, .pool = RLX_POOL_MEAN, .normalize = 0};
    return p;
}

rlx_status rlx_encoder_flow(const rlx_encoder_config *cfg, const rlx_encoder_recipe_params *params, rlx_flow **out) {
    if (!out) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_encoder_flow: out is NULL");
    *out = NULL;
    if (!cfg) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_encoder_flow: config is NULL");
    rlx_status s = rlx_encoder_config_validate(cfg, "config");
    if (s) return s;
    rlx_encoder_recipe_params p = params ? *params : rlx_encoder_recipe_default_params();
    if (p.pool != RLX_POOL_NONE && p.pool != RLX_POOL_CLS && p.pool != RLX_POOL_MEAN)
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "encoder recipe: pool %d is not none, cls or mean", (int)p.pool);
    if (p.normalize != 0 && p.normalize != 1)
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "encoder recipe: normalize %d is not 0 or 1", p.normalize);
    if (p.seq > cfg->max_position_embeddings)
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "encoder recipe: seq %lld exceeds max_position_embeddings %lld", (long long)p.seq,
                         (long long)cfg->max_position_embeddings);
    const int nomic = cfg->arch == RLX_ENCODER_NOMIC_BERT;
    const char *P = cfg->prefix;
    const int64_t head_dim = cfg->hidden_size / cfg->num_attention_heads;
    char k1[512], k2[512], layers[512];
    rlx_flow *f;
    if ((s = rlx_flow_create(nomic ? "nomic_bert" : "bert", &f))) return s;
    rlx_flow_input_tokens(f, "tokens", p.batch, p.seq);
    if (cfg->type_vocab_size > 0) rlx_flow_input_ids(f, RLX_TOKEN_TYPE_IDS, 0);
    if (nomic) {
        /* Tables only as long as a sequence can be: the capacity bounds every position. */
        rlx_rope_params rope = {.head_dim = head_dim, .max_positions = p.seq, .theta = cfg->rope_theta};
        rlx_flow_rope_tables(f, &rope);
    }
    snprintf(k1, sizeof k1, "%sembeddings.word_embeddings.weight", P);
    rlx_flow_token_embed(f, k1);
    rlx__flow_expect_embedding(f, cfg->vocab_size, cfg->hidden_size);
    /* HF BertEmbeddings order: word + token type, then + position. */
    if (cfg->type_vocab_size > 0) {
        snprintf(k1, sizeof k1, "%sembeddings.token_type_embeddings.weight", P);
        rlx_flow_gather_add(f, RLX_TOKEN_TYPE_IDS, k1, cfg->type_vocab_size);
    }
    if (!nomic) {
        snprintf(k1, sizeof k1, "%sembeddings.position_embeddings.weight", P);
        rlx_flow_gather_add(f, RLX_INPUT_POSITIONS, k1, cfg->max_position_embeddings);
    }
    snprintf(k1, sizeof k1, nomic ? "%semb_ln.weight" : "%sembeddings.LayerNorm.weight", P);
    snprintf(k2, sizeof k2, nomic ? "%semb_ln.bias" : "%sembeddings.LayerNorm.bias", P);
    rlx_flow_layer_norm(f, k1, k2, cfg->layer_norm_eps);
    if (nomic) {
        snprintf(layers, sizeof layers, "%sencoder.layers", P);
        rlx_nomic_layer_spec sp = {.layers_prefix = layers, .heads = cfg->num_attention_heads, .head_dim = head_dim,
                                   .eps = cfg->layer_norm_eps, .qkv_bias = cfg->qkv_bias, .fc1_bias = cfg->mlp_fc1_bias,
                                   .fc2_bias = cfg->mlp_fc2_bias};
        rlx_flow_repeat_nomic_layers(f, cfg->num_hidden_layers, &sp);
    } else {
        snprintf(layers, sizeof layers, "%sencoder.layer", P);
        rlx_bert_layer_spec sp = {.layers_prefix = layers, .heads = cfg->num_attention_heads, .head_dim = head_dim,
                                  .eps = cfg->layer_norm_eps};
        rlx_flow_repeat_bert_layers(f, cfg->num_hidden_layers, &sp);
    }
    if (p.pool == RLX_POOL_CLS) rlx_flow_cls_pool(f);
    if (p.pool == RLX_POOL_MEAN) rlx_flow_mean_pool(f);
    if (p.normalize) rlx_flow_l2_normalize(f);
    if ((s = rlx_flow_status(f))) {
        rlx_flow_destroy(f);
        return s;
    }
    *out = f;
    return RLX_OK;
}

// ---- prefill checks -----------------------------------------------------------------------------------

static int64_t gather_table_rows(const rlx_model *m, int stage, const char **key) {
    const int idx = m->stage_w[(size_t)stage * RLX__STAGE_MAX_W];
    const int64_t cols = m->list.values[m->list.stages[stage].out[0]].cols;
    if (idx < 0 || cols < 1) return 0;
    *key = m->weights[idx].key;
    return (int64_t)(m->weights[idx].numel / (size_t)cols);
}

static int64_t seq_of(const rlx__batch *b, int64_t t) {
    int64_t lo = 0, hi = b->n_seqs - 1;
    while (lo < hi) {
        int64_t mid = (lo + hi + 1) / 2;
        if (b->seq_start[mid] <= t) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

rlx_status rlx__check_batch_inputs(const rlx_model *m, const rlx__batch *b) {
    const rlx__slist *l = &m->list;
    if (b->n_inputs < 0 || (b->n_inputs > 0 && !b->inputs))
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "prefill: %lld named inputs but no array", (long long)b->n_inputs);
    /* Every given input: named, declared by the model, one id per token, given once. */
    for (int64_t j = 0; j < b->n_inputs; j++) {
        const rlx_named_ids *in = &b->inputs[j];
        if (!in->name || !*in->name) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "prefill: named input %lld has no name", (long long)j);
        int declared = 0;
        char names[256] = "";
        size_t len = 0;
        for (int i = 0; i < l->n_stages; i++) {
            if (l->stages[i].op != RLX__OP_INPUT_IDS) continue;
            const char *vn = l->values[l->stages[i].out[0]].name;
            if (!strcmp(vn, in->name)) declared = 1;
            if (len < sizeof names) len += (size_t)snprintf(names + len, sizeof names - len, "%s'%s'", len ? ", " : "", vn);
        }
        if (!declared)
            return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "prefill: the model has no input '%s' (%s%s)", in->name,
                             names[0] ? "its inputs: " : "it takes no named inputs", names);
        for (int64_t k = 0; k < j; k++)
            if (b->inputs[k].name && !strcmp(b->inputs[k].name, in->name))
                return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "prefill: input '%s' is given twice", in->name);
        if (!in->ids) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "prefill: input '%s' has no ids", in->name);
        if (in->n != b->n_tokens)
            return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "prefill: input '%s' has %lld ids but the batch has %lld tokens (one id per token)",
                             in->name, (long long)in->n, (long long)b->n_tokens);
    }
    for (int i = 0; i < l->n_stages; i++) {
        const rlx__stage *st = &l->stages[i];
        if (st->op == RLX__OP_INPUT_IDS && st->required) {
            const char *vn = l->values[st->out[0]].name;
            int given = 0;
            for (int64_t j = 0; j < b->n_inputs; j++) given |= !strcmp(b->inputs[j].name, vn);
            if (!given) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "prefill: the model needs input '%s' (one id per token)", vn);
        }
        if (st->op != RLX__OP_GATHER_ADD) continue;
        const char *key = "?";
        const int64_t rows = gather_table_rows(m, i, &key);
        const int producer = l->values[st->in[1]].producer;
        if (producer >= 0 && l->stages[producer].op == RLX__OP_POSITIONS) {
            for (int64_t q = 0; q < b->n_seqs; q++) {
                int64_t len = b->seq_start[q + 1] - b->seq_start[q];
                if (len > rows)
                    return rlx__fail(RLX_ERR_INVALID_ARGUMENT,
                                     "prefill: sequence %lld has %lld tokens, beyond the %lld positions of '%s' (max_position_embeddings)",
                                     (long long)q, (long long)len, (long long)rows, key);
            }
            continue;
        }
        const char *vn = l->values[st->in[1]].name;
        const rlx_named_ids *in = NULL;
        for (int64_t j = 0; j < b->n_inputs && !in; j++)
            if (!strcmp(b->inputs[j].name, vn)) in = &b->inputs[j];
        if (!in) {
            if (rows < 1) return rlx__fail(RLX_ERR_TOKEN_RANGE, "prefill: input '%s' is absent (zeros) but '%s' has no rows", vn, key);
            continue;
        }
        for (int64_t t = 0; t < b->n_tokens; t++)
            if (in->ids[t] < 0 || in->ids[t] >= rows) {
                int64_t q = seq_of(b, t);
                return rlx__fail(RLX_ERR_TOKEN_RANGE,
                                 "prefill: %s[%lld] = %ld (sequence %lld, position %lld) is outside [0, %lld), the rows of '%s'", vn,
                                 (long long)t, (long)in->ids[t], (long long)q, (long long)(t - b->seq_start[q]), (long long)rows, key);
            }
    }
    return RLX_OK;
}

// ---- padded batches -------------------------------------------------------------------------------------

rlx_status rlx_pack_padded(const int32_t *padded, const int32_t *mask, int64_t batch, int64_t seq, int32_t *packed,
                           int64_t *seq_lens, int64_t *n_tokens) {
    if (!padded || !mask || !packed || !seq_lens || !n_tokens)
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_pack_padded: NULL argument");
    if (batch < 1 || seq < 1 || batch > INT32_MAX / seq)
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_pack_padded: batch %lld x seq %lld is not a valid shape", (long long)batch,
                         (long long)seq);
    int64_t n = 0;
    for (int64_t r = 0; r < batch; r++) {
        const int32_t *mr = mask + r * seq;
        int64_t len = 0;
        while (len < seq && mr[len] == 1) len++;
        for (int64_t t = len; t < seq; t++) {
            if (mr[t] == 1)
                return rlx__fail(RLX_ERR_INVALID_ARGUMENT,
                                 "rlx_pack_padded: mask row %lld has a 1 at position %lld after a 0 at %lld; only right padding (ones, then zeros) keeps HF's position ids",
                                 (long long)r, (long long)t, (long long)len);
            if (mr[t] != 0)
                return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_pack_padded: mask row %lld, position %lld is %ld, not 0 or 1", (long long)r,
                                 (long long)t, (long)mr[t]);
        }
        if (len == 0)
            return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_pack_padded: mask row %lld keeps no token (a sequence needs at least one)",
                             (long long)r);
        memcpy(packed + n, padded + r * seq, (size_t)len * sizeof *packed);
        seq_lens[r] = len;
        n += len;
    }
    *n_tokens = n;
    return RLX_OK;
}
