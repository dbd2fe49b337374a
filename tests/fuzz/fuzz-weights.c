/* A .safetensors file through the public API: rlx_weights_open_file, every lookup, the same file
 * read into memory (rlx_weights_open_ex) and the finite check on both, then the save round trip —
 * what was read is written with rlx_weights_save_file and read back, and must come back the same
 * (names, dtypes, shapes, bytes). */
#include "rlx/weights.h"
#include "fuzz_util.h"

static void same_sets(const rlx_weights *a, const rlx_weights *b) {
    FUZZ_CHECK(rlx_weights_count(a) == rlx_weights_count(b));
    for (size_t i = 0; i < rlx_weights_count(a); i++) {
        rlx_tensor_view x, y;
        FUZZ_CHECK(rlx_weights_at(a, i, &x) == RLX_OK);
        FUZZ_CHECK(rlx_weights_at(b, i, &y) == RLX_OK);
        FUZZ_CHECK(!strcmp(x.name, y.name));
        FUZZ_CHECK(x.dtype == y.dtype && x.ndim == y.ndim && x.nbytes == y.nbytes);
        FUZZ_CHECK(!memcmp(x.shape, y.shape, sizeof x.shape[0] * (size_t)x.ndim));
        FUZZ_CHECK(x.nbytes == 0 || !memcmp(x.data, y.data, x.nbytes));
        /* views are aligned to the element size (weights.h) */
        FUZZ_CHECK((uintptr_t)y.data % rlx_dtype_size(y.dtype) == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char in[600], out[600];
    snprintf(in, sizeof in, "%s/in.safetensors", fuzz_tmpdir());
    snprintf(out, sizeof out, "%s/out.safetensors", fuzz_tmpdir());
    fuzz_write(in, data, size);
    rlx_weights *w = NULL;
    rlx_clear_error();
    rlx_status s = rlx_weights_open_file(in, &w);
    FUZZ_FAILED_WITH_MESSAGE(s);
    if (s != RLX_OK) {
        FUZZ_CHECK(w == NULL);
        return 0;
    }
    for (size_t i = 0; i < rlx_weights_count(w); i++) {
        rlx_tensor_view v, g;
        FUZZ_CHECK(rlx_weights_at(w, i, &v) == RLX_OK);
        FUZZ_CHECK(rlx_weights_get(w, v.name, &g) == RLX_OK && g.data == v.data);
        FUZZ_CHECK(rlx_weights_has(w, v.name, NULL) == 1);
    }
    /* read into memory, the same file gives the same set; the finite check runs on it */
    rlx_weights_open_params op = rlx_weights_open_default_params();
    op.read_into_memory = 1;
    rlx_weights *m = NULL;
    FUZZ_CHECK(rlx_weights_open_ex(in, &op, &m) == RLX_OK);
    same_sets(w, m);
    rlx_status fs = rlx_weights_check_finite(m);
    FUZZ_CHECK(fs == RLX_OK || (fs == RLX_ERR_FORMAT && strstr(rlx_last_error(), "non-finite")));
    FUZZ_CHECK(rlx_weights_check_finite(w) == fs);
    rlx_weights_destroy(m);
    rlx_status ss = rlx_weights_save_file(w, out);
    FUZZ_CHECK(ss == RLX_OK);
    rlx_weights *r = NULL;
    FUZZ_CHECK(rlx_weights_open_file(out, &r) == RLX_OK);
    same_sets(w, r);
    rlx_weights_destroy(r);
    rlx_weights_destroy(w);
    return 0;
}
