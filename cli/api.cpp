#include "cli/api.hpp"

#include <httplib.h>
#include <sys/socket.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <fstream>
#include <mutex>
#include <regex>
#include <set>
#include <thread>

#include "cli/objects.hpp"
#include "engine/build_controller.hpp"
#include "engine/builder.hpp"
#include "oci/error.hpp"
#include "oci/fs.hpp"
#include "oci/image.hpp"
#include "oci/reference.hpp"
#include "registry/database.hpp"
#include "registry/events.hpp"
#include "registry/gc.hpp"
#include "registry/image_streams.hpp"
#include "registry/importer.hpp"
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
                   {"tagMoved", b.tag_moved},
                   {"steps", json::array()}};
    for (const auto& step : b.steps)
        status["steps"].push_back(engine::step_report_json(step));
    if (b.started && b.finished) status["duration"] = (b.finished - b.started) * 1000000;  // ns
    return {{"apiVersion", "build.openshift.io/v1"},
            {"kind", "Build"},
            {"metadata",
             {{"name", b.name},
              {"creationTimestamp", rfc3339_ms(b.created)},
              {"labels", {{"buildconfig", b.config}}},
              {"annotations", {{"openshift.io/build.number", std::to_string(b.number)}}}}},
            {"spec",
             {{"triggeredBy",
               json::array({{{"message", b.cause}, {"type", engine::to_string(b.cause_kind)}}})}}},
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
        // Repositories, and applied streams that have no image yet (e.g. a
        // first import that failed).
        std::set<std::string> names;
        for (const auto& repo : ctx.store.repositories())
            names.insert(repo);
        for (const auto& row :
             ctx.db.rows("SELECT name FROM api_objects WHERE kind = 'ImageStream'"))
            names.insert(registry::as_text(row[0]));
        for (const auto& repo : names)
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
        else if (kind == "ImageStream")
            image_stream_imports_from_object(obj);
        else
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
        // Like OpenShift, a new or changed stream imports its tags right away.
        if (kind == "ImageStream" && result != "unchanged" && ctx.importer)
            for (const auto& spec : image_stream_imports_from_object(obj))
                ctx.importer->enqueue(spec);
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
    // RUN --mount=type=secret: id → a file on this host (cascade build --secret).
    const json secrets = body.value("secrets", json::object());
    for (const auto& [id, path] : secrets.items())
        build.secrets[id] = path.get<std::string>();
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
    // The client leaving (Ctrl-C on `cascade build`) cancels the build.
    build.cancel = std::make_shared<engine::CancelToken>();
    auto cancel = build.cancel;
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
    res.set_chunked_content_provider("text/plain",
                                     [stream, cancel](size_t, httplib::DataSink& sink) {
                                         if (stream->drain(sink))
                                             sink.done();
                                         else
                                             cancel->cancel();
                                         return true;
                                     });
}

// POST /api/v1/imagestreams/NAME/import {tag, from, confirm, scheduled,
// insecure}: `oc import-image`. With `from`, the stream tag is created or
// changed to follow it (only when confirmed); then the tag (or every tag of
// the stream that follows an external image) is imported now. Answers an
// ImageStreamImport with one status per tag.
void handle_import(ApiContext& ctx, const httplib::Request& req, httplib::Response& res) {
    std::string name = req.matches[1];
    if (!ctx.importer) return send_error(res, 503, "image import is not available in this daemon");
    json body = req.body.empty() ? json::object() : json::parse(req.body);
    std::string tag = body.value("tag", "");
    std::string from = body.value("from", "");
    bool confirm = body.value("confirm", false);
    auto stored = stored_object(ctx.db, "ImageStream", name);
    std::string spec_result = "unchanged";

    if (!from.empty()) {
        if (tag.empty()) tag = "latest";
        if (!oci::is_valid_tag(tag))
            return send_error(res, 400, "\"" + tag + "\" is not a valid tag");
        oci::Reference::parse(from);  // throws a message naming what is wrong
        json obj = stored.value_or(json{{"apiVersion", "image.openshift.io/v1"},
                                        {"kind", "ImageStream"},
                                        {"metadata", {{"name", name}}},
                                        {"spec", {{"tags", json::array()}}}});
        json& tags = obj["spec"]["tags"];
        if (!tags.is_array()) tags = json::array();
        json* entry = nullptr;
        for (auto& t : tags)
            if (t.value("name", "") == tag) entry = &t;
        if (!entry) {
            tags.push_back({{"name", tag}});
            entry = &tags.back();
        }
        json before = *entry;
        (*entry)["from"] = {{"kind", "DockerImage"}, {"name", from}};
        json& policy = (*entry)["importPolicy"];
        if (!policy.is_object()) policy = json::object();
        for (const char* key : {"scheduled", "insecure"})
            if (body.contains(key)) policy[key] = body[key].get<bool>();
        if (policy.empty()) entry->erase("importPolicy");
        if (!stored || *entry != before) {
            if (!confirm)
                return send_error(
                    res, 400,
                    !stored ? "image stream \"" + name +
                                  "\" does not exist; pass --confirm to create it with tag " + tag +
                                  " following " + from
                            : "image stream tag " + name + ":" + tag +
                                  (before.contains("from")
                                       ? " follows " + before["from"].value("name", "?")
                                       : std::string(" follows no external image")) +
                                  "; pass --confirm to make it follow " + from +
                                  (before.value("importPolicy", json::object()) !=
                                           entry->value("importPolicy", json::object())
                                       ? " with the new import policy"
                                       : ""));
            image_stream_imports_from_object(obj);  // validates
            ctx.db.query(
                "INSERT INTO api_objects (kind, name, object, created) VALUES (?1, ?2, ?3, ?4) "
                "ON CONFLICT(kind, name) DO UPDATE SET object = excluded.object",
                {"ImageStream", name, obj.dump(), static_cast<int64_t>(time(nullptr))});
            spec_result = stored ? "configured" : "created";
        }
        stored = obj;
    } else if (!stored) {
        return send_error(res, 404,
                          "image stream \"" + name + "\" not found; create one that follows an " +
                              "external image with `cascade import-image " + name +
                              ":TAG --from REF --confirm`");
    }

    std::vector<registry::ImportSpec> specs;
    for (auto& spec : image_stream_imports_from_object(*stored))
        if (tag.empty() || spec.tag == tag) specs.push_back(std::move(spec));
    if (specs.empty())
        return send_error(
            res, 404,
            (tag.empty() ? "image stream \"" + name + "\" has no tag that follows"
                         : "image stream tag " + name + ":" + tag + " does not follow") +
                " an external image (spec.tags[].from.kind DockerImage); set one "
                "with `cascade import-image " +
                name + ":TAG --from REF --confirm`");

    json images = json::array();
    json requested = json::array();
    for (const auto& spec : specs) {
        requested.push_back(
            {{"from", {{"kind", "DockerImage"}, {"name", spec.from}}},
             {"to", {{"name", spec.tag}}},
             {"importPolicy", {{"scheduled", spec.scheduled}, {"insecure", spec.insecure}}}});
        try {
            auto r = ctx.importer->import(spec);
            images.push_back(
                {{"tag", spec.tag},
                 {"from", r.from},
                 {"status", {{"status", "Success"}}},
                 {"image",
                  {{"digest", r.digest.str()},
                   {"mediaType", r.media_type},
                   {"dockerImageReference", ctx.listen + "/" + name + "@" + r.digest.str()}}},
                 {"tagMoved", r.moved},
                 {"previous", r.previous ? r.previous->str() : ""},
                 {"generation", r.generation},
                 {"manifests", r.manifests},
                 {"blobsFetched", r.blobs_fetched},
                 {"blobsPresent", r.blobs_present}});
        } catch (const std::exception& e) {
            images.push_back(
                {{"tag", spec.tag},
                 {"from", spec.from},
                 {"status",
                  {{"status", "Failure"}, {"reason", "ImportFailed"}, {"message", e.what()}}},
                 {"tagMoved", false}});
        }
    }
    send_json(res, {{"apiVersion", "image.openshift.io/v1"},
                    {"kind", "ImageStreamImport"},
                    {"metadata", {{"name", name}}},
                    {"spec", {{"import", true}, {"images", requested}}},
                    {"status",
                     {{"specResult", spec_result},
                      {"images", images},
                      {"import", image_stream_json(ctx, name)}}}});
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
                if (!b || b->finished_phase()) {
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

// ---- image-stream tags, events, garbage collection ----

int64_t int_param(const httplib::Request& req, const char* name, int64_t fallback) {
    if (!req.has_param(name)) return fallback;
    std::string v = req.get_param_value(name);
    try {
        size_t used = 0;
        int64_t n = std::stoll(v, &used);
        if (used == v.size() && n >= 0) return n;
    } catch (const std::exception&) {
    }
    throw Error(std::string("query parameter ") + name + "=" + v + " is not a non-negative number");
}

bool flag_param(const httplib::Request& req, const char* name) {
    if (!req.has_param(name)) return false;
    auto v = req.get_param_value(name);
    return v != "false" && v != "0";
}

// POST /api/v1/tag {"source": "S:T" | "S@sha256:…" | "S:T#N", "destination": "D:T"}
void handle_tag(ApiContext& ctx, const httplib::Request& req, httplib::Response& res) {
    json body = json::parse(req.body);
    auto r = registry::tag_image(ctx.store, body.at("source").get<std::string>(),
                                 body.at("destination").get<std::string>());
    send_json(res, {{"repository", r.repository},
                    {"tag", r.tag},
                    {"digest", r.digest.str()},
                    {"source", body.at("source")},
                    {"moved", r.moved},
                    {"generation", r.generation},
                    {"cause", r.cause}});
}

// GET /api/v1/events[?since=ID|resourceVersion=ID][&limit=N][&watch=true]
// A list, or with watch=true newline-delimited JSON events (chunked), one per
// line, from the event after ID (from now when no ID is given) until the
// client leaves or the daemon stops. A quiet stream carries a
// {"type":"Bookmark","id":N} line every 10 s (the resume point, and how a
// dead client is noticed).
void handle_events(ApiContext& ctx, const httplib::Request& req, httplib::Response& res) {
    if (!ctx.events) return send_error(res, 503, "the event log is not running in this daemon");
    auto* events = ctx.events;
    int64_t since = int_param(req, "since", int_param(req, "resourceVersion", -1));
    if (!flag_param(req, "watch")) {
        auto limit =
            static_cast<size_t>(std::clamp<int64_t>(int_param(req, "limit", 100), 1, 10000));
        auto list = since >= 0 ? events->after(since, limit) : events->recent(limit);
        json items = json::array();
        for (const auto& e : list)
            items.push_back(registry::to_json(e));
        send_json(res, {{"apiVersion", "v1"},
                        {"kind", "EventList"},
                        {"metadata", {{"resourceVersion", std::to_string(events->latest_id())}}},
                        {"items", items}});
        return;
    }
    int64_t cursor = since >= 0 ? since : events->latest_id();
    res.set_chunked_content_provider(
        "application/x-ndjson", [events, cursor](size_t, httplib::DataSink& sink) mutable {
            auto quiet_since = std::chrono::steady_clock::now();
            while (!events->closed()) {
                auto batch = events->after(cursor, 500);
                for (const auto& e : batch) {
                    std::string line = registry::to_json(e).dump() + "\n";
                    if (!sink.write(line.data(), line.size())) return false;
                    cursor = e.id;
                }
                if (!batch.empty()) {
                    quiet_since = std::chrono::steady_clock::now();
                    continue;
                }
                if (std::chrono::steady_clock::now() - quiet_since > std::chrono::seconds(10)) {
                    std::string line = json{{"type", "Bookmark"},
                                            {"id", cursor},
                                            {"resourceVersion", std::to_string(cursor)}}
                                           .dump() +
                                       "\n";
                    if (!sink.write(line.data(), line.size())) return false;
                    quiet_since = std::chrono::steady_clock::now();
                }
                events->wait(cursor, std::chrono::seconds(1));
            }
            sink.done();
            return true;
        });
}

// POST /api/v1/gc[?dryRun=true]
void handle_gc(ApiContext& ctx, const httplib::Request& req, httplib::Response& res) {
    if (!ctx.gc) return send_error(res, 503, "garbage collection is not available in this daemon");
    send_json(res, registry::to_json(ctx.gc->run(flag_param(req, "dryRun"))));
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

    // A generic webhook (OpenShift's): POST starts a build caused by "webhook".
    server.Post(R"(/api/v1/buildconfigs/([^/]+)/webhooks/generic)",
                guarded([&ctx](const httplib::Request& req, httplib::Response& res) {
                    std::string name = req.matches[1];
                    if (!ctx.builds.config(name))
                        return send_error(res, 404, "build config \"" + name + "\" not found");
                    auto build = ctx.builds.start_build(name, "webhook (generic)",
                                                        engine::BuildCause::Webhook);
                    send_json(res, build_json(*ctx.builds.build(build)), 201);
                }));

    server.Post(R"(/api/v1/imagestreams/([^/]+)/import)",
                guarded([&ctx](const httplib::Request& req, httplib::Response& res) {
                    handle_import(ctx, req, res);
                }));

    server.Post(R"(/api/v1/builds/([^/]+)/cancel)",
                guarded([&ctx](const httplib::Request& req, httplib::Response& res) {
                    std::string name = req.matches[1];
                    if (!ctx.builds.build(name))
                        return send_error(
                            res, 404,
                            "build \"" + name + "\" not found; `cascade get builds` lists them");
                    bool cancelled = ctx.builds.cancel(name);
                    auto b = ctx.builds.build(name);
                    json out = b ? build_json(*b) : json::object();
                    out["cancelled"] = cancelled;
                    send_json(res, out);
                }));

    server.Get(R"(/api/v1/builds/([^/]+)/log)",
               guarded([&ctx](const httplib::Request& req, httplib::Response& res) {
                   handle_build_log(ctx, req, res);
               }));

    server.Post("/api/v1/build",
                guarded([&ctx](const httplib::Request& req, httplib::Response& res) {
                    handle_adhoc_build(ctx, req, res);
                }));

    server.Post("/api/v1/tag", guarded([&ctx](const httplib::Request& req, httplib::Response& res) {
                    handle_tag(ctx, req, res);
                }));
    server.Get("/api/v1/events",
               guarded([&ctx](const httplib::Request& req, httplib::Response& res) {
                   handle_events(ctx, req, res);
               }));
    server.Post("/api/v1/gc", guarded([&ctx](const httplib::Request& req, httplib::Response& res) {
                    handle_gc(ctx, req, res);
                }));
    // Stream names may contain '/' (team/app), which the generic route below
    // does not match.
    server.Get(R"(/api/v1/(imagestreams|imagestream|is)/(.+))",
               guarded([&ctx](const httplib::Request& req, httplib::Response& res) {
                   std::string name = req.matches[2];
                   if (!ctx.store.has_repository(name))
                       return send_error(res, 404,
                                         "imagestreams \"" + name +
                                             "\" not found; `cascade get imagestreams` lists them");
                   send_json(res, image_stream_json(ctx, name));
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

std::vector<registry::ImportSpec> image_stream_imports(registry::Database& db) {
    std::vector<registry::ImportSpec> out;
    for (const auto& row : db.rows("SELECT object FROM api_objects WHERE kind = 'ImageStream'")) {
        try {
            for (auto& spec :
                 image_stream_imports_from_object(json::parse(registry::as_text(row[0]))))
                out.push_back(std::move(spec));
        } catch (const std::exception&) {
            // Validated when applied; an object that no longer parses imports nothing.
        }
    }
    return out;
}

}  // namespace cascade::cli
