#include "registry/metrics.hpp"

#include <cstdio>

namespace cascade::registry {

namespace {

// Build duration buckets, seconds (le="+Inf" is the count).
const std::vector<double> kBuckets = {1, 5, 10, 30, 60, 120, 300, 600, 1800};

std::string number(double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.17g", v);
    return buf;
}

std::string label(const std::string& name, const std::string& value) {
    return name + "=\"" + escape_label_value(value) + "\"";
}

void header(std::string& out, const std::string& name, const std::string& help,
            const std::string& type) {
    out += "# HELP " + name + " " + help + "\n";
    out += "# TYPE " + name + " " + type + "\n";
}

}  // namespace

std::string escape_label_value(const std::string& value) {
    std::string out;
    for (char c : value) {
        if (c == '\\')
            out += "\\\\";
        else if (c == '"')
            out += "\\\"";
        else if (c == '\n')
            out += "\\n";
        else
            out += c;
    }
    return out;
}

Metrics& metrics() {
    static Metrics instance;
    return instance;
}

void Metrics::build_finished(const std::string& config, const std::string& result, double seconds) {
    std::lock_guard lock(mu_);
    builds_[{config, result}]++;
    auto& buckets = build_buckets_[config];
    buckets.resize(kBuckets.size());
    for (size_t i = 0; i < kBuckets.size(); i++)
        if (seconds <= kBuckets[i]) buckets[i]++;
    auto& [sum, count] = build_seconds_[config];
    sum += seconds;
    count++;
}

void Metrics::rollout_finished(const std::string& deployment, const std::string& result) {
    std::lock_guard lock(mu_);
    rollouts_[{deployment, result}]++;
}

void Metrics::registry_request(const std::string& method, int code, uint64_t bytes_in,
                               uint64_t bytes_out) {
    std::lock_guard lock(mu_);
    requests_[{method, code}]++;
    bytes_in_ += bytes_in;
    bytes_out_ += bytes_out;
}

void Metrics::reset() {
    std::lock_guard lock(mu_);
    builds_.clear();
    build_buckets_.clear();
    build_seconds_.clear();
    rollouts_.clear();
    requests_.clear();
    bytes_in_ = bytes_out_ = 0;
}

std::string Metrics::render(const Gauges& replicas, const std::vector<Family>& families) const {
    std::lock_guard lock(mu_);
    std::string out;
    header(out, "cascade_builds_total", "Builds that ended, by build config and result.",
           "counter");
    for (const auto& [key, n] : builds_)
        out += "cascade_builds_total{" + label("config", key.first) + "," +
               label("result", key.second) + "} " + std::to_string(n) + "\n";
    header(out, "cascade_build_duration_seconds", "How long builds took, by build config.",
           "histogram");
    for (const auto& [config, buckets] : build_buckets_) {
        std::string c = label("config", config);
        for (size_t i = 0; i < kBuckets.size(); i++)
            out += "cascade_build_duration_seconds_bucket{" + c + "," +
                   label("le", number(kBuckets[i])) + "} " + std::to_string(buckets[i]) + "\n";
        const auto& [sum, count] = build_seconds_.at(config);
        out += "cascade_build_duration_seconds_bucket{" + c + ",le=\"+Inf\"} " +
               std::to_string(count) + "\n";
        out += "cascade_build_duration_seconds_sum{" + c + "} " + number(sum) + "\n";
        out += "cascade_build_duration_seconds_count{" + c + "} " + std::to_string(count) + "\n";
    }
    header(out, "cascade_rollouts_total", "Rollouts that ended, by deployment and result.",
           "counter");
    for (const auto& [key, n] : rollouts_)
        out += "cascade_rollouts_total{" + label("deployment", key.first) + "," +
               label("result", key.second) + "} " + std::to_string(n) + "\n";
    header(out, "cascade_replicas", "Replicas of each deployment, by state.", "gauge");
    for (const auto& [key, n] : replicas)
        out += "cascade_replicas{" + label("deployment", key.first) + "," +
               label("state", key.second) + "} " + std::to_string(n) + "\n";
    header(out, "cascade_registry_requests_total",
           "Requests to the registry (/v2/), by method and status code.", "counter");
    for (const auto& [key, n] : requests_)
        out += "cascade_registry_requests_total{" + label("method", key.first) + "," +
               label("code", std::to_string(key.second)) + "} " + std::to_string(n) + "\n";
    header(out, "cascade_registry_bytes_total",
           "Bytes of request and response bodies of the registry (/v2/).", "counter");
    out += "cascade_registry_bytes_total{direction=\"in\"} " + std::to_string(bytes_in_) + "\n";
    out += "cascade_registry_bytes_total{direction=\"out\"} " + std::to_string(bytes_out_) + "\n";
    for (const auto& f : families) {
        header(out, f.name, f.help, f.type);
        for (const auto& [labels, value] : f.samples) {
            out += f.name;
            for (size_t i = 0; i < labels.size(); i++)
                out += (i == 0 ? "{" : ",") + label(labels[i].first, labels[i].second);
            out += (labels.empty() ? " " : "} ") + number(value) + "\n";
        }
    }
    return out;
}

}  // namespace cascade::registry
