// Starting helper processes (runc, the log shim) with posix_spawn: stdio
// wired to given fds or /dev/null, no other fd inherited, default signal
// dispositions and a chosen signal mask.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace cascade::runtime {

struct SpawnOptions {
    // The child's stdin, stdout and stderr: a fd of ours (dup'ed into the
    // child; ours stays open), or -1 for /dev/null.
    int stdin_fd = -1, stdout_fd = -1, stderr_fd = -1;
    std::string program;       // the executable; empty: argv[0]
    bool path_lookup = false;  // the executable searched in PATH (else a path)
    bool new_session = false;  // setsid(): no signals from our terminal or group
    std::string cwd;           // empty: ours
    // The child's signal mask (empty: none blocked); every disposition is reset.
    std::vector<int> blocked_signals;
    // The child's environment ("K=V"); nullptr: ours.
    const std::vector<std::string>* env = nullptr;
    // Names the process in errors: "start <what>: <strerror>".
    std::string what;
};

// Starts argv[0] with argv; returns its pid (the caller waits for it).
// Throws cascade::Error naming options.what when it cannot be started.
pid_t spawn_process(const std::vector<std::string>& argv, const SpawnOptions& options);

}  // namespace cascade::runtime
