// Label selectors: parsing (every operator, spaces, errors with positions)
// and matching (Kubernetes semantics: != and notin match a missing label).
#include "cli/selector.hpp"

#include <gtest/gtest.h>

#include "oci/error.hpp"

using cascade::cli::LabelRequirement;
using cascade::cli::LabelSelector;
using Op = LabelRequirement::Op;

namespace {

std::string parse_error(const std::string& text) {
    try {
        LabelSelector::parse(text);
    } catch (const cascade::Error& e) {
        return e.what();
    }
    return "(no error)";
}

const std::map<std::string, std::string> kAppA = {{"app", "app-a"}, {"tier", "web"}};

}  // namespace

TEST(LabelSelector, ParsesEveryOperator) {
    auto s = LabelSelector::parse("a=1,b==2,c!=3,d,!e,f in (x, y),g notin (z)");
    const auto& r = s.requirements();
    ASSERT_EQ(r.size(), 7u);
    EXPECT_EQ(r[0].key, "a");
    EXPECT_EQ(r[0].op, Op::Equals);
    EXPECT_EQ(r[0].values, std::vector<std::string>{"1"});
    EXPECT_EQ(r[1].op, Op::Equals);
    EXPECT_EQ(r[1].values, std::vector<std::string>{"2"});
    EXPECT_EQ(r[2].op, Op::NotEquals);
    EXPECT_EQ(r[3].op, Op::Exists);
    EXPECT_EQ(r[3].key, "d");
    EXPECT_EQ(r[4].op, Op::DoesNotExist);
    EXPECT_EQ(r[4].key, "e");
    EXPECT_EQ(r[5].op, Op::In);
    EXPECT_EQ(r[5].values, (std::vector<std::string>{"x", "y"}));
    EXPECT_EQ(r[6].op, Op::NotIn);
    EXPECT_EQ(r[6].values, std::vector<std::string>{"z"});
    EXPECT_EQ(s.str(), "a=1,b=2,c!=3,d,!e,f in (x,y),g notin (z)");
}

TEST(LabelSelector, AcceptsSpacesPrefixedKeysAndEmptyValues) {
    auto s = LabelSelector::parse("  app.kubernetes.io/name = web , x= ,  !gone ");
    ASSERT_EQ(s.requirements().size(), 3u);
    EXPECT_EQ(s.requirements()[0].key, "app.kubernetes.io/name");
    EXPECT_EQ(s.requirements()[0].values[0], "web");
    EXPECT_EQ(s.requirements()[1].values[0], "");
    EXPECT_TRUE(LabelSelector::parse("").empty());
    EXPECT_TRUE(LabelSelector::parse("   ").empty());
}

TEST(LabelSelector, MatchesLikeKubernetes) {
    EXPECT_TRUE(LabelSelector::parse("app=app-a").matches(kAppA));
    EXPECT_FALSE(LabelSelector::parse("app=app-b").matches(kAppA));
    EXPECT_TRUE(LabelSelector::parse("app=app-a,tier=web").matches(kAppA));
    EXPECT_FALSE(LabelSelector::parse("app=app-a,tier=db").matches(kAppA));
    EXPECT_TRUE(LabelSelector::parse("app!=app-b").matches(kAppA));
    EXPECT_TRUE(LabelSelector::parse("missing!=x").matches(kAppA));
    EXPECT_TRUE(LabelSelector::parse("tier").matches(kAppA));
    EXPECT_FALSE(LabelSelector::parse("!tier").matches(kAppA));
    EXPECT_TRUE(LabelSelector::parse("!missing").matches(kAppA));
    EXPECT_TRUE(LabelSelector::parse("app in (app-a, app-b)").matches(kAppA));
    EXPECT_FALSE(LabelSelector::parse("app in (app-b,app-c)").matches(kAppA));
    EXPECT_FALSE(LabelSelector::parse("missing in (x)").matches(kAppA));
    EXPECT_TRUE(LabelSelector::parse("app notin (app-b)").matches(kAppA));
    EXPECT_FALSE(LabelSelector::parse("app notin (app-a)").matches(kAppA));
    EXPECT_TRUE(LabelSelector::parse("missing notin (x)").matches(kAppA));
    EXPECT_TRUE(LabelSelector().matches(kAppA));
    EXPECT_TRUE(LabelSelector().matches({}));
}

TEST(LabelSelector, MatchesObjectsByMetadataLabels) {
    nlohmann::json obj = {{"kind", "Route"},
                          {"metadata", {{"name", "r"}, {"labels", {{"app", "app-a"}}}}}};
    EXPECT_TRUE(LabelSelector::parse("app=app-a").matches_object(obj));
    EXPECT_FALSE(LabelSelector::parse("app=app-b").matches_object(obj));
    nlohmann::json unlabelled = {{"kind", "Route"}, {"metadata", {{"name", "r"}}}};
    EXPECT_FALSE(LabelSelector::parse("app").matches_object(unlabelled));
    EXPECT_TRUE(LabelSelector::parse("!app").matches_object(unlabelled));
    EXPECT_TRUE(LabelSelector::parse("app!=x").matches_object(nlohmann::json()));
}

TEST(LabelSelector, ErrorsNameThePosition) {
    auto e = parse_error("app=a,,b");
    EXPECT_NE(e.find("at position 7"), std::string::npos) << e;
    EXPECT_NE(e.find("expected a label key"), std::string::npos) << e;

    e = parse_error("app=a,");
    EXPECT_NE(e.find("at position 7 (end of text)"), std::string::npos) << e;

    e = parse_error("app in a,b");
    EXPECT_NE(e.find("at position 8"), std::string::npos) << e;
    EXPECT_NE(e.find("\"(\""), std::string::npos) << e;

    e = parse_error("app in (a,b");
    EXPECT_NE(e.find("at position 12 (end of text)"), std::string::npos) << e;

    e = parse_error("app in ()");
    EXPECT_NE(e.find("at least one value"), std::string::npos) << e;

    e = parse_error("app ~ x");
    EXPECT_NE(e.find("at position 5"), std::string::npos) << e;
    EXPECT_NE(e.find("expected an operator"), std::string::npos) << e;

    e = parse_error("app=a b");
    EXPECT_NE(e.find("at position 7"), std::string::npos) << e;

    e = parse_error("-app=x");
    EXPECT_NE(e.find("not a valid label key"), std::string::npos) << e;

    e = parse_error("app=-x");
    EXPECT_NE(e.find("at position 5"), std::string::npos) << e;
    EXPECT_NE(e.find("not a valid label value"), std::string::npos) << e;

    e = parse_error("app=" + std::string(64, 'x'));
    EXPECT_NE(e.find("not a valid label value"), std::string::npos) << e;

    e = parse_error("=x");
    EXPECT_NE(e.find("at position 1"), std::string::npos) << e;
    EXPECT_NE(e.find("invalid label selector \"=x\""), std::string::npos) << e;
}
