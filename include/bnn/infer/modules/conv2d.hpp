#pragma once
/// @file conv2d.hpp
/// Conv2d in a module tree and a graph: the float convolution (a 1x1 one with an average pool
/// before it fused, in int8 with CompileOptions::dense), or with an integer stem
/// (CompileOptions::stem) the integer convolution of the raw image when it reads the network input.
#include <memory>
#include <string>

#include "bnn/infer/int_stem_step.hpp"
#include "bnn/infer/module_type.hpp"
#include "bnn/infer/op_steps.hpp"
#include "bnn/infer/pointwise_conv_step.hpp"
#include "bnn/nn/conv2d.hpp"

namespace bnn::infer::modules {

/// A copy of an optional parameter (a bias), or an empty tensor when it is absent.
inline Tensor<float> copy_or_empty(const Variable& v) { return v.defined() ? v.value().clone() : Tensor<float>(); }

/// A 1x1 stride-1 conv of value x, with the average pool (unpadded) that produced x when only
/// the conv reads it: a PointwiseConvStep, into which a following batch norm may fuse.
inline int lower_pointwise(Lowering& l, const nn::Conv2d& m, const std::string& path, int x) {
    auto step = std::make_unique<PointwiseConvStep>(path, m.weight.value().clone(), copy_or_empty(m.bias),
                                                    l.options().dense == DensePrecision::int8);
    if (auto* pool = l.fusable(x) ? dynamic_cast<PoolStep*>(&l.graph().producer(x)) : nullptr;
        pool && !pool->is_max() && pool->padding() == 0) {
        step->fuse_avg_pool(pool->kernel(), pool->stride());
        const int pooled = x;
        x = l.graph().producer_inputs(pooled).at(0);
        l.fuse_away(pooled);
    }
    return l.add(std::move(step), {x});
}

inline ModuleType conv2d() {
    return module_type<nn::Conv2d>(
        "Conv2d",
        [](const nn::Conv2d& m, TreeWriter&) {
            const auto& o = m.options();
            return Json{{"in_channels", o.in_channels}, {"out_channels", o.out_channels}, {"kernel_size", o.kernel_size},
                        {"stride", o.stride},           {"padding", o.padding},           {"bias", o.bias}};
        },
        [](TreeReader& r) {
            return std::make_shared<nn::Conv2d>(nn::Conv2dOptions{.in_channels = r.integer("in_channels", 1, kMaxSize),
                                                                  .out_channels = r.integer("out_channels", 1, kMaxSize),
                                                                  .kernel_size = r.small("kernel_size", 1, 64),
                                                                  .stride = r.small("stride", 1, 64),
                                                                  .padding = r.small("padding", 0, 64),
                                                                  .bias = r.boolean("bias")});
        },
        [](Lowering& l, const nn::Conv2d& m, const std::string& path, int x) -> int {
            const auto& o = m.options();
            if (x == 0 && reads_bytes(l.options().stem))
                return l.add(std::make_unique<IntStemStep>(path, m.weight.value(), copy_or_empty(m.bias), o.stride,
                                                           o.padding, l.options().mean, l.options().std,
                                                           l.options().stem == StemPrecision::int8
                                                               ? kernels::u8s8_weight_max
                                                               : kernels::u8s16_weight_max),
                             {x});
            if (o.kernel_size == 1 && o.stride == 1 && o.padding == 0) return lower_pointwise(l, m, path, x);
            return l.add(std::make_unique<FloatConvStep>(path, m.weight.value().clone(), copy_or_empty(m.bias), o.stride,
                                                         o.padding),
                         {x});
        });
}

}  // namespace bnn::infer::modules
