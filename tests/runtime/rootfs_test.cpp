#include "runtime/rootfs.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "oci/error.hpp"
#include "oci/layer.hpp"
#include "registry/blob_store.hpp"
#include "tests/runtime/runtime_support.hpp"

namespace cascade::runtime {
namespace {

using testing::is_mounted;
using testing::mounts_under;
using testing::read_text;
using testing::write_text;
namespace stdfs = std::filesystem;

class OverlayTest : public testing::RuntimeTest {};

TEST_F(OverlayTest, TopLayerWinsAndAllLayersShow) {
    auto bottom = dir() / "bottom", top = dir() / "top";
    write_text(bottom / "a.txt", "bottom");
    write_text(bottom / "only-bottom", "b");
    write_text(top / "a.txt", "top");
    write_text(top / "only-top", "t");
    {
        OverlayMount m({bottom, top}, dir() / "upper", dir() / "work", dir() / "merged");
        EXPECT_TRUE(is_mounted(dir() / "merged"));
        EXPECT_EQ(m.target(), dir() / "merged");
        EXPECT_EQ(read_text(dir() / "merged/a.txt"), "top");
        EXPECT_TRUE(stdfs::exists(dir() / "merged/only-bottom"));
        EXPECT_TRUE(stdfs::exists(dir() / "merged/only-top"));
    }
    EXPECT_FALSE(is_mounted(dir() / "merged"));
}

TEST_F(OverlayTest, WritesLandInUpperAndLowersStayUntouched) {
    auto lower = dir() / "lower";
    write_text(lower / "keep.txt", "lower");
    write_text(lower / "doomed.txt", "lower");
    OverlayMount m({lower}, dir() / "upper", dir() / "work", dir() / "merged");
    write_text(dir() / "merged/new.txt", "written");
    write_text(dir() / "merged/keep.txt", "changed");
    stdfs::remove(dir() / "merged/doomed.txt");

    EXPECT_EQ(read_text(dir() / "upper/new.txt"), "written");
    EXPECT_EQ(read_text(dir() / "upper/keep.txt"), "changed");
    struct stat st {};
    ASSERT_EQ(::lstat((dir() / "upper/doomed.txt").c_str(), &st), 0);
    EXPECT_TRUE(S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0)) << "expected a whiteout";

    EXPECT_EQ(read_text(lower / "keep.txt"), "lower");
    EXPECT_TRUE(stdfs::exists(lower / "doomed.txt"));
    EXPECT_FALSE(stdfs::exists(lower / "new.txt"));
}

TEST_F(OverlayTest, LowersBeyondOnePageOfOptionsStillMount) {
    // 70 lowers with long names: "lowerdir=…" alone is far beyond 4 KiB.
    auto base = dir() / std::string(120, 'd');
    std::vector<stdfs::path> lowers;
    for (int i = 0; i < 70; i++) {
        auto l = base / (std::string(60, 'l') + std::to_string(i));
        write_text(l / ("file" + std::to_string(i)), std::to_string(i));
        write_text(l / "which", std::to_string(i));
        lowers.push_back(l);
    }
    size_t total = 0;
    for (const auto& l : lowers)
        total += l.string().size() + 1;
    ASSERT_GT(total, 8000u);
    OverlayMount m(lowers, dir() / "upper", dir() / "work", dir() / "merged");
    EXPECT_EQ(read_text(dir() / "merged/file0"), "0");
    EXPECT_EQ(read_text(dir() / "merged/file69"), "69");
    EXPECT_EQ(read_text(dir() / "merged/which"), "69");  // the last given is the top
}

TEST_F(OverlayTest, NoLowersGiveAnEmptyRoot) {
    OverlayMount m({}, dir() / "c/upper", dir() / "c/work", dir() / "c/merged");
    EXPECT_TRUE(is_mounted(dir() / "c/merged"));
    EXPECT_TRUE(stdfs::is_empty(dir() / "c/merged"));
    write_text(dir() / "c/merged/x", "x");
    EXPECT_TRUE(stdfs::exists(dir() / "c/upper/x"));
}

TEST_F(OverlayTest, ReleaseKeepsTheMountAndUnmountIfMountedRemovesIt) {
    auto lower = dir() / "lower";
    write_text(lower / "f", "f");
    stdfs::path target;
    {
        OverlayMount m({lower}, dir() / "upper", dir() / "work", dir() / "merged");
        target = m.release();
    }
    EXPECT_TRUE(is_mounted(target));
    unmount_if_mounted(target);
    EXPECT_FALSE(is_mounted(target));
    EXPECT_NO_THROW(unmount_if_mounted(target));             // not a mount point
    EXPECT_NO_THROW(unmount_if_mounted(dir() / "missing"));  // not there at all
}

TEST_F(OverlayTest, MoveTransfersOwnership) {
    auto lower = dir() / "lower";
    write_text(lower / "f", "f");
    OverlayMount outer;
    {
        OverlayMount m({lower}, dir() / "upper", dir() / "work", dir() / "merged");
        outer = std::move(m);
    }
    EXPECT_TRUE(is_mounted(dir() / "merged"));
    outer.unmount();
    EXPECT_FALSE(is_mounted(dir() / "merged"));
    EXPECT_TRUE(mounts_under(dir()).empty());
}

TEST_F(OverlayTest, MissingLowerIsAnErrorNamingTheTarget) {
    try {
        OverlayMount m({dir() / "nope"}, dir() / "upper", dir() / "work", dir() / "merged");
        FAIL() << "expected an error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("merged"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(is_mounted(dir() / "merged"));
}

// The mount(2) path older kernels take: lowers in one option string, and
// relative to their common parent when that string would exceed a page.
class LegacyOverlayTest : public OverlayTest {
  protected:
    void SetUp() override { ::setenv("CASCADE_OVERLAY_MOUNT", "legacy", 1); }
    void TearDown() override {
        ::unsetenv("CASCADE_OVERLAY_MOUNT");
        OverlayTest::TearDown();
    }
};

TEST_F(LegacyOverlayTest, ShortOptionString) {
    auto bottom = dir() / "bottom", top = dir() / "top:with,odd";
    write_text(bottom / "a.txt", "bottom");
    write_text(bottom / "only-bottom", "b");
    write_text(top / "a.txt", "top");
    OverlayMount m({bottom, top}, dir() / "upper", dir() / "work", dir() / "merged");
    EXPECT_EQ(read_text(dir() / "merged/a.txt"), "top");
    EXPECT_TRUE(stdfs::exists(dir() / "merged/only-bottom"));
    write_text(dir() / "merged/new", "n");
    EXPECT_TRUE(stdfs::exists(dir() / "upper/new"));
}

TEST_F(LegacyOverlayTest, LowersBeyondOnePageUseRelativePaths) {
    auto base = dir() / std::string(120, 'd');
    std::vector<stdfs::path> lowers;
    for (int i = 0; i < 70; i++) {
        auto l = base / (std::string(20, 'l') + std::to_string(i));
        write_text(l / ("file" + std::to_string(i)), std::to_string(i));
        write_text(l / "which", std::to_string(i));
        lowers.push_back(l);
    }
    char cwd_before[4096];
    ASSERT_NE(::getcwd(cwd_before, sizeof cwd_before), nullptr);
    OverlayMount m(lowers, dir() / "upper", dir() / "work", dir() / "merged");
    EXPECT_EQ(read_text(dir() / "merged/file0"), "0");
    EXPECT_EQ(read_text(dir() / "merged/file69"), "69");
    EXPECT_EQ(read_text(dir() / "merged/which"), "69");
    char cwd_after[4096];
    ASSERT_NE(::getcwd(cwd_after, sizeof cwd_after), nullptr);
    EXPECT_STREQ(cwd_before, cwd_after);
}

class LayerCacheTest : public testing::RuntimeTest {
  protected:
    // A layer blob in the store made from `tree`; returns its descriptor.
    std::pair<oci::Descriptor, oci::Digest> add_layer(const stdfs::path& tree) {
        oci::Manifest manifest;
        oci::ImageConfig config;
        testing::add_layer(blobs_, tree, dir() / "layer.tar.gz", manifest, config);
        return {manifest.layers.back(), config.diff_ids.back()};
    }
    registry::BlobStore blobs_{dir() / "store"};
};

TEST_F(LayerCacheTest, UnpacksOnceIntoTheDiffIdDirectory) {
    write_text(dir() / "tree/etc/motd", "hi");
    auto [layer, diff_id] = add_layer(dir() / "tree");
    LayerCache cache(dir() / "layers", blobs_);
    auto path = cache.unpacked(layer, diff_id);
    EXPECT_EQ(path, dir() / "layers" / diff_id.encoded());
    EXPECT_EQ(read_text(path / "etc/motd"), "hi");

    // A second request reuses the directory as it is.
    write_text(path / "marker", "m");
    EXPECT_EQ(cache.unpacked(layer, diff_id), path);
    EXPECT_TRUE(stdfs::exists(path / "marker"));
}

TEST_F(LayerCacheTest, ConcurrentRequestsShareOneUnpack) {
    testing::make_busybox_tree(dir() / "tree");
    auto [layer, diff_id] = add_layer(dir() / "tree");
    LayerCache cache(dir() / "layers", blobs_);
    std::vector<stdfs::path> results(6);
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (size_t i = 0; i < results.size(); i++)
        threads.emplace_back([&, i] {
            try {
                results[i] = cache.unpacked(layer, diff_id);
            } catch (...) {
                failures++;
            }
        });
    for (auto& t : threads)
        t.join();
    EXPECT_EQ(failures.load(), 0);
    for (const auto& r : results)
        EXPECT_EQ(r, dir() / "layers" / diff_id.encoded());
    // Only the layer itself: no temporary directories left over.
    std::vector<std::string> entries;
    for (const auto& e : stdfs::directory_iterator(dir() / "layers"))
        entries.push_back(e.path().filename());
    EXPECT_EQ(entries, (std::vector<std::string>{diff_id.encoded()}));
    EXPECT_TRUE(stdfs::exists(results[0] / "bin/busybox"));
}

TEST_F(LayerCacheTest, AWrongDiffIdIsRefused) {
    write_text(dir() / "tree/a", "a");
    auto [layer, diff_id] = add_layer(dir() / "tree");
    auto wrong = oci::Digest::sha256_of("something else");
    LayerCache cache(dir() / "layers", blobs_);
    try {
        cache.unpacked(layer, wrong);
        FAIL() << "expected an error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find(wrong.str()), std::string::npos) << e.what();
    }
    EXPECT_TRUE(stdfs::is_empty(dir() / "layers"));
}

TEST_F(LayerCacheTest, AMissingBlobIsAnError) {
    oci::Descriptor layer;
    layer.digest = oci::Digest::sha256_of("not stored");
    LayerCache cache(dir() / "layers", blobs_);
    try {
        cache.unpacked(layer, oci::Digest::sha256_of("x"));
        FAIL() << "expected an error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find(layer.digest.str()), std::string::npos) << e.what();
    }
}

TEST_F(LayerCacheTest, UnpackImageKeepsLayerOrderAndChecksCounts) {
    write_text(dir() / "t0/f", "0");
    write_text(dir() / "t1/f", "1");
    auto l0 = add_layer(dir() / "t0");
    auto l1 = add_layer(dir() / "t1");
    oci::Manifest manifest;
    manifest.layers = {l0.first, l1.first};
    oci::ImageConfig config;
    config.diff_ids = {l0.second, l1.second};
    LayerCache cache(dir() / "layers", blobs_);
    auto dirs = cache.unpack_image(manifest, config);
    ASSERT_EQ(dirs.size(), 2u);
    EXPECT_EQ(read_text(dirs[0] / "f"), "0");
    EXPECT_EQ(read_text(dirs[1] / "f"), "1");

    config.diff_ids.pop_back();
    EXPECT_THROW(cache.unpack_image(manifest, config), Error);

    auto empty = cache.empty_dir();
    EXPECT_TRUE(stdfs::is_directory(empty));
    EXPECT_TRUE(stdfs::is_empty(empty));
}

}  // namespace
}  // namespace cascade::runtime
