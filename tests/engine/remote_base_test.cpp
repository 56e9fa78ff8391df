// Bases from other registries: FROM (and COPY --from) a reference to
// Debian's docker-registry on loopback pulls the image into the store as an
// image stream, and the build runs on it in real runc. Indexes resolve to the
// host's platform, Docker schema 2 works, basic auth reads the auth file,
// docker.io short names go through a configured mirror, a second build
// downloads nothing, and every failure says what to do.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "builder_fixture.hpp"
#include "distribution.hpp"
#include "engine/builder.hpp"
#include "engine/image_source.hpp"
#include "oci/image.hpp"
#include "oci/media_types.hpp"
#include "oci/reference.hpp"
#include "support.hpp"

using namespace cascade;

namespace {

namespace stdfs = std::filesystem;

bool have_tools() {
    return test::have_program("docker-registry") && test::have_program("skopeo") &&
           test::have_program("htpasswd") && test::have_program("runc");
}

// The stream name a reference to `address` lands in ("127.0.0.1-5000").
std::string stream_domain(const std::string& address) {
    std::string s = address;
    for (auto& c : s)
        if (c == ':') c = '-';
    return s;
}

class RemoteBase : public builder_testing::BuilderTest {
  protected:
    stdfs::path layout = tmp.path() / "layout";
    stdfs::path auth_file = tmp.path() / "auth.json";

    void SetUp() override {
        if (!have_tools()) GTEST_SKIP() << "docker-registry, skopeo, htpasswd or runc is missing";
        BuilderTest::SetUp();
    }

    void configure(std::vector<std::string> insecure,
                   std::map<std::string, std::vector<std::string>> mirrors = {}) {
        engine::BuilderOptions options;
        options.auth_file = auth_file;
        options.insecure_registries = std::move(insecure);
        options.mirrors = std::move(mirrors);
        builder.set_options(std::move(options));
    }

    void push(const std::string& ref, const std::string& dest, const std::string& creds = {},
              const std::string& format = {}) {
        auto r = test::push_image(layout, ref, dest, creds, format);
        ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    }

    std::string failure(const std::string& dockerfile) { return error_of(request(dockerfile)); }

    // The file a build wrote at `path`, read from its last layer.
    std::string file_in_last_layer(const engine::BuildResult& r, const std::string& path) {
        auto m = manifest_of("app", r.manifest_digest);
        return test::run({"tar", "-xzOf", blobs.path(m.layers.back().digest), path}).out;
    }

    bool logged(const std::string& text) const {
        for (const auto& l : log)
            if (l.find(text) != std::string::npos) return true;
        return false;
    }
};

TEST(RemoteBaseNames, StreamsAreNamedLikeTheReference) {
    using engine::Builder;
    EXPECT_EQ(Builder::final_base("FROM 127.0.0.1:5000/base:1\n", {}, ""), "127.0.0.1-5000/base:1");
    EXPECT_EQ(Builder::final_base("FROM docker.io/library/busybox:1.36\n", {}, ""),
              "docker.io/library/busybox:1.36");
    EXPECT_EQ(Builder::final_base("FROM quay.io/x/y\n", {}, ""), "quay.io/x/y:latest");
    EXPECT_EQ(Builder::final_base("FROM busybox\n", {}, ""), "busybox:latest");
    // The daemon's own registry names the store.
    EXPECT_EQ(Builder::final_base("FROM 127.0.0.1:5000/base:1\n", {}, "", {"127.0.0.1:5000"}),
              "base:1");
    std::string digest = "sha256:" + std::string(64, 'a');
    auto name = engine::image_name(oci::Reference::parse("quay.io/x/y@" + digest), {});
    EXPECT_EQ(name.local.repository, "quay.io/x/y");
    EXPECT_EQ(name.tag, "sha256-" + std::string(64, 'a'));
    EXPECT_EQ(name.local.display, "quay.io/x/y@" + digest);
    EXPECT_EQ(name.remote, "quay.io/x/y@" + digest);
    auto hub = engine::image_name(oci::Reference::parse("busybox:1.36"), {});
    EXPECT_TRUE(hub.short_name);
    EXPECT_EQ(hub.local.display, "busybox:1.36");
    EXPECT_EQ(hub.remote, "docker.io/library/busybox:1.36");
}

TEST_F(RemoteBase, FromAnotherRegistryPullsIntoAStreamAndASecondBuildDownloadsNothing) {
    test::DistributionRegistry remote;
    configure({remote.address()});
    auto manifest = test::write_busybox_image(layout, "v1", "remote 1", engine::host_arch());
    std::string from = remote.address() + "/busybox:latest";
    push("v1", from);
    const std::string stream = stream_domain(remote.address()) + "/busybox";

    auto r = build("FROM " + from + "\nRUN cat /etc/base-release > /out\n");
    EXPECT_EQ(file_in_last_layer(r, "out"), "remote 1\n");
    EXPECT_EQ(r.base_name, stream + ":latest");
    ASSERT_TRUE(r.base_digest);
    EXPECT_EQ(*r.base_digest, manifest.digest);
    EXPECT_EQ(store.tag_digest(stream, "latest"), manifest.digest);
    auto history = store.tag_history(stream, "latest");
    ASSERT_EQ(history.size(), 1u);
    EXPECT_EQ(history.front().cause, "import " + from);
    auto built = manifest_of("app", r.manifest_digest);
    EXPECT_EQ(built.annotations[std::string(oci::kAnnotationBaseName)], stream + ":latest");
    EXPECT_EQ(built.annotations[std::string(oci::kAnnotationBaseDigest)], manifest.digest.str());
    EXPECT_TRUE(logged("2 blobs fetched, 0 present")) << testing::PrintToString(log);

    // The remote loses the layer: a second build must not need it.
    auto layer = oci::parse_manifest(manifest.bytes).layers[0].digest;
    auto del = test::run({"curl", "-sf", "-o", "/dev/null", "-w", "%{http_code}", "-X", "DELETE",
                          "http://" + remote.address() + "/v2/busybox/blobs/" + layer.str()});
    EXPECT_EQ(del.out, "202") << del.err;
    log.clear();
    auto again = build("FROM " + from + "\nRUN cat /etc/base-release > /out\n");
    EXPECT_EQ(again.manifest_digest, r.manifest_digest);
    EXPECT_TRUE(logged("up to date")) << testing::PrintToString(log);
    EXPECT_TRUE(logged("(0 blobs fetched")) << testing::PrintToString(log);
    EXPECT_EQ(store.tag_history(stream, "latest").size(), 1u);

    // COPY --from an image of another registry uses the same stream.
    auto copied = build("FROM scratch\nCOPY --from=" + from + " /etc/base-release /release\n");
    EXPECT_EQ(file_in_last_layer(copied, "release"), "remote 1\n");
}

TEST_F(RemoteBase, AnIndexResolvesToTheHostPlatform) {
    test::DistributionRegistry remote;
    configure({remote.address()});
    auto host = test::write_busybox_image(layout, "", "host platform", engine::host_arch());
    auto other = test::write_busybox_image(layout, "", "other platform",
                                           engine::host_arch() == "arm64" ? "amd64" : "arm64");
    auto index = test::write_index(
        layout, "multi",
        {{engine::host_arch() == "arm64" ? "amd64" : "arm64", other}, {engine::host_arch(), host}});
    std::string from = remote.address() + "/multi:1";
    push("multi", from);
    const std::string stream = stream_domain(remote.address()) + "/multi";

    auto r = build("FROM " + from + "\nRUN cat /etc/base-release > /out\n");
    EXPECT_EQ(file_in_last_layer(r, "out"), "host platform\n");
    EXPECT_EQ(r.base_digest, host.digest);
    EXPECT_EQ(store.tag_digest(stream, "1"), host.digest);
    // Only the host's platform was pulled.
    EXPECT_FALSE(store.resolve(stream, other.digest.str()));
    auto other_layer = oci::parse_manifest(other.bytes).layers[0].digest;
    EXPECT_FALSE(blobs.size(other_layer));
    (void)index;

    // An index without the host's platform: a clear error.
    test::write_index(layout, "foreign",
                      {{engine::host_arch() == "arm64" ? "amd64" : "arm64", other}});
    push("foreign", remote.address() + "/foreign:1");
    auto message = failure("FROM " + remote.address() + "/foreign:1\nRUN true\n");
    EXPECT_NE(message.find("Dockerfile:1"), std::string::npos) << message;
    EXPECT_NE(message.find(remote.address() + "/foreign:1"), std::string::npos) << message;
    EXPECT_NE(message.find("no image for linux/" + engine::host_arch()), std::string::npos)
        << message;
    EXPECT_NE(message.find("name an image"), std::string::npos) << message;
}

TEST_F(RemoteBase, DockerSchema2Works) {
    test::DistributionRegistry remote;
    configure({remote.address()});
    test::write_busybox_image(layout, "v1", "docker format", engine::host_arch());
    std::string from = remote.address() + "/dockerbox:2";
    push("v1", from, {}, "v2s2");
    const std::string stream = stream_domain(remote.address()) + "/dockerbox";

    auto r = build("FROM " + from + "\nRUN cat /etc/base-release > /out\n");
    EXPECT_EQ(file_in_last_layer(r, "out"), "docker format\n");
    auto record = store.resolve(stream, "2");
    ASSERT_TRUE(record);
    EXPECT_EQ(record->media_type, oci::media::kDockerManifest);
}

TEST_F(RemoteBase, BasicAuthReadsTheAuthFile) {
    test::DistributionRegistry remote("alice", "s3cret");
    configure({remote.address()});
    test::write_busybox_image(layout, "v1", "private", engine::host_arch());
    std::string from = remote.address() + "/private/base:1";
    push("v1", from, "alice:s3cret");

    auto message = failure("FROM " + from + "\nRUN true\n");
    EXPECT_NE(message.find("401"), std::string::npos) << message;
    EXPECT_NE(message.find("auth file"), std::string::npos) << message;
    EXPECT_NE(message.find(auth_file.string()), std::string::npos) << message;

    fs::write_file_atomic(auth_file, test::auth_file_json(remote.address(), "alice", "s3cret"));
    auto r = build("FROM " + from + "\nRUN cat /etc/base-release > /out\n");
    EXPECT_EQ(file_in_last_layer(r, "out"), "private\n");
}

TEST_F(RemoteBase, DockerHubShortNamesUseTheStoreFirstThenAMirror) {
    test::DistributionRegistry mirror;
    configure({}, {{"docker.io", {"http://" + mirror.address()}}});
    auto manifest = test::write_busybox_image(layout, "v1", "from the mirror", engine::host_arch());
    push("v1", mirror.address() + "/library/busybox:latest");

    // Not in the store: docker.io through the mirror, into the stream "busybox".
    auto r = build("FROM busybox\nRUN cat /etc/base-release > /out\n");
    EXPECT_EQ(file_in_last_layer(r, "out"), "from the mirror\n");
    EXPECT_EQ(r.base_name, "busybox:latest");
    EXPECT_EQ(store.tag_digest("busybox", "latest"), manifest.digest);
    auto history = store.tag_history("busybox", "latest");
    ASSERT_FALSE(history.empty());
    EXPECT_EQ(history.front().cause, "import docker.io/library/busybox:latest");
    EXPECT_TRUE(logged("from " + mirror.address())) << testing::PrintToString(log);

    // An image of the store named like a Docker Hub image wins: a local
    // build moves busybox:latest, and FROM busybox now uses it, not the mirror.
    auto local = build(
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"sh\", \"-c\", "
        "\"echo local > /etc/base-release && ln -s busybox /bin/sh\"]\n",
        "busybox");
    EXPECT_EQ(store.tag_digest("busybox", "latest"), local.manifest_digest);
    log.clear();
    auto mine = build("FROM busybox\nRUN /bin/busybox cat /etc/base-release > /out\n");
    EXPECT_EQ(file_in_last_layer(mine, "out"), "local\n");
    EXPECT_EQ(mine.base_digest, local.manifest_digest);
    EXPECT_FALSE(logged("blobs fetched")) << testing::PrintToString(log);
}

TEST_F(RemoteBase, FailuresSayWhatToDo) {
    test::DistributionRegistry remote;
    configure({});
    test::write_busybox_image(layout, "v1", "x", engine::host_arch());
    std::string from = remote.address() + "/busybox:latest";
    push("v1", from);

    // Plain HTTP, not listed as insecure.
    auto message = failure("FROM " + from + "\nRUN true\n");
    EXPECT_NE(message.find("Dockerfile:1: FROM " + from), std::string::npos) << message;
    EXPECT_NE(message.find("registry " + remote.address()), std::string::npos) << message;
    EXPECT_NE(message.find("registries.insecure"), std::string::npos) << message;
    EXPECT_EQ(message.find("importPolicy"), std::string::npos) << message;

    // Unknown manifest.
    configure({remote.address()});
    message = failure("FROM " + remote.address() + "/no/such:1\nRUN true\n");
    EXPECT_NE(message.find("404"), std::string::npos) << message;
    EXPECT_NE(message.find("check the name and the tag"), std::string::npos) << message;

    // Nothing listens.
    std::string nowhere = "127.0.0.1:" + std::to_string(test::free_port());
    configure({nowhere});
    message = failure("FROM " + nowhere + "/base:1\nRUN true\n");
    EXPECT_NE(message.find("does not answer"), std::string::npos) << message;
    EXPECT_NE(message.find("is reachable"), std::string::npos) << message;
    EXPECT_FALSE(store.tag_digest(stream_domain(nowhere) + "/base", "1"));
}

}  // namespace
