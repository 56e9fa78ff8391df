#include "registry/importer.hpp"

#include "oci/error.hpp"
#include "oci/image.hpp"
#include "oci/media_types.hpp"
#include "oci/reference.hpp"
#include "registry/remote.hpp"
#include "registry/store.hpp"

namespace cascade::registry {

namespace {

// Indexes may nest; deeper than this is not an image.
constexpr int kMaxIndexDepth = 4;

struct Copy {
    RemoteRegistry& remote;
    Store& store;
    const std::string& local_repo;
    const std::string& remote_repo;
    ImportResult& result;
    std::vector<RemoteManifest> children;  // every manifest below the top, children first

    // Fetches what `m` references: blobs of a manifest, child manifests (and
    // theirs) of an index.
    void fetch_references(const RemoteManifest& m, int depth) {
        if (oci::media::is_index(m.media_type)) {
            if (depth >= kMaxIndexDepth)
                throw Error("index " + m.digest.str() + " nests indexes deeper than " +
                            std::to_string(kMaxIndexDepth) + " levels");
            oci::Index index = oci::parse_index(m.bytes);
            for (const auto& child : index.manifests) {
                result.manifests++;
                if (store.has_manifest(local_repo, child.digest)) continue;
                auto cm = remote.get_manifest(remote_repo, child.digest.str());
                if (static_cast<int64_t>(cm.bytes.size()) != child.size)
                    throw Error("manifest " + child.digest.str() + " has " +
                                std::to_string(cm.bytes.size()) + " bytes but index " +
                                m.digest.str() + " says " + std::to_string(child.size));
                fetch_references(cm, depth + 1);
                children.push_back(std::move(cm));
            }
            return;
        }
        oci::Manifest manifest = oci::parse_manifest(m.bytes);
        std::vector<const oci::Descriptor*> blobs{&manifest.config};
        for (const auto& layer : manifest.layers)
            blobs.push_back(&layer);
        for (const auto* d : blobs) {
            if (!d->urls.empty()) continue;  // a foreign layer lives elsewhere
            if (remote.fetch_blob(remote_repo, *d, store.blobs()))
                result.blobs_fetched++;
            else
                result.blobs_present++;
        }
    }
};

// The manifest of `index` for `platform` ("os/arch[/variant]").
oci::Descriptor pick_platform(const RemoteManifest& index, const std::string& platform) {
    std::string os = platform, arch, variant;
    if (auto slash = os.find('/'); slash != std::string::npos) {
        arch = os.substr(slash + 1);
        os.resize(slash);
    }
    if (auto slash = arch.find('/'); slash != std::string::npos) {
        variant = arch.substr(slash + 1);
        arch.resize(slash);
    }
    std::string found;
    for (const auto& d : oci::parse_index(index.bytes).manifests) {
        if (!d.platform) continue;
        const auto& p = *d.platform;
        if (p.os == os && p.architecture == arch && (variant.empty() || p.variant == variant) &&
            oci::media::is_manifest(d.media_type))
            return d;
        found += (found.empty() ? "" : ", ") + p.os + "/" + p.architecture +
                 (p.variant.empty() ? "" : "/" + p.variant);
    }
    throw Error("index " + index.digest.str() + " has no image for " + platform + " (it has " +
                (found.empty() ? std::string("no platform images") : found) + ")");
}

}  // namespace

Importer::Importer(Store& store, std::filesystem::path auth_file)
    : store_(store), auth_file_(std::move(auth_file)) {}

Importer::~Importer() {
    stop();
}

std::mutex& Importer::tag_mutex(const std::string& key) {
    std::lock_guard lock(mu_);
    auto& m = tag_mutexes_[key];
    if (!m) m = std::make_unique<std::mutex>();
    return *m;
}

ImportResult Importer::import(const ImportSpec& spec) {
    std::string key = spec.repository + ":" + spec.tag;
    try {
        ImportResult result = import_now(spec);
        std::lock_guard lock(errors_mu_);
        errors_.erase(key);
        return result;
    } catch (const std::exception& e) {
        if (!stopping_) {
            std::lock_guard lock(errors_mu_);
            errors_[key] = e.what();
        }
        throw;
    }
}

std::string Importer::last_error(const std::string& repository, const std::string& tag) const {
    std::lock_guard lock(errors_mu_);
    auto it = errors_.find(repository + ":" + tag);
    return it == errors_.end() ? std::string() : it->second;
}

ImportResult Importer::import_now(const ImportSpec& spec) {
    std::string target = spec.repository + ":" + spec.tag;
    if (!oci::is_valid_repository_name(spec.repository))
        throw Error("cannot import into \"" + spec.repository +
                    "\": not a valid repository name (lower-case path components)");
    if (!oci::is_valid_tag(spec.tag))
        throw Error("cannot import into " + target +
                    ": a tag is [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}");
    oci::Reference ref;
    try {
        ref = oci::Reference::parse(spec.from).normalized();
    } catch (const std::exception& e) {
        throw Error("cannot import into " + target + " from \"" + spec.from + "\": " + e.what());
    }

    ImportResult result;
    result.repository = spec.repository;
    result.tag = spec.tag;
    result.from = ref.str();
    std::lock_guard tag_lock(tag_mutex(target));
    std::vector<ImportMirror> sources = spec.mirrors;
    sources.push_back({ref.domain, spec.insecure});
    std::string failures;  // of the mirrors tried first
    for (size_t i = 0; i < sources.size(); i++) {
        const bool mirror = i + 1 < sources.size();
        try {
            import_from(spec, ref, sources[i], result);
            return result;
        } catch (const RemoteError& e) {
            if (mirror && !stopping_) {
                failures += "mirror " + sources[i].host + ": " + e.what() + "; ";
                continue;
            }
            throw RemoteError(
                "import " + ref.str() + " into " + target + ": " + failures + e.what(), e.status);
        } catch (const std::exception& e) {
            if (mirror && !stopping_) {
                failures += "mirror " + sources[i].host + ": " + e.what() + "; ";
                continue;
            }
            throw Error("import " + ref.str() + " into " + target + ": " + failures + e.what());
        }
    }
    throw Error("import " + ref.str() + " into " + target + ": no registry to import from");
}

void Importer::import_from(const ImportSpec& spec, const oci::Reference& ref,
                           const ImportMirror& source, ImportResult& result) {
    RemoteOptions options;
    options.insecure = source.insecure;
    options.credentials = AuthFile::load(auth_file_).find(source.host, ref.path);
    options.cancel = &stopping_;
    RemoteRegistry remote(source.host, options);
    result.registry = remote.host();

    std::string reference = ref.digest ? ref.digest->str() : ref.tag;
    auto head = remote.head_manifest(ref.path, reference);
    if (!spec.platform.empty() && oci::media::is_index(head.media_type)) {
        auto index = remote.get_manifest(ref.path, head.digest.str());
        auto child = pick_platform(index, spec.platform);
        head = {child.digest, child.media_type, child.size};
    }
    result.previous = store_.tag_digest(spec.repository, spec.tag);
    result.digest = head.digest;
    result.media_type = head.media_type;
    result.manifests = result.blobs_fetched = result.blobs_present = 0;
    if (result.previous == head.digest) {
        auto history = store_.tag_history(spec.repository, spec.tag);
        if (!history.empty()) result.generation = history.front().generation;
        return;  // the remote did not change: nothing to copy, no new generation
    }

    auto top = remote.get_manifest(ref.path, head.digest.str());
    result.media_type = top.media_type;
    result.manifests = 1;
    Copy copy{remote, store_, spec.repository, ref.path, result, {}};
    copy.fetch_references(top, 0);

    // All manifests and the tag in one transaction: all visible, or none.
    store_.db().transaction([&] {
        for (const auto& m : copy.children)
            store_.put_manifest(spec.repository, m.bytes, m.media_type);
        store_.put_manifest(spec.repository, top.bytes, top.media_type, spec.tag,
                            "import " + ref.str());
    });
    result.moved = true;
    auto history = store_.tag_history(spec.repository, spec.tag);
    if (!history.empty()) result.generation = history.front().generation;
}

void Importer::start_schedule(ScheduledSpecs specs, std::chrono::seconds interval) {
    std::lock_guard lock(mu_);
    if (thread_.joinable()) throw Error("the import schedule is already running");
    specs_ = std::move(specs);
    interval_ = std::max(interval, std::chrono::seconds(1));
    stopping_ = false;
    thread_ = std::thread([this] { run_schedule(); });
}

void Importer::stop() {
    {
        std::lock_guard lock(mu_);
        stopping_ = true;
        queue_.clear();
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
}

void Importer::enqueue(const ImportSpec& spec) {
    {
        std::lock_guard lock(mu_);
        if (!thread_.joinable() || stopping_) return;
        queue_.push_back(spec);
    }
    cv_.notify_all();
}

void Importer::set_event_sink(
    std::function<void(const std::string& kind, const std::string& message)> sink) {
    std::lock_guard lock(mu_);
    sink_ = std::move(sink);
}

void Importer::emit(const std::string& kind, const std::string& message) {
    std::function<void(const std::string&, const std::string&)> sink;
    {
        std::lock_guard lock(mu_);
        sink = sink_;
    }
    if (sink) sink(kind, message);
}

void Importer::run_schedule() {
    // The last failure per tag, so a tag that keeps failing the same way is
    // reported once, not every round.
    std::map<std::string, std::string> last_error;
    auto run = [&](const std::vector<ImportSpec>& batch) {
        for (const auto& spec : batch) {
            if (stopping_) return;
            std::string key = spec.repository + ":" + spec.tag;
            try {
                auto r = import(spec);
                last_error.erase(key);
                if (r.moved)
                    emit("ImportMoved", key + " → " + r.digest.short_hex() + " from " + r.from +
                                            " (" + std::to_string(r.blobs_fetched) +
                                            " blobs fetched, " + std::to_string(r.blobs_present) +
                                            " present)");
            } catch (const std::exception& e) {
                if (stopping_) return;
                if (last_error[key] != e.what()) emit("ImportFailed", e.what());
                last_error[key] = e.what();
            }
        }
    };

    auto next_round = std::chrono::steady_clock::now() + interval_;
    std::unique_lock lock(mu_);
    while (!stopping_) {
        cv_.wait_until(lock, next_round, [&] { return stopping_ || !queue_.empty(); });
        if (stopping_) break;
        std::vector<ImportSpec> batch;
        bool round = queue_.empty();
        if (round && std::chrono::steady_clock::now() < next_round) continue;  // spurious
        batch.assign(queue_.begin(), queue_.end());
        queue_.clear();
        lock.unlock();
        if (round) {
            try {
                for (auto& spec : specs_())
                    if (spec.scheduled) batch.push_back(std::move(spec));
            } catch (const std::exception& e) {
                emit("ImportFailed", std::string("cannot list the scheduled imports: ") + e.what());
            }
        }
        run(batch);
        lock.lock();
        if (round) next_round = std::chrono::steady_clock::now() + interval_;
    }
}

}  // namespace cascade::registry
