#include "registry/uploads.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <random>
#include <string_view>
#include <vector>

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

    // Marks the session as active now (its data file's mtime). Best effort:
    // a session that cannot be touched merely expires earlier.
    void touch() {
        if (fd.get() >= 0) ::futimens(fd.get(), nullptr);
    }

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

constexpr std::string_view kDirPrefix = "upload-";

// Modification time of the session's data file (of its directory when the
// data file is missing), or nullopt when neither exists.
std::optional<std::chrono::nanoseconds> last_activity(const std::filesystem::path& dir) {
    struct stat st;
    if (::stat((dir / "data").c_str(), &st) != 0 && ::stat(dir.c_str(), &st) != 0)
        return std::nullopt;
    return std::chrono::seconds(st.st_mtim.tv_sec) + std::chrono::nanoseconds(st.st_mtim.tv_nsec);
}

std::chrono::nanoseconds wall_now() {
    struct timespec ts;
    ::clock_gettime(CLOCK_REALTIME, &ts);
    return std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
}

}  // namespace

bool UploadSessions::valid_id(const std::string& id) {
    if (id.size() != 36) return false;
    for (size_t i = 0; i < id.size(); i++) {
        char c = id[i];
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? c != '-' : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    }
    return true;
}

std::filesystem::path UploadSessions::dir_of(const std::string& id) const {
    return blobs_.ingest_dir() / (std::string(kDirPrefix) + id);
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
        if (it->second->repository != repository) return nullptr;
        it->second->touch();
        return it->second;
    }
    auto s = load(repository, id);
    if (s) {
        s->touch();
        sessions_[id] = s;
    }
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

bool UploadSessions::append(Session& s, const std::function<bool(const Receiver&)>& read,
                            std::optional<int64_t> expected_offset) {
    std::lock_guard lock(s.mu);
    if (s.gone) throw Error("upload in " + s.dir.string() + " is finished or cancelled");
    if (expected_offset && *expected_offset != s.size)
        throw UploadOffsetMismatch("the chunk starts at byte " + std::to_string(*expected_offset) +
                                       " but the upload has " + std::to_string(s.size) +
                                       " bytes; send the chunk that starts at byte " +
                                       std::to_string(s.size),
                                   s.size);
    s.ensure_hash();
    int64_t good = s.size;
    std::string error;
    // HTTP bodies arrive in 4 KiB pieces; one write(2) per MiB instead.
    constexpr size_t kBufferBytes = 1 << 20;
    std::string buffer;
    buffer.reserve(kBufferBytes);
    const std::string path = s.data_path().string();
    auto flush = [&] {
        if (buffer.empty()) return;
        fs::write_all(s.fd.get(), buffer, path);
        s.hash->update(buffer.data(), buffer.size());
        s.size += static_cast<int64_t>(buffer.size());
        good = s.size;
        buffer.clear();
    };
    bool ok = read([&](const char* data, size_t len) {
        buffer.append(data, len);
        if (buffer.size() < kBufferBytes) return true;
        try {
            flush();
        } catch (const std::exception& e) {
            error = e.what();
            return false;
        }
        return true;
    });
    // What arrived before a lost connection stays in the session.
    if (error.empty()) {
        try {
            flush();
        } catch (const std::exception& e) {
            error = e.what();
        }
    }
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

size_t UploadSessions::expire(int64_t max_idle_seconds) {
    auto limit = std::chrono::seconds(max_idle_seconds);
    std::vector<std::string> candidates;
    std::error_code ec;
    for (auto it = std::filesystem::directory_iterator(blobs_.ingest_dir(), ec);
         !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
        std::string name = it->path().filename().string();
        if (!name.starts_with(kDirPrefix)) continue;
        std::string id = name.substr(kDirPrefix.size());
        if (!valid_id(id)) continue;
        auto active = last_activity(it->path());
        if (active && wall_now() - *active > limit) candidates.push_back(id);
    }

    size_t removed = 0;
    for (const auto& id : candidates) {
        // Holding mu_ keeps find() from loading or handing out the session
        // while it is judged; a session busy with a request is in use, not idle.
        std::lock_guard lock(mu_);
        auto dir = dir_of(id);
        auto it = sessions_.find(id);
        std::unique_lock<std::mutex> session_lock;
        if (it != sessions_.end()) {
            session_lock = std::unique_lock(it->second->mu, std::try_to_lock);
            if (!session_lock.owns_lock() || it->second->gone) continue;
        }
        auto active = last_activity(dir);
        if (!active || wall_now() - *active <= limit) continue;
        if (it != sessions_.end()) {
            it->second->gone = true;
            it->second->fd.reset();
        }
        fs::remove_tree(dir);
        if (it != sessions_.end()) {
            session_lock.unlock();
            sessions_.erase(it);
        }
        removed++;
    }
    return removed;
}

}  // namespace cascade::registry
