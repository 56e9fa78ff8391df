// Distribution Spec: error codes, repository name grammar, methods, and
// client input that must never reach outside the state root.
#include <gtest/gtest.h>

#include <filesystem>

#include "spec_support.hpp"

namespace cascade::registry {
namespace {

using testing::is_spec_error;
using testing::kOciManifestType;
using testing::kOctets;
using testing::make_image;
using testing::SpecTest;

using SpecErrors = SpecTest;

TEST_F(SpecErrors, EveryCodeWithItsStatus) {
    auto img = make_image(nullptr, "e");
    push_image("app", img, "v1");
    auto upload = http->Post("/v2/app/blobs/uploads/")->get_header_value("Location");
    auto none = oci::Digest::sha256_of("none").str();

    EXPECT_TRUE(is_spec_error(http->Get("/v2/app/blobs/" + none), 404, "BLOB_UNKNOWN"));
    EXPECT_TRUE(is_spec_error(http->Patch(upload, {{"Content-Range", "5-9"}}, "12345", kOctets),
                              416, "BLOB_UPLOAD_INVALID"));
    EXPECT_TRUE(
        is_spec_error(http->Get("/v2/app/blobs/uploads/00000000-0000-4000-8000-000000000000"), 404,
                      "BLOB_UPLOAD_UNKNOWN"));
    EXPECT_TRUE(
        is_spec_error(http->Put(upload + "?digest=" + none, "x", kOctets), 400, "DIGEST_INVALID"));
    auto missing = make_image(nullptr, "missing");
    EXPECT_TRUE(is_spec_error(put_manifest("app", "v2", missing.manifest, kOciManifestType), 400,
                              "MANIFEST_BLOB_UNKNOWN"));
    EXPECT_TRUE(
        is_spec_error(put_manifest("app", "v2", "{", kOciManifestType), 400, "MANIFEST_INVALID"));
    EXPECT_TRUE(is_spec_error(http->Get("/v2/app/manifests/v9"), 404, "MANIFEST_UNKNOWN"));
    EXPECT_TRUE(is_spec_error(http->Get("/v2/App/manifests/v1"), 400, "NAME_INVALID"));
    EXPECT_TRUE(is_spec_error(http->Get("/v2/nobody/tags/list"), 404, "NAME_UNKNOWN"));
    auto upload2 = http->Post("/v2/app/blobs/uploads/")->get_header_value("Location");
    EXPECT_TRUE(is_spec_error(http->Patch(upload2, {{"Content-Range", "0-99"}}, "short", kOctets),
                              400, "SIZE_INVALID"));
    EXPECT_TRUE(is_spec_error(
        put_manifest("app", "huge", std::string((4 << 20) + 10, ' '), kOciManifestType), 413,
        "SIZE_INVALID"));
    EXPECT_TRUE(is_spec_error(http->Post("/v2/app/manifests/v1"), 405, "UNSUPPORTED"));
}

TEST_F(SpecErrors, RepositoryNameGrammar) {
    std::vector<std::string> invalid = {
        "UPPER", "a//b", "a/", "-a", "a-",   "a..b",  "a/../b", "a.-b",
        "a___b", "_a",   "a_", ".a", "a/.b", "a%20b", "a b",    std::string(256, 'a'),
    };
    for (const auto& name : invalid) {
        auto r = http->Get("/v2/" + name + "/tags/list");
        ASSERT_TRUE(r) << name;
        // A name the server cannot even route is a 404, never a success.
        if (r->status == 404) continue;
        EXPECT_TRUE(is_spec_error(r, 400, "NAME_INVALID")) << name;
    }
    for (const auto& name : invalid) {
        auto r = http->Post("/v2/" + name + "/blobs/uploads/");
        ASSERT_TRUE(r) << name;
        EXPECT_NE(r->status, 202) << name;
    }
    std::vector<std::string> valid = {
        "a", "a-b", "a--b", "a__b", "a_b", "a.b", "a/b", "a/b/c-d.e_f", std::string(255, 'a')};
    for (const auto& name : valid) {
        auto r = http->Get("/v2/" + name + "/tags/list");
        EXPECT_TRUE(is_spec_error(r, 404, "NAME_UNKNOWN")) << name;
        EXPECT_EQ(http->Post("/v2/" + name + "/blobs/uploads/")->status, 202) << name;
    }
    EXPECT_TRUE(s->store.repositories().empty()) << "starting an upload creates no repository";
}

TEST_F(SpecErrors, ClientInputNeverBecomesAPathOutsideTheRoot) {
    // A file next to the state root that a traversal would reach.
    auto outside = tmp.path().parent_path() / ("victim-" + tmp.path().filename().string());
    fs::write_file_atomic(outside, "precious");
    struct Guard {
        std::filesystem::path p;
        ~Guard() { std::filesystem::remove(p); }
    } guard{outside};
    std::string up = "../../../" + outside.filename().string();
    std::vector<std::string> ids = {up,
                                    "%2e%2e%2f%2e%2e%2f" + outside.filename().string(),
                                    "..",
                                    ".",
                                    "upload-x",
                                    "00000000-0000-4000-8000-00000000000G",
                                    "00000000-0000-4000-8000-000000000000/../x"};
    for (const auto& id : ids) {
        std::string location = "/v2/app/blobs/uploads/" + id;
        std::vector<httplib::Result> results;
        results.push_back(http->Get(location));
        results.push_back(http->Delete(location));
        results.push_back(http->Patch(location, "data", kOctets));
        results.push_back(http->Put(location + "?digest=" + oci::Digest::sha256_of("data").str(),
                                    "data", kOctets));
        for (const auto& r : results) {
            ASSERT_TRUE(r) << id;
            EXPECT_GE(r->status, 400) << id;
            EXPECT_LT(r->status, 500) << id << ": " << r->body;
        }
    }
    for (std::string digest : {"sha256:../../" + outside.filename().string(),
                               std::string("sha256:..%2f..%2fetc%2fpasswd"), std::string("..")}) {
        auto r = http->Get("/v2/app/blobs/" + digest);
        ASSERT_TRUE(r);
        EXPECT_GE(r->status, 400) << digest;
        EXPECT_LT(r->status, 500) << digest;
        EXPECT_EQ(http->Delete("/v2/app/blobs/" + digest)->status / 100, 4) << digest;
    }
    EXPECT_EQ(fs::read_file(outside), "precious");
    EXPECT_TRUE(std::filesystem::is_empty(s->blobs.ingest_dir()));
}

TEST_F(SpecErrors, MethodsNotAllowedAndUnknownEndpoints) {
    struct Case {
        std::string method, path;
    };
    for (const auto& c : {Case{"POST", "/v2/app/manifests/v1"}, Case{"PATCH", "/v2/app/tags/list"},
                          Case{"DELETE", "/v2/app/tags/list"}, Case{"PUT", "/v2/app/blobs/x"},
                          Case{"DELETE", "/v2/_catalog"}, Case{"POST", "/v2/app/referrers/x"},
                          Case{"GET", "/v2/app/blobs/uploads/"}}) {
        httplib::Request req;
        req.method = c.method;
        req.path = c.path;
        auto r = http->send(req);
        EXPECT_TRUE(is_spec_error(r, 405, "UNSUPPORTED")) << c.method << " " << c.path;
        if (r) {
            EXPECT_FALSE(r->get_header_value("Allow").empty()) << c.method << " " << c.path;
        }
    }
    EXPECT_TRUE(is_spec_error(http->Get("/v2/app/nonsense"), 404, "UNSUPPORTED"));
    EXPECT_TRUE(is_spec_error(http->Post("/v2/nonsense"), 404, "UNSUPPORTED"));
}

TEST_F(SpecErrors, ErrorsWithUnreadBodiesKeepTheConnectionUsable) {
    http->set_keep_alive(true);
    std::string body(300000, 'b');
    EXPECT_TRUE(is_spec_error(http->Put("/v2/UP/manifests/x", body, kOciManifestType), 400,
                              "NAME_INVALID"));
    EXPECT_TRUE(
        is_spec_error(put_manifest("app", "big", std::string(5 << 20, ' '), kOciManifestType), 413,
                      "SIZE_INVALID"));
    EXPECT_TRUE(
        is_spec_error(http->Post("/v2/app/manifests/x", body, kOctets), 405, "UNSUPPORTED"));
    auto r = http->Get("/v2/");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
}

}  // namespace
}  // namespace cascade::registry
