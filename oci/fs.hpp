// Small file-system primitives shared by every module: owned file descriptors,
// atomic writes (temp file, fsync, rename, fsync dir), temporary directories
// removed on scope exit, and whole-file reads.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace cascade::fs {

// An owned file descriptor, closed on destruction.
class Fd {
  public:
    Fd() = default;
    explicit Fd(int fd) : fd_(fd) {}
    Fd(Fd&& o) noexcept : fd_(o.release()) {}
    Fd& operator=(Fd&& o) noexcept;
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    ~Fd();

    int get() const { return fd_; }
    int release();
    void reset(int fd = -1);
    explicit operator bool() const { return fd_ >= 0; }

  private:
    int fd_ = -1;
};

// open(2) that throws cascade::Error naming the path on failure.
Fd open_or_throw(const std::filesystem::path& path, int flags, int mode = 0644);

// Writes all of `data` to fd, retrying on EINTR/short writes. Throws on error.
void write_all(int fd, std::string_view data, const std::string& what_path = {});

// Reads from fd until EOF, retrying on EINTR. Throws cascade::Error naming
// `where` on a read error, or when more than `limit` bytes arrive.
std::string read_all(int fd, const std::string& where, size_t limit = SIZE_MAX);

// Reads a whole file. Throws cascade::Error naming the path on failure.
std::string read_file(const std::filesystem::path& path);

// Writes `data` to `path` atomically: a temporary file in the same directory,
// fsync, rename over `path`, fsync of the directory. Readers see the old
// content or the new, never a part. `durable = false` skips both fsyncs, for
// files that live no longer than a process (a container's config.json,
// hosts, pid files): still never seen half-written, but gone with a crash
// of the machine, as is what they describe.
void write_file_atomic(const std::filesystem::path& path, std::string_view data, int mode = 0644,
                       bool durable = true);

// `n` random lower-case hex characters, for names of temporary files and
// containers (not for secrets).
std::string random_hex(size_t n);

// fsync of a directory, so a rename inside it is durable.
void fsync_dir(const std::filesystem::path& dir);

// Creates parent directories as needed (mode 0755).
void make_dirs(const std::filesystem::path& dir);

// Removes a tree (symlinks are removed, never followed); missing is fine.
void remove_tree(const std::filesystem::path& path);

// A fresh directory (mkdtemp under `parent`, default $TMPDIR or /tmp), removed
// with its contents when the object is destroyed unless release()d.
class TempDir {
  public:
    explicit TempDir(const std::filesystem::path& parent = {},
                     std::string_view prefix = "cascade-");
    TempDir(TempDir&& o) noexcept;
    TempDir& operator=(TempDir&&) = delete;
    TempDir(const TempDir&) = delete;
    ~TempDir();

    const std::filesystem::path& path() const { return path_; }
    std::filesystem::path release();

  private:
    std::filesystem::path path_;
};

}  // namespace cascade::fs
