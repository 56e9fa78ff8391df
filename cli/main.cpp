// cascade — the command line. `cascade serve` runs the daemon; every other
// command is a thin client of the daemon's HTTP API (--host / CASCADE_HOST).
#include <fcntl.h>
#include <httplib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdlib>
#include <iomanip>
#include <iostream>
#include <map>
#include <set>
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

std::unique_ptr<httplib::Client> client_for(const std::string& host) {
    auto c = std::make_unique<httplib::Client>(host);
    c->set_connection_timeout(5);
    c->set_read_timeout(3600);
    c->set_write_timeout(60);
    return c;
}

[[noreturn]] void unreachable_daemon(const std::string& host, const httplib::Error& err) {
    throw Error("cannot reach the cascade daemon at " + host + " (" + httplib::to_string(err) +
                "); start it with `cascade serve`, or point --host / CASCADE_HOST at it");
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
    httplib::Client c(host);
    c.set_connection_timeout(1);
    c.set_read_timeout(2);
    auto res = c.Get("/v2/");
    return res && res->status == 200;
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
        rows.push_back({"NAME", "REVISION", "READY", "IMAGE", "DIGEST", "PHASE"});
        for (const auto& d : items) {
            const auto& st = d["status"];
            std::string digest = st["imageDigest"];
            rows.push_back({d["metadata"]["name"], std::to_string(st["latestVersion"].get<int>()),
                            std::to_string(st["readyReplicas"].get<int>()) + "/" +
                                std::to_string(d.value("/spec/replicas"_json_pointer, 1)),
                            st["image"], wide ? digest : short_digest(digest),
                            st["phase"].get<std::string>() +
                                (st["message"].get<std::string>().empty()
                                     ? ""
                                     : " (" + st["message"].get<std::string>() + ")")});
        }
    } else if (kind == "routes") {
        rows.push_back({"NAME", "URL", "SERVICES"});
        for (const auto& r : items)
            rows.push_back({r["metadata"]["name"], r["status"]["url"],
                            r.value("/spec/to/name"_json_pointer, std::string())});
    }
    print_table(rows);
}

// The table an object's kind is printed in (the daemon resolves aliases).
std::string resource_of(const json& obj) {
    static const std::map<std::string, std::string> resources = {
        {"ImageStream", "imagestreams"},
        {"BuildConfig", "buildconfigs"},
        {"Build", "builds"},
        {"DeploymentConfig", "deployments"},
        {"Route", "routes"}};
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

int cmd_apply(const Global& g, const std::string& file) {
    auto objects = load_objects(file);
    auto res = api_post(g, "/api/v1/apply", {{"items", objects}});
    for (const auto& r : res["results"]) {
        std::cout << lower(r["kind"]) << "/" << r["name"].get<std::string>() << " "
                  << r["result"].get<std::string>() << "\n";
    }
    return 0;
}

// Streams a chunked response to stdout; returns the @@result JSON if any.
int cmd_build(const Global& g, const std::string& tag, const std::string& file,
              const std::vector<std::string>& build_args, const std::string& target, bool no_cache,
              const std::string& network, const std::string& context) {
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
    auto c = client_for(g.host);
    std::string pending;
    json result;
    httplib::Request req;
    req.method = "POST";
    req.path = "/api/v1/build";
    req.body = body.dump();
    req.set_header("Content-Type", "application/json");
    int status = 0;
    std::string error_body;
    req.response_handler = [&](const httplib::Response& r) {
        status = r.status;
        return true;
    };
    req.content_receiver = [&](const char* data, size_t len, uint64_t, uint64_t) {
        if (status >= 400) {
            error_body.append(data, len);
            return true;
        }
        pending.append(data, len);
        size_t nl;
        while ((nl = pending.find('\n')) != std::string::npos) {
            std::string line = pending.substr(0, nl);
            pending.erase(0, nl + 1);
            if (line.rfind("@@result ", 0) == 0)
                result = json::parse(line.substr(9));
            else
                std::cout << line << "\n" << std::flush;
        }
        return true;
    };
    auto res = c->send(req);
    if (!res) unreachable_daemon(g.host, res.error());
    if (status >= 400) {
        json err = json::parse(error_body, nullptr, false);
        throw Error(err.is_object() ? err.value("message", error_body) : error_body);
    }
    if (result.is_null()) throw Error("the daemon ended the build stream without a result");
    if (!result["ok"].get<bool>()) throw Error(result["error"].get<std::string>());
    std::cout << "--> " << result["image"].get<std::string>() << " "
              << result["digest"].get<std::string>()
              << (result["tagMoved"].get<bool>() ? "" : " (unchanged: tag not moved)") << "\n";
    return 0;
}

// Streams a build's log; returns when the build ended (follow) or at EOF.
void stream_build_log(const Global& g, const std::string& build, bool follow) {
    auto c = client_for(g.host);
    std::string path = "/api/v1/builds/" + build + "/log" + (follow ? "?follow=true" : "");
    int status = 0;
    std::string error_body;
    auto res = c->Get(
        path,
        [&](const httplib::Response& r) {
            status = r.status;
            return true;
        },
        [&](const char* data, size_t len) {
            if (status >= 400)
                error_body.append(data, len);
            else
                std::cout.write(data, static_cast<std::streamsize>(len)).flush();
            return true;
        });
    if (!res) unreachable_daemon(g.host, res.error());
    if (status >= 400) {
        json err = json::parse(error_body, nullptr, false);
        throw Error(err.is_object() ? err.value("message", error_body) : error_body);
    }
}

int wait_build(const Global& g, const std::string& build) {
    while (true) {
        auto b = api_get(g, "/api/v1/builds/" + build);
        std::string phase = b["status"]["phase"];
        if (phase == "Complete") return 0;
        if (phase == "Failed") {
            std::cerr << "build " << build
                      << " failed: " << b["status"]["message"].get<std::string>() << "\n";
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

int cmd_logs(const Global& g, std::string target, bool follow) {
    if (target.rfind("build/", 0) == 0)
        target = target.substr(6);
    else if (target.rfind("builds/", 0) == 0)
        target = target.substr(7);
    stream_build_log(g, target, follow);
    return 0;
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
            for (const auto& r : st["routes"])
                std::cout << r["name"].get<std::string>() << ": " << r["url"].get<std::string>()
                          << "\n";
            return 0;
        }
        if (std::chrono::steady_clock::now() > deadline)
            throw Error(
                "not ready after " + std::to_string(timeout_s) +
                " s; `cascade get builds` and `cascade get deployments` show where it stands");
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
    }
}

}  // namespace
}  // namespace cascade::cli

int main(int argc, char** argv) {
    using namespace cascade::cli;
    CLI::App app{
        "cascade: build images, track them as image streams, and roll out what runs on them"};
    app.require_subcommand(1);
    Global g;
    const char* env_host = std::getenv("CASCADE_HOST");
    g.host = env_host && *env_host ? env_host : kDefaultHost;
    app.add_option("--host", g.host, "daemon URL (env CASCADE_HOST)")->capture_default_str();

    ServeOptions serve_opts;
    auto* serve_cmd = app.add_subcommand("serve", "run the daemon in the foreground");
    serve_cmd->add_option("--root", serve_opts.root,
                          std::string("state root (default ") + kDefaultRoot + ")");
    serve_cmd->add_option(
        "--listen", serve_opts.listen,
        std::string("HOST:PORT for the registry and API (default ") + kDefaultListen + ")");
    serve_cmd->add_option("-c,--config", serve_opts.config, "configuration file (YAML)");
    serve_cmd->add_flag("--insecure", serve_opts.insecure,
                        "allow a non-loopback address without authentication and TLS");

    std::string tag, file, target, network = "host";
    std::vector<std::string> build_args;
    bool no_cache = false;
    std::string context;
    auto* build_cmd =
        app.add_subcommand("build", "build an image from a Dockerfile into the registry");
    build_cmd->add_option("-t,--tag", tag, "NAME:TAG to store the image as")->required();
    build_cmd->add_option("-f,--file", file, "Dockerfile (default CONTEXT/Dockerfile)");
    build_cmd->add_option("--build-arg", build_args, "K=V build argument (repeatable)");
    build_cmd->add_option("--target", target, "stage to build");
    build_cmd->add_flag("--no-cache", no_cache, "do not use cached steps");
    build_cmd->add_option("--network", network, "network for RUN steps: host or none")
        ->check(CLI::IsMember({"host", "none"}));
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
    bool logs_follow = false;
    auto* logs_cmd = app.add_subcommand("logs", "print a build's log: cascade logs build/NAME-N");
    logs_cmd->add_option("target", logs_target, "build/NAME-N")->required();
    logs_cmd->add_flag("-f,--follow", logs_follow, "keep streaming until the build ends");

    CLI11_PARSE(app, argc, argv);
    while (!g.host.empty() && g.host.back() == '/')
        g.host.pop_back();
    if (g.host.find("://") == std::string::npos) g.host = "http://" + g.host;

    try {
        if (*serve_cmd) return serve(serve_opts);
        if (*build_cmd)
            return cmd_build(g, tag, file, build_args, target, no_cache, network, context);
        if (*apply_cmd) return cmd_apply(g, apply_file);
        if (*up_cmd) return cmd_up(g, up_dir, up_root, up_timeout);
        if (*get_cmd) return cmd_get(g, get_kind, get_name, output);
        if (*sb_cmd) return cmd_start_build(g, sb_name, sb_follow, sb_wait);
        if (*logs_cmd) return cmd_logs(g, logs_target, logs_follow);
    } catch (const std::exception& e) {
        std::cerr << "error: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
