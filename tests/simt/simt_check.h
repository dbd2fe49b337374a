// Test data and references shared by the simt Criterion suites and the GPU test (header-only
// C++). Nothing here depends on simt or on a GPU.
#ifndef RLX_SIMT_CHECK_H
#define RLX_SIMT_CHECK_H

#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace simt_check {

// splitmix64: deterministic data for a printed seed.
struct Rng {
    uint64_t s;
    uint64_t next() {
        uint64_t z = (s += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    }
    float uniform() { return (float)((next() >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f; }
};

inline std::vector<__nv_bfloat16> random_bf16(Rng &r, size_t n) {
    std::vector<__nv_bfloat16> v(n);
    for (auto &x : v) x = __float2bfloat16(r.uniform());
    return v;
}
inline std::vector<float> to_float(const std::vector<__nv_bfloat16> &v) {
    std::vector<float> f(v.size());
    for (size_t i = 0; i < v.size(); ++i) f[i] = __bfloat162float(v[i]);
    return f;
}
// Returns the transpose of a rows x cols row-major matrix.
template <typename T> std::vector<T> transpose(const std::vector<T> &a, int rows, int cols) {
    std::vector<T> t(a.size());
    for (int r = 0; r < rows; ++r)
        for (int c = 0; c < cols; ++c) t[(size_t)c * rows + r] = a[(size_t)r * cols + c];
    return t;
}

// Compares C[M][N] with A[M][K] B[K][N] computed in double. The bf16 products are exact in f32 and
// the sums run in f32, so the bound scales with sum |a||b|: a layout mistake is off by O(1).
// Returns "" or a message naming the first bad element.
inline std::string check_matmul(const float *C, const std::vector<float> &A,
                                const std::vector<float> &B, int M, int N, int K) {
    for (int m = 0; m < M; ++m)
        for (int n = 0; n < N; ++n) {
            double ref = 0.0, mag = 0.0;
            for (int k = 0; k < K; ++k) {
                ref += (double)A[(size_t)m * K + k] * B[(size_t)k * N + n];
                mag += std::fabs((double)A[(size_t)m * K + k] * B[(size_t)k * N + n]);
            }
            const double got = C[(size_t)m * N + n], bound = 1e-5 * mag + 1e-30;
            if (!(std::fabs(got - ref) <= bound)) {
                char buf[256];
                snprintf(buf, sizeof buf,
                         "C[%d][%d] = %.9g, reference %.9g (|diff| %.3g > bound %.3g), M=%d N=%d K=%d",
                         m, n, got, ref, std::fabs(got - ref), bound, M, N, K);
                return buf;
            }
        }
    return "";
}

// ldmatrix from the PTX ISA description: src holds 4 matrices of 8x8 b16, matrix j at 64 j, rows
// of 8. Register j of lane l holds row l/4, columns 2(l%4), 2(l%4)+1 of matrix j (transposed:
// column l/4, rows 2(l%4), 2(l%4)+1), low half first; registers j >= num stay 0.
inline uint32_t ldmatrix_expected(const uint16_t *src, int num, int trans, int lane, int j) {
    if (j >= num) return 0;
    const int q = lane / 4, t = lane % 4;
    auto at = [&](int r, int c) { return (uint32_t)src[64 * j + 8 * r + c]; };
    const uint32_t lo = trans ? at(2 * t, q) : at(q, 2 * t);
    const uint32_t hi = trans ? at(2 * t + 1, q) : at(q, 2 * t + 1);
    return lo | hi << 16;
}

} // namespace simt_check

#endif
