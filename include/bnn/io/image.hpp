#pragma once
/// @file image.hpp
/// Image files (PNG, JPEG, BMP, ... whatever stb_image reads) to Tensor<uint8_t> [H, W, C].
/// The stb implementations come from Debian's libstb (target bnn_stb), so only the declarations
/// are included here.
#include <stb/stb_image.h>
#include <stb/stb_image_resize.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>

#include "bnn/core/error.hpp"
#include "bnn/core/tensor.hpp"

namespace bnn::io {

namespace detail {
/// stb_image (2.27, Debian's) does not check that a binary PNM (P5 grey, P6 RGB) holds all the
/// pixels its header promises: a truncated file loads with made-up pixels. This refuses a PNM
/// file shorter than its pixels alone.
inline void check_pnm_length(const std::string& path) {
    char magic[2] = {0, 0};
    if (std::FILE* f = std::fopen(path.c_str(), "rb")) {
        const size_t got = std::fread(magic, 1, 2, f);
        std::fclose(f);
        if (got != 2) return;
    }
    if (magic[0] != 'P' || (magic[1] != '5' && magic[1] != '6')) return;
    int w = 0, h = 0, c = 0;
    if (!stbi_info(path.c_str(), &w, &h, &c)) return;  // stbi_load reports the header's fault
    const uint64_t pixel_bytes = static_cast<uint64_t>(w) * static_cast<uint64_t>(h) * static_cast<uint64_t>(c) *
                                 (stbi_is_16_bit(path.c_str()) ? 2u : 1u);
    std::error_code ec;
    const uint64_t size = std::filesystem::file_size(path, ec);
    BNN_CHECK(ec || size >= pixel_bytes, "load_image: '", path, "' is a PNM image of ", w, "x", h, " with ", c,
              " channels, ", pixel_bytes, " bytes of pixels, but the whole file has ", size, " bytes: it is truncated");
}
}  // namespace detail

/// Loads an image file as [H, W, channels] bytes; stb converts to the requested number of
/// channels (1 grey, 3 RGB, 4 RGBA). Unreadable files raise bnn::Error with stb's reason.
inline Tensor<uint8_t> load_image(const std::string& path, int channels = 3) {
    BNN_CHECK(channels >= 1 && channels <= 4, "load_image: channels must be 1..4, got ", channels);
    detail::check_pnm_length(path);
    int w = 0, h = 0, file_channels = 0;
    std::unique_ptr<stbi_uc, void (*)(void*)> pixels(stbi_load(path.c_str(), &w, &h, &file_channels, channels),
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
inline Tensor<uint8_t> load_image(const std::string& path, int height, int width, int channels = 3) {
    return resize_image(load_image(path, channels), height, width);
}

}  // namespace bnn::io
