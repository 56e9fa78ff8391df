// The fixture of the Distribution Spec tests (spec_*_test.cpp): a store on a
// temporary root, a Distribution with chosen options served in-process on
// 127.0.0.1, an httplib client, and helpers that push through the API.
#pragma once

#include <gtest/gtest.h>
#include <httplib.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "registry/http.hpp"
#include "registry_helpers.hpp"

namespace cascade::registry::testing {

inline const std::string kOciManifestType(oci::media::kImageManifest);
inline const std::string kOciIndexType(oci::media::kImageIndex);
inline const std::string kOctets = "application/octet-stream";

class SpecTest : public ::testing::Test {
  protected:
    virtual DistributionOptions options() const { return {}; }

    void SetUp() override {
        s = std::make_unique<StoreOnDisk>(tmp.path());
        server = std::make_unique<RegistryServer>(s->store, options());
        http = server->client();
    }
    void TearDown() override {
        http.reset();
        server.reset();
        s.reset();
    }

    // Pushes a blob with POST + PUT; returns its digest.
    oci::Digest push_blob(const std::string& repo, const std::string& data) {
        auto d = oci::Digest::sha256_of(data);
        auto post = http->Post("/v2/" + repo + "/blobs/uploads/");
        EXPECT_TRUE(post);
        if (!post) return d;
        EXPECT_EQ(post->status, 202) << post->body;
        auto put =
            http->Put(post->get_header_value("Location") + "?digest=" + d.str(), data, kOctets);
        EXPECT_TRUE(put);
        if (put) {
            EXPECT_EQ(put->status, 201) << put->body;
        }
        return d;
    }

    httplib::Result put_manifest(const std::string& repo, const std::string& ref,
                                 const std::string& bytes, const std::string& type) {
        return http->Put("/v2/" + repo + "/manifests/" + ref, bytes, type);
    }

    // Pushes the image's blobs and its manifest under `ref` (a tag or digest).
    httplib::Result push_image(const std::string& repo, const SampleImage& img,
                               const std::string& ref, const std::string& type = kOciManifestType) {
        push_blob(repo, img.config);
        push_blob(repo, img.layer);
        return put_manifest(repo, ref, img.manifest, type);
    }

    void restart() {
        http.reset();
        server.reset();
        s.reset();
        SetUp();
    }

    fs::TempDir tmp;
    std::unique_ptr<StoreOnDisk> s;
    std::unique_ptr<RegistryServer> server;
    std::unique_ptr<httplib::Client> http;
};

// Asserts the spec's error body: {"errors":[{"code","message","detail"}]}.
inline ::testing::AssertionResult is_spec_error(const httplib::Result& r, int status,
                                                const std::string& code) {
    if (!r) return ::testing::AssertionFailure() << "no response";
    if (r->status != status)
        return ::testing::AssertionFailure()
               << "status " << r->status << ", expected " << status << ": " << r->body;
    auto j = nlohmann::json::parse(r->body, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("errors") || !j["errors"].is_array() ||
        j["errors"].empty())
        return ::testing::AssertionFailure() << "not a spec error body: " << r->body;
    const auto& e = j["errors"][0];
    if (!e.contains("code") || !e["code"].is_string() || !e.contains("message") ||
        !e["message"].is_string() || !e.contains("detail"))
        return ::testing::AssertionFailure() << "error lacks code/message/detail: " << r->body;
    if (e["code"] != code)
        return ::testing::AssertionFailure() << "code " << e["code"] << ", expected " << code;
    if (r->get_header_value("Content-Type") != "application/json")
        return ::testing::AssertionFailure()
               << "Content-Type " << r->get_header_value("Content-Type");
    return ::testing::AssertionSuccess();
}

// An OCI image manifest (no blobs written) with optional subject, artifactType
// and annotations: what ORAS or cosign push as an artifact.
inline std::string artifact_manifest(const std::string& config_media_type,
                                     const std::string& config, const std::string& layer,
                                     const std::optional<std::pair<oci::Digest, int64_t>>& subject,
                                     const std::string& artifact_type,
                                     const nlohmann::json& annotations) {
    nlohmann::json m = {{"schemaVersion", 2},
                        {"mediaType", oci::media::kImageManifest},
                        {"config",
                         {{"mediaType", config_media_type},
                          {"digest", oci::Digest::sha256_of(config).str()},
                          {"size", config.size()}}},
                        {"layers",
                         {{{"mediaType", "application/vnd.example.payload"},
                           {"digest", oci::Digest::sha256_of(layer).str()},
                           {"size", layer.size()}}}}};
    if (!artifact_type.empty()) m["artifactType"] = artifact_type;
    if (subject)
        m["subject"] = {{"mediaType", oci::media::kImageManifest},
                        {"digest", subject->first.str()},
                        {"size", subject->second}};
    if (!annotations.is_null()) m["annotations"] = annotations;
    return m.dump();
}

}  // namespace cascade::registry::testing
