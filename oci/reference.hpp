// Image references: [domain[:port]/]path[:tag][@digest], per the distribution
// reference grammar, with Docker Hub normalisation ("busybox" →
// "docker.io/library/busybox:latest").
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "oci/digest.hpp"

namespace cascade::oci {

struct Reference {
    std::string domain;  // "" when the text named none
    std::string path;    // "library/busybox", "team/app"
    std::string tag;     // "" when none
    std::optional<Digest> digest;

    // Parses without normalising. Throws cascade::Error saying which part is
    // invalid (upper case in the path, empty component, bad tag, bad digest).
    static Reference parse(std::string_view text);

    // docker.io normalisation: no domain → "docker.io"; a single-component
    // path on docker.io → "library/<path>"; no tag and no digest → "latest".
    // Throws cascade::Error when the normalised name (domain and path) would be
    // longer than the 255 characters `parse` accepts, as Docker does.
    Reference normalized() const;

    // "domain/path:tag@digest" with the parts that are set.
    std::string str() const;
    // "path:tag" or "path@digest" (no domain): how a local repository names it.
    // With a digest the digest wins; with neither, the tag is "latest".
    std::string repository_and_ref() const;
    // tag if set, else digest string, else "latest".
    std::string ref_or_latest() const;
};

// Validation by the distribution spec's grammars.
bool is_valid_repository_name(std::string_view name);  // path components
bool is_valid_tag(std::string_view tag);               // [\w][\w.-]{0,127}
bool is_valid_domain(std::string_view domain);

}  // namespace cascade::oci
