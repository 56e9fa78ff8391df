// Deployments: N replicas of an image stream tag, supervised, published
// through the router, and rolled out when the tag moves.
//
// The controller persists every replica it starts (deployment, revision,
// image digest, container id, pid) in the metadata store before relying on
// it, so after a crash of the daemon `recover()` re-adopts running replicas
// and removes leftovers. It is a child subreaper: replicas' init processes
// become its children and are reaped through pidfds.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "oci/digest.hpp"

namespace cascade::registry {
class Store;
class Database;
struct TagEvent;
}  // namespace cascade::registry

namespace cascade::runtime {

class ContainerHost;
class Router;

struct DeploymentSpec {
    std::string name;  // [a-z0-9-]
    std::string image_repository;
    std::string image_tag = "latest";
    uint16_t container_port = 0;  // readiness: this port accepts connections
    int replicas = 1;
    std::vector<std::string> env;   // "K=V", added to the image's
    std::vector<std::string> args;  // overrides Cmd when non-empty
    // Follow the tag: roll out automatically when it moves (ImageChange trigger).
    bool automatic = true;
    std::chrono::seconds ready_timeout{60};
    std::chrono::seconds stop_grace{10};
};

struct RouteSpec {
    std::string name;
    std::string deployment;
    std::string host = "127.0.0.1";
    uint16_t port = 0;
};

struct ReplicaStatus {
    std::string container_id;
    int revision = 0;
    oci::Digest image_digest;
    int pid = 0;
    std::string state;  // "starting", "ready", "stopping", "exited", "restarting"
    int restarts = 0;
};

struct DeploymentStatus {
    DeploymentSpec spec;
    int revision = 0;                  // latest revision
    std::optional<oci::Digest> image;  // digest of the latest revision
    std::string phase;  // "Pending", "Running", "RollingOut", "Failed", "Waiting for image"
    std::string message;
    int ready = 0;
    std::vector<ReplicaStatus> replicas;
};

class DeploymentController {
  public:
    DeploymentController(registry::Store& store, registry::Database& db, ContainerHost& host,
                         Router& router);
    ~DeploymentController();  // stops background threads; leaves containers running

    // Re-adopts replicas recorded before a restart (running ones are watched
    // again and put back behind their routes; dead ones are removed and
    // replaced) and re-publishes routes.
    void recover();

    // Creates or updates a deployment. A new one starts its replicas once its
    // tag resolves; a changed spec rolls out a new revision.
    void apply(const DeploymentSpec& spec);
    void apply_route(const RouteSpec& route);
    void remove(const std::string& name);  // stops its replicas
    void remove_route(const std::string& name);

    // Tag moves (from the store's subscription): deployments following the
    // tag roll out the new digest, one replica at a time: start new → ready →
    // into the router → old out of the router → drained → stopped.
    void on_tag_moved(const registry::TagEvent& event);

    // Blocks until no rollout is pending or running for `name` (all when
    // empty), or timeout. True when settled.
    bool wait_idle(const std::string& name, std::chrono::milliseconds timeout);

    std::vector<DeploymentStatus> list() const;
    std::optional<DeploymentStatus> get(const std::string& name) const;
    std::vector<RouteSpec> routes() const;

    // Stops every replica (graceful), for a clean daemon shutdown.
    void stop_all();

    // Progress lines ("app-a: rollout to revision 2 (sha256:…) started").
    void set_event_sink(
        std::function<void(const std::string& kind, const std::string& message)> sink);

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace cascade::runtime
