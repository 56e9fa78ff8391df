// Shared pieces of the deployment and rollout tests: a busybox image pushed
// into a real registry store, the daemon's components wired on one state
// root, and a fixture that removes every container and mount it started.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "oci/fs.hpp"
#include "oci/image.hpp"
#include "oci/layer.hpp"
#include "oci/media_types.hpp"
#include "registry/blob_store.hpp"
#include "registry/database.hpp"
#include "registry/store.hpp"
#include "runtime/container.hpp"
#include "runtime/deployment.hpp"
#include "runtime/rootfs.hpp"
#include "runtime/router.hpp"
#include "runtime/runc.hpp"
#include "tests/support/support.hpp"

namespace cascade::runtime::rollout_testing {

namespace stdfs = std::filesystem;
using namespace std::chrono_literals;

inline const std::vector<std::string> kHttpd = {"/bin/busybox", "httpd", "-f",  "-p",
                                                "8080",         "-h",    "/www"};
inline const std::vector<std::string> kNeverListens = {"/bin/busybox", "sleep", "3600"};
inline const std::vector<std::string> kCrashes = {"/bin/busybox", "sh", "-c",
                                                  "echo crashing at start; exit 3"};

// An image of busybox with /www/index.html naming `version`, tagged in the store.
inline oci::Digest push_image(registry::Store& store, const std::string& repo,
                              const std::string& tag, const std::string& version,
                              const std::vector<std::string>& cmd) {
    fs::TempDir work;
    auto rootfs = work.path() / "rootfs";
    stdfs::create_directories(rootfs / "bin");
    stdfs::create_directories(rootfs / "www");
    stdfs::copy_file("/usr/bin/busybox", rootfs / "bin" / "busybox");
    fs::write_file_atomic(rootfs / "www" / "index.html", "<p>" + version + "</p>\n");
    oci::LayerWriteOptions options;
    options.clamp_mtime = 0;
    auto layer = oci::write_layer(rootfs, work.path() / "layer.tar.gz", options);
    store.blobs().put_file(work.path() / "layer.tar.gz", layer.digest);

    oci::ImageConfig config;
    config.config.cmd = cmd;
    config.config.env = {"PATH=/bin"};
    config.config.labels["version"] = version;
    config.config.exposed_ports = {"8080/tcp"};
    config.diff_ids = {layer.diff_id};
    auto config_blob = oci::Blob::of(std::string(oci::media::kImageConfig),
                                     oci::to_json_bytes(oci::to_json(config)));
    store.blobs().put(config_blob.bytes);

    oci::Manifest manifest;
    manifest.media_type = oci::media::kImageManifest;
    manifest.config = config_blob.descriptor();
    oci::Descriptor layer_desc;
    layer_desc.media_type = layer.media_type;
    layer_desc.digest = layer.digest;
    layer_desc.size = layer.size;
    manifest.layers.push_back(layer_desc);
    return store.put_manifest(repo, oci::to_json_bytes(oci::to_json(manifest)),
                              std::string(oci::media::kImageManifest), tag, "push");
}

inline std::vector<std::string> mounts_below(const stdfs::path& dir) {
    std::vector<std::string> out;
    std::ifstream in("/proc/self/mounts");
    std::string line, prefix = stdfs::weakly_canonical(dir).string() + "/";
    while (std::getline(in, line)) {
        std::istringstream fields(line);
        std::string source, target;
        fields >> source >> target;
        if (target.rfind(prefix, 0) == 0) out.push_back(target);
    }
    return out;
}

// Everything a daemon wires together, on one state root.
struct Stack {
    explicit Stack(const stdfs::path& root)
        : blobs(root / "registry"),
          db(root / "metadata.db"),
          store(blobs, db),
          runc(root / "runc"),
          layers(root / "layers", blobs),
          host(root / "containers", layers, runc),
          controller(store, db, host, router) {
        controller.set_event_sink([this](const std::string& kind, const std::string& message) {
            std::lock_guard lock(mu);
            events.push_back(kind + ": " + message);
        });
        subscription =
            store.subscribe([this](const registry::TagEvent& e) { controller.on_tag_moved(e); });
    }
    ~Stack() { store.unsubscribe(subscription); }

    std::vector<std::string> event_list() {
        std::lock_guard lock(mu);
        return events;
    }
    std::string event_log() {
        std::string s;
        for (auto& e : event_list())
            s += "  " + e + "\n";
        return s;
    }

    registry::BlobStore blobs;
    registry::Database db;
    registry::Store store;
    Runc runc;
    LayerCache layers;
    ContainerHost host;
    Router router;
    DeploymentController controller;
    int subscription = 0;
    std::mutex mu;
    std::vector<std::string> events;
};

// A temporary state root with a Stack; TearDown stops every replica and
// checks that no container or mount is left.
class StackTest : public ::testing::Test {
  protected:
    void SetUp() override {
        if (geteuid() != 0) GTEST_SKIP() << "needs root (runc, overlayfs)";
        if (!test::have_program("runc")) GTEST_SKIP() << "runc is not installed";
        if (!stdfs::exists("/usr/bin/busybox")) GTEST_SKIP() << "busybox is not installed";
        root_ = std::make_unique<fs::TempDir>();
        stack_ = std::make_unique<Stack>(root());
    }

    void TearDown() override {
        if (!root_) return;
        if (stack_) {
            if (HasFailure() || getenv("CASCADE_TEST_EVENTS"))
                std::cerr << "events:\n" << stack_->event_log();
            stack_->controller.stop_all();
            stack_.reset();
        }
        auto listed = test::run({"runc", "--root", (root() / "runc").string(), "list", "-q"});
        EXPECT_EQ(listed.out, "") << "runc containers left behind";
        EXPECT_TRUE(mounts_below(root()).empty()) << "mounts left behind";
        test::cleanup_state_root(root());
        root_.reset();
    }

    const stdfs::path& root() const { return root_->path(); }
    DeploymentController& controller() { return stack_->controller; }

    static DeploymentSpec web_spec(const std::string& repo, int replicas = 2) {
        DeploymentSpec spec;
        spec.name = "web";
        spec.image_repository = repo;
        spec.image_tag = "latest";
        spec.container_port = 8080;
        spec.replicas = replicas;
        spec.strategy.timeout = 30s;
        spec.strategy.interval = 200ms;
        spec.strategy.update_period = 0ms;
        spec.stop_grace = 2s;
        return spec;
    }

    int runc_containers() {
        auto listed = test::run({"runc", "--root", (root() / "runc").string(), "list", "-q"});
        return static_cast<int>(std::count(listed.out.begin(), listed.out.end(), '\n'));
    }

    static bool all_ready(const DeploymentStatus& s, int revision, int count) {
        if (static_cast<int>(s.replicas.size()) != count || s.ready != count) return false;
        for (auto& r : s.replicas)
            if (r.revision != revision || r.state != "ready") return false;
        return true;
    }

    std::unique_ptr<fs::TempDir> root_;
    std::unique_ptr<Stack> stack_;
};

}  // namespace cascade::runtime::rollout_testing
