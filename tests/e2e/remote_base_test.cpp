// Bases from other registries through the daemon: `registries:` in the
// configuration file (an insecure registry, a docker.io mirror), `cascade
// build` FROM them, the image stream they land in, and a reference to the
// daemon's own address naming its store.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "distribution.hpp"
#include "oci/fs.hpp"
#include "support.hpp"

using nlohmann::json;
using namespace cascade;
using namespace std::chrono_literals;

namespace {

class RemoteBaseE2e : public ::testing::Test {
  protected:
    fs::TempDir tmp{{}, "cascade-e2e-remote-base-"};
    std::filesystem::path state = tmp.path() / "state";
    std::filesystem::path layout = tmp.path() / "layout";
    std::filesystem::path context = tmp.path() / "context";
    std::unique_ptr<test::Daemon> daemon;

    void SetUp() override {
        if (!test::have_program("docker-registry") || !test::have_program("skopeo"))
            GTEST_SKIP() << "docker-registry or skopeo is not installed";
        std::filesystem::create_directories(context);
    }
    void TearDown() override {
        daemon.reset();
        if (std::filesystem::exists(state)) test::cleanup_state_root(state);
    }
    test::CommandResult build(const std::string& tag, const std::string& dockerfile) {
        fs::write_file_atomic(context / "Dockerfile", dockerfile);
        return daemon->cli({"build", "-t", tag, context.string()}, 300s);
    }
};

TEST_F(RemoteBaseE2e, ConfiguredRegistriesServeBasesOfBuilds) {
    test::DistributionRegistry remote, mirror;
    auto config = tmp.path() / "cascade.yaml";
    fs::write_file_atomic(config, "registries:\n  mirrors:\n    docker.io: [\"http://" +
                                      mirror.address() + "\"]\n  insecure: [\"" + remote.address() +
                                      "\"]\n");
    daemon = std::make_unique<test::Daemon>(state, 0,
                                            std::vector<std::string>{"--config", config.string()});
    test::write_busybox_image(layout, "v1", "remote base");
    auto push = test::push_image(layout, "v1", remote.address() + "/os/base:1");
    ASSERT_EQ(push.exit_code, 0) << push.err;
    test::write_busybox_image(layout, "v2", "hub base");
    push = test::push_image(layout, "v2", mirror.address() + "/library/busybox:1.36");
    ASSERT_EQ(push.exit_code, 0) << push.err;

    auto r = build("app:1", "FROM " + remote.address() + "/os/base:1\nRUN cat /etc/base-release\n");
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    EXPECT_NE(r.out.find("remote base"), std::string::npos) << r.out;
    std::string stream = remote.address();
    for (auto& c : stream)
        if (c == ':') c = '-';
    stream += "/os/base";
    auto is = daemon->cli({"get", "imagestream/" + stream, "-o", "json"});
    ASSERT_EQ(is.exit_code, 0) << is.err;
    auto tags = json::parse(is.out)["status"]["tags"];
    ASSERT_EQ(tags.size(), 1u) << is.out;
    EXPECT_EQ(tags[0]["tag"], "1");
    EXPECT_EQ(tags[0]["items"][0]["cause"], "import " + remote.address() + "/os/base:1");
    auto inspect = test::run({"skopeo", "inspect", "--raw", "--tls-verify=false",
                              "docker://" + daemon->address() + "/app:1"});
    ASSERT_EQ(inspect.exit_code, 0) << inspect.err;
    EXPECT_EQ(json::parse(inspect.out)["annotations"]["org.opencontainers.image.base.name"],
              stream + ":1");

    // A Docker Hub short name through the mirror.
    r = build("app:2", "FROM busybox:1.36\nRUN cat /etc/base-release\n");
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    EXPECT_NE(r.out.find("hub base"), std::string::npos) << r.out;

    // The daemon's own address names its store: app:2 is not pulled from anywhere.
    r = build("app:3", "FROM " + daemon->address() + "/app:2\nRUN cat /etc/base-release\n");
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    EXPECT_EQ(r.out.find("blobs fetched"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("hub base"), std::string::npos) << r.out;
}

}  // namespace
