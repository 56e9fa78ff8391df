// Image stream tags that follow an image in another registry, end to end:
// `cascade import-image` against Debian's docker-registry on loopback, the
// schedule picking a remote change up by itself, credentials from the state
// root's auth.json, and a dependent BuildConfig rebuilt when an import moves
// its base tag (how an upstream base fix reaches the cascade).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "distribution.hpp"
#include "oci/fs.hpp"
#include "support.hpp"

using nlohmann::json;
using namespace cascade;
using namespace std::chrono_literals;

namespace {

bool have_tools() {
    return test::have_program("docker-registry") && test::have_program("skopeo") &&
           test::have_program("htpasswd");
}

class ImportImage : public ::testing::Test {
  protected:
    fs::TempDir tmp{{}, "cascade-e2e-import-"};
    std::filesystem::path state = tmp.path() / "state";
    std::filesystem::path layout = tmp.path() / "layout";
    std::unique_ptr<test::Daemon> daemon;

    void SetUp() override {
        if (!have_tools()) GTEST_SKIP() << "docker-registry, skopeo or htpasswd is not installed";
    }
    void TearDown() override {
        daemon.reset();
        if (std::filesystem::exists(state)) test::cleanup_state_root(state);
    }

    void start_daemon(std::vector<std::string> extra = {}) {
        daemon = std::make_unique<test::Daemon>(state, 0, std::move(extra));
    }

    void push(const std::string& ref, const std::string& dest, const std::string& creds = {}) {
        auto r = test::push_image(layout, ref, dest, creds);
        ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    }

    test::CommandResult cli(const std::vector<std::string>& args) { return daemon->cli(args); }

    json get(const std::string& what) {
        auto r = cli({"get", what, "-o", "json"});
        EXPECT_EQ(r.exit_code, 0) << r.err;
        return json::parse(r.out.empty() ? "{}" : r.out);
    }

    // The newest history item of a stream's tag, or null.
    json newest(const std::string& stream, const std::string& tag = "latest") {
        auto r = cli({"get", "imagestream/" + stream, "-o", "json"});
        if (r.exit_code != 0) return nullptr;
        json is = json::parse(r.out);
        for (const auto& t : is["status"]["tags"])
            if (t["tag"] == tag) return t["items"][0];
        return nullptr;
    }
};

TEST_F(ImportImage, CreatesTheStreamTagAndMovesItOnlyWhenTheRemoteChanges) {
    test::DistributionRegistry remote;
    start_daemon();
    std::string from = remote.address() + "/library/httpd:2.4";
    auto v1 = test::write_tiny_image(layout, "v1", "httpd 2.4.1");
    push("v1", from);

    auto unconfirmed = cli({"import-image", "httpd", "--from", from, "--insecure"});
    EXPECT_EQ(unconfirmed.exit_code, 1);
    EXPECT_NE(unconfirmed.err.find("--confirm"), std::string::npos) << unconfirmed.err;

    auto r = cli({"import-image", "httpd", "--from", from, "--confirm", "--insecure"});
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    EXPECT_NE(r.out.find("imagestream/httpd created"), std::string::npos) << r.out;
    EXPECT_NE(
        r.out.find("imagestream/httpd:latest imported " + from + " -> " + v1.manifest.digest.str()),
        std::string::npos)
        << r.out;

    auto is = get("imagestream/httpd");
    EXPECT_EQ(is["spec"]["tags"][0]["name"], "latest");
    EXPECT_EQ(is["spec"]["tags"][0]["from"]["kind"], "DockerImage");
    EXPECT_EQ(is["spec"]["tags"][0]["from"]["name"], from);
    EXPECT_EQ(is["spec"]["tags"][0]["importPolicy"]["insecure"], true);
    auto item = newest("httpd");
    EXPECT_EQ(item["generation"], 1);
    EXPECT_EQ(item["image"], v1.manifest.digest.str());
    EXPECT_EQ(item["cause"], "import " + from);

    // The imported image is served by cascade's own registry, byte for byte.
    auto raw = test::run({"skopeo", "inspect", "--raw", "--tls-verify=false",
                          "docker://" + daemon->address() + "/httpd:latest"});
    ASSERT_EQ(raw.exit_code, 0) << raw.err;
    EXPECT_EQ(raw.out, v1.manifest.bytes);
    auto copy = test::run({"skopeo", "copy", "--src-tls-verify=false",
                           "docker://" + daemon->address() + "/httpd:latest",
                           "oci:" + (tmp.path() / "pulled").string() + ":x"});
    EXPECT_EQ(copy.exit_code, 0) << copy.err;

    // Again with no remote change: nothing moves.
    auto again = cli({"import-image", "httpd"});
    ASSERT_EQ(again.exit_code, 0) << again.out << again.err;
    EXPECT_NE(again.out.find("unchanged"), std::string::npos) << again.out;
    EXPECT_EQ(newest("httpd")["generation"], 1);

    // The upstream fix lands: the tag moves to it.
    auto v2 = test::write_tiny_image(layout, "v2", "httpd 2.4.2 (security fix)");
    push("v2", from);
    auto moved = cli({"import-image", "httpd:latest"});
    ASSERT_EQ(moved.exit_code, 0) << moved.out << moved.err;
    item = newest("httpd");
    EXPECT_EQ(item["generation"], 2);
    EXPECT_EQ(item["image"], v2.manifest.digest.str());
    EXPECT_EQ(item["cause"], "import " + from);

    auto missing = cli({"import-image", "nosuch"});
    EXPECT_EQ(missing.exit_code, 1);
    EXPECT_NE(missing.err.find("\"nosuch\" not found"), std::string::npos) << missing.err;
    auto gone = cli({"import-image", "gone", "--from", remote.address() + "/no/such:tag",
                     "--confirm", "--insecure"});
    EXPECT_EQ(gone.exit_code, 1);
    EXPECT_NE(gone.err.find("registry " + remote.address()), std::string::npos) << gone.err;
    EXPECT_NE(gone.err.find("404"), std::string::npos) << gone.err;
}

TEST_F(ImportImage, ScheduledImportPicksARemoteChangeUpByItself) {
    test::DistributionRegistry remote;
    auto config = tmp.path() / "cascade.yaml";
    fs::write_file_atomic(config, "imports:\n  intervalSeconds: 1\n");
    start_daemon({"--config", config.string()});
    std::string from = remote.address() + "/lib/base:1";
    test::write_tiny_image(layout, "v1", "base 1");
    push("v1", from);
    auto r =
        cli({"import-image", "base", "--from", from, "--confirm", "--scheduled", "--insecure"});
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    EXPECT_EQ(newest("base")["generation"], 1);

    auto v2 = test::write_tiny_image(layout, "v2", "base 2");
    push("v2", from);
    EXPECT_TRUE(test::eventually([&] { return newest("base")["generation"] == 2; }, 60s))
        << "the schedule did not import the change";
    auto item = newest("base");
    EXPECT_EQ(item["image"], v2.manifest.digest.str());
    EXPECT_EQ(item["cause"], "import " + from);
}

TEST_F(ImportImage, AppliedImageStreamImportsItsTagsWithTheStateRootsAuthFile) {
    test::DistributionRegistry remote("dave", "d-pass");
    start_daemon();
    std::string from = remote.address() + "/private/os:3";
    auto img = test::write_tiny_image(layout, "v1", "private os");
    push("v1", from, "dave:d-pass");
    fs::write_file_atomic(state / "auth.json",
                          test::auth_file_json(remote.address(), "dave", "d-pass"));

    auto file = tmp.path() / "os.yaml";
    fs::write_file_atomic(file,
                          "apiVersion: image.openshift.io/v1\n"
                          "kind: ImageStream\n"
                          "metadata:\n  name: os\n"
                          "spec:\n  tags:\n  - name: \"3\"\n    from:\n"
                          "      kind: DockerImage\n      name: " +
                              from + "\n    importPolicy:\n      insecure: true\n");
    auto applied = cli({"apply", "-f", file.string()});
    ASSERT_EQ(applied.exit_code, 0) << applied.out << applied.err;
    EXPECT_TRUE(test::eventually([&] { return !newest("os", "3").is_null(); }, 60s))
        << "applying the stream did not import its tag";
    EXPECT_EQ(newest("os", "3")["image"], img.manifest.digest.str());

    // A wrong password in the auth file: a clear error, the tag stays.
    fs::write_file_atomic(state / "auth.json",
                          test::auth_file_json(remote.address(), "dave", "wrong"));
    test::write_tiny_image(layout, "v2", "private os 2");
    push("v2", from, "dave:d-pass");
    auto r = cli({"import-image", "os:3"});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("rejected the credentials of user \"dave\""), std::string::npos) << r.err;
    EXPECT_EQ(newest("os", "3")["generation"], 1);

    // An unsupported from.kind is refused when applied.
    fs::write_file_atomic(file,
                          "apiVersion: image.openshift.io/v1\nkind: ImageStream\n"
                          "metadata:\n  name: alias\nspec:\n  tags:\n  - name: x\n"
                          "    from:\n      kind: ImageStreamImage\n      name: os@x\n");
    auto bad = cli({"apply", "-f", file.string()});
    EXPECT_EQ(bad.exit_code, 1);
    EXPECT_NE(bad.err.find("spec.tags[0].from.kind"), std::string::npos) << bad.err;
}

TEST_F(ImportImage, AnImportThatMovesABaseTagRebuildsItsDependents) {
    test::DistributionRegistry remote;
    start_daemon();
    std::string from = remote.address() + "/upstream/base:stable";
    test::write_tiny_image(layout, "v1", "base 1");
    push("v1", from);
    auto r = cli({"import-image", "base", "--from", from, "--confirm", "--insecure"});
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;

    auto context = tmp.path() / "app";
    fs::make_dirs(context);
    fs::write_file_atomic(context / "app.txt", "the application\n");
    auto file = tmp.path() / "app.yaml";
    fs::write_file_atomic(file,
                          "apiVersion: build.openshift.io/v1\nkind: BuildConfig\n"
                          "metadata:\n  name: app\n"
                          "spec:\n"
                          "  source:\n    contextDir: " +
                              context.string() +
                              "\n    dockerfile: |\n      FROM scratch\n"
                              "      COPY app.txt /app.txt\n"
                              "  strategy:\n    type: Docker\n    dockerStrategy:\n"
                              "      from:\n        kind: ImageStreamTag\n"
                              "        name: base:latest\n"
                              "  output:\n    to:\n      kind: ImageStreamTag\n"
                              "      name: app:latest\n"
                              "  triggers:\n  - type: ConfigChange\n"
                              "  - type: ImageChange\n");
    auto applied = cli({"apply", "-f", file.string()});
    ASSERT_EQ(applied.exit_code, 0) << applied.out << applied.err;
    auto build_phase = [&](const std::string& name) -> std::string {
        auto b = cli({"get", "build/" + name, "-o", "json"});
        if (b.exit_code != 0) return "";
        return json::parse(b.out)["status"]["phase"];
    };
    ASSERT_TRUE(test::eventually([&] { return build_phase("app-1") == "Complete"; }, 120s))
        << build_phase("app-1") << "\n"
        << cli({"logs", "build/app-1"}).out;

    auto v2 = test::write_tiny_image(layout, "v2", "base 2 (upstream fix)");
    push("v2", from);
    auto moved = cli({"import-image", "base"});
    ASSERT_EQ(moved.exit_code, 0) << moved.out << moved.err;
    ASSERT_TRUE(test::eventually([&] { return build_phase("app-2") == "Complete"; }, 120s))
        << "the import did not rebuild the dependent: " << build_phase("app-2");
    auto build = get("build/app-2");
    EXPECT_NE(build["spec"]["triggeredBy"][0]["message"].get<std::string>().find(
                  "image change of base:latest"),
              std::string::npos)
        << build.dump(2);
    EXPECT_EQ(build["status"]["base"]["digest"], v2.manifest.digest.str());
    EXPECT_EQ(newest("app")["generation"], 2);
}

}  // namespace
