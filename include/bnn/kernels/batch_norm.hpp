#pragma once
/// @file batch_norm.hpp
/// Batch normalization over the rows of x [M, C] (M = N*H*W for NHWC activations), per channel.
/// Statistics are summed in double: M reaches millions and float sums would drift.
///
/// Training runs in passes, each a function of its own, so that data-parallel batch norm
/// (dist/sync_batch_norm.hpp) can all-reduce the per-channel sums between them:
///   forward   batch_norm_sums -> mean -> batch_norm_centred_squares -> batch_norm_statistics
///             -> batch_norm_normalize
///   backward  batch_norm_grad_sums -> batch_norm_param_grads, batch_norm_train_dx
/// batch_norm_train_forward / batch_norm_train_backward run them in sequence over one process's rows.
#include <cmath>
#include <cstdint>
#include <vector>

#include "bnn/core/threads.hpp"
#include "bnn/kernels/accumulate.hpp"

namespace bnn::kernels {

namespace detail {
/// Per-channel sums over the M rows of [M, C] data: a[C], b[C] = sums of the two terms that
/// terms(m, c, ta, tb) gives for row m, channel c. Four rows go into each sum at once: one row
/// at a time, a narrow C waited on the previous row's store of the same sums (docs/performance.md,
/// "Batch norm"). Rows are split over threads, each with private double sums, merged at the end.
template <class Terms>
void channel_sums(int64_t M, int64_t C, double* a, double* b, Terms terms) {
    for (int64_t c = 0; c < C; ++c) a[c] = b[c] = 0.0;
    const int64_t quads = (M + 3) / 4;
#pragma omp parallel if (worth_threading(M * C))
    {
        std::vector<double> la(C, 0.0), lb(C, 0.0);
        double* __restrict sa = la.data();
        double* __restrict sb = lb.data();
#pragma omp for schedule(static) nowait
        for (int64_t q = 0; q < quads; ++q) {
            const int64_t m = 4 * q;
            if (m + 4 <= M) {
#pragma omp simd
                for (int64_t c = 0; c < C; ++c) {
                    double a0, b0, a1, b1, a2, b2, a3, b3;
                    terms(m, c, a0, b0);
                    terms(m + 1, c, a1, b1);
                    terms(m + 2, c, a2, b2);
                    terms(m + 3, c, a3, b3);
                    sa[c] += (a0 + a1) + (a2 + a3);
                    sb[c] += (b0 + b1) + (b2 + b3);
                }
            } else {
                for (int64_t r = m; r < M; ++r)
#pragma omp simd
                    for (int64_t c = 0; c < C; ++c) {
                        double ta, tb;
                        terms(r, c, ta, tb);
                        sa[c] += ta;
                        sb[c] += tb;
                    }
            }
        }
#pragma omp critical(bnn_batch_norm_sums)
        for (int64_t c = 0; c < C; ++c) {
            a[c] += la[c];
            b[c] += lb[c];
        }
    }
}
}  // namespace detail

/// Forward pass 1: sum [C] = sum over the M rows of x [M, C].
inline void batch_norm_sums(const float* x, int64_t M, int64_t C, double* sum) {
    std::vector<double> unused(C);
    detail::channel_sums(M, C, sum, unused.data(), [&](int64_t m, int64_t c, double& term, double& none) {
        term = x[m * C + c];
        none = 0.0;
    });
}

/// Forward pass 2: sq [C] = sum over the rows of (x - mean[c])^2. Around the mean rather than
/// E[x^2] - E[x]^2, which would cancel.
inline void batch_norm_centred_squares(const float* x, const double* mean, int64_t M, int64_t C, double* sq) {
    std::vector<double> unused(C);
    detail::channel_sums(M, C, sq, unused.data(), [&](int64_t m, int64_t c, double& term, double& none) {
        const double d = x[m * C + c] - mean[c];
        term = d * d;
        none = 0.0;
    });
}

/// From the mean [C] and centred squares [C] over `rows` rows (every rank's, in sync BN):
///   saved_mean [C], saved_invstd [C] = 1/sqrt(biased var + eps) (kept for backward),
///   batch_var [C] the biased variance, and scale/shift [C] of y = x * scale + shift.
/// gamma/beta [C] or null (1 and 0).
inline void batch_norm_statistics(const double* mean, const double* sq, double rows, const float* gamma,
                                  const float* beta, float eps, int64_t C, float* saved_mean, float* saved_invstd,
                                  float* batch_var, float* scale, float* shift) {
    for (int64_t c = 0; c < C; ++c) {
        double var = sq[c] / rows;
        double inv = 1.0 / std::sqrt(var + eps);
        saved_mean[c] = static_cast<float>(mean[c]);
        saved_invstd[c] = static_cast<float>(inv);
        batch_var[c] = static_cast<float>(var);
        double gm = gamma ? gamma[c] : 1.0;
        scale[c] = static_cast<float>(gm * inv);
        shift[c] = static_cast<float>((beta ? beta[c] : 0.0) - gm * inv * mean[c]);
    }
}

/// y [M, C] = x * scale[c] + shift[c]: the last forward pass, in training and eval alike.
inline void batch_norm_normalize(const float* x, const float* scale, const float* shift, float* y, int64_t M,
                                 int64_t C) {
#pragma omp parallel for schedule(static) if (worth_threading(M * C))
    for (int64_t m = 0; m < M; ++m)
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) y[m * C + c] = x[m * C + c] * scale[c] + shift[c];
}

/// running_mean/running_var [C] move towards the batch's mean and unbiased variance over `rows`
/// rows: r = (1 - momentum) * r + momentum * batch statistic, as PyTorch does.
inline void batch_norm_update_running(float* running_mean, float* running_var, const float* mean,
                                      const float* batch_var, double rows, float momentum, int64_t C) {
    const float unbias = static_cast<float>(rows) / static_cast<float>(rows - 1);
    for (int64_t c = 0; c < C; ++c) {
        running_mean[c] = (1.f - momentum) * running_mean[c] + momentum * mean[c];
        running_var[c] = (1.f - momentum) * running_var[c] + momentum * batch_var[c] * unbias;
    }
}

/// Training forward with batch statistics, the passes above over this process's rows.
///   x [M, C], gamma/beta [C] or null (1 and 0), y [M, C];
///   saved_mean [C], saved_invstd [C] = 1/sqrt(biased var + eps), kept for backward;
///   batch_var [C] receives the biased batch variance (the op derives the running update).
inline void batch_norm_train_forward(const float* x, const float* gamma, const float* beta, float* y,
                                     float* saved_mean, float* saved_invstd, float* batch_var, int64_t M,
                                     int64_t C, float eps) {
    std::vector<double> mean(C), sq(C);
    batch_norm_sums(x, M, C, mean.data());
    for (int64_t c = 0; c < C; ++c) mean[c] /= double(M);
    batch_norm_centred_squares(x, mean.data(), M, C, sq.data());
    std::vector<float> scale(C), shift(C);
    batch_norm_statistics(mean.data(), sq.data(), double(M), gamma, beta, eps, C, saved_mean, saved_invstd, batch_var,
                          scale.data(), shift.data());
    batch_norm_normalize(x, scale.data(), shift.data(), y, M, C);
}

/// Backward pass 1: sdy [C] = sum(dy), sdyx [C] = sum(dy * xhat), xhat = (x - mean) * invstd,
/// over the rows of x, dy [M, C].
inline void batch_norm_grad_sums(const float* x, const float* dy, const float* mean, const float* invstd, int64_t M,
                                 int64_t C, double* sdy, double* sdyx) {
    detail::channel_sums(M, C, sdy, sdyx, [&](int64_t m, int64_t c, double& dy_term, double& dyx_term) {
        const float g = dy[m * C + c];
        dy_term = g;
        dyx_term = g * ((x[m * C + c] - mean[c]) * invstd[c]);
    });
}

/// dgamma [C] += sdyx, dbeta [C] += sdy, each skipped when null.
inline void batch_norm_param_grads(const double* sdy, const double* sdyx, int64_t C, float* dgamma, float* dbeta) {
    for (int64_t c = 0; c < C; ++c) {
        if (dgamma) dgamma[c] += static_cast<float>(sdyx[c]);
        if (dbeta) dbeta[c] += static_cast<float>(sdy[c]);
    }
}

namespace detail {
/// dx [M, C] (+)= k[c] * dy - a[c] - b[c] * xhat, the apply pass of batch_norm_train_dx.
template <bool Accumulate>
void batch_norm_train_dx_rows(const float* x, const float* dy, const float* mean, const float* invstd, const float* kp,
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
void batch_norm_eval_dx_rows(const float* dy, const float* k, float* dx, int64_t M, int64_t C) {
#pragma omp parallel for schedule(static) if (worth_threading(M * C))
    for (int64_t m = 0; m < M; ++m)
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) put<Accumulate>(dx[m * C + c], dy[m * C + c] * k[c]);
}
}  // namespace detail

/// Backward pass 2, from the sums of pass 1 over `rows` rows (every rank's, in sync BN):
///   dx [M, C] += k*dy - k/rows*sdy - k/rows*sdyx*xhat,  k = gamma*invstd
///   (written, not added, with accumulate_dx false: dx is then a fresh gradient).
inline void batch_norm_train_dx(const float* x, const float* gamma, const float* dy, const float* mean,
                                const float* invstd, const double* sdy, const double* sdyx, double rows, float* dx,
                                int64_t M, int64_t C, bool accumulate_dx = true) {
    std::vector<float> k(C), a(C), b(C);
    for (int64_t c = 0; c < C; ++c) {
        const double gm = gamma ? gamma[c] : 1.0;
        k[c] = static_cast<float>(gm * invstd[c]);                   // multiplies dy
        a[c] = static_cast<float>(gm * invstd[c] * sdy[c] / rows);   // constant term
        b[c] = static_cast<float>(gm * invstd[c] * sdyx[c] / rows);  // multiplies xhat
    }
    accumulate_dx ? detail::batch_norm_train_dx_rows<true>(x, dy, mean, invstd, k.data(), a.data(), b.data(), dx, M, C)
                  : detail::batch_norm_train_dx_rows<false>(x, dy, mean, invstd, k.data(), a.data(), b.data(), dx, M, C);
}

/// Training backward (batch statistics depend on x), both passes over this process's rows.
/// Accumulates into the non-null outputs:
///   dx [M, C] += invstd/M * (M*dxhat - sum(dxhat) - xhat*sum(dxhat*xhat)),  dxhat = dy*gamma
///     (written, not added, with accumulate_dx false: dx is then a fresh gradient)
///   dgamma [C] += sum(dy * xhat),  dbeta [C] += sum(dy)
/// dgamma and dbeta are written before dx.
inline void batch_norm_train_backward(const float* x, const float* gamma, const float* dy, const float* mean,
                                      const float* invstd, float* dx, float* dgamma, float* dbeta, int64_t M,
                                      int64_t C, bool accumulate_dx = true) {
    std::vector<double> sdy(C), sdyx(C);
    batch_norm_grad_sums(x, dy, mean, invstd, M, C, sdy.data(), sdyx.data());
    batch_norm_param_grads(sdy.data(), sdyx.data(), C, dgamma, dbeta);
    if (dx) batch_norm_train_dx(x, gamma, dy, mean, invstd, sdy.data(), sdyx.data(), double(M), dx, M, C, accumulate_dx);
}

/// Eval-mode batch norm, y = gamma * (x - mean) / sqrt(var + eps) + beta, folded into one scale
/// and shift per channel: y = x * scale[c] + shift[c]. Every eval path (the training op and the
/// inference graph) folds with this function, so they round alike. gamma/beta [C] may be null
/// (1 and 0).
inline void batch_norm_fold(const float* gamma, const float* beta, const float* running_mean, const float* running_var,
                            int64_t C, float eps, float* scale, float* shift) {
    for (int64_t c = 0; c < C; ++c) {
        double inv = 1.0 / std::sqrt(double(running_var[c]) + eps);
        double gm = gamma ? gamma[c] : 1.0;
        scale[c] = static_cast<float>(gm * inv);
        shift[c] = static_cast<float>((beta ? beta[c] : 0.0) - gm * inv * running_mean[c]);
    }
}

/// Eval forward: x [M, C] -> y [M, C] with the running statistics [C], folded as above.
inline void batch_norm_eval_forward(const float* x, const float* gamma, const float* beta, const float* running_mean,
                                    const float* running_var, float* y, int64_t M, int64_t C, float eps) {
    std::vector<float> scale(C), shift(C);
    batch_norm_fold(gamma, beta, running_mean, running_var, C, eps, scale.data(), shift.data());
    batch_norm_normalize(x, scale.data(), shift.data(), y, M, C);
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
        std::vector<double> sdy(C), sdyx(C);
        batch_norm_grad_sums(x, dy, running_mean, inv.data(), M, C, sdy.data(), sdyx.data());
        batch_norm_param_grads(sdy.data(), sdyx.data(), C, dgamma, dbeta);
    }
    if (!dx) return;
    for (int64_t c = 0; c < C; ++c) inv[c] *= gamma ? gamma[c] : 1.f;
    accumulate_dx ? detail::batch_norm_eval_dx_rows<true>(dy, inv.data(), dx, M, C)
                  : detail::batch_norm_eval_dx_rows<false>(dy, inv.data(), dx, M, C);
}

}  // namespace bnn::kernels
