// Fuzzes the image loader behind classify: io::load_image(path, size, size, channels), stb_image
// decoding then stb_image_resize. The stb implementations are compiled into this target (they
// take precedence over the shared libstb) so the fuzzer sees their branches and the sanitizers
// their memory accesses. Input: [selector][image file bytes]; the selector picks the channels
// (1..4) and the model's input side (1..64). bnn::Error is the only acceptable failure.
// The pixel limit is 2^16, not the default 2^26: a header of a few bytes that declares an image
// of 2^26 pixels (a run-length TGA, say) takes tens of seconds to decode under the sanitizers,
// which held the target at a few executions a second; the decoders' branches are the same.
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_RESIZE_IMPLEMENTATION
#include "bnn/io/image.hpp"

#include <cstddef>
#include <cstdint>

#include "scratch_file.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    const int channels = 1 + (data[0] & 3);
    const int side = 1 + (data[0] >> 2);
    const std::string path = bnn::fuzz::write_scratch("image", data + 1, size - 1);
    try {
        const bnn::Tensor<uint8_t> img = bnn::io::load_image(path, side, side, channels, bnn::io::ImageLimit{1 << 16});
        if (img.dim(0) != side || img.dim(1) != side || img.dim(2) != channels) __builtin_trap();
    } catch (const bnn::Error&) {
    }
    return 0;
}
