#pragma once
/// @file binary_conv2d_planned.hpp
/// A binary convolution planned once for a fixed input shape, for inference graphs.
///
/// binary_conv2d_forward rebuilds its padded input copy and border corrections on every call;
/// here they are built once. The producer of the input writes its
/// sign bits straight into the interior of the padded bit buffer (input_pixel()), whose border
/// never changes, so no copy is made at run time and a steady-state run() allocates nothing.
///
///   input bits  [N, H + 2p, W + 2p, ceil(Cin/64)] uint64 (owned; border = -1 bits, zero padding
///               with the exact tap-sum correction of binary_conv2d.hpp, or +1 bits for one-padding)
///   out         [N, OH, OW, Cout] float
///
/// The output transform is fused into the tile epilogue, per output element (q, o) of image n:
///   y = dot * scale[o] + 0          (the same single rounding as fma(dot, scale, 0); scale is the
///                                    conv's whole per-channel weight scale)
///   y = y * gate[n, o]               (when a gate is given: Real-to-Bin's G)
///   y = y > 0 ? y : slope[o] * y     (when slopes are given: PReLU)
///   out = y + residual[q, o]         (when a residual is given; it may alias out)
/// Each step is one IEEE float operation, the same ones the training ops perform one tensor at a
/// time, so the result equals the unfused sequence bit for bit.
///
/// Work split: each thread takes a contiguous share of the output pixels of the whole batch (so a
/// batch of one still feeds every thread), all their channels, in tiles of pixels x output
/// channels; channel block outermost when the weights are large (each block's weights stay in
/// L1), pixel block outermost when all of them fit in L1 (each output and residual row is then
/// touched once).
#include <algorithm>
#include <cstdint>
#include <vector>

#include "bnn/core/error.hpp"
#include "bnn/core/tensor.hpp"
#include "bnn/core/threads.hpp"
#include "bnn/kernels/bitpack.hpp"
#include "bnn/kernels/intrinsics.hpp"
#include "bnn/kernels/isa.hpp"
#include "bnn/kernels/binary_conv2d.hpp"

#if defined(__aarch64__)
#include <xsimd/xsimd.hpp>
#endif

namespace bnn::kernels {

/// The fused output transform of a PlannedBinaryConv (see the file comment). scale is required;
/// the other pointers may be null.
struct BinaryConvEpilogue {
    const float* scale = nullptr;     ///< [Cout]
    const float* gate = nullptr;      ///< [N, Cout]
    const float* slope = nullptr;     ///< [Cout]
    const float* residual = nullptr;  ///< [N, OH, OW, Cout], may equal out
};

namespace detail {

// The epilogues are compiled without floating-point contraction: where FMA is enabled (the vector
// epilogue's target, or a build with -march=native) GCC would otherwise fuse the gate's multiply
// and the residual's add, y * g + r, into one fma: one rounding where the training ops round twice.
#if defined(__GNUC__) && !defined(__clang__)
#define BNN_NO_FP_CONTRACT __attribute__((optimize("fp-contract=off")))
#else
#define BNN_NO_FP_CONTRACT
#endif

/// The operands of one pixel's row in a tile's epilogue, from the tile's first channel c0: the
/// dots, scale, gate (of the pixel's image), slope, residual (may alias the output) and output;
/// absent parts are null.
struct EpilogueRow {
    const float* d;
    const float* a;
    const float* g;
    const float* s;
    const float* r;
    float* o;
};

/// The rows of a tile's pixels first_pixel, first_pixel + 1, ... in order, one per next(); the
/// image index advances at image boundaries without a division per pixel.
class EpilogueRows {
public:
    EpilogueRows(const BinaryConvEpilogue& t, const float* dots, int64_t ld, int64_t first_pixel, int64_t c0,
                 int64_t cout, int64_t pixels_per_image, float* out)
        : t_(t), dots_(dots), out_(out), ld_(ld), q_(first_pixel), c0_(c0), cout_(cout), per_image_(pixels_per_image),
          n_(first_pixel / pixels_per_image), next_image_((n_ + 1) * pixels_per_image) {}

    EpilogueRow next() {
        if (q_ == next_image_) {
            ++n_;
            next_image_ += per_image_;
        }
        const EpilogueRow row{dots_,
                              t_.scale + c0_,
                              t_.gate ? t_.gate + n_ * cout_ + c0_ : nullptr,
                              t_.slope ? t_.slope + c0_ : nullptr,
                              t_.residual ? t_.residual + q_ * cout_ + c0_ : nullptr,
                              out_ + q_ * cout_ + c0_};
        dots_ += ld_;
        ++q_;
        return row;
    }

private:
    const BinaryConvEpilogue& t_;
    const float* dots_;
    float* out_;
    int64_t ld_, q_, c0_, cout_, per_image_, n_, next_image_;
};

/// Epilogue of one tile: dots [pixels, ld] (column j = output channel c0 + j) -> out rows.
template <bool Gate, bool Slope, bool Residual>
BNN_NO_FP_CONTRACT void binary_conv_epilogue(const BinaryConvEpilogue& t, const float* dots, int64_t ld, int64_t first_pixel,
                                             int pixels, int64_t c0, int64_t nc, int64_t cout, int64_t pixels_per_image,
                                             float* out) {
    EpilogueRows rows(t, dots, ld, first_pixel, c0, cout, pixels_per_image, out);
    for (int p = 0; p < pixels; ++p) {
        const EpilogueRow row = rows.next();
        const float* __restrict d = row.d;
        const float* __restrict a = row.a;
        const float* __restrict g = row.g;
        const float* __restrict s = row.s;
#pragma omp simd
        for (int64_t j = 0; j < nc; ++j) {
            float y = d[j] * a[j] + 0.f;
            if constexpr (Gate) y = y * g[j];
            if constexpr (Slope) {
                const float neg = s[j] * y;
                y = y > 0.f ? y : neg;
            }
            if constexpr (Residual) y = y + row.r[j];
            row.o[j] = y;
        }
    }
}

#if BNN_X86
/// binary_conv_epilogue on 8-float vectors, for the AVX2 tiles. The plain loop stays scalar
/// under GCC: a float compare may trap, so PReLU's select is not if-converted. Each lane
/// performs the scalar loop's operations in its order (d * a + 0 is one rounding either way).
/// Intrinsics, not xsimd: xsimd 8.1 offers AVX2 only to code compiled with -mavx2, not inside a
/// target-attribute function (docs/arm.md, "xsimd and the x86 paths").
template <bool Gate, bool Slope, bool Residual>
BNN_NO_FP_CONTRACT __attribute__((target("avx2,fma"))) void binary_conv_epilogue_avx2(
    const BinaryConvEpilogue& t, const float* dots, int64_t ld, int64_t first_pixel, int pixels, int64_t c0, int64_t nc,
    int64_t cout, int64_t pixels_per_image, float* out) {
    const __m256 zero = _mm256_setzero_ps();
    EpilogueRows rows(t, dots, ld, first_pixel, c0, cout, pixels_per_image, out);
    for (int p = 0; p < pixels; ++p) {
        const EpilogueRow row = rows.next();
        for (int64_t j = 0; j + 8 <= nc; j += 8) {
            __m256 y = _mm256_fmadd_ps(_mm256_loadu_ps(row.d + j), _mm256_loadu_ps(row.a + j), zero);
            if constexpr (Gate) y = _mm256_mul_ps(y, _mm256_loadu_ps(row.g + j));
            if constexpr (Slope) {
                const __m256 neg = _mm256_mul_ps(_mm256_loadu_ps(row.s + j), y);
                y = _mm256_blendv_ps(neg, y, _mm256_cmp_ps(y, zero, _CMP_GT_OQ));
            }
            if constexpr (Residual) y = _mm256_add_ps(y, _mm256_loadu_ps(row.r + j));  // read before written
            _mm256_storeu_ps(row.o + j, y);
        }
    }
    // The last nc % 8 columns of every pixel: the plain loop, whose floats the lanes reproduce.
    const int64_t done = nc / 8 * 8;
    if (done < nc)
        binary_conv_epilogue<Gate, Slope, Residual>(t, dots + done, ld, first_pixel, pixels, c0 + done, nc - done, cout,
                                                    pixels_per_image, out);
}

/// The same on 16-float vectors for the AVX-512 tiles, the last columns of a row in a masked
/// vector (the lanes past nc compute on zeros and are not stored). Whole vectors are loaded and
/// stored unmasked: a masked store costs several times a plain one on Zen 5.
template <bool Gate, bool Slope, bool Residual>
BNN_NO_FP_CONTRACT __attribute__((target("avx512f"), always_inline)) inline __m512 binary_conv_epilogue_lanes(
    const EpilogueRow& row, int64_t j, __mmask16 m) {
    const __m512 zero = _mm512_setzero_ps();
    __m512 y = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, row.d + j), _mm512_maskz_loadu_ps(m, row.a + j), zero);
    if constexpr (Gate) y = _mm512_mul_ps(y, _mm512_maskz_loadu_ps(m, row.g + j));
    if constexpr (Slope) {
        const __m512 neg = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, row.s + j), y);
        y = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(y, zero, _CMP_GT_OQ), neg, y);
    }
    if constexpr (Residual) y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(m, row.r + j));  // read before written
    return y;
}

template <bool Gate, bool Slope, bool Residual>
BNN_NO_FP_CONTRACT __attribute__((target("avx512f"))) void binary_conv_epilogue_avx512(
    const BinaryConvEpilogue& t, const float* dots, int64_t ld, int64_t first_pixel, int pixels, int64_t c0, int64_t nc,
    int64_t cout, int64_t pixels_per_image, float* out) {
    EpilogueRows rows(t, dots, ld, first_pixel, c0, cout, pixels_per_image, out);
    const int64_t whole = nc / 16 * 16;
    const __mmask16 last = static_cast<__mmask16>((1u << (nc - whole)) - 1u);
    for (int p = 0; p < pixels; ++p) {
        const EpilogueRow row = rows.next();
        for (int64_t j = 0; j < whole; j += 16)
            _mm512_storeu_ps(row.o + j, binary_conv_epilogue_lanes<Gate, Slope, Residual>(row, j, __mmask16(0xFFFF)));
        if (whole < nc)
            _mm512_mask_storeu_ps(row.o + whole, last,
                                  binary_conv_epilogue_lanes<Gate, Slope, Residual>(row, whole, last));
    }
}
#elif defined(__aarch64__)
/// binary_conv_epilogue on xsimd batches (4 floats of NEON on aarch64), for the NEON tile. xsimd
/// keeps it free of one instruction set's intrinsics; each lane performs the scalar loop's
/// operations in its order, and the last nc % lanes columns take the plain loop.
template <bool Gate, bool Slope, bool Residual, class Arch = xsimd::neon64>
BNN_NO_FP_CONTRACT void binary_conv_epilogue_xsimd(const BinaryConvEpilogue& t, const float* dots, int64_t ld,
                                                   int64_t first_pixel, int pixels, int64_t c0, int64_t nc,
                                                   int64_t cout, int64_t pixels_per_image, float* out) {
    using Floats = xsimd::batch<float, Arch>;
    constexpr int64_t L = Floats::size;
    const Floats zero(0.f);
    EpilogueRows rows(t, dots, ld, first_pixel, c0, cout, pixels_per_image, out);
    for (int p = 0; p < pixels; ++p) {
        const EpilogueRow row = rows.next();
        for (int64_t j = 0; j + L <= nc; j += L) {
            Floats y = Floats::load_unaligned(row.d + j) * Floats::load_unaligned(row.a + j) + zero;
            if constexpr (Gate) y = y * Floats::load_unaligned(row.g + j);
            if constexpr (Slope) y = xsimd::select(y > zero, y, Floats::load_unaligned(row.s + j) * y);
            if constexpr (Residual) y = y + Floats::load_unaligned(row.r + j);  // read before written
            y.store_unaligned(row.o + j);
        }
    }
    const int64_t done = nc / L * L;
    if (done < nc)
        binary_conv_epilogue<Gate, Slope, Residual>(t, dots + done, ld, first_pixel, pixels, c0 + done, nc - done, cout,
                                                    pixels_per_image, out);
}
#endif
#undef BNN_NO_FP_CONTRACT

using BinaryConvEpilogueFn = void (*)(const BinaryConvEpilogue&, const float*, int64_t, int64_t, int, int64_t, int64_t,
                                    int64_t, int64_t, float*);

/// The epilogue with these parts for the tiles of path `isa` (the vector tiles get the vector one).
template <bool Gate, bool Slope, bool Residual>
BinaryConvEpilogueFn epilogue_of(Isa isa) {
#if BNN_X86
    if (has_avx512(isa)) return binary_conv_epilogue_avx512<Gate, Slope, Residual>;
    if (has_avx2(isa)) return binary_conv_epilogue_avx2<Gate, Slope, Residual>;
#elif defined(__aarch64__)
    if (has_neon(isa)) return binary_conv_epilogue_xsimd<Gate, Slope, Residual>;
#endif
    (void)isa;
    return binary_conv_epilogue<Gate, Slope, Residual>;
}

inline BinaryConvEpilogueFn choose_epilogue(Isa isa, bool gate, bool slope, bool residual) {
    const int k = (gate ? 4 : 0) | (slope ? 2 : 0) | (residual ? 1 : 0);
    switch (k) {
        case 0: return epilogue_of<false, false, false>(isa);
        case 1: return epilogue_of<false, false, true>(isa);
        case 2: return epilogue_of<false, true, false>(isa);
        case 3: return epilogue_of<false, true, true>(isa);
        case 4: return epilogue_of<true, false, false>(isa);
        case 5: return epilogue_of<true, false, true>(isa);
        case 6: return epilogue_of<true, true, false>(isa);
        default: return epilogue_of<true, true, true>(isa);
    }
}

}  // namespace detail

/// A binary convolution with a zero-padded input of fixed shape [N, H, W, Cin]; see the file comment.
class PlannedBinaryConv {
public:
    PlannedBinaryConv() = default;
    // Origins and corrections point into this object's buffers: moves keep them, copies would not.
    PlannedBinaryConv(const PlannedBinaryConv&) = delete;
    PlannedBinaryConv& operator=(const PlannedBinaryConv&) = delete;
    PlannedBinaryConv(PlannedBinaryConv&&) = default;
    PlannedBinaryConv& operator=(PlannedBinaryConv&&) = default;

    /// Plans the convolution of packed weights `w` over inputs [N, H, W, w.cin] on path `isa`.
    PlannedBinaryConv(const PackedConvWeights& w, int64_t stride, int64_t padding, int64_t N, int64_t H,
                   int64_t W, Isa isa = active_isa(),
                   PadValue pad_value = PadValue::Zero)
        : w_(w), isa_(isa) {
        detail::require_supported(isa, "PlannedBinaryConv");
        BNN_CHECK(w.words.defined() && w.tap_sums.defined(), "PlannedBinaryConv: the packed weights are undefined");
        g_ = binary_conv_geometry(N, H, W, w.cin, w.cout, w.kh, w.kw, stride, padding, pad_value);
        const int64_t wc = g_.words_per_pixel();
        coutp_ = padded_out_channels(g_.Cout);
        hp_ = g_.H + 2 * g_.pad;
        wp_ = g_.W + 2 * g_.pad;
        // Zero-initialised: the border stays -1 bits for good; the interior is overwritten by producers.
        bits_ = Tensor<uint64_t>(Shape{std::max<int64_t>(1, g_.N * hp_ * wp_ * wc)});
        if (pad_value == PadValue::One && g_.pad > 0)  // +1 bits on the channels of every pixel
            for (int64_t i = 0; i < g_.N * hp_ * wp_; ++i)
                for (int64_t j = 0; j < wc; ++j) bits_[i * wc + j] = all_plus_word(g_.C, j);
        ones_.assign(coutp_, 1.f);
        zeros_.assign(coutp_, 0.f);
        pixels_ = plan_binary_conv_pixels(g_, bits_.data(), w_.tap_sums.data());
        const int64_t k_words = static_cast<int64_t>(pixels_.word_offsets.size());
        if (detail::counts_half_words(isa, k_words)) {
            half_offsets_.resize(2 * k_words);
            half_weights_ = Tensor<uint32_t>(Shape{2 * k_words, coutp_});
            detail::split_into_half_words(pixels_.word_offsets.data(), w_.words.data(), k_words, coutp_,
                                          half_offsets_.data(), half_weights_.data());
        }
        const detail::TileShape ts = tile();
        scratch_ld_ = g_.Cout;
        threads_ = num_threads();
        // Items go channel block first (a block's weights stay in L1 while pixels stream past)
        // unless every block's weights fit in L1 together: then pixel block first, so each
        // output row and residual row is touched once, not once per channel block.
        pixel_major_ = static_cast<int64_t>(pixels_.word_offsets.size()) * coutp_ * 8 <= 32 * 1024;
        // Each thread's block starts on a cache line of its own: a line shared by two threads'
        // blocks would pass between their cores on every tile.
        scratch_stride_ = (ts.pixels * scratch_ld_ + 15) / 16 * 16;
        scratch_ = Tensor<float>(Shape{threads_ * scratch_stride_});
    }

    const BinaryConvGeometry& geometry() const { return g_; }
    /// Output shape [N, OH, OW, Cout].
    Shape output_shape() const { return Shape{g_.N, g_.OH, g_.OW, g_.Cout}; }
    int64_t words_per_pixel() const { return g_.words_per_pixel(); }
    /// The first input word of pixel (n, h, w) inside the padded bit buffer.
    uint64_t* input_pixel(int64_t n, int64_t h, int64_t w) {
        return bits_.data() + ((n * hp_ + h + g_.pad) * wp_ + w + g_.pad) * g_.words_per_pixel();
    }
    /// Words between horizontally adjacent input pixels (words_per_pixel) and between rows.
    int64_t row_stride_words() const { return wp_ * g_.words_per_pixel(); }
    int64_t image_stride_words() const { return hp_ * wp_ * g_.words_per_pixel(); }
    /// True when run() walks pixel blocks outermost (all the weights fit in L1), false when
    /// channel blocks are outermost.
    bool pixel_major() const { return pixel_major_; }
    /// The threads run() shares its tiles among now.
    int threads() const { return detail::binary_conv_threads(isa_, g_, std::min<int>(threads_, num_threads())); }

    /// out [N, OH, OW, Cout] = the fused transform of the binary conv of the current input bits.
    void run(const BinaryConvEpilogue& t, float* out) {
        BNN_CHECK(t.scale != nullptr, "PlannedBinaryConv::run: the scale is required");
        if (g_.N == 0) return;
        const detail::BinaryConvPlan plan{pixels_.word_offsets.data(),
                                          static_cast<int64_t>(pixels_.word_offsets.size()),
                                          w_.words.data(),
                                          coutp_,
                                          g_.Cout,
                                          g_.K(),
                                          ones_.data(),
                                          zeros_.data(),
                                          half_weights_.defined() ? half_offsets_.data() : nullptr,
                                          half_weights_.defined() ? half_weights_.data() : nullptr};
        const int64_t per_image = g_.OH * g_.OW;
        const auto epilogue = detail::choose_epilogue(isa_, t.gate, t.slope, t.residual);
        const Isa isa = isa_;
        auto tile = [&](int thread, int64_t q, int p, int64_t c0, int64_t nc) {
            // The tile writes float(dot) exactly (scale 1, bias 0) into a small per-thread
            // buffer [pixels, Cout] that stays in L1 (it writes columns [0, nc) of each row, the
            // row stride being Cout); the epilogue then applies the fused transform.
            float* dots = scratch_.data() + thread * scratch_stride_;
            detail::run_tile(isa, p, plan, {pixels_.origins.data() + q, pixels_.corrections.data() + q, dots, c0});
            epilogue(t, dots, scratch_ld_, q, p, c0, nc, g_.Cout, per_image, out);
        };
        const int threads = std::min<int>(threads_, num_threads());
        if (pixel_major_) detail::for_each_binary_conv_tile<true>(isa, g_, threads, tile);
        else detail::for_each_binary_conv_tile<false>(isa, g_, threads, tile);
    }

private:
    detail::TileShape tile() const { return detail::tile_shape(isa_, g_); }

    PackedConvWeights w_;
    Isa isa_ = Isa::scalar;
    BinaryConvGeometry g_{};
    int64_t coutp_ = 0, hp_ = 0, wp_ = 0, scratch_ld_ = 0, scratch_stride_ = 0;
    int threads_ = 1;
    bool pixel_major_ = false;
    Tensor<uint64_t> bits_;
    Tensor<uint32_t> half_weights_;      // the weights in 32-bit halves, when the tile counts halves
    std::vector<int64_t> half_offsets_;
    std::vector<float> ones_, zeros_;
    Tensor<float> scratch_;  // per-thread tile outputs [threads, scratch_stride_]
    BinaryConvPixelPlan pixels_;
};

}  // namespace bnn::kernels
