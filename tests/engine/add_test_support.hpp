// Helpers of the COPY/ADD tests: an in-process HTTP file server and tar
// archives made with Python's tarfile (which writes any name, ".." and
// absolute ones included, as an attacker would).
#pragma once

#include <httplib.h>

#include <filesystem>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

namespace cascade::test {

// Serves fixed bodies on 127.0.0.1: GET <path> answers 200 with the body and
// "Last-Modified" when given; everything else 404.
class FileServer {
  public:
    struct File {
        std::string body;
        std::string last_modified;  // HTTP date, "" for none
    };

    explicit FileServer(std::map<std::string, File> files) : files_(std::move(files)) {
        server_.Get(".*", [this](const httplib::Request& req, httplib::Response& res) {
            requests_++;
            auto it = files_.find(req.path);
            if (it == files_.end()) {
                res.status = 404;
                res.set_content("not found\n", "text/plain");
                return;
            }
            if (!it->second.last_modified.empty())
                res.set_header("Last-Modified", it->second.last_modified);
            res.set_content(it->second.body, "application/octet-stream");
        });
        port_ = server_.bind_to_any_port("127.0.0.1");
        if (port_ <= 0) throw std::runtime_error("cannot bind the test file server");
        thread_ = std::thread([this] { server_.listen_after_bind(); });
    }
    ~FileServer() {
        server_.stop();
        thread_.join();
    }
    FileServer(const FileServer&) = delete;
    FileServer& operator=(const FileServer&) = delete;

    std::string url(const std::string& path) const {
        return "http://127.0.0.1:" + std::to_string(port_) + path;
    }
    int requests() const { return requests_; }

  private:
    std::map<std::string, File> files_;
    httplib::Server server_;
    int port_ = 0;
    std::thread thread_;
    std::atomic<int> requests_{0};
};

// One entry of a tar made by make_tar.
struct TarSpec {
    std::string name;
    char type = 'f';   // 'f' file, 'd' directory, 'l' symlink, 'h' hard link
    std::string data;  // file content, or link target
    int uid = 0, gid = 0;
    int mode = 0644;
};

// Writes an uncompressed tar of exactly these entries, in this order.
inline void make_tar(const std::filesystem::path& out, const std::vector<TarSpec>& entries) {
    std::string script =
        "import io, sys, tarfile\n"
        "t = tarfile.open(sys.argv[1], 'w', format=tarfile.GNU_FORMAT)\n"
        "args = sys.argv[2:]\n"
        "for i in range(0, len(args), 6):\n"
        "    name, kind, data, uid, gid, mode = args[i:i + 6]\n"
        "    ti = tarfile.TarInfo(name)\n"
        "    ti.uid, ti.gid, ti.mode = int(uid), int(gid), int(mode)\n"
        "    body = None\n"
        "    if kind == 'f':\n"
        "        body = data.encode(); ti.size = len(body)\n"
        "    elif kind == 'd':\n"
        "        ti.type = tarfile.DIRTYPE\n"
        "    elif kind == 'l':\n"
        "        ti.type = tarfile.SYMTYPE; ti.linkname = data\n"
        "    elif kind == 'h':\n"
        "        ti.type = tarfile.LNKTYPE; ti.linkname = data\n"
        "    t.addfile(ti, io.BytesIO(body) if body is not None else None)\n"
        "t.close()\n";
    std::vector<std::string> argv{"python3", "-c", script, out.string()};
    for (const auto& e : entries) {
        argv.insert(argv.end(), {e.name, std::string(1, e.type), e.data, std::to_string(e.uid),
                                 std::to_string(e.gid), std::to_string(e.mode)});
    }
    auto r = run(argv);
    if (r.exit_code != 0) throw std::runtime_error("make_tar " + out.string() + ": " + r.err);
}

}  // namespace cascade::test
