// The object kinds with the real binary, runc and curl: an ImageStreamTag
// alias that follows its source tag, a Route to a Service resolved through
// the service's selector and ports, applying the same file twice (nothing
// rebuilt or rolled out), a DeploymentConfig without a ConfigChange trigger
// (a changed template waits for `rollout latest`) and with automatic: false
// (a tag move does not roll out), labels and unknown fields, and /metrics.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "daemon_fixture.hpp"
#include "oci/fs.hpp"
#include "support.hpp"

using nlohmann::json;
using namespace cascade;
using namespace std::chrono_literals;

namespace {

class ObjectsCli : public test::DaemonTest {
  protected:
    ObjectsCli() : DaemonTest("cascade-objects-cli-") {}
    uint16_t route_port = test::free_port();

    void SetUp() override {
        DaemonTest::SetUp();
        fs::write_file_atomic(context / "Dockerfile", test::kHttpdDockerfile);
    }

    test::CommandResult apply(const std::string& name, const std::string& yaml) {
        auto file = tmp.path() / name;
        fs::write_file_atomic(file, yaml);
        return daemon->cli({"apply", "-f", file.string()});
    }

    json get(const std::vector<std::string>& what) {
        std::vector<std::string> args = {"get"};
        args.insert(args.end(), what.begin(), what.end());
        args.insert(args.end(), {"-o", "json"});
        auto r = daemon->cli(args);
        EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
        return r.exit_code == 0 ? json::parse(r.out) : json();
    }

    // The digest a stream tag points to ("" when none).
    std::string tag_digest(const std::string& stream, const std::string& tag) {
        auto is = get({"is", stream});
        for (const auto& t : is["status"]["tags"])
            if (t["tag"] == tag && !t["items"].empty())
                return t["items"][0]["image"].get<std::string>();
        return "";
    }
    std::string tag_cause(const std::string& stream, const std::string& tag) {
        auto is = get({"is", stream});
        for (const auto& t : is["status"]["tags"])
            if (t["tag"] == tag && !t["items"].empty())
                return t["items"][0]["cause"].get<std::string>();
        return "";
    }

    std::string build(const std::string& version) {
        auto r = daemon->cli(
            {"build", "-t", "web:latest", "--build-arg", "V=" + version, context.string()}, 300s);
        EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
        auto pos = r.out.rfind("sha256:");
        return pos == std::string::npos ? "" : r.out.substr(pos, 71);
    }

    void wait_rolled_out(const std::string& name, int revision) {
        auto r = daemon->cli(
            {"rollout", "status", name, "--revision", std::to_string(revision), "--timeout", "180"},
            240s);
        ASSERT_EQ(r.exit_code, 0) << r.out << r.err
                                  << daemon->cli({"describe", "deployment", name}).out;
    }

    int revision(const std::string& name) {
        return get({"dc", name})["status"].value("latestVersion", -1);
    }

    std::string metrics() {
        auto r = test::http_get(daemon->port(), "/metrics");
        EXPECT_TRUE(r && r->status == 200);
        return r ? r->body : "";
    }

    std::string all_objects() {
        return R"(apiVersion: image.openshift.io/v1
kind: ImageStream
metadata:
  name: web
  labels: {app: web}
spec:
  lookupPolicy: {local: true}
  tags:
  - name: stable
    from: {kind: ImageStreamTag, name: latest}
---
apiVersion: build.openshift.io/v1
kind: BuildConfig
metadata:
  name: web
  labels: {app: web}
spec:
  source: {contextDir: context}
  strategy: {type: Docker, dockerStrategy: {}}
  output: {to: {kind: ImageStreamTag, name: "web:latest"}}
  triggers: [{type: ConfigChange}]
---
apiVersion: apps.openshift.io/v1
kind: DeploymentConfig
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 1
  selector: {app: web}
  strategy:
    type: Rolling
    rollingParams: {maxSurge: 1, maxUnavailable: 0, timeoutSeconds: 120}
  template:
    metadata:
      labels: {app: web, tier: front}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: web
        image: web:stable
        ports: [{containerPort: 8080, name: http}]
        readinessProbe: {httpGet: {path: /, port: http}, periodSeconds: 1}
  triggers:
  - type: ConfigChange
  - type: ImageChange
    imageChangeParams:
      automatic: true
      containerNames: [web]
      from: {kind: ImageStreamTag, name: "web:stable"}
---
apiVersion: v1
kind: Service
metadata:
  name: front
  labels: {app: web}
spec:
  selector: {tier: front}
  ports: [{name: web, port: 80, targetPort: http}]
---
apiVersion: route.openshift.io/v1
kind: Route
metadata:
  name: web
  labels: {app: web}
  annotations: {cascade.io/host-port: ")" +
               std::to_string(route_port) + R"("}
spec:
  to: {kind: Service, name: front}
  port: {targetPort: web}
)";
    }
};

TEST_F(ObjectsCli, AliasServiceRouteIdempotenceAndMetrics) {
    auto r = apply("all.yaml", all_objects());
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    EXPECT_EQ(r.err.find("Warning"), std::string::npos) << r.err;
    // One line per object, in the file's order as oc prints them (the daemon
    // acts in another: streams, routes, deployments, then the rest).
    size_t at = 0;
    for (const char* line :
         {"imagestream/web created", "buildconfig/web created", "deploymentconfig/web created",
          "service/front created", "route/web created"}) {
        auto found = r.out.find(line, at);
        EXPECT_NE(found, std::string::npos) << line << " (in this order) in:\n" << r.out;
        if (found != std::string::npos) at = found;
    }

    // The ConfigChange build moves web:latest; the alias web:stable follows
    // and the deployment following web:stable rolls out.
    wait_rolled_out("web", 1);
    std::string latest = tag_digest("web", "latest");
    ASSERT_FALSE(latest.empty());
    EXPECT_EQ(tag_digest("web", "stable"), latest);
    EXPECT_EQ(tag_cause("web", "stable"), "tag web:latest");
    auto served = test::http_get(route_port, "/");
    ASSERT_TRUE(served);
    EXPECT_EQ(served->body, "v1\n");
    EXPECT_EQ(get({"svc", "front"})["spec"]["selector"]["tier"], "front");

    // The same file again: everything unchanged, nothing rebuilt or rolled out.
    r = apply("all.yaml", all_objects());
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    for (const char* line :
         {"imagestream/web unchanged", "buildconfig/web unchanged",
          "deploymentconfig/web unchanged", "service/front unchanged", "route/web unchanged"})
        EXPECT_NE(r.out.find(line), std::string::npos) << r.out;
    std::this_thread::sleep_for(2s);  // a wrongly queued build or rollout would show by now
    EXPECT_EQ(get({"builds"})["items"].size(), 1u);
    EXPECT_EQ(revision("web"), 1);

    // A new latest (a push from outside the build config): the alias follows.
    std::string v2 = build("2");
    ASSERT_FALSE(v2.empty());
    EXPECT_EQ(tag_digest("web", "stable"), v2);
    wait_rolled_out("web", 2);
    served = test::http_get(route_port, "/");
    ASSERT_TRUE(served);
    EXPECT_EQ(served->body, "v2\n");

    // A registry request, to be counted.
    auto v2_base = test::http_get(daemon->port(), "/v2/");
    ASSERT_TRUE(v2_base);
    auto text = metrics();
    EXPECT_NE(text.find("# TYPE cascade_builds_total counter"), std::string::npos) << text;
    EXPECT_NE(text.find("cascade_builds_total{config=\"web\",result=\"complete\"} 1\n"),
              std::string::npos)
        << text;
    EXPECT_NE(text.find("cascade_build_duration_seconds_count{config=\"web\"} 1\n"),
              std::string::npos)
        << text;
    EXPECT_NE(text.find("cascade_rollouts_total{deployment=\"web\",result=\"complete\"} 2\n"),
              std::string::npos)
        << text;
    EXPECT_NE(text.find("cascade_replicas{deployment=\"web\",state=\"ready\"} 1\n"),
              std::string::npos)
        << text;
    EXPECT_NE(text.find("cascade_registry_requests_total{method=\"GET\",code=\"200\"}"),
              std::string::npos)
        << text;
    EXPECT_NE(text.find("cascade_registry_bytes_total{direction=\"out\"}"), std::string::npos)
        << text;
    // The router's counters: the two requests above went through route web.
    auto sample = [&](const std::string& series) -> double {
        auto at = text.find("\n" + series + " ");
        if (at == std::string::npos) return -1;
        return std::stod(text.substr(at + series.size() + 2));
    };
    EXPECT_NE(text.find("# TYPE cascade_route_connections_total counter"), std::string::npos);
    EXPECT_GE(sample("cascade_route_connections_total{route=\"web\"}"), 2) << text;
    EXPECT_EQ(sample("cascade_route_failed_connections_total{route=\"web\"}"), 0) << text;
    EXPECT_GE(sample("cascade_route_connect_timeouts_total{route=\"web\"}"), 0) << text;
    EXPECT_GT(sample("cascade_route_bytes_total{route=\"web\",direction=\"out\"}"), 0) << text;
    EXPECT_GE(sample("cascade_route_active_connections{route=\"web\"}"), 0) << text;
}

TEST_F(ObjectsCli, WithoutConfigChangeATemplateWaitsAndAutomaticFalseHoldsTagMoves) {
    build("1");
    auto dc = [&](const std::string& env) {
        return R"(apiVersion: apps.openshift.io/v1
kind: DeploymentConfig
metadata: {name: held}
spec:
  replicas: 1
  template:
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: web
        image: web:latest
        env: [{name: STAGE, value: )" +
               env + R"(}]
        ports: [{containerPort: 8080}]
  triggers:
  - type: ImageChange
    imageChangeParams:
      automatic: false
      from: {kind: ImageStreamTag, name: "web:latest"}
)";
    };
    auto r = apply("held.yaml", dc("one"));
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    wait_rolled_out("held", 1);

    // A changed template: recorded, not rolled out.
    r = apply("held.yaml", dc("two"));
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    EXPECT_NE(r.out.find("deploymentconfig/held configured"), std::string::npos) << r.out;
    EXPECT_NE(r.err.find("no ConfigChange trigger"), std::string::npos) << r.err;
    // A tag move with automatic: false: not rolled out either.
    build("2");
    std::this_thread::sleep_for(2s);
    EXPECT_EQ(revision("held"), 1);
    auto env = daemon->cli({"exec", "held", "--", "/bin/busybox", "sh", "-c", "echo $STAGE"});
    EXPECT_EQ(env.out, "one\n") << env.err;

    // `rollout latest` rolls out the applied template.
    r = daemon->cli({"rollout", "latest", "held"});
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    wait_rolled_out("held", 2);
    env = daemon->cli({"exec", "held", "--", "/bin/busybox", "sh", "-c", "echo $STAGE"});
    EXPECT_EQ(env.out, "two\n") << env.err;
}

TEST_F(ObjectsCli, LabelsUnknownFieldsAndUnsupportedValues) {
    auto r = apply("bad-label.yaml", R"(apiVersion: v1
kind: Service
metadata:
  name: s
  labels: {"-app": x}
spec:
  selector: {app: a}
  ports: [{port: 80}]
)");
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("Service \"s\": metadata.labels key \"-app\""), std::string::npos)
        << r.err;

    r = apply("udp.yaml", R"(apiVersion: v1
kind: Service
metadata: {name: s}
spec:
  selector: {app: a}
  ports: [{port: 53, protocol: UDP}]
)");
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("spec.ports[0].protocol \"UDP\" is not supported (TCP)"),
              std::string::npos)
        << r.err;

    r = apply("kind.yaml", R"(apiVersion: v1
kind: ConfigMap
metadata: {name: c}
)");
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("Service"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("ConfigMap"), std::string::npos) << r.err;

    r = apply("extra.yaml", R"(apiVersion: v1
kind: Service
metadata: {name: s, labels: {app: a}}
spec:
  selector: {app: a}
  ports: [{port: 80}]
  externalName: x.example
)");
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    EXPECT_NE(r.err.find("spec.externalName"), std::string::npos) << r.err;
    auto svc = get({"svc", "s"});
    EXPECT_EQ(svc["metadata"]["labels"]["app"], "a");

    // A route to a Service that selects nothing is refused.
    r = apply("route.yaml", R"(apiVersion: route.openshift.io/v1
kind: Route
metadata: {name: r}
spec:
  to: {kind: Service, name: s}
)");
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("selects no DeploymentConfig"), std::string::npos) << r.err;
}

}  // namespace

// Two busybox httpds: "site" on 8080, "admin" on 8081.
constexpr const char* kTwoPortDockerfile =
    "FROM scratch\nCOPY busybox /bin/busybox\n"
    "RUN [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox mkdir -p /www /admin && echo "
    "site > /www/index.html && echo admin > /admin/index.html\"]\n"
    "CMD [\"/bin/busybox\", \"sh\", \"-c\", \"trap 'exit 0' TERM; /bin/busybox httpd -f -p "
    "8080 -h /www & /bin/busybox httpd -f -p 8081 -h /admin & wait\"]\n";

// A Route's spec.port.targetPort, through the Service's ports, picks the
// container port it forwards to; changing it moves the route's backends (and
// the choice outlives a daemon restart).
TEST_F(ObjectsCli, RouteTargetPortPicksTheContainerPort) {
    fs::write_file_atomic(context / "Dockerfile", kTwoPortDockerfile);
    build("1");
    auto objects = [&](const std::string& target) {
        return R"(apiVersion: apps.openshift.io/v1
kind: DeploymentConfig
metadata: {name: two}
spec:
  replicas: 1
  template:
    metadata: {labels: {app: two}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: web
        image: web:latest
        ports: [{containerPort: 8080, name: http}, {containerPort: 8081, name: admin}]
  triggers:
  - type: ImageChange
    imageChangeParams: {automatic: true, containerNames: [web], from: {kind: ImageStreamTag, name: "web:latest"}}
---
apiVersion: v1
kind: Service
metadata: {name: two}
spec:
  selector: {app: two}
  ports: [{name: web, port: 80, targetPort: http}, {name: admin, port: 81, targetPort: admin}]
---
apiVersion: route.openshift.io/v1
kind: Route
metadata:
  name: two
  annotations: {cascade.io/host-port: ")" +
               std::to_string(route_port) + R"("}
spec:
  to: {kind: Service, name: two}
  port: {targetPort: )" +
               target + "}\n";
    };
    auto body = [&]() -> std::string {
        std::string last;
        test::eventually(
            [&] {
                auto r = test::http_get(route_port, "/");
                last = r && r->status == 200 ? r->body : "";
                return !last.empty();
            },
            60s);
        return last;
    };
    auto r = apply("two.yaml", objects("admin"));
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    wait_rolled_out("two", 1);
    EXPECT_EQ(body(), "admin\n");
    r = apply("two.yaml", objects("web"));
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    EXPECT_NE(r.out.find("route/two configured"), std::string::npos) << r.out;
    EXPECT_TRUE(test::eventually(
        [&] {
            auto g = test::http_get(route_port, "/");
            return g && g->body == "site\n";
        },
        30s));
    r = apply("two.yaml", objects("admin"));
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    daemon->kill_hard();
    daemon->start();
    EXPECT_TRUE(test::eventually(
        [&] {
            auto g = test::http_get(route_port, "/");
            return g && g->body == "admin\n";
        },
        60s))
        << daemon->cli({"describe", "route", "two"}).out;
}

// A Route straight to a DeploymentConfig: spec.port.targetPort, a container
// port's name or a number (declared or not, as in Kubernetes), picks the port
// it forwards to; a name the deployment does not declare is refused, naming
// the ports it has, and changes nothing.
TEST_F(ObjectsCli, RouteToADeploymentPicksItsTargetPort) {
    fs::write_file_atomic(context / "Dockerfile", kTwoPortDockerfile);
    build("1");
    auto objects = [&](const std::string& target) {
        return R"(apiVersion: apps.openshift.io/v1
kind: DeploymentConfig
metadata: {name: direct}
spec:
  replicas: 1
  template:
    metadata: {labels: {app: direct}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: web
        image: web:latest
        ports: [{containerPort: 8080, name: http}]
  triggers:
  - type: ImageChange
    imageChangeParams: {automatic: true, containerNames: [web], from: {kind: ImageStreamTag, name: "web:latest"}}
---
apiVersion: route.openshift.io/v1
kind: Route
metadata:
  name: direct
  annotations: {cascade.io/host-port: ")" +
               std::to_string(route_port) + R"("}
spec:
  to: {kind: DeploymentConfig, name: direct}
  port: {targetPort: )" +
               target + "}\n";
    };
    auto serves = [&](const std::string& body) {
        return test::eventually(
            [&] {
                auto g = test::http_get(route_port, "/");
                return g && g->status == 200 && g->body == body;
            },
            60s);
    };
    // 8081 is not declared: a number is used as it is.
    auto r = apply("direct.yaml", objects("8081"));
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    wait_rolled_out("direct", 1);
    EXPECT_TRUE(serves("admin\n")) << daemon->cli({"describe", "route", "direct"}).out;
    r = apply("direct.yaml", objects("http"));
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    EXPECT_TRUE(serves("site\n"));

    r = apply("direct.yaml", objects("admin"));
    EXPECT_NE(r.exit_code, 0) << r.out;
    EXPECT_NE(r.err.find("spec.port.targetPort \"admin\""), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("http/8080"), std::string::npos) << r.err;
    EXPECT_TRUE(serves("site\n"));
}

// A BuildConfig whose base is a stream of ours with no image yet waits for
// it, and says so; when the stream's import failed, the stream tag and the
// BuildConfig both say why (OpenShift's ImportSuccess condition).
TEST_F(ObjectsCli, AWaitingBuildConfigSaysWhyWhenItsBaseImportFailed) {
    uint16_t closed = test::free_port();  // nothing listens there
    auto r = apply("waiting.yaml", R"(apiVersion: image.openshift.io/v1
kind: ImageStream
metadata: {name: os-base}
spec:
  tags:
  - name: latest
    from: {kind: DockerImage, name: "127.0.0.1:)" +
                                       std::to_string(closed) + R"(/upstream/os-base:1"}
    importPolicy: {insecure: true}
---
apiVersion: build.openshift.io/v1
kind: BuildConfig
metadata: {name: on-top}
spec:
  source: {contextDir: )" + context.string() +
                                       R"(}
  strategy:
    type: Docker
    dockerStrategy: {from: {kind: ImageStreamTag, name: "os-base:latest"}}
  output: {to: {kind: ImageStreamTag, name: "on-top:latest"}}
  triggers:
  - type: ConfigChange
  - type: ImageChange
    imageChange: {}
)");
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    json bc;
    EXPECT_TRUE(test::eventually(
        [&] {
            bc = get({"bc", "on-top"});
            return bc["status"].contains("waiting") &&
                   bc["status"]["waiting"].value("message", "").find("failed") != std::string::npos;
        },
        60s))
        << bc.dump(2);
    EXPECT_EQ(bc["status"]["waiting"]["for"], "os-base:latest");
    EXPECT_NE(bc["status"]["waiting"]["message"].get<std::string>().find(std::to_string(closed)),
              std::string::npos)
        << bc["status"]["waiting"];
    EXPECT_EQ(bc["status"]["lastVersion"], 0);  // nothing built from Docker Hub's "os-base"

    auto is = get({"is", "os-base"});
    ASSERT_EQ(is["status"]["tags"].size(), 1u) << is.dump(2);
    const auto& tag = is["status"]["tags"][0];
    EXPECT_EQ(tag["tag"], "latest");
    EXPECT_TRUE(tag["items"].empty());
    EXPECT_EQ(tag["conditions"][0]["type"], "ImportSuccess");
    EXPECT_EQ(tag["conditions"][0]["status"], "False");

    auto table = daemon->cli({"get", "is", "os-base"});
    EXPECT_NE(table.out.find("import failed"), std::string::npos) << table.out;
    auto d = daemon->cli({"describe", "is", "os-base"});
    EXPECT_NE(d.out.find("! ImportFailed: "), std::string::npos) << d.out;
    d = daemon->cli({"describe", "bc", "on-top"});
    EXPECT_NE(
        d.out.find("Waiting for:          os-base:latest (the import of os-base:latest failed"),
        std::string::npos)
        << d.out;
}
