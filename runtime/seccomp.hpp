// The default seccomp profile of RUN steps and containers: Docker's
// (moby/profiles/seccomp/default.json), resolved for the build host's
// architecture and a capability set, as the OCI `linux.seccomp` object.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace cascade::runtime {

// Docker's default profile: every syscall not allowed fails with EPERM;
// namespace, mount, module, clock, reboot and tracing syscalls are allowed
// only when `capabilities` ("CAP_SYS_ADMIN", …) hold the capability Docker
// ties them to; clone may not create namespaces without CAP_SYS_ADMIN; clone3
// fails with ENOSYS so that libcs fall back to clone. The architectures are
// the host's (x86_64 with x86 and x32, or aarch64 with arm).
nlohmann::json default_seccomp_profile(const std::vector<std::string>& capabilities);

}  // namespace cascade::runtime
