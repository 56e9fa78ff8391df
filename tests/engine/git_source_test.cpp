// Build configs with a git source (cloned with the real git from a repository
// the test creates), dockerStrategy env, and postCommit hooks run with real
// runc in the image just built.
#include "engine/git_source.hpp"

#include <gtest/gtest.h>

#include "engine/build_controller.hpp"
#include "registry/store.hpp"
#include "tests/engine/builder_fixture.hpp"

using namespace cascade;
using namespace std::chrono_literals;
namespace stdfs = std::filesystem;

namespace {

using test::git;

class GitSourceTest : public ::testing::Test, protected builder_testing::BuilderState {
  protected:
    std::unique_ptr<engine::BuildController> controller;
    stdfs::path repo = tmp.path() / "repo";
    std::string first_commit, second_commit;

    GitSourceTest() : BuilderState("cascade-git-") {}

    // A repository: commit 1 on main (app/Dockerfile says "one"), tag v1;
    // commit 2 on main ("two"); branch "other" from commit 1 with "other".
    void SetUp() override {
        ASSERT_TRUE(test::have_program("git"));
        stdfs::create_directories(repo / "app");
        git(repo, {"init", "--quiet", "--initial-branch=main"});
        stdfs::copy_file("/bin/busybox", repo / "app" / "busybox");
        write_version("one");
        git(repo, {"add", "."});
        git(repo, {"commit", "--quiet", "-m", "first"});
        first_commit = git(repo, {"rev-parse", "HEAD"});
        git(repo, {"tag", "v1"});
        git(repo, {"branch", "other"});
        write_version("two");
        git(repo, {"commit", "--quiet", "-am", "second"});
        second_commit = git(repo, {"rev-parse", "HEAD"});
        git(repo, {"checkout", "--quiet", "other"});
        write_version("other");
        git(repo, {"commit", "--quiet", "-am", "on other"});
        git(repo, {"checkout", "--quiet", "main"});
        controller =
            std::make_unique<engine::BuildController>(store, db, builder, tmp.path() / "logs");
    }
    void TearDown() override {
        controller.reset();
        expect_nothing_running();
        // Checkouts are removed after each build.
        std::error_code ec;
        EXPECT_TRUE(!stdfs::exists(tmp.path() / "sources") ||
                    stdfs::is_empty(tmp.path() / "sources", ec));
        test::cleanup_state_root(tmp.path());
    }

    void write_version(const std::string& v) {
        builder_testing::write_text(repo / "app" / "version", v + "\n");
        builder_testing::write_text(
            repo / "app" / "docker" / "Dockerfile",
            "FROM scratch\nCOPY busybox /bin/busybox\nCOPY version /version\n"
            "LABEL version=" +
                v + "\n");
    }

    engine::BuildConfigSpec git_config(const std::string& name, const std::string& uri,
                                       const std::string& ref) {
        engine::BuildConfigSpec s;
        s.name = name;
        s.git_uri = uri;
        s.git_ref = ref;
        s.git_context_dir = "app";
        s.dockerfile = "docker/Dockerfile";
        s.output_repository = name;
        s.config_change_trigger = true;
        s.image_change_trigger = false;
        return s;
    }

    engine::BuildRecord built(const std::string& build) {
        EXPECT_TRUE(controller->wait_idle(180s));
        auto b = controller->build(build);
        EXPECT_TRUE(b.has_value()) << build;
        return b.value_or(engine::BuildRecord{});
    }

    oci::ImageConfig image_config(const std::string& repo, const std::string& digest) {
        auto record = store.resolve(repo, digest);
        if (!record) throw std::runtime_error("no manifest " + digest + " in " + repo);
        auto manifest = oci::parse_manifest(store.manifest_bytes(*record));
        return oci::parse_config(blobs.read(manifest.config.digest));
    }
};

TEST_F(GitSourceTest, CheckoutOfBranchTagAndCommit) {
    auto checkout = [&](const std::string& uri, const std::string& ref) {
        fs::TempDir dir(tmp.path(), "co-");
        auto rev = engine::git_checkout({uri, ref}, dir.path() / "src", "BuildConfig \"t\"");
        auto version = fs::read_file(dir.path() / "src" / "app" / "version");
        return std::pair{rev, version};
    };
    auto [head, v_head] = checkout(repo.string(), "");
    EXPECT_EQ(head.commit, second_commit);
    EXPECT_EQ(head.message, "second");
    EXPECT_EQ(head.author, "Test <test@example.com>");
    EXPECT_EQ(v_head, "two\n");
    EXPECT_EQ(checkout("file://" + repo.string(), "other").second, "other\n");
    auto [tag, v_tag] = checkout(repo.string(), "v1");
    EXPECT_EQ(tag.commit, first_commit);
    EXPECT_EQ(v_tag, "one\n");
    EXPECT_EQ(checkout(repo.string(), first_commit).first.commit, first_commit);
    EXPECT_EQ(checkout("file://" + repo.string(), first_commit.substr(0, 10)).first.commit,
              first_commit);

    // Errors name the config, the repository and what git said.
    fs::TempDir dir(tmp.path(), "co-");
    try {
        engine::git_checkout({repo.string(), "no-such-branch"}, dir.path() / "a",
                             "BuildConfig \"t\"");
        ADD_FAILURE() << "a missing ref was checked out";
    } catch (const Error& e) {
        std::string m = e.what();
        EXPECT_NE(m.find("BuildConfig \"t\""), std::string::npos) << m;
        EXPECT_NE(m.find("no-such-branch"), std::string::npos) << m;
        EXPECT_NE(m.find(repo.string()), std::string::npos) << m;
    }
    try {
        engine::git_checkout({(tmp.path() / "nowhere").string(), ""}, dir.path() / "b",
                             "BuildConfig \"t\"");
        ADD_FAILURE() << "a missing repository was cloned";
    } catch (const Error& e) {
        std::string m = e.what();
        EXPECT_NE(m.find("BuildConfig \"t\""), std::string::npos) << m;
        EXPECT_NE(m.find("nowhere"), std::string::npos) << m;
        EXPECT_NE(m.find("does not exist"), std::string::npos) << m;  // git's stderr
    }
}

TEST_F(GitSourceTest, BuildsTheRefAndRecordsTheCommit) {
    controller->apply(git_config("from-main", "file://" + repo.string(), "main"));
    controller->apply(git_config("from-tag", repo.string(), "v1"));
    auto main_build = built("from-main-1");
    ASSERT_EQ(main_build.phase, "Complete") << main_build.message;
    EXPECT_EQ(main_build.revision["git"]["commit"], second_commit) << main_build.revision.dump();
    EXPECT_EQ(main_build.revision["git"]["message"], "second");
    EXPECT_EQ(main_build.to_json()["revision"]["type"], "Git");
    auto log = fs::read_file(controller->log_path("from-main-1"));
    EXPECT_NE(log.find("Cloning file://" + repo.string()), std::string::npos) << log;
    EXPECT_NE(log.find(second_commit), std::string::npos) << log;

    auto tag_build = built("from-tag-1");
    ASSERT_EQ(tag_build.phase, "Complete") << tag_build.message;
    EXPECT_EQ(tag_build.revision["git"]["commit"], first_commit);
    // Different sources, different images: the contextDir and dockerfilePath
    // of each checkout were used.
    EXPECT_NE(tag_build.image_digest, main_build.image_digest);

    // A contextDir missing in the commit fails the build with a clear message.
    auto missing = git_config("missing", repo.string(), "main");
    missing.git_context_dir = "no-such-dir";
    controller->apply(missing);
    auto failed = built("missing-1");
    EXPECT_EQ(failed.phase, "Failed");
    EXPECT_NE(failed.message.find("no-such-dir"), std::string::npos) << failed.message;
    EXPECT_NE(failed.message.find(second_commit), std::string::npos) << failed.message;

    // A wrong ref fails with git's message.
    controller->apply(git_config("bad-ref", repo.string(), "nope"));
    auto bad = built("bad-ref-1");
    EXPECT_EQ(bad.phase, "Failed");
    EXPECT_NE(bad.message.find("BuildConfig \"bad-ref\""), std::string::npos) << bad.message;
    EXPECT_NE(bad.message.find("nope"), std::string::npos) << bad.message;
}

TEST_F(GitSourceTest, EnvIsSeenByRunStepsAndKeptInTheImage) {
    auto spec = git_config("env", repo.string(), "main");
    spec.dockerfile_text =
        "FROM scratch AS first\nCOPY busybox /bin/busybox\n"
        "RUN [\"/bin/busybox\", \"sh\", \"-c\", \"test \\\"$GREETING\\\" = hello\"]\n"
        "FROM first\n"
        "RUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo $GREETING-$OTHER > /greeting\"]\n";
    spec.env = {{"GREETING", "hello"}, {"OTHER", "x y"}};
    spec.post_commit.command = {"/bin/busybox", "sh", "-c",
                                "test \"$(/bin/busybox cat /greeting)\" = \"hello-x y\""};
    controller->apply(spec);
    auto b = built("env-1");
    ASSERT_EQ(b.phase, "Complete") << b.message << fs::read_file(controller->log_path("env-1"));
    auto config = image_config("env", b.image_digest);
    const auto& env = config.config.env;
    EXPECT_NE(std::find(env.begin(), env.end(), "GREETING=hello"), env.end());
    EXPECT_NE(std::find(env.begin(), env.end(), "OTHER=x y"), env.end());
}

TEST_F(GitSourceTest, PostCommitFailureFailsTheBuildAndLeavesTheTag) {
    auto spec = git_config("hooked", repo.string(), "v1");
    spec.post_commit.script = "test -f /version && echo hook-ran";
    spec.dockerfile_text =
        "FROM scratch\nCOPY busybox /bin/busybox\nCOPY version /version\n"
        "RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n";
    controller->apply(spec);
    auto first = built("hooked-1");
    ASSERT_EQ(first.phase, "Complete")
        << first.message << fs::read_file(controller->log_path("hooked-1"));
    EXPECT_TRUE(first.tag_moved);
    EXPECT_NE(fs::read_file(controller->log_path("hooked-1")).find("hook-ran"), std::string::npos);
    auto tagged = store.tag_digest("hooked", "latest");
    ASSERT_TRUE(tagged);

    // A new commit whose image fails the hook: Failed, the tag stays.
    spec.git_ref = "main";
    spec.post_commit.script = "echo checking; grep -q one /version || exit 3";
    controller->apply(spec);
    auto second = built("hooked-2");
    EXPECT_EQ(second.phase, "Failed");
    EXPECT_NE(second.message.find("postCommit"), std::string::npos) << second.message;
    EXPECT_NE(second.message.find("exit status 3"), std::string::npos) << second.message;
    EXPECT_FALSE(second.tag_moved);
    EXPECT_EQ(store.tag_digest("hooked", "latest"), tagged);
    EXPECT_NE(fs::read_file(controller->log_path("hooked-2")).find("checking"), std::string::npos);

    // args alone go to the image's entrypoint; script args are $1, $2.
    spec.dockerfile_text =
        *spec.dockerfile_text + "ENTRYPOINT [\"/bin/sh\", \"-c\", \"exit $0\"]\n";
    spec.post_commit = {};
    spec.post_commit.args = {"4"};
    controller->apply(spec);
    auto third = built("hooked-3");
    EXPECT_EQ(third.phase, "Failed");
    EXPECT_NE(third.message.find("exit status 4"), std::string::npos) << third.message;
    spec.post_commit = {};
    spec.post_commit.script = "exit $1";
    spec.post_commit.args = {"0"};
    controller->apply(spec);
    auto fourth = built("hooked-4");
    EXPECT_EQ(fourth.phase, "Complete") << fourth.message;
    EXPECT_TRUE(fourth.tag_moved);
}

}  // namespace
