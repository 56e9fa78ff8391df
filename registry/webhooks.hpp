// Webhooks: tag-move events POSTed to the endpoints of the configuration
// file (`notifications:` in cli/config.hpp).
//
// The queue is the event log itself (registry/events.hpp) plus one durable
// cursor per endpoint (registry_webhook_cursors: the id of the last event
// the endpoint acknowledged). An event row is written by a trigger in the
// transaction that moved the tag, so the "delivery record" can never be
// missing for a committed move nor present for a rolled-back one, and the
// cursor only advances after the endpoint answered 2xx. A crash or restart
// therefore loses nothing; at worst the batch in flight is delivered again
// (at-least-once: receivers deduplicate by event id). A new endpoint starts
// at the newest event: it is not flooded with history.
//
// Each endpoint has its own thread: a slow or dead endpoint delays only its
// own deliveries, never a push (the pushing thread only wakes the threads)
// nor another endpoint. A failed POST (connection error, timeout, non-2xx) is
// retried with exponential backoff; after `max_attempts` attempts the batch
// is recorded in registry_webhook_failures and skipped.
//
// The envelope, Content-Type application/json:
//   {"events": [<event as in events.hpp's to_json>, …]}
// with the header X-Cascade-Delivery: <endpoint>-<first id>-<last id>.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace cascade::registry {

class Database;
class EventLog;

struct WebhookEndpoint {
    std::string name;  // identifies the cursor; the URL when empty
    std::string url;
    std::map<std::string, std::string> headers;
    int timeout_seconds = 5;
    int max_attempts = 10;
};

struct WebhookOptions {
    std::chrono::milliseconds initial_backoff{500};
    std::chrono::milliseconds max_backoff{std::chrono::seconds(60)};
    size_t batch = 20;  // events per envelope at most
};

struct WebhookFailure {
    std::string endpoint;
    int64_t first_event = 0;
    int64_t last_event = 0;
    int attempts = 0;
    std::string error;
    int64_t time = 0;
};

class WebhookDispatcher {
  public:
    WebhookDispatcher(Database& db, EventLog& events, std::vector<WebhookEndpoint> endpoints,
                      WebhookOptions options = {});
    ~WebhookDispatcher();  // stop()
    WebhookDispatcher(const WebhookDispatcher&) = delete;
    WebhookDispatcher& operator=(const WebhookDispatcher&) = delete;

    void start();
    // Ends the threads; a POST in flight is aborted (delivered again later).
    void stop();

    // The last event id `endpoint` acknowledged (0 when none).
    int64_t cursor(const std::string& endpoint) const;
    std::vector<WebhookFailure> failures() const;

    // Progress lines for the daemon's log ("webhook ci: delivered 3 events").
    void set_log(std::function<void(const std::string&)> log);

  private:
    struct Worker;
    Database& db_;
    EventLog& events_;
    WebhookOptions options_;
    std::vector<std::unique_ptr<Worker>> workers_;
    std::function<void(const std::string&)> log_;
};

}  // namespace cascade::registry
