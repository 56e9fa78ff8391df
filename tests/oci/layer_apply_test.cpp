#include <gtest/gtest.h>

#include "oci/error.hpp"
#include "oci/fs.hpp"
#include "oci/layer.hpp"
#include "tests/oci/oci_test_util.hpp"

namespace cascade::oci {
namespace {

using namespace testutil;

class LayerApply : public ::testing::Test {
  protected:
    void SetUp() override {
        root_ = tmp_.path() / "root";
        stdfs::create_directories(root_);
    }
    LayerApplyResult apply(const std::vector<TarEntry>& entries,
                           TarCompression c = TarCompression::None) {
        auto tar = tmp_.path() / ("layer" + std::to_string(n_++));
        make_tar(tar, entries, c);
        return apply_layer(tar, root_);
    }
    fs::TempDir tmp_;
    stdfs::path root_;
    int n_ = 0;
};

TEST_F(LayerApply, UnpacksEveryKindOfEntry) {
    TarEntry dev;
    dev.name = "dev/null";
    dev.type = AE_IFCHR;
    dev.perm = 0666;
    dev.rdev_major = 1;
    dev.rdev_minor = 3;
    TarEntry fifo;
    fifo.name = "run/fifo";
    fifo.type = AE_IFIFO;
    fifo.perm = 0600;
    TarEntry owned = file("home/u/file", "mine", 0640);
    owned.uid = 1234;
    owned.gid = 4321;
    owned.mtime = 1234567890;
    TarEntry suid = file("bin/su", "su", 04755);
    TarEntry attrs = file("attrs", "a");
    attrs.xattrs = {{"user.k", "v"}, {"trusted.overlay.opaque", "y"}};
    auto r =
        apply({dir("home"), dir("home/u", 0700), owned, file("./dotslash", "d"), suid,
               symlink("link", "home/u/file"), hardlink("hard", "home/u/file"), dev, fifo, attrs});
    EXPECT_EQ(r.entries, 10);
    EXPECT_EQ(r.whiteouts, 0);
    EXPECT_EQ(slurp(root_ / "home/u/file"), "mine");
    struct stat st = lstat_of(root_ / "home/u/file");
    EXPECT_EQ(st.st_uid, 1234u);
    EXPECT_EQ(st.st_gid, 4321u);
    EXPECT_EQ(st.st_mode & 07777, 0640u);
    EXPECT_EQ(st.st_mtim.tv_sec, 1234567890);
    EXPECT_EQ(lstat_of(root_ / "home/u").st_mode & 07777, 0700u);
    EXPECT_EQ(slurp(root_ / "dotslash"), "d");
    EXPECT_EQ(lstat_of(root_ / "bin/su").st_mode & 07777, 04755u);
    EXPECT_EQ(stdfs::read_symlink(root_ / "link"), "home/u/file");
    EXPECT_EQ(lstat_of(root_ / "hard").st_ino, st.st_ino);
    struct stat d = lstat_of(root_ / "dev/null");
    EXPECT_TRUE(S_ISCHR(d.st_mode));
    EXPECT_EQ(d.st_rdev, makedev(1, 3));
    EXPECT_TRUE(S_ISFIFO(lstat_of(root_ / "run/fifo").st_mode));
    char buf[16];
    ssize_t n = ::getxattr((root_ / "attrs").c_str(), "user.k", buf, sizeof buf);
    EXPECT_EQ(std::string(buf, n > 0 ? static_cast<size_t>(n) : 0), "v");
    EXPECT_LT(::getxattr((root_ / "attrs").c_str(), "trusted.overlay.opaque", buf, sizeof buf), 0);
}

TEST_F(LayerApply, ReadsGzipAndZstd) {
    apply({file("g", "gzip")}, TarCompression::Gzip);
    apply({file("z", "zstd")}, TarCompression::Zstd);
    EXPECT_EQ(slurp(root_ / "g"), "gzip");
    EXPECT_EQ(slurp(root_ / "z"), "zstd");
}

TEST_F(LayerApply, DirectoryMetadataIsSetAfterItsChildren) {
    TarEntry d = dir("locked", 0555);
    d.mtime = 1111111111;
    TarEntry f = file("locked/inside", "x");
    f.mtime = 1222222222;
    apply({d, f});
    EXPECT_EQ(slurp(root_ / "locked/inside"), "x");
    struct stat st = lstat_of(root_ / "locked");
    EXPECT_EQ(st.st_mode & 07777, 0555u);
    EXPECT_EQ(st.st_mtim.tv_sec, 1111111111);
}

TEST_F(LayerApply, CreatesMissingParents) {
    apply({file("a/b/c/d", "deep")});
    EXPECT_EQ(slurp(root_ / "a/b/c/d"), "deep");
    EXPECT_EQ(lstat_of(root_ / "a/b").st_mode & 07777, 0755u);
}

TEST_F(LayerApply, WhiteoutsDeleteLowerFiles) {
    apply({file("a", "1"), dir("d"), file("d/x", "2"), file("d/y", "3"), dir("gone"),
           file("gone/z", "4"), file("keep", "5")});
    auto r = apply({file(".wh.a", ""), file("d/.wh.x", ""), file(".wh.gone", ""),
                    file(".wh.never-existed", ""), file("nodir/.wh.x", "")});
    EXPECT_EQ(r.whiteouts, 5);
    EXPECT_EQ(describe_tree(root_), (std::vector<std::string>{"d:d", "f:d/y=3", "f:keep=5"}));
}

TEST_F(LayerApply, WhiteoutDoesNotHideItsOwnLayer) {
    apply({file("lower", "l")});
    apply({file("f", "same layer"), file(".wh.f", ""), file(".wh.lower", "")});
    EXPECT_EQ(describe_tree(root_), (std::vector<std::string>{"f:f=same layer"}));
}

TEST_F(LayerApply, OpaqueDirectoryHidesLowerContent) {
    apply({dir("d"), file("d/x", "1"), dir("d/sub"), file("d/sub/z", "2"), file("other", "o")});
    auto r = apply({dir("d"), file("d/.wh..wh..opq", ""), file("d/new", "n")});
    EXPECT_EQ(r.whiteouts, 1);
    EXPECT_EQ(describe_tree(root_), (std::vector<std::string>{"d:d", "f:d/new=n", "f:other=o"}));
}

TEST_F(LayerApply, OpaqueMarkerAfterSiblingsKeepsThisLayersFiles) {
    apply({dir("d"), file("d/x", "1"), dir("d/sub"), file("d/sub/z", "2")});
    // Marker last: what this layer wrote stays, even inside a kept subdirectory.
    apply({dir("d"), file("d/new", "n"), dir("d/sub"), file("d/sub/w", "w"),
           file("d/.wh..wh..opq", "")});
    EXPECT_EQ(describe_tree(root_),
              (std::vector<std::string>{"d:d", "d:d/sub", "f:d/new=n", "f:d/sub/w=w"}));
}

TEST_F(LayerApply, ReplacesAcrossTypes) {
    apply({dir("was-dir"), file("was-dir/child", "c"), file("was-file", "f"),
           symlink("was-link", "somewhere")});
    apply({file("was-dir", "now a file"), dir("was-file"), file("was-file/child", "x"),
           dir("was-link")});
    EXPECT_EQ(describe_tree(root_),
              (std::vector<std::string>{"d:was-file", "d:was-link", "f:was-dir=now a file",
                                        "f:was-file/child=x"}));
}

TEST_F(LayerApply, ExistingDirectoryIsKeptAndUpdated) {
    apply({dir("d", 0755), file("d/old", "o")});
    apply({dir("d", 0700), file("d/new", "n")});
    EXPECT_EQ(describe_tree(root_), (std::vector<std::string>{"d:d", "f:d/new=n", "f:d/old=o"}));
    EXPECT_EQ(lstat_of(root_ / "d").st_mode & 07777, 0700u);
}

TEST_F(LayerApply, EntriesThroughSymlinksInsideTheRootFollowThem) {
    // Merged /usr: lib -> usr/lib from a lower layer.
    apply({dir("usr"), dir("usr/lib"), symlink("lib", "usr/lib"), symlink("abs", "/usr")});
    apply({file("lib/libx.so", "x"), file("abs/lib/liby.so", "y")});
    EXPECT_EQ(slurp(root_ / "usr/lib/libx.so"), "x");
    EXPECT_EQ(slurp(root_ / "usr/lib/liby.so"), "y");
    EXPECT_TRUE(S_ISLNK(lstat_of(root_ / "lib").st_mode));
}

TEST_F(LayerApply, HardLinkReplacesExistingName) {
    apply({file("target", "t"), file("name", "old")});
    apply({hardlink("name", "target")});
    EXPECT_EQ(lstat_of(root_ / "name").st_ino, lstat_of(root_ / "target").st_ino);
    EXPECT_EQ(slurp(root_ / "name"), "t");
}

TEST_F(LayerApply, HardLinkToMissingTargetFails) {
    try {
        apply({hardlink("h", "missing")});
        FAIL() << "no throw";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("\"h\""), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("does not exist"), std::string::npos) << e.what();
    }
}

TEST_F(LayerApply, RestoreOwnersOff) {
    TarEntry f = file("f", "x");
    f.uid = 777;
    auto tar = tmp_.path() / "owned.tar";
    make_tar(tar, {f});
    LayerApplyOptions o;
    o.restore_owners = false;
    apply_layer(tar, root_, o);
    EXPECT_EQ(lstat_of(root_ / "f").st_uid, ::geteuid());
}

TEST_F(LayerApply, CorruptLayerFailsWithItsName) {
    auto tar = tmp_.path() / "corrupt.tar.gz";
    make_tar(tar, {file("a", std::string(100000, 'a'))}, TarCompression::Gzip);
    std::string bytes = slurp(tar);
    put(tar, bytes.substr(0, bytes.size() / 2));
    try {
        apply_layer(tar, root_);
        FAIL() << "no throw";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("corrupt.tar.gz"), std::string::npos) << e.what();
    }
    EXPECT_THROW(apply_layer(tmp_.path() / "missing.tar", root_), Error);
}

}  // namespace
}  // namespace cascade::oci
