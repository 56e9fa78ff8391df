#include "runtime/deployment_records.hpp"

#include "oci/error.hpp"
#include "registry/database.hpp"

namespace cascade::runtime {

using registry::as_int;
using registry::as_text;
using registry::is_null;
using registry::SqlValue;

nlohmann::json to_json(const DeploymentSpec& s) {
    return {
        {"name", s.name},
        {"imageRepository", s.image_repository},
        {"imageTag", s.image_tag},
        {"containerPort", s.container_port},
        {"replicas", s.replicas},
        {"env", s.env},
        {"args", s.args},
        {"automatic", s.automatic},
        {"readyTimeoutSeconds", s.strategy.timeout.count()},
        {"stopGraceSeconds", s.stop_grace.count()},
    };
}

DeploymentSpec deployment_spec_from_json(const nlohmann::json& j) {
    try {
        DeploymentSpec s;
        s.name = j.at("name").get<std::string>();
        s.image_repository = j.at("imageRepository").get<std::string>();
        s.image_tag = j.value("imageTag", std::string("latest"));
        s.container_port = j.value("containerPort", uint16_t{0});
        s.replicas = j.value("replicas", 1);
        s.env = j.value("env", std::vector<std::string>{});
        s.args = j.value("args", std::vector<std::string>{});
        s.automatic = j.value("automatic", true);
        s.strategy.timeout = std::chrono::seconds(j.value("readyTimeoutSeconds", int64_t{60}));
        s.stop_grace = std::chrono::seconds(j.value("stopGraceSeconds", int64_t{10}));
        return s;
    } catch (const nlohmann::json::exception& e) {
        throw Error(std::string("stored deployment spec is invalid: ") + e.what());
    }
}

DeploymentRecords::DeploymentRecords(registry::Database& db) : db_(db) {
    db_.migrate("runtime-deployments-1", R"sql(
CREATE TABLE IF NOT EXISTS runtime_deployments (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    revision INTEGER NOT NULL DEFAULT 0,
    digest TEXT,
    phase TEXT NOT NULL DEFAULT 'Pending',
    message TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS runtime_replicas (
    container_id TEXT PRIMARY KEY,
    deployment TEXT NOT NULL,
    revision INTEGER NOT NULL,
    image_digest TEXT NOT NULL,
    pid INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL,
    restarts INTEGER NOT NULL DEFAULT 0,
    spec TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runtime_replicas_by_deployment ON runtime_replicas(deployment);
CREATE TABLE IF NOT EXISTS runtime_routes (
    name TEXT PRIMARY KEY,
    deployment TEXT NOT NULL,
    host TEXT NOT NULL,
    port INTEGER NOT NULL
);
)sql");
}

void DeploymentRecords::save_deployment(const DeploymentRecord& d) {
    db_.query(
        "INSERT INTO runtime_deployments(name, spec, revision, digest, phase, message) "
        "VALUES(?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(name) DO UPDATE SET spec = excluded.spec, "
        "revision = excluded.revision, digest = excluded.digest, phase = excluded.phase, "
        "message = excluded.message",
        {d.spec.name, to_json(d.spec).dump(), int64_t{d.revision},
         d.digest ? SqlValue(d.digest->str()) : SqlValue(nullptr), d.phase, d.message});
}

void DeploymentRecords::delete_deployment(const std::string& name) {
    db_.query("DELETE FROM runtime_deployments WHERE name = ?1", {name});
}

std::vector<DeploymentRecord> DeploymentRecords::deployments() {
    std::vector<DeploymentRecord> out;
    for (auto& row : db_.rows("SELECT name, spec, revision, digest, phase, message FROM "
                              "runtime_deployments ORDER BY name")) {
        DeploymentRecord d;
        try {
            d.spec = deployment_spec_from_json(nlohmann::json::parse(as_text(row[1])));
        } catch (const std::exception& e) {
            throw Error("deployment " + as_text(row[0]) + " in the metadata database: " + e.what());
        }
        d.revision = static_cast<int>(as_int(row[2]));
        if (!is_null(row[3])) d.digest = oci::Digest::try_parse(as_text(row[3]));
        d.phase = as_text(row[4]);
        d.message = as_text(row[5]);
        out.push_back(std::move(d));
    }
    return out;
}

void DeploymentRecords::save_replica(const ReplicaRecord& r) {
    db_.query(
        "INSERT INTO runtime_replicas(container_id, deployment, revision, image_digest, pid, "
        "state, "
        "restarts, spec) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT(container_id) DO "
        "UPDATE SET revision = excluded.revision, image_digest = excluded.image_digest, "
        "pid = excluded.pid, state = excluded.state, restarts = excluded.restarts, "
        "spec = excluded.spec",
        {r.container_id, r.deployment, int64_t{r.revision}, r.image_digest.str(), int64_t{r.pid},
         r.state, int64_t{r.restarts}, to_json(r.spec).dump()});
}

void DeploymentRecords::delete_replica(const std::string& container_id) {
    db_.query("DELETE FROM runtime_replicas WHERE container_id = ?1", {container_id});
}

std::vector<ReplicaRecord> DeploymentRecords::replicas() {
    std::vector<ReplicaRecord> out;
    for (auto& row :
         db_.rows("SELECT container_id, deployment, revision, image_digest, pid, state, "
                  "restarts, spec FROM runtime_replicas ORDER BY container_id")) {
        ReplicaRecord r;
        r.container_id = as_text(row[0]);
        r.deployment = as_text(row[1]);
        r.revision = static_cast<int>(as_int(row[2]));
        if (auto d = oci::Digest::try_parse(as_text(row[3]))) r.image_digest = *d;
        r.pid = static_cast<int>(as_int(row[4]));
        r.state = as_text(row[5]);
        r.restarts = static_cast<int>(as_int(row[6]));
        try {
            r.spec = deployment_spec_from_json(nlohmann::json::parse(as_text(row[7])));
        } catch (const std::exception&) {
            r.spec.name = r.deployment;  // unreadable: the deployment's current spec is used
        }
        out.push_back(std::move(r));
    }
    return out;
}

void DeploymentRecords::save_route(const RouteSpec& r) {
    db_.query(
        "INSERT INTO runtime_routes(name, deployment, host, port) VALUES(?1, ?2, ?3, ?4) "
        "ON CONFLICT(name) DO UPDATE SET deployment = excluded.deployment, host = excluded.host, "
        "port = excluded.port",
        {r.name, r.deployment, r.host, int64_t{r.port}});
}

void DeploymentRecords::delete_route(const std::string& name) {
    db_.query("DELETE FROM runtime_routes WHERE name = ?1", {name});
}

std::vector<RouteSpec> DeploymentRecords::routes() {
    std::vector<RouteSpec> out;
    for (auto& row :
         db_.rows("SELECT name, deployment, host, port FROM runtime_routes ORDER BY name")) {
        RouteSpec r;
        r.name = as_text(row[0]);
        r.deployment = as_text(row[1]);
        r.host = as_text(row[2]);
        r.port = static_cast<uint16_t>(as_int(row[3]));
        out.push_back(std::move(r));
    }
    return out;
}

}  // namespace cascade::runtime
