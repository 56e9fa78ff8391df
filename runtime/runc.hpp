// A thin wrapper around the runc binary, with its own state directory
// (`runc --root <state>`), so cascade's containers never mix with others.
#pragma once

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace cascade::runtime {

struct RuncState {
    std::string id;
    int pid = 0;
    std::string status;  // "created", "running", "stopped", "paused"
    std::string bundle;
};

class Runc {
  public:
    // `binary` defaults to "runc" on PATH ($CASCADE_RUNC overrides).
    explicit Runc(std::filesystem::path state_root, std::string binary = {});

    // `runc run` in the foreground: waits for the container to exit; the
    // container's stdout/stderr go to the given fds. Returns its exit status
    // (128+signal when killed).
    int run(const std::string& id, const std::filesystem::path& bundle, int stdout_fd,
            int stderr_fd);

    // `runc run --detach`: the container's stdout and stderr go to `log_fd`
    // (append). Returns the container's init pid once it runs. The caller
    // should be a child subreaper so the init becomes its child.
    int run_detached(const std::string& id, const std::filesystem::path& bundle, int log_fd);

    void kill(const std::string& id, int signal, bool all = false);
    // `runc delete [--force]`; no error when the container does not exist.
    void remove(const std::string& id, bool force = false);
    std::optional<RuncState> state(const std::string& id);
    std::vector<RuncState> list();
    // `runc exec` of args in the container; returns exit status; output to fds.
    // With a positive `timeout`, the process is killed (SIGKILL) when it runs
    // longer, and Error is thrown ("timed out after …").
    int exec(const std::string& id, const std::vector<std::string>& args, int stdout_fd,
             int stderr_fd, std::chrono::milliseconds timeout = std::chrono::milliseconds(0));

    const std::filesystem::path& state_root() const { return state_root_; }

  private:
    std::vector<std::string> base_args() const;
    std::filesystem::path state_root_;
    std::string binary_;
};

}  // namespace cascade::runtime
