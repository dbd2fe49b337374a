/* Tier-0 flow builder: blocks append stages and move the cursor. Errors are sticky. */
#include "model/stages.h"
#include "model/tiers.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- sticky errors ------------------------------------------------------------------------ */

rlx_status rlx__flow_remember(rlx_flow *f, rlx_status s) {
    if (s != RLX_OK && f->error == RLX_OK) {
        f->error = s;
        f->error_msg = rlx__strdup(rlx_last_error());
    }
    return s;
}

rlx_status rlx__flow_fail(rlx_flow *f, rlx_status s, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    rlx__fail(s, "flow '%s'%s%s: %s", f->name, f->scope[0] ? ", in " : "", f->scope, msg);
    return rlx__flow_remember(f, s);
}

rlx_status rlx_flow_create(const char *name, rlx_flow **out) {
    if (!out) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_flow_create: out is NULL");
    *out = NULL;
    rlx_flow *f = rlx__calloc(1, sizeof *f, "a flow");
    if (!f) return RLX_ERR_OUT_OF_MEMORY;
    f->name = rlx__strdup(name && *name ? name : "flow");
    if (!f->name) {
        free(f);
        return RLX_ERR_OUT_OF_MEMORY;
    }
    f->cursor = f->saved = f->tokens = f->cos = f->sin = -1;
    *out = f;
    return RLX_OK;
}

void rlx_flow_destroy(rlx_flow *f) {
    if (!f) return;
    rlx__slist_free(&f->list);
    rlx__params_free(f->params);
    free(f->name);
    free(f->error_msg);
    free(f);
}

rlx_status rlx_flow_status(const rlx_flow *f) {
    return f ? f->error : rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_flow_status: flow is NULL");
}
const char *rlx_flow_name(const rlx_flow *f) { return f ? f->name : ""; }
size_t rlx_flow_stage_count(const rlx_flow *f) { return f ? (size_t)f->list.n_stages : 0; }

rlx_status rlx_flow_format(const rlx_flow *f, char **text) {
    if (!f || !text) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_flow_format: NULL argument");
    return rlx__slist_format(&f->list, text);
}

/* ---- helpers ------------------------------------------------------------------------------- */

void rlx__flow_scoped(const rlx_flow *f, const char *local, char *buf, size_t n) {
    int len = f->scope[0] ? snprintf(buf, n, "%s.%s", f->scope, local) : snprintf(buf, n, "%s", local);
    if (len < 0 || (size_t)len >= n) buf[n - 1] = '\0'; /* names are for humans; truncation is harmless */
}

/* New activation value named after its stage. */
static int new_act(rlx_flow *f, const char *stage_name, rlx__rows rows) {
    int id = rlx__slist_add_value(&f->list, stage_name, RLX_DTYPE_F32, rows, 0, 0);
    if (id < 0) rlx__flow_remember(f, RLX_ERR_OUT_OF_MEMORY);
    return id;
}

static rlx_status need_activation(rlx_flow *f, const char *block) {
    if (f->cursor < 0)
        return rlx__flow_fail(f, RLX_ERR_BUILD, "%s needs an input first (rlx_flow_input_tokens)", block);
    if (f->list.values[f->cursor].dtype != RLX_DTYPE_F32)
        return rlx__flow_fail(f, RLX_ERR_BUILD, "%s needs activations, but the current value is token ids (add token_embed first)", block);
    return RLX_OK;
}

/* Appends a stage whose name is scoped; returns RLX_OK or the sticky error. */
static rlx_status add_stage(rlx_flow *f, rlx__stage *st, const char *local) {
    char name[320];
    rlx__flow_scoped(f, local, name, sizeof name);
    st->name = name;
    if (rlx__slist_add_stage(&f->list, st) < 0) return rlx__flow_remember(f, RLX_ERR_OUT_OF_MEMORY);
    return RLX_OK;
}

static char *fmt_key(char *buf, size_t n, const char *prefix, const char *suffix) {
    int len = snprintf(buf, n, "%s.%s", prefix, suffix);
    if (len < 0 || (size_t)len >= n) buf[n - 1] = '\0'; /* a truncated key is reported missing at build */
    return buf;
}

/* One stage producing one new activation from the cursor. */
static rlx_status unary(rlx_flow *f, rlx__stage *st, const char *local, rlx__rows rows) {
    char name[320];
    rlx__flow_scoped(f, local, name, sizeof name);
    int out = new_act(f, name, rows);
    if (out < 0) return f->error;
    st->n_out = 1;
    st->out[0] = out;
    if (st->n_in == 0) {
        st->n_in = 1;
        st->in[0] = f->cursor;
    }
    rlx_status s = add_stage(f, st, local);
    if (s == RLX_OK) f->cursor = out;
    return s;
}

/* ---- blocks --------------------------------------------------------------------------------- */

rlx_status rlx_flow_input_tokens(rlx_flow *f, const char *name, int64_t batch, int64_t seq) {
    RLX__FLOW_ENTER(f);
    if (f->tokens >= 0) return rlx__flow_fail(f, RLX_ERR_BUILD, "the flow already has a token input");
    if (batch < 1 || seq < 1 || batch > INT32_MAX / seq)
        return rlx__flow_fail(f, RLX_ERR_INVALID_ARGUMENT,
                         "input '%s': batch %lld x seq %lld is not a valid capacity (each >= 1, product < 2^31)",
                         name ? name : "tokens", (long long)batch, (long long)seq);
    int id = rlx__slist_add_value(&f->list, name && *name ? name : "tokens", RLX_DTYPE_I32,
                                  RLX__ROWS_TOKENS, 0, 1);
    if (id < 0) return rlx__flow_remember(f, RLX_ERR_OUT_OF_MEMORY);
    rlx__stage st = {.op = RLX__OP_INPUT_TOKENS, .n_out = 1, .out = {id}};
    rlx_status s = add_stage(f, &st, name && *name ? name : "tokens");
    if (s != RLX_OK) return s;
    f->tokens = f->cursor = id;
    f->batch = batch;
    f->seq = seq;
    return RLX_OK;
}

rlx_status rlx_flow_rope_tables(rlx_flow *f, const rlx_rope_params *p) {
    RLX__FLOW_ENTER(f);
    if (!p) return rlx__flow_fail(f, RLX_ERR_INVALID_ARGUMENT, "rope_tables: params are NULL");
    if (f->cos >= 0) return rlx__flow_fail(f, RLX_ERR_BUILD, "the flow already has rope tables");
    if (p->head_dim < 2 || p->head_dim % 2 || p->head_dim > 4096)
        return rlx__flow_fail(f, RLX_ERR_INVALID_ARGUMENT, "rope_tables: head_dim %lld must be even, in [2, 4096]", (long long)p->head_dim);
    if (p->max_positions < 1 || p->max_positions > (1 << 24))
        return rlx__flow_fail(f, RLX_ERR_INVALID_ARGUMENT, "rope_tables: max_positions %lld must be in [1, 2^24]", (long long)p->max_positions);
    if (!(p->theta > 0))
        return rlx__flow_fail(f, RLX_ERR_INVALID_ARGUMENT, "rope_tables: theta %g must be > 0", p->theta);
    if (p->scaling != RLX_ROPE_SCALING_NONE && p->scaling != RLX_ROPE_SCALING_LLAMA3)
        return rlx__flow_fail(f, RLX_ERR_INVALID_ARGUMENT, "rope_tables: scaling %d is not an rlx_rope_scaling (none or llama3)",
                              (int)p->scaling);
    if (p->scaling == RLX_ROPE_SCALING_LLAMA3 &&
        !(p->factor >= 1 && p->low_freq_factor > 0 && p->high_freq_factor > p->low_freq_factor &&
          p->original_max_positions > 0))
        return rlx__flow_fail(f, RLX_ERR_INVALID_ARGUMENT,
                         "rope_tables: llama3 scaling needs factor >= 1, 0 < low_freq_factor < high_freq_factor, original_max_positions > 0");
    int c = rlx__slist_add_value(&f->list, "rope.cos", RLX_DTYPE_F32, RLX__ROWS_FIXED, p->max_positions, p->head_dim / 2);
    int s_ = rlx__slist_add_value(&f->list, "rope.sin", RLX_DTYPE_F32, RLX__ROWS_FIXED, p->max_positions, p->head_dim / 2);
    if (c < 0 || s_ < 0) return rlx__flow_remember(f, RLX_ERR_OUT_OF_MEMORY);
    rlx__stage st = {.op = RLX__OP_ROPE_TABLES, .n_out = 2, .out = {c, s_}, .rope = *p};
    rlx_status s = add_stage(f, &st, "rope_tables");
    if (s != RLX_OK) return s;
    f->cos = c;
    f->sin = s_;
    return RLX_OK;
}

rlx_status rlx_flow_token_embed(rlx_flow *f, const char *key) {
    RLX__FLOW_ENTER(f);
    if (f->cursor < 0 || f->list.values[f->cursor].dtype != RLX_DTYPE_I32)
        return rlx__flow_fail(f, RLX_ERR_BUILD, "token_embed needs the token input as the current value");
    rlx__stage st = {.op = RLX__OP_EMBED, .n_w = 1};
    st.wkey[0] = (char *)(key ? key : "model.embed_tokens.weight");
    return unary(f, &st, "token_embed", RLX__ROWS_TOKENS);
}

void rlx__flow_expect_embedding(rlx_flow *f, int64_t vocab, int64_t hidden) {
    if (f->error || !f->list.n_stages) return;
    rlx__stage *st = &f->list.stages[f->list.n_stages - 1];
    if (st->op != RLX__OP_EMBED) return;
    st->expect_rows = vocab;
    st->expect_cols = hidden;
}

rlx_status rlx_flow_rms_norm(rlx_flow *f, const char *key, double eps) {
    RLX__FLOW_ENTER(f);
    rlx_status s = need_activation(f, "rms_norm");
    if (s) return s;
    if (!key || !*key) return rlx__flow_fail(f, RLX_ERR_INVALID_ARGUMENT, "rms_norm: weight key is empty");
    if (!(eps > 0 && eps < 1)) return rlx__flow_fail(f, RLX_ERR_INVALID_ARGUMENT, "rms_norm '%s': eps %g must be in (0, 1)", key, eps);
    rlx__stage st = {.op = RLX__OP_RMS_NORM, .n_w = 1, .eps = eps};
    st.wkey[0] = (char *)key;
    return unary(f, &st, "rms_norm", f->list.values[f->cursor].rows);
}

rlx_status rlx_flow_final_norm(rlx_flow *f, double eps) {
    RLX__FLOW_ENTER(f);
    rlx_status s = need_activation(f, "final_norm");
    if (s) return s;
    if (!(eps > 0 && eps < 1)) return rlx__flow_fail(f, RLX_ERR_INVALID_ARGUMENT, "final_norm: eps %g must be in (0, 1)", eps);
    rlx__stage st = {.op = RLX__OP_RMS_NORM, .n_w = 1, .eps = eps};
    st.wkey[0] = "model.norm.weight";
    return unary(f, &st, "final_norm", f->list.values[f->cursor].rows);
}

static rlx_status linear_named(rlx_flow *f, const char *key, const char *bias, const char *local,
                               int64_t expect_rows, int64_t expect_cols) {
    rlx_status s = need_activation(f, local);
    if (s) return s;
    if (!key || !*key) return rlx__flow_fail(f, RLX_ERR_INVALID_ARGUMENT, "%s: weight key is empty", local);
    rlx__stage st = {.op = RLX__OP_LINEAR, .n_w = 2, .expect_rows = expect_rows, .expect_cols = expect_cols};
    st.wkey[0] = (char *)key;
    st.wkey[1] = (char *)bias;
    return unary(f, &st, local, f->list.values[f->cursor].rows);
}

rlx_status rlx_flow_linear(rlx_flow *f, const char *key, const char *bias_key) {
    RLX__FLOW_ENTER(f);
    return linear_named(f, key, bias_key, "linear", 0, 0);
}

rlx_status rlx_flow_residual_save(rlx_flow *f) {
    RLX__FLOW_ENTER(f);
    rlx_status s = need_activation(f, "residual_save");
    if (s) return s;
    if (f->saved >= 0)
        return rlx__flow_fail(f, RLX_ERR_BUILD, "residual_save: the slot already holds a value (add it first)");
    f->saved = f->cursor;
    return RLX_OK;
}

rlx_status rlx_flow_residual_add(rlx_flow *f) {
    RLX__FLOW_ENTER(f);
    rlx_status s = need_activation(f, "residual_add");
    if (s) return s;
    if (f->saved < 0) return rlx__flow_fail(f, RLX_ERR_BUILD, "residual_add: nothing was saved (residual_save first)");
    if (f->list.values[f->saved].rows != f->list.values[f->cursor].rows)
        return rlx__flow_fail(f, RLX_ERR_BUILD, "residual_add: the saved value and the current value have different rows");
    rlx__stage st = {.op = RLX__OP_ADD, .n_in = 2, .in = {f->cursor, f->saved}};
    s = unary(f, &st, "residual_add", f->list.values[f->cursor].rows);
    if (s == RLX_OK) f->saved = -1;
    return s;
}

static rlx_status check_heads(rlx_flow *f, const char *what, int64_t heads, int64_t kv, int64_t hd) {
    if (heads < 1 || kv < 1 || hd < 1 || heads > 4096 || hd > 4096 || heads % kv)
        return rlx__flow_fail(f, RLX_ERR_INVALID_ARGUMENT,
                         "%s: heads %lld, kv_heads %lld, head_dim %lld: need positive sizes with kv_heads dividing heads",
                         what, (long long)heads, (long long)kv, (long long)hd);
    return RLX_OK;
}

rlx_status rlx_flow_self_attn_prefill(rlx_flow *f, const rlx_attn_spec *sp) {
    RLX__FLOW_ENTER(f);
    if (!sp || !sp->prefix) return rlx__flow_fail(f, RLX_ERR_INVALID_ARGUMENT, "self_attn_prefill: spec or prefix is NULL");
    rlx_status s = need_activation(f, "self_attn_prefill");
    if (s) return s;
    if ((s = check_heads(f, "self_attn_prefill", sp->heads, sp->kv_heads, sp->head_dim))) return s;
    if (f->list.values[f->cursor].rows != RLX__ROWS_TOKENS)
        return rlx__flow_fail(f, RLX_ERR_BUILD, "self_attn_prefill needs one row per token (it comes before last_token)");
    if (sp->rope) {
        if (f->cos < 0) return rlx__flow_fail(f, RLX_ERR_BUILD, "self_attn_prefill with RoPE needs rope_tables first");
        const rlx__value *cv = &f->list.values[f->cos];
        if (cv->cols * 2 != sp->head_dim)
            return rlx__flow_fail(f, RLX_ERR_BUILD, "self_attn_prefill: head_dim %lld but the rope tables are for head_dim %lld",
                             (long long)sp->head_dim, (long long)cv->cols * 2);
    }
    char key[512];
    const int x = f->cursor;
    int qkv[3];
    const char *names[3] = {"q_proj", "k_proj", "v_proj"};
    for (int i = 0; i < 3; i++) {
        f->cursor = x;
        char local[32], wk[32];
        snprintf(local, sizeof local, "attn.%s", names[i]);
        snprintf(wk, sizeof wk, "%s.weight", names[i]);
        int64_t heads = i == 0 ? sp->heads : sp->kv_heads;
        if ((s = linear_named(f, fmt_key(key, sizeof key, sp->prefix, wk), NULL, local,
                              heads * sp->head_dim, 0)))
            return s;
        if (sp->rope && i < 2) {
            rlx__stage st = {.op = RLX__OP_ROPE, .n_in = 3, .in = {f->cursor, f->cos, f->sin},
                             .heads = heads, .head_dim = sp->head_dim};
            if ((s = unary(f, &st, i == 0 ? "attn.rope_q" : "attn.rope_k", RLX__ROWS_TOKENS))) return s;
        }
        qkv[i] = f->cursor;
    }
    rlx__stage st = {.op = RLX__OP_ATTENTION, .n_in = 3, .in = {qkv[0], qkv[1], qkv[2]},
                     .heads = sp->heads, .kv_heads = sp->kv_heads, .head_dim = sp->head_dim,
                     .causal = sp->causal};
    return unary(f, &st, "attn.sdpa", RLX__ROWS_TOKENS);
}

rlx_status rlx_flow_swiglu(rlx_flow *f, const char *prefix) {
    RLX__FLOW_ENTER(f);
    if (!prefix) return rlx__flow_fail(f, RLX_ERR_INVALID_ARGUMENT, "swiglu: prefix is NULL");
    rlx_status s = need_activation(f, "swiglu");
    if (s) return s;
    char key[512];
    const int x = f->cursor;
    if ((s = linear_named(f, fmt_key(key, sizeof key, prefix, "gate_proj.weight"), NULL, "mlp.gate_proj", 0, 0))) return s;
    const int g = f->cursor;
    f->cursor = x;
    if ((s = linear_named(f, fmt_key(key, sizeof key, prefix, "up_proj.weight"), NULL, "mlp.up_proj", 0, 0))) return s;
    rlx__stage st = {.op = RLX__OP_SILU_MUL, .n_in = 2, .in = {g, f->cursor}};
    if ((s = unary(f, &st, "mlp.silu_mul", f->list.values[x].rows))) return s;
    return linear_named(f, fmt_key(key, sizeof key, prefix, "down_proj.weight"), NULL, "mlp.down_proj", 0, 0);
}

rlx_status rlx_flow_last_token(rlx_flow *f) {
    RLX__FLOW_ENTER(f);
    rlx_status s = need_activation(f, "last_token");
    if (s) return s;
    if (f->list.values[f->cursor].rows != RLX__ROWS_TOKENS)
        return rlx__flow_fail(f, RLX_ERR_BUILD, "last_token: the current value already has one row per sequence");
    rlx__stage st = {.op = RLX__OP_LAST_TOKEN};
    return unary(f, &st, "last_token", RLX__ROWS_SEQUENCES);
}

rlx_status rlx_flow_lm_head(rlx_flow *f, int64_t vocab, int64_t hidden, int tied) {
    RLX__FLOW_ENTER(f);
    if (vocab < 1 || hidden < 1)
        return rlx__flow_fail(f, RLX_ERR_INVALID_ARGUMENT, "lm_head: vocab %lld and hidden %lld must be positive", (long long)vocab, (long long)hidden);
    return linear_named(f, tied ? "model.embed_tokens.weight" : "lm_head.weight", NULL, "lm_head", vocab, hidden);
}

rlx_status rlx_flow_layer(rlx_flow *f, const char *name, rlx_layer_fn fn, void *user) {
    RLX__FLOW_ENTER(f);
    if (!fn || !name || !*name) return rlx__flow_fail(f, RLX_ERR_INVALID_ARGUMENT, "layer: name and callback are required");
    char old[sizeof f->scope];
    memcpy(old, f->scope, sizeof old);
    size_t len = strlen(f->scope);
    if (len + strlen(name) + 2 > sizeof f->scope) return rlx__flow_fail(f, RLX_ERR_INVALID_ARGUMENT, "layer '%s': scope name too long", name);
    snprintf(f->scope + len, sizeof f->scope - len, "%s%s", len ? "." : "", name);
    rlx_status s = fn(f, user);
    memcpy(f->scope, old, sizeof old);
    if (!rlx__status_known(s))
        return rlx__flow_fail(f, RLX_ERR_INTERNAL, "layer '%s': the callback returned %d, which is not an rlx_status", name, (int)s);
    if (s != RLX_OK && f->error == RLX_OK) {
        /* The callback failed without a block recording it: keep its message. */
        rlx__flow_remember(f, s);
    }
    return s;
}

typedef struct repeat_ctx {
    rlx_repeat_fn fn;
    void *user;
    int64_t i;
} repeat_ctx;

static rlx_status repeat_one(rlx_flow *f, void *user) {
    repeat_ctx *c = user;
    return c->fn(f, c->i, c->user);
}

rlx_status rlx_flow_repeat_layers(rlx_flow *f, int64_t n, rlx_repeat_fn fn, void *user) {
    RLX__FLOW_ENTER(f);
    if (!fn || n < 0 || n > 100000) return rlx__flow_fail(f, RLX_ERR_INVALID_ARGUMENT, "repeat_layers: bad count %lld or NULL callback", (long long)n);
    for (int64_t i = 0; i < n; i++) {
        repeat_ctx c = {fn, user, i};
        char name[32];
        snprintf(name, sizeof name, "L%lld", (long long)i);
        rlx_status s = rlx_flow_layer(f, name, repeat_one, &c);
        if (s) return s;
    }
    return RLX_OK;
}

/* ---- LLaMA layer, both forms ---------------------------------------------------------------- */

static const char *layer_prefix(const rlx_llama_layer_spec *sp, int64_t index, char *buf, size_t n) {
    if (sp->prefix) return sp->prefix;
    snprintf(buf, n, "model.layers.%lld", (long long)index);
    return buf;
}

rlx_status rlx__emit_llama_layer(rlx_flow *f, int64_t index, const rlx_llama_layer_spec *sp) {
    char pbuf[64], key[512], sub[512];
    const char *prefix = layer_prefix(sp, index, pbuf, sizeof pbuf);
    rlx_attn_spec as = {.prefix = sub, .heads = sp->heads, .kv_heads = sp->kv_heads,
                        .head_dim = sp->head_dim, .causal = 1, .rope = 1};
    snprintf(sub, sizeof sub, "%s.self_attn", prefix);
    rlx_status s;
    if ((s = rlx_flow_residual_save(f))) return s;
    if ((s = rlx_flow_rms_norm(f, fmt_key(key, sizeof key, prefix, "input_layernorm.weight"), sp->eps))) return s;
    if ((s = rlx_flow_self_attn_prefill(f, &as))) return s;
    if ((s = linear_named(f, fmt_key(key, sizeof key, sub, "o_proj.weight"), NULL, "attn.o_proj", 0, 0))) return s;
    if ((s = rlx_flow_residual_add(f))) return s;
    if ((s = rlx_flow_residual_save(f))) return s;
    if ((s = rlx_flow_rms_norm(f, fmt_key(key, sizeof key, prefix, "post_attention_layernorm.weight"), sp->eps))) return s;
    snprintf(sub, sizeof sub, "%s.mlp", prefix);
    if ((s = rlx_flow_swiglu(f, sub))) return s;
    return rlx_flow_residual_add(f);
}

static rlx_status check_layer_spec(rlx_flow *f, const rlx_llama_layer_spec *sp) {
    if (!sp) return rlx__flow_fail(f, RLX_ERR_INVALID_ARGUMENT, "llama layer: spec is NULL");
    rlx_status s = check_heads(f, "llama layer", sp->heads, sp->kv_heads, sp->head_dim);
    if (s) return s;
    if (!(sp->eps > 0 && sp->eps < 1)) return rlx__flow_fail(f, RLX_ERR_INVALID_ARGUMENT, "llama layer: eps %g must be in (0, 1)", sp->eps);
    if (f->cos < 0) return rlx__flow_fail(f, RLX_ERR_BUILD, "llama layer needs rope_tables first");
    if (f->list.values[f->cos].cols * 2 != sp->head_dim)
        return rlx__flow_fail(f, RLX_ERR_BUILD, "llama layer: head_dim %lld but the rope tables are for head_dim %lld",
                         (long long)sp->head_dim, (long long)f->list.values[f->cos].cols * 2);
    if (f->saved >= 0) return rlx__flow_fail(f, RLX_ERR_BUILD, "llama layer: the residual slot is in use");
    return need_activation(f, "llama layer");
}

rlx_status rlx_flow_llama_layer_composed(rlx_flow *f, int64_t index, const rlx_llama_layer_spec *sp) {
    RLX__FLOW_ENTER(f);
    rlx_status s = check_layer_spec(f, sp);
    if (s) return s;
    return rlx__emit_llama_layer(f, index, sp);
}

rlx_status rlx_flow_llama_layer_fused(rlx_flow *f, int64_t index, const rlx_llama_layer_spec *sp) {
    RLX__FLOW_ENTER(f);
    rlx_status s = check_layer_spec(f, sp);
    if (s) return s;
    if (f->list.values[f->cursor].rows != RLX__ROWS_TOKENS)
        return rlx__flow_fail(f, RLX_ERR_BUILD, "llama layer needs one row per token (it comes before last_token)");
    char pbuf[64], keys[RLX__STAGE_MAX_W][512];
    const char *prefix = layer_prefix(sp, index, pbuf, sizeof pbuf);
    static const char *suffix[RLX__STAGE_MAX_W] = {
        "input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight",
        "self_attn.v_proj.weight", "self_attn.o_proj.weight", "post_attention_layernorm.weight",
        "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight"};
    rlx__stage st = {.op = RLX__OP_LLAMA_LAYER, .n_in = 3, .in = {f->cursor, f->cos, f->sin},
                     .n_w = RLX__STAGE_MAX_W, .heads = sp->heads, .kv_heads = sp->kv_heads,
                     .head_dim = sp->head_dim, .eps = sp->eps, .causal = 1};
    for (int i = 0; i < RLX__STAGE_MAX_W; i++) st.wkey[i] = fmt_key(keys[i], sizeof keys[i], prefix, suffix[i]);
    return unary(f, &st, "llama_layer", RLX__ROWS_TOKENS);
}
