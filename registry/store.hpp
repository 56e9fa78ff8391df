// The registry's store: repositories, manifests, tags and their history (image
// streams), on top of a BlobStore (bytes) and the Database (metadata).
//
// Manifest bytes are blobs too; the `manifests` table records which
// repository holds which manifest digest with its media type. Every tag move
// appends a row to the tag's history with a generation number (1, 2, 3 …) and
// notifies subscribers after the transaction committed.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <vector>

#include "oci/digest.hpp"
#include "oci/error.hpp"
#include "oci/image.hpp"
#include "registry/blob_store.hpp"
#include "registry/database.hpp"

namespace cascade::registry {

struct TagEvent {
    std::string repository;
    std::string tag;
    int64_t generation = 0;
    std::optional<oci::Digest> old_digest;  // none for a new tag
    oci::Digest new_digest;
    std::string cause;  // "push", "build httpd-base-2", "tag", "import"
    int64_t time = 0;   // unix seconds
};

struct TagHistoryEntry {
    int64_t generation = 0;
    oci::Digest digest;
    int64_t time = 0;
    std::string cause;
    // The manifest as it was when the tag moved (kept after it is deleted);
    // empty / 0 only for moves recorded before the store kept them and whose
    // manifest is gone.
    std::string media_type;
    int64_t size = 0;
};

// A manifest in a repository whose `subject` is some digest (OCI 1.1
// referrers), described as the referrers API lists it.
struct Referrer {
    oci::Digest digest;
    std::string media_type;
    int64_t size = 0;
    std::string artifact_type;  // manifest artifactType, else config mediaType; index: may be ""
    oci::Annotations annotations;
};

// How a manifest is stored by push_manifest.
struct ManifestPush {
    std::vector<std::string> tags;  // moved to the manifest, in the same transaction
    std::string cause = "push";
    // Every blob the manifest references must already be linked to the
    // repository (pushed or mounted there), not merely present in the store:
    // what HTTP clients send, so that a digest alone never grants access to
    // another repository's blobs.
    bool require_linked_blobs = false;
};

struct PushedManifest {
    oci::Digest digest;
    std::string media_type;
    std::optional<oci::Digest> subject;
};

struct ManifestRecord {
    oci::Digest digest;
    std::string media_type;
    int64_t size = 0;
};

class Store {
  public:
    Store(BlobStore& blobs, Database& db);

    BlobStore& blobs() { return blobs_; }
    Database& db() { return db_; }

    // Stores manifest bytes in `repo` (checking that every blob and child
    // manifest it references exists; throws ManifestBlobUnknown otherwise),
    // and when `tag` is non-empty moves the tag to it with `cause`.
    // Returns the manifest's digest.
    oci::Digest put_manifest(const std::string& repo, std::string_view bytes,
                             const std::string& media_type, const std::string& tag = {},
                             const std::string& cause = "push");
    // The same with any number of tags; `content_type` may carry parameters
    // or be generic (then the document's mediaType or shape decides). A
    // manifest with a `subject` is recorded as a referrer of that digest (the
    // subject need not exist).
    PushedManifest push_manifest(const std::string& repo, std::string_view bytes,
                                 const std::string& content_type, const ManifestPush& how);

    // Looks up a manifest by tag or digest string within `repo`.
    std::optional<ManifestRecord> resolve(const std::string& repo,
                                          const std::string& reference) const;
    std::string manifest_bytes(const ManifestRecord& m) const;

    // Moves a tag to a manifest already in `repo`. A move to the digest the tag
    // already points at records nothing and returns false.
    bool set_tag(const std::string& repo, const std::string& tag, const oci::Digest& digest,
                 const std::string& cause);
    bool delete_tag(const std::string& repo, const std::string& tag);
    bool delete_manifest(const std::string& repo, const oci::Digest& digest);

    std::vector<std::string> repositories() const;
    bool has_repository(const std::string& repo) const;
    std::vector<std::string> tags(const std::string& repo) const;
    std::optional<oci::Digest> tag_digest(const std::string& repo, const std::string& tag) const;
    // Newest first.
    std::vector<TagHistoryEntry> tag_history(const std::string& repo, const std::string& tag) const;
    bool has_manifest(const std::string& repo, const oci::Digest& digest) const;

    // Records that `repo` may serve this blob (after a push or mount).
    void link_blob(const std::string& repo, const oci::Digest& digest);
    bool repo_has_blob(const std::string& repo, const oci::Digest& digest) const;
    // Removes the link (DELETE /v2/<repo>/blobs/<digest>); the file stays for
    // the garbage collector. False when `repo` did not hold it.
    bool unlink_blob(const std::string& repo, const oci::Digest& digest);

    // Manifests in `repo` whose subject is `subject`, oldest first; only those
    // of `artifact_type` when it is non-empty.
    std::vector<Referrer> referrers(const std::string& repo, const oci::Digest& subject,
                                    const std::string& artifact_type = {}) const;

    // Garbage collection's guard (registry/gc.hpp): whatever makes a blob
    // reachable (committing and linking it, storing a manifest that
    // references it) holds it shared, the sweep exclusively, so a blob is
    // never removed between its commit or existence check and its link. A
    // thread may nest holds. Take it before, never inside, a transaction.
    class BlobHold {
      public:
        explicit BlobHold(Store& store);
        ~BlobHold();
        BlobHold(const BlobHold&) = delete;
        BlobHold& operator=(const BlobHold&) = delete;

      private:
        Store& store_;
        bool owner_ = false;
    };
    [[nodiscard]] BlobHold hold_blobs() { return BlobHold(*this); }
    [[nodiscard]] std::unique_lock<std::shared_mutex> exclusive_blob_lock() {
        return std::unique_lock(blob_mu_);
    }

    // Subscribers are called after a tag move committed, on the thread that
    // moved it. They must not block for long.
    using Subscriber = std::function<void(const TagEvent&)>;
    int subscribe(Subscriber fn);
    void unsubscribe(int id);

  private:
    void backfill_referrers();
    void publish(const TagEvent& e);
    BlobStore& blobs_;
    Database& db_;
    std::shared_mutex blob_mu_;  // see BlobHold
    std::mutex subs_mu_;
    std::vector<std::pair<int, Subscriber>> subs_;
    int next_sub_ = 1;
};

// Thrown by put_manifest when a referenced blob or manifest is missing.
struct ManifestBlobUnknown : Error {
    using Error::Error;
};
// Thrown by put_manifest when the bytes are not a valid manifest/index.
struct ManifestInvalid : Error {
    using Error::Error;
};

}  // namespace cascade::registry
