#pragma once
/// @file sgemm.hpp
/// Single-precision GEMM with packed panels and register-blocked micro-kernels (AVX-512 / AVX2
/// chosen at run time from CPUID, NEON on aarch64: isa.hpp), plus a double-precision reference
/// for tests.
///
///   C [M, N] (=/+=) op(A) [M, K] * op(B) [K, N]          all row-major
///   op(A) = A stored [M, K] (row stride lda), or A^T of A stored [K, M] when trans_a
///   op(B) = B stored [K, N] (row stride ldb), or B^T of B stored [N, K] when trans_b
///
/// Called outside an OpenMP parallel region, sgemm() splits C into one contiguous block of rows
/// (or columns, when C is wide) per thread; called inside one, it runs on the calling thread,
/// which is what the convolution's per-image parallel loops want.
///
/// Every path with micro-kernels sums each element of C alike, whatever M, N, the tile it falls
/// in and the thread split: K cut into sgemm_depth_block's blocks, each block's sum from zero by
/// fused multiply-adds in k order, the first block's sum written (or added, when accumulating)
/// and each later one added. So a row's floats do not depend on the other rows (a batch), and the
/// paths give the same floats as each other.
#include <algorithm>
#include <cstdint>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "bnn/core/threads.hpp"
#include "bnn/kernels/isa.hpp"
#include "bnn/kernels/sgemm_avx2.hpp"
#include "bnn/kernels/sgemm_avx512.hpp"
#include "bnn/kernels/sgemm_driver.hpp"
#include "bnn/kernels/sgemm_neon.hpp"

namespace bnn::kernels {

/// True when the path runs sgemm on packed micro-kernels (x86's AVX2 and AVX-512, NEON); the
/// others (scalar) run the portable loop.
inline bool has_packed_sgemm(Isa isa) { return has_avx2(isa) || has_neon(isa); }

/// C [M, N] (=/+=) op(A) op(B), summed in double in the plain i-j-k order: the reference the
/// fast paths are tested against.
inline void sgemm_reference(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A,
                            int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc, bool accumulate) {
    for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j) {
            double s = 0;
            for (int64_t k = 0; k < K; ++k)
                s += double(trans_a ? A[k * lda + i] : A[i * lda + k]) * double(trans_b ? B[j * ldb + k] : B[k * ldb + j]);
            C[i * ldc + j] = accumulate ? static_cast<float>(C[i * ldc + j] + s) : static_cast<float>(s);
        }
}

namespace detail {

/// Portable path: float accumulation in i-k-j order (the j loop vectorises at -O2).
inline void sgemm_portable(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
                           const float* B, int64_t ldb, float* C, int64_t ldc, bool accumulate) {
    for (int64_t i = 0; i < M; ++i) {
        float* __restrict c = C + i * ldc;
        if (!accumulate) std::fill(c, c + N, 0.f);
        for (int64_t k = 0; k < K; ++k) {
            const float a = trans_a ? A[k * lda + i] : A[i * lda + k];
            if (!trans_b) {
                const float* __restrict b = B + k * ldb;
#pragma omp simd
                for (int64_t j = 0; j < N; ++j) c[j] += a * b[j];
            } else {
                for (int64_t j = 0; j < N; ++j) c[j] += a * B[j * ldb + k];
            }
        }
    }
}



#if BNN_X86
/// Padded work (tile area times tiles) of covering M x N with MR x NR tiles.
inline double sgemm_tiled_area(int64_t M, int64_t N, int MR, int NR) {
    return double((M + MR - 1) / MR * MR) * double((N + NR - 1) / NR * NR);
}

/// The AVX-512 tiles: 14 x 32 (wide), 28 x 16 (narrow), 8 x 48 (short).
enum class SgemmAvx512Tile { wide, narrow, shrt };

/// The AVX-512 tile of an M x N product: the one that wastes least on the whole product (so
/// every thread's part uses the same shape). The wide tile has the best FMA-to-load ratio; the
/// others only win by padding less.
inline SgemmAvx512Tile sgemm_avx512_tile(int64_t M, int64_t N) {
    const double wide = sgemm_tiled_area(M, N, SgemmAvx512Wide::MR, SgemmAvx512Wide::NR);
    const double narrow = 1.1 * sgemm_tiled_area(M, N, SgemmAvx512Narrow::MR, SgemmAvx512Narrow::NR);
    const double shrt = 1.05 * sgemm_tiled_area(M, N, SgemmAvx512Short::MR, SgemmAvx512Short::NR);
    if (narrow < wide && narrow <= shrt) return SgemmAvx512Tile::narrow;
    if (shrt < wide) return SgemmAvx512Tile::shrt;
    return SgemmAvx512Tile::wide;
}

#endif  // BNN_X86

#if BNN_X86 || defined(__aarch64__)
/// C[m0 .. m1, n0 .. n1] of the M x N product packed by `src` (see SgemmMatrices), on the calling
/// thread with the given vector path (AVX-512 with the tile of sgemm_avx512_tile; NEON's one tile).
template <class Source>
void sgemm_serial(Isa isa, const Source& src, int64_t M, int64_t N, int64_t m0, int64_t m1, int64_t n0, int64_t n1,
                  int64_t K, float* C, int64_t ldc, bool accumulate) {
#if BNN_X86
    if (has_avx512(isa)) {
        switch (sgemm_avx512_tile(M, N)) {
            case SgemmAvx512Tile::narrow:
                return sgemm_blocked<SgemmAvx512Narrow>(src, m0, m1, n0, n1, K, C, ldc, accumulate);
            case SgemmAvx512Tile::shrt:
                return sgemm_blocked<SgemmAvx512Short>(src, m0, m1, n0, n1, K, C, ldc, accumulate);
            case SgemmAvx512Tile::wide:
                return sgemm_blocked<SgemmAvx512Wide>(src, m0, m1, n0, n1, K, C, ldc, accumulate);
        }
    } else {
        sgemm_blocked<SgemmAvx2>(src, m0, m1, n0, n1, K, C, ldc, accumulate);
    }
#else
    (void)isa, (void)M, (void)N;  // neon: one tile for every shape
    sgemm_blocked<SgemmNeon>(src, m0, m1, n0, n1, K, C, ldc, accumulate);
#endif
}

/// The M x N product packed by `src` with a path of has_packed_sgemm(). Outside a parallel
/// region, products of at least ~4 MFLOP are split over the OpenMP threads, one contiguous
/// block of rows (or of columns, when C is wide) per thread, in whole tiles.
template <class Source>
void sgemm_run(Isa isa, const Source& src, int64_t M, int64_t N, int64_t K, float* C, int64_t ldc, bool accumulate) {
    int threads = !in_parallel_pass() && 2.0 * double(M) * double(N) * double(K) >= 4e6 ? num_threads() : 1;
    const bool by_rows = M >= N;
    // Cut at multiples of the tiles (AVX-512's MR 14, 28, 8 and NR 32, 16, 48; NEON's NR 8) so only
    // the last thread's share can end in a partial tile; NEON's MR 12 does not divide 56, so a
    // split by rows may leave one partial tile more.
    const int64_t extent = by_rows ? M : N, grain = by_rows ? 56 : 96;
    threads = static_cast<int>(std::min<int64_t>(threads, (extent + grain - 1) / grain));
    if (threads <= 1) {
        sgemm_serial(isa, src, M, N, 0, M, 0, N, K, C, ldc, accumulate);
        return;
    }
    const int64_t chunk = ((extent + threads - 1) / threads + grain - 1) / grain * grain;
    parallel_ranges(threads, threads, [&](int t, int64_t, int64_t) {
        const int64_t b = std::min(extent, t * chunk), e = std::min(extent, b + chunk);
        if (b >= e) return;
        if (by_rows) sgemm_serial(isa, src, M, N, b, e, 0, N, K, C, ldc, accumulate);
        else sgemm_serial(isa, src, M, N, 0, M, b, e, K, C, ldc, accumulate);
    });
}
#endif  // BNN_X86 || __aarch64__

}  // namespace detail

/// C [M, N] (=/+=) op(A) op(B) with the given path (see the file comment for the layouts).
/// Outside a parallel region, products of at least ~4 MFLOP are split over the OpenMP threads.
/// Paths without packed tiles (scalar) run the portable loop.
inline void sgemm(Isa isa, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
                  const float* B, int64_t ldb, float* C, int64_t ldc, bool accumulate) {
    detail::require_supported(isa, "sgemm");
#if BNN_X86 || defined(__aarch64__)
    if (has_packed_sgemm(isa)) {
        detail::sgemm_run(isa, detail::SgemmMatrices{trans_a, trans_b, A, lda, B, ldb}, M, N, K, C, ldc, accumulate);
        return;
    }
#endif
    detail::sgemm_portable(trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc, accumulate);
}

/// sgemm() with the process's active path (active_isa()).
inline void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
                  const float* B, int64_t ldb, float* C, int64_t ldc, bool accumulate) {
    sgemm(active_isa(), trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc, accumulate);
}

}  // namespace bnn::kernels
