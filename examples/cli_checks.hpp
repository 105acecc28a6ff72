#pragma once
// How the example programs answer a bad command line: one line on stderr, naming the program,
// the option and what was wrong, and a non-zero exit (CLI11's own exit codes). CLI11's default
// adds a second line, and its PositiveNumber check prints the whole range of a double.
#include <CLI/CLI.hpp>

#include <charconv>
#include <cmath>
#include <cstdint>
#include <string>

namespace bnn::examples {

/// Makes `app` report a parse error as "program: --opt: reason (see --help)" on one line.
inline void one_line_errors(CLI::App& app, std::string program) {
    app.failure_message([program](const CLI::App*, const CLI::Error& e) {
        return program + ": " + e.what() + " (see --help)\n";
    });
}

namespace detail {
/// The number spelled by all of `text`, or false ("1e3" is no integer, "12abc" no number).
template <class T>
bool parse_whole(const std::string& text, T& value) {
    const char* end = text.data() + text.size();
    auto [ptr, ec] = std::from_chars(text.data(), end, value);
    return ec == std::errc() && ptr == end;
}

inline CLI::Validator integer_at_least(int64_t least, const char* description) {
    return CLI::Validator(
        [least, description](std::string& text) -> std::string {
            int64_t v = 0;
            if (!parse_whole(text, v) || v < least)
                return std::string("expected ") + description + ", got '" + text + "'";
            return {};
        },
        description);
}

inline CLI::Validator finite_number(bool zero_allowed, const char* description) {
    return CLI::Validator(
        [zero_allowed, description](std::string& text) -> std::string {
            double v = 0;
            if (!parse_whole(text, v) || !std::isfinite(v) || v < 0 || (v == 0 && !zero_allowed))
                return std::string("expected ") + description + ", got '" + text + "'";
            return {};
        },
        description);
}
}  // namespace detail

/// An integer >= 1 (widths, batch sizes, thread counts, epochs).
inline CLI::Validator positive_integer() { return detail::integer_at_least(1, "a positive integer"); }

/// An integer >= 0 (seeds, limits where 0 means none).
inline CLI::Validator non_negative_integer() { return detail::integer_at_least(0, "an integer >= 0"); }

/// A finite number > 0 (factors such as a learning-rate scale).
inline CLI::Validator positive_number() { return detail::finite_number(false, "a finite number > 0"); }

/// A finite number >= 0 (strengths where 0 means off).
inline CLI::Validator non_negative_number() { return detail::finite_number(true, "a finite number >= 0"); }

}  // namespace bnn::examples
