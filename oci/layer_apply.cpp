// apply_layer: unpacks a layer tar onto a root directory, honouring whiteouts
// and opaque directories, without ever creating or touching anything outside
// the root. Every path is resolved component by component with openat and
// O_NOFOLLOW from a descriptor of the root; symlinks met on the way are
// followed by hand, as if the root were "/".
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <deque>
#include <memory>
#include <set>
#include <vector>

#include "oci/error.hpp"
#include "oci/fs.hpp"
#include "oci/layer.hpp"

namespace cascade::oci {

namespace {

constexpr std::string_view kWhiteoutPrefix = ".wh.";
constexpr std::string_view kWhiteoutMetaPrefix = ".wh..wh.";
constexpr std::string_view kOpaqueMarker = ".wh..wh..opq";
constexpr int kMaxSymlinks = 40;

struct ArchiveReadDeleter {
    void operator()(struct archive* a) const { archive_read_free(a); }
};
struct DirCloser {
    void operator()(DIR* d) const { closedir(d); }
};

std::vector<std::string> split_path(std::string_view p) {
    std::vector<std::string> out;
    size_t start = 0;
    while (start <= p.size()) {
        size_t slash = p.find('/', start);
        if (slash == std::string_view::npos) slash = p.size();
        std::string_view c = p.substr(start, slash - start);
        if (!c.empty() && c != ".") out.emplace_back(c);
        start = slash + 1;
    }
    return out;
}

// A path stored in the tar (entry name or hard link target): relative, and
// without "..". Returns its components (empty for the root itself).
std::vector<std::string> checked_components(std::string_view p, std::string_view what) {
    if (p.empty()) throw Error(std::string(what) + " is empty");
    if (p.front() == '/')
        throw Error(std::string(what) + " \"" + std::string(p) +
                    "\" is absolute; layer paths must be relative to the root");
    auto comps = split_path(p);
    for (size_t i = 0; i < comps.size(); i++) {
        if (comps[i] == "..")
            throw Error(std::string(what) + " \"" + std::string(p) +
                        "\" contains \"..\"; layer paths must stay inside the root");
        // Whiteouts are markers, never directories something could be inside.
        if (i + 1 < comps.size() && comps[i].rfind(kWhiteoutPrefix, 0) == 0)
            throw Error(std::string(what) + " \"" + std::string(p) +
                        "\" has a directory named like a whiteout (\".wh.\")");
    }
    return comps;
}

std::string inode_key(const struct stat& dir, std::string_view name) {
    return std::to_string(dir.st_dev) + ":" + std::to_string(dir.st_ino) + "/" + std::string(name);
}

struct stat fstat_or_throw(int fd, const std::string& what) {
    struct stat st {};
    if (::fstat(fd, &st) != 0) throw sys_error("fstat", what, errno);
    return st;
}

// Removes `name` in `dirfd`, recursively, never following symlinks.
void remove_at(int dirfd, const std::string& name, const std::string& shown) {
    struct stat st {};
    if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) return;
        throw sys_error("lstat", shown, errno);
    }
    if (S_ISDIR(st.st_mode)) {
        int fd = ::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) throw sys_error("open", shown, errno);
        std::unique_ptr<DIR, DirCloser> d(::fdopendir(fd));
        if (!d) {
            int err = errno;
            ::close(fd);
            throw sys_error("opendir", shown, err);
        }
        std::vector<std::string> children;
        while (struct dirent* e = ::readdir(d.get())) {
            std::string child = e->d_name;
            if (child != "." && child != "..") children.push_back(child);
        }
        for (const auto& child : children)
            remove_at(::dirfd(d.get()), child, shown + "/" + child);
        d.reset();
        if (::unlinkat(dirfd, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT)
            throw sys_error("rmdir", shown, errno);
    } else if (::unlinkat(dirfd, name.c_str(), 0) != 0 && errno != ENOENT) {
        throw sys_error("unlink", shown, errno);
    }
}

struct DeferredDir {
    std::vector<std::string> comps;
    dev_t dev;
    ino_t ino;
    mode_t mode;
    uid_t uid;
    gid_t gid;
    struct timespec mtime;
};

class Applier {
  public:
    Applier(const std::filesystem::path& root, const LayerApplyOptions& options)
        : root_path_(root), options_(options) {
        fs::make_dirs(root);
        root_ = fs::open_or_throw(root, O_RDONLY | O_DIRECTORY);
    }

    LayerApplyResult apply(struct archive* a, const std::string& layer_name) {
        while (true) {
            struct archive_entry* e = nullptr;
            int rc = archive_read_next_header(a, &e);
            if (rc == ARCHIVE_EOF) break;
            if (rc < ARCHIVE_WARN) {
                const char* msg = archive_error_string(a);
                throw Error("layer " + layer_name + ": cannot read the tar after " +
                            std::to_string(result_.entries) +
                            " entries: " + (msg ? msg : "libarchive error"));
            }
            const char* name = archive_entry_pathname(e);
            if (!name) name = archive_entry_pathname_utf8(e);
            std::string shown = name ? name : "<unnamed>";
            try {
                if (!name) throw Error("the entry has no name libarchive can decode");
                apply_entry(a, e, name);
            } catch (const Error& err) {
                throw Error("layer " + layer_name + ": entry \"" + shown + "\": " + err.what());
            }
            result_.entries++;
        }
        finish_dirs();
        return result_;
    }

  private:
    // Resolves `comps` as a directory inside the root. Missing directories are
    // created when `create` is set; otherwise an empty Fd says "missing".
    fs::Fd walk(const std::vector<std::string>& comps, bool create) {
        // chain[i] is the directory named by names[0..i): the physical path
        // from the root, so ".." is a pop and can never go past chain[0].
        std::vector<fs::Fd> chain;
        std::vector<std::string> names;
        chain.emplace_back(::fcntl(root_.get(), F_DUPFD_CLOEXEC, 0));
        if (!chain.back()) throw sys_error("dup", root_path_.string(), errno);
        std::deque<std::string> todo(comps.begin(), comps.end());
        int links = 0;
        std::string last_link;  // "name -> target", for messages
        auto here = [&](const std::string& c) {
            std::string out;
            for (const auto& n : names)
                out += n + "/";
            return out + c;
        };
        while (!todo.empty()) {
            std::string c = std::move(todo.front());
            todo.pop_front();
            if (c.empty() || c == ".") continue;
            if (c == "..") {  // only symlink targets bring these
                if (chain.size() == 1)
                    throw Error("following symlink " + last_link +
                                " climbs above the root with \"..\"");
                chain.pop_back();
                names.pop_back();
                continue;
            }
            int cur = chain.back().get();
            int fd = ::openat(cur, c.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (fd < 0 && errno == ENOENT && create) {
                if (::mkdirat(cur, c.c_str(), 0755) != 0 && errno != EEXIST)
                    throw sys_error("mkdir", here(c), errno);
                fd = ::openat(cur, c.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            }
            if (fd >= 0) {
                chain.emplace_back(fd);
                names.push_back(std::move(c));
                continue;
            }
            int err = errno;
            if (err == ENOENT) return fs::Fd();
            if (err != ELOOP && err != ENOTDIR) throw sys_error("open", here(c), err);
            struct stat st {};
            if (::fstatat(cur, c.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0)
                throw sys_error("lstat", here(c), errno);
            if (!S_ISLNK(st.st_mode))
                throw Error("\"" + here(c) + "\" on its path is not a directory");
            if (++links > kMaxSymlinks)
                throw Error("too many levels of symlinks on its path (at \"" + here(c) + "\")");
            std::string target = read_link(cur, c, here(c));
            if (target.empty()) throw Error("symlink \"" + here(c) + "\" on its path is empty");
            last_link = "\"" + here(c) + "\" -> \"" + target + "\"";
            // Absolute targets start again at the root, never at the host's "/".
            if (target.front() == '/') {
                chain.resize(1);
                names.clear();
            }
            auto tcomps = split_path(target);
            todo.insert(todo.begin(), tcomps.begin(), tcomps.end());
        }
        return std::move(chain.back());
    }

    static std::string read_link(int dirfd, const std::string& name, const std::string& shown) {
        std::string buf(4096, '\0');
        ssize_t n = ::readlinkat(dirfd, name.c_str(), buf.data(), buf.size());
        if (n < 0) throw sys_error("readlink", shown, errno);
        buf.resize(static_cast<size_t>(n));
        return buf;
    }

    void apply_entry(struct archive* a, struct archive_entry* e, const std::string& name) {
        auto comps = checked_components(name, "the path");
        if (comps.empty()) return;  // "./": the root itself keeps its metadata
        std::string base = comps.back();
        std::vector<std::string> parent_comps(comps.begin(), comps.end() - 1);

        if (base.rfind(kWhiteoutPrefix, 0) == 0) {
            apply_whiteout(parent_comps, base);
            return;
        }

        fs::Fd parent = walk(parent_comps, true);
        struct stat parent_st = fstat_or_throw(parent.get(), name);
        struct stat existing {};
        bool exists = ::fstatat(parent.get(), base.c_str(), &existing, AT_SYMLINK_NOFOLLOW) == 0;
        if (!exists && errno != ENOENT) throw sys_error("lstat", name, errno);

        if (const char* link = archive_entry_hardlink(e)) {
            apply_hardlink(parent.get(), base, exists ? &existing : nullptr, link);
            created_.insert(inode_key(parent_st, base));
            return;
        }

        mode_t type = archive_entry_filetype(e);
        if (type != AE_IFDIR && type != AE_IFREG && type != AE_IFLNK && type != AE_IFCHR &&
            type != AE_IFBLK && type != AE_IFIFO)
            return;  // sockets and unknown types are not restored
        // A directory replacing this layer's whiteout of the same name hides
        // the lower layers' directory: opaque.
        const bool over_whiteout =
            options_.overlay_whiteouts && exists && is_overlay_whiteout(existing);
        if (exists && !(S_ISDIR(existing.st_mode) && type == AE_IFDIR)) {
            remove_at(parent.get(), base, name);
            exists = false;
        }
        mode_t perm = archive_entry_perm(e) & 07777;
        uid_t uid = static_cast<uid_t>(archive_entry_uid(e));
        gid_t gid = static_cast<gid_t>(archive_entry_gid(e));
        struct timespec times[2];
        times[1] = {archive_entry_mtime(e), archive_entry_mtime_nsec(e)};
        times[0] = archive_entry_atime_is_set(e)
                       ? timespec{archive_entry_atime(e), archive_entry_atime_nsec(e)}
                       : times[1];

        switch (type) {
            case AE_IFDIR: {
                if (!exists && ::mkdirat(parent.get(), base.c_str(), 0700) != 0)
                    throw sys_error("mkdir", name, errno);
                fs::Fd dir(::openat(parent.get(), base.c_str(),
                                    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
                if (!dir) throw sys_error("open", name, errno);
                set_xattrs(dir.get(), e, name);
                if (over_whiteout) mark_opaque(dir.get(), name);
                struct stat st = fstat_or_throw(dir.get(), name);
                // Owner, mode and times of directories are set at the end, so
                // that adding children neither fails nor changes them.
                dirs_.push_back({comps, st.st_dev, st.st_ino, perm, uid, gid, times[1]});
                break;
            }
            case AE_IFREG: {
                fs::Fd f(::openat(parent.get(), base.c_str(),
                                  O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
                if (!f) throw sys_error("create", name, errno);
                write_data(a, f.get(), archive_entry_size(e), name);
                if (options_.restore_owners && ::fchown(f.get(), uid, gid) != 0)
                    throw sys_error("chown", name, errno);
                if (::fchmod(f.get(), perm) != 0) throw sys_error("chmod", name, errno);
                // After chown: chown drops security.capability.
                set_xattrs(f.get(), e, name);
                if (::futimens(f.get(), times) != 0) throw sys_error("set times of", name, errno);
                break;
            }
            case AE_IFLNK: {
                const char* target = archive_entry_symlink(e);
                if (!target || !*target) throw Error("symlink without a target");
                if (::symlinkat(target, parent.get(), base.c_str()) != 0)
                    throw sys_error("symlink", name, errno);
                set_owner_and_times(parent.get(), base, uid, gid, times, name);
                break;
            }
            case AE_IFCHR:
            case AE_IFBLK:
            case AE_IFIFO: {
                dev_t dev = type == AE_IFIFO
                                ? 0
                                : makedev(archive_entry_rdevmajor(e), archive_entry_rdevminor(e));
                if (::mknodat(parent.get(), base.c_str(), type | (perm & 0777), dev) != 0)
                    throw sys_error(type == AE_IFIFO ? "mkfifo" : "mknod", name, errno);
                set_owner_and_times(parent.get(), base, uid, gid, times, name);
                if (::fchmodat(parent.get(), base.c_str(), perm, 0) != 0)
                    throw sys_error("chmod", name, errno);
                break;
            }
            default:
                return;
        }
        created_.insert(inode_key(parent_st, base));
    }

    void apply_whiteout(const std::vector<std::string>& parent_comps, const std::string& base) {
        result_.whiteouts++;
        if (base == kOpaqueMarker) {
            if (options_.overlay_whiteouts) {
                fs::Fd dir = walk(parent_comps, true);
                mark_opaque(dir.get(), join(parent_comps));
                return;
            }
            fs::Fd dir = walk(parent_comps, false);
            if (dir) clear_opaque(dir.get(), join(parent_comps));
            return;
        }
        if (base.rfind(kWhiteoutMetaPrefix, 0) == 0) return;  // other aufs metadata
        std::string target = base.substr(kWhiteoutPrefix.size());
        if (target.empty() || target == "." || target == "..")
            throw Error("whiteout \"" + base + "\" names no file");
        fs::Fd parent = walk(parent_comps, options_.overlay_whiteouts);
        if (!parent) return;
        // Whiteouts hide what lower layers put there, never this layer's files.
        if (created_.contains(inode_key(fstat_or_throw(parent.get(), base), target))) return;
        std::string shown = join(parent_comps);
        shown = shown.empty() ? target : shown + "/" + target;
        remove_at(parent.get(), target, shown);
        if (options_.overlay_whiteouts &&
            ::mknodat(parent.get(), target.c_str(), S_IFCHR | 0, makedev(0, 0)) != 0)
            throw sys_error("mknod whiteout", shown, errno);
    }

    void mark_opaque(int dirfd, const std::string& shown) {
        if (::fsetxattr(dirfd, "trusted.overlay.opaque", "y", 1, 0) != 0)
            throw sys_error("mark opaque (setxattr trusted.overlay.opaque)",
                            shown.empty() ? "/" : shown, errno);
    }

    static bool is_overlay_whiteout(const struct stat& st) {
        return S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0);
    }

    // Empties `dirfd` of everything lower layers put there; what this layer
    // created so far stays (recursively).
    void clear_opaque(int dirfd, const std::string& shown) {
        struct stat dir_st = fstat_or_throw(dirfd, shown);
        int fd = ::fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
        if (fd < 0) throw sys_error("dup", shown, errno);
        std::unique_ptr<DIR, DirCloser> d(::fdopendir(fd));
        if (!d) {
            int err = errno;
            ::close(fd);
            throw sys_error("opendir", shown, err);
        }
        std::vector<std::string> children;
        while (struct dirent* e = ::readdir(d.get())) {
            std::string child = e->d_name;
            if (child != "." && child != "..") children.push_back(child);
        }
        d.reset();
        for (const auto& child : children) {
            std::string child_shown = shown.empty() ? child : shown + "/" + child;
            if (!created_.contains(inode_key(dir_st, child))) {
                remove_at(dirfd, child, child_shown);
                continue;
            }
            fs::Fd sub(
                ::openat(dirfd, child.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
            if (sub) clear_opaque(sub.get(), child_shown);
        }
    }

    void apply_hardlink(int parent, const std::string& base, const struct stat* existing,
                        const char* link) {
        auto tcomps = checked_components(link, "the hard link target");
        if (tcomps.empty()) throw Error("hard link to the root directory");
        std::string tbase = tcomps.back();
        tcomps.pop_back();
        fs::Fd tparent = walk(tcomps, false);
        struct stat target {};
        if (!tparent || ::fstatat(tparent.get(), tbase.c_str(), &target, AT_SYMLINK_NOFOLLOW) != 0)
            throw Error("hard link target \"" + std::string(link) +
                        "\" does not exist in the root (it must come earlier in the layer or "
                        "from a lower layer)");
        if (S_ISDIR(target.st_mode))
            throw Error("hard link target \"" + std::string(link) + "\" is a directory");
        if (existing) {
            if (existing->st_dev == target.st_dev && existing->st_ino == target.st_ino) return;
            remove_at(parent, base, base);
        }
        // Flags 0: a symlink target is linked itself, never followed.
        if (::linkat(tparent.get(), tbase.c_str(), parent, base.c_str(), 0) != 0)
            throw sys_error("link to " + std::string(link) + " as", base, errno);
    }

    void write_data(struct archive* a, int fd, int64_t size, const std::string& name) {
        while (true) {
            const void* buf = nullptr;
            size_t len = 0;
            la_int64_t offset = 0;
            int rc = archive_read_data_block(a, &buf, &len, &offset);
            if (rc == ARCHIVE_EOF) break;
            if (rc < ARCHIVE_WARN) {
                const char* msg = archive_error_string(a);
                throw Error(std::string("reading its data: ") + (msg ? msg : "libarchive error"));
            }
            const char* p = static_cast<const char*>(buf);
            while (len > 0) {
                ssize_t n = ::pwrite(fd, p, len, offset);
                if (n < 0) {
                    if (errno == EINTR) continue;
                    throw sys_error("write", name, errno);
                }
                p += n;
                len -= static_cast<size_t>(n);
                offset += n;
            }
        }
        // Sparse files may end in a hole.
        if (::ftruncate(fd, size) != 0) throw sys_error("truncate", name, errno);
    }

    void set_xattrs(int fd, struct archive_entry* e, const std::string& name) {
        const char* xname = nullptr;
        const void* value = nullptr;
        size_t size = 0;
        archive_entry_xattr_reset(e);
        while (archive_entry_xattr_next(e, &xname, &value, &size) == ARCHIVE_OK) {
            std::string_view n = xname ? xname : "";
            // overlayfs' own attributes would change how an overlay mount
            // reads this directory; a layer must not carry them.
            if (n.empty() || n.rfind("trusted.overlay.", 0) == 0) continue;
            if (::fsetxattr(fd, xname, value, size, 0) != 0)
                throw sys_error("setxattr " + std::string(n) + " on", name, errno);
        }
    }

    void set_owner_and_times(int parent, const std::string& base, uid_t uid, gid_t gid,
                             const struct timespec times[2], const std::string& name) {
        if (options_.restore_owners &&
            ::fchownat(parent, base.c_str(), uid, gid, AT_SYMLINK_NOFOLLOW) != 0)
            throw sys_error("chown", name, errno);
        if (::utimensat(parent, base.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0)
            throw sys_error("set times of", name, errno);
    }

    void finish_dirs() {
        for (auto it = dirs_.rbegin(); it != dirs_.rend(); ++it) {
            fs::Fd dir = walk(it->comps, false);
            if (!dir) continue;
            std::string shown = join(it->comps);
            struct stat st = fstat_or_throw(dir.get(), shown);
            if (st.st_dev != it->dev || st.st_ino != it->ino) continue;  // replaced later
            if (options_.restore_owners && ::fchown(dir.get(), it->uid, it->gid) != 0)
                throw sys_error("chown", shown, errno);
            if (::fchmod(dir.get(), it->mode) != 0) throw sys_error("chmod", shown, errno);
            struct timespec times[2] = {it->mtime, it->mtime};
            if (::futimens(dir.get(), times) != 0) throw sys_error("set times of", shown, errno);
        }
    }

    static std::string join(const std::vector<std::string>& comps) {
        std::string out;
        for (const auto& c : comps)
            out += out.empty() ? c : "/" + c;
        return out;
    }

    std::filesystem::path root_path_;
    const LayerApplyOptions& options_;
    fs::Fd root_;
    LayerApplyResult result_;
    std::set<std::string> created_;  // (parent dir inode, name) this layer made
    std::vector<DeferredDir> dirs_;
};

}  // namespace

LayerApplyResult apply_layer(const std::filesystem::path& layer_path,
                             const std::filesystem::path& root, const LayerApplyOptions& options) {
    std::unique_ptr<struct archive, ArchiveReadDeleter> a(archive_read_new());
    if (!a) throw Error("libarchive: archive_read_new failed");
    archive_read_support_filter_all(a.get());
    archive_read_support_format_tar(a.get());
    archive_read_support_format_empty(a.get());
    if (archive_read_open_filename(a.get(), layer_path.c_str(), 1 << 16) != ARCHIVE_OK) {
        const char* msg = archive_error_string(a.get());
        throw Error("cannot open layer " + layer_path.string() + ": " +
                    (msg ? msg : "libarchive error"));
    }
    Applier applier(root, options);
    return applier.apply(a.get(), layer_path.string());
}

}  // namespace cascade::oci
