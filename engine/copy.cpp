#include "engine/copy.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <utility>
#include <vector>

#include "oci/error.hpp"

namespace cascade::engine {

namespace {

namespace stdfs = std::filesystem;

// "/a/b" and "a/b" → "a/b"; "" and "/" → ".".
std::string relative_of(const std::string& path) {
    size_t i = 0;
    while (i < path.size() && path[i] == '/')
        i++;
    std::string rel = path.substr(i);
    return rel.empty() ? "." : rel;
}

// "/" + "x" → "/x"; "/a" + "x" → "/a/x".
std::string join_abs(const std::string& dir, const std::string& name) {
    if (dir.empty() || dir == "/") return "/" + name;
    return dir.back() == '/' ? dir + name : dir + "/" + name;
}

std::string join_rel(const std::string& dir, const std::string& name) {
    return dir.empty() || dir == "." ? name : dir + "/" + name;
}

// Every name handed to an *at() call is one component: an absolute or
// multi-component name would escape the directory fd it is resolved against.
const std::string& checked_name(const std::string& name) {
    if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos)
        throw Error("internal error: \"" + name + "\" is not a single file name");
    return name;
}

int openat2_in_root(int root, const std::string& path, int flags) {
    open_how how{};
    how.flags = static_cast<uint64_t>(flags | O_CLOEXEC);
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    std::string rel = relative_of(path);
    for (int attempt = 0;; attempt++) {
        long fd = ::syscall(SYS_openat2, root, rel.c_str(), &how, sizeof how);
        if (fd >= 0) return static_cast<int>(fd);
        // EAGAIN: a concurrent rename raced the lookup; the kernel asks to retry.
        if ((errno == EAGAIN && attempt < 32) || errno == EINTR) continue;
        return -1;
    }
}

bool has_wildcard(const std::string& component) {
    return component.find_first_of("*?[") != std::string::npos;
}

fs::Fd openat_or_throw(int dir_fd, const std::string& name, int flags, const std::string& where,
                       mode_t mode = 0) {
    int fd = ::openat(dir_fd, checked_name(name).c_str(), flags | O_CLOEXEC, mode);
    if (fd < 0) throw sys_error("open", where, errno);
    return fs::Fd(fd);
}

bool skipped_xattr(std::string_view name) {
    // overlayfs bookkeeping and SELinux labels belong to the host, not the image.
    return name.rfind("trusted.overlay.", 0) == 0 || name == "security.selinux";
}

void copy_xattrs(int src, int dst, const std::string& where) {
    std::string names;
    while (true) {
        ssize_t n = ::flistxattr(src, nullptr, 0);
        if (n < 0) {
            if (errno == ENOTSUP || errno == EOPNOTSUPP) return;
            throw sys_error("list xattrs of the source of", where, errno);
        }
        if (n == 0) return;
        names.assign(static_cast<size_t>(n), '\0');
        n = ::flistxattr(src, names.data(), names.size());
        if (n >= 0) {
            names.resize(static_cast<size_t>(n));
            break;
        }
        if (errno != ERANGE) throw sys_error("list xattrs of the source of", where, errno);
    }
    for (size_t pos = 0; pos < names.size();) {
        std::string name = names.c_str() + pos;
        pos += name.size() + 1;
        if (name.empty() || skipped_xattr(name)) continue;
        std::string value;
        ssize_t n = ::fgetxattr(src, name.c_str(), nullptr, 0);
        if (n < 0) {
            if (errno == ENODATA) continue;
            throw sys_error("read xattr " + name + " of the source of", where, errno);
        }
        value.assign(static_cast<size_t>(n), '\0');
        n = ::fgetxattr(src, name.c_str(), value.data(), value.size());
        if (n < 0) {
            if (errno == ENODATA) continue;
            throw sys_error("read xattr " + name + " of the source of", where, errno);
        }
        value.resize(static_cast<size_t>(n));
        if (::fsetxattr(dst, name.c_str(), value.data(), value.size(), 0) != 0) {
            if (errno == ENOTSUP || errno == EOPNOTSUPP) continue;
            throw sys_error("set xattr " + name + " on", where, errno);
        }
    }
}

void copy_data(int src, int dst, const std::string& where) {
    std::vector<char> buf(1 << 20);
    while (true) {
        ssize_t n = ::read(src, buf.data(), buf.size());
        if (n < 0) {
            if (errno == EINTR) continue;
            throw sys_error("read the source of", where, errno);
        }
        if (n == 0) return;
        fs::write_all(dst, std::string_view(buf.data(), static_cast<size_t>(n)), where);
    }
}

class Copier {
  public:
    Copier(const RootDir& to, const CopyOptions& options, const RootDir* from = nullptr)
        : to_(to), options_(options), from_(from) {}

    Owner owner_of(const struct stat& st) const {
        return options_.owner.value_or(Owner{st.st_uid, st.st_gid});
    }
    mode_t mode_of(const struct stat& st) const {
        return options_.mode.value_or(static_cast<mode_t>(st.st_mode & 07777));
    }

    // Owner, mode, xattrs and times of `st` onto the open file or directory.
    // chown before chmod: chown clears set-id bits.
    // `own_mode`: the source's permission bits even under --chmod (buildah
    // gives a destination directory a COPY creates the source directory's mode).
    void apply_metadata(int fd, const struct stat& st, int src_fd, const std::string& path,
                        bool own_mode = false) {
        auto where = describe(path);
        auto owner = owner_of(st);
        if (::fchown(fd, owner.uid, owner.gid) != 0) throw sys_error("chown", where, errno);
        const mode_t mode = own_mode ? static_cast<mode_t>(st.st_mode & 07777) : mode_of(st);
        if (::fchmod(fd, mode) != 0) throw sys_error("chmod", where, errno);
        copy_xattrs(src_fd, fd, where);
        const std::array<timespec, 2> times{st.st_atim, st.st_mtim};
        if (::futimens(fd, times.data()) != 0) throw sys_error("set times of", where, errno);
    }

    // Puts a non-directory at dst_dir/dst_name, replacing what is there unless
    // it is a directory.
    void place(const struct stat& st, const std::function<fs::Fd()>& open_source,
               const std::function<std::string()>& read_link, int dst_dir,
               const std::string& dst_name, const std::string& path) {
        auto where = describe(path);
        checked_name(dst_name);
        const mode_t type = st.st_mode & S_IFMT;
        if (type == S_IFSOCK) return;  // sockets are not content
        struct stat existing {};
        if (::fstatat(dst_dir, dst_name.c_str(), &existing, AT_SYMLINK_NOFOLLOW) == 0) {
            if (S_ISDIR(existing.st_mode))
                throw Error("cannot copy a file onto the directory " + where +
                            "; copy into it with a destination ending in \"/\"");
            if (::unlinkat(dst_dir, dst_name.c_str(), 0) != 0)
                throw sys_error("remove the existing", where, errno);
        } else if (errno != ENOENT) {
            throw sys_error("stat", where, errno);
        }

        const auto owner = owner_of(st);
        const std::array<timespec, 2> times{st.st_atim, st.st_mtim};
        if (type == S_IFREG) {
            // Hard links among the copied files stay hard links.
            const std::pair<dev_t, ino_t> key{st.st_dev, st.st_ino};
            if (st.st_nlink > 1) {
                if (auto it = links_.find(key);
                    it != links_.end() && link_to(it->second, dst_dir, dst_name))
                    return;
                links_.emplace(key, path);
            }
            fs::Fd src = open_source();
            fs::Fd dst = openat_or_throw(dst_dir, dst_name,
                                         O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, where, 0600);
            copy_data(src.get(), dst.get(), where);
            apply_metadata(dst.get(), st, src.get(), path);
            return;
        }
        if (type == S_IFLNK) {
            std::string target = read_link();
            if (::symlinkat(target.c_str(), dst_dir, dst_name.c_str()) != 0)
                throw sys_error("symlink", where, errno);
        } else if (type == S_IFIFO || type == S_IFCHR || type == S_IFBLK) {
            if (::mknodat(dst_dir, dst_name.c_str(), type | 0600, st.st_rdev) != 0)
                throw sys_error("mknod", where, errno);
        } else {
            throw Error("cannot copy " + where + ": unsupported file type");
        }
        if (::fchownat(dst_dir, dst_name.c_str(), owner.uid, owner.gid, AT_SYMLINK_NOFOLLOW) != 0)
            throw sys_error("chown", where, errno);
        if (type != S_IFLNK && ::fchmodat(dst_dir, dst_name.c_str(), mode_of(st), 0) != 0)
            throw sys_error("chmod", where, errno);
        if (::utimensat(dst_dir, dst_name.c_str(), times.data(), AT_SYMLINK_NOFOLLOW) != 0)
            throw sys_error("set times of", where, errno);
    }

    // `src_rel`: the source directory relative to its root, for the filter.
    void copy_dir_contents(int src_dir, const std::string& src_where, int dst_dir,
                           const std::string& dest_path, const std::string& src_rel = ".") {
        for (const auto& name : list_dir(src_dir, src_where)) {
            checked_name(name);
            if (from_ && from_->hidden(join_rel(src_rel, name))) continue;
            std::string child_src_where = src_where + "/" + name;
            std::string child_path = join_abs(dest_path, name);
            struct stat st {};
            if (::fstatat(src_dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0)
                throw sys_error("stat", child_src_where, errno);
            if (!S_ISDIR(st.st_mode)) {
                place(
                    st,
                    [&] {
                        return openat_or_throw(src_dir, name, O_RDONLY | O_NOFOLLOW,
                                               child_src_where);
                    },
                    [&] { return read_link_at(src_dir, name, child_src_where); }, dst_dir, name,
                    child_path);
                continue;
            }
            fs::Fd child_src = openat_or_throw(src_dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW,
                                               child_src_where);
            fs::Fd child_dst;
            bool created = false;
            struct stat existing {};
            if (::fstatat(dst_dir, name.c_str(), &existing, AT_SYMLINK_NOFOLLOW) != 0) {
                if (errno != ENOENT) throw sys_error("stat", describe(child_path), errno);
                if (::mkdirat(dst_dir, name.c_str(), 0700) != 0)
                    throw sys_error("mkdir", describe(child_path), errno);
                created = true;
                child_dst = openat_or_throw(dst_dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW,
                                            describe(child_path));
            } else if (S_ISDIR(existing.st_mode)) {
                child_dst = openat_or_throw(dst_dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW,
                                            describe(child_path));
            } else if (S_ISLNK(existing.st_mode)) {
                // A symlink to a directory (e.g. /lib → usr/lib): merge into
                // its target, resolved inside the root.
                child_dst = to_.try_open(child_path, O_RDONLY | O_DIRECTORY);
                if (!child_dst)
                    throw Error("cannot copy the directory " + child_src_where + " to " +
                                describe(child_path) +
                                ": it is a symlink that does not lead to a directory");
            } else {
                throw Error("cannot copy the directory " + child_src_where + " to " +
                            describe(child_path) + ": a file that is not a directory is there");
            }
            copy_dir_contents(child_src.get(), child_src_where, child_dst.get(), child_path,
                              join_rel(src_rel, name));
            if (created) apply_metadata(child_dst.get(), st, child_src.get(), child_path);
        }
    }

    std::string describe(const std::string& path) const {
        return path + " (in " + to_.description() + ")";
    }

  private:
    // Links the file this copy wrote at `first` (absolute in the root) as
    // dst_dir/dst_name; false when that is no longer possible.
    bool link_to(const std::string& first, int dst_dir, const std::string& dst_name) {
        auto slash = first.rfind('/');
        if (slash == std::string::npos) return false;
        fs::Fd parent =
            to_.try_open(slash == 0 ? "/" : first.substr(0, slash), O_PATH | O_DIRECTORY);
        if (!parent) return false;
        return ::linkat(parent.get(), checked_name(first.substr(slash + 1)).c_str(), dst_dir,
                        dst_name.c_str(), 0) == 0;
    }

    const RootDir& to_;
    const CopyOptions& options_;
    const RootDir* from_;  // its filter hides entries (nullptr: none)
    std::map<std::pair<dev_t, ino_t>, std::string> links_;  // source inode → first copy
};

}  // namespace

std::vector<std::string> list_dir(int dir_fd, const std::string& where) {
    int dup = ::fcntl(dir_fd, F_DUPFD_CLOEXEC, 0);
    if (dup < 0) throw sys_error("dup directory fd of", where, errno);
    DIR* dir = ::fdopendir(dup);
    if (!dir) {
        int err = errno;
        ::close(dup);
        throw sys_error("opendir", where, err);
    }
    // fdopendir shares the offset with `dir_fd`'s open file description.
    ::rewinddir(dir);
    std::vector<std::string> names;
    errno = 0;
    while (dirent* e = ::readdir(dir)) {
        std::string name = e->d_name;
        if (name != "." && name != "..") names.push_back(std::move(name));
        errno = 0;
    }
    int err = errno;
    ::closedir(dir);
    if (err != 0) throw sys_error("readdir", where, err);
    std::sort(names.begin(), names.end());
    return names;
}

std::string read_link_at(int dir_fd, const std::string& name, const std::string& where) {
    std::string buf(256, '\0');
    while (true) {
        ssize_t n = ::readlinkat(dir_fd, name.c_str(), buf.data(), buf.size());
        if (n < 0) throw sys_error("readlink", where, errno);
        if (static_cast<size_t>(n) < buf.size()) {
            buf.resize(static_cast<size_t>(n));
            return buf;
        }
        buf.resize(buf.size() * 2);
    }
}

std::vector<std::string> path_components(const std::string& path) {
    const bool absolute = !path.empty() && path[0] == '/';
    std::vector<std::string> out;
    size_t i = 0;
    while (i <= path.size()) {
        size_t j = path.find('/', i);
        if (j == std::string::npos) j = path.size();
        std::string c = path.substr(i, j - i);
        i = j + 1;
        if (c.empty() || c == ".") continue;
        if (c == "..") {
            if (!out.empty() && out.back() != "..")
                out.pop_back();
            else if (!absolute)
                out.push_back(c);
            continue;
        }
        out.push_back(std::move(c));
    }
    return out;
}

RootDir::RootDir(const std::filesystem::path& dir, std::string description)
    : path_(stdfs::absolute(dir).lexically_normal()),
      description_(std::move(description)),
      fd_(fs::open_or_throw(path_, O_PATH | O_DIRECTORY)) {}

fs::Fd RootDir::try_open(const std::string& path, int flags) const {
    int fd = openat2_in_root(fd_.get(), path, flags);
    if (fd >= 0) return fs::Fd(fd);
    if (errno == ENOENT || errno == ENOTDIR) return {};
    throw sys_error("open", path + " (in " + description_ + ")", errno);
}

fs::Fd RootDir::open(const std::string& path, int flags) const {
    int fd = openat2_in_root(fd_.get(), path, flags);
    if (fd < 0) throw sys_error("open", path + " (in " + description_ + ")", errno);
    return fs::Fd(fd);
}

std::optional<struct ::stat> RootDir::stat(const std::string& path) const {
    fs::Fd fd = try_open(path, O_PATH);
    if (!fd) return std::nullopt;
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0)
        throw sys_error("stat", path + " (in " + description_ + ")", errno);
    return st;
}

fs::Fd make_dirs_in_root(const RootDir& root, const std::string& path, const Owner& owner,
                         bool* created) {
    // A walk one component at a time with O_NOFOLLOW: a symlink (also a
    // dangling one, whose target directories get created) is resolved by
    // hand against the root, and ".." never climbs above it.
    std::deque<std::string> todo;
    for (const auto& c : path_components("/" + path))
        todo.push_back(c);
    std::vector<std::string> resolved;  // real directories from the root down
    auto resolved_path = [&] {
        std::string p;
        for (const auto& c : resolved)
            p += "/" + c;
        return p.empty() ? std::string("/") : p;
    };
    fs::Fd cur = root.open(".", O_RDONLY | O_DIRECTORY);
    bool made = false;
    int symlinks = 0;
    while (!todo.empty()) {
        std::string c = todo.front();
        todo.pop_front();
        if (c.empty() || c == ".") continue;
        if (c == "..") {
            if (!resolved.empty()) resolved.pop_back();
            cur = root.open(resolved_path(), O_RDONLY | O_DIRECTORY);
            continue;
        }
        auto where =
            join_abs(resolved_path(), checked_name(c)) + " (in " + root.description() + ")";
        struct stat st {};
        if (::fstatat(cur.get(), c.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
            if (S_ISDIR(st.st_mode)) {
                cur = openat_or_throw(cur.get(), c, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, where);
                resolved.push_back(c);
                made = false;
                continue;
            }
            if (!S_ISLNK(st.st_mode))
                throw Error("cannot create the directory " + where +
                            ": a file that is not a directory is in the way");
            if (++symlinks > 40)
                throw Error("cannot create the directory " + where + ": too many symlinks");
            auto target = read_link_at(cur.get(), c, where);
            std::vector<std::string> parts;
            std::string part;
            for (char ch : target + "/") {
                if (ch != '/') {
                    part += ch;
                } else if (!part.empty()) {
                    parts.push_back(std::move(part));
                    part.clear();
                }
            }
            todo.insert(todo.begin(), parts.begin(), parts.end());
            if (!target.empty() && target[0] == '/') {
                resolved.clear();
                cur = root.open(".", O_RDONLY | O_DIRECTORY);
            }
            continue;
        }
        if (errno != ENOENT) throw sys_error("stat", where, errno);
        if (::mkdirat(cur.get(), c.c_str(), 0755) != 0) throw sys_error("mkdir", where, errno);
        cur = openat_or_throw(cur.get(), c, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, where);
        if (::fchown(cur.get(), owner.uid, owner.gid) != 0) throw sys_error("chown", where, errno);
        if (::fchmod(cur.get(), 0755) != 0) throw sys_error("chmod", where, errno);
        resolved.push_back(c);
        made = true;
    }
    if (created) *created = made;
    return cur;
}

std::vector<std::string> match_sources(const RootDir& root, const std::string& pattern) {
    auto comps = path_components(relative_of(pattern));
    if (!comps.empty() && comps.front() == "..")
        throw Error("source " + pattern + " is outside " + root.description() +
                    " (\"..\" climbs out of it); sources must be inside it");

    std::vector<std::string> candidates{"."};
    bool wildcard = false;
    for (const auto& c : comps) {
        std::vector<std::string> next;
        if (!has_wildcard(c)) {
            for (const auto& base : candidates)
                next.push_back(join_rel(base, c));
        } else {
            wildcard = true;
            for (const auto& base : candidates) {
                fs::Fd dir = root.try_open(base, O_RDONLY | O_DIRECTORY);
                if (!dir) continue;
                for (const auto& name :
                     list_dir(dir.get(), base + " (in " + root.description() + ")")) {
                    if (::fnmatch(c.c_str(), name.c_str(), 0) == 0 &&
                        !root.hidden(join_rel(base, name)))
                        next.push_back(join_rel(base, name));
                }
            }
        }
        candidates = std::move(next);
    }

    std::vector<std::string> out;
    for (const auto& candidate : candidates)
        if (root.stat(candidate) && !root.hidden(candidate)) out.push_back(candidate);
    if (!wildcard && out.empty() && !candidates.empty() && root.stat(candidates.front()) &&
        root.hidden(candidates.front()))
        throw Error("source " + pattern + " is excluded from " + root.description() +
                    " by .dockerignore; remove it from there to copy it");
    if (!wildcard && out.empty())
        throw Error("source " + pattern + " not found in " + root.description() +
                    "; check the path (it is relative to the root of " + root.description() + ")");
    std::sort(out.begin(), out.end());
    return out;
}

void copy_into(const RootDir& from, const std::string& source, const RootDir& to,
               const std::string& dest, bool dest_is_dir, const CopyOptions& options) {
    const std::string src_where = source + " (in " + from.description() + ")";
    struct stat st {};
    {
        fs::Fd probe = from.open(source, O_PATH);
        if (::fstat(probe.get(), &st) != 0) throw sys_error("stat", src_where, errno);
    }
    Copier copier(to, options, &from);

    if (S_ISDIR(st.st_mode)) {
        bool created = false;
        fs::Fd dst = make_dirs_in_root(to, dest, options.parents_owner, &created);
        fs::Fd src = from.open(source, O_RDONLY | O_DIRECTORY);
        copier.copy_dir_contents(src.get(), src_where, dst.get(), dest,
                                 path_components(relative_of(source)).empty() ? "." : source);
        if (created) copier.apply_metadata(dst.get(), st, src.get(), dest, true);
        return;
    }

    auto source_comps = path_components(relative_of(source));
    std::string target = dest;
    if (dest_is_dir) {
        if (source_comps.empty()) throw Error("cannot name the copy of " + src_where);
        target = join_abs(dest, source_comps.back());
    }
    auto target_comps = path_components("/" + target);
    if (target_comps.empty())
        throw Error("cannot copy the file " + src_where + " onto / in " + to.description());
    std::string name = target_comps.back();
    std::string parent;
    for (size_t i = 0; i + 1 < target_comps.size(); i++)
        parent += "/" + target_comps[i];
    if (parent.empty()) parent = "/";
    fs::Fd parent_fd = make_dirs_in_root(to, parent, options.parents_owner);
    copier.place(
        st, [&] { return from.open(source, O_RDONLY | O_NONBLOCK); },
        [&]() -> std::string { throw Error("unexpected symlink " + src_where); }, parent_fd.get(),
        name, join_abs(parent, name));
}

}  // namespace cascade::engine
