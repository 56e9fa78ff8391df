#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstdlib>
#include <cstring>

#include "oci/error.hpp"
#include "oci/fs.hpp"
#include "oci/layer.hpp"
#include "oci/media_types.hpp"
#include "tests/oci/oci_test_util.hpp"

namespace cascade::oci {
namespace {

using namespace testutil;

LayerWriteOptions uncompressed() {
    LayerWriteOptions o;
    o.compression = Compression::None;
    return o;
}

std::string strip_slash(std::string s) {
    while (!s.empty() && s.back() == '/')
        s.pop_back();
    return s;
}

std::vector<std::string> names_of(const std::vector<ReadEntry>& entries) {
    std::vector<std::string> out;
    for (const auto& e : entries)
        out.push_back(strip_slash(e.name));
    return out;
}

const ReadEntry& entry(const std::vector<ReadEntry>& entries, const std::string& name) {
    for (const auto& e : entries)
        if (strip_slash(e.name) == name) return e;
    throw std::runtime_error("no entry " + name);
}

class LayerWrite : public ::testing::Test {
  protected:
    void SetUp() override {
        if (const char* v = std::getenv("SOURCE_DATE_EPOCH")) saved_epoch_ = v;
        unsetenv("SOURCE_DATE_EPOCH");
        tree_ = tmp_.path() / "tree";
        stdfs::create_directories(tree_);
    }
    void TearDown() override {
        if (saved_epoch_)
            setenv("SOURCE_DATE_EPOCH", saved_epoch_->c_str(), 1);
        else
            unsetenv("SOURCE_DATE_EPOCH");
    }

    void make_sample_tree(const stdfs::path& root) {
        put(root / "etc/hostname", "box\n");
        put(root / "bin/tool", "#!/bin/sh\necho hi\n", 0755);
        put(root / "usr/share/doc/readme", std::string(100000, 'r'));
        stdfs::create_directories(root / "var/empty");
        stdfs::create_symlink("../etc/hostname", root / "bin/hostname-link");
        stdfs::create_hard_link(root / "bin/tool", root / "usr/tool-hardlink");
        set_tree_mtime(root, 1600000000);
    }

    stdfs::path out(const std::string& name) const { return tmp_.path() / name; }

    fs::TempDir tmp_;
    stdfs::path tree_;
    std::optional<std::string> saved_epoch_;
};

TEST_F(LayerWrite, SameTreeTwiceGivesSameDigests) {
    make_sample_tree(tree_);
    for (auto c : {Compression::None, Compression::Gzip, Compression::Zstd}) {
        LayerWriteOptions o;
        o.compression = c;
        auto r1 = write_layer(tree_, out("one"), o);
        auto r2 = write_layer(tree_, out("two"), o);
        EXPECT_EQ(r1.diff_id, r2.diff_id);
        EXPECT_EQ(r1.digest, r2.digest);
        EXPECT_EQ(slurp(out("one")), slurp(out("two")));
        EXPECT_EQ(r1.media_type, layer_media_type(c));
    }
}

TEST_F(LayerWrite, DigestsDescribeTheBytesWritten) {
    make_sample_tree(tree_);
    LayerWriteResult by_compression[3];
    int i = 0;
    for (auto c : {Compression::None, Compression::Gzip, Compression::Zstd}) {
        LayerWriteOptions o;
        o.compression = c;
        auto r = write_layer(tree_, out("layer"), o);
        std::string bytes = slurp(out("layer"));
        EXPECT_EQ(r.digest, Digest::sha256_of(bytes));
        EXPECT_EQ(r.size, static_cast<int64_t>(bytes.size()));
        EXPECT_EQ(r.diff_id, Digest::sha256_of(decompress(out("layer"))));
        if (c == Compression::None) {
            EXPECT_EQ(r.diff_id, r.digest);
        } else {
            EXPECT_NE(r.diff_id, r.digest);
        }
        by_compression[i++] = r;
    }
    // One tar, three encodings: the diff ID does not depend on compression.
    EXPECT_EQ(by_compression[0].diff_id, by_compression[1].diff_id);
    EXPECT_EQ(by_compression[0].diff_id, by_compression[2].diff_id);
    EXPECT_EQ(layer_media_type(Compression::None), media::kLayerTar);
    EXPECT_EQ(layer_media_type(Compression::Gzip), media::kLayerGzip);
    EXPECT_EQ(layer_media_type(Compression::Zstd), media::kLayerZstd);
}

TEST_F(LayerWrite, GzipHeaderHasNoTimestampOrName) {
    make_sample_tree(tree_);
    write_layer(tree_, out("l.tar.gz"), {});
    std::string b = slurp(out("l.tar.gz"));
    ASSERT_GE(b.size(), 10u);
    EXPECT_EQ(static_cast<unsigned char>(b[0]), 0x1f);
    EXPECT_EQ(static_cast<unsigned char>(b[1]), 0x8b);
    EXPECT_EQ(b[3] & 0x08, 0) << "FNAME set";
    EXPECT_EQ(b[3] & 0x10, 0) << "FCOMMENT set";
    EXPECT_EQ(b.substr(4, 4), std::string(4, '\0')) << "MTIME set";

    LayerWriteOptions z;
    z.compression = Compression::Zstd;
    write_layer(tree_, out("l.tar.zst"), z);
    EXPECT_EQ(slurp(out("l.tar.zst")).substr(0, 4), std::string("\x28\xb5\x2f\xfd", 4));
}

TEST_F(LayerWrite, EntriesAreSortedWithNumericOwners) {
    put(tree_ / "b", "b");
    put(tree_ / "a/z", "z");
    put(tree_ / "a/b", "b");
    put(tree_ / "a-c", "c");
    put(tree_ / "A", "A");
    put(tree_ / "a/.hidden", "h");
    ASSERT_EQ(::chown((tree_ / "a/z").c_str(), 1234, 5678), 0);
    auto r = write_layer(tree_, out("l.tar"), uncompressed());
    auto entries = read_tar(out("l.tar"));
    EXPECT_EQ(names_of(entries),
              (std::vector<std::string>{"A", "a", "a/.hidden", "a/b", "a/z", "a-c", "b"}));
    EXPECT_EQ(r.entries, 7);
    const auto& z = entry(entries, "a/z");
    EXPECT_EQ(z.uid, 1234);
    EXPECT_EQ(z.gid, 5678);
    for (const auto& e : entries) {
        EXPECT_EQ(e.uname, "") << e.name;
        EXPECT_EQ(e.gname, "") << e.name;
    }
    EXPECT_EQ(z.content, "z");
}

TEST_F(LayerWrite, KeepsModesAndSpecialBits) {
    put(tree_ / "suid", "x", 0755);
    ASSERT_EQ(::chmod((tree_ / "suid").c_str(), 04755), 0);
    stdfs::create_directories(tree_ / "private");
    ASSERT_EQ(::chmod((tree_ / "private").c_str(), 0700), 0);
    stdfs::create_directories(tree_ / "sticky");
    ASSERT_EQ(::chmod((tree_ / "sticky").c_str(), 01777), 0);
    put(tree_ / "ro", "r", 0400);
    write_layer(tree_, out("l.tar"), uncompressed());
    auto entries = read_tar(out("l.tar"));
    EXPECT_EQ(entry(entries, "suid").perm, 04755u);
    EXPECT_EQ(entry(entries, "private").perm, 0700u);
    EXPECT_EQ(entry(entries, "private").type, static_cast<mode_t>(AE_IFDIR));
    EXPECT_EQ(entry(entries, "sticky").perm, 01777u);
    EXPECT_EQ(entry(entries, "ro").perm, 0400u);
}

TEST_F(LayerWrite, ClampsMtimes) {
    put(tree_ / "new", "n");
    put(tree_ / "old", "o");
    set_mtime(tree_ / "new", 2000000000);
    set_mtime(tree_ / "old", 1000);

    LayerWriteOptions o;
    o.compression = Compression::None;
    o.clamp_mtime = 1500000000;
    write_layer(tree_, out("clamped"), o);
    auto e = read_tar(out("clamped"));
    EXPECT_EQ(entry(e, "new").mtime, 1500000000);
    EXPECT_EQ(entry(e, "old").mtime, 1000);

    o.clamp_mtime.reset();
    write_layer(tree_, out("kept"), o);
    e = read_tar(out("kept"));
    EXPECT_EQ(entry(e, "new").mtime, 2000000000);

    setenv("SOURCE_DATE_EPOCH", "1700000000", 1);
    write_layer(tree_, out("epoch"), o);
    e = read_tar(out("epoch"));
    EXPECT_EQ(entry(e, "new").mtime, 1700000000);
    EXPECT_EQ(entry(e, "old").mtime, 1000);
}

TEST_F(LayerWrite, ClampMakesLayersReproducibleAcrossBuilds) {
    // Two "builds" of the same content at different times.
    auto a = tmp_.path() / "build-a";
    auto b = tmp_.path() / "build-b";
    make_sample_tree(a);
    make_sample_tree(b);
    set_tree_mtime(a, 1700000001);
    set_tree_mtime(b, 1700009999);
    LayerWriteOptions o;
    auto ra = write_layer(a, out("a"), o);
    auto rb = write_layer(b, out("b"), o);
    EXPECT_NE(ra.digest, rb.digest);
    o.clamp_mtime = 1600000000;
    ra = write_layer(a, out("a"), o);
    rb = write_layer(b, out("b"), o);
    EXPECT_EQ(ra.diff_id, rb.diff_id);
    EXPECT_EQ(ra.digest, rb.digest);
}

TEST_F(LayerWrite, HardLinksBecomeTarHardLinks) {
    put(tree_ / "a/one", "shared content");
    stdfs::create_directories(tree_ / "b");
    stdfs::create_hard_link(tree_ / "a/one", tree_ / "b/two");
    stdfs::create_hard_link(tree_ / "a/one", tree_ / "b/three");
    auto r = write_layer(tree_, out("l.tar"), uncompressed());
    auto e = read_tar(out("l.tar"));
    EXPECT_EQ(names_of(e), (std::vector<std::string>{"a", "a/one", "b", "b/three", "b/two"}));
    EXPECT_EQ(entry(e, "a/one").content, "shared content");
    EXPECT_EQ(entry(e, "a/one").hardlink, "");
    EXPECT_EQ(entry(e, "b/three").hardlink, "a/one");
    EXPECT_EQ(entry(e, "b/two").hardlink, "a/one");
    EXPECT_EQ(entry(e, "b/two").content, "");
    EXPECT_EQ(r.entries, 5);
}

TEST_F(LayerWrite, SymlinksAreStoredNotFollowed) {
    auto outside = tmp_.path() / "outside";
    put(outside / "secret", "do not include");
    stdfs::create_symlink("../etc/x", tree_ / "rel");
    stdfs::create_symlink("/etc/passwd", tree_ / "abs");
    stdfs::create_directory_symlink(outside, tree_ / "dirlink");
    stdfs::create_symlink("dangling/nowhere", tree_ / "dangling");
    write_layer(tree_, out("l.tar"), uncompressed());
    auto e = read_tar(out("l.tar"));
    EXPECT_EQ(names_of(e), (std::vector<std::string>{"abs", "dangling", "dirlink", "rel"}));
    EXPECT_EQ(entry(e, "rel").symlink, "../etc/x");
    EXPECT_EQ(entry(e, "rel").type, static_cast<mode_t>(AE_IFLNK));
    EXPECT_EQ(entry(e, "abs").symlink, "/etc/passwd");
    EXPECT_EQ(entry(e, "dirlink").symlink, outside.string());
    EXPECT_EQ(entry(e, "dangling").symlink, "dangling/nowhere");
}

TEST_F(LayerWrite, DevicesAndFifosKeptOrSkipped) {
    ASSERT_EQ(::mknod((tree_ / "null").c_str(), S_IFCHR | 0666, makedev(1, 3)), 0);
    ASSERT_EQ(::chmod((tree_ / "null").c_str(), 0666), 0);
    ASSERT_EQ(::mknod((tree_ / "loop9").c_str(), S_IFBLK | 0660, makedev(7, 9)), 0);
    ASSERT_EQ(::mkfifo((tree_ / "fifo").c_str(), 0600), 0);
    // A socket is never written.
    int s = ::socket(AF_UNIX, SOCK_STREAM, 0);
    ASSERT_GE(s, 0);
    struct sockaddr_un addr {};
    addr.sun_family = AF_UNIX;
    std::string sock = (tree_ / "sock").string();
    ASSERT_LT(sock.size(), sizeof addr.sun_path);
    std::strcpy(addr.sun_path, sock.c_str());
    ASSERT_EQ(::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ::close(s);
    put(tree_ / "file", "f");

    write_layer(tree_, out("kept"), uncompressed());
    auto e = read_tar(out("kept"));
    EXPECT_EQ(names_of(e), (std::vector<std::string>{"fifo", "file", "loop9", "null"}));
    EXPECT_EQ(entry(e, "null").type, static_cast<mode_t>(AE_IFCHR));
    EXPECT_EQ(entry(e, "null").rdev_major, 1u);
    EXPECT_EQ(entry(e, "null").rdev_minor, 3u);
    EXPECT_EQ(entry(e, "null").perm, 0666u);
    EXPECT_EQ(entry(e, "loop9").type, static_cast<mode_t>(AE_IFBLK));
    EXPECT_EQ(entry(e, "loop9").rdev_major, 7u);
    EXPECT_EQ(entry(e, "loop9").rdev_minor, 9u);
    EXPECT_EQ(entry(e, "fifo").type, static_cast<mode_t>(AE_IFIFO));

    LayerWriteOptions o;
    o.compression = Compression::None;
    o.keep_devices = false;
    auto r = write_layer(tree_, out("skipped"), o);
    e = read_tar(out("skipped"));
    EXPECT_EQ(names_of(e), (std::vector<std::string>{"fifo", "file"}));
    EXPECT_EQ(r.entries, 2);
}

TEST_F(LayerWrite, KeepsXattrsButNotOverlayOnes) {
    put(tree_ / "f", "x");
    stdfs::create_directories(tree_ / "d");
    ASSERT_EQ(::setxattr((tree_ / "f").c_str(), "user.color", "blue", 4, 0), 0);
    ASSERT_EQ(::setxattr((tree_ / "f").c_str(), "trusted.overlay.origin", "zz", 2, 0), 0);
    ASSERT_EQ(::setxattr((tree_ / "d").c_str(), "trusted.overlay.opaque", "y", 1, 0), 0);
    ASSERT_EQ(::setxattr((tree_ / "d").c_str(), "user.binary", "\0\1\2", 3, 0), 0);
    write_layer(tree_, out("l.tar"), uncompressed());
    auto e = read_tar(out("l.tar"));
    EXPECT_EQ(entry(e, "f").xattrs, (std::map<std::string, std::string>{{"user.color", "blue"}}));
    EXPECT_EQ(entry(e, "d").xattrs,
              (std::map<std::string, std::string>{{"user.binary", std::string("\0\1\2", 3)}}));
    // Not an overlay upper dir: the opaque xattr is dropped, no marker appears.
    EXPECT_EQ(names_of(e), (std::vector<std::string>{"d", "f"}));
}

TEST_F(LayerWrite, RefusesFilesNamedLikeWhiteoutsAndLeavesNoOutput) {
    put(tree_ / "ok", "x");
    put(tree_ / "sub/.wh.sneaky", "x");
    try {
        write_layer(tree_, out("l.tar"), {});
        FAIL() << "no throw";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find(".wh.sneaky"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(lexists(out("l.tar")));
}

TEST_F(LayerWrite, RejectsBadArguments) {
    EXPECT_THROW(write_layer(tmp_.path() / "missing", out("x"), {}), Error);
    put(tmp_.path() / "plain", "x");
    EXPECT_THROW(write_layer(tmp_.path() / "plain", out("x"), {}), Error);
    LayerWriteOptions o;
    o.compression_level = 42;
    EXPECT_THROW(write_layer(tree_, out("x"), o), Error);
    o.compression = Compression::Zstd;
    o.compression_level = 0;
    EXPECT_THROW(write_layer(tree_, out("x"), o), Error);
    EXPECT_FALSE(lexists(out("x")));
}

TEST_F(LayerWrite, CompressionLevelsChangeBytesNotDiffId) {
    make_sample_tree(tree_);
    LayerWriteOptions fast, best;
    fast.compression_level = 1;
    best.compression_level = 9;
    auto a = write_layer(tree_, out("fast"), fast);
    auto b = write_layer(tree_, out("best"), best);
    EXPECT_EQ(a.diff_id, b.diff_id);
    EXPECT_NE(a.digest, b.digest);
}

TEST_F(LayerWrite, LargeFilesStreamThrough) {
    std::string big;
    big.reserve(5 << 20);
    uint32_t x = 1;
    for (int i = 0; i < (5 << 20); i++) {
        x = x * 1103515245 + 12345;
        big += static_cast<char>(x >> 24);
    }
    put(tree_ / "big.bin", big);
    for (auto c : {Compression::Gzip, Compression::Zstd}) {
        LayerWriteOptions o;
        o.compression = c;
        auto r = write_layer(tree_, out("l"), o);
        auto e = read_tar(out("l"));
        ASSERT_EQ(e.size(), 1u);
        EXPECT_EQ(e[0].content, big);
        EXPECT_EQ(r.diff_id, Digest::sha256_of(decompress(out("l"))));
    }
}

TEST_F(LayerWrite, EmptyDirectoryGivesEmptyTar) {
    auto r = write_layer(tree_, out("empty.tar"), uncompressed());
    EXPECT_EQ(r.entries, 0);
    // Just the end-of-archive marker: two zero blocks, no padding to 10240.
    EXPECT_EQ(slurp(out("empty.tar")), std::string(1024, '\0'));
}

TEST_F(LayerWrite, RoundTripThroughApply) {
    make_sample_tree(tree_);
    ASSERT_EQ(::chown((tree_ / "etc/hostname").c_str(), 42, 43), 0);
    ASSERT_EQ(::chmod((tree_ / "var/empty").c_str(), 0711), 0);
    set_tree_mtime(tree_, 1600000000);
    auto r = write_layer(tree_, out("l.tar.gz"), {});
    auto root = tmp_.path() / "unpacked";
    auto applied = apply_layer(out("l.tar.gz"), root);
    EXPECT_EQ(applied.entries, r.entries);
    EXPECT_EQ(describe_tree(root), describe_tree(tree_));
    struct stat st = lstat_of(root / "etc/hostname");
    EXPECT_EQ(st.st_uid, 42u);
    EXPECT_EQ(st.st_gid, 43u);
    EXPECT_EQ(st.st_mtim.tv_sec, 1600000000);
    EXPECT_EQ(lstat_of(root / "var/empty").st_mode & 07777, 0711u);
    EXPECT_EQ(lstat_of(root / "var/empty").st_mtim.tv_sec, 1600000000);
    EXPECT_EQ(lstat_of(root / "bin/tool").st_ino, lstat_of(root / "usr/tool-hardlink").st_ino);
    // Writing the unpacked tree again gives the very same layer.
    auto again = write_layer(root, out("again.tar.gz"), {});
    EXPECT_EQ(again.diff_id, r.diff_id);
    EXPECT_EQ(again.digest, r.digest);
}

}  // namespace
}  // namespace cascade::oci
