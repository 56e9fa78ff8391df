#include "registry/webhooks.hpp"

#include <curl/curl.h>

#include <atomic>
#include <condition_variable>
#include <ctime>
#include <mutex>
#include <thread>

#include <nlohmann/json.hpp>

#include "oci/error.hpp"
#include "registry/database.hpp"
#include "registry/events.hpp"

namespace cascade::registry {

namespace {

constexpr const char* kSchema = R"sql(
CREATE TABLE registry_webhook_cursors (
    endpoint   TEXT PRIMARY KEY,
    last_event INTEGER NOT NULL,
    updated    INTEGER NOT NULL
);
CREATE TABLE registry_webhook_failures (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint    TEXT NOT NULL,
    first_event INTEGER NOT NULL,
    last_event  INTEGER NOT NULL,
    attempts    INTEGER NOT NULL,
    error       TEXT NOT NULL,
    time        INTEGER NOT NULL
);
)sql";

int64_t now_seconds() {
    return static_cast<int64_t>(std::time(nullptr));
}

size_t discard_body(char*, size_t size, size_t n, void*) {
    return size * n;
}

}  // namespace

struct WebhookDispatcher::Worker {
    WebhookDispatcher& owner;
    WebhookEndpoint endpoint;
    std::string id;  // cursor key
    std::thread thread;
    std::atomic<bool> stopping{false};
    std::mutex mu;
    std::condition_variable cv;

    Worker(WebhookDispatcher& o, WebhookEndpoint e)
        : owner(o),
          endpoint(std::move(e)),
          id(endpoint.name.empty() ? endpoint.url : endpoint.name) {}

    void log(const std::string& line) {
        if (owner.log_) owner.log_("webhook " + id + ": " + line);
    }

    // Sleeps up to `d`; false when stopping.
    bool pause(std::chrono::milliseconds d) {
        std::unique_lock lock(mu);
        return !cv.wait_for(lock, d, [&] { return stopping.load(); });
    }

    int64_t load_cursor() {
        auto& db = owner.db_;
        int64_t cursor = 0;
        db.transaction([&] {
            auto r =
                db.row("SELECT last_event FROM registry_webhook_cursors WHERE endpoint = ?1", {id});
            if (r) {
                cursor = as_int((*r)[0]);
                return;
            }
            cursor = owner.events_.latest_id();
            db.query(
                "INSERT INTO registry_webhook_cursors (endpoint, last_event, updated) VALUES (?1, "
                "?2, ?3)",
                {id, cursor, now_seconds()});
        });
        return cursor;
    }

    void save_cursor(int64_t cursor) {
        owner.db_.query(
            "UPDATE registry_webhook_cursors SET last_event = ?2, updated = ?3 WHERE endpoint = ?1",
            {id, cursor, now_seconds()});
    }

    // One POST; empty on success, else what went wrong.
    std::string post(const std::string& body, const std::string& delivery) {
        CURL* curl = curl_easy_init();
        if (!curl) return "curl_easy_init failed";
        char error[CURL_ERROR_SIZE] = {};
        curl_slist* headers = nullptr;
        headers = curl_slist_append(headers, "Content-Type: application/json");
        headers = curl_slist_append(headers, ("X-Cascade-Delivery: " + delivery).c_str());
        for (const auto& [k, v] : endpoint.headers)
            headers = curl_slist_append(headers, (k + ": " + v).c_str());
        curl_easy_setopt(curl, CURLOPT_URL, endpoint.url.c_str());
        curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error);
        curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(curl, CURLOPT_POST, 1L);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.data());
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
        curl_easy_setopt(curl, CURLOPT_TIMEOUT, static_cast<long>(endpoint.timeout_seconds));
        curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, static_cast<long>(endpoint.timeout_seconds));
        curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(curl, CURLOPT_USERAGENT, "cascade-webhooks/1");
        curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard_body);
        // Abort a transfer in flight when the daemon stops.
        curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(curl, CURLOPT_XFERINFODATA, this);
        curl_easy_setopt(
            curl, CURLOPT_XFERINFOFUNCTION,
            +[](void* self, curl_off_t, curl_off_t, curl_off_t, curl_off_t) -> int {
                return static_cast<Worker*>(self)->stopping.load() ? 1 : 0;
            });
        CURLcode rc = curl_easy_perform(curl);
        long status = 0;
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
        curl_slist_free_all(headers);
        curl_easy_cleanup(curl);
        if (rc != CURLE_OK)
            return std::string(curl_easy_strerror(rc)) +
                   (error[0] ? std::string(": ") + error : "");
        if (status < 200 || status > 299) return "HTTP status " + std::to_string(status);
        return {};
    }

    void run() {
        int64_t cursor = 0;
        try {
            cursor = load_cursor();
        } catch (const std::exception& e) {
            log(std::string("cannot read its cursor, not delivering: ") + e.what());
            return;
        }
        while (!stopping) {
            std::vector<Event> batch;
            try {
                batch = owner.events_.after(cursor, owner.options_.batch);
            } catch (const std::exception& e) {
                log(std::string("reading events failed: ") + e.what());
                if (!pause(std::chrono::seconds(1))) return;
                continue;
            }
            // Registry webhooks carry the registry's own events (tag moves and
            // deletions); build and rollout events share the log and its ids
            // but are not sent: the cursor moves past them.
            const int64_t batch_last = batch.empty() ? cursor : batch.back().id;
            std::erase_if(batch, [](const Event& e) {
                return e.type != "TagMoved" && e.type != "TagDeleted";
            });
            if (batch.empty() && batch_last > cursor) {
                try {
                    save_cursor(batch_last);
                    cursor = batch_last;
                } catch (const std::exception& e) {
                    log(std::string("saving its cursor failed: ") + e.what());
                    if (!pause(std::chrono::seconds(1))) return;
                }
                continue;
            }
            if (batch.empty()) {
                // Woken by a tag move; the timeout bounds how late stop() is seen.
                if (!owner.events_.wait(cursor, std::chrono::milliseconds(500)) &&
                    owner.events_.closed() && !pause(std::chrono::milliseconds(500)))
                    return;
                continue;
            }
            nlohmann::json items = nlohmann::json::array();
            for (const auto& e : batch)
                items.push_back(to_json(e));
            const std::string body = nlohmann::json{{"events", items}}.dump();
            const int64_t first = batch.front().id, last = batch.back().id;
            const std::string delivery =
                id + "-" + std::to_string(first) + "-" + std::to_string(last);

            auto backoff = owner.options_.initial_backoff;
            std::string error;
            bool delivered = false;
            int attempt = 0;
            while (!delivered) {
                attempt++;
                error = post(body, delivery);
                delivered = error.empty();
                if (delivered || attempt >= std::max(endpoint.max_attempts, 1)) break;
                // Stopping: the batch is sent again after the restart.
                if (stopping) return;
                log("delivery of events " + std::to_string(first) + "-" + std::to_string(last) +
                    " failed (attempt " + std::to_string(attempt) + "): " + error);
                if (!pause(backoff)) return;
                backoff = std::min(backoff * 2, owner.options_.max_backoff);
            }
            if (!delivered && stopping) return;
            try {
                if (!delivered) {
                    log("giving up on events " + std::to_string(first) + "-" +
                        std::to_string(last) + " after " + std::to_string(attempt) +
                        " attempts: " + error);
                    owner.db_.transaction([&] {
                        owner.db_.query(
                            "INSERT INTO registry_webhook_failures (endpoint, first_event, "
                            "last_event, attempts, error, time) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                            {id, first, last, static_cast<int64_t>(attempt), error, now_seconds()});
                        save_cursor(last);
                    });
                } else {
                    save_cursor(last);
                }
                cursor = last;
            } catch (const std::exception& e) {
                log(std::string("cannot save its cursor: ") + e.what());
                if (!pause(std::chrono::seconds(1))) return;
            }
        }
    }
};

WebhookDispatcher::WebhookDispatcher(Database& db, EventLog& events,
                                     std::vector<WebhookEndpoint> endpoints, WebhookOptions options)
    : db_(db), events_(events), options_(options) {
    db_.migrate("registry-webhooks-0001", kSchema);
    for (auto& e : endpoints) {
        if (e.url.rfind("http://", 0) != 0 && e.url.rfind("https://", 0) != 0)
            throw Error("webhook " + (e.name.empty() ? e.url : e.name) + ": url \"" + e.url +
                        "\" must start with http:// or https://");
        workers_.push_back(std::make_unique<Worker>(*this, std::move(e)));
    }
}

WebhookDispatcher::~WebhookDispatcher() {
    stop();
}

void WebhookDispatcher::start() {
    for (auto& w : workers_)
        if (!w->thread.joinable()) w->thread = std::thread([w = w.get()] { w->run(); });
}

void WebhookDispatcher::stop() {
    for (auto& w : workers_) {
        std::lock_guard lock(w->mu);
        w->stopping = true;
        w->cv.notify_all();
    }
    for (auto& w : workers_)
        if (w->thread.joinable()) w->thread.join();
}

int64_t WebhookDispatcher::cursor(const std::string& endpoint) const {
    auto r =
        db_.row("SELECT last_event FROM registry_webhook_cursors WHERE endpoint = ?1", {endpoint});
    return r ? as_int((*r)[0]) : 0;
}

std::vector<WebhookFailure> WebhookDispatcher::failures() const {
    std::vector<WebhookFailure> out;
    db_.query(
        "SELECT endpoint, first_event, last_event, attempts, error, time FROM "
        "registry_webhook_failures ORDER BY id",
        {}, [&](const Database::Row& r) {
            WebhookFailure f;
            f.endpoint = as_text(r[0]);
            f.first_event = as_int(r[1]);
            f.last_event = as_int(r[2]);
            f.attempts = static_cast<int>(as_int(r[3]));
            f.error = as_text(r[4]);
            f.time = as_int(r[5]);
            out.push_back(std::move(f));
        });
    return out;
}

void WebhookDispatcher::set_log(std::function<void(const std::string&)> log) {
    log_ = std::move(log);
}

}  // namespace cascade::registry
