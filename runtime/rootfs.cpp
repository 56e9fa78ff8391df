#include "runtime/rootfs.hpp"

#include <archive.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "oci/error.hpp"
#include "oci/fs.hpp"
#include "oci/layer.hpp"
#include "registry/blob_store.hpp"

namespace cascade::runtime {

namespace {

namespace stdfs = std::filesystem;

// mount(2) options must fit in one page; stay clear of the limit.
constexpr size_t kMaxMountOptions = 4000;

bool is_real_directory(const stdfs::path& p) {
    struct stat st {};
    return ::lstat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// sha256 of the layer's uncompressed bytes (its diff ID), decompressing with
// whatever filter libarchive detects.
oci::Digest uncompressed_digest(const stdfs::path& blob) {
    struct ArchiveCloser {
        void operator()(archive* a) const { archive_read_free(a); }
    };
    std::unique_ptr<archive, ArchiveCloser> a(archive_read_new());
    if (!a) throw Error("archive_read_new failed while hashing " + blob.string());
    archive_read_support_filter_all(a.get());
    archive_read_support_format_raw(a.get());
    auto fail = [&](const std::string& op) {
        const char* msg = archive_error_string(a.get());
        return Error(op + " layer blob " + blob.string() + ": " + (msg ? msg : "unknown error"));
    };
    if (archive_read_open_filename(a.get(), blob.c_str(), 1 << 16) != ARCHIVE_OK)
        throw fail("open");
    oci::Sha256 hash;
    archive_entry* entry = nullptr;
    int r = archive_read_next_header(a.get(), &entry);
    if (r == ARCHIVE_EOF) return hash.digest();  // an empty file
    if (r != ARCHIVE_OK) throw fail("read");
    std::string buf(1 << 16, '\0');
    while (true) {
        la_ssize_t n = archive_read_data(a.get(), buf.data(), buf.size());
        if (n < 0) throw fail("decompress");
        if (n == 0) break;
        hash.update(buf.data(), static_cast<size_t>(n));
    }
    return hash.digest();
}

// Overlay's lowerdir syntax uses ':' as separator and '\' as escape; ','
// separates mount options.
std::string escape_lower(const std::string& path) {
    std::string out;
    for (char c : path) {
        if (c == ':' || c == '\\' || c == ',') out += '\\';
        out += c;
    }
    return out;
}

// The error messages the kernel queued on an fs context fd ("e overlay: …").
std::string fs_context_messages(int fs_fd) {
    std::string out;
    char buf[1024];
    while (true) {
        ssize_t n = ::read(fs_fd, buf, sizeof buf - 1);
        if (n <= 0) break;
        if (!out.empty()) out += "; ";
        out.append(buf, static_cast<size_t>(n));
    }
    return out;
}

struct MountFailure {
    int err = 0;
    std::string detail;
};

// The new mount API: each lower layer passed on its own ("lowerdir+", Linux
// 6.8+), so neither path syntax nor the one-page option limit applies.
// Returns false (with err ENOSYS/EINVAL) when the kernel lacks the API or the
// "lowerdir+" key, so the caller can fall back to mount(2).
bool mount_with_fsconfig(const std::vector<stdfs::path>& lowers_top_first, const stdfs::path& upper,
                         const stdfs::path& work, const stdfs::path& target,
                         MountFailure& failure) {
    int raw = ::fsopen("overlay", FSOPEN_CLOEXEC);
    if (raw < 0) {
        failure = {errno, "fsopen overlay"};
        return false;
    }
    fs::Fd fs_fd(raw);
    auto set = [&](const char* key, const std::string& value) {
        if (::fsconfig(fs_fd.get(), FSCONFIG_SET_STRING, key, value.c_str(), 0) != 0) {
            failure = {errno, std::string("fsconfig ") + key + "=" + value};
            std::string msg = fs_context_messages(fs_fd.get());
            if (!msg.empty()) failure.detail += " (" + msg + ")";
            return false;
        }
        return true;
    };
    for (const auto& lower : lowers_top_first)
        if (!set("lowerdir+", lower.string())) return false;
    if (!set("upperdir", upper.string()) || !set("workdir", work.string())) return false;
    // Upper dirs become layers: no redirects or metacopy-only files in them.
    if (!set("redirect_dir", "off") || !set("metacopy", "off")) return false;
    if (::fsconfig(fs_fd.get(), FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) != 0) {
        failure = {errno, "create overlay for " + target.string()};
        std::string msg = fs_context_messages(fs_fd.get());
        if (!msg.empty()) failure.detail += " (" + msg + ")";
        return false;
    }
    int mnt = ::fsmount(fs_fd.get(), FSMOUNT_CLOEXEC, 0);
    if (mnt < 0) {
        failure = {errno, "fsmount overlay for " + target.string()};
        return false;
    }
    fs::Fd mnt_fd(mnt);
    if (::move_mount(mnt_fd.get(), "", AT_FDCWD, target.c_str(), MOVE_MOUNT_F_EMPTY_PATH) != 0) {
        failure = {errno, "move_mount overlay to " + target.string()};
        return false;
    }
    return true;
}

// mount(2) with the lowers relative to `cwd` (when not empty), in a child
// process that chdir()s there so the calling process's cwd never changes.
void mount_with_options(const std::string& options, const stdfs::path& cwd,
                        const stdfs::path& target) {
    if (cwd.empty()) {
        if (::mount("overlay", target.c_str(), "overlay", 0, options.c_str()) != 0)
            throw sys_error("mount overlay (" + options + ") on", target.string(), errno);
        return;
    }
    pid_t pid = ::fork();
    if (pid < 0) throw sys_error("fork for overlay mount on", target.string(), errno);
    if (pid == 0) {
        if (::chdir(cwd.c_str()) != 0) ::_exit(errno);
        if (::mount("overlay", target.c_str(), "overlay", 0, options.c_str()) != 0) ::_exit(errno);
        ::_exit(0);
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) throw sys_error("waitpid for overlay mount on", target.string(), errno);
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        int err = WIFEXITED(status) ? WEXITSTATUS(status) : EINTR;
        throw sys_error("mount overlay (lowers relative to " + cwd.string() + ") on",
                        target.string(), err);
    }
}

void mount_overlay_legacy(const std::vector<stdfs::path>& lowers_top_first,
                          const stdfs::path& upper, const stdfs::path& work,
                          const stdfs::path& target) {
    auto build = [&](const stdfs::path& base) {
        std::string lower;
        for (const auto& l : lowers_top_first) {
            if (!lower.empty()) lower += ':';
            lower += escape_lower(base.empty() ? l.string() : l.lexically_relative(base).string());
        }
        return "lowerdir=" + lower + ",upperdir=" + escape_lower(upper.string()) +
               ",workdir=" + escape_lower(work.string()) + ",redirect_dir=off,metacopy=off";
    };
    std::string options = build({});
    if (options.size() <= kMaxMountOptions) return mount_with_options(options, {}, target);
    // Too long for one page: name the lowers relative to their common parent
    // (the layer cache root), which is what containerd does too.
    stdfs::path base = lowers_top_first.front().parent_path();
    for (const auto& l : lowers_top_first)
        if (l.parent_path() != base)
            throw Error("overlay mount on " + target.string() + ": " +
                        std::to_string(lowers_top_first.size()) +
                        " lower layers exceed the mount option size limit and do not share one "
                        "parent directory; use a kernel with the new mount API (Linux 6.8+)");
    options = build(base);
    if (options.size() > kMaxMountOptions)
        throw Error("overlay mount on " + target.string() + ": too many lower layers (" +
                    std::to_string(lowers_top_first.size()) + ") for the mount option limit");
    mount_with_options(options, base, target);
}

// CASCADE_OVERLAY_MOUNT=legacy selects mount(2) even where the new mount API
// works, so the fallback for older kernels stays tested.
bool force_legacy_mount() {
    const char* v = std::getenv("CASCADE_OVERLAY_MOUNT");
    return v && std::string_view(v) == "legacy";
}

}  // namespace

// ---------------------------------------------------------------- LayerCache

LayerCache::LayerCache(std::filesystem::path root, registry::BlobStore& blobs)
    : root_(std::filesystem::absolute(root).lexically_normal()), blobs_(blobs) {
    fs::make_dirs(root_);
}

std::filesystem::path LayerCache::unpacked(const oci::Descriptor& layer,
                                           const oci::Digest& diff_id) {
    if (diff_id.empty()) throw Error("layer " + layer.digest.str() + " has no diff ID");
    const std::string key = diff_id.algorithm() + "-" + diff_id.encoded();
    // sha256 keeps the bare hex name the layout documents.
    const auto dir = root_ / (diff_id.algorithm() == "sha256" ? diff_id.encoded() : key);
    if (is_real_directory(dir)) return dir;

    std::shared_ptr<std::mutex> layer_mu;
    {
        std::lock_guard lock(mu_);
        auto& slot = in_progress_[key];
        if (!slot) slot = std::make_shared<std::mutex>();
        layer_mu = slot;
    }
    auto forget = [&] {
        std::lock_guard lock(mu_);
        auto it = in_progress_.find(key);
        if (it != in_progress_.end() && it->second == layer_mu) in_progress_.erase(it);
    };
    try {
        std::lock_guard layer_lock(*layer_mu);
        if (!is_real_directory(dir)) {
            auto blob = blobs_.path(layer.digest);
            if (!blobs_.has(layer.digest))
                throw Error("layer blob " + layer.digest.str() + " is not in the blob store at " +
                            blobs_.root().string() + "; pull or push the image again");
            // The cache is shared between images by diff ID, so a manifest must
            // not be able to plant other content under a diff ID it names.
            auto actual = uncompressed_digest(blob);
            if (actual != diff_id)
                throw Error("layer " + layer.digest.str() + " uncompresses to " + actual.str() +
                            " but the image config names diff ID " + diff_id.str() +
                            "; the image is corrupt");
            fs::TempDir temp(root_, ".unpack-");
            if (::chmod(temp.path().c_str(), 0755) != 0)
                throw sys_error("chmod", temp.path().string(), errno);
            try {
                // Each layer is a lower dir of its own: its deletions must
                // stay as overlayfs whiteouts to hide the layers below.
                oci::LayerApplyOptions apply;
                apply.overlay_whiteouts = true;
                oci::apply_layer(blob, temp.path(), apply);
            } catch (const Error& e) {
                throw Error("unpack layer " + layer.digest.str() + " (diff ID " + diff_id.str() +
                            "): " + e.what());
            }
            if (::rename(temp.path().c_str(), dir.c_str()) == 0) {
                temp.release();
                fs::fsync_dir(root_);
            } else if (!is_real_directory(dir)) {
                // Another process won the race when the target exists; else fail.
                throw sys_error("rename unpacked layer to", dir.string(), errno);
            }
        }
    } catch (...) {
        forget();
        throw;
    }
    forget();
    return dir;
}

bool LayerCache::adopt(const std::filesystem::path& dir, const oci::Digest& diff_id) {
    if (diff_id.empty()) throw Error("adopt " + dir.string() + ": no diff ID");
    const std::string key = diff_id.algorithm() + "-" + diff_id.encoded();
    const auto target = root_ / (diff_id.algorithm() == "sha256" ? diff_id.encoded() : key);
    if (is_real_directory(target)) return false;
    if (::renameat2(AT_FDCWD, dir.c_str(), AT_FDCWD, target.c_str(), RENAME_NOREPLACE) != 0) {
        if (errno == EEXIST || errno == ENOTEMPTY) return false;
        if (errno == EXDEV) return false;  // another file system: unpack later instead
        throw sys_error("rename layer dir into the cache as", target.string(), errno);
    }
    fs::fsync_dir(root_);
    return true;
}

std::vector<std::filesystem::path> LayerCache::unpack_image(const oci::Manifest& manifest,
                                                            const oci::ImageConfig& config) {
    if (manifest.layers.size() != config.diff_ids.size())
        throw Error("image manifest lists " + std::to_string(manifest.layers.size()) +
                    " layers but its config (" + manifest.config.digest.str() + ") has " +
                    std::to_string(config.diff_ids.size()) + " diff IDs; the image is corrupt");
    std::vector<std::filesystem::path> dirs;
    dirs.reserve(manifest.layers.size());
    for (size_t i = 0; i < manifest.layers.size(); i++)
        dirs.push_back(unpacked(manifest.layers[i], config.diff_ids[i]));
    return dirs;
}

std::filesystem::path LayerCache::empty_dir() const {
    auto dir = root_ / "empty";
    if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST)
        throw sys_error("mkdir", dir.string(), errno);
    return dir;
}

// -------------------------------------------------------------- OverlayMount

OverlayMount::OverlayMount(const std::vector<std::filesystem::path>& lowers_bottom_first,
                           const std::filesystem::path& upper, const std::filesystem::path& work,
                           const std::filesystem::path& target) {
    std::vector<stdfs::path> lowers(lowers_bottom_first.rbegin(), lowers_bottom_first.rend());
    if (lowers.empty()) {
        // overlayfs needs at least one lower: an empty directory beside upper.
        auto empty = stdfs::absolute(upper).lexically_normal().parent_path() / ".empty-lower";
        fs::make_dirs(empty);
        lowers.push_back(empty);
    }
    for (auto& l : lowers)
        l = stdfs::absolute(l).lexically_normal();
    auto abs_upper = stdfs::absolute(upper).lexically_normal();
    auto abs_work = stdfs::absolute(work).lexically_normal();
    auto abs_target = stdfs::absolute(target).lexically_normal();
    fs::make_dirs(abs_upper);
    fs::make_dirs(abs_work);
    fs::make_dirs(abs_target);

    MountFailure failure{ENOSYS, "new mount API disabled by CASCADE_OVERLAY_MOUNT=legacy"};
    if (force_legacy_mount() ||
        !mount_with_fsconfig(lowers, abs_upper, abs_work, abs_target, failure)) {
        if (failure.err != ENOSYS && failure.err != EINVAL)
            throw sys_error(failure.detail + "; mount overlay on", abs_target.string(),
                            failure.err);
        try {
            mount_overlay_legacy(lowers, abs_upper, abs_work, abs_target);
        } catch (const Error& e) {
            throw Error(std::string(e.what()) + " (new mount API: " + failure.detail + ": " +
                        std::strerror(failure.err) + ")");
        }
    }
    target_ = abs_target;
}

OverlayMount::OverlayMount(OverlayMount&& o) noexcept : target_(std::move(o.target_)) {
    o.target_.clear();
}

OverlayMount& OverlayMount::operator=(OverlayMount&& o) noexcept {
    if (this != &o) {
        if (!target_.empty()) ::umount2(target_.c_str(), MNT_DETACH);
        target_ = std::move(o.target_);
        o.target_.clear();
    }
    return *this;
}

OverlayMount::~OverlayMount() {
    if (!target_.empty()) ::umount2(target_.c_str(), MNT_DETACH);
}

void OverlayMount::unmount() {
    if (target_.empty()) return;
    auto target = std::move(target_);
    target_.clear();
    if (::umount2(target.c_str(), MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT)
        throw sys_error("unmount", target.string(), errno);
}

std::filesystem::path OverlayMount::release() {
    auto t = std::move(target_);
    target_.clear();
    return t;
}

void unmount_if_mounted(const std::filesystem::path& target) {
    // Mounts may be stacked; detach until nothing is mounted there.
    for (int i = 0; i < 64; i++) {
        if (::umount2(target.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW) == 0) continue;
        if (errno == EINVAL || errno == ENOENT || errno == ENOTDIR) return;
        throw sys_error("unmount", target.string(), errno);
    }
    throw Error("unmount " + target.string() + ": still mounted after 64 unmounts");
}

}  // namespace cascade::runtime
