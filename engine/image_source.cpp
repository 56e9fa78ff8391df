#include "engine/image_source.hpp"

#include <cctype>

#include "engine/builder.hpp"
#include "oci/error.hpp"
#include "oci/image.hpp"
#include "oci/media_types.hpp"
#include "registry/importer.hpp"
#include "registry/remote.hpp"
#include "registry/store.hpp"

namespace cascade::engine {

std::string host_arch() {
#if defined(__x86_64__)
    return "amd64";
#elif defined(__aarch64__)
    return "arm64";
#elif defined(__arm__)
    return "arm";
#elif defined(__powerpc64__)
    return "ppc64le";
#elif defined(__s390x__)
    return "s390x";
#elif defined(__riscv)
    return "riscv64";
#else
    return "unknown";
#endif
}

namespace {

std::string lower(std::string s) {
    for (auto& c : s)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

bool is_local_domain(const std::string& domain, const std::vector<std::string>& local_domains) {
    if (domain.empty() || domain == "localhost" || domain.rfind("localhost:", 0) == 0) return true;
    for (const auto& d : local_domains)
        if (lower(d) == lower(domain)) return true;
    return false;
}

std::string oci_layer_media_type(const std::string& media_type) {
    if (media_type == oci::media::kDockerLayerGzip) return std::string(oci::media::kLayerGzip);
    return media_type;
}

// "docker.io", "index.docker.io" and "registry-1.docker.io" are one registry.
std::string canonical_domain(const std::string& domain) {
    std::string d = lower(domain);
    if (d == "index.docker.io" || d == "registry-1.docker.io") return "docker.io";
    return d;
}

}  // namespace

std::optional<LocalImage> local_image(const oci::Reference& ref,
                                      const std::vector<std::string>& local_domains) {
    if (!is_local_domain(ref.domain, local_domains)) return std::nullopt;
    LocalImage image;
    image.repository = ref.path;
    if (ref.digest) {
        image.reference = ref.digest->str();
        image.display = ref.path + "@" + ref.digest->str();
    } else {
        image.reference = ref.tag.empty() ? "latest" : ref.tag;
        image.display = ref.path + ":" + image.reference;
    }
    return image;
}

ImageName image_name(const oci::Reference& ref, const std::vector<std::string>& local_domains) {
    ImageName name;
    if (auto local = local_image(ref, local_domains)) {
        name.local = *local;
        name.tag = ref.digest ? "" : local->reference;
        if (ref.domain.empty()) {
            // A Docker Hub short name: the store first, then docker.io.
            name.short_name = true;
            name.remote = ref.normalized().str();
            if (ref.digest) name.tag = ref.digest->algorithm() + "-" + ref.digest->encoded();
        }
        return name;
    }
    std::string domain = lower(ref.domain);
    for (auto& c : domain)
        if (c == ':') c = '-';
    name.local.repository = domain + "/" + ref.path;
    if (ref.digest) {
        name.tag = ref.digest->algorithm() + "-" + ref.digest->encoded();
        name.local.reference = ref.digest->str();
        name.local.display = name.local.repository + "@" + ref.digest->str();
    } else {
        name.tag = ref.tag.empty() ? "latest" : ref.tag;
        name.local.reference = name.tag;
        name.local.display = name.local.repository + ":" + name.tag;
    }
    name.remote = ref.normalized().str();
    return name;
}

std::string base_display_name(const std::string& text,
                              const std::vector<std::string>& local_domains) {
    auto ref = oci::Reference::parse(text);
    return image_name(ref, local_domains).local.display;
}

namespace {

struct Endpoint {
    std::string host;
    bool insecure = false;
};

bool listed_insecure(const BuilderOptions& options, const std::string& host) {
    for (const auto& h : options.insecure_registries) {
        std::string entry = lower(h);
        for (const char* scheme : {"http://", "https://"})
            if (entry.rfind(scheme, 0) == 0) entry = entry.substr(std::string(scheme).size());
        while (!entry.empty() && entry.back() == '/')
            entry.pop_back();
        if (canonical_domain(entry) == canonical_domain(host)) return true;
    }
    return false;
}

std::vector<registry::ImportMirror> mirrors_for(const BuilderOptions& options,
                                                const std::string& domain) {
    std::vector<registry::ImportMirror> out;
    for (const auto& [key, list] : options.mirrors) {
        if (canonical_domain(key) != canonical_domain(domain)) continue;
        for (const auto& text : list) {
            registry::ImportMirror m;
            m.host = text;
            bool http = false;
            if (m.host.rfind("http://", 0) == 0) {
                m.host = m.host.substr(7);
                http = true;
            } else if (m.host.rfind("https://", 0) == 0) {
                m.host = m.host.substr(8);
            }
            while (!m.host.empty() && m.host.back() == '/')
                m.host.pop_back();
            m.insecure = http || listed_insecure(options, m.host);
            out.push_back(std::move(m));
        }
    }
    return out;
}

// What to do about a failed pull, by what the registry answered.
std::string pull_hint(const std::string& message, long status, const std::string& domain,
                      const BuilderOptions& options) {
    if (message.find("has no image for linux/") != std::string::npos)
        return "cascade builds for linux/" + host_arch() +
               " only; name an image (or an index) that has it";
    std::string auth = options.auth_file.empty() ? std::string("the daemon's auth.json")
                                                 : options.auth_file.string();
    if ((status == 401 || status == 403) && message.find("auth file") != std::string::npos)
        return "the builder reads " + auth;
    if (status == 401 || status == 403)
        return "add credentials for " + domain + " to " + auth +
               " (containers-auth.json: {\"auths\": {\"" + domain +
               "\": {\"auth\": \"base64(user:password)\"}}})";
    if (status == 404) return "check the name and the tag: the registry has no such image";
    if (status == 0 && canonical_domain(domain) == "docker.io")
        return "check that this host can reach docker.io; without internet access, configure a "
               "mirror (registries.mirrors.\"docker.io\" in the daemon's configuration)";
    if (status == 0)
        return "check that " + domain +
               " is reachable; if it serves plain HTTP or a certificate this host does not "
               "trust, add it to registries.insecure in the daemon's configuration";
    return "check the registry (" + domain + ") and try again";
}

// The import's own advice is for `cascade import-image`; a build says its own.
std::string without_import_hint(std::string message) {
    const std::string hint =
        " (if the registry serves plain HTTP or a certificate this host does not trust, mark "
        "the import insecure: --insecure, importPolicy.insecure: true)";
    for (auto at = message.find(hint); at != std::string::npos; at = message.find(hint))
        message.erase(at, hint.size());
    return message;
}

bool imported_from(registry::Store& store, const std::string& repository, const std::string& tag,
                   const std::string& remote) {
    auto history = store.tag_history(repository, tag);
    return !history.empty() && history.front().cause == "import " + remote;
}

}  // namespace

ResolvedImage pull_image(registry::Store& store, const BuilderOptions& options,
                         const std::string& text, const std::string& where, const std::string& what,
                         const std::function<void(const std::string&)>& log) {
    oci::Reference ref;
    try {
        ref = oci::Reference::parse(text);
    } catch (const Error& e) {
        throw Error(where + ": " + what + ": " + e.what());
    }
    ImageName name;
    try {
        name = image_name(ref, options.local_domains);
    } catch (const Error& e) {
        throw Error(where + ": " + what + ": " + e.what());
    }
    if (name.remote.empty()) return resolve_image(store, name.local, where, what);

    // What the store has under the stream tag a pull moves.
    auto stored = [&] {
        if (name.tag.empty()) return false;
        return store.resolve(name.local.repository, name.tag).has_value();
    };
    auto resolve_stored = [&] {
        LocalImage local = name.local;
        local.reference = name.tag;
        auto resolved = resolve_image(store, local, where, what);
        resolved.name = name.local.display;
        return resolved;
    };
    if (name.short_name) {
        // An image of the store wins, unless it is an earlier pull of the same.
        auto local = store.resolve(name.local.repository, name.local.reference);
        if (local &&
            (ref.digest || !imported_from(store, name.local.repository, name.tag, name.remote)))
            return resolve_image(store, name.local, where, what);
        if (ref.digest && stored()) return resolve_stored();
    } else if (ref.digest && stored()) {
        return resolve_stored();  // what a digest names never changes
    }
    if (!oci::is_valid_repository_name(name.local.repository))
        throw Error(where + ": " + what + ": cannot keep " + text +
                    " in cascade's registry: the stream name " + name.local.repository +
                    " is not a valid repository name");

    auto remote_ref = oci::Reference::parse(name.remote);
    registry::ImportSpec spec;
    spec.repository = name.local.repository;
    spec.tag = name.tag;
    spec.from = name.remote;
    spec.insecure = listed_insecure(options, remote_ref.domain);
    spec.mirrors = mirrors_for(options, remote_ref.domain);
    spec.platform = "linux/" + host_arch();
    try {
        if (!options.importer) throw Error("this builder cannot pull images");
        auto r = options.importer->import(spec);
        if (log)
            log(std::string("--> ") + (r.moved ? "pulled " : "up to date: ") + name.remote +
                " from " + r.registry + " into " + spec.repository + ":" + spec.tag + " (" +
                std::to_string(r.blobs_fetched) + " blobs fetched, " +
                std::to_string(r.blobs_present) + " present)");
    } catch (const std::exception& e) {
        long status = 0;
        if (auto* remote_error = dynamic_cast<const registry::RemoteError*>(&e))
            status = remote_error->status;
        std::string message = without_import_hint(e.what());
        const std::string prefix =
            "import " + name.remote + " into " + spec.repository + ":" + spec.tag + ": ";
        if (message.rfind(prefix, 0) == 0) message.erase(0, prefix.size());
        if (name.short_name && !store.resolve(name.local.repository, name.local.reference))
            throw Error(where + ": " + what + ": no image " + name.local.display +
                        " in cascade's registry, and pulling " + name.remote +
                        " failed: " + message + "; build or push " + name.local.display +
                        ", or configure a mirror for docker.io (registries.mirrors in the "
                        "daemon's configuration)");
        if (stored() && imported_from(store, name.local.repository, name.tag, name.remote)) {
            // Offline: the copy pulled before is used.
            if (log)
                log("--> cannot check " + name.remote + " (" + message +
                    "); using the copy in cascade's registry");
            return resolve_stored();
        }
        throw Error(where + ": " + what + ": cannot pull " + name.remote + " from registry " +
                    remote_ref.domain + ": " + message + "; " +
                    pull_hint(message, status, remote_ref.domain, options));
    }
    try {
        return resolve_stored();
    } catch (const Error& e) {
        throw Error(std::string(e.what()) + " (pulled from " + name.remote + ")");
    }
}

ResolvedImage resolve_image(registry::Store& store, const LocalImage& name,
                            const std::string& where, const std::string& what) {
    auto record = store.resolve(name.repository, name.reference);
    if (!record)
        throw Error(where + ": " + what + ": no image " + name.display +
                    " in cascade's registry; build or push it first");
    auto bytes = store.manifest_bytes(*record);
    oci::Manifest manifest;
    if (oci::media::is_index(record->media_type)) {
        auto index = oci::parse_index(bytes);
        const auto arch = host_arch();
        const oci::Descriptor* pick = nullptr;
        for (const auto& d : index.manifests) {
            if (d.platform && d.platform->os == "linux" && d.platform->architecture == arch &&
                oci::media::is_manifest(d.media_type)) {
                pick = &d;
                break;
            }
        }
        if (!pick)
            throw Error(where + ": " + what + ": " + name.display + " (" + record->digest.str() +
                        ") has no image for linux/" + arch);
        auto child = store.resolve(name.repository, pick->digest.str());
        if (!child)
            throw Error(where + ": " + what + ": the linux/" + arch + " image " +
                        pick->digest.str() + " of " + name.display +
                        " is missing from cascade's registry; push the image again");
        manifest = oci::parse_manifest(store.manifest_bytes(*child));
    } else if (oci::media::is_manifest(record->media_type)) {
        manifest = oci::parse_manifest(bytes);
    } else {
        throw Error(where + ": " + what + ": " + name.display + " is not an image (media type " +
                    record->media_type + ")");
    }
    ResolvedImage out;
    out.name = name.display;
    out.digest = record->digest;
    out.image.config = oci::parse_config(store.blobs().read(manifest.config.digest));
    if (out.image.config.diff_ids.size() != manifest.layers.size())
        throw Error(where + ": " + what + ": " + name.display + " is corrupt: its manifest has " +
                    std::to_string(manifest.layers.size()) + " layers, its config " +
                    std::to_string(out.image.config.diff_ids.size()) + " diff IDs");
    for (auto layer : manifest.layers) {
        layer.media_type = oci_layer_media_type(layer.media_type);
        out.image.layers.push_back(std::move(layer));
    }
    return out;
}

ImageState scratch_image() {
    ImageState s;
    s.config.architecture = host_arch();
    s.config.os = "linux";
    s.config.config.env = {std::string("PATH=") + kDefaultPath};
    return s;
}

}  // namespace cascade::engine
