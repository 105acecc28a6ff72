#pragma once
/// @file channel_gate.hpp
/// The Real-to-Binary channel gate (Sec. 4.3) on raw pointers, forward and backward:
///
///     gate = sigmoid( w2 ReLU( w1 mean_P(x) ) )
///
/// The op (ops/channel_gate.hpp) records it as one tape node, the module is nn/channel_gate.hpp.
/// The forward is the pool and the two products (channel_gate_pool, channel_gate_mlp), which
/// the inference graph also calls, with its weights transposed once and its mean fused into
/// the pass before.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "bnn/kernels/lanes.hpp"

namespace bnn::kernels {

/// pooled [N, Cin] = mean over the P positions of x [N, P, Cin], P being rows of `row` positions
/// (an image's rows): each row summed from its first position, then the row sums from the first
/// row. Summing by rows lets a multi-threaded pass that owns whole rows (the inference graph's
/// BN+sign pack) give the same floats whatever its thread count.
inline void channel_gate_pool(const float* x, float* pooled, int64_t n, int64_t p, int64_t row, int64_t cin) {
    for (int64_t s = 0; s < n; ++s)
        for (int64_t c0 = 0; c0 < cin; c0 += 64) {  // 64 channels at a time: the row sums stay on the stack
            const int64_t nc = std::min<int64_t>(64, cin - c0);
            float sum[64] = {}, row_sum[64];
            for (int64_t r0 = 0; r0 < p; r0 += row) {
                for (int64_t c = 0; c < nc; ++c) row_sum[c] = 0.f;
                for (int64_t i = r0; i < r0 + row; ++i) {
                    const float* v = x + (s * p + i) * cin + c0;
                    for (int64_t c = 0; c < nc; ++c) row_sum[c] += v[c];
                }
                for (int64_t c = 0; c < nc; ++c) sum[c] += row_sum[c];
            }
            for (int64_t c = 0; c < nc; ++c) pooled[s * cin + c0 + c] = sum[c] / static_cast<float>(p);
        }
}

/// w1 [Hd, Cin] -> w1t [Cin, Hd] and w2 [Cout, Hd] -> w2t [Hd, Cout], the layout channel_gate_mlp
/// reads (an inference graph transposes once, when it is compiled).
inline void channel_gate_transpose(const float* w1, const float* w2, float* w1t, float* w2t, int64_t cin, int64_t hd,
                                   int64_t cout) {
    for (int64_t j = 0; j < hd; ++j)
        for (int64_t c = 0; c < cin; ++c) w1t[c * hd + j] = w1[j * cin + c];
    for (int64_t o = 0; o < cout; ++o)
        for (int64_t j = 0; j < hd; ++j) w2t[j * cout + o] = w2[o * hd + j];
}

namespace detail {
/// y [n] = x [m] times w [m, n]: y[o] = w[0][o] x[0] + w[1][o] x[1] + ..., summed from 0 in that
/// order, with x[i] replaced by max(x[i], 0) when relu. 64 and then 16 outputs at a time stay in
/// registers over the m terms (a vector update of y in memory per term would reload it each
/// time); the last n % 16 outputs take the same sums in memory.
inline void gate_product(const float* x, const float* w, int64_t m, int64_t n, bool relu, float* y) {
    constexpr int64_t L = lanes_floats;
    auto term = [&](int64_t i) { return relu ? std::max(x[i], 0.f) : x[i]; };
    int64_t o = 0;
    for (; o + 4 * L <= n; o += 4 * L) {
        Lanes a0{}, a1{}, a2{}, a3{}, v;
        for (int64_t i = 0; i < m; ++i) {
            const float t = term(i);
            const float* wi = w + i * n + o;
            load_lanes(v, wi);
            a0 += v * t;
            load_lanes(v, wi + L);
            a1 += v * t;
            load_lanes(v, wi + 2 * L);
            a2 += v * t;
            load_lanes(v, wi + 3 * L);
            a3 += v * t;
        }
        store_lanes(y + o, a0);
        store_lanes(y + o + L, a1);
        store_lanes(y + o + 2 * L, a2);
        store_lanes(y + o + 3 * L, a3);
    }
    for (; o + L <= n; o += L) {
        Lanes a{}, v;
        for (int64_t i = 0; i < m; ++i) {
            load_lanes(v, w + i * n + o);
            a += v * term(i);
        }
        store_lanes(y + o, a);
    }
    if (o == n) return;
    for (int64_t k = o; k < n; ++k) y[k] = 0.f;
    for (int64_t i = 0; i < m; ++i) {
        const float t = term(i);
        for (int64_t k = o; k < n; ++k) y[k] += w[i * n + k] * t;
    }
}
}  // namespace detail

/// pooled [N, Cin] -> hidden [N, Hd] (before the ReLU), gate [N, Cout], with the weights
/// transposed (w1t [Cin, Hd], w2t [Hd, Cout]) so that each product is a vector update over the
/// outputs; each output still sums its terms from 0 in input order.
inline void channel_gate_mlp(const float* pooled, const float* w1t, const float* w2t, float* hidden, float* gate,
                             int64_t n, int64_t cin, int64_t hd, int64_t cout) {
    for (int64_t s = 0; s < n; ++s) {
        float* h = hidden + s * hd;
        float* acc = gate + s * cout;
        detail::gate_product(pooled + s * cin, w1t, cin, hd, false, h);
        detail::gate_product(h, w2t, hd, cout, true, acc);
        for (int64_t o = 0; o < cout; ++o) acc[o] = 1.f / (1.f + std::exp(-acc[o]));
    }
}

/// x: [N, P, Cin] (P = H*W, rows of `row` = W positions), w1: [Hd, Cin], w2: [Cout, Hd] ->
/// pooled: [N, Cin], hidden: [N, Hd] (before the ReLU), gate: [N, Cout]
inline void channel_gate_forward(const float* x, const float* w1, const float* w2, float* pooled,
                                 float* hidden, float* gate, int64_t n, int64_t p, int64_t row, int64_t cin,
                                 int64_t hd, int64_t cout) {
    channel_gate_pool(x, pooled, n, p, row, cin);
    std::vector<float> w1t(cin * hd), w2t(hd * cout);
    channel_gate_transpose(w1, w2, w1t.data(), w2t.data(), cin, hd, cout);
    channel_gate_mlp(pooled, w1t.data(), w2t.data(), hidden, gate, n, cin, hd, cout);
}

/// dgate: [N, Cout] and the forward's tensors -> dx: [N, P, Cin], dw1: [Hd, Cin], dw2: [Cout, Hd],
/// each accumulated; a null pointer skips that gradient.
inline void channel_gate_backward(const float* dgate, const float* w1, const float* w2, const float* pooled,
                                  const float* hidden, const float* gate, float* dx, float* dw1, float* dw2,
                                  int64_t n, int64_t p, int64_t cin, int64_t hd, int64_t cout) {
    std::vector<float> dlogit(cout), dh(hd), dm(cin);
    for (int64_t s = 0; s < n; ++s) {
        const float* h = hidden + s * hd;
        for (int64_t o = 0; o < cout; ++o) {
            const float g = gate[s * cout + o];
            dlogit[o] = dgate[s * cout + o] * g * (1.f - g);
        }
        for (int64_t j = 0; j < hd; ++j) {
            float acc = 0.f;
            for (int64_t o = 0; o < cout; ++o) acc += dlogit[o] * w2[o * hd + j];
            dh[j] = h[j] > 0.f ? acc : 0.f;
        }
        if (dw2)
            for (int64_t o = 0; o < cout; ++o)
                for (int64_t j = 0; j < hd; ++j) dw2[o * hd + j] += dlogit[o] * std::max(h[j], 0.f);
        if (dw1)
            for (int64_t j = 0; j < hd; ++j)
                for (int64_t c = 0; c < cin; ++c) dw1[j * cin + c] += dh[j] * pooled[s * cin + c];
        if (dx) {
            for (int64_t c = 0; c < cin; ++c) {
                float acc = 0.f;
                for (int64_t j = 0; j < hd; ++j) acc += dh[j] * w1[j * cin + c];
                dm[c] = acc / static_cast<float>(p);
            }
            for (int64_t i = 0; i < p; ++i) {
                float* row = dx + (s * p + i) * cin;
                for (int64_t c = 0; c < cin; ++c) row[c] += dm[c];
            }
        }
    }
}

}  // namespace bnn::kernels
