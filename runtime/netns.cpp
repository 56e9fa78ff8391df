#include "runtime/netns.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

#include "oci/error.hpp"
#include "runtime/threads.hpp"

namespace cascade::runtime {

namespace {

constexpr int kSocketFlags = SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK;

// A socket of NetnsSockets' pool, in the calling thread's namespace: it will
// carry forwarded bytes, so TCP_NODELAY is set here and the router sets
// nothing per connection. Empty (errno set) when it cannot be made.
fs::Fd forwarding_socket() {
    fs::Fd fd(::socket(AF_INET, kSocketFlags, 0));
    if (fd) {
        int one = 1;
        ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return fd;
}

// A socket belongs to the network namespace of the thread that created it.
// A short-lived thread enters the namespace and creates it; the thread then
// ends, so no thread of the process is ever left in a foreign namespace.
fs::Fd socket_in(int netns_fd, int domain = AF_INET, int type = kSocketFlags) {
    if (netns_fd < 0) {
        int fd = ::socket(domain, type, 0);
        if (fd < 0) throw sys_error("socket", "", errno);
        return fs::Fd(fd);
    }
    int fd = -1, err = 0;
    const char* op = "";
    try {
        std::thread worker([&] {
            if (::setns(netns_fd, CLONE_NEWNET) != 0) {
                err = errno;
                op = "setns into network namespace";
                return;
            }
            fd = ::socket(domain, type, 0);
            if (fd < 0) {
                err = errno;
                op = "socket in network namespace";
            }
        });
        worker.join();
    } catch (const std::system_error& e) {
        throw Error(std::string("start a thread to enter a network namespace: ") + e.what());
    }
    if (fd < 0) throw sys_error(op, "fd " + std::to_string(netns_fd), err);
    return fs::Fd(fd);
}

}  // namespace

fs::Fd open_netns(int pid) {
    auto path = "/proc/" + std::to_string(pid) + "/ns/net";
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        throw sys_error("open network namespace of process " + std::to_string(pid) + " (gone?)",
                        path, errno);
    return fs::Fd(fd);
}

fs::Fd socket_in_netns(int netns_fd, int domain, int type) {
    return socket_in(netns_fd, domain, type | SOCK_CLOEXEC);
}

namespace {

using Clock = std::chrono::steady_clock;

// Connects the non-blocking `sock` to 127.0.0.1:port, waiting up to `timeout`;
// on success the socket is made blocking unless `keep_nonblocking`.
ConnectResult connect_socket(const fs::Fd& sock, uint16_t port, std::chrono::milliseconds timeout,
                             bool keep_nonblocking = false) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    if (::connect(sock.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
        if (errno == ETIMEDOUT) return ConnectResult::TimedOut;
        if (errno != EINPROGRESS && errno != EINTR) return ConnectResult::Refused;
        auto deadline = Clock::now() + timeout;
        bool failed = false;
        while (true) {
            auto left =
                std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
            // Timeout 0 still looks once: a loopback handshake is often done
            // when connect() returns.
            pollfd p{sock.get(), POLLOUT, 0};
            int n = ::poll(&p, 1, static_cast<int>(std::max<int64_t>(left.count(), 0)));
            if (n < 0) {
                if (errno == EINTR) continue;
                throw sys_error("poll connecting to port", std::to_string(port), errno);
            }
            if (n == 0) return ConnectResult::TimedOut;
            failed = (p.revents & (POLLERR | POLLHUP)) != 0;  // else: writable, connected
            break;
        }
        int so_error = 0;
        socklen_t len = sizeof so_error;
        if (failed && ::getsockopt(sock.get(), SOL_SOCKET, SO_ERROR, &so_error, &len) != 0)
            throw sys_error("getsockopt SO_ERROR on connection to port", std::to_string(port),
                            errno);
        if (so_error == ETIMEDOUT) return ConnectResult::TimedOut;
        if (failed) return ConnectResult::Refused;
    }
    if (keep_nonblocking) return ConnectResult::Connected;
    int flags = ::fcntl(sock.get(), F_GETFL);
    if (flags < 0 || ::fcntl(sock.get(), F_SETFL, flags & ~O_NONBLOCK) != 0)
        throw sys_error("make socket blocking (port", std::to_string(port) + ")", errno);
    return ConnectResult::Connected;
}

// A SYN dropped by a full listen backlog is sent again by the kernel only
// after a second; a new socket sends a new SYN at once. So a connection is
// tried with short attempts (kFirstAttempt, then doubling) within `timeout`.
constexpr auto kFirstAttempt = std::chrono::milliseconds(100);

}  // namespace

fs::Fd connect_in_netns(int netns_fd, uint16_t port, std::chrono::milliseconds timeout) {
    auto deadline = Clock::now() + timeout;
    auto attempt = kFirstAttempt;
    while (true) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        fs::Fd sock = socket_in(netns_fd);
        ConnectResult r = connect_socket(sock, port, std::min(attempt, left));
        if (r == ConnectResult::Connected) return sock;
        if (r == ConnectResult::Refused || Clock::now() >= deadline) return {};
        attempt *= 2;
    }
}

// ---- NetnsSockets --------------------------------------------------------------

struct NetnsSockets::State {
    fs::Fd netns;  // empty: the caller's own namespace
    mutable std::mutex mu;
    std::condition_variable refill;  // to the helper: take one, or stop
    std::condition_variable filled;  // to takers: a socket is ready, or the helper ended
    std::deque<fs::Fd> pool;
    std::thread helper;
    bool running = false;
    bool stop = false;
    int error = 0;  // why the helper ended, when it failed
    std::string failed_op;
    size_t made = 0;
    Clock::time_point last_take;

    void helper_main();
};

void NetnsSockets::State::helper_main() {
    set_forwarding_thread("netns-sockets");
    // This thread stays in the namespace until it ends; sockets it makes
    // belong to the namespace wherever they are used.
    int setns_errno = ::setns(netns.get(), CLONE_NEWNET) == 0 ? 0 : errno;
    std::unique_lock lock(mu);
    if (setns_errno != 0) {
        error = setns_errno;
        failed_op = "setns into network namespace";
    }
    while (error == 0 && !stop) {
        if (pool.size() < kPool) {
            // The missing ones at once, outside the lock.
            size_t missing = kPool - pool.size();
            lock.unlock();
            std::vector<fs::Fd> made_now;
            int socket_errno = 0;
            for (size_t i = 0; i < missing; i++) {
                fs::Fd fd = forwarding_socket();
                if (!fd) {
                    socket_errno = errno;
                    break;
                }
                made_now.push_back(std::move(fd));
            }
            lock.lock();
            for (auto& fd : made_now)
                pool.push_back(std::move(fd));
            made += made_now.size();
            if (!made_now.empty()) filled.notify_all();
            if (socket_errno != 0) {
                error = socket_errno;
                failed_op = "socket in network namespace";
                break;
            }
            continue;
        }
        auto idle_until = last_take + kIdle;
        // Refilled in batches: takers wake the helper only when half is gone.
        refill.wait_until(lock, idle_until, [&] { return stop || pool.size() <= kPool / 2; });
        if (!stop && pool.size() > kPool / 2 && Clock::now() >= last_take + kIdle) break;
    }
    pool.clear();  // idle or stopping: nothing of ours keeps the namespace
    running = false;
    filled.notify_all();
}

NetnsSockets::NetnsSockets(int netns_fd) : state_(std::make_unique<State>()) {
    if (netns_fd < 0) return;
    int fd = ::fcntl(netns_fd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0) throw sys_error("duplicate network namespace fd", std::to_string(netns_fd), errno);
    state_->netns = fs::Fd(fd);
}

NetnsSockets::~NetnsSockets() {
    {
        std::lock_guard lock(state_->mu);
        state_->stop = true;
    }
    state_->refill.notify_all();
    if (state_->helper.joinable()) state_->helper.join();
    state_->pool.clear();
}

fs::Fd NetnsSockets::take() {
    return take(true);
}

fs::Fd NetnsSockets::take(bool wait) {
    State& s = *state_;
    if (!s.netns) {
        fs::Fd fd = forwarding_socket();
        if (!fd) throw sys_error("socket", "", errno);
        return fd;
    }
    std::unique_lock lock(s.mu);
    s.last_take = Clock::now();
    bool started = false;
    while (s.pool.empty()) {
        if (!s.running) {
            if (started) {
                // The helper this call started ended without a socket.
                throw sys_error(s.failed_op,
                                "network namespace fd " + std::to_string(s.netns.get()), s.error);
            }
            if (s.helper.joinable()) s.helper.join();  // an idle one, ended
            s.error = 0;
            s.running = true;
            try {
                s.helper = std::thread([&s] { s.helper_main(); });
            } catch (const std::system_error& e) {
                s.running = false;
                throw Error(std::string("start a thread to enter a network namespace: ") +
                            e.what());
            }
            started = true;
        }
        if (!wait) return {};  // the helper is at work; the caller waits elsewhere
        s.filled.wait(lock, [&] { return !s.pool.empty() || !s.running; });
    }
    fs::Fd fd = std::move(s.pool.front());
    s.pool.pop_front();
    bool low = s.pool.size() <= kPool / 2;
    lock.unlock();
    if (low) s.refill.notify_one();
    return fd;
}

fs::Fd NetnsSockets::connect(uint16_t port, std::chrono::milliseconds timeout,
                             ConnectResult* result) {
    fs::Fd sock = take(timeout.count() > 0);
    if (!sock) {
        if (result) *result = ConnectResult::TimedOut;
        return {};
    }
    ConnectResult r = connect_socket(sock, port, timeout, true);
    if (result) *result = r;
    if (r != ConnectResult::Connected) return {};
    return sock;
}

size_t NetnsSockets::sockets_made() const {
    std::lock_guard lock(state_->mu);
    return state_->made;
}

bool NetnsSockets::helper_running() const {
    std::lock_guard lock(state_->mu);
    return state_->running;
}

}  // namespace cascade::runtime
