// Progress, cancellation and parallel stages of the build executor, against
// the real store, overlayfs and runc.
#include <gtest/gtest.h>

#include <cstdlib>
#include <future>
#include <mutex>
#include <string>
#include <vector>

#include "tests/engine/builder_fixture.hpp"

using namespace cascade;
using namespace std::chrono_literals;

namespace {

// The builder fixture, recording the step reports too (under log_mu).
class BuilderProgressTest : public builder_testing::BuilderTest {
  protected:
    std::vector<engine::StepReport> steps;

    BuilderProgressTest() : BuilderTest("cascade-progress-") {}

    void TearDown() override {
        ::unsetenv("CASCADE_BUILD_JOBS");
        // Cancelled and failed builds leave nothing behind.
        BuilderTest::TearDown();
    }

    engine::BuildRequest request(const std::string& dockerfile, const std::string& repo = "app") {
        auto r = BuilderTest::request(dockerfile, repo);
        r.on_step = [this](const engine::StepReport& s) {
            std::lock_guard lock(log_mu);
            steps.push_back(s);
        };
        return r;
    }

    void build_base() {
        builder.build(
            request("FROM scratch\n"
                    "COPY busybox /bin/busybox\n"
                    "RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n",
                    "base"));
        std::lock_guard lock(log_mu);
        log.clear();
        steps.clear();
    }

    // Runs the build on another thread; the future answers its error.
    std::future<std::string> start(const engine::BuildRequest& r) {
        return std::async(std::launch::async, [this, &r] { return error_of(r); });
    }

    size_t log_index(const std::string& needle) {
        std::lock_guard lock(log_mu);
        for (size_t i = 0; i < log.size(); i++)
            if (log[i].find(needle) != std::string::npos) return i;
        return std::string::npos;
    }

    std::string all_log() {
        std::lock_guard lock(log_mu);
        std::string out;
        for (const auto& l : log)
            out += l + "\n";
        return out;
    }
};

TEST_F(BuilderProgressTest, EveryStepIsReportedWithItsBytes) {
    builder.build(
        request("FROM scratch\n"
                "COPY busybox /bin/busybox\n"
                "ENV A=1\n"
                "LABEL b=2\n"));
    ASSERT_EQ(steps.size(), 4u);
    for (size_t i = 0; i < steps.size(); i++) {
        EXPECT_EQ(steps[i].number, i + 1);
        EXPECT_EQ(steps[i].stage, 0u);
        EXPECT_FALSE(steps[i].cached);
        EXPECT_GE(steps[i].duration_ms, 0);
    }
    EXPECT_EQ(steps[0].text, "FROM scratch");
    EXPECT_EQ(steps[1].text, "COPY busybox /bin/busybox");
    EXPECT_GT(steps[1].bytes, 100000);  // busybox, compressed
    EXPECT_EQ(steps[0].bytes, 0);
    EXPECT_EQ(steps[2].bytes, 0);
    EXPECT_EQ(steps[3].bytes, 0);
    // Each STEP line is followed by its "--> done in" line.
    auto step = log_index("STEP 2/4: COPY busybox /bin/busybox");
    auto done = log_index("MB");
    ASSERT_NE(step, std::string::npos) << all_log();
    ASSERT_NE(done, std::string::npos) << all_log();
    EXPECT_LT(step, done);
    EXPECT_NE(all_log().find("--> done in"), std::string::npos) << all_log();
}

const char* kThreeStages =
    "FROM base AS one\n"
    "RUN sleep 1 && echo one > /one\n"
    "FROM base AS two\n"
    "RUN sleep 1 && echo two > /two\n"
    "FROM base AS three\n"
    "RUN sleep 1 && echo three > /three\n"
    "FROM base AS unused\n"
    "RUN echo never > /never\n"
    "FROM base\n"
    "COPY --from=one /one /one\n"
    "COPY --from=two /two /two\n"
    "COPY --from=three /three /three\n";

TEST_F(BuilderProgressTest, ParallelStagesGiveTheSequentialDigest) {
    build_base();
    auto parallel_request = request(kThreeStages, "parallel");
    parallel_request.no_cache = true;
    auto parallel = builder.build(parallel_request);
    EXPECT_EQ(log_index("echo never"), std::string::npos) << "an unneeded stage was built";
    // Lines carry their stage; numbering follows the stage order.
    EXPECT_NE(log_index("[two] STEP 4/10: RUN sleep 1 && echo two > /two"), std::string::npos)
        << all_log();
    EXPECT_NE(log_index("[stage-4] STEP 7/10: FROM base"), std::string::npos) << all_log();
    EXPECT_EQ(steps.size(), 10u);

    ::setenv("CASCADE_BUILD_JOBS", "1", 1);
    auto sequential_request = request(kThreeStages, "sequential");
    sequential_request.no_cache = true;
    auto sequential = builder.build(sequential_request);
    EXPECT_EQ(parallel.manifest_digest, sequential.manifest_digest);
}

// Stage `listen` can only finish when stage `connect` runs at the same time:
// a sequential build would wait for a connection that never comes (and fail
// after 60 s; "; test" keeps nc from being the container's PID 1, which would
// ignore timeout's SIGTERM).
TEST_F(BuilderProgressTest, IndependentStagesRunAtTheSameTime) {
    build_base();
    auto port = std::to_string(test::free_port());
    auto r = request(
        "FROM base AS listen\n"
        "RUN timeout 60 nc -l -p " +
        port +
        " > /got; test -s /got\n"
        "FROM base AS connect\n"
        "RUN i=0; until echo hello | nc 127.0.0.1 " +
        port +
        "; do i=$((i+1)); [ $i -lt 600 ] || exit 1; sleep 0.1; done\n"
        "FROM base\n"
        "COPY --from=listen /got /got\n"
        "COPY --from=connect /bin/busybox /connected\n");
    auto result = builder.build(r);
    EXPECT_NE(log_index("[listen] STEP 2/"), std::string::npos) << all_log();
    EXPECT_NE(log_index("[connect] STEP 4/"), std::string::npos) << all_log();
}

TEST_F(BuilderProgressTest, CancelStopsARunningStep) {
    build_base();
    auto r = request("FROM base\nRUN echo con\"\"tainer-up && sleep 600\n");
    r.cancel = std::make_shared<engine::CancelToken>();
    auto token = r.cancel;
    auto done = start(r);
    // Cancel once the container runs (its output arrived).
    ASSERT_TRUE(
        test::eventually([&] { return log_index("container-up") != std::string::npos; }, 60s))
        << all_log();
    token->cancel();
    ASSERT_EQ(done.wait_for(120s), std::future_status::ready) << "the RUN container was not killed";
    EXPECT_EQ(done.get(), "build cancelled");
    EXPECT_FALSE(store.resolve("app", "latest"));
}

TEST_F(BuilderProgressTest, CancelBeforeTheContainerStartsStillStopsIt) {
    build_base();
    auto r = request("FROM base\nRUN sleep 600\n");
    r.cancel = std::make_shared<engine::CancelToken>();
    auto token = r.cancel;
    // Cancel the moment the step is announced: the container is not created yet.
    r.log = [this, token](const std::string& line) {
        {
            std::lock_guard lock(log_mu);
            log.push_back(line);
        }
        if (line.find("STEP 2/2: RUN sleep 600") != std::string::npos) token->cancel();
    };
    auto done = start(r);
    ASSERT_EQ(done.wait_for(120s), std::future_status::ready) << all_log();
    EXPECT_EQ(done.get(), "build cancelled");
}

TEST_F(BuilderProgressTest, AFailingStageStopsTheOthers) {
    build_base();
    auto r = request(
        "FROM base AS slow\n"
        "RUN echo slow-started && sleep 600\n"
        "FROM base AS broken\n"
        "RUN sleep 1; exit 3\n"
        "FROM base\n"
        "COPY --from=slow /bin/busybox /a\n"
        "COPY --from=broken /bin/busybox /b\n");
    auto done = start(r);
    ASSERT_EQ(done.wait_for(120s), std::future_status::ready) << "the slow stage was not stopped\n"
                                                              << all_log();
    auto message = done.get();
    EXPECT_NE(message.find("exit status 3"), std::string::npos) << message;
    EXPECT_NE(message.find("Dockerfile:4"), std::string::npos) << message;
}

}  // namespace
