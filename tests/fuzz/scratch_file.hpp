#pragma once
// The readers under test take paths, so a fuzz input is written to a file first: one directory
// per process (parallel fuzzing jobs do not collide), removed when the process exits.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace bnn::fuzz {

inline const std::filesystem::path& scratch_dir() {
    static const std::filesystem::path dir = [] {
        auto d = std::filesystem::temp_directory_path() / ("bnn_fuzz_" + std::to_string(::getpid()));
        std::filesystem::create_directories(d);
        std::atexit([] {
            std::error_code ec;
            std::filesystem::remove_all(scratch_dir(), ec);
        });
        return d;
    }();
    return dir;
}

/// Writes `size` bytes to `name` in the scratch directory and returns its path.
inline std::string write_scratch(const std::string& name, const uint8_t* data, size_t size) {
    const std::string path = (scratch_dir() / name).string();
    std::FILE* f = std::fopen(path.c_str(), "wb");
    if (!f || (size && std::fwrite(data, 1, size, f) != size) || std::fclose(f) != 0) {
        std::perror(path.c_str());
        std::abort();  // the harness itself failed: not a finding in bnn
    }
    return path;
}

inline void remove_scratch(const std::string& name) {
    std::error_code ec;
    std::filesystem::remove(scratch_dir() / name, ec);
}

}  // namespace bnn::fuzz
