// The deployment commands with the real binary, real runc and curl: scale,
// rollout status/history/undo/pause/resume, logs and exec of a replica, and
// routing by Host header on the router's shared HTTP port.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "daemon_fixture.hpp"
#include "oci/fs.hpp"
#include "support.hpp"

using nlohmann::json;
using namespace cascade;
using namespace std::chrono_literals;

namespace {

// busybox httpd serving "v<V>" on 8080; it says which version started.
const char* kDockerfile = R"(FROM scratch
COPY busybox /bin/busybox
ARG V=1
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox mkdir -p /www && echo v$V > /www/index.html"]
CMD ["/bin/busybox", "sh", "-c", "trap 'exit 0' TERM; echo started $(/bin/busybox cat /www/index.html); /bin/busybox httpd -f -p 8080 -h /www & wait"]
)";

class RolloutCli : public test::DaemonTest {
  protected:
    RolloutCli() : DaemonTest("cascade-rollout-cli-") {}
    uint16_t route_port = test::free_port();

    void SetUp() override {
        DaemonTest::SetUp();
        fs::write_file_atomic(context / "Dockerfile", kDockerfile);
    }

    // Builds web:latest with V=version; returns its digest.
    std::string build(const std::string& version) {
        auto r = daemon->cli(
            {"build", "-t", "web:latest", "--build-arg", "V=" + version, context.string()}, 300s);
        EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
        auto pos = r.out.rfind("sha256:");
        return pos == std::string::npos ? "" : r.out.substr(pos, 71);
    }

    void apply(int replicas) {
        auto file = tmp.path() / "web.yaml";
        fs::write_file_atomic(file, R"(apiVersion: apps.openshift.io/v1
kind: DeploymentConfig
metadata: {name: web}
spec:
  replicas: )" + std::to_string(replicas) +
                                        R"(
  strategy:
    type: Rolling
    rollingParams: {maxSurge: 1, maxUnavailable: 0, timeoutSeconds: 120}
  template:
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: web
        image: web:latest
        ports: [{containerPort: 8080, name: http}]
        readinessProbe: {httpGet: {path: /, port: http}, periodSeconds: 1}
  triggers:
  - type: ImageChange
    imageChangeParams: {automatic: true, from: {kind: ImageStreamTag, name: "web:latest"}}
---
apiVersion: route.openshift.io/v1
kind: Route
metadata:
  name: web
  annotations: {cascade.io/host-port: ")" +
                                        std::to_string(route_port) + R"("}
spec:
  host: web.example.localhost
  to: {kind: Service, name: web}
---
apiVersion: route.openshift.io/v1
kind: Route
metadata: {name: other}
spec:
  to: {kind: Service, name: web}
)");
        auto r = daemon->cli({"apply", "-f", file.string()});
        ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
        EXPECT_EQ(r.err.find("Warning"), std::string::npos) << r.err;
    }

    // `rollout status` until the rollout of at least `revision` ends.
    void wait_rolled_out(int revision) {
        auto r = daemon->cli({"rollout", "status", "web", "--revision", std::to_string(revision),
                              "--timeout", "180"},
                             240s);
        ASSERT_EQ(r.exit_code, 0) << r.out << r.err << describe();
        EXPECT_NE(r.out.find("successfully rolled out"), std::string::npos) << r.out;
    }

    std::string describe() { return daemon->cli({"describe", "deployment", "web"}).out; }

    json status() {
        auto r = daemon->cli({"get", "deployments", "web", "-o", "json"});
        EXPECT_EQ(r.exit_code, 0) << r.err;
        return json::parse(r.out)["status"];
    }

    // What the route's own port serves.
    std::string served() {
        auto r = test::http_get(route_port, "/");
        return r ? r->body : "(no answer)";
    }
};

TEST_F(RolloutCli, ScaleUpAndDownIsReflectedInGet) {
    build("1");
    apply(1);
    wait_rolled_out(1);

    auto up = daemon->cli({"scale", "web", "--replicas", "3"});
    ASSERT_EQ(up.exit_code, 0) << up.out << up.err;
    EXPECT_NE(up.out.find("deployment/web scaled to 3"), std::string::npos) << up.out;
    wait_rolled_out(1);
    auto st = status();
    EXPECT_EQ(st["desiredReplicas"], 3);
    EXPECT_EQ(st["readyReplicas"], 3);
    EXPECT_EQ(st["pods"].size(), 3u);
    auto table = daemon->cli({"get", "deployments"});
    EXPECT_NE(table.out.find("UP-TO-DATE"), std::string::npos) << table.out;
    EXPECT_NE(table.out.find("3/3"), std::string::npos) << table.out;

    auto down = daemon->cli({"scale", "deployment/web", "--replicas", "1"});
    ASSERT_EQ(down.exit_code, 0) << down.out << down.err;
    wait_rolled_out(1);
    st = status();
    EXPECT_EQ(st["desiredReplicas"], 1);
    EXPECT_EQ(st["pods"].size(), 1u);
    EXPECT_NE(daemon->cli({"get", "deployments"}).out.find("1/1"), std::string::npos);

    auto unknown = daemon->cli({"scale", "nope", "--replicas", "2"});
    EXPECT_NE(unknown.exit_code, 0);
    EXPECT_NE(unknown.err.find("deployment \"nope\" not found"), std::string::npos) << unknown.err;
    auto negative = daemon->cli({"scale", "web", "--replicas", "-1"});
    EXPECT_NE(negative.exit_code, 0);
    EXPECT_NE(negative.err.find("must not be negative"), std::string::npos) << negative.err;

    // The API's status codes: 404 unknown, 400 bad input, 409 conflict.
    auto post = [&](const std::string& path, const std::string& body) {
        return test::run({"curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "-H",
                          "Content-Type: application/json", "-d", body, daemon->host() + path})
            .out;
    };
    EXPECT_EQ(post("/api/v1/deployments/nope/scale", R"({"replicas": 1})"), "404");
    EXPECT_EQ(post("/api/v1/deployments/web/scale", R"({"replicas": "many"})"), "400");
    EXPECT_EQ(post("/api/v1/deployments/web/rollout/resume", "{}"), "409");
    EXPECT_EQ(post("/api/v1/deployments/web/rollout/undo", R"({"toRevision": 42})"), "404");
}

TEST_F(RolloutCli, HistoryAfterTwoBuildsAndUndo) {
    std::string v1 = build("1");
    apply(2);
    wait_rolled_out(1);
    EXPECT_EQ(served(), "v1\n");
    std::string v2 = build("2");
    ASSERT_NE(v1, v2);
    wait_rolled_out(2);
    EXPECT_EQ(served(), "v2\n");

    auto history = daemon->cli({"rollout", "history", "web", "-o", "wide"});
    ASSERT_EQ(history.exit_code, 0) << history.err;
    EXPECT_NE(history.out.find("REVISION"), std::string::npos) << history.out;
    EXPECT_NE(history.out.find("CAUSE"), std::string::npos) << history.out;
    auto revisions = json::parse(daemon->cli({"rollout", "history", "web", "-o", "json"}).out);
    ASSERT_EQ(revisions["items"].size(), 2u) << history.out;
    EXPECT_EQ(revisions["items"][0]["revision"], 1);
    EXPECT_EQ(revisions["items"][0]["digest"], v1);
    EXPECT_EQ(revisions["items"][1]["revision"], 2);
    EXPECT_EQ(revisions["items"][1]["digest"], v2);
    EXPECT_NE(history.out.find(v1), std::string::npos) << history.out;
    EXPECT_NE(history.out.find(v2), std::string::npos) << history.out;

    auto bad = daemon->cli({"rollout", "undo", "web", "--to-revision", "99"});
    EXPECT_NE(bad.exit_code, 0);
    EXPECT_NE(bad.err.find("no revision 99"), std::string::npos) << bad.err;

    auto undo = daemon->cli({"rollout", "undo", "web"});
    ASSERT_EQ(undo.exit_code, 0) << undo.out << undo.err;
    EXPECT_NE(undo.out.find("deployment/web rolled back"), std::string::npos) << undo.out;
    wait_rolled_out(3);
    EXPECT_EQ(served(), "v1\n");
    auto st = status();
    EXPECT_EQ(st["imageDigest"], v1);
    revisions = json::parse(daemon->cli({"rollout", "history", "web", "-o", "json"}).out);
    ASSERT_EQ(revisions["items"].size(), 3u);
    EXPECT_EQ(revisions["items"][2]["digest"], v1);

    // Back to revision 2 by number.
    auto to2 = daemon->cli({"rollout", "undo", "web", "--to-revision", "2"});
    ASSERT_EQ(to2.exit_code, 0) << to2.err;
    wait_rolled_out(4);
    EXPECT_EQ(served(), "v2\n");
    auto text = describe();
    EXPECT_NE(text.find("Strategy:      Rolling (maxSurge 1, maxUnavailable 0"), std::string::npos)
        << text;
    EXPECT_NE(text.find("Readiness:     http :8080/ delay=0s period=1s"), std::string::npos)
        << text;
    EXPECT_NE(text.find("Revisions:"), std::string::npos) << text;
    EXPECT_NE(text.find("undo to revision 2"), std::string::npos) << text;
}

TEST_F(RolloutCli, PauseHoldsANewImageBackUntilResume) {
    build("1");
    apply(1);
    wait_rolled_out(1);
    auto pause = daemon->cli({"rollout", "pause", "web"});
    ASSERT_EQ(pause.exit_code, 0) << pause.out << pause.err;
    EXPECT_TRUE(status()["paused"].get<bool>());
    auto again = daemon->cli({"rollout", "pause", "web"});
    EXPECT_NE(again.exit_code, 0);
    EXPECT_NE(again.err.find("already paused"), std::string::npos) << again.err;

    build("2");
    // Paused: the rollout waits; the replica keeps serving v1.
    auto held = daemon->cli({"rollout", "status", "web", "--timeout", "60"}, 90s);
    EXPECT_EQ(held.exit_code, 1) << held.out << held.err;
    EXPECT_NE(held.out.find("is paused"), std::string::npos) << held.out;
    EXPECT_EQ(served(), "v1\n");

    auto resume = daemon->cli({"rollout", "resume", "web"});
    ASSERT_EQ(resume.exit_code, 0) << resume.out << resume.err;
    EXPECT_FALSE(status()["paused"].get<bool>());
    wait_rolled_out(2);
    EXPECT_EQ(served(), "v2\n");
    auto not_paused = daemon->cli({"rollout", "resume", "web"});
    EXPECT_NE(not_paused.exit_code, 0);
    EXPECT_NE(not_paused.err.find("is not paused"), std::string::npos) << not_paused.err;
}

TEST_F(RolloutCli, LogsAndExecOfAReplica) {
    build("1");
    apply(1);
    wait_rolled_out(1);

    bool logged = test::eventually(
        [&] {
            return daemon->cli({"logs", "web"}).out.find("started v1") != std::string::npos;
        },
        30s);
    EXPECT_TRUE(logged) << daemon->cli({"logs", "web"}).out;
    auto replica0 = daemon->cli({"logs", "deployment/web", "--replica", "0", "--tail", "1"});
    EXPECT_EQ(replica0.exit_code, 0) << replica0.err;
    auto missing = daemon->cli({"logs", "web", "--replica", "7"});
    EXPECT_NE(missing.exit_code, 0);
    EXPECT_NE(missing.err.find("has no replica 7"), std::string::npos) << missing.err;
    // -f keeps streaming while the replica runs: cut off by the timeout.
    auto follow = daemon->cli({"logs", "-f", "web"}, 3s);
    EXPECT_NE(follow.out.find("started v1"), std::string::npos) << follow.out << follow.err;

    auto cat = daemon->cli({"exec", "web", "--", "/bin/busybox", "cat", "/www/index.html"});
    EXPECT_EQ(cat.exit_code, 0) << cat.err;
    EXPECT_EQ(cat.out, "v1\n");
    auto fails = daemon->cli({"exec", "web", "--replica", "0", "--", "/bin/busybox", "sh", "-c",
                              "echo oops >&2; exit 3"});
    EXPECT_EQ(fails.exit_code, 3);
    EXPECT_NE(fails.err.find("oops"), std::string::npos) << fails.err;
    auto nowhere = daemon->cli({"exec", "nope", "--", "true"});
    EXPECT_NE(nowhere.exit_code, 0);
    EXPECT_NE(nowhere.err.find("not found"), std::string::npos) << nowhere.err;

    // Build logs still work next to deployment logs.
    auto no_build = daemon->cli({"logs", "build/web-1"});
    EXPECT_NE(no_build.exit_code, 0);
}

TEST_F(RolloutCli, RoutesAnswerByHostHeaderOnTheSharedPort) {
    build("1");
    apply(1);
    wait_rolled_out(1);
    std::string shared = "http://127.0.0.1:" + std::to_string(daemon->router_port()) + "/";
    auto curl = [&](const std::string& host) {
        return test::run(
            {"curl", "-s", "-m", "10", "-w", " %{http_code}", "-H", "Host: " + host, shared});
    };
    auto named = curl("web.example.localhost");
    EXPECT_EQ(named.out, "v1\n 200") << named.err;
    auto by_default = curl("other.localhost:" + std::to_string(daemon->router_port()));
    EXPECT_EQ(by_default.out, "v1\n 200") << by_default.err;
    auto unknown = curl("nobody.localhost");
    EXPECT_EQ(unknown.out.find("v1"), std::string::npos) << unknown.out;
    EXPECT_EQ(unknown.out.find(" 200"), std::string::npos) << unknown.out;

    auto routes = daemon->cli({"get", "routes"});
    ASSERT_EQ(routes.exit_code, 0) << routes.err;
    EXPECT_NE(routes.out.find("HOST/PORT"), std::string::npos) << routes.out;
    EXPECT_NE(routes.out.find("127.0.0.1:" + std::to_string(route_port)), std::string::npos)
        << routes.out;
    EXPECT_NE(routes.out.find(
                  "http://web.example.localhost:" + std::to_string(daemon->router_port()) + "/"),
              std::string::npos)
        << routes.out;

    // After a crash and restart the routes answer by hostname again.
    daemon->kill_hard();
    daemon->start();
    bool again =
        test::eventually([&] { return curl("web.example.localhost").out == "v1\n 200"; }, 60s);
    EXPECT_TRUE(again) << curl("web.example.localhost").out;
}

TEST_F(RolloutCli, AnExplicitRouterPortThatIsTakenIsAnError) {
    auto other = tmp.path() / "other-state";
    auto r = test::run({test::cascade_binary(), "serve", "--root", other.string(), "--listen",
                        "127.0.0.1:" + std::to_string(test::free_port()), "--router-listen",
                        "127.0.0.1:" + std::to_string(daemon->router_port())},
                       60s);
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("cannot listen for routes on 127.0.0.1:" +
                         std::to_string(daemon->router_port())),
              std::string::npos)
        << r.err;
    test::cleanup_state_root(other);
}

}  // namespace
