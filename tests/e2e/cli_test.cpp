// The command-line contract of DESIGN.md with the real binary: `cascade
// build` stores an image that real OCI clients (skopeo, podman) read; builds
// are reproducible; errors are clear and exit non-zero.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>

#include "daemon_fixture.hpp"
#include "oci/fs.hpp"
#include "support.hpp"

using nlohmann::json;
using namespace cascade;
using namespace std::chrono_literals;

namespace {

class Cli : public test::DaemonTest {
  protected:
    Cli() : DaemonTest("cascade-cli-") {}
    void write(const std::string& name, const std::string& text) {
        fs::write_file_atomic(context / name, text);
    }
    // Builds and returns the digest printed on the last line.
    std::string build(const std::string& tag, std::vector<std::string> extra = {}) {
        std::vector<std::string> args{"build", "-t", tag};
        args.insert(args.end(), extra.begin(), extra.end());
        args.push_back(context.string());
        auto r = daemon->cli(args, 300s);
        EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
        auto pos = r.out.rfind("sha256:");
        return pos == std::string::npos ? "" : r.out.substr(pos, 71);
    }
};

const char* kDockerfile = R"(FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox mkdir -p /etc && echo built > /etc/marker"]
ENV GREETING=hello
WORKDIR /srv
CMD ["/bin/busybox", "cat", "/etc/marker"]
)";

TEST_F(Cli, BuildStoresAnImageThatSkopeoAndPodmanRead) {
    write("Dockerfile", kDockerfile);
    std::string digest = build("demo/tool:1.0");
    ASSERT_EQ(digest.size(), 71u);

    // skopeo reads it, and copying it out and back in is bit-identical.
    auto inspect = test::run({"skopeo", "inspect", "--tls-verify=false",
                              "docker://" + daemon->address() + "/demo/tool:1.0"});
    ASSERT_EQ(inspect.exit_code, 0) << inspect.err;
    auto info = json::parse(inspect.out);
    EXPECT_EQ(info["Digest"], digest);
    auto layout = tmp.path() / "layout";
    auto out = test::run({"skopeo", "copy", "--src-tls-verify=false",
                          "docker://" + daemon->address() + "/demo/tool:1.0",
                          "oci:" + layout.string() + ":t"});
    ASSERT_EQ(out.exit_code, 0) << out.err;
    auto in =
        test::run({"skopeo", "copy", "--dest-tls-verify=false", "oci:" + layout.string() + ":t",
                   "docker://" + daemon->address() + "/copied/tool:again"});
    ASSERT_EQ(in.exit_code, 0) << in.err;
    auto again = test::run({"skopeo", "inspect", "--tls-verify=false",
                            "docker://" + daemon->address() + "/copied/tool:again"});
    ASSERT_EQ(again.exit_code, 0) << again.err;
    EXPECT_EQ(json::parse(again.out)["Digest"], digest);

    // podman pulls it and runs nothing: the pull is what matters here.
    if (test::have_program("podman")) {
        std::string ref = daemon->address() + "/demo/tool:1.0";
        auto pull = test::run({"podman", "pull", "--tls-verify=false", ref}, 300s);
        EXPECT_EQ(pull.exit_code, 0) << pull.err;
        test::run({"podman", "rmi", "-f", ref});
    }
}

TEST_F(Cli, SameInputsGiveTheSameDigestAndMoveNoTag) {
    write("Dockerfile", kDockerfile);
    std::string first = build("repro:latest");
    auto second = daemon->cli({"build", "-t", "repro:latest", context.string()}, 300s);
    ASSERT_EQ(second.exit_code, 0) << second.err;
    EXPECT_NE(second.out.find(first), std::string::npos) << second.out;
    EXPECT_NE(second.out.find("unchanged"), std::string::npos) << second.out;
    auto is = json::parse(daemon->cli({"get", "imagestreams", "repro", "-o", "json"}).out);
    EXPECT_EQ(is["status"]["tags"][0]["items"].size(), 1u);

    // A different state root (a second daemon) gives the same digest too.
    test::Daemon other(tmp.path() / "state2");
    auto r = other.cli({"build", "-t", "repro:latest", context.string()}, 300s);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find(first), std::string::npos) << r.out;
    test::cleanup_state_root(tmp.path() / "state2");
}

TEST_F(Cli, BuildOnABaseRecordsItInAnnotations) {
    write("Dockerfile", kDockerfile);
    std::string base = build("base:latest");
    write("Dockerfile.app",
          "FROM base\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo app > /app\"]\n");
    std::string app = build("app:latest", {"-f", (context / "Dockerfile.app").string()});
    auto raw = test::run({"skopeo", "inspect", "--raw", "--tls-verify=false",
                          "docker://" + daemon->address() + "/app:latest"});
    ASSERT_EQ(raw.exit_code, 0) << raw.err;
    auto m = json::parse(raw.out);
    EXPECT_EQ(m["annotations"]["org.opencontainers.image.base.name"], "base:latest");
    EXPECT_EQ(m["annotations"]["org.opencontainers.image.base.digest"], base);
}

TEST_F(Cli, ErrorsSayWhatAndWhere) {
    write("Dockerfile",
          "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"false\"]\n");
    auto r = daemon->cli({"build", "-t", "broken:latest", context.string()}, 300s);
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("Dockerfile:3"), std::string::npos) << r.err;

    write("Dockerfile", "FROM nothing-here\n");
    r = daemon->cli({"build", "-t", "broken:latest", context.string()}, 300s);
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("nothing-here"), std::string::npos) << r.err;

    r = test::run({test::cascade_binary(), "--host", "http://127.0.0.1:1", "get", "builds"});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("cannot reach the cascade daemon"), std::string::npos) << r.err;

    r = daemon->cli({"get", "widgets"});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("unknown kind"), std::string::npos) << r.err;
}

TEST_F(Cli, ApplyRefusesUnsupportedKindsAndChangesNothing) {
    auto file = tmp.path() / "objects.yaml";
    fs::write_file_atomic(file, R"(apiVersion: v1
kind: List
items:
- apiVersion: route.openshift.io/v1
  kind: Route
  metadata: {name: web}
  spec: {to: {name: web}}
- apiVersion: v1
  kind: Widget
  metadata: {name: w}
)");
    auto r = daemon->cli({"apply", "-f", file.string()});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("Widget"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("BuildConfig"), std::string::npos) << "lists what is supported: " << r.err;
    auto routes = json::parse(daemon->cli({"get", "routes", "-o", "json"}).out);
    EXPECT_TRUE(routes["items"].empty()) << "nothing applied when one object is invalid";
}

}  // namespace
