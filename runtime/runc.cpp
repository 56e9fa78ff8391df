#include "runtime/runc.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include <nlohmann/json.hpp>

#include "oci/error.hpp"
#include "oci/fs.hpp"
#include "runtime/process.hpp"

namespace cascade::runtime {

namespace {

std::string join_args(const std::vector<std::string>& args) {
    std::string out;
    for (const auto& a : args) {
        if (!out.empty()) out += ' ';
        out += a;
    }
    return out;
}

// Starts argv[0] (PATH lookup) with stdin from /dev/null, stdout/stderr on the
// given fds and no other fd open. Returns the pid.
pid_t spawn(const std::vector<std::string>& argv, int stdout_fd, int stderr_fd) {
    SpawnOptions options;
    options.stdout_fd = stdout_fd;
    options.stderr_fd = stderr_fd;
    options.path_lookup = true;
    options.what = argv.at(0) + " (set CASCADE_RUNC to the runc binary's path)";
    return spawn_process(argv, options);
}

// Waits for `pid`; returns its exit code, 128+signal when killed.
int wait_exit(pid_t pid, const std::string& what) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) throw sys_error("waitpid for", what, errno);
    }
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return -1;
}

// True once `pid` (our child) has exited, without reaping it; false when it
// still runs after `timeout`.
bool exited_within(pid_t pid, std::chrono::milliseconds timeout) {
    int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    if (fd < 0) return true;  // gone already (or no pidfds): waitpid decides
    fs::Fd pidfd(fd);
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (true) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) return false;
        pollfd p{pidfd.get(), POLLIN, 0};
        int n = ::poll(&p, 1, static_cast<int>(left.count()));
        if (n > 0) return true;
        if (n < 0 && errno != EINTR) return true;
    }
}

struct Captured {
    int exit_code = -1;
    std::string out, err;
};

// Runs argv with stdout and stderr captured through pipes.
Captured run_capture(const std::vector<std::string>& argv) {
    int out_pipe[2], err_pipe[2];
    if (::pipe2(out_pipe, O_CLOEXEC) != 0) throw sys_error("pipe", "", errno);
    fs::Fd out_r(out_pipe[0]), out_w(out_pipe[1]);
    if (::pipe2(err_pipe, O_CLOEXEC) != 0) throw sys_error("pipe", "", errno);
    fs::Fd err_r(err_pipe[0]), err_w(err_pipe[1]);

    pid_t pid = spawn(argv, out_w.get(), err_w.get());
    out_w.reset();
    err_w.reset();

    Captured result;
    pollfd fds[2] = {{out_r.get(), POLLIN, 0}, {err_r.get(), POLLIN, 0}};
    std::string* sinks[2] = {&result.out, &result.err};
    int open_count = 2;
    char buf[8192];
    while (open_count > 0) {
        int n = ::poll(fds, 2, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            ::kill(pid, SIGKILL);
            wait_exit(pid, argv[0]);
            throw sys_error("poll output of", join_args(argv), e);
        }
        for (int i = 0; i < 2; i++) {
            if (fds[i].fd < 0 || fds[i].revents == 0) continue;
            ssize_t r = ::read(fds[i].fd, buf, sizeof buf);
            if (r > 0) {
                sinks[i]->append(buf, static_cast<size_t>(r));
            } else if (r == 0 || errno != EINTR) {
                fds[i].fd = -1;
                open_count--;
            }
        }
    }
    result.exit_code = wait_exit(pid, join_args(argv));
    return result;
}

std::string trim(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r'))
        s.pop_back();
    return s;
}

bool says_not_exist(const std::string& err) {
    return err.find("does not exist") != std::string::npos ||
           err.find("not found") != std::string::npos;
}

RuncState state_from_json(const nlohmann::json& j) {
    RuncState s;
    s.id = j.value("id", "");
    s.pid = j.value("pid", 0);
    s.status = j.value("status", "");
    s.bundle = j.value("bundle", "");
    return s;
}

// A scratch directory for one runc invocation's --log and --pid-file, so its
// own error messages can be told apart from the container's output.
class RuncScratch {
  public:
    RuncScratch() : dir_({}, "cascade-runc-") {}
    std::filesystem::path log() const { return dir_.path() / "runc.log"; }
    std::filesystem::path pid_file() const { return dir_.path() / "pid"; }

    // The messages runc logged at error level (its JSON log), joined.
    std::string errors() const {
        std::string text;
        try {
            text = fs::read_file(log());
        } catch (const Error&) {
            return {};
        }
        std::string out;
        std::istringstream lines(text);
        std::string line;
        while (std::getline(lines, line)) {
            auto j = nlohmann::json::parse(line, nullptr, false);
            if (j.is_discarded() || !j.is_object()) continue;
            auto level = j.value("level", "");
            if (level != "error" && level != "fatal" && level != "panic") continue;
            if (!out.empty()) out += "; ";
            out += j.value("msg", "");
        }
        return out;
    }

  private:
    fs::TempDir dir_;
};

}  // namespace

Runc::Runc(std::filesystem::path state_root, std::string binary)
    : state_root_(std::filesystem::absolute(state_root).lexically_normal()),
      binary_(std::move(binary)) {
    if (binary_.empty()) {
        const char* env = std::getenv("CASCADE_RUNC");
        binary_ = env && *env ? env : "runc";
    }
}

std::vector<std::string> Runc::base_args() const {
    return {binary_, "--root", state_root_.string()};
}

int Runc::run(const std::string& id, const std::filesystem::path& bundle, int stdout_fd,
              int stderr_fd) {
    RuncScratch scratch;
    auto argv = base_args();
    argv.insert(argv.end(), {"--log", scratch.log().string(), "--log-format", "json", "run",
                             "--bundle", bundle.string(), id});
    pid_t pid = spawn(argv, stdout_fd, stderr_fd);
    int code = wait_exit(pid, "runc run " + id);
    if (code != 0) {
        auto errors = scratch.errors();
        if (!errors.empty())
            throw Error("runc run " + id + " (bundle " + bundle.string() + ") failed: " + errors);
    }
    return code;
}

int Runc::run_detached(const std::string& id, const std::filesystem::path& bundle, int log_fd) {
    RuncScratch scratch;
    auto argv = base_args();
    argv.insert(argv.end(),
                {"--log", scratch.log().string(), "--log-format", "json", "run", "--detach",
                 "--pid-file", scratch.pid_file().string(), "--bundle", bundle.string(), id});
    // runc's stdout/stderr are the log: with --detach and no terminal the
    // container's init inherits them directly (pass-through), so its output
    // goes on reaching the log after runc exits.
    pid_t pid = spawn(argv, log_fd, log_fd);
    int code = wait_exit(pid, "runc run --detach " + id);
    if (code != 0) {
        auto errors = scratch.errors();
        throw Error("runc run --detach " + id + " (bundle " + bundle.string() + ") exited with " +
                    std::to_string(code) + ": " +
                    (errors.empty() ? "see the container log" : errors));
    }
    std::string pid_text;
    try {
        pid_text = trim(fs::read_file(scratch.pid_file()));
    } catch (const Error&) {
    }
    if (!pid_text.empty()) {
        try {
            return std::stoi(pid_text);
        } catch (const std::exception&) {
        }
    }
    auto st = state(id);
    if (!st || st->pid <= 0)
        throw Error("runc run --detach " + id + " reported no init pid (state " +
                    (st ? st->status : std::string("missing")) + ")");
    return st->pid;
}

void Runc::kill(const std::string& id, int signal, bool all) {
    auto argv = base_args();
    argv.push_back("kill");
    if (all) argv.push_back("--all");
    argv.push_back(id);
    argv.push_back(std::to_string(signal));
    auto r = run_capture(argv);
    if (r.exit_code != 0)
        throw Error("runc kill " + id + " " + std::to_string(signal) + " (root " +
                    state_root_.string() + "): " + trim(r.err));
}

void Runc::remove(const std::string& id, bool force) {
    auto argv = base_args();
    argv.push_back("delete");
    if (force) argv.push_back("--force");
    argv.push_back(id);
    auto r = run_capture(argv);
    if (r.exit_code != 0 && !says_not_exist(r.err))
        throw Error("runc delete " + id + " (root " + state_root_.string() + "): " + trim(r.err));
}

std::optional<RuncState> Runc::state(const std::string& id) {
    auto argv = base_args();
    argv.insert(argv.end(), {"state", id});
    auto r = run_capture(argv);
    if (r.exit_code != 0) {
        if (says_not_exist(r.err)) return std::nullopt;
        throw Error("runc state " + id + " (root " + state_root_.string() + "): " + trim(r.err));
    }
    auto j = nlohmann::json::parse(r.out, nullptr, false);
    if (j.is_discarded() || !j.is_object())
        throw Error("runc state " + id + " printed no JSON object: " + trim(r.out));
    return state_from_json(j);
}

std::vector<RuncState> Runc::list() {
    auto argv = base_args();
    argv.insert(argv.end(), {"list", "--format", "json"});
    auto r = run_capture(argv);
    if (r.exit_code != 0)
        throw Error("runc list (root " + state_root_.string() + "): " + trim(r.err));
    auto j = nlohmann::json::parse(r.out, nullptr, false);
    if (j.is_discarded()) throw Error("runc list printed no JSON: " + trim(r.out));
    std::vector<RuncState> out;
    if (j.is_array())
        for (const auto& c : j)
            if (c.is_object()) out.push_back(state_from_json(c));
    return out;
}

int Runc::exec(const std::string& id, const std::vector<std::string>& args, int stdout_fd,
               int stderr_fd, std::chrono::milliseconds timeout) {
    if (args.empty()) throw Error("runc exec " + id + ": no command given");
    RuncScratch scratch;
    auto argv = base_args();
    argv.insert(argv.end(), {"--log", scratch.log().string(), "--log-format", "json", "exec"});
    if (timeout.count() > 0) argv.insert(argv.end(), {"--pid-file", scratch.pid_file().string()});
    argv.push_back(id);
    argv.insert(argv.end(), args.begin(), args.end());
    pid_t pid = spawn(argv, stdout_fd, stderr_fd);
    if (timeout.count() > 0 && !exited_within(pid, timeout)) {
        // The process in the container first (runc exec then exits), then runc.
        try {
            int target = std::stoi(fs::read_file(scratch.pid_file()));
            if (target > 0) ::kill(target, SIGKILL);
        } catch (const std::exception&) {
        }
        ::kill(pid, SIGKILL);
        wait_exit(pid, "runc exec " + id);
        throw Error("runc exec " + id + " " + join_args(args) + ": timed out after " +
                    std::to_string(timeout.count()) + " ms; the process was killed");
    }
    int code = wait_exit(pid, "runc exec " + id);
    if (code != 0) {
        auto errors = scratch.errors();
        if (!errors.empty()) throw Error("runc exec " + id + " " + join_args(args) + ": " + errors);
    }
    return code;
}

}  // namespace cascade::runtime
