#pragma once
/// @file conv2d_u8s16_plan.hpp
/// The integer stem's plan for one input shape (conv2d_u8s16.hpp): the folded bias with the
/// correction of the padded taps, one row per (row pattern, column pattern) of output pixels.
#include <cstdint>
#include <vector>

#include "bnn/core/error.hpp"
#include "bnn/kernels/conv2d_geometry.hpp"
#include "bnn/kernels/conv2d_u8s16_quantize.hpp"
#include "bnn/kernels/padding_patterns.hpp"

namespace bnn::kernels {

/// The per-geometry part of the integer convolution: which taps of each output row and column
/// fall in the padding, and one bias row per (row pattern, column pattern), the interior first.
/// Built when the graph plans a shape; the forward reads it only.
struct U8S16ConvPlan {
    Conv2dGeometry g{};
    std::vector<int> row_pattern;    ///< [OH]
    std::vector<int> col_pattern;    ///< [OW]
    int64_t col_patterns = 1;
    int64_t coutp = 0;
    std::vector<float> bias_rows;    ///< [row patterns * col patterns, CoutP]

    const float* bias_row(int64_t oh, int64_t ow) const {
        return bias_rows.data() + (row_pattern[oh] * col_patterns + col_pattern[ow]) * coutp;
    }
};

/// Plans geometry g for weights w into `plan` (see U8S16ConvPlan).
inline void plan_conv2d_u8s16(const U8S16ConvWeights& w, const Conv2dGeometry& g, U8S16ConvPlan& plan) {
    BNN_CHECK(g.C == w.C && g.Cout == w.Cout && g.KH == w.KH && g.KW == w.KW, "plan_conv2d_u8s16: weights [", w.Cout,
              ", ", w.KH, ", ", w.KW, ", ", w.C, "] do not fit a geometry of C ", g.C, ", Cout ", g.Cout, ", kernel ",
              g.KH, "x", g.KW);
    BNN_CHECK(g.KH <= 64 && g.KW <= 64, "plan_conv2d_u8s16: kernels of up to 64x64 taps, got ", g.KH, "x", g.KW);
    plan.g = g;
    plan.coutp = w.CoutP();
    const std::vector<uint64_t> rows = padding_patterns(g.OH, g.stride, g.pad, g.KH, g.H, plan.row_pattern);
    const std::vector<uint64_t> cols = padding_patterns(g.OW, g.stride, g.pad, g.KW, g.W, plan.col_pattern);
    plan.col_patterns = static_cast<int64_t>(cols.size());
    std::vector<double> corrections;  // [patterns, Cout], in steps of scale[o]
    padded_tap_sums(rows, cols, g.KH, g.KW, w.tap_correction.data(), w.Cout, corrections);
    const int64_t patterns = static_cast<int64_t>(rows.size() * cols.size());
    plan.bias_rows.assign(patterns * plan.coutp, 0.f);
    for (int64_t i = 0; i < patterns; ++i) {
        const double* correction = corrections.data() + i * w.Cout;
        float* dst = plan.bias_rows.data() + i * plan.coutp;
        for (int64_t o = 0; o < w.Cout; ++o)
            dst[o] = static_cast<float>(w.bias[o] + static_cast<double>(w.scale[o]) * correction[o]);
    }
}

}  // namespace bnn::kernels
