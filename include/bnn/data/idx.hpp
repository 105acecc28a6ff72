#pragma once
/// @file idx.hpp
/// Readers for IDX files (MNIST, Fashion-MNIST), plain or gzip-compressed.
///
/// IDX layout: a 4-byte magic [0, 0, type, rank] (type 0x08 = unsigned byte), then `rank`
/// big-endian uint32 extents, then the data row-major. Image files have rank 3 [N, rows, cols],
/// label files rank 1 [N]. Errors name the file and the byte offset (in the decompressed stream
/// for .gz files).
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "bnn/core/error.hpp"
#include "bnn/core/file.hpp"
#include "bnn/data/dataset.hpp"

namespace bnn::data {

namespace detail {
/// Parses the IDX header of an unsigned-byte file of the given rank; returns the extents and
/// checks the data is exactly as long as they say.
inline std::vector<uint32_t> parse_idx_header(const std::vector<uint8_t>& bytes, int rank, const std::string& path) {
    const uint64_t header = 4 + 4 * static_cast<uint64_t>(rank);
    BNN_CHECK(bytes.size() >= 4, "IDX reader: '", path, "' is truncated: ", bytes.size(),
              " bytes, the 4-byte magic number at byte offset 0 is incomplete");
    BNN_CHECK(bytes[0] == 0 && bytes[1] == 0 && bytes[2] == 0x08 && bytes[3] == rank, "IDX reader: '", path,
              "': wrong magic number at byte offset 0: expected 00 00 08 0", rank, " (unsigned bytes, rank ", rank,
              "), got ", std::hex, int(bytes[0]), ' ', int(bytes[1]), ' ', int(bytes[2]), ' ', int(bytes[3]));
    BNN_CHECK(bytes.size() >= header, "IDX reader: '", path, "' is truncated in its header: ", bytes.size(),
              " bytes, the extents end at byte offset ", header);
    std::vector<uint32_t> dims(rank);
    uint64_t count = 1;
    for (int i = 0; i < rank; ++i) {
        const uint8_t* p = bytes.data() + 4 + 4 * i;
        dims[i] = (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
        // Three 32-bit extents can multiply past 64 bits and wrap to a count the file matches.
        BNN_CHECK(dims[i] == 0 || count <= bytes.size() / dims[i], "IDX reader: '", path, "': the extents at byte ",
                  "offset 4 describe more data than the file's ", bytes.size(), " bytes (extent ", i, " is ", dims[i], ")");
        count *= dims[i];
    }
    BNN_CHECK(bytes.size() >= header + count, "IDX reader: '", path, "' is truncated: the data from byte offset ",
              header, " should be ", count, " bytes but the file ends at byte offset ", bytes.size());
    BNN_CHECK(bytes.size() == header + count, "IDX reader: '", path, "' has ", bytes.size() - header - count,
              " unexpected bytes after the data, from byte offset ", header + count);
    return dims;
}
}  // namespace detail

/// Reads an IDX image file (plain or .gz) as [N, rows, cols, 1].
inline Tensor<uint8_t> read_idx_images(const std::string& path) {
    BNN_CHECK(file_exists(path), "read_idx_images: missing file '", path, "'");
    const std::vector<uint8_t> bytes = read_file_maybe_gzip(path);
    const auto dims = detail::parse_idx_header(bytes, 3, path);
    Tensor<uint8_t> images = Tensor<uint8_t>::empty(Shape{dims[0], dims[1], dims[2], 1});
    if (images.numel()) std::memcpy(images.data(), bytes.data() + 16, static_cast<size_t>(images.numel()));
    return images;
}

/// Reads an IDX label file (plain or .gz); every label must lie in [0, num_classes).
inline std::vector<int32_t> read_idx_labels(const std::string& path, int num_classes) {
    BNN_CHECK(file_exists(path), "read_idx_labels: missing file '", path, "'");
    const std::vector<uint8_t> bytes = read_file_maybe_gzip(path);
    const auto dims = detail::parse_idx_header(bytes, 1, path);
    std::vector<int32_t> labels(dims[0]);
    for (uint32_t i = 0; i < dims[0]; ++i) {
        const int label = bytes[8 + i];
        BNN_CHECK(label < num_classes, "read_idx_labels: '", path, "': label ", label, " at byte offset ", 8 + i,
                  " is outside [0, ", num_classes, ")");
        labels[i] = label;
    }
    return labels;
}

/// Reads a pair of IDX files into a Dataset; the counts must agree.
inline Dataset load_idx(const std::string& images_path, const std::string& labels_path, int num_classes,
                        std::vector<std::string> class_names, std::string name) {
    Dataset d;
    d.images = read_idx_images(images_path);
    d.labels = read_idx_labels(labels_path, num_classes);
    BNN_CHECK(d.images.dim(0) == d.size(), "load_idx: '", images_path, "' holds ", d.images.dim(0), " images but '",
              labels_path, "' holds ", d.size(), " labels");
    d.num_classes = num_classes;
    d.class_names = std::move(class_names);
    d.name = std::move(name);
    return d;
}

namespace detail {
/// `dir/stem` or `dir/stem.gz`, whichever exists (the plain file first).
inline std::string idx_file(const std::string& dir, const std::string& stem) {
    const auto plain = std::filesystem::path(dir) / stem;
    if (file_exists(plain.string())) return plain.string();
    const std::string gz = plain.string() + ".gz";
    BNN_CHECK(file_exists(gz), "IDX reader: missing file '", plain.string(), "' (or '", gz, "')");
    return gz;
}

inline Dataset load_mnist_layout(const std::string& dir, Split split, std::vector<std::string> names,
                                 const std::string& name) {
    BNN_CHECK(std::filesystem::is_directory(dir), "load ", name, ": '", dir, "' is not a directory");
    const std::string prefix = split == Split::train ? "train" : "t10k";
    return load_idx(idx_file(dir, prefix + "-images-idx3-ubyte"), idx_file(dir, prefix + "-labels-idx1-ubyte"), 10,
                    std::move(names), name + (split == Split::train ? " train" : " test"));
}
}  // namespace detail

/// MNIST from `dir` (train-images-idx3-ubyte[.gz], t10k-..., as distributed).
inline Dataset load_mnist(const std::string& dir, Split split) {
    return detail::load_mnist_layout(dir, split, {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}, "MNIST");
}

/// Fashion-MNIST from `dir` (same file names as MNIST; Debian installs it in
/// /usr/share/datasets/fashion-mnist).
inline Dataset load_fashion_mnist(const std::string& dir, Split split) {
    return detail::load_mnist_layout(dir, split,
                                     {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                                      "Sneaker", "Bag", "Ankle boot"},
                                     "Fashion-MNIST");
}

}  // namespace bnn::data
