// Image import: an image stream tag that follows an image in another registry
// (OpenShift's `spec.tags[].from: {kind: DockerImage, name: REF}`).
//
// `import` asks the remote what the reference resolves to now; when that is
// not where the tag points, it copies the image in (for an index, every child
// manifest with its blobs), then stores the manifests and moves the tag in one
// transaction with cause "import <reference>". Blobs are streamed into the
// BlobStore and verified; a failed import leaves nothing visible and the tag
// where it was. An unchanged remote moves nothing (no new generation).
//
// The schedule re-checks every scheduled tag on an interval, on its own
// thread; `enqueue` asks that thread to import a tag soon (e.g. after an
// ImageStream was applied).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "oci/digest.hpp"
#include "oci/reference.hpp"

namespace cascade::registry {

class Store;

// A registry an import may be served from instead of the reference's own
// (a mirror), tried before it.
struct ImportMirror {
    std::string host;       // "127.0.0.1:5001", "mirror.example.com"
    bool insecure = false;  // http:// or unverified TLS allowed
};

// One image stream tag that follows an external reference.
struct ImportSpec {
    std::string repository;  // the local image stream, "httpd"
    std::string tag;         // "2.4"
    std::string from;        // "docker.io/library/httpd:2.4"
    bool insecure = false;   // http:// or unverified TLS allowed
    bool scheduled = false;  // re-checked by the schedule
    // Tried in order before the reference's own registry; a mirror that fails
    // (unreachable, no such manifest, a bad blob …) passes to the next.
    std::vector<ImportMirror> mirrors;
    // "linux/amd64": when the reference is an index, only that platform's
    // manifest (and its blobs) is imported and the tag points at it; an index
    // without it is an error. Empty: the whole index.
    std::string platform;
};

struct ImportResult {
    std::string repository, tag;
    std::string from;  // normalised: "docker.io/library/httpd:2.4"
    oci::Digest digest;
    std::string media_type;
    std::optional<oci::Digest> previous;  // where the tag pointed before
    bool moved = false;
    int64_t generation = 0;  // of the tag after the import (0 when it has none)
    int manifests = 0;       // manifests in the image (1, or 1 + children of an index)
    int blobs_fetched = 0;   // blobs downloaded
    int blobs_present = 0;   // blobs the store already had
    std::string registry;    // the host it came from (a mirror or the reference's own)
};

class Importer {
  public:
    // `auth_file`: a containers auth file (registry/remote.hpp), read at every
    // import so that edits need no restart; it need not exist.
    Importer(Store& store, std::filesystem::path auth_file);
    ~Importer();  // stops the schedule
    Importer(const Importer&) = delete;
    Importer& operator=(const Importer&) = delete;

    // Imports one tag now. Throws cascade::Error naming the reference, the
    // registry and what failed (a RemoteError with the HTTP status when the
    // registry answered with an error, 0 when it did not answer). Imports of
    // the same tag run one at a time.
    ImportResult import(const ImportSpec& spec);

    // Why the last import of REPOSITORY:TAG failed (by import() or the
    // schedule); empty once one succeeds, or when none failed since the
    // daemon started.
    std::string last_error(const std::string& repository, const std::string& tag) const;

    // The tags the schedule re-checks (asked again on every round).
    using ScheduledSpecs = std::function<std::vector<ImportSpec>()>;
    void start_schedule(ScheduledSpecs specs, std::chrono::seconds interval);
    // Stops the schedule's thread, abandoning transfers in flight. Idempotent.
    void stop();
    // Imports `spec` on the schedule's thread soon (it must be running).
    void enqueue(const ImportSpec& spec);

    // Where the schedule reports what it did ("ImportMoved", "ImportFailed").
    void set_event_sink(
        std::function<void(const std::string& kind, const std::string& message)> sink);

  private:
    ImportResult import_now(const ImportSpec& spec);
    // One attempt from one registry (a mirror or the reference's own).
    void import_from(const ImportSpec& spec, const oci::Reference& ref, const ImportMirror& source,
                     ImportResult& result);
    void run_schedule();
    void emit(const std::string& kind, const std::string& message);
    std::mutex& tag_mutex(const std::string& key);

    Store& store_;
    std::filesystem::path auth_file_;
    std::atomic<bool> stopping_{false};

    std::mutex mu_;
    std::condition_variable cv_;
    std::map<std::string, std::unique_ptr<std::mutex>> tag_mutexes_;
    std::deque<ImportSpec> queue_;
    ScheduledSpecs specs_;
    std::chrono::seconds interval_{900};
    std::thread thread_;
    std::function<void(const std::string&, const std::string&)> sink_;
    mutable std::mutex errors_mu_;
    std::map<std::string, std::string> errors_;  // "repo:tag" -> the last failure
};

}  // namespace cascade::registry
