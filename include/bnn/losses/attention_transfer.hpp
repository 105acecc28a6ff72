#pragma once
/// @file attention_transfer.hpp
/// Real-to-binary attention matching (Martinez et al. 2020, Sec. 4.2, Eq. 2).
///
/// For a feature map A [N,H,W,C] the spatial attention map is Q = sum_c A_c^2, one value per
/// sample and position ([N, H*W]). Each sample's map is normalised (by its L2 norm by default),
/// and the student's map is compared with the teacher's at every transfer point:
///
///     L = beta * mean_j mean_{n,p} ( Q_S^j/|Q_S^j| - Q_T^j/|Q_T^j| )^2
///
/// The whole loss over every transfer point is one tape node whose backward is written out by
/// hand (no per-element graph), so eight transfer points cost eight passes over the features.
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include "bnn/autograd/variable.hpp"
#include "bnn/core/error.hpp"
#include "bnn/core/tensor.hpp"

namespace bnn::losses {

/// How each sample's attention map is normalised before the comparison.
enum class AttentionNorm {
    L2,    ///< Q / ||Q||_2 (the paper's Eq. 2 and the authors' later code)
    Max,   ///< Q / max_p Q (Larq Zoo's choice)
    None,  ///< Q unchanged
};

/// How the normalised maps of student and teacher are compared.
enum class AttentionDistance {
    Squared,   ///< mean over samples and positions of the squared difference (default)
    Absolute,  ///< mean over samples and positions of the absolute difference
    L2Norm,    ///< mean over samples of the L2 norm of the difference (Eq. 2 read literally)
};

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

// a: [N, P, C] -> q: [N, P], q[n,p] = sum_c a[n,p,c]^2
inline void attention_map_forward(const float* a, float* q, int64_t n, int64_t p, int64_t c) {
    for (int64_t i = 0; i < n * p; ++i) {
        const float* row = a + i * c;
        double s = 0;  // channels can number 512: keep the sum of squares in double
        // Vector lanes of partial sums (a serial chain of double adds was 1.4% of a step); in
        // double, the changed summation order stays far below float rounding of the result.
#pragma omp simd reduction(+ : s)
        for (int64_t k = 0; k < c; ++k) s += static_cast<double>(row[k]) * row[k];
        q[i] = static_cast<float>(s);
    }
}

// dq, a: as above; da: [N, P, C], accumulated. da += 2 a dq
inline void attention_map_backward(const float* dq, const float* a, float* da, int64_t n, int64_t p,
                                   int64_t c) {
    for (int64_t i = 0; i < n * p; ++i) {
        const float g = 2.f * dq[i];
        const float* row = a + i * c;
        float* drow = da + i * c;
#pragma omp simd
        for (int64_t k = 0; k < c; ++k) drow[k] += g * row[k];
    }
}

// q: [N, P] -> qhat: [N, P], r: [N] the divisor used per sample (1 for None),
// arg: [N] the position of the maximum (Max only, else -1).
inline void attention_normalise_forward(const float* q, float* qhat, float* r, int64_t* arg, int64_t n,
                                        int64_t p, AttentionNorm norm, float eps) {
    for (int64_t s = 0; s < n; ++s) {
        const float* row = q + s * p;
        double d = 1;
        arg[s] = -1;
        if (norm == AttentionNorm::L2) {
            double ss = 0;
            for (int64_t i = 0; i < p; ++i) ss += static_cast<double>(row[i]) * row[i];
            d = std::sqrt(ss);
        } else if (norm == AttentionNorm::Max) {
            int64_t m = 0;
            for (int64_t i = 1; i < p; ++i)
                if (row[i] > row[m]) m = i;
            d = row[m];
            arg[s] = m;
        }
        if (norm != AttentionNorm::None && d < eps) {
            d = eps;
            arg[s] = -1;  // a clamped divisor is a constant: no gradient flows through it
        }
        r[s] = static_cast<float>(d);
        for (int64_t i = 0; i < p; ++i) qhat[s * p + i] = static_cast<float>(row[i] / d);
    }
}

// dqhat, qhat, r, arg: as above; dq: [N, P] (overwritten).
// L2:  dq = (dqhat - qhat (qhat . dqhat)) / r      (derivative of q / ||q||)
// Max: dq = dqhat / r, minus (qhat . dqhat) / r at the arg max (derivative of q / q_m)
inline void attention_normalise_backward(const float* dqhat, const float* qhat, const float* r,
                                         const int64_t* arg, float* dq, int64_t n, int64_t p,
                                         AttentionNorm norm, float eps) {
    for (int64_t s = 0; s < n; ++s) {
        const float* g = dqhat + s * p;
        const float* h = qhat + s * p;
        float* out = dq + s * p;
        const bool clamped = norm != AttentionNorm::None && r[s] <= eps;
        double dot = 0;
        for (int64_t i = 0; i < p; ++i) dot += static_cast<double>(h[i]) * g[i];
        for (int64_t i = 0; i < p; ++i) {
            double v = g[i];
            if (norm == AttentionNorm::L2 && !clamped) v -= h[i] * dot;
            out[i] = static_cast<float>(v / r[s]);
        }
        if (norm == AttentionNorm::Max && arg[s] >= 0) out[arg[s]] -= static_cast<float>(dot / r[s]);
    }
}

// The distance between normalised maps hs, ht: [N, P], scaled by `weight`; returns the loss and
// writes its gradient with respect to hs into d: [N, P] (the teacher's is -d).
inline double attention_distance(const float* hs, const float* ht, float* d, int64_t n, int64_t p,
                                 AttentionDistance dist, double weight) {
    double loss = 0;
    if (dist == AttentionDistance::L2Norm) {
        for (int64_t s = 0; s < n; ++s) {
            double ss = 0;
            for (int64_t i = 0; i < p; ++i) {
                double e = static_cast<double>(hs[s * p + i]) - ht[s * p + i];
                ss += e * e;
            }
            const double norm = std::sqrt(ss);
            loss += weight * norm / static_cast<double>(n);
            for (int64_t i = 0; i < p; ++i) {
                double e = static_cast<double>(hs[s * p + i]) - ht[s * p + i];
                d[s * p + i] = norm > 0 ? static_cast<float>(weight * e / (norm * n)) : 0.f;
            }
        }
        return loss;
    }
    const double inv = weight / static_cast<double>(n * p);
    for (int64_t i = 0; i < n * p; ++i) {
        double e = static_cast<double>(hs[i]) - ht[i];
        if (dist == AttentionDistance::Squared) {
            loss += inv * e * e;
            d[i] = static_cast<float>(2.0 * inv * e);
        } else {
            loss += inv * std::abs(e);
            d[i] = static_cast<float>(e > 0 ? inv : (e < 0 ? -inv : 0.0));
        }
    }
    return loss;
}

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
    attention_map_forward(a.data(), q.data(), n, p, c);
    attention_normalise_forward(q.data(), s.qhat.data(), s.divisor.data(), s.arg.data(), n, p, o.norm, o.eps);
    return s;
}

// Back-propagates dqhat: [N, P] of one side into its features' gradient (accumulated).
inline void attention_side_backward(const AttentionSide& s, const Tensor<float>& dqhat, Variable& input,
                                    const AttentionOptions& o) {
    const Tensor<float>& a = s.features;
    const int64_t n = a.dim(0), p = a.dim(1) * a.dim(2), c = a.dim(3);
    Tensor<float> dq = Tensor<float>::empty({n, p});
    attention_normalise_backward(dqhat.data(), s.qhat.data(), s.divisor.data(), s.arg.data(), dq.data(), n, p,
                                 o.norm, o.eps);
    attention_map_backward(dq.data(), a.data(), input.grad().data(), n, p, c);
}

}  // namespace detail

/// The spatial attention map of features A [N,H,W,C]: Q [N, H*W] with Q = sum_c A_c^2, each
/// sample normalised as `norm` says. Not differentiable (a plain tensor), for inspection and
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
/// is beta times the mean over points of the chosen distance between normalised attention maps.
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
        loss += detail::attention_distance(side_s.qhat.data(), side_t.qhat.data(), d.data(), d.dim(0), d.dim(1),
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
                    for (int64_t i = 0; i < dq.numel(); ++i) dq[i] = sign * dstudent[j][i];
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
