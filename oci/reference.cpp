#include "oci/reference.hpp"

#include "oci/error.hpp"

namespace cascade::oci {

namespace {

constexpr size_t kMaxNameLength = 255;

bool is_lower_alnum(char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

bool is_alnum(char c) {
    return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

bool is_word(char c) {
    return is_alnum(c) || c == '_';
}

// path-component := alpha-numeric (separator alpha-numeric)*
// alpha-numeric := [a-z0-9]+ ; separator := [_.] | __ | [-]+
bool valid_path_component(std::string_view c) {
    if (c.empty() || !is_lower_alnum(c.front()) || !is_lower_alnum(c.back())) return false;
    size_t i = 0;
    while (i < c.size()) {
        if (is_lower_alnum(c[i])) {
            i++;
            continue;
        }
        size_t start = i;
        while (i < c.size() && !is_lower_alnum(c[i]))
            i++;
        std::string_view sep = c.substr(start, i - start);
        bool dashes = sep.find_first_not_of('-') == std::string_view::npos;
        if (!(sep == "." || sep == "_" || sep == "__" || dashes)) return false;
    }
    return true;
}

// domain-component := [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
bool valid_domain_component(std::string_view c) {
    if (c.empty() || !is_alnum(c.front()) || !is_alnum(c.back())) return false;
    for (char ch : c)
        if (!is_alnum(ch) && ch != '-') return false;
    return true;
}

bool valid_ipv6_body(std::string_view s) {
    if (s.empty()) return false;
    for (char c : s) {
        bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
        if (!hex && c != ':' && c != '.') return false;
    }
    return s.find(':') != std::string_view::npos;
}

std::string describe_path_problem(std::string_view path) {
    if (path.empty()) return "the repository path is empty";
    size_t start = 0;
    while (true) {
        size_t slash = path.find('/', start);
        std::string_view comp = path.substr(
            start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
        if (comp.empty()) return "the repository path has an empty component";
        if (!valid_path_component(comp)) {
            for (char c : comp)
                if (c >= 'A' && c <= 'Z')
                    return "repository names must be lower case (\"" + std::string(comp) + "\")";
            return "the path component \"" + std::string(comp) +
                   "\" must be lower-case letters and digits, separated by '.', '_', '__' or "
                   "'-'";
        }
        if (slash == std::string_view::npos) break;
        start = slash + 1;
    }
    return {};
}

bool is_64_hex(std::string_view s) {
    if (s.size() != 64) return false;
    for (char c : s)
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    return true;
}

}  // namespace

bool is_valid_repository_name(std::string_view name) {
    return name.size() <= kMaxNameLength && describe_path_problem(name).empty();
}

bool is_valid_tag(std::string_view tag) {
    if (tag.empty() || tag.size() > 128 || !is_word(tag.front())) return false;
    for (char c : tag)
        if (!is_word(c) && c != '.' && c != '-') return false;
    return true;
}

bool is_valid_domain(std::string_view domain) {
    if (domain.empty()) return false;
    std::string_view host = domain;
    std::string_view port;
    if (domain.front() == '[') {
        size_t close = domain.find(']');
        if (close == std::string_view::npos) return false;
        if (!valid_ipv6_body(domain.substr(1, close - 1))) return false;
        std::string_view rest = domain.substr(close + 1);
        if (rest.empty()) return true;
        if (rest.front() != ':') return false;
        port = rest.substr(1);
        if (port.empty()) return false;
        host = {};
    } else {
        size_t colon = domain.find(':');
        if (colon != std::string_view::npos) {
            host = domain.substr(0, colon);
            port = domain.substr(colon + 1);
            if (port.empty()) return false;
        }
        if (host.empty()) return false;
        size_t start = 0;
        while (true) {
            size_t dot = host.find('.', start);
            std::string_view comp = host.substr(
                start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
            if (!valid_domain_component(comp)) return false;
            if (dot == std::string_view::npos) break;
            start = dot + 1;
        }
    }
    for (char c : port)
        if (c < '0' || c > '9') return false;
    return true;
}

Reference Reference::parse(std::string_view text) {
    auto fail = [&](const std::string& why) -> Error {
        return Error("invalid image reference \"" + std::string(text.substr(0, 300)) +
                     "\": " + why);
    };
    if (text.empty()) throw fail("it is empty");

    Reference ref;
    std::string_view rest = text;
    if (size_t at = rest.find('@'); at != std::string_view::npos) {
        auto digest = Digest::try_parse(rest.substr(at + 1));
        if (!digest) {
            try {
                Digest::parse(rest.substr(at + 1));
            } catch (const Error& e) {
                throw fail(e.what());
            }
        }
        ref.digest = digest;
        rest = rest.substr(0, at);
    }
    // A tag follows the last ':' that comes after the last '/' (an earlier ':'
    // belongs to a registry port).
    size_t last_slash = rest.rfind('/');
    size_t colon = rest.rfind(':');
    if (colon != std::string_view::npos &&
        (last_slash == std::string_view::npos || colon > last_slash)) {
        std::string_view tag = rest.substr(colon + 1);
        if (!is_valid_tag(tag))
            throw fail("the tag \"" + std::string(tag) +
                       "\" must be 1 to 128 of [A-Za-z0-9_.-], not starting with '.' or '-'");
        ref.tag = std::string(tag);
        rest = rest.substr(0, colon);
    }
    if (rest.empty()) throw fail("the repository name is empty");
    if (rest.size() > kMaxNameLength)
        throw fail("the name is longer than " + std::to_string(kMaxNameLength) + " characters");

    // Docker's rule: the first component is a registry domain when it contains
    // '.' or ':', is "localhost", or has upper-case letters (paths never do).
    size_t slash = rest.find('/');
    if (slash != std::string_view::npos) {
        std::string_view first = rest.substr(0, slash);
        bool has_upper = false;
        for (char c : first)
            if (c >= 'A' && c <= 'Z') has_upper = true;
        if (first.find_first_of(".:[") != std::string_view::npos || first == "localhost" ||
            has_upper) {
            if (!is_valid_domain(first))
                throw fail("the registry domain \"" + std::string(first) +
                           "\" is not a valid host[:port]");
            ref.domain = std::string(first);
            rest = rest.substr(slash + 1);
        }
    }
    if (ref.domain.empty() && ref.tag.empty() && !ref.digest && is_64_hex(rest))
        throw fail("a 64-character hex string is an image ID, not a repository name");
    std::string problem = describe_path_problem(rest);
    if (!problem.empty()) throw fail(problem);
    ref.path = std::string(rest);
    return ref;
}

Reference Reference::normalized() const {
    Reference r = *this;
    if (r.domain.empty() || r.domain == "index.docker.io") r.domain = "docker.io";
    if (r.domain == "docker.io" && r.path.find('/') == std::string::npos)
        r.path = "library/" + r.path;
    if (r.tag.empty() && !r.digest) r.tag = "latest";
    if (r.domain.size() + 1 + r.path.size() > kMaxNameLength)
        throw Error("invalid image reference \"" + str().substr(0, 300) + "\": the name \"" +
                    r.domain + "/" + r.path + "\" is longer than " +
                    std::to_string(kMaxNameLength) + " characters; use a shorter repository path");
    return r;
}

std::string Reference::str() const {
    std::string out;
    if (!domain.empty()) out = domain + "/";
    out += path;
    if (!tag.empty()) out += ":" + tag;
    if (digest) out += "@" + digest->str();
    return out;
}

std::string Reference::repository_and_ref() const {
    if (digest) return path + "@" + digest->str();
    return path + ":" + (tag.empty() ? std::string("latest") : tag);
}

std::string Reference::ref_or_latest() const {
    if (!tag.empty()) return tag;
    if (digest) return digest->str();
    return "latest";
}

}  // namespace cascade::oci
