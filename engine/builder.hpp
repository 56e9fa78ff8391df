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

#include <atomic>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "oci/digest.hpp"
#include "oci/image.hpp"

namespace cascade::registry {
class Importer;
class Store;
}  // namespace cascade::registry
namespace cascade::runtime {
class LayerCache;
class Runc;
}  // namespace cascade::runtime

namespace cascade::engine {

class BuildCache;

// Cancels a build from another thread: the builder checks it between steps
// and kills a running RUN container through the registered hook; the build
// then fails with "build cancelled".
class CancelToken {
  public:
    void cancel() {
        std::function<void()> hook;
        {
            std::lock_guard lock(mu_);
            cancelled_ = true;
            hook = hook_;
        }
        if (hook) hook();
    }
    bool cancelled() const { return cancelled_.load(); }
    // Called (once more) when cancel() arrives while it is set; pass {} to clear.
    void set_hook(std::function<void()> hook) {
        std::lock_guard lock(mu_);
        hook_ = std::move(hook);
    }

  private:
    std::atomic<bool> cancelled_{false};
    std::mutex mu_;
    std::function<void()> hook_;
};

// One finished step, for build records and progress output.
struct StepReport {
    size_t number = 0;    // 1-based over the whole build (FROM lines count)
    size_t stage = 0;     // index of the stage it belongs to
    std::string text;     // the instruction as written ("RUN make")
    bool cached = false;  // reused from the build cache, nothing ran
    int64_t duration_ms = 0;
    int64_t bytes = 0;  // compressed size of the layer it wrote (0: none)
};

// OpenShift's postCommit: a command run in a temporary container of the
// image just built, before its tag moves; a non-zero exit fails the build.
// `script` runs as /bin/sh -ic SCRIPT /bin/sh ARGS...; else `command` + `args`
// replaces the image's entrypoint; `args` alone go to the entrypoint.
struct PostCommitHook {
    std::string script;
    std::vector<std::string> command;
    std::vector<std::string> args;
    bool empty() const { return script.empty() && command.empty() && args.empty(); }
    bool operator==(const PostCommitHook&) const = default;
};

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
    // OpenShift's dockerStrategy.env: set after every FROM (as one ENV
    // instruction would be), so RUN steps see them and the image keeps them.
    std::vector<std::pair<std::string, std::string>> env;
    PostCommitHook post_commit;  // empty: none
    bool network_host = true;    // RUN steps use the host network unless false
    // Progress lines ("STEP 2/5: RUN …", "--> cached", …).
    std::function<void(const std::string&)> log;
    // Called after each step (from the thread that built its stage).
    std::function<void(const StepReport&)> on_step;
    std::shared_ptr<CancelToken> cancel;  // may be null
    // RUN --mount=type=secret,id=ID: the host file each id reads from. Never
    // written to a layer or the history.
    std::map<std::string, std::filesystem::path> secrets;
};

struct BuildResult {
    oci::Digest manifest_digest;
    oci::Digest config_digest;
    std::string base_name;  // "httpd-base:latest", "" for scratch
    std::optional<oci::Digest> base_digest;
    bool tag_moved = false;
};

// Images in other registries (FROM, COPY --from, RUN --mount=from=) are
// pulled into the store as image streams (engine/image_source.hpp).
struct BuilderOptions {
    // Pulls them (registry/importer.hpp); null: the Builder uses its own,
    // with credentials from `auth_file`.
    registry::Importer* importer = nullptr;
    std::filesystem::path auth_file;  // a containers auth file; need not exist
    // Registry domain → mirrors tried first, in order: "host:port" (https,
    // or http when the host is insecure), "http://host:port", "https://host".
    std::map<std::string, std::vector<std::string>> mirrors;
    // Hosts ("host" or "host:port") reachable over plain http:// or with a
    // TLS certificate that does not verify.
    std::vector<std::string> insecure_registries;
    // The daemon's own registry ("127.0.0.1:5000"): references to it name the
    // store like references without a domain.
    std::vector<std::string> local_domains;
};

class Builder {
  public:
    // `work_root` holds per-build scratch directories (removed after each
    // build, mounts included).
    Builder(registry::Store& store, runtime::LayerCache& layers, runtime::Runc& runc,
            std::filesystem::path work_root, BuilderOptions options = {});
    ~Builder();

    // Before the first build (not while builds run).
    void set_options(BuilderOptions options);
    const BuilderOptions& options() const { return options_; }

    BuildResult build(const BuildRequest& request);

    // Steps look up and store their layers in `cache` (engine/build_cache.hpp;
    // it must outlive the builder); null, the default: no cache.
    void set_cache(BuildCache* cache) { cache_ = cache; }

    // The final-stage base a Dockerfile names after override and ARG
    // expansion: what the trigger graph keys on ("httpd-base:latest").
    static std::string final_base(const std::string& dockerfile_text,
                                  const std::map<std::string, std::string>& build_args,
                                  const std::string& from_override,
                                  const std::vector<std::string>& local_domains = {});

  private:
    registry::Store& store_;
    runtime::LayerCache& layers_;
    runtime::Runc& runc_;
    std::filesystem::path work_root_;
    BuilderOptions options_;
    std::unique_ptr<registry::Importer> own_importer_;  // when options_ names none
    BuildCache* cache_ = nullptr;
};

}  // namespace cascade::engine
