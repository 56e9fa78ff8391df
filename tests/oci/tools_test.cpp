// Interoperability: layouts cascade writes are read by skopeo and umoci, and
// layouts skopeo writes are read by cascade.
#include <gtest/gtest.h>

#include "oci/fs.hpp"
#include "tests/oci/sample_image.hpp"
#include "tests/support/support.hpp"

namespace cascade::oci {
namespace {

using namespace testutil;

TEST(Tools, SkopeoInspectsCascadeLayout) {
    if (!test::have_program("skopeo")) GTEST_SKIP() << "skopeo is not installed";
    fs::TempDir tmp;
    auto layout = tmp.path() / "layout";
    auto img = write_sample_image(layout, tmp.path(), "v1");

    auto r = test::run({"skopeo", "inspect", "oci:" + layout.string() + ":v1"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["Digest"], img.manifest.digest.str());
    EXPECT_EQ(j["Architecture"], "amd64");
    EXPECT_EQ(j["Os"], "linux");
    ASSERT_EQ(j["Layers"].size(), 1u);
    EXPECT_EQ(j["Layers"][0], img.layer.digest.str());
    EXPECT_EQ(j["Env"][1], "GREETING=hello");
    EXPECT_EQ(j["Labels"]["org.opencontainers.image.title"], "sample");

    auto raw = test::run({"skopeo", "inspect", "--raw", "oci:" + layout.string() + ":v1"});
    ASSERT_EQ(raw.exit_code, 0) << raw.err;
    EXPECT_EQ(raw.out, img.manifest.bytes);

    auto cfg = test::run({"skopeo", "inspect", "--config", "oci:" + layout.string() + ":v1"});
    ASSERT_EQ(cfg.exit_code, 0) << cfg.err;
    auto c = parse_config(cfg.out);
    EXPECT_EQ(c.diff_ids, img.config_doc.diff_ids);
    EXPECT_EQ(c.config, img.config_doc.config);
}

TEST(Tools, UmociListsAndUnpacksCascadeLayout) {
    if (!test::have_program("umoci")) GTEST_SKIP() << "umoci is not installed";
    fs::TempDir tmp;
    auto layout = tmp.path() / "layout";
    write_sample_image(layout, tmp.path(), "v1");

    auto ls = test::run({"umoci", "ls", "--layout", layout.string()});
    ASSERT_EQ(ls.exit_code, 0) << ls.err;
    EXPECT_EQ(ls.out, "v1\n");

    auto stat = test::run({"umoci", "stat", "--image", layout.string() + ":v1", "--json"});
    ASSERT_EQ(stat.exit_code, 0) << stat.err;
    EXPECT_NE(stat.out.find("COPY . /"), std::string::npos) << stat.out;

    auto bundle = tmp.path() / "bundle";
    auto unpack =
        test::run({"umoci", "unpack", "--image", layout.string() + ":v1", bundle.string()});
    ASSERT_EQ(unpack.exit_code, 0) << unpack.err;
    EXPECT_EQ(slurp(bundle / "rootfs/hello.txt"), "hello from cascade\n");
    EXPECT_EQ(lstat_of(bundle / "rootfs/usr/bin/app").st_mode & 0777, 0755u);
    EXPECT_EQ(stdfs::read_symlink(bundle / "rootfs/bin"), "usr/bin");
    auto config = nlohmann::json::parse(slurp(bundle / "config.json"));
    EXPECT_EQ(config["process"]["args"], (nlohmann::json{"/usr/bin/app", "--serve"}));
}

TEST(Tools, CascadeReadsLayoutWrittenBySkopeo) {
    if (!test::have_program("skopeo")) GTEST_SKIP() << "skopeo is not installed";
    fs::TempDir tmp;
    auto src = tmp.path() / "src";
    auto dst = tmp.path() / "dst";
    auto img = write_sample_image(src, tmp.path(), "v1");
    auto r = test::run(
        {"skopeo", "copy", "oci:" + src.string() + ":v1", "oci:" + dst.string() + ":copied"});
    ASSERT_EQ(r.exit_code, 0) << r.err;

    auto layout = ImageLayout::open(dst);
    auto desc = layout.find("copied");
    ASSERT_TRUE(desc);
    std::string bytes = layout.read_blob(desc->digest);
    EXPECT_EQ(detect_manifest_media_type(bytes), media::kImageManifest);
    Manifest m = parse_manifest(bytes);
    ASSERT_EQ(m.layers.size(), 1u);
    ImageConfig c = parse_config(layout.read_blob(m.config.digest));
    EXPECT_EQ(c.diff_ids, img.config_doc.diff_ids);
    auto root = tmp.path() / "root";
    apply_layer(layout.blob_path(m.layers[0].digest), root);
    EXPECT_EQ(slurp(root / "hello.txt"), "hello from cascade\n");
}

}  // namespace
}  // namespace cascade::oci
