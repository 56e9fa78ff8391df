#include "registry/store.hpp"

#include <gtest/gtest.h>

#include "registry_helpers.hpp"

namespace cascade::registry {
namespace {

using testing::make_image;
using testing::make_index;
using testing::SampleImage;
using testing::StoreOnDisk;

const std::string kOciManifest(oci::media::kImageManifest);

class StoreTest : public ::testing::Test {
  protected:
    fs::TempDir tmp;
    std::unique_ptr<StoreOnDisk> s = std::make_unique<StoreOnDisk>(tmp.path());
    Store& store = s->store;

    SampleImage image(const std::string& salt) { return make_image(&s->blobs, salt); }
};

TEST_F(StoreTest, PutManifestKeepsExactBytesAndTags) {
    auto img = image("one");
    auto d = store.put_manifest("library/busybox", img.manifest, kOciManifest, "latest");
    EXPECT_EQ(d, img.manifest_digest);
    EXPECT_EQ(d, oci::Digest::sha256_of(img.manifest));

    for (const std::string& ref : {std::string("latest"), d.str()}) {
        auto m = store.resolve("library/busybox", ref);
        ASSERT_TRUE(m) << ref;
        EXPECT_EQ(m->digest, d);
        EXPECT_EQ(m->media_type, kOciManifest);
        EXPECT_EQ(m->size, static_cast<int64_t>(img.manifest.size()));
        EXPECT_EQ(store.manifest_bytes(*m), img.manifest) << "bytes must be stored as received";
    }
    EXPECT_TRUE(s->blobs.has(d)) << "manifest bytes live in the blob store";
    EXPECT_FALSE(store.resolve("library/busybox", "other"));
    EXPECT_FALSE(store.resolve("library/other", "latest"));
    EXPECT_EQ(store.tag_digest("library/busybox", "latest"), d);
    EXPECT_EQ(store.tags("library/busybox"), std::vector<std::string>{"latest"});
    EXPECT_EQ(store.repositories(), std::vector<std::string>{"library/busybox"});
    EXPECT_TRUE(store.has_repository("library/busybox"));
    EXPECT_TRUE(store.has_manifest("library/busybox", d));
    EXPECT_FALSE(store.has_manifest("library/other", d));
    EXPECT_TRUE(store.repo_has_blob("library/busybox", img.layer_digest));
    EXPECT_TRUE(store.repo_has_blob("library/busybox", img.config_digest));
}

TEST_F(StoreTest, MediaTypeComesFromContentTypeOrDocument) {
    auto docker = make_image(&s->blobs, "docker", oci::media::kDockerManifest);
    auto d = store.put_manifest("d", docker.manifest,
                                std::string(oci::media::kDockerManifest) + "; charset=utf-8");
    EXPECT_EQ(store.resolve("d", d.str())->media_type, oci::media::kDockerManifest);

    // A generic Content-Type: the document's own mediaType decides.
    auto img = image("generic");
    auto d2 = store.put_manifest("g", img.manifest, "application/octet-stream");
    EXPECT_EQ(store.resolve("g", d2.str())->media_type, kOciManifest);

    // A Content-Type contradicting the document is refused.
    EXPECT_THROW(store.put_manifest("g", img.manifest, std::string(oci::media::kDockerManifest)),
                 ManifestInvalid);
}

TEST_F(StoreTest, TagHistoryCountsGenerations) {
    auto a = image("a"), b = image("b");
    store.put_manifest("app", a.manifest, kOciManifest, "v1", "push");
    store.put_manifest("app", b.manifest, kOciManifest, "v1", "build app-2");
    store.put_manifest("app", a.manifest, kOciManifest, "v1", "push");
    auto h = store.tag_history("app", "v1");
    ASSERT_EQ(h.size(), 3u);
    EXPECT_EQ(h[0].generation, 3);
    EXPECT_EQ(h[0].digest, a.manifest_digest);
    EXPECT_EQ(h[0].cause, "push");
    EXPECT_EQ(h[1].generation, 2);
    EXPECT_EQ(h[1].digest, b.manifest_digest);
    EXPECT_EQ(h[1].cause, "build app-2");
    EXPECT_EQ(h[2].generation, 1);
    EXPECT_EQ(h[2].digest, a.manifest_digest);
    EXPECT_GT(h[2].time, 0);
    EXPECT_EQ(store.tag_digest("app", "v1"), a.manifest_digest);
    // Another tag has its own numbering.
    store.put_manifest("app", b.manifest, kOciManifest, "v2");
    EXPECT_EQ(store.tag_history("app", "v2").at(0).generation, 1);
}

TEST_F(StoreTest, MovingATagToItsDigestRecordsNothing) {
    auto a = image("a");
    std::vector<TagEvent> events;
    store.subscribe([&](const TagEvent& e) { events.push_back(e); });
    store.put_manifest("app", a.manifest, kOciManifest, "v1");
    store.put_manifest("app", a.manifest, kOciManifest, "v1");
    EXPECT_FALSE(store.set_tag("app", "v1", a.manifest_digest, "tag"));
    EXPECT_EQ(store.tag_history("app", "v1").size(), 1u);
    EXPECT_EQ(events.size(), 1u);
    EXPECT_TRUE(store.set_tag("app", "other", a.manifest_digest, "tag"));
    EXPECT_EQ(events.size(), 2u);
}

TEST_F(StoreTest, MissingBlobIsRefusedAndNothingIsStored) {
    auto img = make_image(nullptr, "unstored");  // blobs not written
    s->blobs.put(img.config);                    // only the config
    try {
        store.put_manifest("app", img.manifest, kOciManifest, "v1");
        FAIL() << "manifest with a missing layer was accepted";
    } catch (const ManifestBlobUnknown& e) {
        EXPECT_NE(std::string(e.what()).find(img.layer_digest.str()), std::string::npos)
            << e.what();
    }
    EXPECT_FALSE(store.resolve("app", "v1"));
    EXPECT_FALSE(store.resolve("app", img.manifest_digest.str()));
    EXPECT_TRUE(store.tag_history("app", "v1").empty());
    EXPECT_TRUE(store.repositories().empty());
}

TEST_F(StoreTest, DescriptorSizeMustMatchTheBlob) {
    auto img = image("size");
    std::string lying = img.manifest;
    auto pos = lying.find("\"size\":" + std::to_string(img.layer.size()));
    ASSERT_NE(pos, std::string::npos);
    lying.replace(pos, 7 + std::to_string(img.layer.size()).size(), "\"size\":1");
    EXPECT_THROW(store.put_manifest("app", lying, kOciManifest), ManifestInvalid);
}

TEST_F(StoreTest, InvalidDocumentsAreRefused) {
    EXPECT_THROW(store.put_manifest("app", "not json", kOciManifest), ManifestInvalid);
    EXPECT_THROW(store.put_manifest("app", "[1,2]", kOciManifest), ManifestInvalid);
    EXPECT_THROW(store.put_manifest("app", R"({"schemaVersion":2,"layers":"nope"})", kOciManifest),
                 ManifestInvalid);
    EXPECT_THROW(store.put_manifest("app", R"({"schemaVersion":1,"name":"x","fsLayers":[]})",
                                    "application/vnd.docker.distribution.manifest.v1+json"),
                 ManifestInvalid);
    EXPECT_THROW(store.put_manifest("Bad_Name", image("x").manifest, kOciManifest), Error);
    EXPECT_THROW(store.put_manifest("app", image("x").manifest, kOciManifest, "bad tag"), Error);
    EXPECT_TRUE(store.repositories().empty());
}

TEST_F(StoreTest, IndexNeedsItsChildrenInTheRepository) {
    auto a = image("amd64"), b = image("arm64");
    std::string index = make_index({a, b});
    store.put_manifest("multi", a.manifest, kOciManifest);
    // b is not in "multi" (only in another repository): refused.
    store.put_manifest("elsewhere", b.manifest, kOciManifest);
    EXPECT_THROW(store.put_manifest("multi", index, std::string(oci::media::kImageIndex), "v1"),
                 ManifestBlobUnknown);
    EXPECT_FALSE(store.tag_digest("multi", "v1"));

    store.put_manifest("multi", b.manifest, kOciManifest);
    auto d = store.put_manifest("multi", index, std::string(oci::media::kImageIndex), "v1");
    auto m = store.resolve("multi", "v1");
    ASSERT_TRUE(m);
    EXPECT_EQ(m->digest, d);
    EXPECT_EQ(m->media_type, oci::media::kImageIndex);
    EXPECT_EQ(store.manifest_bytes(*m), index);
}

TEST_F(StoreTest, SubscribersHearCommittedMoves) {
    auto a = image("a"), b = image("b");
    std::vector<TagEvent> events;
    std::optional<oci::Digest> seen_in_callback;
    int id = store.subscribe([&](const TagEvent& e) {
        events.push_back(e);
        // Called after commit: the store already answers with the new digest.
        seen_in_callback = store.tag_digest(e.repository, e.tag);
    });
    store.put_manifest("team/app", a.manifest, kOciManifest, "prod", "push");
    ASSERT_EQ(events.size(), 1u);
    EXPECT_EQ(events[0].repository, "team/app");
    EXPECT_EQ(events[0].tag, "prod");
    EXPECT_EQ(events[0].generation, 1);
    EXPECT_FALSE(events[0].old_digest);
    EXPECT_EQ(events[0].new_digest, a.manifest_digest);
    EXPECT_EQ(events[0].cause, "push");
    EXPECT_EQ(seen_in_callback, a.manifest_digest);

    store.put_manifest("team/app", b.manifest, kOciManifest, "prod", "build app-2");
    ASSERT_EQ(events.size(), 2u);
    EXPECT_EQ(events[1].generation, 2);
    EXPECT_EQ(events[1].old_digest, a.manifest_digest);
    EXPECT_EQ(events[1].new_digest, b.manifest_digest);
    EXPECT_EQ(events[1].cause, "build app-2");

    // A move inside a transaction that rolls back is never announced.
    EXPECT_THROW(s->db.transaction([&] {
        store.set_tag("team/app", "prod", a.manifest_digest, "tag");
        EXPECT_EQ(events.size(), 2u) << "not before commit";
        throw Error("abort");
    }),
                 Error);
    EXPECT_EQ(events.size(), 2u);
    EXPECT_EQ(store.tag_digest("team/app", "prod"), b.manifest_digest);
    EXPECT_EQ(store.tag_history("team/app", "prod").size(), 2u);

    // A subscriber that throws does not undo the move or silence the others.
    int calls = 0;
    int bad = store.subscribe([](const TagEvent&) { throw Error("subscriber failure"); });
    int counting = store.subscribe([&](const TagEvent&) { calls++; });
    EXPECT_TRUE(store.set_tag("team/app", "prod", a.manifest_digest, "tag"));
    EXPECT_EQ(calls, 1);
    EXPECT_EQ(store.tag_digest("team/app", "prod"), a.manifest_digest);

    store.unsubscribe(id);
    store.unsubscribe(bad);
    store.unsubscribe(counting);
    store.set_tag("team/app", "prod", b.manifest_digest, "tag");
    EXPECT_EQ(events.size(), 3u);
    EXPECT_EQ(calls, 1);
}

TEST_F(StoreTest, SetTagNeedsTheManifestInTheRepository) {
    auto a = image("a");
    store.put_manifest("one", a.manifest, kOciManifest);
    EXPECT_THROW(store.set_tag("two", "v1", a.manifest_digest, "tag"), Error);
    EXPECT_TRUE(store.set_tag("one", "v1", a.manifest_digest, "tag"));
    EXPECT_EQ(store.tag_history("one", "v1").at(0).cause, "tag");
}

TEST_F(StoreTest, DeleteTagAndManifest) {
    auto a = image("a"), b = image("b");
    store.put_manifest("app", a.manifest, kOciManifest, "v1");
    store.put_manifest("app", a.manifest, kOciManifest, "also-a");
    store.put_manifest("app", b.manifest, kOciManifest, "v2");
    EXPECT_TRUE(store.delete_tag("app", "v2"));
    EXPECT_FALSE(store.delete_tag("app", "v2"));
    EXPECT_EQ(store.tags("app"), (std::vector<std::string>{"also-a", "v1"}));
    EXPECT_TRUE(store.has_manifest("app", b.manifest_digest)) << "the manifest stays";

    EXPECT_TRUE(store.delete_manifest("app", a.manifest_digest));
    EXPECT_FALSE(store.delete_manifest("app", a.manifest_digest));
    EXPECT_TRUE(store.tags("app").empty()) << "tags of a deleted manifest go with it";
    EXPECT_EQ(store.tag_history("app", "v1").size(), 1u) << "history stays";

    // Re-pushing continues the generation count.
    store.put_manifest("app", a.manifest, kOciManifest, "v1");
    EXPECT_EQ(store.tag_history("app", "v1").at(0).generation, 2);
}

TEST_F(StoreTest, LinkBlobCreatesTheRepository) {
    auto d = s->blobs.put("loose blob");
    EXPECT_FALSE(store.repo_has_blob("loose", d));
    store.link_blob("loose", d);
    store.link_blob("loose", d);
    EXPECT_TRUE(store.repo_has_blob("loose", d));
    EXPECT_EQ(store.repositories(), std::vector<std::string>{"loose"});
}

TEST_F(StoreTest, StateSurvivesReopening) {
    auto a = image("a"), b = image("b");
    store.put_manifest("a/b/c", a.manifest, kOciManifest, "t");
    store.put_manifest("a/b/c", b.manifest, kOciManifest, "t");
    s.reset();
    StoreOnDisk again(tmp.path());
    EXPECT_EQ(again.store.tag_digest("a/b/c", "t"), b.manifest_digest);
    EXPECT_EQ(again.store.tag_history("a/b/c", "t").size(), 2u);
    EXPECT_EQ(again.store.manifest_bytes(*again.store.resolve("a/b/c", "t")), b.manifest);
}

TEST_F(StoreTest, PushManifestMovesSeveralTagsAtOnce) {
    auto a = image("a");
    std::vector<TagEvent> events;
    store.subscribe([&](const TagEvent& e) { events.push_back(e); });
    ManifestPush how;
    how.tags = {"one", "two"};
    how.cause = "test";
    auto pushed = store.push_manifest("app", a.manifest, kOciManifest, how);
    EXPECT_EQ(pushed.digest, a.manifest_digest);
    EXPECT_EQ(pushed.media_type, kOciManifest);
    EXPECT_FALSE(pushed.subject);
    EXPECT_EQ(store.tags("app"), (std::vector<std::string>{"one", "two"}));
    ASSERT_EQ(events.size(), 2u);
    EXPECT_EQ(events[1].cause, "test");
    // A bad tag refuses the whole push.
    how.tags = {"three", "bad tag"};
    EXPECT_THROW(store.push_manifest("app", image("b").manifest, kOciManifest, how), Error);
    EXPECT_FALSE(store.tag_digest("app", "three"));
}

TEST_F(StoreTest, RequireLinkedBlobsRefusesBlobsOfOtherRepositories) {
    auto a = image("linked");  // in the blob store, linked nowhere
    ManifestPush how;
    how.require_linked_blobs = true;
    EXPECT_THROW(store.push_manifest("app", a.manifest, kOciManifest, how), ManifestBlobUnknown);
    store.link_blob("app", a.config_digest);
    EXPECT_THROW(store.push_manifest("app", a.manifest, kOciManifest, how), ManifestBlobUnknown);
    store.link_blob("app", a.layer_digest);
    EXPECT_EQ(store.push_manifest("app", a.manifest, kOciManifest, how).digest, a.manifest_digest);
}

TEST_F(StoreTest, UnlinkBlob) {
    auto d = s->blobs.put("blob");
    store.link_blob("one", d);
    store.link_blob("two", d);
    EXPECT_TRUE(store.unlink_blob("one", d));
    EXPECT_FALSE(store.unlink_blob("one", d));
    EXPECT_FALSE(store.repo_has_blob("one", d));
    EXPECT_TRUE(store.repo_has_blob("two", d));
    EXPECT_TRUE(s->blobs.has(d));
}

std::string referrer_manifest(BlobStore& blobs, const oci::Digest& subject,
                              const std::string& artifact_type, const std::string& salt) {
    std::string config = "{}", layer = "payload " + salt;
    blobs.put(config);
    blobs.put(layer);
    nlohmann::json m = {
        {"schemaVersion", 2},
        {"mediaType", oci::media::kImageManifest},
        {"config",
         {{"mediaType", oci::media::kEmptyJson},
          {"digest", oci::Digest::sha256_of(config).str()},
          {"size", config.size()}}},
        {"layers",
         {{{"mediaType", "application/octet-stream"},
           {"digest", oci::Digest::sha256_of(layer).str()},
           {"size", layer.size()}}}},
        {"subject",
         {{"mediaType", oci::media::kImageManifest}, {"digest", subject.str()}, {"size", 10}}},
        {"annotations", {{"salt", salt}}}};
    if (!artifact_type.empty()) m["artifactType"] = artifact_type;
    return m.dump();
}

TEST_F(StoreTest, ReferrersAreRecordedAndFiltered) {
    auto subject = oci::Digest::sha256_of("subject, never pushed");
    auto sig = referrer_manifest(s->blobs, subject, "application/sig", "1");
    auto plain = referrer_manifest(s->blobs, subject, "", "2");
    auto pushed = store.push_manifest("app", sig, kOciManifest, {});
    EXPECT_EQ(pushed.subject, subject);
    store.put_manifest("app", plain, kOciManifest);
    auto all = store.referrers("app", subject);
    ASSERT_EQ(all.size(), 2u);
    EXPECT_EQ(all[0].digest, oci::Digest::sha256_of(sig));
    EXPECT_EQ(all[0].artifact_type, "application/sig");
    EXPECT_EQ(all[0].annotations.at("salt"), "1");
    EXPECT_EQ(all[0].size, static_cast<int64_t>(sig.size()));
    EXPECT_EQ(all[1].artifact_type, oci::media::kEmptyJson) << "the config's media type";
    EXPECT_EQ(store.referrers("app", subject, "application/sig").size(), 1u);
    EXPECT_TRUE(store.referrers("other", subject).empty());
    store.delete_manifest("app", oci::Digest::sha256_of(sig));
    EXPECT_EQ(store.referrers("app", subject).size(), 1u);
}

TEST_F(StoreTest, ReferrersOfManifestsStoredBeforeTheTableExistedAreFound) {
    auto subject = oci::Digest::sha256_of("old subject");
    auto sig = referrer_manifest(s->blobs, subject, "application/sig", "old");
    store.put_manifest("app", sig, kOciManifest, "v1");
    // The database as an older cascade left it.
    s->db.exec(
        "DROP TABLE registry_referrers;"
        "ALTER TABLE registry_tag_history DROP COLUMN media_type;"
        "ALTER TABLE registry_tag_history DROP COLUMN size;"
        "DELETE FROM schema_migrations WHERE name = 'registry-0002-referrers';");
    s.reset();
    StoreOnDisk again(tmp.path());
    auto found = again.store.referrers("app", subject);
    ASSERT_EQ(found.size(), 1u);
    EXPECT_EQ(found[0].digest, oci::Digest::sha256_of(sig));
    // History rows from before keep working, described by their manifest.
    auto h = again.store.tag_history("app", "v1");
    ASSERT_EQ(h.size(), 1u);
    EXPECT_EQ(h[0].media_type, kOciManifest);
    EXPECT_EQ(h[0].size, static_cast<int64_t>(sig.size()));
}

TEST_F(StoreTest, TagHistoryKeepsTheDescriptorOfDeletedManifests) {
    auto a = image("a"), b = image("b");
    store.put_manifest("app", a.manifest, kOciManifest, "v1");
    store.put_manifest("app", b.manifest, kOciManifest, "v1");
    store.delete_manifest("app", a.manifest_digest);
    auto h = store.tag_history("app", "v1");
    ASSERT_EQ(h.size(), 2u);
    EXPECT_EQ(h[1].digest, a.manifest_digest);
    EXPECT_EQ(h[1].media_type, kOciManifest);
    EXPECT_EQ(h[1].size, static_cast<int64_t>(a.manifest.size()));
}

}  // namespace
}  // namespace cascade::registry
