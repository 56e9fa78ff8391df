// cascade's documents checked against the OCI image-spec JSON schemas (the
// copies Debian ships in golang-github-opencontainers-image-spec-dev), by
// python3-jsonschema.
#include <gtest/gtest.h>

#include "oci/fs.hpp"
#include "tests/oci/sample_image.hpp"
#include "tests/support/support.hpp"

namespace cascade::oci {
namespace {

using namespace testutil;

class Schema : public ::testing::Test {
  protected:
    void SetUp() override {
        if (!stdfs::exists("/usr/bin/python3")) GTEST_SKIP() << "/usr/bin/python3 is missing";
    }
    // Exit status of the validator; its complaints go to the test log.
    int validate(const std::string& schema, const std::vector<stdfs::path>& docs) {
        std::vector<std::string> argv = {
            "/usr/bin/python3", (test::source_dir() / "tests/oci/validate_oci_schema.py").string(),
            schema};
        for (const auto& d : docs)
            argv.push_back(d.string());
        auto r = test::run(argv);
        if (r.exit_code != 0) std::cerr << r.out << r.err;
        return r.exit_code;
    }
    stdfs::path doc(const std::string& name, const std::string& bytes) {
        auto p = tmp_.path() / name;
        put(p, bytes);
        return p;
    }
    fs::TempDir tmp_;
};

TEST_F(Schema, ImageLayoutWrittenByCascadeIsValid) {
    auto layout_dir = tmp_.path() / "layout";
    auto img = write_sample_image(layout_dir, tmp_.path(), "v1");
    auto blob = [&](const Digest& d) { return layout_dir / "blobs/sha256" / d.encoded(); };
    EXPECT_EQ(validate("image-manifest-schema.json", {blob(img.manifest.digest)}), 0);
    EXPECT_EQ(validate("config-schema.json", {blob(img.config.digest)}), 0);
    EXPECT_EQ(validate("image-index-schema.json", {layout_dir / "index.json"}), 0);
    EXPECT_EQ(validate("image-layout-schema.json", {layout_dir / "oci-layout"}), 0);
}

TEST_F(Schema, IndexWithPlatformsAndSubjectIsValid) {
    Index x;
    x.media_type = std::string(media::kImageIndex);
    Descriptor a = Blob::of(std::string(media::kImageManifest), "a").descriptor();
    a.platform = Platform{"arm64", "linux", "v8", "", {}};
    Descriptor w = Blob::of(std::string(media::kImageManifest), "w").descriptor();
    w.platform = Platform{"amd64", "windows", "", "10.0.17763.1457", {"win32k"}};
    w.annotations = {{std::string(kAnnotationRefName), "win"}};
    w.urls = {"https://example.com/blob"};
    x.manifests = {a, w};
    x.annotations = {{"org.opencontainers.image.created", "2024-01-01T00:00:00Z"}};
    EXPECT_EQ(validate("image-index-schema.json", {doc("index.json", to_json_bytes(to_json(x)))}),
              0);
}

TEST_F(Schema, MinimalAndFullConfigsAreValid) {
    ImageConfig minimal;
    ImageConfig full;
    full.created = rfc3339(0);
    full.variant = "v8";
    full.architecture = "arm64";
    full.config.exposed_ports = {"80/tcp", "53/udp"};
    full.config.volumes = {"/data"};
    full.config.labels = {{"a", "b"}};
    full.config.entrypoint = std::vector<std::string>{};
    full.config.cmd = std::vector<std::string>{"sh"};
    full.config.healthcheck = HealthConfig{{"NONE"}, 0, 0, 0, 0};
    full.config.shell = std::vector<std::string>{"/bin/sh", "-c"};
    full.config.on_build = {"RUN true"};
    full.diff_ids = {Digest::sha256_of("x"), Digest::sha256_of("y")};
    full.history = {{rfc3339(0), "RUN x", "me", "why", false}};
    EXPECT_EQ(validate("config-schema.json", {doc("minimal.json", to_json_bytes(to_json(minimal))),
                                              doc("full.json", to_json_bytes(to_json(full)))}),
              0);
}

TEST_F(Schema, ValidatorRejectsBrokenDocuments) {
    // The validator is real: documents that break the schema fail it.
    std::string good_digest = Digest::sha256_of("x").str();
    EXPECT_EQ(
        validate(
            "image-manifest-schema.json",
            {doc(
                "bad-digest.json",
                R"({"schemaVersion":2,"config":{"mediaType":"a/b","digest":"sha256:XYZ!","size":1},"layers":[{"mediaType":"a/b","digest":")" +
                    good_digest + R"(","size":1}]})")}),
        1);
    EXPECT_EQ(validate("image-manifest-schema.json",
                       {doc("bad-size.json",
                            R"({"schemaVersion":2,"config":{"mediaType":"a/b","digest":")" +
                                good_digest + R"(","size":"1"},"layers":[]})")}),
              1);
    EXPECT_EQ(validate("config-schema.json",
                       {doc("no-rootfs.json", R"({"architecture":"amd64","os":"linux"})")}),
              1);
    EXPECT_EQ(
        validate("image-layout-schema.json", {doc("layout.json", R"({"imageLayoutVersion":"9"})")}),
        1);
}

}  // namespace
}  // namespace cascade::oci
