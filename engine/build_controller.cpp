#include "engine/build_controller.hpp"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <fstream>
#include <mutex>
#include <set>
#include <thread>

#include "engine/builder.hpp"
#include "engine/git_source.hpp"
#include "engine/trigger_graph.hpp"
#include "oci/error.hpp"
#include "oci/fs.hpp"
#include "registry/database.hpp"
#include "registry/metrics.hpp"
#include "registry/store.hpp"

namespace cascade::engine {

namespace {

int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

const char* kSchema = R"sql(
CREATE TABLE build_configs (
  name TEXT PRIMARY KEY,
  spec TEXT NOT NULL,
  last_version INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE builds (
  name TEXT PRIMARY KEY,
  config TEXT NOT NULL,
  number INTEGER NOT NULL,
  cause TEXT NOT NULL,
  phase TEXT NOT NULL,
  created INTEGER NOT NULL,
  started INTEGER NOT NULL DEFAULT 0,
  finished INTEGER NOT NULL DEFAULT 0,
  image_digest TEXT NOT NULL DEFAULT '',
  base_name TEXT NOT NULL DEFAULT '',
  base_digest TEXT NOT NULL DEFAULT '',
  message TEXT NOT NULL DEFAULT '',
  tag_moved INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX builds_by_config ON builds(config, number);
)sql";

// Structured causes and per-step reports.
const char* kSchema2 = R"sql(
ALTER TABLE builds ADD COLUMN cause_kind TEXT NOT NULL DEFAULT 'Manual';
ALTER TABLE builds ADD COLUMN steps TEXT NOT NULL DEFAULT '[]';
)sql";

// The source revision built (git commit).
const char* kSchema3 = R"sql(
ALTER TABLE builds ADD COLUMN revision TEXT NOT NULL DEFAULT '';
)sql";

StepReport step_report_from_json(const nlohmann::json& j) {
    StepReport r;
    r.number = j.value("number", size_t{0});
    r.stage = j.value("stage", size_t{0});
    r.text = j.value("text", "");
    r.cached = j.value("cached", false);
    r.duration_ms = j.value("durationMs", int64_t{0});
    r.bytes = j.value("bytes", int64_t{0});
    return r;
}

BuildRecord record_from_row(const registry::Database::Row& r) {
    using registry::as_int;
    using registry::as_text;
    BuildRecord b;
    b.name = as_text(r[0]);
    b.config = as_text(r[1]);
    b.number = as_int(r[2]);
    b.cause = as_text(r[3]);
    b.phase = as_text(r[4]);
    b.created = as_int(r[5]);
    b.started = as_int(r[6]);
    b.finished = as_int(r[7]);
    b.image_digest = as_text(r[8]);
    b.base_name = as_text(r[9]);
    b.base_digest = as_text(r[10]);
    b.message = as_text(r[11]);
    b.tag_moved = as_int(r[12]) != 0;
    b.cause_kind = build_cause_from_string(as_text(r[13]));
    auto steps = nlohmann::json::parse(as_text(r[14]), nullptr, false);
    if (steps.is_array())
        for (const auto& s : steps)
            b.steps.push_back(step_report_from_json(s));
    if (auto rev = as_text(r[15]); !rev.empty())
        b.revision = nlohmann::json::parse(rev, nullptr, false);
    return b;
}

const char* kBuildColumns =
    "name, config, number, cause, phase, created, started, finished, image_digest, base_name, "
    "base_digest, message, tag_moved, cause_kind, steps, revision";

}  // namespace

std::string to_string(BuildCause cause) {
    switch (cause) {
        case BuildCause::Manual:
            return "Manual";
        case BuildCause::ImageChange:
            return "ImageChange";
        case BuildCause::ConfigChange:
            return "ConfigChange";
        case BuildCause::Webhook:
            return "Webhook";
    }
    return "Manual";
}

BuildCause build_cause_from_string(const std::string& text) {
    if (text == "ImageChange") return BuildCause::ImageChange;
    if (text == "ConfigChange") return BuildCause::ConfigChange;
    if (text == "Webhook") return BuildCause::Webhook;
    return BuildCause::Manual;
}

nlohmann::json step_report_json(const StepReport& step) {
    return {{"number", step.number},
            {"stage", step.stage},
            {"text", step.text},
            {"cached", step.cached},
            {"durationMs", step.duration_ms},
            {"bytes", step.bytes}};
}

nlohmann::json BuildConfigSpec::to_json() const {
    nlohmann::json j{{"name", name},
                     {"context", context.string()},
                     {"dockerfile", dockerfile},
                     {"from", from_override},
                     {"buildArgs", build_args},
                     {"outputRepository", output_repository},
                     {"outputTag", output_tag},
                     {"imageChange", image_change_trigger},
                     {"configChange", config_change_trigger},
                     {"noCache", no_cache},
                     {"successfulBuildsHistoryLimit", successful_builds_history_limit},
                     {"failedBuildsHistoryLimit", failed_builds_history_limit}};
    if (dockerfile_text) j["dockerfileText"] = *dockerfile_text;
    if (!git_uri.empty())
        j["git"] = {{"uri", git_uri}, {"ref", git_ref}, {"contextDir", git_context_dir}};
    if (!env.empty()) {
        j["env"] = nlohmann::json::array();
        for (const auto& [k, v] : env)
            j["env"].push_back({{"name", k}, {"value", v}});
    }
    if (!post_commit.empty())
        j["postCommit"] = {{"script", post_commit.script},
                           {"command", post_commit.command},
                           {"args", post_commit.args}};
    if (!generic_secrets.empty()) j["genericSecrets"] = generic_secrets;
    if (!github_secrets.empty()) j["githubSecrets"] = github_secrets;
    return j;
}

BuildConfigSpec BuildConfigSpec::from_json(const nlohmann::json& j) {
    BuildConfigSpec s;
    s.name = j.at("name").get<std::string>();
    s.context = j.value("context", "");
    s.dockerfile = j.value("dockerfile", "Dockerfile");
    if (j.contains("dockerfileText")) s.dockerfile_text = j["dockerfileText"].get<std::string>();
    s.from_override = j.value("from", "");
    s.build_args = j.value("buildArgs", std::map<std::string, std::string>{});
    s.output_repository = j.value("outputRepository", "");
    s.output_tag = j.value("outputTag", "latest");
    s.image_change_trigger = j.value("imageChange", true);
    s.config_change_trigger = j.value("configChange", true);
    s.no_cache = j.value("noCache", false);
    s.successful_builds_history_limit = j.value("successfulBuildsHistoryLimit", int64_t{5});
    s.failed_builds_history_limit = j.value("failedBuildsHistoryLimit", int64_t{5});
    if (j.contains("git")) {
        s.git_uri = j["git"].value("uri", "");
        s.git_ref = j["git"].value("ref", "");
        s.git_context_dir = j["git"].value("contextDir", "");
    }
    for (const auto& e : j.value("env", nlohmann::json::array()))
        s.env.emplace_back(e.value("name", ""), e.value("value", ""));
    if (j.contains("postCommit")) {
        const auto& pc = j["postCommit"];
        s.post_commit.script = pc.value("script", "");
        s.post_commit.command = pc.value("command", std::vector<std::string>{});
        s.post_commit.args = pc.value("args", std::vector<std::string>{});
    }
    s.generic_secrets = j.value("genericSecrets", std::vector<std::string>{});
    s.github_secrets = j.value("githubSecrets", std::vector<std::string>{});
    return s;
}

nlohmann::json BuildRecord::to_json() const {
    return {{"name", name},
            {"config", config},
            {"number", number},
            {"cause", cause},
            {"phase", phase},
            {"created", created},
            {"started", started},
            {"finished", finished},
            {"imageDigest", image_digest},
            {"baseName", base_name},
            {"baseDigest", base_digest},
            {"message", message},
            {"tagMoved", tag_moved},
            {"causeKind", engine::to_string(cause_kind)},
            {"revision", revision},
            {"steps", [&] {
                 auto out = nlohmann::json::array();
                 for (const auto& s : steps)
                     out.push_back(step_report_json(s));
                 return out;
             }()}};
}

struct BuildController::Impl {
    registry::Store& store;
    registry::Database& db;
    Builder& builder;
    std::filesystem::path logs_dir;

    mutable std::mutex mu;
    std::condition_variable cv;
    struct Pending {
        std::string build;  // build name
        std::string config;
        // Queued by image changes only: the base tag and the digest it last
        // moved to (a build of any other cause coalesced in clears them).
        std::string image_tag, image_digest;
        bool binary = false;  // its own source (start-build --from-dir): never coalesced
    };

    // Where a binary build's copy of its --from-dir directory lives.
    std::filesystem::path binary_source(const std::string& build) const {
        return logs_dir.parent_path() / "sources" / (build + ".binary");
    }
    std::deque<Pending> queue;
    std::string running_config;
    std::string running_build;
    std::shared_ptr<CancelToken> running_token;
    bool stopping = false;
    std::function<void(const std::string&, const std::string&)> sink;
    std::function<void(const BuildRecord&)> hook;
    std::thread worker;

    Impl(registry::Store& s, registry::Database& d, Builder& b, std::filesystem::path logs)
        : store(s), db(d), builder(b), logs_dir(std::move(logs)) {}

    void emit(const std::string& kind, const std::string& message) {
        std::function<void(const std::string&, const std::string&)> fn;
        {
            std::lock_guard lock(mu);
            fn = sink;
        }
        if (fn) fn(kind, message);
    }

    // The build hook, with the build's record as stored now.
    void notify(const std::string& build) {
        std::function<void(const BuildRecord&)> fn;
        {
            std::lock_guard lock(mu);
            fn = hook;
        }
        if (!fn) return;
        auto r = db.row(std::string("SELECT ") + kBuildColumns + " FROM builds WHERE name = ?1",
                        {build});
        if (!r) return;
        try {
            fn(record_from_row(*r));
        } catch (...) {
            // A failing hook must not fail the build.
        }
    }

    std::optional<BuildConfigSpec> load_config(const std::string& name) const {
        auto row = db.row("SELECT spec FROM build_configs WHERE name = ?1", {name});
        if (!row) return std::nullopt;
        return BuildConfigSpec::from_json(nlohmann::json::parse(registry::as_text((*row)[0])));
    }

    std::vector<BuildConfigSpec> load_configs() const {
        std::vector<BuildConfigSpec> out;
        for (auto& r : db.rows("SELECT spec FROM build_configs ORDER BY name"))
            out.push_back(
                BuildConfigSpec::from_json(nlohmann::json::parse(registry::as_text(r[0]))));
        return out;
    }

    std::string dockerfile_text(const BuildConfigSpec& spec) const {
        if (spec.dockerfile_text) return *spec.dockerfile_text;
        std::filesystem::path p = spec.dockerfile;
        if (p.is_relative()) p = spec.context / p;
        return fs::read_file(p);
    }

    std::string base_of(const BuildConfigSpec& spec) const {
        try {
            if (!spec.git_uri.empty() && !spec.dockerfile_text) {
                // The Dockerfile is in the repository: the override replaces
                // its final FROM, else the last build's base tells.
                if (spec.from_override.empty()) {
                    auto row = db.row(
                        "SELECT base_name FROM builds WHERE config = ?1 AND base_name != '' "
                        "ORDER BY number DESC LIMIT 1",
                        {spec.name});
                    return row ? registry::as_text((*row)[0]) : std::string();
                }
                return Builder::final_base("FROM scratch\n", spec.build_args, spec.from_override,
                                           builder.options().local_domains);
            }
            return Builder::final_base(dockerfile_text(spec), spec.build_args, spec.from_override,
                                       builder.options().local_domains);
        } catch (const std::exception&) {
            return {};
        }
    }

    GraphBuild graph_build(const BuildConfigSpec& spec) const {
        GraphBuild g{spec.name, {}, spec.output_repository + ":" + spec.output_tag};
        if (auto base = base_of(spec); !base.empty()) g.from.push_back(base);
        return g;
    }

    // Config name → names of configs it builds FROM (directly): the trigger graph's.
    std::map<std::string, std::set<std::string>> dependencies() const {
        std::vector<GraphBuild> nodes;
        for (auto& c : load_configs())
            nodes.push_back(graph_build(c));
        return TriggerGraph(std::move(nodes)).dependencies();
    }

    // Whether `config` must wait: one of its (transitive) upstream configs is
    // queued or running. Called with mu held.
    bool blocked(const std::string& config,
                 const std::map<std::string, std::set<std::string>>& deps) const {
        std::set<std::string> busy;
        for (auto& p : queue)
            busy.insert(p.config);
        if (!running_config.empty()) busy.insert(running_config);
        std::set<std::string> seen;
        std::vector<std::string> stack;
        auto it = deps.find(config);
        if (it != deps.end()) stack.assign(it->second.begin(), it->second.end());
        while (!stack.empty()) {
            auto c = stack.back();
            stack.pop_back();
            if (!seen.insert(c).second) continue;
            if (busy.count(c)) return true;
            auto d = deps.find(c);
            if (d != deps.end()) stack.insert(stack.end(), d->second.begin(), d->second.end());
        }
        return false;
    }

    // Creates a build record and queues it, unless a queued build of the same
    // config exists (then that one is returned: coalesced).
    std::string enqueue(const std::string& config, const std::string& cause, BuildCause kind,
                        const std::string& image_tag = {}, const std::string& image_digest = {},
                        const std::filesystem::path& from_dir = {}) {
        const bool binary = !from_dir.empty();
        if (binary && !std::filesystem::is_directory(from_dir))
            throw Error("--from-dir " + from_dir.string() +
                        " is not a directory on the daemon's host; give an existing directory");
        // The copy is made before the queue is locked (a large directory
        // delays nobody) and renamed into place with the record.
        std::optional<fs::TempDir> staging;
        if (binary) {
            auto sources = logs_dir.parent_path() / "sources";
            fs::make_dirs(sources);
            staging.emplace(sources, "from-dir-");
            std::filesystem::copy(from_dir, staging->path() / "src",
                                  std::filesystem::copy_options::recursive |
                                      std::filesystem::copy_options::copy_symlinks);
        }
        std::unique_lock lock(mu);
        for (auto& p : queue)
            if (p.config == config && !p.binary && !binary) {
                if (kind == BuildCause::ImageChange && !p.image_tag.empty()) {
                    p.image_tag = image_tag;
                    p.image_digest = image_digest;
                } else {
                    p.image_tag.clear();
                    p.image_digest.clear();
                }
                return p.build;
            }
        std::string name;
        db.transaction([&] {
            auto row = db.row("SELECT last_version FROM build_configs WHERE name = ?1", {config});
            if (!row) throw Error("build config \"" + config + "\" does not exist; apply it first");
            int64_t number = registry::as_int((*row)[0]) + 1;
            db.query("UPDATE build_configs SET last_version = ?1 WHERE name = ?2",
                     {number, config});
            name = config + "-" + std::to_string(number);
            std::string revision;
            if (binary) {
                // In place before the record exists: a build never sees a half copy.
                auto copy = binary_source(name);
                std::error_code ec;
                std::filesystem::remove_all(copy, ec);
                std::filesystem::rename(staging->path() / "src", copy);
                revision =
                    nlohmann::json{{"type", "Binary"}, {"binary", {{"fromDir", from_dir.string()}}}}
                        .dump();
            }
            db.query(
                "INSERT INTO builds (name, config, number, cause, cause_kind, phase, created, "
                "revision) VALUES (?1, ?2, ?3, ?4, ?5, 'New', ?6, ?7)",
                {name, config, number, cause, to_string(kind), now_ms(), revision});
        });
        if (kind == BuildCause::ImageChange && !binary)
            queue.push_back({name, config, image_tag, image_digest, false});
        else
            queue.push_back({name, config, {}, {}, binary});
        cv.notify_all();
        lock.unlock();
        emit("BuildQueued", name + " (" + cause + ")");
        return name;
    }

    void run_worker() {
        std::unique_lock lock(mu);
        while (true) {
            cv.wait(lock, [&] { return stopping || !queue.empty(); });
            if (stopping) return;
            lock.unlock();
            auto deps = dependencies();
            lock.lock();
            auto it = std::find_if(queue.begin(), queue.end(),
                                   [&](const Pending& p) { return !blocked(p.config, deps); });
            if (it == queue.end()) it = queue.begin();  // a cycle: run in order rather than stall
            Pending next = *it;
            queue.erase(it);
            running_config = next.config;
            running_build = next.build;
            running_token = std::make_shared<CancelToken>();
            auto token = running_token;
            lock.unlock();
            execute(next, token);
            prune(next.config);
            lock.lock();
            running_config.clear();
            running_build.clear();
            running_token.reset();
            cv.notify_all();
        }
    }

    // Deletes the records (and logs) beyond the config's history limits.
    void prune(const std::string& config) {
        auto spec = load_config(config);
        BuildConfigSpec defaults;
        auto keep_complete =
            spec ? spec->successful_builds_history_limit : defaults.successful_builds_history_limit;
        auto keep_failed =
            spec ? spec->failed_builds_history_limit : defaults.failed_builds_history_limit;
        auto prune_phases = [&](const char* phases, int64_t keep) {
            if (keep < 0) return;  // unlimited
            auto rows =
                db.rows(std::string("SELECT name FROM builds WHERE config = ?1 AND phase IN ") +
                            phases + " ORDER BY number DESC",
                        {config});
            for (size_t k = static_cast<size_t>(keep); k < rows.size(); k++) {
                auto name = registry::as_text(rows[k][0]);
                db.query("DELETE FROM builds WHERE name = ?1", {name});
                std::error_code ec;
                std::filesystem::remove(logs_dir / (name + ".log"), ec);
            }
        };
        prune_phases("('Complete')", keep_complete);
        prune_phases("('Failed', 'Cancelled')", keep_failed);
    }

    void append_log(const std::string& build, const std::string& line) {
        fs::make_dirs(logs_dir);
        std::ofstream log(logs_dir / (build + ".log"), std::ios::app);
        log << line << '\n';
    }

    // A build's end in /metrics: cascade_builds_total{config,result} and its
    // duration (counted when it goes out of scope; "failed" unless set).
    struct BuildMetric {
        std::string config;
        std::string result = "failed";
        std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
        ~BuildMetric() {
            std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
            registry::metrics().build_finished(config, result, took.count());
        }
    };

    // An image-change build whose config's last complete build already used
    // that base digest (the tag moved while that build was resolving its
    // FROM): it would build the same image again, so it is dropped, record
    // and all.
    bool already_built(const Pending& p) {
        if (p.image_tag.empty() || p.image_digest.empty()) return false;
        auto last = db.row(
            "SELECT name, base_name, base_digest FROM builds WHERE config = ?1 AND phase = "
            "'Complete' ORDER BY number DESC LIMIT 1",
            {p.config});
        if (!last || registry::as_text((*last)[2]) != p.image_digest) return false;
        db.query("DELETE FROM builds WHERE name = ?1 AND phase = 'New'", {p.build});
        emit("BuildSkipped", p.build + ": " + registry::as_text((*last)[0]) + " was built on " +
                                 p.image_tag + " at " + p.image_digest + " already");
        return true;
    }

    void execute(const Pending& p, const std::shared_ptr<CancelToken>& token) {
        if (already_built(p)) return;
        struct RemoveBinarySource {
            std::filesystem::path path;
            ~RemoveBinarySource() {
                std::error_code ec;
                if (!path.empty()) std::filesystem::remove_all(path, ec);
            }
        } remove_binary{p.binary ? binary_source(p.build) : std::filesystem::path()};
        db.query("UPDATE builds SET phase = 'Pending' WHERE name = ?1", {p.build});
        auto spec = load_config(p.config);
        db.query("UPDATE builds SET phase = 'Running', started = ?1 WHERE name = ?2",
                 {now_ms(), p.build});
        emit("BuildStarted", p.build);
        notify(p.build);
        BuildMetric metric{p.config};  // counted for /metrics when the build ends
        fs::make_dirs(logs_dir);
        std::ofstream log(logs_dir / (p.build + ".log"), std::ios::app);
        auto write_log = [&](const std::string& line) {
            log << line << '\n';
            log.flush();
        };
        try {
            if (!spec) throw Error("build config \"" + p.config + "\" was deleted");
            BuildRequest req;
            req.context = spec->context;
            // A git source: cloned into a scratch directory removed after the build.
            std::optional<fs::TempDir> checkout;
            if (p.binary) {
                auto copy = binary_source(p.build);
                write_log("Using the directory given to start-build --from-dir (copied at start)");
                req.context = spec->git_uri.empty() ? copy : copy / spec->git_context_dir;
                if (!std::filesystem::is_directory(req.context))
                    throw Error("BuildConfig \"" + p.config + "\": spec.source.contextDir \"" +
                                spec->git_context_dir +
                                "\" is not a directory in the --from-dir directory (contextDir "
                                "applies inside it, as in OpenShift)");
            } else if (!spec->git_uri.empty()) {
                auto sources = logs_dir.parent_path() / "sources";
                fs::make_dirs(sources);
                checkout.emplace(sources, p.build + "-");
                GitSource git{spec->git_uri, spec->git_ref};
                auto rev = git_checkout(git, checkout->path() / "src",
                                        "BuildConfig \"" + p.config + "\"", write_log);
                db.query("UPDATE builds SET revision = ?1 WHERE name = ?2",
                         {rev.to_json(git).dump(), p.build});
                req.context = checkout->path() / "src" / spec->git_context_dir;
                if (!std::filesystem::is_directory(req.context))
                    throw Error("BuildConfig \"" + p.config + "\": spec.source.contextDir \"" +
                                spec->git_context_dir + "\" is not a directory in commit " +
                                rev.commit + " of " + spec->git_uri);
            }
            req.dockerfile = spec->dockerfile;
            req.dockerfile_text = spec->dockerfile_text;
            req.build_args = spec->build_args;
            req.from_override = spec->from_override;
            req.output_repository = spec->output_repository;
            req.output_tag = spec->output_tag;
            req.cause = "build " + p.build;
            req.no_cache = spec->no_cache;
            req.env = spec->env;
            req.post_commit = spec->post_commit;
            req.log = write_log;
            req.cancel = token;
            auto steps = std::make_shared<nlohmann::json>(nlohmann::json::array());
            req.on_step = [this, steps, build = p.build](const StepReport& step) {
                // Reports arrive one at a time (the builder serializes them).
                steps->push_back(step_report_json(step));
                db.query("UPDATE builds SET steps = ?1 WHERE name = ?2", {steps->dump(), build});
            };
            auto result = builder.build(req);
            std::string base_digest = result.base_digest ? result.base_digest->str() : "";
            db.query(
                "UPDATE builds SET phase = 'Complete', finished = ?1, image_digest = ?2, "
                "base_name = ?3, base_digest = ?4, tag_moved = ?5 WHERE name = ?6",
                {now_ms(), result.manifest_digest.str(), result.base_name, base_digest,
                 int64_t(result.tag_moved ? 1 : 0), p.build});
            write_log("--> " + spec->output_repository + ":" + spec->output_tag + " " +
                      result.manifest_digest.str() + (result.tag_moved ? "" : " (unchanged)"));
            metric.result = "complete";
            notify(p.build);
            emit("BuildComplete", p.build + " " + result.manifest_digest.str() +
                                      (result.tag_moved ? "" : " (unchanged, no tag moved)"));
        } catch (const std::exception& e) {
            write_log(std::string("error: ") + e.what());
            bool stopping = false;
            {
                std::lock_guard lock(mu);
                stopping = this->stopping;
            }
            if (token->cancelled() && stopping) {
                db.query(
                    "UPDATE builds SET phase = 'Failed', finished = ?1, message = ?2 "
                    "WHERE name = ?3",
                    {now_ms(), std::string("daemon stopped during the build"), p.build});
                notify(p.build);
                return;
            }
            if (token->cancelled()) {
                db.query(
                    "UPDATE builds SET phase = 'Cancelled', finished = ?1, message = ?2 "
                    "WHERE name = ?3",
                    {now_ms(), std::string("build cancelled"), p.build});
                metric.result = "cancelled";
                notify(p.build);
                emit("BuildCancelled", p.build);
                return;
            }
            db.query(
                "UPDATE builds SET phase = 'Failed', finished = ?1, message = ?2 WHERE name = ?3",
                {now_ms(), std::string(e.what()), p.build});
            notify(p.build);
            emit("BuildFailed", p.build + ": " + e.what());
        }
    }
};

BuildController::BuildController(registry::Store& store, registry::Database& db, Builder& builder,
                                 std::filesystem::path logs_dir)
    : impl_(std::make_unique<Impl>(store, db, builder, std::move(logs_dir))) {
    db.migrate("engine-builds-1", kSchema);
    db.migrate("engine-builds-2", kSchema2);
    db.migrate("engine-builds-3", kSchema3);
    // Builds that were running when the daemon stopped can't be resumed;
    // builds that were queued are queued again.
    db.query(
        "UPDATE builds SET phase = 'Failed', finished = ?1, "
        "message = 'daemon stopped during the build' WHERE phase IN ('Running', 'Pending')",
        {now_ms()});
    for (auto& r : db.rows("SELECT name, config, revision FROM builds WHERE phase = 'New' ORDER "
                           "BY created")) {
        auto name = registry::as_text(r[0]);
        bool binary = registry::as_text(r[2]).find("\"Binary\"") != std::string::npos;
        impl_->queue.push_back({name, registry::as_text(r[1]), {}, {}, binary});
    }
    // Copies of --from-dir directories whose builds are no longer queued.
    std::error_code ec;
    for (const auto& e :
         std::filesystem::directory_iterator(impl_->logs_dir.parent_path() / "sources", ec)) {
        auto file = e.path().filename().string();
        if (file.rfind("from-dir-", 0) == 0) {  // a copy a crash interrupted
            std::filesystem::remove_all(e.path(), ec);
            continue;
        }
        if (file.size() < 8 || file.substr(file.size() - 7) != ".binary") continue;
        auto build = file.substr(0, file.size() - 7);
        bool queued = std::any_of(impl_->queue.begin(), impl_->queue.end(),
                                  [&](const Impl::Pending& p) { return p.build == build; });
        if (!queued) std::filesystem::remove_all(e.path(), ec);
    }
    impl_->worker = std::thread([this] { impl_->run_worker(); });
}

BuildController::~BuildController() {
    std::shared_ptr<CancelToken> running;
    {
        std::lock_guard lock(impl_->mu);
        impl_->stopping = true;
        running = impl_->running_token;
    }
    // A running build is stopped rather than waited for; it is recorded as
    // Failed, as it would be after a crash.
    if (running) running->cancel();
    impl_->cv.notify_all();
    if (impl_->worker.joinable()) impl_->worker.join();
}

BuildController::ApplyResult BuildController::apply(const BuildConfigSpec& spec,
                                                    bool config_change_build) {
    if (spec.name.empty()) throw Error("build config has no name");
    if (spec.output_repository.empty())
        throw Error("build config \"" + spec.name + "\": output image stream tag is missing");
    auto old = impl_->load_config(spec.name);
    if (old && *old == spec) return ApplyResult::Unchanged;
    impl_->db.query(
        "INSERT INTO build_configs (name, spec) VALUES (?1, ?2) "
        "ON CONFLICT(name) DO UPDATE SET spec = excluded.spec",
        {spec.name, spec.to_json().dump()});
    if (spec.config_change_trigger && config_change_build)
        impl_->enqueue(spec.name, old ? "config change" : "config created",
                       BuildCause::ConfigChange);
    return old ? ApplyResult::Configured : ApplyResult::Created;
}

bool BuildController::remove(const std::string& name) {
    {
        std::lock_guard lock(impl_->mu);
        std::erase_if(impl_->queue, [&](const Impl::Pending& p) { return p.config == name; });
    }
    impl_->db.query("DELETE FROM builds WHERE config = ?1 AND phase = 'New'", {name});
    return impl_->db.query("DELETE FROM build_configs WHERE name = ?1", {name}) > 0;
}

std::string BuildController::start_build(const std::string& config, const std::string& cause,
                                         BuildCause kind, const std::filesystem::path& from_dir) {
    return impl_->enqueue(config, cause, kind, {}, {}, from_dir);
}

bool BuildController::cancel(const std::string& build_name) {
    std::unique_lock lock(impl_->mu);
    auto it = std::find_if(impl_->queue.begin(), impl_->queue.end(),
                           [&](const Impl::Pending& p) { return p.build == build_name; });
    if (it != impl_->queue.end()) {
        auto config = it->config;
        impl_->queue.erase(it);
        impl_->cv.notify_all();
        lock.unlock();
        std::error_code ec;
        std::filesystem::remove_all(impl_->binary_source(build_name), ec);  // --from-dir copy
        impl_->db.query(
            "UPDATE builds SET phase = 'Cancelled', finished = ?1, "
            "message = 'cancelled before it started' WHERE name = ?2",
            {now_ms(), build_name});
        impl_->append_log(build_name, "build cancelled before it started");
        impl_->notify(build_name);
        impl_->emit("BuildCancelled", build_name);
        impl_->prune(config);
        return true;
    }
    if (impl_->running_build == build_name) {
        auto token = impl_->running_token;
        lock.unlock();
        token->cancel();
        return true;
    }
    lock.unlock();
    if (!build(build_name))
        throw Error("build \"" + build_name + "\" not found; `cascade get builds` lists them");
    return false;
}

bool BuildController::delete_build(const std::string& build_name) {
    auto b = build(build_name);
    if (!b) return false;
    if (!b->finished_phase()) cancel(build_name);
    impl_->db.query("DELETE FROM builds WHERE name = ?1", {build_name});
    std::error_code ec;
    std::filesystem::remove(impl_->logs_dir / (build_name + ".log"), ec);
    return true;
}

void BuildController::on_tag_moved(const registry::TagEvent& event) {
    std::string moved = event.repository + ":" + event.tag;
    for (auto& c : impl_->load_configs()) {
        if (!c.image_change_trigger) continue;
        if (impl_->base_of(c) != moved) continue;
        impl_->enqueue(c.name, "image change of " + moved + " to " + event.new_digest.str(),
                       BuildCause::ImageChange, moved, event.new_digest.str());
    }
}

std::vector<BuildConfigSpec> BuildController::configs() const {
    return impl_->load_configs();
}

std::optional<BuildConfigSpec> BuildController::config(const std::string& name) const {
    return impl_->load_config(name);
}

std::vector<BuildRecord> BuildController::builds(const std::string& config) const {
    std::vector<BuildRecord> out;
    std::string sql = std::string("SELECT ") + kBuildColumns + " FROM builds";
    std::vector<registry::SqlValue> params;
    if (!config.empty()) {
        sql += " WHERE config = ?1";
        params.push_back(config);
    }
    sql += " ORDER BY config, number";
    for (auto& r : impl_->db.rows(sql, params))
        out.push_back(record_from_row(r));
    return out;
}

std::optional<BuildRecord> BuildController::build(const std::string& name) const {
    auto r = impl_->db.row(std::string("SELECT ") + kBuildColumns + " FROM builds WHERE name = ?1",
                           {name});
    if (!r) return std::nullopt;
    return record_from_row(*r);
}

std::filesystem::path BuildController::log_path(const std::string& build_name) const {
    return impl_->logs_dir / (build_name + ".log");
}

std::string BuildController::base_of(const BuildConfigSpec& spec) const {
    return impl_->base_of(spec);
}

GraphBuild BuildController::graph_build(const BuildConfigSpec& spec) const {
    return impl_->graph_build(spec);
}

bool BuildController::idle() const {
    std::lock_guard lock(impl_->mu);
    return impl_->queue.empty() && impl_->running_config.empty();
}

bool BuildController::wait_idle(std::chrono::milliseconds timeout) {
    std::unique_lock lock(impl_->mu);
    return impl_->cv.wait_for(
        lock, timeout, [&] { return impl_->queue.empty() && impl_->running_config.empty(); });
}

void BuildController::set_event_sink(
    std::function<void(const std::string& kind, const std::string& message)> sink) {
    std::lock_guard lock(impl_->mu);
    impl_->sink = std::move(sink);
}

void BuildController::set_build_hook(std::function<void(const BuildRecord& build)> hook) {
    std::lock_guard lock(impl_->mu);
    impl_->hook = std::move(hook);
}

}  // namespace cascade::engine
