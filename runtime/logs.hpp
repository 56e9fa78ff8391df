// Container logs: a log shim per container that writes the container's output
// to a file rotated by size, and readers of that file and its rotated parts.
//
// The shim (like podman's conmon) is a small process that owns the read end
// of a pipe whose write end is the container's stdout and stderr (runc run
// --detach passes it through to the init, no terminal). It appends what it
// reads to <log>; when the current file would grow beyond max_bytes, it is
// renamed to <log>.1 (older parts shift: .1 → .2 …; a file holds at most
// max_bytes bytes and there are at most max_files files, the current one
// included, like Docker's json-file max-size/max-file) and a new <log> is
// started. Whole lines go to one file where possible: a line is split only
// when it is longer than max_bytes, or when it stays unfinished for 100 ms.
// The shim exits on EOF, i.e. once the container and every process that
// inherited its output are gone.
//
// How it is started: start_log_shim() posix_spawn()s the small
// `cascade-log-shim` executable (runtime/log_shim*.cpp, libc only: it starts
// in about a millisecond and keeps a few hundred KiB per container) with
// CASCADE_LOG_SHIM=<max_bytes>:<max_files>:<log> in its environment, in a
// new session (POSIX_SPAWN_SETSID, so signals to the daemon's process group
// or terminal do not reach it), with the pipe's read end as stdin, /dev/null
// as stdout and stderr, no other fd (closefrom 3) and "/" as working
// directory. The executable is $CASCADE_LOG_SHIM_PATH when set, else
// cascade-log-shim next to the running binary, else the one of the build
// tree (test binaries), else /proc/self/exe: any binary that links logs.cpp
// can be a shim too, as a constructor in logs.cpp (priority 101: before main
// and before the other static initializers) sees the marker, runs the shim
// and _exit()s. No C++ code runs in a fork of the multithreaded daemon.
// argv is "cascade-log-shim <log>" for ps.
//
// The shim outlives the process that started it: a daemon killed with
// SIGKILL leaves its containers running and logging. Its parent reaps it:
// wait_log_shim() (ContainerHost::remove calls it once the container is
// gone, which also means the log is complete when remove returns); a shim
// whose parent died is reparented to the nearest subreaper or init.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "oci/fs.hpp"

namespace cascade::runtime {

struct LogRotation {
    int64_t max_bytes = 10 << 20;  // per file, >= 1
    int max_files = 3;             // the current file included, >= 1
};

// Throws cascade::Error when max_bytes or max_files is below 1.
void check_log_rotation(const LogRotation& rotation);

// Starts a shim writing to `log` (made absolute; its directory must exist)
// and returns the pipe's write end (O_CLOEXEC) to give to the container as
// stdout and stderr. Close it once the container runs: the shim exits when
// every copy is closed. `shim_pid`, when given, receives the shim's pid.
fs::Fd start_log_shim(const std::filesystem::path& log, LogRotation rotation,
                      int* shim_pid = nullptr);

// Waits up to `limit` for the shim `pid` writing `log` to exit, and reaps it
// when it is our child. True when it is gone (or `pid` is no such shim, e.g.
// the pid was reused after a restart); false when it still runs.
bool wait_log_shim(int pid, const std::filesystem::path& log, std::chrono::milliseconds limit);

// The log's files that exist: rotated parts oldest first (<log>.N … <log>.1),
// then <log>.
std::vector<std::filesystem::path> log_files(const std::filesystem::path& log);

// True when `name` is the file name of `log` or of one of its rotated parts
// ("container.log", "container.log.1", …).
bool is_log_file_name(const std::filesystem::path& log, const std::string& name);

// Removes the log and its rotated parts; missing files are fine.
void remove_log(const std::filesystem::path& log);

// The log's content: rotated parts oldest first, then the current file, read
// as one consistent snapshot (a rotation while reading is retried). With
// `tail_lines`, only the last that many lines (a last line without its
// newline counts). Empty when there is no log.
std::string read_log(const std::filesystem::path& log, std::optional<size_t> tail_lines = {});

// Follows a log across rotations, like `tail -F`, by inode and offset: each
// read_new() returns the bytes appended since the previous call, every byte
// once. The file being read is kept open, so a rotation (even one that
// removes it) loses nothing of it; on rotation it is drained first, then the
// newer parts, then the current file. Only when more than max_files - 1
// rotations happen between two calls are the parts in between gone.
class LogFollower {
  public:
    // from_start: the first read_new() returns the whole log (rotated parts
    // first; with `tail_lines`, only the last that many lines of it), then
    // what follows. Otherwise: only what is written after construction.
    explicit LogFollower(std::filesystem::path log, bool from_start = false,
                         std::optional<size_t> tail_lines = {});

    std::string read_new();

  private:
    struct Tracked {
        fs::Fd fd;
        dev_t dev = 0;
        ino_t ino = 0;
        int64_t offset = 0;
    };
    std::filesystem::path log_;
    Tracked tracked_;
    // Parts read to their end and rotated away, still in the log's window:
    // never read again. Their fds are held, so their inode numbers stay theirs.
    std::vector<Tracked> done_;
    std::deque<fs::Fd> backlog_;  // older parts to read fully first (from_start)
    std::optional<size_t> tail_lines_;
};

}  // namespace cascade::runtime
