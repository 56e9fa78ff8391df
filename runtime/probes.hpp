// Readiness, liveness and startup probes: one check (TCP connect, HTTP GET or
// `runc exec`) inside a replica, and Kubernetes' bookkeeping of their results
// (initial delay, period, consecutive success and failure thresholds).
#pragma once

#include <chrono>
#include <string>

#include "oci/image.hpp"
#include "runtime/pod_spec.hpp"

namespace cascade::runtime {

class Runc;

// Where a probe runs: the replica's network namespace (Tcp, Http; -1: the
// caller's own) and its container (Exec).
struct ProbeTarget {
    int netns_fd = -1;
    std::string container_id;
    Runc* runc = nullptr;
};

struct ProbeOutcome {
    bool ok = false;
    std::string message;  // what was seen: "HTTP 200", "connection refused", the output…
};

// Runs one check; blocks at most about spec.timeout. Never throws: failures
// (including a target that is gone) are outcomes with ok = false.
//   Tcp:  a connection to 127.0.0.1:port inside the netns.
//   Http: GET http://127.0.0.1:port<path> (libcurl, its socket made in the
//         netns); ok for 200..399, or exactly expected_status when set.
//   Exec: `runc exec` of the command; ok on exit 0; killed at the timeout.
ProbeOutcome run_probe(const ProbeSpec& spec, const ProbeTarget& target);

// The result of a probe over time (pure logic, no I/O).
class ProbeState {
  public:
    using Clock = std::chrono::steady_clock;
    enum class Result { Unknown, Success, Failure };

    // The first check is due at started + initial_delay, then every period.
    // `fast_period` (when positive) replaces the period until the first
    // success (used for probes derived from a HEALTHCHECK and the implied
    // port check, so a replica becomes ready quickly).
    ProbeState(const ProbeSpec& spec, Clock::time_point started,
               std::chrono::milliseconds fast_period = std::chrono::milliseconds(0));

    bool due(Clock::time_point now) const { return now >= next_; }
    Clock::time_point next_due() const { return next_; }
    // Records one check made at `now`: success_threshold consecutive
    // successes make Success, failure_threshold consecutive failures make
    // Failure; anything in between keeps the previous result.
    Result record(bool ok, Clock::time_point now);
    Result result() const { return result_; }
    int consecutive_failures() const { return failures_; }
    int consecutive_successes() const { return successes_; }
    const ProbeSpec& spec() const { return spec_; }

  private:
    ProbeSpec spec_;
    std::chrono::milliseconds fast_period_;
    Clock::time_point next_;
    Result result_ = Result::Unknown;
    int successes_ = 0, failures_ = 0;
    bool ever_succeeded_ = false;
};

// An image's HEALTHCHECK as a probe (Docker's defaults: interval 30 s,
// timeout 30 s, start period 0 as the initial delay, 3 retries as the failure
// threshold). CMD → argv, CMD-SHELL → /bin/sh -c; NONE or empty → unset.
ProbeSpec probe_from_healthcheck(const oci::HealthConfig& health);

// "tcp :8080", "http GET :8080/healthz", "exec cat /tmp/ready".
std::string describe(const ProbeSpec& spec);

}  // namespace cascade::runtime
