#pragma once
/// @file int_stem_step.hpp
/// IntStemStep: a Conv2d reading the network input, compiled with CompileOptions::stem = int16 or
/// int8 (compile.hpp): the raw image in, the input normalization folded into int16 weights (or
/// weights of int8's range) and the bias, exact int32 dot products (kernels/conv2d_u8s16.hpp).
///
///   [N, H, W, C] uint8 (0..255) -> [N, OH, OW, Cout] float
///
/// Its output stands for the float convolution of (x / 255 - mean[c]) / std[c], so the steps
/// after it (batch norm, ReLU, max pool, ...) are those of the float graph. A max pool that
/// follows (with the batch norm and activation between them) fuses into it: the conv output is
/// then never stored whole, only the rows of a pooling window at a time
/// (kernels::conv2d_u8s16_max_pool_forward), and the step's output is the pool's. The graph's buffers
/// are float pointers: Graph::run(const Tensor<uint8_t>&) passes the image through one, and this
/// step, the only reader of the input in such a graph, reads it back as bytes.
#include <string>
#include <utility>
#include <vector>

#include "bnn/core/tensor.hpp"
#include "bnn/infer/op_steps.hpp"
#include "bnn/infer/step.hpp"
#include "bnn/kernels/conv2d_geometry.hpp"
#include "bnn/kernels/conv2d_u8s16.hpp"

namespace bnn::infer {

class IntStemStep : public Step {
public:
    /// weight [Cout, KH, KW, C] (OHWI), bias [Cout] or undefined; mean and std [C] of the
    /// normalization (x / 255 - mean) / std the float network was trained on; weight_max the
    /// quantiser's levels (kernels::u8s16_weight_max for int16, u8s8_weight_max for int8).
    IntStemStep(std::string path, const Tensor<float>& weight, const Tensor<float>& bias, int stride, int padding,
                const std::vector<float>& mean, const std::vector<float>& std,
                int32_t weight_max = kernels::u8s16_weight_max)
        : Step(std::move(path), "int stem"), stride_(stride), pad_(padding) {
        check(weight.rank() == 4, "expects a weight [Cout, KH, KW, C], got ", weight.shape().str());
        const int64_t C = weight.dim(3);
        check(static_cast<int64_t>(mean.size()) == C && static_cast<int64_t>(std.size()) == C,
              "the integer stem needs the input normalization's mean and std per input channel: ", C,
              " channels, got ", mean.size(), " means and ", std.size(), " stds (CompileOptions::mean, ::std)");
        const int64_t K = weight.dim(1) * weight.dim(2) * C;
        check(K <= kernels::u8s16_max_taps, "the integer stem takes convolutions of at most ",
              kernels::u8s16_max_taps, " taps (255 * 32767 * K must fit in int32), this one has ", weight.dim(1), "x",
              weight.dim(2), "x", C, " = ", K, "; compile it with the fp32 stem");
        check(!bias.defined() || bias.numel() == weight.dim(0), "expects a bias of ", weight.dim(0), " values, got ",
              bias.numel());
        w_ = kernels::quantize_conv2d_u8s16(weight.data(), bias.defined() ? bias.data() : nullptr, weight.dim(0),
                                            weight.dim(1), weight.dim(2), C, mean.data(), std.data(), weight_max);
    }

    /// Runs bn (null: none) with its activation, then a max pool of k x k windows, on the conv's
    /// rows as they are computed; the caller checks can_pool(k, padding) first.
    void fuse_max_pool(const BatchNormStep* bn, int k, int stride, int padding) {
        if (bn) {
            bn_ = bn->batch_norm();
            act_ = bn->activation();
            slope_ = bn->slope();
        }
        pool_k_ = k;
        pool_stride_ = stride;
        pool_pad_ = padding;
    }
    static bool can_pool(int k, int padding) { return k <= 64 && 2 * padding <= k; }
    bool pooled() const { return pool_k_ > 0; }

    Shape plan(const std::vector<Shape>& in) override {
        const Shape& x = in.at(0);
        check(x.rank() == 4 && x[3] == w_.C, "expects raw images [N, H, W, ", w_.C, "] uint8, got ", x.str());
        check(x[1] + 2 * pad_ >= w_.KH && x[2] + 2 * pad_ >= w_.KW, "kernel ", w_.KH, "x", w_.KW,
              " is larger than the padded input ", x.str(), " (padding ", pad_, ")");
        const kernels::Conv2dGeometry g =
            kernels::conv2d_geometry(x[0], x[1], x[2], x[3], w_.Cout, w_.KH, w_.KW, stride_, pad_);
        kernels::plan_conv2d_u8s16(w_, g, plan_);
        if (!pooled()) return Shape{g.N, g.OH, g.OW, g.Cout};
        check(g.OH + 2 * pool_pad_ >= pool_k_ && g.OW + 2 * pool_pad_ >= pool_k_, "pool window ", pool_k_, "x",
              pool_k_, " is larger than the padded conv output [", g.N, ", ", g.OH, ", ", g.OW, ", ", g.Cout, "]");
        pool_ = kernels::PoolGeometry::make(g.N, g.OH, g.OW, g.Cout, pool_k_, pool_stride_, pool_pad_);
        return Shape{pool_.N, pool_.OH, pool_.OW, pool_.C};
    }
    void run(const float* const* in, float* out) override {
        const auto* x = reinterpret_cast<const uint8_t*>(in[0]);
        if (!pooled()) return kernels::conv2d_u8s16_forward(x, w_, plan_, out);
        const int64_t OW = plan_.g.OW, C = plan_.g.Cout;
        kernels::conv2d_u8s16_max_pool_forward(x, w_, plan_, pool_, [&](float* row) {
            if (bn_.defined())
                bn_activation_rows(row, OW, C, bn_, act_ == Activation::ReLU,
                                   act_ == Activation::PReLU ? slope_.data() : nullptr);
        }, out);
    }
    std::string fused() const override {
        std::string s = w_.weight_max == kernels::u8s8_weight_max ? "input normalization, int8 weights"
                                                                  : "input normalization, int16 weights";
        if (bn_.defined()) s += ", batch norm";
        if (act_ != Activation::None) s += act_ == Activation::ReLU ? ", ReLU" : ", PReLU";
        if (pooled()) s += ", max pool";
        return s;
    }

    const kernels::U8S16ConvWeights& weights() const { return w_; }

private:
    kernels::U8S16ConvWeights w_;
    int stride_, pad_;
    kernels::U8S16ConvPlan plan_;
    FrozenBatchNorm bn_;  // of the fused max pool's input, when there is one
    Activation act_ = Activation::None;
    Tensor<float> slope_;
    int pool_k_ = 0, pool_stride_ = 1, pool_pad_ = 0;
    kernels::PoolGeometry pool_{};
};

}  // namespace bnn::infer
