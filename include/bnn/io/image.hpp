#pragma once
/// @file image.hpp
/// Image files (PNG, JPEG, BMP, ... whatever stb_image reads) to Tensor<uint8_t> [H, W, C].
/// The stb implementations come from Debian's libstb (target bnn_stb), so only the declarations
/// are included here.
#include <stb/stb_image.h>
#include <stb/stb_image_resize.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "bnn/core/error.hpp"
#include "bnn/core/file.hpp"
#include "bnn/core/tensor.hpp"

namespace bnn::io {

namespace detail {
/// stb_image (2.27, Debian's) does not check that a binary PNM (P5 grey, P6 RGB) holds all the
/// pixels its header promises: a truncated file loads with made-up pixels. This refuses a PNM
/// file shorter than its pixels alone.
inline void check_pnm_length(const std::vector<uint8_t>& b, const std::string& path, int w, int h, int c) {
    if (b.size() < 2 || b[0] != 'P' || (b[1] != '5' && b[1] != '6')) return;
    const int sample_bytes = stbi_is_16_bit_from_memory(b.data(), static_cast<int>(b.size())) ? 2 : 1;
    const uint64_t pixel_bytes = static_cast<uint64_t>(w) * static_cast<uint64_t>(h) * static_cast<uint64_t>(c) *
                                 static_cast<uint64_t>(sample_bytes);
    BNN_CHECK(b.size() >= pixel_bytes, "load_image: '", path, "' is a PNM image of ", w, "x", h, " with ", c,
              " channels, ", pixel_bytes, " bytes of pixels, but the whole file has ", b.size(),
              " bytes: it is truncated");
}
/// stb_image 2.27 (Debian's) reads the numbers of a binary PNM header (width, height, maximum
/// value) into an int with no bound, so a number of ten digits overflows it (undefined
/// behaviour). This reads the header as stb does (whitespace, `#` comments to the end of the
/// line) and refuses a number of more than nine digits before stb sees the file.
inline void check_pnm_header(const std::vector<uint8_t>& b, const std::string& path) {
    if (b.size() < 2 || b[0] != 'P' || (b[1] != '5' && b[1] != '6')) return;
    auto space = [](uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'; };
    size_t p = 2;
    for (const char* field : {"width", "height", "maximum value"}) {
        for (;;) {
            while (p < b.size() && space(b[p])) ++p;
            if (p >= b.size() || b[p] != '#') break;
            while (p < b.size() && b[p] != '\n' && b[p] != '\r') ++p;
        }
        const size_t first = p;
        while (p < b.size() && b[p] >= '0' && b[p] <= '9') ++p;
        BNN_CHECK(p - first <= 9, "load_image: '", path, "' is a corrupt PNM image: its ", field, " has ", p - first,
                  " digits, more than 9");
    }
}
/// stb_image 2.27 (Debian's) trusts the code counts of a JPEG Huffman table: when the 16 counts
/// of a DHT segment sum past 256 it writes past the table's arrays (stb 2.28 checks this). This
/// finds the DHT segments stb reads and refuses such a table before stb sees the file: before
/// the first scan it walks the segments by their lengths, skipping stray bytes between them as
/// stb does; from the first scan on, where stb's own stopping point depends on the decoding, it
/// checks every FF C4 (inside entropy-coded data FF is only ever a stuffed FF 00, a restart or
/// a marker).
inline void check_jpeg_huffman_tables(const std::vector<uint8_t>& b, const std::string& path) {
    if (b.size() < 2 || b[0] != 0xFF || b[1] != 0xD8) return;  // not a JPEG
    auto byte = [&](size_t i) -> int { return i < b.size() ? b[i] : 0; };  // stb reads 0 past the end
    auto check_dht = [&](size_t marker) {  // at the FF of FF C4, as stb's DHT case reads it
        int64_t left = ((byte(marker + 2) << 8) | byte(marker + 3)) - 2;
        size_t p = marker + 4;
        while (left > 0 && p < b.size()) {
            int codes = 0;
            for (int i = 1; i <= 16; ++i) codes += byte(p + i);
            BNN_CHECK(codes <= 256, "load_image: '", path, "' is a corrupt JPEG: the Huffman table at byte offset ",
                      p, " lists ", codes, " codes, more than 256");
            p += 17 + static_cast<size_t>(codes);
            left -= 17 + codes;
        }
    };
    size_t p = 2;
    while (p < b.size()) {
        while (p < b.size() && b[p] != 0xFF) ++p;  // stray bytes between segments
        while (p + 1 < b.size() && b[p + 1] == 0xFF) ++p;  // fill bytes
        if (p + 1 >= b.size()) return;
        const int marker = b[p + 1];
        if (marker == 0xDA) break;  // start of scan
        if (marker == 0xC4) check_dht(p);
        const bool has_length = !(marker == 0x01 || (marker >= 0xD0 && marker <= 0xD9));
        p += 2 + (has_length ? static_cast<size_t>((byte(p + 2) << 8) | byte(p + 3)) : 0);
    }
    for (; p + 1 < b.size(); ++p)
        if (b[p] == 0xFF && b[p + 1] == 0xC4) check_dht(p);
}
}  // namespace detail

/// The most pixels load_image decodes: a header of a few bytes can declare an image of
/// gigabytes, so images are checked before decoding. The default is 8192 x 8192; a caller
/// expecting larger images raises it. (A type of its own, so it cannot be taken for a size.)
struct ImageLimit {
    int64_t max_pixels = int64_t{1} << 26;
};

/// Loads an image file as [H, W, channels] bytes; stb converts to the requested number of
/// channels (1 grey, 3 RGB, 4 RGBA). Unreadable files, and images of more pixels than the limit,
/// raise bnn::Error (with stb's reason where stb refuses).
inline Tensor<uint8_t> load_image(const std::string& path, int channels = 3, ImageLimit limit = {}) {
    BNN_CHECK(channels >= 1 && channels <= 4, "load_image: channels must be 1..4, got ", channels);
    const std::vector<uint8_t> bytes = read_file(path);
    detail::check_pnm_header(bytes, path);
    detail::check_jpeg_huffman_tables(bytes, path);
    BNN_CHECK(bytes.size() <= static_cast<size_t>(INT32_MAX), "load_image: '", path, "' has ", bytes.size(),
              " bytes, more than stb_image reads");
    int declared_w = 0, declared_h = 0, declared_c = 0;
    if (stbi_info_from_memory(bytes.data(), static_cast<int>(bytes.size()), &declared_w, &declared_h, &declared_c)) {
        BNN_CHECK(int64_t{declared_w} * declared_h <= limit.max_pixels, "load_image: '", path, "' declares ",
                  declared_w, "x", declared_h, " pixels, more than the limit of ", limit.max_pixels,
                  " (a larger image needs a larger io::ImageLimit)");
        detail::check_pnm_length(bytes, path, declared_w, declared_h, declared_c);
    }  // else stbi_load reports the header's fault
    int w = 0, h = 0, file_channels = 0;
    std::unique_ptr<stbi_uc, void (*)(void*)> pixels(
        stbi_load_from_memory(bytes.data(), static_cast<int>(bytes.size()), &w, &h, &file_channels, channels),
        stbi_image_free);
    if (!pixels) ::bnn::fail("load_image: cannot read '", path, "': ", stbi_failure_reason());
    Tensor<uint8_t> img = Tensor<uint8_t>::empty(Shape{h, w, channels});
    std::memcpy(img.data(), pixels.get(), static_cast<size_t>(img.numel()));
    return img;
}

/// Resizes an [H, W, C] image to [height, width, C] with stb_image_resize's default filter
/// (a Mitchell/Catmull-Rom family filter, which also averages properly when shrinking).
inline Tensor<uint8_t> resize_image(const Tensor<uint8_t>& image, int height, int width) {
    expect_rank(image, 3, "resize_image", "image");
    BNN_CHECK(height > 0 && width > 0, "resize_image: target size must be positive, got ", height, "x", width);
    const int h = static_cast<int>(image.dim(0)), w = static_cast<int>(image.dim(1)), c = static_cast<int>(image.dim(2));
    BNN_CHECK(h > 0 && w > 0 && c > 0, "resize_image: empty image of shape ", image.shape().str());
    if (h == height && w == width) return image.clone();
    Tensor<uint8_t> out = Tensor<uint8_t>::empty(Shape{height, width, c});
    const int ok = stbir_resize_uint8(image.data(), w, h, 0, out.data(), width, height, 0, c);
    BNN_CHECK(ok, "resize_image: stb_image_resize failed for ", image.shape().str(), " -> ", height, "x", width);
    return out;
}

/// Loads an image and resizes it to [height, width, channels] (a model's input size).
inline Tensor<uint8_t> load_image(const std::string& path, int height, int width, int channels = 3,
                                  ImageLimit limit = {}) {
    return resize_image(load_image(path, channels, limit), height, width);
}

}  // namespace bnn::io
