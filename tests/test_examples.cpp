// The example programs (examples/), the only tests that include them. The trainer's own code
// path (examples/trainer) on a tiny synthetic set in the CIFAR-100 binary format: every recipe
// runs, writes what it promises, and a resumed run ends exactly where an uninterrupted one does;
// the pictures and the progress lines. The example ResNet-18 (examples/resnet18.hpp): parameter
// counts, block shapes, a frozen teacher, staged training, and its deployment export.
#include <stb/stb_image_write.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "../examples/resnet18.hpp"
#include "../examples/resnet18_deploy.hpp"
#include "../examples/trained_model.hpp"
#include "bnn/infer/compile.hpp"
#include "bnn/io/checkpoint.hpp"
#include "bnn/kernels/sgemm.hpp"
#include "bnn/optim/adam.hpp"
#include "bnn/train/distillation.hpp"
#include "skip.hpp"
#include "temp_dir.hpp"
#include "trainer/trainer.hpp"

namespace fs = std::filesystem;

namespace {

// Writes `n` 3074-byte CIFAR-100 records whose images carry their label as a bright square, so
// the classes are learnable.
void write_cifar100(const fs::path& file, int n, int classes, uint64_t seed) {
    bnn::Rng rng(seed);
    std::ofstream out(file, std::ios::binary);
    for (int i = 0; i < n; ++i) {
        const int label = i % classes;
        unsigned char record[3074];
        record[0] = static_cast<unsigned char>(label / 5);  // coarse
        record[1] = static_cast<unsigned char>(label);      // fine
        for (int p = 0; p < 3072; ++p) record[2 + p] = static_cast<unsigned char>(rng.below(64));
        const int y0 = 4 * (label % 6), x0 = 4 * (label / 6 % 6);
        for (int c = 0; c < 3; ++c)
            for (int y = y0; y < y0 + 6; ++y)
                for (int x = x0; x < x0 + 6; ++x) record[2 + c * 1024 + y * 32 + x] = 250;
        out.write(reinterpret_cast<const char*>(record), sizeof record);
    }
}

struct TinyData {
    bnn::test::TempDir tmp;
    fs::path dir = tmp.path;
    TinyData() {
        write_cifar100(dir / "train.bin", 96, 8, 1);
        write_cifar100(dir / "test.bin", 40, 8, 2);
    }
};

trainer::TrainerOptions tiny_options(const TinyData& data, const fs::path& out) {
    trainer::TrainerOptions o;
    o.data = data.dir.string();
    o.width = 4;
    o.batch = 16;
    o.epochs = 1;
    o.threads = 1;
    o.quiet = true;
    o.out = out.string();
    return o;
}

std::vector<std::string> lines_of(const fs::path& file) {
    std::ifstream in(file);
    std::vector<std::string> lines;
    for (std::string l; std::getline(in, l);)
        if (!l.empty()) lines.push_back(l);
    return lines;
}

// The lines of metrics.jsonl of one kind ("epoch" or "step").
std::vector<nlohmann::json> records_of(const fs::path& file, const std::string& kind) {
    std::vector<nlohmann::json> out;
    for (const auto& l : lines_of(file)) {
        auto j = nlohmann::json::parse(l);
        if (j.at("kind") == kind) out.push_back(j);
    }
    return out;
}

// How many of n floats differ from their counterparts in any bit.
int64_t floats_differing_in_bits(const float* a, const float* b, int64_t n) {
    int64_t differ = 0;
    for (int64_t k = 0; k < n; ++k) differ += std::memcmp(a + k, b + k, sizeof(float)) != 0;
    return differ;
}

std::string read_all(const fs::path& file) {
    std::ifstream in(file);
    return {std::istreambuf_iterator<char>(in), {}};
}

// The number of points of the curves.html polyline of `cls` for `stage` (0 when there is none).
size_t polyline_points(const std::string& page, const std::string& cls, const std::string& stage) {
    const std::regex line("<polyline class='" + cls + "' data-stage='" + stage + "'[^>]* points='([^']*)'");
    std::smatch m;
    if (!std::regex_search(page, m, line)) return 0;
    std::istringstream points(m[1].str());
    size_t n = 0;
    for (std::string p; points >> p;) ++n;
    return n;
}

}  // namespace

TEST_CASE("every recipe runs one epoch per stage and writes checkpoints, metrics and curves", "[trainer]") {
    TinyData data;
    const fs::path out = data.dir / "run";
    auto o = tiny_options(data, out);
    o.recipes = {"real-to-bin", "baseline"};
    auto results = trainer::Trainer(o).run();

    std::vector<std::string> ids;
    for (auto& r : results) ids.push_back(r.id);
    REQUIRE(ids == std::vector<std::string>{"real", "real-to-bin/step1", "real-to-bin/step2", "real-to-bin/step3",
                                            "baseline/stage1", "baseline/stage2"});
    for (auto& r : results) {
        INFO(r.id);
        REQUIRE(r.top1 >= 0.0);
        REQUIRE(r.top1 <= r.top5);
        REQUIRE(r.top5 <= 1.0);
        REQUIRE(r.epochs == 1);
    }
    for (const char* f : {"real.safetensors", "real-to-bin-step1.safetensors", "real-to-bin-step2.safetensors",
                          "real-to-bin-step3.safetensors", "baseline-stage1.safetensors",
                          "baseline-stage2.safetensors"}) {
        INFO(f);
        REQUIRE(fs::exists(out / f));
        auto meta = bnn::io::checkpoint_metadata((out / f).string());
        REQUIRE(meta.at("complete").get<bool>());
        REQUIRE(meta.at("num_classes").get<int>() == 100);
    }
    auto epochs = records_of(out / "metrics.jsonl", "epoch");
    REQUIRE(epochs.size() == 6);
    REQUIRE(epochs[0].at("stage") == "real");
    REQUIRE(epochs[0].at("test_top1").get<double>() == Approx(results[0].top1));
    REQUIRE(epochs[1].at("kd").get<double>() > 0.0);  // the teacher is used
    REQUIRE(epochs[1].at("attention").get<double>() > 0.0);
    REQUIRE(epochs[4].at("kd").get<double>() == 0.0);  // the baseline has no teacher

    // Step lines: 96 images in batches of 16 are 6 steps an epoch, a line each in so short an epoch.
    auto steps = records_of(out / "metrics.jsonl", "step");
    REQUIRE(steps.size() == 6 * 6);
    for (size_t i = 0; i < steps.size(); ++i) {
        INFO(steps[i].dump());
        REQUIRE(steps[i].at("stage") == ids[i / 6]);
        REQUIRE(steps[i].at("epoch") == 1);
        REQUIRE(steps[i].at("step") == static_cast<int>(i % 6) + 1);
        REQUIRE(steps[i].at("steps_per_epoch") == 6);
        REQUIRE(std::isfinite(steps[i].at("train_loss").get<double>()));
        REQUIRE(steps[i].at("train_acc").get<double>() >= 0.0);
        REQUIRE(steps[i].at("train_acc").get<double>() <= 1.0);
    }
    // The real stage's cosine decays its learning rate over its steps.
    REQUIRE(steps[5].at("lr").get<double>() < steps[1].at("lr").get<double>());

    // One line per stage with more than one point, in both step charts; the stages are marked.
    const std::string page = read_all(out / "curves.html");
    for (const auto& id : ids) {
        INFO(id);
        REQUIRE(polyline_points(page, "train-loss", id) == 6);
        REQUIRE(polyline_points(page, "train-accuracy", id) == 6);
        REQUIRE(page.find("class='run-top1' data-stage='" + id + "'") != std::string::npos);
    }
    REQUIRE(page.find("<script") == std::string::npos);
    size_t boundaries = 0;
    for (size_t at = 0; (at = page.find("class='stage-boundary'", at)) != std::string::npos; ++at) ++boundaries;
    REQUIRE(boundaries == 2 * 5);  // between the six stages, in both step charts
    // The paper's bars where Table 3 has a figure: all but Real-to-Bin step 1.
    size_t paper_bars = 0;
    for (size_t at = 0; (at = page.find("class='paper-top1'", at)) != std::string::npos; ++at) ++paper_bars;
    REQUIRE(paper_bars == 5);
    REQUIRE(page.find("ResNet-18 CIFAR-100") != std::string::npos);
}

TEST_CASE("a resumed run ends bit for bit where an uninterrupted one does", "[trainer]") {
    TinyData data;
    auto o = tiny_options(data, data.dir / "whole");
    o.recipes = {"baseline"};
    o.epochs = 2;
    o.mixup = 0.4f;  // the loader's random draws must also line up
    trainer::Trainer(o).run();

    auto p = tiny_options(data, data.dir / "resumed");
    p.recipes = o.recipes;
    p.epochs = o.epochs;
    p.mixup = o.mixup;
    p.stop_after_epochs = 3;  // stops inside stage 2, after its first epoch
    REQUIRE_THROWS_AS(trainer::Trainer(p).run(), trainer::Interrupted);
    auto meta = bnn::io::checkpoint_metadata((data.dir / "resumed" / "baseline-stage2.safetensors").string());
    REQUIRE(meta.at("epoch").get<int>() == 1);
    REQUIRE_FALSE(meta.at("complete").get<bool>());
    p.stop_after_epochs = 0;
    p.resume = true;
    trainer::Trainer(p).run();

    auto a = bnn::io::load_safetensors((data.dir / "whole" / "baseline-stage2.safetensors").string());
    auto b = bnn::io::load_safetensors((data.dir / "resumed" / "baseline-stage2.safetensors").string());
    REQUIRE(a.tensors.size() == b.tensors.size());
    for (size_t i = 0; i < a.tensors.size(); ++i) {
        INFO(a.tensors[i].first);
        REQUIRE(a.tensors[i].first == b.tensors[i].first);
        const auto* ta = std::get_if<bnn::Tensor<float>>(&a.tensors[i].second);
        const auto* tb = std::get_if<bnn::Tensor<float>>(&b.tensors[i].second);
        REQUIRE(ta != nullptr);
        REQUIRE(tb != nullptr);
        REQUIRE(ta->to_vector() == tb->to_vector());
    }
    REQUIRE(records_of(data.dir / "resumed" / "metrics.jsonl", "epoch").size() == 4);
    // The step lines of the resumed run are those of the uninterrupted one, none twice.
    auto whole_steps = records_of(data.dir / "whole" / "metrics.jsonl", "step");
    REQUIRE(whole_steps.size() == 4 * 6);
    REQUIRE(records_of(data.dir / "resumed" / "metrics.jsonl", "step") == whole_steps);
}

TEST_CASE("a resumed run drops what an interrupted epoch logged after the checkpoint", "[trainer]") {
    TinyData data;
    auto o = tiny_options(data, data.dir / "run");
    o.recipes = {"real"};
    o.epochs = 2;
    o.stop_after_epochs = 1;
    REQUIRE_THROWS_AS(trainer::Trainer(o).run(), trainer::Interrupted);
    const fs::path metrics = data.dir / "run" / "metrics.jsonl";
    const auto after_epoch1 = lines_of(metrics);
    REQUIRE(after_epoch1.size() == 6 + 1);
    {
        // What Ctrl-C in epoch 2 leaves: two step lines past the checkpoint, and a line cut short.
        std::ofstream out(metrics, std::ios::app);
        out << R"({"kind":"step","stage":"real","epoch":2,"step":1,"steps_per_epoch":6,"train_loss":9,"train_acc":0,"lr":0})" << '\n';
        out << R"({"kind":"step","stage":"real","epoch":2,"step":2,"steps_per_epoch":6,"train_loss":9,"train_acc":0,"lr":0})" << '\n';
        out << R"({"kind":"step","stage":"re)" << '\n';
    }
    o.stop_after_epochs = 0;
    o.resume = true;
    trainer::Trainer(o).run();
    const auto lines = lines_of(metrics);
    REQUIRE(lines.size() == 2 * (6 + 1));
    REQUIRE(std::vector<std::string>(lines.begin(), lines.begin() + 7) == after_epoch1);
    auto steps = records_of(metrics, "step");
    REQUIRE(steps.size() == 12);
    for (const auto& j : steps) REQUIRE(j.at("train_loss").get<double>() != 9.0);
}

TEST_CASE("progress into a file is a line every few seconds, never a carriage return", "[trainer][progress]") {
    std::FILE* f = std::tmpfile();
    REQUIRE(f != nullptr);
    {
        // Not a terminal: no \r frames. An interval of 0 writes a line at every batch but the last,
        // which finish() reports.
        trainer::ProgressBar bar("real 1/1", 4 * 16, {.out = f, .line_every_seconds = 0});
        for (int b = 0; b < 4; ++b) bar.update(16, 2.0 * 16, 4);
        bar.finish();
    }
    std::rewind(f);
    std::string text;
    for (int c; (c = std::fgetc(f)) != EOF;) text += static_cast<char>(c);
    std::fclose(f);
    REQUIRE(text.find('\r') == std::string::npos);
    std::vector<std::string> lines;
    std::istringstream in(text);
    for (std::string l; std::getline(in, l);) lines.push_back(l);
    REQUIRE(lines.size() == 4);
    REQUIRE(text.back() == '\n');
    for (const auto& l : lines) REQUIRE(l.rfind("real 1/1", 0) == 0);
    REQUIRE(lines[0].find(" 25%") != std::string::npos);
    REQUIRE(lines[3].find("100%") != std::string::npos);
    REQUIRE(lines[3].find("took") != std::string::npos);
    REQUIRE(lines[3].find("acc  25.0%") != std::string::npos);

    // With the default interval, a quick epoch writes its final line only.
    std::FILE* g = std::tmpfile();
    REQUIRE(g != nullptr);
    {
        trainer::ProgressBar bar("quick", 4 * 16, {.out = g});
        for (int b = 0; b < 4; ++b) bar.update(16, 1.0, 1);
        bar.finish();
    }
    REQUIRE(std::ftell(g) > 0);
    std::rewind(g);
    int newlines = 0;
    for (int c; (c = std::fgetc(g)) != EOF;) newlines += c == '\n';
    std::fclose(g);
    REQUIRE(newlines == 1);
}

TEST_CASE("classify reads an image exactly as the trainer evaluates the same bytes", "[trainer][classify]") {
    // The trainer normalizes its data in the loader; classify normalizes an image file. Any
    // difference in the last bit of an input can flip a sign in a binary network, so both must
    // give the same floats and the same logits, bit for bit, for the checkpoint and for the
    // deployment file of a fully binary stage.
    TinyData data;
    const fs::path out = data.dir / "run";
    auto o = tiny_options(data, out);
    o.recipes = {"baseline"};
    trainer::Trainer(o).run();

    // The trainer's evaluation: its test loader (no augmentation), the model in eval mode.
    const std::string checkpoint = (out / "baseline-stage2.safetensors").string();
    const nlohmann::json meta = bnn::io::checkpoint_metadata(checkpoint);
    const bnn::examples::Preprocessing p = bnn::examples::preprocessing_from(meta, checkpoint);
    bnn::examples::ResNetOptions arch = bnn::examples::architecture_from(meta, checkpoint);
    bnn::examples::ResNet18 net(arch);
    bnn::io::load_module(checkpoint, net);
    net.eval();
    const bnn::data::Dataset test = bnn::data::load_cifar100(data.dir.string(), bnn::data::Split::test);
    const int n = 8;
    bnn::data::BatchLoader loader(test, {.batch_size = n, .shuffle = false, .mean = p.mean, .std = p.std});
    loader.start_epoch(0);
    const auto batch = loader.next();
    REQUIRE(batch);
    bnn::Tensor<float> expected;
    {
        bnn::NoGradGuard no_tape;
        expected = net.forward(bnn::Variable(batch->images)).value();
    }

    const bnn::io::Deployed deployed = bnn::io::load_deployed((out / "baseline-stage2.deploy.safetensors").string());
    REQUIRE(bnn::examples::preprocessing_from(bnn::examples::metadata_json(deployed.metadata), "deployed").mean ==
            p.mean);
    const int64_t image = 32 * 32 * 3, classes = expected.dim(1);
    // The float products of the paths with packed micro-kernels (bnn's GEMM: AVX2, AVX-512, NEON)
    // sum each output in an order that does not depend on the batch, so the logits of one image
    // equal its logits in a batch bit for bit. Eigen's GEMM (the scalar path) does not promise that
    // (on aarch64, when it ran there, 71 of 100 logits of an image alone differed in their last
    // bits from the same image in a batch of 8): there they agree within float rounding and on
    // the top-1, and the inputs still bit for bit.
    const bool batch_invariant_float_products = bnn::kernels::has_packed_sgemm(bnn::kernels::active_isa());
    for (int i = 0; i < n; ++i) {
        INFO("test image " << i);
        const std::string png = (data.dir / ("image" + std::to_string(i) + ".png")).string();
        REQUIRE(stbi_write_png(png.c_str(), 32, 32, 3, test.images.data() + i * image, 32 * 3) != 0);
        const bnn::examples::ImageInput in = bnn::examples::image_input(png, p);
        REQUIRE(in.note.empty());
        REQUIRE(std::memcmp(in.bytes.data(), test.images.data() + i * image, image) == 0);
        const bnn::Tensor<float> x = bnn::data::normalize(in.bytes, bnn::examples::input_normalization(p));
        REQUIRE(floats_differing_in_bits(x.data(), batch->images.data() + i * image, image) == 0);
        for (const bnn::nn::Module* model : std::vector<const bnn::nn::Module*>{&net, deployed.model.get()}) {
            size_t steps = 0;
            const bnn::Tensor<float> logits =
                bnn::examples::logits_of(*model, in.bytes, p, {}, steps);
            REQUIRE(logits.shape() == bnn::Shape{1, classes});
            if (batch_invariant_float_products) {
                REQUIRE(floats_differing_in_bits(logits.data(), expected.data() + i * classes, classes) == 0);
            } else {
                const float* want = expected.data() + i * classes;
                float largest = 1.f, worst = 0.f;
                for (int64_t c = 0; c < classes; ++c) largest = std::max(largest, std::fabs(want[c]));
                for (int64_t c = 0; c < classes; ++c) worst = std::max(worst, std::fabs(logits[c] - want[c]));
                INFO("largest logit difference " << worst << " of " << largest);
                REQUIRE(worst <= 1e-5f * largest);
                REQUIRE(std::max_element(logits.data(), logits.data() + classes) - logits.data() ==
                        std::max_element(want, want + classes) - want);
            }
        }
    }
}

TEST_CASE("the trainer names what is wrong with its data", "[trainer]") {
    TinyData data;
    auto o = tiny_options(data, data.dir / "run");
    o.data = (data.dir / "missing").string();
    REQUIRE_THROWS_WITH(trainer::Trainer(o).run(), Catch::Contains("does not exist"));
    fs::create_directories(data.dir / "empty");
    o.data = (data.dir / "empty").string();
    REQUIRE_THROWS_WITH(trainer::Trainer(o).run(), Catch::Contains("no data set recognised"));
    fs::resize_file(data.dir / "train.bin", 3074 * 10 + 7);
    o.data = data.dir.string();
    REQUIRE_THROWS_AS(trainer::Trainer(o).run(), bnn::Error);
    o.recipes = {"nonsense"};
    REQUIRE_THROWS_WITH(trainer::Trainer(o).run(), Catch::Contains("unknown recipe"));
}

// ---- ResNet-18 variants ------------------------------------------------------------------------

using namespace bnn;

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

// ---- deployment ----------------------------------------------------------------------------------

TEST_CASE("deployed binary ResNet-18 predicts exactly as the training model in eval mode", "[deploy]") {
    const bnn::test::TempDir dir;  // its own: two runs of the suite at once must not share files
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

        const std::string path = dir.file("deploy_" + std::to_string(int(v)) + ".safetensors");
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

TEST_CASE("the example ResNet-18 compiles as a chain: every variant equals its eval mode", "[resnet][infer]") {
    for (Variant v : {Variant::Real, Variant::StrongBaseline, Variant::RealToBin}) {
        INFO(bnn::examples::variant_name(v));
        manual_seed(61);
        ResNetOptions o = options(v, Stem::Cifar, 8, 5);
        if (v != Variant::Real) o.mode = nn::BinaryMode::FullyBinary;
        ResNet18 net(o);
        net.eval();
        Rng rng(62);
        Tensor<float> x = Tensor<float>::randn({2, 16, 16, 3}, rng);
        Tensor<float> expected;
        {
            NoGradGuard no_tape;
            expected = net.forward(Variable(x)).value();
        }
        infer::Graph graph = infer::compile(net, x.shape());
        const Tensor<float>& got = graph.run(x);
        REQUIRE(got.shape() == expected.shape());
        for (int64_t i = 0; i < got.numel(); ++i) REQUIRE(got[i] == expected[i]);
    }
}

TEST_CASE("the trainer's metrics log rejects a line whose fields have other types", "[trainer][fuzz]") {
    // Found by tests/fuzz/fuzz_resume: a step of 2.2e107 was converted to int64 (undefined), and
    // a stage that is not a string threw nlohmann's type_error, which the trainer does not catch.
    bnn::test::TempDir dir;
    const std::string path = dir.file("metrics.jsonl");
    const std::string good =
        R"({"kind":"step","stage":"s","epoch":1,"step":2,"steps_per_epoch":2,"train_loss":2.3,"train_acc":0.1,"lr":0.001})";
    for (const auto& [line, key] : std::vector<std::pair<std::string, std::string>>{
             {R"({"kind":"step","stage":"s","epoch":1,"step":222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222,"steps_per_epoch":2})",
              "step"},
             {R"({"kind":"epoch","stage":7,"epoch":1})", "stage"},
             {R"({"kind":"epoch","stage":"s","epoch":-1})", "epoch"},
             {R"({"kind":"epoch","stage":"s","epoch":1,"seconds":"1"})", "seconds"}}) {
        std::ofstream(path) << good << '\n' << line << '\n';
        REQUIRE_THROWS_WITH(trainer::MetricsLog(path, /*resume=*/true),
                            Catch::Contains(path) && Catch::Contains("line 2") && Catch::Contains("'" + key + "'"));
    }
    std::ofstream(path) << good << "\n{\"kind\":\"st";  // a line cut by a crash is still dropped
    REQUIRE(trainer::MetricsLog(path, true).steps().size() == 1);
}

TEST_CASE("the trainer's metrics log drops a cut line from the file, so the next record is not lost", "[trainer]") {
    // A kill while a line is appended leaves part of it; the next line used to be appended to
    // that part and was dropped with it on the next --resume.
    bnn::test::TempDir dir;
    const std::string path = dir.file("metrics.jsonl");
    const std::string good = R"({"kind":"epoch","stage":"s","epoch":1})";
    for (const std::string& cut : {std::string("\n{\"kind\":\"ep"), std::string()}) {  // half a line; no newline
        INFO("after the good line: '" << cut << "'");
        std::ofstream(path) << good << cut;
        {
            trainer::MetricsLog log(path, /*resume=*/true);
            trainer::EpochRecord r;
            r.stage = "s";
            r.epoch = 2;
            log.add(r);
        }
        const trainer::MetricsLog reread(path, /*resume=*/true);
        REQUIRE(reread.epochs().size() == 2);
        REQUIRE(reread.epochs()[1].epoch == 2);
    }
}

TEST_CASE("the trainer's metrics log reports a write that fails instead of losing the line", "[trainer]") {
    // /dev/full accepts opening and refuses every write with ENOSPC, as a full disk does.
    if (!std::filesystem::exists("/dev/full")) BNN_SKIP("no /dev/full on this system");
    trainer::MetricsLog log("/dev/full", /*resume=*/false);
    trainer::EpochRecord r;
    r.stage = "real";
    r.epoch = 1;
    REQUIRE_THROWS_WITH(log.add(r), Catch::Contains("metrics log: cannot append to '/dev/full'") &&
                                        Catch::Contains("No space left on device"));
}

TEST_CASE("the trainer's memory estimate bounds ResNet-18's parameters, passes the paper's run and names the limit",
          "[trainer]") {
    // The bound comes from the count at width 8 (building the network at --width is what may not fit).
    for (Variant v : {Variant::Real, Variant::StrongBaseline, Variant::RealToBin}) {
        const int64_t at_8 = ResNet18(options(v, Stem::Cifar, 8, 100)).num_parameters();
        for (int64_t w : {1, 3, 8, 12, 16, 33, 64}) {
            INFO(bnn::examples::variant_name(v) << " at width " << w);
            const double actual = static_cast<double>(ResNet18(options(v, Stem::Cifar, w, 100)).num_parameters());
            REQUIRE(trainer::parameter_bound(w, at_8) >= actual);
            if (w >= 16) REQUIRE(trainer::parameter_bound(w, at_8) <= 1.1 * actual);  // and not far above
        }
    }
    const int64_t at_8 = ResNet18(options(Variant::RealToBin, Stem::Cifar, 8, 100)).num_parameters();
    auto estimate = [&](int64_t w, int64_t batch) {
        return trainer::estimate_training_memory(trainer::parameter_bound(w, at_8), w, batch, 250, 32);
    };
    const double GiB = 1 << 30;
    REQUIRE(estimate(16, 128).total() < 1 * GiB);  // the trainer's defaults
    REQUIRE(estimate(64, 128).total() < 3 * GiB);  // the paper's width and batch
    REQUIRE_NOTHROW(trainer::require_memory(estimate(64, 128), 1, {20 * GiB, "a 24 GiB machine"}, 64, 128));
    REQUIRE_THROWS_WITH(trainer::require_memory(estimate(64, 128), 1, {1 * GiB, "a test limit"}, 64, 128),
                        Catch::StartsWith("trainer: --width 64 with --batch 128 needs about 2.") &&
                            Catch::EndsWith("more than the 1 GiB available (a test limit); use a smaller --width or --batch"));
    REQUIRE_THROWS_WITH(trainer::require_memory(estimate(64, 64), 8, {4 * GiB, "a test limit"}, 64, 512),
                        Catch::Contains("for the 8 ranks on this machine"));
    const trainer::MemoryLimit here = trainer::memory_available();
    INFO(here.source);
    REQUIRE((here.bytes > 0 && std::isfinite(here.bytes)));  // MemAvailable at least, on Linux
}

TEST_CASE("the trainer on --resume rejects checkpoint metadata of the wrong types or range", "[trainer][fuzz]") {
    // What read_resume_point reads once raised nlohmann's exceptions ('epoch' a string, metadata
    // not an object) or restarted at a nonsensical epoch (0, negative, past the stage).
    bnn::test::TempDir dir;
    bnn::nn::Linear net(2, 2);
    bnn::optim::Adam adam(net.parameters());
    const std::string path = dir.file("stage.safetensors");
    for (const auto& [meta, key] : std::vector<std::pair<nlohmann::json, std::string>>{
             {{{"epoch", "2"}}, "epoch"},
             {{{"epoch", 0}}, "epoch"},
             {{{"epoch", 5}}, "epoch"},
             {{{"epoch", 1}, {"complete", "no"}}, "complete"},
             {{{"epoch", 1}, {"test_top1", "high"}}, "test_top1"},
             {nlohmann::json::array({1, 2}), "not a JSON object"}}) {
        bnn::io::save_checkpoint(path, net, adam, meta);
        REQUIRE_THROWS_WITH(trainer::read_resume_point(path, net, adam, 4), Catch::Contains(path) && Catch::Contains(key));
    }
    bnn::io::save_checkpoint(path, net, adam, {{"epoch", 3}, {"complete", false}, {"test_top1", 0.5}});
    const trainer::ResumePoint point = trainer::read_resume_point(path, net, adam, 4);
    REQUIRE((point.epoch == 3 && !point.complete && point.test_top1 == 0.5));
}
