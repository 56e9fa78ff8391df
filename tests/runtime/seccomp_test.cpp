// The default seccomp profile: its shape, and real runc enforcing it.
#include "runtime/seccomp.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "oci/fs.hpp"
#include "runtime/bundle.hpp"
#include "runtime/runc.hpp"
#include "tests/runtime/runtime_support.hpp"

namespace cascade::runtime {
namespace {

using testing::read_text;

// Every syscall name the profile allows unconditionally.
std::set<std::string> unconditionally_allowed(const nlohmann::json& profile) {
    std::set<std::string> out;
    for (const auto& rule : profile["syscalls"])
        if (rule["action"] == "SCMP_ACT_ALLOW" && !rule.contains("args"))
            for (const auto& n : rule["names"])
                out.insert(n.get<std::string>());
    return out;
}

TEST(SeccompProfileTest, DockersDefaultForDockersDefaultCapabilities) {
    auto spec = make_runtime_spec("/nonexistent-rootfs", [] {
        BundleOptions o;
        o.args = {"/bin/true"};
        return o;
    }());
    const auto& profile = spec["linux"]["seccomp"];
    EXPECT_EQ(profile["defaultAction"], "SCMP_ACT_ERRNO");
    EXPECT_EQ(profile["defaultErrnoRet"], 1);
    EXPECT_EQ(profile["architectures"],
              (nlohmann::json{"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"}));
    auto allowed = unconditionally_allowed(profile);
    for (const char* name : {"read", "execve", "openat2", "chroot", "arch_prctl", "ptrace"})
        EXPECT_TRUE(allowed.count(name)) << name;
    for (const char* name : {"mount", "umount2", "unshare", "setns", "clone", "clone3", "keyctl",
                             "bpf", "reboot", "init_module", "kexec_load", "open_by_handle_at"})
        EXPECT_FALSE(allowed.count(name)) << name;
    // clone only without namespace flags; clone3 gives ENOSYS (libc falls back).
    bool clone_masked = false, clone3_enosys = false;
    for (const auto& rule : profile["syscalls"]) {
        if (rule["names"] == nlohmann::json{"clone"})
            clone_masked = rule["args"][0]["op"] == "SCMP_CMP_MASKED_EQ" &&
                           rule["args"][0]["value"] == 2114060288 &&
                           rule["args"][0]["valueTwo"] == 0;
        if (rule["names"] == nlohmann::json{"clone3"})
            clone3_enosys = rule["action"] == "SCMP_ACT_ERRNO" && rule["errnoRet"] == 38;
    }
    EXPECT_TRUE(clone_masked);
    EXPECT_TRUE(clone3_enosys);
    // The rest of the confinement is there too.
    EXPECT_EQ(spec["process"]["noNewPrivileges"], true);
    EXPECT_FALSE(spec["linux"]["maskedPaths"].empty());
    EXPECT_FALSE(spec["linux"]["readonlyPaths"].empty());
    EXPECT_EQ(std::count(spec["process"]["capabilities"]["bounding"].begin(),
                         spec["process"]["capabilities"]["bounding"].end(), "CAP_SYS_ADMIN"),
              0);
}

TEST(SeccompProfileTest, CapabilitiesUnlockTheirSyscalls) {
    auto allowed = unconditionally_allowed(default_seccomp_profile({"CAP_SYS_ADMIN"}));
    EXPECT_TRUE(allowed.count("mount"));
    EXPECT_TRUE(allowed.count("clone"));
    EXPECT_FALSE(allowed.count("chroot"));
    EXPECT_FALSE(allowed.count("reboot"));
}

TEST(SeccompProfileTest, OffWhenAskedFor) {
    BundleOptions o;
    o.args = {"/bin/true"};
    o.seccomp = false;
    EXPECT_FALSE(make_runtime_spec("/nonexistent-rootfs", o)["linux"].contains("seccomp"));
}

class SeccompRuncTest : public testing::RuntimeTest {
  protected:
    // Exit status of `script` in a busybox container; its output in `out`.
    int run(const std::string& name, const std::string& script, bool seccomp) {
        auto options = shell(script);
        options.seccomp = seccomp;
        auto bundle = plain_bundle(name, options);
        Runc runc(runc_root());
        auto fd = fs::open_or_throw(dir() / (name + ".out"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int status = runc.run(name, bundle, fd.get(), fd.get());
        out = read_text(dir() / (name + ".out"));
        return status;
    }
    std::string out;
};

TEST_F(SeccompRuncTest, RuncEnforcesTheProfile) {
    // Ordinary work: processes, pipes, files, sockets, threads via clone.
    EXPECT_EQ(run("ok", "echo a | cat > /tmp/f && ls /tmp | grep -q f && sleep 0 && id -u", true),
              0)
        << out;
    EXPECT_EQ(out, "0\n");
    // A user namespace needs no capability: only seccomp stands in the way.
    EXPECT_NE(run("userns-on", "/bin/busybox unshare -U true", true), 0) << out;
    EXPECT_NE(out.find("Operation not permitted"), std::string::npos) << out;
    EXPECT_EQ(run("userns-off", "/bin/busybox unshare -U true", false), 0) << out;
}

}  // namespace
}  // namespace cascade::runtime
