#include "registry/store.hpp"

#include <algorithm>
#include <cstdio>
#include <ctime>

#include "oci/media_types.hpp"
#include "oci/reference.hpp"

namespace cascade::registry {

namespace {

// Table names carry the module's prefix: the database file is shared.
constexpr const char* kSchema = R"sql(
CREATE TABLE registry_repositories (
    name    TEXT PRIMARY KEY,
    created INTEGER NOT NULL
);
CREATE TABLE registry_manifests (
    repository TEXT NOT NULL REFERENCES registry_repositories(name) ON DELETE CASCADE,
    digest     TEXT NOT NULL,
    media_type TEXT NOT NULL,
    size       INTEGER NOT NULL,
    created    INTEGER NOT NULL,
    PRIMARY KEY (repository, digest)
);
CREATE INDEX registry_manifests_by_digest ON registry_manifests(digest);
CREATE TABLE registry_blob_links (
    repository TEXT NOT NULL REFERENCES registry_repositories(name) ON DELETE CASCADE,
    digest     TEXT NOT NULL,
    PRIMARY KEY (repository, digest)
);
CREATE INDEX registry_blob_links_by_digest ON registry_blob_links(digest);
CREATE TABLE registry_tags (
    repository TEXT NOT NULL,
    tag        TEXT NOT NULL,
    digest     TEXT NOT NULL,
    updated    INTEGER NOT NULL,
    PRIMARY KEY (repository, tag),
    FOREIGN KEY (repository, digest)
        REFERENCES registry_manifests(repository, digest) ON DELETE CASCADE
);
CREATE TABLE registry_tag_history (
    repository TEXT NOT NULL,
    tag        TEXT NOT NULL,
    generation INTEGER NOT NULL,
    digest     TEXT NOT NULL,
    time       INTEGER NOT NULL,
    cause      TEXT NOT NULL,
    PRIMARY KEY (repository, tag, generation)
);
)sql";

// OCI 1.1 referrers: one row per manifest that names a subject, so the
// referrers API is an index lookup. The rows go with their manifest.
// Tag history keeps the manifest's media type and size, so the history of a
// tag can be listed as descriptors after a manifest was deleted.
constexpr const char* kReferrersSchema = R"sql(
CREATE TABLE registry_referrers (
    repository    TEXT NOT NULL,
    subject       TEXT NOT NULL,
    digest        TEXT NOT NULL,
    media_type    TEXT NOT NULL,
    size          INTEGER NOT NULL,
    artifact_type TEXT NOT NULL,
    annotations   TEXT NOT NULL,
    PRIMARY KEY (repository, subject, digest),
    FOREIGN KEY (repository, digest)
        REFERENCES registry_manifests(repository, digest) ON DELETE CASCADE
);
CREATE INDEX registry_referrers_by_manifest ON registry_referrers(repository, digest);
ALTER TABLE registry_tag_history ADD COLUMN media_type TEXT;
ALTER TABLE registry_tag_history ADD COLUMN size INTEGER;
)sql";
constexpr const char* kReferrersMigration = "registry-0002-referrers";

int64_t now_seconds() {
    return static_cast<int64_t>(std::time(nullptr));
}

std::string strip_parameters(std::string_view content_type) {
    auto semi = content_type.find(';');
    auto s = content_type.substr(0, semi);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
        s.remove_suffix(1);
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
        s.remove_prefix(1);
    return std::string(s);
}

void check_repository(const std::string& repo) {
    if (!oci::is_valid_repository_name(repo))
        throw Error("invalid repository name '" + repo +
                    "': use lower-case path components ([a-z0-9]+ joined by . _ __ or -) "
                    "separated by /");
}

void check_tag(const std::string& tag) {
    if (!oci::is_valid_tag(tag))
        throw Error("invalid tag '" + tag + "': a tag is [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}");
}

void ensure_repository(Database& db, const std::string& repo) {
    db.query("INSERT OR IGNORE INTO registry_repositories (name, created) VALUES (?1, ?2)",
             {repo, now_seconds()});
}

// Moves `tag` to `digest` inside an open transaction. Returns the event to
// publish, or nothing when the tag already pointed there.
std::optional<TagEvent> move_tag(Database& db, const std::string& repo, const std::string& tag,
                                 const oci::Digest& digest, const std::string& cause) {
    std::optional<oci::Digest> old;
    if (auto r = db.row("SELECT digest FROM registry_tags WHERE repository = ?1 AND tag = ?2",
                        {repo, tag}))
        old = oci::Digest::parse(as_text((*r)[0]));
    if (old && *old == digest) return std::nullopt;

    auto gen_row = db.row(
        "SELECT COALESCE(MAX(generation), 0) + 1 FROM registry_tag_history "
        "WHERE repository = ?1 AND tag = ?2",
        {repo, tag});
    TagEvent e;
    e.repository = repo;
    e.tag = tag;
    e.generation = as_int((*gen_row)[0]);
    e.old_digest = old;
    e.new_digest = digest;
    e.cause = cause;
    e.time = now_seconds();
    db.query(
        "INSERT INTO registry_tags (repository, tag, digest, updated) VALUES (?1, ?2, ?3, ?4) "
        "ON CONFLICT (repository, tag) DO UPDATE SET digest = excluded.digest, "
        "updated = excluded.updated",
        {repo, tag, digest.str(), e.time});
    // The manifest's descriptor as of now: history outlives the manifest.
    db.query(
        "INSERT INTO registry_tag_history (repository, tag, generation, digest, time, cause, "
        "media_type, size) SELECT ?1, ?2, ?3, ?4, ?5, ?6, m.media_type, m.size "
        "FROM registry_manifests m WHERE m.repository = ?1 AND m.digest = ?4",
        {repo, tag, e.generation, digest.str(), e.time, cause});
    return e;
}

// What a manifest or index points at that must exist before it can be stored.
struct References {
    std::vector<std::pair<std::string, oci::Descriptor>> blobs;      // (role, descriptor)
    std::vector<std::pair<std::string, oci::Descriptor>> manifests;  // index children
    std::optional<oci::Digest> subject;
    std::string artifact_type;  // as the referrers API lists it
    oci::Annotations annotations;
};

// Validates the document and returns its media type and references.
std::pair<std::string, References> inspect_manifest(std::string_view bytes,
                                                    const std::string& content_type) {
    std::string declared = strip_parameters(content_type);
    nlohmann::json doc;
    try {
        doc = nlohmann::json::parse(bytes);
    } catch (const std::exception& e) {
        throw ManifestInvalid(std::string("manifest is not valid JSON: ") + e.what());
    }
    if (!doc.is_object()) throw ManifestInvalid("manifest is not a JSON object");
    std::string in_document;
    if (auto it = doc.find("mediaType"); it != doc.end()) {
        if (!it->is_string()) throw ManifestInvalid("manifest field mediaType is not a string");
        in_document = it->get<std::string>();
    }

    std::string type;
    if (oci::media::is_manifest(declared) || oci::media::is_index(declared)) {
        type = declared;
    } else {
        try {
            type = oci::detect_manifest_media_type(bytes);
        } catch (const std::exception& e) {
            throw ManifestInvalid(std::string("cannot tell what kind of manifest this is: ") +
                                  e.what());
        }
    }
    if (!in_document.empty() && in_document != type)
        throw ManifestInvalid("manifest declares mediaType " + in_document + " but was sent as " +
                              type + "; send it with Content-Type: " + in_document);
    if (auto it = doc.find("schemaVersion"); it == doc.end() || *it != 2)
        throw ManifestInvalid("manifest schemaVersion must be 2 (schema 1 is not supported)");

    References refs;
    try {
        if (oci::media::is_index(type)) {
            oci::Index index = oci::parse_index(bytes);
            for (size_t i = 0; i < index.manifests.size(); i++)
                refs.manifests.emplace_back("manifests[" + std::to_string(i) + "]",
                                            index.manifests[i]);
            if (index.subject) refs.subject = index.subject->digest;
            refs.artifact_type = index.artifact_type;
            refs.annotations = index.annotations;
        } else if (oci::media::is_manifest(type)) {
            oci::Manifest m = oci::parse_manifest(bytes);
            refs.blobs.emplace_back("config", m.config);
            for (size_t i = 0; i < m.layers.size(); i++)
                refs.blobs.emplace_back("layers[" + std::to_string(i) + "]", m.layers[i]);
            if (m.subject) refs.subject = m.subject->digest;
            refs.artifact_type = m.artifact_type.empty() ? m.config.media_type : m.artifact_type;
            refs.annotations = m.annotations;
        } else {
            throw ManifestInvalid("unsupported manifest media type " + type);
        }
    } catch (const ManifestInvalid&) {
        throw;
    } catch (const std::exception& e) {
        throw ManifestInvalid(std::string("invalid ") + type + ": " + e.what());
    }
    return {type, std::move(refs)};
}

}  // namespace

Store::Store(BlobStore& blobs, Database& db) : blobs_(blobs), db_(db) {
    db_.migrate("registry-0001-store", kSchema);
    db_.transaction([&] {
        bool fresh =
            !db_.row("SELECT 1 FROM schema_migrations WHERE name = ?1", {kReferrersMigration});
        db_.migrate(kReferrersMigration, kReferrersSchema);
        if (fresh) backfill_referrers();
    });
    // When each blob link was made: garbage collection spares young links.
    db_.migrate("registry-gc-0001-link-times",
                "ALTER TABLE registry_blob_links ADD COLUMN linked INTEGER NOT NULL DEFAULT 0;");
}

// Manifests stored before the referrers table existed: their subjects are
// read once, when the table is created.
void Store::backfill_referrers() {
    for (const auto& r :
         db_.rows("SELECT repository, digest, media_type FROM registry_manifests")) {
        auto digest = oci::Digest::try_parse(as_text(r[1]));
        if (!digest || !blobs_.has(*digest)) continue;
        try {
            auto bytes = blobs_.read(*digest);
            auto refs = inspect_manifest(bytes, as_text(r[2])).second;
            if (!refs.subject) continue;
            db_.query(
                "INSERT OR IGNORE INTO registry_referrers (repository, subject, digest, "
                "media_type, size, artifact_type, annotations) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                {as_text(r[0]), refs.subject->str(), digest->str(), as_text(r[2]),
                 static_cast<int64_t>(bytes.size()), refs.artifact_type,
                 nlohmann::json(refs.annotations).dump()});
        } catch (const std::exception&) {
            // Not a manifest this store can read any more: it has no referrer row.
        }
    }
}

oci::Digest Store::put_manifest(const std::string& repo, std::string_view bytes,
                                const std::string& media_type, const std::string& tag,
                                const std::string& cause) {
    ManifestPush how;
    if (!tag.empty()) how.tags.push_back(tag);
    how.cause = cause;
    return push_manifest(repo, bytes, media_type, how).digest;
}

PushedManifest Store::push_manifest(const std::string& repo, std::string_view bytes,
                                    const std::string& content_type, const ManifestPush& how) {
    check_repository(repo);
    BlobHold hold(*this);
    for (const auto& tag : how.tags)
        check_tag(tag);
    auto [type, refs] = inspect_manifest(bytes, content_type);
    oci::Digest digest = oci::Digest::sha256_of(bytes);

    for (auto& [role, d] : refs.blobs) {
        if (!d.urls.empty()) continue;  // foreign layers live elsewhere
        auto size = blobs_.size(d.digest);
        if (!size || (how.require_linked_blobs && !repo_has_blob(repo, d.digest)))
            throw ManifestBlobUnknown("manifest " + digest.str() + " for " + repo + " references " +
                                      role + " blob " + d.digest.str() + " which is not in " +
                                      repo + "; push the blob (or mount it) first");
        if (*size != d.size)
            throw ManifestInvalid("manifest " + digest.str() + " for " + repo + ": " + role +
                                  " descriptor says " + std::to_string(d.size) +
                                  " bytes but blob " + d.digest.str() + " has " +
                                  std::to_string(*size));
    }

    // The bytes are stored exactly as received; an orphan left by a failed
    // transaction below is harmless (content-addressed, collected later).
    blobs_.put(bytes);

    std::vector<TagEvent> events;
    db_.transaction([&] {
        for (auto& [role, d] : refs.manifests)
            if (!has_manifest(repo, d.digest))
                throw ManifestBlobUnknown("index " + digest.str() + " for " + repo + ": " + role +
                                          " manifest " + d.digest.str() + " is not in " + repo +
                                          "; push the child manifests first");
        ensure_repository(db_, repo);
        db_.query(
            "INSERT OR IGNORE INTO registry_manifests (repository, digest, media_type, size, "
            "created) VALUES (?1, ?2, ?3, ?4, ?5)",
            {repo, digest.str(), type, static_cast<int64_t>(bytes.size()), now_seconds()});
        for (auto& [role, d] : refs.blobs)
            if (d.urls.empty())
                db_.query(
                    "INSERT OR IGNORE INTO registry_blob_links (repository, digest, linked) "
                    "VALUES (?1, ?2, ?3)",
                    {repo, d.digest.str(), now_seconds()});
        if (refs.subject)
            db_.query(
                "INSERT OR IGNORE INTO registry_referrers (repository, subject, digest, "
                "media_type, size, artifact_type, annotations) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                {repo, refs.subject->str(), digest.str(), type, static_cast<int64_t>(bytes.size()),
                 refs.artifact_type, nlohmann::json(refs.annotations).dump()});
        for (const auto& tag : how.tags)
            if (auto e = move_tag(db_, repo, tag, digest, how.cause)) events.push_back(*e);
        for (const auto& e : events)
            db_.after_commit([this, e] { publish(e); });
    });
    return {digest, type, refs.subject};
}

std::optional<ManifestRecord> Store::resolve(const std::string& repo,
                                             const std::string& reference) const {
    std::optional<Database::Row> r;
    if (reference.find(':') != std::string::npos) {
        auto d = oci::Digest::try_parse(reference);
        if (!d) return std::nullopt;
        r = db_.row(
            "SELECT digest, media_type, size FROM registry_manifests "
            "WHERE repository = ?1 AND digest = ?2",
            {repo, d->str()});
    } else {
        r = db_.row(
            "SELECT m.digest, m.media_type, m.size FROM registry_tags t "
            "JOIN registry_manifests m ON m.repository = t.repository AND m.digest = t.digest "
            "WHERE t.repository = ?1 AND t.tag = ?2",
            {repo, reference});
    }
    if (!r) return std::nullopt;
    ManifestRecord m;
    m.digest = oci::Digest::parse(as_text((*r)[0]));
    m.media_type = as_text((*r)[1]);
    m.size = as_int((*r)[2]);
    return m;
}

std::string Store::manifest_bytes(const ManifestRecord& m) const {
    return blobs_.read(m.digest);
}

bool Store::set_tag(const std::string& repo, const std::string& tag, const oci::Digest& digest,
                    const std::string& cause) {
    check_repository(repo);
    check_tag(tag);
    bool moved = false;
    db_.transaction([&] {
        if (!has_manifest(repo, digest))
            throw Error("cannot tag " + repo + ":" + tag + ": manifest " + digest.str() +
                        " is not in " + repo + "; push it first");
        auto event = move_tag(db_, repo, tag, digest, cause);
        moved = event.has_value();
        if (event) db_.after_commit([this, e = *event] { publish(e); });
    });
    return moved;
}

bool Store::delete_tag(const std::string& repo, const std::string& tag) {
    int64_t n = 0;
    db_.transaction([&] {
        n = db_.query("DELETE FROM registry_tags WHERE repository = ?1 AND tag = ?2", {repo, tag});
    });
    return n > 0;
}

bool Store::delete_manifest(const std::string& repo, const oci::Digest& digest) {
    int64_t n = 0;
    // Tags pointing at it go with it (foreign key cascade); history stays.
    db_.transaction([&] {
        n = db_.query("DELETE FROM registry_manifests WHERE repository = ?1 AND digest = ?2",
                      {repo, digest.str()});
    });
    return n > 0;
}

std::vector<std::string> Store::repositories() const {
    std::vector<std::string> out;
    db_.query("SELECT name FROM registry_repositories ORDER BY name", {},
              [&](const Database::Row& r) { out.push_back(as_text(r[0])); });
    return out;
}

bool Store::has_repository(const std::string& repo) const {
    return db_.row("SELECT 1 FROM registry_repositories WHERE name = ?1", {repo}).has_value();
}

std::vector<std::string> Store::tags(const std::string& repo) const {
    std::vector<std::string> out;
    db_.query("SELECT tag FROM registry_tags WHERE repository = ?1 ORDER BY tag", {repo},
              [&](const Database::Row& r) { out.push_back(as_text(r[0])); });
    return out;
}

std::optional<oci::Digest> Store::tag_digest(const std::string& repo,
                                             const std::string& tag) const {
    auto r =
        db_.row("SELECT digest FROM registry_tags WHERE repository = ?1 AND tag = ?2", {repo, tag});
    if (!r) return std::nullopt;
    return oci::Digest::parse(as_text((*r)[0]));
}

std::vector<TagHistoryEntry> Store::tag_history(const std::string& repo,
                                                const std::string& tag) const {
    std::vector<TagHistoryEntry> out;
    db_.query(
        "SELECT h.generation, h.digest, h.time, h.cause, COALESCE(h.media_type, m.media_type), "
        "COALESCE(h.size, m.size) FROM registry_tag_history h "
        "LEFT JOIN registry_manifests m ON m.repository = h.repository AND m.digest = h.digest "
        "WHERE h.repository = ?1 AND h.tag = ?2 ORDER BY h.generation DESC",
        {repo, tag}, [&](const Database::Row& r) {
            TagHistoryEntry e;
            e.generation = as_int(r[0]);
            e.digest = oci::Digest::parse(as_text(r[1]));
            e.time = as_int(r[2]);
            e.cause = as_text(r[3]);
            if (!is_null(r[4])) e.media_type = as_text(r[4]);
            if (!is_null(r[5])) e.size = as_int(r[5]);
            out.push_back(std::move(e));
        });
    return out;
}

bool Store::has_manifest(const std::string& repo, const oci::Digest& digest) const {
    return db_
        .row("SELECT 1 FROM registry_manifests WHERE repository = ?1 AND digest = ?2",
             {repo, digest.str()})
        .has_value();
}

void Store::link_blob(const std::string& repo, const oci::Digest& digest) {
    check_repository(repo);
    BlobHold hold(*this);
    if (!blobs_.has(digest))
        throw ManifestBlobUnknown("cannot link blob " + digest.str() + " to " + repo +
                                  ": it is not in the store (garbage collection may have removed "
                                  "it just before); push the blob again");
    db_.transaction([&] {
        ensure_repository(db_, repo);
        db_.query(
            "INSERT INTO registry_blob_links (repository, digest, linked) VALUES (?1, ?2, ?3) "
            "ON CONFLICT (repository, digest) DO UPDATE SET linked = excluded.linked",
            {repo, digest.str(), now_seconds()});
    });
}

bool Store::repo_has_blob(const std::string& repo, const oci::Digest& digest) const {
    return db_
        .row("SELECT 1 FROM registry_blob_links WHERE repository = ?1 AND digest = ?2",
             {repo, digest.str()})
        .has_value();
}

bool Store::unlink_blob(const std::string& repo, const oci::Digest& digest) {
    int64_t n = 0;
    db_.transaction([&] {
        n = db_.query("DELETE FROM registry_blob_links WHERE repository = ?1 AND digest = ?2",
                      {repo, digest.str()});
    });
    return n > 0;
}

std::vector<Referrer> Store::referrers(const std::string& repo, const oci::Digest& subject,
                                       const std::string& artifact_type) const {
    std::vector<Referrer> out;
    std::string sql =
        "SELECT digest, media_type, size, artifact_type, annotations FROM registry_referrers "
        "WHERE repository = ?1 AND subject = ?2";
    std::vector<SqlValue> params = {repo, subject.str()};
    if (!artifact_type.empty()) {
        sql += " AND artifact_type = ?3";
        params.emplace_back(artifact_type);
    }
    sql += " ORDER BY rowid";
    db_.query(sql, params, [&](const Database::Row& r) {
        Referrer ref;
        ref.digest = oci::Digest::parse(as_text(r[0]));
        ref.media_type = as_text(r[1]);
        ref.size = as_int(r[2]);
        ref.artifact_type = as_text(r[3]);
        auto annotations = nlohmann::json::parse(as_text(r[4]), nullptr, false);
        if (annotations.is_object())
            for (auto& [k, v] : annotations.items())
                if (v.is_string()) ref.annotations[k] = v.get<std::string>();
        out.push_back(std::move(ref));
    });
    return out;
}

namespace {
// The stores whose blob lock this thread holds shared (holds nest).
thread_local std::vector<const Store*> held_blob_locks;
}  // namespace

Store::BlobHold::BlobHold(Store& store) : store_(store) {
    if (std::find(held_blob_locks.begin(), held_blob_locks.end(), &store) != held_blob_locks.end())
        return;
    store_.blob_mu_.lock_shared();
    held_blob_locks.push_back(&store);
    owner_ = true;
}

Store::BlobHold::~BlobHold() {
    if (!owner_) return;
    std::erase(held_blob_locks, &store_);
    store_.blob_mu_.unlock_shared();
}

int Store::subscribe(Subscriber fn) {
    std::lock_guard lock(subs_mu_);
    int id = next_sub_++;
    subs_.emplace_back(id, std::move(fn));
    return id;
}

void Store::unsubscribe(int id) {
    std::lock_guard lock(subs_mu_);
    std::erase_if(subs_, [&](const auto& s) { return s.first == id; });
}

void Store::publish(const TagEvent& e) {
    std::vector<std::pair<int, Subscriber>> subs;
    {
        std::lock_guard lock(subs_mu_);
        subs = subs_;
    }
    for (auto& [id, fn] : subs) {
        try {
            fn(e);
        } catch (const std::exception& ex) {
            // The move is committed; a failing subscriber must not undo it or
            // starve the others.
            std::fprintf(stderr, "cascade: subscriber %d failed on %s:%s generation %lld: %s\n", id,
                         e.repository.c_str(), e.tag.c_str(), static_cast<long long>(e.generation),
                         ex.what());
        }
    }
}

}  // namespace cascade::registry
