#include "registry/auth.hpp"

#include <crypt.h>
#include <fnmatch.h>
#include <openssl/crypto.h>
#include <sys/stat.h>

#include <httplib.h>
#include <algorithm>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>

#include "oci/digest.hpp"
#include "oci/error.hpp"
#include "oci/fs.hpp"

namespace cascade::registry {

namespace {

using json = nlohmann::json;

// More verified (user, password) pairs than this and the cache starts over.
constexpr size_t kMaxCachedVerifications = 10000;

std::string describe_hash(const std::string& hash) {
    if (hash.rfind("$apr1$", 0) == 0) return "an MD5 (apr1) hash";
    if (hash.rfind("{SHA}", 0) == 0) return "a SHA-1 hash";
    if (hash.rfind("$5$", 0) == 0 || hash.rfind("$6$", 0) == 0) return "a SHA-2 crypt hash";
    if (hash.rfind("$1$", 0) == 0) return "an MD5 crypt hash";
    if (hash.size() == 13) return "a DES crypt hash";
    return "not a bcrypt hash";
}

bool is_bcrypt(const std::string& hash) {
    static const std::regex re(R"(\$2[abxy]\$[0-9]{2}\$[./A-Za-z0-9]{53})");
    return std::regex_match(hash, re);
}

std::optional<std::string> base64_decode(std::string_view in) {
    auto value = [](char c) -> int {
        if (c >= 'A' && c <= 'Z') return c - 'A';
        if (c >= 'a' && c <= 'z') return c - 'a' + 26;
        if (c >= '0' && c <= '9') return c - '0' + 52;
        if (c == '+') return 62;
        if (c == '/') return 63;
        return -1;
    };
    while (!in.empty() && in.back() == '=')
        in.remove_suffix(1);
    std::string out;
    uint32_t acc = 0;
    int bits = 0;
    for (char c : in) {
        int v = value(c);
        if (v < 0) return std::nullopt;
        acc = (acc << 6) | static_cast<uint32_t>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(static_cast<char>((acc >> bits) & 0xff));
        }
    }
    return out;
}

bool contains(const std::vector<std::string>& list, const std::string& item) {
    return std::find(list.begin(), list.end(), item) != list.end();
}

const char* action_name(Action a) {
    return a == Action::Pull ? "pull" : "push";
}

}  // namespace

// ---- htpasswd ----

std::map<std::string, std::string> parse_htpasswd(const std::string& text,
                                                  const std::string& file) {
    std::map<std::string, std::string> users;
    size_t pos = 0;
    int line_no = 0;
    while (pos < text.size()) {
        size_t nl = text.find('\n', pos);
        std::string line = text.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
        pos = nl == std::string::npos ? text.size() : nl + 1;
        line_no++;
        if (!line.empty() && line.back() == '\r') line.pop_back();
        auto first = line.find_first_not_of(" \t");
        if (first == std::string::npos || line[first] == '#') continue;
        std::string where = file + ":" + std::to_string(line_no);
        auto colon = line.find(':');
        if (colon == std::string::npos || colon == 0)
            throw Error(where + ": expected USER:HASH; create entries with `htpasswd -B " + file +
                        " USER`");
        std::string user = line.substr(0, colon);
        std::string hash = line.substr(colon + 1);
        if (!is_bcrypt(hash))
            throw Error(where + ": the password of user \"" + user + "\" is " +
                        describe_hash(hash) +
                        "; only bcrypt is accepted: set it again with `htpasswd -B " + file + " " +
                        user + "`");
        if (!users.emplace(user, hash).second)
            throw Error(where + ": user \"" + user + "\" appears twice");
    }
    return users;
}

bool Htpasswd::Stamp::operator==(const Stamp& o) const {
    return dev == o.dev && ino == o.ino && size == o.size && mtime.tv_sec == o.mtime.tv_sec &&
           mtime.tv_nsec == o.mtime.tv_nsec && ctime.tv_sec == o.ctime.tv_sec &&
           ctime.tv_nsec == o.ctime.tv_nsec;
}

Htpasswd::Stamp Htpasswd::stamp() const {
    struct stat st;
    Stamp s;
    if (::stat(file_.c_str(), &st) != 0) return s;
    s.dev = st.st_dev;
    s.ino = st.st_ino;
    s.size = st.st_size;
    s.mtime = st.st_mtim;
    s.ctime = st.st_ctim;
    return s;
}

Htpasswd::Htpasswd(std::filesystem::path file) : file_(std::move(file)), salt_(fs::random_hex(32)) {
    loaded_ = stamp();
    std::string text;
    try {
        text = fs::read_file(file_);
    } catch (const std::exception& e) {
        throw Error(std::string(e.what()) +
                    " (auth.htpasswd: create the file with `htpasswd -B -c " + file_.string() +
                    " USER`)");
    }
    hashes_ = parse_htpasswd(text, file_.string());
}

void Htpasswd::set_event_sink(Sink sink) {
    std::lock_guard lock(mu_);
    sink_ = std::move(sink);
}

void Htpasswd::reload_if_changed() {
    Stamp now = stamp();
    if (now == loaded_) return;
    loaded_ = now;
    try {
        auto users = parse_htpasswd(fs::read_file(file_), file_.string());
        hashes_ = std::move(users);
        verified_.clear();
        if (sink_)
            sink_("HtpasswdReloaded",
                  file_.string() + ": " + std::to_string(hashes_.size()) + " users");
    } catch (const std::exception& e) {
        // Keep the users we have: a half-edited file must not lock everyone out.
        if (sink_)
            sink_("HtpasswdInvalid", std::string(e.what()) + " (keeping the previous users)");
    }
}

bool Htpasswd::has_user(const std::string& user) {
    std::lock_guard lock(mu_);
    reload_if_changed();
    return hashes_.count(user) > 0;
}

bool Htpasswd::verify(const std::string& user, const std::string& password) {
    std::string key = oci::Digest::sha256_of(salt_ + user + '\0' + password).str();
    std::string hash;
    {
        std::lock_guard lock(mu_);
        reload_if_changed();
        auto it = hashes_.find(user);
        if (it == hashes_.end()) return false;
        if (verified_.count(key)) return true;
        hash = it->second;
    }
    // bcrypt outside the lock: concurrent logins must not queue behind it.
    auto data = std::make_unique<crypt_data>();
    const char* out = crypt_r(password.c_str(), hash.c_str(), data.get());
    bool ok = out && out[0] != '*' && std::strlen(out) == hash.size() &&
              CRYPTO_memcmp(out, hash.data(), hash.size()) == 0;
    if (!ok) return false;
    std::lock_guard lock(mu_);
    auto it = hashes_.find(user);
    if (it == hashes_.end() || it->second != hash) return ok;  // changed meanwhile
    if (verified_.size() >= kMaxCachedVerifications) verified_.clear();
    verified_.insert(key);
    return true;
}

// ---- policy ----

bool repository_matches(const std::string& pattern, const std::string& repository) {
    return fnmatch(pattern.c_str(), repository.c_str(), 0) == 0;
}

AccessPolicy::AccessPolicy(std::vector<AccessRule> rules) : rules_(std::move(rules)) {}

bool AccessPolicy::allows(const std::string& user, const std::string& repository,
                          Action action) const {
    if (rules_.empty()) return !user.empty();
    for (const auto& rule : rules_) {
        if (!repository_matches(rule.repository, repository)) continue;
        auto permits = [&](const std::vector<std::string>& who) {
            return contains(who, "anonymous") || (!user.empty() && contains(who, "*")) ||
                   (!user.empty() && contains(who, user));
        };
        // Push implies pull: pushing clients HEAD blobs and manifests first.
        return action == Action::Pull ? permits(rule.pull) || permits(rule.push)
                                      : permits(rule.push);
    }
    return false;
}

// ---- authorizer ----

Authorizer::Authorizer(AuthSettings settings)
    : settings_(std::move(settings)), htpasswd_(settings_.htpasswd), policy_(settings_.access) {}

Identity Authorizer::authenticate(const std::string& authorization) {
    Identity who;
    if (authorization.empty()) return who;
    auto space = authorization.find(' ');
    std::string scheme = authorization.substr(0, space);
    std::transform(scheme.begin(), scheme.end(), scheme.begin(), ::tolower);
    if (scheme != "basic" || space == std::string::npos) {
        who.bad_credentials = true;
        return who;
    }
    auto start = authorization.find_first_not_of(' ', space);
    auto decoded = base64_decode(start == std::string::npos ? "" : authorization.substr(start));
    if (!decoded) {
        who.bad_credentials = true;
        return who;
    }
    auto colon = decoded->find(':');
    if (colon == std::string::npos) {
        who.bad_credentials = true;
        return who;
    }
    std::string user = decoded->substr(0, colon);
    std::string password = decoded->substr(colon + 1);
    if (user.empty() && password.empty()) return who;  // "no credentials", in Basic form
    if (htpasswd_.verify(user, password)) {
        who.user = user;
        who.authenticated = true;
    } else {
        who.bad_credentials = true;
    }
    return who;
}

bool Authorizer::is_admin(const std::string& user) const {
    return !user.empty() && contains(settings_.admins, user);
}

bool Authorizer::may(const Identity& who, const std::string& repo, Action action) const {
    return policy_.allows(who.authenticated ? who.user : std::string(), repo, action);
}

std::vector<std::string> Authorizer::visible_repositories(const Identity& who) const {
    std::vector<std::string> out;
    if (!list_repositories_) return out;
    for (auto& repo : list_repositories_())
        if (may(who, repo, Action::Pull)) out.push_back(std::move(repo));
    return out;
}

namespace {

// /api/v1/buildconfigs/NAME/webhooks/SECRET/(generic|github) or
// /apis/build.openshift.io/v1/namespaces/NS/buildconfigs/NAME/webhooks/SECRET/(generic|github).
bool is_build_webhook_path(const std::string& path) {
    std::vector<std::string> parts;
    size_t start = 1;
    while (start <= path.size()) {
        auto slash = path.find('/', start);
        if (slash == std::string::npos) slash = path.size();
        parts.push_back(path.substr(start, slash - start));
        start = slash + 1;
    }
    for (const auto& p : parts)
        if (p.empty() || p == "." || p == "..") return false;
    auto hook_tail = [&](size_t at) {  // buildconfigs/NAME/webhooks/SECRET/TYPE from `at`
        return parts.size() == at + 5 && parts[at] == "buildconfigs" &&
               parts[at + 2] == "webhooks" &&
               (parts[at + 4] == "generic" || parts[at + 4] == "github");
    };
    if (path.rfind("/api/v1/", 0) == 0) return hook_tail(2);
    if (path.rfind("/apis/build.openshift.io/v1/namespaces/", 0) == 0) return hook_tail(5);
    return false;
}

}  // namespace

Verdict Authorizer::authorize(const std::string& method, const std::string& path,
                              const std::multimap<std::string, std::string>& params,
                              const Identity& who) const {
    Verdict v;
    auto unauthorized = [&](const std::string& message) {
        v.kind = Verdict::Unauthorized;
        v.message = message;
        return v;
    };
    // Build webhooks (…/buildconfigs/NAME/webhooks/SECRET/generic|github)
    // carry their own secret, which the API checks, like OpenShift's.
    if (method == "POST" && is_build_webhook_path(path)) return v;
    if (who.bad_credentials)
        return unauthorized("invalid username or password (realm \"" + settings_.realm + "\")");
    auto needs_login = [&]() -> Verdict {
        if (who.authenticated) return v;
        return unauthorized("authentication required (realm \"" + settings_.realm + "\")");
    };

    bool read = method == "GET" || method == "HEAD";
    if (path == "/v2" || path == "/v2/" || path == "/v2/_catalog") return needs_login();

    if (path.rfind("/api/v1/", 0) == 0 || path == "/api/v1") {
        if (read) return needs_login();
        if (!who.authenticated) return needs_login();
        if (is_admin(who.user)) return v;
        v.kind = Verdict::Denied;
        v.action = "admin";
        v.message = "user \"" + who.user + "\" may not " + method + " " + path +
                    ": changes through the API are for the users in auth.admins";
        return v;
    }

    if (path.rfind("/v2/", 0) != 0) return needs_login();

    // The repository: the same patterns the routes use (names contain '/').
    static const std::regex upload_start(R"(/v2/(.+)/blobs/uploads/?)");
    // Every other endpoint of a repository: manifests, tags, blobs, uploads,
    // referrers, and extensions (/v2/<name>/_oci/…), now and to come.
    static const std::regex repository_endpoint(
        R"(/v2/(.+)/(manifests|blobs|tags|referrers|_[a-z0-9]+)/.*)");
    std::smatch m;
    bool is_upload_start = std::regex_match(path, m, upload_start);
    if (!is_upload_start && !std::regex_match(path, m, repository_endpoint)) {
        return needs_login();  // not a route: 404 for whoever may ask
    }
    std::string repo = m[1];
    Action action = read ? Action::Pull : Action::Push;
    v.repository = repo;
    v.action = action_name(action);
    if (!may(who, repo, action)) {
        if (!who.authenticated)
            return unauthorized("authentication required to " + v.action + " " + repo);
        v.kind = Verdict::Denied;
        v.message = "requested access to the resource is denied: user \"" + who.user +
                    "\" may not " + v.action + " " + repo;
        return v;
    }
    if (is_upload_start && params.count("mount")) {
        // Without `from` the routes would mount any blob the store holds.
        auto from = params.find("from");
        if (from == params.end() || !may(who, from->second, Action::Pull)) v.drop_mount = true;
    }
    return v;
}

void Authorizer::install(httplib::Server& server) {
    server.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
        Identity who = authenticate(req.get_header_value("Authorization"));
        Verdict v = authorize(req.method, req.path, req.params, who);
        bool registry = req.path.rfind("/v2", 0) == 0;
        if (registry) res.set_header("Docker-Distribution-API-Version", "registry/2.0");
        if (v.kind == Verdict::Allow) {
            if (v.drop_mount) {
                // The routes read the query; without mount/from they start a
                // plain upload session. The Request is ours to change here.
                auto& params = const_cast<httplib::Request&>(req).params;
                params.erase("mount");
                params.erase("from");
            }
            if (req.path == "/v2/_catalog" && (req.method == "GET" || req.method == "HEAD")) {
                auto repos = visible_repositories(who);
                std::string last = req.get_param_value("last");
                auto begin = repos.begin();
                if (!last.empty()) begin = std::upper_bound(repos.begin(), repos.end(), last);
                std::vector<std::string> page(begin, repos.end());
                if (req.has_param("n")) {
                    long long n = -1;
                    try {
                        n = std::stoll(req.get_param_value("n"));
                    } catch (const std::exception&) {
                    }
                    if (n < 0) {
                        res.status = 400;
                        res.set_content(
                            json{{"errors", json::array({{{"code", "UNSUPPORTED"},
                                                          {"message", "invalid page size n=" +
                                                                          req.get_param_value("n") +
                                                                          ": use a non-negative "
                                                                          "integer"},
                                                          {"detail", nullptr}}})}}
                                .dump(),
                            "application/json");
                        return httplib::Server::HandlerResponse::Handled;
                    }
                    if (page.size() > static_cast<size_t>(n)) {
                        page.resize(static_cast<size_t>(n));
                        if (n > 0)
                            res.set_header("Link", "</v2/_catalog?n=" + std::to_string(n) +
                                                       "&last=" + page.back() + ">; rel=\"next\"");
                    }
                }
                res.status = 200;
                res.set_content(json{{"repositories", page}}.dump(), "application/json");
                return httplib::Server::HandlerResponse::Handled;
            }
            return httplib::Server::HandlerResponse::Unhandled;
        }

        bool unauthorized = v.kind == Verdict::Unauthorized;
        int status = unauthorized ? 401 : 403;
        std::string code = unauthorized ? "UNAUTHORIZED" : "DENIED";
        if (unauthorized)
            res.set_header("WWW-Authenticate",
                           "Basic realm=\"" + settings_.realm + "\", charset=\"UTF-8\"");
        if (!registry && unauthorized)
            v.message +=
                ": log in as a user of the daemon's htpasswd file (the cascade CLI reads "
                "CASCADE_USERNAME and CASCADE_PASSWORD, or --username and --password)";
        json detail = nullptr;
        if (!v.repository.empty())
            detail = json::array(
                {{{"Type", "repository"}, {"Name", v.repository}, {"Action", v.action}}});
        json body = {{"errors",
                      json::array({{{"code", code}, {"message", v.message}, {"detail", detail}}})}};
        if (!registry) {
            // The CLI's API answers in the Kubernetes Status shape.
            body["kind"] = "Status";
            body["status"] = "Failure";
            body["message"] = v.message;
            body["code"] = status;
            body["reason"] = unauthorized ? "Unauthorized" : "Forbidden";
        }
        res.status = status;
        res.set_content(body.dump(), "application/json");
        // The request's body is not read; the connection cannot carry another
        // request after it.
        auto length = req.get_header_value("Content-Length");
        if ((!length.empty() && length != "0") || req.has_header("Transfer-Encoding"))
            res.set_header("Connection", "close");
        return httplib::Server::HandlerResponse::Handled;
    });
}

}  // namespace cascade::registry
