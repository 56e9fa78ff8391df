// The builder test fixture: a real store, layer cache, runc (own --root) and
// builder on a temporary state root, a build context holding busybox, and
// readers for manifests, configs and layer tars. TearDown checks that no
// mount, container or scratch directory is left behind.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "engine/builder.hpp"
#include "oci/error.hpp"
#include "oci/fs.hpp"
#include "oci/image.hpp"
#include "oci/media_types.hpp"
#include "registry/blob_store.hpp"
#include "registry/database.hpp"
#include "registry/store.hpp"
#include "runtime/rootfs.hpp"
#include "runtime/runc.hpp"
#include "support.hpp"

namespace cascade::builder_testing {

namespace stdfs = std::filesystem;

inline void write_text(const stdfs::path& path, const std::string& text, mode_t mode = 0644) {
    stdfs::create_directories(path.parent_path());
    {
        std::ofstream out(path, std::ios::binary | std::ios::trunc);
        out << text;
        if (!out) throw std::runtime_error("cannot write " + path.string());
    }
    ::chmod(path.c_str(), mode);
}

// One entry of `tar -tv --numeric-owner`.
struct TarEntry {
    std::string mode;   // "-rwxr-xr-x", "hrw-r--r--" for a hard link
    std::string owner;  // "0/0"
    std::string link;   // symlink target or hard link target
};

using test::mounts_under;

// A temporary state root with the real components on it: store, layer cache,
// runc (own --root) and builder.
struct BuilderState {
    fs::TempDir tmp;
    registry::Database db{tmp.path() / "state.db"};
    registry::BlobStore blobs{tmp.path() / "blobs"};
    registry::Store store{blobs, db};
    runtime::LayerCache layers{tmp.path() / "layers", blobs};
    runtime::Runc runc{tmp.path() / "runc"};
    engine::Builder builder{store, layers, runc, tmp.path() / "work"};

    explicit BuilderState(std::string_view prefix = "cascade-builder-") : tmp({}, prefix) {}

    // No mount under the state root, no runc container left.
    void expect_nothing_running() const {
        EXPECT_TRUE(mounts_under(tmp.path()).empty());
        auto listed = test::run({"runc", "--root", (tmp.path() / "runc").string(), "list", "-q"});
        EXPECT_EQ(listed.out, "");
    }
};

class BuilderTest : public ::testing::Test, protected BuilderState {
  protected:
    explicit BuilderTest(std::string_view prefix = "cascade-builder-") : BuilderState(prefix) {}

    stdfs::path context = tmp.path() / "context";
    // Build output; log_mu guards it, as parallel stages log from their threads.
    mutable std::mutex log_mu;
    std::vector<std::string> log;

    void SetUp() override {
        stdfs::create_directories(context);
        stdfs::copy_file("/bin/busybox", context / "busybox");
        ::chmod((context / "busybox").c_str(), 0755);
    }

    void TearDown() override {
        // Every build cleans up after itself, failed ones included.
        expect_nothing_running();
        std::error_code ec;
        EXPECT_TRUE(!stdfs::exists(tmp.path() / "work") ||
                    stdfs::is_empty(tmp.path() / "work", ec));
        test::cleanup_state_root(tmp.path());
    }

    engine::BuildRequest request(const std::string& dockerfile, const std::string& repo = "app") {
        engine::BuildRequest r;
        r.context = context;
        r.dockerfile_text = dockerfile;
        r.output_repository = repo;
        r.log = [this](const std::string& line) {
            std::lock_guard lock(log_mu);
            log.push_back(line);
        };
        return r;
    }

    engine::BuildResult build(const std::string& dockerfile, const std::string& repo = "app",
                              const std::map<std::string, std::string>& args = {}) {
        auto r = request(dockerfile, repo);
        r.build_args = args;
        return builder.build(r);
    }

    std::string error_of(const engine::BuildRequest& r) {
        try {
            builder.build(r);
        } catch (const Error& e) {
            return e.what();
        }
        return "(no error)";
    }

    oci::Manifest manifest_of(const std::string& repo, const oci::Digest& digest) {
        auto record = store.resolve(repo, digest.str());
        if (!record) throw std::runtime_error("no manifest " + digest.str() + " in " + repo);
        EXPECT_EQ(record->media_type, oci::media::kImageManifest);
        return oci::parse_manifest(store.manifest_bytes(*record));
    }

    oci::ImageConfig config_of(const oci::Manifest& m) {
        return oci::parse_config(blobs.read(m.config.digest));
    }

    // The layer's entries by name (tar finds the compression, gzip or zstd).
    std::map<std::string, TarEntry> entries(const oci::Descriptor& layer) {
        auto listed = test::run({"tar", "--numeric-owner", "-tvf", blobs.path(layer.digest)});
        EXPECT_EQ(listed.exit_code, 0) << listed.err;
        std::map<std::string, TarEntry> out;
        std::istringstream lines(listed.out);
        std::string line;
        while (std::getline(lines, line)) {
            std::istringstream f(line);
            TarEntry e;
            std::string size, date, time, name;
            f >> e.mode >> e.owner >> size >> date >> time;
            std::getline(f >> std::ws, name);
            for (std::string arrow : {" -> ", " link to "}) {
                if (auto at = name.find(arrow); at != std::string::npos) {
                    e.link = name.substr(at + arrow.size());
                    name = name.substr(0, at);
                }
            }
            if (name.rfind("./", 0) == 0) name = name.substr(2);
            while (name.size() > 1 && name.back() == '/')
                name.pop_back();
            out[name] = e;
        }
        return out;
    }

    std::string file_in(const oci::Descriptor& layer, const std::string& path) {
        auto r = test::run({"tar", "-xOf", blobs.path(layer.digest), path});
        EXPECT_EQ(r.exit_code, 0) << r.err;
        return r.out;
    }

    static std::vector<std::string> names(const std::map<std::string, TarEntry>& m) {
        std::vector<std::string> out;
        for (const auto& [k, v] : m)
            out.push_back(k);
        return out;
    }

    bool logged(const std::string& needle) const {
        std::lock_guard lock(log_mu);
        for (const auto& l : log)
            if (l.find(needle) != std::string::npos) return true;
        return false;
    }

    // busybox at /bin/busybox with sh, plus accounts.
    engine::BuildResult build_base(const std::string& repo = "httpd-base",
                                   const std::string& extra = "") {
        write_text(context / "passwd",
                   "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/:/bin/sh\n");
        write_text(context / "group", "root:x:0:\napp:x:1000:\nstaff:x:50:\n");
        return build(
            "FROM scratch\n"
            "COPY busybox /bin/busybox\n"
            "COPY passwd group /etc/\n"
            "RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n"
            "CMD [\"/bin/sh\"]\n" +
                extra,
            repo);
    }
};

}  // namespace cascade::builder_testing
