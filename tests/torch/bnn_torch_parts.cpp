// bnn's half of the part-by-part tests of the PyTorch twin: one module or one loss with options
// the ResNet-18 stages do not use (one-padding, every WeightScale and mode of BinaryConv2d, the
// half-block's scales, every attention norm and distance, KD temperatures, label smoothing),
// forward and backward, so test_twin_parts.py can compare the twin's with them.
//
//   bnn_torch_parts <spec.json> <in.safetensors> <out.safetensors>
//
// spec "kind":
//   "binary_conv": BinaryConv2d {in, out, kernel, stride, padding, pad_value, mode, scale};
//     in: "x" [N,H,W,C], "module.<name>" parameters (bnn layout), "dy" (gradient of the output)
//     out: "y", "grad.x", "grad.<name>" of every parameter
//   "half_block": BinaryHalfBlock {in, out, stride, scale ("alpha"|"gate"), pad_value, mode,
//     conv_scale}, in train mode (batch statistics): inputs and outputs as binary_conv, plus
//     "after.<name>" of its buffers
//   "attention": {points, norm ("l2"|"max"|"none"), distance ("squared"|"absolute"|"l2norm")};
//     in: "s<j>", "t<j>" [N,H,W,C]; out: "loss" [1], "grad.s<j>", "grad.t<j>"
//   "kd": {temperature}; in: "zs", "zt" [N,K]; out: "loss", "grad.zs"
//   "ce": {label_smoothing}; in: "logits" [N,K], "labels" [N] I64 or "soft_targets" [N,K];
//     out: "loss", "grad.logits"
//   "loader": the trainer's BatchLoader {batch, seed, epochs, augment (random crop and flip, as
//     the trainer trains), shuffle, drop_last}; in: "images" U8 [N,H,W,C], "labels" [N] I64;
//     out: "mean", "std" [C] (the images' channel statistics, which normalize them), "images"
//     [epochs*batches*batch,H,W,C] and "labels" of every batch of epochs 1..epochs in order
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "bnn/core/threads.hpp"
#include "bnn/data/loader.hpp"
#include "bnn/io/checkpoint.hpp"
#include "bnn/io/safetensors.hpp"
#include "bnn/losses/attention_transfer.hpp"
#include "bnn/losses/cross_entropy.hpp"
#include "bnn/losses/logit_matching.hpp"
#include "bnn/nn/binary_half_block.hpp"

namespace {

using bnn::Tensor;
using bnn::Variable;
using bnn::io::NamedTensors;
using bnn::io::SafetensorsFile;
using nlohmann::json;

bnn::nn::BinaryMode mode_of(const std::string& m) {
    if (m == "soft_activations") return bnn::nn::BinaryMode::SoftActivations;
    if (m == "binary_activations") return bnn::nn::BinaryMode::BinaryActivations;
    BNN_CHECK(m == "fully_binary", "bnn_torch_parts: mode must be soft_activations, binary_activations or ",
              "fully_binary, got '", m, "'");
    return bnn::nn::BinaryMode::FullyBinary;
}

bnn::nn::WeightScale scale_of(const std::string& s) {
    if (s == "none") return bnn::nn::WeightScale::None;
    if (s == "mean_abs") return bnn::nn::WeightScale::MeanAbs;
    if (s == "learned") return bnn::nn::WeightScale::Learned;
    BNN_CHECK(s == "alpha", "bnn_torch_parts: scale must be none, mean_abs, learned or alpha, got '", s, "'");
    return bnn::nn::WeightScale::Folded;
}

bnn::nn::PadValue pad_of(const std::string& p) {
    BNN_CHECK(p == "zero" || p == "one", "bnn_torch_parts: pad_value must be zero or one, got '", p, "'");
    return p == "one" ? bnn::nn::PadValue::One : bnn::nn::PadValue::Zero;
}

// Parameters and buffers of `m` from the tensors "module.<name>" (strict).
void load_module_tensors(const SafetensorsFile& in, bnn::nn::Module& m) {
    SafetensorsFile part;
    part.source = in.source + " (module.*)";
    for (const auto& [name, t] : in.tensors)
        if (name.rfind("module.", 0) == 0) part.tensors.emplace_back(name.substr(7), t);
    bnn::io::load_module(part, m);
}

// Forward, backward from "dy", and the output, input and parameter gradients.
void run_module(bnn::nn::Module& m, const SafetensorsFile& in, NamedTensors& out) {
    load_module_tensors(in, m);
    Variable x(in.get<float>("x").clone(), true);
    Variable y = m.forward(x);
    y.backward(in.get<float>("dy"));
    out.emplace_back("y", y.value());
    out.emplace_back("grad.x", x.grad());
    for (auto& [name, p] : m.named_parameters())
        out.emplace_back("grad." + name, p.has_grad() ? p.grad() : Tensor<float>(p.shape()));
    for (auto& [name, b] : m.named_buffers()) out.emplace_back("after." + name, b);
}

Tensor<float> scalar(float v) { return Tensor<float>::full(bnn::Shape{1}, v); }

void run_loader(const json& spec, const SafetensorsFile& in, NamedTensors& out) {
    bnn::data::Dataset data;
    data.images = in.get<uint8_t>("images");
    const Tensor<int64_t> labels = in.get<int64_t>("labels");
    data.labels.assign(labels.begin(), labels.end());
    data.num_classes = 1 + *std::max_element(data.labels.begin(), data.labels.end());
    data.class_names.resize(static_cast<size_t>(data.num_classes));
    const bnn::data::Normalization norm = bnn::data::channel_statistics(data.images);
    const bool augment = spec.at("augment");
    bnn::data::BatchLoader loader(data, {.batch_size = spec.at("batch"),
                                         .shuffle = spec.at("shuffle"),
                                         .drop_last = spec.at("drop_last"),
                                         .seed = spec.at("seed"),
                                         .random_crop = augment,
                                         .horizontal_flip = augment,
                                         .mean = norm.mean,
                                         .std = norm.std});
    std::vector<float> pixels;
    std::vector<int64_t> seen;
    for (int64_t e = 1; e <= spec.at("epochs").get<int64_t>(); ++e) {
        loader.start_epoch(e);
        while (auto batch = loader.next()) {
            pixels.insert(pixels.end(), batch->images.begin(), batch->images.end());
            seen.insert(seen.end(), batch->labels.begin(), batch->labels.end());
        }
    }
    const auto n = static_cast<int64_t>(seen.size());
    const auto c = static_cast<int64_t>(norm.mean.size());
    out.emplace_back("mean", Tensor<float>::from_vector(bnn::Shape{c}, norm.mean));
    out.emplace_back("std", Tensor<float>::from_vector(bnn::Shape{c}, norm.std));
    out.emplace_back("images", Tensor<float>::from_vector(
                                       bnn::Shape{n, data.height(), data.width(), data.channels()}, pixels));
    out.emplace_back("labels", Tensor<int64_t>::from_vector(bnn::Shape{n}, seen));
}

int run(const std::string& spec_path, const std::string& in_path, const std::string& out_path) {
    std::ifstream spec_file(spec_path);
    BNN_CHECK(spec_file.good(), "bnn_torch_parts: cannot open the spec '", spec_path, "'");
    const json spec = json::parse(spec_file);
    bnn::set_num_threads(1);
    const SafetensorsFile in = bnn::io::load_safetensors(in_path);
    const std::string kind = spec.at("kind");
    NamedTensors out;
    if (kind == "binary_conv") {
        bnn::nn::BinaryConv2d conv({.in_channels = spec.at("in"),
                                    .out_channels = spec.at("out"),
                                    .kernel_size = spec.at("kernel"),
                                    .stride = spec.at("stride"),
                                    .padding = spec.at("padding"),
                                    .pad_value = pad_of(spec.at("pad_value")),
                                    .mode = mode_of(spec.at("mode")),
                                    .scale = scale_of(spec.at("scale"))});
        conv.train();
        run_module(conv, in, out);
    } else if (kind == "half_block") {
        bnn::nn::BinaryHalfBlock block({.in_channels = spec.at("in"),
                                        .out_channels = spec.at("out"),
                                        .stride = spec.at("stride"),
                                        .scale = spec.at("scale") == "gate" ? bnn::nn::BlockScale::Gate
                                                                            : bnn::nn::BlockScale::Learned,
                                        .pad_value = pad_of(spec.at("pad_value")),
                                        .mode = mode_of(spec.at("mode")),
                                        .conv_scale = spec.contains("conv_scale")
                                                          ? std::optional(scale_of(spec["conv_scale"]))
                                                          : std::nullopt});
        block.train();
        run_module(block, in, out);
    } else if (kind == "attention") {
        bnn::losses::AttentionOptions o;
        const std::string norm = spec.at("norm"), distance = spec.at("distance");
        o.norm = norm == "max" ? bnn::losses::AttentionNorm::Max
                 : norm == "none" ? bnn::losses::AttentionNorm::None : bnn::losses::AttentionNorm::L2;
        o.distance = distance == "absolute" ? bnn::losses::AttentionDistance::Absolute
                     : distance == "l2norm" ? bnn::losses::AttentionDistance::L2Norm
                                            : bnn::losses::AttentionDistance::Squared;
        std::vector<std::pair<Variable, Variable>> pairs;
        for (int j = 0; j < spec.at("points").get<int>(); ++j)
            pairs.emplace_back(Variable(in.get<float>("s" + std::to_string(j)).clone(), true),
                               Variable(in.get<float>("t" + std::to_string(j)).clone(), true));
        Variable loss = bnn::losses::attention_transfer(pairs, o);
        loss.backward();
        out.emplace_back("loss", scalar(loss.item()));
        for (size_t j = 0; j < pairs.size(); ++j) {
            out.emplace_back("grad.s" + std::to_string(j), pairs[j].first.grad());
            out.emplace_back("grad.t" + std::to_string(j), pairs[j].second.grad());
        }
    } else if (kind == "kd") {
        Variable zs(in.get<float>("zs").clone(), true);
        Variable loss = bnn::losses::logit_matching(zs, in.get<float>("zt"), spec.at("temperature").get<float>());
        loss.backward();
        out.emplace_back("loss", scalar(loss.item()));
        out.emplace_back("grad.zs", zs.grad());
    } else if (kind == "ce") {
        Variable logits(in.get<float>("logits").clone(), true);
        Variable loss;
        if (in.contains("soft_targets")) {
            loss = bnn::losses::cross_entropy(logits, in.get<float>("soft_targets"));
        } else {
            const Tensor<int64_t> l = in.get<int64_t>("labels");
            std::vector<int32_t> labels(l.begin(), l.end());
            loss = bnn::losses::cross_entropy(logits, labels, spec.value("label_smoothing", 0.f));
        }
        loss.backward();
        out.emplace_back("loss", scalar(loss.item()));
        out.emplace_back("grad.logits", logits.grad());
    } else if (kind == "loader") {
        run_loader(spec, in, out);
    } else {
        bnn::fail("bnn_torch_parts: kind must be binary_conv, half_block, attention, kd, ce or loader, got '", kind,
                  "'");
    }
    bnn::io::save_safetensors(out_path, out);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 4) {
        std::fprintf(stderr, "usage: bnn_torch_parts <spec.json> <in.safetensors> <out.safetensors>\n");
        return 2;
    }
    try {
        return run(argv[1], argv[2], argv[3]);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bnn_torch_parts: %s\n", e.what());
        return 1;
    }
}
