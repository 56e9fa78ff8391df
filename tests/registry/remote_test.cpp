// Importing from another registry: the Distribution client (registry/remote)
// and the importer against a real second registry, Debian's docker-registry
// (CNCF Distribution) on loopback — anonymous, with htpasswd basic auth, and
// behind a bearer-token front (the token service is the one fake: Distribution's
// own token auth needs a signing service that does not exist here).
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>

#include "distribution.hpp"
#include "oci/reference.hpp"
#include "registry/importer.hpp"
#include "registry/remote.hpp"
#include "registry_helpers.hpp"

namespace cascade::registry {
namespace {

using testing::StoreOnDisk;
namespace stdfs = std::filesystem;
using namespace std::chrono_literals;

bool have_tools() {
    return test::have_program("docker-registry") && test::have_program("skopeo") &&
           test::have_program("htpasswd");
}

#define REQUIRE_TOOLS() \
    if (!have_tools()) GTEST_SKIP() << "docker-registry, skopeo or htpasswd is not installed"

std::string auth_entry(const std::string& user, const std::string& password) {
    return test::base64(user + ":" + password);
}

// An httplib server on a free loopback port, running until destroyed.
class HttpServer {
  public:
    HttpServer() : port_(test::free_port()) {}
    ~HttpServer() {
        server.stop();
        if (thread_.joinable()) thread_.join();
    }
    void start() {
        if (!server.bind_to_port("127.0.0.1", port_))
            throw Error("cannot bind 127.0.0.1:" + std::to_string(port_));
        thread_ = std::thread([this] { server.listen_after_bind(); });
        test::eventually([this] { return server.is_running(); }, 10s);
    }
    std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
    httplib::Server server;

  private:
    uint16_t port_;
    std::thread thread_;
};

// Forwards /v2/ GET and HEAD requests to a registry; `check` may answer
// instead (returning true), `rewrite` may change a forwarded answer's body.
class Front : public HttpServer {
  public:
    using Check = std::function<bool(const httplib::Request&, httplib::Response&)>;
    using Rewrite = std::function<void(const httplib::Request&, std::string&)>;
    Front(std::string upstream, Check check = {}, Rewrite rewrite = {})
        : upstream_(std::move(upstream)), check_(std::move(check)), rewrite_(std::move(rewrite)) {
        server.Get(R"(/v2/.*)", [this](const httplib::Request& req, httplib::Response& res) {
            if (check_ && check_(req, res)) return;
            httplib::Client up("http://" + upstream_);
            httplib::Headers headers;
            if (req.has_header("Accept")) headers.emplace("Accept", req.get_header_value("Accept"));
            auto r = up.Get(req.path, headers);
            if (!r) {
                res.status = 502;
                return;
            }
            std::string body = r->body;
            if (rewrite_ && r->status == 200) rewrite_(req, body);
            res.status = r->status;
            for (const char* h : {"Docker-Content-Digest", "Docker-Distribution-Api-Version"})
                if (r->has_header(h)) res.set_header(h, r->get_header_value(h));
            res.set_content(body, r->get_header_value("Content-Type").c_str());
        });
        start();
    }

  private:
    std::string upstream_;
    Check check_;
    Rewrite rewrite_;
};

// A token service in the shape of Docker's: GET /token?service&scope with
// basic credentials answers {"token": …}.
class TokenService : public HttpServer {
  public:
    TokenService(std::string user, std::string password) {
        server.Get("/token", [this, user, password](const httplib::Request& req,
                                                    httplib::Response& res) {
            std::lock_guard lock(mu);
            requests.push_back(req.get_param_value("service") + " " + req.get_param_value("scope"));
            if (req.get_header_value("Authorization") !=
                httplib::make_basic_authentication_header(user, password).second) {
                res.status = 401;
                res.set_content(R"({"details":"incorrect username or password"})",
                                "application/json");
                return;
            }
            res.set_content(R"({"token":"tok-)" + token + R"(","expires_in":300})",
                            "application/json");
        });
        start();
    }
    std::mutex mu;
    std::vector<std::string> requests;
    std::string token = "s3cret-token";
};

class RemoteImport : public ::testing::Test {
  protected:
    fs::TempDir tmp{{}, "cascade-import-"};
    std::unique_ptr<StoreOnDisk> local;
    stdfs::path layout = tmp.path() / "layout";

    void SetUp() override { local = std::make_unique<StoreOnDisk>(tmp.path() / "store"); }

    Importer importer(const std::string& auth_json = {}) {
        auto file = tmp.path() / "auth.json";
        if (!auth_json.empty()) fs::write_file_atomic(file, auth_json);
        return Importer(local->store, file);
    }

    void push(const std::string& ref, const std::string& dest, const std::string& creds = {}) {
        auto r = test::push_image(layout, ref, dest, creds);
        ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    }

    ImportSpec spec(const std::string& from, const std::string& repo = "base",
                    const std::string& tag = "latest") {
        ImportSpec s;
        s.repository = repo;
        s.tag = tag;
        s.from = from;
        s.insecure = true;
        return s;
    }
};

TEST(AuthFile, ReadsContainersAuthEntries) {
    auto file = AuthFile::parse(R"({"auths": {
        "127.0.0.1:5000": {"auth": ")" +
                                auth_entry("alice", "pa:ss") + R"("},
        "127.0.0.1:5000/team/special": {"auth": ")" +
                                auth_entry("bob", "x") + R"("},
        "https://index.docker.io/v1/": {"auth": ")" +
                                auth_entry("hub", "h") + R"("},
        "quay.io": {"identitytoken": "ignored"}}})");
    auto a = file.find("127.0.0.1:5000", "team/app");
    ASSERT_TRUE(a);
    EXPECT_EQ(a->username, "alice");
    EXPECT_EQ(a->password, "pa:ss");  // only the first colon separates
    auto b = file.find("127.0.0.1:5000", "team/special/sub");
    ASSERT_TRUE(b);
    EXPECT_EQ(b->username, "bob");
    auto hub = file.find("docker.io", "library/httpd");
    ASSERT_TRUE(hub);
    EXPECT_EQ(hub->username, "hub");
    EXPECT_FALSE(file.find("quay.io", "x/y"));
    EXPECT_FALSE(file.find("127.0.0.2:5000", "team/app"));

    EXPECT_THROW(AuthFile::parse("not json"), Error);
    try {
        AuthFile::parse(R"({"auths": {"h": {"auth": "bm9jb2xvbg=="}}})", "/x/auth.json");
        FAIL() << "an auth without user:password must be rejected";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("/x/auth.json"), std::string::npos) << e.what();
    }
    EXPECT_TRUE(AuthFile::load("/nonexistent/auth.json").empty());
}

TEST(RemoteRegistryHost, DockerHubIsServedFromRegistry1) {
    EXPECT_EQ(registry_host("docker.io"), "registry-1.docker.io");
    EXPECT_EQ(registry_host("index.docker.io"), "registry-1.docker.io");
    EXPECT_EQ(registry_host("quay.io"), "quay.io");
    auto ref = oci::Reference::parse("httpd:2.4").normalized();
    EXPECT_EQ(ref.str(), "docker.io/library/httpd:2.4");
    EXPECT_EQ(registry_host(ref.domain), "registry-1.docker.io");
}

TEST_F(RemoteImport, AnonymousManifestIsCopiedAndTheTagMovesWithItsCause) {
    REQUIRE_TOOLS();
    test::DistributionRegistry remote;
    auto img = test::write_tiny_image(layout, "v1", "one");
    push("v1", remote.address() + "/team/base:1.0");
    std::string from = remote.address() + "/team/base:1.0";

    auto imp = importer();
    auto r = imp.import(spec(from));
    EXPECT_TRUE(r.moved);
    EXPECT_EQ(r.digest, img.manifest.digest) << "skopeo keeps the OCI manifest's bytes";
    EXPECT_EQ(r.generation, 1);
    EXPECT_EQ(r.blobs_fetched, 2);  // config and layer
    EXPECT_EQ(r.from, from);

    auto& store = local->store;
    EXPECT_EQ(store.tag_digest("base", "latest"), img.manifest.digest);
    auto history = store.tag_history("base", "latest");
    ASSERT_EQ(history.size(), 1u);
    EXPECT_EQ(history[0].cause, "import " + from);
    auto rec = store.resolve("base", "latest");
    ASSERT_TRUE(rec);
    EXPECT_EQ(store.manifest_bytes(*rec), img.manifest.bytes);
    EXPECT_EQ(local->blobs.read(img.config.digest), img.config.bytes);
    EXPECT_TRUE(local->blobs.has(img.layer));
    EXPECT_TRUE(store.repo_has_blob("base", img.layer));
    EXPECT_TRUE(store.repo_has_blob("base", img.config.digest));

    // By digest too: the reference's digest is what is verified and stored.
    auto by_digest = imp.import(
        spec(remote.address() + "/team/base@" + img.manifest.digest.str(), "pinned", "v1"));
    EXPECT_TRUE(by_digest.moved);
    EXPECT_EQ(by_digest.blobs_fetched, 0) << "blobs the store has are not fetched again";
    EXPECT_EQ(by_digest.blobs_present, 2);
}

TEST_F(RemoteImport, DockerSchema2ManifestIsCopiedAsSent) {
    REQUIRE_TOOLS();
    test::DistributionRegistry remote;
    test::write_tiny_image(layout, "v1", "docker");
    auto pushed = test::push_image(layout, "v1", remote.address() + "/d/s2:v1", {}, "v2s2");
    ASSERT_EQ(pushed.exit_code, 0) << pushed.err;

    auto r = importer().import(spec(remote.address() + "/d/s2:v1", "docker"));
    EXPECT_TRUE(r.moved);
    EXPECT_EQ(r.media_type, oci::media::kDockerManifest);
    auto rec = local->store.resolve("docker", "latest");
    ASSERT_TRUE(rec);
    EXPECT_EQ(rec->media_type, oci::media::kDockerManifest);
    auto m = oci::parse_manifest(local->store.manifest_bytes(*rec));
    EXPECT_EQ(m.config.media_type, oci::media::kDockerConfig);
    EXPECT_TRUE(local->blobs.has(m.config.digest));
    EXPECT_TRUE(local->blobs.has(m.layers.at(0).digest));
}

TEST_F(RemoteImport, IndexIsCopiedWithEveryChild) {
    REQUIRE_TOOLS();
    test::DistributionRegistry remote;
    auto index = test::write_tiny_index(layout, "multi", {{"amd64", "a"}, {"arm64", "b"}});
    push("multi", remote.address() + "/multi/arch:v1");

    auto imp = importer();
    auto r = imp.import(spec(remote.address() + "/multi/arch:v1", "multi"));
    EXPECT_TRUE(r.moved);
    EXPECT_EQ(r.digest, index.digest);
    EXPECT_EQ(r.media_type, oci::media::kImageIndex);
    EXPECT_EQ(r.manifests, 3);
    EXPECT_EQ(r.blobs_fetched, 4);

    auto& store = local->store;
    auto parsed = oci::parse_index(index.bytes);
    ASSERT_EQ(parsed.manifests.size(), 2u);
    for (const auto& child : parsed.manifests) {
        EXPECT_TRUE(store.has_manifest("multi", child.digest)) << child.digest.str();
        auto m = oci::parse_manifest(local->blobs.read(child.digest));
        EXPECT_TRUE(store.repo_has_blob("multi", m.config.digest));
        EXPECT_TRUE(local->blobs.has(m.layers.at(0).digest));
    }
    EXPECT_EQ(store.resolve("multi", "latest")->media_type, oci::media::kImageIndex);
}

TEST_F(RemoteImport, UnchangedRemoteMovesNothingAndAChangeMovesTheTag) {
    REQUIRE_TOOLS();
    test::DistributionRegistry remote;
    std::string from = remote.address() + "/lib/httpd:2.4";
    auto first = test::write_tiny_image(layout, "v1", "release 1");
    push("v1", from);
    auto imp = importer();
    ASSERT_TRUE(imp.import(spec(from)).moved);

    int events = 0;
    local->store.subscribe([&](const TagEvent&) { events++; });
    auto again = imp.import(spec(from));
    EXPECT_FALSE(again.moved);
    EXPECT_EQ(again.generation, 1);
    EXPECT_EQ(again.blobs_fetched, 0);
    EXPECT_EQ(local->store.tag_history("base", "latest").size(), 1u) << "no new generation";
    EXPECT_EQ(events, 0);

    auto second = test::write_tiny_image(layout, "v2", "release 2 (the fix)");
    push("v2", from);
    auto moved = imp.import(spec(from));
    EXPECT_TRUE(moved.moved);
    EXPECT_EQ(moved.previous, first.manifest.digest);
    EXPECT_EQ(moved.digest, second.manifest.digest);
    EXPECT_EQ(moved.generation, 2);
    EXPECT_EQ(events, 1);
    auto history = local->store.tag_history("base", "latest");
    ASSERT_EQ(history.size(), 2u);
    EXPECT_EQ(history[0].digest, second.manifest.digest);
    EXPECT_EQ(history[0].cause, "import " + from);
}

TEST_F(RemoteImport, BasicAuthUsesTheAuthFileAndRejectsAWrongPassword) {
    REQUIRE_TOOLS();
    test::DistributionRegistry remote("alice", "wonder");
    test::write_tiny_image(layout, "v1", "private");
    push("v1", remote.address() + "/private/app:v1", "alice:wonder");
    std::string from = remote.address() + "/private/app:v1";

    try {
        importer().import(spec(from));
        FAIL() << "an import without credentials must fail";
    } catch (const Error& e) {
        std::string m = e.what();
        EXPECT_NE(m.find("requires credentials"), std::string::npos) << m;
        EXPECT_NE(m.find(remote.address()), std::string::npos) << m;
    }

    auto wrong = R"({"auths": {")" + remote.address() + R"(": {"auth": ")" +
                 auth_entry("alice", "wrong") + R"("}}})";
    try {
        importer(wrong).import(spec(from));
        FAIL() << "a wrong password must fail";
    } catch (const Error& e) {
        std::string m = e.what();
        EXPECT_NE(m.find("rejected the credentials of user \"alice\""), std::string::npos) << m;
        EXPECT_NE(m.find("registry " + remote.address()), std::string::npos) << m;
        EXPECT_NE(m.find("private/app"), std::string::npos) << m;
    }
    EXPECT_FALSE(local->store.tag_digest("base", "latest"));

    auto right = R"({"auths": {")" + remote.address() + R"(": {"auth": ")" +
                 auth_entry("alice", "wonder") + R"("}}})";
    auto r = importer(right).import(spec(from));
    EXPECT_TRUE(r.moved);
    EXPECT_EQ(r.blobs_fetched, 2);
}

TEST_F(RemoteImport, BearerTokenIsFetchedWithTheCredentialsAndSent) {
    REQUIRE_TOOLS();
    test::DistributionRegistry backend;
    auto img = test::write_tiny_image(layout, "v1", "behind a token");
    push("v1", backend.address() + "/team/app:v1");

    TokenService tokens("carol", "tok-pass");
    std::atomic<int> refused{0}, accepted{0};
    Front front(backend.address(), [&](const httplib::Request& req, httplib::Response& res) {
        if (req.get_header_value("Authorization") == "Bearer tok-" + tokens.token) {
            accepted++;
            return false;  // forward
        }
        refused++;
        res.status = 401;
        res.set_header("WWW-Authenticate", "Bearer realm=\"http://" + tokens.address() +
                                               "/token\",service=\"fake-registry\",scope="
                                               "\"repository:team/app:pull\"");
        res.set_content(
            R"({"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]})",
            "application/json");
        return true;
    });
    std::string from = front.address() + "/team/app:v1";

    auto wrong = R"({"auths": {")" + front.address() + R"(": {"auth": ")" +
                 auth_entry("carol", "nope") + R"("}}})";
    try {
        importer(wrong).import(spec(from));
        FAIL() << "a token service that refuses the credentials must fail the import";
    } catch (const Error& e) {
        std::string m = e.what();
        EXPECT_NE(m.find("token service"), std::string::npos) << m;
        EXPECT_NE(m.find("carol"), std::string::npos) << m;
    }

    auto right = R"({"auths": {")" + front.address() + R"(": {"auth": ")" +
                 auth_entry("carol", "tok-pass") + R"("}}})";
    auto r = importer(right).import(spec(from));
    EXPECT_TRUE(r.moved);
    EXPECT_EQ(r.digest, img.manifest.digest);
    EXPECT_EQ(r.blobs_fetched, 2);
    EXPECT_GE(accepted.load(), 4);  // HEAD, GET manifest, two blobs
    {
        std::lock_guard lock(tokens.mu);
        ASSERT_FALSE(tokens.requests.empty());
        EXPECT_EQ(tokens.requests.back(), "fake-registry repository:team/app:pull");
        EXPECT_EQ(tokens.requests.size(), 2u) << "one failed request, then one token cached for "
                                                 "the whole import";
    }
}

TEST_F(RemoteImport, CorruptedBlobFailsTheImportAndLeavesNothingVisible) {
    REQUIRE_TOOLS();
    test::DistributionRegistry backend;
    std::string path = "/lib/base:1";
    auto good = test::write_tiny_image(layout, "v1", "good");
    push("v1", backend.address() + path);
    auto imp = importer();
    ASSERT_TRUE(imp.import(spec(backend.address() + path)).moved);

    // The remote moves on; a front corrupts every blob it serves.
    auto next = test::write_tiny_image(layout, "v2", "next");
    push("v2", backend.address() + path);
    Front corrupt(backend.address(), {}, [](const httplib::Request& req, std::string& body) {
        if (req.path.find("/blobs/") != std::string::npos && !body.empty()) body.back() ^= 0x20;
    });
    try {
        imp.import(spec(corrupt.address() + path));
        FAIL() << "a corrupted blob must fail the import";
    } catch (const Error& e) {
        std::string m = e.what();
        EXPECT_NE(m.find("digest"), std::string::npos) << m;
        EXPECT_NE(m.find(corrupt.address()), std::string::npos) << m;
    }
    auto& store = local->store;
    EXPECT_EQ(store.tag_digest("base", "latest"), good.manifest.digest) << "tag not moved";
    EXPECT_EQ(store.tag_history("base", "latest").size(), 1u);
    EXPECT_FALSE(store.has_manifest("base", next.manifest.digest));
    EXPECT_FALSE(local->blobs.has(next.config.digest)) << "a corrupted blob is discarded";
    EXPECT_FALSE(local->blobs.has(next.layer));
    EXPECT_TRUE(stdfs::is_empty(local->blobs.ingest_dir())) << "no half-written file left";
}

TEST_F(RemoteImport, PlainHttpNeedsInsecure) {
    REQUIRE_TOOLS();
    test::DistributionRegistry remote;
    test::write_tiny_image(layout, "v1", "x");
    push("v1", remote.address() + "/a/b:c");
    auto s = spec(remote.address() + "/a/b:c");
    s.insecure = false;
    auto imp = importer();
    try {
        imp.import(s);
        FAIL() << "http:// must not be used unless the import is insecure";
    } catch (const Error& e) {
        std::string m = e.what();
        EXPECT_NE(m.find("https://" + remote.address()), std::string::npos) << m;
        // Kept for the stream's status until an import of the tag succeeds.
        EXPECT_EQ(imp.last_error("base", "latest"), m);
    }
    EXPECT_FALSE(local->store.tag_digest("base", "latest"));
    s.insecure = true;
    imp.import(s);
    EXPECT_EQ(imp.last_error("base", "latest"), "");
}

TEST_F(RemoteImport, TlsIsVerifiedUnlessTheImportIsInsecure) {
    REQUIRE_TOOLS();
    test::DistributionRegistry remote({}, {}, /*tls=*/true);
    auto img = test::write_tiny_image(layout, "v1", "over tls");
    push("v1", remote.address() + "/secure/app:v1");
    auto s = spec(remote.address() + "/secure/app:v1");
    s.insecure = false;
    try {
        importer().import(s);
        FAIL() << "a self-signed certificate must not be accepted by default";
    } catch (const Error& e) {
        std::string m = e.what();
        EXPECT_NE(m.find("certificate"), std::string::npos) << m;
        EXPECT_NE(m.find("mark the import insecure"), std::string::npos) << m;
    }
    EXPECT_FALSE(local->store.tag_digest("base", "latest"));
    s.insecure = true;
    auto r = importer().import(s);
    EXPECT_TRUE(r.moved);
    EXPECT_EQ(r.digest, img.manifest.digest);
}

TEST_F(RemoteImport, UnknownTagNamesRegistryRepositoryAndStatus) {
    REQUIRE_TOOLS();
    test::DistributionRegistry remote;
    try {
        importer().import(spec(remote.address() + "/no/such:tag"));
        FAIL() << "an unknown reference must fail";
    } catch (const Error& e) {
        std::string m = e.what();
        EXPECT_NE(m.find("registry " + remote.address()), std::string::npos) << m;
        EXPECT_NE(m.find("repository no/such"), std::string::npos) << m;
        EXPECT_NE(m.find("404"), std::string::npos) << m;
    }
    // Nothing answers at all: a clear error, quickly.
    auto port = test::free_port();
    try {
        importer().import(spec("127.0.0.1:" + std::to_string(port) + "/x/y:z"));
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("does not answer"), std::string::npos) << e.what();
    }
}

TEST_F(RemoteImport, ScheduleReChecksScheduledTagsAndStops) {
    REQUIRE_TOOLS();
    test::DistributionRegistry remote;
    std::string from = remote.address() + "/lib/os:1";
    test::write_tiny_image(layout, "v1", "os 1");
    push("v1", from);
    auto imp = importer();
    ASSERT_TRUE(imp.import(spec(from)).moved);

    std::vector<std::string> log;
    std::mutex log_mu;
    imp.set_event_sink([&](const std::string& kind, const std::string& message) {
        std::lock_guard lock(log_mu);
        log.push_back(kind + " " + message);
    });
    auto scheduled = spec(from);
    scheduled.scheduled = true;
    auto unscheduled = spec(from, "other");
    imp.start_schedule([&] { return std::vector<ImportSpec>{scheduled, unscheduled}; }, 1s);

    auto second = test::write_tiny_image(layout, "v2", "os 2");
    push("v2", from);
    EXPECT_TRUE(test::eventually(
        [&] { return local->store.tag_digest("base", "latest") == second.manifest.digest; }, 30s))
        << "the schedule did not pick the change up";
    EXPECT_EQ(local->store.tag_history("base", "latest")[0].cause, "import " + from);
    EXPECT_FALSE(local->store.tag_digest("other", "latest")) << "unscheduled tags are left alone";

    // enqueue imports right away, also unscheduled tags.
    imp.enqueue(unscheduled);
    EXPECT_TRUE(test::eventually(
        [&] { return local->store.tag_digest("other", "latest") == second.manifest.digest; }, 30s));
    imp.stop();
    {
        std::lock_guard lock(log_mu);
        ASSERT_FALSE(log.empty());
        EXPECT_EQ(log[0].rfind("ImportMoved base:latest", 0), 0u) << log[0];
    }
}

}  // namespace
}  // namespace cascade::registry
