// Root filesystems from image layers: each layer unpacked once into a shared
// cache keyed by diff ID, and an overlayfs mount of those (read-only lowers)
// with a per-container upper directory.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "oci/digest.hpp"
#include "oci/image.hpp"

namespace cascade::registry {
class BlobStore;
}

namespace cascade::runtime {

// <root>/<diff-id hex>/ holds the unpacked layer. A layer is unpacked into a
// temporary directory and renamed into place, so a half-unpacked layer is
// never used; concurrent requests for the same layer wait for one unpack.
class LayerCache {
  public:
    LayerCache(std::filesystem::path root, registry::BlobStore& blobs);

    // The directory holding `layer` (the compressed blob) unpacked; its
    // uncompressed digest is `diff_id`.
    std::filesystem::path unpacked(const oci::Descriptor& layer, const oci::Digest& diff_id);

    // Unpacked directories of every layer of an image, bottom layer first.
    std::vector<std::filesystem::path> unpack_image(const oci::Manifest& manifest,
                                                    const oci::ImageConfig& config);

    // Moves `dir` into the cache as the unpacked layer `diff_id` (rename, no
    // copy). `dir` must already be in the cache's format, a lower dir of its
    // own (overlayfs whiteouts, opaque directories), with exactly the content
    // the layer unpacks to, e.g. an overlay upper dir just written as that
    // layer. False (and `dir` left alone) when the layer is cached already.
    bool adopt(const std::filesystem::path& dir, const oci::Digest& diff_id);

    const std::filesystem::path& root() const { return root_; }
    // An always-empty directory (lower for images without layers).
    std::filesystem::path empty_dir() const;

  private:
    std::filesystem::path root_;
    registry::BlobStore& blobs_;
    std::mutex mu_;
    std::map<std::string, std::shared_ptr<std::mutex>> in_progress_;
};

// An overlayfs mount at `target`: lowers given bottom first (as layers are),
// upper and work created if missing. Unmounted (MNT_DETACH) on destruction
// unless release()d. With no lowers, an empty lower is used.
class OverlayMount {
  public:
    OverlayMount() = default;
    OverlayMount(const std::vector<std::filesystem::path>& lowers_bottom_first,
                 const std::filesystem::path& upper, const std::filesystem::path& work,
                 const std::filesystem::path& target);
    OverlayMount(OverlayMount&& o) noexcept;
    OverlayMount& operator=(OverlayMount&& o) noexcept;
    ~OverlayMount();

    const std::filesystem::path& target() const { return target_; }
    void unmount();
    // Keeps the mount after destruction (ownership passes to whoever persists
    // the path, e.g. the supervisor across a daemon restart).
    std::filesystem::path release();

  private:
    std::filesystem::path target_;
};

// Unmounts `target` if it is a mount point (MNT_DETACH); no error if not.
void unmount_if_mounted(const std::filesystem::path& target);

}  // namespace cascade::runtime
