// The runtime's fault tests, end to end: the real cascade daemon, real runc,
// images built by `cascade build` from busybox-static, and a real HTTP load
// (plain sockets, one connection per request) going through a route while
// the faults happen:
// - a replica's process killed with SIGKILL: restarted with backoff, out of
//   the router meanwhile, no failed request (the other replica is ready);
// - the daemon killed with SIGKILL in the middle of a rolling update: the
//   containers keep running (same pids after re-adoption), the rollout
//   finishes, the replica count is right, nothing is orphaned or leaks;
// - a new image that never becomes ready, and one that crashes at start:
//   the rollout rolls back on its own, the failed digest is not rolled out
//   again when the tag comes back to it, and the load sees no failure.
// Every test ends by checking that no container, mount, process, network
// namespace or cgroup it made is left.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "oci/fs.hpp"
#include "support.hpp"

using nlohmann::json;
using namespace cascade;
using namespace std::chrono_literals;

namespace {

bool needs_skip() {
    return geteuid() != 0 || !test::have_program("runc");
}

std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
    return s;
}

// Field 22 of /proc/<pid>/stat (start time in clock ticks): with the pid, it
// names one process even if the pid is reused. 0 when the process is gone or
// a zombie (exited; its reaper, maybe PID 1 for re-adopted replicas, has not
// collected it yet).
uint64_t start_time(int pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string stat;
    if (!std::getline(in, stat)) return 0;
    auto close = stat.rfind(')');
    if (close == std::string::npos) return 0;
    std::istringstream rest(stat.substr(close + 2));
    std::string field;
    for (int i = 3; i <= 22 && rest >> field; i++) {
        if (i == 3 && (field == "Z" || field == "X")) return 0;
        if (i == 22) return std::stoull(field);
    }
    return 0;
}

bool alive(int pid, uint64_t started) {
    return pid > 0 && started != 0 && start_time(pid) == started;
}

// The inode of /proc/<pid>/ns/net, 0 when the process is gone.
uint64_t netns_of(int pid) {
    if (start_time(pid) == 0) return 0;
    struct stat st {};
    if (stat(("/proc/" + std::to_string(pid) + "/ns/net").c_str(), &st) != 0) return 0;
    return st.st_ino;
}

std::string link_target(const std::string& path) {
    std::error_code ec;
    auto t = std::filesystem::read_symlink(path, ec);
    return ec ? std::string() : t.string();
}

std::string cmdline_of(const std::string& proc_dir) {
    std::string s;
    try {
        s = fs::read_file(proc_dir + "/cmdline");
    } catch (...) {
    }
    std::replace(s.begin(), s.end(), '\0', ' ');
    return s;
}

std::vector<int> all_pids() {
    std::vector<int> out;
    for (const auto& e : std::filesystem::directory_iterator("/proc")) {
        auto name = e.path().filename().string();
        if (!name.empty() && std::all_of(name.begin(), name.end(), ::isdigit))
            out.push_back(std::stoi(name));
    }
    return out;
}

// A client load through a route: `threads` loops of GET / on a new connection
// each, every answer must be 200 with one of the expected bodies.
class Load {
  public:
    Load(uint16_t port, std::vector<std::string> bodies, int threads = 2)
        : port_(port), bodies_(std::move(bodies)), begin_(std::chrono::steady_clock::now()) {
        for (int i = 0; i < threads; i++)
            threads_.emplace_back([this] { loop(); });
    }
    ~Load() { finish(); }
    void finish() {
        stop_ = true;
        for (auto& t : threads_)
            if (t.joinable()) t.join();
    }
    int ok() const { return ok_; }
    int64_t elapsed_ms() const {
        return std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::steady_clock::now() - begin_)
            .count();
    }
    int failed() const { return failed_; }
    std::string failures() {
        std::lock_guard lock(mu_);
        std::string out;
        for (const auto& f : failures_)
            out += "  " + f + "\n";
        return out;
    }

  private:
    void loop() {
        // Bounded: at most 30,000 requests per thread.
        for (int i = 0; i < 30000 && !stop_; i++) {
            auto r = test::http_get(port_, "/", "127.0.0.1", 5000ms);
            bool good = r && r->status == 200 &&
                        std::any_of(bodies_.begin(), bodies_.end(), [&](const std::string& b) {
                            return r->body.find(b) != std::string::npos;
                        });
            if (good) {
                ok_++;
            } else {
                failed_++;
                auto at = std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::steady_clock::now() - begin_)
                              .count();
                std::lock_guard lock(mu_);
                if (failures_.size() < 20)
                    failures_.push_back(
                        "at +" + std::to_string(at) + " ms: " +
                        (r ? "status " + std::to_string(r->status) + " body " +
                                 r->body.substr(0, 80)
                           : std::string("no answer (connection refused, reset or timeout)")));
            }
            std::this_thread::sleep_for(5ms);
        }
    }

    uint16_t port_;
    std::vector<std::string> bodies_;
    std::chrono::steady_clock::time_point begin_;
    std::atomic<bool> stop_{false};
    std::atomic<int> ok_{0}, failed_{0};
    std::mutex mu_;
    std::vector<std::string> failures_;
    std::vector<std::thread> threads_;
};

// One replica as the API shows it.
struct Pod {
    std::string name;
    int index = -1;
    int revision = 0;
    std::string image;
    int pid = 0;
    std::string state;
    int restarts = 0;
};

class RuntimeFaults : public ::testing::Test {
  protected:
    fs::TempDir tmp{{}, "cascade-faults-"};
    std::filesystem::path state = tmp.path() / "state";
    std::filesystem::path context = tmp.path() / "context";
    std::filesystem::path runc_root = state / "runc";
    uint16_t route_port = test::free_port();
    std::unique_ptr<test::Daemon> daemon;

    // Everything the test saw run, to prove at the end that none of it is left.
    // A replica's network namespace stays open here (an fd on it) so that its
    // inode is not reused by another namespace before the final checks.
    struct Seen {
        uint64_t started = 0;
        uint64_t netns = 0;
    };
    std::map<int, Seen> seen_pids;
    std::set<std::string> seen_containers;
    std::vector<fs::Fd> netns_fds;

    void SetUp() override {
        if (needs_skip()) GTEST_SKIP() << "needs root and runc";
        std::filesystem::create_directories(context);
        std::filesystem::copy_file("/bin/busybox", context / "busybox");
        daemon = std::make_unique<test::Daemon>(state);
    }

    void TearDown() override {
        if (!daemon) return;
        // A test that failed while its daemon was down: let a daemon stop the
        // replicas (a failure of that is reported below).
        if (daemon->pid() <= 0) daemon->start();
        // SIGTERM: the daemon stops its replicas and exits.
        daemon.reset();
        expect_nothing_left();
        test::cleanup_state_root(state);  // whatever a failure left, for the next tests
        netns_fds.clear();
    }

    std::string daemon_log() {
        std::string log;
        for (const auto& e : std::filesystem::directory_iterator(tmp.path()))
            if (e.path().filename().string().rfind("daemon-", 0) == 0) {
                try {
                    log += fs::read_file(e.path());
                } catch (...) {
                }
            }
        if (log.size() > 6000) log = "…" + log.substr(log.size() - 6000);
        return "daemon log:\n" + log;
    }

    test::CommandResult ok(const std::vector<std::string>& args,
                           std::chrono::seconds timeout = 300s) {
        auto r = daemon->cli(args, timeout);
        if (r.exit_code != 0) {
            std::string cmd;
            for (const auto& a : args)
                cmd += " " + a;
            ADD_FAILURE() << "cascade" << cmd << " failed: " << r.out << r.err;
        }
        return r;
    }

    // Builds `tag` from busybox with `cmd` (a shell command line) as its
    // command; returns the digest the tag points at afterwards.
    std::string build(const std::string& tag, const std::string& body, const std::string& cmd) {
        auto file = context / ("Dockerfile." + body);
        fs::write_file_atomic(file,
                              "FROM scratch\n"
                              "COPY busybox /bin/busybox\n"
                              "RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n"
                              "RUN mkdir -p /www /tmp && echo " +
                                  body +
                                  " > /www/index.html\n"
                                  "CMD [\"/bin/sh\", \"-c\", \"" +
                                  cmd + "\"]\n");
        auto r = daemon->cli({"build", "-t", tag, "-f", file.string(), context.string()}, 300s);
        EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
        return tag_digest(tag.substr(0, tag.find(':')));
    }
    // An HTTP server answering `body`; stops at once on SIGTERM.
    std::string build_httpd(const std::string& tag, const std::string& body,
                            const std::string& before = "") {
        return build(tag, body,
                     "trap 'exit 0' TERM; " + before + "httpd -f -p 8080 -h /www & wait");
    }

    std::string tag_digest(const std::string& stream) {
        auto r = daemon->cli({"get", "imagestream/" + stream, "-o", "json"});
        if (r.exit_code != 0) return {};
        auto is = json::parse(r.out, nullptr, false);
        try {
            return is["status"]["tags"][0]["items"][0]["image"];
        } catch (...) {
            return {};
        }
    }

    // The deployment "web" and a route "web" on route_port: `replicas`
    // replicas of web:latest following the tag, Rolling with maxSurge 1 and
    // maxUnavailable 0 (the old revision never goes below `replicas`), a
    // readiness probe on GET /, and the given rollout timeout.
    void apply_web(int replicas, int timeout_seconds) {
        std::string yaml = R"(apiVersion: v1
kind: List
items:
- apiVersion: apps.openshift.io/v1
  kind: DeploymentConfig
  metadata: {name: web}
  spec:
    replicas: )" + std::to_string(replicas) +
                           R"(
    strategy:
      type: Rolling
      rollingParams:
        maxSurge: 1
        maxUnavailable: 0
        intervalSeconds: 1
        updatePeriodSeconds: 1
        timeoutSeconds: )" +
                           std::to_string(timeout_seconds) +
                           R"(
    template:
      spec:
        terminationGracePeriodSeconds: 3
        restartPolicy: Always
        containers:
        - name: web
          image: web:latest
          ports: [{containerPort: 8080}]
          readinessProbe:
            httpGet: {path: /, port: 8080}
            periodSeconds: 1
            timeoutSeconds: 1
            failureThreshold: 1
            successThreshold: 1
    triggers:
    - type: ConfigChange
    - type: ImageChange
      imageChangeParams:
        automatic: true
        containerNames: [web]
        from: {kind: ImageStreamTag, name: "web:latest"}
- apiVersion: route.openshift.io/v1
  kind: Route
  metadata:
    name: web
    annotations:
      cascade.io/host-port: ")" +
                           std::to_string(route_port) +
                           R"("
  spec:
    to: {kind: DeploymentConfig, name: web}
    port: {targetPort: 8080}
)";
        fs::write_file_atomic(tmp.path() / "web.yaml", yaml);
        ok({"apply", "-f", (tmp.path() / "web.yaml").string()});
    }

    // The deployment "web" as `get deployments -o json` shows it (null when
    // the daemon does not answer); records every replica seen.
    json web() {
        auto r = daemon->cli({"get", "deployments", "-o", "json"}, 30s);
        if (r.exit_code != 0) return nullptr;
        auto all = json::parse(r.out, nullptr, false);
        if (!all.is_object()) return nullptr;
        for (const auto& d : all.value("items", json::array()))
            if (d["metadata"]["name"] == "web") {
                for (const auto& p : pods(d))
                    record(p.name, p.pid);
                return d;
            }
        return nullptr;
    }

    static std::vector<Pod> pods(const json& d) {
        std::vector<Pod> out;
        if (!d.is_object()) return out;
        for (const auto& p : d["status"].value("pods", json::array()))
            out.push_back({p.value("name", ""), p.value("index", -1), p.value("revision", 0),
                           p.value("image", ""), p.value("pid", 0), p.value("state", ""),
                           p.value("restarts", 0)});
        return out;
    }

    void record(const std::string& name, int pid) {
        if (!name.empty()) seen_containers.insert(name);
        if (pid <= 0 || seen_pids.count(pid)) return;
        Seen s{start_time(pid), 0};
        fs::Fd ns(open(("/proc/" + std::to_string(pid) + "/ns/net").c_str(), O_RDONLY | O_CLOEXEC));
        struct stat st {};
        if (!s.started || ns.get() < 0 || fstat(ns.get(), &st) != 0) return;
        s.netns = st.st_ino;
        seen_pids[pid] = s;
        netns_fds.push_back(std::move(ns));
    }

    // runc's view under the test's root: id -> (status, pid).
    std::map<std::string, std::pair<std::string, int>> runc_list() {
        std::map<std::string, std::pair<std::string, int>> out;
        if (!std::filesystem::exists(runc_root)) return out;
        auto r = test::run({"runc", "--root", runc_root.string(), "list", "-f", "json"}, 30s);
        EXPECT_EQ(r.exit_code, 0) << r.err;
        auto list = json::parse(r.out, nullptr, false);
        if (!list.is_array()) return out;
        for (const auto& c : list) {
            out[c.value("id", "")] = {c.value("status", ""), c.value("pid", 0)};
            record(c.value("id", ""), c.value("pid", 0));
        }
        return out;
    }

    // `replicas` replicas, all ready, all of one revision running `digest`
    // (empty: whatever the deployment's latest digest is), phase `phase`.
    bool settled(const json& d, int replicas, const std::string& digest, const std::string& phase) {
        if (!d.is_object()) return false;
        auto ps = pods(d);
        std::string want = digest.empty() ? d["status"].value("imageDigest", "") : digest;
        if (static_cast<int>(ps.size()) != replicas || want.empty()) return false;
        if (!phase.empty() && d["status"].value("phase", "") != phase) return false;
        for (const auto& p : ps)
            if (p.state != "ready" || p.image != want || p.revision != ps[0].revision) return false;
        return d["status"].value("readyReplicas", 0) == replicas;
    }

    bool wait_settled(int replicas, const std::string& digest, const std::string& phase,
                      std::chrono::milliseconds timeout) {
        return test::eventually([&] { return settled(web(), replicas, digest, phase); }, timeout);
    }

    std::string describe() {
        auto r = daemon->cli({"get", "deployments", "-o", "json"}, 30s);
        return "deployments: " + r.out + r.err + "\n" + daemon_log();
    }

    // The live replicas match runc's containers one to one, every mount
    // under the test's directory belongs to one of them, and the network
    // namespaces of replicas gone are held by no process.
    void expect_no_orphans(const json& d) {
        auto ps = pods(d);
        std::set<std::string> live;
        std::set<uint64_t> live_netns;
        for (const auto& p : ps) {
            live.insert(p.name);
            live_netns.insert(netns_of(p.pid));
        }
        std::set<std::string> in_runc;
        for (const auto& [id, st] : runc_list()) {
            in_runc.insert(id);
            EXPECT_EQ(st.first, "running") << id;
        }
        EXPECT_EQ(in_runc, live) << "runc containers under the test root vs the daemon's replicas";

        for (const auto& m : test::mounts_under(tmp.path())) {
            bool owned = std::any_of(live.begin(), live.end(), [&](const std::string& id) {
                return m.find(id) != std::string::npos;
            });
            EXPECT_TRUE(owned) << "mount of no live replica: " << m;
        }
        // Each live replica in its own namespace, not the host's.
        uint64_t host_netns = netns_of(getpid());
        EXPECT_EQ(live_netns.size(), ps.size());
        EXPECT_EQ(live_netns.count(host_netns), 0u);
        EXPECT_EQ(live_netns.count(0), 0u) << "a replica's pid is not running";
        std::set<uint64_t> gone_netns;
        for (const auto& [pid, s] : seen_pids)
            if (s.netns && !live_netns.count(s.netns) && s.netns != host_netns)
                gone_netns.insert(s.netns);
        for (int pid : all_pids()) {
            uint64_t ns = netns_of(pid);
            EXPECT_EQ(gone_netns.count(ns), 0u)
                << "process " << pid << " (" << cmdline_of("/proc/" + std::to_string(pid))
                << ") still holds the network namespace of a replica that is gone";
        }
    }

    // Test 4 of the issue: nothing the test made is left once its daemon
    // stopped.
    void expect_nothing_left() {
        auto left = runc_list();
        for (const auto& [id, st] : left)
            ADD_FAILURE() << "runc container left: " << id << " (" << st.first << ", pid "
                          << st.second << ")";
        std::ifstream mountinfo("/proc/self/mountinfo");
        std::string line;
        while (std::getline(mountinfo, line))
            EXPECT_EQ(line.find(tmp.path().string()), std::string::npos) << "mount left: " << line;

        std::string root = tmp.path().string();
        std::set<uint64_t> seen_netns;
        for (const auto& [pid, s] : seen_pids) {
            EXPECT_FALSE(alive(pid, s.started))
                << "process " << pid
                << " of a replica still runs: " << cmdline_of("/proc/" + std::to_string(pid));
            if (s.netns && s.netns != netns_of(getpid())) seen_netns.insert(s.netns);
        }
        for (int pid : all_pids()) {
            if (pid == getpid()) continue;
            std::string dir = "/proc/" + std::to_string(pid);
            std::string cwd = link_target(dir + "/cwd"), rt = link_target(dir + "/root");
            std::string cmd = cmdline_of(dir);
            bool ours = cwd.rfind(root, 0) == 0 || rt.rfind(root, 0) == 0 ||
                        cmd.find(root) != std::string::npos;
            EXPECT_FALSE(ours) << "process " << pid << " left (cwd " << cwd << ", root " << rt
                               << "): " << cmd;
            if (uint64_t ns = netns_of(pid); ns && seen_netns.count(ns))
                ADD_FAILURE() << "process " << pid << " (" << cmd
                              << ") holds the network namespace of a removed replica";
        }
        // cgroups named after a container (runc's default cgroupsPath is the id).
        for (const auto& top : {"/sys/fs/cgroup", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids",
                                "/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/unified"}) {
            std::error_code ec;
            for (auto it = std::filesystem::recursive_directory_iterator(top, ec);
                 !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
                if (it.depth() >= 2) it.disable_recursion_pending();
                if (!it->is_directory(ec)) continue;
                auto name = it->path().filename().string();
                for (const auto& id : seen_containers)
                    if (name.find(id) != std::string::npos)
                        ADD_FAILURE() << "cgroup left: " << it->path();
            }
        }
    }
};

// 1. A replica's init process killed with SIGKILL (twice): it is restarted,
// its restart count goes up, and a load through the route sees no failure
// while the other replica is ready.
TEST_F(RuntimeFaults, KilledReplicaIsRestartedWithoutFailedRequests) {
    std::string v1 = build_httpd("web:latest", "web-v1");
    ASSERT_FALSE(v1.empty());
    apply_web(2, 30);
    ASSERT_TRUE(wait_settled(2, v1, "Running", 60s)) << describe();

    Load load(route_port, {"web-v1"});
    ASSERT_TRUE(test::eventually([&] { return load.ok() >= 20; }, 30s)) << load.failures();

    std::string timeline;
    // Replica 0 killed twice: each time it comes back as a new container of
    // the same replica (index kept, restart count up) after a backoff, and
    // replica 1 is not touched.
    for (int kill_round = 1; kill_round <= 2; kill_round++) {
        auto before = pods(web());
        ASSERT_EQ(before.size(), 2u);
        auto victim = before[0].index == 0 ? before[0] : before[1];
        auto other = before[0].index == 0 ? before[1] : before[0];
        ASSERT_EQ(victim.index, 0) << web().dump();
        ASSERT_EQ(other.index, 1) << web().dump();
        ASSERT_EQ(victim.restarts, kill_round - 1);
        // The pid the daemon shows is runc's pid of that container.
        auto listed = runc_list();
        ASSERT_TRUE(listed.count(victim.name)) << victim.name;
        ASSERT_EQ(listed[victim.name].second, victim.pid);
        ASSERT_GT(victim.pid, 1);
        ASSERT_EQ(kill(victim.pid, SIGKILL), 0);
        timeline += "killed " + victim.name + " at +" + std::to_string(load.elapsed_ms()) + " ms; ";

        std::set<std::string> states_seen;  // of replica 0 while it was down
        std::set<std::string> messages_seen;
        ASSERT_TRUE(test::eventually(
            [&] {
                auto d = web();
                for (const auto& p : pods(d))
                    if (p.index == 0 && p.state != "ready") states_seen.insert(p.state);
                for (const auto& p :
                     d.is_object() ? d["status"].value("pods", json::array()) : json::array())
                    if (p.value("index", -1) == 0 && !p.value("message", "").empty())
                        messages_seen.insert(p.value("message", ""));
                if (!settled(d, 2, v1, "Running")) return false;
                bool restarted = false, other_kept = false;
                for (const auto& p : pods(d)) {
                    if (p.index == 0)
                        restarted = p.pid != victim.pid && p.restarts == kill_round &&
                                    p.name != victim.name;
                    if (p.index == 1)
                        other_kept = p.name == other.name && p.pid == other.pid &&
                                     p.restarts == other.restarts;
                }
                return restarted && other_kept;
            },
            60s))
            << "round " << kill_round << "\n"
            << describe();
        timeline += "both ready again at +" + std::to_string(load.elapsed_ms()) + " ms; ";
        // It was seen down (out of the rotation) before it came back.
        EXPECT_FALSE(states_seen.empty()) << "round " << kill_round;
        // Why and for how long is visible: killed (128 + SIGKILL), backoff.
        std::string seen, said;
        for (const auto& st : states_seen)
            seen += st + " ";
        for (const auto& m : messages_seen)
            said += m + "; ";
        EXPECT_NE(said.find("137"), std::string::npos) << said;
        RecordProperty("round" + std::to_string(kill_round) + "_states", seen);
        RecordProperty("round" + std::to_string(kill_round) + "_messages", said);
        // The dead container is gone from runc.
        EXPECT_EQ(runc_list().count(victim.name), 0u) << victim.name;
    }
    std::this_thread::sleep_for(1s);  // a little more load on the two
    load.finish();
    EXPECT_EQ(load.failed(), 0) << timeline << "\n" << load.failures() << describe();
    EXPECT_GT(load.ok(), 50);
    expect_no_orphans(web());
}

// 2. The daemon killed with SIGKILL in the middle of a rolling update of 4
// replicas to an image that takes a few seconds to become ready: the
// containers keep running meanwhile, a new daemon on the same root re-adopts
// them (same pids) and completes the rollout; nothing is orphaned or leaks.
TEST_F(RuntimeFaults, DaemonKilledMidRolloutReadoptsAndCompletes) {
    std::string v1 = build_httpd("web:latest", "web-v1");
    ASSERT_FALSE(v1.empty());
    apply_web(4, 50);
    ASSERT_TRUE(wait_settled(4, v1, "Running", 90s)) << describe();
    int first_revision = web()["status"].value("latestVersion", 0);

    // The new image listens only after 4 seconds.
    std::string v2 = build_httpd("web:latest", "web-v2", "sleep 4 & wait; ");
    ASSERT_FALSE(v2.empty());
    ASSERT_NE(v2, v1);

    // Mid-way: at least one new replica ready and another one starting (the
    // controller waits for it, so no replica is being stopped right now).
    json snapshot;
    ASSERT_TRUE(test::eventually(
        [&] {
            auto d = web();
            int ready_new = 0, starting_new = 0;
            for (const auto& p : pods(d)) {
                if (p.pid <= 0) return false;  // a container being created
                if (p.image != v2) continue;
                if (p.state == "ready") ready_new++;
                if (p.state == "starting") starting_new++;
            }
            if (ready_new >= 1 && starting_new >= 1 && ready_new < 4) {
                snapshot = d;
                return true;
            }
            return false;
        },
        60s))
        << describe();
    daemon->kill_hard();
    auto before = pods(snapshot);
    std::map<std::string, int> pid_before;
    for (const auto& p : before)
        pid_before[p.name] = p.pid;

    // Without their daemon, the containers keep running.
    std::this_thread::sleep_for(2s);
    auto listed = runc_list();
    for (const auto& p : before) {
        if (p.state != "ready" && p.state != "starting") continue;
        ASSERT_TRUE(listed.count(p.name))
            << p.name << " gone while the daemon was down; before the kill:\n"
            << snapshot.dump(1) << "\n"
            << daemon_log();
        EXPECT_EQ(listed[p.name].first, "running") << p.name;
        EXPECT_EQ(listed[p.name].second, p.pid) << p.name;
        EXPECT_TRUE(alive(p.pid, seen_pids[p.pid].started)) << p.name;
    }

    // A new daemon on the same root: the replicas are re-adopted, not replaced.
    daemon->start();
    json first;
    ASSERT_TRUE(test::eventually(
        [&] {
            first = web();
            return first.is_object();
        },
        30s))
        << describe();
    for (const auto& p : pods(first)) {
        if (!pid_before.count(p.name)) continue;
        EXPECT_EQ(p.pid, pid_before[p.name]) << p.name << " re-adopted with another pid";
    }
    for (const auto& p : before)
        if (p.image == v2 && p.state == "ready") {
            bool kept = false;
            for (const auto& q : pods(first))
                kept = kept || (q.name == p.name && q.pid == p.pid);
            EXPECT_TRUE(kept) << "new-revision replica " << p.name << " not re-adopted\n"
                              << first.dump();
        }

    // The rollout completes (or, if it cannot, rolls back): 4 replicas of
    // one revision, all ready.
    ASSERT_TRUE(test::eventually(
        [&] {
            auto d = web();
            if (!settled(d, 4, "", "")) return false;
            auto phase = d["status"].value("phase", "");
            auto ps = pods(d);
            return (phase == "Running" && ps[0].image == v2) ||
                   (phase == "Failed" && ps[0].image == v1);
        },
        90s))
        << describe();
    auto d = web();
    EXPECT_EQ(d["status"].value("phase", ""), "Running") << "rolled back: " << d.dump();
    EXPECT_GT(d["status"].value("latestVersion", 0), first_revision);
    for (const auto& p : pods(d)) {
        if (pid_before.count(p.name)) {
            EXPECT_EQ(p.pid, pid_before[p.name]) << p.name;
        }
    }
    auto page = test::http_get(route_port, "/");
    ASSERT_TRUE(page);
    EXPECT_NE(page->body.find("web-v2"), std::string::npos) << page->body;

    expect_no_orphans(d);
}

// 3. Shared by the never-ready and the crashing image: a load through the
// route from before the bad image is built until after the rollback; the
// rollout stops and rolls back on its own, history says so, and the same
// digest coming back on the tag is not rolled out again.
class BadImageRollsBack : public RuntimeFaults {
  protected:
    // `why`: words of which the deployment's message must contain one.
    void run_case(const std::function<std::string()>& build_bad,
                  const std::vector<std::string>& why) {
        std::string v1 = build_httpd("web:latest", "web-v1");
        ASSERT_FALSE(v1.empty());
        apply_web(2, 12);
        ASSERT_TRUE(wait_settled(2, v1, "Running", 60s)) << describe();
        int good_revision = web()["status"].value("latestVersion", 0);

        Load load(route_port, {"web-v1"});
        ASSERT_TRUE(test::eventually([&] { return load.ok() >= 20; }, 30s)) << load.failures();

        std::string bad = build_bad();
        ASSERT_FALSE(bad.empty());
        ASSERT_NE(bad, v1);

        // The rollout to `bad` starts …
        ASSERT_TRUE(test::eventually(
            [&] {
                auto d = web();
                return d.is_object() && d["status"].value("latestVersion", 0) > good_revision;
            },
            30s))
            << describe();
        // … and is rolled back on its own: the good digest on every replica,
        // phase Failed saying why.
        ASSERT_TRUE(wait_settled(2, v1, "Failed", 60s)) << describe();
        auto d = web();
        auto message = lower(d["status"].value("message", ""));
        EXPECT_NE(message.find("back"), std::string::npos) << "message: " << message;
        EXPECT_TRUE(
            std::any_of(why.begin(), why.end(),
                        [&](const std::string& w) { return message.find(w) != std::string::npos; }))
            << "message: " << message;
        int after_rollback = d["status"].value("latestVersion", 0);
        EXPECT_GE(after_rollback, good_revision + 2) << "the failed revision, then the rollback";

        // The failed digest is remembered; history shows the failed
        // revision and the rollback after it.
        auto failed = d["status"].value("failedDigests", json::array());
        EXPECT_NE(std::find(failed.begin(), failed.end(), json(bad)), failed.end())
            << d["status"].dump();
        auto history = daemon->cli({"rollout", "history", "web"}, 30s);
        EXPECT_EQ(history.exit_code, 0) << history.out << history.err;
        EXPECT_NE(lower(history.out).find("rollback"), std::string::npos) << history.out;
        auto hj = daemon->cli({"rollout", "history", "web", "-o", "json"}, 30s);
        ASSERT_EQ(hj.exit_code, 0) << hj.out << hj.err;
        auto revisions = json::parse(hj.out, nullptr, false).value("items", json::array());
        int failed_revision = 0, rollback_revision = 0;
        for (const auto& r : revisions) {
            if (r.value("digest", "") == bad && r.value("status", "") == "Failed")
                failed_revision = r.value("revision", 0);
            if (failed_revision && r.value("revision", 0) > failed_revision &&
                r.value("digest", "") == v1 &&
                lower(r.value("cause", "")).find("rollback") != std::string::npos)
                rollback_revision = r.value("revision", 0);
        }
        EXPECT_GT(failed_revision, good_revision) << hj.out;
        EXPECT_GT(rollback_revision, failed_revision) << hj.out;
        EXPECT_EQ(rollback_revision, after_rollback) << hj.out;

        // The tag goes back to the good image, then to the failed digest
        // again: the same tag event does not roll it out a second time.
        ok({"tag", "web:latest#1", "web:latest"}, 30s);
        ok({"tag", "web:latest#2", "web:latest"}, 30s);
        EXPECT_EQ(tag_digest("web"), bad);
        auto quiet_until = std::chrono::steady_clock::now() + 6s;
        while (std::chrono::steady_clock::now() < quiet_until) {
            for (const auto& p : pods(web()))
                ASSERT_EQ(p.image, v1)
                    << "the failed digest was rolled out again: " << p.name << "\n"
                    << describe();
            std::this_thread::sleep_for(200ms);
        }
        ASSERT_TRUE(wait_settled(2, v1, "", 30s)) << describe();

        load.finish();
        EXPECT_EQ(load.failed(), 0) << load.failures() << describe();
        EXPECT_GT(load.ok(), 50);
        expect_no_orphans(web());
    }
};

TEST_F(BadImageRollsBack, NeverReadyImage) {
    run_case(
        [&] {
            // Runs, but listens on no port: its readiness probe never passes.
            return build("web:latest", "web-deaf", "trap 'exit 0' TERM; sleep 100000 & wait");
        },
        {"ready", "readiness"});
}

TEST_F(BadImageRollsBack, ImageCrashingAtStart) {
    run_case([&] { return build("web:latest", "web-crash", "echo crashing; exit 1"); },
             {"exit", "crash"});
}

}  // namespace
