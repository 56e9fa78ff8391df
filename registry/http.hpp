// The Distribution Spec HTTP API (/v2/…, OCI Distribution Spec 1.1) over a
// Store, registered on an httplib::Server that the daemon owns (the registry,
// the API and, later, the console share one listener).
//
// Endpoints: the base check, _catalog, tags/list, manifests (GET/HEAD/PUT/
// DELETE by tag or digest), blobs (GET/HEAD with Range, DELETE), uploads
// (POST, single-POST ?digest=, ?mount=&from=, PATCH chunks, PUT, status GET,
// DELETE), referrers, and the proposed tag-history extension
// (GET /v2/<name>/_oci/tag-history/<tag>: an OCI image index of the manifests
// the tag pointed to, newest first, each descriptor annotated with
// kTagTimestampAnnotation, kTagEventAnnotation, kTagGenerationAnnotation and
// kTagCauseAnnotation). Every failure is a spec error code in the spec's JSON
// body ({"errors":[{"code","message","detail"}]}); a known endpoint asked with
// another method answers 405 UNSUPPORTED.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

namespace httplib {
class Server;
}

namespace cascade::registry {

class Store;

// Annotations of the tag-history descriptors. The first two are the names
// proposed for the extension (opencontainers/distribution-spec#606); the
// others are cascade's own.
inline constexpr std::string_view kTagTimestampAnnotation =
    "org.opencontainers.distribution.tag.timestamp";  // RFC 3339, when the tag moved
inline constexpr std::string_view kTagEventAnnotation =
    "org.opencontainers.distribution.tag.event";  // "created": the tag moved here
inline constexpr std::string_view kTagGenerationAnnotation = "io.cascade.tag.generation";
inline constexpr std::string_view kTagCauseAnnotation = "io.cascade.tag.cause";

struct DistributionOptions {
    // Upload sessions idle (no data, no status request) for longer are removed
    // (config uploads.expireSeconds).
    int64_t upload_expire_seconds = 24 * 3600;
    // How often the sweeper looks; zero: a tenth of the expiry, at least one
    // second and at most five minutes.
    std::chrono::milliseconds upload_sweep_interval{0};
    // Larger manifests are refused with 413 SIZE_INVALID (Distribution's limit).
    size_t max_manifest_bytes = 4 << 20;
    // Manifest bytes kept in memory by digest (they never change).
    size_t manifest_cache_bytes = 64 << 20;
    // Told what the sweeper removed or why it failed; stderr when unset.
    std::function<void(const std::string& message)> log;
};

// The registry's HTTP front: routes, upload sessions, the manifest cache and
// the sweeper of abandoned uploads. Its state is shared with the registered
// handlers, so it may be destroyed before the server; the sweeper thread
// stops in the destructor.
class Distribution {
  public:
    explicit Distribution(Store& store, DistributionOptions options = {});
    ~Distribution();
    Distribution(const Distribution&) = delete;
    Distribution& operator=(const Distribution&) = delete;

    void register_routes(httplib::Server& server);

    // Starts the periodic removal of expired upload sessions (a thread);
    // stop_upload_sweeper (or the destructor) ends it promptly.
    void start_upload_sweeper();
    void stop_upload_sweeper();
    // One sweep now; returns the number of sessions removed.
    size_t expire_uploads();

    struct State;

  private:
    std::shared_ptr<State> state_;
    std::thread sweeper_;
    std::mutex sweeper_mu_;
    std::condition_variable sweeper_cv_;
    bool stopping_ = false;
};

// Registers the /v2/ routes with default options and no sweeper (tests and
// tools that do not run a daemon).
void register_distribution_routes(httplib::Server& server, Store& store);

}  // namespace cascade::registry
