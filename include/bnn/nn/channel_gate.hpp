#pragma once
/// @file channel_gate.hpp
/// The data-driven channel re-scaling of Real-to-Binary (Sec. 4.3): a squeeze-and-excitation
/// style gate computed from the real-valued input of a binary convolution (the BN output, before
/// the sign) and multiplied per sample and output channel onto the binary conv's output.
///
///     G(x) = sigmoid( W2 ReLU( W1 GlobalAvgPool(x) ) )      x [N,H,W,Cin] -> G [N,Cout]
///
/// W1 [Cin/r, Cin], W2 [Cout, Cin/r], no biases, He-normal initialisation (as Larq Zoo).
/// The gate is one fused tape node: the tensors are tiny ([N,Cin] after the pool), so a hand
/// written backward is simpler and cheaper than five generic nodes.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "bnn/autograd/variable.hpp"
#include "bnn/core/error.hpp"
#include "bnn/core/rng.hpp"
#include "bnn/core/tensor.hpp"
#include "bnn/nn/module.hpp"

namespace bnn::nn {

namespace detail {

// x: [N, P, Cin] (P = H*W), w1: [Hd, Cin], w2: [Cout, Hd] ->
// pooled: [N, Cin], hidden: [N, Hd] (before the ReLU), gate: [N, Cout]
inline void channel_gate_forward(const float* x, const float* w1, const float* w2, float* pooled,
                                 float* hidden, float* gate, int64_t n, int64_t p, int64_t cin, int64_t hd,
                                 int64_t cout) {
    for (int64_t s = 0; s < n; ++s) {
        float* m = pooled + s * cin;
        for (int64_t c = 0; c < cin; ++c) m[c] = 0.f;
        for (int64_t i = 0; i < p; ++i) {
            const float* row = x + (s * p + i) * cin;
            for (int64_t c = 0; c < cin; ++c) m[c] += row[c];
        }
        for (int64_t c = 0; c < cin; ++c) m[c] /= static_cast<float>(p);
        float* h = hidden + s * hd;
        for (int64_t j = 0; j < hd; ++j) {
            float acc = 0.f;
            for (int64_t c = 0; c < cin; ++c) acc += w1[j * cin + c] * m[c];
            h[j] = acc;
        }
        for (int64_t o = 0; o < cout; ++o) {
            float acc = 0.f;
            for (int64_t j = 0; j < hd; ++j) acc += w2[o * hd + j] * std::max(h[j], 0.f);
            gate[s * cout + o] = 1.f / (1.f + std::exp(-acc));
        }
    }
}

// dgate: [N, Cout] and the forward's tensors -> dx: [N, P, Cin], dw1: [Hd, Cin], dw2: [Cout, Hd],
// each accumulated; a null pointer skips that gradient.
inline void channel_gate_backward(const float* dgate, const float* w1, const float* w2, const float* pooled,
                                  const float* hidden, const float* gate, float* dx, float* dw1, float* dw2,
                                  int64_t n, int64_t p, int64_t cin, int64_t hd, int64_t cout) {
    std::vector<float> dlogit(cout), dh(hd), dm(cin);
    for (int64_t s = 0; s < n; ++s) {
        const float* h = hidden + s * hd;
        for (int64_t o = 0; o < cout; ++o) {
            const float g = gate[s * cout + o];
            dlogit[o] = dgate[s * cout + o] * g * (1.f - g);
        }
        for (int64_t j = 0; j < hd; ++j) {
            float acc = 0.f;
            for (int64_t o = 0; o < cout; ++o) acc += dlogit[o] * w2[o * hd + j];
            dh[j] = h[j] > 0.f ? acc : 0.f;
        }
        if (dw2)
            for (int64_t o = 0; o < cout; ++o)
                for (int64_t j = 0; j < hd; ++j) dw2[o * hd + j] += dlogit[o] * std::max(h[j], 0.f);
        if (dw1)
            for (int64_t j = 0; j < hd; ++j)
                for (int64_t c = 0; c < cin; ++c) dw1[j * cin + c] += dh[j] * pooled[s * cin + c];
        if (dx) {
            for (int64_t c = 0; c < cin; ++c) {
                float acc = 0.f;
                for (int64_t j = 0; j < hd; ++j) acc += dh[j] * w1[j * cin + c];
                dm[c] = acc / static_cast<float>(p);
            }
            for (int64_t i = 0; i < p; ++i) {
                float* row = dx + (s * p + i) * cin;
                for (int64_t c = 0; c < cin; ++c) row[c] += dm[c];
            }
        }
    }
}

}  // namespace detail

/// The gate as a differentiable function: x [N,H,W,Cin], w1 [Hd,Cin], w2 [Cout,Hd] -> [N,Cout].
inline Variable channel_gate(const Variable& x, const Variable& w1, const Variable& w2) {
    const char* op = "channel_gate";
    expect_rank(x.value(), 4, op, "x [N,H,W,Cin]");
    expect_rank(w1.value(), 2, op, "w1 [Hd,Cin]");
    expect_rank(w2.value(), 2, op, "w2 [Cout,Hd]");
    const int64_t n = x.dim(0), p = x.dim(1) * x.dim(2), cin = x.dim(3);
    const int64_t hd = w1.dim(0), cout = w2.dim(0);
    BNN_CHECK(w1.dim(1) == cin, op, ": w1 must have shape [Hd, ", cin, "] for input ", x.shape().str(), ", got ",
              w1.shape().str());
    BNN_CHECK(w2.dim(1) == hd, op, ": w2 must have shape [Cout, ", hd, "] to follow w1 ", w1.shape().str(),
              ", got ", w2.shape().str());
    BNN_CHECK(p > 0, op, ": input ", x.shape().str(), " has no spatial positions to pool");
    Tensor<float> pooled = Tensor<float>::empty({n, cin}), hidden = Tensor<float>::empty({n, hd});
    Tensor<float> gate = Tensor<float>::empty({n, cout});
    detail::channel_gate_forward(x.value().data(), w1.value().data(), w2.value().data(), pooled.data(),
                                 hidden.data(), gate.data(), n, p, cin, hd, cout);
    Tensor<float> w1v = w1.value(), w2v = w2.value();
    return make_result(
        gate, {x, w1, w2},
        [w1v, w2v, pooled, hidden, gate, n, p, cin, hd, cout](const Tensor<float>& g, std::vector<Variable>& in) {
            auto wants = [&](int k) { return in[k].defined() && in[k].requires_grad(); };
            detail::channel_gate_backward(g.data(), w1v.data(), w2v.data(), pooled.data(), hidden.data(),
                                          gate.data(), wants(0) ? in[0].grad().data() : nullptr,
                                          wants(1) ? in[1].grad().data() : nullptr,
                                          wants(2) ? in[2].grad().data() : nullptr, n, p, cin, hd, cout);
        },
        op);
}

/// Options of ChannelGate: the hidden width is hidden_channels when given (> 0), else
/// in_channels / reduction (at least 1).
struct ChannelGateOptions {
    int64_t in_channels = 0;
    int64_t out_channels = 0;
    int64_t hidden_channels = 0;
    int64_t reduction = 8;
};

/// Channel gate module. forward(x): [N,H,W,in_channels] -> [N,out_channels] in (0, 1).
/// Parameters: "weight1" [hidden, in] and "weight2" [out, hidden].
class ChannelGate : public Module {
public:
    explicit ChannelGate(const ChannelGateOptions& options)
        : in_channels_(options.in_channels), out_channels_(options.out_channels) {
        BNN_CHECK(options.in_channels > 0 && options.out_channels > 0 && options.hidden_channels >= 0 &&
                      (options.hidden_channels > 0 || options.reduction > 0),
                  "ChannelGate: channels must be positive and the hidden width or reduction given, got in ",
                  options.in_channels, ", out ", options.out_channels, ", hidden ", options.hidden_channels,
                  ", reduction ", options.reduction);
        hidden_ = options.hidden_channels > 0 ? options.hidden_channels
                                              : std::max<int64_t>(1, options.in_channels / options.reduction);
        // He-normal: std = sqrt(2 / fan_in), fan_in being each layer's input width.
        weight1 = register_parameter("weight1", Tensor<float>::randn({hidden_, in_channels_}, default_rng(), 0.f,
                                                                     std::sqrt(2.f / in_channels_)));
        weight2 = register_parameter("weight2", Tensor<float>::randn({out_channels_, hidden_}, default_rng(), 0.f,
                                                                     std::sqrt(2.f / hidden_)));
    }
    ChannelGate(int64_t in_channels, int64_t out_channels, int64_t reduction = 8)
        : ChannelGate(ChannelGateOptions{.in_channels = in_channels, .out_channels = out_channels, .reduction = reduction}) {}

    Variable forward(const Variable& x) override {
        BNN_CHECK(x.shape().rank() == 4 && x.dim(3) == in_channels_, "ChannelGate: expected input [N,H,W,",
                  in_channels_, "], got ", x.shape().str());
        return channel_gate(x, weight1, weight2);
    }
    std::string type_name() const override { return "ChannelGate"; }

    int64_t in_channels() const { return in_channels_; }
    int64_t out_channels() const { return out_channels_; }
    int64_t hidden_channels() const { return hidden_; }

    Variable weight1;  ///< [in/r, in]
    Variable weight2;  ///< [out, in/r]

private:
    int64_t in_channels_, out_channels_, hidden_;
};

}  // namespace bnn::nn
