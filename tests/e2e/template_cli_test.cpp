// OpenShift Templates through the real binary and daemon: `cascade process`
// prints the processed objects, `apply -f --param` applies them (twice:
// unchanged), `create -f` stores a template and `new-app --template` creates
// its objects; the errors exit non-zero and say what to do.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "daemon_fixture.hpp"
#include "oci/fs.hpp"
#include "support.hpp"

using nlohmann::json;
using namespace cascade;

namespace {

// An ImageStream and a Route (on a port of its own): nothing to build.
const char* kTemplate = R"yaml(
apiVersion: template.openshift.io/v1
kind: Template
metadata:
  name: web
  annotations:
    description: a stream and a route
message: "Route ${NAME} is on port ${HOST_PORT} (token ${TOKEN})"
labels:
  app: ${NAME}
  template: web
parameters:
- name: NAME
  displayName: Name
  description: the name of every object
  value: demo
- name: HOST_PORT
  required: true
- name: TOKEN
  generate: expression
  from: '[a-z0-9]{12}'
objects:
- apiVersion: image.openshift.io/v1
  kind: ImageStream
  metadata:
    name: ${NAME}
- apiVersion: route.openshift.io/v1
  kind: Route
  metadata:
    name: ${NAME}
    annotations:
      cascade.io/host-port: "${HOST_PORT}"
  spec:
    to:
      kind: DeploymentConfig
      name: ${NAME}
)yaml";

class TemplateCli : public test::DaemonTest {
  protected:
    TemplateCli() : DaemonTest("cascade-template-cli-") {}
    std::string file = (tmp.path() / "template.yaml").string();
    std::string port = std::to_string(test::free_port());

    void SetUp() override {
        DaemonTest::SetUp();
        fs::write_file_atomic(file, kTemplate);
    }
    test::CommandResult ok(const std::vector<std::string>& args) {
        auto r = daemon->cli(args);
        std::string command = "cascade";
        for (const auto& a : args)
            command += " " + a;
        EXPECT_EQ(r.exit_code, 0) << command << "\n" << r.out << r.err;
        return r;
    }
    json get_json(const std::string& kind, const std::string& name) {
        auto r = daemon->cli({"get", kind, name, "-o", "json"});
        EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
        return r.exit_code == 0 ? json::parse(r.out) : json();
    }
};

TEST_F(TemplateCli, ProcessPrintsTheProcessedObjects) {
    auto r = ok({"process", "-f", file, "--param", "HOST_PORT=" + port, "-p", "NAME=shop"});
    auto list = json::parse(r.out);  // JSON by default, as oc
    EXPECT_EQ(list["kind"], "List");
    ASSERT_EQ(list["items"].size(), 2u) << r.out;
    EXPECT_EQ(list["items"][0]["kind"], "ImageStream");
    EXPECT_EQ(list["items"][0]["metadata"]["name"], "shop");
    EXPECT_EQ(list["items"][0]["metadata"]["labels"]["app"], "shop");
    EXPECT_EQ(list["items"][1]["metadata"]["annotations"]["cascade.io/host-port"], port);
    EXPECT_EQ(list["items"][1]["spec"]["to"]["name"], "shop");

    auto yaml = ok({"process", "-f", file, "-p", "HOST_PORT=" + port, "-o", "yaml"});
    EXPECT_NE(yaml.out.find("kind: List"), std::string::npos) << yaml.out;
    EXPECT_NE(yaml.out.find("name: demo"), std::string::npos) << yaml.out;

    // A parameter file; --param wins over it.
    auto params = tmp.path() / "params.env";
    fs::write_file_atomic(params, "# values\nNAME=fromfile\nHOST_PORT=" + port + "\n");
    r = ok({"process", "-f", file, "--param-file", params.string()});
    EXPECT_EQ(json::parse(r.out)["items"][0]["metadata"]["name"], "fromfile");
    r = ok({"process", "-f", file, "--param-file", params.string(), "-p", "NAME=given"});
    EXPECT_EQ(json::parse(r.out)["items"][0]["metadata"]["name"], "given");

    // Errors: a required parameter without a value, an unknown name.
    auto missing = daemon->cli({"process", "-f", file});
    EXPECT_NE(missing.exit_code, 0);
    EXPECT_NE(missing.err.find("HOST_PORT is required"), std::string::npos) << missing.err;
    auto unknown = daemon->cli({"process", "-f", file, "-p", "HOST_PORT=1", "-p", "NAEM=x"});
    EXPECT_NE(unknown.exit_code, 0);
    EXPECT_NE(unknown.err.find("unknown parameter name \"NAEM\""), std::string::npos)
        << unknown.err;
    EXPECT_NE(unknown.err.find("NAME, HOST_PORT, TOKEN"), std::string::npos) << unknown.err;
}

TEST_F(TemplateCli, ApplyWithParamsCreatesTheObjectsAndTwiceChangesNothing) {
    auto first = ok({"apply", "-f", file, "-p", "HOST_PORT=" + port, "-p", "NAME=shop"});
    EXPECT_NE(first.out.find("imagestream/shop created"), std::string::npos) << first.out;
    EXPECT_NE(first.out.find("route/shop created"), std::string::npos) << first.out;
    EXPECT_NE(first.out.find("Route shop is on port " + port + " (token "), std::string::npos)
        << first.out;
    auto route = get_json("routes", "shop");
    EXPECT_EQ(route["metadata"]["labels"]["app"], "shop") << route.dump();
    EXPECT_EQ(route["metadata"]["labels"]["template"], "web") << route.dump();
    EXPECT_NE(route.dump().find("127.0.0.1:" + port), std::string::npos) << route.dump();

    auto second = ok({"apply", "-f", file, "-p", "HOST_PORT=" + port, "-p", "NAME=shop"});
    EXPECT_NE(second.out.find("imagestream/shop unchanged"), std::string::npos) << second.out;
    EXPECT_NE(second.out.find("route/shop unchanged"), std::string::npos) << second.out;

    // --param for a file without a template is an error; so is a Template sent
    // to the daemon as it is.
    auto plain = tmp.path() / "stream.yaml";
    fs::write_file_atomic(plain, "kind: ImageStream\nmetadata:\n  name: plain\n");
    auto r = daemon->cli({"apply", "-f", plain.string(), "-p", "NAME=x"});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("no Template"), std::string::npos) << r.err;
}

TEST_F(TemplateCli, CreateStoresTheTemplateAndNewAppCreatesItsObjects) {
    auto created = ok({"create", "-f", file});
    EXPECT_NE(created.out.find("template/web created"), std::string::npos) << created.out;
    auto again = daemon->cli({"create", "-f", file});
    EXPECT_NE(again.exit_code, 0);
    EXPECT_NE(again.err.find("already exists"), std::string::npos) << again.err;

    auto list = ok({"get", "templates", "-o", "json"});
    auto items = json::parse(list.out)["items"];
    ASSERT_EQ(items.size(), 1u) << list.out;
    EXPECT_EQ(items[0]["metadata"]["name"], "web");
    EXPECT_EQ(items[0]["parameters"].size(), 3u);
    // Creating a template creates none of its objects.
    EXPECT_NE(daemon->cli({"get", "routes", "shop"}).exit_code, 0);

    auto app = ok({"new-app", "--template=web", "-p", "NAME=shop", "-p", "HOST_PORT=" + port});
    EXPECT_NE(app.out.find("imagestream/shop created"), std::string::npos) << app.out;
    EXPECT_NE(app.out.find("route/shop created"), std::string::npos) << app.out;
    EXPECT_NE(app.out.find("Route shop is on port " + port), std::string::npos) << app.out;
    auto stream = get_json("imagestreams", "shop");
    EXPECT_EQ(stream["metadata"]["labels"]["app"], "shop") << stream.dump();
    auto route = get_json("routes", "shop");
    EXPECT_EQ(route["metadata"]["labels"]["app"], "shop") << route.dump();
    auto names = ok({"get", "routes", "-o", "name"});
    EXPECT_NE(names.out.find("/shop\n"), std::string::npos) << names.out;  // route[.group]/shop

    // The same again: nothing changes (the generated token is only in the message).
    auto twice = ok({"new-app", "--template=web", "-p", "NAME=shop", "-p", "HOST_PORT=" + port});
    EXPECT_NE(twice.out.find("route/shop unchanged"), std::string::npos) << twice.out;

    // `process NAME` reads the stored template too.
    auto processed = ok({"process", "web", "-p", "HOST_PORT=" + port});
    EXPECT_EQ(json::parse(processed.out)["items"][1]["metadata"]["name"], "demo");

    // create of an object that exists: AlreadyExists, exit non-zero, nothing changed.
    auto plain = tmp.path() / "stream.yaml";
    fs::write_file_atomic(plain, "kind: ImageStream\nmetadata:\n  name: shop\n");
    auto exists = daemon->cli({"create", "-f", plain.string()});
    EXPECT_NE(exists.exit_code, 0);
    EXPECT_NE(exists.err.find("ImageStream \"shop\" already exists"), std::string::npos)
        << exists.err;

    auto missing = daemon->cli({"new-app", "--template=nope"});
    EXPECT_NE(missing.exit_code, 0);
    EXPECT_NE(missing.err.find("cascade create -f"), std::string::npos) << missing.err;
    auto required = daemon->cli({"new-app", "--template=web"});
    EXPECT_NE(required.exit_code, 0);
    EXPECT_NE(required.err.find("HOST_PORT is required"), std::string::npos) << required.err;
}

}  // namespace
