#pragma once
/// @file error.hpp
/// The one exception type of bnn, and the check macro that raises it.
#include <sstream>
#include <stdexcept>
#include <string>

namespace bnn {

/// Raised for every misuse and every bad input: wrong shapes, corrupt files, missing data.
/// The message names the operation, what was expected and what was found.
class Error : public std::runtime_error {
public:
    explicit Error(const std::string& what) : std::runtime_error(what) {}
};

/// Throws bnn::Error with a message built from stream-able pieces:
/// fail("conv2d: expected ", a, ", got ", b). For failures that are not a condition (BNN_CHECK).
template <class... Parts>
[[noreturn]] void fail(const Parts&... parts) {
    std::ostringstream os;
    (os << ... << parts);
    throw Error(os.str());
}

}  // namespace bnn

/// BNN_CHECK(cond, pieces...): throws bnn::Error built from the pieces when cond is false.
#define BNN_CHECK(cond, ...)                  \
    do {                                      \
        if (!(cond)) ::bnn::fail(__VA_ARGS__); \
    } while (0)
