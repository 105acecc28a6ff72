#pragma once
/// @file sgemm_few_rows.hpp
/// The product of a few rows with a weight matrix stored transposed, without packing, giving
/// the same floats as sgemm() on its paths with packed micro-kernels (has_packed_sgemm):
///
///   C [M, N] = A [M, K] (row stride lda) * Bt [K, N] (row stride ldb)       M small (a batch)
///
/// sgemm packs all of B on every call, which for a batch of one costs more than the product
/// (a classifier's 512 x 1000 weights are read, transposed and written to multiply one row).
/// Here each output is summed as sgemm's micro-kernels sum it: K cut into the same depth blocks
/// (sgemm_depth_block), each block's sum from zero by fused multiply-adds in k order, the first
/// block's sum written to C and each later one added to it. Columns are split over threads.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "bnn/core/threads.hpp"
#include "bnn/kernels/intrinsics.hpp"
#include "bnn/kernels/isa.hpp"
#include "bnn/kernels/sgemm.hpp"

namespace bnn::kernels {

namespace detail {

/// Columns [j0, j1) of row a's product, one fused multiply-add chain per column (see the file
/// comment). Plain code: the vector version below must give these floats.
inline void sgemm_row_columns_scalar(const float* a, int64_t K, const float* Bt, int64_t ldb, float* c, int64_t j0,
                                     int64_t j1) {
    const int64_t KC = sgemm_depth_block(K);
    for (int64_t j = j0; j < j1; ++j)
        for (int64_t p0 = 0; p0 < K; p0 += KC) {
            float acc = 0.f;
            for (int64_t k = p0; k < std::min(K, p0 + KC); ++k) acc = std::fma(a[k], Bt[k * ldb + j], acc);
            c[j] = p0 == 0 ? acc : c[j] + acc;
        }
}

#if BNN_X86
/// The same on 8-float vectors, 32 columns at a time (the weights stream through once per row).
__attribute__((target("avx2,fma"))) inline void sgemm_row_columns_avx2(const float* a, int64_t K, const float* Bt,
                                                                      int64_t ldb, float* c, int64_t j0, int64_t j1) {
    const int64_t KC = sgemm_depth_block(K);
    int64_t j = j0;
    for (; j + 32 <= j1; j += 32) {
        for (int64_t p0 = 0; p0 < K; p0 += KC) {
            __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
            const int64_t p1 = std::min(K, p0 + KC);
            for (int64_t k = p0; k < p1; ++k) {
                const __m256 x = _mm256_broadcast_ss(a + k);
                const float* b = Bt + k * ldb + j;
                for (int v = 0; v < 4; ++v) acc[v] = _mm256_fmadd_ps(x, _mm256_loadu_ps(b + 8 * v), acc[v]);
            }
            for (int v = 0; v < 4; ++v)
                _mm256_storeu_ps(c + j + 8 * v, p0 == 0 ? acc[v] : _mm256_add_ps(_mm256_loadu_ps(c + j + 8 * v), acc[v]));
        }
    }
    sgemm_row_columns_scalar(a, K, Bt, ldb, c, j, j1);
}
#endif

}  // namespace detail

/// C [M, N] = A [M, K] Bt [K, N] on path `isa`, the same floats as sgemm(isa, ...) of A and B = Bt
/// for isa avx2, avx512 or neon (see the file comment; neon runs the plain code). Outside a parallel region, columns are split
/// over the threads when the product is large enough to pay for it.
inline void sgemm_few_rows(Isa isa, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* Bt,
                           int64_t ldb, float* C, int64_t ldc) {
    detail::require_supported(isa, "sgemm_few_rows");
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        for (int64_t i = 0; i < M; ++i) std::fill(C + i * ldc, C + i * ldc + N, 0.f);
        return;
    }
    auto columns = [&](int64_t j0, int64_t j1) {
        for (int64_t i = 0; i < M; ++i) {
#if BNN_X86
            if (has_avx2(isa)) {
                detail::sgemm_row_columns_avx2(A + i * lda, K, Bt, ldb, C + i * ldc, j0, j1);
                continue;
            }
#endif
            detail::sgemm_row_columns_scalar(A + i * lda, K, Bt, ldb, C + i * ldc, j0, j1);
        }
    };
    const int64_t groups = (N + 31) / 32;  // whole 32-column groups per thread
    const int threads = in_parallel_pass() || !worth_threading(M * N * K / 4)
                            ? 1
                            : static_cast<int>(std::min<int64_t>(num_threads(), groups));
    parallel_ranges(groups, threads, [&](int, int64_t g0, int64_t g1) {
        columns(std::min(N, g0 * 32), std::min(N, g1 * 32));
    });
}

}  // namespace bnn::kernels
