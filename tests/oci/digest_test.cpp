#include "oci/digest.hpp"

#include <gtest/gtest.h>

#include <unordered_set>

#include "oci/error.hpp"
#include "oci/fs.hpp"
#include "tests/oci/oci_test_util.hpp"

namespace cascade::oci {
namespace {

const std::string kEmpty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const std::string kAbc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

TEST(Digest, Sha256KnownVectors) {
    EXPECT_EQ(Digest::sha256_of("").str(), "sha256:" + kEmpty);
    EXPECT_EQ(Digest::sha256_of("abc").str(), "sha256:" + kAbc);
    EXPECT_EQ(
        Digest::sha256_of("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq").encoded(),
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    EXPECT_EQ(Digest::sha256_of("The quick brown fox jumps over the lazy dog").encoded(),
              "d7a8fbb307d7809469ca9abcb0082e4f8d5651e46d3cdb762d02d0bf37c9e592");
}

TEST(Digest, StreamingMillionA) {
    Sha256 h;
    std::string chunk(1000, 'a');
    for (int i = 0; i < 1000; i++)
        h.update(chunk);
    EXPECT_EQ(h.bytes(), 1000000u);
    EXPECT_EQ(h.digest().encoded(),
              "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Digest, StreamingEqualsOneShotForAnySplit) {
    std::string data;
    for (int i = 0; i < 5000; i++)
        data += static_cast<char>(i * 7);
    for (size_t split : {0ul, 1ul, 63ul, 64ul, 65ul, 4999ul, 5000ul}) {
        Sha256 h;
        h.update(std::string_view(data).substr(0, split));
        h.update(std::string_view(data).substr(split));
        EXPECT_EQ(h.digest(), Digest::sha256_of(data)) << split;
    }
}

TEST(Digest, Sha256CannotBeUsedAfterFinal) {
    Sha256 h;
    h.update("x");
    h.digest();
    EXPECT_THROW(h.update("y"), Error);
    EXPECT_THROW(h.digest(), Error);
}

TEST(Digest, FileIsStreamed) {
    fs::TempDir tmp;
    std::string big(3 * 65536 + 17, 'z');
    testutil::put(tmp.path() / "f", big);
    EXPECT_EQ(Digest::sha256_of_file((tmp.path() / "f").string()), Digest::sha256_of(big));
    testutil::put(tmp.path() / "empty", "");
    EXPECT_EQ(Digest::sha256_of_file((tmp.path() / "empty").string()).encoded(), kEmpty);
    try {
        Digest::sha256_of_file((tmp.path() / "missing").string());
        FAIL() << "no throw";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("missing"), std::string::npos) << e.what();
    }
}

TEST(Digest, ParseValid) {
    Digest d = Digest::parse("sha256:" + kAbc);
    EXPECT_EQ(d.algorithm(), "sha256");
    EXPECT_EQ(d.encoded(), kAbc);
    EXPECT_EQ(d.str(), "sha256:" + kAbc);
    EXPECT_EQ(d.short_hex(), kAbc.substr(0, 12));
    EXPECT_FALSE(d.empty());
    EXPECT_EQ(d, Digest::sha256_of("abc"));

    std::string hex512(128, 'a');
    Digest d512 = Digest::parse("sha512:" + hex512);
    EXPECT_EQ(d512.algorithm(), "sha512");
    EXPECT_EQ(d512.encoded(), hex512);

    EXPECT_TRUE(Digest().empty());
    EXPECT_TRUE(Digest::try_parse("sha256:" + kEmpty).has_value());
}

TEST(Digest, ParseRejectsBadInput) {
    std::string h64(64, 'a');
    const std::vector<std::string> bad = {
        "",
        "sha256",
        "sha256:",
        ":" + h64,
        "sha256:" + std::string(63, 'a'),
        "sha256:" + std::string(65, 'a'),
        "sha256:" + std::string(64, 'A'),  // upper-case hex
        "sha256:" + std::string(63, 'a') + "g",
        "SHA256:" + h64,  // algorithm must be lower case
        "md5:d41d8cd98f00b204e9800998ecf8427e",
        "sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564",  // valid grammar, unsupported
        "sha512:" + h64,                                            // wrong length for sha512
        "sha256:" + h64 + " ",
        " sha256:" + h64,
        "sha256::" + h64,
        "-sha256:" + h64,
        "sha256-:" + h64,
        "sha256:" + h64 + "\n",
    };
    for (const auto& text : bad) {
        EXPECT_THROW(Digest::parse(text), Error) << "accepted: \"" << text << "\"";
        EXPECT_FALSE(Digest::try_parse(text).has_value()) << text;
    }
}

TEST(Digest, ErrorSaysWhatIsWrong) {
    try {
        Digest::parse("sha256:abc");
        FAIL();
    } catch (const Error& e) {
        std::string m = e.what();
        EXPECT_NE(m.find("sha256:abc"), std::string::npos) << m;
        EXPECT_NE(m.find("64"), std::string::npos) << m;
    }
    try {
        Digest::parse("md5:d41d8cd98f00b204e9800998ecf8427e");
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("not supported"), std::string::npos) << e.what();
    }
}

TEST(Digest, UsableAsKeyAndOrdered) {
    std::unordered_set<Digest> set;
    set.insert(Digest::sha256_of("a"));
    set.insert(Digest::sha256_of("a"));
    set.insert(Digest::sha256_of("b"));
    EXPECT_EQ(set.size(), 2u);
    Digest a = Digest::parse("sha256:" + std::string(64, '0'));
    Digest b = Digest::parse("sha256:" + std::string(64, '1'));
    EXPECT_LT(a, b);
}

}  // namespace
}  // namespace cascade::oci
