// Deployments with real runc containers, a real registry store and real HTTP
// through the router: start, rolling replacement without failed requests,
// restart of a killed replica, re-adoption after a controller restart, a
// rollout whose new image never becomes ready, a deployment waiting for its
// image. Plus the exit watcher and the persistence on their own.
#include "runtime/deployment.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "oci/error.hpp"
#include "oci/fs.hpp"
#include "oci/image.hpp"
#include "registry/blob_store.hpp"
#include "registry/database.hpp"
#include "registry/store.hpp"
#include "runtime/container.hpp"
#include "runtime/deployment_records.hpp"
#include "runtime/exit_watcher.hpp"
#include "runtime/rootfs.hpp"
#include "runtime/router.hpp"
#include "runtime/runc.hpp"
#include "tests/runtime/rollout_support.hpp"
#include "tests/support/support.hpp"

namespace cascade::runtime {
namespace {

namespace stdfs = std::filesystem;
using namespace std::chrono_literals;

using namespace rollout_testing;

std::optional<std::string> fetch(uint16_t port) {
    auto r = test::http_get(port, "/", "127.0.0.1", 5s);
    if (!r || r->status != 200) return std::nullopt;
    return r->body;
}

// A client that requests the route in a loop (bounded) until stopped.
class Poller {
  public:
    explicit Poller(uint16_t port) {
        thread_ = std::thread([this, port] {
            for (int i = 0; i < 200000 && !stop_; ++i) {
                auto r = test::http_get(port, "/", "127.0.0.1", 10s);
                std::lock_guard lock(mu_);
                if (r && r->status == 200) {
                    ++ok_;
                    bodies_.insert(r->body);
                } else {
                    ++failed_;
                    if (failures_.size() < 5)
                        failures_.push_back(r ? "status " + std::to_string(r->status) + ": " +
                                                    r->body
                                              : "connection failed");
                }
            }
        });
    }
    ~Poller() { stop(); }
    void stop() {
        stop_ = true;
        if (thread_.joinable()) thread_.join();
    }
    int ok() const {
        std::lock_guard lock(mu_);
        return ok_;
    }
    int failed() const {
        std::lock_guard lock(mu_);
        return failed_;
    }
    std::string failures() const {
        std::lock_guard lock(mu_);
        std::string s;
        for (auto& f : failures_)
            s += f + "; ";
        return s;
    }
    std::set<std::string> bodies() const {
        std::lock_guard lock(mu_);
        return bodies_;
    }

  private:
    std::atomic<bool> stop_{false};
    mutable std::mutex mu_;
    int ok_ = 0, failed_ = 0;
    std::vector<std::string> failures_;
    std::set<std::string> bodies_;
    std::thread thread_;
};

class DeploymentTest : public StackTest {
  protected:
    // The strategy's default pacing (StackTest's spec paces rollouts faster).
    static DeploymentSpec web_spec(const std::string& repo, int replicas = 2) {
        auto spec = StackTest::web_spec(repo, replicas);
        spec.strategy.interval = RolloutStrategy{}.interval;
        spec.strategy.update_period = RolloutStrategy{}.update_period;
        return spec;
    }

    uint16_t add_route(const std::string& deployment) {
        RouteSpec route;
        route.name = deployment + "-route";
        route.deployment = deployment;
        route.port = test::free_port();
        controller().apply_route(route);
        return route.port;
    }
};

TEST_F(DeploymentTest, RollsOutANewImageWithoutAFailedRequest) {
    auto v1 = push_image(stack_->store, "web", "latest", "version-1", kHttpd);
    controller().apply(web_spec("web"));
    auto port = add_route("web");
    ASSERT_TRUE(controller().wait_idle("web", 120s));

    auto status = controller().get("web");
    ASSERT_TRUE(status);
    EXPECT_EQ(status->phase, "Running") << status->message;
    EXPECT_EQ(status->revision, 1);
    EXPECT_EQ(status->image, v1);
    ASSERT_TRUE(all_ready(*status, 1, 2));
    for (auto& r : status->replicas) {
        EXPECT_EQ(r.image_digest, v1);
        EXPECT_EQ(r.container_id.rfind("web-1-", 0), 0u) << r.container_id;
        EXPECT_EQ(r.container_id.size(), std::string("web-1-").size() + 5);
    }
    auto body = fetch(port);
    ASSERT_TRUE(body);
    EXPECT_NE(body->find("version-1"), std::string::npos) << *body;
    std::vector<std::string> old_ids;
    for (auto& r : status->replicas)
        old_ids.push_back(r.container_id);

    Poller poller(port);
    ASSERT_TRUE(test::eventually([&] { return poller.ok() > 0; }, 30s));
    auto v2 = push_image(stack_->store, "web", "latest", "version-2", kHttpd);
    ASSERT_NE(v1, v2);
    ASSERT_TRUE(controller().wait_idle("web", 180s));
    // Let the client see the new version for a while, then stop it.
    ASSERT_TRUE(test::eventually([&] { return poller.bodies().size() >= 2; }, 30s));
    poller.stop();
    EXPECT_EQ(poller.failed(), 0) << poller.failures();
    EXPECT_GT(poller.ok(), 0);
    if (getenv("CASCADE_TEST_EVENTS")) std::cerr << poller.ok() << " requests answered\n";

    status = controller().get("web");
    ASSERT_TRUE(status);
    EXPECT_EQ(status->phase, "Running") << status->message;
    EXPECT_EQ(status->revision, 2);
    EXPECT_EQ(status->image, v2);
    ASSERT_TRUE(all_ready(*status, 2, 2));
    for (auto& r : status->replicas)
        EXPECT_EQ(r.image_digest, v2);
    for (auto& id : old_ids)
        EXPECT_FALSE(stack_->host.state(id)) << "old replica " << id << " still exists";
    EXPECT_EQ(runc_containers(), 2);
    for (int i = 0; i < 10; ++i) {
        auto b = fetch(port);
        ASSERT_TRUE(b);
        EXPECT_NE(b->find("version-2"), std::string::npos) << *b;
    }
}

TEST_F(DeploymentTest, RestartsAKilledReplicaWhileTheRouteKeepsAnswering) {
    push_image(stack_->store, "web", "latest", "version-1", kHttpd);
    controller().apply(web_spec("web"));
    auto port = add_route("web");
    ASSERT_TRUE(controller().wait_idle("web", 120s));
    auto status = controller().get("web");
    ASSERT_TRUE(status && all_ready(*status, 1, 2));
    auto victim = status->replicas.front();
    auto survivor = status->replicas.back();

    ASSERT_EQ(kill(victim.pid, SIGKILL), 0);
    // Once the exit is noticed (a connection accepted in the instant of the
    // kill may still be reset), the other replica answers every request.
    ASSERT_TRUE(test::eventually(
        [&] {
            auto s = controller().get("web");
            return s && s->ready < 2;
        },
        30s));
    for (int i = 0; i < 20; ++i)
        ASSERT_TRUE(fetch(port)) << "request " << i << " after the kill failed";

    ASSERT_TRUE(test::eventually(
        [&] {
            auto s = controller().get("web");
            if (!s || !all_ready(*s, 1, 2)) return false;
            int restarts = 0;
            for (auto& r : s->replicas)
                restarts += r.restarts;
            return restarts == 1;
        },
        60s));
    status = controller().get("web");
    std::set<std::string> ids;
    for (auto& r : status->replicas)
        ids.insert(r.container_id);
    EXPECT_FALSE(ids.count(victim.container_id)) << "the killed container was not replaced";
    EXPECT_TRUE(ids.count(survivor.container_id));
    EXPECT_FALSE(stack_->host.state(victim.container_id));
    EXPECT_EQ(runc_containers(), 2);
    for (int i = 0; i < 10; ++i)
        ASSERT_TRUE(fetch(port));
}

TEST_F(DeploymentTest, RecoverReadoptsRunningReplicasAndReplacesDeadOnes) {
    push_image(stack_->store, "web", "latest", "version-1", kHttpd);
    controller().apply(web_spec("web"));
    auto port = add_route("web");
    ASSERT_TRUE(controller().wait_idle("web", 120s));
    auto status = controller().get("web");
    ASSERT_TRUE(status && all_ready(*status, 1, 2));
    auto kept = status->replicas[0];
    auto dead = status->replicas[1];

    // An orphan: a container under our runc root that no replica row knows.
    auto rec = stack_->store.resolve("web", "latest");
    ASSERT_TRUE(rec);
    auto manifest = oci::parse_manifest(stack_->store.manifest_bytes(*rec));
    auto config = oci::parse_config(stack_->blobs.read(manifest.config.digest));
    BundleOptions orphan_options = options_from_image(config.config);
    stack_->host.start("orphan-1", manifest, config, orphan_options);

    // The "daemon" goes away; its containers keep running.
    stack_.reset();
    for (auto* r : {&kept, &dead}) {
        auto st = Runc(root() / "runc").state(r->container_id);
        ASSERT_TRUE(st && st->status == "running") << r->container_id;
    }
    // One replica dies while nobody watches.
    ASSERT_EQ(kill(dead.pid, SIGKILL), 0);
    ASSERT_TRUE(test::eventually(
        [&] {
            auto st = Runc(root() / "runc").state(dead.container_id);
            return !st || st->status == "stopped";
        },
        30s));

    stack_ = std::make_unique<Stack>(root());
    controller().recover();
    ASSERT_TRUE(controller().wait_idle("", 120s));

    status = controller().get("web");
    ASSERT_TRUE(status);
    EXPECT_EQ(status->phase, "Running") << status->message;
    ASSERT_TRUE(all_ready(*status, 1, 2));
    std::set<std::string> ids;
    for (auto& r : status->replicas)
        ids.insert(r.container_id);
    EXPECT_TRUE(ids.count(kept.container_id)) << "the running replica was not re-adopted";
    EXPECT_FALSE(ids.count(dead.container_id)) << "the dead replica was not replaced";
    EXPECT_FALSE(stack_->host.state(dead.container_id));
    EXPECT_FALSE(stack_->host.state("orphan-1")) << "the orphan container was not removed";
    EXPECT_FALSE(stdfs::exists(stack_->host.bundle_dir("orphan-1")));
    EXPECT_EQ(runc_containers(), 2);
    ASSERT_EQ(controller().routes().size(), 1u);
    EXPECT_EQ(controller().routes()[0].port, port);
    for (int i = 0; i < 10; ++i) {
        auto b = fetch(port);
        ASSERT_TRUE(b) << "request " << i << " through the recovered route failed";
        EXPECT_NE(b->find("version-1"), std::string::npos);
    }

    // A second recover on the same state adopts nothing twice.
    stack_.reset();
    stack_ = std::make_unique<Stack>(root());
    controller().recover();
    ASSERT_TRUE(controller().wait_idle("", 120s));
    status = controller().get("web");
    ASSERT_TRUE(status && all_ready(*status, 1, 2));
    EXPECT_EQ(runc_containers(), 2);
}

TEST_F(DeploymentTest, ARolloutWhoseReplicaNeverBecomesReadyFailsAndTheOldOnesKeepServing) {
    auto v1 = push_image(stack_->store, "web", "latest", "version-1", kHttpd);
    auto spec = web_spec("web");
    spec.strategy.timeout = 3s;
    controller().apply(spec);
    auto port = add_route("web");
    ASSERT_TRUE(controller().wait_idle("web", 120s));
    ASSERT_TRUE(all_ready(*controller().get("web"), 1, 2));

    Poller poller(port);
    push_image(stack_->store, "web", "latest", "version-2-silent", kNeverListens);
    ASSERT_TRUE(controller().wait_idle("web", 120s));
    poller.stop();
    EXPECT_EQ(poller.failed(), 0) << poller.failures();

    // Rolled back automatically: revision 1's digest and template as revision 3,
    // its replicas kept.
    auto status = controller().get("web");
    ASSERT_TRUE(status);
    EXPECT_EQ(status->phase, "Failed");
    EXPECT_NE(status->message.find("revision 2"), std::string::npos) << status->message;
    EXPECT_NE(status->message.find("8080"), std::string::npos) << status->message;
    EXPECT_NE(status->message.find("rolled back to revision 1"), std::string::npos)
        << status->message;
    EXPECT_EQ(status->revision, 3);
    ASSERT_TRUE(all_ready(*status, 3, 2));
    for (auto& r : status->replicas)
        EXPECT_EQ(r.image_digest, v1);
    EXPECT_EQ(runc_containers(), 2) << "the unready replica was not removed";
    auto body = fetch(port);
    ASSERT_TRUE(body);
    EXPECT_NE(body->find("version-1"), std::string::npos);

    // The next good image rolls out again.
    auto v3 = push_image(stack_->store, "web", "latest", "version-3", kHttpd);
    ASSERT_TRUE(controller().wait_idle("web", 120s));
    status = controller().get("web");
    EXPECT_EQ(status->phase, "Running") << status->message;
    EXPECT_EQ(status->revision, 4);
    EXPECT_EQ(status->image, v3);
    ASSERT_TRUE(all_ready(*status, 4, 2));
}

TEST_F(DeploymentTest, WaitsForItsImageThenRollsOutSpecChanges) {
    auto spec = web_spec("later", 1);
    controller().apply(spec);
    auto port = add_route("web");
    ASSERT_TRUE(controller().wait_idle("web", 30s));
    auto status = controller().get("web");
    ASSERT_TRUE(status);
    EXPECT_EQ(status->phase, "Waiting for image");
    EXPECT_TRUE(status->replicas.empty());
    EXPECT_FALSE(fetch(port)) << "a route without replicas answered";

    auto v1 = push_image(stack_->store, "later", "latest", "version-1", kHttpd);
    ASSERT_TRUE(controller().wait_idle("web", 120s));
    status = controller().get("web");
    EXPECT_EQ(status->phase, "Running") << status->message;
    EXPECT_EQ(status->image, v1);
    ASSERT_TRUE(all_ready(*status, 1, 1));
    ASSERT_TRUE(fetch(port));

    // A changed spec (same image) is a new revision; scaling is not.
    spec.env = {"GREETING=hello"};
    controller().apply(spec);
    ASSERT_TRUE(controller().wait_idle("web", 120s));
    status = controller().get("web");
    EXPECT_EQ(status->revision, 2);
    ASSERT_TRUE(all_ready(*status, 2, 1));
    spec.replicas = 2;
    controller().apply(spec);
    ASSERT_TRUE(controller().wait_idle("web", 120s));
    status = controller().get("web");
    EXPECT_EQ(status->revision, 2);
    ASSERT_TRUE(all_ready(*status, 2, 2));
    EXPECT_EQ(runc_containers(), 2);

    controller().remove("web");
    EXPECT_FALSE(controller().get("web"));
    EXPECT_EQ(runc_containers(), 0);
}

// ---- pieces without runc ---------------------------------------------------------

// ---- supervision: probes, restart policy, crash loops, logs, exec ----------

// Runs `argv` in replica `index` of `name`; its exit status and output.
std::pair<int, std::string> exec_in(DeploymentController& c, const std::string& name,
                                    std::optional<int> index,
                                    const std::vector<std::string>& argv) {
    fs::TempDir tmp;
    auto path = tmp.path() / "out";
    auto out = fs::open_or_throw(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int code = c.exec(name, index, argv, out.get(), out.get());
    return {code, fs::read_file(path)};
}

std::optional<ReplicaStatus> replica(DeploymentController& c, const std::string& name, int index) {
    auto s = c.get(name);
    if (!s) return std::nullopt;
    for (auto& r : s->replicas)
        if (r.index == index && r.state != "stopping") return r;
    return std::nullopt;
}

TEST_F(DeploymentTest, AReplicaFailingReadinessLeavesTheRouterUntilItPassesAgain) {
    push_image(stack_->store, "web", "latest", "version-1", kHttpd);
    auto spec = web_spec("web");
    spec.readiness.kind = ProbeSpec::Kind::Http;
    spec.readiness.port = 8080;
    spec.readiness.path = "/index.html";
    spec.readiness.period = 200ms;
    spec.readiness.failure_threshold = 2;
    controller().apply(spec);
    auto port = add_route("web");
    ASSERT_TRUE(controller().wait_idle("web", 120s));
    auto status = controller().get("web");
    ASSERT_TRUE(status && all_ready(*status, 1, 2)) << (status ? status->message : "");
    std::set<int> indexes;
    for (auto& r : status->replicas)
        indexes.insert(r.index);
    EXPECT_EQ(indexes, (std::set<int>{0, 1}));
    ASSERT_EQ(stack_->router.backends("web-route").size(), 2u);

    // exec: output and exit status come back.
    auto [code, out] =
        exec_in(controller(), "web", 0, {"/bin/busybox", "sh", "-c", "echo in-replica; exit 5"});
    EXPECT_EQ(code, 5);
    EXPECT_EQ(out, "in-replica\n");
    EXPECT_THROW(exec_in(controller(), "web", 7, {"/bin/busybox", "true"}), Error);
    EXPECT_THROW(exec_in(controller(), "nope", 0, {"/bin/busybox", "true"}), Error);

    // Replica 0's page goes away: its readiness probe fails (404).
    auto sick = replica(controller(), "web", 0);
    ASSERT_TRUE(sick);
    EXPECT_EQ(
        exec_in(controller(), "web", 0, {"/bin/busybox", "mv", "/www/index.html", "/www/away.html"})
            .first,
        0);
    ASSERT_TRUE(test::eventually(
        [&] {
            auto r = replica(controller(), "web", 0);
            return r && r->state == "unready";
        },
        30s));
    auto r0 = replica(controller(), "web", 0);
    EXPECT_NE(r0->message.find("404"), std::string::npos) << r0->message;
    auto backends = stack_->router.backends("web-route");
    ASSERT_EQ(backends.size(), 1u);
    EXPECT_EQ(backends[0].find(sick->container_id), std::string::npos) << backends[0];
    // Only the healthy replica answers.
    for (int i = 0; i < 6; ++i) {
        auto body = fetch(port);
        ASSERT_TRUE(body) << "request " << i;
        EXPECT_NE(body->find("version-1"), std::string::npos) << *body;
    }
    EXPECT_EQ(controller().get("web")->ready, 1);
    EXPECT_EQ(r0->container_id, sick->container_id) << "an unready replica is not restarted";

    // Back: ready again and back in the router.
    EXPECT_EQ(
        exec_in(controller(), "web", 0, {"/bin/busybox", "mv", "/www/away.html", "/www/index.html"})
            .first,
        0);
    ASSERT_TRUE(test::eventually(
        [&] {
            auto r = replica(controller(), "web", 0);
            return r && r->state == "ready";
        },
        30s));
    EXPECT_EQ(stack_->router.backends("web-route").size(), 2u);
    EXPECT_EQ(replica(controller(), "web", 0)->restarts, 0);
}

TEST_F(DeploymentTest, AFailingLivenessProbeRestartsTheReplicaAndKeepsItsPreviousLog) {
    push_image(stack_->store, "web", "latest", "version-1", kHttpd);
    auto spec = web_spec("web", 1);
    spec.args = {"/bin/busybox", "sh", "-c",
                 "echo started $(/bin/busybox hostname); exec /bin/busybox httpd -f -p 8080 -h "
                 "/www"};
    spec.liveness.kind = ProbeSpec::Kind::Exec;
    spec.liveness.command = {"/bin/busybox", "sh", "-c", "test ! -e /www/sick"};
    spec.liveness.period = 200ms;
    spec.liveness.timeout = 5s;
    spec.liveness.failure_threshold = 2;
    controller().apply(spec);
    ASSERT_TRUE(controller().wait_idle("web", 120s));
    auto before = replica(controller(), "web", 0);
    ASSERT_TRUE(before && before->state == "ready");
    EXPECT_THROW(controller().replica_log("web", 0, true), Error) << "no restart yet";
    auto first_log = controller().replica_log("web", std::nullopt, false);
    EXPECT_EQ(first_log, stack_->host.log_path(before->container_id));

    EXPECT_EQ(exec_in(controller(), "web", 0, {"/bin/busybox", "touch", "/www/sick"}).first, 0);
    ASSERT_TRUE(test::eventually(
        [&] {
            auto r = replica(controller(), "web", 0);
            return r && r->restarts == 1 && r->state == "ready";
        },
        60s))
        << stack_->event_log();
    auto after = replica(controller(), "web", 0);
    EXPECT_NE(after->container_id, before->container_id);
    EXPECT_FALSE(stack_->host.state(before->container_id)) << "the killed container is gone";
    EXPECT_NE(after->last_exit, 0);

    auto previous = controller().replica_log("web", 0, true);
    auto current = controller().replica_log("web", 0, false);
    EXPECT_NE(fs::read_file(previous).find("started " + before->container_id), std::string::npos)
        << previous;
    ASSERT_TRUE(test::eventually(
        [&] {
            return fs::read_file(current).find("started " + after->container_id) !=
                   std::string::npos;
        },
        10s))
        << current;
    auto event_log = stack_->event_log();
    EXPECT_NE(event_log.find("liveness probe failed"), std::string::npos) << event_log;

    // The previous log goes with the replica.
    controller().remove("web");
    EXPECT_FALSE(stdfs::exists(previous)) << previous;
}

TEST_F(DeploymentTest, RestartPolicyOnFailureRestartsOnlyFailuresAndNeverKeepsItDown) {
    push_image(stack_->store, "job", "latest", "version-1", kNeverListens);
    auto job = [&](const std::string& name, RestartPolicy policy, int exit_code) {
        DeploymentSpec spec;
        spec.name = name;
        spec.image_repository = "job";
        spec.replicas = 1;
        spec.restart_policy = policy;
        spec.strategy.timeout = 30s;
        spec.stop_grace = 1s;
        // Up long enough to count as ready (no port: ready once running).
        spec.args = {"/bin/busybox", "sh", "-c", "sleep 2; exit " + std::to_string(exit_code)};
        controller().apply(spec);
    };
    job("never", RestartPolicy::Never, 3);
    job("onfail-ok", RestartPolicy::OnFailure, 0);
    job("onfail-bad", RestartPolicy::OnFailure, 3);
    for (auto name : {"never", "onfail-ok", "onfail-bad"})
        ASSERT_TRUE(controller().wait_idle(name, 120s)) << name;

    ASSERT_TRUE(test::eventually(
        [&] {
            auto r = replica(controller(), "onfail-bad", 0);
            return r && r->restarts >= 1;
        },
        60s))
        << stack_->event_log();
    ASSERT_TRUE(test::eventually(
        [&] {
            auto a = replica(controller(), "never", 0);
            auto b = replica(controller(), "onfail-ok", 0);
            return a && b && a->state == "completed" && b->state == "completed";
        },
        60s))
        << stack_->event_log();
    // They stay down (the OnFailure one above had time to restart by now).
    std::this_thread::sleep_for(3s);
    auto never = replica(controller(), "never", 0);
    auto ok = replica(controller(), "onfail-ok", 0);
    ASSERT_TRUE(never && ok);
    EXPECT_EQ(never->state, "completed");
    EXPECT_EQ(never->restarts, 0);
    EXPECT_EQ(never->last_exit, 3);
    EXPECT_NE(never->message.find("Never"), std::string::npos) << never->message;
    EXPECT_EQ(ok->state, "completed");
    EXPECT_EQ(ok->restarts, 0);
    EXPECT_EQ(ok->last_exit, 0);
    auto bad = replica(controller(), "onfail-bad", 0);
    ASSERT_TRUE(bad);
    EXPECT_GE(bad->restarts, 1);
}

TEST_F(DeploymentTest, AReplicaThatKeepsExitingShowsCrashLoopBackOff) {
    push_image(stack_->store, "crash", "latest", "version-1", kNeverListens);
    DeploymentSpec spec;
    spec.name = "crash";
    spec.image_repository = "crash";
    spec.replicas = 1;
    spec.strategy.timeout = 30s;
    spec.stop_grace = 1s;
    spec.args = {"/bin/busybox", "sh", "-c", "echo crashing; sleep 1; exit 7"};
    controller().apply(spec);
    ASSERT_TRUE(test::eventually(
        [&] {
            auto r = replica(controller(), "crash", 0);
            return r && r->state == "CrashLoopBackOff";
        },
        60s))
        << stack_->event_log();
    auto r = replica(controller(), "crash", 0);
    EXPECT_EQ(r->last_exit, 7);
    EXPECT_GE(r->restarts, 1);
    EXPECT_NE(r->message.find("back-off"), std::string::npos) << r->message;
    EXPECT_NE(r->message.find("restarting failed container (exit 7)"), std::string::npos)
        << r->message;
    // It is restarted after the back-off, as the same replica.
    ASSERT_TRUE(test::eventually(
        [&] {
            auto x = replica(controller(), "crash", 0);
            return x && x->restarts > r->restarts;
        },
        60s));
    EXPECT_NE(fs::read_file(controller().replica_log("crash", 0, true)).find("crashing"),
              std::string::npos);
}

TEST(ExitWatcherTest, ReportsExitStatusAndSignalsOfChildren) {
    ExitWatcher watcher;
    std::mutex mu;
    std::condition_variable cv;
    std::vector<int> statuses;
    auto record = [&](int status) {
        std::lock_guard lock(mu);
        statuses.push_back(status);
        cv.notify_all();
    };
    pid_t exits = fork();
    if (exits == 0) _exit(3);
    pid_t sleeps = fork();
    if (sleeps == 0) {
        pause();
        _exit(0);
    }
    ASSERT_TRUE(watcher.watch(exits, record));
    ASSERT_TRUE(watcher.watch(sleeps, record));
    kill(sleeps, SIGKILL);
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, 30s, [&] { return statuses.size() == 2; }));
    std::sort(statuses.begin(), statuses.end());
    EXPECT_EQ(statuses, (std::vector<int>{3, 128 + SIGKILL}));
    // Both were reaped by the watcher.
    for (pid_t pid : {exits, sleeps}) {
        EXPECT_EQ(waitpid(pid, nullptr, WNOHANG), -1);
        EXPECT_EQ(errno, ECHILD);
    }
}

TEST(ExitWatcherTest, ASubreaperGetsOrphanedGrandchildren) {
    become_child_subreaper();
    int report[2], release[2];  // child → us: the grandchild's pid; us → grandchild: exit now
    ASSERT_EQ(pipe(report), 0);
    ASSERT_EQ(pipe(release), 0);
    pid_t parent = fork();
    if (parent == 0) {
        // Like `runc run --detach`: start a process and leave it behind.
        pid_t grandchild = fork();
        if (grandchild == 0) {
            char c;
            [[maybe_unused]] auto n = read(release[0], &c, 1);
            _exit(7);
        }
        [[maybe_unused]] auto n = write(report[1], &grandchild, sizeof grandchild);
        _exit(0);
    }
    pid_t grandchild = 0;
    ASSERT_EQ(read(report[0], &grandchild, sizeof grandchild), (ssize_t)sizeof grandchild);
    ASSERT_EQ(waitpid(parent, nullptr, 0), parent);

    ExitWatcher watcher;
    std::mutex mu;
    std::condition_variable cv;
    std::optional<int> status;
    ASSERT_TRUE(watcher.watch(grandchild, [&](int s) {
        std::lock_guard lock(mu);
        status = s;
        cv.notify_all();
    }));
    ASSERT_EQ(write(release[1], "x", 1), 1);
    for (int fd : {report[0], report[1], release[0], release[1]})
        close(fd);
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, 30s, [&] { return status.has_value(); }));
    EXPECT_EQ(*status, 7) << "the orphan was not our child (not reaped with its status)";
}

TEST(ExitWatcherTest, AGoneProcessIsNotWatched) {
    pid_t child = fork();
    if (child == 0) _exit(0);
    ASSERT_EQ(waitpid(child, nullptr, 0), child);
    ExitWatcher watcher;
    EXPECT_FALSE(watcher.watch(child, [](int) {}));
    EXPECT_EQ(watcher.size(), 0u);
}

TEST(DeploymentRecordsTest, RoundTripsDeploymentsReplicasAndRoutes) {
    fs::TempDir dir;
    registry::Database db(dir.path() / "metadata.db");
    DeploymentRecords records(db);
    DeploymentRecords again(db);  // the schema is applied once

    DeploymentSpec spec;
    spec.name = "app";
    spec.image_repository = "apps/app";
    spec.image_tag = "v1";
    spec.container_port = 8080;
    spec.replicas = 3;
    spec.env = {"A=1"};
    spec.args = {"serve", "--fast"};
    spec.automatic = false;
    spec.strategy.timeout = 7s;
    spec.stop_grace = 2s;
    auto digest = oci::Digest::sha256_of("x");
    DeploymentRecord saved;
    saved.spec = spec;
    saved.revision = 4;
    saved.digest = digest;
    saved.phase = "Failed";
    saved.message = "boom";
    records.save_deployment(saved);
    auto ds = records.deployments();
    ASSERT_EQ(ds.size(), 1u);
    EXPECT_EQ(to_json(ds[0].spec), to_json(spec));
    EXPECT_EQ(ds[0].revision, 4);
    EXPECT_EQ(ds[0].digest, digest);
    EXPECT_EQ(ds[0].phase, "Failed");
    EXPECT_EQ(ds[0].message, "boom");

    ReplicaRecord r{"app-4-abcde",      "app", 4, digest, 1234, "ready", 2, spec, 1,
                    "/x/container.log", 137};
    records.save_replica(r);
    r.pid = 99;
    records.save_replica(r);
    auto rs = records.replicas();
    ASSERT_EQ(rs.size(), 1u);
    EXPECT_EQ(rs[0].container_id, "app-4-abcde");
    EXPECT_EQ(rs[0].pid, 99);
    EXPECT_EQ(rs[0].restarts, 2);
    EXPECT_EQ(rs[0].image_digest, digest);
    EXPECT_EQ(rs[0].spec.args, spec.args);
    EXPECT_EQ(rs[0].index, 1);
    EXPECT_EQ(rs[0].previous_log, "/x/container.log");
    EXPECT_EQ(rs[0].last_exit, 137);
    records.delete_replica("app-4-abcde");
    EXPECT_TRUE(records.replicas().empty());

    records.save_route({"app", "app", "127.0.0.1", 8081, "app.example.test"});
    ASSERT_EQ(records.routes().size(), 1u);
    EXPECT_EQ(records.routes()[0].port, 8081);
    records.delete_route("app");
    records.delete_deployment("app");
    EXPECT_TRUE(records.routes().empty());
    EXPECT_TRUE(records.deployments().empty());
}

}  // namespace
}  // namespace cascade::runtime
