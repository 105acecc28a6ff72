#pragma once
/// @file gemm.hpp
/// Row-major float matrix products over raw pointers. On the paths with packed micro-kernels
/// (has_packed_sgemm: AVX2, AVX-512, NEON) they run on bnn's packed GEMM (sgemm.hpp); on the
/// scalar path (BNN_ISA=scalar, set_isa(Isa::scalar)) on Eigen through Eigen::Map, the only
/// place Eigen's GEMM is instantiated.
/// Called outside an OpenMP parallel region, either backend threads the product over
/// num_threads(); called inside one, it runs on the calling thread, which is what the
/// per-image parallel loops of the convolution want.
#include <cstdint>

// Before Eigen, which includes <immintrin.h> itself (see intrinsics.hpp).
#include "bnn/kernels/intrinsics.hpp"

#include <Eigen/Core>

#include "bnn/kernels/sgemm.hpp"

namespace bnn::kernels {

namespace detail {
using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MapMat = Eigen::Map<RowMat, Eigen::Unaligned, Eigen::OuterStride<>>;
using ConstMapMat = Eigen::Map<const RowMat, Eigen::Unaligned, Eigen::OuterStride<>>;
}  // namespace detail

/// Eigen: C = A * B (or C += A * B when accumulate).
/// A [M, K] (row stride lda), B [K, N] (row stride ldb), C [M, N] (row stride ldc).
inline void gemm_nn_eigen(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
                    float* C, int64_t ldc, bool accumulate) {
    detail::ConstMapMat a(A, M, K, Eigen::OuterStride<>(lda));
    detail::ConstMapMat b(B, K, N, Eigen::OuterStride<>(ldb));
    detail::MapMat c(C, M, N, Eigen::OuterStride<>(ldc));
    if (accumulate) c.noalias() += a * b;
    else c.noalias() = a * b;
}

/// Eigen: C = A * B^T (or +=). A [M, K] (lda), B [N, K] (ldb), C [M, N] (ldc).
inline void gemm_nt_eigen(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
                    float* C, int64_t ldc, bool accumulate) {
    detail::ConstMapMat a(A, M, K, Eigen::OuterStride<>(lda));
    detail::ConstMapMat b(B, N, K, Eigen::OuterStride<>(ldb));
    detail::MapMat c(C, M, N, Eigen::OuterStride<>(ldc));
    if (accumulate) c.noalias() += a * b.transpose();
    else c.noalias() = a * b.transpose();
}

/// Eigen: C = A^T * B (or +=). A [K, M] (lda), B [K, N] (ldb), C [M, N] (ldc).
inline void gemm_tn_eigen(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
                    float* C, int64_t ldc, bool accumulate) {
    detail::ConstMapMat a(A, K, M, Eigen::OuterStride<>(lda));
    detail::ConstMapMat b(B, K, N, Eigen::OuterStride<>(ldb));
    detail::MapMat c(C, M, N, Eigen::OuterStride<>(ldc));
    if (accumulate) c.noalias() += a.transpose() * b;
    else c.noalias() = a.transpose() * b;
}

/// C = A * B (or C += A * B when accumulate).
/// A [M, K] (row stride lda), B [K, N] (row stride ldb), C [M, N] (row stride ldc).
inline void gemm_nn(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
                    float* C, int64_t ldc, bool accumulate) {
    const Isa isa = active_isa();
    if (!has_packed_sgemm(isa)) gemm_nn_eigen(M, N, K, A, lda, B, ldb, C, ldc, accumulate);
    else sgemm(isa, false, false, M, N, K, A, lda, B, ldb, C, ldc, accumulate);
}

/// C = A * B^T (or +=). A [M, K] (lda), B [N, K] (ldb), C [M, N] (ldc).
inline void gemm_nt(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
                    float* C, int64_t ldc, bool accumulate) {
    const Isa isa = active_isa();
    if (!has_packed_sgemm(isa)) gemm_nt_eigen(M, N, K, A, lda, B, ldb, C, ldc, accumulate);
    else sgemm(isa, false, true, M, N, K, A, lda, B, ldb, C, ldc, accumulate);
}

/// C = A^T * B (or +=). A [K, M] (lda), B [K, N] (ldb), C [M, N] (ldc).
inline void gemm_tn(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
                    float* C, int64_t ldc, bool accumulate) {
    const Isa isa = active_isa();
    if (!has_packed_sgemm(isa)) gemm_tn_eigen(M, N, K, A, lda, B, ldb, C, ldc, accumulate);
    else sgemm(isa, true, false, M, N, K, A, lda, B, ldb, C, ldc, accumulate);
}

}  // namespace bnn::kernels
