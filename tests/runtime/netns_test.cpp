#include "runtime/netns.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

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

TEST_F(NetnsTest, OpenNetnsOfAMissingProcessThrows) {
    // pid_max is at most 2^22, so this pid cannot exist.
    EXPECT_THROW(open_netns(1 << 23), Error);
}

}  // namespace
}  // namespace cascade::runtime
