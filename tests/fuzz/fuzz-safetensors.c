/* The safetensors parser on arbitrary bytes (a whole file image). An accepted file must satisfy
 * what the readers rely on: tensors sorted by unique name, each range inside the data section
 * with exactly numel × element-size bytes, dims within RLX_MAX_DIMS and non-negative. */
#include "io/safetensors.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    rlx__st_tensor *t = NULL;
    size_t n = 0, data_start = 0;
    rlx_clear_error();
    rlx_status s = rlx__st_parse("fuzz.safetensors", data, size, &t, &n, &data_start);
    FUZZ_FAILED_WITH_MESSAGE(s);
    if (s != RLX_OK) {
        FUZZ_CHECK(t == NULL || n == 0);
        return 0;
    }
    FUZZ_CHECK(data_start >= 8 && data_start <= size);
    for (size_t i = 0; i < n; i++) {
        const rlx__st_tensor *x = &t[i];
        FUZZ_CHECK(x->name && x->name[0]);
        if (i) FUZZ_CHECK(strcmp(t[i - 1].name, x->name) < 0);
        FUZZ_CHECK(x->ndim >= 0 && x->ndim <= RLX_MAX_DIMS);
        size_t numel = 1;
        for (int d = 0; d < x->ndim; d++) {
            FUZZ_CHECK(x->shape[d] >= 0);
            FUZZ_CHECK(!__builtin_mul_overflow(numel, (size_t)x->shape[d], &numel));
        }
        size_t bytes;
        FUZZ_CHECK(!__builtin_mul_overflow(numel, rlx_dtype_size(x->dtype), &bytes));
        FUZZ_CHECK(x->begin <= x->end && x->end - x->begin == bytes);
        FUZZ_CHECK(x->end <= size - data_start);
    }
    rlx__st_free_tensors(t, n);
    return 0;
}
