// The router against small real servers on loopback: echo, HTTP/1.0, servers
// that read to EOF or half-close themselves. Every test uses its own ports.
#include "runtime/router.hpp"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <deque>
#include <fstream>
#include <future>
#include <latch>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "oci/error.hpp"
#include "runtime/netns.hpp"
#include "tests/support/support.hpp"

namespace cascade::runtime {
namespace {

using namespace std::chrono_literals;
using cascade::test::eventually;
using cascade::test::free_port;
using cascade::test::have_program;
using cascade::test::http_get;
using cascade::test::run;

// Blocking I/O in tests must not hang a broken router forever: reads and
// writes give up after this and the test fails instead.
constexpr auto kIoTimeout = 60s;

void set_io_timeout(int fd) {
    timeval tv{static_cast<time_t>(kIoTimeout.count()), 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

sockaddr_in loopback(uint16_t port) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port);
    return addr;
}

// A blocking connection to 127.0.0.1:port, or an empty Fd when refused.
fs::Fd connect_to(uint16_t port) {
    fs::Fd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) return {};
    set_io_timeout(fd.get());
    sockaddr_in addr = loopback(port);
    if (connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return {};
    return fd;
}

bool send_all(int fd, std::string_view data) {
    size_t off = 0;
    while (off < data.size()) {
        ssize_t n = send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        off += static_cast<size_t>(n);
    }
    return true;
}

// Reads until EOF. nullopt on an error (reset, timeout).
std::optional<std::string> read_to_eof(int fd) {
    std::string out;
    char buf[65536];
    while (true) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return std::nullopt;
        if (n == 0) return out;
        out.append(buf, static_cast<size_t>(n));
    }
}

// Reads exactly `size` bytes. nullopt on EOF or error before that.
std::optional<std::string> read_exactly(int fd, size_t size) {
    std::string out(size, '\0');
    size_t off = 0;
    while (off < size) {
        ssize_t n = recv(fd, out.data() + off, size - off, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return std::nullopt;
        off += static_cast<size_t>(n);
    }
    return out;
}

// A TCP server on 127.0.0.1:<port>; each connection runs `handler` on its own
// thread, and the server closes the socket when the handler returns.
class TestServer {
  public:
    explicit TestServer(std::function<void(int)> handler) : handler_(std::move(handler)) {
        // The kernel picks the port: servers need no free_port() budget.
        listener_ = fs::Fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_in addr = loopback(0);
        socklen_t len = sizeof addr;
        if (bind(listener_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
            listen(listener_.get(), 1024) != 0 ||
            getsockname(listener_.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0)
            throw sys_error("test server: listen on", "127.0.0.1:0", errno);
        port_ = ntohs(addr.sin_port);
        acceptor_ = std::thread([this] { accept_loop(); });
    }
    ~TestServer() { stop(); }

    uint16_t port() const { return port_; }
    size_t accepted() const { return accepted_; }

    // Like a killed container: refuses new connections and resets the open
    // ones, so a request still in flight fails.
    void kill() {
        {
            std::lock_guard lock(mu_);
            for (int fd : open_) {
                linger abort_on_close{1, 0};
                setsockopt(fd, SOL_SOCKET, SO_LINGER, &abort_on_close, sizeof abort_on_close);
                shutdown(fd, SHUT_RDWR);
            }
        }
        stop();
    }

    // Stops accepting (connects are refused from now on) and waits for the
    // open connections' handlers to return.
    void stop() {
        if (!acceptor_.joinable()) return;
        shutdown(listener_.get(), SHUT_RDWR);  // wakes the blocked accept()
        acceptor_.join();
        listener_.reset();
        std::vector<std::thread> running;
        {
            std::lock_guard lock(mu_);
            running.swap(handlers_);
        }
        for (auto& t : running)
            t.join();
    }

  private:
    void accept_loop() {
        while (true) {
            int fd = accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC);
            if (fd < 0) {
                if (errno == EINTR || errno == ECONNABORTED) continue;
                return;
            }
            accepted_++;
            set_io_timeout(fd);
            std::lock_guard lock(mu_);
            open_.insert(fd);
            handlers_.emplace_back([this, fd] {
                handler_(fd);
                std::lock_guard lock(mu_);
                open_.erase(fd);
                close(fd);
            });
        }
    }

    std::function<void(int)> handler_;
    uint16_t port_ = 0;
    fs::Fd listener_;
    std::thread acceptor_;
    std::mutex mu_;
    std::vector<std::thread> handlers_;
    std::set<int> open_;
    std::atomic<size_t> accepted_{0};
};

// Echoes every byte until EOF, then closes. `greeting` (if any) goes first, so
// a client can tell which backend it reached.
std::function<void(int)> echo(std::string greeting = {}) {
    return [greeting](int fd) {
        if (!greeting.empty() && !send_all(fd, greeting)) return;
        char buf[65536];
        while (true) {
            ssize_t n = recv(fd, buf, sizeof buf, 0);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) return;
            if (!send_all(fd, std::string_view(buf, static_cast<size_t>(n)))) return;
        }
    };
}

// A minimal HTTP/1.0 server: reads the request head, answers 200 with `body`,
// closes (the client reads the body to EOF).
std::function<void(int)> http(std::string body,
                              std::chrono::milliseconds think = std::chrono::milliseconds(0)) {
    return [body, think](int fd) {
        std::string request;
        char buf[4096];
        while (request.find("\r\n\r\n") == std::string::npos) {
            ssize_t n = recv(fd, buf, sizeof buf, 0);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) return;
            request.append(buf, static_cast<size_t>(n));
        }
        std::this_thread::sleep_for(think);
        send_all(fd, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " +
                         std::to_string(body.size()) + "\r\n\r\n" + body);
    };
}

Backend tcp_backend(const std::string& id, uint16_t port) {
    return Backend{id, [port] { return connect_to(port); }};
}

// free_port(), or when its budget is used up (it returns 0), a port the
// kernel picked a moment ago.
uint16_t router_port() {
    if (uint16_t port = free_port()) return port;
    fs::Fd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    int one = 1;
    setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr = loopback(0);
    socklen_t len = sizeof addr;
    if (bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0)
        return 0;
    return ntohs(addr.sin_port);
}

// A router with one route listening on a fresh port.
struct RoutedPort {
    Router router;
    uint16_t port = 0;
    explicit RoutedPort(const std::string& route = "web") {
        for (int attempt = 0; attempt < 20; attempt++) {
            port = router_port();
            try {
                router.add_route(route, "127.0.0.1", port);
                return;
            } catch (const Error&) {
                // taken by a parallel test binary a moment ago; try another
            }
        }
        throw Error("test: no free port for the router");
    }
};

std::string body_of(uint16_t port) {
    auto response = http_get(port, "/", "127.0.0.1", 30000ms);
    if (!response) return "<connection failed>";
    if (response->status != 200) return "<status " + std::to_string(response->status) + ">";
    return response->body;
}

size_t open_fds() {
    size_t count = 0;
    DIR* dir = opendir("/proc/self/fd");
    while (dirent* entry = readdir(dir))
        if (entry->d_name[0] != '.') count++;
    closedir(dir);
    return count;
}

uint64_t fnv1a(uint64_t hash, const char* data, size_t size) {
    for (size_t i = 0; i < size; i++) {
        hash ^= static_cast<unsigned char>(data[i]);
        hash *= 1099511628211ULL;
    }
    return hash;
}
constexpr uint64_t kFnvOffset = 14695981039346656037ULL;

// Reads `fd` to EOF: how many bytes, and their FNV-1a hash. With
// `pause_every`, sleeps 50 ms each time that many more bytes have arrived
// (a slow reader).
struct Received {
    size_t bytes = 0;
    uint64_t hash = kFnvOffset;
};
Received read_hashed(int fd, size_t pause_every = 0) {
    Received got;
    char buf[65536];
    while (true) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got.hash = fnv1a(got.hash, buf, static_cast<size_t>(n));
        got.bytes += static_cast<size_t>(n);
        if (pause_every && got.bytes % pause_every < static_cast<size_t>(n))
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return got;
}

TEST(Router, ForwardsToEchoServer) {
    TestServer server(echo());
    RoutedPort routed;
    routed.router.add_backend("web", tcp_backend("echo-1", server.port()));

    fs::Fd client = connect_to(routed.port);
    ASSERT_TRUE(client);
    ASSERT_TRUE(send_all(client.get(), "hello through the router"));
    ASSERT_EQ(read_exactly(client.get(), 24), "hello through the router");
    shutdown(client.get(), SHUT_WR);
    EXPECT_EQ(read_to_eof(client.get()), "");
    client.reset();

    EXPECT_EQ(server.accepted(), 1u);
    EXPECT_TRUE(eventually([&] { return routed.router.stats("web").active == 0; }, 30s));
    RouteStats stats = routed.router.stats("web");
    EXPECT_EQ(stats.connections, 1u);
    EXPECT_EQ(stats.failed, 0u);
}

TEST(Router, ForwardsHttp) {
    TestServer server(http("hello from app-a\n"));
    RoutedPort routed;
    routed.router.add_backend("web", tcp_backend("app-a-1", server.port()));
    for (int i = 0; i < 5; i++)
        EXPECT_EQ(body_of(routed.port), "hello from app-a\n");
    EXPECT_EQ(routed.router.stats("web").connections, 5u);
    EXPECT_EQ(routed.router.stats("web").failed, 0u);
}

TEST(Router, RoundRobinAcrossBackends) {
    TestServer a(http("a")), b(http("b"));
    RoutedPort routed;
    routed.router.add_backend("web", tcp_backend("a", a.port()));
    routed.router.add_backend("web", tcp_backend("b", b.port()));
    EXPECT_EQ(routed.router.backends("web"), (std::vector<std::string>{"a", "b"}));

    std::map<std::string, int> seen;
    std::string previous;
    for (int i = 0; i < 10; i++) {
        std::string body = body_of(routed.port);
        EXPECT_NE(body, previous) << "request " << i << " went to the same backend twice in a row";
        previous = body;
        seen[body]++;
    }
    EXPECT_EQ(seen, (std::map<std::string, int>{{"a", 5}, {"b", 5}}));
}

TEST(Router, RefusingBackendsAreSkipped) {
    TestServer good(http("good"));
    uint16_t nothing_listens = router_port();
    RoutedPort routed;
    routed.router.add_backend("web", tcp_backend("closed-port", nothing_listens));
    routed.router.add_backend("web", Backend{"refuses", [] { return fs::Fd(); }});
    routed.router.add_backend(
        "web", Backend{"throws", []() -> fs::Fd { throw Error("netns of container x is gone"); }});
    routed.router.add_backend("web", tcp_backend("good", good.port()));

    for (int i = 0; i < 8; i++)
        EXPECT_EQ(body_of(routed.port), "good") << "request " << i;
    RouteStats stats = routed.router.stats("web");
    EXPECT_EQ(stats.connections, 8u);
    EXPECT_EQ(stats.failed, 0u);
    EXPECT_EQ(good.accepted(), 8u);
}

TEST(Router, ClientIsClosedWhenNoBackendAccepts) {
    RoutedPort routed;
    routed.router.add_backend("web", Backend{"refuses", [] { return fs::Fd(); }});
    fs::Fd client = connect_to(routed.port);
    ASSERT_TRUE(client);
    send_all(client.get(), "GET / HTTP/1.0\r\n\r\n");
    char byte;
    EXPECT_LE(recv(client.get(), &byte, 1, 0), 0);  // closed without a byte
    RouteStats stats = routed.router.stats("web");
    EXPECT_EQ(stats.connections, 1u);
    EXPECT_EQ(stats.failed, 1u);
    EXPECT_EQ(stats.active, 0u);
}

// A connect that blocks until the test opens it.
struct Gate {
    std::promise<void> promise;
    std::shared_future<void> opened = promise.get_future().share();
    std::once_flag once;
    void open() {
        std::call_once(once, [&] { promise.set_value(); });
    }
};

TEST(Router, SlowBackendConnectDoesNotStallOthers) {
    TestServer fast(http("fast"));
    Gate gate;
    std::atomic<int> slow_entered{0};
    RoutedPort routed;
    // A failed assertion must not leave a worker blocked for the destructor.
    std::unique_ptr<Gate, void (*)(Gate*)> open_at_exit(&gate, [](Gate* g) { g->open(); });
    // Blocks until the gate opens, then refuses.
    routed.router.add_backend("web", Backend{"slow", [&] {
                                                 slow_entered++;
                                                 gate.opened.wait();
                                                 return fs::Fd();
                                             }});
    routed.router.add_backend("web", tcp_backend("fast", fast.port()));

    // The first connection starts at "slow" and hangs in its connect ...
    auto first = std::async(std::launch::async, [&] { return body_of(routed.port); });
    ASSERT_TRUE(eventually([&] { return slow_entered == 1; }, 60s));
    // ... while the next ones are accepted, connected and forwarded.
    EXPECT_EQ(body_of(routed.port), "fast");  // starts at "fast"
    auto third = std::async(std::launch::async, [&] { return body_of(routed.port); });
    ASSERT_TRUE(eventually([&] { return slow_entered == 2; }, 60s));
    EXPECT_EQ(body_of(routed.port), "fast");
    EXPECT_EQ(routed.router.active_connections("slow"), 2u);

    // Once "slow" refuses, the waiting clients move on to "fast".
    gate.open();
    EXPECT_EQ(first.get(), "fast");
    EXPECT_EQ(third.get(), "fast");
    EXPECT_EQ(routed.router.stats("web").failed, 0u);
    EXPECT_EQ(routed.router.active_connections("slow"), 0u);
}

TEST(Router, RemovedBackendFinishesInFlightAndGetsNoNewConnections) {
    TestServer a(echo("a\n")), b(echo("b\n"));
    RoutedPort routed;
    routed.router.add_backend("web", tcp_backend("a", a.port()));
    routed.router.add_backend("web", tcp_backend("b", b.port()));

    fs::Fd in_flight = connect_to(routed.port);
    ASSERT_TRUE(in_flight);
    auto greeting = read_exactly(in_flight.get(), 2);
    ASSERT_TRUE(greeting);
    std::string first = greeting->substr(0, 1), other = first == "a" ? "b" : "a";
    EXPECT_EQ(routed.router.active_connections(first), 1u);

    routed.router.remove_backend("web", first);
    EXPECT_EQ(routed.router.backends("web"), std::vector<std::string>{other});

    for (int i = 0; i < 4; i++) {
        fs::Fd client = connect_to(routed.port);
        ASSERT_TRUE(client);
        EXPECT_EQ(read_exactly(client.get(), 2), other + "\n") << "new connection " << i;
    }

    // The in-flight connection still works both ways and ends normally.
    ASSERT_TRUE(send_all(in_flight.get(), "still here"));
    EXPECT_EQ(read_exactly(in_flight.get(), 10), "still here");
    EXPECT_EQ(routed.router.active_connections(first), 1u);
    shutdown(in_flight.get(), SHUT_WR);
    EXPECT_EQ(read_to_eof(in_flight.get()), "");
    EXPECT_TRUE(eventually([&] { return routed.router.active_connections(first) == 0; }, 30s));
    EXPECT_EQ(routed.router.stats("web").failed, 0u);
}

TEST(Router, DrainReturnsTrueWhenConnectionsFinish) {
    TestServer a(echo("a\n"));
    RoutedPort routed;
    routed.router.add_backend("web", tcp_backend("a", a.port()));
    fs::Fd client = connect_to(routed.port);
    ASSERT_TRUE(client);
    ASSERT_EQ(read_exactly(client.get(), 2), "a\n");

    routed.router.remove_backend("web", "a");
    EXPECT_EQ(routed.router.active_connections("a"), 1u);
    auto drained = std::async(std::launch::async, [&] { return routed.router.drain("a", 120s); });

    ASSERT_TRUE(send_all(client.get(), "last words"));
    EXPECT_EQ(read_exactly(client.get(), 10), "last words");
    shutdown(client.get(), SHUT_WR);
    EXPECT_EQ(read_to_eof(client.get()), "");
    client.reset();

    EXPECT_TRUE(drained.get());
    EXPECT_EQ(routed.router.active_connections("a"), 0u);
    EXPECT_TRUE(routed.router.drain("a", 0ms));  // nothing left: unknown ids are drained
}

TEST(Router, DrainForceClosesAfterTimeout) {
    TestServer a(echo("a\n"));
    RoutedPort routed;
    routed.router.add_backend("web", tcp_backend("a", a.port()));
    fs::Fd client = connect_to(routed.port);
    ASSERT_TRUE(client);
    ASSERT_EQ(read_exactly(client.get(), 2), "a\n");
    routed.router.remove_backend("web", "a");

    // The client never finishes, so only the timeout ends the drain.
    EXPECT_FALSE(routed.router.drain("a", 200ms));
    EXPECT_EQ(routed.router.active_connections("a"), 0u);
    EXPECT_EQ(read_to_eof(client.get()), std::nullopt);  // reset, not a clean EOF
    // The backend's side was cut too: its handler returned.
    a.stop();
    EXPECT_EQ(routed.router.stats("web").active, 0u);
}

TEST(Router, HalfCloseFromClientReachesBackend) {
    // The server reads to EOF and only then answers with what it counted.
    TestServer counter([](int fd) {
        auto all = read_to_eof(fd);
        if (all) send_all(fd, "got " + std::to_string(all->size()));
    });
    RoutedPort routed;
    routed.router.add_backend("web", tcp_backend("counter", counter.port()));

    fs::Fd client = connect_to(routed.port);
    ASSERT_TRUE(client);
    ASSERT_TRUE(send_all(client.get(), std::string(300000, 'x')));
    shutdown(client.get(), SHUT_WR);
    EXPECT_EQ(read_to_eof(client.get()), "got 300000");
}

TEST(Router, HalfCloseFromBackendReachesClient) {
    std::promise<std::string> server_read;
    TestServer server([&](int fd) {
        send_all(fd, "hello, then EOF");
        shutdown(fd, SHUT_WR);
        server_read.set_value(read_to_eof(fd).value_or("<error>"));
    });
    RoutedPort routed;
    routed.router.add_backend("web", tcp_backend("server", server.port()));

    fs::Fd client = connect_to(routed.port);
    ASSERT_TRUE(client);
    // The client sees EOF while its own direction is still open ...
    EXPECT_EQ(read_to_eof(client.get()), "hello, then EOF");
    // ... and can still send, which the server reads to its EOF.
    ASSERT_TRUE(send_all(client.get(), "reply after EOF"));
    shutdown(client.get(), SHUT_WR);
    EXPECT_EQ(server_read.get_future().get(), "reply after EOF");
}

TEST(Router, LargeTransferArrivesIntact) {
    TestServer server(echo());
    RoutedPort routed;
    routed.router.add_backend("web", tcp_backend("echo", server.port()));

    constexpr size_t kTotal = 64u << 20;
    fs::Fd client = connect_to(routed.port);
    ASSERT_TRUE(client);
    uint64_t sent_hash = kFnvOffset;
    std::thread writer([&] {
        std::mt19937_64 rng(42);
        std::string chunk(1 << 20, '\0');
        for (size_t done = 0; done < kTotal; done += chunk.size()) {
            for (size_t i = 0; i < chunk.size(); i += 8) {
                uint64_t v = rng();
                std::memcpy(chunk.data() + i, &v, 8);
            }
            sent_hash = fnv1a(sent_hash, chunk.data(), chunk.size());
            if (!send_all(client.get(), chunk)) break;
        }
        shutdown(client.get(), SHUT_WR);
    });
    Received got = read_hashed(client.get());
    writer.join();
    EXPECT_EQ(got.bytes, kTotal);
    EXPECT_EQ(got.hash, sent_hash);
}

// `count` clients connect to `port` at once, each sends its own message
// (4000+ bytes), half-closes and reads to EOF through an echo backend.
// Returns how many did not get their message back.
int echo_burst(uint16_t port, int count) {
    std::latch start(count);
    std::atomic<int> failures{0};
    std::vector<std::thread> clients;
    for (int i = 0; i < count; i++) {
        clients.emplace_back([&, i] {
            std::string message = "client " + std::to_string(i) + " " + std::string(4000 + i, 'm');
            start.arrive_and_wait();
            fs::Fd fd = connect_to(port);
            if (!fd || !send_all(fd.get(), message)) {
                failures++;
                return;
            }
            shutdown(fd.get(), SHUT_WR);
            if (read_to_eof(fd.get()) != message) failures++;
        });
    }
    for (auto& t : clients)
        t.join();
    return failures.load();
}

TEST(Router, ManyConcurrentClientsWithoutFailure) {
    TestServer a(echo()), b(echo());
    RoutedPort routed;
    routed.router.add_backend("web", tcp_backend("a", a.port()));
    routed.router.add_backend("web", tcp_backend("b", b.port()));

    constexpr int kClients = 200;
    EXPECT_EQ(echo_burst(routed.port, kClients), 0);
    EXPECT_EQ(a.accepted() + b.accepted(), static_cast<size_t>(kClients));
    EXPECT_EQ(a.accepted(), b.accepted());  // each connection takes the next backend
    RouteStats stats = routed.router.stats("web");
    EXPECT_EQ(stats.connections, static_cast<uint64_t>(kClients));
    EXPECT_EQ(stats.failed, 0u);
    EXPECT_TRUE(eventually([&] { return routed.router.stats("web").active == 0; }, 30s));
}

TEST(Router, TakenPortGivesClearError) {
    TestServer occupant(echo());
    Router router;
    try {
        router.add_route("app-a", "127.0.0.1", occupant.port());
        FAIL() << "add_route on a taken port succeeded";
    } catch (const Error& e) {
        std::string message = e.what();
        EXPECT_NE(message.find("127.0.0.1:" + std::to_string(occupant.port())), std::string::npos)
            << message;
        EXPECT_NE(message.find("app-a"), std::string::npos) << message;
        EXPECT_NE(message.find("in use"), std::string::npos) << message;
    }
}

TEST(Router, RouteListenerIsReplacedAndRemoved) {
    TestServer server(http("x"));
    RoutedPort routed;
    routed.router.add_backend("web", tcp_backend("x", server.port()));
    routed.router.add_route("web", "127.0.0.1", routed.port);  // same address: no-op
    EXPECT_EQ(body_of(routed.port), "x");

    uint16_t old_port = routed.port;
    uint16_t new_port = 0;
    for (int attempt = 0; attempt < 20 && !new_port; attempt++) {
        uint16_t candidate = router_port();
        try {
            routed.router.add_route("web", "127.0.0.1", candidate);
            new_port = candidate;
        } catch (const Error&) {
        }
    }
    ASSERT_NE(new_port, 0);
    EXPECT_EQ(body_of(new_port), "x");
    EXPECT_FALSE(connect_to(old_port)) << "the old listener is still open";

    routed.router.remove_route("web");
    EXPECT_FALSE(connect_to(new_port)) << "the listener of a removed route is still open";
    EXPECT_TRUE(routed.router.backends("web").empty());
}

TEST(Router, DestructorClosesEverythingWithoutLeakingFds) {
    size_t before = open_fds();
    {
        TestServer server(echo());
        fs::Fd client;
        {
            RoutedPort routed;
            routed.router.add_backend("web", tcp_backend("echo", server.port()));
            for (int i = 0; i < 3; i++) {
                fs::Fd done = connect_to(routed.port);
                ASSERT_TRUE(done);
                ASSERT_TRUE(send_all(done.get(), "x"));
                shutdown(done.get(), SHUT_WR);
                ASSERT_EQ(read_to_eof(done.get()), "x");
            }
            client = connect_to(routed.port);
            ASSERT_TRUE(client);
            ASSERT_TRUE(send_all(client.get(), "ping"));
            ASSERT_EQ(read_exactly(client.get(), 4), "ping");
        }
        // The router is gone: its forwarded connection was cut.
        EXPECT_EQ(read_to_eof(client.get()), std::nullopt);
        client.reset();
        server.stop();
    }
    EXPECT_EQ(open_fds(), before);
}

// The rollout pattern: add the new backend, take the old one out of rotation,
// drain it, stop it — while clients keep sending requests.
TEST(Router, RollingReplaceLosesNoRequest) {
    constexpr int kReplicas = 3;
    std::vector<std::unique_ptr<TestServer>> old_servers, new_servers;
    RoutedPort routed;
    for (int i = 0; i < kReplicas; i++) {
        // The old replicas take a moment per request, so requests are in
        // flight whenever a replica is taken out of rotation.
        old_servers.push_back(std::make_unique<TestServer>(http("v1", 5ms)));
        new_servers.push_back(std::make_unique<TestServer>(http("v2")));
        routed.router.add_backend("web",
                                  tcp_backend("old-" + std::to_string(i), old_servers[i]->port()));
    }

    constexpr int kClients = 4;
    constexpr int kMaxRequestsPerClient = 20000;  // a bound, should the swaps never finish
    std::atomic<int> requests{0}, failures{0}, stale_after_rollout{0};
    std::atomic<bool> rolled_out{false};
    std::vector<std::thread> clients;
    for (int c = 0; c < kClients; c++) {
        clients.emplace_back([&] {
            int after = 0;
            for (int i = 0; i < kMaxRequestsPerClient && after < 25; i++) {
                bool done_before = rolled_out;
                std::string body = body_of(routed.port);
                requests++;
                if (body != "v1" && body != "v2") failures++;
                if (done_before) {
                    after++;
                    if (body != "v2") stale_after_rollout++;
                }
            }
        });
    }

    for (int i = 0; i < kReplicas; i++) {
        int mark = requests;
        ASSERT_TRUE(eventually([&] { return requests >= mark + 30; }, 120s));
        std::string old_id = "old-" + std::to_string(i);
        routed.router.add_backend("web",
                                  tcp_backend("new-" + std::to_string(i), new_servers[i]->port()));
        routed.router.remove_backend("web", old_id);
        EXPECT_TRUE(routed.router.drain(old_id, 120s)) << old_id;
        old_servers[i]->kill();  // what is still open now would fail
    }
    rolled_out = true;
    for (auto& t : clients)
        t.join();

    EXPECT_EQ(failures, 0) << "of " << requests << " requests";
    EXPECT_EQ(stale_after_rollout, 0);
    EXPECT_EQ(routed.router.backends("web"), (std::vector<std::string>{"new-0", "new-1", "new-2"}));
    RouteStats stats = routed.router.stats("web");
    EXPECT_EQ(stats.failed, 0u);
    EXPECT_EQ(stats.connections, static_cast<uint64_t>(requests.load()));
}

// ---- the shared HTTP port ---------------------------------------------------

// An HTTP/1.1 keep-alive server: answers every request on the connection
// (pipelined ones too) with "<name> <path>". Once `*closing` is set, the next
// answer says "Connection: close" and the server closes, like a server that
// shuts down gracefully.
std::function<void(int)> keep_alive_http(std::string name,
                                         std::shared_ptr<std::atomic<bool>> closing = nullptr,
                                         std::chrono::milliseconds think = 0ms) {
    return [name, closing, think](int fd) {
        std::string buf;
        char chunk[16384];
        while (true) {
            size_t end;
            while ((end = buf.find("\r\n\r\n")) == std::string::npos) {
                ssize_t n = recv(fd, chunk, sizeof chunk, 0);
                if (n < 0 && errno == EINTR) continue;
                if (n <= 0) return;
                buf.append(chunk, static_cast<size_t>(n));
            }
            std::string head = buf.substr(0, end);
            buf.erase(0, end + 4);
            size_t sp1 = head.find(' ');
            size_t sp2 = head.find(' ', sp1 + 1);
            std::string path = head.substr(sp1 + 1, sp2 - sp1 - 1);
            std::this_thread::sleep_for(think);
            std::string lower_head;
            for (char ch : head)
                lower_head += static_cast<char>(tolower(static_cast<unsigned char>(ch)));
            bool close_now = (closing && closing->load()) ||
                             lower_head.find("connection: close") != std::string::npos ||
                             head.substr(sp2 + 1, 8) == "HTTP/1.0";
            std::string body = name + " " + path;
            if (!send_all(fd, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " +
                                  std::to_string(body.size()) + "\r\n" +
                                  (close_now ? "Connection: close\r\n" : "") + "\r\n" + body))
                return;
            if (close_now) return;
        }
    };
}

// A router whose shared HTTP port listens on a port the kernel picked.
struct HttpRouter {
    Router router;
    uint16_t port = 0;
    HttpRouter() {
        router.listen_http("127.0.0.1", 0);
        port = router.http_port();
    }
    std::string url(const std::string& path = "/") const {
        return "http://127.0.0.1:" + std::to_string(port) + path;
    }
};

struct Curl {
    int status = 0;
    std::string body;
    std::string headers;
    int connects = -1;
};

// curl as the client: `args` come before the URLs. With several URLs (one
// connection, keep-alive) the bodies are joined with "|".
Curl curl(const std::vector<std::string>& args, const std::vector<std::string>& urls) {
    std::vector<std::string> argv = {
        "curl", "-sS",         "--max-time", "60",
        "-D",   "/dev/stderr", "-w",         "<<%{http_code} %{num_connects}>>"};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.end(), urls.begin(), urls.end());
    auto result = run(argv, 90s);
    Curl out;
    out.headers = result.err;
    out.connects = 0;
    std::string_view rest = result.out;
    while (true) {
        size_t open = rest.find("<<");
        size_t close = rest.find(">>", open);
        if (open == std::string_view::npos || close == std::string_view::npos) break;
        if (!out.body.empty() || out.status != 0) out.body += "|";
        out.body += rest.substr(0, open);
        int conns = 0;
        sscanf(std::string(rest.substr(open + 2, close - open - 2)).c_str(), "%d %d", &out.status,
               &conns);
        out.connects += conns;
        rest.remove_prefix(close + 2);
    }
    return out;
}

Curl curl_host(const HttpRouter& r, const std::string& host, const std::string& path = "/") {
    return curl({"-H", "Host: " + host}, {r.url(path)});
}

// The raw answer of a request sent on its own connection, read to EOF.
std::string raw_exchange(uint16_t port, std::string_view request) {
    fs::Fd fd = connect_to(port);
    if (!fd) return "<connect failed>";
    if (!send_all(fd.get(), request)) return "<send failed>";
    shutdown(fd.get(), SHUT_WR);
    return read_to_eof(fd.get()).value_or("<reset>");
}

std::string status_line(const std::string& response) {
    return response.substr(0, response.find("\r\n"));
}

TEST(RouterHttp, RoutesByHostHeaderWithCurl) {
    ASSERT_TRUE(have_program("curl"));
    TestServer a(keep_alive_http("app-a")), b(keep_alive_http("app-b"));
    HttpRouter r;
    r.router.set_hostname("a", "a.localhost");
    r.router.set_hostname("b", "B.Localhost");  // stored lowercase
    r.router.add_backend("a", tcp_backend("a-1", a.port()));
    r.router.add_backend("b", tcp_backend("b-1", b.port()));

    Curl to_a = curl_host(r, "a.localhost", "/x");
    EXPECT_EQ(to_a.status, 200) << to_a.headers;
    EXPECT_EQ(to_a.body, "app-a /x");
    Curl to_b = curl_host(r, "b.localhost");
    EXPECT_EQ(to_b.body, "app-b /");
    // The name as a browser sends it: with the port, any case, trailing dot.
    std::string port = std::to_string(r.port);
    Curl resolved = curl({"--resolve", "b.localhost:" + port + ":127.0.0.1"},
                         {"http://b.localhost:" + port + "/via-resolve"});
    EXPECT_EQ(resolved.body, "app-b /via-resolve");
    EXPECT_EQ(curl_host(r, "A.LocalHost:" + port).body, "app-a /");
    EXPECT_EQ(curl_host(r, "a.localhost.").body, "app-a /");
    // absolute-form target (a client talking to a proxy): its authority wins.
    EXPECT_EQ(curl({"-x", "http://127.0.0.1:" + port}, {"http://b.localhost/abs"}).body,
              "app-b http://b.localhost/abs");

    RouteStats sa = r.router.stats("a");
    EXPECT_EQ(sa.connections, 3u);
    EXPECT_EQ(sa.failed, 0u);
    EXPECT_GT(sa.bytes_in, 0u);
    EXPECT_GT(sa.bytes_out, 0u);
    EXPECT_EQ(r.router.stats("b").connections, 3u);
    EXPECT_EQ(r.router.http_stats().connections, 6u);
    EXPECT_EQ(r.router.http_stats().routed, 6u);
    EXPECT_TRUE(eventually([&] { return r.router.stats("a").active == 0; }, 30s));
}

TEST(RouterHttp, UnknownHostIs404WithoutListingHostnames) {
    TestServer a(keep_alive_http("app-a"));
    HttpRouter r;
    r.router.set_hostname("a", "secret-app.localhost");
    r.router.add_backend("a", tcp_backend("a-1", a.port()));
    Curl c = curl_host(r, "nope.localhost");
    EXPECT_EQ(c.status, 404);
    EXPECT_NE(c.body.find("nope.localhost"), std::string::npos) << c.body;
    EXPECT_EQ(c.body.find("secret-app"), std::string::npos) << c.body;
    EXPECT_NE(c.headers.find("Connection: close"), std::string::npos) << c.headers;
    EXPECT_EQ(r.router.http_stats().unknown_host, 1u);
    EXPECT_EQ(a.accepted(), 0u);

    // A cleared hostname is unknown too; remove_route forgets it.
    EXPECT_EQ(curl_host(r, "secret-app.localhost").status, 200);
    r.router.clear_hostname("a");
    EXPECT_EQ(curl_host(r, "secret-app.localhost").status, 404);
    r.router.set_hostname("a", "secret-app.localhost");
    r.router.remove_route("a");
    EXPECT_EQ(curl_host(r, "secret-app.localhost").status, 404);
}

TEST(RouterHttp, SharedPortTakenGivesClearErrorAndCanMove) {
    TestServer occupant(echo());
    TestServer a(keep_alive_http("app-a"));
    HttpRouter r;
    try {
        r.router.listen_http("127.0.0.1", occupant.port());
        FAIL() << "listen_http on a taken port succeeded";
    } catch (const Error& e) {
        std::string message = e.what();
        EXPECT_NE(message.find("127.0.0.1:" + std::to_string(occupant.port())), std::string::npos)
            << message;
        EXPECT_NE(message.find("in use"), std::string::npos) << message;
    }
    // The old listener still serves; listening elsewhere moves the port.
    r.router.set_hostname("a", "a.localhost");
    r.router.add_backend("a", tcp_backend("a-1", a.port()));
    EXPECT_EQ(curl_host(r, "a.localhost").body, "app-a /");
    uint16_t old_port = r.port;
    r.router.listen_http("127.0.0.1", old_port);  // same address: no-op
    EXPECT_EQ(r.router.http_port(), old_port);
    r.router.listen_http("127.0.0.1", 0);
    r.port = r.router.http_port();
    EXPECT_NE(r.port, old_port);
    EXPECT_EQ(curl_host(r, "a.localhost").body, "app-a /");
    EXPECT_FALSE(connect_to(old_port)) << "the old shared port is still open";
}

TEST(RouterHttp, HostnamesAreValidatedAndUnique) {
    Router router;
    router.set_hostname("a", "a.localhost");
    router.set_hostname("a", "a.localhost");  // again: no-op
    EXPECT_THROW(router.set_hostname("b", "A.localhost"), Error);
    EXPECT_THROW(router.set_hostname("b", "bad host"), Error);
    EXPECT_THROW(router.set_hostname("b", ""), Error);
    router.set_hostname("a", "other.localhost");  // replaces a.localhost ...
    router.set_hostname("b", "a.localhost");      // ... which is free again
}

TEST(RouterHttp, NoReadyBackendIs503WithRetryAfter) {
    HttpRouter r;
    r.router.set_hostname("a", "a.localhost");
    Curl none = curl_host(r, "a.localhost");  // no backend at all
    EXPECT_EQ(none.status, 503);
    EXPECT_NE(none.headers.find("Retry-After:"), std::string::npos) << none.headers;
    EXPECT_NE(none.body.find("a.localhost"), std::string::npos) << none.body;

    // Backends that all refuse (found only when connecting, on a worker).
    r.router.add_backend("a", Backend{"refuses", [] { return fs::Fd(); }});
    r.router.add_backend("a", tcp_backend("closed-port", router_port()));
    Curl refused = curl_host(r, "a.localhost");
    EXPECT_EQ(refused.status, 503);
    EXPECT_NE(refused.headers.find("Retry-After:"), std::string::npos) << refused.headers;
    RouteStats stats = r.router.stats("a");
    EXPECT_EQ(stats.connections, 2u);
    EXPECT_EQ(stats.failed, 2u);
    EXPECT_EQ(stats.active, 0u);
}

TEST(RouterHttp, OversizeHeadIs431) {
    TestServer a(keep_alive_http("app-a"));
    HttpRouter r;
    r.router.set_hostname("a", "a.localhost");
    r.router.add_backend("a", tcp_backend("a-1", a.port()));
    std::string big =
        "GET / HTTP/1.1\r\nHost: a.localhost\r\nX-Big: " + std::string(20000, 'x') + "\r\n\r\n";
    std::string answer = raw_exchange(r.port, big);
    EXPECT_EQ(status_line(answer), "HTTP/1.1 431 Request Header Fields Too Large") << answer;
    // Without an end in sight either.
    answer = raw_exchange(r.port, "GET / HTTP/1.1\r\nX-Big: " + std::string(40000, 'y'));
    EXPECT_EQ(status_line(answer), "HTTP/1.1 431 Request Header Fields Too Large") << answer;
    // Just under the limit passes.
    std::string fits = "GET / HTTP/1.1\r\nHost: a.localhost\r\nConnection: close\r\nX-Fits: ";
    fits += std::string(16000 - fits.size(), 'z') + "\r\n\r\n";
    EXPECT_EQ(status_line(raw_exchange(r.port, fits)), "HTTP/1.1 200 OK");
    EXPECT_EQ(a.accepted(), 1u);
    EXPECT_EQ(r.router.http_stats().bad_request, 2u);
}

TEST(RouterHttp, MalformedHeadsAre400) {
    TestServer a(keep_alive_http("app-a"));
    HttpRouter r;
    r.router.set_hostname("a", "a.localhost");
    r.router.add_backend("a", tcp_backend("a-1", a.port()));
    for (std::string request : {
             std::string("GET / HTTP/1.0\r\n\r\n"),                                  // no Host
             std::string("GET / HTTP/1.1\r\nAccept: */*\r\n\r\n"),                   // no Host
             std::string("GET / HTTP/1.1\r\nHost: a.localhost\r\nHost: b\r\n\r\n"),  // two
             std::string("GET / HTTP/1.1\r\nHost: a.localhost:http\r\n\r\n"),        // bad port
             std::string("GET / HTTP/1.1\r\nHost: a.localhost\r\n folded\r\n\r\n"),
             std::string("GET / HTTP/1.1\r\nNo colon here\r\nHost: a.localhost\r\n\r\n"),
             std::string("GET /\r\nHost: a.localhost\r\n\r\n"),
             std::string("GET / HTTP/2.0\r\nHost: a.localhost\r\n\r\n"),
             std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11),  // TLS hello
             std::string("GET / HTTP/1.1\r\nHost: a.loc"),                     // then EOF
         }) {
        std::string answer = raw_exchange(r.port, request);
        EXPECT_EQ(status_line(answer), "HTTP/1.1 400 Bad Request") << request << "\n" << answer;
    }
    EXPECT_EQ(a.accepted(), 0u);
    // HTTP/1.0 with a Host is fine.
    EXPECT_EQ(status_line(raw_exchange(r.port, "GET / HTTP/1.0\r\nhOsT:  a.localhost \r\n\r\n")),
              "HTTP/1.1 200 OK");
}

TEST(RouterHttp, SlowHeadIs408) {
    HttpRouter r;
    r.router.set_hostname("a", "a.localhost");
    r.router.set_header_timeout(300ms);
    fs::Fd fd = connect_to(r.port);
    ASSERT_TRUE(fd);
    ASSERT_TRUE(send_all(fd.get(), "GET / HTTP/1.1\r\nHost: a.lo"));  // and nothing more
    std::string answer = read_to_eof(fd.get()).value_or("<reset>");
    EXPECT_EQ(status_line(answer), "HTTP/1.1 408 Request Timeout") << answer;
    // A client that connects and sends nothing is closed as well.
    fs::Fd silent = connect_to(r.port);
    ASSERT_TRUE(silent);
    EXPECT_EQ(status_line(read_to_eof(silent.get()).value_or("<reset>")),
              "HTTP/1.1 408 Request Timeout");
}

TEST(RouterHttp, KeepAliveRequestsStayOnOneBackend) {
    ASSERT_TRUE(have_program("curl"));
    TestServer a1(keep_alive_http("a1")), a2(keep_alive_http("a2"));
    HttpRouter r;
    r.router.set_hostname("a", "a.localhost");
    r.router.add_backend("a", tcp_backend("a1", a1.port()));
    r.router.add_backend("a", tcp_backend("a2", a2.port()));
    // One curl, three URLs: one connection, three requests.
    Curl c = curl({"-H", "Host: a.localhost"}, {r.url("/1"), r.url("/2"), r.url("/3")});
    EXPECT_EQ(c.connects, 1) << c.headers;
    EXPECT_TRUE(c.body == "a1 /1|a1 /2|a1 /3" || c.body == "a2 /1|a2 /2|a2 /3") << c.body;
    EXPECT_EQ(a1.accepted() + a2.accepted(), 1u);
    EXPECT_EQ(r.router.stats("a").connections, 1u);
    // The next connection goes to the other backend.
    Curl next = curl_host(r, "a.localhost", "/4");
    EXPECT_EQ(next.body, c.body.substr(0, 2) == "a1" ? "a2 /4" : "a1 /4");
}

// Reads one response with a Content-Length body.
std::optional<std::string> read_response(int fd, std::string& buf) {
    char chunk[4096];
    while (true) {
        size_t end = buf.find("\r\n\r\n");
        if (end != std::string::npos) {
            size_t cl = buf.find("Content-Length: ");
            if (cl == std::string::npos || cl > end) return std::nullopt;
            size_t length = std::stoul(buf.substr(cl + 16));
            if (buf.size() >= end + 4 + length) {
                std::string body = buf.substr(end + 4, length);
                buf.erase(0, end + 4 + length);
                return body;
            }
        }
        ssize_t n = recv(fd, chunk, sizeof chunk, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return std::nullopt;
        buf.append(chunk, static_cast<size_t>(n));
    }
}

TEST(RouterHttp, PipelinedRequestsSplitInsideHostLine) {
    TestServer a(keep_alive_http("app-a")), b(keep_alive_http("app-b"));
    HttpRouter r;
    r.router.set_hostname("a", "a.localhost");
    r.router.set_hostname("b", "b.localhost");
    r.router.add_backend("a", tcp_backend("a-1", a.port()));
    r.router.add_backend("b", tcp_backend("b-1", b.port()));
    fs::Fd fd = connect_to(r.port);
    ASSERT_TRUE(fd);
    int one = 1;
    setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ASSERT_TRUE(send_all(fd.get(), "GET /first HTTP/1.1\r\nHo"));
    // Two segments: the router sees a head that ends inside "Host" and waits.
    ASSERT_TRUE(eventually([&] { return r.router.http_stats().connections == 1; }, 30s));
    std::this_thread::sleep_for(100ms);
    ASSERT_TRUE(send_all(
        fd.get(), "st: b.localhost\r\n\r\nGET /second HTTP/1.1\r\nHost: b.localhost\r\n\r\n"));
    std::string buf;
    EXPECT_EQ(read_response(fd.get(), buf), "app-b /first");
    EXPECT_EQ(read_response(fd.get(), buf), "app-b /second");
    // A third request on the same connection, after the first two answers.
    ASSERT_TRUE(send_all(fd.get(), "GET /third HTTP/1.1\r\nHost: b.localhost\r\n\r\n"));
    EXPECT_EQ(read_response(fd.get(), buf), "app-b /third");
    EXPECT_EQ(b.accepted(), 1u);
    EXPECT_EQ(a.accepted(), 0u);
}

TEST(RouterHttp, DrainLetsInFlightRequestFinish) {
    ASSERT_TRUE(have_program("curl"));
    TestServer slow(keep_alive_http("slow", nullptr, 1500ms)), fresh(keep_alive_http("fresh"));
    HttpRouter r;
    r.router.set_hostname("a", "a.localhost");
    r.router.add_backend("a", tcp_backend("slow", slow.port()));
    auto in_flight = std::async(std::launch::async, [&] {
        return curl({"-H", "Host: a.localhost", "-H", "Connection: close"}, {r.url("/long")});
    });
    ASSERT_TRUE(eventually([&] { return r.router.active_connections("slow") == 1; }, 60s));
    r.router.add_backend("a", tcp_backend("fresh", fresh.port()));
    r.router.remove_backend("a", "slow");
    EXPECT_EQ(curl_host(r, "a.localhost", "/new").body, "fresh /new");
    EXPECT_TRUE(r.router.drain("slow", 60s));
    Curl done = in_flight.get();
    EXPECT_EQ(done.status, 200);
    EXPECT_EQ(done.body, "slow /long");
    EXPECT_EQ(r.router.stats("a").failed, 0u);
}

struct WrkResult {
    uint64_t requests = 0;
    uint64_t socket_errors = 0;
    uint64_t non_2xx = 0;
    double requests_per_sec = 0;
    std::string output;
};

WrkResult wrk(const std::string& url, const std::vector<std::string>& extra, int seconds,
              int connections) {
    std::vector<std::string> argv = {"wrk", "-t2", "-c" + std::to_string(connections),
                                     "-d" + std::to_string(seconds) + "s"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.push_back(url);
    auto result = run(argv, std::chrono::seconds(seconds + 60));
    WrkResult out;
    out.output = result.out + result.err;
    std::istringstream lines(result.out);
    std::string line;
    while (std::getline(lines, line)) {
        unsigned long long a = 0, b = 0, c = 0, d = 0;
        double rate = 0;
        if (sscanf(line.c_str(), " %llu requests in", &a) == 1) out.requests = a;
        if (sscanf(line.c_str(),
                   " Socket errors: connect %llu, read %llu, write %llu, timeout %llu", &a, &b, &c,
                   &d) == 4)
            out.socket_errors = a + b + c + d;
        if (sscanf(line.c_str(), " Non-2xx or 3xx responses: %llu", &a) == 1) out.non_2xx = a;
        if (sscanf(line.c_str(), "Requests/sec: %lf", &rate) == 1) out.requests_per_sec = rate;
    }
    return out;
}

// wrk (keep-alive) through the shared port while the route's backends are
// replaced one after another, the rollout way: add the new one, take the old
// one out, let it finish (it closes its keep-alive connections after the next
// answer, as a server stopping gracefully does), drain, stop.
TEST(RouterHttp, WrkThroughSharedPortWhileBackendsChange) {
    ASSERT_TRUE(have_program("wrk"));
    HttpRouter r;
    r.router.set_hostname("a", "a.localhost");
    struct Replica {
        std::shared_ptr<std::atomic<bool>> closing = std::make_shared<std::atomic<bool>>(false);
        std::unique_ptr<TestServer> server;
        std::string id;
    };
    std::deque<Replica> replicas;
    int next = 0;
    auto start_replica = [&] {
        Replica replica;
        replica.id = "r" + std::to_string(next++);
        replica.server = std::make_unique<TestServer>(keep_alive_http(replica.id, replica.closing));
        r.router.add_backend("a", tcp_backend(replica.id, replica.server->port()));
        replicas.push_back(std::move(replica));
    };
    start_replica();
    start_replica();

    auto load = std::async(std::launch::async, [&] {
        return wrk(r.url("/"), {"-H", "Host: a.localhost"}, 8, 16);
    });
    ASSERT_TRUE(eventually([&] { return r.router.stats("a").bytes_out > 0; }, 60s));
    for (int i = 0; i < 6; i++) {
        start_replica();
        Replica old = std::move(replicas.front());
        replicas.pop_front();
        r.router.remove_backend("a", old.id);
        *old.closing = true;
        EXPECT_TRUE(r.router.drain(old.id, 60s)) << old.id;
        old.server->stop();
        std::this_thread::sleep_for(300ms);
    }
    WrkResult result = load.get();
    EXPECT_GT(result.requests, 0u) << result.output;
    EXPECT_EQ(result.socket_errors, 0u) << result.output;
    EXPECT_EQ(result.non_2xx, 0u) << result.output;
    EXPECT_EQ(r.router.stats("a").failed, 0u);
}

// CPU seconds used so far by this process's threads: those named
// "router-*" and all the others (here: the test's backend server).
struct CpuSplit {
    double router = 0;
    double rest = 0;
};
CpuSplit cpu_split() {
    CpuSplit out;
    double tick = static_cast<double>(sysconf(_SC_CLK_TCK));
    DIR* dir = opendir("/proc/self/task");
    while (dirent* entry = readdir(dir)) {
        if (entry->d_name[0] == '.') continue;
        std::string base = std::string("/proc/self/task/") + entry->d_name;
        std::string comm, stat;
        std::ifstream(base + "/comm") >> comm;
        std::getline(std::ifstream(base + "/stat"), stat);
        size_t close = stat.rfind(')');
        if (close == std::string::npos) continue;
        std::istringstream fields(stat.substr(close + 2));
        std::string field;
        unsigned long long utime = 0, stime = 0;
        for (int i = 3; i <= 15 && fields >> field; i++) {
            if (i == 14) utime = std::stoull(field);
            if (i == 15) stime = std::stoull(field);
        }
        double seconds = static_cast<double>(utime + stime) / tick;
        if (comm.rfind("router-", 0) == 0) out.router += seconds;
    }
    closedir(dir);
    // Exited threads (a backend's connection handlers) count in the process.
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    out.rest = static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
               static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6 -
               out.router;
    return out;
}

double children_cpu() {
    rusage usage{};
    getrusage(RUSAGE_CHILDREN, &usage);
    return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
           static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

// Not run by default (timings depend on the machine): wrk direct vs through
// the router's route port and the shared port, same keep-alive backend.
// --gtest_also_run_disabled_tests --gtest_filter='*DISABLED_Throughput*'
TEST(RouterHttp, DISABLED_ThroughputDirectVsRouted) {
    ASSERT_TRUE(have_program("wrk"));
    int seconds = 5;
    if (const char* s = getenv("ROUTER_BENCH_SECONDS")) seconds = atoi(s);
    int conns = 32;
    if (const char* c = getenv("ROUTER_BENCH_CONNECTIONS")) conns = atoi(c);
    size_t body = 5;
    if (const char* b = getenv("ROUTER_BENCH_BODY")) body = std::stoul(b);
    TestServer backend(keep_alive_http(std::string(body, 'b')));
    HttpRouter r;
    r.router.set_hostname("a", "a.localhost");
    r.router.add_backend("a", tcp_backend("b", backend.port()));
    uint16_t route_port = router_port();
    r.router.add_route("a", "127.0.0.1", route_port);
    // Besides req/s (which depend on what else runs on the machine), the CPU
    // each party spent per request: router threads, backend, wrk.
    auto measure = [&](const std::string& name, const std::string& url,
                       const std::vector<std::string>& extra) {
        CpuSplit before = cpu_split();
        double wrk_before = children_cpu();
        WrkResult result = wrk(url, extra, seconds, conns);
        CpuSplit after = cpu_split();
        double wrk_cpu = children_cpu() - wrk_before;
        double n = std::max<double>(1, static_cast<double>(result.requests));
        printf(
            "  %-11s %8.0f req/s  cpu/request: router %5.1f us, backend %5.1f us, wrk %5.1f "
            "us\n",
            name.c_str(), result.requests_per_sec, 1e6 * (after.router - before.router) / n,
            1e6 * (after.rest - before.rest) / n, 1e6 * wrk_cpu / n);
        EXPECT_EQ(result.socket_errors, 0u) << result.output;
        return result.requests_per_sec;
    };
    for (int round = 0; round < 3; round++) {
        printf("round %d (%d connections, %zu-byte body)\n", round, conns, body);
        double direct =
            measure("direct", "http://127.0.0.1:" + std::to_string(backend.port()) + "/", {});
        double routed =
            measure("route port", "http://127.0.0.1:" + std::to_string(route_port) + "/", {});
        double shared = measure("shared port", r.url("/"), {"-H", "Host: a.localhost"});
        printf("  route port %.0f%% of direct, shared port %.0f%% of direct\n",
               100 * routed / direct, 100 * shared / direct);
    }
}

// ---- resending the first request ---------------------------------------------

// Reads a request head; false when the connection ends first.
bool read_request_head(int fd, std::string* head = nullptr) {
    std::string buf;
    char chunk[4096];
    while (buf.find("\r\n\r\n") == std::string::npos) {
        ssize_t n = recv(fd, chunk, sizeof chunk, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        buf.append(chunk, static_cast<size_t>(n));
    }
    if (head) *head = buf;
    return true;
}

std::string http_response(const std::string& body) {
    return "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " +
           std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
}

// Reads the request, then closes without a byte of answer (a replica killed
// while it works on the request).
std::function<void(int)> reads_and_closes() {
    return [](int fd) { read_request_head(fd); };
}

// Answers with the head and only part of the body, then closes (busybox
// httpd writes head and body separately; killed in between).
std::function<void(int)> head_then_close() {
    return [](int fd) {
        if (!read_request_head(fd)) return;
        send_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\nshort");
    };
}

// Like http(), but Connection: close on HTTP/1.1 and head and body in two
// writes, as busybox httpd does.
std::function<void(int)> split_http(std::string body) {
    return [body](int fd) {
        if (!read_request_head(fd)) return;
        std::string all = http_response(body);
        size_t head_end = all.find("\r\n\r\n") + 4;
        if (!send_all(fd, all.substr(0, head_end))) return;
        std::this_thread::sleep_for(2ms);
        send_all(fd, all.substr(head_end));
    };
}

TEST(RouterReplay, BackendClosingWithoutAnswerIsReplayedOnRoutePort) {
    ASSERT_TRUE(have_program("curl"));
    TestServer dead(reads_and_closes()), good(split_http("from good"));
    RoutedPort routed;
    // Round robin starts with the first backend added.
    routed.router.add_backend("web", tcp_backend("dead", dead.port()));
    routed.router.add_backend("web", tcp_backend("good", good.port()));
    Curl c = curl({}, {"http://127.0.0.1:" + std::to_string(routed.port) + "/x"});
    EXPECT_EQ(c.status, 200) << c.headers;
    EXPECT_EQ(c.body, "from good");
    EXPECT_EQ(dead.accepted(), 1u);
    EXPECT_EQ(good.accepted(), 1u);
    ASSERT_TRUE(eventually([&] { return routed.router.stats("web").active == 0; }, 30s));
    RouteStats stats = routed.router.stats("web");
    EXPECT_EQ(stats.connections, 1u);
    EXPECT_EQ(stats.retried, 1u);
    EXPECT_EQ(stats.failed, 0u);
    EXPECT_EQ(routed.router.active_connections("dead"), 0u);
    EXPECT_EQ(routed.router.active_connections("good"), 0u);
}

TEST(RouterReplay, HeadersThenCloseIsReplayedOnSharedPort) {
    ASSERT_TRUE(have_program("curl"));
    TestServer cut(head_then_close()), good(split_http("the whole answer"));
    HttpRouter r;
    r.router.set_hostname("a", "a.localhost");
    r.router.add_backend("a", tcp_backend("cut", cut.port()));
    r.router.add_backend("a", tcp_backend("good", good.port()));
    Curl c = curl_host(r, "a.localhost", "/page");
    EXPECT_EQ(c.status, 200) << c.headers;
    EXPECT_EQ(c.body, "the whole answer");
    EXPECT_EQ(cut.accepted(), 1u);
    EXPECT_EQ(r.router.stats("a").retried, 1u);
    EXPECT_EQ(r.router.stats("a").failed, 0u);
    // A client that half-closes after its request is resent the same way.
    std::string raw = raw_exchange(r.port, "GET /raw HTTP/1.1\r\nHost: a.localhost\r\n\r\n");
    EXPECT_EQ(raw, http_response("the whole answer"));
    EXPECT_EQ(good.accepted(), 2u);
}

TEST(RouterReplay, EveryBackendFailingGivesTheClientAnError) {
    ASSERT_TRUE(have_program("curl"));
    TestServer a(reads_and_closes()), b(head_then_close());
    HttpRouter r;
    r.router.set_hostname("a", "a.localhost");
    r.router.add_backend("a", tcp_backend("a", a.port()));
    r.router.add_backend("a", tcp_backend("b", b.port()));
    // Each backend is tried once; then the client gets a 503, not a cut answer.
    Curl c = curl_host(r, "a.localhost", "/");
    EXPECT_EQ(c.status, 503) << c.headers << c.body;
    EXPECT_EQ(a.accepted(), 1u);
    EXPECT_EQ(b.accepted(), 1u);
    EXPECT_EQ(r.router.stats("a").failed, 1u);
    // On a route's own port: a reset, never a clean EOF.
    RoutedPort routed;
    routed.router.add_backend("web", tcp_backend("a", a.port()));
    routed.router.add_backend("web", tcp_backend("b", b.port()));
    fs::Fd fd = connect_to(routed.port);
    ASSERT_TRUE(fd);
    ASSERT_TRUE(send_all(fd.get(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    EXPECT_EQ(read_to_eof(fd.get()), std::nullopt);
    EXPECT_EQ(routed.router.stats("web").failed, 1u);
}

TEST(RouterReplay, PostIsNotReplayed) {
    TestServer cut(head_then_close()), dead(reads_and_closes()), good(split_http("good"));
    RoutedPort routed;
    routed.router.add_backend("web", tcp_backend("cut", cut.port()));
    routed.router.add_backend("web", tcp_backend("dead", dead.port()));
    routed.router.add_backend("web", tcp_backend("good", good.port()));
    std::string post = "POST /order HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi";
    // The cut answer reaches the client as it is (the client sees the failure).
    EXPECT_EQ(raw_exchange(routed.port, post),
              "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\nshort");
    // No answer at all: the client sees just that.
    EXPECT_EQ(raw_exchange(routed.port, post), "");
    EXPECT_EQ(good.accepted(), 0u);
    EXPECT_EQ(routed.router.stats("web").retried, 0u);
    // Non-HTTP bytes are never resent either.
    routed.router.remove_backend("web", "good");
    EXPECT_EQ(raw_exchange(routed.port, "hello"), "");
    EXPECT_EQ(raw_exchange(routed.port, "hello"), "");
    EXPECT_EQ(good.accepted(), 0u);
    EXPECT_EQ(routed.router.stats("web").retried, 0u);
}

// A large response, and one without Content-Length, reach the client while
// the backend is still sending: they are not held back.
TEST(RouterReplay, LargeAndUnsizedResponsesStream) {
    constexpr size_t kBody = 1024 * 1024;
    std::string body(kBody, '\0');
    std::mt19937 rng(7);
    for (auto& ch : body)
        ch = static_cast<char>('a' + rng() % 26);
    auto go_on = std::make_shared<std::atomic<bool>>(false);
    auto first_part = [go_on](size_t part, std::string head, std::string rest_of) {
        return [go_on, part, head, rest_of](int fd) {
            if (!read_request_head(fd)) return;
            if (!send_all(fd, head + rest_of.substr(0, part))) return;
            // The rest only once the client has seen the first part.
            for (int i = 0; i < 6000 && !go_on->load(); i++)
                std::this_thread::sleep_for(10ms);
            send_all(fd, rest_of.substr(part));
        };
    };
    std::string sized_head = "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(kBody) +
                             "\r\nConnection: close\r\n\r\n";
    std::string unsized_head = "HTTP/1.0 200 OK\r\n\r\n";
    for (const std::string& head : {sized_head, unsized_head}) {
        *go_on = false;
        size_t part = head == sized_head ? 100 * 1024 : 10;
        TestServer server(first_part(part, head, body));
        RoutedPort routed;
        routed.router.add_backend("web", tcp_backend("big", server.port()));
        fs::Fd fd = connect_to(routed.port);
        ASSERT_TRUE(fd);
        ASSERT_TRUE(send_all(fd.get(), "GET /big HTTP/1.1\r\nHost: x\r\n\r\n"));
        auto start = read_exactly(fd.get(), head.size() + part);
        ASSERT_TRUE(start) << "the first part did not arrive before the rest was sent";
        EXPECT_EQ(*start, head + body.substr(0, part));
        *go_on = true;
        auto rest = read_to_eof(fd.get());
        ASSERT_TRUE(rest);
        EXPECT_TRUE(*rest == body.substr(part)) << rest->size();
    }
}

// After the first response the connection is plain TCP: a second request on
// it is forwarded (and a backend dying on it is not hidden by a resend).
TEST(RouterReplay, KeepAliveSecondRequestIsForwardedAsBefore) {
    // Answers the first request, then closes on the second one.
    TestServer once([](int fd) {
        if (!read_request_head(fd)) return;
        send_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst");
        read_request_head(fd);
    });
    TestServer ka(keep_alive_http("ka")), other(keep_alive_http("other"));
    {
        RoutedPort routed;
        routed.router.add_backend("web", tcp_backend("ka", ka.port()));
        routed.router.add_backend("web", tcp_backend("other", other.port()));
        fs::Fd fd = connect_to(routed.port);
        ASSERT_TRUE(fd);
        std::string buf;
        for (std::string path : {"/1", "/2", "/3"}) {
            ASSERT_TRUE(send_all(fd.get(), "GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n"));
            EXPECT_EQ(read_response(fd.get(), buf), "ka " + path);
        }
        EXPECT_EQ(other.accepted(), 0u);
    }
    RoutedPort routed;
    routed.router.add_backend("web", tcp_backend("once", once.port()));
    routed.router.add_backend("web", tcp_backend("other", other.port()));
    fs::Fd fd = connect_to(routed.port);
    ASSERT_TRUE(fd);
    std::string buf;
    ASSERT_TRUE(send_all(fd.get(), "GET /1 HTTP/1.1\r\nHost: x\r\n\r\n"));
    EXPECT_EQ(read_response(fd.get(), buf), "first");
    ASSERT_TRUE(send_all(fd.get(), "GET /2 HTTP/1.1\r\nHost: x\r\n\r\n"));
    EXPECT_EQ(read_to_eof(fd.get()), "");
    EXPECT_EQ(other.accepted(), 0u);
    EXPECT_EQ(routed.router.stats("web").retried, 0u);
}

TEST(RouterReplay, HeadAndNoContentResponsesAreComplete) {
    // HEAD's answer and a 204 have no body although a Content-Length may be given.
    TestServer server([](int fd) {
        std::string head;
        if (!read_request_head(fd, &head)) return;
        if (head.rfind("HEAD ", 0) == 0)
            send_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
        else
            send_all(fd, "HTTP/1.1 204 No Content\r\n\r\n");
        // Keep the connection open: the answer must arrive without an EOF.
        read_request_head(fd);
    });
    RoutedPort routed;
    routed.router.add_backend("web", tcp_backend("s", server.port()));
    for (std::string method : {"HEAD", "DELETE"}) {
        fs::Fd fd = connect_to(routed.port);
        ASSERT_TRUE(fd);
        ASSERT_TRUE(send_all(fd.get(), method + " / HTTP/1.1\r\nHost: x\r\n\r\n"));
        std::string expected = method == "HEAD" ? "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
                                                : "HTTP/1.1 204 No Content\r\n\r\n";
        EXPECT_EQ(read_exactly(fd.get(), expected.size()), expected);
    }
}

// One request per connection (like busybox httpd) from several clients,
// while backends are killed mid-response and restarted, again and again:
// no client sees a failure.
TEST(RouterReplay, BackendsKilledUnderLoadFailNoRequest) {
    constexpr int kBackends = 3;
    constexpr int kKills = 30;
    const std::string body(3000, 'x');
    std::mutex mu;
    std::vector<std::unique_ptr<TestServer>> servers(kBackends);
    RoutedPort routed;
    HttpRouter shared;
    shared.router.set_hostname("web", "web.localhost");
    auto start = [&](int i) {
        servers[i] = std::make_unique<TestServer>(split_http(body));
        std::string id = "b" + std::to_string(i);
        routed.router.add_backend("web", tcp_backend(id, servers[i]->port()));
        shared.router.add_backend("web", tcp_backend(id, servers[i]->port()));
    };
    for (int i = 0; i < kBackends; i++)
        start(i);
    const std::string expected = http_response(body);
    std::atomic<bool> done{false};
    std::atomic<int> requests{0};
    std::mutex failures_mu;
    std::vector<std::string> failures;
    std::vector<std::thread> clients;
    for (int c = 0; c < 6; c++) {
        clients.emplace_back([&, c] {
            uint16_t port = c % 2 ? routed.port : shared.port;
            bool half_close = c % 3 == 0;
            while (!done) {
                std::string answer;
                fs::Fd fd = connect_to(port);
                if (!fd) {
                    answer = "<connect failed>";
                } else if (!send_all(fd.get(), "GET / HTTP/1.1\r\nHost: web.localhost\r\n\r\n")) {
                    answer = "<send failed>";
                } else {
                    if (half_close) shutdown(fd.get(), SHUT_WR);
                    answer.clear();
                    char chunk[8192];
                    while (true) {
                        ssize_t n = recv(fd.get(), chunk, sizeof chunk, 0);
                        if (n < 0 && errno == EINTR) continue;
                        if (n < 0)
                            answer = "<reset after " + std::to_string(answer.size()) + " bytes>";
                        if (n <= 0) break;
                        answer.append(chunk, static_cast<size_t>(n));
                    }
                }
                requests++;
                if (answer != expected) {
                    std::lock_guard lock(failures_mu);
                    failures.push_back(answer.substr(0, 200));
                }
            }
        });
    }
    for (int k = 0; k < kKills; k++) {
        int mark = requests;
        ASSERT_TRUE(eventually([&] { return requests >= mark + 20; }, 60s));
        int i = k % kBackends;
        std::lock_guard lock(mu);
        servers[i]->kill();  // in-flight requests are cut mid-response
        start(i);            // the same id, a new port
    }
    done = true;
    for (auto& t : clients)
        t.join();
    RouteStats a = routed.router.stats("web"), b = shared.router.stats("web");
    EXPECT_TRUE(failures.empty()) << failures.size() << " of " << requests
                                  << " failed, e.g.: " << failures.front()
                                  << " (route port: " << a.failed
                                  << " failed, shared port: " << b.failed << ")";
    EXPECT_EQ(a.failed + b.failed, 0u);
    EXPECT_EQ(a.connections + b.connections, static_cast<uint64_t>(requests.load()));
    EXPECT_GT(a.retried + b.retried, 0u) << "no request was in flight at a kill";
}

// ---- bounded connection attempts (Backend::attempt) --------------------------

// A backend through NetnsSockets in our own namespace, with bounded attempts.
Backend attempt_backend(const std::string& id, uint16_t port,
                        std::shared_ptr<NetnsSockets> sockets = nullptr) {
    if (!sockets) sockets = std::make_shared<NetnsSockets>(-1);
    return Backend{id, nullptr,
                   [sockets, port](std::chrono::milliseconds timeout, bool& timed_out) {
                       auto result = ConnectResult::Refused;
                       fs::Fd fd = sockets->connect(port, timeout, &result);
                       timed_out = result == ConnectResult::TimedOut;
                       return fd;
                   }};
}

// A listener with a full accept queue: backlog 0 holds one connection, which
// nobody accepts, so every further SYN is dropped (TcpExtListenOverflows), as
// busybox httpd's backlog of 9 does under load. Without bounded attempts a
// connect would wait for the kernel's SYN retransmit (1 s).
struct FullBacklog {
    fs::Fd listener;
    fs::Fd queued;
    uint16_t port = 0;
    FullBacklog() {
        listener = fs::Fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_in addr = loopback(0);
        socklen_t len = sizeof addr;
        if (bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
            listen(listener.get(), 0) != 0 ||
            getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0)
            throw sys_error("test: listen on", "127.0.0.1:0", errno);
        port = ntohs(addr.sin_port);
        queued = connect_to(port);
        if (!queued) throw Error("test: cannot fill the backlog of port " + std::to_string(port));
    }
};

TEST(RouterConnect, BackendDroppingSynsIsLeftForAnotherBackend) {
    FullBacklog stuck1, stuck2;
    TestServer good(http("good"));
    RoutedPort routed;
    routed.router.add_backend("web", attempt_backend("stuck-1", stuck1.port));
    routed.router.add_backend("web", attempt_backend("stuck-2", stuck2.port));
    routed.router.add_backend("web", attempt_backend("good", good.port()));

    for (int i = 0; i < 4; i++)
        EXPECT_EQ(body_of(routed.port), "good") << "request " << i;
    RouteStats stats = routed.router.stats("web");
    EXPECT_EQ(stats.failed, 0u);
    // Round robin: every other connection starts at stuck-1 (a try that does
    // not wait, uncounted), then gets a short attempt on stuck-2 that times
    // out, and goes on to the good one.
    EXPECT_GE(stats.connect_timeouts, 2u);
    EXPECT_EQ(good.accepted(), 4u);
}

TEST(RouterConnect, SingleBackendWithFullBacklogIsTriedAgain) {
    FullBacklog backlog;
    RoutedPort routed;
    routed.router.add_backend("web", attempt_backend("only", backlog.port));

    // The backend starts accepting once the router saw an attempt time out.
    std::thread server([&] {
        if (!eventually([&] { return routed.router.stats("web").connect_timeouts >= 1; }, 60s))
            return;
        fs::Fd first(accept4(backlog.listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
        fs::Fd second(accept4(backlog.listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
        if (second) {
            set_io_timeout(second.get());
            http("after a retry")(second.get());
        }
    });
    EXPECT_EQ(body_of(routed.port), "after a retry");
    server.join();
    RouteStats stats = routed.router.stats("web");
    EXPECT_EQ(stats.failed, 0u);
    EXPECT_GE(stats.connect_timeouts, 1u);
}

TEST(RouterConnect, BackendOnlyDroppingSynsFailsTheClientAfterTheBudget) {
    FullBacklog stuck;
    RoutedPort routed;
    routed.router.add_backend("web", attempt_backend("stuck", stuck.port));
    fs::Fd client = connect_to(routed.port);
    ASSERT_TRUE(client);
    ASSERT_TRUE(send_all(client.get(), "GET / HTTP/1.0\r\n\r\n"));
    EXPECT_EQ(read_to_eof(client.get()).value_or(""), "");  // closed, nothing answered
    RouteStats stats = routed.router.stats("web");
    EXPECT_EQ(stats.failed, 1u);
    // Attempts of growing length, not one long wait.
    EXPECT_GE(stats.connect_timeouts, 3u);
}

TEST(RouterConnect, RemovedBackendReleasesItsSocketsAndHelper) {
    size_t fds = open_fds();
    TestServer server(http("pooled"));
    {
        RoutedPort routed;
        auto sockets = std::make_shared<NetnsSockets>(-1);
        std::weak_ptr<NetnsSockets> watch = sockets;
        routed.router.add_backend("web", attempt_backend("pooled", server.port(), sockets));
        sockets.reset();
        EXPECT_EQ(body_of(routed.port), "pooled");
        EXPECT_EQ(routed.router.stats("web").connect_timeouts, 0u);
        routed.router.remove_backend("web", "pooled");
        EXPECT_TRUE(routed.router.drain("pooled", 30s));
        EXPECT_TRUE(eventually([&] { return watch.expired(); }, 30s));
    }
    server.stop();
    EXPECT_EQ(open_fds(), fds);
}

// ---- forwarders: accepting, scheduling, backpressure ---------------------------

// Sets CASCADE_ROUTER_THREADS for the routers constructed in its scope.
struct ForwarderCount {
    explicit ForwarderCount(int n) {
        setenv("CASCADE_ROUTER_THREADS", std::to_string(n).c_str(), 1);
    }
    ~ForwarderCount() { unsetenv("CASCADE_ROUTER_THREADS"); }
};

// Threads of this process by name -> their scheduling policies.
std::multimap<std::string, int> thread_policies() {
    std::multimap<std::string, int> out;
    DIR* dir = opendir("/proc/self/task");
    while (dirent* entry = readdir(dir)) {
        if (entry->d_name[0] == '.') continue;
        std::string comm;
        std::ifstream(std::string("/proc/self/task/") + entry->d_name + "/comm") >> comm;
        int policy = sched_getscheduler(static_cast<pid_t>(std::stoi(entry->d_name)));
        if (!comm.empty() && policy >= 0) out.emplace(comm, policy);
    }
    closedir(dir);
    return out;
}

TEST(RouterThreads, ForwardingThreadsRunAsBatchAndNothingElseDoes) {
    TestServer server(http("batch"));
    RoutedPort routed;
    routed.router.add_backend("web", attempt_backend("pooled", server.port()));
    ASSERT_EQ(body_of(routed.port), "batch");
    size_t forwarders = 0;
    for (auto& [name, policy] : thread_policies()) {
        bool ours = name.rfind("router-", 0) == 0 || name == "netns-sockets";
        if (name == "router-forward") forwarders++;
        EXPECT_EQ(policy, ours ? SCHED_BATCH : SCHED_OTHER) << name;
    }
    EXPECT_GE(forwarders, 1u);
    EXPECT_EQ(sched_getscheduler(0), SCHED_OTHER);  // the caller's thread is left alone
}

TEST(RouterThreads, SeveralForwardersShareTheRoutePorts) {
    ForwarderCount three(3);
    TestServer a(echo()), b(echo());
    RoutedPort routed;
    routed.router.add_backend("web", attempt_backend("a", a.port()));
    routed.router.add_backend("web", tcp_backend("b", b.port()));
    size_t forwarders = 0;
    for (auto& [name, policy] : thread_policies())
        forwarders += name == "router-forward";
    EXPECT_EQ(forwarders, 3u);

    // Clients arriving together: each gets its own bytes back, whichever
    // forwarder accepted it.
    EXPECT_EQ(echo_burst(routed.port, 150), 0);
    EXPECT_EQ(routed.router.stats("web").connections, 150u);

    // Moving the route: every forwarder lets go of the old port.
    uint16_t old_port = routed.port;
    uint16_t new_port = 0;
    for (int attempt = 0; attempt < 20 && new_port == 0; attempt++) {
        uint16_t candidate = router_port();
        try {
            routed.router.add_route("web", "127.0.0.1", candidate);
            new_port = candidate;
        } catch (const Error&) {
        }
    }
    ASSERT_NE(new_port, 0);
    EXPECT_FALSE(connect_to(old_port)) << "the old listener is still open";
    EXPECT_EQ(echo_burst(new_port, 60), 0);
    routed.router.remove_route("web");
    EXPECT_FALSE(connect_to(new_port)) << "the listener of a removed route is still open";
}

// The shared port with several forwarders: whichever accepts a client reads
// its head, routes it, answers errors itself, and forwards.
TEST(RouterThreads, SeveralForwardersShareTheHttpPort) {
    ForwarderCount three(3);
    TestServer a(keep_alive_http("app-a")), b(http("app-b"));
    HttpRouter r;
    r.router.set_hostname("a", "a.localhost");
    r.router.set_hostname("b", "b.localhost");
    r.router.add_backend("a", attempt_backend("a-1", a.port()));
    r.router.add_backend("b", tcp_backend("b-1", b.port()));
    constexpr int kClients = 90;
    std::latch start(kClients);
    std::atomic<int> wrong{0};
    std::vector<std::thread> clients;
    for (int i = 0; i < kClients; i++) {
        clients.emplace_back([&, i] {
            start.arrive_and_wait();
            std::string host = i % 3 == 0   ? "a.localhost"
                               : i % 3 == 1 ? "b.localhost"
                                            : "c.localhost";
            auto response = http_get(r.port, "/" + std::to_string(i), host, 30000ms);
            bool right =
                response && (i % 3 == 0 ? response->status == 200 &&
                                              response->body == "app-a /" + std::to_string(i)
                             : i % 3 == 1 ? response->status == 200 && response->body == "app-b"
                                          : response->status == 404);
            if (!right) wrong++;
        });
    }
    for (auto& t : clients)
        t.join();
    EXPECT_EQ(wrong, 0);
    HttpPortStats stats = r.router.http_stats();
    EXPECT_EQ(stats.connections, static_cast<uint64_t>(kClients));
    EXPECT_EQ(stats.routed, static_cast<uint64_t>(kClients * 2 / 3));
    EXPECT_EQ(stats.unknown_host, static_cast<uint64_t>(kClients / 3));
}

// The backend answers at once with more than the sockets hold while the
// client reads nothing for a while: the router stops reading the backend
// when the client's side is full and goes on when the client reads.
TEST(RouterThreads, SlowReaderGetsEveryByteInOrder) {
    constexpr size_t kTotal = 24u << 20;
    uint64_t sent_hash = kFnvOffset;
    std::mutex hash_mu;
    TestServer server([&](int fd) {
        std::mt19937_64 rng(7);
        std::string chunk(1 << 20, '\0');
        uint64_t hash = kFnvOffset;
        for (size_t done = 0; done < kTotal; done += chunk.size()) {
            for (size_t i = 0; i < chunk.size(); i += 8) {
                uint64_t v = rng();
                std::memcpy(chunk.data() + i, &v, 8);
            }
            hash = fnv1a(hash, chunk.data(), chunk.size());
            if (!send_all(fd, chunk)) return;
        }
        std::lock_guard lock(hash_mu);
        sent_hash = hash;
    });
    RoutedPort routed;
    routed.router.add_backend("web", attempt_backend("bulk", server.port()));
    fs::Fd client = connect_to(routed.port);
    ASSERT_TRUE(client);
    std::this_thread::sleep_for(500ms);                  // everything in between fills up
    Received got = read_hashed(client.get(), 4u << 20);  // and pauses again, now and then
    EXPECT_EQ(got.bytes, kTotal);
    std::lock_guard lock(hash_mu);
    EXPECT_EQ(got.hash, sent_hash);
}

// A backend that speaks first (a greeting, as SMTP or MySQL servers send) is
// heard without the client sending anything, also when the forwarder made
// the connection itself.
TEST(RouterThreads, BackendSpeakingFirstIsHeard) {
    TestServer server(echo("220 ready\r\n"));
    RoutedPort routed;
    routed.router.add_backend("web", attempt_backend("greeter", server.port()));
    for (int i = 0; i < 5; i++) {
        fs::Fd client = connect_to(routed.port);
        ASSERT_TRUE(client);
        EXPECT_EQ(read_exactly(client.get(), 11), "220 ready\r\n") << "connection " << i;
        ASSERT_TRUE(send_all(client.get(), "QUIT\r\n"));
        EXPECT_EQ(read_exactly(client.get(), 6), "QUIT\r\n");
    }
}

// Out of file descriptors, the forwarders stop accepting for a moment instead
// of spinning on the listener (level-triggered, it stays readable), and take
// the waiting clients once fds are free again.
TEST(RouterThreads, OutOfFdsPausesAcceptingWithoutSpinning) {
    TestServer server(echo());
    RoutedPort routed;
    routed.router.add_backend("web", tcp_backend("echo", server.port()));
    std::vector<fs::Fd> clients;
    for (int i = 0; i < 3; i++)
        clients.emplace_back(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    rlimit saved{};
    ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &saved), 0);
    rlimit none = saved;
    int lowest_free = fcntl(0, F_DUPFD_CLOEXEC, 0);
    ASSERT_GE(lowest_free, 0);
    close(lowest_free);
    none.rlim_cur = static_cast<rlim_t>(lowest_free);  // every fd number below it is taken
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &none), 0);
    sockaddr_in addr = loopback(routed.port);
    for (auto& c : clients)  // into the listen backlog: accept4 gets EMFILE
        EXPECT_EQ(::connect(c.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    // The process's CPU time (reading a thread's needs an fd): the rest of
    // it is idle meanwhile.
    auto cpu = [] {
        rusage usage{};
        getrusage(RUSAGE_SELF, &usage);
        return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
               static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
    };
    double before = cpu();
    std::this_thread::sleep_for(1000ms);
    double after = cpu();
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &saved), 0);
    // Spinning would take most of that second; pausing takes a few retries.
    EXPECT_LT(after - before, 0.3) << "router threads spun on EMFILE";
    for (size_t i = 0; i < clients.size(); i++) {
        std::string message = "after the pause " + std::to_string(i);
        ASSERT_TRUE(send_all(clients[i].get(), message));
        shutdown(clients[i].get(), SHUT_WR);
        EXPECT_EQ(read_to_eof(clients[i].get()), message);
    }
}

}  // namespace
}  // namespace cascade::runtime
