#pragma once
// Which data set the trainer uses, and loading it: CIFAR-100 when it can find it, else
// Fashion-MNIST from the Debian package, saying which and why.
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "bnn/core/error.hpp"
#include "bnn/core/rng.hpp"
#include "bnn/data/cifar.hpp"
#include "bnn/data/idx.hpp"

namespace trainer {

namespace fs = std::filesystem;

inline constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";

struct DataSource {
    std::string format;  ///< "cifar100", "cifar10" or "fashion-mnist"
    std::string dir;
    std::string reason;  ///< how it was chosen, for the log
};

/// The format of the files in `dir`, or "" when none is recognised.
inline std::string detect_format(const std::string& dir) {
    auto has = [&](const char* f) { return fs::exists(fs::path(dir) / f); };
    if (has("train.bin") && has("test.bin")) return "cifar100";
    if (has("data_batch_1.bin") && has("test_batch.bin")) return "cifar10";
    if (has("train-images-idx3-ubyte.gz") || has("train-images-idx3-ubyte")) return "fashion-mnist";
    return "";
}

/// Chooses the data: `--data DIR`, else $BNN_DATA, else data/cifar-100-binary/, else the
/// Fashion-MNIST package. `format` "auto" detects from the files; bnn::Error when nothing fits.
inline DataSource find_data(const std::string& cli_dir, const std::string& format) {
    auto from = [&](const std::string& dir, const std::string& why) {
        BNN_CHECK(fs::is_directory(dir), "trainer: data directory '", dir, "' (", why, ") does not exist");
        std::string f = format == "auto" ? detect_format(dir) : format;
        BNN_CHECK(!f.empty(), "trainer: no data set recognised in '", dir, "' (", why,
                  "): expected CIFAR-100 (train.bin, test.bin), CIFAR-10 (data_batch_1.bin ... test_batch.bin) or ",
                  "IDX files (train-images-idx3-ubyte[.gz] ...)");
        BNN_CHECK(f == "cifar100" || f == "cifar10" || f == "fashion-mnist", "trainer: unknown --format '", f,
                  "', expected auto, cifar100, cifar10 or fashion-mnist");
        return DataSource{f, dir, why};
    };
    if (!cli_dir.empty()) return from(cli_dir, "--data");
    if (const char* env = std::getenv("BNN_DATA"); env && *env) return from(env, "$BNN_DATA");
    if (fs::is_directory("data/cifar-100-binary")) return from("data/cifar-100-binary", "found in ./data");
    BNN_CHECK(fs::is_directory(kFashionMnistDir), "trainer: no data set found: pass --data DIR (CIFAR-100 binary ",
              "version), set BNN_DATA, or install the Debian package dataset-fashion-mnist");
    return from(kFashionMnistDir, "fallback: no CIFAR-100 found");
}

/// Pads every image with zeros to at least `size` x `size`, centred. Fashion-MNIST's 28x28 becomes
/// 32x32, so ResNet-18's spatial sizes stay even down to the last stage (32, 16, 8, 4), as its
/// average-pool shortcuts need.
inline bnn::data::Dataset pad_to(bnn::data::Dataset d, int64_t size) {
    const int64_t N = d.size(), H = d.height(), W = d.width(), C = d.channels();
    if (H >= size && W >= size) return d;
    const int64_t top = (size - H) / 2, left = (size - W) / 2;
    bnn::Tensor<uint8_t> out(bnn::Shape{N, size, size, C});
    for (int64_t n = 0; n < N; ++n)
        for (int64_t y = 0; y < H; ++y) {
            const uint8_t* src = d.images.data() + ((n * H + y) * W) * C;
            std::copy_n(src, W * C, out.data() + ((n * size + y + top) * size + left) * C);
        }
    d.images = out;
    return d;
}

/// A seeded random subset of `n` samples (n <= 0 keeps all), for quick runs and tests. Random,
/// not the first n: the CIFAR-100 copy here is ordered by class.
inline bnn::data::Dataset subset(bnn::data::Dataset d, int64_t n, uint64_t seed) {
    if (n <= 0 || n >= d.size()) return d;
    std::vector<int64_t> idx(static_cast<size_t>(d.size()));
    for (size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<int64_t>(i);
    bnn::Rng rng(seed);
    rng.shuffle(idx.begin(), idx.end());
    idx.resize(static_cast<size_t>(n));
    std::sort(idx.begin(), idx.end());
    const int64_t per_image = d.images.numel() / d.size();
    bnn::Tensor<uint8_t> images(bnn::Shape{n, d.height(), d.width(), d.channels()});
    std::vector<int32_t> labels(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
        std::copy_n(d.images.data() + idx[i] * per_image, per_image, images.data() + i * per_image);
        labels[i] = d.labels[idx[i]];
    }
    d.images = images;
    d.labels = std::move(labels);
    return d;
}

struct DataSplits {
    bnn::data::Dataset train, test;
};

/// Loads both splits of `src`, padded to 32x32.
inline DataSplits load_data(const DataSource& src) {
    using bnn::data::Split;
    DataSplits s;
    if (src.format == "cifar100") {
        s.train = bnn::data::load_cifar100(src.dir, Split::train);
        s.test = bnn::data::load_cifar100(src.dir, Split::test);
    } else if (src.format == "cifar10") {
        s.train = bnn::data::load_cifar10(src.dir, Split::train);
        s.test = bnn::data::load_cifar10(src.dir, Split::test);
    } else {
        s.train = pad_to(bnn::data::load_fashion_mnist(src.dir, Split::train), 32);
        s.test = pad_to(bnn::data::load_fashion_mnist(src.dir, Split::test), 32);
    }
    return s;
}

}  // namespace trainer
