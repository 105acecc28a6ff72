#pragma once
// Learning curves as one self-contained HTML page with inline SVG (no scripts, no downloads):
// test top-1 and training loss against the epoch, one coloured line per stage.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <vector>

namespace trainer {

/// One finished epoch, as logged to metrics.jsonl.
struct EpochRecord {
    std::string stage;  // e.g. "real-to-bin/step2"
    int epoch = 0;      // 1-based within the stage
    double train_loss = 0, train_acc = 0, test_top1 = 0, test_top5 = 0, lr = 0, images_per_s = 0, seconds = 0;
};

namespace detail {
inline std::string svg_chart(const std::vector<EpochRecord>& records, const std::string& title,
                             double EpochRecord::*field, bool percent) {
    const double W = 560, H = 300, left = 50, right = 150, top = 30, bottom = 35;
    std::map<std::string, std::vector<const EpochRecord*>> by_stage;
    std::vector<std::string> order;
    int max_epoch = 1;
    double lo = 1e300, hi = -1e300;
    for (const auto& r : records) {
        if (!by_stage.count(r.stage)) order.push_back(r.stage);
        by_stage[r.stage].push_back(&r);
        max_epoch = std::max(max_epoch, r.epoch);
        lo = std::min(lo, r.*field);
        hi = std::max(hi, r.*field);
    }
    if (records.empty()) lo = 0, hi = 1;
    if (percent) lo = 0, hi = std::max(hi, 1e-9);
    if (hi - lo < 1e-9) hi = lo + 1;
    auto x = [&](double e) { return left + (W - left - right) * (max_epoch > 1 ? (e - 1) / (max_epoch - 1) : 0.5); };
    auto y = [&](double v) { return top + (H - top - bottom) * (1 - (v - lo) / (hi - lo)); };
    static const char* colours[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"};
    char buf[256];
    std::string s;
    std::snprintf(buf, sizeof buf, "<svg xmlns='http://www.w3.org/2000/svg' width='%.0f' height='%.0f' font-family='sans-serif' font-size='11'>\n", W, H);
    s += buf;
    s += "<text x='" + std::to_string(int(left)) + "' y='18' font-size='13'>" + title + "</text>\n";
    std::snprintf(buf, sizeof buf, "<rect x='%.0f' y='%.0f' width='%.0f' height='%.0f' fill='none' stroke='#999'/>\n",
                  left, top, W - left - right, H - top - bottom);
    s += buf;
    for (int i = 0; i <= 4; ++i) {
        double v = lo + (hi - lo) * i / 4;
        std::snprintf(buf, sizeof buf, "<text x='%.0f' y='%.1f' text-anchor='end'>%.*f%s</text>\n", left - 4, y(v) + 4,
                      percent ? 0 : 2, percent ? 100 * v : v, percent ? "%" : "");
        s += buf;
    }
    std::snprintf(buf, sizeof buf, "<text x='%.0f' y='%.0f' text-anchor='middle'>epoch (1..%d)</text>\n",
                  (left + W - right) / 2, H - 8, max_epoch);
    s += buf;
    for (size_t k = 0; k < order.size(); ++k) {
        const char* c = colours[k % 7];
        std::string pts;
        for (const auto* r : by_stage[order[k]]) {
            std::snprintf(buf, sizeof buf, "%.1f,%.1f ", x(r->epoch), y(r->*field));
            pts += buf;
        }
        s += "<polyline fill='none' stroke-width='2' stroke='" + std::string(c) + "' points='" + pts + "'/>\n";
        std::snprintf(buf, sizeof buf, "<text x='%.0f' y='%.0f' fill='%s'>%s</text>\n", W - right + 8,
                      top + 14.0 * (k + 1), c, order[k].c_str());
        s += buf;
    }
    return s + "</svg>\n";
}
}  // namespace detail

/// Writes the page to `path` (through a temporary file, so a reader never sees half a page).
inline void write_curves_html(const std::string& path, const std::vector<EpochRecord>& records,
                              const std::string& heading) {
    std::string tmp = path + ".tmp";
    {
        std::ofstream out(tmp);
        out << "<!doctype html>\n<html><head><meta charset='utf-8'><title>" << heading
            << "</title></head>\n<body style='font-family:sans-serif'>\n<h2>" << heading << "</h2>\n"
            << detail::svg_chart(records, "test top-1", &EpochRecord::test_top1, true)
            << detail::svg_chart(records, "test top-5", &EpochRecord::test_top5, true)
            << detail::svg_chart(records, "training loss", &EpochRecord::train_loss, false)
            << "</body></html>\n";
    }
    std::rename(tmp.c_str(), path.c_str());
}

}  // namespace trainer
