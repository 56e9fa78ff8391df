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
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "oci/digest.hpp"
#include "registry/database.hpp"
#include "runtime/pod_spec.hpp"

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
    // The port the router forwards to (the first container port); without a
    // readiness probe, a replica is ready once this port accepts connections.
    uint16_t container_port = 0;
    std::vector<uint16_t> ports;  // every declared container port (container_port first)
    int replicas = 1;
    std::vector<std::string> env;      // "K=V", added to the image's
    std::vector<std::string> command;  // overrides Entrypoint when non-empty
    std::vector<std::string> args;     // overrides Cmd when non-empty
    std::string working_dir;           // overrides WorkingDir when non-empty
    std::string user;                  // overrides User when non-empty
    std::string hostname;              // empty: the replica's container id
    bool readonly_rootfs = false;
    // The seccomp filter also admits the host's 32-bit ABIs (x86, x32), for
    // 32-bit binaries in a 64-bit image; off: native only, which starts
    // faster (runtime/seccomp.hpp). A 32-bit image gets them regardless.
    bool seccomp_compat_arches = false;
    // Follow the tag: roll out automatically when it moves (ImageChange trigger).
    bool automatic = true;
    ProbeSpec readiness, liveness, startup;  // unset readiness: see container_port;
                                             // unset both: the image's HEALTHCHECK
    Resources resources;
    std::vector<VolumeMount> volumes;
    RestartPolicy restart_policy = RestartPolicy::Always;
    RolloutStrategy strategy;
    std::chrono::seconds stop_grace{30};  // terminationGracePeriodSeconds
    std::map<std::string, std::string> labels;
};

struct RouteSpec {
    std::string name;
    std::string deployment;
    std::string host = "127.0.0.1";  // address of the route's own port
    uint16_t port = 0;               // the route's own port (0: picked by apply)
    std::string hostname;            // Host header on the shared HTTP port;
                                     // empty: "<name>.localhost"
    uint16_t target_port = 0;        // the replicas' port it forwards to;
                                     // 0: the deployment's container_port
};

struct ReplicaStatus {
    std::string container_id;
    int index = 0;  // 0..replicas-1, stable across restarts (`--replica N`)
    int revision = 0;
    oci::Digest image_digest;
    int pid = 0;
    // "starting", "ready", "unready", "stopping", "exited", "restarting",
    // "CrashLoopBackOff" (exited repeatedly; restarts after the backoff shown
    // in `message`), "completed" (exited, restart policy says stay down)
    std::string state;
    int restarts = 0;
    int last_exit = 0;
    std::string message;
};

struct DeploymentStatus {
    DeploymentSpec spec;
    int revision = 0;                  // latest revision
    std::optional<oci::Digest> image;  // digest of the latest revision
    // "Pending", "Waiting for image", "RollingOut", "Running", "Paused",
    // "Failed" (the latest revision failed and was rolled back: `message` says
    // why and to which revision)
    std::string phase;
    std::string message;
    int ready = 0;
    int updated = 0;  // replicas of the latest revision
    bool paused = false;
    // Digests rolled back automatically: the image trigger does not roll them
    // out again until a newer digest arrives or `rollout retry`.
    std::vector<oci::Digest> failed_digests;
    std::vector<ReplicaStatus> replicas;
};

// One numbered revision: every change of image digest or template makes one.
struct RevisionInfo {
    int revision = 0;
    oci::Digest digest;
    DeploymentSpec spec;  // the template at that revision
    // Why it was made: "image change (app-a:latest → sha256:…)", "config
    // change", "rollback to revision 2 (revision 3 failed: …)", "undo to
    // revision 2", "restart", "retry", "initial".
    std::string cause;
    // "Pending", "RollingOut", "Complete", "Failed", "Superseded"
    std::string status;
    std::string message;
    int64_t created_unix = 0;
};

// A step of a rollout, for the event log (`cascade events`).
struct RolloutEvent {
    std::string deployment;
    int revision = 0;
    std::string digest;
    std::string phase;   // "Started", "Progress", "Complete", "Failed"
    int updated = 0;     // Progress: ready replicas of the revision
    int replicas = 0;    // of this many
    std::string cause;   // Started: why the revision was made
    std::string reason;  // Failed: why
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
    // `durability`: Relaxed when the caller commits durably (Full) before it
    // reports success, as the API's apply does with its objects: that commit
    // makes these durable too (registry/database.hpp).
    void apply(const DeploymentSpec& spec,
               registry::Database::Durability durability = registry::Database::Durability::Full);
    void apply_route(const RouteSpec& route, registry::Database::Durability durability =
                                                 registry::Database::Durability::Full);
    void remove(const std::string& name);  // stops its replicas
    void remove_route(const std::string& name);

    // Tag moves (from the store's subscription): deployments following the
    // tag roll out the new digest, one replica at a time: start new → ready →
    // into the router → old out of the router → drained → stopped.
    void on_tag_moved(const registry::TagEvent& event);

    // Sets the replica count (scale); a rollout in progress uses it from its
    // next step. Throws for an unknown deployment or a negative count.
    void scale(const std::string& name, int replicas);

    // `rollout pause|resume|restart|undo|retry`. Paused: tag moves and spec
    // changes are recorded but not rolled out until resume. Restart: a new
    // revision of the same digest and template (every replica replaced by the
    // strategy). Undo: a new revision with the digest and template of
    // `to_revision` (default: the revision before the latest). Retry: forgets
    // the failed digests and rolls out the tag's current digest again. Each
    // throws cascade::Error with a clear message (unknown deployment or
    // revision, nothing to undo to, ...).
    void pause(const std::string& name);
    void resume(const std::string& name);
    void restart(const std::string& name);
    void undo(const std::string& name, std::optional<int> to_revision = std::nullopt);
    void retry(const std::string& name);
    std::vector<RevisionInfo> history(const std::string& name) const;  // oldest first

    // The log file of a replica (index; default: the lowest ready one, else
    // the lowest), or of its previous container instance (before its last
    // restart) when `previous`. Rotated parts are `<path>.1`, `<path>.2`, …
    // (higher = older). Throws when there is no such replica or no previous
    // instance.
    std::filesystem::path replica_log(const std::string& name, std::optional<int> replica,
                                      bool previous) const;
    // `runc exec` of argv in a replica (as above); output to the fds; returns
    // the exit status.
    int exec(const std::string& name, std::optional<int> replica,
             const std::vector<std::string>& argv, int stdout_fd, int stderr_fd);

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
    // Rollout steps (started, each replica of the new revision ready, the
    // result), called from the rollout's thread.
    void set_rollout_hook(std::function<void(const RolloutEvent& event)> hook);

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace cascade::runtime
