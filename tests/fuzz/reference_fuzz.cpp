// libFuzzer target for oci/reference.hpp and oci/digest.hpp: the input is one
// string, parsed as an image reference, validated as a repository name, a tag
// and a domain, and parsed as a digest. cascade::Error is the only exception
// allowed out; what parses must print and parse back to the same reference,
// normalised or not, and what validates must obey the grammar.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "oci/digest.hpp"
#include "oci/error.hpp"
#include "oci/reference.hpp"

namespace {

using namespace cascade;
using namespace cascade::oci;

using fuzz::check;
using fuzz::violated;

bool same(const Reference& a, const Reference& b) {
    return a.domain == b.domain && a.path == b.path && a.tag == b.tag && a.digest == b.digest;
}

std::optional<Reference> try_parse(std::string_view text) {
    try {
        return Reference::parse(text);
    } catch (const Error&) {
        return std::nullopt;
    }
}

// parse(ref.str()) == ref.
void check_reparses(const Reference& ref, const char* what) {
    std::string text = ref.str();
    std::optional<Reference> again;
    try {
        again = Reference::parse(text);
    } catch (const Error& e) {
        violated(what, text + "\n" + e.what());
    }
    check(same(ref, *again), what, text);
}

void check_repository_name(std::string_view name) {
    check(!name.empty() && name.size() <= 255, "a valid name has 1 to 255 characters", name);
    check(name.find("..") == std::string_view::npos, "a valid name has no \"..\"", name);
    check(name.find("//") == std::string_view::npos, "a valid name has no empty component", name);
    check(name.front() != '/' && name.back() != '/', "a valid name has no empty component", name);
    for (char c : name)
        check((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
                  c == '-' || c == '/',
              "a valid name has only [a-z0-9._/-]", name);
    // Every component starts and ends with a letter or digit.
    size_t start = 0;
    while (start <= name.size()) {
        size_t slash = name.find('/', start);
        if (slash == std::string_view::npos) slash = name.size();
        std::string_view comp = name.substr(start, slash - start);
        auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
        check(!comp.empty() && alnum(comp.front()) && alnum(comp.back()),
              "a valid component starts and ends with [a-z0-9]", name);
        start = slash + 1;
    }
}

void check_tag(std::string_view tag) {
    check(!tag.empty() && tag.size() <= 128, "a valid tag has 1 to 128 characters", tag);
    check(tag.front() != '.' && tag.front() != '-', "a valid tag starts with [A-Za-z0-9_]", tag);
    for (char c : tag)
        check((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '.' || c == '-',
              "a valid tag has only [A-Za-z0-9_.-]", tag);
}

void check_digest(std::string_view text) {
    std::optional<Digest> d = Digest::try_parse(text);
    std::optional<Digest> thrown;
    bool threw = false;
    try {
        thrown = Digest::parse(text);
    } catch (const Error&) {
        threw = true;
    }
    check(d.has_value() != threw, "Digest::parse throws exactly when try_parse fails", text);
    if (!d) return;
    check(*d == *thrown, "Digest::parse and try_parse agree", text);
    check(d->str() == text, "a digest prints as the text it was parsed from", text);
    size_t hex = d->algorithm() == "sha256" ? 64 : d->algorithm() == "sha512" ? 128 : 0;
    check(hex != 0 && d->encoded().size() == hex, "a digest has the length of its algorithm", text);
    for (char c : d->encoded())
        check((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'), "a digest is lower-case hex", text);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);

    if (is_valid_repository_name(text)) check_repository_name(text);
    if (is_valid_tag(text)) check_tag(text);
    (void)is_valid_domain(text);
    check_digest(text);

    std::optional<Reference> ref = try_parse(text);
    if (!ref) return 0;
    check(is_valid_repository_name(ref->path), "a parsed path is a valid repository name",
          ref->path);
    check_repository_name(ref->path);
    if (!ref->tag.empty()) check_tag(ref->tag);
    check(ref->domain.empty() || is_valid_domain(ref->domain), "a parsed domain is valid",
          ref->domain);
    check(ref->str() == text, "a parsed reference prints as its text", ref->str());
    check_reparses(*ref, "parse(ref.str()) == ref");

    // Normalisation may make the name too long to parse; it must say so then.
    Reference norm;
    try {
        norm = ref->normalized();
    } catch (const Error&) {
        bool docker_hub =
            ref->domain.empty() || ref->domain == "docker.io" || ref->domain == "index.docker.io";
        check(docker_hub, "normalized() throws only for a Docker Hub name it lengthens",
              ref->str());
        return 0;
    }
    check(!norm.domain.empty(), "a normalised reference has a domain", norm.str());
    check(!norm.tag.empty() || norm.digest.has_value(),
          "a normalised reference has a tag or a digest", norm.str());
    check(same(norm.normalized(), norm), "normalisation is idempotent", norm.str());
    check_reparses(norm, "parse(normalized().str()) == normalized()");

    std::string ref_or_latest = ref->ref_or_latest();
    check(ref_or_latest == ref->tag || (ref->digest && ref_or_latest == ref->digest->str()) ||
              ref_or_latest == "latest",
          "ref_or_latest is the tag, the digest or latest", ref_or_latest);
    return 0;
}
