// libFuzzer target for engine/dockerignore.hpp: the input is a .dockerignore,
// then paths, separated by NUL bytes. DockerIgnore::parse throws nothing but
// cascade::Error and terminates; matching terminates quickly (no
// backtracking blow-up); without exceptions, what is inside an excluded
// directory is excluded; a literal pattern (no wildcard, no exception in the
// file) excludes its own text; matching with the parent's results agrees
// with matching from scratch when the file has no exceptions.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/dockerignore.hpp"
#include "fuzz_check.hpp"
#include "oci/error.hpp"

namespace {

using namespace cascade;
using namespace cascade::engine;

using fuzz::check;
using fuzz::violated;

// The path cleaned the way a walk produces it: no empty, "." or ".." parts.
std::string clean(std::string_view path) {
    std::string out;
    size_t i = 0;
    while (i <= path.size()) {
        size_t j = path.find('/', i);
        if (j == std::string_view::npos) j = path.size();
        auto part = path.substr(i, j - i);
        if (!part.empty() && part != "." && part != "..") {
            if (!out.empty()) out += '/';
            out += part;
        }
        i = j + 1;
    }
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view input(reinterpret_cast<const char*>(data), size);
    size_t nul = input.find('\0');
    std::string_view file = input.substr(0, nul);
    std::vector<std::string> paths;
    while (nul != std::string_view::npos) {
        size_t next = input.find('\0', nul + 1);
        paths.push_back(clean(input.substr(
            nul + 1, next == std::string_view::npos ? std::string_view::npos : next - nul - 1)));
        nul = next;
    }

    // The lines alone, and as patterns, must not crash either.
    auto lines = DockerIgnore::read_lines(file);
    std::optional<DockerIgnore> ignore;
    try {
        ignore = DockerIgnore::parse(file);
    } catch (const Error&) {
        return 0;
    }
    // A line can clean down to blank ("/\r/" is "\r" once cleaned; New trims it away).
    check(ignore->patterns().size() <= lines.size(), "no more patterns than lines");

    const bool exceptions = ignore->has_exceptions();
    for (const auto& p : ignore->patterns()) {
        if (exceptions || p.text.find_first_of("*?[]\\^") != std::string::npos) continue;
        if (p.text == "." || p.text == "/" || p.text.find("..") != std::string::npos) continue;
        check(ignore->excluded(p.text), "a literal pattern excludes its own text", p.text);
    }

    for (const auto& path : paths) {
        if (path.empty()) continue;
        const bool whole = ignore->excluded(path);
        // Walk down from the root with the parents' results.
        DockerIgnore::MatchInfo info;
        bool parent_excluded = false;
        bool walked = false;
        size_t start = 0;
        while (true) {
            size_t slash = path.find('/', start);
            std::string prefix(path.substr(0, slash));
            DockerIgnore::MatchInfo next;
            walked = ignore->excluded(prefix, info, &next);
            if (!exceptions && parent_excluded)
                check(walked, "inside an excluded directory everything is excluded", prefix);
            parent_excluded = walked;
            ignore->walks_into(prefix);
            info = std::move(next);
            if (slash == std::string::npos) break;
            start = slash + 1;
        }
        if (!exceptions)
            check(walked == whole, "parent results agree with matching from scratch", path);
    }
    return 0;
}
