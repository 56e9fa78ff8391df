// apply_layer(overlay_whiteouts): a layer unpacked alone as one lower dir of
// an overlayfs stack keeps its deletions as overlayfs whiteouts, so a real
// overlay mount of the layers hides what the layer deleted.
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/xattr.h>

#include <cstring>

#include "oci/error.hpp"
#include "oci/fs.hpp"
#include "oci/layer.hpp"
#include "tests/oci/oci_test_util.hpp"

namespace cascade::oci {
namespace {

using namespace testutil;

TarEntry whiteout(std::string name) {
    TarEntry e = file(std::move(name), "");
    e.perm = 0;
    return e;
}

class OverlayLower : public ::testing::Test {
  protected:
    void SetUp() override {
        if (::geteuid() != 0) GTEST_SKIP() << "whiteout devices and overlay mounts need root";
        lower1_ = tmp_.path() / "l1";
        lower2_ = tmp_.path() / "l2";
        merged_ = tmp_.path() / "merged";
        for (const auto& d : {lower1_, lower2_, merged_})
            stdfs::create_directories(d);
        // The base layer: files the second layer deletes.
        make_tar(tmp_.path() / "base.tar",
                 {dir("etc"), file("etc/gone", "old\n"), file("etc/kept", "kept\n"), dir("data"),
                  file("data/old1", "1"), dir("data/sub"), file("data/sub/old2", "2"), dir("swap"),
                  file("swap/inner", "lower")});
        // The second layer: `rm /etc/gone`, `rm -rf /data && mkdir /data &&
        // echo > /data/new`, and a whiteout followed by a new directory of the
        // same name (as some tools write `rm -rf /swap && mkdir /swap`).
        make_tar(tmp_.path() / "top.tar",
                 {dir("etc"), whiteout("etc/.wh.gone"), dir("data"), whiteout("data/.wh..wh..opq"),
                  file("data/new", "new\n"), whiteout(".wh.swap"), dir("swap"),
                  file("swap/fresh", "top")});
        LayerApplyOptions o;
        o.overlay_whiteouts = true;
        apply_layer(tmp_.path() / "base.tar", lower1_, o);
        apply_layer(tmp_.path() / "top.tar", lower2_, o);
    }
    void TearDown() override {
        if (mounted_) ::umount2(merged_.c_str(), MNT_DETACH);
    }

    void mount_stack() {
        std::string opts = "lowerdir=" + lower2_.string() + ":" + lower1_.string();
        ASSERT_EQ(::mount("overlay", merged_.c_str(), "overlay", MS_RDONLY, opts.c_str()), 0)
            << std::strerror(errno);
        mounted_ = true;
    }

    fs::TempDir tmp_;
    stdfs::path lower1_, lower2_, merged_;
    bool mounted_ = false;
};

TEST_F(OverlayLower, DeletionsBecomeWhiteoutDevicesAndOpaqueDirectories) {
    auto st = lstat_of(lower2_ / "etc/gone");
    EXPECT_TRUE(S_ISCHR(st.st_mode));
    EXPECT_EQ(st.st_rdev, makedev(0, 0));
    EXPECT_FALSE(lexists(lower2_ / "etc/.wh.gone"));
    char v[8] = {};
    ASSERT_EQ(::lgetxattr((lower2_ / "data").c_str(), "trusted.overlay.opaque", v, sizeof v), 1);
    EXPECT_EQ(v[0], 'y');
    ASSERT_EQ(::lgetxattr((lower2_ / "swap").c_str(), "trusted.overlay.opaque", v, sizeof v), 1);
    EXPECT_EQ(slurp(lower2_ / "data/new"), "new\n");
}

TEST_F(OverlayLower, AnOverlayOfTheLayersHidesWhatTheTopLayerDeleted) {
    mount_stack();
    EXPECT_FALSE(lexists(merged_ / "etc/gone"));
    EXPECT_EQ(slurp(merged_ / "etc/kept"), "kept\n");
    EXPECT_FALSE(lexists(merged_ / "data/old1"));
    EXPECT_FALSE(lexists(merged_ / "data/sub"));
    EXPECT_EQ(slurp(merged_ / "data/new"), "new\n");
    EXPECT_FALSE(lexists(merged_ / "swap/inner"));
    EXPECT_EQ(slurp(merged_ / "swap/fresh"), "top");
}

TEST_F(OverlayLower, WithoutTheOptionWhiteoutsOnlyDeleteInPlace) {
    auto plain = tmp_.path() / "plain";
    stdfs::create_directories(plain);
    apply_layer(tmp_.path() / "top.tar", plain);
    EXPECT_FALSE(lexists(plain / "etc/gone"));
    EXPECT_EQ(::lgetxattr((plain / "data").c_str(), "trusted.overlay.opaque", nullptr, 0), -1);
}

}  // namespace
}  // namespace cascade::oci
