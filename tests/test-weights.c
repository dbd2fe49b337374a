/* Model directories (single file and sharded with an index), lookups, and in-memory sets. */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "rlx/weights.h"
#include "testutil.h"

static char *g_dir;

static void setup(void) {
    g_dir = rlxt_tmpdir();
    cr_assert_not_null(g_dir, "cannot make a temporary directory");
}

static void teardown(void) {
    rlxt_rmtree(g_dir);
    free(g_dir);
}

TestSuite(weights, .init = setup, .fini = teardown);

static const char k_config[] = "{\"model_type\": \"llama\", \"hidden_size\": 8}";

/* Writes text (single quotes become double quotes) to g_dir/sub/name. */
static void write_text(const char *sub, const char *name, const char *text_sq) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", g_dir, sub);
    mkdir(dir, 0755);
    char *t = strdup(text_sq);
    for (char *c = t; *c; c++)
        if (*c == '\'') *c = '"';
    free(rlxt_write_file(dir, name, t, strlen(t)));
    free(t);
}

static char *sub_path(const char *sub, const char *name) {
    char *p = malloc(1024);
    if (name) snprintf(p, 1024, "%s/%s/%s", g_dir, sub, name);
    else snprintf(p, 1024, "%s/%s", g_dir, sub);
    return p;
}

/* An in-memory set with the given tensor names, each F32 [2, 3] filled from seed. */
static rlx_weights *make_set(uint64_t seed, const char *const *names, size_t n) {
    rlx_weights *w;
    cr_assert_eq(rlx_weights_create(&w), RLX_OK);
    rlxt_rng r = {seed};
    for (size_t i = 0; i < n; i++) {
        float x[6];
        rlxt_fill(&r, x, 6, 1.0f);
        int64_t shape[2] = {2, 3};
        cr_assert_eq(rlx_weights_add(w, names[i], RLX_DTYPE_F32, 2, shape, x), RLX_OK, "%s",
                     rlx_last_error());
    }
    return w;
}

static void save_shard(const char *sub, const char *file, uint64_t seed, const char *const *names, size_t n) {
    rlx_weights *w = make_set(seed, names, n);
    char *p = sub_path(sub, NULL);
    mkdir(p, 0755);
    free(p);
    p = sub_path(sub, file);
    cr_assert_eq(rlx_weights_save_file(w, p), RLX_OK, "%s", rlx_last_error());
    free(p);
    rlx_weights_destroy(w);
}

static void expect_open_fail(const char *sub, rlx_status want, ...) {
    char *dir = sub_path(sub, NULL);
    rlx_weights *w = (rlx_weights *)&w;
    rlx_status s = rlx_weights_open(dir, &w);
    cr_expect_eq(s, want, "status %s, want %s: %s", rlx_status_name(s), rlx_status_name(want),
                 rlx_last_error());
    cr_expect_null(w);
    const char *msg = rlx_last_error();
    cr_log_info("%s: %s", rlx_status_name(s), msg);
    va_list ap;
    va_start(ap, want);
    for (const char *needle; (needle = va_arg(ap, const char *));)
        cr_expect(strstr(msg, needle) != NULL, "message lacks \"%s\": %s", needle, msg);
    va_end(ap);
    if (s == RLX_OK) rlx_weights_destroy(w);
    free(dir);
}

static const char *const k_names[] = {"model.embed_tokens.weight", "model.layers.0.mlp.up_proj.weight",
                                      "model.layers.1.mlp.up_proj.weight", "model.norm.weight"};

/* Sharded layout used by most index tests: names 0,1 in shard 1; 2,3 in shard 2. */
#define SH1 "model-00001-of-00002.safetensors"
#define SH2 "model-00002-of-00002.safetensors"
static void make_sharded(const char *sub) {
    save_shard(sub, SH1, 1, k_names, 2);
    save_shard(sub, SH2, 2, k_names + 2, 2);
    write_text(sub, "config.json", k_config);
}

static const char k_index[] = "{'metadata':{'total_size':96},'weight_map':{"
                              "'model.embed_tokens.weight':'" SH1 "',"
                              "'model.layers.0.mlp.up_proj.weight':'" SH1 "',"
                              "'model.layers.1.mlp.up_proj.weight':'" SH2 "',"
                              "'model.norm.weight':'" SH2 "'}}";

// ---- directories -----------------------------------------------------------------------------

Test(weights, directory_with_model_safetensors) {
    rlx_weights *src = make_set(42, k_names, 4);
    cr_assert_eq(rlx_weights_set_config_json(src, k_config), RLX_OK);
    char *dir = sub_path("m", NULL);
    cr_assert_eq(rlx_weights_save_dir(src, dir), RLX_OK, "%s", rlx_last_error());

    /* A trailing slash must not leak into paths or messages. */
    char slashed[1100];
    snprintf(slashed, sizeof slashed, "%s//", dir);
    rlx_weights *w;
    cr_assert_eq(rlx_weights_open(slashed, &w), RLX_OK, "%s", rlx_last_error());
    cr_expect_str_eq(rlx_weights_dir(w), dir);
    cr_expect_str_eq(rlx_weights_config_json(w), k_config);
    cr_assert_eq(rlx_weights_count(w), 4);
    char *file = sub_path("m", "model.safetensors");
    for (size_t i = 0; i < 4; i++) {
        rlx_tensor_view a, b;
        cr_assert_eq(rlx_weights_at(w, i, &b), RLX_OK);
        cr_assert_eq(rlx_weights_get(src, b.name, &a), RLX_OK);
        cr_expect_str_eq(b.name, k_names[i], "name order");
        cr_expect_str_eq(b.file, file);
        cr_expect_eq(b.nbytes, 24);
        cr_expect(memcmp(a.data, b.data, 24) == 0, "%s differs", b.name);
    }
    free(file);
    rlx_weights_destroy(w);
    rlx_weights_destroy(src);
    free(dir);
}

Test(weights, sharded_directory_with_index) {
    make_sharded("s");
    write_text("s", "model.safetensors.index.json", k_index);
    char *dir = sub_path("s", NULL);
    rlx_weights *w;
    cr_assert_eq(rlx_weights_open(dir, &w), RLX_OK, "%s", rlx_last_error());
    cr_assert_eq(rlx_weights_count(w), 4);
    rlx_weights *one = make_set(1, k_names, 2), *two = make_set(2, k_names + 2, 2);
    for (size_t i = 0; i < 4; i++) {
        rlx_tensor_view v, ref;
        cr_assert_eq(rlx_weights_at(w, i, &v), RLX_OK);
        cr_expect_str_eq(v.name, k_names[i]);
        cr_assert_eq(rlx_weights_get(i < 2 ? one : two, v.name, &ref), RLX_OK);
        cr_expect(memcmp(v.data, ref.data, 24) == 0, "%s differs", v.name);
        cr_expect(strstr(v.file, i < 2 ? SH1 : SH2) != NULL, "%s came from %s", v.name, v.file);
    }
    rlx_weights_destroy(one);
    rlx_weights_destroy(two);
    rlx_weights_destroy(w);
    free(dir);
}

Test(weights, model_safetensors_wins_over_index) {
    /* transformers looks for model.safetensors first; a stale broken index must not matter. */
    rlx_weights *src = make_set(5, k_names, 1);
    cr_assert_eq(rlx_weights_set_config_json(src, "{}"), RLX_OK);
    char *dir = sub_path("both", NULL);
    cr_assert_eq(rlx_weights_save_dir(src, dir), RLX_OK);
    write_text("both", "model.safetensors.index.json", "not json");
    rlx_weights *w;
    cr_assert_eq(rlx_weights_open(dir, &w), RLX_OK, "%s", rlx_last_error());
    cr_expect_eq(rlx_weights_count(w), 1);
    rlx_weights_destroy(w);
    rlx_weights_destroy(src);
    free(dir);
}

Test(weights, index_missing_shard) {
    save_shard("ms", SH1, 1, k_names, 2);
    write_text("ms", "config.json", k_config);
    write_text("ms", "model.safetensors.index.json", k_index);
    expect_open_fail("ms", RLX_ERR_IO, "model.safetensors.index.json", SH2, "No such file", NULL);
}

Test(weights, index_names_tensor_absent_from_shard) {
    make_sharded("abs");
    write_text("abs", "model.safetensors.index.json",
               "{'weight_map':{'model.embed_tokens.weight':'" SH1 "',"
               "'model.layers.0.mlp.up_proj.weight':'" SH1 "',"
               "'model.layers.1.mlp.up_proj.weight':'" SH2 "','model.norm.weight':'" SH2 "',"
               "'lm_head.weight':'" SH2 "'}}");
    expect_open_fail("abs", RLX_ERR_FORMAT, "lm_head.weight", SH2, "does not hold it", NULL);
}

Test(weights, shard_holds_tensor_missing_from_index) {
    make_sharded("extra");
    write_text("extra", "model.safetensors.index.json",
               "{'weight_map':{'model.embed_tokens.weight':'" SH1 "',"
               "'model.layers.1.mlp.up_proj.weight':'" SH2 "','model.norm.weight':'" SH2 "'}}");
    expect_open_fail("extra", RLX_ERR_FORMAT, SH1, "model.layers.0.mlp.up_proj.weight",
                     "does not list", NULL);
}

Test(weights, index_maps_tensor_to_the_wrong_shard) {
    make_sharded("wrong");
    write_text("wrong", "model.safetensors.index.json",
               "{'weight_map':{'model.embed_tokens.weight':'" SH2 "',"
               "'model.layers.0.mlp.up_proj.weight':'" SH1 "',"
               "'model.layers.1.mlp.up_proj.weight':'" SH2 "','model.norm.weight':'" SH2 "'}}");
    expect_open_fail("wrong", RLX_ERR_FORMAT, "model.embed_tokens.weight", "maps it to shard", NULL);
}

Test(weights, duplicate_tensor_across_shards) {
    /* norm.weight in both shards; whichever shard the index names, the other holds an extra. */
    const char *const a[] = {"model.embed_tokens.weight", "model.norm.weight"};
    const char *const b[] = {"model.layers.0.mlp.up_proj.weight", "model.norm.weight"};
    save_shard("dup", SH1, 1, a, 2);
    save_shard("dup", SH2, 2, b, 2);
    write_text("dup", "config.json", k_config);
    write_text("dup", "model.safetensors.index.json",
               "{'weight_map':{'model.embed_tokens.weight':'" SH1 "',"
               "'model.layers.0.mlp.up_proj.weight':'" SH2 "','model.norm.weight':'" SH1 "'}}");
    expect_open_fail("dup", RLX_ERR_FORMAT, "model.norm.weight", SH2, NULL);
}

Test(weights, shard_path_escapes_directory) {
    make_sharded("esc");
    const char *bad[] = {"../x.safetensors", "/etc/passwd", "sub/" SH1, "..", ".", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char idx[512];
        snprintf(idx, sizeof idx, "{'weight_map':{'model.norm.weight':'%s'}}", bad[i]);
        write_text("esc", "model.safetensors.index.json", idx);
        char needle[64];
        snprintf(needle, sizeof needle, "'%s' is not a file name", bad[i]);
        expect_open_fail("esc", RLX_ERR_FORMAT, "weight_map['model.norm.weight']", needle, NULL);
    }
}

Test(weights, index_not_json_or_wrong_shape) {
    make_sharded("bad");
    write_text("bad", "model.safetensors.index.json", "{'weight_map': {");
    expect_open_fail("bad", RLX_ERR_FORMAT, "model.safetensors.index.json", "not valid JSON", "line 1", NULL);
    write_text("bad", "model.safetensors.index.json", "{'metadata':{}}");
    expect_open_fail("bad", RLX_ERR_FORMAT, "missing key 'weight_map'", NULL);
    write_text("bad", "model.safetensors.index.json", "{'weight_map':[]}");
    expect_open_fail("bad", RLX_ERR_FORMAT, "'weight_map' is an array", NULL);
    write_text("bad", "model.safetensors.index.json", "{'weight_map':{}}");
    expect_open_fail("bad", RLX_ERR_FORMAT, "'weight_map' is empty", NULL);
    write_text("bad", "model.safetensors.index.json", "{'weight_map':{'model.norm.weight':2}}");
    expect_open_fail("bad", RLX_ERR_FORMAT, "weight_map['model.norm.weight'] is an integer", NULL);
}

Test(weights, invalid_shard_is_reported_with_its_path) {
    make_sharded("inv");
    write_text("inv", "model.safetensors.index.json", k_index);
    write_text("inv", SH2, "garbage");
    expect_open_fail("inv", RLX_ERR_FORMAT, SH2, "shorter than the 8-byte header length", NULL);
}

Test(weights, missing_config_json) {
    save_shard("nocfg", "model.safetensors", 1, k_names, 1);
    expect_open_fail("nocfg", RLX_ERR_IO, "config.json", "No such file", NULL);
}

Test(weights, config_json_not_json) {
    save_shard("badcfg", "model.safetensors", 1, k_names, 1);
    write_text("badcfg", "config.json", "{'hidden_size': 8,}");
    expect_open_fail("badcfg", RLX_ERR_FORMAT, "config.json", "not valid JSON", NULL);
    write_text("badcfg", "config.json", "[1]");
    expect_open_fail("badcfg", RLX_ERR_FORMAT, "config.json", "top level is an array", NULL);
}

Test(weights, no_weights_in_directory) {
    write_text("empty", "config.json", k_config);
    expect_open_fail("empty", RLX_ERR_IO, "no model.safetensors or model.safetensors.index.json", NULL);
}

Test(weights, not_a_directory) {
    expect_open_fail("does-not-exist", RLX_ERR_IO, "does-not-exist", "No such file", NULL);
    write_text("f", "plain", "x");
    expect_open_fail("f/plain", RLX_ERR_IO, "not a directory", NULL);
}

// ---- lookups ---------------------------------------------------------------------------------

Test(weights, missing_tensor_lookup_names_key_and_directory) {
    rlx_weights *src = make_set(9, k_names, 4);
    cr_assert_eq(rlx_weights_set_config_json(src, k_config), RLX_OK);
    char *dir = sub_path("look", NULL);
    cr_assert_eq(rlx_weights_save_dir(src, dir), RLX_OK);
    rlx_weights *w;
    cr_assert_eq(rlx_weights_open(dir, &w), RLX_OK, "%s", rlx_last_error());
    rlx_tensor_view v = {0};
    rlx_status s = rlx_weights_get(w, "model.layers.0.up_proj.weight", &v);
    cr_expect_eq(s, RLX_ERR_MISSING_WEIGHT);
    const char *msg = rlx_last_error();
    cr_expect(strstr(msg, "'model.layers.0.up_proj.weight'") != NULL, "%s", msg);
    cr_expect(strstr(msg, dir) != NULL, "%s", msg);
    /* The missing ".mlp" is the classic mistake: point at the real name. */
    cr_expect(strstr(msg, "closest: 'model.layers.0.mlp.up_proj.weight'") != NULL, "%s", msg);
    s = rlx_weights_get(w, "lm_head.weight", &v);
    cr_expect_eq(s, RLX_ERR_MISSING_WEIGHT);
    cr_expect(strstr(rlx_last_error(), "closest") == NULL, "no silly suggestion: %s", rlx_last_error());
    /* has() answers without touching the error message. */
    rlx_clear_error();
    cr_expect_eq(rlx_weights_has(w, "lm_head.weight", &v), 0);
    cr_expect_str_eq(rlx_last_error(), "");
    cr_expect_eq(rlx_weights_has(w, "model.norm.weight", &v), 1);
    cr_expect_str_eq(v.name, "model.norm.weight");
    rlx_weights_destroy(w);
    rlx_weights_destroy(src);
    free(dir);
}

// ---- in-memory sets --------------------------------------------------------------------------

Test(weights, in_memory_add_get_duplicate) {
    rlx_weights *w;
    cr_assert_eq(rlx_weights_create(&w), RLX_OK);
    cr_expect_null(rlx_weights_dir(w));
    cr_expect_null(rlx_weights_config_json(w));
    float data[6] = {1, 2, 3, 4, 5, 6};
    int64_t shape[2] = {3, 2};
    cr_assert_eq(rlx_weights_add(w, "b", RLX_DTYPE_F32, 2, shape, data), RLX_OK);
    data[0] = 100; /* add copies: later changes to the caller's buffer do not show */
    cr_assert_eq(rlx_weights_add(w, "a", RLX_DTYPE_F32, 2, shape, data), RLX_OK);
    cr_assert_eq(rlx_weights_add(w, "c", RLX_DTYPE_F32, 1, shape, data), RLX_OK);
    cr_expect_eq(rlx_weights_count(w), 3);
    rlx_tensor_view v;
    cr_assert_eq(rlx_weights_get(w, "b", &v), RLX_OK);
    cr_expect_eq(((const float *)v.data)[0], 1.0f);
    cr_expect_str_eq(v.file, "<memory>");
    cr_expect_eq(v.nbytes, 24);
    cr_assert_eq(rlx_weights_get(w, "c", &v), RLX_OK);
    cr_expect_eq(v.nbytes, 12);
    const char *order[] = {"a", "b", "c"};
    for (size_t i = 0; i < 3; i++) {
        cr_assert_eq(rlx_weights_at(w, i, &v), RLX_OK);
        cr_expect_str_eq(v.name, order[i]);
    }

    rlx_status s = rlx_weights_add(w, "b", RLX_DTYPE_F32, 2, shape, data);
    cr_expect_eq(s, RLX_ERR_INVALID_ARGUMENT);
    cr_expect(strstr(rlx_last_error(), "'b' already exists") != NULL, "%s", rlx_last_error());
    cr_expect_eq(rlx_weights_count(w), 3, "a refused add changes nothing");

    /* types rlx only holds are kept, as a file's would be */
    s = rlx_weights_add(w, "i", RLX_DTYPE_I64, 1, shape, data);
    cr_expect_eq(s, RLX_OK, "%s", rlx_last_error());
    cr_assert_eq(rlx_weights_get(w, "i", &v), RLX_OK);
    cr_expect_eq(v.dtype, RLX_DTYPE_I64);
    cr_expect_eq(v.nbytes, 24);
    s = rlx_weights_add(w, "d", (rlx_dtype)77, 2, shape, data);
    cr_expect_eq(s, RLX_ERR_UNSUPPORTED);
    cr_expect(strstr(rlx_last_error(), "tensor 'd'") && strstr(rlx_last_error(), "77"), "%s", rlx_last_error());
    s = rlx_weights_add(w, "d", (rlx_dtype)-1, 2, shape, data);
    cr_expect_eq(s, RLX_ERR_UNSUPPORTED);
    int64_t neg[2] = {3, -2};
    s = rlx_weights_add(w, "n", RLX_DTYPE_F32, 2, neg, data);
    cr_expect_eq(s, RLX_ERR_SHAPE);
    cr_expect(strstr(rlx_last_error(), "shape[1] = -2") != NULL, "%s", rlx_last_error());
    int64_t big[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    cr_expect_eq(rlx_weights_add(w, "nine", RLX_DTYPE_F32, 9, big, data), RLX_ERR_SHAPE);
    cr_expect_eq(rlx_weights_add(w, "neg", RLX_DTYPE_F32, -1, big, data), RLX_ERR_SHAPE);
    int64_t huge[3] = {INT64_MAX, INT64_MAX, 2};
    s = rlx_weights_add(w, "huge", RLX_DTYPE_BF16, 3, huge, data);
    cr_expect_eq(s, RLX_ERR_SHAPE);
    cr_expect(strstr(rlx_last_error(), "overflows") != NULL, "%s", rlx_last_error());
    cr_expect_eq(rlx_weights_add(w, "nodata", RLX_DTYPE_F32, 2, shape, NULL), RLX_ERR_INVALID_ARGUMENT);
    cr_expect_eq(rlx_weights_add(w, "", RLX_DTYPE_F32, 2, shape, data), RLX_ERR_INVALID_ARGUMENT);
    cr_expect_eq(rlx_weights_add(w, "__metadata__", RLX_DTYPE_F32, 2, shape, data), RLX_ERR_INVALID_ARGUMENT);
    cr_expect_eq(rlx_weights_count(w), 4);

    s = rlx_weights_get(w, "zz", &v);
    cr_expect_eq(s, RLX_ERR_MISSING_WEIGHT);
    cr_expect(strstr(rlx_last_error(), "'zz'") && strstr(rlx_last_error(), "in-memory"), "%s", rlx_last_error());
    rlx_weights_destroy(w);
    rlx_weights_destroy(NULL);
}

Test(weights, many_adds_stay_sorted) {
    rlx_weights *w;
    cr_assert_eq(rlx_weights_create(&w), RLX_OK);
    rlxt_rng r = {77};
    int64_t shape[1] = {1};
    size_t added = 0;
    for (int i = 0; i < 500; i++) {
        char name[32];
        snprintf(name, sizeof name, "t.%llu", (unsigned long long)(rlxt_next(&r) % 100000));
        float x = (float)i;
        rlx_status s = rlx_weights_add(w, name, RLX_DTYPE_F32, 1, shape, &x);
        cr_assert(s == RLX_OK || s == RLX_ERR_INVALID_ARGUMENT);
        added += s == RLX_OK;
    }
    cr_assert_eq(rlx_weights_count(w), added);
    rlx_tensor_view prev, cur;
    cr_assert_eq(rlx_weights_at(w, 0, &prev), RLX_OK);
    for (size_t i = 1; i < added; i++) {
        cr_assert_eq(rlx_weights_at(w, i, &cur), RLX_OK);
        cr_assert(strcmp(prev.name, cur.name) < 0, "%s !< %s", prev.name, cur.name);
        cr_assert(rlx_weights_has(w, cur.name, NULL));
        prev = cur;
    }
    rlx_weights_destroy(w);
}

Test(weights, save_dir_without_config_and_into_existing_dir) {
    rlx_weights *w = make_set(3, k_names, 2);
    char *dir = sub_path("nocfg-save", NULL);
    cr_assert_eq(rlx_weights_save_dir(w, dir), RLX_OK, "%s", rlx_last_error());
    cr_assert_eq(rlx_weights_save_dir(w, dir), RLX_OK, "an existing directory is fine");
    char *cfg = sub_path("nocfg-save", "config.json");
    struct stat st;
    cr_expect_neq(stat(cfg, &st), 0, "no config.json written for a set without one");
    /* ...so opening it as a model directory names the missing config. */
    rlx_weights *r;
    cr_expect_eq(rlx_weights_open(dir, &r), RLX_ERR_IO);
    char *file = sub_path("nocfg-save", "model.safetensors");
    cr_assert_eq(rlx_weights_open_file(file, &r), RLX_OK, "%s", rlx_last_error());
    cr_expect_eq(rlx_weights_count(r), 2);
    cr_expect_null(rlx_weights_dir(r));
    cr_expect_null(rlx_weights_config_json(r));
    rlx_weights_destroy(r);
    /* Clearing and replacing the config text. */
    cr_assert_eq(rlx_weights_set_config_json(w, "{\"a\": 1}"), RLX_OK);
    cr_assert_eq(rlx_weights_set_config_json(w, NULL), RLX_OK);
    cr_expect_null(rlx_weights_config_json(w));
    free(file);
    free(cfg);
    free(dir);
    rlx_weights_destroy(w);
}

Test(weights, add_to_an_opened_file_set) {
    rlx_weights *w = make_set(4, k_names, 2);
    char *dir = sub_path("addto", NULL);
    cr_assert_eq(rlx_weights_set_config_json(w, k_config), RLX_OK);
    cr_assert_eq(rlx_weights_save_dir(w, dir), RLX_OK);
    rlx_weights *r;
    cr_assert_eq(rlx_weights_open(dir, &r), RLX_OK, "%s", rlx_last_error());
    float x[2] = {1, 2};
    int64_t shape[1] = {2};
    cr_expect_eq(rlx_weights_add(r, k_names[0], RLX_DTYPE_F32, 1, shape, x), RLX_ERR_INVALID_ARGUMENT,
                 "a file tensor is a duplicate too");
    cr_assert_eq(rlx_weights_add(r, "aaa.first", RLX_DTYPE_F32, 1, shape, x), RLX_OK);
    rlx_tensor_view v;
    cr_assert_eq(rlx_weights_at(r, 0, &v), RLX_OK);
    cr_expect_str_eq(v.name, "aaa.first");
    cr_assert_eq(rlx_weights_get(r, k_names[1], &v), RLX_OK, "file views survive the table growing");
    rlx_tensor_view ref;
    cr_assert_eq(rlx_weights_get(w, k_names[1], &ref), RLX_OK);
    cr_expect(memcmp(v.data, ref.data, ref.nbytes) == 0);
    rlx_weights_destroy(r);
    rlx_weights_destroy(w);
    free(dir);
}

/* ---- the mmap contract ------------------------------------------------------------------------ */

#include "rlx/flow.h"
#include <math.h>
#include <unistd.h>

/* A one-layer LLaMA saved as g_dir/<sub>; returns its config. */
static rlx_llama_config save_tiny(const char *sub) {
    rlx_llama_config c = {.vocab_size = 64, .hidden_size = 32, .intermediate_size = 48, .num_hidden_layers = 1,
                          .num_attention_heads = 4, .num_key_value_heads = 2, .head_dim = 8, .rms_norm_eps = 1e-5,
                          .max_position_embeddings = 64, .tie_word_embeddings = 1,
                          .rope = {.head_dim = 8, .max_positions = 64, .theta = 10000}};
    rlx_weights *w;
    cr_assert_eq(rlx_llama_random_weights(&c, 5, RLX_DTYPE_BF16, &w), RLX_OK, "%s", rlx_last_error());
    char *dir = sub_path(sub, NULL);
    cr_assert_eq(rlx_weights_save_dir(w, dir), RLX_OK, "%s", rlx_last_error());
    free(dir);
    rlx_weights_destroy(w);
    return c;
}

/* Builds the tiny model from w and runs one prefill: its status, and the logits in out[64]. */
static rlx_status build_and_run(const rlx_llama_config *c, const rlx_weights *w, float *out) {
    rlx_llama_recipe_params rp = rlx_llama_recipe_default_params();
    rp.seq = 4;
    rlx_flow *f;
    cr_assert_eq(rlx_llama_flow(c, &rp, &f), RLX_OK, "%s", rlx_last_error());
    rlx_model *m = NULL;
    rlx_status s = rlx_model_build(f, w, NULL, &m);
    rlx_session *ss = NULL;
    const int32_t tok[3] = {1, 2, 3};
    if (!s) s = rlx_session_create(m, &ss);
    if (!s) s = rlx_session_prefill(ss, tok, 3, NULL, 1, NULL);
    if (!s) s = rlx_session_output_to_host(ss, out, 64);
    rlx_session_destroy(ss);
    rlx_model_destroy(m);
    rlx_flow_destroy(f);
    return s;
}

/* The probe's case: model.safetensors truncated between rlx_weights_open and rlx_model_build.
 * Before the check this was SIGBUS inside the conversion; now every reader of the mapping
 * refuses first, naming the file and both sizes. */
Test(weights, truncated_between_open_and_build_is_an_error) {
    rlx_llama_config c = save_tiny("t");
    char *dir = sub_path("t", NULL), *file = sub_path("t", "model.safetensors");
    rlx_weights *w;
    cr_assert_eq(rlx_weights_open(dir, &w), RLX_OK, "%s", rlx_last_error());
    struct stat st;
    cr_assert_eq(stat(file, &st), 0);
    cr_assert_eq(truncate(file, st.st_size / 3), 0);
    float out[64];
    cr_expect_eq(build_and_run(&c, w, out), RLX_ERR_IO);
    cr_expect(strstr(rlx_last_error(), "model.safetensors: the file shrank from"), "%s", rlx_last_error());
    cr_expect(strstr(rlx_last_error(), "read_into_memory"), "%s", rlx_last_error());
    char *copy = sub_path("copy.safetensors", NULL);
    cr_expect_eq(rlx_weights_save_file(w, copy), RLX_ERR_IO);
    cr_expect(strstr(rlx_last_error(), "shrank"), "%s", rlx_last_error());
    cr_expect_eq(rlx_weights_check_finite(w), RLX_ERR_IO);
    rlx_weights_destroy(w);
    free(copy);
    free(dir);
    free(file);
}

/* read_into_memory: the set no longer depends on the file at all. */
Test(weights, read_into_memory_survives_the_file) {
    rlx_llama_config c = save_tiny("m");
    char *dir = sub_path("m", NULL), *file = sub_path("m", "model.safetensors");
    rlx_weights *mapped, *copied;
    cr_assert_eq(rlx_weights_open(dir, &mapped), RLX_OK, "%s", rlx_last_error());
    float ref[64], got[64];
    cr_assert_eq(build_and_run(&c, mapped, ref), RLX_OK, "%s", rlx_last_error());
    rlx_weights_destroy(mapped);
    rlx_weights_open_params p = rlx_weights_open_default_params();
    cr_expect_eq(p.read_into_memory, 0);
    cr_expect_eq(p.check_finite, 0);
    p.read_into_memory = 1;
    cr_assert_eq(rlx_weights_open_ex(dir, &p, &copied), RLX_OK, "%s", rlx_last_error());
    cr_assert_eq(truncate(file, 0), 0);
    cr_assert_eq(unlink(file), 0);
    cr_expect_eq(build_and_run(&c, copied, got), RLX_OK, "%s", rlx_last_error());
    cr_expect(!memcmp(ref, got, sizeof ref), "the copy computes something else than the mapping did");
    rlx_weights_destroy(copied);
    /* a file path works as rlx_weights_open_file; bad flags are refused */
    rlx_weights *one;
    char *f2 = sub_path("one.safetensors", NULL);
    rlx_weights *mem = make_set(3, (const char *const[]){"a", "b"}, 2);
    cr_assert_eq(rlx_weights_save_file(mem, f2), RLX_OK, "%s", rlx_last_error());
    rlx_weights_destroy(mem);
    cr_expect_eq(rlx_weights_open_ex(f2, &p, &one), RLX_OK, "%s", rlx_last_error());
    cr_expect_eq(rlx_weights_count(one), 2);
    rlx_weights_destroy(one);
    p.read_into_memory = 2;
    one = (rlx_weights *)1;
    cr_expect_eq(rlx_weights_open_ex(f2, &p, &one), RLX_ERR_INVALID_ARGUMENT);
    cr_expect_null(one);
    cr_expect_eq(rlx_weights_open_ex(f2, NULL, &one), RLX_OK, "%s", rlx_last_error());
    rlx_weights_destroy(one);
    free(f2);
    free(dir);
    free(file);
}

/* The optional weight check names the first non-finite tensor (name order), its file, the count
 * and the first element; each float dtype's NaN and infinity patterns are recognised. */
Test(weights, check_finite_names_the_first_nonfinite_tensor) {
    rlx_weights *w;
    cr_assert_eq(rlx_weights_create(&w), RLX_OK);
    const float ok[4] = {1, -2, 3e38f, -0.0f};
    const float bad[4] = {1, INFINITY, NAN, -INFINITY};
    const int64_t shape[1] = {4};
    cr_assert_eq(rlx_weights_add(w, "a.fine", RLX_DTYPE_F32, 1, shape, ok), RLX_OK);
    cr_expect_eq(rlx_weights_check_finite(w), RLX_OK, "%s", rlx_last_error());
    cr_assert_eq(rlx_weights_add(w, "z.bad", RLX_DTYPE_F32, 1, shape, bad), RLX_OK);
    const uint16_t bf[3] = {0x3f80, 0x3f80, 0xff80}; /* 1, 1, -inf */
    const int64_t s3[1] = {3};
    cr_assert_eq(rlx_weights_add(w, "m.bf16", RLX_DTYPE_BF16, 1, s3, bf), RLX_OK);
    cr_expect_eq(rlx_weights_check_finite(w), RLX_ERR_FORMAT);
    cr_expect(strstr(rlx_last_error(), "tensor 'm.bf16' (BF16) holds 1 non-finite value of 3; the first is element 2 (infinity)"), "%s",
              rlx_last_error());
    /* saved, then opened with the check: the open fails, naming the file */
    char *dir = sub_path("nan", NULL);
    cr_assert_eq(rlx_weights_set_config_json(w, "{}"), RLX_OK);
    cr_assert_eq(rlx_weights_save_dir(w, dir), RLX_OK, "%s", rlx_last_error());
    rlx_weights_destroy(w);
    rlx_weights_open_params p = rlx_weights_open_default_params();
    p.check_finite = 1;
    w = (rlx_weights *)1;
    cr_expect_eq(rlx_weights_open_ex(dir, &p, &w), RLX_ERR_FORMAT);
    cr_expect_null(w);
    cr_expect(strstr(rlx_last_error(), "nan/model.safetensors: tensor 'm.bf16'"), "%s", rlx_last_error());
    /* without the check it opens (the check is optional) */
    cr_expect_eq(rlx_weights_open(dir, &w), RLX_OK, "%s", rlx_last_error());
    rlx_weights_destroy(w);
    /* f16: a NaN, and the F32 tensor's first bad element */
    cr_assert_eq(rlx_weights_create(&w), RLX_OK);
    const uint16_t h[2] = {0x3c00, 0x7e00};
    const int64_t s2[1] = {2};
    cr_assert_eq(rlx_weights_add(w, "h", RLX_DTYPE_F16, 1, s2, h), RLX_OK);
    cr_expect_eq(rlx_weights_check_finite(w), RLX_ERR_FORMAT);
    cr_expect(strstr(rlx_last_error(), "tensor 'h' (F16) holds 1 non-finite value of 2; the first is element 1 (NaN)"), "%s",
              rlx_last_error());
    rlx_weights_destroy(w);
    cr_assert_eq(rlx_weights_create(&w), RLX_OK);
    cr_assert_eq(rlx_weights_add(w, "f", RLX_DTYPE_F32, 1, shape, bad), RLX_OK);
    cr_expect_eq(rlx_weights_check_finite(w), RLX_ERR_FORMAT);
    cr_expect(strstr(rlx_last_error(), "tensor 'f' (F32) holds 3 non-finite values of 4; the first is element 1 (infinity)"), "%s",
              rlx_last_error());
    rlx_weights_destroy(w);
    cr_expect_eq(rlx_weights_check_finite(NULL), RLX_ERR_INVALID_ARGUMENT);
    free(dir);
}
