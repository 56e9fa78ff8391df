#include "runtime/pod_bundle.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "oci/error.hpp"
#include "oci/fs.hpp"
#include "runtime/cgroups.hpp"

namespace cascade::runtime {

namespace {

namespace stdfs = std::filesystem;

constexpr size_t kMaxHostname = 64;
constexpr size_t kMaxResolvConf = 64 << 10;

bool valid_hostname(const std::string& h) {
    if (h.empty() || h.size() > kMaxHostname || h.front() == '-' || h.front() == '.') return false;
    return std::all_of(h.begin(), h.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '-' || c == '.';
    });
}

std::string hosts_file(const std::string& hostname) {
    return "127.0.0.1\tlocalhost\n"
           "::1\tlocalhost ip6-localhost ip6-loopback\n"
           "fe00::0\tip6-localnet\n"
           "ff00::0\tip6-mcastprefix\n"
           "ff02::1\tip6-allnodes\n"
           "ff02::2\tip6-allrouters\n"
           "127.0.1.1\t" +
           hostname + "\n";
}

// The host's resolv.conf as it is (podman with no network does the same; a
// stub resolver at 127.0.0.x cannot be reached from the replica's own
// network namespace, which is said in a comment).
std::string resolv_conf() {
    std::ifstream in("/etc/resolv.conf", std::ios::binary);
    if (!in) return "# the host has no /etc/resolv.conf\n";
    std::string text;
    text.resize(kMaxResolvConf);
    in.read(text.data(), static_cast<std::streamsize>(text.size()));
    text.resize(static_cast<size_t>(in.gcount()));
    bool any = false, only_loopback = true;
    std::istringstream lines(text);
    std::string line;
    while (std::getline(lines, line)) {
        std::istringstream words(line);
        std::string key, address;
        if (!(words >> key >> address) || key != "nameserver") continue;
        any = true;
        if (address.rfind("127.", 0) != 0 && address != "::1") only_loopback = false;
    }
    if (!text.empty() && text.back() != '\n') text += '\n';
    if (any && only_loopback)
        text +=
            "# note: the host's nameservers are loopback stub resolvers, not reachable from "
            "this container's own network namespace\n";
    return text;
}

void make_dir_mode(const stdfs::path& dir, mode_t mode) {
    fs::make_dirs(dir);
    if (::chmod(dir.c_str(), mode) != 0) throw sys_error("chmod", dir.string(), errno);
}

}  // namespace

BundleOptions pod_bundle_options(const oci::ContainerConfig& image, const DeploymentSpec& spec,
                                 const std::string& container_id,
                                 const std::filesystem::path& container_dir, VolumeStore& volumes) {
    const std::string who = "deployment " + spec.name;
    BundleOptions options;
    if (spec.command.empty()) {
        options = options_from_image(image, spec.args);
    } else {
        // Kubernetes: command replaces Entrypoint, and the image's Cmd goes
        // with it; args (when given) follow.
        oci::ContainerConfig replaced = image;
        replaced.entrypoint = spec.command;
        replaced.cmd = spec.args;
        options = options_from_image(replaced);
    }
    if (options.args.empty())
        throw Error(who + ": the image has neither Entrypoint nor Cmd and the deployment gives " +
                    "no command; set the deployment's command or args");

    for (const auto& kv : spec.env) {
        auto eq = kv.find('=');
        if (eq == 0 || eq == std::string::npos)
            throw Error(who + ": environment entry \"" + kv + "\" is not NAME=VALUE");
        auto key = kv.substr(0, eq + 1);
        std::erase_if(options.env, [&](const std::string& e) { return e.rfind(key, 0) == 0; });
        options.env.push_back(kv);
    }
    if (!spec.working_dir.empty()) {
        if (spec.working_dir[0] != '/')
            throw Error(who + ": working directory \"" + spec.working_dir +
                        "\" must be an absolute path");
        options.cwd = spec.working_dir;
    }
    if (!spec.user.empty()) options.user = spec.user;
    options.hostname = spec.hostname.empty() ? container_id : spec.hostname;
    if (!valid_hostname(options.hostname))
        throw Error(who + ": hostname \"" + options.hostname +
                    "\" is not valid; use letters, digits, '-' and '.' (at most 64 characters)");
    options.readonly_rootfs = spec.readonly_rootfs;
    options.seccomp_compat_arches = spec.seccomp_compat_arches;
    options.network = NetworkMode::Own;
    try {
        validate_resources(spec.resources);
    } catch (const Error& e) {
        throw Error(who + ": " + e.what());
    }
    options.resources = spec.resources;
    options.cgroups_path = cgroups_path_for(container_id);

    fs::make_dirs(container_dir);
    std::set<std::string> destinations = {"/etc/hosts", "/etc/resolv.conf"};
    int empty_index = 0;
    for (const auto& v : spec.volumes) {
        auto dest = stdfs::path(v.destination).lexically_normal().string();
        while (dest.size() > 1 && dest.back() == '/')
            dest.pop_back();
        if (v.destination.empty() || v.destination[0] != '/' || dest == "/")
            throw Error(who + ": volume destination \"" + v.destination +
                        "\" must be an absolute path other than /");
        if (!destinations.insert(dest).second)
            throw Error(who + ": two volumes (or a volume and a file cascade provides) are " +
                        "mounted at " + dest + "; give each its own destination");
        switch (v.kind) {
            case VolumeMount::Kind::Named: {
                stdfs::path data;
                try {
                    data = volumes.ensure(v.source);
                } catch (const Error& e) {
                    throw Error(who + ": volume at " + dest + ": " + e.what());
                }
                options.binds.push_back({data, dest, v.readonly});
                break;
            }
            case VolumeMount::Kind::Host: {
                if (v.source.empty() || v.source[0] != '/')
                    throw Error(who + ": host path \"" + v.source + "\" (mounted at " + dest +
                                ") must be an absolute path");
                struct stat st {};
                if (::stat(v.source.c_str(), &st) != 0)
                    throw Error(who + ": host path " + v.source + " (mounted at " + dest +
                                ") does not exist on this host (" + std::strerror(errno) +
                                "); create it first");
                options.binds.push_back({v.source, dest, v.readonly});
                break;
            }
            case VolumeMount::Kind::Tmpfs: {
                if (v.size_bytes < 0)
                    throw Error(who + ": tmpfs at " + dest + " has a negative size");
                BundleOptions::Tmpfs t{dest, {"mode=1777"}};
                if (v.size_bytes > 0) t.options.push_back("size=" + std::to_string(v.size_bytes));
                if (v.readonly) t.options.push_back("ro");
                options.tmpfs.push_back(std::move(t));
                break;
            }
            case VolumeMount::Kind::Empty: {
                // Kubernetes' emptyDir: world-writable, gone with the container.
                auto dir = container_dir / "empty" / std::to_string(empty_index++);
                make_dir_mode(dir, 0777);
                options.binds.push_back({dir, dest, v.readonly});
                break;
            }
        }
    }

    fs::write_file_atomic(container_dir / "hosts", hosts_file(options.hostname), 0644, false);
    fs::write_file_atomic(container_dir / "resolv.conf", resolv_conf(), 0644, false);
    options.hosts = container_dir / "hosts";
    options.resolv_conf = container_dir / "resolv.conf";
    return options;
}

}  // namespace cascade::runtime
