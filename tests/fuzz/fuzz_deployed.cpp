// Fuzzes deployment-file loading as classify does it: io::load_deployed rebuilds the module
// tree the file describes and loads its tensors into it (binary convs unpacked from sign bits);
// a network that loads and is small is then compiled and run on an 8x8 input, since a file can
// describe any architecture. bnn::Error is the only acceptable failure.
#include <cstddef>
#include <cstdint>
#include <string>

#include "bnn/infer/compile.hpp"
#include "bnn/io/deploy.hpp"
#include "scratch_file.hpp"

namespace {

/// The input channels of the described network: those of its first module that has any.
int64_t input_channels(const bnn::io::Json& node) {
    if (!node.is_object()) return 0;
    if (node.contains("children") && node["children"].is_array()) {
        for (const auto& c : node["children"])
            if (c.is_array() && c.size() == 2)
                if (int64_t k = input_channels(c[1])) return k;
        return 0;
    }
    if (node.contains("body")) return input_channels(node["body"]);
    if (!node.contains("options") || !node["options"].is_object()) return 0;
    for (const char* key : {"in_channels", "channels", "in_features"})
        if (node["options"].contains(key) && node["options"][key].is_number_integer())
            return node["options"][key].get<int64_t>();
    return 0;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string path = bnn::fuzz::write_scratch("model.deploy.safetensors", data, size);
    bnn::io::Deployed d;
    try {
        d = bnn::io::load_deployed(path);
    } catch (const bnn::Error&) {
        return 0;
    }
    if (!d.model || d.model->is_training()) __builtin_trap();  // a loaded network is in eval mode
    if (d.model->num_parameters() > (1 << 16)) return 0;         // keep executions fast
    const int64_t channels = input_channels(bnn::io::describe_module(*d.model, /*deployed=*/true));
    if (channels < 1 || channels > 64) return 0;
    try {
        const bnn::Tensor<float> x = bnn::Tensor<float>::full({1, 8, 8, channels}, 0.5f);
        bnn::infer::Graph graph = bnn::infer::compile(*d.model, x.shape());
        (void)graph.run(x);
    } catch (const bnn::Error&) {
    }
    return 0;
}
