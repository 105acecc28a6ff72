#pragma once
/// @file agreement.hpp
/// require_same_settings: refuses to start when the ranks were given different settings
/// (width, recipe, batch, seed, ...), which would otherwise train N different models that
/// exchange meaningless gradients, or deadlock when their tensors differ in size.
#include <string>
#include <utility>
#include <vector>

#include "bnn/core/error.hpp"
#include "bnn/dist/agreed_error.hpp"
#include "bnn/dist/process_group.hpp"

namespace bnn::dist {

/// A start every rank refuses alike (same message, same moment), so the ranks can end normally
/// and rank 0 alone reports it (see agreed_error.hpp).
class RefusedStart : public AgreedError {
public:
    RefusedStart(const ProcessGroup& group, const std::string& what) : AgreedError(what, "", group.is_root()) {}
};

/// Named settings of this rank, e.g. {{"width", "64"}, {"batch", "256"}}.
using Settings = std::vector<std::pair<std::string, std::string>>;

/// Compares every rank's settings with rank 0's; on any difference every rank throws the same
/// RefusedStart naming the first setting that differs, its value on rank 0 and on that rank.
inline void require_same_settings(ProcessGroup& group, const Settings& mine) {
    std::string text;
    for (const auto& [key, value] : mine) text += key + '=' + value + '\n';
    const std::vector<std::string> all = group.all_gather(text, "the ranks' settings");
    auto parse = [](const std::string& s) {
        Settings out;
        size_t start = 0;
        while (start < s.size()) {
            const size_t eq = s.find('=', start), nl = s.find('\n', start);
            out.emplace_back(s.substr(start, eq - start), s.substr(eq + 1, nl - eq - 1));
            start = nl + 1;
        }
        return out;
    };
    const Settings root = parse(all[0]);
    for (size_t r = 1; r < all.size(); ++r) {
        if (all[r] == all[0]) continue;
        const Settings other = parse(all[r]);
        for (size_t i = 0; i < std::max(root.size(), other.size()); ++i) {
            const std::string key = i < root.size() ? root[i].first : other[i].first;
            const std::string a = i < root.size() ? root[i].second : "(missing)";
            const std::string b = i < other.size() && other[i].first == key ? other[i].second : "(missing)";
            if (a == b) continue;
            throw RefusedStart(group, "the ranks were started with different options: " + key + " is " + a +
                                          " on rank 0 but " + b + " on rank " + std::to_string(r) +
                                          "; start every rank with the same options");
        }
    }
}

}  // namespace bnn::dist
