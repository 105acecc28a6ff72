#pragma once
/// @file cifar.hpp
/// Readers for the binary versions of CIFAR-10 and CIFAR-100.
///
/// CIFAR-100 (`cifar-100-binary/`): train.bin and test.bin, records of 3074 bytes:
///   [coarse label][fine label][1024 R][1024 G][1024 B], each plane a row-major 32x32 image;
///   class names in fine_label_names.txt / coarse_label_names.txt (one per line).
/// CIFAR-10 (`cifar-10-batches-bin/`): data_batch_1..5.bin and test_batch.bin, records of
///   3073 bytes: [label][1024 R][1024 G][1024 B]; class names in batches.meta.txt.
/// Images come out NHWC ([N, 32, 32, 3]). Bad files raise bnn::Error naming the file and byte
/// offset.
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "bnn/core/error.hpp"
#include "bnn/core/file.hpp"
#include "bnn/data/dataset.hpp"

namespace bnn::data {

/// Which CIFAR-100 labels to use: the 100 fine classes or the 20 coarse superclasses.
enum class CifarLabels { fine, coarse };

namespace detail {
inline constexpr int kCifarSide = 32;
inline constexpr int kCifarPixels = kCifarSide * kCifarSide;

/// Reads class names, one per non-empty line, from `path` if it exists; otherwise "0", "1", ...
/// A names file with the wrong number of names raises bnn::Error.
inline std::vector<std::string> read_class_names(const std::string& path, int num_classes) {
    std::vector<std::string> names;
    if (!file_exists(path)) {
        for (int i = 0; i < num_classes; ++i) names.push_back(std::to_string(i));
        return names;
    }
    std::ifstream in(path);
    BNN_CHECK(in, "read_class_names: cannot open '", path, "'");
    std::string line;
    while (std::getline(in, line)) {
        const auto b = line.find_first_not_of(" \t\r\n");
        if (b == std::string::npos) continue;
        const auto e = line.find_last_not_of(" \t\r\n");
        names.push_back(line.substr(b, e - b + 1));
    }
    BNN_CHECK(static_cast<int>(names.size()) == num_classes, "read_class_names: '", path, "' lists ", names.size(),
              " class names, expected ", num_classes);
    return names;
}

/// Appends the records of one CIFAR file: `label_byte` is the offset of the label used within
/// a record of `record_size` bytes whose last 3072 bytes are the R, G, B planes.
inline void append_cifar_records(const std::string& path, int record_size, int label_byte, int num_classes,
                                 std::vector<uint8_t>& pixels, std::vector<int32_t>& labels) {
    BNN_CHECK(std::filesystem::exists(path), "CIFAR reader: missing file '", path, "'");
    const std::vector<uint8_t> bytes = read_file(path);
    const uint64_t n = bytes.size() / record_size;
    BNN_CHECK(!bytes.empty(), "CIFAR reader: '", path, "' is empty");
    BNN_CHECK(bytes.size() % record_size == 0, "CIFAR reader: '", path, "' has ", bytes.size(),
              " bytes, not a multiple of the ", record_size, "-byte record: the record at byte offset ",
              n * record_size, " is truncated (", bytes.size() - n * record_size, " bytes)");
    const size_t first = labels.size();
    pixels.resize((first + n) * 3 * kCifarPixels);
    labels.resize(first + n);
    for (uint64_t r = 0; r < n; ++r) {
        const uint8_t* rec = bytes.data() + r * record_size;
        const int label = rec[label_byte];
        BNN_CHECK(label < num_classes, "CIFAR reader: '", path, "': label ", label, " at byte offset ",
                  r * record_size + label_byte, " (record ", r, ") is outside [0, ", num_classes, ")");
        labels[first + r] = label;
        // Planar CHW -> interleaved HWC, so channels are innermost.
        const uint8_t* planes = rec + record_size - 3 * kCifarPixels;
        uint8_t* dst = pixels.data() + (first + r) * 3 * kCifarPixels;
        for (int p = 0; p < kCifarPixels; ++p)
            for (int c = 0; c < 3; ++c) dst[p * 3 + c] = planes[c * kCifarPixels + p];
    }
}

inline Dataset make_cifar_dataset(std::vector<uint8_t>& pixels, std::vector<int32_t> labels, int num_classes,
                                  std::vector<std::string> names, std::string name) {
    Dataset d;
    const int64_t n = static_cast<int64_t>(labels.size());
    d.images = Tensor<uint8_t>::empty(Shape{n, kCifarSide, kCifarSide, 3});
    if (n) std::memcpy(d.images.data(), pixels.data(), pixels.size());
    d.labels = std::move(labels);
    d.num_classes = num_classes;
    d.class_names = std::move(names);
    d.name = std::move(name);
    return d;
}

inline void check_dir(const std::string& dir, const char* op) {
    BNN_CHECK(std::filesystem::is_directory(dir), op, ": '", dir, "' is not a directory");
}
}  // namespace detail

/// Reads CIFAR-100 (binary version) from `dir`: train.bin or test.bin.
inline Dataset load_cifar100(const std::string& dir, Split split, CifarLabels labels = CifarLabels::fine) {
    detail::check_dir(dir, "load_cifar100");
    namespace fs = std::filesystem;
    const bool fine = labels == CifarLabels::fine;
    const int classes = fine ? 100 : 20;
    const std::string file = (fs::path(dir) / (split == Split::train ? "train.bin" : "test.bin")).string();
    std::vector<uint8_t> pixels;
    std::vector<int32_t> lab;
    detail::append_cifar_records(file, 3074, fine ? 1 : 0, classes, pixels, lab);
    auto names = detail::read_class_names(
        (fs::path(dir) / (fine ? "fine_label_names.txt" : "coarse_label_names.txt")).string(), classes);
    return detail::make_cifar_dataset(pixels, std::move(lab), classes, std::move(names),
                                      std::string("CIFAR-100 ") + (split == Split::train ? "train" : "test") +
                                          (fine ? " (fine labels)" : " (coarse labels)"));
}

/// Reads CIFAR-10 (binary version) from `dir`: data_batch_1..5.bin or test_batch.bin.
inline Dataset load_cifar10(const std::string& dir, Split split) {
    detail::check_dir(dir, "load_cifar10");
    namespace fs = std::filesystem;
    std::vector<std::string> files;
    if (split == Split::train)
        for (int i = 1; i <= 5; ++i) files.push_back((fs::path(dir) / ("data_batch_" + std::to_string(i) + ".bin")).string());
    else
        files.push_back((fs::path(dir) / "test_batch.bin").string());
    std::vector<uint8_t> pixels;
    std::vector<int32_t> lab;
    for (const auto& f : files) detail::append_cifar_records(f, 3073, 0, 10, pixels, lab);
    auto names = detail::read_class_names((fs::path(dir) / "batches.meta.txt").string(), 10);
    return detail::make_cifar_dataset(pixels, std::move(lab), 10, std::move(names),
                                      std::string("CIFAR-10 ") + (split == Split::train ? "train" : "test"));
}

}  // namespace bnn::data
