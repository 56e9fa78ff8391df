#include "runtime/netns.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>
#include <thread>

#include "oci/error.hpp"

namespace cascade::runtime {

namespace {

constexpr int kSocketFlags = SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK;

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

fs::Fd connect_in_netns(int netns_fd, uint16_t port, std::chrono::milliseconds timeout) {
    fs::Fd sock = socket_in(netns_fd);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    if (::connect(sock.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
        if (errno != EINPROGRESS && errno != EINTR) return {};
        auto deadline = std::chrono::steady_clock::now() + timeout;
        while (true) {
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0) return {};
            pollfd p{sock.get(), POLLOUT, 0};
            int n = ::poll(&p, 1, static_cast<int>(left.count()));
            if (n < 0) {
                if (errno == EINTR) continue;
                throw sys_error("poll connecting to port", std::to_string(port), errno);
            }
            if (n == 0) return {};
            break;
        }
        int so_error = 0;
        socklen_t len = sizeof so_error;
        if (::getsockopt(sock.get(), SOL_SOCKET, SO_ERROR, &so_error, &len) != 0)
            throw sys_error("getsockopt SO_ERROR on connection to port", std::to_string(port),
                            errno);
        if (so_error != 0) return {};
    }
    int flags = ::fcntl(sock.get(), F_GETFL);
    if (flags < 0 || ::fcntl(sock.get(), F_SETFL, flags & ~O_NONBLOCK) != 0)
        throw sys_error("make socket blocking (port", std::to_string(port) + ")", errno);
    return sock;
}

}  // namespace cascade::runtime
