#pragma once
// The trainer's command line under mpirun: every rank parses its own, and the ranks agree on the
// outcome, so a mistake in the arguments all of them were given is printed once, not once per
// rank, and one in a single rank's arguments (mpirun -np 1 A : -np 1 B) names that rank.
#include <CLI/CLI.hpp>

#include <iostream>
#include <sstream>

#include "bnn/dist/agreed_error.hpp"
#include "distributed.hpp"

namespace trainer {

/// Parses the command line into `app`'s options. Returns -1 to go on, else the exit code (CLI11's:
/// 0 after --help, non-zero after an error).
inline int parse_command_line(CLI::App& app, int argc, char** argv) {
    std::ostringstream out, err;
    int code = -1;
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        code = app.exit(e, out, err);
    }
    bnn::dist::ProcessGroup* group = nullptr;
    try {
        group = &ranks();
    } catch (const bnn::Error&) {  // mpirun with a build without MPI: said once training starts
    }
    if (group == nullptr || group->size() == 1) {
        std::cout << out.str() << std::flush;
        std::cerr << err.str();
        return code;
    }
    try {
        bnn::dist::agree_on_errors(*group, code < 0 ? "" : out.str() + err.str(), "the command line");
    } catch (const bnn::dist::AgreedError& e) {
        if (e.reported_here())
            (code == 0 ? std::cout : std::cerr) << (e.where().empty() ? "" : "error " + e.where() + ": ") << e.what()
                                                << std::flush;
        group->barrier("the report of the command line's error");
        return code < 0 ? 1 : code;
    }
    return -1;
}

}  // namespace trainer
