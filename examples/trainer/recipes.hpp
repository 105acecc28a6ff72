#pragma once
// The trainer's recipes as lists of stages: which network each stage trains, which earlier stage
// teaches it and which one it starts from, and the schedule it runs.
//
//   real         real ResNet-18 (cross-entropy)
//   baseline     strong baseline: binary activations + real weights, then fully binary from it
//   real-to-bin  real teacher, then steps 1-3 of the progressive teacher-student schedule
//                (docs/paper-mapping.md, "Progressive stages"), each step's teacher the
//                previous result
#include <optional>
#include <string>
#include <vector>

#include "bnn/core/error.hpp"
#include "bnn/nn/binary_conv2d.hpp"
#include "bnn/train/stages.hpp"
#include "resnet18.hpp"

namespace trainer {

struct StagePlan {
    std::string id;          ///< "real", "real-to-bin/step2", "baseline/stage1", ... (unique)
    bnn::train::StageConfig config;
    bnn::examples::Variant variant = bnn::examples::Variant::Real;
    std::string teacher;     ///< id of the teaching stage, "" for none
    std::string init_from;   ///< id of the stage whose weights the student starts from, "" for none
    /// The paper's test top-1 for this stage (Table 3: ResNet-18 on CIFAR-100, width 64, 350
    /// epochs per stage; docs/results.md), none where the paper has no figure.
    std::optional<double> paper_top1;

    /// The stage's files are named after it: "real-to-bin-step2.safetensors" (training
    /// checkpoint) and, for fully binary stages, "real-to-bin-step3.deploy.safetensors".
    std::string file_stem() const {
        std::string f = id;
        for (char& c : f)
            if (c == '/') c = '-';
        return f;
    }
    std::string file_name() const { return file_stem() + ".safetensors"; }
    std::string deploy_file_name() const { return file_stem() + ".deploy.safetensors"; }
    /// The binary convs' mode (the real network has none, so any mode builds it).
    bnn::nn::BinaryMode mode() const { return config.student_mode.value_or(bnn::nn::BinaryMode::BinaryActivations); }
};

/// The stages of the named recipes, in an order where every teacher and every initialisation
/// comes first; the real stage is shared when several recipes need it.
inline std::vector<StagePlan> plan_recipes(const std::vector<std::string>& recipes) {
    using bnn::examples::Variant;
    std::vector<StagePlan> plan;
    auto has = [&](const std::string& id) {
        for (auto& s : plan)
            if (s.id == id) return true;
        return false;
    };
    const auto r2b = bnn::train::real_to_binary_stages();
    auto add_real = [&] {
        if (!has("real")) plan.push_back({"real", r2b[0], Variant::Real, "", "", 0.783});
    };
    for (const auto& recipe : recipes) {
        if (recipe == "real") {
            add_real();
        } else if (recipe == "real-to-bin") {
            add_real();
            // The paper's two Real-to-Bin figures are its binary-activation and fully binary
            // students (steps 2 and 3); step 1, with tanh activations, has none.
            plan.push_back({"real-to-bin/step1", r2b[1], Variant::RealToBin, "real", "", std::nullopt});
            plan.push_back({"real-to-bin/step2", r2b[2], Variant::RealToBin, "real-to-bin/step1", "real-to-bin/step1",
                            0.765});
            plan.push_back({"real-to-bin/step3", r2b[3], Variant::RealToBin, "real-to-bin/step2", "real-to-bin/step2",
                            0.762});
        } else if (recipe == "baseline") {
            // The strong baseline: the same optimisers as steps 2 and 3, cross-entropy only, and
            // [LZ]'s decay factor of 0.1 per milestone.
            bnn::train::StageConfig s1 = r2b[2], s2 = r2b[3];
            for (auto* s : {&s1, &s2}) {
                s->has_teacher = false;
                s->weights = bnn::train::LossWeights{};
                s->decay = 0.1f;
            }
            s1.init_from_previous = false;
            plan.push_back({"baseline/stage1", s1, Variant::StrongBaseline, "", "", 0.721});
            plan.push_back({"baseline/stage2", s2, Variant::StrongBaseline, "", "baseline/stage1", 0.696});
        } else {
            bnn::fail("trainer: unknown recipe '", recipe, "', expected real, baseline or real-to-bin");
        }
    }
    return plan;
}

}  // namespace trainer
