// The build executor against the real store, overlayfs and runc: layers,
// configs, base annotations, reproducibility, failures and confinement.
#include "engine/builder.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "engine/image_source.hpp"
#include "oci/error.hpp"
#include "oci/fs.hpp"
#include "oci/image.hpp"
#include "oci/media_types.hpp"
#include "registry/blob_store.hpp"
#include "registry/database.hpp"
#include "registry/store.hpp"
#include "runtime/rootfs.hpp"
#include "runtime/runc.hpp"
#include "support.hpp"
#include "tests/engine/builder_fixture.hpp"

using namespace cascade;

namespace {

namespace stdfs = std::filesystem;

using builder_testing::BuilderTest;
using builder_testing::TarEntry;
using builder_testing::write_text;

TEST_F(BuilderTest, ScratchCopyAndRunGiveOneLayerEach) {
    auto result = build(
        "FROM scratch\n"
        "COPY busybox /bin/busybox\n"
        "RUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo hi > /hello && echo streamed output\"]\n");
    auto manifest = manifest_of("app", result.manifest_digest);
    ASSERT_EQ(manifest.layers.size(), 2u);
    for (const auto& l : manifest.layers)
        EXPECT_EQ(l.media_type, oci::media::kLayerGzip);
    EXPECT_TRUE(manifest.annotations.empty()) << "no base annotations for scratch";

    auto copied = entries(manifest.layers[0]);
    EXPECT_EQ(names(copied), (std::vector<std::string>{"bin", "bin/busybox"}));
    EXPECT_EQ(copied["bin/busybox"].mode, "-rwxr-xr-x");
    EXPECT_EQ(copied["bin/busybox"].owner, "0/0");
    EXPECT_EQ(copied["bin"].mode, "drwxr-xr-x");

    // Only what the RUN wrote: runc's mount points (/proc, /dev, /sys, /etc
    // stubs) are not part of the layer.
    auto ran = entries(manifest.layers[1]);
    EXPECT_EQ(names(ran), (std::vector<std::string>{"hello"}));
    EXPECT_EQ(file_in(manifest.layers[1], "hello"), "hi\n");

    auto config = config_of(manifest);
    ASSERT_EQ(config.diff_ids.size(), 2u);
    EXPECT_EQ(config.created, "1970-01-01T00:00:00Z");
    ASSERT_EQ(config.history.size(), 2u);
    EXPECT_EQ(config.history[0].created_by, "COPY busybox /bin/busybox # buildkit");
    EXPECT_EQ(config.history[1].created_by,
              "RUN /bin/busybox sh -c echo hi > /hello && echo streamed output # buildkit");
    EXPECT_EQ(config.history[1].comment, "buildkit.dockerfile.v0");
    EXPECT_FALSE(config.history[1].empty_layer);
    EXPECT_EQ(store.tag_digest("app", "latest"), result.manifest_digest);
    EXPECT_TRUE(result.tag_moved);
    EXPECT_TRUE(logged("streamed output"));
    EXPECT_TRUE(logged("STEP 3/3: RUN"));
}

TEST_F(BuilderTest, ConfigInstructionsLandInTheConfig) {
    auto result = build(
        "FROM scratch\n"
        "ENV A=1 B=\"two words\"\n"
        "ENV C=${A}-$B\n"
        "WORKDIR /srv\n"
        "WORKDIR app\n"
        "USER 1000:1000\n"
        "EXPOSE 8080 53/udp\n"
        "LABEL org.example.name=\"demo app\" version=1\n"
        "STOPSIGNAL SIGQUIT\n"
        "VOLUME /data\n"
        "ENTRYPOINT [\"/bin/app\"]\n"
        "CMD serve --port 8080\n"
        "MAINTAINER someone@example.com\n");
    auto manifest = manifest_of("app", result.manifest_digest);
    auto config = config_of(manifest);
    const auto& c = config.config;
    EXPECT_EQ(c.env, (std::vector<std::string>{
                         "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "A=1",
                         "B=two words", "C=1-two words"}));
    EXPECT_EQ(c.working_dir, "/srv/app");
    EXPECT_EQ(c.user, "1000:1000");
    EXPECT_EQ(c.exposed_ports, (std::vector<std::string>{"53/udp", "8080/tcp"}));
    EXPECT_EQ(c.labels.at("org.example.name"), "demo app");
    EXPECT_EQ(c.labels.at("version"), "1");
    EXPECT_EQ(c.stop_signal, "SIGQUIT");
    EXPECT_EQ(c.volumes, (std::vector<std::string>{"/data"}));
    EXPECT_EQ(c.entrypoint, (std::vector<std::string>{"/bin/app"}));
    EXPECT_EQ(c.cmd, (std::vector<std::string>{"/bin/sh", "-c", "serve --port 8080"}));
    EXPECT_EQ(config.author, "someone@example.com");

    // The WORKDIRs created their directories as layers; nothing else did.
    ASSERT_EQ(manifest.layers.size(), 2u);
    EXPECT_EQ(names(entries(manifest.layers[0])), (std::vector<std::string>{"srv"}));
    EXPECT_EQ(names(entries(manifest.layers[1])), (std::vector<std::string>{"srv", "srv/app"}));
    size_t empty = 0;
    for (const auto& h : config.history)
        empty += h.empty_layer ? 1 : 0;
    EXPECT_EQ(config.history.size(), 12u);
    EXPECT_EQ(empty, 10u);
}

TEST_F(BuilderTest, EntrypointResetsInheritedCmd) {
    build_base("base");
    auto child = build(
        "FROM base\n"
        "ENTRYPOINT [\"/bin/echo\"]\n",
        "child");
    auto c = config_of(manifest_of("child", child.manifest_digest)).config;
    EXPECT_EQ(c.entrypoint, (std::vector<std::string>{"/bin/echo"}));
    EXPECT_FALSE(c.cmd.has_value());

    auto own = build(
        "FROM base\n"
        "CMD [\"hello\"]\n"
        "ENTRYPOINT [\"/bin/echo\"]\n",
        "child2");
    auto c2 = config_of(manifest_of("child2", own.manifest_digest)).config;
    EXPECT_EQ(c2.cmd, (std::vector<std::string>{"hello"}));
}

TEST_F(BuilderTest, FromAPreviousBuildCarriesBaseAnnotations) {
    auto base = build_base();
    write_text(context / "index.html", "<h1>app-a</h1>\n");
    auto app = build(
        "FROM httpd-base\n"
        "COPY index.html /www/\n"
        "RUN cat /www/index.html > /www/copy.html && id -u > /www/uid\n",
        "app-a");
    EXPECT_EQ(app.base_name, "httpd-base:latest");
    ASSERT_TRUE(app.base_digest);
    EXPECT_EQ(*app.base_digest, base.manifest_digest);

    auto manifest = manifest_of("app-a", app.manifest_digest);
    EXPECT_EQ(manifest.annotations.at("org.opencontainers.image.base.name"), "httpd-base:latest");
    EXPECT_EQ(manifest.annotations.at("org.opencontainers.image.base.digest"),
              base.manifest_digest.str());

    auto base_manifest = manifest_of("httpd-base", base.manifest_digest);
    ASSERT_EQ(manifest.layers.size(), base_manifest.layers.size() + 2);
    for (size_t i = 0; i < base_manifest.layers.size(); i++)
        EXPECT_EQ(manifest.layers[i], base_manifest.layers[i]);
    auto config = config_of(manifest);
    EXPECT_EQ(config.config.cmd, (std::vector<std::string>{"/bin/sh"}));  // inherited
    EXPECT_EQ(config.history.size(), config_of(base_manifest).history.size() + 2);

    const auto& copied = manifest.layers[manifest.layers.size() - 2];
    EXPECT_EQ(names(entries(copied)), (std::vector<std::string>{"www", "www/index.html"}));
    const auto& ran = manifest.layers.back();
    // /etc got mount points for resolv.conf and hosts during the RUN; it is
    // not part of the layer.
    EXPECT_EQ(names(entries(ran)), (std::vector<std::string>{"www", "www/copy.html", "www/uid"}));
    EXPECT_EQ(file_in(ran, "www/copy.html"), "<h1>app-a</h1>\n");
    EXPECT_EQ(file_in(ran, "www/uid"), "0\n");

    // The blobs are served from the output repository.
    for (const auto& l : manifest.layers)
        EXPECT_TRUE(store.repo_has_blob("app-a", l.digest));
}

TEST_F(BuilderTest, SameInputsSameDigestAndAChangeMovesTheTag) {
    write_text(context / "index.html", "v1\n");
    const std::string dockerfile =
        "FROM scratch\n"
        "COPY busybox /bin/busybox\n"
        "COPY index.html /www/\n"
        "RUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo ran > /ran\"]\n";
    auto first = build(dockerfile);
    EXPECT_TRUE(first.tag_moved);

    // A fresh mtime on a context file does not matter: times are clamped.
    ::utimensat(AT_FDCWD, (context / "index.html").c_str(), nullptr, 0);
    auto second = build(dockerfile);
    EXPECT_EQ(second.manifest_digest, first.manifest_digest);
    EXPECT_EQ(second.config_digest, first.config_digest);
    EXPECT_FALSE(second.tag_moved);
    EXPECT_EQ(store.tag_history("app", "latest").size(), 1u);

    write_text(context / "index.html", "v2\n");
    auto third = build(dockerfile);
    EXPECT_NE(third.manifest_digest, first.manifest_digest);
    EXPECT_TRUE(third.tag_moved);
    auto history = store.tag_history("app", "latest");
    ASSERT_EQ(history.size(), 2u);
    EXPECT_EQ(history[0].generation, 2);
    EXPECT_EQ(history[0].digest, third.manifest_digest);
    EXPECT_EQ(history[1].digest, first.manifest_digest);
    EXPECT_EQ(history[0].cause, "build");
}

TEST_F(BuilderTest, SourceDateEpochSetsEveryTimestamp) {
    ::setenv("SOURCE_DATE_EPOCH", "1700000000", 1);
    engine::BuildResult result;
    try {
        result = build("FROM scratch\nCOPY busybox /bin/busybox\nENV X=1\n");
    } catch (...) {
        ::unsetenv("SOURCE_DATE_EPOCH");
        throw;
    }
    ::unsetenv("SOURCE_DATE_EPOCH");
    auto manifest = manifest_of("app", result.manifest_digest);
    auto config = config_of(manifest);
    EXPECT_EQ(config.created, "2023-11-14T22:13:20Z");
    for (const auto& h : config.history)
        EXPECT_EQ(h.created, "2023-11-14T22:13:20Z");
    auto listed = test::run({"tar", "--full-time", "-tvzf", blobs.path(manifest.layers[0].digest)});
    EXPECT_NE(listed.out.find("2023-11-14 22:13:20 bin/busybox"), std::string::npos) << listed.out;
}

TEST_F(BuilderTest, RunFailureNamesTheLineAndCleansUp) {
    auto r = request(
        "FROM scratch\n"
        "COPY busybox /bin/busybox\n"
        "\n"
        "RUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo about to fail; exit 3\"]\n");
    auto message = error_of(r);
    EXPECT_EQ(message.rfind("Dockerfile:4: RUN ", 0), 0u) << message;
    EXPECT_NE(message.find("failed with exit status 3"), std::string::npos) << message;
    EXPECT_TRUE(logged("about to fail"));
    EXPECT_FALSE(store.tag_digest("app", "latest").has_value());
    // TearDown checks mounts, containers and the work dir.
}

TEST_F(BuilderTest, ShellFormRunUsesShellAndStaysInItsWorkdir) {
    build_base("base");
    auto result = build(
        "FROM base\n"
        "WORKDIR /work\n"
        "RUN pwd > where && echo \"$0\" > shell\n"
        "USER app\n"
        "RUN id -u > /tmp-uid || true\n",
        "shell");
    auto manifest = manifest_of("shell", result.manifest_digest);
    const auto& ran = manifest.layers.back();
    EXPECT_EQ(file_in(ran, "work/where"), "/work\n");
    EXPECT_EQ(file_in(ran, "work/shell"), "/bin/sh\n");
    // As app (uid 1000), / is not writable: the second RUN wrote nothing and
    // made no layer.
    auto config = config_of(manifest);
    EXPECT_TRUE(config.history.back().empty_layer)
        << testing::PrintToString(names(entries(manifest.layers.back())));
}

TEST_F(BuilderTest, CopyThroughSymlinksStaysInsideTheRootfs) {
    auto host_target = tmp.path() / "host-target";
    stdfs::create_directories(host_target);
    build_base("base");
    build(
        "FROM base\n"
        "RUN ln -s / /rootlink && ln -s " +
            host_target.string() + " /abs && ln -s ../../../../../../../.." + host_target.string() +
            " /rel\n",
        "links");
    write_text(context / "a.txt", "a\n");
    write_text(context / "b.txt", "b\n");
    write_text(context / "c.txt", "c\n");
    // Names no host has at its root: copies to the image's "/" must not reach it.
    const auto unique = tmp.path().filename().string();
    write_text(context / (unique + "-d"), "d\n");
    write_text(context / (unique + "-e"), "e\n");
    auto result = build(
        "FROM links\n"
        "COPY a.txt /abs/\n"
        "COPY b.txt /rel/b.txt\n"
        "COPY c.txt /rootlink/etc/\n"
        "COPY " +
            unique +
            "-d /\n"
            "COPY " +
            unique + "-e //rootlink/../\n",
        "confined");
    EXPECT_TRUE(stdfs::is_empty(host_target)) << "a COPY wrote outside the image";
    EXPECT_FALSE(stdfs::exists("/" + unique + "-d")) << "a COPY wrote to the host's /";
    EXPECT_FALSE(stdfs::exists("/" + unique + "-e")) << "a COPY wrote to the host's /";

    auto manifest = manifest_of("confined", result.manifest_digest);
    auto inside = host_target.relative_path().string();  // tmp/cascade-builder-…/host-target
    auto n = manifest.layers.size();
    EXPECT_EQ(file_in(manifest.layers[n - 5], inside + "/a.txt"), "a\n");
    EXPECT_EQ(file_in(manifest.layers[n - 4], inside + "/b.txt"), "b\n");
    EXPECT_EQ(file_in(manifest.layers[n - 3], "etc/c.txt"), "c\n");
    // The existing /etc kept the image's metadata.
    EXPECT_EQ(entries(manifest.layers[n - 3])["etc"].mode, "drwxr-xr-x");
    EXPECT_EQ(file_in(manifest.layers[n - 2], unique + "-d"), "d\n");
    EXPECT_EQ(file_in(manifest.layers[n - 1], unique + "-e"), "e\n");
}

TEST_F(BuilderTest, CopySourcesCannotLeaveTheContext) {
    auto outside = tmp.path() / "secret.txt";
    write_text(outside, "secret\n");
    stdfs::create_symlink(outside, context / "evil");
    auto message = error_of(request("FROM scratch\nCOPY ../secret.txt /x\n"));
    EXPECT_EQ(message.rfind("Dockerfile:2: ", 0), 0u) << message;
    EXPECT_NE(message.find("outside the build context"), std::string::npos) << message;

    // A symlink in the context resolves inside the context, where its target
    // does not exist.
    message = error_of(request("FROM scratch\nCOPY evil /x\n"));
    EXPECT_EQ(message.rfind("Dockerfile:2: ", 0), 0u) << message;
    EXPECT_NE(message.find("not found"), std::string::npos) << message;
}

TEST_F(BuilderTest, CopyFollowsDockerRules) {
    build_base("base");
    write_text(context / "site/index.html", "index\n");
    write_text(context / "site/css/main.css", "css\n", 0600);
    write_text(context / "one.txt", "1\n");
    write_text(context / "two.txt", "2\n");
    ::chmod((context / "site").c_str(), 0750);
    auto result = build(
        "FROM base\n"
        "WORKDIR /app\n"
        "COPY site html\n"
        "COPY *.txt ./\n"
        "COPY --chown=app:staff one.txt /owned/renamed.txt\n"
        "COPY --chown=1000 --chmod=640 two.txt /moded/\n",
        "rules");
    auto manifest = manifest_of("rules", result.manifest_digest);
    auto n = manifest.layers.size();
    auto site = entries(manifest.layers[n - 4]);
    EXPECT_EQ(names(site),
              (std::vector<std::string>{"app", "app/html", "app/html/css", "app/html/css/main.css",
                                        "app/html/index.html"}));
    EXPECT_EQ(site["app/html"].mode, "drwxr-x---");  // the copied directory's mode
    EXPECT_EQ(site["app/html/css/main.css"].mode, "-rw-------");
    EXPECT_EQ(site["app/html/index.html"].owner, "0/0");
    auto glob = entries(manifest.layers[n - 3]);
    EXPECT_EQ(names(glob), (std::vector<std::string>{"app", "app/one.txt", "app/two.txt"}));
    auto owned = entries(manifest.layers[n - 2]);
    EXPECT_EQ(owned["owned/renamed.txt"].owner, "1000/50");
    EXPECT_EQ(owned["owned"].owner, "1000/50");
    auto moded = entries(manifest.layers[n - 1]);
    EXPECT_EQ(moded["moded/two.txt"].owner, "1000/1000");
    EXPECT_EQ(moded["moded/two.txt"].mode, "-rw-r-----");
}

TEST_F(BuilderTest, MultiStageCopyFrom) {
    auto result = build(
        "FROM scratch AS builder\n"
        "COPY busybox /bin/busybox\n"
        "RUN [\"/bin/busybox\", \"sh\", \"-c\", \"mkdir /out && echo built > /out/result\"]\n"
        "\n"
        "FROM scratch AS unused\n"
        "COPY busybox /bin/busybox\n"
        "RUN [\"/bin/busybox\", \"false\"]\n"
        "\n"
        "FROM scratch\n"
        "COPY --from=builder /out/result /app/result\n"
        "COPY --from=0 /bin/busybox /bin/\n");
    auto manifest = manifest_of("app", result.manifest_digest);
    ASSERT_EQ(manifest.layers.size(), 2u);
    EXPECT_EQ(names(entries(manifest.layers[0])), (std::vector<std::string>{"app", "app/result"}));
    EXPECT_EQ(file_in(manifest.layers[0], "app/result"), "built\n");
    EXPECT_EQ(names(entries(manifest.layers[1])), (std::vector<std::string>{"bin", "bin/busybox"}));
    EXPECT_TRUE(manifest.annotations.empty());
    EXPECT_FALSE(logged("FROM scratch AS unused")) << "a stage nobody needs was built";

    // --target builds only up to that stage.
    auto r = request(
        "FROM scratch AS first\n"
        "ENV STAGE=first\n"
        "FROM scratch\n"
        "RUN [\"/nonexistent\"]\n",
        "target");
    r.target = "first";
    auto first = builder.build(r);
    auto c = config_of(manifest_of("target", first.manifest_digest)).config;
    EXPECT_EQ(c.env.back(), "STAGE=first");
}

TEST_F(BuilderTest, HeredocsAddAndCopyFromAnImage) {
    build_base("base");
    write_text(context / "plain.txt", "plain\n");
    auto tarball = tmp.path() / "a.tar.gz";
    ASSERT_EQ(
        test::run({"tar", "-czf", tarball.string(), "-C", context.string(), "plain.txt"}).exit_code,
        0);
    stdfs::copy_file(tarball, context / "a.tar.gz");
    const auto unique = tmp.path().filename().string();

    auto result = build(
        "FROM base\n"
        "ENV NAME=world\n"
        "WORKDIR /etc\n"
        "RUN <<EOF\n"
        "echo one > /one\n"
        "echo $NAME > /two\n"
        "EOF\n"
        "COPY <<EOF /" +
            unique +
            "-motd\n"
            "hello ${NAME}\n"
            "EOF\n"
            "ADD plain.txt /added/\n"
            "COPY --from=base /etc/group /from-image/group\n",
        "heredoc");
    auto manifest = manifest_of("heredoc", result.manifest_digest);
    auto config = config_of(manifest);
    auto n = manifest.layers.size();
    // WORKDIR of an existing directory changes nothing: no layer.
    EXPECT_EQ(config.history[config.history.size() - 5].created_by, "WORKDIR /etc # buildkit");
    EXPECT_TRUE(config.history[config.history.size() - 5].empty_layer);
    EXPECT_EQ(names(entries(manifest.layers[n - 4])), (std::vector<std::string>{"one", "two"}));
    EXPECT_EQ(file_in(manifest.layers[n - 4], "two"), "world\n");
    EXPECT_EQ(file_in(manifest.layers[n - 3], unique + "-motd"), "hello world\n");
    EXPECT_FALSE(stdfs::exists("/" + unique + "-motd")) << "a COPY wrote to the host's /";
    EXPECT_EQ(file_in(manifest.layers[n - 2], "added/plain.txt"), "plain\n");
    EXPECT_EQ(file_in(manifest.layers[n - 1], "from-image/group"),
              "root:x:0:\napp:x:1000:\nstaff:x:50:\n");

    // ADD extracts archives and downloads http(s) URLs (tests/engine/copy_escape_test.cpp);
    // other URL schemes are refused.
    auto message = error_of(request("FROM base\nADD ftp://example.com/x /x\n"));
    EXPECT_NE(message.find("only http:// and https:// URLs"), std::string::npos) << message;
}

TEST_F(BuilderTest, BuildArgsReachRunButNotTheImage) {
    auto result = build(
        "ARG BASE=scratch\n"
        "FROM ${BASE}\n"
        "ARG GREETING=hello\n"
        "ARG UNSET\n"
        "COPY busybox /bin/busybox\n"
        "RUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo $GREETING ${UNSET:-none} > /greeting\"]\n"
        "ENV SHOWN=$GREETING\n",
        "app", {{"GREETING", "bonjour"}, {"NOBODY", "x"}});
    auto manifest = manifest_of("app", result.manifest_digest);
    EXPECT_EQ(file_in(manifest.layers.back(), "greeting"), "bonjour none\n");
    auto config = config_of(manifest);
    for (const auto& e : config.config.env)
        EXPECT_EQ(e.rfind("GREETING=", 0), std::string::npos) << e;
    EXPECT_EQ(config.config.env.back(), "SHOWN=bonjour");
    bool found = false;
    for (const auto& h : config.history)
        if (h.created_by.rfind("RUN |1 GREETING=bonjour /bin/busybox", 0) == 0) found = true;
    EXPECT_TRUE(found);
    EXPECT_TRUE(logged("[NOBODY] were not consumed"));

    // A different value is a different image.
    auto other = build("ARG BASE=scratch\nFROM ${BASE}\nARG GREETING=hello\nENV SHOWN=$GREETING\n",
                       "other", {{"GREETING", "hallo"}});
    auto env = config_of(manifest_of("other", other.manifest_digest)).config.env;
    EXPECT_EQ(env.back(), "SHOWN=hallo");
}

TEST_F(BuilderTest, MissingFromImageIsAClearError) {
    auto message = error_of(request("FROM httpd-base\nCOPY busybox /\n"));
    // Not in the store: docker.io (no mirror is configured, and no internet here).
    EXPECT_EQ(
        message.rfind(
            "Dockerfile:1: FROM httpd-base: no image httpd-base:latest in cascade's registry", 0),
        0u)
        << message;
    EXPECT_NE(message.find("build or push httpd-base:latest"), std::string::npos) << message;
    message = error_of(request("FROM docker.io/library/alpine:3.19\n"));
    EXPECT_EQ(message.rfind("Dockerfile:1: FROM docker.io/library/alpine:3.19: cannot pull ", 0),
              0u)
        << message;
    EXPECT_NE(message.find("registries.mirrors"), std::string::npos) << message;
}

TEST_F(BuilderTest, FromPlatformMustBeTheHosts) {
    const auto host = "linux/" + engine::host_arch();
    auto message = error_of(request("FROM --platform=linux/s390x scratch\nLABEL a=b\n"));
    EXPECT_EQ(message,
              "Dockerfile:1: FROM --platform=linux/s390x: cascade builds for the build host's "
              "platform (" +
                  host + ") only")
        << message;
    // The host's platform, spelled out or through the predefined args, builds.
    EXPECT_NO_THROW(builder.build(request("FROM --platform=" + host + " scratch\nLABEL a=b\n")));
    EXPECT_NO_THROW(builder.build(request("FROM --platform=$BUILDPLATFORM scratch\nLABEL a=b\n")));
}

TEST_F(BuilderTest, FromOverrideReplacesTheFinalBase) {
    auto base = build_base("httpd-base");
    auto r = request("FROM something-else\nENV X=1\n", "app-b");
    r.from_override = "httpd-base:latest";
    auto result = builder.build(r);
    EXPECT_EQ(result.base_name, "httpd-base:latest");
    EXPECT_EQ(result.base_digest, base.manifest_digest);
}

TEST(FinalBase, FollowsArgsOverridesAndStages) {
    using engine::Builder;
    EXPECT_EQ(Builder::final_base("FROM httpd-base\n", {}, ""), "httpd-base:latest");
    EXPECT_EQ(Builder::final_base("FROM scratch\n", {}, ""), "");
    EXPECT_EQ(Builder::final_base("ARG TAG=1.0\nFROM base:${TAG}\n", {}, ""), "base:1.0");
    EXPECT_EQ(Builder::final_base("ARG TAG=1.0\nFROM base:${TAG}\n", {{"TAG", "2.0"}}, ""),
              "base:2.0");
    EXPECT_EQ(Builder::final_base("FROM a\nFROM b AS mid\nFROM mid\n", {}, ""), "b:latest");
    EXPECT_EQ(Builder::final_base("FROM a\n", {}, "httpd-base:v2"), "httpd-base:v2");
    EXPECT_EQ(Builder::final_base("FROM localhost:5000/team/app:7\n", {}, ""), "team/app:7");
}

}  // namespace
