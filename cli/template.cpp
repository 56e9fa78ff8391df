#include "cli/template.hpp"

#include <openssl/rand.h>

#include <algorithm>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>

#include "cli/objects.hpp"
#include "oci/error.hpp"

namespace cascade::cli {

using nlohmann::json;

const char* const kTemplateSourceDirAnnotation = "cascade.io/source-dir";

namespace {

constexpr const char* kLetters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
constexpr const char* kDigits = "0123456789";
// OpenShift's `\A`.
constexpr const char* kSymbols = "~!@#$%^&*()-_+={}[]\\|<,>.?/\"';:`";
constexpr int kMaxCount = 255;

std::string where(const json& tmpl) {
    std::string name;
    if (tmpl.contains("metadata") && tmpl["metadata"].is_object()) {
        const auto& md = tmpl["metadata"];
        if (md.contains("name") && md["name"].is_string()) name = md["name"].get<std::string>();
    }
    return name.empty() ? std::string("Template") : "Template \"" + name + "\"";
}

bool is_param_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

bool valid_param_name(const std::string& name) {
    return !name.empty() && std::all_of(name.begin(), name.end(), is_param_char);
}

// A parameter's `value` or a label as text: YAML may type `8080` or `true`.
std::string scalar_text(const json& v, const std::string& what) {
    if (v.is_string()) return v.get<std::string>();
    if (v.is_null()) return {};
    if (v.is_number() || v.is_boolean()) return v.dump();
    throw Error(what + " must be a string");
}

struct Parameter {
    std::string name;
    std::string value;
    std::string generate;
    std::string from;
    bool required = false;
};

std::vector<Parameter> template_parameters(const json& tmpl) {
    std::vector<Parameter> out;
    if (!tmpl.contains("parameters") || tmpl["parameters"].is_null()) return out;
    const auto& params = tmpl["parameters"];
    if (!params.is_array())
        throw Error(where(tmpl) + ": parameters must be a list of {name, value, ...}");
    std::set<std::string> seen;
    for (size_t i = 0; i < params.size(); i++) {
        const auto& p = params[i];
        std::string at = where(tmpl) + ": parameters[" + std::to_string(i) + "]";
        if (!p.is_object()) throw Error(at + " must be an object with a name");
        Parameter param;
        if (!p.contains("name") || !p["name"].is_string()) throw Error(at + ".name is missing");
        param.name = p["name"].get<std::string>();
        at = where(tmpl) + ": parameter " + param.name;
        if (!valid_param_name(param.name))
            throw Error(at + ": a name has only letters, digits and '_'");
        if (!seen.insert(param.name).second) throw Error(at + " is declared twice");
        if (p.contains("value")) param.value = scalar_text(p["value"], at + ": value");
        if (p.contains("generate")) param.generate = scalar_text(p["generate"], at + ": generate");
        if (p.contains("from")) param.from = scalar_text(p["from"], at + ": from");
        if (p.contains("required") && !p["required"].is_null()) {
            if (!p["required"].is_boolean()) throw Error(at + ": required must be true or false");
            param.required = p["required"].get<bool>();
        }
        if (!param.generate.empty()) {
            if (param.generate != "expression")
                throw Error(at + ": generator \"" + param.generate +
                            "\" is not supported; the one generator is \"expression\"");
            if (param.from.empty())
                throw Error(at +
                            ": generate: expression needs a pattern in `from`, e.g. "
                            "'[a-zA-Z0-9]{40}'");
        }
        out.push_back(std::move(param));
    }
    return out;
}

// Replaces ${NAME} of known parameters; `${{NAME}}` as the whole string gives
// the value to be read as JSON (`typed` set).
std::string substitute(const std::string& in, const std::map<std::string, std::string>& values,
                       bool& typed) {
    typed = false;
    if (in.size() > 5 && in.compare(0, 3, "${{") == 0 && in.compare(in.size() - 2, 2, "}}") == 0) {
        std::string name = in.substr(3, in.size() - 5);
        auto it = values.find(name);
        if (valid_param_name(name) && it != values.end()) {
            typed = true;
            return it->second;
        }
    }
    std::string out;
    size_t pos = 0;
    while (pos < in.size()) {
        size_t start = in.find("${", pos);
        if (start == std::string::npos) break;
        size_t end = start + 2;
        while (end < in.size() && is_param_char(in[end]))
            end++;
        out.append(in, pos, start - pos);
        if (end > start + 2 && end < in.size() && in[end] == '}') {
            auto it = values.find(in.substr(start + 2, end - start - 2));
            if (it != values.end()) {
                out += it->second;
                pos = end + 1;
                continue;
            }
        }
        out.append(in, start, 2);  // not a parameter: kept as it is
        pos = start + 2;
    }
    out.append(in, pos, std::string::npos);
    return out;
}

std::string substitute_text(const std::string& in,
                            const std::map<std::string, std::string>& values) {
    bool typed = false;
    return substitute(in, values, typed);
}

json substitute_json(const json& v, const std::map<std::string, std::string>& values) {
    if (v.is_string()) {
        bool typed = false;
        std::string s = substitute(v.get<std::string>(), values, typed);
        if (typed) {
            json parsed = json::parse(s, nullptr, false);
            if (!parsed.is_discarded()) return parsed;
        }
        return s;
    }
    if (v.is_array()) {
        json out = json::array();
        for (const auto& item : v)
            out.push_back(substitute_json(item, values));
        return out;
    }
    if (v.is_object()) {
        json out = json::object();
        for (const auto& [key, item] : v.items())
            out[substitute_text(key, values)] = substitute_json(item, values);
        return out;
    }
    return v;
}

// Adds the labels to obj's metadata.labels (overriding), and to a
// DeploymentConfig's pod template, as OpenShift does.
void add_labels(json& obj, const std::map<std::string, std::string>& labels,
                const std::string& at) {
    if (labels.empty()) return;
    auto labels_of = [&](json& holder, const std::string& field) -> json& {
        if (!holder.contains("metadata") || holder["metadata"].is_null())
            holder["metadata"] = json::object();
        if (!holder["metadata"].is_object()) throw Error(at + ": " + field + " must be an object");
        auto& md = holder["metadata"];
        if (!md.contains("labels") || md["labels"].is_null()) md["labels"] = json::object();
        if (!md["labels"].is_object())
            throw Error(at + ": " + field + ".labels must be a map of strings");
        return md["labels"];
    };
    auto& own = labels_of(obj, "metadata");
    for (const auto& [k, v] : labels)
        own[k] = v;
    if (obj.value("kind", json()).is_string() && obj["kind"] == "DeploymentConfig" &&
        obj.contains("spec") && obj["spec"].is_object() && obj["spec"].contains("template") &&
        obj["spec"]["template"].is_object()) {
        auto& pod = labels_of(obj["spec"]["template"], "spec.template.metadata");
        for (const auto& [k, v] : labels)
            pod[k] = v;
    }
}

void flatten_list(json obj, std::vector<json>& out) {
    if (obj.is_object() && obj.value("kind", json()).is_string() && obj["kind"] == "List") {
        if (obj.contains("items") && obj["items"].is_array())
            for (auto& item : obj["items"])
                flatten_list(std::move(item), out);
        return;
    }
    out.push_back(std::move(obj));
}

std::string parameter_names(const std::vector<Parameter>& params) {
    if (params.empty()) return "it has no parameters";
    std::string s = "its parameters: ";
    for (size_t i = 0; i < params.size(); i++)
        s += (i ? ", " : "") + params[i].name;
    return s;
}

// A uniformly random index below n (n <= 256), from OpenSSL's CSPRNG.
size_t random_index(size_t n) {
    const unsigned limit = 256 - 256 % static_cast<unsigned>(n);
    for (;;) {
        unsigned char buf[64];
        if (RAND_bytes(buf, sizeof buf) != 1)
            throw Error("generating a template parameter: OpenSSL's RAND_bytes failed");
        for (unsigned char b : buf)
            if (b < limit) return b % n;
    }
}

// Appends the characters of a `\x` class escape; false when x is none.
bool append_escape_class(char x, std::string& alphabet) {
    switch (x) {
        case 'w':
            alphabet += std::string(kLetters) + kDigits + "_";
            return true;
        case 'd':
            alphabet += kDigits;
            return true;
        case 'a':
            alphabet += std::string(kLetters) + kDigits;
            return true;
        case 'A':
            alphabet += kSymbols;
            return true;
        default:
            return false;
    }
}

bool printable(char c) {
    return c >= 0x20 && c <= 0x7e;
}

}  // namespace

bool is_template(const json& obj) {
    return obj.is_object() && obj.contains("kind") && obj["kind"].is_string() &&
           obj["kind"] == "Template";
}

void note_template_source(json& obj, const std::filesystem::path& base_dir) {
    if (!is_template(obj)) return;
    if (!obj.contains("metadata") || obj["metadata"].is_null()) obj["metadata"] = json::object();
    auto& md = obj["metadata"];
    if (!md.is_object()) return;  // validate_template reports it
    if (!md.contains("annotations") || md["annotations"].is_null())
        md["annotations"] = json::object();
    if (!md["annotations"].is_object()) return;
    md["annotations"][kTemplateSourceDirAnnotation] = base_dir.string();
}

void validate_template(const json& tmpl) {
    if (!is_template(tmpl)) throw Error("expected an object of kind Template");
    if (tmpl.contains("metadata") && !tmpl["metadata"].is_object())
        throw Error(where(tmpl) + ": metadata must be an object");
    if (!tmpl.contains("objects") || !tmpl["objects"].is_array())
        throw Error(where(tmpl) +
                    ": objects is missing or not a list; a template lists the objects it "
                    "creates under `objects`");
    for (size_t i = 0; i < tmpl["objects"].size(); i++)
        if (!tmpl["objects"][i].is_object())
            throw Error(where(tmpl) + ": objects[" + std::to_string(i) +
                        "] must be an object with apiVersion, kind and metadata");
    for (const auto& p : template_parameters(tmpl)) {
        if (p.generate != "expression") continue;
        try {
            generate_from_expression(p.from);  // checks the pattern
        } catch (const Error& e) {
            throw Error(where(tmpl) + ": parameter " + p.name + ": " + e.what());
        }
    }
    if (tmpl.contains("labels") && !tmpl["labels"].is_null()) {
        if (!tmpl["labels"].is_object())
            throw Error(where(tmpl) + ": labels must be a map of label names to values");
        for (const auto& [k, v] : tmpl["labels"].items())
            scalar_text(v, where(tmpl) + ": labels." + k);
    }
    if (tmpl.contains("message") && !tmpl["message"].is_null() && !tmpl["message"].is_string())
        throw Error(where(tmpl) + ": message must be a string");
}

std::map<std::string, std::string> parse_template_params(const std::vector<std::string>& params,
                                                         const std::string& param_file) {
    std::map<std::string, std::string> out;
    if (!param_file.empty()) {
        std::ifstream file;
        std::istream* in = &std::cin;
        if (param_file != "-") {
            file.open(param_file);
            if (!file)
                throw Error("--param-file " + param_file +
                            ": cannot be read; give a file of NAME=VALUE lines");
            in = &file;
        }
        std::string line;
        for (int n = 1; std::getline(*in, line); n++) {
            if (!line.empty() && line.back() == '\r') line.pop_back();
            size_t first = line.find_first_not_of(" \t");
            if (first == std::string::npos || line[first] == '#') continue;
            auto eq = line.find('=');
            std::string name = eq == std::string::npos ? "" : line.substr(first, eq - first);
            while (!name.empty() && (name.back() == ' ' || name.back() == '\t'))
                name.pop_back();
            if (!valid_param_name(name))
                throw Error("--param-file " + param_file + ", line " + std::to_string(n) +
                            ": expected NAME=VALUE (a name of letters, digits and '_')");
            out[name] = line.substr(eq + 1);
        }
    }
    for (const auto& p : params) {
        auto eq = p.find('=');
        std::string name = eq == std::string::npos ? "" : p.substr(0, eq);
        if (!valid_param_name(name))
            throw Error("--param " + p +
                        ": expected NAME=VALUE (a name of letters, digits and '_')");
        out[name] = p.substr(eq + 1);
    }
    return out;
}

std::string generate_from_expression(const std::string& expression) {
    auto bad = [&](size_t pos, const std::string& what) {
        return Error("generate expression '" + expression + "' at character " +
                     std::to_string(pos + 1) + ": " + what +
                     "; write literal characters and classes like [a-zA-Z0-9]{40}, \\d{4}");
    };
    std::string out;
    size_t i = 0;
    while (i < expression.size()) {
        char c = expression[i];
        std::string alphabet;
        size_t start = i;
        if (c == '[') {
            i++;
            while (i < expression.size() && expression[i] != ']') {
                char a = expression[i];
                if (a == '\\') {
                    if (i + 1 >= expression.size()) throw bad(i, "'\\' ends the pattern");
                    char x = expression[i + 1];
                    if (!append_escape_class(x, alphabet)) alphabet += x;  // \] \- \\ …
                    i += 2;
                    continue;
                }
                if (!printable(a)) throw bad(i, "only printable ASCII characters are supported");
                if (i + 2 < expression.size() && expression[i + 1] == '-' &&
                    expression[i + 2] != ']') {
                    char b = expression[i + 2];
                    if (!printable(b))
                        throw bad(i + 2, "only printable ASCII characters are supported");
                    if (b < a)
                        throw bad(i, std::string("the range ") + a + "-" + b + " is reversed");
                    for (char x = a; x <= b; x++)
                        alphabet += x;
                    i += 3;
                    continue;
                }
                alphabet += a;
                i++;
            }
            if (i >= expression.size()) throw bad(start, "'[' has no closing ']'");
            if (alphabet.empty()) throw bad(start, "an empty class []");
            i++;  // ']'
        } else if (c == '\\' && i + 1 < expression.size() &&
                   append_escape_class(expression[i + 1], alphabet)) {
            i += 2;
        } else {
            if (c == '\\') {  // an escaped literal
                if (i + 1 >= expression.size()) throw bad(i, "'\\' ends the pattern");
                c = expression[++i];
            }
            out += c;
            i++;
            continue;
        }
        // The count: {n} or {n,m}; none is one.
        int low = 1, high = 1;
        if (i < expression.size() && expression[i] == '{') {
            size_t close = expression.find('}', i);
            if (close == std::string::npos) throw bad(i, "'{' has no closing '}'");
            std::string count = expression.substr(i + 1, close - i - 1);
            auto comma = count.find(',');
            auto number = [&](const std::string& s) {
                if (s.empty() || s.size() > 4 ||
                    !std::all_of(s.begin(), s.end(), [](char d) { return d >= '0' && d <= '9'; }))
                    throw bad(i, "a count is {n} or {n,m} with numbers");
                return std::stoi(s);
            };
            if (comma == std::string::npos) {
                low = high = number(count);
                if (low < 1) throw bad(i, "a count is at least 1");
            } else {
                low = number(count.substr(0, comma));
                high = number(count.substr(comma + 1));
                if (high < low || high < 1) throw bad(i, "in {n,m}, m must be >= n and >= 1");
            }
            if (high > kMaxCount) throw bad(i, "a count is at most " + std::to_string(kMaxCount));
            i = close + 1;
        }
        // Each character once, in the order first given.
        std::string unique;
        for (char x : alphabet)
            if (unique.find(x) == std::string::npos) unique += x;
        int n = low + static_cast<int>(random_index(static_cast<size_t>(high - low + 1)));
        for (int k = 0; k < n; k++)
            out += unique[random_index(unique.size())];
    }
    return out;
}

ProcessedTemplate process_template(const json& tmpl,
                                   const std::map<std::string, std::string>& values,
                                   bool ignore_unknown) {
    validate_template(tmpl);
    auto params = template_parameters(tmpl);
    ProcessedTemplate result;
    result.name = tmpl.value("/metadata/name"_json_pointer, std::string());
    if (!ignore_unknown)
        for (const auto& [name, value] : values)
            if (std::none_of(params.begin(), params.end(),
                             [&](const Parameter& p) { return p.name == name; }))
                throw Error(where(tmpl) + ": unknown parameter name \"" + name + "\"; " +
                            parameter_names(params));
    for (auto& p : params) {
        auto given = values.find(p.name);
        if (given != values.end()) p.value = given->second;
        // (validate_template checked the pattern)
        if (p.value.empty() && p.generate == "expression")
            p.value = generate_from_expression(p.from);
        if (p.value.empty() && p.required)
            throw Error(where(tmpl) + ": parameter " + p.name +
                        " is required and has no value; pass --param " + p.name + "=VALUE");
        result.values[p.name] = p.value;
    }
    const auto& vals = result.values;
    if (tmpl.contains("message") && tmpl["message"].is_string())
        result.message = substitute_text(tmpl["message"].get<std::string>(), vals);
    std::map<std::string, std::string> labels;
    if (tmpl.contains("labels") && tmpl["labels"].is_object())
        for (const auto& [k, v] : tmpl["labels"].items())
            labels[substitute_text(k, vals)] = substitute_text(scalar_text(v, k), vals);
    std::string source_dir;
    if (tmpl.contains("metadata") && tmpl["metadata"].contains("annotations") &&
        tmpl["metadata"]["annotations"].is_object()) {
        const auto& ann = tmpl["metadata"]["annotations"];
        auto it = ann.find(kTemplateSourceDirAnnotation);
        if (it != ann.end() && it->is_string()) source_dir = it->get<std::string>();
    }

    std::vector<json> objects;
    for (const auto& item : tmpl["objects"]) {
        json obj = item;
        // A hard-coded namespace is dropped (OpenShift keeps one that is a parameter).
        if (obj.contains("metadata") && obj["metadata"].is_object() &&
            obj["metadata"].contains("namespace")) {
            const auto& ns = obj["metadata"]["namespace"];
            if (!ns.is_string() || ns.get<std::string>().find("${") == std::string::npos)
                obj["metadata"].erase("namespace");
        }
        flatten_list(substitute_json(obj, vals), objects);
    }
    for (size_t i = 0; i < objects.size(); i++) {
        auto& obj = objects[i];
        std::string at = where(tmpl) + ": objects[" + std::to_string(i) + "]";
        if (!obj.is_object()) throw Error(at + " must be an object");
        add_labels(obj, labels, at);
        if (!source_dir.empty()) resolve_object_paths(obj, source_dir);
    }
    result.objects = std::move(objects);
    return result;
}

std::vector<json> expand_templates(const std::vector<json>& objects,
                                   const std::map<std::string, std::string>& values,
                                   std::vector<std::string>* messages) {
    std::vector<const json*> templates;
    for (const auto& obj : objects)
        if (is_template(obj)) templates.push_back(&obj);
    if (templates.empty()) {
        if (!values.empty())
            throw Error("--param " + values.begin()->first +
                        " was given, but there is no Template among the objects; parameters "
                        "only apply to a Template (kind: Template)");
        return objects;
    }
    if (templates.size() > 1) {
        // Each value must be some template's parameter.
        std::set<std::string> declared;
        std::string listing;
        for (const auto* t : templates) {
            auto params = template_parameters(*t);
            for (const auto& p : params)
                declared.insert(p.name);
            listing += (listing.empty() ? "" : "; ") + where(*t) + ": " + parameter_names(params);
        }
        for (const auto& [name, value] : values)
            if (!declared.count(name))
                throw Error("unknown parameter name \"" + name + "\"; no template declares it (" +
                            listing + ")");
    }
    std::vector<json> out;
    for (const auto& obj : objects) {
        if (!is_template(obj)) {
            out.push_back(obj);
            continue;
        }
        auto processed = process_template(obj, values, templates.size() > 1);
        for (auto& o : processed.objects)
            out.push_back(std::move(o));
        if (messages && !processed.message.empty()) messages->push_back(processed.message);
    }
    return out;
}

json processed_list(const std::vector<json>& objects) {
    return {
        {"kind", "List"}, {"apiVersion", "v1"}, {"metadata", json::object()}, {"items", objects}};
}

}  // namespace cascade::cli
