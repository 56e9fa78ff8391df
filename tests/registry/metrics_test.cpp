// The Prometheus text format of registry/metrics.hpp.
#include "registry/metrics.hpp"

#include <gtest/gtest.h>

#include <sstream>

using namespace cascade;

namespace {

bool has(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

TEST(Metrics, TextFormat) {
    registry::Metrics m;
    m.build_finished("app-a", "complete", 3.5);
    m.build_finished("app-a", "complete", 0.5);
    m.build_finished("app-a", "failed", 40);
    m.rollout_finished("web", "complete");
    m.registry_request("PUT", 201, 100, 0);
    m.registry_request("GET", 200, 0, 2048);
    m.registry_request("GET", 200, 0, 48);
    std::string text = m.render({{{"web", "ready"}, 2}});
    EXPECT_TRUE(has(text, "# HELP cascade_builds_total "));
    EXPECT_TRUE(has(text, "# TYPE cascade_builds_total counter\n"));
    EXPECT_TRUE(has(text, "cascade_builds_total{config=\"app-a\",result=\"complete\"} 2\n"));
    EXPECT_TRUE(has(text, "cascade_builds_total{config=\"app-a\",result=\"failed\"} 1\n"));
    EXPECT_TRUE(has(text, "# TYPE cascade_build_duration_seconds histogram\n"));
    EXPECT_TRUE(has(text, "cascade_build_duration_seconds_bucket{config=\"app-a\",le=\"1\"} 1\n"));
    EXPECT_TRUE(has(text, "cascade_build_duration_seconds_bucket{config=\"app-a\",le=\"5\"} 2\n"));
    EXPECT_TRUE(
        has(text, "cascade_build_duration_seconds_bucket{config=\"app-a\",le=\"+Inf\"} 3\n"));
    EXPECT_TRUE(has(text, "cascade_build_duration_seconds_sum{config=\"app-a\"} 44\n"));
    EXPECT_TRUE(has(text, "cascade_build_duration_seconds_count{config=\"app-a\"} 3\n"));
    EXPECT_TRUE(has(text, "cascade_rollouts_total{deployment=\"web\",result=\"complete\"} 1\n"));
    EXPECT_TRUE(has(text, "# TYPE cascade_replicas gauge\n"));
    EXPECT_TRUE(has(text, "cascade_replicas{deployment=\"web\",state=\"ready\"} 2\n"));
    EXPECT_TRUE(has(text, "cascade_registry_requests_total{method=\"GET\",code=\"200\"} 2\n"));
    EXPECT_TRUE(has(text, "cascade_registry_requests_total{method=\"PUT\",code=\"201\"} 1\n"));
    EXPECT_TRUE(has(text, "cascade_registry_bytes_total{direction=\"in\"} 100\n"));
    EXPECT_TRUE(has(text, "cascade_registry_bytes_total{direction=\"out\"} 2096\n"));
    // Every line: a comment or `name{labels} value`; every family has HELP and TYPE.
    std::istringstream lines(text);
    std::string line;
    int types = 0;
    while (std::getline(lines, line)) {
        ASSERT_FALSE(line.empty());
        if (line.rfind("# TYPE ", 0) == 0) types++;
        if (line[0] == '#') continue;
        auto space = line.rfind(' ');
        ASSERT_NE(space, std::string::npos) << line;
        EXPECT_EQ(line.rfind("cascade_", 0), 0u) << line;
        EXPECT_NO_THROW((void)std::stod(line.substr(space + 1))) << line;
    }
    EXPECT_EQ(types, 6);
    EXPECT_EQ(text.back(), '\n');
}

TEST(Metrics, LabelValuesAreEscaped) {
    EXPECT_EQ(registry::escape_label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    registry::Metrics m;
    m.rollout_finished("we\"b", "failed");
    EXPECT_TRUE(has(m.render(), "deployment=\"we\\\"b\""));
}

TEST(Metrics, FamiliesReadAtScrapeTimeFollowTheCounters) {
    registry::Metrics m;
    registry::Metrics::Family routes{
        "cascade_route_connections_total", "Connections.", "counter", {}};
    routes.samples.push_back({{{"route", "app-a"}}, 12});
    routes.samples.push_back({{{"route", "b\"x"}}, 3});
    registry::Metrics::Family plain{"cascade_router_http_connections_total", "All.", "counter", {}};
    plain.samples.push_back({{}, 7});
    auto text = m.render({}, {routes, plain});
    EXPECT_TRUE(has(text,
                    "# HELP cascade_route_connections_total Connections.\n"
                    "# TYPE cascade_route_connections_total counter\n"
                    "cascade_route_connections_total{route=\"app-a\"} 12\n"
                    "cascade_route_connections_total{route=\"b\\\"x\"} 3\n"))
        << text;
    EXPECT_TRUE(has(text, "\ncascade_router_http_connections_total 7\n")) << text;
    EXPECT_LT(text.find("cascade_registry_bytes_total"),
              text.find("cascade_route_connections_total"));
}
}  // namespace
