// The event log: every tag move (and tag deletion) as a numbered, durable
// event, for the API's watch stream (GET /api/v1/events?watch=true) and the
// webhook dispatcher.
//
// Events are written by SQLite triggers on registry_tag_history (a move) and
// registry_tags (a deletion) into registry_events, so an event exists if and
// only if the change it describes committed: same transaction, no code path
// that moves a tag can forget it, and a crash can neither lose one nor record
// one that did not happen. Ids come from AUTOINCREMENT: strictly increasing
// and never reused, so "everything after id N" is a safe resume point for a
// watch client or a webhook cursor.
//
// In-process subscribers that must react at once keep using Store::subscribe;
// the log wakes its waiters from that subscription (and polls once a second
// for deletions, which the store does not publish).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "oci/digest.hpp"

namespace cascade::registry {

class Store;

struct Event {
    int64_t id = 0;
    // "TagMoved" or "TagDeleted"; appended ones: "BuildStarted", "BuildFinished",
    // "RolloutStarted", "RolloutProgress", "RolloutFinished"
    std::string type;
    std::string repository;
    std::string tag;
    int64_t generation = 0;                 // TagMoved: the tag's new generation
    std::optional<oci::Digest> old_digest;  // the previous generation's digest
    std::optional<oci::Digest> digest;      // TagMoved: the new digest; TagDeleted: the last one
    std::string cause;
    int64_t time = 0;     // unix seconds
    nlohmann::json data;  // appended events: their fields (an object)
};

// {"id", "resourceVersion", "type", "repository", "tag", "generation",
//  "digest", "oldDigest", "cause", "time" (RFC 3339)}; an appended event:
// {"id", "resourceVersion", "type", "name", "cause", "time"} and its data's fields
nlohmann::json to_json(const Event& e);

class EventLog {
  public:
    explicit EventLog(Store& store);  // creates the table and triggers once
    ~EventLog();
    EventLog(const EventLog&) = delete;
    EventLog& operator=(const EventLog&) = delete;

    // Records an event that is not a tag change (a build or rollout step), in
    // the same numbering as the tag events; `name` is the build or deployment.
    // Returns its id.
    int64_t append(const std::string& type, const std::string& name, const std::string& cause,
                   const nlohmann::json& data);

    // Events with id > after, oldest first, at most `limit`.
    std::vector<Event> after(int64_t after_id, size_t limit = 1000) const;
    // The newest `limit` events, oldest first.
    std::vector<Event> recent(size_t limit = 100) const;
    int64_t latest_id() const;

    // Blocks until an event with id > after_id exists, close() was called or
    // `timeout` passed. True when there are events to read.
    bool wait(int64_t after_id, std::chrono::milliseconds timeout);
    // Wakes every waiter and makes wait() return at once from now on (daemon
    // shutdown: watch streams end).
    void close();
    bool closed() const;

  private:
    Store& store_;
    int subscription_ = 0;
    mutable std::mutex mu_;
    std::condition_variable cv_;
    uint64_t wakeups_ = 0;
    bool closed_ = false;
};

}  // namespace cascade::registry
