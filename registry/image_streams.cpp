#include "registry/image_streams.hpp"

#include <charconv>

#include "oci/error.hpp"
#include "oci/media_types.hpp"
#include "oci/reference.hpp"
#include "registry/store.hpp"

namespace cascade::registry {

namespace {

// "stream:tag" → (stream, tag); the colon counts only after the last '/'.
std::pair<std::string, std::string> split_tag(const std::string& text) {
    auto slash = text.rfind('/');
    auto colon = text.rfind(':');
    if (colon == std::string::npos || (slash != std::string::npos && colon < slash))
        return {text, "latest"};
    return {text.substr(0, colon), text.substr(colon + 1)};
}

void check_names(const std::string& what, const std::string& text, const std::string& repo,
                 const std::string& tag) {
    if (!oci::is_valid_repository_name(repo))
        throw Error(what + " \"" + text + "\": \"" + repo +
                    "\" is not a valid stream name (lower-case path components)");
    if (!tag.empty() && !oci::is_valid_tag(tag))
        throw Error(what + " \"" + text + "\": \"" + tag + "\" is not a valid tag");
}

// Stores the manifest `digest` of `from` (and, for an index, its children
// first) in `to`, which links its blobs there.
void link_manifest(Store& store, const std::string& from, const std::string& to,
                   const oci::Digest& digest, int depth = 0) {
    if (store.has_manifest(to, digest)) return;
    if (depth > 8) throw Error("index " + digest.str() + " in " + from + " nests too deep");
    auto record = store.resolve(from, digest.str());
    if (!record) throw Error("manifest " + digest.str() + " is not in " + from);
    std::string bytes = store.manifest_bytes(*record);
    if (oci::media::is_index(record->media_type)) {
        for (const auto& child : oci::parse_index(bytes).manifests)
            link_manifest(store, from, to, child.digest, depth + 1);
    }
    store.put_manifest(to, bytes, record->media_type);
}

}  // namespace

TagSource parse_tag_source(const std::string& text) {
    TagSource s;
    s.text = text;
    if (auto at = text.find('@'); at != std::string::npos) {
        s.repository = text.substr(0, at);
        s.digest = oci::Digest::try_parse(text.substr(at + 1));
        if (!s.digest)
            throw Error("source \"" + text + "\": \"" + text.substr(at + 1) +
                        "\" is not a digest (sha256:<64 hex>)");
        check_names("source", text, s.repository, "");
        return s;
    }
    std::string rest = text;
    if (auto hash = text.rfind('#'); hash != std::string::npos) {
        std::string number = text.substr(hash + 1);
        int64_t n = 0;
        auto [end, ec] = std::from_chars(number.data(), number.data() + number.size(), n);
        if (number.empty() || ec != std::errc() || end != number.data() + number.size() || n < 1)
            throw Error("source \"" + text + "\": the generation after '#' must be 1, 2, 3 …");
        s.generation = n;
        rest = text.substr(0, hash);
    }
    std::tie(s.repository, s.tag) = split_tag(rest);
    check_names("source", text, s.repository, s.tag);
    return s;
}

std::pair<std::string, std::string> parse_tag_destination(const std::string& text) {
    if (text.find('@') != std::string::npos || text.find('#') != std::string::npos)
        throw Error("destination \"" + text + "\" must be STREAM:TAG (a tag moves, not a digest)");
    auto [repo, tag] = split_tag(text);
    check_names("destination", text, repo, tag);
    return {repo, tag};
}

TagResult tag_image(Store& store, const std::string& source, const std::string& destination) {
    TagSource src = parse_tag_source(source);
    auto [repo, tag] = parse_tag_destination(destination);
    if (!store.has_repository(src.repository))
        throw Error("image stream \"" + src.repository +
                    "\" does not exist; `cascade get imagestreams` lists them");

    oci::Digest digest;
    if (src.digest) {
        if (!store.has_manifest(src.repository, *src.digest))
            throw Error("image " + src.digest->str() + " is not in stream " + src.repository +
                        "; `cascade describe imagestream " + src.repository + "` shows its images");
        digest = *src.digest;
    } else if (src.generation) {
        auto history = store.tag_history(src.repository, src.tag);
        if (history.empty())
            throw Error("stream tag " + src.repository + ":" + src.tag + " has no history");
        auto it = std::find_if(history.begin(), history.end(), [&](const TagHistoryEntry& h) {
            return h.generation == *src.generation;
        });
        if (it == history.end())
            throw Error("stream tag " + src.repository + ":" + src.tag + " has no generation " +
                        std::to_string(*src.generation) + " (its generations are 1 to " +
                        std::to_string(history.front().generation) + ")");
        if (!store.has_manifest(src.repository, it->digest))
            throw Error("generation " + std::to_string(*src.generation) + " of " + src.repository +
                        ":" + src.tag + " (" + it->digest.str() +
                        ") was garbage collected; gc.keepGenerations sets how many are kept");
        digest = it->digest;
    } else {
        auto d = store.tag_digest(src.repository, src.tag);
        if (!d)
            throw Error("stream tag " + src.repository + ":" + src.tag +
                        " does not exist; `cascade describe imagestream " + src.repository +
                        "` lists its tags");
        digest = *d;
    }

    if (repo != src.repository) link_manifest(store, src.repository, repo, digest);
    TagResult r;
    r.repository = repo;
    r.tag = tag;
    r.digest = digest;
    r.source_repository = src.repository;
    r.cause = "tag " + src.text;
    r.moved = store.set_tag(repo, tag, digest, r.cause);
    auto history = store.tag_history(repo, tag);
    r.generation = history.empty() ? 0 : history.front().generation;
    return r;
}

}  // namespace cascade::registry
