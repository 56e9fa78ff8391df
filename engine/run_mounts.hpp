// RUN --mount (BuildKit's syntax) and RUN heredoc scripts: what a RUN step
// sees besides its image, and none of which lands in its layer. Internal to
// the engine.
//
//   type=bind    a directory or file of the build context, or of another stage
//                or image (from=), read-only unless rw (writes are discarded)
//   type=cache   a directory kept by the builder across builds (id, sharing)
//   type=secret  a file of BuildRequest::secrets, read-only, at
//                /run/secrets/<id> unless target= says otherwise
//   type=tmpfs   an empty tmpfs
//
// The mount points the container creates for them are removed again by
// run_step_container (engine/step.hpp), so only what the command itself
// writes elsewhere becomes the layer.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "oci/fs.hpp"
#include "runtime/bundle.hpp"
#include "runtime/rootfs.hpp"

namespace cascade::engine {

class RootDir;
class StepMount;
struct ImageState;

struct RunMount {
    enum class Type { Bind, Cache, Secret, Tmpfs };
    Type type = Type::Bind;
    std::string target;  // absolute, cleaned ("" for a secret given only as env=)
    std::string source;  // bind, cache: a path inside `from` or the context ("/" default)
    std::string from;    // bind, cache: a stage name or index, or an image
    std::string id;      // cache (default: target), secret (default: target's name)
    bool readonly = false;
    enum class Sharing { Shared, Private, Locked };
    Sharing sharing = Sharing::Shared;  // cache
    std::optional<mode_t> mode;
    std::optional<uint32_t> uid, gid;
    bool required = false;         // secret
    std::string env;               // secret: also exported as this variable
    std::optional<uint64_t> size;  // tmpfs, bytes
};

// Parses one --mount value ("type=cache,target=/root/.cache,sharing=locked"),
// variables already expanded. Relative targets are relative to `workdir`.
// Throws naming `at` ("Dockerfile:7") and the offending key.
RunMount parse_run_mount(const std::string& value, const std::string& workdir,
                         const std::string& at);

// The from= of a --mount value, if any (for planning which stages a build
// needs); never throws.
std::optional<std::string> run_mount_from(const std::string& value);

// Where the sources of a RUN step's mounts come from.
struct RunMountSources {
    runtime::LayerCache* layers = nullptr;
    // The build context (throws when the build has none).
    std::function<const RootDir&()> context;
    // The image a from= names: a stage (built on demand) or a stored image.
    std::function<ImageState(const std::string& from)> image;
    // Persistent cache-mount directories live here, one per id.
    std::filesystem::path cache_root;
    const std::map<std::string, std::filesystem::path>* secrets = nullptr;
    std::string at;  // "Dockerfile:7", for errors
};

class StepKey;

// Adds to a RUN step's cache key what its bind mounts bring in: the content
// and metadata of a bound context path, the state of a from= image or stage
// (built on demand). Cache, secret and tmpfs mounts add nothing: their
// content never counts (as in BuildKit).
void add_run_mount_inputs(StepKey& key, const std::vector<RunMount>& mounts,
                          const RunMountSources& sources);

// The mounts of one RUN step, prepared under `scratch` (a per-step directory
// the caller removes afterwards) and added to `options` (binds, tmpfs, env).
// Holds what must live while the container runs — source images mounted,
// cache locks, the private tmpfs the secrets are copied to — and releases it
// on destruction.
class RunMounts {
  public:
    RunMounts(const std::vector<RunMount>& mounts, const RunMountSources& sources,
              const std::filesystem::path& scratch, runtime::BundleOptions& options);
    RunMounts(const RunMounts&) = delete;
    RunMounts& operator=(const RunMounts&) = delete;
    ~RunMounts();

  private:
    void add_bind(const RunMount& m, size_t n);
    void add_cache(const RunMount& m, size_t n);
    void add_secret(const RunMount& m);
    void release();

    const RunMountSources& sources_;
    std::filesystem::path scratch_;
    runtime::BundleOptions& options_;
    std::vector<std::unique_ptr<StepMount>> images_;
    std::vector<runtime::OverlayMount> overlays_;
    std::vector<fs::Fd> locks_;
    std::optional<std::filesystem::path> secrets_tmpfs_;
};

// BuildKit's RUN <<EOF whose script starts with "#!": the script is written
// under `scratch` (mode 0755) and bound read-only at /dev/pipes/<name>; returns
// that path, which the shell then executes.
std::string bind_heredoc_script(const std::string& name, const std::string& content,
                                const std::filesystem::path& scratch,
                                runtime::BundleOptions& options, const std::string& at);

}  // namespace cascade::engine
