// .dockerignore: which files of a build context the builder sees, with
// Docker's semantics (moby/patternmatcher's ignorefile.ReadAll and
// PatternMatcher, and the walk of BuildKit's context transfer, fsutil).
//
// - Lines starting with "#" are comments; every line is trimmed; blank lines
//   are skipped. A leading "!" makes an exception (re-includes what matches).
// - Patterns are cleaned like Go's filepath.Clean and a leading "/" dropped.
// - "*" matches any run of characters but "/", "?" one character but "/",
//   "[...]" a character class ("[^...]" negated, ranges a-z), "\" escapes
//   the next character, "**" any number of directories (also none).
// - The last pattern that matches a path decides; a path is excluded when it
//   or one of its parent directories is.
// - An excluded directory is looked into only when an exception could match
//   below it; it stays in the context (without its other entries) when
//   something below it is re-included.
#pragma once

#include <cstddef>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cascade::engine {

class RootDir;

// One compiled pattern.
struct IgnorePattern {
    std::string text;        // cleaned, without the "!"
    bool exclusion = false;  // "!pattern": an exception
    int line = 0;            // line in the file (0: not from a file)

    // How it matches (patternmatcher's matchType): the path equals `text`,
    // starts with it minus a trailing "**", ends with it minus a leading
    // "**", or matches `tokens`.
    enum class Kind { kExact, kPrefix, kSuffix, kGlob };
    Kind kind = Kind::kExact;
    struct Token {
        // kStar "*", kOne "?", kDirs "**/" (any directories), kRest a
        // trailing "**", kBegin a regexp "^" (patternmatcher passes it through).
        enum Type { kLiteral, kStar, kOne, kDirs, kRest, kClass, kBegin } type = kLiteral;
        std::string literal;
        bool negated = false;                               // kClass "[^...]"
        std::vector<std::pair<char32_t, char32_t>> ranges;  // kClass
    };
    std::vector<Token> tokens;

    // Whether the whole of `path` (relative, "/"-separated) matches.
    bool matches(std::string_view path) const;
};

class DockerIgnore {
  public:
    // ignorefile.ReadAll: the pattern lines of a .dockerignore, in order
    // ("!" kept in front of exceptions), with their 1-based line numbers.
    static std::vector<std::pair<int, std::string>> read_lines(std::string_view text);

    // Reads and compiles a .dockerignore. Throws cascade::Error
    // "<file>:<line>: invalid pattern ..." for a malformed pattern (bad
    // character class, trailing backslash, a lone "!").
    static DockerIgnore parse(std::string_view text,
                              const std::string& file_name = ".dockerignore");

    // Compiles patterns as PatternMatcher does ("!" for exceptions).
    explicit DockerIgnore(const std::vector<std::string>& patterns,
                          const std::string& file_name = ".dockerignore");
    DockerIgnore() = default;

    bool empty() const { return patterns_.empty(); }
    const std::vector<IgnorePattern>& patterns() const { return patterns_; }
    bool has_exceptions() const { return exceptions_; }

    // Which patterns matched a directory, handed down to its entries
    // (PatternMatcher's MatchInfo).
    struct MatchInfo {
        std::vector<bool> parent_matched;
    };
    // MatchesUsingParentResults: whether `path` is excluded, given what
    // matched its parent directory (an empty MatchInfo: check the parents).
    bool excluded(std::string_view path, const MatchInfo& parent, MatchInfo* out = nullptr) const;
    // MatchesOrParentMatches: `path` or one of its parents is excluded.
    bool excluded(std::string_view path) const;

    // Whether the context walk looks into the excluded directory `dir`
    // (fsutil: only when an exception could match below it).
    bool walks_into(std::string_view dir) const;

  private:
    std::vector<IgnorePattern> patterns_;
    bool exceptions_ = false;
    bool only_prefix_exceptions_ = true;
};

// The ignore file of a build: "<Dockerfile>.dockerignore" next to the
// Dockerfile (BuildKit) when it exists, else <context>/.dockerignore;
// nullopt when neither exists. `dockerfile` may be relative to the context.
std::optional<DockerIgnore> load_dockerignore(const std::filesystem::path& context,
                                              const std::filesystem::path& dockerfile);

// The build context as a .dockerignore leaves it. Thread-safe; results are
// memoised per directory, so the context must not change while it is used.
class ContextFilter {
  public:
    explicit ContextFilter(DockerIgnore ignore);
    ~ContextFilter();

    // True when `rel` (a root-relative path such as match_sources returns)
    // is not part of the context. Looks below an excluded directory through
    // `root` when exceptions could re-include something there.
    bool hidden(const RootDir& root, const std::string& rel) const;

  private:
    struct DirState {
        bool excluded = false;
        bool walked = true;  // false: excluded and never looked into
        DockerIgnore::MatchInfo info;
    };
    bool has_visible_entry(const RootDir& root, const std::string& dir,
                           const DockerIgnore::MatchInfo& info) const;

    DockerIgnore ignore_;
    mutable std::mutex mu_;
    mutable std::map<std::string, DirState> dirs_;
    mutable std::map<std::string, bool> visible_below_;
};

}  // namespace cascade::engine
