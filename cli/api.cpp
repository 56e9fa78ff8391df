#include "cli/api.hpp"

#include <httplib.h>
#include <sys/socket.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <fstream>
#include <mutex>
#include <regex>
#include <thread>

#include "cli/objects.hpp"
#include "engine/build_controller.hpp"
#include "engine/builder.hpp"
#include "oci/error.hpp"
#include "oci/fs.hpp"
#include "oci/image.hpp"
#include "oci/reference.hpp"
#include "registry/database.hpp"
#include "registry/store.hpp"
#include "runtime/deployment.hpp"

namespace cascade::cli {

using nlohmann::json;

namespace {

const char* kSchema = R"sql(
CREATE TABLE api_objects (
  kind TEXT NOT NULL,
  name TEXT NOT NULL,
  object TEXT NOT NULL,
  created INTEGER NOT NULL,
  PRIMARY KEY (kind, name)
);
)sql";

std::string rfc3339_ms(int64_t ms) {
    return ms > 0 ? oci::rfc3339(ms / 1000) : std::string();
}

void send_json(httplib::Response& res, const json& body, int status = 200) {
    res.status = status;
    res.set_content(body.dump(2) + "\n", "application/json");
}

void send_error(httplib::Response& res, int status, const std::string& message) {
    send_json(res,
              {{"kind", "Status"}, {"status", "Failure"}, {"message", message}, {"code", status}},
              status);
}

// Runs a handler, turning exceptions into JSON errors.
template <typename Fn>
httplib::Server::Handler guarded(Fn fn) {
    return [fn](const httplib::Request& req, httplib::Response& res) {
        try {
            fn(req, res);
        } catch (const json::exception& e) {
            send_error(res, 400, std::string("invalid JSON: ") + e.what());
        } catch (const std::exception& e) {
            send_error(res, 400, e.what());
        }
    };
}

std::optional<json> stored_object(registry::Database& db, const std::string& kind,
                                  const std::string& name) {
    auto row = db.row("SELECT object FROM api_objects WHERE kind = ?1 AND name = ?2", {kind, name});
    if (!row) return std::nullopt;
    return json::parse(registry::as_text((*row)[0]));
}

json list_of(std::vector<json> items) {
    return {{"apiVersion", "v1"}, {"kind", "List"}, {"items", std::move(items)}};
}

std::string route_url(const runtime::RouteSpec& r) {
    return "http://" + r.host + ":" + std::to_string(r.port) + "/";
}

json image_stream_json(ApiContext& ctx, const std::string& repo) {
    json obj = stored_object(ctx.db, "ImageStream", repo)
                   .value_or(json{{"apiVersion", "image.openshift.io/v1"},
                                  {"kind", "ImageStream"},
                                  {"metadata", {{"name", repo}}},
                                  {"spec", json::object()}});
    json tags = json::array();
    for (const auto& tag : ctx.store.tags(repo)) {
        json items = json::array();
        for (const auto& h : ctx.store.tag_history(repo, tag)) {
            items.push_back(
                {{"generation", h.generation},
                 {"image", h.digest.str()},
                 {"dockerImageReference", ctx.listen + "/" + repo + "@" + h.digest.str()},
                 {"created", oci::rfc3339(h.time)},
                 {"cause", h.cause}});
        }
        tags.push_back({{"tag", tag}, {"items", items}});
    }
    obj["status"] = {{"dockerImageRepository", ctx.listen + "/" + repo}, {"tags", tags}};
    return obj;
}

json build_config_json(ApiContext& ctx, const engine::BuildConfigSpec& spec) {
    json obj = stored_object(ctx.db, "BuildConfig", spec.name)
                   .value_or(json{{"apiVersion", "build.openshift.io/v1"},
                                  {"kind", "BuildConfig"},
                                  {"metadata", {{"name", spec.name}}}});
    auto builds = ctx.builds.builds(spec.name);
    obj["status"] = {{"lastVersion", builds.empty() ? 0 : builds.back().number},
                     {"from", ctx.builds.base_of(spec)},
                     {"output", spec.output_repository + ":" + spec.output_tag}};
    return obj;
}

json build_json(const engine::BuildRecord& b) {
    json status = {{"phase", b.phase},
                   {"message", b.message},
                   {"config", {{"kind", "BuildConfig"}, {"name", b.config}}},
                   {"startTimestamp", rfc3339_ms(b.started)},
                   {"completionTimestamp", rfc3339_ms(b.finished)},
                   {"output", {{"to", {{"imageDigest", b.image_digest}}}}},
                   {"base", {{"name", b.base_name}, {"digest", b.base_digest}}},
                   {"tagMoved", b.tag_moved}};
    if (b.started && b.finished) status["duration"] = (b.finished - b.started) * 1000000;  // ns
    return {{"apiVersion", "build.openshift.io/v1"},
            {"kind", "Build"},
            {"metadata",
             {{"name", b.name},
              {"creationTimestamp", rfc3339_ms(b.created)},
              {"labels", {{"buildconfig", b.config}}},
              {"annotations", {{"openshift.io/build.number", std::to_string(b.number)}}}}},
            {"spec", {{"triggeredBy", json::array({{{"message", b.cause}}})}}},
            {"status", status}};
}

json deployment_json(ApiContext& ctx, const runtime::DeploymentStatus& d) {
    json obj = stored_object(ctx.db, "DeploymentConfig", d.spec.name)
                   .value_or(json{{"apiVersion", "apps.openshift.io/v1"},
                                  {"kind", "DeploymentConfig"},
                                  {"metadata", {{"name", d.spec.name}}}});
    json replicas = json::array();
    for (const auto& r : d.replicas) {
        replicas.push_back({{"name", r.container_id},
                            {"revision", r.revision},
                            {"image", r.image_digest.str()},
                            {"pid", r.pid},
                            {"state", r.state},
                            {"restarts", r.restarts}});
    }
    obj["status"] = {{"latestVersion", d.revision},
                     {"replicas", static_cast<int>(d.replicas.size())},
                     {"readyReplicas", d.ready},
                     {"phase", d.phase},
                     {"message", d.message},
                     {"image", d.spec.image_repository + ":" + d.spec.image_tag},
                     {"imageDigest", d.image ? d.image->str() : ""},
                     {"pods", replicas}};
    return obj;
}

json route_json(ApiContext& ctx, const runtime::RouteSpec& r) {
    json obj = stored_object(ctx.db, "Route", r.name)
                   .value_or(json{{"apiVersion", "route.openshift.io/v1"},
                                  {"kind", "Route"},
                                  {"metadata", {{"name", r.name}}}});
    obj["status"] = {{"url", route_url(r)},
                     {"ingress", json::array({{{"host", r.host + ":" + std::to_string(r.port)},
                                               {"routerName", "cascade"}}})}};
    return obj;
}

// Normalises a kind as typed on the command line.
std::string canonical_kind(std::string kind) {
    std::transform(kind.begin(), kind.end(), kind.begin(), ::tolower);
    static const std::map<std::string, std::string> aliases = {
        {"imagestreams", "imagestreams"},
        {"imagestream", "imagestreams"},
        {"is", "imagestreams"},
        {"buildconfigs", "buildconfigs"},
        {"buildconfig", "buildconfigs"},
        {"bc", "buildconfigs"},
        {"builds", "builds"},
        {"build", "builds"},
        {"deploymentconfigs", "deployments"},
        {"deploymentconfig", "deployments"},
        {"dc", "deployments"},
        {"deployments", "deployments"},
        {"deployment", "deployments"},
        {"routes", "routes"},
        {"route", "routes"},
    };
    auto it = aliases.find(kind);
    if (it == aliases.end())
        throw Error("unknown kind \"" + kind +
                    "\"; known: imagestreams (is), buildconfigs (bc), builds, deployments "
                    "(deploymentconfigs, dc), routes");
    return it->second;
}

std::vector<json> list_kind(ApiContext& ctx, const std::string& kind) {
    std::vector<json> items;
    if (kind == "imagestreams") {
        for (const auto& repo : ctx.store.repositories())
            items.push_back(image_stream_json(ctx, repo));
    } else if (kind == "buildconfigs") {
        for (const auto& c : ctx.builds.configs())
            items.push_back(build_config_json(ctx, c));
    } else if (kind == "builds") {
        for (const auto& b : ctx.builds.builds())
            items.push_back(build_json(b));
    } else if (kind == "deployments") {
        for (const auto& d : ctx.deployments.list())
            items.push_back(deployment_json(ctx, d));
    } else if (kind == "routes") {
        for (const auto& r : ctx.deployments.routes())
            items.push_back(route_json(ctx, r));
    }
    return items;
}

uint16_t pick_free_port(const std::vector<runtime::RouteSpec>& taken) {
    for (uint16_t port = 8081; port < 9000; port++) {
        bool used = std::any_of(taken.begin(), taken.end(),
                                [&](const runtime::RouteSpec& r) { return r.port == port; });
        if (used) continue;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        addr.sin_port = htons(port);
        int ok = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
        close(fd);
        if (ok == 0) return port;
    }
    throw Error("no free port in 8081-8999 for a route; set the annotation cascade.io/host-port");
}

int kind_order(const std::string& kind) {
    if (kind == "ImageStream") return 0;
    if (kind == "DeploymentConfig") return 1;
    if (kind == "Route") return 2;
    return 3;  // BuildConfig last: its builds move tags the others follow
}

json apply_objects(ApiContext& ctx, std::vector<json> items) {
    // Validate everything before changing anything.
    for (auto& obj : items) {
        auto kind = object_kind(obj);
        object_name(obj);
        if (kind == "BuildConfig")
            build_config_from_object(obj);
        else if (kind == "DeploymentConfig")
            deployment_from_object(obj);
        else if (kind == "Route")
            route_from_object(obj);
        else if (kind != "ImageStream")
            throw Error("kind \"" + kind +
                        "\" is not supported; supported kinds: BuildConfig, DeploymentConfig, "
                        "Route, ImageStream, List");
    }
    std::stable_sort(items.begin(), items.end(), [](const json& a, const json& b) {
        return kind_order(a["kind"]) < kind_order(b["kind"]);
    });
    json results = json::array();
    for (auto& obj : items) {
        auto kind = object_kind(obj);
        auto name = object_name(obj);
        obj.erase("status");
        auto old = stored_object(ctx.db, kind, name);
        std::string result = !old ? "created" : (*old == obj ? "unchanged" : "configured");
        if (kind == "BuildConfig") {
            ctx.builds.apply(build_config_from_object(obj));
        } else if (kind == "DeploymentConfig") {
            ctx.deployments.apply(deployment_from_object(obj));
        } else if (kind == "Route") {
            auto route = route_from_object(obj);
            if (route.port == 0) {
                // Keep the port a route already has; else pick a free one.
                for (const auto& r : ctx.deployments.routes())
                    if (r.name == route.name) route.port = r.port;
                if (route.port == 0) route.port = pick_free_port(ctx.deployments.routes());
            }
            ctx.deployments.apply_route(route);
        }
        ctx.db.query(
            "INSERT INTO api_objects (kind, name, object, created) VALUES (?1, ?2, ?3, ?4) "
            "ON CONFLICT(kind, name) DO UPDATE SET object = excluded.object",
            {kind, name, obj.dump(), static_cast<int64_t>(time(nullptr))});
        results.push_back({{"kind", kind}, {"name", name}, {"result", result}});
    }
    return results;
}

// A queue of log lines between a build thread and a streaming response.
struct LogStream {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<std::string> lines;
    bool done = false;

    void push(std::string line) {
        std::lock_guard lock(mu);
        lines.push_back(std::move(line));
        cv.notify_all();
    }
    void finish(std::string last) {
        std::lock_guard lock(mu);
        lines.push_back(std::move(last));
        done = true;
        cv.notify_all();
    }
    // Streams into a sink until done; returns false when the client left.
    bool drain(httplib::DataSink& sink) {
        std::unique_lock lock(mu);
        while (true) {
            cv.wait_for(lock, std::chrono::milliseconds(500),
                        [&] { return done || !lines.empty(); });
            while (!lines.empty()) {
                std::string line = std::move(lines.front()) + "\n";
                lines.pop_front();
                lock.unlock();
                bool ok = sink.write(line.data(), line.size());
                lock.lock();
                if (!ok) return false;
            }
            if (done) return true;
            if (!sink.is_writable()) return false;
        }
    }
};

void handle_adhoc_build(ApiContext& ctx, const httplib::Request& req, httplib::Response& res) {
    json body = json::parse(req.body);
    engine::BuildRequest build;
    build.context = body.at("context").get<std::string>();
    build.dockerfile = body.value("dockerfile", "Dockerfile");
    build.build_args = body.value("buildArgs", std::map<std::string, std::string>{});
    build.target = body.value("target", "");
    build.no_cache = body.value("noCache", false);
    build.network_host = body.value("network", "host") != "none";
    auto [repo, tag] = split_stream_tag(body.at("tag").get<std::string>());
    if (!oci::is_valid_repository_name(repo))
        throw Error("invalid image name \"" + repo +
                    "\": use lower-case letters, digits and separators (. _ - /)");
    build.output_repository = repo;
    build.output_tag = tag;
    build.cause = "build (cascade build)";
    if (!std::filesystem::is_directory(build.context))
        throw Error("build context " + build.context.string() + " is not a directory");

    auto stream = std::make_shared<LogStream>();
    build.log = [stream](const std::string& line) { stream->push(line); };
    ctx.adhoc_builds++;
    std::thread([&ctx, build, stream]() mutable {
        try {
            auto result = ctx.builder.build(build);
            json r = {{"ok", true},
                      {"digest", result.manifest_digest.str()},
                      {"image", build.output_repository + ":" + build.output_tag},
                      {"tagMoved", result.tag_moved},
                      {"baseName", result.base_name},
                      {"baseDigest", result.base_digest ? result.base_digest->str() : ""}};
            stream->finish("@@result " + r.dump());
        } catch (const std::exception& e) {
            stream->finish("@@result " + json{{"ok", false}, {"error", e.what()}}.dump());
        }
        ctx.adhoc_builds--;
    }).detach();
    res.set_chunked_content_provider("text/plain", [stream](size_t, httplib::DataSink& sink) {
        if (stream->drain(sink)) sink.done();
        return true;
    });
}

void handle_build_log(ApiContext& ctx, const httplib::Request& req, httplib::Response& res) {
    std::string name = req.matches[1];
    if (!ctx.builds.build(name)) return send_error(res, 404, "build \"" + name + "\" not found");
    bool follow = req.has_param("follow") && req.get_param_value("follow") != "false";
    auto path = ctx.builds.log_path(name);
    auto* builds = &ctx.builds;
    res.set_chunked_content_provider(
        "text/plain", [path, follow, name, builds](size_t, httplib::DataSink& sink) {
            std::ifstream in;
            std::streamoff offset = 0;
            char buf[16384];
            while (true) {
                if (!in.is_open()) in.open(path, std::ios::binary);
                if (in.is_open()) {
                    in.clear();
                    in.seekg(offset);
                    in.read(buf, sizeof buf);
                    auto n = in.gcount();
                    if (n > 0) {
                        offset += n;
                        if (!sink.write(buf, static_cast<size_t>(n))) return false;
                        continue;
                    }
                }
                if (!follow) break;
                auto b = builds->build(name);
                if (!b || b->phase == "Complete" || b->phase == "Failed") {
                    // One more read catches the last lines written before the phase changed.
                    if (in.is_open()) {
                        in.clear();
                        in.seekg(offset);
                        in.read(buf, sizeof buf);
                        if (in.gcount() > 0) {
                            offset += in.gcount();
                            sink.write(buf, static_cast<size_t>(in.gcount()));
                            continue;
                        }
                    }
                    break;
                }
                if (!sink.is_writable()) return false;
                std::this_thread::sleep_for(std::chrono::milliseconds(200));
            }
            sink.done();
            return true;
        });
}

}  // namespace

void register_api_routes(httplib::Server& server, ApiContext& ctx) {
    ctx.db.migrate("api-objects-1", kSchema);

    server.Get(
        "/api/v1/status", guarded([&ctx](const httplib::Request&, httplib::Response& res) {
            json deps = json::array();
            for (const auto& d : ctx.deployments.list())
                deps.push_back({{"name", d.spec.name},
                                {"phase", d.phase},
                                {"message", d.message},
                                {"revision", d.revision},
                                {"replicas", d.spec.replicas},
                                {"ready", d.ready}});
            json routes = json::array();
            for (const auto& r : ctx.deployments.routes())
                routes.push_back({{"name", r.name}, {"url", route_url(r)}});
            json builds = json::array();
            for (const auto& b : ctx.builds.builds())
                builds.push_back({{"name", b.name}, {"phase", b.phase}, {"message", b.message}});
            send_json(res, {{"buildsIdle", ctx.builds.idle()},
                            {"builds", builds},
                            {"deployments", deps},
                            {"routes", routes}});
        }));

    server.Post("/api/v1/apply",
                guarded([&ctx](const httplib::Request& req, httplib::Response& res) {
                    json body = json::parse(req.body);
                    std::vector<json> items;
                    for (const auto& item : body.value("items", json::array()))
                        items.push_back(item);
                    send_json(res, {{"results", apply_objects(ctx, std::move(items))}});
                }));

    server.Post(R"(/api/v1/buildconfigs/([^/]+)/instantiate)",
                guarded([&ctx](const httplib::Request& req, httplib::Response& res) {
                    std::string name = req.matches[1];
                    if (!ctx.builds.config(name))
                        return send_error(
                            res, 404,
                            "build config \"" + name +
                                "\" not found; `cascade get buildconfigs` lists them");
                    auto build = ctx.builds.start_build(name, "manual (start-build)");
                    send_json(res, build_json(*ctx.builds.build(build)), 201);
                }));

    server.Get(R"(/api/v1/builds/([^/]+)/log)",
               guarded([&ctx](const httplib::Request& req, httplib::Response& res) {
                   handle_build_log(ctx, req, res);
               }));

    server.Post("/api/v1/build",
                guarded([&ctx](const httplib::Request& req, httplib::Response& res) {
                    handle_adhoc_build(ctx, req, res);
                }));

    server.Get(R"(/api/v1/([a-z]+))",
               guarded([&ctx](const httplib::Request& req, httplib::Response& res) {
                   auto kind = canonical_kind(req.matches[1]);
                   auto list = list_of(list_kind(ctx, kind));
                   list["resource"] = kind;  // the canonical name, for clients' tables
                   send_json(res, list);
               }));

    server.Get(R"(/api/v1/([a-z]+)/([^/]+))",
               guarded([&ctx](const httplib::Request& req, httplib::Response& res) {
                   auto kind = canonical_kind(req.matches[1]);
                   std::string name = req.matches[2];
                   for (auto& item : list_kind(ctx, kind))
                       if (item["metadata"]["name"] == name) return send_json(res, item);
                   send_error(res, 404, kind + " \"" + name + "\" not found");
               }));
}

}  // namespace cascade::cli
