// Child process for test-simt-asan: runs one planted out-of-bounds kernel under simt. In the
// sanitized build ASan must end it with a report; exit 0 means the write went unnoticed.
#include "rlx_simt/runtime.h"
#include "simt_test_kernels.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    const int m = !strcmp(mode, "global") ? 0 : !strcmp(mode, "dynsmem") ? 1 : !strcmp(mode, "stack") ? 2 : -1;
    if (m < 0) {
        fprintf(stderr, "usage: %s global|dynsmem|stack\n", argv[0]);
        return 2;
    }
    const int n = m == 2 ? 4 : 31;
    float *out = static_cast<float *>(malloc(n * sizeof(float))); // exact size: ASan's redzone follows
    cudaError_t e = simt_planted_oob(out, n, m, nullptr);
    printf("launch returned %d (%s); the out-of-bounds write was not caught\n", (int)e,
           rlx_simt_last_error());
    free(out);
    return 0;
}
