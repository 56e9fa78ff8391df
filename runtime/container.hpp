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
#include "runtime/rootfs.hpp"
#include "runtime/runc.hpp"

namespace cascade::runtime {

class ContainerHost {
  public:
    ContainerHost(std::filesystem::path root, LayerCache& layers, Runc& runc);

    // Unpacks the image's layers (cached), mounts the overlay rootfs, writes
    // config.json from `options` (user resolved inside the rootfs) and runs the
    // container detached with stdout/stderr appended to log_path(id). Returns
    // the init pid. On failure everything created is removed again. A bundle
    // directory that remove(id, keep_log=true) left is reused (the log grows).
    int start(const std::string& id, const oci::Manifest& manifest, const oci::ImageConfig& config,
              const BundleOptions& options);

    // Sends `signal`, waits up to `grace` for the container to stop, then
    // SIGKILL; then remove(). Idempotent: a container already gone is fine.
    void stop(const std::string& id, std::chrono::milliseconds grace, int signal = 15);

    // Deletes a stopped container: runc delete --force, unmount, remove the
    // bundle directory except the log when `keep_log`.
    void remove(const std::string& id, bool keep_log = false);

    std::optional<RuncState> state(const std::string& id) { return runc_.state(id); }
    std::filesystem::path bundle_dir(const std::string& id) const { return root_ / id; }
    std::filesystem::path log_path(const std::string& id) const;
    const std::filesystem::path& root() const { return root_; }
    Runc& runc() { return runc_; }

  private:
    std::filesystem::path root_;
    LayerCache& layers_;
    Runc& runc_;
};

}  // namespace cascade::runtime
