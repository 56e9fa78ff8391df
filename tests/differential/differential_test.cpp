// The differential test: every Dockerfile under tests/differential/cases is
// built by cascade (through a real daemon, RUN steps in runc) and by buildah
// (`buildah bud`, Debian's), and the two images are compared: the flattened
// root filesystems (path, type, mode, owner, size, content hash, link target)
// and the image configs (Env, Cmd, Entrypoint, WorkingDir, User, ExposedPorts,
// Labels, Volumes, StopSignal, Healthcheck, OnBuild, Shell).
//
// Both start from the same base: tests/differential/base, built by cascade
// into its registry and pulled from there by buildah. Both images are copied
// out as `dir:` layouts (skopeo from cascade's registry, `buildah push` from
// buildah's store) and flattened by the same code (oci::apply_layer).
//
// A case directory holds its Dockerfile and context files, and optionally:
//   args    one option per line, passed to both builders: --build-arg K=V,
//           --target STAGE, --secret id=ID,src=PATH (PATH relative to the case)
//   base/   a Dockerfile (and context) built first by both as
//           <name without NN->-base:1 (for FROM in the case, e.g. ONBUILD)
//   secret/ files that are not part of the context (for --secret)
//   Dockerfile.buildah, args.buildah
//           what buildah builds instead / gets in addition, where Debian 12's
//           buildah 1.28 lacks the feature the case is about (heredocs, RUN
//           --network, ADD --checksum): the same result in its vocabulary
// "@HTTP_PORT@" in a Dockerfile is the port of an HTTP server the test runs
// on 127.0.0.1, serving tests/differential/http.
//
// The differences that are expected (listed with their reasons in README.md,
// "Differences from buildah") are the ones in kIgnored* below; anything else
// fails the case and is printed entry by entry.
#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "oci/digest.hpp"
#include "oci/error.hpp"
#include "oci/fs.hpp"
#include "oci/layer.hpp"
#include "support.hpp"

using nlohmann::json;
using namespace cascade;
using namespace std::chrono_literals;
namespace stdfs = std::filesystem;

namespace {

stdfs::path differential_dir() {
    return test::source_dir() / "tests" / "differential";
}

// ---- flattening ----------------------------------------------------------

struct Entry {
    std::string type;   // f d l c b p s
    unsigned mode = 0;  // permission bits incl. setuid/setgid/sticky
    unsigned uid = 0;
    unsigned gid = 0;
    int64_t size = 0;    // regular files only
    std::string sha256;  // regular files only
    std::string link;    // symlinks only
    std::string rdev;    // devices only

    std::string describe() const {
        std::ostringstream s;
        char mode_text[8];
        std::snprintf(mode_text, sizeof mode_text, "%04o", mode);
        s << type << " " << mode_text << " " << uid << ":" << gid;
        if (type == "f") s << " size=" << size << " sha256=" << sha256.substr(0, 16);
        if (type == "l") s << " -> " << link;
        if (!rdev.empty()) s << " dev=" << rdev;
        return s.str();
    }
    bool operator==(const Entry&) const = default;
};
using Tree = std::map<std::string, Entry>;

void walk(const stdfs::path& root, const std::string& rel, Tree& out) {
    for (const auto& de : stdfs::directory_iterator(root / rel)) {
        std::string name =
            rel.empty() ? de.path().filename().string() : rel + "/" + de.path().filename().string();
        struct stat st {};
        if (::lstat(de.path().c_str(), &st) != 0) throw Error("lstat " + de.path().string());
        Entry e;
        e.mode = st.st_mode & 07777;
        e.uid = st.st_uid;
        e.gid = st.st_gid;
        switch (st.st_mode & S_IFMT) {
            case S_IFREG:
                e.type = "f";
                e.size = st.st_size;
                e.sha256 = oci::Digest::sha256_of_file(de.path().string()).encoded();
                break;
            case S_IFDIR:
                e.type = "d";
                break;
            case S_IFLNK:
                e.type = "l";
                e.link = stdfs::read_symlink(de.path()).string();
                break;
            case S_IFCHR:
                e.type = "c";
                break;
            case S_IFBLK:
                e.type = "b";
                break;
            case S_IFIFO:
                e.type = "p";
                break;
            default:
                e.type = "s";
                break;
        }
        if (e.type == "c" || e.type == "b")
            e.rdev = std::to_string(major(st.st_rdev)) + "," + std::to_string(minor(st.st_rdev));
        out["/" + name] = e;
        if (e.type == "d") walk(root, name, out);
    }
}

struct Image {
    Tree tree;
    json config;  // the image config's "config" object
};

// Reads a `dir:` layout (manifest.json + blobs named by hex) into a tree and
// the config, applying the layers in order onto `rootfs`.
Image read_dir_layout(const stdfs::path& dir, const stdfs::path& rootfs) {
    auto manifest = json::parse(fs::read_file(dir / "manifest.json"));
    auto blob = [&](const json& desc) {
        auto d = oci::Digest::parse(desc.at("digest").get<std::string>());
        return dir / d.encoded();
    };
    Image img;
    auto config = json::parse(fs::read_file(blob(manifest.at("config"))));
    img.config = config.value("config", json::object());
    stdfs::create_directories(rootfs);
    for (const auto& layer : manifest.at("layers"))
        oci::apply_layer(blob(layer), rootfs);
    walk(rootfs, "", img.tree);
    return img;
}

// ---- what may differ ----------------------------------------------------

// Labels buildah adds on its own.
const std::set<std::string> kIgnoredLabels = {"io.buildah.version"};

// The mount points buildah creates in the rootfs for a RUN step (empty files
// and directories it bind-mounts over) and leaves in the layer. Ignored when
// cascade has no entry there and buildah's is an empty file or directory.
const std::set<std::string> kBuildahRunMountPoints = {
    "/dev", "/proc",         "/sys",       "/run/secrets",
    "/run", "/etc/hostname", "/etc/hosts", "/etc/resolv.conf"};

void drop_buildah_mount_points(const Tree& cascade, Tree& buildah) {
    // Deepest first: /run/secrets before /run.
    for (auto p = kBuildahRunMountPoints.rbegin(); p != kBuildahRunMountPoints.rend(); ++p) {
        auto it = buildah.find(*p);
        if (it == buildah.end() || cascade.count(*p)) continue;
        const Entry& e = it->second;
        auto next = std::next(it);
        bool has_children = next != buildah.end() && next->first.rfind(*p + "/", 0) == 0;
        bool empty_file = e.type == "f" && e.size == 0;
        bool empty_dir = e.type == "d" && !has_children;
        if (empty_file || empty_dir) buildah.erase(it);
    }
}

// ---- config comparison ---------------------------------------------------

// null, absent and empty are the same to a runtime.
json normalized(const json& v) {
    if (v.is_null()) return nullptr;
    if ((v.is_array() || v.is_object()) && v.empty()) return nullptr;
    if (v.is_string() && v.get_ref<const std::string&>().empty()) return nullptr;
    return v;
}

using Diff = std::pair<std::string, std::string>;  // key (path or "config Field"), text

std::vector<Diff> compare_configs(const json& cascade, const json& buildah) {
    static const std::vector<std::string> fields = {
        "Env",    "Cmd",     "Entrypoint", "WorkingDir",  "User",    "ExposedPorts",
        "Labels", "Volumes", "StopSignal", "Healthcheck", "OnBuild", "Shell"};
    std::vector<Diff> diffs;
    for (const auto& f : fields) {
        json a = normalized(cascade.value(f, json()));
        json b = normalized(buildah.value(f, json()));
        if (f == "Labels") {
            for (const auto& l : kIgnoredLabels) {
                if (a.is_object()) a.erase(l);
                if (b.is_object()) b.erase(l);
            }
            a = normalized(a);
            b = normalized(b);
        }
        if (a != b)
            diffs.push_back(
                {"config " + f, "\n      cascade: " + a.dump() + "\n      buildah: " + b.dump()});
    }
    return diffs;
}

std::vector<Diff> compare_trees(const Tree& cascade, const Tree& buildah) {
    std::vector<Diff> diffs;
    std::set<std::string> paths;
    for (const auto& [p, e] : cascade)
        paths.insert(p);
    for (const auto& [p, e] : buildah)
        paths.insert(p);
    for (const auto& p : paths) {
        auto a = cascade.find(p);
        auto b = buildah.find(p);
        std::string av = a == cascade.end() ? "(absent)" : a->second.describe();
        std::string bv = b == buildah.end() ? "(absent)" : b->second.describe();
        bool same = a != cascade.end() && b != buildah.end() && a->second == b->second;
        if (!same) diffs.push_back({p, "\n      cascade: " + av + "\n      buildah: " + bv});
    }
    return diffs;
}

// ---- the two builders ----------------------------------------------------

struct CaseOptions {
    std::vector<std::string> flags;  // --build-arg K=V, --target T, --secret …
};

CaseOptions read_args(const stdfs::path& case_dir, const std::string& file_name = "args") {
    CaseOptions o;
    auto file = case_dir / file_name;
    if (!stdfs::exists(file)) return o;
    std::istringstream in(fs::read_file(file));
    std::string line;
    while (std::getline(in, line)) {
        if (line.empty() || line[0] == '#') continue;
        auto sp = line.find(' ');
        if (sp == std::string::npos) throw Error(file.string() + ": want '--flag value': " + line);
        std::string flag = line.substr(0, sp), value = line.substr(sp + 1);
        if (flag == "--secret") {
            auto src = value.find("src=");
            if (src != std::string::npos)
                value = value.substr(0, src + 4) + (case_dir / value.substr(src + 4)).string();
        }
        o.flags.push_back(flag);
        o.flags.push_back(value);
    }
    return o;
}

void copy_dockerfile(const stdfs::path& from, const stdfs::path& to, uint16_t http_port) {
    std::string text = fs::read_file(from);
    for (size_t pos; (pos = text.find("@HTTP_PORT@")) != std::string::npos;)
        text.replace(pos, 11, std::to_string(http_port));
    fs::write_file_atomic(to, text);
}

// Copies a case directory to a build context: everything but args, base/,
// secret/ and the buildah variants, with @HTTP_PORT@ replaced in the
// Dockerfile. Returns the Dockerfile buildah builds (Dockerfile.buildah,
// copied next to the context, or the context's Dockerfile).
stdfs::path make_context(const stdfs::path& from, const stdfs::path& to, uint16_t http_port) {
    stdfs::create_directories(to);
    static const std::set<std::string> skip = {
        "args", "base", "secret", "known-differences", "Dockerfile.buildah", "args.buildah"};
    for (const auto& de : stdfs::directory_iterator(from)) {
        auto name = de.path().filename().string();
        if (skip.count(name)) continue;
        stdfs::copy(de.path(), to / name,
                    stdfs::copy_options::recursive | stdfs::copy_options::copy_symlinks);
    }
    copy_dockerfile(from / "Dockerfile", to / "Dockerfile", http_port);
    if (!stdfs::exists(from / "Dockerfile.buildah")) return to / "Dockerfile";
    auto variant = to.parent_path() / (to.filename().string() + ".Dockerfile.buildah");
    copy_dockerfile(from / "Dockerfile.buildah", variant, http_port);
    return variant;
}

class World {
  public:
    fs::TempDir tmp{{}, "cascade-diff-"};
    std::unique_ptr<test::Daemon> daemon;
    stdfs::path buildah_root = tmp.path() / "buildah-root";
    stdfs::path buildah_runroot = tmp.path() / "buildah-runroot";
    httplib::Server http;
    std::thread http_thread;
    uint16_t http_port = 0;
    std::string error;  // set when the setup failed: every case fails with it

    World() {
        http.set_mount_point("/", (differential_dir() / "http").string());
        http_port = test::free_port();
        http_thread = std::thread([this] { http.listen("127.0.0.1", http_port); });
        if (!test::eventually([&] { return test::port_open(http_port); }, 10s))
            error = "the test's HTTP server did not start";
        daemon = std::make_unique<test::Daemon>(tmp.path() / "state");

        auto ctx = tmp.path() / "base-context";
        stdfs::copy(differential_dir() / "base", ctx, stdfs::copy_options::recursive);
        stdfs::copy_file("/bin/busybox", ctx / "busybox");
        auto r = daemon->cli({"build", "-t", "diffbase:1", ctx.string()});
        if (r.exit_code != 0) {
            error = "building the base in cascade failed:\n" + r.out + r.err;
            return;
        }
        auto pull = buildah(
            {"pull", "--tls-verify=false", "docker://" + daemon->address() + "/diffbase:1"});
        if (pull.exit_code != 0) {
            error = "buildah pull of the base from cascade's registry failed:\n" + pull.err;
            return;
        }
        auto tag = buildah({"tag", daemon->address() + "/diffbase:1", "localhost/diffbase:1"});
        if (tag.exit_code != 0) error = "buildah tag failed: " + tag.err;
    }

    ~World() {
        buildah({"rm", "--all"});
        buildah({"rmi", "--all", "--force"});
        daemon.reset();
        http.stop();
        if (http_thread.joinable()) http_thread.join();
        test::cleanup_state_root(tmp.path());
    }

    test::CommandResult buildah(const std::vector<std::string>& args,
                                std::chrono::seconds timeout = 300s) {
        std::vector<std::string> argv{"buildah",
                                      "--root",
                                      buildah_root.string(),
                                      "--runroot",
                                      buildah_runroot.string(),
                                      "--storage-driver",
                                      "overlay"};
        argv.insert(argv.end(), args.begin(), args.end());
        return test::run(argv, timeout);
    }

    // Builds with both; returns "" or the failure.
    std::string build_both(const stdfs::path& context, const std::string& name,
                           const std::vector<std::string>& flags,
                           const stdfs::path& buildah_dockerfile,
                           const std::vector<std::string>& buildah_flags) {
        std::vector<std::string> c{"build", "-t", name + ":1"};
        c.insert(c.end(), flags.begin(), flags.end());
        c.push_back(context.string());
        auto rc = daemon->cli(c);
        if (rc.exit_code != 0) return "cascade build of " + name + " failed:\n" + rc.out + rc.err;

        std::vector<std::string> b{"bud",    "--isolation",  "chroot", "--format",
                                   "docker", "--pull-never", "-t",     "localhost/" + name + ":1"};
        b.insert(b.end(), flags.begin(), flags.end());
        b.insert(b.end(), buildah_flags.begin(), buildah_flags.end());
        b.push_back("-f");
        b.push_back(buildah_dockerfile.string());
        b.push_back(context.string());
        auto rb = buildah(b);
        // buildah 1.28's chroot isolation now and then fails a RUN with
        // "sealing memfd copy: Device or resource busy" (its own race, not
        // the Dockerfile's): that one error is retried.
        for (int retry = 0; retry < 2 && rb.exit_code != 0 &&
                            rb.err.find("sealing memfd copy") != std::string::npos;
             retry++)
            rb = buildah(b);
        if (rb.exit_code != 0) return "buildah bud of " + name + " failed:\n" + rb.out + rb.err;
        return {};
    }

    Image export_cascade(const std::string& name, const stdfs::path& work) {
        auto dir = work / "cascade-image";
        auto r =
            test::run({"skopeo", "copy", "--src-tls-verify=false",
                       "docker://" + daemon->address() + "/" + name + ":1", "dir:" + dir.string()});
        if (r.exit_code != 0) throw Error("skopeo copy from cascade: " + r.err);
        return read_dir_layout(dir, work / "cascade-rootfs");
    }

    Image export_buildah(const std::string& name, const stdfs::path& work) {
        auto dir = work / "buildah-image";
        auto r = buildah({"push", "localhost/" + name + ":1", "dir:" + dir.string()});
        if (r.exit_code != 0) throw Error("buildah push: " + r.err);
        return read_dir_layout(dir, work / "buildah-rootfs");
    }
};

World* world = nullptr;

std::vector<std::string> case_names() {
    std::vector<std::string> names;
    for (const auto& de : stdfs::directory_iterator(differential_dir() / "cases"))
        if (stdfs::exists(de.path() / "Dockerfile")) names.push_back(de.path().filename());
    std::sort(names.begin(), names.end());
    return names;
}

class Differential : public ::testing::TestWithParam<std::string> {
  protected:
    static void SetUpTestSuite() {
        if (!test::have_program("buildah") || !test::have_program("skopeo") ||
            !stdfs::exists("/bin/busybox"))
            return;
        world = new World();
    }
    static void TearDownTestSuite() {
        delete world;
        world = nullptr;
    }
    void SetUp() override {
        if (!world)
            GTEST_SKIP() << "buildah, skopeo or /bin/busybox (busybox-static) is not "
                            "installed: no differential test";
        ASSERT_TRUE(world->error.empty()) << world->error;
    }
};

TEST_P(Differential, SameImageAsBuildah) {
    const std::string name = GetParam();
    auto case_dir = differential_dir() / "cases" / name;
    fs::TempDir work{world->tmp.path(), "case-"};
    auto options = read_args(case_dir);

    if (stdfs::exists(case_dir / "base" / "Dockerfile")) {
        auto ctx = work.path() / "base-context";
        auto df = make_context(case_dir / "base", ctx, world->http_port);
        auto err = world->build_both(ctx, name.substr(3) + "-base", {}, df, {});
        ASSERT_TRUE(err.empty()) << err;
    }
    auto ctx = work.path() / "context";
    auto buildah_dockerfile = make_context(case_dir, ctx, world->http_port);
    const std::string image = "diff/" + name;
    auto err = world->build_both(ctx, image, options.flags, buildah_dockerfile,
                                 read_args(case_dir, "args.buildah").flags);
    ASSERT_TRUE(err.empty()) << err;

    Image a = world->export_cascade(image, work.path());
    Image b = world->export_buildah(image, work.path());
    drop_buildah_mount_points(a.tree, b.tree);
    auto diffs = compare_configs(a.config, b.config);
    auto tree_diffs = compare_trees(a.tree, b.tree);
    diffs.insert(diffs.end(), tree_diffs.begin(), tree_diffs.end());
    // known-differences: "KEY | reason" lines, KEY a path or "config Field";
    // each one is listed in README.md ("Differences from buildah").
    std::map<std::string, std::string> known;
    if (stdfs::exists(case_dir / "known-differences")) {
        std::istringstream in(fs::read_file(case_dir / "known-differences"));
        for (std::string line; std::getline(in, line);) {
            auto bar = line.find(" | ");
            if (line.empty() || line[0] == '#' || bar == std::string::npos) continue;
            known[line.substr(0, bar)] = line.substr(bar + 3);
        }
    }
    std::string report;
    size_t unexpected = 0;
    for (const auto& [key, text] : diffs) {
        auto k = known.find(key);
        if (k != known.end()) {
            std::cout << "  known difference " << key << " (" << k->second << "):" << text << "\n";
            continue;
        }
        ++unexpected;
        report += "  " + key + ":" + text + "\n";
    }
    EXPECT_EQ(unexpected, 0u) << name << ": " << unexpected
                              << " difference(s) between cascade and buildah:\n"
                              << report;
}

std::string case_test_name(const ::testing::TestParamInfo<std::string>& info) {
    std::string n = info.param;
    for (auto& ch : n)
        if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
    return n;
}

INSTANTIATE_TEST_SUITE_P(Cases, Differential, ::testing::ValuesIn(case_names()), case_test_name);

}  // namespace
