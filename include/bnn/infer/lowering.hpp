#pragma once
/// @file lowering.hpp
/// Lowering: the state of infer::compile while it turns a module tree into a Graph. Each module
/// type's lower function (module_type.hpp) receives it, adds the module's steps and returns the
/// value its output is, and may fuse into the step that produced its input when nothing else
/// reads that value (fusable()).
///
///     int lower(Lowering& l, const MyScale& m, const std::string& path, int x) {
///         return l.add(std::make_unique<ScaleStep>(path, m.factor.value().clone()), {x});
///     }
///
/// Values are numbered as in Graph: 0 is the network input, step i's output is value i.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "bnn/infer/graph.hpp"
#include "bnn/infer/step.hpp"
#include "bnn/nn/module.hpp"

namespace bnn::infer {

/// The arithmetic of the convolutions that read the network input.
enum class StemPrecision {
    fp32,   ///< the float convolution of the normalized input (run() takes floats)
    int16,  ///< raw uint8 pixels x int16 weights, int32 sums (run() takes uint8 images)
    int8,   ///< the same with weights rounded to int8's 255 levels: vpdpbusd where VNNI is present
};

/// True for the integer stems, which read the raw uint8 image.
inline bool reads_bytes(StemPrecision p) { return p != StemPrecision::fp32; }

/// The precision named "fp32", "int16" or "int8"; anything else is a bnn::Error.
inline StemPrecision stem_precision(const std::string& name) {
    if (name == "fp32") return StemPrecision::fp32;
    if (name == "int16") return StemPrecision::int16;
    BNN_CHECK(name == "int8", "stem: expected 'fp32', 'int16' or 'int8', found '", name, "'");
    return StemPrecision::int8;
}

/// The arithmetic of the dense layers: 1x1 stride-1 convolutions (a ResNet shortcut's
/// projection) and Linear layers (the classifier).
enum class DensePrecision {
    fp32,  ///< the float product of the training op
    int8,  ///< int8 weights per output channel, each input row quantised to int8 with a step of its own
           ///< (kernels/linear_int8.hpp): vpdpbusd where AVX-512 VNNI is present
};

/// The precision named "fp32" or "int8"; anything else is a bnn::Error.
inline DensePrecision dense_precision(const std::string& name) {
    if (name == "fp32") return DensePrecision::fp32;
    BNN_CHECK(name == "int8", "dense: expected 'fp32' or 'int8', found '", name, "'");
    return DensePrecision::int8;
}

/// Options of infer::compile.
struct CompileOptions {
    StemPrecision stem = StemPrecision::fp32;
    DensePrecision dense = DensePrecision::fp32;
    /// With an integer stem: the normalization the network was trained on, per input channel,
    /// x_n = (x / 255 - mean[c]) / std[c] (ImageNet: 0.485, 0.456, 0.406 and 0.229, 0.224, 0.225).
    std::vector<float> mean{}, std{};
};

/// "<path>.<name>", or name at the root.
inline std::string join_path(const std::string& path, const std::string& name) {
    return path.empty() ? name : path + "." + name;
}

class Lowering {
public:
    Lowering(Graph& graph, const CompileOptions& options) : g_(graph), options_(options) { shared_.push_back(true); }

    /// Lowers `m` (at `path`) applied to value x; returns the value of its output. The module's
    /// registered type decides how; an unregistered chain lowers its children in order; anything
    /// else is a bnn::Error naming the path. Defined in module_registry.hpp, after the registry.
    int lower(const nn::Module& m, const std::string& path, int x);
    /// Each child of `m` in order, the output of one the input of the next.
    int chain(const nn::Module& m, const std::string& path, int x) {
        for (const auto& [name, child] : m.children()) x = lower(*child, join_path(path, name), x);
        return x;
    }

    /// Appends a step reading `inputs`; returns its output value.
    int add(std::unique_ptr<Step> step, std::vector<int> inputs) {
        const int v = g_.add(std::move(step), std::move(inputs));
        shared_.push_back(false);
        return v;
    }
    /// True when v is a step's output that no other step reads yet (nor may later): a module
    /// reading it may fuse into its producer (g.producer(v)).
    bool fusable(int v) const { return v > 0 && !shared_[v]; }
    /// Marks v as read by more than one step (a block's input that its shortcut reads too).
    void share(int v) { shared_[v] = true; }
    /// Drops the step producing v once its work has been fused into its reader; v's inputs are
    /// cleared and the graph removes the step when the lowering ends.
    void fuse_away(int v) {
        g_.producer_inputs(v).clear();
        dead_.push_back(v);
    }

    Graph& graph() { return g_; }
    const CompileOptions& options() const { return options_; }
    /// Values whose steps were fused away.
    const std::vector<int>& dead() const { return dead_; }

private:
    Graph& g_;
    const CompileOptions& options_;
    std::vector<bool> shared_;  // per value
    std::vector<int> dead_;
};

}  // namespace bnn::infer
