// Build configs, build records and image-change triggers.
//
// A build config names a Dockerfile context, an optional FROM override and an
// output image stream tag. Builds are numbered per config (httpd-base-1,
// httpd-base-2 …) and recorded with cause, phase, timings, result digest and
// a log file; each config keeps its last successfulBuildsHistoryLimit
// completed and failedBuildsHistoryLimit failed or cancelled records (and
// their logs). A queued build can be cancelled before it runs, a running one
// is stopped (its RUN container killed). When a tag moves, every config whose final FROM is that
// tag is queued; the queue runs a config only once none of the configs it depends on (transitively)
// is queued or running, so a cascade builds each dependent once and in dependency order, and a move
// arriving while a config is queued is coalesced into that one build.
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

#include <nlohmann/json.hpp>

#include "engine/builder.hpp"
#include "engine/trigger_graph.hpp"

namespace cascade::registry {
class Store;
class Database;
struct TagEvent;
}  // namespace cascade::registry

namespace cascade::engine {

struct BuildConfigSpec {
    std::string name;
    std::filesystem::path context;  // absolute; unused with a git source
    // A git source (spec.source.git): cloned for each build, the context is
    // git_context_dir inside the checkout.
    std::string git_uri, git_ref;
    std::string git_context_dir;  // relative, "" = the checkout's root
    std::string dockerfile = "Dockerfile";
    std::optional<std::string> dockerfile_text;  // inline Dockerfile
    std::string from_override;                   // "httpd-base:latest" or ""
    std::map<std::string, std::string> build_args;
    std::string output_repository;
    std::string output_tag = "latest";
    bool image_change_trigger = true;
    bool config_change_trigger = true;
    bool no_cache = false;
    std::vector<std::pair<std::string, std::string>> env;  // dockerStrategy.env
    PostCommitHook post_commit;
    // Generic and GitHub webhook triggers: their secrets (the URL's SECRET).
    std::vector<std::string> generic_secrets, github_secrets;
    // Records kept per config, the newest first; older ones (and their logs)
    // are deleted when a build ends.
    int64_t successful_builds_history_limit = 5;
    int64_t failed_builds_history_limit = 5;  // Failed and Cancelled

    nlohmann::json to_json() const;
    static BuildConfigSpec from_json(const nlohmann::json& j);
    bool operator==(const BuildConfigSpec&) const = default;
};

// Why a build ran (OpenShift's trigger types).
enum class BuildCause { Manual, ImageChange, ConfigChange, Webhook };
std::string to_string(BuildCause cause);  // "Manual", "ImageChange", …
BuildCause build_cause_from_string(const std::string& text);

struct BuildRecord {
    std::string name;  // "<config>-<number>"
    std::string config;
    int64_t number = 0;
    std::string cause;  // "image change of httpd-base:latest to sha256:…"
    BuildCause cause_kind = BuildCause::Manual;
    // New (queued), Pending (picked, preparing), Running, Complete, Failed,
    // Cancelled.
    std::string phase;
    int64_t created = 0, started = 0, finished = 0;  // unix ms
    std::string image_digest;
    std::string base_name, base_digest;
    std::string message;
    bool tag_moved = false;
    // What was built from (OpenShift's spec.revision): {"type": "Git", "git":
    // {"uri", "ref", "commit", "author", "message"}}; null for local sources.
    nlohmann::json revision;
    std::vector<StepReport> steps;  // finished steps, in the order they finished
    nlohmann::json to_json() const;
    bool finished_phase() const {
        return phase == "Complete" || phase == "Failed" || phase == "Cancelled";
    }
};

nlohmann::json step_report_json(const StepReport& step);

class BuildController {
  public:
    BuildController(registry::Store& store, registry::Database& db, Builder& builder,
                    std::filesystem::path logs_dir);
    ~BuildController();  // stops a running build (recorded Failed) and the worker

    enum class ApplyResult { Created, Configured, Unchanged };
    // Creates or updates a config; a new or changed config with a
    // ConfigChange trigger is built, unless `config_change_build` is false
    // (its base is a stream tag still to come: its ImageChange trigger starts
    // the build when the tag moves).
    ApplyResult apply(const BuildConfigSpec& spec, bool config_change_build = true);
    bool remove(const std::string& name);
    // Deletes a build's record and log, cancelling it first when it has not
    // ended (`cascade delete build NAME-N`). False when there is no such build.
    bool delete_build(const std::string& build_name);

    // Queues a build; returns its name ("httpd-base-3"). Throws when the
    // config does not exist.
    // `from_dir` (absolute; `cascade start-build --from-dir`, OpenShift's
    // binary build input): the directory is copied now and that copy is the
    // build's source instead of the config's (the config's git contextDir
    // applies inside it, as in OpenShift); such a build is never coalesced
    // with another.
    std::string start_build(const std::string& config, const std::string& cause = "manual",
                            BuildCause kind = BuildCause::Manual,
                            const std::filesystem::path& from_dir = {});
    // Cancels a queued build (it never runs) or stops a running one; either
    // ends as Cancelled. False when the build had already finished; throws
    // when there is no such build.
    bool cancel(const std::string& build_name);
    void on_tag_moved(const registry::TagEvent& event);

    std::vector<BuildConfigSpec> configs() const;
    std::optional<BuildConfigSpec> config(const std::string& name) const;
    std::vector<BuildRecord> builds(const std::string& config = {}) const;
    std::optional<BuildRecord> build(const std::string& name) const;
    std::filesystem::path log_path(const std::string& build_name) const;
    // The image stream tag a config builds FROM ("" for scratch or unknown).
    std::string base_of(const BuildConfigSpec& spec) const;
    // The config as a node of the trigger graph (engine/trigger_graph.hpp).
    GraphBuild graph_build(const BuildConfigSpec& spec) const;

    // True when no build is queued or running (waits up to timeout).
    bool wait_idle(std::chrono::milliseconds timeout);
    bool idle() const;

    void set_event_sink(
        std::function<void(const std::string& kind, const std::string& message)> sink);
    // Called with the build's record when it starts running and when it ends
    // (Complete, Failed, Cancelled), from the thread that changed it.
    void set_build_hook(std::function<void(const BuildRecord& build)> hook);

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace cascade::engine
