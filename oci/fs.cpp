#include "oci/fs.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <random>

#include "oci/error.hpp"

namespace cascade::fs {

Fd& Fd::operator=(Fd&& o) noexcept {
    if (this != &o) reset(o.release());
    return *this;
}

Fd::~Fd() {
    reset();
}

int Fd::release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
}

void Fd::reset(int fd) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
}

Fd open_or_throw(const std::filesystem::path& path, int flags, int mode) {
    int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
    if (fd < 0) throw sys_error("open", path.string(), errno);
    return Fd(fd);
}

void write_all(int fd, std::string_view data, const std::string& what_path) {
    size_t off = 0;
    while (off < data.size()) {
        ssize_t n = ::write(fd, data.data() + off, data.size() - off);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw sys_error("write", what_path, errno);
        }
        off += static_cast<size_t>(n);
    }
}

std::string read_all(int fd, const std::string& where, size_t limit) {
    std::string out;
    char buf[65536];
    while (true) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw sys_error("read", where, errno);
        }
        if (n == 0) break;
        out.append(buf, static_cast<size_t>(n));
        if (out.size() > limit)
            throw Error(where + " is larger than " + std::to_string(limit) +
                        " bytes; refusing to read it");
    }
    return out;
}

std::string read_file(const std::filesystem::path& path) {
    Fd fd = open_or_throw(path, O_RDONLY);
    return read_all(fd.get(), path.string());
}

std::string random_hex(size_t n) {
    static thread_local std::mt19937_64 rng{std::random_device{}()};
    static constexpr char kHex[] = "0123456789abcdef";
    std::string s;
    while (s.size() < n)
        s += kHex[rng() & 15];
    return s;
}

void fsync_dir(const std::filesystem::path& dir) {
    Fd fd = open_or_throw(dir, O_RDONLY | O_DIRECTORY);
    if (::fsync(fd.get()) != 0) throw sys_error("fsync", dir.string(), errno);
}

void write_file_atomic(const std::filesystem::path& path, std::string_view data, int mode,
                       bool durable) {
    auto dir = path.parent_path().empty() ? std::filesystem::path(".") : path.parent_path();
    auto temp = dir / ("." + path.filename().string() + ".tmp-" + random_hex(12));
    {
        Fd fd = open_or_throw(temp, O_WRONLY | O_CREAT | O_EXCL, mode);
        try {
            write_all(fd.get(), data, temp.string());
            if (::fchmod(fd.get(), static_cast<mode_t>(mode)) != 0)
                throw sys_error("chmod", temp.string(), errno);
            if (durable && ::fsync(fd.get()) != 0) throw sys_error("fsync", temp.string(), errno);
        } catch (...) {
            ::unlink(temp.c_str());
            throw;
        }
    }
    if (::rename(temp.c_str(), path.c_str()) != 0) {
        int err = errno;
        ::unlink(temp.c_str());
        throw sys_error("rename to", path.string(), err);
    }
    if (durable) fsync_dir(dir);
}

void make_dirs(const std::filesystem::path& dir) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) throw Error("create directory " + dir.string() + ": " + ec.message());
}

void remove_tree(const std::filesystem::path& path) {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
    if (ec && ec != std::errc::no_such_file_or_directory)
        throw Error("remove " + path.string() + ": " + ec.message());
}

TempDir::TempDir(const std::filesystem::path& parent, std::string_view prefix) {
    std::filesystem::path base = parent;
    if (base.empty()) {
        const char* t = std::getenv("TMPDIR");
        base = t && *t ? t : "/tmp";
    }
    make_dirs(base);
    std::string templ = (base / (std::string(prefix) + "XXXXXX")).string();
    if (!::mkdtemp(templ.data())) throw sys_error("mkdtemp", templ, errno);
    path_ = templ;
}

TempDir::TempDir(TempDir&& o) noexcept : path_(std::move(o.path_)) {
    o.path_.clear();
}

TempDir::~TempDir() {
    if (path_.empty()) return;
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
}

std::filesystem::path TempDir::release() {
    auto p = path_;
    path_.clear();
    return p;
}

}  // namespace cascade::fs
