// The deployment controller: one worker thread per deployment does everything
// that changes the deployment's replicas (rollouts, restarts, scaling,
// readiness probes), so those steps never race with each other; the exit
// watcher only marks a replica exited and takes it out of the router. Nothing
// slow (runc, the database, the store, draining) runs under `mu`.
#include "runtime/deployment.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "oci/error.hpp"
#include "oci/media_types.hpp"
#include "registry/metrics.hpp"
#include "registry/store.hpp"
#include "runtime/container.hpp"
#include "runtime/deployment_records.hpp"
#include "runtime/exit_watcher.hpp"
#include "runtime/netns.hpp"
#include "runtime/pod_bundle.hpp"
#include "runtime/probes.hpp"
#include "runtime/rootfs.hpp"
#include "runtime/router.hpp"

namespace cascade::runtime {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;
using Durability = registry::Database::Durability;

constexpr milliseconds kProbeInterval{100};
// The implied port check runs this often during the first kImpliedFastWindow
// of a container (most become ready within a few ms of `runc run`), then
// every kProbeInterval. A refused connect costs ~0.1 ms; each ms of period
// is up to a ms of start to ready.
constexpr milliseconds kImpliedFastPeriod{2};
constexpr milliseconds kImpliedFastWindow{1000};
constexpr milliseconds kProbeConnectTimeout{1000};
constexpr milliseconds kBackendConnectTimeout{2000};
// A probe made from an image HEALTHCHECK runs this often until it first passes.
constexpr milliseconds kHealthcheckStartPeriod{1000};
constexpr seconds kMaxBackoff{30};
// A replica that ran this long before exiting restarts without backoff history.
constexpr seconds kStableRun{30};
constexpr size_t kStopParallelism = 8;

struct Image {
    oci::Digest digest;  // what the tag points at (may be an index)
    oci::Manifest manifest;
    oci::ImageConfig config;
};

std::string random_suffix() {
    static constexpr char kAlphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    thread_local std::mt19937 rng{std::random_device{}()};
    std::uniform_int_distribution<size_t> pick(0, sizeof kAlphabet - 2);
    std::string s;
    for (int i = 0; i < 5; ++i)
        s += kAlphabet[pick(rng)];
    return s;
}

int parse_stop_signal(std::string s) {
    if (s.empty()) return SIGTERM;
    if (std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        int n = std::stoi(s);
        return n > 0 && n < 65 ? n : SIGTERM;
    }
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::toupper(c); });
    if (s.rfind("SIG", 0) == 0) s = s.substr(3);
    static const std::map<std::string, int> kSignals = {
        {"HUP", SIGHUP},   {"INT", SIGINT},   {"QUIT", SIGQUIT}, {"KILL", SIGKILL},
        {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"TERM", SIGTERM}, {"WINCH", SIGWINCH},
        {"PWR", SIGPWR},   {"STOP", SIGSTOP}, {"CONT", SIGCONT}, {"ALRM", SIGALRM},
    };
    auto it = kSignals.find(s);
    return it == kSignals.end() ? SIGTERM : it->second;
}

// The template: every field but the name, the replica count and the trigger;
// a change makes a new revision.
nlohmann::json template_json(const DeploymentSpec& s) {
    auto j = to_json(s);
    j.erase("name");
    j.erase("replicas");
    j.erase("automatic");
    return j;
}

bool template_changed(const DeploymentSpec& a, const DeploymentSpec& b) {
    return template_json(a) != template_json(b);
}

void validate(const DeploymentSpec& spec) {
    static const std::regex kName("[a-z0-9]([a-z0-9-]*[a-z0-9])?");
    if (spec.name.empty() || spec.name.size() > 40 || !std::regex_match(spec.name, kName))
        throw Error("deployment name \"" + spec.name +
                    "\" is invalid: use 1-40 characters of [a-z0-9-], starting and ending with "
                    "a letter or digit");
    if (spec.image_repository.empty())
        throw Error("deployment " + spec.name + ": the image repository is empty");
    if (spec.image_tag.empty()) throw Error("deployment " + spec.name + ": the image tag is empty");
    if (spec.replicas < 0 || spec.replicas > 1000)
        throw Error("deployment " + spec.name + ": replicas must be between 0 and 1000, not " +
                    std::to_string(spec.replicas));
    if (spec.strategy.timeout.count() <= 0)
        throw Error("deployment " + spec.name + ": the readiness timeout must be positive");
    if (spec.stop_grace.count() < 0)
        throw Error("deployment " + spec.name + ": the stop grace period must not be negative");
    const auto& st = spec.strategy;
    if (st.max_surge.value < 0 || st.max_unavailable.value < 0)
        throw Error("deployment " + spec.name +
                    ": maxSurge and maxUnavailable must not be negative");
    if (st.interval.count() <= 0 || st.update_period.count() < 0)
        throw Error("deployment " + spec.name +
                    ": the strategy's interval must be positive and its update period must not be "
                    "negative");
    for (auto& kv : spec.env)
        if (kv.find('=') == std::string::npos || kv.front() == '=')
            throw Error("deployment " + spec.name + ": env entry \"" + kv +
                        "\" is not of the form NAME=VALUE");
}

std::string short_digest(const oci::Digest& d) {
    return d.algorithm() + ":" + d.short_hex();
}

std::string host_architecture() {
    utsname u{};
    uname(&u);
    std::string m = u.machine;
    if (m == "x86_64") return "amd64";
    if (m == "aarch64") return "arm64";
    if (m.rfind("arm", 0) == 0) return "arm";
    return m;
}

// The last bytes of a container's log, on one line, for error messages.
std::string log_tail(const std::filesystem::path& path, size_t max = 400) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return {};
    in.seekg(0, std::ios::end);
    auto size = static_cast<size_t>(std::max<std::streamoff>(in.tellg(), 0));
    size_t from = size > max ? size - max : 0;
    in.seekg(static_cast<std::streamoff>(from));
    std::string s(size - from, '\0');
    in.read(s.data(), static_cast<std::streamsize>(s.size()));
    std::replace(s.begin(), s.end(), '\n', ' ');
    while (!s.empty() && s.back() == ' ')
        s.pop_back();
    return s;
}

uint16_t pick_free_port(const std::string& host) {
    fs::Fd sock(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!sock) throw sys_error("socket", host, errno);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    if (inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1)
        throw Error("route host \"" + host + "\" is not an IPv4 address");
    if (bind(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
        throw sys_error("bind", host + ":0", errno);
    socklen_t len = sizeof addr;
    getsockname(sock.get(), reinterpret_cast<sockaddr*>(&addr), &len);
    return ntohs(addr.sin_port);
}

// Reaps `pid` if it is a zombie child of ours (a replica's init that exited
// while no controller watched it).
void reap_if_our_zombie(int pid) {
    if (pid <= 0) return;
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    if (!std::getline(stat, line)) return;
    auto close = line.rfind(')');
    if (close == std::string::npos) return;
    std::istringstream rest(line.substr(close + 1));
    char state = 0;
    int ppid = 0;
    rest >> state >> ppid;
    if (state == 'Z' && ppid == getpid()) waitpid(pid, nullptr, WNOHANG);
}

// Mount points below `dir` (from /proc/self/mountinfo), deepest first.
std::vector<std::filesystem::path> mounts_below(const std::filesystem::path& dir) {
    std::vector<std::filesystem::path> out;
    std::ifstream in("/proc/self/mountinfo");
    std::string line;
    std::string prefix = std::filesystem::weakly_canonical(dir).string() + "/";
    while (std::getline(in, line)) {
        std::istringstream fields(line);
        std::string id, parent, dev, root, target;
        fields >> id >> parent >> dev >> root >> target;
        if (target.rfind(prefix, 0) == 0) out.emplace_back(target);
    }
    std::sort(out.rbegin(), out.rend());
    return out;
}

}  // namespace

struct DeploymentController::Impl {
    struct Replica {
        std::string id;
        std::string deployment;
        int revision = 0;
        oci::Digest digest;
        DeploymentSpec spec;  // the spec this replica was created from
        int pid = 0;
        // "creating", "starting", "ready", "unready" (failed readiness after
        // being ready: out of the router), "exited" (restart after backoff),
        // "CrashLoopBackOff" (exited again without a stable run), "restarting",
        // "completed" (exited; the restart policy keeps it down), "stopping"
        std::string state = "creating";
        int restarts = 0;
        int backoff_step = 0;
        int last_exit = 0;
        Clock::time_point started_at{}, restart_at{};
        std::shared_ptr<fs::Fd> netns;
        uint64_t watch_token = 0;
        bool in_router = false;
        int stop_signal = SIGTERM;
        int index = -1;       // 0..replicas-1 within its revision, kept across restarts
        std::string message;  // why it is in its state (probe failure, backoff, exit)
        // Probes of the running container (see init_probes_locked).
        std::optional<ProbeState> readiness, liveness, startup;
        bool readiness_implied = false;  // the container-port check: only until ready
        bool implied_fast = false;       // ... still every kImpliedFastPeriod
        bool started = true;             // the startup probe passed (or there is none)
        // A failed probe sent the stop signal: SIGKILL at kill_at if still running.
        bool killing = false;
        Clock::time_point kill_at{};
        std::string previous_log;  // the log of the instance before the last restart
    };

    // A rollout asked for by restart, undo or retry.
    struct Request {
        std::string cause;
        std::optional<oci::Digest> digest;   // empty: the tag's current digest
        std::optional<DeploymentSpec> tmpl;  // empty: the deployment's spec
        bool fresh = false;                  // new containers even for the same template
    };

    struct Deployment {
        std::string name;  // fixed; spec.name may be rewritten by apply()
        DeploymentSpec spec;
        int revision = 0;
        std::optional<oci::Digest> digest;
        std::string phase = "Pending";
        std::string message;
        std::map<std::string, std::shared_ptr<Replica>> replicas;
        // Work for the worker; set under `mu`, taken by the worker.
        bool rollout_requested = false;
        bool spec_changed = false;
        bool reconcile_requested = false;
        bool busy = false;
        bool stop = false;
        bool removing = false;
        // A spec change whose image tag did not exist yet: the next rollout
        // makes a new revision even when the digest is the same.
        bool template_pending = false;
        // Paused: tag moves and spec changes are recorded, nothing rolls out.
        bool paused = false;
        // `cascade scale` while paused: the count applies at once to a
        // deployment at rest (as Kubernetes scales a paused one); `scaling`
        // while that step runs.
        bool scale_requested = false;
        bool scaling = false;
        // Digests rolled back automatically: the image trigger skips them.
        std::vector<oci::Digest> failed_digests;
        std::vector<RevisionInfo> revisions;  // oldest first; the latest is `revision`
        // restart / undo / retry: what the next rollout rolls out.
        std::optional<Request> forced;
        std::thread worker;
        std::mutex persist_mu;  // orders writes of this deployment's row
    };
    using DeploymentPtr = std::shared_ptr<Deployment>;
    using ReplicaPtr = std::shared_ptr<Replica>;

    registry::Store& store;
    ContainerHost& host;
    Router& router;
    DeploymentRecords records;
    VolumeStore volumes;  // named volumes: <state root>/volumes

    mutable std::mutex mu;
    std::condition_variable cv;
    std::map<std::string, DeploymentPtr> deployments;
    std::map<std::string, RouteSpec> routes;
    uint64_t next_token = 1;
    bool shutting_down = false;

    std::mutex sink_mu;
    std::function<void(const std::string&, const std::string&)> sink;
    std::function<void(const RolloutEvent&)> rollout_hook;

    std::unique_ptr<ExitWatcher> watcher;

    Impl(registry::Store& s, registry::Database& db, ContainerHost& h, Router& r)
        : store(s), host(h), router(r), records(db), volumes(h.root().parent_path() / "volumes") {
        become_child_subreaper();
        watcher = std::make_unique<ExitWatcher>();
    }

    // ---- events -------------------------------------------------------------

    void emit(const std::string& kind, const std::string& message) {
        std::function<void(const std::string&, const std::string&)> fn;
        {
            std::lock_guard lock(sink_mu);
            fn = sink;
        }
        if (!fn) return;
        try {
            fn(kind, message);
        } catch (...) {
            // A failing sink must not break supervision.
        }
    }

    void report(const RolloutEvent& event) {
        std::function<void(const RolloutEvent&)> fn;
        {
            std::lock_guard lock(sink_mu);
            fn = rollout_hook;
        }
        if (!fn) return;
        try {
            fn(event);
        } catch (...) {
        }
    }

    // ---- persistence --------------------------------------------------------

    // Full for what a client asked for (apply, scale, pause ...), Relaxed for the
    // controller's own progress (registry/database.hpp).
    void persist(const DeploymentPtr& d, Durability durability) {
        std::lock_guard order(d->persist_mu);
        auto rec = deployment_record(d);
        if (durability == Durability::Full)
            records.save_deployment(rec);
        else
            records.progress([&] { records.save_deployment(rec); });
    }

    // `d` as saved; the caller holds d->persist_mu.
    DeploymentRecord deployment_record(const DeploymentPtr& d) {
        DeploymentRecord rec;
        {
            std::lock_guard lock(mu);
            rec.spec = d->spec;
            rec.revision = d->revision;
            rec.digest = d->digest;
            rec.phase = d->phase;
            rec.message = d->message;
            rec.paused = d->paused;
            rec.failed_digests = d->failed_digests;
        }
        return rec;
    }

    void persist(const ReplicaPtr& r) {
        ReplicaRecord rec;
        {
            std::lock_guard lock(mu);
            rec.container_id = r->id;
            rec.deployment = r->deployment;
            rec.revision = r->revision;
            rec.image_digest = r->digest;
            rec.pid = r->pid;
            rec.state = r->state;
            rec.restarts = r->restarts;
            rec.spec = r->spec;
            rec.index = r->index;
            rec.previous_log = r->previous_log;
            rec.last_exit = r->last_exit;
        }
        records.progress([&] { records.save_replica(rec); });
    }

    void set_phase(const DeploymentPtr& d, const std::string& phase, const std::string& message) {
        {
            std::lock_guard lock(mu);
            d->phase = phase;
            d->message = message;
        }
        persist(d, Durability::Relaxed);
    }

    // ---- images -------------------------------------------------------------

    Image load_image(const std::string& repo, const oci::Digest& digest) {
        std::string bytes, media_type;
        if (auto rec = store.resolve(repo, digest.str())) {
            bytes = store.manifest_bytes(*rec);
            media_type = rec->media_type;
        } else if (store.blobs().has(digest)) {
            bytes = store.blobs().read(digest);
        } else {
            throw Error("image " + repo + "@" + digest.str() +
                        " is no longer in the registry; push it again or move the tag to an "
                        "image that exists");
        }
        if (media_type.empty()) media_type = oci::detect_manifest_media_type(bytes);
        Image image;
        image.digest = digest;
        if (oci::media::is_index(media_type)) {
            auto index = oci::parse_index(bytes);
            auto arch = host_architecture();
            const oci::Descriptor* chosen = nullptr;
            for (auto& m : index.manifests) {
                if (!oci::media::is_manifest(m.media_type)) continue;
                if (m.platform && (m.platform->os != "linux" || m.platform->architecture != arch))
                    continue;
                chosen = &m;
                break;
            }
            if (!chosen)
                throw Error("image index " + repo + "@" + digest.str() +
                            " has no manifest for linux/" + arch);
            auto child = load_image(repo, chosen->digest);
            child.digest = digest;
            return child;
        }
        image.manifest = oci::parse_manifest(bytes);
        image.config = oci::parse_config(store.blobs().read(image.manifest.config.digest));
        return image;
    }

    // The image a tag points at now; nullopt when the tag does not exist.
    std::optional<Image> resolve_tag(const std::string& repo, const std::string& tag) {
        auto rec = store.resolve(repo, tag);
        if (!rec) return std::nullopt;
        return load_image(repo, rec->digest);
    }

    static BundleOptions bundle_options(const std::string& id, const DeploymentSpec& spec,
                                        const Image& image) {
        auto options = options_from_image(image.config.config, spec.args);
        for (auto& kv : spec.env) {
            auto key = kv.substr(0, kv.find('=') + 1);
            std::erase_if(options.env, [&](const std::string& e) { return e.rfind(key, 0) == 0; });
            options.env.push_back(kv);
        }
        options.network = NetworkMode::Own;
        options.hostname = id;
        if (options.args.empty())
            throw Error("deployment " + spec.name + ": image " + spec.image_repository + "@" +
                        image.digest.str() +
                        " has neither Entrypoint nor Cmd; give the command in the deployment's "
                        "args");
        return options;
    }

    // ---- router -------------------------------------------------------------

    // Backend ids are unique across routes; a deployment may have several.
    static std::string backend_id(const std::string& route, const std::string& container_id) {
        return route + "/" + container_id;
    }

    static Backend backend_for(const RouteSpec& route, const Replica& r) {
        auto netns = r.netns;
        uint16_t port = route.target_port != 0 ? route.target_port : r.spec.container_port;
        // Sockets from a helper thread in the replica's namespace (released
        // with the backend); the router retries attempts that time out.
        auto sockets = std::make_shared<NetnsSockets>(netns->get());
        return Backend{backend_id(route.name, r.id),
                       [netns, port]() -> fs::Fd {
                           return connect_in_netns(netns->get(), port, kBackendConnectTimeout);
                       },
                       [sockets, port](milliseconds timeout, bool& timed_out) -> fs::Fd {
                           auto result = ConnectResult::Refused;
                           fs::Fd fd = sockets->connect(port, timeout, &result);
                           timed_out = result == ConnectResult::TimedOut;
                           return fd;
                       }};
    }

    // Both under `mu` (the router is a leaf: it never calls back into us).
    void add_to_router_locked(Replica& r) {
        if (r.in_router || !r.netns || r.spec.container_port == 0) return;
        for (auto& [name, route] : routes) {
            if (route.deployment != r.deployment) continue;
            try {
                router.add_backend(name, backend_for(route, r));
            } catch (...) {
                // The route's listener failed (reported by apply_route/recover).
            }
        }
        r.in_router = true;
    }

    void remove_from_router_locked(Replica& r) {
        if (!r.in_router) return;
        for (auto& [name, route] : routes) {
            if (route.deployment != r.deployment) continue;
            try {
                router.remove_backend(name, backend_id(name, r.id));
            } catch (...) {
            }
        }
        r.in_router = false;
    }

    // ---- replicas -----------------------------------------------------------

    // Restart backoff: 1 s, 2 s, 4 s, … up to kMaxBackoff; a run of kStableRun
    // or longer starts over. Returns the delay in seconds.
    int backoff_locked(Replica& r, Clock::time_point now) {
        if (r.started_at != Clock::time_point{} && now - r.started_at >= kStableRun)
            r.backoff_step = 0;
        auto delay =
            std::min<int64_t>(kMaxBackoff.count(), int64_t{1} << std::min(r.backoff_step, 5));
        ++r.backoff_step;
        r.restart_at = now + seconds(delay);
        return static_cast<int>(delay);
    }

    static bool restarts_after(RestartPolicy policy, int status) {
        switch (policy) {
            case RestartPolicy::Always:
                return true;
            case RestartPolicy::OnFailure:
                return status != 0;
            case RestartPolicy::Never:
                return false;
        }
        return true;
    }

    static const char* policy_name(RestartPolicy policy) {
        switch (policy) {
            case RestartPolicy::Always:
                return "Always";
            case RestartPolicy::OnFailure:
                return "OnFailure";
            case RestartPolicy::Never:
                return "Never";
        }
        return "Always";
    }

    // Exited and waiting for its restart: "exited", or "CrashLoopBackOff" when
    // it exited again without a stable run in between.
    static bool awaiting_restart(const Replica& r) {
        return r.state == "exited" || r.state == "CrashLoopBackOff";
    }

    // Running, and probed: "starting" (not ready yet), "ready", "unready".
    static bool probed(const Replica& r) {
        return !r.killing && (r.state == "starting" || r.state == "ready" || r.state == "unready");
    }

    // The probes of a freshly started container: the spec's; without readiness
    // and liveness, the image's HEALTHCHECK as both; else readiness is the
    // container port accepting connections (checked every kImpliedFastPeriod
    // during the first kImpliedFastWindow, then every kProbeInterval, until
    // it does); without a port either, ready at once.
    static void init_probes_locked(Replica& r, const oci::ContainerConfig& image,
                                   Clock::time_point started) {
        const auto& spec = r.spec;
        r.readiness.reset();
        r.liveness.reset();
        r.startup.reset();
        r.readiness_implied = false;
        r.implied_fast = false;
        r.started = !spec.startup.set();
        if (spec.startup.set()) r.startup.emplace(spec.startup, started);
        ProbeSpec health;
        if (!spec.readiness.set() && !spec.liveness.set() && image.healthcheck)
            health = probe_from_healthcheck(*image.healthcheck);
        if (spec.readiness.set()) {
            r.readiness.emplace(spec.readiness, started);
        } else if (health.set()) {
            r.readiness.emplace(health, started, kHealthcheckStartPeriod);
        } else if (spec.container_port != 0) {
            ProbeSpec implied;
            implied.kind = ProbeSpec::Kind::Tcp;
            implied.port = spec.container_port;
            implied.period = kProbeInterval;
            implied.timeout = kProbeConnectTimeout;
            implied.failure_threshold = 1;
            r.readiness.emplace(implied, started, kImpliedFastPeriod);
            r.readiness_implied = true;
            r.implied_fast = true;
        }
        if (spec.liveness.set())
            r.liveness.emplace(spec.liveness, started);
        else if (health.set())
            r.liveness.emplace(health, started);
    }

    // When supervision of `d` has something to do next (probes, restarts,
    // kills past their grace); max() when nothing.
    Clock::time_point next_supervision_locked(const Deployment& d) const {
        auto wake = Clock::time_point::max();
        for (auto& [id, r] : d.replicas) {
            if (awaiting_restart(*r)) {
                wake = std::min(wake, r->restart_at);
            } else if (r->killing) {
                wake = std::min(wake, r->kill_at);
            } else if (probed(*r)) {
                if (!r->started) {
                    if (r->startup) wake = std::min(wake, r->startup->next_due());
                    continue;
                }
                if (r->state == "starting" && !r->readiness) return Clock::time_point::min();
                if (r->readiness) wake = std::min(wake, r->readiness->next_due());
                if (r->liveness) wake = std::min(wake, r->liveness->next_due());
            }
        }
        return wake;
    }

    // Removes the directory that holds a previous instance's log.
    void remove_previous_log(const std::string& previous_log) {
        if (previous_log.empty()) return;
        auto dir = std::filesystem::path(previous_log).parent_path();
        if (dir.parent_path() != host.root()) return;  // not one of ours
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
    }

    void on_exit(const std::string& id, uint64_t token, int status) {
        std::string message;
        std::filesystem::path log;
        ReplicaPtr r;
        {
            std::lock_guard lock(mu);
            for (auto& [name, d] : deployments) {
                auto it = d->replicas.find(id);
                if (it != d->replicas.end()) r = it->second;
            }
            if (!r || r->watch_token != token) return;
            if (r->state == "stopping" || r->state == "restarting" || r->state == "completed" ||
                awaiting_restart(*r))
                return;
            remove_from_router_locked(*r);
            r->last_exit = status;
            std::string why = r->killing ? r->message + "; " : std::string();
            r->killing = false;
            std::string how =
                status >= 0 ? "exited with status " + std::to_string(status) : "exited";
            if (!restarts_after(r->spec.restart_policy, status)) {
                r->state = "completed";
                r->message = why + how + "; restart policy " + policy_name(r->spec.restart_policy) +
                             ": not restarted";
            } else {
                int delay = backoff_locked(*r, Clock::now());
                if (r->backoff_step >= 2) {
                    r->state = "CrashLoopBackOff";
                    r->message = why + "back-off " + std::to_string(delay) +
                                 "s restarting failed container (exit " + std::to_string(status) +
                                 ")";
                } else {
                    r->state = "exited";
                    r->message = why + how + "; restarting in " + std::to_string(delay) + "s";
                }
            }
            message = r->deployment + ": replica " + r->id + " " + r->message;
            log = host.log_path(r->id);
            cv.notify_all();
        }
        try {
            persist(r);
        } catch (...) {
        }
        if (auto tail = log_tail(log); !tail.empty()) message += "; its last output: " + tail;
        emit("replica", message);
    }

    void watch(const ReplicaPtr& r, int pid, uint64_t token) {
        auto id = r->id;
        bool alive = false;
        try {
            alive =
                watcher->watch(pid, [this, id, token](int status) { on_exit(id, token, status); });
        } catch (const std::exception& e) {
            emit("replica", "cannot watch replica " + id + ": " + e.what());
        }
        if (!alive) on_exit(id, token, -1);
    }

    // Starts the container of `r` (row already written); on success the
    // replica is "starting" and watched. Its row is written again once it is
    // ready (probe) or exits (on_exit), not here: a SQLite commit (fsync)
    // between `runc run` and the first readiness check would delay the start
    // to ready, and recover() asks runc, not the row, for a container's pid.
    void launch(const ReplicaPtr& r, const Image& image) {
        std::string id;
        DeploymentSpec spec;
        {
            std::lock_guard lock(mu);
            id = r->id;
            spec = r->spec;
        }
        auto options = pod_bundle_options(image.config.config, spec, id,
                                          host.bundle_dir(id) / kPodDirName, volumes);
        int pid = host.start(id, image.manifest, image.config, options);
        uint64_t token;
        {
            std::lock_guard lock(mu);
            r->pid = pid;
            r->state = "starting";
            r->started_at = Clock::now();
            r->netns.reset();
            r->stop_signal = parse_stop_signal(image.config.config.stop_signal);
            r->killing = false;
            r->message.clear();
            init_probes_locked(*r, image.config.config, r->started_at);
            token = r->watch_token = next_token++;
            cv.notify_all();
        }
        watch(r, pid, token);
    }

    // The lowest index no other replica of `revision` has.
    static int free_index_locked(const Deployment& d, int revision, const Replica* except) {
        std::set<int> used;
        for (auto& [id, o] : d.replicas)
            if (o.get() != except && o->revision == revision && o->state != "stopping")
                used.insert(o->index);
        int index = 0;
        while (used.count(index))
            ++index;
        return index;
    }

    ReplicaPtr start_replica(const DeploymentPtr& d, const DeploymentSpec& spec, int revision,
                             const Image& image) {
        auto r = std::make_shared<Replica>();
        r->id = spec.name + "-" + std::to_string(revision) + "-" + random_suffix();
        r->deployment = spec.name;
        r->revision = revision;
        r->digest = image.digest;
        r->spec = spec;
        {
            std::lock_guard lock(mu);
            r->index = free_index_locked(*d, revision, nullptr);
        }
        // The row exists before the container does: a crash never orphans one.
        persist(r);
        {
            std::lock_guard lock(mu);
            d->replicas[r->id] = r;
        }
        emit("replica", spec.name + ": starting replica " + r->id + " (revision " +
                            std::to_string(revision) + ", index " + std::to_string(r->index) +
                            ", " + short_digest(image.digest) + ")");
        try {
            launch(r, image);
        } catch (const std::exception& e) {
            {
                std::lock_guard lock(mu);
                d->replicas.erase(r->id);
            }
            try {
                records.progress([&] { records.delete_replica(r->id); });
            } catch (...) {
            }
            throw Error("deployment " + spec.name + ": starting replica " + r->id + " of " +
                        spec.image_repository + "@" + image.digest.str() + " failed: " + e.what());
        }
        return r;
    }

    // An exited replica comes back as a new container of the same revision
    // and index (a fresh id, so the old bundle can go); its restart count and
    // backoff carry over, and the old instance's log stays as the previous log.
    void restart(const DeploymentPtr& d, const ReplicaPtr& r) {
        std::string old_id, new_id, older_log;
        DeploymentSpec spec;
        oci::Digest digest;
        {
            std::lock_guard lock(mu);
            if (!awaiting_restart(*r)) return;
            r->state = "restarting";
            old_id = r->id;
            spec = r->spec;
            digest = r->digest;
            older_log = r->previous_log;
        }
        new_id = spec.name + "-" + std::to_string(r->revision) + "-" + random_suffix();
        try {
            host.remove(old_id, /*keep_log=*/true);
            {
                std::lock_guard lock(mu);
                d->replicas.erase(old_id);
                r->id = new_id;
                r->previous_log = host.log_path(old_id).string();
                ++r->restarts;
                d->replicas[new_id] = r;
            }
            persist(r);  // the new row before the new container
            records.progress([&] { records.delete_replica(old_id); });
            if (older_log != host.log_path(old_id).string()) remove_previous_log(older_log);
            emit("replica", spec.name + ": restarting replica " + old_id + " as " + new_id +
                                " (restart " + std::to_string(r->restarts) + ")");
            launch(r, load_image(spec.image_repository, digest));
        } catch (const std::exception& e) {
            int delay;
            {
                std::lock_guard lock(mu);
                r->state = "exited";
                delay = backoff_locked(*r, Clock::now());
                r->message = std::string("restart failed: ") + e.what() + "; retrying in " +
                             std::to_string(delay) + "s";
            }
            emit("replica", spec.name + ": restarting replica " + old_id + " failed: " + e.what() +
                                "; retrying in " + std::to_string(delay) + "s");
        }
    }

    // Runs the probes of `r` that are due and acts on the results: startup
    // first (liveness and readiness wait until it passed; failing it kills the
    // container), then liveness (failing: killed with the stop signal, SIGKILL
    // after the grace period; restarted per policy) and readiness (passing:
    // "ready" and in the router; failing after being ready: "unready" and out
    // of the router until it passes again).
    void probe(const ReplicaPtr& r) {
        enum Which { Startup, Liveness, Readiness };
        int pid;
        std::string id;
        std::shared_ptr<fs::Fd> netns;
        std::vector<std::pair<Which, ProbeSpec>> due;
        bool ready_at_once = false;
        auto now = Clock::now();
        {
            std::lock_guard lock(mu);
            if (!probed(*r)) return;
            pid = r->pid;
            id = r->id;
            netns = r->netns;
            if (!r->started) {
                if (r->startup && r->startup->due(now))
                    due.emplace_back(Startup, r->startup->spec());
            } else {
                if (r->liveness && r->liveness->due(now))
                    due.emplace_back(Liveness, r->liveness->spec());
                if (r->readiness && r->readiness->due(now))
                    due.emplace_back(Readiness, r->readiness->spec());
                ready_at_once = r->state == "starting" && !r->readiness;
            }
        }
        if (due.empty() && !ready_at_once) return;
        if (!netns) {
            try {
                netns = std::make_shared<fs::Fd>(open_netns(pid));
            } catch (...) {
                return;  // gone: the exit watcher reports it
            }
        }
        ProbeTarget target{netns->get(), id, &host.runc()};
        std::vector<std::pair<Which, ProbeOutcome>> results;
        for (auto& [which, spec] : due)
            results.emplace_back(which, run_probe(spec, target));

        std::vector<std::string> events;
        std::string kill_reason;
        int kill_signal = SIGTERM;
        bool went_ready = false;
        {
            std::lock_guard lock(mu);
            if (!probed(*r) || r->pid != pid || r->id != id) return;
            r->netns = netns;
            now = Clock::now();
            auto go_ready = [&] {
                bool was_unready = r->state == "unready";
                r->state = "ready";
                r->message.clear();
                add_to_router_locked(*r);
                went_ready = true;
                events.push_back(
                    r->deployment + ": replica " + r->id +
                    (was_unready ? " is ready again (back in the router)" : " is ready"));
                cv.notify_all();
            };
            for (auto& [which, outcome] : results) {
                if (!kill_reason.empty()) break;
                if (which == Startup) {
                    auto result = r->startup->record(outcome.ok, now);
                    if (result == ProbeState::Result::Success) {
                        r->started = true;
                        r->startup.reset();
                        events.push_back(r->deployment + ": replica " + r->id +
                                         " passed its startup probe");
                    } else if (result == ProbeState::Result::Failure) {
                        kill_reason = "startup probe failed: " + outcome.message;
                    }
                } else if (which == Liveness) {
                    if (r->liveness->record(outcome.ok, now) == ProbeState::Result::Failure)
                        kill_reason = "liveness probe failed: " + outcome.message;
                } else {
                    auto result = r->readiness->record(outcome.ok, now);
                    if (result == ProbeState::Result::Success && r->state != "ready") {
                        go_ready();
                        if (r->readiness_implied) r->readiness.reset();  // only gates the start
                    } else if (!outcome.ok && r->state != "ready") {
                        r->message = "not ready: " + outcome.message;
                        if (r->implied_fast && now - r->started_at >= kImpliedFastWindow) {
                            // Slow to listen: back off to kProbeInterval.
                            r->readiness.emplace(r->readiness->spec(), now + kProbeInterval);
                            r->implied_fast = false;
                        }
                    } else if (result == ProbeState::Result::Failure && r->state == "ready") {
                        r->state = "unready";
                        r->message = "readiness probe failed: " + outcome.message;
                        remove_from_router_locked(*r);
                        events.push_back(r->deployment + ": replica " + r->id +
                                         " is not ready (out of the router): " + outcome.message);
                        cv.notify_all();
                    }
                }
            }
            if (kill_reason.empty() && r->started && r->state == "starting" && !r->readiness)
                go_ready();
            if (!kill_reason.empty()) {
                r->killing = true;
                r->kill_at = now + r->spec.stop_grace;
                r->message = kill_reason;
                kill_signal = r->stop_signal;
                remove_from_router_locked(*r);
                cv.notify_all();
            }
        }
        for (auto& e : events)
            emit("replica", e);
        if (went_ready) {
            try {
                persist(r);  // pid and state, after the router has it (see launch)
            } catch (const std::exception& e) {
                emit("replica", "cannot record replica " + id + ": " + e.what());
            }
        }
        if (!kill_reason.empty()) {
            emit("replica", r->deployment + ": replica " + id + " " + kill_reason +
                                "; stopping it (signal " + std::to_string(kill_signal) + ")");
            try {
                host.runc().kill(id, kill_signal);
            } catch (const std::exception&) {
                // Gone meanwhile: the exit watcher reports it.
            }
        }
    }

    // Restarts replicas whose backoff passed, kills those a probe failed once
    // their grace period is over, and runs the probes that are due.
    void pump(const DeploymentPtr& d) {
        std::vector<ReplicaPtr> due, killing, probing;
        auto now = Clock::now();
        {
            std::lock_guard lock(mu);
            for (auto& [id, r] : d->replicas) {
                if (awaiting_restart(*r) && r->restart_at <= now) due.push_back(r);
                if (r->killing && r->kill_at <= now) killing.push_back(r);
                if (probed(*r)) probing.push_back(r);
            }
        }
        for (auto& r : due)
            restart(d, r);
        for (auto& r : killing) {
            std::string id;
            {
                std::lock_guard lock(mu);
                if (!r->killing) continue;
                id = r->id;
                r->kill_at = Clock::now() + kProbeConnectTimeout;  // again if it survives
            }
            try {
                host.runc().kill(id, SIGKILL);
            } catch (const std::exception&) {
            }
        }
        for (auto& r : probing)
            probe(r);
    }

    // Replica `index` of deployment `name` (the latest revision's when
    // several have it; a ready one first); without an index, the lowest ready
    // one, else the lowest. Throws naming what exists.
    ReplicaPtr pick_replica_locked(const std::string& name, std::optional<int> index) const {
        auto it = deployments.find(name);
        if (it == deployments.end())
            throw Error("deployment " + name +
                        " does not exist; `cascade get deployments` lists the deployments");
        ReplicaPtr best;
        std::set<int> indexes;
        auto better = [&](const ReplicaPtr& a, const ReplicaPtr& b) {
            bool ar = a->state == "ready", br = b->state == "ready";
            if (!index && ar != br) return ar;
            if (a->index != b->index) return a->index < b->index;
            if (ar != br) return ar;
            return a->revision > b->revision;
        };
        for (auto& [id, r] : it->second->replicas) {
            if (r->state == "stopping") continue;
            indexes.insert(r->index);
            if (index && r->index != *index) continue;
            if (!best || better(r, best)) best = r;
        }
        if (best) return best;
        if (indexes.empty()) throw Error("deployment " + name + " has no replicas");
        std::string have;
        for (int i : indexes)
            have += (have.empty() ? "" : ", ") + std::to_string(i);
        throw Error("deployment " + name + " has no replica " + std::to_string(index.value_or(0)) +
                    " (its replicas: " + have + ")");
    }

    // Waits (pumping) until every replica in `rs` is ready; returns those
    // that are not when `timeout` passed or the worker is told to stop.
    std::vector<ReplicaPtr> wait_ready(const DeploymentPtr& d, const std::vector<ReplicaPtr>& rs,
                                       Clock::duration timeout) {
        auto deadline = Clock::now() + timeout;
        while (true) {
            pump(d);
            std::unique_lock lock(mu);
            std::vector<ReplicaPtr> pending;
            for (auto& r : rs)
                if (r->state != "ready") pending.push_back(r);
            if (pending.empty() || d->stop || Clock::now() >= deadline) return pending;
            // Until the next probe (or restart, kill) is due, at most kProbeInterval.
            auto now = Clock::now();
            auto wake = std::min({deadline, now + kProbeInterval, next_supervision_locked(*d)});
            cv.wait_until(lock, std::max(wake, now + milliseconds(1)), [&] { return d->stop; });
        }
    }

    // Out of the router, drained, stopped and forgotten.
    void retire(const DeploymentPtr& d, const ReplicaPtr& r, milliseconds grace) {
        std::string id;
        int signal;
        std::vector<std::string> backends;
        {
            std::lock_guard lock(mu);
            r->state = "stopping";
            remove_from_router_locked(*r);
            id = r->id;
            signal = r->stop_signal;
            for (auto& [name, route] : routes)
                if (route.deployment == r->deployment) backends.push_back(backend_id(name, id));
        }
        // Connections still open finish (up to the grace period) before the stop.
        auto drain_deadline = Clock::now() + grace;
        for (auto& backend : backends) {
            try {
                router.drain(backend,
                             std::max(milliseconds(0), std::chrono::duration_cast<milliseconds>(
                                                           drain_deadline - Clock::now())));
            } catch (...) {
            }
        }
        try {
            host.stop(id, grace, signal);
            records.progress([&] { records.delete_replica(id); });
            std::string previous;
            {
                std::lock_guard lock(mu);
                previous = r->previous_log;
            }
            remove_previous_log(previous);
            emit("replica", r->deployment + ": replica " + id + " (revision " +
                                std::to_string(r->revision) + ") stopped");
        } catch (const std::exception& e) {
            // The row stays, so recover() removes the container after a restart.
            emit("replica", r->deployment + ": stopping replica " + id + " failed: " + e.what());
        }
        std::lock_guard lock(mu);
        if (d) d->replicas.erase(id);
    }

    // Stops many replicas at once (bounded parallelism).
    void retire_all(const std::vector<std::pair<DeploymentPtr, ReplicaPtr>>& rs) {
        std::mutex next_mu;
        size_t next = 0;
        auto work = [&] {
            while (true) {
                size_t i;
                {
                    std::lock_guard lock(next_mu);
                    if (next >= rs.size()) return;
                    i = next++;
                }
                milliseconds grace;
                {
                    std::lock_guard lock(mu);
                    grace = rs[i].second->spec.stop_grace;
                }
                retire(rs[i].first, rs[i].second, grace);
            }
        };
        std::vector<std::thread> threads;
        for (size_t i = 1; i < std::min(rs.size(), kStopParallelism); ++i)
            threads.emplace_back(work);
        work();
        for (auto& t : threads)
            t.join();
    }

    // ---- rollouts -----------------------------------------------------------

    // A new replica that exited this many times during its rollout has crashed.
    static constexpr int kCrashExits = 3;

    // How roll_to ended.
    struct Outcome {
        enum class Kind { Done, Interrupted, Failed };
        Kind kind = Kind::Done;
        std::string message;  // Failed: what failed
    };

    void fail(const DeploymentPtr& d, const std::string& message) {
        set_phase(d, "Failed", message);
        emit("rollout", d->name + ": " + message);
    }

    bool stopping(const DeploymentPtr& d) {
        std::lock_guard lock(mu);
        return d->stop;
    }

    // A rollout step stops when the worker stops, the deployment is paused or
    // a newer rollout was asked for (resume continues; the newer one supersedes).
    // A scale while paused stops at a resume (the usual reconcile follows).
    static bool interrupted_locked(const Deployment& d) {
        if (d.scaling) return d.stop || !d.paused;
        return d.stop || d.paused || d.rollout_requested;
    }

    // The phase that follows from the revisions: Paused, Failed while the
    // latest revision failed or is an automatic rollback (its message says
    // why), else Running.
    static std::pair<std::string, std::string> settled_phase_locked(const Deployment& d) {
        if (d.paused)
            return {"Paused", "paused at revision " + std::to_string(d.revision) +
                                  "; `cascade rollout resume " + d.name + "` continues"};
        if (!d.revisions.empty()) {
            auto& latest = d.revisions.back();
            if (latest.status == "Failed" || latest.cause.rfind("rollback to", 0) == 0)
                return {"Failed", latest.message};
        }
        return {"Running", ""};
    }

    void settle(const DeploymentPtr& d) {
        {
            std::lock_guard lock(mu);
            std::tie(d->phase, d->message) = settled_phase_locked(*d);
        }
        persist(d, Durability::Relaxed);
    }

    void set_revision_status(const DeploymentPtr& d, int revision, const std::string& status,
                             const std::string& message) {
        std::optional<RevisionInfo> copy;
        int replicas = 0;
        {
            std::lock_guard lock(mu);
            replicas = d->spec.replicas;
            for (auto& r : d->revisions)
                if (r.revision == revision) {
                    r.status = status;
                    r.message = message;
                    copy = r;
                }
        }
        if (copy) records.progress([&] { records.save_revision(d->name, *copy); });
        if (copy && (status == "Complete" || status == "Failed"))
            registry::metrics().rollout_finished(d->name,
                                                 status == "Complete" ? "complete" : "failed");
        if (copy && (status == "Complete" || status == "Failed"))
            report({d->name, revision, copy->digest.str(), status,
                    status == "Complete" ? replicas : 0, replicas, copy->cause,
                    status == "Failed" ? message : ""});
    }

    // Records a new revision (the deployment's template becomes `tmpl`, its
    // replica count and trigger stay); ones still rolling out are superseded.
    int add_revision(const DeploymentPtr& d, const oci::Digest& digest, const DeploymentSpec& tmpl,
                     const std::string& cause, const std::string& message) {
        RevisionInfo info;
        std::vector<RevisionInfo> superseded;
        {
            std::lock_guard lock(mu);
            info.revision = d->revision + 1;
            if (!d->revisions.empty())
                info.revision = std::max(info.revision, d->revisions.back().revision + 1);
            for (auto& r : d->revisions)
                if (r.status == "RollingOut" || r.status == "Pending") {
                    r.status = "Superseded";
                    r.message = "superseded by revision " + std::to_string(info.revision);
                    superseded.push_back(r);
                }
            int replicas = d->spec.replicas;
            bool automatic = d->spec.automatic;
            d->spec = tmpl;
            d->spec.name = d->name;
            d->spec.replicas = replicas;
            d->spec.automatic = automatic;
            info.digest = digest;
            info.spec = d->spec;
            info.cause = cause;
            info.status = "RollingOut";
            info.message = message;
            info.created_unix = static_cast<int64_t>(::time(nullptr));
            d->revisions.push_back(info);
            d->revision = info.revision;
            d->digest = digest;
            d->template_pending = false;
            d->phase = "RollingOut";
            d->message = "rolling out revision " + std::to_string(info.revision) + " (" +
                         digest.str() + "): " + cause;
        }
        {
            // One commit for the revisions and the deployment: it is on the
            // way to the first replica's start. persist_mu first, as persist().
            std::lock_guard order(d->persist_mu);
            auto rec = deployment_record(d);
            records.progress([&] {
                for (auto& r : superseded)
                    records.save_revision(d->name, r);
                records.save_revision(d->name, info);
                records.save_deployment(rec);
            });
        }
        emit("rollout", d->name + ": rollout to revision " + std::to_string(info.revision) + " (" +
                            short_digest(digest) + ") started: " + cause);
        report({d->name, info.revision, digest.str(), "Started", 0, info.spec.replicas, cause, ""});
        return info.revision;
    }

    std::string not_ready_message(const ReplicaPtr& r, int revision, const Image& image,
                                  const DeploymentSpec& spec) {
        std::string state, id;
        {
            std::lock_guard lock(mu);
            state = r->state;
            id = r->id;
        }
        auto tail = log_tail(host.log_path(id));
        std::string msg = "rollout to revision " + std::to_string(revision) + " (" +
                          image.digest.str() + ") failed: replica " + id;
        if (state == "exited" || state == "restarting" || state == "CrashLoopBackOff")
            msg += " keeps exiting and was not ready";
        else if (spec.readiness.set())
            msg += " did not pass its readiness probe";
        else
            msg += " did not accept connections on port " + std::to_string(spec.container_port);
        msg += " within " + std::to_string(spec.strategy.timeout.count()) + "s";
        if (!tail.empty()) msg += "; its last output: " + tail;
        return msg;
    }

    std::string crash_message(const ReplicaPtr& r, int revision, const Image& image, int exits) {
        std::string state, id;
        int last_exit;
        {
            std::lock_guard lock(mu);
            state = r->state;
            id = r->id;
            last_exit = r->last_exit;
        }
        auto tail = log_tail(host.log_path(id));
        std::string msg = "rollout to revision " + std::to_string(revision) + " (" +
                          image.digest.str() + ") failed: replica " + id + " crashed (exited " +
                          std::to_string(exits) + " time" + (exits == 1 ? "" : "s") +
                          ", last status " + std::to_string(last_exit) +
                          (state == "CrashLoopBackOff" ? ", CrashLoopBackOff" : "") + ")";
        if (!tail.empty()) msg += "; its last output: " + tail;
        return msg;
    }

    // Replicas of other revisions that run the same digest and template
    // become replicas of `revision` (a rollback or undo keeps them).
    void adopt_replicas(const DeploymentPtr& d, int revision, const DeploymentSpec& tmpl,
                        const oci::Digest& digest) {
        std::vector<ReplicaPtr> adopted;
        {
            std::lock_guard lock(mu);
            for (auto& [id, r] : d->replicas)
                if (r->state != "stopping" && r->revision != revision && r->digest == digest &&
                    !template_changed(r->spec, tmpl)) {
                    r->revision = revision;
                    adopted.push_back(r);
                }
        }
        for (auto& r : adopted)
            persist(r);
    }

    // Pumps (probes, restarts) until `period` passed, a replica changed
    // state, `deadline` passed or the step is interrupted.
    void idle(const DeploymentPtr& d, Clock::duration period, Clock::time_point deadline) {
        auto until = std::min(Clock::now() + period, deadline);
        auto signature = [&] {
            std::string s;
            for (auto& [id, r] : d->replicas)
                s += id + "=" + r->state + ";";
            return s;
        };
        std::string before;
        {
            std::lock_guard lock(mu);
            before = signature();
        }
        while (true) {
            {
                std::unique_lock lock(mu);
                auto now = Clock::now();
                if (interrupted_locked(*d) || now >= until) return;
                auto wake = std::min({until, now + kProbeInterval, next_supervision_locked(*d)});
                cv.wait_until(lock, std::max(wake, now + milliseconds(1)),
                              [&] { return interrupted_locked(*d); });
            }
            pump(d);
            std::lock_guard lock(mu);
            if (signature() != before) return;
        }
    }

    // Brings the deployment to spec.replicas (read at every step: scaling
    // applies at once) ready replicas of `revision`, made from `tmpl` and
    // `image`, by the template's strategy:
    //  Rolling: at most replicas+maxSurge replicas and at least
    //   replicas-maxUnavailable ready ones at any time; new ones start as the
    //   surge allows (a batch per update period), old ones go as new ones
    //   become ready (unready ones first, then the oldest revisions);
    //  Recreate: every old replica stopped (drained) first, then the new ones.
    // Fails when a new replica crashes or they are not all ready within the
    // strategy's timeout; the caller rolls back.
    Outcome roll_to(const DeploymentPtr& d, int revision, const DeploymentSpec& tmpl,
                    const Image& image, bool adopt) {
        const auto& strategy = tmpl.strategy;
        const bool recreate = strategy.type == RolloutStrategy::Type::Recreate;
        const auto deadline = Clock::now() + strategy.timeout;
        if (adopt) adopt_replicas(d, revision, tmpl, image.digest);
        if (recreate) {
            std::vector<std::pair<DeploymentPtr, ReplicaPtr>> old;
            {
                std::lock_guard lock(mu);
                if (interrupted_locked(*d)) return {Outcome::Kind::Interrupted, ""};
                for (auto& [id, r] : d->replicas)
                    if (r->revision != revision && r->state != "stopping") old.emplace_back(d, r);
            }
            if (!old.empty()) {
                emit("rollout", d->name + ": Recreate: stopping the " + std::to_string(old.size()) +
                                    " replicas of older revisions");
                retire_all(old);
            }
        }
        auto is_ready = [](const ReplicaPtr& r) { return r->state == "ready"; };
        auto exits = [](const Replica& r) {
            bool down =
                r.state == "exited" || r.state == "CrashLoopBackOff" || r.state == "completed";
            return r.restarts + (down ? 1 : 0);
        };
        // Exits before this rollout do not count as crashes of it.
        std::map<const Replica*, int> exits_before;
        {
            std::lock_guard lock(mu);
            for (auto& [id, r] : d->replicas)
                if (r->revision == revision) exits_before[r.get()] = exits(*r);
        }
        // Unready first, then older revisions first.
        auto order = [&](const ReplicaPtr& a, const ReplicaPtr& b) {
            bool ar = is_ready(a), br = is_ready(b);
            if (ar != br) return !ar;
            return a->revision < b->revision;
        };
        Clock::time_point next_batch{};
        int reported_ready = 0;  // rollout hook: ready replicas of the revision last reported
        while (true) {
            pump(d);
            std::vector<ReplicaPtr> retiring;
            ReplicaPtr crashed, late;
            int crashed_exits = 0, start = 0, progress_ready = 0, progress_want = 0;
            bool done = false, completed = false;
            auto now = Clock::now();
            {
                std::lock_guard lock(mu);
                if (interrupted_locked(*d)) return {Outcome::Kind::Interrupted, ""};
                std::vector<ReplicaPtr> fresh, old;
                for (auto& [id, r] : d->replicas) {
                    if (r->state == "stopping") continue;
                    (r->revision == revision ? fresh : old).push_back(r);
                }
                std::stable_sort(fresh.begin(), fresh.end(), order);
                std::stable_sort(old.begin(), old.end(), order);
                int want = std::max(0, d->spec.replicas);
                int fresh_ready = 0, old_ready = 0;
                for (auto& r : fresh) {
                    fresh_ready += is_ready(r);
                    auto before = exits_before.find(r.get());
                    int n = exits(*r) - (before == exits_before.end() ? 0 : before->second);
                    if (!crashed && n > 0 &&
                        (n >= kCrashExits || r->state == "CrashLoopBackOff" ||
                         r->state == "completed")) {
                        crashed = r;
                        crashed_exits = exits(*r);
                        completed = r->state == "completed";
                    }
                    if (!late && !is_ready(r)) late = r;
                }
                for (auto& r : old)
                    old_ready += is_ready(r);
                progress_ready = std::min(fresh_ready, want);
                progress_want = want;
                int fresh_n = static_cast<int>(fresh.size());
                int old_n = static_cast<int>(old.size());
                if (fresh_n == want && fresh_ready == want && old.empty()) {
                    done = true;
                } else if (!crashed && now < deadline) {
                    int surge = std::max(0, strategy.max_surge.resolve(want, true));
                    int unavailable = std::max(0, strategy.max_unavailable.resolve(want, false));
                    if (surge == 0 && unavailable == 0) unavailable = 1;
                    int min_ready = recreate ? 0 : std::max(0, want - unavailable);
                    int max_total = recreate ? want : want + surge;
                    int ready = fresh_ready + old_ready;
                    // Scaled down during the rollout: the surplus new ones go.
                    for (auto& r : fresh) {
                        if (fresh_n <= want) break;
                        retiring.push_back(r);
                        --fresh_n;
                        ready -= is_ready(r);
                    }
                    // Old replicas that do not serve (except ones still starting).
                    for (auto& r : old)
                        if (!is_ready(r) && r->state != "starting") {
                            retiring.push_back(r);
                            --old_n;
                        }
                    // Old ready ones while enough stay ready.
                    for (auto& r : old)
                        if (is_ready(r) && ready - 1 >= min_ready) {
                            retiring.push_back(r);
                            --old_n;
                            --ready;
                        }
                    // No room to surge: an old one still starting makes room.
                    if (fresh_n < want && fresh_n + old_n >= max_total)
                        for (auto& r : old)
                            if (r->state == "starting") {
                                retiring.push_back(r);
                                --old_n;
                                break;
                            }
                    start = std::min(max_total - (fresh_n + old_n), want - fresh_n);
                    if (start > 0 && now < next_batch) start = 0;
                }
            }
            if (progress_ready > reported_ready) {
                for (int n = reported_ready + 1; n <= progress_ready; ++n)
                    report({d->name, revision, image.digest.str(), "Progress", n, progress_want, "",
                            ""});
                reported_ready = progress_ready;
            }
            if (done) return {Outcome::Kind::Done, ""};
            if (crashed) {
                if (completed)
                    return {Outcome::Kind::Failed,
                            crash_message(crashed, revision, image, std::max(1, crashed_exits)) +
                                "; its restart policy keeps it down"};
                return {Outcome::Kind::Failed,
                        crash_message(crashed, revision, image, crashed_exits)};
            }
            if (now >= deadline) {
                if (late)
                    return {Outcome::Kind::Failed, not_ready_message(late, revision, image, tmpl)};
                return {Outcome::Kind::Failed, "rollout to revision " + std::to_string(revision) +
                                                   " (" + image.digest.str() +
                                                   ") did not complete within " +
                                                   std::to_string(strategy.timeout.count()) + "s"};
            }
            if (!retiring.empty()) {
                std::vector<std::pair<DeploymentPtr, ReplicaPtr>> rs;
                for (auto& r : retiring)
                    rs.emplace_back(d, r);
                retire_all(rs);
            }
            if (start > 0) {
                next_batch = Clock::now() + strategy.update_period;
                for (int i = 0; i < start; ++i) {
                    try {
                        start_replica(d, tmpl, revision, image);
                    } catch (const std::exception& e) {
                        return {Outcome::Kind::Failed, e.what()};
                    }
                }
            }
            if (retiring.empty() && start == 0) {
                auto wake = deadline;
                if (next_batch > Clock::now()) wake = std::min(wake, next_batch);
                idle(d, strategy.interval, wake);
            }
        }
    }

    // Rolls out `revision` and records how it ended: Complete; paused or
    // superseded (resume or the next rollout continues); Failed, and rolled
    // back when `rollback` (not for a rollback itself).
    void run_revision(const DeploymentPtr& d, int revision, const DeploymentSpec& tmpl,
                      const Image& image, bool adopt, bool rollback) {
        auto outcome = roll_to(d, revision, tmpl, image, adopt);
        if (outcome.kind == Outcome::Kind::Done) {
            std::string message;
            {
                std::lock_guard lock(mu);
                std::erase(d->failed_digests, image.digest);
                for (auto& r : d->revisions)
                    if (r.revision == revision) message = r.message;
            }
            set_revision_status(d, revision, "Complete", message);
            settle(d);
            int replicas;
            {
                std::lock_guard lock(mu);
                replicas = d->spec.replicas;
            }
            emit("rollout", d->name + ": rollout to revision " + std::to_string(revision) +
                                " complete (" + std::to_string(replicas) + " replicas)");
            return;
        }
        if (outcome.kind == Outcome::Kind::Interrupted) {
            bool paused;
            {
                std::lock_guard lock(mu);
                paused = d->paused && !d->stop;
                if (paused) d->reconcile_requested = true;  // resume continues
            }
            if (paused) settle(d);
            return;
        }
        if (rollback) {
            roll_back(d, revision, image.digest, outcome.message);
            return;
        }
        std::string previous;
        {
            std::lock_guard lock(mu);
            for (auto& r : d->revisions)
                if (r.revision == revision) previous = r.message;
        }
        auto message = previous.empty()
                           ? outcome.message
                           : previous + "; rolling back failed too: " + outcome.message;
        set_revision_status(d, revision, "Failed", message);
        fail(d, message);
    }

    // Revision `failed` did not make it: its replicas go, and the last
    // Complete revision's digest and template come back as a new revision
    // (replicas of it that still run are kept). The digest is remembered as
    // failed, so the image trigger does not roll it out again.
    void roll_back(const DeploymentPtr& d, int failed, const oci::Digest& digest,
                   const std::string& reason) {
        std::optional<RevisionInfo> good;
        std::vector<std::pair<DeploymentPtr, ReplicaPtr>> doomed;
        {
            std::lock_guard lock(mu);
            for (auto it = d->revisions.rbegin(); it != d->revisions.rend(); ++it)
                if (it->revision < failed && it->status == "Complete") {
                    good = *it;
                    break;
                }
            for (auto& [id, r] : d->replicas)
                if (r->revision == failed && r->state != "stopping") doomed.emplace_back(d, r);
            if ((!good || good->digest != digest) &&
                std::find(d->failed_digests.begin(), d->failed_digests.end(), digest) ==
                    d->failed_digests.end())
                d->failed_digests.push_back(digest);
        }
        retire_all(doomed);
        set_revision_status(d, failed, "Failed", reason);
        if (!good) {
            fail(d, reason +
                        "; no earlier revision completed, so there is nothing to roll back "
                        "to: its replicas were stopped");
            return;
        }
        auto message = reason + "; rolled back to revision " + std::to_string(good->revision);
        Image image;
        try {
            image = load_image(good->spec.image_repository, good->digest);
        } catch (const std::exception& e) {
            fail(d, reason + "; rolling back to revision " + std::to_string(good->revision) +
                        " failed: " + e.what());
            return;
        }
        int next =
            add_revision(d, good->digest, good->spec,
                         "rollback to revision " + std::to_string(good->revision) + " (revision " +
                             std::to_string(failed) + " failed: " + reason + ")",
                         message);
        emit("rollout", d->name + ": " + message + " (as revision " + std::to_string(next) + ")");
        run_revision(d, next, good->spec, image, true, false);
    }

    // A rollout request: the tag moved, the spec changed, or restart, undo or
    // retry asked for one.
    void rollout(const DeploymentPtr& d, bool spec_changed) {
        DeploymentSpec spec;
        std::optional<oci::Digest> current;
        std::optional<RevisionInfo> latest;
        std::optional<Request> forced;
        {
            std::lock_guard lock(mu);
            spec = d->spec;
            current = d->digest;
            if (!d->revisions.empty()) latest = d->revisions.back();
            forced = std::move(d->forced);
            d->forced.reset();
            spec_changed = spec_changed || d->template_pending;
            d->template_pending = spec_changed;
        }
        if (forced && forced->tmpl) {
            int replicas = spec.replicas;
            bool automatic = spec.automatic;
            spec = *forced->tmpl;
            spec.name = d->name;
            spec.replicas = replicas;
            spec.automatic = automatic;
        }
        std::optional<Image> image;
        try {
            if (forced && forced->digest)
                image = load_image(spec.image_repository, *forced->digest);
            else
                image = resolve_tag(spec.image_repository, spec.image_tag);
        } catch (const std::exception& e) {
            fail(d, "resolving " + spec.image_repository + ":" + spec.image_tag +
                        " failed: " + e.what());
            return;
        }
        if (!image) {
            set_phase(d, "Waiting for image",
                      "tag " + spec.image_repository + ":" + spec.image_tag +
                          " does not exist yet; the deployment starts when it is pushed");
            emit("deployment",
                 spec.name + ": waiting for image " + spec.image_repository + ":" + spec.image_tag);
            return;
        }
        bool new_template = !latest || template_changed(latest->spec, spec);
        bool same = current && *current == image->digest && !new_template;
        if (same && !(forced && forced->fresh)) {
            // Already there (e.g. an event for a digest rolled out meanwhile).
            reconcile(d);
            return;
        }
        bool failed_digest;
        {
            std::lock_guard lock(mu);
            failed_digest = std::find(d->failed_digests.begin(), d->failed_digests.end(),
                                      image->digest) != d->failed_digests.end();
        }
        if (!forced && !new_template && failed_digest) {
            emit("rollout", d->name + ": " + short_digest(image->digest) +
                                " was rolled back before; not rolled out again until a newer "
                                "digest arrives or `cascade rollout retry " +
                                d->name + "`");
            reconcile(d);
            return;
        }
        std::string cause;
        if (forced)
            cause = forced->cause;
        else if (!latest)
            cause = "initial";
        else if (new_template)
            cause = "config change";
        else
            cause = "image change (" + spec.image_repository + ":" + spec.image_tag + " → " +
                    short_digest(image->digest) + ")";
        int next = add_revision(d, image->digest, spec, cause, "");
        run_revision(d, next, spec, *image, !(forced && forced->fresh), true);
    }

    // After apply (unchanged template), recover, resume or scale: the first
    // start, a rollout that was interrupted (continued: it completes or rolls
    // back), the replica count.
    void reconcile(const DeploymentPtr& d) {
        std::optional<RevisionInfo> latest;
        {
            std::lock_guard lock(mu);
            if (!d->revisions.empty()) latest = d->revisions.back();
        }
        if (!latest) {
            rollout(d, false);
            return;
        }
        // A failed revision without a good one before it: nothing runs until
        // a new tag, spec, undo or retry.
        if (latest->status == "Failed") {
            settle(d);
            return;
        }
        Image image;
        try {
            image = load_image(latest->spec.image_repository, latest->digest);
        } catch (const std::exception& e) {
            fail(d, e.what());
            return;
        }
        if (latest->status == "RollingOut" || latest->status == "Pending") {
            emit("rollout", d->name + ": continuing the rollout of revision " +
                                std::to_string(latest->revision));
            run_revision(d, latest->revision, latest->spec, image, true,
                         latest->cause.rfind("rollback to", 0) != 0);
            return;
        }
        auto outcome = roll_to(d, latest->revision, latest->spec, image, true);
        if (outcome.kind == Outcome::Kind::Done) {
            settle(d);
        } else if (outcome.kind == Outcome::Kind::Failed) {
            fail(d, outcome.message);
        } else {
            bool paused;
            {
                std::lock_guard lock(mu);
                paused = d->paused && !d->stop;
                if (paused) d->reconcile_requested = true;
            }
            if (paused) settle(d);
        }
    }

    // `cascade scale` while paused: a deployment at rest (its latest revision
    // complete) gets the new count of that revision's replicas now; one paused
    // in the middle of a rollout gets it at resume, and says so.
    void scale_paused(const DeploymentPtr& d) {
        std::optional<RevisionInfo> latest;
        int replicas = 0;
        {
            std::lock_guard lock(mu);
            if (!d->revisions.empty()) latest = d->revisions.back();
            replicas = d->spec.replicas;
        }
        if (!latest || latest->status != "Complete") {
            emit("deployment", d->name + ": paused in the middle of a rollout: " +
                                   std::to_string(replicas) + " replicas at resume");
            return;
        }
        Image image;
        try {
            image = load_image(latest->spec.image_repository, latest->digest);
        } catch (const std::exception& e) {
            emit("deployment", d->name + ": scaling while paused failed: " + e.what());
            return;
        }
        auto set_scaling = [&](bool on) {
            std::lock_guard lock(mu);
            d->scaling = on;
        };
        set_scaling(true);
        std::shared_ptr<void> done(nullptr, [&](void*) { set_scaling(false); });
        auto spec = latest->spec;
        spec.replicas = replicas;
        auto outcome = roll_to(d, latest->revision, spec, image, true);
        done.reset();
        if (outcome.kind == Outcome::Kind::Failed)
            emit("deployment", d->name + ": scaling while paused: " + outcome.message);
        settle(d);
    }

    // ---- the worker ---------------------------------------------------------

    void run_worker(const DeploymentPtr& d) {
        while (true) {
            bool do_rollout = false, spec_changed = false, do_reconcile = false, do_scale = false;
            {
                std::unique_lock lock(mu);
                while (true) {
                    if (d->stop) return;
                    // Paused: only supervision (probes, restarts) until resume.
                    if (!d->paused && (d->rollout_requested || d->reconcile_requested)) break;
                    if (d->paused && d->scale_requested) break;
                    // Probes, restarts and kills that are due (supervision).
                    auto wake = next_supervision_locked(*d);
                    if (wake <= Clock::now()) break;
                    if (wake == Clock::time_point::max())
                        cv.wait(lock);
                    else
                        cv.wait_until(lock, wake);
                }
                if (!d->paused) {
                    do_rollout = d->rollout_requested;
                    spec_changed = d->spec_changed;
                    do_reconcile = d->reconcile_requested;
                    d->rollout_requested = d->spec_changed = d->reconcile_requested = false;
                } else {
                    // The reconcile it asked for stays requested for resume.
                    do_scale = d->scale_requested;
                }
                d->scale_requested = false;
                d->busy = do_rollout || do_reconcile || do_scale;
            }
            try {
                pump(d);
                if (do_rollout)
                    rollout(d, spec_changed);
                else if (do_reconcile)
                    reconcile(d);
                else if (do_scale)
                    scale_paused(d);
            } catch (const std::exception& e) {
                try {
                    fail(d, e.what());
                } catch (...) {
                }
            }
            std::lock_guard lock(mu);
            d->busy = false;
            cv.notify_all();
        }
    }

    void ensure_worker_locked(const DeploymentPtr& d) {
        if (d->stop || shutting_down || d->worker.joinable()) return;
        d->worker = std::thread([this, d] { run_worker(d); });
    }

    // Stops the workers of `ds` (their current step finishes first).
    void stop_workers(const std::vector<DeploymentPtr>& ds) {
        {
            std::lock_guard lock(mu);
            for (auto& d : ds)
                d->stop = true;
            cv.notify_all();
        }
        for (auto& d : ds)
            if (d->worker.joinable()) d->worker.join();
    }

    std::vector<DeploymentPtr> all_deployments() {
        std::lock_guard lock(mu);
        std::vector<DeploymentPtr> out;
        for (auto& [name, d] : deployments)
            out.push_back(d);
        return out;
    }

    DeploymentStatus status_locked(const Deployment& d) const {
        DeploymentStatus s;
        s.spec = d.spec;
        s.revision = d.revision;
        s.image = d.digest;
        s.phase = d.phase;
        s.message = d.message;
        s.paused = d.paused;
        s.failed_digests = d.failed_digests;
        for (auto& [id, r] : d.replicas) {
            if (r->revision == d.revision && r->state != "stopping") ++s.updated;
            ReplicaStatus rs;
            rs.container_id = r->id;
            rs.revision = r->revision;
            rs.image_digest = r->digest;
            rs.pid = r->pid;
            rs.state = r->state == "creating" ? "starting" : r->state;
            rs.restarts = r->restarts;
            rs.index = r->index;
            rs.last_exit = r->last_exit;
            rs.message = r->message;
            if (r->state == "ready") ++s.ready;
            s.replicas.push_back(std::move(rs));
        }
        return s;
    }

    // ---- recovery -----------------------------------------------------------

    void recover() {
        for (auto& route : records.routes()) {
            try {
                router.add_route(route.name, route.host, route.port);
            } catch (const std::exception& e) {
                emit("route", "route " + route.name + " could not listen again on " + route.host +
                                  ":" + std::to_string(route.port) + ": " + e.what());
            }
            std::lock_guard lock(mu);
            routes[route.name] = route;
        }
        for (auto& rec : records.deployments()) {
            {
                std::lock_guard lock(mu);
                if (deployments.count(rec.spec.name)) continue;
            }
            auto revisions = records.revisions(rec.spec.name);
            if (revisions.empty() && rec.digest) {
                // Recorded before revisions were: the latest one as it was.
                RevisionInfo r;
                r.revision = rec.revision;
                r.digest = *rec.digest;
                r.spec = rec.spec;
                r.cause = "initial";
                r.status = rec.phase == "Running"  ? "Complete"
                           : rec.phase == "Failed" ? "Failed"
                                                   : "RollingOut";
                r.created_unix = static_cast<int64_t>(::time(nullptr));
                records.progress([&] { records.save_revision(rec.spec.name, r); });
                revisions.push_back(r);
            }
            std::lock_guard lock(mu);
            if (deployments.count(rec.spec.name)) continue;
            auto d = std::make_shared<Deployment>();
            d->name = rec.spec.name;
            d->spec = rec.spec;
            d->revision = rec.revision;
            d->digest = rec.digest;
            d->phase = rec.phase.empty() ? "Pending" : rec.phase;
            d->message = rec.message;
            d->paused = rec.paused;
            d->failed_digests = rec.failed_digests;
            d->revisions = std::move(revisions);
            // A spec applied but not rolled out before the restart.
            if (!d->revisions.empty() && template_changed(d->revisions.back().spec, d->spec))
                d->rollout_requested = d->spec_changed = true;
            deployments[rec.spec.name] = d;
        }

        std::set<std::string> known;
        int adopted = 0, replaced = 0;
        for (auto& rec : records.replicas()) {
            DeploymentPtr d;
            {
                std::lock_guard lock(mu);
                auto it = deployments.find(rec.deployment);
                if (it != deployments.end()) d = it->second;
                if (d && d->replicas.count(rec.container_id)) {
                    known.insert(rec.container_id);
                    continue;  // already supervised
                }
            }
            std::optional<RuncState> state;
            try {
                state = host.state(rec.container_id);
            } catch (...) {
            }
            bool running = state && state->status == "running" && state->pid > 0;
            if (d && running) {
                auto r = std::make_shared<Replica>();
                r->id = rec.container_id;
                r->deployment = rec.deployment;
                r->revision = rec.revision;
                r->digest = rec.image_digest;
                if (rec.spec.image_repository.empty()) {
                    std::lock_guard lock(mu);
                    r->spec = d->spec;
                } else {
                    r->spec = rec.spec;
                }
                r->restarts = rec.restarts;
                r->last_exit = rec.last_exit;
                r->previous_log = rec.previous_log;
                r->pid = state->pid;
                r->state = "starting";
                r->started_at = Clock::now();
                oci::ContainerConfig image_config;
                try {
                    image_config = load_image(r->spec.image_repository, r->digest).config.config;
                } catch (...) {
                }
                r->stop_signal = parse_stop_signal(image_config.stop_signal);
                uint64_t token;
                {
                    std::lock_guard lock(mu);
                    r->index =
                        rec.index >= 0 ? rec.index : free_index_locked(*d, r->revision, r.get());
                    // Probed again from the start: readiness decides when it serves.
                    init_probes_locked(*r, image_config, r->started_at);
                    token = r->watch_token = next_token++;
                    d->replicas[r->id] = r;
                }
                persist(r);
                watch(r, r->pid, token);
                known.insert(rec.container_id);
                ++adopted;
                emit("recover", rec.deployment + ": re-adopted running replica " +
                                    rec.container_id + " (pid " + std::to_string(r->pid) + ")");
                continue;
            }
            reap_if_our_zombie(rec.pid);
            try {
                if (running && !d)
                    host.stop(rec.container_id, rec.spec.stop_grace);
                else
                    host.remove(rec.container_id);
                records.progress([&] { records.delete_replica(rec.container_id); });
                remove_previous_log(rec.previous_log);
                ++replaced;
                emit("recover", rec.deployment + ": replica " + rec.container_id +
                                    (d ? " was not running; removed (a replacement starts)"
                                       : " belongs to no deployment; removed"));
            } catch (const std::exception& e) {
                known.insert(rec.container_id);  // keep its files for the next attempt
                emit("recover", "removing replica " + rec.container_id + " failed: " + e.what());
            }
        }

        remove_orphans(known);

        std::lock_guard lock(mu);
        for (auto& [name, d] : deployments) {
            d->reconcile_requested = true;
            ensure_worker_locked(d);
        }
        cv.notify_all();
        (void)adopted;
        (void)replaced;
    }

    // Containers and mounts under our roots that no replica row knows.
    void remove_orphans(const std::set<std::string>& known) {
        std::set<std::string> orphans;
        try {
            for (auto& state : host.runc().list())
                if (!known.count(state.id)) orphans.insert(state.id);
        } catch (const std::exception& e) {
            emit("recover", std::string("listing runc containers failed: ") + e.what());
        }
        std::error_code ec;
        for (auto& entry : std::filesystem::directory_iterator(host.root(), ec)) {
            auto id = entry.path().filename().string();
            if (known.count(id) || !entry.is_directory()) continue;
            // Only bundle directories (a rootfs or a config.json inside).
            if (std::filesystem::exists(entry.path() / "config.json") ||
                std::filesystem::exists(entry.path() / "rootfs"))
                orphans.insert(id);
        }
        for (auto& id : orphans) {
            try {
                host.remove(id);
                emit("recover", "removed orphaned container " + id);
            } catch (const std::exception& e) {
                emit("recover", "removing orphaned container " + id + " failed: " + e.what());
            }
        }
        auto root = std::filesystem::weakly_canonical(host.root());
        for (auto& target : mounts_below(root)) {
            auto rel = target.lexically_relative(root);
            if (rel.empty() || known.count(rel.begin()->string())) continue;
            try {
                unmount_if_mounted(target);
                emit("recover", "unmounted leftover " + target.string());
            } catch (const std::exception& e) {
                emit("recover", "unmounting " + target.string() + " failed: " + e.what());
            }
        }
    }
};

// ---- the public interface -------------------------------------------------------

DeploymentController::DeploymentController(registry::Store& store, registry::Database& db,
                                           ContainerHost& host, Router& router)
    : impl_(std::make_unique<Impl>(store, db, host, router)) {}

DeploymentController::~DeploymentController() {
    {
        std::lock_guard lock(impl_->mu);
        impl_->shutting_down = true;
    }
    impl_->stop_workers(impl_->all_deployments());
    impl_->watcher.reset();
    // Containers keep running; their backends leave the router with us.
    std::lock_guard lock(impl_->mu);
    for (auto& [name, d] : impl_->deployments)
        for (auto& [id, r] : d->replicas)
            impl_->remove_from_router_locked(*r);
}

void DeploymentController::recover() {
    impl_->recover();
}

void DeploymentController::apply(const DeploymentSpec& spec, Durability durability) {
    validate(spec);
    Impl::DeploymentPtr d;
    std::string event;
    {
        std::lock_guard lock(impl_->mu);
        auto it = impl_->deployments.find(spec.name);
        if (it == impl_->deployments.end() || it->second->removing) {
            if (it != impl_->deployments.end())
                throw Error("deployment " + spec.name + " is being deleted; apply it again later");
            d = std::make_shared<Impl::Deployment>();
            d->name = spec.name;
            d->spec = spec;
            d->reconcile_requested = true;
            impl_->deployments[spec.name] = d;
            event = spec.name + ": created (" + spec.image_repository + ":" + spec.image_tag +
                    ", " + std::to_string(spec.replicas) + " replicas)";
        } else {
            d = it->second;
            bool changed = template_changed(d->spec, spec);
            bool scaled = d->spec.replicas != spec.replicas;
            d->spec = spec;
            if (changed) {
                d->rollout_requested = true;
                d->spec_changed = true;
                event = spec.name + ": spec changed, new revision queued";
            } else {
                d->reconcile_requested = true;
                if (scaled)
                    event =
                        spec.name + ": scaled to " + std::to_string(spec.replicas) + " replicas";
            }
        }
        impl_->ensure_worker_locked(d);
        impl_->cv.notify_all();
    }
    impl_->persist(d, durability);
    if (!event.empty()) impl_->emit("deployment", event);
}

void DeploymentController::apply_route(const RouteSpec& input, Durability durability) {
    RouteSpec route = input;
    static const std::regex kName("[a-z0-9]([a-z0-9.-]*[a-z0-9])?");
    if (route.name.empty() || !std::regex_match(route.name, kName))
        throw Error("route name \"" + route.name + "\" is invalid: use [a-z0-9.-]");
    if (route.deployment.empty()) throw Error("route " + route.name + ": no deployment given");
    if (route.host.empty()) route.host = "127.0.0.1";
    std::optional<RouteSpec> previous;
    {
        std::lock_guard lock(impl_->mu);
        auto it = impl_->routes.find(route.name);
        if (it != impl_->routes.end()) previous = it->second;
    }
    if (route.port == 0)
        route.port =
            previous && previous->host == route.host ? previous->port : pick_free_port(route.host);
    impl_->router.add_route(route.name, route.host, route.port);
    if (durability == Durability::Full)
        impl_->records.save_route(route);
    else
        impl_->records.progress([&] { impl_->records.save_route(route); });
    {
        std::lock_guard lock(impl_->mu);
        // The same replicas on the same port: the backends stay.
        bool same_deployment = previous && previous->deployment == route.deployment &&
                               previous->target_port == route.target_port;
        if (previous && !same_deployment) {
            auto it = impl_->deployments.find(previous->deployment);
            if (it != impl_->deployments.end())
                for (auto& [id, r] : it->second->replicas)
                    impl_->router.remove_backend(route.name, Impl::backend_id(route.name, id));
        }
        impl_->routes[route.name] = route;
        if (!same_deployment) {
            auto it = impl_->deployments.find(route.deployment);
            if (it != impl_->deployments.end())
                for (auto& [id, r] : it->second->replicas)
                    if (r->in_router)
                        impl_->router.add_backend(route.name, Impl::backend_for(route, *r));
        }
    }
    impl_->emit("route", "route " + route.name + " → " + route.deployment + " on http://" +
                             route.host + ":" + std::to_string(route.port) + "/");
}

void DeploymentController::remove(const std::string& name) {
    Impl::DeploymentPtr d;
    {
        std::lock_guard lock(impl_->mu);
        auto it = impl_->deployments.find(name);
        if (it == impl_->deployments.end() || it->second->removing) return;
        d = it->second;
        d->removing = true;
    }
    impl_->stop_workers({d});
    std::vector<std::pair<Impl::DeploymentPtr, Impl::ReplicaPtr>> rs;
    {
        std::lock_guard lock(impl_->mu);
        for (auto& [id, r] : d->replicas)
            rs.emplace_back(d, r);
    }
    impl_->retire_all(rs);
    impl_->records.delete_deployment(name);
    {
        std::lock_guard lock(impl_->mu);
        impl_->deployments.erase(name);
        impl_->cv.notify_all();
    }
    impl_->emit("deployment",
                name + ": deleted (" + std::to_string(rs.size()) + " replicas stopped)");
}

void DeploymentController::remove_route(const std::string& name) {
    {
        std::lock_guard lock(impl_->mu);
        if (!impl_->routes.erase(name)) return;
    }
    impl_->router.remove_route(name);
    impl_->records.delete_route(name);
    impl_->emit("route", "route " + name + " deleted");
}

void DeploymentController::on_tag_moved(const registry::TagEvent& event) {
    std::vector<std::string> queued, skipped;
    {
        std::lock_guard lock(impl_->mu);
        for (auto& [name, d] : impl_->deployments) {
            if (d->spec.image_repository != event.repository || d->spec.image_tag != event.tag)
                continue;
            // A deployment that waits for its first image starts even when
            // it does not follow the tag.
            if (!d->spec.automatic && d->digest) continue;
            if (d->removing) continue;
            if (std::find(d->failed_digests.begin(), d->failed_digests.end(), event.new_digest) !=
                d->failed_digests.end()) {
                skipped.push_back(name);
                continue;
            }
            d->rollout_requested = true;
            impl_->ensure_worker_locked(d);
            queued.push_back(name);
        }
        if (!queued.empty()) impl_->cv.notify_all();
    }
    for (auto& name : queued)
        impl_->emit("rollout", name + ": " + event.repository + ":" + event.tag + " moved to " +
                                   short_digest(event.new_digest) + ", rollout queued");
    for (auto& name : skipped)
        impl_->emit("rollout", name + ": " + event.repository + ":" + event.tag + " moved to " +
                                   short_digest(event.new_digest) +
                                   ", which was rolled back before: not rolled out again until a "
                                   "newer digest arrives or `cascade rollout retry " +
                                   name + "`");
}

bool DeploymentController::wait_idle(const std::string& name, std::chrono::milliseconds timeout) {
    std::unique_lock lock(impl_->mu);
    return impl_->cv.wait_for(lock, timeout, [&] {
        for (auto& [n, d] : impl_->deployments) {
            if (!name.empty() && n != name) continue;
            if (d->busy || (!d->paused && (d->rollout_requested || d->reconcile_requested)) ||
                (d->paused && d->scale_requested))
                return false;
        }
        return true;
    });
}

std::vector<DeploymentStatus> DeploymentController::list() const {
    std::lock_guard lock(impl_->mu);
    std::vector<DeploymentStatus> out;
    for (auto& [name, d] : impl_->deployments)
        out.push_back(impl_->status_locked(*d));
    return out;
}

std::optional<DeploymentStatus> DeploymentController::get(const std::string& name) const {
    std::lock_guard lock(impl_->mu);
    auto it = impl_->deployments.find(name);
    if (it == impl_->deployments.end()) return std::nullopt;
    return impl_->status_locked(*it->second);
}

std::vector<RouteSpec> DeploymentController::routes() const {
    std::lock_guard lock(impl_->mu);
    std::vector<RouteSpec> out;
    for (auto& [name, r] : impl_->routes)
        out.push_back(r);
    return out;
}

void DeploymentController::stop_all() {
    {
        std::lock_guard lock(impl_->mu);
        impl_->shutting_down = true;
    }
    auto ds = impl_->all_deployments();
    impl_->stop_workers(ds);
    std::vector<std::pair<Impl::DeploymentPtr, Impl::ReplicaPtr>> rs;
    {
        std::lock_guard lock(impl_->mu);
        for (auto& d : ds)
            for (auto& [id, r] : d->replicas)
                rs.emplace_back(d, r);
    }
    impl_->retire_all(rs);
    impl_->emit("deployment", "stopped " + std::to_string(rs.size()) + " replicas");
}

void DeploymentController::set_event_sink(
    std::function<void(const std::string& kind, const std::string& message)> sink) {
    std::lock_guard lock(impl_->sink_mu);
    impl_->sink = std::move(sink);
}

void DeploymentController::set_rollout_hook(std::function<void(const RolloutEvent& event)> hook) {
    std::lock_guard lock(impl_->sink_mu);
    impl_->rollout_hook = std::move(hook);
}

}  // namespace cascade::runtime

namespace cascade::runtime {

// ---- rollout operations ------------------------------------------------------------

namespace {

Error unknown_deployment(const std::string& name) {
    return Error("deployment " + name + " does not exist; `cascade get deployments` lists them");
}

}  // namespace

void DeploymentController::scale(const std::string& name, int replicas) {
    if (replicas < 0 || replicas > 1000)
        throw Error("scale " + name + ": replicas must be between 0 and 1000, not " +
                    std::to_string(replicas));
    Impl::DeploymentPtr d;
    {
        std::lock_guard lock(impl_->mu);
        auto it = impl_->deployments.find(name);
        if (it == impl_->deployments.end() || it->second->removing) throw unknown_deployment(name);
        d = it->second;
        d->spec.replicas = replicas;
        d->reconcile_requested = true;
        d->scale_requested = d->paused;  // at once even while paused (scale_paused)
        impl_->ensure_worker_locked(d);
        impl_->cv.notify_all();
    }
    impl_->persist(d, Durability::Full);
    impl_->emit("deployment", name + ": scaled to " + std::to_string(replicas) + " replicas");
}

void DeploymentController::pause(const std::string& name) {
    Impl::DeploymentPtr d;
    {
        std::lock_guard lock(impl_->mu);
        auto it = impl_->deployments.find(name);
        if (it == impl_->deployments.end() || it->second->removing) throw unknown_deployment(name);
        d = it->second;
        if (d->paused) return;
        d->paused = true;
        std::tie(d->phase, d->message) = Impl::settled_phase_locked(*d);
        impl_->cv.notify_all();
    }
    impl_->persist(d, Durability::Full);
    impl_->emit("rollout", name + ": paused (tag moves and spec changes wait for resume)");
}

void DeploymentController::resume(const std::string& name) {
    Impl::DeploymentPtr d;
    {
        std::lock_guard lock(impl_->mu);
        auto it = impl_->deployments.find(name);
        if (it == impl_->deployments.end() || it->second->removing) throw unknown_deployment(name);
        d = it->second;
        if (!d->paused) return;
        d->paused = false;
        std::tie(d->phase, d->message) = Impl::settled_phase_locked(*d);
        d->reconcile_requested = true;
        impl_->ensure_worker_locked(d);
        impl_->cv.notify_all();
    }
    impl_->persist(d, Durability::Full);
    impl_->emit("rollout", name + ": resumed");
}

void DeploymentController::restart(const std::string& name) {
    {
        std::lock_guard lock(impl_->mu);
        auto it = impl_->deployments.find(name);
        if (it == impl_->deployments.end() || it->second->removing) throw unknown_deployment(name);
        auto& d = it->second;
        if (d->revisions.empty())
            throw Error("rollout restart " + name +
                        ": the deployment has no revision yet (its image was never resolved)");
        auto& latest = d->revisions.back();
        d->forced = Impl::Request{"restart", latest.digest, latest.spec, true};
        d->rollout_requested = true;
        impl_->ensure_worker_locked(d);
        impl_->cv.notify_all();
    }
    impl_->emit("rollout", name + ": restart queued");
}

void DeploymentController::undo(const std::string& name, std::optional<int> to_revision) {
    RevisionInfo target;
    {
        std::lock_guard lock(impl_->mu);
        auto it = impl_->deployments.find(name);
        if (it == impl_->deployments.end() || it->second->removing) throw unknown_deployment(name);
        auto& revisions = it->second->revisions;
        if (to_revision) {
            auto r = std::find_if(revisions.begin(), revisions.end(), [&](const RevisionInfo& x) {
                return x.revision == *to_revision;
            });
            if (r == revisions.end())
                throw Error("rollout undo " + name + ": there is no revision " +
                            std::to_string(*to_revision) + "; `cascade rollout history " + name +
                            "` lists them");
            target = *r;
        } else {
            if (revisions.size() < 2)
                throw Error("rollout undo " + name +
                            ": there is no earlier revision to go back to; `cascade rollout "
                            "history " +
                            name + "` lists them");
            target = revisions[revisions.size() - 2];
        }
    }
    try {
        impl_->load_image(target.spec.image_repository, target.digest);
    } catch (const std::exception& e) {
        throw Error("rollout undo " + name + " to revision " + std::to_string(target.revision) +
                    ": " + e.what());
    }
    Impl::DeploymentPtr d;
    {
        std::lock_guard lock(impl_->mu);
        auto it = impl_->deployments.find(name);
        if (it == impl_->deployments.end() || it->second->removing) throw unknown_deployment(name);
        d = it->second;
        d->forced = Impl::Request{"undo to revision " + std::to_string(target.revision),
                                  target.digest, target.spec, false};
        // Asked for by name: no longer skipped as failed.
        std::erase(d->failed_digests, target.digest);
        d->rollout_requested = true;
        impl_->ensure_worker_locked(d);
        impl_->cv.notify_all();
    }
    impl_->persist(d, Durability::Full);
    impl_->emit("rollout", name + ": undo to revision " + std::to_string(target.revision) +
                               " queued (" + short_digest(target.digest) + ")");
}

void DeploymentController::retry(const std::string& name) {
    Impl::DeploymentPtr d;
    std::string tag;
    {
        std::lock_guard lock(impl_->mu);
        auto it = impl_->deployments.find(name);
        if (it == impl_->deployments.end() || it->second->removing) throw unknown_deployment(name);
        d = it->second;
        d->failed_digests.clear();
        d->forced = Impl::Request{"retry", std::nullopt, std::nullopt, false};
        tag = d->spec.image_repository + ":" + d->spec.image_tag;
        d->rollout_requested = true;
        impl_->ensure_worker_locked(d);
        impl_->cv.notify_all();
    }
    impl_->persist(d, Durability::Full);
    impl_->emit("rollout", name + ": failed digests forgotten, rollout of " + tag + " queued");
}

std::vector<RevisionInfo> DeploymentController::history(const std::string& name) const {
    std::lock_guard lock(impl_->mu);
    auto it = impl_->deployments.find(name);
    if (it == impl_->deployments.end()) throw unknown_deployment(name);
    return it->second->revisions;
}

std::filesystem::path DeploymentController::replica_log(const std::string& name,
                                                        std::optional<int> replica,
                                                        bool previous) const {
    std::lock_guard lock(impl_->mu);
    auto r = impl_->pick_replica_locked(name, replica);
    if (!previous) return impl_->host.log_path(r->id);
    if (r->previous_log.empty())
        throw Error("replica " + std::to_string(r->index) + " of deployment " + name + " (" +
                    r->id + ") has not restarted: there is no previous log");
    return r->previous_log;
}

int DeploymentController::exec(const std::string& name, std::optional<int> replica,
                               const std::vector<std::string>& argv, int stdout_fd, int stderr_fd) {
    if (argv.empty()) throw Error("exec in deployment " + name + ": no command given");
    std::string id;
    {
        std::lock_guard lock(impl_->mu);
        auto r = impl_->pick_replica_locked(name, replica);
        if (!Impl::probed(*r) && !r->killing)
            throw Error("replica " + std::to_string(r->index) + " of deployment " + name + " (" +
                        r->id + ") is " + r->state + ": nothing runs to exec in" +
                        (r->message.empty() ? std::string() : " (" + r->message + ")"));
        id = r->id;
    }
    return impl_->host.runc().exec(id, argv, stdout_fd, stderr_fd);
}

}  // namespace cascade::runtime
