#pragma once
/// @file sync_batch_norm.hpp
/// Synchronised batch normalization: in training, the statistics are those of the global batch
/// (every rank's rows), so N ranks x B/N normalize exactly as one process x B. Plain
/// nn::BatchNorm2d, the default, normalizes each rank's shard by its own statistics: no extra
/// communication, but a network with batch norm then trains slightly differently per rank count.
///
/// Cost: two small all-reduces (2C + 1 and C doubles) in each forward and one (2C doubles) in
/// each backward, all blocking: they sit on the critical path.
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "bnn/autograd/grad_sink.hpp"
#include "bnn/autograd/variable.hpp"
#include "bnn/dist/process_group.hpp"
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
    BNN_CHECK(x.shape().rank() >= 1, "dist::sync_batch_norm: input needs a channel dimension, got a scalar");
    const int64_t C = x.dim(-1);
    const int64_t M = C ? x.numel() / C : 0;
    const Shape cs{C};
    if (gamma.defined()) expect_shape(gamma.value(), cs, "dist::sync_batch_norm", "gamma");
    if (beta.defined()) expect_shape(beta.value(), cs, "dist::sync_batch_norm", "beta");
    BNN_CHECK(eps > 0.f, "dist::sync_batch_norm: eps must be positive, got ", eps);
    const Tensor<float> xv = x.value();
    const float* xp = xv.data();

    std::vector<double> sums(static_cast<size_t>(C + 1), 0.0);  // per-channel sums, then the row count
    for (int64_t m = 0; m < M; ++m)
        for (int64_t c = 0; c < C; ++c) sums[c] += xp[m * C + c];
    sums[C] = static_cast<double>(M);
    group.all_reduce_sum(sums.data(), C + 1, "sync batch norm's sums");
    const double rows = sums[C];
    BNN_CHECK(rows > 1, "dist::sync_batch_norm: training needs more than one value per channel over all ranks, got ",
              rows);
    std::vector<double> mean(static_cast<size_t>(C)), sq(static_cast<size_t>(C), 0.0);
    for (int64_t c = 0; c < C; ++c) mean[c] = sums[c] / rows;
    // Second pass around the global mean, as the single-process kernel does.
    for (int64_t m = 0; m < M; ++m)
        for (int64_t c = 0; c < C; ++c) {
            const double d = xp[m * C + c] - mean[c];
            sq[c] += d * d;
        }
    group.all_reduce_sum(sq.data(), C, "sync batch norm's squares");

    Tensor<float> saved_mean = Tensor<float>::empty(cs), invstd = Tensor<float>::empty(cs);
    std::vector<float> scale(static_cast<size_t>(C)), shift(static_cast<size_t>(C));
    const float* gp = gamma.defined() ? gamma.value().data() : nullptr;
    const float* bp = optional_data(beta);
    for (int64_t c = 0; c < C; ++c) {
        const double var = sq[c] / rows;
        const double inv = 1.0 / std::sqrt(var + eps);
        saved_mean[c] = static_cast<float>(mean[c]);
        invstd[c] = static_cast<float>(inv);
        const double g = gp ? gp[c] : 1.0;
        scale[c] = static_cast<float>(g * inv);
        shift[c] = static_cast<float>((bp ? bp[c] : 0.0) - g * inv * mean[c]);
        if (running_mean.defined() && running_var.defined()) {
            running_mean[c] = (1.f - momentum) * running_mean[c] + momentum * static_cast<float>(mean[c]);
            running_var[c] = (1.f - momentum) * running_var[c] + momentum * static_cast<float>(var * rows / (rows - 1));
        }
    }
    Tensor<float> y = Tensor<float>::empty(x.shape());
    float* yp = y.data();
    for (int64_t m = 0; m < M; ++m)
        for (int64_t c = 0; c < C; ++c) yp[m * C + c] = xp[m * C + c] * scale[c] + shift[c];

    Tensor<float> gv = gamma.defined() ? gamma.value() : Tensor<float>();
    ProcessGroup* g = &group;
    return make_result(
        y, {x, gamma, beta},
        [g, xv, gv, saved_mean, invstd, M, C, rows](const Tensor<float>& dy, std::vector<Variable>& in) {
            const float* xq = xv.data();
            const float* d = dy.data();
            std::vector<double> s(static_cast<size_t>(2 * C), 0.0);  // S(dy), then S(dy * xhat)
            for (int64_t m = 0; m < M; ++m)
                for (int64_t c = 0; c < C; ++c) {
                    const double xhat = (xq[m * C + c] - saved_mean[c]) * invstd[c];
                    s[c] += d[m * C + c];
                    s[C + c] += d[m * C + c] * xhat;
                }
            std::vector<double> local = s;
            g->all_reduce_sum(s.data(), 2 * C, "sync batch norm's gradient sums");
            if (in[1].defined() && in[1].requires_grad()) {
                float* dgamma = grad_accumulator(in[1]);
                for (int64_t c = 0; c < C; ++c) dgamma[c] += static_cast<float>(local[C + c]);
            }
            if (in[2].defined() && in[2].requires_grad()) {
                float* dbeta = grad_accumulator(in[2]);
                for (int64_t c = 0; c < C; ++c) dbeta[c] += static_cast<float>(local[c]);
            }
            if (!in[0].requires_grad()) return;
            std::vector<float> k(static_cast<size_t>(C)), a(static_cast<size_t>(C)), b(static_cast<size_t>(C));
            for (int64_t c = 0; c < C; ++c) {
                const double gm = gv.defined() ? gv[c] : 1.0;
                k[c] = static_cast<float>(gm * invstd[c]);
                a[c] = static_cast<float>(gm * invstd[c] * s[c] / rows);
                b[c] = static_cast<float>(gm * invstd[c] * s[C + c] / rows);
            }
            float* dx = grad_accumulator(in[0]);
            for (int64_t m = 0; m < M; ++m)
                for (int64_t c = 0; c < C; ++c) {
                    const float xhat = (xq[m * C + c] - saved_mean[c]) * invstd[c];
                    dx[m * C + c] += k[c] * d[m * C + c] - a[c] - b[c] * xhat;
                }
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
