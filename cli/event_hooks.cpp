#include "cli/event_hooks.hpp"

#include "engine/build_controller.hpp"
#include "registry/events.hpp"
#include "runtime/deployment.hpp"

namespace cascade::cli {

void record_build_event(registry::EventLog& events, const engine::BuildRecord& build,
                        const std::string& output) {
    nlohmann::json data{{"config", build.config},
                        {"number", build.number},
                        {"output", output},
                        {"causeKind", engine::to_string(build.cause_kind)}};
    if (!build.finished_phase()) {
        events.append("BuildStarted", build.name, build.cause, data);
        return;
    }
    data["result"] = build.phase;
    data["durationMs"] = build.started > 0 && build.finished >= build.started
                             ? build.finished - build.started
                             : int64_t{0};
    data["digest"] = build.image_digest;
    data["tagMoved"] = build.tag_moved;
    data["baseName"] = build.base_name;
    data["baseDigest"] = build.base_digest;
    data["message"] = build.message;
    events.append("BuildFinished", build.name, build.cause, data);
}

void record_rollout_event(registry::EventLog& events, const runtime::RolloutEvent& event) {
    nlohmann::json data{
        {"revision", event.revision}, {"digest", event.digest}, {"replicas", event.replicas}};
    if (event.phase == "Started") {
        events.append("RolloutStarted", event.deployment, event.cause, data);
    } else if (event.phase == "Progress") {
        data["updated"] = event.updated;
        events.append("RolloutProgress", event.deployment, event.cause, data);
    } else {
        data["result"] = event.phase;
        data["reason"] = event.reason;
        events.append("RolloutFinished", event.deployment, event.cause, data);
    }
}

void install_event_hooks(registry::EventLog& events, engine::BuildController& builds,
                         runtime::DeploymentController& deployments) {
    builds.set_build_hook([&events, &builds](const engine::BuildRecord& b) {
        std::string output;
        if (auto spec = builds.config(b.config))
            output = spec->output_repository + ":" + spec->output_tag;
        record_build_event(events, b, output);
    });
    deployments.set_rollout_hook(
        [&events](const runtime::RolloutEvent& e) { record_rollout_event(events, e); });
}

}  // namespace cascade::cli
