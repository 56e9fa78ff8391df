// Declared objects → specs: the fields the example uses, and errors that name
// the object and field.
#include "cli/objects.hpp"

#include <gtest/gtest.h>

#include "oci/error.hpp"
#include "oci/fs.hpp"

using namespace cascade;
using nlohmann::json;

namespace {

TEST(Yaml, ScalarsAreTypedByTheCoreSchema) {
    auto docs =
        cli::yaml_documents_to_json("a: 1\nb: \"1\"\nc: true\nd: ~\ne: 1.5\nf: text\ng: [x, 2]\n");
    ASSERT_EQ(docs.size(), 1u);
    auto& d = docs[0];
    EXPECT_EQ(d["a"], 1);
    EXPECT_EQ(d["b"], "1");
    EXPECT_EQ(d["c"], true);
    EXPECT_TRUE(d["d"].is_null());
    EXPECT_EQ(d["e"], 1.5);
    EXPECT_EQ(d["f"], "text");
    EXPECT_EQ(d["g"], json::array({"x", 2}));
}

TEST(Yaml, SyntaxErrorsCarryTheLine) {
    try {
        cli::yaml_documents_to_json("a: 1\nb: [unclosed\n");
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("line"), std::string::npos) << e.what();
    }
}

TEST(Yaml, JsonToYamlReadsBackToTheSameValue) {
    auto value = nlohmann::json::parse(R"({
        "kind": "List", "n": 3, "f": 1.5, "yes": true, "none": null, "empty": "",
        "numeric": "8080", "boolean": "true", "nul": "null", "colon": "a: b", "dash": "- x",
        "hash": "# c", "multi": "line one\nline two\n", "noeol": "a\nb", "list": [1, "2", {}],
        "nested": {"labels": {"app": "app-a"}, "items": []}})");
    auto text = cascade::cli::json_to_yaml(value);
    auto back = cascade::cli::yaml_documents_to_json(text);
    ASSERT_EQ(back.size(), 1u) << text;
    EXPECT_EQ(back[0], value) << text;
    EXPECT_NE(text.find("kind: List"), std::string::npos) << text;
    EXPECT_NE(text.find("numeric: \"8080\""), std::string::npos) << text;
}

TEST(LoadObjects, ListsAndDocumentsFlattenAndContextDirsBecomeAbsolute) {
    fs::TempDir dir;
    fs::write_file_atomic(dir.path() / "a.yaml", R"(apiVersion: v1
kind: List
items:
- kind: BuildConfig
  metadata: {name: one}
  spec:
    source: {contextDir: sub}
    output: {to: {kind: ImageStreamTag, name: "one:v1"}}
---
kind: Route
metadata: {name: r}
spec: {to: {name: d}}
)");
    fs::write_file_atomic(dir.path() / "b.json",
                          R"({"kind":"ImageStream","metadata":{"name":"s"}})");
    fs::write_file_atomic(dir.path() / "notes.txt", "ignored");
    auto objs = cli::load_objects(dir.path());
    ASSERT_EQ(objs.size(), 3u);
    EXPECT_EQ(objs[0]["kind"], "BuildConfig");
    EXPECT_EQ(objs[0]["spec"]["source"]["contextDir"],
              std::filesystem::weakly_canonical(dir.path() / "sub").string());
    EXPECT_EQ(objs[1]["kind"], "Route");
    EXPECT_EQ(objs[2]["kind"], "ImageStream");
}

TEST(BuildConfig, FieldsOfTheExample) {
    auto obj = json::parse(R"({
      "kind": "BuildConfig", "metadata": {"name": "app-a"},
      "spec": {
        "source": {"contextDir": "/ctx"},
        "strategy": {"dockerStrategy": {"from": {"kind": "ImageStreamTag", "name": "httpd-base:latest"},
                                        "buildArgs": [{"name": "V", "value": "1"}],
                                        "dockerfilePath": "build/Dockerfile"}},
        "output": {"to": {"kind": "ImageStreamTag", "name": "app-a:v2"}},
        "triggers": [{"type": "ImageChange"}]
      }})");
    auto spec = cli::build_config_from_object(obj);
    EXPECT_EQ(spec.name, "app-a");
    EXPECT_EQ(spec.context, "/ctx");
    EXPECT_EQ(spec.dockerfile, "build/Dockerfile");
    EXPECT_EQ(spec.from_override, "httpd-base:latest");
    EXPECT_EQ(spec.build_args.at("V"), "1");
    EXPECT_EQ(spec.output_repository, "app-a");
    EXPECT_EQ(spec.output_tag, "v2");
    EXPECT_TRUE(spec.image_change_trigger);
    EXPECT_FALSE(spec.config_change_trigger);
}

TEST(BuildConfig, ErrorsNameObjectAndField) {
    auto obj = json::parse(R"({"kind": "BuildConfig", "metadata": {"name": "x"},
                               "spec": {"source": {"contextDir": "/c"}}})");
    try {
        cli::build_config_from_object(obj);
        FAIL();
    } catch (const Error& e) {
        EXPECT_STREQ(e.what(), "BuildConfig \"x\": spec.output.to.name is missing");
    }
    obj["spec"]["output"] = {{"to", {{"name", "x:latest"}}}};
    obj["spec"]["triggers"] = json::array({{{"type", "Cron"}}});
    EXPECT_THROW(cli::build_config_from_object(obj), Error);
    obj["metadata"]["name"] = "Upper";
    EXPECT_THROW(cli::build_config_from_object(obj), Error);
}

TEST(DeploymentConfig, FollowsTheImageChangeTriggerTag) {
    auto obj = json::parse(R"({
      "kind": "DeploymentConfig", "metadata": {"name": "web"},
      "spec": {"replicas": 3,
               "template": {"spec": {"containers": [{"name": "web", "image": "ignored:old",
                   "ports": [{"containerPort": 8080}], "env": [{"name": "A", "value": "b"}]}]}},
               "triggers": [{"type": "ImageChange", "imageChangeParams": {"automatic": true,
                   "from": {"kind": "ImageStreamTag", "name": "web:prod"}}}]}})");
    auto d = cli::deployment_from_object(obj);
    EXPECT_EQ(d.replicas, 3);
    EXPECT_EQ(d.image_repository, "web");
    EXPECT_EQ(d.image_tag, "prod");
    EXPECT_EQ(d.container_port, 8080);
    EXPECT_EQ(d.env, std::vector<std::string>{"A=b"});
    EXPECT_TRUE(d.automatic);
    EXPECT_EQ(d.stop_grace, std::chrono::seconds(30)) << "the default grace period";
    obj["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 3;
    EXPECT_EQ(cli::deployment_from_object(obj).stop_grace, std::chrono::seconds(3));

    obj["spec"]["template"]["spec"]["containers"][0].erase("ports");
    EXPECT_THROW(cli::deployment_from_object(obj), Error);
}

TEST(Route, HostPortAnnotation) {
    auto obj = json::parse(R"({"kind": "Route", "metadata": {"name": "r",
        "annotations": {"cascade.io/host-port": "8099"}}, "spec": {"to": {"name": "web"}}})");
    auto r = cli::route_from_object(obj);
    EXPECT_EQ(r.port, 8099);
    EXPECT_EQ(r.deployment, "web");
    EXPECT_EQ(r.host, "127.0.0.1");
    obj["metadata"]["annotations"]["cascade.io/host-port"] = "http";
    EXPECT_THROW(cli::route_from_object(obj), Error);
}

TEST(StreamTag, Split) {
    EXPECT_EQ(cli::split_stream_tag("a"), std::make_pair(std::string("a"), std::string("latest")));
    EXPECT_EQ(cli::split_stream_tag("a:1"), std::make_pair(std::string("a"), std::string("1")));
    EXPECT_EQ(cli::split_stream_tag("host:5000/a"),
              std::make_pair(std::string("host:5000/a"), std::string("latest")));
}

}  // namespace
