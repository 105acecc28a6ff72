// Writes the seed corpora of the fuzz targets: small valid files of every kind each target
// reads, so fuzzing starts from inputs that get past the first checks.
//   make_fuzz_corpus <dir>   (the committed corpora are tests/fuzz/corpus/<target>/)
// Files are written with fixed seeds, so rerunning it reproduces them.
#include <stb/stb_image_write.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "bnn/core/file.hpp"
#include "bnn/core/rng.hpp"
#include "bnn/io/checkpoint.hpp"
#include "bnn/optim/adam.hpp"
#include "bnn/train/param_groups.hpp"
#include "fuzz_models.hpp"
#include "resnet18_deploy.hpp"

namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;

namespace {

fs::path root;

void put(const std::string& target, const std::string& name, const Bytes& bytes) {
    fs::create_directories(root / target);
    std::ofstream((root / target / name).string(), std::ios::binary)
        .write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}
Bytes cat(Bytes a, const Bytes& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
}
Bytes text(const std::string& s) { return Bytes(s.begin(), s.end()); }
Bytes gzip(const Bytes& data) {
    z_stream zs{};
    deflateInit2(&zs, Z_BEST_COMPRESSION, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY);  // gzip framing
    Bytes out(deflateBound(&zs, static_cast<uLong>(data.size())));
    zs.next_in = const_cast<Bytef*>(data.data());
    zs.avail_in = static_cast<uInt>(data.size());
    zs.next_out = out.data();
    zs.avail_out = static_cast<uInt>(out.size());
    deflate(&zs, Z_FINISH);
    out.resize(zs.total_out);
    deflateEnd(&zs);
    return out;
}
/// The bytes a save function writes, through a temporary file.
template <class Save>
Bytes saved(Save save) {
    // A name of this process's own: two builds on one machine may run the program at once.
    const std::string tmp =
        (fs::temp_directory_path() / ("bnn_make_fuzz_corpus." + std::to_string(::getpid()) + ".tmp")).string();
    save(tmp);
    Bytes b = bnn::read_file(tmp);
    fs::remove(tmp);
    return b;
}

void safetensors_seeds() {
    using namespace bnn;
    io::NamedTensors all{{"f", Tensor<float>::from_vector({2, 2}, {1, -2, 0.5f, 3})},
                         {"i", Tensor<int32_t>::from_vector({3}, {-1, 0, 7})},
                         {"u8", Tensor<uint8_t>::from_vector({2}, {0, 255})},
                         {"u64", Tensor<uint64_t>::from_vector({1}, {~0ull})},
                         {"i64", Tensor<int64_t>::from_vector({1}, {42})},
                         {"empty", Tensor<float>::empty({0, 3})}};
    put("fuzz_safetensors", "every_dtype", io::serialize_safetensors(all, {{"note", "seed"}}));
    put("fuzz_safetensors", "scalar", io::serialize_safetensors({{"s", Tensor<float>::full({}, 1.f)}}));
    // F16 and BF16, as PyTorch writes them (bnn reads them widened but never writes them).
    const std::string header =
        R"({"h":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},"b":{"dtype":"BF16","shape":[1],"data_offsets":[4,6]}})";
    Bytes f16;
    for (int i = 0; i < 8; ++i) f16.push_back(static_cast<uint8_t>(header.size() >> (8 * i)));
    f16 = cat(cat(f16, text(header)), {0x00, 0x3c, 0x00, 0xfc, 0x80, 0x3f});
    put("fuzz_safetensors", "half_bfloat16", f16);
}

void checkpoint_seeds() {
    using bnn::examples::Variant;
    for (Variant v : {Variant::Real, Variant::StrongBaseline, Variant::RealToBin}) {
        auto net = bnn::fuzz::small_resnet(v);
        put("fuzz_checkpoint", std::string("resnet18_") + bnn::examples::variant_name(v),
            saved([&](const std::string& p) { bnn::io::save_checkpoint(p, *net, {{"epoch", 1}}); }));
    }
    auto net = bnn::fuzz::small_net();
    put("fuzz_checkpoint", "small_net", saved([&](const std::string& p) { bnn::io::save_checkpoint(p, *net); }));
}

void deployed_seeds() {
    using bnn::examples::Variant;
    for (Variant v : {Variant::StrongBaseline, Variant::RealToBin}) {
        auto net = bnn::fuzz::small_resnet(v, bnn::nn::BinaryMode::FullyBinary);
        put("fuzz_deployed", std::string("resnet18_") + bnn::examples::variant_name(v),
            saved([&](const std::string& p) { bnn::examples::export_resnet18(p, *net); }));
    }
    auto net = bnn::fuzz::small_net();
    put("fuzz_deployed", "small_net", saved([&](const std::string& p) { bnn::io::save_deployed(p, *net); }));
}

/// `n` records of `record` bytes, labels below `classes`, random pixels.
Bytes cifar_records(int n, int record, int label_bytes, int classes, bnn::Rng& rng) {
    Bytes b;
    for (int r = 0; r < n; ++r) {
        for (int l = 0; l < label_bytes; ++l) b.push_back(static_cast<uint8_t>(rng.next_u64() % classes));
        for (int p = label_bytes; p < record; ++p) b.push_back(static_cast<uint8_t>(rng.next_u64()));
    }
    return b;
}

void cifar_seeds() {
    bnn::Rng rng(1);
    std::string names10;
    for (int k = 0; k < 10; ++k) names10 += "class" + std::to_string(k) + "\n";
    // [selector][names size][names][records]
    put("fuzz_cifar", "cifar10_named", cat(cat({0, static_cast<uint8_t>(names10.size())}, text(names10)),
                                          cifar_records(2, 3073, 1, 10, rng)));
    put("fuzz_cifar", "cifar100_fine", cat({1, 0}, cifar_records(2, 3074, 2, 20, rng)));
    put("fuzz_cifar", "cifar100_coarse", cat({2, 0}, cifar_records(1, 3074, 2, 20, rng)));
}

void idx_seeds() {
    // [selector: bit 0 labels, bit 1 gzip by the harness][IDX bytes]
    const Bytes images = cat({0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 2}, Bytes(12, 0x7f));
    const Bytes labels = {0, 0, 8, 1, 0, 0, 0, 3, 0, 9, 5};
    put("fuzz_idx", "images", cat({0}, images));
    put("fuzz_idx", "labels", cat({1}, labels));
    put("fuzz_idx", "images_gz", cat({2}, images));
    put("fuzz_idx", "labels_gz", cat({3}, labels));
    // The labels as a gzip file of two members (as `cat a.gz b.gz` makes), read as is.
    put("fuzz_idx", "labels_two_gzip_members",
        cat({1}, cat(gzip(Bytes(labels.begin(), labels.begin() + 5)), gzip(Bytes(labels.begin() + 5, labels.end())))));
}

void image_seeds() {
    // [selector: channels - 1 in bits 0-1, input side - 1 in bits 2-7][image file]
    Bytes rgb(4 * 4 * 3);
    for (size_t i = 0; i < rgb.size(); ++i) rgb[i] = static_cast<uint8_t>(i * 13);
    auto sink = [](void* ctx, void* data, int size) {
        auto* b = static_cast<Bytes*>(ctx);
        b->insert(b->end(), static_cast<uint8_t*>(data), static_cast<uint8_t*>(data) + size);
    };
    Bytes png{2 | (7 << 2)}, bmp{0 | (3 << 2)}, tga{3 | (31 << 2)}, jpg{2 | (1 << 2)};
    stbi_write_png_to_func(sink, &png, 4, 4, 3, rgb.data(), 12);
    stbi_write_bmp_to_func(sink, &bmp, 4, 4, 3, rgb.data());
    stbi_write_tga_to_func(sink, &tga, 4, 4, 3, rgb.data());
    stbi_write_jpg_to_func(sink, &jpg, 4, 4, 3, rgb.data(), 90);
    put("fuzz_image", "rgb.png", png);
    put("fuzz_image", "rgb.bmp", bmp);
    put("fuzz_image", "rgb.tga", tga);
    put("fuzz_image", "rgb.jpg", jpg);
    put("fuzz_image", "grey.pgm", cat({0 | (1 << 2)}, cat(text("P5\n2 2\n255\n"), {0, 64, 128, 255})));
    put("fuzz_image", "grey16.pgm", cat({2 | (1 << 2)}, cat(text("P5 2 1 65535\n"), {0x12, 0x34, 0xff, 0x00})));
    // Findings, kept so every run starts from them: a 16-bit PGM whose pixels are short (stb read
    // past its buffer), and a PNG whose first IDAT chunk is empty (stb passed memcpy a null pointer).
    put("fuzz_image", "short16.pgm", cat({0 | (1 << 2)}, cat(text("P5\n2 2\n355\n"), {0x10, 0x20, 0x30, 0x40})));
    Bytes empty_idat = png;
    size_t idat = 9;  // after the selector and the signature: chunks of length, type, data, CRC
    while (std::memcmp(&empty_idat[idat + 4], "IDAT", 4) != 0)
        idat += 12 + ((size_t{empty_idat[idat]} << 24) | (size_t{empty_idat[idat + 1]} << 16) |
                      (size_t{empty_idat[idat + 2]} << 8) | empty_idat[idat + 3]);
    const Bytes empty_chunk = {0, 0, 0, 0, 'I', 'D', 'A', 'T', 0x35, 0xAF, 0x06, 0x1E};
    empty_idat.insert(empty_idat.begin() + static_cast<std::ptrdiff_t>(idat), empty_chunk.begin(), empty_chunk.end());
    put("fuzz_image", "empty_idat.png", empty_idat);
}

void resume_seeds() {
    // [metrics size: 2 bytes][metrics.jsonl][checkpoint]
    const std::string metrics =
        R"({"kind":"step","stage":"real-to-bin/step2","epoch":1,"step":2,"steps_per_epoch":2,"train_loss":2.3,"train_acc":0.1,"lr":0.001})"
        "\n"
        R"({"kind":"epoch","stage":"real-to-bin/step2","epoch":1,"train_loss":2.3,"train_acc":0.1,"test_top1":0.1,"test_top5":0.5,"lr":0.001,"attention":0,"kd":0,"images_per_s":100,"seconds":1})"
        "\n"
        R"({"kind":"step","stage":"real-to-bin/step2","epoch":2,"step)";  // cut by a crash
    auto net = bnn::fuzz::small_resnet(bnn::examples::Variant::RealToBin);
    bnn::optim::Adam adam(bnn::train::param_groups(*net, 1e-3f, 1e-5f), {.decoupled_weight_decay = true});
    for (bool complete : {false, true}) {
        const nlohmann::json meta = {{"stage", "real-to-bin/step2"}, {"epoch", complete ? 4 : 1}, {"epochs", 4},
                                     {"complete", complete}, {"test_top1", 0.1}, {"test_top5", 0.5}};
        const Bytes ckpt = saved([&](const std::string& p) { bnn::io::save_checkpoint(p, *net, adam, meta); });
        put("fuzz_resume", complete ? "complete" : "after_epoch_1",
            cat(cat({static_cast<uint8_t>(metrics.size()), static_cast<uint8_t>(metrics.size() >> 8)}, text(metrics)), ckpt));
    }
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: make_fuzz_corpus <corpus dir>\n");
        return 2;
    }
    root = argv[1];
    bnn::manual_seed(1);
    safetensors_seeds();
    checkpoint_seeds();
    deployed_seeds();
    cifar_seeds();
    idx_seeds();
    image_seeds();
    resume_seeds();
    return 0;
}
