// The Distribution API driven by real clients: skopeo and podman.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "registry_helpers.hpp"

namespace cascade::registry {
namespace {

using testing::RegistryServer;
using testing::StoreOnDisk;
namespace stdfs = std::filesystem;

std::string describe(const test::CommandResult& r) {
    return "exit " + std::to_string(r.exit_code) + "\nstdout: " + r.out + "\nstderr: " + r.err;
}

// Runs a command and fails the test (with its output) when it fails.
test::CommandResult must_run(const std::vector<std::string>& argv) {
    auto r = test::run(argv, std::chrono::seconds(300));
    std::string cmd;
    for (auto& a : argv)
        cmd += a + " ";
    EXPECT_EQ(r.exit_code, 0) << cmd << "\n" << describe(r);
    return r;
}

// The manifest a ref name points to in an OCI layout's index.json.
oci::Digest layout_manifest(const stdfs::path& layout, const std::string& ref) {
    auto index = nlohmann::json::parse(fs::read_file(layout / "index.json"));
    for (auto& m : index["manifests"])
        if (m["annotations"].value(std::string(oci::kAnnotationRefName), "") == ref)
            return oci::Digest::parse(m["digest"].get<std::string>());
    throw Error("no manifest named " + ref + " in " + layout.string());
}

std::string layout_blob(const stdfs::path& layout, const oci::Digest& d) {
    return fs::read_file(layout / "blobs" / d.algorithm() / d.encoded());
}

// Every blob of an image (manifest, config, layers) with its bytes.
std::map<oci::Digest, std::string> image_blobs(const stdfs::path& layout, const std::string& ref) {
    std::map<oci::Digest, std::string> out;
    auto md = layout_manifest(layout, ref);
    out[md] = layout_blob(layout, md);
    auto m = nlohmann::json::parse(out[md]);
    auto config = oci::Digest::parse(m["config"]["digest"].get<std::string>());
    out[config] = layout_blob(layout, config);
    for (auto& l : m["layers"]) {
        auto d = oci::Digest::parse(l["digest"].get<std::string>());
        out[d] = layout_blob(layout, d);
    }
    return out;
}

class ClientsTest : public ::testing::Test {
  protected:
    // An OCI layout with two busybox images, "t" and "t2" (same rootfs,
    // different Cmd), built once with umoci.
    static void SetUpTestSuite() {
        for (auto tool : {"skopeo", "umoci", "podman", "busybox"})
            if (!test::have_program(tool)) return;
        work_ = new fs::TempDir();
        auto layout = work_->path() / "layout";
        auto bundle = work_->path() / "bundle";
        auto ok = [](const std::vector<std::string>& argv) {
            auto r = test::run(argv, std::chrono::seconds(300));
            if (r.exit_code != 0) throw Error(argv[0] + " failed: " + describe(r));
        };
        ok({"umoci", "init", "--layout", layout.string()});
        ok({"umoci", "new", "--image", layout.string() + ":t"});
        ok({"umoci", "unpack", "--image", layout.string() + ":t", bundle.string()});
        fs::make_dirs(bundle / "rootfs" / "bin");
        stdfs::copy_file("/usr/bin/busybox", bundle / "rootfs" / "bin" / "busybox");
        stdfs::create_symlink("busybox", bundle / "rootfs" / "bin" / "sh");
        ok({"umoci", "repack", "--image", layout.string() + ":t", bundle.string()});
        ok({"umoci", "config", "--image", layout.string() + ":t", "--config.cmd", "/bin/sh"});
        ok({"umoci", "config", "--image", layout.string() + ":t", "--tag", "t2", "--config.cmd",
            "/bin/true"});
        ok({"umoci", "gc", "--layout", layout.string()});
        layout_ = new stdfs::path(layout);
    }
    static void TearDownTestSuite() {
        delete layout_;
        layout_ = nullptr;
        delete work_;
        work_ = nullptr;
    }

    void SetUp() override {
        if (!layout_) GTEST_SKIP() << "skopeo, umoci, podman or busybox is not installed";
    }

    std::string oci_ref(const std::string& tag) const {
        return "oci:" + layout_->string() + ":" + tag;
    }
    std::string docker_ref(const std::string& name) const {
        return "docker://" + server.address() + "/" + name;
    }
    test::CommandResult push(const std::string& tag, const std::string& dest) {
        return must_run(
            {"skopeo", "copy", "--dest-tls-verify=false", oci_ref(tag), docker_ref(dest)});
    }

    static fs::TempDir* work_;
    static stdfs::path* layout_;

    fs::TempDir tmp;
    StoreOnDisk s{tmp.path() / "root"};
    RegistryServer server{s.store};
};

fs::TempDir* ClientsTest::work_ = nullptr;
stdfs::path* ClientsTest::layout_ = nullptr;

TEST_F(ClientsTest, SkopeoCopiesInAndOutBitIdentical) {
    push("t", "library/busybox:t");
    auto source = image_blobs(*layout_, "t");
    auto manifest = layout_manifest(*layout_, "t");
    EXPECT_EQ(s.store.tag_digest("library/busybox", "t"), manifest)
        << "the registry must keep the manifest bytes skopeo sent";
    for (auto& [d, bytes] : source) {
        ASSERT_TRUE(s.blobs.has(d)) << d.str();
        EXPECT_EQ(s.blobs.read(d), bytes) << d.str();
    }
    auto history = s.store.tag_history("library/busybox", "t");
    ASSERT_EQ(history.size(), 1u);
    EXPECT_EQ(history[0].cause, "push");

    auto out = tmp.path() / "out";
    must_run({"skopeo", "copy", "--src-tls-verify=false", docker_ref("library/busybox:t"),
              "oci:" + out.string() + ":t"});
    EXPECT_EQ(layout_manifest(out, "t"), manifest);
    auto copied = image_blobs(out, "t");
    EXPECT_EQ(copied, source) << "the image read back differs from the one pushed";
    EXPECT_TRUE(stdfs::is_empty(s.blobs.ingest_dir())) << "upload sessions left behind";
}

TEST_F(ClientsTest, SkopeoPushMovesTagAndRecordsHistory) {
    push("t", "team/app:prod");
    push("t2", "team/app:prod");
    push("t2", "team/app:prod");  // same digest again: no new generation
    auto history = s.store.tag_history("team/app", "prod");
    ASSERT_EQ(history.size(), 2u);
    EXPECT_EQ(history[0].generation, 2);
    EXPECT_EQ(history[0].digest, layout_manifest(*layout_, "t2"));
    EXPECT_EQ(history[1].generation, 1);
    EXPECT_EQ(history[1].digest, layout_manifest(*layout_, "t"));
}

TEST_F(ClientsTest, SkopeoInspectAndListTags) {
    push("t", "a/b/c:v1");
    push("t2", "a/b/c:v2");

    auto inspect = must_run({"skopeo", "inspect", "--tls-verify=false", docker_ref("a/b/c:v1")});
    auto j = nlohmann::json::parse(inspect.out);
    EXPECT_EQ(j["Digest"], layout_manifest(*layout_, "t").str());
    EXPECT_EQ(j["RepoTags"], nlohmann::json({"v1", "v2"}));
    EXPECT_EQ(j["Os"], "linux");

    auto raw =
        must_run({"skopeo", "inspect", "--raw", "--tls-verify=false", docker_ref("a/b/c:v2")});
    EXPECT_EQ(raw.out, layout_blob(*layout_, layout_manifest(*layout_, "t2")));

    auto tags = must_run({"skopeo", "list-tags", "--tls-verify=false", docker_ref("a/b/c")});
    EXPECT_EQ(nlohmann::json::parse(tags.out)["Tags"], nlohmann::json({"v1", "v2"}));

    auto missing = test::run({"skopeo", "inspect", "--tls-verify=false", docker_ref("a/b/c:nope")});
    EXPECT_NE(missing.exit_code, 0);
    EXPECT_NE(missing.err.find("manifest unknown"), std::string::npos) << missing.err;
}

TEST_F(ClientsTest, SkopeoCopiesBetweenRepositoriesOfTheRegistry) {
    push("t", "library/busybox:t");
    must_run({"skopeo", "copy", "--src-tls-verify=false", "--dest-tls-verify=false",
              docker_ref("library/busybox:t"), docker_ref("mirror/busybox:latest")});
    auto manifest = layout_manifest(*layout_, "t");
    EXPECT_EQ(s.store.tag_digest("mirror/busybox", "latest"), manifest);
    auto m = nlohmann::json::parse(layout_blob(*layout_, manifest));
    for (auto& l : m["layers"])
        EXPECT_TRUE(s.store.repo_has_blob("mirror/busybox",
                                          oci::Digest::parse(l["digest"].get<std::string>())));
}

TEST_F(ClientsTest, PodmanPulls) {
    push("t", "library/busybox:t");
    std::string image = server.address() + "/library/busybox:t";
    struct Remove {
        std::string image;
        ~Remove() { test::run({"podman", "rmi", "--force", image}); }
    } remove{image};

    must_run({"podman", "pull", "--tls-verify=false", image});
    auto digest = must_run({"podman", "image", "inspect", "--format", "{{.Digest}}", image});
    EXPECT_EQ(digest.out.substr(0, digest.out.find_last_not_of("\n") + 1),
              layout_manifest(*layout_, "t").str());
    must_run({"podman", "rmi", image});
    auto gone = test::run({"podman", "image", "exists", image});
    EXPECT_NE(gone.exit_code, 0);
}

}  // namespace
}  // namespace cascade::registry
