// Images a build starts from or copies out of: FROM scratch, and images in
// cascade's own store named as a Dockerfile names them. Internal to the engine.
#pragma once

#include <optional>
#include <string>

#include "engine/step.hpp"
#include "oci/digest.hpp"
#include "oci/reference.hpp"

namespace cascade::registry {
class Store;
}

namespace cascade::engine {

inline constexpr const char* kDefaultPath =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// The OCI architecture of the build host ("amd64", "arm64" …).
std::string host_arch();

// An image in cascade's own store. References without a domain or with
// "localhost[:port]" name a repository of the store by their path as written
// (no docker.io/library normalisation); the tag defaults to "latest".
struct LocalImage {
    std::string repository;  // "httpd-base"
    std::string reference;   // tag or digest
    std::string display;     // "httpd-base:latest", "httpd-base@sha256:…"
};

// nullopt for a reference to another registry.
std::optional<LocalImage> local_image(const oci::Reference& ref);

// Parses `text` (as FROM or COPY --from wrote it) into a LocalImage; throws
// "<where>: <what>: …" when it is invalid or names another registry.
LocalImage parse_local_image(const std::string& text, const std::string& where,
                             const std::string& what);

// "repo:tag" for an image of the store, the full reference otherwise.
std::string base_display_name(const std::string& text);

struct ResolvedImage {
    std::string name;    // LocalImage::display
    oci::Digest digest;  // what the name resolved to (a manifest or an index)
    ImageState image;    // the host platform's image; Docker layer types as OCI
};

// Looks the image up in the store (picking the host platform from an index).
// Missing: "<where>: <what>: no image <name> in cascade's registry; build or
// push it first".
ResolvedImage resolve_image(registry::Store& store, const LocalImage& name,
                            const std::string& where, const std::string& what);

// FROM scratch: no layers, the host platform, Docker's default PATH.
ImageState scratch_image();

}  // namespace cascade::engine
