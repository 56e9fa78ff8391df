#include "engine/image_source.hpp"

#include "oci/error.hpp"
#include "oci/image.hpp"
#include "oci/media_types.hpp"
#include "registry/store.hpp"

namespace cascade::engine {

std::string host_arch() {
#if defined(__x86_64__)
    return "amd64";
#elif defined(__aarch64__)
    return "arm64";
#elif defined(__arm__)
    return "arm";
#elif defined(__powerpc64__)
    return "ppc64le";
#elif defined(__s390x__)
    return "s390x";
#elif defined(__riscv)
    return "riscv64";
#else
    return "unknown";
#endif
}

namespace {

bool is_local_domain(const std::string& domain) {
    return domain.empty() || domain == "localhost" || domain.rfind("localhost:", 0) == 0;
}

std::string oci_layer_media_type(const std::string& media_type) {
    if (media_type == oci::media::kDockerLayerGzip) return std::string(oci::media::kLayerGzip);
    return media_type;
}

}  // namespace

std::optional<LocalImage> local_image(const oci::Reference& ref) {
    if (!is_local_domain(ref.domain)) return std::nullopt;
    LocalImage image;
    image.repository = ref.path;
    if (ref.digest) {
        image.reference = ref.digest->str();
        image.display = ref.path + "@" + ref.digest->str();
    } else {
        image.reference = ref.tag.empty() ? "latest" : ref.tag;
        image.display = ref.path + ":" + image.reference;
    }
    return image;
}

// "repo:tag" for an image in cascade's store; the full reference otherwise.
std::string base_display_name(const std::string& text) {
    auto ref = oci::Reference::parse(text);
    if (auto local = local_image(ref)) return local->display;
    if (ref.tag.empty() && !ref.digest) ref.tag = "latest";
    return ref.str();
}

LocalImage parse_local_image(const std::string& text, const std::string& where,
                             const std::string& what) {
    oci::Reference ref;
    try {
        ref = oci::Reference::parse(text);
    } catch (const Error& e) {
        throw Error(where + ": " + what + ": " + e.what());
    }
    auto local = local_image(ref);
    if (!local)
        throw Error(where + ": " + what + ": images from other registries (" + ref.domain +
                    ") are not supported yet; copy the image into cascade's registry (e.g. "
                    "skopeo copy docker://" +
                    text + " docker://<cascade>/" + ref.path + ") and name it without a registry");
    return *local;
}

ResolvedImage resolve_image(registry::Store& store, const LocalImage& name,
                            const std::string& where, const std::string& what) {
    auto record = store.resolve(name.repository, name.reference);
    if (!record)
        throw Error(where + ": " + what + ": no image " + name.display +
                    " in cascade's registry; build or push it first");
    auto bytes = store.manifest_bytes(*record);
    oci::Manifest manifest;
    if (oci::media::is_index(record->media_type)) {
        auto index = oci::parse_index(bytes);
        const auto arch = host_arch();
        const oci::Descriptor* pick = nullptr;
        for (const auto& d : index.manifests) {
            if (d.platform && d.platform->os == "linux" && d.platform->architecture == arch &&
                oci::media::is_manifest(d.media_type)) {
                pick = &d;
                break;
            }
        }
        if (!pick)
            throw Error(where + ": " + what + ": " + name.display + " (" + record->digest.str() +
                        ") has no image for linux/" + arch);
        auto child = store.resolve(name.repository, pick->digest.str());
        if (!child)
            throw Error(where + ": " + what + ": the linux/" + arch + " image " +
                        pick->digest.str() + " of " + name.display +
                        " is missing from cascade's registry; push the image again");
        manifest = oci::parse_manifest(store.manifest_bytes(*child));
    } else if (oci::media::is_manifest(record->media_type)) {
        manifest = oci::parse_manifest(bytes);
    } else {
        throw Error(where + ": " + what + ": " + name.display + " is not an image (media type " +
                    record->media_type + ")");
    }
    ResolvedImage out;
    out.name = name.display;
    out.digest = record->digest;
    out.image.config = oci::parse_config(store.blobs().read(manifest.config.digest));
    if (out.image.config.diff_ids.size() != manifest.layers.size())
        throw Error(where + ": " + what + ": " + name.display + " is corrupt: its manifest has " +
                    std::to_string(manifest.layers.size()) + " layers, its config " +
                    std::to_string(out.image.config.diff_ids.size()) + " diff IDs");
    for (auto layer : manifest.layers) {
        layer.media_type = oci_layer_media_type(layer.media_type);
        out.image.layers.push_back(std::move(layer));
    }
    return out;
}

ImageState scratch_image() {
    ImageState s;
    s.config.architecture = host_arch();
    s.config.os = "linux";
    s.config.config.env = {std::string("PATH=") + kDefaultPath};
    return s;
}

}  // namespace cascade::engine
