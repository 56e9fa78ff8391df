// ImageStream aliases and lookupPolicy, Service, Route to a Service,
// DeploymentConfig triggers, labels and unknown-field warnings
// (cli/objects.hpp).
#include <gtest/gtest.h>

#include "cli/objects.hpp"
#include "oci/error.hpp"

using namespace cascade;
using nlohmann::json;

namespace {

std::string error_of(const std::function<void()>& fn) {
    try {
        fn();
    } catch (const Error& e) {
        return e.what();
    }
    return "(no error)";
}

bool has(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

TEST(ImageStream, ImageStreamTagIsAnAliasAndDockerImageAnImport) {
    auto obj = json::parse(R"({"kind": "ImageStream", "metadata": {"name": "os"},
        "spec": {"lookupPolicy": {"local": true}, "tags": [
          {"name": "upstream", "from": {"kind": "DockerImage", "name": "127.0.0.1:5001/os:1"},
           "importPolicy": {"scheduled": true, "insecure": true}},
          {"name": "stable", "from": {"kind": "ImageStreamTag", "name": "upstream"}},
          {"name": "base", "from": {"kind": "ImageStreamTag", "name": "other:v2"}},
          {"name": "plain"}]}})");
    auto imports = cli::image_stream_imports_from_object(obj);
    ASSERT_EQ(imports.size(), 1u);
    EXPECT_EQ(imports[0].tag, "upstream");
    EXPECT_TRUE(imports[0].scheduled);
    EXPECT_TRUE(imports[0].insecure);
    auto aliases = cli::image_stream_aliases_from_object(obj);
    ASSERT_EQ(aliases.size(), 2u);
    EXPECT_EQ(aliases[0].repository, "os");
    EXPECT_EQ(aliases[0].tag, "stable");
    EXPECT_EQ(aliases[0].source_repository, "os");
    EXPECT_EQ(aliases[0].source_tag, "upstream");
    EXPECT_EQ(aliases[1].source_repository, "other");
    EXPECT_EQ(aliases[1].source_tag, "v2");
    EXPECT_TRUE(cli::image_stream_lookup_local(obj));
    EXPECT_TRUE(cli::unknown_field_warnings(obj).empty());
}

TEST(ImageStream, AliasErrors) {
    auto self = json::parse(R"({"kind": "ImageStream", "metadata": {"name": "os"},
        "spec": {"tags": [{"name": "a", "from": {"kind": "ImageStreamTag", "name": "os:a"}}]}})");
    EXPECT_TRUE(has(error_of([&] { cli::image_stream_aliases_from_object(self); }),
                    "spec.tags[0] is an alias of itself"));
    auto kind = json::parse(R"({"kind": "ImageStream", "metadata": {"name": "os"},
        "spec": {"tags": [{"name": "a", "from": {"kind": "ImageStreamImage", "name": "x"}}]}})");
    auto e = error_of([&] { cli::image_stream_imports_from_object(kind); });
    EXPECT_TRUE(has(e, "spec.tags[0].from.kind \"ImageStreamImage\" is not supported")) << e;
    EXPECT_TRUE(has(e, "ImageStreamTag")) << e;
    auto local = json::parse(R"({"kind": "ImageStream", "metadata": {"name": "os"},
        "spec": {"lookupPolicy": {"local": "yes"}}})");
    EXPECT_TRUE(has(error_of([&] { cli::image_stream_lookup_local(local); }),
                    "spec.lookupPolicy.local must be true or false"));
}

TEST(Service, SelectorAndPorts) {
    auto obj = json::parse(R"({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "app-a", "labels": {"app": "app-a"}},
        "spec": {"selector": {"app": "app-a", "tier": "web"},
                 "ports": [{"name": "web", "port": 80, "targetPort": 8080, "protocol": "TCP"},
                           {"name": "admin", "port": 81, "targetPort": "admin"}]}})");
    auto s = cli::service_from_object(obj);
    EXPECT_EQ(s.name, "app-a");
    EXPECT_EQ(s.selector.at("tier"), "web");
    ASSERT_EQ(s.ports.size(), 2u);
    EXPECT_EQ(s.ports[0].port, 80);
    EXPECT_EQ(s.ports[0].target_port, "8080");
    EXPECT_EQ(s.ports[1].target_port, "admin");
    EXPECT_TRUE(cli::selector_matches(s.selector, {{"app", "app-a"}, {"tier", "web"}, {"x", "y"}}));
    EXPECT_FALSE(cli::selector_matches(s.selector, {{"app", "app-a"}}));
    EXPECT_FALSE(cli::selector_matches({}, {{"app", "app-a"}}));
}

TEST(Service, ErrorsNameTheField) {
    auto base = json::parse(R"({"kind": "Service", "metadata": {"name": "s"},
        "spec": {"selector": {"app": "a"}, "ports": [{"port": 80}]}})");
    EXPECT_EQ(cli::service_from_object(base).ports[0].target_port, "80");
    auto udp = base;
    udp["spec"]["ports"][0]["protocol"] = "UDP";
    auto e = error_of([&] { cli::service_from_object(udp); });
    EXPECT_TRUE(has(e, "Service \"s\": spec.ports[0].protocol \"UDP\" is not supported (TCP)"))
        << e;
    auto noselector = base;
    noselector["spec"].erase("selector");
    EXPECT_TRUE(has(error_of([&] { cli::service_from_object(noselector); }), "spec.selector"));
    auto badport = base;
    badport["spec"]["ports"][0]["port"] = 70000;
    EXPECT_TRUE(has(error_of([&] { cli::service_from_object(badport); }), "spec.ports[0].port"));
    auto badtarget = base;
    badtarget["spec"]["ports"][0]["targetPort"] = "-x-";
    EXPECT_TRUE(
        has(error_of([&] { cli::service_from_object(badtarget); }), "spec.ports[0].targetPort"));
    auto twoUnnamed = base;
    twoUnnamed["spec"]["ports"].push_back({{"port", 81}});
    EXPECT_TRUE(has(error_of([&] { cli::service_from_object(twoUnnamed); }), ".name is missing"));
}

TEST(Route, ToKindIsServiceOrDeployment) {
    auto obj = json::parse(R"({"kind": "Route", "metadata": {"name": "r"},
        "spec": {"to": {"kind": "Service", "name": "app-a"}, "port": {"targetPort": "web"}}})");
    EXPECT_EQ(cli::route_target_kind(obj), "Service");
    EXPECT_EQ(cli::route_from_object(obj).deployment, "app-a");  // resolved by apply
    obj["spec"]["to"].erase("kind");
    EXPECT_EQ(cli::route_target_kind(obj), "DeploymentConfig");
    obj["spec"]["to"]["kind"] = "Ingress";
    auto e = error_of([&] { cli::route_from_object(obj); });
    EXPECT_TRUE(has(e, "spec.to.kind \"Ingress\" is not supported (Service, DeploymentConfig"))
        << e;
}

json deployment_config(const json& triggers) {
    auto obj = json::parse(R"({"kind": "DeploymentConfig", "metadata": {"name": "web"},
        "spec": {"replicas": 1, "template": {"metadata": {"labels": {"app": "web"}},
          "spec": {"containers": [{"name": "httpd", "image": "web:latest",
                                   "ports": [{"containerPort": 8080}]}]}}}})");
    if (!triggers.is_null()) obj["spec"]["triggers"] = triggers;
    return obj;
}

TEST(DeploymentConfig, Triggers) {
    // No triggers: OpenShift's default, ConfigChange.
    EXPECT_TRUE(cli::deployment_config_change(deployment_config(nullptr)));
    auto image_only = deployment_config(json::parse(R"([{"type": "ImageChange",
        "imageChangeParams": {"automatic": false, "containerNames": ["httpd"],
                              "from": {"kind": "ImageStreamTag", "name": "web:prod"}}}])"));
    EXPECT_FALSE(cli::deployment_config_change(image_only));
    auto spec = cli::deployment_from_object(image_only);
    EXPECT_FALSE(spec.automatic);
    EXPECT_EQ(spec.image_tag, "prod");
    auto both = deployment_config(json::parse(
        R"([{"type": "ConfigChange"}, {"type": "ImageChange", "imageChangeParams":
             {"from": {"kind": "ImageStreamTag", "name": "web:latest"}}}])"));
    EXPECT_TRUE(cli::deployment_config_change(both));
    EXPECT_TRUE(cli::deployment_from_object(both).automatic);
    // A Deployment always rolls out its template changes.
    auto k8s = image_only;
    k8s["kind"] = "Deployment";
    EXPECT_TRUE(cli::deployment_config_change(k8s));
}

TEST(DeploymentConfig, ContainerNamesMustNameTemplateContainers) {
    auto obj = deployment_config(json::parse(R"([{"type": "ImageChange",
        "imageChangeParams": {"containerNames": ["web"],
                              "from": {"kind": "ImageStreamTag", "name": "web:latest"}}}])"));
    auto e = error_of([&] { cli::deployment_from_object(obj); });
    EXPECT_TRUE(has(e, "containerNames: \"web\" is not a container")) << e;
    EXPECT_TRUE(has(e, "declared: httpd")) << e;
    obj["spec"]["triggers"][0]["imageChangeParams"]["automatic"] = "no";
    EXPECT_TRUE(has(error_of([&] { cli::deployment_from_object(obj); }),
                    "automatic must be true or false"));
}

TEST(Labels, KubernetesSyntax) {
    auto obj = json::parse(R"({"kind": "Route", "metadata": {"name": "r", "labels": {
        "app": "app-a", "app.kubernetes.io/name": "a_b.c-1", "empty": ""}}})");
    auto labels = cli::object_labels(obj);
    EXPECT_EQ(labels.size(), 3u);
    EXPECT_EQ(labels.at("app.kubernetes.io/name"), "a_b.c-1");
    for (const auto& [key, value] :
         std::vector<std::pair<std::string, std::string>>{{"-app", "x"},
                                                          {"Bad_Prefix/x", "x"},
                                                          {std::string(64, 'a'), "x"},
                                                          {"app", "has space"},
                                                          {"app", "x-"},
                                                          {"app", std::string(64, 'v')}}) {
        auto bad = obj;
        bad["metadata"]["labels"] = {{key, value}};
        auto e = error_of([&] { cli::object_labels(bad); });
        EXPECT_TRUE(has(e, "Route \"r\": metadata.labels")) << e;
        EXPECT_TRUE(has(e, key.substr(0, 10))) << e;
    }
    auto notmap = obj;
    notmap["metadata"]["labels"] = json::array({"app"});
    EXPECT_TRUE(has(error_of([&] { cli::object_labels(notmap); }), "must be a map"));
}

TEST(UnknownFields, WarningsNameTheFieldPath) {
    auto obj = json::parse(R"({"apiVersion": "v1", "kind": "Service", "colour": "red",
        "metadata": {"name": "s", "owner": "me", "labels": {"app": "a"}},
        "spec": {"selector": {"app": "a"}, "loadBalancerIP": "1.2.3.4",
                 "ports": [{"port": 80, "nodePort": 30080}]}})");
    auto w = cli::unknown_field_warnings(obj);
    std::string all;
    for (const auto& s : w)
        all += s + "\n";
    EXPECT_EQ(w.size(), 4u) << all;
    EXPECT_TRUE(has(all, "Service \"s\": colour is not supported")) << all;
    EXPECT_TRUE(has(all, "metadata.owner")) << all;
    EXPECT_TRUE(has(all, "spec.loadBalancerIP")) << all;
    EXPECT_TRUE(has(all, "spec.ports[0].nodePort")) << all;
    auto is = json::parse(R"({"kind": "ImageStream", "metadata": {"name": "os"},
        "spec": {"tags": [{"name": "a", "frm": {}}], "lookupPolicy": {"global": true}}})");
    w = cli::unknown_field_warnings(is);
    ASSERT_EQ(w.size(), 2u);
    EXPECT_TRUE(has(w[0] + w[1], "spec.tags[0].frm"));
    EXPECT_TRUE(has(w[0] + w[1], "spec.lookupPolicy.global"));
    auto route = json::parse(R"({"kind": "Route", "metadata": {"name": "r"},
        "spec": {"to": {"kind": "Service", "name": "s"}, "tls": {}}})");
    w = cli::unknown_field_warnings(route);
    ASSERT_EQ(w.size(), 1u);
    EXPECT_TRUE(has(w[0], "spec.tls")) << w[0];
    // BuildConfig: below spec too, only what cascade acts on is known.
    auto bc = json::parse(R"({"kind": "BuildConfig", "metadata": {"name": "b"},
        "spec": {"source": {"git": {"uri": "file:///r", "ref": "main", "httpProxy": "p"},
                            "contextDir": "app"},
                 "strategy": {"type": "Docker",
                              "dockerStrategy": {"env": [], "forcePull": true}},
                 "output": {"to": {"kind": "ImageStreamTag", "name": "b:latest"},
                            "imageLabels": []},
                 "triggers": [{"type": "Generic", "generic": {"secret": "s", "allowEnv": true}},
                              {"type": "ConfigChange", "gitlab": {}}],
                 "postCommit": {"script": "true", "shell": "sh"}}})");
    w = cli::unknown_field_warnings(bc);
    all.clear();
    for (const auto& s : w)
        all += s + "\n";
    EXPECT_EQ(w.size(), 6u) << all;
    for (const char* field : {"spec.source.git.httpProxy", "spec.strategy.dockerStrategy.forcePull",
                              "spec.output.imageLabels", "spec.triggers[0].generic.allowEnv",
                              "spec.triggers[1].gitlab", "spec.postCommit.shell"})
        EXPECT_TRUE(has(all, field)) << field << "\n" << all;
}

}  // namespace
