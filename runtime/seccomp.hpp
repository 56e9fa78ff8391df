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
// fails with ENOSYS so that libcs fall back to clone.
//
// The architectures: the host's native ABI (x86_64 or aarch64), and with
// `compat_arches` also its 32-bit ABIs (x86 and x32, or arm) as Docker's
// profile lists them. Without them a syscall of another ABI (a 32-bit
// binary's `int $0x80`) gets libseccomp's bad-architecture action: the
// process is killed with SIGSYS (fails closed). The trade-off is speed: runc
// compiles the filter once per listed ABI, ~11 ms of every container start
// on a 2-core VM for the two extra ABIs (bench/runtime.py).
nlohmann::json default_seccomp_profile(const std::vector<std::string>& capabilities,
                                       bool compat_arches = true);

// Whether an image of OCI architecture `image_arch` ("386", "arm", …) runs on
// this host only through a 32-bit compat ABI, i.e. needs `compat_arches`.
bool needs_compat_arches(const std::string& image_arch);

}  // namespace cascade::runtime
