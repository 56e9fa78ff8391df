#include "oci/media_types.hpp"

#include <array>

namespace cascade::oci::media {

bool is_manifest(std::string_view media_type) {
    return media_type == kImageManifest || media_type == kDockerManifest;
}

bool is_index(std::string_view media_type) {
    return media_type == kImageIndex || media_type == kDockerManifestList;
}

bool is_layer(std::string_view media_type) {
    static constexpr std::array<std::string_view, 11> kLayers = {
        kLayerTar,
        kLayerGzip,
        kLayerZstd,
        // Deprecated by image-spec 1.1 but still found in registries.
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
        kDockerLayerGzip,
        kDockerForeignLayerGzip,
        "application/vnd.docker.image.rootfs.diff.tar",
        "application/vnd.docker.image.rootfs.diff.tar.zstd",
        "application/vnd.docker.image.rootfs.foreign.diff.tar",
    };
    for (auto t : kLayers)
        if (media_type == t) return true;
    return false;
}

}  // namespace cascade::oci::media
