// Reaching into a container's network namespace from the host: a socket
// created inside the namespace (by a thread that setns()'d there and back)
// stays in it, so the host can connect to a port only the container sees.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "oci/fs.hpp"

namespace cascade::runtime {

// Opens /proc/<pid>/ns/net. Throws when the process is gone.
fs::Fd open_netns(int pid);

// Connects to 127.0.0.1:port inside the network namespace `netns_fd`
// (-1: the caller's own). Returns the connected socket, or an empty Fd on
// refusal or timeout.
fs::Fd connect_in_netns(int netns_fd, uint16_t port, std::chrono::milliseconds timeout);

// A socket(domain, type | SOCK_CLOEXEC) created inside the network namespace
// `netns_fd` (-1: the caller's own), e.g. for libcurl's
// CURLOPT_OPENSOCKETFUNCTION. Throws when it cannot be made.
fs::Fd socket_in_netns(int netns_fd, int domain, int type);

// What one bounded connection attempt came to.
enum class ConnectResult {
    Connected,
    Refused,   // an answer (RST, no route, ...): trying again at once is pointless
    TimedOut,  // no answer in time, e.g. a SYN dropped by a full listen backlog
};

// TCP sockets inside one network namespace, for connecting often (the
// router's backends): a helper thread enters the namespace once and keeps a
// few unconnected sockets ready, so taking one costs no thread and no setns().
// The helper starts at the first take() and ends after kIdle without one (its
// sockets closed); the destructor ends it and closes everything, so the
// namespace is not kept alive by us after the object is gone. Thread-safe.
class NetnsSockets {
  public:
    // Sockets kept ready, refilled when half are taken: at the router's rates
    // (thousands of connections a second) the helper wakes every 4 of them.
    static constexpr size_t kPool = 8;
    static constexpr std::chrono::milliseconds kIdle{10000};

    // `netns_fd` is duplicated (-1: the caller's own namespace, no helper).
    // Throws when it cannot be duplicated.
    explicit NetnsSockets(int netns_fd);
    ~NetnsSockets();
    NetnsSockets(const NetnsSockets&) = delete;
    NetnsSockets& operator=(const NetnsSockets&) = delete;

    // A non-blocking AF_INET SOCK_STREAM socket (close-on-exec, TCP_NODELAY) in the
    // namespace. Throws when the namespace cannot be entered or the socket
    // cannot be made.
    fs::Fd take();
    // One attempt to connect to 127.0.0.1:port in the namespace, waiting at
    // most `timeout`. Returns the connected socket, ready for forwarding
    // (non-blocking, TCP_NODELAY), or an empty
    // Fd, and says why in `result` when given. A timeout of 0 does not wait
    // at all: TimedOut unless a pooled socket is at hand and the handshake is
    // done when connect() returns (typical on loopback).
    fs::Fd connect(uint16_t port, std::chrono::milliseconds timeout,
                   ConnectResult* result = nullptr);

    // For tests: sockets made by the helper so far, and whether it runs.
    size_t sockets_made() const;
    bool helper_running() const;

  private:
    fs::Fd take(bool wait);  // !wait: empty when the pool is (the helper refills it)
    struct State;
    std::unique_ptr<State> state_;
};

}  // namespace cascade::runtime
