/* Compile profiles (tier 1): presets, the *.rlx.toml schema, discovery next to a checkpoint,
 * and the build passes a profile switches (dead-stage elimination, the pass log).
 * The TOML itself is read by toml++ (profile_toml.cpp); this file owns the schema, so every
 * key's type, range and message live in one table. docs/profiles.md documents the keys. */
#include "model/profile_toml.h"
#include "model/tiers.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- presets ------------------------------------------------------------------------------- */

static void prefill_preset(rlx_profile *p) {
    memset(p, 0, sizeof *p);
    snprintf(p->source, sizeof p->source, "preset:prefill");
    p->fusion_policy = RLX_FUSION_FUSED;
    p->target = RLX_DEVICE_AUTO;
    p->assert_clean = 0;
    p->dce = 1;
    p->constant_folding = 1;
    p->verbose = 0;
    p->compute = RLX_PRECISION_BF16;
    p->mixed = RLX_MIXED_AUTO; /* the f32 residual stream: docs/numerics.md, "The default" */
    p->attention_block_q = 0;
    p->gemm_workspace_mb = 32;
    p->cuda_graphs = 0;
    p->gemm_autotune = 0;
    p->prune_last_layer = 1;
}

rlx_status rlx_profile_preset(const char *name, rlx_profile *out) {
    if (!out) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_profile_preset: out is NULL");
    rlx_profile p;
    prefill_preset(&p);
    if (name && !strcmp(name, "debug")) {
        /* Unfused f32 on the device, every launch visible: the setting to bisect numerics. */
        snprintf(p.source, sizeof p.source, "preset:debug");
        p.fusion_policy = RLX_FUSION_NONE;
        p.compute = RLX_PRECISION_F32;
        p.cuda_graphs = 0;
        p.verbose = 1;
    } else if (name && strcmp(name, "prefill")) {
        return rlx__fail(RLX_ERR_PROFILE, "profile preset '%s' does not exist (presets: prefill, debug)", name);
    }
    *out = p;
    return RLX_OK;
}

/* ---- schema -------------------------------------------------------------------------------- */

typedef enum field {
    F_POLICY, F_TARGET, F_ASSERT_CLEAN, F_SKIP, F_DCE, F_CONST_FOLD, F_VERBOSE, F_COMPUTE, F_MIXED,
    F_ATTN_BLOCK_Q, F_GEMM_WS, F_CUDA_GRAPHS, F_GEMM_AUTOTUNE, F_PRUNE
} field;

typedef enum kind { K_BOOL, K_INT, K_ENUM } kind;

typedef struct choice {
    const char *name;
    int value;
} choice;

static const choice policy_choices[] = {{"fused", RLX_FUSION_FUSED}, {"none", RLX_FUSION_NONE},
                                        {"fusable", RLX_FUSION_FUSED}, {"direct", RLX_FUSION_NONE}, {NULL, 0}};
static const choice target_choices[] = {{"auto", RLX_DEVICE_AUTO}, {"cpu", RLX_DEVICE_CPU}, {"cuda", RLX_DEVICE_CUDA},
                                        {"simt", RLX_DEVICE_SIMT}, {NULL, 0}};
static const choice compute_choices[] = {{"bf16", RLX_PRECISION_BF16}, {"f16", RLX_PRECISION_F16}, {"f32", RLX_PRECISION_F32}, {NULL, 0}};
static const choice mixed_choices[] = {{"none", RLX_MIXED_NONE}, {"auto", RLX_MIXED_AUTO}, {NULL, 0}};
static const int block_q_values[] = {0, 64, 128};

typedef struct key_spec {
    const char *table, *key;
    field field;
    kind kind;
    const choice *choices; /* K_ENUM */
    const char *choices_text;
    int64_t min, max;      /* K_INT range */
    const int *allowed;    /* K_INT: a set instead of a range */
    int n_allowed;
    const char *allowed_text;
} key_spec;

static const key_spec keys[] = {
    {"fusion", "policy", F_POLICY, K_ENUM, policy_choices, "\"fused\", \"none\" (seed spellings \"fusable\", \"direct\")", 0, 0, NULL, 0, NULL},
    {"fusion", "target", F_TARGET, K_ENUM, target_choices, "\"auto\", \"cpu\", \"cuda\", \"simt\"", 0, 0, NULL, 0, NULL},
    {"fusion", "assert_clean", F_ASSERT_CLEAN, K_BOOL, NULL, NULL, 0, 0, NULL, 0, NULL},
    {"fusion", "skip", F_SKIP, K_BOOL, NULL, NULL, 0, 0, NULL, 0, NULL},
    {"passes", "dce", F_DCE, K_BOOL, NULL, NULL, 0, 0, NULL, 0, NULL},
    {"passes", "constant_folding", F_CONST_FOLD, K_BOOL, NULL, NULL, 0, 0, NULL, 0, NULL},
    {"passes", "verbose", F_VERBOSE, K_BOOL, NULL, NULL, 0, 0, NULL, 0, NULL},
    {"passes", "prune_last_layer", F_PRUNE, K_BOOL, NULL, NULL, 0, 0, NULL, 0, NULL},
    {"precision", "compute", F_COMPUTE, K_ENUM, compute_choices, "\"bf16\", \"f16\", \"f32\"", 0, 0, NULL, 0, NULL},
    {"precision", "mixed", F_MIXED, K_ENUM, mixed_choices, "\"none\", \"auto\"", 0, 0, NULL, 0, NULL},
    {"kernels", "attention_block_q", F_ATTN_BLOCK_Q, K_INT, NULL, NULL, 0, 0, block_q_values, 3, "0 (the kernel's choice), 64, 128"},
    {"kernels", "gemm_workspace_mb", F_GEMM_WS, K_INT, NULL, NULL, 0, 4096, NULL, 0, NULL},
    {"kernels", "cuda_graphs", F_CUDA_GRAPHS, K_BOOL, NULL, NULL, 0, 0, NULL, 0, NULL},
    {"kernels", "gemm_autotune", F_GEMM_AUTOTUNE, K_BOOL, NULL, NULL, 0, 0, NULL, 0, NULL},
};
#define N_KEYS (sizeof keys / sizeof keys[0])

static const char *const tables[] = {"fusion", "passes", "precision", "kernels"};
#define N_TABLES (sizeof tables / sizeof tables[0])

static int known_table(const char *t) {
    for (size_t i = 0; i < N_TABLES; i++)
        if (!strcmp(tables[i], t)) return 1;
    return 0;
}

/* "policy, target, assert_clean, skip" */
static void keys_of(const char *table, char *buf, size_t n) {
    size_t len = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < N_KEYS && len < n; i++)
        if (!strcmp(keys[i].table, table)) len += (size_t)snprintf(buf + len, n - len, "%s%s", len ? ", " : "", keys[i].key);
}

static void set_field(rlx_profile *p, field f, int v) {
    switch (f) {
    case F_POLICY: p->fusion_policy = (rlx_fusion_policy)v; break;
    case F_TARGET: p->target = (rlx_device_kind)v; break;
    case F_ASSERT_CLEAN: p->assert_clean = v; break;
    case F_SKIP: break; /* resolved against policy after every key is read */
    case F_DCE: p->dce = v; break;
    case F_CONST_FOLD: p->constant_folding = v; break;
    case F_VERBOSE: p->verbose = v; break;
    case F_COMPUTE: p->compute = (rlx_precision)v; break;
    case F_MIXED: p->mixed = (rlx_mixed_precision)v; break;
    case F_ATTN_BLOCK_Q: p->attention_block_q = v; break;
    case F_GEMM_WS: p->gemm_workspace_mb = v; break;
    case F_CUDA_GRAPHS: p->cuda_graphs = v; break;
    case F_GEMM_AUTOTUNE: p->gemm_autotune = v; break;
    case F_PRUNE: p->prune_last_layer = v; break;
    }
}

/* ---- problems ------------------------------------------------------------------------------- */

/* Every problem of a file, in file order, each "src:line:col: key 't.k': what". The message
 * buffer of rlx_last_error holds about 1000 characters, so later problems are counted. */
typedef struct problems {
    char text[960];
    size_t len;
    int count, dropped;
} problems;

static void problem(problems *pr, const char *src, int line, int col, const char *fmt, ...) RLX__PRINTF(5, 6);
static void problem(problems *pr, const char *src, int line, int col, const char *fmt, ...) {
    char one[512];
    int n = snprintf(one, sizeof one, "%s:%d:%d: ", src, line, col);
    va_list ap;
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < sizeof one) vsnprintf(one + n, sizeof one - (size_t)n, fmt, ap);
    va_end(ap);
    size_t need = strlen(one) + (pr->count ? 2 : 0);
    if (pr->dropped || pr->len + need + 24 >= sizeof pr->text) {
        pr->dropped++;
    } else {
        pr->len += (size_t)snprintf(pr->text + pr->len, sizeof pr->text - pr->len, "%s%s", pr->count ? "; " : "", one);
    }
    pr->count++;
}

/* ---- parsing -------------------------------------------------------------------------------- */

static const key_spec *find_key(const char *table, const char *key) {
    for (size_t i = 0; i < N_KEYS; i++)
        if (!strcmp(keys[i].table, table) && !strcmp(keys[i].key, key)) return &keys[i];
    return NULL;
}

static void apply(const rlx__toml_entry *e, const key_spec *k, const char *src, rlx_profile *p, problems *pr) {
    switch (k->kind) {
    case K_BOOL:
        if (e->kind != RLX__TOML_BOOLEAN) {
            problem(pr, src, e->line, e->col, "key '%s.%s': expected a boolean (true or false), got %s", e->table, e->key,
                    rlx__toml_kind_name(e->kind));
            return;
        }
        set_field(p, k->field, e->b);
        return;
    case K_INT:
        if (e->kind != RLX__TOML_INTEGER) {
            problem(pr, src, e->line, e->col, "key '%s.%s': expected an integer, got %s", e->table, e->key,
                    rlx__toml_kind_name(e->kind));
            return;
        }
        if (k->allowed) {
            for (int i = 0; i < k->n_allowed; i++)
                if (e->i == k->allowed[i]) {
                    set_field(p, k->field, (int)e->i);
                    return;
                }
            problem(pr, src, e->line, e->col, "key '%s.%s': %lld is not one of %s", e->table, e->key, (long long)e->i,
                    k->allowed_text);
            return;
        }
        if (e->i < k->min || e->i > k->max) {
            problem(pr, src, e->line, e->col, "key '%s.%s': %lld is outside [%lld, %lld]", e->table, e->key, (long long)e->i,
                    (long long)k->min, (long long)k->max);
            return;
        }
        set_field(p, k->field, (int)e->i);
        return;
    case K_ENUM:
        if (e->kind != RLX__TOML_STRING) {
            problem(pr, src, e->line, e->col, "key '%s.%s': expected a string (one of %s), got %s", e->table, e->key,
                    k->choices_text, rlx__toml_kind_name(e->kind));
            return;
        }
        for (const choice *c = k->choices; c->name; c++)
            if (!strcmp(c->name, e->s)) {
                set_field(p, k->field, c->value);
                return;
            }
        problem(pr, src, e->line, e->col, "key '%s.%s': \"%.64s\" is not one of %s", e->table, e->key, e->s, k->choices_text);
        return;
    }
}

static rlx_status parse_doc(const rlx__toml_doc *doc, const char *src, rlx_profile *p) {
    problems pr = {0};
    const rlx__toml_entry *policy = NULL, *skip = NULL;
    for (size_t i = 0; i < doc->n; i++) {
        const rlx__toml_entry *e = &doc->e[i];
        if (!e->table) {
            if (e->kind == RLX__TOML_TABLE) {
                if (!known_table(e->key))
                    problem(&pr, src, e->key_line, e->key_col,
                            "table '%.64s': unknown table (a profile has [fusion], [passes], [precision], [kernels])", e->key);
            } else if (known_table(e->key)) {
                problem(&pr, src, e->key_line, e->key_col, "table '%s': expected a table ([%s]), got %s", e->key, e->key,
                        rlx__toml_kind_name(e->kind));
            } else {
                problem(&pr, src, e->key_line, e->key_col,
                        "key '%.64s': unknown top-level key (keys belong in [fusion], [passes], [precision] or [kernels])", e->key);
            }
            continue;
        }
        if (!known_table(e->table)) continue; /* reported once, at the table */
        const key_spec *k = find_key(e->table, e->key);
        if (!k) {
            char list[160];
            keys_of(e->table, list, sizeof list);
            problem(&pr, src, e->key_line, e->key_col, "key '%s.%.64s': unknown key ([%s] takes %s)", e->table, e->key, e->table, list);
            continue;
        }
        if (k->field == F_POLICY) policy = e;
        if (k->field == F_SKIP) skip = e;
        apply(e, k, src, p, &pr);
    }
    /* The seed's skip = true means "no fusion": the same as policy "none". */
    if (skip && skip->kind == RLX__TOML_BOOLEAN && skip->b) {
        if (policy && policy->kind == RLX__TOML_STRING && p->fusion_policy == RLX_FUSION_FUSED)
            problem(&pr, src, skip->line, skip->col, "key 'fusion.skip': true contradicts fusion.policy = \"%.32s\" (line %d)",
                    policy->s, policy->line);
        else
            p->fusion_policy = RLX_FUSION_NONE;
    }
    if (pr.count) {
        if (pr.dropped) return rlx__fail(RLX_ERR_PROFILE, "%s; and %d more problem%s", pr.text, pr.dropped, pr.dropped > 1 ? "s" : "");
        return rlx__fail(RLX_ERR_PROFILE, "%s", pr.text);
    }
    return RLX_OK;
}

rlx_status rlx_profile_parse(const char *text, const char *source_name, rlx_profile *out) {
    if (!text || !out) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_profile_parse: text and out are required");
    const char *src = source_name && *source_name ? source_name : "<profile>";
    rlx_profile p;
    prefill_preset(&p);
    rlx__toml_doc doc;
    rlx_status s = rlx__toml_read(text, strlen(text), src, &doc);
    if (s) return s;
    s = parse_doc(&doc, src, &p);
    rlx__toml_free(&doc);
    if (s) return s;
    if (strlen(src) >= sizeof p.source)
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "profile source name is longer than %d characters", RLX_PROFILE_SOURCE_MAX - 1);
    snprintf(p.source, sizeof p.source, "%s", src);
    *out = p;
    return RLX_OK;
}

#define PROFILE_MAX_BYTES (1 << 20)

rlx_status rlx_profile_load(const char *path, rlx_profile *out) {
    if (!path || !out) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_profile_load: path and out are required");
    struct stat sb;
    if (stat(path, &sb) != 0) return rlx__fail(RLX_ERR_IO, "%s: cannot read the profile (no such file or no access)", path);
    /* A FIFO or a directory would block or fail obscurely in fread. */
    if (!S_ISREG(sb.st_mode)) return rlx__fail(RLX_ERR_IO, "%s: not a regular file", path);
    if (sb.st_size > PROFILE_MAX_BYTES)
        return rlx__fail(RLX_ERR_PROFILE, "%s: %lld bytes; a profile is at most %d", path, (long long)sb.st_size, PROFILE_MAX_BYTES);
    FILE *f = fopen(path, "rb");
    if (!f) return rlx__fail(RLX_ERR_IO, "%s: cannot open the profile", path);
    char *text = rlx__malloc((size_t)sb.st_size + 1, "the profile text");
    if (!text) {
        fclose(f);
        return RLX_ERR_OUT_OF_MEMORY;
    }
    size_t n = fread(text, 1, (size_t)sb.st_size, f);
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(text);
        return rlx__fail(RLX_ERR_IO, "%s: read error", path);
    }
    text[n] = '\0';
    if (memchr(text, '\0', n)) {
        free(text);
        return rlx__fail(RLX_ERR_PROFILE, "%s: contains a NUL byte (a profile is TOML text)", path);
    }
    rlx_status s = rlx_profile_parse(text, path, out);
    free(text);
    return s;
}

rlx_status rlx_profile_near(const rlx_weights *w, const char *family, rlx_profile *out) {
    if (!w || !out) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_profile_near: weights and out are required");
    if (!family || !*family || strlen(family) > 64)
        return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_profile_near: family must be a name of 1 to 64 characters");
    for (const char *c = family; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '_' || *c == '-' || *c == '.'))
            return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_profile_near: family '%s' may only hold letters, digits, '_', '-', '.'", family);
    const char *dir = rlx_weights_dir(w);
    if (dir) {
        char path[RLX_PROFILE_SOURCE_MAX];
        int n = snprintf(path, sizeof path, "%s/%s.rlx.toml", dir, family);
        if (n < 0 || (size_t)n >= sizeof path)
            return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_profile_near: the path of %s.rlx.toml in '%s' is too long", family, dir);
        struct stat sb;
        if (stat(path, &sb) == 0) return rlx_profile_load(path, out);
    }
    return rlx_profile_preset("prefill", out);
}

/* ---- checking and printing -------------------------------------------------------------------- */

static const char *choice_name(const choice *c, int v) {
    for (; c->name; c++)
        if (c->value == v) return c->name;
    return "?";
}

rlx_status rlx_profile_validate(const rlx_profile *p) {
    if (!p) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_profile_validate: profile is NULL");
    const char *src = memchr(p->source, '\0', sizeof p->source) ? p->source : "<profile>";
    const char *bad = NULL;
    if (p->fusion_policy != RLX_FUSION_FUSED && p->fusion_policy != RLX_FUSION_NONE) bad = "fusion.policy";
    else if (p->target < RLX_DEVICE_AUTO || p->target > RLX_DEVICE_SIMT) bad = "fusion.target";
    else if ((unsigned)p->assert_clean > 1) bad = "fusion.assert_clean";
    else if ((unsigned)p->dce > 1) bad = "passes.dce";
    else if ((unsigned)p->constant_folding > 1) bad = "passes.constant_folding";
    else if ((unsigned)p->verbose > 1) bad = "passes.verbose";
    else if (p->compute != RLX_PRECISION_BF16 && p->compute != RLX_PRECISION_F16 && p->compute != RLX_PRECISION_F32) bad = "precision.compute";
    else if (p->mixed != RLX_MIXED_NONE && p->mixed != RLX_MIXED_AUTO) bad = "precision.mixed";
    else if (p->attention_block_q != 0 && p->attention_block_q != 64 && p->attention_block_q != 128) bad = "kernels.attention_block_q";
    else if (p->gemm_workspace_mb < 0 || p->gemm_workspace_mb > 4096) bad = "kernels.gemm_workspace_mb";
    else if ((unsigned)p->cuda_graphs > 1) bad = "kernels.cuda_graphs";
    else if ((unsigned)p->gemm_autotune > 1) bad = "kernels.gemm_autotune";
    else if ((unsigned)p->prune_last_layer > 1) bad = "passes.prune_last_layer";
    if (bad) return rlx__fail(RLX_ERR_PROFILE, "%s: key '%s': value out of range (docs/profiles.md lists the allowed values)", src, bad);
    return RLX_OK;
}

static const char *tf(int b) { return b ? "true" : "false"; }

rlx_status rlx_profile_format(const rlx_profile *p, char **text) {
    if (!text) return rlx__fail(RLX_ERR_INVALID_ARGUMENT, "rlx_profile_format: text is NULL");
    *text = NULL;
    rlx_status s = rlx_profile_validate(p);
    if (s) return s;
    char buf[512];
    snprintf(buf, sizeof buf,
             "fusion.policy=%s fusion.target=%s fusion.assert_clean=%s passes.dce=%s passes.constant_folding=%s "
             "passes.verbose=%s passes.prune_last_layer=%s precision.compute=%s precision.mixed=%s kernels.attention_block_q=%d "
             "kernels.gemm_workspace_mb=%d kernels.cuda_graphs=%s kernels.gemm_autotune=%s",
             choice_name(policy_choices, p->fusion_policy), choice_name(target_choices, p->target), tf(p->assert_clean),
             tf(p->dce), tf(p->constant_folding), tf(p->verbose), tf(p->prune_last_layer), choice_name(compute_choices, p->compute),
             choice_name(mixed_choices, p->mixed), p->attention_block_q, p->gemm_workspace_mb, tf(p->cuda_graphs),
             tf(p->gemm_autotune));
    *text = rlx__strdup(buf);
    return *text ? RLX_OK : RLX_ERR_OUT_OF_MEMORY;
}

/* ---- the model's side ------------------------------------------------------------------------- */

const rlx_profile *rlx_model_profile(const rlx_model *m) { return m ? &m->profile : NULL; }
const char *rlx_model_pass_log(const rlx_model *m) { return m && m->pass_log ? m->pass_log : ""; }

rlx_status rlx__model_log(rlx_model *m, const char *fmt, ...) {
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    size_t old = m->pass_log ? strlen(m->pass_log) : 0, add = strlen(line);
    char *p = realloc(m->pass_log, old + add + 2);
    if (!p) return rlx__fail(RLX_ERR_OUT_OF_MEMORY, "out of host memory: %zu bytes for the pass log", old + add + 2);
    memcpy(p + old, line, add);
    p[old + add] = '\n';
    p[old + add + 1] = '\0';
    m->pass_log = p;
    return RLX_OK;
}

rlx_status rlx__pass_dce(rlx_model *m) {
    if (!m->profile.dce) return rlx__model_log(m, "dce: off (passes.dce = false)");
    rlx__slist *l = &m->list;
    const int n = l->n_stages;
    unsigned char *live_v = rlx__calloc((size_t)l->n_values + 1, 1, "the dce value marks");
    unsigned char *keep = rlx__calloc((size_t)n + 1, 1, "the dce stage marks");
    if (!live_v || !keep) {
        free(live_v);
        free(keep);
        return RLX_ERR_OUT_OF_MEMORY;
    }
    live_v[m->output] = 1;
    /* Stages read only earlier values, so one backward sweep finds everything the output needs. */
    for (int i = n - 1; i >= 0; i--) {
        const rlx__stage *st = &l->stages[i];
        int live = st->op == RLX__OP_INPUT_TOKENS || st->op == RLX__OP_EMBED;
        for (int k = 0; k < st->n_out && !live; k++) live = live_v[st->out[k]];
        if (!live) continue;
        keep[i] = 1;
        for (int k = 0; k < st->n_in; k++) live_v[st->in[k]] = 1;
    }
    int removed = 0;
    rlx_status s = RLX_OK;
    for (int i = 0; i < n && s == RLX_OK; i++)
        if (!keep[i]) {
            removed++;
            if (m->profile.verbose)
                s = rlx__model_log(m, "dce: removed stage %d %s (%s): nothing reads its output", i, l->stages[i].name,
                                   rlx__op_name(l->stages[i].op));
        }
    if (s == RLX_OK) s = rlx__model_log(m, "dce: removed %d of %d stages", removed, n);
    if (s == RLX_OK && removed) rlx__slist_remove_stages(l, keep);
    free(live_v);
    free(keep);
    return s;
}
