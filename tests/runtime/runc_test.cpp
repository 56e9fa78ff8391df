#include "runtime/runc.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>

#include "oci/error.hpp"
#include "oci/fs.hpp"
#include "tests/runtime/runtime_support.hpp"

namespace cascade::runtime {
namespace {

using testing::read_text;
namespace stdfs = std::filesystem;
using namespace std::chrono_literals;

class RuncTest : public testing::RuntimeTest {
  protected:
    fs::Fd open_out(const std::string& name) {
        return fs::open_or_throw(dir() / name, O_WRONLY | O_CREAT | O_APPEND, 0644);
    }
};

TEST_F(RuncTest, RunReturnsExitStatusAndSeparatesStreams) {
    Runc runc(runc_root());
    auto bundle = plain_bundle("b", shell("echo to-stdout; echo to-stderr >&2; exit 3"));
    auto out = open_out("out");
    auto err = open_out("err");
    EXPECT_EQ(runc.run("run-status", bundle, out.get(), err.get()), 3);
    EXPECT_EQ(read_text(dir() / "out"), "to-stdout\n");
    EXPECT_EQ(read_text(dir() / "err"), "to-stderr\n");
    // A foreground run deletes its container when it exits.
    EXPECT_FALSE(runc.state("run-status").has_value());
}

TEST_F(RuncTest, RunSucceedsWithZero) {
    Runc runc(runc_root());
    auto bundle = plain_bundle("b", shell("true"));
    auto out = open_out("out");
    EXPECT_EQ(runc.run("run-zero", bundle, out.get(), out.get()), 0);
}

TEST_F(RuncTest, FailureToStartCarriesRuncsMessage) {
    Runc runc(runc_root());
    BundleOptions o;
    o.args = {"/no/such/program"};
    auto bundle = plain_bundle("b", o);
    auto out = open_out("out");
    try {
        runc.run("run-fail", bundle, out.get(), out.get());
        FAIL() << "expected an error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("/no/such/program"), std::string::npos) << e.what();
    }
    try {
        runc.run_detached("detach-fail", bundle, out.get());
        FAIL() << "expected an error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("/no/such/program"), std::string::npos) << e.what();
    }
}

TEST_F(RuncTest, DetachedLifecycle) {
    Runc runc(runc_root());
    // The container waits for a file that `runc exec` creates, so its second
    // line is written after runc run --detach has exited: pass-through stdio.
    auto bundle = plain_bundle(
        "b", shell("echo first; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo second; "
                   "exec sleep 1000"));
    auto log = open_out("log");
    int pid = runc.run_detached("life", bundle, log.get());
    log.reset();
    ASSERT_GT(pid, 0);

    auto st = runc.state("life");
    ASSERT_TRUE(st.has_value());
    EXPECT_EQ(st->id, "life");
    EXPECT_EQ(st->pid, pid);
    EXPECT_EQ(st->status, "running");
    EXPECT_EQ(stdfs::path(st->bundle), bundle);

    auto listed = runc.list();
    ASSERT_EQ(listed.size(), 1u);
    EXPECT_EQ(listed[0].id, "life");
    EXPECT_EQ(listed[0].pid, pid);

    auto exec_out = open_out("exec-out");
    EXPECT_EQ(runc.exec("life", {"/bin/touch", "/tmp/go"}, exec_out.get(), exec_out.get()), 0);
    EXPECT_EQ(runc.exec("life", {"/bin/sh", "-c", "exit 7"}, exec_out.get(), exec_out.get()), 7);
    EXPECT_TRUE(cascade::test::eventually(
        [&] { return read_text(dir() / "log") == "first\nsecond\n"; }, 20s))
        << read_text(dir() / "log");

    runc.kill("life", SIGKILL);
    EXPECT_TRUE(cascade::test::eventually(
        [&] {
            auto s = runc.state("life");
            return s && s->status == "stopped";
        },
        20s));
    runc.remove("life");
    EXPECT_FALSE(runc.state("life").has_value());
    EXPECT_TRUE(runc.list().empty());
}

TEST_F(RuncTest, UnknownContainers) {
    Runc runc(runc_root());
    EXPECT_FALSE(runc.state("nope").has_value());
    EXPECT_NO_THROW(runc.remove("nope"));
    EXPECT_NO_THROW(runc.remove("nope", true));
    EXPECT_TRUE(runc.list().empty());
    try {
        runc.kill("nope", SIGTERM);
        FAIL() << "expected an error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("nope"), std::string::npos);
        EXPECT_NE(std::string(e.what()).find("not exist"), std::string::npos) << e.what();
    }
}

TEST_F(RuncTest, ForceRemoveKillsARunningContainer) {
    Runc runc(runc_root());
    auto bundle = plain_bundle("b", shell("exec sleep 1000"));
    auto log = open_out("log");
    int pid = runc.run_detached("forced", bundle, log.get());
    ASSERT_GT(pid, 0);
    EXPECT_THROW(runc.remove("forced"), Error);  // running: needs force
    runc.remove("forced", true);
    EXPECT_FALSE(runc.state("forced").has_value());
}

TEST_F(RuncTest, MissingBinaryIsAClearError) {
    Runc runc(runc_root(), "/no/such/runc");
    try {
        runc.list();
        FAIL() << "expected an error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("/no/such/runc"), std::string::npos) << e.what();
    }
}

}  // namespace
}  // namespace cascade::runtime
