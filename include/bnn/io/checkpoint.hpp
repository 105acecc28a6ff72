#pragma once
/// @file checkpoint.hpp
/// Checkpoints: a Module's parameters and buffers (by dotted name), optionally an optimiser's
/// state, and training metadata, in one safetensors file (see docs/checkpoint-format.md).
///
/// Layout of a bnn checkpoint:
///  - one F32 tensor per parameter and buffer, named as in named_parameters()/named_buffers();
///  - one F32 tensor per optimiser state tensor, named "optim." + its state name;
///  - "__metadata__": "format" = "bnn-checkpoint-1", "metadata" = the caller's JSON (stage,
///    epoch, seed, ...) as a string, and "optim.step_count" when optimiser state is saved.
#include <concepts>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "bnn/io/pytorch_layout.hpp"
#include "bnn/io/safetensors.hpp"
#include "bnn/nn/module.hpp"

namespace bnn::io {

inline constexpr const char* kCheckpointFormat = "bnn-checkpoint-1";
inline constexpr const char* kOptimPrefix = "optim.";

/// Anything with named live state tensors and a step counter (bnn::optim::Optimizer).
template <class O>
concept OptimizerState = requires(const O& c, O& o, int64_t n) {
    { c.state_tensors() };
    { c.step_count() } -> std::convertible_to<int64_t>;
    o.set_step_count(n);
};

namespace detail {
inline void add_module_tensors(const nn::Module& module, NamedTensors& out) {
    std::set<std::string> seen;
    for (const auto& [name, p] : module.named_parameters()) {
        BNN_CHECK(seen.insert(name).second, "save_checkpoint: parameter name '", name, "' appears twice");
        out.emplace_back(name, p.value());
    }
    for (const auto& [name, b] : module.named_buffers()) {
        BNN_CHECK(seen.insert(name).second, "save_checkpoint: buffer name '", name,
                  "' appears twice or clashes with a parameter");
        out.emplace_back(name, b);
    }
}

inline Metadata checkpoint_metadata(const nlohmann::json& metadata) {
    return Metadata{{"format", kCheckpointFormat}, {"metadata", metadata.is_null() ? "{}" : metadata.dump()}};
}
}  // namespace detail

/// Saves the module's parameters and buffers plus `metadata` (any JSON: stage, epoch, seed...),
/// atomically.
inline void save_checkpoint(const std::string& path, const nn::Module& module,
                            const nlohmann::json& metadata = nlohmann::json::object()) {
    NamedTensors tensors;
    detail::add_module_tensors(module, tensors);
    save_safetensors(path, tensors, detail::checkpoint_metadata(metadata));
}

/// Saves the module, the optimiser's state tensors (prefixed "optim.") and its step count, and
/// `metadata`, atomically: everything needed to resume training exactly.
template <OptimizerState O>
void save_checkpoint(const std::string& path, const nn::Module& module, const O& optimizer,
                     const nlohmann::json& metadata = nlohmann::json::object()) {
    NamedTensors tensors;
    detail::add_module_tensors(module, tensors);
    for (const auto& [name, t] : optimizer.state_tensors())
        tensors.emplace_back(kOptimPrefix + name, Tensor<float>(t));
    Metadata meta = detail::checkpoint_metadata(metadata);
    meta["optim.step_count"] = std::to_string(optimizer.step_count());
    save_safetensors(path, tensors, meta);
}

/// A tensor present in both the file and the module, with different shapes (or dtype).
struct ShapeMismatch {
    std::string name;
    std::string expected;  ///< the module's shape
    std::string found;     ///< the file's shape (and dtype when it is not F32)
};

/// What load_module did: keys loaded, keys the module has but the file lacks, keys the file has
/// but the module lacks (optimiser state is not counted), and shape mismatches.
struct LoadReport {
    std::vector<std::string> loaded;
    std::vector<std::string> missing;
    std::vector<std::string> unexpected;
    std::vector<ShapeMismatch> mismatched;
    /// Notes, not problems: PyTorch's integer counters (num_batches_tracked), which bnn's batch
    /// norm does not keep, and F32 tensors loaded from F16 / BF16 data.
    std::vector<std::string> ignored;
    std::vector<std::string> widened;
    /// Also notes: tensors loaded under the module's own name through its name_aliases(),
    /// as "file name -> module name".
    std::vector<std::string> renamed;

    /// True when every key matched.
    bool complete() const { return missing.empty() && unexpected.empty() && mismatched.empty(); }
    /// A readable summary listing every problem.
    std::string str() const {
        std::ostringstream os;
        os << loaded.size() << " tensors loaded";
        auto list = [&](const char* what, const std::vector<std::string>& names) {
            if (names.empty()) return;
            os << "; " << names.size() << ' ' << what << ':';
            for (const auto& n : names) os << ' ' << n;
        };
        list("missing from the file", missing);
        list("unexpected in the file", unexpected);
        list("ignored (integer counters bnn does not keep)", ignored);
        list("widened from F16/BF16 to F32", widened);
        if (!renamed.empty()) os << "; " << renamed.size() << " loaded under the module's names (e.g. " << renamed.front() << ')';
        if (!mismatched.empty()) {
            os << "; " << mismatched.size() << " shape mismatches:";
            for (const auto& m : mismatched) os << ' ' << m.name << " (module " << m.expected << ", file " << m.found << ')';
        }
        return os.str();
    }
};

struct LoadOptions {
    /// Strict: any missing, unexpected or mismatched key raises bnn::Error and nothing is
    /// written. Non-strict: load every key that matches and report the rest (e.g. initialising
    /// stage k+1 from stage k's checkpoint).
    bool strict = true;
};

namespace detail {
/// The module's name for each of the file's tensors: its own name when the module has it, else
/// the first of the modules' name_aliases() that turns it into one the file does not also hold.
inline std::map<std::string, std::string> own_names(const SafetensorsFile& file, const nn::Module& module,
                                                    const std::set<std::string>& known) {
    std::vector<std::pair<std::string, std::string>> aliases;
    for (const auto& [path, m] : module.named_modules())
        for (const auto& [foreign, own] : m->name_aliases()) {
            const std::string at = path.empty() ? "" : path + ".";
            aliases.emplace_back(at + foreign, at + own);
        }
    std::map<std::string, std::string> out;
    for (const auto& [name, t] : file.tensors) {
        if (known.count(name)) {
            out[name] = name;
            continue;
        }
        for (const auto& [foreign, own] : aliases)
            if (name.rfind(foreign, 0) == 0) {
                std::string renamed = own + name.substr(foreign.size());
                if (known.count(renamed) && !file.contains(renamed)) {
                    out[name] = renamed;
                    break;
                }
            }
    }
    return out;
}
}  // namespace detail

/// Copies parameters and buffers from a checkpoint into `module` in place, by name. Also reads
/// what PyTorch wrote: a file marked "format: pt" has its convolution weights converted from
/// OIHW, and tensors named as in another framework load through the modules' name_aliases().
inline LoadReport load_module(const SafetensorsFile& file, nn::Module& module, LoadOptions options = {}) {
    LoadReport report;
    std::map<std::string, Tensor<float>> destinations;
    for (auto& [name, p] : module.named_parameters()) destinations.emplace(name, p.value());
    for (auto& [name, b] : module.named_buffers()) destinations.emplace(name, b);
    std::set<std::string> known;
    for (const auto& [name, t] : destinations) known.insert(name);
    const std::map<std::string, std::string> own = detail::own_names(file, module, known);
    const bool pytorch = is_pytorch_file(file);

    std::map<std::string, std::pair<std::string, const AnyTensor*>> sources;  // own name -> (file name, tensor)
    const std::string counter = ".num_batches_tracked";
    for (const auto& [name, t] : file.tensors) {
        if (auto it = own.find(name); it != own.end()) {
            sources[it->second] = {name, &t};
            if (it->second != name) report.renamed.push_back(name + " -> " + it->second);
            continue;
        }
        if (name.rfind(kOptimPrefix, 0) == 0) continue;
        const bool named = name == counter.substr(1) ||
                           (name.size() > counter.size() &&
                            name.compare(name.size() - counter.size(), counter.size(), counter) == 0);
        const bool is_counter =
            named && (std::holds_alternative<Tensor<int64_t>>(t) || std::holds_alternative<Tensor<int32_t>>(t));
        (is_counter ? report.ignored : report.unexpected).push_back(name);
    }

    std::vector<std::pair<Tensor<float>, Tensor<float>>> copies;  // (destination, source)
    auto visit = [&](const std::string& name) {
        Tensor<float> dst = destinations.at(name);
        auto it = sources.find(name);
        if (it == sources.end()) {
            report.missing.push_back(name);
            return;
        }
        const AnyTensor& src = *it->second.second;
        const Tensor<float>* f = std::get_if<Tensor<float>>(&src);
        Tensor<float> value = f ? *f : Tensor<float>();
        if (f && pytorch && f->rank() == 4) value = oihw_to_ohwi(*f);
        if (!f || value.shape() != dst.shape()) {
            std::string found = detail::shape_of(src).str();
            if (!f) found += std::string(" ") + detail::dtype_of(src);
            if (f && pytorch && f->rank() == 4) found += " (OIHW, " + value.shape().str() + " as OHWI)";
            // The safetensors package marks nothing unless asked: say what would make it load.
            if (f && !pytorch && f->rank() == 4 &&
                Shape{f->dim(0), f->dim(2), f->dim(3), f->dim(1)} == dst.shape())
                found += " (PyTorch's OIHW layout? a file PyTorch wrote needs the metadata format: pt)";
            report.mismatched.push_back({name, dst.shape().str(), found});
            return;
        }
        copies.emplace_back(dst, value);
        report.loaded.push_back(name);
        if (file.widened.count(it->second.first)) report.widened.push_back(name);
    };
    for (auto& [name, p] : module.named_parameters()) visit(name);
    for (auto& [name, b] : module.named_buffers()) visit(name);

    if (options.strict && !report.complete())
        ::bnn::fail("load_module: checkpoint '", file.source, "' does not match the ", module.type_name(),
                            ": ", report.str());
    for (auto& [dst, src] : copies) dst.copy_from(src);
    return report;
}

/// Reads a checkpoint file and loads it into `module` (see the overload above).
inline LoadReport load_module(const std::string& path, nn::Module& module, LoadOptions options = {}) {
    return load_module(load_safetensors(path), module, options);
}

/// Restores an optimiser's state tensors and step count from a checkpoint saved with it. Every
/// state tensor must be present with its shape (else bnn::Error, nothing written).
template <OptimizerState O>
void load_optimizer(const SafetensorsFile& file, O& optimizer) {
    auto it = file.metadata.find("optim.step_count");
    BNN_CHECK(it != file.metadata.end(), "load_optimizer: checkpoint '", file.source,
              "' holds no optimiser state (no optim.step_count in its metadata)");
    int64_t steps = 0;
    try {
        size_t used = 0;
        steps = std::stoll(it->second, &used);
        BNN_CHECK(used == it->second.size(), "");
    } catch (...) {
        ::bnn::fail("load_optimizer: checkpoint '", file.source, "' has a malformed optim.step_count '",
                            it->second, "'");
    }
    std::vector<std::pair<Tensor<float>, Tensor<float>>> copies;
    std::set<std::string> expected;
    for (const auto& [name, t] : optimizer.state_tensors()) {
        const std::string key = kOptimPrefix + name;
        expected.insert(key);
        const AnyTensor* src = file.find(key);
        BNN_CHECK(src, "load_optimizer: checkpoint '", file.source, "' lacks the optimiser state '", key, "'");
        const Tensor<float>* f = std::get_if<Tensor<float>>(src);
        BNN_CHECK(f && f->shape() == t.shape(), "load_optimizer: checkpoint '", file.source, "': state '", key,
                  "' expected F32 ", t.shape().str(), ", found ", detail::dtype_of(*src), ' ',
                  detail::shape_of(*src).str());
        copies.emplace_back(t, *f);
    }
    for (const auto& [name, t] : file.tensors)
        BNN_CHECK(name.rfind(kOptimPrefix, 0) != 0 || expected.count(name), "load_optimizer: checkpoint '",
                  file.source, "' has optimiser state '", name, "' that this optimiser does not have (another optimiser or parameter set?)");
    for (auto& [dst, src] : copies) dst.copy_from(src);
    optimizer.set_step_count(steps);
}

template <OptimizerState O>
void load_optimizer(const std::string& path, O& optimizer) {
    load_optimizer(load_safetensors(path), optimizer);
}

/// The caller's metadata saved with a checkpoint (an empty object when there is none).
inline nlohmann::json checkpoint_metadata(const SafetensorsFile& file) {
    auto it = file.metadata.find("metadata");
    if (it == file.metadata.end()) return nlohmann::json::object();
    try {
        return nlohmann::json::parse(it->second);
    } catch (const nlohmann::json::exception& e) {
        ::bnn::fail("checkpoint_metadata: '", file.source, "' has metadata that is not valid JSON: ", e.what());
    }
}

inline nlohmann::json checkpoint_metadata(const std::string& path) { return checkpoint_metadata(load_safetensors(path)); }

}  // namespace bnn::io
