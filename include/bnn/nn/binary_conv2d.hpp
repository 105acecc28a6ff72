#pragma once
/// @file binary_conv2d.hpp
/// BinaryConv2d: the 3x3 (or any square) convolution of a binary network, with the three
/// binarisation modes of the Real-to-Binary training stages.
#include <algorithm>
#include <cmath>
#include <string>
#include <utility>

#include "bnn/core/bit_tensor.hpp"
#include "bnn/kernels/bitpack.hpp"
#include "bnn/nn/binary_mode.hpp"
#include "bnn/nn/init.hpp"
#include "bnn/nn/module.hpp"
#include "bnn/ops/activation.hpp"
#include "bnn/ops/binary_conv2d.hpp"
#include "bnn/ops/conv2d.hpp"
#include "bnn/ops/elementwise.hpp"
#include "bnn/ops/pad.hpp"
#include "bnn/ops/sign.hpp"

namespace bnn::nn {

/// How the weights are scaled per output channel. "alpha" is only ever the conv's parameter of
/// that name, a learned factor per output channel.
enum class WeightScale {
    None,     ///< no scale
    MeanAbs,  ///< mean |W| over each output channel's weights (XNOR-Net), computed from the latent
              ///< weights at each forward and not differentiated; applied when weights are binary
    Learned,  ///< alpha [Cout], initialised to 1 (XNOR-Net++), applied in every mode; once the
              ///< weights are binary it multiplies mean |W|, so that switching a trained layer to
              ///< sign(W) keeps each output's magnitude
              ///< (docs/paper-mapping.md, "Alpha beside the gate")
    Folded,   ///< alpha [Cout] is the whole scale, any mean |W| folded into it, applied alone in
              ///< every mode: how deployment files rebuild binary convs
};

/// What the padded border of the binarised input holds: Zero or One.
using kernels::PadValue;

/// Options: `BinaryConv2d({.in_channels = 64, .out_channels = 64, .mode = BinaryMode::FullyBinary})`.
struct BinaryConv2dOptions {
    int64_t in_channels = 0;
    int64_t out_channels = 0;
    int kernel_size = 3;
    int stride = 1;
    int padding = 1;  ///< border width on every side
    PadValue pad_value = PadValue::Zero;  ///< what the border holds, in every mode
    BinaryMode mode = BinaryMode::BinaryActivations;
    WeightScale scale = WeightScale::MeanAbs;
    /// Inference only, as a deployment file holds it (io::load_deployed): fully binary with scale
    /// Folded, its weights the signs alone (set_weight_signs), packed once in the XNOR kernel's
    /// layout and shared with the graphs compiled from it, never latent floats.
    bool deployed = false;
};

/// A binary convolution without bias (the following batch norm or scale provides one).
/// Requires: x is [N, H, W, in_channels] with H + 2*padding >= kernel_size (likewise W).
/// Ensures: y is [N, (H + 2p - k) / s + 1, (W + 2p - k) / s + 1, out_channels].
/// Parameters: `weight` [out, k, k, in], the latent real weights (init::fan_in_uniform,
/// clipped to [-1, 1] by apply_constraints()), absent when deployed; `alpha` [out] only with
/// WeightScale::Learned or WeightScale::Folded.
/// The mode can change between training stages with set_mode(); the parameters stay the same.
class BinaryConv2d : public Module {
public:
    explicit BinaryConv2d(const BinaryConv2dOptions& options) : options_(options) {
        BNN_CHECK(options.in_channels > 0 && options.out_channels > 0,
                  "BinaryConv2d: expected positive channel counts, got ", options.in_channels, " -> ",
                  options.out_channels);
        BNN_CHECK(options.kernel_size > 0 && options.stride > 0 && options.padding >= 0,
                  "BinaryConv2d: expected kernel_size > 0, stride > 0, padding >= 0, got ", options.kernel_size, ", ",
                  options.stride, ", ", options.padding);
        BNN_CHECK(!options.deployed || (options.mode == BinaryMode::FullyBinary && options.scale == WeightScale::Folded),
                  "BinaryConv2d: expected a deployed conv to be fully binary with WeightScale::Folded, got mode ",
                  binary_mode_name(options.mode), options.scale == WeightScale::Folded ? " (Folded)" : " and another scale");
        if (!options.deployed) {
            const int64_t k = options.kernel_size;
            Tensor<float> w(Shape{options.out_channels, k, k, options.in_channels});
            init::fan_in_uniform(w);
            for (float& v : w) v = std::clamp(v, -1.f, 1.f);
            weight = register_parameter("weight", w);
        }
        if (options.scale == WeightScale::Learned || options.scale == WeightScale::Folded)
            alpha = register_parameter("alpha", Tensor<float>::full(Shape{options.out_channels}, 1.f));
    }

    Variable forward(const Variable& x) override {
        auto [y, scale] = forward_unscaled(x);
        return scale.defined() ? ops::mul(y, scale) : y;
    }

    /// The convolution and the per-output-channel scale [out] still to multiply it by, or an
    /// undefined scale when none is left (forward(x) is y * scale). Callers fuse the scale into
    /// what follows (ops::scaled_prelu in the binary half-block) to save a pass each way. The
    /// learned scale is returned as is, not applied; mean |W| alone (MeanAbs) is applied inside
    /// the XNOR kernel, where it costs nothing.
    std::pair<Variable, Variable> forward_unscaled(const Variable& x) {
        BNN_CHECK(x.shape().rank() == 4 && x.shape()[3] == options_.in_channels, type_name(), "(",
                  options_.in_channels, " -> ", options_.out_channels, "): expected input [N, H, W, ",
                  options_.in_channels, "], got ", x.shape().str());
        const int s = options_.stride, p = options_.padding;
        const bool ones = options_.pad_value == PadValue::One && p > 0;
        // Real-weight modes: the activation, then (for one-padding) a border of +1, then a float conv.
        auto float_conv = [&](const Variable& a) {
            return ones ? ops::conv2d(ops::pad(a, p, 1.f), weight, Variable(), s, 0)
                        : ops::conv2d(a, weight, Variable(), s, p);
        };
        switch (options_.mode) {
            case BinaryMode::SoftActivations: return {float_conv(ops::tanh(x)), alpha};
            case BinaryMode::BinaryActivations: return {float_conv(ops::sign_ste(x)), alpha};
            case BinaryMode::FullyBinary: break;
        }
        const auto pad_value = ones ? kernels::PadValue::One : kernels::PadValue::Zero;
        if (options_.deployed) {  // op by op (compiled graphs use the packed signs): their ±1 floats per call
            const Variable w(unpack_signs(weight_signs()), false);
            return {ops::binary_conv2d(x, w, Variable(), s, p, pad_value), alpha};
        }
        if (options_.scale == WeightScale::Learned)
            return {ops::binary_conv2d(x, weight, Variable(), s, p, pad_value),
                    ops::mul(alpha, Variable(mean_abs_weight(), false))};
        if (options_.scale == WeightScale::MeanAbs)
            return {ops::binary_conv2d(x, weight, Variable(mean_abs_weight(), false), s, p, pad_value), Variable()};
        return {ops::binary_conv2d(x, weight, Variable(), s, p, pad_value), alpha};
    }

    /// The per-output-channel factor of sign(W) in the fully binary mode: mean |W| (MeanAbs),
    /// learned alpha times mean |W| (Learned), alpha (Alpha), or ones (None).
    Tensor<float> binary_weight_scale() const {
        if (options_.scale == WeightScale::None) return Tensor<float>::full(Shape{options_.out_channels}, 1.f);
        if (options_.scale == WeightScale::Folded) return alpha.value().clone();
        Tensor<float> a = mean_abs_weight();
        if (options_.scale == WeightScale::Learned)
            for (int64_t o = 0; o < a.numel(); ++o) a[o] *= alpha.value()[o];
        return a;
    }

    /// sign(W) [out, k, k, in] as bits: the latent weights' signs, or a deployed conv's.
    BitTensor weight_signs() const {
        if (options_.deployed) return kernels::conv_weight_signs(deployed_packed());
        return pack_signs(weight.value());
    }
    /// sign(W) in the XNOR kernel's layout (kernels::pack_conv_weights): a deployed conv's own,
    /// shared (it never changes in place), else packed afresh from the latent weights.
    kernels::PackedConvWeights packed_weights() const {
        if (options_.deployed) return deployed_packed();
        return kernels::pack_conv_weights(weight_signs());
    }
    /// Sets a deployed conv's signs [out, k, k, in], packed straight into the kernel's layout.
    void set_weight_signs(BitTensor signs) {
        BNN_CHECK(options_.deployed, type_name(), ": only a deployed conv takes its weights as signs");
        const int64_t k = options_.kernel_size;
        const Shape want{options_.out_channels, k, k, options_.in_channels};
        BNN_CHECK(signs.defined() && signs.shape() == want, type_name(), ": expected signs ", want.str(), ", got ",
                  signs.defined() ? signs.shape().str() : std::string("undefined"));
        packed_ = kernels::pack_conv_weights(signs);
    }

    /// alpha = mean |W| per output channel, as WeightScale::MeanAbs uses it.
    Tensor<float> mean_abs_weight() const {
        const Tensor<float>& w = weight.value();
        const int64_t co = w.dim(0), per = w.numel() / co;
        Tensor<float> a = Tensor<float>::empty(Shape{co});
        for (int64_t o = 0; o < co; ++o) {
            double s = 0;
            for (int64_t i = 0; i < per; ++i) s += std::abs(w[o * per + i]);
            a[o] = static_cast<float>(s / static_cast<double>(per));
        }
        return a;
    }

    void set_mode(BinaryMode mode) {
        BNN_CHECK(!options_.deployed || mode == BinaryMode::FullyBinary, type_name(),
                  ": a deployed conv has no real weights for mode ", binary_mode_name(mode));
        options_.mode = mode;
    }
    BinaryMode mode() const { return options_.mode; }
    std::string type_name() const override { return "BinaryConv2d"; }
    const BinaryConv2dOptions& options() const { return options_; }

    Variable weight;  ///< [out, k, k, in], latent real weights (undefined when deployed)
    Variable alpha;   ///< [out] with WeightScale::Learned or WeightScale::Folded, else undefined

protected:
    /// Latent weights live in [-1, 1]: beyond it the straight-through gradient of sign(W) would
    /// push them without ever changing sign(W).
    void constrain() override {
        if (options_.deployed) return;
        for (float& v : weight.value()) v = std::clamp(v, -1.f, 1.f);
    }

private:
    const kernels::PackedConvWeights& deployed_packed() const {
        BNN_CHECK(packed_.words.defined(), type_name(), ": the deployed conv's signs were never set (set_weight_signs)");
        return packed_;
    }

    BinaryConv2dOptions options_;
    kernels::PackedConvWeights packed_;  ///< sign(W) when deployed
};

}  // namespace bnn::nn

namespace bnn::nn {

/// Switches every BinaryConv2d in `model` (itself included) to a training stage's mode; returns
/// how many it switched.
inline int set_binary_mode(const Module& model, BinaryMode mode) {
    int switched = 0;
    for (auto& [path, m] : model.named_modules())
        if (auto* conv = dynamic_cast<BinaryConv2d*>(m)) {
            conv->set_mode(mode);
            ++switched;
        }
    return switched;
}

}  // namespace bnn::nn
