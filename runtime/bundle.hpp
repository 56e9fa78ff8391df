// runc bundles: the OCI runtime spec (config.json) generated from an image
// config plus what the caller asks for.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "oci/image.hpp"
#include "runtime/pod_spec.hpp"

namespace cascade::runtime {

enum class NetworkMode {
    Own,   // a new network namespace with only loopback
    Host,  // the host's network namespace
    None,  // a new namespace, same as Own (no interfaces but lo)
};

struct ProcessUser {
    uint32_t uid = 0, gid = 0;
    std::vector<uint32_t> additional_gids;
};

// Resolves an image USER ("name", "uid", "name:group", "uid:gid") against the
// rootfs's /etc/passwd and /etc/group, reading them inside `rootfs` (a symlink
// cannot point the lookup outside it). Throws naming the user when unknown.
ProcessUser resolve_user(const std::filesystem::path& rootfs, const std::string& user);

struct BundleOptions {
    std::vector<std::string> args;  // the full argv
    std::vector<std::string> env;   // "K=V"
    std::string cwd = "/";
    std::string user;  // image USER syntax; resolved via resolve_user
    std::string hostname = "cascade";
    NetworkMode network = NetworkMode::Own;
    bool readonly_rootfs = false;
    // Extra bind mounts: host path → container path (read-only when flagged).
    struct Bind {
        std::filesystem::path source;
        std::string destination;
        bool readonly = false;
    };
    std::vector<Bind> binds;
    // tmpfs mounts (before the binds, so a bind may land inside one).
    struct Tmpfs {
        std::string destination;
        std::vector<std::string> options;  // e.g. "size=65536k"
    };
    std::vector<Tmpfs> tmpfs;
    // Docker's default seccomp profile (runtime/seccomp.hpp); false: none.
    bool seccomp = true;
    // The profile also admits the host's 32-bit ABIs (x86 and x32 on x86_64),
    // as Docker's does: what RUN steps get. Replicas get the native ABI only
    // unless they ask (DeploymentSpec::seccomp_compat_arches) or the image is
    // 32-bit (ContainerHost::start); see default_seccomp_profile.
    bool seccomp_compat_arches = true;
    // Host files bound in as /etc/resolv.conf and /etc/hosts (when set).
    std::optional<std::filesystem::path> resolv_conf, hosts;
    // cgroup limits (linux.resources, runtime/cgroups.hpp) and the cgroup runc
    // creates for the container (cgroupsPath; empty: runc's default).
    Resources resources;
    std::string cgroups_path;
};

// The argv, env and cwd the image's config implies (Entrypoint + Cmd, Env,
// WorkingDir, User), with `override_args` replacing Cmd when non-empty.
BundleOptions options_from_image(const oci::ContainerConfig& config,
                                 const std::vector<std::string>& override_args = {});

// The runtime spec for a rootfs at `<bundle>/rootfs`: namespaces (pid, ipc,
// uts, mount, network unless host), the default mounts (/proc, /dev, /dev/pts,
// /dev/shm, /dev/mqueue, /sys), a Docker-like capability set, no_new_privs,
// masked and read-only kernel paths, Docker's default seccomp profile.
nlohmann::json make_runtime_spec(const std::filesystem::path& rootfs, const BundleOptions& options);

// Writes config.json into `bundle_dir` (atomically).
void write_bundle_config(const std::filesystem::path& bundle_dir, const nlohmann::json& spec);

}  // namespace cascade::runtime
