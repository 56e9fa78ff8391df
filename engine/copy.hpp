// File operations of COPY, ADD and WORKDIR, confined to root directories.
// Internal to the engine.
//
// Every path is resolved inside a root (openat2 RESOLVE_IN_ROOT): symlinks and
// ".." resolve as if the root were "/", so neither a symlink in an image nor
// one in a build context can make a copy read or write outside its root.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "oci/fs.hpp"

namespace cascade::engine {

// The components of a path, cleaned lexically: empty and "." components are
// dropped, ".." removes the one before it; at the start of an absolute path
// ".." is dropped, at the start of a relative one it is kept.
std::vector<std::string> path_components(const std::string& path);

// The entries of the open directory `dir_fd` but "." and "..", sorted;
// `where` names it in errors.
std::vector<std::string> list_dir(int dir_fd, const std::string& where);
// readlinkat(2) of `name` in `dir_fd`, of any length.
std::string read_link_at(int dir_fd, const std::string& name, const std::string& where);

// An open directory that serves as "/" for every lookup made through it.
class RootDir {
  public:
    // `description` names the root in errors ("the build context /src/app").
    RootDir(const std::filesystem::path& dir, std::string description);

    const std::filesystem::path& path() const { return path_; }
    const std::string& description() const { return description_; }

    // Opens `path` ("/a/b" and "a/b" both mean <root>/a/b), following symlinks
    // inside the root. Throws naming the path on failure.
    fs::Fd open(const std::string& path, int flags) const;
    // Like open, but an invalid Fd when a component is missing or not a
    // directory (ENOENT, ENOTDIR).
    fs::Fd try_open(const std::string& path, int flags) const;
    // stat(2) following symlinks inside the root; nullopt when missing.
    std::optional<struct ::stat> stat(const std::string& path) const;

    // Entries match_sources and copy_into leave out (the build context's
    // .dockerignore): `hidden` gets a root-relative path such as "a/b.txt".
    void set_filter(std::function<bool(const std::string&)> hidden) { hidden_ = std::move(hidden); }
    bool hidden(const std::string& rel) const { return hidden_ && hidden_(rel); }

  private:
    std::filesystem::path path_;
    std::string description_;
    fs::Fd fd_;
    std::function<bool(const std::string&)> hidden_;
};

struct Owner {
    uint32_t uid = 0;
    uint32_t gid = 0;
};

// mkdir -p of `path` inside `root`: missing directories are created with mode
// 0755 and `owner`; symlinks on the way are followed inside the root (a
// dangling one gets its target created, as Docker does). Returns the directory opened O_RDONLY;
// `created` tells whether its last component was created. Throws when a component exists and is not
// a directory.
fs::Fd make_dirs_in_root(const RootDir& root, const std::string& path, const Owner& owner,
                         bool* created = nullptr);

// The root-relative paths ("a/b.txt", "." for the root itself) a COPY source
// names: the pattern is cleaned (a leading "/" means the root), must not climb
// out of the root with "..", and may use the wildcards * ? [ ] in any
// component. Sorted. A pattern without wildcards must exist; one with
// wildcards may match nothing.
std::vector<std::string> match_sources(const RootDir& root, const std::string& pattern);

struct CopyOptions {
    // Owner of every copied entry; nullopt keeps the source's owners.
    std::optional<Owner> owner;
    // Permission bits of every copied entry but symlinks (--chmod); nullopt
    // keeps the source's.
    std::optional<mode_t> mode;
    // Owner of destination directories that have to be created.
    Owner parents_owner;
};

// Copies the source `source` (root-relative, as match_sources returns) from
// `from` to `dest` (absolute, inside `to`). A directory's contents are copied
// into `dest`; a file, symlink or device becomes `dest`, or `dest/<name>` when
// `dest_is_dir`. Modes, times and xattrs are kept; directories that exist in
// the destination keep their own metadata. The source itself is followed when
// it is a symlink; symlinks below it are copied as symlinks.
void copy_into(const RootDir& from, const std::string& source, const RootDir& to,
               const std::string& dest, bool dest_is_dir, const CopyOptions& options);

}  // namespace cascade::engine
