#include "engine/healthcheck.hpp"

#include <cstdio>
#include <limits>
#include <vector>

#include "oci/error.hpp"

namespace cascade::engine {

namespace {

constexpr int64_t kMillisecond = 1000 * 1000;

std::string upper(std::string_view s) {
    std::string out(s);
    for (auto& c : out)
        if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    return out;
}

// Go's fmtFrac: the fraction digits of v (prec of them), trailing zeros and
// the point omitted; v is left with the integer part.
std::string fraction(uint64_t& v, int prec) {
    std::string digits;
    bool print = false;
    for (int i = 0; i < prec; i++) {
        char digit = static_cast<char>('0' + v % 10);
        print = print || digit != '0';
        if (print) digits.insert(digits.begin(), digit);
        v /= 10;
    }
    return print ? "." + digits : "";
}

void append_utf8(std::string& out, char32_t r) {
    if (r < 0x80) {
        out += static_cast<char>(r);
    } else if (r < 0x800) {
        out += static_cast<char>(0xC0 | (r >> 6));
        out += static_cast<char>(0x80 | (r & 0x3F));
    } else if (r < 0x10000) {
        out += static_cast<char>(0xE0 | (r >> 12));
        out += static_cast<char>(0x80 | ((r >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (r & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | (r >> 18));
        out += static_cast<char>(0x80 | ((r >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((r >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (r & 0x3F));
    }
}

// strconv's appendEscapedRune (unicode.IsPrint approximated: C0/C1
// controls, DEL, U+00A0, U+00AD, surrogates and U+FFFE/U+FFFF are not printable).
void escaped_rune(std::string& out, char32_t r, char quote) {
    if (r == static_cast<char32_t>(quote) || r == '\\') {
        out += '\\';
        out += static_cast<char>(r);
        return;
    }
    bool printable =
        (r >= 0x20 && r < 0x7F) || (r > 0xA0 && r != 0xAD && r <= 0x10FFFF &&
                                    !(r >= 0xD800 && r <= 0xDFFF) && r != 0xFFFE && r != 0xFFFF);
    if (printable) {
        append_utf8(out, r);
        return;
    }
    char buf[16];
    switch (r) {
        case '\a':
            out += "\\a";
            return;
        case '\b':
            out += "\\b";
            return;
        case '\f':
            out += "\\f";
            return;
        case '\n':
            out += "\\n";
            return;
        case '\r':
            out += "\\r";
            return;
        case '\t':
            out += "\\t";
            return;
        case '\v':
            out += "\\v";
            return;
        default:
            break;
    }
    if (r < ' ' || r == 0x7F) {
        std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned>(r));
    } else {
        if (r > 0x10FFFF || (r >= 0xD800 && r <= 0xDFFF)) r = 0xFFFD;
        if (r < 0x10000)
            std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(r));
        else
            std::snprintf(buf, sizeof buf, "\\U%08x", static_cast<unsigned>(r));
    }
    out += buf;
}

int64_t parse_interval(const Instruction& ins, const std::string& name, const std::string& where) {
    auto value = ins.flag(name);
    if (!value || value->empty()) return 0;
    int64_t ns = 0;
    try {
        ns = parse_go_duration(*value);
    } catch (const Error& e) {
        throw Error(where + ": HEALTHCHECK --" + name + "=" + *value + ": " + e.what() +
                    " (use a duration such as 30s, 1m30s or 500ms)");
    }
    if (ns != 0 && ns < kMillisecond)
        throw Error(where + ": HEALTHCHECK --" + name + "=" + *value + ": Interval \"" + name +
                    "\" cannot be less than 1ms");
    return ns;
}

}  // namespace

int64_t parse_go_duration(std::string_view text) {
    const std::string quoted = go_quote(text);
    auto fail = [&](const std::string& what) { return Error("time: " + what + " " + quoted); };
    std::string_view s = text;
    bool neg = false;
    if (!s.empty() && (s[0] == '-' || s[0] == '+')) {
        neg = s[0] == '-';
        s.remove_prefix(1);
    }
    if (s == "0") return 0;
    if (s.empty()) throw fail("invalid duration");
    constexpr uint64_t kLimit = uint64_t{1} << 63;
    uint64_t d = 0;
    while (!s.empty()) {
        if (!(s[0] == '.' || (s[0] >= '0' && s[0] <= '9'))) throw fail("invalid duration");
        uint64_t v = 0;
        size_t i = 0;
        for (; i < s.size() && s[i] >= '0' && s[i] <= '9'; i++) {
            if (v > (kLimit - 1) / 10) throw fail("invalid duration");
            v = v * 10 + static_cast<uint64_t>(s[i] - '0');
            if (v > kLimit) throw fail("invalid duration");
        }
        const bool pre = i > 0;
        s.remove_prefix(i);
        uint64_t f = 0;
        double scale = 1;
        bool post = false;
        if (!s.empty() && s[0] == '.') {
            s.remove_prefix(1);
            size_t j = 0;
            bool overflow = false;
            for (; j < s.size() && s[j] >= '0' && s[j] <= '9'; j++) {
                if (overflow) continue;
                if (f > (kLimit - 1) / 10) {
                    overflow = true;
                    continue;
                }
                uint64_t y = f * 10 + static_cast<uint64_t>(s[j] - '0');
                if (y > kLimit) {
                    overflow = true;
                    continue;
                }
                f = y;
                scale *= 10;
            }
            post = j > 0;
            s.remove_prefix(j);
        }
        if (!pre && !post) throw fail("invalid duration");
        size_t u = 0;
        while (u < s.size() && !(s[u] == '.' || (s[u] >= '0' && s[u] <= '9')))
            u++;
        if (u == 0) throw fail("missing unit in duration");
        std::string_view unit_text = s.substr(0, u);
        s.remove_prefix(u);
        uint64_t unit = 0;
        if (unit_text == "ns")
            unit = 1;
        else if (unit_text == "us" || unit_text == "\xC2\xB5s" || unit_text == "\xCE\xBCs")
            unit = 1000;
        else if (unit_text == "ms")
            unit = 1000 * 1000;
        else if (unit_text == "s")
            unit = 1000 * 1000 * 1000;
        else if (unit_text == "m")
            unit = 60ULL * 1000 * 1000 * 1000;
        else if (unit_text == "h")
            unit = 3600ULL * 1000 * 1000 * 1000;
        else
            throw Error("time: unknown unit " + go_quote(unit_text) + " in duration " + quoted);
        if (v > kLimit / unit) throw fail("invalid duration");
        v *= unit;
        if (f > 0) {
            v +=
                static_cast<uint64_t>(static_cast<double>(f) * (static_cast<double>(unit) / scale));
            if (v > kLimit) throw fail("invalid duration");
        }
        d += v;
        if (d > kLimit) throw fail("invalid duration");
    }
    if (neg) return d == kLimit ? std::numeric_limits<int64_t>::min() : -static_cast<int64_t>(d);
    if (d > kLimit - 1) throw fail("invalid duration");
    return static_cast<int64_t>(d);
}

std::string go_duration(int64_t ns) {
    const bool neg = ns < 0;
    uint64_t u = neg ? uint64_t{0} - static_cast<uint64_t>(ns) : static_cast<uint64_t>(ns);
    std::string out;
    if (u < 1000000000ULL) {
        if (u == 0) return "0s";
        std::string unit;
        int prec = 0;
        if (u < 1000ULL) {
            unit = "ns";
        } else if (u < 1000000ULL) {
            prec = 3;
            unit = "\xC2\xB5s";
        } else {
            prec = 6;
            unit = "ms";
        }
        std::string frac = fraction(u, prec);
        out = std::to_string(u) + frac + unit;
    } else {
        std::string frac = fraction(u, 9);
        out = std::to_string(u % 60) + frac + "s";
        u /= 60;
        if (u > 0) {
            out = std::to_string(u % 60) + "m" + out;
            u /= 60;
            if (u > 0) out = std::to_string(u) + "h" + out;
        }
    }
    return neg ? "-" + out : out;
}

std::string go_quote(std::string_view s) {
    std::string out = "\"";
    for (size_t i = 0; i < s.size();) {
        auto c = static_cast<unsigned char>(s[i]);
        if (c < 0x80) {
            escaped_rune(out, c, '"');
            i++;
            continue;
        }
        size_t n = (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
        char32_t r = 0;
        bool valid = n != 0 && i + n <= s.size();
        if (valid) {
            r = c & (0x7F >> n);
            for (size_t k = 1; k < n && valid; k++) {
                auto b = static_cast<unsigned char>(s[i + k]);
                valid = (b & 0xC0) == 0x80;
                r = (r << 6) | (b & 0x3F);
            }
            static constexpr char32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
            valid = valid && r >= kMin[n] && r <= 0x10FFFF && !(r >= 0xD800 && r <= 0xDFFF);
        }
        if (!valid) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02x", c);
            out += buf;
            i++;
            continue;
        }
        escaped_rune(out, r, '"');
        i += n;
    }
    return out + "\"";
}

std::string go_quote_rune(int64_t value) {
    char32_t r = value < 0 || value > 0x10FFFF ? 0xFFFD : static_cast<char32_t>(value);
    std::string out = "'";
    escaped_rune(out, r, '\'');
    return out + "'";
}

oci::HealthConfig parse_healthcheck(const Instruction& ins, const std::string& where) {
    oci::HealthConfig health;
    std::string_view raw = trim_space(ins.raw);
    size_t end = 0;
    while (end < raw.size() && !is_ascii_space(raw[end]))
        end++;
    const std::string type = upper(raw.substr(0, end));
    const std::string_view command = trim_space(raw.substr(end));
    if (type == "NONE") {
        if (!command.empty())
            throw Error(where + ": HEALTHCHECK NONE takes no arguments: " + std::string(raw));
        health.test = {"NONE"};
        return health;
    }
    if (type != "CMD")
        throw Error(where + ": unknown HEALTHCHECK type \"" + type + "\" (use CMD or NONE)");
    if (ins.exec_form) {
        if (ins.exec_args.empty()) throw Error(where + ": missing command after HEALTHCHECK CMD");
        health.test = {"CMD"};
        health.test.insert(health.test.end(), ins.exec_args.begin(), ins.exec_args.end());
    } else {
        if (command.empty()) throw Error(where + ": missing command after HEALTHCHECK CMD");
        health.test = {"CMD-SHELL", std::string(command)};
    }
    health.interval_ns = parse_interval(ins, "interval", where);
    health.timeout_ns = parse_interval(ins, "timeout", where);
    health.start_period_ns = parse_interval(ins, "start-period", where);
    health.start_interval_ns = parse_interval(ins, "start-interval", where);
    if (auto retries = ins.flag("retries"); retries && !retries->empty()) {
        const std::string& text = *retries;
        size_t i = text[0] == '-' || text[0] == '+' ? 1 : 0;
        bool digits = i < text.size() && text.size() - i <= 11;
        for (size_t k = i; k < text.size() && digits; k++)
            digits = text[k] >= '0' && text[k] <= '9';
        int64_t n = digits ? std::stoll(text) : 0;
        if (!digits || n < std::numeric_limits<int32_t>::min() ||
            n > std::numeric_limits<int32_t>::max())
            throw Error(where + ": HEALTHCHECK --retries=" + text + ": expected a whole number");
        if (n < 0) throw Error(where + ": HEALTHCHECK --retries cannot be negative (" + text + ")");
        health.retries = static_cast<int>(n);
    }
    return health;
}

std::string healthcheck_history(const oci::HealthConfig& health) {
    std::string out = "HEALTHCHECK &{[";
    for (size_t i = 0; i < health.test.size(); i++) {
        if (i) out += ' ';
        out += go_quote(health.test[i]);
    }
    out += "]";
    for (int64_t d :
         {health.interval_ns, health.timeout_ns, health.start_period_ns, health.start_interval_ns})
        out += " " + go_quote(go_duration(d));
    out += " " + go_quote_rune(health.retries) + "}";
    return out;
}

}  // namespace cascade::engine
