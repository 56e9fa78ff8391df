#include "runtime/volumes.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>

#include "oci/error.hpp"
#include "oci/fs.hpp"

namespace cascade::runtime {

namespace {

namespace stdfs = std::filesystem;

constexpr size_t kMaxVolumeName = 128;
constexpr const char* kDataDir = "_data";

bool valid_name(const std::string& name) {
    auto first = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
    if (name.empty() || name.size() > kMaxVolumeName || !first(name[0])) return false;
    return std::all_of(name.begin(), name.end(),
                       [&](char c) { return first(c) || c == '_' || c == '.' || c == '-'; });
}

// mkdir with an exact mode (not narrowed by the umask); an existing directory
// is fine, anything else at the path is an error.
void make_dir(const stdfs::path& dir, mode_t mode) {
    if (::mkdir(dir.c_str(), mode) == 0) {
        if (::chmod(dir.c_str(), mode) != 0) throw sys_error("chmod", dir.string(), errno);
        return;
    }
    if (errno != EEXIST) throw sys_error("mkdir", dir.string(), errno);
    struct stat st {};
    if (::lstat(dir.c_str(), &st) != 0) throw sys_error("stat", dir.string(), errno);
    if (!S_ISDIR(st.st_mode))
        throw Error(dir.string() + " exists and is not a directory; remove it");
}

}  // namespace

void validate_volume_name(const std::string& name) {
    if (!valid_name(name))
        throw Error("invalid volume name \"" + name +
                    "\": use lower-case letters, digits, '_', '.' and '-', starting with a "
                    "letter or digit (at most 128 characters)");
}

VolumeStore::VolumeStore(std::filesystem::path root)
    : root_(std::filesystem::absolute(root).lexically_normal()) {}

std::filesystem::path VolumeStore::ensure(const std::string& name) {
    validate_volume_name(name);
    fs::make_dirs(root_);
    make_dir(root_ / name, 0755);
    auto data = root_ / name / kDataDir;
    make_dir(data, 0755);
    return data;
}

void VolumeStore::remove(const std::string& name) {
    validate_volume_name(name);
    fs::remove_tree(root_ / name);
}

std::vector<std::string> VolumeStore::list() const {
    std::vector<std::string> out;
    std::error_code ec;
    stdfs::directory_iterator it(root_, ec);
    if (ec) {
        if (ec == std::errc::no_such_file_or_directory) return out;
        throw Error("list volumes in " + root_.string() + ": " + ec.message());
    }
    for (const auto& entry : it) {
        auto name = entry.path().filename().string();
        std::error_code dir_ec;
        if (valid_name(name) && entry.is_directory(dir_ec) && !entry.is_symlink(dir_ec))
            out.push_back(name);
    }
    std::sort(out.begin(), out.end());
    return out;
}

}  // namespace cascade::runtime
