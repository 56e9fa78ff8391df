// The BuildConfig parser: git source, dockerStrategy (env, buildArgs,
// noCache, dockerfilePath, from), webhook triggers with secrets, postCommit,
// history limits, and errors that name the object and field and list what is
// supported.
#include <gtest/gtest.h>

#include "cli/objects.hpp"
#include "oci/error.hpp"
#include "oci/fs.hpp"

using namespace cascade;
using nlohmann::json;

namespace {

json git_build_config() {
    return json::parse(R"({
        "apiVersion": "build.openshift.io/v1", "kind": "BuildConfig",
        "metadata": {"name": "app-a"},
        "spec": {
            "source": {"type": "Git", "git": {"uri": "file:///srv/repo", "ref": "v1.2"},
                       "contextDir": "app-a/./src"},
            "strategy": {"type": "Docker", "dockerStrategy": {
                "from": {"kind": "ImageStreamTag", "name": "httpd-base:latest"},
                "dockerfilePath": "docker/Dockerfile",
                "buildArgs": [{"name": "VERSION", "value": "1"}],
                "env": [{"name": "MODE", "value": "prod"}, {"name": "A_B", "value": "x y"}],
                "noCache": true}},
            "output": {"to": {"kind": "ImageStreamTag", "name": "app-a:latest"}},
            "triggers": [{"type": "ImageChange", "imageChange": {}}, {"type": "ConfigChange"},
                         {"type": "Generic", "generic": {"secret": "s3cr3t"}},
                         {"type": "GitHub", "github": {"secret": "gh-secret"}}],
            "postCommit": {"script": "make test $1", "args": ["-v"]},
            "successfulBuildsHistoryLimit": 2, "failedBuildsHistoryLimit": 1}})");
}

std::string error_of(const json& obj) {
    try {
        cli::build_config_from_object(obj);
    } catch (const Error& e) {
        return e.what();
    }
    return "(no error)";
}

TEST(BuildConfigObject, GitSourceStrategyTriggersAndPostCommit) {
    auto s = cli::build_config_from_object(git_build_config());
    EXPECT_EQ(s.git_uri, "file:///srv/repo");
    EXPECT_EQ(s.git_ref, "v1.2");
    EXPECT_EQ(s.git_context_dir, "app-a/src");
    EXPECT_TRUE(s.context.empty());
    EXPECT_EQ(s.dockerfile, "docker/Dockerfile");
    EXPECT_EQ(s.from_override, "httpd-base:latest");
    EXPECT_EQ(s.build_args.at("VERSION"), "1");
    ASSERT_EQ(s.env.size(), 2u);
    EXPECT_EQ(s.env[0], (std::pair<std::string, std::string>{"MODE", "prod"}));
    EXPECT_EQ(s.env[1], (std::pair<std::string, std::string>{"A_B", "x y"}));
    EXPECT_TRUE(s.no_cache);
    EXPECT_TRUE(s.image_change_trigger);
    EXPECT_TRUE(s.config_change_trigger);
    EXPECT_EQ(s.generic_secrets, std::vector<std::string>{"s3cr3t"});
    EXPECT_EQ(s.github_secrets, std::vector<std::string>{"gh-secret"});
    EXPECT_EQ(s.post_commit.script, "make test $1");
    EXPECT_EQ(s.post_commit.args, std::vector<std::string>{"-v"});
    EXPECT_EQ(s.successful_builds_history_limit, 2);
    EXPECT_EQ(s.failed_builds_history_limit, 1);
    // The stored form reads back the same (else every apply would rebuild).
    EXPECT_EQ(engine::BuildConfigSpec::from_json(s.to_json()), s);
}

TEST(BuildConfigObject, ErrorsNameTheFieldAndListWhatIsSupported) {
    auto with = [](const std::string& pointer, const json& value) {
        auto obj = git_build_config();
        obj[json::json_pointer(pointer)] = value;
        return error_of(obj);
    };
    auto without = [](const std::string& pointer) {
        auto obj = git_build_config();
        auto p = json::json_pointer(pointer);
        obj[p.parent_pointer()].erase(p.back());
        return error_of(obj);
    };
    auto expect = [](const std::string& message, std::vector<std::string> parts) {
        for (const auto& part : parts)
            EXPECT_NE(message.find(part), std::string::npos) << message << " lacks " << part;
    };
    expect(with("/spec/source/type", "Binary"),
           {"BuildConfig \"app-a\"", "spec.source.type \"Binary\"", "Git, Dockerfile"});
    expect(with("/spec/strategy/type", "Source"),
           {"BuildConfig \"app-a\"", "spec.strategy.type \"Source\"", "(Docker)"});
    expect(with("/spec/strategy/sourceStrategy", json::object()),
           {"spec.strategy.sourceStrategy", "dockerStrategy"});
    expect(without("/spec/source/git/uri"), {"spec.source.git.uri is missing"});
    expect(with("/spec/source/contextDir", "../outside"),
           {"spec.source.contextDir \"../outside\"", "inside the git repository"});
    expect(with("/spec/strategy/dockerStrategy/dockerfilePath", "/etc/Dockerfile"),
           {"dockerfilePath", "relative"});
    expect(with("/spec/strategy/dockerStrategy/env/0", {{"name", "1BAD"}}),
           {"spec.strategy.dockerStrategy.env[0].name \"1BAD\""});
    expect(with("/spec/strategy/dockerStrategy/env/0/valueFrom", json::object()),
           {"env[0].valueFrom is not supported"});
    expect(with("/spec/strategy/dockerStrategy/noCache", "yes"),
           {"spec.strategy.dockerStrategy.noCache must be true or false"});
    expect(with("/spec/triggers/2/generic", json::object()),
           {"spec.triggers[2].generic.secret is missing"});
    expect(with("/spec/triggers/3/github", {{"secretReference", {{"name", "x"}}}}),
           {"spec.triggers[3].github.secretReference is not supported"});
    expect(with("/spec/triggers/2/generic/secret", "a/b"), {"secret may only hold"});
    expect(with("/spec/triggers/0/type", "GitLab"),
           {"spec.triggers[0].type \"GitLab\"", "ImageChange, ConfigChange, Generic, GitHub"});
    expect(with("/spec/postCommit/command", json::array({"make"})),
           {"spec.postCommit", "script or command, not both"});
    expect(with("/spec/postCommit/args", "-v"), {"spec.postCommit.args must be a list"});
    auto obj = git_build_config();
    obj["spec"]["source"].erase("git");
    obj["spec"]["source"].erase("contextDir");
    obj["spec"]["source"].erase("type");
    expect(error_of(obj), {"spec.source.contextDir is missing", "spec.source.git"});
}

TEST(BuildConfigObject, LocalDirectorySourceStaysAsBefore) {
    fs::TempDir tmp({}, "cascade-bcobj-");
    fs::write_file_atomic(tmp.path() / "bc.yaml", R"(apiVersion: build.openshift.io/v1
kind: BuildConfig
metadata: {name: local}
spec:
  source: {contextDir: ctx}
  strategy: {dockerStrategy: {}}
  output: {to: {kind: ImageStreamTag, name: local:v1}}
---
apiVersion: build.openshift.io/v1
kind: BuildConfig
metadata: {name: from-git}
spec:
  source: {git: {uri: ./repo}, contextDir: sub}
  output: {to: {kind: ImageStreamTag, name: g:latest}}
)");
    auto objects = cli::load_objects(tmp.path() / "bc.yaml");
    ASSERT_EQ(objects.size(), 2u);
    auto local = cli::build_config_from_object(objects[0]);
    EXPECT_EQ(local.context, std::filesystem::weakly_canonical(tmp.path() / "ctx"));
    EXPECT_TRUE(local.git_uri.empty());
    EXPECT_EQ(local.output_tag, "v1");
    EXPECT_FALSE(local.image_change_trigger);
    EXPECT_TRUE(local.generic_secrets.empty());
    // A git source's contextDir is inside the repository, not made absolute.
    auto git = cli::build_config_from_object(objects[1]);
    EXPECT_EQ(git.git_context_dir, "sub");
    EXPECT_EQ(git.git_uri, std::filesystem::weakly_canonical(tmp.path() / "repo").string());
    EXPECT_TRUE(git.context.empty());
}

}  // namespace
