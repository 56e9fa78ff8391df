// The trigger queue: a tag move rebuilds every dependent once, in dependency
// order; an unchanged rebuild moves no tag and triggers nothing.
#include "engine/build_controller.hpp"

#include <gtest/gtest.h>

#include <map>

#include "engine/builder.hpp"
#include "oci/fs.hpp"
#include "registry/blob_store.hpp"
#include "registry/database.hpp"
#include "registry/store.hpp"
#include "runtime/rootfs.hpp"
#include "runtime/runc.hpp"
#include "support.hpp"

using namespace cascade;
using namespace std::chrono_literals;

namespace {

class BuildControllerTest : public ::testing::Test {
  protected:
    fs::TempDir tmp{{}, "cascade-bc-"};
    registry::Database db{tmp.path() / "state.db"};
    registry::BlobStore blobs{tmp.path() / "blobs"};
    registry::Store store{blobs, db};
    runtime::LayerCache layers{tmp.path() / "layers", blobs};
    runtime::Runc runc{tmp.path() / "runc"};
    engine::Builder builder{store, layers, runc, tmp.path() / "work"};
    std::unique_ptr<engine::BuildController> controller;
    int sub = 0;

    void SetUp() override {
        controller =
            std::make_unique<engine::BuildController>(store, db, builder, tmp.path() / "logs");
        sub = store.subscribe([this](const registry::TagEvent& e) { controller->on_tag_moved(e); });
    }
    void TearDown() override {
        store.unsubscribe(sub);
        controller.reset();
        test::cleanup_state_root(tmp.path());
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

}  // namespace
