#include "runtime/seccomp.hpp"

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <string_view>

namespace cascade::runtime {

namespace {

constexpr int kEperm = 1;
constexpr int kEnosys = 38;

// Syscalls every container may make (Docker's unconditional allow-list).
constexpr std::string_view kAllowed[] = {
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_time64",
    "futex_waitv",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setuid32",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
    // Docker allows these from kernel 4.8 on (ptrace can no longer bypass
    // seccomp there); cascade needs a newer kernel anyway (openat2).
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
};

// The namespace flags clone may not be given without CAP_SYS_ADMIN:
// CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET.
constexpr uint64_t kCloneNamespaceFlags = 2114060288;

// Syscalls Docker allows only with a capability.
struct CapabilityRule {
    std::string_view capability;
    std::initializer_list<std::string_view> names;
};
const CapabilityRule kCapabilityRules[] = {
    {"CAP_DAC_READ_SEARCH", {"open_by_handle_at"}},
    {"CAP_SYS_ADMIN",
     {"bpf",           "clone",         "clone3",      "fanotify_init",   "fsconfig",
      "fsmount",       "fsopen",        "fspick",      "lookup_dcookie",  "mount",
      "mount_setattr", "move_mount",    "open_tree",   "perf_event_open", "quotactl",
      "quotactl_fd",   "setdomainname", "sethostname", "setns",           "syslog",
      "umount",        "umount2",       "unshare"}},
    {"CAP_SYS_BOOT", {"reboot"}},
    {"CAP_SYS_CHROOT", {"chroot"}},
    {"CAP_SYS_MODULE", {"delete_module", "init_module", "finit_module"}},
    {"CAP_SYS_PACCT", {"acct"}},
    {"CAP_SYS_PTRACE",
     {"kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev", "ptrace"}},
    {"CAP_SYS_RAWIO", {"iopl", "ioperm"}},
    {"CAP_SYS_TIME", {"settimeofday", "stime", "clock_settime", "clock_settime64"}},
    {"CAP_SYS_TTY_CONFIG", {"vhangup"}},
    {"CAP_SYS_NICE", {"get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"}},
    {"CAP_SYSLOG", {"syslog"}},
    {"CAP_BPF", {"bpf"}},
    {"CAP_PERFMON", {"perf_event_open"}},
};

nlohmann::json names_json(std::initializer_list<std::string_view> names) {
    auto out = nlohmann::json::array();
    for (auto n : names)
        out.push_back(std::string(n));
    return out;
}

nlohmann::json allow(nlohmann::json names) {
    return {{"names", std::move(names)}, {"action", "SCMP_ACT_ALLOW"}};
}

nlohmann::json arg(unsigned index, uint64_t value, const char* op) {
    return {{"index", index}, {"value", value}, {"op", op}};
}

}  // namespace

nlohmann::json default_seccomp_profile(const std::vector<std::string>& capabilities,
                                       bool compat_arches) {
    auto has = [&](std::string_view cap) {
        return std::find(capabilities.begin(), capabilities.end(), cap) != capabilities.end();
    };
    auto syscalls = nlohmann::json::array();

    auto allowed = nlohmann::json::array();
    for (auto n : kAllowed)
        allowed.push_back(std::string(n));
    syscalls.push_back(allow(std::move(allowed)));

    // Any socket family but AF_VSOCK (40).
    auto socket = allow(names_json({"socket"}));
    socket["args"] = nlohmann::json::array({arg(0, 40, "SCMP_CMP_NE")});
    syscalls.push_back(std::move(socket));

    // personality(2) only with PER_LINUX, PER_LINUX32, UNAME26 (with either)
    // or the 0xffffffff query.
    for (uint64_t persona : {0ull, 8ull, 131072ull, 131080ull, 4294967295ull}) {
        auto rule = allow(names_json({"personality"}));
        rule["args"] = nlohmann::json::array({arg(0, persona, "SCMP_CMP_EQ")});
        syscalls.push_back(std::move(rule));
    }

    nlohmann::json architectures;
#if defined(__x86_64__)
    architectures = nlohmann::json::array({"SCMP_ARCH_X86_64"});
    if (compat_arches)
        for (const char* a : {"SCMP_ARCH_X86", "SCMP_ARCH_X32"})
            architectures.push_back(a);
    syscalls.push_back(allow(names_json({"arch_prctl", "modify_ldt"})));
#elif defined(__aarch64__)
    architectures = nlohmann::json::array({"SCMP_ARCH_AARCH64"});
    if (compat_arches) architectures.push_back("SCMP_ARCH_ARM");
    syscalls.push_back(
        allow(names_json({"arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2",
                          "breakpoint", "cacheflush", "set_tls"})));
#else
#error "cascade's default seccomp profile knows x86_64 and aarch64 hosts only"
#endif

    for (const auto& rule : kCapabilityRules)
        if (has(rule.capability)) syscalls.push_back(allow(names_json(rule.names)));

    if (!has("CAP_SYS_ADMIN")) {
        // clone without namespace flags (threads and fork stay possible);
        // clone3 passes its flags in memory seccomp cannot read, so it fails
        // with ENOSYS and libcs fall back to clone.
        auto clone = allow(names_json({"clone"}));
        clone["args"] = nlohmann::json::array({arg(0, kCloneNamespaceFlags, "SCMP_CMP_MASKED_EQ")});
        clone["args"][0]["valueTwo"] = 0;
        syscalls.push_back(std::move(clone));
        syscalls.push_back({{"names", names_json({"clone3"})},
                            {"action", "SCMP_ACT_ERRNO"},
                            {"errnoRet", kEnosys}});
    }

    return {
        {"defaultAction", "SCMP_ACT_ERRNO"},
        {"defaultErrnoRet", kEperm},
        {"architectures", std::move(architectures)},
        {"syscalls", std::move(syscalls)},
    };
}

bool needs_compat_arches(const std::string& image_arch) {
#if defined(__x86_64__)
    return image_arch == "386";
#elif defined(__aarch64__)
    return image_arch == "arm";
#else
    return false;
#endif
}

}  // namespace cascade::runtime
