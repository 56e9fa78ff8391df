// What a deployment's pod template says about its container beyond the image:
// probes, resources, volumes, restart policy, and how a new revision replaces
// the old one. Plain data; the parsers (cli/objects.cpp) fill it from
// OpenShift/Kubernetes objects, the supervisor and rollout controller
// (runtime/deployment.cpp) act on it.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace cascade::runtime {

// A readiness, liveness or startup probe (Kubernetes' semantics and defaults).
struct ProbeSpec {
    enum class Kind { None, Tcp, Http, Exec };
    Kind kind = Kind::None;
    uint16_t port = 0;                 // Tcp, Http: 127.0.0.1:port in the replica's netns
    std::string path = "/";            // Http: GET path (with query)
    int expected_status = 0;           // Http: 0 = any 200..399, else exactly this
    std::vector<std::string> command;  // Exec: argv, run with `runc exec`; exit 0 = success
    std::chrono::milliseconds initial_delay{0};
    std::chrono::milliseconds period{10000};
    std::chrono::milliseconds timeout{1000};
    int success_threshold = 1;  // consecutive successes to pass
    int failure_threshold = 3;  // consecutive failures to fail
    bool set() const { return kind != Kind::None; }
    bool operator==(const ProbeSpec&) const = default;
};

// cgroup limits (0 = unlimited / not set).
struct Resources {
    int64_t memory_bytes = 0;        // limits.memory: memory.max / memory.limit_in_bytes
    int64_t cpu_millis = 0;          // limits.cpu in millicores: CFS quota over a 100 ms period
    int64_t cpu_request_millis = 0;  // requests.cpu: shares (v1) / weight (v2)
    int64_t pids = 0;                // pids.max
    bool operator==(const Resources&) const = default;
};

// A volume mounted into the container.
struct VolumeMount {
    enum class Kind {
        Named,  // <state root>/volumes/<source>/_data: created on first use, outlives containers
        Host,   // a host path (must exist), bind-mounted
        Tmpfs,  // a fresh tmpfs per container (size_bytes 0: the kernel's default)
        Empty,  // a fresh empty directory per container (Kubernetes emptyDir)
    };
    Kind kind = Kind::Named;
    std::string source;       // Named: volume name [a-z0-9][a-z0-9_.-]*; Host: absolute host path
    std::string destination;  // absolute path in the container
    bool readonly = false;
    int64_t size_bytes = 0;  // Tmpfs
    bool operator==(const VolumeMount&) const = default;
};

enum class RestartPolicy { Always, OnFailure, Never };

// maxSurge / maxUnavailable: a count or a percentage of the replicas.
struct IntOrPercent {
    int value = 0;
    bool percent = false;
    // Kubernetes' rounding: surge rounds up, unavailable rounds down.
    int resolve(int replicas, bool round_up) const {
        if (!percent) return value;
        int64_t scaled = int64_t{value} * replicas;
        return static_cast<int>(round_up ? (scaled + 99) / 100 : scaled / 100);
    }
    bool operator==(const IntOrPercent&) const = default;
};

struct RolloutStrategy {
    enum class Type { Rolling, Recreate };
    Type type = Type::Rolling;
    // OpenShift's defaults. When both resolve to 0, maxUnavailable is taken as 1.
    IntOrPercent max_surge{25, true};
    IntOrPercent max_unavailable{25, true};
    std::chrono::milliseconds interval{1000};       // intervalSeconds: progress poll period
    std::chrono::milliseconds update_period{1000};  // updatePeriodSeconds: between pod updates
    std::chrono::seconds timeout{600};              // timeoutSeconds: new revision must be
                                                    // ready within this, else rolled back
    bool operator==(const RolloutStrategy&) const = default;
};

}  // namespace cascade::runtime
