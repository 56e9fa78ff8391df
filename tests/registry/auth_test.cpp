// Access control: htpasswd files made by the real htpasswd tool, the access
// policy, the request → (repository, action) mapping, and the Authorizer in
// front of the real Distribution routes, driven over HTTP.
#include "registry/auth.hpp"

#include <gtest/gtest.h>

#include <fstream>

#include "oci/error.hpp"
#include "registry_helpers.hpp"

namespace cascade::registry {
namespace {

using testing::error_code;
using testing::make_image;
using testing::StoreOnDisk;

class HtpasswdTest : public ::testing::Test {
  protected:
    void SetUp() override {
        if (!test::have_program("htpasswd")) GTEST_SKIP() << "htpasswd is not installed";
    }
    fs::TempDir tmp;
    std::filesystem::path file = tmp.path() / "htpasswd";
};

TEST_F(HtpasswdTest, VerifiesBcryptEntries) {
    test::make_htpasswd(file, {{"alice", "wonderland"}, {"bob", "builder"}});
    Htpasswd h(file);
    EXPECT_TRUE(h.verify("alice", "wonderland"));
    EXPECT_TRUE(h.verify("alice", "wonderland")) << "a remembered verification still holds";
    EXPECT_TRUE(h.verify("bob", "builder"));
    EXPECT_FALSE(h.verify("alice", "builder"));
    EXPECT_FALSE(h.verify("alice", ""));
    EXPECT_FALSE(h.verify("carol", "wonderland"));
    EXPECT_TRUE(h.has_user("bob"));
    EXPECT_FALSE(h.has_user("carol"));
}

TEST_F(HtpasswdTest, RefusesEntriesThatAreNotBcryptNamingFileAndLine) {
    test::make_htpasswd(file, {{"alice", "wonderland"}});
    // A second user with an MD5 (apr1) entry, as plain `htpasswd -b` makes.
    auto r = test::run({"htpasswd", "-bm", file.string(), "bob", "builder"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    try {
        Htpasswd h(file);
        FAIL() << "an MD5 entry was accepted";
    } catch (const Error& e) {
        std::string what = e.what();
        EXPECT_NE(what.find(file.string() + ":2:"), std::string::npos) << what;
        EXPECT_NE(what.find("bob"), std::string::npos) << what;
        EXPECT_NE(what.find("bcrypt"), std::string::npos) << what;
        EXPECT_NE(what.find("htpasswd -B"), std::string::npos) << what;
    }
    for (auto flag : {"-bcs", "-bcp"}) {  // SHA-1 and plain text
        ASSERT_EQ(test::run({"htpasswd", flag, file.string(), "carol", "x"}).exit_code, 0);
        EXPECT_THROW(Htpasswd{file}, Error) << flag;
    }
}

TEST_F(HtpasswdTest, MissingFileAndMalformedLinesAreClearErrors) {
    try {
        Htpasswd h(file);
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find(file.string()), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("htpasswd -B -c"), std::string::npos) << e.what();
    }
    EXPECT_THROW(parse_htpasswd("# comment\n\nno-colon-here\n", "f"), Error);
    try {
        parse_htpasswd("# comment\n\nno-colon-here\n", "f");
    } catch (const Error& e) {
        EXPECT_EQ(std::string(e.what()).rfind("f:3:", 0), 0u) << e.what();
    }
    auto users = parse_htpasswd(
        "# users\n\nalice:$2y$05$GO0cWIkzNu8h2n65OaFq/.FikPmC25hp9YQD8UuvLbkDur21Xd94q\r\n", "f");
    EXPECT_EQ(users.size(), 1u);
    EXPECT_EQ(users.count("alice"), 1u);
}

TEST_F(HtpasswdTest, ReloadsWhenTheFileChanges) {
    test::make_htpasswd(file, {{"alice", "wonderland"}});
    Htpasswd h(file);
    std::vector<std::string> events;
    h.set_event_sink([&](const std::string& kind, const std::string&) { events.push_back(kind); });
    ASSERT_TRUE(h.verify("alice", "wonderland"));
    EXPECT_FALSE(h.verify("bob", "builder"));

    // New user, and alice's password changed: the remembered one must go.
    ASSERT_EQ(test::run({"htpasswd", "-Bb", file.string(), "bob", "builder"}).exit_code, 0);
    ASSERT_EQ(test::run({"htpasswd", "-Bb", file.string(), "alice", "looking-glass"}).exit_code, 0);
    EXPECT_TRUE(h.verify("bob", "builder"));
    EXPECT_FALSE(h.verify("alice", "wonderland"));
    EXPECT_TRUE(h.verify("alice", "looking-glass"));
    EXPECT_EQ(events, std::vector<std::string>{"HtpasswdReloaded"});

    // A change that does not load keeps the users we have and says why.
    {
        std::ofstream out(file, std::ios::app);
        out << "mallory:{SHA}notbcrypt=\n";
    }
    EXPECT_TRUE(h.verify("bob", "builder"));
    EXPECT_FALSE(h.has_user("mallory"));
    ASSERT_EQ(events.size(), 2u);
    EXPECT_EQ(events[1], "HtpasswdInvalid");
}

TEST(RepositoryPattern, GlobsMatchAcrossSlashes) {
    EXPECT_TRUE(repository_matches("*", "a/b/c"));
    EXPECT_TRUE(repository_matches("team-a/*", "team-a/app"));
    EXPECT_TRUE(repository_matches("team-a/*", "team-a/x/y"));
    EXPECT_FALSE(repository_matches("team-a/*", "team-b/app"));
    EXPECT_FALSE(repository_matches("team-a/*", "team-a"));
    EXPECT_TRUE(repository_matches("app-?", "app-a"));
    EXPECT_FALSE(repository_matches("app-?", "app-ab"));
    EXPECT_TRUE(repository_matches("httpd-base", "httpd-base"));
    EXPECT_FALSE(repository_matches("httpd-base", "httpd-base2"));
}

TEST(AccessPolicy, FirstMatchingRuleDecides) {
    AccessPolicy p({{"public/*", {"anonymous"}, {"alice"}},
                    {"team/secret", {"alice"}, {"alice"}},
                    {"team/*", {"*"}, {"alice", "carol"}}});
    // public/*: anyone pulls, only alice pushes.
    EXPECT_TRUE(p.allows("", "public/x", Action::Pull));
    EXPECT_TRUE(p.allows("bob", "public/x", Action::Pull));
    EXPECT_FALSE(p.allows("", "public/x", Action::Push));
    EXPECT_FALSE(p.allows("bob", "public/x", Action::Push));
    EXPECT_TRUE(p.allows("alice", "public/x", Action::Push));
    // team/secret matches before team/*: bob may not even pull it.
    EXPECT_FALSE(p.allows("bob", "team/secret", Action::Pull));
    EXPECT_TRUE(p.allows("alice", "team/secret", Action::Pull));
    // team/*: any authenticated user pulls; carol pushes; anonymous nothing.
    EXPECT_TRUE(p.allows("bob", "team/app", Action::Pull));
    EXPECT_FALSE(p.allows("", "team/app", Action::Pull));
    EXPECT_TRUE(p.allows("carol", "team/app", Action::Push));
    EXPECT_FALSE(p.allows("bob", "team/app", Action::Push));
    // No rule matches: denied, whoever asks.
    EXPECT_FALSE(p.allows("alice", "other", Action::Pull));
}

TEST(AccessPolicy, PushImpliesPullAndNoRulesMeansAuthenticatedUsers) {
    AccessPolicy drop({{"inbox/*", {}, {"bob"}}});
    EXPECT_TRUE(drop.allows("bob", "inbox/x", Action::Pull));
    EXPECT_FALSE(drop.allows("alice", "inbox/x", Action::Pull));

    AccessPolicy open;
    EXPECT_TRUE(open.allows("bob", "anything", Action::Push));
    EXPECT_TRUE(open.allows("bob", "anything", Action::Pull));
    EXPECT_FALSE(open.allows("", "anything", Action::Pull));
}

// An Authorizer over a real htpasswd file: alice (admin, pushes team/*), bob
// (pulls team/*), anonymous pulls public/*.
class AuthorizerTest : public ::testing::Test {
  protected:
    void SetUp() override {
        if (!test::have_program("htpasswd")) GTEST_SKIP() << "htpasswd is not installed";
        test::make_htpasswd(tmp.path() / "htpasswd", {{"alice", "a-pass"}, {"bob", "b-pass"}});
        auth = std::make_unique<Authorizer>(
            AuthSettings{tmp.path() / "htpasswd",
                         "test-realm",
                         {"alice"},
                         {{"public/*", {"anonymous"}, {"alice"}}, {"team/*", {"bob"}, {"alice"}}}});
    }
    static std::string basic(const std::string& user, const std::string& password) {
        static const char* abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        std::string in = user + ":" + password, out;
        for (size_t i = 0; i < in.size(); i += 3) {
            uint32_t n = static_cast<uint8_t>(in[i]) << 16;
            if (i + 1 < in.size()) n |= static_cast<uint8_t>(in[i + 1]) << 8;
            if (i + 2 < in.size()) n |= static_cast<uint8_t>(in[i + 2]);
            out += abc[(n >> 18) & 63];
            out += abc[(n >> 12) & 63];
            out += i + 1 < in.size() ? abc[(n >> 6) & 63] : '=';
            out += i + 2 < in.size() ? abc[n & 63] : '=';
        }
        return "Basic " + out;
    }
    Verdict::Kind kind(const std::string& method, const std::string& path, const Identity& who,
                       const std::multimap<std::string, std::string>& params = {}) {
        return auth->authorize(method, path, params, who).kind;
    }
    fs::TempDir tmp;
    std::unique_ptr<Authorizer> auth;
};

TEST_F(AuthorizerTest, AuthenticatesBasicCredentials) {
    auto alice = auth->authenticate(basic("alice", "a-pass"));
    EXPECT_TRUE(alice.authenticated);
    EXPECT_EQ(alice.user, "alice");
    EXPECT_TRUE(auth->authenticate(basic("alice", "wrong")).bad_credentials);
    EXPECT_TRUE(auth->authenticate(basic("nobody", "a-pass")).bad_credentials);
    EXPECT_TRUE(auth->authenticate("Bearer abc").bad_credentials);
    EXPECT_TRUE(auth->authenticate("Basic !!!").bad_credentials);
    auto none = auth->authenticate("");
    EXPECT_FALSE(none.authenticated);
    EXPECT_FALSE(none.bad_credentials);
    auto empty = auth->authenticate(basic("", ""));  // what skopeo sends without credentials
    EXPECT_FALSE(empty.authenticated);
    EXPECT_FALSE(empty.bad_credentials);
}

TEST_F(AuthorizerTest, MapsRequestsToRepositoryAndAction) {
    Identity anon, alice{"alice", true}, bob{"bob", true}, bad{"", false, true};
    // The base and the catalog need a login (the docker login flow).
    EXPECT_EQ(kind("GET", "/v2/", anon), Verdict::Unauthorized);
    EXPECT_EQ(kind("GET", "/v2", anon), Verdict::Unauthorized);
    EXPECT_EQ(kind("GET", "/v2/", bob), Verdict::Allow);
    EXPECT_EQ(kind("GET", "/v2/_catalog", anon), Verdict::Unauthorized);
    EXPECT_EQ(kind("GET", "/v2/_catalog", bob), Verdict::Allow);

    // Reads are pull, everything else is push; names may contain '/'.
    for (auto path :
         {"/v2/team/app/manifests/v1", "/v2/team/app/tags/list", "/v2/team/app/blobs/sha256:ab",
          "/v2/team/app/blobs/uploads/123", "/v2/team/app/referrers/sha256:ab",
          "/v2/team/app/_oci/tag-history/v1", "/v2/team/blobs/app/manifests/v1"}) {
        EXPECT_EQ(kind("GET", path, bob), Verdict::Allow) << path;
        EXPECT_EQ(kind("HEAD", path, bob), Verdict::Allow) << path;
        EXPECT_EQ(kind("GET", path, anon), Verdict::Unauthorized) << path;
    }
    for (auto [method, path] : std::vector<std::pair<std::string, std::string>>{
             {"PUT", "/v2/team/app/manifests/v1"},
             {"DELETE", "/v2/team/app/manifests/v1"},
             {"POST", "/v2/team/app/blobs/uploads/"},
             {"POST", "/v2/team/app/blobs/uploads"},
             {"PATCH", "/v2/team/app/blobs/uploads/123"},
             {"PUT", "/v2/team/app/blobs/uploads/123"},
             {"DELETE", "/v2/team/app/blobs/uploads/123"},
             {"DELETE", "/v2/team/app/blobs/sha256:ab"}}) {
        EXPECT_EQ(kind(method, path, alice), Verdict::Allow) << method << " " << path;
        EXPECT_EQ(kind(method, path, bob), Verdict::Denied) << method << " " << path;
        EXPECT_EQ(kind(method, path, anon), Verdict::Unauthorized) << method << " " << path;
    }
    // Greedy like the routes: the repository is the longest name before the endpoint.
    EXPECT_EQ(auth->authorize("GET", "/v2/team/app/blobs/uploads/1", {}, bob).repository,
              "team/app");
    EXPECT_EQ(auth->authorize("GET", "/v2/team/blobs/x/tags/list", {}, bob).repository,
              "team/blobs/x");
    EXPECT_EQ(auth->authorize("GET", "/v2/team/x/referrers/sha256:ab", {}, bob).repository,
              "team/x");
    auto v = auth->authorize("PUT", "/v2/team/app/manifests/v1", {}, bob);
    EXPECT_EQ(v.repository, "team/app");
    EXPECT_EQ(v.action, "push");
    EXPECT_NE(v.message.find("bob"), std::string::npos) << v.message;

    // Anonymous pull where a rule allows it; wrong credentials are never
    // taken for anonymous.
    EXPECT_EQ(kind("GET", "/v2/public/x/manifests/v1", anon), Verdict::Allow);
    EXPECT_EQ(kind("GET", "/v2/public/x/manifests/v1", bad), Verdict::Unauthorized);
    EXPECT_EQ(kind("PUT", "/v2/public/x/manifests/v1", anon), Verdict::Unauthorized);
    // No rule matches: denied for a user.
    EXPECT_EQ(kind("GET", "/v2/elsewhere/manifests/v1", alice), Verdict::Denied);
    // Not a route: a login is enough (the routes answer 404).
    EXPECT_EQ(kind("GET", "/v2/nothing-here", anon), Verdict::Unauthorized);
    EXPECT_EQ(kind("GET", "/v2/nothing-here", bob), Verdict::Allow);
}

TEST_F(AuthorizerTest, ApiReadsNeedALoginAndChangesAnAdmin) {
    Identity anon, alice{"alice", true}, bob{"bob", true};
    EXPECT_EQ(kind("GET", "/api/v1/imagestreams", anon), Verdict::Unauthorized);
    EXPECT_EQ(kind("GET", "/api/v1/imagestreams", bob), Verdict::Allow);
    EXPECT_EQ(kind("POST", "/api/v1/apply", bob), Verdict::Denied);
    EXPECT_EQ(kind("POST", "/api/v1/apply", anon), Verdict::Unauthorized);
    EXPECT_EQ(kind("POST", "/api/v1/apply", alice), Verdict::Allow);
    EXPECT_EQ(kind("DELETE", "/api/v1/deployments/x", bob), Verdict::Denied);
    EXPECT_EQ(kind("POST", "/api/v1/build", alice), Verdict::Allow);
    EXPECT_EQ(kind("GET", "/", anon), Verdict::Unauthorized);
}

// Build webhooks carry their secret in the URL (the API checks it): no login.
TEST_F(AuthorizerTest, BuildWebhooksNeedNoLogin) {
    Identity anon, bob{"bob", true};
    EXPECT_EQ(kind("POST", "/api/v1/buildconfigs/app/webhooks/s3cret/generic", anon),
              Verdict::Allow);
    EXPECT_EQ(kind("POST", "/api/v1/buildconfigs/app/webhooks/s3cret/github", bob), Verdict::Allow);
    EXPECT_EQ(
        kind("POST",
             "/apis/build.openshift.io/v1/namespaces/ns/buildconfigs/app/webhooks/s/generic", anon),
        Verdict::Allow);
    // Anything else under buildconfigs still needs an admin.
    EXPECT_EQ(kind("POST", "/api/v1/buildconfigs/app/instantiate", anon), Verdict::Unauthorized);
    EXPECT_EQ(kind("POST", "/api/v1/buildconfigs/app/webhooks/generic", anon),
              Verdict::Unauthorized);
    EXPECT_EQ(kind("POST", "/api/v1/buildconfigs/app/webhooks/s/../../apply/generic", anon),
              Verdict::Unauthorized);
    EXPECT_EQ(kind("GET", "/api/v1/buildconfigs/app/webhooks/s3cret/generic", anon),
              Verdict::Unauthorized);
}

TEST_F(AuthorizerTest, MountNeedsPullOnTheSource) {
    Identity alice{"alice", true}, bob{"bob", true};
    auto mount = [&](const Identity& who, const std::multimap<std::string, std::string>& query) {
        return auth->authorize("POST", "/v2/team/app/blobs/uploads/", query, who);
    };
    EXPECT_FALSE(mount(alice, {{"mount", "sha256:aa"}, {"from", "public/base"}}).drop_mount);
    auto elsewhere = mount(alice, {{"mount", "sha256:aa"}, {"from", "elsewhere"}});
    EXPECT_TRUE(elsewhere.drop_mount) << "no pull on the source";
    EXPECT_EQ(elsewhere.kind, Verdict::Allow) << "a plain upload instead";
    EXPECT_TRUE(mount(alice, {{"mount", "sha256:aa"}}).drop_mount) << "no source named";
    EXPECT_FALSE(mount(alice, {}).drop_mount);
    EXPECT_EQ(mount(bob, {{"mount", "sha256:aa"}, {"from", "team/app"}}).kind, Verdict::Denied);
}

// The Authorizer in front of the real routes on an httplib server.
class AuthHttpTest : public AuthorizerTest {
  protected:
    void SetUp() override {
        AuthorizerTest::SetUp();
        if (IsSkipped()) return;
        register_distribution_routes(server, s.store);
        auth->set_repository_lister([this] { return s.store.repositories(); });
        auth->install(server);
        ASSERT_TRUE(server.bind_to_port("127.0.0.1", port));
        thread = std::thread([this] { server.listen_after_bind(); });
        test::eventually([this] { return server.is_running(); }, std::chrono::seconds(10));
    }
    void TearDown() override {
        if (thread.joinable()) {
            server.stop();
            thread.join();
        }
    }
    std::unique_ptr<httplib::Client> client(const std::string& user = "",
                                            const std::string& password = "") {
        auto c = std::make_unique<httplib::Client>("127.0.0.1", port);
        if (!user.empty()) c->set_basic_auth(user, password);
        c->set_read_timeout(30, 0);
        return c;
    }
    // Pushes blob + manifest as `user`; returns the manifest PUT's status.
    int push(httplib::Client& c, const std::string& repo, const std::string& tag,
             const testing::SampleImage& img) {
        for (const auto* data : {&img.config, &img.layer}) {
            auto d = oci::Digest::sha256_of(*data);
            auto r = c.Post("/v2/" + repo + "/blobs/uploads/?digest=" + d.str(), *data,
                            "application/octet-stream");
            if (!r) return -1;
            if (r->status != 201) return r->status;
        }
        auto r = c.Put("/v2/" + repo + "/manifests/" + tag, img.manifest,
                       std::string(oci::media::kImageManifest));
        return r ? r->status : -1;
    }

    StoreOnDisk s{tmp.path() / "root"};
    httplib::Server server;
    uint16_t port = test::free_port();
    std::thread thread;
};

TEST_F(AuthHttpTest, LoginFlowAnswers401WithABasicChallenge) {
    auto r = client()->Get("/v2/");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 401);
    EXPECT_EQ(r->get_header_value("WWW-Authenticate"),
              "Basic realm=\"test-realm\", charset=\"UTF-8\"");
    EXPECT_EQ(r->get_header_value("Docker-Distribution-API-Version"), "registry/2.0");
    EXPECT_EQ(error_code(r->body), "UNAUTHORIZED");

    r = client("alice", "a-pass")->Get("/v2/");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);

    r = client("alice", "wrong")->Get("/v2/");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 401);
    EXPECT_EQ(error_code(r->body), "UNAUTHORIZED");
}

TEST_F(AuthHttpTest, PullersCannotPushAndPushersCan) {
    auto img = make_image(nullptr, "one");
    auto alice = client("alice", "a-pass");
    auto bob = client("bob", "b-pass");
    EXPECT_EQ(push(*alice, "team/app", "v1", img), 201);
    EXPECT_EQ(push(*bob, "team/app", "v2", make_image(nullptr, "two")), 403);

    // The same connection carries on after a refused request with a body.
    auto denied = bob->Put("/v2/team/app/manifests/v3", img.manifest,
                           std::string(oci::media::kImageManifest));
    ASSERT_TRUE(denied);
    EXPECT_EQ(denied->status, 403);
    EXPECT_EQ(error_code(denied->body), "DENIED");
    EXPECT_EQ(denied->get_header_value("Docker-Distribution-API-Version"), "registry/2.0");
    auto j = nlohmann::json::parse(denied->body);
    EXPECT_EQ(j["errors"][0]["detail"][0]["Name"], "team/app");
    EXPECT_EQ(j["errors"][0]["detail"][0]["Action"], "push");
    auto pulled = bob->Get("/v2/team/app/manifests/v1");
    ASSERT_TRUE(pulled);
    EXPECT_EQ(pulled->status, 200);
    EXPECT_EQ(pulled->body, img.manifest);
    EXPECT_EQ(s.store.tags("team/app"), std::vector<std::string>{"v1"});

    // Anonymous: nothing in team/*, pull in public/*.
    EXPECT_EQ(client()->Get("/v2/team/app/manifests/v1")->status, 401);
    EXPECT_EQ(push(*alice, "public/app", "v1", img), 201);
    EXPECT_EQ(client()->Get("/v2/public/app/manifests/v1")->status, 200);
    EXPECT_EQ(client()->Head("/v2/public/app/blobs/" + img.layer_digest.str())->status, 200);
    EXPECT_EQ(push(*client(), "public/app", "v2", img), 401);
}

TEST_F(AuthHttpTest, CatalogListsWhatTheUserMayPull) {
    auto alice = client("alice", "a-pass");
    ASSERT_EQ(push(*alice, "team/app", "v1", make_image(nullptr, "1")), 201);
    ASSERT_EQ(push(*alice, "public/app", "v1", make_image(nullptr, "2")), 201);
    // A repository no rule covers (written in-process, as the builder does).
    auto img = make_image(&s.blobs, "3");
    s.store.put_manifest("hidden", img.manifest, std::string(oci::media::kImageManifest), "v1",
                         "build");

    auto list = [&](httplib::Client& c, const std::string& query = "") {
        auto r = c.Get("/v2/_catalog" + query);
        EXPECT_TRUE(r);
        EXPECT_EQ(r->status, 200) << r->body;
        return std::make_pair(nlohmann::json::parse(r->body)["repositories"],
                              r->get_header_value("Link"));
    };
    EXPECT_EQ(list(*alice).first, nlohmann::json({"public/app", "team/app"}));
    EXPECT_EQ(list(*client("bob", "b-pass")).first, nlohmann::json({"public/app", "team/app"}));
    auto [page, link] = list(*alice, "?n=1");
    EXPECT_EQ(page, nlohmann::json({"public/app"}));
    EXPECT_EQ(link, "</v2/_catalog?n=1&last=public/app>; rel=\"next\"");
    EXPECT_EQ(list(*alice, "?n=1&last=public/app").first, nlohmann::json({"team/app"}));
    EXPECT_EQ(client()->Get("/v2/_catalog")->status, 401);
}

TEST_F(AuthHttpTest, BlobsAndMountsStayInsideTheirRepository) {
    auto alice = client("alice", "a-pass");
    auto secret = make_image(nullptr, "secret");
    ASSERT_EQ(push(*alice, "team/app", "v1", secret), 201);
    // Anonymous may pull public/*, but not team/app's layer through it (the
    // routes' part, checked here with access control on).
    auto r = client()->Get("/v2/public/app/blobs/" + secret.layer_digest.str());
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 404);
    EXPECT_EQ(error_code(r->body), "BLOB_UNKNOWN");

    // Mounting from a repository the user may pull: mounted (201).
    r = alice->Post(
        "/v2/public/app/blobs/uploads/?mount=" + secret.layer_digest.str() + "&from=team/app", "",
        "application/octet-stream");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 201);
    EXPECT_TRUE(s.store.repo_has_blob("public/app", secret.layer_digest));

    // A blob that is not in `from`: a plain upload session instead (202).
    r = alice->Post(
        "/v2/public/other/blobs/uploads/?mount=" + secret.config_digest.str() + "&from=public/app",
        "", "application/octet-stream");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 202);
    EXPECT_FALSE(s.store.repo_has_blob("public/other", secret.config_digest));

    // From a repository no rule lets alice pull: a plain upload session too.
    auto hidden = make_image(&s.blobs, "hidden");
    s.store.link_blob("hidden", hidden.layer_digest);
    r = alice->Post(
        "/v2/public/app/blobs/uploads/?mount=" + hidden.layer_digest.str() + "&from=hidden", "",
        "application/octet-stream");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 202);
    EXPECT_FALSE(s.store.repo_has_blob("public/app", hidden.layer_digest));
}

TEST_F(AuthHttpTest, HtpasswdChangesApplyWithoutARestart) {
    EXPECT_EQ(client("carol", "c-pass")->Get("/v2/")->status, 401);
    ASSERT_EQ(test::run({"htpasswd", "-Bb", (tmp.path() / "htpasswd").string(), "carol", "c-pass"})
                  .exit_code,
              0);
    EXPECT_EQ(client("carol", "c-pass")->Get("/v2/")->status, 200);
    ASSERT_EQ(test::run({"htpasswd", "-D", (tmp.path() / "htpasswd").string(), "carol"}).exit_code,
              0);
    EXPECT_EQ(client("carol", "c-pass")->Get("/v2/")->status, 401);
}

}  // namespace
}  // namespace cascade::registry
