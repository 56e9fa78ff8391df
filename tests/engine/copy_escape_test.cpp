// COPY and ADD through the builder, with the real store and overlayfs: the
// known builder escapes (symlinks in the image, hostile archives, --chown with
// a symlinked /etc/passwd) refused or confined with the host untouched, and
// ADD's archives and URLs, hard links and Docker's destination rules.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "add_test_support.hpp"
#include "tests/engine/builder_fixture.hpp"

using namespace cascade;

namespace {

namespace stdfs = std::filesystem;
using builder_testing::write_text;

// Builds without the cache; build() answers the image's manifest.
class CopyEscapeTest : public builder_testing::BuilderTest {
  protected:
    const std::string unique = tmp.path().filename().string();

    CopyEscapeTest() : BuilderTest("cascade-copy-") {}

    engine::BuildRequest uncached(const std::string& dockerfile, const std::string& repo) {
        auto r = request(dockerfile, repo);
        r.no_cache = true;
        return r;
    }

    oci::Manifest build(const std::string& dockerfile, const std::string& repo = "app") {
        auto result = builder.build(uncached(dockerfile, repo));
        return manifest_of(repo, result.manifest_digest);
    }

    std::string error_of(const std::string& dockerfile) {
        return BuilderTest::error_of(uncached(dockerfile, "failing"));
    }
};

// (a) An image whose layer has /escape -> / and /etc/x -> /../../..: COPY
// through them lands inside the rootfs; the host's files stay as they were.
TEST_F(CopyEscapeTest, CopyThroughImageSymlinksToRootStaysInTheRootfs) {
    stdfs::create_directories(context / "layout/etc");
    stdfs::create_symlink("/", context / "layout/escape");
    stdfs::create_symlink("/../../..", context / "layout/etc/x");
    write_text(context / "file", "from the build\n");
    const auto host_a = "/tmp/" + unique + "-pwned";
    const auto host_b = "/tmp/" + unique + "-pwned2";
    write_text(host_a, "host\n");  // would be overwritten by an escape

    oci::Manifest m;
    try {
        m = build(
            "FROM scratch\n"
            "COPY layout/ /\n"
            "COPY file /escape/tmp/" +
            unique +
            "-pwned\n"
            "COPY file /etc/x/tmp/" +
            unique + "-pwned2\n");
    } catch (...) {
        stdfs::remove(host_a);
        throw;
    }
    EXPECT_EQ(fs::read_file(host_a), "host\n") << "COPY wrote through /escape to the host";
    EXPECT_FALSE(stdfs::exists(host_b)) << "COPY wrote through /etc/x to the host";
    stdfs::remove(host_a);

    ASSERT_EQ(m.layers.size(), 3u);
    auto links = entries(m.layers[0]);
    EXPECT_EQ(links["escape"].link, "/");
    EXPECT_EQ(links["etc/x"].link, "/../../..");
    EXPECT_EQ(file_in(m.layers[1], "tmp/" + unique + "-pwned"), "from the build\n");
    EXPECT_EQ(file_in(m.layers[2], "tmp/" + unique + "-pwned2"), "from the build\n");
    EXPECT_EQ(entries(m.layers[1]).count("escape"), 0u) << "the symlink was replaced";
}

// (b) ADD of hostile tars: each refused with a clear error naming the entry,
// nothing written on the host, no image made.
TEST_F(CopyEscapeTest, AddOfHostileArchivesIsRefused) {
    test::make_tar(context / "dotdot.tar", {{"../../" + unique + "-outside", 'f', "pwned\n"}});
    test::make_tar(context / "absolute.tar", {{"/tmp/" + unique + "-abs", 'f', "pwned\n"}});
    test::make_tar(context / "symlink.tar",
                   {{"lnk", 'l', "/"}, {"lnk/tmp/" + unique + "-lnk", 'f', "pwned\n"}});
    test::make_tar(context / "hardlink.tar", {{"passwd", 'h', "/etc/passwd"}});
    struct stat passwd_before {};
    ASSERT_EQ(::stat("/etc/passwd", &passwd_before), 0);

    const std::vector<std::pair<std::string, std::string>> cases{
        {"dotdot.tar", "entry \"../../" + unique + "-outside\": its path"},
        {"absolute.tar", "is absolute"},
        {"symlink.tar", "goes through the symlink \"lnk\" -> \"/\""},
        {"hardlink.tar", "hard link target \"/etc/passwd\" is absolute"},
    };
    for (const auto& [name, expected] : cases) {
        auto message = error_of("FROM scratch\nADD " + name + " /app/\n");
        EXPECT_EQ(message.rfind("Dockerfile:2: ADD " + name + " /app/: refusing to extract", 0), 0u)
            << message;
        EXPECT_NE(message.find(expected), std::string::npos) << message;
    }
    EXPECT_FALSE(store.tag_digest("failing", "latest"));
    for (auto path :
         {"/tmp/" + unique + "-abs", "/tmp/" + unique + "-lnk", "/" + unique + "-outside",
          (tmp.path() / "work" / (unique + "-outside")).string(),
          (tmp.path() / (unique + "-outside")).string()})
        EXPECT_FALSE(stdfs::exists(path)) << path;
    struct stat passwd_after {};
    ASSERT_EQ(::stat("/etc/passwd", &passwd_after), 0);
    EXPECT_EQ(passwd_after.st_nlink, passwd_before.st_nlink);
    EXPECT_EQ(passwd_after.st_ino, passwd_before.st_ino);
}

// (c) --chown names resolve in the image's own /etc/passwd and /etc/group,
// symlinks included, never in the host's.
TEST_F(CopyEscapeTest, ChownResolvesAccountsInsideTheRootfs) {
    write_text(context / "accounts/etc/passwd.real",
               "root:x:0:0:root:/root:/bin/sh\nsomeuser:x:777:778::/:/bin/sh\n");
    write_text(context / "accounts/etc/group.real", "root:x:0:\nsomegroup:x:779:\n");
    stdfs::create_symlink("/etc/passwd.real", context / "accounts/etc/passwd");
    stdfs::create_symlink("/etc/group.real", context / "accounts/etc/group");
    write_text(context / "f", "f\n");
    auto m = build(
        "FROM scratch\n"
        "COPY accounts/ /\n"
        "COPY --chown=someuser:somegroup f /a\n"
        "COPY --chown=someuser f /b\n");
    ASSERT_EQ(m.layers.size(), 3u);
    EXPECT_EQ(entries(m.layers[1])["a"].owner, "777/779");
    EXPECT_EQ(entries(m.layers[2])["b"].owner, "777/778") << "the user's primary group";

    // /etc/passwd -> /../../../etc/passwd: on the host that is the host's
    // passwd (which has _apt and nobody); inside the rootfs it is itself.
    stdfs::create_directories(context / "loop/etc");
    stdfs::create_symlink("/../../../../../../etc/passwd", context / "loop/etc/passwd");
    build("FROM scratch\nCOPY loop/ /\n", "loop");
    for (auto user : {"_apt", "nobody", "root"}) {
        auto message = error_of(std::string("FROM loop\nCOPY --chown=") + user + " f /x\n");
        EXPECT_EQ(message.rfind("Dockerfile:2: ", 0), 0u) << message;
        EXPECT_NE(message.find("--chown=" + std::string(user)), std::string::npos) << message;
        EXPECT_NE(message.find("etc/passwd"), std::string::npos) << message;
    }

    // /etc/passwd -> an absolute host path of a passwd that has the user: the
    // lookup stays in the rootfs, where that path does not exist.
    auto host_passwd = tmp.path() / "host-passwd";
    write_text(host_passwd, "hostonly:x:4242:4242::/:/bin/sh\n");
    stdfs::create_directories(context / "abs/etc");
    stdfs::create_symlink(host_passwd, context / "abs/etc/passwd");
    build("FROM scratch\nCOPY abs/ /\n", "abs");
    auto message = error_of("FROM abs\nCOPY --chown=hostonly f /x\n");
    EXPECT_NE(message.find("user \"hostonly\""), std::string::npos) << message;
    EXPECT_NE(message.find("not found"), std::string::npos) << message;
    EXPECT_FALSE(store.tag_digest("failing", "latest"));
}

TEST_F(CopyEscapeTest, AddExtractsLocalArchivesByContent) {
    auto tree = tmp.path() / "tree";
    write_text(tree / "dir/file.txt", "hello\n", 0640);
    ASSERT_EQ(::chown((tree / "dir/file.txt").c_str(), 1234, 5678), 0);
    ASSERT_EQ(::link((tree / "dir/file.txt").c_str(), (tree / "dir/hard.txt").c_str()), 0);
    stdfs::create_symlink("file.txt", tree / "dir/sym");
    auto tar = [&](const std::string& flag, const std::string& name) {
        std::vector<std::string> argv{"tar"};
        if (!flag.empty()) argv.push_back(flag);
        argv.insert(argv.end(), {"-cf", (context / name).string(), "-C", tree.string(), "."});
        ASSERT_EQ(test::run(argv).exit_code, 0);
    };
    tar("", "plain.tar");
    tar("-z", "data.bin");
    tar("-j", "a.tar.bz2");
    tar("-J", "a.tar.xz");
    tar("--zstd", "a.tar.zst");
    write_text(context / "fake.tar.gz", "not an archive\n");

    auto m = build(
        "FROM scratch\n"
        "ADD plain.tar /plain/\n"
        "ADD data.bin /gz\n"
        "WORKDIR /w\n"
        "ADD a.tar.bz2 a.tar.xz a.tar.zst sub/\n"
        "ADD fake.tar.gz /fake/\n"
        "ADD --chown=42:43 --chmod=600 a.tar.xz /chowned\n");
    ASSERT_EQ(m.layers.size(), 6u);
    auto plain = entries(m.layers[0]);
    EXPECT_EQ(plain["plain/dir/file.txt"].owner, "1234/5678") << "the archive's owners are kept";
    EXPECT_EQ(plain["plain/dir/file.txt"].mode, "-rw-r-----");
    EXPECT_EQ(plain["plain/dir/sym"].link, "file.txt");
    // One of the two names is a hard link to the other in the layer.
    EXPECT_TRUE(plain["plain/dir/hard.txt"].link == "plain/dir/file.txt" ||
                plain["plain/dir/file.txt"].link == "plain/dir/hard.txt")
        << plain["plain/dir/hard.txt"].mode;
    EXPECT_EQ(file_in(m.layers[0], "plain/dir/file.txt"), "hello\n");
    EXPECT_EQ(file_in(m.layers[1], "gz/dir/file.txt"), "hello\n") << "dest without / is a dir";
    auto sub = entries(m.layers[3]);
    EXPECT_EQ(sub.count("w/sub/dir/file.txt"), 1u);
    EXPECT_EQ(sub["w/sub"].mode, "drwxr-xr-x");
    auto fake = entries(m.layers[4]);
    EXPECT_EQ(fake.count("fake/fake.tar.gz"), 1u) << "a non-archive is copied as it is";
    auto chowned = entries(m.layers[5]);
    EXPECT_EQ(chowned["chowned/dir/file.txt"].owner, "42/43");
    EXPECT_EQ(chowned["chowned/dir/file.txt"].mode, "-rw-------");

    // COPY never extracts.
    auto copied = build("FROM scratch\nCOPY plain.tar /c/\n", "copied");
    EXPECT_EQ(entries(copied.layers[0]).count("c/plain.tar"), 1u);
}

TEST_F(CopyEscapeTest, AddDownloadsUrlsWithoutExtractingThem) {
    auto tree = tmp.path() / "tree";
    write_text(tree / "in.txt", "inside\n");
    auto tgz = tmp.path() / "a.tar.gz";
    ASSERT_EQ(test::run({"tar", "-czf", tgz.string(), "-C", tree.string(), "."}).exit_code, 0);
    test::FileServer server({
        {"/files/hello.txt", {"hello\n", "Wed, 21 Oct 2015 07:28:00 GMT"}},
        {"/files/a.tar.gz", {fs::read_file(tgz), ""}},
    });
    const auto hello = server.url("/files/hello.txt");
    const auto sum = oci::Digest::sha256_of("hello\n").str();
    auto m = build(
        "FROM scratch\n"
        "ADD " +
        hello +
        " /dl/\n"
        "ADD --checksum=" +
        sum + " " + hello +
        " /named.txt\n"
        "ADD " +
        server.url("/files/a.tar.gz") + " /archives/\n");
    ASSERT_EQ(m.layers.size(), 3u);
    auto dl = entries(m.layers[0]);
    EXPECT_EQ(dl["dl/hello.txt"].mode, "-rw-------");
    EXPECT_EQ(dl["dl/hello.txt"].owner, "0/0");
    EXPECT_EQ(file_in(m.layers[0], "dl/hello.txt"), "hello\n");
    EXPECT_EQ(file_in(m.layers[1], "named.txt"), "hello\n");
    auto archives = entries(m.layers[2]);
    EXPECT_EQ(archives.count("archives/a.tar.gz"), 1u);
    EXPECT_EQ(archives.count("archives/in.txt"), 0u) << "URLs are not extracted";

    auto wrong = oci::Digest::sha256_of("other").str();
    auto message = error_of("FROM scratch\nADD --checksum=" + wrong + " " + hello + " /x\n");
    EXPECT_EQ(message.rfind("Dockerfile:2: ", 0), 0u) << message;
    EXPECT_NE(message.find(wrong), std::string::npos) << message;
    EXPECT_NE(message.find(sum), std::string::npos) << message;
    message = error_of("FROM scratch\nADD " + server.url("/nope") + " /x\n");
    EXPECT_NE(message.find(server.url("/nope")), std::string::npos) << message;
    EXPECT_NE(message.find("HTTP status 404"), std::string::npos) << message;
    message = error_of("FROM scratch\nADD --checksum=" + sum + " fake /x\n");
    EXPECT_NE(message.find("--checksum needs exactly one http(s) URL"), std::string::npos)
        << message;
}

TEST_F(CopyEscapeTest, CopyKeepsHardLinksAndFollowsDestinationRules) {
    write_text(context / "d/a", "same\n");
    ASSERT_EQ(::link((context / "d/a").c_str(), (context / "d/b").c_str()), 0);
    write_text(context / "one.txt", "1\n");
    write_text(context / "two.txt", "2\n");
    auto m = build(
        "FROM scratch\n"
        "COPY d /hl\n"
        "WORKDIR /w\n"
        "COPY one.txt renamed\n"        // a file named "renamed"
        "COPY one.txt two.txt multi\n"  // several sources: a directory
        "COPY d/ .\n"                   // a directory's contents into WORKDIR
        "COPY --chmod=700 d chmoded/\n");
    ASSERT_EQ(m.layers.size(), 6u);
    auto hl = entries(m.layers[0]);
    EXPECT_TRUE(hl["hl/b"].link == "hl/a" || hl["hl/a"].link == "hl/b") << hl["hl/b"].mode;
    auto renamed = entries(m.layers[2]);
    EXPECT_EQ(renamed["w/renamed"].mode.front(), '-');
    EXPECT_EQ(file_in(m.layers[2], "w/renamed"), "1\n");
    auto multi = entries(m.layers[3]);
    EXPECT_EQ(multi.count("w/multi/one.txt") + multi.count("w/multi/two.txt"), 2u);
    auto contents = entries(m.layers[4]);
    EXPECT_EQ(contents.count("w/a"), 1u);
    EXPECT_EQ(contents.count("w/d"), 0u);
    auto chmoded = entries(m.layers[5]);
    EXPECT_EQ(chmoded["w/chmoded/a"].mode, "-rwx------");
    EXPECT_EQ(chmoded["w/chmoded"].mode, "drwxr-xr-x") << "buildah: the source directory's mode";
}

}  // namespace
