// Scheduling of the daemon's own threads.
#pragma once

#include <string>

namespace cascade::runtime {

// Names the calling thread (as `ps -T`, `top -H` and perf show it; at most 15
// characters) and gives it the SCHED_BATCH policy: a thread that moves other
// processes' bytes (the router's) then waits for its turn when it wakes up
// instead of preempting the replicas and clients it serves, which finish
// their part of the exchange first. Same weight, so no less CPU over time;
// on a busy 2-core host it lifts the router from 75 % to 87 % of direct
// throughput (bench/runtime.py). Failure is harmless and ignored.
void set_forwarding_thread(const std::string& name);

}  // namespace cascade::runtime
