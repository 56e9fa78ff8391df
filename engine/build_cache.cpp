#include "engine/build_cache.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <map>

#include "engine/copy.hpp"
#include "oci/error.hpp"
#include "oci/fs.hpp"
#include "oci/image.hpp"
#include "registry/blob_store.hpp"
#include "registry/database.hpp"

namespace cascade::engine {

namespace {

// Rows without a layer cost no bytes; this keeps their number bounded too.
constexpr int64_t kMaxEntries = 200000;

constexpr const char* kSchema = R"sql(
CREATE TABLE build_cache (
    key TEXT PRIMARY KEY,
    layer_digest TEXT,          -- NULL: the step wrote no layer
    layer_media_type TEXT,
    layer_size INTEGER NOT NULL DEFAULT 0,
    diff_id TEXT,
    created INTEGER NOT NULL,   -- unix seconds
    last_used INTEGER NOT NULL  -- unix microseconds, strictly increasing
);
CREATE INDEX build_cache_last_used ON build_cache(last_used);
CREATE INDEX build_cache_layer ON build_cache(layer_digest);
)sql";

int64_t now_micros() {
    return std::chrono::duration_cast<std::chrono::microseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

void put_field(std::string& out, std::string_view name, std::string_view value) {
    out += std::to_string(name.size());
    out += ':';
    out += name;
    out += std::to_string(value.size());
    out += ':';
    out += value;
}

// Feeds one source tree into a hash: a record per entry, depth first.
class SourceHasher {
  public:
    SourceHasher(const RootDir& root, const SourceDigestOptions& options)
        : root_(root), options_(options) {}

    void source(const std::string& source) {
        const auto where = source + " (in " + root_.description() + ")";
        struct stat st {};
        {
            fs::Fd probe = root_.open(source, O_PATH);
            if (::fstat(probe.get(), &st) != 0) throw sys_error("stat", where, errno);
        }
        std::string record;
        put_field(record, "source", source);
        hash_.update(record);
        fs::Fd fd;
        if (S_ISDIR(st.st_mode))
            fd = root_.open(source, O_RDONLY | O_DIRECTORY);
        else if (S_ISREG(st.st_mode))
            fd = root_.open(source, O_RDONLY | O_NONBLOCK);
        entry(".", source, st, fd.get(), {}, where);
    }

    oci::Digest finish() { return hash_.digest(); }

  private:
    // `rel`: the path below the source; `root_rel`: below the root (for the
    // root's filter, .dockerignore). `fd`: the open entry for directories and
    // regular files; `link` the target of a symlink.
    void entry(const std::string& rel, const std::string& root_rel, const struct stat& st, int fd,
               const std::string& link, const std::string& where) {
        std::string record;
        put_field(record, "path", rel);
        put_field(record, "type", std::to_string(st.st_mode & S_IFMT));
        put_field(record, "mode", std::to_string(st.st_mode & 07777));
        if (options_.owners)
            put_field(record, "owner", std::to_string(st.st_uid) + ":" + std::to_string(st.st_gid));
        if (options_.epoch > 0) {
            // The layer writer clamps entry times to the epoch, in whole seconds.
            const int64_t sec = std::min<int64_t>(st.st_mtim.tv_sec, options_.epoch);
            put_field(record, "mtime", std::to_string(sec));
        }
        if (S_ISLNK(st.st_mode)) put_field(record, "link", link);
        if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode))
            put_field(record, "rdev",
                      std::to_string(major(st.st_rdev)) + "," + std::to_string(minor(st.st_rdev)));
        if (S_ISREG(st.st_mode)) {
            put_field(record, "size", std::to_string(st.st_size));
            put_field(record, "sha256", oci::Digest::sha256_of_fd(fd, where).str());
        }
        hash_.update(record);
        if (!S_ISDIR(st.st_mode)) return;

        for (const auto& name : list_dir(fd, where)) {
            const auto child_rel = rel == "." ? name : rel + "/" + name;
            const auto child_root_rel = root_rel == "." ? name : root_rel + "/" + name;
            if (root_.hidden(child_root_rel)) continue;  // as copy_into leaves it out
            const auto child_where = where + "/" + name;
            struct stat cst {};
            if (::fstatat(fd, name.c_str(), &cst, AT_SYMLINK_NOFOLLOW) != 0)
                throw sys_error("stat", child_where, errno);
            fs::Fd child;
            std::string target;
            if (S_ISDIR(cst.st_mode) || S_ISREG(cst.st_mode)) {
                int flags = S_ISDIR(cst.st_mode) ? O_RDONLY | O_DIRECTORY : O_RDONLY | O_NONBLOCK;
                int cfd = ::openat(fd, name.c_str(), flags | O_NOFOLLOW | O_CLOEXEC);
                if (cfd < 0) throw sys_error("open", child_where, errno);
                child.reset(cfd);
            } else if (S_ISLNK(cst.st_mode)) {
                target = read_link_at(fd, name, child_where);
            }
            entry(child_rel, child_root_rel, cst, child.get(), target, child_where);
        }
    }

    const RootDir& root_;
    const SourceDigestOptions& options_;
    oci::Sha256 hash_;
};

}  // namespace

oci::Digest image_state_digest(const ImageState& image) {
    std::string text;
    for (const auto& layer : image.layers)
        put_field(text, "layer", layer.digest.str());
    put_field(text, "config", oci::to_json_bytes(oci::to_json(image.config)));
    return oci::Digest::sha256_of(text);
}

oci::Digest digest_sources(const RootDir& root, const std::vector<std::string>& sources,
                           const SourceDigestOptions& options) {
    SourceHasher hasher(root, options);
    for (const auto& s : sources)
        hasher.source(s);
    return hasher.finish();
}

StepKey& StepKey::add(std::string_view name, std::string_view value) {
    put_field(fields_, name, value);
    return *this;
}

StepKey& StepKey::add(std::string_view name, const std::vector<std::string>& values) {
    std::string joined;
    for (const auto& v : values)
        put_field(joined, "", v);
    return add(name, joined);
}

oci::Digest StepKey::digest(const ImageState& parent, std::string_view instruction) const {
    std::string text = "cascade-build-cache-v1\n";
    put_field(text, "parent", image_state_digest(parent).str());
    put_field(text, "instruction", instruction);
    text += fields_;
    return oci::Digest::sha256_of(text);
}

StepKey run_step_key(const InstructionFlags& flags, const runtime::BundleOptions& options) {
    StepKey key;
    for (const auto& [name, value] : flags)
        key.add("flag", name + "=" + value);
    key.add("args", options.args);
    key.add("env", options.env);
    key.add("cwd", options.cwd);
    key.add("user", options.user);
    key.add("hostname", options.hostname);
    key.add("network", std::to_string(static_cast<int>(options.network)));
    key.add("seccomp", options.seccomp ? "1" : "0");
    for (const auto& t : options.tmpfs)
        key.add("tmpfs", std::vector<std::string>{t.destination}).add("tmpfs-options", t.options);
    return key;
}

StepKey copy_step_key(const InstructionFlags& flags,
                      const std::vector<std::pair<const RootDir*, std::string>>& patterns,
                      const SourceDigestOptions& options) {
    StepKey key;
    for (const auto& [name, value] : flags)
        key.add("flag", name + "=" + value);
    for (const auto& [root, pattern] : patterns) {
        key.add("pattern", pattern);
        key.add("sources", digest_sources(*root, match_sources(*root, pattern), options).str());
    }
    return key;
}

BuildCache::BuildCache(registry::Database& db, registry::BlobStore& blobs, int64_t max_bytes)
    : db_(db), blobs_(blobs), max_bytes_(max_bytes) {
    db_.migrate("engine-build-cache-0001", kSchema);
}

std::optional<BuildCache::Entry> BuildCache::lookup(const oci::Digest& key) {
    auto row = db_.row(
        "SELECT layer_digest, layer_media_type, layer_size, diff_id FROM build_cache "
        "WHERE key = ?1",
        {key.str()});
    if (!row) return std::nullopt;
    Entry entry;
    if (!registry::is_null((*row)[0])) {
        LayerOutput layer;
        layer.descriptor.digest = oci::Digest::parse(registry::as_text((*row)[0]));
        layer.descriptor.media_type = registry::as_text((*row)[1]);
        layer.descriptor.size = registry::as_int((*row)[2]);
        layer.diff_id = oci::Digest::parse(registry::as_text((*row)[3]));
        if (!blobs_.has(layer.descriptor.digest)) {
            db_.query("DELETE FROM build_cache WHERE key = ?1", {key.str()});
            return std::nullopt;
        }
        entry.layer = std::move(layer);
    }
    db_.query(
        "UPDATE build_cache SET last_used = "
        "MAX(?2, (SELECT COALESCE(MAX(last_used), 0) + 1 FROM build_cache)) WHERE key = ?1",
        {key.str(), now_micros()});
    return entry;
}

void BuildCache::store(const oci::Digest& key, const Entry& entry) {
    const int64_t now = now_micros();
    registry::SqlValue digest = nullptr, media_type = nullptr, diff_id = nullptr;
    int64_t size = 0;
    if (entry.layer) {
        digest = entry.layer->descriptor.digest.str();
        media_type = entry.layer->descriptor.media_type;
        size = entry.layer->descriptor.size;
        diff_id = entry.layer->diff_id.str();
    }
    db_.transaction([&] {
        db_.query(
            "INSERT OR REPLACE INTO build_cache (key, layer_digest, layer_media_type, layer_size, "
            "diff_id, created, last_used) VALUES (?1, ?2, ?3, ?4, ?5, ?6, "
            "MAX(?7, (SELECT COALESCE(MAX(last_used), 0) + 1 FROM build_cache)))",
            {key.str(), digest, media_type, size, diff_id, now / 1000000, now});
        evict();
    });
}

void BuildCache::evict() {
    db_.transaction([&] {
        struct Row {
            std::string key, layer;
            int64_t size;
        };
        std::vector<Row> rows;
        db_.query(
            "SELECT key, layer_digest, layer_size FROM build_cache ORDER BY last_used, rowid", {},
            [&](const registry::Database::Row& r) {
                rows.push_back({registry::as_text(r[0]),
                                registry::is_null(r[1]) ? std::string() : registry::as_text(r[1]),
                                registry::as_int(r[2])});
            });
        std::map<std::string, int64_t> refs;
        int64_t total = 0;
        for (const auto& r : rows)
            if (!r.layer.empty() && refs[r.layer]++ == 0) total += r.size;
        auto count = static_cast<int64_t>(rows.size());
        for (const auto& r : rows) {
            if (total <= max_bytes_ && count <= kMaxEntries) break;
            db_.query("DELETE FROM build_cache WHERE key = ?1", {r.key});
            count--;
            if (!r.layer.empty() && --refs[r.layer] == 0) total -= r.size;
        }
    });
}

std::vector<oci::Digest> BuildCache::gc_roots() {
    std::vector<oci::Digest> out;
    db_.query("SELECT DISTINCT layer_digest FROM build_cache WHERE layer_digest IS NOT NULL", {},
              [&](const registry::Database::Row& r) {
                  out.push_back(oci::Digest::parse(registry::as_text(r[0])));
              });
    return out;
}

int64_t BuildCache::bytes() {
    auto row = db_.row(
        "SELECT COALESCE(SUM(layer_size), 0) FROM (SELECT DISTINCT layer_digest, layer_size "
        "FROM build_cache WHERE layer_digest IS NOT NULL)");
    return row ? registry::as_int((*row)[0]) : 0;
}

int64_t BuildCache::entries() {
    auto row = db_.row("SELECT COUNT(*) FROM build_cache");
    return row ? registry::as_int((*row)[0]) : 0;
}

void BuildCache::set_max_bytes(int64_t max_bytes) {
    max_bytes_ = max_bytes;
    evict();
}

}  // namespace cascade::engine
