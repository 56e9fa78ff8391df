#include "runtime/container.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <fstream>
#include <thread>

#include "oci/error.hpp"
#include "oci/fs.hpp"
#include "runtime/seccomp.hpp"

namespace cascade::runtime {

namespace {

namespace stdfs = std::filesystem;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

constexpr const char* kLogName = "container.log";
// The init pid as started, kept so a stopped container's zombie can be found
// (runc reports pid 0 once a container has stopped).
constexpr const char* kPidName = "init.pid";
// The log shim's pid, so remove() can wait for it to write the rest.
constexpr const char* kShimPidName = "shim.pid";
constexpr milliseconds kShimWait{10000};
// How long a SIGKILLed container may take to be reported stopped before it is
// deleted by force anyway.
constexpr milliseconds kKillWait{10000};

// runc's own rule for container IDs, and never a path component trick.
void check_id(const std::string& id) {
    bool ok = !id.empty() && id.size() <= 1024 && id != "." && id != "..";
    for (char c : id)
        ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' ||
                    c == '.' || c == '+');
    if (!ok)
        throw Error("invalid container id \"" + id +
                    "\": use letters, digits, '_', '-', '.', '+' only");
}

// The parent pid and state letter of `pid` per /proc; ppid -1 when gone.
std::pair<int, char> parent_and_state(int pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string stat;
    if (!std::getline(in, stat)) return {-1, 0};
    auto close = stat.rfind(')');
    if (close == std::string::npos) return {-1, 0};
    char state = 0;
    int ppid = -1;
    if (std::sscanf(stat.c_str() + close + 1, " %c %d", &state, &ppid) != 2) return {-1, 0};
    return {ppid, state};
}

bool is_our_child(int pid) {
    return pid > 0 && parent_and_state(pid).first == ::getpid();
}

// When the init of a stopped container is our child (we are a subreaper), its
// zombie is ours to collect.
void reap(int pid) {
    for (int i = 0; i < 200; i++) {
        int status = 0;
        pid_t r = ::waitpid(pid, &status, WNOHANG);
        if (r == pid || (r < 0 && errno != EINTR)) return;  // reaped, or ECHILD
        if (r == 0) std::this_thread::sleep_for(milliseconds(10));
    }
}

int recorded_pid(const stdfs::path& dir, const char* name = kPidName) {
    try {
        return std::stoi(fs::read_file(dir / name));
    } catch (const std::exception&) {
        return 0;
    }
}

// Polls runc until the container is stopped or gone; false after `limit`.
bool wait_stopped(Runc& runc, const std::string& id, milliseconds limit) {
    auto deadline = steady_clock::now() + limit;
    auto delay = milliseconds(10);
    while (true) {
        auto st = runc.state(id);
        if (!st || st->status == "stopped") return true;
        if (steady_clock::now() >= deadline) return false;
        auto left = std::chrono::duration_cast<milliseconds>(deadline - steady_clock::now());
        std::this_thread::sleep_for(std::min(delay, std::max(left, milliseconds(1))));
        delay = std::min(delay * 2, milliseconds(100));
    }
}

// Pid files are not fsynced: what they name (a process) does not outlive a
// crash of the machine, and a daemon killed with SIGKILL loses nothing that is
// in the page cache.
void write_pid_file(const stdfs::path& path, int pid) {
    fs::write_file_atomic(path, std::to_string(pid) + "\n", 0644, false);
}

bool holds_only_log(const stdfs::path& dir) {
    for (const auto& entry : stdfs::directory_iterator(dir))
        // "pod": kPodDirName (runtime/pod_bundle.hpp), written before start.
        if (!is_log_file_name(kLogName, entry.path().filename()) &&
            entry.path().filename() != "pod")
            return false;
    return true;
}

// Removes a bundle directory (nothing may be mounted in it any more), or
// everything in it but the log.
void remove_bundle(const stdfs::path& dir, bool keep_log) {
    if (!keep_log) return fs::remove_tree(dir);
    for (const auto& entry : stdfs::directory_iterator(dir))
        if (!is_log_file_name(kLogName, entry.path().filename())) fs::remove_tree(entry.path());
}

}  // namespace

ContainerHost::ContainerHost(std::filesystem::path root, LayerCache& layers, Runc& runc,
                             LogRotation rotation)
    : root_(std::filesystem::absolute(root).lexically_normal()),
      layers_(layers),
      runc_(runc),
      rotation_(rotation) {
    check_log_rotation(rotation_);
    fs::make_dirs(root_);
}

std::filesystem::path ContainerHost::log_path(const std::string& id) const {
    return root_ / id / kLogName;
}

int ContainerHost::start(const std::string& id, const oci::Manifest& manifest,
                         const oci::ImageConfig& config, const BundleOptions& options) {
    check_id(id);
    const auto dir = bundle_dir(id);
    // A directory left by remove(id, keep_log=true) holds only the log; a new
    // start under the same id appends to it. Creating rootfs/ claims it.
    bool reused = false;
    if (::mkdir(dir.c_str(), 0700) != 0) {
        if (errno != EEXIST) throw sys_error("mkdir", dir.string(), errno);
        if (!holds_only_log(dir) || ::mkdir((dir / "rootfs").c_str(), 0755) != 0)
            throw Error("container " + id + " already exists at " + dir.string() +
                        "; stop or remove it first");
        reused = true;
    }
    auto discard = [&] {
        try {
            unmount_if_mounted(dir / "rootfs");
            remove_bundle(dir, reused);
        } catch (const Error&) {
        }
    };
    // runc's own test (libcontainer refuses an id whose state directory
    // exists), without running `runc state`.
    std::error_code exists_ec;
    if (stdfs::exists(stdfs::symlink_status(runc_.state_root() / id, exists_ec))) {
        discard();
        throw Error("container " + id + " already exists in runc (root " +
                    runc_.state_root().string() + "); remove it first");
    }
    bool runc_started = false;
    int shim_pid = 0;
    OverlayMount overlay;
    try {
        auto lowers = layers_.unpack_image(manifest, config);
        if (lowers.empty()) lowers.push_back(layers_.empty_dir());
        overlay = OverlayMount(lowers, dir / "upper", dir / "work", dir / "rootfs");
        // A 32-bit image runs only through the host's compat ABIs.
        if (!options.seccomp_compat_arches && needs_compat_arches(config.architecture)) {
            auto compat = options;
            compat.seccomp_compat_arches = true;
            write_bundle_config(dir, make_runtime_spec(dir / "rootfs", compat));
        } else {
            write_bundle_config(dir, make_runtime_spec(dir / "rootfs", options));
        }
        // The shim owns the pipe's read end; runc passes the write end through
        // to the container as stdout and stderr. Ours is closed right after.
        fs::Fd log = start_log_shim(log_path(id), rotation_, &shim_pid);
        write_pid_file(dir / kShimPidName, shim_pid);
        runc_started = true;
        int pid = runc_.run_detached(id, dir, log.get());
        log.reset();
        write_pid_file(dir / kPidName, pid);
        overlay.release();
        return pid;
    } catch (...) {
        if (runc_started) {
            try {
                runc_.remove(id, true);
            } catch (const Error&) {
            }
        }
        // Its pipe's write end is closed (gone with the container, or never
        // given to one): the shim ends at once.
        if (shim_pid > 0) wait_log_shim(shim_pid, log_path(id), kShimWait);
        try {
            overlay.unmount();
        } catch (const Error&) {
        }
        discard();
        throw;
    }
}

void ContainerHost::stop(const std::string& id, std::chrono::milliseconds grace, int signal) {
    check_id(id);
    auto st = runc_.state(id);
    if (st && st->status != "stopped" && st->status != "paused") {
        const int pid = st->pid;
        const bool ours = is_our_child(pid);
        bool stopped = false;
        if (signal != SIGKILL) {
            try {
                runc_.kill(id, signal);
            } catch (const Error&) {
                // It may have stopped in the meantime; the state decides.
            }
            stopped = wait_stopped(runc_, id, grace);
        }
        if (!stopped) {
            try {
                runc_.kill(id, SIGKILL);
            } catch (const Error&) {
            }
            wait_stopped(runc_, id, kKillWait);
        }
        if (ours) reap(pid);
    }
    // A paused container is killed and thawed by `runc delete --force`.
    remove(id);
}

void ContainerHost::remove(const std::string& id, bool keep_log) {
    check_id(id);
    const auto dir = bundle_dir(id);
    runc_.remove(id, true);
    // The init of a container that stopped by itself may be our zombie.
    if (int pid = recorded_pid(dir); is_our_child(pid) && parent_and_state(pid).second == 'Z')
        reap(pid);
    // The container is gone, so its shim reads EOF: once it exited, the log
    // is complete.
    if (int shim = recorded_pid(dir, kShimPidName); shim > 0)
        wait_log_shim(shim, log_path(id), kShimWait);
    // Detach first: removing the tree through a live overlay would only write
    // whiteouts into upper, and the lowers are shared.
    unmount_if_mounted(dir / "rootfs");
    std::error_code ec;
    if (!stdfs::exists(stdfs::symlink_status(dir, ec))) return;
    remove_bundle(dir, keep_log);
}

}  // namespace cascade::runtime
