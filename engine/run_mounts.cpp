#include "engine/run_mounts.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>

#include "engine/build_cache.hpp"
#include "engine/copy.hpp"
#include "engine/step.hpp"
#include "oci/digest.hpp"
#include "oci/error.hpp"
#include "oci/strings.hpp"

namespace cascade::engine {

namespace {

namespace stdfs = std::filesystem;

std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return s;
}

bool all_digits(const std::string& s, bool octal = false) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [octal](char c) {
        return octal ? c >= '0' && c <= '7' : c >= '0' && c <= '9';
    });
}

// "/a//b/../c" → "/a/c".
std::string clean_absolute(const std::string& path) {
    std::string out;
    for (const auto& c : path_components("/" + path))
        out += "/" + c;
    return out.empty() ? "/" : out;
}

// docker's RAMInBytes: a number with an optional 1024-based unit k, m, g or
// t, itself optionally followed by "b" or "ib" ("64m", "1GiB", "512b").
std::optional<uint64_t> parse_size(std::string s) {
    s = lower(s);
    auto is_unit = [](char c) { return c == 'k' || c == 'm' || c == 'g' || c == 't'; };
    if (s.size() > 2 && s.ends_with("ib") && is_unit(s[s.size() - 3])) s.resize(s.size() - 2);
    if (s.size() > 1 && s.back() == 'b') s.pop_back();
    uint64_t unit = 1;
    if (!s.empty() && is_unit(s.back())) {
        unit = uint64_t{1} << (10 * (std::string("kmgt").find(s.back()) + 1));
        s.pop_back();
    }
    if (!all_digits(s) || s.size() > 12) return std::nullopt;
    return std::stoull(s) * unit;
}

bool parse_bool(const std::string& key, const std::optional<std::string>& value,
                const std::string& fail_prefix) {
    if (!value) return true;
    auto v = lower(*value);
    if (v == "true" || v == "1") return true;
    if (v == "false" || v == "0") return false;
    throw Error(fail_prefix + key + "=" + *value + ": expected true or false");
}

const char* type_name(RunMount::Type t) {
    switch (t) {
        case RunMount::Type::Bind:
            return "bind";
        case RunMount::Type::Cache:
            return "cache";
        case RunMount::Type::Secret:
            return "secret";
        case RunMount::Type::Tmpfs:
            return "tmpfs";
    }
    return "?";
}

// The host path of `source` inside `root`, resolved there (symlinks cannot
// leave it); with its stat.
std::pair<stdfs::path, struct stat> resolve_in(const RootDir& root, const std::string& source,
                                               const std::string& what) {
    fs::Fd fd = root.try_open(source, O_PATH | O_CLOEXEC);
    if (!fd) throw Error(what + ": " + source + " does not exist in " + root.description());
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) throw sys_error("stat", source, errno);
    std::error_code ec;
    auto real = stdfs::read_symlink("/proc/self/fd/" + std::to_string(fd.get()), ec);
    auto base = stdfs::canonical(root.path(), ec);
    if (ec) throw Error(what + ": cannot resolve " + source + " in " + root.description());
    auto rel = real.lexically_relative(base);
    if (rel.empty() || *rel.begin() == "..")
        throw Error(what + ": " + source + " resolves outside " + root.description());
    return {real, st};
}

void chown_chmod(const stdfs::path& path, uint32_t uid, uint32_t gid, mode_t mode) {
    if (::chown(path.c_str(), uid, gid) != 0) throw sys_error("chown", path.string(), errno);
    if (::chmod(path.c_str(), mode) != 0) throw sys_error("chmod", path.string(), errno);
}

}  // namespace

RunMount parse_run_mount(const std::string& value, const std::string& workdir,
                         const std::string& at) {
    const std::string prefix = at + ": RUN --mount=" + value + ": ";
    RunMount m;
    std::optional<bool> readonly;
    std::string target;
    std::vector<std::pair<std::string, std::optional<std::string>>> fields;
    for (const auto& field : split(value, ',')) {
        if (field.empty()) continue;
        auto eq = field.find('=');
        auto key = lower(field.substr(0, eq));
        std::optional<std::string> v;
        if (eq != std::string::npos) v = field.substr(eq + 1);
        if (key == "type") {
            if (!v) throw Error(prefix + "type needs a value (bind, cache, secret or tmpfs)");
            auto t = lower(*v);
            if (t == "bind")
                m.type = RunMount::Type::Bind;
            else if (t == "cache")
                m.type = RunMount::Type::Cache;
            else if (t == "secret")
                m.type = RunMount::Type::Secret;
            else if (t == "tmpfs")
                m.type = RunMount::Type::Tmpfs;
            else if (t == "ssh")
                throw Error(prefix + "type=ssh is not supported by cascade; use type=secret");
            else
                throw Error(prefix + "unknown mount type \"" + *v +
                            "\"; expected bind, cache, secret or tmpfs");
            continue;
        }
        fields.emplace_back(key, v);
    }
    const std::string kind = type_name(m.type);
    for (const auto& [key, v] : fields) {
        auto need = [&]() -> const std::string& {
            if (!v) throw Error(prefix + key + " needs a value (" + key + "=…)");
            return *v;
        };
        auto only = [&](std::initializer_list<RunMount::Type> types) {
            if (std::find(types.begin(), types.end(), m.type) == types.end())
                throw Error(prefix + key + " does not apply to type=" + kind);
        };
        if (key == "target" || key == "dst" || key == "destination") {
            target = need();
        } else if (key == "source" || key == "src") {
            only({RunMount::Type::Bind, RunMount::Type::Cache, RunMount::Type::Secret});
            m.source = need();
        } else if (key == "from") {
            only({RunMount::Type::Bind, RunMount::Type::Cache});
            m.from = need();
        } else if (key == "id") {
            only({RunMount::Type::Cache, RunMount::Type::Secret});
            m.id = need();
        } else if (key == "ro" || key == "readonly") {
            readonly = parse_bool(key, v, prefix);
        } else if (key == "rw" || key == "readwrite") {
            readonly = !parse_bool(key, v, prefix);
        } else if (key == "sharing") {
            only({RunMount::Type::Cache});
            auto s = lower(need());
            if (s == "shared")
                m.sharing = RunMount::Sharing::Shared;
            else if (s == "private")
                m.sharing = RunMount::Sharing::Private;
            else if (s == "locked")
                m.sharing = RunMount::Sharing::Locked;
            else
                throw Error(prefix + "sharing=" + *v + ": expected shared, private or locked");
        } else if (key == "mode") {
            only({RunMount::Type::Cache, RunMount::Type::Secret});
            const auto& s = need();
            if (!all_digits(s, true) || s.size() > 5)
                throw Error(prefix + "mode=" + s + ": expected octal bits such as 0755");
            m.mode = static_cast<mode_t>(std::stoul(s, nullptr, 8) & 07777);
        } else if (key == "uid" || key == "gid") {
            only({RunMount::Type::Cache, RunMount::Type::Secret});
            const auto& s = need();
            if (!all_digits(s) || s.size() > 10 || std::stoull(s) > 0xffffffffULL)
                throw Error(prefix + key + "=" + s + ": expected a number");
            (key == "uid" ? m.uid : m.gid) = static_cast<uint32_t>(std::stoull(s));
        } else if (key == "required") {
            only({RunMount::Type::Secret});
            m.required = parse_bool(key, v, prefix);
        } else if (key == "env") {
            only({RunMount::Type::Secret});
            m.env = need();
        } else if (key == "size" || key == "tmpfs-size") {
            only({RunMount::Type::Tmpfs});
            m.size = parse_size(need());
            if (!m.size) throw Error(prefix + "size=" + *v + ": expected bytes such as 64m");
        } else {
            throw Error(prefix + "unknown option \"" + key + "\" for type=" + kind);
        }
    }

    if (!target.empty())
        m.target = clean_absolute(target[0] == '/' ? target : workdir + "/" + target);
    switch (m.type) {
        case RunMount::Type::Secret:
            if (m.id.empty() && target.empty())
                throw Error(prefix + "a secret mount needs id= or target=");
            if (m.id.empty()) m.id = stdfs::path(m.target).filename().string();
            if (target.empty() && m.env.empty()) m.target = "/run/secrets/" + m.id;
            m.readonly = true;
            break;
        case RunMount::Type::Bind:
        case RunMount::Type::Cache:
        case RunMount::Type::Tmpfs:
            if (target.empty()) throw Error(prefix + "target= is required for type=" + kind);
            m.readonly = readonly.value_or(m.type == RunMount::Type::Bind);
            if (m.type == RunMount::Type::Cache && m.id.empty()) m.id = m.target;
            break;
    }
    if (m.target == "/") throw Error(prefix + "cannot mount over / (target=" + target + ")");
    return m;
}

std::optional<std::string> run_mount_from(const std::string& value) {
    for (const auto& field : split(value, ',')) {
        auto eq = field.find('=');
        if (eq != std::string::npos && lower(field.substr(0, eq)) == "from")
            return field.substr(eq + 1);
    }
    return std::nullopt;
}

void add_run_mount_inputs(StepKey& key, const std::vector<RunMount>& mounts,
                          const RunMountSources& sources) {
    for (const auto& m : mounts) {
        if (m.type != RunMount::Type::Bind) continue;
        const auto source = m.source.empty() ? std::string("/") : m.source;
        key.add("bind", m.target + "=" + source + (m.readonly ? ",ro" : ",rw"));
        if (!m.from.empty()) {
            key.add("bind-image", image_state_digest(sources.image(m.from)).str());
            continue;
        }
        const auto& root = sources.context();
        if (!root.stat(source))
            throw Error(sources.at + ": RUN --mount=type=bind,target=" + m.target + ": " + source +
                        " does not exist in " + root.description());
        std::string relative;
        for (const auto& c : path_components("/" + source))
            relative += (relative.empty() ? "" : "/") + c;
        SourceDigestOptions options;
        options.owners = true;
        key.add("bind-context",
                digest_sources(root, {relative.empty() ? "." : relative}, options).str());
    }
}

RunMounts::RunMounts(const std::vector<RunMount>& mounts, const RunMountSources& sources,
                     const std::filesystem::path& scratch, runtime::BundleOptions& options)
    : sources_(sources), scratch_(scratch), options_(options) {
    // Parents before children, so a mount inside another one lands on top.
    std::vector<const RunMount*> ordered;
    for (const auto& m : mounts)
        ordered.push_back(&m);
    std::stable_sort(ordered.begin(), ordered.end(), [](const RunMount* a, const RunMount* b) {
        return path_components(a->target).size() < path_components(b->target).size();
    });
    try {
        size_t n = 0;
        for (const auto* m : ordered) {
            n++;
            switch (m->type) {
                case RunMount::Type::Bind:
                    add_bind(*m, n);
                    break;
                case RunMount::Type::Cache:
                    add_cache(*m, n);
                    break;
                case RunMount::Type::Secret:
                    add_secret(*m);
                    break;
                case RunMount::Type::Tmpfs: {
                    runtime::BundleOptions::Tmpfs t;
                    t.destination = m->target;
                    if (m->size) t.options.push_back("size=" + std::to_string(*m->size));
                    options_.tmpfs.push_back(std::move(t));
                    break;
                }
            }
        }
    } catch (...) {
        release();
        throw;
    }
}

RunMounts::~RunMounts() {
    release();
}

void RunMounts::release() {
    if (secrets_tmpfs_) {
        ::umount2(secrets_tmpfs_->c_str(), MNT_DETACH);
        secrets_tmpfs_.reset();
    }
    overlays_.clear();
    images_.clear();
    locks_.clear();
}

void RunMounts::add_bind(const RunMount& m, size_t n) {
    const std::string what = sources_.at + ": RUN --mount=type=bind,target=" + m.target;
    auto dir = scratch_ / ("mount-" + std::to_string(n));
    const RootDir* root = nullptr;
    std::optional<RootDir> image_root;
    if (!m.from.empty()) {
        auto image = sources_.image(m.from);
        fs::make_dirs(dir);
        images_.push_back(std::make_unique<StepMount>(*sources_.layers, image, dir));
        image_root.emplace(images_.back()->rootfs(), "--from=" + m.from);
        root = &*image_root;
    } else {
        root = &sources_.context();
    }
    auto [path, st] = resolve_in(*root, m.source.empty() ? "/" : m.source, what);
    runtime::BundleOptions::Bind bind{path, m.target, m.readonly};
    if (!m.readonly && m.from.empty()) {
        // Writes must not reach the build context: an overlay (a copy for a
        // file) takes them, and is thrown away with the step.
        fs::make_dirs(dir);
        if (S_ISDIR(st.st_mode)) {
            overlays_.emplace_back(std::vector<stdfs::path>{path}, dir / "upper", dir / "work",
                                   dir / "merged");
            bind.source = dir / "merged";
        } else {
            bind.source = dir / "file";
            stdfs::copy_file(path, bind.source);
        }
    }
    // With from=, the source image is mounted on a throwaway upper already.
    options_.binds.push_back(std::move(bind));
}

void RunMounts::add_cache(const RunMount& m, size_t n) {
    const std::string what = sources_.at + ": RUN --mount=type=cache,target=" + m.target;
    if (!m.from.empty())
        throw Error(what + ",from=" + m.from +
                    ": seeding a cache mount from a stage is not supported by cascade yet; "
                    "drop from= (the cache starts empty)");
    const auto key = oci::Digest::sha256_of(m.id).encoded();
    fs::make_dirs(sources_.cache_root);
    const uint32_t uid = m.uid.value_or(0), gid = m.gid.value_or(0);
    const mode_t mode = m.mode.value_or(0755);

    fs::Fd lock = fs::open_or_throw(sources_.cache_root / (key + ".lock"),
                                    O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    stdfs::path dir = sources_.cache_root / key;
    auto take = [&](int how) {
        while (::flock(lock.get(), how) != 0) {
            if (errno == EINTR) continue;
            return false;
        }
        return true;
    };
    if (m.sharing == RunMount::Sharing::Locked) {
        take(LOCK_EX);
    } else if (m.sharing == RunMount::Sharing::Private) {
        // In use elsewhere: this step gets a fresh, throwaway cache.
        if (!take(LOCK_EX | LOCK_NB)) dir = scratch_ / ("cache-" + std::to_string(n));
    } else {
        take(LOCK_SH);
    }
    if (!stdfs::exists(dir)) {
        // Created whole or not at all: concurrent builds may race here.
        auto temp = dir.parent_path() / (dir.filename().string() + ".new-" + fs::random_hex(8));
        fs::make_dirs(temp);
        chown_chmod(temp, uid, gid, mode);
        if (::rename(temp.c_str(), dir.c_str()) != 0) {
            int err = errno;
            fs::remove_tree(temp);
            if (err != EEXIST && err != ENOTEMPTY) throw sys_error("rename", dir.string(), err);
        }
    }
    locks_.push_back(std::move(lock));
    options_.binds.push_back({dir, m.target, m.readonly});
}

void RunMounts::add_secret(const RunMount& m) {
    const std::string what = sources_.at + ": RUN --mount=type=secret,id=" + m.id;
    const stdfs::path* source = nullptr;
    if (sources_.secrets)
        if (auto it = sources_.secrets->find(m.id); it != sources_.secrets->end())
            source = &it->second;
    if (!source) {
        if (m.required)
            throw Error(what + ": the build was given no secret \"" + m.id +
                        "\"; pass it with cascade build --secret id=" + m.id + ",src=FILE");
        return;
    }
    std::string content;
    try {
        content = fs::read_file(*source);
    } catch (const Error& e) {
        throw Error(what + ": cannot read the secret: " + e.what());
    }
    if (!m.env.empty()) options_.env.push_back(m.env + "=" + content);
    if (m.target.empty()) return;

    // Copied into a private tmpfs (never onto a disk), with the owner and mode
    // the mount asks for (BuildKit's defaults: root, 0400).
    if (!secrets_tmpfs_) {
        auto dir = scratch_ / "secrets";
        fs::make_dirs(dir);
        if (::chmod(dir.c_str(), 0700) != 0) throw sys_error("chmod", dir.string(), errno);
        if (::mount("tmpfs", dir.c_str(), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                    "mode=0700,size=16m") != 0)
            throw sys_error("mount tmpfs", dir.string(), errno);
        secrets_tmpfs_ = dir;
    }
    auto file = *secrets_tmpfs_ / oci::Digest::sha256_of(m.id + "\n" + m.target).encoded();
    {
        fs::Fd fd = fs::open_or_throw(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        fs::write_all(fd.get(), content, file.string());
    }
    chown_chmod(file, m.uid.value_or(0), m.gid.value_or(0), m.mode.value_or(0400));
    options_.binds.push_back({file, m.target, true});
}

std::string bind_heredoc_script(const std::string& name, const std::string& content,
                                const std::filesystem::path& scratch,
                                runtime::BundleOptions& options, const std::string& at) {
    if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..")
        throw Error(at + ": heredoc name " + name + " is not a file name");
    auto dir = scratch / "pipes";
    fs::make_dirs(dir);
    auto file = dir / name;
    fs::write_file_atomic(file, content, 0755);
    if (::chmod(file.c_str(), 0755) != 0) throw sys_error("chmod", file.string(), errno);
    auto target = "/dev/pipes/" + name;
    options.binds.push_back({file, target, true});
    return target;
}

}  // namespace cascade::engine
