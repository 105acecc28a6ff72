#pragma once
// Top-1 / top-5 accuracy and mean cross-entropy of a network on a data set, in eval mode and
// without a tape.
#include <algorithm>
#include <cmath>
#include <vector>

#include "bnn/autograd/grad_mode.hpp"
#include "bnn/data/loader.hpp"
#include "bnn/nn/module.hpp"

namespace trainer {

struct Accuracy {
    double top1 = 0, top5 = 0, loss = 0;
};

/// Counts, for each row of logits [N,K], whether the label is the arg-max (top-1) and whether
/// fewer than 5 classes score strictly higher than it (top-5). Adds to `top1` / `top5`.
inline void count_hits(const bnn::Tensor<float>& logits, const std::vector<int32_t>& labels, int64_t& top1,
                       int64_t& top5) {
    const int64_t N = logits.dim(0), K = logits.dim(1);
    for (int64_t n = 0; n < N; ++n) {
        const float* row = logits.data() + n * K;
        const float target = row[labels[n]];
        int64_t higher = 0;
        for (int64_t k = 0; k < K; ++k) higher += row[k] > target;
        top1 += higher == 0;
        top5 += higher < 5;
    }
}

/// Evaluates `model` on the loader's data set (the loader must not shuffle or augment).
inline Accuracy evaluate(bnn::nn::Module& model, bnn::data::BatchLoader& loader) {
    const bool was_training = model.is_training();
    model.eval();
    bnn::NoGradGuard no_tape;
    int64_t top1 = 0, top5 = 0, seen = 0;
    double loss = 0;
    loader.start_epoch(0);
    while (auto batch = loader.next()) {
        bnn::Tensor<float> logits = model.forward(bnn::Variable(batch->images)).value();
        count_hits(logits, batch->labels, top1, top5);
        const int64_t K = logits.dim(1);
        for (int64_t n = 0; n < logits.dim(0); ++n) {  // cross-entropy by log-sum-exp
            const float* row = logits.data() + n * K;
            const float m = *std::max_element(row, row + K);
            double s = 0;
            for (int64_t k = 0; k < K; ++k) s += std::exp(row[k] - m);
            loss += m + std::log(s) - row[batch->labels[n]];
        }
        seen += logits.dim(0);
    }
    model.train(was_training);
    return {static_cast<double>(top1) / seen, static_cast<double>(top5) / seen, loss / seen};
}

}  // namespace trainer
