// Access control for the daemon's one listener (the registry's /v2/ and the
// CLI's /api/v1/): Basic authentication against an htpasswd file of bcrypt
// entries, and an access policy of repository patterns with pull and push
// lists. The Authorizer installs itself as the server's pre-routing handler,
// so the route handlers stay unaware of it; a refused request is answered
// 401 UNAUTHORIZED (with a Basic challenge) or 403 DENIED in the Distribution
// Spec's JSON error body.
//
// What each request needs:
//   /v2/, /v2/_catalog           an authenticated user; the catalog lists only
//                                 the repositories the user may pull
//   GET/HEAD /v2/<repo>/…         pull on <repo>
//   POST/PUT/PATCH/DELETE …       push on <repo> (deleting too)
//   POST …/blobs/uploads/?mount=D&from=F
//                                 push on <repo>; the mount is tried only when
//                                 the user may pull F (and F is given),
//                                 otherwise a plain upload session starts (the
//                                 spec's 202). That a repository serves only
//                                 its own blobs is the routes' part.
//   GET/HEAD /api/v1/…            an authenticated user
//   POST/PUT/PATCH/DELETE /api/v1/…  a user named in admins
//   anything else                 an authenticated user
// Push implies pull: clients check with HEAD which blobs a repository already
// has before they push.
#pragma once

#include <sys/types.h>

#include <ctime>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

namespace httplib {
class Server;
}

namespace cascade::registry {

// An htpasswd file (`htpasswd -B`): "user:$2y$…" lines; '#' comments and
// blank lines are skipped. Entries that are not bcrypt are refused at load
// with file:line. The file is re-read when it changes (checked on each
// verify); a change that does not load keeps the previous users. Successful
// verifications are remembered (keyed by a salted SHA-256 of user and
// password) because bcrypt costs tens of milliseconds by design.
class Htpasswd {
  public:
    using Sink = std::function<void(const std::string& kind, const std::string& message)>;

    explicit Htpasswd(std::filesystem::path file);  // throws cascade::Error
    Htpasswd(const Htpasswd&) = delete;
    Htpasswd& operator=(const Htpasswd&) = delete;

    bool verify(const std::string& user, const std::string& password);
    bool has_user(const std::string& user);
    const std::filesystem::path& file() const { return file_; }
    // Told about reloads and about changes that could not be loaded.
    void set_event_sink(Sink sink);

  private:
    struct Stamp {
        dev_t dev = 0;
        ino_t ino = 0;
        off_t size = -1;
        timespec mtime{};
        timespec ctime{};
        bool operator==(const Stamp& o) const;
    };
    Stamp stamp() const;
    void reload_if_changed();  // with mu_ held

    std::filesystem::path file_;
    std::string salt_;
    std::mutex mu_;
    Stamp loaded_;
    std::map<std::string, std::string> hashes_;  // user → bcrypt hash
    std::set<std::string> verified_;             // cache keys of good (user, password)
    Sink sink_;
};

// Parses htpasswd text; throws cascade::Error naming `file`:line on an entry
// that is malformed or not bcrypt.
std::map<std::string, std::string> parse_htpasswd(const std::string& text, const std::string& file);

// Glob over repository names: '*' matches any run of characters, '/'
// included; '?' one character; [...] a class.
bool repository_matches(const std::string& pattern, const std::string& repository);

enum class Action { Pull, Push };

struct AccessRule {
    std::string repository = "*";
    std::vector<std::string> pull;  // user names, "*" (authenticated) or "anonymous"
    std::vector<std::string> push;
};

// The first rule whose pattern matches the repository decides; no match:
// denied. With no rules at all, every authenticated user may pull and push
// (what Distribution's htpasswd mode does).
class AccessPolicy {
  public:
    explicit AccessPolicy(std::vector<AccessRule> rules = {});
    // `user` empty: anonymous.
    bool allows(const std::string& user, const std::string& repository, Action action) const;

  private:
    std::vector<AccessRule> rules_;
};

struct AuthSettings {
    std::filesystem::path htpasswd;
    std::string realm = "cascade";
    std::vector<std::string> admins;
    std::vector<AccessRule> access;
};

// Who is asking: user "" and !authenticated is anonymous.
struct Identity {
    std::string user;
    bool authenticated = false;
    bool bad_credentials = false;  // an Authorization header that did not verify
};

struct Verdict {
    enum Kind { Allow, Unauthorized, Denied } kind = Allow;
    std::string message;
    std::string repository;   // for the error body's detail
    std::string action;       // "pull" / "push" / "admin"
    bool drop_mount = false;  // serve a cross-repository mount as a plain upload
};

class Authorizer {
  public:
    // Sorted names of every repository (for the catalog).
    using RepositoryLister = std::function<std::vector<std::string>()>;

    explicit Authorizer(AuthSettings settings);  // throws cascade::Error (htpasswd)

    // Decodes an Authorization header ("" when absent). Basic with an empty
    // user and password (what some clients send when they have none) is
    // anonymous.
    Identity authenticate(const std::string& authorization);

    // The decision for one request; `params` is the query.
    Verdict authorize(const std::string& method, const std::string& path,
                      const std::multimap<std::string, std::string>& params,
                      const Identity& who) const;

    // The catalog as `who` may see it.
    std::vector<std::string> visible_repositories(const Identity& who) const;

    void set_repository_lister(RepositoryLister fn) { list_repositories_ = std::move(fn); }
    Htpasswd& htpasswd() { return htpasswd_; }
    const std::string& realm() const { return settings_.realm; }

    // Sets the server's pre-routing handler: refused requests are answered
    // there; /v2/_catalog is answered there too (filtered). The Authorizer
    // must outlive the server.
    void install(httplib::Server& server);

  private:
    bool is_admin(const std::string& user) const;
    bool may(const Identity& who, const std::string& repo, Action action) const;

    AuthSettings settings_;
    Htpasswd htpasswd_;
    AccessPolicy policy_;
    RepositoryLister list_repositories_;
};

}  // namespace cascade::registry
