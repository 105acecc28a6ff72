// The trainer's own code path (examples/trainer) on a tiny synthetic set in the CIFAR-100 binary
// format: every recipe runs, writes what it promises, and a resumed run ends exactly where an
// uninterrupted one does.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

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
    auto lines = lines_of(out / "metrics.jsonl");
    REQUIRE(lines.size() == 6);
    auto first = nlohmann::json::parse(lines[0]);
    REQUIRE(first.at("stage") == "real");
    REQUIRE(first.at("test_top1").get<double>() == Approx(results[0].top1));
    auto step1 = nlohmann::json::parse(lines[1]);
    REQUIRE(step1.at("kd").get<double>() > 0.0);         // the teacher is used
    REQUIRE(step1.at("attention").get<double>() > 0.0);
    auto base = nlohmann::json::parse(lines[4]);
    REQUIRE(base.at("kd").get<double>() == 0.0);          // the baseline has no teacher
    std::ifstream html(out / "curves.html");
    std::string page((std::istreambuf_iterator<char>(html)), {});
    REQUIRE(page.find("<svg") != std::string::npos);
    REQUIRE(page.find("baseline/stage2") != std::string::npos);
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
    REQUIRE(lines_of(data.dir / "resumed" / "metrics.jsonl").size() == 4);
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
