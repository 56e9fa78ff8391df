// A second registry for tests of image import: Debian's docker-registry (CNCF
// Distribution 2.8) on a loopback port with storage in a temporary directory,
// anonymous or with htpasswd (bcrypt) basic auth; and tiny images written as
// OCI layouts and pushed into it with skopeo.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "oci/error.hpp"
#include "oci/fs.hpp"
#include "oci/image.hpp"
#include "oci/layer.hpp"
#include "oci/layout.hpp"
#include "oci/media_types.hpp"
#include "support.hpp"

namespace cascade::test {

class DistributionRegistry {
  public:
    // With a user name, the registry demands basic auth (an htpasswd file
    // made with `htpasswd -Bbc`); with `tls`, it serves https with a
    // self-signed certificate for 127.0.0.1.
    explicit DistributionRegistry(const std::string& user = {}, const std::string& password = {},
                                  bool tls = false)
        : dir_({}, "cascade-distribution-"), port_(free_port()) {
        std::string config =
            "version: 0.1\n"
            "log:\n  level: warn\n"
            "storage:\n  filesystem:\n    rootdirectory: " +
            (dir_.path() / "data").string() +
            "\n  delete:\n    enabled: true\n"
            "http:\n  addr: 127.0.0.1:" +
            std::to_string(port_) + "\n  secret: cascade-tests\n";
        if (tls) {
            auto cert = dir_.path() / "tls.crt", key = dir_.path() / "tls.key";
            auto r = run({"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                          key.string(), "-out", cert.string(), "-days", "2", "-subj",
                          "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"});
            if (r.exit_code != 0) throw Error("openssl req failed: " + r.err);
            config +=
                "  tls:\n    certificate: " + cert.string() + "\n    key: " + key.string() + "\n";
        }
        if (!user.empty()) {
            auto htpasswd = dir_.path() / "htpasswd";
            auto r = run({"htpasswd", "-Bbc", htpasswd.string(), user, password});
            if (r.exit_code != 0) throw Error("htpasswd failed: " + r.err);
            config +=
                "auth:\n  htpasswd:\n    realm: cascade-tests\n    path: " + htpasswd.string() +
                "\n";
        }
        auto config_path = dir_.path() / "config.yml";
        fs::write_file_atomic(config_path, config);
        log_path_ = dir_.path() / "registry.log";
        pid_ = fork();
        if (pid_ == 0) {
            int fd = open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
            if (fd >= 0) {
                dup2(fd, 1);
                dup2(fd, 2);
            }
            execlp("docker-registry", "docker-registry", "serve", config_path.c_str(),
                   static_cast<char*>(nullptr));
            _exit(127);
        }
        if (!eventually([&] { return port_open(port_); }, std::chrono::seconds(20)))
            throw Error("docker-registry did not answer on " + address() + "; its log:\n" + log());
    }
    ~DistributionRegistry() {
        if (pid_ <= 0) return;
        kill(pid_, SIGTERM);
        for (int i = 0; i < 200; i++) {
            if (waitpid(pid_, nullptr, WNOHANG) == pid_) return;
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        kill(pid_, SIGKILL);
        waitpid(pid_, nullptr, 0);
    }
    DistributionRegistry(const DistributionRegistry&) = delete;
    DistributionRegistry& operator=(const DistributionRegistry&) = delete;

    uint16_t port() const { return port_; }
    std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
    std::string log() const {
        try {
            return fs::read_file(log_path_);
        } catch (...) {
            return {};
        }
    }

  private:
    fs::TempDir dir_;
    uint16_t port_;
    std::filesystem::path log_path_;
    pid_t pid_ = -1;
};

struct TinyImage {
    oci::Blob manifest;
    oci::Blob config;
    oci::Digest layer;
    int64_t layer_size = 0;
};

// An image of one gzip layer holding `tree`, for `architecture`, written
// into the OCI layout at `layout` (created when missing); named `ref` in
// index.json unless `ref` is empty (for an index's children).
inline TinyImage write_tree_image(const std::filesystem::path& layout_dir, const std::string& ref,
                                  const std::filesystem::path& tree,
                                  const std::vector<std::string>& env,
                                  const std::string& architecture) {
    auto layout = oci::ImageLayout::open(layout_dir, true);
    fs::TempDir scratch;
    oci::LayerWriteOptions options;
    options.clamp_mtime = 1700000000;
    auto layer_file = scratch.path() / "layer.tar.gz";
    auto layer = oci::write_layer(tree, layer_file, options);
    layout.put_blob_file(layer_file, layer.digest);

    oci::ImageConfig c;
    c.created = oci::rfc3339(1700000000);
    c.architecture = architecture;
    c.config.env = env;
    c.diff_ids = {layer.diff_id};
    TinyImage img;
    img.config =
        oci::Blob::of(std::string(oci::media::kImageConfig), oci::to_json_bytes(oci::to_json(c)));
    layout.put_blob(img.config.bytes);
    img.layer = layer.digest;
    img.layer_size = layer.size;

    oci::Manifest m;
    m.media_type = std::string(oci::media::kImageManifest);
    m.config = img.config.descriptor();
    oci::Descriptor ld;
    ld.media_type = layer.media_type;
    ld.digest = layer.digest;
    ld.size = layer.size;
    m.layers.push_back(ld);
    img.manifest =
        oci::Blob::of(std::string(oci::media::kImageManifest), oci::to_json_bytes(oci::to_json(m)));
    layout.put_blob(img.manifest.bytes);
    if (!ref.empty()) {
        auto d = img.manifest.descriptor();
        d.platform = oci::Platform{architecture, "linux", "", "", {}};
        layout.add_manifest(d, ref);
    }
    return img;
}

// A one-layer image (gzip; /hello.txt holds `content`) written into the OCI
// layout at `layout` (created when missing). Named `ref` in index.json unless
// `ref` is empty (for an index's children).
inline TinyImage write_tiny_image(const std::filesystem::path& layout_dir, const std::string& ref,
                                  const std::string& content,
                                  const std::string& architecture = "amd64") {
    fs::TempDir scratch;
    auto tree = scratch.path() / "tree";
    fs::make_dirs(tree);
    fs::write_file_atomic(tree / "hello.txt", content);
    return write_tree_image(layout_dir, ref, tree, {"PATH=/bin", "CONTENT=" + content},
                            architecture);
}

// An index of the given children (architecture → manifest), named `ref`.
inline oci::Blob write_index(const std::filesystem::path& layout_dir, const std::string& ref,
                             const std::vector<std::pair<std::string, oci::Blob>>& children) {
    oci::Index index;
    index.media_type = std::string(oci::media::kImageIndex);
    for (const auto& [arch, manifest] : children) {
        auto d = manifest.descriptor();
        d.platform = oci::Platform{arch, "linux", "", "", {}};
        index.manifests.push_back(d);
    }
    auto layout = oci::ImageLayout::open(layout_dir, true);
    auto blob = oci::Blob::of(std::string(oci::media::kImageIndex),
                              oci::to_json_bytes(oci::to_json(index)));
    layout.put_blob(blob.bytes);
    layout.add_manifest(blob.descriptor(), ref);
    return blob;
}

// An index of one tiny image per (architecture, content), named `ref`.
inline oci::Blob write_tiny_index(const std::filesystem::path& layout_dir, const std::string& ref,
                                  const std::vector<std::pair<std::string, std::string>>& images) {
    std::vector<std::pair<std::string, oci::Blob>> children;
    for (const auto& [arch, content] : images)
        children.emplace_back(arch, write_tiny_image(layout_dir, "", content, arch).manifest);
    return write_index(layout_dir, ref, children);
}

// A one-layer image with the host's busybox as /bin/sh and `release` in
// /etc/base-release, for `architecture`, written into the OCI layout (named
// `ref` unless empty). Returns the manifest.
inline oci::Blob write_busybox_image(const std::filesystem::path& layout_dir,
                                     const std::string& ref, const std::string& release,
                                     const std::string& architecture = "amd64") {
    fs::TempDir scratch;
    auto tree = scratch.path() / "tree";
    fs::make_dirs(tree / "bin");
    fs::make_dirs(tree / "etc");
    std::filesystem::copy_file("/bin/busybox", tree / "bin" / "busybox");
    ::chmod((tree / "bin" / "busybox").c_str(), 0755);
    for (const char* tool : {"sh", "cat", "echo"})
        std::filesystem::create_symlink("busybox", tree / "bin" / tool);
    fs::write_file_atomic(tree / "etc" / "base-release", release + "\n");
    return write_tree_image(layout_dir, ref, tree, {"PATH=/bin", "BASE_RELEASE=" + release},
                            architecture)
        .manifest;
}

inline std::string base64(std::string_view in) {
    static const char* abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    for (size_t i = 0; i < in.size(); i += 3) {
        uint32_t n = static_cast<uint8_t>(in[i]) << 16;
        if (i + 1 < in.size()) n |= static_cast<uint8_t>(in[i + 1]) << 8;
        if (i + 2 < in.size()) n |= static_cast<uint8_t>(in[i + 2]);
        out += abc[(n >> 18) & 63];
        out += abc[(n >> 12) & 63];
        out += i + 1 < in.size() ? abc[(n >> 6) & 63] : '=';
        out += i + 2 < in.size() ? abc[n & 63] : '=';
    }
    return out;
}

// A containers auth file (podman's and skopeo's format) with one entry.
inline std::string auth_file_json(const std::string& registry, const std::string& user,
                                  const std::string& password) {
    return R"({"auths": {")" + registry + R"(": {"auth": ")" + base64(user + ":" + password) +
           R"("}}})";
}

// `skopeo copy --all oci:LAYOUT:REF docker://DEST` over plain HTTP; `format`
// "v2s2" converts the image to Docker's schema 2.
inline CommandResult push_image(const std::filesystem::path& layout, const std::string& ref,
                                const std::string& dest, const std::string& creds = {},
                                const std::string& format = {}) {
    std::vector<std::string> argv{"skopeo", "copy", "--all", "--dest-tls-verify=false"};
    if (!format.empty()) {
        argv.push_back("--format");
        argv.push_back(format);
    }
    if (!creds.empty()) {
        argv.push_back("--dest-creds");
        argv.push_back(creds);
    }
    argv.push_back("oci:" + layout.string() + ":" + ref);
    argv.push_back("docker://" + dest);
    return run(argv, std::chrono::seconds(120));
}

}  // namespace cascade::test
