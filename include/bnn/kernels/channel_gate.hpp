#pragma once
/// @file channel_gate.hpp
/// The Real-to-Binary channel gate (Sec. 4.3) on raw pointers, forward and backward:
///
///     gate = sigmoid( w2 ReLU( w1 mean_P(x) ) )
///
/// The op (ops/channel_gate.hpp) records it as one tape node, the module is nn/channel_gate.hpp.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace bnn::kernels {

/// x: [N, P, Cin] (P = H*W), w1: [Hd, Cin], w2: [Cout, Hd] ->
/// pooled: [N, Cin], hidden: [N, Hd] (before the ReLU), gate: [N, Cout]
inline void channel_gate_forward(const float* x, const float* w1, const float* w2, float* pooled,
                                 float* hidden, float* gate, int64_t n, int64_t p, int64_t cin, int64_t hd,
                                 int64_t cout) {
    for (int64_t s = 0; s < n; ++s) {
        float* m = pooled + s * cin;
        for (int64_t c = 0; c < cin; ++c) m[c] = 0.f;
        for (int64_t i = 0; i < p; ++i) {
            const float* row = x + (s * p + i) * cin;
            for (int64_t c = 0; c < cin; ++c) m[c] += row[c];
        }
        for (int64_t c = 0; c < cin; ++c) m[c] /= static_cast<float>(p);
        float* h = hidden + s * hd;
        for (int64_t j = 0; j < hd; ++j) {
            float acc = 0.f;
            for (int64_t c = 0; c < cin; ++c) acc += w1[j * cin + c] * m[c];
            h[j] = acc;
        }
        for (int64_t o = 0; o < cout; ++o) {
            float acc = 0.f;
            for (int64_t j = 0; j < hd; ++j) acc += w2[o * hd + j] * std::max(h[j], 0.f);
            gate[s * cout + o] = 1.f / (1.f + std::exp(-acc));
        }
    }
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
