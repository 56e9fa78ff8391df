#include "registry/gc.hpp"

#include <sys/stat.h>

#include <chrono>
#include <ctime>
#include <set>

#include "oci/error.hpp"
#include "registry/database.hpp"
#include "registry/store.hpp"

namespace cascade::registry {

namespace {

using RepoDigest = std::pair<std::string, std::string>;  // (repository, digest string)

int64_t now_seconds() {
    return static_cast<int64_t>(std::time(nullptr));
}

std::optional<oci::Digest> digest_field(const nlohmann::json& obj) {
    if (!obj.is_object()) return std::nullopt;
    auto it = obj.find("digest");
    if (it == obj.end() || !it->is_string()) return std::nullopt;
    return oci::Digest::try_parse(it->get<std::string>());
}

// Modification time of a blob file, or nullopt when it is gone.
std::optional<int64_t> mtime_of(const std::filesystem::path& p) {
    struct stat st;
    if (::stat(p.c_str(), &st) != 0) return std::nullopt;
    return static_cast<int64_t>(st.st_mtim.tv_sec);
}

}  // namespace

nlohmann::json to_json(const GcReport& r) {
    nlohmann::json manifests = nlohmann::json::array();
    for (const auto& [repo, d] : r.manifests)
        manifests.push_back({{"repository", repo}, {"digest", d.str()}});
    nlohmann::json blobs = nlohmann::json::array();
    for (const auto& d : r.blobs)
        blobs.push_back(d.str());
    return {{"dryRun", r.dry_run},  {"manifests", manifests},
            {"blobs", blobs},       {"links", r.links},
            {"bytes", r.bytes},     {"markedManifests", r.marked_manifests},
            {"keptYoung", r.young}, {"seconds", r.seconds}};
}

// What one mark decided, against the database as it was read.
struct GarbageCollector::Plan {
    std::set<RepoDigest> marked;
    std::vector<RepoDigest> doomed_manifests;
    std::vector<RepoDigest> doomed_links;
    std::set<std::string> keep_blobs;  // referenced, linked (kept links) or external roots
    int64_t young = 0;
};

GarbageCollector::GarbageCollector(Store& store, GcOptions options)
    : store_(store), options_(options) {}

void GarbageCollector::add_root_source(std::string name, RootSource source) {
    std::lock_guard lock(run_mu_);
    sources_.emplace_back(std::move(name), std::move(source));
}

const GarbageCollector::Parsed& GarbageCollector::parsed(const oci::Digest& manifest) {
    auto it = parsed_.find(manifest.str());
    if (it != parsed_.end() && it->second.ok) return it->second;
    Parsed p;
    if (store_.blobs().has(manifest)) {
        try {
            auto doc = nlohmann::json::parse(store_.blobs().read(manifest));
            if (auto c = doc.find("config"); c != doc.end())
                if (auto d = digest_field(*c)) p.blobs.push_back(*d);
            for (const char* list : {"layers", "blobs"})
                if (auto l = doc.find(list); l != doc.end() && l->is_array())
                    for (const auto& item : *l)
                        if (auto d = digest_field(item)) p.blobs.push_back(*d);
            if (auto m = doc.find("manifests"); m != doc.end() && m->is_array())
                for (const auto& item : *m)
                    if (auto d = digest_field(item)) p.children.push_back(*d);
            if (auto s = doc.find("subject"); s != doc.end()) p.subject = digest_field(*s);
            p.ok = true;
        } catch (const std::exception&) {
            p.ok = false;
        }
    }
    return parsed_[manifest.str()] = std::move(p);
}

std::vector<oci::Digest> GarbageCollector::external_roots() {
    std::vector<oci::Digest> out;
    for (auto& [name, source] : sources_) {
        try {
            auto digests = source();
            out.insert(out.end(), digests.begin(), digests.end());
        } catch (const std::exception& e) {
            // Without this source's roots the mark could miss images in use.
            throw Error("garbage collection stopped before removing anything: root source " + name +
                        " failed: " + e.what());
        }
    }
    return out;
}

GarbageCollector::Plan GarbageCollector::plan(const std::vector<oci::Digest>& external,
                                              int64_t now) {
    auto& db = store_.db();
    const int64_t old_before = now - options_.grace_seconds;  // rows at or before: collectable
    Plan plan;

    // Every manifest row, by repository.
    std::map<RepoDigest, int64_t> manifests;  // → created
    std::map<std::string, std::vector<std::string>> repos_of;
    db.query("SELECT repository, digest, created FROM registry_manifests", {},
             [&](const Database::Row& r) {
                 manifests[{as_text(r[0]), as_text(r[1])}] = as_int(r[2]);
                 repos_of[as_text(r[1])].push_back(as_text(r[0]));
             });

    std::vector<RepoDigest> work;
    db.query("SELECT repository, digest FROM registry_tags", {},
             [&](const Database::Row& r) { work.emplace_back(as_text(r[0]), as_text(r[1])); });
    db.query(
        "SELECT repository, digest FROM (SELECT repository, digest, ROW_NUMBER() OVER "
        "(PARTITION BY repository, tag ORDER BY generation DESC) AS n FROM registry_tag_history) "
        "WHERE n <= ?1",
        {static_cast<int64_t>(std::max(options_.keep_generations, 0))},
        [&](const Database::Row& r) { work.emplace_back(as_text(r[0]), as_text(r[1])); });
    for (const auto& d : external) {
        plan.keep_blobs.insert(d.str());  // may be a plain blob (a build cache layer)
        for (const auto& repo : repos_of[d.str()])
            work.emplace_back(repo, d.str());
    }

    // Mark: index → children, manifest → blobs; then referrers of what is marked.
    auto walk = [&](std::vector<RepoDigest>& stack) {
        while (!stack.empty()) {
            RepoDigest key = std::move(stack.back());
            stack.pop_back();
            if (!manifests.count(key) || plan.marked.count(key)) continue;
            auto digest = oci::Digest::parse(key.second);
            const Parsed& p = parsed(digest);
            if (!p.ok)
                throw Error("garbage collection stopped before removing anything: manifest " +
                            key.second + " of " + key.first +
                            " is in use but its bytes are missing or unreadable in " +
                            store_.blobs().root().string() + "; push the image again");
            plan.marked.insert(key);
            plan.keep_blobs.insert(key.second);
            for (const auto& b : p.blobs)
                plan.keep_blobs.insert(b.str());
            for (const auto& c : p.children)
                stack.emplace_back(key.first, c.str());
        }
    };
    walk(work);
    // Young manifests: perhaps an image being pushed whose tag comes next.
    for (const auto& [key, created] : manifests)
        if (created > old_before && !plan.marked.count(key)) {
            std::vector<RepoDigest> one{key};
            walk(one);
            plan.young++;
        }
    for (bool grew = true; grew;) {
        grew = false;
        for (const auto& [key, created] : manifests) {
            if (plan.marked.count(key)) continue;
            const Parsed& p = parsed(oci::Digest::parse(key.second));
            if (p.ok && p.subject && plan.marked.count({key.first, p.subject->str()})) {
                std::vector<RepoDigest> one{key};
                walk(one);
                grew = true;
            }
        }
    }
    for (const auto& [key, created] : manifests)
        if (!plan.marked.count(key)) plan.doomed_manifests.push_back(key);

    // Links: kept when a marked manifest of the repository references the
    // blob (or is the blob), or while young.
    std::set<RepoDigest> referenced;
    for (const auto& key : plan.marked) {
        referenced.insert(key);
        const Parsed& p = parsed(oci::Digest::parse(key.second));
        for (const auto& b : p.blobs)
            referenced.insert({key.first, b.str()});
    }
    db.query("SELECT repository, digest, linked FROM registry_blob_links", {},
             [&](const Database::Row& r) {
                 RepoDigest key{as_text(r[0]), as_text(r[1])};
                 if (referenced.count(key)) return;
                 if (as_int(r[2]) > old_before) {
                     plan.keep_blobs.insert(key.second);
                     plan.young++;
                     return;
                 }
                 plan.doomed_links.push_back(std::move(key));
             });
    return plan;
}

GcReport GarbageCollector::run(bool dry_run) {
    std::unique_lock running(run_mu_, std::try_to_lock);
    if (!running.owns_lock())
        throw Error("a garbage collection is already running; wait for it to finish");
    auto started = std::chrono::steady_clock::now();
    GcReport report;
    report.dry_run = dry_run;
    auto& blobs = store_.blobs();

    // Pass 1, without locks: warms the parse cache; for a dry run, the answer.
    auto roots = external_roots();
    auto candidates = blobs.list();
    Plan plan = this->plan(roots, now_seconds());

    auto collectable = [&](const Plan& p, int64_t now) {
        std::vector<std::pair<oci::Digest, int64_t>> out;  // (blob, size)
        for (const auto& d : candidates) {
            if (p.keep_blobs.count(d.str())) continue;
            auto path = blobs.path(d);
            auto mtime = mtime_of(path);
            if (!mtime) continue;
            if (*mtime > now - options_.grace_seconds) {
                report.young++;
                continue;
            }
            out.emplace_back(d, blobs.size(d).value_or(0));
        }
        return out;
    };

    if (dry_run) {
        int64_t now = now_seconds();
        for (const auto& [repo, d] : plan.doomed_manifests)
            report.manifests.emplace_back(repo, oci::Digest::parse(d));
        report.links = static_cast<int64_t>(plan.doomed_links.size());
        report.young += plan.young;
        report.marked_manifests = static_cast<int64_t>(plan.marked.size());
        for (auto& [d, size] : collectable(plan, now)) {
            report.blobs.push_back(d);
            report.bytes += size;
        }
        report.seconds =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        return report;
    }

    // Pass 2: the sweep. Root sources are asked again before the lock (a
    // rollout that started since then resolved a tag, which is a root anyway).
    roots = external_roots();
    candidates = blobs.list();
    auto exclusive = store_.exclusive_blob_lock();
    int64_t now = now_seconds();
    store_.db().transaction([&] {
        plan = this->plan(roots, now);
        for (const auto& [repo, d] : plan.doomed_manifests)
            store_.db().query(
                "DELETE FROM registry_manifests WHERE repository = ?1 AND digest = ?2", {repo, d});
        for (const auto& [repo, d] : plan.doomed_links)
            store_.db().query(
                "DELETE FROM registry_blob_links WHERE repository = ?1 AND digest = ?2", {repo, d});
        // What is still linked anywhere stays (a link kept for its age, or to
        // a repository whose manifests reference it).
        store_.db().query("SELECT DISTINCT digest FROM registry_blob_links", {},
                          [&](const Database::Row& r) { plan.keep_blobs.insert(as_text(r[0])); });
    });
    // Committed: the rows are gone for good. Files go now; a crash from here
    // on leaves unreferenced files that the next run removes.
    for (const auto& [repo, d] : plan.doomed_manifests)
        report.manifests.emplace_back(repo, oci::Digest::parse(d));
    report.links = static_cast<int64_t>(plan.doomed_links.size());
    report.young += plan.young;
    report.marked_manifests = static_cast<int64_t>(plan.marked.size());
    for (auto& [d, size] : collectable(plan, now)) {
        if (!blobs.remove(d)) continue;
        report.blobs.push_back(d);
        report.bytes += size;
        parsed_.erase(d.str());
    }
    exclusive.unlock();

    report.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    return report;
}

}  // namespace cascade::registry
