#include "engine/add_source.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <vector>

#include "oci/error.hpp"
#include "oci/fs.hpp"
#include "oci/layer.hpp"

namespace cascade::engine {

namespace {

struct ArchiveDeleter {
    void operator()(struct archive* a) const { archive_read_free(a); }
};
using ArchivePtr = std::unique_ptr<struct archive, ArchiveDeleter>;

// A reader for tar archives in any compression libarchive reads, on `fd`.
ArchivePtr open_tar(int fd) {
    ArchivePtr a(archive_read_new());
    if (!a) throw Error("libarchive: archive_read_new failed");
    archive_read_support_filter_all(a.get());
    archive_read_support_format_tar(a.get());
    if (archive_read_open_fd(a.get(), fd, 1 << 16) != ARCHIVE_OK) return nullptr;
    return a;
}

std::vector<std::string> components(const std::string& path) {
    std::vector<std::string> out;
    std::string part;
    for (char c : path + "/") {
        if (c != '/') {
            part += c;
            continue;
        }
        if (!part.empty() && part != ".") out.push_back(part);
        part.clear();
    }
    return out;
}

std::string join(const std::vector<std::string>& comps, size_t n) {
    std::string out;
    for (size_t i = 0; i < n && i < comps.size(); i++)
        out += (i ? "/" : "") + comps[i];
    return out;
}

// The checks of extract_archive on one archive, by reading its headers.
class ArchiveChecker {
  public:
    void check(struct archive_entry* e, const std::string& name) {
        auto comps = checked(name, "its path");
        if (comps.empty()) return;  // "./"
        for (const auto& c : comps)
            if (c.rfind(".wh.", 0) == 0)
                throw Error("\"" + c +
                            "\" is named like an overlay whiteout (\".wh.\"); in a layer it would "
                            "delete a file of the image, so ADD does not extract it");
        check_not_through_symlink(comps, "it");
        const std::string path = join(comps, comps.size());

        if (const char* link = archive_entry_hardlink(e)) {
            auto target = checked(link, "its hard link target");
            check_not_through_symlink(target, "its hard link target");
            if (!files_.count(join(target, target.size())))
                throw Error("its hard link target \"" + std::string(link) +
                            "\" is not a file earlier in the archive; hard links may only point "
                            "at files of the same archive");
            files_.insert(path);
            symlinks_.erase(path);
            return;
        }
        switch (archive_entry_filetype(e)) {
            case AE_IFLNK: {
                const char* target = archive_entry_symlink(e);
                symlinks_[path] = target ? target : "";
                files_.insert(path);
                break;
            }
            case AE_IFDIR:
                symlinks_.erase(path);
                files_.erase(path);
                break;
            default:
                symlinks_.erase(path);
                files_.insert(path);
        }
    }

  private:
    static std::vector<std::string> checked(const std::string& path, const std::string& what) {
        if (!path.empty() && path[0] == '/')
            throw Error(what + " \"" + path +
                        "\" is absolute; ADD extracts only archives whose paths are relative "
                        "(create it with tar -C DIR .)");
        auto comps = components(path);
        for (const auto& c : comps)
            if (c == "..")
                throw Error(what + " \"" + path +
                            "\" contains \"..\" and would leave the destination directory");
        return comps;
    }

    // An entry below a symlink that the archive itself made would be written
    // wherever that symlink points: the classic tar escape.
    void check_not_through_symlink(const std::vector<std::string>& comps,
                                   const std::string& what) const {
        for (size_t i = 1; i < comps.size(); i++) {
            auto it = symlinks_.find(join(comps, i));
            if (it != symlinks_.end())
                throw Error(what + " goes through the symlink \"" + it->first + "\" -> \"" +
                            it->second +
                            "\" of the same archive; ADD does not write through symlinks an "
                            "archive creates");
        }
    }

    std::map<std::string, std::string> symlinks_;  // path → target
    std::set<std::string> files_;                  // non-directories so far
};

std::once_flag curl_once;

struct Download {
    int fd = -1;
    std::string where;
    oci::Sha256 sha;
    int64_t size = 0;
    std::string error;
};

size_t write_body(char* data, size_t size, size_t n, void* user) {
    auto* d = static_cast<Download*>(user);
    const size_t len = size * n;
    try {
        fs::write_all(d->fd, std::string_view(data, len), d->where);
    } catch (const std::exception& e) {
        d->error = e.what();
        return 0;  // aborts the transfer
    }
    d->sha.update(data, len);
    d->size += static_cast<int64_t>(len);
    return len;
}

struct CurlDeleter {
    void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct CurlUrlDeleter {
    void operator()(CURLU* u) const { curl_url_cleanup(u); }
};

// The last component of the URL's (decoded) path: "" for "http://h/" or "http://h".
std::string url_file_name(const std::string& url) {
    std::unique_ptr<CURLU, CurlUrlDeleter> u(curl_url());
    if (!u || curl_url_set(u.get(), CURLUPART_URL, url.c_str(), 0) != CURLUE_OK)
        throw Error(url + " is not a valid URL");
    char* path = nullptr;
    if (curl_url_get(u.get(), CURLUPART_PATH, &path, CURLU_URLDECODE) != CURLUE_OK || !path)
        return {};
    std::string p = path;
    curl_free(path);
    auto comps = components(p);
    if (comps.empty() || comps.back() == "..") return {};
    return comps.back();
}

}  // namespace

bool is_tar_archive(const RootDir& root, const std::string& source) {
    auto st = root.stat(source);
    if (!st || !S_ISREG(st->st_mode)) return false;
    fs::Fd fd = root.open(source, O_RDONLY | O_NONBLOCK);
    auto a = open_tar(fd.get());
    if (!a) return false;
    struct archive_entry* e = nullptr;
    int rc = archive_read_next_header(a.get(), &e);
    return rc == ARCHIVE_OK || rc == ARCHIVE_WARN;
}

int64_t extract_archive(const RootDir& root, const std::string& source,
                        const std::filesystem::path& staging) {
    const std::string shown = source + " (in " + root.description() + ")";
    fs::Fd fd = root.open(source, O_RDONLY | O_NONBLOCK);

    // First pass: headers only, so that a bad archive changes nothing.
    {
        auto a = open_tar(fd.get());
        if (!a) throw Error("cannot read the archive " + shown);
        ArchiveChecker checker;
        int64_t n = 0;
        while (true) {
            struct archive_entry* e = nullptr;
            int rc = archive_read_next_header(a.get(), &e);
            if (rc == ARCHIVE_EOF) break;
            if (rc < ARCHIVE_WARN) {
                const char* msg = archive_error_string(a.get());
                throw Error("cannot read the archive " + shown + " after " + std::to_string(n) +
                            " entries: " + (msg ? msg : "libarchive error"));
            }
            const char* name = archive_entry_pathname(e);
            if (!name) name = archive_entry_pathname_utf8(e);
            try {
                if (!name) throw Error("the entry has no name libarchive can decode");
                checker.check(e, name);
            } catch (const Error& err) {
                throw Error("refusing to extract the archive " + shown + ": entry \"" +
                            (name ? name : "<unnamed>") + "\": " + err.what());
            }
            n++;
        }
    }

    // Second pass: the oci/ applier, confined to `staging` (it reopens the
    // file, so the offset of `fd` does not matter). None of the names is a
    // whiteout, so it only creates.
    oci::LayerApplyOptions options;
    options.restore_owners = true;
    try {
        auto result =
            oci::apply_layer("/proc/self/fd/" + std::to_string(fd.get()), staging, options);
        return result.entries;
    } catch (const Error& e) {
        throw Error("cannot extract the archive " + shown + ": " + e.what());
    }
}

oci::Digest parse_checksum(const std::string& text) {
    auto d = oci::Digest::try_parse(text);
    if (!d) throw Error("--checksum=" + text + ": expected sha256:<64 lower-case hex digits>");
    if (d->algorithm() != "sha256")
        throw Error("--checksum=" + text + ": only sha256 checksums are supported");
    return *d;
}

bool is_url(const std::string& source) {
    return source.rfind("http://", 0) == 0 || source.rfind("https://", 0) == 0;
}

FetchedFile fetch_url(const std::string& url, const std::filesystem::path& out_file,
                      const std::optional<oci::Digest>& checksum) {
    std::call_once(curl_once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
    FetchedFile out;
    out.name = url_file_name(url);

    Download d;
    d.where = out_file.string();
    fs::Fd fd = fs::open_or_throw(out_file, O_WRONLY | O_CREAT | O_EXCL, 0600);
    d.fd = fd.get();
    auto fail = [&](const std::string& message) {
        ::unlink(out_file.c_str());
        return Error("downloading " + url + ": " + message);
    };

    std::unique_ptr<CURL, CurlDeleter> c(curl_easy_init());
    if (!c) throw fail("curl_easy_init failed");
    std::array<char, CURL_ERROR_SIZE> errbuf{};
    curl_easy_setopt(c.get(), CURLOPT_URL, url.c_str());
    curl_easy_setopt(c.get(), CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c.get(), CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c.get(), CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c.get(), CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(c.get(), CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c.get(), CURLOPT_CONNECTTIMEOUT, 30L);
    curl_easy_setopt(c.get(), CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c.get(), CURLOPT_LOW_SPEED_TIME, 120L);
    curl_easy_setopt(c.get(), CURLOPT_FILETIME, 1L);
    curl_easy_setopt(c.get(), CURLOPT_USERAGENT, "cascade");
    curl_easy_setopt(c.get(), CURLOPT_ERRORBUFFER, errbuf.data());
    curl_easy_setopt(c.get(), CURLOPT_WRITEFUNCTION, write_body);
    curl_easy_setopt(c.get(), CURLOPT_WRITEDATA, &d);
    CURLcode rc = curl_easy_perform(c.get());
    long status = 0;
    curl_easy_getinfo(c.get(), CURLINFO_RESPONSE_CODE, &status);
    if (rc != CURLE_OK) {
        if (!d.error.empty()) throw fail(d.error);
        std::string msg = errbuf[0] ? errbuf.data() : curl_easy_strerror(rc);
        throw fail("download failed: " + msg +
                   (status ? " (HTTP status " + std::to_string(status) + ")" : ""));
    }
    if (status < 200 || status > 299)
        throw fail("the server answered with HTTP status " + std::to_string(status) +
                   "; check the URL");
    curl_off_t filetime = -1;
    if (curl_easy_getinfo(c.get(), CURLINFO_FILETIME_T, &filetime) == CURLE_OK && filetime >= 0)
        out.last_modified = static_cast<int64_t>(filetime);

    out.digest = d.sha.digest();
    out.size = d.size;
    if (checksum && *checksum != out.digest)
        throw fail("checksum mismatch: --checksum expects " + checksum->str() +
                   " but the download is " + out.digest.str());
    if (::fchmod(fd.get(), 0600) != 0) throw fail("chmod: " + std::string(strerror(errno)));
    const timespec mtime{static_cast<time_t>(out.last_modified.value_or(0)), 0};
    const std::array<timespec, 2> times{mtime, mtime};
    if (::futimens(fd.get(), times.data()) != 0)
        throw fail("set times: " + std::string(strerror(errno)));
    return out;
}

}  // namespace cascade::engine
