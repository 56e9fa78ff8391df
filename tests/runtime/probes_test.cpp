// Probes: Kubernetes' threshold bookkeeping (ProbeState) as tables, the
// HEALTHCHECK conversion, and each kind of check against a real busybox
// container in its own network namespace (TCP, HTTP with busybox httpd and a
// CGI, exec with runc exec).
#include "runtime/probes.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "oci/error.hpp"
#include "runtime/netns.hpp"
#include "runtime/runc.hpp"
#include "tests/runtime/runtime_support.hpp"

namespace cascade::runtime {
namespace {

using namespace std::chrono_literals;
using Result = ProbeState::Result;
using Clock = ProbeState::Clock;

ProbeSpec spec_with(int success, int failure, std::chrono::milliseconds delay = 0ms,
                    std::chrono::milliseconds period = 1000ms) {
    ProbeSpec s;
    s.kind = ProbeSpec::Kind::Tcp;
    s.port = 80;
    s.success_threshold = success;
    s.failure_threshold = failure;
    s.initial_delay = delay;
    s.period = period;
    return s;
}

// Each row: thresholds, the checks' results in order, the result after each.
struct Row {
    int success, failure;
    std::string checks;    // 'o' ok, 'x' failed
    std::string expected;  // 'u' Unknown, 's' Success, 'f' Failure
};

TEST(ProbeStateTest, ConsecutiveThresholdsDecideTheResult) {
    const std::vector<Row> rows = {
        {1, 3, "o", "s"},           {1, 3, "xxx", "uuf"},
        {1, 3, "xxoxxx", "uusssf"},  // a success resets the failures,
        {1, 3, "oxxxo", "sssfs"},   {2, 1, "oxoo", "uffs"},
        {3, 2, "ooxooo", "uuuuus"}, {1, 1, "xoxo", "fsfs"},
        {2, 2, "ooxoxx", "ussssf"},
    };
    for (auto& row : rows) {
        auto t0 = Clock::now();
        ProbeState state(spec_with(row.success, row.failure), t0);
        EXPECT_EQ(state.result(), Result::Unknown);
        std::string seen;
        auto now = t0;
        for (char c : row.checks) {
            auto r = state.record(c == 'o', now);
            seen += r == Result::Unknown ? 'u' : r == Result::Success ? 's' : 'f';
            now += 1s;
        }
        EXPECT_EQ(seen, row.expected)
            << "thresholds " << row.success << "/" << row.failure << ", checks " << row.checks;
    }
}

TEST(ProbeStateTest, InitialDelayThenEveryPeriod) {
    auto t0 = Clock::now();
    ProbeState state(spec_with(1, 3, 5s, 2s), t0);
    EXPECT_FALSE(state.due(t0));
    EXPECT_FALSE(state.due(t0 + 4999ms));
    EXPECT_TRUE(state.due(t0 + 5s));
    EXPECT_EQ(state.next_due(), t0 + 5s);
    state.record(false, t0 + 5s + 10ms);
    EXPECT_EQ(state.next_due(), t0 + 7s + 10ms);
    EXPECT_FALSE(state.due(t0 + 7s));
    EXPECT_TRUE(state.due(t0 + 7s + 10ms));
    EXPECT_EQ(state.consecutive_failures(), 1);
}

TEST(ProbeStateTest, AFastPeriodAppliesUntilTheFirstSuccess) {
    auto t0 = Clock::now();
    ProbeState state(spec_with(1, 3, 0ms, 30s), t0, 100ms);
    EXPECT_TRUE(state.due(t0));
    state.record(false, t0);
    EXPECT_EQ(state.next_due(), t0 + 100ms);
    state.record(true, t0 + 100ms);
    EXPECT_EQ(state.result(), Result::Success);
    EXPECT_EQ(state.next_due(), t0 + 100ms + 30s);
    state.record(false, t0 + 200ms);
    EXPECT_EQ(state.next_due(), t0 + 200ms + 30s);
}

TEST(ProbeFromHealthcheckTest, ConvertsDockersFormsAndDefaults) {
    oci::HealthConfig shell;
    shell.test = {"CMD-SHELL", "wget -q -O- localhost:8080/ || exit 1"};
    auto s = probe_from_healthcheck(shell);
    EXPECT_EQ(s.kind, ProbeSpec::Kind::Exec);
    EXPECT_EQ(s.command,
              (std::vector<std::string>{"/bin/sh", "-c", "wget -q -O- localhost:8080/ || exit 1"}));
    EXPECT_EQ(s.period, 30s);
    EXPECT_EQ(s.timeout, 30s);
    EXPECT_EQ(s.initial_delay, 0ms);
    EXPECT_EQ(s.failure_threshold, 3);
    EXPECT_EQ(s.success_threshold, 1);

    oci::HealthConfig cmd;
    cmd.test = {"CMD", "/bin/check", "--fast"};
    cmd.interval_ns = 5'000'000'000;
    cmd.timeout_ns = 2'000'000'000;
    cmd.start_period_ns = 7'000'000'000;
    cmd.retries = 5;
    s = probe_from_healthcheck(cmd);
    EXPECT_EQ(s.kind, ProbeSpec::Kind::Exec);
    EXPECT_EQ(s.command, (std::vector<std::string>{"/bin/check", "--fast"}));
    EXPECT_EQ(s.period, 5s);
    EXPECT_EQ(s.timeout, 2s);
    EXPECT_EQ(s.initial_delay, 7s);
    EXPECT_EQ(s.failure_threshold, 5);

    for (auto test : std::vector<std::vector<std::string>>{{}, {"NONE"}, {"CMD"}, {"BOGUS", "x"}}) {
        oci::HealthConfig h;
        h.test = test;
        EXPECT_FALSE(probe_from_healthcheck(h).set()) << (test.empty() ? "" : test.front());
    }
}

// A busybox container serving /www on 8080 (with a CGI that answers 500)
// in its own network namespace.
class ProbeContainerTest : public testing::RuntimeTest {
  protected:
    void SetUp() override {
        if (geteuid() != 0) GTEST_SKIP() << "needs root (runc)";
        if (!cascade::test::have_program("runc")) GTEST_SKIP() << "runc is not installed";
        runc_ = std::make_unique<Runc>(runc_root());
        auto bundle = dir() / "probed";
        testing::make_busybox_tree(bundle / "rootfs");
        testing::write_text(bundle / "rootfs/www/cgi-bin/fail",
                            "#!/bin/sh\necho 'Status: 500 Internal Server Error'\n"
                            "echo 'Content-Type: text/plain'\necho\necho broken\n");
        ::chmod((bundle / "rootfs/www/cgi-bin/fail").c_str(), 0755);
        write_bundle_config(
            bundle, make_runtime_spec(bundle / "rootfs", shell("exec httpd -f -p 8080 -h /www")));
        auto log = fs::open_or_throw(dir() / "probed.log", O_WRONLY | O_CREAT | O_APPEND, 0644);
        int pid = runc_->run_detached("probed", bundle, log.get());
        netns_ = open_netns(pid);
        target_ = ProbeTarget{netns_.get(), "probed", runc_.get()};
        ASSERT_TRUE(cascade::test::eventually(
            [&] { return bool(connect_in_netns(netns_.get(), 8080, 1000ms)); }, 20s))
            << testing::read_text(dir() / "probed.log");
    }
    void TearDown() override {
        if (runc_) runc_->remove("probed", true);
        RuntimeTest::TearDown();
    }

    static ProbeSpec http(const std::string& path, int expected = 0) {
        ProbeSpec s;
        s.kind = ProbeSpec::Kind::Http;
        s.port = 8080;
        s.path = path;
        s.expected_status = expected;
        s.timeout = 5s;
        return s;
    }
    static ProbeSpec exec(std::vector<std::string> command, std::chrono::milliseconds timeout) {
        ProbeSpec s;
        s.kind = ProbeSpec::Kind::Exec;
        s.command = std::move(command);
        s.timeout = timeout;
        return s;
    }

    std::unique_ptr<Runc> runc_;
    fs::Fd netns_;
    ProbeTarget target_;
};

TEST_F(ProbeContainerTest, TcpSucceedsOnAnOpenPortAndFailsOnAClosedOne) {
    ProbeSpec s;
    s.kind = ProbeSpec::Kind::Tcp;
    s.port = 8080;
    auto open = run_probe(s, target_);
    EXPECT_TRUE(open.ok) << open.message;
    s.port = 8081;
    auto closed = run_probe(s, target_);
    EXPECT_FALSE(closed.ok) << closed.message;
    EXPECT_NE(closed.message.find("8081"), std::string::npos) << closed.message;
    // Only the container's namespace has the server: from the host's, 8080
    // is (almost surely) not ours.
}

TEST_F(ProbeContainerTest, HttpJudgesTheStatus) {
    auto ok = run_probe(http("/hello.txt"), target_);
    EXPECT_TRUE(ok.ok) << ok.message;
    EXPECT_NE(ok.message.find("HTTP 200"), std::string::npos) << ok.message;

    auto error = run_probe(http("/cgi-bin/fail"), target_);
    EXPECT_FALSE(error.ok) << error.message;
    EXPECT_NE(error.message.find("HTTP 500"), std::string::npos) << error.message;

    auto missing = run_probe(http("/missing"), target_);
    EXPECT_FALSE(missing.ok) << missing.message;
    EXPECT_NE(missing.message.find("HTTP 404"), std::string::npos) << missing.message;

    auto expected = run_probe(http("/missing", 404), target_);
    EXPECT_TRUE(expected.ok) << expected.message;
    auto not_expected = run_probe(http("/hello.txt", 204), target_);
    EXPECT_FALSE(not_expected.ok) << not_expected.message;
    EXPECT_NE(not_expected.message.find("expected 204"), std::string::npos) << not_expected.message;

    auto refused = http("/");
    refused.port = 8081;
    auto r = run_probe(refused, target_);
    EXPECT_FALSE(r.ok) << r.message;
    EXPECT_NE(r.message.find(":8081/"), std::string::npos) << r.message;
}

TEST_F(ProbeContainerTest, ExecSucceedsFailsAndTimesOut) {
    auto ok = run_probe(exec({"/bin/sh", "-c", "echo all good"}, 10s), target_);
    EXPECT_TRUE(ok.ok) << ok.message;
    EXPECT_NE(ok.message.find("all good"), std::string::npos) << ok.message;

    auto fail = run_probe(exec({"/bin/sh", "-c", "echo not ready >&2; exit 3"}, 10s), target_);
    EXPECT_FALSE(fail.ok) << fail.message;
    EXPECT_NE(fail.message.find("exit 3"), std::string::npos) << fail.message;
    EXPECT_NE(fail.message.find("not ready"), std::string::npos) << fail.message;

    auto slow = run_probe(exec({"/bin/sleep", "30"}, 500ms), target_);
    EXPECT_FALSE(slow.ok) << slow.message;
    EXPECT_NE(slow.message.find("timed out"), std::string::npos) << slow.message;
    // The sleep was killed, not left behind in the container.
    auto no_sleep = exec({"/bin/sh", "-c",
                          "for f in /proc/[0-9]*/comm; do read c < $f; "
                          "[ \"$c\" = sleep ] && exit 1; done; exit 0"},
                         10s);
    ProbeOutcome sleeping;
    EXPECT_TRUE(cascade::test::eventually(
        [&] {
            sleeping = run_probe(no_sleep, target_);
            return sleeping.ok;
        },
        10s))
        << "the timed-out sleep still runs: " << sleeping.message;

    auto missing = run_probe(exec({"/no/such/binary"}, 10s), target_);
    EXPECT_FALSE(missing.ok) << missing.message;
}

}  // namespace
}  // namespace cascade::runtime
