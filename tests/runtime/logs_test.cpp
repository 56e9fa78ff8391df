#include "runtime/logs.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "oci/error.hpp"
#include "oci/layer.hpp"
#include "registry/blob_store.hpp"
#include "runtime/container.hpp"
#include "tests/runtime/runtime_support.hpp"

namespace cascade::runtime {
namespace {

using testing::process_exists;
using testing::read_text;
using testing::write_text;
namespace stdfs = std::filesystem;
using namespace std::chrono_literals;

std::string part(const stdfs::path& log, int n) {
    return log.string() + "." + std::to_string(n);
}

void write_line(int fd, const std::string& line) {
    fs::write_all(fd, line, "log pipe");
}

// A line of exactly `width` bytes (newline included): "<tag>-xxxx…\n".
std::string padded(const std::string& tag, size_t width) {
    std::string s = tag + "-";
    s.resize(width - 1, 'x');
    return s + "\n";
}

// State letter of a process ('Z' zombie), 0 when it does not exist.
char process_state(int pid) {
    auto stat = read_text("/proc/" + std::to_string(pid) + "/stat");
    auto close = stat.rfind(')');
    if (close == std::string::npos || close + 2 >= stat.size()) return 0;
    return stat[close + 2];
}

// A shim writing to <tmp>/app.log; the test writes to its pipe.
class LogShimTest : public testing::RuntimeTest {
  protected:
    void start(LogRotation rotation) { pipe_ = start_log_shim(log_, rotation, &pid_); }

    // Closes the pipe and waits for the shim to write the rest and exit.
    void finish() {
        pipe_.reset();
        ASSERT_TRUE(wait_log_shim(pid_, log_, 20s)) << "the shim did not exit on EOF";
        EXPECT_FALSE(process_exists(pid_)) << "the shim was not reaped";
    }

    void TearDown() override {
        if (pipe_) finish();
        RuntimeTest::TearDown();
    }

    stdfs::path log_ = dir() / "app.log";
    fs::Fd pipe_;
    int pid_ = 0;
};

TEST_F(LogShimTest, RotatesAtLineBoundariesAndKeepsMaxFiles) {
    start({.max_bytes = 100, .max_files = 3});
    EXPECT_TRUE(stdfs::exists(log_)) << "the log is created at start";
    std::string all;
    for (int i = 0; i < 10; i++) {
        auto line = padded("line" + std::to_string(i), 30);
        write_line(pipe_.get(), line);
        all += line;
    }
    finish();
    // Three 30-byte lines fit in 100 bytes, a fourth would not: lines 0-2 went
    // to a file rotated out of existence, 3-5 → .2, 6-8 → .1, 9 is current.
    EXPECT_EQ(log_files(log_), (std::vector<stdfs::path>{part(log_, 2), part(log_, 1), log_}));
    EXPECT_FALSE(stdfs::exists(part(log_, 3)));
    EXPECT_EQ(read_text(part(log_, 2)), all.substr(90, 90));
    EXPECT_EQ(read_text(part(log_, 1)), all.substr(180, 90));
    EXPECT_EQ(read_text(log_), all.substr(270));
    EXPECT_EQ(read_log(log_), all.substr(90));
}

TEST_F(LogShimTest, AFileMayBeExactlyMaxBytes) {
    start({.max_bytes = 60, .max_files = 2});
    write_line(pipe_.get(), padded("a", 30));
    write_line(pipe_.get(), padded("b", 30));
    write_line(pipe_.get(), padded("c", 30));
    finish();
    EXPECT_EQ(read_text(part(log_, 1)), padded("a", 30) + padded("b", 30));
    EXPECT_EQ(read_text(log_), padded("c", 30));
}

TEST_F(LogShimTest, ALineLongerThanMaxBytesIsSplit) {
    start({.max_bytes = 10, .max_files = 5});
    write_line(pipe_.get(), "abc\n");
    write_line(pipe_.get(), std::string(25, 'x') + "\n");
    finish();
    EXPECT_EQ(log_files(log_),
              (std::vector<stdfs::path>{part(log_, 3), part(log_, 2), part(log_, 1), log_}));
    EXPECT_EQ(read_text(part(log_, 3)), "abc\n");
    EXPECT_EQ(read_text(part(log_, 2)), std::string(10, 'x'));
    EXPECT_EQ(read_text(part(log_, 1)), std::string(10, 'x'));
    EXPECT_EQ(read_text(log_), "xxxxx\n");
}

TEST_F(LogShimTest, OneFileMeansNoRotatedParts) {
    start({.max_bytes = 20, .max_files = 1});
    write_line(pipe_.get(), padded("a", 15));
    write_line(pipe_.get(), padded("b", 15));
    finish();
    EXPECT_EQ(log_files(log_), std::vector<stdfs::path>{log_});
    EXPECT_EQ(read_text(log_), padded("b", 15));
}

TEST_F(LogShimTest, AnExistingLogIsAppendedToAndCounts) {
    write_text(log_, padded("old", 90));
    write_text(part(log_, 5), "left over from a larger maxFiles\n");
    start({.max_bytes = 100, .max_files = 2});
    write_line(pipe_.get(), padded("new", 20));
    finish();
    EXPECT_EQ(read_text(part(log_, 1)), padded("old", 90));
    EXPECT_EQ(read_text(log_), padded("new", 20));
    EXPECT_FALSE(stdfs::exists(part(log_, 5)));
}

TEST_F(LogShimTest, AnUnfinishedLineIsWrittenAfterAWhile) {
    start({});
    write_line(pipe_.get(), "prompt> ");
    EXPECT_TRUE(cascade::test::eventually([&] { return read_text(log_) == "prompt> "; }, 20s))
        << read_text(log_);
    write_line(pipe_.get(), "answer\n");
    finish();
    EXPECT_EQ(read_text(log_), "prompt> answer\n");
}

TEST_F(LogShimTest, TheShimHoldsNoOtherFdAndRunsInItsOwnSession) {
    start({});
    const auto proc = "/proc/" + std::to_string(pid_);
    // Signals that come before the shim has set itself up are held back.
    ::kill(pid_, SIGTERM);
    ASSERT_TRUE(cascade::test::eventually(
        [&] { return read_text(proc + "/comm") == "cascade-logshim\n"; }, 20s));
    std::set<std::string> fds;
    for (const auto& e : stdfs::directory_iterator("/proc/" + std::to_string(pid_) + "/fd"))
        fds.insert(e.path().filename());
    // stdin (the pipe), stdout and stderr (/dev/null), the log.
    EXPECT_EQ(fds.size(), 4u);
    EXPECT_EQ(stdfs::read_symlink("/proc/" + std::to_string(pid_) + "/fd/1"), "/dev/null");
    EXPECT_EQ(::getsid(pid_), pid_);
    EXPECT_EQ(::getpgid(pid_), pid_);
    EXPECT_EQ(read_text("/proc/" + std::to_string(pid_) + "/cmdline"),
              std::string("cascade-log-shim\0", 17) + log_.string() + '\0');
    // A stop signal is not how a shim ends: only EOF is.
    ::kill(pid_, SIGTERM);
    write_line(pipe_.get(), "still here\n");
    EXPECT_TRUE(cascade::test::eventually([&] { return read_text(log_) == "still here\n"; }, 20s));
    finish();
}

TEST_F(LogShimTest, InvalidRotationIsRefused) {
    EXPECT_THROW(start_log_shim(log_, {.max_bytes = 0, .max_files = 3}), Error);
    EXPECT_THROW(start_log_shim(log_, {.max_bytes = 10, .max_files = 0}), Error);
    EXPECT_THROW(start_log_shim(dir() / "missing/dir/app.log", {}), Error);
}

// Sets an environment variable for the scope.
struct ScopedEnv {
    ScopedEnv(const char* name, const std::string& value) : name_(name) {
        ::setenv(name, value.c_str(), 1);
    }
    ~ScopedEnv() { ::unsetenv(name_); }
    const char* name_;
};

TEST_F(LogShimTest, TheShimIsItsOwnSmallExecutable) {
    start({});
    const auto exe = stdfs::read_symlink("/proc/" + std::to_string(pid_) + "/exe");
    EXPECT_EQ(exe.filename(), "cascade-log-shim");
    EXPECT_NE(exe, stdfs::read_symlink("/proc/self/exe"));
    write_line(pipe_.get(), "from the small shim\n");
    finish();
    EXPECT_EQ(read_text(log_), "from the small shim\n");
}

TEST_F(LogShimTest, TheShimExecutableCanBeChosen) {
    {
        ScopedEnv env("CASCADE_LOG_SHIM_PATH", (dir() / "no-such-shim").string());
        try {
            start_log_shim(log_, {});
            ADD_FAILURE() << "a missing shim executable was accepted";
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find("CASCADE_LOG_SHIM_PATH"), std::string::npos)
                << e.what();
        }
    }
    // The running binary can be the shim too (its constructor runs it).
    ScopedEnv env("CASCADE_LOG_SHIM_PATH", "/proc/self/exe");
    start({.max_bytes = 16, .max_files = 2});
    EXPECT_EQ(stdfs::read_symlink("/proc/" + std::to_string(pid_) + "/exe"),
              stdfs::read_symlink("/proc/self/exe"));
    write_line(pipe_.get(), "0123456789\nabcdefghij\n");
    finish();
    EXPECT_EQ(read_text(part(log_, 1)), "0123456789\n");
    EXPECT_EQ(read_text(log_), "abcdefghij\n");
}

TEST(ReadLogTest, PartsOldestFirstAndTail) {
    fs::TempDir tmp;
    auto log = tmp.path() / "c.log";
    EXPECT_EQ(read_log(log), "");
    EXPECT_EQ(read_log(log, 3), "");
    write_text(part(log, 2), "one\ntwo\n");
    write_text(part(log, 1), "three\nfour\n");
    write_text(log, "five\nsix");
    write_text(tmp.path() / "c.log.x", "not a part\n");
    write_text(tmp.path() / "other.log", "not a part\n");
    EXPECT_EQ(read_log(log), "one\ntwo\nthree\nfour\nfive\nsix");
    EXPECT_EQ(read_log(log, 0), "");
    EXPECT_EQ(read_log(log, 1), "six");
    EXPECT_EQ(read_log(log, 2), "five\nsix");
    EXPECT_EQ(read_log(log, 4), "three\nfour\nfive\nsix");
    EXPECT_EQ(read_log(log, 5), "two\nthree\nfour\nfive\nsix");
    EXPECT_EQ(read_log(log, 100), "one\ntwo\nthree\nfour\nfive\nsix");
    write_text(log, "five\nsix\n");
    EXPECT_EQ(read_log(log, 2), "five\nsix\n");
    EXPECT_TRUE(is_log_file_name(log, "c.log.12"));
    EXPECT_FALSE(is_log_file_name(log, "c.log.x"));
    EXPECT_FALSE(is_log_file_name(log, "c.log."));
    remove_log(log);
    EXPECT_TRUE(log_files(log).empty());
    EXPECT_TRUE(stdfs::exists(tmp.path() / "c.log.x"));
    EXPECT_TRUE(stdfs::exists(tmp.path() / "other.log"));
}

// A writer thread writes numbered lines through a shim that rotates every
// ~200 bytes while the test follows: every line arrives exactly once and in
// order. The writer stays at most ~300 bytes ahead of the follower, so no
// unread part is rotated away (max_files 4), but rotations happen between
// and during reads.
TEST_F(LogShimTest, AFollowerSeesEveryByteOnceAcrossRotations) {
    start({.max_bytes = 200, .max_files = 4});
    LogFollower follower(log_);
    constexpr int kLines = 3000, kBatch = 25;
    std::string expected;
    for (int i = 0; i < kLines; i++) {
        char line[32];
        std::snprintf(line, sizeof line, "line-%06d\n", i);
        expected += line;
    }
    std::atomic<size_t> seen{0};
    std::atomic<bool> abort{false};
    std::thread writer([&] {
        for (int i = 0; i < kLines && !abort; i++) {
            if (i % kBatch == 0)
                while (seen < static_cast<size_t>(i) * 12 && !abort)
                    std::this_thread::sleep_for(1ms);
            write_line(pipe_.get(), expected.substr(static_cast<size_t>(i) * 12, 12));
        }
    });
    std::string got;
    auto deadline = std::chrono::steady_clock::now() + 120s;
    while (got.size() < expected.size() && std::chrono::steady_clock::now() < deadline) {
        got += follower.read_new();
        seen = got.size();
        if (got.size() < expected.size()) std::this_thread::sleep_for(200us);
    }
    abort = true;
    writer.join();
    finish();
    got += follower.read_new();
    ASSERT_EQ(got.size(), expected.size());
    EXPECT_TRUE(got == expected) << "lines lost, repeated or out of order";
    EXPECT_GT(stdfs::file_size(part(log_, 3)), 0u) << "expected many rotations";
    EXPECT_EQ(follower.read_new(), "");

    // From the start: the whole log kept, then what follows.
    LogFollower from_start(log_, true);
    EXPECT_EQ(from_start.read_new(), read_log(log_));
    EXPECT_EQ(from_start.read_new(), "");
    LogFollower tail(log_, true, 2);
    EXPECT_EQ(tail.read_new(), expected.substr(expected.size() - 24));
}

TEST(LogFollowerTest, FollowsALogThatDoesNotExistYet) {
    fs::TempDir tmp;
    auto log = tmp.path() / "c.log";
    LogFollower follower(log);
    EXPECT_EQ(follower.read_new(), "");
    write_text(log, "first\n");
    EXPECT_EQ(follower.read_new(), "first\n");
    {
        std::ofstream out(log, std::ios::app);
        out << "second\n";
    }
    EXPECT_EQ(follower.read_new(), "second\n");
    // A rotation by hand: rename, more into the old file, a new file.
    stdfs::rename(log, part(log, 1));
    {
        std::ofstream out(part(log, 1), std::ios::app);
        out << "late\n";
    }
    EXPECT_EQ(follower.read_new(), "late\n");
    write_text(log, "third\n");
    EXPECT_EQ(follower.read_new(), "third\n");
    LogFollower at_end(log);
    EXPECT_EQ(at_end.read_new(), "");
}

// Containers with the shim: a busybox image in a real blob store and a
// ContainerHost with a small rotation. The test process is a child
// subreaper, as the daemon is.
class ContainerLogTest : public testing::RuntimeTest {
  protected:
    void SetUp() override {
        ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
        testing::make_busybox_tree(dir() / "base");
        auto tar = dir() / "base.tar.gz";
        auto written = oci::write_layer(dir() / "base", tar);
        blobs_.put_file(tar, written.digest);
        oci::Descriptor d;
        d.media_type = written.media_type;
        d.digest = written.digest;
        d.size = written.size;
        manifest_.layers.push_back(d);
        config_.diff_ids.push_back(written.diff_id);
        config_.config.env = {"PATH=/bin"};
    }

    void TearDown() override {
        RuntimeTest::TearDown();
        ::prctl(PR_SET_CHILD_SUBREAPER, 0);
    }

    BundleOptions command(const std::string& script) {
        return options_from_image(config_.config, {"/bin/sh", "-c", script});
    }

    int shim_pid(const std::string& id) {
        return std::stoi(read_text(host_.bundle_dir(id) / "shim.pid"));
    }

    bool stopped(const std::string& id) {
        auto st = runc_.state(id);
        return st && st->status == "stopped";
    }

    registry::BlobStore blobs_{dir() / "store"};
    LayerCache layers_{dir() / "layers", blobs_};
    Runc runc_{runc_root()};
    ContainerHost host_{dir() / "containers", layers_, runc_, {.max_bytes = 2048, .max_files = 3}};
    oci::Manifest manifest_;
    oci::ImageConfig config_;
};

TEST_F(ContainerLogTest, AContainerWritingMuchStaysWithinBounds) {
    constexpr int kLines = 3000;
    std::string expected;
    for (int i = 0; i < kLines; i++)
        expected += "line-" + std::to_string(i) + (i % 2 ? "\n" : " (stderr)\n");
    ASSERT_GT(expected.size(), 2048u * 3 * 3);
    host_.start("chatty", manifest_, config_,
                command("i=0; while [ $i -lt " + std::to_string(kLines) +
                        " ]; do if [ $((i % 2)) = 1 ]; then echo line-$i; "
                        "else echo \"line-$i (stderr)\" >&2; fi; i=$((i+1)); done"));
    const int shim = shim_pid("chatty");
    EXPECT_TRUE(process_exists(shim));
    ASSERT_TRUE(cascade::test::eventually([&] { return stopped("chatty"); }, 60s));
    // The container is gone: the shim reads EOF and exits (a zombie until
    // remove() reaps it).
    EXPECT_TRUE(cascade::test::eventually(
        [&] { return process_state(shim) == 'Z' || process_state(shim) == 0; }, 20s));
    host_.remove("chatty", /*keep_log=*/true);
    EXPECT_FALSE(process_exists(shim)) << "the shim is left after remove";

    auto log = host_.log_path("chatty");
    EXPECT_EQ(log_files(log), (std::vector<stdfs::path>{part(log, 2), part(log, 1), log}));
    for (const auto& f : log_files(log))
        EXPECT_LE(stdfs::file_size(f), 2048u) << f;
    // What is kept is the newest output, from a line start on, in order.
    auto kept = read_log(log);
    ASSERT_GT(kept.size(), 2048u * 2);
    ASSERT_LT(kept.size(), expected.size());
    auto from = expected.size() - kept.size();
    EXPECT_EQ(expected[from - 1], '\n');
    EXPECT_TRUE(kept == expected.substr(from)) << kept.substr(0, 200);
    EXPECT_EQ(read_log(log, 1), "line-2999\n");

    host_.remove("chatty");
    EXPECT_FALSE(stdfs::exists(host_.bundle_dir("chatty")));
}

TEST_F(ContainerLogTest, KeptRotatedPartsAreReusedAndRemoved) {
    host_.start("again", manifest_, config_,
                command("i=0; while [ $i -lt 500 ]; do echo line-$i; i=$((i+1)); done"));
    ASSERT_TRUE(cascade::test::eventually([&] { return stopped("again"); }, 60s));
    host_.remove("again", /*keep_log=*/true);
    auto log = host_.log_path("again");
    ASSERT_EQ(log_files(log).size(), 3u);
    host_.start("again", manifest_, config_, command("echo second-run"));
    ASSERT_TRUE(cascade::test::eventually([&] { return stopped("again"); }, 60s));
    host_.remove("again", /*keep_log=*/true);
    EXPECT_EQ(read_log(log, 2), "line-499\nsecond-run\n");
    host_.remove("again");
    EXPECT_FALSE(stdfs::exists(host_.bundle_dir("again")));
}

// The process that started the container (the daemon) dies by SIGKILL to
// its whole process group: the shim, in its own session, survives, and the
// container goes on logging through it.
TEST_F(ContainerLogTest, TheShimSurvivesItsStarterAndTheContainerKeepsLogging) {
    // Unpacked here, so the child only starts runc.
    layers_.unpack_image(manifest_, config_);
    int report[2];
    ASSERT_EQ(::pipe2(report, O_CLOEXEC), 0);
    fs::Fd report_r(report[0]), report_w(report[1]);
    pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        ::setpgid(0, 0);
        std::string msg;
        try {
            host_.start("survivor", manifest_, config_,
                        command("i=0; while true; do echo tick-$i; i=$((i+1)); sleep 0.05; done"));
            msg = std::to_string(shim_pid("survivor")) + "\n";
        } catch (const std::exception& e) {
            msg = std::string("error: ") + e.what() + "\n";
        }
        fs::write_all(report_w.get(), msg);
        while (true)
            ::pause();
    }
    report_w.reset();
    ::setpgid(child, child);
    std::string msg;
    char c;
    while (::read(report_r.get(), &c, 1) == 1 && c != '\n')
        msg += c;
    ::kill(-child, SIGKILL);
    ::waitpid(child, nullptr, 0);
    ASSERT_TRUE(!msg.empty() && std::isdigit(static_cast<unsigned char>(msg[0]))) << msg;
    const int shim = std::stoi(msg);

    auto log = host_.log_path("survivor");
    ASSERT_TRUE(cascade::test::eventually([&] { return !read_log(log).empty(); }, 20s));
    EXPECT_TRUE(process_exists(shim));
    EXPECT_NE(process_state(shim), 'Z');
    EXPECT_EQ(::getsid(shim), shim);
    auto before = read_log(log).size();
    EXPECT_TRUE(cascade::test::eventually([&] { return read_log(log).size() > before + 100; }, 30s))
        << "the container stopped logging after its starter died";
    EXPECT_TRUE(runc_.state("survivor").has_value());

    // The shim was reparented to us (a subreaper); stop waits for and reaps it.
    host_.stop("survivor", 2s);
    EXPECT_FALSE(process_exists(shim)) << "no shim may remain once its container is gone";
    EXPECT_FALSE(stdfs::exists(host_.bundle_dir("survivor")));
}

}  // namespace
}  // namespace cascade::runtime
