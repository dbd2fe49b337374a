/* model.safetensors.index.json through rlx_weights_open: a model directory with two fixed shards
 * (made once) and the input as its index. An accepted index gives every tensor of the shards
 * it names, each from its own shard. */
#include "rlx/weights.h"
#include "fuzz_util.h"

static const char *model_dir(void) {
    static char dir[600];
    if (dir[0]) return dir;
    snprintf(dir, sizeof dir, "%s", fuzz_tmpdir());
    char path[700];
    snprintf(path, sizeof path, "%s/config.json", dir);
    fuzz_write(path, "{}", 2);
    /* shard 1: a, b; shard 2: c (names the seed corpus uses) */
    const float av[2] = {1, 2}, bv[1] = {3}, cv[3] = {4, 5, 6};
    const int64_t s2[1] = {2}, s1[1] = {1}, s3[1] = {3};
    rlx_weights *w;
    FUZZ_CHECK(rlx_weights_create(&w) == RLX_OK);
    FUZZ_CHECK(rlx_weights_add(w, "a", RLX_DTYPE_F32, 1, s2, av) == RLX_OK);
    FUZZ_CHECK(rlx_weights_add(w, "b", RLX_DTYPE_F32, 1, s1, bv) == RLX_OK);
    snprintf(path, sizeof path, "%s/model-00001-of-00002.safetensors", dir);
    FUZZ_CHECK(rlx_weights_save_file(w, path) == RLX_OK);
    rlx_weights_destroy(w);
    FUZZ_CHECK(rlx_weights_create(&w) == RLX_OK);
    FUZZ_CHECK(rlx_weights_add(w, "c", RLX_DTYPE_F32, 1, s3, cv) == RLX_OK);
    snprintf(path, sizeof path, "%s/model-00002-of-00002.safetensors", dir);
    FUZZ_CHECK(rlx_weights_save_file(w, path) == RLX_OK);
    rlx_weights_destroy(w);
    return dir;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *dir = model_dir();
    char path[700];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    fuzz_write(path, data, size);
    rlx_weights *w = NULL;
    rlx_clear_error();
    rlx_status s = rlx_weights_open(dir, &w);
    FUZZ_FAILED_WITH_MESSAGE(s);
    if (s != RLX_OK) {
        FUZZ_CHECK(w == NULL);
        return 0;
    }
    /* Only the shards the index names are opened (as transformers does), each whole. */
    rlx_tensor_view v;
    const int one = rlx_weights_has(w, "a", NULL), two = rlx_weights_has(w, "c", NULL);
    FUZZ_CHECK(one || two);
    FUZZ_CHECK(rlx_weights_count(w) == (size_t)(2 * one + two));
    if (one) {
        FUZZ_CHECK(rlx_weights_get(w, "a", &v) == RLX_OK && strstr(v.file, "00001") && ((const float *)v.data)[1] == 2);
        FUZZ_CHECK(rlx_weights_get(w, "b", &v) == RLX_OK && strstr(v.file, "00001"));
    }
    if (two) FUZZ_CHECK(rlx_weights_get(w, "c", &v) == RLX_OK && strstr(v.file, "00002") && ((const float *)v.data)[2] == 6);
    FUZZ_CHECK(rlx_weights_config_json(w) != NULL);
    rlx_weights_destroy(w);
    return 0;
}
