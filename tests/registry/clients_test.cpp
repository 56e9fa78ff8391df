// The Distribution API driven by real clients: skopeo (copy in and out,
// multi-arch indexes, Docker schema 2 and manifest lists, inspect, list-tags,
// delete), podman (push and pull) and buildah (push). Podman and buildah run
// on their own storage in a temporary directory (vfs driver: no mounts).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>

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

std::string trimmed(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == ' '))
        s.pop_back();
    return s;
}

// A file of `size` bytes that do not compress.
void write_random_file(const stdfs::path& path, size_t size, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::string data(size, '\0');
    for (size_t i = 0; i < size; i += 8) {
        uint64_t v = rng();
        std::memcpy(data.data() + i, &v, std::min<size_t>(8, size - i));
    }
    fs::write_file_atomic(path, data);
}

// The digest of a gzip file's uncompressed bytes (a layer's diff ID).
oci::Digest gunzipped_digest(const stdfs::path& file) {
    auto r = must_run({"sh", "-c", "gzip -dc < '" + file.string() + "' | sha256sum"});
    return oci::Digest::parse("sha256:" + r.out.substr(0, 64));
}

// Checks an OCI layout's image the way a runtime would: every layer
// decompresses to the diff ID its config lists.
void expect_layers_match_diff_ids(const stdfs::path& layout, const std::string& ref) {
    auto m = nlohmann::json::parse(layout_blob(layout, layout_manifest(layout, ref)));
    auto config = nlohmann::json::parse(
        layout_blob(layout, oci::Digest::parse(m["config"]["digest"].get<std::string>())));
    auto& diff_ids = config["rootfs"]["diff_ids"];
    ASSERT_EQ(diff_ids.size(), m["layers"].size());
    for (size_t i = 0; i < diff_ids.size(); i++) {
        auto layer = oci::Digest::parse(m["layers"][i]["digest"].get<std::string>());
        EXPECT_EQ(gunzipped_digest(layout / "blobs" / "sha256" / layer.encoded()).str(),
                  diff_ids[i].get<std::string>())
            << "layer " << i << " of " << ref;
    }
}

// Writes bytes as a blob of an OCI layout; returns its digest.
oci::Digest put_layout_blob(const stdfs::path& layout, const std::string& bytes) {
    auto d = oci::Digest::sha256_of(bytes);
    fs::make_dirs(layout / "blobs" / "sha256");
    fs::write_file_atomic(layout / "blobs" / "sha256" / d.encoded(), bytes);
    return d;
}

nlohmann::json descriptor(std::string_view media_type, const std::string& bytes) {
    return {{"mediaType", media_type},
            {"digest", oci::Digest::sha256_of(bytes).str()},
            {"size", bytes.size()}};
}

// One platform's image: a gzip layer holding /platform, its config and a
// manifest (OCI or Docker schema 2 media types).
struct PlatformImage {
    std::string arch, layer, config, manifest;
};

PlatformImage make_platform_image(const stdfs::path& work, const std::string& arch, bool docker) {
    PlatformImage img;
    img.arch = arch;
    auto dir = work / ("rootfs-" + arch);
    fs::make_dirs(dir / "etc");
    fs::write_file_atomic(dir / "etc" / "platform", "linux/" + arch + "\n");
    auto tar = work / ("layer-" + arch + ".tar");
    must_run({"tar", "--sort=name", "--mtime=@0", "--owner=0", "--group=0", "--numeric-owner", "-C",
              dir.string(), "-cf", tar.string(), "."});
    must_run({"sh", "-c", "gzip -n -c '" + tar.string() + "' > '" + tar.string() + ".gz'"});
    img.layer = fs::read_file(tar.string() + ".gz");
    auto diff_id = oci::Digest::sha256_of(fs::read_file(tar));
    img.config = nlohmann::json{{"architecture", arch},
                                {"os", "linux"},
                                {"config", {{"Cmd", {"/bin/sh"}}}},
                                {"rootfs", {{"type", "layers"}, {"diff_ids", {diff_id.str()}}}}}
                     .dump();
    nlohmann::json m = {
        {"schemaVersion", 2},
        {"mediaType", docker ? oci::media::kDockerManifest : oci::media::kImageManifest},
        {"config",
         descriptor(docker ? oci::media::kDockerConfig : oci::media::kImageConfig, img.config)},
        {"layers",
         {descriptor(docker ? oci::media::kDockerLayerGzip : oci::media::kLayerGzip, img.layer)}}};
    img.manifest = m.dump(3);  // unusual indentation: the bytes must survive as they are
    return img;
}

std::string make_list(const std::vector<PlatformImage>& images, bool docker) {
    nlohmann::json list = {
        {"schemaVersion", 2},
        {"mediaType", docker ? oci::media::kDockerManifestList : oci::media::kImageIndex},
        {"manifests", nlohmann::json::array()}};
    for (auto& img : images) {
        auto d = descriptor(docker ? oci::media::kDockerManifest : oci::media::kImageManifest,
                            img.manifest);
        d["platform"] = {{"architecture", img.arch}, {"os", "linux"}};
        list["manifests"].push_back(d);
    }
    return list.dump(2);
}

// Podman's or buildah's storage in a temporary directory, vfs driver (no
// overlay mounts); removed, with anything mounted below it, at the end.
class IsolatedStorage {
  public:
    IsolatedStorage() = default;
    ~IsolatedStorage() { test::cleanup_state_root(dir_.path()); }
    IsolatedStorage(const IsolatedStorage&) = delete;
    IsolatedStorage& operator=(const IsolatedStorage&) = delete;

    std::vector<std::string> podman(std::vector<std::string> args) const {
        std::vector<std::string> argv{"podman",
                                      "--root",
                                      (dir_.path() / "root").string(),
                                      "--runroot",
                                      (dir_.path() / "run").string(),
                                      "--tmpdir",
                                      (dir_.path() / "tmp").string(),
                                      "--storage-driver",
                                      "vfs",
                                      "--events-backend",
                                      "none",
                                      "--cgroup-manager",
                                      "cgroupfs"};
        argv.insert(argv.end(), args.begin(), args.end());
        return argv;
    }
    std::vector<std::string> buildah(std::vector<std::string> args) const {
        std::vector<std::string> argv{"buildah",
                                      "--root",
                                      (dir_.path() / "root").string(),
                                      "--runroot",
                                      (dir_.path() / "run").string(),
                                      "--storage-driver",
                                      "vfs"};
        argv.insert(argv.end(), args.begin(), args.end());
        return argv;
    }
    stdfs::path path() const { return dir_.path(); }

  private:
    fs::TempDir dir_{{}, "cascade-storage-"};
};

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
        // "big": one more layer of 4 MiB that does not compress, so that
        // clients send it as a large streamed upload.
        auto big = work_->path() / "big";
        ok({"umoci", "unpack", "--image", layout.string() + ":t", big.string()});
        fs::make_dirs(big / "rootfs" / "data");
        write_random_file(big / "rootfs" / "data" / "random.bin", 4 << 20, 1);
        ok({"umoci", "repack", "--image", layout.string() + ":big", big.string()});
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

TEST_F(ClientsTest, SkopeoStreamsABigLayerInAndOutBitIdentical) {
    push("big", "big/image:v1");
    auto source = image_blobs(*layout_, "big");
    int64_t largest = 0;
    for (auto& [d, bytes] : source)
        largest = std::max<int64_t>(largest, static_cast<int64_t>(bytes.size()));
    ASSERT_GE(largest, 4 << 20) << "the test image lacks its big layer";
    EXPECT_EQ(s.store.tag_digest("big/image", "v1"), layout_manifest(*layout_, "big"));
    for (auto& [d, bytes] : source) {
        ASSERT_TRUE(s.blobs.has(d)) << d.str();
        EXPECT_TRUE(s.blobs.read(d) == bytes) << d.str() << " differs";
    }
    auto out = tmp.path() / "out";
    must_run({"skopeo", "copy", "--src-tls-verify=false", docker_ref("big/image:v1"),
              "oci:" + out.string() + ":big"});
    EXPECT_TRUE(image_blobs(out, "big") == source) << "the image read back differs";
    expect_layers_match_diff_ids(out, "big");
    EXPECT_TRUE(stdfs::is_empty(s.blobs.ingest_dir())) << "upload sessions left behind";
}

// An OCI index with two platforms, written by hand, copied with --all.
TEST_F(ClientsTest, SkopeoCopiesAMultiArchOciIndexWithAll) {
    auto layout = tmp.path() / "multi";
    std::vector<PlatformImage> images{make_platform_image(tmp.path(), "amd64", false),
                                      make_platform_image(tmp.path(), "arm64", false)};
    for (auto& img : images) {
        put_layout_blob(layout, img.layer);
        put_layout_blob(layout, img.config);
        put_layout_blob(layout, img.manifest);
    }
    std::string index = make_list(images, false);
    auto index_digest = put_layout_blob(layout, index);
    nlohmann::json top = {{"schemaVersion", 2},
                          {"mediaType", oci::media::kImageIndex},
                          {"manifests",
                           {{{"mediaType", oci::media::kImageIndex},
                             {"digest", index_digest.str()},
                             {"size", index.size()},
                             {"annotations", {{std::string(oci::kAnnotationRefName), "multi"}}}}}}};
    fs::write_file_atomic(layout / "index.json", top.dump());
    fs::write_file_atomic(layout / "oci-layout", R"({"imageLayoutVersion":"1.0.0"})");

    must_run({"skopeo", "copy", "--all", "--dest-tls-verify=false",
              "oci:" + layout.string() + ":multi", docker_ref("multi/arch:v1")});
    EXPECT_EQ(s.store.tag_digest("multi/arch", "v1"), index_digest);
    for (auto& img : images)
        EXPECT_TRUE(s.store.resolve("multi/arch", oci::Digest::sha256_of(img.manifest).str()))
            << img.arch << " manifest missing";

    auto raw =
        must_run({"skopeo", "inspect", "--raw", "--tls-verify=false", docker_ref("multi/arch:v1")});
    EXPECT_EQ(raw.out, index) << "the index bytes changed";
    // A client asking for one platform gets that platform's manifest.
    auto arm = must_run({"skopeo", "--override-arch", "arm64", "inspect", "--tls-verify=false",
                         docker_ref("multi/arch:v1")});
    auto arm_info = nlohmann::json::parse(arm.out);
    EXPECT_EQ(arm_info["Digest"], index_digest.str());
    EXPECT_EQ(arm_info["Architecture"], "arm64");

    auto out = tmp.path() / "out";
    must_run({"skopeo", "copy", "--all", "--src-tls-verify=false", docker_ref("multi/arch:v1"),
              "oci:" + out.string() + ":multi"});
    EXPECT_EQ(layout_manifest(out, "multi"), index_digest);
    EXPECT_EQ(layout_blob(out, index_digest), index);
    for (auto& img : images)
        for (auto* bytes : {&img.manifest, &img.config, &img.layer})
            EXPECT_EQ(layout_blob(out, oci::Digest::sha256_of(*bytes)), *bytes) << img.arch;

    auto one = tmp.path() / "one";
    must_run({"skopeo", "--override-arch", "arm64", "copy", "--src-tls-verify=false",
              docker_ref("multi/arch:v1"), "oci:" + one.string() + ":arm"});
    EXPECT_EQ(layout_manifest(one, "arm"), oci::Digest::sha256_of(images[1].manifest));
}

// A Docker manifest list (skopeo's dir: layout, written by hand) with --all.
TEST_F(ClientsTest, SkopeoCopiesADockerManifestListWithAll) {
    auto dir = tmp.path() / "list";
    fs::make_dirs(dir);
    std::vector<PlatformImage> images{make_platform_image(tmp.path(), "amd64", true),
                                      make_platform_image(tmp.path(), "arm64", true)};
    for (auto& img : images) {
        for (auto* bytes : {&img.layer, &img.config})
            fs::write_file_atomic(dir / oci::Digest::sha256_of(*bytes).encoded(), *bytes);
        fs::write_file_atomic(
            dir / (oci::Digest::sha256_of(img.manifest).encoded() + ".manifest.json"),
            img.manifest);
    }
    std::string list = make_list(images, true);
    fs::write_file_atomic(dir / "manifest.json", list);
    fs::write_file_atomic(dir / "version", "Directory Transport Version: 1.1\n");
    auto list_digest = oci::Digest::sha256_of(list);

    must_run({"skopeo", "copy", "--all", "--dest-tls-verify=false", "dir:" + dir.string(),
              docker_ref("docker/list:v1")});
    EXPECT_EQ(s.store.tag_digest("docker/list", "v1"), list_digest);
    auto record = s.store.resolve("docker/list", "v1");
    ASSERT_TRUE(record);
    EXPECT_EQ(record->media_type, oci::media::kDockerManifestList);

    auto raw = must_run(
        {"skopeo", "inspect", "--raw", "--tls-verify=false", docker_ref("docker/list:v1")});
    EXPECT_EQ(raw.out, list);
    auto info = must_run({"skopeo", "--override-arch", "amd64", "inspect", "--tls-verify=false",
                          docker_ref("docker/list:v1")});
    EXPECT_EQ(nlohmann::json::parse(info.out)["Architecture"], "amd64");

    auto out = tmp.path() / "out";
    must_run({"skopeo", "copy", "--all", "--src-tls-verify=false", docker_ref("docker/list:v1"),
              "dir:" + out.string()});
    EXPECT_EQ(fs::read_file(out / "manifest.json"), list);
    for (auto& img : images) {
        EXPECT_EQ(fs::read_file(
                      out / (oci::Digest::sha256_of(img.manifest).encoded() + ".manifest.json")),
                  img.manifest)
            << img.arch;
        for (auto* bytes : {&img.layer, &img.config})
            EXPECT_EQ(fs::read_file(out / oci::Digest::sha256_of(*bytes).encoded()), *bytes)
                << img.arch;
    }
}

// skopeo converts the OCI image to Docker schema 2 on the way in; the
// registry keeps those bytes and serves them with their media type.
TEST_F(ClientsTest, SkopeoPushesDockerSchema2) {
    auto digest_file = tmp.path() / "digest";
    must_run({"skopeo", "copy", "--format", "v2s2", "--digestfile", digest_file.string(),
              "--dest-tls-verify=false", oci_ref("t"), docker_ref("docker/busybox:v2s2")});
    auto pushed = oci::Digest::parse(trimmed(fs::read_file(digest_file)));
    EXPECT_EQ(s.store.tag_digest("docker/busybox", "v2s2"), pushed);
    auto record = s.store.resolve("docker/busybox", "v2s2");
    ASSERT_TRUE(record);
    EXPECT_EQ(record->media_type, oci::media::kDockerManifest);

    auto raw = must_run(
        {"skopeo", "inspect", "--raw", "--tls-verify=false", docker_ref("docker/busybox:v2s2")});
    EXPECT_EQ(oci::Digest::sha256_of(raw.out), pushed);
    auto m = nlohmann::json::parse(raw.out);
    EXPECT_EQ(m["mediaType"], oci::media::kDockerManifest);
    EXPECT_EQ(m["config"]["mediaType"], oci::media::kDockerConfig);
    auto info =
        must_run({"skopeo", "inspect", "--tls-verify=false", docker_ref("docker/busybox:v2s2")});
    EXPECT_EQ(nlohmann::json::parse(info.out)["Digest"], pushed.str());

    // Out again: the manifest as pushed, config and layers as in the source.
    auto out = tmp.path() / "out";
    must_run({"skopeo", "copy", "--src-tls-verify=false", docker_ref("docker/busybox:v2s2"),
              "dir:" + out.string()});
    EXPECT_EQ(fs::read_file(out / "manifest.json"), raw.out);
    auto source = image_blobs(*layout_, "t");
    auto config = oci::Digest::parse(m["config"]["digest"].get<std::string>());
    EXPECT_EQ(fs::read_file(out / config.encoded()), s.blobs.read(config));
    for (auto& l : m["layers"]) {
        auto d = oci::Digest::parse(l["digest"].get<std::string>());
        ASSERT_TRUE(source.count(d)) << "layer " << d.str() << " is not the source's";
        EXPECT_EQ(fs::read_file(out / d.encoded()), source[d]);
    }
}

TEST_F(ClientsTest, SkopeoDeleteRemovesTheManifest) {
    push("t", "del/img:v1");
    push("t", "keep/img:v1");
    auto digest = layout_manifest(*layout_, "t");
    must_run({"skopeo", "delete", "--tls-verify=false", docker_ref("del/img:v1")});

    auto by_tag =
        test::run({"skopeo", "inspect", "--raw", "--tls-verify=false", docker_ref("del/img:v1")});
    EXPECT_NE(by_tag.exit_code, 0) << "the tag still answers after delete";
    EXPECT_NE(by_tag.err.find("manifest unknown"), std::string::npos) << by_tag.err;
    auto by_digest = test::run({"skopeo", "inspect", "--raw", "--tls-verify=false",
                                docker_ref("del/img@" + digest.str())});
    EXPECT_NE(by_digest.exit_code, 0) << "the manifest still answers by digest after delete";
    EXPECT_FALSE(s.store.resolve("del/img", digest.str()));
    auto tags = test::run({"skopeo", "list-tags", "--tls-verify=false", docker_ref("del/img")});
    if (tags.exit_code == 0) {
        auto listed = nlohmann::json::parse(tags.out)["Tags"];
        EXPECT_TRUE(listed.is_null() || listed.empty()) << tags.out;
    }
    // The same manifest in another repository is untouched.
    auto kept =
        must_run({"skopeo", "inspect", "--raw", "--tls-verify=false", docker_ref("keep/img:v1")});
    EXPECT_EQ(oci::Digest::sha256_of(kept.out), digest);
    auto again = test::run({"skopeo", "delete", "--tls-verify=false", docker_ref("del/img:v1")});
    EXPECT_NE(again.exit_code, 0) << "deleting a deleted tag succeeded";
}

TEST_F(ClientsTest, PodmanPullsWhatSkopeoPushed) {
    push("t", "library/busybox:t");
    IsolatedStorage storage;
    std::string image = server.address() + "/library/busybox:t";
    must_run(storage.podman({"pull", "--tls-verify=false", image}));
    auto digest = must_run(storage.podman({"image", "inspect", "--format", "{{.Digest}}", image}));
    EXPECT_EQ(trimmed(digest.out), layout_manifest(*layout_, "t").str());
    auto config = nlohmann::json::parse(layout_blob(*layout_, layout_manifest(*layout_, "t")));
    auto id = must_run(storage.podman({"image", "inspect", "--format", "{{.Id}}", image}));
    EXPECT_EQ("sha256:" + trimmed(id.out), config["config"]["digest"].get<std::string>());
    must_run(storage.podman({"rmi", image}));
    auto gone = test::run(storage.podman({"image", "exists", image}));
    EXPECT_NE(gone.exit_code, 0);
}

// podman import (busybox and 4 MiB of noise) → podman push → check with
// skopeo → podman pull into fresh storage: the same image.
TEST_F(ClientsTest, PodmanPushesAndPullsBack) {
    auto context = tmp.path() / "context";
    fs::make_dirs(context / "bin");
    stdfs::copy_file("/usr/bin/busybox", context / "bin" / "busybox");
    write_random_file(context / "random.bin", 4 << 20, 2);
    auto tar = tmp.path() / "rootfs.tar";
    must_run({"tar", "-C", context.string(), "-cf", tar.string(), "."});

    IsolatedStorage source;
    auto imported =
        must_run(source.podman({"import", "--change", "CMD [\"/bin/busybox\", \"true\"]",
                                tar.string(), "localhost/cascade-test/imported:v1"}));
    std::string id = trimmed(imported.out);
    id = id.substr(id.rfind('\n') + 1);
    ASSERT_TRUE(id.starts_with("sha256:")) << imported.out;

    std::string remote = server.address() + "/podman/imported:v1";
    auto digest_file = tmp.path() / "digest";
    must_run(source.podman({"push", "--tls-verify=false", "--digestfile", digest_file.string(),
                            "localhost/cascade-test/imported:v1", "docker://" + remote}));
    auto pushed = oci::Digest::parse(trimmed(fs::read_file(digest_file)));
    EXPECT_EQ(s.store.tag_digest("podman/imported", "v1"), pushed);

    auto raw = must_run({"skopeo", "inspect", "--raw", "--tls-verify=false", "docker://" + remote});
    EXPECT_EQ(oci::Digest::sha256_of(raw.out), pushed);
    auto m = nlohmann::json::parse(raw.out);
    EXPECT_EQ(m["config"]["digest"], id) << "the config is not the image podman had";
    int64_t total = 0;
    for (auto& l : m["layers"])
        total += l["size"].get<int64_t>();
    EXPECT_GE(total, 4 << 20);
    auto out = tmp.path() / "out";
    must_run({"skopeo", "copy", "--src-tls-verify=false", "docker://" + remote,
              "oci:" + out.string() + ":v1"});
    expect_layers_match_diff_ids(out, "v1");

    IsolatedStorage fresh;
    must_run(fresh.podman({"pull", "--tls-verify=false", remote}));
    auto back =
        must_run(fresh.podman({"image", "inspect", "--format", "{{.Id}} {{.Digest}}", remote}));
    EXPECT_EQ(trimmed(back.out), id.substr(7) + " " + pushed.str());
    EXPECT_TRUE(stdfs::is_empty(s.blobs.ingest_dir())) << "upload sessions left behind";
}

// buildah from scratch → copy → commit → push; skopeo reads it back, and
// pushing what it read gives the same digest.
TEST_F(ClientsTest, BuildahPushes) {
    if (!test::have_program("buildah")) GTEST_SKIP() << "buildah is not installed";
    auto context = tmp.path() / "context";
    fs::make_dirs(context / "bin");
    stdfs::copy_file("/usr/bin/busybox", context / "bin" / "busybox");
    write_random_file(context / "random.bin", 3 << 20, 3);

    IsolatedStorage storage;
    auto from = must_run(storage.buildah({"from", "scratch"}));
    std::string container = trimmed(from.out);
    container = container.substr(container.rfind('\n') + 1);
    must_run(storage.buildah({"copy", container, context.string() + "/", "/"}));
    must_run(storage.buildah({"config", "--cmd", "[\"/bin/busybox\", \"true\"]", container}));
    auto iid_file = tmp.path() / "iid";
    must_run(storage.buildah({"commit", "--format", "oci", "--iidfile", iid_file.string(),
                              container, "localhost/cascade-test/built:v1"}));
    must_run(storage.buildah({"rm", container}));
    std::string id = trimmed(fs::read_file(iid_file));
    if (!id.starts_with("sha256:")) id = "sha256:" + id;

    std::string remote = server.address() + "/buildah/built:v1";
    auto digest_file = tmp.path() / "digest";
    must_run(storage.buildah({"push", "--tls-verify=false", "--digestfile", digest_file.string(),
                              "localhost/cascade-test/built:v1", "docker://" + remote}));
    auto pushed = oci::Digest::parse(trimmed(fs::read_file(digest_file)));
    EXPECT_EQ(s.store.tag_digest("buildah/built", "v1"), pushed);

    auto raw = must_run({"skopeo", "inspect", "--raw", "--tls-verify=false", "docker://" + remote});
    EXPECT_EQ(oci::Digest::sha256_of(raw.out), pushed);
    auto m = nlohmann::json::parse(raw.out);
    EXPECT_EQ(m["mediaType"], oci::media::kImageManifest);
    EXPECT_EQ(m["config"]["digest"], id) << "the config is not the image buildah committed";

    auto out = tmp.path() / "out";
    must_run({"skopeo", "copy", "--src-tls-verify=false", "docker://" + remote,
              "oci:" + out.string() + ":v1"});
    EXPECT_EQ(layout_manifest(out, "v1"), pushed);
    expect_layers_match_diff_ids(out, "v1");
    must_run({"skopeo", "copy", "--dest-tls-verify=false", "oci:" + out.string() + ":v1",
              docker_ref("buildah/again:v1")});
    EXPECT_EQ(s.store.tag_digest("buildah/again", "v1"), pushed)
        << "the image read back differs from what buildah pushed";
}
}  // namespace
}  // namespace cascade::registry
