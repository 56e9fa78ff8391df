#include "engine/git_source.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <vector>

#include "oci/error.hpp"
#include "oci/fs.hpp"

extern char** environ;

namespace cascade::engine {

namespace {

struct GitResult {
    int exit_code = -1;
    std::string out, err;
};

// Runs git with `args` (stdin /dev/null, stdout and stderr captured), in its
// own process group so that the helpers it starts go with it when it has to
// be killed. Never prompts for credentials.
GitResult run_git(const std::vector<std::string>& args, const std::string& who) {
    int out_pipe[2], err_pipe[2];
    if (::pipe2(out_pipe, O_CLOEXEC) != 0) throw Error(who + ": pipe: " + std::strerror(errno));
    fs::Fd out_r(out_pipe[0]), out_w(out_pipe[1]);
    if (::pipe2(err_pipe, O_CLOEXEC) != 0) throw Error(who + ": pipe: " + std::strerror(errno));
    fs::Fd err_r(err_pipe[0]), err_w(err_pipe[1]);

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    struct ActionsGuard {
        posix_spawn_file_actions_t* a;
        ~ActionsGuard() { posix_spawn_file_actions_destroy(a); }
    } actions_guard{&actions};
    int rc = posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    if (rc == 0) rc = posix_spawn_file_actions_adddup2(&actions, out_w.get(), 1);
    if (rc == 0) rc = posix_spawn_file_actions_adddup2(&actions, err_w.get(), 2);
    if (rc != 0) throw Error(who + ": cannot prepare to run git: " + std::strerror(rc));

    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    struct AttrGuard {
        posix_spawnattr_t* a;
        ~AttrGuard() { posix_spawnattr_destroy(a); }
    } attr_guard{&attr};
    sigset_t all, none;
    sigfillset(&all);
    sigemptyset(&none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setflags(
        &attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP);

    std::vector<std::string> env;
    for (char** e = environ; e && *e; ++e) {
        std::string v = *e;
        if (v.rfind("GIT_TERMINAL_PROMPT=", 0) == 0 || v.rfind("LC_ALL=", 0) == 0) continue;
        env.push_back(std::move(v));
    }
    env.push_back("GIT_TERMINAL_PROMPT=0");  // fail rather than wait for a password
    env.push_back("LC_ALL=C");               // git's messages in English, for the errors
    std::vector<char*> cenv;
    for (auto& v : env)
        cenv.push_back(v.data());
    cenv.push_back(nullptr);
    std::vector<std::string> argv{"git"};
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<char*> cargv;
    for (auto& a : argv)
        cargv.push_back(a.data());
    cargv.push_back(nullptr);

    pid_t pid = -1;
    rc = posix_spawnp(&pid, "git", &actions, &attr, cargv.data(), cenv.data());
    if (rc != 0)
        throw Error(who + ": cannot run git (" + std::strerror(rc) +
                    "); install it (Debian: apt-get install git)");
    out_w.reset();
    err_w.reset();

    // Clones of big repositories over slow links take long, but a git that
    // hangs must not hold the build queue forever.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(30);
    GitResult result;
    pollfd fds[2] = {{out_r.get(), POLLIN, 0}, {err_r.get(), POLLIN, 0}};
    std::string* sinks[2] = {&result.out, &result.err};
    int open_count = 2;
    bool timed_out = false;
    while (open_count > 0) {
        int n = ::poll(fds, 2, 1000);
        if (n < 0 && errno != EINTR) break;
        if (std::chrono::steady_clock::now() > deadline) {
            ::kill(-pid, SIGKILL);
            timed_out = true;
            break;
        }
        for (int i = 0; i < 2; i++) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            char buf[8192];
            ssize_t got = ::read(fds[i].fd, buf, sizeof buf);
            if (got > 0) {
                sinks[i]->append(buf, static_cast<size_t>(got));
            } else if (got == 0 || errno != EINTR) {
                fds[i].fd = -1;
                open_count--;
            }
        }
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (timed_out) throw Error(who + ": git " + args.front() + " did not finish in 30 minutes");
    result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return result;
}

std::string trim(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' '))
        s.pop_back();
    size_t start = 0;
    while (start < s.size() && (s[start] == '\n' || s[start] == ' '))
        start++;
    return s.substr(start);
}

// A ref that can only be a commit: 4 to 40 hex digits.
bool looks_like_commit(const std::string& ref) {
    if (ref.size() < 4 || ref.size() > 40) return false;
    for (char c : ref)
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    return true;
}

}  // namespace

nlohmann::json GitRevision::to_json(const GitSource& source) const {
    return {{"type", "Git"},
            {"git",
             {{"uri", source.uri},
              {"ref", source.ref},
              {"commit", commit},
              {"author", author},
              {"message", message}}}};
}

GitRevision git_checkout(const GitSource& source, const std::filesystem::path& dir,
                         const std::string& who,
                         const std::function<void(const std::string&)>& log) {
    if (source.uri.empty()) throw Error(who + ": spec.source.git.uri is empty");
    if (!source.ref.empty() && source.ref[0] == '-')
        throw Error(who + ": spec.source.git.ref \"" + source.ref +
                    "\" is not a branch, tag or commit");
    const std::string what =
        source.uri + (source.ref.empty() ? std::string() : " (ref " + source.ref + ")");
    if (log) log("Cloning " + what);
    auto fail = [&](const std::string& step, const GitResult& r) {
        throw Error(who + ": git " + step + " of " + what + " failed (exit status " +
                    std::to_string(r.exit_code) + "): " + trim(r.err));
    };

    // A branch or tag: a shallow clone of just that ref. A commit (or a ref
    // the shallow clone could not find): a full clone, then a checkout.
    GitResult cloned;
    bool done = false;
    if (!looks_like_commit(source.ref)) {
        std::vector<std::string> args{"clone", "--quiet", "--depth", "1", "--no-tags"};
        if (!source.ref.empty()) args.insert(args.end(), {"--branch", source.ref});
        args.insert(args.end(), {"--", source.uri, dir.string()});
        cloned = run_git(args, who);
        done = cloned.exit_code == 0;
        if (!done && source.ref.empty()) fail("clone", cloned);
        if (!done) {
            std::error_code ec;
            std::filesystem::remove_all(dir, ec);
        }
    }
    if (!done) {
        auto full =
            run_git({"clone", "--quiet", "--no-checkout", "--", source.uri, dir.string()}, who);
        if (full.exit_code != 0) fail("clone", cloned.exit_code > 0 ? cloned : full);
        auto checkout = run_git(
            {"-C", dir.string(), "checkout", "--quiet", "--detach", source.ref + "^{commit}"}, who);
        if (checkout.exit_code != 0)
            throw Error(who + ": spec.source.git.ref \"" + source.ref +
                        "\" is not a branch, tag or commit of " + source.uri + ": " +
                        trim(checkout.err));
    }

    GitRevision rev;
    auto head = run_git({"-C", dir.string(), "log", "-1", "--format=%H%n%an <%ae>%n%s"}, who);
    if (head.exit_code != 0) fail("log", head);
    auto text = head.out;
    auto line = [&text]() {
        auto nl = text.find('\n');
        std::string l = text.substr(0, nl);
        text = nl == std::string::npos ? std::string() : text.substr(nl + 1);
        return l;
    };
    rev.commit = line();
    rev.author = line();
    rev.message = line();
    if (log) log("--> commit " + rev.commit + (rev.message.empty() ? "" : ": " + rev.message));
    return rev;
}

}  // namespace cascade::engine
