// Image streams, events and garbage collection with the real binary:
// `cascade tag` by tag, digest and generation with the causes in the
// history; `describe imagestream`; the API's JSON; `events --watch` sees a
// push; `cascade gc` removes an untagged old image and keeps tagged, kept-
// generation and running ones (a dry run deletes nothing); a GC running
// while a client uploads and mounts never deletes those blobs.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <future>
#include <thread>

#include "oci/fs.hpp"
#include "streams_push.hpp"
#include "support.hpp"

using nlohmann::json;
using namespace cascade;
using namespace std::chrono_literals;

namespace {

class Streams : public ::testing::Test {
  protected:
    fs::TempDir tmp{{}, "cascade-streams-"};
    std::filesystem::path state = tmp.path() / "state";
    std::unique_ptr<test::Daemon> daemon;
    std::unique_ptr<test::Pusher> pusher;

    void start(const std::string& config_yaml = {}) {
        std::vector<std::string> args;
        if (!config_yaml.empty()) {
            auto file = tmp.path() / "cascade.yaml";
            fs::write_file_atomic(file, config_yaml);
            args = {"--config", file.string()};
        }
        daemon = std::make_unique<test::Daemon>(state, 0, args);
        pusher = std::make_unique<test::Pusher>(daemon->address(), tmp.path() / "push");
    }
    void TearDown() override {
        daemon.reset();
        test::cleanup_state_root(state);
    }
    test::PushedImage push(const std::string& repo, const std::string& tag,
                           const std::string& salt) {
        return pusher->push({{repo, tag, salt}}).at(0);
    }
    test::CommandResult ok(const std::vector<std::string>& args) {
        auto r = daemon->cli(args);
        EXPECT_EQ(r.exit_code, 0) << "cascade " << args.at(0) << ": " << r.out << r.err;
        return r;
    }
    json api(const std::string& path) {
        auto r = test::http_get(daemon->port(), path);
        EXPECT_TRUE(r && r->status == 200) << path << ": " << (r ? r->body : "no answer");
        return r ? json::parse(r->body) : json();
    }
    size_t blob_files() {
        size_t n = 0;
        for (auto& e : std::filesystem::directory_iterator(state / "blobs" / "blobs" / "sha256")) {
            (void)e;
            n++;
        }
        return n;
    }
};

TEST_F(Streams, TagByTagDigestAndGenerationIsRecordedAndDescribed) {
    start();
    auto v1 = push("base", "latest", "v1");
    auto v2 = push("base", "latest", "v2");

    auto r = ok({"tag", "base:latest#1", "base:latest"});
    EXPECT_NE(r.out.find("imagestream/base:latest tagged " + v1.digest), std::string::npos)
        << r.out;
    EXPECT_NE(r.out.find("generation 3"), std::string::npos) << r.out;
    ok({"tag", "base@" + v2.digest, "team/copy:stable"});
    ok({"tag", "base:latest", "base:prod"});
    r = ok({"tag", "base:latest", "base:prod"});
    EXPECT_NE(r.out.find("unchanged"), std::string::npos) << r.out;

    // The API: status.tags[].items newest first, with generation and cause.
    auto is = api("/api/v1/imagestreams/base");
    json latest;
    for (const auto& t : is["status"]["tags"])
        if (t["tag"] == "latest") latest = t;
    ASSERT_EQ(latest["items"].size(), 3u) << is.dump(2);
    EXPECT_EQ(latest["items"][0]["generation"], 3);
    EXPECT_EQ(latest["items"][0]["image"], v1.digest);
    EXPECT_EQ(latest["items"][0]["cause"], "tag base:latest#1");
    EXPECT_EQ(latest["items"][1]["image"], v2.digest);
    EXPECT_EQ(latest["items"][1]["cause"], "push");
    EXPECT_NE(
        latest["items"][0]["dockerImageReference"].get<std::string>().find("base@" + v1.digest),
        std::string::npos);
    auto copy = api("/api/v1/imagestreams/team/copy");
    EXPECT_EQ(copy["status"]["tags"][0]["items"][0]["cause"], "tag base@" + v2.digest);
    // The copy is a full image of its own stream for any client.
    EXPECT_TRUE(test::image_complete(daemon->port(), "team/copy", "stable"));

    r = ok({"describe", "imagestream", "base"});
    EXPECT_NE(r.out.find("Name:        base"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("tag base:latest#1"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find(v2.digest), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("prod"), std::string::npos) << r.out;
    r = ok({"get", "imagestreams"});
    EXPECT_NE(r.out.find("team/copy"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("tag base:latest#1"), std::string::npos) << r.out;

    // Errors say what is missing and change nothing.
    auto bad = daemon->cli({"tag", "base:latest#9", "base:latest"});
    EXPECT_NE(bad.exit_code, 0);
    EXPECT_NE(bad.err.find("no generation 9"), std::string::npos) << bad.err;
    for (const auto& t : api("/api/v1/imagestreams/base")["status"]["tags"])
        if (t["tag"] == "latest") {
            EXPECT_EQ(t["items"].size(), 3u);
        }
}

// The rollback story: tagging an earlier generation of a base moves its tag,
// which rebuilds what is built FROM it on that base.
TEST_F(Streams, TaggingAnEarlierBaseGenerationRebuildsItsDependents) {
    if (geteuid() != 0) GTEST_SKIP() << "builds mount overlayfs: needs root";
    start();
    auto base_ctx = tmp.path() / "base";
    std::filesystem::create_directories(base_ctx);
    fs::write_file_atomic(base_ctx / "Dockerfile", "FROM scratch\nCOPY release /release\n");
    fs::write_file_atomic(base_ctx / "release", "1.0\n");
    ok({"build", "-t", "base:latest", base_ctx.string()});
    fs::write_file_atomic(base_ctx / "release", "1.1\n");
    ok({"build", "-t", "base:latest", base_ctx.string()});
    auto history = api("/api/v1/imagestreams/base")["status"]["tags"][0]["items"];
    ASSERT_EQ(history.size(), 2u);
    std::string v1 = history[1]["image"], v2 = history[0]["image"];

    auto app_ctx = tmp.path() / "app";
    std::filesystem::create_directories(app_ctx);
    fs::write_file_atomic(app_ctx / "index.html", "app\n");
    fs::write_file_atomic(tmp.path() / "bc.yaml", R"(apiVersion: build.openshift.io/v1
kind: BuildConfig
metadata: {name: app}
spec:
  source:
    contextDir: )" + app_ctx.string() + R"(
    dockerfile: |
      FROM base:latest
      COPY index.html /index.html
  strategy: {type: Docker}
  output:
    to: {kind: ImageStreamTag, name: app:latest}
  triggers:
  - type: ConfigChange
  - type: ImageChange
)");
    ok({"apply", "-f", (tmp.path() / "bc.yaml").string()});
    auto last_build = [&]() -> json {
        auto builds = api("/api/v1/builds")["items"];
        json last;
        for (const auto& b : builds)
            if (b["metadata"]["labels"]["buildconfig"] == "app") last = b;
        return last;
    };
    ASSERT_TRUE(test::eventually(
        [&] {
            auto b = last_build();
            return b.is_object() && b["status"]["phase"] == "Complete";
        },
        120s));
    EXPECT_EQ(last_build()["status"]["base"]["digest"], v2);

    auto r = ok({"tag", "base@" + v1, "base:latest"});
    ASSERT_TRUE(test::eventually(
        [&] {
            auto b = last_build();
            return b["metadata"]["name"] == "app-2" && b["status"]["phase"] == "Complete";
        },
        120s))
        << last_build().dump(2);
    EXPECT_EQ(last_build()["status"]["base"]["digest"], v1);
    auto app = test::manifest_of(daemon->port(), "app", "latest");
    EXPECT_EQ(app["annotations"]["org.opencontainers.image.base.digest"], v1);
    EXPECT_EQ(api("/api/v1/imagestreams/base")["status"]["tags"][0]["items"][0]["cause"],
              "tag base@" + v1);
}

TEST_F(Streams, EventsWatchSeesAPushAndResumesFromAnId) {
    start();
    push("app", "v0", "zero");
    auto list = api("/api/v1/events");
    int64_t since = std::stoll(list["metadata"]["resourceVersion"].get<std::string>());
    ASSERT_EQ(list["items"].size(), 1u);

    auto watch = std::async(std::launch::async, [&] {
        return daemon->cli(
            {"events", "--watch", "--since", std::to_string(since), "--count", "2", "-o", "json"},
            120s);
    });
    auto v1 = push("app", "v1", "one");
    ok({"tag", "app:v1", "app:prod"});
    auto r = watch.get();
    ASSERT_EQ(r.exit_code, 0) << r.err;
    std::vector<json> events;
    std::istringstream lines(r.out);
    for (std::string line; std::getline(lines, line);)
        events.push_back(json::parse(line));
    ASSERT_EQ(events.size(), 2u) << r.out;
    EXPECT_EQ(events[0]["repository"], "app");
    EXPECT_EQ(events[0]["tag"], "v1");
    EXPECT_EQ(events[0]["digest"], v1.digest);
    EXPECT_EQ(events[0]["cause"], "push");
    EXPECT_EQ(events[1]["tag"], "prod");
    EXPECT_EQ(events[1]["cause"], "tag app:v1");

    // Resuming after the first event gives the second at once.
    r = ok({"events", "--watch", "--since", std::to_string(events[0]["id"].get<int64_t>()),
            "--count", "1", "-o", "json"});
    EXPECT_EQ(json::parse(r.out)["id"], events[1]["id"]);
    r = ok({"events"});
    EXPECT_NE(r.out.find("app:prod"), std::string::npos) << r.out;
}

TEST_F(Streams, GcRemovesAnOldUntaggedImageAndKeepsWhatIsInUse) {
    start("gc:\n  keepGenerations: 2\n  graceSeconds: 0\n");
    auto g1 = push("app", "latest", "g1");
    auto g2 = push("app", "latest", "g2");
    auto g3 = push("app", "latest", "g3");
    auto loose = push("app", "", "loose");  // by digest, never tagged
    auto other = push("lib", "v1", "lib");
    size_t files = blob_files();

    auto dry = ok({"gc", "--dry-run"});
    EXPECT_NE(dry.out.find("would remove app@" + g1.digest), std::string::npos) << dry.out;
    EXPECT_NE(dry.out.find("would remove app@" + loose.digest), std::string::npos) << dry.out;
    EXPECT_NE(dry.out.find("would free: 2 manifests, 8 blobs"), std::string::npos) << dry.out;
    EXPECT_EQ(blob_files(), files) << "a dry run deletes nothing";
    EXPECT_TRUE(test::image_complete(daemon->port(), "app", g1.digest));

    auto r = ok({"gc"});
    EXPECT_NE(r.out.find("freed: 2 manifests, 8 blobs"), std::string::npos) << r.out;
    EXPECT_EQ(blob_files(), files - 8);
    EXPECT_TRUE(test::manifest_of(daemon->port(), "app", g1.digest).is_null());
    EXPECT_TRUE(test::manifest_of(daemon->port(), "app", loose.digest).is_null());
    for (const auto& b : g1.blobs)
        EXPECT_FALSE(test::blob_complete(daemon->port(), "app", b));
    EXPECT_TRUE(test::image_complete(daemon->port(), "app", "latest"));
    EXPECT_TRUE(test::image_complete(daemon->port(), "app", g2.digest)) << "a kept generation";
    EXPECT_TRUE(test::image_complete(daemon->port(), "lib", "v1"));
    (void)g3;
    (void)other;
    // The history still names the collected generation; tagging it back says why not.
    auto bad = daemon->cli({"tag", "app:latest#1", "app:latest"});
    EXPECT_NE(bad.exit_code, 0);
    EXPECT_NE(bad.err.find("garbage collected"), std::string::npos) << bad.err;
    r = ok({"gc"});
    EXPECT_NE(r.out.find("freed: 0 manifests, 0 blobs"), std::string::npos) << r.out;
}

// A replica keeps running an image whose tag moved on (no ImageChange
// trigger) beyond the kept generations: the deployments' root keeps it.
TEST_F(Streams, GcKeepsTheImageOfARunningReplica) {
    if (geteuid() != 0 || !test::have_program("runc")) GTEST_SKIP() << "needs root and runc";
    start("gc:\n  keepGenerations: 1\n  graceSeconds: 0\n");
    auto context = tmp.path() / "context";
    std::filesystem::create_directories(context);
    std::filesystem::copy_file("/bin/busybox", context / "busybox");
    fs::write_file_atomic(context / "Dockerfile",
                          "FROM scratch\nCOPY busybox /bin/busybox\nARG V=1\nENV V=$V\n"
                          "CMD [\"/bin/busybox\", \"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", "
                          "\"/\"]\n");
    ok({"build", "-t", "web:latest", context.string()});
    std::string running = api("/api/v1/imagestreams/web")["status"]["tags"][0]["items"][0]["image"];
    fs::write_file_atomic(tmp.path() / "dc.yaml", R"(apiVersion: apps.openshift.io/v1
kind: DeploymentConfig
metadata: {name: web}
spec:
  replicas: 1
  template:
    spec:
      containers:
        - name: web
          image: web:latest
          ports: [{containerPort: 8080}]
)");
    ok({"apply", "-f", (tmp.path() / "dc.yaml").string()});
    ASSERT_TRUE(test::eventually(
        [&] {
            auto d = api("/api/v1/deployments/web");
            return d["status"]["readyReplicas"] == 1;
        },
        120s));
    ok({"build", "-t", "web:latest", "--build-arg", "V=2", context.string()});
    ok({"build", "-t", "web:latest", "--build-arg", "V=3", context.string()});
    auto d = api("/api/v1/deployments/web");
    ASSERT_EQ(d["status"]["imageDigest"], running) << "no trigger: the replica stays";

    auto r = ok({"gc"});
    EXPECT_NE(r.out.find("freed: 1 manifests"), std::string::npos) << r.out << " (generation 2)";
    EXPECT_EQ(r.out.find(running), std::string::npos) << r.out;
    EXPECT_TRUE(test::image_complete(daemon->port(), "web", running));
    EXPECT_TRUE(test::image_complete(daemon->port(), "web", "latest"));
}

// Collections run back to back while a client pushes new images blob by blob
// and mounts an existing image's blobs into new repositories: every push and
// mount succeeds and stays complete; the old garbage goes.
TEST_F(Streams, GcWhileAClientUploadsAndMountsNeverDeletesTheirBlobs) {
    start("gc:\n  keepGenerations: 1\n  graceSeconds: 2\n");
    std::vector<test::Pusher::Spec> old;
    for (int i = 0; i < 10; i++)
        old.push_back({"old", "", "garbage" + std::to_string(i)});
    auto garbage = pusher->push(old);
    auto base = push("base", "latest", "base");
    std::this_thread::sleep_for(3s);  // the garbage is now older than the grace period

    std::atomic<bool> done{false};
    std::atomic<int> runs{0};
    std::thread collector([&] {
        while (!done) {
            auto r = daemon->cli({"gc"});
            EXPECT_EQ(r.exit_code, 0) << r.err;
            runs++;
        }
    });
    std::vector<test::PushedImage> pushed;
    for (int i = 0; i < 15; i++) {
        pushed.push_back(push("new", "t" + std::to_string(i), "new" + std::to_string(i)));
        // Mount the base's blobs into a new repository, then push its manifest there.
        std::string repo = "mounted" + std::to_string(i);
        for (const auto& b : base.blobs) {
            auto m = test::run({"curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-d", "",
                                "http://" + daemon->address() + "/v2/" + repo +
                                    "/blobs/uploads/?mount=" + b + "&from=base"});
            EXPECT_EQ(m.out, "201") << "mount " << b;
        }
        auto manifest = test::http_get(daemon->port(), "/v2/base/manifests/latest");
        ASSERT_TRUE(manifest && manifest->status == 200);
        auto file = tmp.path() / ("manifest-" + std::to_string(i));
        fs::write_file_atomic(file, manifest->body);
        auto put = test::run({"curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT",
                              "-H", "Content-Type: application/vnd.oci.image.manifest.v1+json",
                              "--data-binary", "@" + file.string(),
                              "http://" + daemon->address() + "/v2/" + repo + "/manifests/latest"});
        EXPECT_EQ(put.out, "201") << repo;
    }
    while (runs < 2)
        std::this_thread::sleep_for(50ms);
    done = true;
    collector.join();

    for (const auto& img : pushed)
        EXPECT_TRUE(test::image_complete(daemon->port(), "new", img.tag)) << img.tag;
    for (int i = 0; i < 15; i++)
        EXPECT_TRUE(test::image_complete(daemon->port(), "mounted" + std::to_string(i), "latest"));
    for (const auto& g : garbage)
        EXPECT_TRUE(test::manifest_of(daemon->port(), "old", g.digest).is_null());
}

}  // namespace
