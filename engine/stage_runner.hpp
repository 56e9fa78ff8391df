// Concurrency for one build: the stages of a multi-stage build run as a
// dependency graph on a few threads, and every RUN container of the build can
// be killed at once when the build is cancelled or another stage failed.
// Internal to the engine.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>

namespace cascade::runtime {
class Runc;
}

namespace cascade::engine {

class CancelToken;

// Runs `job(i)` for every key of `deps` on at most `limit` threads at once; a
// job starts only after each job it depends on finished (dependencies that
// are not keys count as finished). On the first failure `on_failure` is
// called once, no further job starts, the running ones are waited for, and
// the first failure is rethrown. Jobs start in ascending order of their index
// when several are ready.
void run_dependency_graph(const std::map<size_t, std::set<size_t>>& deps, size_t limit,
                          const std::function<void(size_t)>& job,
                          const std::function<void()>& on_failure);

// The default parallelism: $CASCADE_BUILD_JOBS, else hardware threads, at
// least 2.
size_t default_stage_parallelism();

// Stops a build: set by the request's CancelToken (whose hook it installs for
// its lifetime) or by abort(). While stopped, every container registered with
// a Watch is killed (SIGKILL), retried until its step ends, so a container
// that was still being created when the stop came is killed too.
class BuildStopper {
  public:
    BuildStopper(runtime::Runc& runc, std::shared_ptr<CancelToken> token);
    ~BuildStopper();  // clears the token's hook
    BuildStopper(const BuildStopper&) = delete;
    BuildStopper& operator=(const BuildStopper&) = delete;

    void abort();            // another stage failed: stop the others
    bool cancelled() const;  // the token was cancelled
    bool stopped() const;    // cancelled or aborted

    // Kills container `id` once the build stops, until the Watch goes away.
    class Watch {
      public:
        Watch(BuildStopper& stopper, std::string id);
        ~Watch();
        Watch(const Watch&) = delete;
        Watch& operator=(const Watch&) = delete;

      private:
        BuildStopper& stopper_;
        std::string id_;
        bool done_ = false;  // guarded by the stopper's State::mu
        std::thread thread_;
    };

  private:
    // Shared with the token's hook, which may still run after we are gone.
    struct State {
        std::mutex mu;
        std::condition_variable cv;
        bool stopped = false;
        void stop();
    };

    runtime::Runc& runc_;
    std::shared_ptr<CancelToken> token_;
    std::shared_ptr<State> state_ = std::make_shared<State>();
};

}  // namespace cascade::engine
