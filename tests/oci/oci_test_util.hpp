// Helpers for the oci tests: hand-made tars (libarchive), reading tars back,
// small file-system shortcuts.
#pragma once

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace cascade::oci::testutil {

namespace stdfs = std::filesystem;

// One entry of a tar built by a test, exactly as given (no sanitising).
struct TarEntry {
    std::string name;
    mode_t type = AE_IFREG;
    std::string content;
    std::string symlink;   // for AE_IFLNK
    std::string hardlink;  // when set: a hard link entry to this name
    mode_t perm = 0644;
    int64_t uid = 0, gid = 0;
    int64_t mtime = 1000000000;
    unsigned rdev_major = 0, rdev_minor = 0;
    std::map<std::string, std::string> xattrs;
};

inline TarEntry file(std::string name, std::string content, mode_t perm = 0644) {
    TarEntry e;
    e.name = std::move(name);
    e.content = std::move(content);
    e.perm = perm;
    return e;
}
inline TarEntry dir(std::string name, mode_t perm = 0755) {
    TarEntry e;
    e.name = std::move(name);
    e.type = AE_IFDIR;
    e.perm = perm;
    return e;
}
inline TarEntry symlink(std::string name, std::string target) {
    TarEntry e;
    e.name = std::move(name);
    e.type = AE_IFLNK;
    e.symlink = std::move(target);
    e.perm = 0777;
    return e;
}
inline TarEntry hardlink(std::string name, std::string target) {
    TarEntry e;
    e.name = std::move(name);
    e.hardlink = std::move(target);
    return e;
}

enum class TarCompression { None, Gzip, Zstd };

inline void check(int rc, struct archive* a, const char* what) {
    if (rc < ARCHIVE_WARN)
        throw std::runtime_error(std::string(what) + ": " +
                                 (archive_error_string(a) ? archive_error_string(a) : "?"));
}

inline void make_tar(const stdfs::path& out, const std::vector<TarEntry>& entries,
                     TarCompression c = TarCompression::None) {
    struct archive* a = archive_write_new();
    archive_write_set_format_pax_restricted(a);
    if (c == TarCompression::Gzip) archive_write_add_filter_gzip(a);
    if (c == TarCompression::Zstd) archive_write_add_filter_zstd(a);
    check(archive_write_open_filename(a, out.c_str()), a, "open tar");
    for (const auto& t : entries) {
        struct archive_entry* e = archive_entry_new();
        archive_entry_copy_pathname(e, t.name.c_str());
        archive_entry_set_filetype(e, t.type);
        archive_entry_set_perm(e, t.perm);
        archive_entry_set_uid(e, t.uid);
        archive_entry_set_gid(e, t.gid);
        archive_entry_set_mtime(e, t.mtime, 0);
        if (!t.hardlink.empty()) {
            archive_entry_copy_hardlink(e, t.hardlink.c_str());
            archive_entry_set_size(e, 0);
        } else if (t.type == AE_IFREG) {
            archive_entry_set_size(e, static_cast<la_int64_t>(t.content.size()));
        }
        if (t.type == AE_IFLNK) archive_entry_copy_symlink(e, t.symlink.c_str());
        if (t.type == AE_IFCHR || t.type == AE_IFBLK) {
            archive_entry_set_rdevmajor(e, t.rdev_major);
            archive_entry_set_rdevminor(e, t.rdev_minor);
        }
        for (const auto& [k, v] : t.xattrs)
            archive_entry_xattr_add_entry(e, k.c_str(), v.data(), v.size());
        check(archive_write_header(a, e), a, "write header");
        if (t.type == AE_IFREG && t.hardlink.empty() && !t.content.empty())
            archive_write_data(a, t.content.data(), t.content.size());
        archive_entry_free(e);
    }
    check(archive_write_close(a), a, "close tar");
    archive_write_free(a);
}

struct ReadEntry {
    std::string name;
    mode_t type = 0;
    mode_t perm = 0;
    int64_t size = 0;
    int64_t uid = 0, gid = 0;
    std::string uname, gname;
    int64_t mtime = 0;
    std::string symlink, hardlink;
    unsigned rdev_major = 0, rdev_minor = 0;
    std::string content;
    std::map<std::string, std::string> xattrs;
};

// Reads any tar (any compression) back, entry by entry.
inline std::vector<ReadEntry> read_tar(const stdfs::path& path) {
    struct archive* a = archive_read_new();
    archive_read_support_filter_all(a);
    archive_read_support_format_tar(a);
    check(archive_read_open_filename(a, path.c_str(), 65536), a, "open tar");
    std::vector<ReadEntry> out;
    struct archive_entry* e = nullptr;
    while (true) {
        int rc = archive_read_next_header(a, &e);
        if (rc == ARCHIVE_EOF) break;
        check(rc, a, "read header");
        ReadEntry r;
        r.name = archive_entry_pathname(e);
        r.type = archive_entry_filetype(e);
        r.perm = archive_entry_perm(e);
        r.size = archive_entry_size(e);
        r.uid = archive_entry_uid(e);
        r.gid = archive_entry_gid(e);
        if (archive_entry_uname(e)) r.uname = archive_entry_uname(e);
        if (archive_entry_gname(e)) r.gname = archive_entry_gname(e);
        r.mtime = archive_entry_mtime(e);
        if (archive_entry_symlink(e)) r.symlink = archive_entry_symlink(e);
        if (archive_entry_hardlink(e)) r.hardlink = archive_entry_hardlink(e);
        r.rdev_major = archive_entry_rdevmajor(e);
        r.rdev_minor = archive_entry_rdevminor(e);
        const char* xn;
        const void* xv;
        size_t xs;
        archive_entry_xattr_reset(e);
        while (archive_entry_xattr_next(e, &xn, &xv, &xs) == ARCHIVE_OK)
            r.xattrs[xn] = std::string(static_cast<const char*>(xv), xs);
        char buf[8192];
        la_ssize_t n;
        while ((n = archive_read_data(a, buf, sizeof buf)) > 0)
            r.content.append(buf, static_cast<size_t>(n));
        out.push_back(std::move(r));
    }
    archive_read_free(a);
    return out;
}

// The decompressed bytes of a (possibly compressed) file.
inline std::string decompress(const stdfs::path& path) {
    struct archive* a = archive_read_new();
    archive_read_support_filter_all(a);
    archive_read_support_format_raw(a);
    check(archive_read_open_filename(a, path.c_str(), 65536), a, "open raw");
    struct archive_entry* e = nullptr;
    std::string out;
    if (archive_read_next_header(a, &e) == ARCHIVE_OK) {
        char buf[65536];
        la_ssize_t n;
        while ((n = archive_read_data(a, buf, sizeof buf)) > 0)
            out.append(buf, static_cast<size_t>(n));
    }
    archive_read_free(a);
    return out;
}

inline std::string slurp(const stdfs::path& p) {
    int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw std::runtime_error("open " + p.string());
    std::string out;
    char buf[65536];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0)
        out.append(buf, static_cast<size_t>(n));
    ::close(fd);
    return out;
}

inline void put(const stdfs::path& p, const std::string& content, mode_t mode = 0644) {
    stdfs::create_directories(p.parent_path());
    int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) throw std::runtime_error("create " + p.string());
    if (::write(fd, content.data(), content.size()) != static_cast<ssize_t>(content.size()))
        throw std::runtime_error("write " + p.string());
    ::fchmod(fd, mode);
    ::close(fd);
}

inline void set_mtime(const stdfs::path& p, int64_t t) {
    struct timespec ts[2] = {{t, 0}, {t, 0}};
    if (::utimensat(AT_FDCWD, p.c_str(), ts, AT_SYMLINK_NOFOLLOW) != 0)
        throw std::runtime_error("utimensat " + p.string());
}

// Sets the mtime of every entry below (and including) `root`.
inline void set_tree_mtime(const stdfs::path& root, int64_t t) {
    std::vector<stdfs::path> all;
    for (auto it = stdfs::recursive_directory_iterator(root); it != stdfs::end(it); ++it)
        all.push_back(it->path());
    for (auto it = all.rbegin(); it != all.rend(); ++it)
        set_mtime(*it, t);
    set_mtime(root, t);
}

inline bool lexists(const stdfs::path& p) {
    struct stat st {};
    return ::lstat(p.c_str(), &st) == 0;
}

inline struct stat lstat_of(const stdfs::path& p) {
    struct stat st {};
    if (::lstat(p.c_str(), &st) != 0) throw std::runtime_error("lstat " + p.string());
    return st;
}

// Every path below `root` (relative, sorted), with a type letter:
// "d:a", "f:a/b=<content>", "l:c-><target>", ...
inline std::vector<std::string> describe_tree(const stdfs::path& root) {
    std::vector<std::string> out;
    for (auto it = stdfs::recursive_directory_iterator(root); it != stdfs::end(it); ++it) {
        auto rel = stdfs::relative(it->path(), root).string();
        struct stat st = lstat_of(it->path());
        if (S_ISDIR(st.st_mode))
            out.push_back("d:" + rel);
        else if (S_ISLNK(st.st_mode))
            out.push_back("l:" + rel + "->" + stdfs::read_symlink(it->path()).string());
        else if (S_ISREG(st.st_mode))
            out.push_back("f:" + rel + "=" + slurp(it->path()));
        else
            out.push_back("o:" + rel);
    }
    std::sort(out.begin(), out.end());
    return out;
}

}  // namespace cascade::oci::testutil
