// The router against small real servers on loopback: echo, HTTP/1.0, servers
// that read to EOF or half-close themselves. Every test uses its own ports.
#include "runtime/router.hpp"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <future>
#include <latch>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "oci/error.hpp"
#include "tests/support/support.hpp"

namespace cascade::runtime {
namespace {

using namespace std::chrono_literals;
using cascade::test::eventually;
using cascade::test::free_port;
using cascade::test::http_get;

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
    uint64_t received_hash = kFnvOffset;
    size_t received = 0;
    char buf[65536];
    while (true) {
        ssize_t n = recv(client.get(), buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        received_hash = fnv1a(received_hash, buf, static_cast<size_t>(n));
        received += static_cast<size_t>(n);
    }
    writer.join();
    EXPECT_EQ(received, kTotal);
    EXPECT_EQ(received_hash, sent_hash);
}

TEST(Router, ManyConcurrentClientsWithoutFailure) {
    TestServer a(echo()), b(echo());
    RoutedPort routed;
    routed.router.add_backend("web", tcp_backend("a", a.port()));
    routed.router.add_backend("web", tcp_backend("b", b.port()));

    constexpr int kClients = 200;
    std::latch start(kClients);
    std::atomic<int> failures{0};
    std::vector<std::thread> clients;
    for (int i = 0; i < kClients; i++) {
        clients.emplace_back([&, i] {
            std::string message = "client " + std::to_string(i) + " " + std::string(4000 + i, 'm');
            start.arrive_and_wait();
            fs::Fd fd = connect_to(routed.port);
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
    EXPECT_EQ(failures, 0);
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

}  // namespace
}  // namespace cascade::runtime
