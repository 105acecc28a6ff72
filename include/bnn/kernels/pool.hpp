#pragma once
/// @file pool.hpp
/// 2-D pooling over NHWC activations (square windows).
///   x [N, H, W, C] -> y [N, OH, OW, C], OH = (H + 2*pad - k) / stride + 1, same for OW.
/// Average pooling divides by k*k, padded zeros included (PyTorch's count_include_pad).
/// Max pooling treats padding as -inf, so a padded position never wins.
#include <cstdint>
#include <limits>

namespace bnn::kernels {

/// The sizes of one pooling; PoolGeometry::make derives the output extent.
struct PoolGeometry {
    int64_t N, H, W, C, k, stride, pad, OH, OW;
    static PoolGeometry make(int64_t N, int64_t H, int64_t W, int64_t C, int64_t k, int64_t stride, int64_t pad) {
        return {N, H, W, C, k, stride, pad, (H + 2 * pad - k) / stride + 1, (W + 2 * pad - k) / stride + 1};
    }
};

/// y [N, OH, OW, C] = mean of each k x k window (padding counted as zeros).
inline void avg_pool2d_forward(const float* x, float* y, const PoolGeometry& g) {
    const int64_t C = g.C;  // a local: stores through float* could alias g, blocking vectorisation
    const float inv = 1.f / static_cast<float>(g.k * g.k);
#pragma omp parallel for schedule(static) if (g.N * g.OH * g.OW * g.C > (1 << 16))
    for (int64_t n = 0; n < g.N; ++n)
        for (int64_t oh = 0; oh < g.OH; ++oh)
            for (int64_t ow = 0; ow < g.OW; ++ow) {
                float* out = y + ((n * g.OH + oh) * g.OW + ow) * g.C;
                for (int64_t c = 0; c < C; ++c) out[c] = 0.f;
                for (int64_t kh = 0; kh < g.k; ++kh) {
                    const int64_t ih = oh * g.stride - g.pad + kh;
                    if (ih < 0 || ih >= g.H) continue;
                    for (int64_t kw = 0; kw < g.k; ++kw) {
                        const int64_t iw = ow * g.stride - g.pad + kw;
                        if (iw < 0 || iw >= g.W) continue;
                        const float* in = x + ((n * g.H + ih) * g.W + iw) * g.C;
                        for (int64_t c = 0; c < C; ++c) out[c] += in[c];
                    }
                }
                for (int64_t c = 0; c < C; ++c) out[c] *= inv;
            }
}

/// dx [N, H, W, C] += dy spread evenly over each window. Parallel over images: windows of one
/// image overlap, windows of different images never do.
inline void avg_pool2d_backward(const float* dy, float* dx, const PoolGeometry& g) {
    const int64_t C = g.C;  // a local: stores through float* could alias g, blocking vectorisation
    const float inv = 1.f / static_cast<float>(g.k * g.k);
#pragma omp parallel for schedule(static) if (g.N * g.OH * g.OW * g.C > (1 << 16))
    for (int64_t n = 0; n < g.N; ++n)
        for (int64_t oh = 0; oh < g.OH; ++oh)
            for (int64_t ow = 0; ow < g.OW; ++ow) {
                const float* go = dy + ((n * g.OH + oh) * g.OW + ow) * g.C;
                for (int64_t kh = 0; kh < g.k; ++kh) {
                    const int64_t ih = oh * g.stride - g.pad + kh;
                    if (ih < 0 || ih >= g.H) continue;
                    for (int64_t kw = 0; kw < g.k; ++kw) {
                        const int64_t iw = ow * g.stride - g.pad + kw;
                        if (iw < 0 || iw >= g.W) continue;
                        float* gi = dx + ((n * g.H + ih) * g.W + iw) * g.C;
                        for (int64_t c = 0; c < C; ++c) gi[c] += go[c] * inv;
                    }
                }
            }
}

/// y [N, OH, OW, C] = max of each window; argmax [N, OH, OW, C] receives the flat index into x
/// of the winner (first one on ties), for backward.
inline void max_pool2d_forward(const float* x, float* y, int64_t* argmax, const PoolGeometry& g) {
    const int64_t C = g.C;  // a local: stores through float* could alias g, blocking vectorisation
#pragma omp parallel for schedule(static) if (g.N * g.OH * g.OW * g.C > (1 << 16))
    for (int64_t n = 0; n < g.N; ++n)
        for (int64_t oh = 0; oh < g.OH; ++oh)
            for (int64_t ow = 0; ow < g.OW; ++ow) {
                const int64_t o = ((n * g.OH + oh) * g.OW + ow) * g.C;
                for (int64_t c = 0; c < C; ++c) {
                    y[o + c] = -std::numeric_limits<float>::infinity();
                    argmax[o + c] = -1;
                }
                for (int64_t kh = 0; kh < g.k; ++kh) {
                    const int64_t ih = oh * g.stride - g.pad + kh;
                    if (ih < 0 || ih >= g.H) continue;
                    for (int64_t kw = 0; kw < g.k; ++kw) {
                        const int64_t iw = ow * g.stride - g.pad + kw;
                        if (iw < 0 || iw >= g.W) continue;
                        const int64_t i = ((n * g.H + ih) * g.W + iw) * g.C;
                        for (int64_t c = 0; c < C; ++c)
                            if (x[i + c] > y[o + c] || argmax[o + c] < 0) {
                                y[o + c] = x[i + c];
                                argmax[o + c] = i + c;
                            }
                    }
                }
            }
}

/// dx[argmax[j]] += dy[j] for every output element j (dy, argmax [N, OH, OW, C]).
inline void max_pool2d_backward(const float* dy, const int64_t* argmax, float* dx, const PoolGeometry& g) {
    const int64_t per_image = g.OH * g.OW * g.C;
#pragma omp parallel for schedule(static) if (g.N * per_image > (1 << 16))
    for (int64_t n = 0; n < g.N; ++n)
        for (int64_t j = n * per_image; j < (n + 1) * per_image; ++j) dx[argmax[j]] += dy[j];
}

/// y [N, C] = mean over the S = H*W positions of x [N, S, C]
inline void global_avg_pool_forward(const float* x, float* y, int64_t N, int64_t S, int64_t C) {
    for (int64_t n = 0; n < N; ++n) {
        float* out = y + n * C;
        for (int64_t c = 0; c < C; ++c) out[c] = 0.f;
        for (int64_t s = 0; s < S; ++s)
            for (int64_t c = 0; c < C; ++c) out[c] += x[(n * S + s) * C + c];
        for (int64_t c = 0; c < C; ++c) out[c] /= static_cast<float>(S);
    }
}

/// dx [N, S, C] += dy [N, C] / S
inline void global_avg_pool_backward(const float* dy, float* dx, int64_t N, int64_t S, int64_t C) {
    const float inv = 1.f / static_cast<float>(S);
    for (int64_t n = 0; n < N; ++n)
        for (int64_t s = 0; s < S; ++s)
            for (int64_t c = 0; c < C; ++c) dx[(n * S + s) * C + c] += dy[n * C + c] * inv;
}

}  // namespace bnn::kernels
