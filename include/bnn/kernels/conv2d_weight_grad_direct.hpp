#pragma once
/// @file conv2d_weight_grad_direct.hpp
/// The weight gradient of the float convolution (conv2d.hpp) on AVX2 or AVX-512 without packing
/// either operand:
///
///   x    [N, H, W, C]        dout [N, OH, OW, Cout]
///   dw   [Cout, KH, KW, C]   dw[co, k] += sum over output pixels p of dout[p, co] * x(p, k)
///
/// where k = (kh, kw, c) and x(p, k) is the input under tap (kh, kw) of pixel p (zero in the
/// padding). Each image is copied once into a zero-padded [H+2p, W+2p, C] buffer (unpadded
/// images are read in place), where x(p, k) of every pixel of an output row lies at a fixed
/// offset koff[k] from the pixel's origin and consecutive pixels are stride * C floats apart: a
/// tile of 6 values of k by 16 output channels (AVX2; 64 on AVX-512) broadcasts its 6 inputs in
/// place and loads dout's row of 16 (64), for any stride and kernel. Narrow layers on AVX-512
/// (Cout < 64, which would pad a 64-column tile) turn the tile round: 48 values of k, three
/// vectors of 16 channels loaded in place, by 8 output channels of dout broadcast.
/// The implicit GEMM instead packs the receptive fields of every pixel (144 floats per pixel of
/// a 16-channel 3x3 layer) for 16 multiply-adds each.
///
/// The sums run over chunks of about 64 output pixels (whole output rows, from one or several
/// images): a tile's accumulators are loaded from and stored back to a per-thread dw^T [K, Cout]
/// once per chunk, and the chunk's inputs and dout rows stay in L1 while every tile passes over
/// them. Threads take whole images; their dw^T are added into dw at the end.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "bnn/core/threads.hpp"
#include "bnn/kernels/conv2d_geometry.hpp"
#include "bnn/kernels/intrinsics.hpp"
#include "bnn/kernels/isa.hpp"

namespace bnn::kernels::detail {

/// True when AVX-512 takes the narrow tile (WeightGradTileAvx512Narrow): fewer than 64 output
/// channels, and input channels in whole vectors of 16.
inline bool weight_grad_narrow(const Conv2dGeometry& g) { return g.Cout < 64 && g.C % 16 == 0; }

/// True when conv2d_weight_grad_direct() applies: the AVX2 path, or AVX-512 with Cout of whole
/// 64-column tiles or a narrow layer (weight_grad_narrow), a spatial kernel or a stride (a 1x1
/// stride-1 convolution's columns are x itself), at least one image per thread, and the shapes
/// where it beats the implicit GEMM (docs/performance.md): receptive fields of at most 576
/// floats (64 channels of 3x3), whose dw^T stays in L2, and rows of at least 8 outputs.
inline bool weight_grad_direct_applies(Isa isa, const Conv2dGeometry& g, int threads) {
    const bool tile_fits = avx2_is_widest(isa) || (has_avx512(isa) && (g.Cout % 64 == 0 || weight_grad_narrow(g)));
    return tile_fits && !g.pointwise() && g.N >= threads && g.K() <= 576 && g.OW >= 8;
}

}  // namespace bnn::kernels::detail

#if BNN_X86
namespace bnn::kernels::detail {

/// A run of consecutive output pixels of one output row: where the first pixel's receptive
/// field starts in the padded image copy, and its row of the chunk's dout copy.
struct WeightGradRun {
    const float* x;
    const float* dout;
    int64_t count;
};

/// dwT[i][0 .. 16) += sum over the runs' pixels p of x(p, k_i) * dout_p[j0 .. j0 + 16), i < 6,
/// where x(p, k_i) = run.x[p * step + koff[i]] and dout_p = run.dout + p * ldd. Row i of dwT
/// is dwT + i * ld.
__attribute__((target("avx2,fma"))) inline void conv2d_weight_grad_tile_avx2_6x16(
    const WeightGradRun* runs, int64_t run_count, const int64_t* koff, int64_t step, int64_t j0, int64_t ldd,
    float* __restrict dwT, int64_t ld) {
    constexpr int MR = 6;
    __m256 acc[MR][2];
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
        acc[i][0] = _mm256_loadu_ps(dwT + i * ld);
        acc[i][1] = _mm256_loadu_ps(dwT + i * ld + 8);
    }
    for (int64_t r = 0; r < run_count; ++r) {
        const float* x[MR];
#pragma GCC unroll 8
        for (int i = 0; i < MR; ++i) x[i] = runs[r].x + koff[i];
        const float* d = runs[r].dout + j0;
        for (int64_t p = 0, off = 0; p < runs[r].count; ++p, off += step, d += ldd) {
            const __m256 b0 = _mm256_loadu_ps(d), b1 = _mm256_loadu_ps(d + 8);
#pragma GCC unroll 8
            for (int i = 0; i < MR; ++i) {
                const __m256 a = _mm256_broadcast_ss(x[i] + off);
                acc[i][0] = _mm256_fmadd_ps(a, b0, acc[i][0]);
                acc[i][1] = _mm256_fmadd_ps(a, b1, acc[i][1]);
            }
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
        _mm256_storeu_ps(dwT + i * ld, acc[i][0]);
        _mm256_storeu_ps(dwT + i * ld + 8, acc[i][1]);
    }
}

/// The same sums on AVX-512, one operand loaded in vectors of 16 and the other broadcast:
/// acc[b][v] += broadcast value b * vector v, stored at sums + b * ld + 16 v.
///  - 6x64 (broadcast_inputs): 6 values of k broadcast by 64 output channels (four vectors of
///    dout per pixel for 24 FMAs): dwT[i][0 .. 64) += sum over p of x(p, k_i) * dout_p[j0 .. j0 + 64).
///  - 48x8 (narrow layers, the other way round): 3 vectors of 16 consecutive values of k (16
///    channels of one tap, so C is a multiple of 16) by 8 output channels of dout broadcast:
///    dw[j0 + j][k_v .. k_v + 16) += sum over p of dout_p[j0 + j] * x(p, k_v ..), k_v = 16 v,
///    x(p, k_v ..) = run.x[p * step + koff[16 v] ..]. These sums are in dw's own layout.
template <int NB, int NV, bool broadcast_inputs>
__attribute__((target("avx512f,fma"))) inline void conv2d_weight_grad_tile_avx512(
    const WeightGradRun* runs, int64_t run_count, const int64_t* koff, int64_t step, int64_t j0, int64_t ldd,
    float* __restrict sums, int64_t ld) {
    constexpr int NX = broadcast_inputs ? NB : NV;  // input pointers: one per value or vector of k
    __m512 acc[NB][NV];
#pragma GCC unroll 8
    for (int i = 0; i < NB; ++i)
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_loadu_ps(sums + i * ld + 16 * v);
    for (int64_t r = 0; r < run_count; ++r) {
        const float* x[NX];
#pragma GCC unroll 8
        for (int i = 0; i < NX; ++i) x[i] = runs[r].x + koff[broadcast_inputs ? i : 16 * i];
        const float* d = runs[r].dout + j0;
        for (int64_t p = 0, off = 0; p < runs[r].count; ++p, off += step, d += ldd) {
            __m512 b[NV];
#pragma GCC unroll 4
            for (int v = 0; v < NV; ++v) b[v] = _mm512_loadu_ps(broadcast_inputs ? d + 16 * v : x[v] + off);
#pragma GCC unroll 8
            for (int i = 0; i < NB; ++i) {
                const __m512 a = _mm512_set1_ps(broadcast_inputs ? x[i][off] : d[i]);
#pragma GCC unroll 4
                for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(a, b[v], acc[i][v]);
            }
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < NB; ++i)
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) _mm512_storeu_ps(sums + i * ld + 16 * v, acc[i][v]);
}

/// The direct weight gradient's tiles: MR values of k by NR output channels, their sums in dw^T's
/// layout [K, Cout] or (sums_as_dw) in dw's [Cout, K].
struct WeightGradTileAvx2 {
    static constexpr int MR = 6, NR = 16;
    static constexpr bool sums_as_dw = false;
    static constexpr auto run = conv2d_weight_grad_tile_avx2_6x16;
};
struct WeightGradTileAvx512 {
    static constexpr int MR = 6, NR = 64;
    static constexpr bool sums_as_dw = false;
    static constexpr auto run = conv2d_weight_grad_tile_avx512<6, 4, true>;
};
struct WeightGradTileAvx512Narrow {
    static constexpr int MR = 48, NR = 8;
    static constexpr bool sums_as_dw = true;
    static constexpr auto run = conv2d_weight_grad_tile_avx512<8, 3, false>;
};

/// Tags of conv2d_weight_grad_direct's per-thread buffers (bnn::thread_scratch).
struct WeightGradOffsets {};
struct WeightGradImages {};
struct WeightGradDout {};
struct WeightGradSums {};
struct WeightGradRuns {};

/// dw [Cout, KH, KW, C] += the weight gradient of x [N, H, W, C] and dout [N, OH, OW, Cout] (see
/// the file comment), on up to `threads` threads. Each thread's sums go to its own dw^T and are
/// added into dw in thread order, so the result does not depend on scheduling.
template <class Tile>
void conv2d_weight_grad_direct(const float* x, const float* dout, float* dw, const Conv2dGeometry& g, int threads) {
    constexpr int MR = Tile::MR, NR = Tile::NR;
    constexpr int64_t kChunkPixels = 64;
    const int64_t K = g.K(), C = g.C, Co = g.Cout;
    const int64_t k_rows = (K + MR - 1) / MR * MR, co_pad = (Co + NR - 1) / NR * NR;
    const int64_t Hp = g.H + 2 * g.pad, Wp = g.W + 2 * g.pad, image_floats = Hp * Wp * C;
    // Small images go several to a group; the group's output rows go a few at a time.
    const int64_t images_per_group = std::clamp<int64_t>(kChunkPixels / (g.OH * g.OW), 1, g.N);
    const int64_t rows_per_chunk = std::max<int64_t>(1, kChunkPixels / g.OW);
    const int64_t groups = (g.N + images_per_group - 1) / images_per_group;
    // koff[k]: where input k = (kh, kw, c) lies from a pixel's receptive-field origin. Rows of the
    // last tile past K repeat k = 0; their sums land in dw^T rows that are never read.
    int64_t* koff = thread_scratch<WeightGradOffsets, int64_t>(k_rows);
    for (int64_t k = 0; k < k_rows; ++k) {
        const int64_t kk = k < K ? k : 0, tap = kk / C, c = kk % C;
        koff[k] = ((tap / g.KW) * Wp + tap % g.KW) * C + c;
    }
    // Where the sum of (k, co) lies in a thread's sums, and the distance between the tile's rows.
    const int64_t sums_ld = Tile::sums_as_dw ? k_rows : co_pad;
    auto sum_index = [&](int64_t k, int64_t co) { return Tile::sums_as_dw ? co * k_rows + k : k * co_pad + co; };
    threads = static_cast<int>(std::clamp<int64_t>(groups, 1, threads));
    std::vector<const float*> partial(threads, nullptr);
    parallel_ranges(groups, threads, [&](int t, int64_t begin, int64_t end) {
        float* sums = thread_scratch<WeightGradSums>(k_rows * co_pad);
        std::fill(sums, sums + k_rows * co_pad, 0.f);
        partial[t] = sums;
        // Unpadded images serve in place (a strided 1x1 convolution reads a fraction of each).
        const bool copy = g.pad > 0;
        float* xp = thread_scratch<WeightGradImages>(copy ? images_per_group * image_floats : 0);
        if (copy) std::fill(xp, xp + images_per_group * image_floats, 0.f);  // the copies only write interiors
        float* dpad = thread_scratch<WeightGradDout>(co_pad > Co ? rows_per_chunk * g.OW * co_pad : 0);
        if (co_pad > Co) std::fill(dpad, dpad + rows_per_chunk * g.OW * co_pad, 0.f);  // padding columns
        WeightGradRun* runs = thread_scratch<WeightGradRuns, WeightGradRun>(rows_per_chunk);
        for (int64_t grp = begin; grp < end; ++grp) {
            const int64_t n0 = grp * images_per_group, count = std::min(images_per_group, g.N - n0);
            const float* images = copy ? xp : x + n0 * image_floats;
            if (copy)
                for (int64_t i = 0; i < count; ++i)
                    for (int64_t ih = 0; ih < g.H; ++ih)
                        std::memcpy(xp + i * image_floats + ((ih + g.pad) * Wp + g.pad) * C,
                                    x + (((n0 + i) * g.H + ih) * g.W) * C, sizeof(float) * g.W * C);
            // The group's output rows, numbered across its images, a chunk at a time.
            const int64_t rows = count * g.OH;
            for (int64_t r0 = 0; r0 < rows; r0 += rows_per_chunk) {
                const int64_t chunk = std::min(rows_per_chunk, rows - r0);
                for (int64_t r = 0; r < chunk; ++r) {
                    const int64_t img = (r0 + r) / g.OH, oh = (r0 + r) % g.OH;
                    // dout's rows serve in place when Cout fills whole tiles; otherwise a copy
                    // with zero columns up to the tile width.
                    const float* row = dout + ((n0 + img) * g.OH + oh) * g.OW * Co;
                    if (co_pad > Co) {
                        float* dst = dpad + r * g.OW * co_pad;
                        for (int64_t ow = 0; ow < g.OW; ++ow)
                            std::memcpy(dst + ow * co_pad, row + ow * Co, sizeof(float) * Co);
                        row = dst;
                    }
                    runs[r] = {images + img * image_floats + oh * g.stride * Wp * C, row, g.OW};
                }
                for (int64_t k0 = 0; k0 < k_rows; k0 += MR)
                    for (int64_t j0 = 0; j0 < co_pad; j0 += NR)
                        Tile::run(runs, chunk, koff + k0, g.stride * C, j0, co_pad, sums + sum_index(k0, j0), sums_ld);
            }
        }
    });
    for (const float* sums : partial) {
        if (!sums) continue;
        for (int64_t co = 0; co < Co; ++co)
            for (int64_t k = 0; k < K; ++k) dw[co * K + k] += sums[sum_index(k, co)];
    }
}

}  // namespace bnn::kernels::detail
#endif  // BNN_X86
