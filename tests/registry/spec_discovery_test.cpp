// Distribution Spec: content discovery — tags list and _catalog with n/last
// pagination and Link headers.
#include <gtest/gtest.h>

#include "spec_support.hpp"

namespace cascade::registry {
namespace {

using nlohmann::json;
using testing::is_spec_error;
using testing::make_image;
using testing::SpecTest;

class SpecDiscovery : public SpecTest {
  protected:
    void SetUp() override {
        SpecTest::SetUp();
        // Tags in a non-sorted push order; a tag whose upper case sorts before
        // lower case ("ASCIIbetical", as the spec allows).
        for (auto tag : {"v3", "v1", "B", "v2", "a"}) {
            auto r = push_image("team/app", make_image(nullptr, tag), tag);
            ASSERT_EQ(r->status, 201) << r->body;
        }
        for (auto repo : {"zeta", "alpha", "team/app2"})
            push_image(repo, make_image(nullptr, repo), "latest");
    }
    json tags(const std::string& query, std::string* link = nullptr) {
        auto r = http->Get("/v2/team/app/tags/list" + query);
        EXPECT_TRUE(r);
        if (!r) return nullptr;
        EXPECT_EQ(r->status, 200) << query << ": " << r->body;
        EXPECT_EQ(r->get_header_value("Content-Type"), "application/json");
        if (link) *link = r->get_header_value("Link");
        auto j = json::parse(r->body);
        EXPECT_EQ(j["name"], "team/app");
        return j["tags"];
    }
    json catalog(const std::string& query, std::string* link = nullptr) {
        auto r = http->Get("/v2/_catalog" + query);
        EXPECT_TRUE(r);
        if (!r) return nullptr;
        EXPECT_EQ(r->status, 200) << query << ": " << r->body;
        if (link) *link = r->get_header_value("Link");
        return json::parse(r->body)["repositories"];
    }
};

TEST_F(SpecDiscovery, TagsListInOrder) {
    std::string link;
    EXPECT_EQ(tags("", &link), json({"B", "a", "v1", "v2", "v3"}));
    EXPECT_EQ(link, "");
}

TEST_F(SpecDiscovery, TagsPaginate) {
    std::string link;
    EXPECT_EQ(tags("?n=2", &link), json({"B", "a"}));
    EXPECT_EQ(link, "</v2/team/app/tags/list?n=2&last=a>; rel=\"next\"");
    EXPECT_EQ(tags("?n=2&last=a", &link), json({"v1", "v2"}));
    EXPECT_EQ(link, "</v2/team/app/tags/list?n=2&last=v2>; rel=\"next\"");
    EXPECT_EQ(tags("?n=2&last=v2", &link), json({"v3"}));
    EXPECT_EQ(link, "") << "no Link on the last page";
    // Following the Link headers visits every tag once.
    std::vector<std::string> all;
    std::string next = "/v2/team/app/tags/list?n=1";
    while (!next.empty()) {
        auto r = http->Get(next);
        ASSERT_EQ(r->status, 200);
        auto page = json::parse(r->body);
        for (const auto& t : page["tags"])
            all.push_back(t);
        std::string l = r->get_header_value("Link");
        next = l.empty() ? "" : l.substr(1, l.find('>') - 1);
        ASSERT_LE(all.size(), 5u);
    }
    EXPECT_EQ(all, (std::vector<std::string>{"B", "a", "v1", "v2", "v3"}));
}

TEST_F(SpecDiscovery, TagsEdgeCases) {
    std::string link;
    EXPECT_EQ(tags("?n=0", &link), json::array()) << "n=0: an empty list";
    EXPECT_EQ(link, "") << "n=0: no Link";
    EXPECT_EQ(tags("?n=5", &link), json({"B", "a", "v1", "v2", "v3"}));
    EXPECT_EQ(link, "") << "exactly all: nothing follows";
    EXPECT_EQ(tags("?n=100", &link).size(), 5u);
    EXPECT_EQ(tags("?last=v1", &link), json({"v2", "v3"})) << "last without n";
    EXPECT_EQ(tags("?last=zzz", &link), json::array()) << "last past the end";
    EXPECT_EQ(link, "");
    EXPECT_EQ(tags("?n=3&last=v3"), json::array());
    EXPECT_EQ(tags("?last=b"), json({"v1", "v2", "v3"})) << "last need not be a tag";
    EXPECT_TRUE(is_spec_error(http->Get("/v2/team/app/tags/list?n=-1"), 400, "UNSUPPORTED"));
    EXPECT_TRUE(is_spec_error(http->Get("/v2/team/app/tags/list?n=two"), 400, "UNSUPPORTED"));
}

TEST_F(SpecDiscovery, TagsOfUnknownOrTaglessRepositories) {
    EXPECT_TRUE(is_spec_error(http->Get("/v2/nobody/tags/list"), 404, "NAME_UNKNOWN"));
    push_blob("blobs/only", "x");
    auto r = http->Get("/v2/blobs/only/tags/list");
    ASSERT_EQ(r->status, 200);
    EXPECT_EQ(json::parse(r->body)["tags"], json::array());
}

TEST_F(SpecDiscovery, CatalogPaginates) {
    std::string link;
    EXPECT_EQ(catalog("", &link), json({"alpha", "team/app", "team/app2", "zeta"}));
    EXPECT_EQ(link, "");
    EXPECT_EQ(catalog("?n=2", &link), json({"alpha", "team/app"}));
    EXPECT_EQ(link, "</v2/_catalog?n=2&last=team/app>; rel=\"next\"");
    EXPECT_EQ(catalog("?n=2&last=team/app", &link), json({"team/app2", "zeta"}));
    EXPECT_EQ(link, "");
    EXPECT_EQ(catalog("?n=0", &link), json::array());
    EXPECT_EQ(link, "");
    EXPECT_EQ(catalog("?last=zeta", &link), json::array());
    EXPECT_EQ(catalog("?last=zzz"), json::array());
    EXPECT_EQ(catalog("?last=b"), json({"team/app", "team/app2", "zeta"}));
    EXPECT_TRUE(is_spec_error(http->Get("/v2/_catalog?n=x"), 400, "UNSUPPORTED"));
}

}  // namespace
}  // namespace cascade::registry
