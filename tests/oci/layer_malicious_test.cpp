// Hostile layer tars: every one must be refused (or, for absolute symlinks,
// re-rooted) without creating, changing or deleting anything outside the root.
#include <gtest/gtest.h>

#include "oci/error.hpp"
#include "oci/fs.hpp"
#include "oci/layer.hpp"
#include "tests/oci/oci_test_util.hpp"

namespace cascade::oci {
namespace {

using namespace testutil;

class MaliciousLayer : public ::testing::Test {
  protected:
    void SetUp() override {
        base_ = tmp_.path();
        root_ = base_ / "root";
        outside_ = base_ / "outside";
        stdfs::create_directories(root_);
        put(outside_ / "victim", "safe");
        put(outside_ / "sub/nested", "safe too");
        before_outside_ = describe_tree(outside_);
        before_base_ = top_level();
        passwd_before_ = lstat_of("/etc/passwd");
    }

    void TearDown() override {
        // Nothing outside the root changed: not the neighbour directory, not
        // the directory holding the root, not /etc/passwd.
        EXPECT_EQ(describe_tree(outside_), before_outside_);
        EXPECT_EQ(lstat_of(outside_ / "victim").st_nlink, 1u);
        EXPECT_EQ(top_level(), before_base_);
        struct stat now = lstat_of("/etc/passwd");
        EXPECT_EQ(now.st_nlink, passwd_before_.st_nlink);
        EXPECT_EQ(now.st_ino, passwd_before_.st_ino);
        EXPECT_EQ(now.st_mtim.tv_sec, passwd_before_.st_mtim.tv_sec);
    }

    std::vector<std::string> top_level() {
        std::vector<std::string> out;
        for (auto& e : stdfs::directory_iterator(base_)) {
            auto name = e.path().filename().string();
            if (name.rfind("layer", 0) != 0) out.push_back(name);
        }
        std::sort(out.begin(), out.end());
        return out;
    }

    stdfs::path tar(const std::vector<TarEntry>& entries) {
        auto p = base_ / ("layer" + std::to_string(n_++) + ".tar");
        make_tar(p, entries);
        return p;
    }

    // Applies and expects a refusal whose message names `entry_name`.
    void expect_refused(const std::vector<TarEntry>& entries, const std::string& entry_name,
                        const std::string& reason = "") {
        auto p = tar(entries);
        try {
            apply_layer(p, root_);
            ADD_FAILURE() << "layer applied; expected \"" << entry_name << "\" to be refused";
        } catch (const Error& e) {
            std::string m = e.what();
            EXPECT_NE(m.find("entry \"" + entry_name), std::string::npos) << m;
            if (!reason.empty()) {
                EXPECT_NE(m.find(reason), std::string::npos) << m;
            }
        }
    }

    // outside_ as a path relative to "/" (for re-rooted lookups).
    std::string outside_rel() const { return outside_.string().substr(1); }

    fs::TempDir tmp_;
    stdfs::path base_, root_, outside_;
    std::vector<std::string> before_outside_, before_base_;
    struct stat passwd_before_ {};
    int n_ = 0;
};

TEST_F(MaliciousLayer, DotDotEntry) {
    expect_refused({file("../outside/victim", "pwned")}, "../outside/victim", "..");
    expect_refused({file("../pwned", "x")}, "../pwned");
    expect_refused({file("ok", "fine"), file("a/../../pwned", "x")}, "a/../../pwned");
    expect_refused({dir("../newdir")}, "../newdir");
    expect_refused({file("./../../../../../../tmp/pwned", "x")}, "./../../../../../../tmp/pwned");
    // What came before the bad entry was applied and stays inside the root.
    EXPECT_EQ(slurp(root_ / "ok"), "fine");
}

TEST_F(MaliciousLayer, AbsolutePathEntry) {
    std::string abs = (outside_ / "victim").string();
    expect_refused({file(abs, "pwned")}, abs, "absolute");
    expect_refused({file("/etc/passwd", "root::0:0::/:/bin/sh\n")}, "/etc/passwd", "absolute");
    std::string newfile = (base_ / "created-by-layer").string();
    expect_refused({file(newfile, "x")}, newfile);
    EXPECT_FALSE(lexists(root_ / "etc/passwd"));
}

TEST_F(MaliciousLayer, SymlinkToRootThenEntryThroughItStaysInRoot) {
    // Absolute symlinks are resolved as if the root were "/": the write lands
    // inside the root, never in the host's directory of that name.
    auto p = tar({symlink("escape", "/"), file("escape/" + outside_rel() + "/victim", "pwned"),
                  file("escape/" + outside_rel() + "/new", "x")});
    apply_layer(p, root_);
    EXPECT_EQ(slurp(root_ / outside_rel() / "victim"), "pwned");
    EXPECT_EQ(slurp(root_ / outside_rel() / "new"), "x");
    EXPECT_FALSE(lexists(outside_ / "new"));
}

TEST_F(MaliciousLayer, AbsoluteSymlinkToOutsideDirThenWriteThrough) {
    auto p = tar({symlink("l", outside_.string()), file("l/victim", "pwned"), dir("l/newdir"),
                  file("l/sub/nested", "pwned")});
    apply_layer(p, root_);
    EXPECT_EQ(slurp(root_ / outside_rel() / "victim"), "pwned");
    EXPECT_TRUE(stdfs::is_directory(root_ / outside_rel() / "newdir"));
    EXPECT_FALSE(lexists(outside_ / "newdir"));
}

TEST_F(MaliciousLayer, RelativeSymlinkClimbingOutThenWriteThrough) {
    expect_refused({symlink("l", "../outside"), file("l/victim", "pwned")}, "l/victim",
                   "climbs above the root");
    expect_refused({symlink("up", "../../../../../../../../.."), file("up/tmp/pwned", "x")},
                   "up/tmp/pwned", "climbs above the root");
    expect_refused(
        {dir("a"), dir("a/b"), symlink("a/b/c", "../../../outside"), file("a/b/c/victim", "pwned")},
        "a/b/c/victim");
    expect_refused({symlink("dd", "a/../../outside"), dir("dd/newdir")}, "dd/newdir");
    // The symlinks themselves were created inside the root (a symlink is just
    // data); only following them out was refused.
    EXPECT_EQ(stdfs::read_symlink(root_ / "l"), "../outside");
}

TEST_F(MaliciousLayer, SymlinkChainClimbingOut) {
    expect_refused({symlink("s1", "s2"), symlink("s2", "s3/.."), dir("s3"),
                    symlink("s3/x", "../.."), file("s1/s3/x/victim", "pwned")},
                   "s1/s3/x/victim", "climbs above the root");
    expect_refused({symlink("c1", "c2"), symlink("c2", "../outside"), file("c1/victim", "p")},
                   "c1/victim");
}

TEST_F(MaliciousLayer, SymlinkLoop) {
    expect_refused({symlink("loop", "loop"), file("loop/x", "x")}, "loop/x", "too many");
    expect_refused({symlink("p", "q"), symlink("q", "p"), file("p/x", "x")}, "p/x", "too many");
}

TEST_F(MaliciousLayer, HardLinkToAbsolutePath) {
    expect_refused({hardlink("h", "/etc/passwd")}, "h", "absolute");
    expect_refused({hardlink("h2", (outside_ / "victim").string())}, "h2", "absolute");
    EXPECT_FALSE(lexists(root_ / "h"));
}

TEST_F(MaliciousLayer, HardLinkWithDotDot) {
    expect_refused({hardlink("h", "../outside/victim")}, "h", "..");
    expect_refused({dir("a"), dir("a/b"), hardlink("h", "a/b/../../../outside/victim")}, "h");
    expect_refused({hardlink("h", "a/../../../../../../../../etc/passwd")}, "h");
}

TEST_F(MaliciousLayer, HardLinkThroughSymlinks) {
    // Through a relative symlink that climbs out: refused.
    expect_refused({symlink("l", "../outside"), hardlink("h", "l/victim")}, "h",
                   "climbs above the root");
    // Through an absolute symlink: resolved inside the root, where there is
    // no such file.
    expect_refused({symlink("abs", outside_.string()), hardlink("h2", "abs/victim")}, "h2",
                   "does not exist");
    expect_refused({symlink("e", "/etc"), hardlink("pw", "e/passwd")}, "pw", "does not exist");
}

TEST_F(MaliciousLayer, FileOverExistingSymlinkReplacesTheSymlink) {
    auto p = tar({symlink("f", (outside_ / "victim").string()), file("f", "pwned"),
                  symlink("g", "../outside/victim"), file("g", "pwned"),
                  symlink("d", outside_.string()), dir("d"), file("d/x", "in root")});
    apply_layer(p, root_);
    EXPECT_FALSE(S_ISLNK(lstat_of(root_ / "f").st_mode));
    EXPECT_EQ(slurp(root_ / "f"), "pwned");
    EXPECT_EQ(slurp(root_ / "g"), "pwned");
    EXPECT_TRUE(S_ISDIR(lstat_of(root_ / "d").st_mode));
    EXPECT_EQ(slurp(root_ / "d/x"), "in root");
}

TEST_F(MaliciousLayer, HardLinkToSymlinkLinksTheSymlinkItself) {
    auto p =
        tar({symlink("s", (outside_ / "victim").string()), hardlink("h", "s"), file("h", "pwned")});
    apply_layer(p, root_);
    EXPECT_EQ(slurp(root_ / "h"), "pwned");
    EXPECT_TRUE(S_ISLNK(lstat_of(root_ / "s").st_mode));
}

TEST_F(MaliciousLayer, WhiteoutNamesThatEscape) {
    expect_refused({file("../outside/.wh.victim", "")}, "../outside/.wh.victim", "..");
    expect_refused({file(".wh../outside/victim", "")}, ".wh../outside/victim", ".wh.");
    expect_refused({file(".wh..", "")}, ".wh..", "names no file");
    expect_refused({file("sub/.wh..", "")}, "sub/.wh..", "names no file");
    expect_refused({file(".wh.", "")}, ".wh.", "names no file");
    expect_refused({file((outside_ / ".wh.victim").string(), "")},
                   (outside_ / ".wh.victim").string(), "absolute");
    expect_refused({symlink("l", "../outside"), file("l/.wh.victim", "")}, "l/.wh.victim",
                   "climbs above the root");
    expect_refused({symlink("o", "../outside"), file("o/.wh..wh..opq", "")}, "o/.wh..wh..opq",
                   "climbs above the root");
}

TEST_F(MaliciousLayer, WhiteoutsThroughAbsoluteSymlinksStayInRoot) {
    put(root_ / "inside", "i");
    auto p = tar({symlink("l", outside_.string()), file("l/.wh.victim", ""), file("l/.wh.sub", ""),
                  symlink("o", outside_.string()), file("o/.wh..wh..opq", ""), symlink("r", "/"),
                  file("r/.wh." + outside_rel().substr(0, outside_rel().find('/')), "")});
    auto r = apply_layer(p, root_);
    EXPECT_EQ(r.whiteouts, 4);
    EXPECT_EQ(slurp(root_ / "inside"), "i");
}

TEST_F(MaliciousLayer, WhiteoutOfASymlinkRemovesOnlyTheSymlink) {
    apply_layer(
        tar({symlink("link", outside_.string()), symlink("flink", (outside_ / "victim").string())}),
        root_);
    auto r = apply_layer(tar({file(".wh.link", ""), file(".wh.flink", "")}), root_);
    EXPECT_EQ(r.whiteouts, 2);
    EXPECT_FALSE(lexists(root_ / "link"));
    EXPECT_FALSE(lexists(root_ / "flink"));
}

TEST_F(MaliciousLayer, ParentThatIsAFile) {
    expect_refused({file("f", "x"), file("f/child", "y")}, "f/child", "not a directory");
}

}  // namespace
}  // namespace cascade::oci
