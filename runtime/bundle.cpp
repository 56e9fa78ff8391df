#include "runtime/bundle.hpp"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <fstream>
#include <sstream>

#include "oci/error.hpp"
#include "oci/fs.hpp"
#include "oci/strings.hpp"
#include "runtime/cgroups.hpp"
#include "runtime/seccomp.hpp"

namespace cascade::runtime {

namespace {

namespace stdfs = std::filesystem;

constexpr const char* kDefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
constexpr size_t kMaxAccountFile = 16 << 20;

// Docker's default capability set.
const std::vector<std::string> kCapabilities = {
    "CAP_CHOWN",   "CAP_DAC_OVERRIDE", "CAP_FSETID",           "CAP_FOWNER",
    "CAP_MKNOD",   "CAP_NET_RAW",      "CAP_SETGID",           "CAP_SETUID",
    "CAP_SETFCAP", "CAP_SETPCAP",      "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT",
    "CAP_KILL",    "CAP_AUDIT_WRITE",
};

// As `runc spec` generates them.
const std::vector<std::string> kMaskedPaths = {
    "/proc/acpi",          "/proc/asound",     "/proc/kcore",       "/proc/keys",
    "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
    "/sys/firmware",       "/proc/scsi",
};
const std::vector<std::string> kReadonlyPaths = {
    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
};

constexpr uint64_t kNofile = 1048576;
constexpr int kCapSysResource = 24;

// Whether this process may raise hard resource limits (CAP_SYS_RESOURCE).
bool can_raise_rlimits() {
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("CapEff:", 0) != 0) continue;
        try {
            return (std::stoull(line.substr(7), nullptr, 16) >> kCapSysResource) & 1;
        } catch (const std::exception&) {
            return false;
        }
    }
    return false;
}

// Docker's NOFILE limit, or our own hard limit when we may not raise it (runc
// would fail to start the container otherwise, e.g. inside another sandbox).
uint64_t nofile_limit() {
    rlimit current{};
    if (can_raise_rlimits() || ::getrlimit(RLIMIT_NOFILE, &current) != 0) return kNofile;
    if (current.rlim_max == RLIM_INFINITY) return kNofile;
    return std::min<uint64_t>(kNofile, current.rlim_max);
}

std::optional<uint32_t> parse_id(std::string_view s) {
    if (s.empty()) return std::nullopt;
    uint32_t v = 0;
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || ptr != s.data() + s.size() || v > 0x7fffffffu) return std::nullopt;
    return v;
}

// Reads `relative` (e.g. "etc/passwd") inside `rootfs`: every component,
// symlinks included, resolves as if rootfs were "/", so nothing outside it can
// be read. nullopt when the file does not exist there.
std::optional<std::string> read_in_root(const stdfs::path& rootfs, const std::string& relative) {
    fs::Fd root = fs::open_or_throw(rootfs, O_PATH | O_DIRECTORY);
    open_how how{};
    how.flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY;
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    int raw =
        static_cast<int>(::syscall(SYS_openat2, root.get(), relative.c_str(), &how, sizeof how));
    auto where = (rootfs / relative).string();
    if (raw < 0) {
        if (errno == ENOENT || errno == ENOTDIR) return std::nullopt;
        throw sys_error("open (inside the rootfs)", where, errno);
    }
    fs::Fd fd(raw);
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) throw sys_error("stat", where, errno);
    if (!S_ISREG(st.st_mode))
        throw Error(where + " is not a regular file; the image's account database is unusable");
    if (static_cast<size_t>(st.st_size) > kMaxAccountFile)
        throw Error(where + " is larger than 16 MiB; refusing to read it");
    return fs::read_all(fd.get(), where, kMaxAccountFile);
}

struct PasswdEntry {
    std::string name;
    uint32_t uid = 0, gid = 0;
};
struct GroupEntry {
    std::string name;
    uint32_t gid = 0;
    std::vector<std::string> members;
};

template <typename Fn>
void for_each_record(const std::optional<std::string>& text, size_t min_fields, Fn fn) {
    if (!text) return;
    std::istringstream lines(*text);
    std::string line;
    while (std::getline(lines, line)) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.empty() || line[0] == '#') continue;
        auto fields = split(line, ':');
        if (fields.size() < min_fields) continue;
        fn(fields);
    }
}

std::vector<PasswdEntry> parse_passwd(const std::optional<std::string>& text) {
    std::vector<PasswdEntry> out;
    for_each_record(text, 4, [&](const std::vector<std::string>& f) {
        auto uid = parse_id(f[2]);
        auto gid = parse_id(f[3]);
        if (uid && gid) out.push_back({f[0], *uid, *gid});
    });
    return out;
}

std::vector<GroupEntry> parse_group(const std::optional<std::string>& text) {
    std::vector<GroupEntry> out;
    for_each_record(text, 3, [&](const std::vector<std::string>& f) {
        auto gid = parse_id(f[2]);
        if (!gid) return;
        GroupEntry g{f[0], *gid, {}};
        if (f.size() >= 4 && !f[3].empty())
            for (auto& m : split(f[3], ','))
                if (!m.empty()) g.members.push_back(m);
        out.push_back(std::move(g));
    });
    return out;
}

nlohmann::json mount(const std::string& destination, const std::string& type,
                     const std::string& source, std::vector<std::string> options) {
    nlohmann::json m = {{"destination", destination}, {"type", type}, {"source", source}};
    if (!options.empty()) m["options"] = std::move(options);
    return m;
}

nlohmann::json bind_mount(const stdfs::path& source, const std::string& destination,
                          bool readonly) {
    return mount(destination, "bind", source.string(),
                 {"rbind", "rprivate", "nosuid", "nodev", readonly ? "ro" : "rw"});
}

}  // namespace

ProcessUser resolve_user(const std::filesystem::path& rootfs, const std::string& user) {
    ProcessUser out;
    if (user.empty()) return out;
    std::string user_part = user, group_part;
    bool has_group = false;
    if (auto colon = user.find(':'); colon != std::string::npos) {
        user_part = user.substr(0, colon);
        group_part = user.substr(colon + 1);
        has_group = true;
    }
    const auto passwd_path = (rootfs / "etc/passwd").string();
    const auto group_path = (rootfs / "etc/group").string();

    auto numeric_uid = parse_id(user_part);
    std::optional<uint32_t> numeric_gid;
    if (has_group) numeric_gid = parse_id(group_part);
    // Numeric users with a numeric group need no account files at all.
    bool need_passwd = !user_part.empty();
    bool need_group = (has_group && !numeric_gid) || need_passwd;

    std::vector<PasswdEntry> passwd;
    if (need_passwd) passwd = parse_passwd(read_in_root(rootfs, "etc/passwd"));
    std::vector<GroupEntry> groups;
    if (need_group) groups = parse_group(read_in_root(rootfs, "etc/group"));

    const PasswdEntry* entry = nullptr;
    if (!user_part.empty()) {
        for (const auto& p : passwd) {
            if (numeric_uid ? p.uid == *numeric_uid : p.name == user_part) {
                entry = &p;
                break;
            }
        }
        if (!entry && !numeric_uid)
            throw Error("user \"" + user_part + "\" (image USER \"" + user + "\") not found in " +
                        passwd_path + "; add the user to the image or use a numeric uid");
        out.uid = entry ? entry->uid : numeric_uid.value_or(0);
        out.gid = entry ? entry->gid : 0;
    } else if (!has_group) {
        throw Error("invalid user \"" + user + "\": expected name, uid, name:group or uid:gid");
    }

    if (has_group) {
        if (group_part.empty()) throw Error("invalid user \"" + user + "\": empty group after ':'");
        if (numeric_gid) {
            out.gid = numeric_gid.value_or(0);
        } else {
            auto it = std::find_if(groups.begin(), groups.end(),
                                   [&](const GroupEntry& g) { return g.name == group_part; });
            if (it == groups.end())
                throw Error("group \"" + group_part + "\" (image USER \"" + user +
                            "\") not found in " + group_path +
                            "; add the group to the image or use a numeric gid");
            out.gid = it->gid;
        }
    }

    // Supplementary groups, as containerd and buildah set them: the primary
    // group, then (when USER names no group) those listing the user as a member.
    out.additional_gids.push_back(out.gid);
    if (entry && !has_group) {
        for (const auto& g : groups) {
            if (std::find(g.members.begin(), g.members.end(), entry->name) == g.members.end())
                continue;
            if (g.gid == out.gid) continue;
            if (std::find(out.additional_gids.begin(), out.additional_gids.end(), g.gid) ==
                out.additional_gids.end())
                out.additional_gids.push_back(g.gid);
        }
    }
    return out;
}

BundleOptions options_from_image(const oci::ContainerConfig& config,
                                 const std::vector<std::string>& override_args) {
    BundleOptions o;
    if (config.entrypoint) o.args = *config.entrypoint;
    const auto& cmd =
        override_args.empty() ? config.cmd.value_or(std::vector<std::string>{}) : override_args;
    o.args.insert(o.args.end(), cmd.begin(), cmd.end());
    o.env = config.env;
    bool has_path = std::any_of(o.env.begin(), o.env.end(),
                                [](const std::string& e) { return e.rfind("PATH=", 0) == 0; });
    if (!has_path) o.env.insert(o.env.begin(), std::string("PATH=") + kDefaultPath);
    o.cwd = config.working_dir.empty() ? "/" : config.working_dir;
    o.user = config.user;
    return o;
}

nlohmann::json make_runtime_spec(const std::filesystem::path& rootfs,
                                 const BundleOptions& options) {
    if (options.args.empty())
        throw Error(
            "no command to run: the image has neither Entrypoint nor Cmd and none was given");
    if (options.cwd.empty() || options.cwd[0] != '/')
        throw Error("working directory \"" + options.cwd + "\" must be an absolute path");
    ProcessUser user = resolve_user(rootfs, options.user);
    const uint64_t nofile = nofile_limit();

    nlohmann::json process_user = {{"uid", user.uid}, {"gid", user.gid}};
    if (!user.additional_gids.empty()) process_user["additionalGids"] = user.additional_gids;

    nlohmann::json process = {
        {"terminal", false},
        {"user", process_user},
        {"args", options.args},
        {"env", options.env},
        {"cwd", options.cwd},
        {"capabilities",
         {{"bounding", kCapabilities}, {"effective", kCapabilities}, {"permitted", kCapabilities}}},
        {"rlimits",
         nlohmann::json::array({{{"type", "RLIMIT_NOFILE"}, {"hard", nofile}, {"soft", nofile}}})},
        {"noNewPrivileges", true},
    };

    nlohmann::json mounts = nlohmann::json::array({
        mount("/proc", "proc", "proc", {}),
        mount("/dev", "tmpfs", "tmpfs", {"nosuid", "strictatime", "mode=755", "size=65536k"}),
        mount("/dev/pts", "devpts", "devpts",
              {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}),
        mount("/dev/shm", "tmpfs", "shm",
              {"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}),
        mount("/dev/mqueue", "mqueue", "mqueue", {"nosuid", "noexec", "nodev"}),
        mount("/sys", "sysfs", "sysfs", {"nosuid", "noexec", "nodev", "ro"}),
        mount("/sys/fs/cgroup", "cgroup", "cgroup",
              {"nosuid", "noexec", "nodev", "relatime", "ro"}),
    });
    for (const auto& t : options.tmpfs) {
        if (t.destination.empty() || t.destination[0] != '/')
            throw Error("tmpfs mount destination \"" + t.destination +
                        "\" must be an absolute path");
        std::vector<std::string> tmpfs_options = {"nosuid", "nodev"};
        tmpfs_options.insert(tmpfs_options.end(), t.options.begin(), t.options.end());
        mounts.push_back(mount(t.destination, "tmpfs", "tmpfs", std::move(tmpfs_options)));
    }
    for (const auto& b : options.binds) {
        if (b.destination.empty() || b.destination[0] != '/')
            throw Error("bind mount destination \"" + b.destination + "\" (from " +
                        b.source.string() + ") must be an absolute path");
        mounts.push_back(bind_mount(stdfs::absolute(b.source), b.destination, b.readonly));
    }
    if (options.resolv_conf)
        mounts.push_back(
            bind_mount(stdfs::absolute(*options.resolv_conf), "/etc/resolv.conf", true));
    if (options.hosts)
        mounts.push_back(bind_mount(stdfs::absolute(*options.hosts), "/etc/hosts", true));

    nlohmann::json namespaces = nlohmann::json::array();
    for (const char* ns : {"pid", "ipc", "uts", "mount"})
        namespaces.push_back({{"type", ns}});
    // A new network namespace comes with only a loopback interface, which
    // runc brings up.
    if (options.network != NetworkMode::Host) namespaces.push_back({{"type", "network"}});

    nlohmann::json spec = {
        {"ociVersion", "1.0.2"},
        {"process", process},
        {"root",
         {{"path", stdfs::absolute(rootfs).string()}, {"readonly", options.readonly_rootfs}}},
        {"hostname", options.hostname},
        {"mounts", mounts},
        {"linux",
         {{"namespaces", namespaces},
          {"resources",
           {{"devices", nlohmann::json::array({{{"allow", false}, {"access", "rwm"}}})}}},
          {"maskedPaths", kMaskedPaths},
          {"readonlyPaths", kReadonlyPaths}}},
    };
    if (options.seccomp)
        spec["linux"]["seccomp"] =
            default_seccomp_profile(kCapabilities, options.seccomp_compat_arches);
    spec["linux"]["resources"].update(linux_resources(options.resources, host_cgroup_mode()));
    if (!options.cgroups_path.empty()) spec["linux"]["cgroupsPath"] = options.cgroups_path;
    return spec;
}

void write_bundle_config(const std::filesystem::path& bundle_dir, const nlohmann::json& spec) {
    fs::make_dirs(bundle_dir);
    // It lives as long as the container: no fsync (a crash of the machine ends both).
    fs::write_file_atomic(bundle_dir / "config.json", spec.dump(2) + "\n", 0644, false);
}

}  // namespace cascade::runtime
