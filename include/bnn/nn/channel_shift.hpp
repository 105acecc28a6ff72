#pragma once
/// @file channel_shift.hpp
/// ChannelShift: y = x + shift[c], a learned shift per channel. ReActNet moves the input of each
/// sign (RSign) and the input and output of each PReLU (RPReLU) by one, so a binary network
/// learns where its activations switch sign.
#include <cstdint>
#include <string>

#include "bnn/nn/module.hpp"
#include "bnn/ops/channel_shift.hpp"

namespace bnn::nn {

/// Requires: x's last dimension equals channels. Parameter: `shift` [C], zero at first.
class ChannelShift : public Module {
public:
    explicit ChannelShift(int64_t channels) {
        BNN_CHECK(channels > 0, "ChannelShift: expected channels > 0, got ", channels);
        shift = register_parameter("shift", Tensor<float>::zeros(Shape{channels}));
    }
    Variable forward(const Variable& x) override { return ops::channel_shift(x, shift); }
    std::string type_name() const override { return "ChannelShift"; }
    int64_t channels() const { return shift.numel(); }

    Variable shift;  ///< [C]
};

}  // namespace bnn::nn
