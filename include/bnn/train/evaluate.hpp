#pragma once
/// @file evaluate.hpp
/// Accuracy of a classifier: top-1 / top-5 hits of a batch of logits, and the top-1, top-5 and
/// mean cross-entropy of a network over a whole data set, in eval mode and without a tape.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "bnn/autograd/grad_mode.hpp"
#include "bnn/autograd/variable.hpp"
#include "bnn/core/error.hpp"
#include "bnn/core/tensor.hpp"
#include "bnn/data/loader.hpp"
#include "bnn/nn/module.hpp"

namespace bnn::train {

/// How many rows of a batch have their label first (top1) and among the first five (top5).
struct Hits {
    int64_t top1 = 0, top5 = 0;
};

/// Counts, for each row of logits [N,K], whether the label is the arg-max (top-1) and whether
/// fewer than 5 classes score strictly higher than it (top-5). A tie with the label counts in
/// the label's favour.
inline Hits count_hits(const Tensor<float>& logits, const std::vector<int32_t>& labels) {
    BNN_CHECK(logits.defined() && logits.rank() == 2, "count_hits: expected logits [N,K], got ",
              logits.defined() ? logits.shape().str() : std::string("an undefined tensor"));
    const int64_t N = logits.dim(0), K = logits.dim(1);
    BNN_CHECK(static_cast<int64_t>(labels.size()) == N, "count_hits: ", N, " rows of logits but ", labels.size(),
              " labels");
    Hits h;
    for (int64_t n = 0; n < N; ++n) {
        BNN_CHECK(labels[n] >= 0 && labels[n] < K, "count_hits: label ", labels[n], " of row ", n,
                  " is outside [0, ", K, ")");
        const float* row = logits.data() + n * K;
        const float target = row[labels[n]];
        int64_t higher = 0;
        for (int64_t k = 0; k < K; ++k) higher += row[k] > target;
        h.top1 += higher == 0;
        h.top5 += higher < 5;
    }
    return h;
}

/// The accuracies (fractions in [0, 1]) and mean cross-entropy over `samples` samples.
struct Accuracy {
    double top1 = 0, top5 = 0, loss = 0;
    int64_t samples = 0;
};

/// Evaluates `model` on every sample of the loader's data set, in eval mode (batch norm on its
/// running statistics) and under NoGradGuard; the model's mode is restored afterwards. The loader
/// must present the samples as they are: no augmentation, no mix-up, no dropped last batch. It
/// is restarted at epoch 0, so a shuffling loader gives the same figures.
inline Accuracy evaluate(nn::Module& model, data::BatchLoader& loader) {
    const data::LoaderOptions& o = loader.options();
    BNN_CHECK(!o.random_crop && !o.horizontal_flip && o.rotation_degrees == 0.f && o.mixup_alpha == 0.f,
              "evaluate: the loader must not augment (random_crop ", o.random_crop, ", horizontal_flip ",
              o.horizontal_flip, ", rotation_degrees ", o.rotation_degrees, ", mixup_alpha ", o.mixup_alpha, ")");
    BNN_CHECK(!o.drop_last || loader.dataset().size() % o.batch_size == 0, "evaluate: the loader drops the last ",
              loader.dataset().size() % o.batch_size, " samples (drop_last); expected every sample to be seen");
    struct RestoreMode {  // also when the forward pass throws
        nn::Module& model;
        bool training;
        ~RestoreMode() { model.train(training); }
    } restore{model, model.is_training()};
    model.eval();
    NoGradGuard no_tape;
    Hits hits;
    int64_t seen = 0;
    double loss = 0;
    loader.start_epoch(0);
    while (auto batch = loader.next()) {
        Tensor<float> logits = model.forward(Variable(batch->images)).value();
        const Hits h = count_hits(logits, batch->labels);
        hits.top1 += h.top1;
        hits.top5 += h.top5;
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
    BNN_CHECK(seen > 0, "evaluate: the loader's data set is empty");
    return {static_cast<double>(hits.top1) / seen, static_cast<double>(hits.top5) / seen, loss / seen, seen};
}

}  // namespace bnn::train
