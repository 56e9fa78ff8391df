// DeploymentConfig and Deployment objects → DeploymentSpec: every field of the
// pod template and the strategy, Kubernetes quantities, and the errors and
// warnings, which name the object and the field.
#include <gtest/gtest.h>

#include <filesystem>

#include "cli/objects.hpp"
#include "cli/pod_template.hpp"
#include "oci/error.hpp"

using namespace cascade;
using nlohmann::json;
using runtime::ProbeSpec;
using runtime::VolumeMount;
using namespace std::chrono_literals;

namespace {

// The error deployment_from_object throws ("" when none).
std::string error_of(const json& obj) {
    try {
        cli::deployment_from_object(obj);
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

json minimal_dc() {
    return json::parse(R"({
      "apiVersion": "apps.openshift.io/v1", "kind": "DeploymentConfig", "metadata": {"name": "web"},
      "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "web:latest",
               "ports": [{"containerPort": 8080}]}]}}}})");
}

json& container(json& obj) {
    return obj["spec"]["template"]["spec"]["containers"][0];
}

TEST(Quantity, MemoryInBytes) {
    EXPECT_EQ(cli::quantity_bytes("128Mi"), 128 << 20);
    EXPECT_EQ(cli::quantity_bytes("1G"), 1000000000);
    EXPECT_EQ(cli::quantity_bytes("1.5Gi"), int64_t{3} << 29);
    EXPECT_EQ(cli::quantity_bytes("134217728"), 134217728);
    EXPECT_EQ(cli::quantity_bytes("64k"), 64000);
    EXPECT_EQ(cli::quantity_bytes("1Ki"), 1024);
    EXPECT_EQ(cli::quantity_bytes("2e3"), 2000);
    EXPECT_EQ(cli::quantity_bytes("1E"), 1000000000000000000);
    EXPECT_EQ(cli::quantity_bytes("+5"), 5);
    EXPECT_EQ(cli::quantity_bytes("500m"), 1) << "fractions of a byte round up";
    EXPECT_EQ(cli::quantity_bytes("0"), 0);
}

TEST(Quantity, CpuInMillicores) {
    EXPECT_EQ(cli::quantity_millis("500m"), 500);
    EXPECT_EQ(cli::quantity_millis("0.5"), 500);
    EXPECT_EQ(cli::quantity_millis("2"), 2000);
    EXPECT_EQ(cli::quantity_millis("0.1"), 100) << "exact decimal arithmetic, no 101";
    EXPECT_EQ(cli::quantity_millis(".25"), 250);
    EXPECT_EQ(cli::quantity_millis("100u"), 1) << "rounds up to 1m";
    EXPECT_EQ(cli::quantity_millis("1500000n"), 2);
}

TEST(Quantity, ErrorsSayWhatIsAccepted) {
    for (const char* bad : {"12x", "", "Mi", "1.2.3", "1Mii", "1e", "e3", "1 Mi", "0x10"}) {
        try {
            cli::quantity_bytes(bad);
            ADD_FAILURE() << bad << " parsed";
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find("Ki, Mi, Gi"), std::string::npos) << e.what();
        }
    }
    EXPECT_THROW(cli::quantity_bytes("-1Mi"), Error);
    EXPECT_THROW(cli::quantity_bytes("10Ei"), Error) << "more than int64";
    EXPECT_THROW(cli::quantity_bytes("123456789012345678901234"), Error);
}

TEST(DeploymentConfig, EveryTemplateField) {
    auto obj = json::parse(R"({
      "apiVersion": "apps.openshift.io/v1", "kind": "DeploymentConfig",
      "metadata": {"name": "web", "labels": {"app": "web", "tier": "front"}},
      "spec": {
        "replicas": 4,
        "paused": true,
        "selector": {"app": "web"},
        "strategy": {"type": "Rolling",
                     "rollingParams": {"maxSurge": 2, "maxUnavailable": "10%", "intervalSeconds": 2,
                                       "updatePeriodSeconds": 3, "timeoutSeconds": 120}},
        "template": {
          "metadata": {"labels": {"app": "web"}},
          "spec": {
            "restartPolicy": "OnFailure",
            "hostname": "web-host",
            "terminationGracePeriodSeconds": 7,
            "securityContext": {"runAsGroup": 100},
            "volumes": [
              {"name": "data", "persistentVolumeClaim": {"claimName": "web-data"}},
              {"name": "conf", "hostPath": {"path": "/etc/web", "type": "Directory"}},
              {"name": "scratch", "emptyDir": {}},
              {"name": "fast", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}
            ],
            "containers": [{
              "name": "web", "image": "web:v1",
              "command": ["/bin/busybox", "httpd"], "args": ["-f", "-p", 8080],
              "workingDir": "/srv",
              "env": [{"name": "A", "value": "1"}, {"name": "EMPTY"}, {"name": "N", "value": 5}],
              "ports": [{"containerPort": 8080, "name": "http"}, {"containerPort": 9090, "name": "metrics"}],
              "readinessProbe": {"httpGet": {"path": "/healthz?x=1", "port": "http"},
                                 "initialDelaySeconds": 1, "periodSeconds": 2, "timeoutSeconds": 3,
                                 "successThreshold": 2, "failureThreshold": 4},
              "livenessProbe": {"tcpSocket": {"port": 9090}},
              "startupProbe": {"exec": {"command": ["cat", "/tmp/ready"]}, "failureThreshold": 30},
              "resources": {"limits": {"memory": "128Mi", "cpu": "500m", "pids": 64},
                            "requests": {"cpu": "0.1", "memory": "64Mi"}},
              "volumeMounts": [{"name": "data", "mountPath": "/var/lib/web"},
                               {"name": "conf", "mountPath": "/etc/web/", "readOnly": true},
                               {"name": "scratch", "mountPath": "/scratch"},
                               {"name": "fast", "mountPath": "/fast"}],
              "securityContext": {"readOnlyRootFilesystem": true, "runAsUser": 65534}
            }]
          }
        },
        "triggers": [{"type": "ConfigChange"},
                     {"type": "ImageChange", "imageChangeParams": {"automatic": true,
                      "from": {"kind": "ImageStreamTag", "name": "web:prod"}}}]
      }})");
    std::vector<std::string> warnings;
    auto d = cli::deployment_from_object(obj, &warnings);
    EXPECT_TRUE(warnings.empty()) << warnings.front();
    EXPECT_TRUE(cli::deployment_paused(obj));
    EXPECT_EQ(d.name, "web");
    EXPECT_EQ(d.image_repository, "web");
    EXPECT_EQ(d.image_tag, "prod");
    EXPECT_TRUE(d.automatic);
    EXPECT_EQ(d.replicas, 4);
    EXPECT_EQ(d.strategy.type, runtime::RolloutStrategy::Type::Rolling);
    EXPECT_EQ(d.strategy.max_surge, (runtime::IntOrPercent{2, false}));
    EXPECT_EQ(d.strategy.max_unavailable, (runtime::IntOrPercent{10, true}));
    EXPECT_EQ(d.strategy.interval, 2s);
    EXPECT_EQ(d.strategy.update_period, 3s);
    EXPECT_EQ(d.strategy.timeout, 120s);
    EXPECT_EQ(d.command, (std::vector<std::string>{"/bin/busybox", "httpd"}));
    EXPECT_EQ(d.args, (std::vector<std::string>{"-f", "-p", "8080"}));
    EXPECT_EQ(d.working_dir, "/srv");
    EXPECT_EQ(d.env, (std::vector<std::string>{"A=1", "EMPTY=", "N=5"}));
    EXPECT_EQ(d.ports, (std::vector<uint16_t>{8080, 9090}));
    EXPECT_EQ(d.container_port, 8080);

    EXPECT_EQ(d.readiness.kind, ProbeSpec::Kind::Http);
    EXPECT_EQ(d.readiness.port, 8080) << "the named port";
    EXPECT_EQ(d.readiness.path, "/healthz?x=1");
    EXPECT_EQ(d.readiness.initial_delay, 1s);
    EXPECT_EQ(d.readiness.period, 2s);
    EXPECT_EQ(d.readiness.timeout, 3s);
    EXPECT_EQ(d.readiness.success_threshold, 2);
    EXPECT_EQ(d.readiness.failure_threshold, 4);
    EXPECT_EQ(d.liveness.kind, ProbeSpec::Kind::Tcp);
    EXPECT_EQ(d.liveness.port, 9090);
    EXPECT_EQ(d.liveness.period, 10s) << "Kubernetes' defaults";
    EXPECT_EQ(d.liveness.timeout, 1s);
    EXPECT_EQ(d.liveness.failure_threshold, 3);
    EXPECT_EQ(d.startup.kind, ProbeSpec::Kind::Exec);
    EXPECT_EQ(d.startup.command, (std::vector<std::string>{"cat", "/tmp/ready"}));
    EXPECT_EQ(d.startup.failure_threshold, 30);

    EXPECT_EQ(d.resources.memory_bytes, 128 << 20);
    EXPECT_EQ(d.resources.cpu_millis, 500);
    EXPECT_EQ(d.resources.cpu_request_millis, 100);
    EXPECT_EQ(d.resources.pids, 64);

    ASSERT_EQ(d.volumes.size(), 4u);
    EXPECT_EQ(d.volumes[0], (VolumeMount{VolumeMount::Kind::Named, "web-data", "/var/lib/web"}));
    EXPECT_EQ(d.volumes[1], (VolumeMount{VolumeMount::Kind::Host, "/etc/web", "/etc/web", true}));
    EXPECT_EQ(d.volumes[2], (VolumeMount{VolumeMount::Kind::Empty, "", "/scratch"}));
    EXPECT_EQ(d.volumes[3], (VolumeMount{VolumeMount::Kind::Tmpfs, "", "/fast", false, 64 << 20}));

    EXPECT_TRUE(d.readonly_rootfs);
    EXPECT_EQ(d.user, "65534:100") << "container runAsUser, pod runAsGroup";
    EXPECT_EQ(d.restart_policy, runtime::RestartPolicy::OnFailure);
    EXPECT_EQ(d.hostname, "web-host");
    EXPECT_EQ(d.stop_grace, 7s);
    EXPECT_EQ(d.labels, (std::map<std::string, std::string>{{"app", "web"}, {"tier", "front"}}));
}

TEST(DeploymentConfig, Defaults) {
    auto obj = minimal_dc();
    auto d = cli::deployment_from_object(obj);
    EXPECT_FALSE(cli::deployment_paused(obj));
    EXPECT_EQ(d.replicas, 1);
    EXPECT_EQ(d.image_repository, "web");
    EXPECT_FALSE(d.automatic) << "no ImageChange trigger";
    EXPECT_EQ(d.strategy, runtime::RolloutStrategy{});
    EXPECT_FALSE(d.readiness.set());
    EXPECT_EQ(d.resources, runtime::Resources{});
    EXPECT_TRUE(d.volumes.empty());
    EXPECT_EQ(d.restart_policy, runtime::RestartPolicy::Always);
    EXPECT_EQ(d.stop_grace, 30s);
    EXPECT_TRUE(d.user.empty());
}

TEST(DeploymentConfig, SeccompCompatArchitecturesAreAnOptIn) {
    auto obj = minimal_dc();
    EXPECT_FALSE(cli::deployment_from_object(obj).seccomp_compat_arches);
    obj["spec"]["template"]["metadata"]["annotations"]["cascade.io/seccomp-compat-arches"] = "true";
    EXPECT_TRUE(cli::deployment_from_object(obj).seccomp_compat_arches);
    obj["spec"]["template"]["metadata"]["annotations"]["cascade.io/seccomp-compat-arches"] = "yes";
    EXPECT_NE(error_of(obj).find("seccomp-compat-arches] is \"yes\"; use \"true\" or \"false\""),
              std::string::npos)
        << error_of(obj);
}

TEST(DeploymentConfig, RecreateStrategyAndItsTimeout) {
    auto obj = minimal_dc();
    obj["spec"]["strategy"] = {{"type", "Recreate"}, {"recreateParams", {{"timeoutSeconds", 30}}}};
    auto d = cli::deployment_from_object(obj);
    EXPECT_EQ(d.strategy.type, runtime::RolloutStrategy::Type::Recreate);
    EXPECT_EQ(d.strategy.timeout, 30s);
}

TEST(DeploymentConfig, CpuLimitWithoutRequestRequestsTheLimit) {
    auto obj = minimal_dc();
    container(obj)["resources"] = {{"limits", {{"cpu", 2}, {"memory", "1G"}}}};
    auto d = cli::deployment_from_object(obj);
    EXPECT_EQ(d.resources.cpu_millis, 2000);
    EXPECT_EQ(d.resources.cpu_request_millis, 2000);
    EXPECT_EQ(d.resources.memory_bytes, 1000000000);
}

TEST(DeploymentConfig, NoPortIsFineWithAReadinessProbe) {
    auto obj = minimal_dc();
    container(obj).erase("ports");
    EXPECT_NE(error_of(obj).find("containers[0].ports[0].containerPort is missing"),
              std::string::npos)
        << error_of(obj);
    container(obj)["readinessProbe"] = {{"exec", {{"command", {"true"}}}}};
    auto d = cli::deployment_from_object(obj);
    EXPECT_EQ(d.container_port, 0);
    EXPECT_TRUE(d.ports.empty());
}

TEST(Deployment, KubernetesAppsV1) {
    auto obj = json::parse(R"({
      "apiVersion": "apps/v1", "kind": "Deployment",
      "metadata": {"name": "api", "labels": {"app": "api"}},
      "spec": {
        "replicas": 2,
        "selector": {"matchLabels": {"app": "api"}},
        "progressDeadlineSeconds": 90,
        "revisionHistoryLimit": 10,
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "50%", "maxUnavailable": 0}},
        "template": {
          "metadata": {"labels": {"app": "api", "extra": "x"}},
          "spec": {"containers": [{"name": "api", "image": "api:v2",
                                    "ports": [{"containerPort": 80, "protocol": "TCP"}],
                                    "imagePullPolicy": "IfNotPresent"}]}
        }
      }})");
    std::vector<std::string> warnings;
    auto d = cli::deployment_from_object(obj, &warnings);
    EXPECT_TRUE(warnings.empty()) << warnings.front();
    EXPECT_EQ(d.name, "api");
    EXPECT_EQ(d.image_repository, "api");
    EXPECT_EQ(d.image_tag, "v2");
    EXPECT_TRUE(d.automatic) << "a Deployment follows its image's stream tag";
    EXPECT_EQ(d.replicas, 2);
    EXPECT_EQ(d.strategy.max_surge, (runtime::IntOrPercent{50, true}));
    EXPECT_EQ(d.strategy.max_unavailable, (runtime::IntOrPercent{0, false}));
    EXPECT_EQ(d.strategy.timeout, 90s);
    EXPECT_EQ(d.container_port, 80);

    obj["spec"]["strategy"] = {{"type", "Recreate"}};
    EXPECT_EQ(cli::deployment_from_object(obj).strategy.type,
              runtime::RolloutStrategy::Type::Recreate);

    // OpenShift's trigger annotation names the stream tag.
    obj["metadata"]["annotations"]["image.openshift.io/triggers"] =
        R"([{"from":{"kind":"ImageStreamTag","name":"api-stream:prod"},"fieldPath":"spec.template.spec.containers[0].image","paused":"true"}])";
    d = cli::deployment_from_object(obj);
    EXPECT_EQ(d.image_repository, "api-stream");
    EXPECT_EQ(d.image_tag, "prod");
    EXPECT_FALSE(d.automatic);
}

TEST(Deployment, SelectorMustMatchTheTemplate) {
    auto obj = minimal_dc();
    obj["kind"] = "Deployment";
    EXPECT_EQ(error_of(obj),
              "Deployment \"web\": spec.selector is missing (apps/v1 needs selector.matchLabels)");
    obj["spec"]["selector"] = {{"matchLabels", {{"app", "web"}}}};
    EXPECT_EQ(error_of(obj),
              "Deployment \"web\": spec.selector.matchLabels does not select the template: "
              "spec.template.metadata.labels needs app: web");
    obj["spec"]["template"]["metadata"] = {{"labels", {{"app", "web"}}}};
    EXPECT_EQ(error_of(obj), "");
    obj["spec"]["strategy"] = {{"type", "Rolling"}};
    EXPECT_EQ(error_of(obj),
              "Deployment \"web\": spec.strategy.type \"Rolling\" is not supported "
              "(RollingUpdate, Recreate)");
}

struct ErrorCase {
    const char* what;
    std::function<void(json&)> change;
    const char* message;
};

TEST(DeploymentConfig, EachErrorNamesTheFieldAndWhatIsSupported) {
    const std::string c = "DeploymentConfig \"web\": spec.template.spec.containers[0].";
    std::vector<ErrorCase> cases = {
        {"negative replicas", [](json& o) { o["spec"]["replicas"] = -1; },
         "DeploymentConfig \"web\": spec.replicas must be at least 0"},
        {"replicas not a number", [](json& o) { o["spec"]["replicas"] = "two"; },
         "DeploymentConfig \"web\": spec.replicas must be an integer"},
        {"strategy type",
         [](json& o) {
             o["spec"]["strategy"] = {{"type", "Custom"}};
         },
         "DeploymentConfig \"web\": spec.strategy.type \"Custom\" is not supported (Rolling, "
         "Recreate)"},
        {"maxSurge text",
         [](json& o) {
             o["spec"]["strategy"] = {{"rollingParams", {{"maxSurge", "two"}}}};
         },
         "DeploymentConfig \"web\": spec.strategy.rollingParams.maxSurge must be a count (e.g. 1) "
         "or a percentage of the replicas (e.g. \"25%\"), not \"two\""},
        {"maxUnavailable over 100%",
         [](json& o) {
             o["spec"]["strategy"] = {{"rollingParams", {{"maxUnavailable", "150%"}}}};
         },
         "DeploymentConfig \"web\": spec.strategy.rollingParams.maxUnavailable must not be more "
         "than 100%"},
        {"both zero",
         [](json& o) {
             o["spec"]["strategy"] = {
                 {"rollingParams", {{"maxUnavailable", 0}, {"maxSurge", "0%"}}}};
         },
         "DeploymentConfig \"web\": spec.strategy.rollingParams maxSurge and maxUnavailable must "
         "not both be 0 (no replica could be replaced)"},
        {"timeout zero",
         [](json& o) {
             o["spec"]["strategy"] = {{"rollingParams", {{"timeoutSeconds", 0}}}};
         },
         "DeploymentConfig \"web\": spec.strategy.rollingParams.timeoutSeconds must be at least 1"},
        {"two containers",
         [](json& o) {
             auto& cs = o["spec"]["template"]["spec"]["containers"];
             cs.push_back(cs[0]);
         },
         "DeploymentConfig \"web\": spec.template.spec.containers has 2 containers; only one "
         "container per pod is supported for now"},
        {"valueFrom",
         [](json& o) {
             container(o)["env"] = {{{"name", "A"}, {"valueFrom", {{"secretKeyRef", {}}}}}};
         },
         "env[0].valueFrom is not supported (configMapKeyRef, secretKeyRef, fieldRef need a "
         "cluster): set value"},
        {"env without name",
         [](json& o) {
             container(o)["env"] = {{{"value", "x"}}};
         },
         "env[0].name is missing"},
        {"port out of range",
         [](json& o) {
             container(o)["ports"] = {{{"containerPort", 70000}}};
         },
         "ports[0].containerPort must be at most 65535"},
        {"port twice",
         [](json& o) {
             container(o)["ports"] = {{{"containerPort", 80}}, {{"containerPort", 80}}};
         },
         "ports[1].containerPort 80 is declared twice"},
        {"unknown named probe port",
         [](json& o) {
             container(o)["readinessProbe"] = {{"tcpSocket", {{"port", "web"}}}};
         },
         "readinessProbe.tcpSocket.port \"web\" names no port of the container (named ports: "
         "none)"},
        {"probe without handler",
         [](json& o) {
             container(o)["livenessProbe"] = {{"periodSeconds", 5}};
         },
         "livenessProbe needs one of tcpSocket, httpGet, exec"},
        {"probe with two handlers",
         [](json& o) {
             container(o)["livenessProbe"] = {{"tcpSocket", {{"port", 8080}}},
                                              {"exec", {{"command", {"true"}}}}};
         },
         "livenessProbe has more than one handler (tcpSocket, exec); set exactly one of "
         "tcpSocket, httpGet, exec"},
        {"grpc probe",
         [](json& o) {
             container(o)["readinessProbe"] = {{"grpc", {{"port", 8080}}}};
         },
         "readinessProbe.grpc is not supported (tcpSocket, httpGet, exec)"},
        {"https probe",
         [](json& o) {
             container(o)["readinessProbe"] = {{"httpGet", {{"port", 8080}, {"scheme", "HTTPS"}}}};
         },
         "readinessProbe.httpGet.scheme \"HTTPS\" is not supported (HTTP)"},
        {"probe path",
         [](json& o) {
             container(o)["readinessProbe"] = {{"httpGet", {{"port", 8080}, {"path", "x"}}}};
         },
         "readinessProbe.httpGet.path must start with / (got \"x\")"},
        {"liveness success threshold",
         [](json& o) {
             container(o)["livenessProbe"] = {{"tcpSocket", {{"port", 8080}}},
                                              {"successThreshold", 2}};
         },
         "livenessProbe.successThreshold must be 1 for liveness and startup probes"},
        {"probe period",
         [](json& o) {
             container(o)["readinessProbe"] = {{"tcpSocket", {{"port", 8080}}},
                                               {"periodSeconds", 0}};
         },
         "readinessProbe.periodSeconds must be at least 1"},
        {"empty exec",
         [](json& o) {
             container(o)["startupProbe"] = {{"exec", {{"command", json::array()}}}};
         },
         "startupProbe.exec.command must not be empty"},
        {"bad memory",
         [](json& o) {
             container(o)["resources"] = {{"limits", {{"memory", "12x"}}}};
         },
         "resources.limits.memory \"12x\" is not a quantity"},
        {"bad cpu",
         [](json& o) {
             container(o)["resources"] = {{"limits", {{"cpu", "half"}}}};
         },
         "resources.limits.cpu \"half\" is not a quantity"},
        {"zero memory limit",
         [](json& o) {
             container(o)["resources"] = {{"limits", {{"memory", 0}}}};
         },
         "resources.limits.memory must be more than 0 (leave it out for no limit)"},
        {"request over limit",
         [](json& o) {
             container(o)["resources"] = {{"limits", {{"cpu", "1"}}}, {"requests", {{"cpu", "2"}}}};
         },
         "resources.requests.cpu must not be more than limits.cpu"},
        {"mount of an undeclared volume",
         [](json& o) {
             container(o)["volumeMounts"] = {{{"name", "data"}, {"mountPath", "/data"}}};
         },
         "volumeMounts[0].name \"data\" is not in spec.template.spec.volumes (declared: none)"},
        {"relative mount path",
         [](json& o) {
             o["spec"]["template"]["spec"]["volumes"] = {
                 {{"name", "d"}, {"emptyDir", json::object()}}};
             container(o)["volumeMounts"] = {{{"name", "d"}, {"mountPath", "data"}}};
         },
         "volumeMounts[0].mountPath must be an absolute path (got \"data\")"},
        {"subPath",
         [](json& o) {
             o["spec"]["template"]["spec"]["volumes"] = {
                 {{"name", "d"}, {"emptyDir", json::object()}}};
             container(o)["volumeMounts"] = {
                 {{"name", "d"}, {"mountPath", "/d"}, {"subPath", "x"}}};
         },
         "volumeMounts[0].subPath is not supported: mount the whole volume"},
        {"read-only root not a bool",
         [](json& o) {
             container(o)["securityContext"] = {{"readOnlyRootFilesystem", "yes"}};
         },
         "securityContext.readOnlyRootFilesystem must be true or false"},
        {"privileged",
         [](json& o) {
             container(o)["securityContext"] = {{"privileged", true}};
         },
         "securityContext.privileged true is not supported"},
        {"non-root as root",
         [](json& o) {
             container(o)["securityContext"] = {{"runAsUser", 0}, {"runAsNonRoot", true}};
         },
         "securityContext.runAsNonRoot is true but runAsUser is 0"},
        {"working dir", [](json& o) { container(o)["workingDir"] = "srv"; },
         "workingDir must be an absolute path (got \"srv\")"},
        {"envFrom", [](json& o) { container(o)["envFrom"] = json::array({json::object()}); },
         "envFrom is not supported: set env[] entries with a value"},
    };
    for (const auto& tc : cases) {
        auto obj = minimal_dc();
        tc.change(obj);
        std::string msg = error_of(obj);
        EXPECT_NE(msg.find(tc.message), std::string::npos)
            << tc.what << ":\n  got:      " << msg << "\n  expected: " << tc.message;
        if (std::string(tc.message).rfind("DeploymentConfig", 0) != 0) {
            EXPECT_EQ(msg.rfind(c, 0), 0u) << tc.what << ": " << msg;
        }
    }
}

TEST(DeploymentConfig, PodLevelErrors) {
    const std::string p = "DeploymentConfig \"web\": spec.template.spec.";
    std::vector<ErrorCase> cases = {
        {"restart policy",
         [](json& o) { o["spec"]["template"]["spec"]["restartPolicy"] = "Sometimes"; },
         "restartPolicy \"Sometimes\" is not supported (Always, OnFailure, Never)"},
        {"hostname", [](json& o) { o["spec"]["template"]["spec"]["hostname"] = "Web_Host"; },
         "hostname \"Web_Host\" is not a host name"},
        {"grace",
         [](json& o) { o["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = -1; },
         "terminationGracePeriodSeconds must be at least 0"},
        {"init containers",
         [](json& o) {
             o["spec"]["template"]["spec"]["initContainers"] = {{{"name", "x"}}};
         },
         "initContainers are not supported (one container per pod)"},
        {"volume source",
         [](json& o) {
             o["spec"]["template"]["spec"]["volumes"] = {
                 {{"name", "c"}, {"configMap", {{"name", "x"}}}}};
         },
         "volumes[0].configMap is not a supported volume source (persistentVolumeClaim, hostPath, "
         "emptyDir)"},
        {"volume twice",
         [](json& o) {
             o["spec"]["template"]["spec"]["volumes"] = {
                 {{"name", "c"}, {"emptyDir", json::object()}},
                 {{"name", "c"}, {"emptyDir", json::object()}}};
         },
         "volumes[1].name \"c\" is declared twice"},
        {"claim name",
         [](json& o) {
             o["spec"]["template"]["spec"]["volumes"] = {
                 {{"name", "c"}, {"persistentVolumeClaim", {{"claimName", "Bad/Name"}}}}};
         },
         "volumes[0].persistentVolumeClaim.claimName \"Bad/Name\" is not a volume name"},
        {"relative host path",
         [](json& o) {
             o["spec"]["template"]["spec"]["volumes"] = {
                 {{"name", "c"}, {"hostPath", {{"path", "etc"}}}}};
         },
         "volumes[0].hostPath.path must be an absolute path (got \"etc\")"},
        {"emptyDir medium",
         [](json& o) {
             o["spec"]["template"]["spec"]["volumes"] = {
                 {{"name", "c"}, {"emptyDir", {{"medium", "HugePages"}}}}};
         },
         "volumes[0].emptyDir.medium \"HugePages\" is not supported (\"\", Memory)"},
        {"tmpfs size",
         [](json& o) {
             o["spec"]["template"]["spec"]["volumes"] = {
                 {{"name", "c"}, {"emptyDir", {{"medium", "Memory"}, {"sizeLimit", "lots"}}}}};
         },
         "volumes[0].emptyDir.sizeLimit \"lots\" is not a quantity"},
    };
    for (const auto& tc : cases) {
        auto obj = minimal_dc();
        tc.change(obj);
        std::string msg = error_of(obj);
        EXPECT_EQ(msg.rfind(p, 0), 0u) << tc.what << ": " << msg;
        EXPECT_NE(msg.find(tc.message), std::string::npos)
            << tc.what << ":\n  got:      " << msg << "\n  expected: " << tc.message;
    }
}

TEST(DeploymentConfig, UnknownFieldsAreWarningsNotErrors) {
    auto obj = minimal_dc();
    obj["spec"]["minReadySeconds"] = 5;
    container(obj)["tty"] = true;
    container(obj)["readinessProbe"] = {{"tcpSocket", {{"port", 8080}}},
                                        {"terminationGracePeriodSeconds", 3}};
    container(obj)["resources"] = {{"limits", {{"nvidia.com/gpu", 1}}}};
    obj["spec"]["template"]["spec"]["volumes"] = {
        {{"name", "unused"}, {"emptyDir", json::object()}}};
    std::vector<std::string> warnings;
    auto d = cli::deployment_from_object(obj, &warnings);
    EXPECT_EQ(d.container_port, 8080);
    auto has = [&](const std::string& text) {
        return std::any_of(warnings.begin(), warnings.end(),
                           [&](const std::string& w) { return w.find(text) != std::string::npos; });
    };
    ASSERT_EQ(warnings.size(), 5u);
    EXPECT_TRUE(
        has("DeploymentConfig \"web\": spec.minReadySeconds is not supported and is "
            "ignored (supported: replicas, selector, template, strategy, triggers, paused)"));
    EXPECT_TRUE(has("spec.template.spec.containers[0].tty is not supported and is ignored"));
    EXPECT_TRUE(has("readinessProbe.terminationGracePeriodSeconds is not supported"));
    EXPECT_TRUE(
        has("resources.limits.nvidia.com/gpu is not supported and is ignored (supported: "
            "memory, cpu, pids)"));
    EXPECT_TRUE(has("volumes \"unused\" is not mounted by the container"));
}

TEST(DeploymentConfig, TheExampleParsesWithoutWarnings) {
    for (const auto& obj :
         cli::load_objects(std::filesystem::path(CASCADE_SOURCE_DIR) / "examples/image-stream")) {
        if (obj.value("kind", "") != "DeploymentConfig") continue;
        std::vector<std::string> warnings;
        auto d = cli::deployment_from_object(obj, &warnings);
        EXPECT_TRUE(warnings.empty()) << warnings.front();
        EXPECT_EQ(d.container_port, 8080);
        EXPECT_TRUE(d.automatic);
    }
}

TEST(Route, HostBecomesTheHostname) {
    auto obj = json::parse(R"({"kind": "Route", "metadata": {"name": "r"},
        "spec": {"host": "app-a.localhost", "to": {"name": "web"}}})");
    EXPECT_EQ(cli::route_from_object(obj).hostname, "app-a.localhost");
    obj["spec"].erase("host");
    EXPECT_EQ(cli::route_from_object(obj).hostname, "") << "the default is the daemon's";
    for (const char* bad : {"App.localhost", "a..b", "-a.b", "a-.b", "a b", "a_b"}) {
        obj["spec"]["host"] = bad;
        try {
            cli::route_from_object(obj);
            ADD_FAILURE() << bad << " accepted";
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find("Route \"r\": spec.host"), std::string::npos)
                << e.what();
        }
    }
}

}  // namespace
