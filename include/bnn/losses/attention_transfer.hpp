#pragma once
/// @file attention_transfer.hpp
/// Real-to-binary attention matching (Martinez et al. 2020, Sec. 4.2, Eq. 2).
///
/// For a feature map A [N,H,W,C] the spatial attention map is Q = sum_c A_c^2, one value per
/// sample and position ([N, H*W]). Each sample's map is normalized (by its L2 norm by default),
/// and the student's map is compared with the teacher's at every transfer point:
///
///     L = beta * mean_j mean_{n,p} ( Q_S^j/|Q_S^j| - Q_T^j/|Q_T^j| )^2
///
/// The whole loss over every transfer point is one tape node whose backward is written out by
/// hand (no per-element graph), so eight transfer points cost eight passes over the features.
#include <cstdint>
#include <utility>
#include <vector>

#include "bnn/autograd/variable.hpp"
#include "bnn/core/error.hpp"
#include "bnn/core/tensor.hpp"
#include "bnn/kernels/attention_transfer.hpp"
#include "bnn/kernels/elementwise.hpp"

namespace bnn::losses {

// The map normalization and the distance are the kernels' enums (kernels/attention_transfer.hpp).
using kernels::AttentionDistance;
using kernels::AttentionNorm;

/// Options of attention_transfer(). `beta` weighs the loss (30 in stages 1-2 of the paper's recipe
/// as reproduced by Larq Zoo; 1 here so that the weight is set where the losses are combined).
struct AttentionOptions {
    AttentionNorm norm = AttentionNorm::L2;
    AttentionDistance distance = AttentionDistance::Squared;
    float beta = 1.f;
    /// Norms below eps are replaced by eps (an all-zero map stays zero instead of dividing by 0).
    float eps = 1e-12f;
};

namespace detail {

/// Saved forward state of one side (student or teacher) of one transfer point.
struct AttentionSide {
    Tensor<float> features;  // [N, H, W, C]
    Tensor<float> qhat;      // [N, P]
    Tensor<float> divisor;   // [N]
    std::vector<int64_t> arg;
};

inline AttentionSide attention_side(const Tensor<float>& a, const AttentionOptions& o) {
    const int64_t n = a.dim(0), p = a.dim(1) * a.dim(2), c = a.dim(3);
    AttentionSide s{a, Tensor<float>::empty({n, p}), Tensor<float>::empty({n}), std::vector<int64_t>(n)};
    Tensor<float> q = Tensor<float>::empty({n, p});
    kernels::attention_map_forward(a.data(), q.data(), n, p, c);
    kernels::attention_normalize_forward(q.data(), s.qhat.data(), s.divisor.data(), s.arg.data(), n, p, o.norm, o.eps);
    return s;
}

/// Back-propagates dqhat: [N, P] of one side into its features' gradient (accumulated).
inline void attention_side_backward(const AttentionSide& s, const Tensor<float>& dqhat, Variable& input,
                                    const AttentionOptions& o) {
    const Tensor<float>& a = s.features;
    const int64_t n = a.dim(0), p = a.dim(1) * a.dim(2), c = a.dim(3);
    Tensor<float> dq = Tensor<float>::empty({n, p});
    kernels::attention_normalize_backward(dqhat.data(), s.qhat.data(), s.divisor.data(), s.arg.data(), dq.data(), n,
                                          p, o.norm, o.eps);
    kernels::attention_map_backward(dq.data(), a.data(), input.grad().data(), n, p, c);
}

}  // namespace detail

/// The spatial attention map of features A [N,H,W,C]: Q [N, H*W] with Q = sum_c A_c^2, each
/// sample normalized as `norm` says. Not differentiable (a plain tensor), for inspection and
/// visualisation; the loss below differentiates through the same computation.
inline Tensor<float> attention_map(const Tensor<float>& features, AttentionNorm norm = AttentionNorm::L2,
                                   float eps = 1e-12f) {
    expect_rank(features, 4, "attention_map", "features");
    AttentionOptions o;
    o.norm = norm;
    o.eps = eps;
    return detail::attention_side(features, o).qhat;
}

/// Attention-transfer loss over a list of transfer points, each a (student, teacher) pair of
/// feature maps [N,H,W,C] with equal N, H and W (channel counts may differ). The result (Shape{})
/// is beta times the mean over points of the chosen distance between normalized attention maps.
/// Gradients flow to every input that requires one; a frozen teacher's features require none.
inline Variable attention_transfer(const std::vector<std::pair<Variable, Variable>>& points,
                                   const AttentionOptions& options = {}) {
    BNN_CHECK(!points.empty(), "attention_transfer: expected at least one (student, teacher) pair, got none");
    BNN_CHECK(options.eps > 0.f, "attention_transfer: eps must be > 0, got ", options.eps);
    std::vector<Variable> inputs;
    std::vector<std::pair<detail::AttentionSide, detail::AttentionSide>> saved;
    std::vector<Tensor<float>> dstudent;  // d loss / d qhat_student per point
    double loss = 0;
    const double weight = static_cast<double>(options.beta) / static_cast<double>(points.size());
    for (size_t j = 0; j < points.size(); ++j) {
        const auto& [s, t] = points[j];
        BNN_CHECK(s.defined() && t.defined(), "attention_transfer: point ", j, " has an undefined feature map");
        BNN_CHECK(s.shape().rank() == 4 && t.shape().rank() == 4, "attention_transfer: point ", j,
                  " expects [N,H,W,C] feature maps, got student ", s.shape().str(), " and teacher ",
                  t.shape().str());
        BNN_CHECK(s.dim(0) == t.dim(0) && s.dim(1) == t.dim(1) && s.dim(2) == t.dim(2), "attention_transfer: point ",
                  j, " needs equal batch and spatial extents, got student ", s.shape().str(), " and teacher ",
                  t.shape().str());
        auto side_s = detail::attention_side(s.value(), options);
        auto side_t = detail::attention_side(t.value(), options);
        Tensor<float> d = Tensor<float>::empty(side_s.qhat.shape());
        loss += kernels::attention_distance(side_s.qhat.data(), side_t.qhat.data(), d.data(), d.dim(0), d.dim(1),
                                           options.distance, weight);
        inputs.push_back(s);
        inputs.push_back(t);
        saved.emplace_back(std::move(side_s), std::move(side_t));
        dstudent.push_back(d);
    }
    Tensor<float> out = Tensor<float>::full(Shape{}, static_cast<float>(loss));
    return make_result(
        out, std::move(inputs),
        [saved = std::move(saved), dstudent = std::move(dstudent), options](const Tensor<float>& g,
                                                                            std::vector<Variable>& in) {
            const float seed = g[0];
            for (size_t j = 0; j < saved.size(); ++j) {
                for (int side = 0; side < 2; ++side) {
                    Variable& v = in[2 * j + side];
                    if (!v.defined() || !v.requires_grad()) continue;
                    // The teacher's map enters the difference with the opposite sign.
                    const float sign = side == 0 ? seed : -seed;
                    Tensor<float> dq = Tensor<float>::empty(dstudent[j].shape());
                    kernels::scale_forward(dstudent[j].data(), sign, dq.data(), dq.numel());
                    detail::attention_side_backward(side == 0 ? saved[j].first : saved[j].second, dq, v, options);
                }
            }
        },
        "attention_transfer");
}

/// Attention-transfer loss of one transfer point (see the list version).
inline Variable attention_transfer(const Variable& student, const Variable& teacher,
                                   const AttentionOptions& options = {}) {
    return attention_transfer(std::vector<std::pair<Variable, Variable>>{{student, teacher}}, options);
}

}  // namespace bnn::losses
