#pragma once
/// @file batch_norm.hpp
/// ops::batch_norm: per-channel normalization over every dimension but the last, one tape node.
#include "bnn/autograd/grad_sink.hpp"
#include "bnn/autograd/variable.hpp"
#include "bnn/kernels/batch_norm.hpp"

namespace bnn::ops {

/// The channel count C of a batch norm's input x [..., C], after checking every argument against
/// it (gamma, beta, running statistics: [C] or undefined; eps > 0); `who` names the caller in the
/// bnn::Error. ops::batch_norm and dist::sync_batch_norm take the same arguments.
inline int64_t batch_norm_channels(const Variable& x, const Variable& gamma, const Variable& beta,
                                   const Tensor<float>& running_mean, const Tensor<float>& running_var, float eps,
                                   const char* who) {
    BNN_CHECK(x.shape().rank() >= 1, who, ": input needs a channel dimension, got a scalar");
    const Shape cs{x.dim(-1)};
    if (gamma.defined()) expect_shape(gamma.value(), cs, who, "gamma");
    if (beta.defined()) expect_shape(beta.value(), cs, who, "beta");
    if (running_mean.defined()) expect_shape(running_mean, cs, who, "running_mean");
    if (running_var.defined()) expect_shape(running_var, cs, who, "running_var");
    BNN_CHECK(eps > 0.f, who, ": eps must be positive, got ", eps);
    return cs[0];
}

/// Batch normalization of x [..., C] (NHWC activations or [N, C] features).
///
/// training: normalizes with the batch mean and biased variance over all rows, and updates
///   running_mean/running_var IN PLACE: r = (1 - momentum) * r + momentum * batch_stat, with the
///   unbiased variance (M / (M - 1)) for running_var, as PyTorch does. Needs more than one row.
///   Undefined running tensors skip the update.
/// eval: normalizes with running_mean/running_var (required).
/// gamma, beta: [C] scale and shift, or undefined Variables (1 and 0).
inline Variable batch_norm(const Variable& x, const Variable& gamma, const Variable& beta, Tensor<float> running_mean,
                           Tensor<float> running_var, bool training, float momentum = 0.1f, float eps = 1e-5f) {
    const int64_t C = batch_norm_channels(x, gamma, beta, running_mean, running_var, eps, "ops::batch_norm");
    const int64_t M = C ? x.numel() / C : 0;
    const Shape cs{C};
    Tensor<float> y = Tensor<float>::empty(x.shape());
    Tensor<float> xv = x.value();
    Tensor<float> gv = gamma.defined() ? gamma.value() : Tensor<float>();

    if (!training) {
        BNN_CHECK(running_mean.defined() && running_var.defined(),
                  "ops::batch_norm: eval mode needs running_mean and running_var, got undefined tensors");
        // Copies: a later training step may update the buffers before this backward runs.
        Tensor<float> rm = running_mean.clone(), rv = running_var.clone();
        kernels::batch_norm_eval_forward(xv.data(), gv.data(), optional_data(beta), rm.data(), rv.data(),
                                         y.data(), M, C, eps);
        return make_result(
            y, {x, gamma, beta},
            [xv, gv, rm, rv, M, C, eps](const Tensor<float>& g, std::vector<Variable>& in) {
                // In the kernel's write order: dgamma, dbeta, then dx (see GradSink).
                float* dgamma = grad_accumulator(in[1]);
                float* dbeta = grad_accumulator(in[2]);
                const auto dx = grad_sink(in[0]);
                kernels::batch_norm_eval_backward(xv.data(), gv.data(), g.data(), rm.data(), rv.data(), dx.data, dgamma,
                                                  dbeta, M, C, eps, dx.accumulate);
            },
            "batch_norm_eval");
    }

    BNN_CHECK(M > 1, "ops::batch_norm: training needs more than one value per channel, got input of shape ",
              x.shape().str());
    Tensor<float> mean = Tensor<float>::empty(cs), invstd = Tensor<float>::empty(cs), var = Tensor<float>::empty(cs);
    kernels::batch_norm_train_forward(xv.data(), gv.data(), optional_data(beta), y.data(), mean.data(),
                                      invstd.data(), var.data(), M, C, eps);
    if (running_mean.defined() && running_var.defined())
        kernels::batch_norm_update_running(running_mean.data(), running_var.data(), mean.data(), var.data(), double(M),
                                           momentum, C);
    return make_result(
        y, {x, gamma, beta},
        [xv, gv, mean, invstd, M, C](const Tensor<float>& g, std::vector<Variable>& in) {
            // In the kernel's write order: dgamma, dbeta, then dx (see GradSink).
            float* dgamma = grad_accumulator(in[1]);
            float* dbeta = grad_accumulator(in[2]);
            const auto dx = grad_sink(in[0]);
            kernels::batch_norm_train_backward(xv.data(), gv.data(), g.data(), mean.data(), invstd.data(), dx.data,
                                               dgamma, dbeta, M, C, dx.accumulate);
        },
        "batch_norm");
}

}  // namespace bnn::ops
