#include "oci/layout.hpp"

#include <gtest/gtest.h>

#include "oci/error.hpp"
#include "oci/fs.hpp"
#include "oci/media_types.hpp"
#include "tests/oci/oci_test_util.hpp"

namespace cascade::oci {
namespace {

using namespace testutil;

Descriptor manifest_descriptor(const std::string& seed) {
    return Blob::of(std::string(media::kImageManifest), seed).descriptor();
}

TEST(Layout, CreatesTheStandardFiles) {
    fs::TempDir tmp;
    auto dir = tmp.path() / "layout";
    auto layout = ImageLayout::open(dir, true);
    EXPECT_EQ(layout.dir(), dir);
    EXPECT_EQ(slurp(dir / "oci-layout"), R"({"imageLayoutVersion":"1.0.0"})");
    EXPECT_TRUE(stdfs::is_directory(dir / "blobs/sha256"));
    Index idx = layout.index();
    EXPECT_TRUE(idx.manifests.empty());
    EXPECT_EQ(idx.schema_version, 2);
    EXPECT_EQ(
        slurp(dir / "index.json"),
        R"({"manifests":[],"mediaType":"application/vnd.oci.image.index.v1+json","schemaVersion":2})");
    // Opening again (with or without create) keeps what is there.
    layout.add_manifest(manifest_descriptor("m"), "v1");
    EXPECT_EQ(ImageLayout::open(dir, true).index().manifests.size(), 1u);
    EXPECT_EQ(ImageLayout::open(dir).index().manifests.size(), 1u);
}

TEST(Layout, RefusesWhatIsNotALayout) {
    fs::TempDir tmp;
    try {
        ImageLayout::open(tmp.path());
        FAIL() << "no throw";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("oci-layout"), std::string::npos) << e.what();
    }
    put(tmp.path() / "oci-layout", "not json");
    EXPECT_THROW(ImageLayout::open(tmp.path()), Error);
    put(tmp.path() / "oci-layout", R"({"imageLayoutVersion":"2.0.0"})");
    EXPECT_THROW(ImageLayout::open(tmp.path()), Error);
    put(tmp.path() / "oci-layout", R"({"version":"1.0.0"})");
    EXPECT_THROW(ImageLayout::open(tmp.path()), Error);
    EXPECT_THROW(ImageLayout::open(tmp.path() / "missing"), Error);
}

TEST(Layout, StoresBlobsByDigest) {
    fs::TempDir tmp;
    auto layout = ImageLayout::open(tmp.path(), true);
    Digest d = layout.put_blob("hello");
    EXPECT_EQ(d, Digest::sha256_of("hello"));
    EXPECT_EQ(layout.blob_path(d), tmp.path() / "blobs/sha256" / d.encoded());
    EXPECT_TRUE(layout.has_blob(d));
    EXPECT_EQ(layout.read_blob(d), "hello");
    EXPECT_EQ(layout.put_blob("hello"), d);  // idempotent
    EXPECT_FALSE(layout.has_blob(Digest::sha256_of("other")));
    EXPECT_THROW(layout.read_blob(Digest::sha256_of("other")), Error);
}

TEST(Layout, ReadBlobDetectsCorruption) {
    fs::TempDir tmp;
    auto layout = ImageLayout::open(tmp.path(), true);
    Digest d = layout.put_blob("original");
    put(layout.blob_path(d), "tampered");
    try {
        layout.read_blob(d);
        FAIL() << "no throw";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("corrupt"), std::string::npos) << e.what();
    }
}

TEST(Layout, PutBlobFileVerifiesTheDigest) {
    fs::TempDir tmp;
    auto layout = ImageLayout::open(tmp.path() / "l", true);
    std::string content(300000, 'q');
    put(tmp.path() / "blob", content);
    Digest right = Digest::sha256_of(content);
    Digest wrong = Digest::sha256_of("something else");
    try {
        layout.put_blob_file(tmp.path() / "blob", wrong);
        FAIL() << "no throw";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find(right.str()), std::string::npos) << e.what();
    }
    EXPECT_FALSE(layout.has_blob(wrong));
    // No temporary file left behind.
    EXPECT_TRUE(stdfs::is_empty(tmp.path() / "l/blobs/sha256"));

    layout.put_blob_file(tmp.path() / "blob", right);
    EXPECT_EQ(layout.read_blob(right), content);
    EXPECT_TRUE(lexists(tmp.path() / "blob"));         // the source stays
    layout.put_blob_file(tmp.path() / "blob", right);  // already there: fine
}

TEST(Layout, IndexEntriesByRefName) {
    fs::TempDir tmp;
    auto layout = ImageLayout::open(tmp.path(), true);
    auto m1 = manifest_descriptor("one");
    auto m2 = manifest_descriptor("two");
    layout.add_manifest(m1, "v1");
    layout.add_manifest(m2, "v2");
    ASSERT_TRUE(layout.find("v1"));
    EXPECT_EQ(layout.find("v1")->digest, m1.digest);
    EXPECT_EQ(layout.find("v1")->annotations.at(std::string(kAnnotationRefName)), "v1");
    EXPECT_EQ(layout.find("v2")->digest, m2.digest);
    EXPECT_FALSE(layout.find("v3"));

    // Re-tagging v1 replaces its entry.
    layout.add_manifest(m2, "v1");
    Index idx = layout.index();
    ASSERT_EQ(idx.manifests.size(), 2u);
    EXPECT_EQ(layout.find("v1")->digest, m2.digest);

    // Without a ref name, a digest is listed once.
    auto m3 = manifest_descriptor("three");
    layout.add_manifest(m3);
    layout.add_manifest(m3);
    EXPECT_EQ(layout.index().manifests.size(), 3u);

    // A fresh handle reads the same index.
    EXPECT_EQ(ImageLayout::open(tmp.path()).find("v2")->digest, m2.digest);
}

}  // namespace
}  // namespace cascade::oci
