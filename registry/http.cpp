#include "registry/http.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <httplib.h>
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <shared_mutex>
#include <unordered_map>

#include "oci/image.hpp"
#include "oci/media_types.hpp"
#include "oci/reference.hpp"
#include "registry/metrics.hpp"
#include "registry/store.hpp"
#include "registry/uploads.hpp"

namespace cascade::registry {

namespace {

using httplib::ContentReader;
using httplib::Request;
using httplib::Response;
using json = nlohmann::json;

constexpr size_t kCacheableManifestBytes = 1 << 20;  // larger ones are read each time
constexpr size_t kBlobSendSlice = 4 << 20;           // bytes handed to the socket per call

// A failure with its Distribution-Spec error code.
struct HttpError {
    int status;
    std::string code;
    std::string message;
    json detail = nullptr;
};

// Manifest bytes by digest. Content-addressed bytes never change, so an entry
// is never stale; whether a repository holds the manifest is still asked of
// the store on every request.
class ManifestCache {
  public:
    explicit ManifestCache(size_t budget) : budget_(budget) {}

    std::shared_ptr<const std::string> get(const std::string& digest) const {
        std::shared_lock lock(mu_);
        auto it = entries_.find(digest);
        return it == entries_.end() ? nullptr : it->second;
    }

    void put(const std::string& digest, std::shared_ptr<const std::string> bytes) {
        if (bytes->size() > kCacheableManifestBytes || bytes->size() > budget_) return;
        std::unique_lock lock(mu_);
        if (entries_.count(digest)) return;
        // Evicting whatever comes first is crude but bounded; the hot set of a
        // registry's manifests is small next to the budget.
        while (used_ + bytes->size() > budget_ && !entries_.empty()) {
            used_ -= entries_.begin()->second->size();
            entries_.erase(entries_.begin());
        }
        used_ += bytes->size();
        entries_.emplace(digest, std::move(bytes));
    }

  private:
    size_t budget_;
    mutable std::shared_mutex mu_;
    std::unordered_map<std::string, std::shared_ptr<const std::string>> entries_;
    size_t used_ = 0;
};

// A read-only mapping of a blob file, unmapped when released.
class Mapping {
  public:
    Mapping(void* data, size_t size) : data_(static_cast<const char*>(data)), size_(size) {}
    ~Mapping() { release(); }
    Mapping(const Mapping&) = delete;
    Mapping& operator=(const Mapping&) = delete;
    const char* data() const { return data_; }
    void release() {
        std::lock_guard lock(mu_);
        if (data_) ::munmap(const_cast<char*>(data_), size_);
        data_ = nullptr;
    }

  private:
    std::mutex mu_;
    const char* data_;
    size_t size_;
};

}  // namespace

struct Distribution::State {
    State(Store& s, DistributionOptions o)
        : store(s), options(o), uploads(s.blobs()), manifests(o.manifest_cache_bytes) {}
    Store& store;
    DistributionOptions options;
    UploadSessions uploads;
    ManifestCache manifests;
};

namespace {

using Api = Distribution::State;

// A request body, read at most once; whatever a handler leaves unread is
// drained so the connection stays usable for the next request.
class Body {
  public:
    explicit Body(const ContentReader& reader) : reader_(reader) {}
    bool read(const UploadSessions::Receiver& receiver) {
        consumed_ = true;
        return reader_([&](const char* data, size_t len) {
            bytes_ += len;
            return receiver(data, len);
        });
    }
    uint64_t bytes() const { return bytes_; }
    void drain() {
        if (!consumed_) read([](const char*, size_t) { return true; });
    }

  private:
    const ContentReader& reader_;
    bool consumed_ = false;
    uint64_t bytes_ = 0;
};

// Counts a finished request for /metrics (bytes out: the body, or what a
// content provider announced; none for HEAD).
void count_request(const Request& req, const Response& res, uint64_t bytes_in) {
    uint64_t out = req.method == "HEAD" ? 0 : res.body.size() + res.content_length_;
    metrics().registry_request(req.method, res.status > 0 ? res.status : 200,
                               bytes_in + req.body.size(), out);
}

// An empty `code` answers the status alone (416 to a blob Range: the spec has
// no error code for it).
void send_error(Response& res, int status, const std::string& code, const std::string& message,
                const json& detail = nullptr) {
    res.status = status;
    if (code.empty()) return;
    json body = {
        {"errors", json::array({{{"code", code}, {"message", message}, {"detail", detail}}})}};
    res.status = status;
    res.set_content(body.dump(), "application/json");
}

void respond(Response& res, std::exception_ptr ep) {
    try {
        std::rethrow_exception(ep);
    } catch (const HttpError& e) {
        send_error(res, e.status, e.code, e.message, e.detail);
    } catch (const ManifestBlobUnknown& e) {
        send_error(res, 400, "MANIFEST_BLOB_UNKNOWN", e.what());
    } catch (const ManifestInvalid& e) {
        send_error(res, 400, "MANIFEST_INVALID", e.what());
    } catch (const DigestMismatch& e) {
        send_error(res, 400, "DIGEST_INVALID", e.what());
    } catch (const std::exception& e) {
        send_error(res, 500, "UNKNOWN", e.what());
    } catch (...) {
        send_error(res, 500, "UNKNOWN", "unknown failure");
    }
}

// httplib parses a Range header into req.ranges and, when they are set,
// slices whatever the handler answers (error bodies included) and turns the
// status into 206 by itself. The handlers here answer ranges themselves (only
// blob GETs have any), so the parsed ranges are dropped before a handler runs.
// The Request is httplib's own mutable object, handed to us as const.
void take_over_ranges(const Request& req) {
    const_cast<Request&>(req).ranges.clear();
}

using Handler = std::function<void(Api&, const Request&, Response&)>;
using BodyHandler = std::function<void(Api&, const Request&, Response&, Body&)>;

httplib::Server::Handler wrap(std::shared_ptr<Api> api, Handler fn) {
    return [api, fn](const Request& req, Response& res) {
        take_over_ranges(req);
        res.set_header("Docker-Distribution-API-Version", "registry/2.0");
        try {
            fn(*api, req, res);
        } catch (...) {
            respond(res, std::current_exception());
        }
        count_request(req, res, 0);
    };
}

httplib::Server::HandlerWithContentReader wrap_body(std::shared_ptr<Api> api, BodyHandler fn) {
    return [api, fn](const Request& req, Response& res, const ContentReader& reader) {
        take_over_ranges(req);
        res.set_header("Docker-Distribution-API-Version", "registry/2.0");
        Body body(reader);
        try {
            fn(*api, req, res, body);
        } catch (...) {
            respond(res, std::current_exception());
        }
        try {
            body.drain();
        } catch (...) {
        }
        count_request(req, res, body.bytes());
    };
}

HttpError name_unknown(const std::string& repo) {
    return HttpError{404,
                     "NAME_UNKNOWN",
                     "repository " + repo + " is not known to this registry",
                     {{"name", repo}}};
}

std::string repository(const Request& req) {
    std::string name = req.matches[1];
    if (!oci::is_valid_repository_name(name))
        throw HttpError{400,
                        "NAME_INVALID",
                        "invalid repository name '" + name +
                            "': use at most 255 characters of lower-case components ([a-z0-9] "
                            "joined by . _ __ -) separated by /",
                        {{"name", name}}};
    return name;
}

oci::Digest parse_digest(const std::string& text) {
    auto d = oci::Digest::try_parse(text);
    if (!d)
        throw HttpError{400,
                        "DIGEST_INVALID",
                        "invalid digest '" + text + "': expected sha256:<64 lower-case hex>",
                        {{"digest", text}}};
    if (d->algorithm() != "sha256")
        throw HttpError{400,
                        "DIGEST_INVALID",
                        "unsupported digest algorithm in '" + text + "': this registry uses sha256",
                        {{"digest", text}}};
    return *d;
}

// The request's Content-Length header, when it has a valid one.
std::optional<uint64_t> content_length(const Request& req) {
    if (!req.has_header("Content-Length")) return std::nullopt;
    std::string text = req.get_header_value("Content-Length");
    if (text.empty() || text.size() > 19 ||
        !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; }))
        return std::nullopt;
    return std::stoull(text);
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
        s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
        s.remove_suffix(1);
    return s;
}

// 1 to 18 decimal digits, nothing else.
std::optional<uint64_t> parse_number(std::string_view s) {
    if (s.empty() || s.size() > 18) return std::nullopt;
    uint64_t v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') return std::nullopt;
        v = v * 10 + static_cast<uint64_t>(c - '0');
    }
    return v;
}

bool is_digest_reference(const std::string& ref) {
    return ref.find(':') != std::string::npos;  // tags never contain ':'
}

// Parses a non-negative integer query parameter.
std::optional<size_t> count_param(const Request& req, const std::string& name) {
    if (!req.has_param(name.c_str())) return std::nullopt;
    std::string text = req.get_param_value(name.c_str());
    size_t value = 0;
    bool ok = !text.empty() && text.size() <= 18;
    for (char c : text) {
        if (c < '0' || c > '9') ok = false;
        value = value * 10 + static_cast<size_t>(c - '0');
    }
    if (!ok)
        throw HttpError{400,
                        "UNSUPPORTED",
                        "invalid " + name + "=" + text + ": use a non-negative integer",
                        {{name, text}}};
    return value;
}

std::string range_header(int64_t size) {
    return "0-" + std::to_string(size > 0 ? size - 1 : 0);
}

std::string upload_location(const std::string& repo, const std::string& id) {
    return "/v2/" + repo + "/blobs/uploads/" + id;
}

void blob_created(Response& res, const std::string& repo, const oci::Digest& d) {
    res.status = 201;
    res.set_header("Location", "/v2/" + repo + "/blobs/" + d.str());
    res.set_header("Docker-Content-Digest", d.str());
}

void upload_accepted(Response& res, int status, const std::string& repo, const std::string& id,
                     int64_t size) {
    res.status = status;
    res.set_header("Location", upload_location(repo, id));
    res.set_header("Docker-Upload-UUID", id);
    res.set_header("Blob-Upload-Session-ID", id);
    res.set_header("Range", range_header(size));
}

// `n` and `last` pagination of a sorted list, with a Link header to the next
// page when one remains. n=0 answers an empty list and no Link.
std::vector<std::string> paginate(const std::vector<std::string>& all, const Request& req,
                                  Response& res, const std::string& path) {
    std::string last = req.get_param_value("last");
    auto n = count_param(req, "n");
    auto begin = all.begin();
    if (!last.empty()) begin = std::upper_bound(all.begin(), all.end(), last);
    std::vector<std::string> page(begin, all.end());
    if (n && page.size() > *n) {
        page.resize(*n);
        if (*n > 0)
            res.set_header("Link", "<" + path + "?n=" + std::to_string(*n) +
                                       "&last=" + page.back() + ">; rel=\"next\"");
    }
    return page;
}

// ---- base and discovery ----

void get_base(Api&, const Request&, Response& res) {
    res.status = 200;
    res.set_content("{}", "application/json");
}

void get_catalog(Api& api, const Request& req, Response& res) {
    auto repos = paginate(api.store.repositories(), req, res, "/v2/_catalog");
    res.status = 200;
    res.set_content(json{{"repositories", repos}}.dump(), "application/json");
}

void get_tags(Api& api, const Request& req, Response& res) {
    auto repo = repository(req);
    if (!api.store.has_repository(repo)) throw name_unknown(repo);
    auto tags = paginate(api.store.tags(repo), req, res, "/v2/" + repo + "/tags/list");
    res.status = 200;
    res.set_content(json{{"name", repo}, {"tags", tags}}.dump(), "application/json");
}

void get_referrers(Api& api, const Request& req, Response& res) {
    auto repo = repository(req);
    auto subject = parse_digest(req.matches[2]);
    std::string artifact_type = req.get_param_value("artifactType");
    // The spec: never 404 — an unknown repository or subject has no referrers.
    json manifests = json::array();
    for (const auto& r : api.store.referrers(repo, subject, artifact_type)) {
        json d = {{"mediaType", r.media_type}, {"digest", r.digest.str()}, {"size", r.size}};
        if (!r.artifact_type.empty()) d["artifactType"] = r.artifact_type;
        if (!r.annotations.empty()) d["annotations"] = r.annotations;
        manifests.push_back(std::move(d));
    }
    if (!artifact_type.empty()) res.set_header("OCI-Filters-Applied", "artifactType");
    json index = {{"schemaVersion", 2},
                  {"mediaType", oci::media::kImageIndex},
                  {"manifests", std::move(manifests)}};
    res.status = 200;
    res.set_content(index.dump(), std::string(oci::media::kImageIndex));
}

// The tag-history extension: newest first; `n` limits a page and `last=<generation>`
// continues after that generation.
void get_tag_history(Api& api, const Request& req, Response& res) {
    auto repo = repository(req);
    std::string tag = req.matches[2];
    if (!api.store.has_repository(repo)) throw name_unknown(repo);
    auto unknown_tag = HttpError{404,
                                 "MANIFEST_UNKNOWN",
                                 "tag " + tag + " of " + repo + " has no history",
                                 {{"name", repo}, {"tag", tag}}};
    if (!oci::is_valid_tag(tag)) throw unknown_tag;
    auto history = api.store.tag_history(repo, tag);
    if (history.empty()) throw unknown_tag;

    auto n = count_param(req, "n");
    auto last = count_param(req, "last");
    auto begin = history.begin();
    if (last)
        begin = std::find_if(history.begin(), history.end(), [&](const TagHistoryEntry& e) {
            return e.generation < static_cast<int64_t>(*last);
        });
    std::vector<TagHistoryEntry> page(begin, history.end());
    if (n && page.size() > *n) {
        page.resize(*n);
        if (*n > 0)
            res.set_header(
                "Link", "</v2/" + repo + "/_oci/tag-history/" + tag + "?n=" + std::to_string(*n) +
                            "&last=" + std::to_string(page.back().generation) + ">; rel=\"next\"");
    }

    json manifests = json::array();
    for (const auto& e : page) {
        json d;
        // Known for every move recorded since the store kept it, and for older
        // ones while their manifest exists.
        if (!e.media_type.empty()) d["mediaType"] = e.media_type;
        d["digest"] = e.digest.str();
        d["size"] = e.size;
        d["annotations"] = {{kTagTimestampAnnotation, oci::rfc3339(e.time)},
                            {kTagEventAnnotation, "created"},
                            {kTagGenerationAnnotation, std::to_string(e.generation)},
                            {kTagCauseAnnotation, e.cause}};
        manifests.push_back(std::move(d));
    }
    json index = {{"schemaVersion", 2},
                  {"mediaType", oci::media::kImageIndex},
                  {"manifests", std::move(manifests)}};
    res.status = 200;
    res.set_content(index.dump(), std::string(oci::media::kImageIndex));
}

// ---- manifests ----

// GET and HEAD: one indexed lookup, then the bytes from the cache (or the
// blob file once). No JSON is parsed on this path.
void get_manifest(Api& api, const Request& req, Response& res) {
    auto repo = repository(req);
    std::string ref = req.matches[2];
    if (is_digest_reference(ref))
        parse_digest(ref);
    else if (!oci::is_valid_tag(ref))
        throw HttpError{404,
                        "MANIFEST_UNKNOWN",
                        "'" + ref + "' is neither a valid tag nor a digest",
                        {{"reference", ref}}};
    auto m = api.store.resolve(repo, ref);
    if (!m) {
        if (!api.store.has_repository(repo)) throw name_unknown(repo);
        throw HttpError{404,
                        "MANIFEST_UNKNOWN",
                        "manifest " + ref + " is not in " + repo,
                        {{"name", repo}, {"reference", ref}}};
    }
    std::string digest = m->digest.str();
    auto bytes = api.manifests.get(digest);
    if (!bytes) {
        bytes = std::make_shared<const std::string>(api.store.manifest_bytes(*m));
        api.manifests.put(digest, bytes);
    }
    res.status = 200;
    res.set_header("Docker-Content-Digest", digest);
    res.set_header("ETag", "\"" + digest + "\"");
    res.set_content(bytes->data(), bytes->size(), m->media_type);
}

void put_manifest(Api& api, const Request& req, Response& res, Body& body) {
    auto repo = repository(req);
    std::string ref = req.matches[2];
    std::optional<oci::Digest> by_digest;
    if (is_digest_reference(ref))
        by_digest = parse_digest(ref);
    else if (!oci::is_valid_tag(ref))
        throw HttpError{400,
                        "MANIFEST_INVALID",
                        "invalid tag '" + ref + "': a tag is [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}",
                        {{"tag", ref}}};
    ManifestPush how;
    how.require_linked_blobs = true;
    if (!by_digest) how.tags.push_back(ref);
    // OCI 1.1: PUT …/manifests/<digest>?tag=a&tag=b tags it in the same request.
    if (by_digest)
        for (size_t i = 0; i < req.get_param_value_count("tag"); i++) {
            std::string tag = req.get_param_value("tag", i);
            if (!oci::is_valid_tag(tag))
                throw HttpError{
                    400, "MANIFEST_INVALID", "invalid tag '" + tag + "'", {{"tag", tag}}};
            how.tags.push_back(tag);
        }

    size_t limit = api.options.max_manifest_bytes;
    auto too_large = HttpError{413,
                               "SIZE_INVALID",
                               "manifest larger than " + std::to_string(limit) +
                                   " bytes; this registry accepts manifests up to that size",
                               {{"limit", limit}}};
    if (auto declared = content_length(req); declared && *declared > limit) throw too_large;
    auto bytes = std::make_shared<std::string>();
    bool over = false;
    bool complete = body.read([&](const char* data, size_t len) {
        if (bytes->size() + len > limit) over = true;
        if (!over) bytes->append(data, len);
        return true;
    });
    if (over) throw too_large;
    if (!complete)
        throw HttpError{400, "MANIFEST_INVALID", "manifest body could not be read completely"};

    if (by_digest) {
        auto actual = oci::Digest::sha256_of(*bytes);
        if (actual != *by_digest)
            throw HttpError{400,
                            "DIGEST_INVALID",
                            "manifest bytes have digest " + actual.str() + ", not " +
                                by_digest->str() + " as in the URL",
                            {{"expected", by_digest->str()}, {"actual", actual.str()}}};
    }
    auto pushed = api.store.push_manifest(repo, *bytes, req.get_header_value("Content-Type"), how);
    api.manifests.put(pushed.digest.str(), std::move(bytes));
    res.status = 201;
    res.set_header("Location", "/v2/" + repo + "/manifests/" + pushed.digest.str());
    res.set_header("Docker-Content-Digest", pushed.digest.str());
    if (pushed.subject) res.set_header("OCI-Subject", pushed.subject->str());
}

void delete_manifest(Api& api, const Request& req, Response& res) {
    auto repo = repository(req);
    std::string ref = req.matches[2];
    bool removed;
    if (is_digest_reference(ref))
        removed = api.store.delete_manifest(repo, parse_digest(ref));
    else
        removed = oci::is_valid_tag(ref) && api.store.delete_tag(repo, ref);
    if (!removed) {
        if (!api.store.has_repository(repo)) throw name_unknown(repo);
        throw HttpError{404,
                        "MANIFEST_UNKNOWN",
                        "manifest " + ref + " is not in " + repo,
                        {{"name", repo}, {"reference", ref}}};
    }
    res.status = 202;
}

// ---- blobs ----

struct ByteRange {
    size_t first = 0, last = 0;  // inclusive
};

// The single byte range a Range header asks for: nullopt to answer the whole
// blob (no header, several ranges, or a header that is not a byte range, which
// RFC 9110 says to ignore). Throws 416 when the range cannot be satisfied.
std::optional<ByteRange> requested_range(const Request& req, size_t size, Response& res) {
    if (!req.has_header("Range")) return std::nullopt;
    std::string header = req.get_header_value("Range");
    std::string_view spec = trim(header);
    if (!spec.starts_with("bytes")) return std::nullopt;
    spec = trim(spec.substr(5));
    if (!spec.starts_with("=") || spec.find(',') != std::string_view::npos) return std::nullopt;
    spec = spec.substr(1);
    auto dash = spec.find('-');
    if (dash == std::string_view::npos) return std::nullopt;
    std::string_view a = trim(spec.substr(0, dash)), b = trim(spec.substr(dash + 1));
    auto first = parse_number(a), last = parse_number(b);
    if ((!a.empty() && !first) || (!b.empty() && !last) || (a.empty() && b.empty()))
        return std::nullopt;
    ByteRange r;
    if (a.empty()) {  // the last b bytes
        size_t suffix = *last;
        if (suffix == 0 || size == 0) {
            res.set_header("Content-Range", "bytes */" + std::to_string(size));
            throw HttpError{416, "", "range " + header + " is empty for this blob"};
        }
        r.first = size - std::min(suffix, size);
        r.last = size - 1;
        return r;
    }
    r.first = *first;
    r.last = last ? *last : size - 1;
    if (last && r.last < r.first) return std::nullopt;  // invalid: ignored
    if (r.first >= size) {
        res.set_header("Content-Range", "bytes */" + std::to_string(size));
        throw HttpError{416, "",
                        "range " + header + " starts at or past the end of the blob (" +
                            std::to_string(size) + " bytes)"};
    }
    r.last = std::min(r.last, size - 1);
    return r;
}

// GET and HEAD. The blob file is mapped and the mapping handed to the socket
// writes: the bytes go from the page cache to the socket with no read buffer
// in between.
void get_blob(Api& api, const Request& req, Response& res) {
    auto repo = repository(req);
    auto digest = parse_digest(req.matches[2]);
    auto unknown = HttpError{404,
                             "BLOB_UNKNOWN",
                             "blob " + digest.str() + " is not in " + repo,
                             {{"digest", digest.str()}}};
    // Only what the repository holds: pushed or mounted there, or one of its
    // manifests.
    if (!api.store.repo_has_blob(repo, digest) && !api.store.has_manifest(repo, digest))
        throw unknown;
    auto path = api.store.blobs().path(digest);
    fs::Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) {
        if (errno == ENOENT) throw unknown;  // collected behind the link's back
        throw sys_error("open", path.string(), errno);
    }
    struct stat st;
    if (::fstat(fd.get(), &st) != 0) throw sys_error("stat", path.string(), errno);
    auto size = static_cast<size_t>(st.st_size);

    res.set_header("Docker-Content-Digest", digest.str());
    res.set_header("ETag", "\"" + digest.str() + "\"");
    res.set_header("Accept-Ranges", "bytes");
    res.set_header("Cache-Control", "max-age=31536000");
    auto range = requested_range(req, size, res);
    size_t offset = range ? range->first : 0;
    size_t length = range ? range->last - range->first + 1 : size;
    res.status = range ? 206 : 200;
    if (range)
        res.set_header("Content-Range", "bytes " + std::to_string(range->first) + "-" +
                                            std::to_string(range->last) + "/" +
                                            std::to_string(size));
    if (size == 0) {
        res.set_content("", "application/octet-stream");
        return;
    }
    if (req.method == "HEAD") {
        // httplib sends the headers (Content-Length: length) and never asks
        // a HEAD response's provider for data.
        res.set_content_provider(length, "application/octet-stream",
                                 [](size_t, size_t, httplib::DataSink&) { return false; });
        return;
    }
    void* data = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd.get(), 0);
    if (data == MAP_FAILED) throw sys_error("mmap", path.string(), errno);
    ::madvise(data, size, range ? MADV_NORMAL : MADV_SEQUENTIAL);
    auto mapping = std::make_shared<Mapping>(data, size);
    res.set_content_provider(
        length, "application/octet-stream",
        [mapping, offset](size_t at, size_t left, httplib::DataSink& sink) {
            const char* base = mapping->data();
            if (!base) return false;
            size_t n = std::min(left, kBlobSendSlice);
            if (!sink.write(base + offset + at, n)) return false;
            // The pages sent leave this process's resident set (they stay in
            // the page cache), so a big pull doesn't count as our memory.
            static const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
            size_t from = (offset + at) / page * page;
            size_t to = (offset + at + n) / page * page;
            if (to > from) ::madvise(const_cast<char*>(base) + from, to - from, MADV_DONTNEED);
            return true;
        },
        [mapping](bool) { mapping->release(); });
}

void delete_blob(Api& api, const Request& req, Response& res) {
    auto repo = repository(req);
    auto digest = parse_digest(req.matches[2]);
    // Unlinks it from the repository; the file is the garbage collector's.
    if (!api.store.unlink_blob(repo, digest)) {
        if (!api.store.has_repository(repo)) throw name_unknown(repo);
        throw HttpError{404,
                        "BLOB_UNKNOWN",
                        "blob " + digest.str() + " is not in " + repo,
                        {{"digest", digest.str()}}};
    }
    res.status = 202;
}

// ---- uploads ----

// Monolithic upload in the POST itself: the body is the whole blob.
void upload_in_one_request(Api& api, const std::string& repo, const oci::Digest& digest,
                           Response& res, Body& body) {
    BlobWriter writer = api.store.blobs().begin();
    std::string error;
    bool complete = body.read([&](const char* data, size_t len) {
        try {
            writer.write(data, len);
        } catch (const std::exception& e) {
            error = e.what();
            return false;
        }
        return true;
    });
    if (!error.empty()) throw Error(error);
    if (!complete)
        throw HttpError{400, "BLOB_UPLOAD_INVALID",
                        "blob upload body could not be read completely; send it again"};
    // Garbage collection waits while a committed blob is not linked yet.
    auto hold = api.store.hold_blobs();
    try {
        writer.commit(digest);
    } catch (const Error& e) {
        throw HttpError{400, "DIGEST_INVALID", e.what(), {{"digest", digest.str()}}};
    }
    api.store.link_blob(repo, digest);
    blob_created(res, repo, digest);
}

// Cross-repository mount: true when the blob is now linked to `repo`. Without
// `from` (OCI 1.1) any blob the store holds is found.
bool mount_blob(Api& api, const std::string& repo, const Request& req) {
    // Garbage collection waits from the check to the link.
    auto hold = api.store.hold_blobs();
    auto d = oci::Digest::try_parse(req.get_param_value("mount"));
    if (!d || d->algorithm() != "sha256" || !api.store.blobs().has(*d)) return false;
    if (req.has_param("from")) {
        std::string from = req.get_param_value("from");
        if (!oci::is_valid_repository_name(from)) return false;
        if (!api.store.repo_has_blob(from, *d) && !api.store.has_manifest(from, *d)) return false;
    }
    api.store.link_blob(repo, *d);
    return true;
}

void post_upload(Api& api, const Request& req, Response& res, Body& body) {
    auto repo = repository(req);
    if (req.has_param("mount")) {
        if (mount_blob(api, repo, req)) {
            blob_created(res, repo, *oci::Digest::try_parse(req.get_param_value("mount")));
            return;
        }
        // Otherwise the spec's fallback: a regular upload session (202).
    } else if (req.has_param("digest")) {
        upload_in_one_request(api, repo, parse_digest(req.get_param_value("digest")), res, body);
        return;
    }
    std::string id = api.uploads.create(repo);
    upload_accepted(res, 202, repo, id, 0);
}

std::shared_ptr<UploadSessions::Session> find_upload(Api& api, const std::string& repo,
                                                     const std::string& id) {
    auto s = api.uploads.find(repo, id);
    if (!s)
        throw HttpError{404,
                        "BLOB_UPLOAD_UNKNOWN",
                        "upload " + id + " is not in progress for " + repo +
                            " (finished, cancelled or expired); start a new one with POST /v2/" +
                            repo + "/blobs/uploads/",
                        {{"uuid", id}}};
    return s;
}

// Answers 416 with the upload's current Range.
[[noreturn]] void range_not_satisfiable(Response& res, const std::string& repo,
                                        const std::string& id, int64_t current,
                                        const std::string& why) {
    res.set_header("Location", upload_location(repo, id));
    res.set_header("Docker-Upload-UUID", id);
    res.set_header("Blob-Upload-Session-ID", id);
    res.set_header("Range", range_header(current));
    throw HttpError{416, "BLOB_UPLOAD_INVALID", why, {{"uuid", id}, {"size", current}}};
}

// The start of a chunk's Content-Range ("<start>-<end>", inclusive), checked
// against its Content-Length; nullopt when the request has none.
std::optional<int64_t> chunk_start(Api& api, const Request& req, Response& res,
                                   const std::string& repo, const std::string& id,
                                   UploadSessions::Session& s) {
    if (!req.has_header("Content-Range")) return std::nullopt;
    std::string range = req.get_header_value("Content-Range");
    // "<first>-<last>" as the spec says; "bytes <first>-<last>[/<total>]" as
    // RFC 9110 writes it is accepted too.
    std::string_view spec = range;
    if (spec.starts_with("bytes ") || spec.starts_with("bytes=")) spec.remove_prefix(6);
    if (auto total = spec.find('/'); total != std::string_view::npos) {
        auto rest = spec.substr(total + 1);
        if (rest != "*" && !parse_number(rest)) spec = {};
        spec = spec.substr(0, total);
    }
    auto dash = spec.find('-');
    std::optional<uint64_t> a, b;
    if (dash != std::string_view::npos) {
        a = parse_number(spec.substr(0, dash));
        b = parse_number(spec.substr(dash + 1));
    }
    if (!a || !b || *b < *a)
        range_not_satisfiable(
            res, repo, id, api.uploads.size(s),
            "invalid Content-Range '" + range + "': use <first byte>-<last byte>, both inclusive");
    auto first = static_cast<int64_t>(*a), last = static_cast<int64_t>(*b);
    if (auto declared = content_length(req);
        declared && *declared != static_cast<uint64_t>(last - first + 1))
        throw HttpError{400,
                        "SIZE_INVALID",
                        "Content-Range " + range + " is " + std::to_string(last - first + 1) +
                            " bytes but Content-Length is " +
                            req.get_header_value("Content-Length"),
                        {{"uuid", id}}};
    return first;
}

// Appends the request body to an upload session.
void append_body(Api& api, const Request& req, Response& res, const std::string& repo,
                 const std::string& id, UploadSessions::Session& s, Body& body) {
    auto start = chunk_start(api, req, res, repo, id, s);
    bool complete;
    try {
        complete = api.uploads.append(
            s, [&](const UploadSessions::Receiver& receiver) { return body.read(receiver); },
            start);
    } catch (const UploadOffsetMismatch& e) {
        range_not_satisfiable(res, repo, id, e.current_size, e.what());
    }
    if (!complete)
        throw HttpError{400,
                        "BLOB_UPLOAD_INVALID",
                        "upload " + id + ": the chunk could not be read completely; " +
                            "GET the upload's status and resume at its Range",
                        {{"uuid", id}}};
}

void patch_upload(Api& api, const Request& req, Response& res, Body& body) {
    auto repo = repository(req);
    std::string id = req.matches[2];
    auto s = find_upload(api, repo, id);
    append_body(api, req, res, repo, id, *s, body);
    upload_accepted(res, 202, repo, id, api.uploads.size(*s));
}

void put_upload(Api& api, const Request& req, Response& res, Body& body) {
    auto repo = repository(req);
    std::string id = req.matches[2];
    auto s = find_upload(api, repo, id);
    if (!req.has_param("digest"))
        throw HttpError{400,
                        "DIGEST_INVALID",
                        "completing upload " + id + " needs ?digest=sha256:<hex> of the whole blob",
                        {{"uuid", id}}};
    auto digest = parse_digest(req.get_param_value("digest"));
    append_body(api, req, res, repo, id, *s, body);  // the optional final chunk
    auto hold = api.store.hold_blobs();              // from commit to link, as above
    api.uploads.finish(id, *s, digest);
    api.store.link_blob(repo, digest);
    blob_created(res, repo, digest);
}

void get_upload(Api& api, const Request& req, Response& res) {
    auto repo = repository(req);
    std::string id = req.matches[2];
    auto s = find_upload(api, repo, id);
    upload_accepted(res, 204, repo, id, api.uploads.size(*s));
}

void delete_upload(Api& api, const Request& req, Response& res) {
    auto repo = repository(req);
    std::string id = req.matches[2];
    if (!api.uploads.cancel(repo, id))
        throw HttpError{404,
                        "BLOB_UPLOAD_UNKNOWN",
                        "upload " + id + " is not in progress for " + repo,
                        {{"uuid", id}}};
    res.status = 204;
}

// ---- anything else under /v2/ ----

// The methods a /v2/ path allows, or "" when it names no endpoint.
std::string allowed_methods(std::string_view path) {
    if (path == "/v2" || path == "/v2/" || path == "/v2/_catalog") return "GET, HEAD";
    if (!path.starts_with("/v2/")) return {};
    std::string_view rest = path.substr(4);  // <name>/<endpoint>
    auto named = [](std::string_view s, std::string_view suffix) {
        return s.size() > suffix.size() && s.ends_with(suffix);  // a non-empty name first
    };
    if (named(rest, "/tags/list")) return "GET, HEAD";
    if (named(rest, "/blobs/uploads") || named(rest, "/blobs/uploads/")) return "POST";
    auto slash = rest.rfind('/');
    if (slash == std::string_view::npos || slash + 1 == rest.size()) return {};
    std::string_view parent = rest.substr(0, slash);  // <name>/manifests, …
    if (named(parent, "/manifests")) return "GET, HEAD, PUT, DELETE";
    if (named(parent, "/blobs/uploads")) return "GET, HEAD, PATCH, PUT, DELETE";
    if (named(parent, "/blobs")) return "GET, HEAD, DELETE";
    if (named(parent, "/referrers")) return "GET, HEAD";
    if (named(parent, "/_oci/tag-history")) return "GET, HEAD";
    return {};
}

void unmatched(const Request& req, Response& res) {
    take_over_ranges(req);
    res.set_header("Docker-Distribution-API-Version", "registry/2.0");
    std::string allowed = allowed_methods(req.path);
    if (!allowed.empty()) {
        res.set_header("Allow", allowed);
        send_error(res, 405, "UNSUPPORTED",
                   req.method + " is not allowed on " + req.path + "; use " + allowed,
                   {{"method", req.method}, {"allowed", allowed}});
        return;
    }
    send_error(res, 404, "UNSUPPORTED", "no Distribution API endpoint at " + req.path,
               {{"path", req.path}});
}

void register_routes_on(httplib::Server& server, std::shared_ptr<Api> api) {
    // Repository names may contain slashes, hence the greedy (.+) before the
    // fixed suffixes; references and upload ids never do.
    const std::string name = "/v2/(.+)";
    server.Get("/v2/?", wrap(api, get_base));
    server.Get("/v2/_catalog", wrap(api, get_catalog));
    server.Get(name + "/tags/list", wrap(api, get_tags));
    server.Get(name + "/referrers/([^/]+)", wrap(api, get_referrers));
    server.Get(name + "/_oci/tag-history/([^/]+)", wrap(api, get_tag_history));

    server.Get(name + "/manifests/([^/]+)", wrap(api, get_manifest));
    server.Put(name + "/manifests/([^/]+)", wrap_body(api, put_manifest));
    server.Delete(name + "/manifests/([^/]+)", wrap(api, delete_manifest));

    server.Post(name + "/blobs/uploads/?", wrap_body(api, post_upload));
    server.Patch(name + "/blobs/uploads/([^/]+)", wrap_body(api, patch_upload));
    server.Put(name + "/blobs/uploads/([^/]+)", wrap_body(api, put_upload));
    server.Get(name + "/blobs/uploads/([^/]+)", wrap(api, get_upload));
    server.Delete(name + "/blobs/uploads/([^/]+)", wrap(api, delete_upload));

    server.Get(name + "/blobs/([^/]+)", wrap(api, get_blob));
    server.Delete(name + "/blobs/([^/]+)", wrap(api, delete_blob));

    // Last: whatever else reaches /v2/ (405 for a known endpoint).
    const std::string rest = "/v2/.*";
    server.Get(rest, unmatched);
    server.Delete(rest, unmatched);
    server.Post(rest, [](const Request& req, Response& res, const ContentReader& reader) {
        unmatched(req, res);
        reader([](const char*, size_t) { return true; });
    });
    server.Put(rest, [](const Request& req, Response& res, const ContentReader& reader) {
        unmatched(req, res);
        reader([](const char*, size_t) { return true; });
    });
    server.Patch(rest, [](const Request& req, Response& res, const ContentReader& reader) {
        unmatched(req, res);
        reader([](const char*, size_t) { return true; });
    });
}

std::chrono::milliseconds sweep_interval(const DistributionOptions& o) {
    if (o.upload_sweep_interval.count() > 0) return o.upload_sweep_interval;
    auto tenth = std::chrono::milliseconds(std::max<int64_t>(o.upload_expire_seconds, 0) * 100);
    return std::clamp(tenth, std::chrono::milliseconds(1000), std::chrono::milliseconds(300000));
}

}  // namespace

Distribution::Distribution(Store& store, DistributionOptions options)
    : state_(std::make_shared<State>(store, options)) {}

Distribution::~Distribution() {
    stop_upload_sweeper();
}

void Distribution::register_routes(httplib::Server& server) {
    register_routes_on(server, state_);
}

size_t Distribution::expire_uploads() {
    return state_->uploads.expire(state_->options.upload_expire_seconds);
}

void Distribution::start_upload_sweeper() {
    std::lock_guard lock(sweeper_mu_);
    if (sweeper_.joinable()) return;
    stopping_ = false;
    sweeper_ = std::thread([this] {
        auto interval = sweep_interval(state_->options);
        std::unique_lock lock(sweeper_mu_);
        while (!sweeper_cv_.wait_for(lock, interval, [this] { return stopping_; })) {
            lock.unlock();
            std::string message;
            try {
                size_t n = expire_uploads();
                if (n > 0)
                    message = "removed " + std::to_string(n) +
                              " upload session(s) idle for more than " +
                              std::to_string(state_->options.upload_expire_seconds) + " s";
            } catch (const std::exception& e) {
                message = std::string("sweeping expired uploads failed: ") + e.what();
            }
            if (!message.empty()) {
                if (state_->options.log)
                    state_->options.log(message);
                else
                    std::fprintf(stderr, "cascade: %s\n", message.c_str());
            }
            lock.lock();
        }
    });
}

void Distribution::stop_upload_sweeper() {
    {
        std::lock_guard lock(sweeper_mu_);
        stopping_ = true;
    }
    sweeper_cv_.notify_all();
    if (sweeper_.joinable()) sweeper_.join();
}

void register_distribution_routes(httplib::Server& server, Store& store) {
    register_routes_on(server, std::make_shared<Distribution::State>(store, DistributionOptions{}));
}

}  // namespace cascade::registry
