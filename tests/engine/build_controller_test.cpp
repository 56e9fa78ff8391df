// The trigger queue: a tag move rebuilds every dependent once, in dependency
// order; an unchanged rebuild moves no tag and triggers nothing.
#include "engine/build_controller.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <mutex>

#include "tests/engine/builder_fixture.hpp"

using namespace cascade;
using namespace std::chrono_literals;

namespace {

class BuildControllerTest : public ::testing::Test, protected builder_testing::BuilderState {
  protected:
    std::unique_ptr<engine::BuildController> controller;
    int sub = 0;

    BuildControllerTest() : BuilderState("cascade-bc-") {}

    void SetUp() override { start_controller(); }
    void TearDown() override {
        stop_controller();
        test::cleanup_state_root(tmp.path());
    }

    // A controller on the state root's records, told of every tag move.
    void start_controller() {
        controller =
            std::make_unique<engine::BuildController>(store, db, builder, tmp.path() / "logs");
        sub = store.subscribe([this](const registry::TagEvent& e) { controller->on_tag_moved(e); });
    }
    void stop_controller() {
        store.unsubscribe(sub);
        controller.reset();
    }

    // Applies the config "slow" (a RUN of sleep 600) and waits until its
    // build runs that step.
    void start_slow_build() {
        std::filesystem::copy_file("/bin/busybox", tmp.path() / "busybox");
        controller->apply(config("slow",
                                 "FROM scratch\nCOPY busybox /bin/busybox\n"
                                 "RUN [\"/bin/busybox\", \"sleep\", \"600\"]\n"));
        ASSERT_TRUE(test::eventually(
            [&] {
                auto b = controller->build("slow-1");
                return b && b->phase == "Running" && b->steps.size() == 2;
            },
            60s));
    }

    engine::BuildConfigSpec config(const std::string& name, const std::string& dockerfile) {
        engine::BuildConfigSpec s;
        s.name = name;
        s.context = tmp.path();
        s.dockerfile_text = dockerfile;
        s.output_repository = name;
        s.config_change_trigger = true;
        s.image_change_trigger = true;
        return s;
    }

    std::map<std::string, std::vector<engine::BuildRecord>> by_config() {
        std::map<std::string, std::vector<engine::BuildRecord>> out;
        for (auto& b : controller->builds())
            out[b.config].push_back(b);
        return out;
    }
};

TEST_F(BuildControllerTest, CascadeBuildsEachDependentOnceInOrder) {
    // a ← b ← d, a ← c
    controller->apply(config("a", "FROM scratch\nLABEL release=1\n"));
    controller->apply(config("b", "FROM a\nLABEL b=1\n"));
    controller->apply(config("c", "FROM a\nLABEL c=1\n"));
    controller->apply(config("d", "FROM b\nLABEL d=1\n"));
    ASSERT_TRUE(controller->wait_idle(120s));
    auto first = by_config();
    for (auto name : {"a", "b", "c", "d"}) {
        ASSERT_EQ(first[name].size(), 1u) << name << " built once at creation";
        EXPECT_EQ(first[name][0].phase, "Complete") << first[name][0].message;
    }

    // The base changes: everything downstream rebuilds, once, after its base.
    EXPECT_EQ(controller->apply(config("a", "FROM scratch\nLABEL release=2\n")),
              engine::BuildController::ApplyResult::Configured);
    ASSERT_TRUE(controller->wait_idle(120s));
    auto second = by_config();
    for (auto name : {"a", "b", "c", "d"}) {
        ASSERT_EQ(second[name].size(), 2u) << name;
        EXPECT_EQ(second[name][1].phase, "Complete") << second[name][1].message;
        EXPECT_EQ(second[name][1].name, std::string(name) + "-2");
    }
    EXPECT_GE(second["b"][1].started, second["a"][1].finished);
    EXPECT_GE(second["c"][1].started, second["a"][1].finished);
    EXPECT_GE(second["d"][1].started, second["b"][1].finished);
    EXPECT_EQ(second["b"][1].base_digest, second["a"][1].image_digest);
    EXPECT_EQ(second["d"][1].base_digest, second["b"][1].image_digest);
    EXPECT_EQ(store.tag_history("d", "latest").size(), 2u);
}

TEST_F(BuildControllerTest, UnchangedRebuildMovesNoTagAndTriggersNothing) {
    controller->apply(config("a", "FROM scratch\nLABEL release=1\n"));
    controller->apply(config("b", "FROM a\nLABEL b=1\n"));
    ASSERT_TRUE(controller->wait_idle(120s));
    auto name = controller->start_build("a");
    EXPECT_EQ(name, "a-2");
    ASSERT_TRUE(controller->wait_idle(120s));
    auto a2 = controller->build("a-2");
    ASSERT_TRUE(a2);
    EXPECT_EQ(a2->phase, "Complete");
    EXPECT_FALSE(a2->tag_moved);
    EXPECT_EQ(controller->builds("b").size(), 1u);
    EXPECT_EQ(store.tag_history("a", "latest").size(), 1u);
}

// A tag move as the store reports it (the controller only reads the tag).
registry::TagEvent moved(const std::string& repo, int64_t generation, const oci::Digest& digest) {
    return {repo, "latest", generation, digest, digest, "test", 0};
}

TEST_F(BuildControllerTest, MovesWhileADependentIsQueuedAreCoalescedIntoOneBuild) {
    std::vector<std::string> hooked;  // "name phase", from the build hook
    std::mutex hooked_mu;
    controller->set_build_hook([&](const engine::BuildRecord& b) {
        std::lock_guard lock(hooked_mu);
        hooked.push_back(b.name + " " + b.phase);
    });
    controller->apply(config("a", "FROM scratch\nLABEL release=1\n"));
    controller->apply(config("b", "FROM a\nLABEL b=1\n"));
    ASSERT_TRUE(controller->wait_idle(120s));
    ASSERT_EQ(controller->builds("b").size(), 1u);
    ASSERT_NO_FATAL_FAILURE(start_slow_build());  // the worker is busy
    auto a = store.tag_digest("a", "latest");
    ASSERT_TRUE(a);
    controller->on_tag_moved(moved("a", 2, *a));
    controller->on_tag_moved(moved("a", 3, *a));
    auto queued = controller->builds("b");
    ASSERT_EQ(queued.size(), 2u) << "two moves while b waits: one build";
    EXPECT_EQ(queued[1].phase, "New");
    EXPECT_EQ(controller->start_build("b"), queued[1].name) << "a manual start joins it too";

    EXPECT_TRUE(controller->cancel("slow-1"));
    ASSERT_TRUE(controller->wait_idle(120s));
    auto done = controller->builds("b");
    ASSERT_EQ(done.size(), 2u);
    EXPECT_EQ(done[1].phase, "Complete") << done[1].message;
    std::lock_guard lock(hooked_mu);
    for (const char* want : {"a-1 Running", "a-1 Complete", "b-1 Running", "b-1 Complete",
                             "slow-1 Running", "slow-1 Cancelled", "b-2 Running", "b-2 Complete"})
        EXPECT_EQ(std::count(hooked.begin(), hooked.end(), want), 1)
            << want << " in " << ::testing::PrintToString(hooked);
    EXPECT_LT(std::find(hooked.begin(), hooked.end(), "a-1 Complete"),
              std::find(hooked.begin(), hooked.end(), "b-1 Running"));
}

// A move to the digest the dependent's last build already used (the tag moved
// while that build was resolving its FROM) builds nothing: the queued build
// is dropped with its record; a move to another digest still builds.
TEST_F(BuildControllerTest, AnImageChangeToTheDigestAlreadyBuiltOnIsDropped) {
    controller->apply(config("a", "FROM scratch\nLABEL release=1\n"));
    controller->apply(config("b", "FROM a\nLABEL b=1\n"));
    ASSERT_TRUE(controller->wait_idle(120s));
    ASSERT_EQ(controller->builds("b").size(), 1u);
    auto a = store.tag_digest("a", "latest");
    ASSERT_TRUE(a);
    EXPECT_EQ(controller->builds("b")[0].base_digest, a->str());
    controller->on_tag_moved(moved("a", 2, *a));
    ASSERT_TRUE(controller->wait_idle(120s));
    auto builds = controller->builds("b");
    ASSERT_EQ(builds.size(), 1u) << builds.back().name << " " << builds.back().phase;
    // A real change of a still rebuilds b.
    controller->apply(config("a", "FROM scratch\nLABEL release=2\n"));
    ASSERT_TRUE(controller->wait_idle(120s));
    builds = controller->builds("b");
    ASSERT_EQ(builds.size(), 2u);
    EXPECT_EQ(builds[1].phase, "Complete") << builds[1].message;
    EXPECT_EQ(builds[1].base_digest, store.tag_digest("a", "latest")->str());
}

TEST_F(BuildControllerTest, AMoveWhileADependentRunsMakesExactlyOneMoreBuildAfterIt) {
    std::filesystem::copy_file("/bin/busybox", tmp.path() / "busybox");
    controller->apply(config("a", "FROM scratch\nCOPY busybox /bin/busybox\n"));
    auto b = config("b", "FROM a\nRUN [\"/bin/busybox\", \"sleep\", \"600\"]\n");
    b.config_change_trigger = false;  // built by a's move
    controller->apply(b);
    ASSERT_TRUE(test::eventually(
        [&] {
            auto r = controller->build("b-1");
            return r && r->phase == "Running";
        },
        120s));
    auto a = store.tag_digest("a", "latest");
    ASSERT_TRUE(a);
    // Two moves while b-1 runs: one build queued behind it, none beside it.
    controller->on_tag_moved(moved("a", 2, *a));
    controller->on_tag_moved(moved("a", 3, *a));
    auto builds = controller->builds("b");
    ASSERT_EQ(builds.size(), 2u);
    EXPECT_EQ(builds[0].phase, "Running");
    EXPECT_EQ(builds[1].phase, "New");
    EXPECT_EQ(builds[1].cause_kind, engine::BuildCause::ImageChange);
    // The next build of b is quick; b-1 is stopped.
    b.dockerfile_text = "FROM a\nLABEL quick=1\n";
    EXPECT_EQ(controller->apply(b), engine::BuildController::ApplyResult::Configured);
    EXPECT_TRUE(controller->cancel("b-1"));
    ASSERT_TRUE(controller->wait_idle(120s));
    builds = controller->builds("b");
    ASSERT_EQ(builds.size(), 2u) << "exactly one more build";
    EXPECT_EQ(builds[0].phase, "Cancelled");
    EXPECT_EQ(builds[1].phase, "Complete") << builds[1].message;
    EXPECT_GE(builds[1].started, builds[0].finished) << "never two builds of b at once";
    expect_nothing_running();
}

TEST_F(BuildControllerTest, FailedBuildIsRecordedWithItsLog) {
    controller->apply(config("bad", "FROM missing-base\n"));
    ASSERT_TRUE(controller->wait_idle(120s));
    auto b = controller->build("bad-1");
    ASSERT_TRUE(b);
    EXPECT_EQ(b->phase, "Failed");
    EXPECT_NE(b->message.find("missing-base"), std::string::npos) << b->message;
    auto log = fs::read_file(controller->log_path("bad-1"));
    EXPECT_NE(log.find("missing-base"), std::string::npos) << log;
    EXPECT_THROW(controller->start_build("no-such-config"), Error);
}

TEST_F(BuildControllerTest, RecordsCauseAndStepTimings) {
    controller->apply(config("a", "FROM scratch\nLABEL release=1\n"));
    controller->apply(config("b", "FROM a\nLABEL b=1\n"));
    ASSERT_TRUE(controller->wait_idle(120s));
    controller->apply(config("a", "FROM scratch\nLABEL release=2\n"));
    ASSERT_TRUE(controller->wait_idle(120s));
    auto a2 = controller->build("a-2");
    ASSERT_TRUE(a2);
    EXPECT_EQ(a2->cause_kind, engine::BuildCause::ConfigChange);
    ASSERT_EQ(a2->steps.size(), 2u);
    EXPECT_EQ(a2->steps[0].text, "FROM scratch");
    EXPECT_EQ(a2->steps[1].text, "LABEL release=2");
    EXPECT_EQ(a2->steps[1].number, 2u);
    auto b2 = controller->build("b-2");
    ASSERT_TRUE(b2);
    EXPECT_EQ(b2->cause_kind, engine::BuildCause::ImageChange);
    EXPECT_EQ(b2->cause, "image change of a:latest to " + a2->image_digest);
    EXPECT_EQ(b2->to_json()["steps"].size(), 2u);
}

TEST_F(BuildControllerTest, HistoryLimitsPruneOldRecordsAndLogs) {
    auto good = config("good", "FROM scratch\nLABEL x=1\n");
    good.successful_builds_history_limit = 2;
    controller->apply(good);
    ASSERT_TRUE(controller->wait_idle(120s));
    for (int i = 0; i < 3; i++) {
        controller->start_build("good");
        ASSERT_TRUE(controller->wait_idle(120s));
    }
    auto kept = controller->builds("good");
    ASSERT_EQ(kept.size(), 2u);
    EXPECT_EQ(kept[0].name, "good-3");
    EXPECT_EQ(kept[1].name, "good-4");
    EXPECT_FALSE(std::filesystem::exists(controller->log_path("good-1")));
    EXPECT_FALSE(std::filesystem::exists(controller->log_path("good-2")));
    EXPECT_TRUE(std::filesystem::exists(controller->log_path("good-4")));

    auto bad = config("bad", "FROM missing-base\n");
    bad.failed_builds_history_limit = 1;
    controller->apply(bad);
    ASSERT_TRUE(controller->wait_idle(120s));
    controller->start_build("bad");
    ASSERT_TRUE(controller->wait_idle(120s));
    auto failed = controller->builds("bad");
    ASSERT_EQ(failed.size(), 1u);
    EXPECT_EQ(failed[0].name, "bad-2");
    EXPECT_EQ(failed[0].phase, "Failed");
    EXPECT_FALSE(std::filesystem::exists(controller->log_path("bad-1")));
}

TEST_F(BuildControllerTest, CancelQueuedAndRunningBuilds) {
    ASSERT_NO_FATAL_FAILURE(start_slow_build());
    // Queued behind the running build: cancelled, it never runs.
    auto quick = config("quick", "FROM scratch\nLABEL q=1\n");
    quick.config_change_trigger = false;
    controller->apply(quick);
    auto queued = controller->start_build("quick");
    EXPECT_EQ(controller->build(queued)->phase, "New");
    EXPECT_TRUE(controller->cancel(queued));
    auto q = controller->build(queued);
    EXPECT_EQ(q->phase, "Cancelled");
    EXPECT_EQ(q->started, 0);

    EXPECT_TRUE(controller->cancel("slow-1"));
    ASSERT_TRUE(controller->wait_idle(120s));
    auto slow = controller->build("slow-1");
    EXPECT_EQ(slow->phase, "Cancelled") << slow->message;
    EXPECT_FALSE(store.resolve("quick", "latest"));
    EXPECT_FALSE(store.resolve("slow", "latest"));
    EXPECT_FALSE(controller->cancel("slow-1"));  // already over
    EXPECT_THROW(controller->cancel("slow-9"), Error);
    expect_nothing_running();
}

TEST_F(BuildControllerTest, RestartMarksARunningBuildFailed) {
    controller->apply(config("a", "FROM scratch\nLABEL release=1\n"));
    ASSERT_TRUE(controller->wait_idle(120s));
    stop_controller();
    // As if the daemon died during the build.
    db.query("UPDATE builds SET phase = 'Running', finished = 0 WHERE name = 'a-1'");
    start_controller();
    auto a1 = controller->build("a-1");
    ASSERT_TRUE(a1);
    EXPECT_EQ(a1->phase, "Failed");
    EXPECT_EQ(a1->message, "daemon stopped during the build");
    EXPECT_GT(a1->finished, 0);
}

TEST_F(BuildControllerTest, StoppingTheControllerStopsARunningBuild) {
    ASSERT_NO_FATAL_FAILURE(start_slow_build());
    stop_controller();  // as the daemon does on SIGTERM: does not wait 600 s
    start_controller();
    auto b = controller->build("slow-1");
    ASSERT_TRUE(b);
    EXPECT_EQ(b->phase, "Failed");
    EXPECT_EQ(b->message, "daemon stopped during the build");
    expect_nothing_running();
}

}  // namespace
