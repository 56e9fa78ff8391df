// Distribution Spec: pushing blobs (monolithic, chunked, mounts, sessions and
// their expiry) and manifests (media types, validation, limits).
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>

#include "spec_support.hpp"

namespace cascade::registry {
namespace {

using testing::is_spec_error;
using testing::kOciIndexType;
using testing::kOciManifestType;
using testing::kOctets;
using testing::make_image;
using testing::make_index;
using testing::SpecTest;

using SpecPush = SpecTest;

TEST_F(SpecPush, MonolithicPostThenPut) {
    std::string data = "one request";
    auto d = oci::Digest::sha256_of(data);
    auto post = http->Post("/v2/app/blobs/uploads/");
    ASSERT_TRUE(post);
    EXPECT_EQ(post->status, 202);
    std::string location = post->get_header_value("Location");
    EXPECT_TRUE(location.starts_with("/v2/app/blobs/uploads/")) << location;
    EXPECT_EQ(post->get_header_value("Content-Length"), "0");
    auto put = http->Put(location + "?digest=" + d.str(), data, kOctets);
    ASSERT_TRUE(put);
    EXPECT_EQ(put->status, 201) << put->body;
    EXPECT_EQ(put->get_header_value("Location"), "/v2/app/blobs/" + d.str());
    EXPECT_EQ(put->get_header_value("Docker-Content-Digest"), d.str());
    EXPECT_EQ(http->Get("/v2/app/blobs/" + d.str())->body, data);
}

TEST_F(SpecPush, SinglePostWithDigest) {
    std::string data = "single post";
    auto d = oci::Digest::sha256_of(data);
    auto r = http->Post("/v2/app/blobs/uploads/?digest=" + d.str(), data, kOctets);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 201) << r->body;
    EXPECT_EQ(r->get_header_value("Location"), "/v2/app/blobs/" + d.str());
    EXPECT_EQ(http->Get("/v2/app/blobs/" + d.str())->body, data);

    auto wrong = http->Post("/v2/app/blobs/uploads/?digest=" + oci::Digest::sha256_of("x").str(),
                            "not x", kOctets);
    EXPECT_TRUE(is_spec_error(wrong, 400, "DIGEST_INVALID"));
    EXPECT_TRUE(std::filesystem::is_empty(s->blobs.ingest_dir()));
}

TEST_F(SpecPush, ChunkedUpload) {
    std::string data = "chunk one|chunk two|last";
    auto d = oci::Digest::sha256_of(data);
    auto post = http->Post("/v2/app/blobs/uploads/", "", kOctets);
    ASSERT_EQ(post->status, 202);
    std::string location = post->get_header_value("Location");
    EXPECT_EQ(post->get_header_value("Range"), "0-0");

    auto p1 = http->Patch(location, {{"Content-Range", "0-9"}}, data.substr(0, 10), kOctets);
    ASSERT_EQ(p1->status, 202) << p1->body;
    EXPECT_EQ(p1->get_header_value("Range"), "0-9");
    EXPECT_EQ(p1->get_header_value("Content-Length"), "0");
    location = p1->get_header_value("Location");

    // Out of order: 416 with the current Range, nothing appended.
    auto gap = http->Patch(location, {{"Content-Range", "12-19"}}, data.substr(12, 8), kOctets);
    EXPECT_TRUE(is_spec_error(gap, 416, "BLOB_UPLOAD_INVALID"));
    EXPECT_EQ(gap->get_header_value("Range"), "0-9");
    EXPECT_EQ(gap->get_header_value("Location"), location);
    auto again = http->Patch(location, {{"Content-Range", "0-9"}}, data.substr(0, 10), kOctets);
    EXPECT_EQ(again->status, 416);
    // A Content-Range that is not <first>-<last>: 416 as well.
    for (std::string bad : {"ten-twenty", "19-10", "-5"}) {
        auto r = http->Patch(location, {{"Content-Range", bad}}, "xx", kOctets);
        EXPECT_EQ(r->status, 416) << bad;
        EXPECT_EQ(r->get_header_value("Range"), "0-9") << bad;
    }
    // A Content-Range that disagrees with the body's length.
    auto size_mismatch =
        http->Patch(location, {{"Content-Range", "10-29"}}, data.substr(10, 10), kOctets);
    EXPECT_TRUE(is_spec_error(size_mismatch, 400, "SIZE_INVALID"));

    auto status = http->Get(location);
    EXPECT_EQ(status->status, 204);
    EXPECT_EQ(status->get_header_value("Range"), "0-9");
    EXPECT_EQ(status->get_header_value("Location"), location);

    auto p2 = http->Patch(location, {{"Content-Range", "10-19"}}, data.substr(10, 10), kOctets);
    ASSERT_EQ(p2->status, 202) << p2->body;
    EXPECT_EQ(p2->get_header_value("Range"), "0-19");
    // The last chunk in the closing PUT, with its Content-Range.
    auto put = http->Put(location + "?digest=" + d.str(), {{"Content-Range", "20-23"}},
                         data.substr(20), kOctets);
    ASSERT_EQ(put->status, 201) << put->body;
    EXPECT_EQ(http->Get("/v2/app/blobs/" + d.str())->body, data);
    EXPECT_TRUE(is_spec_error(http->Get(location), 404, "BLOB_UPLOAD_UNKNOWN"));
}

TEST_F(SpecPush, ChunksWithoutContentRangeAppend) {
    std::string data = "abcdef";
    auto post = http->Post("/v2/app/blobs/uploads/");
    std::string location = post->get_header_value("Location");
    ASSERT_EQ(http->Patch(location, "abc", kOctets)->status, 202);
    ASSERT_EQ(http->Patch(location, "def", kOctets)->status, 202);
    auto put = http->Put(location + "?digest=" + oci::Digest::sha256_of(data).str(), "", kOctets);
    EXPECT_EQ(put->status, 201) << put->body;
}

TEST_F(SpecPush, CompletingWithTheWrongDigestDiscardsTheUpload) {
    auto post = http->Post("/v2/app/blobs/uploads/");
    std::string location = post->get_header_value("Location");
    http->Patch(location, "actual data", kOctets);
    auto put =
        http->Put(location + "?digest=" + oci::Digest::sha256_of("claimed").str(), "", kOctets);
    EXPECT_TRUE(is_spec_error(put, 400, "DIGEST_INVALID"));
    EXPECT_EQ(http->Get(location)->status, 404);
    EXPECT_TRUE(std::filesystem::is_empty(s->blobs.ingest_dir()));
    auto no_digest = http->Post("/v2/app/blobs/uploads/");
    EXPECT_TRUE(is_spec_error(http->Put(no_digest->get_header_value("Location"), "", kOctets), 400,
                              "DIGEST_INVALID"));
    auto bad_digest = http->Post("/v2/app/blobs/uploads/");
    EXPECT_TRUE(is_spec_error(
        http->Put(bad_digest->get_header_value("Location") + "?digest=md5:abc", "", kOctets), 400,
        "DIGEST_INVALID"));
}

TEST_F(SpecPush, CancelAnUpload) {
    auto post = http->Post("/v2/app/blobs/uploads/");
    std::string location = post->get_header_value("Location");
    http->Patch(location, "partial", kOctets);
    auto del = http->Delete(location);
    ASSERT_TRUE(del);
    EXPECT_EQ(del->status, 204);
    EXPECT_TRUE(is_spec_error(http->Get(location), 404, "BLOB_UPLOAD_UNKNOWN"));
    EXPECT_TRUE(is_spec_error(http->Delete(location), 404, "BLOB_UPLOAD_UNKNOWN"));
    EXPECT_TRUE(std::filesystem::is_empty(s->blobs.ingest_dir()));
}

TEST_F(SpecPush, MountFromAnotherRepository) {
    auto d = push_blob("source", "shared");
    auto r = http->Post("/v2/dest/blobs/uploads/?mount=" + d.str() + "&from=source");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 201);
    EXPECT_EQ(r->get_header_value("Location"), "/v2/dest/blobs/" + d.str());
    EXPECT_EQ(r->get_header_value("Docker-Content-Digest"), d.str());
    EXPECT_EQ(http->Get("/v2/dest/blobs/" + d.str())->body, "shared");

    // `from` does not hold it (though the store does): a new upload session.
    auto not_there = http->Post("/v2/third/blobs/uploads/?mount=" + d.str() + "&from=elsewhere");
    ASSERT_TRUE(not_there);
    EXPECT_EQ(not_there->status, 202);
    EXPECT_FALSE(not_there->get_header_value("Location").empty());
    EXPECT_EQ(http->Get(not_there->get_header_value("Location"))->status, 204);
    EXPECT_EQ(http->Get("/v2/third/blobs/" + d.str())->status, 404);
    // Unknown digest, or not a digest: the same fallback.
    for (std::string mount : {oci::Digest::sha256_of("unknown").str(), std::string("garbage")})
        EXPECT_EQ(http->Post("/v2/third/blobs/uploads/?mount=" + mount + "&from=source")->status,
                  202)
            << mount;
}

TEST_F(SpecPush, MountWithoutFromFindsWhatTheStoreHas) {
    auto d = push_blob("somewhere", "known content");
    auto r = http->Post("/v2/newcomer/blobs/uploads/?mount=" + d.str());
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 201);
    EXPECT_EQ(http->Get("/v2/newcomer/blobs/" + d.str())->body, "known content");
    auto unknown = http->Post("/v2/newcomer/blobs/uploads/?mount=" +
                              oci::Digest::sha256_of("never pushed").str());
    EXPECT_EQ(unknown->status, 202);
}

TEST_F(SpecPush, ManifestMediaTypesAreHonoured) {
    auto img = make_image(nullptr, "ct");
    push_blob("app", img.config);
    push_blob("app", img.layer);
    // Content-Type contradicting the document's mediaType: refused.
    EXPECT_TRUE(is_spec_error(
        put_manifest("app", "v1", img.manifest, std::string(oci::media::kDockerManifest)), 400,
        "MANIFEST_INVALID"));
    EXPECT_TRUE(is_spec_error(put_manifest("app", "v1", img.manifest, kOciIndexType), 400,
                              "MANIFEST_INVALID"));
    // Parameters are ignored; the stored type has none.
    auto ok = put_manifest("app", "v1", img.manifest, kOciManifestType + "; charset=utf-8");
    ASSERT_EQ(ok->status, 201) << ok->body;
    EXPECT_EQ(http->Head("/v2/app/manifests/v1")->get_header_value("Content-Type"),
              kOciManifestType);

    // A document without mediaType takes the Content-Type it was sent with.
    std::string no_type = img.manifest;
    auto pos = no_type.find("\"mediaType\": \"" + kOciManifestType + "\",");
    ASSERT_NE(pos, std::string::npos);
    no_type.erase(pos, std::string("\"mediaType\": \"" + kOciManifestType + "\",").size());
    ASSERT_EQ(put_manifest("app", "bare", no_type, kOciManifestType)->status, 201);
    EXPECT_EQ(http->Head("/v2/app/manifests/bare")->get_header_value("Content-Type"),
              kOciManifestType);
}

TEST_F(SpecPush, InvalidManifestsAreRefused) {
    auto img = make_image(nullptr, "inv");
    push_blob("app", img.config);
    push_blob("app", img.layer);
    auto config = testing::descriptor_json(oci::media::kImageConfig, img.config);
    std::vector<std::pair<std::string, std::string>> cases = {
        {"not JSON", "{schemaVersion"},
        {"not an object", "[2]"},
        {"schema 1",
         R"({"schemaVersion":1,"name":"app","tag":"v1","architecture":"amd64","fsLayers":[],"history":[]})"},
        {"schemaVersion 3", R"({"schemaVersion":3,"config":)" + config + R"(,"layers":[]})"},
        {"no schemaVersion", R"({"config":)" + config + R"(,"layers":[]})"},
        {"layers not an array", R"({"schemaVersion":2,"config":)" + config + R"(,"layers":{}})"},
        {"no config", R"({"schemaVersion":2,"layers":[]})"},
        {"bad digest",
         R"({"schemaVersion":2,"config":{"mediaType":"a/b","digest":"sha256:xyz","size":1},"layers":[]})"},
        {"negative size", R"({"schemaVersion":2,"config":{"mediaType":"a/b","digest":")" +
                              img.config_digest.str() + R"(","size":-1},"layers":[]})"},
        {"size differs from the blob",
         R"({"schemaVersion":2,"config":{"mediaType":"a/b","digest":")" + img.config_digest.str() +
             R"(","size":3},"layers":[]})"},
    };
    for (const auto& [what, body] : cases)
        EXPECT_TRUE(is_spec_error(put_manifest("app", "v1", body, kOciManifestType), 400,
                                  "MANIFEST_INVALID"))
            << what;
    EXPECT_TRUE(
        is_spec_error(put_manifest("app", "v1", cases[2].second,
                                   "application/vnd.docker.distribution.manifest.v1+prettyjws"),
                      400, "MANIFEST_INVALID"));
    EXPECT_FALSE(s->store.has_repository("app") && !s->store.tags("app").empty());
}

TEST_F(SpecPush, ManifestsReferencingMissingContentAreRefused) {
    auto img = make_image(nullptr, "missing");
    push_blob("app", img.config);  // no layer
    auto r = put_manifest("app", "v1", img.manifest, kOciManifestType);
    EXPECT_TRUE(is_spec_error(r, 400, "MANIFEST_BLOB_UNKNOWN"));
    EXPECT_NE(r->body.find(img.layer_digest.str()), std::string::npos);

    // In the store but not in this repository: still unknown here.
    push_blob("other", img.layer);
    EXPECT_TRUE(is_spec_error(put_manifest("app", "v1", img.manifest, kOciManifestType), 400,
                              "MANIFEST_BLOB_UNKNOWN"));
    ASSERT_EQ(http->Post("/v2/app/blobs/uploads/?mount=" + img.layer_digest.str() + "&from=other")
                  ->status,
              201);
    EXPECT_EQ(put_manifest("app", "v1", img.manifest, kOciManifestType)->status, 201);

    // An index whose child manifest is missing.
    auto child = make_image(nullptr, "child");
    EXPECT_TRUE(is_spec_error(put_manifest("app", "idx", make_index({child}), kOciIndexType), 400,
                              "MANIFEST_BLOB_UNKNOWN"));
}

TEST_F(SpecPush, ManifestByDigestAndTagsInOneRequest) {
    auto img = make_image(nullptr, "bd");
    push_blob("app", img.config);
    push_blob("app", img.layer);
    EXPECT_TRUE(is_spec_error(
        put_manifest("app", oci::Digest::sha256_of("other").str(), img.manifest, kOciManifestType),
        400, "DIGEST_INVALID"));
    auto r = put_manifest("app", img.manifest_digest.str() + "?tag=one&tag=two", img.manifest,
                          kOciManifestType);
    ASSERT_EQ(r->status, 201) << r->body;
    EXPECT_EQ(r->get_header_value("Location"), "/v2/app/manifests/" + img.manifest_digest.str());
    EXPECT_EQ(r->get_header_value("Docker-Content-Digest"), img.manifest_digest.str());
    EXPECT_EQ(s->store.tags("app"), (std::vector<std::string>{"one", "two"}));
}

TEST_F(SpecPush, ManifestSizeLimit) {
    auto img = make_image(nullptr, "big");
    push_blob("app", img.config);
    push_blob("app", img.layer);
    auto with_annotation = [&](size_t total) {
        auto j = nlohmann::json::parse(img.manifest);
        j["annotations"] = {{"filler", ""}};
        size_t base = j.dump().size();
        j["annotations"]["filler"] = std::string(total - base, 'f');
        std::string out = j.dump();
        EXPECT_EQ(out.size(), total);
        return out;
    };
    auto at_limit = put_manifest("app", "max", with_annotation(4 << 20), kOciManifestType);
    EXPECT_EQ(at_limit->status, 201) << at_limit->body.substr(0, 200);
    EXPECT_TRUE(
        is_spec_error(put_manifest("app", "over", with_annotation((4 << 20) + 1), kOciManifestType),
                      413, "SIZE_INVALID"));
    EXPECT_EQ(http->Get("/v2/app/manifests/over")->status, 404);
}

TEST_F(SpecPush, PushAnswersOciSubject) {
    auto img = make_image(nullptr, "subject");
    push_image("app", img, "v1");
    std::string config = "{}";
    push_blob("app", config);
    push_blob("app", "sig");
    auto m = testing::artifact_manifest(
        std::string(oci::media::kEmptyJson), config, "sig",
        std::make_pair(img.manifest_digest, static_cast<int64_t>(img.manifest.size())),
        "application/vnd.example.sig", nullptr);
    auto r = put_manifest("app", oci::Digest::sha256_of(m).str(), m, kOciManifestType);
    ASSERT_EQ(r->status, 201) << r->body;
    EXPECT_EQ(r->get_header_value("OCI-Subject"), img.manifest_digest.str());
    auto plain = push_image("app", make_image(nullptr, "plain"), "v2");
    EXPECT_FALSE(plain->has_header("OCI-Subject"));
}

// Expiry of abandoned upload sessions by last activity.
class SpecUploadExpiry : public SpecTest {
  protected:
    DistributionOptions options() const override {
        DistributionOptions o;
        o.upload_expire_seconds = 60;
        o.upload_sweep_interval = std::chrono::milliseconds(50);
        return o;
    }
    std::string start(const std::string& data) {
        auto post = http->Post("/v2/app/blobs/uploads/");
        EXPECT_EQ(http->Patch(post->get_header_value("Location"), data, kOctets)->status, 202);
        return post->get_header_value("Location");
    }
    std::filesystem::path data_file(const std::string& location) {
        return s->blobs.ingest_dir() / ("upload-" + location.substr(location.rfind('/') + 1)) /
               "data";
    }
    // Makes the session look idle since `seconds` ago.
    void age(const std::string& location, int seconds) {
        struct timespec times[2];
        ::clock_gettime(CLOCK_REALTIME, &times[0]);
        times[0].tv_sec -= seconds;
        times[1] = times[0];
        ASSERT_EQ(::utimensat(AT_FDCWD, data_file(location).c_str(), times, 0), 0);
    }
};

TEST_F(SpecUploadExpiry, IdleSessionsAreRemovedAndActiveOnesKept) {
    auto idle = start("abandoned");
    auto fresh = start("in progress");
    auto polled = start("client checks status");
    age(idle, 120);
    age(polled, 120);
    // A status request is activity.
    ASSERT_EQ(http->Get(polled)->status, 204);
    EXPECT_EQ(server->distribution.expire_uploads(), 1u);
    EXPECT_TRUE(is_spec_error(http->Get(idle), 404, "BLOB_UPLOAD_UNKNOWN"));
    EXPECT_FALSE(std::filesystem::exists(data_file(idle).parent_path()));
    EXPECT_EQ(http->Get(fresh)->status, 204);
    EXPECT_EQ(http->Get(polled)->status, 204);
    // Sessions not loaded since a restart expire too.
    restart();
    age(fresh, 61);
    EXPECT_EQ(server->distribution.expire_uploads(), 1u);
    EXPECT_EQ(http->Get(fresh)->status, 404);
    EXPECT_EQ(http->Get(polled)->status, 204);
}

TEST_F(SpecUploadExpiry, TheSweeperRemovesThemWhileServing) {
    auto idle = start("abandoned");
    auto fresh = start("fresh");
    age(idle, 3600);
    server->distribution.start_upload_sweeper();
    // Watched on disk: a status request would itself be activity.
    EXPECT_TRUE(
        test::eventually([&] { return !std::filesystem::exists(data_file(idle).parent_path()); },
                         std::chrono::seconds(30)));
    EXPECT_EQ(http->Get(idle)->status, 404);
    EXPECT_EQ(http->Get(fresh)->status, 204);
    server->distribution.stop_upload_sweeper();
    // Stopped: an idle session now stays.
    auto later = start("after stop");
    age(later, 3600);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    EXPECT_EQ(http->Get(later)->status, 204);
}

}  // namespace
}  // namespace cascade::registry
