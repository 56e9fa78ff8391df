#include "registry/events.hpp"

#include <algorithm>
#include <ctime>

#include "oci/image.hpp"
#include "registry/database.hpp"
#include "registry/store.hpp"

namespace cascade::registry {

namespace {

// The triggers make the event part of the transaction that moved or deleted
// the tag. A deletion's generation is the tag's last one; its cause "delete".
constexpr const char* kSchema = R"sql(
CREATE TABLE registry_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    type       TEXT NOT NULL,
    repository TEXT NOT NULL,
    tag        TEXT NOT NULL,
    generation INTEGER NOT NULL,
    digest     TEXT,
    old_digest TEXT,
    cause      TEXT NOT NULL,
    time       INTEGER NOT NULL
);
CREATE TRIGGER registry_events_tag_moved AFTER INSERT ON registry_tag_history
BEGIN
    INSERT INTO registry_events (type, repository, tag, generation, digest, old_digest, cause, time)
    VALUES ('TagMoved', NEW.repository, NEW.tag, NEW.generation, NEW.digest,
            (SELECT h.digest FROM registry_tag_history h
              WHERE h.repository = NEW.repository AND h.tag = NEW.tag
                AND h.generation < NEW.generation
              ORDER BY h.generation DESC LIMIT 1),
            NEW.cause, NEW.time);
END;
CREATE TRIGGER registry_events_tag_deleted AFTER DELETE ON registry_tags
BEGIN
    INSERT INTO registry_events (type, repository, tag, generation, digest, old_digest, cause, time)
    VALUES ('TagDeleted', OLD.repository, OLD.tag,
            (SELECT COALESCE(MAX(h.generation), 0) FROM registry_tag_history h
              WHERE h.repository = OLD.repository AND h.tag = OLD.tag),
            OLD.digest, NULL, 'delete', CAST(strftime('%s', 'now') AS INTEGER));
END;
)sql";

// Events other than tag changes (builds, rollouts) carry their fields as JSON.
constexpr const char* kSchema2 = R"sql(
ALTER TABLE registry_events ADD COLUMN data TEXT;
)sql";

constexpr const char* kColumns =
    "id, type, repository, tag, generation, digest, old_digest, cause, time, data";

Event event_of(const Database::Row& r) {
    Event e;
    e.id = as_int(r[0]);
    e.type = as_text(r[1]);
    e.repository = as_text(r[2]);
    e.tag = as_text(r[3]);
    e.generation = as_int(r[4]);
    if (!is_null(r[5])) e.digest = oci::Digest::try_parse(as_text(r[5]));
    if (!is_null(r[6])) e.old_digest = oci::Digest::try_parse(as_text(r[6]));
    e.cause = as_text(r[7]);
    e.time = as_int(r[8]);
    if (!is_null(r[9])) e.data = nlohmann::json::parse(as_text(r[9]), nullptr, false);
    return e;
}

}  // namespace

nlohmann::json to_json(const Event& e) {
    if (e.data.is_object()) {
        nlohmann::json j = e.data;
        j["id"] = e.id;
        j["resourceVersion"] = std::to_string(e.id);
        j["type"] = e.type;
        j["name"] = e.repository;
        j["cause"] = e.cause;
        j["time"] = oci::rfc3339(e.time);
        return j;
    }
    return {{"id", e.id},
            {"resourceVersion", std::to_string(e.id)},
            {"type", e.type},
            {"repository", e.repository},
            {"tag", e.tag},
            {"generation", e.generation},
            {"digest", e.digest ? e.digest->str() : ""},
            {"oldDigest", e.old_digest ? e.old_digest->str() : ""},
            {"cause", e.cause},
            {"time", oci::rfc3339(e.time)}};
}

EventLog::EventLog(Store& store) : store_(store) {
    store_.db().migrate("registry-events-0001", kSchema);
    store_.db().migrate("registry-events-0002", kSchema2);
    subscription_ = store_.subscribe([this](const TagEvent&) {
        std::lock_guard lock(mu_);
        wakeups_++;
        cv_.notify_all();
    });
}

EventLog::~EventLog() {
    store_.unsubscribe(subscription_);
    close();
}

int64_t EventLog::append(const std::string& type, const std::string& name, const std::string& cause,
                         const nlohmann::json& data) {
    int64_t id = 0;
    auto& db = store_.db();
    // Build and rollout steps are observations, not something a client was told
    // is done: no fsync of their own (registry/database.hpp).
    auto append_row = [&] {
        db.query(
            "INSERT INTO registry_events (type, repository, tag, generation, cause, time, data) "
            "VALUES (?1, ?2, '', 0, ?3, ?4, ?5)",
            {type, name, cause, static_cast<int64_t>(::time(nullptr)),
             data.is_object() ? data.dump() : std::string("{}")});
        id = db.last_insert_rowid();
    };
    db.transaction(append_row, Database::Durability::Relaxed);
    std::lock_guard lock(mu_);
    wakeups_++;
    cv_.notify_all();
    return id;
}

std::vector<Event> EventLog::after(int64_t after_id, size_t limit) const {
    std::vector<Event> out;
    store_.db().query(std::string("SELECT ") + kColumns +
                          " FROM registry_events WHERE id > ?1 ORDER BY id LIMIT ?2",
                      {after_id, static_cast<int64_t>(limit)},
                      [&](const Database::Row& r) { out.push_back(event_of(r)); });
    return out;
}

std::vector<Event> EventLog::recent(size_t limit) const {
    std::vector<Event> out;
    store_.db().query(
        std::string("SELECT ") + kColumns + " FROM registry_events ORDER BY id DESC LIMIT ?1",
        {static_cast<int64_t>(limit)}, [&](const Database::Row& r) { out.push_back(event_of(r)); });
    std::reverse(out.begin(), out.end());
    return out;
}

int64_t EventLog::latest_id() const {
    auto r = store_.db().row("SELECT COALESCE(MAX(id), 0) FROM registry_events");
    return r ? as_int((*r)[0]) : 0;
}

bool EventLog::wait(int64_t after_id, std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (true) {
        uint64_t seen;
        {
            std::lock_guard lock(mu_);
            if (closed_) return false;
            seen = wakeups_;
        }
        // Read after noting the wake-up count: a move that commits between
        // the read and the wait below bumps the count and ends the wait.
        if (latest_id() > after_id) return true;
        // Deletions are not published by the store: look again every second.
        auto slice = std::min(deadline, std::chrono::steady_clock::now() + std::chrono::seconds(1));
        std::unique_lock lock(mu_);
        cv_.wait_until(lock, slice, [&] { return closed_ || wakeups_ != seen; });
        if (closed_) return false;
        if (std::chrono::steady_clock::now() >= deadline) {
            lock.unlock();
            return latest_id() > after_id;
        }
    }
}

void EventLog::close() {
    std::lock_guard lock(mu_);
    closed_ = true;
    cv_.notify_all();
}

bool EventLog::closed() const {
    std::lock_guard lock(mu_);
    return closed_;
}

}  // namespace cascade::registry
