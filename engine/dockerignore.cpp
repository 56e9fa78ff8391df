// .dockerignore, following moby/patternmatcher (ignorefile.ReadAll, New,
// Pattern.compile/match, MatchesUsingParentResults) and the exclude walk of
// tonistiigi/fsutil (filterFS.Walk).
#include "engine/dockerignore.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "engine/copy.hpp"
#include "engine/dockerfile.hpp"
#include "oci/error.hpp"
#include "oci/fs.hpp"

namespace cascade::engine {

namespace {

namespace stdfs = std::filesystem;
using Token = IgnorePattern::Token;

// Go's filepath.Clean.
std::string go_clean(std::string_view path) {
    const bool rooted = !path.empty() && path.front() == '/';
    std::string out = rooted ? "/" : "";
    bool first = true;
    for (const auto& c : path_components(std::string(path))) {
        if (!first) out += '/';
        out += c;
        first = false;
    }
    if (out.empty()) return ".";
    return out;
}

// One UTF-8 character at s[i]: its code point (U+FFFD for an invalid byte,
// as Go decodes it) and its length.
std::pair<char32_t, size_t> decode(std::string_view s, size_t i) {
    auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
    unsigned char c = b(i);
    if (c < 0x80) return {c, 1};
    size_t n = (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (n == 0 || i + n > s.size()) return {0xFFFD, 1};
    char32_t r = c & (0x7F >> n);
    for (size_t k = 1; k < n; k++) {
        if ((b(i + k) & 0xC0) != 0x80) return {0xFFFD, 1};
        r = (r << 6) | (b(i + k) & 0x3F);
    }
    // Overlong forms, surrogates and values past U+10FFFF are invalid too.
    static constexpr char32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (r < kMin[n] || r > 0x10FFFF || (r >= 0xD800 && r <= 0xDFFF)) return {0xFFFD, 1};
    return {r, n};
}

// filepath.Match's getEsc: one character of a class, maybe escaped.
bool class_char(std::string_view p, size_t& i, char32_t& out) {
    if (i >= p.size() || p[i] == '-' || p[i] == ']') return false;
    if (p[i] == '\\') {
        if (++i >= p.size()) return false;
    }
    auto [r, n] = decode(p, i);
    if (r == 0xFFFD && n == 1 && static_cast<unsigned char>(p[i]) >= 0x80) return false;
    out = r;
    i += n;
    return i < p.size();
}

// A character class at p[i] == '[' (validated already): the token, and i
// past its "]". False when malformed.
bool parse_class(std::string_view p, size_t& i, Token& token) {
    token = Token{};
    token.type = Token::kClass;
    ++i;
    if (i < p.size() && p[i] == '^') {
        token.negated = true;
        ++i;
    }
    while (true) {
        if (i < p.size() && p[i] == ']' && !token.ranges.empty()) {
            ++i;
            return true;
        }
        char32_t lo = 0, hi = 0;
        if (!class_char(p, i, lo)) return false;
        hi = lo;
        if (p[i] == '-') {
            ++i;
            if (!class_char(p, i, hi)) return false;
        }
        token.ranges.emplace_back(lo, hi);
    }
}

// filepath.Match(pattern, ".") succeeds: no malformed class, no trailing
// backslash. `why` says what is wrong.
bool valid_glob(std::string_view p, std::string& why) {
    for (size_t i = 0; i < p.size();) {
        if (p[i] == '\\') {
            if (i + 1 >= p.size()) {
                why = "it ends in an unescaped backslash";
                return false;
            }
            i += 2;
        } else if (p[i] == '[') {
            Token token;
            if (!parse_class(p, i, token)) {
                why =
                    "malformed character class (use [abc], [a-z] or [^abc]; escape a literal [ as "
                    "\\[)";
                return false;
            }
        } else {
            ++i;
        }
    }
    return true;
}

void add_literal(std::vector<Token>& tokens, std::string_view text) {
    if (tokens.empty() || tokens.back().type != Token::kLiteral) {
        tokens.push_back(Token{});
        tokens.back().type = Token::kLiteral;
    }
    tokens.back().literal += text;
}

// Pattern.compile: the match kind, and the tokens when it is a glob.
void compile(IgnorePattern& pattern) {
    using Kind = IgnorePattern::Kind;
    const std::string_view p = pattern.text;
    Kind kind = Kind::kExact;
    std::vector<Token> tokens;
    for (size_t i = 0; i < p.size();) {
        const bool first = i == 0;
        char ch = p[i];
        if (ch == '*') {
            ++i;
            if (i < p.size() && p[i] == '*') {
                ++i;
                if (i < p.size() && p[i] == '/') ++i;  // "**/" is "**"
                Token t;
                if (i == p.size()) {
                    if (kind == Kind::kExact) {
                        kind = Kind::kPrefix;
                    } else {
                        t.type = Token::kRest;
                        tokens.push_back(t);
                        kind = Kind::kGlob;
                    }
                } else {
                    t.type = Token::kDirs;
                    tokens.push_back(t);
                    kind = Kind::kGlob;
                }
                if (first) kind = Kind::kSuffix;
            } else {
                Token t;
                t.type = Token::kStar;
                tokens.push_back(t);
                kind = Kind::kGlob;
            }
        } else if (ch == '?') {
            Token t;
            t.type = Token::kOne;
            tokens.push_back(t);
            kind = Kind::kGlob;
            ++i;
        } else if (ch == '\\') {
            ++i;
            if (i < p.size()) {
                auto [r, n] = decode(p, i);
                add_literal(tokens, p.substr(i, n));
                i += n;
                kind = Kind::kGlob;
            } else {
                add_literal(tokens, "\\");
            }
        } else if (ch == '[') {
            Token t;
            if (!parse_class(p, i, t)) throw Error("malformed character class");
            for (const auto& [lo, hi] : t.ranges)
                if (lo > hi) throw Error("a character class range goes backwards");
            tokens.push_back(std::move(t));
            kind = Kind::kGlob;
        } else if (ch == ']') {
            add_literal(tokens, "]");
            kind = Kind::kGlob;
            ++i;
        } else if (ch == '^') {
            // patternmatcher hands "^" to the regexp unescaped: an anchor.
            Token t;
            t.type = Token::kBegin;
            tokens.push_back(t);
            ++i;
        } else {
            auto [r, n] = decode(p, i);
            add_literal(tokens, p.substr(i, n));
            i += n;
        }
    }
    pattern.kind = kind;
    if (kind == Kind::kGlob) pattern.tokens = std::move(tokens);
}

// `path` matches the whole token list: the set of positions reachable after
// each token, one pass per token (no backtracking, so no blow-up).
bool match_tokens(const std::vector<Token>& tokens, std::string_view s) {
    const size_t n = s.size();
    std::vector<char> cur(n + 1, 0), next(n + 1, 0);
    cur[0] = 1;
    for (const auto& t : tokens) {
        std::fill(next.begin(), next.end(), 0);
        bool any = false;
        switch (t.type) {
            case Token::kLiteral: {
                const size_t len = t.literal.size();
                for (size_t p = 0; p + len <= n; p++)
                    if (cur[p] && s.compare(p, len, t.literal) == 0) next[p + len] = 1;
                break;
            }
            case Token::kStar:
                for (size_t p = 0; p <= n; p++)
                    next[p] = cur[p] || (p > 0 && next[p - 1] && s[p - 1] != '/');
                break;
            case Token::kOne:
                for (size_t p = 0; p < n; p++)
                    if (cur[p] && s[p] != '/') next[p + decode(s, p).second] = 1;
                break;
            case Token::kClass:
                for (size_t p = 0; p < n; p++) {
                    if (!cur[p]) continue;
                    auto [r, len] = decode(s, p);
                    bool in =
                        std::any_of(t.ranges.begin(), t.ranges.end(), [r = r](const auto& range) {
                            return range.first <= r && r <= range.second;
                        });
                    if (in != t.negated) next[p + len] = 1;
                }
                break;
            case Token::kDirs: {
                // (.*/)? — "." does not match a newline in Go's regexp.
                bool open = false;
                for (size_t p = 0; p <= n; p++) {
                    if (cur[p]) {
                        next[p] = 1;
                        open = true;
                    }
                    if (p == n) break;
                    if (s[p] == '/' && open) next[p + 1] = 1;
                    if (s[p] == '\n') open = false;
                }
                break;
            }
            case Token::kRest: {
                bool open = false;
                for (size_t p = 0; p <= n; p++) {
                    if (cur[p]) open = true;
                    if (open) next[p] = 1;
                    if (p < n && s[p] == '\n') open = false;
                }
                break;
            }
            case Token::kBegin:
                next[0] = cur[0];
                break;
        }
        for (size_t p = 0; p <= n && !any; p++)
            any = next[p];
        if (!any) return false;
        std::swap(cur, next);
    }
    return cur[n];
}

}  // namespace

bool IgnorePattern::matches(std::string_view path) const {
    switch (kind) {
        case Kind::kExact:
            return path == text;
        case Kind::kPrefix:
            return path.starts_with(std::string_view(text).substr(0, text.size() - 2));
        case Kind::kSuffix: {
            std::string_view suffix = std::string_view(text).substr(2);
            if (path.ends_with(suffix)) return true;
            return !suffix.empty() && suffix.front() == '/' && path == suffix.substr(1);
        }
        case Kind::kGlob:
            return match_tokens(tokens, path);
    }
    return false;
}

std::vector<std::pair<int, std::string>> DockerIgnore::read_lines(std::string_view text) {
    std::vector<std::pair<int, std::string>> out;
    int number = 0;
    size_t start = 0;
    while (start < text.size()) {
        size_t nl = text.find('\n', start);
        std::string_view line =
            text.substr(start, nl == std::string_view::npos ? std::string_view::npos : nl - start);
        start = nl == std::string_view::npos ? text.size() : nl + 1;
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);  // bufio.ScanLines
        if (number == 0 && line.starts_with("\xEF\xBB\xBF")) line.remove_prefix(3);
        ++number;
        if (line.starts_with("#")) continue;
        std::string_view pattern = trim_space(line);
        if (pattern.empty()) continue;
        const bool invert = pattern.front() == '!';
        if (invert) pattern = trim_space(pattern.substr(1));
        std::string cleaned;
        if (!pattern.empty()) {
            cleaned = go_clean(pattern);
            if (cleaned.size() > 1 && cleaned.front() == '/') cleaned.erase(0, 1);
        }
        out.emplace_back(number, (invert ? "!" : "") + cleaned);
    }
    return out;
}

DockerIgnore DockerIgnore::parse(std::string_view text, const std::string& file_name) {
    DockerIgnore out;
    for (const auto& [line, pattern] : read_lines(text)) {
        DockerIgnore one(std::vector<std::string>{pattern}, file_name + ":" + std::to_string(line));
        for (auto& p : one.patterns_) {
            p.line = line;
            out.patterns_.push_back(std::move(p));
        }
        out.exceptions_ = out.exceptions_ || one.exceptions_;
        out.only_prefix_exceptions_ = out.only_prefix_exceptions_ && one.only_prefix_exceptions_;
    }
    return out;
}

DockerIgnore::DockerIgnore(const std::vector<std::string>& patterns, const std::string& file_name) {
    for (const auto& raw : patterns) {
        std::string_view trimmed = trim_space(raw);
        if (trimmed.empty()) continue;
        std::string p = go_clean(trimmed);
        IgnorePattern pattern;
        if (p.front() == '!') {
            if (p.size() == 1)
                throw Error(file_name +
                            ": invalid pattern \"!\": an exception needs a pattern after the !");
            pattern.exclusion = true;
            p.erase(0, 1);
            exceptions_ = true;
        }
        std::string why;
        if (!valid_glob(p, why))
            throw Error(file_name + ": invalid pattern \"" + std::string(trimmed) + "\": " + why);
        pattern.text = std::move(p);
        try {
            compile(pattern);
        } catch (const Error& e) {
            throw Error(file_name + ": invalid pattern \"" + std::string(trimmed) +
                        "\": " + e.what());
        }
        if (pattern.exclusion) {
            // fsutil's patternWithoutTrailingGlob, then a look for pattern characters.
            std::string_view s = pattern.text;
            if (s.ends_with("/**")) s.remove_suffix(3);
            if (s.ends_with("/*")) s.remove_suffix(2);
            if (s.find_first_of("*[]?^\\") != std::string_view::npos)
                only_prefix_exceptions_ = false;
        }
        patterns_.push_back(std::move(pattern));
    }
}

bool DockerIgnore::excluded(std::string_view path, const MatchInfo& parent, MatchInfo* out) const {
    const auto& parent_matched = parent.parent_matched;
    const bool have_parent = parent_matched.size() == patterns_.size() && !patterns_.empty();
    MatchInfo info;
    info.parent_matched.assign(patterns_.size(), false);
    bool matched = false;
    for (size_t i = 0; i < patterns_.size(); i++) {
        const auto& pattern = patterns_[i];
        bool match = have_parent && parent_matched[i];
        if (!match) {
            // An inclusion cannot change a match, an exception only a match.
            if (pattern.exclusion != matched) continue;
            match = pattern.matches(path);
            if (!match && !have_parent) {
                // No parent results: the parent directories are checked too.
                for (size_t slash = path.find('/'); slash != std::string_view::npos && !match;
                     slash = path.find('/', slash + 1))
                    match = pattern.matches(path.substr(0, slash));
            }
        }
        info.parent_matched[i] = match;
        if (match) matched = !pattern.exclusion;
    }
    if (out) *out = std::move(info);
    return matched;
}

bool DockerIgnore::excluded(std::string_view path) const {
    return excluded(path, MatchInfo{});
}

bool DockerIgnore::walks_into(std::string_view dir) const {
    if (!exceptions_) return false;
    if (!only_prefix_exceptions_) return true;
    std::string dir_slash = std::string(dir) + "/";
    for (const auto& p : patterns_) {
        if (!p.exclusion) continue;
        std::string_view s = p.text;
        if (s.ends_with("/**")) s.remove_suffix(3);
        if (s.ends_with("/*")) s.remove_suffix(2);
        if ((std::string(s) + "/").starts_with(dir_slash)) return true;
    }
    return false;
}

std::optional<DockerIgnore> load_dockerignore(const std::filesystem::path& context,
                                              const std::filesystem::path& dockerfile) {
    std::error_code ec;
    if (!dockerfile.empty()) {
        stdfs::path specific = dockerfile.is_absolute() ? dockerfile : context / dockerfile;
        specific += ".dockerignore";
        if (stdfs::is_regular_file(specific, ec))
            return DockerIgnore::parse(fs::read_file(specific), specific.filename().string());
    }
    auto common = context / ".dockerignore";
    if (stdfs::is_regular_file(common, ec))
        return DockerIgnore::parse(fs::read_file(common), ".dockerignore");
    return std::nullopt;
}

ContextFilter::ContextFilter(DockerIgnore ignore) : ignore_(std::move(ignore)) {}
ContextFilter::~ContextFilter() = default;

bool ContextFilter::hidden(const RootDir& root, const std::string& rel) const {
    if (ignore_.empty()) return false;
    const auto comps = path_components(rel);
    if (comps.empty() || comps.front() == "..") return false;
    DockerIgnore::MatchInfo parent;
    std::string path;
    for (size_t i = 0; i < comps.size(); i++) {
        path += (path.empty() ? "" : "/") + comps[i];
        if (i + 1 < comps.size()) {
            // A directory on the way: memoised.
            DirState state;
            bool known = false;
            {
                std::lock_guard lock(mu_);
                if (auto it = dirs_.find(path); it != dirs_.end()) {
                    state = it->second;
                    known = true;
                }
            }
            if (!known) {
                state.excluded = ignore_.excluded(path, parent, &state.info);
                state.walked = !state.excluded || ignore_.walks_into(path);
                std::lock_guard lock(mu_);
                dirs_.emplace(path, state);
            }
            if (!state.walked) return true;
            parent = std::move(state.info);
            continue;
        }
        DockerIgnore::MatchInfo info;
        if (!ignore_.excluded(path, parent, &info)) return false;
        // Excluded: a file is gone; a directory stays when something below
        // it is re-included.
        fs::Fd fd = root.try_open(path, O_PATH | O_NOFOLLOW);
        struct stat st {};
        if (!fd || ::fstat(fd.get(), &st) != 0 || !S_ISDIR(st.st_mode)) return true;
        if (!ignore_.walks_into(path)) return true;
        return !has_visible_entry(root, path, info);
    }
    return false;
}

bool ContextFilter::has_visible_entry(const RootDir& root, const std::string& dir,
                                      const DockerIgnore::MatchInfo& info) const {
    {
        std::lock_guard lock(mu_);
        if (auto it = visible_below_.find(dir); it != visible_below_.end()) return it->second;
    }
    bool visible = false;
    fs::Fd fd = root.try_open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    if (fd) {
        int dup = ::fcntl(fd.get(), F_DUPFD_CLOEXEC, 0);
        if (dup < 0) throw sys_error("dup directory fd of", dir, errno);
        DIR* d = ::fdopendir(dup);
        if (!d) {
            int err = errno;
            ::close(dup);
            throw sys_error("opendir", dir + " (in " + root.description() + ")", err);
        }
        std::vector<std::string> names;
        while (auto* entry = ::readdir(d)) {
            std::string name = entry->d_name;
            if (name != "." && name != "..") names.push_back(std::move(name));
        }
        ::closedir(d);
        for (const auto& name : names) {
            std::string child = dir + "/" + name;
            DockerIgnore::MatchInfo child_info;
            if (!ignore_.excluded(child, info, &child_info)) {
                visible = true;
                break;
            }
            struct stat st {};
            if (::fstatat(fd.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                S_ISDIR(st.st_mode) && ignore_.walks_into(child) &&
                has_visible_entry(root, child, child_info)) {
                visible = true;
                break;
            }
        }
    }
    std::lock_guard lock(mu_);
    visible_below_.emplace(dir, visible);
    return visible;
}

}  // namespace cascade::engine
