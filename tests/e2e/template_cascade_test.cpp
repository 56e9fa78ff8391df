// The image-stream example in OpenShift's format, end to end with real runc:
// examples/image-stream/template.yaml applied with --param (GIT_URL: a git
// repository the test creates; BASE_IMAGE: an "upstream" OS base in a second
// registry on loopback, Debian's docker-registry), every object checked, then
// the cascade driven four ways — start-build, the generic webhook, an import
// of a changed upstream image, and `cascade tag` back to the first base
// generation — with `cascade impact` and `cascade events` checked after each;
// finally `cascade delete all -l app=app-a` removes app-a and leaves app-b
// serving.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "distribution.hpp"
#include "oci/fs.hpp"
#include "support.hpp"

using nlohmann::json;
using namespace cascade;
using namespace std::chrono_literals;

namespace {

constexpr auto kWait = 300s;

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
    for (size_t pos = 0; (pos = s.find(from, pos)) != std::string::npos; pos += to.size())
        s.replace(pos, from.size(), to);
    return s;
}

std::string short_digest(const std::string& digest) {
    auto colon = digest.find(':');
    return colon == std::string::npos ? digest : digest.substr(colon + 1, 12);
}

class TemplateCascade : public ::testing::Test {
  protected:
    fs::TempDir tmp{{}, "cascade-e2e-template-"};
    std::filesystem::path state = tmp.path() / "state";
    std::filesystem::path layout = tmp.path() / "layout";
    std::filesystem::path src = tmp.path() / "src";  // the git repository
    std::filesystem::path template_file =
        test::source_dir() / "examples" / "image-stream" / "template.yaml";
    std::unique_ptr<test::DistributionRegistry> upstream;
    std::unique_ptr<test::Daemon> daemon;
    std::string base_ref;  // BASE_IMAGE: <upstream>/upstream/os-base:1

    void SetUp() override {
        for (const char* tool : {"docker-registry", "skopeo", "git", "curl"})
            if (!test::have_program(tool)) GTEST_SKIP() << tool << " is not installed";
        upstream = std::make_unique<test::DistributionRegistry>();
        base_ref = upstream->address() + "/upstream/os-base:1";
        push_os_base("1");
        make_git_repository();
        daemon = std::make_unique<test::Daemon>(state);
    }

    void TearDown() override {
        daemon.reset();  // SIGTERM: the daemon stops its replicas
        if (std::filesystem::exists(state)) {
            auto left = test::run({"runc", "--root", (state / "runc").string(), "list", "-q"}, 30s);
            EXPECT_EQ(left.out, "") << "runc containers left behind";
            test::cleanup_state_root(state);
        }
        for (const auto& m : test::mounts_under(tmp.path()))
            ADD_FAILURE() << "mount left: " << m;
        upstream.reset();
    }

    // The upstream OS base: the host's busybox with every applet linked, a
    // passwd with nobody, /var/www, and /etc/os-base-release saying `release`;
    // pushed to the second registry as upstream/os-base:1.
    void push_os_base(const std::string& release) {
        fs::TempDir scratch;
        auto tree = scratch.path() / "tree";
        for (const char* d : {"bin", "etc", "tmp", "root", "var/www"})
            fs::make_dirs(tree / d);
        ::chmod((tree / "tmp").c_str(), 01777);
        std::filesystem::copy_file("/bin/busybox", tree / "bin" / "busybox");
        ::chmod((tree / "bin" / "busybox").c_str(), 0755);
        auto list = test::run({"/bin/busybox", "--list"});
        ASSERT_EQ(list.exit_code, 0) << list.err;
        std::istringstream applets(list.out);
        for (std::string applet; std::getline(applets, applet);)
            if (!applet.empty() && applet != "busybox")
                std::filesystem::create_symlink("busybox", tree / "bin" / applet);
        fs::write_file_atomic(tree / "etc" / "passwd",
                              "root:x:0:0:root:/root:/bin/sh\n"
                              "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n");
        fs::write_file_atomic(tree / "etc" / "group", "root:x:0:\nnogroup:x:65534:\n");
        fs::write_file_atomic(tree / "etc" / "os-base-release", "os-base " + release + "\n");
        test::write_tree_image(layout, "v" + release, tree, {"PATH=/bin"}, "amd64");
        auto r = test::push_image(layout, "v" + release, base_ref);
        ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    }

    test::CommandResult git(std::vector<std::string> args) {
        std::vector<std::string> argv{"git",
                                      "-C",
                                      src.string(),
                                      "-c",
                                      "user.name=cascade tests",
                                      "-c",
                                      "user.email=tests@cascade.invalid"};
        argv.insert(argv.end(), args.begin(), args.end());
        auto r = test::run(argv, 60s);
        EXPECT_EQ(r.exit_code, 0) << "git " << args[0] << ": " << r.out << r.err;
        return r;
    }

    // httpd-base, app-a and app-b of the example, committed on branch main.
    void make_git_repository() {
        fs::make_dirs(src);
        for (const char* dir : {"httpd-base", "app-a", "app-b"})
            std::filesystem::copy(test::source_dir() / "examples" / "image-stream" / dir, src / dir,
                                  std::filesystem::copy_options::recursive);
        git({"init", "-q", "-b", "main"});
        git({"add", "-A"});
        git({"commit", "-q", "-m", "httpd-base, app-a and app-b"});
    }

    // Changes httpd-base's release in the repository and commits it.
    void commit_httpd_base_release(const std::string& from, const std::string& to) {
        auto file = src / "httpd-base" / "Dockerfile";
        fs::write_file_atomic(file, replace_all(fs::read_file(file), "HTTPD_BASE_RELEASE=" + from,
                                                "HTTPD_BASE_RELEASE=" + to));
        git({"commit", "-q", "-am", "httpd-base " + to});
    }

    test::CommandResult cli(const std::vector<std::string>& args,
                            std::chrono::seconds timeout = 300s) {
        return daemon->cli(args, timeout);
    }

    test::CommandResult apply(const std::vector<std::string>& extra = {}) {
        std::vector<std::string> args{"apply",
                                      "-f",
                                      template_file.string(),
                                      "--param",
                                      "GIT_URL=file://" + src.string(),
                                      "--param",
                                      "BASE_IMAGE=" + base_ref};
        args.insert(args.end(), extra.begin(), extra.end());
        return cli(args);
    }

    json get(const std::string& what) {
        auto r = cli({"get", what, "-o", "json"});
        if (r.exit_code != 0) return nullptr;
        auto j = json::parse(r.out, nullptr, false);
        return j.is_discarded() ? json(nullptr) : j;
    }

    // The items of `get KIND -o json`, by name.
    std::map<std::string, json> items(const std::string& kind) {
        std::map<std::string, json> out;
        json list = get(kind);
        if (list.is_object() && list.contains("items"))
            for (const auto& i : list["items"])
                out[i["metadata"]["name"]] = i;
        return out;
    }

    // The newest history item of stream:latest, or null.
    json newest(const std::string& stream) {
        json is = get("imagestream/" + stream);
        if (!is.is_object()) return nullptr;
        for (const auto& t : is["status"]["tags"])
            if (t["tag"] == "latest" && !t["items"].empty()) return t["items"][0];
        return nullptr;
    }
    int64_t generation(const std::string& stream) {
        json n = newest(stream);
        return n.is_object() ? n.value("generation", int64_t{0}) : 0;
    }
    std::string digest(const std::string& stream) {
        json n = newest(stream);
        return n.is_object() ? n.value("image", "") : "";
    }

    std::string build_phase(const std::string& name) {
        json b = get("build/" + name);
        return b.is_object() ? b["status"].value("phase", "") : "";
    }

    // Both replicas of `dc` ready and running `want`, the digest of its tag.
    bool rolled_out(const std::string& dc, const std::string& want) {
        json d = get("dc/" + dc);
        if (!d.is_object() || want.empty()) return false;
        const json& st = d["status"];
        if (st.value("readyReplicas", 0) != 2 || st.value("phase", "") != "Running" ||
            st.value("imageDigest", "") != want || st["pods"].size() != 2)
            return false;
        for (const auto& p : st["pods"])
            if (p.value("image", "") != want || p.value("state", "") != "ready") return false;
        return true;
    }

    std::string diagnostics() {
        return cli({"get", "builds"}).out + cli({"get", "dc"}).out + cli({"get", "is"}).out +
               cli({"events"}).out;
    }

    std::map<std::string, int64_t> app_generations() {
        return {{"app-a", generation("app-a")}, {"app-b", generation("app-b")}};
    }

    // Waits until app-a and app-b moved past the generations `before` and
    // both deployments run the new digests.
    void wait_for_apps(const std::map<std::string, int64_t>& before) {
        bool settled = test::eventually(
            [&] {
                for (const auto& [app, gen] : before)
                    if (generation(app) <= gen || !rolled_out(app, digest(app))) return false;
                return true;
            },
            kWait);
        ASSERT_TRUE(settled) << "app-a/app-b did not settle past generations " << before.at("app-a")
                             << "/" << before.at("app-b") << "\n"
                             << diagnostics();
    }

    std::optional<test::HttpResponse> route(const std::string& app, const std::string& path) {
        return test::http_get(daemon->router_port(), path, app + ".localhost");
    }
    // Both routes answer 200 with `text` in /cgi-bin/base-version.
    void expect_base_version(const std::string& text) {
        for (const char* app : {"app-a", "app-b"}) {
            auto r = route(app, "/cgi-bin/base-version");
            ASSERT_TRUE(r) << app << ": no answer";
            EXPECT_EQ(r->status, 200) << app;
            EXPECT_NE(r->body.find(text), std::string::npos) << app << ": " << r->body;
        }
    }

    int64_t last_event_id() {
        auto r = cli({"events", "-o", "json"});
        EXPECT_EQ(r.exit_code, 0) << r.err;
        json events = json::parse(r.out, nullptr, false);
        int64_t id = 0;
        if (events.is_object())
            for (const auto& e : events["items"])
                id = std::max(id, e.value("id", int64_t{0}));
        return id;
    }

    // The cascade since event `since`, in order: `stream`:latest moved to
    // generation `gen` (cause containing `cause`); when `stream` is not
    // httpd-base, httpd-base rebuilt once on it and its tag moved; then app-a
    // and app-b each built once (started, tag moved, finished Complete) and
    // rolled out to their new digest. Then the same events as text lines.
    void expect_events(int64_t since, const std::string& stream, int64_t gen,
                       const std::string& cause) {
        auto r = cli({"events", "--since", std::to_string(since), "-o", "json"});
        ASSERT_EQ(r.exit_code, 0) << r.err;
        json events = json::parse(r.out)["items"];
        // The first event after `after` of `type` whose `key` is `value`, or null.
        auto find = [&](const std::string& type, const std::string& key, const std::string& value,
                        int64_t after) -> json {
            for (const auto& e : events)
                if (e.value("id", int64_t{0}) > after && e.value("type", "") == type &&
                    e.value(key, "") == value)
                    return e;
            return nullptr;
        };
        auto id = [](const json& e) { return e.is_object() ? e.value("id", int64_t{0}) : -1; };
        auto builds_of = [&](const std::string& config) {
            return std::count_if(events.begin(), events.end(), [&](const json& e) {
                return e.value("type", "") == "BuildStarted" && e.value("config", "") == config;
            });
        };
        json moved;
        for (const auto& e : events)
            if (e.value("type", "") == "TagMoved" && e.value("repository", "") == stream &&
                e.value("tag", "") == "latest" && e.value("generation", int64_t{0}) == gen)
                moved = e;
        ASSERT_TRUE(moved.is_object()) << stream << ":latest generation " << gen << " not in\n"
                                       << r.out;
        EXPECT_NE(moved.value("cause", "").find(cause), std::string::npos) << moved.dump();
        std::vector<std::string> names;  // what the text lines must name
        int64_t base_moved = id(moved);
        if (stream != "httpd-base") {
            json started = find("BuildStarted", "config", "httpd-base", id(moved));
            ASSERT_TRUE(started.is_object()) << "httpd-base was not rebuilt\n" << r.out;
            EXPECT_EQ(builds_of("httpd-base"), 1) << "httpd-base built more than once\n" << r.out;
            names.push_back(started.value("name", ""));
            base_moved = id(find("TagMoved", "repository", "httpd-base", id(started)));
            EXPECT_GT(base_moved, id(started)) << "httpd-base:latest did not move\n" << r.out;
        } else {
            EXPECT_LE(builds_of("httpd-base"), 1) << r.out;
        }
        for (const char* app : {"app-a", "app-b"}) {
            SCOPED_TRACE(app);
            json started = find("BuildStarted", "config", app, base_moved);
            ASSERT_TRUE(started.is_object()) << app << " was not rebuilt\n" << r.out;
            EXPECT_EQ(builds_of(app), 1) << app << " built more than once\n" << r.out;
            std::string build = started.value("name", "");
            names.push_back(build);
            json finished = find("BuildFinished", "name", build, id(started));
            json app_moved = find("TagMoved", "repository", app, id(started));
            ASSERT_TRUE(finished.is_object()) << build << " did not finish\n" << r.out;
            EXPECT_EQ(finished.value("result", ""), "Complete") << finished.dump();
            ASSERT_TRUE(app_moved.is_object()) << app << ":latest did not move\n" << r.out;
            EXPECT_EQ(app_moved.value("digest", ""), digest(app));
            json rollout = find("RolloutFinished", "name", app, id(app_moved));
            ASSERT_TRUE(rollout.is_object()) << app << " did not roll out\n" << r.out;
            EXPECT_EQ(rollout.value("digest", ""), digest(app)) << rollout.dump();
            EXPECT_GT(id(find("RolloutStarted", "name", app, id(app_moved))), 0) << r.out;
        }
        // One line per step in the text form, naming the builds.
        auto text = cli({"events", "--since", std::to_string(since)});
        ASSERT_EQ(text.exit_code, 0) << text.err;
        EXPECT_EQ(std::count(text.out.begin(), text.out.end(), '\n'),
                  static_cast<std::ptrdiff_t>(events.size()))
            << text.out;
        EXPECT_NE(text.out.find(stream + ":latest"), std::string::npos) << text.out;
        EXPECT_NE(text.out.find("generation " + std::to_string(gen)), std::string::npos)
            << text.out;
        for (const auto& name : names)
            EXPECT_NE(text.out.find(name), std::string::npos) << name << "\n" << text.out;
    }

    // `cascade impact IMAGE` lists app-a, app-b and every running replica, and
    // no longer names `old_digest` (nobody runs it any more).
    void expect_impact(const std::string& image, const std::string& old_digest) {
        auto r = cli({"impact", image});
        ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
        for (const char* app : {"app-a", "app-b"}) {
            EXPECT_NE(r.out.find(app), std::string::npos) << r.out;
            json d = get(std::string("dc/") + app);
            ASSERT_TRUE(d.is_object());
            for (const auto& p : d["status"]["pods"])
                EXPECT_NE(r.out.find(p["name"].get<std::string>()), std::string::npos)
                    << p["name"] << " not listed:\n"
                    << r.out;
        }
        if (image.rfind("os-base", 0) == 0) {
            EXPECT_NE(r.out.find("httpd-base"), std::string::npos) << r.out;
        }
        if (!old_digest.empty()) {
            EXPECT_EQ(r.out.find(short_digest(old_digest)), std::string::npos)
                << "a replica still runs " << old_digest << ":\n"
                << r.out;
        }
    }

    void wait_for_first_rollout() {
        for (const char* b : {"httpd-base-1", "app-a-1", "app-b-1"})
            ASSERT_TRUE(test::eventually([&] { return build_phase(b) == "Complete"; }, kWait))
                << b << ": " << build_phase(b) << "\n"
                << cli({"logs", std::string("build/") + b}).out << diagnostics();
        // No build ran before its base had an image: httpd-base's waited for
        // the os-base import, the apps' for httpd-base (their ImageChange
        // triggers started them), so none looked for the name on Docker Hub.
        for (const auto& [name, build] : items("builds"))
            EXPECT_EQ(build["status"].value("phase", ""), "Complete") << name << "\n"
                                                                      << diagnostics();
        EXPECT_EQ(items("builds").size(), 3u) << diagnostics();
        for (const char* app : {"app-a", "app-b"})
            ASSERT_TRUE(test::eventually([&] { return rolled_out(app, digest(app)); }, kWait))
                << app << "\n"
                << diagnostics();
    }
};

TEST_F(TemplateCascade, AppliesEveryObjectOfTheTemplateWithItsLabels) {
    // GIT_URL and BASE_IMAGE are required.
    auto missing = cli({"apply", "-f", template_file.string()});
    EXPECT_NE(missing.exit_code, 0) << missing.out;
    EXPECT_NE(missing.err.find("GIT_URL"), std::string::npos) << missing.err;
    EXPECT_TRUE(items("buildconfigs").empty()) << "nothing is created without the parameters";

    auto applied = apply();
    ASSERT_EQ(applied.exit_code, 0) << applied.out << applied.err;
    for (const char* obj : {"imagestream/os-base", "imagestream/httpd-base", "imagestream/app-a",
                            "imagestream/app-b", "buildconfig/httpd-base", "buildconfig/app-a",
                            "buildconfig/app-b", "deploymentconfig/app-a", "deploymentconfig/app-b",
                            "service/app-a", "service/app-b", "route/app-a", "route/app-b"})
        EXPECT_NE(applied.out.find(std::string(obj) + " created"), std::string::npos)
            << obj << "\n"
            << applied.out;
    // The message, substituted.
    EXPECT_NE(applied.out.find("built from file://" + src.string() + " (ref main) on " + base_ref),
              std::string::npos)
        << applied.out;

    // Every object, with the template's label and its application's label.
    struct Want {
        const char* kind;
        std::map<std::string, std::string> names;  // name → app label
    };
    std::vector<Want> wants = {
        {"imagestreams",
         {{"os-base", "httpd-base"},
          {"httpd-base", "httpd-base"},
          {"app-a", "app-a"},
          {"app-b", "app-b"}}},
        {"buildconfigs", {{"httpd-base", "httpd-base"}, {"app-a", "app-a"}, {"app-b", "app-b"}}},
        {"deploymentconfigs", {{"app-a", "app-a"}, {"app-b", "app-b"}}},
        {"services", {{"app-a", "app-a"}, {"app-b", "app-b"}}},
        {"routes", {{"app-a", "app-a"}, {"app-b", "app-b"}}},
    };
    for (const auto& w : wants) {
        auto got = items(w.kind);
        for (const auto& [name, app] : w.names) {
            ASSERT_TRUE(got.count(name)) << w.kind << "/" << name << " missing";
            const json& labels = got[name]["metadata"]["labels"];
            EXPECT_EQ(labels.value("template", ""), "image-stream") << w.kind << "/" << name;
            EXPECT_EQ(labels.value("app", ""), app) << w.kind << "/" << name;
        }
    }

    auto bcs = items("buildconfigs");
    std::string secret;
    for (const char* name : {"httpd-base", "app-a", "app-b"}) {
        const json& spec = bcs[name]["spec"];
        EXPECT_EQ(spec["source"]["git"]["uri"], "file://" + src.string()) << name;
        EXPECT_EQ(spec["source"]["git"]["ref"], "main") << name;
        EXPECT_EQ(spec["source"]["contextDir"], name);
        EXPECT_EQ(spec["strategy"]["dockerStrategy"]["from"]["name"],
                  std::string(name) == "httpd-base" ? "os-base:latest" : "httpd-base:latest");
        EXPECT_EQ(spec["output"]["to"]["name"], std::string(name) + ":latest");
        std::set<std::string> types;
        for (const auto& t : spec["triggers"]) {
            types.insert(t.value("type", ""));
            if (t.value("type", "") == "Generic") {
                std::string s = t["generic"].value("secret", "");
                EXPECT_EQ(s.size(), 40u) << s;
                EXPECT_TRUE(std::all_of(s.begin(), s.end(), [](char c) { return isalnum(c); }))
                    << s;
                if (secret.empty()) secret = s;
                EXPECT_EQ(s, secret) << "one generated secret for the template";
            }
        }
        EXPECT_EQ(types, (std::set<std::string>{"ConfigChange", "ImageChange", "Generic"})) << name;
    }
    EXPECT_NE(applied.out.find("webhooks/" + secret + "/generic"), std::string::npos)
        << applied.out;

    auto os_base = items("imagestreams")["os-base"]["spec"]["tags"][0];
    EXPECT_EQ(os_base["from"]["kind"], "DockerImage");
    EXPECT_EQ(os_base["from"]["name"], base_ref);
    EXPECT_EQ(os_base["importPolicy"]["scheduled"], true);
    auto routes = items("routes");
    EXPECT_EQ(routes["app-a"]["spec"]["host"], "app-a.localhost");
    EXPECT_EQ(routes["app-b"]["spec"]["host"], "app-b.localhost");
    auto dcs = items("deploymentconfigs");
    for (const char* app : {"app-a", "app-b"}) {
        const json& dc = dcs[app];
        EXPECT_EQ(dc["spec"]["replicas"], 2);
        EXPECT_EQ(dc["spec"]["strategy"]["type"], "Rolling");
    }

    // `-l` selects by label: `get all -l app=app-a -o name` names app-a's
    // objects (KIND[.GROUP]/NAME) and nothing else.
    auto selected = cli({"get", "all", "-l", "app=app-a", "-o", "name"});
    ASSERT_EQ(selected.exit_code, 0) << selected.err;
    std::set<std::string> kinds;
    std::istringstream lines(selected.out);
    for (std::string line; std::getline(lines, line);) {
        auto slash = line.find('/');
        ASSERT_NE(slash, std::string::npos) << line;
        EXPECT_EQ(line.substr(slash + 1).rfind("app-a", 0), 0u) << line;
        kinds.insert(line.substr(0, line.find_first_of("./")));
    }
    for (const char* kind : {"imagestream", "buildconfig", "deploymentconfig", "service", "route"})
        EXPECT_TRUE(kinds.count(kind)) << kind << " not selected:\n" << selected.out;

    // Three builds, two deployments, both routes.
    wait_for_first_rollout();
    EXPECT_EQ(newest("os-base")["cause"], "import " + base_ref);
    auto a = route("app-a", "/");
    ASSERT_TRUE(a);
    EXPECT_EQ(a->status, 200);
    EXPECT_NE(a->body.find("<h1>app-a</h1>"), std::string::npos) << a->body;
    auto b = route("app-b", "/");
    ASSERT_TRUE(b);
    EXPECT_NE(b->body.find("<h1>app-b</h1>"), std::string::npos) << b->body;
    expect_base_version("httpd-base 1.0\nos-base 1");
    // Three builds: os-base's import moving its tag while httpd-base's
    // first build (on that digest) runs must not build httpd-base again.
    auto builds = items("builds");
    EXPECT_EQ(builds.size(), 3u) << cli({"get", "builds"}).out;

    // The same template and parameters again change nothing (the secret
    // given: a generated one would differ).
    auto again = apply({"--param", "WEBHOOK_SECRET=" + secret});
    ASSERT_EQ(again.exit_code, 0) << again.out << again.err;
    EXPECT_EQ(again.out.find(" created"), std::string::npos) << again.out;
    EXPECT_EQ(again.out.find(" configured"), std::string::npos) << again.out;
    EXPECT_EQ(items("builds").size(), builds.size()) << cli({"get", "builds"}).out;
}

TEST_F(TemplateCascade, CascadesFourWaysThenDeletesAppAByLabel) {
    std::string secret(40, 'x');
    for (size_t i = 0; i < secret.size(); i++)
        secret[i] = "abcXYZ0123"[i % 10];
    auto applied = apply({"--param", "WEBHOOK_SECRET=" + secret});
    ASSERT_EQ(applied.exit_code, 0) << applied.out << applied.err;
    wait_for_first_rollout();
    std::string base1 = digest("httpd-base");
    std::string os1 = digest("os-base");
    ASSERT_FALSE(base1.empty());
    expect_impact("httpd-base:latest", "");

    // (a) a fix committed to httpd-base, and `cascade start-build httpd-base`.
    {
        SCOPED_TRACE("start-build");
        int64_t since = last_event_id();
        auto apps = app_generations();
        commit_httpd_base_release("1.0", "1.1");
        auto sb = cli({"start-build", "httpd-base", "--wait"}, 600s);
        ASSERT_EQ(sb.exit_code, 0) << sb.out << sb.err;
        EXPECT_EQ(generation("httpd-base"), 2);
        wait_for_apps(apps);
        expect_base_version("httpd-base 1.1");
        expect_events(since, "httpd-base", 2, "");
        expect_impact("httpd-base:latest", base1);
    }

    // (b) another fix, built by the generic webhook; a wrong secret builds nothing.
    {
        SCOPED_TRACE("generic webhook");
        std::string url = daemon->host() + "/api/v1/buildconfigs/httpd-base/webhooks/";
        size_t builds_before = items("builds").size();
        auto wrong = test::run({"curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST",
                                url + std::string(40, 'w') + "/generic"});
        EXPECT_EQ(wrong.out.substr(0, 1), "4") << "a wrong secret: " << wrong.out;
        EXPECT_EQ(items("builds").size(), builds_before) << "the wrong secret started a build";
        std::string base2 = digest("httpd-base");
        int64_t since = last_event_id();
        auto apps = app_generations();
        commit_httpd_base_release("1.1", "1.2");
        auto hook =
            test::run({"curl", "-s", "-w", "\n%{http_code}", "-X", "POST", "-H",
                       "Content-Type: application/json", "-d", "{}", url + secret + "/generic"});
        ASSERT_EQ(hook.exit_code, 0) << hook.err;
        EXPECT_EQ(hook.out.substr(hook.out.size() - 3, 1), "2") << hook.out;
        ASSERT_TRUE(test::eventually([&] { return generation("httpd-base") == 3; }, kWait))
            << diagnostics();
        wait_for_apps(apps);
        expect_base_version("httpd-base 1.2");
        expect_events(since, "httpd-base", 3, "");
        expect_impact("httpd-base:latest", base2);
    }

    // (c) upstream pushes a new OS base; `cascade import-image os-base`.
    {
        SCOPED_TRACE("import of a changed upstream image");
        std::string base3 = digest("httpd-base");
        int64_t since = last_event_id();
        auto apps = app_generations();
        push_os_base("2");
        auto imported = cli({"import-image", "os-base"});
        ASSERT_EQ(imported.exit_code, 0) << imported.out << imported.err;
        EXPECT_EQ(generation("os-base"), 2) << imported.out;
        ASSERT_TRUE(test::eventually([&] { return generation("httpd-base") == 4; }, kWait))
            << diagnostics();
        wait_for_apps(apps);
        expect_base_version("httpd-base 1.2\nos-base 2");
        expect_events(since, "os-base", 2, "import");
        expect_impact("os-base:latest", os1);
        expect_impact("httpd-base:latest", base3);
    }

    // (d) `cascade tag` back to the first httpd-base generation.
    {
        SCOPED_TRACE("tag back to generation 1");
        std::string base4 = digest("httpd-base");
        int64_t since = last_event_id();
        auto apps = app_generations();
        auto tagged = cli({"tag", "httpd-base:latest#1", "httpd-base:latest"});
        ASSERT_EQ(tagged.exit_code, 0) << tagged.out << tagged.err;
        EXPECT_EQ(generation("httpd-base"), 5);
        EXPECT_EQ(digest("httpd-base"), base1);
        wait_for_apps(apps);
        expect_base_version("httpd-base 1.0\nos-base 1");
        expect_events(since, "httpd-base", 5, "");
        expect_impact("httpd-base:latest", base4);
        for (const char* app : {"app-a", "app-b"}) {
            auto m = test::run({"skopeo", "inspect", "--raw", "--tls-verify=false",
                                "docker://" + daemon->address() + "/" + app + ":latest"});
            ASSERT_EQ(m.exit_code, 0) << m.err;
            EXPECT_EQ(json::parse(m.out)["annotations"]["org.opencontainers.image.base.digest"],
                      base1)
                << app;
        }
    }

    // `cascade delete all -l app=app-a`: app-a's objects and containers are
    // gone; app-b and the bases stay.
    std::set<std::string> a_pods;
    json dc_a = get("dc/app-a");
    for (const auto& p : dc_a["status"]["pods"])
        a_pods.insert(p["name"]);
    ASSERT_EQ(a_pods.size(), 2u);
    auto deleted = cli({"delete", "all", "-l", "app=app-a"});
    ASSERT_EQ(deleted.exit_code, 0) << deleted.out << deleted.err;
    for (const char* obj : {"dc/app-a", "bc/app-a", "is/app-a", "route/app-a", "service/app-a"}) {
        auto r = cli({"get", obj});
        EXPECT_NE(r.exit_code, 0) << obj << " still there: " << r.out;
        EXPECT_NE(deleted.out.find(std::string(obj).substr(std::string(obj).find('/') + 1)),
                  std::string::npos)
            << deleted.out;
    }
    ASSERT_TRUE(test::eventually(
        [&] {
            auto listed =
                test::run({"runc", "--root", (state / "runc").string(), "list", "-q"}, 30s);
            for (const auto& pod : a_pods)
                if (listed.out.find(pod) != std::string::npos) return false;
            return std::count(listed.out.begin(), listed.out.end(), '\n') == 2;
        },
        60s))
        << test::run({"runc", "--root", (state / "runc").string(), "list"}).out;
    auto gone = route("app-a", "/");
    EXPECT_TRUE(!gone || gone->status != 200) << gone->body;
    auto b = route("app-b", "/");
    ASSERT_TRUE(b);
    EXPECT_EQ(b->status, 200);
    EXPECT_NE(b->body.find("<h1>app-b</h1>"), std::string::npos);
    for (const char* obj : {"dc/app-b", "bc/httpd-base", "is/os-base", "route/app-b"})
        EXPECT_EQ(cli({"get", obj}).exit_code, 0) << obj;
}

}  // namespace
