// Fuzzes the IDX readers (data::read_idx_images / read_idx_labels), plain and gzip. Input:
// [selector][file bytes]. Selector bit 0: images or labels; bit 1: the bytes are gzip-compressed
// by the harness first, so the IDX parser behind the .gz path sees structured data too (inputs
// that are themselves gzip streams reach the decompressor directly). bnn::Error is the only
// acceptable failure.
#include <zlib.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "bnn/data/idx.hpp"
#include "scratch_file.hpp"

namespace {

std::vector<uint8_t> gzip(const uint8_t* data, size_t size) {
    z_stream zs{};
    // 16 + MAX_WBITS: write a gzip header and trailer.
    if (deflateInit2(&zs, Z_BEST_SPEED, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) __builtin_trap();
    std::vector<uint8_t> out(deflateBound(&zs, static_cast<uLong>(size)));
    zs.next_in = const_cast<Bytef*>(data);
    zs.avail_in = static_cast<uInt>(size);
    zs.next_out = out.data();
    zs.avail_out = static_cast<uInt>(out.size());
    if (deflate(&zs, Z_FINISH) != Z_STREAM_END) __builtin_trap();
    out.resize(zs.total_out);
    deflateEnd(&zs);
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    const bool labels = data[0] & 1, compress = data[0] & 2;
    std::string path;
    if (compress) {
        const std::vector<uint8_t> gz = gzip(data + 1, size - 1);
        path = bnn::fuzz::write_scratch("idx.gz", gz.data(), gz.size());
    } else {
        path = bnn::fuzz::write_scratch("idx", data + 1, size - 1);
    }
    try {
        if (labels) {
            for (int32_t l : bnn::data::read_idx_labels(path, 10))
                if (l < 0 || l >= 10) __builtin_trap();
        } else {
            const bnn::Tensor<uint8_t> images = bnn::data::read_idx_images(path);
            if (images.rank() != 4 || images.dim(3) != 1) __builtin_trap();
        }
    } catch (const bnn::Error&) {
    }
    return 0;
}
