#pragma once
/// @file pointwise_conv_step.hpp
/// PointwiseConvStep: a 1x1 stride-1 float convolution (a ResNet shortcut's projection) with
/// the steps around it fused:
///
///   pool   the average pool before it, k x k, stride s, no padding       (optional)
///   conv   y = pooled x W^T + bias                                         W [Cout, Cin]
///   norm   the batch norm after it, then ReLU or PReLU                     (optional)
///
///   input  x [N, H, W, Cin]; output [N, OH, OW, Cout] (the pool's extent, or H x W)
///
/// On the paths with a packed sgemm each thread takes a contiguous share of the output pixels
/// and does all three for it, a chunk at a time: one parallel region instead of three, each
/// thread reading the rows it wrote in the step before (the binary conv's pixel shares), and no
/// pooled image or conv output passed between cores. The packed sgemm sums each output in one
/// order whatever rows it is given (kernels::conv2d_rows), so the floats are those of the
/// training ops run one after the other, which is what the other paths run.
///
/// Compiled with DensePrecision::int8, the conv is kernels::linear_int8_rows on every path, in
/// the same shares: each pixel's row quantised with a step of its own, so the output does not
/// depend on the split.
#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>

#include "bnn/core/tensor.hpp"
#include "bnn/core/threads.hpp"
#include "bnn/infer/fused_steps.hpp"
#include "bnn/infer/op_steps.hpp"
#include "bnn/infer/step.hpp"
#include "bnn/kernels/conv2d.hpp"
#include "bnn/kernels/linear_int8.hpp"
#include "bnn/kernels/pool.hpp"
#include "bnn/kernels/sgemm.hpp"

namespace bnn::infer {

namespace detail {
/// Tag of a thread's pooled chunk (bnn::thread_scratch).
struct PointwiseConvPooled;
}  // namespace detail

class PointwiseConvStep : public Step {
public:
    /// weight [Cout, 1, 1, Cin] (OHWI), bias [Cout] or undefined; with `int8`, the product in
    /// int8 (DensePrecision::int8).
    PointwiseConvStep(std::string path, Tensor<float> weight, Tensor<float> bias, bool int8 = false)
        : Step(std::move(path), int8 ? "int8 conv" : "float conv"), w_(std::move(weight)), b_(std::move(bias)),
          cin_(w_.dim(3)), cout_(w_.dim(0)) {
        if (!int8) return;
        w8_ = kernels::quantize_linear_int8(w_.data(), detail::data_or_null(b_), cout_, cin_);
        w_ = b_ = Tensor<float>();  // the int8 product reads its own copies
    }

    /// The conv reads an average pool of its input (k x k windows, no padding).
    void fuse_avg_pool(int k, int stride) {
        pool_k_ = k;
        pool_stride_ = stride;
    }
    /// A batch norm (then `act`, slope [C] for PReLU) of the conv's output.
    void fuse_batch_norm(FrozenBatchNorm bn) { bn_ = std::move(bn); }
    void fuse_activation(Activation act, Tensor<float> slope = {}) {
        act_ = act;
        slope_ = std::move(slope);
    }
    bool has_pool() const { return pool_k_ > 0; }
    bool has_batch_norm() const { return bn_.defined(); }
    bool has_activation() const { return act_ != Activation::None; }

    Shape plan(const std::vector<Shape>& in) override {
        const Shape& x = in.at(0);
        check(x.rank() == 4 && x[3] == cin_, "expects input [N, H, W, ", cin_, "], got ", x.str());
        int64_t h = x[1], w = x[2];
        if (has_pool()) {
            check(h >= pool_k_ && w >= pool_k_, "pool window ", pool_k_, "x", pool_k_, " is larger than the input ",
                  x.str());
            pool_ = kernels::PoolGeometry::make(x[0], h, w, x[3], pool_k_, pool_stride_, 0);
            h = pool_.OH;
            w = pool_.OW;
            pooled_ = Tensor<float>::empty(Shape{x[0], h, w, x[3]});  // the op-by-op path's
        }
        g_ = kernels::conv2d_geometry(x[0], h, w, x[3], cout_, 1, 1, 1, 0);
        check(!bn_.defined() || bn_.channels() == g_.Cout, "batch norm of ", bn_.channels(), " channels after a conv of ",
              g_.Cout);
        return Shape{g_.N, g_.OH, g_.OW, g_.Cout};
    }

    void run(const float* const* in, float* out) override {
        if (int8() || kernels::has_packed_sgemm(kernels::active_isa())) run_in_shares(in[0], out);
        else run_op_by_op(in[0], out);
    }
    std::string fused() const override {
        std::string s = has_pool() ? "avg pool" : "";
        if (int8()) s += std::string(s.empty() ? "" : ", ") + "int8 weights and rows";
        if (has_batch_norm()) s += std::string(s.empty() ? "" : ", ") + "BN";
        if (act_ != Activation::None) s += act_ == Activation::ReLU ? ", ReLU" : ", PReLU";
        return s;
    }

private:
    bool int8() const { return w8_.Cout() > 0; }
    const float* bias() const { return detail::data_or_null(b_); }
    const float* slope() const { return act_ == Activation::PReLU ? slope_.data() : nullptr; }

    void run_in_shares(const float* x, float* out) const {
        const int64_t C = g_.C, Co = g_.Cout;
        // Pixels per chunk: the pooled chunk stays within L2 beside the packed weights.
        const int64_t chunk = std::max<int64_t>(1, (int64_t{1} << 15) / C);
        const int threads = kernels::pointwise_worth_threading(g_) ? num_threads() : 1;
        const kernels::Isa isa = kernels::active_isa();
        parallel_ranges(g_.N * g_.OH * g_.OW, threads, [&](int, int64_t begin, int64_t end) {
            float* pooled = has_pool() ? thread_scratch<detail::PointwiseConvPooled>(chunk * C) : nullptr;
            for (int64_t p0 = begin; p0 < end;) {
                const int64_t p1 = pooled ? std::min(end, p0 + chunk) : end;
                const float* a = x + p0 * C;
                if (pooled) {
                    kernels::avg_pool2d_pixels(x, pool_, p0, p1, pooled);
                    a = pooled;
                }
                float* y = out + p0 * Co;
                if (int8()) kernels::linear_int8_rows(a, p1 - p0, w8_, y, isa);
                else kernels::conv2d_rows(a, p1 - p0, C, w_.data(), bias(), Co, y);
                if (bn_.defined()) bn_activation_rows(y, p1 - p0, Co, bn_, act_ == Activation::ReLU, slope());
                p0 = p1;
            }
        });
    }
    void run_op_by_op(const float* x, float* out) {
        if (has_pool()) {
            kernels::avg_pool2d_forward(x, pooled_.data(), pool_);
            x = pooled_.data();
        }
        kernels::conv2d_forward(x, w_.data(), bias(), out, g_);
        if (bn_.defined())
            bn_activation(out, g_.N * g_.OH * g_.OW, g_.Cout, bn_, act_ == Activation::ReLU, slope());
    }

    Tensor<float> w_, b_;            // with fp32 only
    int64_t cin_, cout_;
    kernels::Int8LinearWeights w8_;  // with int8 only
    int pool_k_ = 0, pool_stride_ = 0;
    FrozenBatchNorm bn_;
    Activation act_ = Activation::None;
    Tensor<float> slope_, pooled_;
    kernels::PoolGeometry pool_{};
    kernels::Conv2dGeometry g_{};
};

}  // namespace bnn::infer
