#pragma once
// The trainer's output directory, checked before any training: a run that cannot save its
// checkpoints should say so at once, not after its first epoch.
#include <cstdint>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include "bnn/core/error.hpp"
#include "bnn/io/atomic_file.hpp"

namespace trainer {

/// Creates `dir` (and its parents) if needed and proves it writable by writing and removing a
/// small file the way checkpoints are written (atomically), so every reason a checkpoint could not
/// be written there (not a directory, no permission, read-only file system, file size limit)
/// shows up now as a bnn::Error naming the directory. Then removes what killed runs left there.
inline void prepare_output_dir(const std::string& dir) {
    namespace fs = std::filesystem;
    std::error_code ec;
    fs::create_directories(dir, ec);
    BNN_CHECK(!ec, "trainer: cannot create the output directory '", dir, "' (--out): ", ec.message());
    BNN_CHECK(fs::is_directory(dir, ec), "trainer: the output path '", dir, "' (--out) is not a directory");
    const std::string probe = (fs::path(dir) / ".write-test").string();
    try {
        bnn::io::atomic_write_file(probe, std::vector<uint8_t>{'o', 'k', '\n'});
    } catch (const bnn::Error& e) {
        bnn::fail("trainer: the output directory '", dir, "' (--out) is not writable: ", e.what());
    }
    fs::remove(probe, ec);
    // Temporaries (".<name>.tmp.XXXXXX") of atomic writes that a killed run left behind: a
    // checkpoint's can be as large as the checkpoint, once for every kill.
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
        const std::string name = entry.path().filename().string();
        if (name.size() > 12 && name[0] == '.' && name.compare(name.size() - 11, 5, ".tmp.") == 0)
            fs::remove(entry.path(), ec);
    }
}

}  // namespace trainer
