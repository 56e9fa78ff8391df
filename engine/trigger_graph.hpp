// The trigger graph: which build configs and deployments a tag move reaches.
//
// Nodes are image stream tags ("repo:tag") and build configs. A config has an
// edge from each tag it builds FROM (the dockerStrategy.from override, else
// the Dockerfile's final FROM when it names a local stream) to its output
// tag; an ImageStreamTag alias has an edge from its source tag to itself (the
// alias follows the source). Deployments hang off the tag they follow.
//
// The graph is pure (no store, no files): the build controller uses it for
// the order in which queued builds run, `apply` uses it to refuse a set of
// objects that would make a cycle (a cascade that never ends), with the
// cycle spelled out.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace cascade::engine {

struct GraphBuild {
    std::string name;               // the BuildConfig's name
    std::vector<std::string> from;  // tags it builds FROM ("httpd-base:latest")
    std::string output;             // the tag it moves ("app-a:latest")
};

struct GraphAlias {
    std::string tag;     // the alias ("httpd-base:stable")
    std::string source;  // the tag it follows ("httpd-base:latest")
};

struct GraphDeployment {
    std::string name;
    std::string tag;  // the tag it follows
};

// "repo" → "repo:latest"; "repo:tag" and digest references unchanged.
std::string normalize_tag(const std::string& reference);

class TriggerGraph {
  public:
    TriggerGraph(std::vector<GraphBuild> builds, std::vector<GraphAlias> aliases = {},
                 std::vector<GraphDeployment> deployments = {});

    // Config → the configs producing a tag it builds FROM (directly, through
    // aliases). A config building FROM its own output is not its own
    // dependency (that is a cycle: see find_cycle).
    std::map<std::string, std::set<std::string>> dependencies() const;

    // The configs a move of `tag` rebuilds, directly or through the tags
    // their builds move, each once, upstream before downstream. Ties (and
    // configs in a cycle, which come last) are ordered by name.
    std::vector<std::string> affected_builds(const std::string& tag) const;
    // Every tag the cascade of a move of `tag` moves (itself first).
    std::vector<std::string> affected_tags(const std::string& tag) const;
    // The deployments following one of affected_tags(tag), by name.
    std::vector<std::string> affected_deployments(const std::string& tag) const;

    // A cycle as its path, first node repeated at the end: tags as
    // "repo:tag", configs as "(BuildConfig name)". None when acyclic.
    std::optional<std::vector<std::string>> find_cycle() const;

  private:
    std::vector<GraphBuild> builds_;
    std::vector<GraphAlias> aliases_;
    std::vector<GraphDeployment> deployments_;
    // node → successors; config nodes are "(BuildConfig name)"
    std::map<std::string, std::set<std::string>> edges_;
};

// "a:latest → (BuildConfig b) → b:latest → …"
std::string spell_cycle(const std::vector<std::string>& cycle);

}  // namespace cascade::engine
