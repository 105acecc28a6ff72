#pragma once
/// @file sgemm_driver.hpp
/// Cache-blocked, packed single-precision GEMM around a register-blocked micro-kernel
/// (sgemm_avx512.hpp, sgemm_avx2.hpp, sgemm_neon.hpp), on one thread.
///
///   C [M, N] (=/+=) op(A) [M, K] * op(B) [K, N]
///   op(A) = A [M, K] (row stride lda), or A^T with A stored [K, M] when trans_a
///   op(B) = B [K, N] (row stride ldb), or B^T with B stored [N, K] when trans_b
///
/// Loop nest (Goto/BLIS order): columns in blocks of NC, depth in blocks of KC (op(B)'s block is
/// packed into NR-wide panels that stay in L2/L3), rows in blocks of MC (op(A)'s block is packed
/// into MR-tall panels that stay in L2), then the micro-kernel walks NR-column panels (the B
/// panel, KC x NR, stays in L1 while the MR-row panels of A stream past it). Panels are
/// zero-padded to full tiles; tiles that stick out of C go through a small scratch tile.
/// The first depth block writes C (unless accumulating), the later ones add to it.
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "bnn/core/threads.hpp"

namespace bnn::kernels {

// Block sizes are cache budgets for a core with 48 KiB of L1d, 1 MiB of L2 and a shared L3 of a
// few MiB or more: other values change speed, not results. Public so that tests can choose
// products that cross the blocks.

/// Largest depth of a packed block (K is cut into equal blocks no deeper): a 320 x 32 B panel
/// is 40 KiB, within the 48 KiB L1d.
inline constexpr int64_t kSgemmKC = 320;
/// Rows of a packed A block: 392 x 320 floats = 490 KiB, half the 1 MiB L2 (rounded down to MR).
inline constexpr int64_t kSgemmMC = 392;
/// Columns of a packed B block: 320 x 3072 floats = 3.75 MiB, in the shared L3.
inline constexpr int64_t kSgemmNC = 3072;

}  // namespace bnn::kernels

namespace bnn::kernels::detail {

/// The depth of sgemm's blocks for a product of depth K > 0: equal blocks, K = 576 going as
/// 2 x 288 rather than 256 + 256 + 64 (short blocks pay the C load/store and packing for little
/// work). Each block's sum starts from zero and is then added to C, so the blocks fix the floats.
inline int64_t sgemm_depth_block(int64_t K) {
    const int64_t blocks = (K + kSgemmKC - 1) / kSgemmKC;
    return (K + blocks - 1) / blocks;
}

/// Floats between consecutive packed panels of depth kc and width R: one cache line more than
/// the panel, so panels of power-of-two size do not all map to the same L1 set (packing writes
/// to several panels at once).
inline int64_t sgemm_panel_stride(int64_t kc, int R) { return kc * R + 16; }

/// dst[k * stride + r] = src[r][k] for r < lanes, k < kc; a null src[r] reads as zeros.
inline void sgemm_pack_transposed_scalar(const float* const* src, int64_t kc, float* dst, int64_t stride, int lanes) {
    for (int r = 0; r < lanes; ++r) {
        if (src[r])
            for (int64_t k = 0; k < kc; ++k) dst[k * stride + r] = src[r][k];
        else
            for (int64_t k = 0; k < kc; ++k) dst[k * stride + r] = 0.f;
    }
}

/// dst[0 .. len) = src[0 .. len) (zeros when src is null), dst[len .. width) = 0.
inline void sgemm_copy_row_scalar(float* dst, const float* src, int64_t len, int64_t width) {
    int64_t j = 0;
    if (src)
        for (; j < len; ++j) dst[j] = src[j];
    for (; j < width; ++j) dst[j] = 0.f;
}

/// Tags of the per-thread packed panels (bnn::thread_scratch): they cost no allocation (and no
/// page faults) after the first product.
struct SgemmPackedA;
struct SgemmPackedB;

/// The operands of a product, as packers. An operand source is any type with
///   template <class Tile> void pack_a(int64_t i0, int64_t mc, int64_t p0, int64_t kc, float* Ap) const;
///     Ap [ceil(mc/MR)][kc][MR] <- op(A)[i0 .. i0+mc, p0 .. p0+kc], rows past mc zero
///   template <class Tile> void pack_b(int64_t p0, int64_t kc, int64_t j0, int64_t nc, float* Bp) const;
///     Bp [ceil(nc/NR)][kc][NR] <- op(B)[p0 .. p0+kc, j0 .. j0+nc], columns past nc zero
/// with consecutive panels sgemm_panel_stride(kc, MR or NR) floats apart. A source of its own
/// lets the convolution pack receptive fields straight from the image (no im2col buffer);
/// SgemmMatrices is the source for two plain row-major matrices.
struct SgemmMatrices {
    bool trans_a, trans_b;
    const float* A;
    int64_t lda;
    const float* B;
    int64_t ldb;

    template <class Tile>
    void pack_a(int64_t i0, int64_t mc, int64_t p0, int64_t kc, float* __restrict Ap) const {
        constexpr int MR = Tile::MR;
        for (int64_t r = 0; r < mc; r += MR) {
            const int rows = static_cast<int>(std::min<int64_t>(MR, mc - r));
            float* __restrict dst = Ap + r / MR * sgemm_panel_stride(kc, MR);
            if (trans_a) {
                // A stored [K, M]: each k holds the panel's MR values contiguously.
                const float* src = A + p0 * lda + i0 + r;
                for (int64_t k = 0; k < kc; ++k, src += lda) Tile::copy_row(dst + k * MR, src, rows, MR);
            } else {
                // A stored [M, K]: a transpose, 16 rows at a time.
                const float* src[MR];
                for (int i = 0; i < MR; ++i) src[i] = i < rows ? A + (i0 + r + i) * lda + p0 : nullptr;
                for (int g = 0; g < MR; g += 16) Tile::pack_transposed(src + g, kc, dst + g, MR, std::min(16, MR - g));
            }
        }
    }

    template <class Tile>
    void pack_b(int64_t p0, int64_t kc, int64_t j0, int64_t nc, float* __restrict Bp) const {
        constexpr int NR = Tile::NR;
        for (int64_t c = 0; c < nc; c += NR) {
            const int cols = static_cast<int>(std::min<int64_t>(NR, nc - c));
            float* __restrict dst = Bp + c / NR * sgemm_panel_stride(kc, NR);
            if (!trans_b) {
                // B stored [K, N]: each k holds the panel's NR values contiguously.
                const float* src = B + p0 * ldb + j0 + c;
                for (int64_t k = 0; k < kc; ++k, src += ldb) {
                    float* d = dst + k * NR;
                    if (cols == NR) std::memcpy(d, src, sizeof(float) * NR);
                    else Tile::copy_row(d, src, cols, NR);
                }
            } else {
                // B stored [N, K]: a transpose, 16 columns at a time.
                const float* src[NR];
                for (int j = 0; j < NR; ++j) src[j] = j < cols ? B + (j0 + c + j) * ldb + p0 : nullptr;
                for (int g = 0; g < NR; g += 16) Tile::pack_transposed(src + g, kc, dst + g, NR, std::min(16, NR - g));
            }
        }
    }
};

/// C[m0 .. m1, n0 .. n1] (=/+=) op(A) op(B) on the calling thread with micro-kernel Tile (MR, NR,
/// tile(), pack_transposed()), the operands packed by `src` (see SgemmMatrices). C points at
/// element (0, 0) of the whole product, row stride ldc.
template <class Tile, class Source>
void sgemm_blocked(const Source& src, int64_t m0, int64_t m1, int64_t n0, int64_t n1, int64_t K, float* C,
                   int64_t ldc, bool accumulate) {
    constexpr int MR = Tile::MR, NR = Tile::NR;
    const int64_t M = m1 - m0, N = n1 - n0;
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {  // an empty sum: C = 0, or C unchanged
        if (!accumulate)
            for (int64_t i = m0; i < m1; ++i) std::fill(C + i * ldc + n0, C + i * ldc + n1, 0.f);
        return;
    }
    const int64_t MC = kSgemmMC / MR * MR;
    const int64_t NC = kSgemmNC / NR * NR;
    const int64_t KC = sgemm_depth_block(K);
    const int64_t kc_max = std::min(K, KC);
    float* Bp = thread_scratch<SgemmPackedB>(sgemm_panel_stride(kc_max, NR) * ((std::min(N, NC) + NR - 1) / NR));
    float* Ap = thread_scratch<SgemmPackedA>(sgemm_panel_stride(kc_max, MR) * ((std::min(M, MC) + MR - 1) / MR));
    alignas(64) float edge[MR * NR];

    for (int64_t j0 = n0; j0 < n1; j0 += NC) {
        const int64_t nc = std::min(NC, n1 - j0);
        for (int64_t p0 = 0; p0 < K; p0 += KC) {
            const int64_t kc = std::min(KC, K - p0);
            const bool add = accumulate || p0 > 0;
            src.template pack_b<Tile>(p0, kc, j0, nc, Bp);
            for (int64_t i0 = m0; i0 < m1; i0 += MC) {
                const int64_t mc = std::min(MC, m1 - i0);
                src.template pack_a<Tile>(i0, mc, p0, kc, Ap);
                for (int64_t jr = 0; jr < nc; jr += NR) {
                    const int64_t nr = std::min<int64_t>(NR, nc - jr);
                    const float* bp = Bp + jr / NR * sgemm_panel_stride(kc, NR);
                    for (int64_t ir = 0; ir < mc; ir += MR) {
                        const int64_t mr = std::min<int64_t>(MR, mc - ir);
                        const float* ap = Ap + ir / MR * sgemm_panel_stride(kc, MR);
                        float* c = C + (i0 + ir) * ldc + j0 + jr;
                        if (mr == MR && nr == NR) {
                            Tile::tile(kc, ap, bp, c, ldc, add);
                        } else {
                            Tile::tile(kc, ap, bp, edge, NR, false);
                            for (int64_t i = 0; i < mr; ++i)
                                for (int64_t j = 0; j < nr; ++j)
                                    c[i * ldc + j] = add ? c[i * ldc + j] + edge[i * NR + j] : edge[i * NR + j];
                        }
                    }
                }
            }
        }
    }
}

}  // namespace bnn::kernels::detail
