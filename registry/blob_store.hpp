// The content store: blobs as files named by digest under <root>/blobs/sha256/.
//
// A write goes to a temporary file under <root>/ingest/ and becomes visible
// only through `BlobWriter::commit(expected)`, which verifies size and digest,
// fsyncs, and renames into place. Half-written data can never be read; a crash
// leaves only ingest files, which `cleanup_ingest` removes at start-up.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "oci/digest.hpp"
#include "oci/fs.hpp"

namespace cascade::registry {

class BlobWriter {
  public:
    BlobWriter(std::filesystem::path blobs_root, std::filesystem::path temp_path, fs::Fd fd);
    BlobWriter(BlobWriter&&) noexcept;
    BlobWriter& operator=(BlobWriter&&) = delete;
    ~BlobWriter();  // removes the temp file unless committed

    void write(const void* data, size_t size);
    void write(std::string_view s) { write(s.data(), s.size()); }
    int64_t size() const { return size_; }
    const std::filesystem::path& temp_path() const { return temp_path_; }

    // Verifies the digest (and size when given), fsyncs and renames into
    // place. Throws cascade::Error ("digest mismatch: expected X, got Y") and
    // discards the data on mismatch. Committing a blob that already exists is
    // fine (the new copy is dropped).
    oci::Digest commit(const std::optional<oci::Digest>& expected = std::nullopt,
                       std::optional<int64_t> expected_size = std::nullopt);
    // Discards what was written.
    void abort();

  private:
    std::filesystem::path blobs_root_;
    std::filesystem::path temp_path_;
    fs::Fd fd_;
    void flush();
    static constexpr size_t kBufferBytes = 1 << 20;
    std::unique_ptr<oci::Sha256> hash_;
    std::string buffer_;  // written data not yet in the file
    int64_t size_ = 0;
    bool done_ = false;
};

class BlobStore {
  public:
    explicit BlobStore(std::filesystem::path root);  // creates dirs

    bool has(const oci::Digest& d) const;
    std::optional<int64_t> size(const oci::Digest& d) const;
    std::filesystem::path path(const oci::Digest& d) const;  // may not exist
    std::string read(const oci::Digest& d) const;            // throws if absent

    BlobWriter begin();
    oci::Digest put(std::string_view bytes);
    // Copies a file in (verifying `expected` when given); returns its digest.
    oci::Digest put_file(const std::filesystem::path& file,
                         const std::optional<oci::Digest>& expected = std::nullopt);
    // Moves a file that is already inside the store's filesystem in; the
    // caller vouches for `digest` (e.g. computed while writing it).
    void adopt_file(const std::filesystem::path& file, const oci::Digest& digest);

    bool remove(const oci::Digest& d);
    std::vector<oci::Digest> list() const;
    // Removes ingest files older than `max_age_seconds` (all when 0).
    void cleanup_ingest(int64_t max_age_seconds = 0);

    const std::filesystem::path& root() const { return root_; }
    std::filesystem::path ingest_dir() const { return root_ / "ingest"; }

  private:
    std::filesystem::path root_;
};

}  // namespace cascade::registry
