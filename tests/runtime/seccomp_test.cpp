// The default seccomp profile: its shape, and real runc enforcing it.
#include "runtime/seccomp.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>

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

TEST(SeccompProfileTest, CompatArchitecturesOnlyWhenAskedFor) {
    // Docker's list for RUN steps (BundleOptions' default); the native ABI
    // alone for replicas that do not ask (pod_bundle_test), unless the image
    // is 32-bit.
    EXPECT_EQ(default_seccomp_profile({}, true)["architectures"],
              (nlohmann::json{"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"}));
    EXPECT_EQ(default_seccomp_profile({}, false)["architectures"],
              (nlohmann::json{"SCMP_ARCH_X86_64"}));
    BundleOptions o;
    o.args = {"/bin/true"};
    o.seccomp_compat_arches = false;
    EXPECT_EQ(make_runtime_spec("/nonexistent-rootfs", o)["linux"]["seccomp"]["architectures"],
              (nlohmann::json{"SCMP_ARCH_X86_64"}));
    EXPECT_TRUE(needs_compat_arches("386"));
    EXPECT_FALSE(needs_compat_arches("amd64"));
    EXPECT_FALSE(needs_compat_arches("arm64"));
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

#if defined(__x86_64__)
// A static x86_64 ELF (one PT_LOAD at 0x400000, entry right after the
// headers) that makes the i386 syscall getpid (20) with `int $0x80`, then
// exits 0 with the 64-bit exit (60).
std::string int80_program() {
    const unsigned char code[] = {0xb8, 0x14, 0, 0, 0,  // mov $20, %eax
                                  0xcd, 0x80,           // int $0x80
                                  0x31, 0xff,           // xor %edi, %edi
                                  0xb8, 0x3c, 0, 0, 0,  // mov $60, %eax
                                  0x0f, 0x05};          // syscall
    std::string elf;
    auto put = [&](uint64_t v, int bytes) {
        for (int i = 0; i < bytes; i++)
            elf.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
    };
    const uint64_t base = 0x400000, headers = 64 + 56, size = headers + sizeof code;
    elf = {'\x7f', 'E', 'L', 'F', 2, 1, 1};  // 64-bit, little-endian, version 1
    elf.append(9, '\0');
    put(2, 2), put(0x3e, 2), put(1, 4);             // ET_EXEC, x86-64, version
    put(base + headers, 8), put(64, 8), put(0, 8);  // entry, phoff, shoff
    put(0, 4), put(64, 2), put(56, 2), put(1, 2);   // flags, ehsize, phentsize, phnum
    put(0, 2), put(0, 2), put(0, 2);                // shentsize, shnum, shstrndx
    put(1, 4), put(5, 4), put(0, 8);                // PT_LOAD, R+X, offset
    put(base, 8), put(base, 8), put(size, 8), put(size, 8), put(0x1000, 8);
    elf.append(reinterpret_cast<const char*>(code), sizeof code);
    return elf;
}

TEST_F(SeccompRuncTest, ThirtyTwoBitSyscallsOnlyWithCompatArchitectures) {
    for (bool compat : {false, true}) {
        std::string name = compat ? "compat" : "native";
        BundleOptions options;
        options.args = {"/int80"};
        options.seccomp_compat_arches = compat;
        auto bundle = plain_bundle(name, options);
        fs::write_file_atomic(bundle / "rootfs/int80", int80_program(), 0755, false);
        Runc runc(runc_root());
        auto fd = fs::open_or_throw(dir() / (name + ".out"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int status = runc.run(name, bundle, fd.get(), fd.get());
        // Native only: the i386 syscall meets libseccomp's bad-architecture
        // action, SIGSYS (128 + 31); with x86 listed, getpid is allowed.
        EXPECT_EQ(status, compat ? 0 : 128 + SIGSYS)
            << name << ": " << read_text(dir() / (name + ".out"));
    }
}
#endif

}  // namespace
}  // namespace cascade::runtime
