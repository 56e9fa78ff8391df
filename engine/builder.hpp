// The build executor: runs a parsed Dockerfile against the store. FROM
// resolves an image in the built-in store (or scratch); RUN executes in runc
// on an overlay of the parent's layers, and the overlay's upper directory
// becomes the new layer; COPY writes into a fresh upper directory the same
// way. The result is stored as an OCI image whose manifest carries the base
// image's name and digest, and the output tag is moved to it.
//
// Builds are reproducible: every timestamp (layer entries, config created,
// history) is SOURCE_DATE_EPOCH when set, else 0, so the same inputs give the
// same digest, and an unchanged rebuild moves no tag.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include "oci/digest.hpp"
#include "oci/image.hpp"

namespace cascade::registry {
class Store;
}
namespace cascade::runtime {
class LayerCache;
class Runc;
}  // namespace cascade::runtime

namespace cascade::engine {

struct BuildRequest {
    std::filesystem::path context;
    // Dockerfile path relative to the context (or absolute); ignored when
    // `dockerfile_text` is set.
    std::string dockerfile = "Dockerfile";
    std::optional<std::string> dockerfile_text;
    std::map<std::string, std::string> build_args;
    std::string target;  // stage name; "" = the last stage
    // Replaces the image of the final stage's FROM (OpenShift's
    // dockerStrategy.from), e.g. "httpd-base:latest".
    std::string from_override;
    std::string output_repository;  // "app-a"
    std::string output_tag = "latest";
    std::string cause = "build";  // recorded in the tag's history
    bool no_cache = false;
    bool network_host = true;  // RUN steps use the host network unless false
    // Progress lines ("STEP 2/5: RUN …", "--> cached", …).
    std::function<void(const std::string&)> log;
};

struct BuildResult {
    oci::Digest manifest_digest;
    oci::Digest config_digest;
    std::string base_name;  // "httpd-base:latest", "" for scratch
    std::optional<oci::Digest> base_digest;
    bool tag_moved = false;
};

class Builder {
  public:
    // `work_root` holds per-build scratch directories (removed after each
    // build, mounts included).
    Builder(registry::Store& store, runtime::LayerCache& layers, runtime::Runc& runc,
            std::filesystem::path work_root);

    BuildResult build(const BuildRequest& request);

    // The final-stage base a Dockerfile names after override and ARG
    // expansion: what the trigger graph keys on ("httpd-base:latest").
    static std::string final_base(const std::string& dockerfile_text,
                                  const std::map<std::string, std::string>& build_args,
                                  const std::string& from_override);

  private:
    registry::Store& store_;
    runtime::LayerCache& layers_;
    runtime::Runc& runc_;
    std::filesystem::path work_root_;
};

}  // namespace cascade::engine
