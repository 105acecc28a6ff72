#pragma once
/// @file atomic_file.hpp
/// Atomic whole-file writing for the checkpoint and deployment writers: a file is either written
/// completely or left as it was. Every failure raises bnn::Error naming the file and the reason.
/// (Reading files is core/file.hpp, below data/.)
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "bnn/core/error.hpp"

namespace bnn::io {

/// Sink handed to an atomic_write_file producer: write() appends bytes to the temporary file.
class FileSink {
public:
    FileSink(int fd, std::string path, int pause_ms = 0) : fd_(fd), path_(std::move(path)), pause_ms_(pause_ms) {}
    void write(const void* data, size_t size) {
        if (written_ > 0 && pause_ms_ > 0) {
            // Test hook (see test_pause_ms): the temporary file now holds a partial write.
            std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms_));
            pause_ms_ = 0;
        }
        const char* p = static_cast<const char*>(data);
        while (size > 0) {
            ssize_t n = ::write(fd_, p, size);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0)
                ::bnn::fail("atomic_write_file: writing '", path_, "' failed after ", written_,
                             " bytes: ", n < 0 ? std::strerror(errno) : "no progress");
            p += n;
            size -= static_cast<size_t>(n);
            written_ += static_cast<uint64_t>(n);
        }
    }
    uint64_t bytes_written() const { return written_; }

private:
    int fd_;
    std::string path_;
    int pause_ms_;
    uint64_t written_ = 0;
};

namespace detail {
/// For crash tests only: with BNN_TEST_ATOMIC_WRITE_PAUSE_MS set, every atomic write pauses this
/// many milliseconds once its first bytes are in the temporary file, so a test can kill the
/// process while a file is being written rather than hoping to hit that moment. 0 when unset.
inline int test_pause_ms() {
    const char* v = std::getenv("BNN_TEST_ATOMIC_WRITE_PAUSE_MS");
    return v ? std::max(0, std::atoi(v)) : 0;
}
}  // namespace detail

/// Writes a file atomically: `produce` writes into a temporary file in the same directory, which
/// is flushed to disk (fsync) and then renamed over `path`. If anything fails (or `produce`
/// throws), the temporary file is removed and an existing file at `path` is left untouched.
inline void atomic_write_file(const std::string& path, const std::function<void(FileSink&)>& produce) {
    namespace fs = std::filesystem;
    const fs::path target(path);
    const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
    std::string tmpl = (dir / ("." + target.filename().string() + ".tmp.XXXXXX")).string();
    int fd = ::mkstemp(tmpl.data());
    if (fd < 0) ::bnn::fail("atomic_write_file: cannot create a temporary file for '", path, "': ", std::strerror(errno));
    const std::string tmp = tmpl;
    auto discard = [&] {
        if (fd >= 0) ::close(fd);
        fd = -1;
        ::unlink(tmp.c_str());
    };
    try {
        FileSink sink(fd, path, detail::test_pause_ms());
        produce(sink);
        if (::fsync(fd) != 0) ::bnn::fail("atomic_write_file: fsync of '", tmp, "' failed: ", std::strerror(errno));
        // mkstemp creates 0600; give the file the usual permissions (subject to the umask).
        mode_t mask = ::umask(0);
        ::umask(mask);
        ::fchmod(fd, 0666 & ~mask);
        if (::close(fd) != 0) {
            fd = -1;
            ::bnn::fail("atomic_write_file: closing '", tmp, "' failed: ", std::strerror(errno));
        }
        fd = -1;
        if (::rename(tmp.c_str(), path.c_str()) != 0)
            ::bnn::fail("atomic_write_file: cannot rename '", tmp, "' to '", path, "': ", std::strerror(errno));
    } catch (...) {
        discard();
        throw;
    }
    // Make the rename itself durable; failure here does not undo a complete write, so ignore it.
    int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        ::fsync(dfd);
        ::close(dfd);
    }
}

/// Convenience overload writing a byte buffer atomically.
inline void atomic_write_file(const std::string& path, const std::vector<uint8_t>& bytes) {
    atomic_write_file(path, [&](FileSink& sink) { sink.write(bytes.data(), bytes.size()); });
}

}  // namespace bnn::io
