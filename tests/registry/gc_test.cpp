// Garbage collection on a real store (SQLite, blob files): what is reachable
// from tags, kept generations, root sources, index children and referrers
// stays; the rest goes, rows before files; nothing young is touched; a
// collection running while clients push and mount never removes their blobs.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/time.h>

#include <atomic>
#include <thread>

#include "registry/gc.hpp"
#include "registry_helpers.hpp"

using namespace cascade;
using namespace cascade::registry;
using namespace cascade::registry::testing;
using namespace std::chrono_literals;

namespace {

const std::string kOciManifest(oci::media::kImageManifest);
const std::string kOciIndex(oci::media::kImageIndex);

class GcTest : public ::testing::Test {
  protected:
    fs::TempDir tmp{{}, "cascade-gc-"};
    std::unique_ptr<StoreOnDisk> s = std::make_unique<StoreOnDisk>(tmp.path());
    Store& store = s->store;

    GcReport collect(int keep, int64_t grace = 0, bool dry = false) {
        GarbageCollector gc(store, {keep, grace});
        return gc.run(dry);
    }
    bool has_blob(const oci::Digest& d) { return s->blobs.has(d); }
    bool complete(const SampleImage& img) {
        return has_blob(img.manifest_digest) && has_blob(img.config_digest) &&
               has_blob(img.layer_digest);
    }
    // Makes everything stored so far look older than any grace period.
    void age_everything() {
        s->db.exec(
            "UPDATE registry_manifests SET created = 1000; "
            "UPDATE registry_blob_links SET linked = 1000;");
        for (const auto& d : s->blobs.list()) {
            timeval old[2] = {{1000, 0}, {1000, 0}};
            ASSERT_EQ(::utimes(s->blobs.path(d).c_str(), old), 0);
        }
    }
    static bool contains(const std::vector<oci::Digest>& v, const oci::Digest& d) {
        return std::find(v.begin(), v.end(), d) != v.end();
    }
};

TEST_F(GcTest, RemovesUntaggedImagesKeepsTaggedOnesAndDryRunDeletesNothing) {
    auto old = make_image(&s->blobs, "old");
    auto current = make_image(&s->blobs, "current");
    auto loose = make_image(&s->blobs, "loose");
    store.put_manifest("app", old.manifest, kOciManifest, "latest");
    store.put_manifest("app", current.manifest, kOciManifest, "latest");
    store.put_manifest("app", loose.manifest, kOciManifest);  // never tagged

    auto dry = collect(1, 0, true);
    EXPECT_TRUE(dry.dry_run);
    EXPECT_EQ(dry.manifests.size(), 2u);
    EXPECT_EQ(dry.blobs.size(), 6u);
    EXPECT_GT(dry.bytes, 2000);
    EXPECT_TRUE(complete(old)) << "a dry run deletes nothing";
    EXPECT_TRUE(complete(loose));
    EXPECT_TRUE(store.has_manifest("app", old.manifest_digest));

    auto r = collect(1);
    EXPECT_FALSE(r.dry_run);
    EXPECT_EQ(r.manifests.size(), 2u);
    EXPECT_EQ(r.blobs.size(), 6u);
    EXPECT_EQ(r.bytes, dry.bytes);
    EXPECT_EQ(r.links, 4) << "config and layer links of the two images";
    EXPECT_FALSE(has_blob(old.manifest_digest));
    EXPECT_FALSE(has_blob(old.layer_digest));
    EXPECT_FALSE(has_blob(loose.config_digest));
    EXPECT_FALSE(store.has_manifest("app", loose.manifest_digest));
    EXPECT_FALSE(store.repo_has_blob("app", old.layer_digest));
    EXPECT_TRUE(complete(current));
    EXPECT_EQ(store.tag_digest("app", "latest"), current.manifest_digest);
    EXPECT_EQ(store.tag_history("app", "latest").size(), 2u) << "history stays";

    auto again = collect(1);
    EXPECT_TRUE(again.manifests.empty());
    EXPECT_TRUE(again.blobs.empty());
}

TEST_F(GcTest, KeepsTheLastGenerationsOfEveryTag) {
    std::vector<SampleImage> gens;
    for (int i = 0; i < 4; i++) {
        gens.push_back(make_image(&s->blobs, "gen" + std::to_string(i)));
        store.put_manifest("base", gens.back().manifest, kOciManifest, "latest");
    }
    auto r = collect(3);
    EXPECT_EQ(r.manifests.size(), 1u);
    EXPECT_FALSE(complete(gens[0]));
    for (int i = 1; i < 4; i++)
        EXPECT_TRUE(complete(gens[i])) << "generation " << i + 1;
    EXPECT_TRUE(store.has_manifest("base", gens[1].manifest_digest));
}

TEST_F(GcTest, RootSourcesKeepRunningImagesAndSharedBlobsStay) {
    auto running = make_image(&s->blobs, "running");
    auto tagged = make_image(&s->blobs, "tagged");
    store.put_manifest("app", running.manifest, kOciManifest, "latest");
    store.put_manifest("app", tagged.manifest, kOciManifest, "latest");
    // Another repository holds an untagged copy of the tagged image.
    store.put_manifest("copy", tagged.manifest, kOciManifest);
    // A plain blob a build cache would keep.
    auto cached = s->blobs.put("a cached layer");

    GarbageCollector gc(store, {1, 0});
    gc.add_root_source("deployments", [&] { return std::vector{running.manifest_digest}; });
    gc.add_root_source("build cache", [&] { return std::vector{cached}; });
    auto r = gc.run(false);
    EXPECT_TRUE(complete(running));
    EXPECT_TRUE(store.has_manifest("app", running.manifest_digest));
    EXPECT_TRUE(has_blob(cached));
    ASSERT_EQ(r.manifests.size(), 1u);
    EXPECT_EQ(r.manifests[0].first, "copy");
    EXPECT_TRUE(complete(tagged)) << "the bytes stay for the repository that tags them";

    GarbageCollector failing(store, {1, 0});
    failing.add_root_source("broken",
                            []() -> std::vector<oci::Digest> { throw Error("cannot list"); });
    EXPECT_THROW(failing.run(false), Error);
}

TEST_F(GcTest, IndexChildrenAndReferrersOfKeptImagesStay) {
    auto a = make_image(&s->blobs, "a");
    auto b = make_image(&s->blobs, "b");
    store.put_manifest("multi", a.manifest, kOciManifest);
    store.put_manifest("multi", b.manifest, kOciManifest);
    auto index = make_index({a, b});
    store.put_manifest("multi", index, kOciIndex, "latest");

    // A signature-like artifact whose subject is child a.
    auto sig_config = s->blobs.put("{}");
    auto sig_layer = s->blobs.put("signature");
    nlohmann::json sig = {
        {"schemaVersion", 2},
        {"mediaType", kOciManifest},
        {"artifactType", "application/vnd.example.sig"},
        {"config",
         {{"mediaType", "application/vnd.oci.empty.v1+json"},
          {"digest", sig_config.str()},
          {"size", 2}}},
        {"layers",
         {{{"mediaType", "application/octet-stream"}, {"digest", sig_layer.str()}, {"size", 9}}}},
        {"subject",
         {{"mediaType", kOciManifest},
          {"digest", a.manifest_digest.str()},
          {"size", a.manifest.size()}}}};
    auto sig_digest = store.put_manifest("multi", sig.dump(), kOciManifest);

    auto r = collect(1);
    EXPECT_TRUE(r.manifests.empty());
    EXPECT_TRUE(complete(a));
    EXPECT_TRUE(complete(b));
    EXPECT_TRUE(store.has_manifest("multi", sig_digest));
    EXPECT_TRUE(has_blob(sig_layer));

    // Untagged, the index, its children and the referrer all go.
    ASSERT_TRUE(store.delete_tag("multi", "latest"));
    s->db.exec("DELETE FROM registry_tag_history");
    r = collect(1);
    EXPECT_EQ(r.manifests.size(), 4u);
    EXPECT_FALSE(has_blob(sig_layer));
    EXPECT_FALSE(has_blob(a.layer_digest));
}

TEST_F(GcTest, NothingYoungerThanTheGracePeriodIsTouched) {
    auto img = make_image(&s->blobs, "img");
    store.put_manifest("app", img.manifest, kOciManifest);
    auto linked = s->blobs.put("linked only");
    store.link_blob("app", linked);
    auto orphan = s->blobs.put("orphan file");

    auto r = collect(1, 3600);
    EXPECT_TRUE(r.manifests.empty());
    EXPECT_TRUE(r.blobs.empty());
    EXPECT_GT(r.young, 0);
    EXPECT_TRUE(complete(img));
    EXPECT_TRUE(has_blob(linked));
    EXPECT_TRUE(has_blob(orphan));

    age_everything();
    r = collect(1, 3600);
    EXPECT_EQ(r.manifests.size(), 1u);
    EXPECT_FALSE(has_blob(img.layer_digest));
    EXPECT_FALSE(has_blob(linked));
    EXPECT_FALSE(has_blob(orphan));
}

TEST_F(GcTest, FilesLeftByAnInterruptedSweepGoNextTime) {
    // The state a SIGKILL after the row deletions leaves: files with no rows.
    auto img = make_image(&s->blobs, "img");
    s->blobs.put(img.manifest);
    auto kept = make_image(&s->blobs, "kept");
    store.put_manifest("app", kept.manifest, kOciManifest, "latest");
    auto r = collect(1);
    EXPECT_EQ(r.blobs.size(), 3u);
    EXPECT_FALSE(has_blob(img.manifest_digest));
    EXPECT_TRUE(complete(kept));
}

TEST_F(GcTest, AMissingManifestInUseStopsTheCollectionBeforeAnyRemoval) {
    auto img = make_image(&s->blobs, "img");
    store.put_manifest("app", img.manifest, kOciManifest, "latest");
    auto junk = s->blobs.put("junk");
    ASSERT_TRUE(s->blobs.remove(img.manifest_digest));
    EXPECT_THROW(collect(1), Error);
    EXPECT_TRUE(has_blob(junk));
}

TEST_F(GcTest, OnlyOneCollectionRunsAtATime) {
    GarbageCollector gc(store, {1, 0});
    std::atomic<bool> inside{false}, release{false};
    gc.add_root_source("slow", [&] {
        inside = true;
        while (!release)
            std::this_thread::sleep_for(5ms);
        return std::vector<oci::Digest>{};
    });
    std::thread first([&] { gc.run(true); });
    while (!inside)
        std::this_thread::sleep_for(5ms);
    EXPECT_THROW(gc.run(true), Error);
    release = true;
    first.join();
}

// Collections in a loop while one client pushes new images (blobs, links,
// manifest, tag) and another mounts kept blobs into new repositories: every
// push succeeds and stays complete; the old garbage goes.
TEST_F(GcTest, ConcurrentPushesAndMountsNeverLoseTheirBlobs) {
    std::vector<SampleImage> garbage;
    for (int i = 0; i < 20; i++) {
        garbage.push_back(make_image(&s->blobs, "garbage" + std::to_string(i)));
        store.put_manifest("old", garbage.back().manifest, kOciManifest);
    }
    auto base = make_image(&s->blobs, "base");
    store.put_manifest("base", base.manifest, kOciManifest, "latest");
    age_everything();

    std::atomic<bool> done{false};
    std::atomic<int> runs{0};
    std::string gc_error;
    std::thread collector([&] {
        GarbageCollector gc(store, {1, 60});
        try {
            while (!done) {
                gc.run(false);
                runs++;
            }
        } catch (const std::exception& e) {
            gc_error = e.what();
        }
    });

    std::vector<SampleImage> pushed;
    std::string push_error;
    std::thread pusher([&] {
        try {
            for (int i = 0; i < 60; i++) {
                auto img = make_image(nullptr, "new" + std::to_string(i));
                auto w = s->blobs.begin();
                w.write(img.layer);
                w.commit(img.layer_digest);
                store.link_blob("new", img.layer_digest);
                store.link_blob("new", s->blobs.put(img.config));
                store.put_manifest("new", img.manifest, kOciManifest, "t" + std::to_string(i));
                pushed.push_back(img);
            }
        } catch (const std::exception& e) {
            push_error = e.what();
        }
    });
    std::string mount_error;
    std::thread mounter([&] {
        try {
            for (int i = 0; i < 60; i++) {
                std::string repo = "mounted" + std::to_string(i);
                store.link_blob(repo, base.layer_digest);
                store.link_blob(repo, base.config_digest);
                store.put_manifest(repo, base.manifest, kOciManifest, "latest");
            }
        } catch (const std::exception& e) {
            mount_error = e.what();
        }
    });
    pusher.join();
    mounter.join();
    while (runs < 2)
        std::this_thread::sleep_for(5ms);
    done = true;
    collector.join();

    EXPECT_EQ(gc_error, "");
    EXPECT_EQ(push_error, "");
    EXPECT_EQ(mount_error, "");
    EXPECT_EQ(pushed.size(), 60u);
    for (const auto& img : pushed)
        EXPECT_TRUE(complete(img));
    EXPECT_TRUE(complete(base));
    for (int i = 0; i < 60; i++)
        EXPECT_EQ(store.tag_digest("mounted" + std::to_string(i), "latest"), base.manifest_digest);
    for (const auto& img : garbage)
        EXPECT_FALSE(has_blob(img.layer_digest));
}

}  // namespace
