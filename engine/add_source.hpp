// The sources only ADD has: local tar archives it extracts and http(s) URLs it
// downloads. Internal to the engine.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "engine/copy.hpp"
#include "oci/digest.hpp"

namespace cascade::engine {

// True when `source` in `root` is a regular file holding a tar archive,
// uncompressed or compressed with anything libarchive reads (gzip, bzip2, xz,
// zstd, lz4, …). Decided by content, as Docker does: a file named .tar.gz
// that is not one is copied as it is, and a tarball named "data" is extracted.
bool is_tar_archive(const RootDir& root, const std::string& source);

// Extracts the tar archive `source` (in `root`) into `staging`, an empty
// directory, keeping the owners, modes, times and hard links of its entries.
// Nothing outside `staging` is created or touched. Refused with an Error
// naming the archive and the entry, before anything is extracted:
//  - an absolute name or hard link target ("/etc/passwd"),
//  - a name or hard link target with ".." ("../../outside"),
//  - an entry written through a symlink of the same archive ("lnk -> /"
//    then "lnk/etc/pwned"),
//  - a hard link whose target is not an earlier file of the archive,
//  - a ".wh."-prefixed name: in a layer it would read as an overlay
//    whiteout and delete a file of the image, so ADD does not extract it
//    (Docker extracts it as a plain file; that is a difference on purpose).
// Returns the number of entries.
int64_t extract_archive(const RootDir& root, const std::string& source,
                        const std::filesystem::path& staging);

// "sha256:<64 hex>" of ADD --checksum; throws naming the problem.
oci::Digest parse_checksum(const std::string& text);

// True for the sources ADD downloads: "http://…" and "https://…".
bool is_url(const std::string& source);

struct FetchedFile {
    std::string name;  // the last component of the URL's path ("" when none)
    oci::Digest digest;
    int64_t size = 0;
    std::optional<int64_t> last_modified;  // Last-Modified, seconds since the epoch
};

// Downloads `url` (http or https, redirects followed) to the new file
// `out_file` (mode 0600; mtime from Last-Modified when the server sends it,
// else 0). With `checksum`, the content's digest must match. Throws naming
// the URL and the HTTP status, or both digests on a mismatch; `out_file` is
// removed then.
FetchedFile fetch_url(const std::string& url, const std::filesystem::path& out_file,
                      const std::optional<oci::Digest>& checksum);

}  // namespace cascade::engine
