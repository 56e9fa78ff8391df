// The log shim's own code (see runtime/logs.hpp): reads stdin until EOF into
// a log rotated by size. It uses libc and libstdc++ only, so that the small
// `cascade-log-shim` executable (runtime/log_shim_main.cpp) is built from it
// alone; runtime/logs.cpp starts that executable, or, when it cannot be
// found, the running binary, whose constructor runs the same code.
#pragma once

#include <signal.h>

#include <string>

namespace cascade::runtime {

// Carries <max_bytes>:<max_files>:<log> to the shim.
inline constexpr const char* kLogShimEnv = "CASCADE_LOG_SHIM";
// argv[0] of every shim (argv is "cascade-log-shim <log>"), and the name of
// the executable.
inline constexpr const char* kLogShimName = "cascade-log-shim";
// Its comm (at most 15 characters), which a zombie still shows.
inline constexpr const char* kLogShimComm = "cascade-logshim";
// A shim ends on EOF only: stop signals (e.g. to a whole session by a
// terminal) must not cut containers off their output. They are blocked from
// the spawn on and ignored by the shim.
inline constexpr int kLogShimIgnoredSignals[] = {SIGPIPE, SIGHUP,  SIGINT, SIGTERM,
                                                 SIGQUIT, SIGUSR1, SIGUSR2};

// <log> for n == 0, else <log>.<n>.
std::string log_part_path(const std::string& log, int n);

// Runs the shim for `spec` (<max_bytes>:<max_files>:<log>) on stdin; returns
// the exit status (2: a bad spec).
int run_log_shim(const char* spec);

}  // namespace cascade::runtime
