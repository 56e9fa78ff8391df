// The registry of a real `cascade serve` killed with SIGKILL at the worst
// moments: in the middle of a chunked blob upload, of a monolithic upload, of a
// manifest PUT, and while a tag moves. After a restart nothing half-written is
// visible, every tag points at a complete image, and the tag history is intact.
//
// The requests are raw HTTP on a socket so that a test controls exactly how
// much of a request the daemon has received when it dies.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <sstream>
#include <thread>

#include "oci/digest.hpp"
#include "oci/error.hpp"
#include "oci/fs.hpp"
#include "support.hpp"

using nlohmann::json;
using namespace cascade;
using namespace std::chrono_literals;
namespace stdfs = std::filesystem;

namespace {

constexpr std::string_view kOciManifest = "application/vnd.oci.image.manifest.v1+json";

struct Reply {
    int status = 0;
    std::map<std::string, std::string> headers;  // names in lower case
    std::string body;

    std::string header(const std::string& name) const {
        auto it = headers.find(name);
        return it == headers.end() ? std::string() : it->second;
    }
    // The first Distribution-Spec error code of the body, or "".
    std::string error_code() const {
        auto j = json::parse(body, nullptr, false);
        if (j.is_discarded() || !j.contains("errors") || j["errors"].empty()) return {};
        return j["errors"][0].value("code", "");
    }
};

std::string lower(std::string s) {
    for (auto& c : s)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

// One HTTP/1.1 exchange on a plain socket ("Connection: close"), sent in
// pieces under the test's control.
class Connection {
  public:
    explicit Connection(uint16_t port) {
        fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        timeval tv{30, 0};
        ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        addr.sin_port = htons(port);
        connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    }
    ~Connection() {
        if (fd_ >= 0) ::close(fd_);
    }
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    bool connected() const { return connected_; }

    // Sends a request line and headers; the body follows with send().
    bool start(const std::string& method, const std::string& path, size_t content_length,
               const std::map<std::string, std::string>& headers = {}) {
        std::string head = method + " " + path +
                           " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                           "Content-Length: " +
                           std::to_string(content_length) + "\r\n";
        for (auto& [k, v] : headers)
            head += k + ": " + v + "\r\n";
        head += "\r\n";
        return send(head);
    }
    bool send(std::string_view data) {
        if (!connected_) return false;
        size_t off = 0;
        while (off < data.size()) {
            ssize_t n = ::send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
            if (n <= 0) {
                if (n < 0 && errno == EINTR) continue;
                return false;
            }
            off += static_cast<size_t>(n);
        }
        return true;
    }
    // Reads the whole response (until the server closes the connection).
    std::optional<Reply> reply() {
        if (!connected_) return std::nullopt;
        std::string data;
        char buf[65536];
        while (true) {
            ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
            if (n > 0) {
                data.append(buf, static_cast<size_t>(n));
                continue;
            }
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) return std::nullopt;
            break;
        }
        auto head_end = data.find("\r\n\r\n");
        if (head_end == std::string::npos) return std::nullopt;
        Reply r;
        std::istringstream head(data.substr(0, head_end));
        std::string line;
        std::getline(head, line);
        std::istringstream status(line);
        std::string version;
        status >> version >> r.status;
        while (std::getline(head, line)) {
            if (!line.empty() && line.back() == '\r') line.pop_back();
            auto colon = line.find(':');
            if (colon == std::string::npos) continue;
            auto value = line.substr(colon + 1);
            value.erase(0, value.find_first_not_of(' '));
            r.headers[lower(line.substr(0, colon))] = value;
        }
        r.body = data.substr(head_end + 4);
        auto length = r.header("content-length");
        if (!length.empty() && std::stoull(length) < r.body.size())
            r.body.resize(std::stoull(length));
        if (r.status == 0) return std::nullopt;
        return r;
    }

  private:
    int fd_ = -1;
    bool connected_ = false;
};

std::optional<Reply> request(uint16_t port, const std::string& method, const std::string& path,
                             std::string_view body = {},
                             const std::map<std::string, std::string>& headers = {}) {
    Connection c(port);
    if (!c.start(method, path, body.size(), headers) || !c.send(body)) return std::nullopt;
    return c.reply();
}

std::string describe(const std::optional<Reply>& r) {
    if (!r) return "no response (connection failed)";
    return "HTTP " + std::to_string(r->status) + " " + r->body;
}

// Deterministic bytes that do not compress.
std::string random_bytes(size_t n, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::string out(n, '\0');
    for (size_t i = 0; i < n; i += 8) {
        uint64_t v = rng();
        std::memcpy(out.data() + i, &v, std::min<size_t>(8, n - i));
    }
    return out;
}

// A config, a layer and the manifest naming them.
struct Image {
    std::string config, layer, manifest;
    oci::Digest config_digest, layer_digest, digest;
};

Image make_image(const std::string& salt, size_t layer_size = 2000) {
    Image img;
    img.config = json{{"architecture", "amd64"},
                      {"os", "linux"},
                      {"config", {{"Env", {"SALT=" + salt}}}},
                      {"rootfs", {{"type", "layers"}, {"diff_ids", json::array()}}}}
                     .dump();
    img.layer = random_bytes(layer_size, std::hash<std::string>()(salt));
    img.config_digest = oci::Digest::sha256_of(img.config);
    img.layer_digest = oci::Digest::sha256_of(img.layer);
    img.manifest = json{{"schemaVersion", 2},
                        {"mediaType", kOciManifest},
                        {"config",
                         {{"mediaType", "application/vnd.oci.image.config.v1+json"},
                          {"digest", img.config_digest.str()},
                          {"size", img.config.size()}}},
                        {"layers",
                         {{{"mediaType", "application/vnd.oci.image.layer.v1.tar+gzip"},
                           {"digest", img.layer_digest.str()},
                           {"size", img.layer.size()}}}}}
                       .dump(2);
    img.digest = oci::Digest::sha256_of(img.manifest);
    return img;
}

// Every generation of a tag, oldest first: (generation, digest).
using History = std::vector<std::pair<int64_t, std::string>>;

class RegistryFault : public ::testing::Test {
  protected:
    fs::TempDir tmp{{}, "cascade-fault-"};
    stdfs::path root = tmp.path() / "state";
    std::unique_ptr<test::Daemon> daemon;

    void SetUp() override { daemon = std::make_unique<test::Daemon>(root); }
    void TearDown() override {
        daemon.reset();
        test::cleanup_state_root(root);
    }
    uint16_t port() const { return daemon->port(); }

    // SIGKILL, then a fresh daemon on the same root and port.
    void crash_and_restart() {
        daemon->kill_hard();
        daemon->start();
        ASSERT_TRUE(test::port_open(port())) << "the daemon did not come back after SIGKILL";
    }

    void push_blob(const std::string& repo, const std::string& bytes) {
        auto d = oci::Digest::sha256_of(bytes);
        auto r = request(port(), "POST", "/v2/" + repo + "/blobs/uploads/?digest=" + d.str(), bytes,
                         {{"Content-Type", "application/octet-stream"}});
        ASSERT_TRUE(r && r->status == 201)
            << "monolithic upload of " << d.str() << ": " << describe(r);
    }
    void push_blobs(const std::string& repo, const Image& img) {
        push_blob(repo, img.config);
        push_blob(repo, img.layer);
    }
    std::optional<Reply> put_manifest(const std::string& repo, const std::string& ref,
                                      const std::string& bytes) {
        return request(port(), "PUT", "/v2/" + repo + "/manifests/" + ref, bytes,
                       {{"Content-Type", std::string(kOciManifest)}});
    }
    void push_image(const std::string& repo, const std::string& tag, const Image& img) {
        push_blobs(repo, img);
        auto r = put_manifest(repo, tag, img.manifest);
        ASSERT_TRUE(r && r->status == 201)
            << "PUT manifest " << repo << ":" << tag << ": " << describe(r);
        EXPECT_EQ(r->header("docker-content-digest"), img.digest.str());
    }

    // The tag's history from the API, oldest first.
    History history(const std::string& repo, const std::string& tag) {
        auto r = request(port(), "GET", "/api/v1/imagestreams/" + repo);
        History out;
        if (!r || r->status != 200) {
            ADD_FAILURE() << "GET /api/v1/imagestreams/" << repo << ": " << describe(r);
            return out;
        }
        auto stream = json::parse(r->body);
        for (auto& t : stream["status"]["tags"])
            if (t["tag"] == tag)
                for (auto& item : t["items"])
                    out.emplace_back(item["generation"].get<int64_t>(),
                                     item["image"].get<std::string>());
        std::sort(out.begin(), out.end());
        return out;
    }

    // GET of a manifest (by tag or digest) answers 200 and its config and
    // layers all answer 200 with the bytes their digests name.
    void expect_complete_image(const std::string& repo, const std::string& ref) {
        auto m = request(port(), "GET", "/v2/" + repo + "/manifests/" + ref, {},
                         {{"Accept", std::string(kOciManifest)}});
        ASSERT_TRUE(m && m->status == 200)
            << "GET manifest " << repo << ":" << ref << ": " << describe(m);
        auto digest = oci::Digest::sha256_of(m->body);
        EXPECT_EQ(m->header("docker-content-digest"), digest.str()) << repo << ":" << ref;
        if (ref.starts_with("sha256:")) {
            EXPECT_EQ(digest.str(), ref);
        }
        auto manifest = json::parse(m->body);
        std::vector<std::string> blobs{manifest["config"]["digest"].get<std::string>()};
        for (auto& l : manifest["layers"])
            blobs.push_back(l["digest"].get<std::string>());
        for (auto& b : blobs) {
            auto r = request(port(), "GET", "/v2/" + repo + "/blobs/" + b);
            ASSERT_TRUE(r && r->status == 200)
                << "blob " << b << " of " << repo << ":" << ref << ": " << describe(r);
            EXPECT_EQ(oci::Digest::sha256_of(r->body).str(), b)
                << "blob " << b << " of " << repo << ":" << ref << " has other bytes";
        }
    }

    // Every tag of every repository (from /v2/_catalog and tags/list) points at
    // a complete image, and the blob store on disk is sound.
    void expect_registry_consistent() {
        size_t blob_files = expect_store_consistent();
        size_t tags_seen = 0;
        auto catalog = request(port(), "GET", "/v2/_catalog");
        ASSERT_TRUE(catalog && catalog->status == 200) << describe(catalog);
        auto repos = json::parse(catalog->body)["repositories"];
        for (auto& repo : repos) {
            auto name = repo.get<std::string>();
            auto tags = request(port(), "GET", "/v2/" + name + "/tags/list");
            ASSERT_TRUE(tags) << name;
            if (tags->status == 404 && tags->error_code() == "NAME_UNKNOWN") continue;
            ASSERT_EQ(tags->status, 200) << name << ": " << tags->body;
            auto listed = json::parse(tags->body)["tags"];
            if (listed.is_null()) continue;
            for (auto& tag : listed) {
                expect_complete_image(name, tag.get<std::string>());
                tags_seen++;
            }
        }
        EXPECT_TRUE(tags_seen == 0 || blob_files > 0)
            << "tags exist but no blob file was found under " << root / "blobs" / "blobs"
            << ": the blob store's layout changed and this check no longer sees it";
    }

    // Generations 1..N without a gap, each digest still resolving to a
    // complete image.
    void expect_history_intact(const std::string& repo, const std::string& tag, const History& h) {
        for (size_t i = 0; i < h.size(); i++) {
            EXPECT_EQ(h[i].first, static_cast<int64_t>(i + 1))
                << repo << ":" << tag << " history has a gap or a duplicate at position " << i;
            expect_complete_image(repo, h[i].second);
        }
    }

    // The blob store on disk: every blob file hashes to its name, and nothing
    // but blobs and the ingest directory lives under <root>/blobs; no
    // temporary file of an atomic write is left anywhere else in the root.
    // Returns the number of blob files.
    size_t expect_store_consistent() {
        size_t blob_files = 0;
        auto store = root / "blobs";
        auto ingest = store / "ingest";
        std::error_code ec;
        for (auto it = stdfs::recursive_directory_iterator(store, ec);
             !ec && it != stdfs::recursive_directory_iterator(); it.increment(ec)) {
            auto p = it->path();
            if (p == ingest) {
                it.disable_recursion_pending();
                continue;
            }
            if (it->is_directory()) continue;
            auto rel = stdfs::relative(p, store);
            auto parts = std::vector<std::string>(rel.begin(), rel.end());
            bool in_blobs = parts.size() == 3 && parts[0] == "blobs" && parts[1] == "sha256";
            EXPECT_TRUE(in_blobs) << "unexpected file in the blob store: " << p;
            if (!in_blobs) continue;
            auto name = oci::Digest::try_parse("sha256:" + parts[2]);
            EXPECT_TRUE(name) << "blob file with a name that is no digest: " << p;
            blob_files++;
            if (name) {
                EXPECT_EQ(oci::Digest::sha256_of_file(p.string()), *name)
                    << "blob file " << p << " does not hash to its name (partial write visible)";
            }
        }
        EXPECT_FALSE(ec) << ec.message();
        for (auto it = stdfs::recursive_directory_iterator(root, ec);
             !ec && it != stdfs::recursive_directory_iterator(); it.increment(ec)) {
            if (it->path() == ingest) {
                it.disable_recursion_pending();
                continue;
            }
            auto name = it->path().filename().string();
            EXPECT_EQ(name.find(".tmp-"), std::string::npos)
                << "temporary file of an interrupted write left behind: " << it->path();
        }
        return blob_files;
    }
};

// POST, two PATCH chunks, a third PATCH whose body is cut by SIGKILL.
TEST_F(RegistryFault, KilledMidChunkedUploadShowsNoBlobAndTheUploadResumes) {
    const size_t chunk = 1 << 20;
    std::string data = random_bytes(3 * chunk, 42);
    auto digest = oci::Digest::sha256_of(data);
    const std::string repo = "fault/chunked";

    auto started = request(port(), "POST", "/v2/" + repo + "/blobs/uploads/");
    ASSERT_TRUE(started && started->status == 202) << describe(started);
    std::string location = started->header("location");
    ASSERT_FALSE(location.empty());
    std::string uuid = location.substr(location.rfind('/') + 1);
    ASSERT_TRUE(location.starts_with("/")) << "this test follows relative Locations: " << location;

    for (size_t i = 0; i < 2; i++) {
        auto r = request(port(), "PATCH", location, std::string_view(data).substr(i * chunk, chunk),
                         {{"Content-Type", "application/octet-stream"},
                          {"Content-Range",
                           std::to_string(i * chunk) + "-" + std::to_string((i + 1) * chunk - 1)}});
        ASSERT_TRUE(r && r->status == 202) << "PATCH chunk " << i << ": " << describe(r);
        EXPECT_EQ(r->header("range"), "0-" + std::to_string((i + 1) * chunk - 1));
        location = r->header("location");
    }

    {
        // The third chunk arrives slowly; the daemon dies a third of the way in.
        Connection slow(port());
        ASSERT_TRUE(slow.start(
            "PATCH", location, chunk,
            {{"Content-Type", "application/octet-stream"},
             {"Content-Range", std::to_string(2 * chunk) + "-" + std::to_string(3 * chunk - 1)}}));
        for (size_t sent = 0; sent < chunk / 3; sent += 32 << 10) {
            ASSERT_TRUE(slow.send(std::string_view(data).substr(2 * chunk + sent, 32 << 10)));
            std::this_thread::sleep_for(10ms);
        }
        std::this_thread::sleep_for(200ms);  // let the daemon write what it received
        ASSERT_NO_FATAL_FAILURE(crash_and_restart());
    }

    auto blob = request(port(), "GET", "/v2/" + repo + "/blobs/" + digest.str());
    ASSERT_TRUE(blob);
    EXPECT_EQ(blob->status, 404) << "the unfinished upload is visible as a blob";
    EXPECT_EQ(blob->error_code(), "BLOB_UNKNOWN") << blob->body;
    expect_registry_consistent();

    auto status = request(port(), "GET", location);
    ASSERT_TRUE(status);
    if (status->status == 404) {
        EXPECT_EQ(status->error_code(), "BLOB_UPLOAD_UNKNOWN") << status->body;
        RecordProperty("upload_after_crash", "unknown");
        return;
    }
    RecordProperty("upload_after_crash", "resumed");
    // The session survived: its Range tells how much it has; finishing from
    // there must give exactly the blob.
    ASSERT_EQ(status->status, 204) << describe(status);
    std::string range = status->header("range");
    ASSERT_TRUE(range.starts_with("0-")) << "Range of upload " << uuid << ": '" << range << "'";
    size_t have = std::stoull(range.substr(2)) + 1;
    EXPECT_GE(have, 2 * chunk) << "acknowledged chunks were lost";
    ASSERT_LE(have, data.size());
    std::string resume = status->header("location").empty() ? location : status->header("location");
    auto rest =
        request(port(), "PATCH", resume, std::string_view(data).substr(have),
                {{"Content-Type", "application/octet-stream"},
                 {"Content-Range", std::to_string(have) + "-" + std::to_string(data.size() - 1)}});
    ASSERT_TRUE(rest && rest->status == 202) << "resuming at " << have << ": " << describe(rest);
    std::string finish = rest->header("location");
    finish +=
        (finish.find('?') == std::string::npos ? "?" : "&") + std::string("digest=") + digest.str();
    auto done = request(port(), "PUT", finish);
    ASSERT_TRUE(done && done->status == 201)
        << "finishing the resumed upload (the data before the crash must be intact): "
        << describe(done);
    auto got = request(port(), "GET", "/v2/" + repo + "/blobs/" + digest.str());
    ASSERT_TRUE(got && got->status == 200) << describe(got);
    EXPECT_TRUE(got->body == data) << "the resumed blob has other bytes";
    expect_registry_consistent();
}

// A monolithic POST ?digest= and a final PUT ?digest= with a body, both cut.
TEST_F(RegistryFault, KilledMidMonolithicUploadShowsNoBlob) {
    std::string whole = random_bytes(1 << 20, 7);
    auto whole_digest = oci::Digest::sha256_of(whole);
    std::string last = random_bytes(1 << 20, 8);
    auto last_digest = oci::Digest::sha256_of(last);
    const std::string repo = "fault/monolithic";

    auto started = request(port(), "POST", "/v2/" + repo + "/blobs/uploads/");
    ASSERT_TRUE(started && started->status == 202) << describe(started);
    std::string location = started->header("location");
    {
        Connection post(port());
        ASSERT_TRUE(post.start("POST",
                               "/v2/" + repo + "/blobs/uploads/?digest=" + whole_digest.str(),
                               whole.size(), {{"Content-Type", "application/octet-stream"}}));
        ASSERT_TRUE(post.send(std::string_view(whole).substr(0, whole.size() / 2)));
        Connection put(port());
        std::string path = location + (location.find('?') == std::string::npos ? "?" : "&") +
                           "digest=" + last_digest.str();
        ASSERT_TRUE(
            put.start("PUT", path, last.size(), {{"Content-Type", "application/octet-stream"}}));
        ASSERT_TRUE(put.send(std::string_view(last).substr(0, last.size() / 2)));
        std::this_thread::sleep_for(300ms);
        ASSERT_NO_FATAL_FAILURE(crash_and_restart());
    }
    for (auto& d : {whole_digest, last_digest}) {
        auto r = request(port(), "GET", "/v2/" + repo + "/blobs/" + d.str());
        ASSERT_TRUE(r);
        EXPECT_EQ(r->status, 404) << "a blob whose upload was cut is visible: " << d.str();
        EXPECT_EQ(r->error_code(), "BLOB_UNKNOWN") << r->body;
    }
    expect_registry_consistent();
}

// Headers and half the body of a manifest PUT, then SIGKILL.
TEST_F(RegistryFault, KilledMidManifestPutKeepsTagAndHistory) {
    const std::string repo = "fault/manifest";
    auto one = make_image("one"), two = make_image("two"), three = make_image("three");
    push_image(repo, "v", one);
    push_image(repo, "v", two);
    push_blobs(repo, three);
    auto before = history(repo, "v");
    ASSERT_EQ(before.size(), 2u);

    {
        Connection c(port());
        ASSERT_TRUE(c.start("PUT", "/v2/" + repo + "/manifests/v", three.manifest.size(),
                            {{"Content-Type", std::string(kOciManifest)}}));
        ASSERT_TRUE(c.send(std::string_view(three.manifest).substr(0, three.manifest.size() / 2)));
        std::this_thread::sleep_for(300ms);
        ASSERT_NO_FATAL_FAILURE(crash_and_restart());
    }

    auto tag = request(port(), "GET", "/v2/" + repo + "/manifests/v", {},
                       {{"Accept", std::string(kOciManifest)}});
    ASSERT_TRUE(tag && tag->status == 200) << describe(tag);
    EXPECT_EQ(tag->header("docker-content-digest"), two.digest.str())
        << "the tag moved to a manifest whose PUT never completed";
    auto half = request(port(), "GET", "/v2/" + repo + "/manifests/" + three.digest.str());
    ASSERT_TRUE(half);
    EXPECT_EQ(half->status, 404);
    EXPECT_EQ(half->error_code(), "MANIFEST_UNKNOWN") << half->body;
    expect_complete_image(repo, "v");
    EXPECT_EQ(history(repo, "v"), before) << "the tag history changed";
    expect_history_intact(repo, "v", before);
    expect_registry_consistent();

    // The registry still takes the manifest afterwards.
    auto again = put_manifest(repo, "v", three.manifest);
    ASSERT_TRUE(again && again->status == 201) << describe(again);
    auto after = history(repo, "v");
    ASSERT_EQ(after.size(), 3u);
    EXPECT_EQ(after[2], (std::pair<int64_t, std::string>(3, three.digest.str())));
}

// A dozen rounds: manifests PUT as fast as possible move one tag while a
// killer thread SIGKILLs the daemon after a random short delay.
TEST_F(RegistryFault, KilledWhileMovingATagKeepsHistoryContiguous) {
    const std::string repo = "fault/moving";
    const std::string tag = "latest";
    std::vector<Image> images;
    for (int i = 0; i < 4; i++) {
        images.push_back(make_image("moving-" + std::to_string(i), 4000 + i));
        push_blobs(repo, images.back());
    }
    std::mt19937 rng(12345);
    History known;  // history as of the last check
    size_t acknowledged = 0;
    size_t next = 0;
    int committed_unanswered = 0;  // PUTs in flight at the kill that took effect
    for (int round = 0; round < 12; round++) {
        std::atomic<bool> stop{false};
        std::string last_acked, in_flight;
        size_t acked_this_round = 0;
        std::thread pusher([&] {
            while (!stop) {
                const Image& img = images[next % images.size()];
                in_flight = img.digest.str();
                auto r = put_manifest(repo, tag, img.manifest);
                if (!r) break;  // the daemon died
                if (r->status != 201) {
                    ADD_FAILURE() << "PUT manifest in round " << round << ": " << describe(r);
                    break;
                }
                last_acked = in_flight;
                acked_this_round++;
                next++;
            }
        });
        std::uniform_int_distribution<int> delay(20, 250);
        std::this_thread::sleep_for(std::chrono::milliseconds(delay(rng)));
        daemon->kill_hard();
        stop = true;
        pusher.join();
        daemon->start();
        ASSERT_TRUE(test::port_open(port())) << "round " << round << ": no daemon after restart";
        acknowledged += acked_this_round;

        auto now = history(repo, tag);
        SCOPED_TRACE("round " + std::to_string(round) + ", " + std::to_string(acked_this_round) +
                     " moves acknowledged in it");
        ASSERT_GE(now.size(), known.size());
        EXPECT_TRUE(std::equal(known.begin(), known.end(), now.begin()))
            << "history before the kill changed";
        EXPECT_GE(now.size(), acknowledged) << "an acknowledged tag move was lost";
        EXPECT_LE(now.size(), acknowledged + 1) << "more generations than moves";
        if (now.size() > acknowledged) {
            // The PUT in flight at the kill committed without its answer.
            EXPECT_EQ(now.back().second, in_flight);
            acknowledged = now.size();
            next++;
            committed_unanswered++;
        } else if (!last_acked.empty()) {
            EXPECT_EQ(now.back().second, last_acked);
        }
        auto current = request(port(), "GET", "/v2/" + repo + "/manifests/" + tag, {},
                               {{"Accept", std::string(kOciManifest)}});
        if (!now.empty()) {
            ASSERT_TRUE(current && current->status == 200) << describe(current);
            EXPECT_EQ(current->header("docker-content-digest"), now.back().second)
                << "the tag and its history disagree";
            expect_complete_image(repo, tag);
        }
        expect_history_intact(repo, tag, now);
        expect_registry_consistent();
        known = now;
        if (HasFatalFailure()) return;
    }
    RecordProperty("generations", static_cast<int>(known.size()));
    RecordProperty("committed_unanswered", committed_unanswered);
    EXPECT_GT(known.size(), 12u) << "the rounds moved the tag too rarely to test anything";
}

// An OCI layout holding one image ("big") with a gzip layer of `size` bytes of
// noise; returns the manifest's digest.
oci::Digest write_big_layout(const stdfs::path& work, const stdfs::path& layout, size_t size) {
    auto rootfs = work / "rootfs";
    fs::make_dirs(rootfs / "data");
    fs::write_file_atomic(rootfs / "data" / "random.bin", random_bytes(size, 99));
    auto tar = work / "layer.tar";
    auto r = test::run({"tar", "--sort=name", "--mtime=@0", "--numeric-owner", "-C",
                        rootfs.string(), "-cf", tar.string(), "."});
    if (r.exit_code != 0) throw Error("tar: " + r.err);
    r = test::run({"sh", "-c", "gzip -n -c '" + tar.string() + "' > '" + tar.string() + ".gz'"});
    if (r.exit_code != 0) throw Error("gzip: " + r.err);
    auto put = [&](const std::string& bytes) {
        auto d = oci::Digest::sha256_of(bytes);
        fs::make_dirs(layout / "blobs" / "sha256");
        fs::write_file_atomic(layout / "blobs" / "sha256" / d.encoded(), bytes);
        return json{{"digest", d.str()}, {"size", bytes.size()}};
    };
    auto layer = put(fs::read_file(tar.string() + ".gz"));
    layer["mediaType"] = "application/vnd.oci.image.layer.v1.tar+gzip";
    auto config = put(json{
        {"architecture", "amd64"},
        {"os", "linux"},
        {"rootfs",
         {{"type", "layers"}, {"diff_ids", {oci::Digest::sha256_of(fs::read_file(tar)).str()}}}}}
                          .dump());
    config["mediaType"] = "application/vnd.oci.image.config.v1+json";
    std::string manifest = json{
        {"schemaVersion", 2},
        {"mediaType", kOciManifest},
        {"config", config},
        {"layers", {layer}}}.dump();
    auto desc = put(manifest);
    desc["mediaType"] = kOciManifest;
    desc["annotations"] = {{"org.opencontainers.image.ref.name", "big"}};
    fs::write_file_atomic(layout / "index.json",
                          json{{"schemaVersion", 2}, {"manifests", {desc}}}.dump());
    fs::write_file_atomic(layout / "oci-layout", R"({"imageLayoutVersion":"1.0.0"})");
    return oci::Digest::sha256_of(manifest);
}

// skopeo pushing an image with a 24 MiB layer when the daemon dies; after the
// restart the registry is consistent and the same push succeeds, bit-identical.
TEST_F(RegistryFault, KilledDuringSkopeoPushThenThePushSucceeds) {
    if (!test::have_program("skopeo")) GTEST_SKIP() << "skopeo is not installed";
    auto layout = tmp.path() / "layout";
    auto manifest = write_big_layout(tmp.path(), layout, 24 << 20);
    std::string dest = "docker://" + daemon->address() + "/fault/skopeo:big";
    std::vector<std::string> push{"skopeo", "copy", "--dest-tls-verify=false",
                                  "oci:" + layout.string() + ":big", dest};

    test::CommandResult first;
    std::thread pusher([&] { first = test::run(push, 120s); });
    // Kill once the upload is under way: an upload session exists.
    auto ingest = root / "blobs" / "ingest";
    bool uploading = test::eventually(
        [&] {
            std::error_code ec;
            for (auto it = stdfs::directory_iterator(ingest, ec);
                 !ec && it != stdfs::directory_iterator(); it.increment(ec))
                if (it->path().filename().string().starts_with("upload-")) return true;
            return false;
        },
        60s);
    daemon->kill_hard();
    pusher.join();
    EXPECT_TRUE(uploading) << "skopeo never started an upload: " << first.err;
    RecordProperty("first_push", first.exit_code == 0 ? "finished before the kill" : "cut");
    daemon->start();
    ASSERT_TRUE(test::port_open(port()));
    expect_registry_consistent();

    auto second = test::run(push, 300s);
    ASSERT_EQ(second.exit_code, 0) << "pushing again after the crash: " << second.err;
    auto out = tmp.path() / "out";
    auto pull = test::run(
        {"skopeo", "copy", "--src-tls-verify=false", dest, "oci:" + out.string() + ":big"});
    ASSERT_EQ(pull.exit_code, 0) << pull.err;
    auto index = json::parse(fs::read_file(out / "index.json"));
    ASSERT_EQ(index["manifests"].size(), 1u);
    EXPECT_EQ(index["manifests"][0]["digest"], manifest.str());
    for (auto& file : stdfs::directory_iterator(layout / "blobs" / "sha256")) {
        auto copy = out / "blobs" / "sha256" / file.path().filename();
        ASSERT_TRUE(stdfs::exists(copy)) << copy;
        EXPECT_TRUE(fs::read_file(copy) == fs::read_file(file.path()))
            << file.path().filename() << " differs after the round trip";
    }
    expect_complete_image("fault/skopeo", "big");
    expect_registry_consistent();
}

}  // namespace
