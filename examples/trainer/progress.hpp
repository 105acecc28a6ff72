#pragma once
// A one-line progress bar for a training epoch: images/s, running loss and accuracy, ETA.
// Redraws at most ten times a second, on stderr so that stdout stays a clean log.
#include <chrono>
#include <cstdio>
#include <string>

namespace trainer {

class ProgressBar {
public:
    /// `visible` false keeps the statistics but draws nothing (tests, logs).
    ProgressBar(std::string label, int64_t total_images, bool visible = true)
        : label_(std::move(label)), total_(total_images), visible_(visible), start_(Clock::now()), last_draw_(start_) {}

    /// Records one finished batch and redraws when due.
    void update(int64_t images, double loss_sum, int64_t correct) {
        done_ += images;
        loss_sum_ += loss_sum;
        correct_ += correct;
        auto now = Clock::now();
        if (now - last_draw_ > std::chrono::milliseconds(100) || done_ >= total_) {
            last_draw_ = now;
            draw(false);
        }
    }
    /// Draws the final state and ends the line.
    void finish() { draw(true); }

    double seconds() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }
    double images_per_second() const { return done_ / std::max(seconds(), 1e-9); }
    double mean_loss() const { return done_ ? loss_sum_ / done_ : 0.0; }
    double accuracy() const { return done_ ? static_cast<double>(correct_) / done_ : 0.0; }

private:
    using Clock = std::chrono::steady_clock;
    void draw(bool final) const {
        if (!visible_) return;
        const int width = 24;
        double frac = total_ ? static_cast<double>(done_) / total_ : 1.0;
        int filled = static_cast<int>(frac * width);
        std::string bar(filled, '#');
        bar.resize(width, '.');
        double rate = images_per_second();
        double eta = rate > 0 ? (total_ - done_) / rate : 0.0;
        std::fprintf(stderr, "\r%s [%s] %3.0f%% %7.0f img/s  loss %.4f  acc %5.1f%%  %s %4.0fs   ",
                     label_.c_str(), bar.c_str(), 100 * frac, rate, mean_loss(), 100 * accuracy(),
                     final ? "took" : "ETA ", final ? seconds() : eta);
        if (final) std::fputc('\n', stderr);
        std::fflush(stderr);
    }

    std::string label_;
    int64_t total_;
    bool visible_;
    int64_t done_ = 0;
    double loss_sum_ = 0;
    int64_t correct_ = 0;
    Clock::time_point start_, last_draw_;
};

}  // namespace trainer
