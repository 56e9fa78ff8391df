// The event log: one durable, numbered event per tag move or deletion, in
// the transaction that made the change; waiters woken by moves; the
// image-stream tag operation (`cascade tag`) that moves tags by tag, digest
// or generation, across streams.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "registry/events.hpp"
#include "registry/image_streams.hpp"
#include "registry_helpers.hpp"

using namespace cascade;
using namespace cascade::registry;
using namespace cascade::registry::testing;
using namespace std::chrono_literals;

namespace {

const std::string kOciManifest(oci::media::kImageManifest);
const std::string kOciIndex(oci::media::kImageIndex);

class EventsTest : public ::testing::Test {
  protected:
    fs::TempDir tmp{{}, "cascade-events-"};
    std::unique_ptr<StoreOnDisk> s = std::make_unique<StoreOnDisk>(tmp.path());
    Store& store = s->store;
};

// Build and rollout steps share the numbering with tag moves, survive a
// reopen and wake waiters; their JSON is their fields plus id, type, name.
TEST_F(EventsTest, AppendedStepsShareTheNumberingWithTagMoves) {
    auto log = std::make_unique<EventLog>(store);
    auto a = make_image(&s->blobs, "a");
    store.put_manifest("app", a.manifest, kOciManifest, "latest");
    std::atomic<bool> woken{false};
    int64_t before = log->latest_id();
    std::thread waiter([&] { woken = log->wait(before, 30s); });
    int64_t id = log->append("BuildFinished", "app-2", "image change of base:latest",
                             {{"result", "Complete"}, {"durationMs", 1500}});
    waiter.join();
    EXPECT_TRUE(woken);
    EXPECT_EQ(id, before + 1);
    store.put_manifest("app", make_image(&s->blobs, "b").manifest, kOciManifest, "latest");
    log = std::make_unique<EventLog>(store);  // reopened: the same events
    auto events = log->after(0);
    ASSERT_EQ(events.size(), 3u);
    EXPECT_EQ(events[0].type, "TagMoved");
    EXPECT_EQ(events[1].id, id);
    EXPECT_EQ(events[2].type, "TagMoved");
    EXPECT_GT(events[2].id, id);
    auto j = to_json(events[1]);
    EXPECT_EQ(j["type"], "BuildFinished");
    EXPECT_EQ(j["name"], "app-2");
    EXPECT_EQ(j["cause"], "image change of base:latest");
    EXPECT_EQ(j["result"], "Complete");
    EXPECT_EQ(j["durationMs"], 1500);
    EXPECT_EQ(j["resourceVersion"], std::to_string(id));
    EXPECT_EQ(to_json(events[2])["repository"], "app") << "tag moves keep their fields";
}

TEST_F(EventsTest, EveryTagMoveIsANumberedEventWithItsPredecessor) {
    EventLog log(store);
    EXPECT_EQ(log.latest_id(), 0);
    auto a = make_image(&s->blobs, "a");
    auto b = make_image(&s->blobs, "b");
    store.put_manifest("app", a.manifest, kOciManifest, "latest");
    store.put_manifest("app", b.manifest, kOciManifest, "latest", "build app-2");
    store.put_manifest("app", b.manifest, kOciManifest, "latest");  // no move: no event

    auto events = log.after(0);
    ASSERT_EQ(events.size(), 2u);
    EXPECT_EQ(events[0].type, "TagMoved");
    EXPECT_EQ(events[0].repository, "app");
    EXPECT_EQ(events[0].tag, "latest");
    EXPECT_EQ(events[0].generation, 1);
    EXPECT_FALSE(events[0].old_digest);
    EXPECT_EQ(events[0].digest, a.manifest_digest);
    EXPECT_EQ(events[0].cause, "push");
    EXPECT_EQ(events[1].generation, 2);
    EXPECT_EQ(events[1].old_digest, a.manifest_digest);
    EXPECT_EQ(events[1].digest, b.manifest_digest);
    EXPECT_EQ(events[1].cause, "build app-2");
    EXPECT_LT(events[0].id, events[1].id);
    EXPECT_EQ(log.latest_id(), events[1].id);
    EXPECT_EQ(log.after(events[0].id).size(), 1u) << "a resume point skips what was seen";

    auto j = to_json(events[1]);
    EXPECT_EQ(j["resourceVersion"], std::to_string(events[1].id));
    EXPECT_EQ(j["oldDigest"], a.manifest_digest.str());
    EXPECT_EQ(j["digest"], b.manifest_digest.str());
}

TEST_F(EventsTest, ARolledBackMoveLeavesNoEventAndDeletionsAreEvents) {
    EventLog log(store);
    auto a = make_image(&s->blobs, "a");
    store.put_manifest("app", a.manifest, kOciManifest);
    EXPECT_THROW(s->db.transaction([&] {
        store.set_tag("app", "v1", a.manifest_digest, "manual");
        throw Error("abort");
    }),
                 Error);
    EXPECT_TRUE(log.after(0).empty());

    store.set_tag("app", "v1", a.manifest_digest, "manual");
    ASSERT_TRUE(store.delete_tag("app", "v1"));
    auto events = log.after(0);
    ASSERT_EQ(events.size(), 2u);
    EXPECT_EQ(events[1].type, "TagDeleted");
    EXPECT_EQ(events[1].digest, a.manifest_digest);
    EXPECT_EQ(events[1].generation, 1);
}

TEST_F(EventsTest, EventsSurviveAReopenAndIdsNeverRepeat) {
    int64_t last = 0;
    {
        EventLog log(store);
        auto a = make_image(&s->blobs, "a");
        store.put_manifest("app", a.manifest, kOciManifest, "latest");
        last = log.latest_id();
    }
    s.reset();
    s = std::make_unique<StoreOnDisk>(tmp.path());
    EventLog log(s->store);
    EXPECT_EQ(log.latest_id(), last);
    auto b = make_image(&s->blobs, "b");
    s->store.put_manifest("app", b.manifest, kOciManifest, "latest");
    EXPECT_EQ(log.latest_id(), last + 1);
}

TEST_F(EventsTest, WaitWakesOnAMoveAndCloseEndsEveryWait) {
    EventLog log(store);
    auto a = make_image(&s->blobs, "a");
    store.put_manifest("app", a.manifest, kOciManifest);
    std::atomic<bool> woke{false};
    std::thread waiter([&] { woke = log.wait(0, 60s); });
    store.set_tag("app", "latest", a.manifest_digest, "manual");
    waiter.join();
    EXPECT_TRUE(woke);

    int64_t last = log.latest_id();
    std::thread closed([&] { woke = log.wait(last, 60s); });
    log.close();
    closed.join();
    EXPECT_FALSE(woke);
    EXPECT_TRUE(log.closed());
}

class TagImageTest : public EventsTest {};

TEST_F(TagImageTest, ByTagDigestAndGenerationWithCausesInTheHistory) {
    auto a = make_image(&s->blobs, "a");
    auto b = make_image(&s->blobs, "b");
    store.put_manifest("base", a.manifest, kOciManifest, "latest");
    store.put_manifest("base", b.manifest, kOciManifest, "latest");

    // By generation: roll latest back to generation 1.
    auto r = tag_image(store, "base:latest#1", "base:latest");
    EXPECT_TRUE(r.moved);
    EXPECT_EQ(r.digest, a.manifest_digest);
    EXPECT_EQ(r.generation, 3);
    EXPECT_EQ(r.cause, "tag base:latest#1");
    // By digest, to a new tag.
    r = tag_image(store, "base@" + b.manifest_digest.str(), "base:stable");
    EXPECT_EQ(store.tag_digest("base", "stable"), b.manifest_digest);
    // By tag; no move when it already points there.
    r = tag_image(store, "base:stable", "base:latest");
    EXPECT_EQ(r.generation, 4);
    r = tag_image(store, "base:stable", "base:latest");
    EXPECT_FALSE(r.moved);

    auto h = store.tag_history("base", "latest");
    ASSERT_EQ(h.size(), 4u);
    EXPECT_EQ(h[0].cause, "tag base:stable");
    EXPECT_EQ(h[1].cause, "tag base:latest#1");
    EXPECT_EQ(h[1].digest, a.manifest_digest);
    EXPECT_EQ(h[2].cause, "push");
}

TEST_F(TagImageTest, AcrossStreamsLinksTheManifestChildrenAndBlobs) {
    auto a = make_image(&s->blobs, "a");
    auto b = make_image(&s->blobs, "b");
    store.put_manifest("src", a.manifest, kOciManifest);
    store.put_manifest("src", b.manifest, kOciManifest);
    auto index = make_index({a, b});
    auto index_digest = store.put_manifest("src", index, kOciIndex, "multi");

    auto r = tag_image(store, "src:multi", "team/dest:v1");
    EXPECT_TRUE(r.moved);
    EXPECT_EQ(store.tag_digest("team/dest", "v1"), index_digest);
    EXPECT_TRUE(store.has_manifest("team/dest", a.manifest_digest));
    EXPECT_TRUE(store.has_manifest("team/dest", b.manifest_digest));
    EXPECT_TRUE(store.repo_has_blob("team/dest", a.layer_digest));
    EXPECT_TRUE(store.repo_has_blob("team/dest", b.config_digest));
    EXPECT_EQ(store.tag_history("team/dest", "v1").at(0).cause, "tag src:multi");
}

TEST_F(TagImageTest, ErrorsNameWhatIsMissing) {
    auto a = make_image(&s->blobs, "a");
    store.put_manifest("base", a.manifest, kOciManifest, "latest");
    auto message = [&](const std::string& src, const std::string& dst) {
        try {
            tag_image(store, src, dst);
        } catch (const Error& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    EXPECT_NE(message("nope:latest", "base:x").find("does not exist"), std::string::npos);
    EXPECT_NE(message("base:other", "base:x").find("base:other does not exist"), std::string::npos);
    EXPECT_NE(message("base:latest#7", "base:x").find("no generation 7"), std::string::npos);
    EXPECT_NE(message("base:latest#zero", "base:x").find("generation"), std::string::npos);
    EXPECT_NE(message("base@sha256:" + std::string(64, 'a'), "base:x").find("not in stream base"),
              std::string::npos);
    EXPECT_NE(message("base:latest", "base@sha256:" + std::string(64, 'a')).find("STREAM:TAG"),
              std::string::npos);
    EXPECT_NE(message("base:latest", "Bad Name:x").find("not a valid stream name"),
              std::string::npos);
    EXPECT_FALSE(store.tag_digest("base", "x"));
}

}  // namespace
