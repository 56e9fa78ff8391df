// Garbage collection of the registry: mark what is reachable, sweep the rest.
//
// Roots: every current tag; the newest `keep_generations` entries of every
// tag's history (so `cascade tag S:T#N` can roll back to them); every
// manifest and link younger than `grace_seconds`; and whatever the pluggable
// root sources return (digests of manifests — or of plain blobs — held
// outside the registry: the daemon registers the deployments' running and
// latest image digests; the build cache registers its entries when it comes,
// through the same add_root_source hook). Marking follows index → child
// manifests, manifest → config and layers, and keeps referrers (manifests
// whose `subject` is marked, in the same repository).
//
// Sweep: manifest rows and blob links that are not marked and older than the
// grace period, then blob files that nothing remaining references, links or
// roots and whose file is older than the grace period.
//
// Running while the daemon serves: the mark runs without locks; the sweep
// then takes Store::exclusive_blob_lock() (blob links, manifest stores and,
// through Store::hold_blobs(), blob commits hold it shared), marks again from
// scratch inside one database transaction (parsed manifests are cached by
// digest, so this is cheap), deletes the rows, commits, and removes the files
// while still holding the lock. A blob being uploaded lives in the ingest
// directory until it is committed and is never a candidate; a committed or
// mounted blob is linked at once (link time = now, protected by the grace
// period) and a manifest referencing it can only be stored while no sweep
// runs, so it is either seen by the sweep's mark or stored after the sweep.
//
// Crash safety: database rows go first, in one transaction, files after it
// committed. A SIGKILL at any point leaves either the old rows (nothing
// deleted yet, or some unreferenced files gone) or the new rows with some
// unreferenced files still on disk (the next run removes them). Every
// remaining manifest row keeps all its blobs, so every tag points at a
// complete manifest.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "oci/digest.hpp"

namespace cascade::registry {

class Store;

struct GcOptions {
    int keep_generations = 5;     // config gc.keepGenerations
    int64_t grace_seconds = 600;  // config gc.graceSeconds
};

struct GcReport {
    bool dry_run = false;
    std::vector<std::pair<std::string, oci::Digest>> manifests;  // (repository, digest)
    int64_t links = 0;                                           // blob links removed
    std::vector<oci::Digest> blobs;                              // files removed
    int64_t bytes = 0;                                           // their sizes
    int64_t marked_manifests = 0;
    int64_t young = 0;  // unreferenced but inside the grace period: kept
    double seconds = 0;
};

// {"dryRun", "manifests": [{"repository", "digest"}], "blobs": [digest…],
//  "links", "bytes", "markedManifests", "keptYoung", "seconds"}
nlohmann::json to_json(const GcReport& r);

class GarbageCollector {
  public:
    GarbageCollector(Store& store, GcOptions options);

    // Digests kept alive from outside the registry. Called at every run,
    // before the sweep takes its lock; must not call back into the store's
    // blob lock (plain store reads are fine).
    using RootSource = std::function<std::vector<oci::Digest>()>;
    void add_root_source(std::string name, RootSource source);

    // One collection; throws when another one is running. With `dry_run`
    // nothing is changed and the report says what would be removed.
    GcReport run(bool dry_run);

  private:
    struct Parsed {
        std::vector<oci::Digest> blobs;     // config, layers, blobs
        std::vector<oci::Digest> children;  // index manifests
        std::optional<oci::Digest> subject;
        bool ok = false;
    };
    struct Plan;
    const Parsed& parsed(const oci::Digest& manifest);
    Plan plan(const std::vector<oci::Digest>& external_roots, int64_t now);
    std::vector<oci::Digest> external_roots();

    Store& store_;
    GcOptions options_;
    std::mutex run_mu_;
    std::vector<std::pair<std::string, RootSource>> sources_;
    std::map<std::string, Parsed> parsed_;  // by manifest digest (content-addressed)
};

}  // namespace cascade::registry
