// Helpers shared by the test suites: commands, ports, a daemon under test.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace cascade::test {

struct CommandResult {
    int exit_code = -1;  // 128+signal when killed (e.g. by the timeout)
    std::string out;
    std::string err;
};

// Runs argv (PATH lookup), capturing stdout/stderr; kills it after `timeout`.
CommandResult run(const std::vector<std::string>& argv,
                  std::chrono::seconds timeout = std::chrono::seconds(120),
                  const std::map<std::string, std::string>& extra_env = {},
                  const std::string& stdin_data = {});

// True when `program` is found on PATH.
bool have_program(const std::string& program);

// A TCP port on 127.0.0.1 that was free a moment ago (bind to 0, read, close).
// Ports handed out by one process never repeat.
uint16_t free_port();

// The built cascade binary and the source tree.
std::string cascade_binary();
std::filesystem::path source_dir();

// Polls `fn` every 50 ms until it returns true or `timeout` passes.
bool eventually(const std::function<bool()>& fn, std::chrono::milliseconds timeout);

// A plain HTTP GET to http://127.0.0.1:port/path with a Host header; returns
// status and body, or nullopt when the connection failed.
struct HttpResponse {
    int status = 0;
    std::string body;
};
std::optional<HttpResponse> http_get(
    uint16_t port, const std::string& path = "/", const std::string& host = "127.0.0.1",
    std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));

// True when a TCP connection to 127.0.0.1:port is accepted.
bool port_open(uint16_t port);

// `cascade serve --root <root> --listen 127.0.0.1:<port> --router-listen
// 127.0.0.1:<router port> extra_args…` in the background (the shared HTTP port
// of routes on a free port of its own, so daemons of parallel tests do not
// compete for 8080; extra_args may give another --router-listen, e.g. "off");
// ready once the port accepts connections. The destructor stops it (SIGTERM,
// then SIGKILL after 20 s) and waits.
class Daemon {
  public:
    explicit Daemon(std::filesystem::path root, uint16_t port = 0,
                    std::vector<std::string> extra_args = {});
    ~Daemon();
    Daemon(const Daemon&) = delete;
    Daemon& operator=(const Daemon&) = delete;

    uint16_t port() const { return port_; }
    uint16_t router_port() const { return router_port_; }  // the shared HTTP port of routes
    std::string host() const;                              // "http://127.0.0.1:<port>"
    std::string address() const;                           // "127.0.0.1:<port>"
    const std::filesystem::path& root() const { return root_; }
    // Runs `cascade --host <host> args…`.
    CommandResult cli(const std::vector<std::string>& args,
                      std::chrono::seconds timeout = std::chrono::seconds(300));
    void kill_hard();  // SIGKILL, for crash tests
    void start();      // (re)starts after kill_hard
    int pid() const { return pid_; }

  private:
    std::filesystem::path root_;
    uint16_t port_;
    uint16_t router_port_ = 0;
    int pid_ = -1;
    std::vector<std::string> extra_args_;
    std::string log_path_;
};

// Mount points at or below `dir` (this process's mount namespace).
std::vector<std::string> mounts_under(const std::filesystem::path& dir);

// Removes every runc container whose state lives under `runc_root`, and
// unmounts every mount point under `dir`. For test teardown.
void cleanup_state_root(const std::filesystem::path& dir);

// A self-signed certificate and its key for 127.0.0.1 and localhost (as
// subjectAltNames), made with `openssl req -x509`: <dir>/tls.crt and
// <dir>/tls.key. The certificate is its own CA (e.g. curl --cacert tls.crt).
struct TlsFiles {
    std::filesystem::path certificate;
    std::filesystem::path key;
};
TlsFiles make_self_signed_cert(const std::filesystem::path& dir);

// An htpasswd file of bcrypt entries, made with `htpasswd -Bbc` / `-Bb`.
void make_htpasswd(const std::filesystem::path& file,
                   const std::vector<std::pair<std::string, std::string>>& users);

// Runs `git -C dir args…` as the author "Test <test@example.com>"; a failure
// fails the test. Returns git's stdout without trailing newlines.
std::string git(const std::filesystem::path& dir, const std::vector<std::string>& args);

}  // namespace cascade::test
