// Shared pieces of the runtime tests: a busybox root filesystem, a fixture
// with its own temporary state root (runc --root <tmp>/runc) cleaned up in
// TearDown, and small readers.
#pragma once

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "oci/fs.hpp"
#include "oci/layer.hpp"
#include "registry/blob_store.hpp"
#include "runtime/bundle.hpp"
#include "tests/support/support.hpp"

namespace cascade::runtime::testing {

namespace stdfs = std::filesystem;

inline void write_text(const stdfs::path& path, const std::string& text) {
    stdfs::create_directories(path.parent_path());
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
    if (!out) throw std::runtime_error("cannot write " + path.string());
}

inline std::string read_text(const stdfs::path& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// A minimal userland: /bin/busybox with applet links, accounts, a web root.
inline void make_busybox_tree(const stdfs::path& root) {
    stdfs::create_directories(root / "bin");
    stdfs::copy_file("/bin/busybox", root / "bin/busybox", stdfs::copy_options::overwrite_existing);
    ::chmod((root / "bin/busybox").c_str(), 0755);
    for (const char* applet :
         {"sh", "echo", "cat", "sleep", "httpd", "ls", "id", "touch", "rm", "true", "kill", "ip"}) {
        std::error_code ec;
        stdfs::create_symlink("busybox", root / "bin" / applet, ec);
    }
    for (const char* d : {"etc", "tmp", "proc", "sys", "dev", "www"})
        stdfs::create_directories(root / d);
    ::chmod((root / "tmp").c_str(), 01777);
    write_text(root / "etc/passwd",
               "root:x:0:0:root:/root:/bin/sh\n"
               "www:x:33:33:web:/www:/bin/sh\n"
               "app:x:1000:1000:app:/home/app:/bin/sh\n");
    write_text(root / "etc/group",
               "root:x:0:\n"
               "www:x:33:\n"
               "app:x:1000:\n"
               "staff:x:50:app\n");
    write_text(root / "www/hello.txt", "hello from the container\n");
}

// Interface names listed in a /proc/net/dev text.
inline std::set<std::string> interfaces_in(const std::string& proc_net_dev) {
    std::set<std::string> names;
    std::istringstream lines(proc_net_dev);
    std::string line;
    while (std::getline(lines, line)) {
        auto colon = line.find(':');
        if (colon == std::string::npos) continue;
        auto name = line.substr(0, colon);
        name.erase(0, name.find_first_not_of(' '));
        if (!name.empty() && name.find('|') == std::string::npos) names.insert(name);
    }
    return names;
}

// True when `path` is a mount point in this process's mount namespace.
inline bool is_mounted(const stdfs::path& path) {
    std::ifstream in("/proc/self/mountinfo");
    std::string line;
    auto want = stdfs::weakly_canonical(path).string();
    while (std::getline(in, line)) {
        std::istringstream fields(line);
        std::string id, parent, dev, root, target;
        fields >> id >> parent >> dev >> root >> target;
        if (target == want) return true;
    }
    return false;
}

using test::mounts_under;

// Packs `tree` as a layer (`tar`) into `blobs` and appends it to the image's
// manifest and diff IDs.
inline void add_layer(registry::BlobStore& blobs, const stdfs::path& tree, const stdfs::path& tar,
                      oci::Manifest& manifest, oci::ImageConfig& config) {
    auto written = oci::write_layer(tree, tar);
    blobs.put_file(tar, written.digest);
    oci::Descriptor d;
    d.media_type = written.media_type;
    d.digest = written.digest;
    d.size = written.size;
    manifest.layers.push_back(d);
    config.diff_ids.push_back(written.diff_id);
}

// True while a process with this pid exists (zombies included).
inline bool process_exists(int pid) {
    return pid > 0 && (::kill(pid, 0) == 0 || errno != ESRCH);
}

// Each test gets /tmp/cascade-rt-XXXXXX; runc state lives in <tmp>/runc so
// cleanup_state_root() finds and removes any container left by a failure,
// and unmounts whatever is still mounted under the directory.
class RuntimeTest : public ::testing::Test {
  protected:
    void TearDown() override { cascade::test::cleanup_state_root(tmp_.path()); }

    const stdfs::path& dir() const { return tmp_.path(); }
    stdfs::path runc_root() const { return tmp_.path() / "runc"; }

    // A bundle whose rootfs is a plain busybox directory (no overlay).
    stdfs::path plain_bundle(const std::string& name, BundleOptions options) {
        auto bundle = dir() / name;
        make_busybox_tree(bundle / "rootfs");
        write_bundle_config(bundle, make_runtime_spec(bundle / "rootfs", options));
        return bundle;
    }

    static BundleOptions shell(const std::string& script) {
        BundleOptions o;
        o.args = {"/bin/sh", "-c", script};
        o.env = {"PATH=/bin"};
        return o;
    }

  private:
    fs::TempDir tmp_{"/tmp", "cascade-rt-"};
};

}  // namespace cascade::runtime::testing
