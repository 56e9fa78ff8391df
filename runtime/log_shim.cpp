// The log shim (runtime/log_shim.hpp): libc and libstdc++ only.
#include "runtime/log_shim.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <vector>

namespace cascade::runtime {

std::string log_part_path(const std::string& log, int n) {
    return n == 0 ? log : log + "." + std::to_string(n);
}

namespace {

// Appends to the log, rotating by size. Write errors (a full disk) drop the
// data: the container must never block on its log.
class RotatingWriter {
  public:
    RotatingWriter(std::string path, int64_t max_bytes, int max_files)
        : path_(std::move(path)), max_bytes_(max_bytes), max_files_(max_files) {
        open_current();
    }

    // Whole lines stay in one file unless a line is longer than max_bytes.
    void write(std::string_view data) {
        while (!data.empty()) {
            const int64_t room = max_bytes_ - size_;
            if (static_cast<int64_t>(data.size()) <= room) return append(data);
            size_t take = 0;
            if (room > 0) {
                auto nl = data.rfind('\n', static_cast<size_t>(room - 1));
                if (nl != std::string_view::npos) take = nl + 1;
            }
            if (take == 0 && size_ == 0) take = static_cast<size_t>(max_bytes_);
            if (take > 0) {
                append(data.substr(0, take));
                data.remove_prefix(take);
            }
            rotate();
        }
    }

  private:
    void open_current() {
        fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
        struct stat st {};
        size_ = fd_ >= 0 && ::fstat(fd_, &st) == 0 ? st.st_size : 0;
    }

    void append(std::string_view data) {
        if (fd_ < 0) open_current();
        size_ += static_cast<int64_t>(data.size());
        while (fd_ >= 0 && !data.empty()) {
            ssize_t n = ::write(fd_, data.data(), data.size());
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) return;
            data.remove_prefix(static_cast<size_t>(n));
        }
    }

    // <log>.N-2 → <log>.N-1 … <log> → <log>.1, then a new <log>. The current
    // file is renamed last, so a reader that sees a new current file knows
    // the old one is complete.
    void rotate() {
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
        if (max_files_ <= 1) {
            ::unlink(path_.c_str());
        } else {
            for (int n = max_files_ - 1; n >= 1; n--)
                ::rename(log_part_path(path_, n - 1).c_str(), log_part_path(path_, n).c_str());
        }
        open_current();
    }

    std::string path_;
    int64_t max_bytes_;
    int max_files_;
    int fd_ = -1;
    int64_t size_ = 0;
};

// Removes <log>.N for N >= max_files (left when max_files was lowered).
void remove_parts_beyond(const std::string& log, int max_files) {
    const auto slash = log.rfind('/');
    const std::string dir = log.substr(0, slash == 0 ? 1 : slash);
    const std::string prefix = log.substr(slash + 1) + ".";
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr) return;
    while (dirent* e = ::readdir(d)) {
        std::string_view name = e->d_name;
        if (name.size() <= prefix.size() || name.substr(0, prefix.size()) != prefix) continue;
        auto digits = name.substr(prefix.size());
        if (digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string_view::npos)
            continue;
        if (std::stoi(std::string(digits)) >= max_files) ::unlinkat(::dirfd(d), e->d_name, 0);
    }
    ::closedir(d);
}

}  // namespace

// Reads stdin until EOF into the log. A line still unfinished after 100 ms
// without input, or longer than the buffer, is written as it is.
int run_log_shim(const char* spec) {
    char* end = nullptr;
    const long long max_bytes = std::strtoll(spec, &end, 10);
    if (*end != ':') return 2;
    const long max_files = std::strtol(end + 1, &end, 10);
    if (*end != ':' || max_bytes < 1 || max_files < 1) return 2;
    const std::string path = end + 1;
    // Blocked since the spawn; ignoring them discards what is pending.
    for (int sig : kLogShimIgnoredSignals)
        ::signal(sig, SIG_IGN);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    if (::chdir("/") != 0) return 2;
    ::prctl(PR_SET_NAME, kLogShimComm);

    remove_parts_beyond(path, static_cast<int>(max_files));
    RotatingWriter writer(path, max_bytes, static_cast<int>(max_files));
    constexpr size_t kBuffer = 64 * 1024;
    std::string pending;
    std::vector<char> buf(kBuffer);
    while (true) {
        pollfd p{0, POLLIN, 0};
        int r = ::poll(&p, 1, pending.empty() ? -1 : 100);
        if (r < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (r == 0) {
            writer.write(pending);
            pending.clear();
            continue;
        }
        ssize_t n = ::read(0, buf.data(), buf.size());
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            break;
        }
        if (n == 0) break;
        pending.append(buf.data(), static_cast<size_t>(n));
        if (auto nl = pending.rfind('\n'); nl != std::string::npos) {
            writer.write(std::string_view(pending).substr(0, nl + 1));
            pending.erase(0, nl + 1);
        }
        if (pending.size() >= kBuffer) {
            writer.write(pending);
            pending.clear();
        }
    }
    writer.write(pending);
    return 0;
}

}  // namespace cascade::runtime
