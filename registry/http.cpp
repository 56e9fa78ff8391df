#include "registry/http.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <httplib.h>
#include <algorithm>
#include <cerrno>
#include <nlohmann/json.hpp>

#include "oci/reference.hpp"
#include "registry/store.hpp"
#include "registry/uploads.hpp"

namespace cascade::registry {

namespace {

using httplib::ContentReader;
using httplib::Request;
using httplib::Response;
using json = nlohmann::json;

// The Distribution Spec asks registries to accept manifests of at least 4 MiB.
constexpr size_t kMaxManifestBytes = 16 << 20;

// A failure with its Distribution-Spec error code.
struct HttpError {
    int status;
    std::string code;
    std::string message;
    json detail = nullptr;
};

struct Api {
    explicit Api(Store& s) : store(s), uploads(s.blobs()) {}
    Store& store;
    UploadSessions uploads;
};

// A request body, read at most once; whatever a handler leaves unread is
// drained so the connection stays usable for the next request.
class Body {
  public:
    explicit Body(const ContentReader& reader) : reader_(reader) {}
    bool read(const UploadSessions::Receiver& receiver) {
        consumed_ = true;
        return reader_([&](const char* data, size_t len) { return receiver(data, len); });
    }
    void drain() {
        if (!consumed_) read([](const char*, size_t) { return true; });
    }

  private:
    const ContentReader& reader_;
    bool consumed_ = false;
};

void send_error(Response& res, int status, const std::string& code, const std::string& message,
                const json& detail = nullptr) {
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

using Handler = std::function<void(Api&, const Request&, Response&)>;
using BodyHandler = std::function<void(Api&, const Request&, Response&, Body&)>;

httplib::Server::Handler wrap(std::shared_ptr<Api> api, Handler fn) {
    return [api, fn](const Request& req, Response& res) {
        res.set_header("Docker-Distribution-API-Version", "registry/2.0");
        try {
            fn(*api, req, res);
        } catch (...) {
            respond(res, std::current_exception());
        }
    };
}

httplib::Server::HandlerWithContentReader wrap_body(std::shared_ptr<Api> api, BodyHandler fn) {
    return [api, fn](const Request& req, Response& res, const ContentReader& reader) {
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
    };
}

std::string repository(const Request& req) {
    std::string name = req.matches[1];
    if (!oci::is_valid_repository_name(name))
        throw HttpError{400,
                        "NAME_INVALID",
                        "invalid repository name '" + name +
                            "': use lower-case components ([a-z0-9] joined by . _ __ -) "
                            "separated by /",
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
    res.set_header("Range", range_header(size));
}

// `n` and `last` pagination of a sorted list, with a Link header to the next page.
std::vector<std::string> paginate(const std::vector<std::string>& all, const Request& req,
                                  Response& res, const std::string& path) {
    std::string last = req.get_param_value("last");
    auto begin = all.begin();
    if (!last.empty()) begin = std::upper_bound(all.begin(), all.end(), last);
    std::vector<std::string> page(begin, all.end());
    if (req.has_param("n")) {
        size_t n = 0;
        try {
            long long v = std::stoll(req.get_param_value("n"));
            if (v < 0) throw std::invalid_argument("negative");
            n = static_cast<size_t>(v);
        } catch (const std::exception&) {
            throw HttpError{
                400, "UNSUPPORTED",
                "invalid page size n=" + req.get_param_value("n") + ": use a non-negative integer"};
        }
        if (page.size() > n) {
            page.resize(n);
            if (n > 0)
                res.set_header("Link", "<" + path + "?n=" + std::to_string(n) +
                                           "&last=" + page.back() + ">; rel=\"next\"");
        }
    }
    return page;
}

// ---- endpoints ----

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
    if (!api.store.has_repository(repo))
        throw HttpError{404,
                        "NAME_UNKNOWN",
                        "repository " + repo + " is not known to this registry",
                        {{"name", repo}}};
    auto tags = paginate(api.store.tags(repo), req, res, "/v2/" + repo + "/tags/list");
    res.status = 200;
    res.set_content(json{{"name", repo}, {"tags", tags}}.dump(), "application/json");
}

void get_manifest(Api& api, const Request& req, Response& res) {
    auto repo = repository(req);
    std::string ref = req.matches[2];
    if (ref.find(':') != std::string::npos)
        parse_digest(ref);
    else if (!oci::is_valid_tag(ref))
        throw HttpError{404,
                        "MANIFEST_UNKNOWN",
                        "'" + ref + "' is neither a valid tag nor a digest",
                        {{"reference", ref}}};
    auto m = api.store.resolve(repo, ref);
    if (!m) {
        if (!api.store.has_repository(repo))
            throw HttpError{404,
                            "NAME_UNKNOWN",
                            "repository " + repo + " is not known to this registry",
                            {{"name", repo}}};
        throw HttpError{404,
                        "MANIFEST_UNKNOWN",
                        "manifest " + ref + " is not in " + repo,
                        {{"name", repo}, {"reference", ref}}};
    }
    std::string bytes = api.store.manifest_bytes(*m);
    res.status = 200;
    res.set_header("Docker-Content-Digest", m->digest.str());
    res.set_content(std::move(bytes), m->media_type);
}

void put_manifest(Api& api, const Request& req, Response& res, Body& body) {
    auto repo = repository(req);
    std::string ref = req.matches[2];
    std::optional<oci::Digest> by_digest;
    if (ref.find(':') != std::string::npos)
        by_digest = parse_digest(ref);
    else if (!oci::is_valid_tag(ref))
        throw HttpError{400,
                        "MANIFEST_INVALID",
                        "invalid tag '" + ref + "': a tag is [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}",
                        {{"tag", ref}}};

    std::string bytes;
    bool too_big = false;
    bool complete = body.read([&](const char* data, size_t len) {
        if (bytes.size() + len > kMaxManifestBytes) too_big = true;
        if (!too_big) bytes.append(data, len);
        return true;
    });
    if (too_big)
        throw HttpError{413, "MANIFEST_INVALID",
                        "manifest larger than " + std::to_string(kMaxManifestBytes) + " bytes"};
    if (!complete)
        throw HttpError{400, "MANIFEST_INVALID", "manifest body could not be read completely"};

    if (by_digest) {
        auto actual = oci::Digest::sha256_of(bytes);
        if (actual != *by_digest)
            throw HttpError{400,
                            "DIGEST_INVALID",
                            "manifest bytes have digest " + actual.str() + ", not " +
                                by_digest->str() + " as in the URL",
                            {{"expected", by_digest->str()}, {"actual", actual.str()}}};
    }
    auto digest = api.store.put_manifest(repo, bytes, req.get_header_value("Content-Type"),
                                         by_digest ? std::string() : ref, "push");
    // OCI 1.1: PUT …/manifests/<digest>?tag=a&tag=b tags it in the same request.
    if (by_digest)
        for (size_t i = 0; i < req.get_param_value_count("tag"); i++) {
            std::string tag = req.get_param_value("tag", i);
            if (!oci::is_valid_tag(tag))
                throw HttpError{400, "MANIFEST_INVALID", "invalid tag '" + tag + "'"};
            api.store.set_tag(repo, tag, digest, "push");
        }
    res.status = 201;
    res.set_header("Location", "/v2/" + repo + "/manifests/" + digest.str());
    res.set_header("Docker-Content-Digest", digest.str());
}

void delete_manifest(Api& api, const Request& req, Response& res) {
    auto repo = repository(req);
    std::string ref = req.matches[2];
    bool removed;
    if (ref.find(':') != std::string::npos)
        removed = api.store.delete_manifest(repo, parse_digest(ref));
    else
        removed = oci::is_valid_tag(ref) && api.store.delete_tag(repo, ref);
    if (!removed)
        throw HttpError{404,
                        "MANIFEST_UNKNOWN",
                        "manifest " + ref + " is not in " + repo,
                        {{"name", repo}, {"reference", ref}}};
    res.status = 202;
}

// Streams the blob file; the whole blob is never held in memory.
void get_blob(Api& api, const Request& req, Response& res) {
    auto repo = repository(req);
    auto digest = parse_digest(req.matches[2]);
    auto path = api.store.blobs().path(digest);
    int raw = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (raw < 0) {
        if (errno == ENOENT)
            throw HttpError{404,
                            "BLOB_UNKNOWN",
                            "blob " + digest.str() + " is not in this registry",
                            {{"digest", digest.str()}}};
        throw sys_error("open", path.string(), errno);
    }
    auto fd = std::make_shared<fs::Fd>(raw);
    struct stat st;
    if (::fstat(fd->get(), &st) != 0) throw sys_error("stat", path.string(), errno);
    auto size = static_cast<size_t>(st.st_size);

    res.set_header("Docker-Content-Digest", digest.str());
    res.set_header("Accept-Ranges", "bytes");
    if (req.ranges.empty()) res.status = 200;  // else httplib answers 206 with the range
    if (size == 0) {
        res.status = 200;
        res.set_header("Content-Type", "application/octet-stream");
        return;
    }
    auto buffer = std::make_shared<std::vector<char>>(1 << 18);
    res.set_content_provider(size, "application/octet-stream",
                             [fd, buffer](size_t offset, size_t length, httplib::DataSink& sink) {
                                 size_t want = std::min(length, buffer->size());
                                 ssize_t n;
                                 do {
                                     n = ::pread(fd->get(), buffer->data(), want,
                                                 static_cast<off_t>(offset));
                                 } while (n < 0 && errno == EINTR);
                                 if (n <= 0) return false;
                                 return sink.write(buffer->data(), static_cast<size_t>(n));
                             });
}

void delete_blob(Api&, const Request& req, Response&) {
    repository(req);
    throw HttpError{405, "UNSUPPORTED",
                    "deleting blobs is not supported; delete manifests and let garbage collection "
                    "remove unreferenced blobs"};
}

void post_upload(Api& api, const Request& req, Response& res, Body& body) {
    auto repo = repository(req);

    // Cross-repository mount: the store is shared by all repositories.
    if (req.has_param("mount")) {
        auto d = oci::Digest::try_parse(req.get_param_value("mount"));
        if (d && d->algorithm() == "sha256" && api.store.blobs().has(*d)) {
            api.store.link_blob(repo, *d);
            blob_created(res, repo, *d);
            return;
        }
        // Otherwise fall back to a regular upload session (the spec's 202).
    } else if (req.has_param("digest")) {
        // Monolithic upload: the body is the whole blob.
        auto digest = parse_digest(req.get_param_value("digest"));
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
            throw HttpError{400, "BLOB_UPLOAD_INVALID", "blob upload body could not be read"};
        try {
            writer.commit(digest);
        } catch (const Error& e) {
            throw HttpError{400, "DIGEST_INVALID", e.what(), {{"digest", digest.str()}}};
        }
        api.store.link_blob(repo, digest);
        blob_created(res, repo, digest);
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
                            "; start a new one with POST /v2/" + repo + "/blobs/uploads/",
                        {{"uuid", id}}};
    return s;
}

// Appends the request body to an upload session.
void append_body(Api& api, UploadSessions::Session& s, const std::string& id, Body& body) {
    bool complete = api.uploads.append(
        s, [&](const UploadSessions::Receiver& receiver) { return body.read(receiver); });
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
    if (req.has_header("Content-Range")) {
        std::string range = req.get_header_value("Content-Range");
        int64_t current = api.uploads.size(*s);
        long long start = -1;
        if (std::sscanf(range.c_str(), "%lld-", &start) != 1 || start != current) {
            res.set_header("Location", upload_location(repo, id));
            res.set_header("Range", range_header(current));
            throw HttpError{416,
                            "BLOB_UPLOAD_INVALID",
                            "chunk range " + range + " does not continue the upload at byte " +
                                std::to_string(current),
                            {{"uuid", id}}};
        }
    }
    append_body(api, *s, id, body);
    upload_accepted(res, 202, repo, id, api.uploads.size(*s));
}

void put_upload(Api& api, const Request& req, Response& res, Body& body) {
    auto repo = repository(req);
    std::string id = req.matches[2];
    if (!req.has_param("digest"))
        throw HttpError{400,
                        "DIGEST_INVALID",
                        "completing upload " + id + " needs ?digest=sha256:<hex>",
                        {{"uuid", id}}};
    auto digest = parse_digest(req.get_param_value("digest"));
    auto s = find_upload(api, repo, id);
    append_body(api, *s, id, body);  // the optional final chunk
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

}  // namespace

void register_distribution_routes(httplib::Server& server, Store& store) {
    auto api = std::make_shared<Api>(store);

    // Repository names may contain slashes, hence the greedy (.+) before the
    // fixed suffixes; references and upload ids never do.
    const std::string name = "/v2/(.+)";
    server.Get("/v2/?", wrap(api, get_base));
    server.Get("/v2/_catalog", wrap(api, get_catalog));
    server.Get(name + "/tags/list", wrap(api, get_tags));
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
}

}  // namespace cascade::registry
