// The router: host ports on 127.0.0.1 (by default) whose TCP connections are
// forwarded to the ready backends of a route, round robin. A backend is
// anything that can produce a connected socket (for replicas: a socket created
// inside the replica's network namespace).
//
// One shared HTTP port (`listen_http`) routes by the request's Host header,
// like OpenShift's router: `set_hostname("app-a", "app-a.localhost")`. The
// router reads only the request head (to find the Host), then forwards the
// connection as plain TCP to one ready backend of that route; the connection
// stays with that backend (keep-alive included). Errors are answered in HTTP
// and close the connection: 400 malformed head (or no Host), 404 unknown host
// (the known hostnames are not listed), 408 head not complete in time, 431 head
// larger than 16 KiB, 503 no ready backend (with Retry-After).
//
// A backend that dies before answering does not fail the client: until the
// first response of a connection is complete, the router keeps the bytes the
// client sent (up to 64 KiB) and holds back a small first response (an HTTP/1.x
// head with Content-Length, head + body up to 64 KiB). When the backend closes
// or resets before any response byte went to the client, and the request is
// safe to repeat (it starts with GET, HEAD, OPTIONS, PUT, DELETE or TRACE), the
// bytes are resent to another ready backend (each backend tried at most once).
// Larger, chunked or unsized responses stream at once; after the first
// response the connection is forwarded as plain TCP; anything else (POST,
// non-HTTP protocols) is never resent.
//
// Rollouts use it as: add the new backend, remove the old one from rotation
// (`remove_backend`), `drain` it (wait for its open connections to finish),
// then stop the old container.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "oci/fs.hpp"

namespace cascade::runtime {

struct Backend {
    std::string id;  // unique across routes, e.g. the container id
    // Returns a connected socket, or an empty Fd when the backend refuses.
    std::function<fs::Fd()> connect;
    // Optional, used instead of `connect` when set: one connection attempt
    // that waits at most `timeout`, setting `timed_out` when nothing answered
    // in time (e.g. a SYN dropped by the backend's full listen backlog, which
    // the kernel would resend only after a second) rather than refused. The
    // router gives each backend a short first attempt (20 ms), goes on to the
    // next one, and tries the timed-out ones again with longer attempts, for
    // at most 2 s per connection in all. The router's own thread may call it
    // with a timeout of 0 (a connection's first try): then it must not block.
    // The socket it returns is used as it is: non-blocking, with TCP_NODELAY
    // (as NetnsSockets::connect gives them).
    std::function<fs::Fd(std::chrono::milliseconds timeout, bool& timed_out)> attempt = {};
};

struct RouteStats {
    uint64_t connections = 0;  // accepted on the route's port, or routed to it by Host
    uint64_t failed = 0;       // closed (shared port: answered 503) because no backend accepted
    // Connections whose first request went to another backend because theirs
    // closed before answering (counted once per resend; see Router).
    uint64_t retried = 0;
    // Backend connection attempts that got no answer in their time (see
    // Backend::attempt); the connection went on to another attempt, or failed
    // when the 2 s were spent.
    uint64_t connect_timeouts = 0;
    uint64_t active = 0;
    uint64_t bytes_in = 0;   // client -> backend (on the shared port, the request head included)
    uint64_t bytes_out = 0;  // backend -> client
};

// The shared HTTP port's own counters: what was answered before a route was
// chosen. Routed connections count in their route's RouteStats.
struct HttpPortStats {
    uint64_t connections = 0;   // accepted
    uint64_t routed = 0;        // handed to a route (503s included)
    uint64_t bad_request = 0;   // 400, 408 and 431
    uint64_t unknown_host = 0;  // 404
};

class Router {
  public:
    Router();
    ~Router();  // closes listeners and every forwarded connection (RST); joins threads
    Router(const Router&) = delete;
    Router& operator=(const Router&) = delete;

    // Starts listening for `route` on host:port. Throws when the port is taken
    // (naming host:port). Re-adding an existing route with the same address is
    // a no-op; with another address the old listener is replaced.
    // An empty host means 127.0.0.1.
    void add_route(const std::string& route, const std::string& host, uint16_t port);
    // Closes the listener and forgets the route's rotation and stats; the open
    // connections continue and can still be drained by backend id.
    void remove_route(const std::string& route);

    // The shared HTTP port. Throws when host:port is taken (naming it). Calling
    // it again with the same address is a no-op; with another one the old
    // listener is replaced. Port 0 lets the kernel choose a new port (see
    // http_port()).
    // An empty host means 127.0.0.1.
    void listen_http(const std::string& host, uint16_t port);
    uint16_t http_port() const;  // 0 when not listening
    // Requests whose Host (case-insensitive, without :port, trailing dot
    // ignored) is `hostname` go to `route`. A route has one hostname: setting
    // another replaces it. Throws when the hostname is invalid or belongs to
    // another route. remove_route() clears the route's hostname too.
    void set_hostname(const std::string& route, const std::string& hostname);
    void clear_hostname(const std::string& route);
    // How long a client may take to send its request head (default 10 s).
    void set_header_timeout(std::chrono::milliseconds timeout);
    HttpPortStats http_stats() const;

    // Rotation. A connection goes to the next backend round robin; a backend
    // that refuses is skipped and the next one tried, so a client only sees a
    // failure when no backend of the route accepts. `connect` (or `attempt`)
    // runs on a worker thread (never the forwarding thread) and may block up
    // to its own timeout; throwing counts as refusing.
    // Backends may be added before the route's add_route. Adding an id that is
    // already known updates its connect function and puts it back in rotation;
    // an id known on another route throws.
    void add_backend(const std::string& route, Backend backend);
    void remove_backend(const std::string& route, const std::string& backend_id);
    std::vector<std::string> backends(const std::string& route) const;

    // Waits until no forwarded connection to `backend_id` remains open, or
    // `timeout` passes (then closes what remains). Returns true when drained
    // without forcing. Forced closes reset both sides (RST), so a client
    // reading to EOF does not take a cut-off response for a whole one; a
    // connect in progress at that moment is closed when it completes.
    bool drain(const std::string& backend_id, std::chrono::milliseconds timeout);
    // Open connections to the backend, counting connects in progress.
    size_t active_connections(const std::string& backend_id) const;
    RouteStats stats(const std::string& route) const;

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace cascade::runtime
