// The build cache: a step that writes to the file system (RUN, COPY, ADD,
// WORKDIR) is keyed by its inputs only, and a later step with the same key
// reuses the layer it wrote instead of running again.
//
// A key covers the parent image state (layer digests and the config so far,
// history included), the instruction after expansion, and what the step
// declares as further inputs: the RUN environment and flags, the content and
// metadata of COPY/ADD sources (host timestamps only as far as they reach the
// layer, i.e. clamped to SOURCE_DATE_EPOCH; never the content of a secret). Metadata-only
// instructions (ENV, LABEL …) need no entry: their effect is part of the next step's parent state.
//
// Entries live in the metadata database (table build_cache) and survive
// restarts. The cache is bounded by the bytes of the layers its entries
// reference; past the bound the least recently used entries go. While an
// entry is kept its layer blob is a GC root (`gc_roots`). An entry whose blob
// vanished from the blob store is a miss, and is dropped.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/step.hpp"
#include "oci/digest.hpp"
#include "runtime/bundle.hpp"

namespace cascade::registry {
class BlobStore;
class Database;
}  // namespace cascade::registry

namespace cascade::engine {

class RootDir;

// Digest of an image under construction: its layer digests and its config
// JSON (env, workdir, user, history … so far).
oci::Digest image_state_digest(const ImageState& image);

// How COPY sources count in a key.
struct SourceDigestOptions {
    // Include uid/gid: sources whose owners are kept (COPY --from without
    // --chown). Context files are copied as 0:0, so their owners do not count.
    bool owners = false;
    // Layer entry times are clamped to this (SOURCE_DATE_EPOCH): an mtime
    // counts only as min(mtime, epoch), so with epoch 0 not at all.
    int64_t epoch = 0;
};

// Digest of the content and metadata of `sources` (root-relative, as
// match_sources returns them) in `root`: for every entry, depth first in name
// order, its path relative to its source, type, permission bits, size, content
// sha256, symlink target, device number, and the owners/times as `options`
// says. A source that is a symlink is followed inside the root, symlinks below
// it are not (as copy_into does); nothing resolves outside `root`.
oci::Digest digest_sources(const RootDir& root, const std::vector<std::string>& sources,
                           const SourceDigestOptions& options = {});

// The inputs of one step beyond its parent image state: named, ordered fields.
class StepKey {
  public:
    StepKey& add(std::string_view name, std::string_view value);
    StepKey& add(std::string_view name, const std::vector<std::string>& values);
    // The key of this step on top of `parent`, for `instruction` (the history
    // text, as expanded).
    oci::Digest digest(const ImageState& parent, std::string_view instruction) const;

  private:
    std::string fields_;  // length-prefixed name/value pairs
};

using InstructionFlags = std::vector<std::pair<std::string, std::string>>;

// The key inputs of a RUN: its flags as written (--mount specs name secrets by
// id only, never their content) and the process it starts (argv, env, cwd,
// user, network, hostname, tmpfs mounts). Bind mounts are left out (their host
// paths change every build): a caller that binds content in adds its digest
// (digest_sources) itself.
StepKey run_step_key(const InstructionFlags& flags, const runtime::BundleOptions& options);

// The key inputs of a COPY or ADD: its flags as written and, for every source
// pattern in its root (context, heredoc files, another stage's or image's
// rootfs), the digest of what it matches (match_sources; throws as it does).
StepKey copy_step_key(const InstructionFlags& flags,
                      const std::vector<std::pair<const RootDir*, std::string>>& patterns,
                      const SourceDigestOptions& options);

class BuildCache {
  public:
    static constexpr int64_t kDefaultMaxBytes = int64_t{10} << 30;  // 10 GiB

    // Creates the table on first use.
    BuildCache(registry::Database& db, registry::BlobStore& blobs,
               int64_t max_bytes = kDefaultMaxBytes);

    // What a step wrote: a layer, or nothing (an empty diff).
    struct Entry {
        std::optional<LayerOutput> layer;
    };

    // The entry for `key`, marked as used now; nullopt on a miss (an entry
    // whose layer blob is gone counts as one and is dropped).
    std::optional<Entry> lookup(const oci::Digest& key);
    // Records (or replaces) the entry for `key`, then evicts least recently
    // used entries while over the bound.
    void store(const oci::Digest& key, const Entry& entry);

    // Layer digests of every entry: the GC root source.
    std::vector<oci::Digest> gc_roots();

    // Bytes of the distinct layers the entries reference.
    int64_t bytes();
    int64_t entries();
    int64_t max_bytes() const { return max_bytes_; }
    // A new bound; evicts at once when over it.
    void set_max_bytes(int64_t max_bytes);

  private:
    void evict();

    registry::Database& db_;
    registry::BlobStore& blobs_;
    int64_t max_bytes_;
};

}  // namespace cascade::engine
