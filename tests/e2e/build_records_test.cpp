// Build records through the real binary: `cascade logs build/NAME-N -f`
// follows a running build to its end, `cascade cancel-build` stops it (its
// RUN container killed), and `describe build` shows the steps' timings.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <future>

#include "daemon_fixture.hpp"
#include "oci/fs.hpp"
#include "support.hpp"

using nlohmann::json;
using namespace cascade;
using namespace std::chrono_literals;

namespace {

class BuildRecords : public test::DaemonTest {
  protected:
    BuildRecords() : DaemonTest("cascade-records-") {}
    void TearDown() override {
        daemon.reset();
        EXPECT_TRUE(test::mounts_under(tmp.path()).empty());
        DaemonTest::TearDown();
    }

    void apply(const std::string& name, const std::string& run) {
        json obj = {
            {"apiVersion", "build.openshift.io/v1"},
            {"kind", "BuildConfig"},
            {"metadata", {{"name", name}}},
            {"spec",
             {{"source",
               {{"contextDir", context.string()},
                {"dockerfile", "FROM scratch\nCOPY busybox /bin/busybox\nRUN " + run + "\n"}}},
              {"strategy", {{"type", "Docker"}}},
              {"output", {{"to", {{"kind", "ImageStreamTag"}, {"name", name + ":latest"}}}}},
              {"triggers",
               json::array({{{"type", "ConfigChange"}},
                            {{"type", "Generic"}, {"generic", {{"secret", "hook-secret"}}}}})}}}};
        auto file = tmp.path() / (name + ".json");
        fs::write_file_atomic(file, obj.dump());
        auto r = daemon->cli({"apply", "-f", file.string()});
        ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    }

    json build(const std::string& name) {
        auto r = daemon->cli({"get", "build/" + name, "-o", "json"});
        if (r.exit_code != 0) return json::object();
        return json::parse(r.out);
    }
    std::string phase(const std::string& name) {
        return build(name).value("/status/phase"_json_pointer, std::string());
    }
};

TEST_F(BuildRecords, LogsFollowARunningBuildUntilCancelBuildStopsIt) {
    apply("slow", R"(["/bin/busybox", "sh", "-c", "echo tick-tock; /bin/busybox sleep 600"])");
    ASSERT_TRUE(test::eventually([&] { return phase("slow-1") == "Running"; }, 120s))
        << phase("slow-1");
    auto follow = std::async(std::launch::async, [&] {
        return daemon->cli({"logs", "build/slow-1", "-f"}, 300s);
    });
    // The container runs: its output is in the log.
    ASSERT_TRUE(test::eventually(
        [&] {
            auto r = daemon->cli({"logs", "build/slow-1"});
            return r.out.find("tick-tock") != std::string::npos;
        },
        120s));
    EXPECT_NE(follow.wait_for(1s), std::future_status::ready) << "logs -f ended while running";

    auto cancel = daemon->cli({"cancel-build", "slow-1"});
    ASSERT_EQ(cancel.exit_code, 0) << cancel.out << cancel.err;
    EXPECT_NE(cancel.out.find("build/slow-1 cancelled"), std::string::npos) << cancel.out;

    ASSERT_EQ(follow.wait_for(120s), std::future_status::ready) << "logs -f did not end";
    auto followed = follow.get();
    EXPECT_EQ(followed.exit_code, 0) << followed.err;
    EXPECT_NE(followed.out.find("STEP 3/3: RUN"), std::string::npos) << followed.out;
    EXPECT_NE(followed.out.find("tick-tock"), std::string::npos) << followed.out;
    EXPECT_NE(followed.out.find("build cancelled"), std::string::npos) << followed.out;

    auto record = build("slow-1");
    EXPECT_EQ(record["status"]["phase"], "Cancelled") << record.dump(2);
    EXPECT_EQ(record["spec"]["triggeredBy"][0]["type"], "ConfigChange");
    ASSERT_EQ(record["status"]["steps"].size(), 2u) << record.dump(2);  // FROM, COPY
    EXPECT_GT(record["status"]["steps"][1]["bytes"].get<int64_t>(), 0);

    auto described = daemon->cli({"describe", "build", "slow-1"});
    EXPECT_EQ(described.exit_code, 0) << described.err;
    EXPECT_NE(described.out.find("COPY busybox /bin/busybox"), std::string::npos) << described.out;
    EXPECT_NE(described.out.find("Cancelled"), std::string::npos) << described.out;

    // Cancelling a finished build says so; an unknown one is an error.
    auto again = daemon->cli({"cancel-build", "build/slow-1"});
    EXPECT_EQ(again.exit_code, 0) << again.err;
    EXPECT_NE(again.out.find("already cancelled"), std::string::npos) << again.out;
    auto unknown = daemon->cli({"cancel-build", "slow-7"});
    EXPECT_NE(unknown.exit_code, 0);
    EXPECT_NE(unknown.err.find("not found"), std::string::npos) << unknown.err;

    // A generic webhook starts a build recorded with its cause.
    auto hook =
        test::run({"curl", "-sS", "-d", "{}", "-H", "Content-Type: application/json",
                   daemon->host() + "/api/v1/buildconfigs/slow/webhooks/hook-secret/generic"});
    ASSERT_EQ(hook.exit_code, 0) << hook.err;
    ASSERT_TRUE(json::accept(hook.out)) << hook.out << hook.err;
    EXPECT_EQ(json::parse(hook.out)["metadata"]["name"], "slow-2");
    EXPECT_EQ(build("slow-2")["spec"]["triggeredBy"][0]["type"], "Webhook");
    ASSERT_EQ(daemon->cli({"cancel-build", "slow-2"}).exit_code, 0);
    ASSERT_TRUE(test::eventually([&] { return phase("slow-2") == "Cancelled"; }, 120s))
        << phase("slow-2");

    auto runc = test::run({"runc", "--root", (state / "runc").string(), "list", "-q"});
    EXPECT_EQ(runc.out, "") << "a build container was left behind";
}

// A `cascade build` whose client goes away (Ctrl-C) is cancelled: its RUN
// container does not keep running.
TEST_F(BuildRecords, AnAbandonedCascadeBuildIsCancelled) {
    fs::write_file_atomic(context / "Dockerfile",
                          "FROM scratch\nCOPY busybox /bin/busybox\n"
                          "RUN [\"/bin/busybox\", \"sleep\", \"600\"]\n");
    auto containers = [&] {
        return test::run({"runc", "--root", (state / "runc").string(), "list", "-q"}).out;
    };
    // The client is killed after 30 s, while the RUN step runs.
    auto client = std::async(std::launch::async, [&] {
        return daemon->cli({"build", "-t", "abandoned:latest", context.string()}, 30s);
    });
    ASSERT_TRUE(test::eventually([&] { return !containers().empty(); }, 30s))
        << "the RUN container never started";
    auto r = client.get();
    EXPECT_NE(r.exit_code, 0) << r.out;
    EXPECT_TRUE(test::eventually([&] { return containers().empty(); }, 60s))
        << "the build went on without its client: " << containers();
    EXPECT_TRUE(test::eventually([&] { return test::mounts_under(tmp.path()).empty(); }, 30s));
    EXPECT_NE(daemon->cli({"get", "imagestreams", "abandoned"}).exit_code, 0);
}

}  // namespace
