// The C++ side of the Python module's tests (tests/python): writes the network files they load
// and computes, through the C++ API alone, the logits the module must equal bit for bit.
//
//   python_fixture write <dir>
//       <dir>/tiny.deploy.safetensors   a fully binary Real-to-Bin ResNet-18 (CIFAR stem, width 8,
//                                       10 classes) with the trainer's metadata
//       <dir>/plain.deploy.safetensors  the same network without it
//       <dir>/tiny.safetensors          the same network as a trainer checkpoint
//   python_fixture logits <model> <input> <N> <H> <W> <C> <fp32|int16|int8> <fp32|int8> <threads> <output>
//       <input>: raw float32 (fp32 stem) or uint8 (integer stems) values [N, H, W, C]; <output>:
//       raw float32 logits of examples::load_network(model) compiled with that stem, those dense
//       layers and thread count.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "bnn/core/rng.hpp"
#include "bnn/core/threads.hpp"
#include "bnn/infer/compile.hpp"
#include "bnn/io/checkpoint.hpp"
#include "resnet18_deploy.hpp"
#include "trained_model.hpp"

namespace {

using bnn::examples::ResNetOptions;

const ResNetOptions kTiny{.variant = bnn::examples::Variant::RealToBin, .width = 8, .num_classes = 10,
                          .mode = bnn::nn::BinaryMode::FullyBinary};

nlohmann::json trainer_metadata() {
    std::vector<std::string> names;
    for (const char* n : {"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"})
        names.push_back(n);
    return {{"variant", "real-to-bin"}, {"student", "fully-binary"}, {"width", kTiny.width},
            {"num_classes", kTiny.num_classes}, {"in_channels", 3}, {"image_size", 32}, {"input_size", 32},
            {"dataset", "fixture"}, {"mean", {0.49f, 0.48f, 0.45f}}, {"std", {0.25f, 0.24f, 0.26f}},
            {"class_names", names}};
}

void write(const std::filesystem::path& dir) {
    bnn::manual_seed(25);
    bnn::examples::ResNet18 net(kTiny);
    // Batch norm statistics and per-channel parameters away from their initial values, so that
    // every fused scale and threshold matters.
    bnn::Rng& rng = bnn::default_rng();
    for (auto& [name, b] : net.named_buffers())
        for (float& v : b) v = name.ends_with("running_var") ? 0.5f + rng.uniform() : 0.2f * rng.normal();
    for (auto& [name, p] : net.named_parameters())
        if (p.value().rank() == 1)
            for (float& v : p.value()) v += 0.2f * rng.normal();
    net.eval();
    const nlohmann::json meta = trainer_metadata();
    bnn::io::Metadata extra;
    for (const char* key : {"dataset", "mean", "std", "class_names", "image_size", "input_size"})
        extra[key] = meta.at(key).dump();
    bnn::examples::export_resnet18((dir / "tiny.deploy.safetensors").string(), net, extra);
    bnn::examples::export_resnet18((dir / "plain.deploy.safetensors").string(), net);
    bnn::io::save_checkpoint((dir / "tiny.safetensors").string(), net, meta);
}

template <class T>
std::vector<T> read_raw(const std::string& path, int64_t count) {
    std::vector<T> values(count);
    std::ifstream in(path, std::ios::binary);
    in.read(reinterpret_cast<char*>(values.data()), static_cast<std::streamsize>(count * sizeof(T)));
    BNN_CHECK(in.gcount() == static_cast<std::streamsize>(count * sizeof(T)), "python_fixture: '", path,
              "' holds fewer than ", count, " values");
    return values;
}

void logits(char** arg) {
    const bnn::examples::Network net = bnn::examples::load_network(arg[0]);
    const bnn::Shape shape{std::stoll(arg[2]), std::stoll(arg[3]), std::stoll(arg[4]), std::stoll(arg[5])};
    const bnn::infer::StemPrecision stem = bnn::infer::stem_precision(arg[6]);
    const bool bytes = bnn::infer::reads_bytes(stem);
    bnn::set_num_threads(std::stoi(arg[8]));
    bnn::infer::CompileOptions options{.stem = stem, .dense = bnn::infer::dense_precision(arg[7])};
    if (bytes) {
        options.mean = net.preprocessing->mean;
        options.std = net.preprocessing->std;
    }
    bnn::infer::Graph graph = bnn::infer::compile(*net.model, shape, options);
    const bnn::Tensor<float>& out =
        bytes ? graph.run(bnn::Tensor<uint8_t>::from_vector(shape, read_raw<uint8_t>(arg[1], shape.numel())))
              : graph.run(bnn::Tensor<float>::from_vector(shape, read_raw<float>(arg[1], shape.numel())));
    std::ofstream(arg[9], std::ios::binary)
        .write(reinterpret_cast<const char*>(out.data()), static_cast<std::streamsize>(out.numel() * sizeof(float)));
}

}  // namespace

int main(int argc, char** argv) {
    try {
        if (argc == 3 && std::string(argv[1]) == "write") {
            write(argv[2]);
            return 0;
        }
        if (argc == 12 && std::string(argv[1]) == "logits") {
            logits(argv + 2);
            return 0;
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "python_fixture: %s\n", e.what());
        return 1;
    }
    std::fprintf(stderr, "usage: python_fixture write <dir> | logits <model> <input> <N> <H> <W> <C> "
                         "<fp32|int16|int8> <fp32|int8> <threads> <output>\n");
    return 2;
}
