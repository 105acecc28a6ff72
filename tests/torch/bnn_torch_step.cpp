// bnn's half of the PyTorch equivalence tests: runs training steps of one trainer stage on given
// weights and data, exactly as examples/train_cifar100 does, and writes what they computed, so a
// script can run the same steps in the PyTorch twin (examples/pytorch) and compare.
//
//   bnn_torch_step <spec.json> <in.safetensors> <out.safetensors>
//
// spec.json: "stage" (a trainer stage id: "real", "real-to-bin/step1".."step3",
//   "baseline/stage1", "baseline/stage2"), "stem" ("cifar" | "imagenet"), "width", "classes",
//   "optimizer" ("adamw": the trainer's Adam with decoupled decay | "adam": L2 decay | "sgd":
//   momentum 0.9, L2 decay), "lr_scale", "schedule" ("cosine" | "step"), "epochs",
//   "steps_per_epoch", "first_step", "steps", "batch", optional "label_smoothing", "threads".
// in:  "student.<name>" and, for taught stages, "teacher.<name>" for every parameter and buffer
//   (bnn's names and layouts), "images" [steps*batch,H,W,C], "labels" [steps*batch] (I32 or I64),
//   optional "soft_targets" [steps*batch,K]. With "student_file" in the spec the student is
//   loaded from that file by io::load_module instead (e.g. a torchvision state_dict); with
//   "eval_only" the program writes only the eval-mode "logits" of all the images. With "plan_only"
//   it reads no tensors and writes only the trainer's stage table, as JSON in the metadata "plan".
//   With "init_only" it reads no tensors and writes every parameter and buffer of the stage's
//   network as bnn initialises it after bnn::manual_seed("seed"), under its own name.
// out: "logits" [batch,K] of step 0; "loss.total", "loss.ce", "loss.attention", "loss.kd", "lr"
//   [steps]; "grad.<name>" of every parameter after step 0's backward; "after.<name>" of every
//   parameter and buffer after the last step.
#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bnn/core/threads.hpp"
#include "bnn/io/checkpoint.hpp"
#include "bnn/io/safetensors.hpp"
#include "bnn/optim/adam.hpp"
#include "bnn/optim/sgd.hpp"
#include "bnn/train/distillation.hpp"
#include "bnn/train/param_groups.hpp"
#include "bnn/train/stage_schedule.hpp"
#include "resnet18.hpp"
#include "trainer/recipes.hpp"

namespace {

using bnn::io::AnyTensor;
using bnn::io::NamedTensors;
using bnn::io::SafetensorsFile;

const trainer::StagePlan& find_stage(const std::vector<trainer::StagePlan>& plan, const std::string& id) {
    for (const auto& s : plan)
        if (s.id == id) return s;
    bnn::fail("bnn_torch_step: unknown stage '", id,
              "', expected real, real-to-bin/step1..3 or baseline/stage1..2");
}

std::unique_ptr<bnn::examples::ResNet18> make_model(const trainer::StagePlan& s, const nlohmann::json& spec,
                                                    int64_t in_channels) {
    const std::string stem = spec.value("stem", "cifar");
    BNN_CHECK(stem == "cifar" || stem == "imagenet", "bnn_torch_step: stem must be cifar or imagenet, got '", stem,
              "'");
    return std::make_unique<bnn::examples::ResNet18>(bnn::examples::ResNetOptions{
        .variant = s.variant,
        .stem = stem == "cifar" ? bnn::examples::Stem::Cifar : bnn::examples::Stem::ImageNet,
        .width = spec.at("width").get<int64_t>(),
        .num_classes = spec.at("classes").get<int64_t>(),
        .in_channels = in_channels,
        .mode = s.mode()});
}

// Every parameter and buffer of `model` from the tensors "<prefix><name>" of `file` (strict).
void load_prefixed(const SafetensorsFile& file, const std::string& prefix, bnn::nn::Module& model) {
    SafetensorsFile part;
    part.source = file.source + " (" + prefix + "*)";
    for (const auto& [name, t] : file.tensors)
        if (name.rfind(prefix, 0) == 0) part.tensors.emplace_back(name.substr(prefix.size()), t);
    bnn::io::load_module(part, model);
}

std::vector<int32_t> labels_of(const SafetensorsFile& file) {
    const AnyTensor* t = file.find("labels");
    BNN_CHECK(t, "bnn_torch_step: '", file.source, "' has no tensor 'labels'");
    std::vector<int32_t> out;
    if (const auto* i32 = std::get_if<bnn::Tensor<int32_t>>(t)) {
        out.assign(i32->data(), i32->data() + i32->numel());
    } else {
        const auto* i64 = std::get_if<bnn::Tensor<int64_t>>(t);
        BNN_CHECK(i64, "bnn_torch_step: 'labels' must be I32 or I64, got ", bnn::io::detail::dtype_of(*t));
        for (int64_t k = 0; k < i64->numel(); ++k) out.push_back(static_cast<int32_t>((*i64)[k]));
    }
    return out;
}

std::unique_ptr<bnn::optim::Optimizer> make_optimizer(const std::string& kind, const bnn::nn::Module& model, float lr,
                                                      float weight_decay) {
    auto groups = bnn::train::param_groups(model, lr, weight_decay);
    if (kind == "adamw")
        return std::make_unique<bnn::optim::Adam>(std::move(groups), bnn::optim::AdamOptions{.decoupled_weight_decay = true});
    if (kind == "adam") return std::make_unique<bnn::optim::Adam>(std::move(groups), bnn::optim::AdamOptions{});
    if (kind == "sgd") return std::make_unique<bnn::optim::SGD>(std::move(groups), bnn::optim::SGDOptions{.momentum = 0.9f});
    bnn::fail("bnn_torch_step: optimizer must be adamw, adam or sgd, got '", kind, "'");
}

// Every field of the trainer's stages, under the names of the twin's StagePlan and StageConfig.
nlohmann::json plan_json(const std::vector<trainer::StagePlan>& plan) {
    const char* norms[] = {"l2", "max", "none"};
    const char* distances[] = {"squared", "absolute", "l2norm"};
    nlohmann::json out = nlohmann::json::array();
    for (const auto& s : plan) {
        const auto& c = s.config;
        const auto& w = c.weights;
        out.push_back({{"id", s.id}, {"variant", bnn::examples::variant_name(s.variant)}, {"teacher", s.teacher},
                       {"init_from", s.init_from}, {"paper_top1", s.paper_top1 ? nlohmann::json(*s.paper_top1) : nlohmann::json()},
                       {"stage", c.stage}, {"name", c.name}, {"student", c.student_mode ? bnn::nn::binary_mode_name(*c.student_mode) : "real"},
                       {"has_teacher", c.has_teacher}, {"init_from_previous", c.init_from_previous},
                       {"lr", c.lr}, {"weight_decay", c.weight_decay}, {"warmup_epochs", c.warmup_epochs},
                       {"epochs", c.epochs}, {"milestones", c.milestones}, {"decay", c.decay},
                       {"weights", {{"ce", w.ce}, {"attention", w.attention}, {"kd", w.kd},
                                    {"temperature", w.temperature}, {"label_smoothing", w.label_smoothing},
                                    {"attention_norm", norms[static_cast<int>(w.attention_options.norm)]},
                                    {"attention_distance", distances[static_cast<int>(w.attention_options.distance)]}}}});
    }
    return out;
}

bnn::Tensor<float> scalars(const std::vector<float>& v) {
    return bnn::Tensor<float>::from_vector(bnn::Shape{static_cast<int64_t>(v.size())}, v);
}

int run(const std::string& spec_path, const std::string& in_path, const std::string& out_path) {
    std::ifstream spec_file(spec_path);
    BNN_CHECK(spec_file.good(), "bnn_torch_step: cannot open the spec '", spec_path, "'");
    const nlohmann::json spec = nlohmann::json::parse(spec_file);
    bnn::set_num_threads(spec.value("threads", 1));

    const auto plan = trainer::plan_recipes({"real", "real-to-bin", "baseline"});
    if (spec.value("plan_only", false)) {
        bnn::io::save_safetensors(out_path, {}, {{"plan", plan_json(plan).dump()}});
        return 0;
    }
    const trainer::StagePlan& stage = find_stage(plan, spec.at("stage").get<std::string>());
    if (spec.value("init_only", false)) {
        bnn::manual_seed(spec.at("seed").get<uint64_t>());
        const auto model = make_model(stage, spec, spec.value("in_channels", 3));
        NamedTensors out;
        for (auto& [name, p] : model->named_parameters()) out.emplace_back(name, p.value().clone());
        for (auto& [name, b] : model->named_buffers()) out.emplace_back(name, b.clone());
        bnn::io::save_safetensors(out_path, out);
        return 0;
    }
    bnn::train::StageConfig config = stage.config;
    if (spec.contains("label_smoothing")) config.weights.label_smoothing = spec["label_smoothing"].get<float>();
    // The stage's decay (1e-5 or 0) moves a step by far less than the tolerances see.
    if (spec.contains("weight_decay")) config.weight_decay = spec["weight_decay"].get<float>();

    const SafetensorsFile in = bnn::io::load_safetensors(in_path);
    const bnn::Tensor<float> images = in.get<float>("images");
    BNN_CHECK(images.rank() == 4, "bnn_torch_step: images must be [N,H,W,C], got ", images.shape().str());
    const std::vector<int32_t> labels = labels_of(in);
    const bnn::Tensor<float> soft = in.contains("soft_targets") ? in.get<float>("soft_targets") : bnn::Tensor<float>();

    auto model = make_model(stage, spec, images.dim(3));
    if (spec.contains("student_file")) {
        // A file of its own, loaded as a user would: PyTorch's layouts and names converted.
        bnn::io::load_module(spec["student_file"].get<std::string>(), *model);
    } else {
        load_prefixed(in, "student.", *model);
    }
    if (spec.value("eval_only", false)) {
        model->eval();
        bnn::NoGradGuard no_tape;
        bnn::io::save_safetensors(out_path, {{"logits", model->forward(bnn::Variable(images)).value()}});
        return 0;
    }
    std::unique_ptr<bnn::examples::ResNet18> teacher;
    if (!stage.teacher.empty()) {
        teacher = make_model(find_stage(plan, stage.teacher), spec, images.dim(3));
        load_prefixed(in, "teacher.", *teacher);
        bnn::train::freeze(*teacher);
    }

    const int steps = spec.at("steps").get<int>(), batch = spec.at("batch").get<int>();
    BNN_CHECK(images.dim(0) == int64_t{steps} * batch && static_cast<int64_t>(labels.size()) == images.dim(0),
              "bnn_torch_step: expected steps*batch = ", int64_t{steps} * batch, " images and labels, got ",
              images.dim(0), " images and ", labels.size(), " labels");
    const float lr = config.lr * spec.value("lr_scale", 1.f);
    auto optimizer = make_optimizer(spec.value("optimizer", "adamw"), *model, lr, config.weight_decay);
    const auto shape = spec.value("schedule", "cosine") == "step" ? bnn::train::ScheduleShape::StepDecay
                                                                  : bnn::train::ScheduleShape::Cosine;
    auto schedule = bnn::train::stage_schedule(config, shape, spec.at("epochs").get<int>());
    const double steps_per_epoch = spec.at("steps_per_epoch").get<double>();
    const int first_step = spec.value("first_step", 0);

    NamedTensors out;
    std::vector<float> total, ce, att, kd, lrs;
    for (int i = 0; i < steps; ++i) {
        optimizer->set_lr_factor(static_cast<float>(schedule->factor((first_step + i) / steps_per_epoch)));
        const int64_t b0 = int64_t{i} * batch, b1 = b0 + batch;
        bnn::train::StepBatch step_batch{images.slice(b0, b1).clone(),
                                         std::vector<int32_t>(labels.begin() + b0, labels.begin() + b1),
                                         soft.defined() ? soft.slice(b0, b1).clone() : bnn::Tensor<float>()};
        bnn::train::StepResult r =
            bnn::train::distillation_step(teacher.get(), *model, step_batch, config.weights, *optimizer);
        total.push_back(r.parts.total);
        ce.push_back(r.parts.ce);
        att.push_back(r.parts.attention);
        kd.push_back(r.parts.kd);
        lrs.push_back(optimizer->lr(0));
        if (i == 0) {
            out.emplace_back("logits", r.logits);
            for (auto& [name, p] : model->named_parameters())
                out.emplace_back("grad." + name, p.has_grad() ? p.grad().clone() : bnn::Tensor<float>(p.shape()));
        }
    }
    for (auto& [name, p] : model->named_parameters()) out.emplace_back("after." + name, p.value().clone());
    for (auto& [name, b] : model->named_buffers()) out.emplace_back("after." + name, b.clone());
    out.emplace_back("loss.total", scalars(total));
    out.emplace_back("loss.ce", scalars(ce));
    out.emplace_back("loss.attention", scalars(att));
    out.emplace_back("loss.kd", scalars(kd));
    out.emplace_back("lr", scalars(lrs));
    bnn::io::save_safetensors(out_path, out);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 4) {
        std::fprintf(stderr, "usage: bnn_torch_step <spec.json> <in.safetensors> <out.safetensors>\n");
        return 2;
    }
    try {
        return run(argv[1], argv[2], argv[3]);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bnn_torch_step: %s\n", e.what());
        return 1;
    }
}
