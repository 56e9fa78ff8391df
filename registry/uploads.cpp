#include "registry/uploads.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <random>

#include "oci/error.hpp"
#include "oci/fs.hpp"

namespace cascade::registry {

class UploadSessions::Session {
  public:
    std::mutex mu;
    std::string repository;
    std::filesystem::path dir;
    fs::Fd fd;                          // the data file, opened for appending
    std::unique_ptr<oci::Sha256> hash;  // of the data so far; null: recompute
    int64_t size = 0;
    bool gone = false;

    std::filesystem::path data_path() const { return dir / "data"; }

    void require_live(const std::string& id) const {
        if (gone) throw Error("upload " + id + " is finished or cancelled");
    }

    // Rebuilds the running hash from the data file (after a restart or a
    // failed write).
    void ensure_hash() {
        if (hash) return;
        auto h = std::make_unique<oci::Sha256>();
        fs::Fd in = fs::open_or_throw(data_path(), O_RDONLY);
        std::vector<char> buf(1 << 18);
        int64_t total = 0;
        while (true) {
            ssize_t n = ::read(in.get(), buf.data(), buf.size());
            if (n < 0) {
                if (errno == EINTR) continue;
                throw sys_error("read", data_path().string(), errno);
            }
            if (n == 0) break;
            h->update(buf.data(), static_cast<size_t>(n));
            total += n;
        }
        hash = std::move(h);
        size = total;
    }
};

namespace {

std::string new_uuid() {
    static thread_local std::mt19937_64 rng{std::random_device{}()};
    uint64_t hi = rng(), lo = rng();
    hi = (hi & ~0xF000ULL) | 0x4000ULL;                         // version 4
    lo = (lo & 0x3FFFFFFFFFFFFFFFULL) | 0x8000000000000000ULL;  // variant 10
    char buf[40];
    std::snprintf(buf, sizeof buf, "%08x-%04x-%04x-%04x-%012llx", static_cast<unsigned>(hi >> 32),
                  static_cast<unsigned>((hi >> 16) & 0xFFFF), static_cast<unsigned>(hi & 0xFFFF),
                  static_cast<unsigned>(lo >> 48),
                  static_cast<unsigned long long>(lo & 0xFFFFFFFFFFFFULL));
    return buf;
}

bool valid_id(const std::string& id) {
    if (id.size() != 36) return false;
    for (size_t i = 0; i < id.size(); i++) {
        char c = id[i];
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? c != '-' : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    }
    return true;
}

}  // namespace

std::filesystem::path UploadSessions::dir_of(const std::string& id) const {
    return blobs_.ingest_dir() / ("upload-" + id);
}

std::string UploadSessions::create(const std::string& repository) {
    std::string id = new_uuid();
    auto dir = dir_of(id);
    if (::mkdir(dir.c_str(), 0700) != 0) throw sys_error("create upload directory", dir, errno);
    auto s = std::make_shared<Session>();
    try {
        s->repository = repository;
        s->dir = dir;
        fs::write_file_atomic(dir / "repository", repository);
        s->fd = fs::open_or_throw(s->data_path(), O_WRONLY | O_CREAT | O_EXCL | O_APPEND, 0600);
        s->hash = std::make_unique<oci::Sha256>();
    } catch (...) {
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
        throw;
    }
    std::lock_guard lock(mu_);
    sessions_[id] = std::move(s);
    return id;
}

std::shared_ptr<UploadSessions::Session> UploadSessions::load(const std::string& repository,
                                                              const std::string& id) {
    auto dir = dir_of(id);
    struct stat st;
    if (::stat((dir / "repository").c_str(), &st) != 0) return nullptr;
    auto s = std::make_shared<Session>();
    s->dir = dir;
    s->repository = fs::read_file(dir / "repository");
    if (s->repository != repository) return nullptr;
    int fd = ::open(s->data_path().c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return nullptr;
        throw sys_error("open", s->data_path(), errno);
    }
    s->fd.reset(fd);
    struct stat data;
    if (::fstat(fd, &data) != 0) throw sys_error("stat", s->data_path(), errno);
    s->size = data.st_size;  // the hash is rebuilt on first use
    return s;
}

std::shared_ptr<UploadSessions::Session> UploadSessions::find(const std::string& repository,
                                                              const std::string& id) {
    if (!valid_id(id)) return nullptr;
    std::lock_guard lock(mu_);
    auto it = sessions_.find(id);
    if (it != sessions_.end()) {
        struct stat st;
        // Removed behind our back (cleanup_ingest): the session is over.
        if (::stat(it->second->dir.c_str(), &st) != 0) {
            sessions_.erase(it);
            return nullptr;
        }
        return it->second->repository == repository ? it->second : nullptr;
    }
    auto s = load(repository, id);
    if (s) sessions_[id] = s;
    return s;
}

void UploadSessions::forget(const std::string& id) {
    std::lock_guard lock(mu_);
    sessions_.erase(id);
}

bool UploadSessions::cancel(const std::string& repository, const std::string& id) {
    auto s = find(repository, id);
    if (!s) return false;
    {
        std::lock_guard lock(s->mu);
        if (s->gone) return false;
        s->gone = true;
        s->fd.reset();
        fs::remove_tree(s->dir);
    }
    forget(id);
    return true;
}

int64_t UploadSessions::size(Session& s) {
    std::lock_guard lock(s.mu);
    return s.size;
}

bool UploadSessions::append(Session& s, const std::function<bool(const Receiver&)>& read) {
    std::lock_guard lock(s.mu);
    if (s.gone) throw Error("upload in " + s.dir.string() + " is finished or cancelled");
    s.ensure_hash();
    int64_t good = s.size;
    std::string error;
    bool ok = read([&](const char* data, size_t len) {
        try {
            fs::write_all(s.fd.get(), std::string_view(data, len), s.data_path().string());
        } catch (const std::exception& e) {
            error = e.what();
            return false;
        }
        s.hash->update(data, len);
        s.size += static_cast<int64_t>(len);
        good = s.size;
        return true;
    });
    if (!error.empty()) {
        // Drop a partial write so the file and the running hash agree.
        if (::ftruncate(s.fd.get(), good) != 0) s.hash.reset();
        throw Error("upload to " + s.dir.string() + ": " + error);
    }
    return ok;
}

void UploadSessions::finish(const std::string& id, Session& s, const oci::Digest& expected) {
    {
        std::lock_guard lock(s.mu);
        s.require_live(id);
        s.ensure_hash();
        oci::Digest actual = s.hash->digest();
        s.hash.reset();
        s.gone = true;
        if (actual != expected) {
            s.fd.reset();
            fs::remove_tree(s.dir);
            forget(id);
            throw DigestMismatch("digest mismatch: upload " + id + " has " +
                                 std::to_string(s.size) + " bytes with digest " + actual.str() +
                                 ", not " + expected.str() + "; the upload was discarded");
        }
        try {
            if (::fsync(s.fd.get()) != 0) throw sys_error("fsync", s.data_path(), errno);
            s.fd.reset();
            blobs_.adopt_file(s.data_path(), actual);
        } catch (...) {
            fs::remove_tree(s.dir);
            forget(id);
            throw;
        }
        fs::remove_tree(s.dir);
    }
    forget(id);
}

}  // namespace cascade::registry
