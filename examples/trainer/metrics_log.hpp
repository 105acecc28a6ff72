#pragma once
// The trainer's metrics.jsonl: one JSON object a line, of two kinds. "epoch" lines carry a
// finished epoch's training and test figures; "step" lines the training loss and accuracy over
// the last few dozen steps, so that even a one-epoch stage draws a curve. Lines written before
// "kind" existed are epoch lines.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "bnn/core/error.hpp"
#include "bnn/io/atomic_file.hpp"

namespace trainer {

/// One finished epoch.
struct EpochRecord {
    std::string stage;  // e.g. "real-to-bin/step2"
    int epoch = 0;      // 1-based within the stage
    double train_loss = 0, train_acc = 0, test_top1 = 0, test_top5 = 0, lr = 0;
    double attention = 0, kd = 0;  // mean unweighted loss parts (0 when not used)
    double images_per_s = 0, seconds = 0;
};

/// The training figures of the steps since the previous step record of the same epoch.
struct StepRecord {
    std::string stage;
    int epoch = 0;                // 1-based within the stage
    int64_t step = 0;             // steps done in this epoch, 1..steps_per_epoch
    int64_t steps_per_epoch = 0;
    double train_loss = 0, train_acc = 0, lr = 0;

    /// Epochs of the stage done at this record (fractional).
    double progress() const { return epoch - 1 + static_cast<double>(step) / static_cast<double>(steps_per_epoch); }
};

class MetricsLog {
public:
    /// Opens `path`: a fresh log, or with `resume` the records already in it (a line cut by a
    /// crash is dropped, in the file too). An empty path keeps the records in memory only (ranks
    /// other than 0).
    MetricsLog(std::string path, bool resume) : path_(std::move(path)) {
        if (path_.empty()) return;
        if (!resume) {
            // Emptied in one step (the old run's log is meant to go), not written through a
            // temporary: the path may be a device such as /dev/full.
            const int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
            BNN_CHECK(fd >= 0, "metrics log: cannot create '", path_, "': ", std::strerror(errno));
            ::close(fd);
            return;
        }
        std::ifstream in(path_);
        std::stringstream text;
        text << in.rdbuf();
        const std::string all = text.str();
        // A line cut by a crash goes from the file too: the next record would be appended to it.
        bool cut = !all.empty() && all.back() != '\n';
        int64_t number = 0;
        for (std::string line; std::getline(text, line);) {
            ++number;
            if (line.empty()) continue;
            auto j = nlohmann::json::parse(line, nullptr, false);
            if (j.is_discarded() || !j.is_object()) {
                cut = true;
                continue;
            }
            check_types(j, number);
            take(std::move(j));
        }
        if (cut) rewrite();
    }

    const std::vector<EpochRecord>& epochs() const { return epochs_; }
    const std::vector<StepRecord>& steps() const { return steps_; }

    void add(const EpochRecord& r) { append(to_json(r)); }
    void add(const StepRecord& r) { append(to_json(r)); }

    /// Forgets every record of `stage` from epoch `first_epoch` on, in memory and in the file:
    /// a resumed stage trains those epochs again (an interrupted epoch leaves step lines, and an
    /// epoch line may precede a checkpoint that was never written), so no line is doubled.
    void rewind(const std::string& stage, int first_epoch) {
        std::vector<nlohmann::json> kept;
        for (auto& j : lines_)
            if (!(j.value("stage", "") == stage && j.value("epoch", 0) >= first_epoch)) kept.push_back(std::move(j));
        const bool changed = kept.size() != lines_.size();
        lines_.clear();
        epochs_.clear();
        steps_.clear();
        for (auto& j : kept) take(std::move(j));
        if (changed && !path_.empty()) rewrite();
    }

private:
    /// Every field of a line the trainer wrote has its type; a line that parses with other types
    /// was not written by the trainer, and reading it would convert a string or 1e300 to an int.
    void check_types(const nlohmann::json& j, int64_t line) const {
        auto bad = [&](const char* key, const char* expected) {
            bnn::fail("metrics log '", path_, "' line ", line, ": '", key, "' is ", j[key].dump().substr(0, 40),
                      ", expected ", expected, " (delete the file to start the log afresh)");
        };
        for (const char* key : {"kind", "stage"})
            if (j.contains(key) && !j[key].is_string()) bad(key, "a string");
        for (const char* key : {"epoch", "step", "steps_per_epoch"})
            if (j.contains(key) && !(j[key].is_number_integer() && j[key].get<int64_t>() >= 0 &&
                                     j[key].get<int64_t>() <= std::numeric_limits<int>::max()))
                bad(key, "a non-negative integer");
        for (const char* key : {"train_loss", "train_acc", "test_top1", "test_top5", "lr", "attention", "kd",
                                "images_per_s", "seconds"})
            if (j.contains(key) && !j[key].is_number()) bad(key, "a number");
    }
    void take(nlohmann::json j) {
        const std::string kind = j.value("kind", "epoch");
        if (kind == "epoch") epochs_.push_back(epoch_from(j));
        else if (kind == "step") steps_.push_back(step_from(j));
        lines_.push_back(std::move(j));
    }
    /// Replaces the file by the records in memory, atomically: a crash or a full disk leaves the
    /// old log or the new one.
    void rewrite() const {
        std::string text;
        for (const auto& j : lines_) text += j.dump() + '\n';
        try {
            bnn::io::atomic_write_file(path_, [&](bnn::io::FileSink& sink) { sink.write(text.data(), text.size()); });
        } catch (const bnn::Error& e) {
            bnn::fail("metrics log: ", e.what());
        }
    }
    void append(nlohmann::json j) {
        if (!path_.empty()) append_line(j.dump() + '\n');
        take(std::move(j));
    }
    /// Appends `line` whole or not at all: a write that fails part way (a full disk) is cut back
    /// off, so the file never ends in half a record, and the failure raises bnn::Error.
    void append_line(const std::string& line) const {
        const int fd = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0666);
        BNN_CHECK(fd >= 0, "metrics log: cannot open '", path_, "' to append: ", std::strerror(errno));
        struct stat st {};
        const off_t before = ::fstat(fd, &st) == 0 ? st.st_size : -1;
        size_t done = 0;
        while (done < line.size()) {
            const ssize_t n = ::write(fd, line.data() + done, line.size() - done);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
                const int error = n < 0 ? errno : EIO;
                const bool intact = done == 0 || (before >= 0 && ::ftruncate(fd, before) == 0);
                ::close(fd);
                bnn::fail("metrics log: cannot append to '", path_, "': ", std::strerror(error),
                          intact ? "; the file is as it was before this record"
                                 : "; its last line is cut, and --resume will drop it");
            }
            done += static_cast<size_t>(n);
        }
        BNN_CHECK(::close(fd) == 0, "metrics log: cannot append to '", path_, "': ", std::strerror(errno));
    }

    static nlohmann::json to_json(const EpochRecord& r) {
        return {{"kind", "epoch"},            {"stage", r.stage},         {"epoch", r.epoch},
                {"train_loss", r.train_loss}, {"train_acc", r.train_acc}, {"test_top1", r.test_top1},
                {"test_top5", r.test_top5},   {"lr", r.lr},               {"attention", r.attention},
                {"kd", r.kd},                 {"images_per_s", r.images_per_s}, {"seconds", r.seconds}};
    }
    static nlohmann::json to_json(const StepRecord& r) {
        return {{"kind", "step"},           {"stage", r.stage}, {"epoch", r.epoch},
                {"step", r.step},           {"steps_per_epoch", r.steps_per_epoch},
                {"train_loss", r.train_loss}, {"train_acc", r.train_acc}, {"lr", r.lr}};
    }
    static EpochRecord epoch_from(const nlohmann::json& j) {
        return {j.value("stage", ""),         j.value("epoch", 0),       j.value("train_loss", 0.0),
                j.value("train_acc", 0.0),    j.value("test_top1", 0.0), j.value("test_top5", 0.0),
                j.value("lr", 0.0),           j.value("attention", 0.0), j.value("kd", 0.0),
                j.value("images_per_s", 0.0), j.value("seconds", 0.0)};
    }
    static StepRecord step_from(const nlohmann::json& j) {
        return {j.value("stage", ""),
                j.value("epoch", 0),
                j.value("step", int64_t{0}),
                std::max<int64_t>(j.value("steps_per_epoch", int64_t{1}), 1),
                j.value("train_loss", 0.0),
                j.value("train_acc", 0.0),
                j.value("lr", 0.0)};
    }

    std::string path_;
    std::vector<nlohmann::json> lines_;  // in file order
    std::vector<EpochRecord> epochs_;
    std::vector<StepRecord> steps_;
};

}  // namespace trainer
