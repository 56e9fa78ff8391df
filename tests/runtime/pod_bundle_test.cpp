#include "runtime/pod_bundle.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/prctl.h>
#include <sys/stat.h>

#include <algorithm>

#include "oci/error.hpp"
#include "oci/fs.hpp"
#include "runtime/cgroups.hpp"
#include "runtime/container.hpp"
#include "runtime/runc.hpp"
#include "tests/runtime/runtime_support.hpp"

namespace cascade::runtime {
namespace {

using testing::read_text;
using testing::write_text;
namespace stdfs = std::filesystem;
using namespace std::chrono_literals;

bool contains(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

std::string error_of(const std::function<void()>& fn) {
    try {
        fn();
    } catch (const Error& e) {
        return e.what();
    }
    return "(no error)";
}

class PodBundleTest : public testing::RuntimeTest {
  protected:
    void SetUp() override {
        image_.env = {"PATH=/bin", "MODE=image", "KEEP=yes"};
        image_.entrypoint = std::vector<std::string>{"/bin/sh", "-c"};
        image_.cmd = std::vector<std::string>{"echo image-cmd"};
        image_.working_dir = "/www";
        image_.user = "www";
        spec_.name = "web";
    }

    BundleOptions options(const std::string& id = "web-1-abc") {
        return pod_bundle_options(image_, spec_, id, dir() / "pods" / id, volumes_);
    }

    // Runs `script` as the deployment's container in a busybox rootfs (plain
    // directory) under runc; returns the exit status and fills `output`.
    // runc run (not detached, no terminal) copies the container's stdout and
    // stderr through two pipes of its own: their order in `output` is not the
    // order they were written in; a script that checks order uses 2>&1.
    int run(const std::string& id, const std::string& script, std::string& output) {
        spec_.command = {"/bin/sh", "-c", script};
        if (spec_.user.empty()) spec_.user = "root";  // the image's "www" may not write volumes
        auto bundle = plain_bundle(id, options(id));
        auto out = fs::open_or_throw(dir() / (id + ".out"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int status = runc_.run(id, bundle, out.get(), out.get());
        output = read_text(dir() / (id + ".out"));
        return status;
    }

    oci::ContainerConfig image_;
    DeploymentSpec spec_;
    VolumeStore volumes_{dir() / "volumes"};
    Runc runc_{runc_root()};
};

// ---- options -------------------------------------------------------------------

TEST_F(PodBundleTest, CommandAndArgsFollowKubernetes) {
    EXPECT_EQ(options().args, (std::vector<std::string>{"/bin/sh", "-c", "echo image-cmd"}));
    spec_.args = {"echo from-args"};
    EXPECT_EQ(options().args, (std::vector<std::string>{"/bin/sh", "-c", "echo from-args"}));
    spec_.args.clear();
    // command replaces Entrypoint, and the image's Cmd goes with it.
    spec_.command = {"/bin/echo"};
    EXPECT_EQ(options().args, (std::vector<std::string>{"/bin/echo"}));
    spec_.args = {"a", "b"};
    EXPECT_EQ(options().args, (std::vector<std::string>{"/bin/echo", "a", "b"}));
}

TEST_F(PodBundleTest, NothingToRunNamesTheDeployment) {
    image_.entrypoint.reset();
    image_.cmd.reset();
    auto message = error_of([&] { options(); });
    EXPECT_TRUE(contains(message, "deployment web")) << message;
    EXPECT_TRUE(contains(message, "neither Entrypoint nor Cmd")) << message;
    spec_.args = {"/bin/true"};
    EXPECT_EQ(options().args, (std::vector<std::string>{"/bin/true"}));
}

TEST_F(PodBundleTest, EnvUserDirHostnameResourcesAndNetwork) {
    spec_.env = {"MODE=spec", "EXTRA=1"};
    auto o = options();
    EXPECT_EQ(o.env, (std::vector<std::string>{"PATH=/bin", "KEEP=yes", "MODE=spec", "EXTRA=1"}));
    EXPECT_EQ(o.cwd, "/www");
    EXPECT_EQ(o.user, "www");
    EXPECT_EQ(o.hostname, "web-1-abc");
    EXPECT_FALSE(o.readonly_rootfs);
    EXPECT_FALSE(o.seccomp_compat_arches);  // the native ABI only, unless asked
    EXPECT_EQ(o.network, NetworkMode::Own);
    EXPECT_EQ(o.cgroups_path, "/cascade/web-1-abc");

    spec_.working_dir = "/srv";
    spec_.user = "1000:1000";
    spec_.hostname = "web.example";
    spec_.readonly_rootfs = true;
    spec_.seccomp_compat_arches = true;
    spec_.resources.memory_bytes = 64 << 20;
    spec_.resources.pids = 50;
    o = options();
    EXPECT_EQ(o.cwd, "/srv");
    EXPECT_EQ(o.user, "1000:1000");
    EXPECT_EQ(o.hostname, "web.example");
    EXPECT_TRUE(o.readonly_rootfs);
    EXPECT_TRUE(o.seccomp_compat_arches);
    EXPECT_EQ(o.resources, spec_.resources);

    // The runtime spec carries them.
    stdfs::create_directories(dir() / "rootfs/etc");
    write_text(dir() / "rootfs/etc/passwd", "root:x:0:0::/:/bin/sh\n");
    write_text(dir() / "rootfs/etc/group", "root:x:0:\n");
    auto spec = make_runtime_spec(dir() / "rootfs", o);
    EXPECT_EQ(spec["linux"]["cgroupsPath"], "/cascade/web-1-abc");
    EXPECT_EQ(spec["linux"]["resources"]["memory"]["limit"], 64 << 20);
    EXPECT_EQ(spec["linux"]["resources"]["pids"]["limit"], 50);
    EXPECT_TRUE(spec["linux"]["resources"].contains("devices"));
    EXPECT_EQ(spec["hostname"], "web.example");
    EXPECT_TRUE(spec["root"]["readonly"].get<bool>());
}

TEST_F(PodBundleTest, InvalidSettingsNameTheDeployment) {
    spec_.resources.memory_bytes = 4 << 20;
    auto message = error_of([&] { options(); });
    EXPECT_TRUE(contains(message, "deployment web") && contains(message, "6 MiB")) << message;
    spec_.resources = {};
    spec_.hostname = "bad host";
    message = error_of([&] { options(); });
    EXPECT_TRUE(contains(message, "deployment web") && contains(message, "hostname")) << message;
    spec_.hostname.clear();
    spec_.env = {"NOEQUALS"};
    EXPECT_TRUE(contains(error_of([&] { options(); }), "NAME=VALUE"));
}

TEST_F(PodBundleTest, VolumesBecomeBindsAndTmpfs) {
    stdfs::create_directories(dir() / "host-data");
    spec_.volumes = {
        {VolumeMount::Kind::Named, "cache", "/var/cache/app", false, 0},
        {VolumeMount::Kind::Host, (dir() / "host-data").string(), "/data", true, 0},
        {VolumeMount::Kind::Tmpfs, "", "/tmp", false, 1 << 20},
        {VolumeMount::Kind::Empty, "", "/scratch", false, 0},
    };
    auto o = options();
    ASSERT_EQ(o.binds.size(), 3u);
    EXPECT_EQ(o.binds[0].source, dir() / "volumes/cache/_data");
    EXPECT_EQ(o.binds[0].destination, "/var/cache/app");
    EXPECT_FALSE(o.binds[0].readonly);
    EXPECT_TRUE(stdfs::is_directory(dir() / "volumes/cache/_data"));
    EXPECT_EQ(o.binds[1].source, dir() / "host-data");
    EXPECT_TRUE(o.binds[1].readonly);
    EXPECT_EQ(o.binds[2].destination, "/scratch");
    EXPECT_EQ(o.binds[2].source.parent_path().parent_path(), dir() / "pods/web-1-abc");
    struct stat st {};
    ASSERT_EQ(::stat(o.binds[2].source.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0777u);
    ASSERT_EQ(o.tmpfs.size(), 1u);
    EXPECT_EQ(o.tmpfs[0].destination, "/tmp");
    EXPECT_NE(std::find(o.tmpfs[0].options.begin(), o.tmpfs[0].options.end(), "size=1048576"),
              o.tmpfs[0].options.end());
}

TEST_F(PodBundleTest, BadVolumesAreClearErrors) {
    spec_.volumes = {{VolumeMount::Kind::Host, "/no/such/host/path", "/data", false, 0}};
    auto message = error_of([&] { options(); });
    EXPECT_TRUE(contains(message, "deployment web") && contains(message, "/no/such/host/path") &&
                contains(message, "does not exist"))
        << message;
    spec_.volumes = {{VolumeMount::Kind::Named, "Bad/Name", "/data", false, 0}};
    message = error_of([&] { options(); });
    EXPECT_TRUE(contains(message, "deployment web") && contains(message, "invalid volume name"))
        << message;
    spec_.volumes = {{VolumeMount::Kind::Named, "a", "relative", false, 0}};
    EXPECT_TRUE(contains(error_of([&] { options(); }), "absolute path"));
    spec_.volumes = {{VolumeMount::Kind::Named, "a", "/d", false, 0},
                     {VolumeMount::Kind::Tmpfs, "", "/d/", false, 0}};
    EXPECT_TRUE(contains(error_of([&] { options(); }), "own destination"));
}

TEST_F(PodBundleTest, HostsAndResolvConfAreWritten) {
    spec_.hostname = "api";
    auto o = options();
    ASSERT_TRUE(o.hosts && o.resolv_conf);
    EXPECT_EQ(o.hosts->parent_path(), dir() / "pods/web-1-abc");
    auto hosts = read_text(*o.hosts);
    EXPECT_TRUE(contains(hosts, "127.0.0.1\tlocalhost\n")) << hosts;
    EXPECT_TRUE(contains(hosts, "::1\tlocalhost ip6-localhost")) << hosts;
    EXPECT_TRUE(contains(hosts, "127.0.1.1\tapi\n")) << hosts;
    auto resolv = read_text(*o.resolv_conf);
    auto host_resolv = read_text("/etc/resolv.conf");
    EXPECT_EQ(resolv.substr(0, host_resolv.size()), host_resolv);
}

// ---- real containers ---------------------------------------------------------------

TEST_F(PodBundleTest, HostnameHostsAndResolvConfInsideTheContainer) {
    spec_.hostname = "pod-host";
    std::string out;
    ASSERT_EQ(run("names", "cat /proc/sys/kernel/hostname /etc/hosts /etc/resolv.conf", out), 0)
        << out;
    EXPECT_TRUE(contains(out, "pod-host\n")) << out;
    EXPECT_TRUE(contains(out, "127.0.1.1\tpod-host")) << out;
    EXPECT_TRUE(contains(out, read_text("/etc/resolv.conf"))) << out;
}

TEST_F(PodBundleTest, NamedVolumeOutlivesTheContainer) {
    spec_.volumes = {{VolumeMount::Kind::Named, "shared", "/data", false, 0}};
    std::string out;
    ASSERT_EQ(run("writer", "echo written-by-first > /data/note", out), 0) << out;
    EXPECT_FALSE(runc_.state("writer").has_value());
    EXPECT_EQ(read_text(dir() / "volumes/shared/_data/note"), "written-by-first\n");
    ASSERT_EQ(run("reader", "cat /data/note", out), 0) << out;
    EXPECT_EQ(out, "written-by-first\n");
    EXPECT_EQ(volumes_.list(), (std::vector<std::string>{"shared"}));
}

TEST_F(PodBundleTest, ReadOnlyHostBindRefusesWrites) {
    write_text(dir() / "host-ro/config.txt", "host config\n");
    spec_.volumes = {{VolumeMount::Kind::Host, (dir() / "host-ro").string(), "/config", true, 0}};
    std::string out;
    int status = run("ro-bind", "cat /config/config.txt; touch /config/new", out);
    EXPECT_NE(status, 0) << out;
    EXPECT_TRUE(contains(out, "host config")) << out;
    EXPECT_TRUE(contains(out, "Read-only file system")) << out;
    EXPECT_FALSE(stdfs::exists(dir() / "host-ro/new"));
}

TEST_F(PodBundleTest, TmpfsHasItsSize) {
    spec_.volumes = {{VolumeMount::Kind::Tmpfs, "", "/data", false, 1 << 20}};
    std::string out;
    int status = run("tmpfs",
                     "/bin/busybox df -k /data; "
                     "/bin/busybox dd if=/dev/zero of=/data/big bs=1024 count=2048",
                     out);
    EXPECT_NE(status, 0) << out;
    EXPECT_TRUE(contains(out, " 1024 ")) << out;
    EXPECT_TRUE(contains(out, "No space left on device")) << out;
}

TEST_F(PodBundleTest, ReadOnlyRootfsWithAWritableTmpfs) {
    spec_.readonly_rootfs = true;
    spec_.volumes = {{VolumeMount::Kind::Tmpfs, "", "/tmp", false, 0},
                     {VolumeMount::Kind::Empty, "", "/scratch", false, 0}};
    std::string out;
    int status = run("ro-root",
                     "echo ok > /tmp/file && cat /tmp/file; echo ok2 > /scratch/f && cat "
                     "/scratch/f; echo shm > /dev/shm/f && cat /dev/shm/f; touch /x 2>&1",
                     out);
    EXPECT_NE(status, 0) << out;
    EXPECT_TRUE(contains(out, "ok\nok2\nshm\n")) << out;
    EXPECT_TRUE(contains(out, "Read-only file system")) << out;
    EXPECT_FALSE(stdfs::exists(dir() / "ro-root/rootfs/x"));
}

// Through ContainerHost (overlay rootfs, detached, removed): the pod directory
// lives in the bundle directory and goes with it, as does the cgroup.
class PodContainerHostTest : public PodBundleTest {
  protected:
    void SetUp() override {
        PodBundleTest::SetUp();
        ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
        testing::make_busybox_tree(dir() / "base");
        testing::add_layer(blobs_, dir() / "base", dir() / "base.tar.gz", manifest_, config_);
        config_.config = image_;
        config_.config.user.clear();
        config_.config.working_dir.clear();
    }
    void TearDown() override {
        PodBundleTest::TearDown();
        ::prctl(PR_SET_CHILD_SUBREAPER, 0);
    }

    registry::BlobStore blobs_{dir() / "store"};
    LayerCache layers_{dir() / "layers", blobs_};
    ContainerHost host_{dir() / "containers", layers_, runc_};
    oci::Manifest manifest_;
    oci::ImageConfig config_;
};

TEST_F(PodContainerHostTest, PodDirectoryAndCgroupGoWithTheContainer) {
    const std::string id = "pod-" + fs::random_hex(8);
    spec_.command = {"/bin/sh", "-c",
                     "cat /proc/sys/kernel/hostname /etc/hosts; echo x > /scratch/f; sleep 1000"};
    spec_.volumes = {{VolumeMount::Kind::Empty, "", "/scratch", false, 0}};
    spec_.resources.memory_bytes = 64 << 20;
    auto pod_dir = host_.bundle_dir(id) / kPodDirName;
    auto o = pod_bundle_options(config_.config, spec_, id, pod_dir, volumes_);
    host_.start(id, manifest_, config_, o);
    EXPECT_TRUE(cascade::test::eventually(
        [&] { return contains(read_text(host_.log_path(id)), "127.0.1.1\t" + id); }, 20s))
        << read_text(host_.log_path(id));
    auto stats = read_cgroup_stats(cgroups_path_for(id), host_cgroup_mode());
    ASSERT_TRUE(stats.has_value());
    EXPECT_EQ(stats->memory_limit, 64 << 20);
    EXPECT_TRUE(
        cascade::test::eventually([&] { return stdfs::exists(pod_dir / "empty/0/f"); }, 20s));
    host_.stop(id, 100ms, SIGKILL);
    EXPECT_FALSE(stdfs::exists(host_.bundle_dir(id)));
    EXPECT_FALSE(read_cgroup_stats(cgroups_path_for(id), host_cgroup_mode()).has_value());
    EXPECT_TRUE(testing::mounts_under(dir()).empty());
}

}  // namespace
}  // namespace cascade::runtime
