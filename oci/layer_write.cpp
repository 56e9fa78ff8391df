// write_layer: a directory tree → a reproducible layer tar (+gzip|zstd), with
// the diff ID (sha256 of the tar) and the digest (sha256 of the compressed
// bytes) computed in the same single pass as the write.
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <map>
#include <memory>
#include <vector>

#include "oci/error.hpp"
#include "oci/fs.hpp"
#include "oci/image.hpp"
#include "oci/layer.hpp"
#include "oci/media_types.hpp"
#include "oci/pgzip.hpp"

namespace cascade::oci {

namespace {

constexpr std::string_view kWhiteoutPrefix = ".wh.";
constexpr std::string_view kOpaqueMarker = ".wh..wh..opq";
constexpr std::string_view kOverlayXattrPrefix = "trusted.overlay.";

// ---- output: hash the tar, compress, hash and write the compressed bytes ----

class LayerSink {
  public:
    LayerSink(int fd, std::string path, Compression c, int level, unsigned threads)
        : fd_(fd), path_(std::move(path)), compression_(c) {
        if (c == Compression::Gzip) {
            // Blocks deflated on all cores; MTIME 0, no FNAME and no FCOMMENT
            // in the header, so the bytes depend only on the input.
            gzip_ = std::make_unique<ParallelGzip>([this](const void* d, size_t n) { emit(d, n); },
                                                   level, threads, path_);
        } else if (c == Compression::Zstd) {
            if (level == -1) level = ZSTD_CLEVEL_DEFAULT;
            if (level < 1 || level > ZSTD_maxCLevel())
                throw Error("zstd compression level " + std::to_string(level) +
                            " is out of range (1.." + std::to_string(ZSTD_maxCLevel()) +
                            ", or -1 for the default)");
            zstd_ = ZSTD_createCCtx();
            if (!zstd_) throw Error("zstd: cannot create a compression context");
            check_zstd(ZSTD_CCtx_setParameter(zstd_, ZSTD_c_compressionLevel, level));
            check_zstd(ZSTD_CCtx_setParameter(zstd_, ZSTD_c_checksumFlag, 1));
            // Multi-threaded zstd gives the same bytes for every nbWorkers >= 1
            // (a libzstd built without threads refuses the parameter: stay
            // single-threaded, which differs, but consistently so).
            ZSTD_bounds workers = ZSTD_cParam_getBounds(ZSTD_c_nbWorkers);
            if (!ZSTD_isError(workers.error) && workers.upperBound >= 1) {
                int n = static_cast<int>(compression_threads(threads));
                check_zstd(ZSTD_CCtx_setParameter(zstd_, ZSTD_c_nbWorkers,
                                                  std::min(std::max(n, 1), workers.upperBound)));
            }
        }
        out_buf_.resize(1 << 17);
    }
    ~LayerSink() {
        if (zstd_) ZSTD_freeCCtx(zstd_);
    }
    LayerSink(const LayerSink&) = delete;
    LayerSink& operator=(const LayerSink&) = delete;

    void feed(const void* data, size_t size) {
        tar_hash_.update(data, size);
        switch (compression_) {
            case Compression::None:
                emit(data, size);
                break;
            case Compression::Gzip:
                gzip_->write(data, size);
                break;
            case Compression::Zstd:
                zstd_some(data, size, ZSTD_e_continue);
                break;
        }
    }

    void finish() {
        if (compression_ == Compression::Gzip) gzip_->finish();
        if (compression_ == Compression::Zstd) zstd_some(nullptr, 0, ZSTD_e_end);
    }

    Digest diff_id() { return tar_hash_.digest(); }
    Digest digest() { return out_hash_.digest(); }
    int64_t size() const { return static_cast<int64_t>(out_hash_.bytes()); }

  private:
    void emit(const void* data, size_t size) {
        out_hash_.update(data, size);
        fs::write_all(fd_, std::string_view(static_cast<const char*>(data), size), path_);
    }

    void zstd_some(const void* data, size_t size, ZSTD_EndDirective mode) {
        ZSTD_inBuffer in{data, size, 0};
        while (true) {
            ZSTD_outBuffer out{out_buf_.data(), out_buf_.size(), 0};
            size_t remaining = check_zstd(ZSTD_compressStream2(zstd_, &out, &in, mode));
            if (out.pos) emit(out_buf_.data(), out.pos);
            bool done = mode == ZSTD_e_end ? remaining == 0 : in.pos == in.size;
            if (done) break;
        }
    }

    size_t check_zstd(size_t rc) {
        if (ZSTD_isError(rc))
            throw Error("zstd: " + std::string(ZSTD_getErrorName(rc)) + " writing " + path_);
        return rc;
    }

    int fd_;
    std::string path_;
    Compression compression_;
    std::unique_ptr<ParallelGzip> gzip_;
    ZSTD_CCtx* zstd_ = nullptr;
    std::string out_buf_;
    Sha256 tar_hash_;
    Sha256 out_hash_;
};

// libarchive calls back into C++ here; exceptions must not cross its frames,
// so they are parked and rethrown once libarchive returns.
struct WriteContext {
    LayerSink* sink;
    std::exception_ptr error;
};

la_ssize_t write_callback(struct archive* a, void* data, const void* buffer, size_t length) {
    auto* ctx = static_cast<WriteContext*>(data);
    try {
        ctx->sink->feed(buffer, length);
        return static_cast<la_ssize_t>(length);
    } catch (...) {
        ctx->error = std::current_exception();
        archive_set_error(a, EIO, "layer output failed");
        return -1;
    }
}

struct ArchiveWriteDeleter {
    void operator()(struct archive* a) const { archive_write_free(a); }
};
struct EntryDeleter {
    void operator()(struct archive_entry* e) const { archive_entry_free(e); }
};

// ---- the tree walk -----------------------------------------------------------

struct DirCloser {
    void operator()(DIR* d) const { closedir(d); }
};

enum class NodeKind { Real, Whiteout, Opaque };

struct Node {
    std::string tar_name;  // base name in the tar
    std::filesystem::path source;
    struct stat st {};
    NodeKind kind = NodeKind::Real;
};

// Opaque markers first, then whiteouts, then everything else: the image spec
// asks that whiteouts precede their siblings.
int rank(const Node& n) {
    if (n.kind == NodeKind::Opaque) return 0;
    if (n.kind == NodeKind::Whiteout) return 1;
    return 2;
}

std::optional<std::string> get_xattr(const std::filesystem::path& p, const char* name) {
    std::string buf(256, '\0');
    while (true) {
        ssize_t n = ::lgetxattr(p.c_str(), name, buf.data(), buf.size());
        if (n >= 0) {
            buf.resize(static_cast<size_t>(n));
            return buf;
        }
        if (errno == ENODATA || errno == ENOTSUP) return std::nullopt;
        if (errno != ERANGE) throw sys_error(std::string("getxattr ") + name, p.string(), errno);
        ssize_t need = ::lgetxattr(p.c_str(), name, nullptr, 0);
        if (need < 0) throw sys_error(std::string("getxattr ") + name, p.string(), errno);
        buf.resize(static_cast<size_t>(need) + 1);
    }
}

std::vector<std::string> list_xattrs(const std::filesystem::path& p) {
    std::string buf;
    while (true) {
        ssize_t need = ::llistxattr(p.c_str(), nullptr, 0);
        if (need < 0) {
            if (errno == ENOTSUP) return {};
            throw sys_error("listxattr", p.string(), errno);
        }
        if (need == 0) return {};
        buf.resize(static_cast<size_t>(need));
        ssize_t n = ::llistxattr(p.c_str(), buf.data(), buf.size());
        if (n < 0) {
            if (errno == ERANGE) continue;  // grew in between
            throw sys_error("listxattr", p.string(), errno);
        }
        buf.resize(static_cast<size_t>(n));
        break;
    }
    std::vector<std::string> names;
    size_t start = 0;
    while (start < buf.size()) {
        size_t end = buf.find('\0', start);
        if (end == std::string::npos) end = buf.size();
        if (end > start) names.emplace_back(buf.substr(start, end - start));
        start = end + 1;
    }
    std::sort(names.begin(), names.end());
    return names;
}

class TreeWriter {
  public:
    TreeWriter(struct archive* a, const LayerWriteOptions& options, std::optional<int64_t> clamp)
        : a_(a), options_(options), clamp_(clamp) {}

    void write_dir_contents(const std::filesystem::path& dir, const std::string& prefix) {
        struct stat dir_st {};
        if (::lstat(dir.c_str(), &dir_st) != 0) throw sys_error("lstat", dir.string(), errno);
        std::vector<Node> nodes;
        if (options_.overlay_upper) {
            check_overlay_features(dir);
            auto opaque = get_xattr(dir, "trusted.overlay.opaque");
            if (opaque && *opaque == "y") {
                Node n;
                n.tar_name = std::string(kOpaqueMarker);
                n.source = dir;
                n.st = dir_st;
                n.kind = NodeKind::Opaque;
                nodes.push_back(std::move(n));
            }
        }
        std::unique_ptr<DIR, DirCloser> d(::opendir(dir.c_str()));
        if (!d) throw sys_error("opendir", dir.string(), errno);
        while (true) {
            errno = 0;
            struct dirent* e = ::readdir(d.get());
            if (!e) {
                if (errno) throw sys_error("readdir", dir.string(), errno);
                break;
            }
            std::string name = e->d_name;
            if (name == "." || name == "..") continue;
            Node n;
            n.source = dir / name;
            if (::lstat(n.source.c_str(), &n.st) != 0)
                throw sys_error("lstat", n.source.string(), errno);
            if (S_ISSOCK(n.st.st_mode)) continue;
            if (options_.overlay_upper && S_ISCHR(n.st.st_mode) && n.st.st_rdev == makedev(0, 0)) {
                n.kind = NodeKind::Whiteout;
                n.tar_name = std::string(kWhiteoutPrefix) + name;
            } else {
                if (name.rfind(kWhiteoutPrefix, 0) == 0)
                    throw Error("cannot write " + n.source.string() +
                                " into a layer: names starting with \".wh.\" mean deletion in "
                                "a layer tar; rename the file");
                if ((S_ISCHR(n.st.st_mode) || S_ISBLK(n.st.st_mode)) && !options_.keep_devices)
                    continue;
                n.tar_name = name;
            }
            nodes.push_back(std::move(n));
        }
        d.reset();
        std::sort(nodes.begin(), nodes.end(), [](const Node& x, const Node& y) {
            int rx = rank(x), ry = rank(y);
            if (rx != ry) return rx < ry;
            return x.tar_name < y.tar_name;
        });
        for (const auto& n : nodes) {
            std::string path = prefix.empty() ? n.tar_name : prefix + "/" + n.tar_name;
            write_node(n, path);
            if (n.kind == NodeKind::Real && S_ISDIR(n.st.st_mode))
                write_dir_contents(n.source, path);
        }
    }

    int64_t entries() const { return entries_; }

  private:
    void check_overlay_features(const std::filesystem::path& p) {
        // These overlayfs features keep data outside the upper dir; a tar
        // cannot express them.
        for (const char* x : {"trusted.overlay.redirect", "trusted.overlay.metacopy"})
            if (get_xattr(p, x))
                throw Error(p.string() + " carries " + x +
                            "; mount the overlay with redirect_dir=off,metacopy=off so its "
                            "upper dir can be written as a layer");
    }

    int64_t clamp(int64_t t) const { return clamp_ && t > *clamp_ ? *clamp_ : t; }

    void write_node(const Node& n, const std::string& path) {
        std::unique_ptr<struct archive_entry, EntryDeleter> e(archive_entry_new());
        archive_entry_copy_pathname(e.get(), path.c_str());
        archive_entry_set_mtime(e.get(), clamp(n.st.st_mtim.tv_sec), 0);

        if (n.kind != NodeKind::Real) {
            archive_entry_set_filetype(e.get(), AE_IFREG);
            archive_entry_set_perm(e.get(), 0);
            archive_entry_set_uid(e.get(), 0);
            archive_entry_set_gid(e.get(), 0);
            archive_entry_set_size(e.get(), 0);
            write_header(e.get(), path);
            return;
        }

        if (options_.overlay_upper) check_overlay_features(n.source);
        const struct stat& st = n.st;
        archive_entry_set_perm(e.get(), st.st_mode & 07777);
        archive_entry_set_uid(e.get(), st.st_uid);
        archive_entry_set_gid(e.get(), st.st_gid);
        add_xattrs(e.get(), n.source);

        fs::Fd file;
        if (S_ISREG(st.st_mode)) {
            archive_entry_set_filetype(e.get(), AE_IFREG);
            if (st.st_nlink > 1) {
                auto key = std::make_pair(st.st_dev, st.st_ino);
                auto it = links_.find(key);
                if (it != links_.end()) {
                    archive_entry_copy_hardlink(e.get(), it->second.c_str());
                    archive_entry_set_size(e.get(), 0);
                    write_header(e.get(), path);
                    return;
                }
                links_.emplace(key, path);
            }
            file = open_regular(n);
            archive_entry_set_size(e.get(), st.st_size);
        } else if (S_ISDIR(st.st_mode)) {
            archive_entry_set_filetype(e.get(), AE_IFDIR);
        } else if (S_ISLNK(st.st_mode)) {
            archive_entry_set_filetype(e.get(), AE_IFLNK);
            std::string target(static_cast<size_t>(st.st_size) + 1, '\0');
            ssize_t len = ::readlink(n.source.c_str(), target.data(), target.size());
            if (len < 0) throw sys_error("readlink", n.source.string(), errno);
            if (static_cast<size_t>(len) >= target.size())
                throw Error(n.source.string() + " changed while the layer was being written");
            target.resize(static_cast<size_t>(len));
            archive_entry_copy_symlink(e.get(), target.c_str());
        } else if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
            archive_entry_set_filetype(e.get(), S_ISCHR(st.st_mode) ? AE_IFCHR : AE_IFBLK);
            archive_entry_set_rdevmajor(e.get(), major(st.st_rdev));
            archive_entry_set_rdevminor(e.get(), minor(st.st_rdev));
        } else if (S_ISFIFO(st.st_mode)) {
            archive_entry_set_filetype(e.get(), AE_IFIFO);
        } else {
            return;
        }
        write_header(e.get(), path);
        if (file) copy_data(file.get(), n, path);
    }

    fs::Fd open_regular(const Node& n) {
        fs::Fd fd = fs::open_or_throw(n.source, O_RDONLY | O_NOFOLLOW);
        struct stat now {};
        if (::fstat(fd.get(), &now) != 0) throw sys_error("fstat", n.source.string(), errno);
        if (now.st_ino != n.st.st_ino || now.st_size != n.st.st_size)
            throw Error(n.source.string() +
                        " changed while the layer was being written; write the layer from a "
                        "tree nothing else modifies");
        return fd;
    }

    void copy_data(int fd, const Node& n, const std::string& path) {
        std::string& buf = buf_;  // one buffer for every file: no per-file memset
        if (buf.empty()) buf.resize(1 << 17);
        int64_t left = n.st.st_size;
        while (left > 0) {
            ssize_t r = ::read(fd, buf.data(), buf.size());
            if (r < 0) {
                if (errno == EINTR) continue;
                throw sys_error("read", n.source.string(), errno);
            }
            if (r == 0)
                throw Error(n.source.string() + " shrank while the layer was being written");
            size_t chunk = static_cast<size_t>(std::min<int64_t>(r, left));
            if (archive_write_data(a_, buf.data(), chunk) < 0) fail_archive(path);
            left -= static_cast<int64_t>(chunk);
        }
        if (archive_write_finish_entry(a_) != ARCHIVE_OK) fail_archive(path);
    }

    void add_xattrs(struct archive_entry* e, const std::filesystem::path& p) {
        for (const auto& name : list_xattrs(p)) {
            if (name.rfind(kOverlayXattrPrefix, 0) == 0) continue;
            auto value = get_xattr(p, name.c_str());
            if (!value) continue;
            archive_entry_xattr_add_entry(e, name.c_str(), value->data(), value->size());
        }
    }

    void write_header(struct archive_entry* e, const std::string& path) {
        int rc = archive_write_header(a_, e);
        if (rc < ARCHIVE_WARN) fail_archive(path);
        entries_++;
    }

    [[noreturn]] void fail_archive(const std::string& path) {
        const char* msg = archive_error_string(a_);
        throw Error("writing layer entry \"" + path + "\": " + (msg ? msg : "libarchive error"));
    }

    struct archive* a_;
    const LayerWriteOptions& options_;
    std::optional<int64_t> clamp_;
    std::map<std::pair<dev_t, ino_t>, std::string> links_;
    std::string buf_;
    int64_t entries_ = 0;
};

}  // namespace

std::string layer_media_type(Compression c) {
    switch (c) {
        case Compression::None:
            return std::string(media::kLayerTar);
        case Compression::Gzip:
            return std::string(media::kLayerGzip);
        case Compression::Zstd:
            return std::string(media::kLayerZstd);
    }
    throw Error("unknown layer compression");
}

LayerWriteResult write_layer(const std::filesystem::path& dir,
                             const std::filesystem::path& out_path,
                             const LayerWriteOptions& options) {
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0) throw sys_error("stat", dir.string(), errno);
    if (!S_ISDIR(st.st_mode)) throw Error("write_layer: " + dir.string() + " is not a directory");

    std::optional<int64_t> clamp = options.clamp_mtime ? options.clamp_mtime : source_date_epoch();
    fs::Fd out = fs::open_or_throw(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    try {
        LayerSink sink(out.get(), out_path.string(), options.compression, options.compression_level,
                       options.threads);
        WriteContext ctx{&sink, nullptr};
        std::unique_ptr<struct archive, ArchiveWriteDeleter> a(archive_write_new());
        if (!a) throw Error("libarchive: archive_write_new failed");
        auto check = [&](int rc, const char* what) {
            if (ctx.error) std::rethrow_exception(ctx.error);
            if (rc != ARCHIVE_OK) {
                const char* msg = archive_error_string(a.get());
                throw Error(std::string("writing layer ") + out_path.string() + ": " + what + ": " +
                            (msg ? msg : "libarchive error"));
            }
        };
        // pax "restricted": plain ustar headers unless an entry needs more
        // (long names, xattrs, large ids).
        check(archive_write_set_format_pax_restricted(a.get()), "set format");
        check(archive_write_set_bytes_per_block(a.get(), 10240), "block size");
        // No padding of the last block: the tar ends after its two zero blocks.
        check(archive_write_set_bytes_in_last_block(a.get(), 1), "last block");
        check(archive_write_open2(a.get(), &ctx, nullptr, write_callback, nullptr, nullptr),
              "open");

        TreeWriter writer(a.get(), options, clamp);
        try {
            writer.write_dir_contents(dir, "");
        } catch (...) {
            if (ctx.error) std::rethrow_exception(ctx.error);
            throw;
        }
        check(archive_write_close(a.get()), "close");
        sink.finish();
        if (::fsync(out.get()) != 0) throw sys_error("fsync", out_path.string(), errno);

        LayerWriteResult result;
        result.diff_id = sink.diff_id();
        result.digest = options.compression == Compression::None ? result.diff_id : sink.digest();
        result.size = sink.size();
        result.entries = writer.entries();
        result.media_type = layer_media_type(options.compression);
        return result;
    } catch (...) {
        out.reset();
        ::unlink(out_path.c_str());
        throw;
    }
}

}  // namespace cascade::oci
