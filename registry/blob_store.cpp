#include "registry/blob_store.hpp"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>

#include "oci/error.hpp"

namespace cascade::registry {

namespace {

namespace stdfs = std::filesystem;

// Renames `from` to `to` unless `to` exists. Returns false when it existed (the
// caller drops its copy: blobs are named by content, so both are the same).
bool rename_no_replace(const stdfs::path& from, const stdfs::path& to) {
    if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) == 0)
        return true;
    int err = errno;
    if (err == EEXIST) return false;
    if (err == EINVAL || err == ENOSYS) {
        // File systems without RENAME_NOREPLACE: link(2) fails with EEXIST too.
        if (::link(from.c_str(), to.c_str()) == 0) {
            ::unlink(from.c_str());
            return true;
        }
        err = errno;
        if (err == EEXIST) return false;
    }
    throw sys_error("rename " + from.string() + " to", to.string(), err);
}

void require_digest(const oci::Digest& d, const std::string& what) {
    if (d.empty()) throw Error(what + ": empty digest");
}

// Newest modification time of a path and, for a directory, of what is inside.
int64_t newest_mtime(const stdfs::path& p) {
    struct stat st;
    if (::lstat(p.c_str(), &st) != 0) return 0;
    int64_t newest = st.st_mtim.tv_sec;
    if (S_ISDIR(st.st_mode)) {
        std::error_code ec;
        for (auto it = stdfs::directory_iterator(p, ec); !ec && it != stdfs::directory_iterator();
             it.increment(ec))
            newest = std::max(newest, newest_mtime(it->path()));
    }
    return newest;
}

}  // namespace

// ---- BlobWriter ----

BlobWriter::BlobWriter(std::filesystem::path blobs_root, std::filesystem::path temp_path, fs::Fd fd)
    : blobs_root_(std::move(blobs_root)),
      temp_path_(std::move(temp_path)),
      fd_(std::move(fd)),
      hash_(std::make_unique<oci::Sha256>()) {}

BlobWriter::BlobWriter(BlobWriter&& o) noexcept
    : blobs_root_(std::move(o.blobs_root_)),
      temp_path_(std::move(o.temp_path_)),
      fd_(std::move(o.fd_)),
      hash_(std::move(o.hash_)),
      buffer_(std::move(o.buffer_)),
      size_(o.size_),
      done_(o.done_) {
    o.done_ = true;
}

BlobWriter::~BlobWriter() {
    if (!done_) abort();
}

void BlobWriter::write(const void* data, size_t size) {
    if (done_) throw Error("write to blob ingest " + temp_path_.string() + " after commit/abort");
    hash_->update(data, size);
    size_ += static_cast<int64_t>(size);
    // HTTP bodies arrive in 4 KiB pieces; one write(2) per MiB instead.
    if (buffer_.size() + size > kBufferBytes) flush();
    if (size >= kBufferBytes)
        fs::write_all(fd_.get(), std::string_view(static_cast<const char*>(data), size),
                      temp_path_.string());
    else
        buffer_.append(static_cast<const char*>(data), size);
}

void BlobWriter::flush() {
    if (buffer_.empty()) return;
    fs::write_all(fd_.get(), buffer_, temp_path_.string());
    buffer_.clear();
}

void BlobWriter::abort() {
    if (done_) return;
    done_ = true;
    fd_.reset();
    ::unlink(temp_path_.c_str());
}

oci::Digest BlobWriter::commit(const std::optional<oci::Digest>& expected,
                               std::optional<int64_t> expected_size) {
    if (done_) throw Error("commit of blob ingest " + temp_path_.string() + " twice");
    if (expected_size && *expected_size != size_) {
        abort();
        throw Error("size mismatch: expected " + std::to_string(*expected_size) + " bytes, got " +
                    std::to_string(size_) +
                    (expected ? " (blob " + expected->str() + ")" : std::string()) +
                    "; the data was discarded, send it again");
    }
    oci::Digest actual = hash_->digest();
    if (expected && *expected != actual) {
        abort();
        throw Error("digest mismatch: expected " + expected->str() + ", got " + actual.str() +
                    " (" + std::to_string(size_) + " bytes); the data was discarded");
    }
    try {
        flush();
    } catch (...) {
        abort();
        throw;
    }
    if (::fchmod(fd_.get(), 0644) != 0) {
        int err = errno;
        abort();
        throw sys_error("chmod", temp_path_.string(), err);
    }
    if (::fsync(fd_.get()) != 0) {
        int err = errno;
        abort();
        throw sys_error("fsync", temp_path_.string(), err);
    }
    fd_.reset();
    auto dir = blobs_root_ / actual.algorithm();
    auto dest = dir / actual.encoded();
    try {
        fs::make_dirs(dir);
        if (!rename_no_replace(temp_path_, dest)) ::unlink(temp_path_.c_str());
        fs::fsync_dir(dir);
    } catch (...) {
        done_ = true;
        ::unlink(temp_path_.c_str());
        throw;
    }
    done_ = true;
    return actual;
}

// ---- BlobStore ----

BlobStore::BlobStore(std::filesystem::path root) : root_(std::move(root)) {
    fs::make_dirs(root_ / "blobs" / "sha256");
    fs::make_dirs(ingest_dir());
}

std::filesystem::path BlobStore::path(const oci::Digest& d) const {
    require_digest(d, "blob path");
    return root_ / "blobs" / d.algorithm() / d.encoded();
}

bool BlobStore::has(const oci::Digest& d) const {
    if (d.empty()) return false;
    struct stat st;
    return ::stat(path(d).c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::optional<int64_t> BlobStore::size(const oci::Digest& d) const {
    if (d.empty()) return std::nullopt;
    struct stat st;
    if (::stat(path(d).c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return std::nullopt;
    return static_cast<int64_t>(st.st_size);
}

std::string BlobStore::read(const oci::Digest& d) const {
    auto p = path(d);
    int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            throw Error("blob " + d.str() + " is not in the store at " + root_.string());
        throw sys_error("open", p.string(), errno);
    }
    ::close(fd);
    return fs::read_file(p);
}

BlobWriter BlobStore::begin() {
    std::string templ = (ingest_dir() / "blob-XXXXXX").string();
    int fd = ::mkostemp(templ.data(), O_CLOEXEC);
    if (fd < 0) throw sys_error("create ingest file", templ, errno);
    return BlobWriter(root_ / "blobs", templ, fs::Fd(fd));
}

oci::Digest BlobStore::put(std::string_view bytes) {
    BlobWriter w = begin();
    w.write(bytes);
    return w.commit();
}

oci::Digest BlobStore::put_file(const std::filesystem::path& file,
                                const std::optional<oci::Digest>& expected) {
    fs::Fd in = fs::open_or_throw(file, O_RDONLY);
    BlobWriter w = begin();
    char buf[1 << 16];
    while (true) {
        ssize_t n = ::read(in.get(), buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw sys_error("read", file.string(), errno);
        }
        if (n == 0) break;
        w.write(buf, static_cast<size_t>(n));
    }
    try {
        return w.commit(expected);
    } catch (const Error& e) {
        throw Error("import of " + file.string() + ": " + e.what());
    }
}

void BlobStore::adopt_file(const std::filesystem::path& file, const oci::Digest& digest) {
    require_digest(digest, "adopt " + file.string());
    {
        fs::Fd fd = fs::open_or_throw(file, O_RDONLY);
        if (::fchmod(fd.get(), 0644) != 0) throw sys_error("chmod", file.string(), errno);
        if (::fsync(fd.get()) != 0) throw sys_error("fsync", file.string(), errno);
    }
    auto dest = path(digest);
    fs::make_dirs(dest.parent_path());
    if (!rename_no_replace(file, dest)) ::unlink(file.c_str());
    fs::fsync_dir(dest.parent_path());
}

bool BlobStore::remove(const oci::Digest& d) {
    auto p = path(d);
    if (::unlink(p.c_str()) != 0) {
        if (errno == ENOENT) return false;
        throw sys_error("remove blob", p.string(), errno);
    }
    fs::fsync_dir(p.parent_path());
    return true;
}

std::vector<oci::Digest> BlobStore::list() const {
    std::vector<oci::Digest> out;
    std::error_code ec;
    for (auto alg = stdfs::directory_iterator(root_ / "blobs", ec);
         !ec && alg != stdfs::directory_iterator(); alg.increment(ec)) {
        if (!alg->is_directory()) continue;
        std::error_code ec2;
        for (auto f = stdfs::directory_iterator(alg->path(), ec2);
             !ec2 && f != stdfs::directory_iterator(); f.increment(ec2)) {
            if (!f->is_regular_file()) continue;
            auto d = oci::Digest::try_parse(alg->path().filename().string() + ":" +
                                            f->path().filename().string());
            if (d) out.push_back(*d);
        }
    }
    std::sort(out.begin(), out.end());
    return out;
}

void BlobStore::cleanup_ingest(int64_t max_age_seconds) {
    int64_t now = static_cast<int64_t>(::time(nullptr));
    std::error_code ec;
    std::vector<stdfs::path> doomed;
    for (auto it = stdfs::directory_iterator(ingest_dir(), ec);
         !ec && it != stdfs::directory_iterator(); it.increment(ec)) {
        if (max_age_seconds > 0 && now - newest_mtime(it->path()) <= max_age_seconds) continue;
        doomed.push_back(it->path());
    }
    for (auto& p : doomed)
        fs::remove_tree(p);
}

}  // namespace cascade::registry
