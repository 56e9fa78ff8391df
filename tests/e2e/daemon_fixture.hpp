// The e2e fixture of the daemon tests: a temporary directory holding the
// daemon's state root and a build context with busybox, and the daemon
// (`cascade serve`) on that state root, stopped and cleaned up at the end.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <string_view>

#include "oci/fs.hpp"
#include "support.hpp"

namespace cascade::test {

// An image for deployments: busybox httpd serving "v<V>" (build-arg V,
// default 1) from /www on port 8080, ending on SIGTERM. The context needs
// busybox next to the Dockerfile.
inline constexpr const char* kHttpdDockerfile = R"(FROM scratch
COPY busybox /bin/busybox
ARG V=1
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox mkdir -p /www && echo v$V > /www/index.html"]
CMD ["/bin/busybox", "sh", "-c", "trap 'exit 0' TERM; /bin/busybox httpd -f -p 8080 -h /www & wait"]
)";

class DaemonTest : public ::testing::Test {
  protected:
    fs::TempDir tmp;
    std::filesystem::path state = tmp.path() / "state";
    std::filesystem::path context = tmp.path() / "context";
    std::unique_ptr<Daemon> daemon;

    explicit DaemonTest(std::string_view prefix) : tmp({}, prefix) {}

    void SetUp() override {
        std::filesystem::create_directories(context);
        std::filesystem::copy_file("/bin/busybox", context / "busybox");
        daemon = std::make_unique<Daemon>(state);
    }
    void TearDown() override {
        daemon.reset();
        cleanup_state_root(state);
    }
};

}  // namespace cascade::test
