// The oc-style CLI against a real daemon: `get` (-o name|json|yaml, -l
// selectors, `get all`), `describe`, `delete` (by name, -f, `all -l`: the
// deployment's runc containers are gone and its route stops answering), exit
// codes 0/1/2, --help examples on every command and the completion script
// (bash -n accepts it; it completes names the daemon knows).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <set>

#include "daemon_fixture.hpp"
#include "oci/fs.hpp"
#include "streams_push.hpp"
#include "support.hpp"

using nlohmann::json;
using namespace cascade;
using namespace std::chrono_literals;

namespace {

std::set<std::string> lines_of(const std::string& text) {
    std::set<std::string> out;
    std::stringstream in(text);
    for (std::string line; std::getline(in, line);)
        if (!line.empty()) out.insert(line);
    return out;
}

class CliGetDelete : public test::DaemonTest {
  protected:
    CliGetDelete() : DaemonTest("cascade-cli-get-delete-") {}
    uint16_t web_port = test::free_port();
    uint16_t other_port = test::free_port();

    test::CommandResult cli(const std::vector<std::string>& args) { return daemon->cli(args); }

    // web:latest (busybox httpd, built), base:latest and other:latest
    // (pushed), and labelled objects: app=web (stream, deployment, service,
    // route, build config), app=other (stream, route), tier=base (stream).
    void SetUp() override {
        DaemonTest::SetUp();
        fs::write_file_atomic(context / "Dockerfile", test::kHttpdDockerfile);
        auto built = cli({"build", "-t", "web:latest", context.string()});
        ASSERT_EQ(built.exit_code, 0) << built.out << built.err;
        test::Pusher pusher(daemon->address(), tmp.path() / "push");
        pusher.push({{"base", "latest", "base-1"}, {"other", "latest", "other-1"}});
        auto file = tmp.path() / "objects.yaml";
        fs::write_file_atomic(file, R"(apiVersion: v1
kind: List
items:
- apiVersion: image.openshift.io/v1
  kind: ImageStream
  metadata: {name: web, labels: {app: web}}
- apiVersion: image.openshift.io/v1
  kind: ImageStream
  metadata: {name: other, labels: {app: other}}
- apiVersion: apps.openshift.io/v1
  kind: DeploymentConfig
  metadata: {name: web, labels: {app: web, tier: front}}
  spec:
    replicas: 2
    selector: {app: web}
    strategy: {type: Rolling, rollingParams: {timeoutSeconds: 120}}
    template:
      metadata: {labels: {app: web}}
      spec:
        terminationGracePeriodSeconds: 2
        containers:
        - name: web
          image: web:latest
          ports: [{containerPort: 8080}]
          readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
    triggers:
    - type: ImageChange
      imageChangeParams: {automatic: true, containerNames: [web], from: {kind: ImageStreamTag, name: "web:latest"}}
- apiVersion: v1
  kind: Service
  metadata: {name: web, labels: {app: web}}
  spec:
    selector: {app: web}
    ports: [{port: 8080, targetPort: 8080}]
- apiVersion: route.openshift.io/v1
  kind: Route
  metadata:
    name: web
    labels: {app: web}
    annotations: {cascade.io/host-port: ")" +
                                        std::to_string(web_port) + R"("}
  spec:
    to: {kind: Service, name: web}
- apiVersion: route.openshift.io/v1
  kind: Route
  metadata:
    name: other
    labels: {app: other}
    annotations: {cascade.io/host-port: ")" +
                                        std::to_string(other_port) + R"("}
  spec:
    to: {kind: Service, name: web}
- apiVersion: build.openshift.io/v1
  kind: BuildConfig
  metadata: {name: web, labels: {app: web}}
  spec:
    source: {contextDir: )" + context.string() +
                                        R"(}
    strategy: {type: Docker, dockerStrategy: {}}
    output: {to: {kind: ImageStreamTag, name: "web:next"}}
    triggers:
    - type: Generic
      generic: {secret: s3cr3t}
)");
        auto applied = cli({"apply", "-f", file.string()});
        ASSERT_EQ(applied.exit_code, 0) << applied.out << applied.err;
        auto base = tmp.path() / "base.yaml";
        fs::write_file_atomic(base, R"(apiVersion: image.openshift.io/v1
kind: ImageStream
metadata: {name: base, labels: {tier: base}}
)");
        applied = cli({"apply", "-f", base.string()});
        ASSERT_EQ(applied.exit_code, 0) << applied.out << applied.err;
        auto st =
            daemon->cli({"rollout", "status", "web", "--revision", "1", "--timeout", "180"}, 240s);
        ASSERT_EQ(st.exit_code, 0)
            << st.out << st.err << cli({"describe", "deployment", "web"}).out;
    }

    std::string runc_list() {
        return test::run({"runc", "--root", (state / "runc").string(), "list", "-q"}, 30s).out;
    }
};

TEST_F(CliGetDelete, GetSelectsAndFormats) {
    // -o name: oc's kind.group/name.
    auto names = cli({"get", "is", "-o", "name"});
    ASSERT_EQ(names.exit_code, 0) << names.err;
    EXPECT_EQ(lines_of(names.out), (std::set<std::string>{"imagestream.image.openshift.io/base",
                                                          "imagestream.image.openshift.io/other",
                                                          "imagestream.image.openshift.io/web"}))
        << names.out;

    // -l with every kind of requirement, filtered by the daemon.
    auto sel = [&](const std::string& kind, const std::string& selector) {
        auto r = cli({"get", kind, "-l", selector, "-o", "name"});
        EXPECT_EQ(r.exit_code, 0) << selector << ": " << r.err;
        return lines_of(r.out);
    };
    using S = std::set<std::string>;
    EXPECT_EQ(sel("is", "app=web"), S{"imagestream.image.openshift.io/web"});
    EXPECT_EQ(sel("is", "app==other"), S{"imagestream.image.openshift.io/other"});
    EXPECT_EQ(sel("is", "app!=web"),
              (S{"imagestream.image.openshift.io/base", "imagestream.image.openshift.io/other"}));
    EXPECT_EQ(sel("is", "!app"), S{"imagestream.image.openshift.io/base"});
    EXPECT_EQ(sel("is", "tier"), S{"imagestream.image.openshift.io/base"});
    EXPECT_EQ(sel("routes", "app in (web, other)"),
              (S{"route.route.openshift.io/web", "route.route.openshift.io/other"}));
    EXPECT_EQ(sel("route", "app notin (web)"), S{"route.route.openshift.io/other"});
    EXPECT_EQ(sel("dc", "app=web,tier=front"), S{"deploymentconfig.apps.openshift.io/web"});
    EXPECT_EQ(sel("dc", "app=web,tier=back"), S{});
    EXPECT_EQ(sel("bc", "app=web"), S{"buildconfig.build.openshift.io/web"});
    EXPECT_EQ(sel("svc", "app=web"), S{"service/web"});

    auto none = cli({"get", "routes", "-l", "app=nothing"});
    EXPECT_EQ(none.exit_code, 0);
    EXPECT_NE(none.err.find("No routes found"), std::string::npos) << none.err;

    // Pods: the deployment's replicas, labelled like its pod template plus
    // deploymentconfig and deployment (NAME-REVISION), as OpenShift's.
    S pods = sel("pods", "app=web");
    ASSERT_EQ(pods.size(), 2u);
    for (const auto& pod : pods)
        EXPECT_EQ(pod.rfind("pod/web-1-", 0), 0u) << pod;
    EXPECT_EQ(sel("po", "deploymentconfig=web,deployment=web-1"), pods);
    EXPECT_EQ(sel("pods", "deployment=web-2"), S{});
    auto pod_table = cli({"get", "pods", "-o", "wide"});
    ASSERT_EQ(pod_table.exit_code, 0) << pod_table.err;
    for (const char* s : {"READY", "STATUS", "RESTARTS", "PID", "1/1", "Running", "web-1 "})
        EXPECT_NE(pod_table.out.find(s), std::string::npos) << s << "\n" << pod_table.out;
    auto pod = cli({"get", *pods.begin(), "-o", "json"});
    ASSERT_EQ(pod.exit_code, 0) << pod.err;
    auto pod_json = json::parse(pod.out);
    EXPECT_EQ(pod_json["kind"], "Pod");
    EXPECT_EQ(pod_json["metadata"]["labels"]["app"], "web");
    EXPECT_EQ(pod_json["status"]["phase"], "Running");
    EXPECT_EQ(pod_json["status"]["containerStatuses"][0]["ready"], true);
    EXPECT_GT(pod_json["status"]["pid"].get<int>(), 0);
    EXPECT_NE(runc_list().find(pod_json["metadata"]["name"].get<std::string>()), std::string::npos)
        << "a pod is named by its container";
    // A replica is the deployment's: deleting it says what to do instead.
    auto del = cli({"delete", *pods.begin()});
    EXPECT_EQ(del.exit_code, 1);
    EXPECT_NE(del.err.find("cascade scale web --replicas N"), std::string::npos) << del.err;
    EXPECT_EQ(sel("pods", "app=web"), pods);

    // `get all`: every kind, tables with kind-prefixed names.
    auto all = cli({"get", "all", "-l", "app=web", "-o", "name"});
    ASSERT_EQ(all.exit_code, 0) << all.err;
    S expected{"service/web", "deploymentconfig.apps.openshift.io/web",
               "buildconfig.build.openshift.io/web", "imagestream.image.openshift.io/web",
               "route.route.openshift.io/web"};
    expected.insert(pods.begin(), pods.end());
    EXPECT_EQ(lines_of(all.out), expected) << all.out;
    auto table = cli({"get", "all"});
    ASSERT_EQ(table.exit_code, 0) << table.err;
    for (const char* s : {"deploymentconfig.apps.openshift.io/web",
                          "route.route.openshift.io/other", "imagestream.image.openshift.io/base",
                          "service/web", "UP-TO-DATE", "HOST/PORT", "PORT(S)"})
        EXPECT_NE(table.out.find(s), std::string::npos) << s << "\n" << table.out;
    EXPECT_EQ(table.out.find("\033["), std::string::npos) << "no colour when not a terminal";

    // -o json: one object, or a List; -o yaml.
    auto one = cli({"get", "route/web", "-o", "json"});
    ASSERT_EQ(one.exit_code, 0) << one.err;
    auto route = json::parse(one.out);
    EXPECT_EQ(route["kind"], "Route");
    EXPECT_EQ(route["metadata"]["labels"]["app"], "web");
    auto list = cli({"get", "dc", "-l", "app=web", "-o", "json"});
    ASSERT_EQ(list.exit_code, 0) << list.err;
    auto parsed = json::parse(list.out);
    EXPECT_EQ(parsed["kind"], "List");
    ASSERT_EQ(parsed["items"].size(), 1u);
    EXPECT_EQ(parsed["items"][0]["status"]["readyReplicas"], 2);
    auto yaml = cli({"get", "is", "web", "-o", "yaml"});
    ASSERT_EQ(yaml.exit_code, 0) << yaml.err;
    EXPECT_EQ(yaml.out.rfind("apiVersion: image.openshift.io/v1\n", 0), 0u) << yaml.out;
    EXPECT_NE(yaml.out.find("kind: ImageStream\n"), std::string::npos) << yaml.out;
    EXPECT_NE(yaml.out.find("  name: web\n"), std::string::npos) << yaml.out;
    auto yaml_list = cli({"get", "all", "-l", "app=other", "-o", "yaml"});
    ASSERT_EQ(yaml_list.exit_code, 0) << yaml_list.err;
    EXPECT_NE(yaml_list.out.find("kind: List\n"), std::string::npos) << yaml_list.out;

    // describe: labels, and each kind's sections.
    auto d = cli({"describe", "route", "web"});
    ASSERT_EQ(d.exit_code, 0) << d.err;
    EXPECT_NE(d.out.find("app=web"), std::string::npos) << d.out;
    EXPECT_NE(d.out.find("Requested Host:"), std::string::npos) << d.out;
    d = cli({"describe", "bc/web"});
    ASSERT_EQ(d.exit_code, 0) << d.err;
    EXPECT_NE(d.out.find("Webhook Generic:\n\tURL:\t" + daemon->host() +
                         "/api/v1/buildconfigs/web/webhooks/<secret>/generic\n"),
              std::string::npos)
        << d.out;
    EXPECT_EQ(d.out.find("s3cr3t"), std::string::npos) << "describe shows no secret";
    EXPECT_NE(d.out.find("Output to:"), std::string::npos) << d.out;
    EXPECT_NE(d.out.find("No builds yet."), std::string::npos) << d.out;
    d = cli({"describe", "svc", "web"});
    ASSERT_EQ(d.exit_code, 0) << d.err;
    EXPECT_NE(d.out.find("Selector:          app=web"), std::string::npos) << d.out;
    d = cli({"describe", "is", "web"});
    EXPECT_NE(d.out.find("app=web"), std::string::npos) << d.out;
    d = cli({"describe", "dc", "web"});
    EXPECT_NE(d.out.find("tier=front"), std::string::npos) << d.out;

    // Exit codes: 1 from the daemon, 2 for usage.
    EXPECT_EQ(cli({"get", "is", "nosuch"}).exit_code, 1);
    EXPECT_EQ(cli({"get", "gizmos"}).exit_code, 1);
    auto bad = cli({"get", "is", "-l", "app in (web"});
    EXPECT_EQ(bad.exit_code, 2);
    EXPECT_NE(bad.err.find("at position 12"), std::string::npos) << bad.err;
    EXPECT_EQ(cli({"get"}).exit_code, 2);
    EXPECT_EQ(cli({"get", "is", "-o", "table"}).exit_code, 2);
    EXPECT_EQ(cli({"frobnicate"}).exit_code, 2);
    EXPECT_EQ(cli({"describe", "bc"}).exit_code, 2);
    EXPECT_EQ(cli({"describe", "bc", "nosuch"}).exit_code, 1);
}

// Colour (the phase column) only when stdout is a terminal (a pty from
// script(1) here), never with NO_COLOR or --no-color, never into a pipe.
TEST_F(CliGetDelete, ColourOnlyOnATerminal) {
    ASSERT_TRUE(test::have_program("script"));
    const std::string esc = "\x1b[";
    auto piped = cli({"get", "dc", "web"});  // rolled out by SetUp: phase Running
    ASSERT_EQ(piped.exit_code, 0) << piped.err;
    ASSERT_NE(piped.out.find("Running"), std::string::npos) << piped.out;
    EXPECT_EQ(piped.out.find(esc), std::string::npos) << piped.out;
    auto on_tty = [&](const std::string& env, const std::string& flags) {
        std::string command =
            env + " CASCADE_HOST=" + daemon->host() + " " + CASCADE_BINARY + " get dc web" + flags;
        auto r = test::run({"script", "-qec", command, "/dev/null"});
        EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
        EXPECT_NE(r.out.find("Running"), std::string::npos) << r.out;
        return r.out;
    };
    EXPECT_NE(on_tty("", "").find(esc + "32mRunning"), std::string::npos) << on_tty("", "");
    EXPECT_EQ(on_tty("NO_COLOR=1", "").find(esc), std::string::npos);
    EXPECT_EQ(on_tty("", " --no-color").find(esc), std::string::npos);
}

TEST_F(CliGetDelete, CompletionAsksTheDaemonForNames) {
    auto script = tmp.path() / "cascade.bash";
    auto gen = cli({"completion", "bash"});
    ASSERT_EQ(gen.exit_code, 0) << gen.err;
    fs::write_file_atomic(script, gen.out);
    // _cascade run as bash runs it on <TAB>: `cascade --host H get is <TAB>`,
    // `cascade del<TAB>`, `cascade get -<TAB>`, `cascade rollout status <TAB>`.
    auto complete = [&](const std::string& words, int cword) {
        auto r = test::run({"bash", "-c",
                            "source " + script.string() + "; COMP_WORDS=(" + words +
                                "); COMP_CWORD=" + std::to_string(cword) +
                                "; _cascade; printf '%s\\n' \"${COMPREPLY[@]}\""});
        EXPECT_EQ(r.exit_code, 0) << r.err;
        return lines_of(r.out);
    };
    std::string head = test::cascade_binary() + " --host " + daemon->host();
    EXPECT_EQ(complete(head + " get is ''", 5), (std::set<std::string>{"base", "other", "web"}));
    EXPECT_EQ(complete(head + " describe route o", 5), std::set<std::string>{"other"});
    EXPECT_EQ(complete(head + " rollout status ''", 5), std::set<std::string>{"web"});
    EXPECT_EQ(complete(head + " start-build ''", 4), std::set<std::string>{"web"});
    EXPECT_EQ(complete(head + " del", 3), std::set<std::string>{"delete"});
    EXPECT_TRUE(complete(head + " get --sel", 4).count("--selector"));
    EXPECT_EQ(complete(head + " get is -o ''", 6),
              (std::set<std::string>{"json", "yaml", "wide", "name"}));
}

TEST_F(CliGetDelete, DeleteByNameFileAndLabel) {
    std::set<std::string> pods;
    auto dc = json::parse(cli({"get", "dc", "web", "-o", "json"}).out);
    for (const auto& p : dc["status"]["pods"])
        pods.insert(p["name"].get<std::string>());
    ASSERT_EQ(pods.size(), 2u);
    auto listed = runc_list();
    for (const auto& p : pods)
        EXPECT_NE(listed.find(p), std::string::npos) << p << " not in runc list: " << listed;
    auto answered = test::http_get(web_port, "/");
    ASSERT_TRUE(answered);
    EXPECT_EQ(answered->status, 200);

    // By name; again: NotFound, exit 1, unless --ignore-not-found.
    auto del = cli({"delete", "route", "other"});
    ASSERT_EQ(del.exit_code, 0) << del.err;
    EXPECT_EQ(del.out, "route.route.openshift.io \"other\" deleted\n");
    EXPECT_EQ(cli({"get", "route", "other"}).exit_code, 1);
    auto again = cli({"delete", "route", "other"});
    EXPECT_EQ(again.exit_code, 1);
    EXPECT_NE(again.err.find("Error from server (NotFound): routes.route.openshift.io \"other\" "
                             "not found"),
              std::string::npos)
        << again.err;
    EXPECT_EQ(cli({"delete", "route", "other", "--ignore-not-found"}).exit_code, 0);

    // By file.
    auto base = tmp.path() / "base.yaml";
    del = cli({"delete", "-f", base.string()});
    ASSERT_EQ(del.exit_code, 0) << del.err;
    EXPECT_EQ(del.out, "imagestream.image.openshift.io \"base\" deleted\n");
    EXPECT_EQ(cli({"get", "is", "base"}).exit_code, 1);

    // Usage errors.
    EXPECT_EQ(cli({"delete"}).exit_code, 2);
    EXPECT_EQ(cli({"delete", "is"}).exit_code, 2);
    EXPECT_EQ(cli({"delete", "all", "-l", "app="}).exit_code, 0);  // nothing has app=""
    EXPECT_EQ(cli({"delete", "all", "-l", "app=(x"}).exit_code, 2);

    // `delete all -l app=web`: the deployment and its containers, the route,
    // the service, the build config and the stream; `other` stays.
    del = cli({"delete", "all", "-l", "app=web"});
    ASSERT_EQ(del.exit_code, 0) << del.err;
    EXPECT_EQ(lines_of(del.out),
              (std::set<std::string>{"buildconfig.build.openshift.io \"web\" deleted",
                                     "deploymentconfig.apps.openshift.io \"web\" deleted",
                                     "route.route.openshift.io \"web\" deleted",
                                     "service \"web\" deleted",
                                     "imagestream.image.openshift.io \"web\" deleted"}))
        << del.out;
    for (const char* obj : {"dc/web", "route/web", "svc/web", "bc/web", "is/web"})
        EXPECT_EQ(cli({"get", obj}).exit_code, 1) << obj;
    ASSERT_TRUE(test::eventually(
        [&] {
            auto now = runc_list();
            for (const auto& p : pods)
                if (now.find(p) != std::string::npos) return false;
            return true;
        },
        60s))
        << runc_list();
    auto gone = test::http_get(web_port, "/", "127.0.0.1", 2000ms);
    EXPECT_TRUE(!gone || gone->status != 200) << gone->body;
    auto empty = cli({"get", "all", "-l", "app=web"});
    EXPECT_EQ(empty.exit_code, 0);
    EXPECT_NE(empty.err.find("No resources found"), std::string::npos) << empty.err;
    EXPECT_EQ(cli({"get", "is", "other"}).exit_code, 0);
}

TEST(CliHelp, EveryCommandHasExamplesAndTheScriptsParse) {
    auto bin = test::cascade_binary();
    auto script = test::run({bin, "completion", "bash"});
    ASSERT_EQ(script.exit_code, 0) << script.err;
    auto commands_at = script.out.find("local commands=\"");
    ASSERT_NE(commands_at, std::string::npos) << script.out;
    commands_at += 16;
    std::stringstream commands(
        script.out.substr(commands_at, script.out.find('"', commands_at) - commands_at));
    int count = 0;
    for (std::string cmd; commands >> cmd; count++) {
        auto help = test::run({bin, cmd, "--help"});
        EXPECT_EQ(help.exit_code, 0) << cmd;
        EXPECT_NE(help.out.find("Examples:\n  cascade"), std::string::npos) << cmd << help.out;
        EXPECT_NE(help.out.find("Exit codes:"), std::string::npos) << cmd;
    }
    EXPECT_GE(count, 15);
    for (const char* cmd : {"get", "describe", "delete", "apply", "start-build", "rollout",
                            "completion", "complete -F _cascade cascade"})
        EXPECT_NE(script.out.find(cmd), std::string::npos) << cmd;
    auto rollout_help = test::run({bin, "rollout", "undo", "--help"});
    EXPECT_NE(rollout_help.out.find("cascade rollout undo"), std::string::npos) << rollout_help.out;

    fs::TempDir tmp({}, "cascade-cli-completion-");
    fs::write_file_atomic(tmp.path() / "c.bash", script.out);
    auto checked = test::run({"bash", "-n", (tmp.path() / "c.bash").string()});
    EXPECT_EQ(checked.exit_code, 0) << checked.err;
    auto zsh = test::run({bin, "completion", "zsh"});
    ASSERT_EQ(zsh.exit_code, 0);
    EXPECT_NE(zsh.out.find("bashcompinit"), std::string::npos);
    if (test::have_program("zsh")) {
        fs::write_file_atomic(tmp.path() / "c.zsh", zsh.out);
        EXPECT_EQ(test::run({"zsh", "-n", (tmp.path() / "c.zsh").string()}).exit_code, 0);
    }
    EXPECT_EQ(test::run({bin, "completion", "fish"}).exit_code, 2);
    EXPECT_EQ(test::run({bin, "--no-such-flag"}).exit_code, 2);
    EXPECT_EQ(test::run({bin, "--help"}).exit_code, 0);
}

}  // namespace

// `cascade` is the client; `cascade serve` runs the daemon binary installed
// beside it (cascaded), which alone loads libcurl and libarchive.
TEST(CliBinaries, TheClientLeavesTheDaemonsLibrariesToCascaded) {
    auto bin = std::filesystem::path(test::cascade_binary());
    auto daemon = bin.parent_path() / "cascaded";
    ASSERT_TRUE(std::filesystem::exists(daemon)) << daemon;
    auto client_libs = test::run({"ldd", bin.string()});
    ASSERT_EQ(client_libs.exit_code, 0) << client_libs.err;
    for (const char* lib : {"libcurl", "libarchive", "libsqlite3"})
        EXPECT_EQ(client_libs.out.find(lib), std::string::npos) << lib << " in\n"
                                                                << client_libs.out;
    auto daemon_libs = test::run({"ldd", daemon.string()});
    EXPECT_NE(daemon_libs.out.find("libcurl"), std::string::npos) << daemon_libs.out;

    // Without cascaded beside it, `serve` says what is missing.
    fs::TempDir tmp({}, "cascade-cli-alone-");
    auto alone = tmp.path() / "cascade";
    std::filesystem::copy_file(bin, alone);
    std::filesystem::permissions(alone, std::filesystem::perms::owner_exec,
                                 std::filesystem::perm_options::add);
    auto r = test::run({alone.string(), "serve", "--root", (tmp.path() / "root").string(),
                        "--listen", "127.0.0.1:" + std::to_string(test::free_port())},
                       30s);
    EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
    EXPECT_NE(r.err.find((tmp.path() / "cascaded").string()), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("installed beside cascade"), std::string::npos) << r.err;
    EXPECT_FALSE(std::filesystem::exists(tmp.path() / "root")) << "nothing was started";
}
