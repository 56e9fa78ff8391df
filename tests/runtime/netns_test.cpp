#include "runtime/netns.hpp"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <thread>

#include "oci/error.hpp"
#include "runtime/runc.hpp"
#include "tests/runtime/runtime_support.hpp"

namespace cascade::runtime {
namespace {

using testing::interfaces_in;
using testing::read_text;
namespace stdfs = std::filesystem;
using namespace std::chrono_literals;

class NetnsTest : public testing::RuntimeTest {
  protected:
    std::string run_and_capture(const std::string& id, BundleOptions options) {
        Runc runc(runc_root());
        auto bundle = plain_bundle(id, std::move(options));
        auto out_path = dir() / (id + ".out");
        auto out = fs::open_or_throw(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int code = runc.run(id, bundle, out.get(), out.get());
        EXPECT_EQ(code, 0) << read_text(out_path);
        return read_text(out_path);
    }
};

std::string request(int fd, const std::string& text) {
    fs::write_all(fd, text);
    std::string response;
    char buf[4096];
    while (true) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n <= 0) break;
        response.append(buf, static_cast<size_t>(n));
    }
    return response;
}

TEST_F(NetnsTest, OwnNetworkHasOnlyLoopbackAndItIsUp) {
    auto host = interfaces_in(read_text("/proc/net/dev"));
    auto seen = interfaces_in(run_and_capture("own-net", shell("cat /proc/net/dev")));
    EXPECT_EQ(seen, (std::set<std::string>{"lo"}));
    for (const auto& name : host) {
        if (name != "lo") {
            EXPECT_EQ(seen.count(name), 0u) << name;
        }
    }

    auto flags = run_and_capture("lo-flags", shell("cat /sys/class/net/lo/flags"));
    EXPECT_TRUE(std::stoul(flags, nullptr, 16) & 0x1) << "lo is not up: " << flags;
}

TEST_F(NetnsTest, HostNetworkSeesTheHostsInterfaces) {
    auto host = interfaces_in(read_text("/proc/net/dev"));
    auto options = shell("cat /proc/net/dev");
    options.network = NetworkMode::Host;
    EXPECT_EQ(interfaces_in(run_and_capture("host-net", options)), host);
}

TEST_F(NetnsTest, ConnectReachesAServerOnlyTheContainerSees) {
    Runc runc(runc_root());
    auto options = shell("exec httpd -f -p 8080 -h /www");
    auto bundle = plain_bundle("web", options);
    auto log = fs::open_or_throw(dir() / "web.log", O_WRONLY | O_CREAT | O_APPEND, 0644);
    int pid = runc.run_detached("web", bundle, log.get());
    fs::Fd ns = open_netns(pid);

    fs::Fd conn;
    ASSERT_TRUE(cascade::test::eventually(
        [&] {
            conn = connect_in_netns(ns.get(), 8080, 1000ms);
            return bool(conn);
        },
        20s))
        << read_text(dir() / "web.log");
    // Returned in blocking mode.
    EXPECT_EQ(::fcntl(conn.get(), F_GETFL) & O_NONBLOCK, 0);
    auto response = request(conn.get(), "GET /hello.txt HTTP/1.0\r\nHost: x\r\n\r\n");
    EXPECT_EQ(response.rfind("HTTP/1.", 0), 0u) << response;
    EXPECT_NE(response.find(" 200 "), std::string::npos) << response;
    EXPECT_NE(response.find("hello from the container"), std::string::npos) << response;

    // Nothing listens on another port inside: refused, not an exception.
    EXPECT_FALSE(connect_in_netns(ns.get(), 8081, 1000ms));

    // A listener on the host's loopback is not reachable from inside the
    // container's namespace, but is from ours (-1).
    fs::Fd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    ASSERT_TRUE(listener);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ASSERT_EQ(::listen(listener.get(), 4), 0);
    socklen_t len = sizeof addr;
    ASSERT_EQ(::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len), 0);
    uint16_t host_port = ntohs(addr.sin_port);
    EXPECT_TRUE(connect_in_netns(-1, host_port, 1000ms));
    EXPECT_FALSE(connect_in_netns(ns.get(), host_port, 1000ms));

    runc.remove("web", true);
}

size_t count_entries(const char* path) {
    size_t count = 0;
    DIR* dir = opendir(path);
    if (!dir) return 0;
    while (dirent* entry = readdir(dir))
        if (entry->d_name[0] != '.') count++;
    closedir(dir);
    return count;
}

// A fresh network namespace with its loopback up, made by a short-lived
// thread (unshare affects only that thread); empty when this kernel or
// sandbox does not allow it.
fs::Fd private_netns() {
    fs::Fd ns;
    std::thread([&] {
        if (::unshare(CLONE_NEWNET) != 0) return;
        fs::Fd probe(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
        ifreq ifr{};
        std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
        if (!probe || ::ioctl(probe.get(), SIOCGIFFLAGS, &ifr) != 0) return;
        ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
        if (::ioctl(probe.get(), SIOCSIFFLAGS, &ifr) != 0) return;
        ns = fs::Fd(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
    }).join();
    return ns;
}

// A listener on 127.0.0.1 (kernel-chosen port) on `sock`; returns the port.
uint16_t listen_loopback(const fs::Fd& sock, int backlog) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(sock.get(), backlog) != 0)
        return 0;
    socklen_t len = sizeof addr;
    if (::getsockname(sock.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0) return 0;
    return ntohs(addr.sin_port);
}

TEST(NetnsSockets, SocketsBelongToTheNamespaceAndNoThreadPerSocket) {
    fs::Fd ns = private_netns();
    if (!ns) GTEST_SKIP() << "cannot create a network namespace here";
    NetnsSockets sockets(ns.get());
    EXPECT_FALSE(sockets.helper_running());  // started by the first take()

    // A listener made from the pool is inside the namespace: reachable through
    // the pool, not from the host's loopback.
    fs::Fd listener = sockets.take();
    ASSERT_TRUE(listener);
    EXPECT_NE(::fcntl(listener.get(), F_GETFL) & O_NONBLOCK, 0);
    uint16_t port = listen_loopback(listener, 16);
    ASSERT_NE(port, 0);
    EXPECT_TRUE(sockets.helper_running());
    // The socket's own namespace (SIOCGSKNS) is the private one.
    fs::Fd sock_ns(::ioctl(listener.get(), SIOCGSKNS));
    ASSERT_TRUE(sock_ns) << std::strerror(errno);
    struct stat a = {};
    struct stat b = {};
    ASSERT_EQ(::fstat(sock_ns.get(), &a), 0);
    ASSERT_EQ(::fstat(ns.get(), &b), 0);
    EXPECT_EQ(a.st_ino, b.st_ino);

    ConnectResult result = ConnectResult::Refused;
    fs::Fd conn = sockets.connect(port, 5000ms, &result);
    ASSERT_TRUE(conn);
    EXPECT_EQ(result, ConnectResult::Connected);
    // Ready for the router's forwarding: non-blocking, without Nagle.
    EXPECT_NE(::fcntl(conn.get(), F_GETFL) & O_NONBLOCK, 0);
    int nodelay = 0;
    socklen_t len = sizeof nodelay;
    ASSERT_EQ(::getsockopt(conn.get(), IPPROTO_TCP, TCP_NODELAY, &nodelay, &len), 0);
    EXPECT_EQ(nodelay, 1);
    fs::Fd accepted(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    EXPECT_TRUE(accepted);

    // A port nothing listens on inside is refused (an answer, not a timeout).
    fs::Fd unused = sockets.take();
    uint16_t closed_port = listen_loopback(unused, 1);
    ASSERT_NE(closed_port, 0);
    unused.reset();
    EXPECT_FALSE(sockets.connect(closed_port, 5000ms, &result));
    EXPECT_EQ(result, ConnectResult::Refused);

    // The pool is refilled by the one helper: many sockets, one thread.
    size_t threads = count_entries("/proc/self/task");
    for (int i = 0; i < 50; i++)
        EXPECT_TRUE(sockets.take());
    EXPECT_EQ(count_entries("/proc/self/task"), threads);
    EXPECT_GE(sockets.sockets_made(), 52u);
}

TEST(NetnsSockets, FullListenBacklogTimesOutInsteadOfWaitingForSynRetransmit) {
    fs::Fd ns = private_netns();
    if (!ns) GTEST_SKIP() << "cannot create a network namespace here";
    NetnsSockets sockets(ns.get());
    // backlog 0 holds one connection; nobody accepts, so the next SYN is
    // dropped (TcpExtListenOverflows), as with busybox httpd's backlog under load.
    fs::Fd listener = sockets.take();
    uint16_t port = listen_loopback(listener, 0);
    ASSERT_NE(port, 0);
    ConnectResult result = ConnectResult::Refused;
    fs::Fd queued = sockets.connect(port, 5000ms, &result);
    ASSERT_TRUE(queued);

    fs::Fd dropped = sockets.connect(port, 100ms, &result);
    EXPECT_FALSE(dropped);
    EXPECT_EQ(result, ConnectResult::TimedOut);

    // Once the listener accepts, a new attempt connects at once.
    fs::Fd accepted(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    ASSERT_TRUE(accepted);
    EXPECT_TRUE(sockets.connect(port, 5000ms, &result));
    EXPECT_EQ(result, ConnectResult::Connected);
}

TEST(NetnsSockets, DestructionReleasesEveryFdAndTheHelper) {
    fs::Fd ns = private_netns();
    if (!ns) GTEST_SKIP() << "cannot create a network namespace here";
    size_t fds = count_entries("/proc/self/fd");
    size_t threads = count_entries("/proc/self/task");
    {
        NetnsSockets sockets(ns.get());
        for (int i = 0; i < 10; i++)
            EXPECT_TRUE(sockets.take());
        EXPECT_TRUE(sockets.helper_running());
        EXPECT_GT(count_entries("/proc/self/fd"), fds);  // the dup and the pool
    }
    EXPECT_EQ(count_entries("/proc/self/fd"), fds);
    // The helper is joined; its task leaves /proc/self/task when the kernel
    // releases it, a moment after the join returns.
    EXPECT_TRUE(test::eventually([&] { return count_entries("/proc/self/task") == threads; },
                                 std::chrono::seconds(5)))
        << count_entries("/proc/self/task") << " threads, " << threads << " before";
}

TEST(NetnsSockets, BadNamespaceFdThrowsAClearError) {
    // A regular file is not a network namespace: setns fails in the helper,
    // take() reports it.
    fs::Fd not_ns(::open("/proc/self/status", O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(not_ns);
    NetnsSockets sockets(not_ns.get());
    try {
        sockets.take();
        FAIL() << "take() should throw";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("setns"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(sockets.helper_running());
}

TEST_F(NetnsTest, OpenNetnsOfAMissingProcessThrows) {
    // pid_max is at most 2^22, so this pid cannot exist.
    EXPECT_THROW(open_netns(1 << 23), Error);
}

}  // namespace
}  // namespace cascade::runtime
