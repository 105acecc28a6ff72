#pragma once
/// @file channel_gate.hpp
/// ops::channel_gate: the Real-to-Binary channel gate as one tape node (kernels/channel_gate.hpp).
/// The tensors are tiny ([N,Cin] after the pool), so a hand-written backward is simpler and
/// cheaper than five generic nodes (pool, linear, ReLU, linear, sigmoid).
#include <cstdint>
#include <vector>

#include "bnn/autograd/grad_sink.hpp"
#include "bnn/autograd/variable.hpp"
#include "bnn/core/error.hpp"
#include "bnn/core/tensor.hpp"
#include "bnn/kernels/channel_gate.hpp"

namespace bnn::ops {

/// The gate as a differentiable function: x [N,H,W,Cin], w1 [Hd,Cin], w2 [Cout,Hd] -> [N,Cout].
inline Variable channel_gate(const Variable& x, const Variable& w1, const Variable& w2) {
    const char* op = "ops::channel_gate";
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
    kernels::channel_gate_forward(x.value().data(), w1.value().data(), w2.value().data(), pooled.data(),
                                  hidden.data(), gate.data(), n, p, x.dim(2), cin, hd, cout);
    Tensor<float> w1v = w1.value(), w2v = w2.value();
    return make_result(
        gate, {x, w1, w2},
        [w1v, w2v, pooled, hidden, gate, n, p, cin, hd, cout](const Tensor<float>& g, std::vector<Variable>& in) {
            kernels::channel_gate_backward(g.data(), w1v.data(), w2v.data(), pooled.data(), hidden.data(),
                                           gate.data(), grad_accumulator(in[0]),
                                           grad_accumulator(in[1]), grad_accumulator(in[2]), n,
                                           p, cin, hd, cout);
        },
        op);
}

}  // namespace bnn::ops
