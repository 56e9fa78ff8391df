// The template processor: parameter values (given, default, generated),
// ${PARAM} and ${{PARAM}} substitution, labels, message, and its errors.
#include "cli/template.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <set>

#include "cli/objects.hpp"
#include "oci/error.hpp"
#include "oci/fs.hpp"

using namespace cascade;
using nlohmann::json;

namespace {

json yaml(const std::string& text) {
    auto docs = cli::yaml_documents_to_json(text);
    EXPECT_EQ(docs.size(), 1u);
    return docs.at(0);
}

// The message of the error `fn` throws ("" when none).
template <typename Fn>
std::string error_of(Fn fn) {
    try {
        fn();
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

const char* kTemplate = R"yaml(
apiVersion: template.openshift.io/v1
kind: Template
metadata:
  name: web
message: "Open http://${HOST}/ (password ${PASSWORD})"
labels:
  app: ${NAME}
  template: web
parameters:
- name: NAME
  displayName: Application name
  description: the name of every object
  value: demo
- name: HOST
  required: true
- name: REPLICAS
  value: "2"
- name: PAUSED
  value: "false"
- name: PASSWORD
  generate: expression
  from: '[a-zA-Z0-9]{40}'
objects:
- apiVersion: image.openshift.io/v1
  kind: ImageStream
  metadata:
    name: ${NAME}
    namespace: elsewhere
    labels:
      app: mine
      tier: front
- apiVersion: apps.openshift.io/v1
  kind: DeploymentConfig
  metadata:
    name: ${NAME}
  spec:
    replicas: ${{REPLICAS}}
    paused: ${{PAUSED}}
    selector:
      name: ${NAME}
    template:
      metadata:
        labels:
          name: ${NAME}
      spec:
        containers:
        - name: web
          image: ${NAME}:latest
          env:
          - name: URL
            value: http://${HOST}:${REPLICAS}/${NAME}/${UNKNOWN}/${{REPLICAS}}
          - name: PASSWORD
            value: ${PASSWORD}
- apiVersion: route.openshift.io/v1
  kind: Route
  metadata:
    name: ${NAME}
    annotations:
      ${NAME}.example/key: ${NAME}
  spec:
    host: ${HOST}
    to:
      kind: Service
      name: ${NAME}
)yaml";

TEST(Template, SubstitutesParametersInNestedStringsAndKeys) {
    auto p = cli::process_template(yaml(kTemplate), {{"HOST", "web.local"}, {"NAME", "shop"}});
    EXPECT_EQ(p.name, "web");
    ASSERT_EQ(p.objects.size(), 3u);
    const auto& dc = p.objects[1];
    EXPECT_EQ(dc["metadata"]["name"], "shop");
    EXPECT_EQ(dc["spec"]["selector"]["name"], "shop");
    const auto& env = dc["spec"]["template"]["spec"]["containers"][0]["env"];
    // Unknown references and ${{}} inside a longer string are left as they are.
    EXPECT_EQ(env[0]["value"], "http://web.local:2/shop/${UNKNOWN}/${{REPLICAS}}");
    EXPECT_EQ(dc["spec"]["template"]["spec"]["containers"][0]["image"], "shop:latest");
    const auto& route = p.objects[2];
    EXPECT_EQ(route["spec"]["host"], "web.local");
    EXPECT_EQ(route["metadata"]["annotations"]["shop.example/key"], "shop");
    EXPECT_FALSE(route["metadata"]["annotations"].contains("${NAME}.example/key"));
    // A hard-coded namespace is dropped.
    EXPECT_FALSE(p.objects[0]["metadata"].contains("namespace"));
}

TEST(Template, DoubleBracesGiveTypedValues) {
    auto p = cli::process_template(yaml(kTemplate),
                                   {{"HOST", "h"}, {"REPLICAS", "3"}, {"PAUSED", "true"}});
    const auto& spec = p.objects[1]["spec"];
    EXPECT_TRUE(spec["replicas"].is_number_integer());
    EXPECT_EQ(spec["replicas"], 3);
    EXPECT_EQ(spec["paused"], true);
    // A value that is not JSON stays a string.
    p = cli::process_template(yaml(kTemplate), {{"HOST", "h"}, {"REPLICAS", "many"}});
    EXPECT_EQ(p.objects[1]["spec"]["replicas"], "many");
}

TEST(Template, DefaultsAreUsedAndGivenValuesOverrideThem) {
    auto p = cli::process_template(yaml(kTemplate), {{"HOST", "h"}});
    EXPECT_EQ(p.values.at("NAME"), "demo");
    EXPECT_EQ(p.objects[0]["metadata"]["name"], "demo");
    p = cli::process_template(yaml(kTemplate), {{"HOST", "h"}, {"PASSWORD", "given"}});
    EXPECT_EQ(p.values.at("PASSWORD"), "given");  // a given value is not generated
    EXPECT_EQ(p.objects[1]["spec"]["template"]["spec"]["containers"][0]["env"][1]["value"],
              "given");
}

TEST(Template, RequiredParameterWithoutValueIsAnErrorNamingIt) {
    auto msg = error_of([] { cli::process_template(yaml(kTemplate), {}); });
    EXPECT_NE(msg.find("Template \"web\""), std::string::npos) << msg;
    EXPECT_NE(msg.find("HOST is required"), std::string::npos) << msg;
    EXPECT_NE(msg.find("--param HOST="), std::string::npos) << msg;
    // An empty value does not count.
    msg = error_of([] { cli::process_template(yaml(kTemplate), {{"HOST", ""}}); });
    EXPECT_NE(msg.find("HOST is required"), std::string::npos) << msg;
}

TEST(Template, UnknownParameterIsAnErrorListingTheTemplatesParameters) {
    auto msg = error_of([] {
        cli::process_template(yaml(kTemplate), {{"HOST", "h"}, {"HSOT", "x"}});
    });
    EXPECT_NE(msg.find("unknown parameter name \"HSOT\""), std::string::npos) << msg;
    EXPECT_NE(msg.find("NAME, HOST, REPLICAS, PAUSED, PASSWORD"), std::string::npos) << msg;
    // Several templates share one set of values: a name one of them declares is fine.
    EXPECT_NO_THROW(cli::process_template(yaml(kTemplate), {{"HOST", "h"}, {"HSOT", "x"}}, true));
}

TEST(Template, GeneratedValuesFollowThePattern) {
    std::set<std::string> seen;
    for (int i = 0; i < 20; i++) {
        auto p = cli::process_template(yaml(kTemplate), {{"HOST", "h"}});
        const auto& pw = p.values.at("PASSWORD");
        ASSERT_EQ(pw.size(), 40u);
        for (char c : pw)
            EXPECT_TRUE(std::isalnum(static_cast<unsigned char>(c))) << pw;
        EXPECT_NE(p.message.find(pw), std::string::npos);
        seen.insert(pw);
    }
    EXPECT_EQ(seen.size(), 20u);  // 62^40 values: a repeat means a broken generator
}

TEST(Template, GeneratorExpressions) {
    auto only = [](const std::string& s, const std::string& alphabet) {
        return s.find_first_not_of(alphabet) == std::string::npos;
    };
    auto v = cli::generate_from_expression("test[0-9]{1}x");
    ASSERT_EQ(v.size(), 6u);
    EXPECT_EQ(v.substr(0, 4), "test");
    EXPECT_TRUE(only(v.substr(4, 1), "0123456789"));
    EXPECT_EQ(v.back(), 'x');
    v = cli::generate_from_expression("0x[A-F0-9]{16}");
    EXPECT_EQ(v.size(), 18u);
    EXPECT_TRUE(only(v.substr(2), "ABCDEF0123456789")) << v;
    v = cli::generate_from_expression("[0-1]{64}");
    EXPECT_TRUE(only(v, "01")) << v;
    // Inclusive ranges: both ends appear over enough draws.
    EXPECT_NE(v.find('0'), std::string::npos);
    EXPECT_NE(v.find('1'), std::string::npos);
    v = cli::generate_from_expression("\\d{8}-[\\a_]{10}");
    ASSERT_EQ(v.size(), 19u);
    EXPECT_TRUE(only(v.substr(0, 8), "0123456789")) << v;
    EXPECT_EQ(v[8], '-');
    v = cli::generate_from_expression("[\\A]{30}");
    EXPECT_TRUE(only(v, "~!@#$%^&*()-_+={}[]\\|<,>.?/\"';:`")) << v;
    v = cli::generate_from_expression("[\\w]{50}");
    for (char c : v)
        EXPECT_TRUE(std::isalnum(static_cast<unsigned char>(c)) || c == '_') << v;
    for (int i = 0; i < 20; i++) {
        v = cli::generate_from_expression("[a-c]{2,5}");
        EXPECT_GE(v.size(), 2u);
        EXPECT_LE(v.size(), 5u);
        EXPECT_TRUE(only(v, "abc")) << v;
    }
    EXPECT_EQ(cli::generate_from_expression("[x]"), "x");  // no count: one character
    EXPECT_EQ(cli::generate_from_expression("plain"), "plain");
    EXPECT_EQ(cli::generate_from_expression("a\\[b"), "a[b");
}

TEST(Template, MalformedExpressionsAreErrors) {
    for (const char* bad : {"[a-z", "[]{3}", "[z-a]{3}", "[a-z]{0}", "[a-z]{256}", "[a-z]{x}",
                            "[a-z]{3", "[a-z]{5,2}"}) {
        auto msg = error_of([&] { cli::generate_from_expression(bad); });
        EXPECT_NE(msg.find("generate expression"), std::string::npos) << bad << ": " << msg;
    }
    // In a template: the error names the template and the parameter.
    auto tmpl = yaml(R"(
kind: Template
metadata: {name: t}
objects: []
parameters:
- name: SECRET
  generate: expression
  from: '[a-z'
)");
    auto msg = error_of([&] { cli::process_template(tmpl, {}); });
    EXPECT_NE(msg.find("Template \"t\": parameter SECRET"), std::string::npos) << msg;
    tmpl["parameters"][0]["generate"] = "uuid";
    msg = error_of([&] { cli::process_template(tmpl, {}); });
    EXPECT_NE(msg.find("\"uuid\" is not supported"), std::string::npos) << msg;
}

TEST(Template, LabelsAreAddedToEveryObjectAndTheDeploymentConfigsPods) {
    auto p = cli::process_template(yaml(kTemplate), {{"HOST", "h"}, {"NAME", "shop"}});
    for (const auto& obj : p.objects) {
        EXPECT_EQ(obj["metadata"]["labels"]["app"], "shop") << obj.dump();
        EXPECT_EQ(obj["metadata"]["labels"]["template"], "web") << obj.dump();
    }
    // The template's label overrides the object's own; others are kept.
    EXPECT_EQ(p.objects[0]["metadata"]["labels"]["tier"], "front");
    const auto& pod_labels = p.objects[1]["spec"]["template"]["metadata"]["labels"];
    EXPECT_EQ(pod_labels["app"], "shop");
    EXPECT_EQ(pod_labels["name"], "shop");
    // The selector is left alone.
    EXPECT_EQ(p.objects[1]["spec"]["selector"], json({{"name", "shop"}}));
}

TEST(Template, MessageIsSubstituted) {
    auto p = cli::process_template(yaml(kTemplate), {{"HOST", "web.local"}, {"PASSWORD", "pw"}});
    EXPECT_EQ(p.message, "Open http://web.local/ (password pw)");
}

TEST(Template, ShapeErrors) {
    auto msg =
        error_of([] { cli::validate_template(yaml("kind: Template\nmetadata: {name: t}\n")); });
    EXPECT_NE(msg.find("objects is missing"), std::string::npos) << msg;
    msg = error_of([] {
        cli::validate_template(
            yaml("kind: Template\nmetadata: {name: t}\nobjects: []\nparameters:\n- name: A-B\n"));
    });
    EXPECT_NE(msg.find("parameter A-B"), std::string::npos) << msg;
    msg = error_of([] {
        cli::validate_template(
            yaml("kind: Template\nmetadata: {name: t}\nobjects: []\nparameters:\n- name: A\n- "
                 "name: A\n"));
    });
    EXPECT_NE(msg.find("declared twice"), std::string::npos) << msg;
    msg = error_of([] {
        cli::validate_template(yaml("kind: Template\nmetadata: {name: t}\nobjects: [3]\n"));
    });
    EXPECT_NE(msg.find("objects[0]"), std::string::npos) << msg;
}

TEST(Template, ParamsFromTheCommandLineAndAFile) {
    fs::TempDir tmp({}, "cascade-template-");
    auto file = tmp.path() / "params.env";
    fs::write_file_atomic(file, "# comment\n\nA=from file\nB=b=c\r\n  C = spaced\n");
    auto v = cli::parse_template_params({"A=cli", "D="}, file.string());
    EXPECT_EQ(v.at("A"), "cli");  // --param wins over the file
    EXPECT_EQ(v.at("B"), "b=c");
    EXPECT_EQ(v.at("C"), " spaced");
    EXPECT_EQ(v.at("D"), "");
    auto msg = error_of([] { cli::parse_template_params({"NOEQUALS"}); });
    EXPECT_NE(msg.find("expected NAME=VALUE"), std::string::npos) << msg;
    fs::write_file_atomic(file, "A=1\njunk\n");
    msg = error_of([&] { cli::parse_template_params({}, file.string()); });
    EXPECT_NE(msg.find("line 2"), std::string::npos) << msg;
}

TEST(Template, ExpandTemplatesReplacesTemplatesAndCollectsMessages) {
    json other = {{"kind", "ImageStream"}, {"metadata", {{"name", "base"}}}};
    std::vector<std::string> messages;
    auto out = cli::expand_templates({other, yaml(kTemplate)}, {{"HOST", "h"}}, &messages);
    ASSERT_EQ(out.size(), 4u);
    EXPECT_EQ(out[0], other);
    EXPECT_EQ(out[1]["kind"], "ImageStream");
    ASSERT_EQ(messages.size(), 1u);
    EXPECT_NE(messages[0].find("http://h/"), std::string::npos);
    // Values but no template: an error.
    auto msg = error_of([&] { cli::expand_templates({other}, {{"HOST", "h"}}); });
    EXPECT_NE(msg.find("no Template"), std::string::npos) << msg;
    // No values, no template: the objects as they are.
    EXPECT_EQ(cli::expand_templates({other}, {}).size(), 1u);
    // Two templates: a name neither declares is an error naming both.
    auto second =
        yaml("kind: Template\nmetadata: {name: two}\nobjects: []\nparameters:\n- name: X\n");
    msg = error_of([&] {
        cli::expand_templates({yaml(kTemplate), second}, {{"HOST", "h"}, {"Y", "1"}});
    });
    EXPECT_NE(msg.find("\"Y\""), std::string::npos) << msg;
    EXPECT_NE(msg.find("Template \"two\""), std::string::npos) << msg;
    EXPECT_EQ(cli::expand_templates({yaml(kTemplate), second}, {{"HOST", "h"}, {"X", "1"}}).size(),
              3u);
}

TEST(Template, RelativeContextDirsResolveAgainstTheTemplatesFile) {
    fs::TempDir tmp({}, "cascade-template-");
    std::filesystem::create_directories(tmp.path() / "ctx" / "app");
    fs::write_file_atomic(tmp.path() / "t.yaml", R"(
kind: Template
metadata: {name: t}
parameters:
- name: DIR
  value: app
objects:
- kind: BuildConfig
  metadata: {name: b}
  spec:
    source:
      contextDir: ctx/${DIR}
    output: {to: {kind: ImageStreamTag, name: "b:latest"}}
)");
    auto loaded = cli::load_objects(tmp.path() / "t.yaml");
    ASSERT_EQ(loaded.size(), 1u);
    auto out = cli::expand_templates(loaded, {});
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0]["spec"]["source"]["contextDir"],
              std::filesystem::weakly_canonical(tmp.path() / "ctx" / "app").string());
}

}  // namespace
