// Inputs the libFuzzer targets in tests/fuzz found, each a regression test of
// the behaviour it broke.
#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "oci/error.hpp"
#include "oci/image.hpp"
#include "oci/reference.hpp"

namespace cascade::oci {
namespace {

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "(no cascade::Error)";
}

// manifest_fuzz: a number too large for a double made nlohmann::json throw
// out_of_range, which escaped the parsers as something other than cascade::Error
// (a registry handler expecting Error would have answered 500 or died).
TEST(FuzzRegression, NumberOverflowIsInvalidJson) {
    const std::string crash =
        R"({"schemaVersion":2e8649e94fb4fc21fe77e831-*c060f61caaff8a","wize":2},"layers":[]})";
    const std::string overflow = R"({"schemaVersion":2,"config":{"size":1e400},"layers":[]})";
    for (const std::string& bytes : {crash, overflow}) {
        EXPECT_NE(error_of([&] { parse_manifest(bytes); }).find("image manifest is not valid JSON"),
                  std::string::npos);
        EXPECT_NE(error_of([&] { parse_index(bytes); }).find("image index is not valid JSON"),
                  std::string::npos);
        EXPECT_NE(error_of([&] { parse_config(bytes); }).find("image config is not valid JSON"),
                  std::string::npos);
        EXPECT_NE(error_of([&] { detect_manifest_media_type(bytes); }).find("not valid JSON"),
                  std::string::npos);
    }
    // Large numbers that fit a double are still JSON, rejected by type.
    EXPECT_NE(error_of([] { parse_manifest(R"({"schemaVersion":1e300})"); }).find("integer"),
              std::string::npos);
}

// reference_fuzz: a 250-character Docker Hub name parsed, but normalising it
// ("docker.io/library/...") gave a reference that no longer parses. Docker
// rejects such a name; normalized() now says so instead of returning it.
TEST(FuzzRegression, NormalisingNeverYieldsAnUnparsableReference) {
    const std::string path = std::string(120, 'a') + "/" + std::string(129, 'b');  // 250
    Reference ref = Reference::parse(path);
    EXPECT_EQ(ref.path, path);
    std::string message = error_of([&] { ref.normalized(); });
    EXPECT_NE(message.find("longer than 255 characters"), std::string::npos) << message;

    // One that still fits after normalisation normalises and parses back.
    const std::string fits = std::string(120, 'a') + "/" + std::string(124, 'b');  // 245
    Reference n = Reference::parse(fits).normalized();
    EXPECT_EQ(n.str(), "docker.io/" + fits + ":latest");
    Reference again = Reference::parse(n.str());
    EXPECT_EQ(again.domain, n.domain);
    EXPECT_EQ(again.path, n.path);
    EXPECT_EQ(again.tag, n.tag);

    // A single component gains "library/": 240 characters fit, 250 do not.
    EXPECT_NO_THROW(Reference::parse(std::string(237, 'c')).normalized());
    EXPECT_THROW(Reference::parse(std::string(238, 'c')).normalized(), Error);
    // Names on other registries are not lengthened and never throw.
    const std::string other = "r.io/" + std::string(250, 'd');
    EXPECT_EQ(Reference::parse(other).normalized().str(), other + ":latest");
}

}  // namespace
}  // namespace cascade::oci
