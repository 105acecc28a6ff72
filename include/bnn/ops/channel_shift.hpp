#pragma once
/// @file channel_shift.hpp
/// ops::channel_shift: x + b[c], one learned shift per channel (kernels/channel_shift.hpp).
#include <cstdint>
#include <vector>

#include "bnn/autograd/grad_sink.hpp"
#include "bnn/autograd/variable.hpp"
#include "bnn/core/error.hpp"
#include "bnn/core/tensor.hpp"
#include "bnn/kernels/channel_shift.hpp"

namespace bnn::ops {

/// x [..., C], shift [C] -> [..., C]: y = x + shift[c].
inline Variable channel_shift(const Variable& x, const Variable& shift) {
    const char* op = "ops::channel_shift";
    BNN_CHECK(x.shape().rank() >= 1 && x.shape()[-1] > 0, op, ": expected an input [..., C] with C > 0, got ",
              x.shape().str());
    const int64_t C = x.shape()[-1], rows = x.numel() / C;
    expect_shape(shift.value(), Shape{C}, op, "shift [C]");
    Tensor<float> y = Tensor<float>::empty(x.shape());
    kernels::channel_shift_forward(x.value().data(), shift.value().data(), y.data(), rows, C);
    return make_result(
        y, {x, shift},
        [rows, C](const Tensor<float>& dy, std::vector<Variable>& in) {
            const GradSink dx = grad_sink(in[0]);
            kernels::channel_shift_backward(dy.data(), dx.data, grad_accumulator(in[1]), rows, C, dx.accumulate);
        },
        "channel_shift");
}

}  // namespace bnn::ops
