// The Distribution API driven with a plain HTTP client (httplib::Client).
#include "registry/http.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>

#include "registry_helpers.hpp"

namespace cascade::registry {
namespace {

using testing::error_code;
using testing::make_image;
using testing::make_index;
using testing::RegistryServer;
using testing::SampleImage;
using testing::StoreOnDisk;

const std::string kOciManifest(oci::media::kImageManifest);

std::string header(const httplib::Result& r, const std::string& name) {
    return r ? r->get_header_value(name) : std::string();
}

class HttpTest : public ::testing::Test {
  protected:
    fs::TempDir tmp;
    std::unique_ptr<StoreOnDisk> s = std::make_unique<StoreOnDisk>(tmp.path());
    std::unique_ptr<RegistryServer> server = std::make_unique<RegistryServer>(s->store);
    std::unique_ptr<httplib::Client> http = server->client();

    // Pushes a blob through POST + PUT and returns its digest.
    oci::Digest push_blob(const std::string& repo, const std::string& data) {
        auto d = oci::Digest::sha256_of(data);
        auto r = http->Post("/v2/" + repo + "/blobs/uploads/");
        EXPECT_TRUE(r);
        EXPECT_EQ(r->status, 202);
        auto put = http->Put(header(r, "Location") + "?digest=" + d.str(), data,
                             "application/octet-stream");
        EXPECT_TRUE(put);
        EXPECT_EQ(put->status, 201) << put->body;
        return d;
    }

    // Pushes the image's blobs and its manifest under `tag`.
    httplib::Result push_image(const std::string& repo, const SampleImage& img,
                               const std::string& tag) {
        push_blob(repo, img.config);
        push_blob(repo, img.layer);
        return http->Put("/v2/" + repo + "/manifests/" + tag, img.manifest, kOciManifest);
    }

    void restart_server() {
        server.reset();
        s.reset();
        s = std::make_unique<StoreOnDisk>(tmp.path());
        server = std::make_unique<RegistryServer>(s->store);
        http = server->client();
    }
};

TEST_F(HttpTest, BaseEndpointAnswersVersionCheck) {
    for (auto path : {"/v2/", "/v2"}) {
        auto r = http->Get(path);
        ASSERT_TRUE(r) << path;
        EXPECT_EQ(r->status, 200);
        EXPECT_EQ(r->body, "{}");
        EXPECT_EQ(r->get_header_value("Docker-Distribution-API-Version"), "registry/2.0");
        EXPECT_EQ(r->get_header_value("Content-Type"), "application/json");
    }
}

TEST_F(HttpTest, ChunkedUploadStreamsToAnIngestFileAndCommits) {
    std::string data = "0123456789abcdefghij";
    auto d = oci::Digest::sha256_of(data);
    auto post = http->Post("/v2/library/busybox/blobs/uploads/");
    ASSERT_TRUE(post);
    ASSERT_EQ(post->status, 202);
    std::string location = post->get_header_value("Location");
    std::string uuid = post->get_header_value("Docker-Upload-UUID");
    EXPECT_EQ(location, "/v2/library/busybox/blobs/uploads/" + uuid);
    EXPECT_EQ(post->get_header_value("Range"), "0-0");
    EXPECT_EQ(post->get_header_value("Content-Length"), "0");

    auto p1 = http->Patch(location, {{"Content-Range", "0-9"}}, data.substr(0, 10),
                          "application/octet-stream");
    ASSERT_TRUE(p1);
    EXPECT_EQ(p1->status, 202) << p1->body;
    EXPECT_EQ(p1->get_header_value("Range"), "0-9");
    EXPECT_EQ(p1->get_header_value("Docker-Upload-UUID"), uuid);
    location = p1->get_header_value("Location");

    auto status = http->Get(location);
    ASSERT_TRUE(status);
    EXPECT_EQ(status->status, 204);
    EXPECT_EQ(status->get_header_value("Range"), "0-9");

    // Not visible as a blob before it is committed.
    auto early = http->Head("/v2/library/busybox/blobs/" + d.str());
    ASSERT_TRUE(early);
    EXPECT_EQ(early->status, 404);
    EXPECT_FALSE(s->blobs.has(d));

    // A chunk that does not continue at the current offset is refused.
    auto gap = http->Patch(location, {{"Content-Range", "15-19"}}, data.substr(15),
                           "application/octet-stream");
    ASSERT_TRUE(gap);
    EXPECT_EQ(gap->status, 416);
    EXPECT_EQ(gap->get_header_value("Range"), "0-9");

    auto put =
        http->Put(location + "?digest=" + d.str(), data.substr(10), "application/octet-stream");
    ASSERT_TRUE(put);
    EXPECT_EQ(put->status, 201) << put->body;
    EXPECT_EQ(put->get_header_value("Location"), "/v2/library/busybox/blobs/" + d.str());
    EXPECT_EQ(put->get_header_value("Docker-Content-Digest"), d.str());
    EXPECT_EQ(s->blobs.read(d), data);
    EXPECT_TRUE(s->store.repo_has_blob("library/busybox", d));

    // The session is over.
    auto after = http->Get(location);
    ASSERT_TRUE(after);
    EXPECT_EQ(after->status, 404);
    EXPECT_EQ(error_code(after->body), "BLOB_UPLOAD_UNKNOWN");
    EXPECT_TRUE(std::filesystem::is_empty(s->blobs.ingest_dir()));
}

TEST_F(HttpTest, GetAndHeadBlob) {
    std::string data(300000, 'z');
    data[12345] = 'q';
    auto d = push_blob("a/b/c", data);

    auto get = http->Get("/v2/a/b/c/blobs/" + d.str());
    ASSERT_TRUE(get);
    EXPECT_EQ(get->status, 200);
    EXPECT_EQ(get->body, data);
    EXPECT_EQ(get->get_header_value("Docker-Content-Digest"), d.str());
    EXPECT_EQ(get->get_header_value("Content-Length"), std::to_string(data.size()));

    auto head = http->Head("/v2/a/b/c/blobs/" + d.str());
    ASSERT_TRUE(head);
    EXPECT_EQ(head->status, 200);
    EXPECT_EQ(head->get_header_value("Content-Length"), std::to_string(data.size()));
    EXPECT_EQ(head->get_header_value("Docker-Content-Digest"), d.str());
    EXPECT_TRUE(head->body.empty());

    auto range = http->Get("/v2/a/b/c/blobs/" + d.str(), {{"Range", "bytes=12344-12346"}});
    ASSERT_TRUE(range);
    EXPECT_EQ(range->status, 206);
    EXPECT_EQ(range->body, "zqz");

    auto missing = http->Get("/v2/a/b/c/blobs/" + oci::Digest::sha256_of("nope").str());
    ASSERT_TRUE(missing);
    EXPECT_EQ(missing->status, 404);
    EXPECT_EQ(error_code(missing->body), "BLOB_UNKNOWN");

    auto bad = http->Get("/v2/a/b/c/blobs/sha256:xyz");
    ASSERT_TRUE(bad);
    EXPECT_EQ(bad->status, 400);
    EXPECT_EQ(error_code(bad->body), "DIGEST_INVALID");

    auto empty = push_blob("a/b/c", "");
    auto e = http->Get("/v2/a/b/c/blobs/" + empty.str());
    ASSERT_TRUE(e);
    EXPECT_EQ(e->status, 200);
    EXPECT_EQ(e->body, "");
    EXPECT_EQ(e->get_header_value("Content-Length"), "0");

    auto del = http->Delete("/v2/a/b/c/blobs/" + d.str());
    ASSERT_TRUE(del);
    EXPECT_EQ(del->status, 202);
    EXPECT_EQ(http->Get("/v2/a/b/c/blobs/" + d.str())->status, 404);
}

TEST_F(HttpTest, MonolithicUploadVerifiesTheDigest) {
    std::string data = "monolithic blob";
    auto d = oci::Digest::sha256_of(data);
    auto ok =
        http->Post("/v2/mono/blobs/uploads/?digest=" + d.str(), data, "application/octet-stream");
    ASSERT_TRUE(ok);
    EXPECT_EQ(ok->status, 201) << ok->body;
    EXPECT_EQ(ok->get_header_value("Location"), "/v2/mono/blobs/" + d.str());
    EXPECT_EQ(ok->get_header_value("Docker-Content-Digest"), d.str());
    EXPECT_EQ(s->blobs.read(d), data);

    auto wrong = oci::Digest::sha256_of("claimed");
    auto bad = http->Post("/v2/mono/blobs/uploads/?digest=" + wrong.str(), "actual",
                          "application/octet-stream");
    ASSERT_TRUE(bad);
    EXPECT_EQ(bad->status, 400);
    EXPECT_EQ(error_code(bad->body), "DIGEST_INVALID");
    EXPECT_FALSE(s->blobs.has(wrong));
    EXPECT_FALSE(s->blobs.has(oci::Digest::sha256_of("actual")));
    EXPECT_TRUE(std::filesystem::is_empty(s->blobs.ingest_dir()));
}

TEST_F(HttpTest, WrongDigestOnCompletionDiscardsTheUpload) {
    auto post = http->Post("/v2/app/blobs/uploads/");
    ASSERT_TRUE(post);
    std::string location = post->get_header_value("Location");
    auto wrong = oci::Digest::sha256_of("claimed");
    auto put = http->Put(location + "?digest=" + wrong.str(), "actual", "application/octet-stream");
    ASSERT_TRUE(put);
    EXPECT_EQ(put->status, 400);
    EXPECT_EQ(error_code(put->body), "DIGEST_INVALID");
    EXPECT_FALSE(s->blobs.has(wrong));
    EXPECT_FALSE(s->blobs.has(oci::Digest::sha256_of("actual")));
    EXPECT_TRUE(std::filesystem::is_empty(s->blobs.ingest_dir()));

    auto post2 = http->Post("/v2/app/blobs/uploads/");
    auto no_digest =
        http->Put(post2->get_header_value("Location"), "x", "application/octet-stream");
    ASSERT_TRUE(no_digest);
    EXPECT_EQ(no_digest->status, 400);
    EXPECT_EQ(error_code(no_digest->body), "DIGEST_INVALID");
}

TEST_F(HttpTest, UnknownAndCancelledUploads) {
    std::string unknown = "/v2/app/blobs/uploads/00000000-0000-4000-8000-000000000000";
    auto d = oci::Digest::sha256_of("x");
    std::vector<httplib::Result> results;
    results.push_back(http->Get(unknown));
    results.push_back(http->Patch(unknown, "x", "application/octet-stream"));
    results.push_back(http->Put(unknown + "?digest=" + d.str(), "x", "application/octet-stream"));
    results.push_back(http->Delete(unknown));
    results.push_back(http->Get("/v2/app/blobs/uploads/not-a-uuid"));
    for (auto& r : results) {
        ASSERT_TRUE(r);
        EXPECT_EQ(r->status, 404);
        EXPECT_EQ(error_code(r->body), "BLOB_UPLOAD_UNKNOWN");
    }

    auto post = http->Post("/v2/app/blobs/uploads/");
    std::string location = post->get_header_value("Location");
    http->Patch(location, "partial", "application/octet-stream");
    // The session belongs to its repository.
    auto other =
        http->Get("/v2/other/blobs/uploads/" + post->get_header_value("Docker-Upload-UUID"));
    EXPECT_EQ(other->status, 404);
    auto del = http->Delete(location);
    ASSERT_TRUE(del);
    EXPECT_EQ(del->status, 204);
    EXPECT_EQ(http->Get(location)->status, 404);
    EXPECT_TRUE(std::filesystem::is_empty(s->blobs.ingest_dir()));
}

TEST_F(HttpTest, UploadSurvivesARestart) {
    std::string data = "first half|second half";
    auto d = oci::Digest::sha256_of(data);
    auto post = http->Post("/v2/app/blobs/uploads/");
    std::string location = post->get_header_value("Location");
    auto p = http->Patch(location, data.substr(0, 11), "application/octet-stream");
    ASSERT_EQ(p->status, 202);

    restart_server();

    auto status = http->Get(location);
    ASSERT_TRUE(status);
    EXPECT_EQ(status->status, 204);
    EXPECT_EQ(status->get_header_value("Range"), "0-10");
    auto p2 = http->Patch(location, {{"Content-Range", "11-21"}}, data.substr(11),
                          "application/octet-stream");
    ASSERT_EQ(p2->status, 202) << p2->body;
    auto put = http->Put(location + "?digest=" + d.str(), "", "application/octet-stream");
    ASSERT_TRUE(put);
    EXPECT_EQ(put->status, 201) << put->body;
    EXPECT_EQ(s->blobs.read(d), data);
}

TEST_F(HttpTest, PatchStreamsToDiskWhileTheBodyArrives) {
    // 64 MiB sent by a content provider. Before sending the second half the
    // client waits until the server has written part of the first half to
    // the session's file: a server holding the body in memory would not.
    constexpr size_t kSize = 64 << 20;
    constexpr size_t kHalf = kSize / 2;
    auto post = http->Post("/v2/big/blobs/uploads/");
    std::string uuid = post->get_header_value("Docker-Upload-UUID");
    auto data_file = s->blobs.ingest_dir() / ("upload-" + uuid) / "data";
    std::vector<char> chunk(1 << 20);
    oci::Sha256 expected;
    std::atomic<bool> streamed{false};
    auto r = http->Patch(
        post->get_header_value("Location"), kSize,
        [&](size_t offset, size_t, httplib::DataSink& sink) {
            if (offset == kHalf)
                streamed = test::eventually(
                    [&] {
                        struct stat st;
                        return ::stat(data_file.c_str(), &st) == 0 && st.st_size >= (8 << 20);
                    },
                    std::chrono::seconds(60));
            for (size_t i = 0; i < chunk.size(); i++)
                chunk[i] = static_cast<char>((offset + i) * 31 / 7);
            expected.update(chunk.data(), chunk.size());
            return sink.write(chunk.data(), chunk.size());
        },
        "application/octet-stream");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 202);
    EXPECT_EQ(r->get_header_value("Range"), "0-" + std::to_string(kSize - 1));
    EXPECT_TRUE(streamed) << "nothing reached the disk before the body was complete";
    auto d = expected.digest();
    auto put = http->Put(post->get_header_value("Location") + "?digest=" + d.str(), "",
                         "application/octet-stream");
    ASSERT_TRUE(put);
    EXPECT_EQ(put->status, 201) << put->body;
    EXPECT_EQ(s->blobs.size(d), static_cast<int64_t>(kSize));
    EXPECT_EQ(oci::Digest::sha256_of_file(s->blobs.path(d).string()), d);
}

TEST_F(HttpTest, CrossRepositoryMount) {
    auto d = push_blob("source/repo", "shared layer");
    auto mounted =
        http->Post("/v2/dest/repo/blobs/uploads/?mount=" + d.str() + "&from=source/repo");
    ASSERT_TRUE(mounted);
    EXPECT_EQ(mounted->status, 201);
    EXPECT_EQ(mounted->get_header_value("Location"), "/v2/dest/repo/blobs/" + d.str());
    EXPECT_EQ(mounted->get_header_value("Docker-Content-Digest"), d.str());
    EXPECT_TRUE(s->store.repo_has_blob("dest/repo", d));

    auto missing = oci::Digest::sha256_of("not here");
    auto fallback =
        http->Post("/v2/dest/repo/blobs/uploads/?mount=" + missing.str() + "&from=source/repo");
    ASSERT_TRUE(fallback);
    EXPECT_EQ(fallback->status, 202);
    EXPECT_FALSE(fallback->get_header_value("Docker-Upload-UUID").empty());
}

TEST_F(HttpTest, PushAndPullManifestByTagAndDigest) {
    auto img = make_image(nullptr, "m");
    auto put = push_image("library/busybox", img, "latest");
    ASSERT_TRUE(put);
    ASSERT_EQ(put->status, 201) << put->body;
    EXPECT_EQ(put->get_header_value("Docker-Content-Digest"), img.manifest_digest.str());
    EXPECT_EQ(put->get_header_value("Location"),
              "/v2/library/busybox/manifests/" + img.manifest_digest.str());
    auto h = s->store.tag_history("library/busybox", "latest");
    ASSERT_EQ(h.size(), 1u);
    EXPECT_EQ(h[0].cause, "push");

    for (const std::string& ref : {std::string("latest"), img.manifest_digest.str()}) {
        auto get = http->Get("/v2/library/busybox/manifests/" + ref, {{"Accept", kOciManifest}});
        ASSERT_TRUE(get);
        EXPECT_EQ(get->status, 200);
        EXPECT_EQ(get->body, img.manifest);
        EXPECT_EQ(get->get_header_value("Content-Type"), kOciManifest);
        EXPECT_EQ(get->get_header_value("Docker-Content-Digest"), img.manifest_digest.str());
        EXPECT_EQ(get->get_header_value("Content-Length"), std::to_string(img.manifest.size()));

        auto head = http->Head("/v2/library/busybox/manifests/" + ref);
        ASSERT_TRUE(head);
        EXPECT_EQ(head->status, 200);
        EXPECT_TRUE(head->body.empty());
        EXPECT_EQ(head->get_header_value("Content-Type"), kOciManifest);
        EXPECT_EQ(head->get_header_value("Content-Length"), std::to_string(img.manifest.size()));
        EXPECT_EQ(head->get_header_value("Docker-Content-Digest"), img.manifest_digest.str());
    }
}

TEST_F(HttpTest, PutManifestByDigest) {
    auto img = make_image(nullptr, "bydigest");
    push_blob("app", img.config);
    push_blob("app", img.layer);
    auto wrong = http->Put("/v2/app/manifests/" + oci::Digest::sha256_of("x").str(), img.manifest,
                           kOciManifest);
    ASSERT_TRUE(wrong);
    EXPECT_EQ(wrong->status, 400);
    EXPECT_EQ(error_code(wrong->body), "DIGEST_INVALID");

    auto ok = http->Put("/v2/app/manifests/" + img.manifest_digest.str() + "?tag=a&tag=b",
                        img.manifest, kOciManifest);
    ASSERT_TRUE(ok);
    EXPECT_EQ(ok->status, 201) << ok->body;
    EXPECT_TRUE(s->store.has_manifest("app", img.manifest_digest));
    EXPECT_EQ(s->store.tags("app"), (std::vector<std::string>{"a", "b"}));
}

TEST_F(HttpTest, ManifestErrors) {
    auto img = make_image(nullptr, "missing blobs");
    auto blob_unknown = http->Put("/v2/app/manifests/v1", img.manifest, kOciManifest);
    ASSERT_TRUE(blob_unknown);
    EXPECT_EQ(blob_unknown->status, 400);
    EXPECT_EQ(error_code(blob_unknown->body), "MANIFEST_BLOB_UNKNOWN");
    auto body = nlohmann::json::parse(blob_unknown->body);
    EXPECT_NE(body["errors"][0]["message"].get<std::string>().find(img.config_digest.str()),
              std::string::npos);

    auto invalid = http->Put("/v2/app/manifests/v1", "{not json", kOciManifest);
    ASSERT_TRUE(invalid);
    EXPECT_EQ(invalid->status, 400);
    EXPECT_EQ(error_code(invalid->body), "MANIFEST_INVALID");

    auto bad_tag = http->Put("/v2/app/manifests/-bad", "{}", kOciManifest);
    EXPECT_EQ(error_code(bad_tag->body), "MANIFEST_INVALID");

    auto no_repo = http->Get("/v2/nothing/here/manifests/latest");
    ASSERT_TRUE(no_repo);
    EXPECT_EQ(no_repo->status, 404);
    EXPECT_EQ(error_code(no_repo->body), "NAME_UNKNOWN");

    push_image("app", make_image(nullptr, "present"), "v1");
    auto no_tag = http->Get("/v2/app/manifests/v2");
    ASSERT_TRUE(no_tag);
    EXPECT_EQ(no_tag->status, 404);
    EXPECT_EQ(error_code(no_tag->body), "MANIFEST_UNKNOWN");
    auto no_digest = http->Head("/v2/app/manifests/" + oci::Digest::sha256_of("x").str());
    EXPECT_EQ(no_digest->status, 404);

    for (auto path : {"/v2/UPPER/manifests/latest", "/v2/a//b/manifests/latest", "/v2/-x/tags/list",
                      "/v2/Bad/blobs/uploads/"}) {
        auto r = std::string(path).ends_with("uploads/") ? http->Post(path) : http->Get(path);
        ASSERT_TRUE(r) << path;
        EXPECT_EQ(r->status, 400) << path;
        EXPECT_EQ(error_code(r->body), "NAME_INVALID") << path;
    }
}

TEST_F(HttpTest, IndexPushNeedsChildren) {
    auto a = make_image(nullptr, "amd64"), b = make_image(nullptr, "arm64");
    std::string index = make_index({a, b});
    push_image("multi", a, a.manifest_digest.str());
    auto refused = http->Put("/v2/multi/manifests/v1", index, std::string(oci::media::kImageIndex));
    ASSERT_TRUE(refused);
    EXPECT_EQ(refused->status, 400);
    EXPECT_EQ(error_code(refused->body), "MANIFEST_BLOB_UNKNOWN");

    push_image("multi", b, b.manifest_digest.str());
    auto ok = http->Put("/v2/multi/manifests/v1", index, std::string(oci::media::kImageIndex));
    ASSERT_TRUE(ok);
    EXPECT_EQ(ok->status, 201) << ok->body;
    auto get = http->Get("/v2/multi/manifests/v1");
    EXPECT_EQ(get->get_header_value("Content-Type"), oci::media::kImageIndex);
    EXPECT_EQ(get->body, index);
}

TEST_F(HttpTest, TagsListAndCatalogPaginate) {
    for (auto tag : {"v3", "v1", "v2"})
        push_image("team/app", make_image(nullptr, tag), tag);
    push_image("other", make_image(nullptr, "o"), "latest");

    auto all = http->Get("/v2/team/app/tags/list");
    ASSERT_TRUE(all);
    EXPECT_EQ(all->status, 200);
    auto j = nlohmann::json::parse(all->body);
    EXPECT_EQ(j["name"], "team/app");
    EXPECT_EQ(j["tags"], nlohmann::json({"v1", "v2", "v3"}));

    auto page = http->Get("/v2/team/app/tags/list?n=2");
    EXPECT_EQ(nlohmann::json::parse(page->body)["tags"], nlohmann::json({"v1", "v2"}));
    EXPECT_EQ(page->get_header_value("Link"), "</v2/team/app/tags/list?n=2&last=v2>; rel=\"next\"");
    auto next = http->Get("/v2/team/app/tags/list?n=2&last=v2");
    EXPECT_EQ(nlohmann::json::parse(next->body)["tags"], nlohmann::json({"v3"}));
    EXPECT_FALSE(next->has_header("Link"));

    auto unknown = http->Get("/v2/nobody/tags/list");
    ASSERT_TRUE(unknown);
    EXPECT_EQ(unknown->status, 404);
    EXPECT_EQ(error_code(unknown->body), "NAME_UNKNOWN");

    auto catalog = http->Get("/v2/_catalog");
    ASSERT_TRUE(catalog);
    EXPECT_EQ(catalog->status, 200);
    EXPECT_EQ(nlohmann::json::parse(catalog->body)["repositories"],
              nlohmann::json({"other", "team/app"}));
    auto first = http->Get("/v2/_catalog?n=1");
    EXPECT_EQ(nlohmann::json::parse(first->body)["repositories"], nlohmann::json({"other"}));
    EXPECT_EQ(first->get_header_value("Link"), "</v2/_catalog?n=1&last=other>; rel=\"next\"");
}

TEST_F(HttpTest, DeleteManifestByTagAndDigest) {
    auto img = make_image(nullptr, "del");
    push_image("app", img, "v1");
    http->Put("/v2/app/manifests/v2", img.manifest, kOciManifest);

    auto by_tag = http->Delete("/v2/app/manifests/v1");
    ASSERT_TRUE(by_tag);
    EXPECT_EQ(by_tag->status, 202);
    EXPECT_EQ(http->Get("/v2/app/manifests/v1")->status, 404);
    EXPECT_EQ(http->Get("/v2/app/manifests/v2")->status, 200);

    auto by_digest = http->Delete("/v2/app/manifests/" + img.manifest_digest.str());
    EXPECT_EQ(by_digest->status, 202);
    EXPECT_EQ(http->Get("/v2/app/manifests/v2")->status, 404);
    auto again = http->Delete("/v2/app/manifests/" + img.manifest_digest.str());
    EXPECT_EQ(again->status, 404);
    EXPECT_EQ(error_code(again->body), "MANIFEST_UNKNOWN");
}

TEST_F(HttpTest, ConnectionStaysUsableAfterErrorsWithBodies) {
    // An error answered before the body was read must not leave the body on
    // the keep-alive connection for the next request to trip over.
    http->set_keep_alive(true);
    std::string body(200000, 'b');
    auto r1 = http->Put("/v2/UPPER/manifests/x", body, kOciManifest);
    ASSERT_TRUE(r1);
    EXPECT_EQ(error_code(r1->body), "NAME_INVALID");
    auto r2 = http->Patch("/v2/app/blobs/uploads/00000000-0000-4000-8000-000000000000", body,
                          "application/octet-stream");
    ASSERT_TRUE(r2);
    EXPECT_EQ(error_code(r2->body), "BLOB_UPLOAD_UNKNOWN");
    auto r3 = http->Get("/v2/");
    ASSERT_TRUE(r3);
    EXPECT_EQ(r3->status, 200);
}

}  // namespace
}  // namespace cascade::registry
