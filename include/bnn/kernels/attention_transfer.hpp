#pragma once
/// @file attention_transfer.hpp
/// The attention-transfer loss of Real-to-Binary (Sec. 4.2, Eq. 2) on raw pointers: spatial
/// attention maps of a feature map, their per-sample normalization and the distance between a
/// student's and a teacher's maps, each with its backward. The loss and its tape node are
/// losses/attention_transfer.hpp.
///
///   a [N, P, C] (P = H*W) -> q [N, P] = sum_c a^2 -> qhat [N, P] = q / divisor[n]
///   distance(qhat_student, qhat_teacher) -> loss, d loss / d qhat_student
#include <cmath>
#include <cstdint>

namespace bnn::kernels {

/// How each sample's attention map is normalized before the comparison.
enum class AttentionNorm {
    L2,    ///< Q / ||Q||_2 (the paper's Eq. 2 and the authors' later code)
    Max,   ///< Q / max_p Q (Larq Zoo's choice)
    None,  ///< Q unchanged
};

/// How the normalized maps of student and teacher are compared.
enum class AttentionDistance {
    Squared,   ///< mean over samples and positions of the squared difference (default)
    Absolute,  ///< mean over samples and positions of the absolute difference
    L2Norm,    ///< mean over samples of the L2 norm of the difference (Eq. 2 read literally)
};

/// a: [N, P, C] -> q: [N, P], q[n,p] = sum_c a[n,p,c]^2
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

/// dq, a: as above; da: [N, P, C], accumulated. da += 2 a dq
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

/// q: [N, P] -> qhat: [N, P], r: [N] the divisor used per sample (1 for None),
/// arg: [N] the position of the maximum (Max only, else -1).
inline void attention_normalize_forward(const float* q, float* qhat, float* r, int64_t* arg, int64_t n,
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

/// dqhat, qhat, r, arg: as above; dq: [N, P] (overwritten).
/// L2:  dq = (dqhat - qhat (qhat . dqhat)) / r      (derivative of q / ||q||)
/// Max: dq = dqhat / r, minus (qhat . dqhat) / r at the arg max (derivative of q / q_m)
inline void attention_normalize_backward(const float* dqhat, const float* qhat, const float* r,
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

/// The distance between normalized maps hs, ht: [N, P], scaled by `weight`; returns the loss and
/// writes its gradient with respect to hs into d: [N, P] (the teacher's is -d).
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

}  // namespace bnn::kernels
