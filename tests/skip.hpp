#pragma once
// BNN_SKIP(reason): ends the running test case as skipped, for a test that cannot run here (its
// data set is not installed, the CPU has no path to refuse, a feature is switched off).
//
// Catch2 v2 has no skip of its own, so the reason goes out as a warning starting with "SKIPPED:"
// and tests/CMakeLists.txt gives every discovered test the ctest property
// SKIP_REGULAR_EXPRESSION "SKIPPED:": ctest then lists the test as skipped, not passed. Run the
// test binary directly and the warning shows the reason.
#include <catch2/catch.hpp>

#define BNN_SKIP(reason)               \
    do {                               \
        WARN("SKIPPED: " << reason);   \
        return;                        \
    } while (false)
