// RUN --mount (cache, bind, secret, tmpfs), heredoc #! scripts and the default
// seccomp profile, against the real store, overlayfs and runc.
#include "engine/run_mounts.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "oci/error.hpp"
#include "tests/engine/builder_fixture.hpp"

using namespace cascade;

namespace {

namespace stdfs = std::filesystem;
using builder_testing::write_text;

class RunMountsTest : public builder_testing::BuilderTest {
  protected:
    void SetUp() override {
        BuilderTest::SetUp();
        build_base("base");
    }

    // The layers the build of `dockerfile` added on top of the base image.
    std::vector<oci::Descriptor> new_layers(const engine::BuildResult& result,
                                            const std::string& repo = "app") {
        auto base = manifest_of("base", store.tag_digest("base", "latest").value());
        auto layers = manifest_of(repo, result.manifest_digest).layers;
        return {layers.begin() + static_cast<ptrdiff_t>(base.layers.size()), layers.end()};
    }

    std::string config_text(const engine::BuildResult& result) {
        return blobs.read(result.config_digest);
    }
};

TEST_F(RunMountsTest, ParsesBuildKitSyntax) {
    auto m = engine::parse_run_mount("type=cache,target=cache,sharing=locked,mode=0700,uid=5",
                                     "/work", "Dockerfile:3");
    EXPECT_EQ(m.type, engine::RunMount::Type::Cache);
    EXPECT_EQ(m.target, "/work/cache");
    EXPECT_EQ(m.id, "/work/cache");
    EXPECT_EQ(m.sharing, engine::RunMount::Sharing::Locked);
    EXPECT_EQ(m.mode, 0700u);
    EXPECT_EQ(m.uid, 5u);
    EXPECT_FALSE(m.readonly);

    auto b = engine::parse_run_mount("target=/src,from=builder,source=/out", "/", "D:1");
    EXPECT_EQ(b.type, engine::RunMount::Type::Bind);
    EXPECT_TRUE(b.readonly);
    EXPECT_EQ(b.from, "builder");
    EXPECT_FALSE(engine::parse_run_mount("type=bind,target=/s,rw", "/", "D:1").readonly);

    auto s = engine::parse_run_mount("type=secret,id=tok,required", "/", "D:1");
    EXPECT_EQ(s.target, "/run/secrets/tok");
    EXPECT_TRUE(s.required);
    EXPECT_EQ(engine::parse_run_mount("type=secret,target=/etc/key", "/", "D:1").id, "key");
    EXPECT_EQ(engine::parse_run_mount("type=tmpfs,target=/t,size=64m", "/", "D:1").size,
              uint64_t{64} << 20);
    EXPECT_EQ(engine::run_mount_from("type=bind,from=src,target=/x"), "src");

    auto error = [](const std::string& value) {
        try {
            engine::parse_run_mount(value, "/", "Dockerfile:4");
        } catch (const Error& e) {
            return std::string(e.what());
        }
        return std::string("(no error)");
    };
    EXPECT_EQ(error("type=cache"),
              "Dockerfile:4: RUN --mount=type=cache: target= is required for type=cache");
    EXPECT_EQ(error("type=volume,target=/x"),
              "Dockerfile:4: RUN --mount=type=volume,target=/x: unknown mount type \"volume\"; "
              "expected bind, cache, secret or tmpfs");
    EXPECT_EQ(error("type=cache,target=/x,sharing=some"),
              "Dockerfile:4: RUN --mount=type=cache,target=/x,sharing=some: sharing=some: "
              "expected shared, private or locked");
    EXPECT_EQ(error("type=tmpfs,target=/x,id=a"),
              "Dockerfile:4: RUN --mount=type=tmpfs,target=/x,id=a: id does not apply to "
              "type=tmpfs");
    EXPECT_EQ(error("type=secret"),
              "Dockerfile:4: RUN --mount=type=secret: a secret mount needs id= or target=");
}

TEST_F(RunMountsTest, CacheMountPersistsAcrossBuildsAndStaysOutOfTheLayer) {
    const std::string run =
        "RUN --mount=type=cache,target=/var/cache/app "
        "echo $STEP >> /var/cache/app/log && wc -l < /var/cache/app/log > /count";
    build("FROM base\nENV STEP=one\n" + run + "\n");
    auto second = build("FROM base\nENV STEP=two\n" + run + "\n");
    auto layers = new_layers(second);
    ASSERT_EQ(layers.size(), 1u);
    // The directories made on the way to the target stay (as buildah leaves
    // them); the target and what the cache holds do not.
    EXPECT_EQ(names(entries(layers[0])), (std::vector<std::string>{"count", "var", "var/cache"}));
    EXPECT_EQ(file_in(layers[0], "count"), "2\n");

    // A cache is per id: another id starts empty; sharing=locked works alone.
    auto other = build(
        "FROM base\nRUN --mount=type=cache,id=other,target=/c,sharing=locked "
        "ls /c | wc -l > /n\n");
    auto other_layers = new_layers(other);
    ASSERT_EQ(other_layers.size(), 1u);
    EXPECT_EQ(file_in(other_layers[0], "n"), "0\n");
    EXPECT_TRUE(stdfs::is_directory(tmp.path() / "cache-mounts"));
}

TEST_F(RunMountsTest, BindFromContextAndFromStageAreReadOnlyAndNotInTheLayer) {
    write_text(context / "data.txt", "from the context\n");
    auto result = build(
        "FROM base AS src\n"
        "RUN echo from the stage > /made\n"
        "FROM base\n"
        "RUN --mount=type=bind,source=data.txt,target=/in/data.txt "
        "--mount=type=bind,from=src,source=/made,target=/m "
        "cat /in/data.txt /m > /out && ! touch /in/data.txt 2>/dev/null\n"
        "RUN --mount=type=bind,target=/ctx,rw echo changed > /ctx/data.txt && touch /ctx/new\n");
    auto layers = new_layers(result);
    ASSERT_EQ(layers.size(), 1u) << "the rw bind step writes nothing into the image";
    // Targets go; a directory made on the way to one stays, empty.
    EXPECT_EQ(names(entries(layers[0])), (std::vector<std::string>{"in", "out"}));
    EXPECT_EQ(file_in(layers[0], "out"), "from the context\nfrom the stage\n");
    // rw: the writes went to a throwaway overlay, not to the context.
    EXPECT_EQ(fs::read_file(context / "data.txt"), "from the context\n");
    EXPECT_FALSE(stdfs::exists(context / "new"));
}

TEST_F(RunMountsTest, BindSourceCannotEscapeTheContext) {
    stdfs::create_symlink("/etc", context / "up");
    auto r = request("FROM base\nRUN --mount=type=bind,source=up/hostname,target=/h cat /h\n");
    auto error = error_of(r);
    // Resolved inside the context: /etc/hostname of the context, which is absent.
    EXPECT_NE(error.find("does not exist in the build context"), std::string::npos) << error;
}

TEST_F(RunMountsTest, SecretIsReadableButNeverInTheLayerConfigOrHistory) {
    const std::string value = "s3cr3t-value-8d2f";
    write_text(tmp.path() / "token", value);
    auto r = request(
        "FROM base\n"
        "RUN --mount=type=secret,id=tok cat /run/secrets/tok > /dev/null && "
        "grep -qx '.*-8d2f' /run/secrets/tok && stat -c %a /run/secrets/tok > /mode\n"
        "RUN --mount=type=secret,id=tok,target=/etc/tok,mode=0440,env=TOK "
        "test \"$TOK\" = \"$(cat /etc/tok)\" && echo ok > /ok\n");
    r.secrets["tok"] = tmp.path() / "token";
    auto result = builder.build(r);
    auto layers = new_layers(result);
    ASSERT_EQ(layers.size(), 2u);
    EXPECT_EQ(names(entries(layers[0])), (std::vector<std::string>{"mode"}));
    EXPECT_EQ(file_in(layers[0], "mode"), "400\n");
    EXPECT_EQ(names(entries(layers[1])), (std::vector<std::string>{"ok"}));
    auto config = config_text(result);
    EXPECT_EQ(config.find(value), std::string::npos) << config;
    for (const auto& h : config_of(manifest_of("app", result.manifest_digest)).history)
        EXPECT_EQ(h.created_by.find(value), std::string::npos);
    for (const auto& l : layers)
        EXPECT_EQ(
            test::run({"sh", "-c", "zcat " + blobs.path(l.digest).string() + " | grep -c " + value})
                .out,
            "0\n");
}

TEST_F(RunMountsTest, CopyingASecretIsTheUsersChoiceButTheMountIsNotInTheLayer) {
    write_text(tmp.path() / "token", "leaked-on-purpose");
    auto r = request("FROM base\nRUN --mount=type=secret,id=x cp /run/secrets/x /leak\n");
    r.secrets["x"] = tmp.path() / "token";
    auto layers = new_layers(builder.build(r));
    ASSERT_EQ(layers.size(), 1u);
    EXPECT_EQ(names(entries(layers[0])), (std::vector<std::string>{"leak"}));
}

TEST_F(RunMountsTest, MissingSecretFailsWhenRequiredAndIsSkippedOtherwise) {
    auto optional = build(
        "FROM base\nRUN --mount=type=secret,id=none test ! -e /run/secrets/none "
        "&& echo skipped > /s\n");
    EXPECT_EQ(file_in(new_layers(optional)[0], "s"), "skipped\n");
    auto error = error_of(request("FROM base\nRUN --mount=type=secret,id=none,required true\n"));
    EXPECT_NE(error.find("Dockerfile:2: RUN --mount=type=secret,id=none: the build was given no "
                         "secret \"none\"; pass it with cascade build --secret id=none,src=FILE"),
              std::string::npos)
        << error;
}

TEST_F(RunMountsTest, TmpfsMountIsEmptyWritableAndNotInTheLayer) {
    auto result = build(
        "FROM base\n"
        "RUN --mount=type=tmpfs,target=/scratch/space,size=1m "
        "grep -q ' /scratch/space tmpfs ' /proc/mounts && echo x > /scratch/space/f && "
        "echo done > /done\n");
    auto layers = new_layers(result);
    ASSERT_EQ(layers.size(), 1u);
    EXPECT_EQ(names(entries(layers[0])), (std::vector<std::string>{"done", "scratch"}));
}

TEST_F(RunMountsTest, HeredocWithShebangRunsAsAScript) {
    auto result = build(
        "FROM base\n"
        "RUN <<EOF\n"
        "#!/bin/sh -e\n"
        "echo \"script $0\" > /script-out\n"
        "EOF\n");
    auto layers = new_layers(result);
    ASSERT_EQ(layers.size(), 1u);
    EXPECT_EQ(names(entries(layers[0])), (std::vector<std::string>{"script-out"}));
    EXPECT_EQ(file_in(layers[0], "script-out"), "script /dev/pipes/EOF\n");
    auto history = config_of(manifest_of("app", result.manifest_digest)).history.back();
    EXPECT_EQ(history.created_by, "RUN /bin/sh -c /dev/pipes/EOF # buildkit");
}

TEST_F(RunMountsTest, RunStepsWorkUnderTheDefaultSeccompProfile) {
    auto result = build(
        "FROM base\n"
        "RUN --network=none mkdir -p /www /copy && echo hello > /www/i && "
        "httpd -p 127.0.0.1:8080 -h /www && wget -q -O /got http://127.0.0.1:8080/i && "
        "cp /got /copy/ && tar -cf /t.tar /copy && tar -tf /t.tar > /listing && rm /t.tar\n");
    auto layers = new_layers(result);
    ASSERT_EQ(layers.size(), 1u);
    EXPECT_EQ(file_in(layers[0], "got"), "hello\n");
    EXPECT_EQ(file_in(layers[0], "listing"), "copy/\ncopy/got\n");
}

TEST_F(RunMountsTest, SeccompRefusesNamespaceAndMountSyscalls) {
    // unshare(CLONE_NEWUSER) needs no capability: only seccomp refuses it.
    auto error = error_of(request("FROM base\nRUN unshare -U true\n"));
    EXPECT_NE(error.find("failed with exit status"), std::string::npos) << error;
    EXPECT_TRUE(logged("Operation not permitted"));
    log.clear();
    error = error_of(request("FROM base\nRUN mkdir -p /mnt && mount -t tmpfs none /mnt\n"));
    EXPECT_NE(error.find("failed with exit status"), std::string::npos) << error;
    // busybox mount says "permission denied (are you root?)" for EPERM.
    EXPECT_TRUE(logged("permission denied")) << log.back();
}

}  // namespace
