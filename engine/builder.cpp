#include "engine/builder.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "engine/add_source.hpp"
#include "engine/build_cache.hpp"
#include "engine/copy.hpp"
#include "engine/dockerfile.hpp"
#include "engine/dockerignore.hpp"
#include "engine/healthcheck.hpp"
#include "engine/image_source.hpp"
#include "engine/run_mounts.hpp"
#include "engine/stage_runner.hpp"
#include "engine/step.hpp"
#include "oci/error.hpp"
#include "oci/fs.hpp"
#include "oci/media_types.hpp"
#include "oci/reference.hpp"
#include "registry/importer.hpp"
#include "registry/store.hpp"
#include "runtime/bundle.hpp"
#include "runtime/rootfs.hpp"
#include "runtime/runc.hpp"

namespace cascade::engine {

namespace {

namespace stdfs = std::filesystem;

constexpr const char* kHistoryComment = "buildkit.dockerfile.v0";
const std::vector<std::string> kDefaultShell = {"/bin/sh", "-c"};
// Build args Docker passes to RUN without an ARG declaring them.
const std::set<std::string> kProxyArgs = {"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy",
                                          "FTP_PROXY",  "ftp_proxy",  "NO_PROXY",    "no_proxy",
                                          "ALL_PROXY",  "all_proxy"};

// Predefined platform args (BuildKit's): usable in FROM lines, and inside a
// stage once an ARG names them.
const std::map<std::string, std::string>& platform_args() {
    static const std::map<std::string, std::string> args = [] {
        auto arch = host_arch();
        return std::map<std::string, std::string>{
            {"TARGETPLATFORM", "linux/" + arch},
            {"TARGETOS", "linux"},
            {"TARGETARCH", arch},
            {"TARGETVARIANT", ""},
            {"BUILDPLATFORM", "linux/" + arch},
            {"BUILDOS", "linux"},
            {"BUILDARCH", arch},
            {"BUILDVARIANT", ""},
        };
    }();
    return args;
}

std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return s;
}

std::string join(const std::vector<std::string>& parts, const std::string& sep = " ") {
    std::string out;
    for (const auto& p : parts) {
        if (!out.empty()) out += sep;
        out += p;
    }
    return out;
}

std::string abbreviate(const std::string& text, size_t max = 100) {
    auto first_line = text.substr(0, text.find('\n'));
    if (first_line.size() <= max && first_line.size() == text.size()) return text;
    return first_line.substr(0, max) + "…";
}

// Go's %q of a []string, as BuildKit writes CMD/ENTRYPOINT history.
std::string quoted_list(const std::vector<std::string>& items) {
    std::string out = "[";
    for (size_t i = 0; i < items.size(); i++) {
        if (i) out += ' ';
        out += '"';
        for (unsigned char c : items[i]) {
            if (c == '"' || c == '\\') {
                out += '\\';
                out += static_cast<char>(c);
            } else if (c == '\n') {
                out += "\\n";
            } else if (c == '\t') {
                out += "\\t";
            } else if (c < 0x20 || c == 0x7f) {
                char buf[8];
                std::snprintf(buf, sizeof buf, "\\x%02x", c);
                out += buf;
            } else {
                out += static_cast<char>(c);
            }
        }
        out += '"';
    }
    return out + "]";
}

std::optional<std::string> env_value(const std::vector<std::string>& env, const std::string& name) {
    for (auto it = env.rbegin(); it != env.rend(); ++it)
        if (it->size() > name.size() && it->compare(0, name.size(), name) == 0 &&
            (*it)[name.size()] == '=')
            return it->substr(name.size() + 1);
    return std::nullopt;
}

void set_env(std::vector<std::string>& env, const std::string& name, const std::string& value) {
    for (auto& e : env) {
        if (e.size() > name.size() && e.compare(0, name.size(), name) == 0 &&
            e[name.size()] == '=') {
            e = name + "=" + value;
            return;
        }
    }
    env.push_back(name + "=" + value);
}

// ARGs in scope, in declaration order; a declared ARG may have no value.
struct ArgScope {
    std::vector<std::pair<std::string, std::optional<std::string>>> vars;

    const std::optional<std::string>* find(const std::string& name) const {
        for (const auto& [k, v] : vars)
            if (k == name) return &v;
        return nullptr;
    }
    void set(const std::string& name, std::optional<std::string> value) {
        for (auto& [k, v] : vars) {
            if (k == name) {
                v = std::move(value);
                return;
            }
        }
        vars.emplace_back(name, std::move(value));
    }
};

// The ARGs before the first FROM, with build args applied; what FROM lines
// expand with.
struct GlobalArgs {
    ArgScope scope;

    Lookup lookup() const {
        return [this](const std::string& name) -> std::optional<std::string> {
            if (const auto* v = scope.find(name); v && *v) return **v;
            if (auto it = platform_args().find(name); it != platform_args().end())
                return it->second;
            return std::nullopt;
        };
    }
};

std::string where_of(const Dockerfile& df, int line) {
    return df.file_name + ":" + std::to_string(line);
}

GlobalArgs evaluate_global_args(const Dockerfile& df,
                                const std::map<std::string, std::string>& build_args,
                                std::set<std::string>* used) {
    GlobalArgs globals;
    for (const auto& ins : df.global_args) {
        auto decls = parse_args(ins.raw, globals.lookup(), where_of(df, ins.line), df.escape);
        for (auto& [name, value] : decls) {
            if (auto it = build_args.find(name); it != build_args.end()) {
                value = it->second;
                if (used) used->insert(name);
            }
            globals.scope.set(name, value);
        }
    }
    return globals;
}

// The stage named `name` defined before stage `before`, if any.
std::optional<size_t> stage_named(const Dockerfile& df, const std::string& name, size_t before) {
    auto wanted = lower(name);
    if (wanted.empty()) return std::nullopt;
    for (size_t j = before; j-- > 0;)
        if (df.stages[j].name == wanted) return j;
    return std::nullopt;
}

// "8080" → {"8080/tcp"}; "53/UDP" → {"53/udp"}; "8000-8002" → three ports.
std::vector<std::string> expand_port(const std::string& spec, const std::string& where) {
    auto fail = [&] {
        return Error(where + ": EXPOSE " + spec +
                     ": invalid port; expected PORT, PORT/PROTOCOL or FIRST-LAST[/PROTOCOL] "
                     "(protocol tcp, udp or sctp)");
    };
    std::string ports = spec, proto = "tcp";
    if (auto slash = spec.find('/'); slash != std::string::npos) {
        ports = spec.substr(0, slash);
        proto = lower(spec.substr(slash + 1));
    }
    if (proto != "tcp" && proto != "udp" && proto != "sctp") throw fail();
    auto number = [&](const std::string& s) {
        if (s.empty() || s.size() > 5 ||
            !std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); }))
            throw fail();
        int n = std::stoi(s);
        if (n > 65535) throw fail();
        return n;
    };
    int first = 0, last = 0;
    if (auto dash = ports.find('-'); dash != std::string::npos) {
        first = number(ports.substr(0, dash));
        last = number(ports.substr(dash + 1));
        if (last < first) throw fail();
    } else {
        first = last = number(ports);
    }
    std::vector<std::string> out;
    for (int p = first; p <= last; p++)
        out.push_back(std::to_string(p) + "/" + proto);
    return out;
}

mode_t parse_chmod(const std::string& text, const std::string& where) {
    if (text.empty() || text.size() > 5 ||
        !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '7'; }))
        throw Error(where + ": --chmod=" + text +
                    ": expected octal permission bits such as 644 or 0755");
    return static_cast<mode_t>(std::stoul(text, nullptr, 8) & 07777);
}

std::optional<uint32_t> parse_id(const std::string& s) {
    if (s.empty() || s.size() > 10 ||
        !std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); }))
        return std::nullopt;
    auto v = std::stoull(s);
    if (v > 0xffffffffULL) return std::nullopt;
    return static_cast<uint32_t>(v);
}

// --chown=user[:group], names looked up in the destination rootfs (inside it:
// resolve_user follows symlinks as if the rootfs were "/"). Without a group,
// a uid's gid is the same number and a user name's is its primary group
// (buildah and BuildKit).
Owner resolve_chown(const std::string& spec, const stdfs::path& rootfs, const std::string& where) {
    auto colon = spec.find(':');
    std::string user = spec.substr(0, colon);
    std::string group = colon == std::string::npos ? std::string() : spec.substr(colon + 1);
    if (user.empty() || (colon != std::string::npos && group.empty()))
        throw Error(where + ": --chown=" + spec + ": expected user, uid, user:group or uid:gid");
    Owner owner;
    std::optional<uint32_t> primary_gid;
    try {
        if (auto uid = parse_id(user)) {
            owner.uid = *uid;
        } else {
            auto resolved = runtime::resolve_user(rootfs, user);
            owner.uid = resolved.uid;
            primary_gid = resolved.gid;
        }
        if (colon == std::string::npos)
            owner.gid = primary_gid.value_or(owner.uid);
        else if (auto gid = parse_id(group))
            owner.gid = *gid;
        else
            owner.gid = runtime::resolve_user(rootfs, ":" + group).gid;
    } catch (const Error& e) {
        throw Error(where + ": --chown=" + spec + ": " + e.what());
    }
    return owner;
}

// "<<EOF", "<<-EOF", "<<\"EOF\"" … naming heredoc `name`.
bool is_heredoc_word(const std::string& word, const std::string& name) {
    if (word.rfind("<<", 0) != 0) return false;
    std::string rest = word.substr(2);
    if (!rest.empty() && rest[0] == '-') rest.erase(0, 1);
    rest.erase(
        std::remove_if(rest.begin(), rest.end(), [](char c) { return c == '"' || c == '\''; }),
        rest.end());
    return rest == name;
}

std::string trim(const std::string& s) {
    auto b = s.find_first_not_of(" \t\r\n");
    if (b == std::string::npos) return {};
    auto e = s.find_last_not_of(" \t\r\n");
    return s.substr(b, e - b + 1);
}

// "/a//b/../c/" → "/a/c"; never climbs above "/".
std::string clean_absolute(const std::string& path) {
    std::string out;
    for (const auto& c : path_components("/" + path))
        out += "/" + c;
    return out.empty() ? "/" : out;
}

// A per-step scratch directory, removed (with everything in it) on scope exit.
struct StepDir {
    stdfs::path path;
    explicit StepDir(stdfs::path p) : path(std::move(p)) { fs::make_dirs(path); }
    StepDir(const StepDir&) = delete;
    StepDir& operator=(const StepDir&) = delete;
    ~StepDir() {
        try {
            fs::remove_tree(path);
        } catch (...) {
        }
    }
};

struct StageState {
    bool built = false;
    bool building = false;
    bool failed = false;
    std::thread::id builder;  // the thread building it, while `building`
    size_t step_number = 0;   // of the step being executed
    ImageState image;
    std::string base_name;  // "" for scratch
    std::optional<oci::Digest> base_digest;
    ArgScope args;
    bool cmd_set = false;  // CMD given in this stage (ENTRYPOINT keeps it then)
    // The step being executed: what finish_step reports. fs_step sets
    // step_bytes; the cache sets step_cached on a hit.
    bool step_cached = false;
    int64_t step_bytes = 0;
};

// "1.2s", "3.4 MB": progress output.
std::string seconds_text(int64_t ms) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1fs", static_cast<double>(ms) / 1000.0);
    return buf;
}

std::string size_text(int64_t bytes) {
    const char* units[] = {"B", "kB", "MB", "GB", "TB"};
    double v = static_cast<double>(bytes);
    size_t u = 0;
    while (v >= 1000.0 && u + 1 < std::size(units)) {
        v /= 1000.0;
        u++;
    }
    char buf[32];
    if (u == 0)
        std::snprintf(buf, sizeof buf, "%lld B", static_cast<long long>(bytes));
    else
        std::snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
    return buf;
}

// The log prefix of the stage the current thread builds ("[stage-1] "),
// empty in single-stage builds.
thread_local const std::string* current_stage_prefix = nullptr;

struct StagePrefixScope {
    const std::string* saved;
    explicit StagePrefixScope(const std::string* prefix) : saved(current_stage_prefix) {
        current_stage_prefix = prefix;
    }
    ~StagePrefixScope() { current_stage_prefix = saved; }
    StagePrefixScope(const StagePrefixScope&) = delete;
    StagePrefixScope& operator=(const StagePrefixScope&) = delete;
};

// One build: the parsed Dockerfile, the state of its stages and the scratch
// directory every step works in.
class BuildSession {
  public:
    BuildSession(registry::Store& store, runtime::LayerCache& layers, runtime::Runc& runc,
                 const stdfs::path& work_root, const BuildRequest& request,
                 BuildCache* cache = nullptr, const BuilderOptions* options = nullptr)
        : store_(store),
          layers_(layers),
          runc_(runc),
          request_(request),
          epoch_(oci::source_date_epoch().value_or(0)),
          created_(oci::rfc3339(epoch_)),
          build_id_(fs::random_hex(12)),
          work_root_(work_root),
          cache_(cache),
          options_(options ? *options : kNoOptions) {}

    BuildResult run() {
        if (!oci::is_valid_repository_name(request_.output_repository))
            throw Error("invalid output repository \"" + request_.output_repository +
                        "\": use lower-case path components such as app-a or team/app");
        if (!request_.output_tag.empty() && !oci::is_valid_tag(request_.output_tag))
            throw Error("invalid output tag \"" + request_.output_tag +
                        "\": use letters, digits, '_', '.' and '-' (at most 128)");

        std::string text;
        std::string file_name = "Dockerfile";
        if (request_.dockerfile_text) {
            text = *request_.dockerfile_text;
        } else {
            stdfs::path path = request_.dockerfile;
            if (path.is_relative()) path = request_.context / path;
            text = fs::read_file(path);
            file_name = request_.dockerfile;
        }
        df_ = Dockerfile::parse(text, file_name);
        if (df_.stages.empty()) throw Error(file_name + ": no FROM instruction; nothing to build");
        globals_ = evaluate_global_args(df_, request_.build_args, &used_args_);
        target_ = target_stage();
        states_.assign(df_.stages.size(), StageState{});

        fs::make_dirs(work_root_);
        work_.emplace(work_root_, "build-");

        auto needed = plan();
        stopper_.emplace(runc_, request_.cancel);
        try {
            build_stages(needed);
            check_cancelled();
        } catch (...) {
            if (stopper_->cancelled()) throw Error("build cancelled");
            throw;
        }
        warn_unused_args();
        return commit(states_[target_]);
    }

  private:
    void log(const std::string& line) const {
        if (!request_.log) return;
        // One line at a time: stages log from their own threads.
        std::lock_guard lock(log_mu_);
        request_.log(current_stage_prefix ? *current_stage_prefix + line : line);
    }

    // The log for a step's container output, which arrives on another thread.
    LogFn stage_log() const {
        return [this, prefix = current_stage_prefix](const std::string& line) {
            StagePrefixScope scope(prefix);
            log(line);
        };
    }

    // An image FROM, COPY --from or RUN --mount=from names: the store's, or
    // pulled from another registry (progress in the build log).
    ResolvedImage pull(const std::string& text, const std::string& at, const std::string& what) {
        return pull_image(store_, options_, text, at, what,
                          [this](const std::string& line) { log(line); });
    }

    // The image's WORKDIR, "/" when it has none.
    static std::string workdir_of(const StageState& st) {
        const auto& dir = st.image.config.config.working_dir;
        return dir.empty() ? std::string("/") : dir;
    }

    void check_cancelled() const {
        if (stopper_ && stopper_->stopped()) throw Error("build cancelled");
    }

    // Numbers the steps of the stages to build in stage order (so numbering,
    // like the image, does not depend on scheduling) and builds them: the
    // independent ones in parallel.
    void build_stages(const std::vector<size_t>& needed) {
        size_t next = 1;
        for (size_t i : needed) {
            first_step_[i] = next;
            next += 1 + df_.stages[i].instructions.size();
        }
        total_steps_ = next - 1;
        if (needed.size() <= 1) {
            for (size_t i : needed)
                ensure_stage(i);
            return;
        }
        for (size_t i = 0; i < df_.stages.size(); i++)
            prefixes_.push_back(
                "[" +
                (df_.stages[i].name.empty() ? "stage-" + std::to_string(i) : df_.stages[i].name) +
                "] ");
        std::map<size_t, std::set<size_t>> deps;
        for (size_t i : needed)
            deps[i] = stage_dependencies(i);
        run_dependency_graph(
            deps, default_stage_parallelism(), [this](size_t i) { ensure_stage(i); },
            [this] { stopper_->abort(); });
    }

    size_t first_step(size_t i) {
        std::lock_guard lock(steps_mu_);
        if (auto it = first_step_.find(i); it != first_step_.end()) return it->second;
        // A stage the plan did not foresee (COPY --from with a stage ARG).
        first_step_[i] = total_steps_ + 1;
        total_steps_ += 1 + df_.stages[i].instructions.size();
        return first_step_[i];
    }

    std::string where(int line) const { return where_of(df_, line); }

    size_t target_stage() const {
        if (request_.target.empty()) return df_.stages.size() - 1;
        auto wanted = lower(request_.target);
        for (size_t i = 0; i < df_.stages.size(); i++)
            if (df_.stages[i].name == wanted) return i;
        std::vector<std::string> names;
        for (const auto& s : df_.stages)
            if (!s.name.empty()) names.push_back(s.name);
        throw Error("build target \"" + request_.target + "\" is not a stage of " + df_.file_name +
                    (names.empty() ? "" : "; its stages are " + join(names, ", ")));
    }

    // FROM's image text, expanded with the global ARGs; the override replaces
    // the target stage's.
    std::string stage_base(size_t i) const {
        if (i == target_ && !request_.from_override.empty()) return request_.from_override;
        const auto& stage = df_.stages[i];
        return expand_word(stage.base, globals_.lookup(), where(stage.line), df_.escape);
    }

    // A COPY --from value: a stage index or name (defined before `current`),
    // else nullopt (an image).
    std::optional<size_t> copy_source_stage(const std::string& from, size_t current,
                                            const std::string& at) const {
        if (auto n = parse_id(from)) {
            if (*n >= current)
                throw Error(at + ": --from=" + from + ": stage " + from +
                            " is not defined before this stage");
            return *n;
        }
        return stage_named(df_, from, current);
    }

    // The target and every stage it needs (FROM <stage>, COPY --from=<stage>),
    // ascending.
    std::vector<size_t> plan() const {
        std::set<size_t> needed;
        std::vector<size_t> todo{target_};
        while (!todo.empty()) {
            size_t i = todo.back();
            todo.pop_back();
            if (!needed.insert(i).second) continue;
            for (size_t j : stage_dependencies(i))
                todo.push_back(j);
        }
        return {needed.begin(), needed.end()};
    }

    // The stages stage `i` builds on: FROM <stage>, COPY --from=<stage>.
    std::set<size_t> stage_dependencies(size_t i) const {
        std::set<size_t> deps;
        {
            if (auto j = stage_named(df_, stage_base(i), i)) deps.insert(*j);
            for (const auto& ins : df_.stages[i].instructions) {
                if (ins.keyword == "RUN") {
                    for (const auto& [k, v] : ins.flags)
                        if (auto from = run_mount_from(v); k == "mount" && from)
                            deps_from_run_mount(ins, *from, i, deps);
                    continue;
                }
                if (ins.keyword != "COPY" && ins.keyword != "ADD") continue;
                auto from = flag(ins, "from");
                if (!from) continue;
                std::optional<size_t> j;
                try {
                    j = copy_source_stage(
                        expand_word(*from, globals_.lookup(), where(ins.line), df_.escape), i,
                        where(ins.line));
                } catch (const Error&) {
                    continue;  // reported when the instruction runs
                }
                if (j) deps.insert(*j);
            }
        }
        return deps;
    }

    static std::optional<std::string> flag(const Instruction& ins, const std::string& name) {
        std::optional<std::string> out;
        for (const auto& [k, v] : ins.flags) {
            std::string key = k.rfind("--", 0) == 0 ? k.substr(2) : k;
            if (key == name) out = v;
        }
        return out;
    }

    void check_flags(const Instruction& ins, const std::set<std::string>& allowed) const {
        for (const auto& [k, v] : ins.flags) {
            std::string key = k.rfind("--", 0) == 0 ? k.substr(2) : k;
            if (!allowed.count(key))
                throw Error(where(ins.line) + ": " + ins.keyword + " --" + key +
                            " is not supported by cascade yet");
        }
    }

    // Builds stage `i` unless it is built; waits when another thread builds it.
    void ensure_stage(size_t i) {
        auto& st = states_[i];
        const auto self = std::this_thread::get_id();
        {
            std::unique_lock lock(stages_mu_);
            stages_cv_.wait(lock, [&] { return !st.building || st.builder == self; });
            if (st.built) return;
            if (st.building)
                throw Error(where(df_.stages[i].line) + ": stage " + std::to_string(i) +
                            " depends on itself");
            if (st.failed)
                throw Error(where(df_.stages[i].line) + ": stage " + std::to_string(i) + " failed");
            st.building = true;
            st.builder = self;
        }
        try {
            StagePrefixScope scope(prefixes_.empty() ? nullptr : &prefixes_[i]);
            build_stage(i);
        } catch (...) {
            std::lock_guard lock(stages_mu_);
            st.building = false;
            st.failed = true;
            stages_cv_.notify_all();
            throw;
        }
        std::lock_guard lock(stages_mu_);
        st.building = false;
        st.built = true;
        stages_cv_.notify_all();
    }

    void log_step(size_t number, const std::string& text) {
        size_t total = 0;
        {
            std::lock_guard lock(steps_mu_);
            total_steps_ = std::max(total_steps_, number);
            total = total_steps_;
        }
        log("STEP " + std::to_string(number) + "/" + std::to_string(total) + ": " + text);
    }

    // The end of a step: its progress line and its report. `cached`: reused
    // from the build cache; `bytes`: the compressed size of its layer.
    void finish_step(const StageState& st, const std::string& text, bool cached, int64_t bytes,
                     std::chrono::steady_clock::time_point started) {
        StepReport report;
        report.number = st.step_number;
        report.stage = static_cast<size_t>(&st - states_.data());
        report.text = text;
        report.cached = cached;
        report.duration_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                 std::chrono::steady_clock::now() - started)
                                 .count();
        report.bytes = bytes;
        if (!cached)  // fs_step logged "--> Using cache <layer>"
            log("--> done in " + seconds_text(report.duration_ms) +
                (bytes > 0 ? ", " + size_text(bytes) : ""));
        if (request_.on_step) {
            std::lock_guard lock(report_mu_);
            request_.on_step(report);
        }
    }

    void build_stage(size_t i) {
        const auto& stage = df_.stages[i];
        auto& st = states_[i];
        const auto at = where(stage.line);
        auto base = stage_base(i);
        check_cancelled();
        const auto from_started = std::chrono::steady_clock::now();
        const auto from_text = "FROM " + base + (stage.name.empty() ? "" : " AS " + stage.name);
        st.step_number = first_step(i);
        log_step(st.step_number, from_text);

        if (!stage.platform.empty()) {
            auto platform = expand_word(stage.platform, globals_.lookup(), at, df_.escape);
            auto host = "linux/" + host_arch();
            if (!platform.empty() && platform != host)
                throw Error(at + ": FROM --platform=" + platform +
                            ": cascade builds for the build host's platform (" + host + ") only");
        }

        if (lower(base) == "scratch") {
            st.image = scratch_image();
        } else if (auto j = stage_named(df_, base, i)) {
            ensure_stage(*j);
            const auto& parent = states_[*j];
            st.image = parent.image;
            st.base_name = parent.base_name;
            st.base_digest = parent.base_digest;
        } else {
            auto what = "FROM " + base;
            auto resolved = pull(base, at, what);
            st.image = std::move(resolved.image);
            st.base_name = resolved.name;
            st.base_digest = resolved.digest;
            log("--> " + resolved.name + " " + resolved.digest.str());
        }
        // The base's ONBUILD triggers run first, as part of the FROM step;
        // the new image does not inherit them.
        st.step_bytes = 0;
        auto triggers = std::move(st.image.config.config.on_build);
        st.image.config.config.on_build.clear();
        for (const auto& ins :
             parse_onbuild_triggers(triggers, at + ": FROM " + base, stage.line)) {
            check_cancelled();
            log("--> ONBUILD " + ins.original);
            try {
                execute(i, st, ins);
            } catch (const Error& e) {
                throw Error(at + ": FROM " + base + ": ONBUILD trigger " + ins.original +
                            " of the base image failed: " + e.what());
            }
        }
        // OpenShift's dockerStrategy.env: one ENV right after every FROM.
        if (!request_.env.empty()) {
            std::string history = "ENV";
            for (const auto& [k, v] : request_.env) {
                set_env(st.image.config.config.env, k, v);
                history += " " + k + "=" + v;
            }
            add_history(st, history, true);
        }
        finish_step(st, from_text, false, st.step_bytes, from_started);

        for (const auto& ins : stage.instructions) {
            check_cancelled();
            const auto started = std::chrono::steady_clock::now();
            st.step_number++;
            st.step_cached = false;
            st.step_bytes = 0;
            log_step(st.step_number, ins.original);
            try {
                execute(i, st, ins);
            } catch (const Error& e) {
                std::string message = e.what();
                if (message.rfind(df_.file_name + ":", 0) == 0) throw;
                throw Error(where(ins.line) + ": " + ins.keyword + " " + abbreviate(ins.raw) +
                            ": " + message);
            }
            finish_step(st, ins.original, st.step_cached, st.step_bytes, started);
        }
    }

    Lookup stage_lookup(const StageState& st) const {
        return [&st](const std::string& name) -> std::optional<std::string> {
            if (auto v = env_value(st.image.config.config.env, name)) return v;
            if (const auto* a = st.args.find(name); a && *a) return **a;
            return std::nullopt;
        };
    }

    void add_history(StageState& st, const std::string& created_by, bool empty_layer) const {
        oci::HistoryEntry h;
        h.created = created_;
        h.created_by = created_by;
        h.comment = kHistoryComment;
        h.empty_layer = empty_layer;
        st.image.config.history.push_back(std::move(h));
    }

    std::vector<std::string> shell_of(const StageState& st) const {
        const auto& shell = st.image.config.config.shell;
        return shell && !shell->empty() ? *shell : kDefaultShell;
    }

    std::vector<std::string> command_args(const StageState& st, const Instruction& ins) const {
        if (ins.exec_form) return ins.exec_args;
        auto args = shell_of(st);
        args.push_back(ins.raw);
        return args;
    }

    // A step that changes the file system: `fn` works on the mounted parent
    // image; what it changed (the overlay's upper dir) becomes a layer. With
    // a build cache, a step whose key (parent state, `created_by`, `inputs`)
    // is known reuses that layer and `fn` does not run.
    template <typename Fn>
    void fs_step(StageState& st, const std::string& created_by, Fn&& fn) {
        fs_step(st, created_by, StepKey{}, std::forward<Fn>(fn));
    }
    template <typename Fn>
    void fs_step(StageState& st, const std::string& created_by, const StepKey& inputs, Fn&& fn) {
        std::optional<oci::Digest> key;
        std::optional<BuildCache::Entry> hit;
        if (cache_) key = inputs.digest(st.image, created_by);
        if (key && !request_.no_cache) hit = cache_->lookup(*key);
        std::optional<LayerOutput> layer;
        if (hit) {
            layer = hit->layer;
            st.step_cached = true;
            log("--> Using cache " +
                (layer ? layer->descriptor.digest.short_hex() : std::string("(no layer)")));
        } else {
            StepDir dir(next_step_dir());
            StepMount mount(layers_, st.image, dir.path);
            fn(mount, dir.path);
            mount.unmount();
            layer = commit_upper(store_.blobs(), mount.upper(), epoch_, &layers_);
            if (key) cache_->store(*key, {layer});
        }
        if (layer) {
            st.image.layers.push_back(layer->descriptor);
            st.image.config.diff_ids.push_back(layer->diff_id);
            if (!hit) {
                st.step_bytes += layer->descriptor.size;
                log("--> layer " + layer->descriptor.digest.short_hex());
            }
        }
        add_history(st, created_by + " # buildkit", !layer);
    }

    stdfs::path next_step_dir() { return work_->path() / ("step-" + std::to_string(++dirs_)); }

    void execute(size_t index, StageState& st, const Instruction& ins) {
        const auto at = where(ins.line);
        const auto lookup = stage_lookup(st);
        auto& config = st.image.config.config;
        const auto& kw = ins.keyword;

        if (kw != "RUN" && kw != "COPY" && kw != "ADD" && kw != "HEALTHCHECK") check_flags(ins, {});

        if (kw == "HEALTHCHECK") {
            config.healthcheck = parse_healthcheck(ins, at);
            add_history(st, healthcheck_history(*config.healthcheck), true);
        } else if (kw == "ONBUILD") {
            // Kept as written, run by builds FROM this image (not expanded).
            config.on_build.push_back(ins.raw);
            add_history(st, "ONBUILD " + ins.raw, true);
        } else if (kw == "RUN") {
            run(index, st, ins);
        } else if (kw == "COPY" || kw == "ADD") {
            copy(index, st, ins);
        } else if (kw == "ENV") {
            auto pairs = parse_key_values(ins.raw, lookup, at, true, df_.escape);
            if (pairs.empty()) throw Error(at + ": ENV needs at least one name=value");
            std::string history = "ENV";
            for (const auto& [k, v] : pairs) {
                set_env(config.env, k, v);
                history += " " + k + "=" + v;
            }
            add_history(st, history, true);
        } else if (kw == "ARG") {
            auto decls = parse_args(ins.raw, lookup, at, df_.escape);
            std::string history = "ARG";
            for (auto& [name, value] : decls) {
                history += " " + name + (value ? "=" + *value : "");
                if (auto it = request_.build_args.find(name); it != request_.build_args.end()) {
                    value = it->second;
                    note_used_arg(name);
                } else if (!value) {
                    if (const auto* g = globals_.scope.find(name); g && *g)
                        value = *g;
                    else if (auto p = platform_args().find(name); p != platform_args().end())
                        value = p->second;
                }
                st.args.set(name, value);
            }
            add_history(st, history, true);
        } else if (kw == "WORKDIR") {
            auto path = expand_word(ins.raw, lookup, at, df_.escape);
            if (path.empty()) throw Error(at + ": WORKDIR needs a path");
            auto base = workdir_of(st);
            auto dir = clean_absolute(path[0] == '/' ? path : base + "/" + path);
            config.working_dir = dir;
            fs_step(st, "WORKDIR " + dir, [&](StepMount& mount, const stdfs::path&) {
                RootDir root(mount.rootfs(), "the image being built");
                // BuildKit creates the missing directories owned by USER.
                Owner owner;
                if (!config.user.empty()) owner = resolve_chown(config.user, mount.rootfs(), at);
                make_dirs_in_root(root, dir, owner);
            });
        } else if (kw == "USER") {
            auto user = expand_word(ins.raw, lookup, at, df_.escape);
            if (user.empty()) throw Error(at + ": USER needs a user name or uid");
            config.user = user;
            add_history(st, "USER " + user, true);
        } else if (kw == "EXPOSE") {
            std::vector<std::string> added;
            for (const auto& word : expand_words(ins.raw, lookup, at, df_.escape))
                for (auto& port : expand_port(word, at))
                    added.push_back(std::move(port));
            if (added.empty()) throw Error(at + ": EXPOSE needs at least one port");
            config.exposed_ports.insert(config.exposed_ports.end(), added.begin(), added.end());
            std::sort(config.exposed_ports.begin(), config.exposed_ports.end());
            config.exposed_ports.erase(
                std::unique(config.exposed_ports.begin(), config.exposed_ports.end()),
                config.exposed_ports.end());
            add_history(st, "EXPOSE " + join(added), true);
        } else if (kw == "LABEL") {
            auto pairs = parse_key_values(ins.raw, lookup, at, true, df_.escape);
            if (pairs.empty()) throw Error(at + ": LABEL needs at least one name=value");
            std::string history = "LABEL";
            for (const auto& [k, v] : pairs) {
                config.labels[k] = v;
                history += " " + k + "=" + v;
            }
            add_history(st, history, true);
        } else if (kw == "CMD") {
            config.cmd = command_args(st, ins);
            st.cmd_set = true;
            add_history(st, "CMD " + quoted_list(*config.cmd), true);
        } else if (kw == "ENTRYPOINT") {
            config.entrypoint = command_args(st, ins);
            // Docker: an ENTRYPOINT discards a CMD inherited from the base.
            if (!st.cmd_set) config.cmd.reset();
            add_history(st, "ENTRYPOINT " + quoted_list(*config.entrypoint), true);
        } else if (kw == "SHELL") {
            if (!ins.exec_form || ins.exec_args.empty())
                throw Error(at +
                            ": SHELL must be a JSON array, e.g. SHELL [\"/bin/bash\", \"-c\"]");
            config.shell = ins.exec_args;
            add_history(st, "SHELL " + quoted_list(ins.exec_args), true);
        } else if (kw == "VOLUME") {
            std::vector<std::string> volumes;
            if (ins.exec_form) {
                for (const auto& v : ins.exec_args)
                    volumes.push_back(expand_word(v, lookup, at, df_.escape));
            } else {
                volumes = expand_words(ins.raw, lookup, at, df_.escape);
            }
            if (volumes.empty()) throw Error(at + ": VOLUME needs at least one path");
            for (const auto& v : volumes) {
                if (trim(v).empty()) throw Error(at + ": VOLUME paths must not be empty");
                config.volumes.push_back(v);
            }
            std::sort(config.volumes.begin(), config.volumes.end());
            config.volumes.erase(std::unique(config.volumes.begin(), config.volumes.end()),
                                 config.volumes.end());
            add_history(st, "VOLUME " + quoted_list(volumes), true);
        } else if (kw == "STOPSIGNAL") {
            auto signal = expand_word(ins.raw, lookup, at, df_.escape);
            if (signal.empty()) throw Error(at + ": STOPSIGNAL needs a signal name or number");
            config.stop_signal = signal;
            add_history(st, "STOPSIGNAL " + signal, true);
        } else if (kw == "MAINTAINER") {
            st.image.config.author = ins.raw;
            add_history(st, "MAINTAINER " + ins.raw, true);
        } else {
            throw Error(at + ": unknown instruction " + kw);
        }
    }

    // The environment of a RUN: the image's, then the ARGs in scope that no
    // ENV overrides, then proxy build args; PATH always set.
    std::vector<std::string> run_env(const StageState& st) {
        auto env = st.image.config.config.env;
        for (const auto& [name, value] : st.args.vars)
            if (value && !env_value(env, name)) env.push_back(name + "=" + *value);
        for (const auto& [name, value] : request_.build_args) {
            if (!kProxyArgs.count(name) || st.args.find(name) || env_value(env, name)) continue;
            env.push_back(name + "=" + value);
            note_used_arg(name);
        }
        if (!env_value(env, "PATH")) env.insert(env.begin(), std::string("PATH=") + kDefaultPath);
        return env;
    }

    // BuildKit's RUN history: "|2 A=1 B=2 /bin/sh -c …" when ARGs are in scope.
    std::string run_history(const StageState& st, const std::vector<std::string>& args) const {
        std::vector<std::string> parts;
        for (const auto& [name, value] : st.args.vars) {
            if (!value) continue;
            auto shown = env_value(st.image.config.config.env, name).value_or(*value);
            parts.push_back(name + "=" + shown);
        }
        std::string out = "RUN ";
        if (!parts.empty()) out += "|" + std::to_string(parts.size()) + " " + join(parts) + " ";
        return out + join(args);
    }

    void run(size_t index, StageState& st, const Instruction& ins) {
        const auto at = where(ins.line);
        check_flags(ins, {"network", "mount"});
        auto network =
            request_.network_host ? runtime::NetworkMode::Host : runtime::NetworkMode::Own;
        if (auto mode = flag(ins, "network")) {
            if (*mode == "none")
                network = runtime::NetworkMode::None;
            else if (*mode == "host")
                network = runtime::NetworkMode::Host;
            else if (*mode != "default")
                throw Error(at + ": RUN --network=" + *mode + ": expected default, none or host");
        }

        std::vector<std::string> args;
        const Heredoc* script = nullptr;
        if (ins.exec_form) {
            args = ins.exec_args;
        } else {
            std::string command = ins.raw;
            if (!ins.heredocs.empty()) {
                const auto& first = ins.heredocs.front();
                if (ins.heredocs.size() == 1 && is_heredoc_word(trim(ins.raw), first.name)) {
                    // BuildKit: a #! script is run as a file, /dev/pipes/NAME.
                    if (first.content.rfind("#!", 0) == 0) script = &first;
                    command = script ? "/dev/pipes/" + first.name : first.content;
                } else {
                    for (const auto& h : ins.heredocs)
                        command += "\n" + h.content + h.name;
                }
            }
            args = shell_of(st);
            args.push_back(command);
        }
        if (args.empty() || (ins.exec_form && args[0].empty()))
            throw Error(at + ": RUN needs a command");

        runtime::BundleOptions options;
        options.args = args;
        options.env = run_env(st);
        options.cwd = workdir_of(st);
        options.user = st.image.config.config.user;
        options.network = network;
        options.hostname = "cascade-build";

        const auto id = "build-" + build_id_ + "-" + std::to_string(st.step_number);
        const auto mounts = run_mounts(index, st, ins);
        auto key = run_step_key(ins.flags, options);
        add_run_mount_inputs(key, mounts.first, mounts.second);
        if (script) key.add("script", script->content);
        // Mount targets whose parent directories stay in the layer (not the
        // secrets': nothing of a secret is left behind).
        std::vector<std::string> kept;
        for (const auto& m : mounts.first)
            if (m.type != RunMount::Type::Secret && !m.target.empty()) kept.push_back(m.target);
        fs_step(st, run_history(st, args), key, [&](StepMount& mount, const stdfs::path& dir) {
            if (script) bind_heredoc_script(script->name, script->content, dir, options, at);
            RunMounts run_mounts(mounts.first, mounts.second, dir, options);
            if (network == runtime::NetworkMode::Host) host_network_files(dir, options);
            check_cancelled();
            int status = 0;
            {
                // Cancel (or another stage failing) kills the container.
                BuildStopper::Watch watch(*stopper_, id);
                status = run_step_container(runc_, id, mount, options, stage_log(), kept);
            }
            check_cancelled();
            if (status != 0)
                throw Error(at + ": RUN " + abbreviate(ins.raw) + " failed with exit status " +
                            std::to_string(status));
        });
    }

    // Copies of the host's resolv.conf and hosts for a container on the host
    // network, so that it cannot write to the host's files.
    static void host_network_files(const stdfs::path& dir, runtime::BundleOptions& options) {
        for (const char* name : {"resolv.conf", "hosts"}) {
            auto host_file = stdfs::path("/etc") / name;
            auto copy = dir / name;
            std::error_code ec;
            if (!stdfs::exists(host_file, ec)) continue;
            fs::write_file_atomic(copy, fs::read_file(host_file), 0644);
            if (std::string(name) == "hosts")
                options.hosts = copy;
            else
                options.resolv_conf = copy;
        }
    }

    // The post-commit hook's command line (OpenShift's BuildPostCommitSpec).
    static std::vector<std::string> post_commit_args(const PostCommitHook& hook,
                                                     const oci::ImageConfig& image) {
        std::vector<std::string> args;
        if (!hook.script.empty()) {
            // $0 is /bin/sh, $1… are the args.
            args = {"/bin/sh", "-ic", hook.script, "/bin/sh"};
        } else if (!hook.command.empty()) {
            args = hook.command;
        } else {
            if (image.config.entrypoint) args = *image.config.entrypoint;
        }
        args.insert(args.end(), hook.args.begin(), hook.args.end());
        return args;
    }

    // Runs the post-commit hook in a temporary container of the new image;
    // what it writes is thrown away. Throws when it does not exit with 0.
    void run_post_commit(const StageState& st) {
        const auto& hook = request_.post_commit;
        auto args = post_commit_args(hook, st.image.config);
        if (args.empty())
            throw Error(
                "postCommit: args alone are passed to the image's entrypoint, and the image has "
                "none; use postCommit.command or postCommit.script");
        log("POSTCOMMIT " + join(args));
        runtime::BundleOptions options;
        options.args = args;
        options.env = st.image.config.config.env;
        if (!env_value(options.env, "PATH"))
            options.env.insert(options.env.begin(), std::string("PATH=") + kDefaultPath);
        options.cwd = workdir_of(st);
        options.user = st.image.config.config.user;
        options.network =
            request_.network_host ? runtime::NetworkMode::Host : runtime::NetworkMode::Own;
        options.hostname = "cascade-build";
        const auto id = "build-" + build_id_ + "-postcommit";
        int status = 0;
        {
            StepDir dir(next_step_dir());
            StepMount mount(layers_, st.image, dir.path);
            if (options.network == runtime::NetworkMode::Host)
                host_network_files(dir.path, options);
            check_cancelled();
            {
                BuildStopper::Watch watch(*stopper_, id);
                status = run_step_container(runc_, id, mount, options, stage_log());
            }
            mount.unmount();
        }
        check_cancelled();
        if (status != 0)
            throw Error("postCommit hook (" + abbreviate(join(args)) +
                        ") failed with exit status " + std::to_string(status) +
                        "; the tag was not moved");
        log("--> postCommit hook passed");
    }

    // RUN --mount flags, expanded and parsed, and where their sources are.
    std::pair<std::vector<RunMount>, RunMountSources> run_mounts(size_t index, const StageState& st,
                                                                 const Instruction& ins) {
        const auto at = where(ins.line);
        const auto workdir = workdir_of(st);
        std::vector<RunMount> mounts;
        for (const auto& [k, v] : ins.flags)
            if (k == "mount")
                mounts.push_back(
                    parse_run_mount(expand_word(v, stage_lookup(st), at, df_.escape), workdir, at));
        RunMountSources sources;
        sources.layers = &layers_;
        sources.context = [this]() -> const RootDir& { return context_root(); };
        sources.image = [this, index, at](const std::string& from) {
            if (auto j = copy_source_stage(from, index, at)) {
                ensure_stage(*j);
                return states_[*j].image;
            }
            auto what = "RUN --mount=from=" + from;
            return pull(from, at, what).image;
        };
        sources.cache_root = work_root_.parent_path() / "cache-mounts";
        sources.secrets = &request_.secrets;
        sources.at = at;
        return {std::move(mounts), std::move(sources)};
    }

    void deps_from_run_mount(const Instruction& ins, const std::string& from, size_t i,
                             std::set<size_t>& deps) const {
        try {
            auto j =
                copy_source_stage(expand_word(from, globals_.lookup(), where(ins.line), df_.escape),
                                  i, where(ins.line));
            if (j) deps.insert(*j);
        } catch (const Error&) {
            // reported when the instruction runs
        }
    }

    void note_used_arg(const std::string& name) {
        std::lock_guard lock(args_mu_);
        used_args_.insert(name);
    }

    const RootDir& context_root() {
        std::lock_guard lock(context_mu_);
        if (!context_) {
            if (request_.context.empty())
                throw Error("COPY and ADD need a build context, and this build has none");
            auto abs = stdfs::absolute(request_.context).lexically_normal();
            context_.emplace(abs, "the build context " + abs.string());
            // .dockerignore hides files from COPY/ADD (the Dockerfile is read directly).
            if (auto ignore = load_dockerignore(abs, request_.dockerfile)) {
                auto filter = std::make_shared<ContextFilter>(std::move(*ignore));
                const RootDir* root = &*context_;
                context_->set_filter(
                    [filter, root](const std::string& rel) { return filter->hidden(*root, rel); });
            }
        }
        return *context_;
    }

    // COPY and ADD (local sources only), into the mounted parent image.
    void copy(size_t index, StageState& st, const Instruction& ins) {
        const auto at = where(ins.line);
        const auto& kw = ins.keyword;
        const bool is_add = kw == "ADD";
        if (is_add)
            check_flags(ins, {"chown", "chmod", "link", "checksum"});
        else
            check_flags(ins, {"from", "chown", "chmod", "link"});
        const auto lookup = stage_lookup(st);

        std::vector<std::string> words;
        if (ins.exec_form) {
            for (const auto& a : ins.exec_args)
                words.push_back(expand_word(a, lookup, at, df_.escape));
        } else {
            words = expand_words(ins.raw, lookup, at, df_.escape);
        }
        if (words.size() < 2)
            throw Error(at + ": " + kw + " needs at least one source and a destination");
        const std::string dest = words.back();
        if (dest.empty()) throw Error(at + ": " + kw + " needs a destination");
        const std::vector<std::string> sources(words.begin(), words.end() - 1);

        std::optional<std::string> chown, chmod_text, from;
        if (auto v = flag(ins, "chown")) chown = expand_word(*v, lookup, at, df_.escape);
        if (auto v = flag(ins, "chmod")) chmod_text = expand_word(*v, lookup, at, df_.escape);
        if (auto v = flag(ins, "from")) from = expand_word(*v, lookup, at, df_.escape);
        std::optional<oci::Digest> checksum;
        if (auto v = flag(ins, "checksum")) {
            checksum = parse_checksum(expand_word(*v, lookup, at, df_.escape));
            if (sources.size() != 1 || !is_url(sources[0]))
                throw Error("--checksum needs exactly one http(s) URL source");
        }

        std::string history = kw;
        if (from) history += " --from=" + *from;
        if (chown) history += " --chown=" + *chown;
        if (chmod_text) history += " --chmod=" + *chmod_text;
        if (checksum) history += " --checksum=" + checksum->str();
        history += " " + join(sources) + " " + dest;

        // Where the sources come from: a heredoc, another stage or image, or
        // the build context.
        StepDir source_dir(next_step_dir());
        std::optional<StepMount> source_mount;
        std::optional<RootDir> source_root;
        std::optional<RootDir> heredoc_root;
        std::deque<RootDir> url_roots;
        bool keep_owners = false;
        if (from) {
            ImageState image;
            if (auto j = copy_source_stage(*from, index, at)) {
                ensure_stage(*j);
                image = states_[*j].image;
            } else {
                auto what = kw + " --from=" + *from;
                image = pull(*from, at, what).image;
            }
            source_mount.emplace(layers_, image, source_dir.path);
            source_root.emplace(source_mount->rootfs(), "--from=" + *from);
            keep_owners = true;
        }
        std::vector<std::pair<const RootDir*, std::string>> patterns;
        for (const auto& s : sources) {
            const Heredoc* heredoc = nullptr;
            for (const auto& h : ins.heredocs)
                if (is_heredoc_word(s, h.name)) heredoc = &h;
            if (heredoc) {
                if (!heredoc_root) {
                    fs::make_dirs(source_dir.path / "heredocs");
                    heredoc_root.emplace(source_dir.path / "heredocs", "the heredocs of " + at);
                }
                auto content = heredoc->expand ? expand_heredoc(heredoc->content, lookup, at)
                                               : heredoc->content;
                auto file = source_dir.path / "heredocs" / heredoc->name;
                if (heredoc->name.find('/') != std::string::npos || heredoc->name == "." ||
                    heredoc->name == "..")
                    throw Error(at + ": heredoc name " + heredoc->name + " is not a file name");
                fs::write_file_atomic(file, content, 0644);
                patterns.emplace_back(&*heredoc_root, heredoc->name);
                continue;
            }
            if (is_add && is_url(s)) {
                // Downloaded before the step, each into a directory of its own.
                auto dir = source_dir.path / ("url-" + std::to_string(patterns.size()));
                fs::make_dirs(dir);
                auto fetched = fetch_url(s, dir / ".download", checksum);
                if (fetched.name.empty()) {
                    if (dest.back() == '/')
                        throw Error("cannot name the file downloaded from " + s +
                                    ": its URL has no file name; give a destination file name");
                    fetched.name = "download";
                }
                stdfs::rename(dir / ".download", dir / fetched.name);
                url_roots.emplace_back(dir, "the download of " + s);
                patterns.emplace_back(&url_roots.back(), fetched.name);
                continue;
            }
            if (is_add && (s.find("://") != std::string::npos || s.rfind("git@", 0) == 0))
                throw Error(at + ": ADD " + s +
                            ": only http:// and https:// URLs are supported by cascade; fetch "
                            "the file into the build context and COPY it");
            patterns.emplace_back(source_root ? &*source_root : &context_root(), s);
        }

        std::optional<mode_t> mode;
        if (chmod_text) mode = parse_chmod(*chmod_text, at);
        const auto workdir = workdir_of(st);
        const bool dest_says_dir =
            dest.back() == '/' || dest == "." || dest == ".." ||
            (dest.size() >= 2 && dest.compare(dest.size() - 2, 2, "/.") == 0);
        const auto dest_path = clean_absolute(dest[0] == '/' ? dest : workdir + "/" + dest);

        StepKey key;
        if (cache_) key = copy_step_key(ins.flags, patterns, {keep_owners && !chown, epoch_});
        fs_step(st, history, key, [&](StepMount& mount, const stdfs::path&) {
            RootDir to(mount.rootfs(), "the image being built");
            CopyOptions options;
            options.mode = mode;
            if (chown) {
                options.owner = resolve_chown(*chown, mount.rootfs(), at);
                options.parents_owner = *options.owner;
            } else if (!keep_owners) {
                options.owner = Owner{};
            }

            std::vector<std::pair<const RootDir*, std::string>> matches;
            for (const auto& [root, pattern] : patterns) {
                auto found = match_sources(*root, pattern);
                if (found.empty()) log("[Warning] " + at + ": " + pattern + " matched no files");
                for (auto& f : found) {
                    matches.emplace_back(root, std::move(f));
                }
            }
            auto existing = to.stat(dest_path);
            const bool dest_is_dir = dest_says_dir || patterns.size() > 1 || matches.size() > 1 ||
                                     (existing && S_ISDIR(existing->st_mode));
            size_t archives = 0;
            for (const auto& [root, source] : matches) {
                // ADD extracts local tar archives (by content) into the destination.
                if (is_add && context_ && root == &*context_ && is_tar_archive(*root, source)) {
                    auto staging = source_dir.path / ("archive-" + std::to_string(++archives));
                    fs::make_dirs(staging);
                    ::chmod(staging.c_str(), 0755);
                    extract_archive(*root, source, staging);
                    CopyOptions archive_options = options;
                    if (!chown) archive_options.owner.reset();  // the archive's owners
                    copy_into(RootDir(staging, "the archive " + source), ".", to, dest_path, true,
                              archive_options);
                    continue;
                }
                copy_into(*root, source, to, dest_path, dest_is_dir, options);
            }
        });
    }

    void warn_unused_args() {
        std::lock_guard lock(args_mu_);
        std::vector<std::string> unused;
        for (const auto& [name, value] : request_.build_args)
            if (!used_args_.count(name) && !kProxyArgs.count(name)) unused.push_back(name);
        if (!unused.empty())
            log("[Warning] One or more build-args [" + join(unused) + "] were not consumed");
    }

    BuildResult commit(const StageState& st) {
        oci::ImageConfig config = st.image.config;
        config.created = created_;
        auto config_bytes = oci::to_json_bytes(oci::to_json(config));
        auto config_digest = store_.blobs().put(config_bytes);

        oci::Manifest manifest;
        manifest.schema_version = 2;
        manifest.media_type = std::string(oci::media::kImageManifest);
        manifest.config.media_type = std::string(oci::media::kImageConfig);
        manifest.config.digest = config_digest;
        manifest.config.size = static_cast<int64_t>(config_bytes.size());
        manifest.layers = st.image.layers;
        if (!st.base_name.empty()) {
            manifest.annotations[std::string(oci::kAnnotationBaseName)] = st.base_name;
            if (st.base_digest)
                manifest.annotations[std::string(oci::kAnnotationBaseDigest)] =
                    st.base_digest->str();
        }
        auto manifest_bytes = oci::to_json_bytes(oci::to_json(manifest));

        const auto& repo = request_.output_repository;
        store_.link_blob(repo, config_digest);
        for (const auto& layer : manifest.layers)
            if (layer.urls.empty()) store_.link_blob(repo, layer.digest);
        auto digest = store_.put_manifest(
            repo, manifest_bytes, std::string(oci::media::kImageManifest), {}, request_.cause);
        if (!request_.post_commit.empty()) {
            try {
                run_post_commit(st);
            } catch (...) {
                if (stopper_->cancelled()) throw Error("build cancelled");
                throw;
            }
        }
        bool moved = !request_.output_tag.empty() &&
                     store_.set_tag(repo, request_.output_tag, digest, request_.cause);
        log("COMMIT " + repo + (request_.output_tag.empty() ? "" : ":" + request_.output_tag));
        log("--> " + digest.str() + (moved ? "" : " (tag unchanged)"));

        BuildResult result;
        result.manifest_digest = digest;
        result.config_digest = config_digest;
        result.base_name = st.base_name;
        result.base_digest = st.base_digest;
        result.tag_moved = moved;
        return result;
    }

    registry::Store& store_;
    runtime::LayerCache& layers_;
    runtime::Runc& runc_;
    const BuildRequest& request_;
    const int64_t epoch_;
    const std::string created_;
    const std::string build_id_;
    const stdfs::path work_root_;
    BuildCache* const cache_;  // may be null
    static inline const BuilderOptions kNoOptions{};
    const BuilderOptions& options_;  // other registries (engine/image_source.hpp)

    Dockerfile df_;
    GlobalArgs globals_;
    std::set<std::string> used_args_;  // guarded by args_mu_ while stages build
    size_t target_ = 0;
    std::vector<StageState> states_;       // built/building/failed guarded by stages_mu_
    std::map<size_t, size_t> first_step_;  // stage → its FROM's step number
    size_t total_steps_ = 0;               // guarded by steps_mu_ while stages build
    std::atomic<size_t> dirs_{0};
    std::optional<RootDir> context_;     // guarded by context_mu_
    std::vector<std::string> prefixes_;  // per stage, "[name] "; empty: single stage
    mutable std::mutex log_mu_, report_mu_, steps_mu_, args_mu_, context_mu_, stages_mu_;
    std::condition_variable stages_cv_;
    std::optional<BuildStopper> stopper_;
    // Last member: removed before anything else goes, after every step's
    // mounts (owned by the steps) are gone.
    std::optional<fs::TempDir> work_;
};

}  // namespace

Builder::Builder(registry::Store& store, runtime::LayerCache& layers, runtime::Runc& runc,
                 std::filesystem::path work_root, BuilderOptions options)
    : store_(store), layers_(layers), runc_(runc), work_root_(std::move(work_root)) {
    set_options(std::move(options));
}

Builder::~Builder() = default;

void Builder::set_options(BuilderOptions options) {
    options_ = std::move(options);
    if (!options_.importer) {
        own_importer_ = std::make_unique<registry::Importer>(store_, options_.auth_file);
        options_.importer = own_importer_.get();
    }
}

BuildResult Builder::build(const BuildRequest& request) {
    BuildSession session(store_, layers_, runc_, work_root_, request, cache_, &options_);
    return session.run();
}

std::string Builder::final_base(const std::string& dockerfile_text,
                                const std::map<std::string, std::string>& build_args,
                                const std::string& from_override,
                                const std::vector<std::string>& local_domains) {
    auto df = Dockerfile::parse(dockerfile_text);
    if (df.stages.empty()) return {};
    auto globals = evaluate_global_args(df, build_args, nullptr);
    size_t i = df.stages.size() - 1;
    auto expand = [&](size_t stage) {
        return expand_word(df.stages[stage].base, globals.lookup(),
                           where_of(df, df.stages[stage].line), df.escape);
    };
    std::string base = from_override.empty() ? expand(i) : from_override;
    while (true) {
        if (lower(base) == "scratch") return {};
        auto j = stage_named(df, base, i);
        if (!j) return base_display_name(base, local_domains);
        i = *j;
        base = expand(i);
    }
}

}  // namespace cascade::engine
