// `cascade impact IMAGE`: every image and every running replica built on an
// image, directly or through other images, and whether each has the image's
// current digest or an older generation of it.
//
// Pure: the daemon gathers the inputs (the tag's history, each digest's base
// from build records or the org.opencontainers.image.base.* annotations, the
// stream tags and the replicas) and this walks each digest's chain of bases.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace cascade::engine {

struct ImpactBase {
    std::string name;    // "httpd-base:latest" (as the build resolved FROM)
    std::string digest;  // "sha256:…"
};

struct ImpactReplica {
    std::string deployment;
    int index = 0;
    std::string digest;
    std::string state;
    std::string container;  // the replica's container id (its pod name)
};

struct ImpactInput {
    std::string target;             // as asked: "httpd-base:latest", "httpd-base@sha256:…"
    std::string target_repository;  // "httpd-base"
    std::string current_digest;     // counted as current
    // Every digest the target had (its tag's history): digest → generation
    // (the newest generation it was).
    std::map<std::string, int64_t> generations;
    // The base of an image digest, if it was built FROM one.
    std::function<std::optional<ImpactBase>(const std::string& digest)> base_of;
    std::vector<std::pair<std::string, std::string>> images;  // "stream:tag" → current digest
    std::vector<ImpactReplica> replicas;
};

struct ImpactRow {
    std::string kind;       // "Image" or "Replica"
    std::string name;       // "app-a:latest", "app-a/0"
    std::string container;  // replicas: the container id
    std::string digest;
    std::string base_digest;  // the target's digest it is built on (or runs)
    bool current = false;
    int64_t generation = 0;        // of base_digest; 0 when not in the tag's history
    std::vector<std::string> via;  // digests between it and the target, nearest first
    std::string status() const;    // "current", "outdated (gen N)", "outdated"
};

struct ImpactReport {
    std::string target;
    std::string current_digest;
    int64_t current_generation = 0;
    std::vector<ImpactRow> rows;  // images (by name), then replicas (by deployment, index)
    int replicas = 0;             // replicas built on the target
    int replicas_current = 0;
    nlohmann::json to_json() const;
    // "2 of 3 replicas on the current httpd-base (sha256:…)"
    std::string summary() const;
};

ImpactReport compute_impact(const ImpactInput& input);

// "registry:5000/a/b:tag@sha256:…" → "a/b" when the host part looks like a
// host (has '.' or ':' or is localhost), else "registry/a/b"-style unchanged.
std::string repository_of(const std::string& reference);

}  // namespace cascade::engine
