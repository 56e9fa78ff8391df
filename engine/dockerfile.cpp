// The Dockerfile front end, following BuildKit's parser
// (frontend/dockerfile/parser) and shell lexer (frontend/dockerfile/shell).
#include "engine/dockerfile.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <nlohmann/json.hpp>
#include <set>

#include "oci/error.hpp"

namespace cascade::engine {

namespace {

constexpr int kEof = -1;

bool is_space(int c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}
bool is_digit(int c) {
    return c >= '0' && c <= '9';
}
bool is_alpha(int c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

std::string_view ltrim(std::string_view s) {
    while (!s.empty() && is_space(static_cast<unsigned char>(s.front())))
        s.remove_prefix(1);
    return s;
}
std::string_view rtrim(std::string_view s) {
    while (!s.empty() && is_space(static_cast<unsigned char>(s.back())))
        s.remove_suffix(1);
    return s;
}
std::string_view trim(std::string_view s) {
    return rtrim(ltrim(s));
}

std::string upper(std::string_view s) {
    std::string out(s);
    for (auto& c : out)
        c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return out;
}
std::string lower(std::string_view s) {
    std::string out(s);
    for (auto& c : out)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

// Splits on runs of whitespace (BuildKit's reWhitespace split), no quoting.
std::vector<std::string> split_whitespace(std::string_view s) {
    std::vector<std::string> out;
    size_t i = 0;
    while (i < s.size()) {
        while (i < s.size() && is_space(static_cast<unsigned char>(s[i])))
            ++i;
        size_t start = i;
        while (i < s.size() && !is_space(static_cast<unsigned char>(s[i])))
            ++i;
        if (i > start) out.emplace_back(s.substr(start, i - start));
    }
    return out;
}

// The offending text in an error message: the first line, bounded.
std::string excerpt(std::string_view text) {
    text = trim(text);
    std::string out(text.substr(0, text.find('\n')));
    if (out.size() > 200) out = out.substr(0, 200);
    if (out.size() < text.size()) out += " …";
    return out;
}

[[noreturn]] void fail_at(const std::string& where, const std::string& what,
                          std::string_view text) {
    throw Error(where + ": " + what + ": " + excerpt(text));
}

// Length of the UTF-8 sequence starting at s[i] (1 for invalid bytes).
size_t utf8_len(std::string_view s, size_t i) {
    auto c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 1;
    return std::min(n, s.size() - i);
}
bool utf8_boundary(std::string_view s, size_t i) {
    return i == 0 || i >= s.size() || (static_cast<unsigned char>(s[i]) & 0xC0) != 0x80;
}

// ---------------------------------------------------------------------------
// Shell patterns for ${VAR#pat}, ${VAR%pat}, ${VAR/pat/repl}: `*` any string,
// `?` one character, backslash makes *, ? and backslash literal; a backslash
// before } or / only kept them from ending the ${…}.

struct GlobToken {
    enum Kind { kLiteral, kOne, kAny } kind;
    char c = 0;
};

std::vector<GlobToken> compile_glob(std::string_view pattern, const std::string& where,
                                    std::string_view text) {
    std::vector<GlobToken> out;
    for (size_t i = 0; i < pattern.size(); ++i) {
        char c = pattern[i];
        if (c == '*') {
            out.push_back({GlobToken::kAny});
        } else if (c == '?') {
            out.push_back({GlobToken::kOne});
        } else if (c == '\\') {
            char n = i + 1 < pattern.size() ? pattern[i + 1] : '\0';
            if (n == '}' || n == '/') continue;
            if (n != '*' && n != '?' && n != '\\') {
                fail_at(where,
                        "invalid escape in pattern \"" + std::string(pattern) +
                            "\" (only \\*, \\? and \\\\ are allowed)",
                        text);
            }
            out.push_back({GlobToken::kLiteral, n});
            ++i;
        } else {
            out.push_back({GlobToken::kLiteral, c});
        }
    }
    return out;
}

// Whether the whole of `s` matches; `?` and `*` step over whole UTF-8 characters.
bool glob_match(const std::vector<GlobToken>& p, std::string_view s) {
    size_t pi = 0, si = 0, star_pi = std::string::npos, star_si = 0;
    while (si < s.size()) {
        if (pi < p.size() && p[pi].kind == GlobToken::kOne) {
            ++pi;
            si += utf8_len(s, si);
        } else if (pi < p.size() && p[pi].kind == GlobToken::kLiteral && p[pi].c == s[si]) {
            ++pi;
            ++si;
        } else if (pi < p.size() && p[pi].kind == GlobToken::kAny) {
            star_pi = pi++;
            star_si = si;
        } else if (star_pi != std::string::npos) {
            pi = star_pi + 1;
            star_si += utf8_len(s, star_si);
            si = star_si;
        } else {
            return false;
        }
    }
    while (pi < p.size() && p[pi].kind == GlobToken::kAny)
        ++pi;
    return pi == p.size();
}

// ${VAR#pat} (shortest prefix) / ${VAR##pat} (longest prefix).
std::string trim_prefix(const std::vector<GlobToken>& p, const std::string& value, bool greedy) {
    if (greedy) {
        for (size_t n = value.size() + 1; n-- > 0;) {
            if (utf8_boundary(value, n) && glob_match(p, std::string_view(value).substr(0, n)))
                return value.substr(n);
        }
    } else {
        for (size_t n = 0; n <= value.size(); ++n) {
            if (utf8_boundary(value, n) && glob_match(p, std::string_view(value).substr(0, n)))
                return value.substr(n);
        }
    }
    return value;
}

// ${VAR%pat} (shortest suffix) / ${VAR%%pat} (longest suffix).
std::string trim_suffix(const std::vector<GlobToken>& p, const std::string& value, bool greedy) {
    if (greedy) {
        for (size_t start = 0; start <= value.size(); ++start) {
            if (utf8_boundary(value, start) && glob_match(p, std::string_view(value).substr(start)))
                return value.substr(0, start);
        }
    } else {
        for (size_t start = value.size() + 1; start-- > 0;) {
            if (utf8_boundary(value, start) && glob_match(p, std::string_view(value).substr(start)))
                return value.substr(0, start);
        }
    }
    return value;
}

// The end of the longest match of `p` starting at `start`, or npos.
size_t longest_match_at(const std::vector<GlobToken>& p, const std::string& value, size_t start) {
    for (size_t end = value.size() + 1; end-- > start;) {
        if (utf8_boundary(value, end) &&
            glob_match(p, std::string_view(value).substr(start, end - start)))
            return end;
    }
    return std::string::npos;
}

// ${VAR/pat/repl} replaces the leftmost-longest match, ${VAR//pat/repl}
// every non-overlapping one (an empty match next to a previous match is
// skipped, as with Go's ReplaceAll).
std::string replace_pattern(const std::vector<GlobToken>& p, const std::string& value,
                            const std::string& replacement, bool all) {
    std::string out;
    size_t pos = 0;
    size_t last_end = std::string::npos;
    bool replaced = false;
    while (pos <= value.size()) {
        size_t end = (replaced && !all) ? std::string::npos : longest_match_at(p, value, pos);
        if (end != std::string::npos && !(end == pos && last_end == pos)) {
            out += replacement;
            replaced = true;
            last_end = end;
            if (end > pos) {
                pos = end;
                continue;
            }
        }
        if (pos == value.size()) break;
        size_t n = utf8_len(value, pos);
        out.append(value, pos, n);
        pos += n;
    }
    return out;
}

// ---------------------------------------------------------------------------
// BuildKit's shell lexer (frontend/dockerfile/shell/lex.go).

struct LexOptions {
    char escape = '\\';
    bool raw_quotes = false;   // keep quote characters in the result
    bool raw_escapes = false;  // keep escape characters in the result
    bool skip_quotes = false;  // quotes are ordinary characters (heredoc bodies)
    bool keep_unset = false;   // leave $VAR / ${VAR…} as written when VAR is unset
};

struct LexResult {
    std::string word;                // quotes removed, whitespace kept
    std::vector<std::string> words;  // split on unquoted whitespace
};

// Collects words: whitespace from literal text and from variable values
// splits, whitespace from quotes or escapes does not.
class WordSplitter {
  public:
    void add_char(char c) {
        if (is_space(static_cast<unsigned char>(c))) {
            if (in_word_ && !word_.empty()) {
                words_.push_back(std::move(word_));
                word_.clear();
                in_word_ = false;
            }
        } else {
            add_raw_char(c);
        }
    }
    void add_raw_char(char c) {
        word_ += c;
        in_word_ = true;
    }
    void add_string(std::string_view s) {
        for (char c : s)
            add_char(c);
    }
    void add_raw_string(std::string_view s) {
        word_ += s;
        in_word_ = true;
    }
    std::vector<std::string> take() {
        if (!word_.empty()) words_.push_back(std::move(word_));
        word_.clear();
        return std::move(words_);
    }

  private:
    std::string word_;
    std::vector<std::string> words_;
    bool in_word_ = false;
};

class ShellLexer {
  public:
    ShellLexer(std::string_view text, const Lookup& lookup, const std::string& where,
               LexOptions options)
        : text_(text),
          lookup_(lookup),
          where_(where),
          opt_(options),
          raw_escapes_(options.raw_escapes) {}

    LexResult run() { return process_until(kEof, raw_escapes_); }

  private:
    int peek() const {
        return pos_ < text_.size() ? static_cast<unsigned char>(text_[pos_]) : kEof;
    }
    int next() { return pos_ < text_.size() ? static_cast<unsigned char>(text_[pos_++]) : kEof; }

    [[noreturn]] void fail(const std::string& what) const { fail_at(where_, what, text_); }

    std::optional<std::string> get(const std::string& name) const {
        if (!lookup_) return std::nullopt;
        return lookup_(name);
    }

    LexResult process_until(int stop, bool raw_escapes) {
        bool saved = raw_escapes_;
        raw_escapes_ = raw_escapes;
        std::string result;
        WordSplitter words;
        while (peek() != kEof) {
            int ch = peek();
            if (stop != kEof && ch == stop) {
                next();
                raw_escapes_ = saved;
                return {std::move(result), words.take()};
            }
            if (ch == '$') {
                std::string value = dollar();
                result += value;
                words.add_string(value);
            } else if (!opt_.skip_quotes && (ch == '\'' || ch == '"')) {
                std::string value = ch == '\'' ? single_quote() : double_quote();
                result += value;
                words.add_raw_string(value);
            } else {
                ch = next();
                if (ch == opt_.escape) {
                    if (raw_escapes_) {
                        words.add_raw_char(static_cast<char>(ch));
                        result += static_cast<char>(ch);
                    }
                    ch = next();
                    if (ch == kEof) break;  // an escape at the very end is dropped
                    words.add_raw_char(static_cast<char>(ch));
                } else {
                    words.add_char(static_cast<char>(ch));
                }
                result += static_cast<char>(ch);
            }
        }
        raw_escapes_ = saved;
        if (stop == '}') fail("syntax error: missing '}'");
        if (stop == '/') fail("syntax error: missing '/' in ${}");
        return {std::move(result), words.take()};
    }

    // Everything up to the next ' is literal; a single quote cannot be escaped.
    std::string single_quote() {
        std::string result;
        int ch = next();
        if (opt_.raw_quotes) result += static_cast<char>(ch);
        while (true) {
            ch = next();
            if (ch == kEof)
                fail("unexpected end of statement while looking for matching single-quote");
            if (ch == '\'') {
                if (opt_.raw_quotes) result += static_cast<char>(ch);
                return result;
            }
            result += static_cast<char>(ch);
        }
    }

    // Literal except $ expansions; the escape character escapes only " $ and
    // itself, before anything else it stays.
    std::string double_quote() {
        std::string result;
        int ch = next();
        if (opt_.raw_quotes) result += static_cast<char>(ch);
        while (true) {
            int p = peek();
            if (p == kEof)
                fail("unexpected end of statement while looking for matching double-quote");
            if (p == '"') {
                next();
                if (opt_.raw_quotes) result += '"';
                return result;
            }
            if (p == '$') {
                result += dollar();
                continue;
            }
            ch = next();
            if (ch == opt_.escape) {
                int n = peek();
                if (n == kEof) continue;  // the loop reports the missing quote
                if (n == '"' || n == '$' || n == opt_.escape) {
                    if (raw_escapes_) result += static_cast<char>(ch);
                    ch = next();
                }
            }
            result += static_cast<char>(ch);
        }
    }

    // A name after $: digits ($1), one special parameter ($@ $* $# $? $- $$ $!)
    // or letters, digits and underscores.
    std::string name() {
        std::string out;
        if (is_digit(peek())) {
            while (is_digit(peek()))
                out += static_cast<char>(next());
            return out;
        }
        switch (peek()) {
            case '@':
            case '*':
            case '#':
            case '?':
            case '-':
            case '$':
            case '!':
                out += static_cast<char>(next());
                return out;
            default:
                break;
        }
        while (is_alpha(peek()) || is_digit(peek()) || peek() == '_') {
            out += static_cast<char>(next());
        }
        return out;
    }

    std::string dollar() {
        next();  // $
        if (peek() != '{') {
            std::string n = name();
            if (n.empty()) return "$";
            auto value = get(n);
            if (!value && opt_.keep_unset) return "$" + n;
            return value.value_or("");
        }
        next();  // {
        int p = peek();
        if (p == kEof) fail("syntax error: missing '}'");
        if (p == '{' || p == '}' || p == ':') fail("syntax error: bad substitution");
        std::string n = name();
        int ch = next();
        if (ch == kEof) fail("syntax error: missing '}'");
        if (ch == '}') {
            auto value = get(n);
            if (!value && opt_.keep_unset) return "${" + n + "}";
            return value.value_or("");
        }
        std::string modifier(1, static_cast<char>(ch));
        bool null_is_unset = false;
        if (ch == ':') {
            null_is_unset = true;
            ch = next();
            if (ch == kEof) fail("syntax error: missing '}'");
            modifier += static_cast<char>(ch);
        }
        if (ch == '-' || ch == '+' || ch == '?' || ch == '#' || ch == '%') {
            std::string word = process_until('}', ch == '#' || ch == '%').word;
            auto value = get(n);
            if (!value && opt_.keep_unset) return "${" + n + modifier + word + "}";
            bool empty_or_unset = !value || (null_is_unset && value->empty());
            switch (ch) {
                case '-':
                    return empty_or_unset ? word : *value;
                case '+':
                    return empty_or_unset ? "" : word;
                case '?':
                    if (!value)
                        fail(n + ": " + (word.empty() ? "is not allowed to be unset" : word));
                    if (empty_or_unset)
                        fail(n + ": " + (word.empty() ? "is not allowed to be empty" : word));
                    return *value;
                default: {
                    bool greedy = !word.empty() && word[0] == ch;
                    if (greedy) word.erase(0, 1);
                    auto glob = compile_glob(word, where_, text_);
                    return ch == '#' ? trim_prefix(glob, value.value_or(""), greedy)
                                     : trim_suffix(glob, value.value_or(""), greedy);
                }
            }
        }
        if (ch == '/' && !null_is_unset) {
            bool all = peek() == '/';
            if (all) next();
            std::string pattern = process_until('/', true).word;
            std::string replacement = process_until('}', true).word;
            auto value = get(n);
            if (!value && opt_.keep_unset) {
                return "${" + n + (all ? "//" : "/") + pattern + "/" + replacement + "}";
            }
            auto glob = compile_glob(pattern, where_, text_);
            return replace_pattern(glob, value.value_or(""), replacement, all);
        }
        fail("unsupported modifier (" + modifier + ") in substitution");
    }

    std::string_view text_;
    const Lookup& lookup_;
    const std::string& where_;
    LexOptions opt_;
    bool raw_escapes_;
    size_t pos_ = 0;
};

LexResult lex(std::string_view text, const Lookup& lookup, const std::string& where,
              LexOptions options) {
    return ShellLexer(text, lookup, where, options).run();
}

// BuildKit's parseWords: splits on unquoted whitespace, keeping quotes and
// escapes in the words (they are removed when the values are expanded).
std::vector<std::string> parse_words(std::string_view rest, char escape) {
    std::vector<std::string> words;
    std::string word;
    bool blank_ok = false;
    char quote = 0;
    enum { kSpaces, kWord, kQuote } phase = kSpaces;
    for (size_t pos = 0; pos <= rest.size(); ++pos) {
        bool end = pos == rest.size();
        char ch = end ? '\0' : rest[pos];
        if (phase == kSpaces) {
            if (end) break;
            if (is_space(static_cast<unsigned char>(ch))) continue;
            phase = kWord;
        }
        if (end) {
            if (blank_ok || !word.empty()) words.push_back(word);
            break;
        }
        if (phase == kWord) {
            if (is_space(static_cast<unsigned char>(ch))) {
                phase = kSpaces;
                if (blank_ok || !word.empty()) words.push_back(word);
                word.clear();
                blank_ok = false;
                continue;
            }
            if (ch == '\'' || ch == '"') {
                quote = ch;
                blank_ok = true;
                phase = kQuote;
            } else if (ch == escape) {
                if (pos + 1 == rest.size()) continue;  // an escape at the end is dropped
                word += ch;
                ch = rest[++pos];
            }
            word += ch;
            continue;
        }
        // kQuote
        if (ch == quote) {
            phase = kWord;
        } else if (ch == escape && quote != '\'') {
            if (pos + 1 == rest.size()) {
                phase = kWord;
                continue;
            }
            word += ch;
            ch = rest[++pos];
        }
        word += ch;
    }
    return words;
}

struct RawKeyValue {
    std::string key;
    std::string value;  // unexpanded
};

// ENV/LABEL forms (BuildKit's parseNameVal): "k=v k2=v2" or legacy "k v w".
std::vector<RawKeyValue> split_key_values(std::string_view raw, char escape, bool allow_legacy,
                                          const std::string& where) {
    raw = trim(raw);
    auto words = parse_words(raw, escape);
    if (words.empty()) fail_at(where, "missing arguments, expected key=value", raw);
    std::vector<RawKeyValue> out;
    if (words[0].find('=') == std::string::npos) {
        if (!allow_legacy) {
            fail_at(where, "expected key=value, \"" + words[0] + "\" has no '='", raw);
        }
        size_t i = 0;
        while (i < raw.size() && !is_space(static_cast<unsigned char>(raw[i])))
            ++i;
        std::string_view value = ltrim(raw.substr(i));
        if (value.empty()) {
            fail_at(where, "\"" + words[0] + "\" has no value (use key=value or key value)", raw);
        }
        out.push_back({std::string(raw.substr(0, i)), std::string(value)});
        return out;
    }
    for (const auto& word : words) {
        size_t eq = word.find('=');
        if (eq == std::string::npos) {
            fail_at(where,
                    "can't find = in \"" + word +
                        "\"; the form is key=value (quote values with spaces)",
                    raw);
        }
        if (eq == 0) fail_at(where, "a key can not be blank in \"" + word + "\"", raw);
        out.push_back({word.substr(0, eq), word.substr(eq + 1)});
    }
    return out;
}

struct RawArg {
    std::string name;
    std::optional<std::string> value;  // unexpanded
};

// ARG forms (BuildKit's parseNameOrNameVal / parseArg): "a b=1 c=\"x y\"".
std::vector<RawArg> split_args(std::string_view raw, char escape, const std::string& where) {
    auto words = parse_words(trim(raw), escape);
    if (words.empty()) fail_at(where, "ARG needs a name (ARG name or ARG name=default)", raw);
    std::vector<RawArg> out;
    for (const auto& word : words) {
        size_t eq = word.find('=');
        if (eq == 0) fail_at(where, "ARG names can not be blank", raw);
        if (eq == std::string::npos) {
            out.push_back({word, std::nullopt});
        } else {
            out.push_back({word.substr(0, eq), word.substr(eq + 1)});
        }
    }
    return out;
}

// ---------------------------------------------------------------------------
// Instructions and their flags.

enum class FlagKind { kString, kStrings, kBool };
struct FlagSpec {
    std::string_view name;
    FlagKind kind;
};

const std::vector<FlagSpec>& flag_specs(const std::string& keyword) {
    using K = FlagKind;
    static const std::map<std::string, std::vector<FlagSpec>> specs = {
        {"FROM", {{"platform", K::kString}}},
        {"RUN",
         {{"mount", K::kStrings},
          {"network", K::kString},
          {"security", K::kString},
          {"device", K::kStrings}}},
        {"COPY",
         {{"from", K::kString},
          {"chown", K::kString},
          {"chmod", K::kString},
          {"link", K::kBool},
          {"parents", K::kBool},
          {"exclude", K::kStrings}}},
        {"ADD",
         {{"chown", K::kString},
          {"chmod", K::kString},
          {"link", K::kBool},
          {"keep-git-dir", K::kBool},
          {"checksum", K::kString},
          {"unpack", K::kBool},
          {"exclude", K::kStrings}}},
        {"HEALTHCHECK",
         {{"interval", K::kString},
          {"timeout", K::kString},
          {"start-period", K::kString},
          {"start-interval", K::kString},
          {"retries", K::kString}}},
    };
    static const std::vector<FlagSpec> none;
    auto it = specs.find(keyword);
    return it == specs.end() ? none : it->second;
}

const std::array<std::string_view, 18> kKeywords = {
    "FROM",    "RUN", "CMD",     "LABEL",      "MAINTAINER",  "EXPOSE",
    "ENV",     "ADD", "COPY",    "ENTRYPOINT", "VOLUME",      "USER",
    "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL"};

bool known_keyword(const std::string& keyword) {
    return std::find(kKeywords.begin(), kKeywords.end(), keyword) != kKeywords.end();
}

size_t edit_distance(std::string_view a, std::string_view b) {
    std::vector<size_t> row(b.size() + 1);
    for (size_t j = 0; j <= b.size(); ++j)
        row[j] = j;
    for (size_t i = 1; i <= a.size(); ++i) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= b.size(); ++j) {
            size_t up = row[j];
            row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
            diag = up;
        }
    }
    return row[b.size()];
}

std::string unknown_instruction_message(std::string_view written) {
    std::string what = "unknown instruction " + std::string(written);
    std::string keyword = upper(written);
    std::string_view best;
    // One typo in a short word, two in a longer one; beyond that a guess misleads.
    size_t best_distance = keyword.size() >= 5 ? 3 : 2;
    for (auto k : kKeywords) {
        size_t d = edit_distance(keyword, k);
        if (d < best_distance) {
            best_distance = d;
            best = k;
        }
    }
    if (!best.empty()) what += " (did you mean " + std::string(best) + "?)";
    return what;
}

// BuildKit's extractBuilderFlags: leading words that start with "--" are
// flags (quotes and escapes removed); "--" alone ends them. Returns the rest.
std::string_view extract_flag_words(std::string_view line, char escape,
                                    std::vector<std::string>& words, const std::string& where,
                                    std::string_view original) {
    size_t pos = 0;
    while (true) {
        while (pos < line.size() && is_space(static_cast<unsigned char>(line[pos])))
            ++pos;
        if (pos >= line.size()) return {};
        if (line.compare(pos, 2, "--") != 0) return line.substr(pos);
        std::string word;
        char quote = 0;
        for (; pos < line.size(); ++pos) {
            char ch = line[pos];
            if (quote) {
                if (ch == quote) {
                    quote = 0;
                    continue;
                }
                if (ch == escape && quote == '"' && pos + 1 < line.size()) ch = line[++pos];
                word += ch;
                continue;
            }
            if (is_space(static_cast<unsigned char>(ch))) break;
            if (ch == '\'' || ch == '"') {
                quote = ch;
                continue;
            }
            if (ch == escape) {
                if (pos + 1 == line.size()) continue;
                ch = line[++pos];
            }
            word += ch;
        }
        if (quote) fail_at(where, "unterminated quote in flag " + word, original);
        if (word == "--") {
            while (pos < line.size() && is_space(static_cast<unsigned char>(line[pos])))
                ++pos;
            return line.substr(pos);
        }
        words.push_back(std::move(word));
    }
}

std::vector<std::pair<std::string, std::string>> parse_flags(const std::string& keyword,
                                                             const std::vector<std::string>& words,
                                                             const std::string& where,
                                                             std::string_view original) {
    const auto& specs = flag_specs(keyword);
    std::vector<std::pair<std::string, std::string>> flags;
    std::set<std::string> seen;
    for (const auto& word : words) {
        std::string_view body = std::string_view(word).substr(2);
        size_t eq = body.find('=');
        std::string name(body.substr(0, eq));
        std::optional<std::string> value;
        if (eq != std::string_view::npos) value = std::string(body.substr(eq + 1));
        bool valid_name = !name.empty() && is_alpha(static_cast<unsigned char>(name[0])) &&
                          std::all_of(name.begin(), name.end(), [](char c) {
                              return is_alpha(static_cast<unsigned char>(c)) ||
                                     is_digit(static_cast<unsigned char>(c)) || c == '-' ||
                                     c == '_';
                          });
        if (!valid_name) {
            fail_at(where, "malformed flag " + word + " (flags are --name=value)", original);
        }
        auto spec = std::find_if(specs.begin(), specs.end(),
                                 [&](const FlagSpec& s) { return s.name == name; });
        if (spec == specs.end()) {
            std::string what = "unknown flag --" + name + " for " + keyword;
            if (specs.empty()) {
                what += " (" + keyword + " takes no flags)";
            } else {
                what += " (known:";
                for (const auto& s : specs)
                    what += " --" + std::string(s.name);
                what += ")";
            }
            fail_at(where, what, original);
        }
        if (spec->kind != FlagKind::kStrings && !seen.insert(name).second) {
            fail_at(where, "duplicate flag --" + name, original);
        }
        if (spec->kind == FlagKind::kBool) {
            if (!value) {
                value = "true";
            } else {
                std::string v = lower(*value);
                if (v != "true" && v != "false") {
                    fail_at(where,
                            "flag --" + name + " expects true or false, not \"" + *value + "\"",
                            original);
                }
                value = v;
            }
        } else if (!value) {
            fail_at(where, "flag --" + name + " needs a value (--" + name + "=<value>)", original);
        }
        flags.emplace_back(name, *value);
    }
    return flags;
}

enum class JsonResult { kNotJson, kStrings };

// BuildKit's parseJSON: a JSON array of strings is the exec form; anything
// that is not valid JSON is the shell form; a JSON array with non-strings is
// an error.
JsonResult parse_json_array(std::string_view args, std::vector<std::string>& out,
                            const std::string& where, std::string_view original) {
    args = ltrim(args);
    if (args.empty() || args.front() != '[') return JsonResult::kNotJson;
    auto json = nlohmann::json::parse(args.begin(), args.end(), nullptr, false);
    if (json.is_discarded() || !json.is_array()) return JsonResult::kNotJson;
    for (const auto& item : json) {
        if (!item.is_string()) {
            fail_at(where, "when using JSON array syntax, arrays must be comprised of strings only",
                    original);
        }
        out.push_back(item.get<std::string>());
    }
    return JsonResult::kStrings;
}

bool takes_json(const std::string& keyword) {
    return keyword == "RUN" || keyword == "CMD" || keyword == "ENTRYPOINT" || keyword == "SHELL" ||
           keyword == "COPY" || keyword == "ADD" || keyword == "VOLUME";
}

bool takes_heredoc(const std::string& keyword) {
    return keyword == "RUN" || keyword == "COPY" || keyword == "ADD";
}

// A word like "<<EOF", "<<-EOF", "<<'EOF'" or "3<<EOF"
// (BuildKit's ^(\d*)<<(-?)([^<]*)$) as {delimiter text, strip tabs}.
std::optional<std::pair<std::string, bool>> heredoc_word(std::string_view word) {
    size_t i = 0;
    while (i < word.size() && is_digit(static_cast<unsigned char>(word[i])))
        ++i;
    if (word.compare(i, 2, "<<") != 0) return std::nullopt;
    i += 2;
    bool strip_tabs = i < word.size() && word[i] == '-';
    if (strip_tabs) ++i;
    std::string_view rest = word.substr(i);
    if (rest.empty() || rest.find('<') != std::string_view::npos) return std::nullopt;
    return std::make_pair(std::string(rest), strip_tabs);
}

struct PendingHeredoc {
    Heredoc doc;
    bool strip_tabs = false;
};

// The heredocs a shell-form line opens, in order (BuildKit's heredocsFromLine).
std::vector<PendingHeredoc> heredocs_in(std::string_view args, char escape,
                                        const std::string& where) {
    static const Lookup no_variables;
    std::vector<std::string> words;
    try {
        words = lex(args, no_variables, where,
                    {.escape = escape, .raw_quotes = true, .raw_escapes = true, .keep_unset = true})
                    .words;
    } catch (const Error&) {
        return {};  // not lexable as words: BuildKit sees no heredoc either
    }
    std::vector<PendingHeredoc> out;
    for (const auto& word : words) {
        auto found = heredoc_word(word);
        if (!found) continue;
        const std::string& rest = found->first;
        auto plain = lex(rest, no_variables, where, {.escape = escape, .keep_unset = true});
        if (plain.words.size() != 1) continue;
        auto quoted = lex(rest, no_variables, where,
                          {.escape = escape, .raw_quotes = true, .keep_unset = true});
        auto quotes = [](const std::string& s) {
            return std::count(s.begin(), s.end(), '\'') + std::count(s.begin(), s.end(), '"');
        };
        bool expand = quoted.words.size() == 1 && quotes(plain.words[0]) == quotes(quoted.words[0]);
        out.push_back({{plain.words[0], "", expand}, found->second});
    }
    return out;
}

std::string strip_leading_tabs(std::string_view content) {
    std::string out;
    bool line_start = true;
    for (char c : content) {
        if (line_start && c == '\t') continue;
        line_start = c == '\n';
        out += c;
    }
    return out;
}

struct SourceLine {
    std::string text;  // without the "\n" ("\r" of CRLF files kept)
    bool newline = false;
};

std::string_view trim_newline(std::string_view s) {
    while (!s.empty() && (s.back() == '\r' || s.back() == '\n'))
        s.remove_suffix(1);
    return s;
}

// BuildKit's line continuation: the escape character as the last
// non-blank character, not itself escaped (or alone on the line).
bool trim_continuation(std::string_view line, char escape, std::string& out) {
    size_t end = line.size();
    while (end > 0 && (line[end - 1] == ' ' || line[end - 1] == '\t'))
        --end;
    if (end > 0 && line[end - 1] == escape && (end == 1 || line[end - 2] != escape)) {
        out = std::string(line.substr(0, end - 1));
        return true;
    }
    out = std::string(line);
    return false;
}

class Parser {
  public:
    Parser(std::string_view text, std::string file_name) : file_(std::move(file_name)) {
        size_t start = 0;
        while (start < text.size()) {
            size_t nl = text.find('\n', start);
            if (nl == std::string_view::npos) {
                lines_.push_back({std::string(text.substr(start)), false});
                break;
            }
            lines_.push_back({std::string(text.substr(start, nl - start)), true});
            start = nl + 1;
        }
        if (!lines_.empty() && lines_[0].text.starts_with("\xEF\xBB\xBF")) {
            lines_[0].text.erase(0, 3);
        }
    }

    Dockerfile run() {
        Dockerfile df;
        df.file_name = file_;
        std::vector<Instruction> instructions;
        while (next_ < lines_.size()) {
            int line_number = static_cast<int>(next_) + 1;
            std::string_view text = ltrim(trim_newline(lines_[next_++].text));
            directive(text, line_number, df);
            if (!text.empty() && text.front() == '#') text = {};
            std::string line;
            bool more = trim_continuation(text, escape_, line);
            if (!more && line.empty()) continue;
            while (more && next_ < lines_.size()) {
                std::string_view cont = trim_newline(lines_[next_++].text);
                std::string_view stripped = ltrim(cont);
                if (stripped.empty() || stripped.front() == '#') continue;
                std::string piece;
                more = trim_continuation(cont, escape_, piece);
                line += piece;
            }
            instructions.push_back(instruction(line, line_number, true));
        }
        df.escape = escape_;
        group(std::move(instructions), df);
        return df;
    }

  private:
    std::string where(int line) const { return file_ + ":" + std::to_string(line); }

    // "# escape=`", "# syntax=…", "# check=…" before anything else.
    void directive(std::string_view text, int line_number, Dockerfile& df) {
        if (directives_done_) return;
        directives_done_ = true;
        if (text.empty() || text.front() != '#') return;
        std::string_view rest = ltrim(text.substr(1));
        size_t i = 0;
        if (i >= rest.size() || !is_alpha(static_cast<unsigned char>(rest[i]))) return;
        while (i < rest.size() && (is_alpha(static_cast<unsigned char>(rest[i])) ||
                                   is_digit(static_cast<unsigned char>(rest[i]))))
            ++i;
        std::string key = lower(rest.substr(0, i));
        rest = ltrim(rest.substr(i));
        if (rest.empty() || rest.front() != '=') return;
        std::string_view value = trim(rest.substr(1));
        if (value.empty()) return;
        if (key != "escape" && key != "syntax" && key != "check") return;
        if (!seen_directives_.insert(key).second) {
            fail_at(where(line_number), "only one " + key + " parser directive can be used", text);
        }
        if (key == "escape") {
            if (value != "`" && value != "\\") {
                fail_at(where(line_number),
                        "invalid escape token '" + std::string(value) + "' (use ` or \\)", text);
            }
            escape_ = value.front();
        } else if (key == "syntax") {
            df.syntax = std::string(value);
        }
        directives_done_ = false;  // the next line may be a directive too
    }

    Instruction instruction(std::string_view line, int line_number, bool read_heredocs) {
        std::string at = where(line_number);
        std::string_view trimmed = trim(line);
        size_t end = 0;
        while (end < trimmed.size() && !is_space(static_cast<unsigned char>(trimmed[end])))
            ++end;
        Instruction ins;
        ins.line = line_number;
        ins.keyword = upper(trimmed.substr(0, end));
        ins.original = std::string(trimmed);
        if (!known_keyword(ins.keyword)) {
            fail_at(at, unknown_instruction_message(trimmed.substr(0, end)), trimmed);
        }
        std::vector<std::string> flag_words;
        std::string_view args =
            extract_flag_words(trimmed.substr(end), escape_, flag_words, at, trimmed);
        ins.raw = std::string(trim(args));
        ins.flags = parse_flags(ins.keyword, flag_words, at, trimmed);
        if (ins.raw.empty()) {
            fail_at(at, ins.keyword + " needs arguments", trimmed);
        }
        if (takes_json(ins.keyword) &&
            parse_json_array(ins.raw, ins.exec_args, at, trimmed) == JsonResult::kStrings) {
            ins.exec_form = true;
        }
        validate(ins, at);

        std::vector<PendingHeredoc> pending;
        if (ins.keyword == "ONBUILD") {
            // The trigger is checked as an instruction of its own; heredocs
            // belong to the ONBUILD that carries them.
            Instruction trigger = instruction(ins.raw, line_number, false);
            if (takes_heredoc(trigger.keyword) && !trigger.exec_form) {
                pending = heredocs_in(trigger.raw, escape_, at);
            }
        } else if (takes_heredoc(ins.keyword) && !ins.exec_form) {
            pending = heredocs_in(ins.raw, escape_, at);
            if (ins.keyword != "RUN") {
                auto words = split_whitespace(ins.raw);
                if (heredoc_word(words.back())) {
                    fail_at(at, ins.keyword + " cannot accept a heredoc as a destination", trimmed);
                }
            }
        }
        if (read_heredocs) {
            for (auto& p : pending)
                ins.heredocs.push_back(read_heredoc(p, at, trimmed));
        }
        return ins;
    }

    Heredoc read_heredoc(PendingHeredoc& pending, const std::string& at,
                         std::string_view original) {
        Heredoc doc = std::move(pending.doc);
        while (next_ < lines_.size()) {
            const SourceLine& source = lines_[next_++];
            std::string_view candidate = trim_newline(source.text);
            if (pending.strip_tabs) {
                while (!candidate.empty() && candidate.front() == '\t')
                    candidate.remove_prefix(1);
            }
            if (candidate == doc.name) {
                if (pending.strip_tabs) doc.content = strip_leading_tabs(doc.content);
                return doc;
            }
            doc.content += source.text;
            if (source.newline) doc.content += '\n';
        }
        fail_at(at,
                "unterminated heredoc: no line \"" + doc.name + "\" ends <<" + doc.name +
                    " before the end of the file",
                original);
    }

    // Argument checks of BuildKit's instructions package.
    void validate(Instruction& ins, const std::string& at) {
        const std::string& kw = ins.keyword;
        std::string_view original = ins.original;
        if (kw == "FROM") {
            auto words = split_whitespace(ins.raw);
            if (words.size() == 3 && lower(words[1]) == "as") {
                std::string name = lower(words[2]);
                bool valid = is_alpha(static_cast<unsigned char>(name[0])) &&
                             std::all_of(name.begin(), name.end(), [](char c) {
                                 return (c >= 'a' && c <= 'z') || is_digit(c) || c == '-' ||
                                        c == '_' || c == '.';
                             });
                if (!valid) {
                    fail_at(at,
                            "invalid stage name \"" + words[2] +
                                "\": it must start with a letter and contain only letters, "
                                "digits, '-', '_' and '.'",
                            original);
                }
            } else if (words.size() != 1) {
                fail_at(at, "FROM requires either one or three arguments (FROM image [AS name])",
                        original);
            }
        } else if (kw == "COPY" || kw == "ADD") {
            size_t count = ins.exec_form ? ins.exec_args.size() : split_whitespace(ins.raw).size();
            if (count < 2) {
                fail_at(at, kw + " requires at least two arguments: source(s) and destination",
                        original);
            }
        } else if (kw == "RUN" || kw == "CMD" || kw == "ENTRYPOINT") {
            if (kw == "RUN" && ins.exec_form && ins.exec_args.empty()) {
                fail_at(at, "RUN needs a command: the JSON array is empty", original);
            }
        } else if (kw == "SHELL") {
            if (!ins.exec_form) {
                fail_at(at, "SHELL requires the arguments to be a JSON array of strings", original);
            }
            if (ins.exec_args.empty()) fail_at(at, "SHELL needs at least one argument", original);
        } else if (kw == "ENV" || kw == "LABEL") {
            split_key_values(ins.raw, escape_, true, at);
        } else if (kw == "ARG") {
            split_args(ins.raw, escape_, at);
        } else if (kw == "HEALTHCHECK") {
            size_t end = 0;
            while (end < ins.raw.size() && !is_space(static_cast<unsigned char>(ins.raw[end])))
                ++end;
            std::string type = upper(std::string_view(ins.raw).substr(0, end));
            std::string_view command = trim(std::string_view(ins.raw).substr(end));
            if (type == "NONE") {
                if (!command.empty()) fail_at(at, "HEALTHCHECK NONE takes no arguments", original);
            } else if (type == "CMD") {
                if (command.empty()) fail_at(at, "missing command after HEALTHCHECK CMD", original);
                if (parse_json_array(command, ins.exec_args, at, original) ==
                    JsonResult::kStrings) {
                    ins.exec_form = true;
                    if (ins.exec_args.empty()) {
                        fail_at(at, "missing command after HEALTHCHECK CMD", original);
                    }
                }
            } else {
                fail_at(at, "unknown HEALTHCHECK type \"" + type + "\" (use CMD or NONE)",
                        original);
            }
        } else if (kw == "ONBUILD") {
            std::string trigger = upper(split_whitespace(ins.raw).front());
            if (trigger == "ONBUILD") {
                fail_at(at, "chaining ONBUILD via ONBUILD ONBUILD isn't allowed", original);
            }
            if (trigger == "FROM" || trigger == "MAINTAINER") {
                fail_at(at, trigger + " isn't allowed as an ONBUILD trigger", original);
            }
        }
    }

    void group(std::vector<Instruction> instructions, Dockerfile& df) {
        std::set<std::string> stage_names;
        for (auto& ins : instructions) {
            std::string at = where(ins.line);
            if (ins.keyword == "FROM") {
                Stage stage;
                stage.index = static_cast<int>(df.stages.size());
                stage.line = ins.line;
                auto words = split_whitespace(ins.raw);
                stage.base = words[0];
                if (words.size() == 3) {
                    stage.name = lower(words[2]);
                    if (!stage_names.insert(stage.name).second) {
                        fail_at(at, "duplicate stage name \"" + stage.name + "\"", ins.original);
                    }
                }
                stage.platform = ins.flag("platform").value_or("");
                df.stages.push_back(std::move(stage));
            } else if (df.stages.empty()) {
                if (ins.keyword != "ARG") {
                    fail_at(at,
                            ins.keyword +
                                " before the first FROM (only ARG may come before "
                                "FROM)",
                            ins.original);
                }
                df.global_args.push_back(std::move(ins));
            } else {
                df.stages.back().instructions.push_back(std::move(ins));
            }
        }
        if (df.stages.empty()) {
            if (!df.global_args.empty()) {
                fail_at(where(df.global_args.front().line),
                        "no FROM instruction (a Dockerfile needs FROM <image>)",
                        df.global_args.front().original);
            }
            throw Error(where(1) +
                        ": no FROM instruction: the file has no instructions (a Dockerfile "
                        "needs FROM <image>)");
        }
    }

    std::string file_;
    std::vector<SourceLine> lines_;
    size_t next_ = 0;
    char escape_ = '\\';
    bool directives_done_ = false;
    std::set<std::string> seen_directives_;
};

}  // namespace

std::optional<std::string> Instruction::flag(std::string_view name) const {
    for (const auto& [key, value] : flags) {
        if (key == name) return value;
    }
    return std::nullopt;
}

Dockerfile Dockerfile::parse(std::string_view text, std::string file_name) {
    return Parser(text, std::move(file_name)).run();
}

std::vector<Instruction> parse_onbuild_triggers(const std::vector<std::string>& triggers,
                                                const std::string& where, int line) {
    std::vector<Instruction> out;
    for (const auto& trigger : triggers) {
        auto words = split_whitespace(trigger);
        std::string keyword = words.empty() ? std::string() : upper(words.front());
        if (keyword == "ONBUILD")
            fail_at(where, "chaining ONBUILD via ONBUILD ONBUILD isn't allowed (ONBUILD trigger)",
                    trigger);
        if (keyword == "FROM" || keyword == "MAINTAINER")
            fail_at(where, keyword + " isn't allowed as an ONBUILD trigger", trigger);
        Dockerfile df;
        try {
            df = Dockerfile::parse("FROM scratch\n" + trigger, "ONBUILD trigger");
        } catch (const Error& e) {
            fail_at(
                where,
                std::string("the base image's ONBUILD trigger does not parse (") + e.what() + ")",
                trigger);
        }
        auto& instructions = df.stages.front().instructions;
        if (df.stages.size() != 1 || instructions.size() != 1)
            fail_at(where, "an ONBUILD trigger must be a single instruction", trigger);
        instructions.front().line = line;
        out.push_back(std::move(instructions.front()));
    }
    return out;
}

std::string expand_word(std::string_view text, const Lookup& lookup, const std::string& where,
                        char escape) {
    return lex(text, lookup, where, {.escape = escape}).word;
}

std::vector<std::string> expand_words(std::string_view text, const Lookup& lookup,
                                      const std::string& where, char escape) {
    return lex(text, lookup, where, {.escape = escape}).words;
}

std::string expand_heredoc(std::string_view content, const Lookup& lookup,
                           const std::string& where) {
    return lex(content, lookup, where, {.escape = '\\', .skip_quotes = true}).word;
}

std::vector<std::pair<std::string, std::string>> parse_key_values(std::string_view raw,
                                                                  const Lookup& lookup,
                                                                  const std::string& where,
                                                                  bool allow_legacy, char escape) {
    std::vector<std::pair<std::string, std::string>> out;
    for (auto& kv : split_key_values(raw, escape, allow_legacy, where)) {
        // BuildKit expands (and unquotes) the key as well: LABEL "a.b"=c is a.b.
        out.emplace_back(expand_word(kv.key, lookup, where, escape),
                         expand_word(kv.value, lookup, where, escape));
    }
    return out;
}

std::vector<std::pair<std::string, std::optional<std::string>>> parse_args(std::string_view raw,
                                                                           const Lookup& lookup,
                                                                           const std::string& where,
                                                                           char escape) {
    std::vector<std::pair<std::string, std::optional<std::string>>> out;
    for (auto& arg : split_args(raw, escape, where)) {
        std::optional<std::string> value;
        if (arg.value) value = expand_word(*arg.value, lookup, where, escape);
        out.emplace_back(std::move(arg.name), std::move(value));
    }
    return out;
}

std::pair<std::string, std::optional<std::string>> parse_arg(std::string_view raw,
                                                             const Lookup& lookup,
                                                             const std::string& where,
                                                             char escape) {
    auto args = parse_args(raw, lookup, where, escape);
    if (args.size() != 1) {
        fail_at(where, "ARG declares " + std::to_string(args.size()) + " names, expected one", raw);
    }
    return std::move(args.front());
}

}  // namespace cascade::engine
