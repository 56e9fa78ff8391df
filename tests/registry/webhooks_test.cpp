// Webhooks against a real HTTP receiver on loopback (httplib): envelopes in
// order, retries with backoff after failures, a dead endpoint that delays
// nobody else, give-up after maxAttempts, and a restart that loses nothing.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <set>

#include "registry/events.hpp"
#include "registry/webhooks.hpp"
#include "registry_helpers.hpp"

using namespace cascade;
using namespace cascade::registry;
using namespace cascade::registry::testing;
using namespace std::chrono_literals;

namespace {

const std::string kOciManifest(oci::media::kImageManifest);

// A webhook receiver that answers 500 to the first `fail_first` requests.
class Receiver {
  public:
    explicit Receiver(int fail_first = 0) : port_(test::free_port()), fail_left_(fail_first) {
        server_.Post("/hook", [this](const httplib::Request& req, httplib::Response& res) {
            std::lock_guard lock(mu_);
            requests_++;
            headers_.push_back(req.get_header_value("Authorization"));
            if (fail_left_ > 0) {
                fail_left_--;
                res.status = 500;
                return;
            }
            auto body = nlohmann::json::parse(req.body);
            for (const auto& e : body["events"])
                events_.push_back(e);
            res.status = 204;
        });
        if (!server_.bind_to_port("127.0.0.1", port_)) throw Error("cannot bind the receiver");
        thread_ = std::thread([this] { server_.listen_after_bind(); });
        test::eventually([this] { return server_.is_running(); }, 10s);
    }
    ~Receiver() {
        server_.stop();
        thread_.join();
    }
    std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/hook"; }
    std::vector<nlohmann::json> events() {
        std::lock_guard lock(mu_);
        return events_;
    }
    int requests() {
        std::lock_guard lock(mu_);
        return requests_;
    }
    std::vector<std::string> auth_headers() {
        std::lock_guard lock(mu_);
        return headers_;
    }

  private:
    uint16_t port_;
    httplib::Server server_;
    std::thread thread_;
    std::mutex mu_;
    int fail_left_;
    int requests_ = 0;
    std::vector<nlohmann::json> events_;
    std::vector<std::string> headers_;
};

class WebhooksTest : public ::testing::Test {
  protected:
    fs::TempDir tmp{{}, "cascade-webhooks-"};
    std::unique_ptr<StoreOnDisk> s = std::make_unique<StoreOnDisk>(tmp.path());
    std::unique_ptr<EventLog> log = std::make_unique<EventLog>(s->store);
    WebhookOptions fast{std::chrono::milliseconds(20), std::chrono::milliseconds(200), 20};

    oci::Digest push(const std::string& repo, const std::string& tag, const std::string& salt) {
        auto img = make_image(&s->blobs, salt);
        return s->store.put_manifest(repo, img.manifest, kOciManifest, tag);
    }
    static std::vector<std::string> tags_of(const std::vector<nlohmann::json>& events) {
        std::vector<std::string> out;
        for (const auto& e : events)
            out.push_back(e["repository"].get<std::string>() + ":" + e["tag"].get<std::string>());
        return out;
    }
};

TEST_F(WebhooksTest, DeliversEnvelopesInOrderWithTheConfiguredHeaders) {
    Receiver receiver;
    WebhookEndpoint ep{"ci", receiver.url(), {{"Authorization", "Bearer s3cret"}}, 5, 3};
    WebhookDispatcher dispatcher(s->db, *log, {ep}, fast);
    dispatcher.start();
    auto d1 = push("app", "v1", "a");
    push("app", "v2", "b");
    push("lib", "latest", "c");
    ASSERT_TRUE(test::eventually([&] { return receiver.events().size() == 3; }, 20s));
    auto events = receiver.events();
    EXPECT_EQ(tags_of(events), (std::vector<std::string>{"app:v1", "app:v2", "lib:latest"}));
    EXPECT_EQ(events[0]["digest"], d1.str());
    EXPECT_EQ(events[0]["type"], "TagMoved");
    EXPECT_EQ(events[0]["cause"], "push");
    EXPECT_LT(events[0]["id"].get<int64_t>(), events[1]["id"].get<int64_t>());
    EXPECT_EQ(receiver.auth_headers().at(0), "Bearer s3cret");
    EXPECT_TRUE(test::eventually(
        [&] { return dispatcher.cursor("ci") == events[2]["id"].get<int64_t>(); }, 10s));
}

TEST_F(WebhooksTest, RetriesAfterFailuresUntilTheEndpointAccepts) {
    Receiver receiver(3);  // the first three deliveries fail
    WebhookDispatcher dispatcher(s->db, *log, {{"flaky", receiver.url(), {}, 5, 10}}, fast);
    dispatcher.start();
    push("app", "v1", "a");
    ASSERT_TRUE(test::eventually([&] { return receiver.events().size() == 1; }, 20s));
    EXPECT_EQ(receiver.requests(), 4);
    EXPECT_TRUE(dispatcher.failures().empty());
}

TEST_F(WebhooksTest, ADeadEndpointDelaysNoOneAndIsGivenUpAfterMaxAttempts) {
    Receiver alive;
    uint16_t dead_port = test::free_port();  // nothing listens there
    WebhookDispatcher dispatcher(
        s->db, *log,
        {{"dead", "http://127.0.0.1:" + std::to_string(dead_port) + "/hook", {}, 1, 3},
         {"alive", alive.url(), {}, 5, 3}},
        fast);
    dispatcher.start();
    push("app", "v1", "a");
    ASSERT_TRUE(test::eventually([&] { return alive.events().size() == 1; }, 20s));
    ASSERT_TRUE(test::eventually([&] { return dispatcher.failures().size() == 1; }, 20s));
    auto f = dispatcher.failures().at(0);
    EXPECT_EQ(f.endpoint, "dead");
    EXPECT_EQ(f.attempts, 3);
    EXPECT_NE(f.error.find("onnect"), std::string::npos) << f.error;
    EXPECT_EQ(dispatcher.cursor("dead"), log->latest_id()) << "given up: it moves on";
}

TEST_F(WebhooksTest, ARestartLosesNothing) {
    // Events committed while no dispatcher runs (daemon down, or killed
    // before it delivered) are sent by the next one, from its durable cursor.
    {
        Receiver receiver;
        WebhookDispatcher first(s->db, *log, {{"ci", receiver.url(), {}, 5, 3}}, fast);
        first.start();
        push("app", "v1", "a");
        ASSERT_TRUE(test::eventually([&] { return receiver.events().size() == 1; }, 20s));
        ASSERT_TRUE(test::eventually([&] { return first.cursor("ci") == log->latest_id(); }, 10s));
    }
    push("app", "v2", "b");
    push("app", "v3", "c");
    // The receiver is down too for a while: deliveries fail, then it returns.
    log.reset();
    s.reset();
    s = std::make_unique<StoreOnDisk>(tmp.path());
    log = std::make_unique<EventLog>(s->store);
    Receiver receiver(2);
    WebhookDispatcher second(s->db, *log, {{"ci", receiver.url(), {}, 5, 10}}, fast);
    second.start();
    ASSERT_TRUE(test::eventually([&] { return receiver.events().size() == 2; }, 20s));
    EXPECT_EQ(tags_of(receiver.events()), (std::vector<std::string>{"app:v2", "app:v3"}));
    push("app", "v4", "d");
    ASSERT_TRUE(test::eventually([&] { return receiver.events().size() == 3; }, 20s));
    std::set<int64_t> ids;
    for (const auto& e : receiver.events())
        ids.insert(e["id"].get<int64_t>());
    EXPECT_EQ(ids.size(), 3u) << "no duplicates after a clean stop";
}

TEST_F(WebhooksTest, ANewEndpointStartsAtTheNewestEvent) {
    push("app", "old", "a");
    Receiver receiver;
    WebhookDispatcher dispatcher(s->db, *log, {{"new", receiver.url(), {}, 5, 3}}, fast);
    dispatcher.start();
    ASSERT_TRUE(
        test::eventually([&] { return dispatcher.cursor("new") == log->latest_id(); }, 10s));
    push("app", "fresh", "b");
    ASSERT_TRUE(test::eventually([&] { return receiver.events().size() == 1; }, 20s));
    EXPECT_EQ(tags_of(receiver.events()), std::vector<std::string>{"app:fresh"});
}

TEST_F(WebhooksTest, RejectsAURLThatIsNotHttp) {
    EXPECT_THROW(WebhookDispatcher(s->db, *log, {{"x", "ftp://example/", {}, 5, 3}}), Error);
}

}  // namespace
