// Distribution Spec: content management (deleting tags, manifests and blobs)
// and the tag-history extension (image streams over the registry API).
#include <gtest/gtest.h>

#include "spec_support.hpp"

namespace cascade::registry {
namespace {

using nlohmann::json;
using testing::is_spec_error;
using testing::kOciIndexType;
using testing::kOciManifestType;
using testing::make_image;
using testing::SpecTest;

using SpecManagement = SpecTest;

TEST_F(SpecManagement, DeleteATag) {
    auto img = make_image(nullptr, "t");
    push_image("app", img, "v1");
    put_manifest("app", "keep", img.manifest, kOciManifestType);
    auto r = http->Delete("/v2/app/manifests/v1");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 202);
    EXPECT_TRUE(is_spec_error(http->Get("/v2/app/manifests/v1"), 404, "MANIFEST_UNKNOWN"));
    EXPECT_EQ(http->Get("/v2/app/manifests/keep")->status, 200);
    EXPECT_EQ(http->Get("/v2/app/manifests/" + img.manifest_digest.str())->status, 200)
        << "the manifest stays";
    EXPECT_EQ(json::parse(http->Get("/v2/app/tags/list")->body)["tags"], json({"keep"}));
    EXPECT_TRUE(is_spec_error(http->Delete("/v2/app/manifests/v1"), 404, "MANIFEST_UNKNOWN"));
    EXPECT_TRUE(is_spec_error(http->Delete("/v2/nobody/manifests/v1"), 404, "NAME_UNKNOWN"));
}

TEST_F(SpecManagement, DeleteAManifest) {
    auto img = make_image(nullptr, "m");
    push_image("app", img, "v1");
    put_manifest("app", "v2", img.manifest, kOciManifestType);
    auto r = http->Delete("/v2/app/manifests/" + img.manifest_digest.str());
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 202);
    for (std::string ref : {img.manifest_digest.str(), std::string("v1"), std::string("v2")})
        EXPECT_TRUE(is_spec_error(http->Get("/v2/app/manifests/" + ref), 404, "MANIFEST_UNKNOWN"))
            << ref;
    EXPECT_TRUE(is_spec_error(http->Delete("/v2/app/manifests/" + img.manifest_digest.str()), 404,
                              "MANIFEST_UNKNOWN"));
    EXPECT_TRUE(is_spec_error(http->Delete("/v2/nobody/manifests/" + img.manifest_digest.str()),
                              404, "NAME_UNKNOWN"));
    EXPECT_TRUE(is_spec_error(http->Delete("/v2/app/manifests/sha256:bad"), 400, "DIGEST_INVALID"));
}

TEST_F(SpecManagement, DeleteABlobUnlinksItFromTheRepository) {
    auto d = push_blob("app", "layer data");
    push_blob("other", "layer data");
    auto r = http->Delete("/v2/app/blobs/" + d.str());
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 202);
    EXPECT_TRUE(is_spec_error(http->Get("/v2/app/blobs/" + d.str()), 404, "BLOB_UNKNOWN"));
    EXPECT_EQ(http->Head("/v2/app/blobs/" + d.str())->status, 404);
    EXPECT_EQ(http->Get("/v2/other/blobs/" + d.str())->body, "layer data");
    EXPECT_TRUE(s->blobs.has(d)) << "removing the file is the garbage collector's job";
    EXPECT_TRUE(is_spec_error(http->Delete("/v2/app/blobs/" + d.str()), 404, "BLOB_UNKNOWN"));
    EXPECT_TRUE(is_spec_error(http->Delete("/v2/nobody/blobs/" + d.str()), 404, "NAME_UNKNOWN"));
    EXPECT_TRUE(is_spec_error(http->Delete("/v2/app/blobs/sha256:zz"), 400, "DIGEST_INVALID"));
}

class SpecTagHistory : public SpecTest {
  protected:
    void SetUp() override {
        SpecTest::SetUp();
        for (auto salt : {"g1", "g2", "g3"}) {
            images.push_back(make_image(nullptr, salt));
            ASSERT_EQ(push_image("team/app", images.back(), "prod")->status, 201);
        }
    }
    json history(const std::string& query, std::string* link = nullptr) {
        auto r = http->Get("/v2/team/app/_oci/tag-history/prod" + query);
        EXPECT_TRUE(r);
        if (!r) return nullptr;
        EXPECT_EQ(r->status, 200) << r->body;
        EXPECT_EQ(r->get_header_value("Content-Type"), kOciIndexType);
        if (link) *link = r->get_header_value("Link");
        auto j = json::parse(r->body);
        EXPECT_EQ(j["schemaVersion"], 2);
        EXPECT_EQ(j["mediaType"], kOciIndexType);
        return j["manifests"];
    }
    std::vector<testing::SampleImage> images;
};

TEST_F(SpecTagHistory, NewestFirstWithGenerationTimeAndCause) {
    std::string link;
    auto list = history("", &link);
    EXPECT_EQ(link, "");
    ASSERT_EQ(list.size(), 3u);
    auto recorded = s->store.tag_history("team/app", "prod");
    for (size_t i = 0; i < 3; i++) {
        const auto& img = images[2 - i];
        const auto& d = list[i];
        EXPECT_EQ(d["mediaType"], kOciManifestType);
        EXPECT_EQ(d["digest"], img.manifest_digest.str());
        EXPECT_EQ(d["size"], img.manifest.size());
        EXPECT_EQ(d["annotations"][std::string(kTagGenerationAnnotation)], std::to_string(3 - i));
        EXPECT_EQ(d["annotations"][std::string(kTagCauseAnnotation)], "push");
        EXPECT_EQ(d["annotations"][std::string(kTagEventAnnotation)], "created");
        EXPECT_EQ(d["annotations"][std::string(kTagTimestampAnnotation)],
                  oci::rfc3339(recorded[i].time));
    }
    EXPECT_EQ(std::string(kTagTimestampAnnotation),
              "org.opencontainers.distribution.tag.timestamp");
    EXPECT_EQ(std::string(kTagGenerationAnnotation), "io.cascade.tag.generation");
}

TEST_F(SpecTagHistory, Paginates) {
    std::string link;
    auto first = history("?n=2", &link);
    ASSERT_EQ(first.size(), 2u);
    EXPECT_EQ(first[1]["annotations"][std::string(kTagGenerationAnnotation)], "2");
    EXPECT_EQ(link, "</v2/team/app/_oci/tag-history/prod?n=2&last=2>; rel=\"next\"");
    auto rest = history("?n=2&last=2", &link);
    ASSERT_EQ(rest.size(), 1u);
    EXPECT_EQ(rest[0]["digest"], images[0].manifest_digest.str());
    EXPECT_EQ(link, "");
    EXPECT_EQ(history("?n=0", &link), json::array());
    EXPECT_EQ(link, "");
    EXPECT_EQ(history("?last=1"), json::array());
}

TEST_F(SpecTagHistory, OutlivesDeletedManifestsAndTags) {
    ASSERT_EQ(http->Delete("/v2/team/app/manifests/" + images[0].manifest_digest.str())->status,
              202);
    ASSERT_EQ(http->Delete("/v2/team/app/manifests/prod")->status, 202);
    auto list = history("");
    ASSERT_EQ(list.size(), 3u);
    EXPECT_EQ(list[2]["digest"], images[0].manifest_digest.str());
    EXPECT_EQ(list[2]["mediaType"], kOciManifestType) << "kept from when the tag moved";
    EXPECT_EQ(list[2]["size"], images[0].manifest.size());
}

TEST_F(SpecTagHistory, UnknownRepositoryOrTag) {
    EXPECT_TRUE(is_spec_error(http->Get("/v2/nobody/_oci/tag-history/prod"), 404, "NAME_UNKNOWN"));
    EXPECT_TRUE(
        is_spec_error(http->Get("/v2/team/app/_oci/tag-history/never"), 404, "MANIFEST_UNKNOWN"));
    EXPECT_TRUE(
        is_spec_error(http->Get("/v2/team/app/_oci/tag-history/prod?n=x"), 400, "UNSUPPORTED"));
    EXPECT_TRUE(is_spec_error(http->Get("/v2/BAD/_oci/tag-history/prod"), 400, "NAME_INVALID"));
}

}  // namespace
}  // namespace cascade::registry
