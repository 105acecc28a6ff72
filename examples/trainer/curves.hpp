#pragma once
// Learning curves as one self-contained HTML page with inline SVG (no scripts, no downloads).
// The stages run one after another on one axis of epochs, with their boundaries marked: the
// training loss and accuracy from the step records (so a one-epoch stage still draws a line),
// the test top-1 after each epoch as dots, and a bar chart of each stage's final test top-1
// beside the paper's figure for it.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "bnn/io/atomic_file.hpp"
#include "metrics_log.hpp"

namespace trainer {

/// A stage as the page places it: its id, its length in epochs, and the paper's top-1 for it.
struct StageSpan {
    std::string id;
    int epochs = 1;
    std::optional<double> paper_top1;  ///< fraction in [0, 1]; none when the paper has no figure
};

namespace detail {

inline std::string html_escape(const std::string& s) {
    std::string out;
    for (char c : s) {
        switch (c) {
            case '<': out += "&lt;"; break;
            case '>': out += "&gt;"; break;
            case '&': out += "&amp;"; break;
            case '\'': out += "&#39;"; break;
            case '"': out += "&quot;"; break;
            default: out += c;
        }
    }
    return out;
}

template <class... A>
std::string svg_printf(const char* fmt, A... a) {
    char buf[512];
    std::snprintf(buf, sizeof buf, fmt, a...);
    return buf;
}

inline const char* stage_colour(size_t k) {
    static const char* colours[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"};
    return colours[k % 7];
}

/// A round upper end for an axis starting at 0.
inline double axis_top(double hi, bool fraction) {
    if (!(hi > 0)) return 1;
    if (fraction) return std::min(1.0, std::ceil(hi * 10 - 1e-9) / 10);
    const double step = std::pow(10.0, std::floor(std::log10(hi)));
    return std::ceil(hi / step - 1e-9) * step;
}

/// One line chart over the whole schedule: x in epochs from the first stage's start, y from 0.
class ScheduleChart {
public:
    ScheduleChart(const std::vector<StageSpan>& stages, double y_top, bool percent)
        : stages_(stages), y_top_(y_top), percent_(percent) {
        for (const auto& s : stages) {
            offset_[s.id] = total_;
            total_ += s.epochs;
        }
        total_ = std::max(total_, 1.0);
    }
    bool places(const std::string& stage) const { return offset_.count(stage) != 0; }
    double x(const std::string& stage, double epochs_into_stage) const {
        return left + (W - left - right) * (offset_.at(stage) + epochs_into_stage) / total_;
    }
    double y(double v) const { return top + (H - top - bottom) * (1 - std::clamp(v / y_top_, 0.0, 1.0)); }

    /// The frame, y ticks, the stage boundaries (dashed) and each stage's name above its span.
    std::string begin(const std::string& title) const {
        std::string s = svg_printf("<svg xmlns='http://www.w3.org/2000/svg' width='%.0f' height='%.0f' "
                               "font-family='sans-serif' font-size='11'>\n",
                               W, H);
        s += svg_printf("<text x='%.0f' y='18' font-size='13'>", left) + html_escape(title) + "</text>\n";
        s += svg_printf("<rect x='%.0f' y='%.0f' width='%.0f' height='%.0f' fill='none' stroke='#999'/>\n", left, top,
                    W - left - right, H - top - bottom);
        for (int i = 0; i <= 4; ++i) {
            const double v = y_top_ * i / 4;
            s += svg_printf("<line x1='%.0f' x2='%.0f' y1='%.1f' y2='%.1f' stroke='#eee'/>\n", left, W - right, y(v), y(v));
            s += svg_printf("<text x='%.0f' y='%.1f' text-anchor='end'>%.*f%s</text>\n", left - 4, y(v) + 4,
                        percent_ ? 0 : 2, percent_ ? 100 * v : v, percent_ ? "%" : "");
        }
        double at = 0;
        for (size_t k = 0; k < stages_.size(); ++k) {
            const double bx = x(stages_[k].id, 0);
            if (k > 0)
                s += svg_printf("<line class='stage-boundary' x1='%.1f' x2='%.1f' y1='%.0f' y2='%.0f' stroke='#888' "
                            "stroke-dasharray='4,3'/>\n",
                            bx, bx, top, H - bottom);
            const double mid = x(stages_[k].id, stages_[k].epochs / 2.0);
            s += svg_printf("<text x='%.1f' y='%.0f' fill='%s' font-size='10' text-anchor='middle'>", mid, top - 5,
                            stage_colour(k)) +
                 html_escape(stages_[k].id) + "</text>\n";
            s += svg_printf("<text x='%.1f' y='%.0f' text-anchor='middle'>%g</text>\n", bx, H - bottom + 14, at);
            at += stages_[k].epochs;
        }
        s += svg_printf("<text x='%.1f' y='%.0f' text-anchor='middle'>%g</text>\n", W - right, H - bottom + 14, at);
        s += svg_printf("<text x='%.0f' y='%.0f' text-anchor='middle'>epochs, the stages one after another</text>\n",
                    (left + W - right) / 2, H - 6);
        return s;
    }

    static constexpr double W = 760, H = 330, left = 55, right = 20, top = 44, bottom = 40;

private:
    const std::vector<StageSpan>& stages_;
    std::map<std::string, double> offset_;
    double total_ = 0, y_top_;
    bool percent_;
};

/// One line per stage through its step records' `field`.
inline std::string step_lines(const ScheduleChart& chart, const std::vector<StageSpan>& stages,
                              const std::vector<StepRecord>& steps, double StepRecord::*field, const char* cls) {
    std::string s;
    for (size_t k = 0; k < stages.size(); ++k) {
        std::string points;
        for (const auto& r : steps)
            if (r.stage == stages[k].id)
                points += svg_printf("%.1f,%.1f ", chart.x(r.stage, r.progress()), chart.y(r.*field));
        if (points.empty()) continue;
        points.pop_back();
        s += svg_printf("<polyline class='%s' data-stage='", cls) + html_escape(stages[k].id) +
             svg_printf("' fill='none' stroke-width='1.5' stroke='%s' points='", stage_colour(k)) + points + "'/>\n";
    }
    return s;
}

inline std::string loss_chart(const std::vector<StageSpan>& stages, const std::vector<StepRecord>& steps) {
    double hi = 0;
    for (const auto& r : steps) hi = std::max(hi, r.train_loss);
    ScheduleChart chart(stages, axis_top(hi, false), false);
    return chart.begin("training loss (mean over each few dozen steps)") +
           step_lines(chart, stages, steps, &StepRecord::train_loss, "train-loss") + "</svg>\n";
}

inline std::string accuracy_chart(const std::vector<StageSpan>& stages, const std::vector<StepRecord>& steps,
                                  const std::vector<EpochRecord>& epochs) {
    double hi = 0;
    for (const auto& r : steps) hi = std::max(hi, r.train_acc);
    for (const auto& r : epochs) hi = std::max(hi, r.test_top1);
    ScheduleChart chart(stages, axis_top(hi, true), true);
    std::string s = chart.begin("training accuracy (lines) and test top-1 after each epoch (dots)") +
                    step_lines(chart, stages, steps, &StepRecord::train_acc, "train-accuracy");
    for (size_t k = 0; k < stages.size(); ++k)
        for (const auto& r : epochs)
            if (r.stage == stages[k].id)
                s += svg_printf("<circle class='test-top1' cx='%.1f' cy='%.1f' r='4' fill='white' stroke='%s' "
                            "stroke-width='2'><title>",
                            chart.x(r.stage, r.epoch), chart.y(r.test_top1), stage_colour(k)) +
                     html_escape(r.stage) + svg_printf(" epoch %d: test top-1 %.2f%%</title></circle>\n", r.epoch,
                                                    100 * r.test_top1);
    return s + "</svg>\n";
}

/// Each stage's final test top-1 (its last epoch record) beside the paper's figure.
inline std::string final_top1_chart(const std::vector<StageSpan>& stages, const std::vector<EpochRecord>& epochs) {
    const double group = 120, bar = 34, left = 55, top = 30, plot_h = 220, bottom = 40;
    const double W = left + group * std::max<size_t>(stages.size(), 1) + 20, H = top + plot_h + bottom;
    auto y = [&](double v) { return top + plot_h * (1 - std::clamp(v, 0.0, 1.0)); };
    std::string s = svg_printf("<svg xmlns='http://www.w3.org/2000/svg' width='%.0f' height='%.0f' "
                           "font-family='sans-serif' font-size='11'>\n",
                           W, H);
    s += svg_printf("<text x='%.0f' y='18' font-size='13'>final test top-1 of each stage (coloured: this run; "
                "grey: the paper)</text>\n",
                left);
    for (int i = 0; i <= 4; ++i) {
        const double v = i / 4.0;
        s += svg_printf("<line x1='%.0f' x2='%.0f' y1='%.1f' y2='%.1f' stroke='#eee'/>\n", left, W - 20, y(v), y(v));
        s += svg_printf("<text x='%.0f' y='%.1f' text-anchor='end'>%.0f%%</text>\n", left - 4, y(v) + 4, 100 * v);
    }
    auto draw_bar = [&](double x, double v, const char* fill, const char* cls, const std::string& id) {
        return svg_printf("<rect class='%s' data-stage='", cls) + html_escape(id) +
               svg_printf("' x='%.1f' y='%.1f' width='%.0f' height='%.1f' fill='%s'/>\n", x, y(v), bar, y(0) - y(v),
                      fill) +
               svg_printf("<text x='%.1f' y='%.1f' text-anchor='middle'>%.1f</text>\n", x + bar / 2, y(v) - 3, 100 * v);
    };
    for (size_t k = 0; k < stages.size(); ++k) {
        const double gx = left + group * k + (group - 2 * bar - 4) / 2;
        const EpochRecord* last = nullptr;
        for (const auto& r : epochs)
            if (r.stage == stages[k].id && (!last || r.epoch >= last->epoch)) last = &r;
        if (last) s += draw_bar(gx, last->test_top1, stage_colour(k), "run-top1", stages[k].id);
        if (stages[k].paper_top1) s += draw_bar(gx + bar + 4, *stages[k].paper_top1, "#aaa", "paper-top1", stages[k].id);
        s += svg_printf("<text x='%.1f' y='%.0f' text-anchor='middle' fill='%s'>", left + group * k + group / 2,
                    top + plot_h + 16, stage_colour(k)) +
             html_escape(stages[k].id) + "</text>\n";
    }
    return s + "</svg>\n";
}

}  // namespace detail

/// Writes the page to `path` atomically (a reader never sees half a page, a failed write keeps
/// the old one and raises bnn::Error).
/// `stages` in the order they run; records of stages not among them are left out.
inline void write_curves_html(const std::string& path, const std::vector<StageSpan>& stages,
                              const std::vector<StepRecord>& steps, const std::vector<EpochRecord>& epochs,
                              const std::string& heading) {
    std::ostringstream out;
    out << "<!doctype html>\n<html><head><meta charset='utf-8'><title>" << detail::html_escape(heading)
        << "</title></head>\n<body style='font-family:sans-serif'>\n<h2>" << detail::html_escape(heading)
        << "</h2>\n"
        << detail::loss_chart(stages, steps) << "<br>\n"
        << detail::accuracy_chart(stages, steps, epochs) << "<br>\n"
        << detail::final_top1_chart(stages, epochs)
        << "<p style='font-size:small;max-width:760px'>Grey bars: the paper's ResNet-18 CIFAR-100 figures "
           "(Martinez et al., ICLR 2020, Table 3: width 64, 350 epochs per stage), beside the stage of this "
           "trainer that corresponds to them (see docs/results.md). Real-to-Bin step 1 (tanh activations) has "
           "no figure there. The figures of this run depend on its data set, width and epochs.</p>\n"
        << "</body></html>\n";
    const std::string page = out.str();
    bnn::io::atomic_write_file(path, [&](bnn::io::FileSink& sink) { sink.write(page.data(), page.size()); });
}

}  // namespace trainer
