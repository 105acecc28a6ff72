#pragma once
/// @file image.hpp
/// Image files (PNG, JPEG, BMP, ... whatever stb_image reads) to Tensor<uint8_t> [H, W, C].
/// The stb implementations come from Debian's libstb (target bnn_stb), so only the declarations
/// are included here. Binary PNM files bnn decodes itself (detail::decode_pnm says why).
#include <stb/stb_image.h>
#include <stb/stb_image_resize.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "bnn/core/error.hpp"
#include "bnn/core/file.hpp"
#include "bnn/core/tensor.hpp"

namespace bnn::io {

namespace detail {
/// Converts 8-bit pixels of `from` channels to `to` channels as stb_image does (grey from RGB
/// by the weights 77, 150, 29 of 256; an added alpha is opaque).
inline void convert_channels(const uint8_t* src, int from, uint8_t* dst, int to, int64_t pixels) {
    const bool colour = from >= 3, src_alpha = from == 2 || from == 4, dst_alpha = to == 2 || to == 4;
    for (int64_t i = 0; i < pixels; ++i, src += from, dst += to) {
        if (to <= 2) dst[0] = colour ? static_cast<uint8_t>((src[0] * 77 + src[1] * 150 + src[2] * 29) >> 8) : src[0];
        else for (int c = 0; c < 3; ++c) dst[c] = colour ? src[c] : src[0];
        if (dst_alpha) dst[to - 1] = src_alpha ? src[from - 1] : 255;
    }
}

inline void check_pixel_limit(const std::string& path, int64_t width, int64_t height, int64_t max_pixels) {
    BNN_CHECK(width * height <= max_pixels, "load_image: '", path, "' declares ", width, "x", height,
              " pixels, more than the limit of ", max_pixels, " (a larger image needs a larger io::ImageLimit)");
}

inline bool is_binary_pnm(const std::vector<uint8_t>& b) {
    return b.size() >= 2 && b[0] == 'P' && (b[1] == '5' || b[1] == '6');
}

/// Decodes a binary PNM file (P5 grey, P6 RGB) to `channels` channels. bnn reads these itself:
/// stb_image 2.27 (Debian's) reads 2-byte samples (maximum value above 255) in the wrong byte
/// order and, when it converts their channels, past its buffer; it does not scale samples by
/// the maximum value; it loads a file shorter than its pixels with made-up ones; and it reads
/// the header's numbers into an int with no bound. The header is read as the format says:
/// whitespace and `#` comments to the end of the line before each of the three numbers, and
/// exactly one whitespace byte after the maximum value, then the pixels, samples big-endian.
inline std::vector<uint8_t> decode_pnm(const std::vector<uint8_t>& b, const std::string& path, int channels,
                                       int64_t max_pixels, int64_t& width, int64_t& height) {
    auto space = [](uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'; };
    const int file_channels = b[1] == '6' ? 3 : 1;
    int64_t max_value = 0;
    size_t p = 2;
    for (auto [field, value] : {std::pair{"width", &width}, {"height", &height}, {"maximum value", &max_value}}) {
        for (;;) {
            while (p < b.size() && space(b[p])) ++p;
            if (p >= b.size() || b[p] != '#') break;
            while (p < b.size() && b[p] != '\n' && b[p] != '\r') ++p;
        }
        const size_t first = p;
        while (p < b.size() && b[p] >= '0' && b[p] <= '9') ++p;
        BNN_CHECK(p > first, "load_image: '", path, "' is a corrupt PNM image: its ", field, " is missing");
        BNN_CHECK(p - first <= 9, "load_image: '", path, "' is a corrupt PNM image: its ", field, " has ", p - first,
                  " digits, more than 9");
        *value = 0;
        for (size_t i = first; i < p; ++i) *value = *value * 10 + (b[i] - '0');
    }
    BNN_CHECK(width > 0 && height > 0 && max_value > 0 && max_value <= 65535, "load_image: '", path,
              "' is a corrupt PNM image: it declares ", width, "x", height,
              " pixels of maximum value ", max_value, ", expected positive sizes and a maximum value of 1 to 65535");
    BNN_CHECK(p < b.size() && space(b[p]), "load_image: '", path,
              "' is a corrupt PNM image: no whitespace byte between its header and its pixels");
    check_pixel_limit(path, width, height, max_pixels);
    const int sample_bytes = max_value > 255 ? 2 : 1;
    const uint64_t samples = static_cast<uint64_t>(width * height) * file_channels;
    const uint64_t present = b.size() - (p + 1);
    BNN_CHECK(present >= samples * sample_bytes, "load_image: '", path, "' is a PNM image of ", width, "x", height,
              " with ", file_channels, " channel", file_channels == 1 ? "" : "s", " of ", 8 * sample_bytes, " bits, ",
              samples * sample_bytes, " bytes of pixels, but holds ", present, " after its header: it is truncated");
    std::vector<uint8_t> file_pixels(samples);
    const uint8_t* src = b.data() + p + 1;
    for (uint64_t i = 0; i < samples; ++i) {
        const int64_t v = sample_bytes == 2 ? (int64_t{src[2 * i]} << 8) | src[2 * i + 1] : src[i];
        file_pixels[i] = static_cast<uint8_t>(std::min<int64_t>(255, (v * 255 + max_value / 2) / max_value));
    }
    std::vector<uint8_t> out(static_cast<size_t>(width * height * channels));
    convert_channels(file_pixels.data(), file_channels, out.data(), channels, width * height);
    return out;
}

/// A PNG file as stb_image 2.27 (Debian's) may be given it. stb allocates an IDAT chunk's
/// declared length before it reads the data, so a file of a few hundred bytes whose chunk claims
/// 2 GB makes it allocate 2 GB: such a chunk, whose data runs past the end of the file, is
/// refused here. And stb hands memcpy a null pointer for a first IDAT chunk of length 0
/// (undefined behaviour, though nothing is copied): empty IDAT chunks, which hold nothing, are
/// dropped. Chunks after IEND, which stb never reads, are left alone. Other files are returned
/// as they are.
inline std::vector<uint8_t> png_for_stb(std::vector<uint8_t> b, const std::string& path) {
    static constexpr uint8_t signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    if (b.size() < 8 || std::memcmp(b.data(), signature, 8) != 0) return b;
    std::vector<uint8_t> kept;
    size_t p = 8, copied = 0;  // bytes before `copied` are in `kept` (once a chunk was dropped)
    while (p + 8 <= b.size()) {  // length (4 bytes, big-endian), type (4), data, CRC (4)
        const uint64_t length = (uint64_t{b[p]} << 24) | (uint64_t{b[p + 1]} << 16) | (uint64_t{b[p + 2]} << 8) | b[p + 3];
        if (std::memcmp(&b[p + 4], "IEND", 4) == 0) break;
        if (std::memcmp(&b[p + 4], "IDAT", 4) == 0) {
            BNN_CHECK(length <= b.size() - (p + 8), "load_image: '", path, "' is a corrupt PNG: its IDAT chunk at byte ",
                      p, " declares ", length, " bytes of data, but the file has ", b.size() - (p + 8), " after it");
            if (length == 0) {
                kept.insert(kept.end(), b.begin() + static_cast<std::ptrdiff_t>(copied),
                            b.begin() + static_cast<std::ptrdiff_t>(p));
                copied = p = std::min(p + 12, b.size());
                continue;
            }
        }
        if (length > b.size() - (p + 8)) break;  // stb skips or refuses what runs past the end
        p += 12 + length;
    }
    if (copied == 0) return b;
    kept.insert(kept.end(), b.begin() + static_cast<std::ptrdiff_t>(copied), b.end());
    return kept;
}

/// stb_image 2.27 (Debian's) trusts the code counts of a JPEG Huffman table: when the 16 counts
/// of a DHT segment sum past 256 it writes past the table's arrays (stb 2.28 checks this). This
/// finds the DHT segments stb reads and refuses such a table before stb sees the file: before
/// the first scan it walks the segments by their lengths, skipping stray bytes between them as
/// stb does; from the first scan on, where stb's own stopping point depends on the decoding, it
/// checks every FF C4 (inside entropy-coded data FF is only ever a stuffed FF 00, a restart or
/// a marker).
inline void check_jpeg_huffman_tables(const std::vector<uint8_t>& b, const std::string& path) {
    size_t soi = 0;  // stb takes any number of FF before the D8 of the start-of-image marker
    while (soi < b.size() && b[soi] == 0xFF) ++soi;
    if (soi == 0 || soi >= b.size() || b[soi] != 0xD8) return;  // not a JPEG
    auto byte = [&](size_t i) -> int { return i < b.size() ? b[i] : 0; };  // stb reads 0 past the end
    bool defined[2][4] = {};  // [DC, AC][table id]: defined by a DHT segment so far
    bool progressive = false;
    auto check_dht = [&](size_t marker) {  // at the FF of FF C4, as stb's DHT case reads it
        int64_t left = ((byte(marker + 2) << 8) | byte(marker + 3)) - 2;
        size_t p = marker + 4;
        while (left > 0 && p < b.size()) {
            int codes = 0;
            for (int i = 1; i <= 16; ++i) codes += byte(p + i);
            BNN_CHECK(codes <= 256, "load_image: '", path, "' is a corrupt JPEG: the Huffman table at byte offset ",
                      p, " lists ", codes, " codes, more than 256");
            if (byte(p) >> 4 <= 1 && (byte(p) & 15) <= 3) defined[byte(p) >> 4][byte(p) & 15] = true;
            p += 17 + static_cast<size_t>(codes);
            left -= 17 + codes;
        }
    };
    // stb 2.27 decodes a scan with whatever its uninitialised memory holds for a Huffman table no
    // DHT segment defined (reads far out of bounds): a scan must use defined tables only. A
    // progressive scan uses the DC table (first DC scans) or the AC table (AC scans), not both.
    auto check_sos = [&](size_t marker) {
        const int components = byte(marker + 4);
        const size_t spectral = marker + 5 + 2 * static_cast<size_t>(components);
        const bool dc_scan = byte(spectral) == 0, first_pass = byte(spectral + 2) >> 4 == 0;
        for (int i = 0; i < components; ++i) {
            const int tables = byte(marker + 6 + 2 * static_cast<size_t>(i)), dc = tables >> 4, ac = tables & 15;
            if (dc > 3 || ac > 3) continue;  // stb refuses these itself
            const bool needs_dc = progressive ? dc_scan && first_pass : true, needs_ac = progressive ? !dc_scan : true;
            BNN_CHECK((!needs_dc || defined[0][dc]) && (!needs_ac || defined[1][ac]), "load_image: '", path,
                      "' is a corrupt JPEG: its scan at byte offset ", marker, " uses ",
                      needs_dc && !defined[0][dc] ? "the DC" : "the AC", " Huffman table ",
                      needs_dc && !defined[0][dc] ? dc : ac, ", which no DHT segment before it defines");
        }
    };
    size_t p = soi + 1;
    while (p < b.size()) {
        while (p < b.size() && b[p] != 0xFF) ++p;  // stray bytes between segments
        while (p + 1 < b.size() && b[p + 1] == 0xFF) ++p;  // fill bytes
        if (p + 1 >= b.size()) return;
        const int marker = b[p + 1];
        if (marker == 0xC2) progressive = true;
        if (marker == 0xDA) break;  // start of scan
        if (marker == 0xC4) check_dht(p);
        const bool has_length = !(marker == 0x01 || (marker >= 0xD0 && marker <= 0xD9));
        p += 2 + (has_length ? static_cast<size_t>((byte(p + 2) << 8) | byte(p + 3)) : 0);
    }
    // From the first scan on, stb's stopping point depends on the decoding: every FF C4 and FF DA
    // (inside entropy-coded data FF is only ever a stuffed FF 00, a restart or a marker).
    for (; p + 1 < b.size(); ++p) {
        if (b[p] == 0xFF && b[p + 1] == 0xC4) check_dht(p);
        if (b[p] == 0xFF && b[p + 1] == 0xDA) check_sos(p);
    }
}
}  // namespace detail

/// The most pixels load_image decodes: a header of a few bytes can declare an image of
/// gigabytes, so images are checked before decoding. The default is 8192 x 8192; a caller
/// expecting larger images raises it. (A type of its own, so it cannot be taken for a size.)
struct ImageLimit {
    int64_t max_pixels = int64_t{1} << 26;
};

/// Loads an image file as [H, W, channels] bytes, converted to the requested number of channels
/// (1 grey, 2 grey + alpha, 3 RGB, 4 RGBA). Unreadable files, and images of more pixels than the
/// limit, raise bnn::Error (with stb's reason where stb refuses).
inline Tensor<uint8_t> load_image(const std::string& path, int channels = 3, ImageLimit limit = {}) {
    BNN_CHECK(channels >= 1 && channels <= 4, "load_image: channels must be 1..4, got ", channels);
    const std::vector<uint8_t> bytes = detail::png_for_stb(read_file(path), path);
    if (detail::is_binary_pnm(bytes)) {
        int64_t w = 0, h = 0;
        std::vector<uint8_t> pixels = detail::decode_pnm(bytes, path, channels, limit.max_pixels, w, h);
        Tensor<uint8_t> img = Tensor<uint8_t>::empty(Shape{h, w, channels});
        std::memcpy(img.data(), pixels.data(), pixels.size());
        return img;
    }
    detail::check_jpeg_huffman_tables(bytes, path);
    BNN_CHECK(bytes.size() <= static_cast<size_t>(INT32_MAX), "load_image: '", path, "' has ", bytes.size(),
              " bytes, more than stb_image reads");
    int declared_w = 0, declared_h = 0, declared_c = 0;
    if (stbi_info_from_memory(bytes.data(), static_cast<int>(bytes.size()), &declared_w, &declared_h, &declared_c))
        detail::check_pixel_limit(path, declared_w, declared_h, limit.max_pixels);
    // else stbi_load reports the header's fault
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
