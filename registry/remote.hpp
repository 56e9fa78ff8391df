// A client of other registries: the Distribution Spec over libcurl, for
// importing images (registry/importer.hpp).
//
// Authentication follows the registry's challenge: every request goes out
// anonymously first; a 401 with `WWW-Authenticate: Basic` is retried with the
// credentials; one with `Bearer realm=…,service=…,scope=…` makes the client
// fetch a token from the realm (sending the credentials when it has them),
// cache it per repository and retry. TLS certificates are verified; only a
// remote marked insecure may be reached over plain http:// or with a
// certificate that does not verify. Blobs are streamed into the BlobStore,
// never held in memory, and every manifest and blob is checked against its
// digest. Errors name the registry, the repository, the request and the
// answer (HTTP status and the spec's error code).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "oci/digest.hpp"
#include "oci/error.hpp"
#include "oci/image.hpp"

namespace cascade::registry {

class BlobStore;

struct Credentials {
    std::string username;
    std::string password;
};

// A containers auth file, the format podman, skopeo and buildah read
// (containers-auth.json(5)): {"auths": {"host:port": {"auth": "base64(user:pass)"}}}.
// Keys may also name a repository ("host/team/app"), and Docker Hub may be
// spelled "docker.io", "index.docker.io", "registry-1.docker.io" or
// "https://index.docker.io/v1/".
class AuthFile {
  public:
    // A missing file has no entries; an unreadable or invalid one throws
    // cascade::Error naming the file and the entry.
    static AuthFile load(const std::filesystem::path& file);
    static AuthFile parse(const std::string& text, const std::string& where = "auth file");

    // The most specific entry for a repository: "domain/repo…" keys (longest
    // first), then "domain".
    std::optional<Credentials> find(const std::string& domain, const std::string& repository) const;
    bool empty() const { return entries_.empty(); }

  private:
    std::map<std::string, Credentials> entries_;
};

// The host a reference's domain is served from ("docker.io" → "registry-1.docker.io").
std::string registry_host(const std::string& domain);

struct RemoteOptions {
    // Allows http:// (tried when https:// fails) and TLS certificates that do
    // not verify. Off by default.
    bool insecure = false;
    std::optional<Credentials> credentials;
    std::chrono::seconds connect_timeout{15};
    std::chrono::seconds request_timeout{60};  // manifests, tokens, HEAD
    std::chrono::seconds stall_timeout{60};    // a blob download with no byte for this long fails
    // When set and true, transfers in flight are abandoned (daemon shutdown).
    const std::atomic<bool>* cancel = nullptr;
};

// A manifest as the remote sent it: exact bytes and the digest of those bytes.
struct RemoteManifest {
    std::string media_type;
    std::string bytes;
    oci::Digest digest;
};

struct ManifestHead {
    oci::Digest digest;
    std::string media_type;
    int64_t size = 0;
};

// A request the remote answered with an error status, or that failed.
struct RemoteError : Error {
    RemoteError(const std::string& message, long status) : Error(message), status(status) {}
    long status;  // HTTP status; 0 when no answer arrived
};

class RemoteRegistry {
  public:
    // `domain` as a reference names it: "docker.io", "quay.io", "127.0.0.1:5000".
    explicit RemoteRegistry(const std::string& domain, RemoteOptions options = {});
    ~RemoteRegistry();
    RemoteRegistry(const RemoteRegistry&) = delete;
    RemoteRegistry& operator=(const RemoteRegistry&) = delete;

    const std::string& host() const;

    // HEAD /v2/<repository>/manifests/<reference>: what a tag (or digest)
    // resolves to now. Falls back to a GET when the registry sends no
    // Docker-Content-Digest.
    ManifestHead head_manifest(const std::string& repository, const std::string& reference);

    // GET /v2/<repository>/manifests/<reference> (OCI and Docker schema 2
    // manifests and indexes). The bytes are checked against the digest when
    // `reference` is one, and against Docker-Content-Digest when sent.
    RemoteManifest get_manifest(const std::string& repository, const std::string& reference);

    // GET /v2/<repository>/blobs/<digest>, streamed into `blobs` and committed
    // only when digest and size match the descriptor. Returns false (and
    // fetches nothing) when the store already has the blob.
    bool fetch_blob(const std::string& repository, const oci::Descriptor& blob, BlobStore& blobs);

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace cascade::registry
