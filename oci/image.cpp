#include "oci/image.hpp"

#include <cerrno>
#include <cstdlib>
#include <ctime>
#include <limits>

#include "oci/error.hpp"
#include "oci/media_types.hpp"

namespace cascade::oci {

using nlohmann::json;

namespace {

// ---- reading ---------------------------------------------------------------

// Where in which document a value sits, for error messages:
// `image config field "config.Env[2]"`.
struct Where {
    std::string document;  // "manifest", "image index", ...
    std::string field;     // "" for the document itself

    Where operator/(std::string_view key) const {
        return {document, field.empty() ? std::string(key) : field + "." + std::string(key)};
    }
    Where operator[](size_t i) const { return {document, field + "[" + std::to_string(i) + "]"}; }
    std::string str() const {
        return field.empty() ? document : document + " field \"" + field + "\"";
    }
};

[[noreturn]] void fail_type(const Where& w, const json& v, std::string_view expected) {
    throw Error(w.str() + ": expected " + std::string(expected) + ", got " +
                std::string(v.type_name()));
}

[[noreturn]] void fail_missing(const Where& w) {
    throw Error(w.str() + " is missing (it is required)");
}

const json& require_object(const json& j, const Where& w) {
    if (!j.is_object()) fail_type(w, j, "an object");
    return j;
}

// Member lookup; nullptr when absent or null (Docker writes null for unset).
const json* member(const json& obj, std::string_view key) {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return nullptr;
    return &*it;
}

std::string get_string(const json& obj, std::string_view key, const Where& w,
                       bool required = false) {
    const json* v = member(obj, key);
    if (!v) {
        if (required) fail_missing(w / key);
        return {};
    }
    if (!v->is_string()) fail_type(w / key, *v, "a string");
    return v->get<std::string>();
}

int64_t get_int64(const json& obj, std::string_view key, const Where& w, bool required = false) {
    const json* v = member(obj, key);
    if (!v) {
        if (required) fail_missing(w / key);
        return 0;
    }
    if (v->is_number_unsigned()) {
        auto u = v->get<uint64_t>();
        if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
            throw Error((w / key).str() + ": " + std::to_string(u) + " is out of range");
        return static_cast<int64_t>(u);
    }
    if (!v->is_number_integer()) fail_type(w / key, *v, "an integer");
    return v->get<int64_t>();
}

bool get_bool(const json& obj, std::string_view key, const Where& w) {
    const json* v = member(obj, key);
    if (!v) return false;
    if (!v->is_boolean()) fail_type(w / key, *v, "a boolean");
    return v->get<bool>();
}

std::vector<std::string> string_array(const json& v, const Where& w) {
    if (!v.is_array()) fail_type(w, v, "an array of strings");
    std::vector<std::string> out;
    out.reserve(v.size());
    for (size_t i = 0; i < v.size(); i++) {
        if (!v[i].is_string()) fail_type(w[i], v[i], "a string");
        out.push_back(v[i].get<std::string>());
    }
    return out;
}

std::vector<std::string> get_string_array(const json& obj, std::string_view key, const Where& w) {
    const json* v = member(obj, key);
    if (!v) return {};
    return string_array(*v, w / key);
}

std::optional<std::vector<std::string>> get_optional_string_array(const json& obj,
                                                                  std::string_view key,
                                                                  const Where& w) {
    const json* v = member(obj, key);
    if (!v) return std::nullopt;
    return string_array(*v, w / key);
}

std::map<std::string, std::string> get_string_map(const json& obj, std::string_view key,
                                                  const Where& w) {
    const json* v = member(obj, key);
    if (!v) return {};
    if (!v->is_object()) fail_type(w / key, *v, "an object of strings");
    std::map<std::string, std::string> out;
    for (auto it = v->begin(); it != v->end(); ++it) {
        if (!it.value().is_string()) fail_type(w / key / it.key(), it.value(), "a string");
        out.emplace(it.key(), it.value().get<std::string>());
    }
    return out;
}

// {"8080/tcp": {}} → ["8080/tcp"] (sorted, since json objects are).
std::vector<std::string> get_key_set(const json& obj, std::string_view key, const Where& w) {
    const json* v = member(obj, key);
    if (!v) return {};
    if (!v->is_object()) fail_type(w / key, *v, "an object of {}");
    std::vector<std::string> out;
    for (auto it = v->begin(); it != v->end(); ++it)
        out.push_back(it.key());
    return out;
}

Digest get_digest(const json& obj, std::string_view key, const Where& w) {
    std::string text = get_string(obj, key, w, true);
    try {
        return Digest::parse(text);
    } catch (const Error& e) {
        throw Error((w / key).str() + ": " + e.what());
    }
}

Platform platform_at(const json& j, const Where& w) {
    require_object(j, w);
    Platform p;
    p.architecture = get_string(j, "architecture", w, true);
    p.os = get_string(j, "os", w, true);
    p.variant = get_string(j, "variant", w);
    p.os_version = get_string(j, "os.version", w);
    p.os_features = get_string_array(j, "os.features", w);
    return p;
}

Descriptor descriptor_at(const json& j, const Where& w) {
    require_object(j, w);
    Descriptor d;
    d.media_type = get_string(j, "mediaType", w, true);
    d.digest = get_digest(j, "digest", w);
    d.size = get_int64(j, "size", w, true);
    if (d.size < 0) throw Error((w / "size").str() + ": must not be negative");
    d.urls = get_string_array(j, "urls", w);
    d.annotations = get_string_map(j, "annotations", w);
    if (const json* p = member(j, "platform")) d.platform = platform_at(*p, w / "platform");
    d.artifact_type = get_string(j, "artifactType", w);
    return d;
}

std::vector<Descriptor> descriptor_array(const json& obj, std::string_view key, const Where& w) {
    const json* v = member(obj, key);
    if (!v) fail_missing(w / key);
    if (!v->is_array()) fail_type(w / key, *v, "an array of descriptors");
    std::vector<Descriptor> out;
    out.reserve(v->size());
    for (size_t i = 0; i < v->size(); i++)
        out.push_back(descriptor_at((*v)[i], (w / key)[i]));
    return out;
}

void check_schema_version(const json& j, const Where& w) {
    int64_t v = get_int64(j, "schemaVersion", w, true);
    if (v == 1)
        throw Error(w.str() +
                    ": Docker image manifest schema 1 is not supported; push the image again "
                    "with a current client (schema 2 or OCI)");
    if (v != 2) throw Error((w / "schemaVersion").str() + ": must be 2, got " + std::to_string(v));
}

json parse_json(std::string_view bytes, std::string_view what) {
    try {
        return json::parse(bytes);
    } catch (const json::exception& e) {
        // parse_error, and out_of_range for a number too large for a double ("1e400").
        throw Error(std::string(what) + " is not valid JSON: " + e.what());
    }
}

// ---- writing ---------------------------------------------------------------

json key_set(const std::vector<std::string>& keys) {
    json out = json::object();
    for (const auto& k : keys)
        out[k] = json::object();
    return out;
}

json string_map(const Annotations& m) {
    json out = json::object();
    for (const auto& [k, v] : m)
        out[k] = v;
    return out;
}

json to_json(const HealthConfig& h) {
    json j = json::object();
    j["Test"] = h.test;
    if (h.interval_ns) j["Interval"] = h.interval_ns;
    if (h.timeout_ns) j["Timeout"] = h.timeout_ns;
    if (h.start_period_ns) j["StartPeriod"] = h.start_period_ns;
    if (h.start_interval_ns) j["StartInterval"] = h.start_interval_ns;
    if (h.retries) j["Retries"] = h.retries;
    return j;
}

HealthConfig health_at(const json& j, const Where& w) {
    require_object(j, w);
    HealthConfig h;
    h.test = get_string_array(j, "Test", w);
    h.interval_ns = get_int64(j, "Interval", w);
    h.timeout_ns = get_int64(j, "Timeout", w);
    h.start_period_ns = get_int64(j, "StartPeriod", w);
    h.start_interval_ns = get_int64(j, "StartInterval", w);
    int64_t retries = get_int64(j, "Retries", w);
    if (retries < std::numeric_limits<int>::min() || retries > std::numeric_limits<int>::max())
        throw Error((w / "Retries").str() + ": out of range");
    h.retries = static_cast<int>(retries);
    return h;
}

json to_json(const ContainerConfig& c) {
    json j = json::object();
    if (!c.user.empty()) j["User"] = c.user;
    if (!c.exposed_ports.empty()) j["ExposedPorts"] = key_set(c.exposed_ports);
    if (!c.env.empty()) j["Env"] = c.env;
    if (c.entrypoint) j["Entrypoint"] = *c.entrypoint;
    if (c.cmd) j["Cmd"] = *c.cmd;
    if (!c.volumes.empty()) j["Volumes"] = key_set(c.volumes);
    if (!c.working_dir.empty()) j["WorkingDir"] = c.working_dir;
    if (!c.labels.empty()) j["Labels"] = string_map(c.labels);
    if (!c.stop_signal.empty()) j["StopSignal"] = c.stop_signal;
    if (c.shell) j["Shell"] = *c.shell;
    if (c.healthcheck) j["Healthcheck"] = to_json(*c.healthcheck);
    if (!c.on_build.empty()) j["OnBuild"] = c.on_build;
    return j;
}

ContainerConfig container_config_at(const json& j, const Where& w) {
    require_object(j, w);
    ContainerConfig c;
    c.user = get_string(j, "User", w);
    c.exposed_ports = get_key_set(j, "ExposedPorts", w);
    c.env = get_string_array(j, "Env", w);
    c.entrypoint = get_optional_string_array(j, "Entrypoint", w);
    c.cmd = get_optional_string_array(j, "Cmd", w);
    c.volumes = get_key_set(j, "Volumes", w);
    c.working_dir = get_string(j, "WorkingDir", w);
    c.labels = get_string_map(j, "Labels", w);
    c.stop_signal = get_string(j, "StopSignal", w);
    c.shell = get_optional_string_array(j, "Shell", w);
    if (const json* h = member(j, "Healthcheck")) c.healthcheck = health_at(*h, w / "Healthcheck");
    c.on_build = get_string_array(j, "OnBuild", w);
    return c;
}

void require_digest(const Descriptor& d) {
    if (d.digest.empty())
        throw Error("descriptor of media type \"" + d.media_type +
                    "\" has no digest; set it before serialising");
}

}  // namespace

// ---- public: to_json ---------------------------------------------------------

json to_json(const Platform& p) {
    json j = json::object();
    j["architecture"] = p.architecture;
    j["os"] = p.os;
    if (!p.variant.empty()) j["variant"] = p.variant;
    if (!p.os_version.empty()) j["os.version"] = p.os_version;
    if (!p.os_features.empty()) j["os.features"] = p.os_features;
    return j;
}

json to_json(const Descriptor& d) {
    require_digest(d);
    json j = json::object();
    j["mediaType"] = d.media_type;
    j["digest"] = d.digest.str();
    j["size"] = d.size;
    if (!d.urls.empty()) j["urls"] = d.urls;
    if (!d.annotations.empty()) j["annotations"] = string_map(d.annotations);
    if (d.platform) j["platform"] = to_json(*d.platform);
    if (!d.artifact_type.empty()) j["artifactType"] = d.artifact_type;
    return j;
}

json to_json(const Manifest& m) {
    json j = json::object();
    j["schemaVersion"] = m.schema_version;
    if (!m.media_type.empty()) j["mediaType"] = m.media_type;
    if (!m.artifact_type.empty()) j["artifactType"] = m.artifact_type;
    j["config"] = to_json(m.config);
    j["layers"] = json::array();
    for (const auto& l : m.layers)
        j["layers"].push_back(to_json(l));
    if (m.subject) j["subject"] = to_json(*m.subject);
    if (!m.annotations.empty()) j["annotations"] = string_map(m.annotations);
    return j;
}

json to_json(const Index& x) {
    json j = json::object();
    j["schemaVersion"] = x.schema_version;
    if (!x.media_type.empty()) j["mediaType"] = x.media_type;
    if (!x.artifact_type.empty()) j["artifactType"] = x.artifact_type;
    j["manifests"] = json::array();
    for (const auto& m : x.manifests)
        j["manifests"].push_back(to_json(m));
    if (x.subject) j["subject"] = to_json(*x.subject);
    if (!x.annotations.empty()) j["annotations"] = string_map(x.annotations);
    return j;
}

json to_json(const ImageConfig& c) {
    json j = json::object();
    if (!c.created.empty()) j["created"] = c.created;
    if (!c.author.empty()) j["author"] = c.author;
    j["architecture"] = c.architecture;
    j["os"] = c.os;
    if (!c.variant.empty()) j["variant"] = c.variant;
    j["config"] = to_json(c.config);
    json diff_ids = json::array();
    for (const auto& d : c.diff_ids)
        diff_ids.push_back(d.str());
    j["rootfs"] = json{{"type", "layers"}, {"diff_ids", diff_ids}};
    if (!c.history.empty()) {
        json history = json::array();
        for (const auto& h : c.history) {
            json e = json::object();
            if (!h.created.empty()) e["created"] = h.created;
            if (!h.created_by.empty()) e["created_by"] = h.created_by;
            if (!h.author.empty()) e["author"] = h.author;
            if (!h.comment.empty()) e["comment"] = h.comment;
            if (h.empty_layer) e["empty_layer"] = true;
            history.push_back(std::move(e));
        }
        j["history"] = std::move(history);
    }
    return j;
}

// ---- public: from_json -------------------------------------------------------

Descriptor descriptor_from_json(const json& j) {
    return descriptor_at(j, Where{"descriptor", ""});
}

Manifest manifest_from_json(const json& j) {
    Where w{"image manifest", ""};
    require_object(j, w);
    check_schema_version(j, w);
    Manifest m;
    m.schema_version = 2;
    m.media_type = get_string(j, "mediaType", w);
    if (!m.media_type.empty() && !media::is_manifest(m.media_type))
        throw Error((w / "mediaType").str() + ": \"" + m.media_type +
                    "\" is not an image manifest media type");
    m.artifact_type = get_string(j, "artifactType", w);
    const json* config = member(j, "config");
    if (!config) fail_missing(w / "config");
    m.config = descriptor_at(*config, w / "config");
    m.layers = descriptor_array(j, "layers", w);
    if (const json* s = member(j, "subject")) m.subject = descriptor_at(*s, w / "subject");
    m.annotations = get_string_map(j, "annotations", w);
    return m;
}

Index index_from_json(const json& j) {
    Where w{"image index", ""};
    require_object(j, w);
    check_schema_version(j, w);
    Index x;
    x.schema_version = 2;
    x.media_type = get_string(j, "mediaType", w);
    if (!x.media_type.empty() && !media::is_index(x.media_type))
        throw Error((w / "mediaType").str() + ": \"" + x.media_type +
                    "\" is not an image index media type");
    x.artifact_type = get_string(j, "artifactType", w);
    x.manifests = descriptor_array(j, "manifests", w);
    if (const json* s = member(j, "subject")) x.subject = descriptor_at(*s, w / "subject");
    x.annotations = get_string_map(j, "annotations", w);
    return x;
}

ImageConfig config_from_json(const json& j) {
    Where w{"image config", ""};
    require_object(j, w);
    ImageConfig c;
    c.created = get_string(j, "created", w);
    c.author = get_string(j, "author", w);
    c.architecture = get_string(j, "architecture", w, true);
    c.os = get_string(j, "os", w, true);
    c.variant = get_string(j, "variant", w);
    if (const json* cc = member(j, "config")) c.config = container_config_at(*cc, w / "config");
    const json* rootfs = member(j, "rootfs");
    if (!rootfs) fail_missing(w / "rootfs");
    Where rw = w / "rootfs";
    require_object(*rootfs, rw);
    std::string type = get_string(*rootfs, "type", rw, true);
    if (type != "layers")
        throw Error((rw / "type").str() + ": must be \"layers\", got \"" + type + "\"");
    const json* diff_ids = member(*rootfs, "diff_ids");
    if (!diff_ids) fail_missing(rw / "diff_ids");
    std::vector<std::string> ids = string_array(*diff_ids, rw / "diff_ids");
    for (size_t i = 0; i < ids.size(); i++) {
        try {
            c.diff_ids.push_back(Digest::parse(ids[i]));
        } catch (const Error& e) {
            throw Error((rw / "diff_ids")[i].str() + ": " + e.what());
        }
    }
    if (const json* history = member(j, "history")) {
        Where hw = w / "history";
        if (!history->is_array()) fail_type(hw, *history, "an array");
        for (size_t i = 0; i < history->size(); i++) {
            const json& e = (*history)[i];
            Where ew = hw[i];
            require_object(e, ew);
            HistoryEntry h;
            h.created = get_string(e, "created", ew);
            h.created_by = get_string(e, "created_by", ew);
            h.author = get_string(e, "author", ew);
            h.comment = get_string(e, "comment", ew);
            h.empty_layer = get_bool(e, "empty_layer", ew);
            c.history.push_back(std::move(h));
        }
    }
    return c;
}

Manifest parse_manifest(std::string_view bytes) {
    return manifest_from_json(parse_json(bytes, "image manifest"));
}

Index parse_index(std::string_view bytes) {
    return index_from_json(parse_json(bytes, "image index"));
}

ImageConfig parse_config(std::string_view bytes) {
    return config_from_json(parse_json(bytes, "image config"));
}

std::string to_json_bytes(const json& j) {
    try {
        // nlohmann::json keeps object keys in a std::map, so keys come out sorted.
        return j.dump(-1, ' ', false, json::error_handler_t::strict);
    } catch (const json::type_error& e) {
        throw Error(std::string("cannot serialise document as JSON (strings must be UTF-8): ") +
                    e.what());
    }
}

std::string detect_manifest_media_type(std::string_view bytes) {
    json j = parse_json(bytes, "manifest");
    if (!j.is_object())
        throw Error(std::string("manifest is a JSON ") + j.type_name() +
                    ", not an object; it is not an image manifest or index");
    if (auto it = j.find("mediaType"); it != j.end() && !it->is_null()) {
        if (!it->is_string())
            throw Error(std::string("manifest field \"mediaType\": expected a string, got ") +
                        it->type_name());
        std::string declared = it->get<std::string>();
        if (media::is_manifest(declared) || media::is_index(declared)) return declared;
        if (declared.rfind("application/vnd.docker.distribution.manifest.v1", 0) == 0)
            throw Error("Docker image manifest schema 1 (\"" + declared +
                        "\") is not supported; push the image again with a current client");
        throw Error("manifest declares media type \"" + declared +
                    "\", which is not an image manifest or index");
    }
    if (auto it = j.find("schemaVersion"); it != j.end() && *it == 1)
        throw Error(
            "Docker image manifest schema 1 is not supported; push the image again with a "
            "current client");
    bool has_manifests = j.contains("manifests");
    bool has_layers = j.contains("config") && j.contains("layers");
    if (has_manifests && !has_layers) return std::string(media::kImageIndex);
    if (has_layers && !has_manifests) return std::string(media::kImageManifest);
    if (has_manifests && has_layers)
        throw Error(
            "manifest has no mediaType and both \"manifests\" and \"layers\"; it is ambiguous");
    throw Error(
        "document is neither an image manifest (no \"config\" and \"layers\") nor an index "
        "(no \"manifests\")");
}

Blob Blob::of(std::string media_type, std::string bytes) {
    Blob b;
    b.media_type = std::move(media_type);
    b.digest = Digest::sha256_of(bytes);
    b.bytes = std::move(bytes);
    return b;
}

Descriptor Blob::descriptor() const {
    Descriptor d;
    d.media_type = media_type;
    d.digest = digest;
    d.size = static_cast<int64_t>(bytes.size());
    return d;
}

std::string rfc3339(int64_t unix_seconds) {
    time_t t = static_cast<time_t>(unix_seconds);
    struct tm tm {};
    if (!gmtime_r(&t, &tm))
        throw Error("time " + std::to_string(unix_seconds) + " cannot be expressed as a date");
    char buf[64];
    size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (n == 0) throw Error("time " + std::to_string(unix_seconds) + " cannot be formatted");
    return std::string(buf, n);
}

std::optional<int64_t> source_date_epoch() {
    const char* v = std::getenv("SOURCE_DATE_EPOCH");
    if (!v || !*v) return std::nullopt;
    // The value is what `date +%s` prints: decimal digits, nothing else.
    int64_t out = 0;
    for (const char* p = v; *p; p++) {
        if (*p < '0' || *p > '9') return std::nullopt;
        int digit = *p - '0';
        if (out > (std::numeric_limits<int64_t>::max() - digit) / 10) return std::nullopt;
        out = out * 10 + digit;
    }
    return out;
}

}  // namespace cascade::oci
