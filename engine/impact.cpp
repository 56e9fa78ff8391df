#include "engine/impact.hpp"

#include <algorithm>
#include <set>

namespace cascade::engine {

std::string repository_of(const std::string& reference) {
    std::string r = reference.substr(0, reference.find('@'));
    auto slash = r.rfind('/');
    auto colon = r.rfind(':');
    if (colon != std::string::npos && (slash == std::string::npos || colon > slash))
        r = r.substr(0, colon);
    auto first = r.find('/');
    if (first != std::string::npos) {
        auto host = r.substr(0, first);
        if (host.find('.') != std::string::npos || host.find(':') != std::string::npos ||
            host == "localhost")
            r = r.substr(first + 1);
    }
    return r;
}

std::string ImpactRow::status() const {
    if (current) return "current";
    if (generation > 0) return "outdated (gen " + std::to_string(generation) + ")";
    return "outdated";
}

namespace {

struct Found {
    std::string base_digest;
    std::vector<std::string> via;
};

// Walks the chain of bases from `digest` until it reaches a digest of the
// target (itself included when `self`).
std::optional<Found> find_target(const ImpactInput& in, const std::string& digest, bool self) {
    auto is_target = [&](const std::string& d) {
        return d == in.current_digest || in.generations.count(d) > 0;
    };
    if (self && is_target(digest)) return Found{digest, {}};
    std::vector<std::string> via;
    std::set<std::string> seen{digest};
    std::string d = digest;
    for (int depth = 0; depth < 64 && in.base_of; depth++) {
        auto base = in.base_of(d);
        if (!base || base->digest.empty()) return std::nullopt;
        if (is_target(base->digest) ||
            (!base->name.empty() && repository_of(base->name) == in.target_repository))
            return Found{base->digest, via};
        if (!seen.insert(base->digest).second) return std::nullopt;
        via.push_back(base->digest);
        d = base->digest;
    }
    return std::nullopt;
}

ImpactRow row_of(const ImpactInput& in, std::string kind, std::string name, std::string digest,
                 Found found) {
    ImpactRow row;
    row.kind = std::move(kind);
    row.name = std::move(name);
    row.digest = std::move(digest);
    row.base_digest = std::move(found.base_digest);
    row.via = std::move(found.via);
    row.current = row.base_digest == in.current_digest;
    auto g = in.generations.find(row.base_digest);
    if (g != in.generations.end()) row.generation = g->second;
    return row;
}

}  // namespace

ImpactReport compute_impact(const ImpactInput& in) {
    ImpactReport report;
    report.target = in.target;
    report.current_digest = in.current_digest;
    if (auto g = in.generations.find(in.current_digest); g != in.generations.end())
        report.current_generation = g->second;
    auto images = in.images;
    std::sort(images.begin(), images.end());
    for (const auto& [name, digest] : images) {
        if (name == in.target || repository_of(name) == in.target_repository) continue;
        if (auto found = find_target(in, digest, false))
            report.rows.push_back(row_of(in, "Image", name, digest, std::move(*found)));
    }
    auto replicas = in.replicas;
    std::sort(replicas.begin(), replicas.end(), [](const auto& a, const auto& b) {
        return std::tie(a.deployment, a.index) < std::tie(b.deployment, b.index);
    });
    for (const auto& r : replicas) {
        auto found = find_target(in, r.digest, true);
        if (!found) continue;
        auto row = row_of(in, "Replica", r.deployment + "/" + std::to_string(r.index), r.digest,
                          std::move(*found));
        row.container = r.container;
        report.replicas++;
        report.replicas_current += row.current;
        report.rows.push_back(std::move(row));
    }
    return report;
}

std::string ImpactReport::summary() const {
    return std::to_string(replicas_current) + " of " + std::to_string(replicas) +
           " replicas on the current " + repository_of(target) + " (" + current_digest + ")";
}

nlohmann::json ImpactReport::to_json() const {
    auto rows_json = nlohmann::json::array();
    for (const auto& r : rows)
        rows_json.push_back({{"kind", r.kind},
                             {"name", r.name},
                             {"container", r.container},
                             {"digest", r.digest},
                             {"baseDigest", r.base_digest},
                             {"current", r.current},
                             {"generation", r.generation},
                             {"status", r.status()},
                             {"via", r.via}});
    return {{"image", target},
            {"currentDigest", current_digest},
            {"currentGeneration", current_generation},
            {"items", rows_json},
            {"replicas", replicas},
            {"replicasCurrent", replicas_current},
            {"summary", summary()}};
}

}  // namespace cascade::engine
