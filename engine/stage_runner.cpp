#include "engine/stage_runner.hpp"

#include <csignal>
#include <cstdlib>
#include <exception>
#include <stdexcept>
#include <vector>

#include "engine/builder.hpp"
#include "runtime/runc.hpp"

namespace cascade::engine {

void run_dependency_graph(const std::map<size_t, std::set<size_t>>& deps, size_t limit,
                          const std::function<void(size_t)>& job,
                          const std::function<void()>& on_failure) {
    if (limit == 0) limit = 1;
    std::mutex mu;
    std::condition_variable cv;
    std::set<size_t> started, finished;
    size_t running = 0;
    std::exception_ptr first_error;
    std::vector<std::thread> threads;

    auto fail = [&](std::exception_ptr error) {  // with mu held; true for the first failure
        if (first_error) return false;
        first_error = std::move(error);
        return true;
    };
    auto ready = [&](size_t i) {
        for (size_t d : deps.at(i))
            if (deps.count(d) && !finished.count(d)) return false;
        return true;
    };

    std::unique_lock lock(mu);
    bool notify_failure = false;
    while (true) {
        for (const auto& [i, unused] : deps) {
            if (first_error || running >= limit) break;
            if (started.count(i) || !ready(i)) continue;
            started.insert(i);
            running++;
            try {
                threads.emplace_back([&, i] {
                    std::exception_ptr error;
                    try {
                        job(i);
                    } catch (...) {
                        error = std::current_exception();
                    }
                    bool first = false;
                    {
                        std::lock_guard guard(mu);
                        running--;
                        if (error)
                            first = fail(error);
                        else
                            finished.insert(i);
                    }
                    if (first) {
                        try {
                            on_failure();
                        } catch (...) {
                        }
                    }
                    cv.notify_all();
                });
            } catch (...) {
                running--;
                notify_failure = fail(std::current_exception());
            }
        }
        if (notify_failure) {
            notify_failure = false;
            lock.unlock();
            try {
                on_failure();
            } catch (...) {
            }
            lock.lock();
        }
        if (running == 0 && (first_error || started.size() == deps.size())) break;
        if (running == 0) {
            // Nothing runs and nothing can start: a dependency cycle (the
            // stage graph has none; a safety net rather than a hang).
            fail(std::make_exception_ptr(std::logic_error("stage dependency cycle")));
            break;
        }
        cv.wait(lock);
    }
    lock.unlock();
    for (auto& t : threads)
        t.join();
    if (first_error) std::rethrow_exception(first_error);
}

size_t default_stage_parallelism() {
    // CASCADE_BUILD_JOBS=1 builds stages one after the other (tests, benchmarks).
    if (const char* env = std::getenv("CASCADE_BUILD_JOBS")) {
        char* end = nullptr;
        long n = std::strtol(env, &end, 10);
        if (end != env && *end == 0 && n > 0) return static_cast<size_t>(n);
    }
    size_t n = std::thread::hardware_concurrency();
    return n < 2 ? 2 : n;
}

void BuildStopper::State::stop() {
    {
        std::lock_guard lock(mu);
        stopped = true;
    }
    cv.notify_all();
}

BuildStopper::BuildStopper(runtime::Runc& runc, std::shared_ptr<CancelToken> token)
    : runc_(runc), token_(std::move(token)) {
    if (!token_) return;
    token_->set_hook([state = state_] { state->stop(); });
    if (token_->cancelled()) state_->stop();
}

BuildStopper::~BuildStopper() {
    if (token_) token_->set_hook({});
}

void BuildStopper::abort() {
    state_->stop();
}

bool BuildStopper::cancelled() const {
    return token_ && token_->cancelled();
}

bool BuildStopper::stopped() const {
    std::lock_guard lock(state_->mu);
    return state_->stopped || cancelled();
}

BuildStopper::Watch::Watch(BuildStopper& stopper, std::string id)
    : stopper_(stopper), id_(std::move(id)) {
    thread_ = std::thread([this] {
        auto& s = *stopper_.state_;
        std::unique_lock lock(s.mu);
        while (true) {
            s.cv.wait(lock, [&] { return done_ || s.stopped; });
            if (done_) return;
            lock.unlock();
            try {
                stopper_.runc_.kill(id_, SIGKILL);
            } catch (...) {
                // Not created yet, or already gone: tried again below.
            }
            lock.lock();
            // Until the step ends: the container may have been being created.
            if (s.cv.wait_for(lock, std::chrono::milliseconds(200), [&] { return done_; })) return;
        }
    });
}

BuildStopper::Watch::~Watch() {
    {
        std::lock_guard lock(stopper_.state_->mu);
        done_ = true;
    }
    stopper_.state_->cv.notify_all();
    if (thread_.joinable()) thread_.join();
}

}  // namespace cascade::engine
