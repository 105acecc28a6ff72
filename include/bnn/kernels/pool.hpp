#pragma once
/// @file pool.hpp
/// 2-D pooling over NHWC activations (square windows).
///   x [N, H, W, C] -> y [N, OH, OW, C], OH = (H + 2*pad - k) / stride + 1, same for OW.
/// Average pooling divides by k*k, padded zeros included (PyTorch's count_include_pad).
/// Max pooling treats padding as -inf, so a padded position never wins.
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "bnn/core/error.hpp"
#include "bnn/core/threads.hpp"
#include "bnn/kernels/lanes.hpp"

namespace bnn::kernels {

/// The sizes of one pooling; PoolGeometry::make derives the output extent.
struct PoolGeometry {
    int64_t N, H, W, C, k, stride, pad, OH, OW;
    static PoolGeometry make(int64_t N, int64_t H, int64_t W, int64_t C, int64_t k, int64_t stride, int64_t pad) {
        return {N, H, W, C, k, stride, pad, (H + 2 * pad - k) / stride + 1, (W + 2 * pad - k) / stride + 1};
    }
};

/// True when a forward pooling is worth a parallel region. Its work is the k*k reads per output
/// (the input, not the output, is what a 2x2 stride-2 pool sweeps), and with one thread the
/// calling core would read the rows the other threads wrote in the step before, from their caches.
inline bool pool_worth_threading(const PoolGeometry& g) { return worth_threading(g.N * g.OH * g.OW * g.C * g.k * g.k); }

/// out [p1 - p0, C] = the average pool's outputs p0 .. p1 - 1, numbered over [N, OH, OW]: each
/// the mean of its k x k window (padding counted as zeros), summed in window order. A fused
/// step may pool its own share of pixels this way and get avg_pool2d_forward's floats.
inline void avg_pool2d_pixels(const float* x, const PoolGeometry& g, int64_t p0, int64_t p1, float* out) {
    const int64_t C = g.C;  // a local: stores through float* could alias g, blocking vectorisation
    const float inv = 1.f / static_cast<float>(g.k * g.k);
    for (int64_t p = p0; p < p1; ++p, out += C) {
        const int64_t n = p / (g.OH * g.OW), oh = p / g.OW % g.OH, ow = p % g.OW;
        for (int64_t c = 0; c < C; ++c) out[c] = 0.f;
        for (int64_t kh = 0; kh < g.k; ++kh) {
            const int64_t ih = oh * g.stride - g.pad + kh;
            if (ih < 0 || ih >= g.H) continue;
            for (int64_t kw = 0; kw < g.k; ++kw) {
                const int64_t iw = ow * g.stride - g.pad + kw;
                if (iw < 0 || iw >= g.W) continue;
                const float* in = x + ((n * g.H + ih) * g.W + iw) * C;
#pragma omp simd
                for (int64_t c = 0; c < C; ++c) out[c] += in[c];
            }
        }
        for (int64_t c = 0; c < C; ++c) out[c] *= inv;
    }
}

/// y [N, OH, OW, C] = mean of each k x k window (padding counted as zeros).
inline void avg_pool2d_forward(const float* x, float* y, const PoolGeometry& g) {
    // Output rows of all images are the work items, so a batch of one splits too.
    parallel_ranges(g.N * g.OH, pool_worth_threading(g) ? num_threads() : 1, [&](int, int64_t begin, int64_t end) {
        avg_pool2d_pixels(x, g, begin * g.OW, end * g.OW, y + begin * g.OW * g.C);
    });
}

/// dx [N, H, W, C] += dy spread evenly over each window. Parallel over images: windows of one
/// image overlap, windows of different images never do.
inline void avg_pool2d_backward(const float* dy, float* dx, const PoolGeometry& g) {
    const int64_t C = g.C;  // a local: stores through float* could alias g, blocking vectorisation
    const float inv = 1.f / static_cast<float>(g.k * g.k);
#pragma omp parallel for schedule(static) if (worth_threading(g.N * g.OH * g.OW * g.C))
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
#pragma omp simd
                        for (int64_t c = 0; c < C; ++c) gi[c] += go[c] * inv;
                    }
                }
            }
}

namespace detail {
/// out [C] = max(out, in) per channel; on ties (and NaN in `in`) out stays.
inline void max_into(float* __restrict out, const float* __restrict in, int64_t C) {
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) {
        const float v = in[c], cur = out[c];
        out[c] = cur < v ? v : cur;
    }
}

/// m = max_into(m, the 16 floats at p): on ties (and NaN at p) m stays.
inline void max_lanes(Lanes& m, const float* p) {
    Lanes v;
    load_lanes(v, p);
    m = m < v ? v : m;
}

/// out [V * 16], V = 1 or 4: the max_into of taps (kh, kw) in [kh0, kh1) x [kw0, kw1) of
/// rows[kh] + kw * C, in that order, starting from the first. The maxima stay in registers over
/// the window (nothing is stored per tap), V of them in flight at once; named variables, as GCC
/// spills an array of vectors.
template <int V>
inline void window_max(const float* const* rows, int64_t kh0, int64_t kh1, int64_t kw0, int64_t kw1, int64_t C,
                       float* out) {
    static_assert(V == 1 || V == 4);
    constexpr int64_t L = lanes_floats;
    const float* first = rows[kh0] + kw0 * C;
    Lanes m0, m1, m2, m3;
    load_lanes(m0, first);
    if constexpr (V == 4) {
        load_lanes(m1, first + L);
        load_lanes(m2, first + 2 * L);
        load_lanes(m3, first + 3 * L);
    }
    for (int64_t kh = kh0; kh < kh1; ++kh)
        for (int64_t kw = kw0; kw < kw1; ++kw) {
            const float* in = rows[kh] + kw * C;
            max_lanes(m0, in);
            if constexpr (V == 4) {
                max_lanes(m1, in + L);
                max_lanes(m2, in + 2 * L);
                max_lanes(m3, in + 3 * L);
            }
        }
    store_lanes(out, m0);
    if constexpr (V == 4) {
        store_lanes(out + L, m1);
        store_lanes(out + 2 * L, m2);
        store_lanes(out + 3 * L, m3);
    }
}
}  // namespace detail

/// One output row oh of max_pool2d_forward without winners, from the window's input rows:
/// rows[kh] is input row oh * stride - pad + kh ([W, C]; read only for the rows inside the
/// image). y_row [OW, C]. Padding never wins: each output starts from its first tap inside the
/// image (padding <= k/2 leaves one), a later tap winning only when larger.
inline void max_pool2d_row(const float* const* rows, int64_t oh, float* y_row, const PoolGeometry& g) {
    const int64_t C = g.C, h0 = oh * g.stride - g.pad;
    const int64_t kh0 = std::max<int64_t>(0, -h0), kh1 = std::min<int64_t>(g.k, g.H - h0);
    for (int64_t ow = 0; ow < g.OW; ++ow) {
        float* out = y_row + ow * C;
        const int64_t w0 = ow * g.stride - g.pad;
        const int64_t kw0 = std::max<int64_t>(0, -w0), kw1 = std::min<int64_t>(g.k, g.W - w0);
        const float* window[64];
        for (int64_t kh = kh0; kh < kh1; ++kh) window[kh] = rows[kh] + w0 * C;
        int64_t c = 0;
        for (; c + 4 * lanes_floats <= C; c += 4 * lanes_floats) {
            detail::window_max<4>(window, kh0, kh1, kw0, kw1, C, out + c);
            for (int64_t kh = kh0; kh < kh1; ++kh) window[kh] += 4 * lanes_floats;
        }
        for (; c + lanes_floats <= C; c += lanes_floats) {
            detail::window_max<1>(window, kh0, kh1, kw0, kw1, C, out + c);
            for (int64_t kh = kh0; kh < kh1; ++kh) window[kh] += lanes_floats;
        }
        if (c == C) continue;
        std::memcpy(out + c, window[kh0] + kw0 * C, sizeof(float) * (C - c));
        for (int64_t kh = kh0; kh < kh1; ++kh)
            for (int64_t kw = kw0; kw < kw1; ++kw) detail::max_into(out + c, window[kh] + kw * C, C - c);
    }
}

namespace detail {
/// max_pool2d_forward with the winners recorded: the same maxima as max_pool2d_row.
inline void max_pool2d_forward_with_winners(const float* x, float* y, int32_t* tap, const PoolGeometry& g) {
    const int64_t C = g.C;  // a local: stores through float* could alias g, blocking vectorisation
    // Output rows of all images are the work items, so a batch of one splits too.
#pragma omp parallel for collapse(2) schedule(static) if (pool_worth_threading(g))
    for (int64_t n = 0; n < g.N; ++n)
        for (int64_t oh = 0; oh < g.OH; ++oh)
            for (int64_t ow = 0; ow < g.OW; ++ow) {
                float* __restrict out = y + ((n * g.OH + oh) * g.OW + ow) * C;
                const int64_t h0 = oh * g.stride - g.pad, w0 = ow * g.stride - g.pad;
                const int64_t kh0 = std::max<int64_t>(0, -h0), kh1 = std::min<int64_t>(g.k, g.H - h0);
                const int64_t kw0 = std::max<int64_t>(0, -w0), kw1 = std::min<int64_t>(g.k, g.W - w0);
                const float* first = x + ((n * g.H + h0 + kh0) * g.W + w0 + kw0) * C;
                int32_t* __restrict best = tap + ((n * g.OH + oh) * g.OW + ow) * C;
                const int32_t first_tap = static_cast<int32_t>(kh0 * g.k + kw0);
                for (int64_t c = 0; c < C; ++c) {
                    out[c] = first[c];
                    best[c] = first_tap;
                }
                for (int64_t kh = kh0; kh < kh1; ++kh)
                    for (int64_t kw = kw0; kw < kw1; ++kw) {
                        const float* __restrict in = x + ((n * g.H + h0 + kh) * g.W + w0 + kw) * C;
                        const int32_t t = static_cast<int32_t>(kh * g.k + kw);
#pragma omp simd
                        for (int64_t c = 0; c < C; ++c) {
                            // Branch-free select (GCC leaves `take ? t : bt` as a branch here).
                            const float v = in[c], cur = out[c];
                            const int32_t take = -static_cast<int32_t>(v > cur);  // strict: first maximum stays
                            out[c] = cur < v ? v : cur;
                            best[c] ^= (best[c] ^ t) & take;
                        }
                    }
            }
}
}  // namespace detail

/// y [N, OH, OW, C] = max of each window; tap [N, OH, OW, C] receives the winner's position in
/// its window (kh * k + kw; the first one on ties), for backward, or is null (inference: the
/// same maxima without the positions). int32 taps rather than flat indices keep the
/// compare-and-select loop at float width, so it vectorises.
inline void max_pool2d_forward(const float* x, float* y, int32_t* tap, const PoolGeometry& g) {
    if (tap) return detail::max_pool2d_forward_with_winners(x, y, tap, g);
    BNN_CHECK(g.k <= 64, "max_pool2d_forward: windows of up to 64x64 without winners, got ", g.k, "x", g.k);
    // Output rows of all images are the work items, so a batch of one splits too.
    parallel_ranges(g.N * g.OH, pool_worth_threading(g) ? num_threads() : 1, [&](int, int64_t begin, int64_t end) {
        const float* rows[64];
        for (int64_t r = begin; r < end; ++r) {
            const int64_t n = r / g.OH, oh = r % g.OH, h0 = oh * g.stride - g.pad;
            for (int64_t kh = std::max<int64_t>(0, -h0); kh < std::min<int64_t>(g.k, g.H - h0); ++kh)
                rows[kh] = x + (n * g.H + h0 + kh) * g.W * g.C;
            max_pool2d_row(rows, oh, y + r * g.OW * g.C, g);
        }
    });
}

/// dx [N, H, W, C] += dy [N, OH, OW, C] routed to each window's winning tap.
inline void max_pool2d_backward(const float* dy, const int32_t* tap, float* dx, const PoolGeometry& g) {
    const int64_t C = g.C;
#pragma omp parallel for schedule(static) if (worth_threading(g.N * g.OH * g.OW * g.C))
    for (int64_t n = 0; n < g.N; ++n)  // windows of one image overlap, of different images never
        for (int64_t oh = 0; oh < g.OH; ++oh)
            for (int64_t ow = 0; ow < g.OW; ++ow) {
                const int64_t o = ((n * g.OH + oh) * g.OW + ow) * C;
                for (int64_t c = 0; c < C; ++c) {
                    const int64_t kh = tap[o + c] / g.k, kw = tap[o + c] % g.k;
                    const int64_t ih = oh * g.stride - g.pad + kh, iw = ow * g.stride - g.pad + kw;
                    dx[((n * g.H + ih) * g.W + iw) * C + c] += dy[o + c];
                }
            }
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
