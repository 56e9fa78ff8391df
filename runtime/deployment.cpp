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
#include "registry/store.hpp"
#include "runtime/container.hpp"
#include "runtime/deployment_records.hpp"
#include "runtime/exit_watcher.hpp"
#include "runtime/netns.hpp"
#include "runtime/rootfs.hpp"
#include "runtime/router.hpp"

namespace cascade::runtime {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr milliseconds kProbeInterval{100};
constexpr milliseconds kProbeConnectTimeout{1000};
constexpr milliseconds kBackendConnectTimeout{2000};
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

// The fields that define what a replica runs; a change makes a new revision.
bool template_changed(const DeploymentSpec& a, const DeploymentSpec& b) {
    return a.image_repository != b.image_repository || a.image_tag != b.image_tag ||
           a.container_port != b.container_port || a.env != b.env || a.args != b.args;
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
        // "creating", "starting", "ready", "exited", "restarting", "stopping"
        std::string state = "creating";
        int restarts = 0;
        int backoff_step = 0;
        int last_exit = 0;
        Clock::time_point started_at{}, restart_at{};
        std::shared_ptr<fs::Fd> netns;
        uint64_t watch_token = 0;
        bool in_router = false;
        int stop_signal = SIGTERM;
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
        std::thread worker;
        std::mutex persist_mu;  // orders writes of this deployment's row
    };
    using DeploymentPtr = std::shared_ptr<Deployment>;
    using ReplicaPtr = std::shared_ptr<Replica>;

    registry::Store& store;
    ContainerHost& host;
    Router& router;
    DeploymentRecords records;

    mutable std::mutex mu;
    std::condition_variable cv;
    std::map<std::string, DeploymentPtr> deployments;
    std::map<std::string, RouteSpec> routes;
    uint64_t next_token = 1;
    bool shutting_down = false;

    std::mutex sink_mu;
    std::function<void(const std::string&, const std::string&)> sink;

    std::unique_ptr<ExitWatcher> watcher;

    Impl(registry::Store& s, registry::Database& db, ContainerHost& h, Router& r)
        : store(s), host(h), router(r), records(db) {
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

    // ---- persistence --------------------------------------------------------

    void persist(const DeploymentPtr& d) {
        std::lock_guard order(d->persist_mu);
        DeploymentRecord rec;
        {
            std::lock_guard lock(mu);
            rec.spec = d->spec;
            rec.revision = d->revision;
            rec.digest = d->digest;
            rec.phase = d->phase;
            rec.message = d->message;
        }
        records.save_deployment(rec);
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
        }
        records.save_replica(rec);
    }

    void set_phase(const DeploymentPtr& d, const std::string& phase, const std::string& message) {
        {
            std::lock_guard lock(mu);
            d->phase = phase;
            d->message = message;
        }
        persist(d);
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

    static Backend backend_for(const std::string& route, const Replica& r) {
        auto netns = r.netns;
        uint16_t port = r.spec.container_port;
        return Backend{backend_id(route, r.id), [netns, port]() -> fs::Fd {
                           return connect_in_netns(netns->get(), port, kBackendConnectTimeout);
                       }};
    }

    // Both under `mu` (the router is a leaf: it never calls back into us).
    void add_to_router_locked(Replica& r) {
        if (r.in_router || !r.netns || r.spec.container_port == 0) return;
        for (auto& [name, route] : routes) {
            if (route.deployment != r.deployment) continue;
            try {
                router.add_backend(name, backend_for(name, r));
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

    int backoff_locked(Replica& r, Clock::time_point now) {
        if (r.started_at != Clock::time_point{} && now - r.started_at >= kStableRun)
            r.backoff_step = 0;
        auto delay =
            std::min<int64_t>(kMaxBackoff.count(), int64_t{1} << std::min(r.backoff_step, 5));
        ++r.backoff_step;
        r.restart_at = now + seconds(delay);
        return static_cast<int>(delay);
    }

    void on_exit(const std::string& id, uint64_t token, int status) {
        std::string message;
        std::filesystem::path log;
        {
            std::lock_guard lock(mu);
            ReplicaPtr r;
            for (auto& [name, d] : deployments) {
                auto it = d->replicas.find(id);
                if (it != d->replicas.end()) r = it->second;
            }
            if (!r || r->watch_token != token) return;
            if (r->state == "stopping" || r->state == "restarting" || r->state == "exited") return;
            remove_from_router_locked(*r);
            r->state = "exited";
            r->last_exit = status;
            int delay = backoff_locked(*r, Clock::now());
            message = r->deployment + ": replica " + r->id + " exited" +
                      (status >= 0 ? " with status " + std::to_string(status) : std::string()) +
                      "; restarting in " + std::to_string(delay) + "s";
            log = host.log_path(r->id);
            cv.notify_all();
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
    // replica is "starting" and watched.
    void launch(const ReplicaPtr& r, const Image& image) {
        std::string id;
        DeploymentSpec spec;
        {
            std::lock_guard lock(mu);
            id = r->id;
            spec = r->spec;
        }
        auto options = bundle_options(id, spec, image);
        int pid = host.start(id, image.manifest, image.config, options);
        uint64_t token;
        {
            std::lock_guard lock(mu);
            r->pid = pid;
            r->state = "starting";
            r->started_at = Clock::now();
            r->netns.reset();
            r->stop_signal = parse_stop_signal(image.config.config.stop_signal);
            token = r->watch_token = next_token++;
        }
        persist(r);
        watch(r, pid, token);
    }

    ReplicaPtr start_replica(const DeploymentPtr& d, const DeploymentSpec& spec, int revision,
                             const Image& image) {
        auto r = std::make_shared<Replica>();
        r->id = spec.name + "-" + std::to_string(revision) + "-" + random_suffix();
        r->deployment = spec.name;
        r->revision = revision;
        r->digest = image.digest;
        r->spec = spec;
        // The row exists before the container does: a crash never orphans one.
        persist(r);
        {
            std::lock_guard lock(mu);
            d->replicas[r->id] = r;
        }
        emit("replica", spec.name + ": starting replica " + r->id + " (revision " +
                            std::to_string(revision) + ", " + short_digest(image.digest) + ")");
        try {
            launch(r, image);
        } catch (const std::exception& e) {
            {
                std::lock_guard lock(mu);
                d->replicas.erase(r->id);
            }
            try {
                records.delete_replica(r->id);
            } catch (...) {
            }
            throw Error("deployment " + spec.name + ": starting replica " + r->id + " of " +
                        spec.image_repository + "@" + image.digest.str() + " failed: " + e.what());
        }
        return r;
    }

    // An exited replica comes back as a new container of the same revision
    // (a fresh id, so the old bundle can go entirely); its restart count and
    // backoff carry over.
    void restart(const DeploymentPtr& d, const ReplicaPtr& r) {
        std::string old_id, new_id;
        DeploymentSpec spec;
        oci::Digest digest;
        {
            std::lock_guard lock(mu);
            if (r->state != "exited") return;
            r->state = "restarting";
            old_id = r->id;
            spec = r->spec;
            digest = r->digest;
        }
        new_id = spec.name + "-" + std::to_string(r->revision) + "-" + random_suffix();
        try {
            host.remove(old_id);
            {
                std::lock_guard lock(mu);
                d->replicas.erase(old_id);
                r->id = new_id;
                ++r->restarts;
                d->replicas[new_id] = r;
            }
            persist(r);  // the new row before the new container
            records.delete_replica(old_id);
            emit("replica", spec.name + ": restarting replica " + old_id + " as " + new_id);
            launch(r, load_image(spec.image_repository, digest));
        } catch (const std::exception& e) {
            int delay;
            {
                std::lock_guard lock(mu);
                r->state = "exited";
                delay = backoff_locked(*r, Clock::now());
            }
            emit("replica", spec.name + ": restarting replica " + old_id + " failed: " + e.what() +
                                "; retrying in " + std::to_string(delay) + "s");
        }
    }

    // One readiness probe: a connection to the container port inside the
    // replica's network namespace.
    void probe(const ReplicaPtr& r) {
        int pid;
        uint16_t port;
        std::shared_ptr<fs::Fd> netns;
        {
            std::lock_guard lock(mu);
            if (r->state != "starting") return;
            pid = r->pid;
            port = r->spec.container_port;
            netns = r->netns;
        }
        if (!netns) {
            try {
                netns = std::make_shared<fs::Fd>(open_netns(pid));
            } catch (...) {
                return;  // gone: the exit watcher reports it
            }
        }
        bool ready = port == 0 ||
                     static_cast<bool>(connect_in_netns(netns->get(), port, kProbeConnectTimeout));
        std::string message;
        {
            std::lock_guard lock(mu);
            if (r->state != "starting" || r->pid != pid) return;
            r->netns = netns;
            if (!ready) return;
            r->state = "ready";
            add_to_router_locked(*r);
            message = r->deployment + ": replica " + r->id + " is ready";
            cv.notify_all();
        }
        emit("replica", message);
    }

    // Restarts replicas whose backoff passed and probes starting ones.
    void pump(const DeploymentPtr& d) {
        std::vector<ReplicaPtr> due, starting;
        auto now = Clock::now();
        {
            std::lock_guard lock(mu);
            for (auto& [id, r] : d->replicas) {
                if (r->state == "exited" && r->restart_at <= now) due.push_back(r);
                if (r->state == "starting") starting.push_back(r);
            }
        }
        for (auto& r : due)
            restart(d, r);
        for (auto& r : starting)
            probe(r);
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
            cv.wait_until(lock, std::min(deadline, Clock::now() + kProbeInterval),
                          [&] { return d->stop; });
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
            records.delete_replica(id);
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

    void fail(const DeploymentPtr& d, const std::string& message) {
        set_phase(d, "Failed", message);
        emit("rollout", d->name + ": " + message);
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
        if (state == "exited" || state == "restarting")
            msg += " keeps exiting";
        else
            msg += " did not accept connections on port " + std::to_string(spec.container_port);
        msg += " within " + std::to_string(spec.strategy.timeout.count()) +
               "s; the previous replicas keep serving";
        if (!tail.empty()) msg += "; its last output: " + tail;
        return msg;
    }

    // Brings the deployment to spec.replicas ready replicas of `revision`,
    // replacing the others one at a time: start new → ready → into the
    // router → old out of the router → drained → stopped.
    void roll_to(const DeploymentPtr& d, const DeploymentSpec& spec, int revision,
                 const Image& image) {
        std::vector<ReplicaPtr> old;
        std::vector<ReplicaPtr> current;
        {
            std::lock_guard lock(mu);
            for (auto& [id, r] : d->replicas) {
                if (r->state == "stopping") continue;
                (r->revision == revision ? current : old).push_back(r);
            }
        }
        // Replicas that do not serve go first; then the oldest revisions.
        auto order = [](const ReplicaPtr& a, const ReplicaPtr& b) {
            bool ar = a->state == "ready", br = b->state == "ready";
            if (ar != br) return !ar;
            return a->revision < b->revision;
        };
        {
            std::lock_guard lock(mu);
            std::stable_sort(old.begin(), old.end(), order);
            std::stable_sort(current.begin(), current.end(), order);
        }
        int want = spec.replicas;
        // Too many of this revision (scaled down): the extra ones go.
        while (static_cast<int>(current.size()) > want) {
            retire(d, current.front(), spec.stop_grace);
            current.erase(current.begin());
        }
        int have = static_cast<int>(current.size());

        if (old.empty() && have < want) {
            // Nothing to replace: start what is missing at once.
            std::vector<ReplicaPtr> started;
            for (; have < want; ++have) {
                try {
                    started.push_back(start_replica(d, spec, revision, image));
                } catch (const std::exception& e) {
                    fail(d, e.what());
                    return;
                }
            }
            auto unready = wait_ready(d, started, spec.strategy.timeout);
            if (stopping(d)) return;
            if (!unready.empty()) {
                auto msg = not_ready_message(unready.front(), revision, image, spec);
                for (auto& r : unready)
                    retire(d, r, spec.stop_grace);
                fail(d, msg);
                return;
            }
        }
        while (have < want || !old.empty()) {
            if (stopping(d)) return;
            if (have < want) {
                ReplicaPtr r;
                try {
                    r = start_replica(d, spec, revision, image);
                } catch (const std::exception& e) {
                    fail(d, e.what());
                    return;
                }
                auto unready = wait_ready(d, {r}, spec.strategy.timeout);
                if (stopping(d)) return;
                if (!unready.empty()) {
                    auto msg = not_ready_message(r, revision, image, spec);
                    retire(d, r, spec.stop_grace);
                    fail(d, msg);
                    return;
                }
                ++have;
            }
            if (!old.empty()) {
                retire(d, old.front(), spec.stop_grace);
                old.erase(old.begin());
            }
        }
        // Re-adopted or restarted replicas of this revision: wait until they serve.
        std::vector<ReplicaPtr> all;
        {
            std::lock_guard lock(mu);
            for (auto& [id, r] : d->replicas)
                if (r->state != "stopping") all.push_back(r);
        }
        wait_ready(d, all, spec.strategy.timeout);
        if (stopping(d)) return;
        set_phase(d, "Running", "");
    }

    bool stopping(const DeploymentPtr& d) {
        std::lock_guard lock(mu);
        return d->stop;
    }

    // A rollout request: the tag moved or the spec changed.
    void rollout(const DeploymentPtr& d, bool spec_changed) {
        DeploymentSpec spec;
        std::optional<oci::Digest> current;
        int revision;
        std::string phase;
        {
            std::lock_guard lock(mu);
            spec = d->spec;
            current = d->digest;
            revision = d->revision;
            phase = d->phase;
            spec_changed = spec_changed || d->template_pending;
            d->template_pending = spec_changed;
        }
        std::optional<Image> image;
        try {
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
        if (!spec_changed && current && *current == image->digest) {
            // Already there (e.g. an event for a digest rolled out meanwhile).
            if (phase != "Failed") roll_to(d, spec, revision, *image);
            return;
        }
        int next = revision + 1;
        {
            std::lock_guard lock(mu);
            d->revision = next;
            d->digest = image->digest;
            d->template_pending = false;
            d->phase = "RollingOut";
            d->message =
                "rolling out revision " + std::to_string(next) + " (" + image->digest.str() + ")";
        }
        persist(d);
        emit("rollout", spec.name + ": rollout to revision " + std::to_string(next) + " (" +
                            short_digest(image->digest) + ") started");
        roll_to(d, spec, next, *image);
        bool done;
        {
            std::lock_guard lock(mu);
            done = d->phase == "Running" && d->revision == next;
        }
        if (done)
            emit("rollout", spec.name + ": rollout to revision " + std::to_string(next) +
                                " complete (" + std::to_string(spec.replicas) + " replicas)");
    }

    // After apply (unchanged template), recover or a restart of the worker:
    // first start, a rollout that was interrupted, scaling.
    void reconcile(const DeploymentPtr& d) {
        DeploymentSpec spec;
        std::optional<oci::Digest> digest;
        int revision;
        std::string phase;
        {
            std::lock_guard lock(mu);
            spec = d->spec;
            digest = d->digest;
            revision = d->revision;
            phase = d->phase;
        }
        if (!digest || phase == "Waiting for image") {
            rollout(d, false);
            return;
        }
        if (phase == "Failed") {
            // Keep what serves; a new tag or spec starts the next rollout.
            std::vector<ReplicaPtr> all;
            {
                std::lock_guard lock(mu);
                for (auto& [id, r] : d->replicas)
                    all.push_back(r);
            }
            wait_ready(d, all, spec.strategy.timeout);
            return;
        }
        Image image;
        try {
            image = load_image(spec.image_repository, *digest);
        } catch (const std::exception& e) {
            fail(d, e.what());
            return;
        }
        roll_to(d, spec, revision, image);
    }

    // ---- the worker ---------------------------------------------------------

    void run_worker(const DeploymentPtr& d) {
        auto next_probe = Clock::now();
        while (true) {
            bool do_rollout = false, spec_changed = false, do_reconcile = false;
            {
                std::unique_lock lock(mu);
                while (true) {
                    if (d->stop) return;
                    if (d->rollout_requested || d->reconcile_requested) break;
                    auto now = Clock::now();
                    auto wake = Clock::time_point::max();
                    bool due = false;
                    for (auto& [id, r] : d->replicas) {
                        if (r->state == "starting") {
                            due = due || now >= next_probe;
                            wake = std::min(wake, next_probe);
                        } else if (r->state == "exited") {
                            due = due || r->restart_at <= now;
                            wake = std::min(wake, r->restart_at);
                        }
                    }
                    if (due) break;
                    if (wake == Clock::time_point::max())
                        cv.wait(lock);
                    else
                        cv.wait_until(lock, wake);
                }
                do_rollout = d->rollout_requested;
                spec_changed = d->spec_changed;
                do_reconcile = d->reconcile_requested;
                d->rollout_requested = d->spec_changed = d->reconcile_requested = false;
                d->busy = do_rollout || do_reconcile;
            }
            try {
                pump(d);
                next_probe = Clock::now() + kProbeInterval;
                if (do_rollout)
                    rollout(d, spec_changed);
                else if (do_reconcile)
                    reconcile(d);
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
        for (auto& [id, r] : d.replicas) {
            ReplicaStatus rs;
            rs.container_id = r->id;
            rs.revision = r->revision;
            rs.image_digest = r->digest;
            rs.pid = r->pid;
            rs.state = r->state == "creating" ? "starting" : r->state;
            rs.restarts = r->restarts;
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
            std::lock_guard lock(mu);
            if (deployments.count(rec.spec.name)) continue;
            auto d = std::make_shared<Deployment>();
            d->name = rec.spec.name;
            d->spec = rec.spec;
            d->revision = rec.revision;
            d->digest = rec.digest;
            d->phase = rec.phase.empty() ? "Pending" : rec.phase;
            d->message = rec.message;
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
                r->pid = state->pid;
                r->state = "starting";
                r->started_at = Clock::now();
                uint64_t token;
                {
                    std::lock_guard lock(mu);
                    token = r->watch_token = next_token++;
                    d->replicas[r->id] = r;
                }
                try {
                    r->stop_signal = parse_stop_signal(
                        load_image(r->spec.image_repository, r->digest).config.config.stop_signal);
                } catch (...) {
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
                records.delete_replica(rec.container_id);
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

void DeploymentController::apply(const DeploymentSpec& spec) {
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
    impl_->persist(d);
    if (!event.empty()) impl_->emit("deployment", event);
}

void DeploymentController::apply_route(const RouteSpec& input) {
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
    impl_->records.save_route(route);
    {
        std::lock_guard lock(impl_->mu);
        bool same_deployment = previous && previous->deployment == route.deployment;
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
                        impl_->router.add_backend(route.name, Impl::backend_for(route.name, *r));
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
    std::vector<std::string> queued;
    {
        std::lock_guard lock(impl_->mu);
        for (auto& [name, d] : impl_->deployments) {
            if (d->spec.image_repository != event.repository || d->spec.image_tag != event.tag)
                continue;
            // A deployment that waits for its first image starts even when
            // it does not follow the tag.
            if (!d->spec.automatic && d->digest) continue;
            if (d->removing) continue;
            d->rollout_requested = true;
            impl_->ensure_worker_locked(d);
            queued.push_back(name);
        }
        if (!queued.empty()) impl_->cv.notify_all();
    }
    for (auto& name : queued)
        impl_->emit("rollout", name + ": " + event.repository + ":" + event.tag + " moved to " +
                                   short_digest(event.new_digest) + ", rollout queued");
}

bool DeploymentController::wait_idle(const std::string& name, std::chrono::milliseconds timeout) {
    std::unique_lock lock(impl_->mu);
    return impl_->cv.wait_for(lock, timeout, [&] {
        for (auto& [n, d] : impl_->deployments) {
            if (!name.empty() && n != name) continue;
            if (d->busy || d->rollout_requested || d->reconcile_requested) return false;
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

}  // namespace cascade::runtime

namespace cascade::runtime {

// Being implemented (issue 6): the rollout operations.
void DeploymentController::scale(const std::string&, int) {
    throw Error("scale: not yet");
}
void DeploymentController::pause(const std::string&) {
    throw Error("rollout pause: not yet");
}
void DeploymentController::resume(const std::string&) {
    throw Error("rollout resume: not yet");
}
void DeploymentController::restart(const std::string&) {
    throw Error("rollout restart: not yet");
}
void DeploymentController::undo(const std::string&, std::optional<int>) {
    throw Error("rollout undo: not yet");
}
void DeploymentController::retry(const std::string&) {
    throw Error("rollout retry: not yet");
}
std::vector<RevisionInfo> DeploymentController::history(const std::string&) const {
    return {};
}
std::filesystem::path DeploymentController::replica_log(const std::string&, std::optional<int>,
                                                        bool) const {
    throw Error("logs: not yet");
}
int DeploymentController::exec(const std::string&, std::optional<int>,
                               const std::vector<std::string>&, int, int) {
    throw Error("exec: not yet");
}

}  // namespace cascade::runtime
