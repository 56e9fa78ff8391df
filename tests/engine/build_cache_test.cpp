// The build cache: keys from inputs only (source content and metadata, the
// build args a RUN sees), reuse without running, --no-cache, persistence in
// the database, LRU eviction, vanished blobs, and the GC root it provides.
#include "engine/build_cache.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "engine/copy.hpp"
#include "engine/image_source.hpp"
#include "registry/gc.hpp"
#include "tests/engine/builder_fixture.hpp"

using namespace cascade;

namespace {

namespace stdfs = std::filesystem;

using builder_testing::write_text;

// --- Keys -------------------------------------------------------------------

class CacheKeyTest : public ::testing::Test {
  protected:
    fs::TempDir tmp{{}, "cascade-cache-key-"};
    stdfs::path context = tmp.path() / "context";
    engine::ImageState parent = engine::scratch_image();

    void SetUp() override {
        write_text(context / "src/a.txt", "alpha\n");
        write_text(context / "src/sub/b.sh", "#!/bin/sh\necho b\n", 0755);
        stdfs::create_symlink("a.txt", context / "src/link");
        write_text(context / "other.txt", "not copied\n");
    }

    oci::Digest copy_key(const std::string& pattern = "src") {
        engine::RootDir root(context, "the build context");
        return engine::copy_step_key({}, {{&root, pattern}}, {})
            .digest(parent, "COPY " + pattern + " /dst");
    }
};

TEST_F(CacheKeyTest, CopyKeyIsStableAndFollowsSourceContent) {
    const auto first = copy_key();
    EXPECT_EQ(copy_key(), first);

    write_text(context / "src/a.txt", "ALPHA\n");
    const auto changed = copy_key();
    EXPECT_NE(changed, first);
    write_text(context / "src/a.txt", "alpha\n");
    EXPECT_EQ(copy_key(), first) << "same content again, same key";
}

TEST_F(CacheKeyTest, CopyKeyFollowsModesLinksAndNames) {
    const auto first = copy_key();

    ASSERT_EQ(::chmod((context / "src/sub/b.sh").c_str(), 0700), 0);
    EXPECT_NE(copy_key(), first) << "mode";
    ASSERT_EQ(::chmod((context / "src/sub/b.sh").c_str(), 0755), 0);
    EXPECT_EQ(copy_key(), first);

    stdfs::remove(context / "src/link");
    stdfs::create_symlink("sub/b.sh", context / "src/link");
    EXPECT_NE(copy_key(), first) << "symlink target";
    stdfs::remove(context / "src/link");
    stdfs::create_symlink("a.txt", context / "src/link");
    EXPECT_EQ(copy_key(), first);

    write_text(context / "src/new.txt", "");
    EXPECT_NE(copy_key(), first) << "a new (empty) file";
    stdfs::remove(context / "src/new.txt");

    stdfs::rename(context / "src/a.txt", context / "src/c.txt");
    EXPECT_NE(copy_key(), first) << "a renamed file";
}

TEST_F(CacheKeyTest, CopyKeyIgnoresWhatItDoesNotCopy) {
    const auto first = copy_key();
    write_text(context / "other.txt", "changed, but outside the sources\n");
    write_text(context / "more/file", "new, outside the sources\n");
    EXPECT_EQ(copy_key(), first);

    // Host timestamps do not count (layer times are clamped to the epoch).
    struct timespec times[2] = {{1000, 0}, {1000, 0}};
    ASSERT_EQ(::utimensat(AT_FDCWD, (context / "src/a.txt").c_str(), times, 0), 0);
    EXPECT_EQ(copy_key(), first);

    // A glob counts what it matches.
    const auto glob = copy_key("src/*.txt");
    write_text(context / "src/sub/b.sh", "#!/bin/sh\necho changed\n", 0755);
    EXPECT_EQ(copy_key("src/*.txt"), glob);
    EXPECT_NE(copy_key(), first);
}

TEST_F(CacheKeyTest, FilteredEntriesDoNotCount) {
    engine::RootDir root(context, "the build context");
    root.set_filter([](const std::string& rel) { return rel == "src/sub/b.sh"; });
    const auto first = engine::digest_sources(root, {"src"});
    write_text(context / "src/sub/b.sh", "ignored by .dockerignore\n");
    EXPECT_EQ(engine::digest_sources(root, {"src"}), first);
    write_text(context / "src/a.txt", "not ignored\n");
    EXPECT_NE(engine::digest_sources(root, {"src"}), first);
}

TEST_F(CacheKeyTest, TimesCountOnlyBelowSourceDateEpoch) {
    engine::RootDir root(context, "the build context");
    const engine::SourceDigestOptions epoch{false, 2000};
    auto set_mtime = [&](time_t t) {
        struct timespec times[2] = {{t, 0}, {t, 0}};
        ASSERT_EQ(::utimensat(AT_FDCWD, (context / "src/a.txt").c_str(), times, 0), 0);
    };
    set_mtime(5000);
    const auto after = engine::digest_sources(root, {"src"}, epoch);
    set_mtime(6000);  // both clamped to 2000 in the layer
    EXPECT_EQ(engine::digest_sources(root, {"src"}, epoch), after);
    set_mtime(1000);  // kept as is in the layer
    EXPECT_NE(engine::digest_sources(root, {"src"}, epoch), after);
}

TEST_F(CacheKeyTest, OwnersCountOnlyWhenKept) {
    engine::RootDir root(context, "the build context");
    const std::vector<std::string> sources{"src"};
    const auto without = engine::digest_sources(root, sources, {false, 0});
    const auto with = engine::digest_sources(root, sources, {true, 0});
    ASSERT_EQ(::lchown((context / "src/a.txt").c_str(), 1234, 1234), 0);
    EXPECT_EQ(engine::digest_sources(root, sources, {false, 0}), without);
    EXPECT_NE(engine::digest_sources(root, sources, {true, 0}), with);
}

TEST_F(CacheKeyTest, SourcesCannotEscapeTheRoot) {
    stdfs::create_symlink("/etc", context / "src/escape");
    engine::RootDir root(context, "the build context");
    // "src/escape" resolves to <context>/etc inside the root, which is missing.
    EXPECT_THROW(engine::digest_sources(root, {"src/escape/passwd"}), Error);
    // Below a source the symlink is hashed as a link, never followed.
    const auto a = engine::digest_sources(root, {"src"});
    write_text(context / "etc/passwd", "x\n");
    EXPECT_EQ(engine::digest_sources(root, {"src"}), a);
}

TEST_F(CacheKeyTest, KeyFollowsParentStateAndRunInputs) {
    runtime::BundleOptions run;
    run.args = {"/bin/sh", "-c", "make"};
    run.env = {"PATH=/bin", "V=1"};
    const auto first = engine::run_step_key({}, run).digest(parent, "RUN make");
    EXPECT_EQ(engine::run_step_key({}, run).digest(parent, "RUN make"), first);

    auto other_env = run;
    other_env.env.back() = "V=2";
    EXPECT_NE(engine::run_step_key({}, other_env).digest(parent, "RUN make"), first);

    EXPECT_NE(engine::run_step_key({{"network", "none"}}, run).digest(parent, "RUN make"), first);

    auto next = parent;
    next.config.config.working_dir = "/app";
    EXPECT_NE(engine::run_step_key({}, run).digest(next, "RUN make"), first);
    next = parent;
    next.config.config.env.push_back("X=1");
    EXPECT_NE(engine::run_step_key({}, run).digest(next, "RUN make"), first);
}

// --- The cache table ----------------------------------------------------------

class CacheTableTest : public ::testing::Test {
  protected:
    fs::TempDir tmp{{}, "cascade-cache-table-"};
    registry::Database db{tmp.path() / "state.db"};
    registry::BlobStore blobs{tmp.path() / "blobs"};

    static oci::Digest key(const std::string& name) { return oci::Digest::sha256_of(name); }

    engine::LayerOutput layer(const std::string& name, size_t size) {
        engine::LayerOutput out;
        std::string bytes(size, 'x');
        std::copy(name.begin(), name.end(), bytes.begin());
        out.descriptor.digest = blobs.put(bytes);
        out.descriptor.media_type = "application/vnd.oci.image.layer.v1.tar+gzip";
        out.descriptor.size = static_cast<int64_t>(size);
        out.diff_id = oci::Digest::sha256_of("diff " + name);
        return out;
    }
};

TEST_F(CacheTableTest, LookupReturnsWhatWasStored) {
    engine::BuildCache cache(db, blobs);
    EXPECT_FALSE(cache.lookup(key("a")));
    auto a = layer("a", 100);
    cache.store(key("a"), {a});
    cache.store(key("empty"), {std::nullopt});

    auto hit = cache.lookup(key("a"));
    ASSERT_TRUE(hit);
    ASSERT_TRUE(hit->layer);
    EXPECT_EQ(hit->layer->descriptor, a.descriptor);
    EXPECT_EQ(hit->layer->diff_id, a.diff_id);
    auto empty = cache.lookup(key("empty"));
    ASSERT_TRUE(empty);
    EXPECT_FALSE(empty->layer);
    EXPECT_EQ(cache.bytes(), 100);
    EXPECT_EQ(cache.gc_roots(), std::vector<oci::Digest>{a.descriptor.digest});
}

TEST_F(CacheTableTest, EvictsLeastRecentlyUsedBeyondTheBound) {
    engine::BuildCache cache(db, blobs, 250);
    auto a = layer("a", 100), b = layer("b", 100), c = layer("c", 100);
    cache.store(key("a"), {a});
    cache.store(key("b"), {b});
    ASSERT_TRUE(cache.lookup(key("a")));  // a is now more recent than b
    cache.store(key("c"), {c});           // 300 > 250: b goes

    EXPECT_FALSE(cache.lookup(key("b")));
    EXPECT_TRUE(cache.lookup(key("a")));
    EXPECT_TRUE(cache.lookup(key("c")));
    EXPECT_EQ(cache.bytes(), 200);

    // Two entries sharing one layer count it once.
    cache.store(key("a2"), {a});
    EXPECT_EQ(cache.bytes(), 200);
    EXPECT_EQ(cache.entries(), 3);

    ASSERT_TRUE(cache.lookup(key("a")));
    cache.set_max_bytes(150);  // c is the least recently used now
    EXPECT_FALSE(cache.lookup(key("c")));
    EXPECT_TRUE(cache.lookup(key("a")));
    EXPECT_TRUE(cache.lookup(key("a2")));
    EXPECT_EQ(cache.bytes(), 100);
}

TEST_F(CacheTableTest, AVanishedBlobIsAMissAndDropsTheEntry) {
    engine::BuildCache cache(db, blobs);
    auto a = layer("a", 10);
    cache.store(key("a"), {a});
    ASSERT_TRUE(blobs.remove(a.descriptor.digest));
    EXPECT_FALSE(cache.lookup(key("a")));
    EXPECT_EQ(cache.entries(), 0);
}

TEST_F(CacheTableTest, EntriesSurviveANewDatabaseConnection) {
    auto a = layer("a", 10);
    {
        engine::BuildCache cache(db, blobs);
        cache.store(key("a"), {a});
    }
    registry::Database reopened(tmp.path() / "state.db");
    engine::BuildCache cache(reopened, blobs);
    auto hit = cache.lookup(key("a"));
    ASSERT_TRUE(hit && hit->layer);
    EXPECT_EQ(hit->layer->descriptor.digest, a.descriptor.digest);
}

// --- Builds with the cache -------------------------------------------------------

class CachedBuildTest : public builder_testing::BuilderTest {
  protected:
    engine::BuildCache cache{db, blobs};

    void SetUp() override {
        BuilderTest::SetUp();
        builder.set_cache(&cache);
        write_text(context / "app/index.html", "<h1>hello</h1>\n");
    }

    // A RUN whose output differs every time it runs.
    static constexpr const char* kStampDockerfile =
        "FROM scratch\n"
        "COPY busybox /bin/busybox\n"
        "COPY app /app\n"
        "ARG V\n"
        "RUN [\"/bin/busybox\", \"cp\", \"/proc/sys/kernel/random/uuid\", \"/stamp\"]\n"
        "ENV DONE=1\n";

    size_t cache_hits() const {
        return static_cast<size_t>(std::count_if(log.begin(), log.end(), [](const auto& l) {
            return l.find("--> Using cache") != std::string::npos;
        }));
    }

    std::string stamp_of(const oci::Digest& manifest) {
        auto m = manifest_of("app", manifest);
        return file_in(m.layers.back(), "stamp");
    }
};

TEST_F(CachedBuildTest, ASecondBuildRunsNothing) {
    std::vector<engine::StepReport> steps;
    auto r = request(kStampDockerfile);
    r.on_step = [&](const engine::StepReport& s) { steps.push_back(s); };
    auto first = builder.build(r);
    EXPECT_EQ(cache_hits(), 0u);
    auto first_stamp = stamp_of(first.manifest_digest);
    EXPECT_FALSE(first_stamp.empty());

    log.clear();
    steps.clear();
    auto second = builder.build(r);
    EXPECT_EQ(second.manifest_digest, first.manifest_digest) << "the RUN did not run again";
    EXPECT_FALSE(second.tag_moved);
    EXPECT_EQ(cache_hits(), 3u);  // COPY, COPY, RUN
    auto m = manifest_of("app", first.manifest_digest);
    EXPECT_TRUE(std::any_of(log.begin(), log.end(), [&](const auto& l) {
        return l == "--> Using cache " + m.layers.back().digest.short_hex();
    }));
    size_t cached = 0;
    for (const auto& s : steps)
        if (s.cached) cached++;
    EXPECT_EQ(cached, 3u) << "StepReport.cached for each reused step";
}

TEST_F(CachedBuildTest, UsedBuildArgsAndSourcesChangeTheKeyUnrelatedOnesDoNot) {
    auto first = build(kStampDockerfile, "app", {{"V", "1"}});
    const auto stamp = stamp_of(first.manifest_digest);

    log.clear();
    auto unrelated = build(kStampDockerfile, "app", {{"V", "1"}, {"UNUSED", "x"}});
    EXPECT_EQ(unrelated.manifest_digest, first.manifest_digest);
    EXPECT_EQ(cache_hits(), 3u);

    log.clear();
    auto changed = build(kStampDockerfile, "app", {{"V", "2"}});
    EXPECT_EQ(cache_hits(), 2u) << "the COPYs are reused, the RUN (which sees V) is not";
    EXPECT_NE(stamp_of(changed.manifest_digest), stamp);

    log.clear();
    write_text(context / "app/index.html", "<h1>changed</h1>\n");
    auto edited = build(kStampDockerfile, "app", {{"V", "2"}});
    EXPECT_EQ(cache_hits(), 1u) << "only the busybox COPY before the changed source";
    auto m = manifest_of("app", edited.manifest_digest);
    EXPECT_EQ(file_in(m.layers[1], "app/index.html"), "<h1>changed</h1>\n");

    log.clear();
    write_text(context / "unrelated.txt", "not part of any COPY\n");
    auto again = build(kStampDockerfile, "app", {{"V", "2"}});
    EXPECT_EQ(again.manifest_digest, edited.manifest_digest);
    EXPECT_EQ(cache_hits(), 3u);
}

TEST_F(CachedBuildTest, NoCacheRunsEverythingAndRefreshesTheEntries) {
    auto first = build(kStampDockerfile);
    log.clear();
    auto r = request(kStampDockerfile);
    r.no_cache = true;
    auto fresh = builder.build(r);
    EXPECT_EQ(cache_hits(), 0u);
    EXPECT_NE(fresh.manifest_digest, first.manifest_digest) << "the RUN ran again";

    log.clear();
    auto cached = build(kStampDockerfile);
    EXPECT_EQ(cache_hits(), 3u);
    EXPECT_EQ(cached.manifest_digest, fresh.manifest_digest) << "--no-cache stored its results";
}

TEST_F(CachedBuildTest, TheCachePersistsAcrossANewBuilderAndCache) {
    auto first = build(kStampDockerfile);
    {
        registry::Database reopened(tmp.path() / "state.db");
        engine::BuildCache cache2(reopened, blobs);
        engine::Builder builder2(store, layers, runc, tmp.path() / "work");
        builder2.set_cache(&cache2);
        log.clear();
        auto again = builder2.build(request(kStampDockerfile));
        EXPECT_EQ(again.manifest_digest, first.manifest_digest);
        EXPECT_EQ(cache_hits(), 3u);
    }
}

TEST_F(CachedBuildTest, CachedLayersAreGcRootsWhileKept) {
    auto r = request(kStampDockerfile);
    r.output_tag = "";  // nothing refers to the image once the GC runs
    auto first = builder.build(r);
    const auto layers_of_first = manifest_of("app", first.manifest_digest).layers;
    ASSERT_EQ(layers_of_first.size(), 3u);

    registry::GarbageCollector gc(store, {0, 0});
    gc.add_root_source("build-cache", [this] { return cache.gc_roots(); });
    gc.run(false);
    EXPECT_FALSE(store.resolve("app", first.manifest_digest.str())) << "the image itself went";
    for (const auto& l : layers_of_first)
        EXPECT_TRUE(blobs.has(l.digest)) << l.digest.str();

    // They are reused (and linked into the repository again).
    log.clear();
    auto again = builder.build(r);
    EXPECT_EQ(cache_hits(), 3u);
    EXPECT_EQ(again.manifest_digest, first.manifest_digest);

    // Evicted, they are collectable.
    cache.set_max_bytes(0);
    EXPECT_EQ(cache.bytes(), 0);
    gc.run(false);
    for (const auto& l : layers_of_first)
        EXPECT_FALSE(blobs.has(l.digest)) << l.digest.str();
}

}  // namespace
