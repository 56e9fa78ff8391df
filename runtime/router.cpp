// The router: one epoll thread forwards bytes between clients and backends;
// a small pool of connect workers calls Backend::connect (which may block up to
// the backend's own timeout, e.g. inside a container's network namespace), so
// a slow backend never stalls the forwarding of other connections.
//
// Ownership: listeners and established connections belong to the loop thread.
// Routes, backends and counters live under `mu`; the API changes loop-owned
// state by posting a command to the loop and waiting for it (`run_in_loop`).

#include "runtime/router.hpp"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fcntl.h>
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <future>
#include <map>
#include <mutex>
#include <system_error>
#include <thread>
#include <unordered_map>

#include "oci/error.hpp"

namespace cascade::runtime {

namespace {

constexpr size_t kChunk = 64 * 1024;         // one read; also the most a direction holds back
constexpr size_t kPumpBudget = 1024 * 1024;  // bytes per direction before other connections run
constexpr size_t kMaxConnectWorkers = 64;    // threads blocked in Backend::connect at most
constexpr int kMaxAcceptsPerEvent = 64;  // listeners are level-triggered; the rest come next round
constexpr auto kAcceptPause = std::chrono::milliseconds(100);  // after EMFILE and friends

// epoll_event.data.u64: the low two bits say what the fd is, the rest is an id.
enum Kind : uint64_t { kWake = 0, kListener = 1, kClientSide = 2, kBackendSide = 3 };
uint64_t tag(Kind kind, uint64_t id) {
    return (id << 2) | kind;
}

std::string address_text(const std::string& host, uint16_t port) {
    if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
    return host + ":" + std::to_string(port);
}

void set_nonblocking(int fd) {
    int flags = fcntl(fd, F_GETFL);
    if (flags >= 0) fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

// Forwarded bytes should not wait for Nagle; fails harmlessly on non-TCP sockets.
void set_nodelay(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

// A forced or failed connection ends with RST, so a peer reading to EOF does
// not mistake a cut-off stream for a complete one.
void close_abortively(const fs::Fd& fd) {
    if (!fd) return;
    linger abort_on_close{1, 0};
    setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &abort_on_close, sizeof abort_on_close);
}

fs::Fd listen_on(const std::string& route, const std::string& host, uint16_t port) {
    std::string where = address_text(host, port);
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    addrinfo* found = nullptr;
    std::string service = std::to_string(port);
    int rc = getaddrinfo(host.c_str(), service.c_str(), &hints, &found);
    if (rc != 0) {
        throw Error("router: cannot listen for route '" + route + "' on " + where + ": " +
                    gai_strerror(rc) + " (give an IP address or a resolvable host name)");
    }
    std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> guard(found, freeaddrinfo);
    int last_errno = EADDRNOTAVAIL;
    for (addrinfo* ai = found; ai; ai = ai->ai_next) {
        fs::Fd fd(socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
        if (!fd) {
            last_errno = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd.get(), SOMAXCONN) != 0) {
            last_errno = errno;
            continue;
        }
        return fd;
    }
    std::string hint;
    if (last_errno == EADDRINUSE)
        hint =
            "; the port is taken (by another process or route): stop that or choose another port";
    else if (last_errno == EACCES)
        hint = "; ports below 1024 need CAP_NET_BIND_SERVICE";
    else if (last_errno == EADDRNOTAVAIL)
        hint = "; the host is not an address of this machine";
    throw Error("router: cannot listen for route '" + route + "' on " + where + ": " +
                std::strerror(last_errno) + hint);
}

struct BackendState {
    std::string id;
    std::string route;
    std::shared_ptr<const std::function<fs::Fd()>> connect;  // replaced whole on re-add
    bool in_rotation = true;
    size_t active = 0;         // connects in progress + forwarded connections
    uint64_t force_epoch = 0;  // connections begun before this epoch are closed on arrival
};

struct RouteState {
    std::string name;
    std::string host;
    uint16_t port = 0;
    uint64_t listener_id = 0;  // 0: not listening
    bool removed = false;
    std::vector<std::shared_ptr<BackendState>> rotation;
    size_t next = 0;
    RouteStats stats;
};

struct ConnectTask {
    fs::Fd client;
    std::shared_ptr<RouteState> route;
};

// A backend socket ready to be forwarded, handed from a worker to the loop.
struct Arrival {
    fs::Fd client;
    fs::Fd backend;
    std::shared_ptr<RouteState> route;
    std::shared_ptr<BackendState> target;
    uint64_t epoch = 0;
};

// One direction of a forwarded connection: bytes read from `src` are written
// to `dst`; at most one read's worth waits in `pending` when `dst` is full, so
// a slow reader throttles the writer on the other side (backpressure).
struct Direction {
    int src = -1;
    int dst = -1;
    std::string pending;
    size_t offset = 0;
    bool eof = false;   // src said EOF
    bool shut = false;  // ... and dst got shutdown(SHUT_WR) after the last byte
};

struct Connection {
    uint64_t id = 0;
    fs::Fd client;
    fs::Fd backend;
    std::shared_ptr<RouteState> route;
    std::shared_ptr<BackendState> target;
    Direction up;    // client -> backend
    Direction down;  // backend -> client
};

struct Listener {
    fs::Fd fd;
    std::shared_ptr<RouteState> route;
};

enum class Flow { Idle, More, Failed };

}  // namespace

struct Router::Impl {
    // Shared state, guarded by mu.
    mutable std::mutex mu;
    std::condition_variable released;  // a backend's active count dropped
    std::map<std::string, std::shared_ptr<RouteState>> routes;
    std::map<std::string, std::shared_ptr<BackendState>> backends;
    std::deque<std::function<void()>> commands;  // to run on the loop thread
    std::deque<Arrival> arrivals;

    fs::Fd epoll;
    fs::Fd wake;
    std::atomic<bool> stopping{false};
    std::thread loop_thread;

    // Loop-thread state.
    std::unordered_map<uint64_t, Listener> listeners;
    std::unordered_map<uint64_t, std::unique_ptr<Connection>> connections;
    std::vector<uint64_t> unfinished;  // connections that used up their budget
    uint64_t next_id = 1;
    bool accept_paused = false;
    std::chrono::steady_clock::time_point accept_resume;
    std::unique_ptr<char[]> scratch = std::make_unique<char[]>(kChunk);

    // Connect workers.
    std::mutex work_mu;
    std::condition_variable work_cv;
    std::deque<ConnectTask> tasks;
    std::vector<std::thread> workers;
    size_t idle_workers = 0;
    bool workers_stop = false;

    Impl();
    ~Impl();

    void wake_loop();
    void run_in_loop(std::function<void()> fn);
    std::shared_ptr<RouteState> route_locked(const std::string& name);
    void retire_if_unused_locked(const std::shared_ptr<BackendState>& b);
    void release(const std::shared_ptr<RouteState>& route, const std::shared_ptr<BackendState>& b);

    // Connect workers.
    void submit(ConnectTask task);
    void worker_main();
    void connect_client(ConnectTask task);

    // Loop thread.
    void loop_main();
    void handle_wake();
    void accept_clients(uint64_t listener_id);
    void pause_accepting();
    void resume_accepting();
    void establish(Arrival arrival);
    void pump(uint64_t connection_id);
    Flow pump_direction(Direction& d);
    void finish(uint64_t connection_id, bool abort);
    void add_listener(const std::shared_ptr<RouteState>& route, fs::Fd fd);
    void drop_listener(uint64_t listener_id);
    void close_backend_connections(const std::shared_ptr<BackendState>& b);
};

Router::Impl::Impl() {
    epoll = fs::Fd(epoll_create1(EPOLL_CLOEXEC));
    if (!epoll) throw sys_error("router: epoll_create1", "", errno);
    wake = fs::Fd(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    if (!wake) throw sys_error("router: eventfd", "", errno);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = tag(kWake, 0);
    if (epoll_ctl(epoll.get(), EPOLL_CTL_ADD, wake.get(), &ev) != 0)
        throw sys_error("router: epoll_ctl add eventfd", "", errno);
    loop_thread = std::thread([this] { loop_main(); });
}

Router::Impl::~Impl() {
    stopping = true;
    wake_loop();
    loop_thread.join();
    {
        std::lock_guard lock(work_mu);
        workers_stop = true;
    }
    work_cv.notify_all();
    for (auto& worker : workers)
        worker.join();
    // What workers handed over after the loop ended is closed here.
    for (auto& arrival : arrivals) {
        close_abortively(arrival.client);
        close_abortively(arrival.backend);
    }
}

void Router::Impl::wake_loop() {
    uint64_t one = 1;
    ssize_t n = write(wake.get(), &one, sizeof one);
    (void)n;  // EAGAIN: the counter is already non-zero, the loop wakes anyway
}

void Router::Impl::run_in_loop(std::function<void()> fn) {
    if (std::this_thread::get_id() == loop_thread.get_id()) {
        fn();
        return;
    }
    auto task = std::make_shared<std::packaged_task<void()>>(std::move(fn));
    auto done = task->get_future();
    {
        std::lock_guard lock(mu);
        commands.push_back([task] { (*task)(); });
    }
    wake_loop();
    done.get();
}

std::shared_ptr<RouteState> Router::Impl::route_locked(const std::string& name) {
    auto& slot = routes[name];
    if (!slot) {
        slot = std::make_shared<RouteState>();
        slot->name = name;
    }
    return slot;
}

// A backend out of rotation with nothing open is forgotten; drain() of an
// unknown id returns true at once.
void Router::Impl::retire_if_unused_locked(const std::shared_ptr<BackendState>& b) {
    if (b->in_rotation || b->active != 0) return;
    auto it = backends.find(b->id);
    if (it != backends.end() && it->second == b) backends.erase(it);
}

void Router::Impl::release(const std::shared_ptr<RouteState>& route,
                           const std::shared_ptr<BackendState>& b) {
    {
        std::lock_guard lock(mu);
        route->stats.active--;
        b->active--;
        retire_if_unused_locked(b);
    }
    released.notify_all();
}

// ---- connect workers -------------------------------------------------------

void Router::Impl::submit(ConnectTask task) {
    std::unique_lock lock(work_mu);
    tasks.push_back(std::move(task));
    if (tasks.size() > idle_workers && workers.size() < kMaxConnectWorkers) {
        try {
            workers.emplace_back([this] { worker_main(); });
        } catch (const std::system_error&) {
            // No new thread now: the task waits for a busy worker. With none at
            // all, the client can't be served.
            if (workers.empty()) {
                ConnectTask lost = std::move(tasks.back());
                tasks.pop_back();
                lock.unlock();
                std::lock_guard route_lock(mu);
                lost.route->stats.failed++;
                lost.route->stats.active--;
                return;
            }
        }
    }
    lock.unlock();
    work_cv.notify_one();
}

void Router::Impl::worker_main() {
    while (true) {
        ConnectTask task;
        {
            std::unique_lock lock(work_mu);
            idle_workers++;
            work_cv.wait(lock, [&] { return workers_stop || !tasks.empty(); });
            idle_workers--;
            if (workers_stop) return;
            task = std::move(tasks.front());
            tasks.pop_front();
        }
        connect_client(std::move(task));
    }
}

void Router::Impl::connect_client(ConnectTask task) {
    std::vector<std::shared_ptr<BackendState>> candidates;
    {
        std::lock_guard lock(mu);
        RouteState& route = *task.route;
        if (!route.removed && !route.rotation.empty()) {
            size_t n = route.rotation.size();
            size_t start = route.next++ % n;
            for (size_t i = 0; i < n; i++)
                candidates.push_back(route.rotation[(start + i) % n]);
        }
    }
    for (auto& b : candidates) {
        std::shared_ptr<const std::function<fs::Fd()>> connect;
        uint64_t epoch = 0;
        {
            // Counted before connecting, so a drain() that starts now waits
            // for this connection too.
            std::lock_guard lock(mu);
            if (!b->in_rotation || stopping) continue;
            b->active++;
            epoch = b->force_epoch;
            connect = b->connect;
        }
        fs::Fd backend;
        try {
            backend = (*connect)();
        } catch (...) {
            backend.reset();  // a backend that throws refuses, like one that returns no socket
        }
        if (backend) {
            set_nonblocking(backend.get());
            {
                std::lock_guard lock(mu);
                arrivals.push_back(
                    Arrival{std::move(task.client), std::move(backend), task.route, b, epoch});
            }
            wake_loop();
            return;
        }
        {
            std::lock_guard lock(mu);
            b->active--;
            retire_if_unused_locked(b);
        }
        released.notify_all();
    }
    {
        std::lock_guard lock(mu);
        task.route->stats.failed++;
        task.route->stats.active--;
    }
    task.client.reset();
}

// ---- loop thread -----------------------------------------------------------

void Router::Impl::loop_main() {
    constexpr int kMaxEvents = 256;
    epoll_event events[kMaxEvents];
    while (!stopping) {
        int timeout = -1;
        if (!unfinished.empty()) {
            timeout = 0;
        } else if (accept_paused) {
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                accept_resume - std::chrono::steady_clock::now());
            timeout = static_cast<int>(std::max<int64_t>(1, left.count() + 1));
        }
        int n = epoll_wait(epoll.get(), events, kMaxEvents, timeout);
        if (n < 0) n = 0;  // EINTR; nothing else can fail on a valid epoll fd
        for (int i = 0; i < n && !stopping; i++) {
            uint64_t data = events[i].data.u64;
            auto kind = static_cast<Kind>(data & 3);
            uint64_t id = data >> 2;
            switch (kind) {
                case kWake:
                    handle_wake();
                    break;
                case kListener:
                    accept_clients(id);
                    break;
                case kClientSide:
                case kBackendSide: {
                    auto it = connections.find(id);
                    if (it == connections.end()) break;  // closed earlier in this batch
                    if (events[i].events & EPOLLERR) {
                        Connection& c = *it->second;
                        int fd = kind == kClientSide ? c.client.get() : c.backend.get();
                        int err = 0;
                        socklen_t len = sizeof err;
                        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
                        if (err != 0) {
                            finish(id, true);
                            break;
                        }
                    }
                    pump(id);
                    break;
                }
            }
        }
        if (accept_paused && std::chrono::steady_clock::now() >= accept_resume) resume_accepting();
        if (!unfinished.empty()) {
            std::vector<uint64_t> again;
            again.swap(unfinished);
            std::sort(again.begin(), again.end());
            again.erase(std::unique(again.begin(), again.end()), again.end());
            for (uint64_t id : again)
                if (connections.count(id)) pump(id);
        }
    }
    // Shutting down: forwarded connections are cut (RST), listeners closed.
    std::vector<uint64_t> open;
    for (auto& [id, c] : connections)
        open.push_back(id);
    for (uint64_t id : open)
        finish(id, true);
    listeners.clear();
}

void Router::Impl::handle_wake() {
    uint64_t count;
    ssize_t n = read(wake.get(), &count, sizeof count);
    (void)n;
    std::deque<std::function<void()>> todo;
    std::deque<Arrival> arrived;
    {
        std::lock_guard lock(mu);
        todo.swap(commands);
        arrived.swap(arrivals);
    }
    for (auto& arrival : arrived)
        establish(std::move(arrival));
    for (auto& command : todo)
        command();
}

void Router::Impl::accept_clients(uint64_t listener_id) {
    auto it = listeners.find(listener_id);
    if (it == listeners.end()) return;
    Listener& listener = it->second;
    for (int i = 0; i < kMaxAcceptsPerEvent; i++) {
        int fd = accept4(listener.fd.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO) continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                pause_accepting();
            return;  // EAGAIN, or an error that a later round may not have
        }
        fs::Fd client(fd);
        {
            std::lock_guard lock(mu);
            listener.route->stats.connections++;
            listener.route->stats.active++;
        }
        submit(ConnectTask{std::move(client), listener.route});
    }
}

// Out of file descriptors: a level-triggered listener would spin, so stop
// watching listeners for a moment; connections closing meanwhile free fds.
void Router::Impl::pause_accepting() {
    accept_paused = true;
    accept_resume = std::chrono::steady_clock::now() + kAcceptPause;
    for (auto& [id, listener] : listeners) {
        epoll_event ev{};
        ev.data.u64 = tag(kListener, id);
        epoll_ctl(epoll.get(), EPOLL_CTL_MOD, listener.fd.get(), &ev);
    }
}

void Router::Impl::resume_accepting() {
    accept_paused = false;
    for (auto& [id, listener] : listeners) {
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u64 = tag(kListener, id);
        epoll_ctl(epoll.get(), EPOLL_CTL_MOD, listener.fd.get(), &ev);
    }
}

void Router::Impl::add_listener(const std::shared_ptr<RouteState>& route, fs::Fd fd) {
    uint64_t id = next_id++;
    epoll_event ev{};
    ev.events = accept_paused ? 0u : static_cast<uint32_t>(EPOLLIN);
    ev.data.u64 = tag(kListener, id);
    if (epoll_ctl(epoll.get(), EPOLL_CTL_ADD, fd.get(), &ev) != 0)
        throw sys_error("router: epoll_ctl add listener for route '" + route->name + "' on",
                        address_text(route->host, route->port), errno);
    listeners[id] = Listener{std::move(fd), route};
    route->listener_id = id;
}

void Router::Impl::drop_listener(uint64_t listener_id) {
    auto it = listeners.find(listener_id);
    if (it == listeners.end()) return;
    epoll_ctl(epoll.get(), EPOLL_CTL_DEL, it->second.fd.get(), nullptr);
    listeners.erase(it);
}

void Router::Impl::establish(Arrival arrival) {
    bool forced;
    {
        std::lock_guard lock(mu);
        forced = arrival.epoch < arrival.target->force_epoch;
    }
    if (forced || stopping) {
        close_abortively(arrival.client);
        close_abortively(arrival.backend);
        arrival.client.reset();
        arrival.backend.reset();
        release(arrival.route, arrival.target);
        return;
    }
    auto c = std::make_unique<Connection>();
    c->id = next_id++;
    c->client = std::move(arrival.client);
    c->backend = std::move(arrival.backend);
    c->route = std::move(arrival.route);
    c->target = std::move(arrival.target);
    c->up.src = c->down.dst = c->client.get();
    c->up.dst = c->down.src = c->backend.get();
    set_nodelay(c->client.get());
    set_nodelay(c->backend.get());
    uint64_t id = c->id;
    Connection& conn = *c;
    connections[id] = std::move(c);
    // Edge-triggered: every event of either side pumps both directions until
    // they would block, so no readiness is ever left unhandled.
    for (auto [fd, kind] :
         {std::pair{conn.client.get(), kClientSide}, std::pair{conn.backend.get(), kBackendSide}}) {
        epoll_event ev{};
        ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
        ev.data.u64 = tag(kind, id);
        if (epoll_ctl(epoll.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
            finish(id, true);
            return;
        }
    }
    pump(id);
}

void Router::Impl::pump(uint64_t connection_id) {
    auto it = connections.find(connection_id);
    if (it == connections.end()) return;
    Connection& c = *it->second;
    Flow up = pump_direction(c.up);
    Flow down = up == Flow::Failed ? Flow::Failed : pump_direction(c.down);
    if (up == Flow::Failed || down == Flow::Failed) {
        finish(connection_id, true);
    } else if (c.up.shut && c.down.shut) {
        finish(connection_id, false);
    } else if (up == Flow::More || down == Flow::More) {
        unfinished.push_back(connection_id);
    }
}

Flow Router::Impl::pump_direction(Direction& d) {
    size_t moved = 0;
    while (true) {
        while (d.offset < d.pending.size()) {
            ssize_t n =
                send(d.dst, d.pending.data() + d.offset, d.pending.size() - d.offset, MSG_NOSIGNAL);
            if (n > 0) {
                d.offset += static_cast<size_t>(n);
            } else if (n < 0 && errno == EINTR) {
                continue;
            } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                return Flow::Idle;  // EPOLLOUT on dst resumes
            } else {
                return Flow::Failed;
            }
        }
        if (!d.pending.empty()) {
            std::string().swap(d.pending);  // idle connections hold no buffer
            d.offset = 0;
        }
        if (d.eof) {
            if (!d.shut) {
                // Half-close: the peer that reads to EOF sees it; the other
                // direction keeps flowing.
                shutdown(d.dst, SHUT_WR);
                d.shut = true;
            }
            return Flow::Idle;
        }
        if (moved >= kPumpBudget) return Flow::More;
        ssize_t n = recv(d.src, scratch.get(), kChunk, 0);
        if (n == 0) {
            d.eof = true;
            continue;
        }
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return Flow::Idle;  // EPOLLIN resumes
            return Flow::Failed;
        }
        moved += static_cast<size_t>(n);
        size_t sent = 0;
        while (sent < static_cast<size_t>(n)) {
            ssize_t m =
                send(d.dst, scratch.get() + sent, static_cast<size_t>(n) - sent, MSG_NOSIGNAL);
            if (m > 0) {
                sent += static_cast<size_t>(m);
            } else if (m < 0 && errno == EINTR) {
                continue;
            } else if (m < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                d.pending.assign(scratch.get() + sent, static_cast<size_t>(n) - sent);
                return Flow::Idle;  // reading stops until dst drains this
            } else {
                return Flow::Failed;
            }
        }
    }
}

void Router::Impl::finish(uint64_t connection_id, bool abort) {
    auto it = connections.find(connection_id);
    if (it == connections.end()) return;
    std::unique_ptr<Connection> c = std::move(it->second);
    connections.erase(it);
    epoll_ctl(epoll.get(), EPOLL_CTL_DEL, c->client.get(), nullptr);
    epoll_ctl(epoll.get(), EPOLL_CTL_DEL, c->backend.get(), nullptr);
    if (abort) {
        close_abortively(c->client);
        close_abortively(c->backend);
    }
    c->client.reset();
    c->backend.reset();
    release(c->route, c->target);
}

void Router::Impl::close_backend_connections(const std::shared_ptr<BackendState>& b) {
    std::vector<uint64_t> doomed;
    for (auto& [id, c] : connections)
        if (c->target == b) doomed.push_back(id);
    for (uint64_t id : doomed)
        finish(id, true);
}

// ---- API ---------------------------------------------------------------------

Router::Router() : impl_(std::make_unique<Impl>()) {}

Router::~Router() = default;

void Router::add_route(const std::string& route, const std::string& host, uint16_t port) {
    std::string bind_host = host.empty() ? "127.0.0.1" : host;
    {
        std::lock_guard lock(impl_->mu);
        auto it = impl_->routes.find(route);
        if (it != impl_->routes.end() && it->second->listener_id != 0 &&
            it->second->host == bind_host && it->second->port == port)
            return;
    }
    // Bind first: when the new address is taken, the old listener stays.
    auto fd = std::make_shared<fs::Fd>(listen_on(route, bind_host, port));
    impl_->run_in_loop([this, &route, &bind_host, port, fd] {
        std::shared_ptr<RouteState> r;
        uint64_t old_listener;
        {
            std::lock_guard lock(impl_->mu);
            r = impl_->route_locked(route);
            old_listener = r->listener_id;
            r->host = bind_host;
            r->port = port;
            r->listener_id = 0;
        }
        impl_->drop_listener(old_listener);
        impl_->add_listener(r, std::move(*fd));
    });
}

void Router::remove_route(const std::string& route) {
    impl_->run_in_loop([this, &route] {
        uint64_t listener;
        {
            std::lock_guard lock(impl_->mu);
            auto it = impl_->routes.find(route);
            if (it == impl_->routes.end()) return;
            std::shared_ptr<RouteState> r = it->second;
            impl_->routes.erase(it);
            r->removed = true;
            listener = r->listener_id;
            r->listener_id = 0;
            for (auto& b : r->rotation) {
                b->in_rotation = false;
                impl_->retire_if_unused_locked(b);
            }
            r->rotation.clear();
        }
        impl_->drop_listener(listener);
    });
}

void Router::add_backend(const std::string& route, Backend backend) {
    if (backend.id.empty()) throw Error("router: a backend of route '" + route + "' has no id");
    if (!backend.connect)
        throw Error("router: backend '" + backend.id + "' of route '" + route +
                    "' has no connect function");
    auto connect = std::make_shared<const std::function<fs::Fd()>>(std::move(backend.connect));
    std::lock_guard lock(impl_->mu);
    auto it = impl_->backends.find(backend.id);
    if (it != impl_->backends.end()) {
        auto& b = it->second;
        if (b->route != route)
            throw Error("router: backend id '" + backend.id + "' already belongs to route '" +
                        b->route + "'; backend ids must be unique across routes");
        b->connect = std::move(connect);
        if (!b->in_rotation) {
            b->in_rotation = true;
            impl_->route_locked(route)->rotation.push_back(b);
        }
        return;
    }
    auto b = std::make_shared<BackendState>();
    b->id = backend.id;
    b->route = route;
    b->connect = std::move(connect);
    impl_->backends[b->id] = b;
    impl_->route_locked(route)->rotation.push_back(b);
}

void Router::remove_backend(const std::string& route, const std::string& backend_id) {
    std::lock_guard lock(impl_->mu);
    auto it = impl_->backends.find(backend_id);
    if (it == impl_->backends.end() || it->second->route != route) return;
    std::shared_ptr<BackendState> b = it->second;
    if (!b->in_rotation) return;
    b->in_rotation = false;
    auto r = impl_->routes.find(route);
    if (r != impl_->routes.end()) std::erase(r->second->rotation, b);
    impl_->retire_if_unused_locked(b);
}

std::vector<std::string> Router::backends(const std::string& route) const {
    std::lock_guard lock(impl_->mu);
    std::vector<std::string> ids;
    auto it = impl_->routes.find(route);
    if (it == impl_->routes.end()) return ids;
    for (auto& b : it->second->rotation)
        ids.push_back(b->id);
    return ids;
}

bool Router::drain(const std::string& backend_id, std::chrono::milliseconds timeout) {
    std::unique_lock lock(impl_->mu);
    auto it = impl_->backends.find(backend_id);
    if (it == impl_->backends.end()) return true;
    std::shared_ptr<BackendState> b = it->second;
    // wait_for with a huge duration would overflow the clock.
    constexpr auto kForever = std::chrono::hours(24 * 365);
    auto deadline =
        std::chrono::steady_clock::now() + std::min<std::chrono::milliseconds>(timeout, kForever);
    if (impl_->released.wait_until(lock, deadline, [&] { return b->active == 0; })) return true;
    b->force_epoch++;
    lock.unlock();
    impl_->run_in_loop([this, b] { impl_->close_backend_connections(b); });
    return false;
}

size_t Router::active_connections(const std::string& backend_id) const {
    std::lock_guard lock(impl_->mu);
    auto it = impl_->backends.find(backend_id);
    return it == impl_->backends.end() ? 0 : it->second->active;
}

RouteStats Router::stats(const std::string& route) const {
    std::lock_guard lock(impl_->mu);
    auto it = impl_->routes.find(route);
    return it == impl_->routes.end() ? RouteStats{} : it->second->stats;
}

}  // namespace cascade::runtime
