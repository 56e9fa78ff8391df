#include "engine/trigger_graph.hpp"

#include <algorithm>
#include <deque>
#include <functional>

namespace cascade::engine {

namespace {

std::string config_node(const std::string& name) {
    return "(BuildConfig " + name + ")";
}

bool is_config_node(const std::string& node) {
    return node.rfind("(BuildConfig ", 0) == 0;
}

std::string config_of_node(const std::string& node) {
    return node.substr(13, node.size() - 14);
}

}  // namespace

std::string normalize_tag(const std::string& reference) {
    if (reference.empty() || reference.find('@') != std::string::npos) return reference;
    auto slash = reference.rfind('/');
    auto colon = reference.rfind(':');
    if (colon == std::string::npos || (slash != std::string::npos && colon < slash))
        return reference + ":latest";
    return reference;
}

TriggerGraph::TriggerGraph(std::vector<GraphBuild> builds, std::vector<GraphAlias> aliases,
                           std::vector<GraphDeployment> deployments)
    : builds_(std::move(builds)),
      aliases_(std::move(aliases)),
      deployments_(std::move(deployments)) {
    for (auto& b : builds_) {
        for (auto& f : b.from)
            f = normalize_tag(f);
        b.output = normalize_tag(b.output);
        auto node = config_node(b.name);
        edges_[node];
        for (const auto& f : b.from)
            if (!f.empty()) edges_[f].insert(node);
        if (!b.output.empty()) edges_[node].insert(b.output);
    }
    for (auto& a : aliases_) {
        a.tag = normalize_tag(a.tag);
        a.source = normalize_tag(a.source);
        if (!a.tag.empty() && !a.source.empty()) edges_[a.source].insert(a.tag);
    }
    for (auto& d : deployments_)
        d.tag = normalize_tag(d.tag);
}

std::map<std::string, std::set<std::string>> TriggerGraph::dependencies() const {
    // Predecessors of tag nodes: alias sources and producing configs.
    std::map<std::string, std::set<std::string>> preds;
    for (const auto& [from, tos] : edges_)
        for (const auto& to : tos)
            if (!is_config_node(to)) preds[to].insert(from);
    std::map<std::string, std::set<std::string>> deps;
    for (const auto& b : builds_) {
        std::set<std::string> seen;
        std::vector<std::string> stack(b.from.begin(), b.from.end());
        while (!stack.empty()) {
            auto tag = stack.back();
            stack.pop_back();
            if (tag.empty() || !seen.insert(tag).second) continue;
            auto it = preds.find(tag);
            if (it == preds.end()) continue;
            for (const auto& p : it->second) {
                if (!is_config_node(p)) {
                    stack.push_back(p);  // an alias: follow its source
                    continue;
                }
                auto name = config_of_node(p);
                if (name != b.name) deps[b.name].insert(name);
            }
        }
    }
    return deps;
}

std::vector<std::string> TriggerGraph::affected_tags(const std::string& tag) const {
    std::vector<std::string> out;
    std::set<std::string> seen;
    std::deque<std::string> todo{normalize_tag(tag)};
    while (!todo.empty()) {
        auto node = todo.front();
        todo.pop_front();
        if (!seen.insert(node).second) continue;
        if (!is_config_node(node)) out.push_back(node);
        auto it = edges_.find(node);
        if (it != edges_.end())
            for (const auto& next : it->second)
                todo.push_back(next);
    }
    return out;
}

std::vector<std::string> TriggerGraph::affected_builds(const std::string& tag) const {
    std::set<std::string> affected;
    for (const auto& t : affected_tags(tag)) {
        auto it = edges_.find(t);
        if (it == edges_.end()) continue;
        for (const auto& next : it->second)
            if (is_config_node(next)) affected.insert(config_of_node(next));
    }
    // Kahn's algorithm over the affected configs; ready ones by name.
    auto deps = dependencies();
    std::map<std::string, int> waiting;
    for (const auto& c : affected) {
        waiting[c] = 0;
        for (const auto& d : deps[c])
            if (affected.count(d)) waiting[c]++;
    }
    std::vector<std::string> order;
    std::set<std::string> ready;
    for (const auto& [c, n] : waiting)
        if (n == 0) ready.insert(c);
    while (!ready.empty()) {
        auto c = *ready.begin();
        ready.erase(ready.begin());
        order.push_back(c);
        for (auto& [other, n] : waiting)
            if (n > 0 && deps[other].count(c) && --n == 0) ready.insert(other);
    }
    // Configs in a cycle never become ready: last, by name.
    for (const auto& [c, n] : waiting)
        if (n > 0) order.push_back(c);
    return order;
}

std::vector<std::string> TriggerGraph::affected_deployments(const std::string& tag) const {
    auto tags = affected_tags(tag);
    std::set<std::string> moved(tags.begin(), tags.end());
    std::set<std::string> out;
    for (const auto& d : deployments_)
        if (moved.count(d.tag)) out.insert(d.name);
    return {out.begin(), out.end()};
}

std::optional<std::vector<std::string>> TriggerGraph::find_cycle() const {
    enum Color { White, Grey, Black };
    std::map<std::string, Color> color;
    std::vector<std::string> path;
    std::optional<std::vector<std::string>> found;
    std::function<void(const std::string&)> visit = [&](const std::string& node) {
        color[node] = Grey;
        path.push_back(node);
        auto it = edges_.find(node);
        if (it != edges_.end())
            for (const auto& next : it->second) {
                if (found) break;
                auto c = color[next];
                if (c == Grey) {
                    auto start = std::find(path.begin(), path.end(), next);
                    std::vector<std::string> cycle(start, path.end());
                    cycle.push_back(next);
                    found = std::move(cycle);
                } else if (c == White) {
                    visit(next);
                }
            }
        path.pop_back();
        color[node] = Black;
    };
    // Start from tags (sorted), so a cycle reads from a tag.
    std::vector<std::string> starts;
    for (const auto& [node, next] : edges_)
        if (!is_config_node(node)) starts.push_back(node);
    for (const auto& [node, next] : edges_)
        if (is_config_node(node)) starts.push_back(node);
    for (const auto& s : starts) {
        if (found) break;
        if (color[s] == White) visit(s);
    }
    return found;
}

std::string spell_cycle(const std::vector<std::string>& cycle) {
    std::string out;
    for (const auto& node : cycle) {
        if (!out.empty()) out += " → ";
        out += node;
    }
    return out;
}

}  // namespace cascade::engine
