// A BuildConfig in OpenShift's format through the real daemon: a git source
// (a file:// repository the test creates, cloned with the real git), Generic
// and GitHub webhooks with secrets (curl as the client), and a postCommit
// hook whose failure fails the build and leaves the tag where it was.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "daemon_fixture.hpp"
#include "oci/fs.hpp"
#include "support.hpp"

using nlohmann::json;
using namespace cascade;
using namespace std::chrono_literals;
namespace stdfs = std::filesystem;

namespace {

class BuildConfigCli : public test::DaemonTest {
  protected:
    BuildConfigCli() : DaemonTest("cascade-bccli-") {}
    stdfs::path repo = tmp.path() / "repo";

    void TearDown() override {
        daemon.reset();
        EXPECT_TRUE(test::mounts_under(tmp.path()).empty());
        DaemonTest::TearDown();
    }

    std::string git(const std::vector<std::string>& args) { return test::git(repo, args); }

    // Commits app/version = `version`; returns the commit.
    std::string commit(const std::string& version) {
        fs::write_file_atomic(repo / "app" / "version", version + "\n");
        git({"add", "."});
        git({"commit", "--quiet", "-m", "version " + version});
        return git({"rev-parse", "HEAD"});
    }

    json get(const std::string& what) {
        auto r = daemon->cli({"get", what, "-o", "json"});
        if (r.exit_code != 0) return json::object();
        return json::parse(r.out, nullptr, false);
    }
    std::string phase(const std::string& build) {
        return get("build/" + build).value("/status/phase"_json_pointer, std::string());
    }
    bool finished(const std::string& build) {
        auto p = phase(build);
        return p == "Complete" || p == "Failed" || p == "Cancelled";
    }
    size_t build_count() {
        auto list = get("builds");
        return list.contains("items") ? list["items"].size() : 0;
    }
    std::string tag_digest() {
        auto is = get("is/app");
        for (const auto& t : is.value("/status/tags"_json_pointer, json::array()))
            if (t.value("tag", "") == "latest" && !t["items"].empty())
                return t["items"][0].value("image", "");
        return {};
    }

    // POSTs `body` to the daemon's `path`; returns the HTTP status and body.
    std::pair<int, std::string> post(const std::string& path, const std::string& body,
                                     std::vector<std::string> headers = {}) {
        std::vector<std::string> argv{"curl", "-sS",
                                      "-o",   "-",
                                      "-w",   "\n%{http_code}",
                                      "-H",   "Content-Type: application/json",
                                      "-d",   body};
        for (auto& h : headers) {
            argv.push_back("-H");
            argv.push_back(h);
        }
        argv.push_back(daemon->host() + path);
        auto r = test::run(argv);
        EXPECT_EQ(r.exit_code, 0) << r.err;
        auto nl = r.out.rfind('\n');
        if (nl == std::string::npos) return {0, r.out};
        return {std::atoi(r.out.c_str() + nl + 1), r.out.substr(0, nl)};
    }
};

TEST_F(BuildConfigCli, GitSourceWebhooksAndPostCommit) {
    ASSERT_TRUE(test::have_program("git"));
    ASSERT_TRUE(test::have_program("curl"));
    stdfs::create_directories(repo / "app");
    git({"init", "--quiet", "--initial-branch=main"});
    stdfs::copy_file("/bin/busybox", repo / "app" / "busybox");
    fs::write_file_atomic(repo / "app" / "Dockerfile",
                          "FROM scratch\nCOPY busybox /bin/busybox\n"
                          "RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n"
                          "COPY version /version\n");
    auto first = commit("1");

    auto file = tmp.path() / "bc.yaml";
    fs::write_file_atomic(file, R"(apiVersion: build.openshift.io/v1
kind: BuildConfig
metadata:
  name: app
spec:
  source:
    type: Git
    git:
      uri: file://)" + repo.string() +
                                    R"(
      ref: main
    contextDir: app
  strategy:
    type: Docker
    dockerStrategy:
      env:
      - name: STAGE
        value: e2e
  output:
    to:
      kind: ImageStreamTag
      name: app:latest
  postCommit:
    script: "echo post-commit sees $STAGE; ! grep -q broken /version"
  triggers:
  - type: ConfigChange
  - type: Generic
    generic:
      secret: right-secret
  - type: GitHub
    github:
      secret: gh-secret
)");
    auto applied = daemon->cli({"apply", "-f", file.string()});
    ASSERT_EQ(applied.exit_code, 0) << applied.out << applied.err;
    ASSERT_TRUE(test::eventually([&] { return finished("app-1"); }, 180s)) << phase("app-1");
    auto b1 = get("build/app-1");
    ASSERT_EQ(b1["status"]["phase"], "Complete") << b1.dump(2);
    EXPECT_EQ(b1["spec"]["revision"]["git"]["commit"], first) << b1.dump(2);
    auto log = daemon->cli({"logs", "build/app-1"});
    EXPECT_NE(log.out.find(first), std::string::npos) << log.out;
    EXPECT_NE(log.out.find("post-commit sees e2e"), std::string::npos) << log.out;
    auto digest1 = tag_digest();
    EXPECT_EQ(digest1, b1["status"]["output"]["to"]["imageDigest"]);

    // The config shows its webhook URLs, the secret left out.
    auto bc = get("bc/app");
    auto hooks = bc.value("/status/webhooks"_json_pointer, json::array());
    ASSERT_EQ(hooks.size(), 2u) << bc.dump(2);
    EXPECT_EQ(hooks[0]["url"],
              daemon->host() + "/api/v1/buildconfigs/app/webhooks/<secret>/generic");
    EXPECT_EQ(bc.dump().find("right-secret/"), std::string::npos);

    // A wrong secret, the GitHub secret on the generic hook, and the URL
    // without a secret start nothing.
    auto [wrong, wrong_body] = post("/api/v1/buildconfigs/app/webhooks/wrong/generic", "{}");
    EXPECT_EQ(wrong, 403) << wrong_body;
    EXPECT_EQ(post("/api/v1/buildconfigs/app/webhooks/gh-secret/generic", "{}").first, 403);
    EXPECT_EQ(post("/api/v1/buildconfigs/app/webhooks/generic", "{}").first, 403);
    EXPECT_EQ(post("/apis/build.openshift.io/v1/namespaces/default/buildconfigs/app/webhooks/"
                   "wrong/generic",
                   "{}")
                  .first,
              403);
    EXPECT_EQ(post("/api/v1/buildconfigs/nope/webhooks/right-secret/generic", "{}").first, 404);
    EXPECT_EQ(build_count(), 1u);

    // The right secret builds the branch's new commit.
    auto second = commit("2");
    auto [ok, ok_body] = post(
        "/apis/build.openshift.io/v1/namespaces/default/buildconfigs/app/webhooks/right-secret/"
        "generic",
        "{}");
    ASSERT_EQ(ok, 201) << ok_body;
    EXPECT_EQ(json::parse(ok_body)["metadata"]["name"], "app-2") << ok_body;
    ASSERT_TRUE(test::eventually([&] { return finished("app-2"); }, 180s));
    auto b2 = get("build/app-2");
    ASSERT_EQ(b2["status"]["phase"], "Complete") << b2.dump(2);
    EXPECT_EQ(b2["spec"]["triggeredBy"][0]["type"], "Webhook");
    EXPECT_EQ(b2["spec"]["triggeredBy"][0]["message"], "Generic webhook");
    EXPECT_EQ(b2["spec"]["revision"]["git"]["commit"], second);
    auto digest2 = tag_digest();
    EXPECT_NE(digest2, digest1);

    // GitHub: a ping and a push to another branch start nothing.
    auto [ping, ping_body] = post("/api/v1/buildconfigs/app/webhooks/gh-secret/github",
                                  R"({"zen": "hi"})", {"X-GitHub-Event: ping"});
    EXPECT_EQ(ping, 200) << ping_body;
    auto [other, other_body] =
        post("/api/v1/buildconfigs/app/webhooks/gh-secret/github",
             R"({"ref": "refs/heads/feature", "after": "abc"})", {"X-GitHub-Event: push"});
    EXPECT_EQ(other, 200) << other_body;
    EXPECT_EQ(build_count(), 2u);

    // A push whose image fails the postCommit hook: Failed, the tag stays.
    auto third = commit("broken");
    auto [push, push_body] =
        post("/api/v1/buildconfigs/app/webhooks/gh-secret/github",
             json{{"ref", "refs/heads/main"}, {"after", third}}.dump(), {"X-GitHub-Event: push"});
    ASSERT_EQ(push, 201) << push_body;
    ASSERT_TRUE(test::eventually([&] { return finished("app-3"); }, 180s));
    auto b3 = get("build/app-3");
    EXPECT_EQ(b3["status"]["phase"], "Failed") << b3.dump(2);
    auto message = b3["status"]["message"].get<std::string>();
    EXPECT_NE(message.find("postCommit"), std::string::npos) << message;
    EXPECT_NE(message.find("exit status 1"), std::string::npos) << message;
    EXPECT_EQ(b3["spec"]["triggeredBy"][0]["message"],
              "GitHub webhook: refs/heads/main at " + third);
    EXPECT_EQ(b3["spec"]["revision"]["git"]["commit"], third);
    EXPECT_FALSE(b3["status"]["tagMoved"].get<bool>());
    EXPECT_EQ(tag_digest(), digest2);

    // start-build --from-dir: a copy of the working tree with an uncommitted
    // change is the source (contextDir applies inside it); changing the
    // directory after the start changes nothing; the record says Binary.
    auto work = tmp.path() / "work";
    stdfs::copy(repo, work, stdfs::copy_options::recursive);
    fs::write_file_atomic(work / "app" / "version", "from-dir\n");
    auto bad_dir =
        daemon->cli({"start-build", "app", "--from-dir", (tmp.path() / "nope").string()});
    EXPECT_EQ(bad_dir.exit_code, 1) << bad_dir.out << bad_dir.err;
    EXPECT_NE(bad_dir.err.find("not a directory"), std::string::npos) << bad_dir.err;
    auto from_dir = daemon->cli({"start-build", "app", "--from-dir", work.string()});
    ASSERT_EQ(from_dir.exit_code, 0) << from_dir.out << from_dir.err;
    EXPECT_NE(from_dir.out.find("build/app-4"), std::string::npos) << from_dir.out;
    fs::write_file_atomic(work / "app" / "version", "changed after the start\n");
    ASSERT_TRUE(test::eventually([&] { return finished("app-4"); }, 180s));
    auto b4 = get("build/app-4");
    ASSERT_EQ(b4["status"]["phase"], "Complete") << b4.dump(2);
    EXPECT_EQ(b4["spec"]["revision"]["type"], "Binary") << b4.dump(2);
    EXPECT_EQ(b4["spec"]["revision"]["binary"]["fromDir"], work.string()) << b4.dump(2);
    auto digest4 = tag_digest();
    EXPECT_NE(digest4, digest2);
    {
        // The image holds the directory's version file as it was at the start.
        auto out = tmp.path() / "oci";
        auto copy = test::run({"skopeo", "copy", "--src-tls-verify=false",
                               "docker://" + daemon->host().substr(7) + "/app:latest",
                               "oci:" + out.string() + ":x"});
        ASSERT_EQ(copy.exit_code, 0) << copy.err;
        auto found = test::run(
            {"sh", "-c",
             "for l in " + out.string() +
                 "/blobs/sha256/*; do tar -xzOf \"$l\" --wildcards '*version' 2>/dev/null; "
                 "done"});
        EXPECT_NE(found.out.find("from-dir"), std::string::npos) << found.out;
        EXPECT_EQ(found.out.find("changed after"), std::string::npos) << found.out;
    }

    // Nothing is left of the checkouts or the build containers.
    std::error_code ec;
    EXPECT_TRUE(!stdfs::exists(state / "builds" / "sources") ||
                stdfs::is_empty(state / "builds" / "sources", ec));
    auto runc = test::run({"runc", "--root", (state / "runc").string(), "list", "-q"});
    EXPECT_EQ(runc.out, "");
}

}  // namespace
