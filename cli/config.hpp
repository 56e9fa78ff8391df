// The daemon's configuration file (`cascade serve --config FILE`), YAML:
//
//   listen: 127.0.0.1:5000          # --listen overrides
//   router:
//     listen: 127.0.0.1:8080        # the shared HTTP port routing by Host header;
//                                   #   "off" disables; --router-listen overrides
//   root: /var/lib/cascade          # --root overrides
//   insecure: false                 # allow a non-loopback listener without auth+TLS
//   tls:
//     certificate: /etc/cascade/tls.crt
//     key: /etc/cascade/tls.key
//   auth:
//     htpasswd: /etc/cascade/htpasswd   # bcrypt entries (htpasswd -B)
//     realm: cascade
//     admins: [alice]                   # may use the mutating /api/v1/ calls
//   access:                             # first rule whose pattern matches wins;
//     - repository: "team-a/*"          #   no match: denied; no access section: every
//       pull: ["*"]                     #   authenticated user may pull and push.
//       push: [alice]                   # Glob over repository names; user names, "*" =
//                                       #   any authenticated user, "anonymous" = no
//                                       #   credentials needed; push implies pull.
//                                       #   Needs auth (registry/auth.hpp has the details).
//   gc:
//     keepGenerations: 5                # history generations of each tag kept
//     graceSeconds: 600                 # never sweep what is younger than this
//   buildCache:
//     maxBytes: 10737418240             # bytes of cached layers kept (LRU beyond)
//   logs:                             # every container's log, rotated by size:
//     maxBytes: 10485760                #   bytes per file
//     maxFiles: 3                       #   files kept, the current one included
//   uploads:
//     expireSeconds: 86400              # abandoned upload sessions are removed
//   imports:
//     intervalSeconds: 900              # scheduled re-check of imported tags
//   registries:                         # bases of builds in other registries
//     mirrors:                          #   tried in order, then the registry itself
//       docker.io: ["http://127.0.0.1:5001", "mirror.example.com"]
//     insecure: ["127.0.0.1:5000"]      #   plain http:// or unverified TLS allowed
//   notifications:                      # webhooks for tag moves
//     - name: ci
//       url: http://127.0.0.1:9000/hook
//       headers: {Authorization: "Bearer s3cret"}
//       timeoutSeconds: 5
//       maxAttempts: 10
//
// Every field is optional; a missing file section means its defaults. Unknown
// keys are errors (a typo must not silently disable auth).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace cascade::cli {

struct AccessRule {
    std::string repository = "*";  // glob: * matches within and across '/'
    std::vector<std::string> pull;
    std::vector<std::string> push;
};

struct WebhookEndpoint {
    std::string name;
    std::string url;
    std::map<std::string, std::string> headers;
    int timeout_seconds = 5;
    int max_attempts = 10;
};

struct ServerConfig {
    std::optional<std::string> listen;
    std::optional<std::string> router_listen;  // router.listen: HOST:PORT or "off"
    std::optional<std::filesystem::path> root;
    bool insecure = false;

    std::filesystem::path tls_certificate;  // empty: plain HTTP
    std::filesystem::path tls_key;

    std::filesystem::path htpasswd;  // empty: no authentication
    std::string realm = "cascade";
    std::vector<std::string> admins;
    std::vector<AccessRule> access;

    int gc_keep_generations = 5;
    int64_t gc_grace_seconds = 600;
    int64_t build_cache_max_bytes = int64_t{10} << 30;
    int64_t upload_expire_seconds = 24 * 3600;
    int64_t log_max_bytes = int64_t{10} << 20;  // logs.maxBytes
    int log_max_files = 3;                      // logs.maxFiles
    int64_t import_interval_seconds = 15 * 60;
    // registries.mirrors (domain → endpoints) and registries.insecure (hosts).
    std::map<std::string, std::vector<std::string>> registry_mirrors;
    std::vector<std::string> insecure_registries;

    std::vector<WebhookEndpoint> notifications;

    bool tls() const { return !tls_certificate.empty(); }
    bool auth() const { return !htpasswd.empty(); }
};

// Reads and validates a configuration file; throws cascade::Error naming the
// file and the key on any problem. Relative paths are resolved against the
// file's directory.
ServerConfig load_server_config(const std::filesystem::path& file);

}  // namespace cascade::cli
