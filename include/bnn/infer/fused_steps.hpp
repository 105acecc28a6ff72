#pragma once
/// @file fused_steps.hpp
/// The real-valued steps of an inference graph, each one pass over preallocated buffers and
/// each computing exactly (bit for bit) what the training ops compute in eval mode:
///
/// - FrozenBatchNorm: eval batch norm as one per-channel scale and shift, derived from the
///   running statistics by kernels::batch_norm_fold, the folding the training op uses, so
///   x * scale + shift is the very float the training op produces.
/// - bn_sign_pack: BN, sign and bit packing in one pass, writing straight into a binary conv's
///   padded input bits, and (optionally) the per-channel mean of the BN output that the
///   Real-to-Bin gate needs, summed in the gate's own order. The BN output is never stored.
///   Why BN is computed in float rather than folded into a threshold on x: the gate needs the
///   BN values anyway (for their mean), so the pass exists either way, and the sign of the
///   float BN value is exactly what the training model binarises.
/// - bn_activation: BN then ReLU or PReLU (or nothing) in place.
/// - FrozenGate: the Real-to-Bin gate's weights transposed once for kernels::channel_gate_mlp.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "bnn/core/error.hpp"
#include "bnn/core/tensor.hpp"
#include "bnn/core/threads.hpp"
#include "bnn/kernels/binary_conv2d_planned.hpp"
#include "bnn/kernels/batch_norm.hpp"
#include "bnn/kernels/bitpack.hpp"
#include "bnn/kernels/channel_gate.hpp"
#include "bnn/kernels/conv2d.hpp"
#include "bnn/kernels/gemm.hpp"

namespace bnn::infer {

/// Eval-mode batch norm folded into y = x * scale[c] + shift[c].
struct FrozenBatchNorm {
    Tensor<float> scale, shift;  ///< [C]

    FrozenBatchNorm() = default;
    /// gamma/beta may be null (1 and 0), as in ops::batch_norm.
    FrozenBatchNorm(const float* gamma, const float* beta, const float* running_mean, const float* running_var,
                    int64_t C, float eps)
        : scale(Tensor<float>::empty(Shape{C})), shift(Tensor<float>::empty(Shape{C})) {
        kernels::batch_norm_fold(gamma, beta, running_mean, running_var, C, eps, scale.data(), shift.data());
    }
    int64_t channels() const { return scale.numel(); }
    bool defined() const { return scale.defined(); }
};

namespace detail {
/// Tag of bn_sign_pack's buffer of per-row channel sums (bnn::thread_scratch).
struct BnSignPackRowSums;
}  // namespace detail

/// x [N, H, W, C] float -> dst's input bits = sign(BN(x)) (bit 1 where BN(x) >= 0), and, when
/// `pooled` is not null, pooled [N, C] = mean over H*W of BN(x) in the gate's order
/// (kernels::channel_gate_pool: each image row from its first pixel, then the rows), so the
/// floats are the training op's whatever the thread count.
///
/// The image rows go in contiguous shares over the conv's threads, as the conv shares out its
/// output pixels (kernels::detail::for_each_binary_conv_tile), so that each thread reads the rows
/// it wrote in the step before: a cache line written by one core and read by another must travel
/// between their caches, which costs more than the BN itself. A row's sums go to a shared
/// [N*H, C] buffer, added up per channel at the end.
inline void bn_sign_pack(const float* x, int64_t N, int64_t H, int64_t W, int64_t C, const FrozenBatchNorm& bn,
                         kernels::PlannedBinaryConv& dst, float* pooled, kernels::Isa isa = kernels::active_isa()) {
    const auto& g = dst.geometry();
    BNN_CHECK(g.N == N && g.H == H && g.W == W && g.C == C && bn.channels() == C, "bn_sign_pack: input [", N, ", ",
              H, ", ", W, ", ", C, "] does not fit the planned conv input [", g.N, ", ", g.H, ", ", g.W, ", ", g.C,
              "] or the batch norm of ", bn.channels(), " channels");
    const int64_t P = H * W;
    const float* sc = bn.scale.data();
    const float* sh = bn.shift.data();
    float* row_sums = pooled ? thread_scratch<detail::BnSignPackRowSums>(N * H * C) : nullptr;
    // The conv's threads, however short the pass: they read these bits, and the step before
    // wrote x in the same split (one thread reading it all would pull half of it across).
    parallel_ranges(N * H, dst.threads(), [&](int, int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) {  // image row r = n * H + y
            float* sum = row_sums ? row_sums + r * C : nullptr;
            if (sum) std::fill(sum, sum + C, 0.f);
            kernels::pack_signs_batch_norm(x + r * W * C, C, W, C, sc, sh, sum, dst.input_pixel(r / H, r % H, 0), isa);
        }
    });
    if (pooled)
        for (int64_t n = 0; n < N; ++n) {
            float* __restrict m = pooled + n * C;
            for (int64_t k = 0; k < C; ++k) m[k] = 0.f;
            for (int64_t y = 0; y < H; ++y)
#pragma omp simd
                for (int64_t k = 0; k < C; ++k) m[k] += row_sums[(n * H + y) * C + k];
            for (int64_t k = 0; k < C; ++k) m[k] /= static_cast<float>(P);
        }
}

/// The Real-to-Bin gate G = sigmoid(W2 relu(W1 mean)) with its weights transposed once, for
/// kernels::channel_gate_mlp, the training op's own products.
struct FrozenGate {
    Tensor<float> w1t, w2t;  ///< [Cin, hidden], [hidden, Cout]
    int64_t cin = 0, hidden = 0, cout = 0;

    FrozenGate() = default;
    /// From nn::ChannelGate's w1 [hidden, Cin] and w2 [Cout, hidden].
    FrozenGate(const Tensor<float>& w1, const Tensor<float>& w2)
        : cin(w1.dim(1)), hidden(w1.dim(0)), cout(w2.dim(0)) {
        BNN_CHECK(w2.dim(1) == hidden, "FrozenGate: w2 ", w2.shape().str(), " does not follow w1 ", w1.shape().str());
        w1t = Tensor<float>::empty(Shape{cin, hidden});
        w2t = Tensor<float>::empty(Shape{hidden, cout});
        kernels::channel_gate_transpose(w1.data(), w2.data(), w1t.data(), w2t.data(), cin, hidden, cout);
    }
    bool defined() const { return w1t.defined(); }

    /// mean [N, Cin] -> gate [N, Cout]; hidden_buf [N, hidden] scratch.
    void forward(const float* mean, float* gate, float* hidden_buf, int64_t N) const {
        kernels::channel_gate_mlp(mean, w1t.data(), w2t.data(), hidden_buf, gate, N, cin, hidden, cout);
    }
};

/// x [M, C] <- act(BN(x)) in place on the calling thread: act is ReLU when relu is set, PReLU
/// when slope [C] is given, else the identity. Each is the training op's own float expression.
inline void bn_activation_rows(float* x, int64_t M, int64_t C, const FrozenBatchNorm& bn, bool relu,
                               const float* slope) {
    const float* sc = bn.scale.data();
    const float* sh = bn.shift.data();
    for (int64_t m = 0; m < M; ++m) {
        float* __restrict r = x + m * C;
        if (relu) {
#pragma omp simd
            for (int64_t c = 0; c < C; ++c) {
                const float v = r[c] * sc[c] + sh[c];
                r[c] = v > 0.f ? v : 0.f;
            }
        } else if (slope) {
#pragma omp simd
            for (int64_t c = 0; c < C; ++c) {
                const float v = r[c] * sc[c] + sh[c], neg = slope[c] * v;
                r[c] = v > 0.f ? v : neg;
            }
        } else {
#pragma omp simd
            for (int64_t c = 0; c < C; ++c) r[c] = r[c] * sc[c] + sh[c];
        }
    }
}

/// bn_activation_rows over the threads.
inline void bn_activation(float* x, int64_t M, int64_t C, const FrozenBatchNorm& bn, bool relu, const float* slope) {
    BNN_CHECK(bn.channels() == C, "bn_activation: batch norm of ", bn.channels(), " channels for input of ", C);
    parallel_ranges(M, worth_threading(M * C) ? num_threads() : 1, [&](int, int64_t begin, int64_t end) {
        bn_activation_rows(x + begin * C, end - begin, C, bn, relu, slope);
    });
}

}  // namespace bnn::infer
