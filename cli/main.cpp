// cascade — the command line. `cascade serve` runs the daemon; every other
// command is a thin client of the daemon's HTTP API (--host / CASCADE_HOST).
#include <fcntl.h>
#include <httplib.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdlib>
#include <functional>
#include <iomanip>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include "cli/daemon.hpp"
#include "cli/objects.hpp"
#include "oci/error.hpp"

using nlohmann::json;

namespace cascade::cli {
namespace {

const char* kDefaultHost = "http://127.0.0.1:5000";

struct Global {
    std::string host;
};

// How every command reaches the daemon besides its URL (global options or
// CASCADE_USERNAME / CASCADE_PASSWORD / CASCADE_CA_CERT): Basic credentials
// and the CA file that signed the daemon's certificate (default: the system's).
struct Connection {
    std::string username;
    std::string password;
    std::string ca_cert;
};
Connection connection;

// The one place the CLI makes an HTTP(S) client of the daemon.
std::unique_ptr<httplib::Client> client_for(const std::string& host) {
    auto c = std::make_unique<httplib::Client>(host);
    if (host.rfind("https://", 0) == 0) {
        c->enable_server_certificate_verification(true);
        if (!connection.ca_cert.empty()) c->set_ca_cert_path(connection.ca_cert);
    }
    if (!connection.username.empty() || !connection.password.empty())
        c->set_basic_auth(connection.username, connection.password);
    c->set_connection_timeout(5);
    c->set_read_timeout(3600);
    c->set_write_timeout(60);
    return c;
}

[[noreturn]] void unreachable_daemon(const std::string& host, const httplib::Error& err) {
    std::string what =
        "cannot reach the cascade daemon at " + host + " (" + httplib::to_string(err) + "); ";
    if (err == httplib::Error::SSLServerVerification)
        throw Error(what +
                    "its TLS certificate is not trusted: pass --ca-cert FILE (or set "
                    "CASCADE_CA_CERT) with the certificate of the CA that signed it");
    if (err == httplib::Error::SSLConnection || err == httplib::Error::SSLLoadingCerts)
        throw Error(what +
                    "the TLS handshake failed: check that the daemon serves https and "
                    "that --ca-cert / CASCADE_CA_CERT names a PEM file");
    if (host.rfind("http://", 0) == 0 &&
        (err == httplib::Error::Read || err == httplib::Error::Write))
        throw Error(what +
                    "if the daemon serves TLS, use an https:// URL in --host / CASCADE_HOST");
    throw Error(what + "start it with `cascade serve`, or point --host / CASCADE_HOST at it");
}

json checked_json(const std::string& host, const httplib::Result& res) {
    if (!res) unreachable_daemon(host, res.error());
    json body;
    try {
        body = json::parse(res->body);
    } catch (const json::exception&) {
        throw Error("the daemon at " + host + " answered " + std::to_string(res->status) +
                    " with a body that is not JSON");
    }
    if (res->status >= 400) throw Error(body.value("message", res->body));
    return body;
}

json api_get(const Global& g, const std::string& path) {
    auto c = client_for(g.host);
    return checked_json(g.host, c->Get(path));
}

json api_post(const Global& g, const std::string& path, const json& body) {
    auto c = client_for(g.host);
    return checked_json(g.host, c->Post(path, body.dump(), "application/json"));
}

bool daemon_answers(const std::string& host) {
    auto c = client_for(host);
    c->set_connection_timeout(1);
    c->set_read_timeout(2);
    auto res = c->Get("/v2/");
    return res && (res->status == 200 || res->status == 401);  // 401: it asks for a login
}

std::string short_digest(const std::string& d) {
    auto colon = d.find(':');
    return colon == std::string::npos ? d : d.substr(colon + 1, 12);
}

void print_table(const std::vector<std::vector<std::string>>& rows) {
    if (rows.empty()) return;
    std::vector<size_t> width(rows[0].size(), 0);
    for (const auto& r : rows)
        for (size_t i = 0; i < r.size() && i < width.size(); i++)
            width[i] = std::max(width[i], r[i].size());
    for (const auto& r : rows) {
        std::string line;
        for (size_t i = 0; i < r.size(); i++) {
            line += r[i];
            if (i + 1 < r.size()) line += std::string(width[i] - r[i].size() + 3, ' ');
        }
        std::cout << line << "\n";
    }
}

std::string age(const std::string& rfc3339) {
    if (rfc3339.empty()) return "";
    std::tm tm{};
    strptime(rfc3339.c_str(), "%Y-%m-%dT%H:%M:%SZ", &tm);
    auto secs = static_cast<long>(std::time(nullptr) - timegm(&tm));
    if (secs < 120) return std::to_string(secs) + "s";
    if (secs < 7200) return std::to_string(secs / 60) + "m";
    if (secs < 172800) return std::to_string(secs / 3600) + "h";
    return std::to_string(secs / 86400) + "d";
}

std::string duration_of(const json& status) {
    if (!status.contains("duration")) return "";
    auto secs = status["duration"].get<int64_t>() / 1000000000.0;
    std::ostringstream s;
    s << std::fixed << std::setprecision(1) << secs << "s";
    return s.str();
}

void print_objects(const std::string& kind, const std::vector<json>& items, bool wide) {
    std::vector<std::vector<std::string>> rows;
    if (kind == "imagestreams") {
        rows.push_back({"NAME", "TAG", "GENERATION", "DIGEST", "UPDATED", "CAUSE"});
        for (const auto& is : items) {
            auto name = is["metadata"]["name"].get<std::string>();
            const auto& tags = is["status"]["tags"];
            if (tags.empty()) rows.push_back({name, "", "", "", "", ""});
            for (const auto& t : tags) {
                const auto& newest = t["items"][0];
                std::string digest = newest["image"];
                rows.push_back({name, t["tag"], std::to_string(newest["generation"].get<int64_t>()),
                                wide ? digest : short_digest(digest), age(newest["created"]),
                                newest["cause"]});
            }
        }
    } else if (kind == "buildconfigs") {
        rows.push_back({"NAME", "FROM", "OUTPUT", "LATEST"});
        for (const auto& bc : items)
            rows.push_back(
                {bc["metadata"]["name"],
                 bc["status"]["from"].get<std::string>().empty() ? "scratch" : bc["status"]["from"],
                 bc["status"]["output"],
                 std::to_string(bc["status"]["lastVersion"].get<int64_t>())});
    } else if (kind == "builds") {
        rows.push_back({"NAME", "STATUS", "DIGEST", "BASE", "DURATION", "CAUSE"});
        for (const auto& b : items) {
            const auto& st = b["status"];
            std::string digest = st["output"]["to"]["imageDigest"];
            std::string base = st["base"]["name"];
            if (!st["base"]["digest"].get<std::string>().empty())
                base += "@" + (wide ? st["base"]["digest"].get<std::string>()
                                    : short_digest(st["base"]["digest"]));
            std::string phase = st["phase"];
            if (phase == "Complete" && !st.value("tagMoved", true)) phase += " (unchanged)";
            rows.push_back({b["metadata"]["name"], phase, wide ? digest : short_digest(digest),
                            base, duration_of(st), b["spec"]["triggeredBy"][0]["message"]});
        }
    } else if (kind == "deployments") {
        std::vector<std::string> head{"NAME",     "READY",  "UP-TO-DATE", "AVAILABLE",
                                      "REVISION", "DIGEST", "PHASE",      "AGE"};
        if (wide) head.insert(head.begin() + 5, "IMAGE");
        rows.push_back(head);
        for (const auto& d : items) {
            const auto& st = d["status"];
            std::string digest = st["imageDigest"];
            int desired = st.value("desiredReplicas", d.value("/spec/replicas"_json_pointer, 1));
            std::string message = st.value("message", "");
            std::vector<std::string> row{
                d["metadata"]["name"],
                std::to_string(st["readyReplicas"].get<int>()) + "/" + std::to_string(desired),
                std::to_string(st.value("updatedReplicas", 0)),
                std::to_string(st["readyReplicas"].get<int>()),
                std::to_string(st["latestVersion"].get<int>()),
                wide ? digest : short_digest(digest),
                st["phase"].get<std::string>() + (message.empty() ? "" : " (" + message + ")"),
                age(d.value("/metadata/creationTimestamp"_json_pointer, std::string()))};
            if (wide) row.insert(row.begin() + 5, st["image"].get<std::string>());
            rows.push_back(row);
        }
    } else if (kind == "routes") {
        rows.push_back({"NAME", "HOST/PORT", "URL", "SERVICES"});
        for (const auto& r : items) {
            const auto& st = r["status"];
            std::string url = st.value("hostnameUrl", "");
            std::string port_url = st.value("url", "");
            std::string host_port = port_url;
            if (host_port.rfind("http://", 0) == 0) host_port = host_port.substr(7);
            if (!host_port.empty() && host_port.back() == '/') host_port.pop_back();
            rows.push_back({r["metadata"]["name"], host_port, url.empty() ? port_url : url,
                            r.value("/spec/to/name"_json_pointer, std::string())});
        }
    }
    print_table(rows);
}

// The table an object's kind is printed in (the daemon resolves aliases).
std::string resource_of(const json& obj) {
    static const std::map<std::string, std::string> resources = {
        {"ImageStream", "imagestreams"},     {"BuildConfig", "buildconfigs"}, {"Build", "builds"},
        {"DeploymentConfig", "deployments"}, {"Deployment", "deployments"},   {"Route", "routes"}};
    auto it = resources.find(obj.value("kind", ""));
    return it == resources.end() ? obj.value("kind", "") : it->second;
}

std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), ::tolower);
    return s;
}

int cmd_get(const Global& g, std::string kind, std::string name, const std::string& output) {
    auto slash = kind.find('/');
    if (name.empty() && slash != std::string::npos) {  // kubectl's KIND/NAME
        name = kind.substr(slash + 1);
        kind = kind.substr(0, slash);
    }
    if (!name.empty()) {
        auto obj = api_get(g, "/api/v1/" + kind + "/" + name);
        if (output == "json") {
            std::cout << obj.dump(2) << "\n";
        } else if (output == "name") {
            std::cout << lower(obj["kind"]) << "/" << obj["metadata"]["name"].get<std::string>()
                      << "\n";
        } else {
            print_objects(resource_of(obj), {obj}, output == "wide");
        }
        return 0;
    }
    auto list = api_get(g, "/api/v1/" + kind);
    if (output == "json") {
        std::cout << list.dump(2) << "\n";
    } else if (output == "name") {
        for (const auto& item : list["items"])
            std::cout << lower(item["kind"]) << "/" << item["metadata"]["name"].get<std::string>()
                      << "\n";
    } else if (list["items"].empty()) {
        std::cerr << "No " << list.value("resource", kind) << " found.\n";
    } else {
        print_objects(list.value("resource", kind), list["items"].get<std::vector<json>>(),
                      output == "wide");
    }
    return 0;
}

// The daemon's warnings about applied objects (fields it ignores), like kubectl's.
void print_warnings(const json& res) {
    for (const auto& w : res.value("warnings", json::array()))
        std::cerr << "Warning: " << w.get<std::string>() << "\n";
}

int cmd_apply(const Global& g, const std::string& file) {
    auto objects = load_objects(file);
    auto res = api_post(g, "/api/v1/apply", {{"items", objects}});
    print_warnings(res);
    for (const auto& r : res["results"]) {
        std::cout << lower(r["kind"]) << "/" << r["name"].get<std::string>() << " "
                  << r["result"].get<std::string>() << "\n";
    }
    return 0;
}

// Streams a chunked response to stdout; returns the @@result JSON if any.
// The receiving side of a streamed answer: an error status's body is kept for
// the error message; otherwise the data goes to the command, whole lines at a
// time with `lines` (which returns false to stop).
struct StreamedAnswer {
    int status = 0;
    std::string error_body;
    std::string pending;

    bool on_response(const httplib::Response& r) {
        status = r.status;
        return true;
    }
    bool failed(const char* data, size_t len) {
        if (status < 400) return false;
        error_body.append(data, len);
        return true;
    }
    bool lines(const char* data, size_t len, const std::function<bool(const std::string&)>& fn) {
        if (failed(data, len)) return true;
        pending.append(data, len);
        size_t nl;
        while ((nl = pending.find('\n')) != std::string::npos) {
            std::string line = pending.substr(0, nl);
            pending.erase(0, nl + 1);
            if (!fn(line)) return false;
        }
        return true;
    }
    void throw_if_failed() const {
        if (status < 400) return;
        json err = json::parse(error_body, nullptr, false);
        throw Error(err.is_object() ? err.value("message", error_body) : error_body);
    }
};

// --secret id=ID,src=PATH (docker/buildx syntax; also source=, type=file) →
// {"ID": "/abs/PATH"}: the daemon reads the file for RUN --mount=type=secret.
json secret_flags(const std::vector<std::string>& secrets) {
    json out = json::object();
    for (const auto& spec : secrets) {
        std::string id, src;
        std::stringstream fields(spec);
        for (std::string field; std::getline(fields, field, ',');) {
            auto eq = field.find('=');
            auto key = field.substr(0, eq);
            auto value = eq == std::string::npos ? std::string() : field.substr(eq + 1);
            if (key == "id")
                id = value;
            else if (key == "src" || key == "source")
                src = value;
            else if (key != "type" || value != "file")
                throw Error("--secret " + spec + ": unknown field \"" + field +
                            "\"; expected id=ID,src=PATH");
        }
        if (id.empty() || src.empty())
            throw Error("--secret " + spec + ": expected id=ID,src=PATH");
        auto path = std::filesystem::absolute(src);
        if (!std::filesystem::is_regular_file(path))
            throw Error("--secret " + spec + ": " + path.string() + " is not a file");
        out[id] = path.string();
    }
    return out;
}

int cmd_build(const Global& g, const std::string& tag, const std::string& file,
              const std::vector<std::string>& build_args, const std::string& target, bool no_cache,
              const std::string& network, const std::string& context,
              const std::vector<std::string>& secrets = {}) {
    if (tag.empty()) throw Error("cascade build: -t NAME:TAG is required");
    auto ctx = std::filesystem::absolute(context);
    if (!std::filesystem::is_directory(ctx))
        throw Error("build context " + ctx.string() + " is not a directory");
    json args = json::object();
    for (const auto& a : build_args) {
        auto eq = a.find('=');
        if (eq == std::string::npos) {
            const char* v = std::getenv(a.c_str());  // docker: --build-arg NAME takes it from env
            if (v) args[a] = v;
        } else {
            args[a.substr(0, eq)] = a.substr(eq + 1);
        }
    }
    std::string dockerfile = "Dockerfile";
    if (!file.empty()) dockerfile = std::filesystem::absolute(file).string();
    json body = {{"context", ctx.string()}, {"dockerfile", dockerfile}, {"tag", tag},
                 {"buildArgs", args},       {"target", target},         {"noCache", no_cache},
                 {"network", network}};
    if (!secrets.empty()) body["secrets"] = secret_flags(secrets);
    auto c = client_for(g.host);
    json result;
    httplib::Request req;
    req.method = "POST";
    req.path = "/api/v1/build";
    req.body = body.dump();
    req.set_header("Content-Type", "application/json");
    StreamedAnswer answer;
    req.response_handler = [&](const httplib::Response& r) { return answer.on_response(r); };
    req.content_receiver = [&](const char* data, size_t len, uint64_t, uint64_t) {
        return answer.lines(data, len, [&](const std::string& line) {
            if (line.rfind("@@result ", 0) == 0)
                result = json::parse(line.substr(9));
            else
                std::cout << line << "\n" << std::flush;
            return true;
        });
    };
    auto res = c->send(req);
    if (!res) unreachable_daemon(g.host, res.error());
    answer.throw_if_failed();
    if (result.is_null()) throw Error("the daemon ended the build stream without a result");
    if (!result["ok"].get<bool>()) throw Error(result["error"].get<std::string>());
    std::cout << "--> " << result["image"].get<std::string>() << " "
              << result["digest"].get<std::string>()
              << (result["tagMoved"].get<bool>() ? "" : " (unchanged: tag not moved)") << "\n";
    return 0;
}

// GETs `path` and copies the body to stdout as it arrives; an error answer's
// body is kept in the result instead.
StreamedAnswer stream_to_stdout(const Global& g, const std::string& path) {
    auto c = client_for(g.host);
    StreamedAnswer answer;
    auto res = c->Get(
        path, [&](const httplib::Response& r) { return answer.on_response(r); },
        [&](const char* data, size_t len) {
            if (!answer.failed(data, len))
                std::cout.write(data, static_cast<std::streamsize>(len)).flush();
            return true;
        });
    if (!res) unreachable_daemon(g.host, res.error());
    return answer;
}

// Streams a build's log; returns when the build ended (follow) or at EOF.
void stream_build_log(const Global& g, const std::string& build, bool follow) {
    stream_to_stdout(g, "/api/v1/builds/" + build + "/log" + (follow ? "?follow=true" : ""))
        .throw_if_failed();
}

int wait_build(const Global& g, const std::string& build) {
    while (true) {
        auto b = api_get(g, "/api/v1/builds/" + build);
        std::string phase = b["status"]["phase"];
        if (phase == "Complete") return 0;
        if (phase == "Failed" || phase == "Cancelled") {
            std::cerr << "build " << build << (phase == "Failed" ? " failed: " : " cancelled: ")
                      << b["status"]["message"].get<std::string>() << "\n";
            return 1;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
    }
}

int cmd_start_build(const Global& g, const std::string& name, bool follow, bool wait) {
    auto b = api_post(g, "/api/v1/buildconfigs/" + name + "/instantiate", json::object());
    std::string build = b["metadata"]["name"];
    std::cout << "build/" << build << " started\n" << std::flush;
    if (follow) stream_build_log(g, build, true);
    if (follow || wait) return wait_build(g, build);
    return 0;
}

struct LogOptions {
    bool follow = false;
    bool previous = false;
    std::optional<int> replica;
    std::optional<int> tail;
};

// A deployment replica's log; false (nothing printed) when the daemon knows no
// such deployment.
bool stream_deployment_log(const Global& g, const std::string& name, const LogOptions& o,
                           bool fallback_allowed) {
    std::string path = "/api/v1/deployments/" + name +
                       "/log?follow=" + (o.follow ? "true" : "false") +
                       (o.previous ? "&previous=true" : "");
    if (o.replica) path += "&replica=" + std::to_string(*o.replica);
    if (o.tail) path += "&tail=" + std::to_string(*o.tail);
    auto answer = stream_to_stdout(g, path);
    if (fallback_allowed && answer.status == 404 &&
        answer.error_body.find("not found; `cascade get deployments`") != std::string::npos)
        return false;
    answer.throw_if_failed();
    return true;
}

// `logs build/NAME-N` (a build), `logs [deployment/]NAME` (a replica of a
// deployment); a bare NAME-N that is no deployment is taken as a build.
int cmd_logs(const Global& g, std::string target, const LogOptions& o) {
    for (const char* prefix : {"build/", "builds/"})
        if (target.rfind(prefix, 0) == 0) {
            stream_build_log(g, target.substr(std::string(prefix).size()), o.follow);
            return 0;
        }
    bool explicit_deployment = false;
    for (const char* prefix : {"deployment/", "deployments/", "dc/", "deploymentconfig/"})
        if (target.rfind(prefix, 0) == 0) {
            target = target.substr(std::string(prefix).size());
            explicit_deployment = true;
        }
    if (stream_deployment_log(g, target, o, !explicit_deployment)) return 0;
    if (o.previous || o.replica || o.tail)
        throw Error(
            "deployment \"" + target +
            "\" not found; `cascade get deployments` lists them (builds: logs build/NAME-N)");
    stream_build_log(g, target, o.follow);
    return 0;
}

std::string deployment_name_of(std::string target) {
    for (const char* prefix :
         {"deployment/", "deployments/", "dc/", "deploymentconfig/", "deploymentconfigs/"})
        if (target.rfind(prefix, 0) == 0) return target.substr(std::string(prefix).size());
    return target;
}

int cmd_scale(const Global& g, const std::string& target, int replicas) {
    auto name = deployment_name_of(target);
    if (replicas < 0) throw Error("cascade scale: --replicas must not be negative");
    api_post(g, "/api/v1/deployments/" + name + "/scale", {{"replicas", replicas}});
    std::cout << "deployment/" << name << " scaled to " << replicas << "\n";
    return 0;
}

int cmd_rollout_action(const Global& g, const std::string& action, const std::string& target,
                       std::optional<int> to_revision) {
    auto name = deployment_name_of(target);
    json body = json::object();
    if (to_revision) body["toRevision"] = *to_revision;
    auto r = api_post(g, "/api/v1/deployments/" + name + "/rollout/" + action, body);
    std::cout << "deployment/" << name << " " << r.value("result", action) << "\n";
    return 0;
}

int cmd_rollout_history(const Global& g, const std::string& target, const std::string& output) {
    auto name = deployment_name_of(target);
    auto list = api_get(g, "/api/v1/deployments/" + name + "/history");
    if (output == "json") {
        std::cout << list.dump(2) << "\n";
        return 0;
    }
    if (list["items"].empty()) {
        std::cerr << "No revisions of deployment/" << name << " yet.\n";
        return 0;
    }
    std::vector<std::vector<std::string>> rows{{"REVISION", "DIGEST", "STATUS", "CAUSE"}};
    for (const auto& r : list["items"]) {
        std::string digest = r.value("digest", "");
        rows.push_back({std::to_string(r.value("revision", 0)),
                        output == "wide" ? digest : short_digest(digest), r.value("status", ""),
                        r.value("cause", "")});
    }
    print_table(rows);
    return 0;
}

// Follows a rollout until the latest revision is complete (exit 0) or fails
// and is rolled back (exit 1). With `revision`, first waits until at least that
// revision exists; with `timeout_s` > 0, gives up after that many seconds.
int cmd_rollout_status(const Global& g, const std::string& target, int revision, int timeout_s) {
    auto name = deployment_name_of(target);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
    std::string last;
    while (true) {
        auto d = api_get(g, "/api/v1/deployments/" + name);
        const auto& st = d["status"];
        int latest = st.value("latestVersion", 0);
        int desired = st.value("desiredReplicas", 1);
        int updated = st.value("updatedReplicas", 0);
        int ready = st.value("readyReplicas", 0);
        int total = st.value("replicas", 0);
        std::string phase = st.value("phase", "");
        std::string message = st.value("message", "");
        std::string line;
        bool reached = latest >= revision && latest > 0;
        if (reached && phase == "Failed") {
            std::cout << "deployment \"" << name << "\" rollout failed"
                      << (message.empty() ? "" : ": " + message) << "\n";
            return 1;
        }
        if (reached && (phase == "Paused" || st.value("paused", false))) {
            std::cout << "deployment \"" << name << "\" is paused; `cascade rollout resume " << name
                      << "` continues it\n";
            return 1;
        }
        if (reached && phase == "Running" && updated >= desired && ready >= desired &&
            total == desired) {
            std::cout << "deployment \"" << name << "\" successfully rolled out (revision "
                      << latest << ")\n";
            return 0;
        }
        if (!reached)
            line = "Waiting for revision " + std::to_string(revision) + " of deployment \"" + name +
                   "\" (latest: " + std::to_string(latest) + ")...";
        else if (updated < desired)
            line = "Waiting for deployment \"" + name +
                   "\" rollout to finish: " + std::to_string(updated) + " out of " +
                   std::to_string(desired) + " new replicas have been updated...";
        else if (total > desired)
            line = "Waiting for deployment \"" + name +
                   "\" rollout to finish: " + std::to_string(total - desired) +
                   " old replicas are pending termination...";
        else
            line = "Waiting for deployment \"" + name +
                   "\" rollout to finish: " + std::to_string(ready) + " of " +
                   std::to_string(desired) + " updated replicas are available...";
        if (line != last) {
            std::cout << line << "\n" << std::flush;
            last = line;
        }
        if (timeout_s > 0 && std::chrono::steady_clock::now() > deadline)
            throw Error("deployment \"" + name + "\" did not finish its rollout within " +
                        std::to_string(timeout_s) + " s (phase " + phase +
                        (message.empty() ? "" : ": " + message) + ")");
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
    }
}

int cmd_exec(const Global& g, const std::string& target, std::optional<int> replica,
             const std::vector<std::string>& command) {
    if (command.empty()) throw Error("cascade exec DEPLOYMENT -- CMD [ARGS…]: CMD is missing");
    auto name = deployment_name_of(target);
    json body = {{"command", command}};
    if (replica) body["replica"] = *replica;
    auto r = api_post(g, "/api/v1/deployments/" + name + "/exec", body);
    std::cout << r.value("stdout", "") << std::flush;
    std::cerr << r.value("stderr", "") << std::flush;
    return r.value("exitCode", 1);
}

std::string ms_text(const json& v) {
    std::ostringstream s;
    s << v.get<int64_t>() / 1000.0 << "s";
    return s.str();
}

std::string int_or_percent_text(const json& v) {
    return std::to_string(v.value("value", 0)) + (v.value("percent", false) ? "%" : "");
}

// A probe of the template (runtime::to_json's shape).
std::string probe_text(const json& p) {
    std::string kind = p.value("kind", "none");
    if (kind == "none") return "none";
    std::string what = kind + " :" + std::to_string(p.value("port", 0));
    if (kind == "http") what += p.value("path", "/");
    if (kind == "exec") {
        what = "exec [";
        for (const auto& a : p["command"])
            what += (what.back() == '[' ? "" : " ") + a.get<std::string>();
        what += "]";
    }
    return what + " delay=" + ms_text(p["initialDelayMs"]) + " period=" + ms_text(p["periodMs"]) +
           " timeout=" + ms_text(p["timeoutMs"]) +
           " #success=" + std::to_string(p.value("successThreshold", 1)) +
           " #failure=" + std::to_string(p.value("failureThreshold", 3));
}

// `describe deployment NAME`: template, strategy, replicas, revisions.
void describe_deployment(const Global& g, const std::string& target) {
    auto name = deployment_name_of(target);
    auto d = api_get(g, "/api/v1/deployments/" + name);
    const auto& st = d["status"];
    const auto& t = st["template"];
    const auto& strategy = t["strategy"];
    std::string strat = strategy.value("type", "");
    if (strat == "Rolling")
        strat += " (maxSurge " + int_or_percent_text(strategy["maxSurge"]) + ", maxUnavailable " +
                 int_or_percent_text(strategy["maxUnavailable"]) + ", interval " +
                 ms_text(strategy["intervalMs"]) + ", update period " +
                 ms_text(strategy["updatePeriodMs"]) + ", timeout " +
                 std::to_string(strategy.value("timeoutSeconds", 0)) + "s)";
    else
        strat += " (timeout " + std::to_string(strategy.value("timeoutSeconds", 0)) + "s)";
    std::string ports;
    for (const auto& p : t["ports"])
        ports += (ports.empty() ? "" : ", ") + std::to_string(p.get<int>());
    std::string message = st.value("message", "");
    std::cout << "Name:          " << name << "\n"
              << "Kind:          " << d.value("kind", "") << "\n"
              << "Image:         " << t.value("imageRepository", "") << ":"
              << t.value("imageTag", "")
              << (t.value("automatic", false) ? " (follows the tag)" : " (manual)") << "\n"
              << "Digest:        " << st.value("imageDigest", "") << "\n"
              << "Revision:      " << st.value("latestVersion", 0) << "\n"
              << "Phase:         " << st.value("phase", "")
              << (st.value("paused", false) ? " (paused)" : "") << "\n";
    if (!message.empty()) std::cout << "Message:       " << message << "\n";
    std::cout << "Replicas:      " << st.value("desiredReplicas", 0) << " desired, "
              << st.value("updatedReplicas", 0) << " updated, " << st.value("readyReplicas", 0)
              << " ready, " << st.value("replicas", 0) << " total\n"
              << "Strategy:      " << strat << "\n"
              << "Ports:         " << (ports.empty() ? "none" : ports) << "\n"
              << "Readiness:     " << probe_text(t["readinessProbe"]) << "\n"
              << "Liveness:      " << probe_text(t["livenessProbe"]) << "\n"
              << "Startup:       " << probe_text(t["startupProbe"]) << "\n";
    const auto& res = t["resources"];
    auto limit = [](int64_t v, const std::string& unit) {
        return v ? std::to_string(v) + unit : std::string("unlimited");
    };
    std::cout << "Resources:     memory " << limit(res.value("memoryBytes", int64_t{0}), " bytes")
              << ", cpu " << limit(res.value("cpuMillis", int64_t{0}), "m") << " (request "
              << res.value("cpuRequestMillis", int64_t{0}) << "m), pids "
              << limit(res.value("pids", int64_t{0}), "") << "\n"
              << "Restart:       " << t.value("restartPolicy", "") << ", grace "
              << t.value("stopGraceSeconds", 0) << "s\n";
    if (!t.value("user", "").empty())
        std::cout << "User:          " << t["user"].get<std::string>() << "\n";
    if (t.value("readonlyRootfs", false)) std::cout << "Root fs:       read-only\n";
    std::cout << "Volumes:";
    if (t["volumes"].empty()) std::cout << "       none";
    std::cout << "\n";
    for (const auto& v : t["volumes"]) {
        std::cout << "  " << v.value("destination", "") << " <- " << v.value("kind", "");
        if (!v.value("source", "").empty()) std::cout << " " << v["source"].get<std::string>();
        if (v.value("sizeBytes", int64_t{0}) > 0)
            std::cout << " (" << v["sizeBytes"].get<int64_t>() << " bytes)";
        if (v.value("readonly", false)) std::cout << " (read-only)";
        std::cout << "\n";
    }
    std::cout << "\nReplicas:\n";
    std::vector<std::vector<std::string>> rows{
        {"  INDEX", "STATE", "REVISION", "RESTARTS", "LAST EXIT", "CONTAINER", "MESSAGE"}};
    for (const auto& p : st["pods"])
        rows.push_back(
            {"  " + std::to_string(p.value("index", 0)), p.value("state", ""),
             std::to_string(p.value("revision", 0)), std::to_string(p.value("restarts", 0)),
             std::to_string(p.value("lastExit", 0)), p.value("name", ""), p.value("message", "")});
    print_table(rows);
    std::cout << "\nRevisions:\n";
    json history = json::array();
    try {
        history = api_get(g, "/api/v1/deployments/" + name + "/history")["items"];
    } catch (const Error& e) {
        std::cout << "  (" << e.what() << ")\n";
    }
    std::vector<std::vector<std::string>> revs{
        {"  REVISION", "DIGEST", "STATUS", "CAUSE", "MESSAGE"}};
    for (const auto& r : history)
        revs.push_back({"  " + std::to_string(r.value("revision", 0)),
                        short_digest(r.value("digest", "")), r.value("status", ""),
                        r.value("cause", ""), r.value("message", "")});
    print_table(revs);
    std::cout << "\nFailed digests:";
    if (st["failedDigests"].empty()) std::cout << " none";
    std::cout << "\n";
    for (const auto& f : st["failedDigests"])
        std::cout << "  " << f.get<std::string>() << "\n";
}

std::string build_name_of(std::string target) {
    for (const char* prefix : {"build/", "builds/"})
        if (target.rfind(prefix, 0) == 0) return target.substr(std::string(prefix).size());
    return target;
}

int cmd_cancel_build(const Global& g, const std::string& target) {
    auto build = build_name_of(target);
    auto b = api_post(g, "/api/v1/builds/" + build + "/cancel", json::object());
    if (b.value("cancelled", false))
        std::cout << "build/" << build << " cancelled\n";
    else
        std::cout << "build/" << build << " already "
                  << lower(b["status"]["phase"].get<std::string>()) << "\n";
    return 0;
}

// `describe build NAME`: the record with its steps' timings.
void describe_build(const Global& g, const std::string& name) {
    auto b = api_get(g, "/api/v1/builds/" + build_name_of(name));
    const auto& st = b["status"];
    std::cout << "Name:      " << b["metadata"]["name"].get<std::string>() << "\n"
              << "Status:    " << st["phase"].get<std::string>() << "\n"
              << "Cause:     " << b["spec"]["triggeredBy"][0].value("message", "") << "\n"
              << "Started:   " << st.value("startTimestamp", "") << "\n"
              << "Duration:  " << duration_of(st) << "\n"
              << "Image:     " << st["output"]["to"]["imageDigest"].get<std::string>() << "\n";
    if (!st["message"].get<std::string>().empty())
        std::cout << "Message:   " << st["message"].get<std::string>() << "\n";
    std::vector<std::vector<std::string>> rows{{"  STEP", "DURATION", "CACHED", "BYTES", "TEXT"}};
    for (const auto& s : st.value("steps", json::array())) {
        char seconds[32];
        std::snprintf(seconds, sizeof seconds, "%.1fs",
                      static_cast<double>(s.value("durationMs", int64_t{0})) / 1000.0);
        rows.push_back({"  " + std::to_string(s.value("number", 0)), seconds,
                        s.value("cached", false) ? "yes" : "no",
                        std::to_string(s.value("bytes", int64_t{0})), s.value("text", "")});
    }
    std::cout << "\nSteps:\n";
    print_table(rows);
}

// `oc import-image`: imports NAME:TAG (or every tag of NAME that follows an
// external image) now; with --from and --confirm the tag is first created or
// changed to follow REF.
int cmd_import_image(const Global& g, const std::string& target, const std::string& from,
                     bool confirm, bool scheduled, bool insecure) {
    if (from.empty() && (scheduled || insecure))
        throw Error(
            "--scheduled and --insecure set a tag's import policy: use them with --from REF "
            "--confirm");
    std::string name = target, tag;
    if (auto colon = target.find(':'); colon != std::string::npos) {
        name = target.substr(0, colon);
        tag = target.substr(colon + 1);
    }
    json body = {{"confirm", confirm}};
    if (!tag.empty()) body["tag"] = tag;
    if (!from.empty()) body["from"] = from;
    if (scheduled) body["scheduled"] = true;
    if (insecure) body["insecure"] = true;
    auto r = api_post(g, "/api/v1/imagestreams/" + name + "/import", body);
    const auto& status = r["status"];
    if (status.value("specResult", "unchanged") != "unchanged")
        std::cout << "imagestream/" << name << " " << status["specResult"].get<std::string>()
                  << "\n";
    int failed = 0;
    for (const auto& img : status["images"]) {
        std::string what = "imagestream/" + name + ":" + img["tag"].get<std::string>();
        if (img["status"]["status"] != "Success") {
            std::cerr << "error: " << img["status"].value("message", what + " failed") << "\n";
            failed++;
            continue;
        }
        std::string digest = img["image"]["digest"];
        std::string generation = std::to_string(img.value("generation", 0));
        if (img.value("tagMoved", false))
            std::cout << what << " imported " << img["from"].get<std::string>() << " -> " << digest
                      << " (generation " << generation << ", " << img.value("blobsFetched", 0)
                      << " blob(s) fetched, " << img.value("blobsPresent", 0)
                      << " already present)\n";
        else
            std::cout << what << " unchanged: " << img["from"].get<std::string>() << " is still "
                      << digest << " (generation " << generation << ")\n";
    }
    return failed ? 1 : 0;
}

// Starts `cascade serve` in the background for `up`, logging to <root>/daemon.log.
void start_background_daemon(const std::string& host, const std::string& root) {
    std::string listen = host;
    if (listen.rfind("http://", 0) == 0) listen = listen.substr(7);
    while (!listen.empty() && listen.back() == '/')
        listen.pop_back();
    std::filesystem::create_directories(root);
    auto log = (std::filesystem::path(root) / "daemon.log").string();
    pid_t pid = fork();
    if (pid < 0) throw Error("fork: cannot start the daemon");
    if (pid == 0) {
        setsid();
        int in = open("/dev/null", O_RDONLY);
        int out = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(in, 0);
        dup2(out, 1);
        dup2(out, 2);
        // Double fork so the daemon is not our child.
        if (fork() != 0) _exit(0);
        execl("/proc/self/exe", "cascade", "serve", "--root", root.c_str(), "--listen",
              listen.c_str(), static_cast<char*>(nullptr));
        _exit(127);
    }
    waitpid(pid, nullptr, 0);
    for (int i = 0; i < 300; i++) {
        if (daemon_answers(host)) {
            std::cout << "started the cascade daemon on " << host << " (state root " << root
                      << ", log " << log << ")\n";
            return;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    throw Error("the daemon did not answer on " + host + " within 30 s; see " + log);
}

int cmd_up(const Global& g, const std::string& dir, const std::string& root, int timeout_s) {
    if (!daemon_answers(g.host)) start_background_daemon(g.host, root);
    auto objects = load_objects(dir);
    auto res = api_post(g, "/api/v1/apply", {{"items", objects}});
    print_warnings(res);
    std::set<std::string> known_builds;
    for (const auto& r : res["results"]) {
        std::cout << lower(r["kind"]) << "/" << r["name"].get<std::string>() << " "
                  << r["result"].get<std::string>() << "\n";
    }
    std::cout << std::flush;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
    std::map<std::string, std::string> seen;  // build/deployment → last printed state
    bool first = true;
    std::set<std::string> initial_failed;
    while (true) {
        auto st = api_get(g, "/api/v1/status");
        bool done = st["buildsIdle"].get<bool>();
        for (const auto& b : st["builds"]) {
            std::string name = b["name"], phase = b["phase"];
            if (first && phase == "Failed") initial_failed.insert(name);
            if (initial_failed.count(name)) continue;
            if (seen["build/" + name] != phase) {
                seen["build/" + name] = phase;
                if (!first || phase != "Complete")
                    std::cout << "build/" << name << " " << phase << "\n" << std::flush;
            }
            if (phase == "Failed")
                throw Error("build " + name + " failed: " + b["message"].get<std::string>() +
                            "\n  see `cascade logs build/" + name + "`");
        }
        for (const auto& d : st["deployments"]) {
            std::string name = d["name"];
            std::string state = d["phase"].get<std::string>() + " " +
                                std::to_string(d["ready"].get<int>()) + "/" +
                                std::to_string(d["replicas"].get<int>());
            if (seen["dc/" + name] != state) {
                seen["dc/" + name] = state;
                std::cout << "deployment/" << name << " " << state << "\n" << std::flush;
            }
            if (d["phase"] == "Failed")
                throw Error("deployment " + name + " failed: " + d["message"].get<std::string>());
            if (d["ready"].get<int>() < d["replicas"].get<int>() || d["phase"] != "Running")
                done = false;
        }
        first = false;
        if (done) {
            std::cout << "\n";
            for (const auto& r : st["routes"]) {
                std::cout << r["name"].get<std::string>() << ": " << r["url"].get<std::string>();
                if (!r.value("hostnameUrl", "").empty())
                    std::cout << "  " << r["hostnameUrl"].get<std::string>();
                std::cout << "\n";
            }
            return 0;
        }
        if (std::chrono::steady_clock::now() > deadline)
            throw Error(
                "not ready after " + std::to_string(timeout_s) +
                " s; `cascade get builds` and `cascade get deployments` show where it stands");
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
    }
}

// ---- image streams: tag, describe; events; gc ----

int cmd_tag(const Global& g, const std::string& source, const std::string& dest) {
    auto r = api_post(g, "/api/v1/tag", {{"source", source}, {"destination", dest}});
    std::string where =
        "imagestream/" + r["repository"].get<std::string>() + ":" + r["tag"].get<std::string>();
    if (r["moved"].get<bool>())
        std::cout << where << " tagged " << r["digest"].get<std::string>() << " (generation "
                  << r["generation"].get<int64_t>() << ", " << r["cause"].get<std::string>()
                  << ")\n";
    else
        std::cout << where << " unchanged: it already points at " << r["digest"].get<std::string>()
                  << " (generation " << r["generation"].get<int64_t>() << ")\n";
    return 0;
}

int cmd_describe(const Global& g, std::string kind, std::string name) {
    auto slash = kind.find('/');
    if (name.empty() && slash != std::string::npos) {
        name = kind.substr(slash + 1);
        kind = kind.substr(0, slash);
    }
    kind = lower(kind);
    if (kind == "build" || kind == "builds") {
        if (name.empty()) throw Error("cascade describe build NAME-N: NAME-N is missing");
        describe_build(g, name);
        return 0;
    }
    if (kind == "deployment" || kind == "deployments" || kind == "dc" ||
        kind == "deploymentconfig" || kind == "deploymentconfigs" || kind == "deploy") {
        if (name.empty()) throw Error("cascade describe deployment NAME: NAME is missing");
        describe_deployment(g, name);
        return 0;
    }
    if (kind != "imagestream" && kind != "imagestreams" && kind != "is")
        throw Error("cascade describe: imagestream NAME, build NAME-N or deployment NAME (got \"" +
                    kind + "\")");
    if (name.empty()) throw Error("cascade describe imagestream NAME: NAME is missing");
    auto is = api_get(g, "/api/v1/imagestreams/" + name);
    const auto& status = is["status"];
    std::cout << "Name:        " << is["metadata"]["name"].get<std::string>() << "\n"
              << "Repository:  " << status.value("dockerImageRepository", "") << "\n"
              << "Tags:        " << status["tags"].size() << "\n";
    for (const auto& t : status["tags"]) {
        std::cout << "\n" << t["tag"].get<std::string>() << "\n";
        std::vector<std::vector<std::string>> rows{
            {"  ", "GENERATION", "IMAGE", "CREATED", "AGE", "CAUSE"}};
        bool first = true;
        for (const auto& item : t["items"]) {
            rows.push_back({first ? "  *" : "  ", std::to_string(item["generation"].get<int64_t>()),
                            item["image"], item["created"], age(item["created"]), item["cause"]});
            first = false;
        }
        print_table(rows);
    }
    return 0;
}

std::string event_line(const json& e) {
    std::string digest = e.value("digest", "");
    std::string old = e.value("oldDigest", "");
    std::string move =
        old.empty() ? short_digest(digest) : short_digest(old) + " -> " + short_digest(digest);
    return std::to_string(e.value("id", int64_t{0})) + "  " + e.value("time", "") + "  " +
           e.value("type", "") + "  " + e.value("repository", "") + ":" + e.value("tag", "") +
           "  generation " + std::to_string(e.value("generation", int64_t{0})) + "  " + move +
           "  (" + e.value("cause", "") + ")";
}

// Lists recent events, or with --watch follows them (reconnecting after a
// lost connection from the last event seen, so none is missed).
int cmd_events(const Global& g, bool watch, int64_t since, int64_t count,
               const std::string& output) {
    if (!watch) {
        std::string path = "/api/v1/events";
        if (since >= 0) path += "?since=" + std::to_string(since);
        auto list = api_get(g, path);
        if (output == "json") {
            std::cout << list.dump(2) << "\n";
            return 0;
        }
        for (const auto& e : list["items"])
            std::cout << event_line(e) << "\n";
        if (list["items"].empty()) std::cerr << "No events.\n";
        return 0;
    }
    int64_t seen = 0;
    int64_t cursor = since;
    bool reconnecting = false;
    while (true) {
        auto c = client_for(g.host);
        std::string path = "/api/v1/events?watch=true";
        if (cursor >= 0) path += "&since=" + std::to_string(cursor);
        StreamedAnswer answer;
        bool enough = false;
        auto res = c->Get(
            path, [&](const httplib::Response& r) { return answer.on_response(r); },
            [&](const char* data, size_t len) {
                return answer.lines(data, len, [&](const std::string& line) {
                    auto e = json::parse(line, nullptr, false);
                    if (!e.is_object()) return true;
                    cursor = e.value("id", cursor);
                    if (e.value("type", "") == "Bookmark") return true;
                    std::cout << (output == "json" ? e.dump() : event_line(e)) << "\n"
                              << std::flush;
                    if (count > 0 && ++seen >= count) {
                        enough = true;
                        return false;
                    }
                    return true;
                });
            });
        if (enough) return 0;
        answer.throw_if_failed();
        if (!res && !reconnecting && answer.status == 0) unreachable_daemon(g.host, res.error());
        // The daemon stopped or the connection broke: resume after the last event.
        if (!reconnecting)
            std::cerr << "the event stream ended; reconnecting (from event " << cursor << ")\n";
        reconnecting = true;
        std::this_thread::sleep_for(std::chrono::seconds(1));
        if (daemon_answers(g.host)) reconnecting = false;
    }
}

std::string human_bytes(int64_t n) {
    const char* units[] = {"B", "kB", "MB", "GB", "TB"};
    double v = static_cast<double>(n);
    int u = 0;
    while (v >= 1000 && u < 4) {
        v /= 1000;
        u++;
    }
    std::ostringstream s;
    s << std::fixed << std::setprecision(u == 0 ? 0 : 1) << v << " " << units[u];
    return s.str();
}

int cmd_gc(const Global& g, bool dry_run, const std::string& output) {
    auto r =
        api_post(g, std::string("/api/v1/gc") + (dry_run ? "?dryRun=true" : ""), json::object());
    if (output == "json") {
        std::cout << r.dump(2) << "\n";
        return 0;
    }
    for (const auto& m : r["manifests"])
        std::cout << (dry_run ? "would remove " : "removed ") << m["repository"].get<std::string>()
                  << "@" << m["digest"].get<std::string>() << "\n";
    std::cout << (dry_run ? "would free: " : "freed: ") << r["manifests"].size() << " manifests, "
              << r["blobs"].size() << " blobs, " << human_bytes(r["bytes"].get<int64_t>()) << " ("
              << r["links"].get<int64_t>() << " blob links; kept "
              << r["markedManifests"].get<int64_t>() << " manifests in use, "
              << r["keptYoung"].get<int64_t>() << " young entries inside gc.graceSeconds)\n";
    return 0;
}

}  // namespace
}  // namespace cascade::cli

int main(int argc, char** argv) {
    using namespace cascade::cli;
    // A daemon that closes a TLS connection first must cost an error, not the
    // process (OpenSSL writes to the socket without MSG_NOSIGNAL).
    signal(SIGPIPE, SIG_IGN);
    CLI::App app{
        "cascade: build images, track them as image streams, and roll out what runs on them"};
    app.require_subcommand(1);
    Global g;
    const char* env_host = std::getenv("CASCADE_HOST");
    g.host = env_host && *env_host ? env_host : kDefaultHost;
    app.add_option("--host", g.host, "daemon URL (env CASCADE_HOST)")->capture_default_str();
    auto env_or = [](const char* name) {
        const char* v = std::getenv(name);
        return std::string(v ? v : "");
    };
    connection = {env_or("CASCADE_USERNAME"), env_or("CASCADE_PASSWORD"),
                  env_or("CASCADE_CA_CERT")};
    app.add_option("--username", connection.username,
                   "user for a daemon with authentication (env CASCADE_USERNAME)");
    app.add_option("--password", connection.password,
                   "password (env CASCADE_PASSWORD, which other users cannot see in ps)");
    app.add_option("--ca-cert", connection.ca_cert,
                   "PEM file of the CA that signed the daemon's certificate (env CASCADE_CA_CERT)");

    ServeOptions serve_opts;
    auto* serve_cmd = app.add_subcommand("serve", "run the daemon in the foreground");
    serve_cmd->add_option("--root", serve_opts.root,
                          std::string("state root (default ") + kDefaultRoot + ")");
    serve_cmd
        ->add_option(
            "--listen", serve_opts.listen,
            std::string("HOST:PORT for the registry and API (default ") + kDefaultListen + ")")
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);  // the last one given wins
    serve_cmd
        ->add_option("--router-listen", serve_opts.router_listen,
                     std::string("HOST:PORT of the routes' shared HTTP port (by Host header), or "
                                 "off (default ") +
                         kDefaultRouterListen + ")")
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
    serve_cmd->add_option("-c,--config", serve_opts.config, "configuration file (YAML)");
    serve_cmd->add_flag("--insecure", serve_opts.insecure,
                        "allow a non-loopback address without authentication and TLS");

    std::string tag, file, target, network = "host";
    std::vector<std::string> build_args, build_secrets;
    bool no_cache = false;
    std::string context;
    auto* build_cmd =
        app.add_subcommand("build", "build an image from a Dockerfile into the registry");
    build_cmd->add_option("-t,--tag", tag, "NAME:TAG to store the image as")->required();
    build_cmd->add_option("-f,--file", file, "Dockerfile (default CONTEXT/Dockerfile)");
    build_cmd->add_option("--build-arg", build_args, "K=V build argument (repeatable)");
    build_cmd->add_option("--target", target, "stage to build");
    build_cmd->add_flag("--no-cache", no_cache, "do not use cached steps");
    build_cmd->add_option("--network", network, "network for RUN steps: host (default) or none")
        ->check(CLI::IsMember({"host", "none", "default"}));
    build_cmd->add_option("--secret", build_secrets,
                          "id=ID,src=FILE for RUN --mount=type=secret,id=ID (repeatable)");
    build_cmd->add_option("context", context, "build context directory")->required();

    std::string apply_file;
    auto* apply_cmd =
        app.add_subcommand("apply", "create or update objects from a file or directory");
    apply_cmd->add_option("-f,--filename", apply_file, "YAML/JSON file or directory")->required();

    std::string up_dir, up_root = "/var/lib/cascade";
    int up_timeout = 900;
    auto* up_cmd = app.add_subcommand(
        "up", "start a daemon if none answers, apply DIR, wait for builds and deployments");
    up_cmd->add_option("dir", up_dir, "directory of YAML/JSON objects")->required();
    up_cmd->add_option("--root", up_root, "state root for a daemon started by up")
        ->capture_default_str();
    up_cmd->add_option("--timeout", up_timeout, "seconds to wait")->capture_default_str();

    std::string get_kind, get_name, output;
    auto* get_cmd = app.add_subcommand(
        "get", "list objects: imagestreams, buildconfigs, builds, deployments, routes");
    get_cmd->add_option("kind", get_kind, "kind")->required();
    get_cmd->add_option("name", get_name, "name");
    get_cmd->add_option("-o,--output", output, "json, wide or name")
        ->check(CLI::IsMember({"json", "wide", "name"}));

    std::string sb_name;
    bool sb_follow = false, sb_wait = false;
    auto* sb_cmd = app.add_subcommand("start-build", "start a new build of a build config");
    sb_cmd->add_option("name", sb_name, "build config")->required();
    sb_cmd->add_flag("-F,--follow", sb_follow, "stream the build's log until it ends");
    sb_cmd->add_flag("-w,--wait", sb_wait, "wait until the build ends; exit 1 when it failed");

    std::string logs_target;
    LogOptions logs_opts;
    auto* logs_cmd = app.add_subcommand(
        "logs", "print a build's log (build/NAME-N) or a deployment replica's (DEPLOYMENT)");
    logs_cmd->add_option("target", logs_target, "build/NAME-N or [deployment/]NAME")->required();
    logs_cmd->add_flag("-f,--follow", logs_opts.follow,
                       "keep streaming until the build ends or the replica's container is gone");
    logs_cmd->add_flag("-p,--previous", logs_opts.previous,
                       "the replica's previous container (before its last restart)");
    logs_cmd->add_option("--replica", logs_opts.replica,
                         "replica index (default: the lowest ready one)");
    logs_cmd->add_option("--tail", logs_opts.tail, "only the last N lines");

    std::string scale_target;
    int scale_replicas = -1;
    auto* scale_cmd = app.add_subcommand("scale", "set a deployment's number of replicas");
    scale_cmd->add_option("name", scale_target, "[deployment/]NAME")->required();
    scale_cmd->add_option("--replicas", scale_replicas, "the new count")->required();

    auto* rollout_cmd = app.add_subcommand(
        "rollout", "follow, list, undo, retry, pause, resume or restart a deployment's rollouts");
    rollout_cmd->require_subcommand(1);
    std::string rollout_target, rollout_output;
    int rollout_timeout = 0, rollout_revision = 0;
    std::optional<int> rollout_to;
    std::map<std::string, CLI::App*> rollout_cmds;
    for (auto [action, help] : std::vector<std::pair<std::string, std::string>>{
             {"status", "follow the latest rollout: exit 0 when complete, 1 when it failed"},
             {"history", "list the revisions: REVISION DIGEST STATUS CAUSE"},
             {"undo", "roll back to the previous revision (or --to-revision N)"},
             {"retry", "forget the failed digests and roll out the tag's digest again"},
             {"pause", "record tag moves and changes without rolling them out"},
             {"resume", "roll out what a pause held back"},
             {"restart", "replace every replica (a new revision of the same image)"}}) {
        auto* sub = rollout_cmd->add_subcommand(action, help);
        sub->add_option("name", rollout_target, "[deployment/]NAME")->required();
        rollout_cmds[action] = sub;
    }
    rollout_cmds["status"]->add_option("--timeout", rollout_timeout,
                                       "seconds to wait (0: no limit)");
    rollout_cmds["status"]->add_option("--revision", rollout_revision,
                                       "wait until at least this revision exists");
    rollout_cmds["undo"]->add_option("--to-revision", rollout_to, "the revision to go back to");
    rollout_cmds["history"]
        ->add_option("-o,--output", rollout_output, "json or wide")
        ->check(CLI::IsMember({"json", "wide"}));

    std::string exec_target;
    std::optional<int> exec_replica;
    std::vector<std::string> exec_command;
    auto* exec_cmd = app.add_subcommand(
        "exec", "run a command in a deployment's replica: cascade exec NAME [--replica N] -- CMD");
    exec_cmd->add_option("name", exec_target, "[deployment/]NAME")->required();
    exec_cmd->add_option("--replica", exec_replica,
                         "replica index (default: the lowest ready one)");
    exec_cmd->add_option("command", exec_command, "CMD [ARGS…] (after --)")->required();

    std::string cancel_target;
    auto* cancel_cmd = app.add_subcommand(
        "cancel-build", "cancel a queued build or stop a running one: cascade cancel-build NAME-N");
    cancel_cmd->add_option("build", cancel_target, "NAME-N or build/NAME-N")->required();

    std::string import_target, import_from;
    bool import_confirm = false, import_scheduled = false, import_insecure = false;
    auto* import_cmd = app.add_subcommand(
        "import-image", "import an image stream tag from another registry now (oc import-image)");
    import_cmd->add_option("name", import_target, "NAME[:TAG] (no TAG: every tag that follows one)")
        ->required();
    import_cmd->add_option("--from", import_from,
                           "the image to follow, e.g. docker.io/library/httpd:2.4");
    import_cmd->add_flag("--confirm", import_confirm,
                         "create the image stream tag, or change what it follows");
    import_cmd->add_flag("--scheduled", import_scheduled,
                         "re-check the image periodically (imports.intervalSeconds)");
    import_cmd->add_flag("--insecure", import_insecure,
                         "allow plain http:// or a TLS certificate that does not verify");

    std::string tag_source, tag_dest;
    auto* tag_cmd = app.add_subcommand(
        "tag", "point a stream tag at an existing image, recorded in its history (a rollback)");
    tag_cmd
        ->add_option("source", tag_source, "STREAM:TAG, STREAM@sha256:… or STREAM:TAG#GENERATION")
        ->required();
    tag_cmd->add_option("destination", tag_dest, "STREAM:TAG to move")->required();

    std::string describe_kind, describe_name;
    auto* describe_cmd =
        app.add_subcommand("describe",
                           "show an image stream's tags with their whole history, a build "
                           "with its steps' timings, or a deployment with its replicas and "
                           "revisions");
    describe_cmd
        ->add_option("kind", describe_kind, "imagestream (is), build, deployment, or KIND/NAME")
        ->required();
    describe_cmd->add_option("name", describe_name, "stream or build name");

    bool events_watch = false;
    int64_t events_since = -1, events_count = 0;
    std::string events_output;
    auto* events_cmd = app.add_subcommand("events", "list tag moves, or follow them with --watch");
    events_cmd->add_flag("-w,--watch", events_watch, "keep streaming new events");
    events_cmd->add_option("--since", events_since, "only events after this id (a resume point)");
    events_cmd->add_option("--count", events_count, "with --watch: stop after N events");
    events_cmd->add_option("-o,--output", events_output, "json: one JSON object per event")
        ->check(CLI::IsMember({"json"}));

    bool gc_dry_run = false;
    std::string gc_output;
    auto* gc_cmd = app.add_subcommand(
        "gc", "remove images that no tag, kept generation or running container uses");
    gc_cmd->add_flag("--dry-run", gc_dry_run, "only report what would be removed");
    gc_cmd->add_option("-o,--output", gc_output, "json")->check(CLI::IsMember({"json"}));

    CLI11_PARSE(app, argc, argv);
    while (!g.host.empty() && g.host.back() == '/')
        g.host.pop_back();
    if (g.host.find("://") == std::string::npos) g.host = "http://" + g.host;

    try {
        if (*serve_cmd) return serve(serve_opts);
        if (*build_cmd)
            return cmd_build(g, tag, file, build_args, target, no_cache, network, context,
                             build_secrets);
        if (*apply_cmd) return cmd_apply(g, apply_file);
        if (*up_cmd) return cmd_up(g, up_dir, up_root, up_timeout);
        if (*get_cmd) return cmd_get(g, get_kind, get_name, output);
        if (*sb_cmd) return cmd_start_build(g, sb_name, sb_follow, sb_wait);
        if (*logs_cmd) return cmd_logs(g, logs_target, logs_opts);
        if (*scale_cmd) return cmd_scale(g, scale_target, scale_replicas);
        if (*exec_cmd) return cmd_exec(g, exec_target, exec_replica, exec_command);
        if (*rollout_cmd) {
            if (*rollout_cmds["status"])
                return cmd_rollout_status(g, rollout_target, rollout_revision, rollout_timeout);
            if (*rollout_cmds["history"])
                return cmd_rollout_history(g, rollout_target, rollout_output);
            for (const auto& [action, sub] : rollout_cmds) {
                if (!*sub) continue;
                std::optional<int> to;
                if (action == "undo") to = rollout_to;
                return cmd_rollout_action(g, action, rollout_target, to);
            }
        }
        if (*cancel_cmd) return cmd_cancel_build(g, cancel_target);
        if (*tag_cmd) return cmd_tag(g, tag_source, tag_dest);
        if (*describe_cmd) return cmd_describe(g, describe_kind, describe_name);
        if (*events_cmd)
            return cmd_events(g, events_watch, events_since, events_count, events_output);
        if (*gc_cmd) return cmd_gc(g, gc_dry_run, gc_output);
        if (*import_cmd)
            return cmd_import_image(g, import_target, import_from, import_confirm, import_scheduled,
                                    import_insecure);
    } catch (const std::exception& e) {
        std::cerr << "error: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
