#include "oci/reference.hpp"

#include <gtest/gtest.h>

#include "oci/error.hpp"

namespace cascade::oci {
namespace {

const std::string kHex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

struct Case {
    std::string text;
    std::string domain, path, tag;
    bool has_digest = false;
};

TEST(Reference, ParsesWithoutNormalising) {
    const std::vector<Case> cases = {
        {"busybox", "", "busybox", ""},
        {"busybox:1.36", "", "busybox", "1.36"},
        {"library/busybox:latest", "", "library/busybox", "latest"},
        {"team/app", "", "team/app", ""},
        {"a/b/c/d", "", "a/b/c/d", ""},
        {"docker.io/library/busybox", "docker.io", "library/busybox", ""},
        {"quay.io/podman/stable:v4", "quay.io", "podman/stable", "v4"},
        {"localhost/app", "localhost", "app", ""},
        {"localhost:5000/app:dev", "localhost:5000", "app", "dev"},
        {"127.0.0.1:5000/team/app:v1.2.3", "127.0.0.1:5000", "team/app", "v1.2.3"},
        {"[::1]:5000/app", "[::1]:5000", "app", ""},
        {"[fe80::1]/app:x", "[fe80::1]", "app", "x"},
        {"Registry.Example.com/app", "Registry.Example.com", "app", ""},
        {"example.com:443/a-b/c_d/e.f/g__h/i---j", "example.com:443", "a-b/c_d/e.f/g__h/i---j", ""},
        {"app:TAG_with.Dots-and_Under", "", "app", "TAG_with.Dots-and_Under"},
        {"app:_underscore_first", "", "app", "_underscore_first"},
        {"app@sha256:" + kHex, "", "app", "", true},
        {"app:v1@sha256:" + kHex, "", "app", "v1", true},
        {"localhost:5000/app@sha256:" + kHex, "localhost:5000", "app", "", true},
        {"app:" + std::string(128, 'a'), "", "app", std::string(128, 'a')},
        {"my-registry.local:8080/x", "my-registry.local:8080", "x", ""},
        {"localhost:5000", "", "localhost", "5000"},  // as Docker reads it
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(c.text);
        Reference r = Reference::parse(c.text);
        EXPECT_EQ(r.domain, c.domain);
        EXPECT_EQ(r.path, c.path);
        EXPECT_EQ(r.tag, c.tag);
        EXPECT_EQ(r.digest.has_value(), c.has_digest);
        if (c.has_digest) {
            EXPECT_EQ(r.digest->encoded(), kHex);
        }
        EXPECT_EQ(r.str(), c.text);  // str() gives back what was parsed
    }
}

TEST(Reference, RejectsInvalid) {
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"", "empty"},
        {"Busybox", "lower case"},
        {"team/App", "lower case"},
        {"app:", "tag"},
        {"app:-dash", "tag"},
        {"app:.dot", "tag"},
        {"app:" + std::string(129, 'a'), "tag"},
        {"app:bad/tag", ""},
        {"app@sha256:abc", "digest"},
        {"app@md5:d41d8cd98f00b204e9800998ecf8427e", "digest"},
        {"app@", "digest"},
        {"team//app", "empty component"},
        {"/app", "empty"},
        {"app/", "empty component"},
        {"a..b", "path component"},
        {"-app", "path component"},
        {"app-", "path component"},
        {"a___b", "path component"},
        {"a_.b", "path component"},
        {"app name", "path component"},
        {"exa_mple.com/app", "domain"},
        {"-example.com/app", "domain"},
        {"example.com:/app", "domain"},
        {"example.com:port/app", "domain"},
        {"[::1/app", "domain"},
        {"example.com/", "empty"},
        {":tag", "empty"},
        {"@sha256:" + kHex, "empty"},
        {kHex, "image ID"},
        {std::string(200, 'a') + "/" + std::string(100, 'b'), "longer than 255"},
    };
    for (const auto& [text, part] : cases) {
        SCOPED_TRACE(text);
        try {
            Reference r = Reference::parse(text);
            ADD_FAILURE() << "accepted: domain=" << r.domain << " path=" << r.path
                          << " tag=" << r.tag;
        } catch (const Error& e) {
            std::string m = e.what();
            EXPECT_NE(m.find(part), std::string::npos) << m;
            EXPECT_NE(m.find("invalid image reference"), std::string::npos) << m;
        }
    }
}

TEST(Reference, NormalisesDockerHub) {
    struct N {
        std::string in, out;
    };
    const std::vector<N> cases = {
        {"busybox", "docker.io/library/busybox:latest"},
        {"busybox:1.36", "docker.io/library/busybox:1.36"},
        {"library/busybox", "docker.io/library/busybox:latest"},
        {"team/app", "docker.io/team/app:latest"},
        {"docker.io/busybox", "docker.io/library/busybox:latest"},
        {"index.docker.io/busybox", "docker.io/library/busybox:latest"},
        {"docker.io/team/app:v1", "docker.io/team/app:v1"},
        {"quay.io/app", "quay.io/app:latest"},  // other registries keep one-component paths
        {"localhost:5000/app", "localhost:5000/app:latest"},
        {"busybox@sha256:" + kHex, "docker.io/library/busybox@sha256:" + kHex},
        {"busybox:v1@sha256:" + kHex, "docker.io/library/busybox:v1@sha256:" + kHex},
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(c.in);
        Reference n = Reference::parse(c.in).normalized();
        EXPECT_EQ(n.str(), c.out);
        EXPECT_EQ(n.normalized().str(), c.out);  // idempotent
    }
}

TEST(Reference, Accessors) {
    Reference r = Reference::parse("localhost:5000/team/app:v1");
    EXPECT_EQ(r.repository_and_ref(), "team/app:v1");
    EXPECT_EQ(r.ref_or_latest(), "v1");
    Reference d = Reference::parse("team/app@sha256:" + kHex);
    EXPECT_EQ(d.repository_and_ref(), "team/app@sha256:" + kHex);
    EXPECT_EQ(d.ref_or_latest(), "sha256:" + kHex);
    Reference both = Reference::parse("team/app:v2@sha256:" + kHex);
    EXPECT_EQ(both.repository_and_ref(), "team/app@sha256:" + kHex);
    EXPECT_EQ(both.ref_or_latest(), "v2");
    Reference none = Reference::parse("app");
    EXPECT_EQ(none.repository_and_ref(), "app:latest");
    EXPECT_EQ(none.ref_or_latest(), "latest");
}

TEST(Reference, Validators) {
    EXPECT_TRUE(is_valid_repository_name("library/busybox"));
    EXPECT_TRUE(is_valid_repository_name("a/b-c/d.e/f_g/h__i"));
    EXPECT_FALSE(is_valid_repository_name(""));
    EXPECT_FALSE(is_valid_repository_name("Library/busybox"));
    EXPECT_FALSE(is_valid_repository_name("a//b"));
    EXPECT_FALSE(is_valid_repository_name("a/"));
    EXPECT_FALSE(is_valid_repository_name("a:b"));
    EXPECT_FALSE(is_valid_repository_name(std::string(256, 'a')));

    EXPECT_TRUE(is_valid_tag("latest"));
    EXPECT_TRUE(is_valid_tag("v1.2.3-rc.1_x"));
    EXPECT_TRUE(is_valid_tag(std::string(128, 'x')));
    EXPECT_FALSE(is_valid_tag(""));
    EXPECT_FALSE(is_valid_tag(".x"));
    EXPECT_FALSE(is_valid_tag("-x"));
    EXPECT_FALSE(is_valid_tag("a+b"));
    EXPECT_FALSE(is_valid_tag(std::string(129, 'x')));

    EXPECT_TRUE(is_valid_domain("docker.io"));
    EXPECT_TRUE(is_valid_domain("localhost:5000"));
    EXPECT_TRUE(is_valid_domain("10.0.0.1:80"));
    EXPECT_TRUE(is_valid_domain("[2001:db8::1]:5000"));
    EXPECT_TRUE(is_valid_domain("A-b.C"));
    EXPECT_FALSE(is_valid_domain(""));
    EXPECT_FALSE(is_valid_domain("a_b.com"));
    EXPECT_FALSE(is_valid_domain("a..b"));
    EXPECT_FALSE(is_valid_domain("host:"));
    EXPECT_FALSE(is_valid_domain("host:12a"));
    EXPECT_FALSE(is_valid_domain("-host"));
    EXPECT_FALSE(is_valid_domain("[]"));
    EXPECT_FALSE(is_valid_domain("[::1]x"));
}

}  // namespace
}  // namespace cascade::oci
