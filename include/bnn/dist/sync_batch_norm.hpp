#pragma once
/// @file sync_batch_norm.hpp
/// Synchronised batch normalization: in training, the statistics are those of the global batch
/// (every rank's rows), so N ranks x B/N normalize exactly as one process x B. Plain
/// nn::BatchNorm2d, the default, normalizes each rank's shard by its own statistics: no extra
/// communication, but a network with batch norm then trains slightly differently per rank count.
///
/// Cost: two small all-reduces (C + 1 and C doubles) in each forward and one (2C doubles) in
/// each backward, all blocking: they sit on the critical path.
#include <cstdint>
#include <string>
#include <vector>

#include "bnn/autograd/grad_sink.hpp"
#include "bnn/autograd/variable.hpp"
#include "bnn/dist/process_group.hpp"
#include "bnn/kernels/batch_norm.hpp"
#include "bnn/nn/batch_norm.hpp"
#include "bnn/nn/module.hpp"
#include "bnn/ops/batch_norm.hpp"

namespace bnn::dist {

/// Batch norm of x [..., C] over the rows of every rank of `group` (training), or with the
/// running statistics (eval, no communication). Running statistics are updated with the global
/// mean and unbiased global variance, identically on every rank.
///   backward: dx = k*dy - k/M*S(dy) - k/M*xhat*S(dy*xhat), k = gamma*invstd, M the global row count
///   and S the sums over every rank's rows; dgamma, dbeta get this rank's sums (GradientSync
///   averages them). Every rank must call it in the same order (it is a collective).
inline Variable sync_batch_norm(ProcessGroup& group, const Variable& x, const Variable& gamma, const Variable& beta,
                                Tensor<float> running_mean, Tensor<float> running_var, bool training,
                                float momentum = 0.1f, float eps = 1e-5f) {
    if (!training) return ops::batch_norm(x, gamma, beta, running_mean, running_var, false, momentum, eps);
    const int64_t C =
        ops::batch_norm_channels(x, gamma, beta, running_mean, running_var, eps, "dist::sync_batch_norm");
    const int64_t M = C ? x.numel() / C : 0;
    const Shape cs{C};
    const Tensor<float> xv = x.value();
    const float* xp = xv.data();

    // The kernels' passes (kernels/batch_norm.hpp) with the sums all-reduced between them.
    std::vector<double> sums(static_cast<size_t>(C + 1));  // per-channel sums, then the row count
    kernels::batch_norm_sums(xp, M, C, sums.data());
    sums[C] = static_cast<double>(M);
    group.all_reduce_sum(sums.data(), C + 1, "sync batch norm's sums");
    const double rows = sums[C];
    BNN_CHECK(rows > 1, "dist::sync_batch_norm: training needs more than one value per channel over all ranks, got ",
              rows);
    std::vector<double> mean(static_cast<size_t>(C)), sq(static_cast<size_t>(C));
    for (int64_t c = 0; c < C; ++c) mean[c] = sums[c] / rows;
    kernels::batch_norm_centred_squares(xp, mean.data(), M, C, sq.data());
    group.all_reduce_sum(sq.data(), C, "sync batch norm's squares");

    Tensor<float> saved_mean = Tensor<float>::empty(cs), invstd = Tensor<float>::empty(cs);
    Tensor<float> var = Tensor<float>::empty(cs);
    std::vector<float> scale(static_cast<size_t>(C)), shift(static_cast<size_t>(C));
    Tensor<float> gv = gamma.defined() ? gamma.value() : Tensor<float>();
    kernels::batch_norm_statistics(mean.data(), sq.data(), rows, gv.data(), optional_data(beta), eps, C,
                                   saved_mean.data(), invstd.data(), var.data(), scale.data(), shift.data());
    if (running_mean.defined() && running_var.defined())
        kernels::batch_norm_update_running(running_mean.data(), running_var.data(), saved_mean.data(), var.data(),
                                           rows, momentum, C);
    Tensor<float> y = Tensor<float>::empty(x.shape());
    kernels::batch_norm_normalize(xp, scale.data(), shift.data(), y.data(), M, C);

    ProcessGroup* g = &group;
    return make_result(
        y, {x, gamma, beta},
        [g, xv, gv, saved_mean, invstd, M, C, rows](const Tensor<float>& dy, std::vector<Variable>& in) {
            std::vector<double> s(static_cast<size_t>(2 * C));  // S(dy), then S(dy * xhat)
            double* sdy = s.data();
            double* sdyx = s.data() + C;
            kernels::batch_norm_grad_sums(xv.data(), dy.data(), saved_mean.data(), invstd.data(), M, C, sdy, sdyx);
            // This rank's sums for the parameters (GradientSync averages them), in the op's write
            // order: dgamma, dbeta, then dx (see GradSink).
            kernels::batch_norm_param_grads(sdy, sdyx, C, grad_accumulator(in[1]), grad_accumulator(in[2]));
            g->all_reduce_sum(s.data(), 2 * C, "sync batch norm's gradient sums");
            const auto dx = grad_sink(in[0]);
            if (dx.data)
                kernels::batch_norm_train_dx(xv.data(), gv.data(), dy.data(), saved_mean.data(), invstd.data(), sdy,
                                             sdyx, rows, dx.data, M, C, dx.accumulate);
        },
        "sync_batch_norm");
}

/// BatchNorm2d with statistics over every rank of a group in training (see the file comment).
/// It is a BatchNorm2d in everything else (parameters, buffers, names, eval mode), so checkpoints
/// load into either and inference and deployment files treat it as one.
class SyncBatchNorm2d : public nn::BatchNorm2d {
public:
    SyncBatchNorm2d(ProcessGroup& group, int64_t channels, float momentum = 0.1f, float eps = 1e-5f)
        : nn::BatchNorm2d(channels, momentum, eps), group_(&group) {}

    Variable forward(const Variable& x) override {
        const int r = x.shape().rank();
        BNN_CHECK((r == 4 || r == 2) && x.shape()[-1] == channels(), type_name(), "(", channels(),
                  "): expected input [N, H, W, ", channels(), "] or [N, ", channels(), "], got ", x.shape().str());
        return sync_batch_norm(*group_, x, weight, bias, running_mean, running_var, is_training(), momentum(), eps());
    }
    std::string type_name() const override { return "SyncBatchNorm2d"; }

private:
    ProcessGroup* group_;
};

}  // namespace bnn::dist
