#include "registry/remote.hpp"

#include <curl/curl.h>
#include <openssl/evp.h>

#include <algorithm>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <vector>

#include "oci/fs.hpp"
#include "oci/media_types.hpp"
#include "registry/blob_store.hpp"

namespace cascade::registry {

namespace {

constexpr size_t kMaxManifestBytes = 16 << 20;  // as the registry's own limit
constexpr size_t kMaxErrorBody = 64 << 10;
constexpr size_t kMaxTokenBody = 1 << 20;
const char* kUserAgent = "cascade/0.1 (image import)";

const std::string kManifestAccept =
    std::string(oci::media::kImageIndex) + ", " + std::string(oci::media::kImageManifest) + ", " +
    std::string(oci::media::kDockerManifestList) + ", " + std::string(oci::media::kDockerManifest);

std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
    return s;
}

std::string trim(std::string_view s) {
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front())))
        s.remove_prefix(1);
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back())))
        s.remove_suffix(1);
    return std::string(s);
}

std::string strip_parameters(std::string_view content_type) {
    return trim(content_type.substr(0, content_type.find(';')));
}

std::optional<std::string> base64_decode(std::string text) {
    std::erase_if(text, [](unsigned char c) { return std::isspace(c); });
    if (text.empty()) return std::string();
    while (text.size() % 4 != 0)
        text += '=';  // some writers leave the padding out
    std::string out(text.size() / 4 * 3, '\0');
    int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                            reinterpret_cast<const unsigned char*>(text.data()),
                            static_cast<int>(text.size()));
    if (n < 0) return std::nullopt;
    size_t padding = 0;
    for (size_t i = text.size(); i > 0 && text[i - 1] == '='; i--)
        padding++;
    out.resize(static_cast<size_t>(n) - std::min<size_t>(padding, 2));
    return out;
}

// "https://index.docker.io/v1/" → "docker.io"; "Quay.io/" → "quay.io".
std::string normalize_auth_key(std::string key) {
    for (const char* scheme : {"https://", "http://"})
        if (key.rfind(scheme, 0) == 0) key = key.substr(std::string(scheme).size());
    while (!key.empty() && key.back() == '/')
        key.pop_back();
    if (key.size() > 3 && key.compare(key.size() - 3, 3, "/v1") == 0) key.resize(key.size() - 3);
    auto slash = key.find('/');
    std::string host = lower(key.substr(0, slash));
    std::string rest = slash == std::string::npos ? "" : key.substr(slash);
    if (host == "index.docker.io" || host == "registry-1.docker.io") host = "docker.io";
    return host + rest;
}

// One `WWW-Authenticate` challenge: scheme and parameters (RFC 7235).
struct Challenge {
    std::string scheme;  // lower case: "basic", "bearer"
    std::map<std::string, std::string> params;
};

std::vector<Challenge> parse_challenges(const std::vector<std::string>& headers) {
    std::vector<Challenge> out;
    for (const auto& h : headers) {
        size_t i = 0;
        auto skip_space = [&] {
            while (i < h.size() && (h[i] == ' ' || h[i] == '\t' || h[i] == ','))
                i++;
        };
        skip_space();
        Challenge c;
        size_t start = i;
        while (i < h.size() && h[i] != ' ' && h[i] != '\t')
            i++;
        c.scheme = lower(h.substr(start, i - start));
        while (i < h.size()) {
            skip_space();
            size_t key_start = i;
            while (i < h.size() && h[i] != '=' && h[i] != ',' && h[i] != ' ')
                i++;
            std::string key = lower(h.substr(key_start, i - key_start));
            if (i >= h.size() || h[i] != '=') {
                if (key.empty()) break;
                continue;
            }
            i++;  // '='
            std::string value;
            if (i < h.size() && h[i] == '"') {
                i++;
                while (i < h.size() && h[i] != '"') {
                    if (h[i] == '\\' && i + 1 < h.size()) i++;
                    value += h[i++];
                }
                i++;  // closing quote
            } else {
                while (i < h.size() && h[i] != ',' && h[i] != ' ')
                    value += h[i++];
            }
            c.params[key] = value;
        }
        if (!c.scheme.empty()) out.push_back(std::move(c));
    }
    return out;
}

const char* reason_phrase(long status) {
    switch (status) {
        case 400:
            return "Bad Request";
        case 401:
            return "Unauthorized";
        case 403:
            return "Forbidden";
        case 404:
            return "Not Found";
        case 405:
            return "Method Not Allowed";
        case 429:
            return "Too Many Requests";
        case 500:
            return "Internal Server Error";
        case 502:
            return "Bad Gateway";
        case 503:
            return "Service Unavailable";
        case 504:
            return "Gateway Timeout";
        default:
            return "";
    }
}

// The answer to one request (the last one when redirects were followed).
struct Transfer {
    long status = 0;
    std::map<std::string, std::string> headers;  // lower-case names
    std::vector<std::string> challenges;         // every WWW-Authenticate
    std::string body;                            // unless streamed to a sink
    // Receives a 2xx body; returns an error message to abort the transfer.
    std::function<std::optional<std::string>(const char*, size_t)> sink;
    size_t body_limit = kMaxErrorBody;
    std::optional<std::string> abort_reason;
    const std::atomic<bool>* cancel = nullptr;

    std::string header(const std::string& name) const {
        auto it = headers.find(name);
        return it == headers.end() ? std::string() : it->second;
    }
};

size_t on_header(char* data, size_t size, size_t n, void* user) {
    auto* t = static_cast<Transfer*>(user);
    std::string_view line(data, size * n);
    if (line.rfind("HTTP/", 0) == 0) {  // a new response (after a redirect or 100)
        auto sp = line.find(' ');
        t->status = sp == std::string_view::npos
                        ? 0
                        : std::atol(std::string(line.substr(sp + 1, 3)).c_str());
        t->headers.clear();
        t->challenges.clear();
        t->body.clear();
        return size * n;
    }
    auto colon = line.find(':');
    if (colon == std::string_view::npos) return size * n;
    std::string name = lower(trim(line.substr(0, colon)));
    std::string value = trim(line.substr(colon + 1));
    if (name == "www-authenticate") t->challenges.push_back(value);
    t->headers[name] = value;
    return size * n;
}

size_t on_body(char* data, size_t size, size_t n, void* user) {
    auto* t = static_cast<Transfer*>(user);
    size_t len = size * n;
    bool success = t->status >= 200 && t->status < 300;
    if (success && t->sink) {
        if (auto error = t->sink(data, len)) {
            t->abort_reason = *error;
            return 0;
        }
        return len;
    }
    if (t->body.size() + len > t->body_limit) {
        if (success) {
            t->abort_reason =
                "the answer is larger than " + std::to_string(t->body_limit) + " bytes";
            return 0;
        }
        t->body.append(data, t->body_limit - t->body.size());  // an error page: keep its start
        return len;
    }
    t->body.append(data, len);
    return len;
}

int on_progress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
    auto* t = static_cast<Transfer*>(user);
    if (t->cancel && t->cancel->load()) {
        t->abort_reason = "cancelled (the daemon is stopping)";
        return 1;
    }
    return 0;
}

// "MANIFEST_UNKNOWN: manifest unknown" from a Distribution-Spec error body,
// else the start of the body.
std::string describe_body(const std::string& body) {
    auto j = nlohmann::json::parse(body, nullptr, false);
    if (j.is_object() && j.contains("errors") && j["errors"].is_array()) {
        std::string out;
        for (const auto& e : j["errors"]) {
            if (!e.is_object()) continue;
            if (!out.empty()) out += "; ";
            out += e.value("code", "UNKNOWN");
            auto message = e.value("message", "");
            if (!message.empty()) out += ": " + message;
        }
        if (!out.empty()) return out;
    }
    if (j.is_object() && j.contains("details") && j["details"].is_string())
        return j["details"].get<std::string>();  // token services
    std::string text = trim(body.substr(0, 200));
    std::replace(text.begin(), text.end(), '\n', ' ');
    return text;
}

std::string describe_status(const Transfer& t) {
    std::string out = std::to_string(t.status);
    if (*reason_phrase(t.status)) out += std::string(" ") + reason_phrase(t.status);
    auto detail = describe_body(t.body);
    if (!detail.empty()) out += " (" + detail + ")";
    return out;
}

void global_init() {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct Token {
    std::string value;
    std::chrono::steady_clock::time_point expires;
};

}  // namespace

// ---------------------------------------------------------------- AuthFile

AuthFile AuthFile::load(const std::filesystem::path& file) {
    std::error_code ec;
    if (!std::filesystem::exists(file, ec)) return {};
    return parse(fs::read_file(file), file.string());
}

AuthFile AuthFile::parse(const std::string& text, const std::string& where) {
    auto doc = nlohmann::json::parse(text, nullptr, false);
    if (doc.is_discarded() || !doc.is_object())
        throw Error(where +
                    " is not a JSON object; expected {\"auths\": {\"host:port\": "
                    "{\"auth\": \"base64(user:password)\"}}}");
    AuthFile f;
    auto auths = doc.find("auths");
    if (auths == doc.end()) return f;
    if (!auths->is_object()) throw Error(where + ": \"auths\" must be an object of registries");
    for (const auto& [key, entry] : auths->items()) {
        if (!entry.is_object()) throw Error(where + ": auths[\"" + key + "\"] must be an object");
        Credentials c;
        if (auto a = entry.find("auth"); a != entry.end() && a->is_string() && !a->empty()) {
            auto decoded = base64_decode(a->get<std::string>());
            auto colon = decoded ? decoded->find(':') : std::string::npos;
            if (colon == std::string::npos)
                throw Error(where + ": auths[\"" + key +
                            "\"].auth is not base64 of \"user:password\"");
            c.username = decoded->substr(0, colon);
            c.password = decoded->substr(colon + 1);
        } else if (entry.contains("username") && entry["username"].is_string()) {
            c.username = entry["username"].get<std::string>();
            c.password = entry.value("password", "");
        } else {
            continue;  // e.g. an identity token only: not a credential this client uses
        }
        f.entries_[normalize_auth_key(key)] = std::move(c);
    }
    return f;
}

std::optional<Credentials> AuthFile::find(const std::string& domain,
                                          const std::string& repository) const {
    std::string host = normalize_auth_key(domain);
    std::string key = repository.empty() ? host : host + "/" + repository;
    while (true) {
        if (auto it = entries_.find(key); it != entries_.end()) return it->second;
        auto slash = key.rfind('/');
        if (slash == std::string::npos) return std::nullopt;
        key.resize(slash);
    }
}

std::string registry_host(const std::string& domain) {
    std::string d = lower(domain);
    if (d.empty() || d == "docker.io" || d == "index.docker.io") return "registry-1.docker.io";
    return domain;
}

// ---------------------------------------------------------------- RemoteRegistry

struct RemoteRegistry::Impl {
    std::string domain;
    std::string host;
    RemoteOptions options;
    CURL* curl = nullptr;
    std::string scheme = "https";
    bool scheme_known = false;
    bool use_basic = false;               // the registry asked for Basic
    std::map<std::string, Token> tokens;  // repository → bearer token

    std::string where(const std::string& repository) const {
        return "registry " + host + (repository.empty() ? "" : ", repository " + repository);
    }

    enum class Auth { None, Basic, Bearer };

    // One HTTP exchange. Throws RemoteError when no answer arrived.
    void perform(const std::string& method, const std::string& url, Transfer& t,
                 const std::vector<std::string>& extra_headers, Auth auth,
                 const std::string& bearer, bool streaming, const std::string& what) {
        curl_easy_reset(curl);
        char error[CURL_ERROR_SIZE] = {0};
        curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error);
        curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
        curl_easy_setopt(curl, CURLOPT_USERAGENT, kUserAgent);
        curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR,
                         options.insecure ? "http,https" : "https");
        curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
        curl_easy_setopt(curl, CURLOPT_MAXREDIRS, 10L);
        curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT,
                         static_cast<long>(options.connect_timeout.count()));
        if (streaming) {
            curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
            curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME,
                             static_cast<long>(options.stall_timeout.count()));
        } else {
            curl_easy_setopt(curl, CURLOPT_TIMEOUT,
                             static_cast<long>(options.request_timeout.count()));
        }
        curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, options.insecure ? 0L : 1L);
        curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, options.insecure ? 0L : 2L);
        if (method == "HEAD")
            curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
        else if (method != "GET")
            curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method.c_str());
        curl_slist* headers = nullptr;
        for (const auto& h : extra_headers)
            headers = curl_slist_append(headers, h.c_str());
        std::string bearer_header = "Authorization: Bearer " + bearer;
        if (auth == Auth::Bearer) headers = curl_slist_append(headers, bearer_header.c_str());
        if (auth == Auth::Basic && options.credentials) {
            curl_easy_setopt(curl, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
            curl_easy_setopt(curl, CURLOPT_USERNAME, options.credentials->username.c_str());
            curl_easy_setopt(curl, CURLOPT_PASSWORD, options.credentials->password.c_str());
        }
        curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(curl, CURLOPT_HEADERDATA, &t);
        curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(curl, CURLOPT_WRITEDATA, &t);
        t.cancel = options.cancel;
        curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(curl, CURLOPT_XFERINFODATA, &t);
        curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
        CURLcode rc = curl_easy_perform(curl);
        curl_slist_free_all(headers);
        if (rc == CURLE_OK) {
            long status = 0;
            curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
            t.status = status;
            return;
        }
        std::string detail =
            t.abort_reason ? *t.abort_reason : std::string(*error ? error : curl_easy_strerror(rc));
        bool tls_failure = rc == CURLE_SSL_CONNECT_ERROR || rc == CURLE_PEER_FAILED_VERIFICATION ||
                           rc == CURLE_SSL_CERTPROBLEM || rc == CURLE_SSL_CACERT_BADFILE;
        if (tls_failure && !options.insecure)
            detail +=
                " (if the registry serves plain HTTP or a certificate this host does not trust, "
                "mark the import insecure: --insecure, importPolicy.insecure: true)";
        throw RemoteError(what + " " + url + " failed: " + detail, 0);
    }

    // Decides between https:// and (insecure remotes only) http://.
    void choose_scheme() {
        if (scheme_known) return;
        Transfer t;
        try {
            perform("GET", "https://" + host + "/v2/", t, {}, Auth::None, {}, false, "GET");
            scheme = "https";
        } catch (const RemoteError& https_error) {
            Transfer plain;
            try {
                perform("GET", "http://" + host + "/v2/", plain, {}, Auth::None, {}, false, "GET");
            } catch (const RemoteError& http_error) {
                throw RemoteError(where("") + " does not answer: " + https_error.what() + "; " +
                                      http_error.what(),
                                  0);
            }
            scheme = "http";
        }
        scheme_known = true;
    }

    Token fetch_token(const Challenge& c, const std::string& repository) {
        auto realm = c.params.find("realm");
        if (realm == c.params.end() || realm->second.empty())
            throw RemoteError(
                where(repository) + " asked for a Bearer token but named no realm to get it from",
                401);
        const std::string& url_base = realm->second;
        if (url_base.rfind("https://", 0) != 0 &&
            !(options.insecure && url_base.rfind("http://", 0) == 0))
            throw RemoteError(where(repository) + ": the token service " + url_base +
                                  " is not https://; mark the import insecure to allow it",
                              401);
        std::string scope = "repository:" + repository + ":pull";
        if (auto s = c.params.find("scope"); s != c.params.end() && !s->second.empty())
            scope = s->second;
        std::string url = url_base + (url_base.find('?') == std::string::npos ? "?" : "&");
        auto add = [&](const std::string& key, const std::string& value) {
            char* e = curl_easy_escape(curl, value.c_str(), static_cast<int>(value.size()));
            url += key + "=" + e + "&";
            curl_free(e);
        };
        if (auto s = c.params.find("service"); s != c.params.end()) add("service", s->second);
        add("scope", scope);
        url.pop_back();

        Transfer t;
        t.body_limit = kMaxTokenBody;
        try {
            perform("GET", url, t, {}, options.credentials ? Auth::Basic : Auth::None, {}, false,
                    "token request");
        } catch (const RemoteError& e) {
            throw RemoteError(where(repository) + ": " + e.what(), e.status);
        }
        if (t.status == 401 || t.status == 403) {
            if (options.credentials)
                throw RemoteError(where(repository) + ": the token service " + url_base +
                                      " rejected the credentials of user \"" +
                                      options.credentials->username + "\": " + describe_status(t),
                                  t.status);
            throw RemoteError(where(repository) + ": the token service " + url_base +
                                  " requires credentials: " + describe_status(t) +
                                  "; add them to the auth file (<state root>/auth.json or "
                                  "REGISTRY_AUTH_FILE) under \"" +
                                  domain + "\"",
                              t.status);
        }
        if (t.status != 200)
            throw RemoteError(where(repository) + ": the token service " + url_base + " answered " +
                                  describe_status(t),
                              t.status);
        auto j = nlohmann::json::parse(t.body, nullptr, false);
        std::string value;
        if (j.is_object()) {
            if (j.contains("token") && j["token"].is_string())
                value = j["token"].get<std::string>();
            else if (j.contains("access_token") && j["access_token"].is_string())
                value = j["access_token"].get<std::string>();
        }
        if (value.empty())
            throw RemoteError(
                where(repository) + ": the token service " + url_base + " answered without a token",
                t.status);
        int64_t lifetime = 60;  // the spec's default
        if (j.contains("expires_in") && j["expires_in"].is_number_integer())
            lifetime = std::max<int64_t>(j["expires_in"].get<int64_t>(), 1);
        return {value, std::chrono::steady_clock::now() + std::chrono::seconds(lifetime)};
    }

    // A request with the registry's authentication: anonymous (or with what
    // an earlier challenge asked for), and once more after a 401 challenge.
    void request(const std::string& method, const std::string& repository, const std::string& path,
                 Transfer& t, const std::vector<std::string>& headers, bool streaming,
                 const std::string& what) {
        choose_scheme();
        std::string url = scheme + "://" + host + path;
        bool tried_basic = false, fetched_token = false;
        while (true) {
            Auth auth = Auth::None;
            std::string bearer;
            if (auto it = tokens.find(repository); it != tokens.end()) {
                if (it->second.expires > std::chrono::steady_clock::now()) {
                    auth = Auth::Bearer;
                    bearer = it->second.value;
                } else {
                    tokens.erase(it);
                }
            }
            if (auth == Auth::None && use_basic) auth = Auth::Basic;
            tried_basic = tried_basic || auth == Auth::Basic;
            t.status = 0;
            t.headers.clear();
            t.challenges.clear();
            t.body.clear();
            try {
                perform(method, url, t, headers, auth, bearer, streaming, what);
            } catch (const RemoteError& e) {
                throw RemoteError(where(repository) + ": " + e.what(), e.status);
            }
            if (t.status != 401) return;

            auto challenges = parse_challenges(t.challenges);
            auto pick = [&](const std::string& scheme_name) -> const Challenge* {
                for (const auto& c : challenges)
                    if (c.scheme == scheme_name) return &c;
                return nullptr;
            };
            if (const Challenge* bearer_challenge = pick("bearer")) {
                if (fetched_token)
                    throw RemoteError(
                        where(repository) + ": " + what +
                            " was refused with a fresh token: " + describe_status(t) +
                            (options.credentials ? std::string("; may user \"") +
                                                       options.credentials->username + "\" pull it?"
                                                 : std::string("; credentials may be needed")),
                        401);
                tokens[repository] = fetch_token(*bearer_challenge, repository);
                fetched_token = true;
                continue;
            }
            if (pick("basic")) {
                if (!options.credentials)
                    throw RemoteError(where(repository) +
                                          " requires credentials (401 Unauthorized, Basic); add "
                                          "them to the auth file (<state root>/auth.json or "
                                          "REGISTRY_AUTH_FILE) under \"" +
                                          domain + "\"",
                                      401);
                if (tried_basic)
                    throw RemoteError(
                        where(repository) + " rejected the credentials of user \"" +
                            options.credentials->username +
                            "\" (401 Unauthorized); check the auth file entry for \"" + domain +
                            "\"",
                        401);
                use_basic = true;
                continue;
            }
            throw RemoteError(where(repository) + ": " + what + " answered " + describe_status(t) +
                                  " without a Basic or Bearer challenge",
                              401);
        }
    }

    RemoteManifest get(const std::string& repository, const std::string& reference) {
        Transfer t;
        t.body_limit = kMaxManifestBytes;
        std::string what = "GET manifest " + reference;
        request("GET", repository, "/v2/" + repository + "/manifests/" + reference, t,
                {"Accept: " + kManifestAccept}, false, what);
        if (t.status != 200)
            throw RemoteError(where(repository) + ": " + what + " answered " + describe_status(t),
                              t.status);
        RemoteManifest m;
        m.bytes = std::move(t.body);
        m.digest = oci::Digest::sha256_of(m.bytes);
        if (auto asked = oci::Digest::try_parse(reference)) {
            if (asked->algorithm() != "sha256")
                m.digest = *asked;  // verified below only for sha256 (all that is written)
            else if (*asked != m.digest)
                throw RemoteError(where(repository) + ": manifest " + reference +
                                      " does not match its digest: the bytes received hash to " +
                                      m.digest.str(),
                                  t.status);
        }
        if (auto sent = oci::Digest::try_parse(t.header("docker-content-digest"));
            sent && sent->algorithm() == "sha256" && *sent != m.digest)
            throw RemoteError(where(repository) + ": manifest " + reference + " was sent as " +
                                  sent->str() + " but the bytes received hash to " + m.digest.str(),
                              t.status);
        std::string type = strip_parameters(t.header("content-type"));
        if (oci::media::is_manifest(type) || oci::media::is_index(type)) {
            m.media_type = type;
        } else if (type.find("manifest.v1") != std::string::npos) {
            throw RemoteError(where(repository) + ": manifest " + reference + " is " + type +
                                  " (Docker schema 1), which is not supported",
                              t.status);
        } else {
            try {
                m.media_type = oci::detect_manifest_media_type(m.bytes);
            } catch (const std::exception& e) {
                throw RemoteError(where(repository) + ": manifest " + reference + " (" + type +
                                      ") is not an image manifest or index: " + e.what(),
                                  t.status);
            }
        }
        return m;
    }
};

RemoteRegistry::RemoteRegistry(const std::string& domain, RemoteOptions options)
    : impl_(std::make_unique<Impl>()) {
    global_init();
    impl_->domain = domain;
    impl_->host = registry_host(domain);
    impl_->options = std::move(options);
    impl_->scheme_known = !impl_->options.insecure;
    impl_->curl = curl_easy_init();
    if (!impl_->curl) throw Error("libcurl: cannot create a handle for registry " + impl_->host);
}

RemoteRegistry::~RemoteRegistry() {
    if (impl_ && impl_->curl) curl_easy_cleanup(impl_->curl);
}

const std::string& RemoteRegistry::host() const {
    return impl_->host;
}

ManifestHead RemoteRegistry::head_manifest(const std::string& repository,
                                           const std::string& reference) {
    Transfer t;
    std::string what = "HEAD manifest " + reference;
    impl_->request("HEAD", repository, "/v2/" + repository + "/manifests/" + reference, t,
                   {"Accept: " + kManifestAccept}, false, what);
    auto digest = oci::Digest::try_parse(t.header("docker-content-digest"));
    if (t.status == 200 && digest) {
        ManifestHead h;
        h.digest = *digest;
        h.media_type = strip_parameters(t.header("content-type"));
        try {
            h.size = std::stoll(t.header("content-length"));
        } catch (...) {
        }
        return h;
    }
    if (t.status == 404)
        throw RemoteError(impl_->where(repository) + ": manifest " + reference +
                              " is unknown (404 Not Found): no such tag or digest in " + repository,
                          404);
    if (t.status != 200 && t.status != 405 && t.status != 501)
        throw RemoteError(
            impl_->where(repository) + ": " + what + " answered " + describe_status(t), t.status);
    // No digest in the answer (or no HEAD support): the body tells.
    auto m = impl_->get(repository, reference);
    return {m.digest, m.media_type, static_cast<int64_t>(m.bytes.size())};
}

RemoteManifest RemoteRegistry::get_manifest(const std::string& repository,
                                            const std::string& reference) {
    return impl_->get(repository, reference);
}

bool RemoteRegistry::fetch_blob(const std::string& repository, const oci::Descriptor& blob,
                                BlobStore& blobs) {
    if (blobs.has(blob.digest)) return false;
    BlobWriter writer = blobs.begin();
    Transfer t;
    const int64_t expected = blob.size;
    t.sink = [&](const char* data, size_t len) -> std::optional<std::string> {
        if (writer.size() + static_cast<int64_t>(len) > expected)
            return "the registry sent more than the " + std::to_string(expected) +
                   " bytes the descriptor states";
        try {
            writer.write(data, len);
        } catch (const std::exception& e) {
            return std::string(e.what());  // e.g. the disk is full
        }
        return std::nullopt;
    };
    std::string what = "GET blob " + blob.digest.str();
    impl_->request("GET", repository, "/v2/" + repository + "/blobs/" + blob.digest.str(), t, {},
                   true, what);
    if (t.status != 200)
        throw RemoteError(
            impl_->where(repository) + ": " + what + " answered " + describe_status(t), t.status);
    try {
        writer.commit(blob.digest, expected);
    } catch (const std::exception& e) {
        throw RemoteError(impl_->where(repository) + ": blob " + blob.digest.str() +
                              " failed verification and was discarded: " + e.what(),
                          t.status);
    }
    return true;
}

}  // namespace cascade::registry
