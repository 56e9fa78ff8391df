// Kubernetes label selectors (`kubectl get -l`, `?labelSelector=`), parsed
// on the CLI (to report a typo before asking the daemon) and on the daemon
// (to filter lists and `delete -l`):
//
//   k=v  k==v  k!=v  k  !k  k in (a,b)  k notin (a,b)   — a comma is AND.
//
// `!=` and `notin` also match objects without the label (as Kubernetes'). An
// empty selector matches everything. A parse error names the position.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace cascade::cli {

struct LabelRequirement {
    enum class Op { Equals, NotEquals, In, NotIn, Exists, DoesNotExist };
    std::string key;
    Op op = Op::Exists;
    std::vector<std::string> values;  // one for Equals/NotEquals, a set for In/NotIn
};

class LabelSelector {
  public:
    LabelSelector() = default;
    // Throws cascade::Error: `invalid label selector "a=b,,c": at position 5
    // (","): expected a label key`.
    static LabelSelector parse(std::string_view text);

    bool empty() const { return requirements_.empty(); }
    const std::vector<LabelRequirement>& requirements() const { return requirements_; }

    bool matches(const std::map<std::string, std::string>& labels) const;
    // `labels`: an object's metadata.labels (null or absent: no labels).
    bool matches_labels(const nlohmann::json& labels) const;
    // An object's metadata.labels.
    bool matches_object(const nlohmann::json& object) const;

    // The canonical text (`app=a,tier in (x,y)`).
    std::string str() const;

  private:
    std::vector<LabelRequirement> requirements_;
};

}  // namespace cascade::cli
