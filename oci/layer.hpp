// Layers: writing a directory (or an overlayfs upper directory) as a layer
// tar, and applying a layer tar onto a root directory safely.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "oci/digest.hpp"

namespace cascade::oci {

enum class Compression { None, Gzip, Zstd };

// The layer media type for a compression.
std::string layer_media_type(Compression c);

struct LayerWriteOptions {
    Compression compression = Compression::Gzip;
    int compression_level = -1;  // -1: the library's default
    // Compression threads (gzip: pigz-style blocks, see oci/pgzip.hpp; zstd:
    // ZSTD_c_nbWorkers). 0: one per hardware thread. The bytes written do not
    // depend on it.
    unsigned threads = 0;
    // Every entry's mtime is clamped to this (SOURCE_DATE_EPOCH semantics):
    // entries newer than it get it. nullopt: SOURCE_DATE_EPOCH if set, else
    // times are kept as they are.
    std::optional<int64_t> clamp_mtime;
    // Device nodes (char/block) and FIFOs are kept; sockets are always skipped.
    // When false, char/block devices are left out (FIFOs are still kept).
    bool keep_devices = true;
    // The directory is an overlayfs upper dir: 0/0 char devices become
    // ".wh.<name>" whiteouts and directories with trusted.overlay.opaque=y get
    // a ".wh..wh..opq" entry.
    bool overlay_upper = false;
};

struct LayerWriteResult {
    Digest diff_id;       // sha256 of the uncompressed tar
    Digest digest;        // sha256 of the bytes written (compressed)
    int64_t size = 0;     // bytes written
    int64_t entries = 0;  // tar entries
    std::string media_type;
};

// Writes `dir`'s tree as a tar to `out_path` (created/truncated), entries
// sorted by path, owners numeric (no user/group names), xattrs kept (except
// overlay's trusted.overlay.*), hard links within the tree as tar hard links.
// diff ID and digest are computed in the same pass as the write.
LayerWriteResult write_layer(const std::filesystem::path& dir,
                             const std::filesystem::path& out_path,
                             const LayerWriteOptions& options = {});

struct LayerApplyOptions {
    // When false, owners are not restored (for tests as non-root).
    bool restore_owners = true;
    // The root is one layer of an overlayfs stack (a lower dir of its own, as
    // runtime::LayerCache keeps them), not the merged tree: a ".wh.<name>"
    // this layer did not itself create becomes overlayfs' whiteout (a 0/0
    // character device) and ".wh..wh..opq" marks its directory opaque
    // (trusted.overlay.opaque=y), so they hide what the lower layers hold.
    // Needs CAP_MKNOD and CAP_SYS_ADMIN (root).
    bool overlay_whiteouts = false;
};

struct LayerApplyResult {
    int64_t entries = 0;
    int64_t whiteouts = 0;
};

// Applies a layer tar (any compression libarchive reads) onto `root`:
// ".wh.<name>" deletes <name>, ".wh..wh..opq" empties its directory of what
// lower layers put there. No entry, symlink or hard link can create or modify
// anything outside `root`: paths are resolved component by component inside
// root (symlinks resolved as if root were "/"), ".." cannot climb above root,
// and hard link targets must resolve inside root. A violating entry throws
// cascade::Error naming the entry; what was applied before stays.
// In detail: entry names and hard link targets that are absolute or contain
// ".." are refused, as are names with a ".wh."-prefixed directory; an
// absolute symlink met while resolving is followed from root; a symlink whose
// ".." would climb above root is refused; an existing symlink at an entry's
// own name is replaced, never written through. trusted.overlay.* xattrs in
// the tar are not applied (they would change how an overlay mount reads it).
LayerApplyResult apply_layer(const std::filesystem::path& layer_path,
                             const std::filesystem::path& root,
                             const LayerApplyOptions& options = {});

}  // namespace cascade::oci
