// The router: host ports on 127.0.0.1 (by default) whose TCP connections are
// forwarded to the ready backends of a route, round robin. A backend is
// anything that can produce a connected socket (for replicas: a socket created
// inside the replica's network namespace).
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
};

struct RouteStats {
    uint64_t connections = 0;  // accepted
    uint64_t failed = 0;       // closed because no backend accepted
    uint64_t active = 0;
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

    // Rotation. A connection goes to the next backend round robin; a backend
    // that refuses is skipped and the next one tried, so a client only sees a
    // failure when no backend of the route accepts. `connect` runs on a worker
    // thread (never the forwarding thread) and may block up to its own
    // timeout; throwing counts as refusing.
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
