// The CLI's HTTP API under /api/v1/: list and get objects (Kubernetes-shaped
// JSON with status), apply, start builds, build logs, ad-hoc builds.
#pragma once

#include <atomic>
#include <filesystem>
#include <memory>
#include <string>

namespace httplib {
class Server;
}
namespace cascade::registry {
class Store;
class Database;
}  // namespace cascade::registry
namespace cascade::engine {
class Builder;
class BuildController;
}  // namespace cascade::engine
namespace cascade::runtime {
class DeploymentController;
}

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
};

// Creates the object tables and registers the /api/v1/ routes.
void register_api_routes(httplib::Server& server, ApiContext& ctx);

}  // namespace cascade::cli
