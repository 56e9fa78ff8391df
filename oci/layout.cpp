#include "oci/layout.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "oci/error.hpp"
#include "oci/fs.hpp"
#include "oci/media_types.hpp"

namespace cascade::oci {

namespace {

constexpr std::string_view kLayoutFile = "oci-layout";
constexpr std::string_view kIndexFile = "index.json";
constexpr std::string_view kLayoutVersion = "1.0.0";

bool path_exists(const std::filesystem::path& p) {
    struct stat st {};
    return ::lstat(p.c_str(), &st) == 0;
}

void check_layout_file(const std::filesystem::path& dir) {
    auto path = dir / kLayoutFile;
    if (!path_exists(path))
        throw Error(dir.string() + " is not an OCI image layout: " + path.string() + " is missing");
    std::string bytes = fs::read_file(path);
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(bytes);
    } catch (const nlohmann::json::parse_error& e) {
        throw Error(path.string() + " is not valid JSON: " + e.what());
    }
    auto it = j.is_object() ? j.find("imageLayoutVersion") : j.end();
    if (!j.is_object() || it == j.end() || !it->is_string())
        throw Error(path.string() + " has no \"imageLayoutVersion\" string");
    if (it->get<std::string>() != kLayoutVersion)
        throw Error(path.string() + ": imageLayoutVersion \"" + it->get<std::string>() +
                    "\" is not supported (only " + std::string(kLayoutVersion) + ")");
}

}  // namespace

ImageLayout ImageLayout::open(const std::filesystem::path& dir, bool create) {
    ImageLayout layout(dir);
    if (create) {
        fs::make_dirs(dir / "blobs" / "sha256");
        if (!path_exists(dir / kLayoutFile)) {
            nlohmann::json j = {{"imageLayoutVersion", kLayoutVersion}};
            fs::write_file_atomic(dir / kLayoutFile, to_json_bytes(j));
        }
        if (!path_exists(dir / kIndexFile)) {
            Index empty;
            empty.media_type = std::string(media::kImageIndex);
            layout.write_index(empty);
        }
    }
    check_layout_file(dir);
    return layout;
}

std::filesystem::path ImageLayout::blob_path(const Digest& d) const {
    if (d.empty()) throw Error("blob_path: empty digest (layout " + dir_.string() + ")");
    return dir_ / "blobs" / d.algorithm() / d.encoded();
}

bool ImageLayout::has_blob(const Digest& d) const {
    return path_exists(blob_path(d));
}

Digest ImageLayout::put_blob(std::string_view bytes) {
    Digest d = Digest::sha256_of(bytes);
    auto path = blob_path(d);
    if (path_exists(path)) return d;
    fs::make_dirs(path.parent_path());
    fs::write_file_atomic(path, bytes, 0644);
    return d;
}

void ImageLayout::put_blob_file(const std::filesystem::path& file, const Digest& expected) {
    if (expected.algorithm() != "sha256")
        throw Error("put_blob_file " + file.string() + ": only sha256 digests are supported, got " +
                    expected.str());
    auto path = blob_path(expected);
    if (path_exists(path)) return;
    fs::make_dirs(path.parent_path());
    // Copy into a temporary file next to the blob, hashing as we go; only a
    // verified copy is renamed into place.
    auto temp = path.parent_path() / (".tmp-" + expected.encoded() + "-" + fs::random_hex(16));
    try {
        fs::Fd in = fs::open_or_throw(file, O_RDONLY);
        fs::Fd out = fs::open_or_throw(temp, O_WRONLY | O_CREAT | O_EXCL, 0644);
        Sha256 hash;
        std::string buf(1 << 16, '\0');
        while (true) {
            ssize_t n = ::read(in.get(), buf.data(), buf.size());
            if (n < 0) {
                if (errno == EINTR) continue;
                throw sys_error("read", file.string(), errno);
            }
            if (n == 0) break;
            hash.update(buf.data(), static_cast<size_t>(n));
            fs::write_all(out.get(), std::string_view(buf.data(), static_cast<size_t>(n)),
                          temp.string());
        }
        Digest actual = hash.digest();
        if (actual != expected)
            throw Error("blob " + file.string() + " has digest " + actual.str() + ", expected " +
                        expected.str() + "; the file is not the blob it claims to be");
        if (::fsync(out.get()) != 0) throw sys_error("fsync", temp.string(), errno);
        if (::rename(temp.c_str(), path.c_str()) != 0)
            throw sys_error("rename to", path.string(), errno);
    } catch (...) {
        ::unlink(temp.c_str());
        throw;
    }
    fs::fsync_dir(path.parent_path());
}

std::string ImageLayout::read_blob(const Digest& d) const {
    auto path = blob_path(d);
    std::string bytes = fs::read_file(path);
    if (d.algorithm() == "sha256") {
        Digest actual = Digest::sha256_of(bytes);
        if (actual != d)
            throw Error("blob " + path.string() + " is corrupt: its content has digest " +
                        actual.str() + "; remove it and write it again");
    }
    return bytes;
}

Index ImageLayout::index() const {
    auto path = dir_ / kIndexFile;
    std::string bytes = fs::read_file(path);
    try {
        return parse_index(bytes);
    } catch (const Error& e) {
        throw Error(path.string() + ": " + e.what());
    }
}

void ImageLayout::add_manifest(const Descriptor& manifest, const std::string& ref_name) {
    Index idx = index();
    std::string key(kAnnotationRefName);
    Descriptor entry = manifest;
    if (!ref_name.empty()) {
        entry.annotations[key] = ref_name;
        std::erase_if(idx.manifests, [&](const Descriptor& d) {
            auto it = d.annotations.find(key);
            return it != d.annotations.end() && it->second == ref_name;
        });
    } else {
        entry.annotations.erase(key);
        bool present = std::any_of(idx.manifests.begin(), idx.manifests.end(), [&](auto& d) {
            return d.digest == entry.digest && !d.annotations.contains(key);
        });
        if (present) return;
    }
    idx.manifests.push_back(std::move(entry));
    if (idx.media_type.empty()) idx.media_type = std::string(media::kImageIndex);
    write_index(idx);
}

std::optional<Descriptor> ImageLayout::find(const std::string& ref_name) const {
    std::string key(kAnnotationRefName);
    for (const auto& d : index().manifests) {
        auto it = d.annotations.find(key);
        if (it != d.annotations.end() && it->second == ref_name) return d;
    }
    return std::nullopt;
}

void ImageLayout::write_index(const Index& index) {
    fs::write_file_atomic(dir_ / kIndexFile, to_json_bytes(to_json(index)));
}

}  // namespace cascade::oci
