// The supervisor's persistent state in the metadata database: deployments
// (spec, latest revision and its digest, phase), replicas (one row per
// container, written before the container starts) and routes.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "oci/digest.hpp"
#include "runtime/deployment.hpp"

namespace cascade::registry {
class Database;
}

namespace cascade::runtime {

nlohmann::json to_json(const DeploymentSpec& spec);
DeploymentSpec deployment_spec_from_json(const nlohmann::json& j);

struct DeploymentRecord {
    DeploymentSpec spec;
    int revision = 0;
    std::optional<oci::Digest> digest;
    std::string phase;
    std::string message;
    bool paused = false;
    // Digests rolled back automatically (the image trigger skips them).
    std::vector<oci::Digest> failed_digests;
};

struct ReplicaRecord {
    std::string container_id;
    std::string deployment;
    int revision = 0;
    oci::Digest image_digest;
    int pid = 0;
    std::string state;
    int restarts = 0;
    DeploymentSpec spec;       // the deployment's spec at this replica's revision
    int index = -1;            // 0..replicas-1 within its revision (-1: not assigned)
    std::string previous_log;  // the log of the instance before the last restart
    int last_exit = 0;
};

class DeploymentRecords {
  public:
    explicit DeploymentRecords(registry::Database& db);  // creates the tables

    void save_deployment(const DeploymentRecord& d);
    void delete_deployment(const std::string& name);
    std::vector<DeploymentRecord> deployments();

    void save_replica(const ReplicaRecord& r);
    void delete_replica(const std::string& container_id);
    std::vector<ReplicaRecord> replicas();

    // Numbered revisions of a deployment (oldest first); deleted with it.
    void save_revision(const std::string& deployment, const RevisionInfo& r);
    std::vector<RevisionInfo> revisions(const std::string& deployment);

    void save_route(const RouteSpec& r);
    void delete_route(const std::string& name);
    std::vector<RouteSpec> routes();

    // Runs the saves in `fn` as one transaction (one commit, one fsync).
    // The database's lock is held throughout: take no lock in `fn` that a
    // thread may hold while it saves.
    void transaction(const std::function<void()>& fn);
    // The same for the controller's own progress (replica rows, revision status,
    // phases): committed without an fsync of its own (Durability::Relaxed in
    // registry/database.hpp). What a client asked for (apply, scale, pause,
    // routes) goes through transaction() or the plain saves, which are Full.
    void progress(const std::function<void()>& fn);

  private:
    registry::Database& db_;
};

}  // namespace cascade::runtime
