#include "cli/config.hpp"

#include <yaml-cpp/yaml.h>

#include <set>

#include "oci/error.hpp"

namespace cascade::cli {

namespace {

struct Reader {
    std::filesystem::path file;

    [[noreturn]] void fail(const std::string& key, const std::string& what) const {
        throw Error(file.string() + ": " + key + ": " + what);
    }

    void only_keys(const YAML::Node& node, const std::string& where,
                   const std::set<std::string>& allowed) const {
        if (!node.IsMap()) fail(where, "expected a mapping");
        for (const auto& kv : node) {
            auto key = kv.first.as<std::string>();
            if (!allowed.count(key)) {
                std::string known;
                for (const auto& k : allowed)
                    known += (known.empty() ? "" : ", ") + k;
                fail(where.empty() ? key : where + "." + key, "unknown key (known: " + known + ")");
            }
        }
    }

    std::string str(const YAML::Node& node, const std::string& key) const {
        if (!node.IsScalar()) fail(key, "expected a string");
        return node.as<std::string>();
    }

    std::filesystem::path path(const YAML::Node& node, const std::string& key) const {
        std::filesystem::path p = str(node, key);
        if (p.empty()) fail(key, "empty path");
        return p.is_absolute() ? p : file.parent_path() / p;
    }

    int64_t integer(const YAML::Node& node, const std::string& key, int64_t min) const {
        int64_t v = 0;
        try {
            v = node.as<int64_t>();
        } catch (const YAML::Exception&) {
            fail(key, "expected an integer");
        }
        if (v < min) fail(key, "must be at least " + std::to_string(min));
        return v;
    }

    bool boolean(const YAML::Node& node, const std::string& key) const {
        try {
            return node.as<bool>();
        } catch (const YAML::Exception&) {
            fail(key, "expected true or false");
        }
    }

    std::vector<std::string> strings(const YAML::Node& node, const std::string& key) const {
        std::vector<std::string> out;
        if (node.IsScalar()) return {node.as<std::string>()};
        if (!node.IsSequence()) fail(key, "expected a list of strings");
        for (const auto& item : node)
            out.push_back(str(item, key));
        return out;
    }
};

}  // namespace

ServerConfig load_server_config(const std::filesystem::path& file) {
    Reader r{file};
    YAML::Node root;
    try {
        root = YAML::LoadFile(file.string());
    } catch (const YAML::BadFile&) {
        throw Error(file.string() + ": cannot read the configuration file");
    } catch (const YAML::Exception& e) {
        throw Error(file.string() + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
    }
    ServerConfig c;
    if (root.IsNull()) return c;
    r.only_keys(root, "",
                {"listen", "root", "insecure", "tls", "auth", "access", "gc", "uploads", "imports",
                 "notifications", "buildCache", "registries", "logs", "router"});
    if (root["listen"]) c.listen = r.str(root["listen"], "listen");
    if (auto router = root["router"]) {
        r.only_keys(router, "router", {"listen"});
        if (router["listen"]) {
            c.router_listen = r.str(router["listen"], "router.listen");
            auto colon = c.router_listen->rfind(':');
            if (*c.router_listen != "off" &&
                (colon == std::string::npos || colon + 1 == c.router_listen->size()))
                r.fail("router.listen",
                       "expected HOST:PORT or \"off\", got \"" + *c.router_listen + "\"");
        }
    }
    if (root["root"]) c.root = r.path(root["root"], "root");
    if (root["insecure"]) c.insecure = r.boolean(root["insecure"], "insecure");
    if (auto tls = root["tls"]) {
        r.only_keys(tls, "tls", {"certificate", "key"});
        if (!tls["certificate"] || !tls["key"]) r.fail("tls", "needs both certificate and key");
        c.tls_certificate = r.path(tls["certificate"], "tls.certificate");
        c.tls_key = r.path(tls["key"], "tls.key");
    }
    if (auto auth = root["auth"]) {
        r.only_keys(auth, "auth", {"htpasswd", "realm", "admins"});
        if (!auth["htpasswd"]) r.fail("auth", "needs htpasswd (a file made with htpasswd -B)");
        c.htpasswd = r.path(auth["htpasswd"], "auth.htpasswd");
        if (auth["realm"]) c.realm = r.str(auth["realm"], "auth.realm");
        if (auth["admins"]) c.admins = r.strings(auth["admins"], "auth.admins");
    }
    if (auto access = root["access"]) {
        if (!access.IsSequence()) r.fail("access", "expected a list of rules");
        int i = 0;
        for (const auto& rule : access) {
            std::string where = "access[" + std::to_string(i++) + "]";
            r.only_keys(rule, where, {"repository", "pull", "push"});
            AccessRule a;
            if (rule["repository"]) a.repository = r.str(rule["repository"], where + ".repository");
            if (a.repository.empty()) r.fail(where + ".repository", "empty pattern (use \"*\")");
            if (rule["pull"]) a.pull = r.strings(rule["pull"], where + ".pull");
            if (rule["push"]) a.push = r.strings(rule["push"], where + ".push");
            c.access.push_back(std::move(a));
        }
        if (!c.auth())
            r.fail("access",
                   "rules need auth.htpasswd: without authentication every request is anonymous "
                   "and access is not checked");
    }
    if (auto gc = root["gc"]) {
        r.only_keys(gc, "gc", {"keepGenerations", "graceSeconds"});
        if (gc["keepGenerations"])
            c.gc_keep_generations =
                static_cast<int>(r.integer(gc["keepGenerations"], "gc.keepGenerations", 1));
        if (gc["graceSeconds"])
            c.gc_grace_seconds = r.integer(gc["graceSeconds"], "gc.graceSeconds", 0);
    }
    if (auto bc = root["buildCache"]) {
        r.only_keys(bc, "buildCache", {"maxBytes"});
        if (bc["maxBytes"])
            c.build_cache_max_bytes = r.integer(bc["maxBytes"], "buildCache.maxBytes", 0);
    }
    if (auto logs = root["logs"]) {
        r.only_keys(logs, "logs", {"maxBytes", "maxFiles"});
        if (logs["maxBytes"]) c.log_max_bytes = r.integer(logs["maxBytes"], "logs.maxBytes", 1);
        if (logs["maxFiles"])
            c.log_max_files = static_cast<int>(r.integer(logs["maxFiles"], "logs.maxFiles", 1));
    }
    if (auto up = root["uploads"]) {
        r.only_keys(up, "uploads", {"expireSeconds"});
        if (up["expireSeconds"])
            c.upload_expire_seconds = r.integer(up["expireSeconds"], "uploads.expireSeconds", 1);
    }
    if (auto im = root["imports"]) {
        r.only_keys(im, "imports", {"intervalSeconds"});
        if (im["intervalSeconds"])
            c.import_interval_seconds =
                r.integer(im["intervalSeconds"], "imports.intervalSeconds", 1);
    }
    if (auto regs = root["registries"]) {
        r.only_keys(regs, "registries", {"mirrors", "insecure"});
        if (auto mirrors = regs["mirrors"]) {
            if (!mirrors.IsMap()) r.fail("registries.mirrors", "expected domain: [mirror, …]");
            for (const auto& kv : mirrors) {
                auto domain = kv.first.as<std::string>();
                auto key = "registries.mirrors." + domain;
                for (auto& m : r.strings(kv.second, key)) {
                    auto scheme = m.find("://");
                    auto host = m.substr(scheme == std::string::npos ? 0 : scheme + 3);
                    while (!host.empty() && host.back() == '/')
                        host.pop_back();
                    bool known_scheme = scheme == std::string::npos || m.rfind("http://", 0) == 0 ||
                                        m.rfind("https://", 0) == 0;
                    if (host.empty() || host.find('/') != std::string::npos || !known_scheme)
                        r.fail(key,
                               "expected host[:port], http://host[:port] or https://host[:port], "
                               "got \"" +
                                   m + "\"");
                    c.registry_mirrors[domain].push_back(m);
                }
            }
        }
        if (regs["insecure"])
            c.insecure_registries = r.strings(regs["insecure"], "registries.insecure");
    }
    if (auto notes = root["notifications"]) {
        if (!notes.IsSequence()) r.fail("notifications", "expected a list of endpoints");
        int i = 0;
        for (const auto& n : notes) {
            std::string where = "notifications[" + std::to_string(i++) + "]";
            r.only_keys(n, where, {"name", "url", "headers", "timeoutSeconds", "maxAttempts"});
            WebhookEndpoint w;
            if (!n["url"]) r.fail(where, "needs url");
            w.url = r.str(n["url"], where + ".url");
            if (w.url.rfind("http://", 0) != 0 && w.url.rfind("https://", 0) != 0)
                r.fail(where + ".url", "expected an http:// or https:// URL, got " + w.url);
            w.name = n["name"] ? r.str(n["name"], where + ".name") : w.url;
            if (auto h = n["headers"]) {
                if (!h.IsMap()) r.fail(where + ".headers", "expected a mapping");
                for (const auto& kv : h)
                    w.headers[kv.first.as<std::string>()] =
                        r.str(kv.second, where + ".headers." + kv.first.as<std::string>());
            }
            if (n["timeoutSeconds"])
                w.timeout_seconds =
                    static_cast<int>(r.integer(n["timeoutSeconds"], where + ".timeoutSeconds", 1));
            if (n["maxAttempts"])
                w.max_attempts =
                    static_cast<int>(r.integer(n["maxAttempts"], where + ".maxAttempts", 1));
            c.notifications.push_back(std::move(w));
        }
    }
    return c;
}

}  // namespace cascade::cli
