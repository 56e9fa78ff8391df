// cgroups for containers: the host's layout (v1, hybrid, unified v2), the OCI
// runtime spec's linux.resources from a pod's limits, and reading a
// container's usage back. runc (cgroupfs driver) creates and deletes the
// cgroups itself.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "runtime/pod_spec.hpp"

namespace cascade::runtime {

enum class CgroupMode {
    V1,       // only v1 controller hierarchies under /sys/fs/cgroup
    Hybrid,   // v1 controllers plus a v2 hierarchy at /sys/fs/cgroup/unified (no controllers)
    Unified,  // /sys/fs/cgroup is cgroup2
};

// The host's layout, from statfs of /sys/fs/cgroup (and /sys/fs/cgroup/unified).
// Detected once and cached.
CgroupMode host_cgroup_mode();
const char* to_string(CgroupMode mode);

// Smallest memory limit accepted (Docker's rule).
inline constexpr int64_t kMinMemoryLimit = 6 * 1024 * 1024;
inline constexpr int64_t kCpuPeriodUs = 100000;

// Throws cascade::Error for negative values or a memory limit below 6 MiB.
void validate_resources(const Resources& resources);

// linux.resources of the OCI runtime spec (without "devices"): memory.limit,
// cpu.quota/period (cpu_millis over a 100 ms period), cpu.shares from
// cpu_request_millis (1024 per CPU, min 2; runc converts shares to a weight
// on v2), pids.limit. Validates first.
nlohmann::json linux_resources(const Resources& resources, CgroupMode mode);

// The cgroupsPath of a container ("/cascade/<container id>", cgroupfs driver).
std::string cgroups_path_for(const std::string& container_id);

struct CgroupStats {
    int64_t memory_bytes = 0;  // current usage
    int64_t memory_limit = 0;  // 0: unlimited
    int64_t pids = 0;          // current number of tasks
    int64_t cpu_usage_ns = 0;
    bool oom_killed = false;  // the OOM killer killed a process of the cgroup
};

// Reads the cgroup of `cgroups_path` (as in the runtime spec): v1 from the
// memory/, pids/ and cpuacct/ hierarchies, v2 from the unified one. nullopt
// when the cgroup does not exist (container gone or never started).
std::optional<CgroupStats> read_cgroup_stats(const std::string& cgroups_path, CgroupMode mode);

// The directory of `cgroups_path` in `controller`'s hierarchy ("memory",
// "pids", "cpu", ...; ignored for Unified).
std::string cgroup_dir(const std::string& cgroups_path, CgroupMode mode,
                       const std::string& controller);

}  // namespace cascade::runtime
