// HEALTHCHECK, ONBUILD and .dockerignore in real builds (store, overlayfs,
// runc): what lands in the image config and history, triggers running in
// the child build, and files a .dockerignore hides from COPY.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "engine/builder.hpp"
#include "oci/error.hpp"
#include "oci/image.hpp"
#include "support.hpp"
#include "tests/engine/builder_fixture.hpp"

using namespace cascade;

namespace {

namespace stdfs = std::filesystem;
using builder_testing::BuilderTest;
using builder_testing::write_text;
using Strings = std::vector<std::string>;

std::vector<std::string> history_of(const oci::ImageConfig& config) {
    std::vector<std::string> out;
    for (const auto& h : config.history)
        out.push_back(h.created_by);
    return out;
}

TEST_F(BuilderTest, HealthcheckLandsInTheConfigAsBuildkitWritesIt) {
    auto result = build(
        "FROM scratch\n"
        "HEALTHCHECK --interval=5m --timeout=3s --retries=3 \\\n"
        "  CMD curl -f http://localhost/ || exit 1\n");
    auto config = config_of(manifest_of("app", result.manifest_digest));
    ASSERT_TRUE(config.config.healthcheck);
    const auto& h = *config.config.healthcheck;
    EXPECT_EQ(h.test, (Strings{"CMD-SHELL", "curl -f http://localhost/ || exit 1"}));
    EXPECT_EQ(h.interval_ns, 300'000'000'000);
    EXPECT_EQ(h.timeout_ns, 3'000'000'000);
    EXPECT_EQ(h.start_period_ns, 0);
    EXPECT_EQ(h.retries, 3);
    ASSERT_EQ(config.history.size(), 1u);
    EXPECT_EQ(config.history[0].created_by,
              "HEALTHCHECK &{[\"CMD-SHELL\" \"curl -f http://localhost/ || exit 1\"] \"5m0s\" "
              "\"3s\" \"0s\" \"0s\" '\\x03'}");
    EXPECT_TRUE(config.history[0].empty_layer);

    // Exec form, start period and interval; a later HEALTHCHECK replaces it.
    result = build(
        "FROM scratch\n"
        "HEALTHCHECK CMD true\n"
        "HEALTHCHECK --start-period=1m30s --start-interval=500ms CMD [\"/bin/check\", \"a b\"]\n",
        "app2");
    config = config_of(manifest_of("app2", result.manifest_digest));
    ASSERT_TRUE(config.config.healthcheck);
    EXPECT_EQ(config.config.healthcheck->test, (Strings{"CMD", "/bin/check", "a b"}));
    EXPECT_EQ(config.config.healthcheck->start_period_ns, 90'000'000'000);
    EXPECT_EQ(config.config.healthcheck->start_interval_ns, 500'000'000);
    EXPECT_EQ(config.history.back().created_by,
              "HEALTHCHECK &{[\"CMD\" \"/bin/check\" \"a b\"] \"0s\" \"0s\" \"1m30s\" \"500ms\" "
              "'\\x00'}");

    // NONE in a child disables the inherited check.
    result = build("FROM app2\nHEALTHCHECK NONE\n", "app3");
    config = config_of(manifest_of("app3", result.manifest_digest));
    ASSERT_TRUE(config.config.healthcheck);
    EXPECT_EQ(config.config.healthcheck->test, (Strings{"NONE"}));
    EXPECT_EQ(config.history.back().created_by,
              "HEALTHCHECK &{[\"NONE\"] \"0s\" \"0s\" \"0s\" \"0s\" '\\x00'}");
}

TEST_F(BuilderTest, HealthcheckErrorsNameTheLine) {
    auto message = error_of(request("FROM scratch\nHEALTHCHECK --interval=10 CMD true\n"));
    EXPECT_EQ(message.rfind("Dockerfile:2: HEALTHCHECK --interval=10: time: missing unit", 0), 0u)
        << message;
    message = error_of(request("FROM scratch\n\nHEALTHCHECK --timeout=10us CMD true\n"));
    EXPECT_EQ(message.rfind("Dockerfile:3: HEALTHCHECK --timeout=10us", 0), 0u) << message;
    EXPECT_NE(message.find("cannot be less than 1ms"), std::string::npos) << message;
    message = error_of(request("FROM scratch\nHEALTHCHECK --retries=-1 CMD true\n"));
    EXPECT_NE(message.find("--retries cannot be negative"), std::string::npos) << message;
}

TEST_F(BuilderTest, OnbuildTriggersRunInTheChildBuild) {
    build_base("onbase",
               "ONBUILD RUN echo triggered > /triggered\n"
               "ONBUILD ENV FROM_TRIGGER=yes\n");
    auto base_config = config_of(manifest_of("onbase", *store.tag_digest("onbase", "latest")));
    EXPECT_EQ(base_config.config.on_build,
              (Strings{"RUN echo triggered > /triggered", "ENV FROM_TRIGGER=yes"}));
    auto base_history = history_of(base_config);
    ASSERT_GE(base_history.size(), 2u);
    EXPECT_EQ(base_history[base_history.size() - 2], "ONBUILD RUN echo triggered > /triggered");
    EXPECT_EQ(base_history.back(), "ONBUILD ENV FROM_TRIGGER=yes");
    EXPECT_TRUE(base_config.history.back().empty_layer);

    // The triggers run right after FROM, before the child's own steps, and
    // the child does not carry them on.
    auto child = build(
        "FROM onbase\n"
        "RUN cat /triggered > /seen && echo $FROM_TRIGGER >> /seen\n",
        "onchild");
    auto manifest = manifest_of("onchild", child.manifest_digest);
    auto config = config_of(manifest);
    EXPECT_TRUE(config.config.on_build.empty());
    EXPECT_NE(std::find(config.config.env.begin(), config.config.env.end(), "FROM_TRIGGER=yes"),
              config.config.env.end());
    EXPECT_EQ(file_in(manifest.layers.back(), "seen"), "triggered\nyes\n");
    auto history = history_of(config);
    ASSERT_GE(history.size(), 3u);
    EXPECT_EQ(history[history.size() - 3], "RUN /bin/sh -c echo triggered > /triggered # buildkit");
    EXPECT_EQ(history[history.size() - 2], "ENV FROM_TRIGGER=yes");
    EXPECT_TRUE(logged("--> ONBUILD RUN echo triggered > /triggered"));

    // A grandchild runs nothing again.
    log.clear();
    auto grandchild = build("FROM onchild\nENV X=1\n", "ongrandchild");
    EXPECT_FALSE(logged("ONBUILD"));
    auto gconfig = config_of(manifest_of("ongrandchild", grandchild.manifest_digest));
    EXPECT_EQ(gconfig.history.size(), config.history.size() + 1);
}

TEST_F(BuilderTest, FailingOnbuildTriggerNamesTheFromLine) {
    build_base("onfail", "ONBUILD RUN exit 3\n");
    auto message = error_of(request("# a child\nFROM onfail\nENV A=1\n", "child"));
    EXPECT_EQ(message.rfind("Dockerfile:2: FROM onfail", 0), 0u) << message;
    EXPECT_NE(message.find("ONBUILD trigger RUN exit 3"), std::string::npos) << message;
    EXPECT_NE(message.find("exit status 3"), std::string::npos) << message;
}

TEST_F(BuilderTest, DockerignoreHidesFilesFromCopy) {
    write_text(context / ".dockerignore",
               "# build outputs and docs\n"
               "*.md\n"
               "!README.md\n"
               "**/*.o\n"
               "secret\n"
               "Dockerfile\n");
    write_text(context / "Dockerfile", "unused: the test passes the text\n");
    write_text(context / "README.md", "readme\n");
    write_text(context / "CHANGES.md", "changes\n");
    write_text(context / "src/main.c", "int main;\n");
    write_text(context / "src/main.o", "object\n");
    write_text(context / "main.o", "object\n");
    write_text(context / "secret/key", "private\n");
    auto result = build("FROM scratch\nCOPY . /app\nCOPY *.md /docs/\n");
    auto manifest = manifest_of("app", result.manifest_digest);
    ASSERT_EQ(manifest.layers.size(), 2u);
    EXPECT_EQ(names(entries(manifest.layers[0])),
              (Strings{"app", "app/.dockerignore", "app/README.md", "app/busybox", "app/src",
                       "app/src/main.c"}));
    EXPECT_EQ(names(entries(manifest.layers[1])), (Strings{"docs", "docs/README.md"}));

    // Naming an ignored file is an error that says why.
    auto message = error_of(request("FROM scratch\nCOPY secret/key /key\n"));
    EXPECT_EQ(message.rfind("Dockerfile:2: COPY secret/key /key", 0), 0u) << message;
    EXPECT_NE(message.find("excluded from the build context"), std::string::npos) << message;
    EXPECT_NE(message.find(".dockerignore"), std::string::npos) << message;
}

TEST_F(BuilderTest, DockerfileSpecificIgnoreFileAndIgnoredDockerfile) {
    write_text(context / "build/app.Dockerfile", "FROM scratch\nCOPY . /ctx\n");
    // BuildKit reads <Dockerfile>.dockerignore instead of .dockerignore; the
    // Dockerfile is read even though it is ignored.
    write_text(context / "build/app.Dockerfile.dockerignore", "busybox\nbuild\n");
    write_text(context / ".dockerignore", "*\n");
    write_text(context / "kept.txt", "kept\n");
    auto r = request("");
    r.dockerfile_text.reset();
    r.dockerfile = "build/app.Dockerfile";
    auto result = builder.build(r);
    auto manifest = manifest_of("app", result.manifest_digest);
    ASSERT_EQ(manifest.layers.size(), 1u);
    EXPECT_EQ(names(entries(manifest.layers[0])),
              (Strings{"ctx", "ctx/.dockerignore", "ctx/kept.txt"}));
}

}  // namespace
