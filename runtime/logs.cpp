#include "runtime/logs.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <set>
#include <thread>

#include "oci/error.hpp"
#include "runtime/log_shim.hpp"
#include "runtime/process.hpp"

extern char** environ;

namespace cascade::runtime {

namespace {

namespace stdfs = std::filesystem;
using std::chrono::milliseconds;

constexpr const char* kShimEnv = kLogShimEnv;
constexpr const char* kShimName = kLogShimName;
constexpr const char* kShimComm = kLogShimComm;
// Overrides where the shim executable is.
constexpr const char* kShimPathEnv = "CASCADE_LOG_SHIM_PATH";

// Runs before main (and before other static initializers) in every binary
// that links this file; only a process started by start_log_shim() has the
// marker.
__attribute__((constructor(101))) void log_shim_entry() {
    const char* spec = std::getenv(kShimEnv);
    if (spec == nullptr) return;
    ::_exit(run_log_shim(spec));
}

// The shim executable: $CASCADE_LOG_SHIM_PATH; else cascade-log-shim next to
// the running binary; else the one built with it (a test binary); else the
// running binary itself, whose constructor above runs the shim (slower to
// start, and it costs the memory of the whole binary per container).
std::string shim_executable() {
    if (const char* env = std::getenv(kShimPathEnv); env != nullptr && *env != '\0') {
        if (::access(env, X_OK) != 0)
            throw Error(std::string(kShimPathEnv) + " is " + env + ", which is not executable (" +
                        std::strerror(errno) + "); point it at the " + kShimName +
                        " binary or unset it");
        return env;
    }
    static const std::string beside = [] {
        std::error_code ec;
        auto self = stdfs::read_symlink("/proc/self/exe", ec);
        return ec ? std::string() : (self.parent_path() / kShimName).string();
    }();
    if (!beside.empty() && ::access(beside.c_str(), X_OK) == 0) return beside;
#ifdef CASCADE_LOG_SHIM_BUILD_PATH
    if (::access(CASCADE_LOG_SHIM_BUILD_PATH, X_OK) == 0) return CASCADE_LOG_SHIM_BUILD_PATH;
#endif
    return "/proc/self/exe";
}

// ---- shims started by this process -------------------------------------

std::mutex spawned_mu;
std::set<int> spawned;  // pids of shims that are our children, not yet reaped

bool is_spawned(int pid) {
    std::lock_guard lock(spawned_mu);
    return spawned.count(pid) > 0;
}

struct ProcStat {
    std::string comm;
    char state = 0;  // 0: no such process
    int ppid = -1;
};

ProcStat proc_stat(int pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string stat;
    if (!std::getline(in, stat)) return {};
    auto open = stat.find('(');
    auto close = stat.rfind(')');
    ProcStat out;
    if (open == std::string::npos || close == std::string::npos || close < open ||
        std::sscanf(stat.c_str() + close + 1, " %c %d", &out.state, &out.ppid) != 2)
        return {};
    out.comm = stat.substr(open + 1, close - open - 1);
    return out;
}

bool is_running_shim(int pid, const std::string& log) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
    std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return cmdline == std::string(kShimName) + '\0' + log + '\0';
}

// ---- reading ------------------------------------------------------------

struct Part {
    fs::Fd fd;
    dev_t dev = 0;
    ino_t ino = 0;
};

std::optional<Part> open_part(const std::string& path) {
    fs::Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) {
        if (errno == ENOENT) return std::nullopt;
        throw sys_error("open log", path, errno);
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) throw sys_error("stat log", path, errno);
    return Part{std::move(fd), st.st_dev, st.st_ino};
}

int highest_part(const std::string& log) {
    int n = 0;
    struct stat st {};
    while (::stat(log_part_path(log, n + 1).c_str(), &st) == 0)
        n++;
    return n;
}

// The log's files, oldest first, opened together: retried when the current
// file changed meanwhile (a rotation renames every part).
std::vector<Part> snapshot(const stdfs::path& log_path) {
    const std::string log = log_path.string();
    std::vector<Part> parts;
    for (int attempt = 0; attempt < 100; attempt++) {
        parts.clear();
        struct stat before {};
        const bool had = ::stat(log.c_str(), &before) == 0;
        for (int n = highest_part(log); n >= 1; n--)
            if (auto p = open_part(log_part_path(log, n))) parts.push_back(std::move(*p));
        auto current = open_part(log);
        bool stable = !had && !current;
        if (had && current && current->dev == before.st_dev && current->ino == before.st_ino) {
            struct stat now {};
            stable = ::fstat(current->fd.get(), &now) == 0 && now.st_size >= before.st_size;
        }
        if (current) parts.push_back(std::move(*current));
        if (stable) break;
        std::this_thread::sleep_for(milliseconds(1));
    }
    return parts;
}

// Appends what `fd` holds from `offset` on; returns the new offset.
int64_t read_from(int fd, int64_t offset, std::string& out, const std::string& where) {
    char buf[64 * 1024];
    while (true) {
        ssize_t n = ::pread(fd, buf, sizeof buf, offset);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw sys_error("read log", where, errno);
        if (n == 0) return offset;
        out.append(buf, static_cast<size_t>(n));
        offset += n;
    }
}

// The last `n` lines of `s` (a last line without newline counts).
std::string last_lines(const std::string& s, size_t n) {
    if (n == 0) return {};
    size_t pos = s.size();
    if (pos > 0 && s[pos - 1] == '\n') pos--;
    size_t count = 0;
    while (pos > 0) {
        auto nl = s.rfind('\n', pos - 1);
        if (nl == std::string::npos) break;
        if (++count == n) return s.substr(nl + 1);
        pos = nl;
    }
    return s;
}

}  // namespace

void check_log_rotation(const LogRotation& rotation) {
    if (rotation.max_bytes < 1)
        throw Error("log rotation: maxBytes is " + std::to_string(rotation.max_bytes) +
                    "; use a size of at least 1 byte");
    if (rotation.max_files < 1)
        throw Error("log rotation: maxFiles is " + std::to_string(rotation.max_files) +
                    "; use at least 1 (the current file)");
}

fs::Fd start_log_shim(const std::filesystem::path& log_in, LogRotation rotation, int* shim_pid) {
    check_log_rotation(rotation);
    const auto log = stdfs::absolute(log_in).lexically_normal();
    // Created here so that a missing directory is reported to the caller and
    // readers find the file at once.
    fs::open_or_throw(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);

    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) throw sys_error("pipe for log", log.string(), errno);
    fs::Fd read_end(p[0]), write_end(p[1]);

    std::vector<std::string> env;
    const std::string prefix = std::string(kShimEnv) + "=";
    for (char** e = environ; e && *e; e++)
        if (std::strncmp(*e, prefix.c_str(), prefix.size()) != 0) env.emplace_back(*e);
    env.push_back(prefix + std::to_string(rotation.max_bytes) + ":" +
                  std::to_string(rotation.max_files) + ":" + log.string());
    const std::string exe = shim_executable();
    SpawnOptions options;
    options.program = exe;
    options.stdin_fd = read_end.get();
    options.new_session = true;
    options.cwd = "/";
    options.blocked_signals.assign(std::begin(kLogShimIgnoredSignals),
                                   std::end(kLogShimIgnoredSignals));
    options.env = &env;
    options.what = "the log shim (" + exe + ") for " + log.string();
    pid_t pid = -1;
    {
        // Recorded before anyone can look for it (wait_log_shim).
        std::lock_guard lock(spawned_mu);
        pid = spawn_process({kShimName, log.string()}, options);
        spawned.insert(pid);
    }
    if (shim_pid) *shim_pid = pid;
    return write_end;
}

bool wait_log_shim(int pid, const std::filesystem::path& log_in, std::chrono::milliseconds limit) {
    if (pid <= 0) return true;
    const auto log = stdfs::absolute(log_in).lexically_normal().string();
    const auto deadline = std::chrono::steady_clock::now() + limit;
    auto delay = milliseconds(2);
    bool seen_running = false;
    while (true) {
        if (is_spawned(pid)) {
            // Our child: its pid cannot be reused before we reap it.
            int status = 0;
            pid_t r = ::waitpid(pid, &status, WNOHANG);
            if (r == pid || (r < 0 && errno == ECHILD)) {
                std::lock_guard lock(spawned_mu);
                spawned.erase(pid);
                return true;
            }
        } else if (is_running_shim(pid, log)) {
            seen_running = true;
        } else {
            // Gone, or a zombie: a shim reparented to us (we are a subreaper
            // and its starter died) is ours to reap.
            auto st = proc_stat(pid);
            if (st.state == 'Z' && st.ppid == ::getpid() && (seen_running || st.comm == kShimComm))
                ::waitpid(pid, nullptr, WNOHANG);
            return true;
        }
        if (std::chrono::steady_clock::now() >= deadline) return false;
        std::this_thread::sleep_for(delay);
        delay = std::min(delay * 2, milliseconds(50));
    }
}

std::vector<std::filesystem::path> log_files(const std::filesystem::path& log) {
    std::vector<stdfs::path> out;
    for (int n = highest_part(log.string()); n >= 1; n--)
        out.emplace_back(log_part_path(log.string(), n));
    std::error_code ec;
    if (stdfs::exists(log, ec)) out.push_back(log);
    return out;
}

bool is_log_file_name(const std::filesystem::path& log, const std::string& name) {
    const std::string base = log.filename().string();
    if (name == base) return true;
    if (name.size() <= base.size() + 1 || name.compare(0, base.size(), base) != 0 ||
        name[base.size()] != '.')
        return false;
    for (size_t i = base.size() + 1; i < name.size(); i++)
        if (name[i] < '0' || name[i] > '9') return false;
    return true;
}

void remove_log(const std::filesystem::path& log) {
    std::error_code ec;
    for (const auto& entry : stdfs::directory_iterator(log.parent_path(), ec))
        if (is_log_file_name(log, entry.path().filename().string()))
            if (::unlink(entry.path().c_str()) != 0 && errno != ENOENT)
                throw sys_error("remove log", entry.path().string(), errno);
}

std::string read_log(const std::filesystem::path& log, std::optional<size_t> tail_lines) {
    auto parts = snapshot(log);
    std::string out;
    if (!tail_lines) {
        for (const auto& p : parts)
            read_from(p.fd.get(), 0, out, log.string());
        return out;
    }
    if (*tail_lines == 0) return {};
    // Newest first, until the text holds enough lines.
    for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
        std::string s;
        read_from(it->fd.get(), 0, s, log.string());
        out.insert(0, s);
        if (static_cast<size_t>(std::count(out.begin(), out.end(), '\n')) > *tail_lines) break;
    }
    return last_lines(out, *tail_lines);
}

LogFollower::LogFollower(std::filesystem::path log, bool from_start,
                         std::optional<size_t> tail_lines)
    : log_(stdfs::absolute(log).lexically_normal()) {
    auto parts = snapshot(log_);
    if (parts.empty()) return;
    auto& newest = parts.back();
    tracked_.dev = newest.dev;
    tracked_.ino = newest.ino;
    if (from_start) {
        tail_lines_ = tail_lines;
        for (size_t i = 0; i + 1 < parts.size(); i++)
            backlog_.push_back(std::move(parts[i].fd));
    } else {
        struct stat st {};
        if (::fstat(newest.fd.get(), &st) != 0) throw sys_error("stat log", log_.string(), errno);
        tracked_.offset = st.st_size;
    }
    tracked_.fd = std::move(newest.fd);
}

std::string LogFollower::read_new() {
    std::string out;
    const std::string where = log_.string();
    for (auto& fd : backlog_)
        read_from(fd.get(), 0, out, where);
    backlog_.clear();
    if (tracked_.fd) tracked_.offset = read_from(tracked_.fd.get(), tracked_.offset, out, where);
    struct stat st {};
    const bool same = tracked_.fd && ::stat(log_.c_str(), &st) == 0 && st.st_dev == tracked_.dev &&
                      st.st_ino == tracked_.ino;
    if (!same) {
        // Rotated (or not there before): the renamed file is complete once the
        // current one changed; drain it, then every newer file in order.
        // Everything up to the newest part already read (the tracked one or
        // one read before) is old; what follows is new, oldest first.
        auto parts = snapshot(log_);
        if (tracked_.fd)
            tracked_.offset = read_from(tracked_.fd.get(), tracked_.offset, out, where);
        auto known = [&](const Part& p) {
            if (tracked_.fd && p.dev == tracked_.dev && p.ino == tracked_.ino) return true;
            return std::any_of(done_.begin(), done_.end(),
                               [&](const Tracked& t) { return p.dev == t.dev && p.ino == t.ino; });
        };
        size_t first_new = 0;
        for (size_t i = 0; i < parts.size(); i++)
            if (known(parts[i])) first_new = i + 1;
        // Parts gone from the window can never come back: forget them.
        std::erase_if(done_, [&](const Tracked& t) {
            return std::none_of(parts.begin(), parts.end(),
                                [&](const Part& p) { return p.dev == t.dev && p.ino == t.ino; });
        });
        for (size_t i = first_new; i < parts.size(); i++) {
            if (tracked_.fd) done_.push_back(std::move(tracked_));
            tracked_ = Tracked{};
            tracked_.offset = read_from(parts[i].fd.get(), 0, out, where);
            tracked_.fd = std::move(parts[i].fd);
            tracked_.dev = parts[i].dev;
            tracked_.ino = parts[i].ino;
        }
    }
    if (tail_lines_) {
        out = last_lines(out, *tail_lines_);
        tail_lines_.reset();
    }
    return out;
}

}  // namespace cascade::runtime
