#pragma once
/// @file batch_norm.hpp
/// Batch normalization over the rows of x [M, C] (M = N*H*W for NHWC activations), per channel.
/// Statistics are summed in double: M reaches millions and float sums would drift.
#include <cmath>
#include <cstdint>
#include <vector>

#include "bnn/core/threads.hpp"
#include "bnn/kernels/accumulate.hpp"

namespace bnn::kernels {

namespace detail {
/// Per-channel sums over the M rows of [M, C] data: row(m, a, b) adds row m's terms into the
/// two accumulators a[C], b[C]. Rows are split over threads, each with private double sums,
/// merged at the end.
template <class RowFn>
void channel_sums(int64_t M, int64_t C, std::vector<double>& a, std::vector<double>& b, RowFn row) {
    a.assign(C, 0.0);
    b.assign(C, 0.0);
#pragma omp parallel if (worth_threading(M * C))
    {
        std::vector<double> la(C, 0.0), lb(C, 0.0);
#pragma omp for schedule(static) nowait
        for (int64_t m = 0; m < M; ++m) row(m, la.data(), lb.data());
#pragma omp critical(bnn_batch_norm_sums)
        for (int64_t c = 0; c < C; ++c) {
            a[c] += la[c];
            b[c] += lb[c];
        }
    }
}
}  // namespace detail

/// Training forward with batch statistics.
///   x [M, C], gamma/beta [C] or null (1 and 0), y [M, C];
///   saved_mean [C], saved_invstd [C] = 1/sqrt(biased var + eps), kept for backward;
///   batch_var [C] receives the biased batch variance (the op derives the running update).
inline void batch_norm_train_forward(const float* x, const float* gamma, const float* beta, float* y,
                                     float* saved_mean, float* saved_invstd, float* batch_var, int64_t M,
                                     int64_t C, float eps) {
    std::vector<double> sum, unused, sq;
    detail::channel_sums(M, C, sum, unused, [&](int64_t m, double* s, double*) {
        const float* r = x + m * C;
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) s[c] += r[c];
    });
    for (int64_t c = 0; c < C; ++c) sum[c] /= double(M);
    // Second pass around the mean: exact enough where E[x^2] - E[x]^2 would cancel.
    detail::channel_sums(M, C, sq, unused, [&](int64_t m, double* q, double*) {
        const float* r = x + m * C;
        const double* mu = sum.data();
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) {
            const double d = r[c] - mu[c];
            q[c] += d * d;
        }
    });
    std::vector<float> scale(C), shift(C);
    for (int64_t c = 0; c < C; ++c) {
        double var = sq[c] / double(M);
        double inv = 1.0 / std::sqrt(var + eps);
        saved_mean[c] = static_cast<float>(sum[c]);
        saved_invstd[c] = static_cast<float>(inv);
        batch_var[c] = static_cast<float>(var);
        double gm = gamma ? gamma[c] : 1.0;
        scale[c] = static_cast<float>(gm * inv);
        shift[c] = static_cast<float>((beta ? beta[c] : 0.0) - gm * inv * sum[c]);
    }
    const float* sc = scale.data();  // raw pointers: the outlined parallel body keeps them in registers
    const float* sh = shift.data();
#pragma omp parallel for schedule(static) if (worth_threading(M * C))
    for (int64_t m = 0; m < M; ++m)
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) y[m * C + c] = x[m * C + c] * sc[c] + sh[c];
}

namespace detail {
/// dx [M, C] (+)= k[c] * dy - a[c] - b[c] * xhat, the last pass of batch_norm_train_backward.
template <bool Accumulate>
void batch_norm_train_dx(const float* x, const float* dy, const float* mean, const float* invstd, const float* kp,
                         const float* ap, const float* bp, float* dx, int64_t M, int64_t C) {
#pragma omp parallel for schedule(static) if (worth_threading(M * C))
    for (int64_t m = 0; m < M; ++m)
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) {
            const float xhat = (x[m * C + c] - mean[c]) * invstd[c];
            put<Accumulate>(dx[m * C + c], kp[c] * dy[m * C + c] - ap[c] - bp[c] * xhat);
        }
}
/// dx [M, C] (+)= dy * k[c], the last pass of batch_norm_eval_backward.
template <bool Accumulate>
void batch_norm_eval_dx(const float* dy, const float* k, float* dx, int64_t M, int64_t C) {
#pragma omp parallel for schedule(static) if (worth_threading(M * C))
    for (int64_t m = 0; m < M; ++m)
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) put<Accumulate>(dx[m * C + c], dy[m * C + c] * k[c]);
}
}  // namespace detail

/// Training backward (batch statistics depend on x). Accumulates into the non-null outputs:
///   dx [M, C] += invstd/M * (M*dxhat - sum(dxhat) - xhat*sum(dxhat*xhat)),  dxhat = dy*gamma
///     (written, not added, with accumulate_dx false: dx is then a fresh gradient)
///   dgamma [C] += sum(dy * xhat),  dbeta [C] += sum(dy)
/// dgamma and dbeta are written before dx.
inline void batch_norm_train_backward(const float* x, const float* gamma, const float* dy, const float* mean,
                                      const float* invstd, float* dx, float* dgamma, float* dbeta, int64_t M,
                                      int64_t C, bool accumulate_dx = true) {
    std::vector<double> sdy, sdyx;  // sum(dy), sum(dy * xhat)
    detail::channel_sums(M, C, sdy, sdyx, [&](int64_t m, double* a, double* b) {
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) {
            const float g = dy[m * C + c];
            a[c] += g;
            b[c] += g * ((x[m * C + c] - mean[c]) * invstd[c]);
        }
    });
    for (int64_t c = 0; c < C; ++c) {
        if (dgamma) dgamma[c] += static_cast<float>(sdyx[c]);
        if (dbeta) dbeta[c] += static_cast<float>(sdy[c]);
    }
    if (!dx) return;
    std::vector<float> k(C), a(C), b(C);
    for (int64_t c = 0; c < C; ++c) {
        const double gm = gamma ? gamma[c] : 1.0;
        k[c] = static_cast<float>(gm * invstd[c]);                  // multiplies dy
        a[c] = static_cast<float>(gm * invstd[c] * sdy[c] / M);     // constant term
        b[c] = static_cast<float>(gm * invstd[c] * sdyx[c] / M);    // multiplies xhat
    }
    accumulate_dx ? detail::batch_norm_train_dx<true>(x, dy, mean, invstd, k.data(), a.data(), b.data(), dx, M, C)
                  : detail::batch_norm_train_dx<false>(x, dy, mean, invstd, k.data(), a.data(), b.data(), dx, M, C);
}

/// Eval-mode batch norm, y = gamma * (x - mean) / sqrt(var + eps) + beta, as one scale and shift
/// per channel: y = x * scale[c] + shift[c]. The one folding every eval path uses (the training
/// op and the inference graph), so they round alike. gamma/beta [C] may be null (1 and 0).
inline void batch_norm_fold(const float* gamma, const float* beta, const float* running_mean, const float* running_var,
                            int64_t C, float eps, float* scale, float* shift) {
    for (int64_t c = 0; c < C; ++c) {
        double inv = 1.0 / std::sqrt(double(running_var[c]) + eps);
        double gm = gamma ? gamma[c] : 1.0;
        scale[c] = static_cast<float>(gm * inv);
        shift[c] = static_cast<float>((beta ? beta[c] : 0.0) - gm * inv * running_mean[c]);
    }
}

inline void batch_norm_eval_forward(const float* x, const float* gamma, const float* beta, const float* running_mean,
                                    const float* running_var, float* y, int64_t M, int64_t C, float eps) {
    std::vector<float> scale(C), shift(C);
    batch_norm_fold(gamma, beta, running_mean, running_var, C, eps, scale.data(), shift.data());
    const float* sc = scale.data();
    const float* sh = shift.data();
#pragma omp parallel for schedule(static) if (worth_threading(M * C))
    for (int64_t m = 0; m < M; ++m)
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) y[m * C + c] = x[m * C + c] * sc[c] + sh[c];
}

/// Eval backward (statistics are constants). Accumulates:
///   dx += dy * gamma * invstd (written with accumulate_dx false);  dgamma += sum(dy * xhat);
///   dbeta += sum(dy).  dgamma and dbeta are written before dx.
inline void batch_norm_eval_backward(const float* x, const float* gamma, const float* dy, const float* running_mean,
                                     const float* running_var, float* dx, float* dgamma, float* dbeta, int64_t M,
                                     int64_t C, float eps, bool accumulate_dx = true) {
    std::vector<float> inv(C);
    for (int64_t c = 0; c < C; ++c) inv[c] = static_cast<float>(1.0 / std::sqrt(double(running_var[c]) + eps));
    if (dgamma || dbeta) {
        std::vector<double> sdy, sdyx;
        const float* iv = inv.data();
        detail::channel_sums(M, C, sdy, sdyx, [&](int64_t m, double* a, double* b) {
#pragma omp simd
            for (int64_t c = 0; c < C; ++c) {
                const float g = dy[m * C + c];
                a[c] += g;
                b[c] += g * ((x[m * C + c] - running_mean[c]) * iv[c]);
            }
        });
        for (int64_t c = 0; c < C; ++c) {
            if (dgamma) dgamma[c] += static_cast<float>(sdyx[c]);
            if (dbeta) dbeta[c] += static_cast<float>(sdy[c]);
        }
    }
    if (!dx) return;
    for (int64_t c = 0; c < C; ++c) inv[c] *= gamma ? gamma[c] : 1.f;
    accumulate_dx ? detail::batch_norm_eval_dx<true>(dy, inv.data(), dx, M, C)
                  : detail::batch_norm_eval_dx<false>(dy, inv.data(), dx, M, C);
}

}  // namespace bnn::kernels
