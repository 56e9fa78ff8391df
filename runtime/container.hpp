// Containers on disk and in runc: a bundle directory per container under
// <root>/<id>/ holding config.json, the overlay's upper and work directories,
// the rootfs mount point and the container's log file.
#pragma once

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>

#include "oci/image.hpp"
#include "runtime/bundle.hpp"
#include "runtime/logs.hpp"
#include "runtime/rootfs.hpp"
#include "runtime/runc.hpp"

namespace cascade::runtime {

class ContainerHost {
  public:
    // `rotation`: size-based rotation of every container's log (logs.hpp).
    ContainerHost(std::filesystem::path root, LayerCache& layers, Runc& runc,
                  LogRotation rotation = {});

    // Unpacks the image's layers (cached), mounts the overlay rootfs, writes
    // config.json from `options` (user resolved inside the rootfs) and runs the
    // container detached with stdout/stderr going through a log shim (logs.hpp)
    // into log_path(id), rotated per log_rotation(); the shim outlives the
    // daemon. Returns the init pid. On failure everything created is removed
    // again. A bundle directory that remove(id, keep_log=true) left is reused
    // (the log grows).
    int start(const std::string& id, const oci::Manifest& manifest, const oci::ImageConfig& config,
              const BundleOptions& options);

    // Sends `signal`, waits up to `grace` for the container to stop, then
    // SIGKILL; then remove(). Idempotent: a container already gone is fine.
    void stop(const std::string& id, std::chrono::milliseconds grace, int signal = 15);

    // Deletes a stopped container: runc delete --force, waits (up to 10 s) for
    // its log shim to write the rest and exit, unmounts, removes the bundle
    // directory except the log and its rotated parts when `keep_log`.
    void remove(const std::string& id, bool keep_log = false);

    std::optional<RuncState> state(const std::string& id) { return runc_.state(id); }
    std::filesystem::path bundle_dir(const std::string& id) const { return root_ / id; }
    // The current log file; rotated parts are log_path(id) + ".1", ".2", …
    // (read them all with read_log(log_path(id))).
    std::filesystem::path log_path(const std::string& id) const;
    const LogRotation& log_rotation() const { return rotation_; }
    const std::filesystem::path& root() const { return root_; }
    Runc& runc() { return runc_; }

  private:
    std::filesystem::path root_;
    LayerCache& layers_;
    Runc& runc_;
    LogRotation rotation_;
};

}  // namespace cascade::runtime
