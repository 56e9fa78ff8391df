// `cascade serve --config FILE`: every section parses, relative paths resolve
// against the file's directory, and every mistake names the file and the key.
#include "cli/config.hpp"

#include <gtest/gtest.h>

#include "oci/error.hpp"
#include "oci/fs.hpp"

using namespace cascade;

namespace {

class ConfigTest : public ::testing::Test {
  protected:
    fs::TempDir tmp;
    std::filesystem::path file = tmp.path() / "cascade.yaml";

    cli::ServerConfig load(const std::string& text) {
        fs::write_file_atomic(file, text);
        return cli::load_server_config(file);
    }
    // The error message of loading `text`, or "" when it loaded.
    std::string error_of(const std::string& text) {
        try {
            load(text);
        } catch (const Error& e) {
            return e.what();
        }
        return "";
    }
};

TEST_F(ConfigTest, EmptyFileMeansDefaults) {
    auto c = load("");
    EXPECT_FALSE(c.listen);
    EXPECT_FALSE(c.root);
    EXPECT_FALSE(c.insecure);
    EXPECT_FALSE(c.tls());
    EXPECT_FALSE(c.auth());
    EXPECT_EQ(c.realm, "cascade");
    EXPECT_TRUE(c.access.empty());
    EXPECT_EQ(c.gc_keep_generations, 5);
}

TEST_F(ConfigTest, AccessControlAndTlsSections) {
    auto c = load(R"(
listen: 0.0.0.0:5443
insecure: false
tls:
  certificate: certs/tls.crt
  key: /etc/cascade/tls.key
auth:
  htpasswd: htpasswd
  realm: my registry
  admins: [alice, carol]
access:
  - repository: "public/*"
    pull: anonymous
    push: [alice]
  - repository: "team-a/*"
    pull: ["*"]
  - push: [alice]
)");
    EXPECT_EQ(c.listen, "0.0.0.0:5443");
    EXPECT_TRUE(c.tls());
    EXPECT_TRUE(c.auth());
    EXPECT_EQ(c.tls_certificate, tmp.path() / "certs/tls.crt") << "relative to the file";
    EXPECT_EQ(c.tls_key, "/etc/cascade/tls.key");
    EXPECT_EQ(c.htpasswd, tmp.path() / "htpasswd");
    EXPECT_EQ(c.realm, "my registry");
    EXPECT_EQ(c.admins, (std::vector<std::string>{"alice", "carol"}));
    ASSERT_EQ(c.access.size(), 3u);
    EXPECT_EQ(c.access[0].repository, "public/*");
    EXPECT_EQ(c.access[0].pull, std::vector<std::string>{"anonymous"}) << "a scalar is a list";
    EXPECT_EQ(c.access[0].push, std::vector<std::string>{"alice"});
    EXPECT_EQ(c.access[1].pull, std::vector<std::string>{"*"});
    EXPECT_TRUE(c.access[1].push.empty());
    EXPECT_EQ(c.access[2].repository, "*") << "a rule without a pattern covers everything";
}

TEST_F(ConfigTest, InsecureIsABoolean) {
    EXPECT_TRUE(load("insecure: true\n").insecure);
    auto e = error_of("insecure: maybe\n");
    EXPECT_NE(e.find("insecure"), std::string::npos) << e;
    EXPECT_NE(e.find("true or false"), std::string::npos) << e;
}

TEST_F(ConfigTest, MistakesNameTheFileAndTheKey) {
    auto expect_error = [&](const std::string& text, const std::string& key) {
        auto e = error_of(text);
        EXPECT_EQ(e.rfind(file.string() + ":", 0), 0u) << text << " → " << e;
        EXPECT_NE(e.find(key), std::string::npos) << text << " → " << e;
    };
    // A typo must not silently disable auth.
    expect_error("auth:\n  htpasswd: h\n  admin: [alice]\n", "auth.admin");
    expect_error("auht:\n  htpasswd: h\n", "auht");
    expect_error("tls:\n  certificate: c.crt\n", "needs both certificate and key");
    expect_error("tls:\n  certificate: c.crt\n  key: \"\"\n", "tls.key");
    expect_error("auth:\n  realm: x\n", "needs htpasswd");
    expect_error("auth:\n  htpasswd: h\naccess:\n  - repository: x\n    pul: [a]\n",
                 "access[0].pul");
    expect_error("auth:\n  htpasswd: h\naccess:\n  - repository: \"\"\n", "access[0].repository");
    expect_error("auth:\n  htpasswd: h\naccess:\n  repository: x\n", "expected a list of rules");
    expect_error("auth:\n  htpasswd: h\naccess:\n  - pull: {a: b}\n", "access[0].pull");
    expect_error("gc:\n  keepGenerations: 0\n", "gc.keepGenerations");
    expect_error("notifications:\n  - url: ftp://x\n", "notifications[0].url");
}

TEST_F(ConfigTest, AccessRulesNeedAuthentication) {
    auto e = error_of("access:\n  - repository: \"*\"\n    pull: [anonymous]\n");
    EXPECT_NE(e.find("access"), std::string::npos) << e;
    EXPECT_NE(e.find("auth.htpasswd"), std::string::npos) << e;
}

TEST_F(ConfigTest, SyntaxErrorsCarryTheLineAndAMissingFileSaysSo) {
    auto e = error_of("listen: 127.0.0.1:5000\ntls: [unclosed\n");
    EXPECT_EQ(e.rfind(file.string() + ":", 0), 0u) << e;
    try {
        cli::load_server_config(tmp.path() / "missing.yaml");
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("missing.yaml"), std::string::npos) << e.what();
    }
}

TEST_F(ConfigTest, BuildCacheBound) {
    EXPECT_EQ(load("").build_cache_max_bytes, int64_t{10} << 30);
    EXPECT_EQ(load("buildCache:\n  maxBytes: 1048576\n").build_cache_max_bytes, 1048576);
    EXPECT_NE(error_of("buildCache:\n  maxBytes: -1\n").find("buildCache.maxBytes"),
              std::string::npos);
    EXPECT_NE(error_of("buildCache:\n  max: 1\n").find("buildCache.max"), std::string::npos);
}

TEST_F(ConfigTest, ContainerLogRotation) {
    EXPECT_EQ(load("").log_max_bytes, int64_t{10} << 20);
    EXPECT_EQ(load("").log_max_files, 3);
    auto c = load("logs:\n  maxBytes: 4096\n  maxFiles: 5\n");
    EXPECT_EQ(c.log_max_bytes, 4096);
    EXPECT_EQ(c.log_max_files, 5);
    EXPECT_NE(error_of("logs:\n  maxBytes: 0\n").find("logs.maxBytes"), std::string::npos);
    EXPECT_NE(error_of("logs:\n  maxFiles: 0\n").find("logs.maxFiles"), std::string::npos);
    EXPECT_NE(error_of("logs:\n  size: 1\n").find("logs.size"), std::string::npos);
}

}  // namespace

namespace {

TEST_F(ConfigTest, RegistriesMirrorsAndInsecureHosts) {
    auto c = load(R"(
registries:
  mirrors:
    docker.io: ["http://127.0.0.1:5001", "mirror.example.com/"]
    quay.io: https://quay-mirror.example.com
  insecure: ["127.0.0.1:5000"]
)");
    ASSERT_EQ(c.registry_mirrors.size(), 2u);
    EXPECT_EQ(c.registry_mirrors["docker.io"],
              (std::vector<std::string>{"http://127.0.0.1:5001", "mirror.example.com/"}));
    EXPECT_EQ(c.registry_mirrors["quay.io"],
              (std::vector<std::string>{"https://quay-mirror.example.com"}));
    EXPECT_EQ(c.insecure_registries, (std::vector<std::string>{"127.0.0.1:5000"}));

    auto message = error_of("registries:\n  mirrors:\n    docker.io: [\"ftp://x\"]\n");
    EXPECT_NE(message.find("registries.mirrors.docker.io"), std::string::npos) << message;
    message = error_of("registries:\n  mirrors:\n    docker.io: [\"http://x/path\"]\n");
    EXPECT_NE(message.find("host[:port]"), std::string::npos) << message;
    message = error_of("registries:\n  mirror: {}\n");
    EXPECT_NE(message.find("registries.mirror"), std::string::npos) << message;
    EXPECT_NE(message.find("unknown key"), std::string::npos) << message;
}

TEST_F(ConfigTest, RouterListen) {
    EXPECT_FALSE(load("").router_listen) << "unset: the daemon's default 127.0.0.1:8080";
    EXPECT_EQ(load("router:\n  listen: 127.0.0.1:9080\n").router_listen, "127.0.0.1:9080");
    EXPECT_EQ(load("router: {listen: \"off\"}\n").router_listen, "off");
    EXPECT_EQ(error_of("router: {listen: 8080}\n"),
              file.string() + ": router.listen: expected HOST:PORT or \"off\", got \"8080\"");
    EXPECT_NE(error_of("router: {port: 1}\n").find("router.port: unknown key (known: listen)"),
              std::string::npos);
}

}  // namespace
