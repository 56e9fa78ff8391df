// Counters for `/metrics` (the Prometheus text exposition format 0.0.4):
// builds, rollouts, registry requests and bytes. One process-wide instance;
// the registry's HTTP handlers, the build controller and the deployment
// controller count into it, the daemon's API renders it. Thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace cascade::registry {

class Metrics {
  public:
    // A build of `config` ("" for an ad-hoc build) ended: result "complete",
    // "failed" or "cancelled"; duration in seconds.
    void build_finished(const std::string& config, const std::string& result, double seconds);
    // A rollout of `deployment` ended: result "complete" or "failed".
    void rollout_finished(const std::string& deployment, const std::string& result);
    // A request to the registry (/v2/) answered with `code`.
    void registry_request(const std::string& method, int code, uint64_t bytes_in,
                          uint64_t bytes_out);

    // The replicas of each deployment by state ("ready", "starting", ...),
    // read at scrape time (a gauge).
    using Gauges = std::map<std::pair<std::string, std::string>, int64_t>;
    // A family read at scrape time from its owner (e.g. the router's counters).
    struct Family {
        std::string name, help, type;  // type: "counter" or "gauge"
        std::vector<std::pair<std::vector<std::pair<std::string, std::string>>, double>> samples;
    };
    // The text format: # HELP and # TYPE for every family, then its samples;
    // `families` after the counters kept here.
    std::string render(const Gauges& replicas = {}, const std::vector<Family>& families = {}) const;

    void reset();  // for tests

  private:
    mutable std::mutex mu_;
    std::map<std::pair<std::string, std::string>, uint64_t> builds_;    // {config, result}
    std::map<std::string, std::vector<uint64_t>> build_buckets_;        // config → per bucket
    std::map<std::string, std::pair<double, uint64_t>> build_seconds_;  // config → {sum, count}
    std::map<std::pair<std::string, std::string>, uint64_t> rollouts_;  // {deployment, result}
    std::map<std::pair<std::string, int>, uint64_t> requests_;          // {method, code}
    uint64_t bytes_in_ = 0, bytes_out_ = 0;
};

// The process-wide instance.
Metrics& metrics();

// A label value escaped for the text format (\\, \" and \n).
std::string escape_label_value(const std::string& value);

}  // namespace cascade::registry
