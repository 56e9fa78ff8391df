#include "runtime/exit_watcher.hpp"

#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <optional>
#include <vector>

#include "oci/error.hpp"

namespace cascade::runtime {

namespace {

// Reaps `pidfd`'s process if it is our child and has exited. Returns the exit
// status (128+signal when killed), -1 when it is not our child, nullopt when
// it is our child but still running.
std::optional<int> reap(int pidfd) {
    siginfo_t info{};
    int rc;
    do {
        rc = waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd), &info,
                    WEXITED | WNOHANG);
    } while (rc < 0 && errno == EINTR);
    if (rc < 0) return -1;  // ECHILD: exited, but someone else's child
    if (info.si_pid == 0) return std::nullopt;
    if (info.si_code == CLD_EXITED) return info.si_status;
    return 128 + info.si_status;
}

}  // namespace

void become_child_subreaper() {
    if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0)
        throw sys_error("prctl(PR_SET_CHILD_SUBREAPER)", "", errno);
}

ExitWatcher::ExitWatcher() {
    epoll_.reset(epoll_create1(EPOLL_CLOEXEC));
    if (!epoll_) throw sys_error("epoll_create1", "", errno);
    wake_.reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!wake_) throw sys_error("eventfd", "", errno);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = wake_.get();
    if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, wake_.get(), &ev) != 0)
        throw sys_error("epoll_ctl(ADD eventfd)", "", errno);
    thread_ = std::thread([this] { run(); });
}

ExitWatcher::~ExitWatcher() {
    stop_ = true;
    uint64_t one = 1;
    [[maybe_unused]] auto n = write(wake_.get(), &one, sizeof one);
    if (thread_.joinable()) thread_.join();
    std::lock_guard lock(mu_);
    for (auto& [fd, entry] : entries_)
        reap(fd);  // leaves no zombie of a child that already exited
    entries_.clear();
}

bool ExitWatcher::watch(int pid, Callback on_exit) {
    // glibc 2.36's <sys/pidfd.h> lacks extern "C"; the raw syscall is portable.
    int fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
    if (fd < 0) {
        if (errno == ESRCH) return false;
        throw sys_error("pidfd_open", "pid " + std::to_string(pid), errno);
    }
    fs::Fd pidfd(fd);
    std::lock_guard lock(mu_);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0)
        throw sys_error("epoll_ctl(ADD pidfd)", "pid " + std::to_string(pid), errno);
    entries_[fd] = Entry{std::move(pidfd), pid, std::move(on_exit)};
    return true;
}

size_t ExitWatcher::size() const {
    std::lock_guard lock(mu_);
    return entries_.size();
}

void ExitWatcher::run() {
    std::vector<epoll_event> events(32);
    while (!stop_) {
        int n = epoll_wait(epoll_.get(), events.data(), static_cast<int>(events.size()), -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            return;  // cannot happen with valid fds; nothing sensible to do
        }
        for (int i = 0; i < n && !stop_; ++i) {
            int fd = events[i].data.fd;
            if (fd == wake_.get()) {
                uint64_t value;
                [[maybe_unused]] auto r = read(wake_.get(), &value, sizeof value);
                continue;
            }
            auto status = reap(fd);
            if (!status) continue;  // spurious: our child is still running
            Entry entry;
            {
                std::lock_guard lock(mu_);
                auto it = entries_.find(fd);
                if (it == entries_.end()) continue;
                epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
                entry = std::move(it->second);
                entries_.erase(it);
            }
            if (entry.on_exit) entry.on_exit(*status);
        }
    }
}

}  // namespace cascade::runtime
