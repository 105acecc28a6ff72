#pragma once
/// @file file.hpp
/// Whole-file reading, plain or gzip, for the data readers (data/) and the checkpoint reader
/// (io/). Every failure raises bnn::Error naming the file and the reason.
#include <zlib.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include "bnn/core/error.hpp"

namespace bnn {

/// True when `path` names an existing regular file.
inline bool file_exists(const std::string& path) {
    std::error_code ec;
    return std::filesystem::is_regular_file(path, ec);
}

/// Reads a whole file into memory. Missing or unreadable files raise bnn::Error.
inline std::vector<uint8_t> read_file(const std::string& path) {
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) ::bnn::fail("read_file: cannot open '", path, "': ", std::strerror(errno));
    std::vector<uint8_t> bytes;
    // Sized once where the size is known: growing by doubling would hold up to 3x the file at once.
    std::error_code size_error;
    const auto size = std::filesystem::file_size(path, size_error);
    if (!size_error) bytes.reserve(size);
    uint8_t chunk[1 << 16];
    size_t n;
    errno = 0;
    while ((n = std::fread(chunk, 1, sizeof chunk, f)) > 0) bytes.insert(bytes.end(), chunk, chunk + n);
    const bool failed = std::ferror(f);
    const int error = errno;  // the reason ("Is a directory"), before fclose can change it
    std::fclose(f);
    BNN_CHECK(!failed, "read_file: error while reading '", path, "'", error ? ": " : "", error ? std::strerror(error) : "");
    return bytes;
}

/// True when the bytes start with the gzip magic number (1f 8b).
inline bool is_gzip(const std::vector<uint8_t>& bytes) {
    return bytes.size() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b;
}

/// Decompresses a gzip stream held in memory; `path` only names it in errors. A truncated or
/// corrupt stream raises bnn::Error (zlib's reason and the compressed byte offset reached).
inline std::vector<uint8_t> gunzip(const std::vector<uint8_t>& compressed, const std::string& path) {
    z_stream zs{};
    // 16 + MAX_WBITS: expect a gzip header and trailer, not a raw zlib stream.
    BNN_CHECK(inflateInit2(&zs, 16 + MAX_WBITS) == Z_OK, "gunzip: cannot initialise zlib for '", path, "'");
    // zlib's state is freed on every way out, an error thrown mid-stream included.
    struct InflateEnd {
        z_stream* zs;
        ~InflateEnd() { inflateEnd(zs); }
    } end_inflate{&zs};
    std::vector<uint8_t> out;
    zs.next_in = const_cast<Bytef*>(compressed.data());
    zs.avail_in = static_cast<uInt>(compressed.size());
    uint8_t chunk[1 << 16];
    int rc = Z_OK;
    for (;;) {
        zs.next_out = chunk;
        zs.avail_out = sizeof chunk;
        rc = inflate(&zs, Z_NO_FLUSH);
        out.insert(out.end(), chunk, chunk + (sizeof chunk - zs.avail_out));
        // A gzip file may hold several members back to back (as `cat a.gz b.gz` makes).
        if (rc == Z_STREAM_END && zs.avail_in > 0) {
            BNN_CHECK(zs.avail_in >= 2 && zs.next_in[0] == 0x1f && zs.next_in[1] == 0x8b, "gunzip: '", path,
                      "' has ", zs.avail_in, " bytes of trailing garbage at compressed byte offset ",
                      compressed.size() - zs.avail_in);
            inflateReset(&zs);
            rc = Z_OK;
            continue;
        }
        if (rc != Z_OK) break;
    }
    const uint64_t consumed = compressed.size() - zs.avail_in;
    const char* msg = zs.msg;
    // Z_BUF_ERROR with all input consumed means the stream ended before its trailer.
    if (rc != Z_STREAM_END) {
        ::bnn::fail("gunzip: '", path, "' is not a complete gzip stream (",
                            rc == Z_BUF_ERROR ? "truncated" : (msg ? msg : "corrupt data"),
                            " at compressed byte offset ", consumed, " of ", compressed.size(), ")");
    }
    return out;
}

/// Reads a file and transparently decompresses it when it is gzip.
inline std::vector<uint8_t> read_file_maybe_gzip(const std::string& path) {
    std::vector<uint8_t> bytes = read_file(path);
    return is_gzip(bytes) ? gunzip(bytes, path) : bytes;
}

}  // namespace bnn
