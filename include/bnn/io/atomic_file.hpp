#pragma once
/// @file atomic_file.hpp
/// Atomic whole-file writing for the checkpoint and deployment writers: a file is either written
/// completely or left as it was. Every failure raises bnn::Error naming the file and the reason.
/// (Reading files is core/file.hpp, below data/.)
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "bnn/core/error.hpp"

namespace bnn::io {

/// Sink handed to an atomic_write_file producer: write() appends bytes to the temporary file.
class FileSink {
public:
    FileSink(int fd, std::string path, bool stop_after_first_bytes = false)
        : fd_(fd), path_(std::move(path)), stop_after_first_bytes_(stop_after_first_bytes) {}
    void write(const void* data, size_t size) {
        if (written_ > 0 && stop_after_first_bytes_) {
            // Test hook (see detail::test_stop_in_write): the temporary now holds a partial write.
            stop_after_first_bytes_ = false;
            ::raise(SIGSTOP);
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
    bool stop_after_first_bytes_;
    uint64_t written_ = 0;
};

namespace detail {
/// For crash tests only: with BNN_TEST_STOP_IN_WRITE=n in the environment, this process's n-th
/// atomic write of a `.safetensors` file (a checkpoint or deployment file) stops the process with
/// SIGSTOP once its first bytes are in the temporary file. A test waits for the stop and kills
/// the process: the kill lands inside that write by construction, however loaded the machine.
/// Unset, it costs one getenv per write.
inline bool test_stop_in_write(const std::string& path) {
    static std::atomic<int> safetensors_writes{0};
    const char* n = std::getenv("BNN_TEST_STOP_IN_WRITE");
    if (!n || !path.ends_with(".safetensors")) return false;
    return ++safetensors_writes == std::atoi(n);
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
        FileSink sink(fd, path, detail::test_stop_in_write(path));
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
