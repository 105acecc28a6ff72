#pragma once
// Progress of a training epoch: images/s, running loss and accuracy, ETA. On a terminal it is
// one line redrawn in place (`\r`) at most ten times a second; into a file or a pipe (a log,
// `tee`) it is a plain line every few seconds, so the log stays readable. Written to stderr by
// default so that stdout stays a clean record of the epochs.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>

namespace trainer {

struct ProgressOptions {
    bool visible = true;              ///< false keeps the statistics but writes nothing (tests, --quiet)
    std::FILE* out = stderr;
    double line_every_seconds = 5.0;  ///< the interval between lines when `out` is not a terminal
};

class ProgressBar {
public:
    ProgressBar(std::string label, int64_t total_images, ProgressOptions options = {})
        : label_(std::move(label)),
          total_(total_images),
          opt_(options),
          in_place_(options.visible && ::isatty(::fileno(options.out)) != 0),
          start_(Clock::now()),
          last_draw_(start_) {}

    /// Records one finished batch and writes when due.
    void update(int64_t images, double loss_sum, int64_t correct) {
        done_ += images;
        loss_sum_ += loss_sum;
        correct_ += correct;
        if (!opt_.visible || done_ >= total_) return;  // the last batch is left to finish()
        const auto now = Clock::now();
        const double since = std::chrono::duration<double>(now - last_draw_).count();
        if (since >= (in_place_ ? 0.1 : opt_.line_every_seconds)) {
            last_draw_ = now;
            draw(false);
        }
    }
    /// Writes the final state and ends the line.
    void finish() {
        if (opt_.visible) draw(true);
    }

    double seconds() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }
    double images_per_second() const { return done_ / std::max(seconds(), 1e-9); }
    double mean_loss() const { return done_ ? loss_sum_ / done_ : 0.0; }
    double accuracy() const { return done_ ? static_cast<double>(correct_) / done_ : 0.0; }

private:
    using Clock = std::chrono::steady_clock;
    void draw(bool final) const {
        const double frac = total_ ? std::min(1.0, static_cast<double>(done_) / total_) : 1.0;
        const double rate = images_per_second();
        const double eta = rate > 0 ? (total_ - done_) / rate : 0.0;
        if (in_place_) {
            const int width = 24;
            std::string bar(static_cast<size_t>(frac * width), '#');
            bar.resize(width, '.');
            std::fprintf(opt_.out, "\r%s [%s] %3.0f%% %7.0f img/s  loss %.4f  acc %5.1f%%  %s %4.0fs   ",
                         label_.c_str(), bar.c_str(), 100 * frac, rate, mean_loss(), 100 * accuracy(),
                         final ? "took" : "ETA ", final ? seconds() : eta);
            if (final) std::fputc('\n', opt_.out);
        } else {
            std::fprintf(opt_.out, "%s %3.0f%% %7.0f img/s  loss %.4f  acc %5.1f%%  %s %4.0fs\n", label_.c_str(),
                         100 * frac, rate, mean_loss(), 100 * accuracy(), final ? "took" : "ETA ",
                         final ? seconds() : eta);
        }
        std::fflush(opt_.out);
    }

    std::string label_;
    int64_t total_;
    ProgressOptions opt_;
    bool in_place_;
    int64_t done_ = 0;
    double loss_sum_ = 0;
    int64_t correct_ = 0;
    Clock::time_point start_, last_draw_;
};

}  // namespace trainer
