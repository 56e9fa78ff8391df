// Rollouts with real runc containers and a real registry store: the Rolling
// strategy's surge and unavailability bounds (sampled from a watcher thread),
// Recreate's order, numbered revisions and their causes, automatic rollback
// of an image that never becomes ready or crashes at start (and the failed
// digest not rolled out again), undo, pause/resume, restart, scaling, and the
// persistence of specs and revisions.
#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <thread>

#include "runtime/deployment_records.hpp"
#include "tests/runtime/rollout_support.hpp"

namespace cascade::runtime {
namespace {

using namespace rollout_testing;

// Calls `check` with the deployment's status, as often as it can, until
// stopped; collects what `check` reports (first few).
class Sampler {
  public:
    Sampler(DeploymentController& c, std::string name,
            std::function<std::string(const DeploymentStatus&)> check) {
        thread_ = std::thread([this, &c, name, check] {
            while (!stop_) {
                auto s = c.get(name);
                if (!s) continue;
                auto problem = check(*s);
                std::lock_guard lock(mu_);
                ++samples_;
                if (!problem.empty() && problems_.size() < 5) problems_.push_back(problem);
                std::this_thread::sleep_for(2ms);
            }
        });
    }
    ~Sampler() { stop(); }
    void stop() {
        stop_ = true;
        if (thread_.joinable()) thread_.join();
    }
    std::string problems() {
        std::lock_guard lock(mu_);
        std::string s;
        for (auto& p : problems_)
            s += p + "\n";
        return s;
    }
    int samples() {
        std::lock_guard lock(mu_);
        return samples_;
    }

  private:
    std::atomic<bool> stop_{false};
    std::mutex mu_;
    std::vector<std::string> problems_;
    int samples_ = 0;
    std::thread thread_;
};

std::string describe(const DeploymentStatus& s) {
    std::string out = "revision " + std::to_string(s.revision) + " " + s.phase + ":";
    for (auto& r : s.replicas)
        out += " " + r.container_id + "(r" + std::to_string(r.revision) + "," + r.state + ")";
    return out;
}

bool has_event(Stack& stack, const std::string& text) {
    for (auto& e : stack.event_list())
        if (e.find(text) != std::string::npos) return true;
    return false;
}

class RolloutTest : public StackTest {
  protected:
    DeploymentStatus status() {
        auto s = controller().get("web");
        EXPECT_TRUE(s);
        return s ? *s : DeploymentStatus{};
    }
    void settle() { ASSERT_TRUE(controller().wait_idle("web", 180s)) << describe(status()); }
};

TEST_F(RolloutTest, RollingUpdatesStayWithinMaxSurgeAndMaxUnavailable) {
    push_image(stack_->store, "web", "latest", "version-1", kHttpd);
    auto spec = web_spec("web", 4);
    spec.strategy.max_surge = {1, false};
    spec.strategy.max_unavailable = {1, false};
    controller().apply(spec);
    settle();
    ASSERT_TRUE(all_ready(status(), 1, 4)) << describe(status());

    // Limits the sampler checks: at most 4+surge replicas, at least 4-unavailable ready.
    std::atomic<int> max_total{5}, min_ready{3};
    std::atomic<int> seen_max{0}, seen_min{100};
    Sampler sampler(controller(), "web", [&](const DeploymentStatus& s) -> std::string {
        int total = static_cast<int>(s.replicas.size());
        seen_max = std::max(seen_max.load(), total);
        seen_min = std::min(seen_min.load(), s.ready);
        if (total > max_total || s.ready < min_ready)
            return "bounds " + std::to_string(max_total) + "/" + std::to_string(min_ready) +
                   " violated: " + describe(s);
        return {};
    });
    auto v2 = push_image(stack_->store, "web", "latest", "version-2", kHttpd);
    settle();
    ASSERT_TRUE(all_ready(status(), 2, 4)) << describe(status());
    EXPECT_EQ(status().image, v2);
    EXPECT_EQ(seen_max.load(), 5) << "the surge was never used";
    EXPECT_EQ(seen_min.load(), 3) << "maxUnavailable was never used";

    // Percentages: 25% surge rounds up to 1, 10% unavailable rounds down to 0.
    max_total = 5;
    min_ready = 4;
    seen_max = 0;
    seen_min = 100;
    spec.strategy.max_surge = {25, true};
    spec.strategy.max_unavailable = {10, true};
    spec.env = {"STEP=3"};
    controller().apply(spec);
    settle();
    sampler.stop();
    EXPECT_EQ(sampler.problems(), "");
    EXPECT_GT(sampler.samples(), 10);
    auto s = status();
    EXPECT_EQ(s.phase, "Running") << s.message;
    ASSERT_TRUE(all_ready(s, 3, 4)) << describe(s);
    EXPECT_EQ(seen_max.load(), 5);
    EXPECT_EQ(seen_min.load(), 4);
    EXPECT_EQ(s.updated, 4);
    EXPECT_EQ(runc_containers(), 4);
}

TEST_F(RolloutTest, RecreateStopsEveryOldReplicaBeforeStartingNewOnes) {
    push_image(stack_->store, "web", "latest", "version-1", kHttpd);
    auto spec = web_spec("web", 2);
    spec.strategy.type = RolloutStrategy::Type::Recreate;
    controller().apply(spec);
    settle();
    ASSERT_TRUE(all_ready(status(), 1, 2));

    Sampler sampler(controller(), "web", [&](const DeploymentStatus& s) -> std::string {
        std::set<int> revisions;
        for (auto& r : s.replicas)
            revisions.insert(r.revision);
        if (revisions.count(1) && revisions.count(2))
            return "old and new replicas at once: " + describe(s);
        return {};
    });
    push_image(stack_->store, "web", "latest", "version-2", kHttpd);
    settle();
    sampler.stop();
    EXPECT_EQ(sampler.problems(), "");
    ASSERT_TRUE(all_ready(status(), 2, 2)) << describe(status());
    // In the event log too: both old ones stopped before the first new one started.
    auto events = stack_->event_list();
    auto first_new = std::find_if(events.begin(), events.end(), [](const std::string& e) {
        return e.find("starting replica") != std::string::npos &&
               e.find("(revision 2") != std::string::npos;
    });
    ASSERT_NE(first_new, events.end());
    int old_stopped = static_cast<int>(std::count_if(events.begin(), first_new, [](auto& e) {
        return e.find("(revision 1) stopped") != std::string::npos;
    }));
    EXPECT_EQ(old_stopped, 2) << stack_->event_log();
}

TEST_F(RolloutTest, RevisionsAreNumberedWithTheirCausesAndUndoRestoresOne) {
    auto v1 = push_image(stack_->store, "web", "latest", "version-1", kHttpd);
    auto spec = web_spec("web", 1);
    controller().apply(spec);
    settle();
    auto v2 = push_image(stack_->store, "web", "latest", "version-2", kHttpd);
    settle();
    spec.env = {"GREETING=hello"};
    controller().apply(spec);
    settle();
    // Scaling is not a revision.
    controller().scale("web", 2);
    settle();
    ASSERT_TRUE(all_ready(status(), 3, 2)) << describe(status());
    std::set<std::string> before;
    for (auto& r : status().replicas)
        before.insert(r.container_id);

    controller().restart("web");
    settle();
    auto s = status();
    ASSERT_TRUE(all_ready(s, 4, 2)) << describe(s);
    EXPECT_EQ(s.image, v2);
    for (auto& r : s.replicas)
        EXPECT_FALSE(before.count(r.container_id)) << "restart kept " << r.container_id;

    controller().undo("web", 1);
    settle();
    s = status();
    ASSERT_TRUE(all_ready(s, 5, 2)) << describe(s);
    EXPECT_EQ(s.image, v1);
    EXPECT_TRUE(s.spec.env.empty()) << "revision 1's template has no env";
    EXPECT_EQ(s.phase, "Running") << s.message;

    auto h = controller().history("web");
    ASSERT_EQ(h.size(), 5u);
    std::vector<std::string> causes;
    for (size_t i = 0; i < h.size(); ++i) {
        EXPECT_EQ(h[i].revision, static_cast<int>(i) + 1);
        EXPECT_EQ(h[i].status, "Complete") << h[i].revision;
        causes.push_back(h[i].cause);
    }
    EXPECT_EQ(causes[0], "initial");
    EXPECT_EQ(causes[1].rfind("image change (web:latest → sha256:", 0), 0u) << causes[1];
    EXPECT_EQ(causes[2], "config change");
    EXPECT_EQ(causes[3], "restart");
    EXPECT_EQ(causes[4], "undo to revision 1");
    EXPECT_EQ(h[0].digest, v1);
    EXPECT_EQ(h[1].digest, v2);
    EXPECT_EQ(h[2].spec.env, std::vector<std::string>{"GREETING=hello"});

    // Undo without a revision: the one before the latest.
    controller().undo("web");
    settle();
    s = status();
    EXPECT_EQ(s.revision, 6);
    EXPECT_EQ(s.image, v2);
    EXPECT_EQ(controller().history("web").back().cause, "undo to revision 4");

    // Clear errors: no such revision, its image gone, unknown deployment.
    try {
        controller().undo("web", 42);
        ADD_FAILURE() << "undo to a missing revision succeeded";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("no revision 42"), std::string::npos) << e.what();
    }
    auto gone = push_image(stack_->store, "web", "other", "version-gone", kHttpd);
    spec.image_tag = "other";
    spec.env.clear();
    controller().apply(spec);
    settle();
    ASSERT_EQ(status().image, gone);
    spec.image_tag = "latest";
    controller().apply(spec);
    settle();
    int gone_revision = status().revision - 1;
    ASSERT_TRUE(stack_->store.delete_tag("web", "other"));
    stack_->store.delete_manifest("web", gone);
    stack_->blobs.remove(gone);
    try {
        controller().undo("web", gone_revision);
        ADD_FAILURE() << "undo to a revision whose image is gone succeeded";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("no longer in the registry"), std::string::npos)
            << e.what();
    }
    EXPECT_THROW(controller().undo("nope"), Error);
    EXPECT_THROW(controller().history("nope"), Error);
}

TEST_F(RolloutTest, ANeverReadyImageIsRolledBackAndNotRolledOutAgainUntilRetryOrANewDigest) {
    auto v1 = push_image(stack_->store, "web", "latest", "version-1", kHttpd);
    auto spec = web_spec("web", 2);
    spec.strategy.timeout = 3s;
    controller().apply(spec);
    settle();
    ASSERT_TRUE(all_ready(status(), 1, 2));

    // The old revision never drops below what maxUnavailable allows (25% of 2: 0).
    Sampler sampler(controller(), "web", [](const DeploymentStatus& s) -> std::string {
        if (s.ready < 2) return "fewer than 2 ready: " + describe(s);
        return {};
    });
    auto v2 = push_image(stack_->store, "web", "latest", "version-2-silent", kNeverListens);
    settle();
    sampler.stop();
    EXPECT_EQ(sampler.problems(), "");

    auto s = status();
    EXPECT_EQ(s.phase, "Failed");
    EXPECT_NE(s.message.find("revision 2"), std::string::npos) << s.message;
    EXPECT_NE(s.message.find("rolled back to revision 1"), std::string::npos) << s.message;
    EXPECT_EQ(s.revision, 3);
    EXPECT_EQ(s.image, v1);
    ASSERT_TRUE(all_ready(s, 3, 2)) << describe(s);
    EXPECT_EQ(s.failed_digests, std::vector<oci::Digest>{v2});
    auto h = controller().history("web");
    ASSERT_EQ(h.size(), 3u);
    EXPECT_EQ(h[1].status, "Failed");
    EXPECT_EQ(h[2].status, "Complete");
    EXPECT_EQ(h[2].cause.rfind("rollback to revision 1 (revision 2 failed: ", 0), 0u) << h[2].cause;
    EXPECT_TRUE(has_event(*stack_, "rolled back to revision 1"));
    EXPECT_EQ(runc_containers(), 2);

    // The same digest again (a re-sent tag event): nothing rolls out.
    registry::TagEvent again;
    again.repository = "web";
    again.tag = "latest";
    again.new_digest = v2;
    controller().on_tag_moved(again);
    settle();
    EXPECT_EQ(status().revision, 3);
    EXPECT_EQ(controller().history("web").size(), 3u);

    // Persisted: a new controller on the same state still skips it.
    stack_.reset();
    stack_ = std::make_unique<Stack>(root());
    controller().recover();
    settle();
    s = status();
    EXPECT_EQ(s.failed_digests, std::vector<oci::Digest>{v2});
    controller().on_tag_moved(again);
    settle();
    s = status();
    EXPECT_EQ(s.revision, 3);
    ASSERT_TRUE(all_ready(s, 3, 2)) << describe(s);

    // retry rolls it out again (and it fails again: rolled back once more).
    controller().retry("web");
    settle();
    h = controller().history("web");
    ASSERT_EQ(h.size(), 5u);
    EXPECT_EQ(h[3].cause, "retry");
    EXPECT_EQ(h[3].digest, v2);
    EXPECT_EQ(h[3].status, "Failed");
    EXPECT_EQ(h[4].cause.rfind("rollback to revision 3 (revision 4 failed", 0), 0u) << h[4].cause;
    ASSERT_TRUE(all_ready(status(), 5, 2)) << describe(status());

    // A newer digest rolls out.
    auto v3 = push_image(stack_->store, "web", "latest", "version-3", kHttpd);
    settle();
    s = status();
    EXPECT_EQ(s.phase, "Running") << s.message;
    EXPECT_EQ(s.revision, 6);
    EXPECT_EQ(s.image, v3);
    ASSERT_TRUE(all_ready(s, 6, 2)) << describe(s);
}

TEST_F(RolloutTest, AnImageThatCrashesAtStartIsRolledBack) {
    auto v1 = push_image(stack_->store, "web", "latest", "version-1", kHttpd);
    auto spec = web_spec("web", 2);
    spec.strategy.timeout = 120s;  // the crashes, not the timeout, end the rollout
    controller().apply(spec);
    settle();
    push_image(stack_->store, "web", "latest", "version-2-crashes", kCrashes);
    settle();
    auto s = status();
    EXPECT_EQ(s.phase, "Failed");
    EXPECT_NE(s.message.find("crashed"), std::string::npos) << s.message;
    EXPECT_NE(s.message.find("crashing at start"), std::string::npos) << s.message;
    EXPECT_NE(s.message.find("rolled back to revision 1"), std::string::npos) << s.message;
    EXPECT_EQ(s.image, v1);
    ASSERT_TRUE(all_ready(s, 3, 2)) << describe(s);
    EXPECT_EQ(runc_containers(), 2);
}

TEST_F(RolloutTest, AFirstRevisionThatFailsHasNothingToRollBackTo) {
    push_image(stack_->store, "web", "latest", "version-1-silent", kNeverListens);
    auto spec = web_spec("web", 2);
    spec.strategy.timeout = 2s;
    controller().apply(spec);
    settle();
    auto s = status();
    EXPECT_EQ(s.phase, "Failed");
    EXPECT_NE(s.message.find("nothing to roll back to"), std::string::npos) << s.message;
    EXPECT_TRUE(s.replicas.empty()) << describe(s);
    EXPECT_EQ(runc_containers(), 0);
    EXPECT_EQ(controller().history("web").back().status, "Failed");

    // A good image rolls out.
    push_image(stack_->store, "web", "latest", "version-2", kHttpd);
    settle();
    ASSERT_TRUE(all_ready(status(), 2, 2)) << describe(status());
    EXPECT_EQ(status().phase, "Running");
}

TEST_F(RolloutTest, PausedDeploymentsRecordChangesAndRollThemOutOnResume) {
    push_image(stack_->store, "web", "latest", "version-1", kHttpd);
    auto spec = web_spec("web", 1);
    controller().apply(spec);
    settle();
    controller().pause("web");
    auto v2 = push_image(stack_->store, "web", "latest", "version-2", kHttpd);
    spec.env = {"MODE=paused"};
    controller().apply(spec);
    settle();
    auto s = status();
    EXPECT_EQ(s.phase, "Paused");
    EXPECT_TRUE(s.paused);
    EXPECT_EQ(s.revision, 1);
    ASSERT_TRUE(all_ready(s, 1, 1)) << describe(s);

    // Scaling is not held back by the pause (as Kubernetes): more replicas of
    // the running revision now, the held changes still waiting.
    controller().scale("web", 2);
    settle();
    s = status();
    EXPECT_EQ(s.phase, "Paused");
    EXPECT_EQ(s.revision, 1);
    ASSERT_TRUE(all_ready(s, 1, 2)) << describe(s);
    EXPECT_EQ(runc_containers(), 2);

    controller().resume("web");
    settle();
    s = status();
    EXPECT_EQ(s.phase, "Running") << s.message;
    EXPECT_FALSE(s.paused);
    EXPECT_EQ(s.revision, 2);
    EXPECT_EQ(s.image, v2);
    ASSERT_TRUE(all_ready(s, 2, 2)) << describe(s);
    EXPECT_EQ(controller().history("web").back().spec.env, std::vector<std::string>{"MODE=paused"});
}

TEST_F(RolloutTest, ScalesUpAndDownWithoutANewRevisionAndPersistsTheCount) {
    push_image(stack_->store, "web", "latest", "version-1", kHttpd);
    controller().apply(web_spec("web", 1));
    settle();
    controller().scale("web", 3);
    settle();
    ASSERT_TRUE(all_ready(status(), 1, 3)) << describe(status());
    controller().scale("web", 1);
    settle();
    ASSERT_TRUE(all_ready(status(), 1, 1)) << describe(status());
    EXPECT_EQ(runc_containers(), 1);
    controller().scale("web", 0);
    settle();
    EXPECT_TRUE(status().replicas.empty());
    EXPECT_EQ(runc_containers(), 0);
    controller().scale("web", 2);
    settle();
    ASSERT_TRUE(all_ready(status(), 1, 2)) << describe(status());
    EXPECT_EQ(controller().history("web").size(), 1u);
    EXPECT_THROW(controller().scale("web", -1), Error);
    EXPECT_THROW(controller().scale("nope", 1), Error);
    auto stored = DeploymentRecords(stack_->db).deployments();
    ASSERT_EQ(stored.size(), 1u);
    EXPECT_EQ(stored[0].spec.replicas, 2);
}

// ---- without runc ----------------------------------------------------------------

DeploymentSpec full_spec() {
    DeploymentSpec s;
    s.name = "app";
    s.image_repository = "apps/app";
    s.image_tag = "v1";
    s.container_port = 8080;
    s.ports = {8080, 9090};
    s.replicas = 3;
    s.env = {"A=1", "B=two"};
    s.command = {"/bin/app"};
    s.args = {"serve", "--fast"};
    s.working_dir = "/srv";
    s.user = "app:app";
    s.hostname = "app-host";
    s.readonly_rootfs = true;
    s.automatic = false;
    s.readiness.kind = ProbeSpec::Kind::Http;
    s.readiness.port = 8080;
    s.readiness.path = "/healthz?deep=1";
    s.readiness.expected_status = 204;
    s.readiness.initial_delay = 1500ms;
    s.readiness.period = 2s;
    s.readiness.timeout = 300ms;
    s.readiness.success_threshold = 2;
    s.readiness.failure_threshold = 5;
    s.liveness.kind = ProbeSpec::Kind::Exec;
    s.liveness.command = {"/bin/check", "--live"};
    s.startup.kind = ProbeSpec::Kind::Tcp;
    s.startup.port = 9090;
    s.resources = {256 << 20, 500, 250, 64};
    s.volumes = {{VolumeMount::Kind::Named, "data", "/data", false, 0},
                 {VolumeMount::Kind::Host, "/etc/ssl", "/etc/ssl", true, 0},
                 {VolumeMount::Kind::Tmpfs, "", "/tmp", false, 64 << 20},
                 {VolumeMount::Kind::Empty, "", "/cache", false, 0}};
    s.restart_policy = RestartPolicy::OnFailure;
    s.strategy.type = RolloutStrategy::Type::Recreate;
    s.strategy.max_surge = {2, false};
    s.strategy.max_unavailable = {30, true};
    s.strategy.interval = 250ms;
    s.strategy.update_period = 750ms;
    s.strategy.timeout = 45s;
    s.stop_grace = 7s;
    s.labels = {{"app", "app"}, {"tier", "web"}};
    return s;
}

bool same_spec(const DeploymentSpec& a, const DeploymentSpec& b) {
    return a.name == b.name && a.image_repository == b.image_repository &&
           a.image_tag == b.image_tag && a.container_port == b.container_port &&
           a.ports == b.ports && a.replicas == b.replicas && a.env == b.env &&
           a.command == b.command && a.args == b.args && a.working_dir == b.working_dir &&
           a.user == b.user && a.hostname == b.hostname && a.readonly_rootfs == b.readonly_rootfs &&
           a.automatic == b.automatic && a.readiness == b.readiness && a.liveness == b.liveness &&
           a.startup == b.startup && a.resources == b.resources && a.volumes == b.volumes &&
           a.restart_policy == b.restart_policy && a.strategy == b.strategy &&
           a.stop_grace == b.stop_grace && a.labels == b.labels;
}

TEST(DeploymentSpecJsonTest, RoundTripsEveryField) {
    auto spec = full_spec();
    auto back = deployment_spec_from_json(nlohmann::json::parse(to_json(spec).dump()));
    EXPECT_TRUE(same_spec(back, spec)) << to_json(back).dump(2) << "\nvs\n"
                                       << to_json(spec).dump(2);
    // Defaults too.
    DeploymentSpec plain;
    plain.name = "p";
    plain.image_repository = "r";
    EXPECT_TRUE(same_spec(deployment_spec_from_json(to_json(plain)), plain));
    // Each field is carried: changing any one changes the JSON.
    auto changed = spec;
    changed.strategy.max_unavailable.percent = false;
    EXPECT_NE(to_json(changed), to_json(spec));
    changed = spec;
    changed.volumes[2].size_bytes = 1;
    EXPECT_NE(to_json(changed), to_json(spec));
    EXPECT_THROW(deployment_spec_from_json(nlohmann::json{{"name", "x"}}), Error);
}

TEST(DeploymentRecordsTest, RoundTripsRevisionsPauseAndFailedDigests) {
    fs::TempDir dir;
    registry::Database db(dir.path() / "metadata.db");
    DeploymentRecords records(db);
    auto spec = full_spec();
    auto d1 = oci::Digest::sha256_of("one"), d2 = oci::Digest::sha256_of("two");
    DeploymentRecord rec;
    rec.spec = spec;
    rec.revision = 2;
    rec.digest = d2;
    rec.phase = "Paused";
    rec.paused = true;
    rec.failed_digests = {d1, d2};
    records.save_deployment(rec);
    auto ds = DeploymentRecords(db).deployments();
    ASSERT_EQ(ds.size(), 1u);
    EXPECT_TRUE(same_spec(ds[0].spec, spec));
    EXPECT_TRUE(ds[0].paused);
    EXPECT_EQ(ds[0].failed_digests, (std::vector<oci::Digest>{d1, d2}));

    RevisionInfo r1{1, d1, spec, "initial", "Complete", "", 100};
    auto spec2 = spec;
    spec2.env.push_back("C=3");
    RevisionInfo r2{2, d2, spec2, "config change", "RollingOut", "", 200};
    records.save_revision("app", r2);
    records.save_revision("app", r1);
    r2.status = "Failed";
    r2.message = "replica app-2-x crashed";
    records.save_revision("app", r2);
    auto h = records.revisions("app");
    ASSERT_EQ(h.size(), 2u);
    EXPECT_EQ(h[0].revision, 1);
    EXPECT_EQ(h[1].revision, 2);
    EXPECT_EQ(h[1].digest, d2);
    EXPECT_TRUE(same_spec(h[1].spec, spec2));
    EXPECT_EQ(h[1].cause, "config change");
    EXPECT_EQ(h[1].status, "Failed");
    EXPECT_EQ(h[1].message, "replica app-2-x crashed");
    EXPECT_EQ(h[1].created_unix, 200);
    EXPECT_TRUE(records.revisions("other").empty());

    records.delete_deployment("app");
    EXPECT_TRUE(records.deployments().empty());
    EXPECT_TRUE(records.revisions("app").empty()) << "revisions outlived their deployment";
}

}  // namespace
}  // namespace cascade::runtime
