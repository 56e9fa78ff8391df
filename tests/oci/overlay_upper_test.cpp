// A real overlayfs mount writes the whiteouts; write_layer(overlay_upper)
// must turn them into OCI whiteout entries.
#include <gtest/gtest.h>
#include <sys/mount.h>

#include <cstring>

#include "oci/error.hpp"
#include "oci/fs.hpp"
#include "oci/layer.hpp"
#include "tests/oci/oci_test_util.hpp"

namespace cascade::oci {
namespace {

using namespace testutil;

LayerWriteOptions uncompressed() {
    LayerWriteOptions o;
    o.compression = Compression::None;
    return o;
}

class OverlayMount {
  public:
    OverlayMount(const stdfs::path& lower, const stdfs::path& upper, const stdfs::path& work,
                 const stdfs::path& merged)
        : merged_(merged) {
        std::string opts = "lowerdir=" + lower.string() + ",upperdir=" + upper.string() +
                           ",workdir=" + work.string();
        if (::mount("overlay", merged.c_str(), "overlay", 0, opts.c_str()) != 0)
            throw Error("mount overlay on " + merged.string() + ": " + std::strerror(errno));
        mounted_ = true;
    }
    ~OverlayMount() { unmount(); }
    OverlayMount(const OverlayMount&) = delete;
    OverlayMount& operator=(const OverlayMount&) = delete;
    void unmount() {
        if (mounted_ && ::umount2(merged_.c_str(), MNT_DETACH) == 0) mounted_ = false;
    }

  private:
    stdfs::path merged_;
    bool mounted_ = false;
};

std::string strip_slash(std::string s) {
    while (!s.empty() && s.back() == '/')
        s.pop_back();
    return s;
}

class OverlayUpper : public ::testing::Test {
  protected:
    void SetUp() override {
        if (::geteuid() != 0) GTEST_SKIP() << "overlayfs mounts need root";
        for (auto d : {"lower", "upper", "work", "merged"})
            stdfs::create_directories(tmp_.path() / d);
        lower_ = tmp_.path() / "lower";
        upper_ = tmp_.path() / "upper";
        merged_ = tmp_.path() / "merged";
    }
    fs::TempDir tmp_;
    stdfs::path lower_, upper_, merged_;
};

TEST_F(OverlayUpper, KernelWhiteoutsBecomeOciWhiteouts) {
    put(lower_ / "a", "lower a");
    put(lower_ / "d/x", "x");
    put(lower_ / "d/sub/y", "y");
    put(lower_ / "keep/gone", "g");
    put(lower_ / "keep/stay", "s");
    stdfs::create_symlink("a", lower_ / "link");

    std::vector<std::string> expected;
    {
        OverlayMount m(lower_, upper_, tmp_.path() / "work", merged_);
        stdfs::remove(merged_ / "a");              // a whiteout char device
        stdfs::remove_all(merged_ / "d");          // the dir is replaced ...
        stdfs::create_directories(merged_ / "d");  // ... by an opaque one
        put(merged_ / "d/new", "new");
        stdfs::remove(merged_ / "keep/gone");  // whiteout inside a kept dir
        put(merged_ / "keep/added", "added");
        put(merged_ / "keep/stay", "changed");  // copy-up
        expected = describe_tree(merged_);
        m.unmount();
    }
    // The kernel did write whiteouts and an opaque dir into the upper dir.
    struct stat wh = lstat_of(upper_ / "a");
    ASSERT_TRUE(S_ISCHR(wh.st_mode));
    ASSERT_EQ(wh.st_rdev, makedev(0, 0));
    char v[4];
    ASSERT_EQ(::getxattr((upper_ / "d").c_str(), "trusted.overlay.opaque", v, sizeof v), 1);

    LayerWriteOptions o;
    o.compression = Compression::None;
    o.overlay_upper = true;
    auto layer = tmp_.path() / "upper.tar";
    auto r = write_layer(upper_, layer, o);
    auto entries = read_tar(layer);
    std::vector<std::string> names;
    for (const auto& e : entries) {
        names.push_back(strip_slash(e.name));
        for (const auto& [k, _] : e.xattrs)
            EXPECT_NE(k.rfind("trusted.overlay.", 0), 0u) << e.name << " carries " << k;
        if (names.back().find(".wh.") != std::string::npos) {
            EXPECT_EQ(e.type, static_cast<mode_t>(AE_IFREG)) << e.name;
            EXPECT_EQ(e.size, 0) << e.name;
        }
    }
    EXPECT_EQ(names, (std::vector<std::string>{".wh.a", "d", "d/.wh..wh..opq", "d/new", "keep",
                                               "keep/.wh.gone", "keep/added", "keep/stay"}));
    EXPECT_EQ(r.entries, 8);

    // lower layer + this layer, applied, give what the overlay showed.
    auto root = tmp_.path() / "root";
    write_layer(lower_, tmp_.path() / "lower.tar", {});
    apply_layer(tmp_.path() / "lower.tar", root);
    auto applied = apply_layer(layer, root);
    EXPECT_EQ(applied.whiteouts, 3);
    EXPECT_EQ(describe_tree(root), expected);
}

TEST_F(OverlayUpper, WithoutTheOptionAWhiteoutIsJustADevice) {
    ASSERT_EQ(::mknod((upper_ / "w").c_str(), S_IFCHR | 0, makedev(0, 0)), 0);
    auto layer = tmp_.path() / "l.tar";
    write_layer(upper_, layer, uncompressed());
    auto e = read_tar(layer);
    ASSERT_EQ(e.size(), 1u);
    EXPECT_EQ(e[0].name, "w");
    EXPECT_EQ(e[0].type, static_cast<mode_t>(AE_IFCHR));
}

TEST_F(OverlayUpper, RefusesRedirectsItCannotExpress) {
    stdfs::create_directories(upper_ / "renamed");
    ASSERT_EQ(::setxattr((upper_ / "renamed").c_str(), "trusted.overlay.redirect", "/old", 4, 0),
              0);
    LayerWriteOptions o;
    o.overlay_upper = true;
    try {
        write_layer(upper_, tmp_.path() / "l.tar", o);
        FAIL() << "no throw";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("redirect_dir=off"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(lexists(tmp_.path() / "l.tar"));
}

}  // namespace
}  // namespace cascade::oci
