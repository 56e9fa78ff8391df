// Access control and TLS with the real binary and real clients: a daemon
// with `--config` (htpasswd of bcrypt users, a self-signed certificate,
// access rules), driven by skopeo, podman, curl and the cascade CLI.
//
//   public/*   anonymous pulls, alice pushes
//   team/*     bob pulls, alice pushes
//   alice is an admin (API changes); bob is not.
#include <gtest/gtest.h>
#include <unistd.h>

#include <future>
#include <nlohmann/json.hpp>

#include "oci/error.hpp"
#include "oci/fs.hpp"
#include "support.hpp"

using namespace cascade;
using namespace std::chrono_literals;
namespace stdfs = std::filesystem;

namespace {

std::string describe(const test::CommandResult& r) {
    return "exit " + std::to_string(r.exit_code) + "\nstdout:\n" + r.out + "\nstderr:\n" + r.err;
}

class Access : public ::testing::Test {
  protected:
    // An OCI layout with a busybox image "t", built once with umoci.
    static void SetUpTestSuite() {
        for (auto tool : {"skopeo", "umoci", "busybox", "curl", "openssl", "htpasswd"})
            if (!test::have_program(tool)) return;
        work_ = new fs::TempDir({}, "cascade-access-layout-");
        auto layout = work_->path() / "layout";
        auto bundle = work_->path() / "bundle";
        auto ok = [](const std::vector<std::string>& argv) {
            auto r = test::run(argv, 300s);
            if (r.exit_code != 0) throw Error(argv[0] + " failed: " + describe(r));
        };
        ok({"umoci", "init", "--layout", layout.string()});
        ok({"umoci", "new", "--image", layout.string() + ":t"});
        ok({"umoci", "unpack", "--image", layout.string() + ":t", bundle.string()});
        fs::make_dirs(bundle / "rootfs" / "bin");
        stdfs::copy_file("/bin/busybox", bundle / "rootfs" / "bin" / "busybox");
        ok({"umoci", "repack", "--image", layout.string() + ":t", bundle.string()});
        ok({"umoci", "config", "--image", layout.string() + ":t", "--config.cmd", "/bin/busybox"});
        ok({"umoci", "gc", "--layout", layout.string()});
        layout_ = new stdfs::path(layout);
    }
    static void TearDownTestSuite() {
        delete layout_;
        layout_ = nullptr;
        delete work_;
        work_ = nullptr;
    }

    void SetUp() override {
        if (!layout_)
            GTEST_SKIP() << "skopeo, umoci, busybox, curl, openssl or htpasswd is not installed";
        tls = test::make_self_signed_cert(tmp.path() / "tls");
        // containers/image reads <cert-dir>/ca.crt as a CA to trust.
        fs::make_dirs(cert_dir);
        stdfs::copy_file(tls.certificate, cert_dir / "ca.crt");
        test::make_htpasswd(tmp.path() / "htpasswd", {{"alice", "a-pass"}, {"bob", "b-pass"}});
        fs::write_file_atomic(config, R"(tls:
  certificate: tls/tls.crt
  key: tls/tls.key
auth:
  htpasswd: htpasswd
  realm: cascade-test
  admins: [alice]
access:
  - repository: "public/*"
    pull: [anonymous]
    push: [alice]
  - repository: "team/*"
    pull: [bob]
    push: [alice]
)");
        daemon =
            std::make_unique<test::Daemon>(state, 0, std::vector<std::string>{"--config", config});
    }
    void TearDown() override {
        daemon.reset();
        if (!state.empty()) test::cleanup_state_root(state);
    }

    std::string address() const { return daemon->address(); }
    std::string url(const std::string& path) const { return "https://" + address() + path; }
    std::string docker_ref(const std::string& name) const {
        return "docker://" + address() + "/" + name;
    }
    std::string oci_ref() const { return "oci:" + layout_->string() + ":t"; }

    test::CommandResult skopeo_push(const std::string& dest, const std::string& creds) {
        return test::run({"skopeo", "copy", "--dest-cert-dir", cert_dir.string(), "--dest-creds",
                          creds, oci_ref(), docker_ref(dest)},
                         300s);
    }
    // curl with the certificate as CA; prints the body, then the status.
    test::CommandResult curl(const std::vector<std::string>& args) {
        std::vector<std::string> argv{"curl", "-sS",           "--cacert", tls.certificate.string(),
                                      "-w",   "\n%{http_code}"};
        argv.insert(argv.end(), args.begin(), args.end());
        return test::run(argv, 60s);
    }
    static int status_of(const test::CommandResult& r) {
        auto nl = r.out.rfind('\n');
        return std::atoi(r.out.substr(nl == std::string::npos ? 0 : nl + 1).c_str());
    }
    static std::string body_of(const test::CommandResult& r) {
        auto nl = r.out.rfind('\n');
        return nl == std::string::npos ? "" : r.out.substr(0, nl);
    }
    static std::string error_code(const test::CommandResult& r) {
        auto j = nlohmann::json::parse(body_of(r), nullptr, false);
        if (j.is_discarded() || !j.contains("errors") || j["errors"].empty()) return "";
        return j["errors"][0].value("code", "");
    }
    test::CommandResult cascade(const std::vector<std::string>& args,
                                const std::map<std::string, std::string>& env) {
        std::vector<std::string> argv{test::cascade_binary(), "--host", url("")};
        argv.insert(argv.end(), args.begin(), args.end());
        return test::run(argv, 120s, env);
    }

    static fs::TempDir* work_;
    static stdfs::path* layout_;

    fs::TempDir tmp{{}, "cascade-access-"};
    stdfs::path state = tmp.path() / "state";
    stdfs::path config = tmp.path() / "cascade.yaml";
    stdfs::path cert_dir = tmp.path() / "certs.d";
    test::TlsFiles tls;
    std::unique_ptr<test::Daemon> daemon;
};

fs::TempDir* Access::work_ = nullptr;
stdfs::path* Access::layout_ = nullptr;

TEST_F(Access, SkopeoCopiesInWithCredentialsOverTls) {
    // TLS is really served, with this certificate, and /v2/ asks for a login.
    auto base = curl({"-i", url("/v2/")});
    ASSERT_EQ(base.exit_code, 0) << describe(base);
    EXPECT_EQ(status_of(base), 401);
    EXPECT_NE(base.out.find("Basic realm=\"cascade-test\""), std::string::npos) << base.out;
    auto plain = test::run({"curl", "-sS", "http://" + address() + "/v2/"}, 30s);
    EXPECT_NE(plain.exit_code, 0) << "plain HTTP must not be answered: " << plain.out;
    EXPECT_EQ(status_of(curl({"-u", "alice:a-pass", url("/v2/")})), 200);

    auto pushed = skopeo_push("team/app:v1", "alice:a-pass");
    ASSERT_EQ(pushed.exit_code, 0) << describe(pushed);
    auto inspect = test::run({"skopeo", "inspect", "--cert-dir", cert_dir.string(), "--creds",
                              "bob:b-pass", docker_ref("team/app:v1")},
                             120s);
    EXPECT_EQ(inspect.exit_code, 0) << describe(inspect);
    // And with verification off (what --dest-tls-verify=false users get).
    auto again = test::run({"skopeo", "copy", "--dest-tls-verify=false", "--dest-creds",
                            "alice:a-pass", oci_ref(), docker_ref("team/app:v2")},
                           300s);
    EXPECT_EQ(again.exit_code, 0) << describe(again);
}

TEST_F(Access, APullOnlyUserCannotPush) {
    ASSERT_EQ(skopeo_push("team/app:v1", "alice:a-pass").exit_code, 0);
    auto denied = skopeo_push("team/app:v2", "bob:b-pass");
    EXPECT_NE(denied.exit_code, 0) << describe(denied);
    EXPECT_NE(denied.err.find("denied"), std::string::npos) << denied.err;

    auto raw = curl({"-u", "bob:b-pass", "-X", "POST", url("/v2/team/app/blobs/uploads/")});
    EXPECT_EQ(status_of(raw), 403) << raw.out;
    EXPECT_EQ(error_code(raw), "DENIED") << raw.out;
    auto tags = curl({"-u", "bob:b-pass", url("/v2/team/app/tags/list")});
    EXPECT_EQ(status_of(tags), 200);
    EXPECT_EQ(nlohmann::json::parse(body_of(tags))["tags"], nlohmann::json({"v1"}));
}

TEST_F(Access, AnonymousPullsWhereARuleAllowsIt) {
    ASSERT_EQ(skopeo_push("public/app:v1", "alice:a-pass").exit_code, 0);
    ASSERT_EQ(skopeo_push("team/app:v1", "alice:a-pass").exit_code, 0);
    auto anon = test::run({"skopeo", "inspect", "--cert-dir", cert_dir.string(), "--no-creds",
                           docker_ref("public/app:v1")},
                          120s);
    EXPECT_EQ(anon.exit_code, 0) << describe(anon);
    auto out = tmp.path() / "pulled";
    auto copy = test::run({"skopeo", "copy", "--src-cert-dir", cert_dir.string(), "--src-no-creds",
                           docker_ref("public/app:v1"), "oci:" + out.string() + ":t"},
                          300s);
    EXPECT_EQ(copy.exit_code, 0) << describe(copy);

    auto team = test::run({"skopeo", "inspect", "--cert-dir", cert_dir.string(), "--no-creds",
                           docker_ref("team/app:v1")},
                          120s);
    EXPECT_NE(team.exit_code, 0) << describe(team);
    EXPECT_EQ(status_of(curl({url("/v2/team/app/manifests/v1")})), 401);
    EXPECT_EQ(status_of(curl({"-X", "POST", url("/v2/public/app/blobs/uploads/")})), 401);
}

TEST_F(Access, AWrongPasswordIs401) {
    auto raw = curl({"-i", "-u", "alice:wrong", url("/v2/")});
    EXPECT_EQ(status_of(raw), 401);
    EXPECT_EQ(error_code(test::CommandResult{0, raw.out.substr(raw.out.find("\r\n\r\n") + 4), ""}),
              "UNAUTHORIZED");
    EXPECT_NE(raw.out.find("Docker-Distribution-API-Version: registry/2.0"), std::string::npos);
    // Wrong credentials are refused even where anonymous may pull.
    EXPECT_EQ(status_of(curl({"-u", "alice:wrong", url("/v2/public/app/tags/list")})), 401);
    auto pushed = skopeo_push("team/app:v1", "alice:wrong");
    EXPECT_NE(pushed.exit_code, 0);
    EXPECT_NE(pushed.err.find("unauthorized"), std::string::npos) << pushed.err;
}

TEST_F(Access, PodmanLogsInPushesAndPulls) {
    if (!test::have_program("podman")) GTEST_SKIP() << "podman is not installed";
    // Podman with storage of its own, so nothing of the host's is touched.
    fs::TempDir podman_dir({}, "cascade-podman-");
    auto p = podman_dir.path();
    auto podman = [&](std::vector<std::string> args) {
        std::vector<std::string> argv{"podman",
                                      "--root",
                                      (p / "root").string(),
                                      "--runroot",
                                      (p / "run").string(),
                                      "--storage-driver",
                                      "vfs",
                                      "--tmpdir",
                                      (p / "tmp").string()};
        argv.insert(argv.end(), args.begin(), args.end());
        return test::run(argv, 300s, {{"REGISTRY_AUTH_FILE", (p / "none.json").string()}});
    };
    struct Cleanup {
        std::function<void()> fn;
        ~Cleanup() { fn(); }
    } cleanup{[&] { podman({"system", "reset", "--force"}); }};

    // No credentials unless a command names an --authfile.
    fs::write_file_atomic(p / "none.json", R"({"auths":{}})");
    std::string alice_auth = (p / "alice.json").string(), bob_auth = (p / "bob.json").string();
    auto login = podman({"login", "--authfile", alice_auth, "--cert-dir", cert_dir.string(), "-u",
                         "alice", "-p", "a-pass", address()});
    ASSERT_EQ(login.exit_code, 0) << describe(login);
    auto bad = podman({"login", "--authfile", (p / "x.json").string(), "--cert-dir",
                       cert_dir.string(), "-u", "alice", "-p", "nope", address()});
    EXPECT_NE(bad.exit_code, 0) << describe(bad);

    // podman pulls what skopeo pushed, and pushes it under another name.
    ASSERT_EQ(skopeo_push("team/base:v1", "alice:a-pass").exit_code, 0);
    std::string base = address() + "/team/base:v1", image = address() + "/team/podman:v1";
    auto pulled = podman({"pull", "--authfile", alice_auth, "--cert-dir", cert_dir.string(), base});
    ASSERT_EQ(pulled.exit_code, 0) << describe(pulled);
    ASSERT_EQ(podman({"tag", base, image}).exit_code, 0);
    auto push = podman({"push", "--authfile", alice_auth, "--cert-dir", cert_dir.string(), image});
    ASSERT_EQ(push.exit_code, 0) << describe(push);

    ASSERT_EQ(podman({"login", "--authfile", bob_auth, "--cert-dir", cert_dir.string(), "-u", "bob",
                      "-p", "b-pass", address()})
                  .exit_code,
              0);
    auto denied = podman({"push", "--authfile", bob_auth, "--cert-dir", cert_dir.string(), image,
                          "docker://" + address() + "/team/podman:bob"});
    EXPECT_NE(denied.exit_code, 0) << describe(denied);
    EXPECT_NE(denied.err.find("denied"), std::string::npos) << denied.err;

    ASSERT_EQ(podman({"rmi", "--force", image}).exit_code, 0);
    auto pull = podman({"pull", "--authfile", bob_auth, "--cert-dir", cert_dir.string(), image});
    EXPECT_EQ(pull.exit_code, 0) << describe(pull);
    auto exists = podman({"image", "exists", image});
    EXPECT_EQ(exists.exit_code, 0) << describe(exists);
}

TEST_F(Access, TheCliWorksOverHttpsWithCredentials) {
    ASSERT_EQ(skopeo_push("team/app:v1", "alice:a-pass").exit_code, 0);
    std::map<std::string, std::string> env{{"CASCADE_CA_CERT", tls.certificate.string()},
                                           {"CASCADE_USERNAME", "bob"},
                                           {"CASCADE_PASSWORD", "b-pass"}};
    auto get = cascade({"get", "imagestreams"}, env);
    EXPECT_EQ(get.exit_code, 0) << describe(get);
    EXPECT_NE(get.out.find("team/app"), std::string::npos) << get.out;

    // The same with options instead of the environment.
    auto opts = cascade({"--ca-cert", tls.certificate.string(), "--username", "alice", "--password",
                         "a-pass", "get", "imagestreams", "-o", "json"},
                        {});
    EXPECT_EQ(opts.exit_code, 0) << describe(opts);

    auto anonymous =
        cascade({"get", "imagestreams"}, {{"CASCADE_CA_CERT", env["CASCADE_CA_CERT"]}});
    EXPECT_EQ(anonymous.exit_code, 1) << describe(anonymous);
    EXPECT_NE(anonymous.err.find("authentication required"), std::string::npos) << anonymous.err;
    EXPECT_NE(anonymous.err.find("CASCADE_USERNAME"), std::string::npos) << anonymous.err;

    auto wrong = cascade({"get", "imagestreams"}, {{"CASCADE_CA_CERT", env["CASCADE_CA_CERT"]},
                                                   {"CASCADE_USERNAME", "bob"},
                                                   {"CASCADE_PASSWORD", "nope"}});
    EXPECT_EQ(wrong.exit_code, 1);
    EXPECT_NE(wrong.err.find("invalid username or password"), std::string::npos) << wrong.err;

    auto untrusted = cascade({"get", "imagestreams"},
                             {{"CASCADE_USERNAME", "bob"}, {"CASCADE_PASSWORD", "b-pass"}});
    EXPECT_EQ(untrusted.exit_code, 1);
    EXPECT_NE(untrusted.err.find("--ca-cert"), std::string::npos) << untrusted.err;

    // Changes through the API are for admins.
    auto objects = tmp.path() / "is.yaml";
    fs::write_file_atomic(objects,
                          "apiVersion: image.openshift.io/v1\nkind: ImageStream\nmetadata:\n"
                          "  name: from-cli\n");
    auto apply = cascade({"apply", "-f", objects.string()}, env);
    EXPECT_EQ(apply.exit_code, 1) << describe(apply);
    EXPECT_NE(apply.err.find("auth.admins"), std::string::npos) << apply.err;
    env["CASCADE_USERNAME"] = "alice";
    env["CASCADE_PASSWORD"] = "a-pass";
    apply = cascade({"apply", "-f", objects.string()}, env);
    EXPECT_EQ(apply.exit_code, 0) << describe(apply);
}

// `cascade serve` on a non-loopback address, without the fixture's config.
class Exposure : public ::testing::Test {
  protected:
    fs::TempDir tmp{{}, "cascade-exposure-"};
    stdfs::path state = tmp.path() / "state";

    test::CommandResult serve(const std::vector<std::string>& args) {
        std::vector<std::string> argv{test::cascade_binary(), "serve", "--root", state.string()};
        argv.insert(argv.end(), args.begin(), args.end());
        return test::run(argv, 60s);
    }
    void TearDown() override { test::cleanup_state_root(state); }
};

TEST_F(Exposure, RefusesANonLoopbackAddressWithoutAuthAndTls) {
    auto port = std::to_string(test::free_port());
    auto r = serve({"--listen", "0.0.0.0:" + port});
    EXPECT_NE(r.exit_code, 0) << describe(r);
    EXPECT_NE(r.err.find("refusing to listen on 0.0.0.0:" + port), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("authentication and TLS"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("--insecure"), std::string::npos) << r.err;

    // Authentication alone is not enough.
    if (test::have_program("htpasswd")) {
        test::make_htpasswd(tmp.path() / "htpasswd", {{"alice", "a-pass"}});
        fs::write_file_atomic(tmp.path() / "auth.yaml", "auth:\n  htpasswd: htpasswd\n");
        r = serve({"--listen", "[::]:" + port, "--config", (tmp.path() / "auth.yaml").string()});
        EXPECT_NE(r.exit_code, 0) << describe(r);
        EXPECT_NE(r.err.find("without TLS"), std::string::npos) << r.err;
    }
}

TEST_F(Exposure, LoopbackAddressesNeedNothing) {
    {
        test::Daemon d(state);  // 127.0.0.1, no configuration
        EXPECT_TRUE(test::port_open(d.port()));
    }
    // Others of 127.0.0.0/8, ::1 and localhost: each serves until the run's
    // timeout kills it (in parallel, each on a state root of its own).
    std::vector<std::future<test::CommandResult>> runs;
    int i = 0;
    for (std::string host : {"127.0.0.2", "[::1]", "localhost"}) {
        auto root = tmp.path() / ("state-" + std::to_string(i++));
        auto listen = host + ":" + std::to_string(test::free_port());
        runs.push_back(std::async(std::launch::async, [root, listen] {
            return test::run(
                {test::cascade_binary(), "serve", "--root", root.string(), "--listen", listen}, 8s);
        }));
    }
    for (auto& run : runs) {
        auto r = run.get();
        EXPECT_EQ(r.err.find("refusing"), std::string::npos) << describe(r);
        EXPECT_NE(r.err.find("Serving"), std::string::npos) << describe(r);
    }
    for (int k = 0; k < i; k++)
        test::cleanup_state_root(tmp.path() / ("state-" + std::to_string(k)));
}

TEST_F(Exposure, StartsOnANonLoopbackAddressWithInsecure) {
    auto port = test::free_port();
    // The fixture's own --listen comes first; the later one wins.
    test::Daemon d(state, port, {"--listen", "0.0.0.0:" + std::to_string(port), "--insecure"});
    EXPECT_TRUE(test::port_open(port));
    auto base = test::http_get(port, "/v2/");
    ASSERT_TRUE(base);
    EXPECT_EQ(base->status, 200);
}

TEST_F(Exposure, TlsFileProblemsAreNamed) {
    if (!test::have_program("openssl")) GTEST_SKIP() << "openssl is not installed";
    auto a = test::make_self_signed_cert(tmp.path() / "a");
    auto b = test::make_self_signed_cert(tmp.path() / "b");
    auto port = std::to_string(test::free_port());
    auto with_tls = [&](const std::string& cert, const std::string& key) {
        fs::write_file_atomic(tmp.path() / "tls.yaml",
                              "tls:\n  certificate: " + cert + "\n  key: " + key + "\n");
        return serve(
            {"--listen", "127.0.0.1:" + port, "--config", (tmp.path() / "tls.yaml").string()});
    };
    auto missing = with_tls((tmp.path() / "nope.crt").string(), a.key.string());
    EXPECT_NE(missing.exit_code, 0);
    EXPECT_NE(missing.err.find("nope.crt: no such file"), std::string::npos) << missing.err;

    auto mismatched = with_tls(a.certificate.string(), b.key.string());
    EXPECT_NE(mismatched.exit_code, 0);
    EXPECT_NE(mismatched.err.find("does not belong to"), std::string::npos) << mismatched.err;

    auto swapped = with_tls(a.key.string(), a.certificate.string());
    EXPECT_NE(swapped.exit_code, 0);
    EXPECT_NE(swapped.err.find("not a PEM certificate"), std::string::npos) << swapped.err;

    stdfs::permissions(a.key, stdfs::perms::none);
    if (access(a.key.c_str(), R_OK) != 0) {  // root reads anything
        auto unreadable = with_tls(a.certificate.string(), a.key.string());
        EXPECT_NE(unreadable.exit_code, 0);
        EXPECT_NE(unreadable.err.find(a.key.string()), std::string::npos) << unreadable.err;
    }
}

}  // namespace
