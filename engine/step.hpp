// One file-system step of a build: the parent image's layers mounted as an
// overlay with a fresh upper directory, a container run on it, and the upper
// directory written as the step's layer. Internal to the engine.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "oci/digest.hpp"
#include "oci/image.hpp"
#include "runtime/bundle.hpp"
#include "runtime/rootfs.hpp"

namespace cascade::registry {
class BlobStore;
}
namespace cascade::runtime {
class Runc;
}

namespace cascade::engine {

// An image under construction: its layers (as the manifest lists them) and
// its config (whose diff_ids match the layers).
struct ImageState {
    std::vector<oci::Descriptor> layers;
    oci::ImageConfig config;
};

// `image` mounted read-write at <dir>/bundle/rootfs: the lowers are its layers
// unpacked through the cache, the upper is <dir>/upper (mode 0755, empty).
// Unmounted on destruction; `dir` itself belongs to the caller.
class StepMount {
  public:
    StepMount(runtime::LayerCache& cache, const ImageState& image,
              const std::filesystem::path& dir);

    const std::filesystem::path& rootfs() const { return rootfs_; }
    const std::filesystem::path& bundle() const { return bundle_; }
    const std::filesystem::path& upper() const { return upper_; }

    // Unmounts, then drops from the upper dir the directories registered with
    // note_untouched_dir that are still empty and kept their metadata: they
    // were only copied up because a mount point was created in them.
    void unmount();
    // `path` (absolute in the rootfs) is a directory whose state before the
    // step was `before`.
    void note_untouched_dir(const std::string& path, const struct ::stat& before);

  private:
    std::filesystem::path upper_, bundle_, rootfs_;
    runtime::OverlayMount mount_;
    std::vector<std::pair<std::string, struct ::stat>> untouched_;
};

struct LayerOutput {
    oci::Descriptor descriptor;  // gzip layer blob, in the blob store
    oci::Digest diff_id;
};

// Writes an (unmounted) overlay upper directory as a gzip layer whose entry
// times are clamped to `epoch`, straight into the blob store's ingest
// directory, and adopts it. nullopt when the step changed nothing.
// With `cache`, the upper dir then moves into it as the layer's unpacked
// lower dir (times clamped like the tar's, overlay bookkeeping xattrs other
// than opaque dropped): the next step mounts it without unpacking the blob,
// and nobody deletes its files.
std::optional<LayerOutput> commit_upper(registry::BlobStore& blobs,
                                        const std::filesystem::path& upper, int64_t epoch,
                                        runtime::LayerCache* cache = nullptr);

using LogFn = std::function<void(const std::string&)>;

// Runs a container in the foreground on the mounted `mount` with `options`,
// streaming its stdout and stderr to `log` line by line. The mount points runc
// has to create in the rootfs (/proc, /dev, /sys, /etc/resolv.conf …) are
// removed again afterwards when they are still empty, and their existing
// parents noted as untouched, so they do not end up in the layer. The container is deleted however
// this ends. Returns its exit status.
//
// `keep` lists mount targets whose missing parent directories stay in the
// layer (empty), as buildah leaves them for RUN --mount=type=cache|bind|tmpfs;
// the target itself is removed.
int run_step_container(runtime::Runc& runc, const std::string& id, StepMount& mount,
                       const runtime::BundleOptions& options, const LogFn& log,
                       const std::vector<std::string>& keep = {});

}  // namespace cascade::engine
