#pragma once
/// @file resnet18_infer.hpp
/// Fast inference for a frozen binary ResNet-18 (strong baseline or Real-to-Bin,
/// examples/resnet18.hpp), built from a trained model or from a deployment file
/// (examples/resnet18_deploy.hpp).
///
/// The graph is a fixed sequence of fused steps over buffers planned once per input shape:
///
///   stem       float conv (infer/few_channel_conv.hpp) -> BN + ReLU/PReLU in place -> max pool
///   per binary half-block (16):
///     pack     BN + sign + bit packing straight into the conv's padded input bits, and the
///              gate's per-channel mean of the BN output, in one pass (infer/fused_steps.hpp)
///     gate     G = sigmoid(W2 relu(W1 mean)), a few hundred MACs per image
///     shortcut identity, or AvgPool 2x2 -> float 1x1 conv -> BN in place (the "downsample")
///     conv     XNOR-popcount conv whose tile epilogue applies alpha, G, PReLU and the residual
///              add, writing the block's output (over the input itself for identity shortcuts)
///   head       global average pool -> fully connected
///
/// Every step performs the training ops' own float operations in their order, so the logits
/// equal the training model's eval-mode logits (tests/test_inference.cpp). A steady-state
/// forward() (same input shape and thread count as the previous call) allocates nothing on the AVX2/AVX-512
/// paths. Threads: the binary convs split output pixels x channel blocks over the whole batch
/// (so a batch of one still uses every thread); packing splits images x 64-channel words; the
/// float convs and GEMMs thread as in training.
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "bnn/autograd/grad_mode.hpp"
#include "bnn/infer/binary_conv_step.hpp"
#include "bnn/infer/few_channel_conv.hpp"
#include "bnn/infer/fused_steps.hpp"
#include "bnn/io/deploy.hpp"
#include "bnn/kernels/gemm.hpp"
#include "bnn/kernels/pool.hpp"
#include "resnet18.hpp"
#include "resnet18_deploy.hpp"

namespace bnn::examples {

/// Wall time per part of the network, summed over profiled forward() calls (seconds).
struct InferenceProfile {
    double stem = 0;          ///< stem conv, BN, activation, max pool
    double pack = 0;          ///< BN + sign + pack passes and the gates
    double binary_convs = 0;  ///< XNOR-popcount convs with their fused output transforms
    double downsample = 0;    ///< shortcut avg pool, 1x1 float conv and BN
    double head = 0;          ///< global average pool and the classifier
    int64_t calls = 0;
    double total() const { return stem + pack + binary_convs + downsample + head; }
};

/// A frozen binary ResNet-18 compiled into fused inference steps (see the file comment).
class InferResNet18 {
public:
    /// From a trained binary ResNet-18 in FullyBinary mode; the network is only read here.
    explicit InferResNet18(const ResNet18& net) {
        BNN_CHECK(net.options().variant != Variant::Real,
                  "InferResNet18: the real ResNet-18 has no binary convs (use the training model with NoGradGuard)");
        build(net, [&](const std::string& name, const nn::BinaryConv2d& conv) {
            (void)name;
            return io::freeze_binary_conv(conv);
        });
    }

    /// From a deployment file written by export_resnet18().
    explicit InferResNet18(const std::string& deploy_path) {
        io::DeployedModel d = io::load_deployed(deploy_path);
        ResNet18 net(resnet_options_from(d.file.metadata, deploy_path));
        io::load_real_parts(d, net);
        build(net, [&](const std::string& name, const nn::BinaryConv2d&) { return d.conv(name); });
    }

    /// Logits [N, classes] of images [N, H, W, in_channels]. The first call for an input shape
    /// plans the buffers; later calls with that shape allocate nothing. The returned tensor is
    /// the graph's own output buffer, overwritten by the next call.
    const Tensor<float>& forward(const Tensor<float>& images) {
        BNN_CHECK(images.rank() == 4 && images.dim(3) == options_.in_channels, "InferResNet18: expected images [N, H, W, ",
                  options_.in_channels, "], got ", images.shape().str());
        // Re-planned for a new shape or thread count (scratch per thread, the stem's blocking).
        if (!(images.shape() == planned_) || num_threads() != planned_threads_)
            plan(images.dim(0), images.dim(1), images.dim(2));
        run(images.data());
        return logits_;
    }

    /// Turns the per-part timing on or off (two clock reads per step when on).
    void set_profiling(bool on) { profiling_ = on; }
    const InferenceProfile& profile() const { return profile_; }
    void reset_profile() { profile_ = {}; }
    const ResNetOptions& options() const { return options_; }

private:
    struct Half {
        infer::FrozenBatchNorm bn;
        kernels::PackedConvWeights weights;
        Tensor<float> alpha, slope;  // [Cout]
        int64_t cin = 0, cout = 0, stride = 1, padding = 1;
        infer::FrozenGate gate;  // undefined without a gate
        bool shortcut = false, shortcut_pool = false;
        Tensor<float> shortcut_w, shortcut_b;  // [Cout, 1, 1, Cin], bias or undefined
        infer::FrozenBatchNorm shortcut_bn;
    };

    using ConvSource = std::function<io::FrozenBinaryConv(const std::string&, const nn::BinaryConv2d&)>;

    static infer::FrozenBatchNorm freeze_bn(const nn::BatchNorm2d& bn) {
        return infer::FrozenBatchNorm(bn.weight.value().data(), bn.bias.value().data(), bn.running_mean.data(),
                                      bn.running_var.data(), bn.channels(), bn.eps());
    }
    static Tensor<float> copy_of(const Variable& v) { return v.defined() ? v.value().clone() : Tensor<float>(); }

    void build(const ResNet18& net, const ConvSource& conv_of) {
        options_ = net.options();
        const auto& stem = net.stem->children();
        auto conv = std::dynamic_pointer_cast<nn::Conv2d>(stem.at(0).second);
        auto bn = std::dynamic_pointer_cast<nn::BatchNorm2d>(stem.at(1).second);
        BNN_CHECK(conv && bn, "InferResNet18: unexpected stem layout");
        stem_w_ = copy_of(conv->weight);
        stem_b_ = copy_of(conv->bias);
        stem_k_ = conv->options().kernel_size;
        stem_stride_ = conv->options().stride;
        stem_pad_ = conv->options().padding;
        stem_bn_ = freeze_bn(*bn);
        if (auto prelu = std::dynamic_pointer_cast<nn::PReLU>(stem.at(2).second)) stem_slope_ = copy_of(prelu->weight);
        stem_pool_ = stem.size() > 3;  // MaxPool2d(3, 2, 1) of the ImageNet stem

        halves_.clear();
        for (size_t b = 0; b < net.blocks.size(); ++b) {
            auto block = std::dynamic_pointer_cast<BinaryBlock>(net.blocks[b]);
            BNN_CHECK(block, "InferResNet18: block", b + 1, " is not a binary block");
            int k = 1;
            for (const auto& half : {block->half1, block->half2}) {
                const std::string name = "block" + std::to_string(b + 1) + ".half" + std::to_string(k++) + ".conv";
                io::FrozenBinaryConv f = conv_of(name, *half->conv);
                Half h;
                h.bn = freeze_bn(*half->bn);
                h.weights = f.weights;
                h.alpha = f.scale.clone();
                h.cin = f.weights.cin;
                h.cout = f.weights.cout;
                h.stride = f.stride;
                h.padding = f.padding;
                h.slope = copy_of(half->prelu->weight);
                if (half->gate) {
                    h.gate = infer::FrozenGate(half->gate->weight1.value(), half->gate->weight2.value());
                }
                if (half->shortcut) {
                    h.shortcut = true;
                    const auto& parts = half->shortcut->children();
                    h.shortcut_pool = parts.size() == 3;
                    auto sc = std::dynamic_pointer_cast<nn::Conv2d>(parts.at(parts.size() - 2).second);
                    auto sbn = std::dynamic_pointer_cast<nn::BatchNorm2d>(parts.back().second);
                    BNN_CHECK(sc && sbn, "InferResNet18: unexpected shortcut layout in ", name);
                    h.shortcut_w = copy_of(sc->weight);
                    h.shortcut_b = copy_of(sc->bias);
                    h.shortcut_bn = freeze_bn(*sbn);
                }
                halves_.push_back(std::move(h));
            }
        }
        fc_w_ = copy_of(net.fc->weight);
        fc_b_ = copy_of(net.fc->bias);
        planned_ = Shape{};
    }

    // Buffers and steps for inputs [N, H, W, in_channels].
    void plan(int64_t N, int64_t H, int64_t W) {
        const int threads = num_threads();
        stem_per_image_ = false;
        const int64_t w = options_.width;
        stem_g_ = kernels::conv2d_geometry(N, H, W, options_.in_channels, w, stem_k_, stem_k_, stem_stride_, stem_pad_);
        int64_t h = stem_g_.OH, wd = stem_g_.OW, biggest = N * h * wd * w;
        if (stem_pool_) {
            pool_g_ = kernels::PoolGeometry::make(N, h, wd, w, 3, 2, 1);
            // Pre-pool stem output: one image at a time when the stem runs image by image.
            stem_per_image_ = N > 1 && kernels::detail::conv_blocking(stem_g_, threads).images_per_unit == 1;
            stem_buf_ = Tensor<float>::empty(Shape{(stem_per_image_ ? 1 : N) * h * wd * w});
            h = pool_g_.OH;
            wd = pool_g_.OW;
            biggest = N * h * wd * w;
        }
        steps_.clear();
        shortcut_pool_g_.clear();
        shortcut_g_.clear();
        int64_t c = w, pool_tmp = 1, max_c = w, max_hidden = 1;
        for (const Half& half : halves_) {
            BNN_CHECK(half.cin == c, "InferResNet18: half-block expects ", half.cin, " channels, gets ", c);
            steps_.emplace_back(half.weights, half.stride, half.padding, N, h, wd);
            const auto& g = steps_.back().geometry();
            kernels::PoolGeometry pg{};
            kernels::Conv2dGeometry cg{};
            if (half.shortcut) {
                int64_t sh = h, sw = wd;
                if (half.shortcut_pool) {
                    pg = kernels::PoolGeometry::make(N, h, wd, c, half.stride, half.stride, 0);
                    pool_tmp = std::max(pool_tmp, N * pg.OH * pg.OW * c);
                    sh = pg.OH;
                    sw = pg.OW;
                }
                cg = kernels::conv2d_geometry(N, sh, sw, c, half.cout, 1, 1, 1, 0);
                BNN_CHECK(cg.OH == g.OH && cg.OW == g.OW, "InferResNet18: shortcut output ", cg.OH, "x", cg.OW,
                          " does not match the binary conv's ", g.OH, "x", g.OW, " (spatial sizes must stay even)");
            }
            shortcut_pool_g_.push_back(pg);
            shortcut_g_.push_back(cg);
            h = g.OH;
            wd = g.OW;
            c = half.cout;
            biggest = std::max(biggest, N * h * wd * c);
            max_c = std::max(max_c, std::max(half.cin, half.cout));
            max_hidden = std::max(max_hidden, half.gate.hidden);
        }
        act_[0] = Tensor<float>::empty(Shape{biggest});
        act_[1] = Tensor<float>::empty(Shape{biggest});
        pool_tmp_ = Tensor<float>::empty(Shape{pool_tmp});
        gate_mean_ = Tensor<float>::empty(Shape{N * max_c});
        gate_scratch_ = Tensor<float>::empty(Shape{N * max_c});
        gate_hidden_ = Tensor<float>::empty(Shape{N * max_hidden});
        gate_ = Tensor<float>::empty(Shape{N * max_c});
        features_ = Tensor<float>::empty(Shape{N, c});
        final_h_ = h;
        final_w_ = wd;
        logits_ = Tensor<float>::empty(Shape{N, options_.num_classes});
        planned_ = Shape{N, H, W, options_.in_channels};
        planned_threads_ = threads;
    }

    template <class F>
    void timed(double& slot, F&& f) {
        if (!profiling_) {
            f();
            return;
        }
        const auto t0 = std::chrono::steady_clock::now();
        f();
        slot += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }

    // Stem into out [N, H', W', width]. When the training conv takes one image per block anyway
    // (large images), the stem runs image by image, so the pre-pool output of one image (3 MB
    // at 224x224) is still in cache for its BN and pool passes; the floats are the same, since
    // each image's product is the same GEMM either way.
    void run_stem(const float* images, float* out) {
        const int64_t N = stem_g_.N, w = options_.width;
        const float* bias = stem_b_.defined() ? stem_b_.data() : nullptr;
        const float* slope = stem_slope_.defined() ? stem_slope_.data() : nullptr;
        const bool per_image = stem_per_image_;
        kernels::Conv2dGeometry g = stem_g_;
        kernels::PoolGeometry pg = pool_g_;
        if (per_image) g.N = pg.N = 1;
        const int64_t in_image = stem_g_.H * stem_g_.W * stem_g_.C, conv_image = g.OH * g.OW * w;
        const int64_t pooled_image = pg.OH * pg.OW * w;
        for (int64_t n = 0; n < N; n += g.N) {
            float* conv_out = stem_pool_ ? stem_buf_.data() : out + n * conv_image;
            infer::few_channel_conv(images + n * in_image, stem_w_.data(), bias, conv_out, g);
            infer::bn_activation(conv_out, g.N * g.OH * g.OW, w, stem_bn_, slope == nullptr, slope);
            if (stem_pool_) infer::max_pool(conv_out, out + n * pooled_image, pg);
        }
    }

    void run(const float* images) {
        const int64_t N = planned_[0];
        float* cur = act_[0].data();
        float* spare = act_[1].data();
        int64_t h = stem_g_.OH, w = stem_g_.OW, c = options_.width;
        timed(profile_.stem, [&] { run_stem(images, cur); });
        if (stem_pool_) {
            h = pool_g_.OH;
            w = pool_g_.OW;
        }
        for (size_t i = 0; i < halves_.size(); ++i) {
            const Half& half = halves_[i];
            infer::BinaryConvStep& step = steps_[i];
            const bool gated = half.gate.defined();
            timed(profile_.pack, [&] {
                infer::bn_sign_pack(cur, N, h, w, c, half.bn, step, gated ? gate_mean_.data() : nullptr);
                if (gated) half.gate.forward(gate_mean_.data(), gate_.data(), gate_hidden_.data(), gate_scratch_.data(), N);
            });
            float* out = cur;  // identity shortcut: the output overwrites the input in place
            if (half.shortcut) {
                timed(profile_.downsample, [&] {
                    const float* src = cur;
                    if (half.shortcut_pool) {
                        kernels::avg_pool2d_forward(cur, pool_tmp_.data(), shortcut_pool_g_[i]);
                        src = pool_tmp_.data();
                    }
                    const auto& cg = shortcut_g_[i];
                    infer::float_conv(src, half.shortcut_w.data(),
                                      half.shortcut_b.defined() ? half.shortcut_b.data() : nullptr, spare, cg);
                    infer::bn_activation(spare, cg.N * cg.OH * cg.OW, cg.Cout, half.shortcut_bn, false, nullptr);
                });
                out = spare;
                std::swap(cur, spare);
            }
            timed(profile_.binary_convs, [&] {
                step.run({half.alpha.data(), gated ? gate_.data() : nullptr, half.slope.data(), out}, out);
            });
            const auto& g = step.geometry();
            h = g.OH;
            w = g.OW;
            c = g.Cout;
        }
        timed(profile_.head, [&] {
            kernels::global_avg_pool_forward(cur, features_.data(), N, h * w, c);
            const int64_t K = options_.num_classes;
            kernels::gemm_nt(N, K, c, features_.data(), c, fc_w_.data(), c, logits_.data(), K, false);
            if (fc_b_.defined())
                for (int64_t n = 0; n < N; ++n)
                    for (int64_t o = 0; o < K; ++o) logits_[n * K + o] += fc_b_[o];
        });
        if (profiling_) ++profile_.calls;
    }

    ResNetOptions options_;
    // Frozen parameters.
    Tensor<float> stem_w_, stem_b_, stem_slope_;
    int stem_k_ = 3, stem_stride_ = 1, stem_pad_ = 1;
    bool stem_pool_ = false;
    infer::FrozenBatchNorm stem_bn_;
    std::vector<Half> halves_;
    Tensor<float> fc_w_, fc_b_;
    // The plan for one input shape.
    Shape planned_;
    int planned_threads_ = 0;
    bool stem_per_image_ = false;
    kernels::Conv2dGeometry stem_g_{};
    kernels::PoolGeometry pool_g_{};
    std::vector<infer::BinaryConvStep> steps_;
    std::vector<kernels::PoolGeometry> shortcut_pool_g_;
    std::vector<kernels::Conv2dGeometry> shortcut_g_;
    Tensor<float> stem_buf_, act_[2], pool_tmp_, gate_mean_, gate_scratch_, gate_hidden_, gate_, features_, logits_;
    int64_t final_h_ = 0, final_w_ = 0;
    bool profiling_ = false;
    InferenceProfile profile_;
};

}  // namespace bnn::examples
