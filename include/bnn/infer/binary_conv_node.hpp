#pragma once
/// @file binary_conv_node.hpp
/// BinaryConvNode: a fully binary convolution with everything around it fused, the heart of a
/// compiled binary network. Per call:
///
///   pack   sign(BN(x)) (or sign(x) without a BN) written straight into the planned conv's
///          padded input bits, and, with a gate, the per-channel mean of BN(x) (fused_steps.hpp)
///   gate   G = sigmoid(W2 relu(W1 mean))                                 (optional)
///   conv   XNOR-popcount over the planned bits; the tile epilogue computes, per output,
///          y = dot * alpha[o];  y *= G[n, o];  y = PReLU(y);  y += residual   (kernels/binary_conv2d_planned.hpp)
///
///   inputs  x [N, H, W, Cin], residual [N, OH, OW, Cout] (optional; the output may overwrite it)
///   output  [N, OH, OW, Cout]
///
/// Every operation is the training ops' own float operation in their order, so the output equals
/// the eval-mode forward of BN -> BinaryConv2d -> scale/gate -> PReLU -> + shortcut.
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "bnn/core/tensor.hpp"
#include "bnn/core/threads.hpp"
#include "bnn/kernels/binary_conv2d_planned.hpp"
#include "bnn/infer/fused_steps.hpp"
#include "bnn/infer/step.hpp"
#include "bnn/kernels/bitpack.hpp"

namespace bnn::infer {

class BinaryConvNode : public Step {
public:
    /// weights: the packed sign(W); alpha [Cout]: the conv's final per-channel scale.
    BinaryConvNode(std::string path, kernels::PackedConvWeights weights, Tensor<float> alpha, int stride, int padding,
                   kernels::PadValue pad_value)
        : Step(std::move(path), "binary conv"), w_(std::move(weights)), alpha_(std::move(alpha)), stride_(stride),
          pad_(padding), pad_value_(pad_value) {
        bn_ = identity_bn(w_.cin);
    }

    /// The BN whose output is binarised (and pooled for the gate): the node then reads BN's input.
    void fuse_batch_norm(FrozenBatchNorm bn) {
        bn_ = std::move(bn);
        has_bn_ = true;
    }
    void fuse_gate(FrozenGate gate) { gate_ = std::move(gate); }
    void fuse_prelu(Tensor<float> slope) { slope_ = std::move(slope); }
    /// The residual becomes input 1.
    void fuse_residual() { residual_ = true; }

    bool has_batch_norm() const { return has_bn_; }
    bool has_gate() const { return gate_.defined(); }
    bool has_prelu() const { return slope_.defined(); }
    bool has_residual() const { return residual_; }

    Shape plan(const std::vector<Shape>& in) override {
        const Shape& x = in.at(0);
        check(x.rank() == 4 && x[3] == w_.cin, "expects input [N, H, W, ", w_.cin, "], got ", x.str());
        check(x[1] + 2 * pad_ >= w_.kh && x[2] + 2 * pad_ >= w_.kw, "kernel ", w_.kh, "x", w_.kw,
              " is larger than the padded input ", x.str(), " (padding ", pad_, ")");
        check(!gate_.defined() || gate_.cin == w_.cin, "gate of ", gate_.cin, " inputs for a conv of ", w_.cin);
        conv_ = std::make_unique<kernels::PlannedBinaryConv>(w_, stride_, pad_, x[0], x[1], x[2], kernels::active_isa(), pad_value_);
        in_ = x;
        const Shape out = conv_->output_shape();
        if (residual_)
            check(in.at(1) == out, "residual ", in.at(1).str(), " does not match the conv's output ", out.str(),
                  " (a shortcut of another shape? spatial sizes that do not halve evenly?)");
        if (gate_.defined()) {
            mean_ = Tensor<float>::empty(Shape{x[0] * w_.cin});
            g_ = Tensor<float>::empty(Shape{x[0] * gate_.cout});
            hidden_ = Tensor<float>::empty(Shape{x[0] * gate_.hidden});
        }
        return out;
    }

    void run(const float* const* in, float* out) override {
        const bool gated = gate_.defined();
        bn_sign_pack(in[0], in_[0], in_[1], in_[2], in_[3], bn_, *conv_, gated ? mean_.data() : nullptr);
        if (gated) gate_.forward(mean_.data(), g_.data(), hidden_.data(), in_[0]);
        conv_->run({alpha_.data(), gated ? g_.data() : nullptr, slope_.defined() ? slope_.data() : nullptr,
                    residual_ ? in[1] : nullptr},
                   out);
    }
    int in_place_input() const override { return residual_ ? 1 : -1; }
    std::string fused() const override {
        std::string s = has_bn_ ? "BN+sign pack" : "sign pack";
        if (gate_.defined()) s += ", gate";
        s += ", alpha";
        if (slope_.defined()) s += ", PReLU";
        if (residual_) s += ", residual";
        return s;
    }

private:
    // x * 1 + 0 is x (and sign(-0) = sign(+0) = +1), so one pack routine serves both cases.
    static FrozenBatchNorm identity_bn(int64_t C) {
        FrozenBatchNorm bn;
        bn.scale = Tensor<float>::full(Shape{C}, 1.f);
        bn.shift = Tensor<float>(Shape{C});
        return bn;
    }

    kernels::PackedConvWeights w_;
    Tensor<float> alpha_, slope_;
    int stride_, pad_;
    kernels::PadValue pad_value_;
    FrozenBatchNorm bn_;
    bool has_bn_ = false, residual_ = false;
    FrozenGate gate_;
    std::unique_ptr<kernels::PlannedBinaryConv> conv_;
    Shape in_;
    Tensor<float> mean_, g_, hidden_;
};

}  // namespace bnn::infer
