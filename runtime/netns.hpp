// Reaching into a container's network namespace from the host: a socket
// created inside the namespace (by a thread that setns()'d there and back)
// stays in it, so the host can connect to a port only the container sees.
#pragma once

#include <chrono>
#include <cstdint>
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

}  // namespace cascade::runtime
