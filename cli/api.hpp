// The CLI's HTTP API under /api/v1/: list and get objects (Kubernetes-shaped
// JSON with status), apply, start builds, build logs, ad-hoc builds.
#pragma once

#include <atomic>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace httplib {
class Server;
}
namespace cascade::registry {
class Store;
class Database;
class Importer;
struct ImportSpec;
struct TagEvent;
class EventLog;
class GarbageCollector;
}  // namespace cascade::registry
namespace cascade::engine {
class Builder;
class BuildController;
}  // namespace cascade::engine
namespace cascade::runtime {
class DeploymentController;
class Router;
}  // namespace cascade::runtime

namespace cascade::cli {

struct ApiContext {
    registry::Store& store;
    registry::Database& db;
    engine::Builder& builder;
    engine::BuildController& builds;
    runtime::DeploymentController& deployments;
    std::string listen;  // "127.0.0.1:5000", for URLs
    // `cascade build` requests run on their own threads; the daemon waits
    // for them before it tears the components down.
    std::atomic<int> adhoc_builds{0};
    // Imports from other registries (POST /api/v1/imagestreams/NAME/import);
    // none: that call answers 503.
    registry::Importer* importer = nullptr;
    // The event log (GET /api/v1/events, ?watch=true) and the garbage
    // collector (POST /api/v1/gc); none: those calls answer 503.
    registry::EventLog* events = nullptr;
    registry::GarbageCollector* gc = nullptr;
    // The router, for routes' hostnames on its shared HTTP port (Route
    // spec.host, default "<route>.localhost"); none: hostnames are not served.
    runtime::Router* router = nullptr;
};

// Creates the object tables and registers the /api/v1/ routes; gives the
// routes recovered by the deployment controller their hostnames again.
void register_api_routes(httplib::Server& server, ApiContext& ctx);

// ImageStream tags that are aliases (spec.tags[].from.kind ImageStreamTag) of
// the tag that moved follow it: moved to the same digest, cause "tag
// <source>". Called from the store's subscription (aliases of aliases follow
// through the moves this makes).
void follow_image_stream_aliases(registry::Store& store, registry::Database& db,
                                 const registry::TagEvent& event);

// Every image stream tag that follows an external image, from the applied
// ImageStream objects (for the import schedule).
std::vector<registry::ImportSpec> image_stream_imports(registry::Database& db);

}  // namespace cascade::cli
