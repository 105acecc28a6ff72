#pragma once
/// @file distillation.hpp
/// One teacher-student training step of the Real-to-Binary recipe:
///
///     total = w_ce * CE(student) + beta * L_att(student, teacher) + w_kd * L_KD(student, teacher)
///
/// The teacher is frozen: it runs in eval mode under NoGradGuard, so it records no tape and keeps
/// no activations alive. Attention is matched at every transfer point that both networks name
/// (e.g. "block1".."block8"). Without a teacher (stage 0) only the cross-entropy is used.
#include <string>
#include <utility>
#include <vector>

#include "bnn/autograd/grad_mode.hpp"
#include "bnn/autograd/variable.hpp"
#include "bnn/core/error.hpp"
#include "bnn/losses/attention_transfer.hpp"
#include "bnn/losses/cross_entropy.hpp"
#include "bnn/losses/logit_matching.hpp"
#include "bnn/ops/elementwise.hpp"
#include "bnn/optim/optimizer.hpp"
#include "bnn/train/feature_net.hpp"
#include "bnn/train/stages.hpp"
#include "bnn/train/train_step.hpp"

namespace bnn::train {

/// The differentiable total loss of a step and its parts.
struct StepLoss {
    Variable total;
    LossParts parts;
    Variable logits;  ///< the student's, e.g. for training accuracy
};

/// Freezes a teacher: eval mode and no parameter requires a gradient.
inline void freeze(nn::Module& teacher) {
    teacher.eval();
    teacher.set_requires_grad(false);
}

/// Names present in both feature lists, in the student's order.
inline std::vector<std::string> common_transfer_points(const Features& student, const Features& teacher) {
    std::vector<std::string> names;
    for (const auto& [name, v] : student.maps)
        for (const auto& [tname, tv] : teacher.maps)
            if (name == tname) names.push_back(name);
    return names;
}

/// Runs the teacher (if any) without a tape and the student with one, and builds the weighted
/// loss. Does not step any optimiser; the student's mode (train/eval) is left as the caller set it.
inline StepLoss distillation_loss(FeatureNet* teacher, FeatureNet& student, const StepBatch& batch,
                                  const LossWeights& w) {
    BNN_CHECK(batch.images.defined() && batch.images.rank() == 4, "distillation_loss: expected images [N,H,W,C], got ",
              batch.images.defined() ? batch.images.shape().str() : std::string("an undefined tensor"));
    const bool needs_teacher = w.attention > 0.f || w.kd > 0.f;
    BNN_CHECK(teacher != nullptr || !needs_teacher, "distillation_loss: attention weight ", w.attention,
              " and KD weight ", w.kd, " need a teacher, got none");
    Variable x(batch.images);

    Features t;
    if (teacher != nullptr && needs_teacher) {
        teacher->eval();
        NoGradGuard no_tape;
        t = teacher->forward_features(x);
    }
    Features s = student.forward_features(x);

    StepLoss out;
    out.logits = s.logits;
    Variable ce = batch.soft_targets.defined() ? losses::cross_entropy(s.logits, batch.soft_targets)
                                               : losses::cross_entropy(s.logits, batch.labels, w.label_smoothing);
    out.parts.ce = ce.item();
    out.total = ops::scale(ce, w.ce);
    if (w.attention > 0.f) {
        std::vector<std::string> names = common_transfer_points(s, t);
        BNN_CHECK(!names.empty(), "distillation_loss: attention matching needs transfer points named alike in ",
                  "student and teacher; they share none");
        std::vector<std::pair<Variable, Variable>> pairs;
        for (const auto& name : names) pairs.emplace_back(s.at(name), t.at(name));
        losses::AttentionOptions o = w.attention_options;
        o.beta = 1.f;
        Variable att = losses::attention_transfer(pairs, o);
        out.parts.attention = att.item();
        out.total = ops::add(out.total, ops::scale(att, w.attention));
    }
    if (w.kd > 0.f) {
        Variable kd = losses::logit_matching(s.logits, t.logits.value(), w.temperature);
        out.parts.kd = kd.item();
        out.total = ops::add(out.total, ops::scale(kd, w.kd));
    }
    out.parts.total = out.total.item();
    return out;
}

/// One optimisation step of the student through train_step (train mode, loss, backward,
/// optimiser step, then the student's constraints). Returns the loss parts and the student's
/// logits for the batch, e.g. for the training accuracy.
inline StepResult distillation_step(FeatureNet* teacher, FeatureNet& student, const StepBatch& batch,
                                    const LossWeights& w, optim::Optimizer& optimizer) {
    StepResult out;
    train_step(student, optimizer, [&] {
        StepLoss loss = distillation_loss(teacher, student, batch, w);
        out.parts = loss.parts;
        out.logits = loss.logits.value();
        return loss.total;
    });
    return out;
}

}  // namespace bnn::train
