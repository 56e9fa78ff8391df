// Images a build starts from or copies out of: FROM scratch, images in
// cascade's own store named as a Dockerfile names them, and images in other
// registries, pulled into the store as image streams. Internal to the engine.
//
// Where the store keeps an image of another registry: in the image stream
// named like the reference, its registry domain first with ':' as '-'
// ("127.0.0.1:5000/base:1" → stream "127.0.0.1-5000/base", tag "1";
// "docker.io/library/busybox:1.36" → "docker.io/library/busybox", tag "1.36";
// "quay.io/x/y@sha256:…" → "quay.io/x/y", tag "sha256-…"), moved by each pull
// with cause "import <reference>" exactly as `cascade import-image` moves it.
// A Docker Hub short name ("busybox", "library/busybox:1.36") names the store
// first: an image of that name there wins; when there is none (or it was
// pulled from docker.io before), docker.io/library/busybox is pulled through
// the configured mirrors into the stream of the short name ("busybox"), so
// that the trigger graph keys both cases the same way.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "engine/step.hpp"
#include "oci/digest.hpp"
#include "oci/reference.hpp"

namespace cascade::registry {
class Store;
}
namespace cascade::engine {
struct BuilderOptions;
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

// nullopt for a reference to another registry. `local_domains`: the
// daemon's own registry addresses, which name the store too.
std::optional<LocalImage> local_image(const oci::Reference& ref,
                                      const std::vector<std::string>& local_domains = {});

// Where the store keeps the image `ref` names, and what to pull into it.
struct ImageName {
    LocalImage local;         // the stream and tag in cascade's store, and the display name
    std::string tag;          // the stream tag the pull moves ("sha256-…" for a digest)
    std::string remote;       // normalised reference to pull; "" = the store only
    bool short_name = false;  // a Docker Hub short name: the store first
};
ImageName image_name(const oci::Reference& ref, const std::vector<std::string>& local_domains);

// The stream and tag the trigger graph keys on: "repo:tag" for an image of
// the store (and the stream a pulled image lands in), "repo@digest" for a digest.
std::string base_display_name(const std::string& text,
                              const std::vector<std::string>& local_domains = {});

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

// What FROM, COPY --from and RUN --mount=from= name: an image of the store,
// or one of another registry pulled into the store first (see above; a pull
// whose image is already stored downloads nothing). Errors name the
// reference, the registry and what to do. `log` gets progress lines.
ResolvedImage pull_image(registry::Store& store, const BuilderOptions& options,
                         const std::string& text, const std::string& where, const std::string& what,
                         const std::function<void(const std::string&)>& log = {});

// FROM scratch: no layers, the host platform, Docker's default PATH.
ImageState scratch_image();

}  // namespace cascade::engine
