#include "runtime/cgroups.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "oci/error.hpp"
#include "oci/fs.hpp"
#include "runtime/runc.hpp"
#include "tests/runtime/runtime_support.hpp"

namespace cascade::runtime {
namespace {

using testing::read_text;
namespace stdfs = std::filesystem;
using namespace std::chrono_literals;

constexpr int64_t kMiB = 1024 * 1024;

// ---- linux.resources --------------------------------------------------------

TEST(LinuxResources, EmptyWhenNothingIsSet) {
    for (auto mode : {CgroupMode::V1, CgroupMode::Hybrid, CgroupMode::Unified})
        EXPECT_EQ(linux_resources(Resources{}, mode), nlohmann::json::object()) << to_string(mode);
}

TEST(LinuxResources, AllLimitsV1) {
    Resources r;
    r.memory_bytes = 64 * kMiB;
    r.cpu_millis = 1500;
    r.cpu_request_millis = 250;
    r.pids = 100;
    for (auto mode : {CgroupMode::V1, CgroupMode::Hybrid}) {
        auto j = linux_resources(r, mode);
        EXPECT_EQ(j["memory"]["limit"], 64 * kMiB);
        // No swap beyond the limit when the kernel accounts swap.
        if (::access("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes", F_OK) == 0) {
            EXPECT_EQ(j["memory"]["swap"], 64 * kMiB);
        } else {
            EXPECT_FALSE(j["memory"].contains("swap"));
        }
        EXPECT_EQ(j["cpu"]["quota"], 150000);
        EXPECT_EQ(j["cpu"]["period"], 100000);
        EXPECT_EQ(j["cpu"]["shares"], 256);
        EXPECT_EQ(j["pids"]["limit"], 100);
    }
}

TEST(LinuxResources, AllLimitsUnified) {
    Resources r;
    r.memory_bytes = 6 * kMiB;
    r.cpu_millis = 10;
    r.cpu_request_millis = 1;  // below the minimum share: 2
    r.pids = 1;
    auto j = linux_resources(r, CgroupMode::Unified);
    EXPECT_EQ(j["memory"]["limit"], 6 * kMiB);
    EXPECT_EQ(j["memory"]["swap"], 6 * kMiB);  // runc: memory.swap.max = 0
    EXPECT_EQ(j["cpu"]["quota"], 1000);
    EXPECT_EQ(j["cpu"]["period"], 100000);
    EXPECT_EQ(j["cpu"]["shares"], 2);
    EXPECT_EQ(j["pids"]["limit"], 1);
}

TEST(LinuxResources, OnlyWhatIsSet) {
    Resources r;
    r.cpu_request_millis = 300000;  // clamped to the kernel's maximum share
    auto j = linux_resources(r, CgroupMode::Unified);
    EXPECT_FALSE(j.contains("memory"));
    EXPECT_FALSE(j.contains("pids"));
    EXPECT_FALSE(j["cpu"].contains("quota"));
    EXPECT_EQ(j["cpu"]["shares"], 262144);
}

TEST(LinuxResources, RefusesNegativeAndTooSmall) {
    auto refused = [](Resources r, const std::string& words) {
        try {
            linux_resources(r, CgroupMode::V1);
            ADD_FAILURE() << "expected an error mentioning " << words;
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
        }
    };
    Resources r;
    r.memory_bytes = 6 * kMiB - 1;
    refused(r, "below the minimum of 6 MiB");
    r = {};
    r.memory_bytes = -1;
    refused(r, "negative");
    r = {};
    r.cpu_millis = -5;
    refused(r, "negative");
    r = {};
    r.cpu_millis = 5;
    refused(r, "below the minimum of 10m");
    r = {};
    r.cpu_request_millis = -1;
    refused(r, "negative");
    r = {};
    r.pids = -1;
    refused(r, "negative");
}

TEST(LinuxResources, ModeAndPaths) {
    // This is decided by the kernel; both answers are valid, but they must
    // agree with what is mounted.
    auto mode = host_cgroup_mode();
    if (mode == CgroupMode::Unified) {
        EXPECT_TRUE(stdfs::exists("/sys/fs/cgroup/cgroup.controllers"));
    } else {
        EXPECT_TRUE(stdfs::exists("/sys/fs/cgroup/memory/memory.limit_in_bytes"));
    }
    EXPECT_EQ(mode == CgroupMode::Hybrid,
              stdfs::exists("/sys/fs/cgroup/unified/cgroup.controllers") &&
                  !stdfs::exists("/sys/fs/cgroup/cgroup.controllers"));
    EXPECT_EQ(cgroups_path_for("web-1-abc"), "/cascade/web-1-abc");
    if (mode != CgroupMode::Unified) {
        EXPECT_EQ(cgroup_dir("/cascade/x", mode, "memory"), "/sys/fs/cgroup/memory/cascade/x");
    }
    EXPECT_FALSE(read_cgroup_stats("/cascade/no-such-container-here", mode).has_value());
    EXPECT_THROW(read_cgroup_stats("/cascade/../x", mode), Error);
}

// ---- real containers ----------------------------------------------------------

// Containers under runc with limits; the test process is a child subreaper so
// a detached container's init is its child and its exit status can be read.
class CgroupContainerTest : public testing::RuntimeTest {
  protected:
    void SetUp() override { ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0); }
    void TearDown() override {
        RuntimeTest::TearDown();
        ::prctl(PR_SET_CHILD_SUBREAPER, 0);
        // Every container's cgroup went with `runc delete`.
        for (const auto& id : ids_)
            expect_no_cgroup(id);
    }

    std::string id(const std::string& name) {
        auto id = name + "-" + fs::random_hex(8);
        ids_.push_back(id);
        return id;
    }

    BundleOptions limited(const std::string& id, const std::vector<std::string>& args,
                          const Resources& r) {
        BundleOptions o;
        o.args = args;
        o.env = {"PATH=/bin"};
        o.resources = r;
        o.cgroups_path = cgroups_path_for(id);
        return o;
    }

    // Every hierarchy the container could have a cgroup in.
    static std::vector<std::string> cgroup_dirs(const std::string& id) {
        auto mode = host_cgroup_mode();
        auto path = cgroups_path_for(id);
        if (mode == CgroupMode::Unified) return {cgroup_dir(path, mode, "")};
        std::vector<std::string> dirs;
        for (const char* c : {"memory", "pids", "cpu", "cpuacct", "cpuset", "devices", "freezer",
                              "blkio", "unified"})
            dirs.push_back(cgroup_dir(path, mode, c));
        return dirs;
    }

    static void expect_no_cgroup(const std::string& id) {
        for (const auto& d : cgroup_dirs(id))
            EXPECT_FALSE(stdfs::exists(d)) << d << " is left";
    }

    int run_foreground(const std::string& id, const BundleOptions& o, std::string& output) {
        auto bundle = plain_bundle(id, o);
        auto out = fs::open_or_throw(dir() / (id + ".out"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int status = runc_.run(id, bundle, out.get(), out.get());
        output = read_text(dir() / (id + ".out"));
        return status;
    }

    int start_detached(const std::string& id, const BundleOptions& o) {
        auto bundle = plain_bundle(id, o);
        auto log = fs::open_or_throw(dir() / (id + ".log"), O_WRONLY | O_CREAT | O_APPEND, 0644);
        return runc_.run_detached(id, bundle, log.get());
    }

    // Waits for our child `pid` (the container's init) to end: its wait status.
    static int wait_child(int pid) {
        int status = 0;
        while (::waitpid(pid, &status, 0) < 0)
            if (errno != EINTR) return -1;
        return status;
    }

    Runc runc_{runc_root()};
    std::vector<std::string> ids_;
};

TEST_F(CgroupContainerTest, MemoryLimitOomKillsAnAllocation) {
    Resources r;
    r.memory_bytes = 32 * kMiB;
    auto cid = id("oom");
    // dd reads /dev/zero into one 64 MiB buffer: every page of it is touched.
    int pid = start_detached(
        cid,
        limited(cid, {"/bin/busybox", "dd", "bs=64M", "count=1", "if=/dev/zero", "of=/dev/null"},
                r));
    int status = wait_child(pid);
    ASSERT_TRUE(WIFSIGNALED(status)) << "dd exited normally with " << WEXITSTATUS(status) << ": "
                                     << read_text(dir() / (cid + ".log"));
    EXPECT_EQ(WTERMSIG(status), SIGKILL);  // exit status 137
    // The cgroup stays until `runc delete`: the kernel recorded the OOM kill.
    auto stats = read_cgroup_stats(cgroups_path_for(cid), host_cgroup_mode());
    ASSERT_TRUE(stats.has_value());
    EXPECT_TRUE(stats->oom_killed);
    EXPECT_EQ(stats->memory_limit, 32 * kMiB);
    runc_.remove(cid, true);
    expect_no_cgroup(cid);
    EXPECT_FALSE(read_cgroup_stats(cgroups_path_for(cid), host_cgroup_mode()).has_value());
}

TEST_F(CgroupContainerTest, WithoutALimitTheSameAllocationSucceeds) {
    auto cid = id("no-oom");
    std::string out;
    EXPECT_EQ(run_foreground(cid,
                             limited(cid,
                                     {"/bin/busybox", "dd", "bs=64M", "count=1", "if=/dev/zero",
                                      "of=/dev/null"},
                                     Resources{}),
                             out),
              0)
        << out;
}

TEST_F(CgroupContainerTest, PidsLimitStopsAForkLoop) {
    Resources r;
    r.pids = 16;
    auto cid = id("pids");
    std::string out;
    int status = run_foreground(
        cid,
        limited(cid,
                {"/bin/sh", "-c",
                 "i=0; while [ $i -lt 40 ]; do sleep 60 & i=$((i+1)); done; echo started-all"},
                r),
        out);
    EXPECT_NE(out.find("can't fork"), std::string::npos) << "status " << status << ": " << out;
}

TEST_F(CgroupContainerTest, LimitsAreWrittenToTheCgroupAndReadBack) {
    Resources r;
    r.memory_bytes = 48 * kMiB;
    r.cpu_millis = 250;
    r.cpu_request_millis = 500;
    r.pids = 20;
    auto cid = id("limits");
    int pid = start_detached(cid, limited(cid, {"/bin/sh", "-c", "sleep 1000"}, r));
    ASSERT_GT(pid, 0);
    auto mode = host_cgroup_mode();
    auto path = cgroups_path_for(cid);
    if (mode == CgroupMode::Unified) {
        auto d = cgroup_dir(path, mode, "");
        EXPECT_EQ(read_text(d + "/cpu.max"), "25000 100000\n");
        EXPECT_EQ(read_text(d + "/pids.max"), "20\n");
        EXPECT_EQ(read_text(d + "/memory.max"), std::to_string(48 * kMiB) + "\n");
    } else {
        auto cpu = cgroup_dir(path, mode, "cpu");
        EXPECT_EQ(read_text(cpu + "/cpu.cfs_quota_us"), "25000\n");
        EXPECT_EQ(read_text(cpu + "/cpu.cfs_period_us"), "100000\n");
        EXPECT_EQ(read_text(cpu + "/cpu.shares"), "512\n");
        EXPECT_EQ(read_text(cgroup_dir(path, mode, "pids") + "/pids.max"), "20\n");
        EXPECT_EQ(read_text(cgroup_dir(path, mode, "memory") + "/memory.limit_in_bytes"),
                  std::to_string(48 * kMiB) + "\n");
    }
    auto stats = read_cgroup_stats(path, mode);
    ASSERT_TRUE(stats.has_value());
    EXPECT_EQ(stats->memory_limit, 48 * kMiB);
    EXPECT_GT(stats->memory_bytes, 0);
    EXPECT_GE(stats->pids, 1);  // sleep (sh exec()s it)
    EXPECT_GT(stats->cpu_usage_ns, 0);
    EXPECT_FALSE(stats->oom_killed);

    runc_.kill(cid, SIGKILL);
    wait_child(pid);
    // Stopped but not deleted: the cgroup is still there.
    EXPECT_TRUE(read_cgroup_stats(path, mode).has_value());
    runc_.remove(cid, true);
    expect_no_cgroup(cid);
}

}  // namespace
}  // namespace cascade::runtime
