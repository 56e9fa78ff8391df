// Process exits, watched through pidfds by one thread (epoll), and reaped with
// waitid(P_PIDFD) when the process is our child. Used by the supervisor, which
// is a child subreaper so that containers' init processes (left behind by
// `runc run --detach`) become its children.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <thread>

#include "oci/fs.hpp"

namespace cascade::runtime {

// Makes the calling process a child subreaper (prctl PR_SET_CHILD_SUBREAPER):
// orphaned descendants are reparented to it instead of to pid 1.
void become_child_subreaper();

class ExitWatcher {
  public:
    // Exit status: the exit code, 128+signal when killed, -1 when unknown
    // (the process was not our child, e.g. after a daemon restart).
    using Callback = std::function<void(int status)>;

    ExitWatcher();
    // Stops the thread, reaps watched children that already exited, closes
    // the pidfds. Processes still running are left alone.
    ~ExitWatcher();
    ExitWatcher(const ExitWatcher&) = delete;
    ExitWatcher& operator=(const ExitWatcher&) = delete;

    // Calls `on_exit` once, on the watcher thread, after `pid` exited (and was
    // reaped if it is our child). Returns false, without calling it, when the
    // process no longer exists.
    bool watch(int pid, Callback on_exit);

    // Number of processes watched (for tests and status).
    size_t size() const;

  private:
    struct Entry {
        fs::Fd pidfd;
        int pid = 0;
        Callback on_exit;
    };
    void run();

    fs::Fd epoll_;
    fs::Fd wake_;
    mutable std::mutex mu_;
    std::map<int, Entry> entries_;  // by pidfd
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

}  // namespace cascade::runtime
