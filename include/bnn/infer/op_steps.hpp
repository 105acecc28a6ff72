#pragma once
/// @file op_steps.hpp
/// The op-by-op steps of an inference graph: what is not fused into a binary convolution. Each
/// performs the float operations of its training op in eval mode, in the same order, over
/// planned buffers (no allocation on the vector paths):
///
///   FloatConvStep      conv2d (+ bias)                      [N,H,W,C] -> [N,OH,OW,Cout]
///   BatchNormStep      eval BN, optionally then ReLU/PReLU  [N,H,W,C] or [N,C], in place
///   ActivationStep     ReLU, PReLU, tanh, sigmoid, hardtanh, sign; in place
///   ScaleStep          x * s[c] or x * s[n, c]              in place
///   ScaledPReLUStep    PReLU(x * s[c] or x * s[n, c])       in place
///   PoolStep           max / average pooling                [N,H,W,C] -> [N,OH,OW,C]
///   GlobalAvgPoolStep  mean over H, W                       [N,H,W,C] -> [N,C]
///   PadStep            a constant border                    [N,H,W,C] -> [N,H+2p,W+2p,C]
///   GateStep           Real-to-Bin's G(x)                   [N,H,W,C] -> [N,Cout]
///   LinearStep         x W^T + b                            [N,in] -> [N,out]
///   AddStep            a + b, optionally then ReLU          in place
///   FlattenStep        [N, ...] -> [N, rest]                a view
///   CopyStep           out = in                             (a graph whose output is its input)
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "bnn/core/tensor.hpp"
#include "bnn/kernels/conv2d_few_channels.hpp"
#include "bnn/infer/fused_steps.hpp"
#include "bnn/infer/step.hpp"
#include "bnn/kernels/activation.hpp"
#include "bnn/kernels/channel_gate.hpp"
#include "bnn/kernels/conv2d.hpp"
#include "bnn/kernels/elementwise.hpp"
#include "bnn/kernels/gemm.hpp"
#include "bnn/kernels/linear_int8.hpp"
#include "bnn/kernels/pad.hpp"
#include "bnn/kernels/pool.hpp"
#include "bnn/kernels/sgemm_few_rows.hpp"
#include "bnn/kernels/sign.hpp"

namespace bnn::infer {

namespace detail {
inline const float* data_or_null(const Tensor<float>& t) { return t.defined() ? t.data() : nullptr; }
}  // namespace detail

/// Float convolution, weight [Cout, K, K, Cin] (OHWI), bias [Cout] or undefined.
class FloatConvStep : public Step {
public:
    FloatConvStep(std::string path, Tensor<float> weight, Tensor<float> bias, int stride, int padding)
        : Step(std::move(path), "float conv"), w_(std::move(weight)), b_(std::move(bias)), stride_(stride),
          pad_(padding) {}

    Shape plan(const std::vector<Shape>& in) override {
        const Shape& x = in.at(0);
        check(x.rank() == 4 && x[3] == w_.dim(3), "expects input [N, H, W, ", w_.dim(3), "], got ", x.str());
        check(x[1] + 2 * pad_ >= w_.dim(1) && x[2] + 2 * pad_ >= w_.dim(2), "kernel ", w_.dim(1), "x", w_.dim(2),
              " is larger than the padded input ", x.str(), " (padding ", pad_, ")");
        g_ = kernels::conv2d_geometry(x[0], x[1], x[2], x[3], w_.dim(0), w_.dim(1), w_.dim(2), stride_, pad_);
        return Shape{g_.N, g_.OH, g_.OW, g_.Cout};
    }
    void run(const float* const* in, float* out) override {
        // A few input channels (an image): gathered receptive fields, same floats, twice as fast.
        if (g_.C <= 4) kernels::conv2d_forward_few_channels(in[0], w_.data(), detail::data_or_null(b_), out, g_);
        else kernels::conv2d_forward(in[0], w_.data(), detail::data_or_null(b_), out, g_);
    }

private:
    Tensor<float> w_, b_;
    int stride_, pad_;
    kernels::Conv2dGeometry g_{};
};

/// What follows a batch norm or an addition in the same pass.
enum class Activation { None, ReLU, PReLU };

/// Eval-mode batch norm folded into a per-channel scale and shift, then an optional ReLU/PReLU.
class BatchNormStep : public Step {
public:
    BatchNormStep(std::string path, FrozenBatchNorm bn) : Step(std::move(path), "batch norm"), bn_(std::move(bn)) {}

    /// Runs `act` on the normalized values in the same pass (slope [C] for PReLU).
    void fuse_activation(Activation act, Tensor<float> slope = {}) {
        act_ = act;
        slope_ = std::move(slope);
    }
    bool has_activation() const { return act_ != Activation::None; }

    Shape plan(const std::vector<Shape>& in) override {
        const Shape& x = in.at(0);
        check((x.rank() == 4 || x.rank() == 2) && x[-1] == bn_.channels(), "expects input [N, H, W, ", bn_.channels(),
              "] or [N, ", bn_.channels(), "], got ", x.str());
        rows_ = x.numel() / bn_.channels();
        return x;
    }
    void run(const float* const* in, float* out) override {
        if (out != in[0]) std::memcpy(out, in[0], sizeof(float) * rows_ * bn_.channels());
        bn_activation(out, rows_, bn_.channels(), bn_, act_ == Activation::ReLU,
                      act_ == Activation::PReLU ? slope_.data() : nullptr);
    }
    int in_place_input() const override { return 0; }
    std::string fused() const override {
        return act_ == Activation::ReLU ? "ReLU" : act_ == Activation::PReLU ? "PReLU" : "";
    }
    const FrozenBatchNorm& batch_norm() const { return bn_; }
    Activation activation() const { return act_; }
    const Tensor<float>& slope() const { return slope_; }  ///< [C] for PReLU

private:
    FrozenBatchNorm bn_;
    Activation act_ = Activation::None;
    Tensor<float> slope_;
    int64_t rows_ = 0;
};

/// Element-wise activations with their training kernels.
class ActivationStep : public Step {
public:
    enum class Op { ReLU, PReLU, Tanh, Sigmoid, Hardtanh, Sign };
    ActivationStep(std::string path, Op op, Tensor<float> slope = {}, float lo = -1.f, float hi = 1.f)
        : Step(std::move(path), "activation"), op_(op), slope_(std::move(slope)), lo_(lo), hi_(hi) {}

    Shape plan(const std::vector<Shape>& in) override {
        const Shape& x = in.at(0);
        if (op_ == Op::PReLU)
            check(x.rank() >= 1 && x[-1] == slope_.numel(), "PReLU of ", slope_.numel(),
                  " channels expects the last dimension to be ", slope_.numel(), ", got ", x.str());
        n_ = x.numel();
        return x;
    }
    void run(const float* const* in, float* out) override {
        const float* x = in[0];
        switch (op_) {
            case Op::ReLU: kernels::relu_forward(x, out, n_); break;
            case Op::PReLU: kernels::prelu_forward(x, slope_.data(), out, n_ / slope_.numel(), slope_.numel()); break;
            case Op::Tanh: kernels::tanh_forward(x, out, n_); break;
            case Op::Sigmoid: kernels::sigmoid_forward(x, out, n_); break;
            case Op::Hardtanh: kernels::hardtanh_forward(x, out, n_, lo_, hi_); break;
            case Op::Sign: kernels::sign_forward(x, out, n_); break;
        }
    }
    int in_place_input() const override { return 0; }

private:
    Op op_;
    Tensor<float> slope_;
    float lo_, hi_;
    int64_t n_ = 0;
};

/// x [N, ..., C] * s: s a constant [C], or the second input [N, C] (a gate's output).
class ScaleStep : public Step {
public:
    /// Per channel by a constant.
    ScaleStep(std::string path, Tensor<float> scale) : Step(std::move(path), "scale"), scale_(std::move(scale)) {}
    /// Per sample and channel by the second input.
    explicit ScaleStep(std::string path) : Step(std::move(path), "scale") {}

    Shape plan(const std::vector<Shape>& in) override {
        const Shape& x = in.at(0);
        check(x.rank() >= 2, "expects an input [N, ..., C], got ", x.str());
        C_ = x[-1];
        if (scale_.defined()) {
            check(scale_.numel() == C_, "scale of ", scale_.numel(), " channels for input ", x.str());
            outer_ = 1;
        } else {
            check(in.at(1) == Shape{x[0], C_}, "scale ", in.at(1).str(), " does not fit input ", x.str());
            outer_ = x[0];
        }
        inner_ = x.numel() / (outer_ * C_);
        return x;
    }
    void run(const float* const* in, float* out) override {
        kernels::mul_forward(in[0], scale_.defined() ? scale_.data() : in[1], out, outer_, inner_, C_);
    }
    int in_place_input() const override { return 0; }

private:
    Tensor<float> scale_;
    int64_t outer_ = 0, inner_ = 0, C_ = 0;
};

/// PReLU(x * s): ops::scaled_prelu, s a constant [C] or the second input [N, C] (a gate's output).
class ScaledPReLUStep : public Step {
public:
    /// Per sample and channel by the second input; per channel by `scale` when it is given.
    ScaledPReLUStep(std::string path, Tensor<float> slope, Tensor<float> scale = {})
        : Step(std::move(path), "activation"), slope_(std::move(slope)), scale_(std::move(scale)) {}

    Shape plan(const std::vector<Shape>& in) override {
        const Shape& x = in.at(0);
        check(x.rank() >= 2 && x[-1] == slope_.numel(), "expects an input [N, ..., ", slope_.numel(), "], got ", x.str());
        C_ = x[-1];
        if (scale_.defined()) {
            check(scale_.numel() == C_, "scale of ", scale_.numel(), " channels for input ", x.str());
            outer_ = 1;
        } else {
            check(in.at(1) == Shape{x[0], C_}, "scale ", in.at(1).str(), " does not fit ", x.str());
            outer_ = x[0];
        }
        inner_ = x.numel() / (outer_ * C_);
        return x;
    }
    void run(const float* const* in, float* out) override {
        kernels::scaled_prelu_forward(in[0], scale_.defined() ? scale_.data() : in[1], slope_.data(), out, outer_,
                                      inner_, C_);
    }
    int in_place_input() const override { return 0; }

private:
    Tensor<float> slope_, scale_;
    int64_t outer_ = 0, inner_ = 0, C_ = 0;
};

/// Max or average pooling over k x k windows.
class PoolStep : public Step {
public:
    PoolStep(std::string path, bool max, int kernel, int stride, int padding)
        : Step(std::move(path), "pool"), max_(max), k_(kernel), stride_(stride), pad_(padding) {}

    Shape plan(const std::vector<Shape>& in) override {
        const Shape& x = in.at(0);
        check(x.rank() == 4, "expects input [N, H, W, C], got ", x.str());
        check(x[1] + 2 * pad_ >= k_ && x[2] + 2 * pad_ >= k_, "window ", k_, "x", k_, " is larger than the padded input ",
              x.str());
        g_ = kernels::PoolGeometry::make(x[0], x[1], x[2], x[3], k_, stride_, pad_);
        return Shape{g_.N, g_.OH, g_.OW, g_.C};
    }
    void run(const float* const* in, float* out) override {
        if (max_) kernels::max_pool2d_forward(in[0], out, nullptr, g_);  // no winners: only backward needs them
        else kernels::avg_pool2d_forward(in[0], out, g_);
    }
    bool is_max() const { return max_; }
    int kernel() const { return k_; }
    int stride() const { return stride_; }
    int padding() const { return pad_; }

private:
    bool max_;
    int k_, stride_, pad_;
    kernels::PoolGeometry g_{};
};

class GlobalAvgPoolStep : public Step {
public:
    explicit GlobalAvgPoolStep(std::string path) : Step(std::move(path), "pool") {}
    Shape plan(const std::vector<Shape>& in) override {
        const Shape& x = in.at(0);
        check(x.rank() == 4, "expects input [N, H, W, C], got ", x.str());
        s_ = x;
        return Shape{x[0], x[3]};
    }
    void run(const float* const* in, float* out) override {
        kernels::global_avg_pool_forward(in[0], out, s_[0], s_[1] * s_[2], s_[3]);
    }

private:
    Shape s_;
};

class PadStep : public Step {
public:
    PadStep(std::string path, int64_t padding, float value)
        : Step(std::move(path), "pad"), p_(padding), value_(value) {}
    Shape plan(const std::vector<Shape>& in) override {
        const Shape& x = in.at(0);
        check(x.rank() == 4, "expects input [N, H, W, C], got ", x.str());
        s_ = x;
        return Shape{x[0], x[1] + 2 * p_, x[2] + 2 * p_, x[3]};
    }
    void run(const float* const* in, float* out) override {
        kernels::pad_forward(in[0], out, s_[0], s_[1], s_[2], s_[3], p_, value_);
    }

private:
    int64_t p_;
    float value_;
    Shape s_;
};

/// G = sigmoid(W2 relu(W1 mean(x))) by the training op's own kernels (its weights transposed once).
class GateStep : public Step {
public:
    /// w1 [hidden, Cin], w2 [Cout, hidden], as nn::ChannelGate holds them.
    GateStep(std::string path, const Tensor<float>& w1, const Tensor<float>& w2)
        : Step(std::move(path), "gate"), gate_(w1, w2) {}

    Shape plan(const std::vector<Shape>& in) override {
        const Shape& x = in.at(0);
        check(x.rank() == 4 && x[3] == gate_.cin, "expects input [N, H, W, ", gate_.cin, "], got ", x.str());
        check(x[1] * x[2] > 0, "input ", x.str(), " has no pixels to pool");
        s_ = x;
        pooled_ = Tensor<float>::empty(Shape{x[0], gate_.cin});
        hidden_ = Tensor<float>::empty(Shape{x[0], gate_.hidden});
        return Shape{x[0], gate_.cout};
    }
    void run(const float* const* in, float* out) override {
        kernels::channel_gate_pool(in[0], pooled_.data(), s_[0], s_[1] * s_[2], s_[2], s_[3]);
        gate_.forward(pooled_.data(), out, hidden_.data(), s_[0]);
    }

private:
    FrozenGate gate_;
    Shape s_;
    Tensor<float> pooled_, hidden_;
};

/// y = x W^T + b, the GEMM and bias loop of ops::linear. A batch of a few rows on a vector path
/// runs kernels::sgemm_few_rows on a transposed copy of W instead (the same floats): the GEMM
/// would pack all of W on every call to multiply one row.
class LinearStep : public Step {
public:
    /// weight [out, in], bias [out] or undefined; with `int8`, the product in int8
    /// (DensePrecision::int8, kernels::linear_int8_rows) on the calling thread.
    LinearStep(std::string path, Tensor<float> weight, Tensor<float> bias, bool int8 = false)
        : Step(std::move(path), int8 ? "int8 linear" : "linear"), w_(std::move(weight)), b_(std::move(bias)),
          in_(w_.dim(1)), out_(w_.dim(0)) {
        if (int8) {
            w8_ = kernels::quantize_linear_int8(w_.data(), detail::data_or_null(b_), out_, in_);
            w_ = b_ = Tensor<float>();  // the int8 product reads its own copies
            return;
        }
        if (kernels::has_avx2(kernels::best_isa())) {
            const int64_t K = out_, C = in_;
            wt_ = Tensor<float>::empty(Shape{C, K});
            for (int64_t o = 0; o < K; ++o)
                for (int64_t c = 0; c < C; ++c) wt_[c * K + o] = w_[o * C + c];
        }
    }
    Shape plan(const std::vector<Shape>& in) override {
        const Shape& x = in.at(0);
        check(x.rank() == 2 && x[1] == in_, "expects input [N, ", in_, "], got ", x.str(),
              x.rank() == 4 ? " (a GlobalAvgPool or Flatten before it?)" : "");
        N_ = x[0];
        return Shape{N_, out_};
    }
    void run(const float* const* in, float* out) override {
        const int64_t K = out_, C = in_;
        const kernels::Isa isa = kernels::active_isa();
        if (w8_.Cout() > 0) return kernels::linear_int8_rows(in[0], N_, w8_, out, isa);
        if (N_ <= kFewRows && kernels::has_avx2(isa) && wt_.defined())
            kernels::sgemm_few_rows(isa, N_, K, C, in[0], C, wt_.data(), K, out, K);
        else
            kernels::gemm_nt(N_, K, C, in[0], C, w_.data(), C, out, K, false);
        if (b_.defined())
            for (int64_t n = 0; n < N_; ++n)
                for (int64_t o = 0; o < K; ++o) out[n * K + o] += b_[o];
    }

private:
    static constexpr int64_t kFewRows = 4;
    Tensor<float> w_, b_, wt_;  ///< [out, in], [out], [in, out]: with fp32 only
    int64_t in_, out_;
    kernels::Int8LinearWeights w8_;  ///< with int8 only
    int64_t N_ = 0;
};

/// a + b (then ReLU when fused), same shapes.
class AddStep : public Step {
public:
    AddStep(std::string path, bool relu) : Step(std::move(path), "add"), relu_(relu) {}
    Shape plan(const std::vector<Shape>& in) override {
        check(in.at(0) == in.at(1), "adds ", in.at(0).str(), " and ", in.at(1).str(),
              ": a residual's body and shortcut must give the same shape");
        n_ = in[0].numel();
        return in[0];
    }
    void run(const float* const* in, float* out) override {
        kernels::add_forward(in[0], in[1], out, n_, 1.f);
        if (relu_) kernels::relu_forward(out, out, n_);
    }
    int in_place_input() const override { return 0; }
    std::string fused() const override { return relu_ ? "ReLU" : ""; }

private:
    bool relu_;
    int64_t n_ = 0;
};

class FlattenStep : public Step {
public:
    explicit FlattenStep(std::string path) : Step(std::move(path), "view") {}
    Shape plan(const std::vector<Shape>& in) override {
        const Shape& x = in.at(0);
        check(x.rank() >= 1, "expects an input [N, ...], got a scalar");
        return Shape{x[0], x[0] ? x.numel() / x[0] : 0};
    }
    void run(const float* const*, float*) override {}
    bool is_view() const override { return true; }
};

class CopyStep : public Step {
public:
    explicit CopyStep(std::string path) : Step(std::move(path), "copy") {}
    Shape plan(const std::vector<Shape>& in) override {
        n_ = in.at(0).numel();
        return in[0];
    }
    void run(const float* const* in, float* out) override { std::memcpy(out, in[0], sizeof(float) * n_); }

private:
    int64_t n_ = 0;
};

}  // namespace bnn::infer
