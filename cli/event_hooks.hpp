// Build and rollout steps into the event log (`cascade events`): the build
// controller's and the deployment controller's hooks write them, numbered
// with the tag moves, so one stream (and one resume point) shows a cascade.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace cascade::registry {
class EventLog;
}
namespace cascade::engine {
class BuildController;
struct BuildRecord;
}  // namespace cascade::engine
namespace cascade::runtime {
class DeploymentController;
struct RolloutEvent;
}  // namespace cascade::runtime

namespace cascade::cli {

// BuildStarted / BuildFinished {config, number, output, causeKind; finished:
// result, durationMs, digest, tagMoved, message}.
void record_build_event(registry::EventLog& events, const engine::BuildRecord& build,
                        const std::string& output);
// RolloutStarted / RolloutProgress / RolloutFinished {revision, digest,
// replicas; progress: updated; finished: result, reason}.
void record_rollout_event(registry::EventLog& events, const runtime::RolloutEvent& event);

// Sets both controllers' hooks to record into `events` (which must outlive
// them, or the hooks must be cleared first).
void install_event_hooks(registry::EventLog& events, engine::BuildController& builds,
                         runtime::DeploymentController& deployments);

}  // namespace cascade::cli
