// The trainer's own code path (examples/trainer) on a tiny synthetic set in the CIFAR-100 binary
// format: every recipe runs, writes what it promises, and a resumed run ends exactly where an
// uninterrupted one does; the pictures and the progress lines.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

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
