// `cascade impact` and the cascade in `cascade events`, with the real binary
// and real runc: base:latest built, app built FROM it by a BuildConfig and run
// by a DeploymentConfig; base rebuilt while the deployment is paused: impact
// shows the app image current and both replicas outdated (generation 1) until
// the rollout resumes and finishes, then all current. A BuildConfig that would
// close a cycle is refused with the cycle spelled out.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <sstream>

#include "daemon_fixture.hpp"
#include "oci/fs.hpp"
#include "support.hpp"

using nlohmann::json;
using namespace cascade;
using namespace std::chrono_literals;

namespace {

std::string short_digest(const std::string& d) {
    auto colon = d.find(':');
    return colon == std::string::npos ? d : d.substr(colon + 1, 12);
}

class ImpactCli : public test::DaemonTest {
  protected:
    ImpactCli() : DaemonTest("cascade-impact-cli-") {}
    std::filesystem::path app_ctx = tmp.path() / "app";

    void SetUp() override {
        DaemonTest::SetUp();
        fs::write_file_atomic(context / "Dockerfile", test::kHttpdDockerfile);
        std::filesystem::create_directories(app_ctx);
        fs::write_file_atomic(app_ctx / "app.html", "app\n");
    }
    void TearDown() override {
        daemon.reset();
        auto left = test::run({"runc", "--root", (state / "runc").string(), "list", "-q"}, 30s);
        EXPECT_EQ(left.out, "") << "runc containers left behind";
        DaemonTest::TearDown();
    }

    test::CommandResult ok(const std::vector<std::string>& args) {
        auto r = daemon->cli(args, 300s);
        EXPECT_EQ(r.exit_code, 0) << (args.empty() ? "" : args[0]) << ": " << r.out << r.err;
        return r;
    }

    std::string build_base(const std::string& version) {
        auto r =
            ok({"build", "-t", "base:latest", "--build-arg", "V=" + version, context.string()});
        auto pos = r.out.rfind("sha256:");
        return pos == std::string::npos ? "" : r.out.substr(pos, 71);
    }

    json get(const std::string& what) {
        auto r = daemon->cli({"get", what, "-o", "json"});
        if (r.exit_code != 0) return json();
        return json::parse(r.out, nullptr, false);
    }

    std::string tag_digest(const std::string& stream) {
        auto is = get("imagestream/" + stream);
        if (!is.is_object()) return "";
        return is["status"]["tags"][0]["items"][0].value("image", "");
    }

    json impact(const std::string& image) {
        auto r = daemon->cli({"impact", image, "-o", "json"});
        EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
        return json::parse(r.out, nullptr, false);
    }

    // Every replica of app ready on `digest`.
    bool rolled_out(const std::string& digest) {
        auto d = get("dc/app");
        if (!d.is_object() || d["status"]["pods"].size() != 2) return false;
        for (const auto& p : d["status"]["pods"])
            if (p.value("image", "") != digest || p.value("state", "") != "ready") return false;
        return true;
    }

    std::string diagnostics() {
        return daemon->cli({"get", "builds"}).out + daemon->cli({"get", "dc"}).out +
               daemon->cli({"events"}).out;
    }
};

TEST_F(ImpactCli, ShowsOutdatedReplicasUntilTheCascadeFinishes) {
    std::string base1 = build_base("1");
    ASSERT_FALSE(base1.empty());
    auto file = tmp.path() / "app.yaml";
    fs::write_file_atomic(file, R"(apiVersion: build.openshift.io/v1
kind: BuildConfig
metadata: {name: app}
spec:
  source:
    contextDir: )" + app_ctx.string() +
                                    R"(
    dockerfile: |
      FROM base:latest
      COPY app.html /www/app.html
  strategy: {type: Docker}
  output:
    to: {kind: ImageStreamTag, name: app:latest}
  triggers:
  - type: ConfigChange
  - type: ImageChange
---
apiVersion: apps.openshift.io/v1
kind: DeploymentConfig
metadata: {name: app}
spec:
  replicas: 2
  strategy:
    type: Rolling
    rollingParams: {maxSurge: 1, maxUnavailable: 0, timeoutSeconds: 120}
  template:
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: app
        image: app:latest
        ports: [{containerPort: 8080}]
        readinessProbe: {httpGet: {path: /app.html, port: 8080}, periodSeconds: 1}
  triggers:
  - type: ImageChange
    imageChangeParams: {automatic: true, from: {kind: ImageStreamTag, name: "app:latest"}}
)");
    ok({"apply", "-f", file.string()});
    ASSERT_TRUE(test::eventually(
        [&] {
            auto app = tag_digest("app");
            return !app.empty() && rolled_out(app);
        },
        240s))
        << diagnostics();
    std::string app1 = tag_digest("app");

    // Everything on the current base.
    auto first = impact("base:latest");
    ASSERT_TRUE(first.is_object());
    EXPECT_EQ(first["currentDigest"], base1);
    EXPECT_EQ(first["replicas"], 2);
    EXPECT_EQ(first["replicasCurrent"], 2);
    auto text = ok({"impact", "base"}).out;
    EXPECT_NE(text.find("KIND"), std::string::npos) << text;
    EXPECT_NE(text.find("app:latest"), std::string::npos) << text;
    EXPECT_NE(text.find("2 of 2 replicas on the current base (" + base1 + ")"), std::string::npos)
        << text;
    for (const auto& p : get("dc/app")["status"]["pods"])
        EXPECT_NE(text.find(p["name"].get<std::string>()), std::string::npos) << text;

    // A BuildConfig for base FROM app would close a cycle: refused, nothing changes.
    auto cyclic = tmp.path() / "cycle.yaml";
    fs::write_file_atomic(cyclic, R"(apiVersion: build.openshift.io/v1
kind: BuildConfig
metadata: {name: base}
spec:
  source:
    contextDir: )" + app_ctx.string() +
                                      R"(
    dockerfile: |
      FROM app:latest
  strategy: {type: Docker}
  output:
    to: {kind: ImageStreamTag, name: base:latest}
  triggers:
  - type: ImageChange
)");
    auto refused = daemon->cli({"apply", "-f", cyclic.string()});
    EXPECT_NE(refused.exit_code, 0) << refused.out;
    EXPECT_NE(refused.err.find("app:latest → (BuildConfig base) → base:latest → (BuildConfig "
                               "app) → app:latest"),
              std::string::npos)
        << refused.err;
    EXPECT_FALSE(get("bc/base").is_object()) << "nothing applied";

    // The base moves while the deployment is paused: app is rebuilt on it, the
    // replicas still run the old app, built on base generation 1.
    auto since = json::parse(ok({"events", "-o", "json"}).out)["metadata"]["resourceVersion"];
    ok({"rollout", "pause", "app"});
    std::string base2 = build_base("2");
    ASSERT_NE(base2, base1);
    ASSERT_TRUE(test::eventually(
        [&] {
            auto app = tag_digest("app");
            return !app.empty() && app != app1;
        },
        240s))
        << diagnostics();
    auto middle = impact("base:latest");
    ASSERT_TRUE(middle.is_object());
    EXPECT_EQ(middle["currentDigest"], base2);
    EXPECT_EQ(middle["replicas"], 2);
    EXPECT_EQ(middle["replicasCurrent"], 0) << middle.dump(2);
    for (const auto& item : middle["items"]) {
        if (item["kind"] == "Image") {
            EXPECT_EQ(item["status"], "current") << item.dump();
        } else {
            EXPECT_EQ(item["status"], "outdated (gen 1)") << item.dump();
            EXPECT_EQ(item["baseDigest"], base1);
            EXPECT_EQ(item["digest"], app1);
        }
    }
    text = ok({"impact", "base:latest"}).out;
    EXPECT_NE(text.find("outdated (gen 1)"), std::string::npos) << text;
    EXPECT_NE(text.find("0 of 2 replicas on the current base"), std::string::npos) << text;
    // By digest: the old base is what the replicas run.
    auto old = impact("base@" + base1);
    EXPECT_EQ(old["replicasCurrent"], 2) << old.dump(2);

    // Resumed: the rollout finishes and impact says so.
    ok({"rollout", "resume", "app"});
    std::string app2 = tag_digest("app");
    ASSERT_TRUE(test::eventually([&] { return rolled_out(app2); }, 240s)) << diagnostics();
    ASSERT_TRUE(test::eventually(
        [&] {
            auto j = impact("base:latest");
            return j.is_object() && j["replicasCurrent"] == 2 && j["replicas"] == 2;
        },
        60s))
        << ok({"impact", "base"}).out;
    text = ok({"impact", "base"}).out;
    EXPECT_EQ(text.find(short_digest(app1)), std::string::npos) << "no one runs app1:\n" << text;

    // The cascade in the event log, in order, one line per event.
    std::string from = since.get<std::string>();
    json events = json::parse(ok({"events", "--since", from, "-o", "json"}).out)["items"];
    auto find = [&](const std::string& type, const std::string& key, const std::string& value,
                    int64_t after) -> const json* {
        for (const auto& e : events)
            if (e.value("id", int64_t{0}) > after && e.value("type", "") == type &&
                e.value(key, "") == value)
                return &e;
        return nullptr;
    };
    auto id = [](const json* e) { return e ? e->value("id", int64_t{0}) : int64_t{-1}; };
    auto moved = find("TagMoved", "repository", "base", 0);
    ASSERT_TRUE(moved) << events.dump(2);
    EXPECT_EQ((*moved)["generation"], 2);
    auto started = find("BuildStarted", "name", "app-2", id(moved));
    // The build moves app:latest, then it is recorded finished.
    auto app_moved = find("TagMoved", "repository", "app", id(started));
    auto finished = find("BuildFinished", "name", "app-2", id(app_moved));
    auto rollout = find("RolloutStarted", "name", "app", id(app_moved));
    auto progress = find("RolloutProgress", "name", "app", id(rollout));
    auto done = find("RolloutFinished", "name", "app", id(progress));
    ASSERT_TRUE(started && finished && app_moved && rollout && progress && done) << events.dump(2);
    EXPECT_EQ((*started)["causeKind"], "ImageChange");
    EXPECT_EQ((*finished)["result"], "Complete");
    EXPECT_EQ((*finished)["digest"], app2);
    EXPECT_GE((*finished)["durationMs"].get<int64_t>(), 0);
    EXPECT_EQ((*rollout)["digest"], app2);
    EXPECT_EQ((*progress)["replicas"], 2);
    EXPECT_EQ((*done)["result"], "Complete");
    auto lines = ok({"events", "--since", from}).out;
    EXPECT_EQ(std::count(lines.begin(), lines.end(), '\n'),
              static_cast<std::ptrdiff_t>(events.size()))
        << lines;
    EXPECT_NE(lines.find("BuildFinished  app-2  Complete"), std::string::npos) << lines;
    EXPECT_NE(lines.find("replica 2 of 2 updated"), std::string::npos) << lines;
    EXPECT_NE(lines.find("RolloutFinished  app  revision"), std::string::npos) << lines;
}

TEST_F(ImpactCli, AnUnknownImageIsAnError) {
    auto r = daemon->cli({"impact", "nothing:latest"});
    EXPECT_EQ(r.exit_code, 1) << r.out;
    EXPECT_NE(r.err.find("nothing"), std::string::npos) << r.err;
}

}  // namespace
