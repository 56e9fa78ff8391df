// podman and buildah push to and pull from a real `cascade serve` (the unit
// tests in tests/registry/clients_test.cpp drive the same HTTP code in-process;
// this checks the daemon's wiring: routes, access, the image stream a push
// records). Podman and buildah use their own storage in a temporary directory
// (vfs driver: no mounts).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>

#include "oci/digest.hpp"
#include "oci/fs.hpp"
#include "support.hpp"

using nlohmann::json;
using namespace cascade;
using namespace std::chrono_literals;
namespace stdfs = std::filesystem;

namespace {

std::string trimmed(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == ' '))
        s.pop_back();
    return s;
}

test::CommandResult must_run(const std::vector<std::string>& argv) {
    auto r = test::run(argv, 300s);
    std::string cmd;
    for (auto& a : argv)
        cmd += a + " ";
    EXPECT_EQ(r.exit_code, 0) << cmd << "\nstdout: " << r.out << "\nstderr: " << r.err;
    return r;
}

class RegistryClients : public ::testing::Test {
  protected:
    fs::TempDir tmp{{}, "cascade-clients-"};
    stdfs::path state = tmp.path() / "state";
    stdfs::path storage = tmp.path() / "storage";
    std::unique_ptr<test::Daemon> daemon;

    void SetUp() override {
        for (auto tool : {"podman", "buildah", "skopeo"})
            if (!test::have_program(tool)) GTEST_SKIP() << tool << " is not installed";
        daemon = std::make_unique<test::Daemon>(state);
    }
    void TearDown() override {
        daemon.reset();
        test::cleanup_state_root(state);
        test::cleanup_state_root(storage);
    }

    // podman/buildah on storage `name` under the test's directory.
    std::vector<std::string> podman(const std::string& name, std::vector<std::string> args) const {
        auto dir = storage / name;
        std::vector<std::string> argv{"podman",
                                      "--root",
                                      (dir / "root").string(),
                                      "--runroot",
                                      (dir / "run").string(),
                                      "--tmpdir",
                                      (dir / "tmp").string(),
                                      "--storage-driver",
                                      "vfs",
                                      "--events-backend",
                                      "none",
                                      "--cgroup-manager",
                                      "cgroupfs"};
        argv.insert(argv.end(), args.begin(), args.end());
        return argv;
    }
    std::vector<std::string> buildah(const std::string& name, std::vector<std::string> args) const {
        auto dir = storage / name;
        std::vector<std::string> argv{"buildah",
                                      "--root",
                                      (dir / "root").string(),
                                      "--runroot",
                                      (dir / "run").string(),
                                      "--storage-driver",
                                      "vfs"};
        argv.insert(argv.end(), args.begin(), args.end());
        return argv;
    }

    // A rootfs directory with busybox and `noise` bytes that do not compress.
    stdfs::path make_context(const std::string& name, size_t noise) {
        auto dir = tmp.path() / name;
        fs::make_dirs(dir / "bin");
        stdfs::copy_file("/usr/bin/busybox", dir / "bin" / "busybox");
        std::mt19937_64 rng(noise);
        std::string data(noise, '\0');
        for (size_t i = 0; i + 8 <= noise; i += 8) {
            uint64_t v = rng();
            std::memcpy(data.data() + i, &v, 8);
        }
        fs::write_file_atomic(dir / "noise.bin", data);
        return dir;
    }

    // The manifest digest and config digest of a tag, read with skopeo.
    std::pair<oci::Digest, std::string> inspect(const std::string& ref) {
        auto raw =
            must_run({"skopeo", "inspect", "--raw", "--tls-verify=false", "docker://" + ref});
        auto m = json::parse(raw.out.empty() ? "{}" : raw.out);
        return {oci::Digest::sha256_of(raw.out), m["config"].value("digest", "")};
    }

    // The tag's history from the API: digests, oldest first.
    std::vector<std::string> history(const std::string& repo, const std::string& tag) {
        auto r = test::http_get(daemon->port(), "/api/v1/imagestreams/" + repo);
        std::vector<std::string> out;
        if (!r || r->status != 200) {
            ADD_FAILURE() << "GET /api/v1/imagestreams/" << repo << ": "
                          << (r ? r->body : "no answer");
            return out;
        }
        auto stream = json::parse(r->body);
        std::vector<std::pair<int64_t, std::string>> items;
        for (auto& t : stream["status"]["tags"])
            if (t["tag"] == tag)
                for (auto& item : t["items"])
                    items.emplace_back(item["generation"].get<int64_t>(),
                                       item["image"].get<std::string>());
        std::sort(items.begin(), items.end());
        for (auto& [generation, digest] : items)
            out.push_back(digest);
        return out;
    }
};

TEST_F(RegistryClients, PodmanPushesAndPullsThroughTheDaemon) {
    auto context = make_context("context", 3 << 20);
    auto tar = tmp.path() / "rootfs.tar";
    must_run({"tar", "-C", context.string(), "-cf", tar.string(), "."});
    auto imported = must_run(podman("a", {"import", "--change", "CMD [\"/bin/busybox\", \"true\"]",
                                          tar.string(), "localhost/e2e/imported:v1"}));
    std::string id = trimmed(imported.out);
    id = id.substr(id.rfind('\n') + 1);
    ASSERT_TRUE(id.starts_with("sha256:")) << imported.out;

    std::string remote = daemon->address() + "/e2e/podman:v1";
    auto digest_file = tmp.path() / "digest";
    must_run(podman("a", {"push", "--tls-verify=false", "--digestfile", digest_file.string(),
                          "localhost/e2e/imported:v1", "docker://" + remote}));
    auto pushed = trimmed(fs::read_file(digest_file));
    auto [manifest, config] = inspect(remote);
    EXPECT_EQ(manifest.str(), pushed);
    EXPECT_EQ(config, id) << "the registry serves another image than podman pushed";
    EXPECT_EQ(history("e2e/podman", "v1"), std::vector<std::string>{pushed})
        << "the push is not in the image stream";

    must_run(podman("b", {"pull", "--tls-verify=false", remote}));
    auto back =
        must_run(podman("b", {"image", "inspect", "--format", "{{.Id}} {{.Digest}}", remote}));
    EXPECT_EQ(trimmed(back.out), id.substr(7) + " " + pushed);

    // A second push of another image moves the tag: generation 2.
    must_run(podman("a", {"import", "--change", "CMD [\"/bin/busybox\", \"false\"]", tar.string(),
                          "localhost/e2e/imported:v2"}));
    must_run(podman("a", {"push", "--tls-verify=false", "--digestfile", digest_file.string(),
                          "localhost/e2e/imported:v2", "docker://" + remote}));
    auto second = trimmed(fs::read_file(digest_file));
    EXPECT_NE(second, pushed);
    EXPECT_EQ(history("e2e/podman", "v1"), (std::vector<std::string>{pushed, second}));
}

TEST_F(RegistryClients, BuildahPushesThroughTheDaemon) {
    auto context = make_context("context", 2 << 20);
    auto from = must_run(buildah("a", {"from", "scratch"}));
    std::string container = trimmed(from.out);
    container = container.substr(container.rfind('\n') + 1);
    must_run(buildah("a", {"copy", container, context.string() + "/", "/"}));
    must_run(buildah("a", {"config", "--cmd", "[\"/bin/busybox\", \"true\"]", container}));
    auto iid_file = tmp.path() / "iid";
    must_run(buildah(
        "a", {"commit", "--iidfile", iid_file.string(), container, "localhost/e2e/built:v1"}));
    must_run(buildah("a", {"rm", container}));
    std::string id = trimmed(fs::read_file(iid_file));
    if (!id.starts_with("sha256:")) id = "sha256:" + id;

    std::string remote = daemon->address() + "/e2e/buildah:v1";
    auto digest_file = tmp.path() / "digest";
    must_run(buildah("a", {"push", "--tls-verify=false", "--digestfile", digest_file.string(),
                           "localhost/e2e/built:v1", "docker://" + remote}));
    auto pushed = trimmed(fs::read_file(digest_file));
    auto [manifest, config] = inspect(remote);
    EXPECT_EQ(manifest.str(), pushed);
    EXPECT_EQ(config, id);

    // Out with skopeo and in again under another name: the same digest.
    auto layout = tmp.path() / "layout";
    must_run({"skopeo", "copy", "--src-tls-verify=false", "docker://" + remote,
              "oci:" + layout.string() + ":v1"});
    must_run({"skopeo", "copy", "--dest-tls-verify=false", "oci:" + layout.string() + ":v1",
              "docker://" + daemon->address() + "/e2e/copy:v1"});
    EXPECT_EQ(inspect(daemon->address() + "/e2e/copy:v1").first.str(), pushed);

    // podman runs nothing here, but pulls what buildah pushed.
    must_run(podman("b", {"pull", "--tls-verify=false", remote}));
    auto back = must_run(podman("b", {"image", "inspect", "--format", "{{.Id}}", remote}));
    EXPECT_EQ("sha256:" + trimmed(back.out), id);
}

}  // namespace
