// Pushing many small images into a daemon quickly, for the image-stream and
// garbage-collection end-to-end tests: the Distribution API through one curl
// process per batch (monolithic blob uploads, then manifests), and reading
// back what a tag points at.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "oci/digest.hpp"
#include "oci/fs.hpp"
#include "support.hpp"

namespace cascade::test {

struct PushedImage {
    std::string repository;
    std::string tag;  // empty: pushed by digest only
    std::string digest;
    std::vector<std::string> blobs;  // config, layers
};

// Writes the blobs and manifests of `images` (repository, tag, salt) and
// pushes them all with one curl process; every request must answer 201.
class Pusher {
  public:
    Pusher(std::string address, std::filesystem::path dir)
        : address_(std::move(address)), dir_(std::move(dir)) {
        std::filesystem::create_directories(dir_);
    }

    struct Spec {
        std::string repository;
        std::string tag;
        std::string salt;
        int layers = 2;
        size_t layer_size = 4096;
    };

    std::vector<PushedImage> push(const std::vector<Spec>& specs) {
        std::ostringstream config;
        std::vector<PushedImage> out;
        int requests = 0;
        auto request = [&](const std::string& method, const std::string& url,
                           const std::filesystem::path& file, const std::string& type) {
            if (requests++) config << "next\n";
            config << "request = \"" << method << "\"\nurl = \"http://" << address_ << url
                   << "\"\ndata-binary = \"@" << file.string()
                   << "\"\nheader = \"Content-Type: " << type
                   << "\"\nwrite-out = \"%{http_code}\\n\"\noutput = \"/dev/null\"\nsilent\n";
        };
        for (const auto& spec : specs) {
            PushedImage img;
            img.repository = spec.repository;
            img.tag = spec.tag;
            nlohmann::json layers = nlohmann::json::array();
            std::vector<std::string> diff_ids;
            for (int i = 0; i < spec.layers; i++) {
                std::string bytes = "layer " + std::to_string(i) + " of " + spec.salt + "\n";
                while (bytes.size() < spec.layer_size)
                    bytes += bytes;
                bytes.resize(spec.layer_size);
                auto d = blob(bytes);
                layers.push_back({{"mediaType", "application/vnd.oci.image.layer.v1.tar"},
                                  {"digest", d},
                                  {"size", bytes.size()}});
                diff_ids.push_back(d);
                img.blobs.push_back(d);
                request("POST", "/v2/" + spec.repository + "/blobs/uploads/?digest=" + d, file(d),
                        "application/octet-stream");
            }
            nlohmann::json cfg = {{"architecture", "amd64"},
                                  {"os", "linux"},
                                  {"config", {{"Env", {"SALT=" + spec.salt}}}},
                                  {"rootfs", {{"type", "layers"}, {"diff_ids", diff_ids}}}};
            std::string cfg_bytes = cfg.dump();
            auto cd = blob(cfg_bytes);
            img.blobs.insert(img.blobs.begin(), cd);
            request("POST", "/v2/" + spec.repository + "/blobs/uploads/?digest=" + cd, file(cd),
                    "application/octet-stream");
            nlohmann::json manifest = {{"schemaVersion", 2},
                                       {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                                       {"config",
                                        {{"mediaType", "application/vnd.oci.image.config.v1+json"},
                                         {"digest", cd},
                                         {"size", cfg_bytes.size()}}},
                                       {"layers", layers}};
            std::string m = manifest.dump();
            img.digest = blob(m);
            request("PUT",
                    "/v2/" + spec.repository + "/manifests/" +
                        (spec.tag.empty() ? img.digest : spec.tag),
                    file(img.digest), "application/vnd.oci.image.manifest.v1+json");
            out.push_back(std::move(img));
        }
        auto config_file = dir_ / ("curl-" + std::to_string(batch_++) + ".conf");
        fs::write_file_atomic(config_file, config.str());
        auto r = run({"curl", "--config", config_file.string()}, std::chrono::seconds(600));
        EXPECT_EQ(r.exit_code, 0) << r.err;
        std::istringstream codes(r.out);
        std::string code;
        int n = 0;
        while (codes >> code) {
            EXPECT_EQ(code, "201") << "request " << n;
            n++;
        }
        EXPECT_EQ(n, requests);
        return out;
    }

  private:
    std::string blob(const std::string& bytes) {
        auto d = oci::Digest::sha256_of(bytes).str();
        auto f = file(d);
        if (!std::filesystem::exists(f)) fs::write_file_atomic(f, bytes);
        return d;
    }
    std::filesystem::path file(const std::string& digest) const { return dir_ / digest.substr(7); }

    std::string address_;
    std::filesystem::path dir_;
    int batch_ = 0;
};

// The manifest a reference (tag or digest) names, or null when it is gone.
inline nlohmann::json manifest_of(uint16_t port, const std::string& repo,
                                  const std::string& reference) {
    auto r = http_get(port, "/v2/" + repo + "/manifests/" + reference);
    if (!r || r->status != 200) return nullptr;
    return nlohmann::json::parse(r->body, nullptr, false);
}

// True when the blob answers 200 with exactly the bytes its digest names.
inline bool blob_complete(uint16_t port, const std::string& repo, const std::string& digest) {
    auto r = http_get(port, "/v2/" + repo + "/blobs/" + digest);
    return r && r->status == 200 && oci::Digest::sha256_of(r->body).str() == digest;
}

// Every blob (config and layers) of the manifest `reference` names is served.
inline bool image_complete(uint16_t port, const std::string& repo, const std::string& reference) {
    auto m = manifest_of(port, repo, reference);
    if (!m.is_object()) return false;
    if (!blob_complete(port, repo, m["config"]["digest"])) return false;
    for (const auto& l : m["layers"])
        if (!blob_complete(port, repo, l["digest"])) return false;
    return true;
}

}  // namespace cascade::test
