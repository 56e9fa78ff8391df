// The example everything is measured against, end to end with real runc:
// `cascade up examples/image-stream`, then a change to httpd-base and
// `cascade start-build httpd-base`; both applications are rebuilt on the new
// base and rolled out while a client polls both routes without one failure.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <fstream>
#include <regex>
#include <set>
#include <thread>

#include "oci/fs.hpp"
#include "support.hpp"

using nlohmann::json;
using namespace cascade;
using namespace std::chrono_literals;

namespace {

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
    for (size_t pos = 0; (pos = s.find(from, pos)) != std::string::npos; pos += to.size())
        s.replace(pos, from.size(), to);
    return s;
}

// Polls a route until stopped, counting answers that are not 200 with the
// expected body.
struct Poller {
    uint16_t port;
    std::string expect;
    std::atomic<bool> stop{false};
    std::atomic<int> ok{0}, failed{0};
    std::string last_failure;
    std::thread thread;

    Poller(uint16_t p, std::string e) : port(p), expect(std::move(e)) {
        thread = std::thread([this] {
            // Bounded: at most 20,000 requests or until stopped.
            for (int i = 0; i < 20000 && !stop; i++) {
                auto r = test::http_get(port, "/", "127.0.0.1", 5000ms);
                if (r && r->status == 200 && r->body.find(expect) != std::string::npos) {
                    ok++;
                } else {
                    failed++;
                    last_failure = r ? "status " + std::to_string(r->status) : "no answer";
                }
                std::this_thread::sleep_for(10ms);
            }
        });
    }
    ~Poller() { finish(); }
    void finish() {
        stop = true;
        if (thread.joinable()) thread.join();
    }
};

class ImageStreamExample : public ::testing::Test {
  protected:
    fs::TempDir tmp{{}, "cascade-e2e-"};
    std::filesystem::path state = tmp.path() / "state";
    std::filesystem::path example = tmp.path() / "image-stream";
    uint16_t port_a = test::free_port(), port_b = test::free_port();
    std::unique_ptr<test::Daemon> daemon;

    void SetUp() override {
        std::filesystem::copy(test::source_dir() / "examples" / "image-stream", example,
                              std::filesystem::copy_options::recursive);
        auto yaml = fs::read_file(example / "cascade.yaml");
        yaml = replace_all(yaml, "\"8081\"", "\"" + std::to_string(port_a) + "\"");
        yaml = replace_all(yaml, "\"8082\"", "\"" + std::to_string(port_b) + "\"");
        fs::write_file_atomic(example / "cascade.yaml", yaml);
        daemon = std::make_unique<test::Daemon>(state);
    }

    void TearDown() override {
        daemon.reset();  // SIGTERM: the daemon stops its replicas
        auto left = test::run({"runc", "--root", (state / "runc").string(), "list", "-q"}, 30s);
        EXPECT_EQ(left.out, "") << "runc containers left behind";
        test::cleanup_state_root(state);
        std::ifstream mounts("/proc/self/mounts");
        std::string line;
        while (std::getline(mounts, line))
            EXPECT_EQ(line.find(tmp.path().string()), std::string::npos) << "mount left: " << line;
    }

    json get(const std::string& what) {
        auto r = daemon->cli({"get", what, "-o", "json"});
        EXPECT_EQ(r.exit_code, 0) << r.err;
        return json::parse(r.out);
    }

    std::string tag_digest(const std::string& stream) {
        auto is = get("imagestream/" + stream);
        return is["status"]["tags"][0]["items"][0]["image"];
    }

    json manifest_of(const std::string& image) {
        auto r = test::run({"skopeo", "inspect", "--raw", "--tls-verify=false",
                            "docker://" + daemon->address() + "/" + image});
        EXPECT_EQ(r.exit_code, 0) << r.err;
        return json::parse(r.out);
    }
};

TEST_F(ImageStreamExample, UpThenBaseRebuildCascadesWithoutFailedRequests) {
    auto up =
        daemon->cli({"up", (example / "cascade.yaml").string(), "--root", state.string()}, 900s);
    ASSERT_EQ(up.exit_code, 0) << up.out << up.err;
    EXPECT_NE(up.out.find("app-a: http://127.0.0.1:" + std::to_string(port_a) + "/"),
              std::string::npos)
        << up.out;
    EXPECT_NE(up.out.find("app-b: http://127.0.0.1:" + std::to_string(port_b) + "/"),
              std::string::npos)
        << up.out;

    auto a = test::http_get(port_a, "/");
    ASSERT_TRUE(a);
    EXPECT_EQ(a->status, 200);
    EXPECT_NE(a->body.find("<h1>app-a</h1>"), std::string::npos);
    auto b = test::http_get(port_b, "/");
    ASSERT_TRUE(b);
    EXPECT_NE(b->body.find("<h1>app-b</h1>"), std::string::npos);
    auto version = test::http_get(port_a, "/cgi-bin/base-version");
    ASSERT_TRUE(version);
    EXPECT_NE(version->body.find("httpd-base 1.0"), std::string::npos) << version->body;

    std::string base1 = tag_digest("httpd-base");
    std::string app_a1 = tag_digest("app-a"), app_b1 = tag_digest("app-b");
    EXPECT_EQ(manifest_of("app-a:latest")["annotations"]["org.opencontainers.image.base.digest"],
              base1);

    // The critical fix lands in the base; a person starts its build; the
    // cascade follows while clients keep polling both applications.
    {
        Poller poll_a(port_a, "<h1>app-a</h1>"), poll_b(port_b, "<h1>app-b</h1>");
        auto dockerfile = fs::read_file(example / "httpd-base" / "Dockerfile");
        fs::write_file_atomic(
            example / "httpd-base" / "Dockerfile",
            replace_all(dockerfile, "HTTPD_BASE_RELEASE=1.0", "HTTPD_BASE_RELEASE=1.1"));
        auto sb = daemon->cli({"start-build", "httpd-base", "--wait"}, 600s);
        ASSERT_EQ(sb.exit_code, 0) << sb.out << sb.err;

        std::string base2 = tag_digest("httpd-base");
        ASSERT_NE(base2, base1);
        // Both applications rebuilt on the new base and rolled out.
        bool settled = test::eventually(
            [&] {
                auto deps = get("deployments");
                int done = 0;
                for (const auto& d : deps["items"]) {
                    std::string name = d["metadata"]["name"];
                    std::string want = tag_digest(name);
                    bool all_new =
                        d["status"]["readyReplicas"] == 2 && d["status"]["phase"] == "Running";
                    for (const auto& p : d["status"]["pods"])
                        all_new = all_new && p["image"] == want && p["state"] == "ready";
                    if (want != (name == "app-a" ? app_a1 : app_b1) && all_new &&
                        d["status"]["imageDigest"] == want)
                        done++;
                }
                return done == 2;
            },
            300s);
        ASSERT_TRUE(settled) << daemon->cli({"get", "deployments"}).out
                             << daemon->cli({"get", "builds"}).out;

        for (const char* app : {"app-a", "app-b"}) {
            auto m = manifest_of(std::string(app) + ":latest");
            EXPECT_EQ(m["annotations"]["org.opencontainers.image.base.digest"], base2) << app;
            EXPECT_EQ(m["annotations"]["org.opencontainers.image.base.name"], "httpd-base:latest");
        }
        auto v = test::http_get(port_b, "/cgi-bin/base-version");
        ASSERT_TRUE(v);
        EXPECT_NE(v->body.find("httpd-base 1.1"), std::string::npos) << v->body;

        poll_a.finish();
        poll_b.finish();
        EXPECT_EQ(poll_a.failed, 0) << poll_a.last_failure;
        EXPECT_EQ(poll_b.failed, 0) << poll_b.last_failure;
        EXPECT_GT(poll_a.ok, 10);
        EXPECT_GT(poll_b.ok, 10);
    }

    // What happened is visible: build numbers, generations.
    auto builds = daemon->cli({"get", "builds"});
    EXPECT_NE(builds.out.find("httpd-base-2"), std::string::npos) << builds.out;
    EXPECT_NE(builds.out.find("app-a-2"), std::string::npos) << builds.out;
    EXPECT_NE(builds.out.find("app-b-2"), std::string::npos) << builds.out;
    EXPECT_EQ(builds.out.find("app-a-3"), std::string::npos) << "app-a rebuilt more than once\n"
                                                             << builds.out;
    auto streams = get("imagestreams");
    for (const auto& is : streams["items"]) {
        if (is["metadata"]["name"] == "app-a") {
            EXPECT_EQ(is["status"]["tags"][0]["items"][0]["generation"], 2);
            EXPECT_EQ(is["status"]["tags"][0]["items"].size(), 2u);
        }
    }
}

TEST_F(ImageStreamExample, ApplyingAgainChangesNothingAndACrashedDaemonReadoptsItsReplicas) {
    auto up =
        daemon->cli({"up", (example / "cascade.yaml").string(), "--root", state.string()}, 900s);
    ASSERT_EQ(up.exit_code, 0) << up.out << up.err;
    auto pods_before = get("deployments");

    // The same objects again: nothing changes, nothing builds.
    auto again = daemon->cli({"apply", "-f", (example / "cascade.yaml").string()});
    ASSERT_EQ(again.exit_code, 0) << again.err;
    EXPECT_EQ(again.out.find("configured"), std::string::npos) << again.out;
    EXPECT_EQ(again.out.find("created"), std::string::npos) << again.out;
    auto builds = get("builds");
    EXPECT_EQ(builds["items"].size(), 4u) << "one build per config, none more";

    // SIGKILL: the replicas keep running without their daemon …
    daemon->kill_hard();
    auto listed = test::run({"runc", "--root", (state / "runc").string(), "list", "-q"}, 30s);
    size_t running = std::count(listed.out.begin(), listed.out.end(), '\n');
    EXPECT_EQ(running, 4u) << listed.out;

    // … and a new daemon on the same state root takes them back: same
    // containers, behind the routes again.
    daemon->start();
    ASSERT_TRUE(test::eventually(
        [&] {
            auto r = test::http_get(port_a, "/");
            return r && r->status == 200;
        },
        60s));
    auto pods_after = get("deployments");
    for (size_t i = 0; i < pods_before["items"].size(); i++) {
        std::set<std::string> before, after;
        for (const auto& p : pods_before["items"][i]["status"]["pods"])
            before.insert(p["name"]);
        for (const auto& p : pods_after["items"][i]["status"]["pods"])
            after.insert(p["name"]);
        EXPECT_EQ(before, after) << "replicas re-adopted, not replaced";
    }
    auto b = test::http_get(port_b, "/");
    ASSERT_TRUE(b);
    EXPECT_NE(b->body.find("<h1>app-b</h1>"), std::string::npos);
}

}  // namespace
