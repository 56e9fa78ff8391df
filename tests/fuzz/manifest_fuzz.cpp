// libFuzzer target for oci/image.hpp: the input is one document, parsed as an
// image manifest, an image index and an image config, and its media type
// detected. cascade::Error is the only exception allowed out of a parser; a
// document that parses must serialise canonically and parse back to the same
// value, and detection must agree with what parses.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "oci/error.hpp"
#include "oci/image.hpp"
#include "oci/media_types.hpp"

namespace {

using namespace cascade;
using namespace cascade::oci;

using fuzz::check;
using fuzz::violated;

bool same(const Manifest& a, const Manifest& b) {
    return a.schema_version == b.schema_version && a.media_type == b.media_type &&
           a.artifact_type == b.artifact_type && a.config == b.config && a.layers == b.layers &&
           a.subject == b.subject && a.annotations == b.annotations;
}

bool same(const Index& a, const Index& b) {
    return a.schema_version == b.schema_version && a.media_type == b.media_type &&
           a.artifact_type == b.artifact_type && a.manifests == b.manifests &&
           a.subject == b.subject && a.annotations == b.annotations;
}

bool same(const ImageConfig& a, const ImageConfig& b) {
    if (a.created != b.created || a.author != b.author || a.architecture != b.architecture ||
        a.os != b.os || a.variant != b.variant || !(a.config == b.config) ||
        a.diff_ids != b.diff_ids || a.history.size() != b.history.size())
        return false;
    for (size_t i = 0; i < a.history.size(); i++)
        if (!(a.history[i] == b.history[i])) return false;
    return true;
}

void check_descriptor(const Descriptor& d) {
    check(!d.digest.empty(), "a parsed descriptor has a digest", d.media_type);
    check(d.size >= 0, "a parsed descriptor has a non-negative size", d.media_type);
    check(d.digest.algorithm() == "sha256" || d.digest.algorithm() == "sha512",
          "a parsed digest is sha256 or sha512", d.digest.str());
}

// Serialise canonically, parse again: the same value, and the same bytes once more.
template <typename T, typename Parse>
void check_round_trip(const T& value, Parse parse, const char* what) {
    std::string bytes;
    try {
        bytes = to_json_bytes(to_json(value));
    } catch (const Error& e) {
        violated(what, std::string("serialising a parsed document failed: ") + e.what());
    }
    std::optional<T> again;
    try {
        again = parse(bytes);
    } catch (const Error& e) {
        violated(what, std::string("canonical bytes do not parse: ") + e.what() + "\n" + bytes);
    }
    check(same(value, *again), what, bytes);
    check(to_json_bytes(to_json(*again)) == bytes, "canonical bytes are a fixed point", bytes);
}

// The documents of one input, each either parsed or rejected with cascade::Error.
template <typename Parse>
auto try_parse(Parse parse, std::string_view bytes) -> std::optional<decltype(parse(bytes))> {
    try {
        return parse(bytes);
    } catch (const Error&) {
        return std::nullopt;
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view bytes(reinterpret_cast<const char*>(data), size);

    auto manifest = try_parse(parse_manifest, bytes);
    if (manifest) {
        check_descriptor(manifest->config);
        for (const auto& l : manifest->layers)
            check_descriptor(l);
        if (manifest->subject) check_descriptor(*manifest->subject);
        check(manifest->media_type.empty() || media::is_manifest(manifest->media_type),
              "a parsed manifest declares a manifest media type", manifest->media_type);
        check_round_trip(*manifest, parse_manifest, "manifest round trip");
    }

    auto index = try_parse(parse_index, bytes);
    if (index) {
        for (const auto& m : index->manifests)
            check_descriptor(m);
        if (index->subject) check_descriptor(*index->subject);
        check(index->media_type.empty() || media::is_index(index->media_type),
              "a parsed index declares an index media type", index->media_type);
        check_round_trip(*index, parse_index, "index round trip");
    }

    auto config = try_parse(parse_config, bytes);
    if (config) check_round_trip(*config, parse_config, "config round trip");

    auto detected = try_parse(detect_manifest_media_type, bytes);
    if (detected) {
        check(media::is_manifest(*detected) || media::is_index(*detected),
              "detection names a manifest or index media type", *detected);
    }
    // What parses as a manifest is never detected as an index, and the other way round;
    // a declared media type is what detection returns.
    if (manifest && detected) {
        check(media::is_manifest(*detected), "a parsed manifest is detected as a manifest",
              *detected);
        if (!manifest->media_type.empty())
            check(*detected == manifest->media_type, "detection returns the declared type");
    }
    if (index && detected) {
        check(media::is_index(*detected), "a parsed index is detected as an index", *detected);
        if (!index->media_type.empty())
            check(*detected == index->media_type, "detection returns the declared type");
    }
    if (manifest && !manifest->media_type.empty())
        check(detected.has_value(), "a manifest declaring its media type is detected");
    if (index && !index->media_type.empty())
        check(detected.has_value(), "an index declaring its media type is detected");
    return 0;
}
