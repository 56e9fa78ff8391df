// The trigger graph: dependency order, the cascade of a move, cycles spelled
// out, and impact's walk over bases (synthetic records).
#include "engine/trigger_graph.hpp"

#include <gtest/gtest.h>

#include <algorithm>

#include "engine/impact.hpp"

namespace cascade::engine {
namespace {

size_t position(const std::vector<std::string>& v, const std::string& x) {
    return static_cast<size_t>(std::find(v.begin(), v.end(), x) - v.begin());
}

// os → base → a, b; c FROM a; d FROM b; e FROM c (and a deployment of each app).
TriggerGraph diamond() {
    return TriggerGraph({{"base", {"os:latest"}, "httpd-base:latest"},
                         {"a", {"httpd-base:latest"}, "app-a:latest"},
                         {"b", {"httpd-base"}, "app-b:latest"},  // no tag: latest
                         {"c", {"app-a:latest"}, "app-c:latest"},
                         {"d", {"app-b:latest"}, "app-d:latest"},
                         {"e", {"app-c:latest"}, "app-e:latest"},
                         {"other", {"unrelated:1"}, "other:latest"}},
                        {}, {{"web-a", "app-a:latest"}, {"web-e", "app-e"}, {"web-x", "x:latest"}});
}

TEST(TriggerGraph, AMoveRebuildsEveryDependentOnceUpstreamFirst) {
    auto order = diamond().affected_builds("os:latest");
    ASSERT_EQ(order.size(), 6u) << ::testing::PrintToString(order);
    for (const char* c : {"base", "a", "b", "c", "d", "e"})
        EXPECT_EQ(std::count(order.begin(), order.end(), c), 1) << c;
    EXPECT_EQ(order.front(), "base");
    EXPECT_LT(position(order, "a"), position(order, "c"));
    EXPECT_LT(position(order, "c"), position(order, "e"));
    EXPECT_LT(position(order, "b"), position(order, "d"));
    EXPECT_EQ(position(order, "other"), order.size()) << "not reached by os";
}

TEST(TriggerGraph, AMoveInTheMiddleReachesOnlyWhatIsBelow) {
    auto g = diamond();
    EXPECT_EQ(g.affected_builds("app-a:latest"), (std::vector<std::string>{"c", "e"}));
    EXPECT_EQ(g.affected_builds("app-e:latest"), std::vector<std::string>{});
    EXPECT_EQ(g.affected_builds("app-a"), (std::vector<std::string>{"c", "e"}));
    auto tags = g.affected_tags("httpd-base:latest");
    EXPECT_EQ(tags.front(), "httpd-base:latest");
    EXPECT_EQ(tags.size(), 6u) << ::testing::PrintToString(tags);
    EXPECT_EQ(g.affected_deployments("os:latest"), (std::vector<std::string>{"web-a", "web-e"}));
    EXPECT_EQ(g.affected_deployments("app-c:latest"), std::vector<std::string>{"web-e"});
}

TEST(TriggerGraph, DependenciesAreTheProducersOfWhatAConfigBuildsFrom) {
    auto deps = diamond().dependencies();
    EXPECT_EQ(deps["a"], std::set<std::string>{"base"});
    EXPECT_EQ(deps["b"], std::set<std::string>{"base"});
    EXPECT_EQ(deps["c"], std::set<std::string>{"a"});
    EXPECT_EQ(deps.count("base"), 0u) << "os is not built here";
    EXPECT_EQ(deps.count("other"), 0u);
}

TEST(TriggerGraph, AliasesCarryAMoveAndADependency) {
    // httpd-base:stable follows httpd-base:latest; app builds FROM the alias.
    TriggerGraph g({{"base", {"os:latest"}, "httpd-base:latest"},
                    {"app", {"httpd-base:stable"}, "app:latest"}},
                   {{"httpd-base:stable", "httpd-base:latest"}});
    EXPECT_EQ(g.affected_builds("os:latest"), (std::vector<std::string>{"base", "app"}));
    EXPECT_EQ(g.dependencies()["app"], std::set<std::string>{"base"});
    EXPECT_FALSE(g.find_cycle());
}

TEST(TriggerGraph, NoCycleInAnAcyclicGraph) {
    EXPECT_FALSE(diamond().find_cycle());
    EXPECT_FALSE(TriggerGraph({}).find_cycle());
}

TEST(TriggerGraph, ACycleIsSpelledOut) {
    TriggerGraph g({{"httpd-base", {"app-a:latest"}, "httpd-base:latest"},
                    {"app-a", {"httpd-base:latest"}, "app-a:latest"}});
    auto cycle = g.find_cycle();
    ASSERT_TRUE(cycle);
    EXPECT_EQ(spell_cycle(*cycle),
              "app-a:latest → (BuildConfig httpd-base) → httpd-base:latest → "
              "(BuildConfig app-a) → app-a:latest");
    // The configs in the cycle still come out of affected_builds, once each.
    auto order = g.affected_builds("app-a:latest");
    EXPECT_EQ(order.size(), 2u);
}

TEST(TriggerGraph, AConfigBuildingFromItsOwnOutputIsACycle) {
    TriggerGraph g({{"app", {"app:latest"}, "app:latest"}});
    auto cycle = g.find_cycle();
    ASSERT_TRUE(cycle);
    EXPECT_EQ(spell_cycle(*cycle), "app:latest → (BuildConfig app) → app:latest");
    EXPECT_TRUE(g.dependencies()["app"].empty()) << "not its own dependency";
}

TEST(TriggerGraph, ACycleThroughAnAliasIsFound) {
    TriggerGraph g({{"app", {"base:latest"}, "app:latest"}}, {{"base:latest", "app:latest"}});
    auto cycle = g.find_cycle();
    ASSERT_TRUE(cycle);
    EXPECT_EQ(spell_cycle(*cycle), "app:latest → base:latest → (BuildConfig app) → app:latest");
}

TEST(TriggerGraph, NormalizesTags) {
    EXPECT_EQ(normalize_tag("app"), "app:latest");
    EXPECT_EQ(normalize_tag("app:1"), "app:1");
    EXPECT_EQ(normalize_tag("localhost:5000/app"), "localhost:5000/app:latest");
    EXPECT_EQ(normalize_tag("app@sha256:ab"), "app@sha256:ab");
}

// ---- impact ----

const std::string kBase1 = "sha256:b1", kBase2 = "sha256:b2", kBase3 = "sha256:b3";

// httpd-base generations 1..3; app-a built on gen 3 (current), app-b on gen 2;
// app-c built on app-a; replicas of each, one of app-a still on an old app-a
// digest (built on gen 1).
ImpactInput synthetic() {
    ImpactInput in;
    in.target = "httpd-base:latest";
    in.target_repository = "httpd-base";
    in.current_digest = kBase3;
    in.generations = {{kBase1, 1}, {kBase2, 2}, {kBase3, 3}};
    std::map<std::string, ImpactBase> bases = {
        {"sha256:a3", {"httpd-base:latest", kBase3}},
        {"sha256:a1", {"httpd-base:latest", kBase1}},
        {"sha256:bb", {"localhost:5000/httpd-base:latest", kBase2}},
        {"sha256:c3", {"app-a:latest", "sha256:a3"}},
        {kBase3, {"os:latest", "sha256:os"}},
        {"sha256:z", {"other:latest", "sha256:o"}},
    };
    in.base_of = [bases](const std::string& d) -> std::optional<ImpactBase> {
        auto it = bases.find(d);
        if (it == bases.end()) return std::nullopt;
        return it->second;
    };
    in.images = {{"app-b:latest", "sha256:bb"},
                 {"app-a:latest", "sha256:a3"},
                 {"app-c:latest", "sha256:c3"},
                 {"httpd-base:latest", kBase3},
                 {"other:latest", "sha256:z"}};
    in.replicas = {{"app-a", 1, "sha256:a1", "ready", "app-a-1-x"},
                   {"app-a", 0, "sha256:a3", "ready", "app-a-2-y"},
                   {"app-b", 0, "sha256:bb", "ready", "app-b-1-z"},
                   {"base", 0, kBase3, "ready", "base-1-w"},
                   {"other", 0, "sha256:z", "ready", "other-1-v"}};
    return in;
}

TEST(Impact, ListsImagesAndReplicasBuiltOnTheImageWithTheirGeneration) {
    auto report = compute_impact(synthetic());
    std::map<std::string, ImpactRow> rows;
    for (const auto& r : report.rows)
        rows[r.name] = r;
    ASSERT_EQ(report.rows.size(), 7u) << report.to_json().dump(2);
    EXPECT_EQ(rows["app-a:latest"].status(), "current");
    EXPECT_EQ(rows["app-b:latest"].status(), "outdated (gen 2)");
    EXPECT_EQ(rows["app-b:latest"].base_digest, kBase2);
    EXPECT_EQ(rows["app-c:latest"].status(), "current") << "through app-a";
    EXPECT_EQ(rows["app-c:latest"].via, std::vector<std::string>{"sha256:a3"});
    EXPECT_EQ(rows.count("httpd-base:latest"), 0u) << "the image itself is not built on itself";
    EXPECT_EQ(rows.count("other:latest"), 0u);
    EXPECT_EQ(rows["app-a/1"].status(), "outdated (gen 1)");
    EXPECT_EQ(rows["app-a/1"].container, "app-a-1-x");
    EXPECT_EQ(rows["app-a/0"].status(), "current");
    EXPECT_EQ(rows["base/0"].status(), "current") << "a replica of the image itself";
    EXPECT_EQ(report.replicas, 4);
    EXPECT_EQ(report.replicas_current, 2);
    EXPECT_EQ(report.summary(), "2 of 4 replicas on the current httpd-base (sha256:b3)");
    EXPECT_EQ(report.current_generation, 3);
    // Images first (by name), then replicas (by deployment, index).
    EXPECT_EQ(report.rows.front().name, "app-a:latest");
    EXPECT_EQ(report.rows.back().name, "base/0");
}

TEST(Impact, AnOlderDigestAsTheTargetMakesTheRestOutdated) {
    auto in = synthetic();
    in.target = "httpd-base@" + kBase1;
    in.current_digest = kBase1;
    auto report = compute_impact(in);
    int current = 0;
    for (const auto& r : report.rows)
        if (r.current) {
            current++;
            EXPECT_EQ(r.name, "app-a/1");
        }
    EXPECT_EQ(current, 1);
    EXPECT_EQ(report.summary(), "1 of 4 replicas on the current httpd-base (sha256:b1)");
}

TEST(Impact, ABaseFromThisStreamOutsideTheHistoryIsOutdatedWithoutGeneration) {
    auto in = synthetic();
    in.generations.erase(kBase1);  // pruned from the history
    auto report = compute_impact(in);
    for (const auto& r : report.rows)
        if (r.name == "app-a/1") {
            EXPECT_EQ(r.status(), "outdated");
        }
}

TEST(Impact, RepositoryOfAReference) {
    EXPECT_EQ(repository_of("httpd-base:latest"), "httpd-base");
    EXPECT_EQ(repository_of("localhost:5000/httpd-base:latest"), "httpd-base");
    EXPECT_EQ(repository_of("127.0.0.1:5000/team/app@sha256:ab"), "team/app");
    EXPECT_EQ(repository_of("team/app"), "team/app");
}

}  // namespace
}  // namespace cascade::engine
