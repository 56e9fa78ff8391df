#include "cli/api.hpp"

#include <httplib.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <fstream>
#include <mutex>
#include <regex>
#include <set>
#include <thread>

#include "cli/objects.hpp"
#include "cli/selector.hpp"
#include "cli/template.hpp"
#include "engine/build_controller.hpp"
#include "engine/builder.hpp"
#include "engine/impact.hpp"
#include "oci/error.hpp"
#include "oci/fs.hpp"
#include "oci/image.hpp"
#include "oci/reference.hpp"
#include "registry/database.hpp"
#include "registry/events.hpp"
#include "registry/gc.hpp"
#include "registry/image_streams.hpp"
#include "registry/importer.hpp"
#include "registry/metrics.hpp"
#include "registry/store.hpp"
#include "runtime/deployment.hpp"
#include "runtime/deployment_records.hpp"
#include "runtime/logs.hpp"
#include "runtime/router.hpp"

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

// An error with its HTTP status: 404 (no such object), 409 (a conflict with
// the object's state), 501 (not implemented yet); plain errors answer 400.
struct HttpError : Error {
    int status;
    HttpError(int code, const std::string& message) : Error(message), status(code) {}
};

// Runs a handler, turning exceptions into JSON errors.
template <typename Fn>
httplib::Server::Handler guarded(Fn fn) {
    return [fn](const httplib::Request& req, httplib::Response& res) {
        try {
            fn(req, res);
        } catch (const HttpError& e) {
            send_error(res, e.status, e.what());
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
    // A tag whose last import failed says why (OpenShift's ImportSuccess
    // condition), also before it has any image.
    if (ctx.importer && obj.contains("spec")) {
        std::vector<registry::ImportSpec> imports;
        try {
            imports = image_stream_imports_from_object(obj);
        } catch (const std::exception&) {
        }
        for (const auto& spec : imports) {
            std::string error = ctx.importer->last_error(repo, spec.tag);
            if (error.empty()) continue;
            auto it = std::find_if(tags.begin(), tags.end(),
                                   [&](const json& t) { return t["tag"] == spec.tag; });
            if (it == tags.end()) {
                tags.push_back({{"tag", spec.tag}, {"items", json::array()}});
                it = tags.end() - 1;
            }
            (*it)["conditions"] = json::array({{{"type", "ImportSuccess"},
                                                {"status", "False"},
                                                {"reason", "ImportFailed"},
                                                {"message", error}}});
        }
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
    // The webhook URLs, with <secret> in place of the secret (like oc describe).
    json hooks = json::array();
    for (auto [type, path, secrets] : {std::tuple{"Generic", "generic", &spec.generic_secrets},
                                       std::tuple{"GitHub", "github", &spec.github_secrets}})
        if (!secrets->empty())
            hooks.push_back({{"type", type},
                             {"url", "http://" + ctx.listen + "/api/v1/buildconfigs/" + spec.name +
                                         "/webhooks/<secret>/" + path}});
    if (!hooks.empty()) obj["status"]["webhooks"] = hooks;
    // Not built yet because its base, a stream of ours, has no image: say so,
    // and why when the stream's import failed.
    std::string base = obj["status"]["from"];
    auto colon = base.rfind(':');
    std::string repo = colon == std::string::npos ? "" : base.substr(0, colon);
    std::string tag = colon == std::string::npos ? "" : base.substr(colon + 1);
    bool ours = !repo.empty() && base.find('/') == std::string::npos &&
                (stored_object(ctx.db, "ImageStream", repo) || !ctx.store.tags(repo).empty());
    if (builds.empty() && ours && !ctx.store.tag_digest(repo, tag)) {
        std::string error = ctx.importer ? ctx.importer->last_error(repo, tag) : "";
        obj["status"]["waiting"] = {
            {"for", base},
            {"message", error.empty() ? "image stream tag " + base +
                                            " has no image yet; the build starts when it has one"
                                      : "the import of " + base + " failed: " + error}};
    }
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
    json spec = {{"triggeredBy", json::array({{{"message", b.cause},
                                               {"type", engine::to_string(b.cause_kind)}}})}};
    if (b.revision.is_object()) spec["revision"] = b.revision;  // the git commit built
    return {{"apiVersion", "build.openshift.io/v1"},
            {"kind", "Build"},
            {"metadata",
             {{"name", b.name},
              {"creationTimestamp", rfc3339_ms(b.created)},
              {"labels", {{"buildconfig", b.config}}},
              {"annotations", {{"openshift.io/build.number", std::to_string(b.number)}}}}},
            {"spec", spec},
            {"status", status}};
}

// A build config's Generic or GitHub webhook (OpenShift's): the secret in
// the URL must be one of the config's triggers of that type. A GitHub ping
// starts nothing; a push (or a generic payload naming a git ref) to another
// branch than the config's ref starts nothing either.
void handle_build_webhook(ApiContext& ctx, const std::string& name, const std::string& secret,
                          const std::string& type, const httplib::Request& req,
                          httplib::Response& res) {
    auto spec = ctx.builds.config(name);
    if (!spec)
        return send_error(
            res, 404,
            "build config \"" + name + "\" not found; `cascade get buildconfigs` lists them");
    bool github = type == "github";
    const auto& secrets = github ? spec->github_secrets : spec->generic_secrets;
    const std::string label = github ? "GitHub" : "Generic";
    if (secrets.empty())
        return send_error(res, 403,
                          "build config \"" + name + "\" has no " + label +
                              " webhook trigger; add one to spec.triggers with a secret");
    bool match = false;
    for (const auto& s : secrets) {
        // Compared in full whatever differs, not to tell how much matched.
        unsigned diff = s.size() != secret.size();
        for (size_t i = 0; i < secret.size(); i++)
            diff |= static_cast<unsigned char>(secret[i]) ^
                    static_cast<unsigned char>(i < s.size() ? s[i] : 0);
        match = match || diff == 0;
    }
    if (!match)
        return send_error(res, 403,
                          "the secret does not match a " + label +
                              " webhook trigger of build config \"" + name + "\"");

    json payload = json::object();
    std::string body = req.body;
    if (req.get_header_value("Content-Type").rfind("application/x-www-form-urlencoded", 0) == 0)
        body = req.get_param_value("payload");
    if (!body.empty()) {
        payload = json::parse(body, nullptr, false);
        if (payload.is_discarded() || !payload.is_object())
            return send_error(res, 400,
                              label + " webhook of build config \"" + name +
                                  "\": the payload is not a JSON object");
    }
    std::string pushed_ref, commit;
    if (github) {
        auto event = req.get_header_value("X-GitHub-Event");
        if (event == "ping")
            return send_json(res, {{"kind", "Status"},
                                   {"status", "Success"},
                                   {"message", "pong: build config " + name + " is ready"},
                                   {"code", 200}});
        if (event != "push")
            return send_error(res, 400,
                              "GitHub webhook of build config \"" + name + "\": X-GitHub-Event \"" +
                                  event + "\" is not handled (push, ping)");
        pushed_ref = payload.value("ref", "");
        commit = payload.value("after", "");
    } else if (payload.contains("git") && payload["git"].is_object()) {
        pushed_ref = payload["git"].value("ref", "");
        commit = payload["git"].value("commit", "");
    }
    std::string cause = label + " webhook";
    if (!pushed_ref.empty()) {
        std::string branch = pushed_ref;
        for (const char* prefix : {"refs/heads/", "refs/tags/"})
            if (branch.rfind(prefix, 0) == 0) branch = branch.substr(std::strlen(prefix));
        if (!spec->git_ref.empty() && branch != spec->git_ref)
            return send_json(
                res, {{"kind", "Status"},
                      {"status", "Success"},
                      {"message", "no build: " + pushed_ref + " is not the ref build config " +
                                      name + " builds (" + spec->git_ref + ")"},
                      {"code", 200}});
        cause += ": " + pushed_ref + (commit.empty() ? "" : " at " + commit);
    } else if (!commit.empty()) {
        cause += ": commit " + commit;
    }
    auto build = ctx.builds.start_build(name, cause, engine::BuildCause::Webhook);
    send_json(res, build_json(*ctx.builds.build(build)), 201);
}

// The applied object of a deployment: a DeploymentConfig or a Deployment.
std::optional<json> stored_deployment(registry::Database& db, const std::string& name) {
    auto obj = stored_object(db, "DeploymentConfig", name);
    if (!obj) obj = stored_object(db, "Deployment", name);
    return obj;
}

int64_t stored_created(registry::Database& db, const std::string& kind, const std::string& name) {
    auto row =
        db.row("SELECT created FROM api_objects WHERE kind = ?1 AND name = ?2", {kind, name});
    return row ? registry::as_int((*row)[0]) : 0;
}

json revision_json(const runtime::RevisionInfo& r) {
    return {{"revision", r.revision},
            {"digest", r.digest.str()},
            {"image", r.spec.image_repository + ":" + r.spec.image_tag},
            {"cause", r.cause},
            {"status", r.status},
            {"message", r.message},
            {"created", r.created_unix > 0 ? oci::rfc3339(r.created_unix) : std::string()}};
}

json deployment_json(ApiContext& ctx, const runtime::DeploymentStatus& d) {
    json obj = stored_deployment(ctx.db, d.spec.name)
                   .value_or(json{{"apiVersion", "apps.openshift.io/v1"},
                                  {"kind", "DeploymentConfig"},
                                  {"metadata", {{"name", d.spec.name}}}});
    if (!obj["metadata"].contains("creationTimestamp")) {
        int64_t created = stored_created(ctx.db, obj.value("kind", ""), d.spec.name);
        if (created > 0) obj["metadata"]["creationTimestamp"] = oci::rfc3339(created);
    }
    if (!obj.contains("spec") || !obj["spec"].is_object()) obj["spec"] = json::object();
    obj["spec"]["replicas"] = d.spec.replicas;  // `scale` changes it
    json replicas = json::array();
    for (const auto& r : d.replicas) {
        replicas.push_back({{"name", r.container_id},
                            {"index", r.index},
                            {"revision", r.revision},
                            {"image", r.image_digest.str()},
                            {"pid", r.pid},
                            {"state", r.state},
                            {"restarts", r.restarts},
                            {"lastExit", r.last_exit},
                            {"message", r.message}});
    }
    json failed = json::array();
    for (const auto& f : d.failed_digests)
        failed.push_back(f.str());
    obj["status"] = {{"latestVersion", d.revision},
                     {"replicas", static_cast<int>(d.replicas.size())},
                     {"desiredReplicas", d.spec.replicas},
                     {"readyReplicas", d.ready},
                     {"updatedReplicas", d.updated},
                     {"paused", d.paused},
                     {"phase", d.phase},
                     {"message", d.message},
                     {"image", d.spec.image_repository + ":" + d.spec.image_tag},
                     {"imageDigest", d.image ? d.image->str() : ""},
                     {"failedDigests", failed},
                     {"template", runtime::to_json(d.spec)},  // as it runs, defaults filled in
                     {"pods", replicas}};
    return obj;
}

// A deployment's replicas as Kubernetes Pods (read-only): named by their
// container, labelled like the deployment's pod template (so `-l` selects
// them as a Service would) plus `deploymentconfig` and `deployment`
// (NAME-REVISION), as OpenShift labels a DeploymentConfig's pods.
std::vector<json> pods_of(const json& deployment) {
    std::vector<json> out;
    std::string name = deployment["metadata"].value("name", "");
    json labels = deployment.value("/spec/template/metadata/labels"_json_pointer, json::object());
    if (!labels.is_object()) labels = json::object();
    std::string container =
        deployment.value("/spec/template/spec/containers/0/name"_json_pointer, name);
    for (const auto& r : deployment["status"]["pods"]) {
        std::string state = r.value("state", "");
        int revision = r.value("revision", 0);
        json pod_labels = labels;
        pod_labels["deploymentconfig"] = name;
        pod_labels["deployment"] = name + "-" + std::to_string(revision);
        // Kubernetes' phases; `state` keeps cascade's finer one.
        std::string phase = state == "starting"    ? "Pending"
                            : state == "completed" ? "Succeeded"
                            : state == "exited"    ? "Failed"
                                                   : "Running";
        out.push_back(
            {{"apiVersion", "v1"},
             {"kind", "Pod"},
             {"metadata",
              {{"name", r.value("name", "")},
               {"labels", pod_labels},
               {"annotations",
                {{"openshift.io/deployment-config.name", name},
                 {"openshift.io/deployment-config.latest-version", std::to_string(revision)},
                 {"cascade.io/replica-index", std::to_string(r.value("index", 0))}}}}},
             {"spec", {{"containers", json::array({{{"name", container}}})}}},
             {"status",
              {{"phase", phase},
               {"state", state},
               {"message", r.value("message", "")},
               {"pid", r.value("pid", 0)},
               {"containerStatuses",
                json::array({{{"name", container},
                              {"ready", state == "ready"},
                              {"restartCount", r.value("restarts", 0)},
                              {"lastExitCode", r.value("lastExit", 0)},
                              {"imageID", r.value("image", "")},
                              {"containerID", "runc://" + r.value("name", "")}}})}}}});
    }
    return out;
}

// The Host header a route answers to on the router's shared HTTP port.
std::string route_hostname(ApiContext& ctx, const runtime::RouteSpec& r) {
    if (!r.hostname.empty()) return r.hostname;
    auto obj = stored_object(ctx.db, "Route", r.name);
    std::string host = obj ? obj->value("/spec/host"_json_pointer, std::string()) : "";
    return host.empty() ? r.name + ".localhost" : host;
}

// http://<hostname>:<shared port>/, or "" when the router has no shared port.
std::string hostname_url(ApiContext& ctx, const runtime::RouteSpec& r) {
    uint16_t port = ctx.router ? ctx.router->http_port() : 0;
    if (port == 0) return "";
    return "http://" + route_hostname(ctx, r) + (port == 80 ? "" : ":" + std::to_string(port)) +
           "/";
}

json route_json(ApiContext& ctx, const runtime::RouteSpec& r) {
    json obj = stored_object(ctx.db, "Route", r.name)
                   .value_or(json{{"apiVersion", "route.openshift.io/v1"},
                                  {"kind", "Route"},
                                  {"metadata", {{"name", r.name}}}});
    std::string hostname = route_hostname(ctx, r);
    obj["status"] = {
        {"url", route_url(r)},
        {"hostname", hostname},
        {"hostnameUrl", hostname_url(ctx, r)},
        {"ingress",
         json::array({{{"host", r.host + ":" + std::to_string(r.port)}, {"routerName", "cascade"}},
                      {{"host", hostname}, {"routerName", "cascade"}}})}};
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
        {"deploy", "deployments"},
        {"routes", "routes"},
        {"route", "routes"},
        {"services", "services"},
        {"service", "services"},
        {"svc", "services"},
        {"templates", "templates"},
        {"template", "templates"},
        {"pods", "pods"},
        {"pod", "pods"},
        {"po", "pods"},
    };
    auto it = aliases.find(kind);
    if (it == aliases.end())
        throw Error("unknown kind \"" + kind +
                    "\"; known: imagestreams (is), buildconfigs (bc), builds, deployments "
                    "(deploymentconfigs, dc), routes, services (svc), templates, pods (po)");
    return it->second;
}

// The applied objects of one kind, as applied (Service, Template), with
// their creation time.
std::vector<json> stored_objects(registry::Database& db, const std::string& kind) {
    std::vector<json> out;
    for (const auto& row :
         db.rows("SELECT object, created FROM api_objects WHERE kind = ?1 ORDER BY name", {kind})) {
        auto obj = json::parse(registry::as_text(row[0]));
        if (obj.contains("metadata") && obj["metadata"].is_object() &&
            !obj["metadata"].contains("creationTimestamp"))
            obj["metadata"]["creationTimestamp"] = oci::rfc3339(registry::as_int(row[1]));
        out.push_back(std::move(obj));
    }
    return out;
}

// A stream exists while it has a tag or an applied ImageStream (a deleted
// stream's repository keeps its untagged manifests until GC).
bool stream_exists(ApiContext& ctx, const std::string& name) {
    return stored_object(ctx.db, "ImageStream", name).has_value() || !ctx.store.tags(name).empty();
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
            if (stream_exists(ctx, repo)) items.push_back(image_stream_json(ctx, repo));
    } else if (kind == "buildconfigs") {
        for (const auto& c : ctx.builds.configs())
            items.push_back(build_config_json(ctx, c));
    } else if (kind == "builds") {
        // Builds carry their config's labels (as OpenShift's), so
        // `-l app=app-a` finds them too.
        std::map<std::string, json> config_labels;
        for (const auto& bc : stored_objects(ctx.db, "BuildConfig"))
            config_labels[bc["metadata"].value("name", "")] =
                bc["metadata"].value("labels", json::object());
        for (const auto& b : ctx.builds.builds()) {
            auto obj = build_json(b);
            auto it = config_labels.find(b.config);
            if (it != config_labels.end() && it->second.is_object())
                for (const auto& [k, v] : it->second.items())
                    if (!obj["metadata"]["labels"].contains(k)) obj["metadata"]["labels"][k] = v;
            obj["metadata"]["labels"]["openshift.io/build-config.name"] = b.config;
            items.push_back(std::move(obj));
        }
    } else if (kind == "services") {
        items = stored_objects(ctx.db, "Service");
    } else if (kind == "templates") {
        items = stored_objects(ctx.db, "Template");
    } else if (kind == "deployments") {
        for (const auto& d : ctx.deployments.list())
            items.push_back(deployment_json(ctx, d));
    } else if (kind == "pods") {
        for (const auto& d : ctx.deployments.list())
            for (auto& pod : pods_of(deployment_json(ctx, d)))
                items.push_back(std::move(pod));
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

// The order apply acts in: streams first (deployments and builds name them);
// routes before deployments, so a new deployment's first replica starts with no
// commit of the request still to come and is published the moment it is ready;
// build configs last, as their builds move tags the others follow.
int kind_order(const std::string& kind) {
    if (kind == "ImageStream") return 0;
    if (kind == "Route") return 1;
    if (kind == "DeploymentConfig" || kind == "Deployment") return 2;
    return 3;
}

// The router's counters for /metrics, per route and for the shared HTTP port.
std::vector<registry::Metrics::Family> router_families(ApiContext& ctx) {
    using Family = registry::Metrics::Family;
    if (!ctx.router) return {};
    Family connections{"cascade_route_connections_total",
                       "Client connections accepted for a route (on its port or by Host).",
                       "counter",
                       {}};
    Family failed{"cascade_route_failed_connections_total",
                  "Connections closed (shared port: answered 503) because no backend accepted.",
                  "counter",
                  {}};
    Family retried{"cascade_route_retried_requests_total",
                   "First requests resent to another backend after theirs closed unanswered.",
                   "counter",
                   {}};
    Family timeouts{"cascade_route_connect_timeouts_total",
                    "Backend connection attempts that got no answer in their time.",
                    "counter",
                    {}};
    Family active{"cascade_route_active_connections", "Connections open now.", "gauge", {}};
    Family bytes{"cascade_route_bytes_total", "Bytes forwarded, by direction.", "counter", {}};
    for (const auto& route : ctx.deployments.routes()) {
        auto st = ctx.router->stats(route.name);
        std::vector<std::pair<std::string, std::string>> l{{"route", route.name}};
        connections.samples.push_back({l, static_cast<double>(st.connections)});
        failed.samples.push_back({l, static_cast<double>(st.failed)});
        retried.samples.push_back({l, static_cast<double>(st.retried)});
        timeouts.samples.push_back({l, static_cast<double>(st.connect_timeouts)});
        active.samples.push_back({l, static_cast<double>(st.active)});
        bytes.samples.push_back(
            {{{"route", route.name}, {"direction", "in"}}, static_cast<double>(st.bytes_in)});
        bytes.samples.push_back(
            {{{"route", route.name}, {"direction", "out"}}, static_cast<double>(st.bytes_out)});
    }
    std::vector<Family> out{connections, failed, retried, timeouts, active, bytes};
    if (ctx.router->http_port() != 0) {
        auto http = ctx.router->http_stats();
        Family accepted{"cascade_router_http_connections_total",
                        "Connections accepted on the shared HTTP port.",
                        "counter",
                        {}};
        accepted.samples.push_back({{}, static_cast<double>(http.connections)});
        Family answered{"cascade_router_http_unrouted_total",
                        "Shared-port connections answered by the router itself: bad_request "
                        "(400, 408, 431) or unknown_host (404).",
                        "counter",
                        {}};
        answered.samples.push_back(
            {{{"reason", "bad_request"}}, static_cast<double>(http.bad_request)});
        answered.samples.push_back(
            {{{"reason", "unknown_host"}}, static_cast<double>(http.unknown_host)});
        out.push_back(accepted);
        out.push_back(answered);
    }
    return out;
}

// Whether a build config with both ConfigChange and ImageChange triggers
// builds FROM a tag of an image stream of ours (stored, or in this request)
// that has no image yet, e.g. while the stream's first import runs: building
// now would look the name up on Docker Hub; the ImageChange trigger starts the
// build when the tag arrives, as OpenShift does.
bool base_stream_has_no_image_yet(ApiContext& ctx, const std::vector<json>& items,
                                  const engine::BuildConfigSpec& spec) {
    if (!spec.config_change_trigger || !spec.image_change_trigger) return false;
    auto base = ctx.builds.base_of(spec);  // "repo:tag" for a stream of ours
    auto colon = base.rfind(':');
    if (colon == std::string::npos || base.find('/') != std::string::npos) return false;
    auto repo = base.substr(0, colon);
    bool ours =
        stream_exists(ctx, repo) || std::any_of(items.begin(), items.end(), [&](const json& o) {
            return object_kind(o) == "ImageStream" && object_name(o) == repo;
        });
    return ours && !ctx.store.tag_digest(repo, base.substr(colon + 1));
}

// Brings a deployment's pause state to spec.paused: paused before a changed
// template is applied (so it is recorded, not rolled out), resumed after.
void apply_paused(ApiContext& ctx, const std::string& name, bool paused, bool before,
                  json& warnings) {
    auto st = ctx.deployments.get(name);
    if (!st || st->paused == paused || paused != before) return;
    try {
        if (paused)
            ctx.deployments.pause(name);
        else
            ctx.deployments.resume(name);
    } catch (const std::exception& e) {
        warnings.push_back("deployment \"" + name + "\": spec.paused: " + e.what());
    }
}

// The objects of `kinds` by name: the applied ones, replaced by those of
// this request.
std::map<std::string, json> objects_of(ApiContext& ctx, const std::vector<json>& items,
                                       const std::vector<std::string>& kinds) {
    std::map<std::string, json> out;
    for (const auto& kind : kinds)
        for (const auto& row :
             ctx.db.rows("SELECT name, object FROM api_objects WHERE kind = ?1", {kind}))
            out[registry::as_text(row[0])] = json::parse(registry::as_text(row[1]));
    for (const auto& obj : items)
        if (std::find(kinds.begin(), kinds.end(), obj.value("kind", "")) != kinds.end())
            out[object_name(obj)] = obj;
    return out;
}

// The port of `deployment`'s first container named or numbered `wanted`, 0
// when there is none; `first` is set to its first port. As in Kubernetes, a
// number need not be declared (`ports` is informational); a name must be.
uint16_t container_port_of(const json& deployment, const std::string& wanted, uint16_t& first) {
    uint16_t found = 0;
    first = 0;
    auto cp = "/spec/template/spec/containers/0/ports"_json_pointer;
    if (deployment.contains(cp) && deployment.at(cp).is_array())
        for (const auto& p : deployment.at(cp)) {
            auto number = static_cast<uint16_t>(p.value("containerPort", 0));
            if (first == 0) first = number;
            if (found == 0 && (p.value("name", "") == wanted || std::to_string(number) == wanted))
                found = number;
        }
    if (found == 0 && !wanted.empty() && wanted.size() <= 5 &&
        wanted.find_first_not_of("0123456789") == std::string::npos) {
        int number = std::stoi(wanted);
        if (number >= 1 && number <= 65535) found = static_cast<uint16_t>(number);
    }
    return found;
}

// A Route whose spec.to is a Service: the one deployment the service's
// selector picks (by spec.template.metadata.labels), with spec.port.targetPort
// resolved through the service's ports (name or number) to a container port.
std::string route_service_target(ApiContext& ctx, const std::vector<json>& items, const json& route,
                                 uint16_t* target_port = nullptr) {
    std::string who = "Route \"" + object_name(route) + "\"";
    std::string svc_name = route.value("/spec/to/name"_json_pointer, std::string());
    auto services = objects_of(ctx, items, {"Service"});
    auto it = services.find(svc_name);
    if (it == services.end()) {
        // No such Service: a deployment of that name (as before Services
        // were applied) is the target.
        if (objects_of(ctx, items, {"DeploymentConfig", "Deployment"}).count(svc_name))
            return svc_name;
        throw Error(who + ": spec.to names Service \"" + svc_name +
                    "\", which is not applied, nor is a deployment of that name (apply the "
                    "Service with the route, or first)");
    }
    auto svc = service_from_object(it->second);
    std::string selector;
    for (const auto& [k, v] : svc.selector)
        selector += (selector.empty() ? "" : ",") + k + "=" + v;
    std::vector<std::string> matches;
    json chosen;
    for (const auto& [name, dc] : objects_of(ctx, items, {"DeploymentConfig", "Deployment"})) {
        std::map<std::string, std::string> labels;
        auto lp = "/spec/template/metadata/labels"_json_pointer;
        if (dc.contains(lp) && dc.at(lp).is_object())
            for (const auto& [k, v] : dc.at(lp).items())
                labels[k] = v.is_string() ? v.get<std::string>() : v.dump();
        if (selector_matches(svc.selector, labels)) {
            matches.push_back(name);
            chosen = dc;
        }
    }
    if (matches.empty())
        throw Error(who + ": Service \"" + svc_name + "\" (selector " + selector +
                    ") selects no DeploymentConfig or Deployment (by spec.template.metadata."
                    "labels)");
    if (matches.size() > 1) {
        std::string list;
        for (const auto& m : matches)
            list += (list.empty() ? "" : ", ") + m;
        throw Error(who + ": Service \"" + svc_name + "\" (selector " + selector +
                    ") selects several deployments (" + list +
                    "); a route goes to one: narrow the selector");
    }
    auto tp = "/spec/port/targetPort"_json_pointer;
    if (!route.contains(tp)) return matches[0];
    const auto& target = route.at(tp);
    std::string wanted = target.is_string() ? target.get<std::string>() : target.dump();
    const ServicePort* port = nullptr;
    std::string known;
    for (const auto& p : svc.ports) {
        if (p.name == wanted || std::to_string(p.port) == wanted) port = &p;
        known += (known.empty() ? "" : ", ") + (p.name.empty() ? "" : p.name + "/") +
                 std::to_string(p.port);
    }
    if (!port)
        throw Error(who + ": spec.port.targetPort \"" + wanted + "\" is not a port of Service \"" +
                    svc_name + "\" (" + known + ")");
    // The service port's targetPort: a container port number or name.
    uint16_t first = 0;
    uint16_t container_port = container_port_of(chosen, port->target_port, first);
    if (container_port == 0)
        throw Error(who + ": Service \"" + svc_name + "\" port " + std::to_string(port->port) +
                    " targets \"" + port->target_port + "\", which is not a container port of " +
                    matches[0] + " (spec.template.spec.containers[0].ports)");
    // The route forwards to that port (0: the deployment's first port).
    if (target_port) *target_port = container_port == first ? 0 : container_port;
    return matches[0];
}

// A Route straight to a DeploymentConfig or Deployment: spec.port.targetPort,
// a container port's name or number, picks the port it forwards to (0: the
// deployment's first port, also without targetPort).
uint16_t route_deployment_target_port(ApiContext& ctx, const std::vector<json>& items,
                                      const json& route) {
    auto tp = "/spec/port/targetPort"_json_pointer;
    if (!route.contains(tp)) return 0;
    const auto& target = route.at(tp);
    std::string wanted = target.is_string() ? target.get<std::string>() : target.dump();
    std::string who = "Route \"" + object_name(route) + "\"";
    std::string name = route.value("/spec/to/name"_json_pointer, std::string());
    auto deployments = objects_of(ctx, items, {"DeploymentConfig", "Deployment"});
    auto it = deployments.find(name);
    json deployment = it == deployments.end() ? json::object() : it->second;
    uint16_t first = 0;
    uint16_t port = container_port_of(deployment, wanted, first);
    if (port == 0 && it == deployments.end())
        throw Error(who + ": spec.port.targetPort \"" + wanted + "\" names a port of " + name +
                    ", which is not applied (apply the deployment with the route, or first)");
    if (port == 0) {
        std::string known;
        auto cp = "/spec/template/spec/containers/0/ports"_json_pointer;
        if (it->second.contains(cp) && it->second.at(cp).is_array())
            for (const auto& p : it->second.at(cp))
                known += (known.empty() ? "" : ", ") +
                         (p.value("name", "").empty() ? "" : p.value("name", "") + "/") +
                         std::to_string(p.value("containerPort", 0));
        throw Error(who + ": spec.port.targetPort \"" + wanted +
                    "\" is neither a port number nor the name of a container port of " + name +
                    " (" + (known.empty() ? "it declares none" : known) +
                    "; spec.template.spec.containers[0].ports)");
    }
    return port == first ? 0 : port;
}

// The template of a deployment spec (what a ConfigChange trigger reacts to):
// everything but the replica count and the image trigger's automatic flag.
bool deployment_template_differs(runtime::DeploymentSpec a, runtime::DeploymentSpec b) {
    a.replicas = b.replicas;
    a.automatic = b.automatic;
    return runtime::to_json(a) != runtime::to_json(b);
}

// Refuses objects that, with the stored build configs and image streams,
// would make a cycle of image-change triggers (a cascade without end): 422
// with the cycle spelled out.
void refuse_trigger_cycle(ApiContext& ctx, const std::vector<json>& items) {
    bool relevant = std::any_of(items.begin(), items.end(), [](const json& obj) {
        auto kind = object_kind(obj);
        return kind == "BuildConfig" || kind == "ImageStream";
    });
    if (!relevant) return;
    auto aliases_of = [](const json& obj) {
        std::vector<engine::GraphAlias> out;
        for (const auto& a : image_stream_aliases_from_object(obj))
            out.push_back({a.repository + ":" + a.tag, a.source_repository + ":" + a.source_tag});
        return out;
    };
    std::map<std::string, engine::GraphBuild> builds;
    for (const auto& c : ctx.builds.configs())
        builds[c.name] = ctx.builds.graph_build(c);
    std::map<std::string, std::vector<engine::GraphAlias>> aliases;  // by stream
    for (const auto& row :
         ctx.db.rows("SELECT name, object FROM api_objects WHERE kind = 'ImageStream'")) {
        try {
            aliases[registry::as_text(row[0])] = aliases_of(json::parse(registry::as_text(row[1])));
        } catch (const std::exception&) {
            // A stored stream that no longer parses has no aliases.
        }
    }
    for (const auto& obj : items) {
        auto kind = object_kind(obj);
        if (kind == "BuildConfig") {
            auto spec = build_config_from_object(obj);
            builds[spec.name] = ctx.builds.graph_build(spec);
        } else if (kind == "ImageStream") {
            aliases[object_name(obj)] = aliases_of(obj);
        }
    }
    std::vector<engine::GraphBuild> nodes;
    for (auto& [name, b] : builds)
        nodes.push_back(std::move(b));
    std::vector<engine::GraphAlias> edges;
    for (auto& [stream, list] : aliases)
        edges.insert(edges.end(), list.begin(), list.end());
    if (auto cycle = engine::TriggerGraph(std::move(nodes), std::move(edges)).find_cycle())
        throw HttpError(422,
                        "image-change triggers would form a cycle: " + engine::spell_cycle(*cycle) +
                            "; each build would start the next forever. Nothing was "
                            "applied: change a BuildConfig's FROM (strategy.dockerStrategy."
                            "from) or output, or an ImageStream tag's from");
}

// Applies the objects (all validated first; nothing changes when one is
// wrong). Warnings (fields that are ignored, ...) are appended to `warnings`.
json apply_objects(ApiContext& ctx, std::vector<json> items, json& warnings) {
    // Validate everything before changing anything.
    std::map<std::string, std::string> hostnames;  // hostname → route, of this request
    for (auto& obj : items) {
        auto kind = object_kind(obj);
        auto name = object_name(obj);
        object_labels(obj);
        for (auto& w : unknown_field_warnings(obj))
            warnings.push_back(std::move(w));
        if (kind == "BuildConfig") {
            build_config_from_object(obj);
        } else if (kind == "DeploymentConfig" || kind == "Deployment") {
            std::vector<std::string> found;
            deployment_from_object(obj, &found);
            for (auto& w : found)
                warnings.push_back(std::move(w));
            std::string other = kind == "Deployment" ? "DeploymentConfig" : "Deployment";
            if (stored_object(ctx.db, other, name))
                throw HttpError(409, kind + " \"" + name + "\": a " + other +
                                         " of that name exists; both would be deployment " + name +
                                         " (rename one)");
        } else if (kind == "Route") {
            auto route = route_from_object(obj);
            std::string hostname = route.hostname.empty() ? name + ".localhost" : route.hostname;
            for (const auto& r : ctx.deployments.routes())
                if (r.name != name && route_hostname(ctx, r) == hostname)
                    throw HttpError(409, "Route \"" + name + "\": spec.host " + hostname +
                                             " is already the host of route " + r.name);
            auto [it, added] = hostnames.emplace(hostname, name);
            if (!added && it->second != name)
                throw HttpError(409, "Route \"" + name + "\": spec.host " + hostname +
                                         " is also the host of route " + it->second);
            if (route_target_kind(obj) == "Service")
                route_service_target(ctx, items, obj);
            else
                route_deployment_target_port(ctx, items, obj);
        } else if (kind == "ImageStream") {
            image_stream_imports_from_object(obj);
            image_stream_aliases_from_object(obj);
            image_stream_lookup_local(obj);
        } else if (kind == "Service") {
            service_from_object(obj);
        } else if (kind == "Template") {
            throw Error("Template \"" + name +
                        "\": a template is processed by the client: `cascade apply -f FILE "
                        "--param NAME=VALUE` creates its objects, `cascade create -f FILE` "
                        "stores it for `cascade new-app --template=NAME`");
        } else {
            throw Error("kind \"" + kind +
                        "\" is not supported; supported kinds: BuildConfig, DeploymentConfig, "
                        "Deployment, Route, Service, ImageStream, List");
        }
    }
    refuse_trigger_cycle(ctx, items);
    std::vector<size_t> order(items.size());
    for (size_t i = 0; i < order.size(); ++i)
        order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
        return kind_order(items[a]["kind"]) < kind_order(items[b]["kind"]);
    });
    // Results in the request's order, as oc prints them.
    std::vector<json> result_of(items.size());
    // One fsync per request: every write here is Relaxed but the last object's
    // row, whose Full commit makes the whole WAL before it durable before the
    // client hears that its objects are applied (registry/database.hpp).
    using Durability = registry::Database::Durability;
    for (size_t index : order) {
        auto& obj = items[index];
        Durability durability = index == order.back() ? Durability::Full : Durability::Relaxed;
        auto kind = object_kind(obj);
        auto name = object_name(obj);
        obj.erase("status");
        auto old = stored_object(ctx.db, kind, name);
        std::string result = !old ? "created" : (*old == obj ? "unchanged" : "configured");
        if (kind == "BuildConfig") {
            auto spec = build_config_from_object(obj);
            bool build_now = !base_stream_has_no_image_yet(ctx, items, spec);
            ctx.builds.apply(spec, build_now);
        } else if (kind == "DeploymentConfig" || kind == "Deployment") {
            bool paused = deployment_paused(obj);
            apply_paused(ctx, name, paused, true, warnings);
            auto spec = deployment_from_object(obj);
            auto current = ctx.deployments.get(name);
            if (current && !deployment_config_change(obj) &&
                deployment_template_differs(spec, current->spec)) {
                // No ConfigChange trigger: the new template is recorded (the
                // stored object) and rolls out with `rollout latest`.
                warnings.push_back(kind + " \"" + name +
                                   "\": the template changed but there is no ConfigChange "
                                   "trigger: recorded, not rolled out (`cascade rollout latest " +
                                   name + "` rolls it out)");
                auto kept = current->spec;
                kept.replicas = spec.replicas;
                kept.automatic = spec.automatic;
                spec = kept;
            }
            ctx.deployments.apply(spec, Durability::Relaxed);
            apply_paused(ctx, name, paused, false, warnings);
            if (paused && !old) apply_paused(ctx, name, paused, true, warnings);
        } else if (kind == "Route") {
            auto route = route_from_object(obj);
            if (route_target_kind(obj) == "Service")
                route.deployment = route_service_target(ctx, items, obj, &route.target_port);
            else
                route.target_port = route_deployment_target_port(ctx, items, obj);
            if (route.port == 0) {
                // Keep the port a route already has; else pick a free one.
                for (const auto& r : ctx.deployments.routes())
                    if (r.name == route.name) route.port = r.port;
                if (route.port == 0) route.port = pick_free_port(ctx.deployments.routes());
            }
            ctx.deployments.apply_route(route, Durability::Relaxed);
            if (ctx.router)
                ctx.router->set_hostname(route.name, route.hostname.empty()
                                                         ? route.name + ".localhost"
                                                         : route.hostname);
        }
        ctx.db.transaction(
            [&] {
                ctx.db.query(
                    "INSERT INTO api_objects (kind, name, object, created) VALUES (?1, ?2, ?3, "
                    "?4) ON CONFLICT(kind, name) DO UPDATE SET object = excluded.object",
                    {kind, name, obj.dump(), static_cast<int64_t>(time(nullptr))});
            },
            durability);
        // Like OpenShift, a new or changed stream imports its tags right away.
        if (kind == "ImageStream" && result != "unchanged" && ctx.importer)
            for (const auto& spec : image_stream_imports_from_object(obj))
                ctx.importer->enqueue(spec);
        // An alias starts at its source's current digest (and follows it:
        // follow_image_stream_aliases).
        if (kind == "ImageStream" && result != "unchanged")
            for (const auto& a : image_stream_aliases_from_object(obj)) {
                auto source = a.source_repository + ":" + a.source_tag;
                if (!ctx.store.tag_digest(a.source_repository, a.source_tag)) continue;
                try {
                    registry::tag_image(ctx.store, source, a.repository + ":" + a.tag);
                } catch (const std::exception& e) {
                    warnings.push_back("ImageStream \"" + name + "\": tag " + a.tag +
                                       " (alias of " + source + "): " + e.what());
                }
            }
        result_of[index] = {{"kind", kind}, {"name", name}, {"result", result}};
    }
    json results = json::array();
    for (auto& r : result_of)
        results.push_back(std::move(r));
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

// GET /api/v1/impact?image=NAME[:TAG|@DIGEST]: every image and replica
// built on the image (directly or through other images), current or not.
void handle_impact(ApiContext& ctx, const httplib::Request& req, httplib::Response& res) {
    std::string image = req.get_param_value("image");
    if (image.empty())
        throw HttpError(400, "impact: the image parameter is missing (?image=NAME[:TAG|@DIGEST])");
    engine::ImpactInput in;
    in.target_repository = engine::repository_of(image);
    std::string tag = "latest", digest;
    if (auto at = image.find('@'); at != std::string::npos) {
        digest = image.substr(at + 1);
    } else {
        auto colon = image.rfind(':');
        auto slash = image.rfind('/');
        if (colon != std::string::npos && (slash == std::string::npos || colon > slash))
            tag = image.substr(colon + 1);
    }
    const auto& repo = in.target_repository;
    if (!ctx.store.has_repository(repo))
        throw HttpError(404, "impact: no image stream \"" + repo +
                                 "\" in this registry; `cascade get is` lists them");
    if (!digest.empty()) {
        if (!oci::Digest::try_parse(digest) || !ctx.store.resolve(repo, digest))
            throw HttpError(404, "impact: " + repo + " has no manifest " + digest);
        in.current_digest = digest;
        auto tags = ctx.store.tags(repo);
        if (std::find(tags.begin(), tags.end(), "latest") == tags.end() && !tags.empty())
            tag = tags.front();
        in.target = repo + "@" + digest;
    } else {
        auto current = ctx.store.tag_digest(repo, tag);
        if (!current)
            throw HttpError(404, "impact: " + repo + " has no tag " + tag +
                                     "; `cascade describe is " + repo + "` lists its tags");
        in.current_digest = current->str();
        in.target = repo + ":" + tag;
    }
    for (const auto& h : ctx.store.tag_history(repo, tag))  // newest first
        in.generations.emplace(h.digest.str(), h.generation);
    // A digest's base: its build record, else its manifest's annotations.
    std::map<std::string, engine::ImpactBase> bases;
    for (const auto& b : ctx.builds.builds())
        if (b.phase == "Complete" && !b.image_digest.empty() && !b.base_digest.empty())
            bases[b.image_digest] = {b.base_name, b.base_digest};
    auto repositories = ctx.store.repositories();
    in.base_of = [&](const std::string& d) -> std::optional<engine::ImpactBase> {
        if (auto it = bases.find(d); it != bases.end()) return it->second;
        for (const auto& r : repositories) {
            auto m = ctx.store.resolve(r, d);
            if (!m) continue;
            auto doc = json::parse(ctx.store.manifest_bytes(*m), nullptr, false);
            auto annotations = doc.is_object() ? doc.value("annotations", json::object()) : json();
            if (!annotations.is_object()) break;
            std::string base_digest =
                annotations.value(std::string(oci::kAnnotationBaseDigest), std::string());
            if (base_digest.empty()) break;
            engine::ImpactBase base{
                annotations.value(std::string(oci::kAnnotationBaseName), std::string()),
                base_digest};
            bases[d] = base;
            return base;
        }
        return std::nullopt;
    };
    for (const auto& r : repositories)
        for (const auto& t : ctx.store.tags(r))
            if (auto d = ctx.store.tag_digest(r, t)) in.images.emplace_back(r + ":" + t, d->str());
    for (const auto& d : ctx.deployments.list())
        for (const auto& r : d.replicas)
            in.replicas.push_back(
                {d.spec.name, r.index, r.image_digest.str(), r.state, r.container_id});
    send_json(res, engine::compute_impact(in).to_json());
}

// POST /api/v1/gc[?dryRun=true]
void handle_gc(ApiContext& ctx, const httplib::Request& req, httplib::Response& res) {
    if (!ctx.gc) return send_error(res, 503, "garbage collection is not available in this daemon");
    send_json(res, registry::to_json(ctx.gc->run(flag_param(req, "dryRun"))));
}

// ---- deployments: scale, rollout, history, logs, exec ----

runtime::DeploymentStatus deployment_or_404(ApiContext& ctx, const std::string& name) {
    auto d = ctx.deployments.get(name);
    if (!d)
        throw HttpError(
            404, "deployment \"" + name + "\" not found; `cascade get deployments` lists them");
    return *d;
}

// Runs a controller operation whose errors are conflicts with the
// deployment's state (409), or 501 for one not implemented yet.
template <typename Fn>
void controller_call(Fn fn, int status = 409) {
    try {
        fn();
    } catch (const HttpError&) {
        throw;
    } catch (const std::exception& e) {
        std::string message = e.what();
        throw HttpError(message.find("not yet") != std::string::npos ? 501 : status, message);
    }
}

// ?replica=N / {"replica": N}: must name an existing replica (404 otherwise).
std::optional<int> replica_index(const runtime::DeploymentStatus& d, std::optional<int64_t> n) {
    if (!n) return std::nullopt;
    std::string known;
    for (const auto& r : d.replicas) {
        if (r.index == *n) return static_cast<int>(*n);
        known += (known.empty() ? "" : ", ") + std::to_string(r.index);
    }
    throw HttpError(404, "deployment \"" + d.spec.name + "\" has no replica " + std::to_string(*n) +
                             " (replicas: " + (known.empty() ? std::string("none") : known) + ")");
}

// Keeps the applied object in step with scale and pause/resume (as
// Kubernetes' spec does), so `get -o json` and a later apply see them.
void update_stored_spec(ApiContext& ctx, const std::string& name, const std::string& field,
                        const json& value) {
    for (const char* kind : {"DeploymentConfig", "Deployment"}) {
        auto obj = stored_object(ctx.db, kind, name);
        if (!obj) continue;
        (*obj)["spec"][field] = value;
        ctx.db.query("UPDATE api_objects SET object = ?3 WHERE kind = ?1 AND name = ?2",
                     {std::string(kind), name, obj->dump()});
    }
}

// POST /api/v1/deployments/NAME/scale {"replicas": N}
void handle_scale(ApiContext& ctx, const httplib::Request& req, httplib::Response& res) {
    std::string name = req.matches[1];
    deployment_or_404(ctx, name);
    json body = req.body.empty() ? json::object() : json::parse(req.body);
    if (!body.contains("replicas") || !body["replicas"].is_number_integer() ||
        body["replicas"].get<int64_t>() < 0 || body["replicas"].get<int64_t>() > 10000)
        throw HttpError(400, "scale: replicas must be a whole number from 0 to 10000");
    int replicas = body["replicas"].get<int>();
    controller_call([&] { ctx.deployments.scale(name, replicas); });
    update_stored_spec(ctx, name, "replicas", replicas);
    send_json(res, deployment_json(ctx, deployment_or_404(ctx, name)));
}

// POST /api/v1/deployments/NAME/rollout/(pause|resume|restart|retry|undo)
// undo: {"toRevision": N} (default: the revision before the latest).
void handle_rollout(ApiContext& ctx, const httplib::Request& req, httplib::Response& res) {
    std::string name = req.matches[1];
    std::string action = req.matches[2];
    auto d = deployment_or_404(ctx, name);
    json body = req.body.empty() ? json::object() : json::parse(req.body);
    std::string done;
    if (action == "pause") {
        if (d.paused) throw HttpError(409, "deployment \"" + name + "\" is already paused");
        controller_call([&] { ctx.deployments.pause(name); });
        update_stored_spec(ctx, name, "paused", true);
        done = "paused";
    } else if (action == "resume") {
        if (!d.paused) throw HttpError(409, "deployment \"" + name + "\" is not paused");
        controller_call([&] { ctx.deployments.resume(name); });
        update_stored_spec(ctx, name, "paused", false);
        done = "resumed";
    } else if (action == "restart") {
        controller_call([&] { ctx.deployments.restart(name); });
        done = "restarted";
    } else if (action == "latest") {
        // The applied template (held back without a ConfigChange trigger),
        // else the same template again: a new revision either way.
        auto obj = stored_deployment(ctx.db, name);
        auto spec = obj ? deployment_from_object(*obj) : d.spec;
        spec.replicas = d.spec.replicas;
        if (deployment_template_differs(spec, d.spec))
            controller_call([&] { ctx.deployments.apply(spec); });
        else
            controller_call([&] { ctx.deployments.restart(name); });
        done = "rolled out";
    } else if (action == "retry") {
        controller_call([&] { ctx.deployments.retry(name); });
        done = "retried";
    } else if (action == "undo") {
        std::optional<int> to;
        if (body.contains("toRevision") && !body["toRevision"].is_null()) {
            if (!body["toRevision"].is_number_integer() || body["toRevision"].get<int64_t>() < 1)
                throw HttpError(400,
                                "rollout undo: toRevision must be a revision number (1, 2, …)");
            to = body["toRevision"].get<int>();
            auto history = ctx.deployments.history(name);
            bool known =
                std::any_of(history.begin(), history.end(),
                            [&](const runtime::RevisionInfo& r) { return r.revision == *to; });
            if (!known && !history.empty())
                throw HttpError(404, "deployment \"" + name + "\" has no revision " +
                                         std::to_string(*to) + "; `cascade rollout history " +
                                         name + "` lists them");
        }
        controller_call([&] { ctx.deployments.undo(name, to); });
        done = "rolled back";
    } else {
        throw HttpError(404, "unknown rollout action \"" + action +
                                 "\" (pause, resume, restart, latest, retry, undo)");
    }
    json out = deployment_json(ctx, deployment_or_404(ctx, name));
    out["result"] = done;
    send_json(res, out);
}

// GET /api/v1/deployments/NAME/history: the revisions, oldest first.
void handle_history(ApiContext& ctx, const httplib::Request& req, httplib::Response& res) {
    std::string name = req.matches[1];
    deployment_or_404(ctx, name);
    json items = json::array();
    std::vector<runtime::RevisionInfo> history;
    controller_call([&] { history = ctx.deployments.history(name); });
    for (const auto& r : history)
        items.push_back(revision_json(r));
    send_json(res, {{"apiVersion", "v1"}, {"kind", "RevisionList"}, {"items", items}});
}

// GET /api/v1/deployments/NAME/log[?follow=true][&previous=true][&replica=N][&tail=N]
// A replica's log (default: the lowest ready one); with follow, streamed until
// the replica's container is gone or the client leaves.
void handle_deployment_log(ApiContext& ctx, const httplib::Request& req, httplib::Response& res) {
    std::string name = req.matches[1];
    auto d = deployment_or_404(ctx, name);
    std::optional<int64_t> requested;
    if (req.has_param("replica")) requested = int_param(req, "replica", 0);
    auto replica = replica_index(d, requested);
    std::optional<size_t> tail;
    if (req.has_param("tail")) tail = static_cast<size_t>(int_param(req, "tail", 0));
    bool previous = flag_param(req, "previous");
    bool follow = flag_param(req, "follow") && !previous;
    std::filesystem::path path;
    controller_call([&] { path = ctx.deployments.replica_log(name, replica, previous); }, 404);
    if (!follow) {
        res.set_content(runtime::read_log(path, tail), "text/plain");
        return;
    }
    // The container followed: the replica chosen as replica_log chooses.
    std::string container;
    const runtime::ReplicaStatus* chosen = nullptr;
    for (const auto& r : d.replicas) {
        if (replica) {
            if (r.index == *replica) chosen = &r;
            continue;
        }
        bool ready = r.state == "ready";
        bool chosen_ready = chosen && chosen->state == "ready";
        if (!chosen || (ready != chosen_ready ? ready : r.index < chosen->index)) chosen = &r;
    }
    if (chosen) container = chosen->container_id;
    auto follower = std::make_shared<runtime::LogFollower>(path, true, tail);
    auto* deployments = &ctx.deployments;
    auto* events = ctx.events;
    res.set_chunked_content_provider("text/plain", [follower, deployments, events, name, container](
                                                       size_t, httplib::DataSink& sink) {
        auto alive = [&] {
            if (events && events->closed()) return false;
            auto now = deployments->get(name);
            if (!now) return false;
            return std::any_of(
                now->replicas.begin(), now->replicas.end(),
                [&](const runtime::ReplicaStatus& r) { return r.container_id == container; });
        };
        while (true) {
            bool running = alive();
            std::string data = follower->read_new();
            if (!data.empty() && !sink.write(data.data(), data.size())) return false;
            if (!running) break;
            if (data.empty()) {
                if (!sink.is_writable()) return false;
                std::this_thread::sleep_for(std::chrono::milliseconds(200));
            }
        }
        sink.done();
        return true;
    });
}

std::string read_back(int fd) {
    lseek(fd, 0, SEEK_SET);
    return fs::read_all(fd, "exec output", size_t{64} << 20);
}

// POST /api/v1/deployments/NAME/exec {"command": [...], "replica": N}
// → {"exitCode": N, "stdout": "...", "stderr": "..."}
void handle_exec(ApiContext& ctx, const httplib::Request& req, httplib::Response& res) {
    std::string name = req.matches[1];
    auto d = deployment_or_404(ctx, name);
    json body = json::parse(req.body);
    if (!body.contains("command") || !body["command"].is_array() || body["command"].empty())
        throw HttpError(400, "exec: command must be a non-empty list of strings");
    auto argv = body["command"].get<std::vector<std::string>>();
    std::optional<int64_t> requested;
    if (body.contains("replica") && !body["replica"].is_null())
        requested = body["replica"].get<int64_t>();
    auto replica = replica_index(d, requested);
    fs::Fd out(memfd_create("cascade-exec-stdout", MFD_CLOEXEC));
    fs::Fd err(memfd_create("cascade-exec-stderr", MFD_CLOEXEC));
    if (!out || !err) throw sys_error("memfd_create", "exec output", errno);
    int code = 0;
    controller_call(
        [&] { code = ctx.deployments.exec(name, replica, argv, out.get(), err.get()); });
    send_json(
        res,
        {{"exitCode", code}, {"stdout", read_back(out.get())}, {"stderr", read_back(err.get())}});
}

// Routes recovered after a restart get their hostnames on the shared port
// again (the Route objects hold spec.host).
void publish_hostnames(ApiContext& ctx) {
    if (!ctx.router) return;
    for (const auto& r : ctx.deployments.routes()) {
        try {
            ctx.router->set_hostname(r.name, route_hostname(ctx, r));
        } catch (const std::exception&) {
            // A hostname that became invalid or taken: the route keeps its own port.
        }
    }
}

// ---- delete (DELETE /api/v1/KIND/NAME, DELETE /api/v1/KIND?labelSelector=) ----

// The kinds `delete all` removes, in this order: build configs first (so no
// build moves a tag meanwhile), what runs, then the streams. Templates are
// not part of `all` (as in OpenShift).
const std::vector<std::string> kAllKinds = {"buildconfigs", "builds",   "deployments",
                                            "routes",       "services", "imagestreams"};

// "deploymentconfigs.apps.openshift.io", as oc names a resource in messages.
std::string qualified_resource(const std::string& resource) {
    static const std::map<std::string, std::string> groups = {
        {"imagestreams", "imagestreams.image.openshift.io"},
        {"buildconfigs", "buildconfigs.build.openshift.io"},
        {"builds", "builds.build.openshift.io"},
        {"deployments", "deploymentconfigs.apps.openshift.io"},
        {"routes", "routes.route.openshift.io"},
        {"templates", "templates.template.openshift.io"}};
    auto it = groups.find(resource);
    return it == groups.end() ? resource : it->second;
}

void erase_stored(registry::Database& db, const std::string& kind, const std::string& name) {
    db.query("DELETE FROM api_objects WHERE kind = ?1 AND name = ?2", {kind, name});
}

// Deletes one listed object of `resource` with what runs for it: a
// deployment's replicas (stopped and removed), a route's listener, a build
// config's queued and running builds and their records, a stream's tags
// (its blobs are left to the garbage collector). Returns {kind, name}.
json delete_object(ApiContext& ctx, const std::string& resource, const json& item) {
    std::string name = item["metadata"]["name"];
    std::string kind = item.value("kind", "");
    if (resource == "deployments") {
        ctx.deployments.remove(name);
        erase_stored(ctx.db, "DeploymentConfig", name);
        erase_stored(ctx.db, "Deployment", name);
    } else if (resource == "routes") {
        ctx.deployments.remove_route(name);
        erase_stored(ctx.db, "Route", name);
    } else if (resource == "buildconfigs") {
        ctx.builds.remove(name);  // drops its queued builds
        for (const auto& b : ctx.builds.builds(name))
            ctx.builds.delete_build(b.name);  // cancels a running one
        erase_stored(ctx.db, "BuildConfig", name);
    } else if (resource == "builds") {
        ctx.builds.delete_build(name);
    } else if (resource == "imagestreams") {
        for (const auto& tag : ctx.store.tags(name))
            ctx.store.delete_tag(name, tag);
        erase_stored(ctx.db, "ImageStream", name);
    } else if (resource == "services") {
        erase_stored(ctx.db, "Service", name);
    } else if (resource == "templates") {
        erase_stored(ctx.db, "Template", name);
    } else if (resource == "pods") {
        std::string owner = item.value("/metadata/labels/deploymentconfig"_json_pointer, name);
        throw HttpError(405, "pod \"" + name + "\" belongs to deployment " + owner +
                                 ", which keeps its replicas: `cascade scale " + owner +
                                 " --replicas N` or `cascade rollout restart " + owner +
                                 "` replace them, `cascade delete dc " + owner + "` removes them");
    } else {
        throw HttpError(405, "cannot delete " + resource);
    }
    return {{"kind", kind}, {"name", name}, {"resource", resource}};
}

json deleted_list(json items) {
    return {{"apiVersion", "v1"}, {"kind", "List"}, {"items", std::move(items)}};
}

void handle_delete_one(ApiContext& ctx, const std::string& kind_text, const std::string& name,
                       httplib::Response& res) {
    auto resource = canonical_kind(kind_text);
    std::optional<json> found;
    if (resource == "imagestreams") {
        if (stream_exists(ctx, name)) found = image_stream_json(ctx, name);
    } else {
        for (auto& item : list_kind(ctx, resource))
            if (item["metadata"]["name"] == name) found = std::move(item);
    }
    if (!found) throw HttpError(404, qualified_resource(resource) + " \"" + name + "\" not found");
    send_json(res, deleted_list(json::array({delete_object(ctx, resource, *found)})));
}

// ?labelSelector=SEL (or ?all=true for every object of the kind); KIND may
// be `all`.
void handle_delete_many(ApiContext& ctx, const httplib::Request& req, httplib::Response& res) {
    std::string kind_text = req.matches[1];
    std::string text = req.has_param("labelSelector") ? req.get_param_value("labelSelector") : "";
    auto selector = LabelSelector::parse(text);
    if (selector.empty() && !flag_param(req, "all"))
        throw HttpError(400, "delete " + kind_text +
                                 ": name the objects, or select them with a label selector "
                                 "(-l app=NAME), or pass --all");
    std::vector<std::string> resources =
        kind_text == "all" ? kAllKinds : std::vector<std::string>{canonical_kind(kind_text)};
    json deleted = json::array();
    for (const auto& resource : resources)
        for (const auto& item : list_kind(ctx, resource))
            if (selector.matches_object(item))
                deleted.push_back(delete_object(ctx, resource, item));
    send_json(res, deleted_list(std::move(deleted)));
}

}  // namespace

void register_api_routes(httplib::Server& server, ApiContext& ctx) {
    ctx.db.migrate("api-objects-1", kSchema);
    publish_hostnames(ctx);

    // Prometheus text format 0.0.4: the counters of registry/metrics.hpp and
    // the replicas of each deployment by state.
    server.Get("/metrics", guarded([&ctx](const httplib::Request&, httplib::Response& res) {
                   registry::Metrics::Gauges replicas;
                   for (const auto& d : ctx.deployments.list())
                       for (const auto& r : d.replicas)
                           replicas[{d.spec.name, r.state}]++;
                   res.set_content(registry::metrics().render(replicas, router_families(ctx)),
                                   "text/plain; version=0.0.4; charset=utf-8");
               }));

    server.Post(R"(/api/v1/(?:deployments|deployment|deploymentconfigs|dc)/([^/]+)/scale)",
                guarded([&ctx](const httplib::Request& req, httplib::Response& res) {
                    handle_scale(ctx, req, res);
                }));
    server.Post(
        R"(/api/v1/(?:deployments|deployment|deploymentconfigs|dc)/([^/]+)/rollout/([a-z]+))",
        guarded([&ctx](const httplib::Request& req, httplib::Response& res) {
            handle_rollout(ctx, req, res);
        }));
    server.Get(R"(/api/v1/(?:deployments|deployment|deploymentconfigs|dc)/([^/]+)/history)",
               guarded([&ctx](const httplib::Request& req, httplib::Response& res) {
                   handle_history(ctx, req, res);
               }));
    server.Get(R"(/api/v1/(?:deployments|deployment|deploymentconfigs|dc)/([^/]+)/log)",
               guarded([&ctx](const httplib::Request& req, httplib::Response& res) {
                   handle_deployment_log(ctx, req, res);
               }));
    server.Post(R"(/api/v1/(?:deployments|deployment|deploymentconfigs|dc)/([^/]+)/exec)",
                guarded([&ctx](const httplib::Request& req, httplib::Response& res) {
                    handle_exec(ctx, req, res);
                }));

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
                routes.push_back({{"name", r.name},
                                  {"url", route_url(r)},
                                  {"hostnameUrl", hostname_url(ctx, r)}});
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
                    // `cascade create`: nothing is applied when one object exists (as oc).
                    if (req.get_param_value("create") == "true")
                        for (const auto& item : items) {
                            auto kind = object_kind(item);
                            auto name = object_name(item);
                            if (stored_object(ctx.db, kind, name) ||
                                (kind == "ImageStream" && stream_exists(ctx, name)))
                                throw HttpError(409, "AlreadyExists: " + kind + " \"" + name +
                                                         "\" already exists; `cascade apply -f` "
                                                         "updates it, or delete it first");
                        }
                    json warnings = json::array();
                    auto results = apply_objects(ctx, std::move(items), warnings);
                    send_json(res, {{"results", results}, {"warnings", warnings}});
                }));

    // `cascade create -f` of a Template: stored for `cascade new-app --template=NAME`
    // (GET /api/v1/templates[/NAME] lists them), never processed here.
    server.Post(
        "/api/v1/templates", guarded([&ctx](const httplib::Request& req, httplib::Response& res) {
            json tmpl = json::parse(req.body);
            validate_template(tmpl);
            auto name = object_name(tmpl);
            tmpl.erase("status");
            if (stored_object(ctx.db, "Template", name))
                throw HttpError(409, "AlreadyExists: Template \"" + name +
                                         "\" already exists; delete it first to store "
                                         "another version");
            ctx.db.query(
                "INSERT INTO api_objects (kind, name, object, created) VALUES (?1, ?2, "
                "?3, ?4)",
                {std::string("Template"), name, tmpl.dump(), static_cast<int64_t>(time(nullptr))});
            send_json(
                res,
                {{"results",
                  json::array({{{"kind", "Template"}, {"name", name}, {"result", "created"}}})}},
                201);
        }));

    server.Post(R"(/api/v1/buildconfigs/([^/]+)/instantiate)",
                guarded([&ctx](const httplib::Request& req, httplib::Response& res) {
                    std::string name = req.matches[1];
                    if (!ctx.builds.config(name))
                        return send_error(
                            res, 404,
                            "build config \"" + name +
                                "\" not found; `cascade get buildconfigs` lists them");
                    // --from-dir: a directory on the daemon's host (the CLI sends
                    // its absolute path), OpenShift's binary build input.
                    std::string from_dir;
                    if (!req.body.empty()) {
                        auto body = json::parse(req.body);
                        from_dir = body.value("fromDir", "");
                    }
                    if (!from_dir.empty() && from_dir.front() != '/')
                        return send_error(res, 400,
                                          "fromDir \"" + from_dir + "\" must be an absolute path");
                    auto build = ctx.builds.start_build(
                        name,
                        from_dir.empty() ? "manual (start-build)"
                                         : "manual (start-build --from-dir " + from_dir + ")",
                        engine::BuildCause::Manual, from_dir);
                    send_json(res, build_json(*ctx.builds.build(build)), 201);
                }));

    // Webhooks (OpenShift's): .../buildconfigs/NAME/webhooks/SECRET/generic|github,
    // also under OpenShift's own path (any namespace).
    server.Post(R"(/api/v1/buildconfigs/([^/]+)/webhooks/([^/]+)/(generic|github))",
                guarded([&ctx](const httplib::Request& req, httplib::Response& res) {
                    handle_build_webhook(ctx, req.matches[1], req.matches[2], req.matches[3], req,
                                         res);
                }));
    server.Post(
        R"(/apis/build.openshift.io/v1/namespaces/[^/]+/buildconfigs/([^/]+)/webhooks/([^/]+)/(generic|github))",
        guarded([&ctx](const httplib::Request& req, httplib::Response& res) {
            handle_build_webhook(ctx, req.matches[1], req.matches[2], req.matches[3], req, res);
        }));
    // The webhook URL without a secret (before triggers had secrets): refused.
    server.Post(R"(/api/v1/buildconfigs/([^/]+)/webhooks/(generic|github))",
                guarded([](const httplib::Request& req, httplib::Response& res) {
                    std::string name = req.matches[1];
                    send_error(res, 403,
                               "a webhook URL names its secret: POST /api/v1/buildconfigs/" + name +
                                   "/webhooks/SECRET/" + std::string(req.matches[2]) +
                                   " with the secret of a " +
                                   (req.matches[2] == "github" ? "GitHub" : "Generic") +
                                   " trigger in spec.triggers");
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
    server.Get("/api/v1/impact",
               guarded([&ctx](const httplib::Request& req, httplib::Response& res) {
                   handle_impact(ctx, req, res);
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
                   if (!stream_exists(ctx, name))
                       return send_error(res, 404,
                                         "imagestreams \"" + name +
                                             "\" not found; `cascade get imagestreams` lists them");
                   send_json(res, image_stream_json(ctx, name));
               }));

    server.Get(
        R"(/api/v1/([a-z]+))", guarded([&ctx](const httplib::Request& req, httplib::Response& res) {
            auto kind = canonical_kind(req.matches[1]);
            auto items = list_kind(ctx, kind);
            if (req.has_param("labelSelector")) {
                auto selector = LabelSelector::parse(req.get_param_value("labelSelector"));
                std::erase_if(items, [&](const json& o) { return !selector.matches_object(o); });
            }
            auto list = list_of(std::move(items));
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

    // DELETE: one object (stream names may contain '/'), or those a label
    // selector picks (KIND may be `all`); answers a List of what was deleted.
    server.Delete(R"(/api/v1/(imagestreams|imagestream|is)/(.+))",
                  guarded([&ctx](const httplib::Request& req, httplib::Response& res) {
                      handle_delete_one(ctx, req.matches[1], req.matches[2], res);
                  }));
    server.Delete(R"(/api/v1/([a-z]+)/([^/]+))",
                  guarded([&ctx](const httplib::Request& req, httplib::Response& res) {
                      handle_delete_one(ctx, req.matches[1], req.matches[2], res);
                  }));
    server.Delete(R"(/api/v1/([a-z]+))",
                  guarded([&ctx](const httplib::Request& req, httplib::Response& res) {
                      handle_delete_many(ctx, req, res);
                  }));
}

void follow_image_stream_aliases(registry::Store& store, registry::Database& db,
                                 const registry::TagEvent& event) {
    for (const auto& row : db.rows("SELECT object FROM api_objects WHERE kind = 'ImageStream'")) {
        std::vector<ImageStreamAlias> aliases;
        try {
            aliases = image_stream_aliases_from_object(json::parse(registry::as_text(row[0])));
        } catch (const std::exception&) {
            continue;  // validated when applied
        }
        for (const auto& a : aliases) {
            if (a.source_repository != event.repository || a.source_tag != event.tag) continue;
            try {
                registry::tag_image(store, event.repository + ":" + event.tag,
                                    a.repository + ":" + a.tag);
            } catch (const std::exception& e) {
                std::fprintf(stderr, "cascade: alias %s:%s of %s:%s did not follow: %s\n",
                             a.repository.c_str(), a.tag.c_str(), event.repository.c_str(),
                             event.tag.c_str(), e.what());
            }
        }
    }
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
