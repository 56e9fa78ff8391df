// Shared pieces of the registry tests: a store on a temporary root, sample
// images written blob by blob, and an in-process Distribution server.
#pragma once

#include <httplib.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "oci/fs.hpp"
#include "oci/media_types.hpp"
#include "registry/blob_store.hpp"
#include "registry/database.hpp"
#include "registry/http.hpp"
#include "registry/store.hpp"
#include "tests/support/support.hpp"

namespace cascade::registry::testing {

// A BlobStore, Database and Store on one root directory.
struct StoreOnDisk {
    explicit StoreOnDisk(const std::filesystem::path& root)
        : blobs(root), db(root / "cascade.db"), store(blobs, db) {}
    BlobStore blobs;
    Database db;
    Store store;
};

// A small image: config and one layer in the blob store, and manifest bytes
// (not stored) referencing them.
struct SampleImage {
    std::string config;
    std::string layer;
    std::string manifest;
    oci::Digest config_digest, layer_digest, manifest_digest;
};

inline std::string descriptor_json(std::string_view media_type, const std::string& bytes) {
    nlohmann::json d = {{"mediaType", media_type},
                        {"digest", oci::Digest::sha256_of(bytes).str()},
                        {"size", bytes.size()}};
    return d.dump();
}

// `salt` makes each image distinct; blobs are written to `blobs` when given.
inline SampleImage make_image(BlobStore* blobs, const std::string& salt,
                              std::string_view manifest_type = oci::media::kImageManifest) {
    SampleImage img;
    img.config = R"({"architecture":"amd64","os":"linux","config":{"Env":["SALT=)" + salt +
                 R"("]},"rootfs":{"type":"layers","diff_ids":[]}})";
    img.layer = "layer bytes " + salt + std::string(1000, 'x');
    bool docker = manifest_type == oci::media::kDockerManifest;
    // Deliberately odd whitespace: the registry must keep the bytes as sent.
    img.manifest =
        "{\n  \"schemaVersion\": 2,\n  \"mediaType\": \"" + std::string(manifest_type) +
        "\",\n  \"config\": " +
        descriptor_json(docker ? oci::media::kDockerConfig : oci::media::kImageConfig, img.config) +
        ",\n  \"layers\": [ " +
        descriptor_json(docker ? oci::media::kDockerLayerGzip : oci::media::kLayerGzip, img.layer) +
        " ]\n}\n";
    img.config_digest = oci::Digest::sha256_of(img.config);
    img.layer_digest = oci::Digest::sha256_of(img.layer);
    img.manifest_digest = oci::Digest::sha256_of(img.manifest);
    if (blobs) {
        blobs->put(img.config);
        blobs->put(img.layer);
    }
    return img;
}

inline std::string make_index(const std::vector<SampleImage>& children) {
    nlohmann::json idx = {{"schemaVersion", 2},
                          {"mediaType", oci::media::kImageIndex},
                          {"manifests", nlohmann::json::array()}};
    for (auto& c : children)
        idx["manifests"].push_back({{"mediaType", oci::media::kImageManifest},
                                    {"digest", c.manifest_digest.str()},
                                    {"size", c.manifest.size()},
                                    {"platform", {{"architecture", "amd64"}, {"os", "linux"}}}});
    return idx.dump(2);
}

// The Distribution API over a store (with its options), served in-process on
// 127.0.0.1.
class RegistryServer {
  public:
    explicit RegistryServer(Store& store, DistributionOptions options = {})
        : distribution(store, options), port_(test::free_port()) {
        distribution.register_routes(server_);
        // CASCADE_TEST_HTTP_LOG=1 logs every request, to see what a client does.
        if (std::getenv("CASCADE_TEST_HTTP_LOG"))
            server_.set_logger([](const httplib::Request& req, const httplib::Response& res) {
                std::fprintf(stderr, "%s %s -> %d\n", req.method.c_str(), req.target.c_str(),
                             res.status);
            });
        if (!server_.bind_to_port("127.0.0.1", port_))
            throw Error("cannot bind 127.0.0.1:" + std::to_string(port_));
        thread_ = std::thread([this] { server_.listen_after_bind(); });
        // stop() is only effective once the accept loop runs.
        test::eventually([this] { return server_.is_running(); }, std::chrono::seconds(10));
    }
    ~RegistryServer() {
        server_.stop();
        thread_.join();
    }
    RegistryServer(const RegistryServer&) = delete;
    RegistryServer& operator=(const RegistryServer&) = delete;

    Distribution distribution;

    uint16_t port() const { return port_; }
    std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
    std::unique_ptr<httplib::Client> client() const {
        auto c = std::make_unique<httplib::Client>("127.0.0.1", port_);
        c->set_read_timeout(60, 0);
        c->set_write_timeout(60, 0);
        return c;
    }

  private:
    uint16_t port_;
    httplib::Server server_;
    std::thread thread_;
};

// The first error code in a Distribution-Spec error body, or "".
inline std::string error_code(const std::string& body) {
    auto j = nlohmann::json::parse(body, nullptr, false);
    if (j.is_discarded() || !j.contains("errors") || j["errors"].empty()) return {};
    return j["errors"][0].value("code", "");
}

}  // namespace cascade::registry::testing
