#include "runtime/container.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "oci/error.hpp"
#include "oci/layer.hpp"
#include "registry/blob_store.hpp"
#include "runtime/netns.hpp"
#include "tests/runtime/runtime_support.hpp"

namespace cascade::runtime {
namespace {

using testing::is_mounted;
using testing::mounts_under;
using testing::process_exists;
using testing::read_text;
using testing::write_text;
namespace stdfs = std::filesystem;
using namespace std::chrono_literals;

int parent_pid_of(int pid) {
    auto stat = read_text("/proc/" + std::to_string(pid) + "/stat");
    auto close = stat.rfind(')');
    if (close == std::string::npos) return -1;
    char state = 0;
    int ppid = -1;
    std::sscanf(stat.c_str() + close + 1, " %c %d", &state, &ppid);
    return ppid;
}

// A two-layer busybox image (userland, then a web root) in a real blob store,
// and a ContainerHost over a real layer cache and runc. The test process is a
// child subreaper, as the daemon is, so container inits become its children.
class ContainerTest : public testing::RuntimeTest {
  protected:
    void SetUp() override {
        ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
        testing::make_busybox_tree(dir() / "base");
        write_text(dir() / "app/www/index.html", "index of the app\n");
        for (const char* tree : {"base", "app"})
            testing::add_layer(blobs_, dir() / tree, dir() / (std::string(tree) + ".tar.gz"),
                               manifest_, config_);
        config_.config.env = {"PATH=/bin"};
        config_.config.cmd = std::vector<std::string>{"/bin/sh", "-c", "echo default"};
    }

    void TearDown() override {
        RuntimeTest::TearDown();
        ::prctl(PR_SET_CHILD_SUBREAPER, 0);
    }

    BundleOptions command(const std::string& script) {
        return options_from_image(config_.config, {"/bin/sh", "-c", script});
    }

    bool log_has(const std::string& id, const std::string& text) {
        return read_text(host_.log_path(id)).find(text) != std::string::npos;
    }

    // Nothing of the container is left: no runc state, mount or directory.
    void expect_gone(const std::string& id) {
        EXPECT_FALSE(runc_.state(id).has_value());
        EXPECT_FALSE(is_mounted(host_.bundle_dir(id) / "rootfs"));
        EXPECT_TRUE(mounts_under(host_.root()).empty());
        EXPECT_FALSE(stdfs::exists(host_.bundle_dir(id)));
    }

    registry::BlobStore blobs_{dir() / "store"};
    LayerCache layers_{dir() / "layers", blobs_};
    Runc runc_{runc_root()};
    ContainerHost host_{dir() / "containers", layers_, runc_};
    oci::Manifest manifest_;
    oci::ImageConfig config_;
};

TEST_F(ContainerTest, OutputGoesToTheLog) {
    int pid = host_.start("hello", manifest_, config_,
                          command("echo hello-from-container; echo to-stderr >&2"));
    EXPECT_GT(pid, 0);
    EXPECT_TRUE(is_mounted(host_.bundle_dir("hello") / "rootfs"));
    EXPECT_TRUE(stdfs::exists(host_.bundle_dir("hello") / "config.json"));
    EXPECT_TRUE(cascade::test::eventually(
        [&] { return log_has("hello", "hello-from-container") && log_has("hello", "to-stderr"); },
        20s))
        << read_text(host_.log_path("hello"));
    host_.stop("hello", 5s);
    expect_gone("hello");
    EXPECT_FALSE(process_exists(pid));
}

TEST_F(ContainerTest, ImageDefaultsRunAndLayersAreStacked) {
    auto options = options_from_image(config_.config);
    options.args = {"/bin/sh", "-c", "cat /www/index.html /www/hello.txt"};
    host_.start("stacked", manifest_, config_, options);
    EXPECT_TRUE(cascade::test::eventually(
        [&] {
            return log_has("stacked", "index of the app") &&
                   log_has("stacked", "hello from the container");
        },
        20s))
        << read_text(host_.log_path("stacked"));
    host_.stop("stacked", 5s);
    expect_gone("stacked");
}

TEST_F(ContainerTest, WritesLandInUpperAndTheLayerCacheIsUntouched) {
    host_.start("writer", manifest_, config_,
                command("echo data > /written.txt; rm /www/hello.txt; echo done; "
                        "exec sleep 1000"));
    ASSERT_TRUE(cascade::test::eventually([&] { return log_has("writer", "done"); }, 20s))
        << read_text(host_.log_path("writer"));
    auto upper = host_.bundle_dir("writer") / "upper";
    EXPECT_EQ(read_text(upper / "written.txt"), "data\n");
    struct stat st {};
    ASSERT_EQ(::lstat((upper / "www/hello.txt").c_str(), &st), 0);
    EXPECT_TRUE(S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0)) << "expected a whiteout";

    auto base_layer = layers_.root() / config_.diff_ids[0].encoded();
    EXPECT_TRUE(stdfs::exists(base_layer / "www/hello.txt"));
    EXPECT_FALSE(stdfs::exists(base_layer / "written.txt"));
    EXPECT_FALSE(stdfs::exists(layers_.root() / config_.diff_ids[1].encoded() / "written.txt"));

    host_.stop("writer", 5s);
    expect_gone("writer");
    // Unpacked layers outlive containers.
    EXPECT_TRUE(stdfs::exists(base_layer / "www/hello.txt"));
}

TEST_F(ContainerTest, HttpServerIsReachableInsideItsNamespace) {
    int pid = host_.start("web", manifest_, config_, command("exec httpd -f -p 8080 -h /www"));
    auto ns = open_netns(pid);
    fs::Fd conn;
    ASSERT_TRUE(cascade::test::eventually(
        [&] {
            conn = connect_in_netns(ns.get(), 8080, 1000ms);
            return bool(conn);
        },
        20s));
    fs::write_all(conn.get(), "GET /index.html HTTP/1.0\r\n\r\n");
    std::string response;
    char buf[4096];
    for (ssize_t n; (n = ::read(conn.get(), buf, sizeof buf)) > 0;)
        response.append(buf, static_cast<size_t>(n));
    EXPECT_NE(response.find(" 200 "), std::string::npos) << response;
    EXPECT_NE(response.find("index of the app"), std::string::npos) << response;
    host_.stop("web", 5s);
    expect_gone("web");
}

TEST_F(ContainerTest, UserIsResolvedInsideTheImage) {
    auto options = command("id -u; id -g; id -G");
    options.user = "app";
    host_.start("user", manifest_, config_, options);
    EXPECT_TRUE(cascade::test::eventually(
        [&] { return read_text(host_.log_path("user")) == "1000\n1000\n1000 50\n"; }, 20s))
        << read_text(host_.log_path("user"));
    host_.stop("user", 5s);
}

TEST_F(ContainerTest, StopLetsATrappingContainerExitCleanly) {
    auto out = dir() / "out";
    stdfs::create_directories(out);
    auto options = command(
        "trap 'echo got-term > /out/term; exit 0' TERM; echo ready; "
        "while true; do sleep 0.05; done");
    options.binds.push_back({out, "/out", false});
    int pid = host_.start("trapper", manifest_, config_, options);
    ASSERT_TRUE(cascade::test::eventually([&] { return log_has("trapper", "ready"); }, 20s));
    EXPECT_EQ(parent_pid_of(pid), ::getpid());  // we are its subreaper
    host_.stop("trapper", 60s);
    EXPECT_EQ(read_text(out / "term"), "got-term\n");
    expect_gone("trapper");
    EXPECT_FALSE(process_exists(pid)) << "the init's zombie was not reaped";
}

TEST_F(ContainerTest, StopKillsAContainerThatIgnoresTheSignalAfterGrace) {
    int pid = host_.start("stubborn", manifest_, config_,
                          command("trap '' TERM; echo ready; while true; do sleep 0.05; done"));
    ASSERT_TRUE(cascade::test::eventually([&] { return log_has("stubborn", "ready"); }, 20s));
    EXPECT_EQ(parent_pid_of(pid), ::getpid());
    // SIGTERM is ignored, so only the SIGKILL after the grace period ends it.
    host_.stop("stubborn", 500ms);
    expect_gone("stubborn");
    EXPECT_FALSE(process_exists(pid)) << "the init's zombie was not reaped";
}

TEST_F(ContainerTest, AContainerThatExitedIsReapedOnRemove) {
    int pid = host_.start("short", manifest_, config_, command("echo bye"));
    ASSERT_TRUE(cascade::test::eventually(
        [&] {
            auto st = runc_.state("short");
            return st && st->status == "stopped";
        },
        20s));
    host_.remove("short", /*keep_log=*/true);
    EXPECT_FALSE(runc_.state("short").has_value());
    EXPECT_FALSE(is_mounted(host_.bundle_dir("short") / "rootfs"));
    EXPECT_EQ(read_text(host_.log_path("short")), "bye\n");
    std::vector<std::string> left;
    for (const auto& e : stdfs::directory_iterator(host_.bundle_dir("short")))
        left.push_back(e.path().filename());
    EXPECT_EQ(left, (std::vector<std::string>{host_.log_path("short").filename()}));
    EXPECT_FALSE(process_exists(pid)) << "the init's zombie was not reaped";

    // Starting the same id again appends to the kept log.
    host_.start("short", manifest_, config_, command("echo again"));
    EXPECT_TRUE(cascade::test::eventually(
        [&] { return read_text(host_.log_path("short")) == "bye\nagain\n"; }, 20s))
        << read_text(host_.log_path("short"));
    host_.stop("short", 5s);
    expect_gone("short");
}

TEST_F(ContainerTest, StopOfAnUnknownContainerIsFine) {
    EXPECT_NO_THROW(host_.stop("never-started", 100ms));
    EXPECT_NO_THROW(host_.remove("never-started"));
}

TEST_F(ContainerTest, AFailedStartLeavesNothingBehind) {
    auto unknown_user = command("true");
    unknown_user.user = "nosuchuser";
    try {
        host_.start("bad-user", manifest_, config_, unknown_user);
        FAIL() << "expected an error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("nosuchuser"), std::string::npos) << e.what();
    }
    expect_gone("bad-user");

    auto missing_binary = command("true");
    missing_binary.args = {"/bin/not-there"};
    try {
        host_.start("bad-exec", manifest_, config_, missing_binary);
        FAIL() << "expected an error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("/bin/not-there"), std::string::npos) << e.what();
    }
    expect_gone("bad-exec");
    EXPECT_TRUE(runc_.list().empty());
}

TEST_F(ContainerTest, IdsAreCheckedAndUnique) {
    EXPECT_THROW(host_.start("../escape", manifest_, config_, command("true")), Error);
    EXPECT_THROW(host_.start("", manifest_, config_, command("true")), Error);
    host_.start("twice", manifest_, config_, command("exec sleep 1000"));
    EXPECT_THROW(host_.start("twice", manifest_, config_, command("true")), Error);
    // The failed second start did not disturb the first.
    auto st = runc_.state("twice");
    ASSERT_TRUE(st.has_value());
    EXPECT_EQ(st->status, "running");
    EXPECT_TRUE(is_mounted(host_.bundle_dir("twice") / "rootfs"));
    host_.stop("twice", 0ms);
    expect_gone("twice");
}

TEST_F(ContainerTest, AnImageWithoutLayersGetsAnEmptyRoot) {
    oci::Manifest empty_manifest;
    oci::ImageConfig empty_config;
    // Nothing to execute inside: the start fails, cleanly.
    EXPECT_THROW(host_.start("empty", empty_manifest, empty_config, command("true")), Error);
    expect_gone("empty");
}

}  // namespace
}  // namespace cascade::runtime
