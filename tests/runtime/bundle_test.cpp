#include "runtime/bundle.hpp"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <algorithm>

#include "oci/error.hpp"
#include "tests/runtime/runtime_support.hpp"

namespace cascade::runtime {
namespace {

using testing::RuntimeTest;
using testing::write_text;
namespace stdfs = std::filesystem;

class ResolveUserTest : public RuntimeTest {
  protected:
    void SetUp() override {
        rootfs_ = dir() / "rootfs";
        write_text(rootfs_ / "etc/passwd",
                   "# comment\n"
                   "root:x:0:0:root:/root:/bin/sh\n"
                   "app:x:1000:1001:App:/home/app:/bin/sh\n"
                   "broken line\n"
                   "svc:x:1200:1200::/:/bin/false\n");
        write_text(rootfs_ / "etc/group",
                   "root:x:0:\n"
                   "app:x:1001:\n"
                   "extra:x:2000:other,app\n"
                   "more:x:2001:app\n"
                   "unrelated:x:3000:svc\n");
    }
    stdfs::path rootfs_;
};

TEST_F(ResolveUserTest, EmptyUserIsRoot) {
    auto u = resolve_user(rootfs_, "");
    EXPECT_EQ(u.uid, 0u);
    EXPECT_EQ(u.gid, 0u);
    EXPECT_TRUE(u.additional_gids.empty());
}

TEST_F(ResolveUserTest, NameGivesUidPrimaryGidAndMemberships) {
    auto u = resolve_user(rootfs_, "app");
    EXPECT_EQ(u.uid, 1000u);
    EXPECT_EQ(u.gid, 1001u);
    // The primary group first, as containerd and buildah list it.
    EXPECT_EQ(u.additional_gids, (std::vector<uint32_t>{1001, 2000, 2001}));
}

TEST_F(ResolveUserTest, ExplicitGroupIsTheOnlyGroup) {
    auto u = resolve_user(rootfs_, "app:more");
    EXPECT_EQ(u.uid, 1000u);
    EXPECT_EQ(u.gid, 2001u);
    EXPECT_EQ(u.additional_gids, (std::vector<uint32_t>{2001}));
}

TEST_F(ResolveUserTest, NumericUidFoundInPasswdUsesItsGroup) {
    auto u = resolve_user(rootfs_, "1000");
    EXPECT_EQ(u.uid, 1000u);
    EXPECT_EQ(u.gid, 1001u);
}

TEST_F(ResolveUserTest, NameWithGroupNameOrGid) {
    auto named = resolve_user(rootfs_, "app:extra");
    EXPECT_EQ(named.uid, 1000u);
    EXPECT_EQ(named.gid, 2000u);
    auto numeric = resolve_user(rootfs_, "svc:77");
    EXPECT_EQ(numeric.uid, 1200u);
    EXPECT_EQ(numeric.gid, 77u);
}

TEST_F(ResolveUserTest, NumericIdsWorkWithoutAccountFiles) {
    auto empty_root = dir() / "empty-rootfs";
    stdfs::create_directories(empty_root);
    auto u = resolve_user(empty_root, "1234:5678");
    EXPECT_EQ(u.uid, 1234u);
    EXPECT_EQ(u.gid, 5678u);
    auto v = resolve_user(empty_root, "4321");
    EXPECT_EQ(v.uid, 4321u);
    EXPECT_EQ(v.gid, 0u);
}

TEST_F(ResolveUserTest, UnknownUserNamesUserAndFile) {
    try {
        resolve_user(rootfs_, "nosuchuser");
        FAIL() << "expected an error";
    } catch (const Error& e) {
        std::string msg = e.what();
        EXPECT_NE(msg.find("nosuchuser"), std::string::npos) << msg;
        EXPECT_NE(msg.find((rootfs_ / "etc/passwd").string()), std::string::npos) << msg;
    }
}

TEST_F(ResolveUserTest, UnknownGroupNamesGroup) {
    try {
        resolve_user(rootfs_, "app:nogroup");
        FAIL() << "expected an error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("nogroup"), std::string::npos) << e.what();
    }
}

TEST_F(ResolveUserTest, NamedUserWithoutPasswdFileFails) {
    auto empty_root = dir() / "empty-rootfs";
    stdfs::create_directories(empty_root);
    EXPECT_THROW(resolve_user(empty_root, "app"), Error);
}

// A symlinked /etc/passwd is followed as if the rootfs were "/": an absolute
// or climbing link can never reach the host's files.
TEST_F(ResolveUserTest, SymlinkedPasswdCannotEscapeTheRootfs) {
    auto host_file = dir() / "host/passwd";
    write_text(host_file, "escapee:x:4242:4242::/:/bin/sh\n");
    auto rootfs = dir() / "evil-rootfs";
    stdfs::create_directories(rootfs / "etc");

    stdfs::create_symlink(host_file, rootfs / "etc/passwd");  // absolute
    EXPECT_THROW(resolve_user(rootfs, "escapee"), Error);

    stdfs::remove(rootfs / "etc/passwd");
    auto climbing = stdfs::path("../../../../../../../..") / host_file.relative_path();
    stdfs::create_symlink(climbing, rootfs / "etc/passwd");
    EXPECT_THROW(resolve_user(rootfs, "escapee"), Error);

    // The same link resolves to the rootfs's own copy of that path.
    write_text(rootfs / host_file.relative_path(), "escapee:x:7:8::/:/bin/sh\n");
    auto u = resolve_user(rootfs, "escapee");
    EXPECT_EQ(u.uid, 7u);
    EXPECT_EQ(u.gid, 8u);
}

TEST_F(ResolveUserTest, SymlinkedEtcDirectoryCannotEscape) {
    auto host_etc = dir() / "host-etc";
    write_text(host_etc / "passwd", "escapee:x:4242:4242::/:/bin/sh\n");
    auto rootfs = dir() / "evil-rootfs";
    stdfs::create_directories(rootfs);
    stdfs::create_symlink(host_etc, rootfs / "etc");
    EXPECT_THROW(resolve_user(rootfs, "escapee"), Error);
}

TEST_F(ResolveUserTest, NonRegularPasswdIsRefusedWithoutBlocking) {
    auto rootfs = dir() / "fifo-rootfs";
    stdfs::create_directories(rootfs / "etc");
    ASSERT_EQ(::mkfifo((rootfs / "etc/passwd").c_str(), 0644), 0);
    EXPECT_THROW(resolve_user(rootfs, "app"), Error);
}

TEST(OptionsFromImage, EntrypointPlusCmdEnvWorkdirUser) {
    oci::ContainerConfig c;
    c.entrypoint = std::vector<std::string>{"/bin/server", "--flag"};
    c.cmd = std::vector<std::string>{"serve"};
    c.env = {"A=1"};
    c.working_dir = "/srv";
    c.user = "www";
    auto o = options_from_image(c);
    EXPECT_EQ(o.args, (std::vector<std::string>{"/bin/server", "--flag", "serve"}));
    ASSERT_EQ(o.env.size(), 2u);
    EXPECT_NE(
        std::find_if(o.env.begin(), o.env.end(),
                     [](const std::string& e) { return e.rfind("PATH=/usr/local/sbin", 0) == 0; }),
        o.env.end());
    EXPECT_NE(std::find(o.env.begin(), o.env.end(), "A=1"), o.env.end());
    EXPECT_EQ(o.cwd, "/srv");
    EXPECT_EQ(o.user, "www");
}

TEST(OptionsFromImage, OverrideReplacesCmdKeepsEntrypointAndPath) {
    oci::ContainerConfig c;
    c.entrypoint = std::vector<std::string>{"/entry"};
    c.cmd = std::vector<std::string>{"default"};
    c.env = {"PATH=/custom"};
    auto o = options_from_image(c, {"other", "arg"});
    EXPECT_EQ(o.args, (std::vector<std::string>{"/entry", "other", "arg"}));
    EXPECT_EQ(o.env, (std::vector<std::string>{"PATH=/custom"}));
    EXPECT_EQ(o.cwd, "/");
}

class RuntimeSpecTest : public RuntimeTest {};

TEST_F(RuntimeSpecTest, HasDockerDefaults) {
    auto rootfs = dir() / "rootfs";
    testing::make_busybox_tree(rootfs);
    BundleOptions o;
    o.args = {"/bin/sh", "-c", "true"};
    o.env = {"PATH=/bin"};
    o.user = "app";
    o.cwd = "/www";
    o.hostname = "replica-1";
    o.readonly_rootfs = true;
    o.binds.push_back({dir() / "data", "/data", true});
    o.resolv_conf = dir() / "resolv.conf";
    auto spec = make_runtime_spec(rootfs, o);

    EXPECT_EQ(spec["ociVersion"], "1.0.2");
    const auto& p = spec["process"];
    EXPECT_EQ(p["terminal"], false);
    EXPECT_EQ(p["user"]["uid"], 1000);
    EXPECT_EQ(p["user"]["gid"], 1000);
    EXPECT_EQ(p["user"]["additionalGids"], nlohmann::json::array({1000, 50}));
    EXPECT_EQ(p["args"], nlohmann::json(o.args));
    EXPECT_EQ(p["cwd"], "/www");
    EXPECT_EQ(p["noNewPrivileges"], true);
    for (const char* set : {"bounding", "effective", "permitted"}) {
        auto caps = p["capabilities"][set].get<std::vector<std::string>>();
        EXPECT_EQ(caps.size(), 14u) << set;
        EXPECT_NE(std::find(caps.begin(), caps.end(), "CAP_NET_BIND_SERVICE"), caps.end());
        EXPECT_EQ(std::find(caps.begin(), caps.end(), "CAP_SYS_ADMIN"), caps.end());
    }
    EXPECT_EQ(p["rlimits"][0]["type"], "RLIMIT_NOFILE");
    // Docker's 1048576, unless this process may not raise its own hard limit.
    rlimit current{};
    ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &current), 0);
    uint64_t hard = p["rlimits"][0]["hard"];
    EXPECT_LE(hard, 1048576u);
    EXPECT_GE(hard, std::min<uint64_t>(1048576u, current.rlim_max));
    EXPECT_EQ(p["rlimits"][0]["soft"], hard);

    EXPECT_EQ(spec["root"]["path"], rootfs.string());
    EXPECT_EQ(spec["root"]["readonly"], true);
    EXPECT_EQ(spec["hostname"], "replica-1");

    std::vector<std::string> destinations;
    for (const auto& m : spec["mounts"])
        destinations.push_back(m["destination"]);
    for (const char* d : {"/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys",
                          "/sys/fs/cgroup", "/data", "/etc/resolv.conf"})
        EXPECT_NE(std::find(destinations.begin(), destinations.end(), d), destinations.end()) << d;
    for (const auto& m : spec["mounts"]) {
        if (m["destination"] != "/data") continue;
        EXPECT_EQ(m["type"], "bind");
        EXPECT_EQ(m["source"], (dir() / "data").string());
        auto opts = m["options"].get<std::vector<std::string>>();
        EXPECT_NE(std::find(opts.begin(), opts.end(), "ro"), opts.end());
    }

    std::vector<std::string> namespaces;
    for (const auto& n : spec["linux"]["namespaces"])
        namespaces.push_back(n["type"]);
    std::sort(namespaces.begin(), namespaces.end());
    EXPECT_EQ(namespaces, (std::vector<std::string>{"ipc", "mount", "network", "pid", "uts"}));
    auto masked = spec["linux"]["maskedPaths"].get<std::vector<std::string>>();
    EXPECT_NE(std::find(masked.begin(), masked.end(), "/proc/kcore"), masked.end());
    auto ro = spec["linux"]["readonlyPaths"].get<std::vector<std::string>>();
    EXPECT_NE(std::find(ro.begin(), ro.end(), "/proc/sys"), ro.end());
}

TEST_F(RuntimeSpecTest, HostNetworkHasNoNetworkNamespace) {
    auto rootfs = dir() / "rootfs";
    stdfs::create_directories(rootfs);
    BundleOptions o;
    o.args = {"/bin/true"};
    o.network = NetworkMode::Host;
    auto spec = make_runtime_spec(rootfs, o);
    for (const auto& n : spec["linux"]["namespaces"])
        EXPECT_NE(n["type"], "network");
    o.network = NetworkMode::None;
    spec = make_runtime_spec(rootfs, o);
    bool has_network = false;
    for (const auto& n : spec["linux"]["namespaces"])
        has_network = has_network || n["type"] == "network";
    EXPECT_TRUE(has_network);
}

TEST_F(RuntimeSpecTest, RefusesMissingCommandAndRelativeCwd) {
    auto rootfs = dir() / "rootfs";
    stdfs::create_directories(rootfs);
    BundleOptions o;
    EXPECT_THROW(make_runtime_spec(rootfs, o), Error);
    o.args = {"/bin/true"};
    o.cwd = "relative";
    EXPECT_THROW(make_runtime_spec(rootfs, o), Error);
}

TEST_F(RuntimeSpecTest, WriteBundleConfigWritesTheSpec) {
    nlohmann::json spec = {{"ociVersion", "1.0.2"}, {"hostname", "x"}};
    write_bundle_config(dir() / "bundle", spec);
    EXPECT_EQ(nlohmann::json::parse(testing::read_text(dir() / "bundle/config.json")), spec);
    // No temporary files stay behind.
    int files = 0;
    for ([[maybe_unused]] const auto& e : stdfs::directory_iterator(dir() / "bundle"))
        files++;
    EXPECT_EQ(files, 1);
}

}  // namespace
}  // namespace cascade::runtime
