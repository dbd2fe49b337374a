// GPU check of the fragment layouts the simt emulation assumes: the kernels of
// kernels/mma.cu, compiled by nvcc, on a real device against the same references as
// test-simt-mma.cpp. Exits 77 (ctest: skipped) when there is no usable CUDA device.
#include <cuda_runtime.h>

#include "simt_check.h"
#include "simt_test_kernels.h"

#include <cstdio>
#include <cstdlib>
#include <vector>

using namespace simt_check;

static int failures = 0;

#define CHECK_CUDA(call)                                                                           \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

template <typename T> static T *upload(const std::vector<T> &h) {
    T *d = nullptr;
    CHECK_CUDA(cudaMalloc(&d, h.size() * sizeof(T)));
    CHECK_CUDA(cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
    return d;
}
template <typename T> static std::vector<T> download(const T *d, size_t n) {
    std::vector<T> h(n);
    CHECK_CUDA(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
}
static void report(const char *what, const std::string &err) {
    if (err.empty()) {
        printf("ok   %s\n", what);
    } else {
        printf("FAIL %s: %s\n", what, err.c_str());
        failures++;
    }
}

int main() {
    int devices = 0;
    const cudaError_t e = cudaGetDeviceCount(&devices);
    if (e != cudaSuccess || devices == 0) {
        printf("SKIP: no CUDA device (%s): the mma/ldmatrix layouts are checked on the CPU only\n",
               e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
        return 77;
    }
    cudaDeviceProp prop;
    CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
    printf("device: %s (sm_%d%d)\n", prop.name, prop.major, prop.minor);

    Rng r{21};
    const int M = 32, N = 48, K = 64;
    auto A = random_bf16(r, (size_t)M * K), B = random_bf16(r, (size_t)K * N);
    const auto Af = to_float(A), Bf = to_float(B);
    const auto At = transpose(A, M, K), Bt = transpose(B, K, N);
    __nv_bfloat16 *dA = upload(A), *dB = upload(B), *dAt = upload(At), *dBt = upload(Bt);
    float *dC = nullptr;
    CHECK_CUDA(cudaMalloc(&dC, (size_t)M * N * sizeof(float)));

    CHECK_CUDA(simt_mma_direct(dC, dA, dB, M, N, K, nullptr));
    CHECK_CUDA(cudaDeviceSynchronize());
    report("mma fragments from the PTX formulas",
           check_matmul(download(dC, (size_t)M * N).data(), Af, Bf, M, N, K));

    for (int a_kmajor = 0; a_kmajor < 2; ++a_kmajor)
        for (int b_nmajor = 0; b_nmajor < 2; ++b_nmajor)
            for (int variant = 0; variant < 3; ++variant) {
                CHECK_CUDA(cudaMemset(dC, 0xff, (size_t)M * N * sizeof(float)));
                CHECK_CUDA(simt_mma_ldmatrix(dC, a_kmajor ? dAt : dA, b_nmajor ? dBt : dB, M, N, K,
                                             a_kmajor, b_nmajor, variant, nullptr));
                CHECK_CUDA(cudaDeviceSynchronize());
                char what[128];
                snprintf(what, sizeof what, "cp.async+ldmatrix+mma a_kmajor=%d b_nmajor=%d variant=%d",
                         a_kmajor, b_nmajor, variant);
                report(what, check_matmul(download(dC, (size_t)M * N).data(), Af, Bf, M, N, K));
            }

    std::vector<__nv_bfloat16> src(256);
    for (int i = 0; i < 256; ++i) src[i] = __float2bfloat16((float)i);
    __nv_bfloat16 *dsrc = upload(src);
    uint32_t *dout = nullptr;
    CHECK_CUDA(cudaMalloc(&dout, 128 * sizeof(uint32_t)));
    const uint16_t *bits = reinterpret_cast<const uint16_t *>(src.data());
    for (int num : {1, 2, 4})
        for (int trans = 0; trans < 2; ++trans) {
            CHECK_CUDA(simt_ldmatrix_probe(dout, dsrc, num, trans, nullptr));
            CHECK_CUDA(cudaDeviceSynchronize());
            auto out = download(dout, 128);
            std::string err;
            for (int lane = 0; lane < 32 && err.empty(); ++lane)
                for (int j = 0; j < 4 && err.empty(); ++j)
                    if (out[lane * 4 + j] != ldmatrix_expected(bits, num, trans, lane, j)) {
                        char buf[128];
                        snprintf(buf, sizeof buf, "lane %d register %d: 0x%08x, want 0x%08x", lane,
                                 j, out[lane * 4 + j], ldmatrix_expected(bits, num, trans, lane, j));
                        err = buf;
                    }
            char what[64];
            snprintf(what, sizeof what, "ldmatrix .x%d%s", num, trans ? ".trans" : "");
            report(what, err);
        }

    const std::vector<uint32_t> words = {0x11111111u, 2, 3, 4, 0x55555555u, 0x66666666u, 7, 8};
    uint32_t *dwords = upload(words);
    CHECK_CUDA(simt_cp_async_probe(dout, dwords, nullptr));
    CHECK_CUDA(cudaDeviceSynchronize());
    auto cp = download(dout, 4); // cp[0] (read before the wait) is undefined on a GPU
    report("cp.async + zfill", cp[1] == words[0] && cp[2] == words[4] && cp[3] == 0
                                   ? std::string()
                                   : std::string("wrong words after the wait"));

    cudaFree(dA);
    cudaFree(dB);
    cudaFree(dAt);
    cudaFree(dBt);
    cudaFree(dC);
    cudaFree(dsrc);
    cudaFree(dout);
    cudaFree(dwords);
    printf("%s\n", failures ? "FAILED" : "all layouts confirmed on the GPU");
    return failures ? 1 : 0;
}
