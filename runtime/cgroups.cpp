#include "runtime/cgroups.hpp"

#include <linux/magic.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <map>
#include <sstream>
#include <vector>

#include "oci/error.hpp"
#include "oci/strings.hpp"

namespace cascade::runtime {

namespace {

constexpr const char* kCgroupRoot = "/sys/fs/cgroup";
// The kernel's "no limit" on v1 is PAGE_COUNTER_MAX pages, about 2^63.
constexpr int64_t kUnlimitedThreshold = int64_t{1} << 62;
// Kubernetes' conversion of CPU requests to shares.
constexpr int64_t kMinShares = 2;
constexpr int64_t kMaxShares = 262144;
constexpr int64_t kSharesPerCpu = 1024;
// The kernel refuses a CFS quota below 1 ms; Docker refuses --cpus below 0.01.
constexpr int64_t kMinCpuMillis = 10;

bool is_fs(const char* path, int64_t magic) {
    struct statfs st {};
    return ::statfs(path, &st) == 0 && static_cast<int64_t>(st.f_type) == magic;
}

// Where each v1 controller's hierarchy and the v2 hierarchy are mounted, from
// /proc/self/mountinfo ("cpu" and "cpuacct" may share "/sys/fs/cgroup/cpu,cpuacct").
struct Mounts {
    std::map<std::string, std::string> v1;  // controller → mount point
    std::string v2;
};

Mounts read_mounts() {
    Mounts m;
    std::ifstream in("/proc/self/mountinfo");
    std::string line;
    while (std::getline(in, line)) {
        auto dash = line.find(" - ");
        if (dash == std::string::npos) continue;
        std::istringstream head(line.substr(0, dash));
        std::string id, parent, dev, root, target;
        head >> id >> parent >> dev >> root >> target;
        std::istringstream tail(line.substr(dash + 3));
        std::string type, source, options;
        tail >> type >> source >> options;
        if (type == "cgroup2") {
            if (m.v2.empty() || target == kCgroupRoot) m.v2 = target;
        } else if (type == "cgroup") {
            for (const auto& option : split(options, ','))
                if (!m.v1.count(option)) m.v1[option] = target;
        }
    }
    return m;
}

const Mounts& mounts() {
    static const Mounts m = read_mounts();
    return m;
}

std::optional<std::string> read_small(const std::string& path) {
    std::ifstream in(path);
    if (!in) return std::nullopt;
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// The first integer of a file ("max" → 0); nullopt when missing or unreadable.
std::optional<int64_t> read_int(const std::string& path) {
    auto text = read_small(path);
    if (!text) return std::nullopt;
    std::string_view s = *text;
    while (!s.empty() && (s.back() == '\n' || s.back() == ' '))
        s.remove_suffix(1);
    if (s == "max") return 0;
    int64_t v = 0;
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc()) return std::nullopt;
    return v;
}

// The value of `key` in a flat keyed file ("key value" lines).
std::optional<int64_t> read_key(const std::string& path, const std::string& key) {
    auto text = read_small(path);
    if (!text) return std::nullopt;
    std::istringstream lines(*text);
    std::string k;
    int64_t v = 0;
    while (lines >> k >> v)
        if (k == key) return v;
    return std::nullopt;
}

bool is_dir(const std::string& path) {
    std::error_code ec;
    return std::filesystem::is_directory(path, ec);
}

std::string mib(int64_t bytes) {
    std::ostringstream s;
    s << bytes << " bytes (" << (bytes >> 20) << " MiB)";
    return s.str();
}

}  // namespace

CgroupMode host_cgroup_mode() {
    static const CgroupMode mode = [] {
        if (is_fs(kCgroupRoot, CGROUP2_SUPER_MAGIC)) return CgroupMode::Unified;
        if (is_fs("/sys/fs/cgroup/unified", CGROUP2_SUPER_MAGIC)) return CgroupMode::Hybrid;
        return CgroupMode::V1;
    }();
    return mode;
}

const char* to_string(CgroupMode mode) {
    switch (mode) {
        case CgroupMode::V1:
            return "v1";
        case CgroupMode::Hybrid:
            return "hybrid";
        case CgroupMode::Unified:
            return "unified";
    }
    return "unknown";
}

void validate_resources(const Resources& r) {
    if (r.memory_bytes < 0)
        throw Error("memory limit " + std::to_string(r.memory_bytes) +
                    " is negative; give a size such as 64Mi or leave it unset");
    if (r.memory_bytes > 0 && r.memory_bytes < kMinMemoryLimit)
        throw Error("memory limit " + mib(r.memory_bytes) +
                    " is below the minimum of 6 MiB (as Docker's); raise limits.memory");
    if (r.cpu_millis < 0)
        throw Error("CPU limit " + std::to_string(r.cpu_millis) +
                    "m is negative; give millicores such as 500m or leave it unset");
    if (r.cpu_millis > 0 && r.cpu_millis < kMinCpuMillis)
        throw Error("CPU limit " + std::to_string(r.cpu_millis) +
                    "m is below the minimum of 10m (0.01 CPU); raise limits.cpu");
    if (r.cpu_request_millis < 0)
        throw Error("CPU request " + std::to_string(r.cpu_request_millis) +
                    "m is negative; give millicores such as 250m or leave it unset");
    if (r.pids < 0)
        throw Error("pids limit " + std::to_string(r.pids) +
                    " is negative; give a positive number of processes or leave it unset");
}

nlohmann::json linux_resources(const Resources& r, CgroupMode mode) {
    validate_resources(r);
    nlohmann::json out = nlohmann::json::object();
    if (r.memory_bytes > 0) {
        // memory + swap = memory: no swap, as Kubernetes. On v1 only when
        // the kernel accounts swap (runc fails writing memory.memsw.*
        // otherwise); on v2 runc writes memory.swap.max = 0 (ignored without
        // swap support).
        out["memory"] = {{"limit", r.memory_bytes}};
        bool swap_file =
            mode == CgroupMode::Unified ||
            ::access((std::string(kCgroupRoot) + "/memory/memory.memsw.limit_in_bytes").c_str(),
                     F_OK) == 0;
        if (swap_file) out["memory"]["swap"] = r.memory_bytes;
    }
    if (r.cpu_millis > 0 || r.cpu_request_millis > 0) {
        nlohmann::json cpu = nlohmann::json::object();
        if (r.cpu_millis > 0) {
            cpu["quota"] = r.cpu_millis * kCpuPeriodUs / 1000;
            cpu["period"] = kCpuPeriodUs;
        }
        if (r.cpu_request_millis > 0) {
            // runc converts shares to cpu.weight on v2 (1 + (shares-2)*9999/262142).
            cpu["shares"] =
                std::clamp(r.cpu_request_millis * kSharesPerCpu / 1000, kMinShares, kMaxShares);
        }
        out["cpu"] = std::move(cpu);
    }
    if (r.pids > 0) out["pids"] = {{"limit", r.pids}};
    return out;
}

std::string cgroups_path_for(const std::string& container_id) {
    return "/cascade/" + container_id;
}

std::string cgroup_dir(const std::string& cgroups_path, CgroupMode mode,
                       const std::string& controller) {
    const auto& m = mounts();
    std::string base;
    if (mode == CgroupMode::Unified) {
        base = m.v2.empty() ? std::string(kCgroupRoot) : m.v2;
    } else if (controller.empty() || controller == "unified") {
        base = m.v2.empty() ? std::string(kCgroupRoot) + "/unified" : m.v2;
    } else {
        auto it = m.v1.find(controller);
        base = it != m.v1.end() ? it->second : std::string(kCgroupRoot) + "/" + controller;
    }
    auto rel = cgroups_path;
    while (!rel.empty() && rel.front() == '/')
        rel.erase(0, 1);
    return rel.empty() ? base : base + "/" + rel;
}

std::optional<CgroupStats> read_cgroup_stats(const std::string& cgroups_path, CgroupMode mode) {
    if (cgroups_path.empty() || cgroups_path.find("..") != std::string::npos)
        throw Error("invalid cgroups path \"" + cgroups_path + "\"");
    CgroupStats s;
    if (mode == CgroupMode::Unified) {
        auto dir = cgroup_dir(cgroups_path, mode, "");
        if (!is_dir(dir)) return std::nullopt;
        s.memory_bytes = read_int(dir + "/memory.current").value_or(0);
        s.memory_limit = read_int(dir + "/memory.max").value_or(0);
        s.pids = read_int(dir + "/pids.current").value_or(0);
        s.cpu_usage_ns = read_key(dir + "/cpu.stat", "usage_usec").value_or(0) * 1000;
        s.oom_killed = read_key(dir + "/memory.events", "oom_kill").value_or(0) > 0;
        return s;
    }
    auto memory = cgroup_dir(cgroups_path, mode, "memory");
    auto pids = cgroup_dir(cgroups_path, mode, "pids");
    auto cpuacct = cgroup_dir(cgroups_path, mode, "cpuacct");
    if (!is_dir(memory) && !is_dir(pids) && !is_dir(cpuacct)) return std::nullopt;
    s.memory_bytes = read_int(memory + "/memory.usage_in_bytes").value_or(0);
    s.memory_limit = read_int(memory + "/memory.limit_in_bytes").value_or(0);
    if (s.memory_limit >= kUnlimitedThreshold) s.memory_limit = 0;
    s.pids = read_int(pids + "/pids.current").value_or(0);
    s.cpu_usage_ns = read_int(cpuacct + "/cpuacct.usage").value_or(0);
    s.oom_killed = read_key(memory + "/memory.oom_control", "oom_kill").value_or(0) > 0;
    return s;
}

}  // namespace cascade::runtime
