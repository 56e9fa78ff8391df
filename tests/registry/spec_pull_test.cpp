// Distribution Spec: pulling manifests and blobs (GET/HEAD, headers, Range).
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "spec_support.hpp"

namespace cascade::registry {
namespace {

using testing::is_spec_error;
using testing::kOciIndexType;
using testing::kOciManifestType;
using testing::make_image;
using testing::make_index;
using testing::SpecTest;

using SpecPull = SpecTest;

TEST_F(SpecPull, ManifestByTagAndDigestWithExactHeaders) {
    struct Case {
        std::string repo, type;
    };
    for (const auto& c : {Case{"oci/image", kOciManifestType},
                          Case{"docker/image", std::string(oci::media::kDockerManifest)}}) {
        auto img = make_image(nullptr, c.repo, c.type);
        auto put = push_image(c.repo, img, "v1", c.type);
        ASSERT_TRUE(put);
        ASSERT_EQ(put->status, 201) << put->body;
        for (const std::string& ref : {std::string("v1"), img.manifest_digest.str()}) {
            for (bool head : {false, true}) {
                auto path = "/v2/" + c.repo + "/manifests/" + ref;
                auto r = head ? http->Head(path) : http->Get(path);
                ASSERT_TRUE(r) << path;
                EXPECT_EQ(r->status, 200) << path;
                EXPECT_EQ(r->get_header_value("Content-Type"), c.type) << path;
                EXPECT_EQ(r->get_header_value("Content-Length"),
                          std::to_string(img.manifest.size()));
                EXPECT_EQ(r->get_header_value("Docker-Content-Digest"), img.manifest_digest.str());
                EXPECT_EQ(r->body, head ? std::string() : img.manifest) << "bytes as pushed";
            }
        }
    }
}

TEST_F(SpecPull, IndexAndManifestListKeepTheirMediaType) {
    auto a = make_image(nullptr, "a"), b = make_image(nullptr, "b");
    push_image("multi", a, a.manifest_digest.str());
    push_image("multi", b, b.manifest_digest.str());
    std::string index = make_index({a, b});
    ASSERT_EQ(put_manifest("multi", "oci", index, kOciIndexType)->status, 201);
    auto r = http->Get("/v2/multi/manifests/oci");
    EXPECT_EQ(r->get_header_value("Content-Type"), kOciIndexType);
    EXPECT_EQ(r->body, index);

    // A Docker manifest list of Docker manifests.
    auto da = make_image(nullptr, "da", oci::media::kDockerManifest);
    push_image("multi", da, da.manifest_digest.str(), std::string(oci::media::kDockerManifest));
    nlohmann::json list = {{"schemaVersion", 2},
                           {"mediaType", oci::media::kDockerManifestList},
                           {"manifests",
                            {{{"mediaType", oci::media::kDockerManifest},
                              {"digest", da.manifest_digest.str()},
                              {"size", da.manifest.size()},
                              {"platform", {{"architecture", "amd64"}, {"os", "linux"}}}}}}};
    auto put =
        put_manifest("multi", "docker", list.dump(), std::string(oci::media::kDockerManifestList));
    ASSERT_EQ(put->status, 201) << put->body;
    auto got = http->Head("/v2/multi/manifests/docker");
    EXPECT_EQ(got->get_header_value("Content-Type"), oci::media::kDockerManifestList);
}

TEST_F(SpecPull, UnknownManifestsAndRepositories) {
    EXPECT_TRUE(is_spec_error(http->Get("/v2/nobody/manifests/latest"), 404, "NAME_UNKNOWN"));
    push_image("app", make_image(nullptr, "x"), "v1");
    EXPECT_TRUE(is_spec_error(http->Get("/v2/app/manifests/v2"), 404, "MANIFEST_UNKNOWN"));
    EXPECT_TRUE(
        is_spec_error(http->Get("/v2/app/manifests/" + oci::Digest::sha256_of("none").str()), 404,
                      "MANIFEST_UNKNOWN"));
    auto head = http->Head("/v2/app/manifests/v2");
    ASSERT_TRUE(head);
    EXPECT_EQ(head->status, 404);
    EXPECT_TRUE(head->body.empty());
    EXPECT_TRUE(is_spec_error(http->Get("/v2/app/manifests/sha256:nothex"), 400, "DIGEST_INVALID"));
}

TEST_F(SpecPull, ADeletedManifestIsNotServedFromMemory) {
    auto img = make_image(nullptr, "cached");
    push_image("app", img, "v1");
    ASSERT_EQ(http->Get("/v2/app/manifests/v1")->status, 200);  // now cached
    ASSERT_EQ(http->Delete("/v2/app/manifests/" + img.manifest_digest.str())->status, 202);
    EXPECT_EQ(http->Get("/v2/app/manifests/" + img.manifest_digest.str())->status, 404);
    EXPECT_EQ(http->Get("/v2/app/manifests/v1")->status, 404);
    // Another repository holding the same bytes still serves them.
    push_image("other", img, "v1");
    EXPECT_EQ(http->Get("/v2/other/manifests/v1")->body, img.manifest);
}

TEST_F(SpecPull, BlobGetAndHead) {
    std::string data(100000, 'b');
    auto d = push_blob("app", data);
    auto get = http->Get("/v2/app/blobs/" + d.str());
    ASSERT_TRUE(get);
    EXPECT_EQ(get->status, 200);
    EXPECT_EQ(get->body, data);
    EXPECT_EQ(get->get_header_value("Docker-Content-Digest"), d.str());
    EXPECT_EQ(get->get_header_value("Content-Length"), std::to_string(data.size()));
    EXPECT_EQ(get->get_header_value("Content-Type"), "application/octet-stream");
    EXPECT_EQ(get->get_header_value("Accept-Ranges"), "bytes");
    auto head = http->Head("/v2/app/blobs/" + d.str());
    ASSERT_TRUE(head);
    EXPECT_EQ(head->status, 200);
    EXPECT_TRUE(head->body.empty());
    EXPECT_EQ(head->get_header_value("Content-Length"), std::to_string(data.size()));
    EXPECT_EQ(head->get_header_value("Docker-Content-Digest"), d.str());
}

TEST_F(SpecPull, BlobRanges) {
    std::string data;
    for (int i = 0; i < 1000; i++)
        data += static_cast<char>('a' + i % 26);
    auto d = push_blob("app", data);
    std::string path = "/v2/app/blobs/" + d.str();
    struct Case {
        std::string range;
        size_t first, last;
    };
    for (const auto& c :
         {Case{"bytes=0-9", 0, 9}, Case{"bytes=990-", 990, 999}, Case{"bytes=-5", 995, 999},
          Case{"bytes=500-5000", 500, 999}, Case{"bytes=999-999", 999, 999}}) {
        auto r = http->Get(path, {{"Range", c.range}});
        ASSERT_TRUE(r) << c.range;
        EXPECT_EQ(r->status, 206) << c.range;
        EXPECT_EQ(r->body, data.substr(c.first, c.last - c.first + 1)) << c.range;
        EXPECT_EQ(r->get_header_value("Content-Range"),
                  "bytes " + std::to_string(c.first) + "-" + std::to_string(c.last) + "/1000")
            << c.range;
        EXPECT_EQ(r->get_header_value("Content-Length"), std::to_string(c.last - c.first + 1));
        EXPECT_EQ(r->get_header_value("Docker-Content-Digest"), d.str());
        auto head = http->Head(path, {{"Range", c.range}});
        EXPECT_EQ(head->status, 206);
        EXPECT_EQ(head->get_header_value("Content-Length"), std::to_string(c.last - c.first + 1));
    }
    for (std::string unsatisfiable : {"bytes=1000-", "bytes=5000-6000", "bytes=-0"}) {
        auto r = http->Get(path, {{"Range", unsatisfiable}});
        ASSERT_TRUE(r) << unsatisfiable;
        EXPECT_EQ(r->status, 416) << unsatisfiable;
        EXPECT_EQ(r->get_header_value("Content-Range"), "bytes */1000") << unsatisfiable;
    }
    // Several ranges get the whole blob.
    auto several = http->Get(path, {{"Range", "bytes=0-1,5-6"}});
    ASSERT_TRUE(several);
    EXPECT_EQ(several->status, 200);
    EXPECT_EQ(several->body, data);
    // What is not a byte range is refused by httplib before routing (416);
    // never a partial answer.
    for (std::string invalid : {"items=0-5", "bytes=9-3"}) {
        auto r = http->Get(path, {{"Range", invalid}});
        ASSERT_TRUE(r) << invalid;
        EXPECT_NE(r->status, 206) << invalid;
    }
    // An error answer is never sliced by the Range of its request.
    auto missing =
        http->Get("/v2/app/blobs/" + oci::Digest::sha256_of("no").str(), {{"Range", "bytes=0-3"}});
    EXPECT_TRUE(is_spec_error(missing, 404, "BLOB_UNKNOWN"));
}

TEST_F(SpecPull, ABlobIsServedOnlyByRepositoriesHoldingIt) {
    auto d = push_blob("owner", "private layer");
    EXPECT_EQ(http->Get("/v2/owner/blobs/" + d.str())->status, 200);
    EXPECT_TRUE(is_spec_error(http->Get("/v2/stranger/blobs/" + d.str()), 404, "BLOB_UNKNOWN"));
    EXPECT_EQ(http->Head("/v2/stranger/blobs/" + d.str())->status, 404);
    ASSERT_EQ(http->Post("/v2/stranger/blobs/uploads/?mount=" + d.str() + "&from=owner")->status,
              201);
    EXPECT_EQ(http->Get("/v2/stranger/blobs/" + d.str())->body, "private layer");
    // A repository's manifests can be fetched as blobs too.
    auto img = make_image(nullptr, "m");
    push_image("owner", img, "v1");
    EXPECT_EQ(http->Get("/v2/owner/blobs/" + img.manifest_digest.str())->body, img.manifest);
    EXPECT_EQ(http->Get("/v2/stranger/blobs/" + img.manifest_digest.str())->status, 404);
}

TEST_F(SpecPull, LargeBlobsToManyClientsAtOnce) {
    std::string data(24 << 20, '\0');
    for (size_t i = 0; i < data.size(); i++)
        data[i] = static_cast<char>((i * 7919) >> 3);
    auto d = push_blob("big", data);
    std::atomic<int> good{0};
    std::vector<std::thread> clients;
    for (int i = 0; i < 6; i++)
        clients.emplace_back([&] {
            auto c = server->client();
            auto r = c->Get("/v2/big/blobs/" + d.str());
            if (r && r->status == 200 && oci::Digest::sha256_of(r->body) == d) good++;
        });
    for (auto& t : clients)
        t.join();
    EXPECT_EQ(good, 6);
}

TEST_F(SpecPull, EmptyBlob) {
    auto d = push_blob("app", "");
    auto r = http->Get("/v2/app/blobs/" + d.str());
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body, "");
    EXPECT_EQ(r->get_header_value("Content-Length"), "0");
    EXPECT_EQ(http->Get("/v2/app/blobs/" + d.str(), {{"Range", "bytes=0-"}})->status, 416);
}

}  // namespace
}  // namespace cascade::registry
