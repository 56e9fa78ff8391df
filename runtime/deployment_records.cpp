#include "runtime/deployment_records.hpp"

#include "oci/error.hpp"
#include "registry/database.hpp"

namespace cascade::runtime {

using registry::as_int;
using registry::as_text;
using registry::is_null;
using registry::SqlValue;

namespace {

const char* probe_kind_name(ProbeSpec::Kind k) {
    switch (k) {
        case ProbeSpec::Kind::Tcp:
            return "tcp";
        case ProbeSpec::Kind::Http:
            return "http";
        case ProbeSpec::Kind::Exec:
            return "exec";
        case ProbeSpec::Kind::None:
            break;
    }
    return "none";
}

ProbeSpec::Kind probe_kind_from(const std::string& s) {
    if (s == "tcp") return ProbeSpec::Kind::Tcp;
    if (s == "http") return ProbeSpec::Kind::Http;
    if (s == "exec") return ProbeSpec::Kind::Exec;
    if (s == "none") return ProbeSpec::Kind::None;
    throw Error("unknown probe kind \"" + s + "\"");
}

const char* volume_kind_name(VolumeMount::Kind k) {
    switch (k) {
        case VolumeMount::Kind::Host:
            return "host";
        case VolumeMount::Kind::Tmpfs:
            return "tmpfs";
        case VolumeMount::Kind::Empty:
            return "empty";
        case VolumeMount::Kind::Named:
            break;
    }
    return "named";
}

VolumeMount::Kind volume_kind_from(const std::string& s) {
    if (s == "named") return VolumeMount::Kind::Named;
    if (s == "host") return VolumeMount::Kind::Host;
    if (s == "tmpfs") return VolumeMount::Kind::Tmpfs;
    if (s == "empty") return VolumeMount::Kind::Empty;
    throw Error("unknown volume kind \"" + s + "\"");
}

const char* restart_policy_name(RestartPolicy p) {
    switch (p) {
        case RestartPolicy::OnFailure:
            return "OnFailure";
        case RestartPolicy::Never:
            return "Never";
        case RestartPolicy::Always:
            break;
    }
    return "Always";
}

RestartPolicy restart_policy_from(const std::string& s) {
    if (s == "Always") return RestartPolicy::Always;
    if (s == "OnFailure") return RestartPolicy::OnFailure;
    if (s == "Never") return RestartPolicy::Never;
    throw Error("unknown restart policy \"" + s + "\"");
}

nlohmann::json probe_json(const ProbeSpec& p) {
    return {
        {"kind", probe_kind_name(p.kind)},
        {"port", p.port},
        {"path", p.path},
        {"expectedStatus", p.expected_status},
        {"command", p.command},
        {"initialDelayMs", p.initial_delay.count()},
        {"periodMs", p.period.count()},
        {"timeoutMs", p.timeout.count()},
        {"successThreshold", p.success_threshold},
        {"failureThreshold", p.failure_threshold},
    };
}

ProbeSpec probe_from_json(const nlohmann::json& j) {
    ProbeSpec p;
    p.kind = probe_kind_from(j.value("kind", std::string("none")));
    p.port = j.value("port", uint16_t{0});
    p.path = j.value("path", std::string("/"));
    p.expected_status = j.value("expectedStatus", 0);
    p.command = j.value("command", std::vector<std::string>{});
    p.initial_delay = std::chrono::milliseconds(j.value("initialDelayMs", int64_t{0}));
    p.period = std::chrono::milliseconds(j.value("periodMs", int64_t{10000}));
    p.timeout = std::chrono::milliseconds(j.value("timeoutMs", int64_t{1000}));
    p.success_threshold = j.value("successThreshold", 1);
    p.failure_threshold = j.value("failureThreshold", 3);
    return p;
}

nlohmann::json int_or_percent_json(const IntOrPercent& v) {
    return {{"value", v.value}, {"percent", v.percent}};
}

IntOrPercent int_or_percent_from(const nlohmann::json& j, IntOrPercent fallback) {
    if (j.is_null()) return fallback;
    return IntOrPercent{j.value("value", 0), j.value("percent", false)};
}

}  // namespace

// Every field of the spec; deployment_spec_from_json reads it back exactly
// (round-trip tested). Older rows (fewer keys) read with the defaults.
nlohmann::json to_json(const DeploymentSpec& s) {
    nlohmann::json volumes = nlohmann::json::array();
    for (auto& v : s.volumes)
        volumes.push_back({{"kind", volume_kind_name(v.kind)},
                           {"source", v.source},
                           {"destination", v.destination},
                           {"readonly", v.readonly},
                           {"sizeBytes", v.size_bytes}});
    const auto& st = s.strategy;
    return {
        {"name", s.name},
        {"imageRepository", s.image_repository},
        {"imageTag", s.image_tag},
        {"containerPort", s.container_port},
        {"ports", s.ports},
        {"replicas", s.replicas},
        {"env", s.env},
        {"command", s.command},
        {"args", s.args},
        {"workingDir", s.working_dir},
        {"user", s.user},
        {"hostname", s.hostname},
        {"readonlyRootfs", s.readonly_rootfs},
        {"seccompCompatArches", s.seccomp_compat_arches},
        {"automatic", s.automatic},
        {"readinessProbe", probe_json(s.readiness)},
        {"livenessProbe", probe_json(s.liveness)},
        {"startupProbe", probe_json(s.startup)},
        {"resources",
         {{"memoryBytes", s.resources.memory_bytes},
          {"cpuMillis", s.resources.cpu_millis},
          {"cpuRequestMillis", s.resources.cpu_request_millis},
          {"pids", s.resources.pids}}},
        {"volumes", volumes},
        {"restartPolicy", restart_policy_name(s.restart_policy)},
        {"strategy",
         {{"type", st.type == RolloutStrategy::Type::Recreate ? "Recreate" : "Rolling"},
          {"maxSurge", int_or_percent_json(st.max_surge)},
          {"maxUnavailable", int_or_percent_json(st.max_unavailable)},
          {"intervalMs", st.interval.count()},
          {"updatePeriodMs", st.update_period.count()},
          {"timeoutSeconds", st.timeout.count()}}},
        {"readyTimeoutSeconds", st.timeout.count()},
        {"stopGraceSeconds", s.stop_grace.count()},
        {"labels", s.labels},
    };
}

DeploymentSpec deployment_spec_from_json(const nlohmann::json& j) {
    try {
        DeploymentSpec s;
        s.name = j.at("name").get<std::string>();
        s.image_repository = j.at("imageRepository").get<std::string>();
        s.image_tag = j.value("imageTag", std::string("latest"));
        s.container_port = j.value("containerPort", uint16_t{0});
        s.ports = j.value("ports", std::vector<uint16_t>{});
        s.replicas = j.value("replicas", 1);
        s.env = j.value("env", std::vector<std::string>{});
        s.command = j.value("command", std::vector<std::string>{});
        s.args = j.value("args", std::vector<std::string>{});
        s.working_dir = j.value("workingDir", std::string());
        s.user = j.value("user", std::string());
        s.hostname = j.value("hostname", std::string());
        s.readonly_rootfs = j.value("readonlyRootfs", false);
        s.seccomp_compat_arches = j.value("seccompCompatArches", false);
        s.automatic = j.value("automatic", true);
        if (j.contains("readinessProbe")) s.readiness = probe_from_json(j.at("readinessProbe"));
        if (j.contains("livenessProbe")) s.liveness = probe_from_json(j.at("livenessProbe"));
        if (j.contains("startupProbe")) s.startup = probe_from_json(j.at("startupProbe"));
        if (auto it = j.find("resources"); it != j.end()) {
            s.resources.memory_bytes = it->value("memoryBytes", int64_t{0});
            s.resources.cpu_millis = it->value("cpuMillis", int64_t{0});
            s.resources.cpu_request_millis = it->value("cpuRequestMillis", int64_t{0});
            s.resources.pids = it->value("pids", int64_t{0});
        }
        if (auto it = j.find("volumes"); it != j.end())
            for (auto& v : *it) {
                VolumeMount m;
                m.kind = volume_kind_from(v.value("kind", std::string("named")));
                m.source = v.value("source", std::string());
                m.destination = v.value("destination", std::string());
                m.readonly = v.value("readonly", false);
                m.size_bytes = v.value("sizeBytes", int64_t{0});
                s.volumes.push_back(std::move(m));
            }
        s.restart_policy = restart_policy_from(j.value("restartPolicy", std::string("Always")));
        s.strategy.timeout = std::chrono::seconds(j.value("readyTimeoutSeconds", int64_t{60}));
        if (auto it = j.find("strategy"); it != j.end()) {
            auto type = it->value("type", std::string("Rolling"));
            if (type != "Rolling" && type != "Recreate")
                throw Error("unknown strategy type \"" + type + "\"");
            s.strategy.type = type == "Recreate" ? RolloutStrategy::Type::Recreate
                                                 : RolloutStrategy::Type::Rolling;
            s.strategy.max_surge =
                int_or_percent_from(it->value("maxSurge", nlohmann::json()), s.strategy.max_surge);
            s.strategy.max_unavailable = int_or_percent_from(
                it->value("maxUnavailable", nlohmann::json()), s.strategy.max_unavailable);
            s.strategy.interval = std::chrono::milliseconds(
                it->value("intervalMs", int64_t{s.strategy.interval.count()}));
            s.strategy.update_period = std::chrono::milliseconds(
                it->value("updatePeriodMs", int64_t{s.strategy.update_period.count()}));
            s.strategy.timeout = std::chrono::seconds(
                it->value("timeoutSeconds", int64_t{s.strategy.timeout.count()}));
        }
        s.stop_grace = std::chrono::seconds(j.value("stopGraceSeconds", int64_t{10}));
        s.labels = j.value("labels", std::map<std::string, std::string>{});
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
    // Revisions (rollout history), pause and the digests rolled back automatically.
    db_.migrate("runtime-revisions-1", R"sql(
ALTER TABLE runtime_deployments ADD COLUMN paused INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runtime_deployments ADD COLUMN failed_digests TEXT NOT NULL DEFAULT '[]';
CREATE TABLE IF NOT EXISTS runtime_revisions (
    deployment TEXT NOT NULL,
    revision INTEGER NOT NULL,
    digest TEXT NOT NULL,
    spec TEXT NOT NULL,
    cause TEXT NOT NULL,
    status TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    created INTEGER NOT NULL,
    PRIMARY KEY (deployment, revision)
);
)sql");
    // Supervision: the replica index, the previous instance's log, the last exit.
    db_.migrate("runtime-replicas-supervision-1", R"sql(
ALTER TABLE runtime_replicas ADD COLUMN idx INTEGER NOT NULL DEFAULT -1;
ALTER TABLE runtime_replicas ADD COLUMN previous_log TEXT NOT NULL DEFAULT '';
ALTER TABLE runtime_replicas ADD COLUMN last_exit INTEGER NOT NULL DEFAULT 0;
)sql");
    // Routes: the Host name on the shared port and the target container port.
    db_.migrate("runtime-routes-target-1", R"sql(
ALTER TABLE runtime_routes ADD COLUMN hostname TEXT NOT NULL DEFAULT '';
ALTER TABLE runtime_routes ADD COLUMN target_port INTEGER NOT NULL DEFAULT 0;
)sql");
}

void DeploymentRecords::save_deployment(const DeploymentRecord& d) {
    nlohmann::json failed = nlohmann::json::array();
    for (auto& digest : d.failed_digests)
        failed.push_back(digest.str());
    db_.query(
        "INSERT INTO runtime_deployments(name, spec, revision, digest, phase, message, paused, "
        "failed_digests) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT(name) DO UPDATE SET "
        "spec = excluded.spec, revision = excluded.revision, digest = excluded.digest, "
        "phase = excluded.phase, message = excluded.message, paused = excluded.paused, "
        "failed_digests = excluded.failed_digests",
        {d.spec.name, to_json(d.spec).dump(), int64_t{d.revision},
         d.digest ? SqlValue(d.digest->str()) : SqlValue(nullptr), d.phase, d.message,
         int64_t{d.paused ? 1 : 0}, failed.dump()});
}

void DeploymentRecords::delete_deployment(const std::string& name) {
    db_.transaction([&] {
        db_.query("DELETE FROM runtime_revisions WHERE deployment = ?1", {name});
        db_.query("DELETE FROM runtime_deployments WHERE name = ?1", {name});
    });
}

void DeploymentRecords::save_revision(const std::string& deployment, const RevisionInfo& r) {
    db_.query(
        "INSERT INTO runtime_revisions(deployment, revision, digest, spec, cause, status, "
        "message, created) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) "
        "ON CONFLICT(deployment, revision) DO UPDATE SET digest = excluded.digest, "
        "spec = excluded.spec, cause = excluded.cause, status = excluded.status, "
        "message = excluded.message",
        {deployment, int64_t{r.revision}, r.digest.str(), to_json(r.spec).dump(), r.cause, r.status,
         r.message, r.created_unix});
}

std::vector<RevisionInfo> DeploymentRecords::revisions(const std::string& deployment) {
    std::vector<RevisionInfo> out;
    for (auto& row : db_.rows("SELECT revision, digest, spec, cause, status, message, created "
                              "FROM runtime_revisions WHERE deployment = ?1 ORDER BY revision",
                              {deployment})) {
        RevisionInfo r;
        r.revision = static_cast<int>(as_int(row[0]));
        auto digest = oci::Digest::try_parse(as_text(row[1]));
        if (!digest)
            throw Error("revision " + std::to_string(r.revision) + " of deployment " + deployment +
                        " in the metadata database has an invalid digest \"" + as_text(row[1]) +
                        "\"");
        r.digest = *digest;
        try {
            r.spec = deployment_spec_from_json(nlohmann::json::parse(as_text(row[2])));
        } catch (const std::exception& e) {
            throw Error("revision " + std::to_string(r.revision) + " of deployment " + deployment +
                        " in the metadata database: " + e.what());
        }
        r.cause = as_text(row[3]);
        r.status = as_text(row[4]);
        r.message = as_text(row[5]);
        r.created_unix = as_int(row[6]);
        out.push_back(std::move(r));
    }
    return out;
}

std::vector<DeploymentRecord> DeploymentRecords::deployments() {
    std::vector<DeploymentRecord> out;
    for (auto& row :
         db_.rows("SELECT name, spec, revision, digest, phase, message, paused, failed_digests "
                  "FROM runtime_deployments ORDER BY name")) {
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
        d.paused = as_int(row[6]) != 0;
        try {
            for (auto& f : nlohmann::json::parse(as_text(row[7])))
                if (auto digest = oci::Digest::try_parse(f.get<std::string>()))
                    d.failed_digests.push_back(*digest);
        } catch (const nlohmann::json::exception& e) {
            throw Error(
                "deployment " + as_text(row[0]) +
                " in the metadata database: its failed digests are unreadable: " + e.what());
        }
        out.push_back(std::move(d));
    }
    return out;
}

void DeploymentRecords::transaction(const std::function<void()>& fn) {
    db_.transaction(fn);
}

void DeploymentRecords::progress(const std::function<void()>& fn) {
    db_.transaction(fn, registry::Database::Durability::Relaxed);
}

void DeploymentRecords::save_replica(const ReplicaRecord& r) {
    db_.query(
        "INSERT INTO runtime_replicas(container_id, deployment, revision, image_digest, pid, "
        "state, restarts, spec, idx, previous_log, last_exit) "
        "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) ON CONFLICT(container_id) DO "
        "UPDATE SET revision = excluded.revision, image_digest = excluded.image_digest, "
        "pid = excluded.pid, state = excluded.state, restarts = excluded.restarts, "
        "spec = excluded.spec, idx = excluded.idx, previous_log = excluded.previous_log, "
        "last_exit = excluded.last_exit",
        {r.container_id, r.deployment, int64_t{r.revision}, r.image_digest.str(), int64_t{r.pid},
         r.state, int64_t{r.restarts}, to_json(r.spec).dump(), int64_t{r.index}, r.previous_log,
         int64_t{r.last_exit}});
}

void DeploymentRecords::delete_replica(const std::string& container_id) {
    db_.query("DELETE FROM runtime_replicas WHERE container_id = ?1", {container_id});
}

std::vector<ReplicaRecord> DeploymentRecords::replicas() {
    std::vector<ReplicaRecord> out;
    for (auto& row :
         db_.rows("SELECT container_id, deployment, revision, image_digest, pid, state, "
                  "restarts, spec, idx, previous_log, last_exit FROM runtime_replicas "
                  "ORDER BY container_id")) {
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
        r.index = static_cast<int>(as_int(row[8]));
        r.previous_log = as_text(row[9]);
        r.last_exit = static_cast<int>(as_int(row[10]));
        out.push_back(std::move(r));
    }
    return out;
}

void DeploymentRecords::save_route(const RouteSpec& r) {
    db_.query(
        "INSERT INTO runtime_routes(name, deployment, host, port, hostname, target_port) "
        "VALUES(?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(name) DO UPDATE SET deployment = "
        "excluded.deployment, host = excluded.host, port = excluded.port, hostname = "
        "excluded.hostname, target_port = excluded.target_port",
        {r.name, r.deployment, r.host, int64_t{r.port}, r.hostname, int64_t{r.target_port}});
}

void DeploymentRecords::delete_route(const std::string& name) {
    db_.query("DELETE FROM runtime_routes WHERE name = ?1", {name});
}

std::vector<RouteSpec> DeploymentRecords::routes() {
    std::vector<RouteSpec> out;
    for (auto& row :
         db_.rows("SELECT name, deployment, host, port, hostname, target_port FROM runtime_routes "
                  "ORDER BY name")) {
        RouteSpec r;
        r.name = as_text(row[0]);
        r.deployment = as_text(row[1]);
        r.host = as_text(row[2]);
        r.port = static_cast<uint16_t>(as_int(row[3]));
        r.hostname = as_text(row[4]);
        r.target_port = static_cast<uint16_t>(as_int(row[5]));
        out.push_back(std::move(r));
    }
    return out;
}

}  // namespace cascade::runtime
