// ADD's own sources without the builder: archive detection by content, safe
// extraction, URL downloads and --checksum.
#include "engine/add_source.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

#include "add_test_support.hpp"
#include "oci/error.hpp"
#include "oci/fs.hpp"

using namespace cascade;

namespace {

namespace stdfs = std::filesystem;

void write_text(const stdfs::path& path, const std::string& text) {
    stdfs::create_directories(path.parent_path());
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
}

class AddSourceTest : public ::testing::Test {
  protected:
    fs::TempDir tmp{{}, "cascade-add-"};
    stdfs::path ctx = tmp.path() / "ctx";
    stdfs::path tree = tmp.path() / "tree";

    void SetUp() override {
        stdfs::create_directories(ctx);
        write_text(tree / "dir/file.txt", "hello\n");
        ASSERT_EQ(::chown((tree / "dir/file.txt").c_str(), 1234, 5678), 0);
        ASSERT_EQ(::link((tree / "dir/file.txt").c_str(), (tree / "dir/hard.txt").c_str()), 0);
        stdfs::create_symlink("file.txt", tree / "dir/sym");
    }

    void tar(const std::vector<std::string>& flags, const std::string& name) {
        std::vector<std::string> argv{"tar"};
        argv.insert(argv.end(), flags.begin(), flags.end());
        argv.insert(argv.end(), {"-cf", (ctx / name).string(), "-C", tree.string(), "."});
        auto r = test::run(argv);
        ASSERT_EQ(r.exit_code, 0) << r.err;
    }

    engine::RootDir root() { return engine::RootDir(ctx, "the context"); }

    std::string extract_error(const std::string& name) {
        auto staging = tmp.path() / ("staging-" + name);
        stdfs::create_directories(staging);
        try {
            engine::extract_archive(root(), name, staging);
        } catch (const Error& e) {
            // Refused before anything was extracted.
            EXPECT_TRUE(stdfs::is_empty(staging)) << name;
            return e.what();
        }
        return "(no error)";
    }
};

TEST_F(AddSourceTest, ArchivesAreRecognisedByContentInEveryCompression) {
    tar({}, "plain.tar");
    tar({"-z"}, "data.bin");  // gzip, with a name that says nothing
    tar({"-j"}, "a.tar.bz2");
    tar({"-J"}, "a.tar.xz");
    tar({"--zstd"}, "a.tar.zst");
    write_text(ctx / "fake.tar.gz", "not an archive\n");
    write_text(tmp.path() / "text.txt", "just text\n");
    auto gz = test::run({"gzip", "-c", (tmp.path() / "text.txt").string()});
    ASSERT_EQ(gz.exit_code, 0) << gz.err;
    write_text(ctx / "file.gz", gz.out);  // gzip, but no tar inside
    write_text(ctx / "empty", "");
    stdfs::create_directories(ctx / "adir");

    auto r = root();
    for (auto name : {"plain.tar", "data.bin", "a.tar.bz2", "a.tar.xz", "a.tar.zst"})
        EXPECT_TRUE(engine::is_tar_archive(r, name)) << name;
    for (auto name : {"fake.tar.gz", "file.gz", "empty", "adir", "missing"})
        EXPECT_FALSE(engine::is_tar_archive(r, name)) << name;
}

TEST_F(AddSourceTest, ExtractionKeepsOwnersModesLinksAndHardLinks) {
    tar({"--zstd"}, "a.tar.zst");
    auto staging = tmp.path() / "staging";
    stdfs::create_directories(staging);
    EXPECT_GE(engine::extract_archive(root(), "a.tar.zst", staging), 4);
    struct stat file {
    }, hard{};
    ASSERT_EQ(::lstat((staging / "dir/file.txt").c_str(), &file), 0);
    ASSERT_EQ(::lstat((staging / "dir/hard.txt").c_str(), &hard), 0);
    EXPECT_EQ(file.st_uid, 1234u);
    EXPECT_EQ(file.st_gid, 5678u);
    EXPECT_EQ(file.st_ino, hard.st_ino) << "the hard link became a copy";
    EXPECT_EQ(stdfs::read_symlink(staging / "dir/sym"), "file.txt");
}

TEST_F(AddSourceTest, HostileArchivesAreRefusedBeforeAnythingIsWritten) {
    const auto unique = tmp.path().filename().string();
    using test::TarSpec;
    test::make_tar(ctx / "dotdot.tar",
                   {{"ok.txt", 'f', "fine\n"}, {"../../" + unique + "-outside", 'f', "pwned\n"}});
    test::make_tar(ctx / "absolute.tar", {{"/tmp/" + unique + "-abs", 'f', "pwned\n"}});
    test::make_tar(ctx / "symlink.tar",
                   {{"lnk", 'l', "/"}, {"lnk/tmp/" + unique + "-lnk", 'f', "pwned\n"}});
    test::make_tar(ctx / "symlink-rel.tar", {{"d", 'd', ""},
                                             {"d/up", 'l', "../../../../../../../../tmp"},
                                             {"d/up/" + unique + "-rel", 'f', "pwned\n"}});
    test::make_tar(ctx / "hardlink.tar", {{"passwd", 'h', "/etc/passwd"}});
    test::make_tar(ctx / "hardlink-up.tar", {{"passwd", 'h', "../../../../../../etc/passwd"}});
    test::make_tar(ctx / "hardlink-sym.tar", {{"etc", 'l', "/etc"}, {"passwd", 'h', "etc/passwd"}});
    test::make_tar(ctx / "hardlink-missing.tar", {{"x", 'h', "not-there"}});
    test::make_tar(ctx / "whiteout.tar", {{"usr/.wh.bin", 'f', ""}});

    struct stat passwd_before {};
    ASSERT_EQ(::stat("/etc/passwd", &passwd_before), 0);
    const std::vector<std::pair<std::string, std::string>> cases{
        {"dotdot.tar", "contains \"..\""},
        {"absolute.tar", "is absolute"},
        {"symlink.tar", "goes through the symlink \"lnk\" -> \"/\""},
        {"symlink-rel.tar", "goes through the symlink \"d/up\""},
        {"hardlink.tar", "hard link target \"/etc/passwd\" is absolute"},
        {"hardlink-up.tar", "contains \"..\""},
        {"hardlink-sym.tar", "hard link target goes through the symlink \"etc\""},
        {"hardlink-missing.tar", "is not a file earlier in the archive"},
        {"whiteout.tar", "overlay whiteout"},
    };
    for (const auto& [name, expected] : cases) {
        auto message = extract_error(name);
        EXPECT_NE(message.find("refusing to extract the archive " + name), std::string::npos)
            << message;
        EXPECT_NE(message.find(expected), std::string::npos) << message;
    }
    for (auto path :
         {"/tmp/" + unique + "-abs", "/tmp/" + unique + "-lnk", "/tmp/" + unique + "-rel",
          "/" + unique + "-outside", tmp.path().parent_path().string() + "/" + unique + "-outside"})
        EXPECT_FALSE(stdfs::exists(path)) << path;
    struct stat passwd_after {};
    ASSERT_EQ(::stat("/etc/passwd", &passwd_after), 0);
    EXPECT_EQ(passwd_after.st_nlink, passwd_before.st_nlink);
    EXPECT_EQ(passwd_after.st_mtim.tv_sec, passwd_before.st_mtim.tv_sec);

    // A symlink alone, absolute or climbing, is just a symlink: extracted.
    test::make_tar(ctx / "links.tar", {{"root", 'l', "/"}, {"up", 'l', "../../.."}});
    auto staging = tmp.path() / "links";
    stdfs::create_directories(staging);
    engine::extract_archive(root(), "links.tar", staging);
    EXPECT_EQ(stdfs::read_symlink(staging / "root"), "/");
    EXPECT_EQ(stdfs::read_symlink(staging / "up"), "../../..");
}

TEST_F(AddSourceTest, ChecksumsParseOnlyAsSha256) {
    auto d = engine::parse_checksum("sha256:" + std::string(64, 'a'));
    EXPECT_EQ(d.encoded(), std::string(64, 'a'));
    for (const std::string& bad :
         std::vector<std::string>{"sha256:abc", "md5:abc", "", "sha256:" + std::string(64, 'A')}) {
        try {
            engine::parse_checksum(bad);
            ADD_FAILURE() << bad;
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find("--checksum="), std::string::npos) << e.what();
        }
    }
    EXPECT_THROW(engine::parse_checksum("sha512:" + std::string(128, 'a')), Error);
    EXPECT_TRUE(engine::is_url("https://example.com/x"));
    EXPECT_TRUE(engine::is_url("http://example.com"));
    EXPECT_FALSE(engine::is_url("git@github.com:x/y.git"));
    EXPECT_FALSE(engine::is_url("ftp://example.com/x"));
    EXPECT_FALSE(engine::is_url("dir/http://x"));
}

TEST_F(AddSourceTest, UrlsDownloadWithModeTimeAndChecksum) {
    test::FileServer server({
        {"/files/hello.txt", {"hello\n", "Wed, 21 Oct 2015 07:28:00 GMT"}},
        {"/files/plain", {"plain\n", ""}},
        {"/", {"index\n", ""}},
    });
    const auto hello_digest = oci::Digest::sha256_of("hello\n");

    auto out = tmp.path() / "hello";
    auto fetched = engine::fetch_url(server.url("/files/hello.txt"), out, hello_digest);
    EXPECT_EQ(fetched.name, "hello.txt");
    EXPECT_EQ(fetched.digest, hello_digest);
    EXPECT_EQ(fetched.size, 6);
    EXPECT_EQ(fs::read_file(out), "hello\n");
    struct stat st {};
    ASSERT_EQ(::stat(out.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0600u);
    EXPECT_EQ(st.st_mtim.tv_sec, 1445412480);  // the Last-Modified date

    auto plain = engine::fetch_url(server.url("/files/plain?x=1#y"), tmp.path() / "plain", {});
    EXPECT_EQ(plain.name, "plain");
    EXPECT_FALSE(plain.last_modified);
    ASSERT_EQ(::stat((tmp.path() / "plain").c_str(), &st), 0);
    EXPECT_EQ(st.st_mtim.tv_sec, 0);

    EXPECT_EQ(engine::fetch_url(server.url("/"), tmp.path() / "index", {}).name, "");
}

TEST_F(AddSourceTest, UrlErrorsNameTheUrlStatusAndDigests) {
    test::FileServer server({{"/f", {"content\n", ""}}});
    auto error_of = [&](const std::string& url, const std::optional<oci::Digest>& sum) {
        auto out = tmp.path() / "out";
        try {
            engine::fetch_url(url, out, sum);
        } catch (const Error& e) {
            EXPECT_FALSE(stdfs::exists(out)) << "a failed download left its file";
            return std::string(e.what());
        }
        return std::string("(no error)");
    };
    auto missing = server.url("/missing.txt");
    auto message = error_of(missing, {});
    EXPECT_NE(message.find("downloading " + missing + ": "), std::string::npos) << message;
    EXPECT_NE(message.find("HTTP status 404"), std::string::npos) << message;

    auto wrong = oci::Digest::sha256_of("something else");
    message = error_of(server.url("/f"), wrong);
    EXPECT_NE(message.find("checksum mismatch"), std::string::npos) << message;
    EXPECT_NE(message.find(wrong.str()), std::string::npos) << message;
    EXPECT_NE(message.find(oci::Digest::sha256_of("content\n").str()), std::string::npos)
        << message;

    auto dead = "http://127.0.0.1:" + std::to_string(test::free_port()) + "/x";
    message = error_of(dead, {});
    EXPECT_NE(message.find("downloading " + dead + ": download failed"), std::string::npos)
        << message;
}

}  // namespace
