#pragma once
/// @file stages.hpp
/// The progressive teacher-student schedule of Real-to-Binary (Sec. 4.1-4.2) as data, so a
/// trainer loops over stages instead of hard-coding them. The choices the paper leaves open:
/// docs/paper-mapping.md, "Progressive stages" and "Optimisation".
///
/// | stage | student                                   | teacher | losses             |
/// |-------|-------------------------------------------|---------|--------------------|
/// | 0     | real ResNet-18                            | -       | CE                 |
/// | 1     | binary architecture, tanh act., real W    | stage 0 | CE + attention + KD|
/// | 2     | sign activations, real W                  | stage 1 | CE + attention + KD|
/// | 3     | sign activations, sign(W) * mean|W|       | stage 2 | CE + KD            |
#include <optional>
#include <string>
#include <vector>

#include "bnn/core/error.hpp"
#include "bnn/losses/attention_transfer.hpp"
#include "bnn/nn/binary_mode.hpp"

namespace bnn::train {

/// The weights of the loss parts: total = ce * CE + attention * L_att + kd * L_KD.
struct LossWeights {
    float ce = 1.f;
    float attention = 0.f;    ///< beta of attention matching (0 disables it)
    float kd = 0.f;           ///< weight of the distillation loss (0 disables it)
    float temperature = 1.f;  ///< T of the distillation loss
    float label_smoothing = 0.f;
    losses::AttentionOptions attention_options{};  ///< norm and distance (its beta is ignored)
};

/// One stage of the schedule: the student's mode, where it starts, its losses and its optimiser.
/// Defaults are the CIFAR-100 recipe of the paper, Larq Zoo where the paper is silent ([LZ]).
struct StageConfig {
    int stage = 0;
    std::string name;
    /// What is binary in the student; empty for the real-valued network (stage 0).
    std::optional<nn::BinaryMode> student_mode;
    bool has_teacher = false;          ///< the previous stage's result is the (frozen) teacher
    bool init_from_previous = false;   ///< the student starts from the previous stage's weights
    LossWeights weights{};
    // Adam (paper Sec. 4.1), with decoupled weight decay where weight_decay > 0.
    float lr = 1e-3f;
    float weight_decay = 1e-5f;
    int warmup_epochs = 5;             ///< linear warm-up of the learning rate
    int epochs = 350;                  ///< CIFAR-100; ImageNet uses 75
    std::vector<int> milestones{150, 250, 320};  ///< step decay epochs (CIFAR-100)
    float decay = 0.3f;                ///< [LZ] factor per milestone (0.1 for the strong baseline)
};

/// The four stages with the paper's defaults:
/// - attention beta 30 and KD weight 3 in stages 1-2, KD 0.8 and no attention in stage 3 [LZ];
/// - lr 1e-3, weight decay 1e-5, 5 warm-up epochs while the weights are real; 2e-4, no decay and
///   no warm-up once they are binary (Sec. 4.1);
/// - stage 2 starts from stage 1 (strong baseline's choice) and stage 3 from stage 2.
/// Stage 0 (the real teacher) is not specified by the paper; it uses stage 1's optimiser.
inline std::vector<StageConfig> real_to_binary_stages() {
    std::vector<StageConfig> s(4);
    s[0].stage = 0;
    s[0].name = "real";

    s[1].stage = 1;
    s[1].name = "soft-activations";
    s[1].student_mode = nn::BinaryMode::SoftActivations;
    s[1].has_teacher = true;
    s[1].weights.attention = 30.f;
    s[1].weights.kd = 3.f;

    s[2] = s[1];
    s[2].stage = 2;
    s[2].name = "binary-activations";
    s[2].student_mode = nn::BinaryMode::BinaryActivations;
    s[2].init_from_previous = true;

    s[3].stage = 3;
    s[3].name = "fully-binary";
    s[3].student_mode = nn::BinaryMode::FullyBinary;
    s[3].has_teacher = true;
    s[3].init_from_previous = true;
    s[3].weights.kd = 0.8f;
    s[3].lr = 2e-4f;
    s[3].weight_decay = 0.f;
    s[3].warmup_epochs = 0;
    return s;
}

/// Stage k of real_to_binary_stages(); bnn::Error for k outside 0..3.
inline StageConfig real_to_binary_stage(int k) {
    BNN_CHECK(k >= 0 && k <= 3, "real_to_binary_stage: stages are 0..3, got ", k);
    return real_to_binary_stages()[static_cast<size_t>(k)];
}

/// The student's name in logs and in checkpoint metadata ("student"): "real",
/// "soft-activations", "binary-activations" or "fully-binary". The hyphens are the checkpoint
/// format's; module trees spell modes as nn::binary_mode_name() does.
inline std::string student_name(const std::optional<nn::BinaryMode>& mode) {
    if (!mode) return "real";
    std::string name = nn::binary_mode_name(*mode);
    for (char& c : name)
        if (c == '_') c = '-';
    return name;
}

}  // namespace bnn::train
