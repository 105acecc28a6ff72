#pragma once
/// @file channel_gate.hpp
/// The data-driven channel re-scaling of Real-to-Binary (Sec. 4.3): a squeeze-and-excitation
/// style gate computed from the real-valued input of a binary convolution (the BN output, before
/// the sign) and multiplied per sample and output channel onto the binary conv's output.
///
///     G(x) = sigmoid( W2 ReLU( W1 GlobalAvgPool(x) ) )      x [N,H,W,Cin] -> G [N,Cout]
///
/// W1 [Cin/r, Cin], W2 [Cout, Cin/r], no biases, init::fan_in_uniform (as PyTorch's Linear).
/// The module holds the weights; the computation is ops::channel_gate (ops/channel_gate.hpp), one
/// tape node over kernels/channel_gate.hpp.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "bnn/autograd/variable.hpp"
#include "bnn/core/error.hpp"
#include "bnn/core/rng.hpp"
#include "bnn/core/tensor.hpp"
#include "bnn/nn/init.hpp"
#include "bnn/nn/module.hpp"
#include "bnn/ops/channel_gate.hpp"

namespace bnn::nn {

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
        Tensor<float> w1(Shape{hidden_, in_channels_}), w2(Shape{out_channels_, hidden_});
        init::fan_in_uniform(w1);
        init::fan_in_uniform(w2);
        weight1 = register_parameter("weight1", w1);
        weight2 = register_parameter("weight2", w2);
    }
    ChannelGate(int64_t in_channels, int64_t out_channels, int64_t reduction = 8)
        : ChannelGate(ChannelGateOptions{.in_channels = in_channels, .out_channels = out_channels, .reduction = reduction}) {}

    Variable forward(const Variable& x) override {
        BNN_CHECK(x.shape().rank() == 4 && x.dim(3) == in_channels_, "ChannelGate: expected input [N,H,W,",
                  in_channels_, "], got ", x.shape().str());
        return ops::channel_gate(x, weight1, weight2);
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
