#pragma once
/// @file gemm.hpp
/// Row-major float matrix products over raw pointers, computed by Eigen through Eigen::Map.
/// The only place Eigen's GEMM is instantiated, so other headers stay light to compile.
/// Called outside an OpenMP parallel region, Eigen threads the product over num_threads();
/// called inside one, it runs on the calling thread (Eigen does not nest), which is what the
/// per-image parallel loops of the convolution want.
#include <cstdint>

#include <Eigen/Core>

namespace bnn::kernels {

namespace detail {
using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MapMat = Eigen::Map<RowMat, Eigen::Unaligned, Eigen::OuterStride<>>;
using ConstMapMat = Eigen::Map<const RowMat, Eigen::Unaligned, Eigen::OuterStride<>>;
}  // namespace detail

/// C = A * B (or C += A * B when accumulate).
/// A [M, K] (row stride lda), B [K, N] (row stride ldb), C [M, N] (row stride ldc).
inline void gemm_nn(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
                    float* C, int64_t ldc, bool accumulate) {
    detail::ConstMapMat a(A, M, K, Eigen::OuterStride<>(lda));
    detail::ConstMapMat b(B, K, N, Eigen::OuterStride<>(ldb));
    detail::MapMat c(C, M, N, Eigen::OuterStride<>(ldc));
    if (accumulate) c.noalias() += a * b;
    else c.noalias() = a * b;
}

/// C = A * B^T (or +=). A [M, K] (lda), B [N, K] (ldb), C [M, N] (ldc).
inline void gemm_nt(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
                    float* C, int64_t ldc, bool accumulate) {
    detail::ConstMapMat a(A, M, K, Eigen::OuterStride<>(lda));
    detail::ConstMapMat b(B, N, K, Eigen::OuterStride<>(ldb));
    detail::MapMat c(C, M, N, Eigen::OuterStride<>(ldc));
    if (accumulate) c.noalias() += a * b.transpose();
    else c.noalias() = a * b.transpose();
}

/// C = A^T * B (or +=). A [K, M] (lda), B [K, N] (ldb), C [M, N] (ldc).
inline void gemm_tn(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
                    float* C, int64_t ldc, bool accumulate) {
    detail::ConstMapMat a(A, K, M, Eigen::OuterStride<>(lda));
    detail::ConstMapMat b(B, K, N, Eigen::OuterStride<>(ldb));
    detail::MapMat c(C, M, N, Eigen::OuterStride<>(ldc));
    if (accumulate) c.noalias() += a.transpose() * b;
    else c.noalias() = a.transpose() * b;
}

}  // namespace bnn::kernels
