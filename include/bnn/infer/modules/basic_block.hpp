#pragma once
/// @file basic_block.hpp
/// The real-valued blocks in a module tree and a graph: BasicBlock (conv-BN-ReLU-conv-BN, + the
/// shortcut, ReLU) and Downsample (a chain: pool, 1x1 conv, BN).
#include <memory>
#include <string>

#include "bnn/infer/modules/activation.hpp"
#include "bnn/infer/module_type.hpp"
#include "bnn/infer/op_steps.hpp"
#include "bnn/nn/basic_block.hpp"
#include "bnn/nn/downsample.hpp"

namespace bnn::infer::modules {

/// A block whose options are in_channels, out_channels and stride.
template <class M, class Options>
ModuleType strided_block(const char* name, std::function<int(Lowering&, const M&, const std::string&, int)> lower) {
    return module_type<M>(
        name,
        [](const M& m, TreeWriter&) {
            return Json{{"in_channels", m.options().in_channels},
                        {"out_channels", m.options().out_channels},
                        {"stride", m.options().stride}};
        },
        [](TreeReader& r) {
            return std::make_shared<M>(Options{.in_channels = r.integer("in_channels", 1, kMaxSize),
                                               .out_channels = r.integer("out_channels", 1, kMaxSize),
                                               .stride = r.small("stride", 1, 64)});
        },
        std::move(lower));
}

inline int lower_basic_block(Lowering& l, const nn::BasicBlock& b, const std::string& path, int x) {
    l.share(x);
    const int s = b.downsample ? l.lower(*b.downsample, join_path(path, "downsample"), x) : x;
    int y = l.lower(*b.conv1, join_path(path, "conv1"), x);
    y = l.lower(*b.bn1, join_path(path, "bn1"), y);
    y = lower_activation(l, join_path(path, "relu"), y, Activation::ReLU, {});
    y = l.lower(*b.conv2, join_path(path, "conv2"), y);
    y = l.lower(*b.bn2, join_path(path, "bn2"), y);
    return l.add(std::make_unique<AddStep>(path, true), {y, s});
}

inline ModuleType basic_block() {
    return strided_block<nn::BasicBlock, nn::BasicBlockOptions>("BasicBlock", lower_basic_block);
}

inline ModuleType downsample() {
    return strided_block<nn::Downsample, nn::DownsampleOptions>(
        "Downsample", [](Lowering& l, const nn::Downsample& m, const std::string& path, int x) { return l.chain(m, path, x); });
}

}  // namespace bnn::infer::modules
