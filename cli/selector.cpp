#include "cli/selector.hpp"

#include <algorithm>
#include <cctype>

#include "oci/error.hpp"

namespace cascade::cli {

namespace {

bool alnum(char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0;
}
bool value_char(char c) {
    return alnum(c) || c == '-' || c == '_' || c == '.';
}
bool key_char(char c) {
    return value_char(c) || c == '/';
}

class Parser {
  public:
    explicit Parser(std::string_view text) : text_(text) {}

    std::vector<LabelRequirement> parse() {
        std::vector<LabelRequirement> out;
        skip_spaces();
        if (at_end()) return out;
        while (true) {
            out.push_back(requirement());
            skip_spaces();
            if (at_end()) break;
            if (peek() != ',') fail("expected \",\" or the end of the selector");
            pos_++;
            skip_spaces();
            if (at_end()) fail("expected a label key after \",\"");
        }
        return out;
    }

  private:
    std::string_view text_;
    size_t pos_ = 0;

    bool at_end() const { return pos_ >= text_.size(); }
    char peek() const { return at_end() ? '\0' : text_[pos_]; }
    void skip_spaces() {
        while (!at_end() && std::isspace(static_cast<unsigned char>(text_[pos_])))
            pos_++;
    }

    [[noreturn]] void fail(const std::string& what) const { fail_at(pos_, what); }
    [[noreturn]] void fail_at(size_t pos, const std::string& what) const {
        std::string found = pos >= text_.size() ? std::string("end of text")
                                                : "\"" + std::string(1, text_[pos]) + "\"";
        throw Error("invalid label selector \"" + std::string(text_) + "\": at position " +
                    std::to_string(pos + 1) + " (" + found + "): " + what +
                    "; selectors are k=v, k==v, k!=v, k, !k, \"k in (a,b)\", "
                    "\"k notin (a,b)\", joined by commas");
    }

    std::string key() {
        size_t start = pos_;
        while (!at_end() && key_char(peek()))
            pos_++;
        std::string k(text_.substr(start, pos_ - start));
        if (k.empty()) fail_at(start, "expected a label key");
        auto slash = k.rfind('/');
        std::string name = slash == std::string::npos ? k : k.substr(slash + 1);
        std::string prefix = slash == std::string::npos ? "" : k.substr(0, slash);
        if (name.empty() || name.size() > 63 || !alnum(name.front()) || !alnum(name.back()) ||
            (slash != std::string::npos &&
             (prefix.empty() || prefix.size() > 253 || prefix.find('/') != std::string::npos)))
            fail_at(start,
                    "\"" + k +
                        "\" is not a valid label key (an optional DNS prefix and \"/\", then up "
                        "to 63 letters, digits, \"-\", \"_\", \".\", starting and ending with a "
                        "letter or digit)");
        return k;
    }

    std::string value() {
        size_t start = pos_;
        while (!at_end() && value_char(peek()))
            pos_++;
        std::string v(text_.substr(start, pos_ - start));
        if (!v.empty() && (v.size() > 63 || !alnum(v.front()) || !alnum(v.back())))
            fail_at(start, "\"" + v +
                               "\" is not a valid label value (up to 63 letters, digits, \"-\", "
                               "\"_\", \".\", starting and ending with a letter or digit)");
        return v;
    }

    std::vector<std::string> value_set() {
        skip_spaces();
        if (peek() != '(') fail("expected \"(\" to open the set of values");
        pos_++;
        std::vector<std::string> values;
        while (true) {
            skip_spaces();
            if (peek() == ')' && values.empty()) fail("expected at least one value in the set");
            if (at_end()) fail("expected a value and \")\" to close the set");
            values.push_back(value());
            skip_spaces();
            if (peek() == ')') {
                pos_++;
                return values;
            }
            if (peek() != ',') fail("expected \",\" or \")\" in the set of values");
            pos_++;
        }
    }

    LabelRequirement requirement() {
        LabelRequirement r;
        if (peek() == '!') {
            pos_++;
            skip_spaces();
            r.key = key();
            r.op = LabelRequirement::Op::DoesNotExist;
            return r;
        }
        r.key = key();
        skip_spaces();
        if (at_end() || peek() == ',') {
            r.op = LabelRequirement::Op::Exists;
            return r;
        }
        if (text_.substr(pos_, 2) == "!=") {
            pos_ += 2;
            r.op = LabelRequirement::Op::NotEquals;
        } else if (text_.substr(pos_, 2) == "==") {
            pos_ += 2;
            r.op = LabelRequirement::Op::Equals;
        } else if (peek() == '=') {
            pos_++;
            r.op = LabelRequirement::Op::Equals;
        } else {
            size_t start = pos_;
            while (!at_end() && std::isalpha(static_cast<unsigned char>(peek())))
                pos_++;
            auto word = text_.substr(start, pos_ - start);
            if (word == "in")
                r.op = LabelRequirement::Op::In;
            else if (word == "notin")
                r.op = LabelRequirement::Op::NotIn;
            else
                fail_at(start, "expected an operator (=, ==, !=, in, notin), \",\" or the end");
            r.values = value_set();
            return r;
        }
        skip_spaces();
        r.values.push_back(value());
        return r;
    }
};

}  // namespace

LabelSelector LabelSelector::parse(std::string_view text) {
    LabelSelector s;
    s.requirements_ = Parser(text).parse();
    return s;
}

bool LabelSelector::matches(const std::map<std::string, std::string>& labels) const {
    for (const auto& r : requirements_) {
        auto it = labels.find(r.key);
        bool has = it != labels.end();
        bool in_set =
            has && std::find(r.values.begin(), r.values.end(), it->second) != r.values.end();
        bool ok = false;
        switch (r.op) {
            case LabelRequirement::Op::Equals:
            case LabelRequirement::Op::In:
                ok = in_set;
                break;
            case LabelRequirement::Op::NotEquals:
            case LabelRequirement::Op::NotIn:
                ok = !in_set;
                break;
            case LabelRequirement::Op::Exists:
                ok = has;
                break;
            case LabelRequirement::Op::DoesNotExist:
                ok = !has;
                break;
        }
        if (!ok) return false;
    }
    return true;
}

bool LabelSelector::matches_labels(const nlohmann::json& labels) const {
    std::map<std::string, std::string> m;
    if (labels.is_object())
        for (const auto& [k, v] : labels.items())
            m[k] = v.is_string() ? v.get<std::string>() : v.dump();
    return matches(m);
}

bool LabelSelector::matches_object(const nlohmann::json& object) const {
    if (!object.is_object()) return matches_labels(nullptr);
    auto meta = object.find("metadata");
    if (meta == object.end() || !meta->is_object()) return matches_labels(nullptr);
    auto labels = meta->find("labels");
    return matches_labels(labels == meta->end() ? nlohmann::json() : *labels);
}

std::string LabelSelector::str() const {
    std::string out;
    for (const auto& r : requirements_) {
        if (!out.empty()) out += ",";
        auto set = [&] {
            std::string s = " (";
            for (size_t i = 0; i < r.values.size(); i++)
                s += (i ? "," : "") + r.values[i];
            return s + ")";
        };
        switch (r.op) {
            case LabelRequirement::Op::Equals:
                out += r.key + "=" + r.values.at(0);
                break;
            case LabelRequirement::Op::NotEquals:
                out += r.key + "!=" + r.values.at(0);
                break;
            case LabelRequirement::Op::In:
                out += r.key + " in" + set();
                break;
            case LabelRequirement::Op::NotIn:
                out += r.key + " notin" + set();
                break;
            case LabelRequirement::Op::Exists:
                out += r.key;
                break;
            case LabelRequirement::Op::DoesNotExist:
                out += "!" + r.key;
                break;
        }
    }
    return out;
}

}  // namespace cascade::cli
