// OCI image layouts (oci-layout, index.json, blobs/<alg>/<hex>) on disk.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "oci/image.hpp"

namespace cascade::oci {

class ImageLayout {
  public:
    // Opens an existing layout, or creates an empty one when `create` is set.
    // Throws when the directory is not a layout (missing/invalid oci-layout).
    static ImageLayout open(const std::filesystem::path& dir, bool create = false);

    const std::filesystem::path& dir() const { return dir_; }
    std::filesystem::path blob_path(const Digest& d) const;
    bool has_blob(const Digest& d) const;

    // Writes bytes as a blob (atomically, verified); returns its digest.
    Digest put_blob(std::string_view bytes);
    // Moves/copies a file in as a blob after verifying `expected`.
    void put_blob_file(const std::filesystem::path& file, const Digest& expected);
    std::string read_blob(const Digest& d) const;

    Index index() const;
    // Adds (or replaces, by ref name annotation) a manifest in index.json.
    void add_manifest(const Descriptor& manifest, const std::string& ref_name = {});
    // The manifest descriptor annotated with this ref name.
    std::optional<Descriptor> find(const std::string& ref_name) const;

  private:
    explicit ImageLayout(std::filesystem::path dir) : dir_(std::move(dir)) {}
    void write_index(const Index& index);
    std::filesystem::path dir_;
};

}  // namespace cascade::oci
