#include "support.hpp"

#include <gtest/gtest.h>

#include "oci/fs.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <fstream>
#include <functional>
#include <mutex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace cascade::test {

namespace {

void set_nonblock(int fd) {
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

}  // namespace

CommandResult run(const std::vector<std::string>& argv, std::chrono::seconds timeout,
                  const std::map<std::string, std::string>& extra_env,
                  const std::string& stdin_data) {
    CommandResult result;
    int out[2], err[2], in[2];
    if (pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC) || pipe2(in, O_CLOEXEC)) return result;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        dup2(err[1], 2);
        setpgid(0, 0);
        for (auto& [k, v] : extra_env)
            setenv(k.c_str(), v.c_str(), 1);
        std::vector<char*> args;
        for (auto& a : argv)
            args.push_back(const_cast<char*>(a.c_str()));
        args.push_back(nullptr);
        execvp(args[0], args.data());
        dprintf(2, "exec %s: %s\n", args[0], strerror(errno));
        _exit(127);
    }
    close(out[1]);
    close(err[1]);
    close(in[0]);
    std::thread writer([fd = in[1], stdin_data] {
        size_t off = 0;
        while (off < stdin_data.size()) {
            ssize_t n = write(fd, stdin_data.data() + off, stdin_data.size() - off);
            if (n <= 0) break;
            off += n;
        }
        close(fd);
    });
    set_nonblock(out[0]);
    set_nonblock(err[0]);
    auto deadline = std::chrono::steady_clock::now() + timeout;
    bool open_out = true, open_err = true, killed = false;
    char buf[65536];
    while (open_out || open_err) {
        pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
        int left = std::chrono::duration_cast<std::chrono::milliseconds>(
                       deadline - std::chrono::steady_clock::now())
                       .count();
        if (left <= 0) {
            if (!killed) kill(-pid, SIGKILL), killed = true;
            left = 1000;
        }
        poll(fds, 2, left);
        for (int i = 0; i < 2; i++) {
            if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            ssize_t n = read(fds[i].fd, buf, sizeof buf);
            if (n > 0) {
                (i == 0 ? result.out : result.err).append(buf, n);
            } else if (n == 0 || errno != EAGAIN) {
                (i == 0 ? open_out : open_err) = false;
            }
        }
        if (killed && std::chrono::steady_clock::now() > deadline + std::chrono::seconds(5)) break;
    }
    close(out[0]);
    close(err[0]);
    writer.join();
    int status = 0;
    waitpid(pid, &status, 0);
    result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return result;
}

bool have_program(const std::string& program) {
    return run({"sh", "-c", "command -v " + program}, std::chrono::seconds(10)).exit_code == 0;
}

uint16_t free_port() {
    // The kernel picks a port no socket uses (listening, connected or in
    // TIME_WAIT); it walks its range, so processes rarely get the same one.
    // A port handed out once is never handed out again by this process.
    static std::mutex mu;
    static std::set<uint16_t> given;
    std::lock_guard lock(mu);
    for (int attempt = 0; attempt < 100; attempt++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        addr.sin_port = 0;
        socklen_t len = sizeof addr;
        bool ok = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
                  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
        close(fd);
        uint16_t port = ntohs(addr.sin_port);
        if (ok && port != 0 && given.insert(port).second) return port;
    }
    throw std::runtime_error("free_port: the kernel gave no unused port");
}

std::string cascade_binary() {
    return CASCADE_BINARY;
}
std::filesystem::path source_dir() {
    return CASCADE_SOURCE_DIR;
}

bool eventually(const std::function<bool()>& fn, std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (true) {
        if (fn()) return true;
        if (std::chrono::steady_clock::now() > deadline) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
}

std::optional<HttpResponse> http_get(uint16_t port, const std::string& path,
                                     const std::string& host, std::chrono::milliseconds timeout) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return std::nullopt;
    timeval tv{static_cast<time_t>(timeout.count() / 1000),
               static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port);
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        close(fd);
        return std::nullopt;
    }
    std::string req =
        "GET " + path + " HTTP/1.0\r\nHost: " + host + "\r\nConnection: close\r\n\r\n";
    if (write(fd, req.data(), req.size()) != static_cast<ssize_t>(req.size())) {
        close(fd);
        return std::nullopt;
    }
    std::string data;
    char buf[16384];
    while (true) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n > 0) {
            data.append(buf, n);
            continue;
        }
        if (n < 0) {
            close(fd);
            return std::nullopt;
        }
        break;
    }
    close(fd);
    auto line_end = data.find("\r\n");
    // Lenient like curl: CGI scripts often end their headers with a bare "\n\n".
    size_t head_end = data.find("\r\n\r\n"), sep = 4;
    if (head_end == std::string::npos) head_end = data.find("\n\n"), sep = 2;
    if (line_end == std::string::npos || head_end == std::string::npos) return std::nullopt;
    std::istringstream status_line(data.substr(0, line_end));
    std::string version;
    HttpResponse response;
    status_line >> version >> response.status;
    if (response.status == 0) return std::nullopt;
    response.body = data.substr(head_end + sep);
    return response;
}

bool port_open(uint16_t port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    close(fd);
    return ok;
}

Daemon::Daemon(std::filesystem::path root, uint16_t port, std::vector<std::string> extra_args)
    : root_(std::move(root)),
      port_(port ? port : free_port()),
      router_port_(free_port()),
      extra_args_(std::move(extra_args)) {
    log_path_ = (root_.parent_path() / ("daemon-" + std::to_string(port_) + ".log")).string();
    start();
}

void Daemon::start() {
    pid_ = fork();
    if (pid_ == 0) {
        int fd = open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        std::vector<std::string> args{cascade_binary(), "serve",    "--root",
                                      root_.string(),   "--listen", address()};
        if (std::find(extra_args_.begin(), extra_args_.end(), "--router-listen") ==
            extra_args_.end()) {
            args.push_back("--router-listen");
            args.push_back("127.0.0.1:" + std::to_string(router_port_));
        }
        args.insert(args.end(), extra_args_.begin(), extra_args_.end());
        std::vector<char*> argv;
        for (auto& a : args)
            argv.push_back(a.data());
        argv.push_back(nullptr);
        execv(argv[0], argv.data());
        _exit(127);
    }
    bool up = eventually([&] { return port_open(port_); }, std::chrono::seconds(30));
    if (!up) {
        std::string log;
        try {
            log = cascade::fs::read_file(log_path_);
        } catch (...) {
        }
        ADD_FAILURE() << "cascade serve did not answer on " << address()
                      << " within 30 s; its log:\n"
                      << log;
    }
}

std::string Daemon::host() const {
    return "http://" + address();
}
std::string Daemon::address() const {
    return "127.0.0.1:" + std::to_string(port_);
}

CommandResult Daemon::cli(const std::vector<std::string>& args, std::chrono::seconds timeout) {
    std::vector<std::string> argv{cascade_binary(), "--host", host()};
    argv.insert(argv.end(), args.begin(), args.end());
    return run(argv, timeout);
}

void Daemon::kill_hard() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
}

Daemon::~Daemon() {
    if (pid_ > 0) {
        kill(pid_, SIGTERM);
        for (int i = 0; i < 400; i++) {
            if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
                pid_ = -1;
                break;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        if (pid_ > 0) {
            kill(pid_, SIGKILL);
            waitpid(pid_, nullptr, 0);
        }
    }
}

std::vector<std::string> mounts_under(const std::filesystem::path& dir) {
    std::vector<std::string> out;
    std::ifstream in("/proc/self/mountinfo");
    std::string line;
    auto prefix = std::filesystem::weakly_canonical(dir).string();
    while (std::getline(in, line)) {
        std::istringstream fields(line);
        std::string id, parent, dev, root, target;
        fields >> id >> parent >> dev >> root >> target;
        if (target == prefix || target.rfind(prefix + "/", 0) == 0) out.push_back(target);
    }
    return out;
}

void cleanup_state_root(const std::filesystem::path& dir) {
    auto runc_root = dir / "runc";
    if (std::filesystem::exists(runc_root)) {
        auto listed =
            run({"runc", "--root", runc_root.string(), "list", "-q"}, std::chrono::seconds(30));
        std::istringstream ids(listed.out);
        std::string id;
        while (std::getline(ids, id)) {
            if (id.empty()) continue;
            run({"runc", "--root", runc_root.string(), "kill", id, "KILL"},
                std::chrono::seconds(10));
            run({"runc", "--root", runc_root.string(), "delete", "--force", id},
                std::chrono::seconds(30));
        }
    }
    // Unmount deepest first.
    auto targets = mounts_under(dir);
    std::sort(targets.rbegin(), targets.rend());
    for (auto& t : targets)
        umount2(t.c_str(), MNT_DETACH);
}

TlsFiles make_self_signed_cert(const std::filesystem::path& dir) {
    TlsFiles files{dir / "tls.crt", dir / "tls.key"};
    std::filesystem::create_directories(dir);
    auto r = run({"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                  "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                  "-keyout", files.key.string(), "-out", files.certificate.string()},
                 std::chrono::seconds(60));
    if (r.exit_code != 0) throw std::runtime_error("openssl req -x509 failed: " + r.err);
    return files;
}

void make_htpasswd(const std::filesystem::path& file,
                   const std::vector<std::pair<std::string, std::string>>& users) {
    bool first = true;
    for (const auto& [user, password] : users) {
        auto r = run({"htpasswd", first ? "-Bbc" : "-Bb", file.string(), user, password},
                     std::chrono::seconds(60));
        if (r.exit_code != 0) throw std::runtime_error("htpasswd failed: " + r.err);
        first = false;
    }
}

std::string git(const std::filesystem::path& dir, const std::vector<std::string>& args) {
    std::vector<std::string> argv{
        "git", "-C", dir.string(), "-c", "user.name=Test", "-c", "user.email=test@example.com"};
    argv.insert(argv.end(), args.begin(), args.end());
    auto r = run(argv);
    EXPECT_EQ(r.exit_code, 0) << "git " << args.front() << ": " << r.err;
    while (!r.out.empty() && r.out.back() == '\n')
        r.out.pop_back();
    return r.out;
}

}  // namespace cascade::test
