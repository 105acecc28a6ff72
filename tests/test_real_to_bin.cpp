// Real-to-Binary: attention transfer, logit matching, channel gate, ResNet-18 variants, staged
// training and deployment export.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "bnn/losses/attention_transfer.hpp"
#include "bnn/losses/logit_matching.hpp"
#include "bnn/nn/channel_gate.hpp"
#include "bnn/ops/channel_gate.hpp"
#include "gradcheck.hpp"

using namespace bnn;
using bnn::test::check_gradients;
using bnn::test::random_variable;

namespace {

// Straight from the definition, in double: Q = sum_c A^2 per position, divided by its L2 norm
// (or max), squared difference averaged over samples and positions.
double reference_attention(const Tensor<float>& s, const Tensor<float>& t, losses::AttentionNorm norm,
                           losses::AttentionDistance dist) {
    const int64_t n = s.dim(0), p = s.dim(1) * s.dim(2);
    auto maps = [&](const Tensor<float>& a) {
        const int64_t c = a.dim(3);
        std::vector<double> q(n * p, 0.0);
        for (int64_t i = 0; i < n * p; ++i)
            for (int64_t k = 0; k < c; ++k) q[i] += double(a[i * c + k]) * a[i * c + k];
        for (int64_t b = 0; b < n; ++b) {
            double d = 1, sq = 0, mx = 0;
            for (int64_t i = 0; i < p; ++i) sq += q[b * p + i] * q[b * p + i], mx = std::max(mx, q[b * p + i]);
            if (norm == losses::AttentionNorm::L2) d = std::sqrt(sq);
            if (norm == losses::AttentionNorm::Max) d = mx;
            for (int64_t i = 0; i < p; ++i) q[b * p + i] /= d;
        }
        return q;
    };
    auto qs = maps(s), qt = maps(t);
    double loss = 0;
    for (int64_t b = 0; b < n; ++b) {
        double sq = 0;
        for (int64_t i = 0; i < p; ++i) {
            double e = qs[b * p + i] - qt[b * p + i];
            if (dist == losses::AttentionDistance::Squared) loss += e * e / double(n * p);
            if (dist == losses::AttentionDistance::Absolute) loss += std::abs(e) / double(n * p);
            sq += e * e;
        }
        if (dist == losses::AttentionDistance::L2Norm) loss += std::sqrt(sq) / double(n);
    }
    return loss;
}

}  // namespace

TEST_CASE("attention transfer equals its definition for every norm and distance", "[attention]") {
    Rng rng(11);
    auto s = Tensor<float>::uniform({3, 4, 5, 6}, rng, -1.f, 1.f);
    auto t = Tensor<float>::uniform({3, 4, 5, 9}, rng, -1.f, 1.f);  // teacher may be wider
    for (auto norm : {losses::AttentionNorm::L2, losses::AttentionNorm::Max, losses::AttentionNorm::None})
        for (auto dist : {losses::AttentionDistance::Squared, losses::AttentionDistance::Absolute,
                          losses::AttentionDistance::L2Norm}) {
            losses::AttentionOptions o;
            o.norm = norm;
            o.distance = dist;
            o.beta = 2.5f;
            double got = losses::attention_transfer(Variable(s), Variable(t), o).item();
            REQUIRE(got == Approx(2.5 * reference_attention(s, t, norm, dist)).epsilon(1e-5));
        }
    // Identical features (up to a scale, which the normalisation removes) give zero loss.
    auto s2 = s.clone();
    for (auto& v : s2) v *= 3.f;
    REQUIRE(losses::attention_transfer(Variable(s), Variable(s2)).item() == Approx(0.0).margin(1e-9));
}

TEST_CASE("attention transfer over several points averages them", "[attention]") {
    Rng rng(12);
    Variable a = random_variable({2, 3, 3, 4}, rng), b = random_variable({2, 3, 3, 4}, rng);
    Variable c = random_variable({2, 2, 2, 8}, rng), d = random_variable({2, 2, 2, 5}, rng);
    losses::AttentionOptions o;
    o.beta = 30.f;
    float both = losses::attention_transfer({{a, b}, {c, d}}, o).item();
    float first = losses::attention_transfer(a, b, o).item();
    float second = losses::attention_transfer(c, d, o).item();
    REQUIRE(both == Approx((first + second) / 2).epsilon(1e-6));
}

TEST_CASE("attention transfer gradients match finite differences", "[attention][gradcheck]") {
    Rng rng(13);
    for (auto norm : {losses::AttentionNorm::L2, losses::AttentionNorm::Max, losses::AttentionNorm::None})
        for (auto dist : {losses::AttentionDistance::Squared, losses::AttentionDistance::Absolute,
                          losses::AttentionDistance::L2Norm}) {
            INFO("norm " << int(norm) << " distance " << int(dist));
            losses::AttentionOptions o;
            o.norm = norm;
            o.distance = dist;
            o.beta = 3.f;
            Variable s1 = random_variable({2, 3, 2, 4}, rng), t1 = random_variable({2, 3, 2, 3}, rng);
            Variable s2 = random_variable({2, 2, 2, 5}, rng), t2 = random_variable({2, 2, 2, 5}, rng);
            // |e| has a kink at e = 0: a smaller step keeps the differences from crossing it.
            bnn::test::GradcheckOptions go;
            if (dist == losses::AttentionDistance::Absolute) go.eps = 2e-4;
            check_gradients(
                [o](const std::vector<Variable>& in) {
                    return losses::attention_transfer({{in[0], in[1]}, {in[2], in[3]}}, o);
                },
                {s1, t1, s2, t2}, go);
        }
}

TEST_CASE("attention transfer rejects mismatched feature maps", "[attention]") {
    Rng rng(14);
    Variable a = random_variable({2, 4, 4, 3}, rng);
    REQUIRE_THROWS_AS(losses::attention_transfer(a, random_variable({2, 4, 3, 3}, rng)), Error);
    REQUIRE_THROWS_AS(losses::attention_transfer(a, random_variable({3, 4, 4, 3}, rng)), Error);
    REQUIRE_THROWS_WITH(losses::attention_transfer(a, random_variable({2, 16, 3}, rng)), Catch::Contains("[2, 16, 3]"));
    REQUIRE_THROWS_AS(losses::attention_transfer(std::vector<std::pair<Variable, Variable>>{}), Error);
}

TEST_CASE("logit matching equals T^2 KL(teacher || student) and its gradient checks", "[logit_matching]") {
    Rng rng(21);
    auto zs = Tensor<float>::uniform({4, 7}, rng, -3.f, 3.f);
    auto zt = Tensor<float>::uniform({4, 7}, rng, -3.f, 3.f);
    for (float temp : {1.f, 4.f}) {
        double ref = 0;
        for (int n = 0; n < 4; ++n) {
            double ss = 0, st = 0;
            for (int k = 0; k < 7; ++k) ss += std::exp(zs.at({n, k}) / temp), st += std::exp(zt.at({n, k}) / temp);
            for (int k = 0; k < 7; ++k) {
                double ps = std::exp(zs.at({n, k}) / temp) / ss, pt = std::exp(zt.at({n, k}) / temp) / st;
                ref += pt * std::log(pt / ps);
            }
        }
        ref *= temp * temp / 4;
        REQUIRE(losses::logit_matching(Variable(zs), zt, temp).item() == Approx(ref).epsilon(1e-5));
        Variable teacher(zt, true);  // even a teacher that requires grad gets none
        check_gradients(
            [teacher, temp](const std::vector<Variable>& in) { return losses::logit_matching(in[0], teacher, temp); },
            {Variable(zs.clone(), true)});
        REQUIRE_FALSE(teacher.has_grad());
    }
    REQUIRE(losses::logit_matching(Variable(zt), zt, 2.f).item() == Approx(0.0).margin(1e-6));
    REQUIRE_THROWS_AS(losses::logit_matching(Variable(zs), Tensor<float>({4, 6})), Error);
    REQUIRE_THROWS_AS(losses::logit_matching(Variable(zs), zt, 0.f), Error);
}

TEST_CASE("channel gate computes sigmoid(W2 relu(W1 mean(x))) and its gradients check", "[gate]") {
    manual_seed(5);
    nn::ChannelGate gate(16, 12, 8);
    REQUIRE(gate.hidden_channels() == 2);
    REQUIRE(gate.weight1.shape() == Shape{2, 16});
    REQUIRE(gate.weight2.shape() == Shape{12, 2});
    REQUIRE(gate.num_parameters() == 16 * 2 + 2 * 12);
    Rng rng(31);
    Variable x = random_variable({3, 4, 5, 16}, rng);
    Tensor<float> g = gate.forward(x).value();
    REQUIRE(g.shape() == Shape{3, 12});
    for (int n = 0; n < 3; ++n) {
        std::vector<double> m(16, 0), h(2, 0);
        for (int i = 0; i < 20; ++i)
            for (int c = 0; c < 16; ++c) m[c] += x.value()[(n * 20 + i) * 16 + c] / 20.0;
        for (int j = 0; j < 2; ++j)
            for (int c = 0; c < 16; ++c) h[j] += gate.weight1.value().at({j, c}) * m[c];
        for (int o = 0; o < 12; ++o) {
            double z = 0;
            for (int j = 0; j < 2; ++j) z += gate.weight2.value().at({o, j}) * std::max(h[j], 0.0);
            REQUIRE(g.at({n, o}) == Approx(1 / (1 + std::exp(-z))).epsilon(1e-5));
        }
    }
    // He-normal initial weights: std sqrt(2 / fan_in), checked on a wide gate.
    nn::ChannelGate wide(512, 256, 8);
    double sq = 0;
    for (float v : wide.weight1.value()) sq += double(v) * v;
    REQUIRE(std::sqrt(sq / wide.weight1.numel()) == Approx(std::sqrt(2.0 / 512)).epsilon(0.03));

    Rng r2(32);
    check_gradients([](const std::vector<Variable>& in) { return ops::channel_gate(in[0], in[1], in[2]); },
                    {random_variable({2, 3, 3, 8}, r2), random_variable({3, 8}, r2), random_variable({5, 3}, r2)});
    REQUIRE_THROWS_AS(gate.forward(random_variable({3, 4, 5, 15}, rng)), Error);
    REQUIRE_THROWS_AS(ops::channel_gate(x, gate.weight2, gate.weight1), Error);
}

// ---- ResNet-18 variants ------------------------------------------------------------------------
#include "../examples/resnet18.hpp"
#include "bnn/optim/adam.hpp"
#include "bnn/train/distillation.hpp"

namespace {
using bnn::examples::ResNet18;
using bnn::examples::ResNetOptions;
using bnn::examples::Stem;
using bnn::examples::Variant;

// Parameter count of ResNet-18 written out from the architecture, independently of the code:
//   stem conv k*k*3*w + stem BN 2w (+ PReLU w for the ImageNet strong baseline)
//   real basic block (cin -> cout): 9*cin*cout + 2cout + 9*cout*cout + 2cout
//        + downsample 1x1 conv cin*cout + BN 2cout when the shape changes
//   binary half-block (ci -> co): BN 2ci + conv 9*ci*co + PReLU co
//        + learned scale co (strong baseline) or gate (ci/8)*ci + co*(ci/8) (Real-to-Bin)
//        + shortcut 1x1 conv ci*co + BN 2co when the shape changes
//   fc 8w*K + K
int64_t expected_parameters(Variant v, Stem stem, int64_t w, int64_t k) {
    const int64_t ks = stem == Stem::Cifar ? 3 : 7;
    int64_t n = ks * ks * 3 * w + 2 * w;
    if (stem == Stem::ImageNet && v == Variant::StrongBaseline) n += w;
    auto half = [&](int64_t ci, int64_t co, bool changes) {
        int64_t m = 2 * ci + 9 * ci * co + co;
        m += v == Variant::RealToBin ? (ci / 8) * ci + co * (ci / 8) : co;
        return m + (changes ? ci * co + 2 * co : 0);
    };
    const int64_t chans[8] = {w, w, 2 * w, 2 * w, 4 * w, 4 * w, 8 * w, 8 * w};
    int64_t cin = w;
    for (int64_t cout : chans) {
        const bool changes = cout != cin;  // exactly blocks 3, 5, 7 (stride 2, channels doubled)
        if (v == Variant::Real)
            n += 9 * cin * cout + 2 * cout + 9 * cout * cout + 2 * cout + (changes ? cin * cout + 2 * cout : 0);
        else
            n += half(cin, cout, changes) + half(cout, cout, false);
        cin = cout;
    }
    return n + 8 * w * k + k;
}

ResNetOptions options(Variant v, Stem s, int64_t w, int64_t k) {
    ResNetOptions o;
    o.variant = v;
    o.stem = s;
    o.width = w;
    o.num_classes = k;
    return o;
}
}  // namespace

TEST_CASE("ResNet-18 parameter counts match the hand-computed formulas", "[resnet]") {
    // The real ResNet-18 counts are the well-known ones: torchvision's resnet18 (ImageNet, 1000
    // classes) has 11,689,512 parameters; the CIFAR variant with 100 classes 11,220,132.
    REQUIRE(expected_parameters(Variant::Real, Stem::ImageNet, 64, 1000) == 11689512);
    REQUIRE(expected_parameters(Variant::Real, Stem::Cifar, 64, 100) == 11220132);
    for (Variant v : {Variant::Real, Variant::StrongBaseline, Variant::RealToBin})
        for (Stem s : {Stem::Cifar, Stem::ImageNet}) {
            INFO(bnn::examples::variant_name(v) << (s == Stem::Cifar ? " cifar" : " imagenet"));
            REQUIRE(ResNet18(options(v, s, 64, s == Stem::Cifar ? 100 : 1000)).num_parameters() ==
                    expected_parameters(v, s, 64, s == Stem::Cifar ? 100 : 1000));
            REQUIRE(ResNet18(options(v, s, 16, 10)).num_parameters() == expected_parameters(v, s, 16, 10));
        }
    // Hand-evaluated totals of the binary variants (width 64).
    REQUIRE(expected_parameters(Variant::StrongBaseline, Stem::Cifar, 64, 100) == 11226916);
    REQUIRE(expected_parameters(Variant::RealToBin, Stem::Cifar, 64, 100) == 11517476);
    REQUIRE(expected_parameters(Variant::RealToBin, Stem::ImageNet, 64, 1000) == 11986856);
    // 16 binary 3x3 convs carry nearly all weights: 9*(64*64*4 + 64*128 + 128*128*3 + 128*256 +
    // 256*256*3 + 256*512 + 512*512*3) = 10,985,472.
    int64_t binary = 0;
    for (auto& c : ResNet18(options(Variant::RealToBin, Stem::Cifar, 64, 100)).binary_convs())
        binary += c->weight.numel();
    REQUIRE(binary == 10985472);
}

TEST_CASE("ResNet-18 exposes block1..block8 with the expected shapes", "[resnet]") {
    manual_seed(3);
    Rng rng(4);
    for (Variant v : {Variant::Real, Variant::StrongBaseline, Variant::RealToBin})
        for (Stem s : {Stem::Cifar, Stem::ImageNet}) {
            ResNet18 net(options(v, s, 4, 7));
            const int64_t size = s == Stem::Cifar ? 16 : 64;  // ImageNet stem divides by 4
            Variable x(Tensor<float>::randn({2, size, size, 3}, rng));
            train::Features f = net.forward_features(x);
            REQUIRE(f.logits.shape() == Shape{2, 7});
            REQUIRE(f.maps.size() == 8);
            const int64_t hw[8] = {16, 16, 8, 8, 4, 4, 2, 2}, c[8] = {4, 4, 8, 8, 16, 16, 32, 32};
            for (int b = 0; b < 8; ++b) {
                REQUIRE(f.maps[b].first == "block" + std::to_string(b + 1));
                REQUIRE(f.maps[b].second.shape() == Shape{2, hw[b], hw[b], c[b]});
            }
            REQUIRE(f.at("block5").shape() == Shape{2, 4, 4, 16});
            REQUIRE_THROWS_WITH(f.at("block9"), Catch::Contains("block8"));
        }
    ResNet18 real(options(Variant::Real, Stem::Cifar, 4, 7));
    REQUIRE_THROWS_AS(real.set_mode(nn::BinaryMode::FullyBinary), Error);
    REQUIRE_THROWS_AS(real.forward(Variable(Tensor<float>({1, 8, 8, 1}))), Error);
    REQUIRE(ResNet18(options(Variant::RealToBin, Stem::Cifar, 4, 7)).binary_convs().size() == 16);
}

TEST_CASE("a teacher under NoGradGuard records nothing", "[resnet][train]") {
    manual_seed(8);
    ResNet18 teacher(options(Variant::Real, Stem::Cifar, 4, 5));
    train::freeze(teacher);
    Rng rng(9);
    Variable x(Tensor<float>::randn({2, 8, 8, 3}, rng));
    {
        NoGradGuard guard;
        train::Features f = teacher.forward_features(x);
        REQUIRE(f.logits.is_leaf());
        REQUIRE_FALSE(f.logits.requires_grad());
        for (auto& [name, m] : f.maps) REQUIRE(m.is_leaf());
    }
    // Even with grad mode on, a frozen teacher has nothing that requires a gradient.
    teacher.set_requires_grad(true);
    NoGradGuard guard;
    REQUIRE(teacher.forward(x).is_leaf());
}

TEST_CASE("staged training: attention loss to the teacher decreases over a few steps", "[train]") {
    manual_seed(21);
    ResNet18 teacher(options(Variant::Real, Stem::Cifar, 8, 4));
    ResNetOptions so = options(Variant::RealToBin, Stem::Cifar, 8, 4);
    so.mode = nn::BinaryMode::SoftActivations;
    ResNet18 student(so);
    train::freeze(teacher);
    Rng rng(22);
    train::StepBatch batch{Tensor<float>::randn({8, 8, 8, 3}, rng), {0, 1, 2, 3, 0, 1, 2, 3}, {}};
    // Teacher BN statistics must not move: it runs in eval mode.
    const auto teacher_buffers = teacher.named_buffers();
    std::vector<std::vector<float>> before;
    for (auto& [n, t] : teacher_buffers) before.push_back(t.to_vector());

    train::StageConfig stage = train::real_to_binary_stage(1);
    REQUIRE(stage.weights.attention == 30.f);
    REQUIRE(stage.weights.kd == 3.f);
    optim::Adam opt(student.parameters(), {.lr = 1e-2f});
    std::vector<float> att;
    for (int step = 0; step < 6; ++step) {
        train::LossParts p = train::distillation_step(&teacher, student, batch, stage.weights, opt).parts;
        REQUIRE(std::isfinite(p.total));
        REQUIRE(p.total == Approx(p.ce + 30.f * p.attention + 3.f * p.kd).epsilon(1e-4));
        att.push_back(p.attention);
    }
    INFO("attention losses " << att[0] << " -> " << att.back());
    REQUIRE(att.back() < 0.7f * att[0]);
    for (auto& p : teacher.parameters()) REQUIRE_FALSE(p.has_grad());
    for (size_t i = 0; i < teacher_buffers.size(); ++i) REQUIRE(teacher_buffers[i].second.to_vector() == before[i]);

    // Stage 3: fully binary, KD only besides CE; no attention term.
    student.set_mode(nn::BinaryMode::FullyBinary);
    train::LossParts p3 = train::distillation_step(&teacher, student, batch, train::real_to_binary_stage(3).weights, opt).parts;
    REQUIRE(p3.attention == 0.f);
    REQUIRE(p3.kd > 0.f);
    // Without a teacher only CE is allowed.
    REQUIRE_THROWS_AS(train::distillation_step(nullptr, student, batch, stage.weights, opt), Error);
    train::LossParts p0 = train::distillation_step(nullptr, student, batch, train::real_to_binary_stage(0).weights, opt).parts;
    REQUIRE(p0.total == Approx(p0.ce));
}

TEST_CASE("the stage table carries the paper's defaults", "[train]") {
    auto s = train::real_to_binary_stages();
    REQUIRE(s.size() == 4);
    REQUIRE(s[0].student == train::StudentKind::Real);
    REQUIRE_FALSE(s[0].has_teacher);
    REQUIRE(s[1].student == train::StudentKind::SoftActivations);
    REQUIRE(s[2].student == train::StudentKind::BinaryActivations);
    REQUIRE(s[3].student == train::StudentKind::FullyBinary);
    REQUIRE(s[3].weights.attention == 0.f);
    REQUIRE(s[3].weights.kd == 0.8f);
    REQUIRE(s[1].lr == 1e-3f);
    REQUIRE(s[1].weight_decay == 1e-5f);
    REQUIRE(s[1].warmup_epochs == 5);
    REQUIRE(s[3].lr == 2e-4f);
    REQUIRE(s[3].weight_decay == 0.f);
    REQUIRE(s[3].warmup_epochs == 0);
    REQUIRE(s[2].init_from_previous);
    REQUIRE(s[3].init_from_previous);
    REQUIRE_THROWS_AS(train::real_to_binary_stage(4), Error);
}

// ---- deployment ----------------------------------------------------------------------------------
#include <filesystem>

#include "../examples/resnet18_deploy.hpp"
#include "bnn/infer/compile.hpp"
#include "bnn/io/checkpoint.hpp"

TEST_CASE("deployed binary ResNet-18 predicts exactly as the training model in eval mode", "[deploy]") {
    const auto dir = std::filesystem::temp_directory_path();
    for (Variant v : {Variant::StrongBaseline, Variant::RealToBin}) {
        INFO(bnn::examples::variant_name(v));
        manual_seed(41);
        ResNetOptions o = options(v, Stem::Cifar, 8, 5);
        o.mode = nn::BinaryMode::FullyBinary;
        ResNet18 net(o);
        // A few steps so BN statistics, learned scales and PReLU slopes leave their initial values.
        Rng rng(42);
        optim::Adam opt(net.parameters(), {.lr = 1e-2f});
        train::StepBatch batch{Tensor<float>::randn({8, 8, 8, 3}, rng), {0, 1, 2, 3, 4, 0, 1, 2}, {}};
        for (int s = 0; s < 3; ++s) train::distillation_step(nullptr, net, batch, train::LossWeights{}, opt);
        net.eval();

        const std::string path = (dir / ("bnn_deploy_test_" + std::to_string(int(v)) + ".safetensors")).string();
        bnn::examples::export_resnet18(path, net);
        io::Deployed deployed = io::load_deployed(path);  // rebuilt from the file's module tree
        REQUIRE(deployed.metadata.at("variant") == bnn::examples::variant_name(v));

        Tensor<float> x = Tensor<float>::randn({4, 8, 8, 3}, rng);
        Tensor<float> expected;
        {
            NoGradGuard g;
            expected = net.forward(Variable(x)).value();
        }
        Tensor<float> got = infer::compile(*deployed.model, x.shape()).run(x);
        REQUIRE(got.shape() == expected.shape());
        for (int64_t i = 0; i < got.numel(); ++i) REQUIRE(got[i] == expected[i]);

        // 16 binary convs at 1 bit per weight: the file is far smaller than the float checkpoint.
        const std::string float_path = path + ".float";
        io::save_checkpoint(float_path, net);
        REQUIRE(std::filesystem::file_size(path) < std::filesystem::file_size(float_path) / 2);
        auto file = io::load_safetensors(path);
        REQUIRE(file.get<uint64_t>("block3.half1.conv.sign_bits").shape() == Shape{16 * 9, 1});
        REQUIRE_FALSE(file.contains("block3.half1.conv.weight"));

        // Tampered files fail loudly: a binary conv missing, or its bits of the wrong size.
        for (const char* victim : {"block2.half1.conv.sign_bits", "block2.half1.conv.geometry"}) {
            io::NamedTensors kept;
            for (auto& [name, t] : file.tensors)
                if (name != victim) kept.emplace_back(name, t);
                else if (name.find("sign_bits") != std::string::npos)
                    kept.emplace_back(name, Tensor<uint64_t>({8 * 9 + 1, 1}));
            io::save_safetensors(path + ".bad", kept, file.metadata);
            REQUIRE_THROWS_AS(io::load_deployed(path + ".bad"), Error);
        }
        std::filesystem::remove(path + ".bad");

        // A real-weight model can't be deployed, and a checkpoint is not a deployment file.
        net.set_mode(nn::BinaryMode::BinaryActivations);
        REQUIRE_THROWS_AS(bnn::examples::export_resnet18(path, net), Error);
        REQUIRE_THROWS_WITH(io::load_deployed(float_path), Catch::Contains("deployment"));
        std::filesystem::remove(path);
        std::filesystem::remove(float_path);
    }
}

TEST_CASE("a Real-to-Bin half-block in soft mode back-propagates correctly end to end", "[resnet][gradcheck]") {
    // tanh activations, real weights, gate and downsampling shortcut: every path of the block is
    // smooth (up to PReLU's and the gate ReLU's kinks), so finite differences apply to all inputs.
    manual_seed(51);
    nn::BinaryHalfBlock half(nn::BinaryHalfBlockOptions{.in_channels = 4, .out_channels = 6, .stride = 2,
                                                        .scale = nn::BlockScale::Gate, .gate_reduction = 2,
                                                        .mode = nn::BinaryMode::SoftActivations});
    half.eval();  // running statistics: the block is a fixed function of its inputs
    Rng rng(52);
    for (auto& [name, b] : half.named_buffers())
        if (name.find("running_var") != std::string::npos)
            for (auto& v : b) v = rng.uniform(0.5f, 1.5f);
    std::vector<Variable> inputs{random_variable({2, 4, 4, 4}, rng)};
    for (auto& p : half.parameters()) inputs.push_back(p);
    check_gradients([&half](const std::vector<Variable>& in) { return half.forward(in[0]); }, inputs);
}
