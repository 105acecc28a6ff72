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

/// pooled [N, Cin] -> hidden [N, Hd] (before the ReLU), gate [N, Cout], with the weights
/// transposed (w1t [Cin, Hd], w2t [Hd, Cout]) so that each product is a vector update over the
/// outputs; each output still sums its terms from 0 in input order.
inline void channel_gate_mlp(const float* pooled, const float* w1t, const float* w2t, float* hidden, float* gate,
                             int64_t n, int64_t cin, int64_t hd, int64_t cout) {
    for (int64_t s = 0; s < n; ++s) {
        const float* m = pooled + s * cin;
        float* __restrict h = hidden + s * hd;
        for (int64_t j = 0; j < hd; ++j) h[j] = 0.f;
        for (int64_t c = 0; c < cin; ++c) {
            const float mc = m[c];
            const float* __restrict w = w1t + c * hd;
#pragma omp simd
            for (int64_t j = 0; j < hd; ++j) h[j] += w[j] * mc;
        }
        float* __restrict acc = gate + s * cout;
        for (int64_t o = 0; o < cout; ++o) acc[o] = 0.f;
        for (int64_t j = 0; j < hd; ++j) {
            const float r = std::max(h[j], 0.f);
            const float* __restrict w = w2t + j * cout;
#pragma omp simd
            for (int64_t o = 0; o < cout; ++o) acc[o] += w[o] * r;
        }
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
