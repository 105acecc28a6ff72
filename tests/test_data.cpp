// Data set readers (CIFAR-10/100, IDX), augmentation, mix-up and the batch loader.
#include <zlib.h>

#include <algorithm>
#include <catch2/catch.hpp>

#include "skip.hpp"
#include "same_bits.hpp"
#include "temp_dir.hpp"
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <set>
#include <stdexcept>

#include "bnn/core/file.hpp"
#include "bnn/data/augment.hpp"
#include "bnn/data/cifar.hpp"
#include "bnn/data/idx.hpp"
#include "bnn/data/loader.hpp"
#include "bnn/data/mixup.hpp"
#include "bnn/data/transforms.hpp"

using namespace bnn;
using namespace bnn::data;
namespace fs = std::filesystem;

namespace {

using test::bits_equal;
using test::TempDir;
using test::write_bytes;

void write_text(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

void write_gzip(const std::string& path, const std::vector<uint8_t>& bytes) {
    gzFile f = gzopen(path.c_str(), "wb");
    REQUIRE(f != nullptr);
    REQUIRE(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())) == static_cast<int>(bytes.size()));
    REQUIRE(gzclose(f) == Z_OK);
}

/// The value of channel c of pixel (y, x) of synthetic image r: distinct per plane and pixel.
uint8_t pixel(int r, int y, int x, int c) { return static_cast<uint8_t>(r * 7 + c * 85 + y * 3 + x); }

/// One CIFAR record in the official layout: the label bytes, then the R, G, B planes.
std::vector<uint8_t> cifar_record(int r, std::vector<uint8_t> labels) {
    std::vector<uint8_t> rec = std::move(labels);
    for (int c = 0; c < 3; ++c)
        for (int y = 0; y < 32; ++y)
            for (int x = 0; x < 32; ++x) rec.push_back(pixel(r, y, x, c));
    return rec;
}

std::vector<uint8_t> cifar100_file(int n, int first = 0) {
    std::vector<uint8_t> bytes;
    for (int r = first; r < first + n; ++r) {
        auto rec = cifar_record(r, {static_cast<uint8_t>(r % 20), static_cast<uint8_t>((r * 13) % 100)});
        bytes.insert(bytes.end(), rec.begin(), rec.end());
    }
    return bytes;
}

/// An IDX ubyte file: magic 00 00 08 rank, big-endian extents, data.
std::vector<uint8_t> idx_file(const std::vector<uint32_t>& dims, const std::vector<uint8_t>& data) {
    std::vector<uint8_t> b = {0, 0, 0x08, static_cast<uint8_t>(dims.size())};
    for (uint32_t d : dims)
        for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<uint8_t>(d >> s));
    b.insert(b.end(), data.begin(), data.end());
    return b;
}

/// A small data set whose image i has every byte equal to i, label i % classes.
Dataset indexed_dataset(int n, int classes, int h = 4, int w = 3, int c = 2) {
    Dataset d;
    d.images = Tensor<uint8_t>(Shape{n, h, w, c});
    for (int i = 0; i < n; ++i)
        std::fill(d.images.data() + i * h * w * c, d.images.data() + (i + 1) * h * w * c, static_cast<uint8_t>(i));
    for (int i = 0; i < n; ++i) d.labels.push_back(i % classes);
    d.num_classes = classes;
    d.name = "indexed";
    return d;
}

/// The sample indices of a batch from indexed_dataset (no normalization: value * 255 = index).
std::vector<int64_t> batch_indices(const Batch& b) {
    std::vector<int64_t> out;
    const int64_t per = b.images.numel() / b.images.dim(0);
    for (int64_t i = 0; i < b.images.dim(0); ++i) out.push_back(std::lround(b.images[i * per] * 255.f));
    return out;
}

std::vector<int64_t> epoch_indices(BatchLoader& loader, int64_t epoch) {
    loader.start_epoch(epoch);
    std::vector<int64_t> all;
    while (auto b = loader.next()) {
        auto idx = batch_indices(*b);
        all.insert(all.end(), idx.begin(), idx.end());
    }
    return all;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// CIFAR

TEST_CASE("CIFAR-100 reader converts planar records to NHWC with fine and coarse labels", "[cifar]") {
    TempDir dir;
    write_bytes(dir.file("train.bin"), cifar100_file(5));
    write_bytes(dir.file("test.bin"), cifar100_file(2, 5));
    std::string fine_names, coarse_names;
    for (int i = 0; i < 100; ++i) fine_names += "fine" + std::to_string(i) + "\n";
    for (int i = 0; i < 20; ++i) coarse_names += "coarse" + std::to_string(i) + "\r\n";  // CRLF and
    write_text(dir.file("fine_label_names.txt"), fine_names + "\n\n");                    // blank lines are fine
    write_text(dir.file("coarse_label_names.txt"), coarse_names);

    Dataset train = load_cifar100(dir.path.string(), Split::train);
    REQUIRE(train.images.shape() == Shape{5, 32, 32, 3});
    REQUIRE(train.num_classes == 100);
    for (int r = 0; r < 5; ++r) {
        REQUIRE(train.labels[r] == (r * 13) % 100);
        for (int y : {0, 5, 31})
            for (int x : {0, 17, 31})
                for (int c = 0; c < 3; ++c) REQUIRE(train.images.at({r, y, x, c}) == pixel(r, y, x, c));
    }
    REQUIRE(train.class_names.size() == 100);
    REQUIRE(train.class_names[42] == "fine42");

    Dataset coarse = load_cifar100(dir.path.string(), Split::train, CifarLabels::coarse);
    REQUIRE(coarse.num_classes == 20);
    for (int r = 0; r < 5; ++r) REQUIRE(coarse.labels[r] == r % 20);
    REQUIRE(coarse.class_names[3] == "coarse3");

    Dataset test = load_cifar100(dir.path.string(), Split::test);
    REQUIRE(test.size() == 2);
    REQUIRE(test.images.at({1, 2, 3, 1}) == pixel(6, 2, 3, 1));
}

TEST_CASE("CIFAR-100 reader names the file and byte offset of every problem", "[cifar]") {
    TempDir dir;
    const std::string d = dir.path.string();
    REQUIRE_THROWS_WITH(load_cifar100(d + "/nope", Split::train), Catch::Contains("nope") && Catch::Contains("not a directory"));
    REQUIRE_THROWS_WITH(load_cifar100(d, Split::train), Catch::Contains("train.bin") && Catch::Contains("missing"));

    auto bytes = cifar100_file(3);
    bytes.resize(bytes.size() - 100);  // truncated last record
    write_bytes(dir.file("train.bin"), bytes);
    REQUIRE_THROWS_WITH(load_cifar100(d, Split::train),
                        Catch::Contains("train.bin") && Catch::Contains("not a multiple of the 3074-byte record") &&
                            Catch::Contains("byte offset 6148"));

    write_bytes(dir.file("train.bin"), {});
    REQUIRE_THROWS_WITH(load_cifar100(d, Split::train), Catch::Contains("empty"));

    bytes = cifar100_file(3);
    bytes[2 * 3074 + 1] = 100;  // fine label of record 2
    write_bytes(dir.file("train.bin"), bytes);
    REQUIRE_THROWS_WITH(load_cifar100(d, Split::train),
                        Catch::Contains("label 100 at byte offset 6149") && Catch::Contains("record 2"));
    bytes[2 * 3074 + 1] = 99;
    bytes[3074] = 20;  // coarse label of record 1: fine for fine labels, bad for coarse ones
    write_bytes(dir.file("train.bin"), bytes);
    REQUIRE(load_cifar100(d, Split::train).labels[2] == 99);
    REQUIRE_THROWS_WITH(load_cifar100(d, Split::train, CifarLabels::coarse), Catch::Contains("byte offset 3074"));

    // Without names files the classes are numbered; a names file with the wrong count is an error.
    REQUIRE(load_cifar100(d, Split::train).class_names[7] == "7");
    write_text(dir.file("fine_label_names.txt"), "apple\npear\n");
    REQUIRE_THROWS_WITH(load_cifar100(d, Split::train), Catch::Contains("fine_label_names.txt") && Catch::Contains("2 class names"));
}

TEST_CASE("CIFAR-10 reader concatenates the five training batches", "[cifar]") {
    TempDir dir;
    int r = 0;
    for (int b = 1; b <= 5; ++b) {
        std::vector<uint8_t> bytes;
        for (int k = 0; k < 2; ++k, ++r) {
            auto rec = cifar_record(r, {static_cast<uint8_t>(r % 10)});
            bytes.insert(bytes.end(), rec.begin(), rec.end());
        }
        write_bytes(dir.file("data_batch_" + std::to_string(b) + ".bin"), bytes);
    }
    write_bytes(dir.file("test_batch.bin"), cifar_record(50, {9}));
    write_text(dir.file("batches.meta.txt"), "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n");

    Dataset train = load_cifar10(dir.path.string(), Split::train);
    REQUIRE(train.size() == 10);
    for (int k = 0; k < 10; ++k) REQUIRE(train.labels[k] == k % 10);
    REQUIRE(train.images.at({7, 4, 9, 2}) == pixel(7, 4, 9, 2));
    REQUIRE(train.class_names[9] == "truck");
    Dataset test = load_cifar10(dir.path.string(), Split::test);
    REQUIRE(test.size() == 1);
    REQUIRE(test.labels[0] == 9);

    auto bad = cifar_record(0, {10});
    write_bytes(dir.file("test_batch.bin"), bad);
    REQUIRE_THROWS_WITH(load_cifar10(dir.path.string(), Split::test), Catch::Contains("test_batch.bin") && Catch::Contains("label 10"));
    // A 3074-byte record (CIFAR-100's size) is the wrong size for CIFAR-10.
    write_bytes(dir.file("test_batch.bin"), cifar_record(0, {1, 2}));
    REQUIRE_THROWS_WITH(load_cifar10(dir.path.string(), Split::test), Catch::Contains("3073-byte record"));
    fs::remove(dir.file("data_batch_3.bin"));
    REQUIRE_THROWS_WITH(load_cifar10(dir.path.string(), Split::train), Catch::Contains("data_batch_3.bin"));
}

// ---------------------------------------------------------------------------------------------
// IDX

TEST_CASE("IDX reader loads plain and gzip files identically", "[idx]") {
    TempDir dir;
    std::vector<uint8_t> pixels(3 * 2 * 4);
    for (size_t k = 0; k < pixels.size(); ++k) pixels[k] = static_cast<uint8_t>(k * 11);
    const auto images = idx_file({3, 2, 4}, pixels);
    const auto labels = idx_file({3}, {4, 0, 9});
    write_bytes(dir.file("train-images-idx3-ubyte"), images);
    write_bytes(dir.file("train-labels-idx1-ubyte"), labels);
    write_gzip(dir.file("t10k-images-idx3-ubyte.gz"), images);
    write_gzip(dir.file("t10k-labels-idx1-ubyte.gz"), labels);

    Dataset plain = load_fashion_mnist(dir.path.string(), Split::train);
    Dataset gz = load_fashion_mnist(dir.path.string(), Split::test);
    for (const Dataset* d : {&plain, &gz}) {
        REQUIRE(d->images.shape() == Shape{3, 2, 4, 1});
        REQUIRE(d->images.to_vector() == pixels);
        REQUIRE(d->labels == std::vector<int32_t>{4, 0, 9});
        REQUIRE(d->num_classes == 10);
        REQUIRE(d->class_names[9] == "Ankle boot");
    }
    REQUIRE(load_mnist(dir.path.string(), Split::train).class_names[3] == "3");
}

TEST_CASE("IDX reader rejects wrong magic, truncation, bad labels and mismatched counts", "[idx]") {
    TempDir dir;
    const std::string img = dir.file("img"), lab = dir.file("lab");
    auto images = idx_file({2, 2, 2}, std::vector<uint8_t>(8, 1));

    REQUIRE_THROWS_WITH(read_idx_images(dir.file("absent")), Catch::Contains("absent") && Catch::Contains("missing"));

    auto wrong = images;
    wrong[3] = 1;  // a label file's magic
    write_bytes(img, wrong);
    REQUIRE_THROWS_WITH(read_idx_images(img), Catch::Contains(img) && Catch::Contains("wrong magic") &&
                                                  Catch::Contains("byte offset 0"));
    wrong = images;
    wrong[2] = 0x0d;  // float data
    write_bytes(img, wrong);
    REQUIRE_THROWS_WITH(read_idx_images(img), Catch::Contains("wrong magic"));

    auto cut = images;
    cut.resize(cut.size() - 3);
    write_bytes(img, cut);
    REQUIRE_THROWS_WITH(read_idx_images(img), Catch::Contains("truncated") && Catch::Contains("byte offset 16") &&
                                                  Catch::Contains("byte offset 21"));
    write_bytes(img, std::vector<uint8_t>(images.begin(), images.begin() + 10));
    REQUIRE_THROWS_WITH(read_idx_images(img), Catch::Contains("truncated in its header"));
    write_bytes(img, {0, 0});
    REQUIRE_THROWS_WITH(read_idx_images(img), Catch::Contains("truncated"));
    auto extra = images;
    extra.push_back(0);
    write_bytes(img, extra);
    REQUIRE_THROWS_WITH(read_idx_images(img), Catch::Contains("unexpected bytes"));

    // A gzip stream cut short.
    write_gzip(img + ".gz", images);
    auto gz = read_file(img + ".gz");
    gz.resize(gz.size() - 6);
    write_bytes(img + ".gz", gz);
    REQUIRE_THROWS_WITH(read_idx_images(img + ".gz"), Catch::Contains("img.gz") && Catch::Contains("truncated"));

    write_bytes(lab, idx_file({3}, {1, 10, 2}));
    REQUIRE_THROWS_WITH(read_idx_labels(lab, 10), Catch::Contains("label 10 at byte offset 9"));
    write_bytes(lab, idx_file({3}, {1, 2, 3}));
    write_bytes(img, images);
    REQUIRE_THROWS_WITH(load_idx(img, lab, 10, {}, "x"), Catch::Contains("2 images") && Catch::Contains("3 labels"));
}

TEST_CASE("IDX reader rejects extents whose product wraps past 64 bits", "[idx][fuzz]") {
    // 2^22 * 2^21 * 2^21 = 2^64 wraps to 0, which a header-only file matches: the reader once
    // returned a tensor of that shape over no storage (its element count overflowing int64).
    TempDir dir;
    const std::string img = dir.file("wrapping-idx3-ubyte");
    write_bytes(img, idx_file({1u << 22, 1u << 21, 1u << 21}, {}));
    REQUIRE_THROWS_WITH(read_idx_images(img), Catch::Contains(img) && Catch::Contains("describe more data than"));
}

TEST_CASE("IDX reader frees zlib's state when a gzip file has trailing garbage", "[idx][fuzz]") {
    // Found by tests/fuzz/fuzz_idx: a gzip member followed by bytes that start no other member.
    // The error was thrown before inflateEnd, leaking zlib's state (LeakSanitizer reports it in
    // the sanitizer build, scripts/sanitize.sh).
    TempDir dir;
    const std::string lab = dir.file("labels.gz");
    write_bytes(lab, {
        0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03, 0x63, 0x60, 0xe0, 0x60, 0x64, 0x00,
        0x00, 0xe4, 0x97, 0x2a, 0xd1, 0x05, 0x00, 0x00, 0x00, 0x8b, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x02, 0x03, 0x63, 0x60, 0x60, 0x66, 0xe0, 0x64, 0x05, 0x00, 0x41, 0xdf, 0x02, 0x8b, 0x06,
        0x00, 0x00, 0x00});
    REQUIRE_THROWS_WITH(read_idx_labels(lab, 10), Catch::Contains(lab) && Catch::Contains("trailing garbage"));
}

TEST_CASE("the Debian Fashion-MNIST package loads when installed", "[idx]") {
    // BNN_FASHION_MNIST_DIR points the test at a copy of the files elsewhere.
    const char* env = std::getenv("BNN_FASHION_MNIST_DIR");
    const std::string dir = env ? env : "/usr/share/datasets/fashion-mnist";
    if (!fs::exists(dir + "/t10k-images-idx3-ubyte.gz"))
        BNN_SKIP("Fashion-MNIST not found in " << dir << " (Debian package dataset-fashion-mnist)");
    Dataset test = load_fashion_mnist(dir, Split::test);
    REQUIRE(test.images.shape() == Shape{10000, 28, 28, 1});
    std::vector<int> counts(10, 0);
    for (int32_t y : test.labels) ++counts[y];
    for (int c : counts) REQUIRE(c == 1000);  // the test split is balanced
}

// ---------------------------------------------------------------------------------------------
// normalization and augmentation

TEST_CASE("normalize maps bytes through (x / 255 - mean) / std per channel", "[transforms]") {
    auto img = Tensor<uint8_t>::from_vector({1, 1, 2, 3}, {0, 128, 255, 51, 102, 204});
    Tensor<float> out = normalize(img, {{0.5f, 0.25f, 0.f}, {0.5f, 0.25f, 2.f}});
    const float mean[3] = {0.5f, 0.25f, 0.f}, sd[3] = {0.5f, 0.25f, 2.f};
    for (int k = 0; k < 6; ++k) REQUIRE(out[k] == Approx((img[k] / 255.f - mean[k % 3]) / sd[k % 3]).epsilon(1e-6));
    REQUIRE(normalize(img, {})[2] == Approx(1.f));
    REQUIRE_THROWS_WITH(normalize(img, {{0.5f}, {}}), Catch::Contains("1 means for 3 channels"));
    REQUIRE_THROWS_AS(normalize(img, {{}, {1.f, 0.f, 1.f}}), Error);

    Normalization stats = channel_statistics(Tensor<uint8_t>::from_vector({2, 2}, {0, 51, 255, 51}));
    REQUIRE(stats.mean[0] == Approx(0.5));
    REQUIRE(stats.std[0] == Approx(0.5));
    REQUIRE(stats.mean[1] == Approx(0.2));
    REQUIRE(stats.std[1] == Approx(0.0).margin(1e-6));
}

TEST_CASE("horizontal flip twice is the identity and mirrors columns", "[augment]") {
    Rng rng(1);
    auto img = Tensor<uint8_t>::empty({5, 6, 3});
    for (auto& v : img) v = static_cast<uint8_t>(rng.below(256));
    auto f = hflip(img);
    REQUIRE(bits_equal(hflip(f), img));
    for (int y = 0; y < 5; ++y)
        for (int x = 0; x < 6; ++x)
            for (int c = 0; c < 3; ++c) REQUIRE(f.at({y, x, c}) == img.at({y, 5 - x, c}));
}

TEST_CASE("crop keeps the shape and shifts the content, zero-filling the border", "[augment]") {
    Rng rng(2);
    auto img = Tensor<float>::uniform({8, 7, 2}, rng, 1.f, 2.f);  // no zeros inside the image
    for (int dy = -4; dy <= 4; dy += 2)
        for (int dx = -4; dx <= 4; dx += 4) {
            auto out = shifted_crop(img, dy, dx);
            REQUIRE(out.shape() == img.shape());
            for (int y = 0; y < 8; ++y)
                for (int x = 0; x < 7; ++x)
                    for (int c = 0; c < 2; ++c) {
                        const bool inside = y + dy >= 0 && y + dy < 8 && x + dx >= 0 && x + dx < 7;
                        REQUIRE(out.at({y, x, c}) == (inside ? img.at({y + dy, x + dx, c}) : 0.f));
                    }
        }
    REQUIRE(bits_equal(shifted_crop(img, 0, 0), img));
    // random_crop is one of those shifts, within the padding.
    for (int trial = 0; trial < 20; ++trial) {
        auto out = Tensor<float>::empty(img.shape());
        random_crop(img.data(), out.data(), 8, 7, 2, 4, rng);
        bool matched = false;
        for (int dy = -4; dy <= 4 && !matched; ++dy)
            for (int dx = -4; dx <= 4 && !matched; ++dx) matched = bits_equal(out, shifted_crop(img, dy, dx));
        REQUIRE(matched);
    }
}

TEST_CASE("rotation by 0 is the identity and by 90 or 180 degrees moves pixels exactly", "[augment]") {
    Rng rng(3);
    auto img = Tensor<uint8_t>::empty({6, 6, 3});
    for (auto& v : img) v = static_cast<uint8_t>(rng.below(256));
    REQUIRE(bits_equal(rotate(img, 0.f), img));
    auto fimg = Tensor<float>::randn({5, 7, 1}, rng);
    REQUIRE(bits_equal(rotate(fimg, 0.f), fimg));

    auto r180 = rotate(img, 180.f);
    auto r90 = rotate(img, 90.f);
    for (int y = 0; y < 6; ++y)
        for (int x = 0; x < 6; ++x)
            for (int c = 0; c < 3; ++c) {
                REQUIRE(r180.at({y, x, c}) == img.at({5 - y, 5 - x, c}));
                // Counter-clockwise as displayed: the right column becomes the top row.
                REQUIRE(r90.at({y, x, c}) == img.at({x, 5 - y, c}));
            }
    // 45 degrees: the shape is kept and corners, rotated out of the source, are zero.
    auto ones = Tensor<uint8_t>::full({9, 9, 1}, 200);
    auto r45 = rotate(ones, 45.f);
    REQUIRE(r45.shape() == ones.shape());
    REQUIRE(r45.at({0, 0, 0}) == 0);
    REQUIRE(r45.at({8, 8, 0}) == 0);
    REQUIRE(r45.at({4, 4, 0}) == 200);
}

TEST_CASE("Beta sampling has the right moments and stays in [0, 1]", "[mixup]") {
    Rng rng(4);
    for (double alpha : {0.2, 1.0, 4.0}) {
        const int n = 20000;
        double sum = 0, sq = 0;
        for (int i = 0; i < n; ++i) {
            const double b = sample_beta(alpha, alpha, rng);
            REQUIRE(b >= 0.0);
            REQUIRE(b <= 1.0);
            sum += b;
            sq += b * b;
        }
        const double mean = sum / n, var = sq / n - mean * mean;
        INFO("alpha " << alpha);
        CHECK(mean == Approx(0.5).margin(0.02));
        CHECK(var == Approx(1.0 / (4 * (2 * alpha + 1))).epsilon(0.08));
    }
}

TEST_CASE("mix-up blends images with a shuffled partner and targets rows sum to 1", "[mixup]") {
    Rng rng(5);
    auto images = Tensor<float>::randn({6, 2, 2, 3}, rng);
    const auto original = images.clone();
    std::vector<int32_t> labels = {0, 1, 2, 3, 4, 0};
    MixupInfo info;
    Tensor<float> targets = mixup(images, labels, 5, 0.4f, rng, &info);
    REQUIRE(targets.shape() == Shape{6, 5});
    REQUIRE(info.lambda >= 0.f);
    REQUIRE(info.lambda <= 1.f);
    std::vector<int64_t> sorted = info.partner;
    std::sort(sorted.begin(), sorted.end());
    REQUIRE(sorted == std::vector<int64_t>{0, 1, 2, 3, 4, 5});
    const float lam = info.lambda;
    for (int i = 0; i < 6; ++i) {
        float row = 0;
        for (int k = 0; k < 5; ++k) row += targets.at({i, k});
        REQUIRE(row == Approx(1.f));
        REQUIRE(targets.at({i, labels[i]}) >= lam - 1e-6f);
        for (int k = 0; k < 12; ++k)
            REQUIRE(images[i * 12 + k] ==
                    Approx(lam * original[i * 12 + k] + (1 - lam) * original[info.partner[i] * 12 + k]));
    }
    REQUIRE_THROWS_AS(mixup(images, labels, 5, 0.f, rng), Error);
    REQUIRE_THROWS_AS(mixup(images, {0, 1}, 5, 0.2f, rng), Error);
    REQUIRE_THROWS_AS(mixup(images, {0, 1, 2, 3, 4, 5}, 5, 0.2f, rng), Error);  // label 5 of 5 classes
}

// ---------------------------------------------------------------------------------------------
// loader

TEST_CASE("loader visits every sample once per epoch, in a seeded order", "[loader]") {
    Dataset d = indexed_dataset(23, 4);
    BatchLoader loader(d, {.batch_size = 5, .seed = 42});
    REQUIRE(loader.batches_per_epoch() == 5);

    loader.start_epoch(0);
    std::vector<int64_t> sizes, seen;
    while (auto b = loader.next()) {
        sizes.push_back(b->images.dim(0));
        REQUIRE(b->images.shape() == Shape{b->images.dim(0), 4, 3, 2});
        REQUIRE_FALSE(b->targets.defined());
        auto idx = batch_indices(*b);
        for (size_t k = 0; k < idx.size(); ++k) REQUIRE(b->labels[k] == idx[k] % 4);
        seen.insert(seen.end(), idx.begin(), idx.end());
    }
    REQUIRE(sizes == std::vector<int64_t>{5, 5, 5, 5, 3});
    REQUIRE_FALSE(loader.next().has_value());  // stays finished
    auto sorted = seen;
    std::sort(sorted.begin(), sorted.end());
    for (int i = 0; i < 23; ++i) REQUIRE(sorted[i] == i);
    REQUIRE(seen == loader.epoch_order(0));
    std::vector<int64_t> identity(23);
    std::iota(identity.begin(), identity.end(), 0);
    REQUIRE(seen != identity);

    // Same seed: same order; another epoch or seed: another order.
    BatchLoader same(d, {.batch_size = 5, .seed = 42});
    REQUIRE(epoch_indices(same, 0) == seen);
    auto epoch1 = epoch_indices(same, 1);
    REQUIRE(epoch1 != seen);
    REQUIRE(std::set<int64_t>(epoch1.begin(), epoch1.end()).size() == 23);
    BatchLoader other(d, {.batch_size = 5, .seed = 43});
    REQUIRE(epoch_indices(other, 0) != seen);

    BatchLoader ordered(d, {.batch_size = 5, .shuffle = false, .drop_last = true});
    REQUIRE(ordered.batches_per_epoch() == 4);
    auto in_order = epoch_indices(ordered, 3);
    REQUIRE(in_order == std::vector<int64_t>(identity.begin(), identity.begin() + 20));
}

TEST_CASE("loader batches with augmentation and mix-up depend only on seed, epoch and batch", "[loader]") {
    Dataset d = indexed_dataset(40, 5, 8, 8, 3);
    Rng rng(6);
    for (auto& v : d.images) v = static_cast<uint8_t>(rng.below(256));
    LoaderOptions opt{.batch_size = 16, .seed = 7, .random_crop = true, .horizontal_flip = true,
                      .rotation_degrees = 15.f, .mixup_alpha = 0.2f, .mean = {0.5f, 0.4f, 0.3f},
                      .std = {0.2f, 0.25f, 0.3f}};
    // An uninterrupted run over epochs 0..2 ...
    BatchLoader run(d, opt);
    std::vector<Batch> epoch2;
    for (int64_t e = 0; e < 3; ++e) {
        run.start_epoch(e);
        while (auto b = run.next())
            if (e == 2) epoch2.push_back(std::move(*b));
    }
    // ... and a resumed one starting at epoch 2, without the background thread.
    opt.background = false;
    BatchLoader resumed(d, opt);
    resumed.start_epoch(2);
    size_t k = 0;
    while (auto b = resumed.next()) {
        REQUIRE(k < epoch2.size());
        REQUIRE(bits_equal(b->images, epoch2[k].images));
        REQUIRE(bits_equal(b->targets, epoch2[k].targets));
        REQUIRE(b->labels == epoch2[k].labels);
        ++k;
    }
    REQUIRE(k == epoch2.size());
    for (const Batch& b : epoch2) {
        REQUIRE(b.targets.shape() == Shape{b.images.dim(0), 5});
        for (int64_t i = 0; i < b.images.dim(0); ++i) {
            float row = 0;
            for (int c = 0; c < 5; ++c) row += b.targets.at({i, c});
            REQUIRE(row == Approx(1.f));
        }
    }
    // Augmentation changes images between epochs (a different crop, flip, angle, lambda).
    REQUIRE_FALSE(bits_equal(run.make_batch(0, 0).images, run.make_batch(1, 0).images));
}

TEST_CASE("loader restarts epochs mid-way and shuts down cleanly", "[loader]") {
    Dataset d = indexed_dataset(50, 3);
    {
        BatchLoader loader(d, {.batch_size = 4, .seed = 1});
        loader.start_epoch(0);
        REQUIRE(loader.next().has_value());
        // Restart with another epoch before finishing: no stale batch of epoch 0 appears.
        auto expected = loader.epoch_order(5);
        REQUIRE(epoch_indices(loader, 5) == expected);
        loader.start_epoch(6);
        loader.next();
        // Destroyed here with the worker busy or waiting: the destructor must join it.
    }
    BatchLoader fresh(d, {.batch_size = 4});
    REQUIRE_THROWS_WITH(fresh.next(), Catch::Contains("start_epoch"));
    REQUIRE_THROWS_AS(BatchLoader(d, {.batch_size = 0}), Error);
    REQUIRE_THROWS_WITH(BatchLoader(d, {.mean = {0.5f}}), Catch::Contains("1 means for 2 channels"));
}

TEST_CASE("a failure on the loader's worker thread reaches the caller as bnn::Error", "[loader]") {
    Dataset d = indexed_dataset(10, 2);
    LoaderOptions opt{.batch_size = 3, .seed = 1};
    opt.transform = [](Batch& b) {
        if (b.index == 2) throw std::runtime_error("corrupt sample");
    };
    BatchLoader loader(d, opt);
    loader.start_epoch(0);
    REQUIRE(loader.next().has_value());
    REQUIRE(loader.next().has_value());
    REQUIRE_THROWS_WITH(loader.next(), Catch::Contains("corrupt sample") && Catch::Contains("batch 2 of epoch 0"));
    auto last = loader.next();  // the failure consumed batch 2; batch 3 is fine
    REQUIRE(last.has_value());
    REQUIRE(last->index == 3);
    REQUIRE_FALSE(loader.next().has_value());
}

TEST_CASE("loader handles grayscale images", "[loader]") {
    Dataset d = indexed_dataset(9, 3, 6, 6, 1);
    BatchLoader loader(d, {.batch_size = 4, .seed = 3, .random_crop = true, .horizontal_flip = true,
                           .rotation_degrees = 15.f, .mean = {0.5f}, .std = {0.5f}});
    loader.start_epoch(0);
    int64_t total = 0;
    while (auto b = loader.next()) {
        REQUIRE(b->images.dim(3) == 1);
        for (float v : b->images) REQUIRE((v >= -1.f && v <= 1.f));
        total += b->images.dim(0);
    }
    REQUIRE(total == 9);
}
