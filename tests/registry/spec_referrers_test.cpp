// Distribution Spec 1.1: manifests with a subject and the referrers API.
#include <gtest/gtest.h>

#include "spec_support.hpp"

namespace cascade::registry {
namespace {

using nlohmann::json;
using testing::artifact_manifest;
using testing::is_spec_error;
using testing::kOciIndexType;
using testing::kOciManifestType;
using testing::make_image;
using testing::SampleImage;
using testing::SpecTest;

class SpecReferrers : public SpecTest {
  protected:
    void SetUp() override {
        SpecTest::SetUp();
        image = make_image(nullptr, "subject");
        ASSERT_EQ(push_image("app", image, "v1")->status, 201);
        push_blob("app", "{}");
        push_blob("app", "signature bytes");
        push_blob("app", "sbom bytes");
    }
    std::pair<oci::Digest, int64_t> subject() const {
        return {image.manifest_digest, static_cast<int64_t>(image.manifest.size())};
    }
    // Pushes by digest (referrers are usually untagged); returns the digest.
    oci::Digest push_referrer(const std::string& bytes, const std::string& type = kOciManifestType,
                              const std::string& repo = "app") {
        auto d = oci::Digest::sha256_of(bytes);
        auto r = put_manifest(repo, d.str(), bytes, type);
        EXPECT_TRUE(r);
        if (r) {
            EXPECT_EQ(r->status, 201) << r->body;
            EXPECT_EQ(r->get_header_value("OCI-Subject"), subject().first.str());
        }
        return d;
    }
    json referrers(const std::string& query = "", httplib::Headers* headers = nullptr,
                   const std::string& repo = "app") {
        auto r = http->Get("/v2/" + repo + "/referrers/" + image.manifest_digest.str() + query);
        EXPECT_TRUE(r);
        if (!r) return nullptr;
        EXPECT_EQ(r->status, 200) << r->body;
        EXPECT_EQ(r->get_header_value("Content-Type"), kOciIndexType);
        if (headers) *headers = r->headers;
        auto j = json::parse(r->body);
        EXPECT_EQ(j["schemaVersion"], 2);
        EXPECT_EQ(j["mediaType"], kOciIndexType);
        return j["manifests"];
    }
    SampleImage image;
};

TEST_F(SpecReferrers, ListsManifestsWhoseSubjectIsTheDigest) {
    auto sig_bytes =
        artifact_manifest(std::string(oci::media::kEmptyJson), "{}", "signature bytes", subject(),
                          "application/vnd.example.sig", {{"org.example.signer", "alice"}});
    // No artifactType: the config's media type stands in.
    auto sbom_bytes = artifact_manifest("application/vnd.example.sbom.config", "{}", "sbom bytes",
                                        subject(), "", nullptr);
    auto sig = push_referrer(sig_bytes);
    auto sbom = push_referrer(sbom_bytes);
    // An index with a subject and no artifactType: the descriptor has none.
    json index = {{"schemaVersion", 2},
                  {"mediaType", kOciIndexType},
                  {"manifests", json::array()},
                  {"subject",
                   {{"mediaType", kOciManifestType},
                    {"digest", subject().first.str()},
                    {"size", subject().second}}},
                  {"annotations", {{"org.example.kind", "bundle"}}}};
    auto idx = push_referrer(index.dump(), kOciIndexType);

    auto list = referrers();
    ASSERT_EQ(list.size(), 3u) << list.dump();
    EXPECT_EQ(list[0], json({{"mediaType", kOciManifestType},
                             {"digest", sig.str()},
                             {"size", sig_bytes.size()},
                             {"artifactType", "application/vnd.example.sig"},
                             {"annotations", {{"org.example.signer", "alice"}}}}));
    EXPECT_EQ(list[1], json({{"mediaType", kOciManifestType},
                             {"digest", sbom.str()},
                             {"size", sbom_bytes.size()},
                             {"artifactType", "application/vnd.example.sbom.config"}}));
    EXPECT_EQ(list[2], json({{"mediaType", kOciIndexType},
                             {"digest", idx.str()},
                             {"size", index.dump().size()},
                             {"annotations", {{"org.example.kind", "bundle"}}}}));
}

TEST_F(SpecReferrers, FilterByArtifactType) {
    auto sig = push_referrer(artifact_manifest(std::string(oci::media::kEmptyJson), "{}",
                                               "signature bytes", subject(),
                                               "application/vnd.example.sig", nullptr));
    push_referrer(artifact_manifest(std::string(oci::media::kEmptyJson), "{}", "sbom bytes",
                                    subject(), "application/vnd.example.sbom", nullptr));
    httplib::Headers headers;
    auto list = referrers("?artifactType=application/vnd.example.sig", &headers);
    ASSERT_EQ(list.size(), 1u);
    EXPECT_EQ(list[0]["digest"], sig.str());
    auto applied = headers.find("OCI-Filters-Applied");
    ASSERT_NE(applied, headers.end());
    EXPECT_EQ(applied->second, "artifactType");
    EXPECT_EQ(referrers("?artifactType=application/vnd.example.none").size(), 0u);
    referrers("", &headers);
    EXPECT_EQ(headers.count("OCI-Filters-Applied"), 0u);
}

TEST_F(SpecReferrers, SubjectMayBeMissingAndNothingIs404) {
    auto absent = make_image(nullptr, "not pushed");
    auto bytes = artifact_manifest(
        std::string(oci::media::kEmptyJson), "{}", "signature bytes",
        std::make_pair(absent.manifest_digest, static_cast<int64_t>(absent.manifest.size())),
        "application/vnd.example.sig", nullptr);
    auto r = put_manifest("app", "sig", bytes, kOciManifestType);
    ASSERT_EQ(r->status, 201) << r->body;
    EXPECT_EQ(r->get_header_value("OCI-Subject"), absent.manifest_digest.str());
    auto list = http->Get("/v2/app/referrers/" + absent.manifest_digest.str());
    EXPECT_EQ(json::parse(list->body)["manifests"].size(), 1u);

    // Unknown subject, unknown repository: an empty index, never 404.
    EXPECT_EQ(referrers().size(), 0u);
    EXPECT_EQ(referrers("", nullptr, "no/such/repo").size(), 0u);
    EXPECT_TRUE(is_spec_error(http->Get("/v2/app/referrers/sha256:123"), 400, "DIGEST_INVALID"));
    EXPECT_TRUE(is_spec_error(http->Get("/v2/app/referrers/latest"), 400, "DIGEST_INVALID"));
}

TEST_F(SpecReferrers, ScopedToTheRepositoryAndGoneWithTheManifest) {
    auto sig = push_referrer(artifact_manifest(std::string(oci::media::kEmptyJson), "{}",
                                               "signature bytes", subject(),
                                               "application/vnd.example.sig", nullptr));
    EXPECT_EQ(referrers("", nullptr, "other").size(), 0u);
    ASSERT_EQ(http->Delete("/v2/app/manifests/" + sig.str())->status, 202);
    EXPECT_EQ(referrers().size(), 0u);
}

TEST_F(SpecReferrers, SurviveARestart) {
    push_referrer(artifact_manifest(std::string(oci::media::kEmptyJson), "{}", "signature bytes",
                                    subject(), "application/vnd.example.sig", nullptr));
    restart();
    EXPECT_EQ(referrers().size(), 1u);
}

}  // namespace
}  // namespace cascade::registry
