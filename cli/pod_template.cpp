#include "cli/pod_template.hpp"

#include <algorithm>
#include <limits>
#include <map>
#include <set>

#include "oci/error.hpp"

namespace cascade::cli {

using nlohmann::json;

namespace {

// ---- quantities ----

// value = digits × 10^exp10 × 2^exp2, rounded up; nullopt when it does not fit.
std::optional<int64_t> scaled_up(unsigned __int128 digits, int exp10, int exp2) {
    const unsigned __int128 limit = std::numeric_limits<int64_t>::max();
    unsigned __int128 v = digits;
    for (int i = 0; i < exp2; i++) {
        v <<= 1;
        if (v > limit * 16) return std::nullopt;
    }
    for (int i = 0; i < exp10; i++) {
        v *= 10;
        if (v > limit * 16) return std::nullopt;
    }
    if (exp10 < 0) {
        unsigned __int128 divisor = 1;
        for (int i = 0; i < -exp10; i++) {
            if (divisor > v) break;  // v / divisor < 1 from here on
            divisor *= 10;
        }
        v = v == 0 ? 0 : (v + divisor - 1) / divisor;
    }
    if (v > limit) return std::nullopt;
    return static_cast<int64_t>(v);
}

int64_t parse_quantity(const std::string& text, int scale10) {
    const std::string accepted =
        " is not a quantity (a number with an optional suffix Ki, Mi, Gi, Ti, Pi, Ei, m, k, M, "
        "G, T, P, E or an exponent like e3; e.g. 128Mi, 1G, 500m, 0.5)";
    size_t i = 0;
    if (i < text.size() && text[i] == '+') i++;
    if (i < text.size() && text[i] == '-')
        throw Error("\"" + text + "\" is negative; quantities must not be negative");
    unsigned __int128 digits = 0;
    int significant = 0, fraction = 0, seen = 0;
    bool dot = false;
    for (; i < text.size(); i++) {
        char c = text[i];
        if (c >= '0' && c <= '9') {
            seen++;
            if (dot) fraction++;
            if (digits == 0 && c == '0') continue;
            if (++significant > 19) throw Error("\"" + text + "\" has too many digits");
            digits = digits * 10 + static_cast<unsigned>(c - '0');
        } else if (c == '.' && !dot) {
            dot = true;
        } else {
            break;
        }
    }
    if (seen == 0) throw Error("\"" + text + "\"" + accepted);
    std::string suffix = text.substr(i);
    int exp10 = 0, exp2 = 0;
    static const std::map<std::string, std::pair<int, int>> suffixes = {
        {"", {0, 0}},    {"Ki", {0, 10}}, {"Mi", {0, 20}}, {"Gi", {0, 30}},
        {"Ti", {0, 40}}, {"Pi", {0, 50}}, {"Ei", {0, 60}}, {"n", {-9, 0}},
        {"u", {-6, 0}},  {"m", {-3, 0}},  {"k", {3, 0}},   {"M", {6, 0}},
        {"G", {9, 0}},   {"T", {12, 0}},  {"P", {15, 0}},  {"E", {18, 0}}};
    if (auto it = suffixes.find(suffix); it != suffixes.end()) {
        exp10 = it->second.first;
        exp2 = it->second.second;
    } else if ((suffix[0] == 'e' || suffix[0] == 'E') && suffix.size() >= 2) {
        size_t j = 1;
        bool negative = false;
        if (suffix[j] == '+' || suffix[j] == '-') negative = suffix[j++] == '-';
        if (j == suffix.size() || suffix.size() - j > 2 ||
            !std::all_of(suffix.begin() + static_cast<std::ptrdiff_t>(j), suffix.end(),
                         [](char c) { return c >= '0' && c <= '9'; }))
            throw Error("\"" + text + "\"" + accepted);
        exp10 = std::stoi(suffix.substr(j)) * (negative ? -1 : 1);
    } else {
        throw Error("\"" + text + "\"" + accepted);
    }
    auto v = scaled_up(digits, exp10 + scale10 - fraction, exp2);
    if (!v) throw Error("\"" + text + "\" is too large");
    return *v;
}

// ---- reading fields with their paths ----

std::string joined(const std::vector<std::string>& names) {
    std::string out;
    for (const auto& n : names)
        out += (out.empty() ? "" : ", ") + n;
    return out;
}

struct Reader {
    std::string who;  // DeploymentConfig "web"
    std::vector<std::string>* warnings;

    [[noreturn]] void fail(const std::string& field, const std::string& what) const {
        throw Error(who + ": " + field + " " + what);
    }
    void warn(const std::string& field, const std::string& what) const {
        if (warnings) warnings->push_back(who + ": " + field + " " + what);
    }

    // Fields of `node` that are neither `known` nor `ignored` (accepted and
    // silently ignored: bookkeeping fields of exported objects) are warned
    // about.
    void check_fields(const json& node, const std::string& field,
                      const std::vector<std::string>& known,
                      const std::vector<std::string>& ignored = {}) const {
        object(node, field);
        for (const auto& [key, value] : node.items()) {
            if (std::find(known.begin(), known.end(), key) != known.end()) continue;
            if (std::find(ignored.begin(), ignored.end(), key) != ignored.end()) continue;
            warn(sub(field, key),
                 "is not supported and is ignored (supported: " + joined(known) + ")");
        }
    }

    static std::string sub(const std::string& field, const std::string& key) {
        return field.empty() ? key : field + "." + key;
    }
    static std::string at(const std::string& field, size_t i) {
        return field + "[" + std::to_string(i) + "]";
    }

    void object(const json& node, const std::string& field) const {
        if (!node.is_object()) fail(field, "must be an object");
    }
    const json& list(const json& node, const std::string& field) const {
        if (!node.is_array()) fail(field, "must be a list");
        return node;
    }
    std::string string(const json& node, const std::string& field) const {
        if (!node.is_string()) fail(field, "must be a string");
        return node.get<std::string>();
    }
    bool boolean(const json& node, const std::string& field) const {
        if (!node.is_boolean()) fail(field, "must be true or false");
        return node.get<bool>();
    }
    int64_t integer(const json& node, const std::string& field, int64_t min,
                    int64_t max = std::numeric_limits<int32_t>::max()) const {
        int64_t v = 0;
        if (node.is_number_integer())
            v = node.get<int64_t>();
        else
            fail(field, "must be an integer");
        if (v < min) fail(field, "must be at least " + std::to_string(min));
        if (v > max) fail(field, "must be at most " + std::to_string(max));
        return v;
    }
    std::vector<std::string> strings(const json& node, const std::string& field) const {
        std::vector<std::string> out;
        list(node, field);
        for (size_t i = 0; i < node.size(); i++) {
            if (node[i].is_number()) {
                out.push_back(node[i].dump());  // YAML: args: [sleep, 10]
                continue;
            }
            out.push_back(string(node[i], at(field, i)));
        }
        return out;
    }
    std::map<std::string, std::string> string_map(const json& node,
                                                  const std::string& field) const {
        std::map<std::string, std::string> out;
        object(node, field);
        for (const auto& [k, v] : node.items())
            out[k] = v.is_string() ? v.get<std::string>() : v.dump();
        return out;
    }

    int64_t bytes(const json& node, const std::string& field) const {
        if (node.is_number_integer()) {
            if (node.get<int64_t>() < 0) fail(field, "must not be negative");
            return node.get<int64_t>();
        }
        if (!node.is_string() && !node.is_number())
            fail(field, "must be a quantity like 128Mi, 1G or a number of bytes");
        try {
            return quantity_bytes(node.is_string() ? node.get<std::string>() : node.dump());
        } catch (const Error& e) {
            fail(field, e.what());
        }
    }
    int64_t millis(const json& node, const std::string& field) const {
        if (!node.is_string() && !node.is_number())
            fail(field, "must be a quantity like 500m, 0.5 or 2");
        try {
            return quantity_millis(node.is_string() ? node.get<std::string>() : node.dump());
        } catch (const Error& e) {
            fail(field, e.what());
        }
    }
};

// ---- strategy ----

runtime::IntOrPercent int_or_percent(const Reader& r, const json& node, const std::string& field,
                                     bool capped) {
    runtime::IntOrPercent v;
    if (node.is_number_integer()) {
        v.value = static_cast<int>(r.integer(node, field, 0));
        return v;
    }
    std::string text = node.is_string() ? node.get<std::string>() : std::string();
    bool ok =
        text.size() >= 2 && text.size() <= 4 && text.back() == '%' &&
        std::all_of(text.begin(), text.end() - 1, [](char c) { return c >= '0' && c <= '9'; });
    if (!ok)
        r.fail(field,
               "must be a count (e.g. 1) or a percentage of the replicas (e.g. \"25%\"), not " +
                   node.dump());
    v.value = std::stoi(text.substr(0, text.size() - 1));
    v.percent = true;
    if (capped && v.value > 100) r.fail(field, "must not be more than 100%");
    return v;
}

void read_max_surge_unavailable(const Reader& r, const json& params, const std::string& field,
                                runtime::RolloutStrategy& s) {
    if (params.contains("maxSurge"))
        s.max_surge = int_or_percent(r, params["maxSurge"], Reader::sub(field, "maxSurge"), false);
    if (params.contains("maxUnavailable"))
        s.max_unavailable =
            int_or_percent(r, params["maxUnavailable"], Reader::sub(field, "maxUnavailable"), true);
    if (s.max_surge.value == 0 && s.max_unavailable.value == 0)
        r.fail(field,
               "maxSurge and maxUnavailable must not both be 0 (no replica could be replaced)");
}

std::chrono::seconds seconds_field(const Reader& r, const json& node, const std::string& key,
                                   const std::string& field, std::chrono::seconds fallback) {
    if (!node.contains(key)) return fallback;
    return std::chrono::seconds(r.integer(node[key], Reader::sub(field, key), 1));
}

void read_openshift_strategy(const Reader& r, const json& strategy, runtime::RolloutStrategy& s) {
    const std::string field = "spec.strategy";
    r.check_fields(strategy, field, {"type", "rollingParams", "recreateParams"},
                   {"resources", "activeDeadlineSeconds", "labels", "annotations"});
    std::string type = strategy.contains("type") ? r.string(strategy["type"], field + ".type")
                                                 : std::string("Rolling");
    if (type == "Rolling") {
        s.type = runtime::RolloutStrategy::Type::Rolling;
    } else if (type == "Recreate") {
        s.type = runtime::RolloutStrategy::Type::Recreate;
    } else {
        r.fail(field + ".type", "\"" + type + "\" is not supported (Rolling, Recreate)");
    }
    if (strategy.contains("rollingParams")) {
        const auto& p = strategy["rollingParams"];
        std::string pf = field + ".rollingParams";
        r.check_fields(p, pf,
                       {"maxSurge", "maxUnavailable", "intervalSeconds", "updatePeriodSeconds",
                        "timeoutSeconds"});
        read_max_surge_unavailable(r, p, pf, s);
        s.interval = seconds_field(r, p, "intervalSeconds", pf,
                                   std::chrono::duration_cast<std::chrono::seconds>(s.interval));
        s.update_period =
            seconds_field(r, p, "updatePeriodSeconds", pf,
                          std::chrono::duration_cast<std::chrono::seconds>(s.update_period));
        s.timeout = seconds_field(r, p, "timeoutSeconds", pf, s.timeout);
    }
    if (strategy.contains("recreateParams")) {
        const auto& p = strategy["recreateParams"];
        std::string pf = field + ".recreateParams";
        r.check_fields(p, pf, {"timeoutSeconds"});
        s.timeout = seconds_field(r, p, "timeoutSeconds", pf, s.timeout);
    }
}

void read_kubernetes_strategy(const Reader& r, const json& spec, runtime::RolloutStrategy& s) {
    // Kubernetes' defaults are OpenShift's (25%, 25%); the deadline is 600 s.
    if (spec.contains("progressDeadlineSeconds"))
        s.timeout = std::chrono::seconds(
            r.integer(spec["progressDeadlineSeconds"], "spec.progressDeadlineSeconds", 1));
    if (!spec.contains("strategy")) return;
    const auto& strategy = spec["strategy"];
    const std::string field = "spec.strategy";
    r.check_fields(strategy, field, {"type", "rollingUpdate"});
    std::string type = strategy.contains("type") ? r.string(strategy["type"], field + ".type")
                                                 : std::string("RollingUpdate");
    if (type == "RollingUpdate") {
        s.type = runtime::RolloutStrategy::Type::Rolling;
    } else if (type == "Recreate") {
        s.type = runtime::RolloutStrategy::Type::Recreate;
        if (strategy.contains("rollingUpdate"))
            r.fail(field + ".rollingUpdate", "may not be set when the type is Recreate");
    } else {
        r.fail(field + ".type", "\"" + type + "\" is not supported (RollingUpdate, Recreate)");
    }
    if (strategy.contains("rollingUpdate")) {
        const auto& p = strategy["rollingUpdate"];
        std::string pf = field + ".rollingUpdate";
        r.check_fields(p, pf, {"maxSurge", "maxUnavailable"});
        read_max_surge_unavailable(r, p, pf, s);
    }
}

// ---- the container ----

// containerPort by name ("http") or number (8080 or "8080").
uint16_t probe_port(const Reader& r, const json& node, const std::string& field,
                    const std::map<std::string, uint16_t>& named) {
    if (node.is_number_integer()) return static_cast<uint16_t>(r.integer(node, field, 1, 65535));
    if (!node.is_string()) r.fail(field, "must be a port number or the name of a container port");
    std::string name = node.get<std::string>();
    if (!name.empty() &&
        std::all_of(name.begin(), name.end(), [](char c) { return c >= '0' && c <= '9'; }) &&
        name.size() <= 5) {
        int port = std::stoi(name);
        if (port >= 1 && port <= 65535) return static_cast<uint16_t>(port);
    }
    auto it = named.find(name);
    if (it == named.end()) {
        std::vector<std::string> names;
        for (const auto& [n, p] : named)
            names.push_back(n);
        r.fail(field, "\"" + name + "\" names no port of the container (named ports: " +
                          (names.empty() ? std::string("none") : joined(names)) + ")");
    }
    return it->second;
}

runtime::ProbeSpec read_probe(const Reader& r, const json& node, const std::string& field,
                              const std::map<std::string, uint16_t>& named, bool single_success) {
    r.check_fields(node, field,
                   {"tcpSocket", "httpGet", "exec", "initialDelaySeconds", "periodSeconds",
                    "timeoutSeconds", "successThreshold", "failureThreshold"});
    runtime::ProbeSpec p;
    std::vector<std::string> handlers;
    for (const char* h : {"tcpSocket", "httpGet", "exec", "grpc"})
        if (node.contains(h)) handlers.push_back(h);
    if (handlers.empty()) r.fail(field, "needs one of tcpSocket, httpGet, exec");
    if (handlers.size() > 1)
        r.fail(field, "has more than one handler (" + joined(handlers) +
                          "); set exactly one of tcpSocket, httpGet, exec");
    if (handlers[0] == "grpc")
        r.fail(field + ".grpc", "is not supported (tcpSocket, httpGet, exec)");
    if (node.contains("tcpSocket")) {
        const auto& t = node["tcpSocket"];
        std::string tf = field + ".tcpSocket";
        r.check_fields(t, tf, {"port"});
        if (!t.contains("port")) r.fail(tf + ".port", "is missing");
        p.kind = runtime::ProbeSpec::Kind::Tcp;
        p.port = probe_port(r, t["port"], tf + ".port", named);
    } else if (node.contains("httpGet")) {
        const auto& h = node["httpGet"];
        std::string hf = field + ".httpGet";
        r.check_fields(h, hf, {"path", "port", "scheme"}, {});
        if (!h.contains("port")) r.fail(hf + ".port", "is missing");
        p.kind = runtime::ProbeSpec::Kind::Http;
        p.port = probe_port(r, h["port"], hf + ".port", named);
        if (h.contains("path")) p.path = r.string(h["path"], hf + ".path");
        if (p.path.empty()) p.path = "/";
        if (p.path[0] != '/') r.fail(hf + ".path", "must start with / (got \"" + p.path + "\")");
        if (h.contains("scheme") && r.string(h["scheme"], hf + ".scheme") != "HTTP")
            r.fail(hf + ".scheme",
                   "\"" + h["scheme"].get<std::string>() + "\" is not supported (HTTP)");
    } else {
        const auto& e = node["exec"];
        std::string ef = field + ".exec";
        r.check_fields(e, ef, {"command"});
        if (!e.contains("command")) r.fail(ef + ".command", "is missing");
        p.kind = runtime::ProbeSpec::Kind::Exec;
        p.command = r.strings(e["command"], ef + ".command");
        if (p.command.empty()) r.fail(ef + ".command", "must not be empty");
    }
    auto secs = [&](const char* key, int64_t min, std::chrono::milliseconds fallback) {
        if (!node.contains(key)) return fallback;
        return std::chrono::milliseconds(r.integer(node[key], Reader::sub(field, key), min) * 1000);
    };
    p.initial_delay = secs("initialDelaySeconds", 0, p.initial_delay);
    p.period = secs("periodSeconds", 1, p.period);
    p.timeout = secs("timeoutSeconds", 1, p.timeout);
    if (node.contains("successThreshold"))
        p.success_threshold =
            static_cast<int>(r.integer(node["successThreshold"], field + ".successThreshold", 1));
    if (node.contains("failureThreshold"))
        p.failure_threshold =
            static_cast<int>(r.integer(node["failureThreshold"], field + ".failureThreshold", 1));
    if (single_success && p.success_threshold != 1)
        r.fail(field + ".successThreshold", "must be 1 for liveness and startup probes");
    return p;
}

void read_resources(const Reader& r, const json& node, const std::string& field,
                    runtime::Resources& res) {
    r.check_fields(node, field, {"limits", "requests"}, {"claims"});
    int64_t memory_request = 0;
    bool cpu_request_set = false;
    if (node.contains("limits")) {
        const auto& l = node["limits"];
        std::string lf = field + ".limits";
        r.check_fields(l, lf, {"memory", "cpu", "pids"});
        if (l.contains("memory")) res.memory_bytes = r.bytes(l["memory"], lf + ".memory");
        if (l.contains("cpu")) res.cpu_millis = r.millis(l["cpu"], lf + ".cpu");
        if (l.contains("pids")) res.pids = r.integer(l["pids"], lf + ".pids", 1, 1 << 22);
        if (l.contains("memory") && res.memory_bytes == 0)
            r.fail(lf + ".memory", "must be more than 0 (leave it out for no limit)");
        if (l.contains("cpu") && res.cpu_millis == 0)
            r.fail(lf + ".cpu", "must be more than 0 (leave it out for no limit)");
    }
    if (node.contains("requests")) {
        const auto& q = node["requests"];
        std::string qf = field + ".requests";
        r.check_fields(q, qf, {"memory", "cpu"});
        if (q.contains("memory")) memory_request = r.bytes(q["memory"], qf + ".memory");
        if (q.contains("cpu")) {
            res.cpu_request_millis = r.millis(q["cpu"], qf + ".cpu");
            cpu_request_set = true;
        }
    }
    if (res.memory_bytes && memory_request > res.memory_bytes)
        r.fail(field + ".requests.memory", "must not be more than limits.memory");
    if (res.cpu_millis && res.cpu_request_millis > res.cpu_millis)
        r.fail(field + ".requests.cpu", "must not be more than limits.cpu");
    // Like Kubernetes: a cpu limit without a request requests the limit.
    if (!cpu_request_set) res.cpu_request_millis = res.cpu_millis;
}

bool valid_volume_name(const std::string& name) {
    if (name.empty() || name.size() > 253) return false;
    auto ok = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
    if (!ok(name[0])) return false;
    return std::all_of(name.begin(), name.end(),
                       [&](char c) { return ok(c) || c == '_' || c == '.' || c == '-'; });
}

// An RFC 1123 label: what a hostname or a port name may be.
bool valid_label(const std::string& name, size_t max) {
    if (name.empty() || name.size() > max) return false;
    auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
    if (!alnum(name.front()) || !alnum(name.back())) return false;
    return std::all_of(name.begin(), name.end(), [&](char c) { return alnum(c) || c == '-'; });
}

// template.spec.volumes by name: the mount without its destination.
std::map<std::string, runtime::VolumeMount> read_volumes(const Reader& r, const json& pod) {
    std::map<std::string, runtime::VolumeMount> out;
    if (!pod.contains("volumes")) return out;
    const std::string field = "spec.template.spec.volumes";
    const auto& vols = r.list(pod["volumes"], field);
    for (size_t i = 0; i < vols.size(); i++) {
        const auto& v = vols[i];
        std::string vf = Reader::at(field, i);
        r.object(v, vf);
        if (!v.contains("name")) r.fail(vf + ".name", "is missing");
        std::string name = r.string(v["name"], vf + ".name");
        if (out.count(name)) r.fail(vf + ".name", "\"" + name + "\" is declared twice");
        std::vector<std::string> sources;
        for (const auto& [key, value] : v.items())
            if (key != "name") sources.push_back(key);
        if (sources.size() != 1)
            r.fail(vf,
                   "needs exactly one volume source (persistentVolumeClaim, hostPath, "
                   "emptyDir)" +
                       (sources.empty() ? std::string() : ", has " + joined(sources)));
        runtime::VolumeMount m;
        const std::string& kind = sources[0];
        const auto& src = v[kind];
        std::string sf = vf + "." + kind;
        if (kind == "persistentVolumeClaim") {
            r.check_fields(src, sf, {"claimName", "readOnly"});
            if (!src.contains("claimName")) r.fail(sf + ".claimName", "is missing");
            m.kind = runtime::VolumeMount::Kind::Named;
            m.source = r.string(src["claimName"], sf + ".claimName");
            if (!valid_volume_name(m.source))
                r.fail(sf + ".claimName",
                       "\"" + m.source +
                           "\" is not a volume name (lower case letters, digits, '_', '.', '-'; "
                           "starting with a letter or digit)");
            if (src.contains("readOnly")) m.readonly = r.boolean(src["readOnly"], sf + ".readOnly");
        } else if (kind == "hostPath") {
            r.check_fields(src, sf, {"path", "type"});
            if (!src.contains("path")) r.fail(sf + ".path", "is missing");
            m.kind = runtime::VolumeMount::Kind::Host;
            m.source = r.string(src["path"], sf + ".path");
            if (m.source.empty() || m.source[0] != '/')
                r.fail(sf + ".path", "must be an absolute path (got \"" + m.source + "\")");
            if (src.contains("type")) {
                std::string type = r.string(src["type"], sf + ".type");
                if (type.find("OrCreate") != std::string::npos)
                    r.warn(sf + ".type",
                           "\"" + type + "\": the host path is not created; it must exist");
            }
        } else if (kind == "emptyDir") {
            if (src.is_null()) {  // `emptyDir:` with nothing after it
                m.kind = runtime::VolumeMount::Kind::Empty;
            } else {
                r.check_fields(src, sf, {"medium", "sizeLimit"});
                std::string medium =
                    src.contains("medium") ? r.string(src["medium"], sf + ".medium") : "";
                if (medium == "Memory") {
                    m.kind = runtime::VolumeMount::Kind::Tmpfs;
                    if (src.contains("sizeLimit"))
                        m.size_bytes = r.bytes(src["sizeLimit"], sf + ".sizeLimit");
                } else if (medium.empty()) {
                    m.kind = runtime::VolumeMount::Kind::Empty;
                    if (src.contains("sizeLimit"))
                        r.warn(sf + ".sizeLimit",
                               "is only enforced with medium: Memory (a tmpfs); ignored");
                } else {
                    r.fail(sf + ".medium", "\"" + medium + "\" is not supported (\"\", Memory)");
                }
            }
        } else {
            r.fail(sf,
                   "is not a supported volume source (persistentVolumeClaim, hostPath, "
                   "emptyDir)");
        }
        out[name] = m;
    }
    return out;
}

void read_volume_mounts(const Reader& r, const json& c, const std::string& field,
                        const std::map<std::string, runtime::VolumeMount>& volumes,
                        std::vector<runtime::VolumeMount>& out) {
    std::set<std::string> used;
    if (c.contains("volumeMounts")) {
        std::string mf = field + ".volumeMounts";
        const auto& mounts = r.list(c["volumeMounts"], mf);
        std::set<std::string> destinations;
        for (size_t i = 0; i < mounts.size(); i++) {
            const auto& m = mounts[i];
            std::string f = Reader::at(mf, i);
            r.check_fields(m, f, {"name", "mountPath", "readOnly"});
            if (m.contains("subPath") || m.contains("subPathExpr"))
                r.fail(f + ".subPath", "is not supported: mount the whole volume");
            if (!m.contains("name")) r.fail(f + ".name", "is missing");
            if (!m.contains("mountPath")) r.fail(f + ".mountPath", "is missing");
            std::string name = r.string(m["name"], f + ".name");
            auto it = volumes.find(name);
            if (it == volumes.end()) {
                std::vector<std::string> names;
                for (const auto& [n, v] : volumes)
                    names.push_back(n);
                r.fail(f + ".name",
                       "\"" + name + "\" is not in spec.template.spec.volumes (declared: " +
                           (names.empty() ? std::string("none") : joined(names)) + ")");
            }
            runtime::VolumeMount vm = it->second;
            vm.destination = r.string(m["mountPath"], f + ".mountPath");
            if (vm.destination.empty() || vm.destination[0] != '/')
                r.fail(f + ".mountPath",
                       "must be an absolute path (got \"" + vm.destination + "\")");
            while (vm.destination.size() > 1 && vm.destination.back() == '/')
                vm.destination.pop_back();
            if (!destinations.insert(vm.destination).second)
                r.fail(f + ".mountPath", "\"" + vm.destination + "\" is mounted twice");
            if (m.contains("readOnly") && r.boolean(m["readOnly"], f + ".readOnly"))
                vm.readonly = true;
            used.insert(name);
            out.push_back(vm);
        }
    }
    for (const auto& [name, v] : volumes)
        if (!used.count(name))
            r.warn("spec.template.spec.volumes \"" + name + "\"",
                   "is not mounted by the container (volumeMounts); ignored");
}

// securityContext of the pod (`pod`) and of the container: user, read-only root.
void read_security(const Reader& r, const json& pod, const json& c, const std::string& field,
                   runtime::DeploymentSpec& spec) {
    std::optional<int64_t> uid, gid;
    if (pod.contains("securityContext")) {
        const auto& s = pod["securityContext"];
        std::string sf = "spec.template.spec.securityContext";
        r.check_fields(s, sf, {"runAsUser", "runAsGroup", "runAsNonRoot"});
        if (s.contains("runAsUser")) uid = r.integer(s["runAsUser"], sf + ".runAsUser", 0);
        if (s.contains("runAsGroup")) gid = r.integer(s["runAsGroup"], sf + ".runAsGroup", 0);
        if (s.contains("runAsNonRoot") && r.boolean(s["runAsNonRoot"], sf + ".runAsNonRoot") &&
            uid == int64_t{0})
            r.fail(sf + ".runAsNonRoot", "is true but runAsUser is 0");
    }
    if (c.contains("securityContext")) {
        const auto& s = c["securityContext"];
        std::string sf = field + ".securityContext";
        r.check_fields(s, sf,
                       {"readOnlyRootFilesystem", "runAsUser", "runAsGroup", "runAsNonRoot",
                        "allowPrivilegeEscalation", "privileged"});
        if (s.contains("privileged") && r.boolean(s["privileged"], sf + ".privileged"))
            r.fail(sf + ".privileged",
                   "true is not supported (replicas run with a default capability set)");
        if (s.contains("allowPrivilegeEscalation") &&
            r.boolean(s["allowPrivilegeEscalation"], sf + ".allowPrivilegeEscalation"))
            r.warn(sf + ".allowPrivilegeEscalation",
                   "true is ignored: replicas always run with no_new_privs");
        if (s.contains("readOnlyRootFilesystem"))
            spec.readonly_rootfs =
                r.boolean(s["readOnlyRootFilesystem"], sf + ".readOnlyRootFilesystem");
        if (s.contains("runAsUser")) uid = r.integer(s["runAsUser"], sf + ".runAsUser", 0);
        if (s.contains("runAsGroup")) gid = r.integer(s["runAsGroup"], sf + ".runAsGroup", 0);
        if (s.contains("runAsNonRoot") && r.boolean(s["runAsNonRoot"], sf + ".runAsNonRoot") &&
            uid == int64_t{0})
            r.fail(sf + ".runAsNonRoot", "is true but runAsUser is 0");
    }
    if (uid) {
        spec.user = std::to_string(*uid);
        if (gid) spec.user += ":" + std::to_string(*gid);
    } else if (gid) {
        r.warn(field + ".securityContext.runAsGroup",
               "without runAsUser is ignored (the image's user and group are used)");
    }
}

void read_container(const Reader& r, const json& pod, runtime::DeploymentSpec& spec) {
    const std::string field = "spec.template.spec.containers[0]";
    const auto& c = pod["containers"][0];
    r.check_fields(
        c, field,
        {"name", "image", "command", "args", "workingDir", "env", "ports", "readinessProbe",
         "livenessProbe", "startupProbe", "resources", "volumeMounts", "securityContext"},
        {"imagePullPolicy", "terminationMessagePath", "terminationMessagePolicy"});
    if (c.contains("envFrom"))
        r.fail(field + ".envFrom", "is not supported: set env[] entries with a value");
    if (c.contains("command")) spec.command = r.strings(c["command"], field + ".command");
    if (c.contains("args")) spec.args = r.strings(c["args"], field + ".args");
    if (c.contains("workingDir")) {
        spec.working_dir = r.string(c["workingDir"], field + ".workingDir");
        if (!spec.working_dir.empty() && spec.working_dir[0] != '/')
            r.fail(field + ".workingDir",
                   "must be an absolute path (got \"" + spec.working_dir + "\")");
    }
    if (c.contains("env")) {
        std::string ef = field + ".env";
        const auto& env = r.list(c["env"], ef);
        for (size_t i = 0; i < env.size(); i++) {
            std::string f = Reader::at(ef, i);
            r.object(env[i], f);
            if (env[i].contains("valueFrom"))
                r.fail(f + ".valueFrom",
                       "is not supported (configMapKeyRef, secretKeyRef, fieldRef need a "
                       "cluster): set value");
            r.check_fields(env[i], f, {"name", "value"});
            if (!env[i].contains("name")) r.fail(f + ".name", "is missing");
            std::string name = r.string(env[i]["name"], f + ".name");
            if (name.empty() || name.find('=') != std::string::npos)
                r.fail(f + ".name", "\"" + name + "\" is not a variable name");
            std::string value;
            if (env[i].contains("value")) {
                const auto& v = env[i]["value"];
                value = v.is_string() ? v.get<std::string>() : v.is_null() ? "" : v.dump();
            }
            spec.env.push_back(name + "=" + value);
        }
    }
    std::map<std::string, uint16_t> named;
    if (c.contains("ports")) {
        std::string pf = field + ".ports";
        const auto& ports = r.list(c["ports"], pf);
        for (size_t i = 0; i < ports.size(); i++) {
            std::string f = Reader::at(pf, i);
            r.check_fields(ports[i], f, {"containerPort", "name", "protocol"},
                           {"hostPort", "hostIP"});
            if (!ports[i].contains("containerPort")) r.fail(f + ".containerPort", "is missing");
            auto port = static_cast<uint16_t>(
                r.integer(ports[i]["containerPort"], f + ".containerPort", 1, 65535));
            if (ports[i].contains("protocol")) {
                std::string proto = r.string(ports[i]["protocol"], f + ".protocol");
                if (proto != "TCP")
                    r.warn(f + ".protocol", "\"" + proto +
                                                "\": only TCP is routed; probes and "
                                                "routes use TCP");
            }
            if (ports[i].contains("name")) {
                std::string name = r.string(ports[i]["name"], f + ".name");
                if (!valid_label(name, 15))
                    r.fail(f + ".name", "\"" + name +
                                            "\" is not a port name (up to 15 lower case letters, "
                                            "digits and '-')");
                if (!named.emplace(name, port).second)
                    r.fail(f + ".name", "\"" + name + "\" names two ports");
            }
            if (std::find(spec.ports.begin(), spec.ports.end(), port) != spec.ports.end())
                r.fail(f + ".containerPort", std::to_string(port) + " is declared twice");
            spec.ports.push_back(port);
        }
    }
    if (!spec.ports.empty()) spec.container_port = spec.ports[0];
    if (c.contains("readinessProbe"))
        spec.readiness =
            read_probe(r, c["readinessProbe"], field + ".readinessProbe", named, false);
    if (c.contains("livenessProbe"))
        spec.liveness = read_probe(r, c["livenessProbe"], field + ".livenessProbe", named, true);
    if (c.contains("startupProbe"))
        spec.startup = read_probe(r, c["startupProbe"], field + ".startupProbe", named, true);
    if (spec.ports.empty() && !spec.readiness.set())
        r.fail(field + ".ports[0].containerPort",
               "is missing (the port that tells when a replica is ready, and that routes "
               "forward to); declare ports[], or a readinessProbe for a replica without one");
    if (c.contains("resources"))
        read_resources(r, c["resources"], field + ".resources", spec.resources);
    auto volumes = read_volumes(r, pod);
    read_volume_mounts(r, c, field, volumes, spec.volumes);
    read_security(r, pod, c, field, spec);
}

void read_pod(const Reader& r, const json& tmpl, runtime::DeploymentSpec& spec) {
    r.check_fields(tmpl, "spec.template", {"metadata", "spec"});
    if (!tmpl.contains("spec")) r.fail("spec.template.spec", "is missing");
    // Opt-in: the seccomp filter also admits 32-bit syscalls (runtime/seccomp.hpp).
    if (auto p = "/metadata/annotations/cascade.io~1seccomp-compat-arches"_json_pointer;
        tmpl.contains(p)) {
        auto v = r.string(tmpl[p],
                          "spec.template.metadata.annotations[cascade.io/"
                          "seccomp-compat-arches]");
        if (v != "true" && v != "false")
            r.fail("spec.template.metadata.annotations[cascade.io/seccomp-compat-arches]",
                   "is \"" + v + "\"; use \"true\" or \"false\"");
        spec.seccomp_compat_arches = v == "true";
    }
    const auto& pod = tmpl["spec"];
    const std::string field = "spec.template.spec";
    r.check_fields(pod, field,
                   {"containers", "volumes", "restartPolicy", "hostname",
                    "terminationGracePeriodSeconds", "securityContext"},
                   {"dnsPolicy", "schedulerName"});
    if (pod.contains("initContainers") && !pod["initContainers"].empty())
        r.fail(field + ".initContainers", "are not supported (one container per pod)");
    if (!pod.contains("containers")) r.fail(field + ".containers", "is missing");
    const auto& containers = r.list(pod["containers"], field + ".containers");
    if (containers.empty()) r.fail(field + ".containers", "needs one container");
    if (containers.size() > 1)
        r.fail(field + ".containers",
               "has " + std::to_string(containers.size()) +
                   " containers; only one container per pod is supported for now");
    read_container(r, pod, spec);
    if (pod.contains("restartPolicy")) {
        std::string p = r.string(pod["restartPolicy"], field + ".restartPolicy");
        if (p == "Always")
            spec.restart_policy = runtime::RestartPolicy::Always;
        else if (p == "OnFailure")
            spec.restart_policy = runtime::RestartPolicy::OnFailure;
        else if (p == "Never")
            spec.restart_policy = runtime::RestartPolicy::Never;
        else
            r.fail(field + ".restartPolicy",
                   "\"" + p + "\" is not supported (Always, OnFailure, Never)");
    }
    if (pod.contains("hostname")) {
        spec.hostname = r.string(pod["hostname"], field + ".hostname");
        if (!valid_label(spec.hostname, 63))
            r.fail(field + ".hostname", "\"" + spec.hostname +
                                            "\" is not a host name (up to 63 lower case letters, "
                                            "digits and '-')");
    }
    if (pod.contains("terminationGracePeriodSeconds"))
        spec.stop_grace = std::chrono::seconds(r.integer(
            pod["terminationGracePeriodSeconds"], field + ".terminationGracePeriodSeconds", 0));
}

// selector (a map for DeploymentConfig, matchLabels for Deployment) must
// select the template's labels.
void check_selector(const Reader& r, const std::map<std::string, std::string>& selector,
                    const std::string& field, const json& tmpl) {
    std::map<std::string, std::string> labels;
    if (tmpl.contains("/metadata/labels"_json_pointer))
        labels = r.string_map(tmpl["metadata"]["labels"], "spec.template.metadata.labels");
    for (const auto& [k, v] : selector) {
        auto it = labels.find(k);
        if (it == labels.end() || it->second != v)
            r.fail(field, "does not select the template: spec.template.metadata.labels needs " + k +
                              ": " + v);
    }
}

}  // namespace

int64_t quantity_bytes(const std::string& text) {
    return parse_quantity(text, 0);
}

int64_t quantity_millis(const std::string& text) {
    return parse_quantity(text, 3);
}

void read_deployment_fields(const json& obj, runtime::DeploymentSpec& spec,
                            std::vector<std::string>* warnings) {
    std::string kind = obj.value("kind", "");
    Reader r{kind + " \"" + obj.value("/metadata/name"_json_pointer, std::string("?")) + "\"",
             warnings};
    bool kubernetes = kind == "Deployment";
    if (!obj.contains("spec")) r.fail("spec", "is missing");
    const auto& s = obj["spec"];
    if (kubernetes)
        r.check_fields(
            s, "spec",
            {"replicas", "selector", "template", "strategy", "paused", "progressDeadlineSeconds"},
            {"revisionHistoryLimit"});
    else
        r.check_fields(s, "spec",
                       {"replicas", "selector", "template", "strategy", "triggers", "paused"},
                       {"revisionHistoryLimit", "test"});
    if (s.contains("replicas"))
        spec.replicas = static_cast<int>(r.integer(s["replicas"], "spec.replicas", 0));
    if (s.contains("paused")) r.boolean(s["paused"], "spec.paused");
    if (!s.contains("template")) r.fail("spec.template", "is missing");
    const auto& tmpl = s["template"];
    r.object(tmpl, "spec.template");
    if (kubernetes) {
        if (!s.contains("selector"))
            r.fail("spec.selector", "is missing (apps/v1 needs selector.matchLabels)");
        r.check_fields(s["selector"], "spec.selector", {"matchLabels"});
        if (!s["selector"].contains("matchLabels"))
            r.fail("spec.selector.matchLabels", "is missing");
        check_selector(r, r.string_map(s["selector"]["matchLabels"], "spec.selector.matchLabels"),
                       "spec.selector.matchLabels", tmpl);
        read_kubernetes_strategy(r, s, spec.strategy);
    } else {
        if (s.contains("selector"))
            check_selector(r, r.string_map(s["selector"], "spec.selector"), "spec.selector", tmpl);
        if (s.contains("strategy")) read_openshift_strategy(r, s["strategy"], spec.strategy);
    }
    read_pod(r, tmpl, spec);
    if (obj.contains("/metadata/labels"_json_pointer))
        spec.labels = r.string_map(obj["metadata"]["labels"], "metadata.labels");
}

}  // namespace cascade::cli
