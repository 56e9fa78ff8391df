// Image-stream tag operations beyond a push: `cascade tag SOURCE DEST` points
// a tag at an image that already exists — by tag, by digest or by an earlier
// generation of a tag's history — and records the move in the history, so a
// person can roll a whole cascade back to an earlier base (the move triggers
// the build and deployment controllers like any other).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "oci/digest.hpp"

namespace cascade::registry {

class Store;

// SOURCE: "stream:tag", "stream@sha256:…" or "stream:tag#N" (generation N of
// that tag's history). A bare "stream" means "stream:latest".
struct TagSource {
    std::string repository;
    std::string tag;                    // empty for a digest
    std::optional<oci::Digest> digest;  // stream@digest
    std::optional<int64_t> generation;  // stream:tag#N
    std::string text;                   // as given, for the history's cause
};
TagSource parse_tag_source(const std::string& text);

// DEST: "stream:tag" (":latest" when no tag is given).
std::pair<std::string, std::string> parse_tag_destination(const std::string& text);

struct TagResult {
    std::string repository;
    std::string tag;
    oci::Digest digest;
    std::string source_repository;
    bool moved = false;      // false: the tag already pointed there
    int64_t generation = 0;  // the tag's newest generation afterwards
    std::string cause;       // "tag SOURCE"
};

// Resolves SOURCE and moves DEST to it with cause "tag SOURCE". Across
// streams the manifest (for an index also its children) and its blobs are
// linked into the destination repository first. Throws cascade::Error saying
// what is missing (unknown stream, tag, digest or generation, or a generation
// whose image was garbage collected).
TagResult tag_image(Store& store, const std::string& source, const std::string& destination);

}  // namespace cascade::registry
